/*
 * synth_presets.c — the synthetic model presets: tensor plans and metadata.
 *
 * Tensor names, shapes and order follow llama.cpp's load_tensors (and the
 * fixture models in ../shared/fixtures/models, which are the reference for the
 * MLA split form attn_k_b / attn_v_b and qwen3next's attn_qkv / attn_gate).
 * Types follow llama.cpp's llama_tensor_get_type for the preset's file type:
 * output (and a tied token_embd) Q6_K; attn_v and ffn_down get Q6_K on the
 * use_more_bits layers for Q4_K_M / Q5_K_M; Q8_0 attn_v / attn_k and Q5_K
 * attn_output for 8-expert models; fallback to Q5_0 / Q5_1 / Q8_0 when a row
 * length is not a multiple of 256. MLA attn_k_b / attn_v_b are Q8_0 (as in the
 * fixtures). Norms, routers, conv taps and 1-D tensors stay F32.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"
#include "quant/types.h"
#include "synth/synth.h"

typedef enum { ARCH_QWEN3MOE, ARCH_DEEPSEEK2, ARCH_QWEN3NEXT, ARCH_LLAMA } arch_kind;
/* llama_ftype values (general.file_type) */
enum {
    FT_F16 = 1, FT_Q4_0 = 2, FT_Q8_0 = 7, FT_Q2_K = 10, FT_Q3_K_M = 12, FT_Q4_K_M = 15, FT_Q5_K_M = 17,
    FT_IQ4_NL = 25, FT_IQ4_XS = 30, FT_BF16 = 32
};

/* The file types synth writes (--ftype), with their main weight type. */
static const struct {
    const char *name;
    int ftype;
    uint32_t def;
} k_ftypes[] = {
    {"f16", FT_F16, MR_TYPE_F16},          {"bf16", FT_BF16, MR_TYPE_BF16},       {"q8_0", FT_Q8_0, MR_TYPE_Q8_0},
    {"q5_k_m", FT_Q5_K_M, MR_TYPE_Q5_K},   {"q4_k_m", FT_Q4_K_M, MR_TYPE_Q4_K},   {"iq4_xs", FT_IQ4_XS, MR_TYPE_IQ4_XS},
    {"iq4_nl", FT_IQ4_NL, MR_TYPE_IQ4_NL}, {"q4_0", FT_Q4_0, MR_TYPE_Q4_0},       {"q3_k_m", FT_Q3_K_M, MR_TYPE_Q3_K},
    {"q2_k", FT_Q2_K, MR_TYPE_Q2_K},
};

int synth_ftype_from_name(const char *s) {
    for (size_t i = 0; i < MR_ARRAY_LEN(k_ftypes); i++)
        if (!strcasecmp(s, k_ftypes[i].name)) return k_ftypes[i].ftype;
    return -1;
}

/* The table's index of a file type, or -1. */
static int ftype_index(int ftype) {
    for (size_t i = 0; i < MR_ARRAY_LEN(k_ftypes); i++)
        if (k_ftypes[i].ftype == ftype) return (int)i;
    return -1;
}

const char *synth_ftype_name(int ftype) {
    const int i = ftype_index(ftype);
    return i < 0 ? NULL : k_ftypes[i].name;
}

static uint32_t ftype_default(int ftype) {
    const int i = ftype_index(ftype);
    return i < 0 ? MR_TYPE_Q4_0 : k_ftypes[i].def;
}

struct synth_preset {
    const char *name, *desc;
    arch_kind kind;
    int ftype;
    int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_ctx;
    int n_expert, n_expert_used, n_ff_exp, n_expert_shared, n_ff_shexp;
    /* deepseek2 */
    int n_lead_dense, q_lora, kv_lora, rope_dim, nope_dim, v_dim;
    int gating; /* 1 softmax, 2 sigmoid (+ exp_probs_b) */
    float w_scale;
    bool w_norm;
    int n_group, n_group_used;
    float yarn_factor, yarn_log_mul;
    int yarn_orig_ctx;
    /* qwen3next */
    int ssm_conv, ssm_k_heads, ssm_v_heads, ssm_head_dim, full_attn_interval;
    float rope_base, rms_eps;
    int64_t n_vocab;
    bool tied, add_bos;
};

