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
    __m512 acc[4][4];
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
    if (NC % 2 == 0) { /* two cells' sums at once */
        for (int c = 0; c < NC; c += 2) {
            __m512 h[8];
            attn_pair_rows(acc[c], acc[c + 1], h);
            const __m512 r = _mm512_mul_ps(hsum8x8x2(h), _mm512_broadcast_f32x8(sc));
            _mm256_store_ps(o[c], _mm512_castps512_ps256(r));
            _mm256_store_ps(o[c + 1], _mm512_extractf32x8_ps(r, 1));
        }
    } else {
        for (int c = 0; c < NC; c++) {
            __m256 h[8];
            for (int p = 0; p < 4; p++)
                h[2 * p] = _mm512_castps512_ps256(acc[c][p]), h[2 * p + 1] = _mm512_extractf32x8_ps(acc[c][p], 1);
            _mm256_store_ps(o[c], _mm256_mul_ps(hsum8x8(h), sc));
        }
    }
    if (j->softcap > 0.0f)
        for (int c = 0; c < NC; c++)
            for (int x = 0; x < 8; x++) o[c][x] = j->softcap * tanhf(o[c][x] / j->softcap);
}

void attn_f16_scores_z(const attn_job *j, int t, int c0, int n, const int *idx, int nv, float *S) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY), sc = _mm256_set1_ps(j->scale);
    const float *qz = j->qz + (size_t)t * 8 * j->dk;
    attn_pf pf = *j->pf;
    if (nv < n)
        for (int c = 0; c < n; c++) _mm256_store_ps(S + (size_t)c * 8, ninf);
    int k = 0;
    for (; k + 4 <= nv; k += 4) {
        const uint16_t *r[4] = {(const uint16_t *)(j->Kh + (size_t)idx[k] * j->krb),
                                (const uint16_t *)(j->Kh + (size_t)idx[k + 1] * j->krb),
                                (const uint16_t *)(j->Kh + (size_t)idx[k + 2] * j->krb),
                                (const uint16_t *)(j->Kh + (size_t)idx[k + 3] * j->krb)};
        float *o[4] = {S + (size_t)(idx[k] - c0) * 8, S + (size_t)(idx[k + 1] - c0) * 8,
                       S + (size_t)(idx[k + 2] - c0) * 8, S + (size_t)(idx[k + 3] - c0) * 8};
        attn_pf_step(&pf), attn_pf_step(&pf), attn_pf_step(&pf), attn_pf_step(&pf);
        f16z_cells(4, j, qz, r, sc, o);
    }
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
            attn_pf_step(&pf);
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

/* F(NH) with NH = nh (1..8) as a compile-time constant, for the kernels templated on a tile's heads */
#define NH_SWITCH(nh, F)                                                                                               \
    switch (nh) {                                                                                                      \
    case 1: F(1); break;                                                                                               \
    case 2: F(2); break;                                                                                               \
    case 3: F(3); break;                                                                                               \
    case 4: F(4); break;                                                                                               \
    case 5: F(5); break;                                                                                               \
    case 6: F(6); break;                                                                                               \
    case 7: F(7); break;                                                                                               \
    default: F(8); break;                                                                                              \
    }

