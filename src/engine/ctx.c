/*
 * ctx.c — the inference context of the public API: KV cache, micro-batching,
 * logits, KV sequence operations and statistics (include/moerun.h).
 *
 * mr_decode validates the whole batch first (token ids, positions, sequence
 * ids, free cells) so an error leaves the cache untouched, then runs it in
 * micro-batches of n_ubatch tokens through model_forward.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/delta_net.h"
#include "model/forward.h"
#include "model/kv.h"
#include "quant/types.h"

struct mr_ctx {
    mr_model *m;
    mr_ctx_params p;
    kv_cache *kv;
    model_run *run;
    /* logits of the last batch */
    float *logits;
    size_t logits_cap;    /* floats */
    int32_t *logit_row;   /* per batch index: row in logits or -1 */
    int n_batch_last;
    /* per-call scratch (n_batch) */
    int32_t *pos, *seq, *cells, *outs;
    mr_ctx_stats st;
};

const char *mr_last_error(void) { return mr_geterr(); }

int engine_placement(const mr_model *m, const mr_ctx_params *p, placement *out, const gpu_api **api_out); /* plan.c */

mr_ctx_params mr_ctx_default_params(void) {
    mr_ctx_params p;
    memset(&p, 0, sizeof p);
    p.n_ctx = 0;
    p.n_batch = 2048;
    p.n_ubatch = 512;
    p.n_seq_max = 1;
    p.type_k = MR_KV_F16;
    p.type_v = MR_KV_F16;
    p.flash_attn = -1;
    return p;
}

mr_ctx *mr_ctx_new(mr_model *m, const mr_ctx_params *pp) {
    if (!m || !m->arch) {
        mr_seterr("mr_ctx_new: no model (or a vocabulary-only model)");
        return NULL;
    }
    mr_ctx *c = mr_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->m = m;
    c->p = pp ? *pp : mr_ctx_default_params();
    mr_ctx_params *p = &c->p;
    if (p->n_ctx <= 0) p->n_ctx = MR_MIN(m->hp.n_ctx_train, 4096);
    if (p->n_batch <= 0) p->n_batch = 2048;
    if (p->n_ubatch <= 0) p->n_ubatch = 512;
    if (p->n_batch > p->n_ctx) p->n_batch = p->n_ctx;
    if (p->n_ubatch > p->n_batch) p->n_ubatch = p->n_batch;
    if (p->n_seq_max <= 0) p->n_seq_max = 1;
    if (p->n_seq_max > KV_MAX_SEQ) {
        mr_seterr("mr_ctx_new: n_seq_max %d exceeds %d", p->n_seq_max, KV_MAX_SEQ);
        goto fail;
    }
    placement pl;
    const gpu_api *api = NULL;
    if (engine_placement(m, p, &pl, &api) != 0) goto fail;
    const char *ref = getenv("MOERUN_REF");
    const bool use_ref = ref && *ref && strcmp(ref, "0") != 0;
    c->kv = kv_new_ex(m, p->n_ctx, (uint32_t)p->type_k, (uint32_t)p->type_v, p->n_seq_max,
                      api ? pl.layer_dev : NULL);
    if (c->kv) c->run = model_run_new(m, c->kv, p->n_ubatch, p->n_threads, p->flash_attn != 0, use_ref);
    if (api) {
        if (c->run) c->run->gpu = model_gpu_new(api, m, &pl, c->kv, p->n_ubatch);
        if (c->run && c->run->gpu) model_gpu_pin(c->run->gpu, c->run);
        placement_free(&pl);
        if (c->run && !c->run->gpu) goto fail;
    }
    if (!c->run) goto fail;
    const size_t nb = (size_t)p->n_batch;
    c->logit_row = mr_malloc(sizeof(int32_t) * nb);
    c->pos = mr_malloc(sizeof(int32_t) * nb);
    c->seq = mr_malloc(sizeof(int32_t) * nb);
    c->cells = mr_malloc(sizeof(int32_t) * nb);
    c->outs = mr_malloc(sizeof(int32_t) * nb);
    if (!c->logit_row || !c->pos || !c->seq || !c->cells || !c->outs) goto fail;
    return c;
fail:
    mr_ctx_free(c);
    return NULL;
}

