/*
 * cmd_bench.c — `moerun bench`: llama-bench compatible benchmark.
 *
 *   moerun bench -m MODEL [-p 512] [-n 128] [-pg 512,128] [-d 0] [-r 5] [-t N,...]
 *                [-b 2048] [-ub 512] [-ctk f16] [-ctv f16] [-fa 0] [-ngl 0] [-ot RE=DEV]
 *                [--n-cpu-moe N] [-cmoe 0|1] [-o md|csv|json|jsonl] [--progress]
 *   moerun bench --bandwidth [-t N,...]          measured read bandwidth (GB/s)
 *   moerun bench --compare A.json B.json          side-by-side of two result files
 *
 * Semantics as llama-bench: a pp test decodes p prompt tokens in batches of -b
 * after a warm-up run; a tg test generates n tokens one at a time; pg is the
 * prompt then the generation, timed as a whole; with -d the KV cache is first
 * filled with d tokens (not timed), once per test: after each repetition the
 * cache is rewound to the depth (the state a clear and refill would give).
 * --interleave runs a repetition of every test of a model load in turn.
 * Token ids are pseudo-random but fixed. Per test we report every repetition's
 * t/s, the roofline (weight bytes read per second over the measured memory
 * bandwidth), the peak RSS, and the build and machine.
 *
 * Flags take comma lists (llama-bench's "1,2,4", "1-8", "1-8+2") and may be
 * repeated; every combination is run. tools/args.h parses single values, so
 * bench parses its own flags.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ab/ab.h"
#include "base/base.h"
#include "bench/bench.h"
#include "commands.h"

enum { OUT_MD, OUT_CSV, OUT_JSON, OUT_JSONL };

typedef struct {
    int *v, n;
    bool set; /* given by the user: the first use replaces the default */
} ilist;

typedef struct {
    char **models;
    int n_models;
    ilist p, n, d, t, b, ub, ctk, ctv, fa, ngl, ncmoe, rtr, nr;
    int *pg, n_pg; /* pairs */
    char **ot;
    int n_ot;
    char ts[256], dev[256]; /* -ts / -dev for every configuration ('/' or ',' between devices) */
    const char *sm;
    int reps, out;
    bool progress, warmup, mmap;
    bool interleave;    /* --interleave: a repetition of every test of a model load in turn */
    bool bandwidth_only;
    double bw_gbs;      /* --bandwidth-gbs (0: measure or cache) */
    int bw_mib;         /* buffer size */
    bool bw_none;       /* --no-bandwidth */
    bool bw_cached;     /* --bandwidth-cached: reuse the cached measurement */
    const char *cmp_a, *cmp_b;
} opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: moerun bench -m MODEL [options]\n"
            "       moerun bench --bandwidth [-t N,...] [--bandwidth-mib 1024]\n"
            "       moerun bench --compare A.json B.json\n"
            "\n"
            "llama-bench compatible benchmark. List flags take comma lists (\"1,2,4\", ranges\n"
            "\"1-8\" or \"1-8+2\") and may be repeated; every combination is run.\n"
            "  -m FILE              model (repeatable)\n"
            "  -p N,...             prompt sizes (default 512; 0 = none)\n"
            "  -n N,...             generation sizes (default 128; 0 = none)\n"
            "  -pg P,N              prompt then generation, timed together (repeatable)\n"
            "  -d N,...             KV cache depth filled before each test, not timed (default 0)\n"
            "  -r N                 repetitions (default 5)\n"
            "  -t N,...             threads (default: physical cores)\n"
            "  -b N,... / -ub N,... batch / micro-batch size (default 2048 / 512)\n"
            "  -ctk T,... -ctv T,... KV cache types: f16 f32 q8_0 q4_0 (default f16)\n"
            "  -fa 0|1|auto,...     flash attention (default 0)\n"
            "  -ngl N,...           layers on the GPU (default 0)\n"
            "  -ot REGEX=DEV,...    tensor overrides (repeatable: each value is one configuration)\n"
            "  --n-cpu-moe N,...    keep the experts of the first N layers on the CPU (-ncmoe; -1: all)\n"
            "  -cmoe 0|1,...        keep all experts on the CPU (--cpu-moe; 1 is --n-cpu-moe -1)\n"
            "  -ts A/B  -sm MODE  -dev CUDA0/CUDA1   split over devices (every configuration)\n"
            "  --no-mmap            read the model instead of mapping it\n"
            "  -rtr 0|1,...         1: repack every weight for the fast kernels, in place (default: all\n"
            "                       but recurrent projections; as ik_llama.cpp's -rtr, implies --no-mmap)\n"
            "  -nr 0|1,...          1: keep the GGUF weight layouts (ggml's float rounding; default 0:\n"
            "                       interleave by 8 rows)\n"
            "  --no-warmup          skip the warm-up run\n"
            "  --interleave         a repetition of every test in turn (ABBA order; all their contexts\n"
            "                       at once), and each depth's t/s over depth 0's rep by rep on stderr\n"
            "  -o md|csv|json|jsonl output format (default md)\n"
            "  --progress           print a progress line for every step on stderr\n"
            "  --bandwidth          only measure memory read bandwidth for each -t and print GB/s\n"
            "  --bandwidth-gbs X    use X GB/s as the roofline's bandwidth instead of measuring\n"
            "  --bandwidth-mib N    buffer size of the bandwidth measurement (default 1024)\n"
            "  --no-bandwidth       no bandwidth measurement (roofline not reported)\n"
            "  --bandwidth-cached   use the last measured bandwidth instead of measuring (~1 s)\n"
            "  --compare A B        compare two result files (-o json or jsonl) test by test\n"
            "\n"
            "The bandwidth is measured in every run, before the tests and again right before and after\n"
            "each repetition (256 MiB, ~0.1 s): a VM's bandwidth can jump between levels within seconds,\n"
            "so a repetition is compared with what the machine gave around it. The first measurement is\n"
            "cached in ~/.cache/moerun/bandwidth.tsv per CPU model and thread count. Roofline = bytes\n"
            "read per token (weights, with experts as routed, and the KV-cache rows a decode step's\n"
            "attention reads) x tokens/s / bandwidth: the median over repetitions of each one's rate over\n"
            "the larger of its two measurements (JSON/CSV roofline_best: the mean rate over the best\n"
            "bandwidth of the whole test; the only figure with --bandwidth-gbs or --bandwidth-cached).\n"
            "\"~\" marks an estimate from the model's active size when the engine did not count.\n"
            "Tests whose probes spread by more than 25 %% (highest / lowest) are listed on stderr after\n"
            "the table: their t/s moved with the machine, so compare them by the roofline column.\n");
}

