/*
 * test_engine.c — engine behaviour on the tiny models (../shared/fixtures):
 * micro-batch sizes do not change logits, two sequences in one batch give
 * each sequence's logits alone, kv_seq_rm + re-decode and kv_seq_cp reproduce
 * logits, errors (bad token, bad seq, prompt longer than the context, full
 * cache) are errors and not crashes, the scalar reference path agrees with the
 * fast path, and the weight-bytes counter moves. MLA: the prompt form (attn_mla.c) runs for
 * micro-batches of 32 tokens and more and not for shorter ones or decode steps, and its head
 * groups (a small MOERUN_MLA_PROMPT_MIB) give the all-heads result bit for bit.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cpu/attn.h"
#include "engine_util.h"
#include "moerun.h"
#include "quant/types.h"

static mr_model *load(const char *dir, const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s.gguf", dir, name);
    mr_model_params mp = mr_model_default_params();
    mp.path = p;
    mr_model *m = mr_model_load(&mp);
    CHECK(m != NULL, "load %s: %s", p, mr_last_error());
    return m;
}


static void test_model(const char *mdir, const char *name) {
    mr_model *m = load(mdir, name);
    if (!m) return;
    const int V = mr_n_vocab(m), N = 40;
    mr_token toks[64], toks2[64];
    for (int i = 0; i < 64; i++) {
        toks[i] = (mr_token)((i * 7919 + 13) % (V - 300) + 100);
        toks2[i] = (mr_token)((i * 104729 + 5) % (V - 300) + 100);
    }
    float *ref = malloc(sizeof(float) * V), *got = malloc(sizeof(float) * V), *ref2 = malloc(sizeof(float) * V);

    /* micro-batch sizes 1 / 7 / 512 */
    mr_ctx *c = ctx(m, 256, 512, 512, 1, 0);
    CHECK(c && run_prompt(c, toks, N, 0, 0, ref, V) == 0, "%s: decode: %s", name, mr_last_error());
    mr_ctx_free(c);
    const int ubs[] = {1, 7};
    for (int k = 0; k < 2; k++) {
        c = ctx(m, 256, 512, ubs[k], 1, 0);
        CHECK(c && run_prompt(c, toks, N, 0, 0, got, V) == 0, "%s: decode ub %d", name, ubs[k]);
        double d = rel_diff(ref, got, V);
        CHECK(d < 1e-4, "%s: ubatch %d vs 512: rel diff %g", name, ubs[k], d);
        mr_ctx_free(c);
    }
    /* flash attention agrees with the standard path */
    c = ctx(m, 256, 512, 512, 1, 1);
    CHECK(c && run_prompt(c, toks, N, 0, 0, got, V) == 0, "%s: decode fa", name);
    CHECK(rel_diff(ref, got, V) < 5e-2, "%s: flash vs standard: rel diff %g", name, rel_diff(ref, got, V));
    mr_ctx_free(c);

    /* two sequences in one batch (interleaved) = each alone */
    c = ctx(m, 256, 512, 512, 1, 0);
    CHECK(c && run_prompt(c, toks2, N - 9, 0, 0, ref2, V) == 0, "%s: decode seq alone", name);
    mr_ctx_free(c);
    c = ctx(m, 256, 512, 512, 2, 0);
    if (c) {
        mr_token bt[128];
        int32_t bp[128], bs[128];
        int8_t bl[128];
        int n = 0, last0 = -1, last1 = -1;
        for (int i = 0; i < N; i++) {
            bt[n] = toks[i], bp[n] = i, bs[n] = 0, bl[n] = i == N - 1;
            if (i == N - 1) last0 = n;
            n++;
            if (i < N - 9) {
                bt[n] = toks2[i], bp[n] = i, bs[n] = 1, bl[n] = i == N - 10;
                if (i == N - 10) last1 = n;
                n++;
            }
        }
        mr_batch b = {.n_tokens = n, .token = bt, .pos = bp, .seq = bs, .logits = bl};
        CHECK(mr_decode(c, &b) == 0, "%s: two-seq batch: %s", name, mr_last_error());
        const float *l0 = mr_get_logits(c, last0), *l1 = mr_get_logits(c, last1);
        CHECK(l0 && l1 && mr_get_logits(c, 0) == NULL, "%s: logits rows", name);
        if (l0 && l1) {
            CHECK(rel_diff(ref, l0, V) < 1e-4, "%s: seq 0 in a shared batch: %g", name, rel_diff(ref, l0, V));
            CHECK(rel_diff(ref2, l1, V) < 1e-4, "%s: seq 1 in a shared batch: %g", name, rel_diff(ref2, l1, V));
        }
        CHECK(mr_kv_seq_pos_max(c, 0) == N - 1 && mr_kv_seq_pos_max(c, 1) == N - 10, "%s: pos_max", name);
        CHECK(mr_kv_used_cells(c) == n, "%s: used cells %d != %d", name, mr_kv_used_cells(c), n);
        /* kv_seq_rm then re-decode the tail of seq 0 */
        CHECK(mr_kv_seq_rm(c, 0, 20, -1) == 0, "seq_rm");
        CHECK(mr_kv_seq_pos_max(c, 0) == 19, "%s: pos_max after rm = %d", name, mr_kv_seq_pos_max(c, 0));
        CHECK(run_prompt(c, toks + 20, N - 20, 0, 20, got, V) == 0, "%s: re-decode", name);
        CHECK(rel_diff(ref, got, V) < 1e-4, "%s: after seq_rm + re-decode: %g", name, rel_diff(ref, got, V));
        /* kv_seq_cp: seq 1 := seq 0, then the same next token on both */
        CHECK(mr_kv_seq_rm(c, 1, -1, -1) == 0 && mr_kv_seq_pos_max(c, 1) == -1, "%s: seq_rm all of seq 1", name);
        CHECK(mr_kv_seq_cp(c, 0, 1, -1, -1) == 0, "seq_cp");
        mr_token nt = toks[N];
        CHECK(run_prompt(c, &nt, 1, 1, N, got, V) == 0, "%s: decode on copied seq", name);
        CHECK(run_prompt(c, &nt, 1, 0, N, ref2, V) == 0, "%s: decode on seq 0", name);
        CHECK(rel_diff(ref2, got, V) < 1e-4, "%s: seq_cp: %g", name, rel_diff(ref2, got, V));
        mr_kv_clear(c);
        CHECK(mr_kv_used_cells(c) == 0 && mr_kv_seq_pos_max(c, 0) == -1, "clear");
        mr_ctx_free(c);
    }

    /* errors, not crashes */
    c = ctx(m, 32, 32, 16, 1, 0);
    if (c) {
        mr_token bad = V;
        mr_batch b = {.n_tokens = 1, .token = &bad};
        CHECK(mr_decode(c, &b) == -1 && strstr(mr_last_error(), "vocabulary"), "bad token: %s", mr_last_error());
        int32_t s = 3;
        b = (mr_batch){.n_tokens = 1, .token = toks, .seq = &s};
        CHECK(mr_decode(c, &b) == -1 && strstr(mr_last_error(), "seq"), "bad seq: %s", mr_last_error());
        CHECK(run_prompt(c, toks, 40, 0, 0, NULL, V) == -1 && strstr(mr_last_error(), "context"),
              "prompt longer than the context must fail: %s", mr_last_error());
        printf("  (expected error: %s)\n", mr_last_error());
        CHECK(run_prompt(c, toks, 30, 0, 0, NULL, V) == 0, "30 of 32: %s", mr_last_error());
        CHECK(run_prompt(c, toks + 30, 3, 0, 30, NULL, V) == -1 && strstr(mr_last_error(), "full"),
              "cache full: %s", mr_last_error());
        CHECK(mr_kv_used_cells(c) == 30, "failed decode must not take cells");
        mr_ctx_stats st;
        mr_ctx_get_stats(c, &st);
        CHECK(st.weight_bytes_read > 0 && st.n_decode_tokens == 30, "stats: %llu bytes %llu tokens",
              (unsigned long long)st.weight_bytes_read, (unsigned long long)st.n_decode_tokens);
        mr_ctx_free(c);
    }

    /* the scalar reference path agrees with the fast path */
    setenv("MOERUN_REF", "1", 1);
    c = ctx(m, 256, 512, 512, 1, 0);
    unsetenv("MOERUN_REF");
    CHECK(c && run_prompt(c, toks, N, 0, 0, got, V) == 0, "%s: ref decode", name);
    CHECK(rel_diff(ref, got, V) < 5e-2, "%s: reference vs fast: rel diff %g", name, rel_diff(ref, got, V));
    printf("%s: reference vs fast path rel diff %.2e\n", name, rel_diff(ref, got, V));
    mr_ctx_free(c);

    free(ref);
    free(ref2);
    free(got);
    mr_model_free(m);
}

