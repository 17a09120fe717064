/*
 * bench_dot.c — micro-benchmark of the quant dot kernels (developer tool, not a
 * test). For each weight type:
 *   matvec: GB/s of weight bytes streamed, y = W x over a 64 MB W (k = 4096),
 *           best of several passes (W does not fit in cache);
 *   matmul: GFLOP/s (2*m*k*n) with n = 64 activation columns on up to 2048 rows;
 *   quant:  GB/s of floats read by quant_quantize_row into the vec dot type;
 *   deq:    GB/s of floats written by quant_dequant_row of the weight type.
 * Usage: bench_dot [-t THREADS] [-s MB] [type ...]   (default: 1 thread, 64 MB,
 *        the types our models use). -t 2 splits the rows (matvec) across 2
 *        pthreads and reports the aggregate; -s 1 keeps W in cache (compute bound).
 *        MOERUN_CPU=generic bench_dot   for the scalar reference.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "quant/quant.h"

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* Timing does not depend on the values, so quantized weights are random bits
 * (scales may be huge or NaN: harmless here); float weights are sane numbers. */
static void fill(uint32_t t, uint8_t *w, size_t bytes) {
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)rnd();
    if (t == MR_TYPE_F32)
        for (size_t i = 0; i + 4 <= bytes; i += 4) {
            float f = (float)(rnd() & 0xFFFF) / 65536.0f - 0.5f;
            memcpy(w + i, &f, 4);
        }
    if (t == MR_TYPE_F16 || t == MR_TYPE_BF16)
        for (size_t i = 0; i + 2 <= bytes; i += 2) {
            float f = (float)(rnd() & 0xFFFF) / 65536.0f - 0.5f;
            uint16_t h = t == MR_TYPE_F16 ? mr_fp32_to_fp16(f) : mr_fp32_to_bf16(f);
            memcpy(w + i, &h, 2);
        }
}

/* One thread's share of a matvec: rows [r0, r1). */
typedef struct {
    uint32_t t;
    const uint8_t *W;
    int64_t k, r0, r1;
    const uint8_t *X;
    float *y;
} mv_job;

static void *mv_run(void *p) {
    const mv_job *j = p;
    quant_matvec(j->t, j->W, j->k, j->r0, j->r1, j->X, j->y);
    return NULL;
}

/* y = W x with rows split across nt threads (the caller runs the first share). */
static void matvec_mt(int nt, uint32_t t, const uint8_t *W, int64_t k, int64_t m, const uint8_t *X, float *y) {
    mv_job jobs[8];
    pthread_t th[8];
    for (int i = 0; i < nt; i++)
        jobs[i] = (mv_job){t, W, k, m * i / nt, m * (i + 1) / nt, X, y};
    for (int i = 1; i < nt; i++) pthread_create(&th[i], NULL, mv_run, &jobs[i]);
    mv_run(&jobs[0]);
    for (int i = 1; i < nt; i++) pthread_join(th[i], NULL);
}

