/*
 * delta_net_state.c — the per-sequence recurrent state of gated delta-net
 * layers and its sequence operations (see delta_net.h).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/delta_net.h"

kv_rec *kv_rec_new(const mr_model *m, int n_seq) {
    const model_hparams *hp = &m->hp;
    kv_rec *r = mr_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->n_layer = hp->n_layer;
    r->n_seq = n_seq;
    const size_t C = (size_t)2 * hp->ssm_n_group * hp->ssm_d_state + (size_t)hp->ssm_d_inner;
    const size_t Sv = (size_t)hp->ssm_d_inner / (size_t)(hp->ssm_dt_rank > 0 ? hp->ssm_dt_rank : 1);
    r->conv_n = (size_t)(hp->ssm_d_conv > 0 ? hp->ssm_d_conv - 1 : 0) * C;
    r->ssm_n = (size_t)hp->ssm_dt_rank * Sv * (size_t)hp->ssm_d_state;
    r->conv = mr_calloc((size_t)hp->n_layer, sizeof(float *));
    r->ssm = mr_calloc((size_t)hp->n_layer, sizeof(float *));
    r->ckpt = mr_calloc((size_t)n_seq * KV_REC_CKPT, sizeof(kv_rec_ckpt));
    if (!r->conv || !r->ssm || !r->ckpt) goto fail;
    for (int il = 0; il < hp->n_layer; il++) {
        if (m->layers[il].attn_kind != MODEL_ATTN_DELTA) continue;
        r->conv[il] = mr_malloc_aligned(sizeof(float) * (r->conv_n * (size_t)n_seq + 1));
        r->ssm[il] = mr_malloc_aligned(sizeof(float) * (r->ssm_n * (size_t)n_seq + 1));
        if (!r->conv[il] || !r->ssm[il]) goto fail;
    }
    kv_rec_reset(r, -1);
    return r;
fail:
    mr_preerr("recurrent state (%d sequences)", n_seq);
    kv_rec_free(r);
    return NULL;
}

void kv_rec_free(kv_rec *r) {
    if (!r) return;
    for (int il = 0; il < r->n_layer; il++) {
        if (r->conv) mr_free_aligned(r->conv[il]);
        if (r->ssm) mr_free_aligned(r->ssm[il]);
    }
    free(r->conv);
    free(r->ssm);
    if (r->ckpt)
        for (int i = 0; i < r->n_seq * KV_REC_CKPT; i++) mr_free_aligned(r->ckpt[i].data);
    free(r->ckpt);
    free(r);
}

static uint64_t seq_bit(int s) { return (uint64_t)1 << s; }

int kv_rec_sync_host(kv_rec *r, uint64_t seqs) {
    const uint64_t need = r->dev_newer & seqs;
    if (!need || !r->dev_pull) return 0;
    if (r->dev_pull(r->dev_ud, need)) {
        mr_preerr("recurrent state from the device");
        return -1;
    }
    r->dev_newer &= ~need;
    return 0;
}

/* Sequence s's host slots were overwritten: they are the state now. */
static void host_wrote(kv_rec *r, int s) {
    r->dev_newer &= ~seq_bit(s);
    r->host_newer |= seq_bit(s);
}

void kv_rec_reset(kv_rec *r, int seq) {
    for (int s = seq < 0 ? 0 : seq; s < (seq < 0 ? r->n_seq : seq + 1); s++) host_wrote(r, s);
    for (int s = seq < 0 ? 0 : seq; s < (seq < 0 ? r->n_seq : seq + 1); s++)
        for (int i = 0; i < KV_REC_CKPT; i++) r->ckpt[(size_t)s * KV_REC_CKPT + i].pos = -1;
    for (int il = 0; il < r->n_layer; il++) {
        if (!r->conv[il]) continue;
        if (seq < 0) {
            memset(r->conv[il], 0, sizeof(float) * r->conv_n * (size_t)r->n_seq);
            memset(r->ssm[il], 0, sizeof(float) * r->ssm_n * (size_t)r->n_seq);
        } else {
            memset(kv_rec_conv(r, il, seq), 0, sizeof(float) * r->conv_n);
            memset(kv_rec_ssm(r, il, seq), 0, sizeof(float) * r->ssm_n);
        }
    }
}

