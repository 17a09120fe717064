/*
 * attn_multi_avx512.c — flash attention of several tokens of a micro-batch at
 * once over an f16 or q8_0 KV cache, on AVX-512 (cpu_attn_multi, attn.h).
 *
 * The decode kernel (attn_avx2.c) reads the cache once per token: for a prompt
 * of T tokens each K and V row is converted and read T times, and its 8-lane
 * dot products end in horizontal sums. Here a call takes nt consecutive tokens
 * of one KV head, R = nt * g query rows (g heads per KV head; nt = 64 / g), and
 * works like a small GEMM per block of ATTN_MB cells:
 *  - the block's K rows (and V rows) are converted to f32 once for all rows;
 *  - scores S[cell][row], 6 cells x 8 rows a tile: a vector holds two rows'
 *    8-lane partial sums (the decode kernel's order of sums), the queries
 *    (rounded to f16 as the decode kernel and ggml do) laid out in row pairs
 *    once per call, 8 dimensions of a K row broadcast to both halves;
 *  - cells a token does not see (causal mask, other sequences, window) get
 *    -inf in its rows; the online softmax runs lane-wise (running max m and
 *    sum l per row; a row's output is rescaled by e^(m - m') when its max
 *    grows, as the decode kernel);
 *  - V: O[row][dims] += P[cell][row] * V[cell][dims], 4 rows x 64 dims of
 *    accumulators per pass over the block's cells.
 * A q8_0 K goes through integer products (scores_tile_q8): the queries rounded
 * to q8_0 as the decode kernel's, the block's K rows biased to unsigned once,
 * rows in the lanes of vpdpbusd; a q8_0 V is widened to f32 once per block and
 * its block scales folded into the probabilities, as the decode kernel's
 * fold_vscales, or where the decode kernel takes it in integer products (GQA's
 * heads of 128 on; a wider one, MLA's latent, stays on the per-token path:
 * cpu_attn_multi_tokens) in integer products as well (block_v_i8).
 * Every sum runs in the decode kernel's order (its blocks of ATTN_MB = its
 * ATTN_FB cells, its exp, its double sums), so the outputs are the decode
 * kernel's bit for bit with the f32 V pass (test_attn), whatever the
 * micro-batch size; the integer V pass groups the weights by the cells any of
 * the call's tokens sees, so only where they see different cells of a block
 * (near the causal diagonal) can it round differently from decode.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "base/base.h"
#include "cpu/attn_vec.h"
#include "quant/quant.h"

#define MB CPU_ATTN_MULTI_MB

/* f16 rows idx[0..n) of base (row bytes rb) -> dst (n rows of d floats, stride ld); d % 16 == 0 */
static void rows_f32(const uint8_t *base, size_t rb, const int *idx, int n, int d, float *dst, int ld) {
    for (int k = 0; k < n; k++) {
        const uint16_t *s = (const uint16_t *)(base + (size_t)idx[k] * rb);
        float *o = dst + (size_t)k * ld;
        for (int i = 0; i < d; i += 16) _mm512_storeu_ps(o + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + i))));
    }
}

/* S[k][r] = scale * sum_i Kf[k][i] * q[r][i] for 6 cells k0.. and 8 rows r0.., summed in the
 * decode kernel's order (attn_avx2.c scores_f16_h): per (cell, row) 8 lanes of partial sums over
 * the dimensions i = x mod 8, each in increasing i, then its hsum8x8 (two cells at once:
 * hsum8x8x2), then the scale: the
 * scores, and so everything after them, are the decode kernel's bit for bit. A vector holds two
 * rows' 8 lanes (Qp: row pairs interleaved in 8-dimension chunks) against a cell's 8 dimensions
 * broadcast to both halves: per 8 dimensions 6 + 4 loads for 24 FMAs. */
static inline void scores_tile(const float *Kf, int ldk, int k0, const float *Qp, int r0, int dk, __m256 sc, float *S,
                               int Rp) {
    __m512 acc[6][4];
    for (int c = 0; c < 6; c++)
        for (int p = 0; p < 4; p++) acc[c][p] = _mm512_setzero_ps();
    const float *kr = Kf + (size_t)k0 * ldk, *qp = Qp + (size_t)(r0 / 2) * dk * 2;
    for (int i = 0; i < dk; i += 8) {
        __m512 q[4];
        for (int p = 0; p < 4; p++) q[p] = _mm512_loadu_ps(qp + (size_t)p * dk * 2 + 2 * i);
        for (int c = 0; c < 6; c++) {
            const __m512 k = _mm512_broadcast_f32x8(_mm256_loadu_ps(kr + (size_t)c * ldk + i));
            for (int p = 0; p < 4; p++) acc[c][p] = _mm512_fmadd_ps(q[p], k, acc[c][p]);
        }
    }
    const __m512 sc2 = _mm512_broadcast_f32x8(sc);
    for (int c = 0; c < 6; c += 2) { /* two cells' sums at once */
        __m512 h[8];
        attn_pair_rows(acc[c], acc[c + 1], h);
        const __m512 r = _mm512_mul_ps(hsum8x8x2(h), sc2);
        _mm256_storeu_ps(S + (size_t)(k0 + c) * Rp + r0, _mm512_castps512_ps256(r));
        _mm256_storeu_ps(S + (size_t)(k0 + c + 1) * Rp + r0, _mm512_extractf32x8_ps(r, 1));
    }
}

/* The q8_0 path's layouts (q8_prep, kb_rows):
 *   queries, 16 rows v (rows 16v..16v + 15) a vector: quants of block b, group gg (elements
 *     32b + 4gg..+3) at Qq + ((v * nbk + b) * 8 + gg) * 64 + 4 * lane; the block scales at
 *     dq[(v * nbk + b) * 16 + lane], -128 * the block's quant sum at nc[(v * nbk + b) * 16 + lane];
 *   K rows of the block: cell k's quants + 128 at Kb + k * dk, its block scales at dk8[k * nbk + b]. */
