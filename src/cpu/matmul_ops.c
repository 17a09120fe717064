/*
 * matmul_ops.c — the job engine behind every CPU matmul (see mm_ops.h):
 * row-chunked work lists over one or several matmuls, claimed through an
 * atomic counter, activation quantization shared by several weights, and
 * cpu_matmul_multi (q/k/v or gate/up from one input in one job).
 */
#include <stdatomic.h>
#include <string.h>

#include "base/base.h"
#include "base/claim.h"
#include "cpu/mm_ops.h"
#include "quant/quant.h"

/* Columns per kernel call: 64 quantized columns (<= 150 KB of Q8_K at k =
 * 2048) stay in L2 while a chunk's rows stream past them. */
#define MM_COL_BLOCK 64
/* Bytes of weight rows x columns per chunk (~ tens of microseconds). */
#define MM_CHUNK_TARGET (128 * 1024)
/* Below this much weight-bytes x column-groups a job runs on the caller only. */
#define MM_INLINE_BYTES (64 * 1024)

int64_t cpu_mm_chunk_rows(size_t ws, int64_t nc, int64_t m, int nth) {
    const int64_t cols = nc <= 1 ? 1 : (nc + 3) / 4;
    int64_t rows = (int64_t)(MM_CHUNK_TARGET / (ws * (size_t)cols + 1));
    rows = (rows + 15) & ~(int64_t)15;
    if (rows < 16) rows = 16;
    /* at least ~4 chunks per thread where the matrix allows it */
    int64_t bal = m / (4 * (int64_t)(nth > 0 ? nth : 1));
    bal = bal & ~(int64_t)15;
    if (bal >= 16 && rows > bal) rows = bal;
    return rows;
}

void cpu_mm_op_rows(const cpu_mm_op *op, int64_t r0, int64_t r1, int64_t c0, int64_t c1, int ref) {
    for (int64_t c = c0; c < c1; c += MM_COL_BLOCK) {
        const int64_t ce = c + MM_COL_BLOCK < c1 ? c + MM_COL_BLOCK : c1;
        const void *x = (const char *)op->xq + (size_t)c * op->xs;
        float *y = op->y + c * op->ys;
        if (ref) quant_matmul_isa(QUANT_ISA_SCALAR, op->type, op->w, op->k, r0, r1, x, op->xs, ce - c, y, op->ys);
        else quant_matmul(op->type, op->w, op->k, r0, r1, x, op->xs, ce - c, y, op->ys);
    }
}

typedef struct {
    const cpu_mm_op *ops;
    int n;
    int64_t chunk[16], first[17]; /* rows per chunk, first global chunk index of op i */
    int ref;
    mr_claim claim; /* chunks in op order: a contiguous run of rows per thread */
} ops_job;

static void ops_worker(void *arg, int ith, int nth) {
    (void)nth;
    ops_job *j = arg;
    for (;;) {
        const int64_t it = mr_claim_next(&j->claim, ith);
        if (it < 0) break;
        int op = 0;
        while (it >= j->first[op + 1]) op++;
        const cpu_mm_op *o = &j->ops[op];
        const int64_t r0 = (it - j->first[op]) * j->chunk[op];
        const int64_t r1 = r0 + j->chunk[op] < o->m ? r0 + j->chunk[op] : o->m;
        cpu_mm_op_rows(o, r0, r1, 0, o->nc, j->ref);
    }
}

void cpu_mm_run_ops(cpu_mm *mm, const cpu_mm_op *ops, int n) {
    MR_ASSERT(n > 0 && n <= 16);
    mr_threadpool *tp = mm->ref ? NULL : mm->tp;
    const int nth = mr_tp_n(tp);
    ops_job j = {.ops = ops, .n = n, .ref = mm->ref};
    j.first[0] = 0;
    for (int i = 0; i < n; i++) {
        j.chunk[i] = cpu_mm_chunk_rows(ops[i].ws, ops[i].nc, ops[i].m, nth);
        j.first[i + 1] = j.first[i] + (ops[i].m + j.chunk[i] - 1) / j.chunk[i];
    }
    mr_claim_init(&j.claim, j.first[n], nth);
    /* tiny work (a few microseconds) is cheaper inline than a pool round trip */
    size_t work = 0;
    for (int i = 0; i < n; i++) work += ops[i].ws * (size_t)ops[i].m * (size_t)(ops[i].nc > 1 ? (ops[i].nc + 3) / 4 : 1);
    if (nth == 1 || j.first[n] == 1 || work < MM_INLINE_BYTES) ops_worker(&j, 0, 1);
    else mr_tp_run(tp, ops_worker, &j);
}

