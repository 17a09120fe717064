/*
 * quant_k_avx2.c — AVX2 dot kernels for the K-quants (Q2_K, Q3_K, Q4_K, Q5_K,
 * Q6_K) and IQ4_XS against Q8_K activations.
 *
 * Per 256-element super-block and row: integer products with maddubs (unsigned
 * weight quants x signed activations), scaled by the 6/8-bit sub-block scales
 * with madd, summed in int32, then one float FMA with d(weight)*d(act). The
 * sub-block minimums (Q2_K/Q4_K/Q5_K) and the offsets of Q3_K (-4) and Q6_K
 * (-32) are applied through the activations' bsums, so the unsigned quants
 * never need re-centring.
 */
#include "quant/quant_avx2.h"

/* Sum over the 8 sub-blocks of min[j] * (bsums[2j] + bsums[2j+1]), as 4 int32 lanes. */
Q_INLINE __m128i k4_mins(const uint32_t u[4], __m128i bs_pairs) {
    const __m128i mins = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)u[3], (int)u[2]));
    return _mm_madd_epi16(mins, bs_pairs);
}

/* Q5_K minimums, as ggml: summs += dmin * (float)(exact int sum of the 4 lanes). */
Q_INLINE float k5_summs(float summs, float dmin, __m128i prod) {
    const int32_t im = q_hsum_i32x4(prod);
    const float t = dmin * (float)im;
    return summs + t;
}

/* ---- Q4_K ------------------------------------------------------------------------------ */

/* Rows are processed one after the other inside each super-block (the
 * activation block stays in L1), which keeps the live registers few. NC
 * columns (1 or 2, at xv and xv + xs) share each row's unpacked quants;
 * out[r*NC + c]. */
Q_INLINE void q4k_tile(const int NR, const int NC, const char *w, size_t ws, int64_t k, const char *xv, size_t xs,
                       float *out, const char *pf) {
    const int64_t nb = k / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[4][2];
    __m128 accm[4][2]; /* the minimums' term, apart as in ggml */
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++) acc[r][c] = _mm256_setzero_ps(), accm[r][c] = _mm_setzero_ps();
    const size_t pfs = q_pf_step((size_t)NR * ws, nb);
    for (int64_t i = 0; i < nb; i++) {
        q_prefetch(pf, pfs, i);
        const blk_q8_K *xb[2];
        __m128i bs[2];
        for (int c = 0; c < NC; c++) {
            xb[c] = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
            bs[c] = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)xb[c]->bsums),
                                   _mm_loadu_si128((const __m128i *)(xb[c]->bsums + 8)));
        }
        for (int r = 0; r < NR; r++) {
            const blk_q4_K *b = (const blk_q4_K *)(w + (size_t)r * ws) + i;
            uint32_t u[4];
            k4_unpack(b->scales, u);
            const __m256i sv = k4_scale_vec(u);
            __m256i sumi[2];
            for (int c = 0; c < NC; c++) sumi[c] = _mm256_setzero_si256();
            for (int j = 0; j < 4; j++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * j));
                const __m256i lo = _mm256_and_si256(q, m4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                const __m256i s0 = k4_scale(sv, 2 * j), s1 = k4_scale(sv, 2 * j + 1);
                for (int c = 0; c < NC; c++) {
                    const __m256i y0 = _mm256_loadu_si256((const __m256i *)(xb[c]->qs + 64 * j));
                    const __m256i y1 = _mm256_loadu_si256((const __m256i *)(xb[c]->qs + 64 * j + 32));
                    const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), s0);
                    const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), s1);
                    sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(p0, p1));
                    Q_KEEP(sumi[c]);
                }
            }
            const float wd = q_h2f(b->d), wdmin = q_h2f(b->dmin);
            for (int c = 0; c < NC; c++) {
                const __m128 m = _mm_cvtepi32_ps(k4_mins(u, bs[c]));
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(xb[c]->d * wd), _mm256_cvtepi32_ps(sumi[c]), acc[r][c]);
                accm[r][c] = _mm_fmadd_ps(_mm_set1_ps(-xb[c]->d * wdmin), m, accm[r][c]);
            }
        }
    }
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++) out[r * NC + c] = q_hsum256(acc[r][c]) + q_hsum128(accm[r][c]);
}

