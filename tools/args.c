/*
 * args.c — shared command-line parsing for the model-running commands (see
 * args.h): llama.cpp's flag names, validated numbers, usage text per group.
 */
#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "engine/sample.h"

static const char *g_cmd = "moerun"; /* "moerun CMD" for messages */
static char g_cmd_buf[64];

int args_error(const args_cmd *cmd, const char *fmt, ...) {
    const char *name = cmd && cmd->name ? cmd->name : NULL;
    if (name) fprintf(stderr, "moerun %s: ", name);
    else fprintf(stderr, "%s: ", g_cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (name) fprintf(stderr, " (see moerun %s --help)\n", name);
    else fprintf(stderr, "\n");
    return 2;
}

/* Error from the value helpers, which do not get the command. */
static int verr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int verr(const char *fmt, ...) {
    fprintf(stderr, "%s: ", g_cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return -1;
}

const char *args_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        verr("%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int args_i64(const char *flag, const char *s, long long lo, long long hi, long long *out) {
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (!*s || !end || *end || errno == ERANGE) return verr("%s: '%s' is not an integer (expected %lld..%lld)", flag, s, lo, hi);
    if (v < lo || v > hi) return verr("%s: %lld is out of range (expected %lld..%lld)", flag, v, lo, hi);
    *out = v;
    return 0;
}

int args_int(const char *flag, const char *s, long long lo, long long hi, int *out) {
    long long v = 0;
    if (args_i64(flag, s, lo, hi, &v)) return -1;
    *out = (int)v;
    return 0;
}

int args_float(const char *flag, const char *s, double lo, double hi, float *out) {
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (!*s || !end || *end || errno == ERANGE || !isfinite(v))
        return verr("%s: '%s' is not a number (expected %g..%g)", flag, s, lo, hi);
    if (v < lo || v > hi) return verr("%s: %g is out of range (expected %g..%g)", flag, v, lo, hi);
    *out = (float)v;
    return 0;
}

void args_init(mr_args *a) {
    memset(a, 0, sizeof *a);
    a->model = mr_model_default_params();
    a->ctx = mr_ctx_default_params();
    a->samp = mr_sampler_default_params();
    a->samp.seed = MR_SAMPLER_SEED_RANDOM;
    a->n_predict = -1;
    a->n_parallel = 1;
    a->host = "127.0.0.1";
    a->port = 8080;
}

void args_free(mr_args *a) {
    free(a->owned_ot);
    a->owned_ot = NULL;
    a->model.overrides = NULL;
}

/* ---- the table of shared flags ---------------------------------------------------- */
typedef enum {
    F_MODEL, F_THREADS, F_NGL, F_TS, F_SM, F_DEV, F_OT, F_NCPUMOE, F_CMOE, F_NOMMAP, F_RTR, F_NOREPACK,
    F_CTX, F_BATCH, F_UBATCH, F_CTK, F_CTV, F_FA,
    F_PROMPT, F_FILE, F_NPREDICT,
    F_TEMP, F_TOPK, F_TOPP, F_MINP, F_REPPEN, F_REPLAST, F_PRESPEN, F_FREQPEN, F_SEED,
    F_CHATTMPL, F_SYS, F_CHAT,
    F_NP, F_HOST, F_PORT,
} flag_id;

typedef struct {
    flag_id id;
    unsigned group;
    const char *s, *l; /* short and long spelling (either may be NULL) */
    const char *arg;   /* value placeholder for usage, NULL for booleans */
    const char *help;
} flag_def;

static const flag_def k_flags[] = {
    {F_MODEL, ARGS_MODEL, "-m", "--model", "FILE", "model GGUF (first part of a split set)"},
    {F_THREADS, ARGS_MODEL, "-t", "--threads", "N", "CPU threads (default: physical cores)"},
    {F_NGL, ARGS_MODEL, "-ngl", "--n-gpu-layers", "N", "layers to offload to the GPU (default 0)"},
    {F_TS, ARGS_MODEL, "-ts", "--tensor-split", "A,B,..", "fraction of the model per GPU"},
    {F_SM, ARGS_MODEL, "-sm", "--split-mode", "MODE", "none|layer|row (default layer)"},
    {F_DEV, ARGS_MODEL, "-dev", "--device", "LIST", "devices for layers, e.g. CUDA0,CUDA1 (none: CPU only; default: all)"},
    {F_OT, ARGS_MODEL, "-ot", "--override-tensor", "RE=DEV", "place tensors matching RE on DEV (repeatable)"},
    {F_NCPUMOE, ARGS_MODEL, NULL, "--n-cpu-moe", "N", "keep the experts of the first N layers on the CPU"},
    {F_CMOE, ARGS_MODEL, "-cmoe", "--cpu-moe", NULL, "keep all experts on the CPU"},
    {F_NOMMAP, ARGS_MODEL, NULL, "--no-mmap", NULL, "read the model into memory instead of mapping it"},
    {F_RTR, ARGS_MODEL, "-rtr", "--run-time-repack", NULL, "read the weights into huge-page memory and repack every one there for the fast kernels (default: all but the recurrent layers' projections; as ik_llama.cpp, implies --no-mmap)"},
    {F_NOREPACK, ARGS_MODEL, "-nr", "--no-repack", NULL, "keep the GGUF weight layouts and ggml's float rounding (default: interleave matmul weights by 8 rows at load for the SIMD kernels)"},
    {F_CTX, ARGS_CTX, "-c", "--ctx-size", "N", "context size in tokens (0: model's, at most 4096)"},
    {F_BATCH, ARGS_CTX, "-b", "--batch-size", "N", "max tokens per decode call (default 2048)"},
    {F_UBATCH, ARGS_CTX, "-ub", "--ubatch-size", "N", "micro-batch size (default 512)"},
    {F_CTK, ARGS_CTX, "-ctk", "--cache-type-k", "TYPE", "K cache type: f32|f16|q8_0|q4_0 (default f16)"},
    {F_CTV, ARGS_CTX, "-ctv", "--cache-type-v", "TYPE", "V cache type: f32|f16|q8_0|q4_0 (default f16)"},
    {F_FA, ARGS_CTX, "-fa", "--flash-attn", "[on|off|auto]", "flash attention (bare flag: on; default auto)"},
    {F_PROMPT, ARGS_PROMPT, "-p", "--prompt", "TEXT", "prompt text"},
    {F_FILE, ARGS_PROMPT, "-f", "--file", "FILE", "read the prompt / text from a file"},
    {F_NPREDICT, ARGS_NPREDICT, "-n", "--n-predict", "N", "tokens to generate (-1: until end of text or context full)"},
    {F_TEMP, ARGS_SAMPLING, NULL, "--temp", "T", "temperature (default 0.8; 0: greedy)"},
    {F_TOPK, ARGS_SAMPLING, NULL, "--top-k", "K", "top-k (default 40; 0: off)"},
    {F_TOPP, ARGS_SAMPLING, NULL, "--top-p", "P", "top-p (default 0.95; 1: off)"},
    {F_MINP, ARGS_SAMPLING, NULL, "--min-p", "P", "min-p (default 0.05; 0: off)"},
    {F_REPPEN, ARGS_SAMPLING, NULL, "--repeat-penalty", "X", "repetition penalty (default 1: off)"},
    {F_REPLAST, ARGS_SAMPLING, NULL, "--repeat-last-n", "N", "penalty window (default 64; 0: off; -1: context)"},
    {F_PRESPEN, ARGS_SAMPLING, NULL, "--presence-penalty", "X", "presence penalty (default 0)"},
    {F_FREQPEN, ARGS_SAMPLING, NULL, "--frequency-penalty", "X", "frequency penalty (default 0)"},
    {F_SEED, ARGS_SAMPLING, "-s", "--seed", "N", "RNG seed (default -1: random)"},
    {F_CHATTMPL, ARGS_CHAT, NULL, "--chat-template", "NAME", "chat template: chatml, qwen3, chatml-nothink, llama3, "
                                                              "llama2, deepseek, deepseek2, deepseek3, gemma, phi3 "
                                                              "(default: the model's)"},
    {F_SYS, ARGS_CHAT, "-sys", "--system-prompt", "TEXT", "system message"},
    {F_CHAT, ARGS_CHAT, NULL, "--chat", NULL, "format the prompt with the chat template"},
    {F_NP, ARGS_SERVER, "-np", "--parallel", "N", "parallel sequences / slots (default 1)"},
    {F_HOST, ARGS_SERVER, NULL, "--host", "ADDR", "address to listen on (default 127.0.0.1)"},
    {F_PORT, ARGS_SERVER, NULL, "--port", "N", "port to listen on (default 8080; 0 = any free port, printed at startup)"},
};

void args_usage(FILE *f, unsigned groups, const args_cmd *cmd) {
    fprintf(f, "usage: moerun %s %s\n\noptions:\n", cmd->name, cmd->synopsis ? cmd->synopsis : "[options]");
    for (size_t i = 0; i < MR_ARRAY_LEN(k_flags); i++) {
        const flag_def *d = &k_flags[i];
        if (!(d->group & groups)) continue;
        char spell[80];
        snprintf(spell, sizeof spell, "%s%s%s%s%s", d->s ? d->s : "", d->s && d->l ? ", " : "", d->l ? d->l : "",
                 d->arg ? " " : "", d->arg ? d->arg : "");
        fprintf(f, "  %-34s %s\n", spell, d->help);
    }
    if (cmd->extra_help) fputs(cmd->extra_help, f);
    fprintf(f, "  %-34s %s\n", "-h, --help", "show this help");
}

static int kv_type(const char *flag, const char *v, int *out) {
    static const struct {
        const char *n;
        int t;
    } k[] = {{"f32", MR_KV_F32}, {"f16", MR_KV_F16}, {"q8_0", MR_KV_Q8_0}, {"q4_0", MR_KV_Q4_0}};
    for (size_t i = 0; i < MR_ARRAY_LEN(k); i++)
        if (!strcmp(v, k[i].n)) {
            *out = k[i].t;
            return 0;
        }
    return verr("%s: unsupported cache type '%s' (expected f32, f16, q8_0 or q4_0)", flag, v);
}

/* "0.6,0.4": non-negative numbers separated by commas. */
static int check_split(const char *flag, const char *v) {
    const char *p = v;
    for (;;) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno || !isfinite(x) || x < 0) return verr("%s: '%s' is not a list of proportions like 3,1", flag, v);
        if (*end == 0) return 0;
        if (*end != ',' && *end != '/') return verr("%s: '%s' is not a list of proportions like 3,1", flag, v);
        p = end + 1;
    }
}