float *kv_rec_conv(const kv_rec *r, int il, int seq) { return r->conv[il] + r->conv_n * (size_t)seq; }
float *kv_rec_ssm(const kv_rec *r, int il, int seq) { return r->ssm[il] + r->ssm_n * (size_t)seq; }

/* Cells of sequence s: *n_all in total, *n_in with a position in [p0, p1). */
static void count_cells(const kv_cache *kv, int s, int p0, int p1, int *n_all, int *n_in) {
    *n_all = *n_in = 0;
    for (int c = 0; c < kv->n_hi; c++) {
        if (kv->pos[c] < 0 || !((kv->seq[c] >> s) & 1)) continue;
        (*n_all)++;
        if (kv->pos[c] >= p0 && (p1 < 0 || kv->pos[c] < p1)) (*n_in)++;
    }
}

/* Copy sequence seq's state into (to_ckpt) or out of checkpoint c. */
static void ckpt_copy(kv_rec *r, int seq, kv_rec_ckpt *c, bool to_ckpt) {
    float *p = c->data;
    for (int il = 0; il < r->n_layer; il++) {
        if (!r->conv[il]) continue;
        float *conv = kv_rec_conv(r, il, seq), *ssm = kv_rec_ssm(r, il, seq);
        if (to_ckpt) {
            memcpy(p, conv, sizeof(float) * r->conv_n);
            memcpy(p + r->conv_n, ssm, sizeof(float) * r->ssm_n);
        } else {
            memcpy(conv, p, sizeof(float) * r->conv_n);
            memcpy(ssm, p + r->conv_n, sizeof(float) * r->ssm_n);
        }
        p += r->conv_n + r->ssm_n;
    }
    c->used = ++r->clock;
}

/* Sequence seq's checkpoint at length pos, or NULL. */
static kv_rec_ckpt *ckpt_find(kv_rec *r, int seq, int pos) {
    for (int i = 0; i < KV_REC_CKPT; i++) {
        kv_rec_ckpt *c = &r->ckpt[(size_t)seq * KV_REC_CKPT + i];
        if (c->pos >= 0 && c->pos == pos) return c;
    }
    return NULL;
}

int kv_rec_checkpoint(kv_cache *kv, int seq) {
    kv_rec *r = kv->rec;
    const int pos = kv_seq_pos_max(kv, seq) + 1;
    if (pos == 0) return 0; /* empty: rewinding to 0 is removing the whole sequence */
    if (kv_rec_sync_host(r, seq_bit(seq))) return -1;
    kv_rec_ckpt *c = ckpt_find(r, seq, pos);
    for (int i = 0; i < KV_REC_CKPT && !c; i++) /* a free slot, else the least recently used */
        if (r->ckpt[(size_t)seq * KV_REC_CKPT + i].pos < 0) c = &r->ckpt[(size_t)seq * KV_REC_CKPT + i];
    for (int i = 0; i < KV_REC_CKPT && !c; i++) {
        kv_rec_ckpt *x = &r->ckpt[(size_t)seq * KV_REC_CKPT + i];
        if (!c || x->used < c->used) c = x;
    }
    if (!c->data) {
        size_t n = 0;
        for (int il = 0; il < r->n_layer; il++)
            if (r->conv[il]) n += r->conv_n + r->ssm_n;
        if (!(c->data = mr_malloc_aligned(sizeof(float) * (n ? n : 1)))) {
            mr_preerr("checkpoint of sequence %d", seq);
            return -1;
        }
    }
    ckpt_copy(r, seq, c, true);
    c->pos = pos;
    return 0;
}

