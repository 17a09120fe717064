/*
 * bench_moe.c — micro-benchmark of the routed-expert FFN of one MoE layer
 * (developer tool, not a test): qwen3moe-30b-a3b shapes by default (D 2048,
 * F 768, 128 experts, 8 used, Q4_K gate/up, Q6_K down), random weights and
 * random routing per call so the selected experts come from DRAM.
 *
 * Prints, per token count T: wall time per call, GB/s of expert weights read
 * (vs the bandwidth given with -bw), GFLOP/s, and the CPU seconds the process
 * used per call (getrusage: robust when the machine is shared — a 2-thread
 * run on a quiet machine has cpu/wall ~ 2).
 * --loop runs the previous per-expert path (3 cpu_matmul per expert) instead.
 * --r8 repacks the weights into the fast row-interleaved layout first (what a
 * loaded model runs on where this CPU has the kernels).
 *
 * Usage: bench_moe [-t THREADS] [-T 1,8,64,512] [-n CALLS] [-bw GBS] [--loop] [--r8]
 *                  [-D 2048 -F 768 -E 128 -K 8]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/base.h"
#include "cpu/cpu.h"
#include "cpu/moe.h"
#include "quant/quant.h"

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* Random bytes with sane fp16 super-block scales (d, dmin) so no NaN/denormal
 * reaches the float accumulators. */
