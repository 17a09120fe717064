/*
 * attn_avx512.c — AVX-512 kernels of the SIMD attention path (attn_avx2.c drives them where
 * the CPU has AVX512F/BW/VL and AVX512_VNNI; declarations in attn_vec.h): the q8_0 K scores
 * with vpdpbusd (attn_q8_kern.h), and the V accumulation on 512-bit vectors.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/attn_vec.h"
#include "quant/quant.h"

#define ATTN_Q8_VNNI 1
#define ATTN_Q8_SCORES attn_q8_scores_vnni
#include "cpu/attn_q8_kern.h"

/* NC cells of attn_f16_scores_z: acc[c][p] holds heads 2p, 2p + 1 of cell c */
ATTN_AI void f16z_cells(const int NC, const attn_job *j, const float *qz, const uint16_t *const *r, __m256 sc,
                        float *const *o) {
    const int dk = j->dk;
    __m512 acc[2][4];
    for (int c = 0; c < NC; c++)
        for (int p = 0; p < 4; p++) acc[c][p] = _mm512_setzero_ps();
    for (int i = 0; i < dk; i += 8) {
        __m512 q[4];
        for (int p = 0; p < 4; p++) q[p] = _mm512_load_ps(qz + (size_t)(i / 8) * 64 + 16 * p);
        for (int c = 0; c < NC; c++) {
            const __m512 k = _mm512_cvtph_ps(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(r[c] + i))));
            for (int p = 0; p < 4; p++) acc[c][p] = _mm512_fmadd_ps(q[p], k, acc[c][p]);
        }
    }
    for (int c = 0; c < NC; c++) {
        __m256 h[8];
        for (int p = 0; p < 4; p++)
            h[2 * p] = _mm512_castps512_ps256(acc[c][p]), h[2 * p + 1] = _mm512_extractf32x8_ps(acc[c][p], 1);
        _mm256_store_ps(o[c], _mm256_mul_ps(hsum8x8(h), sc));
        if (j->softcap > 0.0f)
            for (int x = 0; x < 8; x++) o[c][x] = j->softcap * tanhf(o[c][x] / j->softcap);
    }
}

void attn_f16_scores_z(const attn_job *j, int t, int c0, int n, const int *idx, int nv, float *S) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY), sc = _mm256_set1_ps(j->scale);
    const float *qz = j->qz + (size_t)t * 8 * j->dk;
    attn_pf pf = *j->pf;
    if (nv < n)
        for (int c = 0; c < n; c++) _mm256_store_ps(S + (size_t)c * 8, ninf);
    int k = 0;
    for (; k + 2 <= nv; k += 2) {
        const uint16_t *r[2] = {(const uint16_t *)(j->Kh + (size_t)idx[k] * j->krb),
                                (const uint16_t *)(j->Kh + (size_t)idx[k + 1] * j->krb)};
        float *o[2] = {S + (size_t)(idx[k] - c0) * 8, S + (size_t)(idx[k + 1] - c0) * 8};
        attn_pf_step(&pf), attn_pf_step(&pf);
        f16z_cells(2, j, qz, r, sc, o);
    }
    if (k < nv) {
        const uint16_t *r[1] = {(const uint16_t *)(j->Kh + (size_t)idx[k] * j->krb)};
        float *o[1] = {S + (size_t)(idx[k] - c0) * 8};
        attn_pf_step(&pf);
        f16z_cells(1, j, qz, r, sc, o);
    }
    *j->pf = pf;
}

/* NH heads x 32 dimensions (two zmm, one q8_0 block) per pass over the block's cells. */
ATTN_AI void vacc_z(const int NH, const bool VQ8, const attn_job *j, int c0, const int *idx, int nv, const float *P,
                    float *out) {
    const int dv = j->dv, nbv = dv / 32;
    attn_pf pf = *j->pf;
    for (int b = 0; b < nbv; b++) {
        const int i0 = 32 * b;
        __m512 acc[8][2];
        for (int h = 0; h < NH; h++)
            for (int u = 0; u < 2; u++) acc[h][u] = _mm512_loadu_ps(out + (size_t)h * dv + i0 + 16 * u);
        for (int k = 0; k < nv; k++) {
            if (!(k & 15)) attn_pf_step(&pf);
            const uint8_t *row = j->Vh + (size_t)idx[k] * j->vrb;
            __m512 v[2];
            const float *w;
            if (VQ8) {
                for (int u = 0; u < 2; u++)
                    v[u] = _mm512_cvtepi32_ps(
                        _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(row + (size_t)b * ATTN_Q8B + 2 + 16 * u))));
                w = j->pd + ((size_t)k * nbv + b) * 8;
            } else {
                for (int u = 0; u < 2; u++)
                    v[u] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * (size_t)(i0 + 16 * u))));
                w = P + (size_t)(idx[k] - c0) * 8;
            }
            for (int h = 0; h < NH; h++) {
                const __m512 p = _mm512_set1_ps(w[h]);
                for (int u = 0; u < 2; u++) acc[h][u] = _mm512_fmadd_ps(p, v[u], acc[h][u]);
            }
        }
        for (int h = 0; h < NH; h++)
            for (int u = 0; u < 2; u++) _mm512_storeu_ps(out + (size_t)h * dv + i0 + 16 * u, acc[h][u]);
    }
    *j->pf = pf;
}

