/*
 * gpu_prof.c — MOERUN_CUDA_PROFILE=1: where a device's time goes, op by op.
 *
 * gpu_prof_wrap returns a gpu_api whose ops run the backend's op between two
 * stamps (CUDA events on the context's stream; the host clock in the
 * emulation). Contexts are wrapped: init returns a prof_ctx holding the
 * backend's context, so every op finds its records without a lookup. Records
 * are resolved (the stamps' elapsed times read) when the device is synced
 * anyway, when a buffer of PROF_CAP records is full (a sync of ours), and at
 * the report:
 *   - op time: from an op's first stamp to its second, the op's kernels and
 *     copies as the device ran them (the stamps follow the queued work);
 *   - gap: from the previous op's second stamp to this op's first, the time
 *     the device sat idle waiting for the host (launch overhead, host work
 *     of a hybrid step, a synchronous copy), counted within a step only
 *     (gpu_prof_step marks the first op of each forward pass).
 * Ops queued while a graph is captured are not stamped (they only record);
 * a graph launch is one op, "graph", so with decode graphs on, a decode step
 * shows as one op; MOERUN_CUDA_GRAPH=0 gives the per-op breakdown.
 * Single-threaded, as the executor that calls it. Costs two event records
 * per op, so speeds measured with it are not the engine's speeds.
 */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "gpu/gpu_api.h"

enum {
    P_UPLOAD, P_DOWNLOAD, P_PEER, P_MEMSET, P_QUANT, P_MATVEC, P_MOE_MATVEC, P_RMSNORM, P_SILU, P_GELU, P_ADD, P_ROPE,
    P_ROUTE, P_ATTN, P_GEMM, P_KVW, P_COMBINE, P_COPY, P_SORT, P_ROWS, P_RMSQ, P_ACTQ, P_MOEMV2, P_NROPE, P_MVN, P_KVW2, P_MVSUM, P_GUA, P_RROUTE, P_SIGM, P_SSMG, P_SSMC, P_L2, P_DELTA, P_DELTAG, P_NGQ, P_MVGRP, P_GUAGRP, P_NRKV, P_GRAPH, P_N
};
static const char *const k_op_names[P_N] = {
    "upload (h2d)", "download (d2h)", "peer copy (d2d)", "memset", "quantize_q8_1", "matvec", "moe_matvec", "rmsnorm", "silu_mul",
    "gelu_mul", "add", "rope", "moe_route", "attn", "gemm", "kv_write", "moe_combine", "copy_rows", "moe_sort",
    "rows_idx", "rmsnorm_q8", "act_q8", "moe_matvec2", "norm_rope", "matvec_n", "kv_write2", "moe_matvec_sum", "moe_gate_up_q8", "router_route", "sigmoid_mul", "ssm_gates", "ssm_conv", "l2norm", "delta_rule", "delta_rule_g", "norm_gate_q8", "moe_matvec_grp", "moe_gate_up_q8_grp", "norm_rope_kv", "graph"};
static bool is_copy(int op) { return op == P_UPLOAD || op == P_DOWNLOAD || op == P_PEER; }

#define PROF_CAP 4096
#define PROF_MAX_CTX 16

typedef struct {
    int op;
    bool step_start; /* first op of a step: no gap before it */
    void *s0, *s1;
} prof_rec;

typedef struct {
    void *c;         /* the backend's context */
    int dev;
    prof_rec r[PROF_CAP];
    int n;
    void **pool;     /* free stamps */
    int npool, cappool;
    void *prev;      /* second stamp of the last resolved op of the current step, or NULL */
    bool step_start; /* the next op begins a step */
    bool capturing;
    double ms[P_N], gap_ms;
    long calls[P_N];
    int stamp_errors;
} prof_ctx;

static const gpu_api *g_in;
static gpu_api g_tab;
static prof_ctx *g_ctx[PROF_MAX_CTX];

