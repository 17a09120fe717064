/*
 * bench_attn.c — micro-benchmark of single-token decode attention
 * (cpu_attn_head) over a deep KV cache (developer tool, not a test).
 *
 * One call = the g query heads sharing one KV head attending over `depth`
 * cells, all visible (the decode shape; Qwen3-30B-A3B: g = 8, dk = dv = 128).
 * For each cache type (K and V the same), depth, and path (flash / standard)
 * it prints µs per call (median of the timed calls), the KV bytes one call
 * reads, GB/s of those bytes and GFLOP/s (2*g*depth*(dk+dv) per call).
 *
 * Usage: bench_attn [-g G] [-d DK] [-v DV] [-t SECONDS] [-c] [-s] [-f] [--mla] [--4k] [--tiled] [-p N] [depth ...] [-- type ...]
 *   -v DV: value size when it differs from DK (-g 1 -d 192 -v 128: DeepSeek's MLA prompt form).
 *   defaults: g = 8, dk = dv = 128, depths 512 1024 4096, types f16 q8_0,
 *   about 0.15 s per configuration, 1 thread.
 *   --tiled: the cache in the tiled q8_0 layout (attn.h) where it applies (q8_0, g 8, AVX-512 VNNI), as the
 *      engine keeps such a cache; the decode kernel attn_tiled_avx512.c.
 *   --4k: the cache in 4 KiB pages (malloc's) instead of transparent huge pages, as the
 *      engine's KV cache has them (kv.c, mr_calloc_huge).
 *   -c (cold): the calls rotate over enough KV heads (>= 96 MB of cache) that
 *      the cache streams from DRAM as in a real model, instead of staying in L2/L3.
 *   -f: the flash path only (for a profiler).
 *   -s (split): a call is the parts of cpu_attn_split (flash, over 512 cells) one after
 *      the other on this thread and their merge, as a decode step spreads them over threads.
 *   --mla: the MLA shape (dk 576, dv 512, the value inside K; set -g 16 for DeepSeek-V2-Lite).
 *   -p N: prompt mode: N tokens after each depth, cpu_attn_head per token against
 *      cpu_attn_multi (several tokens a call), ms per prompt and GFLOP/s.
 *   -s gives each call a new cpu_attn_args.q_tag (the parts prepare the queries once), as the model does;
 *   BENCH_ATTN_NO_TAG=1: none (every part prepares them).
 *   MOERUN_ATTN=scalar or MOERUN_CPU=generic: the generic/scalar path; MOERUN_ATTN_V8=0: a q8_0 V
 *   in f32 instead of the integer V pass.
 *   Cold, depth 4096, --mla -g 16, q8_0, one Zen 4 thread: flash 1096 us (f32 V pass) -> 813 us.
 *   -s -c -g 8, depth 4096, one Zen 4 thread: q8_0 169-176 us (--4k) -> 146-147 (huge pages),
 *   f16 234-240 -> 210-212; --mla -g 16 q8_0 844-850 -> 800.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cpu/attn.h"
#include "quant/quant.h"

static uint64_t rng = 88172645463325252ull;
static float frnd(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One decode call: cpu_attn_head, or (split) its parts of cpu_attn_split one after the other
 * and cpu_attn_merge, on this thread (parts and mls: room for CPU_ATTN_SPLIT_MAX parts). */
static void call(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, float *out, float *scratch, bool split,
                 float *parts, float *mls) {
    int per = 0, np = split ? cpu_attn_split(a, &per) : 1;
    if (np <= 1) {
        cpu_attn_head(a, kvh, q, pos, 0, out, scratch);
        return;
    }
    const int g = a->n_head / a->n_head_kv;
    static uint64_t tag;
    cpu_attn_args ta = *a;
    ta.q_tag = getenv("BENCH_ATTN_NO_TAG") ? 0 : ++tag; /* new queries each call, as the model's */
    a = &ta;
    for (int p = 0; p < np; p++)
        cpu_attn_head_part(a, kvh, q, pos, 0, p * per, (p + 1) * per, parts + (size_t)p * g * a->dv,
                           mls + (size_t)p * 2 * g, scratch);
    cpu_attn_merge(g, a->dv, np, parts, mls, out);
}

/* Time one configuration; returns the median µs per call (or -1 on error). mla: dk 576, dv 512,
 * the value inside K (d ignored). */
static int g_dv;       /* -v: value size (0: d) */
static bool g_small;   /* --4k: the cache in 4 KiB pages instead of huge ones */
static bool g_tiled;   /* --tiled: the cache in the tiled q8_0 layout where it applies (cpu_attn_tiled_ok) */


/* The cache's memory: huge pages as the engine's KV cache (kv.c), or with --4k malloc's. */
static uint8_t *cache_alloc(size_t n) { return g_small ? mr_malloc_aligned(n) : mr_calloc_huge(n); }

