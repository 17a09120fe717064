/*
 * attn_bf16_avx512.c — decode attention over an f16 cache in bf16 products (AVX512_BF16:
 * vdpbf16ps), for CPUs that have it (Zen 4/5, Sapphire Rapids and later); attn_avx2.c drives it
 * (j->bf) where K and V are f16, the KV group's heads fill whole 8-head tiles and V is wide
 * (MLA's 512-wide latent: cpu_attn_bf16, attn.h). Built with the AVX-512 flags plus -mavx512bf16.
 *
 * vdpbf16ps multiplies pairs of bf16 and adds both products to an f32 lane: 16 multiply-adds per
 * 256-bit instruction, where an f32 FMA does 8, at the same issue rate on Zen 4. Heads stay
 * vector lanes (8 per tile, 256-bit vectors, so a tile's results do not depend on the tiles
 * beside it: a call split into head slices gives the whole call's output bit for bit):
 *  - scores: the queries as bf16 dimension pairs per head (qb[t][i / 2][lane]); per 16 cells the
 *    K rows are converted to bf16 once for every tile (vcvtph2ps, vcvtne2ps2bf16), then each
 *    cell's dimension pair is broadcast against the tile's query pairs, 16 cells in 16
 *    accumulators (independent chains);
 *  - V: per block the visible cells' V rows are converted to bf16 and interleaved in cell pairs
 *    (vp[k / 2][d]: V[cell 2k'][d] in the low half, V[cell 2k' + 1][d] in the high), the
 *    probabilities of a tile likewise (pp[k / 2][lane]); one vdpbf16ps adds two cells for the
 *    8 heads of a dimension. The output accumulates transposed in the tile's own rows of out
 *    ([d][8 heads]), which attn_bf_order puts back once per call.
 * Rounding: a bf16 keeps 8 significant bits, so each product is within about 2^-8 of its f32
 * value (test_attn checks every output against a bound built from that); sums stay f32.
 */
#include <math.h>
#include <string.h>

#include "cpu/attn_vec.h"

#define BF_CELLS 16 /* cells per score step (the accumulators) */
#define BF_ND 16    /* output dimensions per V step */
#define KB_STRIDE ATTN_BF_KB_STRIDE /* bf16 per converted K row: a constant, so the 16 rows' pairs are */
                                    /* one base and index apart (and not 4 KiB apart: L1 sets) */
#define VP_CHUNK (ATTN_FB / 2 * BF_ND) /* dwords of vp per BF_ND dimensions: the block's pairs in order */

/* An f16 row of n (a multiple of 32) values as bf16 at d. */
ATTN_AI void row_bf16(const uint16_t *r, int n, uint16_t *d) {
    for (int i = 0; i < n; i += 32) {
        const __m512 a = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + i)));
        const __m512 b = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + i + 16)));
        _mm512_storeu_si512((void *)(d + i), (__m512i)_mm512_cvtne2ps_pbh(b, a)); /* a in the low words */
    }
}