static const synth_preset k_presets[] = {
    {.name = "qwen3moe-30b-a3b", .desc = "Qwen3-30B-A3B, Q4_K_M: 48 layers, d 2048, 128 experts top-8",
     .kind = ARCH_QWEN3MOE, .ftype = FT_Q4_K_M, .n_layer = 48, .n_embd = 2048, .n_head = 32, .n_head_kv = 4,
     .head_dim = 128, .n_ff = 6144, .n_ctx = 40960, .n_expert = 128, .n_expert_used = 8, .n_ff_exp = 768,
     .rope_dim = 128, .rope_base = 1e6f, .rms_eps = 1e-6f, .n_vocab = 151936},
    {.name = "deepseek-v2-lite", .desc = "DeepSeek-V2-Lite, Q5_K_M: 27 layers, d 2048, MLA, 64 experts top-6 + 2 shared",
     .kind = ARCH_DEEPSEEK2, .ftype = FT_Q5_K_M, .n_layer = 27, .n_embd = 2048, .n_head = 16, .n_ff = 10944,
     .n_ctx = 163840, .n_expert = 64, .n_expert_used = 6, .n_ff_exp = 1408, .n_expert_shared = 2,
     .n_lead_dense = 1, .q_lora = 0, .kv_lora = 512, .rope_dim = 64, .nope_dim = 128, .v_dim = 128, .gating = 1,
     .w_scale = 1.0f, .w_norm = false, .yarn_factor = 40, .yarn_log_mul = 0.0707f, .yarn_orig_ctx = 4096,
     .rope_base = 10000, .rms_eps = 1e-6f, .n_vocab = 102400, .add_bos = true},
    {.name = "deepseek-v3", .desc = "DeepSeek-V3, Q4_K_M: 61 layers, d 7168, MLA + q-lora, 256 experts top-8 + 1 shared, sigmoid",
     .kind = ARCH_DEEPSEEK2, .ftype = FT_Q4_K_M, .n_layer = 61, .n_embd = 7168, .n_head = 128, .n_ff = 18432,
     .n_ctx = 163840, .n_expert = 256, .n_expert_used = 8, .n_ff_exp = 2048, .n_expert_shared = 1,
     .n_lead_dense = 3, .q_lora = 1536, .kv_lora = 512, .rope_dim = 64, .nope_dim = 128, .v_dim = 128,
     .gating = 2, .w_scale = 2.5f, .w_norm = true, .n_group = 8, .n_group_used = 4, .yarn_factor = 40,
     .yarn_log_mul = 0.1f, .yarn_orig_ctx = 4096, .rope_base = 10000, .rms_eps = 1e-6f, .n_vocab = 129280,
     .add_bos = true},
    {.name = "qwen3-next-80b-a3b", .desc = "Qwen3-Next-80B-A3B, Q8_0: 48 layers (3:1 gated delta net : attention), 512 experts top-10",
     .kind = ARCH_QWEN3NEXT, .ftype = FT_Q8_0, .n_layer = 48, .n_embd = 2048, .n_head = 16, .n_head_kv = 2,
     .head_dim = 256, .n_ff = 5120, .n_ctx = 262144, .n_expert = 512, .n_expert_used = 10, .n_ff_exp = 512,
     .n_expert_shared = 1, .n_ff_shexp = 512, .rope_dim = 64, .ssm_conv = 4, .ssm_k_heads = 16,
     .ssm_v_heads = 32, .ssm_head_dim = 128, .full_attn_interval = 4, .rope_base = 1e7f, .rms_eps = 1e-6f,
     .n_vocab = 151936},
    {.name = "tiny-qwen3moe", .desc = "tiny qwen3moe, Q4_K_M: 4 layers, d 256, 8 experts top-2, tied embeddings",
     .kind = ARCH_QWEN3MOE, .ftype = FT_Q4_K_M, .n_layer = 4, .n_embd = 256, .n_head = 4, .n_head_kv = 2,
     .head_dim = 64, .n_ff = 2048, .n_ctx = 4096, .n_expert = 8, .n_expert_used = 2, .n_ff_exp = 256,
     .rope_dim = 64, .rope_base = 1e6f, .rms_eps = 1e-6f, .n_vocab = 8192, .tied = true},
    {.name = "tiny-qwen3moe-g8", .desc = "tiny qwen3moe with Qwen3-30B-A3B's 8 query heads per KV head (16 / 2, head 128): 2 layers",
     .kind = ARCH_QWEN3MOE, .ftype = FT_Q4_K_M, .n_layer = 2, .n_embd = 256, .n_head = 16, .n_head_kv = 2,
     .head_dim = 128, .n_ff = 2048, .n_ctx = 4096, .n_expert = 8, .n_expert_used = 2, .n_ff_exp = 256,
     .rope_dim = 128, .rope_base = 1e6f, .rms_eps = 1e-6f, .n_vocab = 8192, .tied = true},
    {.name = "tiny-deepseek2", .desc = "tiny deepseek2 (V2-Lite style), Q5_K_M: 4 layers, d 256, MLA, 8 experts top-2 + 1 shared",
     .kind = ARCH_DEEPSEEK2, .ftype = FT_Q5_K_M, .n_layer = 4, .n_embd = 256, .n_head = 8, .n_ff = 512,
     .n_ctx = 163840, .n_expert = 8, .n_expert_used = 2, .n_ff_exp = 256, .n_expert_shared = 1, .n_lead_dense = 1,
     .q_lora = 0, .kv_lora = 256, .rope_dim = 32, .nope_dim = 32, .v_dim = 32, .gating = 1, .w_scale = 1.0f,
     .yarn_factor = 40, .yarn_log_mul = 0.0707f, .yarn_orig_ctx = 4096, .rope_base = 10000, .rms_eps = 1e-6f,
     .n_vocab = 8192, .tied = true, .add_bos = true},
    {.name = "tiny-qwen3next", .desc = "tiny qwen3next, Q4_K_M: 4 layers (3 gated delta net + 1 attention), d 256, 16 experts top-4",
     .kind = ARCH_QWEN3NEXT, .ftype = FT_Q4_K_M, .n_layer = 4, .n_embd = 256, .n_head = 2, .n_head_kv = 1,
     .head_dim = 256, .n_ff = 256, .n_ctx = 4096, .n_expert = 16, .n_expert_used = 4, .n_ff_exp = 256,
     .n_expert_shared = 1, .n_ff_shexp = 256, .rope_dim = 64, .ssm_conv = 4, .ssm_k_heads = 2, .ssm_v_heads = 4,
     .ssm_head_dim = 64, .full_attn_interval = 4, .rope_base = 1e7f, .rms_eps = 1e-6f, .n_vocab = 8192},
    {.name = "tiny-llama", .desc = "tiny llama (dense), Q4_0: 3 layers, d 256, 8 heads / 4 KV, FFN 768",
     .kind = ARCH_LLAMA, .ftype = FT_Q4_0, .n_layer = 3, .n_embd = 256, .n_head = 8, .n_head_kv = 4,
     .head_dim = 32, .n_ff = 768, .n_ctx = 2048, .rope_dim = 32, .rope_base = 10000, .rms_eps = 1e-5f,
     .n_vocab = 8192, .tied = true, .add_bos = true},
};

