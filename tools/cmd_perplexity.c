/*
 * cmd_perplexity.c — `moerun perplexity -m MODEL -f TEXT [-c N] [-b N] [--chunks N]`:
 * perplexity of a text with llama.cpp's method (examples/perplexity):
 *
 *  - the whole text is tokenized once (BOS added as the vocabulary says);
 *  - it is cut into chunks of n_ctx tokens (a remainder shorter than n_ctx is
 *    not used); each chunk is decoded from an empty cache, in batches of
 *    n_batch, with its first token replaced by BOS when the vocabulary adds one;
 *  - the first half of each chunk is context only: the logits at positions
 *    first = n_ctx/2 .. n_ctx-2 are scored against the next token, so
 *    n_ctx - first - 1 tokens per chunk;
 *  - after each chunk the running PPL = exp(mean NLL) is printed as "[i]ppl,";
 *    at the end "Final estimate: PPL = X +/- SE" with SE = PPL * sqrt(var(NLL) /
 *    (count - 1)), var taken over all scored tokens.
 *
 * The text must hold at least 2 * n_ctx tokens. -c defaults to 512 here.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base/base.h"
#include "gen.h"
#include "moerun.h"

typedef struct {
    int n_chunks; /* --chunks, -1 = all */
} ppl_opts;

static int ppl_flag(void *ud, int argc, char **argv, int *i) {
    ppl_opts *o = ud;
    if (!strcmp(argv[*i], "--chunks")) {
        const char *v = args_value(argc, argv, i);
        return v && args_int("--chunks", v, -1, 1 << 24, &o->n_chunks) == 0 ? 1 : -1;
    }
    return 0;
}