/* With --tiled where the layout applies: K and V (n_kv heads of n_ctx rows) copied into it, a pointing there
 * (the old buffers freed); else nothing. */
static void to_tiled(cpu_attn_args *a, uint8_t **K, uint8_t **V) {
    if (!g_tiled || !cpu_attn_tiled_ok(a->n_head, a->n_head_kv, a->dk, a->dv, a->k_type, a->v_type, a->v_in_k)) return;
    const int n = cpu_attn_tiled_cells(a->n_ctx);
    const size_t krb = mr_row_size(a->k_type, a->dk), vrb = mr_row_size(a->v_type, a->dv);
    uint8_t *TK = cache_alloc(krb * (size_t)n * a->n_head_kv), *TV = cache_alloc(vrb * (size_t)n * a->n_head_kv);
    if (!TK || !TV) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int h = 0; h < a->n_head_kv; h++)
        for (int c = 0; c < a->n_ctx; c++) {
            cpu_attn_tiled_put(TK + (size_t)h * n * krb, n, a->dk, true, c, *K + ((size_t)h * a->n_ctx + c) * krb);
            cpu_attn_tiled_put(TV + (size_t)h * n * vrb, n, a->dv, false, c, *V + ((size_t)h * a->n_ctx + c) * vrb);
        }
    mr_free_aligned(*K), mr_free_aligned(*V);
    *K = TK, *V = TV;
    a->K = TK, a->V = TV, a->n_ctx = n, a->tiled = true;
}

static double run(uint32_t type, int g, int d, bool mla, int depth, bool flash, bool cold, bool split,
                  double budget_s) {
    const int dk = mla ? 576 : d, dv = mla ? 512 : g_dv ? g_dv : d;
    const size_t rb = mr_row_size(type, dk), vrb = mla ? 0 : mr_row_size(type, dv);
    const size_t head_bytes = (rb + vrb) * (size_t)depth;
    const int nkv = cold ? (int)MR_MAX(1, (96u << 20) / head_bytes + 1) : 1;
    cpu_attn_args a = {.n_head = g * nkv, .n_head_kv = nkv, .dk = dk, .dv = dv, .scale = 1.0f / sqrtf((float)dk),
                       .k_type = type, .v_type = type, .n_ctx = depth, .n_cells = depth, .flash = flash,
                       .v_in_k = mla};
    uint8_t *K = cache_alloc(rb * (size_t)depth * nkv), *V = cache_alloc((vrb ? vrb : 64) * (size_t)depth * nkv);
    int32_t *cp = mr_malloc(sizeof(int32_t) * (size_t)depth);
    uint64_t *cs = mr_malloc(sizeof(uint64_t) * (size_t)depth);
    float *row = mr_malloc(sizeof(float) * (size_t)dk), *q = mr_malloc(sizeof(float) * (size_t)g * dk);
    float *out = mr_malloc(sizeof(float) * (size_t)g * dv);
    float *scratch = mr_malloc_aligned(sizeof(float) * cpu_attn_scratch_floats(&a));
    float *parts = mr_malloc(sizeof(float) * (size_t)CPU_ATTN_SPLIT_MAX * g * dv);
    float *mls = mr_malloc(sizeof(float) * (size_t)CPU_ATTN_SPLIT_MAX * 2 * g);
    if (!K || !V || !cp || !cs || !row || !q || !out || !scratch || !parts || !mls) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t r = 0; r < (size_t)depth * nkv; r++) {
        for (int i = 0; i < dk; i++) row[i] = frnd();
        quant_quantize_row(type, row, K + r * rb, dk);
        if (mla) continue;
        for (int i = 0; i < dv; i++) row[i] = frnd();
        quant_quantize_row(type, row, V + r * vrb, dv);
    }
    for (int c = 0; c < depth; c++) cp[c] = c, cs[c] = 1;
    for (int i = 0; i < g * dk; i++) q[i] = 2.0f * frnd();
    a.K = K, a.V = mla ? NULL : V, a.cell_pos = cp, a.cell_seq = cs;
    to_tiled(&a, &K, &V);

    call(&a, 0, q, depth - 1, out, scratch, split, parts, mls); /* warm-up */
    enum { MAXS = 20000 };
    static double samples[MAXS];
    int ns = 0, kvh = 0;
    const double t_end = mr_time_s() + budget_s;
    while (ns < MAXS && (ns < 5 || mr_time_s() < t_end)) {
        const double t0 = mr_time_s();
        call(&a, kvh, q, depth - 1, out, scratch, split, parts, mls);
        samples[ns++] = mr_time_s() - t0;
        kvh = (kvh + 1) % nkv;
    }
    qsort(samples, (size_t)ns, sizeof(double), cmp_d);
    const double med = samples[ns / 2] * 1e6;
    mr_free_aligned(K), mr_free_aligned(V), mr_free_aligned(scratch);
    free(cp), free(cs), free(row), free(q), free(out), free(parts), free(mls);
    return med;
}

