/*
 * forward_gpu.c — layers and output head on GPU devices (forward_gpu.h).
 *
 * Per device layer (T tokens; one device context; every op queued in order):
 *   xn = rmsnorm(x)  q, k, v = xn W^T (T = 1: one Q8_1 quantization of xn,
 *   then matvecs; T > 1: GEMMs; float weights: matvecs per token)
 *   (+ biases) (QK-norm) RoPE at the tokens' positions  K/V rows -> the
 *   device cache at the tokens' cells  per token: flash-decoding attention
 *   over the n_kv cells with the token's mask row  out = att Wo^T  x += out
 *   xn = rmsnorm(x)  FFN: dense, or router -> routing on the device ->
 *   per token grouped expert matvecs (gate/up share one activation, down
 *   per slot) and their weighted sum, or, with the experts on the CPU, the
 *   normed input and routing to the host, cpu_moe, the sum back  (+ shared
 *   experts)  x += ffn
 * Masks (0 / -inf per token and cell, and a second one for sliding-window
 * layers) are built on the host from kv.c's cells once per micro-batch,
 * with cpu/attn.h's visibility rule, and uploaded to every device in use.
 *
 * Fused ops (g->fuse: where the backend has them, MOERUN_CUDA_FUSE=0 runs the
 * parts; each gives the same floats and bytes as its parts): rmsnorm_q8 (the
 * residual add, the norm and, T = 1, the Q8_1 quantization), matvec_n (T = 1:
 * q, k and v of one quantized type), norm_rope (T = 1: Qwen3's q and k norms
 * and RoPE; k is written right after q so one launch covers both, which also
 * makes RoPE one launch without the fused ops), kv_write2 (K and V), norm_rope_kv
 * (T = 1: norm_rope and kv_write2 in one kernel), attn's
 * out_q8 (T = 1: its output quantized for wo), moe_matvec2 (gate and up of
 * one type and shape), act_q8 (the gate and the down's quantization),
 * moe_gate_up_q8 (both of those in one kernel: 32 rows of gate and up per
 * block, the gate, one Q8_1 block),
 * moe_matvec_sum (T = 1: the downs and their weighted sum), the routed sum
 * added into x (no shared experts, post norm or CPU experts between),
 * router_route (T = 1: the router and the routing, its last block routes),
 * MLA's q and kv latent in one matvec_n, shared experts computed first and
 * the routed sum accumulated onto them. A Qwen3-MoE decode layer is 9.5 ops
 * (25 with MOERUN_CUDA_FUSE=0, 27 before).
 *
 * Qwen3-Next: gated attention (attn_layer: wq gives per head [q | gate], q is
 * copied out, the output is multiplied by sigmoid(gate)), gated shared experts
 * (fg_shared_gate), gated delta net layers (fg_delta_layer; fused: the gates, the q
 * and k L2 norms and the delta rule in one launch, delta_rule_g; one token's
 * gated norm and its quantization for ssm_out, norm_gate_q8). The delta nets' state
 * lives on their device (gpu_layer.rec_*, one slot per sequence, the token's
 * slot found on the device from D->seq); kv_rec's host slots are its copy for
 * the sequence operations: they pull it (fg_rec_pull, through kv_rec_sync_host)
 * and the next forward pass pushes the host slots back where they changed
 * (fg_rec_push). Those Qwen3-Next parts are in forward_gpu_next.c; the state both
 * files share is in forward_gpu_impl.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "cpu/moe.h"
#include "model/forward_gpu_impl.h"

/* ---- support and placement checks ---------------------------------------------------------- */

static int tensor_index(const mr_model *m, const mr_weight *w) {
    if (!w->data || !w->name) return -1;
    const gguf_tensor *t = gguf_tensor_find(m->g, w->name);
    return t ? (int)(t - m->g->tensors) : -1;
}

const char *model_gpu_supported(const mr_model *m, const placement *pl) {
    const model_hparams *hp = &m->hp;
    bool any = pl->output_dev >= 0;
    for (int il = 0; il < hp->n_layer; il++) any |= pl->layer_dev[il] >= 0;
    if (!any) return "the plan puts no layer on a device";
    if (pl->split == PLC_SPLIT_ROW) return "-sm row is not implemented on devices yet (use -sm layer)";
    if (hp->n_expert_groups > 64) return "more than 64 expert groups";
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *ly = &m->layers[il];
        if (pl->layer_dev[il] < 0) continue;
        if (ly->attn_kind == MODEL_ATTN_DELTA) {
            if (!ly->wqkv.data)
                return "gated delta net layers with the legacy fused ssm_in projection have no device path (a "
                       "current conversion writes attn_qkv and attn_gate)";
            if (hp->ssm_d_state % 32 || hp->ssm_d_state > 256)
                return "gated delta net state sizes other than multiples of 32 up to 256 have no device kernel";
        }
    }
    return NULL;
}

/* ---- allocation helpers -------------------------------------------------------------------------- */

static void *dalloc(model_gpu *g, gpu_dev *D, size_t n) {
    if (D->n_allocs == D->cap_allocs) {
        const int nc = D->cap_allocs ? 2 * D->cap_allocs : 64;
        void **na = realloc(D->allocs, sizeof(void *) * (size_t)nc);
        if (!na) {
            mr_seterr("out of host memory");
            return NULL;
        }
        D->allocs = na;
        D->cap_allocs = nc;
    }
    void *p = g->api->alloc(D->c, n ? n : 16);
    if (p) D->allocs[D->n_allocs++] = p, D->alloc_bytes += n ? n : 16;
    return p;
}

static float *dfloats(model_gpu *g, gpu_dev *D, size_t n) { return dalloc(g, D, n * sizeof(float)); }

/* Upload weight w (its GGUF bytes) to device D as a matrix view. An absent weight stays absent. */
/* The GGUF tensor bound as w, in the file's layout, that the device kernels read; NULL with the
 * error set when it was repacked in place for the CPU or its type is not read on devices. */
static const gguf_tensor *device_source(model_gpu *g, const gguf_tensor *t, const mr_weight *w) {
    if (t->data == w->data && t->type != w->type) {
        mr_seterr("GPU upload: tensor '%s' was repacked in place for the CPU (-rtr / --no-mmap); load the model "
                  "mapped (without -rtr) to offload it",
                  w->name);
        return NULL;
    }
    if (!g->api->type_supported(t->type)) {
        mr_seterr("GPU upload: tensor '%s' has type %s, which the device kernels do not read (keep it on the CPU "
                  "with -ot '%s=CPU')",
                  w->name, mr_type_name(t->type), w->name);
        return NULL;
    }
    return t;
}

static int up_weight(model_gpu *g, gpu_dev *D, const mr_weight *w, mrc_weight *out) {
    memset(out, 0, sizeof *out);
    if (!w->data) return 0;
    const gguf_tensor *t = gguf_tensor_find(g->m->g, w->name);
    if (!t) { /* derived at load (MLA's attn_k_b / attn_v_b from a fused attn_kv_b): as bound */
        const size_t nb = w->mat_bytes * (size_t)w->n_mat;
        void *p = dalloc(g, D, nb);
        if (!p || g->api->upload(D->c, p, w->data, nb)) return -1;
        g->weight_bytes += nb;
        return g->api->weight_view(out, p, w->type, w->k, w->m, w->n_mat);
    }
    if (!device_source(g, t, w)) return -1;
    const size_t nb = (size_t)t->nbytes;
    void *p = dalloc(g, D, nb);
    if (!p || g->api->upload(D->c, p, t->data, nb)) return -1;
    g->weight_bytes += nb;
    return g->api->weight_view(out, p, t->type, t->ne[0], t->ne[1], t->ne[2]);
}

/* ---- RAM experts streamed to the device for large micro-batches ----------------------------- */

#define EX_ALIGN 256

/* Bytes of layer il's routed expert tensors in ex_buf, or 0 when one cannot stream (derived at
 * load, repacked in place for the CPU, a type the device does not read: those layers keep their
 * experts on the CPU for every micro-batch). */
static size_t stream_need(model_gpu *g, int il) {
    const model_layer *ly = &g->m->layers[il];
    const mr_weight *ex[3] = {&ly->gate_exps, &ly->up_exps, &ly->down_exps};
    gpu_layer *L = &g->L[il];
    size_t nb = 0;
    for (int j = 0; j < 3; j++) {
        L->ex_t[j] = NULL;
        if (!ex[j]->data) continue;
        const gguf_tensor *t = gguf_tensor_find(g->m->g, ex[j]->name);
        if (!t || !device_source(g, t, ex[j])) {
            MR_INFO("layer %d: its experts stay on the CPU for large micro-batches too: %s", il,
                    t ? mr_geterr() : "derived at load");
            return 0;
        }
        L->ex_t[j] = t;
        nb += ((size_t)t->nbytes + EX_ALIGN - 1) / EX_ALIGN * EX_ALIGN;
    }
    return nb;
}

typedef struct {
    uintptr_t a, b;
} pin_range;
static int pin_cmp(const void *x, const void *y) {
    const pin_range *p = x, *q = y;
    return p->a < q->a ? -1 : p->a > q->a;
}

/* MOERUN_PIN_EXPERTS=1: page-lock the mapped file's pages of the streamed experts that the CPU
 * reads in place (not repacked: no second copy in RAM), so that their uploads are DMA without
 * the driver's staging and leave the host thread free. Page-rounded ranges, merged where they
 * touch (a page is registered once). A failure is a warning: the copies stay pageable. */
static void pin_experts(model_gpu *g) {
    const char *e = getenv("MOERUN_PIN_EXPERTS");
    if (!e || !*e || !strcmp(e, "0") || !g->api->host_register_ro) return;
    const int n_layer = g->m->hp.n_layer;
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    pin_range *r = mr_calloc((size_t)n_layer * 3 + 1, sizeof *r);
    if (!r) return;
    int n = 0, n_copy = 0;
    for (int il = 0; il < n_layer; il++) {
        if (!g->L[il].stream) continue;
        const model_layer *ly = &g->m->layers[il];
        const mr_weight *ex[3] = {&ly->gate_exps, &ly->up_exps, &ly->down_exps};
        for (int j = 0; j < 3; j++) {
            const gguf_tensor *t = g->L[il].ex_t[j];
            if (!t) continue;
            if (t->data != ex[j]->data) {
                n_copy++;
                continue;
            }
            r[n].a = (uintptr_t)t->data / pg * pg;
            r[n].b = ((uintptr_t)t->data + (uintptr_t)t->nbytes + pg - 1) / pg * pg;
            n++;
        }
    }
    qsort(r, (size_t)n, sizeof *r, pin_cmp);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m && r[i].a <= r[m - 1].b) r[m - 1].b = MR_MAX(r[m - 1].b, r[i].b);
        else r[m++] = r[i];
    }
    g->ex_pins = mr_calloc((size_t)m + 1, sizeof *g->ex_pins);
    const double t0 = mr_time_s();
    uint64_t bytes = 0;
    for (int i = 0; g->ex_pins && i < m; i++) {
        if (g->api->host_register_ro((const void *)r[i].a, r[i].b - r[i].a)) {
            MR_WARN("MOERUN_PIN_EXPERTS: %s; the other expert copies stay pageable", mr_geterr());
            mr_clearerr();
            break;
        }
        g->ex_pins[g->n_ex_pins++] = (void *)r[i].a;
        bytes += r[i].b - r[i].a;
    }
    char b[32];
    MR_INFO("MOERUN_PIN_EXPERTS: %s of mapped experts page-locked in %d ranges in %.1f s%s",
            mr_fmt_bytes(b, sizeof b, bytes), g->n_ex_pins, mr_time_s() - t0,
            n_copy ? " (repacked ones are not: --no-repack)" : "");
    free(r);
}

