/*
 * cuda_api.c — the CUDA backend (cuda_backend.h) as a gpu_api table
 * (src/gpu/gpu_api.h), for the GPU forward pass. Built only with CUDA.
 */
#include <stdio.h>
#include <stdlib.h>

#include "gpu/gpu_api.h"

/* Every op makes its context's device current first (mrc_make_current: a cached
 * cudaSetDevice): kernels, cuBLAS and allocations act on the current device, and with two
 * GPUs the executor alternates between their contexts. */

/* CALL on context c's device (-1 when it cannot be made current). */
#define ON(c, CALL) (mrc_make_current(c) ? -1 : (CALL))

/* MOERUN_CUDA_REPEAT=N lists every physical device N times (CUDA0 and CUDA1 on one GPU),
 * so a multi-device layer split runs, and is tested, on a machine with one GPU. */
static int repeat(void) {
    const char *s = getenv("MOERUN_CUDA_REPEAT");
    const int n = s && *s ? atoi(s) : 1;
    return n < 1 ? 1 : n > 8 ? 8 : n;
}
static int w_count(void) { return mrc_device_count() * repeat(); }
static int w_info(int dev, mrc_device_info *out) {
    const int n = mrc_device_count();
    if (n <= 0 || mrc_device_info_get(dev % n, out)) return -1;
    if (dev >= n) {
        char nm[sizeof out->name + 32];
        snprintf(nm, sizeof nm, "%.200s (listed again as %d)", out->name, dev);
        snprintf(out->name, sizeof out->name, "%.255s", nm);
        out->free /= (uint64_t)repeat();
    } else if (repeat() > 1)
        out->free /= (uint64_t)repeat();
    return 0;
}
static void *w_init(int dev) {
    const int n = mrc_device_count();
    return mrc_init(n > 0 ? dev % n : dev);
}
static void w_free(void *c) { mrc_free(c); }
static int w_sync(void *c) { return ON(c, mrc_sync(c)); }
static void *w_alloc(void *c, size_t n) { return mrc_alloc(c, n); } /* sets the device itself */
static void w_dfree(void *c, void *p) {
    (void)c;
    mrc_dfree(p);
}
static int w_upload(void *c, void *d, const void *s, size_t n) { return ON(c, mrc_upload(c, d, s, n)); }
static int w_download(void *c, void *d, const void *s, size_t n) { return ON(c, mrc_download(c, d, s, n)); }
static int w_memset(void *c, void *d, int v, size_t n) { return ON(c, mrc_memset(c, d, v, n)); }
static int w_quantize(void *c, const float *x, void *xq, int64_t k, int64_t n) {
    return ON(c, mrc_quantize_q8_1(c, x, xq, k, n));
}
static int w_matvec(void *c, const mrc_weight *W, int64_t mat, const float *x, const void *xq, float *y) {
    return ON(c, mrc_matvec(c, W, mat, x, xq, y));
}
static int w_moe_matvec(void *c, const mrc_weight *W, const int32_t *ids, int n_ids, const float *x, size_t xs,
                        const void *xq, size_t xqs, float *y) {
    return ON(c, mrc_moe_matvec(c, W, ids, n_ids, x, xs, xq, xqs, y));
}
static int w_rmsnorm(void *c, float *o, const float *x, const float *w, int64_t r, int n, float eps) {
    return ON(c, mrc_rmsnorm(c, o, x, w, r, n, eps));
}
static int w_silu_mul(void *c, float *g, const float *u, int64_t n) { return ON(c, mrc_silu_mul(c, g, u, n)); }
static int w_gelu_mul(void *c, float *g, const float *u, int64_t n) { return ON(c, mrc_gelu_mul(c, g, u, n)); }
static int w_add(void *c, float *y, const float *x, int64_t n) { return ON(c, mrc_add(c, y, x, n)); }
static int w_add_rows(void *c, float *y, const float *x, int64_t r, int64_t n) {
    return ON(c, mrc_add_rows(c, y, x, r, n));
}
static int w_rope(void *c, const mrc_rope_params *p, float *x, const int32_t *pos, int nt, int nh, int hd) {
    return ON(c, mrc_rope(c, p, x, pos, nt, nh, hd));
}
static int w_route(void *c, const float *l, int nt, int ne, int k, int g, const float *b, bool nw, float ws, int ng,
                   int ngu, int32_t *ids, float *w) {
    return ON(c, mrc_moe_route_ex(c, l, nt, ne, k, g, b, nw, ws, ng, ngu, ids, w));
}
static int w_copy_rows(void *c, float *d, int64_t ds, const float *s, int64_t ss, int64_t r, int64_t n) {
    return ON(c, mrc_copy_rows(c, d, ds, s, ss, r, n));
}
static int w_attn(void *c, const mrc_attn_params *p, const float *q, const void *k, const void *v, const float *m,
                  float *o) { return ON(c, mrc_attn(c, p, q, k, v, m, o)); }