static void q4k_dot4(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { q4k_tile(4, 1, w, ws, k, x, 0, o, pf); }
static void q4k_dot1(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { q4k_tile(1, 1, w, ws, k, x, 0, o, pf); }
static void q4k_dot4x2(const char *w, size_t ws, int64_t k, const char *x, size_t xs, float *o, const char *pf) {
    q4k_tile(4, 2, w, ws, k, x, xs, o, pf);
}
QUANT_DEFINE_MM2(mm_q4_K_tiles, q4k_dot4, q4k_dot1, q4k_dot4x2)
/* prompts (>= 4 columns): 1 row x 8 columns (quant_kmm_avx2.c) */
static void mm_q4_K(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs, int64_t nc, float *y,
                    int64_t ys) {
    if (nc >= 4 && k <= 64 * QK_K) quant_avx2_gemm_q4_K(W, ws, k, nr, xq, xs, nc, y, ys);
    else mm_q4_K_tiles(W, ws, k, nr, xq, xs, nc, y, ys);
}

/* ---- Q5_K ------------------------------------------------------------------------------ */

Q_INLINE void q5k_rows(const int NR, const char *w, size_t ws, int64_t k, const char *xv, float *out, const char *pf) {
    const int64_t nb = k / QK_K;
    const blk_q8_K *x = (const blk_q8_K *)xv;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m16 = _mm256_set1_epi8(0x10), m1 = _mm256_set1_epi8(1);
    __m256 acc[4];
    float summs[4]; /* the minimums' term, a scalar sum as in ggml */
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps(), summs[r] = 0.0f;
    const size_t pfs = q_pf_step((size_t)NR * ws, nb);
    for (int64_t i = 0; i < nb; i++) {
        q_prefetch(pf, pfs, i);
        const blk_q8_K *xb = x + i;
        const __m128i bs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)xb->bsums),
                                          _mm_loadu_si128((const __m128i *)(xb->bsums + 8)));
        for (int r = 0; r < NR; r++) {
            const blk_q5_K *b = (const blk_q5_K *)(w + (size_t)r * ws) + i;
            uint32_t u[4];
            k4_unpack(b->scales, u);
            const __m256i sv = k4_scale_vec(u);
            __m256i sumi = _mm256_setzero_si256();
            /* bit s of qh byte l is the 5th bit of element 32*s + l; hb is shifted right by 2
             * per 64-chunk so the chunk's two bits are at bits 0 and 1 */
            __m256i hb = _mm256_loadu_si256((const __m256i *)b->qh);
            for (int j = 0; j < 4; j++) {
                const __m256i y0 = _mm256_loadu_si256((const __m256i *)(xb->qs + 64 * j));
                const __m256i y1 = _mm256_loadu_si256((const __m256i *)(xb->qs + 64 * j + 32));
                const __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * j));
                const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(hb, m1), 4);
                const __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(hb, 3), m16);
                hb = _mm256_srli_epi16(hb, 2);
                const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
                const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
                const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), k4_scale(sv, 2 * j));
                const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), k4_scale(sv, 2 * j + 1));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
                Q_KEEP(sumi);
            }
            const __m256 dd = _mm256_set1_ps(xb->d * q_h2f(b->d));
            acc[r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi), acc[r]);
            summs[r] = k5_summs(summs[r], -xb->d * q_h2f(b->dmin), k4_mins(u, bs));
        }
    }
    for (int r = 0; r < NR; r++) out[r] = q_hsum256(acc[r]) + summs[r];
}