void attn_vacc_z(const attn_job *j, int nh, int c0, const int *idx, int nv, const float *P, float *out) {
#define VZ_Q8(N) vacc_z(N, true, j, c0, idx, nv, P, out)
#define VZ_F16(N) vacc_z(N, false, j, c0, idx, nv, P, out)
    if (j->vq8) NH_SWITCH(nh, VZ_Q8)
    else NH_SWITCH(nh, VZ_F16)
#undef VZ_Q8
#undef VZ_F16
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

/* The scores of the W (1 or 2) tiles at tile tp for NC = 8 / W cells r[] (eight vpdpbusd chains
 * either way): per block, each cell's 32 K bytes are broadcast 4 at a time straight from the row
 * and made unsigned (+128, a vpxor) as vpdpbusd's operand against the signed queries, and 128 *
 * the queries' sum is taken off (the sums start from its negative): the
 * exact int32 dot products of attn_q8_kern.h, then its float steps. (Biasing a cell's 32 bytes
 * once into a stack copy and broadcasting from there took fewer vpxor, but the broadcasts
 * stalled on the copy's stores where it and the cache rows collided: bench_attn -g 8 with a
 * warm cache 225 -> 170 us, MLA 495 -> 439 us; cold 193 -> 187 us.) 256-bit vectors: VNNI
 * there issues on two ports, on 512-bit ones on one (and a 512-bit op idles a port), so a zmm
 * holding both tiles would gain nothing. s[c * W + w]: cell c, tile tp + w. */
ATTN_AI void q8z_dot(const int NC, const int W, const attn_job *j, int tp, const uint8_t *const r[8], __m256 s[8]) {
    const int dk = j->dk, nbk = dk / 32;
    const uint8_t *qs = j->qt + (size_t)tp * dk * 8;
    const int32_t *corr = (const int32_t *)(j->aqt + (size_t)tp * dk * 8);
    const float *dq = j->dq + (size_t)tp * nbk * 8;
    const __m256i x80 = _mm256_set1_epi8((char)0x80);
    for (int c = 0; c < NC * W; c++) s[c] = _mm256_setzero_ps();
    for (int b = 0; b < nbk; b++) {
        __m256i acc[8], ncv[2];
        for (int w = 0; w < W; w++)
            ncv[w] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_loadu_si256((const __m256i *)(corr + (b * W + w) * 8)));
        for (int c = 0; c < NC; c++)
            for (int w = 0; w < W; w++) acc[c * W + w] = ncv[w];
        _Pragma("GCC unroll 8")
        for (int gg = 0; gg < 8; gg++) {
            const uint8_t *qg = qs + (size_t)(b * 8 + gg) * W * 32;
            __m256i qv[2];
            for (int w = 0; w < W; w++) qv[w] = _mm256_load_si256((const __m256i *)(qg + 32 * w));
            for (int c = 0; c < NC; c++) {
                /* a broadcast from memory (a load port; from a register, GCC would extract each
                 * dword with shuffles, which compete with vpdpbusd for its ports), then the +128 */
                __m256i kb;
                __asm__("vpbroadcastd %1, %0" : "=v"(kb) : "m"(*(const int32_t *)(r[c] + (size_t)b * ATTN_Q8B + 2 + 4 * gg)));
                kb = _mm256_xor_si256(kb, x80);
                for (int w = 0; w < W; w++) acc[c * W + w] = _mm256_dpbusd_epi32(acc[c * W + w], kb, qv[w]);
            }
        }
        for (int w = 0; w < W; w++) {
            const __m256 dqv = _mm256_loadu_ps(dq + (b * W + w) * 8);
            for (int c = 0; c < NC; c++) {
                const __m256 d = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(attn_ld16(r[c] + (size_t)b * ATTN_Q8B))), dqv);
                s[c * W + w] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(acc[c * W + w]), s[c * W + w]);
            }
        }
    }
}

/* The score kernels' edges, for W tiles' rows (tile w's at S + w * ts): before, -inf in all n
 * rows of a block where some cells are not listed (nv < n); after, the soft-cap of the listed rows. */
static void scores_unlisted(float *S, size_t ts, int W, int n, int nv) {
    if (nv < n)
        for (int w = 0; w < W; w++)
            for (int c = 0; c < n; c++) _mm256_store_ps(S + w * ts + (size_t)c * 8, _mm256_set1_ps(-INFINITY));
}

static void scores_softcap(const attn_job *j, float *S, size_t ts, int W, int c0, const int *idx, int nv) {
    if (j->softcap > 0.0f)
        for (int w = 0; w < W; w++)
            for (int k = 0; k < nv; k++) {
                float *o = S + w * ts + (size_t)(idx[k] - c0) * 8;
                for (int h = 0; h < 8; h++) o[h] = j->softcap * tanhf(o[h] / j->softcap);
            }
}

ATTN_AI void q8z_scores(const int W, const attn_job *j, int tp, int c0, int n, const int *idx, int nv, float *S,
                        size_t ts) {
    const __m256 sc = _mm256_set1_ps(j->scale);
    attn_pf pf = *j->pf;
    scores_unlisted(S, ts, W, n, nv);
    const int NC = 8 / W; /* cells a step */
    for (int k = 0; k < nv; k += NC) {
        const uint8_t *r[8];
        for (int i = 0; i < NC; i++) r[i] = j->Kh + (size_t)idx[k + i < nv ? k + i : nv - 1] * j->krb;
        for (int w = 0; w < W * NC / 4; w++) attn_pf_step(&pf); /* score_steps counts a step per tile */
        __m256 s[8];
        q8z_dot(NC, W, j, tp, r, s);
        /* a constant count (the test inside): s stays in registers */
        for (int i = 0; i < NC; i++)
            if (k + i < nv)
                for (int w = 0; w < W; w++)
                    _mm256_store_ps(S + w * ts + (size_t)(idx[k + i] - c0) * 8, _mm256_mul_ps(s[i * W + w], sc));
    }
    scores_softcap(j, S, ts, W, c0, idx, nv);
    *j->pf = pf;
}

/* The unscaled scores of 8 cells r[] on 512-bit vectors, for the two layouts of the wide kernels:
 * per block, E (4 or 8) quants of each cell broadcast from the row at a time, made unsigned (+128)
 * against the signed queries (qs: a vector per block and step i < 32 / E, (b * 32 / E + i) * 64), the int32
 * sums starting from -128 x the queries' sums (nc: a vector per block; E 4: attn_q8_prep_z's +128 x
 * sum, negated here); E 8 adds lanes 2h and 2h + 1 (an exact int32 sum); then the float steps of
 * attn_q8_kern.h with the query scales dq (a vector per block). Lane by lane the 256-bit kernels'
 * integers and float operations, so their scores bit for bit. The cells' first nds block scales as
 * floats go to ds[b * ATTN_FB + c] (j->dvk: attn_vt_z's dvf, V inside K). */