/* Layer il's routed experts into buffer s of D unless they are there: on the copy stream after
 * the kernels that read the buffer before (ex_free), ex_ready recorded after them; without a
 * copy stream, on the main stream (in order anyway). */
static int ex_load(model_run *r, gpu_dev *D, int il, int s) {
    model_gpu *g = r->gpu;
    const gpu_api *A = g->api;
    if (D->ex_layer[s] == il) return 0;
    if (g->ex_async && D->ex_used[s] && A->event_wait(D->c, D->ex_free[s], 1)) return -1;
    D->ex_layer[s] = -1;
    uint8_t *p = D->ex_buf[s];
    for (int j = 0; j < 3; j++) {
        const gguf_tensor *t = g->L[il].ex_t[j];
        if (!t) continue;
        if ((g->ex_async ? A->upload_side : A->upload)(D->c, p, t->data, (size_t)t->nbytes)) return -1;
        p += ((size_t)t->nbytes + EX_ALIGN - 1) / EX_ALIGN * EX_ALIGN;
        g->streamed_bytes += t->nbytes;
        r->mm.bytes_read += t->nbytes;
    }
    if (g->ex_async && A->event_record(D->c, D->ex_ready[s], 1)) return -1;
    D->ex_layer[s] = il;
    return 0;
}

/* L as a device layer whose routed experts are those in buffer s (*out; exps_cpu false). */
static int ex_views(model_gpu *g, gpu_dev *D, int s, const gpu_layer *L, gpu_layer *out) {
    *out = *L;
    out->exps_cpu = false;
    mrc_weight *dst[3] = {&out->gate_exps, &out->up_exps, &out->down_exps};
    uint8_t *p = D->ex_buf[s];
    for (int j = 0; j < 3; j++) {
        memset(dst[j], 0, sizeof *dst[j]);
        const gguf_tensor *t = L->ex_t[j];
        if (!t) continue;
        if (g->api->weight_view(dst[j], p, t->type, t->ne[0], t->ne[1], t->ne[2])) return -1;
        p += ((size_t)t->nbytes + EX_ALIGN - 1) / EX_ALIGN * EX_ALIGN;
    }
    return 0;
}

/* Upload an F32 vector (norm, bias); NULL when absent. */
static int up_vec(model_gpu *g, gpu_dev *D, const mr_weight *w, const float **out) {
    *out = NULL;
    if (!w->data) return 0;
    const size_t nb = sizeof(float) * (size_t)(w->k * w->m * w->n_mat);
    void *p = dalloc(g, D, nb);
    if (!p || g->api->upload(D->c, p, w->data, nb)) return -1;
    g->weight_bytes += nb;
    *out = p;
    return 0;
}

void model_gpu_free(model_gpu *g) {
    if (!g) return;
    if (g->prof) {
        gpu_prof_report(stderr);
        gpu_prof_reset();
    }
    for (int d = 0; d < g->n_dev; d++) /* no copy from page-locked memory is left in flight */
        if (g->d[d].c) g->api->sync(g->d[d].c);
    for (int i = 0; i < g->n_pinned; i++) g->api->host_unregister(g->pinned[i]);
    for (int i = 0; i < g->n_ex_pins; i++) g->api->host_unregister(g->ex_pins[i]);
    free(g->ex_pins);
    if (g->rec && g->rec->dev_ud == g) g->rec->dev_pull = NULL, g->rec->dev_ud = NULL;
    for (int d = 0; d < g->n_dev; d++) {
        gpu_dev *D = &g->d[d];
        if (D->c) g->api->sync(D->c);
        for (int s = 0; s < 2; s++) {
            if (D->ex_ready[s]) g->api->event_free(D->c, D->ex_ready[s]);
            if (D->ex_free[s]) g->api->event_free(D->c, D->ex_free[s]);
        }
        for (int i = 0; i < D->n_allocs; i++) g->api->dfree(D->c, D->allocs[i]);
        free(D->allocs);
        if (D->c) g->api->free(D->c);
    }
    free(g->L);
    free(g->h_mask);
    mr_free_aligned(g->h_stage);
    free(g);
}

void model_gpu_pin(model_gpu *g, model_run *r) {
    if (!g || !g->api->host_register) return;
    const size_t T = (size_t)r->n_ub, D = (size_t)r->m->hp.n_embd, K = (size_t)r->m->hp.n_expert_used;
    struct {
        void *p;
        size_t n;
    } bufs[] = {{r->x, T * D * sizeof(float)},
                {r->xn, T * D * sizeof(float)},
                {r->tmp, T * D * sizeof(float)},
                {r->sel, T * K * sizeof(int32_t)},
                {r->selw, T * K * sizeof(float)},
                {g->h_stage, g->h_stage ? T * (D + 2 * K) * sizeof(float) : 0}};
    for (size_t i = 0; i < MR_ARRAY_LEN(bufs) && g->n_pinned < (int)MR_ARRAY_LEN(g->pinned); i++) {
        if (!bufs[i].p || !bufs[i].n) continue;
        if (g->api->host_register(bufs[i].p, bufs[i].n) == 0) g->pinned[g->n_pinned++] = bufs[i].p;
        else {
            mr_log(MR_LOG_DEBUG, "GPU: staging buffer not page-locked (%s); copies stay pageable", mr_geterr());
            mr_clearerr();
        }
    }
}

bool model_gpu_layer_on(const model_gpu *g, int il) { return g && g->L[il].dev >= 0; }
bool model_gpu_head_on(const model_gpu *g) { return g && g->out_dev >= 0; }
uint64_t model_gpu_weight_bytes(const model_gpu *g) { return g ? g->weight_bytes : 0; }
uint64_t model_gpu_dev_bytes(const model_gpu *g) {
    uint64_t n = 0;
    for (int d = 0; g && d < g->n_dev; d++)
        if (g->d[d].c) n += g->d[d].alloc_bytes + g->api->scratch_bytes(g->d[d].c);
    return n;
}
const char *model_gpu_backend(const model_gpu *g) { return g ? g->api->name : ""; }
double model_gpu_bw_gbs(const model_gpu *g) { return g ? g->bw_gbs : 0.0; }

/* Every weight of layer il must be where the layer runs, but the routed experts, which may
 * stay on the CPU (all three). */
static int check_layer(const mr_model *m, const placement *pl, int il, bool *exps_cpu) {
    const model_layer *ly = &m->layers[il];
    const int ld = pl->layer_dev[il];
    const mr_weight *ws[] = {&ly->attn_norm, &ly->attn_post_norm, &ly->ffn_norm, &ly->ffn_post_norm, &ly->wq,
                             &ly->wk, &ly->wv, &ly->wo, &ly->bq, &ly->bk, &ly->bv, &ly->bo, &ly->q_norm, &ly->k_norm,
                             &ly->ffn_gate, &ly->ffn_up, &ly->ffn_down, &ly->gate_inp, &ly->exp_probs_b,
                             &ly->gate_shexp, &ly->up_shexp, &ly->down_shexp, &ly->wq_a, &ly->q_a_norm,
                             &ly->wq_b, &ly->wkv_a_mqa, &ly->kv_a_norm, &ly->wk_b, &ly->wv_b, &ly->wqkv,
                             &ly->wqkv_gate, &ly->ssm_conv1d, &ly->ssm_dt_b, &ly->ssm_a, &ly->ssm_ba, &ly->ssm_norm,
                             &ly->ssm_out, &ly->gate_inp_shexp};
    for (size_t i = 0; i < MR_ARRAY_LEN(ws); i++) {
        const int ti = tensor_index(m, ws[i]);
        if (ti < 0) continue;
        if (pl->dev[ti] != ld) {
            char a[16], b[16];
            mr_seterr("tensor '%s' is placed on %s but layer %d computes on %s; only the routed experts "
                      "(ffn_*_exps) may be placed apart from their layer so far",
                      ws[i]->name, placement_dev_name(pl->dev[ti], a, sizeof a), il,
                      placement_dev_name(ld, b, sizeof b));
            return -1;
        }
    }
    *exps_cpu = false;
    const mr_weight *ex[] = {&ly->gate_exps, &ly->up_exps, &ly->down_exps};
    int n_cpu = 0, n = 0;
    for (int i = 0; i < 3; i++) {
        const int ti = tensor_index(m, ex[i]);
        if (ti < 0) continue;
        n++;
        if (pl->dev[ti] == PLC_CPU) n_cpu++;
        else if (pl->dev[ti] != ld) {
            mr_seterr("tensor '%s' is placed on another device than its layer %d (not supported yet)", ex[i]->name,
                      il);
            return -1;
        }
    }
    if (ld < 0 && n_cpu != n) {
        mr_seterr("layer %d runs on the CPU but its experts are placed on a device (not supported yet)", il);
        return -1;
    }
    if (ld >= 0 && n_cpu != 0 && n_cpu != n) {
        mr_seterr("layer %d: gate/up/down experts must be on the same device", il);
        return -1;
    }
    *exps_cpu = ld >= 0 && n_cpu > 0;
    return 0;
}

