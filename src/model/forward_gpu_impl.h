/*
 * forward_gpu_impl.h — the GPU executor's state, shared by forward_gpu.c (placement,
 * uploads, the layers, graphs) and forward_gpu_next.c (Qwen3-Next's delta net layer,
 * gated shared experts, the recurrent state's copies). Private to those two files.
 */
#ifndef MR_FORWARD_GPU_IMPL_H
#define MR_FORWARD_GPU_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "gpu/gpu_api.h"
#include "model/delta_net.h"
#include "model/forward.h"
#include "quant/types.h"

typedef struct {
    int dev; /* device index, -1: the layer runs on the CPU */
    bool exps_cpu;
    bool stream; /* exps_cpu, and large micro-batches stream the experts to the device (gpu_dev.ex_buf) */
    const gguf_tensor *ex_t[3]; /* stream: the mapped gate, up and down experts (NULL: none) */
    mrc_weight wq, wk, wv, wo, gate, up, down, gate_inp, gate_exps, up_exps, down_exps, gate_sh, up_sh, down_sh;
    mrc_weight wq_a, wq_b, wkv_a, wk_b, wv_b; /* MLA */
    mrc_weight wqkv, wqkv_gate, ssm_ba, ssm_out; /* gated delta net */
    mrc_weight gate_inp_sh;                      /* the shared experts' per-token gate (Qwen3-Next, Qwen2-MoE) */
    const float *ssm_conv1d, *ssm_dt_b, *ssm_a, *ssm_norm;
    float *rec_conv, *rec_ssm; /* gated delta net: the recurrent state, one slot per sequence */
    const float *attn_norm, *attn_post_norm, *ffn_norm, *ffn_post_norm, *q_norm, *k_norm, *q_a_norm, *kv_a_norm;
    const float *bq, *bk, *bv, *bo, *probs_b;
    void *k, *v; /* device KV */
} gpu_layer;

typedef struct {
    void *c;
    float *x, *xn, *tmp, *sh, *q, *k, *v, *att, *ffa, *ffb, *router, *selw, *slots, *logits, *rope_ff;
    void *xq_rep, *xq_moe; /* prompts: each pair's Q8_1 input (expert order); the pairs' down inputs */
    float *slots_s;        /* prompts: the pairs' down outputs in expert order */
    int32_t *perm, *sids, *stok; /* prompts: the pairs in expert order (mrc_moe_sort) */
    float *mask, *mask_swa;
    size_t mask_cap; /* floats of each mask */
    float *gmask, *gmask_swa; /* decode graphs: one row of n_ctx (fixed buffers the graph reads) */
    void *xq, *xq2;
    void *xqs; /* FG_SMALL_T rows of Q8_1: a few tokens' activations for fg_gmm's matvec path */
    int32_t *pos, *cells, *ids, *head_ids; /* head_ids: 0..H-1 (MLA's per-head matvecs as grouped ones) */
    int32_t *seq;                          /* the tokens' sequences (the recurrent state's slots) */
    float *qg, *shg; /* gated attention: per head [q | gate]; the shared experts' gate logits */
    float *d_qkv, *d_z, *d_ba, *d_g, *d_beta, *d_xc, *d_o; /* gated delta net scratch */
    float *m_qa, *m_ckv, *m_qabs, *m_lat, *m_o, *m_h; /* MLA scratch */
    void *xq_mla;
    /* RAM experts streamed for large micro-batches: two buffers of ex_cap bytes, each holding
     * one layer's routed expert tensors (ex_layer, -1: none yet), so that the next layer's
     * upload (on the copy stream) overlaps this one's kernels; ex_ready: the upload into a
     * buffer is done; ex_free (ex_used: recorded): the kernels reading it are done */
    void *ex_buf[2];
    size_t ex_cap;
    int ex_layer[2], ex_last;
    void *ex_ready[2], *ex_free[2];
    bool ex_used[2];
    mrc_weight out_norm_w, output;
    const float *out_norm;
    void **allocs;
    int n_allocs, cap_allocs;
    uint64_t alloc_bytes; /* of allocs: weights, KV, buffers */
    bool used;
} gpu_dev;

#define HEAD_ROWS 64 /* logits rows per output-head chunk (one GEMM each) */

