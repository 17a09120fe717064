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