ATTN_AI void q8_512_dot(const int E, const uint8_t *qs, const int32_t *nc, const float *dq, int nbk,
                        const uint8_t *const r[8], __m512 s[8], float *ds, int nds) {
    const __m512i x80 = _mm512_set1_epi8((char)0x80);
    const int NS = E == 4 ? 8 : 4; /* steps a block (no division: UBSan's check would void the unroll) */
    for (int c = 0; c < 8; c++) s[c] = _mm512_setzero_ps();
    for (int b = 0; b < nbk; b++) {
        __m512i acc[8], n0 = _mm512_loadu_si512((const void *)(nc + b * 16));
        if (E == 4) n0 = _mm512_sub_epi32(_mm512_setzero_si512(), n0);
        for (int c = 0; c < 8; c++) acc[c] = n0;
        _Pragma("GCC unroll 8")
        for (int i = 0; i < NS; i++) {
            const __m512i qv = _mm512_load_si512((const void *)(qs + (size_t)(b * NS + i) * 64));
            for (int c = 0; c < 8; c++) {
                __m512i kb;
                const uint8_t *kp = r[c] + (size_t)b * ATTN_Q8B + 2 + E * i;
                if (E == 4) __asm__("vpbroadcastd %1, %0" : "=v"(kb) : "m"(*(const int32_t *)kp));
                else __asm__("vpbroadcastq %1, %0" : "=v"(kb) : "m"(*(const int64_t *)kp));
                acc[c] = _mm512_dpbusd_epi32(acc[c], _mm512_xor_si512(kb, x80), qv);
            }
        }
        const __m512 dqv = _mm512_loadu_ps(dq + b * 16);
        for (int c = 0; c < 8; c++) {
            const __m512i sum = E == 8 ? _mm512_add_epi32(acc[c], _mm512_shuffle_epi32(acc[c], _MM_PERM_CDAB)) : acc[c];
            const float dk = _cvtsh_ss(attn_ld16(r[c] + (size_t)b * ATTN_Q8B));
            if (b < nds) ds[(size_t)b * ATTN_FB + c] = dk;
            s[c] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(dk), dqv), _mm512_cvtepi32_ps(sum), s[c]);
        }
    }
}

/* q8z_scores for a tile pair (W = 2) on 512-bit vectors (j->zw: where a 512-bit vpdpbusd issues at the
 * 256-bit rate): a cell's accumulator holds both tiles' 8 heads, whose groups gg lie side by side in
 * qt, so each broadcast K dword feeds one instruction instead of two (q8_512_dot, E 4). */
static void q8zp_scores(const attn_job *j, int tp, int c0, int n, const int *idx, int nv, float *S, size_t ts) {
    const __m512 sc = _mm512_set1_ps(j->scale);
    attn_pf pf = *j->pf;
    scores_unlisted(S, ts, 2, n, nv);
    for (int k = 0; k < nv; k += 8) {
        const uint8_t *r[8];
        for (int i = 0; i < 8; i++) r[i] = j->Kh + (size_t)idx[k + i < nv ? k + i : nv - 1] * j->krb;
        for (int w = 0; w < 4; w++) attn_pf_step(&pf); /* score_steps: a step per tile and 4 cells */
        __m512 s[8];
        q8_512_dot(4, j->qt + (size_t)tp * j->dk * 8, (const int32_t *)(j->aqt + (size_t)tp * j->dk * 8),
                   j->dq + (size_t)tp * (j->dk / 32) * 8, j->dk / 32, r, s, j->dvf + k, tp == 0 && j->dvk ? j->dv / 32 : 0);
        for (int i = 0; i < 8; i++)
            if (k + i < nv) {
                const __m512 x = _mm512_mul_ps(s[i], sc);
                float *o = S + (size_t)(idx[k + i] - c0) * 8;
                _mm256_store_ps(o, _mm512_castps512_ps256(x));
                _mm256_store_ps(o + ts, _mm512_extractf32x8_ps(x, 1));
            }
    }
    scores_softcap(j, S, ts, 2, c0, idx, nv);
    *j->pf = pf;
}

void attn_q8_scores_z(const attn_job *j, int c0, int n, const int *idx, int nv, float *S, size_t ts) {
    for (int t = 0; t < j->ntile; t += 2) {
        if (t + 1 < j->ntile && j->zw) q8zp_scores(j, t, c0, n, idx, nv, S + (size_t)t * ts, ts);
        else if (t + 1 < j->ntile) q8z_scores(2, j, t, c0, n, idx, nv, S + (size_t)t * ts, ts);
        else q8z_scores(1, j, t, c0, n, idx, nv, S + (size_t)t * ts, ts);
    }
}

/* ---- q8_0 K scores of one 8-head tile on 512-bit vectors (attn_q8_prep_zw, attn_q8_scores_zw) -------------- */

