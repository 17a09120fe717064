/*
 * quant_r8b_avx2.c — AVX2 kernels for the row-interleaved 32-element block
 * types (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 _R8F; layout in quant_impl.h) against Q8_0
 * activations.
 *
 * As for the K-quants (quant_r8_avx2.c): a 32-byte weight vector holds 4
 * consecutive quants of each of 8 rows, the matching 4 activation bytes are
 * broadcast to every lane, one vpmaddubsw computes 8 rows x 4 products and an
 * 8-row result is one vector. The unsigned 4/5-bit quants of a whole block are
 * summed in int16 before one vpmaddwd (8 vectors of at most 2 * 15 * 127 per
 * int16 for Q4, 4 of 2 * 31 * 127 for Q5), instead of one per block and row in
 * the GGUF-layout kernels. Q8_0 uses the sign trick (|w| times sign(w) * x:
 * pairs up to 2 * 128 * 127) with one vpmaddwd per vector.
 *
 * The terms that depend only on the activations (their scale, and for the
 * offset and minimum types the block sum times 8 / 16 / the scale) are computed
 * once per column and block into a table on the stack (columns in chunks so
 * that it stays at 64 KiB: k <= QUANT_R8_B32_MAX_K) and shared by every row
 * group. Integer sums are exact; per block and row one float FMA (two for the
 * minimum types), so results differ from the GGUF-layout kernels only in float
 * rounding order.
 */
#include "base/base.h"
#include "quant/quant_r8_avx2.h"

/* 8 rows (group g, nb blocks) x NC columns (pre: the columns' table rows). y[c*ys + r]. */
Q_INLINE void rb_tile(const int T, const int NC, const char *g, int64_t nb, const char *xv, size_t xs,
                      const rb_pre *pre, float *y, int64_t ys, bool pf) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m16 = _mm256_set1_epi8(0x10), ones16 = _mm256_set1_epi16(1);
    const size_t bsz = rb_bsz(T);
    __m256 acc[4];
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const char *blk = g + (size_t)i * bsz;
        if (pf) r8_prefetch(blk, bsz);
        const uint8_t *qs = (const uint8_t *)blk + rb_qs(T);
        const int8_t *xq[4];
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) xq[c] = ((const blk_q8_0 *)(xv + (size_t)c * xs) + i)->qs;
        __m256i sumi[4];
        if (T == R_Q8_0) {
            _Pragma("GCC unroll 16")
            for (int e = 0; e < 8; e++) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)(qs + 32 * e));
                const __m256i aw = _mm256_sign_epi8(w, w);
                _Pragma("GCC unroll 16")
                for (int c = 0; c < NC; c++) {
                    const __m256i p = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(aw, _mm256_sign_epi8(bcast32(xq[c] + 4 * e), w)), ones16);
                    sumi[c] = e == 0 ? p : _mm256_add_epi32(sumi[c], p);
                    Q_KEEP(sumi[c]);
                }
            }
        } else {
            __m256i qh = _mm256_setzero_si256();
            if (rb_q5(T)) qh = _mm256_loadu_si256((const __m256i *)(blk + rb_qh(T)));
            __m256i a[4];
            /* vectors in the order lo 0, hi 0 (elements 16..19), lo 1, hi 1, ...: Q5 sums 4 per int16 */
            _Pragma("GCC unroll 16")
            for (int v = 0; v < 4; v++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * v));
                __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                if (rb_q5(T)) {
                    /* group e's 5th bit (bit e of each byte) to bit 4: e = v (low), v + 4 (high) */
                    const __m256i hl = _mm256_slli_epi16(qh, 4 - v);
                    const __m256i hh = v == 0 ? qh : _mm256_srli_epi16(qh, v);
                    lo = _mm256_or_si256(lo, _mm256_and_si256(hl, m16));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(hh, m16));
                }
                _Pragma("GCC unroll 16")
                for (int c = 0; c < NC; c++) {
                    const __m256i p0 = _mm256_maddubs_epi16(lo, bcast32(xq[c] + 4 * v));
                    const __m256i p1 = _mm256_maddubs_epi16(hi, bcast32(xq[c] + 16 + 4 * v));
                    const __m256i p = _mm256_add_epi16(p0, p1);
                    const bool first = rb_q5(T) ? (v & 1) == 0 : v == 0;
                    a[c] = first ? p : _mm256_add_epi16(a[c], p);
                    Q_KEEP(a[c]);
                    if (rb_q5(T) && (v & 1)) {
                        const __m256i s = _mm256_madd_epi16(a[c], ones16);
                        sumi[c] = v == 1 ? s : _mm256_add_epi32(sumi[c], s);
                        Q_KEEP(sumi[c]);
                    }
                }
            }
            if (!rb_q5(T))
                _Pragma("GCC unroll 16")
                for (int c = 0; c < NC; c++) sumi[c] = _mm256_madd_epi16(a[c], ones16);
        }
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
        __m256 m8 = _mm256_setzero_ps();
        if (rb_min(T)) m8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16)));
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) {
            const rb_pre *p = pre + (size_t)c * (size_t)nb + i;
            __m256i s = sumi[c];
            if (T == R_Q4_0 || T == R_Q5_0) s = _mm256_sub_epi32(s, _mm256_set1_epi32(p->aux.i));
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(d8, _mm256_set1_ps(p->dx)), _mm256_cvtepi32_ps(s), acc[c]);
            if (rb_min(T)) acc[c] = _mm256_fmadd_ps(m8, _mm256_set1_ps(p->aux.f), acc[c]);
        }
    }
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(y + c * ys, acc[c]);
}

#define RB_KERNEL(name, T) RB_DRIVER(name, T, rb_tile, 0, 4)
RB_KERNEL(mm_q4_0_r8f, R_Q4_0)
RB_KERNEL(mm_q4_1_r8f, R_Q4_1)
RB_KERNEL(mm_q5_0_r8f, R_Q5_0)
RB_KERNEL(mm_q5_1_r8f, R_Q5_1)
RB_KERNEL(mm_q8_0_r8f, R_Q8_0)

quant_mm_fn quant_avx2_kernel_r8b(uint32_t wtype) {
    switch (wtype) {
    case MR_TYPE_Q4_0_R8F: return mm_q4_0_r8f;
    case MR_TYPE_Q4_1_R8F: return mm_q4_1_r8f;
    case MR_TYPE_Q5_0_R8F: return mm_q5_0_r8f;
    case MR_TYPE_Q5_1_R8F: return mm_q5_1_r8f;
    case MR_TYPE_Q8_0_R8F: return mm_q8_0_r8f;
    default: return NULL;
    }
}
