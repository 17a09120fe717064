/*
 * quant_r8_avx2.c — AVX2 kernels for the row-interleaved K-quants (Q4_K_R8,
 * Q5_K_R8, Q6_K_R8, and Q2_K_R8F, Q3_K_R8F, IQ4_XS_R8F; layouts in quant_impl.h) against Q8_K activations.
 *
 * A 32-byte weight vector holds 4 consecutive quants of each of 8 rows (lane r
 * = row r), and the matching 4 activation bytes are broadcast to every lane:
 * one vpmaddubsw computes 8 rows x 4 products, and an 8-row result is one
 * vector (no horizontal sums). Products of one sub-block are summed in int16
 * before the single vpmaddwd that applies its scale: 8 of them for Q4_K
 * (15 * 127 * 16 < 2^15), 4 for Q5_K (31 * 127 * 8), 2 for Q6_K (63 * 127 * 4),
 * instead of one vpmaddwd per vpmaddubsw as the GGUF-layout kernels need. The
 * multiply ports, the limit of those kernels, do about half the work.
 *
 * A tile is 8 rows x NC columns (NC <= 4, compile-time): the unpacked weights
 * of a block are shared by the NC columns. The minimums (Q4_K/Q5_K) and the
 * -32 offset (Q6_K) go through the activations' bsums as in the GGUF kernels.
 * Integer sums are exact; per block one float FMA per term, so results differ
 * from the GGUF-layout kernels only in float rounding order.
 */
#include "quant/quant_r8_avx2.h"

/* ---- Q4_K_R8 / Q5_K_R8 ------------------------------------------------------------------------ */

/* Operand m of sub-block 2 * j2 + h (qs vector 8 * j2 + m, its low or high nibbles, Q5_K with
 * the 5th bits) as k45_tile multiplies it. */
Q_INLINE __m256i k45_operand(const int Q5, const k45_blk *kb, int j2, int h, int m) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m16 = _mm256_set1_epi8(0x10);
    const __m256i q = _mm256_loadu_si256((const __m256i *)(kb->qs + 32 * (8 * j2 + m)));
    __m256i v = h ? _mm256_and_si256(_mm256_srli_epi16(q, 4), m4) : _mm256_and_si256(q, m4);
    if (Q5) {
        /* qs vector 8*j2 + m = 4w + p: bit 2p + h of qh vector w, to bit 4 */
        const int w = (8 * j2 + m) >> 2, p = (8 * j2 + m) & 3, sh = 4 - 2 * p - h;
        const __m256i hv = _mm256_loadu_si256((const __m256i *)(kb->qh + 32 * w));
        const __m256i hb = sh >= 0 ? _mm256_slli_epi16(hv, sh) : _mm256_srli_epi16(hv, -sh);
        v = _mm256_or_si256(v, _mm256_and_si256(hb, m16));
    }
    return v;
}

/* A Q4_K/Q5_K block unpacked once for every column tile of a prompt (k45_unpack, R8_DRIVER_BP):
 * for 4 columns the unpacking was a fifth (Q4_K) to a third (Q5_K) of the instructions. */
typedef struct {
    __m256i op[4][2][8]; /* [j2][h][m] */
    __m256i scv[4][2];
    k45_md md;
} k45_pre;
#define K45_PRE_MAX 32 /* blocks (k <= 8192): 78 KiB on the stack */

Q_INLINE void k45_unpack(const int Q5, const char *g, int64_t nb, k45_pre *pre, bool pf) {
    const size_t bsz = Q5 ? sizeof(blk_q5_K_r8) : sizeof(blk_q4_K_r8);
    for (int64_t i = 0; i < nb; i++) {
        k45_blk kb;
        if (pf) r8_prefetch(g + (size_t)i * bsz, bsz);
        k45_load(Q5, g + (size_t)i * bsz, &kb);
        k45_pre *P = pre + i;
        _Pragma("GCC unroll 16")
        for (int j2 = 0; j2 < 4; j2++)
            _Pragma("GCC unroll 16")
            for (int h = 0; h < 2; h++) {
                P->scv[j2][h] = _mm256_shuffle_epi8(j2 < 2 ? kb.sc0 : kb.sc1, r8_dup((2 * j2 + h) & 3));
                _Pragma("GCC unroll 16")
                for (int m = 0; m < 8; m++) P->op[j2][h][m] = k45_operand(Q5, &kb, j2, h, m);
            }
        k45_md_of(&kb, &P->md);
    }
}

