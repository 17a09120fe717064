/*
 * matmul.c — the threaded matmul wrapper over src/quant.
 *
 * y (T, m) = x (T, k) @ W^T: the T activation rows are quantized once into
 * quant_vec_dot_type(W.type) (threads split the rows), then quant_matmul runs
 * over row ranges of W split across threads (16-row aligned), each thread
 * reading its slice of W once for all T columns.
 */
#include <string.h>

#include "base/base.h"
#include "cpu/cpu.h"
#include "quant/quant.h"

typedef struct {
    const mr_weight *W;
    const void *wdata;
    const float *x;
    int64_t x_stride, T;
    uint32_t vt;
    size_t xs;
    void *xq;
    float *y;
    int64_t y_stride;
    bool ref;
} mm_job;

static void quantize_job(void *arg, int ith, int nth) {
    mm_job *j = arg;
    int64_t t0, t1;
    mr_split_range(j->T, ith, nth, 1, &t0, &t1);
    const int64_t k = j->W->k;
    for (int64_t t = t0; t < t1; t++) {
        const float *x = j->x + t * j->x_stride;
        if (j->vt != MR_TYPE_F32) {
            quant_quantize_row(j->vt, x, (char *)j->xq + t * j->xs, k);
            continue;
        }
        /* float activations: as ggml, they meet F16/BF16 weights rounded to that type */
        float *o = (float *)((char *)j->xq + t * j->xs);
        if (j->W->type == MR_TYPE_F16)
            for (int64_t i = 0; i < k; i++) o[i] = mr_fp16_to_fp32(mr_fp32_to_fp16(x[i]));
        else if (j->W->type == MR_TYPE_BF16)
            for (int64_t i = 0; i < k; i++) o[i] = mr_bf16_to_fp32(mr_fp32_to_bf16(x[i]));
        else
            memcpy(o, x, sizeof(float) * (size_t)k);
    }
}

static void matmul_job(void *arg, int ith, int nth) {
    mm_job *j = arg;
    int64_t r0, r1;
    mr_split_range(j->W->m, ith, nth, 16, &r0, &r1);
    if (r0 >= r1) return;
    if (j->ref)
        quant_matmul_isa(QUANT_ISA_SCALAR, j->W->type, j->wdata, j->W->k, r0, r1, j->xq, j->xs, j->T, j->y,
                         j->y_stride);
    else
        quant_matmul(j->W->type, j->wdata, j->W->k, r0, r1, j->xq, j->xs, j->T, j->y, j->y_stride);
}

int cpu_matmul_s(cpu_mm *mm, const mr_weight *W, int64_t mat, const float *x, int64_t x_stride, int64_t T,
                 float *y, int64_t y_stride) {
    MR_ASSERT(W->data && mat >= 0 && mat < W->n_mat);
    mm_job j = {.W = W, .wdata = (const char *)W->data + (size_t)mat * W->mat_bytes, .x = x,
                .x_stride = x_stride, .T = T, .y = y, .y_stride = y_stride, .ref = mm->ref};
    j.vt = quant_vec_dot_type(W->type);
    MR_ASSERT(j.vt != (uint32_t)-1);
    mr_threadpool *tp = mm->ref ? NULL : mm->tp;
    if (j.vt == MR_TYPE_F32 && W->type == MR_TYPE_F32 && x_stride == W->k) {
        j.xq = (void *)x;
        j.xs = (size_t)W->k * sizeof(float);
    } else {
        j.xs = mr_row_size(j.vt, W->k);
        size_t need = j.xs * (size_t)T;
        if (need > mm->xq_cap) {
            mr_free_aligned(mm->xq);
            mm->xq_cap = 0;
            mm->xq = mr_malloc_aligned(need);
            if (!mm->xq) return -1;
            mm->xq_cap = need;
        }
        j.xq = mm->xq;
        if (T == 1) quantize_job(&j, 0, 1);
        else mr_tp_run(tp, quantize_job, &j);
    }
    mr_tp_run(tp, matmul_job, &j);
    mm->bytes_read += W->mat_bytes;
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
    mr_free_aligned(mm->xq);
    mm->xq = NULL;
    mm->xq_cap = 0;
}
