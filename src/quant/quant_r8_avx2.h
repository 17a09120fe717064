/*
 * quant_r8_avx2.h — private helpers of the row-interleaved (R8) kernels, shared by the
 * AVX2 files (quant_r8_avx2.c, quant_r8b_avx2.c) and the AVX-512 VNNI ones
 * (quant_r8_vnni_avx512.c): scale-vector shuffles, the unpacking of a Q4_K/Q5_K R8 block,
 * the minimums' terms, the per-column activation table of the 32-element block types, and
 * the row-group x column-tile driver. Layouts: quant_impl.h.
 */
#ifndef MR_QUANT_R8_AVX2_H
#define MR_QUANT_R8_AVX2_H

#include "base/base.h"
#include "quant/quant_avx2.h"

/* vpshufb masks over a 32-byte scale vector laid out by K8_SIDX (rows 0-3 in the low
 * 128-bit half, 4-7 in the high one; sub-block q of 4 at bytes 4q..4q+3 of a half):
 * int16 (s[q], s[q]) in each 32-bit lane, zero-extended. */
Q_INLINE __m256i r8_dup(int q) {
    const char a = (char)(4 * q), z = (char)0x80;
    return _mm256_setr_epi8(a, z, a, z, a + 1, z, a + 1, z, a + 2, z, a + 2, z, a + 3, z, a + 3, z, a, z, a, z, a + 1, z,
                            a + 1, z, a + 2, z, a + 2, z, a + 3, z, a + 3, z);
}
/* int16 (s[q0], s[q1]) per lane, zero-extended. */
Q_INLINE __m256i r8_pair(int q0, int q1) {
    const char a = (char)(4 * q0), b = (char)(4 * q1), z = (char)0x80;
    return _mm256_setr_epi8(a, z, b, z, a + 1, z, b + 1, z, a + 2, z, b + 2, z, a + 3, z, b + 3, z, a, z, b, z, a + 1, z,
                            b + 1, z, a + 2, z, b + 2, z, a + 3, z, b + 3, z);
}
/* The same with the byte in the high half of each int16 (then >> 8: sign-extended). */
Q_INLINE __m256i r8_pair_hi(int q0, int q1) {
    const char a = (char)(4 * q0), b = (char)(4 * q1), z = (char)0x80;
    return _mm256_setr_epi8(z, a, z, b, z, a + 1, z, b + 1, z, a + 2, z, b + 2, z, a + 3, z, b + 3, z, a, z, b, z, a + 1,
                            z, b + 1, z, a + 2, z, b + 2, z, a + 3, z, b + 3);
}

/* Q4_K/Q5_K scales and mins of sub-blocks 0-3 (sc0, mn0) and 4-7 (sc1, mn1), one byte per
 * (sub-block, row) in K8_SIDX order. */
Q_INLINE void k8_scales(const uint8_t *scl, const uint8_t *sch, __m256i *sc0, __m256i *sc1, __m256i *mn0,
                        __m256i *mn1) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i a = _mm256_loadu_si256((const __m256i *)scl), b = _mm256_loadu_si256((const __m256i *)(scl + 32));
    const __m256i h = _mm256_loadu_si256((const __m256i *)sch);
    *sc0 = _mm256_or_si256(_mm256_and_si256(a, m4), _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(0x03)), 4));
    *sc1 = _mm256_or_si256(_mm256_and_si256(b, m4), _mm256_and_si256(h, _mm256_set1_epi8(0x30)));
    *mn0 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(0x0C)), 2));
    *mn1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), m4),
                           _mm256_srli_epi16(_mm256_and_si256(h, _mm256_set1_epi8((char)0xC0)), 2));
}

/* One Q4_K/Q5_K R8 block, unpacked for the kernels: quants (and 5th bits), scales of
 * sub-blocks 0-3 / 4-7 (sc0, sc1; K8_SIDX order), the minimums as int16 pairs of sub-blocks
 * (2P, 2P+1) per row (mp[P]), d and dmin of the 8 rows. */
typedef struct {
    const uint8_t *qs, *qh;
    __m256i sc0, sc1, mp[4];
    __m256 d8, dm8;
} k45_blk;