void attn_bf_scores(const attn_job *j, int c0, int n, const int *idx, int nv, float *S, size_t ts) {
    const int dk = j->dk, d2 = dk / 2;
    const __m256 sc = _mm256_set1_ps(j->scale), ninf = _mm256_set1_ps(-INFINITY);
    attn_pf pf = *j->pf;
    if (nv < n)
        for (int t = 0; t < j->ntile; t++)
            for (int c = 0; c < n; c++) _mm256_store_ps(S + t * ts + (size_t)c * 8, ninf);
    for (int k = 0; k < nv; k += BF_CELLS) {
        const int nc = nv - k < BF_CELLS ? nv - k : BF_CELLS;
        for (int c = 0; c < BF_CELLS; c++) /* past nv: the last cell again (finite, not stored) */
            row_bf16((const uint16_t *)(j->Kh + (size_t)idx[k + (c < nc ? c : nc - 1)] * j->krb), dk,
                     j->kb + (size_t)c * KB_STRIDE);
        const uint32_t *kb = (const uint32_t *)j->kb;
        for (int t = 0; t < j->ntile; t++) {
            attn_pf_step(&pf);
            const uint32_t *qb = j->qb + (size_t)t * d2 * 8;
            __m256 acc[BF_CELLS];
            for (int c = 0; c < BF_CELLS; c++) acc[c] = _mm256_setzero_ps();
            for (int i2 = 0; i2 < d2; i2++) {
                const __m256bh qv = (__m256bh)_mm256_load_si256((const __m256i *)(qb + (size_t)i2 * 8));
                _Pragma("GCC unroll 16")
                for (int c = 0; c < BF_CELLS; c++)
                    acc[c] = _mm256_dpbf16_ps(acc[c], qv, (__m256bh)_mm256_set1_epi32((int)kb[c * (KB_STRIDE / 2) + i2]));
            }
            for (int c = 0; c < nc; c++) {
                float *o = S + t * ts + (size_t)(idx[k + c] - c0) * 8;
                _mm256_store_ps(o, _mm256_mul_ps(acc[c], sc));
                if (j->softcap > 0.0f)
                    for (int h = 0; h < 8; h++) o[h] = j->softcap * tanhf(o[h] / j->softcap);
            }
        }
    }
    *j->pf = pf;
}

/* interleave the 16 low and 16 high words of a vector: dword x = (word x, word 16 + x) */
static inline __m512i zip16(__m512i z) {
    const __m512i ix = _mm512_setr_epi32(0x00100000, 0x00110001, 0x00120002, 0x00130003, 0x00140004, 0x00150005,
                                         0x00160006, 0x00170007, 0x00180008, 0x00190009, 0x001A000A, 0x001B000B,
                                         0x001C000C, 0x001D000D, 0x001E000E, 0x001F000F);
    return _mm512_permutexvar_epi16(ix, z);
}

void attn_bf_vpairs(const attn_job *j, const int *idx, int nv) {
    const int dv = j->dv;
    for (int k = 0; k < nv; k += 2) {
        const uint16_t *ra = (const uint16_t *)(j->Vh + (size_t)idx[k] * j->vrb);
        const uint16_t *rb = (const uint16_t *)(j->Vh + (size_t)idx[k + 1 < nv ? k + 1 : k] * j->vrb); /* weight 0 */
        uint32_t *d = j->vp + (size_t)(k / 2) * BF_ND;
        for (int i = 0; i < dv; i += 16, d += VP_CHUNK) {
            const __m512 a = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ra + i)));
            const __m512 b = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(rb + i)));
            _mm512_storeu_si512((void *)d, zip16((__m512i)_mm512_cvtne2ps_pbh(b, a)));
        }
    }
}

