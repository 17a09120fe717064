/*
 * model.h — a loaded model: hyperparameters, the architecture table entry,
 * per-layer weights (views into the GGUF mapping), and the forward pass entry.
 *
 * Architectures are data (arch.c): each GGUF architecture names an attention
 * block kind, an FFN kind, a RoPE style, an activation and a few flags. Block
 * kinds are implemented once (forward_attn.c, forward_ffn.c). To add an
 * architecture: one table entry in arch.c, its hparams quirks in
 * load_hparams_arch() (load.c) and, at most, one new block kind.
 *
 * Shapes (GGUF order, ne[0] innermost); D = n_embd, H/Hkv heads, Dk/Dv head
 * sizes, F FFN width, Fe expert FFN width, E experts, V vocabulary:
 *   token_embd (D, V)   wq (D, H*Dk)  wk (D, Hkv*Dk)  wv (D, Hkv*Dv)  wo (H*Dv, D)
 *   ffn_gate/up (D, F)  ffn_down (F, D)
 *   gate_inp (D, E)  gate/up_exps (D, Fe, E)  down_exps (Fe, D, E)
 */
#ifndef MR_MODEL_H
#define MR_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "cpu/cpu.h"
#include "gguf/gguf.h"
#include "moerun.h"

#define MODEL_MAX_LAYERS 512

/* ---- block kinds -------------------------------------------------------------- */
typedef enum {
    MODEL_ATTN_GQA = 0, /* q/k/v projections, optional biases, optional QK-norm, RoPE */
    MODEL_ATTN_MLA = 1, /* deepseek2 multi-head latent attention (attn_mla.c) */
    MODEL_ATTN_GATED = 2, /* qwen3next full attention: q projection carries q and a sigmoid output gate */
    MODEL_ATTN_DELTA = 3, /* qwen3next gated delta net (linear attention, recurrent state per sequence) */
} model_attn_kind;

typedef enum {
    MODEL_FFN_DENSE = 0, /* act(gate x) * (up x) -> down */
    MODEL_FFN_MOE = 1,   /* routed experts (+ optional shared experts) */
} model_ffn_kind;

typedef enum { MODEL_ACT_SILU = 0, MODEL_ACT_GELU = 1 } model_act;

/* llama.cpp's llama_expert_gating_func_type values (GGUF expert_gating_func). */
typedef enum {
    MODEL_GATING_SOFTMAX = 1,        /* softmax over all expert logits, then top-k */
    MODEL_GATING_SIGMOID = 2,        /* sigmoid per expert, then top-k */
    MODEL_GATING_SOFTMAX_WEIGHT = 3, /* top-k on logits, softmax over the k chosen */
} model_gating;

/* Architecture flags. */
enum {
    ARCH_QK_NORM = 1 << 0,      /* attn_q_norm / attn_k_norm (per head RMSNorm) required */
    ARCH_POST_NORMS = 1 << 1,   /* post_attention_norm and post_ffw_norm (gemma2/3) */
    ARCH_EMBD_SCALE = 1 << 2,   /* embeddings scaled by sqrt(D) (gemma) */
    ARCH_TIED_OK = 1 << 3,      /* output.weight may be absent: tied to token_embd */
    ARCH_SWA_PATTERN = 1 << 4,  /* sliding-window layers by pattern when sliding_window is set */
    ARCH_MOE = 1 << 5,          /* FFN of layers >= leading_dense_block_count is MoE */
    ARCH_HYBRID_DELTA = 1 << 6, /* qwen3next: gated delta-net layers + gated attention every Nth layer;
                                   the FFN norm is named post_attention_norm (qwen3next.c) */
};

typedef struct {
    const char *name;      /* general.architecture */
    model_attn_kind attn;
    int rope_mode;         /* CPU_ROPE_NORM (llama: interleaved pairs) | CPU_ROPE_NEOX (halves) */
    model_act act;
    unsigned flags;
    model_gating gating;   /* default when expert_gating_func is absent */
    bool moe_norm_w;       /* default for expert_weights_norm */
    int swa_pattern;       /* default sliding_window_pattern (every Nth layer global) */
    float swa_rope_base;   /* rope base of sliding-window layers (0: same as global) */
} model_arch;