model_gpu *model_gpu_new(const gpu_api *api, const mr_model *m, const placement *pl, const kv_cache *kv, int n_ub) {
    const char *why = model_gpu_supported(m, pl);
    if (why) {
        mr_seterr("GPU execution: %s", why);
        return NULL;
    }
    const model_hparams *hp = &m->hp;
    const uint32_t tk = kv->type_k, tv = kv->type_v;
    if ((tk != MR_TYPE_F16 && tk != MR_TYPE_Q8_0) || (tv != MR_TYPE_F16 && tv != MR_TYPE_Q8_0)) {
        mr_seterr("GPU execution: KV cache types %s/%s: the device attention reads f16 and q8_0 (-ctk/-ctv)",
                  mr_type_name(tk), mr_type_name(tv));
        return NULL;
    }
    model_gpu *g = mr_calloc(1, sizeof *g);
    if (!g) return NULL;
    if (gpu_prof_enabled()) api = gpu_prof_wrap(api); /* MOERUN_CUDA_PROFILE: ops timed (gpu_prof.c) */
    g->api = api;
    g->prof = gpu_prof_enabled();
    g->m = m;
    g->n_ub = n_ub;
    g->n_ctx = kv->n_ctx;
    g->out_dev = pl->output_dev;
    g->x_at = -1;
    g->n_dev = pl->n_cuda;
    g->L = mr_calloc((size_t)hp->n_layer, sizeof *g->L);
    if (!g->L) goto fail;
    /* which devices are used */
    for (int il = 0; il < hp->n_layer; il++) {
        g->L[il].dev = pl->layer_dev[il];
        if (check_layer(m, pl, il, &g->L[il].exps_cpu)) goto fail;
        if (pl->layer_dev[il] >= 0) g->d[pl->layer_dev[il]].used = true;
        if (pl->layer_dev[il] >= 0 && m->layers[il].swa && hp->n_swa > 0) g->any_swa = true;
    }
    if (g->out_dev >= 0) g->d[g->out_dev].used = true;
    const size_t T = (size_t)n_ub, Dm = (size_t)hp->n_embd;
    const model_widths wd = model_widths_of(m);
    /* FFN scratch holds the K selected experts' rows of a token (prompts: of every token) */
    size_t qw = wd.q, kw = wd.k, vw = wd.v, aw = wd.att;
    const size_t fw = MR_MAX(wd.ffn, wd.exp * (size_t)MR_MAX(hp->n_expert_used, 1));
    size_t xk = MR_MAX(MR_MAX(Dm, aw), fw);
    /* MLA: q-lora width, latent rank R + rope, heads */
    size_t m_qa = 1, m_kd = 1, m_R = 1, m_H = 1, m_q = 1, m_o = 1, m_nope = 1;
    bool any_mla = false;
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *ly = &m->layers[il];
        if (ly->attn_kind != MODEL_ATTN_MLA || pl->layer_dev[il] < 0) continue;
        int dk, dv;
        model_mla_dims(hp, &dk, &dv);
        any_mla = true;
        if (ly->wq_a.data) m_qa = MR_MAX(m_qa, (size_t)ly->wq_a.m);
        m_kd = MR_MAX(m_kd, (size_t)(hp->kv_lora_rank + hp->n_rot));
        m_R = MR_MAX(m_R, (size_t)hp->kv_lora_rank);
        m_H = MR_MAX(m_H, (size_t)ly->n_head);
        m_q = MR_MAX(m_q, (size_t)ly->n_head * dk);
        m_o = MR_MAX(m_o, (size_t)ly->n_head * dv);
        m_nope = MR_MAX(m_nope, (size_t)(dk - hp->n_rot));
    }
    qw = MR_MAX(qw, m_q);
    xk = MR_MAX(xk, MR_MAX(m_qa, MR_MAX(m_R, m_nope)) * m_H);
    /* Qwen3-Next: gated attention's [q | gate] rows, the delta net's widths (C conv channels,
     * dI inner) and its ops in the backend */
    size_t qg_w = 0;
    const size_t dI = (size_t)hp->ssm_d_inner, Hv = (size_t)hp->ssm_dt_rank;
    const size_t dC = (size_t)2 * hp->ssm_n_group * hp->ssm_d_state + dI;
    bool any_sh_gate = false;
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *ly = &m->layers[il];
        if (pl->layer_dev[il] < 0) continue;
        if (ly->attn_kind == MODEL_ATTN_GATED) qg_w = MR_MAX(qg_w, (size_t)2 * ly->n_head * hp->head_dim_k);
        if (ly->attn_kind == MODEL_ATTN_DELTA) g->any_delta = true;
        any_sh_gate |= ly->gate_inp_shexp.data != NULL;
    }
    if ((qg_w || any_sh_gate) && !api->sigmoid_mul) {
        mr_seterr("the %s backend has no sigmoid gate (gated attention, gated shared experts)", api->name);
        goto fail;
    }
    if (g->any_delta && (!api->ssm_gates || !api->ssm_conv || !api->l2norm || !api->delta_rule)) {
        mr_seterr("the %s backend has no gated delta net kernels", api->name);
        goto fail;
    }
    xk = MR_MAX(xk, dI);
    const size_t K = (size_t)MR_MAX(hp->n_expert_used, 1), E = (size_t)MR_MAX(hp->n_expert, 1);
    for (int d = 0; d < g->n_dev; d++) {
        gpu_dev *D = &g->d[d];
        if (!D->used) continue;
        D->c = api->init(d);
        if (!D->c) goto fail;
        mrc_device_info info;
        if (api->device_info(d, &info) == 0 && info.mem_bw_gbs > 0 && (g->bw_gbs == 0 || info.mem_bw_gbs < g->bw_gbs))
            g->bw_gbs = info.mem_bw_gbs;
        D->x = dfloats(g, D, T * Dm);
        D->xn = dfloats(g, D, T * Dm + 2 * T * K); /* + the routing of hybrid layers, right after the rows */
        D->tmp = dfloats(g, D, T * Dm);
        D->sh = dfloats(g, D, T * Dm);
        D->q = dfloats(g, D, T * (qw + kw)); /* T == 1 puts k right after q (attn_layer) */
        D->k = D->q ? D->q + (size_t)T * qw : NULL;
        D->v = dfloats(g, D, T * vw);
        D->att = dfloats(g, D, T * aw);
        D->ffa = dfloats(g, D, T * fw);
        D->ffb = dfloats(g, D, T * fw);
        D->router = dfloats(g, D, T * E);
        D->selw = dfloats(g, D, T * K);
        D->slots = dfloats(g, D, T * K * Dm);
        if (hp->n_expert > 0) {
            size_t fe = 32;
            for (int il = 0; il < hp->n_layer; il++)
                if (m->layers[il].up_exps.data) fe = MR_MAX(fe, (size_t)m->layers[il].up_exps.m);
            D->xq_rep = dalloc(g, D, api->q8_1_row_size((int64_t)Dm) * T * K);
            D->xq_moe = dalloc(g, D, api->q8_1_row_size((int64_t)fe) * T * K);
            if (!D->xq_rep || !D->xq_moe) goto fail;
            if (T > 1) {
                D->slots_s = dfloats(g, D, T * K * Dm);
                D->perm = dalloc(g, D, sizeof(int32_t) * T * K);
                D->sids = dalloc(g, D, sizeof(int32_t) * T * K);
                D->stok = dalloc(g, D, sizeof(int32_t) * T * K);
                if (!D->slots_s || !D->perm || !D->sids || !D->stok) goto fail;
            }
        }
        D->ids = dalloc(g, D, sizeof(int32_t) * T * K);
        D->seq = dalloc(g, D, sizeof(int32_t) * T);
        D->shg = dfloats(g, D, T);
        if (!D->seq || !D->shg || (qg_w && !(D->qg = dfloats(g, D, T * qg_w)))) goto fail;
        if (g->any_delta) {
            D->d_qkv = dfloats(g, D, T * dC);
            D->d_z = dfloats(g, D, T * dI);
            D->d_ba = dfloats(g, D, T * 2 * Hv);
            D->d_g = dfloats(g, D, T * Hv);
            D->d_beta = dfloats(g, D, T * Hv);
            D->d_xc = dfloats(g, D, T * dC);
            D->d_o = dfloats(g, D, T * dI);
            if (!D->d_qkv || !D->d_z || !D->d_ba || !D->d_g || !D->d_beta || !D->d_xc || !D->d_o) goto fail;
        }
        D->pos = dalloc(g, D, sizeof(int32_t) * T);
        D->cells = dalloc(g, D, sizeof(int32_t) * T);
        D->xq = dalloc(g, D, api->q8_1_row_size((int64_t)xk) * MR_MAX(T, K));
        D->xq2 = dalloc(g, D, api->q8_1_row_size((int64_t)xk) * MR_MAX(MR_MAX(T, K), 2));
        D->xqs = dalloc(g, D, api->q8_1_row_size((int64_t)xk) * FG_SMALL_T);
        if (!D->x || !D->xn || !D->tmp || !D->sh || !D->q || !D->k || !D->v || !D->att || !D->ffa || !D->ffb ||
            !D->router || !D->selw || !D->slots || !D->ids || !D->pos || !D->cells || !D->xq || !D->xq2 || !D->xqs)
            goto fail;
        if (m->rope_freqs.data && up_vec(g, D, &m->rope_freqs, (const float **)&D->rope_ff)) goto fail;
        if (any_mla) {
            D->m_qa = dfloats(g, D, T * m_qa);
            D->m_ckv = dfloats(g, D, T * m_kd);
            D->m_qabs = dfloats(g, D, T * m_H * m_kd);
            D->m_lat = dfloats(g, D, T * m_H * m_R);
            D->m_o = dfloats(g, D, T * m_o);
            D->m_h = dfloats(g, D, T * m_H * MR_MAX(m_R, m_nope));
            D->xq_mla = dalloc(g, D, api->q8_1_row_size((int64_t)MR_MAX(m_R, m_nope)) * T * m_H);
            D->head_ids = dalloc(g, D, sizeof(int32_t) * T * m_H);
            int32_t *hid = mr_malloc(sizeof(int32_t) * T * m_H);
            for (size_t i = 0; hid && i < T * m_H; i++) hid[i] = (int32_t)(i % m_H);
            const bool ok = hid && D->m_qa && D->m_ckv && D->m_qabs && D->m_lat && D->m_o && D->m_h && D->xq_mla &&
                            D->head_ids && api->upload(D->c, D->head_ids, hid, sizeof(int32_t) * T * m_H) == 0 &&
                            api->sync(D->c) == 0;
            free(hid);
            if (!ok) goto fail;
            g->mla_H = (int)m_H;
        }
    }
    /* layers: weights and KV cache */
    for (int il = 0; il < hp->n_layer; il++) {
        gpu_layer *L = &g->L[il];
        if (L->dev < 0) continue;
        gpu_dev *D = &g->d[L->dev];
        const model_layer *ly = &m->layers[il];
        if (up_vec(g, D, &ly->attn_norm, &L->attn_norm) || up_vec(g, D, &ly->attn_post_norm, &L->attn_post_norm) ||
            up_vec(g, D, &ly->ffn_norm, &L->ffn_norm) || up_vec(g, D, &ly->ffn_post_norm, &L->ffn_post_norm) ||
            up_vec(g, D, &ly->q_norm, &L->q_norm) || up_vec(g, D, &ly->k_norm, &L->k_norm) ||
            up_vec(g, D, &ly->bq, &L->bq) || up_vec(g, D, &ly->bk, &L->bk) || up_vec(g, D, &ly->bv, &L->bv) ||
            up_vec(g, D, &ly->bo, &L->bo) || up_vec(g, D, &ly->exp_probs_b, &L->probs_b) ||
            up_vec(g, D, &ly->q_a_norm, &L->q_a_norm) || up_vec(g, D, &ly->kv_a_norm, &L->kv_a_norm))
            goto fail;
        if (up_weight(g, D, &ly->wq_a, &L->wq_a) || up_weight(g, D, &ly->wq_b, &L->wq_b) ||
            up_weight(g, D, &ly->wkv_a_mqa, &L->wkv_a) || up_weight(g, D, &ly->wk_b, &L->wk_b) ||
            up_weight(g, D, &ly->wv_b, &L->wv_b))
            goto fail;
        if (up_weight(g, D, &ly->wq, &L->wq) || up_weight(g, D, &ly->wk, &L->wk) ||
            up_weight(g, D, &ly->wv, &L->wv) || up_weight(g, D, &ly->wo, &L->wo) ||
            up_weight(g, D, &ly->ffn_gate, &L->gate) || up_weight(g, D, &ly->ffn_up, &L->up) ||
            up_weight(g, D, &ly->ffn_down, &L->down) || up_weight(g, D, &ly->gate_inp, &L->gate_inp) ||
            up_weight(g, D, &ly->gate_shexp, &L->gate_sh) || up_weight(g, D, &ly->up_shexp, &L->up_sh) ||
            up_weight(g, D, &ly->down_shexp, &L->down_sh))
            goto fail;
        if (up_weight(g, D, &ly->wqkv, &L->wqkv) || up_weight(g, D, &ly->wqkv_gate, &L->wqkv_gate) ||
            up_weight(g, D, &ly->ssm_ba, &L->ssm_ba) || up_weight(g, D, &ly->ssm_out, &L->ssm_out) ||
            up_weight(g, D, &ly->gate_inp_shexp, &L->gate_inp_sh) || up_vec(g, D, &ly->ssm_conv1d, &L->ssm_conv1d) ||
            up_vec(g, D, &ly->ssm_dt_b, &L->ssm_dt_b) || up_vec(g, D, &ly->ssm_a, &L->ssm_a) ||
            up_vec(g, D, &ly->ssm_norm, &L->ssm_norm))
            goto fail;
        if (ly->attn_kind == MODEL_ATTN_DELTA) {
            const kv_rec *rc = kv->rec;
            const size_t nc = rc->conv_n * (size_t)rc->n_seq, ns = rc->ssm_n * (size_t)rc->n_seq;
            L->rec_conv = dfloats(g, D, nc);
            L->rec_ssm = dfloats(g, D, ns);
            if (!L->rec_conv || !L->rec_ssm || api->memset(D->c, L->rec_conv, 0, sizeof(float) * nc) ||
                api->memset(D->c, L->rec_ssm, 0, sizeof(float) * ns))
                goto fail;
        }
        if (!L->exps_cpu && (up_weight(g, D, &ly->gate_exps, &L->gate_exps) ||
                             up_weight(g, D, &ly->up_exps, &L->up_exps) ||
                             up_weight(g, D, &ly->down_exps, &L->down_exps)))
            goto fail;
        const size_t kb = kv->k_row[il] * (size_t)ly->kv_heads * (size_t)kv->n_ctx;
        const size_t vb = kv->v_row[il] * (size_t)ly->kv_heads * (size_t)kv->n_ctx;
        L->k = dalloc(g, D, kb);
        L->v = vb ? dalloc(g, D, vb) : NULL;
        if (!L->k || (vb && !L->v) || api->memset(D->c, L->k, 0, kb) || (vb && api->memset(D->c, L->v, 0, vb)))
            goto fail;
    }
    /* RAM experts of device layers: large micro-batches stream them into two buffers per device
     * (the plan counted them in compute) */
    g->offload_min = n_ub >= pl->offload_min ? pl->offload_min : 0;
    if (g->offload_min > 0) {
        size_t need[PLC_MAX_DEV] = {0};
        int n_copy = 0;
        for (int il = 0; il < hp->n_layer; il++) {
            gpu_layer *L = &g->L[il];
            if (L->dev < 0 || !L->exps_cpu) continue;
            const size_t nb = stream_need(g, il);
            L->stream = nb > 0;
            need[L->dev] = MR_MAX(need[L->dev], nb);
            n_copy += L->stream && L->ex_t[1] && L->ex_t[1]->data != m->layers[il].up_exps.data;
        }
        if (n_copy) /* the CPU reads its repacked copy; streaming reads the file's pages */
            MR_INFO("%d layers' RAM experts are repacked for the CPU: prompts of %d+ tokens stream them from the "
                    "file's pages (page cache; --no-repack keeps one copy in RAM)", n_copy, g->offload_min);
        const gpu_api *A = api;
        g->ex_async = A->upload_side && A->event_new && A->event_record && A->event_wait && A->event_free;
        for (int d = 0; d < g->n_dev; d++) {
            gpu_dev *D = &g->d[d];
            D->ex_layer[0] = D->ex_layer[1] = -1;
            if (!need[d]) continue;
            D->ex_cap = need[d];
            for (int s = 0; s < 2; s++) {
                if (!(D->ex_buf[s] = dalloc(g, D, need[d]))) goto fail;
                if (g->ex_async && (!(D->ex_ready[s] = A->event_new(D->c)) || !(D->ex_free[s] = A->event_new(D->c))))
                    goto fail;
            }
        }
        pin_experts(g);
    }
    if (g->out_dev >= 0) {
        gpu_dev *D = &g->d[g->out_dev];
        if (up_vec(g, D, &m->output_norm, &D->out_norm) || up_weight(g, D, &m->output, &D->output)) goto fail;
        D->logits = dfloats(g, D, (size_t)HEAD_ROWS * (size_t)hp->n_vocab);
        if (!D->logits) goto fail;
    }
    /* decode graphs: everything on one device, no host round trip inside a step */
    {
        const char *ge = getenv("MOERUN_CUDA_GRAPH");
        int n_used = 0, dev = -1;
        bool cpu_part = g->out_dev < 0;
        for (int d = 0; d < g->n_dev; d++)
            if (g->d[d].used) n_used++, dev = d;
        for (int il = 0; il < hp->n_layer; il++) cpu_part |= g->L[il].dev < 0 || g->L[il].exps_cpu;
        g->graph_ok = api->graph_begin && !(ge && !strcmp(ge, "0")) && n_used == 1 && !cpu_part;
        const char *fe = getenv("MOERUN_CUDA_FUSE");
        g->fuse = api->rmsnorm_q8 && api->act_q8 && !(fe && !strcmp(fe, "0"));
        g->graph_dev = dev;
        if (g->graph_ok) {
            gpu_dev *D = &g->d[dev];
            D->gmask = dfloats(g, D, (size_t)g->n_ctx);
            D->gmask_swa = g->any_swa ? dfloats(g, D, (size_t)g->n_ctx) : NULL;
            if (!D->gmask || (g->any_swa && !D->gmask_swa)) goto fail;
        }
    }
    for (int d = 0; d < g->n_dev; d++)
        if (g->d[d].c && api->sync(g->d[d].c)) goto fail;
    for (int il = 0; il < hp->n_layer && !g->h_stage; il++)
        if (g->L[il].exps_cpu) {
            g->h_stage = mr_malloc_aligned(sizeof(float) * (size_t)n_ub * ((size_t)hp->n_embd + 2 * (size_t)hp->n_expert_used));
            if (!g->h_stage) goto fail;
        }
    if (g->any_delta) { /* the device holds these layers' state from now on; the host slots are its copy */
        g->rec = kv->rec;
        g->rec->dev_pull = fg_rec_pull;
        g->rec->dev_ud = g;
        g->rec->host_newer = g->rec->n_seq >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << g->rec->n_seq) - 1;
        g->rec->dev_newer = 0;
    }
    if (g->prof) gpu_prof_reset(); /* the loading's uploads are not the profile */
    return g;