static int usage_err(const char *fmt, const char *a) {
    fprintf(stderr, "moerun bench: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, " (see moerun bench --help)\n");
    return 2;
}

static int ilist_default(ilist *l, int v) {
    l->v = malloc(sizeof *l->v);
    if (!l->v) return -1;
    l->v[0] = v;
    l->n = 1;
    return 0;
}

static int ilist_parse(ilist *l, const char *flag, const char *s, int lo, int hi) {
    if (!l->set) {
        l->n = 0;
        l->set = true;
    }
    return bench_parse_int_list(flag, s, lo, hi, &l->v, &l->n);
}

static int parse_fa(ilist *l, const char *s) {
    if (!l->set) {
        l->n = 0;
        l->set = true;
    }
    char buf[64];
    for (const char *p = s;;) {
        size_t k = strcspn(p, ",");
        if (k == 0 || k >= sizeof buf) return -1;
        memcpy(buf, p, k);
        buf[k] = 0;
        int v;
        if (!strcmp(buf, "1") || !strcmp(buf, "on")) v = 1;
        else if (!strcmp(buf, "0") || !strcmp(buf, "off")) v = 0;
        else if (!strcmp(buf, "auto") || !strcmp(buf, "-1")) v = -1;
        else return -1;
        int *a = realloc(l->v, (size_t)(l->n + 1) * sizeof *a);
        if (!a) return -1;
        a[l->n++] = v;
        l->v = a;
        if (!p[k]) return 0;
        p += k + 1;
    }
}

/* Returns -1 to run, otherwise the exit code (0 after --help, 2 usage error). */
static int parse(opts *o, int argc, char **argv) {
    int phys = mr_cpu_physical_cores();
    if (ilist_default(&o->p, 512) || ilist_default(&o->n, 128) || ilist_default(&o->d, 0) ||
        ilist_default(&o->t, phys) || ilist_default(&o->b, 2048) || ilist_default(&o->ub, 512) ||
        ilist_default(&o->ctk, MR_KV_F16) || ilist_default(&o->ctv, MR_KV_F16) || ilist_default(&o->fa, 0) ||
        ilist_default(&o->ngl, 0) || ilist_default(&o->ncmoe, 0) || ilist_default(&o->rtr, 0) ||
        ilist_default(&o->nr, 0))
        return 1;
    o->reps = 5;
    o->warmup = true;
    o->mmap = true;
    o->bw_mib = 1024;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        /* flags without a value */
        if (!strcmp(a, "--progress")) { o->progress = true; continue; }
        if (!strcmp(a, "--no-warmup")) { o->warmup = false; continue; }
        if (!strcmp(a, "--no-mmap")) { o->mmap = false; continue; }
        if (!strcmp(a, "--interleave")) { o->interleave = true; continue; }
        if (!strcmp(a, "--bandwidth")) { o->bandwidth_only = true; continue; }
        if (!strcmp(a, "--no-bandwidth")) { o->bw_none = true; continue; }
        if (!strcmp(a, "--bandwidth-cached")) { o->bw_cached = true; continue; }
        if (!strcmp(a, "--compare")) {
            if (i + 2 >= argc) return usage_err("%s needs two result files", a);
            o->cmp_a = argv[++i];
            o->cmp_b = argv[++i];
            continue;
        }
        if (a[0] != '-') return usage_err("unexpected argument '%s'", a);
        if (i + 1 >= argc) return usage_err("%s needs a value", a);
        const char *v = argv[++i];
        int rc = 0;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) rc = bench_strv_push(&o->models, &o->n_models, v);
        else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) rc = ilist_parse(&o->p, a, v, 0, 1 << 20);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) rc = ilist_parse(&o->n, a, v, 0, 1 << 20);
        else if (!strcmp(a, "-d") || !strcmp(a, "--n-depth")) rc = ilist_parse(&o->d, a, v, 0, 1 << 22);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) rc = ilist_parse(&o->t, a, v, 1, 4096);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) rc = ilist_parse(&o->b, a, v, 1, 1 << 20);
        else if (!strcmp(a, "-ub") || !strcmp(a, "--ubatch-size")) rc = ilist_parse(&o->ub, a, v, 1, 1 << 20);
        else if (!strcmp(a, "-ngl") || !strcmp(a, "--n-gpu-layers")) rc = ilist_parse(&o->ngl, a, v, 0, 100000);
        else if (!strcmp(a, "--n-cpu-moe") || !strcmp(a, "-ncmoe")) rc = ilist_parse(&o->ncmoe, a, v, -1, 100000);
        else if (!strcmp(a, "-cmoe") || !strcmp(a, "--cpu-moe")) { /* 0,1: 1 = every layer's experts (-1) */
            const int n0 = o->ncmoe.set ? o->ncmoe.n : 0;
            rc = ilist_parse(&o->ncmoe, a, v, 0, 1);
            for (int k = n0; rc == 0 && k < o->ncmoe.n; k++) o->ncmoe.v[k] = -o->ncmoe.v[k];
        }
        else if (!strcmp(a, "-rtr") || !strcmp(a, "--run-time-repack")) rc = ilist_parse(&o->rtr, a, v, 0, 1);
        else if (!strcmp(a, "-nr") || !strcmp(a, "--no-repack")) rc = ilist_parse(&o->nr, a, v, 0, 1);
        else if (!strcmp(a, "-ctk") || !strcmp(a, "--cache-type-k")) {
            if (!o->ctk.set) o->ctk.n = 0, o->ctk.set = true;
            rc = bench_parse_kv_list(a, v, &o->ctk.v, &o->ctk.n);
        } else if (!strcmp(a, "-ctv") || !strcmp(a, "--cache-type-v")) {
            if (!o->ctv.set) o->ctv.n = 0, o->ctv.set = true;
            rc = bench_parse_kv_list(a, v, &o->ctv.v, &o->ctv.n);
        } else if (!strcmp(a, "-fa") || !strcmp(a, "--flash-attn")) {
            if (parse_fa(&o->fa, v)) return usage_err("-fa: expected 0, 1, on, off or auto, got '%s'", v);
        } else if (!strcmp(a, "-ts") || !strcmp(a, "--tensor-split") || !strcmp(a, "-dev") ||
                   !strcmp(a, "--device")) {
            char *dst = !strcmp(a, "-ts") || !strcmp(a, "--tensor-split") ? o->ts : o->dev;
            if (strlen(v) >= sizeof o->ts) return usage_err("%s: value too long", a);
            snprintf(dst, sizeof o->ts, "%s", v);
            for (char *q = dst; *q; q++)
                if (*q == '/') *q = ','; /* llama-bench writes 75/25 */
        } else if (!strcmp(a, "-sm") || !strcmp(a, "--split-mode")) {
            if (strcmp(v, "none") && strcmp(v, "layer") && strcmp(v, "row"))
                return usage_err("-sm: '%s' is not a split mode (expected none, layer or row)", v);
            o->sm = v;
        } else if (!strcmp(a, "-ot") || !strcmp(a, "--override-tensor")) {
            if (!strchr(v, '=')) return usage_err("-ot: expected REGEX=DEVICE, got '%s'", v);
            rc = bench_strv_push(&o->ot, &o->n_ot, v);
        } else if (!strcmp(a, "-pg")) {
            int *pr = NULL, npr = 0;
            if (bench_parse_int_list(a, v, 0, 1 << 20, &pr, &npr) || npr != 2 || pr[0] <= 0 || pr[1] <= 0) {
                free(pr);
                return usage_err("-pg: expected P,N with both positive, got '%s'", v);
            }
            int *x = realloc(o->pg, (size_t)(o->n_pg + 1) * 2 * sizeof *x);
            if (!x) return 1;
            x[o->n_pg * 2] = pr[0];
            x[o->n_pg * 2 + 1] = pr[1];
            o->pg = x;
            o->n_pg++;
            free(pr);
        } else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) {
            char *e;
            long r = strtol(v, &e, 10);
            if (*e || r < 1 || r > 100000) return usage_err("-r: expected a positive integer, got '%s'", v);
            o->reps = (int)r;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!strcmp(v, "md")) o->out = OUT_MD;
            else if (!strcmp(v, "csv")) o->out = OUT_CSV;
            else if (!strcmp(v, "json")) o->out = OUT_JSON;
            else if (!strcmp(v, "jsonl")) o->out = OUT_JSONL;
            else return usage_err("-o: expected md, csv, json or jsonl, got '%s'", v);
        } else if (!strcmp(a, "--bandwidth-gbs")) {
            char *e;
            o->bw_gbs = strtod(v, &e);
            if (*e || !(o->bw_gbs > 0) || !isfinite(o->bw_gbs))
                return usage_err("--bandwidth-gbs: expected a positive number, got '%s'", v);
        } else if (!strcmp(a, "--bandwidth-mib")) {
            char *e;
            long m = strtol(v, &e, 10);
            if (*e || m < 1 || m > (1 << 20)) return usage_err("--bandwidth-mib: expected a positive integer, got '%s'", v);
            o->bw_mib = (int)m;
        } else {
            return usage_err("unknown option '%s'", a);
        }
        if (rc) {
            fprintf(stderr, "moerun bench: %s (see moerun bench --help)\n", mr_geterr());
            return 2;
        }
    }
    if (o->cmp_a || o->bandwidth_only) return -1;
    if (o->n_models == 0) return usage_err("%s", "-m MODEL is required");
    if (o->n_ot == 0 && bench_strv_push(&o->ot, &o->n_ot, "")) return 1;
    return -1;
}

