/*
 * kv.c — KV cache cells and storage (see kv.h).
 */
#include "model/kv.h"

#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cpu/attn.h"
#include "model/delta_net.h"
#include "quant/quant.h"

kv_cache *kv_new(const mr_model *m, int n_ctx, uint32_t type_k, uint32_t type_v, int n_seq_max) {
    return kv_new_ex(m, n_ctx, type_k, type_v, n_seq_max, NULL);
}

kv_cache *kv_new_ex(const mr_model *m, int n_ctx, uint32_t type_k, uint32_t type_v, int n_seq_max,
                    const int8_t *layer_dev) {
    if (type_k != MR_TYPE_F32 && type_k != MR_TYPE_F16 && type_k != MR_TYPE_Q8_0 && type_k != MR_TYPE_Q4_0) {
        mr_seterr("KV cache: type_k %s is not supported (f32, f16, q8_0, q4_0)", mr_type_name(type_k));
        return NULL;
    }
    if (type_v != MR_TYPE_F32 && type_v != MR_TYPE_F16 && type_v != MR_TYPE_Q8_0 && type_v != MR_TYPE_Q4_0) {
        mr_seterr("KV cache: type_v %s is not supported (f32, f16, q8_0, q4_0)", mr_type_name(type_v));
        return NULL;
    }
    if (n_ctx < 1 || n_seq_max < 1 || n_seq_max > KV_MAX_SEQ) {
        mr_seterr("KV cache: n_ctx %d / n_seq_max %d out of range (n_seq_max <= %d)", n_ctx, n_seq_max, KV_MAX_SEQ);
        return NULL;
    }
    kv_cache *kv = mr_calloc(1, sizeof *kv);
    if (!kv) return NULL;
    const int L = m->hp.n_layer;
    kv->n_ctx = n_ctx;
    kv->n_layer = L;
    kv->n_seq_max = n_seq_max;
    kv->type_k = type_k;
    kv->type_v = type_v;
    kv->k = mr_calloc((size_t)L, sizeof(uint8_t *));
    kv->v = mr_calloc((size_t)L, sizeof(uint8_t *));
    kv->k_row = mr_calloc((size_t)L, sizeof(size_t));
    kv->tiled = mr_calloc((size_t)L, sizeof(bool));
    kv->n_pad = cpu_attn_tiled_cells(n_ctx);
    kv->v_row = mr_calloc((size_t)L, sizeof(size_t));
    kv->pos = mr_malloc(sizeof(int32_t) * (size_t)n_ctx);
    kv->seq = mr_calloc((size_t)n_ctx, sizeof(uint64_t));
    if (!kv->k || !kv->v || !kv->k_row || !kv->v_row || !kv->tiled || !kv->pos || !kv->seq) goto fail;
    for (int c = 0; c < n_ctx; c++) kv->pos[c] = -1;
    const uint32_t bk = mr_type_get(type_k)->blck, bv = mr_type_get(type_v)->blck;
    /* one arena for every host layer's K and V, in huge pages: a decode step at depth scans all
     * of it, and with 4 KiB pages each 136-byte q8_0 row of a new page costs a TLB walk */
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t off = 0;
        for (int il = 0; il < L; il++) {
            const model_layer *ly = &m->layers[il];
            if (ly->kv_heads == 0) continue; /* recurrent layer: state in kv->rec */
            if (ly->kv_dk % (int)bk || (!ly->kv_v_in_k && ly->kv_dv % (int)bv)) {
                mr_seterr("KV cache: layer %d head sizes k %d / v %d are not multiples of the block size of %s / %s",
                          il, ly->kv_dk, ly->kv_dv, mr_type_name(type_k), mr_type_name(type_v));
                goto fail;
            }
            kv->k_row[il] = mr_row_size(type_k, ly->kv_dk);
            if (!ly->kv_v_in_k) kv->v_row[il] = mr_row_size(type_v, ly->kv_dv);
            if (layer_dev && layer_dev[il] >= 0) continue; /* K/V on the layer's device (forward_gpu.c) */
            kv->tiled[il] = cpu_attn_tiled_ok(ly->n_head, ly->kv_heads, ly->kv_dk, ly->kv_dv, type_k, type_v, ly->kv_v_in_k);
            const size_t kb = kv->k_row[il] * (size_t)kv_stride(kv, il) * (size_t)ly->kv_heads;
            const size_t vb = kv->v_row[il] * (size_t)kv_stride(kv, il) * (size_t)ly->kv_heads; /* 0 with V in K */
            if (pass) {
                kv->k[il] = kv->arena + off;
                if (vb) kv->v[il] = kv->arena + off + (kb + 63) / 64 * 64;
            }
            off += (kb + 63) / 64 * 64 + (vb + 63) / 64 * 64;
        }
        if (!pass) {
            total = off;
            if (total && !(kv->arena = mr_calloc_huge(total))) goto fail;
        }
    }
    if (model_is_recurrent(m) && !(kv->rec = kv_rec_new(m, n_seq_max))) goto fail;
    return kv;