/* -log p(tok) under softmax(logits). */
static double nll_of(const float *logits, int n_vocab, mr_token tok) {
    float mx = logits[0];
    for (int i = 1; i < n_vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
    double s = 0;
    for (int i = 0; i < n_vocab; i++) s += exp((double)logits[i] - mx);
    return -((double)logits[tok] - mx - log(s));
}

int cmd_perplexity(int argc, char **argv) {
    ppl_opts o = {.n_chunks = -1};
    const args_cmd cmd = {"perplexity", "-m MODEL -f TEXT [-c N] [-b N] [options]",
                          "  --chunks N                         score at most N chunks (default: all)\n",
                          ppl_flag, &o};
    mr_args a;
    args_init(&a);
    a.ctx.n_ctx = 512;
    int rc = args_parse(&a, argc, argv, ARGS_MODEL | ARGS_CTX | ARGS_PROMPT, &cmd);
    if (rc >= 0) {
        args_free(&a);
        return rc;
    }
    if (!a.model.path) {
        args_free(&a);
        return args_error(&cmd, "no model: give -m FILE");
    }
    if (a.ctx.n_ctx < 4) {
        args_free(&a);
        return args_error(&cmd, "-c must be at least 4 for perplexity (got %d)", a.ctx.n_ctx);
    }
    char *text = args_prompt_text(&a, &cmd);
    if (!text) {
        args_free(&a);
        return 2;
    }
    int ret = 1;
    mr_model *m = NULL;
    mr_ctx *c = NULL;
    mr_token *toks = NULL;
    int8_t *want = NULL;
    int32_t *pos = NULL;

    m = mr_model_load(&a.model);
    if (!m) {
        fprintf(stderr, "moerun perplexity: %s\n", mr_geterr());
        goto done;
    }
    int n_tok = 0;
    double t0 = mr_time_s();
    toks = gen_tokenize(m, text, true, false, &n_tok);
    if (!toks) {
        fprintf(stderr, "moerun perplexity: tokenizing: %s\n", mr_geterr());
        goto done;
    }
    fprintf(stderr, "moerun perplexity: tokenized %d tokens in %.3f s\n", n_tok, mr_time_s() - t0);
    c = mr_ctx_new(m, &a.ctx);
    if (!c) {
        fprintf(stderr, "moerun perplexity: %s\n", mr_geterr());
        goto done;
    }
    int n_ctx = mr_ctx_n_ctx(c);
    if (n_tok < 2 * n_ctx) {
        fprintf(stderr,
                "moerun perplexity: the text has %d tokens; at least %d (2 x the context of %d) are needed "
                "(use a longer text or a smaller -c)\n",
                n_tok, 2 * n_ctx, n_ctx);
        goto done;
    }
    int n_chunk = n_tok / n_ctx;
    if (o.n_chunks >= 0 && o.n_chunks < n_chunk) n_chunk = o.n_chunks;
    int n_batch = MR_MIN(a.ctx.n_batch > 0 ? a.ctx.n_batch : 2048, n_ctx);
    int n_vocab = mr_n_vocab(m), first = n_ctx / 2;
    bool add_bos = mr_add_bos(m) && mr_token_bos(m) >= 0;
    want = malloc((size_t)n_batch);
    pos = malloc(sizeof *pos * (size_t)n_batch);
    if (!want || !pos) {
        fprintf(stderr, "moerun perplexity: out of memory\n");
        goto done;
    }
    fprintf(stderr, "moerun perplexity: %d chunks of %d tokens, batch %d, scoring %d tokens per chunk\n", n_chunk,
            n_ctx, n_batch, n_ctx - first - 1);

    double nll = 0, nll2 = 0;
    long long count = 0;
    double t_start = mr_time_s();
    for (int ch = 0; ch < n_chunk; ch++) {
        int start = ch * n_ctx;
        mr_kv_clear(c);
        for (int j = 0; j < n_ctx; j += n_batch) {
            int nb = MR_MIN(n_batch, n_ctx - j);
            mr_token org = toks[start + j];
            if (add_bos && j == 0) toks[start] = mr_token_bos(m);
            int n_want = 0;
            for (int k = 0; k < nb; k++) {
                int p = j + k;
                pos[k] = p;
                want[k] = (int8_t)(p >= first && p < n_ctx - 1);
                n_want += want[k];
            }
            mr_batch b = {.n_tokens = nb, .token = toks + start + j, .pos = pos, .seq = NULL,
                          .logits = n_want ? want : NULL};
            int drc = mr_decode(c, &b);
            toks[start + j] = org;
            if (drc != 0) {
                fprintf(stderr, "\nmoerun perplexity: chunk %d: %s\n", ch + 1, mr_geterr());
                goto done;
            }
            if (!n_want) continue;
            for (int k = 0; k < nb; k++) {
                if (!want[k]) continue;
                const float *lg = mr_get_logits(c, k);
                if (!lg) {
                    fprintf(stderr, "\nmoerun perplexity: chunk %d: no logits at position %d\n", ch + 1, j + k);
                    goto done;
                }
                double v = nll_of(lg, n_vocab, toks[start + j + k + 1]);
                nll += v;
                nll2 += v * v;
                count++;
            }
        }
        if (ch == 0) {
            double t = mr_time_s() - t_start;
            fprintf(stderr, "moerun perplexity: %.2f s per pass, about %.1f min for %d chunks\n", t,
                    t * n_chunk / 60.0, n_chunk);
        }
        printf("[%d]%.4f,", ch + 1, exp(nll / (double)count));
        fflush(stdout);
    }
    printf("\n");
    double mean = nll / (double)count, ppl = exp(mean);
    double var = nll2 / (double)count - mean * mean;
    if (var > 0 && count > 1) {
        double se = sqrt(var / (double)(count - 1)) * ppl;
        printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, se);
    } else {
        printf("Final estimate: PPL = %.4f\n", ppl);
    }
    double tt = mr_time_s() - t_start;
    fprintf(stderr, "moerun perplexity: %lld tokens scored, %d decoded in %.2f s (%.2f t/s)\n", count,
            n_chunk * n_ctx, tt, tt > 0 ? n_chunk * n_ctx / tt : 0.0);
    ret = 0;

done:
    free(want);
    free(pos);
    free(toks);
    free(text);
    mr_ctx_free(c);
    mr_model_free(m);
    args_free(&a);
    return ret;
}
