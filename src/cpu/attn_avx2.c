/*
 * attn_avx2.c — AVX2/FMA/F16C decode attention over an f16 or q8_0 KV cache
 * (cpu_attn_avx2, attn_simd.h): standard and flash paths of attn.h with its
 * mask, reading each K and V row once for all g query heads of a KV group.
 *
 * Query heads are vector lanes (tiles of 8, attn_vec.h). The cells of
 * [lo, hi) go in blocks of ATTN_FB (flash: aligned to multiples of ATTN_FB,
 * as attn_multi_avx512.c); per block the visible cells are listed
 * and only they are read:
 *  - scores: f16 K here (8 (cell, head) dot products at a time in 8-lane FMA
 *    accumulators, one horizontal reduction per 8), q8_0 K with integer
 *    multiply-adds in attn_q8_avx2.c; one row of 8 lanes per cell;
 *  - softmax lane-wise with a vectorised exp (~1 ulp against expf): flash
 *    keeps a running max and sum per head and rescales the output when the
 *    max grows (as attn.c); standard sums the exponentials in double in cell
 *    order and rounds the probabilities to f16 before they meet an f16 V
 *    (as ggml and attn.c);
 *  - V: every row is used as stored (f16 converted on load; q8_0 widened, its
 *    block scale folded into the probabilities of all heads at once), each
 *    head's output chunk in registers while the block's cells are added, in
 *    f32 FMA; a q8_0 V of >= 256 elements (MLA's latent) on AVX-512 VNNI CPUs
 *    goes through integer products instead (attn_avx512.c, attn.h).
 * V rows are prefetched at an even pace (attn_pf: flash, the block's rows
 * during its score pass; standard, the next block's rows during the V pass),
 * so a cache that streams from memory costs little more than one in L2/L3
 * (K rows, read in order, are left to the hardware prefetcher).
 */
#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cpu/attn_vec.h"
#include "quant/quant.h"

#define FB ATTN_FB

/* f16 K: scores of tile t's H heads for the nv visible cells idx[] of the
 * block of n cells at c0 (as attn_q8_scores), NC = 8 / H cells at a time:
 * the 8 (cell, head) dot products accumulate in 8 lanes each (per 8
 * elements: NC converted K loads, H query loads, 8 FMAs) and are reduced at
 * the end (hsum8x8: lane c * H + h). */
ATTN_AI void scores_f16_h(const int H, const attn_job *j, int t, int c0, int n, const int *idx, int nv, float *S) {
    const int NC = 8 / H, dk = j->dk;
    const __m256 ninf = _mm256_set1_ps(-INFINITY), sc = _mm256_set1_ps(j->scale);
    const float *qf = j->qf + (size_t)t * 8 * dk;
    attn_pf pf = *j->pf;
    if (nv < n)
        for (int c = 0; c < n; c++) _mm256_store_ps(S + (size_t)c * 8, ninf);
    for (int k = 0; k < nv; k += NC) {
        const uint16_t *r[8];
        for (int c = 0; c < NC; c++) r[c] = (const uint16_t *)(j->Kh + (size_t)idx[k + c < nv ? k + c : nv - 1] * j->krb);
        attn_pf_step(&pf);
        __m256 acc[8];
        for (int x = 0; x < 8; x++) acc[x] = _mm256_setzero_ps();
        for (int i = 0; i < dk; i += 8) {
            __m256 kv[8];
            for (int c = 0; c < NC; c++) kv[c] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r[c] + i)));
            for (int h = 0; h < H; h++) {
                __m256 qv = _mm256_load_ps(qf + (size_t)h * dk + i);
                if (NC > 1) __asm__("" : "+x"(qv)); /* one load for the NC cells: GCC would fold it into each FMA */
                for (int c = 0; c < NC; c++) acc[c * H + h] = _mm256_fmadd_ps(qv, kv[c], acc[c * H + h]);
            }
        }
        const __m256 res = _mm256_mul_ps(hsum8x8(acc), sc);
        for (int c = 0; c < NC && k + c < nv; c++) {
            float *o = S + (size_t)(idx[k + c] - c0) * 8;
            if (H == 8) _mm256_store_ps(o, res);
            else {
                float tmp[8];
                _mm256_storeu_ps(tmp, res);
                for (int h = 0; h < 8; h++) o[h] = tmp[c * H + (h < H ? h : 0)];
            }
            if (j->softcap > 0.0f)
                for (int h = 0; h < 8; h++) o[h] = j->softcap * tanhf(o[h] / j->softcap);
        }
    }
    *j->pf = pf;
}

