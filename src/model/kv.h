/*
 * kv.h — the KV cache: n_ctx cells shared by all sequences.
 *
 * A cell holds one token's keys and values for every layer, its position and
 * the set of sequences it belongs to (a bitmask: mr_kv_seq_cp shares cells
 * between sequences without copying data). Storage per layer is one (n_ctx,
 * dk) matrix per KV head in type_k (and likewise for V), the layout
 * cpu_attn_head reads (cpu/attn.h), or for a layer that takes it
 * (cpu_attn_tiled_ok: q8_0 K and V, 8 query heads a KV head, AVX-512 VNNI) the
 * tiled q8_0 layout of cpu/attn.h, n_pad cells a KV head (model_kv_write
 * stores rows into the tiles). Cells are handed out lowest-free first,
 * so a sequence's cells need not be contiguous; attention masks by (pos, seq).
 */
#ifndef MR_KV_H
#define MR_KV_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"

#define KV_MAX_SEQ 64

typedef struct {
    int n_ctx, n_layer, n_seq_max;
    uint32_t type_k, type_v;
    uint8_t **k, **v;   /* per layer: [kv_heads][n_ctx] rows, slices of arena */
    uint8_t *arena;     /* all host layers' K and V (mr_calloc_huge) */
    size_t *k_row, *v_row; /* per layer: bytes of one row (one cell, one head) */
    bool *tiled;        /* per layer: K and V in the tiled q8_0 layout (cpu/attn.h), n_pad cells a KV head */
    int n_pad;          /* n_ctx rounded up to CPU_ATTN_TILE */
    int32_t *pos;       /* per cell, -1 when free */
    uint64_t *seq;      /* per cell, bit s = member of sequence s */
    int used;           /* cells in use */
    int n_hi;           /* 1 + highest cell in use (attention scans [0, n_hi)) */
    struct kv_rec *rec; /* recurrent (delta-net) state per sequence, NULL unless model_is_recurrent
                           (model/delta_net.h; layers without KV heads have no K/V storage) */
} kv_cache;

/* The cell stride of layer il's KV heads (n_ctx, or n_pad for a tiled layer). */
static inline int kv_stride(const kv_cache *kv, int il) { return kv->tiled[il] ? kv->n_pad : kv->n_ctx; }

/* Allocate the cache for model m. type_k/type_v: F32, F16, Q8_0 or Q4_0 (the
 * head sizes must be multiples of the block size). NULL with an error. */
kv_cache *kv_new(const mr_model *m, int n_ctx, uint32_t type_k, uint32_t type_v, int n_seq_max);
/* The same, without host storage for the layers with layer_dev[il] >= 0 (their K/V live on
 * that GPU device; only the cells' positions and sequences are kept here). */
kv_cache *kv_new_ex(const mr_model *m, int n_ctx, uint32_t type_k, uint32_t type_v, int n_seq_max,
                    const int8_t *layer_dev);
void kv_free(kv_cache *kv);
int kv_free_cells(const kv_cache *kv);
/* Take n free cells for tokens (pos[i], seq[i]) and record them: cells[i].
 * -1 (nothing taken) when fewer than n cells are free. */
int kv_alloc(kv_cache *kv, int n, const int32_t *pos, const int32_t *seq, int32_t *cells);
/* Sequence operations (seq < 0: all sequences; p1 < 0: to the end). */
void kv_seq_rm(kv_cache *kv, int seq, int p0, int p1);
void kv_seq_cp(kv_cache *kv, int src, int dst, int p0, int p1);
void kv_clear(kv_cache *kv);
int kv_seq_pos_max(const kv_cache *kv, int seq);

#endif
