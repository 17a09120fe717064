/*
 * bandwidth_avx2.c — the AVX2 read kernel of the bandwidth measurement: a sum
 * over a buffer of doubles with 256-bit loads and eight independent
 * accumulators (so the adds never limit the loads). Compiled with -mavx2;
 * called only when mr_cpu()->avx2.
 */
#include <immintrin.h>

#include "bench/bench.h"

/* Sum of p[0..n); p 32-byte aligned for the vector part (mr_malloc_aligned/mmap). */
double bench_sum_f64_avx2(const double *p, size_t n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_pd(a0, _mm256_load_pd(p + i));
        a1 = _mm256_add_pd(a1, _mm256_load_pd(p + i + 4));
        a2 = _mm256_add_pd(a2, _mm256_load_pd(p + i + 8));
        a3 = _mm256_add_pd(a3, _mm256_load_pd(p + i + 12));
        a4 = _mm256_add_pd(a4, _mm256_load_pd(p + i + 16));
        a5 = _mm256_add_pd(a5, _mm256_load_pd(p + i + 20));
        a6 = _mm256_add_pd(a6, _mm256_load_pd(p + i + 24));
        a7 = _mm256_add_pd(a7, _mm256_load_pd(p + i + 28));
    }
    a0 = _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3));
    a4 = _mm256_add_pd(_mm256_add_pd(a4, a5), _mm256_add_pd(a6, a7));
    a0 = _mm256_add_pd(a0, a4);
    double t[4];
    _mm256_storeu_pd(t, a0);
    double s = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) s += p[i];
    return s;
}
