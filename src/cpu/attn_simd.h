/*
 * attn_simd.h — private to src/cpu: the SIMD attention path chosen by attn.c
 * at run time. cpu_attn_avx2 (attn_avx2.c, with the q8_0 K kernels of
 * attn_q8_avx2.c) does standard and flash attention over an f16 or q8_0 K
 * cache with an f16 or q8_0 V (or MLA's value inside K), reading each K and
 * V row once for all g query heads of its KV group (heads are vector lanes).
 */
#ifndef MR_CPU_ATTN_SIMD_H
#define MR_CPU_ATTN_SIMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu/attn.h"
#include "quant/types.h"

#define CPU_ATTN_SIMD_FB 64      /* cells per block (flash: the online-softmax block) */
#define CPU_ATTN_SIMD_MAX_D 1024 /* largest dk / dv */

/* Tiles of 8 query heads (vector lanes) for g heads per KV head. Score rows
 * hold 8 floats per tile and cell, so cpu_attn_head's score scratch has
 * 8 * tiles (>= g) rows. */
static inline int cpu_attn_simd_tiles(int g) { return (g + 7) / 8; }

/* Floats of the extra scratch (ext) cpu_attn_avx2 needs: the queries of the
 * tiles (f16 K: 8 x dk floats per tile; q8_0 K: quants and |quants|, 8 x dk
 * bytes each), q8_0 query scales (dk/32 x 8 per tile), running max and sum
 * (8 + 8 per tile), the folded probabilities of a block, the integer V
 * pass's buffers (FB x dv/32 x 12) or the bf16 pass's (dv >= CPU_ATTN_BF16_MIN_DV: FB/2 x (dv + 8) + 8 x (MAX_D + 64)):
 * pd_floats, the larger,
 * and its visible cells (FB ints). */
static inline size_t cpu_attn_simd_pd_floats(int dv) {
    const size_t fb = CPU_ATTN_SIMD_FB, pd = fb * (size_t)(dv / 32) * 12;
    const size_t bf = dv < CPU_ATTN_BF16_MIN_DV ? 0 : fb / 2 * (size_t)dv + fb / 2 * 8 + 8 * (size_t)(CPU_ATTN_SIMD_MAX_D + 64);
    return pd > bf ? pd : bf;
}
static inline size_t cpu_attn_simd_ext_floats(int dk, int dv, int g) {
    const size_t nt = (size_t)cpu_attn_simd_tiles(g);
    return nt * (size_t)dk * 8 + nt * (size_t)(dk / 32) * 8 + nt * 16 + cpu_attn_simd_pd_floats(dv) +
           CPU_ATTN_SIMD_FB + 16;
}

/* Whether cpu_attn_avx2 handles these arguments: not ref; K f16 (dk a
 * multiple of 8) or q8_0 (dk a multiple of 32); V f16 or q8_0, or inside K
 * (v_in_k, dv <= dk); dv a multiple of 32; dk, dv <= CPU_ATTN_SIMD_MAX_D.
 * The caller also checks that the CPU has AVX2+FMA+F16C. */
static inline bool cpu_attn_simd_ok(const cpu_attn_args *a) {
    if (a->ref || a->dk <= 0 || a->dv <= 0 || a->dk > CPU_ATTN_SIMD_MAX_D || a->dv > CPU_ATTN_SIMD_MAX_D || a->dv % 32)
        return false;
    if (a->k_type == MR_TYPE_F16 ? a->dk % 8 : a->k_type != MR_TYPE_Q8_0 || a->dk % 32) return false;
    if (a->v_in_k) return a->dv <= a->dk;
    return a->v_type == MR_TYPE_F16 || a->v_type == MR_TYPE_Q8_0;
}

/* Standard or flash attention (a->flash) of the g query heads of KV head kvh
 * over cells [lo, hi) (the visible range; invisible cells inside are
 * skipped): q (g, dk) the queries (for an f16 K already rounded to f16, as
 * ggml; a q8_0 K quantizes them here), out (g, dv). scratch: the score rows,
 * 8 * cpu_attn_simd_tiles(g) floats per cell of [lo, hi) (standard) or of a
 * block (flash), 32-byte aligned; ext: cpu_attn_simd_ext_floats() floats,
 * 64-byte aligned, overlapping nothing. ml (flash only, else NULL): the
 * output is left unnormalized and the heads' running max and sum are written
 * to ml (g floats each), as cpu_attn_head_part. Results differ from the generic path
 * of attn.c by float rounding only (test_attn). */
/* prepped: ext already holds these queries' prepared forms (the last call's, cpu_attn_args.q_tag) */
void cpu_attn_avx2(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, int seq, int lo, int hi, float *out,
                   float *ml, float *scratch, float *ext, bool prepped);

/* One head of cpu_attn_merge (AVX2 + FMA): o[i] = inv * sum over the np parts of w[p] * row_p[i] (row_p at
 * rows + p * stride; parts with w[p] == 0 skipped), dv a multiple of 8. */
void cpu_attn_merge_row_avx2(int dv, int np, const float *rows, size_t stride, const float *w, float inv, float *o);

/* dst[i] = src[i] rounded to f16 (F16C, to nearest even: mr_fp32_to_fp16). */
void cpu_attn_round_f16(const float *src, float *dst, size_t n);

/* For tests and benchmarks: whether cpu_attn_head takes the SIMD path for
 * these arguments on this machine (false under MOERUN_CPU=generic or
 * MOERUN_ATTN=scalar), and cpu_attn_head restricted to the generic path
 * (quant kernels and scalar loops, as with MOERUN_ATTN=scalar). */
bool cpu_attn_simd_path(const cpu_attn_args *a);
void cpu_attn_head_generic(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, int seq, float *out,
                           float *scratch);

#endif