/* A 4096-token micro-batch at context 8192 (scratch sized once, no crash). */
static void test_large(const char *mdir) {
    mr_model *m = load(mdir, "tiny-llama");
    if (!m) return;
    const int n = 4096, V = mr_n_vocab(m);
    mr_token *t = malloc(sizeof(mr_token) * n);
    for (int i = 0; i < n; i++) t[i] = (mr_token)((i * 7919 + 13) % (V - 300) + 100);
    mr_ctx *c = ctx(m, 8192, 4096, 4096, 1, 1);
    float *l = malloc(sizeof(float) * V);
    CHECK(c && run_prompt(c, t, n, 0, 0, l, V) == 0, "4096-token ubatch: %s", mr_last_error());
    CHECK(c && run_prompt(c, t, 1, 0, n, l, V) == 0, "decode after it: %s", mr_last_error());
    mr_ctx_free(c);
    free(l);
    free(t);
    mr_model_free(m);
}

/* Weight layouts at load: the default 8-row interleaving (mapped: an arena; --no-mmap: in
 * place, the same logits bit for bit) puts every weight but the recurrent layers'
 * projections on the fast kernels (those on the exact ones, bit-identical to the GGUF
 * layouts: test_quant_r8), so its logits differ from --no-repack's only by float rounding,
 * as -rtr's (every weight fast) do; on a prompt and a decode step. Also: which weights are
 * repacked on which kernels, and -rtr with --no-repack is refused. */
