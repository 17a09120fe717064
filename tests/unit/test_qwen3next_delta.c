/*
 * test_qwen3next_delta.c — the chunked form of the gated delta rule
 * (cpu_delta_chunked) against the recurrent reference (cpu_delta_recurrent
 * with the scalar step) on random inputs: lengths below, at and past the
 * chunk size and not multiples of it, several chunk sizes, head shapes with
 * Sk != Sv, a non-zero starting state, strong and weak decays, and two
 * sequences whose rows interleave in one buffer (each with its own state).
 * Outputs and final states must agree within a normalised tolerance
 * (max |diff| / max |ref| over all outputs, resp. the state), for both the
 * AVX2 and the plain C products.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "check.h"
#include "cpu/delta.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) { /* uniform [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static double nerr(const float *ref, const float *got, size_t n) {
    double d = 0, mx = 1e-30;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)ref[i] - got[i]));
        mx = fmax(mx, fabs((double)ref[i]));
    }
    return d / mx;
}

#define TOL 1e-5

/* n_rows tokens; seq_of[r] in {0, 1} says which of two sequences row r
 * belongs to (all 0: one sequence). */
static void run_case(int Sk, int Sv, int n_rows, int L, bool two, double g_scale) {
    const size_t ld_x = (size_t)2 * Sk + Sv + 3, ld_g = 2, ld_o = (size_t)Sv + 5;
    float *x = malloc(sizeof(float) * ld_x * n_rows), *g = malloc(sizeof(float) * ld_g * n_rows);
    float *beta = malloc(sizeof(float) * ld_g * n_rows);
    float *o_ref = calloc(ld_o * n_rows, sizeof(float)), *o_got = calloc(ld_o * n_rows, sizeof(float));
    const size_t sn = (size_t)Sk * Sv;
    float *s_ref[2], *s_got[2];
    for (int s = 0; s < 2; s++) {
        s_ref[s] = malloc(sizeof(float) * sn);
        s_got[s] = malloc(sizeof(float) * sn);
        for (size_t i = 0; i < sn; i++) s_ref[s][i] = 0.3f * frand();
    }
    for (int r = 0; r < n_rows; r++) {
        float *q = x + r * ld_x, *k = q + Sk, *v = q + 2 * Sk;
        for (int i = 0; i < Sk; i++) q[i] = frand(), k[i] = frand();
        for (int i = 0; i < Sv; i++) v[i] = 2.0f * frand();
        cpu_l2norm(q, Sk, 1e-6f);
        cpu_l2norm(k, Sk, 1e-6f);
        g[r * ld_g] = (float)(g_scale * (frand() - 1.0f) * 0.5); /* (-g_scale, 0] */
        beta[r * ld_g] = 0.5f + 0.5f * frand();
    }
    /* rows of each sequence, in order */
    int32_t *rows[2];
    int cnt[2] = {0, 0};
    rows[0] = malloc(sizeof(int32_t) * n_rows);
    rows[1] = malloc(sizeof(int32_t) * n_rows);
    for (int r = 0; r < n_rows; r++) {
        const int s = two ? (r % 3 == 1) : 0; /* two: roughly 2:1 interleaved */
        rows[s][cnt[s]++] = r;
    }
    cpu_delta_seq a = {.Sk = Sk, .Sv = Sv, .q = x, .k = x + Sk, .v = x + 2 * Sk, .ld_x = ld_x, .g = g, .beta = beta,
                       .ld_g = ld_g, .o = o_ref, .ld_o = ld_o, .scale = 1.0f / sqrtf((float)Sk)};
    float *work = mr_malloc_aligned(sizeof(float) * cpu_delta_chunk_work(Sk, Sv, L));
    for (int plain = 0; plain < 2; plain++) {
        for (int s = 0; s < 2; s++) memcpy(s_got[s], s_ref[s], sizeof(float) * sn);
        float *s0[2] = {malloc(sizeof(float) * sn), malloc(sizeof(float) * sn)};
        for (int s = 0; s < 2; s++) memcpy(s0[s], s_ref[s], sizeof(float) * sn);
        a.o = o_ref;
        for (int s = 0; s < 2; s++) cpu_delta_recurrent(s0[s], &a, cnt[s], rows[s], true);
        a.o = o_got;
        for (int s = 0; s < 2; s++) cpu_delta_chunked(s_got[s], &a, cnt[s], rows[s], L, work, plain);
        double eo = 0, es = 0;
        eo = nerr(o_ref, o_got, ld_o * n_rows);
        for (int s = 0; s < 2; s++) es = fmax(es, nerr(s0[s], s_got[s], sn));
        printf("Sk %3d Sv %3d n %3d L %3d %s g_scale %4.1f %-5s: out %.2e state %.2e\n", Sk, Sv, n_rows, L,
               two ? "2 seqs" : "1 seq ", g_scale, plain ? "plain" : "fast", eo, es);
        CHECK(eo < TOL && es < TOL, "Sk %d Sv %d n %d L %d two %d plain %d: output err %.3g, state err %.3g", Sk, Sv,
              n_rows, L, two, plain, eo, es);
        free(s0[0]);
        free(s0[1]);
    }
    mr_free_aligned(work);
    for (int s = 0; s < 2; s++) free(s_ref[s]), free(s_got[s]), free(rows[s]);
    free(x), free(g), free(beta), free(o_ref), free(o_got);
}

int main(void) {
    const int lens[] = {1, 5, 63, 64, 65, 130, 200};
    for (size_t i = 0; i < MR_ARRAY_LEN(lens); i++) run_case(128, 128, lens[i], 64, false, 1.0);
    run_case(64, 64, 37, 16, false, 1.0);
    run_case(64, 64, 100, 8, false, 4.0);
    run_case(32, 48, 77, 32, false, 0.2);
    run_case(128, 128, 150, 64, true, 1.0);
    run_case(64, 64, 301, 64, true, 8.0);
    run_case(128, 128, 96, 256, true, 0.05);
    return check_done();
}
