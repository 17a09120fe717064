/*
 * vexp_avx2.h — e^x over 8 float lanes for the AVX2 files of src/cpu
 * (include only from *_avx2.c, compiled with -mavx2 -mfma): the softmax of
 * the attention kernels and the activations of ops_avx2.c.
 */
#ifndef MR_CPU_VEXP_AVX2_H
#define MR_CPU_VEXP_AVX2_H

#include <immintrin.h>

/* The constants and the operations of cpu_exp8, written once: CPU_EXP_BODY(W, T, TI, ROUND) is
 * the body of an e^x over W-bit vectors (T float, TI int; ROUND the width's round-to-integer
 * intrinsic). attn_vec.h's 16-lane attn_exp16 is the same body at 512 bits, so the two agree
 * bit for bit by construction. */
#define CPU_EXP_LO (-87.3f)
#define CPU_EXP_HI 88.3f
#define CPU_EXP_LOG2E 1.44269504088896341f
#define CPU_EXP_LN2_HI 0.693359375f
#define CPU_EXP_LN2_LO (-2.12194440e-4f)
#define CPU_EXP_P0 1.9875691500e-4f
#define CPU_EXP_P1 1.3981999507e-3f
#define CPU_EXP_P2 8.3334519073e-3f
#define CPU_EXP_P3 4.1665795894e-2f
#define CPU_EXP_P4 1.6666665459e-1f
#define CPU_EXP_P5 5.0000001201e-1f

#define CPU_EXP_BODY(W, T, TI, ROUND)                                                                       \
    x = _mm##W##_min_ps(_mm##W##_max_ps(x, _mm##W##_set1_ps(CPU_EXP_LO)), _mm##W##_set1_ps(CPU_EXP_HI)); \
    const T fx = ROUND(_mm##W##_fmadd_ps(x, _mm##W##_set1_ps(CPU_EXP_LOG2E), _mm##W##_set1_ps(0.5f)),     \
                       _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);                                         \
    x = _mm##W##_fnmadd_ps(fx, _mm##W##_set1_ps(CPU_EXP_LN2_HI), x);                                       \
    x = _mm##W##_fnmadd_ps(fx, _mm##W##_set1_ps(CPU_EXP_LN2_LO), x);                                       \
    T y = _mm##W##_set1_ps(CPU_EXP_P0);                                                                    \
    y = _mm##W##_fmadd_ps(y, x, _mm##W##_set1_ps(CPU_EXP_P1));                                             \
    y = _mm##W##_fmadd_ps(y, x, _mm##W##_set1_ps(CPU_EXP_P2));                                             \
    y = _mm##W##_fmadd_ps(y, x, _mm##W##_set1_ps(CPU_EXP_P3));                                             \
    y = _mm##W##_fmadd_ps(y, x, _mm##W##_set1_ps(CPU_EXP_P4));                                             \
    y = _mm##W##_fmadd_ps(y, x, _mm##W##_set1_ps(CPU_EXP_P5));                                             \
    y = _mm##W##_fmadd_ps(y, _mm##W##_mul_ps(x, x), _mm##W##_add_ps(x, _mm##W##_set1_ps(1.0f)));           \
    const TI e = _mm##W##_slli_epi32(_mm##W##_add_epi32(_mm##W##_cvtps_epi32(fx), _mm##W##_set1_epi32(127)), 23); \
    return _mm##W##_mul_ps(y, _mm##W##_castsi##W##_ps(e))

/* e^x for 8 lanes (Cephes polynomial, ~1 ulp against expf; e^0 is exactly 1;
 * x <= -87.3 gives ~1e-38 rather than 0: callers mask -inf themselves). */
static inline __m256 cpu_exp8(__m256 x) { CPU_EXP_BODY(256, __m256, __m256i, _mm256_round_ps); }

#endif
