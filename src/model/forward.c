/*
 * forward.c — the forward pass driver: scratch allocation, embeddings, the
 * layer loop (norm -> attention kind -> [post-norm] -> residual -> norm ->
 * FFN kind -> [post-norm] -> residual) and the output head.
 */
#include "model/forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/delta_net.h"
#include "quant/quant.h"

model_widths model_widths_of(const mr_model *m) {
    const model_hparams *hp = &m->hp;
    model_widths w = {0};
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *ly = &m->layers[il];
        w.q = MR_MAX(w.q, (size_t)ly->n_head * hp->head_dim_k);
        w.k = MR_MAX(w.k, (size_t)ly->kv_heads * ly->kv_dk);
        w.v = MR_MAX(w.v, (size_t)ly->kv_heads * ly->kv_dv);
        w.att = MR_MAX(w.att, (size_t)ly->n_head * hp->head_dim_v);
        if (ly->ffn_up.data) w.ffn = MR_MAX(w.ffn, (size_t)ly->ffn_up.m);
        if (ly->up_shexp.data) w.ffn = MR_MAX(w.ffn, (size_t)ly->up_shexp.m);
        if (ly->up_exps.data) w.exp = MR_MAX(w.exp, (size_t)ly->up_exps.m);
    }
    w.ffn = MR_MAX(w.ffn, w.exp);
    return w;
}

static float *falloc(size_t n) { return mr_malloc_aligned(sizeof(float) * (n ? n : 1)); }

model_run *model_run_new(const mr_model *m, kv_cache *kv, int n_ub, int n_threads, bool flash, bool ref) {
    model_run *r = mr_calloc(1, sizeof *r);
    if (!r) return NULL;
    const model_hparams *hp = &m->hp;
    r->m = m;
    r->kv = kv;
    r->n_ub = n_ub;
    r->flash = flash;
    r->ref = ref;
    r->mm.ref = ref;
    r->tp = mr_tp_new(ref ? 1 : (n_threads > 0 ? n_threads : m->n_threads));
    if (!r->tp) goto fail;
    r->mm.tp = r->tp;

    const size_t T = (size_t)n_ub, D = (size_t)hp->n_embd;
    const model_widths wd = model_widths_of(m);
    const size_t qw = wd.q, kw = wd.k, vw = wd.v, aw = wd.att, fw = wd.ffn;
    r->x = falloc(T * D);
    r->xn = falloc(T * D);
    r->tmp = falloc(T * D);
    r->q = falloc(T * qw);
    r->k = falloc(T * kw);
    r->v = falloc(T * vw);
    r->att = falloc(T * aw);
    r->ff_a = falloc(T * fw);
    r->ff_b = falloc(T * fw);
    r->rope_cs = falloc(((size_t)hp->n_rot + 2) * (size_t)mr_tp_n(r->tp)); /* one RoPE cache per thread */
    if (!r->x || !r->xn || !r->tmp || !r->q || !r->k || !r->v || !r->att || !r->ff_a || !r->ff_b || !r->rope_cs)
        goto fail;
    if (hp->n_expert > 0) {
        const size_t E = (size_t)hp->n_expert, K = (size_t)hp->n_expert_used;
        r->router = falloc(T * E);
        r->sel = mr_malloc(sizeof(int32_t) * T * K);
        r->selw = falloc(T * K);
        r->ex_tok = mr_malloc(sizeof(int32_t) * T * E);
        r->ex_slot = mr_malloc(sizeof(int32_t) * T * E);
        r->ex_cnt = mr_malloc(sizeof(int32_t) * E);
        r->ex_x = falloc(T * D);
        r->ex_y = falloc(T * D);
        if (!r->router || !r->sel || !r->selw || !r->ex_tok || !r->ex_slot || !r->ex_cnt || !r->ex_x || !r->ex_y)
            goto fail;
    }
    size_t per = 0, part = 0;
    int kv_max = 0;
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *ly = &m->layers[il];
        if (ly->kv_heads == 0) continue; /* recurrent layer: no KV cache */
        cpu_attn_args a = {.n_head = ly->n_head, .n_head_kv = ly->kv_heads, .dk = ly->kv_dk, .dv = ly->kv_dv,
                           .n_ctx = kv->n_ctx, .n_cells = kv->n_ctx, .flash = flash};
        if (ly->attn_kind == MODEL_ATTN_MLA) {
            a.n_head_kv = 1;
            if (ly->wkv_nb.data) { /* the prompt form: ordinary f16 heads (attn_mla.c) */
                cpu_attn_args p = a;
                p.n_head_kv = p.n_head;
                model_mla_dims(hp, &p.dk, &p.dv);
                per = MR_MAX(per, cpu_attn_scratch_floats(&p));
            }
        }
        per = MR_MAX(per, cpu_attn_scratch_floats(&a));
        part = MR_MAX(part, (size_t)a.n_head * ((size_t)a.dv + 2));
        kv_max = MR_MAX(kv_max, a.n_head_kv);
    }
    per = (per + 15) & ~(size_t)15;
    r->attn_scratch_per = per;
    r->attn_scratch = falloc(per * (size_t)mr_tp_n(r->tp));
    if (!r->attn_scratch) goto fail;
    if (flash && !ref && kv_max > 0 && kv->n_ctx > CPU_ATTN_SPLIT_MIN) {
        r->attn_part_per = part;
        r->attn_kv_max = kv_max;
        r->attn_part = falloc(part * CPU_ATTN_SPLIT_MAX);
        r->attn_done = mr_calloc((size_t)kv_max, sizeof(*r->attn_done));
        if (!r->attn_part || !r->attn_done) goto fail;
    }
    if (model_delta_run_init(r)) goto fail;
    const char *prof = getenv("MOERUN_PROFILE");
    r->prof = prof && *prof && strcmp(prof, "0") != 0;
    return r;