typedef struct {
    const uint8_t *Qq, *Kb;
    const float *dq, *dk8;
    const int32_t *nc;
    int nbk, dk, Rp;
} q8lay;

/* S[k][r] = scale * sum_b (dK(k, b) * dq(r, b)) * (int32 dot of block b) for NC cells k0.. and 16 * NV
 * rows from 16 * v0: the decode kernel's integer sums (K + 128 against the signed queries, the
 * queries' 128 * sum taken off: here the accumulators' start) and its float steps in its order
 * (attn_q8_kern.h), so the same scores bit for bit. Rows are the lanes: a cell's 4 quants
 * broadcast per vpdpbusd, no horizontal sums. */
static inline __attribute__((always_inline)) void scores_tile_q8(const int NC, const int NV, const q8lay *L, int k0,
                                                                 int v0, __m512 sc, float *S) {
    const int nbk = L->nbk, dk = L->dk;
    __m512 s[6][2];
    for (int c = 0; c < NC; c++)
        for (int v = 0; v < NV; v++) s[c][v] = _mm512_setzero_ps();
    for (int b = 0; b < nbk; b++) {
        __m512i ia[6][2];
        for (int v = 0; v < NV; v++) {
            const __m512i n0 = _mm512_loadu_si512((const void *)(L->nc + ((size_t)(v0 + v) * nbk + b) * 16));
            for (int c = 0; c < NC; c++) ia[c][v] = n0;
        }
        for (int gg = 0; gg < 8; gg++) {
            __m512i qv[2];
            for (int v = 0; v < NV; v++)
                qv[v] = _mm512_loadu_si512((const void *)(L->Qq + (((size_t)(v0 + v) * nbk + b) * 8 + gg) * 64));
            for (int c = 0; c < NC; c++) {
                /* a broadcast from memory (a load port), not through a general register */
                const int32_t *kw = (const int32_t *)(L->Kb + (size_t)(k0 + c) * dk + 32 * b + 4 * gg);
                __m512i kb;
                __asm__("vpbroadcastd %1, %0" : "=v"(kb) : "m"(*kw));
                for (int v = 0; v < NV; v++) ia[c][v] = _mm512_dpbusd_epi32(ia[c][v], kb, qv[v]);
            }
        }
        for (int c = 0; c < NC; c++) {
            const __m512 dkc = _mm512_set1_ps(L->dk8[(size_t)(k0 + c) * nbk + b]);
            for (int v = 0; v < NV; v++) {
                const __m512 d = _mm512_mul_ps(dkc, _mm512_loadu_ps(L->dq + ((size_t)(v0 + v) * nbk + b) * 16));
                s[c][v] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(ia[c][v]), s[c][v]);
            }
        }
    }
    for (int c = 0; c < NC; c++)
        for (int v = 0; v < NV; v++)
            _mm512_storeu_ps(S + (size_t)(k0 + c) * L->Rp + 16 * (v0 + v), _mm512_mul_ps(s[c][v], sc));
}