static const char *arch_name(arch_kind k) {
    switch (k) {
    case ARCH_QWEN3MOE: return "qwen3moe";
    case ARCH_DEEPSEEK2: return "deepseek2";
    case ARCH_QWEN3NEXT: return "qwen3next";
    default: return "llama";
    }
}

static const synth_preset *find_preset(const char *name) {
    for (size_t i = 0; i < MR_ARRAY_LEN(k_presets); i++)
        if (!strcmp(k_presets[i].name, name)) return &k_presets[i];
    return NULL;
}

const char *const *synth_preset_names(void) {
    static const char *names[MR_ARRAY_LEN(k_presets) + 1];
    for (size_t i = 0; i < MR_ARRAY_LEN(k_presets); i++) names[i] = k_presets[i].name;
    return names;
}

const char *synth_preset_desc(const char *name) {
    const synth_preset *p = find_preset(name);
    return p ? p->desc : NULL;
}

int64_t synth_preset_vocab(const char *name) {
    const synth_preset *p = find_preset(name);
    return p ? p->n_vocab : 0;
}

/* ---- tensor list ------------------------------------------------------------------ */
typedef struct {
    synth_plan *pl;
    int cap;
    int fail;
} builder;

static void add(builder *b, synth_init init, int64_t ne0, int64_t ne1, int64_t ne2, const char *fmt, ...)
    MR_PRINTF(6, 7);