/* 8 rows (group g, nb blocks) x NC columns; Q5: 5th bits from qh. y[c*ys + r]. With pre
 * (k45_unpack) the blocks come unpacked and g is not read. */
Q_INLINE void k45_tile(const int Q5, const int NC, const char *g, const k45_pre *pre, int64_t nb, const char *xv,
                       size_t xs, const int32_t *bp, float *y, int64_t ys, bool pf) {
    __m256 acc[4];
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    const size_t bsz = Q5 ? sizeof(blk_q5_K_r8) : sizeof(blk_q4_K_r8);
    for (int64_t i = 0; i < nb; i++) {
        k45_blk kb;
        const k45_pre *P = pre ? pre + i : NULL;
        if (!P) {
            const char *blk = g + (size_t)i * bsz;
            if (pf) r8_prefetch(blk, bsz);
            k45_load(Q5, blk, &kb);
        }
        const __m256i *mp = P ? P->md.mp : kb.mp;
        const __m256 d8 = P ? P->md.d8 : kb.d8, dm8 = P ? P->md.dm8 : kb.dm8;
        const blk_q8_K *xb[4];
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) xb[c] = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) {
            const __m256 m = _mm256_cvtepi32_ps(k8_mins_bp(mp, bp + 4 * ((size_t)c * (size_t)nb + (size_t)i)));
            acc[c] = _mm256_fnmadd_ps(_mm256_mul_ps(dm8, _mm256_set1_ps(xb[c]->d)), m, acc[c]);
        }
        __m256i sumi[4];
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) sumi[c] = _mm256_setzero_si256();
        _Pragma("GCC unroll 16")
        for (int j2 = 0; j2 < 4; j2++)
            _Pragma("GCC unroll 16")
            for (int h = 0; h < 2; h++) {
                /* sub-block 2*j2 + h: 8 vectors of 4 quants per row */
                const __m256i scv =
                    P ? P->scv[j2][h] : _mm256_shuffle_epi8(j2 < 2 ? kb.sc0 : kb.sc1, r8_dup((2 * j2 + h) & 3));
                __m256i a[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                                _mm256_setzero_si256()};
                _Pragma("GCC unroll 16")
                for (int m = 0; m < 8; m++) {
                    const __m256i v = P ? P->op[j2][h][m] : k45_operand(Q5, &kb, j2, h, m);
                    _Pragma("GCC unroll 16")
                    for (int c = 0; c < NC; c++) {
                        const __m256i p = _mm256_maddubs_epi16(v, bcast32(xb[c]->qs + 64 * j2 + 32 * h + 4 * m));
                        if (Q5 ? (m & 3) == 0 : m == 0) a[c] = p;
                        else a[c] = _mm256_add_epi16(a[c], p);
                        Q_KEEP(a[c]);
                        if (Q5 && (m & 3) == 3) { /* 4 products of up to 31 * 127 * 2 per int16 */
                            sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(a[c], scv));
                            Q_KEEP(sumi[c]);
                        }
                    }
                }
                if (!Q5)
                    _Pragma("GCC unroll 16")
                    for (int c = 0; c < NC; c++) {
                        sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(a[c], scv));
                        Q_KEEP(sumi[c]);
                    }
            }
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(d8, _mm256_set1_ps(xb[c]->d)), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
    }
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(y + c * ys, acc[c]);
}

/* ---- Q6_K_R8 ------------------------------------------------------------------------------------ */

