/*
 * gpu_api.h — the device backend as a table of functions, so the GPU forward
 * pass (src/model/forward_gpu.c) runs on either implementation:
 *
 *   "cuda"  src/cuda (cuda_api.c wraps the mrc_ functions of cuda_backend.h;
 *           only in -DMOERUN_CUDA=ON builds)
 *   "emu"   src/gpu/gpu_emu.c: the same API on the host, each op computed the
 *           way the CUDA kernel computes it (Q8_1 activations for the
 *           quantized matvec, F16 operands for the prompt GEMM), with
 *           "device" memory in plain host allocations. It exists so that the
 *           GPU executor (placement, uploads, residency of the hidden state,
 *           device KV cache, hybrid CPU experts) is tested against llama.cpp's
 *           logits on machines without a GPU, in CI. Enabled only by
 *           MOERUN_CUDA_EMU=N (N pretend devices); never chosen otherwise.
 *
 * Contexts are opaque (void *): one per device, as mrc_ctx. Signatures,
 * shapes and error conventions are those of cuda_backend.h (0 / -1 with
 * mr_seterr). Ops added for the executor (also in ops.cu): kv_write (cache
 * rows from float K/V), moe_combine (the weighted sum of expert outputs, or
 * with acc that sum added to y: the residual add fused), rmsnorm_q8 and
 * act_q8 (a norm or gate fused with the quantization that follows it),
 * copy_rows (strided 2-D float copy), moe_sort and rows_idx (a prompt's (token, slot)
 * pairs in expert order, gathered and scattered back), and moe_route's group-limited selection
 * (DeepSeek-V3: n_group groups, the best n_group_used by the sum of their two
 * best scores; 0 / 0: off).
 */
#ifndef MR_GPU_API_H
#define MR_GPU_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cuda/cuda_backend.h"

