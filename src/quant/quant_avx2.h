/*
 * quant_avx2.h — private helpers shared by the AVX2 kernel files (include only
 * from *_avx2.c, which are compiled with -mavx2 -mfma -mf16c -mbmi2).
 *
 * Every kernel family provides "dot NR rows with one column" functions (NR =
 * 4 and 1); QUANT_DEFINE_MM turns them into a quant_mm_fn that walks rows in
 * blocks of 4 (outer) and columns (inner), so in a matmul the 4 weight rows
 * stay in L1 while the activation columns stream past them, and in a matvec
 * each activation load is shared by 4 rows.
 */
#ifndef MR_QUANT_AVX2_H
#define MR_QUANT_AVX2_H

#include <immintrin.h>

#include "quant/quant_impl.h"

#define Q_INLINE static inline __attribute__((always_inline))

/* Pins an accumulator in a register at this point: stops GCC from
 * re-associating a chain of integer adds into a tree of spilled partials. */
#define Q_KEEP(v) __asm__("" : "+x"(v))

Q_INLINE float q_h2f(uint16_t h) { return _cvtsh_ss(h); }

Q_INLINE float q_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Exact int32 sum of 4 lanes. */
Q_INLINE int32_t q_hsum_i32x4(__m128i v) {
    v = _mm_add_epi32(v, _mm_unpackhi_epi64(v, v));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 1));
    return _mm_cvtsi128_si32(v);
}

/* Sum of products of 32 signed bytes, as 8 int32 lanes (x, y in [-128, 127],
 * no int16 overflow: |x| <= 128 and the pair sum is at most 2*128*128). */
Q_INLINE __m256i q_dot_i8(__m256i x, __m256i y) {
    const __m256i ax = _mm256_sign_epi8(x, x);
    const __m256i sy = _mm256_sign_epi8(y, x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

/* Software prefetch of the next 4-row block while computing this one: the
 * kernel's iteration i (of n) touches bytes [i*step, (i+1)*step) of the span
 * starting at pf (step a multiple of 64 with n*step >= span). pf NULL: none. */
Q_INLINE size_t q_pf_step(size_t span, int64_t n) { return ((span / (size_t)n) + 64) & ~(size_t)63; }
Q_INLINE void q_prefetch(const char *pf, size_t step, int64_t i) {
    if (!pf) return;
    for (size_t a = (size_t)i * step, e = a + step; a < e; a += 64) _mm_prefetch(pf + a, _MM_HINT_T0);
}

/* ---- R8 (row-interleaved) helpers shared by quant_r8_avx2.c and quant_r8b_avx2.c ---- */

/* Software prefetch distance (bytes ahead of the block being read): the weights stream
 * from DRAM once per token. On AMD Zen 3 the hardware prefetcher alone left a third of the
 * bandwidth unused; on an Intel Sapphire Rapids VM these prefetches cost a tenth of it
 * (matvec from DRAM 15.5-16.7 -> 17.6-18.8 GB/s without), and on a Zen 4 VM a third of q3's
 * decode speed (tg128 25.4-26.8 -> 16.7-17.9 t/s with them), while on a Zen 5 VM they gave it
 * back the other way (q3 tg32, 7 alternated pairs: 10.7-16.9 -> 17.8-24.3 t/s with them).
 * quant_r8_prefetch: on or off for one-column calls (matvec), set before any kernel runs
 * (quant_dispatch.c: AMD CPUs without AVX-512, i.e. Zen 3 and older, and AMD family 0x1a and
 * later, Zen 5; MOERUN_PREFETCH=0|1 overrides). quant_r8_prefetch_mm: the same
 * for calls of 4 columns or more (prompts), on by default: there each weight block serves
 * several column tiles, and the loads of a row group (or its unpacking) are a short burst
 * between long stretches of arithmetic that the hardware prefetcher does not cover (Zen 4:
 * DeepSeek-V2-Lite pp128 +4-14 %, Qwen3-30B-A3B pp128/pp512 +0-9 %; with 2 or 3 columns,
 * still nearly bandwidth-bound, it measured either way, so those follow the matvec switch);
 * MOERUN_PREFETCH sets both switches, MOERUN_PREFETCH_MM=0|1 this one. The drivers decide once
 * per call (r8_pf); r8_prefetch itself always prefetches. */
#ifndef R8_PF_DIST
#define R8_PF_DIST 8192
#endif
extern int quant_r8_prefetch, quant_r8_prefetch_mm;
Q_INLINE bool r8_pf(int64_t ncols) { return ncols >= 4 ? quant_r8_prefetch_mm != 0 : quant_r8_prefetch != 0; }
Q_INLINE void r8_prefetch(const char *blk, size_t bsz) {
    for (size_t o = 0; o < bsz; o += 64) _mm_prefetch(blk + R8_PF_DIST + o, _MM_HINT_T0);
}

/* 4 activation bytes broadcast to the 8 row lanes. */
Q_INLINE __m256i bcast32(const void *p) {
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* ---- K-quant helpers shared by quant_k_avx2.c and quant_kmm_avx2.c ---- */

/* Q4_K/Q5_K scales: 12 packed bytes -> sc bytes 0..7 in u[0..1], mins in u[2..3]. */
Q_INLINE void k4_unpack(const uint8_t *scales, uint32_t u[4]) {
    const uint32_t km1 = 0x3f3f3f3f, km2 = 0x0f0f0f0f, km3 = 0x03030303;
    uint32_t a[3];
    __builtin_memcpy(a, scales, 12);
    u[3] = ((a[2] >> 4) & km2) | (((a[1] >> 6) & km3) << 4);
    u[2] = a[1] & km1;
    u[1] = (a[2] & km2) | (((a[0] >> 6) & km3) << 4);
    u[0] = a[0] & km1;
}

/* ggml's order for a 4-lane sum: (m0 + m2) + (m1 + m3). */
Q_INLINE float q_hsum128(__m128 m) {
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
}

/* Q4_K/Q5_K sub-block scales sc[0..7] (the first 8 bytes of k4_unpack's u) as
 * int16 in both 128-bit lanes, and the shuffle that broadcasts sc[e]. */
Q_INLINE __m256i k4_scale_vec(const uint32_t u[4]) {
    const __m128i s = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)u[1], (int)u[0]));
    return _mm256_broadcastsi128_si256(s);
}
Q_INLINE __m256i k4_scale(__m256i sv, int e) { return _mm256_shuffle_epi8(sv, _mm256_set1_epi16((short)(((2 * e + 1) << 8) | (2 * e)))); }