static void opts_free(opts *o) {
    for (int i = 0; i < o->n_models; i++) free(o->models[i]);
    for (int i = 0; i < o->n_ot; i++) free(o->ot[i]);
    free(o->models), free(o->ot), free(o->pg);
    ilist *ls[] = {&o->p, &o->n, &o->d, &o->t, &o->b, &o->ub, &o->ctk, &o->ctv, &o->fa, &o->ngl, &o->ncmoe, &o->rtr, &o->nr};
    for (size_t i = 0; i < MR_ARRAY_LEN(ls); i++) free(ls[i]->v);
}

/* ---- bandwidth ------------------------------------------------------------------------ */
/* The bandwidth for n threads: --bandwidth-gbs, the cache, or a measurement
 * (then cached; the cache is read only with --bandwidth-cached). 0 when unknown. */
static double bandwidth_for(const opts *o, int n_threads, bool force_measure) {
    if (o->bw_gbs > 0) return o->bw_gbs;
    if (o->bw_none) return 0;
    double g;
    if (!force_measure && o->bw_cached && bench_bw_cache_get(n_threads, &g) == 0) {
        fprintf(stderr, "moerun bench: memory bandwidth %.2f GB/s with %d thread%s (cached in ~/.cache/moerun)\n", g,
                n_threads, n_threads == 1 ? "" : "s");
        return g;
    }
    if (isatty(2)) fprintf(stderr, "moerun bench: measuring memory bandwidth with %d thread%s...\r", n_threads,
                           n_threads == 1 ? "" : "s");
    g = bench_bandwidth_gbs(n_threads, (size_t)o->bw_mib << 20, 5);
    if (g <= 0) {
        fprintf(stderr, "moerun bench: bandwidth measurement failed: %s\n", mr_geterr());
        return 0;
    }
    fprintf(stderr, "moerun bench: memory bandwidth %.2f GB/s with %d thread%s (measured, %d MiB, best of 5)\n", g,
            n_threads, n_threads == 1 ? "" : "s", o->bw_mib);
    if (bench_bw_cache_put(n_threads, g)) MR_WARN("%s", mr_geterr());
    return g;
}

