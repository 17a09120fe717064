/*
 * mm_ops.h — several matmuls over already-quantized activations run as ONE
 * thread-pool job (one barrier), split into row chunks that the threads claim
 * through an atomic counter (a descheduled thread holds at most one chunk).
 *
 * Used by cpu_matmul (one op), cpu_matmul_multi (q/k/v, gate/up: several
 * weights sharing one quantized input) and the MoE kernel (moe.c).
 */
#ifndef MR_CPU_MM_OPS_H
#define MR_CPU_MM_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "cpu/cpu.h"

/* y[c*ys + r] = dot(row r of w, column c) for r in [0, m), c in [0, nc).
 * Column c of the activations is at (char *)xq + c*xs, quantized into
 * quant_vec_dot_type(type). */
typedef struct {
    uint32_t type;
    int64_t k, m;
    size_t ws;          /* row bytes */
    const void *w;      /* row 0 */
    const void *xq;
    size_t xs;
    int64_t nc;
    float *y;
    int64_t ys;
} cpu_mm_op;

/* Rows per work chunk for an op (a multiple of 16; enough chunks that nth
 * threads balance, large enough that claiming costs nothing). */
int64_t cpu_mm_chunk_rows(size_t ws, int64_t nc, int64_t m, int nth);

/* Run ops[0..n) as one job on mm's pool (single-threaded, scalar kernels
 * when mm->ref). Does not count bytes_read. */
void cpu_mm_run_ops(cpu_mm *mm, const cpu_mm_op *ops, int n);

/* One matmul rows [r0, r1) over columns [c0, c1) of op, in column blocks that
 * stay in L2 (the kernel call of cpu_mm_run_ops). */
void cpu_mm_op_rows(const cpu_mm_op *op, int64_t r0, int64_t r1, int64_t c0, int64_t c1, int ref);

/* Quantize T rows of x (row stride x_stride floats, k each) into the vec-dot
 * type of weight type wtype: row t at (char *)dst + t * mr_row_size(vt, k)
 * (F16/BF16 weights: floats rounded to that type, as ggml). Multi-threaded
 * on mm's pool when T > 1. */
void cpu_mm_quantize(cpu_mm *mm, uint32_t wtype, int64_t k, const float *x, int64_t x_stride, int64_t T,
                     void *dst);
/* The same for one row, inline (any thread). */
void cpu_mm_quantize_row(uint32_t wtype, const float *x, void *dst, int64_t k);

/* Grow *buf (64-byte aligned) to at least need bytes. 0, or -1 with an error. */
int cpu_mm_reserve(void **buf, size_t *cap, size_t need);

#endif
