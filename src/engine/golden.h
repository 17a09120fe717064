/*
 * golden.h — logits in the golden-fixture JSON shape (../shared/fixtures
 * README) and the comparison statistics of ../shared/tools/cmpgolden.py,
 * reimplemented exactly. Used by `moerun logits` and tests/unit/test_golden.c.
 */
#ifndef MR_GOLDEN_H
#define MR_GOLDEN_H

#include <jansson.h>
#include <stdint.h>

#include "moerun.h"

typedef struct {
    double top1, med, p80, kl;
} golden_stats;

/* Run tokens[0..n) through a fresh context with parameters cp (all positions'
 * logits), then n_greedy greedy tokens decoded one at a time through the KV
 * cache. Returns a JSON object {n_vocab, n_tokens, tokens, greedy,
 * greedy_margin, greedy_top (8 best per step), kv_type, top_k, top (top_k best
 * [id, logit] per prompt position)}, NULL with an error. If last_logits is
 * not NULL it receives a malloc'd copy of the last prompt position's logits. */
json_t *golden_run(mr_model *m, const mr_ctx_params *cp, const mr_token *tokens, int n, int n_greedy, int top_k,
                   float **last_logits);

/* cmpgolden.py's statistics of ours against ref (the reference first).
 * Returns 0, -1 when either lacks `top` or they have no position in common. */
int golden_compare(const json_t *ref, const json_t *ours, golden_stats *s);

/* Greedy check: tokens greedy[0..] up to (excluding) the first one whose
 * deciding reference margin is < min_margin (the last prompt position's
 * top-1 minus top-2 for greedy[0], greedy_margin[i-1] for greedy[i]), at most
 * cap tokens (cap <= 0: no cap). Returns the index of
 * the first mismatching step, or -1 when all checked steps match; *checked
 * receives the number of steps compared. */
int golden_greedy_check(const json_t *ref, const json_t *ours, double min_margin, int cap, int *checked);

/* The top k (id, logit) pairs of logits[0..n) in descending order. */
void golden_topk(const float *logits, int n, int k, int32_t *ids, float *vals);

#endif