Q_INLINE void k45_load(const int Q5, const char *blk, k45_blk *b) {
    const uint16_t *dp = (const uint16_t *)blk; /* d[8], dmin[8] lead both layouts */
    const uint8_t *scl = (const uint8_t *)blk + 32, *sch = scl + 64;
    b->qh = Q5 ? ((const blk_q5_K_r8 *)blk)->qh : NULL;
    b->qs = Q5 ? ((const blk_q5_K_r8 *)blk)->qs : ((const blk_q4_K_r8 *)blk)->qs;
    __m256i mn0, mn1;
    k8_scales(scl, sch, &b->sc0, &b->sc1, &mn0, &mn1);
    b->mp[0] = _mm256_shuffle_epi8(mn0, r8_pair(0, 1));
    b->mp[1] = _mm256_shuffle_epi8(mn0, r8_pair(2, 3));
    b->mp[2] = _mm256_shuffle_epi8(mn1, r8_pair(0, 1));
    b->mp[3] = _mm256_shuffle_epi8(mn1, r8_pair(2, 3));
    b->d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dp));
    b->dm8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(dp + 8)));
}

/* The part of a k45_blk both prompt buffers (k45_pre, k45z_pre) keep: minimums and d, dmin. */
typedef struct {
    __m256i mp[4];
    __m256 d8, dm8;
} k45_md;
Q_INLINE void k45_md_of(const k45_blk *b, k45_md *m) {
    for (int q = 0; q < 4; q++) m->mp[q] = b->mp[q];
    m->d8 = b->d8, m->dm8 = b->dm8;
}

/* Per row, min[2P][row] * B[2P] + min[2P+1][row] * B[2P+1] for P < 4, with B[j] =
 * bsums[2j] + bsums[2j+1] of column x (ggml's 4 lanes of the minimums' term). */
Q_INLINE void k8_min_terms(const __m256i mp[4], const blk_q8_K *x, __m256i t[4]) {
    const __m128i bs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)x->bsums),
                                      _mm_loadu_si128((const __m128i *)(x->bsums + 8)));
    int32_t p[4];
    _mm_storeu_si128((__m128i *)p, bs);
    for (int P = 0; P < 4; P++) t[P] = _mm256_madd_epi16(mp[P], _mm256_set1_epi32(p[P]));
}

/* Their sum over P: the whole minimums' term, per row (exact). */
Q_INLINE __m256i k8_mins(const __m256i mp[4], const blk_q8_K *x) {
    __m256i t[4];
    k8_min_terms(mp, x, t);
    return _mm256_add_epi32(_mm256_add_epi32(t[0], t[1]), _mm256_add_epi32(t[2], t[3]));
}

/* Q4_K/Q5_K minimums through a per-column table (k8_bp_prepare, R8_DRIVER_BP): bp[4 * i + P] =
 * the int16 pair (B[2P], B[2P+1]) of block i (B as in k8_min_terms), computed once per matmul
 * instead of once per row group. */
#define K8_BP_N 4096 /* table entries (16 bytes each: 64 KiB) */

Q_INLINE void k8_bp_prepare(const char *xv, size_t xs, int nc, int64_t nb, int32_t *bp) {
    for (int c = 0; c < nc; c++)
        for (int64_t i = 0; i < nb; i++) {
            const blk_q8_K *x = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
            _mm_storeu_si128((__m128i *)(bp + 4 * ((size_t)c * (size_t)nb + (size_t)i)),
                             _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)x->bsums),
                                            _mm_loadu_si128((const __m128i *)(x->bsums + 8))));
        }
}

/* k8_mins from the table row bp of the column's block (exact: the same integers). */
Q_INLINE __m256i k8_mins_bp(const __m256i mp[4], const int32_t *bp) {
    const __m256i t0 = _mm256_madd_epi16(mp[0], _mm256_set1_epi32(bp[0]));
    const __m256i t1 = _mm256_madd_epi16(mp[1], _mm256_set1_epi32(bp[1]));
    const __m256i t2 = _mm256_madd_epi16(mp[2], _mm256_set1_epi32(bp[2]));
    const __m256i t3 = _mm256_madd_epi16(mp[3], _mm256_set1_epi32(bp[3]));
    return _mm256_add_epi32(_mm256_add_epi32(t0, t1), _mm256_add_epi32(t2, t3));
}