static void scores_blk(const attn_job *j, int t, int c0, int n, const int *idx, int nv, float *S) {
    if (j->kq8) {
        if (j->z) attn_q8_scores_vnni(j, t, c0, n, idx, nv, S);
        else attn_q8_scores(j, t, c0, n, idx, nv, S);
        return;
    }
    if (j->z && j->H == 8) {
        attn_f16_scores_z(j, t, c0, n, idx, nv, S);
        return;
    }
    switch (j->H) {
    case 8: scores_f16_h(8, j, t, c0, n, idx, nv, S); break;
    case 4: scores_f16_h(4, j, t, c0, n, idx, nv, S); break;
    case 2: scores_f16_h(2, j, t, c0, n, idx, nv, S); break;
    default: scores_f16_h(1, j, t, c0, n, idx, nv, S); break;
    }
}

/* The scores of all tiles for a block (tile t's rows at S + t * ts). */
static void scores_all(const attn_job *j, int c0, int n, const int *idx, int nv, float *S, size_t ts) {
    if (j->bf) {
        attn_bf_scores(j, c0, n, idx, nv, S, ts);
        return;
    }
    if (j->zw && j->ntile == 1) {
        attn_q8_scores_zw(j, c0, n, idx, nv, S);
        return;
    }
    if (j->kq8 && j->z && j->H == 8) {
        attn_q8_scores_z(j, c0, n, idx, nv, S, ts);
        return;
    }
    for (int t = 0; t < j->ntile; t++) scores_blk(j, t, c0, n, idx, nv, S + (size_t)t * ts);
}

/* For a q8_0 V: pd[(k * nbv + b) * 8 + lane] = P[(idx[k] - c0) * 8 + lane] *
 * d(V row idx[k], block b), for the nv visible cells of a block. */
static void fold_vscales(const attn_job *j, int c0, const int *idx, int nv, const float *P) {
    const int nbv = j->dv / 32;
    for (int k = 0; k < nv; k++) {
        const uint8_t *row = j->Vh + (size_t)idx[k] * j->vrb;
        const __m256 p = _mm256_load_ps(P + (size_t)(idx[k] - c0) * 8);
        for (int b = 0; b < nbv; b++)
            _mm256_store_ps(j->pd + ((size_t)k * nbv + b) * 8,
                            _mm256_mul_ps(p, _mm256_set1_ps(_cvtsh_ss(attn_ld16(row + (size_t)b * ATTN_Q8B)))));
    }
}

/* Chunks of 8 * NV dimensions of vacc_h for NH heads. */
#define VACC_NV(NH) ((NH) <= 2 ? 4 : 2)

/* out[h] += sum over the nv visible cells idx[] of w(cell, h) * V[cell] for
 * the NH <= 4 heads in lanes h0.. of a tile (out: the tile's rows). q8_0 V:
 * w = pd (the folded scales) times the int8 quants; f16 V: w = P. Per step
 * NV vectors of 8 dimensions (within one 32-block): the NH x NV <= 8
 * accumulators stay in registers across the cells, each broadcast
 * probability feeds NV FMAs. */