/* Whether a test measures the bandwidth around its repetitions (run_test's probes): only when the
 * run measures (not with --bandwidth-gbs, --bandwidth-cached or --no-bandwidth) and the probes'
 * buffer can be kept out of the test's peak RSS. */
static bool measures_near(const opts *o, double first, bool rss_resettable) {
    return !(o->bw_gbs > 0 || o->bw_none || o->bw_cached || first <= 0 || !rss_resettable);
}

/* --bandwidth: measure for each -t, print, and refresh the cache. */
static int cmd_bandwidth(const opts *o) {
    bench_env e;
    bench_env_fill(&e);
    printf("CPU: %s (%d cores, %d threads), kernel: %s, buffer %d MiB, best of 5\n", e.cpu_model,
           e.cores_physical, e.cores_logical, mr_cpu()->avx2 ? "AVX2" : "scalar", o->bw_mib);
    fflush(stdout);
    for (int i = 0; i < o->t.n; i++) {
        double g = bench_bandwidth_gbs(o->t.v[i], (size_t)o->bw_mib << 20, 5);
        if (g <= 0) {
            fprintf(stderr, "moerun bench: bandwidth measurement failed: %s\n", mr_geterr());
            return 1;
        }
        printf("threads %3d: %8.2f GB/s\n", o->t.v[i], g);
        fflush(stdout);
        if (bench_bw_cache_put(o->t.v[i], g)) MR_WARN("%s", mr_geterr());
    }
    return 0;
}

/* ---- one test ------------------------------------------------------------------------------ */
typedef struct {
    mr_model *model;
    mr_model_info info;
    const char *path;
    int n_vocab;
} loaded;

/* Per repetition, the bandwidth is measured right before and right after its timed part (256 MiB,
 * best of 3, about 0.1 s each; after a depth fill, since that takes long): the larger of the two
 * is its roofline's denominator. The probe's buffer is freed before the peak RSS restarts, so it
 * does not count in the test's peak (*peak: the highest peak seen between probes). */
#define PROBE_MIB 256
static double probe_bw(int n_threads, uint64_t *peak) {
    const uint64_t p = mr_peak_rss_bytes();
    if (p > *peak) *peak = p;
    const double g = bench_bandwidth_gbs(n_threads, (size_t)PROBE_MIB << 20, 3);
    (void)mr_peak_rss_reset();
    return g;
}

/* One test across its repetitions: its context (the depth filled once, the timed tokens removed
 * after each repetition) and what its repetitions counted. */
typedef struct {
    bench_result r;
    mr_ctx *c;
    mr_token *toks;
    bool probe;  /* a CPU run that measures bandwidth around each repetition (and can reset the peak RSS) */
    bool filled; /* the depth is in the cache */
    double bytes, kv_bytes, tokens;
    double streamed, stream_s; /* RAM expert bytes streamed to devices in the timed parts, and their seconds */
} test_run;

/* Create t's context and tokens and run the warm-up. 0 / -1. */
static int test_open(const opts *o, loaded *L, test_run *t, bench_progress *pr, int idx, int total) {
    bench_result *r = &t->r;
    mr_ctx_params cp = mr_ctx_default_params();
    cp.n_ctx = r->n_depth + r->n_prompt + r->n_gen;
    if (cp.n_ctx < 16) cp.n_ctx = 16;
    cp.n_batch = r->n_batch;
    cp.n_ubatch = r->n_ubatch;
    cp.n_threads = r->n_threads;
    cp.type_k = r->type_k;
    cp.type_v = r->type_v;
    cp.flash_attn = r->flash_attn;
    if (!(t->c = mr_ctx_new(L->model, &cp))) return -1;
    mr_ctx_offload_info oi;
    mr_ctx_get_offload(t->c, &oi);
    if (oi.n_layers_dev > 0 || oi.output_dev) {
        /* the devices' roofline when all runs there; a hybrid run has no single roofline */
        snprintf(r->backend, sizeof r->backend, "%s", strcmp(oi.backend, "cuda") ? "EMU" : "CUDA");
        r->dev_bw_gbs = oi.all_dev ? (oi.dev_bw_gbs > 0 ? oi.dev_bw_gbs : NAN) : NAN;
        t->probe = false; /* the devices' bandwidth is the roofline's (or none) */
    }
    const int n_tok = r->n_depth + r->n_prompt + r->n_gen;
    if (!(t->toks = mr_malloc((size_t)(n_tok > 0 ? n_tok : 1) * sizeof *t->toks))) return -1;
    bench_random_tokens(t->toks, n_tok, L->n_vocab, 0x5eed + (uint64_t)n_tok);
    if (!o->warmup) return 0;
    char test[64];
    bench_test_name(&t->r, test, sizeof test);
    bench_progress_update(pr, "test %d/%d %s t=%d: warm-up", idx, total, test, r->n_threads);
    const mr_token *prompt = t->toks + r->n_depth, *gen = prompt + r->n_prompt;
    if (r->n_prompt > 0 && bench_decode_prompt(t->c, prompt, r->n_prompt, 0, r->n_batch)) return -1;
    if (r->n_gen > 0 && bench_decode_gen(t->c, gen, 1, r->n_prompt)) return -1;
    return 0;
}