/* O[r][d] += sum_k P[k][r] * Vf[k][d] for NR rows r0.. and 16 * NU dims d0.. (nk cells) */
#define VACC_INLINE static inline __attribute__((always_inline))
VACC_INLINE void vacc_tile(const int NR, const int NU, const float *P, int Rp, int r0, const float *Vf, int ldv, int nk,
                           int d0, float *O, int dv) {
    __m512 acc[4][4];
    for (int r = 0; r < NR; r++)
        for (int u = 0; u < NU; u++) acc[r][u] = _mm512_loadu_ps(O + (size_t)(r0 + r) * dv + d0 + 16 * u);
    for (int k = 0; k < nk; k++) {
        const float *vr = Vf + (size_t)k * ldv + d0;
        __m512 v[4];
        for (int u = 0; u < NU; u++) v[u] = _mm512_loadu_ps(vr + 16 * u);
        for (int r = 0; r < NR; r++) {
            const __m512 p = _mm512_set1_ps(P[(size_t)k * Rp + r0 + r]);
            for (int u = 0; u < NU; u++) acc[r][u] = _mm512_fmadd_ps(p, v[u], acc[r][u]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int u = 0; u < NU; u++) _mm512_storeu_ps(O + (size_t)(r0 + r) * dv + d0 + 16 * u, acc[r][u]);
}

/* vacc_tile over all R rows, 4 at a time, for 16 * NU dims d0.. */
VACC_INLINE void vacc_rows(const int NU, const float *P, int R, int Rp, const float *V, int ldv, int nv, int d0,
                           float *O, int dv) {
    int r0 = 0;
    for (; r0 + 4 <= R; r0 += 4) vacc_tile(4, NU, P, Rp, r0, V, ldv, nv, d0, O, dv);
    switch (R - r0) {
    case 3: vacc_tile(3, NU, P, Rp, r0, V, ldv, nv, d0, O, dv); break;
    case 2: vacc_tile(2, NU, P, Rp, r0, V, ldv, nv, d0, O, dv); break;
    case 1: vacc_tile(1, NU, P, Rp, r0, V, ldv, nv, d0, O, dv); break;
    default: break;
    }
}

/* One call's state (scratch layout: cpu_attn_multi_floats in attn.c). */
typedef struct {
    const cpu_attn_args *a;
    int nt, g, dk, dv, R, Rp;
    const int32_t *pos, *seq;
    size_t krb, vrb;
    const uint8_t *Kh, *Vh;
    float *Qt, *O, *Kf, *Vf, *m, *l, *Pb;
    uint64_t all;
    bool kq8, vq8; /* q8_0 K (Qt: q8lay's queries, Kf: its K rows), q8_0 V */
    bool vi8;      /* q8_0 V in integer products (block_v_i8) */
    uint32_t *wq;  /* vi8: the 8-bit weights, [quad][V block][row] dwords (4 cells each) */
    float *vsc;    /* vi8: their scales, [group][V block][row] */
    float *dvf;    /* vi8: the V block scales of the listed cells, [V block][MB] */
    float *dm;     /* vi8: their largest, [group][V block] */
    int16_t *d15;  /* vi8: as 15-bit fractions of it (attn_d15_z), */
    int16_t *dp;   /* vi8: and those in pairs of cells (block_v_i8) */
    bool tiled;    /* the tiled q8_0 cache (attn.h; vi8): K and V read by kb_tiled and vt_tiled */
} mctx;

/* Cells of [c0, c1) visible to at least one of the tokens into idx / msk (bit t: token t sees
 * it); returns their count; *part: some token does not see one of them. */
static int list_cells(const mctx *x, int c0, int c1, int *idx, uint64_t *msk, bool *part) {
    const cpu_attn_args *a = x->a;
    int nv = 0;
    for (int c = c0; c < c1; c++) {
        uint64_t mk = 0;
        for (int t = 0; t < x->nt; t++)
            if (cpu_attn_cell_visible(a->cell_pos, a->cell_seq, c, x->pos[t], x->seq[t], a->n_swa)) mk |= (uint64_t)1 << t;
        if (!mk) continue;
        *part |= mk != x->all;
        idx[nv] = c, msk[nv++] = mk;
    }
    return nv;
}

/* q8_0 K rows idx[0..n) (row bytes rb, dk elements) -> Kb (quants + 128, dk bytes a row) and
 * dk8 (block scales as floats, nbk a row): q8lay's K. */
static void kb_rows(const uint8_t *base, size_t rb, const int *idx, int n, int dk, uint8_t *Kb, float *dk8) {
    const int nbk = dk / 32;
    const __m256i x80 = _mm256_set1_epi8((char)0x80);
    for (int k = 0; k < n; k++) {
        const uint8_t *r = base + (size_t)idx[k] * rb;
        for (int b = 0; b < nbk; b++) {
            const uint8_t *blk = r + (size_t)b * ATTN_Q8B;
            dk8[(size_t)k * nbk + b] = _cvtsh_ss(attn_ld16(blk));
            _mm256_storeu_si256((__m256i *)(Kb + (size_t)k * dk + 32 * b),
                                _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 2)), x80));
        }
    }
}

/* kb_rows from the tiled cache (attn.h, cell stride n): the quants are stored + 128 already. */
static void kb_tiled(const uint8_t *kq, int n, const int *idx, int nv, int dk, uint8_t *Kb, float *dk8) {
    const int nbk = dk / 32;
    const uint8_t *ks = kq + (size_t)n * dk;
    int k = 0;
    /* whole tiles listed in order (a prompt's blocks, unless masked): an 8 x 16 dword transpose per K block */
    while (k + CPU_ATTN_TILE <= nv && idx[k] % CPU_ATTN_TILE == 0 && idx[k + CPU_ATTN_TILE - 1] == idx[k] + CPU_ATTN_TILE - 1) {
        const size_t T = (size_t)idx[k] / CPU_ATTN_TILE;
        for (int b = 0; b < nbk; b++) {
            const uint8_t *q = kq + (T * nbk + b) * 512;
            __m512i r[8], a[8], x[4], y[4];
            for (int gg = 0; gg < 8; gg++) r[gg] = _mm512_loadu_si512((const void *)(q + 64 * gg));
            /* per 128-bit lane L (cells 4L .. 4L + 3): x[c] / y[c] hold groups 0-3 / 4-7 of cell 4L + c */
            for (int p = 0; p < 4; p++) {
                a[2 * p] = _mm512_unpacklo_epi32(r[2 * p], r[2 * p + 1]);
                a[2 * p + 1] = _mm512_unpackhi_epi32(r[2 * p], r[2 * p + 1]);
            }
            x[0] = _mm512_unpacklo_epi64(a[0], a[2]), x[1] = _mm512_unpackhi_epi64(a[0], a[2]);
            x[2] = _mm512_unpacklo_epi64(a[1], a[3]), x[3] = _mm512_unpackhi_epi64(a[1], a[3]);
            y[0] = _mm512_unpacklo_epi64(a[4], a[6]), y[1] = _mm512_unpackhi_epi64(a[4], a[6]);
            y[2] = _mm512_unpacklo_epi64(a[5], a[7]), y[3] = _mm512_unpackhi_epi64(a[5], a[7]);
            const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), hi = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
            for (int c = 0; c < 4; c++) { /* cells c, 4 + c (lo) and 8 + c, 12 + c (hi) */
                const __m512i l = _mm512_permutex2var_epi64(x[c], lo, y[c]), h = _mm512_permutex2var_epi64(x[c], hi, y[c]);
                uint8_t *d = Kb + (size_t)(k + c) * dk + 32 * b;
                _mm256_storeu_si256((__m256i *)d, _mm512_castsi512_si256(l));
                _mm256_storeu_si256((__m256i *)(d + (size_t)4 * dk), _mm512_extracti64x4_epi64(l, 1));
                _mm256_storeu_si256((__m256i *)(d + (size_t)8 * dk), _mm512_castsi512_si256(h));
                _mm256_storeu_si256((__m256i *)(d + (size_t)12 * dk), _mm512_extracti64x4_epi64(h, 1));
            }
            float sc[CPU_ATTN_TILE];
            _mm512_storeu_ps(sc, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ks + (T * nbk + b) * CPU_ATTN_TILE * 2))));
            for (int i = 0; i < CPU_ATTN_TILE; i++) dk8[(size_t)(k + i) * nbk + b] = sc[i];
        }
        k += CPU_ATTN_TILE;
    }
    for (; k < nv; k++) {
        const size_t T = (size_t)idx[k] / CPU_ATTN_TILE, i = (size_t)idx[k] % CPU_ATTN_TILE;
        for (int b = 0; b < nbk; b++) {
            const uint8_t *q = kq + (T * nbk + b) * 512 + 4 * i;
            dk8[(size_t)k * nbk + b] = _cvtsh_ss(attn_ld16(ks + ((T * nbk + b) * CPU_ATTN_TILE + i) * 2));
            uint8_t *d = Kb + (size_t)k * dk + 32 * b;
            for (int gg = 0; gg < 8; gg++) memcpy(d + 4 * gg, q + 64 * gg, 4);
        }
    }
}