ATTN_AI void vacc_h(const int NH, const bool VQ8, const attn_job *j, int c0, const int *idx, int nv, const float *P,
                    int h0, float *out) {
    const int NV = VACC_NV(NH), dv = j->dv, nbv = dv / 32;
    attn_pf pf = *j->pf;
    out += (size_t)h0 * dv;
    for (int i0 = 0; i0 < dv; i0 += 8 * NV) {
        const int b = i0 / 32, off = i0 % 32;
        __m256 acc[4][4];
        for (int h = 0; h < NH; h++)
            for (int u = 0; u < NV; u++) acc[h][u] = _mm256_loadu_ps(out + (size_t)h * dv + i0 + 8 * u);
        for (int k = 0; k < nv; k++) {
            if (!(k & 15)) attn_pf_step(&pf);
            const uint8_t *row = j->Vh + (size_t)idx[k] * j->vrb;
            __m256 v[4];
            const float *w;
            if (VQ8) {
                for (int u = 0; u < NV; u++)
                    v[u] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                        _mm_loadl_epi64((const __m128i *)(row + (size_t)b * ATTN_Q8B + 2 + off + 8 * u))));
                w = j->pd + ((size_t)k * nbv + b) * 8 + h0;
            } else {
                for (int u = 0; u < NV; u++)
                    v[u] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * (size_t)(i0 + 8 * u))));
                w = P + (size_t)(idx[k] - c0) * 8 + h0;
            }
            for (int h = 0; h < NH; h++) {
                const __m256 p = _mm256_broadcast_ss(w + h);
                for (int u = 0; u < NV; u++) acc[h][u] = _mm256_fmadd_ps(p, v[u], acc[h][u]);
            }
        }
        for (int h = 0; h < NH; h++)
            for (int u = 0; u < NV; u++) _mm256_storeu_ps(out + (size_t)h * dv + i0 + 8 * u, acc[h][u]);
    }
    *j->pf = pf;
}

#define VACC_NH(VQ8, nh, h0)                                                                                           \
    switch (nh) {                                                                                                      \
    case 1: vacc_h(1, VQ8, j, c0, idx, nv, P, h0, out); break;                                                         \
    case 2: vacc_h(2, VQ8, j, c0, idx, nv, P, h0, out); break;                                                         \
    case 3: vacc_h(3, VQ8, j, c0, idx, nv, P, h0, out); break;                                                         \
    default: vacc_h(4, VQ8, j, c0, idx, nv, P, h0, out); break;                                                        \
    }

/* V accumulation of tile t for a block (P: its probability rows): folds the
 * scales (q8_0 V), then vacc_h for lanes 0-3 and 4-7. */
static void vacc_blk(const attn_job *j, int t, int c0, const int *idx, int nv, const float *P, float *out) {
    const int nh = attn_tile_heads(j, t);
    if (j->bf) {
        attn_bf_vacc(j, t, c0, idx, nv, P, out);
        return;
    }
    out += (size_t)8 * t * j->dv;
    if (j->vi8) {
        attn_vacc_i8_z(j, nh, c0, idx, nv, P, out);
        return;
    }
    if (j->vq8) fold_vscales(j, c0, idx, nv, P);
    if (j->z) {
        attn_vacc_z(j, nh, c0, idx, nv, P, out);
        return;
    }
    if (j->vq8) {
        VACC_NH(true, nh < 4 ? nh : 4, 0)
        if (nh > 4) VACC_NH(true, nh - 4, 4)
    } else {
        VACC_NH(false, nh < 4 ? nh : 4, 0)
        if (nh > 4) VACC_NH(false, nh - 4, 4)
    }
}

/* Prefetch steps of the score pass (kernel steps over the nv visible cells
 * of a block) and of the V pass (16 cells of a chunk of dimensions; attn_vacc_z:
 * a cell of a 32-dimension chunk, all heads of a tile at once; the integer and
 * bf16 passes: see their kernels), all tiles. */
static int score_steps(const attn_job *j, int nv) {
    if (j->bf) return j->ntile * ((nv + 15) / 16);
    const int per = j->kq8 ? ATTN_Q8_CELLS_PER_STEP : 8 / j->H;
    return j->ntile * ((nv + per - 1) / per);
}