fail:
    mr_preerr("GPU (%s backend) setup", api->name);
    model_gpu_free(g);
    return NULL;
}

/* ---- per micro-batch ----------------------------------------------------------------------------- */

/* Host masks of the ubatch's tokens over n_kv cells (0 visible, -inf not; cells beyond the
 * used ones are free, so never visible): rows (T, n_kv), then the sliding-window rows when a
 * device layer has a window. NULL on allocation failure. */
static float *build_masks(model_gpu *g, const kv_cache *kv, const model_ubatch *ub, int n_kv, int n_swa) {
    const size_t nm = (size_t)ub->n * (size_t)n_kv;
    if (g->h_mask_cap < 2 * nm) {
        free(g->h_mask);
        g->h_mask = mr_malloc(sizeof(float) * 2 * nm);
        g->h_mask_cap = g->h_mask ? 2 * nm : 0;
        if (!g->h_mask) return NULL;
    }
    float *mk = g->h_mask, *ms = g->h_mask + nm;
    for (int t = 0; t < ub->n; t++)
        for (int c = 0; c < n_kv; c++) {
            const size_t i = (size_t)t * n_kv + c;
            mk[i] = cpu_attn_cell_visible(kv->pos, kv->seq, c, ub->pos[t], ub->seq[t], 0) ? 0.0f : -INFINITY;
            if (g->any_swa)
                ms[i] = cpu_attn_cell_visible(kv->pos, kv->seq, c, ub->pos[t], ub->seq[t], n_swa) ? 0.0f : -INFINITY;
        }
    return mk;
}

int model_gpu_begin(model_run *r, const model_ubatch *ub) {
    model_gpu *g = r->gpu;
    const kv_cache *kv = r->kv;
    const int T = ub->n, n_kv = MR_MAX(kv->n_hi, 1), n_swa = r->m->hp.n_swa;
    const size_t nm = (size_t)T * (size_t)n_kv;
    g->x_at = -1;
    g->n_kv = n_kv;
    const float *mk = build_masks(g, kv, ub, n_kv, n_swa);
    if (!mk) return -1;
    const float *ms = mk + nm;
    for (int d = 0; d < g->n_dev; d++) {
        gpu_dev *D = &g->d[d];
        if (!D->c) continue;
        if (D->mask_cap < nm) { /* grows by doubling; the old buffers are freed with the device */
            const size_t cap = MR_MAX(nm, MR_MAX(2 * D->mask_cap, (size_t)g->n_ub * 256));
            D->mask = dfloats(g, D, cap);
            D->mask_swa = g->any_swa ? dfloats(g, D, cap) : NULL;
            if (!D->mask || (g->any_swa && !D->mask_swa)) return -1;
            D->mask_cap = cap;
        }
        if (g->api->upload(D->c, D->mask, mk, sizeof(float) * nm) ||
            (g->any_swa && g->api->upload(D->c, D->mask_swa, ms, sizeof(float) * nm)) ||
            g->api->upload(D->c, D->pos, ub->pos, sizeof(int32_t) * (size_t)T) ||
            g->api->upload(D->c, D->cells, ub->cell, sizeof(int32_t) * (size_t)T) ||
            g->api->upload(D->c, D->seq, ub->seq, sizeof(int32_t) * (size_t)T))
            return -1;
    }
    return fg_rec_push(g, ub->seq, T);
}