bool gpu_prof_enabled(void) {
    const char *e = getenv("MOERUN_CUDA_PROFILE");
    return e && *e && strcmp(e, "0") != 0;
}

static void *stamp_get(prof_ctx *p) {
    if (p->npool > 0) return p->pool[--p->npool];
    return g_in->stamp_new ? g_in->stamp_new(p->c) : NULL;
}

static void stamp_put(prof_ctx *p, void *s) {
    if (!s) return;
    if (p->npool == p->cappool) {
        const int cap = p->cappool ? 2 * p->cappool : 64;
        void **np = realloc(p->pool, sizeof(void *) * (size_t)cap);
        if (!np) {
            g_in->stamp_free(p->c, s);
            return;
        }
        p->pool = np, p->cappool = cap;
    }
    p->pool[p->npool++] = s;
}

/* Read the elapsed times of the buffered records (the device has finished them: the caller
 * synced) and return their stamps to the pool, but the last one (the next gap's start). */
static void resolve(prof_ctx *p) {
    for (int i = 0; i < p->n; i++) {
        prof_rec *r = &p->r[i];
        const double ms = g_in->stamp_ms(p->c, r->s0, r->s1);
        if (ms >= 0) p->ms[r->op] += ms;
        else p->stamp_errors++;
        p->calls[r->op]++;
        if (r->step_start) {
            stamp_put(p, p->prev);
            p->prev = NULL;
        }
        if (p->prev) {
            const double gap = g_in->stamp_ms(p->c, p->prev, r->s0);
            if (gap > 0) p->gap_ms += gap;
        }
        stamp_put(p, p->prev);
        stamp_put(p, r->s0);
        p->prev = r->s1;
    }
    p->n = 0;
}

static int flush(prof_ctx *p) {
    if (p->n == 0) return 0;
    const int rc = g_in->sync(p->c);
    resolve(p);
    return rc;
}

static void push(prof_ctx *p, int op, void *s0, void *s1) {
    if (!s0 || !s1) {
        stamp_put(p, s0), stamp_put(p, s1);
        p->stamp_errors++;
        return;
    }
    p->r[p->n++] = (prof_rec){.op = op, .step_start = p->step_start, .s0 = s0, .s1 = s1};
    p->step_start = false;
    if (p->n == PROF_CAP) flush(p);
}

/* Run CALL (an int expression on the backend's context P->c) between two stamps. */
#define PROF_OP(OP, CALL)                                                                                     \
    do {                                                                                                      \
        prof_ctx *p_ = cv;                                                                                    \
        if (p_->capturing) return (CALL);                                                                     \
        void *a_ = stamp_get(p_);                                                                             \
        if (a_ && g_in->stamp(p_->c, a_)) stamp_put(p_, a_), a_ = NULL;                                       \
        const int rc_ = (CALL);                                                                               \
        void *b_ = stamp_get(p_);                                                                             \
        if (b_ && g_in->stamp(p_->c, b_)) stamp_put(p_, b_), b_ = NULL;                                       \
        push(p_, (OP), a_, b_);                                                                               \
        return rc_;                                                                                           \
    } while (0)
#define PC (((prof_ctx *)cv)->c)

static void *w_init(int dev) {
    int slot = -1;
    for (int i = 0; i < PROF_MAX_CTX; i++)
        if (!g_ctx[i]) {
            slot = i;
            break;
        }
    if (slot < 0) {
        mr_seterr("gpu profile: more than %d device contexts", PROF_MAX_CTX);
        return NULL;
    }
    prof_ctx *p = mr_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->c = g_in->init(dev);
    if (!p->c) {
        free(p);
        return NULL;
    }
    p->dev = dev;
    p->step_start = true;
    g_ctx[slot] = p;
    return p;
}

static void w_free(void *cv) {
    prof_ctx *p = cv;
    if (!p) return;
    flush(p);
    stamp_put(p, p->prev);
    for (int i = 0; i < p->npool; i++) g_in->stamp_free(p->c, p->pool[i]);
    free(p->pool);
    g_in->free(p->c);
    for (int i = 0; i < PROF_MAX_CTX; i++)
        if (g_ctx[i] == p) g_ctx[i] = NULL;
    free(p);
}

