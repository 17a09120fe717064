/*
 * quant_0_avx2.c — AVX2 dot kernels for the 32-element block types (Q4_0,
 * Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL against Q8_0 activations) and the float types (F32, F16, BF16 against
 * F32 activations), and the AVX2 kernel lookup.
 */
#include "quant/quant_avx2.h"

/* ---- 32-element blocks: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 IQ4_NL x Q8_0 ---------------------------- */

/* One kernel body for every 32-block type (T a compile-time constant after
 * inlining). Per block and row the quants become 32 bytes in element order:
 * unsigned ([0,15] / [0,31]) for Q4_0 Q4_1 Q5_0 Q5_1, multiplied with the
 * signed activations by maddubs; signed for Q8_0 and IQ4_NL (the sign trick).
 * The offsets (-8 of Q4_0, -16 of Q5_0) are subtracted in int32 through the
 * activation sums, the minimums of Q4_1/Q5_1 added in float the same way; both
 * sums are computed once per block for all rows. The fp16 scales of the NR
 * rows x 2 blocks of an iteration are gathered into one vector and converted
 * and multiplied by the activation scales at once. */
enum { B_Q4_0, B_Q4_1, B_Q5_0, B_Q5_1, B_Q8_0, B_IQ4_NL };

Q_INLINE size_t b32_size(const int T) {
    return T == B_Q4_0 || T == B_IQ4_NL ? 18 : T == B_Q4_1 ? 20 : T == B_Q5_0 ? 22 : T == B_Q5_1 ? 24 : 34;
}
Q_INLINE bool b32_has_min(const int T) { return T == B_Q4_1 || T == B_Q5_1; }
Q_INLINE bool b32_signed(const int T) { return T == B_Q8_0 || T == B_IQ4_NL; }

/* 16 packed nibbles -> 32 bytes: low nibbles (elements 0..15) in the low lane,
 * high nibbles (16..31) in the high lane. */
Q_INLINE __m256i b32_nibbles(const uint8_t *qs) {
    const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_and_si256(_mm256_srlv_epi64(t, _mm256_set_epi64x(4, 4, 0, 0)), _mm256_set1_epi8(0x0F));
}

/* Bit j of the 32-bit little-endian word at qh as 0x10 in byte j (Q5 high bits). */
Q_INLINE __m256i b32_hbits(const uint8_t *qh) {
    uint32_t h;
    __builtin_memcpy(&h, qh, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit), _mm256_set1_epi8(0x10));
}

/* The block's quants (see above); tbl: the IQ4_NL levels in both lanes. */
Q_INLINE __m256i b32_quants(const int T, const uint8_t *b, __m256i tbl) {
    switch (T) {
    case B_Q4_0: return b32_nibbles(b + 2);
    case B_Q4_1: return b32_nibbles(b + 4);
    case B_Q5_0: return _mm256_or_si256(b32_nibbles(b + 6), b32_hbits(b + 2));
    case B_Q5_1: return _mm256_or_si256(b32_nibbles(b + 8), b32_hbits(b + 4));
    case B_IQ4_NL: return _mm256_shuffle_epi8(tbl, b32_nibbles(b + 2));
    default: return _mm256_loadu_si256((const __m256i *)(b + 2));
    }
}

Q_INLINE uint16_t b32_u16(const uint8_t *p) {
    uint16_t v;
    __builtin_memcpy(&v, p, 2);
    return v;
}

/* NB (1 or 2) blocks starting at block i of NR rows against activation blocks
 * x[i..i+NB). */