#define VACC_Z(VQ8)                                                                                                    \
    switch (nh) {                                                                                                      \
    case 1: vacc_z(1, VQ8, j, c0, idx, nv, P, out); break;                                                             \
    case 2: vacc_z(2, VQ8, j, c0, idx, nv, P, out); break;                                                             \
    case 3: vacc_z(3, VQ8, j, c0, idx, nv, P, out); break;                                                             \
    case 4: vacc_z(4, VQ8, j, c0, idx, nv, P, out); break;                                                             \
    case 5: vacc_z(5, VQ8, j, c0, idx, nv, P, out); break;                                                             \
    case 6: vacc_z(6, VQ8, j, c0, idx, nv, P, out); break;                                                             \
    case 7: vacc_z(7, VQ8, j, c0, idx, nv, P, out); break;                                                             \
    default: vacc_z(8, VQ8, j, c0, idx, nv, P, out); break;                                                            \
    }

void attn_vacc_z(const attn_job *j, int nh, int c0, const int *idx, int nv, const float *P, float *out) {
    if (j->vq8) VACC_Z(true)
    else VACC_Z(false)
}

/* ---- q8_0 K scores, tiles of 8 heads in pairs (attn_q8_prep_z, attn_q8_scores_z) ---------------- */

/* Layout (tile pair P = tiles 2P, 2P + 1; a last tile alone is a "pair" of width W = 1), at tile
 * 2P's places of qt / aqt / dq:
 *   qs  (qt):  group (b, gg) of block b at ((b * 8 + gg) * W + w) * 32: 4 signed quants of each of
 *              tile 2P + w's 8 heads (byte h * 4 + e: element b * 32 + gg * 4 + e of head h);
 *   corr (aqt, int32): (b * W + w) * 8 + h: 128 * the sum of head h's quants in block b;
 *   dq:        (b * W + w) * 8 + h: head h's block scale.
 * Absent heads: zeros. */
void attn_q8_prep_z(attn_job *j, const float *q) {
    const int dk = j->dk, nbk = dk / 32;
    uint8_t row[(CPU_ATTN_SIMD_MAX_D / 32) * ATTN_Q8B];
    for (int t = 0; t < j->ntile; t++) {
        const int tp = t & ~1, W = tp + 1 < j->ntile ? 2 : 1, w = t - tp;
        uint8_t *qs = j->qt + (size_t)tp * dk * 8;
        int32_t *corr = (int32_t *)(j->aqt + (size_t)tp * dk * 8);
        float *dq = j->dq + (size_t)tp * nbk * 8;
        for (int h = 0; h < 8; h++) {
            const bool here = 8 * t + h < j->g;
            if (here) quant_quantize_row(MR_TYPE_Q8_0, q + (size_t)(8 * t + h) * dk, row, dk);
            for (int b = 0; b < nbk; b++) {
                const uint8_t *blk = row + (size_t)b * ATTN_Q8B;
                int sum = 0;
                for (int gg = 0; gg < 8; gg++) {
                    uint8_t *d = qs + ((size_t)(b * 8 + gg) * W + w) * 32 + h * 4;
                    if (here) memcpy(d, blk + 2 + gg * 4, 4);
                    else memset(d, 0, 4);
                }
                if (here)
                    for (int e = 0; e < 32; e++) sum += (int8_t)blk[2 + e];
                corr[(b * W + w) * 8 + h] = 128 * sum;
                dq[(b * W + w) * 8 + h] = here ? _cvtsh_ss(attn_ld16(blk)) : 0.0f;
            }
        }
    }
}

