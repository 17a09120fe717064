/*
 * ab_worker.c — what the `moerun ab` worker child measures in-process on a
 * loaded model: a workload (prompt processing, time to first token,
 * generation, over one or more chat turns that reuse the cached prefix) and
 * the perplexity of a text with the optional KL divergence against the
 * baseline config's log-probabilities.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ab/ab.h"
#include "base/base.h"

/* Tokenize into a malloc'd array. NULL on error. */
static mr_token *tokenize(const mr_model *m, const char *text, bool add_special, bool parse_special, int *n) {
    size_t len = strlen(text);
    int cap = (int)MR_MIN(len + 16, (size_t)1 << 28);
    mr_token *t = mr_malloc(sizeof *t * (size_t)cap);
    if (!t) return NULL;
    int k = mr_tokenize(m, text, len, t, cap, add_special, parse_special);
    if (k > cap) {
        mr_token *t2 = mr_realloc(t, sizeof *t * (size_t)k);
        if (!t2) {
            free(t);
            return NULL;
        }
        t = t2;
        k = mr_tokenize(m, text, len, t, k, add_special, parse_special);
    }
    if (k < 0) {
        free(t);
        return NULL;
    }
    *n = k;
    return t;
}

static mr_token argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* The conversation as one prompt text: the chat template when asked for and
 * available, otherwise the contents separated by blank lines. */
static char *render(const mr_model *m, const ab_workload *w, const mr_chat_msg *msgs, int n, bool *templated) {
    if (w->chat && *templated) {
        char *s = mr_chat_apply(m, NULL, msgs, n, true);
        if (s) return s;
        MR_WARN("ab: no usable chat template (%s); using the plain text of the turns", mr_geterr());
        *templated = false;
    }
    ab_buf b = {0};
    for (int i = 0; i < n; i++) ab_printf(&b, "%s%s", i ? "\n\n" : "", msgs[i].content);
    return ab_buf_take(&b);
}

/* "vram": the device memory the context held, when layers ran on a device (the report's VRAM). */
static void add_vram(json_t *o, const mr_ctx *c) {
    mr_ctx_offload_info oi;
    mr_ctx_get_offload(c, &oi);
    if (o && (oi.n_layers_dev > 0 || oi.output_dev)) json_object_set_new(o, "vram", json_integer((json_int_t)oi.dev_bytes));
}