/* Repetition rep of t: the depth fill the first time (not timed; a checkpoint there for recurrent
 * state), then the timed part, then the cache rewound to the depth. *bw_last: the last bandwidth
 * probe (0: none yet), the before-probe of a repetition that no depth fill precedes. *peak: the peak
 * RSS before a probe reset it. 0 / -1. */
static int test_rep(const opts *o, test_run *t, bench_progress *pr, int idx, int total, int rep, double *bw_last,
                    uint64_t *peak) {
    bench_result *r = &t->r;
    mr_ctx *c = t->c;
    const mr_token *prompt = t->toks + r->n_depth, *gen = prompt + r->n_prompt;
    char test[64];
    bench_test_name(&t->r, test, sizeof test);
    bool fresh = false;
    if (!t->filled) {
        mr_kv_clear(c);
        if (r->n_depth > 0) {
            bench_progress_update(pr, "test %d/%d %s t=%d: filling depth %d", idx, total, test, r->n_threads,
                                  r->n_depth);
            if (bench_decode_prompt(c, t->toks, r->n_depth, 0, r->n_batch) || mr_kv_seq_checkpoint(c, 0)) return -1;
            fresh = true; /* a fill takes long: the bandwidth may have moved */
        }
        t->filled = true;
    }
    bench_progress_update(pr, "test %d/%d %s t=%d: rep %d/%d", idx, total, test, r->n_threads, rep + 1, o->reps);
    const double bw_before = !t->probe ? 0 : fresh || *bw_last <= 0 ? probe_bw(r->n_threads, peak) : *bw_last;
    mr_ctx_reset_stats(c);
    mr_ctx_offload_info oi0, oi1;
    mr_ctx_get_offload(c, &oi0);
    const double t0 = mr_time_s();
    if (r->n_prompt > 0 && bench_decode_prompt(c, prompt, r->n_prompt, r->n_depth, r->n_batch)) return -1;
    if (r->n_gen > 0 && bench_decode_gen(c, gen, r->n_gen, r->n_depth + r->n_prompt)) return -1;
    const double dt = mr_time_s() - t0;
    mr_ctx_get_offload(c, &oi1);
    if (oi1.streamed_bytes > oi0.streamed_bytes) t->streamed += (double)(oi1.streamed_bytes - oi0.streamed_bytes);
    t->stream_s += dt;
    mr_ctx_stats st;
    mr_ctx_get_stats(c, &st);
    t->bytes += (double)st.weight_bytes_read;
    t->kv_bytes += (double)st.kv_bytes_read;
    t->tokens += (double)(r->n_prompt + r->n_gen);
    if (bench_result_add_sample(r, r->n_prompt + r->n_gen, dt)) return -1;
    if (t->probe) {
        *bw_last = probe_bw(r->n_threads, peak);
        bench_result_note_probe(r, bw_before);
        bench_result_note_probe(r, *bw_last);
        if (bench_result_add_bw(r, bw_before > *bw_last ? bw_before : *bw_last)) return -1;
    }
    return mr_kv_seq_rm(c, 0, r->n_depth, -1); /* the next repetition starts at the depth again */
}

/* After t's last repetition: bytes per token, the device memory; frees the context. */
static void test_close(loaded *L, test_run *t) {
    bench_result *r = &t->r;
    if (t->bytes > 0 && t->tokens > 0) {
        r->weight_bytes_per_token = t->bytes / t->tokens;
        r->kv_bytes_per_token = t->kv_bytes / t->tokens;
    } else if (r->n_prompt == 0 && L->info.active_bytes_est > 0) {
        r->weight_bytes_per_token = (double)L->info.active_bytes_est;
        r->bytes_estimated = true;
    }
    if (t->c && r->backend[0] && strcmp(r->backend, "CPU")) {
        mr_ctx_offload_info oi;
        mr_ctx_get_offload(t->c, &oi); /* after the test: the scratch has its peak size */
        r->vram_bytes = oi.dev_bytes;
    }
    if (t->streamed > 0 && t->tokens > 0) { /* hybrid prompts: the PCIe side of their speed */
        char test[64], b[32];
        bench_test_name(r, test, sizeof test);
        fprintf(stderr, "moerun bench: %s: RAM experts streamed to the devices: %s per token, %.3g GB/s over the "
                        "timed runs\n", test, mr_fmt_bytes(b, sizeof b, (uint64_t)(t->streamed / t->tokens)),
                t->stream_s > 0 ? t->streamed / t->stream_s / 1e9 : 0.0);
    }
    mr_ctx_free(t->c);
    free(t->toks);
    t->c = NULL, t->toks = NULL;
}

