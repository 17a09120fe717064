/*
 * load.c — mr_model_load: open the GGUF, read the hyperparameters of its
 * architecture (keys and defaults as llama.cpp's llama-model.cpp), load the
 * tokenizer, bind and check every tensor, and compute the size estimates.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/base.h"
#include "model/model.h"
#include "quant/quant.h"
#include "tok/tok.h"

mr_model_params mr_model_default_params(void) {
    mr_model_params p;
    memset(&p, 0, sizeof p);
    p.use_mmap = true;
    return p;
}

/* ---- hparams helpers ----------------------------------------------------------- */

static const char *akey(const mr_model *m, const char *suffix, char *buf, size_t n) {
    snprintf(buf, n, "%s.%s", m->arch->name, suffix);
    return buf;
}

/* Reads ARCH.suffix as an integer; absent -> def. A present key of the wrong
 * type is an error. */
static int hp_int(const mr_model *m, const char *suffix, int64_t def, int64_t lo, int64_t hi, int *out) {
    char k[160];
    akey(m, suffix, k, sizeof k);
    int64_t v = def;
    if (gguf_find(m->g, k) && !gguf_get_i64(m->g, k, &v)) {
        mr_seterr("%s: key '%s' is not an integer", m->g->path, k);
        return -1;
    }
    if (v < lo || v > hi) {
        mr_seterr("%s: key '%s' = %lld out of range [%lld, %lld]", m->g->path, k, (long long)v, (long long)lo,
                  (long long)hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int hp_f32(const mr_model *m, const char *suffix, double def, float *out) {
    char k[160];
    akey(m, suffix, k, sizeof k);
    double v = def;
    if (gguf_find(m->g, k) && !gguf_get_f64(m->g, k, &v)) {
        mr_seterr("%s: key '%s' is not a number", m->g->path, k);
        return -1;
    }
    *out = (float)v;
    return 0;
}

static bool hp_bool(const mr_model *m, const char *suffix, bool def) {
    char k[160];
    akey(m, suffix, k, sizeof k);
    bool b = def;
    if (gguf_find(m->g, k) && !gguf_get_bool(m->g, k, &b)) {
        int64_t v;
        if (gguf_get_i64(m->g, k, &v)) return v != 0;
        mr_clearerr();
        return def;
    }
    return b;
}

/* Per-layer integer (scalar or array of n_layer): out[il]. */
static int hp_layers(const mr_model *m, const char *suffix, int64_t def, int *out, int n_layer) {
    char k[160];
    akey(m, suffix, k, sizeof k);
    const gguf_kv *kv = gguf_find(m->g, k);
    if (kv && kv->val.type == GGUF_VT_ARRAY) {
        int64_t *tmp = mr_malloc(sizeof(int64_t) * (size_t)(n_layer + 1));
        if (!tmp) return -1;
        int64_t n = gguf_get_arr_i64(m->g, k, tmp, n_layer + 1);
        if (n != n_layer) {
            free(tmp);
            mr_seterr("%s: key '%s' has %lld entries, expected %d (one per layer)", m->g->path, k, (long long)n,
                      n_layer);
            return -1;
        }
        for (int i = 0; i < n_layer; i++) {
            if (tmp[i] < 0 || tmp[i] > (1 << 20)) {
                mr_seterr("%s: key '%s'[%d] = %lld out of range", m->g->path, k, i, (long long)tmp[i]);
                free(tmp);
                return -1;
            }
            out[i] = (int)tmp[i];
        }
        free(tmp);
        return 0;
    }
    int v;
    if (hp_int(m, suffix, def, 0, 1 << 20, &v)) return -1;
    for (int i = 0; i < n_layer; i++) out[i] = v;
    return 0;
}

/* ---- hparams ---------------------------------------------------------------------------- */

static int load_hparams(mr_model *m) {
    model_hparams *hp = &m->hp;
    const model_arch *a = m->arch;
    if (hp_int(m, "block_count", -1, 1, MODEL_MAX_LAYERS, &hp->n_layer)) return -1;
    if (hp_int(m, "embedding_length", -1, 1, 1 << 20, &hp->n_embd)) return -1;
    if (hp_int(m, "context_length", 4096, 1, INT32_MAX, &hp->n_ctx_train)) return -1;
    const int L = hp->n_layer;
    m->layers = mr_calloc((size_t)L, sizeof(model_layer));
    if (!m->layers) return -1;
    int *tmp = mr_malloc(sizeof(int) * (size_t)L);
    if (!tmp) return -1;
    int rc = -1;
    if (hp_layers(m, "attention.head_count", -1, tmp, L)) goto out;
    for (int il = 0; il < L; il++) {
        m->layers[il].n_head = tmp[il];
        hp->n_head_max = MR_MAX(hp->n_head_max, tmp[il]);
    }
    if (hp->n_head_max <= 0) {
        mr_seterr("%s: '%s.attention.head_count' missing or 0", m->g->path, a->name);
        goto out;
    }
    char k[160];
    if (!gguf_find(m->g, akey(m, "attention.head_count_kv", k, sizeof k))) {
        for (int il = 0; il < L; il++) tmp[il] = m->layers[il].n_head;
    } else if (hp_layers(m, "attention.head_count_kv", 0, tmp, L))
        goto out;
    for (int il = 0; il < L; il++) {
        model_layer *ly = &m->layers[il];
        ly->n_head_kv = tmp[il];
        hp->n_head_kv_max = MR_MAX(hp->n_head_kv_max, tmp[il]);
        if (ly->n_head > 0 && (ly->n_head_kv <= 0 || ly->n_head % ly->n_head_kv)) {
            mr_seterr("%s: layer %d: head_count %d is not a multiple of head_count_kv %d", m->g->path, il,
                      ly->n_head, ly->n_head_kv);
            goto out;
        }
    }
    if (hp_layers(m, "feed_forward_length", 0, tmp, L)) goto out;
    for (int il = 0; il < L; il++) hp->n_ff = MR_MAX(hp->n_ff, tmp[il]);
    rc = 0;
out:
    free(tmp);
    if (rc) return rc;

    if (hp_int(m, "attention.key_length", hp->n_embd / hp->n_head_max, 1, 1 << 16, &hp->head_dim_k)) return -1;
    if (hp_int(m, "attention.value_length", hp->n_embd / hp->n_head_max, 1, 1 << 16, &hp->head_dim_v)) return -1;
    if (hp_int(m, "rope.dimension_count", hp->head_dim_k, 0, 1 << 16, &hp->n_rot)) return -1;
    if (hp->n_rot % 2) {
        mr_seterr("%s: rope.dimension_count %d is odd", m->g->path, hp->n_rot);
        return -1;
    }
    if (hp_f32(m, "attention.layer_norm_rms_epsilon", 1e-5, &hp->rms_eps)) return -1;

    /* MoE */
    if (hp_int(m, "expert_count", 0, 0, 1 << 16, &hp->n_expert)) return -1;
    if (hp_int(m, "expert_used_count", 0, 0, hp->n_expert, &hp->n_expert_used)) return -1;
    if (hp_int(m, "expert_feed_forward_length", 0, 0, 1 << 20, &hp->n_ff_exp)) return -1;
    if (hp_int(m, "expert_shared_count", 0, 0, 1 << 10, &hp->n_expert_shared)) return -1;
    if (hp_int(m, "expert_shared_feed_forward_length", 0, 0, 1 << 22, &hp->n_ff_shexp)) return -1;
    if (hp_int(m, "leading_dense_block_count", 0, 0, hp->n_layer, &hp->n_leading_dense)) return -1;
    int gf;
    if (hp_int(m, "expert_gating_func", a->gating, 0, 3, &gf)) return -1;
    hp->gating = gf == 0 ? a->gating : (model_gating)gf;
    hp->expert_norm_w = hp_bool(m, "expert_weights_norm", a->moe_norm_w);
    if (hp_f32(m, "expert_weights_scale", 0.0, &hp->expert_w_scale)) return -1;
    if (hp_int(m, "expert_group_count", 0, 0, 1 << 10, &hp->n_expert_groups)) return -1;
    if (hp_int(m, "expert_group_used_count", 0, 0, 1 << 10, &hp->n_group_used)) return -1;
    if (hp->n_expert > 0 && hp->n_expert_used <= 0) {
        mr_seterr("%s: %s.expert_count = %d but expert_used_count is missing or 0", m->g->path, a->name,
                  hp->n_expert);
        return -1;
    }

    /* RoPE and its scaling */
    if (hp_f32(m, "rope.freq_base", 10000.0, &hp->rope_base)) return -1;
    float factor = 0.0f;
    if (hp_f32(m, "rope.scale_linear", 0.0, &factor)) return -1;
    if (hp_f32(m, "rope.scaling.factor", factor, &factor)) return -1;
    hp->rope_freq_scale = factor == 0.0f ? 1.0f : 1.0f / factor;
    const char *st = gguf_get_str(m->g, akey(m, "rope.scaling.type", k, sizeof k));
    hp->rope_scaling_yarn = st && !strcmp(st, "yarn");
    if (st && !strcmp(st, "none")) hp->rope_freq_scale = 1.0f;
    if (hp_int(m, "rope.scaling.original_context_length", hp->n_ctx_train, 1, INT32_MAX, &hp->n_ctx_orig_yarn))
        return -1;
    if (hp_f32(m, "rope.scaling.yarn_ext_factor", hp->rope_scaling_yarn ? 1.0 : 0.0, &hp->yarn_ext_factor))
        return -1;
    if (hp_f32(m, "rope.scaling.yarn_attn_factor", 1.0, &hp->yarn_attn_factor)) return -1;
    if (hp_f32(m, "rope.scaling.yarn_beta_fast", 32.0, &hp->yarn_beta_fast)) return -1;
    if (hp_f32(m, "rope.scaling.yarn_beta_slow", 1.0, &hp->yarn_beta_slow)) return -1;
    if (hp_f32(m, "rope.scaling.yarn_log_multiplier", 0.0, &hp->yarn_log_mul)) return -1;
    hp->rope_base_swa = hp->rope_base;
    hp->rope_freq_scale_swa = hp->rope_freq_scale;
    if (hp_f32(m, "rope.freq_base_swa", a->swa_rope_base > 0 ? a->swa_rope_base : hp->rope_base,
               &hp->rope_base_swa))
        return -1;
    if (a->swa_rope_base > 0) hp->rope_freq_scale_swa = 1.0f;

    /* attention quirks */
    if (hp_int(m, "attention.sliding_window", 0, 0, INT32_MAX, &hp->n_swa)) return -1;
    if (hp_f32(m, "attn_logit_softcapping", 0.0, &hp->attn_softcap)) return -1;
    if (hp_f32(m, "final_logit_softcapping", 0.0, &hp->logit_softcap)) return -1;
    if (hp_f32(m, "attention.scale", 0.0, &hp->attn_scale)) return -1;
    if (hp->attn_scale == 0.0f) hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim_k);
    /* llama.cpp quirk: Gemma 3 27B (62 layers) scales by n_embd / n_head instead */
    if (!strcmp(a->name, "gemma3") && hp->n_layer == 62)
        hp->attn_scale = 1.0f / sqrtf((float)hp->n_embd / (float)hp->n_head_max);
    if (a->flags & ARCH_EMBD_SCALE) hp->embd_scale = sqrtf((float)hp->n_embd);

    /* MLA */
    if (hp_int(m, "attention.q_lora_rank", 0, 0, 1 << 20, &hp->q_lora_rank)) return -1;
    if (hp_int(m, "attention.kv_lora_rank", 0, 0, 1 << 20, &hp->kv_lora_rank)) return -1;
    if (hp_int(m, "attention.key_length_mla", 0, 0, 1 << 16, &hp->head_dim_k_mla)) return -1;
    if (hp_int(m, "attention.value_length_mla", 0, 0, 1 << 16, &hp->head_dim_v_mla)) return -1;

    /* per-layer kinds, sliding window pattern, rope */
    int pattern = 0;
    bool pattern_arr = false;
    const gguf_kv *pkv = gguf_find(m->g, akey(m, "attention.sliding_window_pattern", k, sizeof k));
    if (pkv && pkv->val.type == GGUF_VT_ARRAY) pattern_arr = true;
    else if (hp_int(m, "attention.sliding_window_pattern", (a->flags & ARCH_SWA_PATTERN) ? a->swa_pattern : 0, 0,
                    1 << 16, &pattern))
        return -1;
    int64_t *parr = NULL;
    if (pattern_arr) {
        parr = mr_calloc((size_t)L + 1, sizeof(int64_t));
        if (!parr) return -1;
        if (gguf_get_arr_i64(m->g, k, parr, L + 1) != L) {
            free(parr);
            mr_seterr("%s: key '%s' must have one entry per layer", m->g->path, k);
            return -1;
        }
    }
    for (int il = 0; il < L; il++) {
        model_layer *ly = &m->layers[il];
        ly->attn_kind = a->attn;
        ly->ffn_kind = (hp->n_expert > 0 && il >= hp->n_leading_dense) ? MODEL_FFN_MOE : MODEL_FFN_DENSE;
        if (hp->n_swa > 0) {
            if (pattern_arr) ly->swa = parr[il] != 0;
            else ly->swa = pattern == 0 || (il % pattern < pattern - 1); /* llama.cpp set_swa_pattern */
        }
        ly->rope_base = ly->swa ? hp->rope_base_swa : hp->rope_base;
        ly->rope_freq_scale = ly->swa ? hp->rope_freq_scale_swa : hp->rope_freq_scale;
    }
    free(parr);
    if ((a->flags & ARCH_HYBRID_DELTA) && model_load_hparams_delta(m)) return -1;
    return 0;
}

/* ---- tensors ----------------------------------------------------------------------------- */

int model_bind(mr_model *m, mr_weight *w, int il, const char *name, const char *suffix, bool required) {
    char tn[256];
    if (il >= 0) snprintf(tn, sizeof tn, "blk.%d.%s.%s", il, name, suffix);
    else snprintf(tn, sizeof tn, "%s.%s", name, suffix);
    memset(w, 0, sizeof *w);
    const gguf_tensor *t = gguf_tensor_find(m->g, tn);
    if (!t) {
        if (required) {
            mr_seterr("%s: tensor '%s' is missing (needed by architecture %s)", m->g->path, tn, m->arch->name);
            return -1;
        }
        return 0;
    }
    if (t->ne[3] != 1) {
        mr_seterr("%s: tensor '%s' has 4 dimensions, expected at most 3", m->g->path, tn);
        return -1;
    }
    w->data = t->data;
    w->name = t->name;
    w->type = t->type;
    w->k = t->ne[0];
    w->m = t->ne[1];
    w->n_mat = t->ne[2];
    w->row_bytes = mr_row_size(t->type, t->ne[0]);
    w->mat_bytes = w->row_bytes * (size_t)w->m;
    if (w->row_bytes == 0) {
        mr_seterr("%s: tensor '%s' has type %s with rows of %lld elements, which is not usable", m->g->path, tn,
                  mr_type_name(t->type), (long long)t->ne[0]);
        return -1;
    }
    return 0;
}

int model_check_shape(const mr_weight *w, int64_t k, int64_t mm, int64_t n_mat) {
    if (w->k != k || w->m != mm || w->n_mat != n_mat) {
        mr_seterr("tensor '%s': shape [%lld, %lld, %lld], expected [%lld, %lld, %lld]", w->name, (long long)w->k,
                  (long long)w->m, (long long)w->n_mat, (long long)k, (long long)mm, (long long)n_mat);
        return -1;
    }
    return 0;
}

/* A vector (norm weight, bias) must be F32 of n elements. */
int model_check_vec(const mr_weight *w, int64_t n) {
    if (model_check_shape(w, n, 1, 1)) return -1;
    if (w->type != MR_TYPE_F32) {
        mr_seterr("tensor '%s': type %s, expected F32 for a norm/bias vector", w->name, mr_type_name(w->type));
        return -1;
    }
    return 0;
}

/* A matrix used in a matmul: shape and a type the kernels support. */
int model_check_mat(const mr_weight *w, int64_t k, int64_t mm, int64_t n_mat) {
    if (model_check_shape(w, k, mm, n_mat)) return -1;
    if (quant_check(w->type, w->k)) {
        mr_preerr("tensor '%s'", w->name);
        return -1;
    }
    return 0;
}

static int bind_globals(mr_model *m) {
    const model_hparams *hp = &m->hp;
    if (model_bind(m, &m->tok_embd, -1, "token_embd", "weight", true)) return -1;
    if (m->tok_embd.k != hp->n_embd || m->tok_embd.n_mat != 1) {
        mr_seterr("%s: tensor 'token_embd.weight' has rows of %lld, expected n_embd %d", m->g->path,
                  (long long)m->tok_embd.k, hp->n_embd);
        return -1;
    }
    if (!quant_can_dequant(m->tok_embd.type)) {
        mr_seterr("%s: tensor 'token_embd.weight' has type %s, which cannot be dequantized", m->g->path,
                  mr_type_name(m->tok_embd.type));
        return -1;
    }
    m->hp.n_vocab = (int)m->tok_embd.m;
    if (model_bind(m, &m->output_norm, -1, "output_norm", "weight", true)) return -1;
    if (model_check_vec(&m->output_norm, hp->n_embd)) return -1;
    if (model_bind(m, &m->output, -1, "output", "weight", false)) return -1;
    if (!m->output.data) {
        if (!(m->arch->flags & ARCH_TIED_OK)) {
            mr_seterr("%s: tensor 'output.weight' is missing", m->g->path);
            return -1;
        }
        m->output = m->tok_embd; /* tied embeddings */
    }
    if (model_check_mat(&m->output, hp->n_embd, m->hp.n_vocab, 1)) return -1;
    if (model_bind(m, &m->rope_freqs, -1, "rope_freqs", "weight", false)) return -1;
    if (m->rope_freqs.data && model_check_vec(&m->rope_freqs, hp->n_rot / 2)) return -1;
    return 0;
}

static void count_sizes(mr_model *m) {
    uint64_t total = 0, params = 0;
    for (uint64_t i = 0; i < m->g->n_tensors; i++) {
        total += m->g->tensors[i].nbytes;
        params += (uint64_t)m->g->tensors[i].nelem;
    }
    m->weight_bytes = total;
    m->n_params = params;
    /* active: everything except the unused experts, and only one row of the embeddings */
    uint64_t act = total - m->tok_embd.mat_bytes + m->tok_embd.row_bytes;
    if (m->output.data == m->tok_embd.data) act += m->output.mat_bytes;
    for (int il = 0; il < m->hp.n_layer; il++) {
        const model_layer *ly = &m->layers[il];
        const mr_weight *ex[3] = {&ly->gate_exps, &ly->up_exps, &ly->down_exps};
        for (int j = 0; j < 3; j++)
            if (ex[j]->data && ex[j]->n_mat > 0)
                act -= ex[j]->mat_bytes * (uint64_t)(ex[j]->n_mat - m->hp.n_expert_used);
    }
    m->active_bytes_est = act;
}

bool *engine_device_tensors(const mr_model *m); /* engine/plan.c */

mr_model *mr_model_load(const mr_model_params *p) {
    if (!p || !p->path) {
        mr_seterr("mr_model_load: no model path");
        return NULL;
    }
    mr_model *m = mr_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->n_threads = p->n_threads;
    m->plc_ngl = p->n_gpu_layers;
    m->plc_n_cpu_moe = p->n_cpu_moe;
    if ((p->overrides && !(m->plc_overrides = mr_strdup(p->overrides))) ||
        (p->split_mode && !(m->plc_split_mode = mr_strdup(p->split_mode))) ||
        (p->tensor_split && !(m->plc_tensor_split = mr_strdup(p->tensor_split))) ||
        (p->devices && !(m->plc_devices = mr_strdup(p->devices))))
        goto fail;
    /* -rtr (ik_llama.cpp's run-time repack) implies no mmap: the weights are read into huge-page
     * memory and repacked there in place */
    if (p->rtr && p->no_repack) {
        mr_seterr("-rtr (run-time repack) and --no-repack contradict each other");
        goto fail;
    }
    m->g = gguf_open_ex(p->path, !p->use_mmap || p->rtr);
    if (!m->g) goto fail;
    const char *an = gguf_get_str(m->g, "general.architecture");
    const char *nm = gguf_get_str(m->g, "general.name");
    if (nm) snprintf(m->name, sizeof m->name, "%s", nm);
    else {
        const char *b = strrchr(p->path, '/');
        snprintf(m->name, sizeof m->name, "%s", b ? b + 1 : p->path);
    }
    m->vocab = tok_vocab_load(m->g, true);
    if (!m->vocab) {
        mr_preerr("%s: tokenizer", p->path);
        goto fail;
    }
    if (p->vocab_only) return m;
    if (!an) {
        mr_seterr("%s: key 'general.architecture' is missing", p->path);
        goto fail;
    }
    m->arch = model_arch_find(an);
    if (!m->arch) {
        mr_seterr("%s: unsupported architecture '%s' (supported: %s)", p->path, an, model_arch_names());
        goto fail;
    }
    if (load_hparams(m)) goto fail;
    if (bind_globals(m)) goto fail;
    for (int il = 0; il < m->hp.n_layer; il++) {
        model_layer *ly = &m->layers[il];
        int rc = ly->attn_kind == MODEL_ATTN_MLA     ? model_bind_attn_mla(m, il)
                 : ly->attn_kind == MODEL_ATTN_GATED ? model_bind_attn_gated(m, il)
                 : ly->attn_kind == MODEL_ATTN_DELTA ? model_bind_delta(m, il)
                                                     : model_bind_attn_gqa(m, il);
        if (rc || model_bind_ffn(m, il)) goto fail;
    }
    count_sizes(m);
    if (tok_n_vocab(m->vocab) > m->hp.n_vocab) {
        mr_seterr("%s: the vocabulary has %d tokens but token_embd.weight only %d rows", p->path,
                  tok_n_vocab(m->vocab), m->hp.n_vocab);
        goto fail;
    }
    m->on_device = engine_device_tensors(m); /* engine/plan.c: those are uploaded, not repacked */
    if (model_mla_prepare(m, !p->no_repack)) goto fail;
    if (!p->no_repack && model_repack(m, p->n_threads, p->rtr)) goto fail;
    if (!m->repack_arena) { /* whatever stays mapped is read at every token: map it now */
        const double t0 = mr_time_s();
        const uint64_t pre = gguf_prefault(m->g);
        if (pre) MR_INFO("mapped %.2f GiB of weights in %.1f s", pre / 1073741824.0, mr_time_s() - t0);
    }
    return m;
fail:
    mr_model_free(m);
    return NULL;
}

void mr_model_free(mr_model *m) {
    if (!m) return;
    if (m->vocab) tok_vocab_free(m->vocab);
    model_mla_free_owned(m);
    if (m->repack_arena) munmap(m->repack_arena, m->repack_arena_size);
    if (m->g) gguf_close(m->g);
    free(m->layers);
    free(m->on_device);
    free(m->plc_overrides);
    free(m->plc_split_mode);
    free(m->plc_tensor_split);
    free(m->plc_devices);
    free(m);
}

void mr_model_get_info(const mr_model *m, mr_model_info *out) {
    memset(out, 0, sizeof *out);
    if (!m) return;
    snprintf(out->arch, sizeof out->arch, "%s", m->arch ? m->arch->name : "");
    snprintf(out->name, sizeof out->name, "%s", m->name);
    out->n_layer = m->hp.n_layer;
    out->n_embd = m->hp.n_embd;
    out->n_head = m->hp.n_head_max;
    out->n_head_kv = m->hp.n_head_kv_max;
    out->n_vocab = m->arch ? m->hp.n_vocab : (m->vocab ? tok_n_vocab(m->vocab) : 0);
    out->n_ctx_train = m->hp.n_ctx_train;
    out->n_expert = m->hp.n_expert;
    out->n_expert_used = m->hp.n_expert_used;
    out->n_params = m->n_params;
    out->file_bytes = m->g ? m->g->total_size : 0;
    out->weight_bytes = m->weight_bytes;
    out->active_bytes_est = m->active_bytes_est;
    out->n_repacked = m->n_repacked;
    out->n_repacked_fast = m->n_repacked_fast;
    out->repack_fast = m->repack_fast;
}
