/*
 * matmul.c — the threaded matmul wrapper over src/quant.
 *
 * y (T, m) = x (T, k) @ W^T: the T activation rows are quantized once into
 * quant_vec_dot_type(W.type) (threads split the rows), then quant_matmul runs
 * over row chunks of W that the threads claim (matmul_ops.c), each chunk
 * reading its rows of W once for all T columns.
 */
#include <string.h>

#include "base/base.h"
#include "cpu/cpu.h"
#include "cpu/mm_ops.h"
#include "cpu/moe.h"
#include "quant/quant.h"

int cpu_matmul_s(cpu_mm *mm, const mr_weight *W, int64_t mat, const float *x, int64_t x_stride, int64_t T,
                 float *y, int64_t y_stride) {
    MR_ASSERT(W->data && mat >= 0 && mat < W->n_mat);
    const uint32_t vt = quant_vec_dot_type(W->type);
    MR_ASSERT(vt != (uint32_t)-1);
    cpu_mm_op op = {.type = W->type, .k = W->k, .m = W->m, .ws = W->row_bytes,
                    .w = (const char *)W->data + (size_t)mat * W->mat_bytes, .nc = T, .y = y, .ys = y_stride};
    if (vt == MR_TYPE_F32 && W->type == MR_TYPE_F32 && x_stride == W->k) {
        op.xq = x;
        op.xs = (size_t)W->k * sizeof(float);
    } else {
        op.xs = mr_row_size(vt, W->k);
        if (cpu_mm_reserve(&mm->xq, &mm->xq_cap, op.xs * (size_t)T)) return -1;
        cpu_mm_quantize(mm, W->type, W->k, x, x_stride, T, mm->xq);
        op.xq = mm->xq;
    }
    cpu_mm_run_ops(mm, &op, 1);
    mm->bytes_read += W->mat_bytes;
    return 0;
}

int cpu_matmul_heads(cpu_mm *mm, const mr_weight *W, const float *x, int64_t x_stride, int64_t x_head, int64_t T,
                     float *y, int64_t y_stride, int64_t y_head) {
    const int64_t H = W->n_mat;
    MR_ASSERT(W->data && H > 0);
    const uint32_t vt = quant_vec_dot_type(W->type);
    MR_ASSERT(vt != (uint32_t)-1);
    const size_t xs = mr_row_size(vt, W->k), per = (xs * (size_t)T + 63) & ~(size_t)63;
    if (cpu_mm_reserve(&mm->xq, &mm->xq_cap, per * (size_t)H)) return -1;
    for (int64_t h = 0; h < H; h++)
        cpu_mm_quantize(mm, W->type, W->k, x + h * x_head, x_stride, T, (char *)mm->xq + (size_t)h * per);
    cpu_mm_op ops[16];
    for (int64_t h0 = 0; h0 < H; h0 += 16) {
        const int n = (int)MR_MIN((int64_t)16, H - h0);
        for (int i = 0; i < n; i++) {
            const int64_t h = h0 + i;
            ops[i] = (cpu_mm_op){.type = W->type, .k = W->k, .m = W->m, .ws = W->row_bytes,
                                 .w = (const char *)W->data + (size_t)h * W->mat_bytes,
                                 .xq = (const char *)mm->xq + (size_t)h * per, .xs = xs, .nc = T,
                                 .y = y + h * y_head, .ys = y_stride};
        }
        cpu_mm_run_ops(mm, ops, n);
    }
    mm->bytes_read += (uint64_t)H * W->mat_bytes;
    return 0;
}

int cpu_matmul(cpu_mm *mm, const mr_weight *W, int64_t mat, const float *x, int64_t T, float *y) {
    return cpu_matmul_s(mm, W, mat, x, W->k, T, y, W->m);
}

int cpu_get_row(cpu_mm *mm, const mr_weight *W, int64_t r, float *out) {
    MR_ASSERT(W->data && r >= 0 && r < W->m);
    mm->bytes_read += W->row_bytes;
    return quant_dequant_row(W->type, (const char *)W->data + (size_t)r * W->row_bytes, out, W->k);
}

void cpu_mm_free(cpu_mm *mm) {
    cpu_moe_free(mm);
    mr_free_aligned(mm->xq);
    mm->xq = NULL;
    mm->xq_cap = 0;
}
