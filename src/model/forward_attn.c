/*
 * forward_attn.c — the GQA attention block kind (llama, qwen2/3, qwen3moe,
 * gemma3) and the helpers every attention kind shares: cache writes, the
 * threaded attention over (token, KV head) pairs, RoPE parameters.
 *
 * GQA per layer (T tokens, H heads, Hkv KV heads, head size Dk/Dv):
 *   q = xn Wq^T (+bq) (T, H*Dk); k, v likewise with Hkv heads
 *   [QK-norm: RMSNorm of each head with attn_q_norm / attn_k_norm]
 *   RoPE on q and k (normal or NEOX per arch, this layer's base)
 *   cache <- k, v at the tokens' cells; att = softmax(q k^T * scale, mask) v
 *   out = att Wo^T (+bo)
 * Query head h uses KV head h / (H / Hkv), as ggml's broadcast does.
 */
#include <stdatomic.h>
#include <string.h>

#include "base/base.h"
#include "base/claim.h"
#include "model/forward.h"
#include "quant/quant.h"

cpu_rope_params model_rope_params(const mr_model *m, int il) {
    const model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[il];
    cpu_rope_params p = {
        .mode = m->arch->rope_mode,
        .n_dims = hp->n_rot,
        .freq_base = ly->rope_base,
        .freq_scale = ly->rope_freq_scale,
        .ext_factor = hp->yarn_ext_factor,
        .attn_factor = hp->yarn_attn_factor,
        .beta_fast = hp->yarn_beta_fast,
        .beta_slow = hp->yarn_beta_slow,
        .n_ctx_orig = hp->n_ctx_orig_yarn,
        .freq_factors = m->rope_freqs.data ? (const float *)m->rope_freqs.data : NULL,
    };
    return p;
}

/* model_kv_write for tokens [t0, t1) */
static void kv_write_range(const model_run *r, const model_ubatch *ub, int il, const float *K, const float *V, int t0,
                           int t1) {
    const kv_cache *kv = r->kv;
    const model_layer *ly = &r->m->layers[il];
    const int heads = ly->kv_heads, dk = ly->kv_dk, dv = ly->kv_dv;
    const bool tl = kv->tiled[il]; /* a row each into the tiles (cpu/attn.h), else into its place */
    const int n = kv_stride(kv, il);
    uint8_t row[(256 / 32) * 34]; /* a tiled layer's heads: at most 256 */
    for (int t = t0; t < t1; t++) {
        const int c = ub->cell[t];
        for (int h = 0; h < heads; h++) {
            uint8_t *kh = kv->k[il] + (size_t)h * n * kv->k_row[il];
            quant_quantize_row(kv->type_k, K + ((size_t)t * heads + h) * dk, tl ? row : kh + (size_t)c * kv->k_row[il], dk);
            if (tl) cpu_attn_tiled_put(kh, n, dk, true, c, row);
            if (!V) continue; /* the value inside K (MLA) */
            uint8_t *vh = kv->v[il] + (size_t)h * n * kv->v_row[il];
            quant_quantize_row(kv->type_v, V + ((size_t)t * heads + h) * dv, tl ? row : vh + (size_t)c * kv->v_row[il], dv);
            if (tl) cpu_attn_tiled_put(vh, n, dv, false, c, row);
        }
    }
}

void model_kv_write(model_run *r, const model_ubatch *ub, int il, const float *K, const float *V) {
    kv_write_range(r, ub, il, K, V, 0, ub->n);
}

typedef struct {
    model_run *r;
    const model_ubatch *ub;
    const cpu_attn_args *a;  /* the layer's arguments */
    cpu_attn_args sa;        /* the same with n_head = one slice of each KV group's heads */
    int ns;                  /* slices per (token, KV head) */
    int nt;                  /* tokens per cpu_attn_multi item */
    const float *q;
    float *out;
    _Atomic int next;
    /* a decode step split over cells (attn_split_worker) */
    int np, cells;   /* parts per KV head, cells per part (cpu_attn_split) */
    mr_claim claim;  /* items (KV head, part), a contiguous run per thread */
} attn_job;