static void q5k_dot4(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { q5k_rows(4, w, ws, k, x, o, pf); }
static void q5k_dot1(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { q5k_rows(1, w, ws, k, x, o, pf); }
QUANT_DEFINE_MM(mm_q5_K_rows, q5k_dot4, q5k_dot1)
/* prompts (>= 4 columns): 1 row x 8 columns (quant_kmm_avx2.c) */
static void mm_q5_K(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs, int64_t nc, float *y,
                    int64_t ys) {
    if (nc >= 4 && k <= 64 * QK_K) quant_avx2_gemm_q5_K(W, ws, k, nr, xq, xs, nc, y, ys);
    else mm_q5_K_rows(W, ws, k, nr, xq, xs, nc, y, ys);
}

/* ---- Q6_K ------------------------------------------------------------------------------ */

Q_INLINE void q6k_tile(const int NR, const int NC, const char *w, size_t ws, int64_t k, const char *xv, size_t xs,
                       float *out, const char *pf) {
    const int64_t nb = k / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256 acc[4][2];
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++) acc[r][c] = _mm256_setzero_ps();
    const size_t pfs = q_pf_step((size_t)NR * ws, nb);
    for (int64_t i = 0; i < nb; i++) {
        q_prefetch(pf, pfs, i);
        const blk_q8_K *xb[2];
        for (int c = 0; c < NC; c++) xb[c] = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
        for (int r = 0; r < NR; r++) {
            const blk_q6_K *b = (const blk_q6_K *)(w + (size_t)r * ws) + i;
            const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
            const __m256i slo = _mm256_permute2x128_si256(s16, s16, 0x00);
            const __m256i shi = _mm256_permute2x128_si256(s16, s16, 0x11);
            __m256i sumi[2];
            for (int c = 0; c < NC; c++) {
                /* -32 * sum_s sc[s] * bsums[s]: the offset of the unsigned 6-bit quants */
                const __m256i bsums = _mm256_loadu_si256((const __m256i *)xb[c]->bsums);
                sumi[c] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(s16, bsums), 5));
            }
            for (int h = 0; h < 2; h++) {
                const __m256i l0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
                const __m256i l1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
                /* group g: elements 32g..32g+31 of this half, scales of 16-groups 2g, 2g+1 */
                for (int g = 0; g < 4; g++) {
                    __m256i v;
                    switch (g) {
                    case 0: v = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)); break;
                    case 1: v = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30)); break;
                    case 2: v = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30)); break;
                    default:
                        v = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                            _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
                        break;
                    }
                    const __m256i sc = q6_scale_pair(slo, shi, 4 * h + g);
                    for (int c = 0; c < NC; c++) {
                        const __m256i yv = _mm256_loadu_si256((const __m256i *)(xb[c]->qs + 128 * h + 32 * g));
                        sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(_mm256_maddubs_epi16(v, yv), sc));
                        Q_KEEP(sumi[c]);
                    }
                }
            }
            const float wd = q_h2f(b->d);
            for (int c = 0; c < NC; c++)
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(xb[c]->d * wd), _mm256_cvtepi32_ps(sumi[c]), acc[r][c]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++) out[r * NC + c] = q_hsum256(acc[r][c]);
}