static int vacc_steps(const attn_job *j, int nv) {
    if (j->vi8) return j->ntile * (j->dv / 32) * ((nv + 31) / 32 * 8); /* attn_vacc_i8_z: per 4 cells of a V block */
    if (j->bf) return j->ntile * (j->dv / 16);
    if (j->z) return j->ntile * (j->dv / 32) * nv; /* attn_vacc_z: per cell of a 32-dimension chunk */
    int n = 0;
    for (int t = 0; t < j->ntile; t++)
        for (int h0 = 0; h0 < attn_tile_heads(j, t); h0 += 4) {
            const int nh = attn_tile_heads(j, t) - h0 < 4 ? attn_tile_heads(j, t) - h0 : 4;
            n += j->dv / (8 * VACC_NV(nh)) * ((nv + 15) / 16);
        }
    return n;
}

/* The visible cells of [c0, c1) into idx; returns their count. */
static int visible_cells(const cpu_attn_args *a, int32_t pos, int seq, int c0, int c1, int *idx) {
    int nv = 0;
    for (int c = c0; c < c1; c++)
        if (attn_visible(a, c, pos, seq)) idx[nv++] = c;
    return nv;
}

/* Flash: per block, the scores of all tiles, the online softmax per tile
 * (lane-wise running max m and sum l; the output rows of a head are
 * rescaled by e^(m - m') when its max grows), then V. S: tile t's rows at
 * S + t * FB * 8. */
