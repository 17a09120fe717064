/*
 * forward.h — the CPU forward pass over one micro-batch.
 *
 * model_run holds everything a forward needs besides the model: the KV cache,
 * the thread pool, the matmul state and scratch buffers sized once for the
 * largest micro-batch. model_forward() runs embeddings -> layers (attention
 * block kind, FFN block kind) -> output head for the tokens of a ubatch whose
 * KV cells were already assigned (kv_alloc).
 */
#ifndef MR_FORWARD_H
#define MR_FORWARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cpu/attn.h"
#include "cpu/cpu.h"
#include "model/forward_gpu.h"
#include "model/kv.h"
#include "model/model.h"

typedef struct {
    int n;                /* tokens (T) */
    const int32_t *tok;   /* (T) */
    const int32_t *pos;   /* (T) */
    const int32_t *seq;   /* (T) */
    const int32_t *cell;  /* (T) KV cell of each token */
    int n_out;            /* tokens whose logits are wanted */
    const int32_t *out;   /* (n_out) indices into the ubatch, increasing */
} model_ubatch;

/* The widest activation rows of a model over its layers, for sizing scratch: q (H*Dk),
 * k (Hkv*Dk), v (Hkv*Dv), attention output (H*Dv), a dense / shared-expert FFN or one
 * expert (ffn), and one expert alone (exp). */
typedef struct {
    size_t q, k, v, att, ffn, exp;
} model_widths;
model_widths model_widths_of(const mr_model *m);

typedef struct model_run {
    const mr_model *m;
    kv_cache *kv;
    mr_threadpool *tp;
    cpu_mm mm;
    int n_ub;           /* capacity in tokens */
    bool flash, ref;

    /* scratch (T = n_ub rows) */
    float *x, *xn, *tmp;  /* (T, D) */
    float *q, *k, *v;     /* (T, H*Dk), (T, Hkv*Dk), (T, Hkv*Dv) */
    float *att;           /* (T, H*Dv) */
    float *ff_a, *ff_b;   /* (T, Fmax) */
    float *rope_cs;       /* (n_rot) */
    /* MoE */
    float *router;        /* (T, E) */
    int32_t *sel;         /* (T, k) selected experts */
    float *selw;          /* (T, k) their weights */
    int32_t *ex_tok;      /* (E, T) tokens routed to each expert */
    int32_t *ex_slot;     /* (E, T) which of the token's k slots */
    int32_t *ex_cnt;      /* (E) */
    float *ex_x, *ex_y;   /* (T, D) gathered inputs / outputs */
    /* attention: per-thread scratch */
    float *attn_scratch;
    size_t attn_scratch_per;
    /* a decode step split over cells (flash; model_attn_run): CPU_ATTN_SPLIT_MAX parts of
     * attn_part_per (>= n_head * (dv + 2)) floats, and a done count per KV head (attn_kv_max) */
    float *attn_part;
    size_t attn_part_per;
    _Atomic int *attn_done;
    int attn_kv_max;
    uint64_t attn_q_tag;   /* the last split decode run's cpu_attn_args.q_tag */
    /* MLA extension: the MLA engineer may hang buffers here */
    void *mla;
    uint64_t n_mla_prompt; /* layer passes in the MLA prompt form (attn_mla.c; the caller resets) */
    uint64_t kv_bytes_read; /* KV-cache bytes decode steps' attention read (model_attn_run; the caller resets) */
    /* qwen3next (delta_net.h): gated-attention and delta-net scratch */
    void *rec;
    /* MOERUN_PROFILE=1: seconds in attention blocks by kind [0..3], FFN [4], output head [5];
     * [6]: the part of [3] outside matmuls (conv, delta rule, norms); [7]: the attention
     * kernels of decode steps (model_attn_run, one token), over prof_steps of them; printed to
     * stderr by model_run_free */
    bool prof;
    double prof_s[8];
    long prof_steps;
    /* layers and head on GPU devices (forward_gpu.c), NULL when everything runs here */
    model_gpu *gpu;
} model_run;