static void q6k_dot4(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { q6k_tile(4, 1, w, ws, k, x, 0, o, pf); }
static void q6k_dot1(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { q6k_tile(1, 1, w, ws, k, x, 0, o, pf); }
static void q6k_dot4x2(const char *w, size_t ws, int64_t k, const char *x, size_t xs, float *o, const char *pf) {
    q6k_tile(4, 2, w, ws, k, x, xs, o, pf);
}
QUANT_DEFINE_MM2(mm_q6_K_tiles, q6k_dot4, q6k_dot1, q6k_dot4x2)
static void mm_q6_K(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs, int64_t nc, float *y,
                    int64_t ys) {
    if (nc >= 4) quant_avx2_gemm_q6_K(W, ws, k, nr, xq, xs, nc, y, ys);
    else mm_q6_K_tiles(W, ws, k, nr, xq, xs, nc, y, ys);
}

/* ---- Q2_K / Q3_K ------------------------------------------------------------------------ */

/* Both use 16 sub-blocks of 16 with 2-bit quants packed 4 per byte: in half h
 * (32 bytes of qs), shift 2j of byte l holds element 128h + 32j + l, so the
 * 32 bytes of (h, j) are sub-blocks 8h+2j (low lane) and 8h+2j+1 (high lane):
 * q6_scale_pair's layout. Q3_K adds a high bit (hmask byte l, bit 4h+j; clear
 * means -4): the kernel uses v = q2 + 4*bit in [0, 7] and subtracts
 * 4 * sum_s sc[s] * bsums[s]. */
Q_INLINE void q23k_rows(const int NR, const bool is_q3, const char *w, size_t ws, int64_t k, const char *xv,
                        float *out, const char *pf) {
    const int64_t nb = k / QK_K;
    const blk_q8_K *x = (const blk_q8_K *)xv;
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    __m256 acc[4];
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    const size_t pfs = q_pf_step((size_t)NR * ws, nb);
    for (int64_t i = 0; i < nb; i++) {
        q_prefetch(pf, pfs, i);
        const blk_q8_K *xb = x + i;
        const __m256i bsums = _mm256_loadu_si256((const __m256i *)xb->bsums);
        for (int r = 0; r < NR; r++) {
            const uint8_t *qs, *hmask = NULL;
            __m256i s16, sumi;
            float dd;
            if (is_q3) {
                const blk_q3_K *b = (const blk_q3_K *)(w + (size_t)r * ws) + i;
                uint32_t a[4], t;
                __builtin_memcpy(a, b->scales, 12);
                t = a[2];
                a[2] = ((a[0] >> 4) & 0x0f0f0f0f) | (((t >> 4) & 0x03030303) << 4);
                a[3] = ((a[1] >> 4) & 0x0f0f0f0f) | (((t >> 6) & 0x03030303) << 4);
                a[0] = (a[0] & 0x0f0f0f0f) | ((t & 0x03030303) << 4);
                a[1] = (a[1] & 0x0f0f0f0f) | (((t >> 2) & 0x03030303) << 4);
                const __m128i sc8 = _mm_sub_epi8(_mm_loadu_si128((const __m128i *)a), _mm_set1_epi8(32));
                s16 = _mm256_cvtepi8_epi16(sc8);
                /* -4 * sum_s sc[s] * bsums[s] */
                sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(s16, bsums), 2));
                qs = b->qs, hmask = b->hmask;
                dd = xb->d * q_h2f(b->d);
            } else {
                const blk_q2_K *b = (const blk_q2_K *)(w + (size_t)r * ws) + i;
                const __m128i sc8 = _mm_loadu_si128((const __m128i *)b->scales);
                s16 = _mm256_cvtepu8_epi16(_mm_and_si128(sc8, _mm_set1_epi8(0x0F)));
                const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(0x0F)));
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(-xb->d * q_h2f(b->dmin)),
                                         _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, bsums)), acc[r]);
                sumi = _mm256_setzero_si256();
                qs = b->qs;
                dd = xb->d * q_h2f(b->d);
            }
            const __m256i slo = _mm256_permute2x128_si256(s16, s16, 0x00);
            const __m256i shi = _mm256_permute2x128_si256(s16, s16, 0x11);
            const __m256i hm = is_q3 ? _mm256_loadu_si256((const __m256i *)hmask) : _mm256_setzero_si256();
            for (int h = 0; h < 2; h++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
                for (int j = 0; j < 4; j++) {
                    __m256i v = _mm256_and_si256(j ? _mm256_srli_epi16(q, 2 * j) : q, m3);
                    if (is_q3) {
                        const int t = 4 * h + j; /* hmask bit t -> bit 2 */
                        const __m256i hb = t >= 2 ? _mm256_srli_epi16(hm, t - 2) : _mm256_slli_epi16(hm, 2 - t);
                        v = _mm256_or_si256(v, _mm256_and_si256(hb, m4));
                    }
                    const __m256i yv = _mm256_loadu_si256((const __m256i *)(xb->qs + 128 * h + 32 * j));
                    const __m256i sc = q6_scale_pair(slo, shi, 4 * h + j);
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(v, yv), sc));
                }
            }
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(sumi), acc[r]);
        }
    }
    for (int r = 0; r < NR; r++) out[r] = q_hsum256(acc[r]);
}