static int w_sync(void *cv) {
    prof_ctx *p = cv;
    const int rc = g_in->sync(p->c);
    resolve(p);
    return rc;
}
static void *w_alloc(void *cv, size_t n) { return g_in->alloc(PC, n); }
static int w_upload_side(void *cv, void *dst, const void *src, size_t n) { return g_in->upload_side(PC, dst, src, n); }
static void *w_event_new(void *cv) { return g_in->event_new(PC); }
static int w_event_record(void *cv, void *e, int side) { return g_in->event_record(PC, e, side); }
static int w_event_wait(void *cv, void *e, int side) { return g_in->event_wait(PC, e, side); }
static void w_event_free(void *cv, void *e) { g_in->event_free(PC, e); }

static void w_dfree(void *cv, void *ptr) { g_in->dfree(PC, ptr); }
static int w_upload(void *cv, void *dst, const void *src, size_t n) { PROF_OP(P_UPLOAD, g_in->upload(PC, dst, src, n)); }
static int w_download(void *cv, void *dst, const void *src, size_t n) {
    PROF_OP(P_DOWNLOAD, g_in->download(PC, dst, src, n));
}
static int w_memset(void *cv, void *dst, int v, size_t n) { PROF_OP(P_MEMSET, g_in->memset(PC, dst, v, n)); }
static int w_quant(void *cv, const float *x, void *xq, int64_t k, int64_t n) {
    PROF_OP(P_QUANT, g_in->quantize_q8_1(PC, x, xq, k, n));
}
static int w_matvec(void *cv, const mrc_weight *W, int64_t mat, const float *x, const void *xq, float *y) {
    PROF_OP(P_MATVEC, g_in->matvec(PC, W, mat, x, xq, y));
}
static int w_moe_matvec(void *cv, const mrc_weight *W, const int32_t *ids, int n_ids, const float *x, size_t xs,
                        const void *xq, size_t xqs, float *y) {
    PROF_OP(P_MOE_MATVEC, g_in->moe_matvec(PC, W, ids, n_ids, x, xs, xq, xqs, y));
}
static int w_rmsnorm(void *cv, float *out, const float *x, const float *w, int64_t rows, int n, float eps) {
    PROF_OP(P_RMSNORM, g_in->rmsnorm(PC, out, x, w, rows, n, eps));
}
static int w_silu(void *cv, float *g, const float *u, int64_t n) { PROF_OP(P_SILU, g_in->silu_mul(PC, g, u, n)); }
static int w_gelu(void *cv, float *g, const float *u, int64_t n) { PROF_OP(P_GELU, g_in->gelu_mul(PC, g, u, n)); }
static int w_add(void *cv, float *y, const float *x, int64_t n) { PROF_OP(P_ADD, g_in->add(PC, y, x, n)); }
static int w_add_rows(void *cv, float *y, const float *x, int64_t r, int64_t n) {
    PROF_OP(P_ADD, g_in->add_rows(PC, y, x, r, n));
}
static int w_rope(void *cv, const mrc_rope_params *rp, float *x, const int32_t *pos, int nt, int nh, int hd) {
    PROF_OP(P_ROPE, g_in->rope(PC, rp, x, pos, nt, nh, hd));
}
static int w_route(void *cv, const float *l, int nt, int ne, int k, int gating, const float *bias, bool norm_w,
                   float ws, int ng, int ngu, int32_t *ids, float *w) {
    PROF_OP(P_ROUTE, g_in->moe_route(PC, l, nt, ne, k, gating, bias, norm_w, ws, ng, ngu, ids, w));
}
static int w_attn(void *cv, const mrc_attn_params *ap, const float *q, const void *k, const void *v, const float *m,
                  float *o) {
    PROF_OP(P_ATTN, g_in->attn(PC, ap, q, k, v, m, o));
}
static int w_gemm(void *cv, const mrc_weight *W, int64_t mat, const float *x, int64_t T, float *y) {
    PROF_OP(P_GEMM, g_in->gemm(PC, W, mat, x, T, y));
}
static int w_kvw(void *cv, uint32_t type, const float *src, int heads, int d, int T, const int32_t *cells, void *base,
                 size_t rb, int n_ctx) {
    PROF_OP(P_KVW, g_in->kv_write(PC, type, src, heads, d, T, cells, base, rb, n_ctx));
}
static int w_combine(void *cv, float *y, const float *s, const float *w, int nt, int k, int n, int acc) {
    PROF_OP(P_COMBINE, g_in->moe_combine(PC, y, s, w, nt, k, n, acc));
}
static int w_rmsnorm_q8(void *cv, float *o, void *xq, float *x, const float *res, const float *w, int64_t r, int n,
                        float eps) {
    PROF_OP(P_RMSQ, g_in->rmsnorm_q8(PC, o, xq, x, res, w, r, n, eps));
}
static int w_moe_matvec2(void *cv, const mrc_weight *W1, const mrc_weight *W2, const int32_t *ids, int n,
                         const void *xq, size_t xqs, float *y1, float *y2) {
    PROF_OP(P_MOEMV2, g_in->moe_matvec2(PC, W1, W2, ids, n, xq, xqs, y1, y2));
}
static int w_norm_rope(void *cv, const mrc_rope_params *p, float *x, const int32_t *pos, int nt, int nh, int hd,
                       const float *w1, const float *w2, int split, float eps) {
    PROF_OP(P_NROPE, g_in->norm_rope(PC, p, x, pos, nt, nh, hd, w1, w2, split, eps));
}
static int w_matvec_n(void *cv, int n, const mrc_weight *const *W, const void *xq, float *const *y) {
    PROF_OP(P_MVN, g_in->matvec_n(PC, n, W, xq, y));
}
static int w_norm_rope_kv(void *cv, const mrc_rope_params *p, float *x, const int32_t *pos, int nt, int nh, int hd,
                          const float *w1, const float *w2, int split, float eps, const mrc_kv_put *kv) {
    PROF_OP(P_NRKV, g_in->norm_rope_kv(PC, p, x, pos, nt, nh, hd, w1, w2, split, eps, kv));
}
static int w_kv_write2(void *cv, int heads, int T, const int32_t *cells, int n_ctx, uint32_t tk, const float *k,
                       int dk, void *bk, size_t rbk, uint32_t tv, const float *v, int dv, void *bv, size_t rbv) {
    PROF_OP(P_KVW2, g_in->kv_write2(PC, heads, T, cells, n_ctx, tk, k, dk, bk, rbk, tv, v, dv, bv, rbv));
}
static int w_moe_matvec_sum(void *cv, const mrc_weight *W, const int32_t *ids, int n, const void *xq, size_t xqs,
                            const float *wts, float *y, int acc) {
    PROF_OP(P_MVSUM, g_in->moe_matvec_sum(PC, W, ids, n, xq, xqs, wts, y, acc));
}
static int w_moe_gate_up_q8(void *cv, int gelu, const mrc_weight *Wg, const mrc_weight *Wu, const int32_t *ids, int n,
                            const void *xq, size_t xqs, float *g, void *xo) {
    PROF_OP(P_GUA, g_in->moe_gate_up_q8(PC, gelu, Wg, Wu, ids, n, xq, xqs, g, xo));
}
static int w_moe_matvec_grp(void *cv, const mrc_weight *W1, const mrc_weight *W2, const int32_t *ids, int n,
                            const void *xq, size_t xqs, float *y1, float *y2) {
    PROF_OP(P_MVGRP, g_in->moe_matvec_grp(PC, W1, W2, ids, n, xq, xqs, y1, y2));
}
static int w_moe_gate_up_q8_grp(void *cv, int gelu, const mrc_weight *Wg, const mrc_weight *Wu, const int32_t *ids,
                                int n, const void *xq, size_t xqs, float *g, void *xo) {
    PROF_OP(P_GUAGRP, g_in->moe_gate_up_q8_grp(PC, gelu, Wg, Wu, ids, n, xq, xqs, g, xo));
}
static int w_router_route(void *cv, const mrc_weight *W, const float *x, float *lg, int k, int gating, const float *b,
                          bool nw, float ws, int ng, int ngu, int32_t *ids, float *w) {
    PROF_OP(P_RROUTE, g_in->router_route(PC, W, x, lg, k, gating, b, nw, ws, ng, ngu, ids, w));
}
static int w_act_q8(void *cv, int gelu, float *g, const float *u, void *xq, int64_t r, int64_t k) {
    PROF_OP(P_ACTQ, g_in->act_q8(PC, gelu, g, u, xq, r, k));
}
static int w_copy(void *cv, float *dst, int64_t ds, const float *src, int64_t ss, int64_t rows, int64_t cols) {
    PROF_OP(P_COPY, g_in->copy_rows(PC, dst, ds, src, ss, rows, cols));
}
static int w_sort(void *cv, const int32_t *ids, int n, int ne, int k, int32_t *perm, int32_t *sids, int32_t *stok) {
    PROF_OP(P_SORT, g_in->moe_sort(PC, ids, n, ne, k, perm, sids, stok));
}
static int w_rows(void *cv, void *dst, const int32_t *di, const void *src, const int32_t *si, int64_t n, size_t rb) {
    PROF_OP(P_ROWS, g_in->rows_idx(PC, dst, di, src, si, n, rb));
}
static int w_sigmoid_mul(void *cv, float *y, const float *g, int64_t rows, int64_t n, int64_t gs, int gi) {
    PROF_OP(P_SIGM, g_in->sigmoid_mul(PC, y, g, rows, n, gs, gi));
}
static int w_ssm_gates(void *cv, const float *ba, const float *dt, const float *a, int T, int Hk, int rr, float *beta,
                       float *g) {
    PROF_OP(P_SSMG, g_in->ssm_gates(PC, ba, dt, a, T, Hk, rr, beta, g));
}
static int w_ssm_conv(void *cv, const float *x, int64_t xs, const float *w, int dc, int C, float *st, int64_t ss,
                      const int32_t *seq, int T, float *y, int64_t ys) {
    PROF_OP(P_SSMC, g_in->ssm_conv(PC, x, xs, w, dc, C, st, ss, seq, T, y, ys));
}
static int w_l2norm(void *cv, float *x, int nt, int nh, int n, int64_t ts, float eps) {
    PROF_OP(P_L2, g_in->l2norm(PC, x, nt, nh, n, ts, eps));
}
static int w_delta_rule(void *cv, const float *x, int64_t xs, const float *g, const float *beta, float *st, int64_t ss,
                        const int32_t *seq, int T, int Hk, int Hv, int S, float scale, float *o, int64_t os) {
    PROF_OP(P_DELTA, g_in->delta_rule(PC, x, xs, g, beta, st, ss, seq, T, Hk, Hv, S, scale, o, os));
}
static int w_norm_gate_q8(void *cv, float *o, float *z, const float *w, void *xq, int T, int Hv, int S, float eps) {
    PROF_OP(P_NGQ, g_in->norm_gate_q8(PC, o, z, w, xq, T, Hv, S, eps));
}
static int w_delta_rule_g(void *cv, const float *x, int64_t xs, const float *ba, const float *dt, const float *a,
                          float eps, float *st, int64_t ss, const int32_t *seq, int T, int Hk, int Hv, int S,
                          float scale, float *o, int64_t os) {
    PROF_OP(P_DELTAG, g_in->delta_rule_g(PC, x, xs, ba, dt, a, eps, st, ss, seq, T, Hk, Hv, S, scale, o, os));
}
/* timed on the destination's stream, where the copy is queued */
static int w_peer(void *dcv, void *dst, void *scv, const void *src, size_t n) {
    void *cv = dcv;
    PROF_OP(P_PEER, g_in->peer_copy(PC, dst, ((prof_ctx *)scv)->c, src, n));
}
static int w_gbegin(void *cv) {
    prof_ctx *p = cv;
    const int rc = g_in->graph_begin(p->c);
    if (rc == 0) p->capturing = true;
    return rc;
}
static int w_gend(void *cv) {
    prof_ctx *p = cv;
    p->capturing = false;
    return g_in->graph_end(p->c);
}
static int w_glaunch(void *cv) { PROF_OP(P_GRAPH, g_in->graph_launch(PC)); }
static unsigned w_epoch(void *cv) { return g_in->scratch_epoch(PC); }
static size_t w_scratch_bytes(void *cv) { return g_in->scratch_bytes(PC); }

