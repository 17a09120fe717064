/*
 * cmd_run.c — `moerun run -m MODEL -p PROMPT [-n N] [sampling] [--chat] [-sys TEXT]`:
 * tokenize the prompt (BOS as the vocabulary says, special-token texts
 * recognised), decode it in batches, then sample and stream tokens to stdout
 * until an end-of-generation token, -n tokens, the end of the context or
 * Ctrl-C. Prompt and generation speed go to stderr.
 *
 * With --chat (implied by -sys or --chat-template) the prompt is the user
 * message of a chat rendered with the model's template (or --chat-template).
 * Exit: 0 ok, 1 error (model, prompt longer than the context, ...), 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base/base.h"
#include "gen.h"
#include "moerun.h"

#define RUN_GROUPS (ARGS_MODEL | ARGS_CTX | ARGS_PROMPT | ARGS_NPREDICT | ARGS_SAMPLING | ARGS_CHAT)

typedef struct {
    bool echo;
} run_opts;

static int run_flag(void *ud, int argc, char **argv, int *i) {
    (void)argc;
    run_opts *o = ud;
    if (!strcmp(argv[*i], "--echo")) {
        o->echo = true;
        return 1;
    }
    return 0;
}

static void print_speed(const char *what, int n, double t) {
    fprintf(stderr, "%s %d tokens in %.3f s (%.2f t/s)", what, n, t, t > 0 ? n / t : 0.0);
}

int cmd_run(int argc, char **argv) {
    run_opts o = {0};
    const args_cmd cmd = {"run", "-m MODEL -p PROMPT [-n N] [options]",
                          "  --echo                             print the prompt before the generated text\n",
                          run_flag, &o};
    mr_args a;
    args_init(&a);
    int rc = args_parse(&a, argc, argv, RUN_GROUPS, &cmd);
    if (rc >= 0) {
        args_free(&a);
        return rc;
    }
    if (!a.model.path) {
        args_free(&a);
        return args_error(&cmd, "no model: give -m FILE");
    }
    char *prompt = args_prompt_text(&a, &cmd);
    if (!prompt) {
        args_free(&a);
        return 2;
    }
    bool chat = a.chat || a.system_prompt || a.chat_template;

    int ret = 1;
    mr_model *m = NULL;
    mr_ctx *c = NULL;
    mr_sampler *smp = NULL;
    mr_token *toks = NULL;
    char *text = NULL;

    m = mr_model_load(&a.model);
    if (!m) {
        fprintf(stderr, "moerun run: %s\n", mr_geterr());
        goto done;
    }
    if (chat) {
        mr_chat_msg msgs[2];
        int nm = 0;
        if (a.system_prompt) msgs[nm++] = (mr_chat_msg){"system", a.system_prompt};
        msgs[nm++] = (mr_chat_msg){"user", prompt};
        text = mr_chat_apply(m, a.chat_template, msgs, nm, true);
        if (!text) {
            fprintf(stderr, "moerun run: %s\n", mr_geterr());
            goto done;
        }
    } else {
        text = prompt;
        prompt = NULL;
    }
    int n_prompt = 0;
    toks = gen_tokenize(m, text, true, true, &n_prompt);
    if (!toks) {
        fprintf(stderr, "moerun run: tokenizing the prompt: %s\n", mr_geterr());
        goto done;
    }
    if (n_prompt == 0) {
        fprintf(stderr, "moerun run: the prompt is empty (and the vocabulary adds no BOS)\n");
        goto done;
    }
    c = mr_ctx_new(m, &a.ctx);
    if (!c) {
        fprintf(stderr, "moerun run: %s\n", mr_geterr());
        goto done;
    }
    int n_ctx = mr_ctx_n_ctx(c);
    if (n_prompt > n_ctx) {
        fprintf(stderr, "moerun run: the prompt is %d tokens, longer than the context of %d (raise -c)\n", n_prompt,
                n_ctx);
        goto done;
    }
    if (a.samp.repeat_last_n < 0) a.samp.repeat_last_n = n_ctx;
    smp = mr_sampler_new(&a.samp);
    if (!smp) {
        fprintf(stderr, "moerun run: %s\n", mr_geterr());
        goto done;
    }
    for (int i = 0; i < n_prompt; i++) mr_sampler_accept(smp, toks[i]);
    int n_batch = MR_MIN(a.ctx.n_batch > 0 ? a.ctx.n_batch : 2048, n_ctx);

    if (o.echo) {
        fputs(text, stdout);
        fflush(stdout);
    }
    gen_sigint_install();
    double t0 = mr_time_s();
    if (gen_decode(c, toks, n_prompt, 0, n_batch) != 0) {
        fprintf(stderr, "\nmoerun run: decoding the prompt: %s\n", mr_geterr());
        goto done;
    }
    double t_pp = mr_time_s() - t0;

    int n_vocab = mr_n_vocab(m), pos = n_prompt, n_gen = 0;
    const char *stop = NULL;
    utf8_out u = {0};
    double t1 = mr_time_s();
    bool failed = false;
    for (;;) {
        if (a.n_predict >= 0 && n_gen >= a.n_predict) break;
        if (gen_interrupted) {
            stop = "interrupted";
            break;
        }
        const float *logits = mr_get_logits(c, -1);
        if (!logits) {
            fprintf(stderr, "\nmoerun run: no logits from the last decode\n");
            failed = true;
            break;
        }
        mr_token t = mr_sampler_sample(smp, logits, n_vocab);
        if (t < 0) {
            fprintf(stderr, "\nmoerun run: sampling: %s\n", mr_geterr());
            failed = true;
            break;
        }
        mr_sampler_accept(smp, t);
        if (mr_token_is_eog(m, t)) break;
        n_gen++;
        int plen = 0;
        char *piece = gen_piece(m, t, false, &plen);
        if (piece) {
            utf8_out_put(&u, piece, (size_t)plen, stdout);
            fflush(stdout);
            free(piece);
        }
        if (a.n_predict >= 0 && n_gen >= a.n_predict) break;
        if (pos >= n_ctx) {
            stop = "context full";
            break;
        }
        mr_batch b = {.n_tokens = 1, .token = &t, .pos = &pos, .seq = NULL, .logits = NULL};
        if (mr_decode(c, &b) != 0) {
            fprintf(stderr, "\nmoerun run: decode at position %d: %s\n", pos, mr_geterr());
            failed = true;
            break;
        }
        pos++;
    }
    double t_tg = mr_time_s() - t1;
    utf8_out_flush(&u, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    if (stop && !strcmp(stop, "context full"))
        fprintf(stderr, "moerun run: stopped: the context of %d tokens is full (raise -c for longer output)\n", n_ctx);
    else if (stop)
        fprintf(stderr, "moerun run: stopped: %s\n", stop);
    fprintf(stderr, "moerun run: ");
    print_speed("prompt", n_prompt, t_pp);
    fprintf(stderr, ", ");
    print_speed("generation", n_gen, t_tg);
    fprintf(stderr, "\n");
    ret = failed ? 1 : 0;

done:
    mr_sampler_free(smp);
    mr_ctx_free(c);
    mr_model_free(m);
    free(toks);
    free(text);
    free(prompt);
    args_free(&a);
    return ret;
}
