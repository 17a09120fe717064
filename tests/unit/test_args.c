/*
 * test_args.c — the shared flag parser (tools/args.c) and the UTF-8 streaming
 * of token pieces (tools/gen.c). Both live in the tools, so they are compiled
 * into this test directly.
 */
#include "../../tools/args.c"
#include "../../tools/gen.c"

#include "check.h"

static int parse(mr_args *a, unsigned groups, const args_cmd *cmd, const char *line) {
    /* split a command line on spaces (no quoting needed here) */
    static char buf[1024];
    static char *argv[128];
    snprintf(buf, sizeof buf, "cmd %s", line);
    int argc = 0;
    for (char *t = strtok(buf, " "); t && argc < 127; t = strtok(NULL, " ")) argv[argc++] = t;
    argv[argc] = NULL;
    args_init(a);
    return args_parse(a, argc, argv, groups, cmd);
}

typedef struct {
    int reps;
    bool json;
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
    return 0;
}

static void test_args(void) {
    extra_opts o = {0};
    const args_cmd cmd = {"test", "[options]", NULL, extra, &o};
    mr_args a;
    int rc = parse(&a, ARGS_ALL, &cmd,
                   "-m model.gguf -p hello -n 32 -c 2048 -b 256 -ub 128 -t 4 -ngl 99 -ts 3,1 -sm row "
                   "-ot exps=CPU -ot attn=CUDA0 --n-cpu-moe 10 -ctk q8_0 -ctv q4_0 -fa off --no-mmap -rtr "
                   "--temp 0.7 --top-k 20 --top-p 0.8 --min-p 0.1 --repeat-penalty 1.1 --repeat-last-n 128 "
                   "--presence-penalty 0.5 --frequency-penalty 0.25 -s 42 --chat-template chatml -sys Be "
                   "--chat -np 4 --host 0.0.0.0 --port 9000 --json -r 5");
    CHECK(rc == -1, "full line parses (rc %d)", rc);
    CHECK(a.model.path && !strcmp(a.model.path, "model.gguf"), "model");
    CHECK(a.prompt && !strcmp(a.prompt, "hello"), "prompt");
    CHECK(a.n_predict == 32 && a.set_n_predict, "n_predict");
    CHECK(a.ctx.n_ctx == 2048 && a.set_n_ctx && a.ctx.n_batch == 256 && a.ctx.n_ubatch == 128, "ctx sizes");
    CHECK(a.model.n_threads == 4 && a.ctx.n_threads == 4, "threads");
    CHECK(a.model.n_gpu_layers == 99 && !strcmp(a.model.tensor_split, "3,1") && !strcmp(a.model.split_mode, "row"),
          "gpu");
    CHECK(a.model.overrides && !strcmp(a.model.overrides, "exps=CPU,attn=CUDA0"), "-ot joined: %s",
          a.model.overrides ? a.model.overrides : "NULL");
    CHECK(a.model.n_cpu_moe == 10, "n-cpu-moe");
    CHECK(a.ctx.type_k == MR_KV_Q8_0 && a.ctx.type_v == MR_KV_Q4_0 && a.ctx.flash_attn == 0, "kv types, fa");
    CHECK(!a.model.use_mmap && a.model.rtr && !a.model.no_repack, "mmap, rtr");
    CHECK(a.samp.temperature == 0.7f && a.samp.top_k == 20 && a.samp.top_p == 0.8f && a.samp.min_p == 0.1f,
          "sampling");
    CHECK(a.samp.repeat_penalty == 1.1f && a.samp.repeat_last_n == 128 && a.samp.presence_penalty == 0.5f &&
              a.samp.frequency_penalty == 0.25f && a.samp.seed == 42 && a.set_seed,
          "penalties, seed");
    CHECK(!strcmp(a.chat_template, "chatml") && !strcmp(a.system_prompt, "Be") && a.chat, "chat");
    CHECK(a.n_parallel == 4 && !strcmp(a.host, "0.0.0.0") && a.port == 9000, "server");
    CHECK(o.json && o.reps == 5, "command flags through the callback");
    args_free(&a);

    /* defaults */
    rc = parse(&a, ARGS_ALL, &cmd, "-m x");
    CHECK(rc == -1 && a.n_predict == -1 && a.samp.seed == MR_SAMPLER_SEED_RANDOM && !a.set_n_ctx && a.port == 8080 &&
              a.ctx.flash_attn == -1 && a.model.use_mmap,
          "defaults");
    args_free(&a);
    /* long=value, -fa bare and with value, -cmoe, -s -1 */
    rc = parse(&a, ARGS_ALL, &cmd, "--ctx-size=512 --temp=0 -fa -cmoe -s -1 -p x");
    CHECK(rc == -1 && a.ctx.n_ctx == 512 && a.samp.temperature == 0 && a.ctx.flash_attn == 1 &&
              a.model.n_cpu_moe == -1 && a.samp.seed == MR_SAMPLER_SEED_RANDOM,
          "forms");
    args_free(&a);
    rc = parse(&a, ARGS_ALL, &cmd, "-fa auto -p x");
    CHECK(rc == -1 && a.ctx.flash_attn == -1 && a.prompt && !strcmp(a.prompt, "x"), "-fa auto");
    args_free(&a);

    /* usage errors: exit code 2 */
    const char *bad[] = {
        "-c -5", "-c abc", "-t 100000", "-t 0", "-n abc", "-n 1.5", "-b 0", "--temp -1", "--temp nan", "--temp inf",
        "--top-p 1.5", "--min-p -0.1", "--repeat-penalty 0", "-s -2", "-s 12x", "--port 70000", "-np 0",
        "-ctk q9", "-sm diagonal", "-ts 1,,2", "-ts -1", "-ot noequals", "-fa maybe", "--bogus", "-m",
        "stray", "--no-mmap=1", "-r 0", "-r", "-c 99999999999999999999",
    };
    for (size_t i = 0; i < MR_ARRAY_LEN(bad); i++) {
        rc = parse(&a, ARGS_ALL, &cmd, bad[i]);
        CHECK(rc == 2, "'%s' should be a usage error (rc %d)", bad[i], rc);
        args_free(&a);
    }
    /* a flag of a group the command does not take */
    rc = parse(&a, ARGS_MODEL | ARGS_PROMPT, &cmd, "-m x --temp 0.5");
    CHECK(rc == 2, "--temp refused without ARGS_SAMPLING");
    args_free(&a);
    rc = parse(&a, ARGS_MODEL, &cmd, "-m x --help");
    CHECK(rc == 0, "--help returns 0");
    args_free(&a);
}