/* Operand o (4 quants of each row: 6-bit, unsigned) as q6_tile multiplies it. */
Q_INLINE __m256i q6_operand(const blk_q6_K_r8 *b, int o) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i l = _mm256_loadu_si256((const __m256i *)(b->q + q6r8_ql(o & 31)));
    const __m256i hq = _mm256_loadu_si256((const __m256i *)(b->q + q6r8_qh(o & 15)));
    const __m256i lo = o < 32 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
    __m256i hi;
    switch (o >> 4) {
    case 0: hi = _mm256_and_si256(_mm256_slli_epi16(hq, 4), m30); break;
    case 1: hi = _mm256_and_si256(_mm256_slli_epi16(hq, 2), m30); break;
    case 2: hi = _mm256_and_si256(hq, m30); break;
    default: hi = _mm256_and_si256(_mm256_srli_epi16(hq, 2), m30); break;
    }
    return _mm256_or_si256(lo, hi);
}
Q_INLINE __m256i q6_scv(const blk_q6_K_r8 *b, int j) {
    const __m256i s = _mm256_loadu_si256((const __m256i *)(b->sc + 32 * (j >> 2)));
    return _mm256_srai_epi16(_mm256_shuffle_epi8(s, r8_pair_hi(j & 3, j & 3)), 8);
}

/* A Q6_K block unpacked once for every column tile of a prompt (q6_unpack, R8_DRIVER_PRE): for 4
 * columns the unpacking was about a third of the instructions. */
typedef struct {
    __m256i op[64];
    __m256i scv[16];
    __m256i sc[4];
    __m256 d8;
} q6_pre;
#define Q6_PRE_MAX 32 /* blocks (k <= 8192): 87 KiB on the stack */

Q_INLINE void q6_unpack(const char *g, int64_t nb, q6_pre *pre, bool pf) {
    for (int64_t i = 0; i < nb; i++) {
        const blk_q6_K_r8 *b = (const blk_q6_K_r8 *)g + i;
        if (pf) r8_prefetch((const char *)b, sizeof *b);
        q6_pre *P = pre + i;
        _Pragma("GCC unroll 16")
        for (int j = 0; j < 16; j++) P->scv[j] = q6_scv(b, j);
        _Pragma("GCC unroll 64")
        for (int o = 0; o < 64; o++) P->op[o] = q6_operand(b, o);
        for (int v4 = 0; v4 < 4; v4++) P->sc[v4] = _mm256_loadu_si256((const __m256i *)(b->sc + 32 * v4));
        P->d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->d));
    }
}

/* 8 rows x NC (<= 4) columns. With pre (q6_unpack) the blocks come unpacked and g is not read. */
Q_INLINE void q6_tile(const int NC, const char *g, const q6_pre *pre, int64_t nb, const char *xv, size_t xs, float *y,
                      int64_t ys, bool pf) {
    __m256 acc[4];
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const blk_q6_K_r8 *b = (const blk_q6_K_r8 *)g + i;
        const q6_pre *P = pre ? pre + i : NULL;
        if (!P && pf) r8_prefetch((const char *)b, sizeof *b);
        const blk_q8_K *xb[4];
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) xb[c] = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
        const __m256 d8 = P ? P->d8 : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->d));
        __m256i sumi[4];
        /* -32 * sum_j sc[j] * bsums[j]: the offset of the unsigned 6-bit quants */
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) sumi[c] = _mm256_setzero_si256();
        _Pragma("GCC unroll 16")
        for (int v4 = 0; v4 < 4; v4++) {
            const __m256i sv = P ? P->sc[v4] : _mm256_loadu_si256((const __m256i *)(b->sc + 32 * v4));
            _Pragma("GCC unroll 16")
            for (int c = 0; c < NC; c++) sumi[c] = _mm256_add_epi32(sumi[c], r8_scale_bsums(sv, xb[c]->bsums + 4 * v4));
        }
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) sumi[c] = _mm256_slli_epi32(sumi[c], 5), sumi[c] = _mm256_sub_epi32(_mm256_setzero_si256(), sumi[c]);
        _Pragma("GCC unroll 16")
        for (int j = 0; j < 16; j++) {
            /* sub-block j: operands 4j..4j+3 (4 quants per row each), in 2 pairs */
            const __m256i scv = P ? P->scv[j] : q6_scv(b, j);
            _Pragma("GCC unroll 16")
            for (int pp = 0; pp < 2; pp++) {
                const int o0 = 4 * j + 2 * pp;
                const __m256i v0 = P ? P->op[o0] : q6_operand(b, o0), v1 = P ? P->op[o0 + 1] : q6_operand(b, o0 + 1);
                _Pragma("GCC unroll 16")
                for (int c = 0; c < NC; c++) {
                    const __m256i p0 = _mm256_maddubs_epi16(v0, bcast32(xb[c]->qs + 4 * o0));
                    const __m256i p1 = _mm256_maddubs_epi16(v1, bcast32(xb[c]->qs + 4 * o0 + 4));
                    sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(_mm256_add_epi16(p0, p1), scv));
                    Q_KEEP(sumi[c]);
                }
            }
        }
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(d8, _mm256_set1_ps(xb[c]->d)), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
    }
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(y + c * ys, acc[c]);
}