/* Prompt mode (-p N): N tokens at positions depth .. depth + N - 1 (causal, one sequence) over
 * a cache of depth + N cells, all their query heads of one KV head; times cpu_attn_head per
 * token against cpu_attn_multi (prompt blocks of its token count); returns ms per prompt in
 * ms[0] (per token) and ms[1] (multi, or -1 where the path declines). mla: dk = 576, dv = 512,
 * the value inside K. */
static void run_prompt(uint32_t type, int g, int d, bool mla, int depth, int n, bool flash, double ms[2]) {
    const int dk = mla ? 576 : d, dv = mla ? 512 : g_dv ? g_dv : d, n_ctx = depth + n;
    const size_t krb = mr_row_size(type, dk), vrb = mr_row_size(type, dv);
    cpu_attn_args a = {.n_head = g, .n_head_kv = 1, .dk = dk, .dv = dv, .scale = 1.0f / sqrtf((float)dk),
                       .k_type = type, .v_type = type, .n_ctx = n_ctx, .v_in_k = mla, .n_cells = n_ctx, .flash = flash};
    uint8_t *K = cache_alloc(krb * (size_t)n_ctx), *V = mla ? NULL : cache_alloc(vrb * (size_t)n_ctx);
    int32_t *cp = mr_malloc(sizeof(int32_t) * (size_t)n_ctx), *pos = mr_malloc(sizeof(int32_t) * (size_t)n);
    int32_t *seq = mr_malloc(sizeof(int32_t) * (size_t)n);
    uint64_t *cs = mr_malloc(sizeof(uint64_t) * (size_t)n_ctx);
    float *row = mr_malloc(sizeof(float) * (size_t)dk), *q = mr_malloc(sizeof(float) * (size_t)n * g * dk);
    float *out = mr_malloc(sizeof(float) * (size_t)n * g * dv);
    float *scratch = mr_malloc_aligned(sizeof(float) * cpu_attn_scratch_floats(&a));
    for (int c = 0; c < n_ctx; c++) {
        for (int i = 0; i < dk; i++) row[i] = frnd();
        quant_quantize_row(type, row, K + (size_t)c * krb, dk);
        if (V) quant_quantize_row(type, row, V + (size_t)c * vrb, dv);
        cp[c] = c, cs[c] = 1;
    }
    for (int t = 0; t < n; t++) pos[t] = depth + t, seq[t] = 0;
    for (size_t i = 0; i < (size_t)n * g * dk; i++) q[i] = 2.0f * frnd();
    a.K = K, a.V = V, a.cell_pos = cp, a.cell_seq = cs;
    to_tiled(&a, &K, &V);
    const int nt = cpu_attn_multi_tokens(&a);
    ms[0] = ms[1] = 1e30;
    for (int rep = 0; rep < 3; rep++) { /* best of 3 */
        double t0 = mr_time_s();
        for (int t = 0; t < n; t++)
            cpu_attn_head(&a, 0, q + (size_t)t * g * dk, pos[t], seq[t], out + (size_t)t * g * dv, scratch);
        ms[0] = MR_MIN(ms[0], (mr_time_s() - t0) * 1e3);
        if (nt > 0) {
            t0 = mr_time_s();
            for (int t = 0; t < n; t += nt)
                cpu_attn_multi(&a, 0, MR_MIN(nt, n - t), q + (size_t)t * g * dk, (size_t)g * dk, pos + t, seq + t,
                               out + (size_t)t * g * dv, (size_t)g * dv, scratch);
            ms[1] = MR_MIN(ms[1], (mr_time_s() - t0) * 1e3);
        }
    }
    if (nt <= 0) ms[1] = -1;
    mr_free_aligned(K), mr_free_aligned(V), mr_free_aligned(scratch);
    free(cp), free(pos), free(seq), free(cs), free(row), free(q), free(out);
}