struct model_gpu {
    const gpu_api *api;
    const mr_model *m;
    int n_dev, n_ub, n_ctx;
    gpu_dev d[PLC_MAX_DEV];
    gpu_layer *L;
    int out_dev;
    int x_at;          /* where the residual is: -1 host, else a device */
    int n_kv;          /* cells the masks cover in this micro-batch */
    bool any_swa;
    float *h_mask;     /* host masks (T, n_kv) x 2 */
    float *h_stage;    /* hybrid: the normed input and routing of a micro-batch, one download */
    size_t h_mask_cap;
    uint64_t weight_bytes;
    double bw_gbs;
    /* decode graphs (one device holds everything, no CPU experts): the captured step is for
     * graph_nkv cells (n_kv rounded up to 256, masked beyond the used ones) and the device's
     * scratch epoch; use_gmask: attention reads the graph masks with n_kv = graph_nkv */
    bool graph_ok, use_gmask;
    /* fused ops (see the top of this file) where the backend has them and MOERUN_CUDA_FUSE
     * is not 0: fewer launches per decode step, the same results */
    bool fuse;
    int mla_H; /* heads of the MLA layers (head_ids repeats 0..mla_H-1) */
    int offload_min; /* micro-batches of this many tokens stream RAM experts (0: never) */
    bool ex_async;   /* the backend has a copy stream and events: uploads overlap kernels */
    void **ex_pins;  /* MOERUN_PIN_EXPERTS: page-locked ranges of the mapped experts */
    int n_ex_pins;
    uint64_t streamed_bytes; /* expert bytes streamed so far */
    int graph_dev, graph_nkv;
    unsigned graph_epoch;
    uint64_t graph_bytes;
    int n_graph_launch, n_graph_capture;
    bool prof; /* MOERUN_CUDA_PROFILE: api is gpu_prof.c's table; report at free */
    void *pinned[8]; /* host staging buffers page-locked by model_gpu_pin */
    int n_pinned;
    /* gated delta net layers on devices: their state lives there (gpu_layer.rec_*), rec's host
     * slots are its copy for the sequence operations (delta_net.h; rec_pull, rec_push) */
    kv_rec *rec;
    bool any_delta;
};

static inline bool is_float(const mrc_weight *W) { return mr_type_is_float(W->type); }

/* Two quantized weights one launch can read with one activation: one type and row length. */
static inline bool same_q(const mrc_weight *a, const mrc_weight *b) {
    return !is_float(a) && a->type == b->type && a->k == b->k;
}

/* Up to this many tokens, fg_gmm multiplies quantized weights with the matvec kernels (every
 * token's activations quantized, one launch; the backend's grouped matvec reads each weight row
 * once for all of them) instead of dequantizing the matrix to F16 for a GEMM. */
#define FG_SMALL_T 8

/* y (T, W.m) = x (T, W.k) W^T. xq: x quantized (Q8_1, T == 1), or NULL to quantize here
 * (forward_gpu.c). */
int fg_gmm(model_gpu *g, gpu_dev *D, const mrc_weight *W, const float *x, const void *xq, int T, float *y);
/* fg_gmm of n matrices with one input x (rows of W[0]->k): a few tokens are quantized once. */
int fg_gmm_n(model_gpu *g, gpu_dev *D, int n, const mrc_weight *const *W, const float *x, const void *xq, int T,
             float *const *y);

/* forward_gpu_next.c */
/* The gated delta net layer il (qwen3next.c's model_attn_delta) on device D into D->tmp. */
int fg_delta_layer(model_run *r, const model_ubatch *ub, int il, gpu_dev *D, const void *xq);
/* The shared experts' output y (T rows) times sigmoid(gate_inp_shexp . xn) per token; nothing
 * without that gate. */
int fg_shared_gate(model_gpu *g, gpu_dev *D, const gpu_layer *L, const void *xq, int T, float *y);
/* kv_rec.dev_pull: the sequences' device state into rec's host slots. */
int fg_rec_pull(void *ud, uint64_t seqs);
/* Before a forward pass over T tokens of sequences seq: the changed host slots onto the
 * devices; the batch's sequences' device state is then the newer. */
int fg_rec_push(model_gpu *g, const int32_t *seq, int T);

#endif