/* sum_q s[4v4 + q] * bsums[4v4 + q] per row for the 4 sub-blocks of a scale vector S (signed bytes
 * in K8_SIDX(q, r) order; Q6_K_R8's sc, Q3_K's and Q2_K's decoded scales) and bs = bsums + 4v4. */
Q_INLINE __m256i r8_scale_bsums(__m256i S, const int16_t *bs) {
    const __m256i sp0 = _mm256_srai_epi16(_mm256_shuffle_epi8(S, r8_pair_hi(0, 1)), 8);
    const __m256i sp1 = _mm256_srai_epi16(_mm256_shuffle_epi8(S, r8_pair_hi(2, 3)), 8);
    return _mm256_add_epi32(_mm256_madd_epi16(sp0, bcast32(bs)), _mm256_madd_epi16(sp1, bcast32(bs + 2)));
}

/* ---- drivers --------------------------------------------------------------------------------------- */

/* Column tiles of N, then of 4, 3, 2, 1 over n columns: CALL(T, NC, c) per tile (c: its first column). */
#define R8_TILE_LOOP(N, n, CALL, T)                                                                   \
    do {                                                                                            \
        int64_t c_ = 0;                                                                             \
        for (; c_ + (N) <= (n); c_ += (N)) CALL(T, N, c_);                                             \
        if ((N) > 4 && c_ + 4 <= (n)) {                                                             \
            CALL(T, 4, c_);                                                                            \
            c_ += 4;                                                                                \
        }                                                                                           \
        switch ((n) - c_) {                                                                         \
        case 3: CALL(T, 3, c_); break;                                                                 \
        case 2: CALL(T, 2, c_); break;                                                                 \
        case 1: CALL(T, 1, c_); break;                                                                 \
        default: break;                                                                             \
        }                                                                                           \
    } while (0)

/* Groups of 8 rows (outer: a group's blocks stay in L1) x columns in tiles of N (4 or 8), then
 * of 4, 3, 2, 1; the first tile of a group prefetches. TILE(NC, g, nb, x, xs, y, ys, pf). */
#define R8_DRIVER_N(name, TILE, N)                                                                   \
    static void name(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs,      \
                     int64_t nc, float *y, int64_t ys) {                                              \
        const int64_t nb = k / QK_K;                                                                  \
        const bool pf_ = r8_pf(nc);                                                                   \
        for (int64_t r = 0; r < nr; r += 8) {                                                         \
            const char *g = (const char *)W + (size_t)r * ws;                                         \
            R8_TILE_LOOP(N, nc, R8_N_CALL, TILE);                                                         \
        }                                                                                             \
    }
#define R8_N_CALL(T, NC, c) T(NC, g, nb, (const char *)xq + (size_t)(c) * xs, xs, y + (c) * ys + r, ys, (c) == 0 && pf_)
#define R8_DRIVER(name, TILE) R8_DRIVER_N(name, TILE, 4)

/* R8_DRIVER_N with the row group's blocks unpacked once (UNPACK(g, nb, pre, pf), into PRE_T
 * pre[PRE_MAX] on the stack) where two or more full tiles of N columns share it:
 * TILE(NC, g, P, nb, x, xs, y, ys, pf), P the unpacked blocks or NULL (as R8_DRIVER_BP). */
#define R8_DRIVER_PRE(name, TILE, N, PRE_T, PRE_MAX, UNPACK)                                         \
    static void name(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs,      \
                     int64_t nc, float *y, int64_t ys) {                                              \
        const int64_t nb = k / QK_K;                                                                  \
        PRE_T pre[PRE_MAX];                                                                           \
        const bool unpack = nc >= 2 * (N) && nb <= (PRE_MAX), pf_ = r8_pf(nc);                       \
        for (int64_t r = 0; r < nr; r += 8) {                                                         \
            const char *g = (const char *)W + (size_t)r * ws;                                         \
            if (unpack) {                                                                             \
                UNPACK(g, nb, pre, pf_);                                                              \
                R8_TILE_LOOP(N, nc, R8_PRE_CALL_P, TILE);                                             \
            } else {                                                                                  \
                R8_TILE_LOOP(N, nc, R8_PRE_CALL_0, TILE);                                             \
            }                                                                                         \
        }                                                                                             \
    }
