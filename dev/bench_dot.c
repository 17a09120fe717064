/*
 * bench_dot.c — micro-benchmark of the quant dot kernels (developer tool, not a
 * test). For each weight type:
 *   matvec: GB/s of weight bytes streamed, y = W x over a 64 MB W (k = 4096),
 *           best of several passes (W does not fit in cache);
 *   matmul: GFLOP/s (2*m*k*n) with n = 64 activation columns on up to 2048 rows;
 *   quant:  GB/s of floats read by quant_quantize_row into the vec dot type;
 *   deq:    GB/s of floats written by quant_dequant_row of the weight type;
 *   repack: GB/s of weight bytes repacked in place by quant_repack (R8 types).
 * Limits, measured first in the same run: the memory read bandwidth with the
 * same threads (bench_bandwidth_gbs, matvec "% bw" when W is larger than the
 * caches) and the in-register int8 multiply-add peak of one core (pairs of
 * vpmaddubsw + vpmaddwd, 32 MACs each: the instructions every quant matmul
 * kernel is made of; matmul "% i8"; for the avx512vnni kernels the peak of 512-bit
 * vpdpbusd instead). The peak is a loop with 8 independent
 * chains, so it is what this core sustains, not a datasheet number.
 *   -i KB: also the matvec in chunks of KB KiB of rows, as the engine's jobs hand them out:
 *          through one shared counter (the threads take alternate chunks) and as one
 *          contiguous range per thread (base/claim.h), GB/s of each (best of the passes).
 * Usage: bench_dot [-t THREADS] [-s MB] [-c COLUMNS] [-k ROW_LENGTH] [-i KB] [type ...]   (default: 1 thread, 64 MB,
 *        the types our models use). -t 2 splits the rows (matvec) across 2
 *        pthreads and reports the aggregate; -s 1 keeps W in cache (compute bound).
 *        MOERUN_CPU=generic bench_dot   for the scalar reference.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"
#include "base/claim.h"
#include "bench/bench.h"
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

/* Sustained int8 multiply-adds per second of one core: 8 independent chains
 * of acc += madd(maddubs(a, b), s) (32 MACs each). */
__attribute__((target("avx2"))) static double int8_peak_gmacs(void) {
    if (!mr_cpu()->avx2) return 0.0;
    __m256i a[8], acc[8];
    for (int i = 0; i < 8; i++) a[i] = _mm256_set1_epi8((char)(i + 1)), acc[i] = _mm256_setzero_si256();
    const __m256i b = _mm256_set1_epi8(3), sc = _mm256_set1_epi16(2);
    double best = 0.0;
    for (int rep = 0; rep < 5; rep++) {
        const long n = 4000000;
        const double t0 = mr_time_s();
        for (long it = 0; it < n; it++)
            for (int i = 0; i < 8; i++) {
                acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(a[i], b), sc));
                __asm__ volatile("" : "+x"(acc[i]));
            }
        const double g = 8.0 * 32.0 * (double)n / (mr_time_s() - t0) / 1e9;
        if (g > best) best = g;
    }
    int sink = 0;
    for (int i = 0; i < 8; i++) sink += _mm256_extract_epi32(acc[i], 0);
    if (sink == 42) fputs("", stderr);
    return best;
}

/* The same for the VNNI kernels: 8 independent chains of 512-bit vpdpbusd (64 MACs each; opaque
 * inputs instead of a barrier per step, which held the chains back); 0 without AVX-512 VNNI. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) static double vnni_peak_gmacs(void) {
    const mr_cpu_features *f = mr_cpu();
    if (!(f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni)) return 0.0;
    __m512i a[8], acc[8];
    for (int i = 0; i < 8; i++) a[i] = _mm512_set1_epi8((char)(i + 1)), acc[i] = _mm512_setzero_si512();
    __m512i b = _mm512_set1_epi8(3);
    __asm__ volatile("" : "+v"(b)); /* opaque inputs: no constant folding of the chains */
    for (int i = 0; i < 8; i++) __asm__ volatile("" : "+v"(a[i]));
    double best = 0.0;
    for (int rep = 0; rep < 5; rep++) {
        const long n = 4000000;
        const double t0 = mr_time_s();
        for (long it = 0; it < n; it++)
            for (int i = 0; i < 8; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], a[i], b);
        for (int i = 0; i < 8; i++) __asm__ volatile("" : "+v"(acc[i])); /* done before the clock stops */
        const double g = 8.0 * 64.0 * (double)n / (mr_time_s() - t0) / 1e9;
        if (g > best) best = g;
    }
    int sink = 0;
    for (int i = 0; i < 8; i++) sink += _mm_cvtsi128_si32(_mm512_castsi512_si128(acc[i]));
    if (sink == 42) fputs("", stderr);
    return best;
}

/* One thread's share of a matvec: rows [r0, r1); or (rows > 0, -i) chunks of `rows` rows of
 * [0, r1) claimed through a shared counter (claim NULL) or claim.h ranges. */