static void add(builder *b, synth_init init, int64_t ne0, int64_t ne1, int64_t ne2, const char *fmt, ...) {
    if (b->fail) return;
    synth_plan *pl = b->pl;
    if (pl->n_t == b->cap) {
        int nc = b->cap ? b->cap * 2 : 256;
        synth_tensor *t = mr_realloc(pl->t, (size_t)nc * sizeof *t);
        if (!t) { b->fail = 1; return; }
        pl->t = t;
        b->cap = nc;
    }
    synth_tensor *t = &pl->t[pl->n_t++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->ne[0] = ne0; t->ne[1] = ne1 > 0 ? ne1 : 1; t->ne[2] = ne2 > 0 ? ne2 : 1; t->ne[3] = 1;
    t->n_dims = ne2 > 0 ? 3 : ne1 > 0 ? 2 : 1;
    t->init = init;
    t->type = MR_TYPE_F32;
}

#define W SYNTH_INIT_WEIGHT
#define N SYNTH_INIT_NORM

static void moe_ffn(builder *b, const synth_preset *p, int i) {
    int64_t d = p->n_embd, E = p->n_expert, f = p->n_ff_exp;
    add(b, W, d, E, 0, "blk.%d.ffn_gate_inp.weight", i);
    if (p->gating == 2) add(b, SYNTH_INIT_SMALL, E, 0, 0, "blk.%d.exp_probs_b.bias", i);
    add(b, W, d, f, E, "blk.%d.ffn_gate_exps.weight", i);
    add(b, W, d, f, E, "blk.%d.ffn_up_exps.weight", i);
    add(b, W, f, d, E, "blk.%d.ffn_down_exps.weight", i);
}

static void build_layer(builder *b, const synth_preset *p, int i) {
    int64_t d = p->n_embd, H = p->n_head, KV = p->n_head_kv, hd = p->head_dim;
    add(b, N, d, 0, 0, "blk.%d.attn_norm.weight", i);
    switch (p->kind) {
    case ARCH_QWEN3MOE:
    case ARCH_LLAMA:
        add(b, W, d, H * hd, 0, "blk.%d.attn_q.weight", i);
        add(b, W, d, KV * hd, 0, "blk.%d.attn_k.weight", i);
        add(b, W, d, KV * hd, 0, "blk.%d.attn_v.weight", i);
        add(b, W, H * hd, d, 0, "blk.%d.attn_output.weight", i);
        if (p->kind == ARCH_QWEN3MOE) {
            add(b, N, hd, 0, 0, "blk.%d.attn_q_norm.weight", i);
            add(b, N, hd, 0, 0, "blk.%d.attn_k_norm.weight", i);
        }
        add(b, N, d, 0, 0, "blk.%d.ffn_norm.weight", i);
        if (p->kind == ARCH_QWEN3MOE) moe_ffn(b, p, i);
        else {
            add(b, W, d, p->n_ff, 0, "blk.%d.ffn_gate.weight", i);
            add(b, W, d, p->n_ff, 0, "blk.%d.ffn_up.weight", i);
            add(b, W, p->n_ff, d, 0, "blk.%d.ffn_down.weight", i);
        }
        break;
    case ARCH_DEEPSEEK2: {
        int64_t qk = p->nope_dim + p->rope_dim;
        if (p->q_lora) {
            add(b, W, d, p->q_lora, 0, "blk.%d.attn_q_a.weight", i);
            add(b, N, p->q_lora, 0, 0, "blk.%d.attn_q_a_norm.weight", i);
            add(b, W, p->q_lora, H * qk, 0, "blk.%d.attn_q_b.weight", i);
        } else add(b, W, d, H * qk, 0, "blk.%d.attn_q.weight", i);
        add(b, W, d, p->kv_lora + p->rope_dim, 0, "blk.%d.attn_kv_a_mqa.weight", i);
        add(b, N, p->kv_lora, 0, 0, "blk.%d.attn_kv_a_norm.weight", i);
        add(b, W, p->nope_dim, p->kv_lora, H, "blk.%d.attn_k_b.weight", i);
        add(b, W, p->kv_lora, p->v_dim, H, "blk.%d.attn_v_b.weight", i);
        add(b, W, H * p->v_dim, d, 0, "blk.%d.attn_output.weight", i);
        add(b, N, d, 0, 0, "blk.%d.ffn_norm.weight", i);
        if (i < p->n_lead_dense) {
            add(b, W, d, p->n_ff, 0, "blk.%d.ffn_gate.weight", i);
            add(b, W, d, p->n_ff, 0, "blk.%d.ffn_up.weight", i);
            add(b, W, p->n_ff, d, 0, "blk.%d.ffn_down.weight", i);
        } else {
            moe_ffn(b, p, i);
            int64_t fs = (int64_t)p->n_ff_exp * p->n_expert_shared;
            add(b, W, d, fs, 0, "blk.%d.ffn_gate_shexp.weight", i);
            add(b, W, d, fs, 0, "blk.%d.ffn_up_shexp.weight", i);
            add(b, W, fs, d, 0, "blk.%d.ffn_down_shexp.weight", i);
        }
        break;
    }
    case ARCH_QWEN3NEXT: {
        if ((i + 1) % p->full_attn_interval == 0) {
            add(b, W, d, H * hd * 2, 0, "blk.%d.attn_q.weight", i); /* q and its gate */
            add(b, W, d, KV * hd, 0, "blk.%d.attn_k.weight", i);
            add(b, W, d, KV * hd, 0, "blk.%d.attn_v.weight", i);
            add(b, W, H * hd, d, 0, "blk.%d.attn_output.weight", i);
            add(b, N, hd, 0, 0, "blk.%d.attn_q_norm.weight", i);
            add(b, N, hd, 0, 0, "blk.%d.attn_k_norm.weight", i);
        } else {
            int64_t kdim = (int64_t)p->ssm_k_heads * p->ssm_head_dim, vdim = (int64_t)p->ssm_v_heads * p->ssm_head_dim;
            add(b, W, d, 2 * kdim + vdim, 0, "blk.%d.attn_qkv.weight", i);
            add(b, W, d, vdim, 0, "blk.%d.attn_gate.weight", i);
            add(b, SYNTH_INIT_CONV, p->ssm_conv, 2 * kdim + vdim, 0, "blk.%d.ssm_conv1d.weight", i);
            add(b, SYNTH_INIT_SMALL, p->ssm_v_heads, 0, 0, "blk.%d.ssm_dt.bias", i);
            add(b, SYNTH_INIT_SSM_A, p->ssm_v_heads, 0, 0, "blk.%d.ssm_a", i);
            add(b, W, d, 2 * p->ssm_v_heads, 0, "blk.%d.ssm_ba.weight", i);
            add(b, N, p->ssm_head_dim, 0, 0, "blk.%d.ssm_norm.weight", i);
            add(b, W, vdim, d, 0, "blk.%d.ssm_out.weight", i);
        }
        add(b, N, d, 0, 0, "blk.%d.post_attention_norm.weight", i);
        moe_ffn(b, p, i);
        add(b, W, d, 0, 0, "blk.%d.ffn_gate_inp_shexp.weight", i);
        add(b, W, d, p->n_ff_shexp, 0, "blk.%d.ffn_gate_shexp.weight", i);
        add(b, W, d, p->n_ff_shexp, 0, "blk.%d.ffn_up_shexp.weight", i);
        add(b, W, p->n_ff_shexp, d, 0, "blk.%d.ffn_down_shexp.weight", i);
        break;
    }
    }
}

/* ---- llama.cpp's type selection (llama-quant.cpp), for our file types ----------------- */
static bool has(const char *s, const char *sub) { return strstr(s, sub) != NULL; }
static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}
static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }
static bool is_attn_v(const char *n) { return has(n, "attn_v.weight") || has(n, "attn_qkv.weight") || has(n, "attn_kv_b.weight"); }

