/*
 * test_gpu_types.c — the weight types of the low-bit and float file types on the device
 * path, end to end: synthetic tiny models (src/synth) in the mixes llama-quantize writes for
 * Q3_K_M and Q2_K (DeepSeek-V3 Q3_K_M is what users offload layers of), IQ4_XS, IQ4_NL and
 * BF16 (the larger unsloth "UD" files keep tensors in BF16), fully offloaded (-ngl 99), held
 * to the CPU forward pass of the same file. The CPU kernels of these types are held to the
 * scalar reference by test_quant; the device's dot products and dequantization by
 * test_cuda_ops (kernels, also on cudasim) and test_cuda_emul (host).
 *
 * The device computes the weights' dot products with Q8_1 activations per 32 and its prompt
 * GEMM in F16; the CPU with Q8_K (or Q8_0) activations and F32 sums. These random nets (8
 * experts, top-2: a rounding that flips one routing choice moves that token's logits far)
 * amplify the difference, more with the coarser mixes: measured on the emulation, median
 * |diff| 0.11 (Q3_K_M), 0.17 (Q2_K), 0.04-0.05 (IQ4_XS, IQ4_NL; Q4_K_M and Q8_0 of the same
 * net: 0.06, 0.04), 0.01 (BF16), DeepSeek Q3_K_M 0.24 (its Q5_K_M: 0.11); p80 up to 0.40, KL
 * up to 0.07, top-1 at least 0.89. So the bars are test_gpu_golden's families' with the median
 * and p80 loosened about 2x (tiny-qwen3moe: top-1 0.80, median 0.25, p80 0.50, KL 0.35;
 * deepseek2: 0.70 / 0.35 / 0.60 / 0.60): a wrong kernel or layout is far outside them (top-1
 * near chance). On a device (or cudasim) the kernels are also held to the emulation, which
 * computes in their formats, at tight bars (measured on cudasim: median 0.012-0.022, p80 at
 * most 0.038, KL at most 0.009). The greedy tokens are compared where the CPU's margin is at
 * least 0.5 (these nets' margins are mostly smaller).
 *
 * The prompts' attention runs in the tiled prompt kernel (MOERUN_CUDA_FA_TILE=1: these
 * prompts alone would not fill a GPU, so by default they take the split kernel).
 *
 * Backend: a CUDA device when there is one (or cudasim's kernels in a -DMOERUN_CUDA_SIM
 * build), else the host emulation of the backend (MOERUN_CUDA_EMU=1). Each case first checks
 * that every layer and the head really run on the device.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "check.h"
#include "golden_case.h"
#include "gpu/gpu_api.h"
#include "moerun.h"
#include "synth_util.h"

typedef struct {
    const char *preset, *ftype;
    uint32_t want_type; /* a weight type the mix must contain (what the case is for) */
    const family *f;
    bool parallel;      /* also: parallel sequences' decode steps in one batch (check_parallel) */
    bool qkv_mix;       /* attn_k Q4_K and attn_v Q6_K (the 30B's Q4_K_M; tiny rows get Q8_0) */
} tcase;

/* against the CPU (see the top) */
static const family k_moe = {"tiny-qwen3moe", 0.80, 0.25, 0.50, 0.35, true, false};
static const family k_mla = {"tiny-deepseek2", 0.70, 0.35, 0.60, 0.60, true, false};
/* the kernels against the emulation: the same number formats, float sums in other orders */
static const family k_same = {"device vs emulation", 0.90, 0.04, 0.07, 0.02, true, false};

static const tcase k_cases[] = {
    {"tiny-qwen3moe", "q3_k_m", MR_TYPE_Q3_K, &k_moe, true, false},
    {"tiny-qwen3moe", "q2_k", MR_TYPE_Q2_K, &k_moe, false, false},
    {"tiny-qwen3moe", "iq4_xs", MR_TYPE_IQ4_XS, &k_moe, false, false},
    {"tiny-qwen3moe", "iq4_nl", MR_TYPE_IQ4_NL, &k_moe, false, false},
    {"tiny-qwen3moe", "bf16", MR_TYPE_BF16, &k_moe, false, false},
    {"tiny-deepseek2", "q3_k_m", MR_TYPE_Q3_K, &k_mla, true, false},
    /* Q4_K q and k with a Q6_K v: one mixed matvec_n launch at decode (against the batch path,
     * which reads them one by one, in check_parallel) */
    {"tiny-qwen3moe", "q4_k_m", MR_TYPE_Q6_K, &k_moe, true, true},
};

static bool plan_has(const synth_plan *pl, uint32_t type) {
    for (int k = 0; k < pl->n_t; k++)
        if (pl->t[k].type == type) return true;
    return false;
}