/* ---- Q3_K_R8F / Q2_K_R8F ------------------------------------------------------------------------- */

/* Q3_K: the 16 6-bit scales of 8 rows minus 32, as 4 vectors of signed bytes in K8_SIDX(j & 3, r)
 * order (vector j / 4), the layout of Q6_K_R8's sc. */
Q_INLINE void q3_scales(const blk_q3_K_r8 *b, __m256i S[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), b32 = _mm256_set1_epi8(32);
    const __m256i A = _mm256_loadu_si256((const __m256i *)b->scl), B = _mm256_loadu_si256((const __m256i *)(b->scl + 32));
    const __m256i H = _mm256_loadu_si256((const __m256i *)b->sch);
    S[0] = _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
    S[1] = _mm256_or_si256(_mm256_and_si256(B, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
    S[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4), _mm256_and_si256(H, m30));
    S[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4), _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
    for (int i = 0; i < 4; i++) S[i] = _mm256_sub_epi8(S[i], b32);
}

/* Q3_K (Q3 = 1) / Q2_K: u = the 2-bit quant (| Q3_K's high bit << 2), 0..7; per sub-block j (16
 * elements = operand groups o = 4j..4j+3) the 4 products in int16 (at most 4 * 2 * 7 * 127), one
 * vpmaddwd with the scale. Q3_K's -4 offset goes into the integer sum through the bsums, Q2_K's
 * minimums (dmin * sum_j m[j] * bsums[j]) are subtracted in float. */
Q_INLINE void k23_tile(const int Q3, const int NC, const char *g, int64_t nb, const char *xv, size_t xs, float *y,
                       int64_t ys, bool pf) {
    const __m256i m3 = _mm256_set1_epi8(0x03), m4 = _mm256_set1_epi8(0x0F), m4b = _mm256_set1_epi8(0x04);
    const size_t bsz = Q3 ? sizeof(blk_q3_K_r8) : sizeof(blk_q2_K_r8);
    __m256 acc[4];
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const char *blk = g + (size_t)i * bsz;
        if (pf) r8_prefetch(blk, bsz);
        const uint8_t *qs = Q3 ? ((const blk_q3_K_r8 *)blk)->qs : ((const blk_q2_K_r8 *)blk)->qs;
        const blk_q8_K *xb[4];
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) xb[c] = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk)); /* d[8] leads both */
        /* S: the scales; Q3_K: sumi starts at -4 * sum_j s[j] * bsums[j]; Q2_K: msum = sum_j m[j] * bsums[j] */
        __m256i S[4], msum[4], sumi[4];
        if (Q3) q3_scales((const blk_q3_K_r8 *)blk, S);
        _Pragma("GCC unroll 16")
        for (int v4 = 0; v4 < 4; v4++) {
            __m256i T = S[v4];
            if (!Q3) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(((const blk_q2_K_r8 *)blk)->sc + 32 * v4));
                S[v4] = _mm256_and_si256(raw, m4);
                T = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            }
            _Pragma("GCC unroll 16")
            for (int c = 0; c < NC; c++) {
                const __m256i t = r8_scale_bsums(T, xb[c]->bsums + 4 * v4);
                msum[c] = v4 == 0 ? t : _mm256_add_epi32(msum[c], t);
            }
        }
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++)
            sumi[c] = Q3 ? _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(msum[c], 2)) : _mm256_setzero_si256();
        _Pragma("GCC unroll 16")
        for (int j = 0; j < 16; j++) {
            const __m256i scv = _mm256_srai_epi16(_mm256_shuffle_epi8(S[j >> 2], r8_pair_hi(j & 3, j & 3)), 8);
            __m256i a[4];
            _Pragma("GCC unroll 16")
            for (int e = 0; e < 4; e++) {
                const int o = 4 * j + e, k = o >> 4, bit = o >> 3;
                const __m256i l = _mm256_loadu_si256((const __m256i *)(qs + 32 * (o & 15)));
                __m256i v = _mm256_and_si256(k ? _mm256_srli_epi16(l, 2 * k) : l, m3);
                if (Q3) {
                    const __m256i h = _mm256_loadu_si256((const __m256i *)(((const blk_q3_K_r8 *)blk)->hm + 32 * (o & 7)));
                    const __m256i hs = bit == 2 ? h : bit < 2 ? _mm256_slli_epi16(h, 2 - bit) : _mm256_srli_epi16(h, bit - 2);
                    v = _mm256_or_si256(v, _mm256_and_si256(hs, m4b));
                }
                _Pragma("GCC unroll 16")
                for (int c = 0; c < NC; c++) {
                    const __m256i p = _mm256_maddubs_epi16(v, bcast32(xb[c]->qs + 4 * o));
                    a[c] = e == 0 ? p : _mm256_add_epi16(a[c], p);
                    Q_KEEP(a[c]);
                }
            }
            _Pragma("GCC unroll 16")
            for (int c = 0; c < NC; c++) {
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(a[c], scv));
                Q_KEEP(sumi[c]);
            }
        }
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) {
            const __m256 dx = _mm256_set1_ps(xb[c]->d);
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(d8, dx), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
            if (!Q3) {
                const __m256 dm8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const blk_q2_K_r8 *)blk)->dmin));
                acc[c] = _mm256_fnmadd_ps(_mm256_mul_ps(dm8, dx), _mm256_cvtepi32_ps(msum[c]), acc[c]);
            }
        }
    }
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(y + c * ys, acc[c]);
}