/* Layout (one tile, j->ntile == 1): lane 2h + e of a vector is head h's dword group 2P + e of a block
 * (4 quants: elements 8P + 4e .. + 3 of the block), so a cell's 8 bytes of groups 2P, 2P + 1 broadcast
 * as a quadword meet all 8 heads:
 *   qs (qt):   block b, pair P at (b * 4 + P) * 64: byte 8h + 4e + i = quant i of group 2P + e of head h;
 *   nc (aqt):  int32 [b][16]: -128 * head h's quant sum of block b in lane 2h, 0 in lane 2h + 1;
 *   dq (aqt + dk * 2 bytes): [b][16]: head h's block scale in lanes 2h and 2h + 1.
 * Absent heads: zeros. */
void attn_q8_prep_zw(attn_job *j, const float *q) {
    const int dk = j->dk, nbk = dk / 32;
    uint8_t row[(CPU_ATTN_SIMD_MAX_D / 32) * ATTN_Q8B];
    int32_t *nc = (int32_t *)j->aqt;
    float *dq = (float *)(j->aqt + (size_t)dk * 2);
    for (int h = 0; h < 8; h++) {
        const bool here = h < j->g;
        if (here) quant_quantize_row(MR_TYPE_Q8_0, q + (size_t)h * dk, row, dk);
        for (int b = 0; b < nbk; b++) {
            const uint8_t *blk = row + (size_t)b * ATTN_Q8B;
            int sum = 0;
            for (int P = 0; P < 4; P++) {
                uint8_t *d = j->qt + (size_t)(b * 4 + P) * 64 + 8 * h;
                if (here) memcpy(d, blk + 2 + 8 * P, 8);
                else memset(d, 0, 8);
            }
            if (here)
                for (int e = 0; e < 32; e++) sum += (int8_t)blk[2 + e];
            nc[b * 16 + 2 * h] = -128 * sum, nc[b * 16 + 2 * h + 1] = 0;
            dq[b * 16 + 2 * h] = dq[b * 16 + 2 * h + 1] = here ? _cvtsh_ss(attn_ld16(blk)) : 0.0f;
        }
    }
}

void attn_q8_scores_zw(const attn_job *j, int c0, int n, const int *idx, int nv, float *S) {
    const __m256 sc = _mm256_set1_ps(j->scale);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14);
    attn_pf pf = *j->pf;
    scores_unlisted(S, 0, 1, n, nv);
    for (int k = 0; k < nv; k += 8) {
        const uint8_t *r[8];
        for (int i = 0; i < 8; i++) r[i] = j->Kh + (size_t)idx[k + i < nv ? k + i : nv - 1] * j->krb;
        attn_pf_step(&pf), attn_pf_step(&pf); /* score_steps: a step per ATTN_Q8_CELLS_PER_STEP cells */
        __m512 s[8];
        q8_512_dot(8, j->qt, (const int32_t *)j->aqt, (const float *)(j->aqt + (size_t)j->dk * 2), j->dk / 32, r, s,
                   j->dvf + k, j->dvk ? j->dv / 32 : 0);
        for (int i = 0; i < 8; i++) /* a constant count (the test inside): s stays in registers */
            if (k + i < nv)
                _mm256_store_ps(S + (size_t)(idx[k + i] - c0) * 8,
                                _mm256_mul_ps(_mm512_castps512_ps256(_mm512_permutexvar_ps(even, s[i])), sc));
    }
    scores_softcap(j, S, 0, 1, c0, idx, nv);
    *j->pf = pf;
}

/* ---- q8_0 V in integer products (attn_vt_z, attn_vacc_i8_z; j->vi8) ------------------------------------ */

/* The V pass with a q8_0 V as a q8_0 x q8_0 dot product over cells, the way llama.cpp rounds a
 * query to q8_0 against a q8_0 K: for head h and V block b, the weights w(c) = p(h, c) * d(c, b)
 * (probability times the row's block scale, >= 0: our q8_0 scales are amax / 127) of 32
 * consecutive visible cells are quantized to 0..255 with one scale per (h, b, 32 cells), and
 * out(h, b's dims) += scale * sum_c w8(c) * q(c, dim) in int32 (vpdpbusd: the unsigned weights
 * against the signed quants, 4 cells a lane). One 512-bit vpdpbusd then does 64 multiply-adds
 * where the f32 path's FMA does 16. The step of w8 is the product of the group's largest p and
 * largest d over 255 (i8_weights), so the rounding of w (at most about half a step) is the only
 * difference from the f32 path: test_attn bounds it. */

/* the buffers' sizes (cpu_attn_simd_pd_floats) and i8_products count on two groups of 32 cells a block */
_Static_assert(ATTN_FB == 64, "the integer V pass's groups: 32 cells, two a block");

/* The visible cells' V quants transposed for vpdpbusd, once per block for all tiles: quad q (cells
 * 4q..4q + 3 of idx, the last repeated past nv) and block b at vt + (q * nbv + b) * 128, two zmm
 * whose dword i holds the 4 cells' quants of one dimension: zmm 0 dims 0-3, 16-19, 4-7, 20-23,
 * zmm 1 dims 8-11, 24-27, 12-15, 28-31 (vpunpck order, which the output keeps until attn_i8_order_z).
 * Also the block scales as floats (dvf[b * ATTN_FB + k]), unless the score pass wrote them (j->dvk). */