/* Items (KV head, part of the cells) of one decode token; the thread that finishes a KV head's
 * last part merges its parts (the acq_rel count makes the other parts' writes visible). */
static void attn_split_worker(void *arg, int ith, int nth) {
    (void)nth;
    attn_job *j = arg;
    model_run *r = j->r;
    const cpu_attn_args *a = j->a;
    const int g = a->n_head / a->n_head_kv, np = j->np;
    const size_t ps = (size_t)g * a->dv;
    float *scratch = r->attn_scratch + (size_t)ith * r->attn_scratch_per;
    float *parts = r->attn_part, *mls = r->attn_part + (size_t)a->n_head_kv * np * ps;
    for (;;) {
        const int64_t it = mr_claim_next(&j->claim, ith);
        if (it < 0) break;
        const int kvh = (int)(it / np), p = (int)(it % np);
        const size_t k = (size_t)kvh * np;
        cpu_attn_head_part(a, kvh, j->q + (size_t)kvh * g * a->dk, j->ub->pos[0], j->ub->seq[0], p * j->cells,
                           (p + 1) * j->cells, parts + (k + p) * ps, mls + (k + p) * 2 * g, scratch);
        if (atomic_fetch_add_explicit(&r->attn_done[kvh], 1, memory_order_acq_rel) == np - 1)
            cpu_attn_merge(g, a->dv, np, parts + k * ps, mls + k * 2 * g, j->out + (size_t)kvh * ps);
    }
}

/* Items of cpu_attn_multi: (block of nt tokens, KV head). */
static void attn_multi_worker(void *arg, int ith, int nth) {
    (void)nth;
    attn_job *j = arg;
    const cpu_attn_args *a = j->a;
    const int T = j->ub->n, nt = j->nt, g = a->n_head / a->n_head_kv, n_items = (T + nt - 1) / nt * a->n_head_kv;
    float *scratch = j->r->attn_scratch + (size_t)ith * j->r->attn_scratch_per;
    for (;;) {
        const int it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (it >= n_items) break;
        const int t0 = it / a->n_head_kv * nt, kvh = it % a->n_head_kv, n = MR_MIN(nt, T - t0);
        const size_t h0 = (size_t)t0 * a->n_head + (size_t)kvh * g;
        cpu_attn_multi(a, kvh, n, j->q + h0 * a->dk, (size_t)a->n_head * a->dk, j->ub->pos + t0, j->ub->seq + t0,
                       j->out + h0 * a->dv, (size_t)a->n_head * a->dv, scratch);
    }
}

static void attn_worker(void *arg, int ith, int nth) {
    (void)nth;
    attn_job *j = arg;
    const cpu_attn_args *a = j->a;
    const int g = a->n_head / a->n_head_kv, gs = g / j->ns, n_items = j->ub->n * a->n_head_kv * j->ns;
    float *scratch = j->r->attn_scratch + (size_t)ith * j->r->attn_scratch_per;
    for (;;) {
        const int it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (it >= n_items) break;
        const int sl = it % j->ns, tk = it / j->ns, t = tk / a->n_head_kv, kvh = tk % a->n_head_kv;
        const size_t h0 = (size_t)t * a->n_head + (size_t)kvh * g + (size_t)sl * gs;
        cpu_attn_head(j->ns > 1 ? &j->sa : a, kvh, j->q + h0 * a->dk, j->ub->pos[t], j->ub->seq[t],
                      j->out + h0 * a->dv, scratch);
    }
}

/* Work items are (token, KV head), or with cpu_attn_multi (block of tokens,
 * KV head), or for a decode token with flash over more than CPU_ATTN_SPLIT_MIN cells
 * (KV head, part of the cells: cpu_attn_split, the same parts whatever the thread count);
 * when there are fewer than threads (one
 * token of MLA, whose cache is a single KV head for all query heads) each
 * item's query heads are split into slices of a multiple of 8 heads (the
 * SIMD path's lane tiles), so decoding uses every thread. Heads are
 * independent, so the results do not change; each slice reads the cache. */
