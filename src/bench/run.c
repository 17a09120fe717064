/*
 * run.c — the decode loops the benches time: a prompt as batches of n_batch
 * tokens, and generation one token per mr_decode, on sequence 0 at explicit
 * positions. Token ids come from bench_random_tokens (stats.c): pseudo-random
 * but fixed, as no sampling is needed to measure speed.
 */
#include <stdlib.h>

#include "base/base.h"
#include "bench/bench.h"

int bench_decode_prompt(mr_ctx *c, const mr_token *toks, int n, int pos0, int n_batch) {
    if (n_batch < 1) n_batch = 2048;
    int32_t *pos = mr_malloc((size_t)MR_MIN(n, n_batch) * sizeof *pos + 1);
    if (!pos) return -1;
    int rc = 0;
    for (int i = 0; i < n && !rc; i += n_batch) {
        int k = MR_MIN(n_batch, n - i);
        for (int j = 0; j < k; j++) pos[j] = pos0 + i + j;
        mr_batch b = {.n_tokens = k, .token = toks + i, .pos = pos, .seq = NULL, .logits = NULL};
        if (mr_decode(c, &b)) {
            mr_preerr("prompt batch at position %d (%d tokens)", pos0 + i, k);
            rc = -1;
        }
    }
    free(pos);
    return rc;
}

int bench_decode_gen(mr_ctx *c, const mr_token *toks, int n, int pos0) {
    for (int i = 0; i < n; i++) {
        int32_t pos = pos0 + i;
        mr_batch b = {.n_tokens = 1, .token = toks + i, .pos = &pos, .seq = NULL, .logits = NULL};
        if (mr_decode(c, &b)) {
            mr_preerr("generation at position %d", pos);
            return -1;
        }
    }
    return 0;
}