static void flash(const cpu_attn_args *a, attn_job *j, int32_t pos, int seq, int lo, int hi, float *out, float *ml,
                  float *S) {
    const int dv = j->dv;
    for (int i = 0; i < 8 * j->ntile; i++) j->m[i] = -INFINITY, j->l[i] = 0.0f;
    /* with V inside K (MLA) the score pass reads the block's V rows itself: nothing to prefetch */
    const bool vk = j->Vh == j->Kh;
    j->dvk = j->vi8 && j->zw && vk; /* every 512-bit score kernel covers tile 0 */
    /* blocks at multiples of FB, whatever lo: cpu_attn_multi's blocks (one set for all its
     * tokens), so both give the same online-softmax steps */
    for (int c0 = lo - lo % FB; c0 < hi; c0 += FB) {
        const int c1 = c0 + FB < hi ? c0 + FB : hi, n = c1 - c0;
        const int nv = visible_cells(a, pos, seq, c0, c1, j->idx);
        if (!nv) continue;
        attn_pf_start(j->pf, j->Vh, j->vrb, c0, vk ? c0 : c1, score_steps(j, nv));
        scores_all(j, c0, n, j->idx, nv, S, (size_t)FB * 8);
        /* the integer V pass next (which rounds the probabilities anyway): the softmax on 512-bit
         * vectors, its sum not in cell order (attn_rows_max_z, attn_rows_exp_z) */
        const bool rows = j->vi8;
        for (int t = 0; t < j->ntile; t++) {
            float *St = S + (size_t)t * FB * 8, *mt = j->m + 8 * t, *lt = j->l + 8 * t;
            __m256 bm;
            if (rows) {
                bm = attn_rows_max_z(St, c0, j->idx, nv);
            } else {
                /* four chains (a max is exact in any order): vmaxps's latency, not its rate, bound one */
                __m256 b4[4] = {_mm256_set1_ps(-INFINITY), _mm256_set1_ps(-INFINITY), _mm256_set1_ps(-INFINITY),
                                _mm256_set1_ps(-INFINITY)};
                int k = 0;
                for (; k + 4 <= nv; k += 4)
                    for (int u = 0; u < 4; u++)
                        b4[u] = _mm256_max_ps(b4[u], _mm256_load_ps(St + (size_t)(j->idx[k + u] - c0) * 8));
                for (; k < nv; k++) b4[0] = _mm256_max_ps(b4[0], _mm256_load_ps(St + (size_t)(j->idx[k] - c0) * 8));
                bm = _mm256_max_ps(_mm256_max_ps(b4[0], b4[1]), _mm256_max_ps(b4[2], b4[3]));
            }
            const __m256 mo = _mm256_load_ps(mt), mn = _mm256_max_ps(mo, bm);
            const __m256 first = _mm256_cmp_ps(mo, _mm256_set1_ps(-INFINITY), _CMP_EQ_OQ);
            const __m256 r = _mm256_andnot_ps(first, cpu_exp8(_mm256_sub_ps(mo, mn))); /* 1 where the max stays */
            const int nh = attn_tile_heads(j, t);
            const bool grew = _mm256_movemask_ps(_mm256_cmp_ps(r, _mm256_set1_ps(1.0f), _CMP_NEQ_UQ)) & ((1 << nh) - 1);
            if (grew && j->bf) {
                attn_bf_rescale(j, t, r, out); /* its rows hold [dv][8 heads] until attn_bf_order */
            } else if (grew) {
                float rr[8];
                _mm256_storeu_ps(rr, r);
                for (int h = 0; h < nh; h++) {
                    if (rr[h] == 1.0f) continue;
                    const __m256 rv = _mm256_set1_ps(rr[h]);
                    float *o = out + (size_t)(8 * t + h) * dv;
                    for (int i = 0; i < dv; i += 8) _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_loadu_ps(o + i), rv));
                }
            }
            __m256 lv = _mm256_mul_ps(_mm256_load_ps(lt), r);
            if (rows) lv = attn_rows_exp_z(St, c0, j->idx, nv, mn, lv);
            else if (j->z) lv = attn_cells_exp_z(St, c0, j->idx, nv, mn, lv);
            else for (int k = 0; k < nv; k++) { /* sum in cell order; invisible rows keep -inf: V skips them */
                float *row = St + (size_t)(j->idx[k] - c0) * 8;
                const __m256 p = cpu_exp8(_mm256_sub_ps(_mm256_load_ps(row), mn));
                _mm256_store_ps(row, p);
                lv = _mm256_add_ps(lv, p);
            }
            _mm256_store_ps(mt, mn);
            _mm256_store_ps(lt, lv);
        }
        /* the V pass prefetches the next block's K rows (past hi too, up to the cache's cells: a
         * part of a split decode step is followed by the next part) */
        attn_pf_start(j->pf, j->Kh, j->krb, c1, c1 + FB < a->n_cells ? c1 + FB : a->n_cells, vacc_steps(j, nv));
        /* into L2 where the integer V pass runs (its transposed rows, weights and sums want L1):
         * bench_attn -s -c -g 8 q8_0 180-183 -> 168-174 us; with the f32 V pass (f16 or q8_0 V)
         * 229 -> 251 (f16), 191 -> 200 (q8_0), so L1 there */
        j->pf->l2 = j->vi8;
        if (j->vi8) attn_vt_z(j, j->idx, nv), attn_d15_z(j, nv);
        if (j->bf) attn_bf_vpairs(j, j->idx, nv);
        for (int t = 0; t < j->ntile; t++) vacc_blk(j, t, c0, j->idx, nv, S + (size_t)t * FB * 8, out);
    }
    if (j->vi8) attn_i8_order_z(j, out);
    if (j->bf) attn_bf_order(j, out);
    if (ml) { /* a part: left unnormalized */
        for (int h = 0; h < j->g; h++) {
            ml[h] = j->m[8 * (h / 8) + h % 8];
            ml[j->g + h] = j->l[8 * (h / 8) + h % 8];
        }
        return;
    }
    for (int h = 0; h < j->g; h++) {
        const float l = j->l[8 * (h / 8) + h % 8];
        if (l == 0.0f) continue;
        const __m256 inv = _mm256_set1_ps(1.0f / l);
        float *o = out + (size_t)h * dv;
        for (int i = 0; i < dv; i += 8) _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_loadu_ps(o + i), inv));
    }
}

/* Standard: the scores of all cells (tile t's rows at S + t * n * 8), the
 * exact softmax per lane, then V block by block. */
