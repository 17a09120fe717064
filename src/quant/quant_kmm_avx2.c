/*
 * quant_kmm_avx2.c — AVX2 matmul kernels for prompts: one weight row x up to
 * 8 activation columns (Q4_K, Q5_K, Q6_K against Q8_K).
 *
 * The 4-row kernels of quant_k_avx2.c unpack a row's quants and sub-block
 * scales for one or two columns; here they are unpacked once per 64 elements
 * and used for up to 8 columns, so unpacking and the per-super-block scale
 * work (scales, mins, fp16 conversions) are amortised over 8 columns (Q4_K:
 * the columns' bsums pair sums and scales are precomputed once per column
 * group). Per (row, column) the float operations are those of the 4-row
 * kernels in the same order, so results are bit-identical to them (integer
 * sums are exact): a matvec equals column 0 of a matmul (test_quant_dot).
 */
#include "quant/quant_avx2.h"

/* ---- Q4_K: 1 row x NC columns ---------------------------------------------------------- */
/* Per column and super-block, precomputed once per column group: the
 * activation scale d (8 lanes) and the pair sums bsums[2s] + bsums[2s+1] of
 * the 8 sub-blocks (int16), as the 4-row kernels compute them. */
typedef struct { float d[8]; int16_t bs[8]; } q4k_colpre;

Q_INLINE void q4k_pre(const char *xv, size_t xs, int n, int64_t nb, q4k_colpre *pre) {
    for (int c = 0; c < n; c++)
        for (int64_t i = 0; i < nb; i++) {
            const blk_q8_K *xb = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
            const __m128i bs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)xb->bsums),
                                              _mm_loadu_si128((const __m128i *)(xb->bsums + 8)));
            q4k_colpre *p = pre + i * 8 + c;
            _mm256_storeu_ps(p->d, _mm256_set1_ps(xb->d));
            _mm_storeu_si128((__m128i *)p->bs, bs);
        }
}

/* IS5: Q5_K (the same layout plus 32 bytes qh: bit s of byte l is the 5th
 * bit of element 32s + l), else Q4_K. */
Q_INLINE void k45_1xn(const bool IS5, const int NC, const char *w, int64_t k, const char *xv, size_t xs,
                      const q4k_colpre *pre, float *out) {
    const int64_t nb = k / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[8];
    __m128 accm[8]; /* Q4_K: the minimums' term in 4 lanes (as quant_k_avx2.c and ggml) */
    float summs[8]; /* Q5_K: the same as a scalar sum */
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps(), accm[c] = _mm_setzero_ps(), summs[c] = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        /* Q4_K and Q5_K share d, dmin, scales[12], then qs (Q5_K: qh first) */
        const blk_q4_K *b = IS5 ? NULL : (const blk_q4_K *)w + i;
        const blk_q5_K *b5 = IS5 ? (const blk_q5_K *)w + i : NULL;
        const uint16_t hd = IS5 ? b5->d : b->d, hdmin = IS5 ? b5->dmin : b->dmin;
        const uint8_t *qs = IS5 ? b5->qs : b->qs;
        const __m256i qh = IS5 ? _mm256_loadu_si256((const __m256i *)b5->qh) : _mm256_setzero_si256();
        uint32_t u[4];
        k4_unpack(IS5 ? b5->scales : b->scales, u);
        const __m256i sv = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)u[1], (int)u[0])));
        __m256i sumi[8];
        for (int c = 0; c < NC; c++) sumi[c] = _mm256_setzero_si256();
        /* one 32-element sub-block at a time: its quants and scale in two
         * registers, the column sums pinned in registers (Q_KEEP) */
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * (s / 2)));
            __m256i v = _mm256_and_si256(s & 1 ? _mm256_srli_epi16(q, 4) : q, m4);
            if (IS5) /* bit s of each qh byte -> 0x10 */
                v = _mm256_or_si256(v, _mm256_and_si256(s <= 4 ? _mm256_slli_epi16(qh, 4 - s) : _mm256_srli_epi16(qh, s - 4),
                                                        _mm256_set1_epi8(0x10)));
            const __m256i sc = k4_scale(sv, s);
            for (int c = 0; c < NC; c++) {
                const blk_q8_K *xb = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
                const __m256i y = _mm256_loadu_si256((const __m256i *)(xb->qs + 32 * s));
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(_mm256_maddubs_epi16(v, y), sc));
                Q_KEEP(sumi[c]);
            }
        }
        /* per column exactly the 4-row kernels' float operations: yd*wd, -yd*wdmin */
        const __m256 wd = _mm256_set1_ps(q_h2f(hd)), nwdmin = _mm256_set1_ps(-q_h2f(hdmin));
        const __m128i mins = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)u[3], (int)u[2]));
        const q4k_colpre *p = pre + i * 8;
        for (int c = 0; c < NC; c++) {
            const __m256 yd = _mm256_loadu_ps(p[c].d);
            const __m128 m = _mm_cvtepi32_ps(_mm_madd_epi16(mins, _mm_loadu_si128((const __m128i *)p[c].bs)));
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(yd, wd), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
            if (IS5) {
                const int32_t im = q_hsum_i32x4(_mm_madd_epi16(mins, _mm_loadu_si128((const __m128i *)p[c].bs)));
                const float t = p[c].d[0] * -q_h2f(hdmin) * (float)im;
                summs[c] = summs[c] + t;
            } else accm[c] = _mm_fmadd_ps(_mm256_castps256_ps128(_mm256_mul_ps(yd, nwdmin)), m, accm[c]);
        }
    }
    for (int c = 0; c < NC; c++) out[c] = IS5 ? q_hsum256(acc[c]) + summs[c] : q_hsum256(acc[c]) + q_hsum128(accm[c]);
}