typedef struct {
    uint32_t t;
    const uint8_t *W;
    int64_t k, r0, r1;
    const uint8_t *X;
    float *y;
    int64_t rows;
    _Atomic int64_t *next;
    mr_claim *claim;
    int ith;
} mv_job;

static void *mv_run(void *p) {
    const mv_job *j = p;
    if (j->rows <= 0) {
        quant_matvec(j->t, j->W, j->k, j->r0, j->r1, j->X, j->y);
        return NULL;
    }
    for (;;) {
        const int64_t it = j->claim ? mr_claim_next(j->claim, j->ith) : atomic_fetch_add(j->next, 1);
        const int64_t r0 = it * j->rows;
        if (it < 0 || r0 >= j->r1) break;
        quant_matvec(j->t, j->W, j->k, r0, MR_MIN(j->r1, r0 + j->rows), j->X, j->y);
    }
    return NULL;
}

static double matvec_chunked(int nt, uint32_t t, const uint8_t *W, int64_t k, int64_t m, int64_t rows,
                             const uint8_t *X, float *y, bool ranges) {
    static mr_claim claim;
    _Atomic int64_t next = 0;
    mr_claim_init(&claim, (m + rows - 1) / rows, nt);
    mv_job jobs[8];
    pthread_t th[8];
    const double t0 = mr_time_s();
    for (int i = 0; i < nt; i++) jobs[i] = (mv_job){t, W, k, 0, m, X, y, rows, &next, ranges ? &claim : NULL, i};
    for (int i = 1; i < nt; i++) pthread_create(&th[i], NULL, mv_run, &jobs[i]);
    mv_run(&jobs[0]);
    for (int i = 1; i < nt; i++) pthread_join(th[i], NULL);
    return mr_time_s() - t0;
}

/* y = W x with rows split across nt threads (the caller runs the first share). */
static void matvec_mt(int nt, uint32_t t, const uint8_t *W, int64_t k, int64_t m, const uint8_t *X, float *y) {
    mv_job jobs[8];
    pthread_t th[8];
    for (int i = 0; i < nt; i++)
        jobs[i] = (mv_job){t, W, k, m / 8 * i / nt * 8, m / 8 * (i + 1) / nt * 8, X, y, 0, NULL, NULL, i};
    for (int i = 1; i < nt; i++) pthread_create(&th[i], NULL, mv_run, &jobs[i]);
    mv_run(&jobs[0]);
    for (int i = 1; i < nt; i++) pthread_join(th[i], NULL);
}