void attn_bf_vacc(const attn_job *j, int t, int c0, const int *idx, int nv, const float *P, float *out) {
    const int dv = j->dv, np = (nv + 1) / 2;
    const __m256i ix = _mm256_setr_epi32(0x00080000, 0x00090001, 0x000A0002, 0x000B0003, 0x000C0004, 0x000D0005,
                                         0x000E0006, 0x000F0007);
    for (int k = 0; k < nv; k += 2) { /* the probability pairs, lanes = heads */
        const __m256 a = _mm256_load_ps(P + (size_t)(idx[k] - c0) * 8);
        const __m256 b = k + 1 < nv ? _mm256_load_ps(P + (size_t)(idx[k + 1] - c0) * 8) : _mm256_setzero_ps();
        const __m256i z = _mm256_castsi128_si256((__m128i)_mm256_cvtneps_pbh(a));
        const __m256i zb = _mm256_castsi128_si256((__m128i)_mm256_cvtneps_pbh(b));
        _mm256_store_si256((__m256i *)(j->pp + (size_t)(k / 2) * 8),
                           _mm256_permutexvar_epi16(ix, _mm256_inserti128_si256(z, _mm256_castsi256_si128(zb), 1)));
    }
    float *o = out + (size_t)8 * t * dv; /* [d][8] */
    attn_pf pf = *j->pf;
    for (int d0 = 0; d0 < dv; d0 += BF_ND) {
        attn_pf_step(&pf);
        __m256 acc[BF_ND];
        for (int u = 0; u < BF_ND; u++) acc[u] = _mm256_loadu_ps(o + (size_t)(d0 + u) * 8);
        for (int k2 = 0; k2 < np; k2++) {
            const __m256bh p = (__m256bh)_mm256_load_si256((const __m256i *)(j->pp + (size_t)k2 * 8));
            const uint32_t *v = j->vp + (size_t)(d0 / BF_ND) * VP_CHUNK + (size_t)k2 * BF_ND;
            _Pragma("GCC unroll 16")
            for (int u = 0; u < BF_ND; u++) acc[u] = _mm256_dpbf16_ps(acc[u], p, (__m256bh)_mm256_set1_epi32((int)v[u]));
        }
        for (int u = 0; u < BF_ND; u++) _mm256_storeu_ps(o + (size_t)(d0 + u) * 8, acc[u]);
    }
    *j->pf = pf;
}

void attn_bf_rescale(const attn_job *j, int t, __m256 r, float *out) {
    float *o = out + (size_t)8 * t * j->dv;
    for (int d = 0; d < j->dv; d++) _mm256_storeu_ps(o + (size_t)d * 8, _mm256_mul_ps(_mm256_loadu_ps(o + (size_t)d * 8), r));
}

/* 8 x 8 floats: rows in r[] -> columns */
static inline void tr8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20), r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20), r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31), r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31), r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

void attn_bf_order(const attn_job *j, float *out) {
    const int dv = j->dv;
    float *tmp = (float *)j->vp; /* the V pairs are done with */
    for (int t = 0; t < j->ntile; t++) {
        float *o = out + (size_t)8 * t * dv;
        memcpy(tmp, o, sizeof(float) * 8 * (size_t)dv);
        for (int d0 = 0; d0 < dv; d0 += 8) {
            __m256 r[8];
            for (int x = 0; x < 8; x++) r[x] = _mm256_loadu_ps(tmp + (size_t)(d0 + x) * 8);
            tr8(r);
            for (int h = 0; h < 8; h++) _mm256_storeu_ps(o + (size_t)h * dv + d0, r[h]);
        }
    }
}

/* The queries of each tile as bf16 dimension pairs, [dk / 2][8 heads]: per
 * head converted 32 values at a time into kb (free until the scores), then transposed 8 x 8. */
void attn_bf_prep(attn_job *j, const float *q) {
    const int dk = j->dk, d2 = dk / 2;
    uint32_t *tmp = (uint32_t *)j->kb; /* 8 x d2 dwords */
    for (int t = 0; t < j->ntile; t++) {
        for (int h = 0; h < 8; h++) {
            const float *qh = q + (size_t)(8 * t + h) * dk; /* every tile whole: cpu_attn_bf16_takes */
            for (int i = 0; i < dk; i += 32)
                _mm512_storeu_si512((void *)(tmp + (size_t)h * d2 + i / 2),
                                    (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(qh + i + 16), _mm512_loadu_ps(qh + i)));
        }
        uint32_t *qb = j->qb + (size_t)t * d2 * 8;
        for (int i2 = 0; i2 < d2; i2 += 8) {
            __m256 r[8];
            for (int h = 0; h < 8; h++) r[h] = _mm256_loadu_ps((const float *)(tmp + (size_t)h * d2 + i2));
            tr8(r);
            for (int x = 0; x < 8; x++) _mm256_store_ps((float *)(qb + (size_t)(i2 + x) * 8), r[x]);
        }
    }
}
