/*
 * ops_avx2.c — AVX2/FMA versions of the gated activations of ops.c and of
 * RMSNorm's sum of squares (cpu_silu_mul, cpu_gelu_mul, cpu_rmsnorm dispatch
 * here at run time). The activations: 8 lanes with the
 * vectorised exp of vexp_avx2.h (~1 ulp against expf) instead of one libm call
 * per element. Results differ from the scalar reference by float rounding
 * (test_quant checks them against it).
 *   silu(g) * u = g / (1 + e^-g) * u
 *   gelu(g) * u = 0.5 g (1 + tanh(y)) * u = g / (1 + e^-2y) * u,
 *                 y = sqrt(2/pi) g (1 + 0.044715 g^2)   (ggml's tanh approximation)
 */
#include <immintrin.h>
#include <math.h>

#include "cpu/cpu.h"
#include "cpu/vexp_avx2.h"

void cpu_silu_mul_avx2(float *g, const float *u, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 e = cpu_exp8(_mm256_sub_ps(zero, x));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void cpu_gelu_mul_avx2(float *g, const float *u, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), c2 = _mm256_set1_ps(-2.0f * 0.797884560802865355f),
                 a = _mm256_set1_ps(0.044715f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        /* -2y = -2 sqrt(2/pi) x (1 + 0.044715 x^2) */
        const __m256 m2y = _mm256_mul_ps(_mm256_mul_ps(c2, x), _mm256_fmadd_ps(a, _mm256_mul_ps(x, x), one));
        const __m256 e = cpu_exp8(m2y);
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = cpu_gelu(g[i]) * u[i];
}

/* sum of x[i]^2 in double (as ggml's RMSNorm), 16 lanes in 4 chains: the
 * order differs from the scalar loop only at double rounding. */
double cpu_sumsq_avx2(const float *x, int n) {
    __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int u = 0; u < 4; u++) {
            const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * u));
            a[u] = _mm256_fmadd_pd(v, v, a[u]);
        }
    const __m256d t = _mm256_add_pd(_mm256_add_pd(a[0], a[1]), _mm256_add_pd(a[2], a[3]));
    double l[4];
    _mm256_storeu_pd(l, t);
    double ss = (l[0] + l[1]) + (l[2] + l[3]);
    for (; i < n; i++) ss += (double)x[i] * x[i];
    return ss;
}