static void standard(const cpu_attn_args *a, attn_job *j, int32_t pos, int seq, int lo, int hi, float *out, float *S) {
    const int n = hi - lo;
    for (int c0 = lo; c0 < hi; c0 += FB) {
        const int c1 = c0 + FB < hi ? c0 + FB : hi;
        const int nv = visible_cells(a, pos, seq, c0, c1, j->idx);
        /* the score pass prefetches the next block's K rows */
        attn_pf_start(j->pf, j->Kh, j->krb, c1, c1 + FB < hi ? c1 + FB : hi, score_steps(j, nv));
        scores_all(j, c0, c1 - c0, j->idx, nv, S + (size_t)(c0 - lo) * 8, (size_t)n * 8);
    }
    /* max, e^(s - max) (0 for -inf), sum in double in cell order, as attn.c */
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int t = 0; t < j->ntile; t++) {
        float *St = S + (size_t)t * n * 8;
        __m256 mx = ninf;
        for (int c = 0; c < n; c++) mx = _mm256_max_ps(mx, _mm256_load_ps(St + (size_t)c * 8));
        __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
        for (int c = 0; c < n; c++) {
            const __m256 v = _mm256_load_ps(St + (size_t)c * 8);
            const __m256 p = _mm256_andnot_ps(_mm256_cmp_ps(v, ninf, _CMP_EQ_OQ), cpu_exp8(_mm256_sub_ps(v, mx)));
            _mm256_store_ps(St + (size_t)c * 8, p);
            s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
            s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
        }
        const __m256d one = _mm256_set1_pd(1.0);
        const __m256 inv =
            _mm256_set_m128(_mm256_cvtpd_ps(_mm256_div_pd(one, s1)), _mm256_cvtpd_ps(_mm256_div_pd(one, s0)));
        for (int c = 0; c < n; c++) {
            __m256 p = _mm256_mul_ps(_mm256_load_ps(St + (size_t)c * 8), inv);
            if (!j->vq8 && !j->bf) p = _mm256_cvtph_ps(_mm256_cvtps_ph(p, _MM_FROUND_TO_NEAREST_INT)); /* p meets f16 V in f16 */
            _mm256_store_ps(St + (size_t)c * 8, p);
        }
    }
    for (int c0 = lo; c0 < hi; c0 += FB) {
        const int c1 = c0 + FB < hi ? c0 + FB : hi;
        const int nv = visible_cells(a, pos, seq, c0, c1, j->idx);
        if (!nv) continue;
        attn_pf_start(j->pf, j->Vh, j->vrb, c1, c1 + FB < hi ? c1 + FB : hi, vacc_steps(j, nv));
        if (j->vi8) attn_vt_z(j, j->idx, nv), attn_d15_z(j, nv);
        if (j->bf) attn_bf_vpairs(j, j->idx, nv);
        for (int t = 0; t < j->ntile; t++) vacc_blk(j, t, c0, j->idx, nv, S + ((size_t)t * n + (c0 - lo)) * 8, out);
    }
    if (j->vi8) attn_i8_order_z(j, out);
    if (j->bf) attn_bf_order(j, out);
}

/* A switch of the environment, read once: "0" off, "1" on, else dflt; *g -1 until read, or a test's
 * forced value (cpu_attn_set_int8_v, cpu_attn_set_bf16). */
static bool env_switch(_Atomic int *g, const char *name, bool dflt) {
    int v = atomic_load_explicit(g, memory_order_relaxed);
    if (v < 0) {
        const char *e = getenv(name);
        v = e && !strcmp(e, "0") ? 0 : e && !strcmp(e, "1") ? 1 : dflt;
        atomic_store_explicit(g, v, memory_order_relaxed);
    }
    return v;
}

static _Atomic int g_int8_v = -1, g_bf16 = -1, g_wide = -1;

/* 512-bit q8_0 K scores: where a 512-bit vpdpbusd issues at the 256-bit one's rate (AMD Zen 5,
 * family 0x1a; Zen 4 splits it in two) */
bool cpu_attn_wide_scores(void) {
    const mr_cpu_features *f = mr_cpu();
    return env_switch(&g_wide, "MOERUN_ATTN_WIDE", f->amd && f->family >= 0x1a);
}
void cpu_attn_set_wide_scores(int on) { atomic_store_explicit(&g_wide, on < 0 ? -1 : on != 0, memory_order_relaxed); }