void attn_vt_z(const attn_job *j, const int *idx, int nv) {
    const int nbv = j->dv / 32, nq = (nv + 3) / 4;
    for (int k0 = 0; k0 < nv && !j->dvk; k0 += 8) { /* 8 cells' scales a conversion (past nv: the last cell's) */
        const uint8_t *r[8];
        for (int i = 0; i < 8; i++) r[i] = j->Vh + (size_t)idx[k0 + i < nv ? k0 + i : nv - 1] * j->vrb;
        for (int b = 0; b < nbv; b++) {
            const size_t o = (size_t)b * ATTN_Q8B;
            const __m128i h = _mm_setr_epi16((short)attn_ld16(r[0] + o), (short)attn_ld16(r[1] + o), (short)attn_ld16(r[2] + o),
                                             (short)attn_ld16(r[3] + o), (short)attn_ld16(r[4] + o), (short)attn_ld16(r[5] + o),
                                             (short)attn_ld16(r[6] + o), (short)attn_ld16(r[7] + o));
            _mm256_storeu_ps(j->dvf + (size_t)b * ATTN_FB + k0, _mm256_cvtph_ps(h));
        }
    }
    for (int q = 0; q < nq; q++) {
        const uint8_t *r[4];
        for (int i = 0; i < 4; i++) r[i] = j->Vh + (size_t)idx[4 * q + i < nv ? 4 * q + i : nv - 1] * j->vrb + 2;
        uint8_t *d = j->vt + (size_t)q * nbv * 128;
        for (int b = 0; b < nbv; b++, d += 128) {
            const size_t o = (size_t)b * ATTN_Q8B;
            const __m256i r0 = _mm256_loadu_si256((const __m256i *)(r[0] + o));
            const __m256i r1 = _mm256_loadu_si256((const __m256i *)(r[1] + o));
            const __m256i r2 = _mm256_loadu_si256((const __m256i *)(r[2] + o));
            const __m256i r3 = _mm256_loadu_si256((const __m256i *)(r[3] + o));
            const __m256i a = _mm256_unpacklo_epi8(r0, r1), bb = _mm256_unpackhi_epi8(r0, r1);
            const __m256i c = _mm256_unpacklo_epi8(r2, r3), dd = _mm256_unpackhi_epi8(r2, r3);
            _mm256_storeu_si256((__m256i *)d, _mm256_unpacklo_epi16(a, c));
            _mm256_storeu_si256((__m256i *)(d + 32), _mm256_unpackhi_epi16(a, c));
            _mm256_storeu_si256((__m256i *)(d + 64), _mm256_unpacklo_epi16(bb, dd));
            _mm256_storeu_si256((__m256i *)(d + 96), _mm256_unpackhi_epi16(bb, dd));
        }
    }
}

/* The decode kernel's V block scales for i8_weights, from dvf (after attn_vt_z or the score pass wrote
 * it): per group of 32 listed cells and block, the largest scale dm and the scales as fractions of it,
 * d15[(g * nbv + b) * 32 + cell] = d * 32767 / dm (cells past nv: 0). */
void attn_d15_z(const attn_job *j, int nv) {
    const int nbv = j->dv / 32;
    for (int g = 0; g < (nv + 31) / 32; g++) {
        const int v = nv - 32 * g;
        const __mmask16 m0 = v >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << v) - 1);
        const __mmask16 m1 = v >= 32 ? (__mmask16)0xffff : v <= 16 ? (__mmask16)0 : (__mmask16)((1u << (v - 16)) - 1);
        for (int b = 0; b < nbv; b++) {
            const float *dv = j->dvf + (size_t)b * ATTN_FB + 32 * g;
            const __m512 d0 = _mm512_maskz_loadu_ps(m0, dv), d1 = _mm512_maskz_loadu_ps(m1, dv + 16);
            const float dm = _mm512_reduce_max_ps(_mm512_max_ps(d0, d1));
            const __m512 inv = _mm512_set1_ps(dm > 0.0f ? ATTN_I8_D15 / dm : 0.0f);
            int16_t *o = j->d15 + ((size_t)g * nbv + b) * 32;
            j->dm[g * nbv + b] = dm;
            _mm256_storeu_si256((__m256i *)o, _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(d0, inv))));
            _mm256_storeu_si256((__m256i *)(o + 16), _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(d1, inv))));
        }
    }
}

/* The probability rows of listed cells k, k + 1 (P + (idx[k] - c0) * 8, 8 floats each) as one
 * vector; lanes of a cell at or past nv: fill (nothing read there). C: the listed cells are
 * consecutive (every decode step over one sequence), so the two rows are one load. */