/* ---- IQ4_XS_R8F ---------------------------------------------------------------------------------- */

/* Non-linear signed values (table lookup by vpshufb), so the sign trick: |w| times sign(w) * x, one
 * vpmaddwd with the sub-block scale per product vector (pairs up to 2 * 127 * 127). */
Q_INLINE void iq4xs_tile(const int NC, const char *g, int64_t nb, const char *xv, size_t xs, float *y, int64_t ys,
                         bool pf) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x03), b32 = _mm256_set1_epi8(32);
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)quant_iq4nl_values));
    __m256 acc[4];
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const blk_iq4_xs_r8 *b = (const blk_iq4_xs_r8 *)g + i;
        if (pf) r8_prefetch((const char *)b, sizeof *b);
        const blk_q8_K *xb[4];
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) xb[c] = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->d));
        /* scales of sub-blocks 0-3 (S0) and 4-7 (S1), K8_SIDX(ib & 3, r) order, minus 32 */
        const __m256i A = _mm256_loadu_si256((const __m256i *)b->scl);
        const __m256i hw = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)b->sch));
        const __m256i H = _mm256_or_si256(_mm256_and_si256(hw, _mm256_set1_epi16(0x0F)),
                                          _mm256_and_si256(_mm256_slli_epi16(hw, 4), _mm256_set1_epi16(0x0F00)));
        const __m256i S0 = _mm256_sub_epi8(
            _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_slli_epi16(_mm256_and_si256(H, m3), 4)), b32);
        const __m256i S1 = _mm256_sub_epi8(
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(H, 2), m3), 4)),
            b32);
        __m256i sumi[4];
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) sumi[c] = _mm256_setzero_si256();
        _Pragma("GCC unroll 16")
        for (int ib = 0; ib < 8; ib++) {
            const __m256i scv = _mm256_srai_epi16(_mm256_shuffle_epi8(ib < 4 ? S0 : S1, r8_pair_hi(ib & 3, ib & 3)), 8);
            _Pragma("GCC unroll 16")
            for (int m = 0; m < 4; m++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * (4 * ib + m)));
                const __m256i wl = _mm256_shuffle_epi8(tbl, _mm256_and_si256(q, m4));
                const __m256i wh = _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
                const __m256i al = _mm256_sign_epi8(wl, wl), ah = _mm256_sign_epi8(wh, wh);
                _Pragma("GCC unroll 16")
                for (int c = 0; c < NC; c++) {
                    const int8_t *xq = xb[c]->qs + 32 * ib + 4 * m;
                    const __m256i pl = _mm256_maddubs_epi16(al, _mm256_sign_epi8(bcast32(xq), wl));
                    const __m256i ph = _mm256_maddubs_epi16(ah, _mm256_sign_epi8(bcast32(xq + 16), wh));
                    sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(_mm256_madd_epi16(pl, scv), _mm256_madd_epi16(ph, scv)));
                    Q_KEEP(sumi[c]);
                }
            }
        }
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(d8, _mm256_set1_ps(xb[c]->d)), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
    }
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(y + c * ys, acc[c]);
}