#define R8_PRE_CALL_P(T, NC, c) T(NC, g, pre, nb, (const char *)xq + (size_t)(c) * xs, xs, y + (c) * ys + r, ys, (c) == 0 && pf_)
#define R8_PRE_CALL_0(T, NC, c) T(NC, g, NULL, nb, (const char *)xq + (size_t)(c) * xs, xs, y + (c) * ys + r, ys, (c) == 0 && pf_)

/* R8_DRIVER_N for the Q4_K/Q5_K tiles, with the minimums' table (k8_bp_prepare) built per
 * chunk of columns (outer): TILE(NC, g, P, nb, x, xs, bp, y, ys, pf), bp the tile's first
 * column's table rows. Where two or more full tiles share a row group, its blocks are
 * unpacked once (UNPACK(g, nb, pre, pf), into PRE_T pre[PRE_MAX] on the stack) and the tiles get
 * them as P (else P is NULL and they unpack g themselves): the unpacking is then paid once per
 * row group instead of once per tile. */
#define R8_DRIVER_BP(name, TILE, N, PRE_T, PRE_MAX, UNPACK)                                                     \
    static void name(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs, int64_t nc,  \
                     float *y, int64_t ys) {                                                                  \
        const int64_t nb = k / QK_K;                                                                          \
        int32_t bp[4 * K8_BP_N];                                                                              \
        PRE_T pre[PRE_MAX];                                                                                   \
        const bool pf_ = r8_pf(nc);                                                                           \
        MR_ASSERT(nb <= K8_BP_N);                                                                             \
        const int64_t cmax = K8_BP_N / nb, nch = (nc + cmax - 1) / cmax;                                      \
        int64_t chunk = (nc + nch - 1) / nch; /* as few chunks as fit, even, whole tiles where possible */    \
        if ((chunk + 23) / 24 * 24 <= cmax) chunk = (chunk + 23) / 24 * 24;                                   \
        for (int64_t c0 = 0; c0 < nc; c0 += chunk) {                                                          \
            const int64_t n = MR_MIN(chunk, nc - c0);                                                         \
            const char *xc0 = (const char *)xq + (size_t)c0 * xs;                                             \
            const bool unpack = n >= 2 * (N) && nb <= (PRE_MAX);                                              \
            k8_bp_prepare(xc0, xs, (int)n, nb, bp);                                                           \
            for (int64_t r = 0; r < nr; r += 8) {                                                             \
                const char *g = (const char *)W + (size_t)r * ws;                                             \
                float *yr = y + c0 * ys + r;                                                                  \
                if (unpack) {                                                                                 \
                    UNPACK(g, nb, pre, pf_);                                                                  \
                    R8_TILE_LOOP(N, n, R8_BP_CALL_P, TILE);                                                   \
                } else {                                                                                      \
                    R8_TILE_LOOP(N, n, R8_BP_CALL_0, TILE);                                                       \
                }                                                                                             \
            }                                                                                                 \
        }                                                                                                     \
    }
#define R8_BP_CALL_P(T, NC, c) T(NC, g, pre, nb, xc0 + (size_t)(c) * xs, xs, bp + 4 * (c) * nb, yr + (c) * ys, ys, (c) == 0 && pf_)
#define R8_BP_CALL_0(T, NC, c) T(NC, g, NULL, nb, xc0 + (size_t)(c) * xs, xs, bp + 4 * (c) * nb, yr + (c) * ys, ys, (c) == 0 && pf_)

/* ---- 32-element block types (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 _R8F) ---------------------------------------- */

enum { R_Q4_0, R_Q4_1, R_Q5_0, R_Q5_1, R_Q8_0 };

