/*
 * qwen3next.c — Qwen3-Next (GGUF architecture `qwen3next`, as llama.cpp's
 * src/models/qwen3next.cpp): hyperparameters, tensor binders and the forward
 * of its two attention block kinds. The MoE FFN (softmax routing, normalized
 * top-k weights, shared expert gated by sigmoid(ffn_gate_inp_shexp . x)) is
 * the generic one; the pre-FFN norm is the tensor post_attention_norm.
 *
 * Layers: layer il is a gated delta net when attention.recurrent_layers[il]
 * is set, or, without that key, when (il + 1) % full_attention_interval != 0
 * (default interval 4); the others are gated full attention.
 *
 * Gated attention (MODEL_ATTN_GATED), H heads of Dk, Hkv KV heads:
 *   [q_h | gate_h] = (xn Wq^T) per head (T, H, 2*Dk); k = xn Wk^T; v = xn Wv^T
 *   q, k: per-head RMSNorm (attn_q_norm / attn_k_norm), NEOX RoPE on the
 *   first n_rot dims (partial rotary); softmax attention over the KV cache;
 *   out = (att * sigmoid(gate)) Wo^T.
 *
 * Gated delta net (MODEL_ATTN_DELTA): Hk key heads and Hv value heads of
 * Sk = Sv (state_size), r = Hv / Hk, C = 2*Hk*Sk + Hv*Sv conv channels:
 *   qkv = xn Wqkv^T (T, C) = [q (Hk*Sk) | k (Hk*Sk) | v (Hv*Sv)]; z = xn Wgate^T
 *   (legacy ssm_in: per key head [q | k | v (r*Sv) | z (r*Sv)], regrouped)
 *   ba = xn Wba^T, per key head [b (r) | a (r)] -> value head kh*r + j
 *   beta = sigmoid(b); g = softplus(a + ssm_dt.bias) * ssm_a  (ssm_a = -exp(A_log))
 *   x = silu(causal depthwise conv1d(qkv; ssm_conv1d, state: last d_conv-1 inputs))
 *   q, k = L2-normalized per head (eps = rms eps); value head h uses key head h / r
 *   delta rule per value head (cpu/delta.h) with scale 1/sqrt(Sk) -> o (T, Hv, Sv)
 *   o = RMSNorm(o_h; ssm_norm) * silu(z_h); out = o Wout^T.
 * Norm weights are used as stored (the converter bakes Qwen3-Next's "+1"
 * into the RMSNorm weights; ssm_norm has none).
 *
 * The delta rule runs value heads split across threads. A sequence with at
 * least DELTA_CHUNK_MIN tokens in the micro-batch (a prompt) takes the
 * chunked form (cpu_delta_chunked, chunks of MOERUN_DELTA_CHUNK tokens,
 * default 16; 0 turns it off); fewer tokens (decoding) and MOERUN_REF=1 take
 * the recurrent form token by token. The state lives in kv_rec
 * (delta_net.h).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cpu/delta.h"
#include "model/delta_net.h"
#include "quant/quant.h"

/* ---- hyperparameters ------------------------------------------------------------- */