/* The residual into r->x (from the device holding it). */
int model_gpu_to_host(model_run *r, int T) {
    model_gpu *g = r->gpu;
    if (!g || g->x_at < 0) return 0;
    gpu_dev *D = &g->d[g->x_at];
    const size_t nb = sizeof(float) * (size_t)T * (size_t)r->m->hp.n_embd;
    if (g->api->download(D->c, r->x, D->x, nb) || g->api->sync(D->c)) return -1;
    g->x_at = -1;
    return 0;
}

/* The residual onto device d: from the device holding it by a peer copy, else from r->x. */
static int to_device(model_run *r, int T, int d) {
    model_gpu *g = r->gpu;
    if (g->x_at == d) return 0;
    gpu_dev *D = &g->d[d];
    const size_t nb = sizeof(float) * (size_t)T * (size_t)r->m->hp.n_embd;
    if (g->x_at >= 0) {
        gpu_dev *S = &g->d[g->x_at];
        if (g->api->peer_copy(D->c, D->x, S->c, S->x, nb)) return -1;
    } else if (g->api->upload(D->c, D->x, r->x, nb))
        return -1;
    g->x_at = d;
    return 0;
}

/* A few tokens (2 to FG_SMALL_T: parallel sequences' decode steps) through quantized W, their
 * activations quantized in D->xqs: one launch that reads each weight row once for all of them
 * where the backend groups slots, else one slot per token. */
static int small_mv(model_gpu *g, gpu_dev *D, const mrc_weight *W, const float *x, int T, float *y) {
    const gpu_api *A = g->api;
    const size_t rs = A->q8_1_row_size(W->k);
    if (A->moe_matvec_grp) return A->moe_matvec_grp(D->c, W, NULL, NULL, T, D->xqs, rs, y, NULL);
    return A->moe_matvec(D->c, W, NULL, T, x, (size_t)W->k, D->xqs, rs, y);
}

/* y (T, W.m) = x (T, W.k) W^T. xq: x quantized (Q8_1, T == 1), or NULL to quantize here. */
int fg_gmm(model_gpu *g, gpu_dev *D, const mrc_weight *W, const float *x, const void *xq, int T, float *y) {
    const gpu_api *A = g->api;
    if (T > 1 && T <= FG_SMALL_T && !is_float(W)) /* a few tokens */
        return A->quantize_q8_1(D->c, x, D->xqs, W->k, T) || small_mv(g, D, W, x, T, y) ? -1 : 0;
    /* the GEMM: quantized weights, and F16 / BF16 matrices of 1024 rows or more (not a router) */
    if (T > 1 && (!is_float(W) || (W->type != MR_TYPE_F32 && W->m >= 1024))) return A->gemm(D->c, W, 0, x, T, y);
    if (T > 1) { /* float weights (the router): all tokens in one launch, the same kernel as one */
        for (int t0 = 0; t0 < T; t0 += 65535) {
            const int n = MR_MIN(65535, T - t0);
            if (A->moe_matvec(D->c, W, NULL, n, x + (size_t)t0 * W->k, (size_t)W->k, NULL, 0, y + (size_t)t0 * W->m))
                return -1;
        }
        return 0;
    }
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * W->k;
        const void *qt = NULL;
        if (!is_float(W)) {
            qt = xq;
            if (!qt) {
                if (A->quantize_q8_1(D->c, xt, D->xq2, W->k, 1)) return -1;
                qt = D->xq2;
            }
        }
        if (A->matvec(D->c, W, 0, xt, qt, y + (size_t)t * W->m)) return -1;
    }
    return 0;
}

/* fg_gmm of n matrices with one input x (rows of W[0]->k): q, k and v; gate and up. A few
 * tokens are quantized once for all of them. */
int fg_gmm_n(model_gpu *g, gpu_dev *D, int n, const mrc_weight *const *W, const float *x, const void *xq, int T,
             float *const *y) {
    bool small = T > 1 && T <= FG_SMALL_T, quantized = false;
    for (int i = 0; i < n; i++) small = small && W[i]->k == W[0]->k;
    for (int i = 0; i < n; i++) {
        if (small && !is_float(W[i])) {
            if (!quantized && g->api->quantize_q8_1(D->c, x, D->xqs, W[0]->k, T)) return -1;
            quantized = true;
            if (small_mv(g, D, W[i], x, T, y[i])) return -1;
        } else if (fg_gmm(g, D, W[i], x, xq, T, y[i]))
            return -1;
    }
    return 0;
}

static int add_rows(model_gpu *g, gpu_dev *D, float *y, const float *b, int T, int n) {
    return b ? g->api->add_rows(D->c, y, b, T, n) : 0; /* one launch for all rows */
}

static int act_mul(model_gpu *g, gpu_dev *D, float *a, const float *b, int64_t n) {
    return g->m->arch->act == MODEL_ACT_GELU ? g->api->gelu_mul(D->c, a, b, n) : g->api->silu_mul(D->c, a, b, n);
}

/* Gate and up that one launch can read together: one quantized type and shape. */
static bool same_q_shape(const mrc_weight *a, const mrc_weight *b) {
    return same_q(a, b) && a->m == b->m && a->n_mat == b->n_mat && a->row_bytes == b->row_bytes;
}

/* Gate and up of the same ids and Q8_1 activations in one launch where they pair (one quantized
 * type and shape, the grid's slot limit); else two. grp: the slots come in runs of one matrix (a
 * prompt's pairs sorted by expert), read by the grouped kernels where the backend has them. */
static int gate_up(model_gpu *g, gpu_dev *D, const mrc_weight *gate, const mrc_weight *up, const int32_t *ids, int n,
                   const void *xq, size_t xq_stride, float *yg, float *yu, bool grp) {
    const gpu_api *A = g->api;
    const bool pair = g->fuse && same_q_shape(gate, up);
    if (grp && A->moe_matvec_grp) {
        if (pair) return A->moe_matvec_grp(D->c, gate, up, ids, n, xq, xq_stride, yg, yu);
        return A->moe_matvec_grp(D->c, gate, NULL, ids, n, xq, xq_stride, yg, NULL) ||
                       A->moe_matvec_grp(D->c, up, NULL, ids, n, xq, xq_stride, yu, NULL)
                   ? -1
                   : 0;
    }
    if (pair && A->moe_matvec2 && 2 * (int64_t)n <= 65535)
        return A->moe_matvec2(D->c, gate, up, ids, n, xq, xq_stride, yg, yu);
    return A->moe_matvec(D->c, gate, ids, n, NULL, 0, xq, xq_stride, yg) ||
                   A->moe_matvec(D->c, up, ids, n, NULL, 0, xq, xq_stride, yu)
               ? -1
               : 0;
}

/* a = act(a) * b for rows of k, then a quantized into xq (Q8_1 rows): fused where possible. */
static int act_mul_q8(model_gpu *g, gpu_dev *D, float *a, const float *b, void *xq, int64_t rows, int64_t k) {
    const bool gelu = g->m->arch->act == MODEL_ACT_GELU;
    if (g->fuse) return g->api->act_q8(D->c, gelu, a, b, xq, rows, k);
    return act_mul(g, D, a, b, rows * k) || g->api->quantize_q8_1(D->c, a, xq, k, rows) ? -1 : 0;
}

/* The routed gate and up of n slots, the gate function, and its Q8_1 rows into xq_out: one
 * launch where the backend fuses them and the pair qualifies, else gate_up + act_mul_q8. */
static int gate_up_act_q8(model_gpu *g, gpu_dev *D, const mrc_weight *gate, const mrc_weight *up, const int32_t *ids,
                          int n, const void *xq, size_t xq_stride, void *xq_out, bool grp) {
    const gpu_api *A = g->api;
    const bool gelu = g->m->arch->act == MODEL_ACT_GELU;
    if (g->fuse && same_q_shape(gate, up) && gate->m % 32 == 0 && n <= 65535) {
        if (grp && A->moe_gate_up_q8_grp)
            return A->moe_gate_up_q8_grp(D->c, gelu, gate, up, ids, n, xq, xq_stride, D->ffa, xq_out);
        if (A->moe_gate_up_q8) return A->moe_gate_up_q8(D->c, gelu, gate, up, ids, n, xq, xq_stride, D->ffa, xq_out);
    }
    return gate_up(g, D, gate, up, ids, n, xq, xq_stride, D->ffa, D->ffb, grp) ||
                   act_mul_q8(g, D, D->ffa, D->ffb, xq_out, n, gate->m)
               ? -1
               : 0;
}

/* x += res (res not NULL: the residual), out = rmsnorm(x) * w (rows of n), and with xq out
 * quantized into it (Q8_1): one launch where the backend fuses them. */
static int norm_q8(model_gpu *g, gpu_dev *D, float *out, void *xq, float *x, const float *res, const float *w,
                   int64_t rows, int n, float eps) {
    const gpu_api *A = g->api;
    if (xq && g->fuse) return A->rmsnorm_q8(D->c, out, xq, x, res, w, rows, n, eps);
    return (res && A->add(D->c, x, res, rows * n)) || A->rmsnorm(D->c, out, x, w, rows, n, eps) ||
                   (xq && A->quantize_q8_1(D->c, out, xq, n, rows))
               ? -1
               : 0;
}

/* The CPU's RoPE parameters for the device: n_dims rotated dims, freq factors at ff (device). */
static mrc_rope_params rope_dev(const cpu_rope_params *rp, int n_dims, const float *ff) {
    return (mrc_rope_params){.mode = rp->mode, .n_dims = n_dims, .freq_base = rp->freq_base,
                             .freq_scale = rp->freq_scale, .ext_factor = rp->ext_factor,
                             .attn_factor = rp->attn_factor, .beta_fast = rp->beta_fast, .beta_slow = rp->beta_slow,
                             .n_ctx_orig = rp->n_ctx_orig, .freq_factors = rp->freq_factors ? ff : NULL};
}