static mr_model *load(const char *path, int ngl) {
    mr_model_params mp = mr_model_default_params();
    mp.path = path;
    mp.n_gpu_layers = ngl;
    mr_model *m = mr_model_load(&mp);
    CHECK(m != NULL, "load %s (-ngl %d): %s", path, ngl, mr_last_error());
    return m;
}

/* Four sequences' next tokens in one batch (T = 4: the dense weights through the matvec kernels,
 * FG_SMALL_T, the experts as sorted pairs) against each token decoded alone (T = 1: the decode
 * path), after the same prompts: the same kernels' sums, so the same logits up to how the
 * attention splits its cells (measured on the emulation and cudasim: bit for bit; through the F16
 * GEMM instead, as before FG_SMALL_T, max |diff| 0.08 and 0.56 of logits up to 5.7). */
static void check_parallel(mr_model *m, const char *name) {
    enum { S = 4, P = 6 };
    const int V = mr_n_vocab(m);
    float *one = malloc(sizeof(float) * (size_t)V * S), *four = malloc(sizeof(float) * (size_t)V * S);
    for (int pass = 0; pass < 2; pass++) {
        mr_ctx_params cp = mr_ctx_default_params();
        cp.n_ctx = 256;
        cp.n_seq_max = S;
        cp.flash_attn = 1;
        mr_ctx *c = mr_ctx_new(m, &cp);
        CHECK(c != NULL, "%s: parallel context: %s", name, mr_last_error());
        if (!c) break;
        int rc = 0;
        for (int s = 0; s < S && !rc; s++) {
            mr_token t[P];
            int32_t pos[P], seq[P];
            for (int i = 0; i < P; i++) t[i] = (mr_token)((s * 131 + i * 17 + 5) % (V - 8) + 4), pos[i] = i, seq[i] = s;
            const mr_batch b = {.n_tokens = P, .token = t, .pos = pos, .seq = seq};
            rc = mr_decode(c, &b);
        }
        mr_token t[S];
        int32_t pos[S], seq[S];
        int8_t lg[S];
        for (int s = 0; s < S; s++) t[s] = (mr_token)((s * 977 + 31) % (V - 8) + 4), pos[s] = P, seq[s] = s, lg[s] = 1;
        if (pass == 0) /* one at a time */
            for (int s = 0; s < S && !rc; s++) {
                const mr_batch b = {.n_tokens = 1, .token = t + s, .pos = pos + s, .seq = seq + s, .logits = lg};
                rc = mr_decode(c, &b);
                const float *l = rc ? NULL : mr_get_logits(c, 0);
                if (l) memcpy(one + (size_t)s * V, l, sizeof(float) * V);
                else rc = -1;
            }
        else {
            const mr_batch b = {.n_tokens = S, .token = t, .pos = pos, .seq = seq, .logits = lg};
            rc = mr_decode(c, &b);
            for (int s = 0; s < S && !rc; s++) {
                const float *l = mr_get_logits(c, s);
                if (l) memcpy(four + (size_t)s * V, l, sizeof(float) * V);
                else rc = -1;
            }
        }
        CHECK(rc == 0, "%s: parallel decode (pass %d): %s", name, pass, mr_last_error());
        mr_ctx_free(c);
        if (rc) break;
    }
    double mx = 0, d = 0;
    for (size_t i = 0; i < (size_t)V * S; i++) {
        mx = fmax(mx, fabs(one[i]));
        d = fmax(d, fabs(one[i] - four[i]));
    }
    printf("%-30s 4 sequences in one batch vs one at a time: max |diff| %.2e of %.2e\n", name, d, mx);
    CHECK(mx > 0 && d <= 1e-4 * mx, "%s: parallel sequences' logits differ from one at a time: %.3e of %.3e", name, d,
          mx);
    free(one), free(four);
}

static json_t *run(mr_model *m, const mr_token *toks, int n, int ng) {
    mr_ctx_params cp = mr_ctx_default_params();
    cp.n_ctx = 512;
    cp.n_threads = 2;
    cp.flash_attn = 1;
    json_t *j = golden_run(m, &cp, toks, n, ng, 32, NULL);
    CHECK(j != NULL, "run: %s", mr_last_error());
    return j;
}

