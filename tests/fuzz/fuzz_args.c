/*
 * fuzz_args.c — libFuzzer target for the shared command-line flag parser
 * (tools/args.c, compiled into this target directly as tests/unit/test_args.c
 * does: the tools are not part of moerun_core). args.c never exits; it prints
 * usage and errors, which go to /dev/null here (stdio's stdout / stderr only:
 * sanitizer and libFuzzer reports still reach file descriptor 2).
 *
 * Input: byte 0 = the flag groups the command takes (low 7 bits) and whether
 * it has command-specific flags (bit 7: --json, -r N through args_value /
 * args_int, --big N through args_i64, --frac X through args_float); the rest,
 * split on NUL bytes, is argv[1..] (at most 128 arguments).
 * Checks: no crash, leak or hang; args_parse returns -1, 0 or 2; when it
 * accepts the line every value is inside its documented range.
 */
#include "../../tools/args.c"

#include <stdio.h>

static volatile uint64_t sink;

typedef struct {
    bool json;
    int reps;
    long long big;
    float frac;
} extra_opts;

static int extra(void *ud, int argc, char **argv, int *i) {
    extra_opts *o = ud;
    if (!strcmp(argv[*i], "--json")) {
        o->json = true;
        return 1;
    }
    if (!strcmp(argv[*i], "-r")) {
        const char *v = args_value(argc, argv, i);
        return v && args_int("-r", v, 1, 100, &o->reps) == 0 ? 1 : -1;
    }
    if (!strcmp(argv[*i], "--big")) {
        const char *v = args_value(argc, argv, i);
        return v && args_i64("--big", v, INT64_MIN, INT64_MAX, &o->big) == 0 ? 1 : -1;
    }
    if (!strcmp(argv[*i], "--frac")) {
        const char *v = args_value(argc, argv, i);
        return v && args_float("--frac", v, -1e30, 1e30, &o->frac) == 0 ? 1 : -1;
    }
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    FILE *null = fopen("/dev/null", "w");
    if (null) {
        stdout = null;
        stderr = null;
    }
    return 0;
}

static bool fin(float x, float lo, float hi) { return isfinite(x) && x >= lo && x <= hi; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    unsigned groups = data[0] & 0x7f;
    bool with_extra = data[0] & 0x80;
    char *buf = malloc(size);
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;
    char *argv[130];
    int argc = 0;
    argv[argc++] = "fuzz";
    for (char *p = buf; p < buf + size - 1 && argc < 129; p += strlen(p) + 1) argv[argc++] = p;
    argv[argc] = NULL;

    extra_opts o = {0};
    const args_cmd cmd = {"fuzz", "[options]", "  --json  extra\n", with_extra ? extra : NULL, &o};
    mr_args a;
    args_init(&a);
    int rc = args_parse(&a, argc, argv, groups, &cmd);
    if (rc != -1 && rc != 0 && rc != 2) abort();
    if (rc == -1) {
        if ((a.set_threads && a.model.n_threads == 0) || a.model.n_threads < -1 || a.model.n_threads > 1024) abort();
        if (a.set_threads && a.ctx.n_threads != a.model.n_threads) abort();
        if (a.ctx.n_ctx < 0 || a.ctx.n_ctx > (1 << 24)) abort();
        if (a.ctx.n_batch < 1 || a.ctx.n_ubatch < 1) abort();
        if (a.ctx.flash_attn < -1 || a.ctx.flash_attn > 1) abort();
        if (a.n_predict < -2 || a.n_predict > (1 << 30)) abort();
        if (!fin(a.samp.temperature, 0, 100) || !fin(a.samp.top_p, 0, 1) || !fin(a.samp.min_p, 0, 1)) abort();
        if (!fin(a.samp.repeat_penalty, 0, 100) || !(a.samp.repeat_penalty > 0)) abort();
        if (!fin(a.samp.presence_penalty, -100, 100) || !fin(a.samp.frequency_penalty, -100, 100)) abort();
        if (a.samp.repeat_last_n < -1 || a.n_parallel < 1 || a.n_parallel > 256) abort();
        if (a.port < 0 || a.port > 65535 || !a.host) abort();
        if (a.model.n_cpu_moe < -1) abort();
        if (a.model.overrides && (a.model.overrides != a.owned_ot || !strchr(a.model.overrides, '='))) abort();
        if (with_extra && o.reps && (o.reps < 1 || o.reps > 100)) abort();
        /* a flag of a group the command does not take is never accepted */
        if (!(groups & ARGS_PROMPT) && (a.prompt || a.prompt_file)) abort();
        if (!(groups & ARGS_SERVER) && (a.port != 8080 || a.n_parallel != 1)) abort();
        if (!a.prompt_file) {
            char *t = args_prompt_text(&a, &cmd);
            if (!!t != !!a.prompt) abort();
            free(t);
        }
        sink += (uint64_t)a.samp.seed;
    }
    args_free(&a);
    free(buf);
    return 0;
}