ATTN_AI __m512 pair_ld(const bool C, const float *P, int c0, const int *idx, int k, int nv, __m512 fill) {
    if (C && k + 1 < nv) return _mm512_loadu_ps(P + (size_t)(idx[0] - c0 + k) * 8);
    if (k >= nv) return fill;
    const float *r0 = P + (size_t)(idx[k] - c0) * 8;
    if (k + 1 >= nv) return _mm512_mask_loadu_ps(fill, (__mmask16)0x00ff, r0);
    const __m256i lo = _mm256_castps_si256(_mm256_load_ps(r0));
    const __m256i hi = _mm256_castps_si256(_mm256_load_ps(P + (size_t)(idx[k + 1] - c0) * 8));
    return _mm512_castsi512_ps(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
}

/* Whether the nv listed cells (ascending) are consecutive. */
static inline bool consecutive(const int *idx, int nv) { return idx[nv - 1] - idx[0] == nv - 1; }

/* pair_ld's rows (k < nv) written back from v. */
ATTN_AI void pair_st(const bool C, float *P, int c0, const int *idx, int k, int nv, __m512 v) {
    float *r0 = P + (size_t)(idx[C ? 0 : k] - c0 + (C ? k : 0)) * 8;
    if (k + 1 >= nv) {
        _mm256_store_ps(r0, _mm512_castps512_ps256(v));
    } else if (C) {
        _mm512_storeu_ps(r0, v);
    } else {
        _mm256_store_ps(r0, _mm512_castps512_ps256(v));
        _mm256_store_ps(P + (size_t)(idx[k + 1] - c0) * 8, _mm512_extractf32x8_ps(v, 1));
    }
}

/* The 8-bit weights of a tile (lanes: heads) for the nv listed cells idx[] (P's rows idx[k] - c0):
 * per group of 32 listed cells and V block b, w(c) = p(c) * d(c, b) as the product of two 15-bit
 * fractions, p of its head's largest p in the group (Pm) and d of the block's largest d there (Dm,
 * attn_d15_z's d15), rounded twice with vpmulhrsw: once to 15 bits, once to 0..255. A weight's step
 * is then Pm * Dm / 255 (vsc[(g * nbv + b) * 8 + lane], 0 for no weight), no finer than the largest
 * w's own (which a per-block max and division gave, at four times the instructions: the rounding
 * of p * d was a fifth of an MLA call). The weights of quad q (4 cells) are one dword per head at
 * wq[(q * nbv + b) * 8 + lane], for every quad of the last group too (cells past nv: weight 0, as
 * i8_products runs whole groups). */

ATTN_AI void i8_weights_g(const bool C, const attn_job *j, int c0, const int *idx, int nv, const float *P, int g) {
    const int nbv = j->dv / 32, k0 = 32 * g;
    __m512 pr[16]; /* row pairs: cells k0 + 2i, k0 + 2i + 1 */
    for (int i = 0; i < 16; i++) {
        const int v = nv - (k0 + 2 * i);
        const __mmask16 mk = v >= 2 ? (__mmask16)0xffff : v == 1 ? (__mmask16)0x00ff : (__mmask16)0;
        pr[i] = C ? _mm512_maskz_loadu_ps(mk, P + (size_t)(idx[0] - c0 + k0 + 2 * i) * 8)
                  : _mm512_maskz_mov_ps(mk, pair_ld(false, P, c0, idx, k0 + 2 * i, nv, _mm512_setzero_ps()));
    }
    __m512 m[4];
    for (int u = 0; u < 4; u++) m[u] = _mm512_max_ps(_mm512_max_ps(pr[u], pr[u + 4]), _mm512_max_ps(pr[u + 8], pr[u + 12]));
    __m512 pm = _mm512_max_ps(_mm512_max_ps(m[0], m[1]), _mm512_max_ps(m[2], m[3]));
    pm = _mm512_max_ps(pm, _mm512_shuffle_f32x4(pm, pm, _MM_SHUFFLE(1, 0, 3, 2))); /* both halves: the heads' Pm */
    const __m512 inv = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(pm, _mm512_setzero_ps(), _CMP_GT_OQ), _mm512_set1_ps(ATTN_I8_P15), pm);
    /* the scales: Pm * Dm / 255, exactly the inverse of the two roundings' factors */
    const __m256 pk = _mm256_mul_ps(_mm512_castps512_ps256(pm), _mm256_set1_ps(ATTN_I8_SCALE));
    for (int b = 0; b < nbv; b++)
        _mm256_storeu_ps(j->vsc + ((size_t)g * nbv + b) * 8, _mm256_mul_ps(pk, _mm256_set1_ps(j->dm[g * nbv + b])));
    /* p15 of quad q: word h * 4 + c (head h, cell c of the quad), from packus' lane order */
    static const int16_t twi[32] = {0, 16, 4, 20, 1, 17, 5, 21, 2, 18, 6, 22, 3, 19, 7, 23,
                                    8, 24, 12, 28, 9, 25, 13, 29, 10, 26, 14, 30, 11, 27, 15, 31};
    const __m512i tw = _mm512_loadu_si512((const void *)twi);
    __m512i pw[8];
    for (int q = 0; q < 8; q++) {
        const __m512i a = _mm512_cvtps_epi32(_mm512_mul_ps(pr[2 * q], inv));
        const __m512i bb = _mm512_cvtps_epi32(_mm512_mul_ps(pr[2 * q + 1], inv));
        pw[q] = _mm512_permutexvar_epi16(tw, _mm512_packus_epi32(a, bb));
    }
    /* packus_epi16 of quads q, q + 1 -> the 8 heads' dwords of each */
    const __m512i perm = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    const __m512i c256 = _mm512_set1_epi16(256);
    const int16_t *d15 = j->d15 + (size_t)g * nbv * 32;
    uint32_t *wq = j->wq + (size_t)(k0 / 4) * nbv * 8;
    for (int b = 0; b < nbv; b++) {
        _Pragma("GCC unroll 4")
        for (int q = 0; q < 8; q += 2) {
            int64_t da, db;
            memcpy(&da, d15 + b * 32 + 4 * q, 8);
            memcpy(&db, d15 + b * 32 + 4 * q + 4, 8);
            const __m512i x = _mm512_mulhrs_epi16(_mm512_mulhrs_epi16(pw[q], _mm512_set1_epi64(da)), c256);
            const __m512i y = _mm512_mulhrs_epi16(_mm512_mulhrs_epi16(pw[q + 1], _mm512_set1_epi64(db)), c256);
            const __m512i o = _mm512_permutexvar_epi32(perm, _mm512_packus_epi16(x, y));
            _mm256_storeu_si256((__m256i *)(wq + ((size_t)q * nbv + b) * 8), _mm512_castsi512_si256(o));
            _mm256_storeu_si256((__m256i *)(wq + ((size_t)(q + 1) * nbv + b) * 8), _mm512_extracti64x4_epi64(o, 1));
        }
    }
}