const gpu_api *gpu_prof_wrap(const gpu_api *in) {
    if (!in || !in->stamp_new) return in;
    if (g_in == in) return &g_tab;
    g_in = in;
    g_tab = *in; /* device_count, device_info, type_supported, weight_view, q8_1_row_size, stamps: as they are */
    g_tab.init = w_init, g_tab.free = w_free, g_tab.sync = w_sync, g_tab.alloc = w_alloc, g_tab.dfree = w_dfree;
    g_tab.upload = w_upload, g_tab.download = w_download, g_tab.memset = w_memset;
    g_tab.quantize_q8_1 = w_quant, g_tab.matvec = w_matvec, g_tab.moe_matvec = w_moe_matvec;
    g_tab.rmsnorm = w_rmsnorm, g_tab.silu_mul = w_silu, g_tab.gelu_mul = w_gelu, g_tab.add = w_add, g_tab.add_rows = w_add_rows;
    g_tab.rope = w_rope, g_tab.moe_route = w_route, g_tab.attn = w_attn, g_tab.gemm = w_gemm;
    g_tab.kv_write = w_kvw, g_tab.moe_combine = w_combine, g_tab.copy_rows = w_copy;
    g_tab.moe_sort = w_sort, g_tab.rows_idx = w_rows, g_tab.peer_copy = w_peer;
    g_tab.rmsnorm_q8 = in->rmsnorm_q8 ? w_rmsnorm_q8 : NULL, g_tab.act_q8 = in->act_q8 ? w_act_q8 : NULL;
    g_tab.moe_matvec2 = in->moe_matvec2 ? w_moe_matvec2 : NULL;
    g_tab.norm_rope = in->norm_rope ? w_norm_rope : NULL;
    g_tab.norm_rope_kv = in->norm_rope_kv ? w_norm_rope_kv : NULL;
    g_tab.matvec_n = in->matvec_n ? w_matvec_n : NULL;
    g_tab.kv_write2 = in->kv_write2 ? w_kv_write2 : NULL;
    g_tab.moe_matvec_sum = in->moe_matvec_sum ? w_moe_matvec_sum : NULL;
    g_tab.moe_gate_up_q8 = in->moe_gate_up_q8 ? w_moe_gate_up_q8 : NULL;
    g_tab.moe_matvec_grp = in->moe_matvec_grp ? w_moe_matvec_grp : NULL;
    g_tab.moe_gate_up_q8_grp = in->moe_gate_up_q8_grp ? w_moe_gate_up_q8_grp : NULL;
    g_tab.router_route = in->router_route ? w_router_route : NULL;
    g_tab.sigmoid_mul = in->sigmoid_mul ? w_sigmoid_mul : NULL, g_tab.ssm_gates = in->ssm_gates ? w_ssm_gates : NULL;
    g_tab.ssm_conv = in->ssm_conv ? w_ssm_conv : NULL, g_tab.l2norm = in->l2norm ? w_l2norm : NULL;
    g_tab.delta_rule = in->delta_rule ? w_delta_rule : NULL;
    g_tab.delta_rule_g = in->delta_rule_g ? w_delta_rule_g : NULL;
    g_tab.norm_gate_q8 = in->norm_gate_q8 ? w_norm_gate_q8 : NULL;
    g_tab.graph_begin = in->graph_begin ? w_gbegin : NULL, g_tab.graph_end = in->graph_end ? w_gend : NULL;
    g_tab.graph_launch = in->graph_launch ? w_glaunch : NULL;
    g_tab.scratch_epoch = w_epoch, g_tab.scratch_bytes = w_scratch_bytes;
    /* the copy stream: passed through, untimed (its work overlaps the main stream's) */
    g_tab.upload_side = in->upload_side ? w_upload_side : NULL, g_tab.event_new = in->event_new ? w_event_new : NULL;
    g_tab.event_record = in->event_record ? w_event_record : NULL;
    g_tab.event_wait = in->event_wait ? w_event_wait : NULL, g_tab.event_free = in->event_free ? w_event_free : NULL;
    g_tab.stamp_new = NULL; /* the wrapped contexts are not the backend's: no stamps through this table */
    g_tab.stamp = NULL, g_tab.stamp_ms = NULL, g_tab.stamp_free = NULL;
    return &g_tab;
}