static int w_gemm(void *c, const mrc_weight *W, int64_t mat, const float *x, int64_t T, float *y) {
    return ON(c, mrc_gemm(c, W, mat, x, T, y));
}
static int w_kv_write(void *c, uint32_t type, const float *src, int heads, int d, int T, const int32_t *cells,
                      void *base, size_t rb, int n_ctx) {
    return ON(c, mrc_kv_write(c, type, src, heads, d, T, cells, base, rb, n_ctx));
}
static int w_moe_sort(void *c, const int32_t *ids, int n, int ne, int k, int32_t *perm, int32_t *sids, int32_t *stok) {
    return ON(c, mrc_moe_sort(c, ids, n, ne, k, perm, sids, stok));
}
static int w_rows_idx(void *c, void *dst, const int32_t *di, const void *src, const int32_t *si, int64_t n, size_t rb) {
    return ON(c, mrc_rows_idx(c, dst, di, src, si, n, rb));
}
static int w_peer_copy(void *dc, void *dst, void *sc, const void *src, size_t n) {
    return mrc_peer_copy(dc, dst, sc, src, n);
}
static int w_combine(void *c, float *y, const float *s, const float *w, int nt, int k, int n, int acc) {
    return ON(c, mrc_moe_combine(c, y, s, w, nt, k, n, acc));
}
static int w_rmsnorm_q8(void *c, float *o, void *xq, float *x, const float *res, const float *w, int64_t r, int n,
                        float eps) {
    return ON(c, mrc_rmsnorm_q8(c, o, xq, x, res, w, r, n, eps));
}
static int w_moe_matvec2(void *c, const mrc_weight *W1, const mrc_weight *W2, const int32_t *ids, int n,
                         const void *xq, size_t xqs, float *y1, float *y2) {
    return ON(c, mrc_moe_matvec2(c, W1, W2, ids, n, xq, xqs, y1, y2));
}
static int w_moe_matvec_grp(void *c, const mrc_weight *W1, const mrc_weight *W2, const int32_t *ids, int n,
                            const void *xq, size_t xqs, float *y1, float *y2) {
    return ON(c, mrc_moe_matvec_grp(c, W1, W2, ids, n, xq, xqs, y1, y2));
}
static int w_moe_gate_up_q8_grp(void *c, int gelu, const mrc_weight *Wg, const mrc_weight *Wu, const int32_t *ids,
                                int n, const void *xq, size_t xqs, float *g, void *xo) {
    return ON(c, mrc_moe_gate_up_q8_grp(c, gelu, Wg, Wu, ids, n, xq, xqs, g, xo));
}
static int w_norm_rope(void *c, const mrc_rope_params *p, float *x, const int32_t *pos, int nt, int nh, int hd,
                       const float *w1, const float *w2, int split, float eps) {
    return ON(c, mrc_norm_rope(c, p, x, pos, nt, nh, hd, w1, w2, split, eps));
}
static int w_matvec_n(void *c, int n, const mrc_weight *const *W, const void *xq, float *const *y) {
    return ON(c, mrc_matvec_n(c, n, W, xq, y));
}
static int w_norm_rope_kv(void *c, const mrc_rope_params *p, float *x, const int32_t *pos, int nt, int nh, int hd,
                          const float *w1, const float *w2, int split, float eps, const mrc_kv_put *kv) {
    return ON(c, mrc_norm_rope_kv(c, p, x, pos, nt, nh, hd, w1, w2, split, eps, kv));
}
static int w_kv_write2(void *c, int heads, int T, const int32_t *cells, int n_ctx, uint32_t tk, const float *k,
                       int dk, void *bk, size_t rbk, uint32_t tv, const float *v, int dv, void *bv, size_t rbv) {
    return ON(c, mrc_kv_write2(c, heads, T, cells, n_ctx, tk, k, dk, bk, rbk, tv, v, dv, bv, rbv));
}
static int w_moe_matvec_sum(void *c, const mrc_weight *W, const int32_t *ids, int n, const void *xq, size_t xqs,
                            const float *wts, float *y, int acc) {
    return ON(c, mrc_moe_matvec_sum(c, W, ids, n, xq, xqs, wts, y, acc));
}
static int w_moe_gate_up_q8(void *c, int gelu, const mrc_weight *Wg, const mrc_weight *Wu, const int32_t *ids, int n,
                            const void *xq, size_t xqs, float *g, void *xo) {
    return ON(c, mrc_moe_gate_up_q8(c, gelu, Wg, Wu, ids, n, xq, xqs, g, xo));
}
static int w_router_route(void *c, const mrc_weight *W, const float *x, float *lg, int k, int gating, const float *b,
                          bool nw, float ws, int ng, int ngu, int32_t *ids, float *w) {
    return ON(c, mrc_router_route(c, W, x, lg, k, gating, b, nw, ws, ng, ngu, ids, w));
}
static int w_act_q8(void *c, int gelu, float *g, const float *u, void *xq, int64_t r, int64_t k) {
    return ON(c, mrc_act_q8(c, gelu, g, u, xq, r, k));
}