/* ---- exact kernels: the GGUF-layout kernels' float operations, bit for bit ------------------------
 *
 * The GGUF-layout kernels (quant_k_avx2.c, quant_kmm_avx2.c) follow ggml's AVX2 dot products:
 * per block, int32 lane L (of 8) sums the products of bytes 4L..4L+3 of every 32-byte chunk,
 * each scaled by its sub-block scale; the lane is converted to float and accumulated with one
 * FMA per block; the 8 lanes are summed at the end as ((0+4)+(2+6))+((1+5)+(3+7)). In the R8
 * layout those bytes are vectors 8*j2 + L (Q4_K/Q5_K) or operands o = 8t + L (Q6_K), so
 * keeping one int32 and one float accumulator per L (each a vector over the 8 rows) gives
 * the same values. One vpmaddwd per vpmaddubsw, as there: this is for decoding, where the
 * R8 layout's gain is the missing horizontal sums, shuffles and scalar scale unpacking. */

/* The lanes' sum in ggml's order, for 8 rows at once. */
Q_INLINE __m256 r8_hsum8(const __m256 f[8]) {
    const __m256 s0 = _mm256_add_ps(f[0], f[4]), s1 = _mm256_add_ps(f[1], f[5]);
    const __m256 s2 = _mm256_add_ps(f[2], f[6]), s3 = _mm256_add_ps(f[3], f[7]);
    return _mm256_add_ps(_mm256_add_ps(s0, s2), _mm256_add_ps(s1, s3));
}

