/*
 * attn_q8_avx2.c — the q8_0 K kernels of the AVX2 attention path
 * (attn_avx2.c drives them; layout in attn_vec.h): the queries quantized
 * once, and the scores of all heads of a tile computed with integer
 * multiply-adds, each K row read once.
 *
 * As llama.cpp: the query is converted to K's vec-dot type (q8_0, with
 * quant's rounding) and dotted with the q8_0 K rows block by block. The
 * quantized queries are interleaved into tiles of H heads: group gi holds
 * E = 32/H consecutive quants of every head of the tile, 32 bytes. The E
 * quants of a K row at the same position are broadcast to all head slots, and
 * one signed-byte multiply-add (maddubs of |q| with sign(k, q), then madd)
 * gives the partial dot products of all heads at once; a block's int32 sums
 * are exact. Per block and head the score accumulates (d_k * d_q) * isum in
 * f32, block by block (ggml's generic formula; quant's AVX2 kernel sums 8
 * lanes before the blocks meet, so scores differ from the generic attn.c path
 * by float rounding only). 4 cells at a time share the query loads.
 */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/attn_vec.h"
#include "quant/quant.h"

void attn_q8_prep(attn_job *j, const float *q) {
    const int H = j->H, E = 32 / H, dk = j->dk, nbk = dk / 32;
    uint8_t row[(CPU_ATTN_SIMD_MAX_D / 32) * ATTN_Q8B];
    for (int t = 0; t < j->ntile; t++) {
        uint8_t *qt = j->qt + (size_t)t * dk * 8, *aqt = j->aqt + (size_t)t * dk * 8;
        float *dq = j->dq + (size_t)t * nbk * 8;
        memset(qt, 0, (size_t)dk * H);
        memset(dq, 0, sizeof(float) * (size_t)nbk * 8);
        for (int h = 0; h < attn_tile_heads(j, t); h++) {
            quant_quantize_row(MR_TYPE_Q8_0, q + (size_t)(8 * t + h) * dk, row, dk);
            for (int b = 0; b < nbk; b++) {
                const uint8_t *blk = row + (size_t)b * ATTN_Q8B;
                dq[b * 8 + h] = _cvtsh_ss(attn_ld16(blk));
                /* element i = b * 32 + e: group i / E, bytes i % E.. of head h's slot (E consecutive) */
                for (int e = 0; e < 32; e += E) memcpy(qt + (size_t)((b * 32 + e) / E) * 32 + h * E, blk + 2 + e, (size_t)E);
            }
        }
        int i = 0;
        for (; i + 32 <= dk * H; i += 32)
            _mm256_storeu_si256((__m256i *)(aqt + i), _mm256_abs_epi8(_mm256_loadu_si256((const __m256i *)(qt + i))));
        for (; i < dk * H; i++) aqt[i] = (uint8_t)abs((int8_t)qt[i]);
    }
}

#define ATTN_Q8_VNNI 0
#define ATTN_Q8_SCORES attn_q8_scores
#include "cpu/attn_q8_kern.h"