typedef struct gpu_api {
    const char *name; /* "cuda" | "emu" */
    int (*device_count)(void);
    int (*device_info)(int dev, mrc_device_info *out);
    void *(*init)(int dev);
    void (*free)(void *c);
    int (*sync)(void *c);
    void *(*alloc)(void *c, size_t n);
    void (*dfree)(void *c, void *p);
    int (*upload)(void *c, void *dst, const void *src, size_t n);
    int (*download)(void *c, void *dst, const void *src, size_t n);
    int (*memset)(void *c, void *dst, int v, size_t n);
    bool (*type_supported)(uint32_t type);
    int (*weight_view)(mrc_weight *w, void *dev_ptr, uint32_t type, int64_t k, int64_t m, int64_t n_mat);
    size_t (*q8_1_row_size)(int64_t k);
    int (*quantize_q8_1)(void *c, const float *x, void *xq, int64_t k, int64_t n_rows);
    int (*matvec)(void *c, const mrc_weight *W, int64_t mat, const float *x, const void *xq, float *y);
    int (*moe_matvec)(void *c, const mrc_weight *W, const int32_t *ids, int n_ids, const float *x, size_t x_stride,
                      const void *xq, size_t xq_stride, float *y);
    int (*rmsnorm)(void *c, float *out, const float *x, const float *w, int64_t n_rows, int n, float eps);
    int (*silu_mul)(void *c, float *g, const float *u, int64_t n);
    int (*gelu_mul)(void *c, float *g, const float *u, int64_t n);
    int (*add)(void *c, float *y, const float *x, int64_t n);
    int (*add_rows)(void *c, float *y, const float *x, int64_t rows, int64_t n); /* y[r*n+i] += x[i] */
    int (*rope)(void *c, const mrc_rope_params *p, float *x, const int32_t *pos, int n_tok, int n_heads,
                int head_dim);
    int (*moe_route)(void *c, const float *logits, int n_tok, int n_expert, int k, int gating, const float *bias,
                     bool norm_w, float w_scale, int n_group, int n_group_used, int32_t *ids, float *weights);
    int (*attn)(void *c, const mrc_attn_params *p, const float *q, const void *k, const void *v,
                       const float *mask, float *out);
    int (*gemm)(void *c, const mrc_weight *W, int64_t mat, const float *x, int64_t T, float *y);
    int (*kv_write)(void *c, uint32_t type, const float *src, int heads, int d, int T, const int32_t *cells,
                    void *base, size_t row_bytes, int n_ctx);
    int (*moe_combine)(void *c, float *y, const float *slots, const float *w, int n_tok, int k, int n, int acc);
    /* fused ops (NULL where a backend lacks them; the executor then runs the parts):
     * rmsnorm_q8 = add res to x (res not NULL), rmsnorm of x into out, then quantize_q8_1 of out
     * into xq; act_q8 = silu_mul (gelu: gelu_mul) of n_rows rows of k, then quantize_q8_1 of g.
     * Same floats and bytes as the parts. */
    int (*rmsnorm_q8)(void *c, float *out, void *xq, float *x, const float *res, const float *w, int64_t n_rows, int n,
                      float eps);
    int (*act_q8)(void *c, int gelu, float *g, const float *u, void *xq, int64_t n_rows, int64_t k);
    /* moe_matvec of W1 into y1 and of W2 into y2 with the same ids and Q8_1 activations (gate and
     * up) in one launch; W1, W2 of one quantized type and shape; 2 * n_ids <= 65535 */
    /* rmsnorm of each head row of x (n_tok, n_heads, head_dim) with w1 (heads < split) or w2,
     * then rope of x: the q and k norms and the rotation of a token in one launch */
    int (*norm_rope)(void *c, const mrc_rope_params *p, float *x, const int32_t *pos, int n_tok, int n_heads,
                     int head_dim, const float *w1, const float *w2, int split, float eps);
    /* norm_rope, then the k heads (from split on) and kv->v into the cache as kv_write2 (NULL: the
     * parts) */
    int (*norm_rope_kv)(void *c, const mrc_rope_params *p, float *x, const int32_t *pos, int n_tok, int n_heads,
                        int head_dim, const float *w1, const float *w2, int split, float eps, const mrc_kv_put *kv);
    /* y[i] = W[i] xq (matrix 0) for n <= 3 matrices of one quantized type and row length: q, k
     * and v of a token in one launch */
    int (*matvec_n)(void *c, int n, const mrc_weight *const *W, const void *xq, float *const *y);
    /* kv_write of K and of V (the same tokens, cells and heads) in one launch */
    int (*kv_write2)(void *c, int heads, int T, const int32_t *cells, int n_ctx, uint32_t type_k, const float *k,
                     int dk, void *base_k, size_t rb_k, uint32_t type_v, const float *v, int dv, void *base_v,
                     size_t rb_v);
    /* one token's down projections and their weighted sum (moe_matvec into slots + moe_combine
     * of one token) in one launch; quantized W */
    int (*moe_matvec_sum)(void *c, const mrc_weight *W, const int32_t *ids, int n_ids, const void *xq,
                          size_t xq_stride, const float *wts, float *y, int acc);
    /* moe_matvec2 of gate and up, then act_q8 of the result (g_out may be NULL): one launch; m a
     * multiple of 32 */
    int (*moe_gate_up_q8)(void *c, int gelu, const mrc_weight *Wg, const mrc_weight *Wu, const int32_t *ids, int n_ids,
                          const void *xq, size_t xq_stride, float *g_out, void *xq_out);
    /* one token's router (float W, E = W->m logits of x) and its routing (as moe_route) in one
     * launch */
    int (*router_route)(void *c, const mrc_weight *W, const float *x, float *logits, int k, int gating,
                        const float *bias, bool norm_w, float w_scale, int n_group, int n_group_used, int32_t *ids,
                        float *weights);
    int (*moe_matvec2)(void *c, const mrc_weight *W1, const mrc_weight *W2, const int32_t *ids, int n_ids,
                       const void *xq, size_t xq_stride, float *y1, float *y2);
    /* moe_matvec (W2 not NULL: moe_matvec2) and moe_gate_up_q8 over slots whose runs of equal ids
     * share a matrix (a prompt's pairs sorted by expert; ids NULL: all matrix 0, a few tokens):
     * each weight row read once per run of up to 8 slots (cuda_backend.h's mrc_moe_matvec_grp).
     * Quantized W; the same floats as the plain ops. */
    int (*moe_matvec_grp)(void *c, const mrc_weight *W1, const mrc_weight *W2, const int32_t *ids, int n_ids,
                          const void *xq, size_t xq_stride, float *y1, float *y2);
    int (*moe_gate_up_q8_grp)(void *c, int gelu, const mrc_weight *Wg, const mrc_weight *Wu, const int32_t *ids,
                              int n_ids, const void *xq, size_t xq_stride, float *g_out, void *xq_out);
    /* Qwen3-Next's layers (and Qwen2-MoE's gated shared experts); NULL: the backend cannot run
     * them. Semantics: cuda_backend.h's mrc_sigmoid_mul, mrc_ssm_gates, mrc_ssm_conv, mrc_l2norm,
     * mrc_delta_rule. */
    int (*sigmoid_mul)(void *c, float *y, const float *gate, int64_t rows, int64_t n, int64_t g_stride, int g_inc);
    int (*ssm_gates)(void *c, const float *ba, const float *dt_bias, const float *a_coef, int T, int Hk, int rr,
                     float *beta, float *g);
    int (*ssm_conv)(void *c, const float *x, int64_t x_stride, const float *w, int d_conv, int C, float *state,
                    int64_t state_stride, const int32_t *seq, int T, float *y, int64_t y_stride);
    int (*l2norm)(void *c, float *x, int n_tok, int n_heads, int n, int64_t tok_stride, float eps);
    int (*delta_rule)(void *c, const float *x, int64_t x_stride, const float *g, const float *beta, float *state,
                      int64_t state_stride, const int32_t *seq, int T, int Hk, int Hv, int S, float scale, float *o,
                      int64_t o_stride);
    /* fused (NULL: the parts): rmsnorm + act_q8 of the gated norm (mrc_norm_gate_q8); ssm_gates
     * + l2norm + delta_rule (mrc_delta_rule_g) */
    int (*norm_gate_q8)(void *c, float *o, float *z, const float *w, void *xq, int T, int Hv, int S, float eps);
    int (*delta_rule_g)(void *c, const float *x, int64_t x_stride, const float *ba, const float *dt_bias,
                        const float *a_coef, float eps, float *state, int64_t state_stride, const int32_t *seq, int T,
                        int Hk, int Hv, int S, float scale, float *o, int64_t o_stride);
    int (*copy_rows)(void *c, float *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows,
                     int64_t cols);
    /* n bytes from src on src_c's device to dst on dst_c's (after src_c's queued work) */
    int (*peer_copy)(void *dst_c, void *dst, void *src_c, const void *src, size_t n);
    int (*moe_sort)(void *c, const int32_t *ids, int n, int n_expert, int k, int32_t *perm, int32_t *sids,
                    int32_t *stok);
    int (*rows_idx)(void *c, void *dst, const int32_t *dst_idx, const void *src, const int32_t *src_idx, int64_t n,
                    size_t row_bytes);
    /* graphs (cuda_backend.h's mrc_graph_*): ops queued between begin and end are recorded, not
     * run, with their arguments by value; launch runs them again. scratch_epoch: see
     * mrc_scratch_epoch. */
    int (*graph_begin)(void *c);
    int (*graph_end)(void *c);
    int (*graph_launch)(void *c);
    unsigned (*scratch_epoch)(void *c);
    size_t (*scratch_bytes)(void *c); /* the backend's own scratch on the device (its peak) */
    /* page-lock / release an existing host range (the staging buffers of host <-> device
     * copies); emu: nothing to do */
    int (*host_register)(void *p, size_t n);
    int (*host_register_ro)(const void *p, size_t n); /* read-only mapped memory (a GGUF file's pages) */
    void (*host_unregister)(void *p);
    /* the copy stream (cuda_backend.h's mrc_upload_side, mrc_event_*; NULL: none, the executor
     * uploads on the main stream): an upload queued there, events recorded after the main (side
     * 0) or copy (side 1) stream's queued work, a stream made to wait for one. emu: every op is
     * done when it returns, so waits are nothing. */
    int (*upload_side)(void *c, void *dst, const void *src, size_t n);
    void *(*event_new)(void *c);
    int (*event_record)(void *c, void *e, int side);
    int (*event_wait)(void *c, void *e, int side);
    void (*event_free)(void *c, void *e);
    /* timestamps on the context's stream (cuda: events; emu: the host clock), for gpu_prof.c:
     * stamp_new makes one, stamp records it after the work queued so far, stamp_ms gives the
     * milliseconds between two recorded stamps (waiting for `to` to complete; < 0: error). */
    void *(*stamp_new)(void *c);
    int (*stamp)(void *c, void *s);
    double (*stamp_ms)(void *c, void *from, void *to);
    void (*stamp_free)(void *c, void *s);
} gpu_api;

/* The backend GPU layers run on: "emu" when MOERUN_CUDA_EMU is set to a
 * positive count, else "cuda" in CUDA builds, else NULL. */
const gpu_api *gpu_api_get(void);

/* MOERUN_CUDA_PROFILE=1 (gpu_prof.c): a table that runs every op of `inner`
 * between two stamps and keeps, per device context, the time of each op kind
 * (kernels and copies) and the idle gaps between consecutive ops of one step
 * (gpu_prof_step marks where a step begins: the time before it is not a gap).
 * gpu_prof_report prints them (and flushes); gpu_prof_reset forgets them (after
 * loading). One profiled table per process. */
const gpu_api *gpu_prof_wrap(const gpu_api *inner);
bool gpu_prof_enabled(void); /* MOERUN_CUDA_PROFILE set and not "0" */
void gpu_prof_step(void);
void gpu_prof_reset(void);
void gpu_prof_report(FILE *f);
const gpu_api *gpu_api_emu(void);
#ifdef MOERUN_HAVE_CUDA
const gpu_api *gpu_api_cuda(void); /* src/cuda/cuda_api.c */
#endif

#endif
