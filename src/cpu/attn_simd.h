/*
 * attn_simd.h — private to src/cpu: SIMD attention paths chosen by attn.c at
 * run time (attn_avx2.c: standard and flash attention over an f16 K/V cache).
 */
#ifndef MR_CPU_ATTN_SIMD_H
#define MR_CPU_ATTN_SIMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu/attn.h"
#include "quant/types.h"

#define CPU_ATTN_SIMD_MAX_G 64 /* query heads per KV head */
#define CPU_ATTN_SIMD_BLK 32   /* cells converted to f32 at a time (16 KB at head size 128) */
/* Floats of the extra scratch (ext) the paths below need. */
#define CPU_ATTN_SIMD_EXT(dk, dv, g) ((size_t)CPU_ATTN_SIMD_BLK * ((dk) > (dv) ? (dk) : (dv)) + 2 * (size_t)(g) + 16)

/* Whether the f16 paths below handle these arguments (not ref, f16 K and V,
 * no v_in_k, head sizes multiples of 8, <= 512). The caller also checks that
 * the CPU has AVX2+FMA+F16C. scratch: the start of cpu_attn_head's scratch
 * (scores: g x n_cells, or g x CPU_ATTN_SIMD_BLK for flash); ext:
 * CPU_ATTN_SIMD_EXT floats that overlap nothing else (K/V rows, m, l). */
bool cpu_attn_f16_ok(const cpu_attn_args *a);
/* Flash attention of the g query heads of KV head kvh over cells [lo, hi)
 * (the visible range; invisible cells inside are masked): q (g, dk) already
 * rounded as the f16 K wants; out (g, dv). */
void cpu_attn_flash_f16_avx2(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, int seq, int lo, int hi,
                             float *out, float *scratch, float *ext);
/* The standard path (exact softmax over [lo, hi), probabilities rounded to
 * f16 before they meet V, as ggml) with the same SIMD dot products. */
void cpu_attn_std_f16_avx2(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, int seq, int lo, int hi,
                           float *out, float *scratch, float *ext);

#endif
