/*
 * moe.c — routed experts of an MoE FFN as three jobs (see moe.h).
 *
 * Pairs (token, slot) are grouped by expert in id order, tokens in order
 * within an expert (the order of the per-expert loop this replaces), so that
 * expert e's quantized inputs are the contiguous columns [off[e], off[e+1]).
 * Downs write one output row per pair (yp); a last step sums each token's
 * pairs in expert-id order, as the per-expert loop did.
 */
#include "cpu/moe.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/claim.h"
#include "cpu/mm_ops.h"
#include "quant/quant.h"

#define MOE_COLB 64     /* columns per kernel call (L2-resident) */
#define MOE_GU_ROWS 256 /* gate/up rows per item (a multiple of the down's activation block) */
#define MOE_D_ROWS 256  /* down rows per item (contiguous weight rows of one expert) */

typedef struct cpu_moe_buf {
    int E, nth;
    int64_t pairs_cap;
    int32_t *off;        /* (E + 1) */
    int32_t *pair_tok;   /* (pairs) token of each pair, grouped by expert */
    float *pair_w;       /* (pairs) its routing weight */
    int32_t *tok_pair;   /* (T*K) pair index of (t, j) */
    int32_t *active;     /* (E) experts with tokens, in id order */
    _Atomic int *ready;  /* (E) per active expert: its gate/up items done (phase 2 -> 3) */
    void *xg, *xu, *act; /* quantized inputs for gate / up (when formats differ), hidden */
    size_t xg_cap, xu_cap, act_cap;
    void *yp;            /* (pairs, D) down outputs per pair */
    size_t yp_cap;
    float *tmp;          /* per task: 2 * MOE_GU_ROWS * MOE_COLB floats (gate/up) */
    size_t tmp_per;
    size_t tmp_cap;
} cpu_moe_buf;

void cpu_moe_free(cpu_mm *mm) {
    cpu_moe_buf *b = mm->moe;
    if (!b) return;
    free(b->off);
    free(b->pair_tok);
    free(b->pair_w);
    free(b->tok_pair);
    free(b->active);
    free((void *)b->ready);
    mr_free_aligned(b->xg);
    mr_free_aligned(b->xu);
    mr_free_aligned(b->act);
    mr_free_aligned(b->yp);
    mr_free_aligned(b->tmp);
    free(b);
    mm->moe = NULL;
}

static int moe_buf(cpu_mm *mm, int E, int64_t pairs, int nth) {
    cpu_moe_buf *b = mm->moe;
    if (b && (b->E != E || b->pairs_cap < pairs || b->nth < nth)) {
        cpu_moe_free(mm);
        b = NULL;
    }
    if (b) return 0;
    b = mr_calloc(1, sizeof *b);
    if (!b) return -1;
    mm->moe = b;
    b->E = E;
    b->nth = nth;
    b->pairs_cap = pairs;
    b->off = mr_malloc(sizeof(int32_t) * (size_t)(E + 1));
    b->pair_tok = mr_malloc(sizeof(int32_t) * (size_t)pairs);
    b->pair_w = mr_malloc(sizeof(float) * (size_t)pairs);
    b->tok_pair = mr_malloc(sizeof(int32_t) * (size_t)pairs);
    b->active = mr_malloc(sizeof(int32_t) * (size_t)E);
    b->ready = mr_calloc((size_t)E, sizeof(*b->ready));
    b->tmp_per = (size_t)2 * MOE_GU_ROWS * MOE_COLB;
    b->tmp = mr_malloc_aligned(sizeof(float) * b->tmp_per * (size_t)nth);
    if (!b->off || !b->pair_tok || !b->pair_w || !b->tok_pair || !b->active || !b->ready || !b->tmp) {
        cpu_moe_free(mm);
        return -1;
    }
    return 0;
}

typedef struct {
    const cpu_moe_w *w;
    cpu_moe_buf *b;
    int64_t T, D, F;
    int K, n_active, ref;
    const float *x;
    float *out;
    /* activation formats */
    size_t xs_g, xs_u, xs_d;
    bool sep_up;          /* up needs its own quantized copy */
    /* phase 2: items = n_active * n_gu */
    int64_t gu_rows, n_gu;
    /* phase 3: items = n_d */
    int64_t d_rows, n_d;
    mr_claim claim;       /* phase 2, then 3: a contiguous run of items per thread (base/claim.h) */
    mr_claim claim_d;     /* phase 3 when it follows phase 2 without a barrier (moe_fused_worker) */
} moe_job;