#define Q4K_MAX_NB 64 /* k <= 16384 for the precomputed column table (else the 4-row kernels) */

Q_INLINE void gemm_k45(const bool IS5, const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs,
                       int64_t nc, float *y, int64_t ys) {
    const char *w = (const char *)W, *x = (const char *)xq;
    const int64_t nb = k / QK_K;
    q4k_colpre pre[Q4K_MAX_NB * 8];
#define K45_ONE(NC) k45_1xn(IS5, NC, wr, k, xc, xs, pre, o)
    Q_GEMM_COLS8(q4k_pre(xc, xs, n, nb, pre), K45_ONE)
#undef K45_ONE
}

void quant_avx2_gemm_q4_K(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs, int64_t nc,
                          float *y, int64_t ys) {
    gemm_k45(false, W, ws, k, nr, xq, xs, nc, y, ys);
}
void quant_avx2_gemm_q5_K(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs, int64_t nc,
                          float *y, int64_t ys) {
    gemm_k45(true, W, ws, k, nr, xq, xs, nc, y, ys);
}

/* ---- Q6_K: 1 row x NC columns ---------------------------------------------------------- */
Q_INLINE void q6k_1xn(const int NC, const char *w, int64_t k, const char *xv, size_t xs, float *out) {
    const int64_t nb = k / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256 acc[8];
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const blk_q6_K *b = (const blk_q6_K *)w + i;
        const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
        const __m256i slo = _mm256_permute2x128_si256(s16, s16, 0x00);
        const __m256i shi = _mm256_permute2x128_si256(s16, s16, 0x11);
        __m256i sumi[8];
        for (int c = 0; c < NC; c++) {
            const blk_q8_K *xb = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
            const __m256i bsums = _mm256_loadu_si256((const __m256i *)xb->bsums);
            sumi[c] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(s16, bsums), 5));
        }
        /* the 8 scale pairs once (the madds take them from L1), then one
         * 32-element group at a time: quants in one register, the column
         * sums pinned in registers (Q_KEEP) */
        __m256i scp[8];
        for (int p = 0; p < 8; p++) scp[p] = q6_scale_pair(slo, shi, p);
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++) {
            const int h = t / 4, g = t % 4;
            const __m256i l = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32 * (g & 1)));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
            const __m256i lq = g < 2 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
            const __m256i hq = g == 0 ? _mm256_slli_epi16(qh, 4) : g == 1 ? _mm256_slli_epi16(qh, 2)
                               : g == 2 ? qh : _mm256_srli_epi16(qh, 2);
            const __m256i v = _mm256_or_si256(lq, _mm256_and_si256(hq, m30));
            for (int c = 0; c < NC; c++) {
                const blk_q8_K *xb = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
                const __m256i yv = _mm256_loadu_si256((const __m256i *)(xb->qs + 128 * h + 32 * g));
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(_mm256_maddubs_epi16(v, yv), scp[t]));
                Q_KEEP(sumi[c]);
            }
        }
        const float wd = q_h2f(b->d);
        for (int c = 0; c < NC; c++) {
            const blk_q8_K *xb = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(xb->d * wd), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
        }
    }
    for (int c = 0; c < NC; c++) out[c] = q_hsum256(acc[c]);
}

/* Column groups of 8 outer, rows inner: the group's activations (8 x ~2.3 KB
 * at k = 2048) stay in L1 while the rows (L2-resident chunk) stream past. */
void quant_avx2_gemm_q6_K(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs, int64_t nc,
                          float *y, int64_t ys) {
    const char *w = (const char *)W, *x = (const char *)xq;
#define Q6K_ONE(NC) q6k_1xn(NC, wr, k, xc, xs, o)
    Q_GEMM_COLS8((void)0, Q6K_ONE)
#undef Q6K_ONE
}