int main(int argc, char **argv) {
    int nt = 1;
    int64_t nc = 64; /* matmul columns */
    int64_t k = 4096; /* row length */
    size_t target = 64u << 20;
    int chunk_kb = 0;
    while (argc > 2 && argv[1][0] == '-') {
        if (!strcmp(argv[1], "-t")) nt = MR_MAX(1, MR_MIN(8, atoi(argv[2])));
        else if (!strcmp(argv[1], "-s")) target = (size_t)(MR_MAX(0.0625, atof(argv[2])) * 1048576.0);
        else if (!strcmp(argv[1], "-c")) nc = MR_MAX(1, MR_MIN(4096, atoi(argv[2])));
        else if (!strcmp(argv[1], "-k")) k = MR_MAX(256, MR_MIN(65536, atoi(argv[2]) / 256 * 256));
        else if (!strcmp(argv[1], "-i")) chunk_kb = MR_MAX(1, atoi(argv[2]));
        else break;
        argc -= 2, argv += 2;
    }
    const char *defaults[] = {"F32", "F16", "BF16", "Q4_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K",
                              "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "IQ4_NL", "IQ4_XS"};
    const char **names = argc > 1 ? (const char **)argv + 1 : defaults;
    const int n_names = argc > 1 ? argc - 1 : (int)MR_ARRAY_LEN(defaults);
    printf("cpu: %s (%s), %d thread(s) for matvec, k = %lld, W %.2f MB\n", mr_cpu_model(), mr_cpu_features_str(),
           nt, (long long)k, (double)target / 1048576.0);
    /* the limits: DRAM read bandwidth (only meaningful when W exceeds the caches) and int8 peak */
    const bool dram = target >= (64u << 20);
    const double bw = dram ? bench_bandwidth_gbs(nt, (size_t)1 << 30, 5) : 0.0;
    const double peak = int8_peak_gmacs(), vpeak = vnni_peak_gmacs();
    if (dram) printf("limits: read bandwidth %.2f GB/s (%d threads)", bw, nt);
    else printf("limits: W fits in cache (no bandwidth limit)");
    printf(", int8 peak %.1f GMAC/s = %.1f GOP/s per core", peak, 2.0 * peak);
    if (vpeak > 0) printf(" (avx512vnni kernels: vpdpbusd peak %.1f GMAC/s = %.1f GOP/s)", vpeak, 2.0 * vpeak);
    printf("\n");
    printf("%-7s %-6s %12s %6s %14s %6s %11s %10s %11s\n", "type", "isa", "matvec GB/s", "% bw", "matmul GFLOP/s", "% i8",
           "quant GB/s", "deq GB/s", "repack GB/s");
    for (int ni = 0; ni < n_names; ni++) {
        /* NAME_R8 / NAME_R8F: the row-interleaved form of NAME (quant_repack), exact / fast kernels */
        char base[32];
        snprintf(base, sizeof base, "%s", names[ni]);
        const size_t bl = strlen(base);
        const bool r8f = bl > 4 && !strcasecmp(base + bl - 4, "_r8f");
        const bool r8 = r8f || (bl > 3 && !strcasecmp(base + bl - 3, "_r8"));
        if (r8) base[bl - (r8f ? 4 : 3)] = 0;
        const int tb = mr_type_from_name(base);
        int t = tb < 0 ? -1 : r8 ? (int)(r8f ? MR_TYPE_R8F_BASE : MR_TYPE_R8_BASE) + tb : tb;
        if (t < 0 || !quant_supported((uint32_t)t)) {
            printf("%-7s unsupported\n", names[ni]);
            continue;
        }
        const uint32_t vt = quant_vec_dot_type((uint32_t)t);
        const size_t ws = mr_row_size((uint32_t)t, k), xs = mr_row_size(vt, k);
        const int64_t m = (int64_t)(target / ws) & ~(int64_t)7;
        uint8_t *W = mr_malloc_aligned(ws * (size_t)m);
        uint8_t *X = mr_malloc_aligned(xs * (size_t)nc);
        float *xf = malloc(sizeof(float) * (size_t)k);
        float *y = mr_malloc_aligned(sizeof(float) * (size_t)(m * nc));
        if (!W || !X || !xf || !y) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
#ifdef MADV_HUGEPAGE
        { /* transparent huge pages, as the engine's arena for repacked weights (model/repack.c) */
            const uintptr_t a = ((uintptr_t)W + 4095) & ~(uintptr_t)4095, e = ((uintptr_t)W + ws * (size_t)m) & ~(uintptr_t)4095;
            if (e > a) madvise((void *)a, e - a, MADV_HUGEPAGE);
        }
#endif
        fill((uint32_t)tb, W, ws * (size_t)m);
        const double tr0 = mr_time_s();
        if (r8 && quant_repack((uint32_t)tb, W, W, k, m)) {
            fprintf(stderr, "%s\n", mr_geterr());
            return 1;
        }
        const double repack_gbs = r8 ? (double)ws * (double)m / (mr_time_s() - tr0) / 1e9 : 0.0;
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
        double gch[2] = {0, 0}; /* -i: shared counter, ranges */
        if (chunk_kb > 0 && !slow) {
            const int64_t rows = MR_MAX(8, (int64_t)((size_t)chunk_kb * 1024 / ws) & ~(int64_t)7);
            double bc[2] = {1e30, 1e30};
            for (int p = 0; p < passes; p++)
                for (int r = 0; r < 2; r++) bc[r] = MR_MIN(bc[r], matvec_chunked(nt, (uint32_t)t, W, k, m, rows, X, y, r));
            for (int r = 0; r < 2; r++) gch[r] = (double)ws * (double)m / bc[r] / 1e9;
        }
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
        char pbw[16] = "-", pi8[16] = "-", pdq[16] = "-", prp[16] = "-";
        if (r8) snprintf(prp, sizeof prp, "%.2f", repack_gbs);
        if (quant_can_dequant((uint32_t)t)) snprintf(pdq, sizeof pdq, "%.2f", dgbs);
        if (bw > 0) snprintf(pbw, sizeof pbw, "%.0f%%", 100.0 * gbs / bw);
        const double pk = quant_isa_selected((uint32_t)t) == QUANT_ISA_VNNI ? vpeak : peak;
        if (pk > 0) snprintf(pi8, sizeof pi8, "%.0f%%", 100.0 * gflops / (2.0 * pk));
        printf("%-7s %-6s %12.2f %6s %14.2f %6s %11.2f %10s %11s\n", mr_type_name((uint32_t)t),
               quant_isa_name(quant_isa_selected((uint32_t)t)), gbs, pbw, gflops, pi8, qgbs, pdq, prp);
        if (gch[0] > 0)
            printf("        matvec in %d KiB chunks: shared counter %.2f GB/s (%.0f%% bw), a range per thread %.2f GB/s "
                   "(%.0f%% bw)\n", chunk_kb, gch[0], bw > 0 ? 100.0 * gch[0] / bw : 0.0, gch[1],
                   bw > 0 ? 100.0 * gch[1] / bw : 0.0);
        fflush(stdout);
        mr_free_aligned(W), mr_free_aligned(X), mr_free_aligned(y), free(xf), free(yd);
    }
    return 0;
}
