/*
 * args.h — the command-line flags shared by run, chat, perplexity, logits,
 * bench, serve (llama.cpp's names), parsed into one struct that maps onto
 * mr_model_params / mr_ctx_params / mr_sampler_params.
 *
 * Each command accepts a subset, chosen by a mask of groups, plus its own
 * flags through a callback:
 *
 *   static int my_flag(void *ud, int argc, char **argv, int *i) {
 *       if (!strcmp(argv[*i], "--json")) { ((opts *)ud)->json = true; return 1; }
 *       if (!strcmp(argv[*i], "-r")) {   // a flag with a value
 *           const char *v = args_value(argc, argv, i);   // advances *i, NULL + message if missing
 *           return v && args_int("-r", v, 1, 100, &((opts *)ud)->reps) == 0 ? 1 : -1;
 *       }
 *       return 0;   // not mine
 *   }
 *   mr_args a;
 *   args_init(&a);
 *   a.ctx.n_ctx = 512;                      // command defaults go before parsing
 *   const args_cmd cmd = {"perplexity", "-m MODEL -f FILE [options]",
 *                         "  --json  ...\n", my_flag, &opts};
 *   int rc = args_parse(&a, argc, argv, ARGS_MODEL | ARGS_CTX | ARGS_PROMPT, &cmd);
 *   if (rc >= 0) return rc;                 // 0 after --help, 2 after a usage error
 *   ...                                     // rc == -1: parsed, go on
 *   args_free(&a);
 *
 * Numbers are validated (integers fully consumed and in range, floats finite
 * and in range); a bad value, a missing value, an unknown flag or a flag of a
 * group the command does not take prints one line naming the flag to stderr
 * and args_parse returns 2 (the usage-error exit code).
 */
#ifndef MR_TOOLS_ARGS_H
#define MR_TOOLS_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "moerun.h"

/* Flag groups (bit mask for args_parse). -h/--help is always accepted. */
enum {
    /* -m -t -ngl -ts -sm -ot --n-cpu-moe -cmoe --no-mmap -rtr */
    ARGS_MODEL = 1 << 0,
    /* -c -b -ub -ctk -ctv -fa */
    ARGS_CTX = 1 << 1,
    /* -p -f */
    ARGS_PROMPT = 1 << 2,
    /* -n */
    ARGS_NPREDICT = 1 << 3,
    /* --temp --top-k --top-p --min-p --repeat-penalty --repeat-last-n
     * --presence-penalty --frequency-penalty -s */
    ARGS_SAMPLING = 1 << 4,
    /* --chat-template -sys --chat */
    ARGS_CHAT = 1 << 5,
    /* -np --host --port */
    ARGS_SERVER = 1 << 6,
    ARGS_ALL = 0x7f,
};

typedef struct {
    mr_model_params model;  /* model.path = -m */
    mr_ctx_params ctx;
    mr_sampler_params samp; /* seed defaults to "random" (MR_SAMPLER_SEED_RANDOM) */
    const char *prompt;      /* -p */
    const char *prompt_file; /* -f */
    int n_predict;           /* -n, -1 (default): until end of generation or the context is full */
    const char *chat_template; /* --chat-template NAME (or Jinja text) */
    const char *system_prompt; /* -sys */
    bool chat;                 /* --chat */
    int n_parallel;            /* -np, default 1 */
    const char *host;          /* --host, default 127.0.0.1 */
    int port;                  /* --port, default 8080 */
    /* which flags were given (for commands whose defaults depend on it) */
    bool set_n_ctx, set_seed, set_n_predict, set_threads;
    char *owned_ot; /* -ot values joined with ',' (model.overrides points here) */
} mr_args;

/* Command-specific flags: called for each argument args_parse does not know
 * (also positional ones). argv[*i] is the argument; take a value with
 * args_value(). Return 1 if consumed, 0 if not recognised (then it is an
 * "unknown option" usage error), -1 after printing a usage error. */
typedef int (*args_extra_fn)(void *ud, int argc, char **argv, int *i);

typedef struct {
    const char *name;       /* command name, for messages and usage */
    const char *synopsis;   /* "-m MODEL -p PROMPT [options]" */
    const char *extra_help; /* lines describing the command's own flags, or NULL */
    args_extra_fn extra;    /* may be NULL */
    void *ud;
} args_cmd;

/* Library defaults (mr_*_default_params) and the values above. */
void args_init(mr_args *a);
void args_free(mr_args *a);

/* Parse argv[1..argc) (argv[0] is the command name). Returns -1 when parsing
 * succeeded and the command should run, 0 after printing --help to stdout,
 * 2 after printing a usage error to stderr. */
int args_parse(mr_args *a, int argc, char **argv, unsigned groups, const args_cmd *cmd);

/* Print the usage of a command with the flags of the given groups. */
void args_usage(FILE *f, unsigned groups, const args_cmd *cmd);

/* Print "moerun CMD: MESSAGE (see moerun CMD --help)" to stderr; returns 2. */
int args_error(const args_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Helpers for command-specific flags. args_value: the value after argv[*i]
 * (advances *i), or NULL after printing "FLAG needs a value". The number
 * parsers return 0, or -1 after printing "FLAG: 'S' is not ... (expected ...)". */
const char *args_value(int argc, char **argv, int *i);
int args_int(const char *flag, const char *s, long long lo, long long hi, int *out);
int args_i64(const char *flag, const char *s, long long lo, long long hi, long long *out);
int args_float(const char *flag, const char *s, double lo, double hi, float *out);

/* The prompt text: -p, or the contents of -f (malloc'd; NULL with a message
 * on stderr when neither is given or the file cannot be read). */
char *args_prompt_text(const mr_args *a, const args_cmd *cmd);

#endif