/* Phase 1: quantize token t's input once, copy it to its K pairs' columns. */
static void moe_quant_worker(void *arg, int ith, int nth) {
    moe_job *j = arg;
    const cpu_moe_buf *b = j->b;
    int64_t t0, t1;
    mr_split_range(j->T, ith, nth, 1, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        const float *xt = j->x + t * j->D;
        const int32_t p0 = b->tok_pair[t * j->K];
        char *dg = (char *)b->xg + (size_t)p0 * j->xs_g;
        cpu_mm_quantize_row(j->w->gate->type, xt, dg, j->D);
        for (int s = 1; s < j->K; s++) memcpy((char *)b->xg + (size_t)b->tok_pair[t * j->K + s] * j->xs_g, dg, j->xs_g);
        if (j->sep_up) {
            char *du = (char *)b->xu + (size_t)p0 * j->xs_u;
            cpu_mm_quantize_row(j->w->up->type, xt, du, j->D);
            for (int s = 1; s < j->K; s++)
                memcpy((char *)b->xu + (size_t)b->tok_pair[t * j->K + s] * j->xs_u, du, j->xs_u);
        }
    }
}

/* Phase 2 item: expert e, hidden rows [r0, r1): gate and up for all of e's
 * columns, act, then quantize each column's slice into the down's format. */
static void moe_gu_item(moe_job *j, float *tmp, int e, int64_t r0, int64_t r1) {
    const cpu_moe_w *w = j->w;
    const cpu_moe_buf *b = j->b;
    const int64_t p0 = b->off[e], n = b->off[e + 1] - p0, nr = r1 - r0;
    float *g = tmp, *u = tmp + MOE_GU_ROWS * MOE_COLB;
    const cpu_mm_op og = {.type = w->gate->type, .k = j->D, .m = j->F, .ws = w->gate->row_bytes,
                          .w = (const char *)w->gate->data + (size_t)e * w->gate->mat_bytes,
                          .xq = (const char *)b->xg + (size_t)p0 * j->xs_g, .xs = j->xs_g, .nc = n,
                          .y = g - r0, .ys = nr};
    cpu_mm_op ou = og;
    ou.type = w->up->type;
    ou.ws = w->up->row_bytes;
    ou.w = (const char *)w->up->data + (size_t)e * w->up->mat_bytes;
    ou.y = u - r0;
    if (j->sep_up) {
        ou.xq = (const char *)b->xu + (size_t)p0 * j->xs_u;
        ou.xs = j->xs_u;
    }
    const uint32_t dt = w->down->type;
    const size_t slice_off = mr_row_size(quant_vec_dot_type(dt), r0);
    for (int64_t c0 = 0; c0 < n; c0 += MOE_COLB) {
        const int64_t c1 = c0 + MOE_COLB < n ? c0 + MOE_COLB : n;
        /* the op's y is indexed from column c0 of this block */
        cpu_mm_op bg = og, bu = ou;
        bg.y = g - r0 - c0 * nr;
        bu.y = u - r0 - c0 * nr;
        cpu_mm_op_rows(&bg, r0, r1, c0, c1, j->ref);
        cpu_mm_op_rows(&bu, r0, r1, c0, c1, j->ref);
        for (int64_t c = c0; c < c1; c++) {
            float *gc = g + (c - c0) * nr;
            const float *uc = u + (c - c0) * nr;
            if (w->gelu) cpu_gelu_mul(gc, uc, nr);
            else cpu_silu_mul(gc, uc, nr);
            cpu_mm_quantize_row(dt, gc, (char *)b->act + (size_t)(p0 + c) * j->xs_d + slice_off, nr);
        }
    }
}

static void moe_gu_worker(void *arg, int ith, int nth) {
    (void)nth;
    moe_job *j = arg;
    float *tmp = j->b->tmp + (size_t)ith * j->b->tmp_per;
    for (;;) {
        const int64_t it = mr_claim_next(&j->claim, ith);
        if (it < 0) break;
        const int e = j->b->active[it / j->n_gu];
        const int64_t r0 = (it % j->n_gu) * j->gu_rows;
        moe_gu_item(j, tmp, e, r0, r0 + j->gu_rows < j->F ? r0 + j->gu_rows : j->F);
        atomic_fetch_add_explicit(&j->b->ready[it / j->n_gu], 1, memory_order_release);
    }
}

