/*
 * delta_net.h — qwen3next's gated delta net: the recurrent state kept beside
 * the KV cache (per sequence), and the block kinds' forward entry points.
 *
 * Recurrent state (kv_rec): for every MODEL_ATTN_DELTA layer and every
 * sequence id in [0, n_seq_max), one slot holding
 *   conv: (d_conv - 1, C) floats, the last d_conv - 1 inputs of the causal
 *         convolution (C = 2*Hk*Sk + Hv*Sv channels), oldest first;
 *   ssm:  (Hv, Sv, Sk) floats, the delta-rule state of each value head (see
 *         cpu/delta.h for the row layout).
 * Slots are indexed by sequence id directly (no cell indirection): a token of
 * sequence s reads and advances slot s. A slot is all zeros when its
 * sequence is empty.
 *
 * Checkpoints: kv_rec_checkpoint saves a sequence's state (every layer's
 * conv and ssm slot) together with its length P = pos_max + 1; up to
 * KV_REC_CKPT are kept per sequence (the least recently used one replaced),
 * allocated on first use (one checkpoint is n_delta_layers * (conv_n +
 * ssm_n) floats).
 *
 * Sequence operations (the KV cells of the attention layers are managed by
 * kv.c as for any model; these keep the state consistent with them):
 *   - removing a whole sequence (every cell of it) zeroes its slot and drops
 *     its checkpoints;
 *   - removing the tail [P, end) of a sequence with a checkpoint at P
 *     restores that checkpoint (and drops the ones past P);
 *   - removing any other part of a sequence is an error (the state cannot be
 *     rewound), except a range that holds none of its cells (a no-op);
 *   - copying a sequence copies its slot; the range must cover every cell
 *     of the source (otherwise the cells and the state would disagree); the
 *     destination's checkpoints are dropped;
 *   - a batch must continue each of its sequences at pos_max + 1 with
 *     consecutive positions (kv_rec_check_batch).
 */
#ifndef MR_DELTA_NET_H
#define MR_DELTA_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/forward.h"
#include "model/kv.h"

#define KV_REC_CKPT 2 /* checkpoints kept per sequence */

typedef struct {
    int pos;       /* the sequence's length when saved; -1: empty */
    uint64_t used; /* last save or restore (kv_rec.clock) */
    float *data;   /* every delta layer's conv slot then ssm slot; NULL until first used */
} kv_rec_ckpt;

typedef struct kv_rec {
    int n_layer, n_seq;
    size_t conv_n, ssm_n; /* floats per (layer, sequence) */
    float **conv, **ssm;  /* per layer (NULL for other layer kinds): n_seq slots */
    kv_rec_ckpt *ckpt;    /* (n_seq, KV_REC_CKPT) */
    uint64_t clock;
    /* Layers that run on a device keep their state there (forward_gpu.c), and these host slots
     * are its copy for the sequence operations: dev_pull(dev_ud, seqs) brings the device state
     * of those layers for the sequences in the bit mask seqs into them. Per sequence (bit s):
     * dev_newer, a forward pass changed its device state since; host_newer, a sequence
     * operation changed its host slots since (the device uploads them before its next use). */
    int (*dev_pull)(void *ud, uint64_t seqs);
    void *dev_ud;
    uint64_t dev_newer, host_newer;
} kv_rec;

/* The state of model m for n_seq sequences (zeros). NULL with an error. */
kv_rec *kv_rec_new(const mr_model *m, int n_seq);
void kv_rec_free(kv_rec *r);
/* The host slots of the sequences in the bit mask seqs up to date with the device state
 * (dev_pull where dev_newer); 0, or -1 with an error. The sequence operations below that read
 * a slot call it first; those that overwrite one mark it host_newer. */
int kv_rec_sync_host(kv_rec *r, uint64_t seqs);
/* Zero sequence seq's slots and drop its checkpoints (seq < 0: all). */
void kv_rec_reset(kv_rec *r, int seq);
float *kv_rec_conv(const kv_rec *r, int il, int seq);
float *kv_rec_ssm(const kv_rec *r, int il, int seq);

/* Save sequence seq's state as a checkpoint at its current length (nothing
 * to do for an empty sequence). 0, or -1 with an error (allocation). */
int kv_rec_checkpoint(kv_cache *kv, int seq);
/* Before kv_seq_rm(kv, seq, p0, p1): check the removal is of whole sequences,
 * of a tail that starts at a checkpoint, or touches none of a sequence's
 * cells; zero the slots of sequences that lose all their cells and restore
 * the checkpoints of those cut back to one. 0, or -1 with an error (nothing
 * changed). */
int kv_rec_seq_rm(kv_cache *kv, int seq, int p0, int p1);
/* Around kv_seq_cp(kv, src, dst, p0, p1): the range must cover all of src's
 * cells; copies the slot. 0, or -1 with an error (nothing changed). */
int kv_rec_seq_cp(kv_cache *kv, int src, int dst, int p0, int p1);
/* Positions of a batch (n tokens, pos/seq per token) continue each sequence
 * at pos_max + 1, consecutively. 0, or -1 with an error. */
int kv_rec_check_batch(const kv_cache *kv, int n, const int32_t *pos, const int32_t *seq);

/* Scratch of the qwen3next block kinds, hung on model_run.rec (sized for
 * n_ub tokens). 0 / -1 with an error. No-op for other models. */
int model_delta_run_init(model_run *r);
void model_delta_run_free(model_run *r);

/* Block kinds (same contract as model_attn_gqa): xn (T, D) -> out (T, D). */
int model_attn_gated(model_run *r, const model_ubatch *ub, int il, const float *xn, float *out);
int model_attn_delta(model_run *r, const model_ubatch *ub, int il, const float *xn, float *out);

#endif