void cpu_mm_quantize_row(uint32_t wtype, const float *x, void *dst, int64_t k) {
    const uint32_t vt = quant_vec_dot_type(wtype);
    if (vt != MR_TYPE_F32) {
        quant_quantize_row(vt, x, dst, k);
        return;
    }
    /* float activations: as ggml, they meet F16/BF16 weights rounded to that type */
    float *o = dst;
    if (wtype == MR_TYPE_F16)
        for (int64_t i = 0; i < k; i++) o[i] = mr_fp16_to_fp32(mr_fp32_to_fp16(x[i]));
    else if (wtype == MR_TYPE_BF16)
        for (int64_t i = 0; i < k; i++) o[i] = mr_bf16_to_fp32(mr_fp32_to_bf16(x[i]));
    else if (o != x)
        memcpy(o, x, sizeof(float) * (size_t)k);
}

typedef struct {
    uint32_t wtype;
    int64_t k, T, x_stride;
    const float *x;
    char *dst;
    size_t xs;
} qz_job;

static void qz_worker(void *arg, int ith, int nth) {
    qz_job *j = arg;
    int64_t t0, t1;
    mr_split_range(j->T, ith, nth, 1, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) cpu_mm_quantize_row(j->wtype, j->x + t * j->x_stride, j->dst + t * j->xs, j->k);
}

void cpu_mm_quantize(cpu_mm *mm, uint32_t wtype, int64_t k, const float *x, int64_t x_stride, int64_t T,
                     void *dst) {
    qz_job j = {.wtype = wtype, .k = k, .T = T, .x_stride = x_stride, .x = x, .dst = dst,
                .xs = mr_row_size(quant_vec_dot_type(wtype), k)};
    /* a few rows are cheaper inline than a pool wake-up */
    if (T <= 4 || mm->ref) qz_worker(&j, 0, 1);
    else mr_tp_run(mm->tp, qz_worker, &j);
}

int cpu_mm_reserve(void **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    mr_free_aligned(*buf);
    *cap = 0;
    *buf = mr_malloc_aligned(need);
    if (!*buf) return -1;
    *cap = need;
    return 0;
}

/* Whether activations quantized for weight type a can be used for type b. */
static bool same_act(uint32_t a, uint32_t b) {
    const uint32_t va = quant_vec_dot_type(a), vb = quant_vec_dot_type(b);
    if (va != vb) return false;
    if (va != MR_TYPE_F32) return true;
    const bool ra = a == MR_TYPE_F16 || a == MR_TYPE_BF16, rb = b == MR_TYPE_F16 || b == MR_TYPE_BF16;
    return a == b || (!ra && !rb);
}

int cpu_matmul_multi(cpu_mm *mm, int n, const mr_weight *const *W, const float *x, int64_t T, float *const *y) {
    MR_ASSERT(n > 0 && n <= 8);
    const int64_t k = W[0]->k;
    /* one quantized copy of x per distinct activation format */
    int src[8];
    size_t off[8], need = 0;
    for (int i = 0; i < n; i++) {
        MR_ASSERT(W[i]->data && W[i]->k == k);
        src[i] = i;
        for (int p = 0; p < i; p++)
            if (same_act(W[p]->type, W[i]->type)) {
                src[i] = src[p];
                break;
            }
        if (src[i] == i) {
            off[i] = need;
            need += (mr_row_size(quant_vec_dot_type(W[i]->type), k) * (size_t)T + 63) & ~(size_t)63;
        }
    }
    if (cpu_mm_reserve(&mm->xq, &mm->xq_cap, need)) return -1;
    cpu_mm_op ops[8];
    for (int i = 0; i < n; i++) {
        if (src[i] == i) cpu_mm_quantize(mm, W[i]->type, k, x, k, T, (char *)mm->xq + off[i]);
        ops[i] = (cpu_mm_op){.type = W[i]->type, .k = k, .m = W[i]->m, .ws = W[i]->row_bytes, .w = W[i]->data,
                             .xq = (char *)mm->xq + off[src[i]],
                             .xs = mr_row_size(quant_vec_dot_type(W[i]->type), k), .nc = T, .y = y[i],
                             .ys = W[i]->m};
        mm->bytes_read += W[i]->mat_bytes;
    }
    cpu_mm_run_ops(mm, ops, n);
    return 0;
}