Q_INLINE void b32_step(const int T, const int NR, const int NB, const char *w, size_t ws, const blk_q8_0 *x,
                       int64_t i, __m256 *acc, __m256i tbl) {
    const size_t bs = b32_size(T);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i y[2], off[2];
    __m256 ysf[2];
    /* scales d(row) * d(x) per (row, block) in scalar float (as ggml): no
     * gather through memory, which stalled on store-to-load forwarding */
    const uint8_t *blk[4][2];
    float sd[8], sm[8];
    for (int n = 0; n < NB; n++) {
        const float dxn = q_h2f(x[i + n].d);
        for (int r = 0; r < NR; r++) {
            blk[r][n] = (const uint8_t *)w + (size_t)r * ws + (size_t)(i + n) * bs;
            sd[4 * n + r] = q_h2f(b32_u16(blk[r][n])) * dxn;
            if (b32_has_min(T)) sm[4 * n + r] = q_h2f(b32_u16(blk[r][n] + 2)) * dxn;
        }
    }
    for (int n = 0; n < NB; n++) {
        y[n] = _mm256_loadu_si256((const __m256i *)x[i + n].qs);
        if (T == B_Q4_0) off[n] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(8), y[n]), ones);
        if (T == B_Q5_0) off[n] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(16), y[n]), ones);
        if (b32_has_min(T))
            ysf[n] = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), y[n]), ones));
    }
    for (int n = 0; n < NB; n++)
        for (int r = 0; r < NR; r++) {
            const __m256i q = b32_quants(T, blk[r][n], tbl);
            __m256i p = b32_signed(T) ? q_dot_i8(q, y[n]) : _mm256_madd_epi16(_mm256_maddubs_epi16(q, y[n]), ones);
            if (T == B_Q4_0 || T == B_Q5_0) p = _mm256_sub_epi32(p, off[n]);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(sd[4 * n + r]), _mm256_cvtepi32_ps(p), acc[r]);
            if (b32_has_min(T)) acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(sm[4 * n + r]), ysf[n], acc[r]);
        }
}

Q_INLINE void b32_rows(const int T, const int NR, const char *w, size_t ws, int64_t k, const char *xv, float *out,
                       const char *pf) {
    const int64_t nb = k / 32;
    const blk_q8_0 *x = (const blk_q8_0 *)xv;
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)quant_iq4nl_values));
    __m256 acc[4];
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    const size_t pfs = nb >= 2 ? q_pf_step((size_t)NR * ws, nb / 2) : 0;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        q_prefetch(pf, pfs, i / 2);
        b32_step(T, NR, 2, w, ws, x, i, acc, tbl);
    }
    if (i < nb) b32_step(T, NR, 1, w, ws, x, i, acc, tbl);
    for (int r = 0; r < NR; r++) out[r] = q_hsum256(acc[r]);
}

/* ---- prompts: 1 row x up to 8 columns ---------------------------------------------------- */
/* Each block's quants are unpacked once and used for up to 8 activation
 * columns; per (row, column) the float operations are b32_rows' (NR = 1) in
 * the same order, so results are bit-identical to the row kernels (a matvec
 * equals column 0 of a matmul). Per column group and block, precomputed once:
 * the activation scale and, as float lanes, the activation sums of the
 * minimum types or (bit-cast) the offset sums of Q4_0/Q5_0. */
typedef struct { __m256 v[8]; float dy[8]; } b32_colpre;
#define B32_MAX_NB 256 /* k <= 8192 for the per-group table (else the row kernels) */

Q_INLINE void b32_prepare(const int T, const char *xv, size_t xs, int n, int64_t nb, b32_colpre *pre) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t i = 0; i < nb; i++)
        for (int c = 0; c < 8; c++) {
            b32_colpre *p = pre + i;
            if (c >= n) {
                p->dy[c] = 0.0f;
                p->v[c] = _mm256_setzero_ps();
                continue;
            }
            const blk_q8_0 *x = (const blk_q8_0 *)(xv + (size_t)c * xs) + i;
            p->dy[c] = q_h2f(x->d);
            const __m256i y = _mm256_loadu_si256((const __m256i *)x->qs);
            if (T == B_Q4_0 || T == B_Q5_0)
                p->v[c] = _mm256_castsi256_ps(
                    _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(T == B_Q4_0 ? 8 : 16), y), ones));
            else if (b32_has_min(T))
                p->v[c] = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), y), ones));
            else p->v[c] = _mm256_setzero_ps();
        }
}