/* Apply one shared flag with its value (NULL for booleans); fl is the flag as
 * typed, for messages. 0 / -1. */
static int apply(mr_args *a, const flag_def *d, const char *v, const char *fl) {
    switch (d->id) {
    case F_MODEL: a->model.path = v; return 0;
    case F_THREADS: a->set_threads = true;
        if (args_int(fl, v, -1, 1024, &a->model.n_threads)) return -1;
        if (a->model.n_threads == 0) return verr("%s: 0 threads (use -1 or leave it out for the default)", fl);
        a->ctx.n_threads = a->model.n_threads;
        return 0;
    case F_NGL: return args_int(fl, v, -1, 100000, &a->model.n_gpu_layers);
    case F_TS: a->model.tensor_split = v; return check_split(fl, v);
    case F_DEV: a->model.devices = v; return 0; /* names are checked against the devices at load */
    case F_SM:
        if (strcmp(v, "none") && strcmp(v, "layer") && strcmp(v, "row"))
            return verr("%s: '%s' is not a split mode (expected none, layer or row)", fl, v);
        a->model.split_mode = v;
        return 0;
    case F_OT: {
        const char *eq = strchr(v, '=');
        if (!eq || eq == v || !eq[1]) return verr("%s: '%s' is not REGEX=DEVICE", fl, v);
        size_t old = a->owned_ot ? strlen(a->owned_ot) : 0, n = strlen(v);
        char *s = realloc(a->owned_ot, old + n + 2);
        if (!s) return verr("out of memory");
        if (old) s[old++] = ',';
        memcpy(s + old, v, n + 1);
        a->owned_ot = s;
        a->model.overrides = s;
        return 0;
    }
    case F_NCPUMOE: return args_int(fl, v, 0, 100000, &a->model.n_cpu_moe);
    case F_CMOE: a->model.n_cpu_moe = -1; return 0;
    case F_NOMMAP: a->model.use_mmap = false; return 0;
    case F_RTR: a->model.rtr = true; return 0;
    case F_NOREPACK: a->model.no_repack = true; return 0;
    case F_CTX: a->set_n_ctx = true; return args_int(fl, v, 0, 1 << 24, &a->ctx.n_ctx);
    case F_BATCH: return args_int(fl, v, 1, 1 << 20, &a->ctx.n_batch);
    case F_UBATCH: return args_int(fl, v, 1, 1 << 20, &a->ctx.n_ubatch);
    case F_CTK: return kv_type(fl, v, &a->ctx.type_k);
    case F_CTV: return kv_type(fl, v, &a->ctx.type_v);
    case F_FA:
        if (!v || !strcmp(v, "on") || !strcmp(v, "1") || !strcmp(v, "true")) a->ctx.flash_attn = 1;
        else if (!strcmp(v, "off") || !strcmp(v, "0") || !strcmp(v, "false")) a->ctx.flash_attn = 0;
        else if (!strcmp(v, "auto")) a->ctx.flash_attn = -1;
        else return verr("%s: '%s' (expected on, off or auto)", fl, v);
        return 0;
    case F_PROMPT: a->prompt = v; return 0;
    case F_FILE: a->prompt_file = v; return 0;
    case F_NPREDICT: a->set_n_predict = true; return args_int(fl, v, -2, 1 << 30, &a->n_predict);
    case F_TEMP: return args_float(fl, v, 0, 100, &a->samp.temperature);
    case F_TOPK: return args_int(fl, v, -1, 1 << 30, &a->samp.top_k);
    case F_TOPP: return args_float(fl, v, 0, 1, &a->samp.top_p);
    case F_MINP: return args_float(fl, v, 0, 1, &a->samp.min_p);
    case F_REPPEN:
        if (args_float(fl, v, 0, 100, &a->samp.repeat_penalty)) return -1;
        if (a->samp.repeat_penalty <= 0) return verr("%s: must be > 0 (1 = off)", fl);
        return 0;
    case F_REPLAST: return args_int(fl, v, -1, 1 << 24, &a->samp.repeat_last_n);
    case F_PRESPEN: return args_float(fl, v, -100, 100, &a->samp.presence_penalty);
    case F_FREQPEN: return args_float(fl, v, -100, 100, &a->samp.frequency_penalty);
    case F_SEED: {
        a->set_seed = true;
        if (!strcmp(v, "-1")) {
            a->samp.seed = MR_SAMPLER_SEED_RANDOM;
            return 0;
        }
        errno = 0;
        char *end;
        unsigned long long s = strtoull(v, &end, 10);
        if (!*v || *v == '-' || *end || errno) return verr("%s: '%s' is not a seed (expected -1 or 0..2^64-1)", fl, v);
        a->samp.seed = s;
        return 0;
    }
    case F_CHATTMPL: a->chat_template = v; return 0;
    case F_SYS: a->system_prompt = v; return 0;
    case F_CHAT: a->chat = true; return 0;
    case F_NP: return args_int(fl, v, 1, 256, &a->n_parallel);
    case F_HOST: a->host = v; return 0;
    case F_PORT: return args_int(fl, v, 0, 65535, &a->port);
    }
    return -1;
}