int kv_rec_seq_rm(kv_cache *kv, int seq, int p0, int p1) {
    if (p0 < 0) p0 = 0;
    kv_rec *r = kv->rec;
    const int s0 = seq < 0 ? 0 : seq, s1 = seq < 0 ? kv->n_seq_max : seq + 1;
    for (int s = s0; s < s1; s++) {
        int n_all, n_in, n_tail, n_tmp;
        count_cells(kv, s, p0, p1, &n_all, &n_in);
        if (n_in == 0 || n_in == n_all) continue;
        count_cells(kv, s, p0, -1, &n_tmp, &n_tail);
        if (n_tail != n_in) {
            mr_seterr("sequence %d: removing positions [%d, %d) would keep cells on both sides of the range, but "
                      "this model's recurrent (delta-net) state can only be rewound by cutting a tail back to a "
                      "checkpoint (mr_kv_seq_checkpoint)", s, p0, p1);
            return -1;
        }
        if (!ckpt_find(r, s, p0)) {
            mr_seterr("sequence %d: removing positions [%d, %d) would keep only part of it, but this model's "
                      "recurrent (delta-net) state cannot be rewound to position %d: no checkpoint there "
                      "(mr_kv_seq_checkpoint after decoding up to it); remove the whole sequence instead",
                      s, p0, p1, p0);
            return -1;
        }
    }
    for (int s = s0; s < s1; s++) { /* a reset or a checkpoint overwrites the slots: no pull */
        int n_all, n_in;
        count_cells(kv, s, p0, p1, &n_all, &n_in);
        if (n_in == 0) continue;
        host_wrote(r, s);
        if (n_in == n_all) {
            kv_rec_reset(r, s);
            continue;
        }
        ckpt_copy(r, s, ckpt_find(r, s, p0), false);
        for (int i = 0; i < KV_REC_CKPT; i++)
            if (r->ckpt[(size_t)s * KV_REC_CKPT + i].pos > p0) r->ckpt[(size_t)s * KV_REC_CKPT + i].pos = -1;
    }
    return 0;
}

int kv_rec_seq_cp(kv_cache *kv, int src, int dst, int p0, int p1) {
    if (src == dst) return 0;
    int n_all, n_in;
    count_cells(kv, src, p0 < 0 ? 0 : p0, p1, &n_all, &n_in);
    if (n_in != n_all) {
        mr_seterr("copying positions [%d, %d) of sequence %d copies only part of it, but this model's recurrent "
                  "(delta-net) state belongs to the whole sequence; copy the whole sequence", p0, p1, src);
        return -1;
    }
    kv_rec *r = kv->rec;
    if (kv_rec_sync_host(r, seq_bit(src))) return -1;
    host_wrote(r, dst);
    for (int i = 0; i < KV_REC_CKPT; i++) r->ckpt[(size_t)dst * KV_REC_CKPT + i].pos = -1;
    for (int il = 0; il < r->n_layer; il++) {
        if (!r->conv[il]) continue;
        memcpy(kv_rec_conv(r, il, dst), kv_rec_conv(r, il, src), sizeof(float) * r->conv_n);
        memcpy(kv_rec_ssm(r, il, dst), kv_rec_ssm(r, il, src), sizeof(float) * r->ssm_n);
    }
    return 0;
}

int kv_rec_check_batch(const kv_cache *kv, int n, const int32_t *pos, const int32_t *seq) {
    int next[KV_MAX_SEQ];
    for (int s = 0; s < KV_MAX_SEQ; s++) next[s] = INT_MIN;
    for (int i = 0; i < n; i++) {
        const int s = seq[i];
        if (next[s] == INT_MIN) next[s] = kv_seq_pos_max(kv, s) + 1;
        if (pos[i] != next[s]) {
            mr_seterr("batch index %d: sequence %d must continue at position %d (got %d): this model's recurrent "
                      "(delta-net) state only moves forward one position at a time",
                      i, s, next[s], pos[i]);
            return -1;
        }
        next[s]++;
    }
    return 0;
}