/* act(gate x) * (up x) -> down, into out. xq: x quantized when T == 1. */
static int dense_ffn(model_gpu *g, gpu_dev *D, const mrc_weight *gate, const mrc_weight *up, const mrc_weight *down,
                     const float *x, const void *xq, int T, float *out) {
    const int64_t F = up->m;
    if (T == 1 && xq && !is_float(gate) && !is_float(up) && !is_float(down)) /* the down's input with the gate */
        return gate_up_act_q8(g, D, gate, up, NULL, 1, xq, 0, D->xq2, false) ||
                       fg_gmm(g, D, down, D->ffa, D->xq2, T, out)
                   ? -1
                   : 0;
    const mrc_weight *W[2] = {gate, up};
    float *const y[2] = {D->ffa, D->ffb};
    if (fg_gmm_n(g, D, 2, W, x, xq, T, y) || act_mul(g, D, D->ffa, D->ffb, (int64_t)T * F))
        return -1;
    return fg_gmm(g, D, down, D->ffa, NULL, T, out);
}

static int attn_layer(model_run *r, const model_ubatch *ub, int il, gpu_dev *D, const void *xq) {
    model_gpu *g = r->gpu;
    const gpu_api *A = g->api;
    const mr_model *m = r->m;
    const model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[il];
    const gpu_layer *L = &g->L[il];
    const kv_cache *kv = r->kv;
    const int T = ub->n, H = ly->n_head, Hkv = ly->n_head_kv, Dk = hp->head_dim_k, Dv = hp->head_dim_v;
    const int qw = H * Dk, kw = Hkv * Dk, vw = Hkv * Dv;
    /* Qwen3-Next's gated attention: wq gives per head [q | gate] (into D->qg); q is copied out
     * and the gate applied to the attention's output */
    const bool gated = ly->attn_kind == MODEL_ATTN_GATED;
    float *qp = gated ? D->qg : D->q;
    /* one token: k right after q (D->q has room for both), so RoPE is one launch for both */
    float *kb = T == 1 ? D->q + qw : D->k;
    if (T == 1 && xq && g->fuse && A->matvec_n && mrc_matvec_n_pair(&L->wq, &L->wk)) { /* q, k (and v): one launch */
        const bool v3 = mrc_matvec_n_pair(&L->wq, &L->wv);
        const mrc_weight *W[3] = {&L->wq, &L->wk, &L->wv};
        float *const y[3] = {qp, kb, D->v};
        if (A->matvec_n(D->c, v3 ? 3 : 2, W, xq, y) || (!v3 && fg_gmm(g, D, &L->wv, D->xn, xq, T, D->v))) return -1;
    } else {
        const mrc_weight *W[3] = {&L->wq, &L->wk, &L->wv};
        float *const y[3] = {qp, kb, D->v};
        if (fg_gmm_n(g, D, 3, W, D->xn, xq, T, y)) return -1;
    }
    if (gated && A->copy_rows(D->c, D->q, Dk, D->qg, 2 * (int64_t)Dk, (int64_t)T * H, Dk)) return -1;
    if (add_rows(g, D, D->q, L->bq, T, qw) || add_rows(g, D, kb, L->bk, T, kw) || add_rows(g, D, D->v, L->bv, T, vw))
        return -1;
    const cpu_rope_params rp = model_rope_params(m, il);
    /* one token with q and k norms (Qwen3): both norms and the rotation in one launch */
    const bool norm_rope = T == 1 && g->fuse && A->norm_rope && L->q_norm && L->k_norm && rp.n_dims > 0 && Dk < 1024;
    bool kv_done = false;
    if (norm_rope && A->norm_rope_kv && A->kv_write2) { /* and K and V into the cache, the same launch */
        const mrc_rope_params p = rope_dev(&rp, rp.n_dims, D->rope_ff);
        const mrc_kv_put put = {.cells = D->cells, .n_ctx = kv->n_ctx, .type_k = kv->type_k, .base_k = L->k,
                                .rb_k = kv->k_row[il], .type_v = kv->type_v, .v = D->v, .dv = Dv, .base_v = L->v,
                                .rb_v = kv->v_row[il]};
        if (A->norm_rope_kv(D->c, &p, D->q, D->pos, 1, H + Hkv, Dk, L->q_norm, L->k_norm, H, hp->rms_eps, &put))
            return -1;
        kv_done = true;
    } else if (norm_rope) {
        const mrc_rope_params p = rope_dev(&rp, rp.n_dims, D->rope_ff);
        if (A->norm_rope(D->c, &p, D->q, D->pos, 1, H + Hkv, Dk, L->q_norm, L->k_norm, H, hp->rms_eps)) return -1;
    } else {
        if (L->q_norm && A->rmsnorm(D->c, D->q, D->q, L->q_norm, (int64_t)T * H, Dk, hp->rms_eps)) return -1;
        if (L->k_norm && A->rmsnorm(D->c, kb, kb, L->k_norm, (int64_t)T * Hkv, Dk, hp->rms_eps)) return -1;
    }
    if (rp.n_dims > 0 && !norm_rope) {
        const mrc_rope_params p = rope_dev(&rp, rp.n_dims, D->rope_ff);
        if (T == 1) { /* the token's q heads, then its k heads */
            if (A->rope(D->c, &p, D->q, D->pos, 1, H + Hkv, Dk)) return -1;
        } else if (A->rope(D->c, &p, D->q, D->pos, T, H, Dk) || A->rope(D->c, &p, kb, D->pos, T, Hkv, Dk))
            return -1;
    }
    if (!kv_done && g->fuse && A->kv_write2) {
        if (A->kv_write2(D->c, Hkv, T, D->cells, kv->n_ctx, kv->type_k, kb, Dk, L->k, kv->k_row[il], kv->type_v, D->v,
                         Dv, L->v, kv->v_row[il]))
            return -1;
    } else if (!kv_done &&
               (A->kv_write(D->c, kv->type_k, kb, Hkv, Dk, T, D->cells, L->k, kv->k_row[il], kv->n_ctx) ||
                A->kv_write(D->c, kv->type_v, D->v, Hkv, Dv, T, D->cells, L->v, kv->v_row[il], kv->n_ctx)))
        return -1;
    /* all T tokens in one launch, each with its mask row */
    const mrc_attn_params ap = {.n_head = H, .n_head_kv = Hkv, .dk = Dk, .dv = Dv, .n_ctx = kv->n_ctx,
                                .n_kv = g->n_kv, .type_k = kv->type_k, .type_v = kv->type_v,
                                .scale = hp->attn_scale, .softcap = hp->attn_softcap, .n_tok = T,
                                .q_stride = qw, .mask_stride = g->n_kv, .out_stride = (int64_t)H * Dv,
                                /* one token: the output quantized for wo by the attention's last kernel */
                                .out_q8 = T == 1 && g->fuse && !gated && !is_float(&L->wo) ? D->xq2 : NULL,
                                /* one token: the splits merged by the heads' last blocks, one kernel */
                                .one_launch = T == 1 && g->fuse};
    const bool swa = ly->swa && hp->n_swa > 0;
    const float *mask = g->use_gmask ? (swa ? D->gmask_swa : D->gmask) : (swa ? D->mask_swa : D->mask);
    if (A->attn(D->c, &ap, D->q, L->k, L->v, mask, D->att)) return -1;
    /* gated: att (rows of Dv per token and head) *= sigmoid(that head's gate) */
    if (gated && A->sigmoid_mul(D->c, D->att, D->qg + Dk, (int64_t)T * H, Dv, 2 * (int64_t)Dk, 1)) return -1;
    if (fg_gmm(g, D, &L->wo, D->att, ap.out_q8, T, D->tmp)) return -1;
    return add_rows(g, D, D->tmp, L->bo, T, hp->n_embd);
}

/* MLA (attn_mla.c's absorbed form) on the device. Per-head products with wk_b / wv_b run as
 * grouped matvecs with the head ids 0..H-1 as "experts". */
static int mla_layer(model_run *r, const model_ubatch *ub, int il, gpu_dev *D, const void *xq) {
    model_gpu *g = r->gpu;
    const gpu_api *A = g->api;
    const mr_model *m = r->m;
    const model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[il];
    const gpu_layer *L = &g->L[il];
    const kv_cache *kv = r->kv;
    int dk, dv;
    model_mla_dims(hp, &dk, &dv);
    const int T = ub->n, H = ly->n_head, R = hp->kv_lora_rank, rope = hp->n_rot, nope = dk - rope, kd = R + rope;
    const int64_t qs = (int64_t)H * dk, as = (int64_t)H * kd, ls = (int64_t)H * R, os = (int64_t)H * dv;
    float *q = D->q, *ckv = D->m_ckv;
    if (L->wq.data && T == 1 && xq && g->fuse && A->matvec_n && mrc_matvec_n_pair(&L->wq, &L->wkv_a)) { /* one launch */
        const mrc_weight *W[2] = {&L->wq, &L->wkv_a};
        float *const y[2] = {q, ckv};
        if (A->matvec_n(D->c, 2, W, xq, y)) return -1;
    } else { /* q (or its low-rank part) and the kv latent: one input */
        const mrc_weight *W[2] = {L->wq.data ? &L->wq : &L->wq_a, &L->wkv_a};
        float *const y[2] = {L->wq.data ? q : D->m_qa, ckv};
        if (fg_gmm_n(g, D, 2, W, D->xn, xq, T, y)) return -1;
        if (!L->wq.data && (A->rmsnorm(D->c, D->m_qa, D->m_qa, L->q_a_norm, T, (int)L->wq_a.m, hp->rms_eps) ||
                            fg_gmm(g, D, &L->wq_b, D->m_qa, NULL, T, q)))
            return -1;
    }
    float kq_scale;
    const cpu_rope_params rp = model_mla_rope(m, il, &kq_scale);
    const mrc_rope_params p = rope_dev(&rp, rope, D->rope_ff);
    /* q_pe of each head: rows of dk from q + nope (RoPE touches only the first `rope` of each);
     * k_pe: one "head" of kd from ckv + R per token */
    if (A->rope(D->c, &p, q + nope, D->pos, T, H, dk) || A->rope(D->c, &p, ckv + R, D->pos, T, 1, kd)) return -1;
    /* the norm of each token's first R of kd: in place for one token; for a prompt, packed into
     * m_lat (free until the attention) and back, 3 launches instead of T */
    if (T == 1) {
        if (A->rmsnorm(D->c, ckv, ckv, L->kv_a_norm, 1, R, hp->rms_eps)) return -1;
    } else if (A->copy_rows(D->c, D->m_lat, R, ckv, kd, T, R) ||
               A->rmsnorm(D->c, D->m_lat, D->m_lat, L->kv_a_norm, T, R, hp->rms_eps) ||
               A->copy_rows(D->c, ckv, kd, D->m_lat, R, T, R))
        return -1;
    if (A->kv_write(D->c, kv->type_k, ckv, 1, kd, T, D->cells, L->k, kv->k_row[il], kv->n_ctx)) return -1;
    /* absorbed queries [q_nope Wk_b[h] | q_pe] and attention, per token */
    const mrc_attn_params ap = {.n_head = H, .n_head_kv = 1, .dk = kd, .dv = R, .n_ctx = kv->n_ctx,
                                .n_kv = g->n_kv, .type_k = kv->type_k, .type_v = kv->type_k,
                                .scale = kq_scale, .softcap = hp->attn_softcap, .v_in_k = true,
                                .q_stride = as, .mask_stride = g->n_kv, .out_stride = ls,
                                .one_launch = T == 1 && g->fuse};
    const size_t rsn = A->q8_1_row_size(nope), rsr = A->q8_1_row_size(R);
    /* the per-head products of nt tokens at once (slot t*H + h reads head h: head_ids repeats
     * 0..H-1), within the grid's 65535 slots, and the attention of those tokens in one launch */
    const int tc = H == g->mla_H ? MR_MAX(1, 65535 / H) : 1;
    for (int t0 = 0; t0 < T; t0 += tc) {
        const int nt = MR_MIN(tc, T - t0), n = nt * H;
        const float *qt = q + (size_t)t0 * qs;
        float *qa = D->m_qabs + (size_t)t0 * as, *lat = D->m_lat + (size_t)t0 * ls, *ot = D->m_o + (size_t)t0 * os;
        if (is_float(&L->wk_b)) {
            if (A->moe_matvec(D->c, &L->wk_b, D->head_ids, n, qt, (size_t)dk, NULL, 0, D->m_h)) return -1;
        } else if (A->copy_rows(D->c, D->m_h, nope, qt, dk, n, nope) ||
                   A->quantize_q8_1(D->c, D->m_h, D->xq_mla, nope, n) ||
                   A->moe_matvec(D->c, &L->wk_b, D->head_ids, n, NULL, 0, D->xq_mla, rsn, D->m_h))
            return -1;
        if (A->copy_rows(D->c, qa, kd, D->m_h, R, n, R) || A->copy_rows(D->c, qa + R, kd, qt + nope, dk, n, rope))
            return -1;
        mrc_attn_params apt = ap;
        apt.n_tok = nt;
        if (A->attn(D->c, &apt, qa, L->k, NULL, (g->use_gmask ? D->gmask : D->mask) + (size_t)t0 * g->n_kv, lat))
            return -1;
        /* per-head value up-projection */
        if (is_float(&L->wv_b)) {
            if (A->moe_matvec(D->c, &L->wv_b, D->head_ids, n, lat, (size_t)R, NULL, 0, ot)) return -1;
        } else if (A->quantize_q8_1(D->c, lat, D->xq_mla, R, n) ||
                   A->moe_matvec(D->c, &L->wv_b, D->head_ids, n, NULL, 0, D->xq_mla, rsr, ot))
            return -1;
    }
    return fg_gmm(g, D, &L->wo, D->m_o, NULL, T, D->tmp);
}