int main(int argc, char **argv) {
    int g = 8, d = 128, depths[16], nd = 0, types[8], nt = 0;
    double budget = 0.15;
    bool cold = false, in_types = false, mla = false, split = false, flash_only = false;
    int prompt = 0;
    for (int i = 1; i < argc; i++) {
        if (in_types) {
            const int t = mr_type_from_name(argv[i]);
            if (t < 0 || nt == 8) {
                fprintf(stderr, "bench_attn: unknown type '%s'\n", argv[i]);
                return 2;
            }
            types[nt++] = t;
        } else if (!strcmp(argv[i], "--")) in_types = true;
        else if (!strcmp(argv[i], "-c")) cold = true;
        else if (!strcmp(argv[i], "-s")) split = true;
        else if (!strcmp(argv[i], "-f")) flash_only = true;
        else if (!strcmp(argv[i], "--mla")) mla = true;
        else if (!strcmp(argv[i], "--4k")) g_small = true;
        else if (!strcmp(argv[i], "--tiled")) g_tiled = true;
        else if (!strcmp(argv[i], "-p") && i + 1 < argc) prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-g") && i + 1 < argc) g = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-d") && i + 1 < argc) d = atoi(argv[++i]) / 32 * 32;
        else if (!strcmp(argv[i], "-v") && i + 1 < argc) g_dv = atoi(argv[++i]) / 16 * 16;
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) budget = atof(argv[++i]);
        else if (argv[i][0] != '-' && nd < 16) depths[nd++] = atoi(argv[i]);
        else {
            fprintf(stderr, "usage: bench_attn [-g G] [-d DK] [-v DV] [-t SECONDS] [-c] [-s] [-f] [--mla] [--4k] [--tiled] [-p N] [depth ...] [-- type ...]\n");
            return 2;
        }
    }
    g = MR_MAX(1, g), d = MR_MAX(32, d), g_dv = g_dv ? MR_MAX(16, g_dv) : 0, budget = MR_MIN(10.0, MR_MAX(0.01, budget));
    for (int i = 0; i < nd; i++) depths[i] = MR_MAX(1, depths[i]);
    if (!nd) depths[0] = 512, depths[1] = 1024, depths[2] = 4096, nd = 3;
    if (!nt) types[0] = MR_TYPE_F16, types[1] = MR_TYPE_Q8_0, nt = 2;
    if (prompt > 0) {
        prompt = MR_MIN(prompt, 65536);
        printf("cpu: %s (%s), 1 thread, prompt of %d tokens, g = %d, %s\n", mr_cpu_model(), mr_cpu_features_str(),
               prompt, g, mla ? "MLA (dk 576, dv 512, value in K)" : g_dv ? "dk, dv as given" : "dk = dv");
        printf("%-6s %-5s %6s %12s %12s %12s %12s\n", "type", "path", "depth", "token ms", "GFLOP/s", "multi ms",
               "GFLOP/s");
        for (int ti = 0; ti < nt; ti++)
            for (int fl = 1; fl >= 0; fl--)
                for (int di = 0; di < nd; di++) {
                    double ms[2];
                    const uint32_t t = (uint32_t)types[ti];
                    run_prompt(t, g, d, mla, depths[di], prompt, fl, ms);
                    /* cells seen: depth + t + 1 for token t */
                    const double pairs = (double)prompt * depths[di] + (double)prompt * (prompt + 1) / 2;
                    const double flops = 2.0 * g * pairs * (mla ? 576 + 512 : (double)d + (g_dv ? g_dv : d));
                    printf("%-6s %-5s %6d %12.2f %12.2f ", mr_type_name(t), fl ? "flash" : "std", depths[di], ms[0],
                           flops / ms[0] / 1e6);
                    if (ms[1] > 0) printf("%12.2f %12.2f\n", ms[1], flops / ms[1] / 1e6);
                    else printf("%12s %12s\n", "-", "-");
                    fflush(stdout);
                }
        return 0;
    }
    printf("cpu: %s (%s), 1 thread, g = %d, %s, %s cache%s\n", mr_cpu_model(), mr_cpu_features_str(), g,
           mla ? "MLA (dk 576, dv 512, value in K)" : "dk = dv", cold ? "cold (DRAM)" : "warm (in L2/L3)",
           split ? ", split over cells" : "");
    if (!mla) printf("dk = %d, dv = %d\n", d, g_dv ? g_dv : d);
    printf("%-6s %-5s %6s %10s %10s %8s %10s\n", "type", "path", "depth", "us/call", "KV bytes", "GB/s", "GFLOP/s");
    for (int ti = 0; ti < nt; ti++)
        for (int fl = 1; fl >= (flash_only ? 1 : 0); fl--)
            for (int di = 0; di < nd; di++) {
                const uint32_t t = (uint32_t)types[ti];
                const double us = run(t, g, d, mla, depths[di], fl, cold, split, budget);
                const double bytes =
                    (mla ? (double)mr_row_size(t, 576)
                         : (double)mr_row_size(t, d) + (double)mr_row_size(t, g_dv ? g_dv : d)) * depths[di];
                const double flops = 2.0 * g * (double)depths[di] * (mla ? 576 + 512 : (double)d + (g_dv ? g_dv : d));
                printf("%-6s %-5s %6d %10.1f %10.0f %8.2f %10.2f\n", mr_type_name(t), fl ? "flash" : "std", depths[di],
                       us, bytes, bytes / us / 1e3, flops / us / 1e3);
                fflush(stdout);
            }
    return 0;
}