int args_parse(mr_args *a, int argc, char **argv, unsigned groups, const args_cmd *cmd) {
    snprintf(g_cmd_buf, sizeof g_cmd_buf, "moerun %s", cmd->name);
    g_cmd = g_cmd_buf;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            args_usage(stdout, groups, cmd);
            return 0;
        }
        /* --long=value */
        char name[64];
        const char *inl = NULL;
        const char *eq = !strncmp(arg, "--", 2) ? strchr(arg, '=') : NULL;
        if (eq && (size_t)(eq - arg) < sizeof name) {
            memcpy(name, arg, (size_t)(eq - arg));
            name[eq - arg] = 0;
            inl = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", arg);
        }
        const flag_def *d = NULL;
        for (size_t k = 0; k < MR_ARRAY_LEN(k_flags) && !d; k++)
            if ((k_flags[k].s && !strcmp(name, k_flags[k].s)) || (k_flags[k].l && !strcmp(name, k_flags[k].l)))
                d = &k_flags[k];
        if (d && !(d->group & groups)) d = NULL; /* not this command's: maybe its own flag of the same name */
        if (!d) {
            if (cmd->extra) {
                int r = cmd->extra(cmd->ud, argc, argv, &i);
                if (r == 1) continue;
                if (r < 0) return 2;
            }
            for (size_t k = 0; k < MR_ARRAY_LEN(k_flags); k++)
                if ((k_flags[k].s && !strcmp(name, k_flags[k].s)) || (k_flags[k].l && !strcmp(name, k_flags[k].l)))
                    return args_error(cmd, "option '%s' is not supported by this command", name);
            if (arg[0] == '-' && arg[1]) return args_error(cmd, "unknown option '%s'", arg);
            return args_error(cmd, "unexpected argument '%s'", arg);
        }
        const char *v = NULL;
        if (d->id == F_FA) {
            /* optional value */
            if (inl) v = inl;
            else if (i + 1 < argc && (!strcmp(argv[i + 1], "on") || !strcmp(argv[i + 1], "off") ||
                                      !strcmp(argv[i + 1], "auto") || !strcmp(argv[i + 1], "0") ||
                                      !strcmp(argv[i + 1], "1")))
                v = argv[++i];
        } else if (d->arg) {
            if (inl) v = inl;
            else if (i + 1 < argc) v = argv[++i];
            else return args_error(cmd, "option '%s' needs a value (%s)", name, d->arg);
        } else if (inl) {
            return args_error(cmd, "option '%s' takes no value", name);
        }
        if (apply(a, d, v, name) != 0) {
            fprintf(stderr, "(see moerun %s --help)\n", cmd->name);
            return 2;
        }
    }
    return -1;
}

char *args_prompt_text(const mr_args *a, const args_cmd *cmd) {
    if (a->prompt && a->prompt_file) {
        args_error(cmd, "give either -p or -f, not both");
        return NULL;
    }
    if (a->prompt) {
        char *s = strdup(a->prompt);
        if (!s) fprintf(stderr, "moerun %s: out of memory\n", cmd->name);
        return s;
    }
    if (a->prompt_file) {
        size_t n;
        char *s = mr_read_file(a->prompt_file, &n);
        if (!s) fprintf(stderr, "moerun %s: %s\n", cmd->name, mr_geterr());
        return s;
    }
    args_error(cmd, "no prompt: give -p TEXT or -f FILE");
    return NULL;
}
