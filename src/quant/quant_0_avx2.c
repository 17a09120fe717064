/*
 * quant_0_avx2.c — AVX2 dot kernels for the 32-element block types (Q4_0,
 * Q8_0 against Q8_0 activations) and the float types (F32, F16, BF16 against
 * F32 activations), and the AVX2 kernel lookup.
 */
#include "quant/quant_avx2.h"

/* ---- Q8_0 / Q4_0 -------------------------------------------------------------------------- */

/* Q4_0 block quants as 32 unsigned bytes in [0, 15] (element order). */
Q_INLINE __m256i q40_unpack(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0F));
}

/* Q8_0 weights: signed x signed via the sign trick. Q4_0 weights: unsigned
 * nibbles with maddubs, minus 8 * (sums of the activations), which is
 * computed once per block and shared by the rows. */
Q_INLINE void q80_rows(const int NR, const bool is_q4, const char *w, size_t ws, int64_t k, const char *xv,
                       float *out, const char *pf) {
    const int64_t nb = k / 32;
    const size_t pfs = q_pf_step((size_t)NR * ws, nb);
    const blk_q8_0 *x = (const blk_q8_0 *)xv;
    const __m256i ones = _mm256_set1_epi16(1), eights = _mm256_set1_epi8(8);
    __m256 acc[4];
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        q_prefetch(pf, pfs, i);
        const __m256i y = _mm256_loadu_si256((const __m256i *)x[i].qs);
        const float dx = q_h2f(x[i].d);
        __m256i ysum8 = _mm256_setzero_si256();
        if (is_q4) ysum8 = _mm256_madd_epi16(_mm256_maddubs_epi16(eights, y), ones);
        for (int r = 0; r < NR; r++) {
            __m256i p;
            float dw;
            if (is_q4) {
                const blk_q4_0 *b = (const blk_q4_0 *)(w + (size_t)r * ws) + i;
                p = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(q40_unpack(b->qs), y), ones), ysum8);
                dw = q_h2f(b->d);
            } else {
                const blk_q8_0 *b = (const blk_q8_0 *)(w + (size_t)r * ws) + i;
                p = q_dot_i8(_mm256_loadu_si256((const __m256i *)b->qs), y);
                dw = q_h2f(b->d);
            }
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dx * dw), _mm256_cvtepi32_ps(p), acc[r]);
        }
    }
    for (int r = 0; r < NR; r++) out[r] = q_hsum256(acc[r]);
}

static void q80_dot4(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { q80_rows(4, false, w, ws, k, x, o, pf); }
static void q80_dot1(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { q80_rows(1, false, w, ws, k, x, o, pf); }
static void q40_dot4(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { q80_rows(4, true, w, ws, k, x, o, pf); }
static void q40_dot1(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { q80_rows(1, true, w, ws, k, x, o, pf); }
QUANT_DEFINE_MM(mm_q8_0, q80_dot4, q80_dot1)
QUANT_DEFINE_MM(mm_q4_0, q40_dot4, q40_dot1)

/* ---- F32 / F16 / BF16 weights, F32 activations ------------------------------------------- */

enum { FT_F32, FT_F16, FT_BF16 };

Q_INLINE __m256 f_load8(const int ft, const char *row, int64_t i) {
    if (ft == FT_F32) return _mm256_loadu_ps((const float *)row + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + i));
    if (ft == FT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

Q_INLINE float f_load1(const int ft, const char *row, int64_t i) {
    if (ft == FT_F32) return ((const float *)row)[i];
    const uint16_t h = ((const uint16_t *)row)[i];
    return ft == FT_F16 ? q_h2f(h) : mr_bf16_to_fp32(h);
}

Q_INLINE void f_rows(const int NR, const int ft, const char *w, size_t ws, int64_t k, const char *xv, float *out, const char *pf) {
    const float *x = (const float *)xv;
    __m256 a0[4], a1[4];
    for (int r = 0; r < NR; r++) a0[r] = a1[r] = _mm256_setzero_ps();
    int64_t i = 0;
    const size_t pfs = k >= 16 ? q_pf_step((size_t)NR * ws, k / 16) : 0;
    for (; i + 16 <= k; i += 16) {
        (void)pfs; /* float rows: the hardware prefetcher does better than software prefetch */
        const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
        for (int r = 0; r < NR; r++) {
            const char *row = w + (size_t)r * ws;
            a0[r] = _mm256_fmadd_ps(f_load8(ft, row, i), x0, a0[r]);
            a1[r] = _mm256_fmadd_ps(f_load8(ft, row, i + 8), x1, a1[r]);
        }
    }
    for (; i + 8 <= k; i += 8) {
        const __m256 x0 = _mm256_loadu_ps(x + i);
        for (int r = 0; r < NR; r++) a0[r] = _mm256_fmadd_ps(f_load8(ft, w + (size_t)r * ws, i), x0, a0[r]);
    }
    for (int r = 0; r < NR; r++) {
        float s = q_hsum256(_mm256_add_ps(a0[r], a1[r]));
        for (int64_t j = i; j < k; j++) s += f_load1(ft, w + (size_t)r * ws, j) * x[j];
        out[r] = s;
    }
}

static void f32_dot4(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { f_rows(4, FT_F32, w, ws, k, x, o, pf); }
static void f32_dot1(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { f_rows(1, FT_F32, w, ws, k, x, o, pf); }
static void f16_dot4(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { f_rows(4, FT_F16, w, ws, k, x, o, pf); }
static void f16_dot1(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { f_rows(1, FT_F16, w, ws, k, x, o, pf); }
static void bf16_dot4(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { f_rows(4, FT_BF16, w, ws, k, x, o, pf); }
static void bf16_dot1(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { f_rows(1, FT_BF16, w, ws, k, x, o, pf); }
QUANT_DEFINE_MM(mm_f32, f32_dot4, f32_dot1)
QUANT_DEFINE_MM(mm_f16, f16_dot4, f16_dot1)
QUANT_DEFINE_MM(mm_bf16, bf16_dot4, bf16_dot1)

quant_mm_fn quant_avx2_kernel_0(uint32_t wtype) {
    switch (wtype) {
    case MR_TYPE_Q8_0: return mm_q8_0;
    case MR_TYPE_Q4_0: return mm_q4_0;
    case MR_TYPE_F32: return mm_f32;
    case MR_TYPE_F16: return mm_f16;
    case MR_TYPE_BF16: return mm_bf16;
    default: return NULL;
    }
}

quant_mm_fn quant_avx2_kernel(uint32_t wtype) {
    quant_mm_fn f = quant_avx2_kernel_0(wtype);
    return f ? f : quant_avx2_kernel_k(wtype);
}