bool cpu_attn_int8_v(void) { return env_switch(&g_int8_v, "MOERUN_ATTN_V8", true); }
void cpu_attn_set_int8_v(int on) { atomic_store_explicit(&g_int8_v, on < 0 ? -1 : on != 0, memory_order_relaxed); }
bool cpu_attn_bf16(void) { return env_switch(&g_bf16, "MOERUN_ATTN_BF16", false); }
void cpu_attn_set_bf16(int on) { atomic_store_explicit(&g_bf16, on < 0 ? -1 : on != 0, memory_order_relaxed); }

bool cpu_attn_bf16_takes(const cpu_attn_args *a) {
    const mr_cpu_features *f = mr_cpu();
    const int g = a->n_head / a->n_head_kv;
    const bool vf16 = a->v_in_k || a->v_type == MR_TYPE_F16;
    return f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni && f->avx512bf16 && a->k_type == MR_TYPE_F16 &&
           vf16 && g % 8 == 0 && a->dk % 32 == 0 && a->dv >= CPU_ATTN_BF16_MIN_DV && cpu_attn_bf16();
}

void cpu_attn_merge_row_avx2(int dv, int np, const float *rows, size_t stride, const float *w, float inv, float *o) {
    const __m256 iv = _mm256_set1_ps(inv);
    int i = 0;
    for (; i + 32 <= dv; i += 32) { /* 32 outputs in registers over all parts */
        __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (int p = 0; p < np; p++) {
            if (w[p] == 0.0f) continue;
            const __m256 wp = _mm256_set1_ps(w[p]);
            const float *r = rows + p * stride + i;
            for (int u = 0; u < 4; u++) a[u] = _mm256_fmadd_ps(wp, _mm256_loadu_ps(r + 8 * u), a[u]);
        }
        for (int u = 0; u < 4; u++) _mm256_storeu_ps(o + i + 8 * u, _mm256_mul_ps(a[u], iv));
    }
    for (; i < dv; i += 8) { /* dv % 32: the rest 8 at a time */
        __m256 a = _mm256_setzero_ps();
        for (int p = 0; p < np; p++)
            if (w[p] != 0.0f) a = _mm256_fmadd_ps(_mm256_set1_ps(w[p]), _mm256_loadu_ps(rows + p * stride + i), a);
        _mm256_storeu_ps(o + i, _mm256_mul_ps(a, iv));
    }
}

void cpu_attn_round_f16(const float *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT)));
    for (; i < n; i++) dst[i] = _cvtsh_ss(_cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT));
}

/* The queries' forms for j's kernels, into ext up to j->m. */
static void prep_queries(attn_job *j, const float *q) {
    if (j->bf) {
        attn_bf_prep(j, q);
    } else if (j->kq8 && j->z && j->H == 8) {
        if (j->zw && j->ntile == 1) attn_q8_prep_zw(j, q);
        else attn_q8_prep_z(j, q);
    } else if (j->kq8) {
        attn_q8_prep(j, q);
    } else if (j->z && j->H == 8) { /* qz[t][i / 8][pair p][16]: heads 2p, 2p + 1, dimensions i .. i + 7 */
        for (int t = 0; t < j->ntile; t++)
            for (int h = 0; h < 8; h++)
                for (int i = 0; i < j->dk; i += 8) {
                    float *d = j->qz + (size_t)t * 8 * j->dk + (size_t)(i / 8) * 64 + 8 * h;
                    if (8 * t + h < j->g) memcpy(d, q + (size_t)(8 * t + h) * j->dk + i, sizeof(float) * 8);
                    else memset(d, 0, sizeof(float) * 8);
                }
    } else {
        for (int t = 0; t < j->ntile; t++)
            for (int h = 0; h < 8; h++) {
                float *d = j->qf + ((size_t)t * 8 + h) * j->dk;
                if (8 * t + h < j->g) memcpy(d, q + (size_t)(8 * t + h) * j->dk, sizeof(float) * (size_t)j->dk);
                else memset(d, 0, sizeof(float) * (size_t)j->dk);
            }
    }
}

