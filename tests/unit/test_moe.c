/*
 * test_moe.c — cpu_moe (the three-job routed-expert FFN, src/cpu/moe.c) is
 * bit-identical to the per-expert loop it replaced (three cpu_matmul per
 * expert, weighted sum in expert-id order), for several token counts, thread
 * counts, weight types (K-quant and 32-block activation formats) and a hidden
 * size that is not a multiple of the 256-row work chunk. Also checks
 * cpu_matmul_multi against separate cpu_matmul calls.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "check.h"
#include "cpu/cpu.h"
#include "cpu/moe.h"
#include "quant/quant.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float frnd(void) { return (float)(rnd() & 0xFFFF) / 65536.0f - 0.5f; }

/* Random quants with small sane fp16 scales. */
static mr_weight mkw(uint32_t t, int64_t k, int64_t m, int64_t n) {
    mr_weight w = {.name = "w", .type = t, .k = k, .m = m, .n_mat = n};
    w.row_bytes = mr_row_size(t, k);
    w.mat_bytes = w.row_bytes * (size_t)m;
    const size_t bytes = w.mat_bytes * (size_t)n, bb = mr_type_get(t)->tsize;
    uint8_t *p = mr_malloc_aligned(bytes);
    for (size_t i = 0; i < bytes; i++) p[i] = (uint8_t)rnd();
    for (size_t b = 0; b + bb <= bytes; b += bb) {
        const uint16_t h = mr_fp32_to_fp16(0.002f + 0.001f * (float)(rnd() % 8)), h2 = mr_fp32_to_fp16(0.001f);
        if (t == MR_TYPE_Q4_K) memcpy(p + b, &h, 2), memcpy(p + b + 2, &h2, 2);
        else if (t == MR_TYPE_Q6_K) memcpy(p + b + 208, &h, 2);
        else memcpy(p + b, &h, 2); /* Q4_0 / Q8_0: d first */
    }
    w.data = p;
    return w;
}

static void loop_ref(cpu_mm *mm, const cpu_moe_w *w, int T, const float *x, int K, const int32_t *sel,
                     const float *selw, float *out) {
    const int E = (int)w->gate->n_mat, D = (int)w->gate->k, F = (int)w->gate->m;
    float *ex = malloc(sizeof(float) * (size_t)T * D), *a = malloc(sizeof(float) * (size_t)T * F),
          *b = malloc(sizeof(float) * (size_t)T * F), *y = malloc(sizeof(float) * (size_t)T * D);
    int *toks = malloc(sizeof(int) * (size_t)T), *slot = malloc(sizeof(int) * (size_t)T);
    memset(out, 0, sizeof(float) * (size_t)T * D);
    for (int e = 0; e < E; e++) {
        int n = 0;
        for (int t = 0; t < T; t++)
            for (int j = 0; j < K; j++)
                if (sel[t * K + j] == e) toks[n] = t, slot[n] = j, n++;
        if (!n) continue;
        for (int i = 0; i < n; i++) memcpy(ex + (size_t)i * D, x + (size_t)toks[i] * D, sizeof(float) * D);
        cpu_matmul(mm, w->gate, e, ex, n, a);
        cpu_matmul(mm, w->up, e, ex, n, b);
        if (w->gelu) cpu_gelu_mul(a, b, (int64_t)n * F);
        else cpu_silu_mul(a, b, (int64_t)n * F);
        cpu_matmul(mm, w->down, e, a, n, y);
        for (int i = 0; i < n; i++) {
            const float wt = selw[toks[i] * K + slot[i]];
            for (int d = 0; d < D; d++) out[(size_t)toks[i] * D + d] += wt * y[(size_t)i * D + d];
        }
    }
    free(ex), free(a), free(b), free(y), free(toks), free(slot);
}

static void run_case(uint32_t tg, uint32_t td, int D, int F, int E, int K, int T, int nth, bool gelu) {
    mr_weight g = mkw(tg, D, F, E), u = mkw(tg, D, F, E), d = mkw(td, F, D, E);
    cpu_moe_w mw = {.gate = &g, .up = &u, .down = &d, .gelu = gelu};
    float *x = malloc(sizeof(float) * (size_t)T * D), *o1 = malloc(sizeof(float) * (size_t)T * D),
          *o2 = malloc(sizeof(float) * (size_t)T * D), *selw = malloc(sizeof(float) * (size_t)T * K);
    int32_t *sel = malloc(sizeof(int32_t) * (size_t)T * K);
    for (int i = 0; i < T * D; i++) x[i] = frnd();
    for (int t = 0; t < T; t++)
        for (int j = 0; j < K; j++) {
            int e, dup;
            do {
                e = (int)(rnd() % (uint32_t)E);
                dup = 0;
                for (int q = 0; q < j; q++) dup |= sel[t * K + q] == e;
            } while (dup);
            sel[t * K + j] = e;
            selw[t * K + j] = 0.1f + frnd();
        }
    cpu_mm ref = {.tp = mr_tp_new(1)}, mm = {.tp = mr_tp_new(nth)};
    loop_ref(&ref, &mw, T, x, K, sel, selw, o1);
    CHECK(cpu_moe(&mm, &mw, T, x, K, sel, selw, o2) == 0, "cpu_moe: %s", mr_geterr());
    int bad = 0;
    for (int i = 0; i < T * D; i++) bad += memcmp(&o1[i], &o2[i], sizeof(float)) != 0;
    CHECK(bad == 0, "%s/%s D %d F %d E %d K %d T %d threads %d: %d of %d outputs differ (first %g vs %g)",
          mr_type_name(tg), mr_type_name(td), D, F, E, K, T, nth, bad, T * D, o1[0], o2[0]);
    CHECK(mm.bytes_read > 0, "bytes_read counted");
    /* again on the same scratch with another T (buffers regrow) */
    const int T2 = T > 1 ? T / 2 : 1;
    loop_ref(&ref, &mw, T2, x, K, sel, selw, o1);
    CHECK(cpu_moe(&mm, &mw, T2, x, K, sel, selw, o2) == 0, "cpu_moe again");
    bad = 0;
    for (int i = 0; i < T2 * D; i++) bad += memcmp(&o1[i], &o2[i], sizeof(float)) != 0;
    CHECK(bad == 0, "second call T %d: %d outputs differ", T2, bad);
    cpu_mm_free(&ref), cpu_mm_free(&mm);
    mr_tp_free(ref.tp), mr_tp_free(mm.tp);
    mr_free_aligned((void *)g.data), mr_free_aligned((void *)u.data), mr_free_aligned((void *)d.data);
    free(x), free(o1), free(o2), free(selw), free(sel);
}

