/*
 * cmd_chat.c — `moerun chat -m MODEL [-sys TEXT] [--chat-template NAME] [options]`:
 * interactive multi-turn chat on stdin/stdout.
 *
 * Each turn the whole conversation is rendered with the chat template and
 * tokenized; the tokens that match the start of what the KV cache already
 * holds are kept, the rest of the cache is dropped, and only the new tokens
 * are decoded (normally the end of the last answer and the new user turn; a
 * template that rewrites history, like Qwen3 dropping past <think> blocks,
 * costs a re-decode from the first difference). Answers stream token by token.
 *
 * Keys: Enter sends a line; Ctrl-C stops the current answer (at the prompt
 * it only reminds how to quit); Ctrl-D (end of input) exits. Lines "/clear"
 * (forget the conversation) and "/exit" are commands. The prompt "> " is shown
 * only when stdin is a terminal.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "base/base.h"
#include "gen.h"
#include "moerun.h"

#define CHAT_GROUPS (ARGS_MODEL | ARGS_CTX | ARGS_NPREDICT | ARGS_SAMPLING | ARGS_CHAT)

typedef struct {
    mr_chat_msg *msgs; /* role points to a literal, content is owned */
    int n, cap;
} history;

static int hist_push(history *h, const char *role, const char *content) {
    if (h->n == h->cap) {
        int nc = h->cap ? h->cap * 2 : 16;
        mr_chat_msg *m = realloc(h->msgs, sizeof *m * (size_t)nc);
        if (!m) return -1;
        h->msgs = m;
        h->cap = nc;
    }
    char *c = strdup(content);
    if (!c) return -1;
    h->msgs[h->n++] = (mr_chat_msg){role, c};
    return 0;
}

static void hist_pop(history *h) {
    if (h->n > 0) free((char *)h->msgs[--h->n].content);
}

static void hist_clear(history *h, int keep) {
    while (h->n > keep) hist_pop(h);
}

/* Growing byte buffer for the answer text. */
typedef struct {
    char *p;
    size_t n, cap;
} buf;