static int w_gbegin(void *c) { return ON(c, mrc_graph_begin(c)); }
static int w_gend(void *c) { return ON(c, mrc_graph_end(c)); }
static int w_glaunch(void *c) { return ON(c, mrc_graph_launch(c)); }
static unsigned w_epoch(void *c) { return mrc_scratch_epoch(c); }
static size_t w_scratch_bytes(void *c) { return mrc_scratch_bytes(c); }
static int w_host_register(void *p, size_t n) { return mrc_host_register(p, n); }
static int w_host_register_ro(const void *p, size_t n) { return mrc_host_register_ro(p, n); }
static void w_host_unregister(void *p) { mrc_host_unregister(p); }

static int w_upload_side(void *c, void *d, const void *s, size_t n) { return ON(c, mrc_upload_side(c, d, s, n)); }
static void *w_event_new(void *c) { return mrc_make_current(c) ? NULL : mrc_event_new(c); }
static int w_event_record(void *c, void *e, int side) { return ON(c, mrc_event_record(c, e, side)); }
static int w_event_wait(void *c, void *e, int side) { return ON(c, mrc_event_wait(c, e, side)); }
static void w_event_free(void *c, void *e) {
    if (!mrc_make_current(c)) mrc_event_free(e);
}
static void *w_stamp_new(void *c) { return mrc_make_current(c) ? NULL : mrc_stamp_new(c); }
static int w_stamp(void *c, void *s) { return ON(c, mrc_stamp(c, s)); }
static double w_stamp_ms(void *c, void *a, void *b) {
    (void)c;
    return mrc_stamp_ms(a, b);
}
static int w_sigmoid_mul(void *c, float *y, const float *g, int64_t rows, int64_t n, int64_t gs, int gi) {
    return ON(c, mrc_sigmoid_mul(c, y, g, rows, n, gs, gi));
}
static int w_ssm_gates(void *c, const float *ba, const float *dt, const float *a, int T, int Hk, int rr, float *beta,
                       float *g) {
    return ON(c, mrc_ssm_gates(c, ba, dt, a, T, Hk, rr, beta, g));
}
static int w_ssm_conv(void *c, const float *x, int64_t xs, const float *w, int dc, int C, float *st, int64_t ss,
                      const int32_t *seq, int T, float *y, int64_t ys) {
    return ON(c, mrc_ssm_conv(c, x, xs, w, dc, C, st, ss, seq, T, y, ys));
}
static int w_l2norm(void *c, float *x, int nt, int nh, int n, int64_t ts, float eps) {
    return ON(c, mrc_l2norm(c, x, nt, nh, n, ts, eps));
}
static int w_delta_rule(void *c, const float *x, int64_t xs, const float *g, const float *beta, float *st, int64_t ss,
                        const int32_t *seq, int T, int Hk, int Hv, int S, float scale, float *o, int64_t os) {
    return ON(c, mrc_delta_rule(c, x, xs, g, beta, st, ss, seq, T, Hk, Hv, S, scale, o, os));
}
static int w_norm_gate_q8(void *c, float *o, float *z, const float *w, void *xq, int T, int Hv, int S, float eps) {
    return ON(c, mrc_norm_gate_q8(c, o, z, w, xq, T, Hv, S, eps));
}
static int w_delta_rule_g(void *c, const float *x, int64_t xs, const float *ba, const float *dt, const float *a,
                          float eps, float *st, int64_t ss, const int32_t *seq, int T, int Hk, int Hv, int S,
                          float scale, float *o, int64_t os) {
    return ON(c, mrc_delta_rule_g(c, x, xs, ba, dt, a, eps, st, ss, seq, T, Hk, Hv, S, scale, o, os));
}
static void w_stamp_free(void *c, void *s) {
    (void)c;
    mrc_stamp_free(s);
}