void mr_ctx_free(mr_ctx *c) {
    if (!c) return;
    model_run_free(c->run);
    kv_free(c->kv);
    free(c->logits);
    free(c->logit_row);
    free(c->pos);
    free(c->seq);
    free(c->cells);
    free(c->outs);
    free(c);
}

int mr_ctx_n_ctx(const mr_ctx *c) { return c->p.n_ctx; }

int mr_decode(mr_ctx *c, const mr_batch *b) {
    if (!b || b->n_tokens <= 0 || !b->token) {
        mr_seterr("mr_decode: empty batch");
        return -1;
    }
    const int n = b->n_tokens, V = c->m->hp.n_vocab;
    if (n > c->kv->n_ctx) {
        mr_seterr("mr_decode: batch of %d tokens exceeds the context size %d (-c)", n, c->kv->n_ctx);
        return -1;
    }
    if (n > c->p.n_batch) {
        mr_seterr("mr_decode: batch of %d tokens exceeds n_batch %d", n, c->p.n_batch);
        return -1;
    }
    int next_pos = kv_seq_pos_max(c->kv, 0) + 1;
    int n_out = 0;
    for (int i = 0; i < n; i++) {
        if (b->token[i] < 0 || b->token[i] >= V) {
            mr_seterr("mr_decode: token %d (batch index %d) is not in the vocabulary [0, %d)", b->token[i], i, V);
            return -1;
        }
        const int s = b->seq ? b->seq[i] : 0;
        if (s < 0 || s >= c->p.n_seq_max) {
            mr_seterr("mr_decode: seq id %d (batch index %d) out of range [0, %d)", s, i, c->p.n_seq_max);
            return -1;
        }
        const int ps = b->pos ? b->pos[i] : next_pos++;
        if (ps < 0) {
            mr_seterr("mr_decode: position %d (batch index %d) is negative", ps, i);
            return -1;
        }
        c->pos[i] = ps;
        c->seq[i] = s;
        const bool want = b->logits ? b->logits[i] != 0 : i == n - 1;
        c->logit_row[i] = want ? n_out++ : -1;
    }
    if (c->kv->rec && kv_rec_check_batch(c->kv, n, c->pos, c->seq)) {
        mr_preerr("mr_decode");
        return -1;
    }
    if (n > kv_free_cells(c->kv)) {
        mr_seterr("mr_decode: KV cache full: %d tokens need cells but only %d of %d are free (context size -c %d)", n,
                  kv_free_cells(c->kv), c->kv->n_ctx, c->kv->n_ctx);
        return -1;
    }
    const size_t need = (size_t)n_out * V;
    if (need > c->logits_cap) {
        float *nl = mr_realloc(c->logits, sizeof(float) * need);
        if (!nl) return -1;
        c->logits = nl;
        c->logits_cap = need;
    }
    c->n_batch_last = n;
    const double t0 = mr_time_s();
    c->run->mm.bytes_read = 0;
    c->run->n_mla_prompt = 0;
    c->run->kv_bytes_read = 0;
    int rc = 0;
    for (int i0 = 0; i0 < n && !rc; i0 += c->p.n_ubatch) {
        const int un = MR_MIN(c->p.n_ubatch, n - i0);
        if (kv_alloc(c->kv, un, c->pos + i0, c->seq + i0, c->cells + i0)) {
            mr_seterr("mr_decode: KV cache full");
            rc = -1;
            break;
        }
        int no = 0, first_row = -1;
        for (int i = 0; i < un; i++)
            if (c->logit_row[i0 + i] >= 0) {
                if (first_row < 0) first_row = c->logit_row[i0 + i];
                c->outs[no++] = i;
            }
        model_ubatch ub = {.n = un, .tok = b->token + i0, .pos = c->pos + i0, .seq = c->seq + i0,
                           .cell = c->cells + i0, .n_out = no, .out = c->outs};
        rc = model_forward(c->run, &ub, no ? c->logits + (size_t)first_row * V : NULL);
    }
    c->st.n_decode_tokens += (uint64_t)n;
    c->st.weight_bytes_read += c->run->mm.bytes_read;
    c->st.n_mla_prompt += c->run->n_mla_prompt;
    c->st.kv_bytes_read += c->run->kv_bytes_read;
    c->st.t_decode_s += mr_time_s() - t0;
    if (rc) {
        mr_preerr("mr_decode");
        c->n_batch_last = 0;
    }
    return rc;
}