static void fill(uint32_t t, uint8_t *w, size_t bytes) {
    for (size_t i = 0; i + 4 <= bytes; i += 4) {
        uint32_t r = rnd() | (rnd() << 16);
        memcpy(w + i, &r, 4);
    }
    const size_t bb = mr_type_get(t)->tsize;
    const uint16_t h = mr_fp32_to_fp16(0.001f);
    for (size_t b = 0; b + bb <= bytes; b += bb) {
        if (t == MR_TYPE_Q4_K || t == MR_TYPE_Q5_K) memcpy(w + b, &h, 2), memcpy(w + b + 2, &h, 2);
        else if (t == MR_TYPE_Q6_K) memcpy(w + b + 208, &h, 2);
        else memcpy(w + b, &h, 2);
    }
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static int g_r8 = 0; /* --r8: repacked into the fast row-interleaved layout, as a loaded model */

static mr_weight mkw(const char *name, uint32_t t, int64_t k, int64_t m, int64_t n) {
    mr_weight w = {.name = name, .type = t, .k = k, .m = m, .n_mat = n};
    w.row_bytes = mr_row_size(t, k);
    w.mat_bytes = w.row_bytes * (size_t)m;
    void *p = mr_malloc_aligned(w.mat_bytes * (size_t)n);
    if (!p) exit(1);
    fill(t, p, w.mat_bytes * (size_t)n);
    if (g_r8 && quant_can_repack(t, k, m * n)) {
        if (quant_repack(t, p, p, k, m * n)) {
            fprintf(stderr, "bench_moe: %s\n", mr_geterr());
            exit(1);
        }
        w.type = MR_TYPE_R8F_BASE + t;
    }
    w.data = p;
    return w;
}

/* The per-expert loop moe.c replaced (for A/B). */
static int moe_loop(cpu_mm *mm, const cpu_moe_w *w, int T, const float *x, int K, const int32_t *sel,
                    const float *selw, float *out, float *ex_x, float *fa, float *fb, float *ey) {
    const int E = (int)w->gate->n_mat, D = (int)w->gate->k, F = (int)w->gate->m;
    memset(out, 0, sizeof(float) * (size_t)T * D);
    for (int e = 0; e < E; e++) {
        int n = 0, toks[4096], slots[4096];
        for (int t = 0; t < T; t++)
            for (int j = 0; j < K; j++)
                if (sel[t * K + j] == e) toks[n] = t, slots[n] = j, n++;
        if (!n) continue;
        for (int i = 0; i < n; i++) memcpy(ex_x + (size_t)i * D, x + (size_t)toks[i] * D, sizeof(float) * D);
        if (cpu_matmul(mm, w->gate, e, ex_x, n, fa) || cpu_matmul(mm, w->up, e, ex_x, n, fb)) return -1;
        cpu_silu_mul(fa, fb, (int64_t)n * F);
        if (cpu_matmul(mm, w->down, e, fa, n, ey)) return -1;
        for (int i = 0; i < n; i++) {
            const float wt = selw[toks[i] * K + slots[i]];
            for (int d = 0; d < D; d++) out[(size_t)toks[i] * D + d] += wt * ey[(size_t)i * D + d];
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    int nt = 2, calls = 0, loop = 0;
    int64_t D = 2048, F = 768, E = 128, K = 8;
    double bw = 0;
    int Ts[16] = {1, 8, 64, 512}, nT = 4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "-t")) nt = atoi(v), i++;
        else if (!strcmp(a, "-n")) calls = atoi(v), i++;
        else if (!strcmp(a, "-bw")) bw = atof(v), i++;
        else if (!strcmp(a, "-D")) D = atoll(v), i++;
        else if (!strcmp(a, "-F")) F = atoll(v), i++;
        else if (!strcmp(a, "-E")) E = atoll(v), i++;
        else if (!strcmp(a, "-K")) K = atoll(v), i++;
        else if (!strcmp(a, "--loop")) loop = 1;
        else if (!strcmp(a, "--r8")) g_r8 = 1;
        else if (!strcmp(a, "-T")) {
            nT = 0;
            for (char *s = argv[++i]; *s && nT < 16;) {
                Ts[nT++] = (int)strtol(s, &s, 10);
                if (*s == ',') s++;
            }
        } else {
            fprintf(stderr, "usage: bench_moe [-t N] [-T 1,8,64,512] [-n CALLS] [-bw GBS] [--loop] [--r8] [-D -F -E -K]\n");
            return 2;
        }
    }
    mr_weight g = mkw("gate", MR_TYPE_Q4_K, D, F, E), u = mkw("up", MR_TYPE_Q4_K, D, F, E),
              d = mkw("down", MR_TYPE_Q6_K, F, D, E);
    cpu_moe_w mw = {.gate = &g, .up = &u, .down = &d};
    cpu_mm mm = {.tp = mr_tp_new(nt)};
    int Tmax = 1;
    for (int i = 0; i < nT; i++) Tmax = MR_MAX(Tmax, Ts[i]);
    float *x = mr_malloc_aligned(sizeof(float) * (size_t)(Tmax * D)), *out = mr_malloc_aligned(sizeof(float) * (size_t)(Tmax * D));
    float *ex_x = mr_malloc_aligned(sizeof(float) * (size_t)(Tmax * D)), *ey = mr_malloc_aligned(sizeof(float) * (size_t)(Tmax * D));
    float *fa = mr_malloc_aligned(sizeof(float) * (size_t)(Tmax * F)), *fb = mr_malloc_aligned(sizeof(float) * (size_t)(Tmax * F));
    int32_t *sel = malloc(sizeof(int32_t) * (size_t)(Tmax * K));
    float *selw = malloc(sizeof(float) * (size_t)(Tmax * K));
    for (int64_t i = 0; i < Tmax * D; i++) x[i] = (float)(rnd() & 0xFFFF) / 65536.0f - 0.5f;
    printf("bench_moe: %s, %d thread(s), D %lld F %lld E %lld K %lld, %s gate/up + %s down (%.1f MB per expert)%s\n",
           mr_cpu_model(), nt, (long long)D, (long long)F, (long long)E, (long long)K,
           mr_type_name(g.type), mr_type_name(d.type), (g.mat_bytes + u.mat_bytes + d.mat_bytes) / 1e6, loop ? ", per-expert loop" : "");
    printf("%6s %10s %10s %9s %10s %10s\n", "T", "ms/call", "GB/s", "GFLOP/s", "cpu/wall", bw > 0 ? "roofline" : "");
    for (int ti = 0; ti < nT; ti++) {
        const int T = Ts[ti];
        const int n = calls > 0 ? calls : T == 1 ? 400 : T <= 8 ? 100 : T <= 64 ? 20 : 4;
        double wall = 0, cpu = 0, best = 1e30;
        uint64_t bytes = 0;
        for (int c = -1; c < n; c++) {
            for (int t = 0; t < T; t++) /* K distinct random experts */
                for (int j = 0; j < K; j++) {
                    int e, dup;
                    do {
                        e = (int)(rnd() % (uint32_t)E);
                        dup = 0;
                        for (int q = 0; q < j; q++) dup |= sel[t * K + q] == e;
                    } while (dup);
                    sel[t * K + j] = e;
                    selw[t * K + j] = 1.0f / (float)K;
                }
            const uint64_t b0 = mm.bytes_read;
            const double w0 = mr_time_s(), c0 = cpu_s();
            int rc = loop ? moe_loop(&mm, &mw, T, x, (int)K, sel, selw, out, ex_x, fa, fb, ey)
                          : cpu_moe(&mm, &mw, T, x, (int)K, sel, selw, out);
            if (rc) {
                fprintf(stderr, "bench_moe: %s\n", mr_geterr());
                return 1;
            }
            const double dw = mr_time_s() - w0, dc = cpu_s() - c0;
            if (c < 0) continue; /* warm-up */
            wall += dw, cpu += dc, bytes += mm.bytes_read - b0;
            if (dw < best) best = dw;
        }
        const double gbs = (double)bytes / wall / 1e9;
        const double flops = 2.0 * 3.0 * (double)(F * D) * (double)(T * K) * n / wall / 1e9;
        printf("%6d %10.3f %10.2f %9.1f %10.2f", T, 1e3 * wall / n, gbs, flops, cpu / wall);
        if (bw > 0) printf(" %9.1f%%", 100.0 * gbs / bw);
        printf("   (best %.3f ms)\n", 1e3 * best);
        fflush(stdout);
    }
    cpu_mm_free(&mm);
    mr_tp_free(mm.tp);
    return 0;
}