fail:
    mr_preerr("KV cache (%d cells)", n_ctx);
    kv_free(kv);
    return NULL;
}

void kv_free(kv_cache *kv) {
    if (!kv) return;
    mr_free_aligned(kv->arena);
    free(kv->tiled);
    free(kv->k);
    free(kv->v);
    free(kv->k_row);
    free(kv->v_row);
    free(kv->pos);
    free(kv->seq);
    kv_rec_free(kv->rec);
    free(kv);
}

int kv_free_cells(const kv_cache *kv) { return kv->n_ctx - kv->used; }

static void update_hi(kv_cache *kv) {
    while (kv->n_hi > 0 && kv->pos[kv->n_hi - 1] < 0) kv->n_hi--;
}

int kv_alloc(kv_cache *kv, int n, const int32_t *pos, const int32_t *seq, int32_t *cells) {
    if (n > kv->n_ctx - kv->used) return -1;
    int c = 0;
    for (int i = 0; i < n; i++) {
        while (kv->pos[c] >= 0) c++;
        kv->pos[c] = pos[i];
        kv->seq[c] = 1ull << seq[i];
        cells[i] = c;
        if (c + 1 > kv->n_hi) kv->n_hi = c + 1;
    }
    kv->used += n;
    return 0;
}

static inline bool in_range(int32_t p, int p0, int p1) { return p >= p0 && (p1 < 0 || p < p1); }

void kv_seq_rm(kv_cache *kv, int seq, int p0, int p1) {
    if (p0 < 0) p0 = 0;
    for (int c = 0; c < kv->n_hi; c++) {
        if (kv->pos[c] < 0 || !in_range(kv->pos[c], p0, p1)) continue;
        if (seq < 0) kv->seq[c] = 0;
        else kv->seq[c] &= ~(1ull << seq);
        if (!kv->seq[c]) {
            kv->pos[c] = -1;
            kv->used--;
        }
    }
    update_hi(kv);
}

void kv_seq_cp(kv_cache *kv, int src, int dst, int p0, int p1) {
    if (src == dst) return;
    if (p0 < 0) p0 = 0;
    for (int c = 0; c < kv->n_hi; c++)
        if (kv->pos[c] >= 0 && ((kv->seq[c] >> src) & 1) && in_range(kv->pos[c], p0, p1))
            kv->seq[c] |= 1ull << dst;
}

void kv_clear(kv_cache *kv) {
    for (int c = 0; c < kv->n_ctx; c++) {
        kv->pos[c] = -1;
        kv->seq[c] = 0;
    }
    kv->used = 0;
    kv->n_hi = 0;
    if (kv->rec) kv_rec_reset(kv->rec, -1);
}

int kv_seq_pos_max(const kv_cache *kv, int seq) {
    int mx = -1;
    for (int c = 0; c < kv->n_hi; c++)
        if (kv->pos[c] >= 0 && ((kv->seq[c] >> seq) & 1) && kv->pos[c] > mx) mx = kv->pos[c];
    return mx;
}