/* The weight types of the file type's mix, after llama.cpp's llama_tensor_get_type for the
 * tensors these presets have (the shapes' fallbacks included): K-quant mixes give more bits
 * to some attn_v / ffn_down tensors and to the output; Mixtral-style 8-expert models keep
 * attn_k / attn_v in Q8_0; float file types store every matrix in their type. */
static void assign_types(synth_plan *pl) {
    const synth_preset *p = pl->p;
    const int ft = pl->ftype;
    const uint32_t def = ftype_default(ft);
    const bool flt = ft == FT_F16 || ft == FT_BF16;
    int n_wv = 0, n_down = 0, i_wv = 0, i_down = 0;
    for (int k = 0; k < pl->n_t; k++) {
        if (is_attn_v(pl->t[k].name)) n_wv++;
        if (has(pl->t[k].name, "ffn_down")) n_down++;
    }
    bool km = ft == FT_Q4_K_M || ft == FT_Q5_K_M;
    for (int k = 0; k < pl->n_t; k++) {
        synth_tensor *t = &pl->t[k];
        const char *n = t->name;
        bool quantize = t->n_dims >= 2 && ends_with(n, "weight") && !has(n, "_norm.weight") &&
                        !has(n, "ffn_gate_inp.weight") && !has(n, "ssm_conv1d");
        if (!quantize) { t->type = MR_TYPE_F32; continue; }
        if (flt) { t->type = def; continue; }
        if (has(n, "attn_k_b.weight") || has(n, "attn_v_b.weight")) { t->type = MR_TYPE_Q8_0; continue; }
        uint32_t ty = def;
        bool is_out = !strcmp(n, "output.weight"), is_emb = !strcmp(n, "token_embd.weight");
        if (is_out || (p->tied && is_emb)) {
            if (t->ne[0] % mr_type_get(ty)->blck) ty = MR_TYPE_Q8_0;
            else if (ty != MR_TYPE_Q8_0) ty = MR_TYPE_Q6_K;
        } else if (is_emb) {
            /* default type */
        } else if (is_attn_v(n)) {
            if (km && use_more_bits(i_wv, n_wv)) ty = MR_TYPE_Q6_K;
            if (ft == FT_Q3_K_M) ty = i_wv < 2 ? MR_TYPE_Q5_K : MR_TYPE_Q4_K;
            if (ft == FT_Q2_K) ty = MR_TYPE_Q3_K;
            if (p->n_expert == 8) ty = MR_TYPE_Q8_0;
            i_wv++;
        } else if (has(n, "attn_k.weight")) {
            if (p->n_expert == 8) ty = MR_TYPE_Q8_0;
        } else if (has(n, "attn_output.weight")) {
            if (p->n_expert == 8 && ft == FT_Q4_K_M) ty = MR_TYPE_Q5_K;
            if (ft == FT_Q3_K_M) ty = MR_TYPE_Q4_K;
            if (ft == FT_Q2_K) ty = MR_TYPE_Q3_K;
        } else if (has(n, "ffn_down") && !has(n, "ffn_up") && !has(n, "ffn_gate")) {
            int il = i_down;
            if (p->n_expert > 1) sscanf(n, "blk.%d.", &il);
            if (km && use_more_bits(il, n_down)) ty = MR_TYPE_Q6_K;
            if (ft == FT_Q3_K_M)
                ty = il < pl->n_layer / 16 ? MR_TYPE_Q5_K : use_more_bits(il, pl->n_layer) ? MR_TYPE_Q4_K : MR_TYPE_Q3_K;
            if (ft == FT_Q2_K) ty = MR_TYPE_Q3_K;
            i_down++;
        }
        /* shape fallback */
        if (t->ne[0] % mr_type_get(ty)->blck) {
            ty = ty == MR_TYPE_Q4_K   ? MR_TYPE_Q5_0
                 : ty == MR_TYPE_Q5_K ? MR_TYPE_Q5_1
                 : ty == MR_TYPE_Q6_K ? MR_TYPE_Q8_0
                 : ty == MR_TYPE_Q2_K || ty == MR_TYPE_Q3_K || ty == MR_TYPE_IQ4_XS ? MR_TYPE_IQ4_NL
                                                                                    : ty;
            if (t->ne[0] % mr_type_get(ty)->blck) ty = MR_TYPE_F16;
        }
        t->type = ty;
    }
}