/* attn_vt_z from the tiled cache, whose V quads are vt's already: a quad of listed cells 4Q .. 4Q + 3 is
 * one copy, other quads (cells listed around gaps; past nv the last cell, repeated) are gathered. */
static void vt_tiled(const uint8_t *vq, int n, const int *idx, int nv, int dv, uint8_t *vt, float *dvf) {
    const int nbv = dv / 32, nq = (nv + 3) / 4;
    const uint8_t *vs = vq + (size_t)n * dv;
    for (int k = 0; k < nv; k++) {
        const size_t T = (size_t)idx[k] / CPU_ATTN_TILE, i = (size_t)idx[k] % CPU_ATTN_TILE;
        for (int b = 0; b < nbv; b++) dvf[(size_t)b * ATTN_FB + k] = _cvtsh_ss(attn_ld16(vs + ((T * nbv + b) * CPU_ATTN_TILE + i) * 2));
    }
    for (int q = 0; q < nq; q++) {
        int c[4];
        for (int i = 0; i < 4; i++) c[i] = idx[4 * q + i < nv ? 4 * q + i : nv - 1];
        uint8_t *d = vt + (size_t)q * nbv * 128;
        if (c[0] % 4 == 0 && c[1] == c[0] + 1 && c[2] == c[0] + 2 && c[3] == c[0] + 3) {
            memcpy(d, vq + (size_t)(c[0] / 4) * nbv * 128, (size_t)nbv * 128);
            continue;
        }
        for (int b = 0; b < nbv; b++)
            for (int i = 0; i < 4; i++) {
                const uint8_t *src = vq + ((size_t)(c[i] / 4) * nbv + b) * 128 + c[i] % 4;
                for (int w = 0; w < 32; w++) d[(size_t)b * 128 + 4 * w + i] = src[4 * w];
            }
    }
}

/* The q8lay of a call: queries at Qt, K rows at Kf (kb_rows). */
static q8lay q8_lay(const mctx *x) {
    const int nbk = x->dk / 32;
    q8lay L = {.Qq = (const uint8_t *)x->Qt, .Kb = (const uint8_t *)x->Kf, .nbk = nbk, .dk = x->dk, .Rp = x->Rp};
    L.dq = (const float *)(L.Qq + (size_t)x->Rp * x->dk);
    L.nc = (const int32_t *)(L.dq + (size_t)x->Rp * nbk);
    L.dk8 = (const float *)(L.Kb + (size_t)(MB + 6) * x->dk);
    return L;
}

/* Scores of the nv (<= MB) listed cells into S (row k = cell idx[k], Rp lanes), -inf where a
 * token does not see the cell. */
static void block_scores(const mctx *x, const int *idx, const uint64_t *msk, int nv, bool part, bool pf_v, float *S) {
    const int dk = x->dk, Rp = x->Rp, n6 = (nv + 5) / 6 * 6; /* Kf holds MB + 2 rows (66 = 11 * 6) */
    if (x->kq8) {
        const q8lay L = q8_lay(x);
        if (x->tiled) kb_tiled(x->Kh, x->a->n_ctx, idx, nv, dk, (uint8_t *)L.Kb, (float *)L.dk8);
        else kb_rows(x->Kh, x->krb, idx, nv, dk, (uint8_t *)L.Kb, (float *)L.dk8);
        if (n6 > nv) { /* padding cells (ignored): zero scales */
            memset((uint8_t *)L.Kb + (size_t)nv * dk, 0, (size_t)dk * (size_t)(n6 - nv));
            memset((float *)L.dk8 + (size_t)nv * L.nbk, 0, sizeof(float) * (size_t)L.nbk * (size_t)(n6 - nv));
        }
        const __m512 sc = _mm512_set1_ps(x->a->scale);
        const int nvec = Rp / 16;
        int v0 = 0;
        for (; v0 + 2 <= nvec; v0 += 2) /* 32 rows of queries stay in L1 while the K rows pass */
            for (int k0 = 0; k0 < n6; k0 += 6) scores_tile_q8(6, 2, &L, k0, v0, sc, S);
        if (v0 < nvec)
            for (int k0 = 0; k0 < n6; k0 += 6) scores_tile_q8(6, 1, &L, k0, v0, sc, S);
    } else {
        rows_f32(x->Kh, x->krb, idx, nv, dk, x->Kf, dk);
        if (n6 > nv) memset(x->Kf + (size_t)nv * dk, 0, sizeof(float) * (size_t)dk * (size_t)(n6 - nv)); /* ignored */
        const __m256 sc = _mm256_set1_ps(x->a->scale);
        /* into L2 at an even pace over the tiles: the next block's K rows (the cells after the listed
         * ones) and, with pf_v (flash: the V pass comes next), the block's own V rows, which the
         * conversions (rows_f32) otherwise wait for: bench_attn -p 256 -g 8 65536 -- f16 (32 MB
         * of cache, from DRAM), one Zen 5 thread, 477-543 -> 398-448 ms (7 alternated runs);
         * 512 tokens at depth 4096 (warm) 58.1 -> 57.2 ms (medians of 10) */
        const int cl = idx[nv - 1] + 1, ce = cl + MB < x->a->n_cells ? cl + MB : x->a->n_cells;
        const int steps = Rp / 8 * (n6 / 6);
        attn_pf pk, pv;
        attn_pf_start(&pk, x->Kh, x->krb, cl, ce > cl ? ce : cl, steps);
        attn_pf_start(&pv, x->Vh, x->vrb, idx[0], pf_v && !x->a->v_in_k ? cl : idx[0], steps);
        pk.l2 = pv.l2 = true;
        for (int r0 = 0; r0 < Rp; r0 += 8) /* 8 rows of queries stay in L1 while the K rows pass */
            for (int k0 = 0; k0 < n6; k0 += 6) {
                attn_pf_step(&pk), attn_pf_step(&pv);
                scores_tile(x->Kf, dk, k0, x->Qt, r0, dk, sc, S, Rp);
            }
    }
    if (part)
        for (int k = 0; k < nv; k++)
            if (msk[k] != x->all)
                for (int t = 0; t < x->nt; t++)
                    if (!((msk[k] >> t) & 1))
                        for (int h = 0; h < x->g; h++) S[(size_t)k * Rp + t * x->g + h] = -INFINITY;
}