Q_INLINE bool rb_min(const int T) { return T == R_Q4_1 || T == R_Q5_1; }
Q_INLINE bool rb_q5(const int T) { return T == R_Q5_0 || T == R_Q5_1; }
Q_INLINE size_t rb_bsz(const int T) { /* bytes of one 8-row block */
    return T == R_Q4_0 ? 144 : T == R_Q4_1 ? 160 : T == R_Q5_0 ? 176 : T == R_Q5_1 ? 192 : 272;
}
Q_INLINE size_t rb_qh(const int T) { return rb_min(T) ? 32 : 16; }
Q_INLINE size_t rb_qs(const int T) { return rb_qh(T) + (rb_q5(T) ? 32 : 0); }

/* Per column and block: the activation scale, and aux = (offset types) 8 or 16 times the
 * quants' sum as an int, (minimum types) scale * sum as a float; Q8_0: 0, or with vnni
 * (weights biased by +128 for vpdpbusd) 128 times the sum. With vnni the int is -1/2 times
 * that (all even): the VNNI tiles start both of a row's int32 sums there. */
typedef struct {
    float dx;
    union { int32_t i; float f; } aux;
} rb_pre;
#define RB_PRE_N 8192 /* 64 KiB */


Q_INLINE void rb_prepare(const int T, const bool vnni, const char *xv, size_t xs, int nc, int64_t nb, rb_pre *pre) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int c = 0; c < nc; c++)
        for (int64_t i = 0; i < nb; i++) {
            const blk_q8_0 *x = (const blk_q8_0 *)(xv + (size_t)c * xs) + i;
            rb_pre *p = pre + (size_t)c * (size_t)nb + i;
            p->dx = q_h2f(x->d);
            if (T == R_Q8_0 && !vnni) {
                p->aux.i = 0;
                continue;
            }
            const __m256i y = _mm256_loadu_si256((const __m256i *)x->qs);
            const __m256i s8 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, y), ones16);
            const int32_t sum =
                q_hsum_i32x4(_mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1)));
            if (rb_min(T)) p->aux.f = p->dx * (float)sum;
            else if (vnni) p->aux.i = -(T == R_Q4_0 ? 4 : T == R_Q5_0 ? 8 : 64) * sum; /* half, negated: rb*_tile's start */
            else p->aux.i = (T == R_Q4_0 ? 8 : T == R_Q5_0 ? 16 : 128) * sum;
        }
}

/* Columns in chunks whose table fits RB_PRE_N (outer), then groups of 8 rows (a group's
 * blocks stay in L1) x column tiles of N (4 or 8), then of 4, 3, 2, 1; the first tile of a
 * group prefetches. TILE(T, NC, g, nb, x, xs, pre, y, ys, pf); VNNI as rb_prepare's. */
#define RB_DRIVER(name, T, TILE, VNNI, N)                                                                        \
    static void name(const void *W, size_t ws, int64_t k, int64_t nr, const void *xq, size_t xs, int64_t nc,  \
                     float *y, int64_t ys) {                                                                  \
        const int rb_t_ = T; /* for R8_RB_CALL */                                                             \
        const bool pf_ = r8_pf(nc);                                                                           \
        const int64_t nb = k / 32;                                                                            \
        rb_pre pre[RB_PRE_N];                                                                                 \
        const int64_t chunk = MR_MAX((int64_t)4, (RB_PRE_N / nb) & ~(int64_t)7); /* nb <= 2048: >= 4 */      \
        for (int64_t c0 = 0; c0 < nc; c0 += chunk) {                                                          \
            const int64_t n = MR_MIN(chunk, nc - c0);                                                         \
            const char *xc0 = (const char *)xq + (size_t)c0 * xs;                                             \
            rb_prepare(T, VNNI, xc0, xs, (int)n, nb, pre);                                                    \
            for (int64_t r = 0; r < nr; r += 8) {                                                             \
                const char *g = (const char *)W + (size_t)r * ws;                                             \
                float *yr = y + c0 * ys + r;                                                                  \
                R8_TILE_LOOP(N, n, R8_RB_CALL, TILE);                                                         \
            }                                                                                                 \
        }                                                                                                     \
    }
#define R8_RB_CALL(TL, NC, c) TL(rb_t_, NC, g, nb, xc0 + (size_t)(c) * xs, xs, pre + (c) * nb, yr + (c) * ys, ys, (c) == 0 && pf_)

#endif