/* n_params and data_bytes from the tensors' shapes and types. */
static void plan_sizes(synth_plan *pl) {
    pl->n_params = pl->data_bytes = 0;
    for (int k = 0; k < pl->n_t; k++) {
        const synth_tensor *t = &pl->t[k];
        const uint64_t ne = (uint64_t)t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        pl->n_params += ne;
        pl->data_bytes += mr_row_size(t->type, t->ne[0]) * (ne / (uint64_t)t->ne[0]);
    }
}

int synth_plan_build(synth_plan *pl, const char *name, int n_layer, int64_t n_vocab) {
    memset(pl, 0, sizeof *pl);
    const synth_preset *p = find_preset(name);
    if (!p) {
        mr_seterr("unknown preset '%s'", name);
        return -1;
    }
    if (n_layer < 0 || n_layer > 1000) {
        mr_seterr("preset %s: layer count %d out of range", name, n_layer);
        return -1;
    }
    if (n_vocab < 0 || n_vocab > (1 << 24)) {
        mr_seterr("preset %s: vocabulary size %lld out of range", name, (long long)n_vocab);
        return -1;
    }
    pl->p = p;
    pl->ftype = p->ftype;
    pl->n_layer = n_layer ? n_layer : p->n_layer;
    pl->n_vocab = n_vocab ? n_vocab : p->n_vocab;
    builder b = {pl, 0, 0};
    add(&b, W, p->n_embd, pl->n_vocab, 0, "token_embd.weight");
    add(&b, N, p->n_embd, 0, 0, "output_norm.weight");
    if (!p->tied) add(&b, W, p->n_embd, pl->n_vocab, 0, "output.weight");
    for (int i = 0; i < pl->n_layer; i++) build_layer(&b, p, i);
    if (b.fail) {
        synth_plan_free(pl);
        return -1;
    }
    assign_types(pl);
    plan_sizes(pl);
    return 0;
}