/* q8_0 V: O += P V block by block of V, the rows' quants widened to f32 (Vf) and each cell's
 * probabilities times its block scale (Pb), as the decode kernel's fold_vscales and V pass. */
static void block_v_q8(const mctx *x, const int *idx, int nv, const float *P) {
    const uint8_t *base = x->a->v_in_k ? x->Kh : x->Vh;
    const size_t rb = x->a->v_in_k ? x->krb : x->vrb;
    const int R = x->R, Rp = x->Rp, dv = x->dv, nbv = dv / 32;
    for (int k = 0; k < nv; k++) {
        const uint8_t *r = base + (size_t)idx[k] * rb;
        float *o = x->Vf + (size_t)k * dv;
        for (int b = 0; b < nbv; b++)
            for (int u = 0; u < 2; u++)
                _mm512_storeu_ps(o + 32 * b + 16 * u, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                                          (const __m128i *)(r + (size_t)b * ATTN_Q8B + 2 + 16 * u)))));
    }
    for (int b = 0; b < nbv; b++) {
        for (int k = 0; k < nv; k++) {
            const __m512 d = _mm512_set1_ps(_cvtsh_ss(attn_ld16(base + (size_t)idx[k] * rb + (size_t)b * ATTN_Q8B)));
            for (int r0 = 0; r0 < Rp; r0 += 16)
                _mm512_storeu_ps(x->Pb + (size_t)k * Rp + r0, _mm512_mul_ps(_mm512_loadu_ps(P + (size_t)k * Rp + r0), d));
        }
        vacc_rows(2, x->Pb, R, Rp, x->Vf, dv, nv, 32 * b, x->O, dv);
    }
}

/* q8_0 V in integer products (x->vi8), as the decode kernel's integer V pass (attn_avx512.c):
 * per row, V block and group of 32 listed cells (cells 0-31 and 32-63 of the block's list, the
 * decode kernel's groups wherever every token sees the same cells) the weights P * d(block) are
 * rounded to 0..255 against the product of the group's largest P (the row's) and largest d (the
 * block's), as the decode kernel does, the listed cells' V quants are transposed once
 * (attn_vt_z: 4 cells a dword), and vpdpbusd adds 64 products per instruction against the f32
 * path's FMA's 16. Rows are vector lanes in P, so 16 rows' weights are found and rounded per
 * vector; O keeps each 32 dimensions in vt's order until attn_i8_order_z at the end. */
