/*
 * types.h — on-disk tensor types (the ggml/GGUF type ids) and their block traits.
 *
 * The ids are GGUF's and append-only. A type is "known" when its block size
 * and bytes per block are listed here (so the GGUF reader can size tensors);
 * whether we can compute with it is a separate question (quant.h).
 */
#ifndef MR_TYPES_H
#define MR_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    MR_TYPE_F32 = 0,
    MR_TYPE_F16 = 1,
    MR_TYPE_Q4_0 = 2,
    MR_TYPE_Q4_1 = 3,
    MR_TYPE_Q5_0 = 6,
    MR_TYPE_Q5_1 = 7,
    MR_TYPE_Q8_0 = 8,
    MR_TYPE_Q8_1 = 9,
    MR_TYPE_Q2_K = 10,
    MR_TYPE_Q3_K = 11,
    MR_TYPE_Q4_K = 12,
    MR_TYPE_Q5_K = 13,
    MR_TYPE_Q6_K = 14,
    MR_TYPE_Q8_K = 15,
    MR_TYPE_IQ2_XXS = 16,
    MR_TYPE_IQ2_XS = 17,
    MR_TYPE_IQ3_XXS = 18,
    MR_TYPE_IQ1_S = 19,
    MR_TYPE_IQ4_NL = 20,
    MR_TYPE_IQ3_S = 21,
    MR_TYPE_IQ2_S = 22,
    MR_TYPE_IQ4_XS = 23,
    MR_TYPE_I8 = 24,
    MR_TYPE_I16 = 25,
    MR_TYPE_I32 = 26,
    MR_TYPE_I64 = 27,
    MR_TYPE_F64 = 28,
    MR_TYPE_IQ1_M = 29,
    MR_TYPE_BF16 = 30,
    MR_TYPE_TQ1_0 = 34,
    MR_TYPE_TQ2_0 = 35,
    MR_TYPE_MXFP4 = 39,
    MR_TYPE_COUNT = 40
} mr_type;

/* Internal types, never in a file (the GGUF reader and writer refuse them): the
 * GGUF type t with 8 rows interleaved per block (256 elements for the K-quants,
 * 32 for Q4_0 Q4_1 Q5_0 Q5_1 Q8_0) for the SIMD kernels (quant_repack.c). Same bytes per row as t, so row counts, sizes and
 * the byte offsets of every 8th row are unchanged. Two kernel families share
 * the layout: MR_TYPE_R8_BASE + t computes exactly the float operations of the
 * GGUF-layout kernels (results bit-identical), MR_TYPE_R8F_BASE + t sums each
 * sub-block in int16 first (about half the multiplies; float rounding order
 * differs, -rtr). Q2_K, Q3_K, IQ4_XS and the 32-element block types have only the fast form. */
#define MR_TYPE_R8_BASE 64
#define MR_TYPE_R8F_BASE 96
enum {
    MR_TYPE_Q4_K_R8 = MR_TYPE_R8_BASE + MR_TYPE_Q4_K,
    MR_TYPE_Q5_K_R8 = MR_TYPE_R8_BASE + MR_TYPE_Q5_K,
    MR_TYPE_Q6_K_R8 = MR_TYPE_R8_BASE + MR_TYPE_Q6_K,
    MR_TYPE_Q4_K_R8F = MR_TYPE_R8F_BASE + MR_TYPE_Q4_K,
    MR_TYPE_Q5_K_R8F = MR_TYPE_R8F_BASE + MR_TYPE_Q5_K,
    MR_TYPE_Q6_K_R8F = MR_TYPE_R8F_BASE + MR_TYPE_Q6_K,
    MR_TYPE_Q4_0_R8F = MR_TYPE_R8F_BASE + MR_TYPE_Q4_0,
    MR_TYPE_Q4_1_R8F = MR_TYPE_R8F_BASE + MR_TYPE_Q4_1,
    MR_TYPE_Q5_0_R8F = MR_TYPE_R8F_BASE + MR_TYPE_Q5_0,
    MR_TYPE_Q5_1_R8F = MR_TYPE_R8F_BASE + MR_TYPE_Q5_1,
    MR_TYPE_Q8_0_R8F = MR_TYPE_R8F_BASE + MR_TYPE_Q8_0,
    MR_TYPE_Q3_K_R8F = MR_TYPE_R8F_BASE + MR_TYPE_Q3_K,
    MR_TYPE_Q2_K_R8F = MR_TYPE_R8F_BASE + MR_TYPE_Q2_K,
    MR_TYPE_IQ4_XS_R8F = MR_TYPE_R8F_BASE + MR_TYPE_IQ4_XS,
};
#define MR_TYPE_ALL 128 /* table size for every id, internal ones included */

/* Whether t is an internal row-interleaved type, and the GGUF type it holds. */
static inline bool mr_type_is_r8(uint32_t t) { return t >= MR_TYPE_R8_BASE && t < MR_TYPE_ALL; }
static inline uint32_t mr_type_base(uint32_t t) {
    return t >= MR_TYPE_R8F_BASE && t < MR_TYPE_ALL ? t - MR_TYPE_R8F_BASE : t >= MR_TYPE_R8_BASE ? t - MR_TYPE_R8_BASE : t;
}

typedef struct {
    const char *name; /* "Q4_K" */
    uint32_t blck;    /* elements per block */
    uint32_t tsize;   /* bytes per block */
} mr_type_traits;

/* Traits for a type id (GGUF or internal), or NULL if the id is unknown. */
const mr_type_traits *mr_type_get(uint32_t type);
const char *mr_type_name(uint32_t type); /* "?" for unknown */
/* Bytes of a row of n elements (n must be a multiple of blck), 0 for unknown types. */
size_t mr_row_size(uint32_t type, int64_t n);
/* Parse "f16", "q8_0", ... (case-insensitive); -1 if unknown. */
int mr_type_from_name(const char *s);
/* F32, F16, BF16: weights read as floats (no block quantization). */
static inline bool mr_type_is_float(uint32_t t) { return t == MR_TYPE_F32 || t == MR_TYPE_F16 || t == MR_TYPE_BF16; }

#define QK_K 256

/* fp16 <-> fp32 (IEEE half), portable. */
float mr_fp16_to_fp32(uint16_t h);
uint16_t mr_fp32_to_fp16(float f);
float mr_bf16_to_fp32(uint16_t h);
uint16_t mr_fp32_to_bf16(float f);

#endif