static void test_layouts(const char *mdir, const char *name, bool recurrent) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s.gguf", mdir, name);
    struct { bool no_repack, mmap, rtr; const char *what; } cfg[] = {
        {true, true, false, "--no-repack"}, {false, true, false, "default"},
        {false, false, false, "--no-mmap"}, {false, true, true, "-rtr"}};
    const int n = 24;
    float *lg[4][2] = {{0}};
    int V = 0;
    bool simd = false;
    for (int i = 0; i < 4; i++) {
        mr_model_params mp = mr_model_default_params();
        mp.path = p;
        mp.no_repack = cfg[i].no_repack, mp.use_mmap = cfg[i].mmap, mp.rtr = cfg[i].rtr;
        mr_model *m = mr_model_load(&mp);
        CHECK(m != NULL, "%s %s: %s", name, cfg[i].what, mr_last_error());
        if (!m) return;
        mr_model_info info;
        mr_model_get_info(m, &info);
        if (i == 0) CHECK(info.n_repacked == 0, "%s --no-repack: %d tensors repacked", name, info.n_repacked);
        if (i == 1) simd = info.n_repacked > 0;
        if (i >= 1) CHECK(info.n_repacked == 0 || info.repack_fast == cfg[i].rtr, "%s %s: kernel family", name, cfg[i].what);
        if (i >= 1 && info.n_repacked > 0) {
            /* default: all fast but the recurrent projections; -rtr: all fast */
            if (cfg[i].rtr || !recurrent)
                CHECK(info.n_repacked_fast == info.n_repacked, "%s %s: %d of %d fast", name, cfg[i].what,
                      info.n_repacked_fast, info.n_repacked);
            else CHECK(info.n_repacked_fast > 0 && info.n_repacked_fast < info.n_repacked,
                       "%s %s: %d of %d repacked tensors on the fast kernels", name, cfg[i].what,
                       info.n_repacked_fast, info.n_repacked);
        }
        V = mr_n_vocab(m);
        mr_token toks[32];
        for (int t = 0; t < n + 1; t++) toks[t] = (mr_token)((t * 7919 + 13) % (V - 300) + 100);
        mr_ctx *c = ctx(m, 256, 64, 64, 1, 0);
        lg[i][0] = malloc(sizeof(float) * V), lg[i][1] = malloc(sizeof(float) * V);
        CHECK(c && run_prompt(c, toks, n, 0, 0, lg[i][0], V) == 0, "%s %s prompt: %s", name, cfg[i].what, mr_last_error());
        CHECK(c && run_prompt(c, toks + n, 1, 0, n, lg[i][1], V) == 0, "%s %s step", name, cfg[i].what);
        mr_ctx_free(c);
        mr_model_free(m);
    }
    printf("%s: %s\n", name, simd ? "weights repacked (SIMD kernels)" : "nothing repacked on this CPU");
    for (int s = 0; s < 2; s++) {
        CHECK(!memcmp(lg[2][s], lg[1][s], sizeof(float) * V), "%s: in-place repack logits differ from the arena's (%s)",
              name, s ? "decode" : "prompt");
        /* as the reference-vs-fast bound of test_model: random MoE nets amplify rounding */
        const double dd = rel_diff(lg[0][s], lg[1][s], V), d = rel_diff(lg[0][s], lg[3][s], V);
        CHECK(dd < 5e-2, "%s: default layout logits off --no-repack's by %.3g (%s)", name, dd, s ? "decode" : "prompt");
        CHECK(d < 5e-2, "%s: -rtr logits off by %.3g (%s)", name, d, s ? "decode" : "prompt");
        if (s) printf("%s: vs --no-repack rel diff: default %.2e, -rtr %.2e\n", name, dd, d);
    }
    for (int i = 0; i < 4; i++) free(lg[i][0]), free(lg[i][1]);
    mr_model_params mp = mr_model_default_params();
    mp.path = p;
    mp.rtr = mp.no_repack = true;
    mr_model *m = mr_model_load(&mp);
    CHECK(m == NULL && strstr(mr_last_error(), "-rtr"), "-rtr with --no-repack refused: %s", mr_last_error());
    mr_model_free(m);
}