/* The table entry for a GGUF architecture name, NULL when unsupported. */
const model_arch *model_arch_find(const char *name);
/* "qwen3moe, qwen3, ..." for messages. */
const char *model_arch_names(void);

/* ---- hyperparameters ---------------------------------------------------------------- */
typedef struct {
    int n_layer, n_embd, n_vocab, n_ctx_train;
    int n_head_max, n_head_kv_max; /* maxima over layers (per-layer values in model_layer) */
    int head_dim_k, head_dim_v;    /* attention.key_length / value_length */
    int n_rot;                     /* rope.dimension_count (default head_dim_k) */
    int n_ff;                      /* dense FFN width (feed_forward_length, max over layers) */
    float rms_eps;

    /* MoE */
    int n_expert, n_expert_used, n_ff_exp;
    int n_expert_shared, n_ff_shexp;  /* shared experts (width n_ff_shexp = n_ff_exp * count by default) */
    int n_leading_dense;              /* leading_dense_block_count */
    model_gating gating;
    bool expert_norm_w;               /* normalize the top-k weights to sum 1 */
    float expert_w_scale;             /* multiply the weights (expert_weights_scale; 0/1: off) */
    int n_expert_groups, n_group_used;/* group-limited routing (0: off) */

    /* RoPE */
    float rope_base, rope_freq_scale; /* freq_scale = 1 / rope.scaling.factor */
    float rope_base_swa, rope_freq_scale_swa;
    int rope_scaling_yarn;            /* 1 when rope.scaling.type = yarn */
    int n_ctx_orig_yarn;
    float yarn_ext_factor, yarn_attn_factor, yarn_beta_fast, yarn_beta_slow, yarn_log_mul;

    /* attention */
    int n_swa;                        /* sliding window (0: none) */
    float attn_scale;                 /* q.k scale; 0 = 1/sqrt(head_dim_k) */
    float attn_softcap, logit_softcap;/* 0: off */
    float embd_scale;                 /* 0: off */

    /* MLA (deepseek2), read by the MLA block kind */
    int q_lora_rank, kv_lora_rank, head_dim_k_mla, head_dim_v_mla;

    /* gated delta net (qwen3next), read by qwen3next.c: ssm.conv_kernel, ssm.state_size (key head
     * size), ssm.group_count (key heads), ssm.time_step_rank (value heads), ssm.inner_size (value
     * heads * value head size) */
    int ssm_d_conv, ssm_d_state, ssm_n_group, ssm_dt_rank, ssm_d_inner;
} model_hparams;

/* ---- weights ------------------------------------------------------------------------------ */
typedef struct {
    model_attn_kind attn_kind;
    model_ffn_kind ffn_kind;
    int n_head, n_head_kv;
    bool swa;                          /* sliding-window layer */
    float rope_base, rope_freq_scale;  /* this layer's */

    mr_weight attn_norm, attn_post_norm, ffn_norm, ffn_post_norm;

    /* GQA */
    mr_weight wq, wk, wv, wo, bq, bk, bv, bo, q_norm, k_norm;

    /* MLA: filled by the MLA binder */
    mr_weight wq_a, q_a_norm, wq_b, wkv_a_mqa, kv_a_norm, wkv_b, wk_b, wv_b;
    /* MLA prompt form (attn_mla.c, derived at load): the nope rows of Wk_b[h]^T of every head, then
     * the dv rows of Wv_b[h] of every head, R columns; decompresses cached latents into K / V heads */
    mr_weight wkv_nb;

    /* dense FFN */
    mr_weight ffn_gate, ffn_up, ffn_down;

    /* MoE */
    mr_weight gate_inp, exp_probs_b, gate_exps, up_exps, down_exps;
    mr_weight gate_shexp, up_shexp, down_shexp, gate_inp_shexp;

    /* gated delta net (qwen3next.c): attn_qkv (D, 2*Hk*Sk + Hv*Sv), attn_gate (D, Hv*Sv) or the
     * legacy fused ssm_in (D, 2*Hk*Sk + 2*Hv*Sv); ssm_conv1d (d_conv, conv channels); ssm_dt.bias,
     * ssm_a (Hv); ssm_ba (D, 2*Hv); ssm_norm (Sv); ssm_out (Hv*Sv, D) */
    mr_weight wqkv, wqkv_gate, ssm_in, ssm_conv1d, ssm_dt_b, ssm_a, ssm_ba, ssm_norm, ssm_out;

    /* KV cache geometry of this layer (set by the attention binder): values per
     * cell and KV head. MLA caches one latent "head" (k: kv_lora + rope, v in k). */
    int kv_heads, kv_dk, kv_dv;
    bool kv_v_in_k;
} model_layer;