static int cmp_double(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* --interleave: for each test at a depth > 0, its t/s over those of the same test at depth 0,
 * repetition by repetition (each pair ran back to back): median and range, into out. */
static void depth_ratios(const test_run *t, int n, ab_buf *out) {
    /* the settings that vary among the tests, named in each line */
    bool vb = false, vu = false, vk = false, vv = false, vf = false;
    for (int i = 1; i < n; i++) {
        vb |= t[i].r.n_batch != t[0].r.n_batch, vu |= t[i].r.n_ubatch != t[0].r.n_ubatch;
        vk |= t[i].r.type_k != t[0].r.type_k, vv |= t[i].r.type_v != t[0].r.type_v;
        vf |= t[i].r.flash_attn != t[0].r.flash_attn;
    }
    for (int i = 0; i < n; i++) {
        const bench_result *a = &t[i].r;
        if (a->n_depth == 0) continue;
        for (int j = 0; j < n; j++) {
            const bench_result *b = &t[j].r;
            if (b->n_depth != 0 || b->n_prompt != a->n_prompt || b->n_gen != a->n_gen || b->n_batch != a->n_batch ||
                b->n_ubatch != a->n_ubatch || b->type_k != a->type_k || b->type_v != a->type_v ||
                b->flash_attn != a->flash_attn)
                continue;
            const int m = a->n_samples < b->n_samples ? a->n_samples : b->n_samples;
            double *q = m > 0 ? malloc((size_t)m * sizeof *q) : NULL;
            if (!q) break;
            const int k = m;
            for (int x = 0; x < k; x++) q[x] = a->samples_ts[x] / b->samples_ts[x];
            qsort(q, (size_t)k, sizeof *q, cmp_double);
            const double med = k % 2 ? q[k / 2] : 0.5 * (q[k / 2 - 1] + q[k / 2]);
            char na[64], nb[64];
            bench_test_name(a, na, sizeof na);
            bench_test_name(b, nb, sizeof nb);
            ab_printf(out, "  %s / %s, %d thread(s)", na, nb, a->n_threads);
            if (vb) ab_printf(out, ", -b %d", a->n_batch);
            if (vu) ab_printf(out, ", -ub %d", a->n_ubatch);
            if (vk) ab_printf(out, ", -ctk %s", bench_kv_type_name(a->type_k));
            if (vv) ab_printf(out, ", -ctv %s", bench_kv_type_name(a->type_v));
            if (vf) ab_printf(out, ", -fa %d", a->flash_attn);
            ab_printf(out, ": %.3f (%.3f - %.3f over %d pairs)\n", med, q[0], q[k - 1], k);
            free(q);
            break;
        }
    }
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static void emit(const opts *o, const bench_md_cols *cols, const bench_env *e, bench_result *r, bool first) {
    json_t *j;
    char *s;
    switch (o->out) {
    case OUT_MD: bench_md_row(stdout, cols, r); break;
    case OUT_CSV: bench_csv_row(stdout, r, e); break;
    case OUT_JSON:
    case OUT_JSONL:
        j = bench_result_to_json(r, e);
        s = json_dumps(j, o->out == OUT_JSON ? JSON_INDENT(2) | JSON_PRESERVE_ORDER : JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (o->out == OUT_JSON) printf("%s%s", first ? "" : ",\n", s);
        else printf("%s\n", s);
        free(s);
        json_decref(j);
        break;
    }
    fflush(stdout);
}

typedef struct {
    int n_prompt, n_gen;
} test_shape;

/* What run_all hands a model load's tests. */
typedef struct {
    const opts *o;
    const bench_md_cols *cols;
    const bench_env *env;
    loaded *L;
    bench_progress *pr;
    double bw_first;     /* the run's first bandwidth measurement for these threads */
    bool rss_resettable;
    uint64_t load_peak;  /* the peak RSS of the model's load */
    int total, emitted;
    ab_buf *notes;       /* bandwidth notes, printed after the table */
} group;

/* A finished test: its peak RSS (the highest of the counter, peak: what probes reset, and the load's),
 * its bandwidth, then its row. */
static void test_report(group *g, test_run *t, uint64_t peak) {
    bench_result *r = &t->r;
    r->peak_rss_bytes = mr_peak_rss_bytes();
    if (peak > r->peak_rss_bytes) r->peak_rss_bytes = peak;
    if (g->rss_resettable && g->load_peak > r->peak_rss_bytes) r->peak_rss_bytes = g->load_peak;
    /* the best of the run's first measurement and the test's probes */
    r->bandwidth_gbs = g->bw_first;
    for (int k = 0; k < r->n_samples_bw; k++)
        if (r->samples_bw[k] > r->bandwidth_gbs) r->bandwidth_gbs = r->samples_bw[k];
    if (r->dev_bw_gbs != 0) r->bandwidth_gbs = isnan(r->dev_bw_gbs) ? 0 : r->dev_bw_gbs;
    bench_result_finish(r);
    bench_progress_done(g->pr);
    emit(g->o, g->cols, g->env, r, g->emitted == 0);
    g->emitted++;
    double lo, hi;
    if (bench_bw_moved(r, &lo, &hi)) {
        char test[64];
        bench_test_name(&t->r, test, sizeof test);
        ab_printf(g->notes, "  %s, %d thread(s): %.1f - %.1f GB/s (%.2fx)\n", test, r->n_threads, lo, hi, hi / lo);
    }
}

static int test_failed(group *g, const test_run *t) {
    char test[64];
    bench_test_name(&t->r, test, sizeof test);
    bench_progress_done(g->pr);
    fprintf(stderr, "moerun bench: %s %s: %s\n", t->r.model_filename, test, mr_last_error());
    return 1;
}

/* Run the nt tests of one model load, numbered from idx0 + 1: each test's repetitions in a row, or
 * with --interleave all tests' contexts at once and a repetition of each in turn (the order reversed
 * every other round), with the depth ratios into ratios. 0 / 1. */
static int run_group(group *g, test_run *t, int nt, int idx0, ab_buf *ratios) {
    const opts *o = g->o;
    int rc = 0;
    if (!o->interleave) {
        for (int i = 0; i < nt && !rc; i++) {
            if (g->rss_resettable) (void)mr_peak_rss_reset();
            bench_iso8601_now(t[i].r.test_time, sizeof t[i].r.test_time);
            uint64_t peak = 0;
            double bw_last = 0;
            int e = test_open(o, g->L, &t[i], g->pr, idx0 + i + 1, g->total);
            for (int rep = 0; rep < o->reps && !e; rep++)
                e = test_rep(o, &t[i], g->pr, idx0 + i + 1, g->total, rep, &bw_last, &peak);
            test_close(g->L, &t[i]);
            if (e) rc = test_failed(g, &t[i]);
            else test_report(g, &t[i], peak);
        }
        return rc;
    }
    if (g->rss_resettable) (void)mr_peak_rss_reset();
    uint64_t peak = 0;
    double bw_last = 0;
    for (int i = 0; i < nt && !rc; i++) {
        bench_iso8601_now(t[i].r.test_time, sizeof t[i].r.test_time);
        if (test_open(o, g->L, &t[i], g->pr, idx0 + i + 1, g->total)) rc = test_failed(g, &t[i]);
    }
    for (int rep = 0; rep < o->reps && !rc; rep++)
        for (int k = 0; k < nt && !rc; k++) {
            const int i = rep % 2 ? nt - 1 - k : k;
            if (test_rep(o, &t[i], g->pr, idx0 + i + 1, g->total, rep, &bw_last, &peak)) rc = test_failed(g, &t[i]);
        }
    for (int i = 0; i < nt; i++) test_close(g->L, &t[i]);
    if (rc) return rc;
    for (int i = 0; i < nt; i++) test_report(g, &t[i], peak); /* all contexts were alive together */
    depth_ratios(t, nt, ratios);
    return 0;
}

static int run_all(opts *o, int argc, char **argv) {
    bench_env env;
    bench_env_fill(&env);
    bench_env_set_command(&env, "moerun bench", argc - 1, argv + 1);
    bench_md_cols cols = {.n_batch = o->b.set, .n_ubatch = o->ub.set, .type_k = o->ctk.set, .type_v = o->ctv.set,
                          .flash_attn = o->fa.set, .n_gpu_layers = o->ngl.set, .n_cpu_moe = o->ncmoe.set,
                          .ot = o->n_ot > 1 || o->ot[0][0], .repack = o->rtr.set || o->nr.set, .roofline = true,
                          .rss = true, .vram = o->ngl.set || o->n_ot > 1 || o->ot[0][0]};
    /* the test shapes: pp, tg, pg */
    test_shape *shapes = calloc((size_t)(o->p.n + o->n.n + o->n_pg + 1), sizeof *shapes);
    double *bw = calloc((size_t)o->t.n, sizeof *bw);
    if (!shapes || !bw) {
        free(shapes), free(bw);
        fprintf(stderr, "moerun bench: out of memory\n");
        return 1;
    }
    int n_shapes = 0;
    for (int i = 0; i < o->p.n; i++)
        if (o->p.v[i] > 0) shapes[n_shapes++] = (test_shape){o->p.v[i], 0};
    for (int i = 0; i < o->n.n; i++)
        if (o->n.v[i] > 0) shapes[n_shapes++] = (test_shape){0, o->n.v[i]};
    for (int i = 0; i < o->n_pg; i++) shapes[n_shapes++] = (test_shape){o->pg[2 * i], o->pg[2 * i + 1]};
    if (n_shapes == 0) {
        free(shapes), free(bw);
        fprintf(stderr, "moerun bench: no tests (all of -p, -n are 0 and no -pg)\n");
        return 2;
    }
    int n_layouts = 0; /* (rtr, nr) pairs that do not contradict each other */
    for (int ir = 0; ir < o->rtr.n; ir++)
        for (int in = 0; in < o->nr.n; in++) n_layouts += !(o->rtr.v[ir] && o->nr.v[in]);
    int total = o->n_models * o->ngl.n * o->ncmoe.n * o->n_ot * o->t.n * o->b.n * o->ub.n * o->ctk.n * o->ctv.n *
                o->fa.n * o->d.n * n_shapes * n_layouts;
    /* bandwidth per thread count, before any model is loaded */
    for (int i = 0; i < o->t.n; i++) bw[i] = bandwidth_for(o, o->t.v[i], false);

    if (o->out == OUT_MD) bench_md_header(stdout, &cols);
    else if (o->out == OUT_CSV) bench_csv_header(stdout);
    else if (o->out == OUT_JSON) printf("[\n");
    fflush(stdout);

    bench_progress pr;
    bench_progress_init(&pr, o->progress);
    int idx = 0, rc = 0, emitted = 0;
    ab_buf notes = {0};  /* bandwidth notes, printed after the table */
    ab_buf ratios = {0}; /* --interleave: the depth ratios */
    for (int im = 0; im < o->n_models && !rc; im++)
    for (int ig = 0; ig < o->ngl.n && !rc; ig++)
    for (int ic = 0; ic < o->ncmoe.n && !rc; ic++)
    for (int io = 0; io < o->n_ot && !rc; io++)
    for (int ir = 0; ir < o->rtr.n && !rc; ir++)
    for (int in = 0; in < o->nr.n && !rc; in++)
    for (int it = 0; it < o->t.n && !rc; it++) {
        if (o->rtr.v[ir] && o->nr.v[in]) continue; /* -rtr 1 with -nr 1: nothing to run */
        loaded L = {0};
        L.path = o->models[im];
        mr_model_params mp = mr_model_default_params();
        mp.path = L.path;
        mp.n_threads = o->t.v[it];
        mp.n_gpu_layers = o->ngl.v[ig];
        mp.n_cpu_moe = o->ncmoe.v[ic];
        mp.overrides = o->ot[io][0] ? o->ot[io] : NULL;
        mp.tensor_split = o->ts[0] ? o->ts : NULL;
        mp.devices = o->dev[0] ? o->dev : NULL;
        mp.split_mode = o->sm;
        mp.use_mmap = o->mmap;
        mp.rtr = o->rtr.v[ir];
        mp.no_repack = o->nr.v[in];
        bench_progress_update(&pr, "loading %s", base_name(L.path));
        /* peak RSS per test: the model's load (from here) or the test itself, whichever is higher */
        const bool rss_resettable = mr_peak_rss_reset() == 0;
        L.model = mr_model_load(&mp);
        const uint64_t load_peak = mr_peak_rss_bytes();
        if (!L.model) {
            bench_progress_done(&pr);
            fprintf(stderr, "moerun bench: %s: %s\n", L.path, mr_last_error());
            rc = 1;
            break;
        }
        mr_model_get_info(L.model, &L.info);
        L.n_vocab = mr_n_vocab(L.model);
        const int per_load = o->b.n * o->ub.n * o->ctk.n * o->ctv.n * o->fa.n * o->d.n * n_shapes;
        test_run *tr = calloc((size_t)per_load, sizeof *tr);
        if (!tr) {
            mr_model_free(L.model);
            fprintf(stderr, "moerun bench: out of memory\n");
            rc = 1;
            break;
        }
        int nt = 0;
        for (int ib = 0; ib < o->b.n; ib++)
        for (int iu = 0; iu < o->ub.n; iu++)
        for (int ik = 0; ik < o->ctk.n; ik++)
        for (int iv = 0; iv < o->ctv.n; iv++)
        for (int ifa = 0; ifa < o->fa.n; ifa++)
        for (int id = 0; id < o->d.n; id++)
        for (int is = 0; is < n_shapes; is++) {
            test_run *t = &tr[nt++];
            bench_result *r = &t->r;
            bench_result_init(r);
            snprintf(r->model_filename, sizeof r->model_filename, "%s", base_name(L.path));
            snprintf(r->model_path, sizeof r->model_path, "%s", L.path);
            char cnt[32];
            mr_fmt_count(cnt, sizeof cnt, L.info.n_params);
            char *sp = strchr(cnt, ' ');
            if (sp) memmove(sp, sp + 1, strlen(sp));
            snprintf(r->model_type, sizeof r->model_type, "%s %s", L.info.arch, cnt);
            r->model_size = L.info.file_bytes;
            r->model_n_params = L.info.n_params;
            r->model_active_bytes_est = L.info.active_bytes_est;
            snprintf(r->backend, sizeof r->backend, "CPU"); /* test_open: CUDA when layers are offloaded */
            r->n_threads = o->t.v[it];
            r->n_batch = o->b.v[ib];
            r->n_ubatch = o->ub.v[iu];
            r->type_k = o->ctk.v[ik];
            r->type_v = o->ctv.v[iv];
            r->flash_attn = o->fa.v[ifa];
            r->n_gpu_layers = o->ngl.v[ig];
            r->n_cpu_moe = o->ncmoe.v[ic];
            snprintf(r->ot, sizeof r->ot, "%s", o->ot[io]);
            snprintf(r->repack, sizeof r->repack, "%s", !L.info.n_repacked ? "none" : L.info.repack_fast ? "r8f" : "r8");
            r->n_prompt = shapes[is].n_prompt;
            r->n_gen = shapes[is].n_gen;
            r->n_depth = o->d.v[id];
            r->n_reps = o->reps;
            t->probe = measures_near(o, bw[it], rss_resettable);
        }
        group g = {.o = o, .cols = &cols, .env = &env, .L = &L, .pr = &pr, .bw_first = bw[it],
                   .rss_resettable = rss_resettable, .load_peak = load_peak, .total = total, .emitted = emitted,
                   .notes = &notes};
        rc = run_group(&g, tr, nt, idx, &ratios);
        idx += nt;
        emitted = g.emitted;
        for (int i = 0; i < nt; i++) bench_result_free(&tr[i].r);
        free(tr);
        mr_model_free(L.model);
    }
    bench_progress_done(&pr);
    if (o->out == OUT_JSON) printf("%s]\n", emitted ? "\n" : "");
    fflush(stdout);
    if (notes.n) /* after the table, not inside it */
        fprintf(stderr,
                "moerun bench: note: the memory bandwidth moved by more than %.0f %% during these tests, and t/s "
                "moves with it (compare runs by the roofline column, or interleave them: --interleave, moerun ab):\n%s",
                (BENCH_BW_MOVED - 1.0) * 100.0, notes.s);
    if (ratios.n)
        fprintf(stderr,
                "moerun bench: interleaved: t/s at each depth over t/s at depth 0, repetition by repetition "
                "(median, range):\n%s",
                ratios.s);
    ab_buf_free(&notes);
    ab_buf_free(&ratios);
    free(bw);
    free(shapes);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    opts o = {0};
    int rc = parse(&o, argc, argv);
    if (rc >= 0) {
        opts_free(&o);
        return rc;
    }
    if (o.cmp_a) {
        bench_result_set a, b;
        if (bench_load_results(o.cmp_a, &a)) {
            fprintf(stderr, "moerun bench: %s\n", mr_geterr());
            opts_free(&o);
            return 1;
        }
        if (bench_load_results(o.cmp_b, &b)) {
            fprintf(stderr, "moerun bench: %s\n", mr_geterr());
            bench_result_set_free(&a);
            opts_free(&o);
            return 1;
        }
        int m = bench_compare_print(stdout, &a, &b, o.cmp_a, o.cmp_b);
        if (m == 0) fprintf(stderr, "moerun bench: no test of %s matches one of %s\n", o.cmp_a, o.cmp_b);
        rc = m > 0 ? 0 : 1;
        bench_result_set_free(&a);
        bench_result_set_free(&b);
    } else if (o.bandwidth_only) {
        rc = cmd_bandwidth(&o);
    } else {
        rc = run_all(&o, argc, argv);
    }
    opts_free(&o);
    return rc;
}
