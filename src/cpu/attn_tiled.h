/*
 * attn_tiled.h — the decode kernel over the tiled q8_0 cache (attn_tiled_avx512.c; layout: attn.h).
 */
#ifndef MR_CPU_ATTN_TILED_H
#define MR_CPU_ATTN_TILED_H

#include "cpu/attn.h"

/* cpu_attn_head (ml NULL: normalized) or cpu_attn_head_part (ml: m then l of the 8 heads, out left
 * unnormalized) over the visible cells of [lo, hi), for a tiled cache with 8 query heads per KV head, on
 * AVX-512 VNNI CPUs (cpu_attn_tiled_ok), without a soft-cap. Always the flash algorithm (an online softmax
 * over blocks of 64 cells): without -fa too, the same attention to float rounding. prep: CPU_ATTN_TILED_PREP(dk) int32
 * for the queries' q8_0 form, which a call with prepped set finds there already (the same queries). */
#define CPU_ATTN_TILED_PREP(dk) ((size_t)80 * ((dk) / 32))
void cpu_attn_tiled_z(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, int seq, int lo, int hi,
                      float *out, float *ml, int32_t *prep, bool prepped);

#endif