static void buf_add(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        while (nc < b->n + n + 1) nc *= 2;
        char *q = realloc(b->p, nc);
        if (!q) return;
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

int cmd_chat(int argc, char **argv) {
    const args_cmd cmd = {"chat", "-m MODEL [-sys TEXT] [--chat-template NAME] [options]",
                          "  (type a message and Enter; Ctrl-C stops an answer, Ctrl-D exits; /clear, /exit)\n",
                          NULL, NULL};
    mr_args a;
    args_init(&a);
    int rc = args_parse(&a, argc, argv, CHAT_GROUPS, &cmd);
    if (rc >= 0) {
        args_free(&a);
        return rc;
    }
    if (!a.model.path) {
        args_free(&a);
        return args_error(&cmd, "no model: give -m FILE");
    }
    int ret = 1;
    mr_model *m = NULL;
    mr_ctx *c = NULL;
    mr_sampler *smp = NULL;
    history h = {0};
    mr_token *kv = NULL; /* tokens held in the KV cache, positions 0..n_kv */
    int n_kv = 0;
    char *line = NULL;
    size_t line_cap = 0;
    bool tty = isatty(STDIN_FILENO);

    m = mr_model_load(&a.model);
    if (!m) {
        fprintf(stderr, "moerun chat: %s\n", mr_geterr());
        goto done;
    }
    /* check the template renders before the first turn */
    {
        mr_chat_msg probe = {"user", "x"};
        char *t = mr_chat_apply(m, a.chat_template, &probe, 1, true);
        if (!t) {
            fprintf(stderr, "moerun chat: %s\n", mr_geterr());
            goto done;
        }
        free(t);
    }
    c = mr_ctx_new(m, &a.ctx);
    if (!c) {
        fprintf(stderr, "moerun chat: %s\n", mr_geterr());
        goto done;
    }
    int n_ctx = mr_ctx_n_ctx(c), n_vocab = mr_n_vocab(m);
    int n_batch = MR_MIN(a.ctx.n_batch > 0 ? a.ctx.n_batch : 2048, n_ctx);
    if (a.samp.repeat_last_n < 0) a.samp.repeat_last_n = n_ctx;
    smp = mr_sampler_new(&a.samp);
    kv = malloc(sizeof *kv * (size_t)n_ctx);
    if (!smp || !kv) {
        fprintf(stderr, "moerun chat: %s\n", mr_geterr());
        goto done;
    }
    int keep = 0;
    if (a.system_prompt) {
        if (hist_push(&h, "system", a.system_prompt)) goto oom;
        keep = 1;
    }
    gen_sigint_install();
    if (tty) fprintf(stderr, "moerun chat: Ctrl-C stops an answer, Ctrl-D exits, /clear forgets the conversation\n");

    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        gen_interrupted = 0;
        errno = 0;
        ssize_t len = getline(&line, &line_cap, stdin);
        if (len < 0) {
            if (errno == EINTR || gen_interrupted) {
                clearerr(stdin);
                gen_interrupted = 0;
                fputs("\n(Ctrl-D or /exit to quit)\n", stderr);
                continue;
            }
            if (tty) fputc('\n', stdout);
            break; /* end of input */
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/clear")) {
            hist_clear(&h, keep);
            mr_kv_clear(c);
            n_kv = 0;
            mr_sampler_reset(smp);
            continue;
        }
        if (hist_push(&h, "user", line)) goto oom;

        /* render, tokenize, keep the common prefix of the cache */
        char *text = mr_chat_apply(m, a.chat_template, h.msgs, h.n, true);
        if (!text) {
            fprintf(stderr, "moerun chat: %s\n", mr_geterr());
            goto done;
        }
        int n_tok = 0;
        mr_token *toks = gen_tokenize(m, text, true, true, &n_tok);
        free(text);
        if (!toks) {
            fprintf(stderr, "moerun chat: tokenizing: %s\n", mr_geterr());
            goto done;
        }
        if (n_tok >= n_ctx) {
            fprintf(stderr, "moerun chat: the conversation is %d tokens, the context %d: /clear it or raise -c\n",
                    n_tok, n_ctx);
            free(toks);
            hist_pop(&h);
            continue;
        }
        int common = 0;
        while (common < n_kv && common < n_tok && kv[common] == toks[common]) common++;
        if (common == n_tok) common = n_tok - 1; /* decode at least one token for the logits */
        if (mr_kv_seq_rm(c, 0, common, -1) != 0) {
            fprintf(stderr, "moerun chat: %s\n", mr_geterr());
            free(toks);
            goto done;
        }
        MR_INFO("chat turn: %d tokens, %d kept in the cache, %d to decode", n_tok, common, n_tok - common);
        n_kv = common;
        if (gen_decode(c, toks + common, n_tok - common, common, n_batch) != 0) {
            fprintf(stderr, "moerun chat: decoding the turn: %s\n", mr_geterr());
            free(toks);
            /* the cache state is unknown: start over next turn */
            mr_kv_clear(c);
            n_kv = 0;
            hist_pop(&h);
            continue;
        }
        memcpy(kv + common, toks + common, sizeof *kv * (size_t)(n_tok - common));
        n_kv = n_tok;
        for (int i = common; i < n_tok; i++) mr_sampler_accept(smp, toks[i]);
        free(toks);

        /* generate the answer */
        buf ans = {0};
        buf_add(&ans, "", 0);
        utf8_out u = {0};
        int n_gen = 0;
        const char *stop = NULL;
        for (;;) {
            if (gen_interrupted) {
                stop = "[interrupted]";
                break;
            }
            if (a.n_predict >= 0 && n_gen >= a.n_predict) break;
            const float *logits = mr_get_logits(c, -1);
            mr_token t = logits ? mr_sampler_sample(smp, logits, n_vocab) : -1;
            if (t < 0) {
                fprintf(stderr, "\nmoerun chat: sampling: %s\n", mr_geterr());
                break;
            }
            mr_sampler_accept(smp, t);
            if (mr_token_is_eog(m, t)) break;
            n_gen++;
            int plen = 0;
            char *piece = gen_piece(m, t, false, &plen);
            if (piece) {
                buf_add(&ans, piece, (size_t)plen);
                utf8_out_put(&u, piece, (size_t)plen, stdout);
                fflush(stdout);
                free(piece);
            }
            if (n_kv >= n_ctx) {
                stop = "[context full: /clear the conversation or raise -c]";
                break;
            }
            int32_t pos = n_kv;
            mr_batch b = {.n_tokens = 1, .token = &t, .pos = &pos, .seq = NULL, .logits = NULL};
            if (mr_decode(c, &b) != 0) {
                fprintf(stderr, "\nmoerun chat: decode: %s\n", mr_geterr());
                break;
            }
            kv[n_kv++] = t;
        }
        utf8_out_flush(&u, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        if (stop) fprintf(stderr, "%s\n", stop);
        gen_interrupted = 0;
        int e = hist_push(&h, "assistant", ans.p ? ans.p : "");
        free(ans.p);
        if (e) goto oom;
    }
    ret = 0;
    goto done;
oom:
    fprintf(stderr, "moerun chat: out of memory\n");
done:
    hist_clear(&h, 0);
    free(h.msgs);
    free(line);
    free(kv);
    mr_sampler_free(smp);
    mr_ctx_free(c);
    mr_model_free(m);
    args_free(&a);
    return ret;
}