void cpu_attn_avx2(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, int seq, int lo, int hi, float *out,
                   float *ml, float *scratch, float *ext, bool prepped) {
    attn_job j = {.g = a->n_head / a->n_head_kv, .dk = a->dk, .dv = a->dv, .scale = a->scale, .softcap = a->softcap};
    j.ntile = cpu_attn_simd_tiles(j.g);
    j.H = j.g > 4 ? 8 : j.g > 2 ? 4 : j.g;
    j.kq8 = a->k_type == MR_TYPE_Q8_0;
    const mr_cpu_features *f = mr_cpu();
    j.z = f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni;
    j.krb = mr_row_size(a->k_type, a->dk);
    j.Kh = a->K + (size_t)kvh * a->n_ctx * j.krb;
    if (a->v_in_k) {
        j.vq8 = j.kq8, j.vrb = j.krb, j.Vh = j.Kh;
    } else {
        j.vq8 = a->v_type == MR_TYPE_Q8_0;
        j.vrb = mr_row_size(a->v_type, a->dv);
        j.Vh = a->V + (size_t)kvh * a->n_ctx * j.vrb;
    }
    /* ext (sizes: cpu_attn_simd_ext_floats): queries, q8_0 query scales, m, l, pd, idx */
    const size_t nt = (size_t)j.ntile;
    j.qf = ext;
    j.qt = (uint8_t *)ext;
    j.aqt = j.qt + nt * (size_t)j.dk * 8;
    j.dq = ext + nt * (size_t)j.dk * 8;
    j.m = j.dq + nt * (size_t)(j.dk / 32) * 8;
    j.l = j.m + nt * 8;
    j.pd = j.l + nt * 8;
    j.idx = (int *)(j.pd + cpu_attn_simd_pd_floats(j.dv));
    /* the integer V pass (attn.h): bench_attn -g 8 at depth 4096, one Zen 4 thread, 170 -> 133 us
     * a call warm, 190 -> 171 cold; MLA (--mla -g 16, cold) 1096 -> 813 */
    j.vi8 = j.z && j.vq8 && j.dv >= CPU_ATTN_INT8_V_MIN_DV && cpu_attn_int8_v();
    if (j.vi8) {
        const size_t nbv = (size_t)j.dv / 32;
        j.vt = (uint8_t *)j.pd;                           /* FB x nbv x 32 bytes = FB x nbv x 8 floats */
        j.wq = (uint32_t *)(j.pd + (size_t)FB * nbv * 8); /* 2 groups x 8 quads x nbv x 8 */
        j.vsc = (float *)(j.wq + 128 * nbv);              /* 2 x nbv x 8 */
        j.dvf = j.vsc + 16 * nbv;                         /* nbv x FB */
        j.d15 = (int16_t *)(j.dvf + FB * nbv);            /* 2 x nbv x 32 */
        j.dm = (float *)(j.d15 + 64 * nbv);               /* 2 x nbv */
    }
    j.qz = j.qf; /* the same queries, laid out for attn_f16_scores_z (which replaces scores_f16_h) */
    j.bf = cpu_attn_bf16_takes(a); /* implies j.z, f16 K and V, 8-head tiles */
    if (j.bf) {
        j.qb = (uint32_t *)j.qf;
        j.vp = (uint32_t *)j.pd;
        j.pp = j.vp + (size_t)FB / 2 * j.dv;
        j.kb = (uint16_t *)(j.pp + (size_t)FB / 2 * 8);
    } else if (j.kq8 && j.z && j.H == 8) {
        j.zw = cpu_attn_wide_scores();
    }
    if (!prepped) prep_queries(&j, q);
    attn_pf pf;
    j.pf = &pf;
    memset(out, 0, sizeof(float) * (size_t)j.g * j.dv);
    if (a->flash) flash(a, &j, pos, seq, lo, hi, out, ml, scratch);
    else standard(a, &j, pos, seq, lo, hi, out, scratch);
}