static void i8_weights(const attn_job *j, int c0, const int *idx, int nv, const float *P) {
    const bool C = consecutive(idx, nv);
    for (int g = 0; g < (nv + 31) / 32; g++) {
        if (C) i8_weights_g(true, j, c0, idx, nv, P, g);
        else i8_weights_g(false, j, c0, idx, nv, P, g);
    }
}

/* The flash softmax's passes over a block's listed cells (pair_ld's rows), two rows a vector: their
 * lane-wise max, and e^(row - mn) in place (the exp of cpu_exp8) with l + their sum (in pairs of
 * rows, four chains: not the f32 V pass's cell order). */
ATTN_AI __m256 rows_max(const bool C, const float *S, int c0, const int *idx, int nv) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 m[4] = {ninf, ninf, ninf, ninf};
    int k = 0;
    if (C) /* whole 8-row steps: plain loads */
        for (const float *S0 = S + (size_t)(idx[0] - c0) * 8; k + 8 <= nv; k += 8)
            for (int u = 0; u < 4; u++) m[u] = _mm512_max_ps(m[u], _mm512_loadu_ps(S0 + (size_t)(k + 2 * u) * 8));
    for (; k < nv; k += 8)
        for (int u = 0; u < 4; u++) m[u] = _mm512_max_ps(m[u], pair_ld(C, S, c0, idx, k + 2 * u, nv, ninf));
    const __m512 x = _mm512_max_ps(_mm512_max_ps(m[0], m[1]), _mm512_max_ps(m[2], m[3]));
    return _mm256_max_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
}

ATTN_AI __m256 rows_exp(const bool C, float *S, int c0, const int *idx, int nv, __m256 mn, __m256 l) {
    const __m512 m16 = _mm512_shuffle_f32x4(_mm512_castps256_ps512(mn), _mm512_castps256_ps512(mn), _MM_SHUFFLE(1, 0, 1, 0));
    __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int k = 0; k < nv; k += 8)
        for (int u = 0; u < 4 && k + 2 * u < nv; u++) {
            const int kk = k + 2 * u;
            /* a lone last row: the upper lanes are m16's own (e^0), dropped by the mask */
            const __m512 p = _mm512_maskz_mov_ps(kk + 1 < nv ? (__mmask16)0xffff : (__mmask16)0x00ff,
                                                 attn_exp16(_mm512_sub_ps(pair_ld(C, S, c0, idx, kk, nv, m16), m16)));
            pair_st(C, S, c0, idx, kk, nv, p);
            s[u] = _mm512_add_ps(s[u], p);
        }
    const __m512 x = _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3]));
    return _mm256_add_ps(l, _mm256_add_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1)));
}

/* rows_exp with l's sum in cell order, a row at a time (the f32 V pass's order: attn_avx2.c's 8-lane
 * loop bit for bit), the exponentials still two rows a vector */