static int key_int(const mr_model *m, const char *suffix, int64_t def, bool required, int *out) {
    char k[160];
    snprintf(k, sizeof k, "%s.%s", m->arch->name, suffix);
    int64_t v = def;
    if (gguf_find(m->g, k)) {
        if (!gguf_get_i64(m->g, k, &v)) {
            mr_seterr("%s: key '%s' is not an integer", m->g->path, k);
            return -1;
        }
    } else if (required) {
        mr_seterr("%s: key '%s' is missing (needed by architecture %s)", m->g->path, k, m->arch->name);
        return -1;
    }
    if (v < 0 || v > (1 << 24)) {
        mr_seterr("%s: key '%s' = %lld out of range", m->g->path, k, (long long)v);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int model_load_hparams_delta(mr_model *m) {
    model_hparams *hp = &m->hp;
    const int L = hp->n_layer;
    if (key_int(m, "ssm.conv_kernel", 0, true, &hp->ssm_d_conv) ||
        key_int(m, "ssm.state_size", 0, true, &hp->ssm_d_state) ||
        key_int(m, "ssm.group_count", 0, true, &hp->ssm_n_group) ||
        key_int(m, "ssm.time_step_rank", 0, true, &hp->ssm_dt_rank) ||
        key_int(m, "ssm.inner_size", 0, true, &hp->ssm_d_inner))
        return -1;
    if (hp->ssm_d_conv < 1 || hp->ssm_d_state < 1 || hp->ssm_n_group < 1 || hp->ssm_dt_rank < 1 ||
        hp->ssm_dt_rank % hp->ssm_n_group || hp->ssm_d_inner % hp->ssm_dt_rank ||
        hp->ssm_d_inner / hp->ssm_dt_rank != hp->ssm_d_state) {
        mr_seterr("%s: gated delta net geometry not supported: conv_kernel %d, state_size %d, group_count (key "
                  "heads) %d, time_step_rank (value heads) %d, inner_size %d (need value heads a multiple of key "
                  "heads and inner_size = value heads * state_size)",
                  m->g->path, hp->ssm_d_conv, hp->ssm_d_state, hp->ssm_n_group, hp->ssm_dt_rank, hp->ssm_d_inner);
        return -1;
    }
    char k[160];
    snprintf(k, sizeof k, "%s.attention.recurrent_layers", m->arch->name);
    const gguf_kv *kv = gguf_find(m->g, k);
    int64_t *rec = mr_calloc((size_t)L + 1, sizeof(int64_t));
    if (!rec) return -1;
    if (kv && kv->val.type == GGUF_VT_ARRAY) {
        if (gguf_get_arr_i64(m->g, k, rec, L + 1) != L) {
            free(rec);
            mr_seterr("%s: key '%s' must have one entry per layer (%d)", m->g->path, k, L);
            return -1;
        }
    } else {
        int interval;
        if (key_int(m, "full_attention_interval", 4, false, &interval)) {
            free(rec);
            return -1;
        }
        if (interval < 1) {
            free(rec);
            mr_seterr("%s: %s.full_attention_interval must be >= 1", m->g->path, m->arch->name);
            return -1;
        }
        for (int il = 0; il < L; il++) rec[il] = (il + 1) % interval != 0;
    }
    for (int il = 0; il < L; il++) m->layers[il].attn_kind = rec[il] ? MODEL_ATTN_DELTA : MODEL_ATTN_GATED;
    free(rec);
    return 0;
}

bool model_is_recurrent(const mr_model *m) {
    if (!m->layers) return false;
    for (int il = 0; il < m->hp.n_layer; il++)
        if (m->layers[il].attn_kind == MODEL_ATTN_DELTA) return true;
    return false;
}

/* ---- tensors ----------------------------------------------------------------------- */

#define BIND(w, name, req)                                              \
    do {                                                                \
        if (model_bind(m, &ly->w, il, name, "weight", req)) return -1; \
    } while (0)

static int check_f32(const mr_weight *w, int64_t k, int64_t mm) {
    if (model_check_shape(w, k, mm, 1)) return -1;
    if (w->type != MR_TYPE_F32) {
        mr_seterr("tensor '%s': type %s, expected F32", w->name, mr_type_name(w->type));
        return -1;
    }
    return 0;
}

int model_bind_attn_gated(mr_model *m, int il) {
    const model_hparams *hp = &m->hp;
    model_layer *ly = &m->layers[il];
    const int D = hp->n_embd, H = ly->n_head, Hkv = ly->n_head_kv, Dk = hp->head_dim_k, Dv = hp->head_dim_v;
    if (Dk != Dv) {
        mr_seterr("%s: gated attention needs key_length = value_length (%d, %d)", m->g->path, Dk, Dv);
        return -1;
    }
    if (hp->n_rot > Dk) {
        mr_seterr("%s: rope.dimension_count %d exceeds the head size %d", m->g->path, hp->n_rot, Dk);
        return -1;
    }
    BIND(attn_norm, "attn_norm", true);
    BIND(wq, "attn_q", true);
    BIND(wk, "attn_k", true);
    BIND(wv, "attn_v", true);
    BIND(wo, "attn_output", true);
    BIND(q_norm, "attn_q_norm", true);
    BIND(k_norm, "attn_k_norm", true);
    if (model_check_vec(&ly->attn_norm, D) || model_check_mat(&ly->wq, D, (int64_t)H * Dk * 2, 1) ||
        model_check_mat(&ly->wk, D, (int64_t)Hkv * Dk, 1) || model_check_mat(&ly->wv, D, (int64_t)Hkv * Dv, 1) ||
        model_check_mat(&ly->wo, (int64_t)H * Dv, D, 1) || model_check_vec(&ly->q_norm, Dk) ||
        model_check_vec(&ly->k_norm, Dk))
        return -1;
    ly->kv_heads = Hkv;
    ly->kv_dk = Dk;
    ly->kv_dv = Dv;
    ly->kv_v_in_k = false;
    return 0;
}

int model_bind_delta(mr_model *m, int il) {
    const model_hparams *hp = &m->hp;
    model_layer *ly = &m->layers[il];
    const int D = hp->n_embd, Hk = hp->ssm_n_group, Hv = hp->ssm_dt_rank, Sk = hp->ssm_d_state;
    const int dI = hp->ssm_d_inner, C = 2 * Hk * Sk + dI;
    BIND(attn_norm, "attn_norm", true);
    BIND(wqkv, "attn_qkv", false);
    BIND(wqkv_gate, "attn_gate", false);
    if (!ly->wqkv.data || !ly->wqkv_gate.data) {
        BIND(ssm_in, "ssm_in", false);
        if (!ly->ssm_in.data) {
            mr_seterr("%s: layer %d (gated delta net): needs blk.%d.attn_qkv and blk.%d.attn_gate (or the legacy "
                      "blk.%d.ssm_in)",
                      m->g->path, il, il, il, il);
            return -1;
        }
        memset(&ly->wqkv, 0, sizeof ly->wqkv);
        if (model_check_mat(&ly->ssm_in, D, (int64_t)C + dI, 1)) return -1;
    } else if (model_check_mat(&ly->wqkv, D, C, 1) || model_check_mat(&ly->wqkv_gate, D, dI, 1))
        return -1;
    BIND(ssm_conv1d, "ssm_conv1d", true);
    if (model_bind(m, &ly->ssm_dt_b, il, "ssm_dt", "bias", true)) return -1;
    char blk[32];
    snprintf(blk, sizeof blk, "blk.%d", il);
    if (model_bind(m, &ly->ssm_a, -1, blk, "ssm_a", true)) return -1; /* "blk.N.ssm_a" has no suffix */
    BIND(ssm_ba, "ssm_ba", true);
    BIND(ssm_norm, "ssm_norm", true);
    BIND(ssm_out, "ssm_out", true);
    if (check_f32(&ly->ssm_conv1d, hp->ssm_d_conv, C) || model_check_vec(&ly->ssm_dt_b, Hv) ||
        model_check_vec(&ly->ssm_a, Hv) || model_check_mat(&ly->ssm_ba, D, 2 * Hv, 1) ||
        model_check_vec(&ly->ssm_norm, Sk) || model_check_mat(&ly->ssm_out, dI, D, 1) ||
        model_check_vec(&ly->attn_norm, D))
        return -1;
    ly->kv_heads = 0; /* no KV cache: recurrent state (delta_net.h) */
    ly->kv_dk = ly->kv_dv = 0;
    ly->kv_v_in_k = false;
    return 0;
}

/* ---- scratch ----------------------------------------------------------------------- */

typedef struct {
    float *qkv;  /* (T, C + dI) projections (legacy ssm_in: fused, regrouped into xc/z) */
    float *z;    /* (T, dI) output gate */
    float *ba;   /* (T, 2*Hv) */
    float *g, *beta; /* (T, Hv) */
    float *xc;   /* (T, C + dI) conv output */
    float *o;    /* (T, dI) */
    float *qg;   /* (T, 2*H*Dk) gated attention: q and gate */
    float *gate; /* (T, H*Dk) */
    /* the delta rule's per-sequence runs of the current ubatch */
    int32_t *rows;                 /* (T) token indices grouped by sequence, in order */
    int n_run;                     /* sequences present */
    int run_off[KV_MAX_SEQ + 1];   /* run i: rows[run_off[i] .. run_off[i+1]) */
    int run_seq[KV_MAX_SEQ];
    int chunk;                     /* chunk size of the chunked form, 0: recurrent only */
    float *work;                   /* per thread: cpu_delta_chunk_work floats */
    size_t work_per;
} delta_scratch;

/* Chunk size: 16 is the fastest on AVX2 for 128-wide heads (chunk 16 / 32 / 64 / recurrent:
 * ~2.7 / 3.1 / 3.3 / 5 us per token and head on one core, 256-token runs). */
#define DELTA_CHUNK_DEFAULT 16
#define DELTA_CHUNK_MIN 16 /* tokens of one sequence in a ubatch from which the chunked form is used */

static float *falloc(size_t n) { return mr_malloc_aligned(sizeof(float) * (n ? n : 1)); }

int model_delta_run_init(model_run *r) {
    const mr_model *m = r->m;
    if (!(m->arch->flags & ARCH_HYBRID_DELTA)) return 0;
    const model_hparams *hp = &m->hp;
    delta_scratch *s = mr_calloc(1, sizeof *s);
    if (!s) return -1;
    r->rec = s;
    const size_t T = (size_t)r->n_ub, dI = (size_t)hp->ssm_d_inner, Hv = (size_t)hp->ssm_dt_rank;
    const size_t C = (size_t)2 * hp->ssm_n_group * hp->ssm_d_state + dI;
    const size_t qa = (size_t)hp->n_head_max * hp->head_dim_k;
    s->qkv = falloc(T * (C + dI));
    s->z = falloc(T * dI);
    s->ba = falloc(T * 2 * Hv);
    s->g = falloc(T * Hv);
    s->beta = falloc(T * Hv);
    s->xc = falloc(T * (C + dI));
    s->o = falloc(T * dI);
    s->qg = falloc(T * 2 * qa);
    s->gate = falloc(T * qa);
    s->rows = mr_malloc(sizeof(int32_t) * (T ? T : 1));
    if (!s->qkv || !s->z || !s->ba || !s->g || !s->beta || !s->xc || !s->o || !s->qg || !s->gate || !s->rows)
        return -1;
    /* MOERUN_DELTA_CHUNK: chunk size of the chunked delta rule (multiple of 8, 8..256), 0: off */
    s->chunk = DELTA_CHUNK_DEFAULT;
    const char *ce = getenv("MOERUN_DELTA_CHUNK");
    if (ce && *ce) {
        char *end;
        const long v = strtol(ce, &end, 10);
        if (*end || (v != 0 && (v < 8 || v > 256 || v % 8))) {
            mr_seterr("MOERUN_DELTA_CHUNK=%s: expected 0 (off) or a multiple of 8 in [8, 256]", ce);
            return -1;
        }
        s->chunk = (int)v;
    }
    if (s->chunk > 0 && T >= DELTA_CHUNK_MIN) {
        s->work_per = (cpu_delta_chunk_work(hp->ssm_d_state, hp->ssm_d_state, s->chunk) + 15) & ~(size_t)15;
        s->work = falloc(s->work_per * (size_t)mr_tp_n(r->tp));
        if (!s->work) return -1;
    }
    return 0;
}

void model_delta_run_free(model_run *r) {
    delta_scratch *s = r->rec;
    if (!s) return;
    float *fs[] = {s->qkv, s->z, s->ba, s->g, s->beta, s->xc, s->o, s->qg, s->gate, s->work};
    for (size_t i = 0; i < MR_ARRAY_LEN(fs); i++) mr_free_aligned(fs[i]);
    free(s->rows);
    free(s);
    r->rec = NULL;
}

/* ---- gated attention ---------------------------------------------------------------- */

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

int model_attn_gated(model_run *r, const model_ubatch *ub, int il, const float *xn, float *out) {
    const mr_model *m = r->m;
    const model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[il];
    delta_scratch *s = r->rec;
    const int T = ub->n, H = ly->n_head, Dk = hp->head_dim_k, Dv = hp->head_dim_v;

    const mr_weight *qkv[3] = {&ly->wq, &ly->wk, &ly->wv};
    float *const qkv_y[3] = {s->qg, r->k, r->v};
    if (cpu_matmul_multi(&r->mm, 3, qkv, xn, T, qkv_y)) return -1;
    /* per head: [q (Dk) | gate (Dk)] */
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            const float *src = s->qg + ((size_t)t * H + h) * 2 * Dk;
            memcpy(r->q + ((size_t)t * H + h) * Dk, src, sizeof(float) * Dk);
            memcpy(s->gate + ((size_t)t * H + h) * Dk, src + Dk, sizeof(float) * Dk);
        }
    model_attn_qk_run(r, ub, il); /* q/k norms, partial RoPE, cache, attention */
    const size_t n = (size_t)T * H * Dv;
    for (size_t i = 0; i < n; i++) r->att[i] *= sigmoidf(s->gate[i]);
    return cpu_matmul(&r->mm, &ly->wo, 0, r->att, T, out);
}

/* ---- gated delta net ------------------------------------------------------------------ */

typedef struct {
    model_run *r;
    const model_ubatch *ub;
    int il;
    const kv_rec *rec;
    _Atomic int next;
} delta_job;

/* Conv over a channel range for all tokens in order (channels are independent). */
static void conv_worker(void *arg, int ith, int nth) {
    delta_job *j = arg;
    const model_hparams *hp = &j->r->m->hp;
    const model_layer *ly = &j->r->m->layers[j->il];
    const delta_scratch *s = j->r->rec;
    const int C = 2 * hp->ssm_n_group * hp->ssm_d_state + hp->ssm_d_inner;
    int64_t c0, c1;
    mr_split_range(C, ith, nth, 16, &c0, &c1);
    if (c0 >= c1) return;
    for (int t = 0; t < j->ub->n; t++) {
        float *st = kv_rec_conv(j->rec, j->il, j->ub->seq[t]);
        float *y = s->xc + (size_t)t * C;
        cpu_conv_step(ly->ssm_conv1d.data, hp->ssm_d_conv, C, (int)c0, (int)c1, st, s->qkv + (size_t)t * C, y);
        for (int64_t c = c0; c < c1; c++) y[c] = y[c] / (1.0f + expf(-y[c])); /* silu */
    }
}

/* The delta rule: value heads across threads; each head runs every sequence's
 * tokens in order, chunked when the sequence has enough of them. */
static void delta_worker(void *arg, int ith, int nth) {
    (void)nth;
    delta_job *j = arg;
    const model_hparams *hp = &j->r->m->hp;
    const delta_scratch *s = j->r->rec;
    const int Hk = hp->ssm_n_group, Hv = hp->ssm_dt_rank, S = hp->ssm_d_state, rr = Hv / Hk;
    const int C = 2 * Hk * S + hp->ssm_d_inner, dI = hp->ssm_d_inner;
    for (;;) {
        const int h = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (h >= Hv) break;
        const int kh = h / rr;
        const cpu_delta_seq a = {
            .Sk = S, .Sv = S,
            .q = s->xc + (size_t)kh * S,
            .k = s->xc + (size_t)(Hk + kh) * S,
            .v = s->xc + (size_t)2 * Hk * S + (size_t)h * S,
            .ld_x = (size_t)C, .g = s->g + h, .beta = s->beta + h, .ld_g = (size_t)Hv,
            .o = s->o + (size_t)h * S, .ld_o = (size_t)dI, .scale = 1.0f / sqrtf((float)S),
        };
        for (int i = 0; i < s->n_run; i++) {
            float *st = kv_rec_ssm(j->rec, j->il, s->run_seq[i]) + (size_t)h * S * S;
            const int n = s->run_off[i + 1] - s->run_off[i];
            const int32_t *rows = s->rows + s->run_off[i];
            if (s->work && !j->r->ref && n >= DELTA_CHUNK_MIN)
                cpu_delta_chunked(st, &a, n, rows, s->chunk, s->work + s->work_per * (size_t)ith, false);
            else
                cpu_delta_recurrent(st, &a, n, rows, j->r->ref);
        }
    }
}

/* Group the ubatch's token indices by sequence (order kept) into s->rows. */
static void group_runs(delta_scratch *s, const model_ubatch *ub) {
    int cnt[KV_MAX_SEQ] = {0}, slot[KV_MAX_SEQ];
    for (int t = 0; t < ub->n; t++) cnt[ub->seq[t]]++;
    s->n_run = 0;
    int off = 0;
    for (int q = 0; q < KV_MAX_SEQ; q++) {
        if (!cnt[q]) continue;
        slot[q] = off;
        s->run_seq[s->n_run] = q;
        s->run_off[s->n_run++] = off;
        off += cnt[q];
    }
    s->run_off[s->n_run] = off;
    for (int t = 0; t < ub->n; t++) s->rows[slot[ub->seq[t]]++] = t;
}

int model_attn_delta(model_run *r, const model_ubatch *ub, int il, const float *xn, float *out) {
    const mr_model *m = r->m;
    const model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[il];
    delta_scratch *s = r->rec;
    const int T = ub->n, Hk = hp->ssm_n_group, Hv = hp->ssm_dt_rank, S = hp->ssm_d_state, rr = Hv / Hk;
    const int dI = hp->ssm_d_inner, C = 2 * Hk * S + dI;
    const float eps = hp->rms_eps;
    MR_ASSERT(r->kv->rec != NULL);

    /* projections */
    if (ly->wqkv.data) {
        if (cpu_matmul(&r->mm, &ly->wqkv, 0, xn, T, s->qkv) || cpu_matmul(&r->mm, &ly->wqkv_gate, 0, xn, T, s->z))
            return -1;
    } else {
        /* legacy fused ssm_in: per key head [q (S) | k (S) | v (r*S) | z (r*S)] -> qkv (T, C), z (T, dI) */
        if (cpu_matmul(&r->mm, &ly->ssm_in, 0, xn, T, s->xc)) return -1;
        const int blk = 2 * S + 2 * rr * S;
        for (int t = 0; t < T; t++) {
            const float *src = s->xc + (size_t)t * (C + dI);
            float *q = s->qkv + (size_t)t * C, *k = q + (size_t)Hk * S, *v = q + (size_t)2 * Hk * S;
            float *z = s->z + (size_t)t * dI;
            for (int kh = 0; kh < Hk; kh++) {
                const float *b = src + (size_t)kh * blk;
                memcpy(q + (size_t)kh * S, b, sizeof(float) * S);
                memcpy(k + (size_t)kh * S, b + S, sizeof(float) * S);
                memcpy(v + (size_t)kh * rr * S, b + 2 * S, sizeof(float) * rr * S);
                memcpy(z + (size_t)kh * rr * S, b + 2 * S + rr * S, sizeof(float) * rr * S);
            }
        }
    }
    if (cpu_matmul(&r->mm, &ly->ssm_ba, 0, xn, T, s->ba)) return -1;

    const double t0 = r->prof ? mr_time_s() : 0.0;
    /* gates: value head h = kh*r + j reads b at [kh*2r + j], a at [kh*2r + r + j] */
    const float *dt = ly->ssm_dt_b.data, *A = ly->ssm_a.data;
    for (int t = 0; t < T; t++) {
        const float *ba = s->ba + (size_t)t * 2 * Hv;
        for (int kh = 0; kh < Hk; kh++)
            for (int jj = 0; jj < rr; jj++) {
                const int h = kh * rr + jj;
                const float b = ba[kh * 2 * rr + jj], a = ba[kh * 2 * rr + rr + jj] + dt[h];
                const float sp = a > 20.0f ? a : logf(1.0f + expf(a));
                s->beta[(size_t)t * Hv + h] = sigmoidf(b);
                s->g[(size_t)t * Hv + h] = sp * A[h];
            }
    }

    /* causal conv + silu, per sequence state */
    delta_job j = {.r = r, .ub = ub, .il = il, .rec = r->kv->rec};
    atomic_init(&j.next, 0);
    mr_tp_run(r->tp, conv_worker, &j);

    /* L2 norm of q and k heads */
    for (int t = 0; t < T; t++) {
        float *x = s->xc + (size_t)t * C;
        for (int h = 0; h < 2 * Hk; h++) cpu_l2norm(x + (size_t)h * S, S, eps);
    }

    /* delta rule */
    group_runs(s, ub);
    mr_tp_run(r->tp, delta_worker, &j);

    /* gated RMSNorm: o_h = rmsnorm(o_h) * ssm_norm * silu(z_h) */
    for (int t = 0; t < T; t++)
        for (int h = 0; h < Hv; h++) {
            float *o = s->o + (size_t)t * dI + (size_t)h * S;
            const float *z = s->z + (size_t)t * dI + (size_t)h * S;
            cpu_rmsnorm(o, o, ly->ssm_norm.data, S, eps);
            for (int i = 0; i < S; i++) o[i] *= z[i] / (1.0f + expf(-z[i]));
        }
    if (r->prof) r->prof_s[6] += mr_time_s() - t0;
    return cpu_matmul(&r->mm, &ly->ssm_out, 0, s->o, T, out);
}