struct tok_vocab;

struct mr_model {
    gguf_ctx *g;
    const model_arch *arch;
    model_hparams hp;
    mr_weight tok_embd, output_norm, output, rope_freqs;
    model_layer *layers;
    struct tok_vocab *vocab;
    char name[256];
    uint64_t n_params, weight_bytes, active_bytes_est;
    int n_threads;
    void *mla_owned; /* MLA weights derived at load (attn_mla.c), freed by model_mla_free_owned */
    /* repack.c: weights interleaved by 8 rows (R8 types); a mapped model's are in this arena */
    int n_repacked, n_repacked_fast; /* ..., of which on the fast kernels (R8F) */
    bool repack_fast;                /* -rtr: every repacked weight on the fast kernels */
    void *repack_arena;
    size_t repack_arena_size;
    /* placement flags as given to mr_model_load (strings owned; NULL when absent),
     * reported as a plan by mr_ctx_new (src/engine/plan.c) */
    int plc_ngl, plc_n_cpu_moe;
    char *plc_overrides, *plc_split_mode, *plc_tensor_split, *plc_devices;
    /* per GGUF tensor: placed on a device that will run it (not repacked for the CPU); NULL: none */
    bool *on_device;
};

/* Look up an optional tensor "blk.IL.NAME.weight" (il < 0: "NAME.weight"):
 * fills *w (data NULL if absent). Checks the type can be used. */
int model_bind(mr_model *m, mr_weight *w, int il, const char *name, const char *suffix, bool required);
/* Check a bound weight has ne = {k, m, n_mat} (n_mat 1 for matrices and vectors). */
int model_check_shape(const mr_weight *w, int64_t k, int64_t m, int64_t n_mat);
/* A norm/bias vector: F32 of n elements. */
int model_check_vec(const mr_weight *w, int64_t n);
/* A matmul weight: that shape and a type src/quant can multiply. */
int model_check_mat(const mr_weight *w, int64_t k, int64_t m, int64_t n_mat);

/* Binders per block kind (load_*.c). Each binds and checks the layer's
 * tensors for its kind and sets the layer's KV geometry. */
int model_bind_attn_gqa(mr_model *m, int il);
int model_bind_attn_mla(mr_model *m, int il);   /* MLA: extension point */
void model_mla_free_owned(mr_model *m);          /* attn_mla.c: frees m->mla_owned */
int model_mla_prepare(mr_model *m, bool repack); /* attn_mla.c: the prompt form's weights (after placement) */
int model_bind_ffn(mr_model *m, int il);
int model_bind_attn_gated(mr_model *m, int il); /* qwen3next.c */
int model_bind_delta(mr_model *m, int il);      /* qwen3next.c */
/* qwen3next hyperparameters (ssm.*, which layers are recurrent); called by load_hparams for
 * ARCH_HYBRID_DELTA architectures after the per-layer kinds are set. */
int model_load_hparams_delta(mr_model *m);
/* Interleave the eligible matmul weights by 8 rows for the SIMD kernels (repack.c), with
 * n_threads threads: for the int16-sum (fast) kernels, but the recurrent layers' projections
 * for the exact ones (results bit-identical to the GGUF layouts'); with fast (-rtr) every
 * weight for the fast kernels. 0 (also when it declines: nothing fits, no kernel), -1 with
 * an error. */
int model_repack(mr_model *m, int n_threads, bool fast);
/* Any layer of kind MODEL_ATTN_DELTA (the context then keeps recurrent state per sequence). */
bool model_is_recurrent(const mr_model *m);

#endif