static void attn_run(model_run *r, const model_ubatch *ub, const cpu_attn_args *a, const float *q, float *out);

void model_attn_run(model_run *r, const model_ubatch *ub, const cpu_attn_args *a, const float *q, float *out) {
    if (!(r->prof && ub->n == 1)) {
        attn_run(r, ub, a, q, out);
        return;
    }
    const double t0 = mr_time_s();
    attn_run(r, ub, a, q, out);
    r->prof_s[7] += mr_time_s() - t0;
    r->prof_steps++;
}

static void attn_run(model_run *r, const model_ubatch *ub, const cpu_attn_args *a, const float *q, float *out) {
    attn_job j = {.r = r, .ub = ub, .a = a, .q = q, .out = out, .ns = 1};
    if (ub->n == 1) /* a decode step reads the cells [0, n_cells) of every KV head once (the roofline's KV part) */
        r->kv_bytes_read += (uint64_t)a->n_cells * (uint64_t)a->n_head_kv *
                            (mr_row_size(a->k_type, a->dk) + (a->v_in_k ? 0 : mr_row_size(a->v_type, a->dv)));
    const int nth = mr_tp_n(r->tp), items = ub->n * a->n_head_kv, g = a->n_head / a->n_head_kv;
    if (ub->n > 1 && (j.nt = cpu_attn_multi_tokens(a)) > 0) { /* a prompt: several tokens per pass over the cache */
        atomic_init(&j.next, 0);
        mr_tp_run(r->tp, attn_multi_worker, &j);
        return;
    }
    if (ub->n == 1 && r->attn_part && (j.np = cpu_attn_split(a, &j.cells)) > 1) {
        MR_ASSERT(j.np <= CPU_ATTN_SPLIT_MAX && a->n_head_kv <= r->attn_kv_max &&
                  (size_t)a->n_head * (a->dv + 2) <= r->attn_part_per);
        for (int h = 0; h < a->n_head_kv; h++) atomic_init(&r->attn_done[h], 0);
        /* a new tag for these queries: a thread's parts of one KV head prepare them once */
        cpu_attn_args ta = *a;
        ta.q_tag = ++r->attn_q_tag;
        j.a = &ta;
        mr_claim_init(&j.claim, (int64_t)a->n_head_kv * j.np, nth);
        mr_tp_run(r->tp, attn_split_worker, &j);
        return;
    }
    if (items < nth && !a->ref) {
        int ns = MR_MIN((nth + items - 1) / items, g / 8);
        while (ns > 1 && g % (ns * 8) != 0) ns--;
        if (ns > 1) {
            j.ns = ns;
            j.sa = *a;
            j.sa.n_head = a->n_head / ns;
        }
    }
    atomic_init(&j.next, 0);
    mr_tp_run(r->tp, attn_worker, &j);
}

static void add_bias(float *y, const mr_weight *b, int T, int n) {
    if (!b->data) return;
    const float *bv = b->data;
    for (int t = 0; t < T; t++) cpu_add(y + (size_t)t * n, bv, n);
}

/* Per-head RMSNorm of q and k, RoPE and the cache writes, tokens split over
 * the threads (each with its own RoPE cache, r->rope_cs; a micro-batch's
 * tokens are independent here and write distinct cells). */
typedef struct {
    const model_run *r;
    const model_ubatch *ub;
    const model_layer *ly;
    const cpu_rope_params *rp;
    int il, H, Hkv, Dk;
    float eps;
} qk_job;