/* A decode step over more than 512 cells with flash splits the cache into parts merged at the
 * end (cpu_attn_split): the last token decoded alone agrees with it decoded inside the prompt's
 * last micro-batch (no split), and the logits do not depend on the thread count (the parts are
 * the same whatever it is). */
static void test_split(const char *mdir, const char *name) {
    /* the decode split against the same token inside a prompt: for MLA the prompt must run the
     * absorbed form too (the prompt form rounds differently: test_mla_prompt) */
    setenv("MOERUN_MLA_PROMPT", "0", 1);
    mr_model *m = load(mdir, name);
    unsetenv("MOERUN_MLA_PROMPT");
    if (!m) return;
    const int V = mr_n_vocab(m), N = 700;
    mr_token *toks = malloc(sizeof(mr_token) * N);
    for (int i = 0; i < N; i++) toks[i] = (mr_token)((i * 7919 + 13) % (V - 300) + 100);
    float *whole = malloc(sizeof(float) * V), *split = malloc(sizeof(float) * V), *split3 = malloc(sizeof(float) * V);
    mr_ctx *c = ctx(m, 1024, 1024, 512, 1, 1);
    CHECK(c && run_prompt(c, toks, N, 0, 0, whole, V) == 0, "%s: %d-token prompt (fa): %s", name, N, mr_last_error());
    mr_ctx_free(c);
    for (int nt = 2; nt <= 3; nt++) {
        mr_ctx_params cp = mr_ctx_default_params();
        cp.n_ctx = 1024, cp.n_batch = 1024, cp.n_ubatch = 512, cp.n_seq_max = 1, cp.n_threads = nt, cp.flash_attn = 1;
        c = mr_ctx_new(m, &cp);
        CHECK(c != NULL, "ctx: %s", mr_last_error());
        float *out = nt == 2 ? split : split3;
        CHECK(c && run_prompt(c, toks, N - 1, 0, 0, NULL, V) == 0 && run_prompt(c, toks + N - 1, 1, 0, N - 1, out, V) == 0,
              "%s: prompt then one decode step (%d threads): %s", name, nt, mr_last_error());
        mr_ctx_free(c);
    }
    const double d = rel_diff(whole, split, V);
    CHECK(d < 1e-4, "%s: decode step split over cells vs inside the prompt: rel diff %g", name, d);
    CHECK(memcmp(split, split3, sizeof(float) * V) == 0, "%s: split decode step differs between 2 and 3 threads", name);
    free(toks), free(whole), free(split), free(split3);
    mr_model_free(m);
}