/* Feed pieces, collect the output written at each step. */
static void test_utf8(void) {
    FILE *f = tmpfile();
    utf8_out u = {0};
    /* "é" = C3 A9, "€" = E2 82 AC, "😀" = F0 9F 98 80 split across pieces */
    const char *pieces[] = {"a\xC3", "\xA9", "\xE2\x82", "\xAC", "b\xF0\x9F", "\x98", "\x80" "c", "\xE2"};
    size_t wrote[8];
    for (int i = 0; i < 8; i++) wrote[i] = utf8_out_put(&u, pieces[i], strlen(pieces[i]), f);
    CHECK(wrote[0] == 1 && wrote[1] == 2, "é held then completed (%zu %zu)", wrote[0], wrote[1]);
    CHECK(wrote[2] == 0 && wrote[3] == 3, "€ held then completed (%zu %zu)", wrote[2], wrote[3]);
    CHECK(wrote[4] == 1 && wrote[5] == 0 && wrote[6] == 5, "emoji held over three pieces (%zu %zu %zu)", wrote[4],
          wrote[5], wrote[6]);
    CHECK(wrote[7] == 0 && u.n_held == 1, "a trailing lead byte is held");
    utf8_out_flush(&u, f);
    rewind(f);
    char got[64] = {0};
    size_t n = fread(got, 1, sizeof got - 1, f);
    const char *want = "a\xC3\xA9\xE2\x82\xAC" "b\xF0\x9F\x98\x80" "c\xE2";
    CHECK(n == strlen(want) && !memcmp(got, want, n), "bytes out in order");
    fclose(f);
    /* invalid bytes are not held forever */
    CHECK(utf8_complete_len((const unsigned char *)"\x80\x80", 2) == 2, "stray continuations pass");
    CHECK(utf8_complete_len((const unsigned char *)"x\xFF", 2) == 2, "0xFF passes");
    CHECK(utf8_complete_len((const unsigned char *)"x\xE2\x82", 3) == 1, "partial 3-byte held");
    CHECK(utf8_complete_len((const unsigned char *)"x\xC3z", 3) == 3, "lead followed by ASCII passes");
}

int main(void) {
    test_args();
    test_utf8();
    return check_done();
}