int synth_plan_set_ftype(synth_plan *pl, int ftype) {
    if (!synth_ftype_name(ftype)) {
        mr_seterr("file type %d is not one synth writes", ftype);
        return -1;
    }
    pl->ftype = ftype;
    assign_types(pl);
    plan_sizes(pl);
    return 0;
}

int synth_plan_set_exps_type(synth_plan *pl, uint32_t type) {
    const mr_type_traits *tr = mr_type_get(type);
    int n = 0;
    for (int k = 0; k < pl->n_t; k++) {
        synth_tensor *t = &pl->t[k];
        if (tr && strstr(t->name, "_exps.weight") && t->ne[0] % (int64_t)tr->blck == 0) {
            t->type = type;
            n++;
        }
    }
    plan_sizes(pl);
    return n;
}

void synth_plan_free(synth_plan *pl) {
    free(pl->t);
    memset(pl, 0, sizeof *pl);
}

/* ---- metadata ------------------------------------------------------------------------------ */
typedef struct {
    gguf_writer *w;
    const char *arch;
    int rc;
} kvw;

static void ku32(kvw *k, const char *key, uint32_t v) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", k->arch, key);
    if (!k->rc) k->rc = gguf_writer_kv_u32(k->w, full, v);
}
static void kf32(kvw *k, const char *key, float v) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", k->arch, key);
    if (!k->rc) k->rc = gguf_writer_kv_f32(k->w, full, v);
}
static void kbool(kvw *k, const char *key, bool v) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", k->arch, key);
    if (!k->rc) k->rc = gguf_writer_kv_bool(k->w, full, v);
}
static void kstr(kvw *k, const char *key, const char *v) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", k->arch, key);
    if (!k->rc) k->rc = gguf_writer_kv_str(k->w, full, v);
}

static int write_synth_vocab(gguf_writer *w, const synth_plan *pl, uint64_t seed) {
    synth_vocab v;
    if (synth_vocab_make(&v, pl->n_vocab, seed) != 0) return -1;
    int rc = gguf_writer_kv_str(w, "tokenizer.ggml.model", "gpt2") ||
             gguf_writer_kv_str(w, "tokenizer.ggml.pre", "default") ||
             gguf_writer_kv_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.tokens, (uint64_t)v.n_tokens) ||
             gguf_writer_kv_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, v.types, (uint64_t)v.n_tokens) ||
             gguf_writer_kv_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v.merges, (uint64_t)v.n_merges) ||
             gguf_writer_kv_u32(w, "tokenizer.ggml.bos_token_id", v.bos) ||
             gguf_writer_kv_u32(w, "tokenizer.ggml.eos_token_id", v.eos) ||
             gguf_writer_kv_u32(w, "tokenizer.ggml.padding_token_id", v.eos) ||
             gguf_writer_kv_bool(w, "tokenizer.ggml.add_bos_token", pl->p->add_bos) ||
             gguf_writer_kv_bool(w, "tokenizer.ggml.add_eos_token", false)
                 ? -1 : 0;
    synth_vocab_free(&v);
    return rc;
}