Q_INLINE void b32_1xn(const int T, const int NC, const char *w, int64_t nb, const char *xv, size_t xs,
                      const b32_colpre *pre, __m256i tbl, float *out) {
    const size_t bs = b32_size(T);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[8];
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *blk = (const uint8_t *)w + (size_t)i * bs;
        const __m256i q = b32_quants(T, blk, tbl);
        const __m256i aq = b32_signed(T) ? _mm256_sign_epi8(q, q) : q;
        const float dw = q_h2f(b32_u16(blk)), mw = b32_has_min(T) ? q_h2f(b32_u16(blk + 2)) : 0.0f;
        const b32_colpre *p = pre + i;
        for (int c = 0; c < NC; c++) {
            const __m256i y = _mm256_loadu_si256((const __m256i *)((const blk_q8_0 *)(xv + (size_t)c * xs) + i)->qs);
            __m256i d = _mm256_madd_epi16(_mm256_maddubs_epi16(aq, b32_signed(T) ? _mm256_sign_epi8(y, q) : y), ones);
            if (T == B_Q4_0 || T == B_Q5_0) d = _mm256_sub_epi32(d, _mm256_castps_si256(p->v[c]));
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * p->dy[c]), _mm256_cvtepi32_ps(d), acc[c]);
            if (b32_has_min(T)) acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(mw * p->dy[c]), p->v[c], acc[c]);
        }
    }
    for (int c = 0; c < NC; c++) out[c] = q_hsum256(acc[c]);
}

Q_INLINE void b32_gemm(const int T, const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs,
                       int64_t nc, float *y, int64_t ys) {
    const char *w = (const char *)W, *x = (const char *)xq;
    const int64_t nb = k / 32;
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)quant_iq4nl_values));
    b32_colpre pre[B32_MAX_NB];
#define B32_ONE(NC) b32_1xn(T, NC, wr, nb, xc, xs, pre, tbl, o)
    Q_GEMM_COLS8(b32_prepare(T, xc, xs, n, nb, pre), B32_ONE)
#undef B32_ONE
}

/* Matvec and narrow matmuls: 4 rows x 1 column (b32_rows); >= 4 columns and
 * k <= 8192: 1 row x 8 columns (column groups of 8, the last one narrower). */
#define B32_KERNEL(name, T)                                                                                  \
    static void name##_dot4(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { \
        b32_rows(T, 4, w, ws, k, x, o, pf);                                                                 \
    }                                                                                                       \
    static void name##_dot1(const char *w, size_t ws, int64_t k, const char *x, float *o, const char *pf) { \
        b32_rows(T, 1, w, ws, k, x, o, pf);                                                                 \
    }                                                                                                       \
    QUANT_DEFINE_MM(mm_##name##_rows, name##_dot4, name##_dot1)                                             \
    static void mm_##name(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs,       \
                          int64_t nc, float *y, int64_t ys) {                                               \
        if (nc >= 4 && k / 32 <= B32_MAX_NB) b32_gemm(T, W, ws, k, nr, xq, xs, nc, y, ys);                  \
        else mm_##name##_rows(W, ws, k, nr, xq, xs, nc, y, ys);                                            \
    }
B32_KERNEL(q4_0, B_Q4_0)
B32_KERNEL(q4_1, B_Q4_1)
B32_KERNEL(q5_0, B_Q5_0)
B32_KERNEL(q5_1, B_Q5_1)
B32_KERNEL(q8_0, B_Q8_0)
B32_KERNEL(iq4_nl, B_IQ4_NL)

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
    case MR_TYPE_Q4_1: return mm_q4_1;
    case MR_TYPE_Q5_0: return mm_q5_0;
    case MR_TYPE_Q5_1: return mm_q5_1;
    case MR_TYPE_IQ4_NL: return mm_iq4_nl;
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