/* Phase 3 item: expert e, output rows [r0, r1) for all of e's columns, into
 * the pairs' rows of yp (contiguous weight rows: streams like a matvec). */
static void moe_down_item(moe_job *j, int e, int64_t r0, int64_t r1) {
    const cpu_moe_w *w = j->w;
    const cpu_moe_buf *b = j->b;
    const int64_t p0 = b->off[e], n = b->off[e + 1] - p0;
    const cpu_mm_op od = {.type = w->down->type, .k = j->F, .m = j->D, .ws = w->down->row_bytes,
                          .w = (const char *)w->down->data + (size_t)e * w->down->mat_bytes,
                          .xq = (const char *)b->act + (size_t)p0 * j->xs_d, .xs = j->xs_d, .nc = n,
                          .y = (float *)b->yp + p0 * j->D, .ys = j->D};
    cpu_mm_op_rows(&od, r0, r1, 0, n, j->ref);
}

/* Down item it: (active expert it / n_d, row chunk it % n_d). */
static void moe_down_at(moe_job *j, int64_t it) {
    const int64_t r0 = (it % j->n_d) * j->d_rows;
    moe_down_item(j, j->b->active[it / j->n_d], r0, r0 + j->d_rows < j->D ? r0 + j->d_rows : j->D);
}

static void moe_down_worker(void *arg, int ith, int nth) {
    (void)nth;
    moe_job *j = arg;
    for (int64_t it; (it = mr_claim_next(&j->claim, ith)) >= 0;) moe_down_at(j, it);
}

/* Phases 2 and 3 in one pool job: a thread whose gate/up items are all claimed goes on to its
 * down items (the ranges of both phases follow the experts in the same order, so a thread's
 * downs are mostly of its own experts), each waiting until its expert's gate/up items are done.
 * A wait is only ever on items already claimed, i.e. running: no deadlock, and never longer
 * than the barrier it replaces. */
static void moe_fused_worker(void *arg, int ith, int nth) {
    moe_job *j = arg;
    moe_gu_worker(arg, ith, nth);
    for (;;) {
        const int64_t it = mr_claim_next(&j->claim_d, ith);
        if (it < 0) break;
        while (atomic_load_explicit(&j->b->ready[it / j->n_d], memory_order_acquire) < j->n_gu) mr_cpu_relax();
        moe_down_at(j, it);
    }
}

/* Phase 4: out[t] = sum of w_p * yp[p] over token t's pairs in expert-id
 * order (pair indices ascend with the expert id): the per-expert loop's sum. */
static void moe_sum_worker(void *arg, int ith, int nth) {
    moe_job *j = arg;
    const cpu_moe_buf *b = j->b;
    const int K = j->K;
    const int64_t D = j->D;
    int64_t t0, t1;
    mr_split_range(j->T, ith, nth, 1, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        int32_t ps[64];
        for (int s = 0; s < K; s++) { /* insertion sort of the token's K (<= 64) pairs */
            int32_t p = b->tok_pair[t * K + s];
            int q = s;
            while (q > 0 && ps[q - 1] > p) ps[q] = ps[q - 1], q--;
            ps[q] = p;
        }
        float *o = j->out + t * D;
        memset(o, 0, sizeof(float) * (size_t)D);
        for (int s = 0; s < K; s++) {
            const float wt = b->pair_w[ps[s]];
            const float *y = (const float *)b->yp + (int64_t)ps[s] * D;
            for (int64_t d = 0; d < D; d++) o[d] += wt * y[d];
        }
    }
}

static void run(cpu_mm *mm, mr_tp_fn fn, moe_job *j, int64_t items) {
    mr_claim_init(&j->claim, items, mm->ref ? 1 : mr_tp_n(mm->tp));
    if (mm->ref || items <= 1 || mr_tp_n(mm->tp) == 1) fn(j, 0, 1);
    else mr_tp_run(mm->tp, fn, j);
}

static int64_t lcm16(int64_t b) {
    int64_t a = 16, x = a, y = b;
    while (y) {
        const int64_t t = x % y;
        x = y;
        y = t;
    }
    return a / x * b;
}