int synth_write_meta(gguf_writer *w, const synth_plan *pl, const gguf_ctx *vocab, uint64_t seed) {
    const synth_preset *p = pl->p;
    const char *arch = arch_name(p->kind);
    char gname[128];
    snprintf(gname, sizeof gname, "synthetic-%s", p->name);
    if (gguf_writer_kv_str(w, "general.architecture", arch) || gguf_writer_kv_str(w, "general.type", "model") ||
        gguf_writer_kv_str(w, "general.name", gname))
        return -1;
    kvw k = {w, arch, 0};
    ku32(&k, "block_count", (uint32_t)pl->n_layer);
    ku32(&k, "context_length", (uint32_t)p->n_ctx);
    ku32(&k, "embedding_length", (uint32_t)p->n_embd);
    ku32(&k, "feed_forward_length", (uint32_t)p->n_ff);
    ku32(&k, "attention.head_count", (uint32_t)p->n_head);
    kf32(&k, "attention.layer_norm_rms_epsilon", p->rms_eps);
    kf32(&k, "rope.freq_base", p->rope_base);
    ku32(&k, "vocab_size", (uint32_t)pl->n_vocab);
    if (p->kind == ARCH_DEEPSEEK2) {
        ku32(&k, "attention.head_count_kv", 1);
        ku32(&k, "attention.key_length", (uint32_t)(p->kv_lora + p->rope_dim));
        ku32(&k, "attention.value_length", (uint32_t)p->kv_lora);
        ku32(&k, "attention.key_length_mla", (uint32_t)(p->nope_dim + p->rope_dim));
        ku32(&k, "attention.value_length_mla", (uint32_t)p->v_dim);
        ku32(&k, "rope.dimension_count", (uint32_t)p->rope_dim);
        ku32(&k, "attention.kv_lora_rank", (uint32_t)p->kv_lora);
        if (p->q_lora) ku32(&k, "attention.q_lora_rank", (uint32_t)p->q_lora); /* V2-Lite files omit it */
        ku32(&k, "leading_dense_block_count", (uint32_t)MR_MIN(p->n_lead_dense, pl->n_layer));
        ku32(&k, "expert_count", (uint32_t)p->n_expert);
        ku32(&k, "expert_used_count", (uint32_t)p->n_expert_used);
        ku32(&k, "expert_shared_count", (uint32_t)p->n_expert_shared);
        ku32(&k, "expert_feed_forward_length", (uint32_t)p->n_ff_exp);
        kf32(&k, "expert_weights_scale", p->w_scale);
        kbool(&k, "expert_weights_norm", p->w_norm);
        ku32(&k, "expert_gating_func", (uint32_t)p->gating);
        if (p->n_group) {
            ku32(&k, "expert_group_count", (uint32_t)p->n_group);
            ku32(&k, "expert_group_used_count", (uint32_t)p->n_group_used);
        }
        kstr(&k, "rope.scaling.type", "yarn");
        kf32(&k, "rope.scaling.factor", p->yarn_factor);
        ku32(&k, "rope.scaling.original_context_length", (uint32_t)p->yarn_orig_ctx);
        kf32(&k, "rope.scaling.yarn_log_multiplier", p->yarn_log_mul);
    } else {
        ku32(&k, "attention.head_count_kv", (uint32_t)p->n_head_kv);
        ku32(&k, "attention.key_length", (uint32_t)p->head_dim);
        ku32(&k, "attention.value_length", (uint32_t)p->head_dim);
        ku32(&k, "rope.dimension_count", (uint32_t)p->rope_dim);
        if (p->n_expert) {
            ku32(&k, "expert_count", (uint32_t)p->n_expert);
            ku32(&k, "expert_used_count", (uint32_t)p->n_expert_used);
            ku32(&k, "expert_feed_forward_length", (uint32_t)p->n_ff_exp);
        }
        if (p->kind == ARCH_QWEN3NEXT) {
            ku32(&k, "expert_shared_feed_forward_length", (uint32_t)p->n_ff_shexp);
            ku32(&k, "ssm.conv_kernel", (uint32_t)p->ssm_conv);
            ku32(&k, "ssm.state_size", (uint32_t)p->ssm_head_dim);
            ku32(&k, "ssm.group_count", (uint32_t)p->ssm_k_heads);
            ku32(&k, "ssm.time_step_rank", (uint32_t)p->ssm_v_heads);
            ku32(&k, "ssm.inner_size", (uint32_t)(p->ssm_v_heads * p->ssm_head_dim));
            ku32(&k, "full_attention_interval", (uint32_t)p->full_attn_interval);
        }
    }
    if (k.rc) return -1;
    if (vocab) {
        for (uint64_t i = 0; i < vocab->n_kv; i++)
            if (!strncmp(vocab->kv[i].key, "tokenizer.", 10) && gguf_writer_kv_copy(w, &vocab->kv[i])) return -1;
    } else if (write_synth_vocab(w, pl, seed) != 0)
        return -1;
    if (gguf_writer_kv_u32(w, "general.quantization_version", 2) ||
        gguf_writer_kv_u32(w, "general.file_type", (uint32_t)pl->ftype))
        return -1;
    return 0;
}