fail:
    mr_preerr("forward scratch for micro-batches of %d tokens", n_ub);
    model_run_free(r);
    return NULL;
}

void model_run_free(model_run *r) {
    if (!r) return;
    if (r->prof) {
        static const char *const names[6] = {"attn gqa", "attn mla", "attn gated", "delta net", "ffn", "head"};
        double tot = 0;
        for (int i = 0; i < 6; i++) tot += r->prof_s[i];
        for (int i = 0; i < 6; i++)
            if (r->prof_s[i] > 0)
                fprintf(stderr, "profile: %-10s %8.3f s  %5.1f%%\n", names[i], r->prof_s[i],
                        100.0 * r->prof_s[i] / (tot > 0 ? tot : 1));
        if (r->prof_s[6] > 0)
            fprintf(stderr, "profile:   of which delta recurrence (conv, rule, norms) %.3f s  %.1f%%\n", r->prof_s[6],
                    100.0 * r->prof_s[6] / (tot > 0 ? tot : 1));
        if (r->prof_s[7] > 0)
            fprintf(stderr, "profile:   of which decode-step attention kernels %.3f s  %.1f%%  (%.3f ms a layer-step)\n",
                    r->prof_s[7], 100.0 * r->prof_s[7] / (tot > 0 ? tot : 1), 1e3 * r->prof_s[7] / (double)r->prof_steps);
    }
    model_delta_run_free(r);
    model_gpu_free(r->gpu);
    mr_tp_free(r->tp);
    cpu_mm_free(&r->mm);
    float *fs[] = {r->x, r->xn, r->tmp, r->q, r->k, r->v, r->att, r->ff_a, r->ff_b, r->rope_cs,
                   r->router, r->selw, r->ex_x, r->ex_y, r->attn_scratch, r->attn_part};
    for (size_t i = 0; i < MR_ARRAY_LEN(fs); i++) mr_free_aligned(fs[i]);
    free((void *)r->attn_done);
    free(r->sel);
    free(r->ex_tok);
    free(r->ex_slot);
    free(r->ex_cnt);
    model_mla_run_free(r); /* MLA scratch (attn_mla.c) */
    free(r);
}

static const float *vecf(const mr_weight *w) { return (const float *)w->data; }