static void block_v_i8(const mctx *x, const int *idx, int nv, const float *P) {
    const int R = x->R, Rp = x->Rp, dv = x->dv, nbv = dv / 32;
    attn_job j = {.dv = dv, .Vh = x->a->v_in_k ? x->Kh : x->Vh, .vrb = x->a->v_in_k ? x->krb : x->vrb,
                  .vt = (uint8_t *)x->Vf, .dvf = x->dvf, .d15 = x->d15, .dm = x->dm};
    if (x->tiled) vt_tiled(x->Vh, x->a->n_ctx, idx, nv, dv, j.vt, j.dvf);
    else attn_vt_z(&j, idx, nv);
    /* the V block scales as 15-bit fractions of their group's largest (attn_d15_z, as in decode), laid out as
     * vpmulhrsw's operands: block b, cells 2i, 2i + 1 at dp + (b * MB / 2 + i) * 8: 4 x d15(2i), then
     * 4 x d15(2i + 1) */
    attn_d15_z(&j, nv);
    const int ng = (nv + 31) / 32;
    for (int gi = 0; gi < ng; gi++)
        for (int b = 0; b < nbv; b++)
            for (int k = 0; k < 32; k++)
                for (int e = 0; e < 4; e++)
                    x->dp[((size_t)b * MB / 2 + (32 * gi + k) / 2) * 8 + (k % 2) * 4 + e] = x->d15[((size_t)gi * nbv + b) * 32 + k];
    /* weights (the decode kernel's i8_weights, rows in the lanes): per 16 rows and group, p as a 15-bit
     * fraction of each row's largest (Pm), then per quad and V block two vpmulhrsw against d15 (round to 15
     * bits, then to 0..255), the bytes transposed into a dword per row (cells k..k + 3); the scale
     * Pm * Dm / 255 */
    const __m512i c256 = _mm512_set1_epi16(256);
    const __m512i tr = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
    for (int r0 = 0; r0 < Rp; r0 += 16)
        for (int gi = 0; gi < ng; gi++) {
            const int k0 = 32 * gi, k1 = k0 + 32 < nv ? k0 + 32 : nv;
            __m512 pm = _mm512_setzero_ps();
            for (int k = k0; k < k1; k++) pm = _mm512_max_ps(pm, _mm512_loadu_ps(P + (size_t)k * Rp + r0));
            const __m512 inv = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(pm, _mm512_setzero_ps(), _CMP_GT_OQ),
                                                   _mm512_set1_ps(ATTN_I8_P15), pm);
            const __m512 pk = _mm512_mul_ps(pm, _mm512_set1_ps(ATTN_I8_SCALE));
            for (int b = 0; b < nbv; b++)
                _mm512_storeu_ps(x->vsc + ((size_t)gi * nbv + b) * Rp + r0, _mm512_mul_ps(pk, _mm512_set1_ps(x->dm[gi * nbv + b])));
            for (int q = k0 / 4; q < k0 / 4 + 8; q++) { /* whole groups (attn_i8_products_z): cells past nv weigh 0 */
                __m512i pq[4];
                for (int i = 0; i < 4; i++) {
                    const int k = 4 * q + i;
                    pq[i] = k < k1 ? _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(P + (size_t)k * Rp + r0), inv))
                                   : _mm512_setzero_si512();
                }
                const __m512i X = _mm512_packus_epi32(pq[0], pq[1]), Y = _mm512_packus_epi32(pq[2], pq[3]);
                for (int b = 0; b < nbv; b++) {
                    const int16_t *dp = x->dp + ((size_t)b * MB / 2 + 2 * q) * 8;
                    const __m512i d01 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)dp));
                    const __m512i d23 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(dp + 8)));
                    const __m512i xw = _mm512_mulhrs_epi16(_mm512_mulhrs_epi16(X, d01), c256);
                    const __m512i yw = _mm512_mulhrs_epi16(_mm512_mulhrs_epi16(Y, d23), c256);
                    _mm512_storeu_si512((void *)(x->wq + ((size_t)q * nbv + b) * Rp + r0),
                                        _mm512_shuffle_epi8(_mm512_packus_epi16(xw, yw), tr));
                }
            }
        }
    /* O[r][block b] += scale * sum over a group's quads, 8 rows at a time (attn_i8_products_z) */
    attn_pf none = {.den = 1}; /* nothing to prefetch */
    for (int r0 = 0; r0 < R; r0 += 8)
        attn_i8_products_z(R - r0 < 8 ? R - r0 : 8, (const uint8_t *)x->Vf, dv, (nv + 31) / 32, x->wq + r0, (size_t)Rp,
                           x->vsc + r0, x->O + (size_t)r0 * dv, &none);
}

/* O += P V over the nv listed cells (P: their probability rows); v_in_k: V is the first dv
 * elements of the K rows (in Kf when kf_ok, else converted again). */
static void block_v(const mctx *x, const int *idx, int nv, const float *P, bool kf_ok) {
    if (x->vi8) {
        block_v_i8(x, idx, nv, P);
        return;
    }
    if (x->vq8) {
        block_v_q8(x, idx, nv, P);
        return;
    }
    const float *V = x->Kf;
    int ldv = x->dk;
    if (!x->a->v_in_k) {
        rows_f32(x->Vh, x->vrb, idx, nv, x->dv, x->Vf, x->dv);
        V = x->Vf, ldv = x->dv;
    } else if (!kf_ok) {
        rows_f32(x->Kh, x->krb, idx, nv, x->dv, x->Kf, x->dk);
    }
    const int R = x->R, Rp = x->Rp, dv = x->dv;
    int d0 = 0;
    for (; d0 + 64 <= dv; d0 += 64) vacc_rows(4, P, R, Rp, V, ldv, nv, d0, x->O, dv);
    switch ((dv - d0) / 16) { /* dv is a multiple of 32 (cpu_attn_multi_tokens) */
    case 3: vacc_rows(3, P, R, Rp, V, ldv, nv, d0, x->O, dv); break;
    case 2: vacc_rows(2, P, R, Rp, V, ldv, nv, d0, x->O, dv); break;
    case 1: vacc_rows(1, P, R, Rp, V, ldv, nv, d0, x->O, dv); break;
    default: break;
    }
}