Q_INLINE void k45x_tile(const int Q5, const int NC, const char *g, int64_t nb, const char *xv, size_t xs, float *y,
                        int64_t ys, bool pf) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m16 = _mm256_set1_epi8(0x10);
    __m256 acc[4][8], accm[4][4], summs[4];
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) {
        _Pragma("GCC unroll 16")
        for (int l = 0; l < 8; l++) acc[c][l] = _mm256_setzero_ps();
        _Pragma("GCC unroll 16")
        for (int l = 0; l < 4; l++) accm[c][l] = _mm256_setzero_ps();
        summs[c] = _mm256_setzero_ps();
    }
    const size_t bsz = Q5 ? sizeof(blk_q5_K_r8) : sizeof(blk_q4_K_r8);
    for (int64_t i = 0; i < nb; i++) {
        const char *blk = g + (size_t)i * bsz;
        if (pf) r8_prefetch(blk, bsz);
        k45_blk kb;
        k45_load(Q5, blk, &kb);
        const uint8_t *qs = kb.qs, *qh = kb.qh;
        const __m256i sc0 = kb.sc0, sc1 = kb.sc1;
        const __m256 d8 = kb.d8, dm8 = kb.dm8;
        const blk_q8_K *xb[4];
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) xb[c] = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
        __m256i sv[8];
        _Pragma("GCC unroll 16")
        for (int j = 0; j < 8; j++) sv[j] = _mm256_shuffle_epi8(j < 4 ? sc0 : sc1, r8_dup(j & 3));
        _Pragma("GCC unroll 16")
        for (int L = 0; L < 8; L++) {
            __m256i sumi[4];
            _Pragma("GCC unroll 16")
            for (int c = 0; c < NC; c++) sumi[c] = _mm256_setzero_si256();
            _Pragma("GCC unroll 16")
            for (int j2 = 0; j2 < 4; j2++) {
                const int v = 8 * j2 + L;
                const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * v));
                __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                if (Q5) {
                    const int w = v >> 2, p = v & 3, sh = 4 - 2 * p;
                    const __m256i hv = _mm256_loadu_si256((const __m256i *)(qh + 32 * w));
                    const __m256i hl = sh >= 0 ? _mm256_slli_epi16(hv, sh) : _mm256_srli_epi16(hv, -sh);
                    const __m256i hh = sh - 1 >= 0 ? _mm256_slli_epi16(hv, sh - 1) : _mm256_srli_epi16(hv, 1 - sh);
                    lo = _mm256_or_si256(lo, _mm256_and_si256(hl, m16));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(hh, m16));
                }
                _Pragma("GCC unroll 16")
                for (int c = 0; c < NC; c++) {
                    const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, bcast32(xb[c]->qs + 64 * j2 + 4 * L)),
                                                         sv[2 * j2]);
                    const __m256i p1 = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(hi, bcast32(xb[c]->qs + 64 * j2 + 32 + 4 * L)), sv[2 * j2 + 1]);
                    sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(p0, p1));
                    Q_KEEP(sumi[c]);
                }
            }
            _Pragma("GCC unroll 16")
            for (int c = 0; c < NC; c++)
                acc[c][L] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(xb[c]->d), d8), _mm256_cvtepi32_ps(sumi[c]),
                                            acc[c][L]);
        }
        /* minimums: lane P of 4 holds the sub-block pair (2P, 2P+1) */
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) {
            const __m256 nd = _mm256_mul_ps(_mm256_set1_ps(xb[c]->d), _mm256_sub_ps(_mm256_setzero_ps(), dm8));
            if (Q5) { /* one int32 sum (exact in any order), as ggml's Q5_K */
                summs[c] = _mm256_add_ps(summs[c], _mm256_mul_ps(nd, _mm256_cvtepi32_ps(k8_mins(kb.mp, xb[c]))));
            } else { /* ggml's Q4_K keeps the 4 terms in float lanes */
                __m256i t[4];
                k8_min_terms(kb.mp, xb[c], t);
                _Pragma("GCC unroll 16")
                for (int P = 0; P < 4; P++) accm[c][P] = _mm256_fmadd_ps(nd, _mm256_cvtepi32_ps(t[P]), accm[c][P]);
            }
        }
    }
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) {
        const __m256 m = Q5 ? summs[c]
                            : _mm256_add_ps(_mm256_add_ps(accm[c][0], accm[c][2]), _mm256_add_ps(accm[c][1], accm[c][3]));
        _mm256_storeu_ps(y + c * ys, _mm256_add_ps(r8_hsum8(acc[c]), m));
    }
}

Q_INLINE void q6x_tile(const int NC, const char *g, int64_t nb, const char *xv, size_t xs, float *y, int64_t ys,
                       bool pf) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256 acc[4][8];
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) {
        _Pragma("GCC unroll 16")
        for (int l = 0; l < 8; l++) acc[c][l] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < nb; i++) {
        const blk_q6_K_r8 *b = (const blk_q6_K_r8 *)g + i;
        if (pf) r8_prefetch((const char *)b, sizeof *b);
        const blk_q8_K *xb[4];
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) xb[c] = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->d));
        _Pragma("GCC unroll 16")
        for (int L = 0; L < 8; L++) {
            /* lane L starts at -32 * (sc[2L] * bsums[2L] + sc[2L+1] * bsums[2L+1]) */
            const __m256i sl = _mm256_loadu_si256((const __m256i *)(b->sc + 32 * (L >> 1)));
            const __m256i sp = _mm256_srai_epi16(_mm256_shuffle_epi8(sl, r8_pair_hi((2 * L) & 3, (2 * L + 1) & 3)), 8);
            __m256i sumi[4];
            _Pragma("GCC unroll 16")
            for (int c = 0; c < NC; c++)
                sumi[c] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                           _mm256_slli_epi32(_mm256_madd_epi16(sp, bcast32(xb[c]->bsums + 2 * L)), 5));
            _Pragma("GCC unroll 16")
            for (int t = 0; t < 8; t++) {
                const int o = 8 * t + L, j = o >> 2;
                const __m256i l = _mm256_loadu_si256((const __m256i *)(b->q + q6r8_ql(o & 31)));
                const __m256i hq = _mm256_loadu_si256((const __m256i *)(b->q + q6r8_qh(o & 15)));
                const __m256i lo = o < 32 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
                const int s2 = o >> 4;
                const __m256i hs = s2 == 0 ? _mm256_slli_epi16(hq, 4) : s2 == 1 ? _mm256_slli_epi16(hq, 2)
                                   : s2 == 2 ? hq : _mm256_srli_epi16(hq, 2);
                const __m256i v = _mm256_or_si256(lo, _mm256_and_si256(hs, m30));
                const __m256i ss = _mm256_loadu_si256((const __m256i *)(b->sc + 32 * (j >> 2)));
                const __m256i scv = _mm256_srai_epi16(_mm256_shuffle_epi8(ss, r8_pair_hi(j & 3, j & 3)), 8);
                _Pragma("GCC unroll 16")
                for (int c = 0; c < NC; c++) {
                    sumi[c] = _mm256_add_epi32(
                        sumi[c], _mm256_madd_epi16(_mm256_maddubs_epi16(v, bcast32(xb[c]->qs + 4 * o)), scv));
                    Q_KEEP(sumi[c]);
                }
            }
            _Pragma("GCC unroll 16")
            for (int c = 0; c < NC; c++)
                acc[c][L] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(xb[c]->d), d8), _mm256_cvtepi32_ps(sumi[c]),
                                            acc[c][L]);
        }
    }
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(y + c * ys, r8_hsum8(acc[c]));
}