void gpu_prof_step(void) {
    for (int i = 0; i < PROF_MAX_CTX; i++)
        if (g_ctx[i]) g_ctx[i]->step_start = true;
}

void gpu_prof_reset(void) {
    for (int i = 0; i < PROF_MAX_CTX; i++) {
        prof_ctx *p = g_ctx[i];
        if (!p) continue;
        flush(p);
        memset(p->ms, 0, sizeof p->ms);
        memset(p->calls, 0, sizeof p->calls);
        p->gap_ms = 0;
        p->stamp_errors = 0;
        p->step_start = true;
    }
}

void gpu_prof_report(FILE *f) {
    for (int i = 0; i < PROF_MAX_CTX; i++) {
        prof_ctx *p = g_ctx[i];
        if (!p) continue;
        flush(p);
        double kern = 0, copy = 0;
        long n = 0;
        for (int op = 0; op < P_N; op++) {
            n += p->calls[op];
            if (is_copy(op)) copy += p->ms[op];
            else kern += p->ms[op];
        }
        if (n == 0) continue;
        const double tot = kern + copy + p->gap_ms;
        fprintf(f,
                "gpu profile: device %d (%s): %ld ops; kernels %.2f ms (%.1f %%), copies %.2f ms (%.1f %%), idle gaps "
                "%.2f ms (%.1f %%) within steps\n",
                p->dev, g_in->name, n, kern, 100.0 * kern / (tot > 0 ? tot : 1), copy,
                100.0 * copy / (tot > 0 ? tot : 1), p->gap_ms, 100.0 * p->gap_ms / (tot > 0 ? tot : 1));
        /* ops by time, largest first */
        int order[P_N];
        for (int op = 0; op < P_N; op++) order[op] = op;
        for (int a = 0; a < P_N; a++)
            for (int b = a + 1; b < P_N; b++)
                if (p->ms[order[b]] > p->ms[order[a]]) {
                    const int t = order[a];
                    order[a] = order[b], order[b] = t;
                }
        for (int k = 0; k < P_N; k++) {
            const int op = order[k];
            if (!p->calls[op]) continue;
            fprintf(f, "gpu profile:   %-16s %9ld calls %11.3f ms %6.1f %%  %9.2f us/call\n", k_op_names[op],
                    p->calls[op], p->ms[op], 100.0 * p->ms[op] / (tot > 0 ? tot : 1),
                    1e3 * p->ms[op] / (double)p->calls[op]);
        }
        if (p->stamp_errors) fprintf(f, "gpu profile:   (%d stamps failed: those ops are not timed)\n", p->stamp_errors);
    }
}