int ab_run_workload(mr_model *m, const mr_ctx_params *cp, const ab_workload *w, json_t **out) {
    *out = NULL;
    int ret = -1, n_vocab = mr_n_vocab(m);
    mr_ctx *c = mr_ctx_new(m, cp);
    mr_chat_msg *msgs = mr_calloc((size_t)(2 * w->n_turns + 1), sizeof *msgs);
    char **replies = mr_calloc((size_t)w->n_turns + 1, sizeof *replies);
    mr_token *cached = NULL, *gen = NULL;
    int n_cached = 0;
    if (!c || !msgs || !replies) goto done;
    int n_ctx = mr_ctx_n_ctx(c), nm = 0;
    gen = mr_malloc(sizeof *gen * (size_t)(w->n_predict + 1));
    cached = mr_malloc(sizeof *cached * (size_t)n_ctx);
    if (!gen || !cached) goto done;
    if (w->system) msgs[nm++] = (mr_chat_msg){"system", w->system};
    bool templated = true;
    double t_pp = 0, t_tg = 0, ttft = NAN;
    long long n_pp = 0, n_tg = 0;
    json_t *turns = json_array();
    int n_batch = cp->n_batch > 0 ? cp->n_batch : 2048;
    for (int ti = 0; ti < w->n_turns; ti++) {
        msgs[nm++] = (mr_chat_msg){"user", w->turns[ti]};
        char *text = render(m, w, msgs, nm, &templated);
        int n_tok = 0;
        mr_token *toks = text ? tokenize(m, text, true, templated, &n_tok) : NULL;
        free(text);
        if (!toks) {
            mr_preerr("workload '%s' turn %d: tokenizing", w->name, ti + 1);
            json_decref(turns);
            goto done;
        }
        if (n_tok + w->n_predict > n_ctx) {
            mr_seterr("workload '%s' turn %d needs %d prompt + %d generated tokens; the context is %d (raise -c)",
                      w->name, ti + 1, n_tok, w->n_predict, n_ctx);
            free(toks);
            json_decref(turns);
            goto done;
        }
        /* reuse the longest common prefix with what is cached */
        int lcp = 0;
        while (lcp < n_cached && lcp < n_tok && cached[lcp] == toks[lcp]) lcp++;
        if (lcp == n_tok) lcp--; /* at least one token to decode for the logits */
        if (mr_kv_seq_rm(c, 0, lcp, -1) < 0) {
            free(toks);
            json_decref(turns);
            goto done;
        }
        double t0 = mr_time_s();
        for (int i = lcp; i < n_tok; i += n_batch) {
            int nb = MR_MIN(n_batch, n_tok - i);
            int32_t *pos = mr_malloc(sizeof *pos * (size_t)nb);
            if (!pos) {
                free(toks);
                json_decref(turns);
                goto done;
            }
            for (int k = 0; k < nb; k++) pos[k] = i + k;
            mr_batch b = {.n_tokens = nb, .token = toks + i, .pos = pos};
            int rc = mr_decode(c, &b);
            free(pos);
            if (rc < 0) {
                mr_preerr("workload '%s' turn %d: prompt", w->name, ti + 1);
                free(toks);
                json_decref(turns);
                goto done;
            }
        }
        double t1 = mr_time_s();
        memcpy(cached, toks, sizeof *toks * (size_t)n_tok);
        n_cached = n_tok;
        free(toks);
        /* generation: greedy, end-of-generation ignored so every run does the same work */
        int pos = n_cached;
        double t_first = NAN;
        for (int g = 0; g < w->n_predict; g++) {
            const float *lg = mr_get_logits(c, -1);
            if (!lg) {
                mr_seterr("workload '%s' turn %d: no logits", w->name, ti + 1);
                json_decref(turns);
                goto done;
            }
            mr_token t = argmax(lg, n_vocab);
            if (g == 0) t_first = mr_time_s();
            gen[g] = t;
            mr_batch b = {.n_tokens = 1, .token = &t, .pos = &pos};
            if (mr_decode(c, &b) < 0) {
                mr_preerr("workload '%s' turn %d: generation at position %d", w->name, ti + 1, pos);
                json_decref(turns);
                goto done;
            }
            cached[n_cached++] = t;
            pos++;
        }
        double t2 = mr_time_s();
        int n_new = n_tok - lcp;
        t_pp += t1 - t0;
        t_tg += t2 - t1;
        n_pp += n_new;
        n_tg += w->n_predict;
        double turn_ttft = isnan(t_first) ? NAN : (t_first - t0) * 1e3;
        if (ti == 0) ttft = turn_ttft;
        json_array_append_new(turns, json_pack("{s:i,s:i,s:i,s:f,s:f,s:f}", "n_prompt", n_tok, "n_new", n_new, "n_gen",
                                               w->n_predict, "t_pp_s", t1 - t0, "t_tg_s", t2 - t1, "ttft_ms",
                                               isnan(turn_ttft) ? 0.0 : turn_ttft));
        /* the reply text continues the conversation */
        int cap = w->n_predict * 32 + 16;
        char *rep = mr_malloc((size_t)cap);
        int k = rep ? mr_detokenize(m, gen, w->n_predict, rep, cap, false) : -1;
        if (!rep || k < 0 || k >= cap) {
            free(rep);
            rep = mr_strdup("...");
        } else rep[k] = 0;
        replies[ti] = rep;
        msgs[nm++] = (mr_chat_msg){"assistant", rep ? rep : ""};
    }
    *out = json_pack("{s:f,s:f,s:f,s:I,s:I,s:f,s:f,s:o,s:b}", "pp_tps", t_pp > 0 ? n_pp / t_pp : 0.0, "tg_tps",
                     t_tg > 0 ? n_tg / t_tg : 0.0, "ttft_ms", isnan(ttft) ? 0.0 : ttft, "n_prompt", (json_int_t)n_pp,
                     "n_gen", (json_int_t)n_tg, "t_pp_s", t_pp, "t_tg_s", t_tg, "turns", turns, "chat_template",
                     templated && w->chat);
    add_vram(*out, c);
    ret = *out ? 0 : -1;
done:
    if (replies)
        for (int i = 0; i < w->n_turns; i++) free(replies[i]);
    free(replies);
    free(msgs);
    free(gen);
    free(cached);
    mr_ctx_free(c);
    return ret;
}

/* log-softmax of logits into out (n floats). */
static void log_softmax(const float *x, int n, float *out) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    double ls = log(s) + mx;
    for (int i = 0; i < n; i++) out[i] = (float)(x[i] - ls);
}