static void test_multi(void) {
    const int D = 512, T = 5;
    mr_weight a = mkw(MR_TYPE_Q4_K, D, 96, 1), b = mkw(MR_TYPE_Q6_K, D, 48, 1), c = mkw(MR_TYPE_Q8_0, D, 64, 1);
    float *x = malloc(sizeof(float) * T * D), *y[3], *z[3];
    for (int i = 0; i < T * D; i++) x[i] = frnd();
    const mr_weight *W[3] = {&a, &b, &c};
    for (int i = 0; i < 3; i++) y[i] = malloc(sizeof(float) * T * 96), z[i] = malloc(sizeof(float) * T * 96);
    cpu_mm mm = {.tp = mr_tp_new(2)};
    for (int i = 0; i < 3; i++) cpu_matmul(&mm, W[i], 0, x, T, y[i]);
    CHECK(cpu_matmul_multi(&mm, 3, W, x, T, z) == 0, "multi");
    for (int i = 0; i < 3; i++)
        CHECK(memcmp(y[i], z[i], sizeof(float) * T * (size_t)W[i]->m) == 0, "multi weight %d differs", i);
    cpu_mm_free(&mm);
    mr_tp_free(mm.tp);
    for (int i = 0; i < 3; i++) free(y[i]), free(z[i]);
    free(x);
    mr_free_aligned((void *)a.data), mr_free_aligned((void *)b.data), mr_free_aligned((void *)c.data);
}

/* The dispatched activations (AVX2 where the CPU has it) against the scalar references: within
 * a few ulp (absolute 1e-30 near zero; GELU 1e-7, where tanhf rounds to -1 and the sigmoid
 * form keeps a value below that) over ordinary values, both tails (exp
 * clamped), zeros and a tail of 5 that is not a multiple of 8; NaN stays NaN. */
static void test_activations(void) {
    enum { N = 4101 };
    static float g[N], u[N], a[N], b[N];
    uint32_t st = 12345;
    for (int i = 0; i < N; i++) {
        st = st * 1664525u + 1013904223u;
        g[i] = ((float)(st >> 8) / 16777216.0f - 0.5f) * (i < 2048 ? 12.0f : 200.0f);
        st = st * 1664525u + 1013904223u;
        u[i] = (float)(st >> 8) / 16777216.0f - 0.5f;
    }
    g[5] = 0.0f, g[6] = -0.0f, g[7] = 1e-30f, g[8] = 88.0f, g[9] = -88.0f, g[10] = 1e4f, g[11] = -1e4f, g[12] = NAN;
    for (int gelu = 0; gelu < 2; gelu++) {
        memcpy(a, g, sizeof g), memcpy(b, g, sizeof g);
        if (gelu) cpu_gelu_mul(a, u, N), cpu_gelu_mul_ref(b, u, N);
        else cpu_silu_mul(a, u, N), cpu_silu_mul_ref(b, u, N);
        int bad = 0, first = -1;
        for (int i = 0; i < N; i++) {
            const bool ok = isnan(b[i]) ? isnan(a[i]) : fabsf(a[i] - b[i]) <= 5e-7f * fabsf(b[i]) + (gelu ? 1e-7f : 1e-30f);
            if (!ok && bad++ == 0) first = i;
        }
        CHECK(bad == 0, "%s: %d of %d values differ from the scalar reference (first [%d] g %g: %g vs %g)",
              gelu ? "gelu_mul" : "silu_mul", bad, N, first, first >= 0 ? g[first] : 0.0, first >= 0 ? a[first] : 0.0,
              first >= 0 ? b[first] : 0.0);
    }
}

int main(void) {
    test_activations();
    const int Ts[] = {1, 3, 17, 70};
    for (size_t i = 0; i < MR_ARRAY_LEN(Ts); i++) {
        run_case(MR_TYPE_Q4_K, MR_TYPE_Q6_K, 512, 768, 16, 4, Ts[i], 2, false);
        run_case(MR_TYPE_Q4_K, MR_TYPE_Q6_K, 256, 512, 8, 2, Ts[i], 3, true);
    }
    /* 32-block activations; hidden 288 = 256 + 32 (a short last chunk) */
    run_case(MR_TYPE_Q4_0, MR_TYPE_Q8_0, 256, 288, 8, 3, 9, 2, false);
    run_case(MR_TYPE_Q8_0, MR_TYPE_Q4_0, 64, 96, 4, 2, 1, 2, false);
    test_multi();
    return check_done();
}
