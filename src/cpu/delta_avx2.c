/*
 * delta_avx2.c — the gated delta rule step (delta.h) with AVX2/FMA: one pass
 * over each state row (decay, dot with k, rank-1 update, dot with q); and
 * the small row-major matrix product of the chunked form (delta_chunk.c),
 * 6 x 16 register tiles.
 * Compiled with -mavx2 -mfma; called only when mr_cpu() reports both.
 */
#include <immintrin.h>
#include <math.h>

#include "cpu/delta.h"

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

void cpu_delta_step_avx2(float *S, int Sk, int Sv, const float *q, const float *k, const float *v, float g,
                         float beta, float scale, float *o) {
    const __m256 eg = _mm256_set1_ps(expf(g));
    for (int j = 0; j < Sv; j++) {
        float *row = S + (size_t)j * Sk;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int i = 0;
        for (; i + 16 <= Sk; i += 16) {
            __m256 r0 = _mm256_mul_ps(_mm256_loadu_ps(row + i), eg);
            __m256 r1 = _mm256_mul_ps(_mm256_loadu_ps(row + i + 8), eg);
            _mm256_storeu_ps(row + i, r0);
            _mm256_storeu_ps(row + i + 8, r1);
            a0 = _mm256_fmadd_ps(r0, _mm256_loadu_ps(k + i), a0);
            a1 = _mm256_fmadd_ps(r1, _mm256_loadu_ps(k + i + 8), a1);
        }
        for (; i < Sk; i += 8) {
            __m256 r0 = _mm256_mul_ps(_mm256_loadu_ps(row + i), eg);
            _mm256_storeu_ps(row + i, r0);
            a0 = _mm256_fmadd_ps(r0, _mm256_loadu_ps(k + i), a0);
        }
        const float d = (v[j] - hsum(_mm256_add_ps(a0, a1))) * beta;
        const __m256 dv = _mm256_set1_ps(d);
        a0 = _mm256_setzero_ps();
        a1 = _mm256_setzero_ps();
        i = 0;
        for (; i + 16 <= Sk; i += 16) {
            __m256 r0 = _mm256_fmadd_ps(_mm256_loadu_ps(k + i), dv, _mm256_loadu_ps(row + i));
            __m256 r1 = _mm256_fmadd_ps(_mm256_loadu_ps(k + i + 8), dv, _mm256_loadu_ps(row + i + 8));
            _mm256_storeu_ps(row + i, r0);
            _mm256_storeu_ps(row + i + 8, r1);
            a0 = _mm256_fmadd_ps(r0, _mm256_loadu_ps(q + i), a0);
            a1 = _mm256_fmadd_ps(r1, _mm256_loadu_ps(q + i + 8), a1);
        }
        for (; i < Sk; i += 8) {
            __m256 r0 = _mm256_fmadd_ps(_mm256_loadu_ps(k + i), dv, _mm256_loadu_ps(row + i));
            _mm256_storeu_ps(row + i, r0);
            a0 = _mm256_fmadd_ps(r0, _mm256_loadu_ps(q + i), a0);
        }
        o[j] = hsum(_mm256_add_ps(a0, a1)) * scale;
    }
}

/* C[MR x 8*NV] (+)= A[MR x K] B[K x 8*NV]: MR broadcast rows times NV vectors. */
static inline __attribute__((always_inline)) void gemm_tile(float *C, int ldc, const float *A, int lda,
                                                            const float *B, int ldb, int K, bool acc, int MR,
                                                            int NV) {
    __m256 c[6][2];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++)
            c[r][v] = acc ? _mm256_loadu_ps(C + (size_t)r * ldc + 8 * v) : _mm256_setzero_ps();
    for (int p = 0; p < K; p++) {
        __m256 b[2];
        for (int v = 0; v < NV; v++) b[v] = _mm256_loadu_ps(B + (size_t)p * ldb + 8 * v);
        for (int r = 0; r < MR; r++) {
            const __m256 a = _mm256_broadcast_ss(A + (size_t)r * lda + p);
            for (int v = 0; v < NV; v++) c[r][v] = _mm256_fmadd_ps(a, b[v], c[r][v]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) _mm256_storeu_ps(C + (size_t)r * ldc + 8 * v, c[r][v]);
}

void cpu_delta_gemm_avx2(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int M, int N, int K,
                         bool acc) {
    int i = 0;
    for (; i + 6 <= M; i += 6) {
        const float *a = A + (size_t)i * lda;
        float *c = C + (size_t)i * ldc;
        int j = 0;
        for (; j + 16 <= N; j += 16) gemm_tile(c + j, ldc, a, lda, B + j, ldb, K, acc, 6, 2);
        for (; j < N; j += 8) gemm_tile(c + j, ldc, a, lda, B + j, ldb, K, acc, 6, 1);
    }
    for (; i + 4 <= M; i += 4) {
        const float *a = A + (size_t)i * lda;
        float *c = C + (size_t)i * ldc;
        int j = 0;
        for (; j + 16 <= N; j += 16) gemm_tile(c + j, ldc, a, lda, B + j, ldb, K, acc, 4, 2);
        for (; j < N; j += 8) gemm_tile(c + j, ldc, a, lda, B + j, ldb, K, acc, 4, 1);
    }
    for (; i < M; i++) {
        const float *a = A + (size_t)i * lda;
        float *c = C + (size_t)i * ldc;
        int j = 0;
        for (; j + 16 <= N; j += 16) gemm_tile(c + j, ldc, a, lda, B + j, ldb, K, acc, 1, 2);
        for (; j < N; j += 8) gemm_tile(c + j, ldc, a, lda, B + j, ldb, K, acc, 1, 1);
    }
}