int ab_run_perplexity(mr_model *m, const mr_ctx_params *cp, const char *text, int n_chunks, FILE *logits_out,
                      FILE *base_logits, json_t **out) {
    *out = NULL;
    int ret = -1, n_tok = 0, n_vocab = mr_n_vocab(m);
    mr_ctx *c = NULL;
    int8_t *want = NULL;
    int32_t *pos = NULL;
    float *lp = NULL, *bp = NULL;
    mr_token *toks = tokenize(m, text, true, false, &n_tok);
    if (!toks) goto done;
    c = mr_ctx_new(m, cp);
    if (!c) goto done;
    int n_ctx = mr_ctx_n_ctx(c);
    if (n_tok < 2 * n_ctx) {
        mr_seterr("perplexity: the text has %d tokens; at least %d (2 x the context of %d) are needed", n_tok,
                  2 * n_ctx, n_ctx);
        goto done;
    }
    int n_chunk = n_tok / n_ctx;
    if (n_chunks > 0 && n_chunks < n_chunk) n_chunk = n_chunks;
    int n_batch = MR_MIN(cp->n_batch > 0 ? cp->n_batch : 2048, n_ctx), first = n_ctx / 2;
    bool add_bos = mr_add_bos(m) && mr_token_bos(m) >= 0;
    want = mr_malloc((size_t)n_batch);
    pos = mr_malloc(sizeof *pos * (size_t)n_batch);
    lp = mr_malloc(sizeof *lp * (size_t)n_vocab);
    bp = base_logits ? mr_malloc(sizeof *bp * (size_t)n_vocab) : NULL;
    if (!want || !pos || !lp || (base_logits && !bp)) goto done;
    double nll = 0, nll2 = 0, kl = 0, kl_max = 0;
    long long count = 0;
    double t0 = mr_time_s();
    for (int ch = 0; ch < n_chunk; ch++) {
        int start = ch * n_ctx;
        mr_kv_clear(c);
        for (int j = 0; j < n_ctx; j += n_batch) {
            int nb = MR_MIN(n_batch, n_ctx - j), n_want = 0;
            mr_token org = toks[start + j];
            if (add_bos && j == 0) toks[start] = mr_token_bos(m);
            for (int k = 0; k < nb; k++) {
                pos[k] = j + k;
                want[k] = (int8_t)(j + k >= first && j + k < n_ctx - 1);
                n_want += want[k];
            }
            mr_batch b = {.n_tokens = nb, .token = toks + start + j, .pos = pos, .logits = n_want ? want : NULL};
            int rc = mr_decode(c, &b);
            toks[start + j] = org;
            if (rc < 0) {
                mr_preerr("perplexity chunk %d", ch + 1);
                goto done;
            }
            for (int k = 0; k < nb && n_want; k++) {
                if (!want[k]) continue;
                const float *lg = mr_get_logits(c, k);
                if (!lg) {
                    mr_seterr("perplexity chunk %d: no logits at position %d", ch + 1, j + k);
                    goto done;
                }
                log_softmax(lg, n_vocab, lp);
                double v = -lp[toks[start + j + k + 1]];
                nll += v;
                nll2 += v * v;
                count++;
                if (logits_out && fwrite(lp, sizeof *lp, (size_t)n_vocab, logits_out) != (size_t)n_vocab) {
                    mr_seterr("writing log-probabilities: short write");
                    goto done;
                }
                if (bp) {
                    if (fread(bp, sizeof *bp, (size_t)n_vocab, base_logits) != (size_t)n_vocab) {
                        mr_seterr("the baseline's log-probabilities are shorter than this run's "
                                  "(different tokenizer, text or quality settings?)");
                        goto done;
                    }
                    double d = 0;
                    for (int i = 0; i < n_vocab; i++) {
                        double pb = exp((double)bp[i]);
                        if (pb > 0) d += pb * ((double)bp[i] - lp[i]);
                    }
                    if (d < 0) d = 0;
                    kl += d;
                    kl_max = MR_MAX(kl_max, d);
                }
            }
        }
    }
    double mean = nll / (double)count, ppl = exp(mean), var = nll2 / (double)count - mean * mean;
    double se = var > 0 && count > 1 ? sqrt(var / (double)(count - 1)) * ppl : 0;
    *out = json_pack("{s:f,s:f,s:I,s:i,s:i,s:f}", "ppl", ppl, "ppl_se", se, "n_scored", (json_int_t)count, "n_chunks",
                     n_chunk, "n_ctx", n_ctx, "t_s", mr_time_s() - t0);
    add_vram(*out, c);
    if (*out && bp) {
        json_object_set_new(*out, "kl", json_real(kl / (double)count));
        json_object_set_new(*out, "kl_max", json_real(kl_max));
    }
    ret = *out ? 0 : -1;
done:
    free(toks);
    free(want);
    free(pos);
    free(lp);
    free(bp);
    mr_ctx_free(c);
    return ret;
}