ATTN_AI __m256 cells_exp(const bool C, float *S, int c0, const int *idx, int nv, __m256 mn, __m256 l) {
    const __m512 m16 = _mm512_shuffle_f32x4(_mm512_castps256_ps512(mn), _mm512_castps256_ps512(mn), _MM_SHUFFLE(1, 0, 1, 0));
    for (int k = 0; k < nv; k += 2) {
        const __m512 p = attn_exp16(_mm512_sub_ps(pair_ld(C, S, c0, idx, k, nv, m16), m16));
        pair_st(C, S, c0, idx, k, nv, p);
        l = _mm256_add_ps(l, _mm512_castps512_ps256(p));
        if (k + 1 < nv) l = _mm256_add_ps(l, _mm512_extractf32x8_ps(p, 1));
    }
    return l;
}

__m256 attn_cells_exp_z(float *S, int c0, const int *idx, int nv, __m256 mn, __m256 l) {
    return consecutive(idx, nv) ? cells_exp(true, S, c0, idx, nv, mn, l) : cells_exp(false, S, c0, idx, nv, mn, l);
}

__m256 attn_rows_max_z(const float *S, int c0, const int *idx, int nv) {
    return consecutive(idx, nv) ? rows_max(true, S, c0, idx, nv) : rows_max(false, S, c0, idx, nv);
}

__m256 attn_rows_exp_z(float *S, int c0, const int *idx, int nv, __m256 mn, __m256 l) {
    return consecutive(idx, nv) ? rows_exp(true, S, c0, idx, nv, mn, l) : rows_exp(false, S, c0, idx, nv, mn, l);
}

/* out(r, block b) += the NR rows' sums over ng groups of 8 quads (32 cells), from vt and the
 * weights, with each group's scales: row r's weights of quad q and block b at
 * wq[(q * nbv + b) * ws + r], its scales of group g at vsc[(g * nbv + b) * ws + r], its output
 * at out + r * dv (the dimensions of a block in vt's order, which attn_i8_order_z puts back). */
ATTN_AI void i8_products(const int NR, const uint8_t *vt, int dv, int ng, const uint32_t *wq, size_t ws,
                         const float *vsc, float *out, attn_pf *pfp) {
    const int nbv = dv / 32;
    attn_pf pf = *pfp;
    for (int b = 0; b < nbv; b++) {
        for (int q0 = 0; q0 < 8 * ng; q0 += 8) {
            __m512i acc[8][2];
            for (int r = 0; r < NR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
            _Pragma("GCC unroll 8")
            for (int q = q0; q < q0 + 8; q++) {
                attn_pf_step(&pf);
                const uint8_t *v = vt + ((size_t)q * nbv + b) * 128;
                const __m512i v0 = _mm512_loadu_si512((const void *)v), v1 = _mm512_loadu_si512((const void *)(v + 64));
                const uint32_t *w = wq + ((size_t)q * nbv + b) * ws;
                for (int r = 0; r < NR; r++) {
                    const __m512i wb = _mm512_set1_epi32((int)w[r]);
                    acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], wb, v0);
                    acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], wb, v1);
                }
            }
            const float *sc = vsc + ((size_t)(q0 / 8) * nbv + b) * ws;
            for (int r = 0; r < NR; r++) {
                const __m512 f0 = _mm512_cvtepi32_ps(acc[r][0]), f1 = _mm512_cvtepi32_ps(acc[r][1]);
                const __m512 s = _mm512_set1_ps(sc[r]);
                float *o = out + (size_t)r * dv + 32 * b;
                _mm512_storeu_ps(o, _mm512_fmadd_ps(s, f0, _mm512_loadu_ps(o)));
                _mm512_storeu_ps(o + 16, _mm512_fmadd_ps(s, f1, _mm512_loadu_ps(o + 16)));
            }
        }
    }
    *pfp = pf;
}

void attn_i8_products_z(int nr, const uint8_t *vt, int dv, int ng, const uint32_t *wq, size_t ws, const float *vsc,
                        float *out, attn_pf *pf) {
#define I8P(N) i8_products(N, vt, dv, ng, wq, ws, vsc, out, pf)
    NH_SWITCH(nr, I8P)
#undef I8P
}

void attn_vacc_i8_z(const attn_job *j, int nh, int c0, const int *idx, int nv, const float *P, float *out) {
    i8_weights(j, c0, idx, nv, P);
    /* whole groups: i8_weights pads them; the prefetch cursor steps once per 4 cells of a V block;
     * inlined here with the constant stride (through attn_i8_products_z, best of 12 warm calls
     * 90.6 against 87.5 us; inlined 91.2 against 90.9) */
    const int ng = (nv + 31) / 32;
#define VI8(N) i8_products(N, j->vt, j->dv, ng, j->wq, 8, j->vsc, out, j->pf)
    NH_SWITCH(nh, VI8)
#undef VI8
}

void attn_i8_order_z(const attn_job *j, float *out) {
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    const __m512i hi = _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    for (size_t i = 0; i < (size_t)j->g * (size_t)j->dv; i += 32) {
        const __m512 f0 = _mm512_loadu_ps(out + i), f1 = _mm512_loadu_ps(out + i + 16);
        _mm512_storeu_ps(out + i, _mm512_permutex2var_ps(f0, lo, f1));
        _mm512_storeu_ps(out + i + 16, _mm512_permutex2var_ps(f0, hi, f1));
    }
}