/* ---- drivers --------------------------------------------------------------------------------------- */

#define Q4_TILE(N, ...) k45_tile(0, N, __VA_ARGS__)
#define Q5_TILE(N, ...) k45_tile(1, N, __VA_ARGS__)
#define Q4X_TILE(N, ...) k45x_tile(0, N, __VA_ARGS__)
#define Q5X_TILE(N, ...) k45x_tile(1, N, __VA_ARGS__)
#define Q4_UNPACK(...) k45_unpack(0, __VA_ARGS__)
#define Q5_UNPACK(...) k45_unpack(1, __VA_ARGS__)
R8_DRIVER_BP(mm_q4_K_r8f, Q4_TILE, 4, k45_pre, K45_PRE_MAX, Q4_UNPACK)
R8_DRIVER_BP(mm_q5_K_r8f, Q5_TILE, 4, k45_pre, K45_PRE_MAX, Q5_UNPACK)
R8_DRIVER_PRE(mm_q6_K_r8f, q6_tile, 4, q6_pre, Q6_PRE_MAX, q6_unpack)
#define Q3_TILE(N, ...) k23_tile(1, N, __VA_ARGS__)
#define Q2_TILE(N, ...) k23_tile(0, N, __VA_ARGS__)
R8_DRIVER(mm_q3_K_r8f, Q3_TILE)
R8_DRIVER(mm_q2_K_r8f, Q2_TILE)
R8_DRIVER(mm_iq4_xs_r8f, iq4xs_tile)
R8_DRIVER(mm_q4_K_r8, Q4X_TILE)
R8_DRIVER(mm_q5_K_r8, Q5X_TILE)
R8_DRIVER(mm_q6_K_r8, q6x_tile)

quant_mm_fn quant_avx2_kernel_r8(uint32_t wtype) {
    switch (wtype) {
    case MR_TYPE_Q4_K_R8: return mm_q4_K_r8;
    case MR_TYPE_Q5_K_R8: return mm_q5_K_r8;
    case MR_TYPE_Q6_K_R8: return mm_q6_K_r8;
    case MR_TYPE_Q4_K_R8F: return mm_q4_K_r8f;
    case MR_TYPE_Q5_K_R8F: return mm_q5_K_r8f;
    case MR_TYPE_Q6_K_R8F: return mm_q6_K_r8f;
    case MR_TYPE_Q3_K_R8F: return mm_q3_K_r8f;
    case MR_TYPE_Q2_K_R8F: return mm_q2_K_r8f;
    case MR_TYPE_IQ4_XS_R8F: return mm_iq4_xs_r8f;
    default: return quant_avx2_kernel_r8b(wtype);
    }
}