/* Flash: per block of MB cells, scores, the online softmax, V. */
static void flash(mctx *x, float *S, int *idx, uint64_t *msk) {
    const int Rp = x->Rp, dv = x->dv;
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int c0 = 0; c0 < x->a->n_cells; c0 += MB) {
        const int c1 = c0 + MB < x->a->n_cells ? c0 + MB : x->a->n_cells;
        bool part = false;
        const int nv = list_cells(x, c0, c1, idx, msk, &part);
        if (!nv) continue;
        block_scores(x, idx, msk, nv, part, true, S);
        for (int r0 = 0; r0 < Rp; r0 += 16) { /* online softmax, 16 rows per vector */
            __m512 bm = ninf;
            for (int k = 0; k < nv; k++) bm = _mm512_max_ps(bm, _mm512_loadu_ps(S + (size_t)k * Rp + r0));
            const __m512 mo = _mm512_loadu_ps(x->m + r0), mn = _mm512_max_ps(mo, bm);
            const __mmask16 fin = _mm512_cmp_ps_mask(mn, ninf, _CMP_NEQ_OQ); /* rows that saw a cell */
            const __m512 base = _mm512_maskz_mov_ps(fin, mn);                /* 0 where none yet: e^-inf = 0 */
            const __mmask16 had = _mm512_cmp_ps_mask(mo, ninf, _CMP_NEQ_OQ);
            const __m512 rs = _mm512_maskz_mov_ps(had, attn_exp16(_mm512_sub_ps(mo, base)));
            __m512 lv = _mm512_mul_ps(_mm512_loadu_ps(x->l + r0), rs);
            for (int k = 0; k < nv; k++) {
                float *row = S + (size_t)k * Rp + r0;
                const __m512 sv = _mm512_loadu_ps(row);
                const __m512 p = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(sv, ninf, _CMP_NEQ_OQ), attn_exp16(_mm512_sub_ps(sv, base)));
                _mm512_storeu_ps(row, p);
                lv = _mm512_add_ps(lv, p);
            }
            _mm512_storeu_ps(x->m + r0, mn);
            _mm512_storeu_ps(x->l + r0, lv);
            float rr[16];
            _mm512_storeu_ps(rr, rs);
            for (int i = 0; i < 16 && r0 + i < x->R; i++) {
                if (rr[i] == 1.0f || !((had >> i) & 1)) continue; /* max unchanged, or nothing accumulated */
                const __m512 f = _mm512_set1_ps(rr[i]);
                float *o = x->O + (size_t)(r0 + i) * dv;
                for (int d = 0; d < dv; d += 16) _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(o + d), f));
            }
        }
        block_v(x, idx, nv, S, true);
    }
    for (int r = 0; r < x->R; r++) { /* 1 / l; no visible cell: zeros */
        const float inv = x->l[r] > 0.0f ? 1.0f / x->l[r] : 0.0f;
        float *o = x->O + (size_t)r * dv;
        for (int d = 0; d < dv; d++) o[d] *= inv;
    }
}

/* Standard: the scores of every listed cell (S: one row per cell of the list), the exact
 * softmax per row as attn_avx2.c's (max, e^(s - max), the sum in double in cell order, the
 * probabilities rounded to f16 for an f16 V), then V block by block. */
static void standard(mctx *x, float *S, int *idx, uint64_t *msk) {
    const int Rp = x->Rp;
    int nv = 0;
    bool part = false;
    for (int c0 = 0; c0 < x->a->n_cells; c0 += MB) {
        const int c1 = c0 + MB < x->a->n_cells ? c0 + MB : x->a->n_cells;
        bool pb = false;
        const int n = list_cells(x, c0, c1, idx + nv, msk + nv, &pb);
        if (!n) continue;
        block_scores(x, idx + nv, msk + nv, n, pb, false, S + (size_t)nv * Rp);
        nv += n, part |= pb;
    }
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int r0 = 0; r0 < Rp; r0 += 16) {
        __m512 mx = ninf;
        for (int k = 0; k < nv; k++) mx = _mm512_max_ps(mx, _mm512_loadu_ps(S + (size_t)k * Rp + r0));
        const __m512 base = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(mx, ninf, _CMP_NEQ_OQ), mx);
        __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
        for (int k = 0; k < nv; k++) {
            float *row = S + (size_t)k * Rp + r0;
            const __m512 sv = _mm512_loadu_ps(row);
            const __m512 p = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(sv, ninf, _CMP_NEQ_OQ), attn_exp16(_mm512_sub_ps(sv, base)));
            _mm512_storeu_ps(row, p);
            s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(p)));
            s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(p, 1)));
        }
        /* 1 / sum (0 for a row that sees nothing) */
        const __m512d one = _mm512_set1_pd(1.0), z = _mm512_setzero_pd();
        const __m512d i0 = _mm512_mask_div_pd(z, _mm512_cmp_pd_mask(s0, z, _CMP_GT_OQ), one, s0);
        const __m512d i1 = _mm512_mask_div_pd(z, _mm512_cmp_pd_mask(s1, z, _CMP_GT_OQ), one, s1);
        const __m512 inv = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(i0)), _mm512_cvtpd_ps(i1), 1);
        const bool f16v = (x->a->v_in_k ? x->a->k_type : x->a->v_type) == MR_TYPE_F16;
        for (int k = 0; k < nv; k++) {
            float *row = S + (size_t)k * Rp + r0;
            __m512 p = _mm512_mul_ps(_mm512_loadu_ps(row), inv);
            if (f16v) p = _mm512_cvtph_ps(_mm512_cvtps_ph(p, _MM_FROUND_TO_NEAREST_INT)); /* meets f16 V in f16 */
            _mm512_storeu_ps(row, p);
        }
    }
    (void)part;
    for (int k0 = 0; k0 < nv; k0 += MB)
        block_v(x, idx + k0, nv - k0 < MB ? nv - k0 : MB, S + (size_t)k0 * Rp, false);
}

/* queries rounded to f16 (F16C: to nearest even, as the decode path), row pairs (2p, 2p + 1)
 * interleaved in 8-dimension chunks: Qp[p][i / 8][16] (scores_tile); padding rows 0 */
static void f16_prep(mctx *x, const float *q, size_t qs) {
    const int dk = x->dk;
    memset(x->Qt, 0, sizeof(float) * (size_t)dk * x->Rp);
    for (int t = 0; t < x->nt; t++)
        for (int h = 0; h < x->g; h++) {
            const float *qr = q + (size_t)t * qs + (size_t)h * dk;
            const int r = t * x->g + h;
            float *qp = x->Qt + (size_t)(r / 2) * dk * 2 + 8 * (r & 1);
            for (int i = 0; i < dk; i += 8)
                _mm256_storeu_ps(qp + 2 * i,
                                 _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(qr + i), _MM_FROUND_TO_NEAREST_INT)));
        }
}

