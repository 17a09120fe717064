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
    if (!r->conv || !r->ssm) goto fail;
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
    free(r);
}

void kv_rec_reset(kv_rec *r, int seq) {
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

int kv_rec_seq_rm(kv_cache *kv, int seq, int p0, int p1) {
    if (p0 < 0) p0 = 0;
    const int s0 = seq < 0 ? 0 : seq, s1 = seq < 0 ? kv->n_seq_max : seq + 1;
    for (int s = s0; s < s1; s++) {
        int n_all, n_in;
        count_cells(kv, s, p0, p1, &n_all, &n_in);
        if (n_in > 0 && n_in < n_all) {
            mr_seterr("sequence %d: removing positions [%d, %d) would keep only part of it, but this model's "
                      "recurrent (delta-net) state cannot be rewound; remove the whole sequence instead",
                      s, p0, p1);
            return -1;
        }
    }
    for (int s = s0; s < s1; s++) {
        int n_all, n_in;
        count_cells(kv, s, p0, p1, &n_all, &n_in);
        if (n_in == n_all) kv_rec_reset(kv->rec, s);
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
    const kv_rec *r = kv->rec;
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