/* Q6_K scales for a pair of 16-element groups (2p, 2p+1) as int16: sc[2p] in
 * the low 128-bit lane, sc[2p+1] in the high one. lo/hi hold sc[0..7] /
 * sc[8..15] as int16 in both lanes; vpshufb's per-lane masks pick the pair. */
Q_INLINE __m256i q6_scale_pair(__m256i lo, __m256i hi, int p) {
    const int e = (2 * p) & 7;
    const __m256i m = _mm256_setr_epi8(2 * e, 2 * e + 1, 2 * e, 2 * e + 1, 2 * e, 2 * e + 1, 2 * e, 2 * e + 1, 2 * e,
                                       2 * e + 1, 2 * e, 2 * e + 1, 2 * e, 2 * e + 1, 2 * e, 2 * e + 1, 2 * e + 2,
                                       2 * e + 3, 2 * e + 2, 2 * e + 3, 2 * e + 2, 2 * e + 3, 2 * e + 2, 2 * e + 3,
                                       2 * e + 2, 2 * e + 3, 2 * e + 2, 2 * e + 3, 2 * e + 2, 2 * e + 3, 2 * e + 2,
                                       2 * e + 3);
    return _mm256_shuffle_epi8(p < 4 ? lo : hi, m);
}

/* Row-kernel signature: out[r] = dot(row r, x) for r < NR; rows at w + r*ws;
 * pf: the span of bytes to prefetch meanwhile (NR*ws bytes), or NULL. The
 * 4-row kernel prefetches the next 4-row block on the first column only. */
#define QUANT_DEFINE_MM(name, dot4, dot1)                                                        \
    static void name(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs,   \
                     int64_t nc, float *y, int64_t ys) {                                           \
        const char *w = (const char *)W, *x = (const char *)xq;                                    \
        int64_t r = 0;                                                                             \
        for (; r + 4 <= nr; r += 4)                                                                \
            for (int64_t c = 0; c < nc; c++) {                                                     \
                float o[4];                                                                        \
                const char *pf = (c == 0 && r + 8 <= nr) ? w + (size_t)(r + 4) * ws : NULL;        \
                dot4(w + (size_t)r * ws, ws, k, x + (size_t)c * xs, o, pf);                        \
                float *yc = y + c * ys + r;                                                        \
                yc[0] = o[0], yc[1] = o[1], yc[2] = o[2], yc[3] = o[3];                            \
            }                                                                                      \
        for (; r < nr; r++)                                                                        \
            for (int64_t c = 0; c < nc; c++) {                                                     \
                float o[1];                                                                        \
                dot1(w + (size_t)r * ws, ws, k, x + (size_t)c * xs, o, NULL);                        \
                y[c * ys + r] = o[0];                                                              \
            }                                                                                      \
    }