static void qk_worker(void *arg, int ith, int nth) {
    const qk_job *j = arg;
    const model_layer *ly = j->ly;
    const int H = j->H, Hkv = j->Hkv, Dk = j->Dk, T = j->ub->n;
    float *cs = j->r->rope_cs + ((size_t)j->rp->n_dims + 2) * (size_t)ith;
    const int t0 = T * ith / nth, t1 = T * (ith + 1) / nth;
    for (int t = t0; t < t1; t++) {
        float *q = j->r->q + (size_t)t * H * Dk, *k = j->r->k + (size_t)t * Hkv * Dk;
        if (ly->q_norm.data)
            for (int h = 0; h < H; h++) cpu_rmsnorm(q + (size_t)h * Dk, q + (size_t)h * Dk, ly->q_norm.data, Dk, j->eps);
        if (ly->k_norm.data)
            for (int h = 0; h < Hkv; h++) cpu_rmsnorm(k + (size_t)h * Dk, k + (size_t)h * Dk, ly->k_norm.data, Dk, j->eps);
        if (j->rp->n_dims > 0) {
            cpu_rope_cache(j->rp, (float)j->ub->pos[t], cs);
            cpu_rope_apply(j->rp, cs, q, H, Dk);
            cpu_rope_apply(j->rp, cs, k, Hkv, Dk);
        }
    }
    kv_write_range(j->r, j->ub, j->il, j->r->k, j->r->v, t0, t1);
}

/* Shared tail of the GQA-style attention kinds: per token, per-head RMSNorm
 * of q and k when the layer has q_norm/k_norm, RoPE at the token's position;
 * then K/V rows into the cache and attention over it:
 * r->q (T, H*Dk), r->k (T, Hkv*Dk), r->v (T, Hkv*Dv) -> r->att (T, H*Dv). */
void model_attn_qk_run(model_run *r, const model_ubatch *ub, int il) {
    const mr_model *m = r->m;
    const model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[il];
    const cpu_rope_params rp = model_rope_params(m, il);
    const int H = ly->n_head, Hkv = ly->n_head_kv, Dk = hp->head_dim_k, Dv = hp->head_dim_v;
    const qk_job j = {.r = r, .ub = ub, .ly = ly, .rp = &rp, .il = il, .H = H, .Hkv = Hkv, .Dk = Dk,
                      .eps = hp->rms_eps};
    if (ub->n > 1) mr_tp_run(r->tp, qk_worker, (void *)&j);
    else qk_worker((void *)&j, 0, 1);

    const kv_cache *kv = r->kv;
    cpu_attn_args a = {
        .n_head = H, .n_head_kv = Hkv, .dk = Dk, .dv = Dv,
        .scale = hp->attn_scale, .softcap = hp->attn_softcap,
        .k_type = kv->type_k, .v_type = kv->type_v,
        .K = kv->k[il], .V = kv->v[il], .n_ctx = kv_stride(kv, il), .tiled = kv->tiled[il],
        .n_cells = kv->n_hi, .cell_pos = kv->pos, .cell_seq = kv->seq,
        .n_swa = ly->swa ? hp->n_swa : 0,
        .flash = r->flash, .ref = r->ref,
    };
    model_attn_run(r, ub, &a, r->q, r->att);
}

int model_attn_gqa(model_run *r, const model_ubatch *ub, int il, const float *xn, float *out) {
    const mr_model *m = r->m;
    const model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[il];
    const int T = ub->n, H = ly->n_head, Hkv = ly->n_head_kv, Dk = hp->head_dim_k, Dv = hp->head_dim_v;
    const int qw = H * Dk, kw = Hkv * Dk, vw = Hkv * Dv;

    const mr_weight *qkv[3] = {&ly->wq, &ly->wk, &ly->wv};
    float *const qkv_y[3] = {r->q, r->k, r->v};
    if (cpu_matmul_multi(&r->mm, 3, qkv, xn, T, qkv_y)) return -1;
    add_bias(r->q, &ly->bq, T, qw);
    add_bias(r->k, &ly->bk, T, kw);
    add_bias(r->v, &ly->bv, T, vw);

    model_attn_qk_run(r, ub, il);

    if (cpu_matmul(&r->mm, &ly->wo, 0, r->att, T, out)) return -1;
    add_bias(out, &ly->bo, T, hp->n_embd);
    return 0;
}