static void q2k_dot4(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { q23k_rows(4, false, w, ws, k, x, o, pf); }
static void q2k_dot1(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { q23k_rows(1, false, w, ws, k, x, o, pf); }
static void q3k_dot4(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { q23k_rows(4, true, w, ws, k, x, o, pf); }
static void q3k_dot1(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { q23k_rows(1, true, w, ws, k, x, o, pf); }
QUANT_DEFINE_MM(mm_q2_K, q2k_dot4, q2k_dot1)
QUANT_DEFINE_MM(mm_q3_K, q3k_dot4, q3k_dot1)

/* ---- IQ4_XS ----------------------------------------------------------------------------- */

/* 8 sub-blocks of 32, each laid out like an IQ4_NL block (16 bytes: low
 * nibbles = elements 0..15, high = 16..31) with a 6-bit scale biased by 32.
 * The levels are looked up with vpshufb into signed bytes (sign trick), and
 * the pair sums scaled by the sub-block scale with madd. */
Q_INLINE void iq4xs_rows(const int NR, const char *w, size_t ws, int64_t k, const char *xv, float *out,
                         const char *pf) {
    const int64_t nb = k / QK_K;
    const blk_q8_K *x = (const blk_q8_K *)xv;
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)quant_iq4nl_values));
    const __m256i m4 = _mm256_set1_epi8(0x0F), sh = _mm256_set_epi64x(4, 4, 0, 0);
    __m256 acc[4];
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    const size_t pfs = q_pf_step((size_t)NR * ws, nb);
    for (int64_t i = 0; i < nb; i++) {
        q_prefetch(pf, pfs, i);
        const blk_q8_K *xb = x + i;
        for (int r = 0; r < NR; r++) {
            const blk_iq4_xs *b = (const blk_iq4_xs *)(w + (size_t)r * ws) + i;
            uint32_t sl;
            __builtin_memcpy(&sl, b->scales_l, 4);
            const uint32_t sh16 = b->scales_h;
            __m256i sumi = _mm256_setzero_si256();
            for (int ib = 0; ib < 8; ib++) {
                const int ls = (int)(((sl >> (4 * ib)) & 0xF) | (((sh16 >> (2 * ib)) & 3) << 4)) - 32;
                const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(b->qs + 16 * ib)));
                const __m256i q = _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srlv_epi64(t, sh), m4));
                const __m256i yv = _mm256_loadu_si256((const __m256i *)(xb->qs + 32 * ib));
                const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(yv, q));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, _mm256_set1_epi16((short)ls)));
            }
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(xb->d * q_h2f(b->d)), _mm256_cvtepi32_ps(sumi), acc[r]);
        }
    }
    for (int r = 0; r < NR; r++) out[r] = q_hsum256(acc[r]);
}

static void iq4xs_dot4(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { iq4xs_rows(4, w, ws, k, x, o, pf); }
static void iq4xs_dot1(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { iq4xs_rows(1, w, ws, k, x, o, pf); }
QUANT_DEFINE_MM(mm_iq4_xs, iq4xs_dot4, iq4xs_dot1)

quant_mm_fn quant_avx2_kernel_k(uint32_t wtype) {
    switch (wtype) {
    case MR_TYPE_Q2_K: return mm_q2_K;
    case MR_TYPE_Q3_K: return mm_q3_K;
    case MR_TYPE_IQ4_XS: return mm_iq4_xs;
    case MR_TYPE_Q4_K: return mm_q4_K;
    case MR_TYPE_Q5_K: return mm_q5_K;
    case MR_TYPE_Q6_K: return mm_q6_K;
    default: return NULL;
    }
}