/* The MoE FFN of T tokens into out (acc: added to out, the residual; only without shared
 * experts and CPU experts), with the layer's weights L. */
static int moe_run(model_run *r, int T, int il, gpu_dev *D, const gpu_layer *L, const void *xq, float *out,
                   int acc) {
    model_gpu *g = r->gpu;
    const gpu_api *A = g->api;
    const mr_model *m = r->m;
    const model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[il];
    const int E = hp->n_expert, K = hp->n_expert_used, Dm = hp->n_embd;
    /* hybrid layers route into the floats right after the T normed rows, so that rows and
     * routing reach the host in one copy */
    const size_t nx = (size_t)T * Dm, ns = (size_t)T * K;
    int32_t *ids = L->exps_cpu ? (int32_t *)(D->xn + nx) : D->ids;
    float *selw = L->exps_cpu ? D->xn + nx + ns : D->selw;
    if (T == 1 && g->fuse && A->router_route && is_float(&L->gate_inp) && E <= 1024 && K <= 32) { /* one launch */
        if (A->router_route(D->c, &L->gate_inp, D->xn, D->router, K, (int)hp->gating, L->probs_b, hp->expert_norm_w,
                            hp->expert_w_scale, hp->n_expert_groups, hp->n_group_used, ids, selw))
            return -1;
    } else if (fg_gmm(g, D, &L->gate_inp, D->xn, xq, T, D->router) ||
               A->moe_route(D->c, D->router, T, E, K, (int)hp->gating, L->probs_b, hp->expert_norm_w,
                            hp->expert_w_scale, hp->n_expert_groups, hp->n_group_used, ids, selw))
        return -1;
    const bool shared = L->up_sh.data != NULL;
    if (L->exps_cpu) {
        /* the CPU runs the chosen experts on its kernels; the shared experts, queued first, run
         * on the device meanwhile (the queue runs on while the host computes) */
        float *h = g->h_stage;
        if (A->download(D->c, h, D->xn, sizeof(float) * (nx + 2 * ns)) || A->sync(D->c)) return -1;
        memcpy(r->xn, h, sizeof(float) * nx);
        memcpy(r->sel, h + nx, sizeof(int32_t) * ns);
        memcpy(r->selw, h + nx + ns, sizeof(float) * ns);
        if (shared && (dense_ffn(g, D, &L->gate_sh, &L->up_sh, &L->down_sh, D->xn, xq, T, D->sh) ||
                       fg_shared_gate(g, D, L, xq, T, D->sh)))
            return -1;
        const cpu_moe_w mw = {.gate = &ly->gate_exps, .up = &ly->up_exps, .down = &ly->down_exps,
                              .gelu = m->arch->act == MODEL_ACT_GELU};
        if (cpu_moe(&r->mm, &mw, T, r->xn, K, r->sel, r->selw, r->tmp)) return -1;
        if (A->upload(D->c, D->tmp, r->tmp, sizeof(float) * nx)) return -1;
        return shared ? A->add(D->c, D->tmp, D->sh, (int64_t)T * Dm) : 0;
    }
    /* fused: the shared experts first, into out, and the routed sum added to them (sh + routed:
     * the same float as routed + sh, without the add's launch) */
    const bool sh_first = shared && g->fuse;
    if (sh_first) {
        if (dense_ffn(g, D, &L->gate_sh, &L->up_sh, &L->down_sh, D->xn, xq, T, out) ||
            fg_shared_gate(g, D, L, xq, T, out))
            return -1;
        acc = 1;
    }
    if (T > 1 && !is_float(&L->gate_exps) && !is_float(&L->up_exps) && !is_float(&L->down_exps)) {
        /* a prompt: every (token, slot) pair in one grouped matvec per matrix (launches per layer,
         * not per token), the pairs in expert order so that each expert's weights are read for
         * all its tokens in a row (from L2, not once per pair from memory): sort, gather each
         * pair's Q8_1 input, gate / up / down over the sorted pairs, scatter the outputs back to
         * slot t*K + j, combine */
        const int64_t Fe = L->up_exps.m;
        const size_t rd = A->q8_1_row_size(Dm), rs = A->q8_1_row_size(Fe);
        const int tc = 65535 / K; /* slots per launch: the grid's y limit */
        for (int t0 = 0; t0 < T; t0 += tc) {
            const int nt = MR_MIN(tc, T - t0);
            const int64_t n = (int64_t)nt * K;
            if (A->quantize_q8_1(D->c, D->xn + (size_t)t0 * Dm, D->xq, Dm, nt) ||
                A->moe_sort(D->c, D->ids + (size_t)t0 * K, (int)n, E, K, D->perm, D->sids, D->stok) ||
                A->rows_idx(D->c, D->xq_rep, NULL, D->xq, D->stok, n, rd))
                return -1;
            if (gate_up_act_q8(g, D, &L->gate_exps, &L->up_exps, D->sids, (int)n, D->xq_rep, rd, D->xq_moe, true) ||
                (A->moe_matvec_grp
                     ? A->moe_matvec_grp(D->c, &L->down_exps, NULL, D->sids, (int)n, D->xq_moe, rs, D->slots_s, NULL)
                     : A->moe_matvec(D->c, &L->down_exps, D->sids, (int)n, NULL, 0, D->xq_moe, rs, D->slots_s)) ||
                A->rows_idx(D->c, D->slots, D->perm, D->slots_s, NULL, n, sizeof(float) * (size_t)Dm) ||
                A->moe_combine(D->c, out + (size_t)t0 * Dm, D->slots, D->selw + (size_t)t0 * K, nt, K, Dm, acc))
                return -1;
        }
    } else {
        const int64_t Fe = L->up_exps.m;
        const size_t rs = A->q8_1_row_size(Fe);
        for (int t = 0; t < T; t++) {
            const float *xt = D->xn + (size_t)t * Dm;
            const void *qt = xq;
            if (!qt) {
                if (A->quantize_q8_1(D->c, xt, D->xq, Dm, 1)) return -1;
                qt = D->xq;
            }
            const int32_t *ids = D->ids + (size_t)t * K;
            const bool fl = is_float(&L->gate_exps) || is_float(&L->up_exps);
            if (fl ? A->moe_matvec(D->c, &L->gate_exps, ids, K, xt, 0, qt, 0, D->ffa) ||
                         A->moe_matvec(D->c, &L->up_exps, ids, K, xt, 0, qt, 0, D->ffb) ||
                         act_mul_q8(g, D, D->ffa, D->ffb, D->xq2, K, Fe)
                   : gate_up_act_q8(g, D, &L->gate_exps, &L->up_exps, ids, K, qt, 0, D->xq2, false))
                return -1;
            float *ot = out + (size_t)t * Dm;
            const float *wt = D->selw + (size_t)t * K;
            if (g->fuse && A->moe_matvec_sum && !is_float(&L->down_exps) && K <= 64) { /* down + sum, one launch */
                if (A->moe_matvec_sum(D->c, &L->down_exps, ids, K, D->xq2, rs, wt, ot, acc)) return -1;
            } else if (A->moe_matvec(D->c, &L->down_exps, ids, K, D->ffa, (size_t)Fe, D->xq2, rs, D->slots) ||
                       A->moe_combine(D->c, ot, D->slots, wt, 1, K, Dm, acc))
                return -1;
        }
    }
    if (shared && !sh_first) {
        if (dense_ffn(g, D, &L->gate_sh, &L->up_sh, &L->down_sh, D->xn, xq, T, D->sh) ||
            fg_shared_gate(g, D, L, xq, T, D->sh) || A->add(D->c, out, D->sh, (int64_t)T * Dm))
            return -1;
    }
    return 0;
}

/* Weight bytes one micro-batch reads on the devices (for the roofline): every dense weight once,
 * the routed experts at most min(T*K, E) matrices. */