int model_forward(model_run *r, const model_ubatch *ub, float *logits) {
    const mr_model *m = r->m;
    const model_hparams *hp = &m->hp;
    const int T = ub->n, D = hp->n_embd;
    MR_ASSERT(T > 0 && T <= r->n_ub);

    /* embeddings */
    for (int t = 0; t < T; t++)
        if (cpu_get_row(&r->mm, &m->tok_embd, ub->tok[t], r->x + (size_t)t * D)) return -1;
    if (hp->embd_scale != 0.0f)
        for (size_t i = 0; i < (size_t)T * D; i++) r->x[i] *= hp->embd_scale;

    double th = 0.0; /* profile: start of the output head */
    int grc = r->gpu ? model_gpu_decode(r, ub, logits) : 0;
    if (grc < 0) return -1;
    if (grc > 0) goto softcap;
    if (r->gpu && model_gpu_begin(r, ub)) return -1;
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *ly = &m->layers[il];
        double t0 = r->prof ? mr_time_s() : 0.0;
        if (r->gpu) {
            if (model_gpu_layer_on(r->gpu, il)) {
                if (model_gpu_layer(r, ub, il)) return -1;
                if (r->prof) r->prof_s[4] += mr_time_s() - t0;
                continue;
            }
            if (model_gpu_to_host(r, T)) return -1;
        }
        cpu_rmsnorm_rows(r->xn, r->x, vecf(&ly->attn_norm), T, D, hp->rms_eps);
        int rc = ly->attn_kind == MODEL_ATTN_MLA     ? model_attn_mla(r, ub, il, r->xn, r->tmp)
                 : ly->attn_kind == MODEL_ATTN_GATED ? model_attn_gated(r, ub, il, r->xn, r->tmp)
                 : ly->attn_kind == MODEL_ATTN_DELTA ? model_attn_delta(r, ub, il, r->xn, r->tmp)
                                                     : model_attn_gqa(r, ub, il, r->xn, r->tmp);
        if (rc) return -1;
        if (r->prof) {
            const double t1 = mr_time_s();
            r->prof_s[ly->attn_kind & 3] += t1 - t0;
            t0 = t1;
        }
        if (ly->attn_post_norm.data) cpu_rmsnorm_rows(r->tmp, r->tmp, vecf(&ly->attn_post_norm), T, D, hp->rms_eps);
        cpu_add(r->x, r->tmp, (int64_t)T * D);

        cpu_rmsnorm_rows(r->xn, r->x, vecf(&ly->ffn_norm), T, D, hp->rms_eps);
        if (ly->ffn_kind == MODEL_FFN_MOE) rc = model_ffn_moe(r, T, il, r->xn, r->tmp);
        else rc = model_ffn_dense(r, T, &ly->ffn_gate, &ly->ffn_up, &ly->ffn_down, r->xn, r->tmp);
        if (rc) return -1;
        if (ly->ffn_post_norm.data) cpu_rmsnorm_rows(r->tmp, r->tmp, vecf(&ly->ffn_post_norm), T, D, hp->rms_eps);
        cpu_add(r->x, r->tmp, (int64_t)T * D);
        if (r->prof) r->prof_s[4] += mr_time_s() - t0;
    }

    /* output head on the requested rows */
    if (ub->n_out == 0) return 0;
    th = r->prof ? mr_time_s() : 0.0;
    if (r->gpu && model_gpu_head_on(r->gpu)) {
        if (model_gpu_head(r, ub, logits)) return -1;
    } else {
        if (r->gpu && model_gpu_to_host(r, T)) return -1;
        for (int i = 0; i < ub->n_out; i++)
            cpu_rmsnorm(r->xn + (size_t)i * D, r->x + (size_t)ub->out[i] * D, vecf(&m->output_norm), D, hp->rms_eps);
        r->mm.bytes_read += m->output_norm.mat_bytes;
        if (cpu_matmul(&r->mm, &m->output, 0, r->xn, ub->n_out, logits)) return -1;
    }
softcap:
    if (hp->logit_softcap > 0.0f) {
        const float c = hp->logit_softcap;
        for (size_t i = 0; i < (size_t)ub->n_out * hp->n_vocab; i++) logits[i] = c * tanhf(logits[i] / c);
    }
    if (r->prof) r->prof_s[5] += mr_time_s() - th;
    return 0;
}