/* ours against ref at f's bars */
static void compare(const char *name, const char *what, const json_t *ref, const json_t *ours, const family *f) {
    if (!ref || !ours) return;
    golden_stats s;
    CHECK(golden_compare(ref, ours, &s) == 0, "%s: compare: %s", name, mr_last_error());
    int checked = 0;
    const int bad = golden_greedy_check(ref, ours, 0.5, 4, &checked);
    const bool ok = s.top1 >= f->top1 && s.med <= f->med && s.p80 <= f->p80 && s.kl <= f->kl && bad < 0;
    printf("%-30s vs %-3s: top1=%.4f med=%.4f p80=%.4f kl=%.4f greedy %d/%d %s\n", name, what, s.top1, s.med, s.p80,
           s.kl, bad < 0 ? checked : bad, checked, ok ? "ok" : "FAIL");
    CHECK(ok, "%s: not the %s's logits (bars %.2f %.3f %.3f %.3f, greedy token %d)", name, what, f->top1, f->med,
          f->p80, f->kl, bad);
}

static void run_case(const tcase *c, const char *dir, const char *backend) {
    char path[512], name[128];
    snprintf(path, sizeof path, "%s/%s-%s.gguf", dir, c->preset, c->ftype);
    snprintf(name, sizeof name, "%s %s -ngl 99", c->preset, c->ftype);
    synth_plan pl;
    if (synth_plan_build(&pl, c->preset, 0, 0) != 0) {
        CHECK(false, "%s: plan: %s", name, mr_geterr());
        return;
    }
    const int ft = synth_ftype_from_name(c->ftype);
    CHECK(ft >= 0 && synth_plan_set_ftype(&pl, ft) == 0, "%s: file type", name);
    for (int k = 0; c->qkv_mix && k < pl.n_t; k++) {
        if (strstr(pl.t[k].name, "attn_k.weight")) pl.t[k].type = MR_TYPE_Q4_K;
        if (strstr(pl.t[k].name, "attn_v.weight")) pl.t[k].type = MR_TYPE_Q6_K;
    }
    CHECK(plan_has(&pl, c->want_type), "%s: the mix has no %s weights", name, mr_type_name(c->want_type));
    const int64_t V = pl.n_vocab;
    const int wrc = write_plan(&pl, path, NULL, 11);
    synth_plan_free(&pl);
    CHECK(wrc == 0, "%s: write: %s", name, mr_geterr());
    if (wrc) return;

    enum { N = 48, NG = 4 };
    mr_token toks[N];
    for (int i = 0; i < N; i++) toks[i] = (mr_token)((i * 7919 + 101) % (V - 8) + 4);
    json_t *ref = NULL, *dev = NULL, *emu = NULL;
    mr_model *m = load(path, 0);
    if (m) ref = run(m, toks, N, NG);
    mr_model_free(m);
    if ((m = load(path, 99))) {
        mr_ctx_params cp = mr_ctx_default_params();
        cp.n_ctx = 512;
        mr_ctx *ctx = mr_ctx_new(m, &cp);
        CHECK(ctx != NULL, "%s: context: %s", name, mr_last_error());
        if (ctx) {
            mr_ctx_offload_info oi;
            mr_ctx_get_offload(ctx, &oi);
            CHECK(oi.all_dev && oi.n_layers_dev > 0 && oi.output_dev && !strcmp(oi.backend, backend),
                  "%s: %d layers on %s devices, head %d, all %d", name, oi.n_layers_dev, oi.backend, oi.output_dev,
                  oi.all_dev);
            mr_ctx_free(ctx);
        }
        setenv("MOERUN_CUDA_FA_TILE", "1", 1); /* the prompt's attention in the tiled kernel, whatever the size */
        dev = run(m, toks, N, NG);
        unsetenv("MOERUN_CUDA_FA_TILE");
        if (c->parallel) check_parallel(m, name);
        if (strcmp(backend, "emu")) { /* the kernels: also against the emulation, in their own formats */
            setenv("MOERUN_CUDA_EMU", "1", 1);
            emu = run(m, toks, N, NG);
            unsetenv("MOERUN_CUDA_EMU");
        }
    }
    mr_model_free(m);
    compare(name, "CPU", ref, emu ? emu : dev, c->f);
    if (emu) compare(name, "emu", emu, dev, &k_same);
    json_decref(emu);
    json_decref(ref);
    json_decref(dev);
    unlink(path);
}

int main(void) {
    const gpu_api *api = gpu_api_get();
    if (!api || api->device_count() == 0) {
        setenv("MOERUN_CUDA_EMU", "1", 1);
        api = gpu_api_get();
    }
    CHECK(api != NULL && api->device_count() > 0, "no device backend (the emulation should always be there)");
    if (!api || api->device_count() == 0) return check_done();
    printf("backend: %s\n", api->name);
    char dir[] = "/tmp/moerun-gpu-types-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    for (size_t i = 0; i < MR_ARRAY_LEN(k_cases); i++) run_case(&k_cases[i], dir, api->name);
    rmdir(dir);
    return check_done();
}