static const gpu_api k_cuda = {
    .name = "cuda",
    .device_count = w_count,
    .device_info = w_info,
    .init = w_init,
    .free = w_free,
    .sync = w_sync,
    .alloc = w_alloc,
    .dfree = w_dfree,
    .upload = w_upload,
    .download = w_download,
    .memset = w_memset,
    .type_supported = mrc_type_supported,
    .weight_view = mrc_weight_view,
    .q8_1_row_size = mrc_q8_1_row_size,
    .quantize_q8_1 = w_quantize,
    .matvec = w_matvec,
    .moe_matvec = w_moe_matvec,
    .rmsnorm = w_rmsnorm,
    .silu_mul = w_silu_mul,
    .gelu_mul = w_gelu_mul,
    .add = w_add,
    .add_rows = w_add_rows,
    .rope = w_rope,
    .moe_route = w_route,
    .attn = w_attn,
    .gemm = w_gemm,
    .kv_write = w_kv_write,
    .moe_combine = w_combine,
    .rmsnorm_q8 = w_rmsnorm_q8,
    .act_q8 = w_act_q8,
    .moe_matvec2 = w_moe_matvec2,
    .moe_matvec_grp = w_moe_matvec_grp,
    .moe_gate_up_q8_grp = w_moe_gate_up_q8_grp,
    .norm_rope = w_norm_rope,
    .norm_rope_kv = w_norm_rope_kv,
    .matvec_n = w_matvec_n,
    .kv_write2 = w_kv_write2,
    .moe_matvec_sum = w_moe_matvec_sum,
    .moe_gate_up_q8 = w_moe_gate_up_q8,
    .router_route = w_router_route,
    .moe_sort = w_moe_sort,
    .peer_copy = w_peer_copy,
    .rows_idx = w_rows_idx,
    .copy_rows = w_copy_rows,
    .sigmoid_mul = w_sigmoid_mul,
    .ssm_gates = w_ssm_gates,
    .ssm_conv = w_ssm_conv,
    .l2norm = w_l2norm,
    .delta_rule = w_delta_rule,
    .delta_rule_g = w_delta_rule_g,
    .norm_gate_q8 = w_norm_gate_q8,
    .graph_begin = w_gbegin,
    .graph_end = w_gend,
    .graph_launch = w_glaunch,
    .scratch_epoch = w_epoch,
    .scratch_bytes = w_scratch_bytes,
    .host_register = w_host_register,
    .host_register_ro = w_host_register_ro,
    .host_unregister = w_host_unregister,
    .upload_side = w_upload_side,
    .event_new = w_event_new,
    .event_record = w_event_record,
    .event_wait = w_event_wait,
    .event_free = w_event_free,
    .stamp_new = w_stamp_new,
    .stamp = w_stamp,
    .stamp_ms = w_stamp_ms,
    .stamp_free = w_stamp_free,
};

const gpu_api *gpu_api_cuda(void) { return &k_cuda; }