/* Allocate a run for micro-batches of up to n_ub tokens. n_threads <= 0: the
 * model's default. flash: the online-softmax attention kernel. ref: scalar
 * reference kernels, single-threaded (the spec). NULL with an error. */
model_run *model_run_new(const mr_model *m, kv_cache *kv, int n_ub, int n_threads, bool flash, bool ref);
void model_run_free(model_run *r);

/* Forward one micro-batch. logits: (n_out, V) for the tokens ub->out.
 * Returns 0, -1 with an error. */
int model_forward(model_run *r, const model_ubatch *ub, float *logits);

/* The device side of model_forward (forward_gpu.c): per micro-batch, positions, cells and
 * masks to the devices; a layer on its device (the residual r->x moves there first); the
 * residual back into r->x; the output head of the rows ub->out into logits. 0 / -1. */
int model_gpu_begin(model_run *r, const model_ubatch *ub);
/* Page-lock r's host staging buffers (the residual, normed input, expert sum and routing that
 * travel between host and device) for the lifetime of g; best effort (a refusal is logged at
 * debug level and the copies stay pageable). */
void model_gpu_pin(model_gpu *g, model_run *r);
int model_gpu_layer(model_run *r, const model_ubatch *ub, int il);
int model_gpu_to_host(model_run *r, int T);
int model_gpu_head(model_run *r, const model_ubatch *ub, float *logits);
/* One decode token (T = 1, its logits) as a device graph, when everything runs on one device
 * without CPU experts: 1 done (logits written), 0 not applicable, -1 error. The first step of
 * each KV size bucket (256 cells) runs eagerly and captures; the next ones replay. */
int model_gpu_decode(model_run *r, const model_ubatch *ub, float *logits);

/* Block kinds. Each reads xn (T, D) (the normed input) and writes out (T, D). */
int model_attn_gqa(model_run *r, const model_ubatch *ub, int il, const float *xn, float *out);
int model_attn_mla(model_run *r, const model_ubatch *ub, int il, const float *xn, float *out);
void model_mla_run_free(model_run *r); /* the MLA scratch (r->mla) */
int model_ffn_dense(model_run *r, int T, const mr_weight *gate, const mr_weight *up, const mr_weight *down,
                    const float *xn, float *out);
int model_ffn_moe(model_run *r, int T, int il, const float *xn, float *out);

/* Helpers shared by attention kinds. */
/* Write K (T, heads*dk) and V (T, heads*dv) rows of the ubatch into layer il
 * of the cache at the tokens' cells (V NULL when v_in_k). */
void model_kv_write(model_run *r, const model_ubatch *ub, int il, const float *K, const float *V);
/* Run cpu_attn_head for every (token, KV head) of the ubatch across the pool
 * (a decode token's flash attention split over cells, cpu_attn_split):
 * q (T, H*dk) -> out (T, H*dv). a: the per-layer arguments (K/V, geometry). */
void model_attn_run(model_run *r, const model_ubatch *ub, const cpu_attn_args *a, const float *q, float *out);
/* q/k norms, RoPE, K/V into the cache and attention for layer il of the
 * GQA-style kinds: r->q, r->k, r->v -> r->att (forward_attn.c). */
void model_attn_qk_run(model_run *r, const model_ubatch *ub, int il);
/* MLA (attn_mla.c): the RoPE parameters of layer il with deepseek2's attn_factor and the
 * q.k scale; the head sizes dk (nope + rope) and dv. */
cpu_rope_params model_mla_rope(const mr_model *m, int il, float *kq_scale);
void model_mla_dims(const model_hparams *hp, int *dk, int *dv);
/* The RoPE parameters of layer il (llama.cpp's rope_ext arguments). */
cpu_rope_params model_rope_params(const mr_model *m, int il);

#endif