int main(int argc, char **argv) {
    int nt = 1;
    size_t target = 64u << 20;
    while (argc > 2 && argv[1][0] == '-') {
        if (!strcmp(argv[1], "-t")) nt = MR_MAX(1, MR_MIN(8, atoi(argv[2])));
        else if (!strcmp(argv[1], "-s")) target = (size_t)(MR_MAX(0.0625, atof(argv[2])) * 1048576.0);
        else break;
        argc -= 2, argv += 2;
    }
    const char *defaults[] = {"F32", "F16", "BF16", "Q4_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K",
                              "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "IQ4_NL", "IQ4_XS"};
    const char **names = argc > 1 ? (const char **)argv + 1 : defaults;
    const int n_names = argc > 1 ? argc - 1 : (int)MR_ARRAY_LEN(defaults);
    const int64_t k = 4096, nc = 64;
    printf("cpu: %s (%s), %d thread(s) for matvec, k = %lld, W %.2f MB\n", mr_cpu_model(), mr_cpu_features_str(),
           nt, (long long)k, (double)target / 1048576.0);
    printf("%-7s %-6s %12s %14s %11s %10s\n", "type", "isa", "matvec GB/s", "matmul GFLOP/s", "quant GB/s",
           "deq GB/s");
    for (int ni = 0; ni < n_names; ni++) {
        int t = mr_type_from_name(names[ni]);
        if (t < 0 || !quant_supported((uint32_t)t)) {
            printf("%-7s unsupported\n", names[ni]);
            continue;
        }
        const uint32_t vt = quant_vec_dot_type((uint32_t)t);
        const size_t ws = mr_row_size((uint32_t)t, k), xs = mr_row_size(vt, k);
        const int64_t m = (int64_t)(target / ws);
        uint8_t *W = mr_malloc_aligned(ws * (size_t)m);
        uint8_t *X = mr_malloc_aligned(xs * (size_t)nc);
        float *xf = malloc(sizeof(float) * (size_t)k);
        float *y = mr_malloc_aligned(sizeof(float) * (size_t)(m * nc));
        if (!W || !X || !xf || !y) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        fill((uint32_t)t, W, ws * (size_t)m);
        for (int64_t c = 0; c < nc; c++) {
            for (int64_t i = 0; i < k; i++) xf[i] = (float)(rnd() & 0xFFFF) / 65536.0f - 0.5f;
            quant_quantize_row(vt, xf, X + c * xs, k);
        }
        const bool slow = quant_isa_selected((uint32_t)t) == QUANT_ISA_SCALAR;
        /* matvec: best of passes over the whole matrix */
        double best = 1e30;
        const int passes = slow ? 1 : target < (8u << 20) ? 400 : 5;
        quant_matvec((uint32_t)t, W, k, 0, m, X, y); /* warm-up (page faults) */
        for (int p = 0; p < passes; p++) {
            double t0 = mr_time_s();
            matvec_mt(nt, (uint32_t)t, W, k, m, X, y);
            double dt = mr_time_s() - t0;
            if (dt < best) best = dt;
        }
        const double gbs = (double)ws * (double)m / best / 1e9;
        /* matmul: 64 columns on the first rows */
        const int64_t mm = MR_MIN(m, slow ? 256 : 2048);
        double bestmm = 1e30;
        for (int p = 0; p < (slow ? 1 : 3); p++) {
            double t0 = mr_time_s();
            quant_matmul((uint32_t)t, W, k, 0, mm, X, xs, nc, y, mm);
            double dt = mr_time_s() - t0;
            if (dt < bestmm) bestmm = dt;
        }
        const double gflops = 2.0 * (double)mm * (double)k * (double)nc / bestmm / 1e9;
        /* activation quantization (k floats -> vt) and dequantization of weight rows */
        double bestq = 1e30, bestd = 1e30;
        const int64_t nrow = MR_MIN(m, 256);
        float *yd = malloc(sizeof(float) * 16 * (size_t)k); /* 16 rows of floats, reused */
        for (int64_t i = 0; i < 16 * k; i++) yd[i] = (float)(rnd() & 0xFFFF) / 65536.0f - 0.5f;
        for (int p = 0; p < 5; p++) {
            double t0 = mr_time_s();
            for (int64_t c = 0; c < nc; c++) quant_quantize_row(vt, yd + (c % 16) * k, X + c * xs, k);
            double dt = mr_time_s() - t0;
            if (dt < bestq) bestq = dt;
            t0 = mr_time_s();
            if (quant_can_dequant((uint32_t)t))
                for (int64_t r = 0; r < nrow; r++) quant_dequant_row((uint32_t)t, W + r * ws, yd + (r % 16) * k, k);
            dt = mr_time_s() - t0;
            if (dt < bestd) bestd = dt;
        }
        const double qgbs = 4.0 * (double)k * (double)nc / bestq / 1e9;
        const double dgbs = 4.0 * (double)k * (double)nrow / bestd / 1e9;
        printf("%-7s %-6s %12.2f %14.2f %11.2f %10.2f\n", mr_type_name((uint32_t)t),
               quant_isa_name(quant_isa_selected((uint32_t)t)), gbs, gflops, qgbs, dgbs);
        fflush(stdout);
        mr_free_aligned(W), mr_free_aligned(X), mr_free_aligned(y), free(xf), free(yd);
    }
    return 0;
}