/* Decode n tokens of toks (from position pos0) as one batch; the MLA prompt-form passes it ran. */
static uint64_t mla_passes(mr_ctx *c, const mr_token *toks, int n, int pos0, float *last, int V) {
    mr_ctx_reset_stats(c);
    CHECK(run_prompt(c, toks, n, 0, pos0, last, V) == 0, "decode %d tokens at %d: %s", n, pos0, mr_last_error());
    mr_ctx_stats st;
    mr_ctx_get_stats(c, &st);
    return st.n_mla_prompt;
}

static void test_mla_prompt(const char *mdir) {
    const char *name = "tiny-deepseek2-lite";
    mr_model *m = load(mdir, name);
    if (!m) return;
    mr_model_info info;
    mr_model_get_info(m, &info);
    const int V = mr_n_vocab(m), N = 300, L = info.n_layer;
    /* the prompt form needs the multi-token attention kernels (AVX-512) on f16 heads: dk 64, dv 32 */
    const cpu_attn_args fa = {.n_head = 8, .n_head_kv = 8, .dk = 64, .dv = 32, .k_type = MR_TYPE_F16,
                              .v_type = MR_TYPE_F16, .n_ctx = 512, .n_cells = 512, .flash = true};
    const bool avail = cpu_attn_multi_tokens(&fa) > 0;
    printf("%s: MLA prompt form %s on this CPU\n", name,
           avail ? "available" : "not available (no multi-token kernels)");
    mr_token *toks = malloc(sizeof(mr_token) * N);
    for (int i = 0; i < N; i++) toks[i] = (mr_token)((i * 4099 + 7) % (V - 300) + 100);
    float *a = malloc(sizeof(float) * V), *b = malloc(sizeof(float) * V);
    mr_ctx *c = ctx(m, 1024, 512, 512, 1, 1);
    if (c) {
        CHECK(mla_passes(c, toks, 16, 0, NULL, V) == 0, "%s: a 16-token micro-batch ran the prompt form", name);
        CHECK(mla_passes(c, toks + 16, 1, 16, NULL, V) == 0, "%s: a decode step ran the prompt form", name);
        const uint64_t n = mla_passes(c, toks + 17, N - 17, 17, a, V);
        CHECK(n == (avail ? (uint64_t)L : 0), "%s: %d-token micro-batch: %llu prompt-form passes, expected %d", name,
              N - 17, (unsigned long long)n, avail ? L : 0);
    }
    mr_ctx_free(c);
    if (avail) { /* head groups of 3, 3 and 2: 0.2 MiB holds 3 heads' f16 K / V of 300 cells (57.6 KB each) */
        setenv("MOERUN_MLA_PROMPT_MIB", "0.2", 1); /* read when the first MLA layer runs */
        c = ctx(m, 1024, 512, 512, 1, 1);
        if (c) {
            mla_passes(c, toks, 16, 0, NULL, V);
            mla_passes(c, toks + 16, 1, 16, NULL, V);
            CHECK(mla_passes(c, toks + 17, N - 17, 17, b, V) == (uint64_t)L, "%s: head groups: prompt form not run",
                  name);
            CHECK(memcmp(a, b, sizeof(float) * V) == 0, "%s: head groups change the logits (rel diff %g)", name,
                  rel_diff(a, b, V));
        }
        mr_ctx_free(c);
        unsetenv("MOERUN_MLA_PROMPT_MIB");
    }
    free(toks), free(a), free(b);
    mr_model_free(m);
}

int main(void) {
    SKIP_UNLESS_SHARED(mdir, "fixtures/models");
    test_layouts(mdir, "tiny-qwen3moe", false);
    test_layouts(mdir, "tiny-deepseek2-lite", false);
    test_layouts(mdir, "tiny-qwen3next", true);
    test_large(mdir);
    test_model(mdir, "tiny-llama");
    test_model(mdir, "tiny-qwen3moe");
    test_model(mdir, "tiny-gemma3");
    test_split(mdir, "tiny-qwen3moe");
    test_split(mdir, "tiny-deepseek2-lite");
    test_mla_prompt(mdir);
    test_split(mdir, "tiny-gemma3");
    /* qwen3next (recurrent state): tests/unit/test_qwen3next.c */
    return check_done();
}
