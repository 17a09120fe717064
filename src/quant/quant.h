/*
 * quant.h — block formats: dequantization, quantization and the dot-product
 * kernels (matrix x vector, matrix x several vectors) of the CPU forward pass.
 *
 * Types are the GGUF/ggml ids of types.h; block layouts are ggml's, bit for bit.
 *
 * How a matmul is done. A weight W (ne = {k, m}: m rows of k elements, row
 * stride mr_row_size(wtype, k) bytes) is multiplied with activations that are
 * first quantized once per matmul input, column by column, into the weight
 * type's "vec dot type" (quant_vec_dot_type):
 *
 *   weight type                               vec dot type (activations)
 *   Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 IQ4_NL           Q8_0  (32-blocks, fp16 scale)
 *   Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_XS           Q8_K  (256-blocks, f32 scale + bsums)
 *   F32 F16 BF16                              F32   (activations stay float)
 *
 *   size_t xs = mr_row_size(vt, k);                 // bytes of one quantized column
 *   quant_quantize_row(vt, x + c*k, xq + c*xs, k);  // for every column c
 *   quant_matmul(wtype, W, k, r0, r1, xq, xs, n_cols, y, m);
 *
 * Kernels are pure functions of their arguments: thread-safe, no allocation,
 * no error state. Threads split the rows [0, m) into ranges [r0, r1); every
 * thread writes only y[c*y_stride + r] for its own rows, so they can share y.
 * The SIMD kernels (AVX2+FMA: every supported weight type) are chosen at run
 * time from mr_cpu(); MOERUN_CPU=generic forces the scalar reference.
 */
#ifndef MR_QUANT_H
#define MR_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/types.h"

/* ---- dequantization / quantization ----------------------------------------- */

/* Whether quant_dequant_row() handles the type: F32 F16 BF16 Q4_0 Q4_1 Q5_0
 * Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K IQ4_NL IQ4_XS. */
bool quant_can_dequant(uint32_t type);

/* Decode n elements (a multiple of the type's block size) from src into dst.
 * Returns 0, or -1 with mr_geterr() naming the type when it is unsupported or
 * n is not a multiple of its block size. */
int quant_dequant_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Whether quant_quantize_row() can produce the type: F32 F16 BF16 Q8_0 Q8_K Q4_0. */
bool quant_can_quantize(uint32_t type);

/* Encode n floats (a multiple of the block size) into mr_row_size(type, n)
 * bytes at dst (ggml's reference rounding: Q8_0 d = amax/127; Q8_K d = amax/127
 * with bsums = sums of 16 quants; Q4_0 d = max/-8). Returns 0, or -1 with
 * mr_geterr() naming the type. */
int quant_quantize_row(uint32_t type, const float *x, void *dst, int64_t n);

/* ---- dot products -------------------------------------------------------------- */

/* Whether quant_matvec()/quant_matmul() accept W of this type. */
bool quant_supported(uint32_t wtype);

/* The type activations must be quantized into for a weight type (see the
 * table above); (uint32_t)-1 for unsupported weight types. */
uint32_t quant_vec_dot_type(uint32_t wtype);

/* Returns 0 when W of type wtype with rows of k elements can be multiplied
 * (type supported, k a positive multiple of its block size), else -1 with
 * mr_geterr() naming the type and k. Call it once when loading a tensor: the
 * kernels themselves do not check. */
int quant_check(uint32_t wtype, int64_t k);

/* y[r] = dot(W row r, x) for r in [r0, r1). W points at row 0 (not r0); its
 * row stride is mr_row_size(wtype, k). xq is one column of k activations
 * quantized with quant_vec_dot_type(wtype). y is indexed by absolute row. */
void quant_matvec(uint32_t wtype, const void *W, int64_t k, int64_t r0, int64_t r1,
                  const void *xq, float *y);

/* y[c*y_stride + r] = dot(W row r, column c) for r in [r0, r1), c in
 * [0, n_cols). Column c of the activations starts at (char*)xq + c*xq_stride
 * (bytes, normally mr_row_size(vec_dot_type, k)). Each weight row is read
 * once per few columns rather than once per column: use this for prompts. */
void quant_matmul(uint32_t wtype, const void *W, int64_t k, int64_t r0, int64_t r1,
                  const void *xq, size_t xq_stride, int64_t n_cols, float *y, int64_t y_stride);

/* ---- row-interleaved weights (quant_repack.c) ----------------------------------------------- */
/* A Q4_K, Q5_K or Q6_K weight of m rows of k elements (m a multiple of 8) can be
 * repacked into MR_TYPE_R8_BASE + t or MR_TYPE_R8F_BASE + t (types.h: the same layout,
 * exact or fast kernels), where each 256-block holds 8 rows interleaved for the SIMD
 * kernels: same bytes, same integer arithmetic. Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 (k at most
 * QUANT_R8_B32_MAX_K) have only the fast form, MR_TYPE_R8F_BASE + t, 8 rows per 32-block. Rows of an R8 weight are addressed in
 * groups of 8: quant_matmul() ranges start and end at multiples of 8 (or at m). */
bool quant_can_repack(uint32_t t, int64_t k, int64_t m);
#define QUANT_R8_B32_MAX_K 65536 /* the 32-block kernels keep per-block activation terms on the stack */
/* Repack m rows from src (type t) into dst (the R8 layout); dst may be src.
 * 0, or -1 with mr_geterr() (unsuitable type or shape, no memory). */
int quant_repack(uint32_t t, const void *src, void *dst, int64_t k, int64_t m);
/* The inverse: m rows of R8 type t8 back into mr_type_base(t8) blocks. */
int quant_unpack_r8(uint32_t t8, const void *src, void *dst, int64_t k, int64_t m);
/* Whether quant_matmul() has a SIMD kernel for R8 type t8 on this machine (repacking
 * only pays where it has). */
bool quant_r8_fast(uint32_t t8);

/* ---- kernel selection (tests, benchmarks, logs) -------------------------------------- */

/* VNNI: AVX512_VNNI + AVX512VL (256-bit vpdpbusd); fast R8 kernels only, bit-identical to
 * their AVX2 kernels. */
typedef enum { QUANT_ISA_AUTO = 0, QUANT_ISA_SCALAR = 1, QUANT_ISA_AVX2 = 2, QUANT_ISA_VNNI = 3 } quant_isa;

/* Whether an ISA-specific kernel exists for wtype and this CPU can run it
 * (QUANT_ISA_SCALAR: same as quant_supported). */
bool quant_isa_available(quant_isa isa, uint32_t wtype);
/* The ISA quant_matmul() uses for wtype on this machine. */
quant_isa quant_isa_selected(uint32_t wtype);
const char *quant_isa_name(quant_isa isa); /* "auto", "scalar", "avx2", "avx512vnni" */
/* quant_dequant_row() / quant_quantize_row() with a given ISA (AVX2 converters:
 * dequant F16 BF16 Q4_0 Q8_0 Q4_K Q6_K, quantize F16 Q8_0 Q8_K; their output is
 * bit-identical to the scalar reference). An unavailable one falls back to scalar. */
int quant_dequant_row_isa(quant_isa isa, uint32_t type, const void *src, float *dst, int64_t n);
int quant_quantize_row_isa(quant_isa isa, uint32_t type, const float *x, void *dst, int64_t n);
/* quant_matmul() with a given ISA; an unavailable one falls back to scalar. */
void quant_matmul_isa(quant_isa isa, uint32_t wtype, const void *W, int64_t k, int64_t r0, int64_t r1,
                      const void *xq, size_t xq_stride, int64_t n_cols, float *y, int64_t y_stride);

#endif