/* The scores of the W (1 or 2) tiles at tile tp for 4 cells r[]: per block, each cell's 32 K
 * bytes + 128 (a vpxor, stored once) are broadcast 4 at a time as vpdpbusd's unsigned operand
 * against the signed queries, and 128 * the queries' sum is taken off: the exact int32 dot
 * products of attn_q8_kern.h, then its float steps. 256-bit vectors: VNNI there issues on two
 * ports, on 512-bit ones on one (and a 512-bit op idles a port), so a zmm holding both tiles
 * would gain nothing. s[c * W + w]: cell c, tile tp + w. */
ATTN_AI void q8z_dot4(const int W, const attn_job *j, int tp, const uint8_t *const r[4], __m256 s[8]) {
    const int dk = j->dk, nbk = dk / 32;
    const uint8_t *qs = j->qt + (size_t)tp * dk * 8;
    const int32_t *corr = (const int32_t *)(j->aqt + (size_t)tp * dk * 8);
    const float *dq = j->dq + (size_t)tp * nbk * 8;
    const __m256i x80 = _mm256_set1_epi8((char)0x80);
    _Alignas(32) uint8_t kx[4][32];
    for (int c = 0; c < 4 * W; c++) s[c] = _mm256_setzero_ps();
    for (int b = 0; b < nbk; b++) {
        for (int c = 0; c < 4; c++)
            _mm256_store_si256((__m256i *)kx[c],
                               _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(r[c] + (size_t)b * ATTN_Q8B + 2)), x80));
        __m256i acc[8];
        for (int c = 0; c < 4 * W; c++) acc[c] = _mm256_setzero_si256();
        for (int gg = 0; gg < 8; gg++) {
            const uint8_t *qg = qs + (size_t)(b * 8 + gg) * W * 32;
            __m256i qv[2];
            for (int w = 0; w < W; w++) qv[w] = _mm256_load_si256((const __m256i *)(qg + 32 * w));
            for (int c = 0; c < 4; c++) {
                /* a broadcast from memory (a load port): from a register, GCC would extract each
                 * dword with shuffles, which compete with vpdpbusd for its ports */
                __m256i kb;
                __asm__("vpbroadcastd %1, %0" : "=v"(kb) : "m"(*(const int32_t *)(kx[c] + 4 * gg)));
                for (int w = 0; w < W; w++) acc[c * W + w] = _mm256_dpbusd_epi32(acc[c * W + w], kb, qv[w]);
            }
        }
        for (int w = 0; w < W; w++) {
            const __m256i cv = _mm256_loadu_si256((const __m256i *)(corr + (b * W + w) * 8));
            const __m256 dqv = _mm256_loadu_ps(dq + (b * W + w) * 8);
            for (int c = 0; c < 4; c++) {
                const __m256 d = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(attn_ld16(r[c] + (size_t)b * ATTN_Q8B))), dqv);
                s[c * W + w] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[c * W + w], cv)), s[c * W + w]);
            }
        }
    }
}

ATTN_AI void q8z_scores(const int W, const attn_job *j, int tp, int c0, int n, const int *idx, int nv, float *S,
                        size_t ts) {
    const __m256 sc = _mm256_set1_ps(j->scale);
    attn_pf pf = *j->pf;
    if (nv < n)
        for (int w = 0; w < W; w++)
            for (int c = 0; c < n; c++) _mm256_store_ps(S + w * ts + (size_t)c * 8, _mm256_set1_ps(-INFINITY));
    for (int k = 0; k < nv; k += ATTN_Q8_CELLS_PER_STEP) {
        const uint8_t *r[4];
        for (int i = 0; i < 4; i++) r[i] = j->Kh + (size_t)idx[k + i < nv ? k + i : nv - 1] * j->krb;
        for (int w = 0; w < W; w++) attn_pf_step(&pf); /* score_steps counts a step per tile */
        __m256 s[8];
        q8z_dot4(W, j, tp, r, s);
        for (int i = 0; i < 4 && k + i < nv; i++)
            for (int w = 0; w < W; w++) {
                float *o = S + w * ts + (size_t)(idx[k + i] - c0) * 8;
                _mm256_store_ps(o, _mm256_mul_ps(s[i * W + w], sc));
                if (j->softcap > 0.0f)
                    for (int h = 0; h < 8; h++) o[h] = j->softcap * tanhf(o[h] / j->softcap);
            }
    }
    *j->pf = pf;
}

void attn_q8_scores_z(const attn_job *j, int c0, int n, const int *idx, int nv, float *S, size_t ts) {
    for (int t = 0; t < j->ntile; t += 2) {
        if (t + 1 < j->ntile) q8z_scores(2, j, t, c0, n, idx, nv, S + (size_t)t * ts, ts);
        else q8z_scores(1, j, t, c0, n, idx, nv, S + (size_t)t * ts, ts);
    }
}
