/*
 * engine_util.h — helpers of the engine tests: a context with the given
 * sizes, the relative difference of two logit rows, and decoding a prompt on
 * one sequence. Shared by test_engine.c and test_qwen3next.c.
 */
#ifndef MR_ENGINE_UTIL_H
#define MR_ENGINE_UTIL_H
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "moerun.h"

static mr_ctx *ctx(mr_model *m, int n_ctx, int nb, int nub, int nseq, int fa) {
    mr_ctx_params cp = mr_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = nb;
    cp.n_ubatch = nub;
    cp.n_seq_max = nseq;
    cp.n_threads = 2;
    cp.flash_attn = fa;
    mr_ctx *c = mr_ctx_new(m, &cp);
    CHECK(c != NULL, "ctx: %s", mr_last_error());
    return c;
}

/* max |a - b| / max(1, max |a|) */
static double rel_diff(const float *a, const float *b, int n) {
    double d = 0, mx = 1;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        mx = fmax(mx, fabs((double)a[i]));
    }
    return d / mx;
}

/* Decode toks[0..n) on seq with all logits; copy the last token's logits. */
static int run_prompt(mr_ctx *c, const mr_token *toks, int n, int seq, int pos0, float *last, int V) {
    int32_t *pos = malloc(sizeof(int32_t) * n), *sq = malloc(sizeof(int32_t) * n);
    for (int i = 0; i < n; i++) {
        pos[i] = pos0 + i;
        sq[i] = seq;
    }
    mr_batch b = {.n_tokens = n, .token = toks, .pos = pos, .seq = sq};
    int rc = mr_decode(c, &b);
    if (!rc && last) memcpy(last, mr_get_logits(c, n - 1), sizeof(float) * V);
    free(pos);
    free(sq);
    return rc;
}

#endif