int cpu_moe(cpu_mm *mm, const cpu_moe_w *w, int64_t T, const float *x, int K, const int32_t *sel,
            const float *selw, float *out) {
    const int E = (int)w->gate->n_mat;
    const int64_t D = w->gate->k, F = w->gate->m, pairs = T * K;
    MR_ASSERT(w->up->k == D && w->up->m == F && w->down->k == F && w->down->m == D);
    const int nth = mm->ref ? 1 : mr_tp_n(mm->tp);
    if (moe_buf(mm, E, pairs, nth)) return -1;
    cpu_moe_buf *b = mm->moe;

    /* group pairs by expert (counting sort; expert id order, token order within) */
    memset(b->off, 0, sizeof(int32_t) * (size_t)(E + 1));
    for (int64_t i = 0; i < pairs; i++) {
        MR_ASSERT(sel[i] >= 0 && sel[i] < E);
        b->off[sel[i] + 1]++;
    }
    int n_active = 0;
    for (int e = 0; e < E; e++) {
        if (b->off[e + 1]) b->active[n_active++] = e;
        b->off[e + 1] += b->off[e];
    }
    for (int64_t i = 0; i < pairs; i++) {
        const int e = sel[i];
        const int32_t p = b->off[e]++;
        b->pair_tok[p] = (int32_t)(i / K);
        b->pair_w[p] = selw[i];
        b->tok_pair[i] = p;
    }
    for (int e = E; e > 0; e--) b->off[e] = b->off[e - 1];
    b->off[0] = 0;

    moe_job j = {.w = w, .b = b, .T = T, .D = D, .F = F, .K = K, .n_active = n_active, .ref = mm->ref,
                 .x = x, .out = out};
    const uint32_t vd = quant_vec_dot_type(w->down->type);
    j.xs_g = mr_row_size(quant_vec_dot_type(w->gate->type), D);
    j.xs_u = mr_row_size(quant_vec_dot_type(w->up->type), D);
    j.xs_d = mr_row_size(vd, F);
    /* same format, and for float activations the same rounding (F16 / BF16 / none) */
    j.sep_up = quant_vec_dot_type(w->gate->type) != quant_vec_dot_type(w->up->type) ||
               (quant_vec_dot_type(w->gate->type) == MR_TYPE_F32 && w->gate->type != w->up->type);
    if (cpu_mm_reserve(&b->xg, &b->xg_cap, j.xs_g * (size_t)pairs) ||
        (j.sep_up && cpu_mm_reserve(&b->xu, &b->xu_cap, j.xs_u * (size_t)pairs)) ||
        cpu_mm_reserve(&b->act, &b->act_cap, j.xs_d * (size_t)pairs) ||
        cpu_mm_reserve(&b->yp, &b->yp_cap, sizeof(float) * (size_t)(pairs * D)))
        return -1;
    MR_ASSERT(K <= 64);

    /* 1: quantize */
    if (T <= 4 || mm->ref) moe_quant_worker(&j, 0, 1);
    else mr_tp_run(mm->tp, moe_quant_worker, &j);

    /* 2: gate/up items; rows a multiple of 16 and of the down's activation block */
    const int64_t blk = lcm16(mr_type_get(vd)->blck);
    j.gu_rows = (MOE_GU_ROWS / blk) * blk;
    if (j.gu_rows < blk) j.gu_rows = blk;
    if (j.gu_rows > MOE_GU_ROWS) return mr_seterr("moe: activation block of %lld rows too large", (long long)blk), -1;
    j.n_gu = (F + j.gu_rows - 1) / j.gu_rows;
    /* 3: down items (expert, 256-row chunk) into per-pair rows, each after its expert's gate/up
     * items (one job: moe_fused_worker); 4: weighted sums per token */
    j.d_rows = D < MOE_D_ROWS ? D : MOE_D_ROWS;
    j.n_d = (D + j.d_rows - 1) / j.d_rows;
    for (int a = 0; a < n_active; a++) atomic_store_explicit(&b->ready[a], 0, memory_order_relaxed);
    if (mm->ref || nth == 1) {
        run(mm, moe_gu_worker, &j, (int64_t)n_active * j.n_gu);
        run(mm, moe_down_worker, &j, (int64_t)n_active * j.n_d);
    } else {
        mr_claim_init(&j.claim, (int64_t)n_active * j.n_gu, nth);
        mr_claim_init(&j.claim_d, (int64_t)n_active * j.n_d, nth);
        mr_tp_run(mm->tp, moe_fused_worker, &j);
    }
    if (T <= 4 || mm->ref) moe_sum_worker(&j, 0, 1);
    else mr_tp_run(mm->tp, moe_sum_worker, &j);

    mm->bytes_read += (uint64_t)n_active * (w->gate->mat_bytes + w->up->mat_bytes + w->down->mat_bytes);
    return 0;
}