/* Layer il's MoE FFN. A large micro-batch of a layer whose routed experts stay in RAM brings
 * them to the device (ex_load into the buffer not used by the layer before, unless a prefetch
 * put them there), runs them there, and then queues the upload of the device's next such layer
 * into the other buffer, which the copy stream does while this layer's kernels run. */
static int moe_layer(model_run *r, int T, int il, gpu_dev *D, const void *xq, float *out, int acc) {
    model_gpu *g = r->gpu;
    const gpu_api *A = g->api;
    const gpu_layer *L = &g->L[il];
    if (!(L->exps_cpu && L->stream && T >= g->offload_min)) return moe_run(r, T, il, D, L, xq, out, acc);
    const int s = D->ex_layer[0] == il ? 0 : D->ex_layer[1] == il ? 1 : D->ex_last ^ 1;
    gpu_layer Ls;
    if (ex_load(r, D, il, s) || (g->ex_async && A->event_wait(D->c, D->ex_ready[s], 0)) ||
        ex_views(g, D, s, L, &Ls) || moe_run(r, T, il, D, &Ls, xq, out, acc))
        return -1;
    if (g->ex_async && A->event_record(D->c, D->ex_free[s], 0)) return -1;
    D->ex_used[s] = true;
    D->ex_last = s;
    for (int jl = il + 1; jl < g->m->hp.n_layer; jl++)
        if (g->L[jl].dev == L->dev && g->L[jl].stream) return ex_load(r, D, jl, s ^ 1); /* prefetch */
    return 0;
}

static uint64_t layer_bytes(const model_gpu *g, int il, int T) {
    const gpu_layer *L = &g->L[il];
    uint64_t b = 0;
    const mrc_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down, &L->gate_inp,
                              &L->gate_sh, &L->up_sh, &L->down_sh, &L->wq_a, &L->wq_b, &L->wkv_a, &L->wqkv,
                              &L->wqkv_gate, &L->ssm_ba, &L->ssm_out, &L->gate_inp_sh};
    for (size_t i = 0; i < MR_ARRAY_LEN(ws); i++) b += ws[i]->data ? ws[i]->mat_bytes : 0;
    b += L->wk_b.data ? L->wk_b.mat_bytes * (uint64_t)L->wk_b.n_mat : 0;
    b += L->wv_b.data ? L->wv_b.mat_bytes * (uint64_t)L->wv_b.n_mat : 0;
    const int64_t ne = MR_MIN((int64_t)T * g->m->hp.n_expert_used, (int64_t)MR_MAX(g->m->hp.n_expert, 1));
    const mrc_weight *ex[] = {&L->gate_exps, &L->up_exps, &L->down_exps};
    for (int i = 0; i < 3; i++) b += ex[i]->data ? ex[i]->mat_bytes * (uint64_t)ne : 0;
    return b;
}

int model_gpu_layer(model_run *r, const model_ubatch *ub, int il) {
    model_gpu *g = r->gpu;
    const gpu_api *A = g->api;
    const model_hparams *hp = &r->m->hp;
    const gpu_layer *L = &g->L[il];
    const int T = ub->n, Dm = hp->n_embd;
    gpu_dev *D = &g->d[L->dev];
    if (to_device(r, T, L->dev)) return -1;
    const int64_t n = (int64_t)T * Dm;
    /* attention block: T == 1 quantizes xn once for q, k, v */
    const void *xq = T == 1 ? D->xq : NULL;
    if (norm_q8(g, D, D->xn, T == 1 ? D->xq : NULL, D->x, NULL, L->attn_norm, T, Dm, hp->rms_eps)) return -1;
    const int kind = r->m->layers[il].attn_kind;
    if (kind == MODEL_ATTN_MLA     ? mla_layer(r, ub, il, D, xq)
        : kind == MODEL_ATTN_DELTA ? fg_delta_layer(r, ub, il, D, xq)
                                   : attn_layer(r, ub, il, D, xq))
        return -1;
    if (L->attn_post_norm && A->rmsnorm(D->c, D->tmp, D->tmp, L->attn_post_norm, T, Dm, hp->rms_eps)) return -1;
    /* FFN block: the residual add, the norm and (T == 1) its quantization */
    if (norm_q8(g, D, D->xn, T == 1 ? D->xq : NULL, D->x, D->tmp, L->ffn_norm, T, Dm, hp->rms_eps)) return -1;
    const bool moe = r->m->layers[il].ffn_kind == MODEL_FFN_MOE;
    /* the routed experts' sum goes straight into the residual when nothing comes between */
    const bool into_x = moe && g->fuse && !L->ffn_post_norm && !L->up_sh.data && !L->exps_cpu;
    if (moe) {
        if (moe_layer(r, T, il, D, xq, into_x ? D->x : D->tmp, into_x)) return -1;
    } else if (dense_ffn(g, D, &L->gate, &L->up, &L->down, D->xn, xq, T, D->tmp))
        return -1;
    if (!into_x) {
        if (L->ffn_post_norm && A->rmsnorm(D->c, D->tmp, D->tmp, L->ffn_post_norm, T, Dm, hp->rms_eps)) return -1;
        if (A->add(D->c, D->x, D->tmp, n)) return -1;
    }
    r->mm.bytes_read += layer_bytes(g, il, T);
    return 0;
}

/* Logits of n rows (rows[i] of the residual) into D->logits. */
static int head_rows(model_gpu *g, gpu_dev *D, const int32_t *rows, int n) {
    const model_hparams *hp = &g->m->hp;
    const int Dm = hp->n_embd;
    const bool q1 = n == 1 && !is_float(&D->output); /* one row: quantized with its norm */
    for (int i = 0; i < n; i++)
        if (norm_q8(g, D, D->xn + (size_t)i * Dm, q1 ? D->xq : NULL, D->x + (size_t)rows[i] * Dm, NULL, D->out_norm, 1,
                    Dm, hp->rms_eps))
            return -1;
    const void *xq = q1 ? D->xq : NULL;
    return fg_gmm(g, D, &D->output, D->xn, xq, n, D->logits);
}

int model_gpu_head(model_run *r, const model_ubatch *ub, float *logits) {
    model_gpu *g = r->gpu;
    const gpu_api *A = g->api;
    const int V = r->m->hp.n_vocab;
    gpu_dev *D = &g->d[g->out_dev];
    if (to_device(r, ub->n, g->out_dev)) return -1;
    for (int i0 = 0; i0 < ub->n_out; i0 += HEAD_ROWS) {
        const int n = MR_MIN(HEAD_ROWS, ub->n_out - i0);
        if (head_rows(g, D, ub->out + i0, n) ||
            A->download(D->c, logits + (size_t)i0 * V, D->logits, sizeof(float) * (size_t)n * V))
            return -1;
    }
    r->mm.bytes_read += D->output.mat_bytes;
    return A->sync(D->c);
}

/* ---- decode graphs ---------------------------------------------------------------------------- */

/* The layers and the head of one token on the graph device (queued, or recorded when capturing). */
static int decode_ops(model_run *r, const model_ubatch *ub) {
    model_gpu *g = r->gpu;
    static const int32_t row0 = 0;
    for (int il = 0; il < r->m->hp.n_layer; il++)
        if (model_gpu_layer(r, ub, il)) return -1;
    return head_rows(g, &g->d[g->graph_dev], &row0, 1);
}

int model_gpu_decode(model_run *r, const model_ubatch *ub, float *logits) {
    model_gpu *g = r->gpu;
    if (g->prof) gpu_prof_step(); /* every forward pass starts here */
    if (!g->graph_ok || ub->n != 1 || ub->n_out != 1 || ub->out[0] != 0) return 0;
    const gpu_api *A = g->api;
    const kv_cache *kv = r->kv;
    const model_hparams *hp = &r->m->hp;
    gpu_dev *D = &g->d[g->graph_dev];
    const int n_hi = MR_MAX(kv->n_hi, 1), nkv = mrc_kv_bucket(n_hi, g->n_ctx);
    /* the token's mask rows over the bucket's nkv cells */
    const float *mk = build_masks(g, kv, ub, nkv, hp->n_swa);
    if (!mk) return -1;
    const float *ms = mk + nkv;
    if (A->upload(D->c, D->gmask, mk, sizeof(float) * (size_t)nkv) ||
        (g->any_swa && A->upload(D->c, D->gmask_swa, ms, sizeof(float) * (size_t)nkv)) ||
        A->upload(D->c, D->pos, ub->pos, sizeof(int32_t)) || A->upload(D->c, D->cells, ub->cell, sizeof(int32_t)) ||
        A->upload(D->c, D->seq, ub->seq, sizeof(int32_t)) ||
        A->upload(D->c, D->x, r->x, sizeof(float) * (size_t)hp->n_embd) || fg_rec_push(g, ub->seq, 1))
        return -1;
    g->x_at = g->graph_dev;
    g->n_kv = nkv;
    g->use_gmask = true;
    int rc = 0;
    const unsigned ep = A->scratch_epoch(D->c);
    if (g->graph_nkv != nkv || g->graph_epoch != ep) {
        /* a new shape: run the step once (it sizes the scratch), then capture it for the next tokens */
        const uint64_t b0 = r->mm.bytes_read;
        rc = decode_ops(r, ub);
        g->graph_bytes = r->mm.bytes_read - b0;
        if (!rc) rc = A->graph_begin(D->c);
        if (!rc) {
            rc = decode_ops(r, ub);
            const int rc2 = A->graph_end(D->c);
            rc = rc ? rc : rc2;
        }
        r->mm.bytes_read = b0 + g->graph_bytes;
        g->graph_nkv = rc ? 0 : nkv;
        g->graph_epoch = A->scratch_epoch(D->c);
        g->n_graph_capture++;
    } else {
        rc = A->graph_launch(D->c);
        r->mm.bytes_read += g->graph_bytes;
        g->n_graph_launch++;
    }
    g->use_gmask = false;
    g->x_at = -1;
    if (rc || A->download(D->c, logits, D->logits, sizeof(float) * (size_t)hp->n_vocab) || A->sync(D->c)) {
        g->graph_nkv = 0;
        return -1;
    }
    return 1;
}

void model_gpu_stream_stats(const model_gpu *g, uint64_t *buf_bytes, uint64_t *streamed) {
    *buf_bytes = *streamed = 0;
    if (!g) return;
    *streamed = g->streamed_bytes;
    for (int d = 0; d < g->n_dev; d++)
        for (int s = 0; s < 2; s++)
            if (g->d[d].ex_buf[s]) *buf_bytes += g->d[d].ex_cap;
}

void model_gpu_graph_stats(const model_gpu *g, int *launches, int *captures) {
    *launches = g ? g->n_graph_launch : 0;
    *captures = g ? g->n_graph_capture : 0;
}