/* queries rounded to q8_0 as the decode kernel's (attn_q8_prep), in q8lay's layout; padding rows 0 */
static void q8_prep(mctx *x, const float *q, size_t qs) {
    const int dk = x->dk, nbk = dk / 32;
    const q8lay L = q8_lay(x);
    uint8_t *Qq = (uint8_t *)L.Qq;
    float *dq = (float *)L.dq;
    int32_t *nc = (int32_t *)L.nc;
    memset(Qq, 0, (size_t)x->Rp * dk + 8 * (size_t)x->Rp * nbk);
    uint8_t row[(CPU_ATTN_SIMD_MAX_D / 32) * ATTN_Q8B];
    for (int r = 0; r < x->R; r++) {
        quant_quantize_row(MR_TYPE_Q8_0, q + (size_t)(r / x->g) * qs + (size_t)(r % x->g) * dk, row, dk);
        const int v = r / 16, lane = r % 16;
        for (int b = 0; b < nbk; b++) {
            const uint8_t *blk = row + (size_t)b * ATTN_Q8B;
            int sum = 0;
            for (int e = 0; e < 32; e++) sum += (int8_t)blk[2 + e];
            for (int gg = 0; gg < 8; gg++) memcpy(Qq + (((size_t)v * nbk + b) * 8 + gg) * 64 + 4 * lane, blk + 2 + 4 * gg, 4);
            dq[((size_t)v * nbk + b) * 16 + lane] = _cvtsh_ss(attn_ld16(blk));
            nc[((size_t)v * nbk + b) * 16 + lane] = -128 * sum;
        }
    }
}

void cpu_attn_multi_avx512(const cpu_attn_args *a, int kvh, int nt, const float *q, size_t qs, const int32_t *pos,
                           const int32_t *seq, float *out, size_t os, float *scratch) {
    mctx x = {.a = a, .nt = nt, .g = a->n_head / a->n_head_kv, .dk = a->dk, .dv = a->dv, .pos = pos, .seq = seq};
    const int g = x.g, dk = x.dk, dv = x.dv;
    x.R = nt * g, x.Rp = (x.R + 15) & ~15;
    const int Rp = x.Rp;
    x.krb = mr_row_size(a->k_type, dk), x.vrb = a->v_in_k ? x.krb : mr_row_size(a->v_type, dv);
    x.Kh = a->K + (size_t)kvh * a->n_ctx * x.krb;
    x.Vh = a->v_in_k ? x.Kh : a->V + (size_t)kvh * a->n_ctx * x.vrb;
    x.all = nt == 64 ? ~(uint64_t)0 : ((uint64_t)1 << nt) - 1;
    /* scratch: cpu_attn_multi_floats (attn.c) */
    const size_t ns = a->flash ? (size_t)MB : (size_t)a->n_ctx; /* score rows, cells listed */
    x.Qt = scratch, x.O = x.Qt + (size_t)dk * Rp, x.Kf = x.O + (size_t)Rp * dv, x.Vf = x.Kf + (size_t)(MB + 2) * dk;
    /* ns + 6 rows: a block's last tile of 6 cells writes up to 5 padding rows past its cells (in
     * the standard path, past every listed cell) */
    float *S = x.Vf + (size_t)MB * dv;
    x.m = S + (ns + 6) * Rp, x.l = x.m + Rp;
    uint64_t *msk = (uint64_t *)(((uintptr_t)(x.l + Rp) + 7) & ~(uintptr_t)7);
    int *idx = (int *)(msk + ns);

    x.Pb = (float *)(idx + ns); /* q8_0 V: MB x Rp */
    x.Pb = (float *)(((uintptr_t)x.Pb + 63) & ~(uintptr_t)63);
    x.kq8 = a->k_type == MR_TYPE_Q8_0;
    x.vq8 = (a->v_in_k ? a->k_type : a->v_type) == MR_TYPE_Q8_0;
    /* the decode kernel's choice (attn_avx2.c; this path runs only with AVX-512 VNNI) */
    x.vi8 = x.vq8 && dv >= CPU_ATTN_INT8_V_MIN_DV && cpu_attn_int8_v();
    x.tiled = a->tiled;
    MR_ASSERT(!x.tiled || (x.vi8 && x.kq8 && !a->v_in_k)); /* attn.c gives it rows otherwise */
    if (x.vi8) { /* after Pb: cpu_attn_multi_floats (attn.c) */
        const size_t nbv = (size_t)dv / 32;
        x.wq = (uint32_t *)(((uintptr_t)(x.Pb + (size_t)MB * Rp) + 63) & ~(uintptr_t)63);
        x.vsc = (float *)(x.wq + (size_t)MB / 4 * nbv * Rp);
        x.dvf = x.vsc + 2 * nbv * Rp;
        x.dm = x.dvf + nbv * MB;
        x.d15 = (int16_t *)(((uintptr_t)(x.dm + 2 * nbv) + 63) & ~(uintptr_t)63); /* 2 x nbv x 32 */
        x.dp = x.d15 + 64 * nbv;                                                  /* nbv x MB / 2 x 8 */
    }
    if (x.kq8) q8_prep(&x, q, qs);
    else f16_prep(&x, q, qs);
    memset(x.O, 0, sizeof(float) * (size_t)Rp * dv);
    for (int r = 0; r < Rp; r++) x.m[r] = -INFINITY, x.l[r] = 0.0f;
    if (a->flash) flash(&x, S, idx, msk);
    else standard(&x, S, idx, msk);
    if (x.vi8) { /* each 32 dimensions of O's rows from vt's order */
        const attn_job j = {.g = x.R, .dv = dv};
        attn_i8_order_z(&j, x.O);
    }
    for (int t = 0; t < nt; t++)
        for (int h = 0; h < g; h++)
            memcpy(out + (size_t)t * os + (size_t)h * dv, x.O + (size_t)(t * g + h) * dv, sizeof(float) * (size_t)dv);
}
