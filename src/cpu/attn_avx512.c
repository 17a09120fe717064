/*
 * attn_avx512.c — AVX-512 kernels of the SIMD attention path (attn_avx2.c drives them where
 * the CPU has AVX512F/BW/VL and AVX512_VNNI; declarations in attn_vec.h): the q8_0 K scores
 * with vpdpbusd (attn_q8_kern.h), and the V accumulation on 512-bit vectors.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/attn_vec.h"

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