const float *mr_get_logits(mr_ctx *c, int i) {
    if (i < 0) i += c->n_batch_last;
    if (i < 0 || i >= c->n_batch_last || c->logit_row[i] < 0) return NULL;
    return c->logits + (size_t)c->logit_row[i] * c->m->hp.n_vocab;
}

static bool seq_ok(const mr_ctx *c, int seq, bool allow_all) {
    if (seq < 0) return allow_all;
    return seq < c->p.n_seq_max;
}

int mr_kv_seq_rm(mr_ctx *c, int seq, int p0, int p1) {
    if (!seq_ok(c, seq, true)) {
        mr_seterr("mr_kv_seq_rm: seq id %d out of range [0, %d)", seq, c->p.n_seq_max);
        return -1;
    }
    if (c->kv->rec && kv_rec_seq_rm(c->kv, seq, p0, p1)) {
        mr_preerr("mr_kv_seq_rm");
        return -1;
    }
    kv_seq_rm(c->kv, seq, p0, p1);
    return 0;
}

int mr_kv_seq_cp(mr_ctx *c, int seq_src, int seq_dst, int p0, int p1) {
    if (!seq_ok(c, seq_src, false) || !seq_ok(c, seq_dst, false)) {
        mr_seterr("mr_kv_seq_cp: seq ids %d -> %d out of range [0, %d)", seq_src, seq_dst, c->p.n_seq_max);
        return -1;
    }
    if (c->kv->rec && kv_rec_seq_cp(c->kv, seq_src, seq_dst, p0, p1)) {
        mr_preerr("mr_kv_seq_cp");
        return -1;
    }
    kv_seq_cp(c->kv, seq_src, seq_dst, p0, p1);
    return 0;
}

int mr_kv_seq_checkpoint(mr_ctx *c, int seq) {
    if (!seq_ok(c, seq, false)) {
        mr_seterr("mr_kv_seq_checkpoint: seq id %d out of range [0, %d)", seq, c->p.n_seq_max);
        return -1;
    }
    if (c->kv->rec && kv_rec_checkpoint(c->kv, seq)) {
        mr_preerr("mr_kv_seq_checkpoint");
        return -1;
    }
    return 0;
}

void mr_kv_clear(mr_ctx *c) { kv_clear(c->kv); }

int mr_kv_seq_pos_max(const mr_ctx *c, int seq) {
    if (!seq_ok(c, seq, false)) return -1;
    return kv_seq_pos_max(c->kv, seq);
}

int mr_kv_used_cells(const mr_ctx *c) { return c->kv->used; }

void mr_ctx_get_stats(const mr_ctx *c, mr_ctx_stats *s) { *s = c->st; }
void mr_ctx_get_offload(const mr_ctx *c, mr_ctx_offload_info *out) {
    memset(out, 0, sizeof *out);
    const model_gpu *g = c->run->gpu;
    if (!g) return;
    for (int il = 0; il < c->m->hp.n_layer; il++) out->n_layers_dev += model_gpu_layer_on(g, il);
    out->output_dev = model_gpu_head_on(g);
    out->all_dev = out->output_dev && out->n_layers_dev == c->m->hp.n_layer;
    out->dev_bw_gbs = model_gpu_bw_gbs(g);
    model_gpu_graph_stats(g, &out->graph_launches, &out->graph_captures);
    model_gpu_stream_stats(g, &out->stream_buf_bytes, &out->streamed_bytes);
    out->weight_bytes = model_gpu_weight_bytes(g);
    out->dev_bytes = model_gpu_dev_bytes(g);
    snprintf(out->backend, sizeof out->backend, "%s", model_gpu_backend(g));
}
void mr_ctx_reset_stats(mr_ctx *c) { memset(&c->st, 0, sizeof c->st); }