/* Like QUANT_DEFINE_MM, with a 4-row x 2-column tile kernel for matmuls:
 * dot4x2(w, ws, k, x, xs, o, pf) writes o[r*2 + c] for columns x, x + xs, so
 * the weights are unpacked once for two columns. */
#define QUANT_DEFINE_MM2(name, dot4, dot1, dot4x2)                                               \
    static void name(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs,   \
                     int64_t nc, float *y, int64_t ys) {                                           \
        const char *w = (const char *)W, *x = (const char *)xq;                                    \
        int64_t r = 0;                                                                             \
        for (; r + 4 <= nr; r += 4) {                                                              \
            const char *pf = r + 8 <= nr ? w + (size_t)(r + 4) * ws : NULL;                        \
            int64_t c = 0;                                                                         \
            for (; c + 2 <= nc; c += 2) {                                                          \
                float o[8];                                                                        \
                dot4x2(w + (size_t)r * ws, ws, k, x + (size_t)c * xs, xs, o, c == 0 ? pf : NULL);  \
                for (int i = 0; i < 4; i++) {                                                      \
                    y[c * ys + r + i] = o[2 * i];                                                  \
                    y[(c + 1) * ys + r + i] = o[2 * i + 1];                                        \
                }                                                                                  \
            }                                                                                      \
            for (; c < nc; c++) {                                                                  \
                float o[4];                                                                        \
                dot4(w + (size_t)r * ws, ws, k, x + (size_t)c * xs, o, c == 0 ? pf : NULL);        \
                float *yc = y + c * ys + r;                                                        \
                yc[0] = o[0], yc[1] = o[1], yc[2] = o[2], yc[3] = o[3];                            \
            }                                                                                      \
        }                                                                                          \
        for (; r < nr; r++)                                                                        \
            for (int64_t c = 0; c < nc; c++) {                                                     \
                float o[1];                                                                        \
                dot1(w + (size_t)r * ws, ws, k, x + (size_t)c * xs, o, NULL);                      \
                y[c * ys + r] = o[0];                                                              \
            }                                                                                      \
    }

/* The column-group loop of the 1 row x 8 column prompt kernels: for each
 * group of up to 8 columns (xc, n of them) PREP runs once, then for every
 * row (wr) ONE(NC) computes o[0..NC) with NC a compile-time constant (a
 * switch over the group width), stored to y. Expects w, x, ws, xs, nr, nc, y,
 * ys in scope. */
#define Q_GEMM_COLS8(PREP, ONE)                                                                    \
    for (int64_t c_ = 0; c_ < nc; c_ += 8) {                                                        \
        const int n = nc - c_ < 8 ? (int)(nc - c_) : 8;                                             \
        const char *xc = x + (size_t)c_ * xs;                                                       \
        PREP;                                                                                       \
        for (int64_t r_ = 0; r_ < nr; r_++) {                                                       \
            const char *wr = w + (size_t)r_ * ws;                                                   \
            float o[8] = {0};                                                                       \
            switch (n) {                                                                            \
            case 8: ONE(8); break;                                                                  \
            case 7: ONE(7); break;                                                                  \
            case 6: ONE(6); break;                                                                  \
            case 5: ONE(5); break;                                                                  \
            case 4: ONE(4); break;                                                                  \
            case 3: ONE(3); break;                                                                  \
            case 2: ONE(2); break;                                                                  \
            default: ONE(1); break;                                                                 \
            }                                                                                       \
            for (int i_ = 0; i_ < n; i_++) y[(c_ + i_) * ys + r_] = o[i_];                          \
        }                                                                                           \
    }

/* 1 row x 8 column matmul kernels for prompts (quant_kmm_avx2.c), quant_mm_fn signature. */
void quant_avx2_gemm_q4_K(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs, int64_t nc,
                          float *y, int64_t ys);
void quant_avx2_gemm_q5_K(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs, int64_t nc,
                          float *y, int64_t ys);
void quant_avx2_gemm_q6_K(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs, int64_t nc,
                          float *y, int64_t ys);

/* Per-file kernel lookups, combined by quant_avx2_kernel(). */
quant_mm_fn quant_avx2_kernel_k(uint32_t wtype);
quant_mm_fn quant_avx2_kernel_0(uint32_t wtype);

#endif
