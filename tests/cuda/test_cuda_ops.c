/*
 * test_cuda_ops.c — every CUDA kernel of src/cuda against the CPU reference
 * (src/quant scalar dequantization, src/cpu ops, a plain C attention and
 * router), by normalised error ||got - ref|| / ||ref||. Exits 77 with
 * "SKIP: no CUDA device" when there is none.
 *
 *   test_cuda_ops            correctness
 *   test_cuda_ops --bench    plus GB/s of the matvecs (Qwen3-30B-A3B shapes)
 *                            and of the attention decode
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cpu/cpu.h"
#include "cpu/delta.h"
#include "cuda/cuda_backend.h"
#include "quant/quant.h"
#include "quant/types.h"
#include "synth/synth.h"

static int g_pass, g_fail;
#define EXPECT(c, ...)                                                                           \
    do {                                                                                         \
        if (c) g_pass++;                                                                         \
        else {                                                                                   \
            g_fail++;                                                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                 \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fputc('\n', stderr);                                                                 \
        }                                                                                        \
    } while (0)
#define OK(call)                                                                                 \
    do {                                                                                         \
        if ((call) != 0) {                                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, mr_geterr());     \
            g_fail++;                                                                            \
            return;                                                                              \
        }                                                                                        \
    } while (0)

static mrc_ctx *C;
static synth_rng R;

static float frand(void) { return (float)((synth_rng_next(&R) >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1; }
static void fill(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = frand();
}

static double nerr(const float *got, const float *ref, int64_t n) {
    double e = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)got[i] - ref[i];
        e += d * d, r += (double)ref[i] * ref[i];
    }
    return r > 0 ? sqrt(e / r) : sqrt(e);
}

/* device copy of n bytes of host data */
static void *dup_dev(const void *h, size_t n) {
    void *d = mrc_alloc(C, n);
    if (d && mrc_upload(C, d, h, n)) return NULL;
    return d;
}
static int get(void *h, const void *d, size_t n) { return mrc_download(C, h, d, n) || mrc_sync(C); }

/* Random weight data of n_mat x m rows of k in type t (K-quants via synth_fill). */
static void *make_weight(uint32_t t, int64_t k, int64_t m, int64_t n_mat) {
    const size_t n = mr_row_size(t, k) * (size_t)(m * n_mat);
    void *w = malloc(n);
    if (t == MR_TYPE_F32 || t == MR_TYPE_F16 || t == MR_TYPE_Q4_0 || t == MR_TYPE_Q8_0) {
        float *f = malloc(sizeof(float) * (size_t)k);
        for (int64_t r = 0; r < m * n_mat; r++) {
            fill(f, k);
            quant_quantize_row(t, f, (char *)w + (size_t)r * mr_row_size(t, k), k);
        }
        free(f);
    } else {
        synth_tensor st = {.type = t, .n_dims = 3, .ne = {k, m, n_mat, 1}, .init = SYNTH_INIT_WEIGHT};
        synth_fill(&st, &R, w, n);
    }
    return w;
}

/* ---- matvec --------------------------------------------------------------------------------- */
static void test_matvec(uint32_t t, int64_t k, int64_t m) {
    void *wh = make_weight(t, k, m, 1);
    mrc_weight W;
    OK(mrc_weight_upload(C, &W, wh, t, k, m, 1));
    float *x = malloc(sizeof(float) * k), *y = malloc(sizeof(float) * m), *yr = malloc(sizeof(float) * m),
          *yq = malloc(sizeof(float) * m), *row = malloc(sizeof(float) * k), *xd = malloc(sizeof(float) * k);
    fill(x, k);
    const size_t xs = mrc_q8_1_row_size(k);
    float *dx = dup_dev(x, sizeof(float) * k), *dy = mrc_alloc(C, sizeof(float) * m);
    void *dxq = mrc_alloc(C, xs);
    OK(mrc_quantize_q8_1(C, dx, dxq, k, 1));
    OK(mrc_matvec(C, &W, 0, dx, dxq, dy));
    OK(get(y, dy, sizeof(float) * m));
    /* activations as the GPU quantized them */
    uint8_t *xq = malloc(xs);
    get(xq, dxq, xs);
    const float *ds = (const float *)(xq + k);
    int qbad = 0;
    for (int64_t i = 0; i < k; i++) {
        xd[i] = ds[2 * (i / 32)] * (float)(int8_t)xq[i];
        const float d = ds[2 * (i / 32)];
        if (d > 0 && fabsf(x[i] / d - (int8_t)xq[i]) > 0.5001f) qbad++;
    }
    for (int64_t r = 0; r < m; r++) {
        quant_dequant_row(t, (char *)wh + (size_t)r * W.row_bytes, row, k);
        double a = 0, b = 0;
        for (int64_t i = 0; i < k; i++) a += (double)row[i] * x[i], b += (double)row[i] * xd[i];
        yr[r] = (float)a, yq[r] = (float)b;
    }
    const bool flt = mr_type_is_float(t);
    const double e = nerr(y, yr, m), eq = nerr(y, flt ? yr : yq, m);
    EXPECT(qbad == 0, "quantize_q8_1: %d values off by more than half a step", qbad);
    /* the quantization error of x and W over m rows; one row's relative error is one draw of it (a
     * small dot product makes it large), so few rows get a wider bar */
    const double ebar = m >= 32 ? 1.5e-2 : 5e-2;
    EXPECT(e < ebar, "matvec %s k %lld m %lld: error vs float x %.3e", mr_type_name(t), (long long)k, (long long)m, e);
    EXPECT(eq < 1e-5, "matvec %s k %lld m %lld: error vs quantized x %.3e", mr_type_name(t), (long long)k,
           (long long)m, eq);
    printf("matvec %-4s k %5lld m %5lld: err %.2e (vs q8_1 x: %.2e)\n", mr_type_name(t), (long long)k, (long long)m, e, eq);
    mrc_weight_free(&W);
    mrc_dfree(dx), mrc_dfree(dy), mrc_dfree(dxq);
    free(wh), free(x), free(y), free(yr), free(yq), free(row), free(xd), free(xq);
}

/* matvec_n: 3 matrices of one type (the rows of q, k and v) in one launch, the same sums as
 * mrc_matvec of each; a type mismatch is refused. */
static void test_matvec_n(uint32_t t) {
    const int64_t k = 2048, ms[3] = {4096, 512, 37};
    mrc_weight W[3];
    void *wh[3];
    float *dy[3], *dz[3];
    for (int i = 0; i < 3; i++) {
        wh[i] = make_weight(t, k, ms[i], 1);
        OK(mrc_weight_upload(C, &W[i], wh[i], t, k, ms[i], 1));
        dy[i] = mrc_alloc(C, sizeof(float) * ms[i]), dz[i] = mrc_alloc(C, sizeof(float) * ms[i]);
    }
    float *x = malloc(sizeof(float) * k), *a = malloc(sizeof(float) * 4096), *b = malloc(sizeof(float) * 4096);
    fill(x, k);
    float *dx = dup_dev(x, sizeof(float) * k);
    void *dxq = mrc_alloc(C, mrc_q8_1_row_size(k));
    OK(mrc_quantize_q8_1(C, dx, dxq, k, 1));
    const mrc_weight *Wp[3] = {&W[0], &W[1], &W[2]};
    OK(mrc_matvec_n(C, 3, Wp, dxq, dz));
    bool same = true;
    for (int i = 0; i < 3; i++) {
        OK(mrc_matvec(C, &W[i], 0, dx, dxq, dy[i]));
        OK(get(a, dy[i], sizeof(float) * ms[i])); OK(get(b, dz[i], sizeof(float) * ms[i]));
        same = same && !memcmp(a, b, sizeof(float) * ms[i]);
    }
    EXPECT(same, "matvec_n %s differs from mrc_matvec", mr_type_name(t));
    mrc_weight Wf = W[1];
    Wf.type = t == MR_TYPE_Q8_0 ? MR_TYPE_Q4_0 : MR_TYPE_Q8_0;
    const mrc_weight *Wm[2] = {&W[0], &Wf};
    EXPECT(mrc_matvec_n(C, 2, Wm, dxq, dz) != 0, "matvec_n accepts two types");
    /* K-quants of 64-element units mix (a Q4_K_M file's Q6_K v with Q4_K q and k): v (37 rows,
     * a partial block) of another of them, the same sums as mrc_matvec */
    if (mrc_kq64(t)) {
        const uint32_t t2 = t == MR_TYPE_Q6_K ? MR_TYPE_Q4_K : MR_TYPE_Q6_K;
        void *wv = make_weight(t2, k, ms[2], 1);
        mrc_weight Wv;
        OK(mrc_weight_upload(C, &Wv, wv, t2, k, ms[2], 1));
        const mrc_weight *Wx[3] = {&W[0], &W[1], &Wv};
        OK(mrc_matvec_n(C, 3, Wx, dxq, dz));
        OK(mrc_matvec(C, &Wv, 0, dx, dxq, dy[2]));
        bool same2 = true;
        for (int i = 0; i < 3; i++) {
            if (i < 2) OK(mrc_matvec(C, &W[i], 0, dx, dxq, dy[i]));
            OK(get(a, dy[i], sizeof(float) * ms[i])); OK(get(b, dz[i], sizeof(float) * ms[i]));
            same2 = same2 && !memcmp(a, b, sizeof(float) * ms[i]);
        }
        EXPECT(same2, "matvec_n %s + %s differs from mrc_matvec", mr_type_name(t), mr_type_name(t2));
        printf("matvec_n %s + %s: %s\n", mr_type_name(t), mr_type_name(t2), same2 ? "same sums" : "DIFFERENT");
        mrc_weight_free(&Wv);
        free(wv);
    }
    printf("matvec_n %-4s: %s\n", mr_type_name(t), same ? "same sums" : "DIFFERENT");
    for (int i = 0; i < 3; i++) mrc_weight_free(&W[i]), mrc_dfree(dy[i]), mrc_dfree(dz[i]), free(wh[i]);
    mrc_dfree(dx), mrc_dfree(dxq);
    free(x), free(a), free(b);
}

/* Grouped MoE: 8 experts, 5 slots (one out of range), shared and per-slot activations. */
static void test_moe(uint32_t t) {
    const int64_t k = 512, m = 96, E = 8;
    const int n = 5;
    const int32_t ids[5] = {5, 2, 7, 2, 9};
    void *wh = make_weight(t, k, m, E);
    mrc_weight W;
    OK(mrc_weight_upload(C, &W, wh, t, k, m, E));
    float *x = malloc(sizeof(float) * k * n), *y = malloc(sizeof(float) * m * n), *yr = calloc((size_t)(m * n), 4),
          *row = malloc(sizeof(float) * k);
    fill(x, k * n);
    const size_t xs = mrc_q8_1_row_size(k);
    float *dx = dup_dev(x, sizeof(float) * k * n), *dy = mrc_alloc(C, sizeof(float) * m * n);
    int32_t *did = dup_dev(ids, sizeof ids);
    void *dxq = mrc_alloc(C, xs * n);
    OK(mrc_quantize_q8_1(C, dx, dxq, k, n));
    for (int shared = 1; shared >= 0; shared--) {
        OK(mrc_moe_matvec(C, &W, did, n, dx, shared ? 0 : (size_t)k, dxq, shared ? 0 : xs, dy));
        OK(get(y, dy, sizeof(float) * m * n));
        for (int s = 0; s < n; s++)
            for (int64_t r = 0; r < m; r++) {
                double a = 0;
                if (ids[s] < E) {
                    quant_dequant_row(t, (char *)wh + ids[s] * W.mat_bytes + r * W.row_bytes, row, k);
                    for (int64_t i = 0; i < k; i++) a += (double)row[i] * x[(shared ? 0 : s) * k + i];
                }
                yr[s * m + r] = (float)a;
            }
        bool zero = true;
        for (int64_t r = 0; r < m; r++) zero = zero && y[4 * m + r] == 0.0f;
        const double e = nerr(y, yr, m * n);
        EXPECT(e < 1.5e-2 && zero, "moe %s %s: err %.3e, out-of-range slot zero %d", mr_type_name(t),
               shared ? "shared" : "per-slot", e, zero);
        printf("moe    %-4s %s x: err %.2e\n", mr_type_name(t), shared ? "shared  " : "per-slot", e);
        /* the pair launch (gate and up): W then a second copy of it, the same bytes as two launches */
        if (!mr_type_is_float(t)) {
            float *dy2 = mrc_alloc(C, sizeof(float) * m * n), *dy3 = mrc_alloc(C, sizeof(float) * m * n);
            float *y2 = malloc(sizeof(float) * m * n), *y3 = malloc(sizeof(float) * m * n);
            mrc_weight W2;
            OK(mrc_weight_upload(C, &W2, wh, t, k, m, E));
            OK(mrc_moe_matvec2(C, &W, &W2, did, n, dxq, shared ? 0 : xs, dy2, dy3));
            OK(get(y2, dy2, sizeof(float) * m * n)); OK(get(y3, dy3, sizeof(float) * m * n));
            EXPECT(!memcmp(y, y2, sizeof(float) * m * n) && !memcmp(y, y3, sizeof(float) * m * n),
                   "moe_matvec2 %s %s differs from moe_matvec", mr_type_name(t), shared ? "shared" : "per-slot");
            mrc_weight W3 = W2;
            W3.m = m - 32;
            EXPECT(mrc_moe_matvec2(C, &W, &W3, did, n, dxq, 0, dy2, dy3) != 0, "moe_matvec2 accepts unequal shapes");
            mrc_weight_free(&W2);
            mrc_dfree(dy2), mrc_dfree(dy3);
            free(y2), free(y3);
        }
    }
    if (mr_type_is_float(t))
        EXPECT(mrc_moe_matvec_grp(C, &W, NULL, did, n, dxq, xs, dy, NULL) != 0 && strstr(mr_geterr(), "quantized"),
               "moe_matvec_grp accepts %s weights", mr_type_name(t));
    /* moe_matvec_sum (one token's downs and their weighted sum, acc 0 / 1) against moe_matvec into
     * slots + moe_combine: the same floats */
    if (!mr_type_is_float(t)) {
        float wts[5], y0[96], a[96], b[96];
        fill(wts, n), fill(y0, m);
        float *dw = dup_dev(wts, sizeof wts), *da = mrc_alloc(C, sizeof(float) * m), *db = mrc_alloc(C, sizeof(float) * m);
        for (int acc = 0; acc < 2; acc++) {
            OK(mrc_upload(C, da, y0, sizeof(float) * m)); OK(mrc_upload(C, db, y0, sizeof(float) * m));
            OK(mrc_moe_matvec(C, &W, did, n, dx, (size_t)k, dxq, xs, dy));
            OK(mrc_moe_combine(C, da, dy, dw, 1, n, (int)m, acc));
            OK(mrc_moe_matvec_sum(C, &W, did, n, dxq, xs, dw, db, acc));
            OK(get(a, da, sizeof(float) * m)); OK(get(b, db, sizeof(float) * m));
            EXPECT(!memcmp(a, b, sizeof(float) * m), "moe_matvec_sum %s (acc %d) differs from moe_matvec + moe_combine",
                   mr_type_name(t), acc);
        }
        mrc_dfree(dw), mrc_dfree(da), mrc_dfree(db);
        /* moe_gate_up_q8 against moe_matvec2 + act_q8 (per-slot activations; W as gate, a copy as up) */
        const size_t rs = mrc_q8_1_row_size(m);
        mrc_weight W2;
        OK(mrc_weight_upload(C, &W2, wh, t, k, m, E));
        float *g1 = mrc_alloc(C, sizeof(float) * m * n), *u1 = mrc_alloc(C, sizeof(float) * m * n),
              *g2 = mrc_alloc(C, sizeof(float) * m * n);
        void *q1 = mrc_alloc(C, rs * n), *q2 = mrc_alloc(C, rs * n);
        float *h1 = malloc(sizeof(float) * m * n), *h2 = malloc(sizeof(float) * m * n);
        uint8_t *b1 = malloc(rs * n), *b2 = malloc(rs * n);
        for (int gelu = 0; gelu < 2; gelu++) {
            OK(mrc_memset(C, q1, 0, rs * n)); OK(mrc_memset(C, q2, 0, rs * n));
            OK(mrc_moe_matvec2(C, &W, &W2, did, n, dxq, xs, g1, u1));
            OK(mrc_act_q8(C, gelu, g1, u1, q1, n, m));
            OK(mrc_moe_gate_up_q8(C, gelu, &W, &W2, did, n, dxq, xs, g2, q2));
            OK(get(h1, g1, sizeof(float) * m * n)); OK(get(h2, g2, sizeof(float) * m * n));
            OK(get(b1, q1, rs * n)); OK(get(b2, q2, rs * n));
            EXPECT(!memcmp(h1, h2, sizeof(float) * m * n) && !memcmp(b1, b2, rs * n),
                   "moe_gate_up_q8 %s (%s) differs from moe_matvec2 + act_q8", mr_type_name(t), gelu ? "gelu" : "silu");
        }
        mrc_weight_free(&W2);
        mrc_dfree(g1), mrc_dfree(u1), mrc_dfree(g2), mrc_dfree(q1), mrc_dfree(q2);
        free(h1), free(h2), free(b1), free(b2);
    }
    mrc_weight_free(&W);
    mrc_dfree(dx), mrc_dfree(dy), mrc_dfree(did), mrc_dfree(dxq);
    free(wh), free(x), free(y), free(yr), free(row);
}

/* The decode MoE kernels at full 32-lane rows (k 2048: the gate/up kernel's 512 threads, 16 rows
 * at a time) and with more slots than the down kernel's 8 warps (12, one out of range): the same
 * floats and bytes as their parts. */
static void test_moe_wide(uint32_t t) {
    const int64_t k = 2048, m = 64, E = 16;
    enum { N = 12 };
    const int32_t ids[N] = {3, 15, 0, 7, 7, 2, 11, 16, 5, 9, 1, 14};
    void *wh = make_weight(t, k, m, E);
    mrc_weight W, W2;
    OK(mrc_weight_upload(C, &W, wh, t, k, m, E));
    OK(mrc_weight_upload(C, &W2, wh, t, k, m, E));
    const size_t xs = mrc_q8_1_row_size(k), rs = mrc_q8_1_row_size(m), ys = sizeof(float) * m * N;
    float *x = malloc(sizeof(float) * k * N), wts[N], y0[64];
    fill(x, k * N), fill(wts, N), fill(y0, m);
    float *dx = dup_dev(x, sizeof(float) * k * N), *dw = dup_dev(wts, sizeof wts);
    int32_t *did = dup_dev(ids, sizeof ids);
    void *dxq = mrc_alloc(C, xs * N), *q1 = mrc_alloc(C, rs * N), *q2 = mrc_alloc(C, rs * N);
    float *d1 = mrc_alloc(C, ys), *d2 = mrc_alloc(C, ys), *da = mrc_alloc(C, sizeof(float) * m),
          *db = mrc_alloc(C, sizeof(float) * m);
    float *a = malloc(ys), *b = malloc(ys);
    uint8_t *b1 = malloc(rs * N), *b2 = malloc(rs * N);
    OK(mrc_quantize_q8_1(C, dx, dxq, k, N));
    for (int acc = 0; acc < 2; acc++) {
        OK(mrc_upload(C, da, y0, sizeof(float) * m)); OK(mrc_upload(C, db, y0, sizeof(float) * m));
        OK(mrc_moe_matvec(C, &W, did, N, NULL, 0, dxq, xs, d1));
        OK(mrc_moe_combine(C, da, d1, dw, 1, N, (int)m, acc));
        OK(mrc_moe_matvec_sum(C, &W, did, N, dxq, xs, dw, db, acc));
        OK(get(a, da, sizeof(float) * m)); OK(get(b, db, sizeof(float) * m));
        EXPECT(!memcmp(a, b, sizeof(float) * m), "moe_matvec_sum %s k 2048, 12 slots (acc %d) differs", mr_type_name(t),
               acc);
    }
    for (int gelu = 0; gelu < 2; gelu++) {
        OK(mrc_moe_matvec2(C, &W, &W2, did, N, dxq, xs, d1, d2));
        OK(mrc_act_q8(C, gelu, d1, d2, q1, N, m));
        OK(mrc_moe_gate_up_q8(C, gelu, &W, &W2, did, N, dxq, xs, d2, q2));
        OK(get(a, d1, ys)); OK(get(b, d2, ys)); OK(get(b1, q1, rs * N)); OK(get(b2, q2, rs * N));
        EXPECT(!memcmp(a, b, ys) && !memcmp(b1, b2, rs * N), "moe_gate_up_q8 %s k 2048 (%s) differs", mr_type_name(t),
               gelu ? "gelu" : "silu");
    }
    printf("moe wide %-4s: checked\n", mr_type_name(t));
    mrc_weight_free(&W), mrc_weight_free(&W2);
    mrc_dfree(dx), mrc_dfree(dw), mrc_dfree(did), mrc_dfree(dxq), mrc_dfree(q1), mrc_dfree(q2);
    mrc_dfree(d1), mrc_dfree(d2), mrc_dfree(da), mrc_dfree(db);
    free(wh), free(x), free(a), free(b), free(b1), free(b2);
}

/* The grouped forms (slots in runs of one matrix, read once per run of up to 8) against the
 * plain ones: the same floats and bytes, bit for bit. Runs of 3, 10 (across a group of 8), 1, 5,
 * an out-of-range id twice; then unsorted ids (correct, only slower); ids NULL (all matrix 0). */
static void test_moe_grp(uint32_t t) {
    const int64_t k = 512, m = 96, E = 8;
    enum { N = 21 };
    int32_t ids[N];
    const int32_t runs[][2] = {{0, 3}, {1, 10}, {2, 1}, {5, 5}, {9, 2}};
    for (int i = 0, s = 0; i < 5; i++)
        for (int j = 0; j < runs[i][1]; j++) ids[s++] = runs[i][0];
    void *wh = make_weight(t, k, m, E);
    mrc_weight W, W2;
    OK(mrc_weight_upload(C, &W, wh, t, k, m, E));
    OK(mrc_weight_upload(C, &W2, wh, t, k, m, E));
    const size_t xs = mrc_q8_1_row_size(k), ys = sizeof(float) * m * N, rs = mrc_q8_1_row_size(m);
    float *x = malloc(sizeof(float) * k * N);
    fill(x, k * N);
    float *dx = dup_dev(x, sizeof(float) * k * N);
    void *dxq = mrc_alloc(C, xs * N), *q1 = mrc_alloc(C, rs * N), *q2 = mrc_alloc(C, rs * N);
    float *d1 = mrc_alloc(C, ys), *d2 = mrc_alloc(C, ys), *d3 = mrc_alloc(C, ys);
    float *a = malloc(ys), *b = malloc(ys), *c3 = malloc(ys);
    uint8_t *b1 = malloc(rs * N), *b2 = malloc(rs * N);
    int32_t *did = mrc_alloc(C, sizeof ids);
    OK(mrc_quantize_q8_1(C, dx, dxq, k, N));
    bool same = true;
    for (int pass = 0; pass < 3; pass++) {
        if (pass == 1) /* unsorted: swap two slots of different runs */
            ids[2] = 5, ids[15] = 0;
        OK(mrc_upload(C, did, ids, sizeof ids));
        const int32_t *pid = pass == 2 ? NULL : did;
        OK(mrc_moe_matvec(C, &W, pid, N, NULL, 0, dxq, xs, d1));
        OK(mrc_moe_matvec_grp(C, &W, NULL, pid, N, dxq, xs, d2, NULL));
        OK(get(a, d1, ys)); OK(get(b, d2, ys));
        EXPECT(!memcmp(a, b, ys), "moe_matvec_grp %s (pass %d) differs from moe_matvec", mr_type_name(t), pass);
        same = same && !memcmp(a, b, ys);
        OK(mrc_memset(C, d2, 0, ys));
        OK(mrc_moe_matvec_grp(C, &W, &W2, pid, N, dxq, xs, d2, d3));
        OK(get(b, d2, ys)); OK(get(c3, d3, ys));
        EXPECT(!memcmp(a, b, ys) && !memcmp(a, c3, ys), "moe_matvec_grp %s pair (pass %d) differs from moe_matvec",
               mr_type_name(t), pass);
        same = same && !memcmp(a, b, ys) && !memcmp(a, c3, ys);
        for (int gelu = 0; gelu < 2; gelu++) {
            OK(mrc_memset(C, q1, 0, rs * N)); OK(mrc_memset(C, q2, 0, rs * N));
            OK(mrc_moe_gate_up_q8(C, gelu, &W, &W2, pid, N, dxq, xs, d1, q1));
            OK(mrc_moe_gate_up_q8_grp(C, gelu, &W, &W2, pid, N, dxq, xs, d2, q2));
            OK(get(a, d1, ys)); OK(get(b, d2, ys)); OK(get(b1, q1, rs * N)); OK(get(b2, q2, rs * N));
            EXPECT(!memcmp(a, b, ys) && !memcmp(b1, b2, rs * N),
                   "moe_gate_up_q8_grp %s (%s, pass %d) differs from moe_gate_up_q8", mr_type_name(t),
                   gelu ? "gelu" : "silu", pass);
            same = same && !memcmp(a, b, ys) && !memcmp(b1, b2, rs * N);
        }
    }
    bool zero = true; /* the ids of pass 1: slots 19 and 20 out of range */
    OK(mrc_upload(C, did, ids, sizeof ids));
    OK(mrc_moe_matvec_grp(C, &W, NULL, did, N, dxq, xs, d2, NULL));
    OK(get(b, d2, ys));
    for (int64_t r = 0; r < 2 * m; r++) zero = zero && b[19 * m + r] == 0.0f;
    EXPECT(zero, "moe_matvec_grp %s: out-of-range ids not zero", mr_type_name(t));
    mrc_weight W3 = W2;
    W3.m = m - 32;
    EXPECT(mrc_moe_matvec_grp(C, &W, &W3, did, N, dxq, xs, d2, d3) != 0, "moe_matvec_grp accepts unequal shapes");
    printf("moe grp %-4s: %s\n", mr_type_name(t), same ? "same floats and bytes" : "DIFFERENT");
    mrc_weight_free(&W), mrc_weight_free(&W2);
    mrc_dfree(dx), mrc_dfree(dxq), mrc_dfree(q1), mrc_dfree(q2), mrc_dfree(d1), mrc_dfree(d2), mrc_dfree(d3);
    mrc_dfree(did);
    free(wh), free(x), free(a), free(b), free(c3), free(b1), free(b2);
}

/* The copy stream: an upload there, ordered after the main stream's memset by an event, and the
 * main stream's add after the upload by another: the add sees the uploaded values. */
static void test_side_stream(void) {
    const int64_t n = 1 << 20;
    float *h = malloc(sizeof(float) * n), *back = malloc(sizeof(float) * n);
    fill(h, n);
    float *d = mrc_alloc(C, sizeof(float) * n), *d2 = mrc_alloc(C, sizeof(float) * n);
    void *e1 = mrc_event_new(C), *e2 = mrc_event_new(C);
    EXPECT(e1 && e2, "event_new: %s", mr_geterr());
    if (e1 && e2) {
        OK(mrc_memset(C, d, 0, sizeof(float) * n));
        OK(mrc_memset(C, d2, 0xff, sizeof(float) * n)); /* NaNs, unless the upload lands after it */
        OK(mrc_event_record(C, e1, 0));
        OK(mrc_event_wait(C, e1, 1));
        OK(mrc_upload_side(C, d2, h, sizeof(float) * n));
        OK(mrc_event_record(C, e2, 1));
        OK(mrc_event_wait(C, e2, 0));
        OK(mrc_add(C, d, d2, n));
        OK(get(back, d, sizeof(float) * n));
        EXPECT(!memcmp(back, h, sizeof(float) * n), "copy stream: the main stream's add did not see the upload");
        printf("copy stream: ordered by events\n");
    }
    mrc_event_free(e1), mrc_event_free(e2);
    mrc_dfree(d), mrc_dfree(d2);
    free(h), free(back);
}

/* ---- fused ops: the same floats and bytes as their parts -------------------------------------------- */
static void test_fused(int n, int T) {
    const size_t rs = mrc_q8_1_row_size(n), nf = sizeof(float) * (size_t)n * T;
    float *x = malloc(nf), *w = malloc(sizeof(float) * n), *u = malloc(nf), *a = malloc(nf), *b = malloc(nf);
    uint8_t *qa = malloc(rs * T), *qb = malloc(rs * T);
    fill(x, (int64_t)n * T), fill(w, n), fill(u, (int64_t)n * T);
    for (int i = 0; i < n * T; i++) x[i] *= 4.0f; /* gates beyond the linear part of SiLU / GELU */
    float *dx = dup_dev(x, nf), *dw = dup_dev(w, sizeof(float) * n), *du = dup_dev(u, nf);
    float *dy = mrc_alloc(C, nf), *dz = mrc_alloc(C, nf);
    void *dqa = mrc_alloc(C, rs * T), *dqb = mrc_alloc(C, rs * T);
    OK(mrc_memset(C, dqa, 0, rs * T)); /* row padding, if any, compares equal */
    OK(mrc_memset(C, dqb, 0, rs * T));
    /* rmsnorm_q8 vs rmsnorm + quantize_q8_1, out of place and in place */
    OK(mrc_rmsnorm(C, dy, dx, dw, T, n, 1e-6f));
    OK(mrc_quantize_q8_1(C, dy, dqa, n, T));
    OK(mrc_rmsnorm_q8(C, dz, dqb, dx, NULL, dw, T, n, 1e-6f));
    OK(get(a, dy, nf)); OK(get(b, dz, nf)); OK(get(qa, dqa, rs * T)); OK(get(qb, dqb, rs * T));
    EXPECT(!memcmp(a, b, nf) && !memcmp(qa, qb, rs * T), "rmsnorm_q8 (n %d, rows %d) differs from its parts", n, T);
    OK(mrc_upload(C, dz, x, nf));
    OK(mrc_rmsnorm_q8(C, dz, dqb, dz, NULL, dw, T, n, 1e-6f));
    OK(get(b, dz, nf)); OK(get(qb, dqb, rs * T));
    EXPECT(!memcmp(a, b, nf) && !memcmp(qa, qb, rs * T), "rmsnorm_q8 in place (n %d) differs", n);
    /* with the residual: x += u, then the norm of x (x keeps the sum) */
    {
        float *r1 = malloc(nf), *r2 = malloc(nf);
        float *dx2 = mrc_alloc(C, nf);
        OK(mrc_upload(C, dx2, x, nf));
        OK(mrc_add(C, dx2, du, (int64_t)n * T));
        OK(mrc_rmsnorm(C, dy, dx2, dw, T, n, 1e-6f));
        OK(mrc_quantize_q8_1(C, dy, dqa, n, T));
        OK(get(a, dy, nf)); OK(get(qa, dqa, rs * T)); OK(get(r1, dx2, nf));
        OK(mrc_upload(C, dx2, x, nf));
        OK(mrc_rmsnorm_q8(C, dz, dqb, dx2, du, dw, T, n, 1e-6f));
        OK(get(b, dz, nf)); OK(get(qb, dqb, rs * T)); OK(get(r2, dx2, nf));
        EXPECT(!memcmp(a, b, nf) && !memcmp(qa, qb, rs * T) && !memcmp(r1, r2, nf),
               "rmsnorm_q8 with a residual (n %d, rows %d) differs from add + rmsnorm + quantize", n, T);
        mrc_dfree(dx2);
        free(r1), free(r2);
    }
    /* act_q8 vs silu_mul / gelu_mul + quantize_q8_1 */
    for (int gelu = 0; gelu < 2; gelu++) {
        OK(mrc_upload(C, dy, x, nf)); OK(mrc_upload(C, dz, x, nf));
        OK(gelu ? mrc_gelu_mul(C, dy, du, (int64_t)n * T) : mrc_silu_mul(C, dy, du, (int64_t)n * T));
        OK(mrc_quantize_q8_1(C, dy, dqa, n, T));
        OK(mrc_act_q8(C, gelu, dz, du, dqb, T, n));
        OK(get(a, dy, nf)); OK(get(b, dz, nf)); OK(get(qa, dqa, rs * T)); OK(get(qb, dqb, rs * T));
        EXPECT(!memcmp(a, b, nf) && !memcmp(qa, qb, rs * T), "act_q8 (%s, n %d) differs from its parts",
               gelu ? "gelu" : "silu", n);
    }
    /* moe_combine: T tokens of k = 4 slots of n/4, written, then added (acc) */
    const int k = 4, m = n / 4;
    float *wt = malloc(sizeof(float) * k * T), *ref = malloc(nf);
    fill(wt, (int64_t)k * T);
    float *dwt = dup_dev(wt, sizeof(float) * k * T);
    for (int acc = 0; acc < 2; acc++) {
        OK(mrc_upload(C, dz, u, nf));
        OK(mrc_moe_combine(C, dz, dx, dwt, T, k, m, acc));
        OK(get(b, dz, sizeof(float) * (size_t)T * m));
        for (int t = 0; t < T; t++)
            for (int i = 0; i < m; i++) {
                float sum = 0.0f;
                for (int j = 0; j < k; j++) sum += wt[t * k + j] * x[((size_t)t * k + j) * m + i];
                ref[(size_t)t * m + i] = acc ? u[(size_t)t * m + i] + sum : sum;
            }
        EXPECT(nerr(b, ref, (int64_t)T * m) < 1e-6, "moe_combine (acc %d) %.3e", acc, nerr(b, ref, (int64_t)T * m));
    }
    printf("rmsnorm_q8 / act_q8 / moe_combine (n %d, rows %d): checked\n", n, T);
    mrc_dfree(dx), mrc_dfree(dw), mrc_dfree(du), mrc_dfree(dy), mrc_dfree(dz), mrc_dfree(dqa), mrc_dfree(dqb);
    mrc_dfree(dwt);
    free(x), free(w), free(u), free(a), free(b), free(qa), free(qb), free(wt), free(ref);
}

/* ---- KV cache writes: rows at the tokens' cells, against the CPU's quantizer; K and V in one
 * launch (kv_write2) gives the same bytes as two ------------------------------------------------------- */
static void test_kv_write(uint32_t tk, uint32_t tv, int dk, int dv) {
    const int T = 3, heads = 2, n_ctx = 16;
    const int32_t cells[3] = {5, 0, 9};
    const size_t rbk = mr_row_size(tk, dk), rbv = mr_row_size(tv, dv);
    const size_t nk = rbk * heads * n_ctx, nv = rbv * heads * n_ctx;
    float *k = malloc(sizeof(float) * T * heads * dk), *v = malloc(sizeof(float) * T * heads * dv);
    fill(k, (int64_t)T * heads * dk), fill(v, (int64_t)T * heads * dv);
    uint8_t *hk = calloc(1, nk), *hv = calloc(1, nv), *gk = malloc(nk), *gv = malloc(nv), *gk2 = malloc(nk),
            *gv2 = malloc(nv);
    float *a = malloc(sizeof(float) * dk), *b = malloc(sizeof(float) * dk);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < heads; h++) {
            quant_quantize_row(tk, k + ((size_t)t * heads + h) * dk, hk + ((size_t)h * n_ctx + cells[t]) * rbk, dk);
            quant_quantize_row(tv, v + ((size_t)t * heads + h) * dv, hv + ((size_t)h * n_ctx + cells[t]) * rbv, dv);
        }
    float *dk_ = dup_dev(k, sizeof(float) * T * heads * dk), *dv_ = dup_dev(v, sizeof(float) * T * heads * dv);
    int32_t *dc = dup_dev(cells, sizeof cells);
    void *bk = mrc_alloc(C, nk), *bv = mrc_alloc(C, nv);
    OK(mrc_memset(C, bk, 0, nk)); OK(mrc_memset(C, bv, 0, nv));
    OK(mrc_kv_write(C, tk, dk_, heads, dk, T, dc, bk, rbk, n_ctx));
    OK(mrc_kv_write(C, tv, dv_, heads, dv, T, dc, bv, rbv, n_ctx));
    OK(get(gk, bk, nk)); OK(get(gv, bv, nv));
    OK(mrc_memset(C, bk, 0, nk)); OK(mrc_memset(C, bv, 0, nv));
    OK(mrc_kv_write2(C, heads, T, dc, n_ctx, tk, dk_, dk, bk, rbk, tv, dv_, dv, bv, rbv));
    OK(get(gk2, bk, nk)); OK(get(gv2, bv, nv));
    EXPECT(!memcmp(gk, gk2, nk) && !memcmp(gv, gv2, nv), "kv_write2 (K %s, V %s) differs from two kv_write",
           mr_type_name(tk), mr_type_name(tv));
    double e = 0;
    for (int r = 0; r < heads * n_ctx; r++) { /* the rows written, against the CPU's; the others stay 0 */
        quant_dequant_row(tk, gk + (size_t)r * rbk, a, dk);
        quant_dequant_row(tk, hk + (size_t)r * rbk, b, dk);
        e = fmax(e, nerr(a, b, dk));
    }
    EXPECT(e < 1e-2, "kv_write K %s: %.3e against the CPU quantizer", mr_type_name(tk), e);
    printf("kv_write K %s V %s: err %.2e, kv_write2 same bytes\n", mr_type_name(tk), mr_type_name(tv), e);
    mrc_dfree(dk_), mrc_dfree(dv_), mrc_dfree(dc), mrc_dfree(bk), mrc_dfree(bv);
    free(k), free(v), free(hk), free(hv), free(gk), free(gv), free(gk2), free(gv2), free(a), free(b);
}

/* ---- row ops ---------------------------------------------------------------------------------------- */
static void test_rows(void) {
    const int n = 2048, T = 3;
    float *x = malloc(sizeof(float) * n * T), *w = malloc(sizeof(float) * n), *u = malloc(sizeof(float) * n * T),
          *ref = malloc(sizeof(float) * n * T), *got = malloc(sizeof(float) * n * T);
    fill(x, n * T), fill(w, n), fill(u, n * T);
    float *dx = dup_dev(x, sizeof(float) * n * T), *dw = dup_dev(w, sizeof(float) * n), *du = dup_dev(u, sizeof(float) * n * T);
    float *dy = mrc_alloc(C, sizeof(float) * n * T);
    OK(mrc_rmsnorm(C, dy, dx, dw, T, n, 1e-6f));
    OK(get(got, dy, sizeof(float) * n * T));
    cpu_rmsnorm_rows(ref, x, w, T, n, 1e-6f);
    EXPECT(nerr(got, ref, n * T) < 1e-6, "rmsnorm %.3e", nerr(got, ref, n * T));
    OK(mrc_upload(C, dy, x, sizeof(float) * n * T));
    OK(mrc_silu_mul(C, dy, du, n * T));
    OK(get(got, dy, sizeof(float) * n * T));
    memcpy(ref, x, sizeof(float) * n * T);
    cpu_silu_mul(ref, u, n * T);
    EXPECT(nerr(got, ref, n * T) < 1e-6, "silu_mul %.3e", nerr(got, ref, n * T));
    OK(mrc_upload(C, dy, x, sizeof(float) * n * T));
    OK(mrc_softmax(C, dy, T, n));
    OK(get(got, dy, sizeof(float) * n * T));
    memcpy(ref, x, sizeof(float) * n * T);
    for (int t = 0; t < T; t++) cpu_softmax(ref + t * n, n);
    EXPECT(nerr(got, ref, n * T) < 1e-6, "softmax %.3e", nerr(got, ref, n * T));
    OK(mrc_upload(C, dy, x, sizeof(float) * n * T));
    OK(mrc_add(C, dy, du, n * T));
    OK(get(got, dy, sizeof(float) * n * T));
    for (int i = 0; i < n * T; i++) ref[i] = x[i] + u[i];
    EXPECT(nerr(got, ref, n * T) == 0, "add");
    printf("rmsnorm / silu_mul / softmax / add: ok\n");
    mrc_dfree(dx), mrc_dfree(dw), mrc_dfree(du), mrc_dfree(dy);
    free(x), free(w), free(u), free(ref), free(got);
}

static void test_rope(int mode, bool yarn) {
    const int T = 4, H = 6, hd = 128;
    const int32_t pos[4] = {0, 7, 300, 4095};
    cpu_rope_params cp = {.mode = mode, .n_dims = 64, .freq_base = 1e6f, .freq_scale = yarn ? 0.25f : 1.0f,
                          .ext_factor = yarn ? 1.0f : 0.0f, .attn_factor = 1.0f, .beta_fast = 32, .beta_slow = 1,
                          .n_ctx_orig = 4096, .freq_factors = NULL};
    mrc_rope_params gp = {.mode = mode, .n_dims = 64, .freq_base = 1e6f, .freq_scale = cp.freq_scale,
                          .ext_factor = cp.ext_factor, .attn_factor = 1.0f, .beta_fast = 32, .beta_slow = 1,
                          .n_ctx_orig = 4096, .freq_factors = NULL};
    float *x = malloc(sizeof(float) * T * H * hd), *ref = malloc(sizeof(float) * T * H * hd),
          *got = malloc(sizeof(float) * T * H * hd), cs[64];
    fill(x, T * H * hd);
    memcpy(ref, x, sizeof(float) * T * H * hd);
    for (int t = 0; t < T; t++) {
        cpu_rope_cache(&cp, (float)pos[t], cs);
        cpu_rope_apply(&cp, cs, ref + t * H * hd, H, hd);
    }
    float *dx = dup_dev(x, sizeof(float) * T * H * hd);
    int32_t *dp = dup_dev(pos, sizeof pos);
    OK(mrc_rope(C, &gp, dx, dp, T, H, hd));
    OK(get(got, dx, sizeof(float) * T * H * hd));
    const double e = nerr(got, ref, T * H * hd);
    EXPECT(e < 1e-4, "rope mode %d yarn %d: %.3e", mode, yarn, e);
    printf("rope %s%s: err %.2e\n", mode ? "neox" : "norm", yarn ? " yarn" : "", e);
    /* norm_rope vs its parts, per token: the first 4 heads normed with w1, the other 2 with w2,
     * then the rotation (token t's heads at position pos[t]) */
    float *w = malloc(sizeof(float) * 2 * hd), *got2 = malloc(sizeof(float) * T * H * hd);
    fill(w, 2 * hd);
    float *dw = dup_dev(w, sizeof(float) * 2 * hd), *dz = dup_dev(x, sizeof(float) * T * H * hd);
    OK(mrc_upload(C, dx, x, sizeof(float) * T * H * hd));
    for (int t = 0; t < T; t++) {
        OK(mrc_rmsnorm(C, dx + t * H * hd, dx + t * H * hd, dw, 4, hd, 1e-6f));
        OK(mrc_rmsnorm(C, dx + (t * H + 4) * hd, dx + (t * H + 4) * hd, dw + hd, H - 4, hd, 1e-6f));
    }
    OK(mrc_rope(C, &gp, dx, dp, T, H, hd));
    OK(mrc_norm_rope(C, &gp, dz, dp, T, H, hd, dw, dw + hd, 4, 1e-6f));
    OK(get(got, dx, sizeof(float) * T * H * hd));
    OK(get(got2, dz, sizeof(float) * T * H * hd));
    EXPECT(!memcmp(got, got2, sizeof(float) * T * H * hd), "norm_rope mode %d yarn %d differs from its parts", mode,
           yarn);
    /* norm_rope_kv vs norm_rope + kv_write of each token's k heads (heads 4, 5) and of V rows:
     * the same x and cache bytes, for f16 and q8_0 caches (K / V of different types) */
    const int dv = 64, n_ctx = 8;
    const int32_t cells[4] = {5, 2, 7, 0};
    float *vh = malloc(sizeof(float) * T * 2 * dv);
    fill(vh, T * 2 * dv);
    float *dv_src = dup_dev(vh, sizeof(float) * T * 2 * dv);
    int32_t *dcells = dup_dev(cells, sizeof cells);
    for (int ty = 0; ty < 2; ty++) {
        const uint32_t tk = ty ? MR_TYPE_Q8_0 : MR_TYPE_F16, tv = ty ? MR_TYPE_F16 : MR_TYPE_Q8_0;
        const size_t rbk = mr_row_size(tk, hd), rbv = mr_row_size(tv, dv);
        const size_t nk = rbk * 2 * n_ctx, nv = rbv * 2 * n_ctx;
        uint8_t *k1 = mrc_alloc(C, nk), *k2 = mrc_alloc(C, nk), *v1 = mrc_alloc(C, nv), *v2 = mrc_alloc(C, nv);
        uint8_t *hk1 = malloc(nk), *hk2 = malloc(nk), *hv1 = malloc(nv), *hv2 = malloc(nv);
        OK(mrc_memset(C, k1, 0, nk)); OK(mrc_memset(C, k2, 0, nk)); OK(mrc_memset(C, v1, 0, nv)); OK(mrc_memset(C, v2, 0, nv));
        OK(mrc_upload(C, dx, x, sizeof(float) * T * H * hd));
        OK(mrc_upload(C, dz, x, sizeof(float) * T * H * hd));
        OK(mrc_norm_rope(C, &gp, dx, dp, T, H, hd, dw, dw + hd, 4, 1e-6f));
        for (int t = 0; t < T; t++)
            OK(mrc_kv_write(C, tk, dx + (t * H + 4) * hd, 2, hd, 1, dcells + t, k1, rbk, n_ctx));
        OK(mrc_kv_write(C, tv, dv_src, 2, dv, T, dcells, v1, rbv, n_ctx));
        const mrc_kv_put put = {.cells = dcells, .n_ctx = n_ctx, .type_k = tk, .base_k = k2, .rb_k = rbk,
                                .type_v = tv, .v = dv_src, .dv = dv, .base_v = v2, .rb_v = rbv};
        OK(mrc_norm_rope_kv(C, &gp, dz, dp, T, H, hd, dw, dw + hd, 4, 1e-6f, &put));
        OK(get(got, dx, sizeof(float) * T * H * hd)); OK(get(got2, dz, sizeof(float) * T * H * hd));
        OK(get(hk1, k1, nk)); OK(get(hk2, k2, nk)); OK(get(hv1, v1, nv)); OK(get(hv2, v2, nv));
        EXPECT(!memcmp(got, got2, sizeof(float) * T * H * hd) && !memcmp(hk1, hk2, nk) && !memcmp(hv1, hv2, nv),
               "norm_rope_kv (K %s, V %s, mode %d yarn %d) differs from norm_rope + kv_write", mr_type_name(tk),
               mr_type_name(tv), mode, yarn);
        mrc_dfree(k1), mrc_dfree(k2), mrc_dfree(v1), mrc_dfree(v2);
        free(hk1), free(hk2), free(hv1), free(hv2);
    }
    EXPECT(mrc_norm_rope_kv(C, &gp, dz, dp, T, H, hd, dw, dw + hd, 6, 1e-6f,
                            &(mrc_kv_put){.cells = dcells, .n_ctx = n_ctx, .type_k = MR_TYPE_F16, .type_v = MR_TYPE_F16,
                                          .dv = dv}) != 0,
           "norm_rope_kv accepts no k heads");
    mrc_dfree(dv_src), mrc_dfree(dcells);
    free(vh);
    mrc_dfree(dw), mrc_dfree(dz);
    free(w), free(got2);
    mrc_dfree(dx), mrc_dfree(dp);
    free(x), free(ref), free(got);
}

/* The CPU router of forward_ffn.c, with its group-limited selection (n_group > 1). */
static void route_ref(const float *l, int E, int K, int gating, const float *bias, bool norm_w, float w_scale,
                      int n_group, int n_group_used, int *ids, float *w) {
    float *p = malloc(sizeof(float) * E), *s = malloc(sizeof(float) * E);
    memcpy(p, l, sizeof(float) * E);
    if (gating == 1) cpu_softmax(p, E);
    else if (gating == 2)
        for (int e = 0; e < E; e++) p[e] = 1.0f / (1.0f + expf(-p[e]));
    for (int e = 0; e < E; e++) s[e] = p[e] + (bias ? bias[e] : 0.0f);
    if (n_group > 1 && n_group_used > 0 && n_group_used < n_group) {
        /* DeepSeek-V3: a group scores its two best selection scores; the n_group_used best groups
         * (ties: lower index) keep their experts, the others drop out */
        const int per = E / n_group;
        float gs[64];
        bool keep[64] = {false};
        for (int g = 0; g < n_group; g++) {
            float b1 = -INFINITY, b2 = -INFINITY;
            for (int e = g * per; e < (g + 1) * per; e++)
                if (s[e] > b1) b2 = b1, b1 = s[e];
                else if (s[e] > b2) b2 = s[e];
            gs[g] = b1 + (per > 1 ? b2 : 0.0f);
        }
        for (int j = 0; j < n_group_used; j++) {
            int best = -1;
            for (int g = 0; g < n_group; g++)
                if (!keep[g] && (best < 0 || gs[g] > gs[best])) best = g;
            keep[best] = true;
        }
        for (int g = 0; g < n_group; g++)
            if (!keep[g])
                for (int e = g * per; e < (g + 1) * per; e++) s[e] = -INFINITY;
    }
    cpu_topk(s, E, K, ids);
    for (int j = 0; j < K; j++) w[j] = p[ids[j]];
    if (gating == 3) cpu_softmax(w, K);
    if (norm_w) {
        float z = 0;
        for (int j = 0; j < K; j++) z += w[j];
        for (int j = 0; j < K; j++) w[j] /= fmaxf(z, 6.103515625e-5f);
    }
    if (w_scale != 0.0f && w_scale != 1.0f)
        for (int j = 0; j < K; j++) w[j] *= w_scale;
    free(p), free(s);
}

/* A prompt's pairs in expert order (n pairs of k slots, ids in [0, E] with E out of range):
 * perm a permutation, experts ascending with E last, sids / stok following perm; then a gather
 * by stok and a scatter by perm bring every pair's token row back to slot i. */
static void test_moe_sort(int n, int E, int k) {
    int32_t *ids = malloc(sizeof(int32_t) * n), *perm = malloc(sizeof(int32_t) * n),
            *sids = malloc(sizeof(int32_t) * n), *stok = malloc(sizeof(int32_t) * n);
    int *seen = calloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++) ids[i] = MR_MIN((int32_t)((frand() + 1.0f) * 0.5f * (float)(E + 1)), E);
    int32_t *di = dup_dev(ids, sizeof(int32_t) * n), *dp = mrc_alloc(C, sizeof(int32_t) * n),
            *ds = mrc_alloc(C, sizeof(int32_t) * n), *dt = mrc_alloc(C, sizeof(int32_t) * n);
    OK(mrc_moe_sort(C, di, n, E, k, dp, ds, dt));
    OK(get(perm, dp, sizeof(int32_t) * n));
    OK(get(sids, ds, sizeof(int32_t) * n));
    OK(get(stok, dt, sizeof(int32_t) * n));
    int bad = 0;
    for (int s = 0; s < n; s++) {
        if (perm[s] < 0 || perm[s] >= n || seen[perm[s]]++ || sids[s] != ids[perm[s]] || stok[s] != perm[s] / k) bad++;
        if (s > 0 && sids[s - 1] > sids[s]) bad++;
    }
    EXPECT(bad == 0, "moe_sort n %d E %d: %d bad places", n, E, bad);
    const int T = (n + k - 1) / k, W = 36; /* rows of 36 bytes, as a Q8_1 block */
    uint8_t *rows = malloc((size_t)T * W), *back = malloc((size_t)n * W);
    for (int i = 0; i < T * W; i++) rows[i] = (uint8_t)(i * 7 + 3);
    void *dr = dup_dev(rows, (size_t)T * W), *dg = mrc_alloc(C, (size_t)n * W), *db = mrc_alloc(C, (size_t)n * W);
    OK(mrc_rows_idx(C, dg, NULL, dr, dt, n, W));
    OK(mrc_rows_idx(C, db, dp, dg, NULL, n, W));
    OK(get(back, db, (size_t)n * W));
    int rbad = 0;
    for (int i = 0; i < n; i++) rbad += memcmp(back + (size_t)i * W, rows + (size_t)(i / k) * W, W) != 0;
    EXPECT(rbad == 0, "rows_idx gather/scatter n %d: %d rows wrong", n, rbad);
    printf("moe_sort n %d E %d k %d: %s\n", n, E, k, bad || rbad ? "FAIL" : "ok");
    mrc_dfree(di), mrc_dfree(dp), mrc_dfree(ds), mrc_dfree(dt), mrc_dfree(dr), mrc_dfree(dg), mrc_dfree(db);
    free(ids), free(perm), free(sids), free(stok), free(seen), free(rows), free(back);
}

/* A bias added to every row in one launch. */
static void test_add_rows(void) {
    enum { R = 37, N = 300 };
    float *y = malloc(sizeof(float) * R * N), *b = malloc(sizeof(float) * N), *got = malloc(sizeof(float) * R * N);
    fill(y, R * N);
    fill(b, N);
    float *dy = dup_dev(y, sizeof(float) * R * N), *db = dup_dev(b, sizeof(float) * N);
    OK(mrc_add_rows(C, dy, db, R, N));
    OK(get(got, dy, sizeof(float) * R * N));
    int bad = 0;
    for (int r = 0; r < R; r++)
        for (int i = 0; i < N; i++) bad += got[r * N + i] != y[r * N + i] + b[i];
    EXPECT(bad == 0, "add_rows: %d of %d values wrong", bad, R * N);
    printf("add_rows %d x %d: %s\n", R, N, bad ? "FAIL" : "ok");
    mrc_dfree(dy), mrc_dfree(db);
    free(y), free(b), free(got);
}

/* Qwen3-Next's ops (delta.cu) against the CPU's kernels (src/cpu/delta.c, the plain C forms):
 * the sigmoid gates, the delta net's gates, conv + SiLU and L2 norm, and the delta rule, with
 * T tokens of two sequences interleaved (every third token is sequence 1) over their states. */
static void test_delta(int S, int Hk, int rr, int T) {
    const int Hv = Hk * rr, dI = Hv * S, NC = 2 * Hk * S + dI, dc = 4, NS = 2;
    const size_t cn = (size_t)(dc - 1) * NC, sn = (size_t)Hv * S * S;
    int32_t seq[64];
    for (int t = 0; t < T; t++) seq[t] = t % 3 == 2;
    float *ba = malloc(sizeof(float) * T * 2 * Hv), dt[64], A[64];
    float *beta = malloc(sizeof(float) * T * Hv), *g = malloc(sizeof(float) * T * Hv);
    float *gb = malloc(sizeof(float) * T * Hv), *gg = malloc(sizeof(float) * T * Hv);
    float *x = malloc(sizeof(float) * T * NC), *w = malloc(sizeof(float) * NC * dc), *st = malloc(sizeof(float) * NS * cn);
    float *y = malloc(sizeof(float) * T * NC), *gy = malloc(sizeof(float) * T * NC), *gst = malloc(sizeof(float) * NS * cn);
    float *ss = malloc(sizeof(float) * NS * sn), *gss = malloc(sizeof(float) * NS * sn);
    float *o = malloc(sizeof(float) * T * dI), *go = malloc(sizeof(float) * T * dI);
    fill(ba, (int64_t)T * 2 * Hv);
    for (int h = 0; h < Hv; h++) dt[h] = frand(), A[h] = -expf(frand());
    fill(x, (int64_t)T * NC), fill(w, (int64_t)NC * dc), fill(st, (int64_t)NS * cn);
    for (size_t i = 0; i < NS * sn; i++) ss[i] = 0.1f * frand();
    int32_t *dseq = dup_dev(seq, sizeof(int32_t) * T);
    float *dba = dup_dev(ba, sizeof(float) * T * 2 * Hv), *ddt = dup_dev(dt, sizeof(float) * Hv);
    float *dA = dup_dev(A, sizeof(float) * Hv), *dbeta = mrc_alloc(C, sizeof(float) * T * Hv);
    float *dg = mrc_alloc(C, sizeof(float) * T * Hv), *dx = dup_dev(x, sizeof(float) * T * NC);
    float *dw = dup_dev(w, sizeof(float) * NC * dc), *dst = dup_dev(st, sizeof(float) * NS * cn);
    float *dy = mrc_alloc(C, sizeof(float) * T * NC), *dss = dup_dev(ss, sizeof(float) * NS * sn);
    float *dO = mrc_alloc(C, sizeof(float) * T * dI);
    /* gates */
    OK(mrc_ssm_gates(C, dba, ddt, dA, T, Hk, rr, dbeta, dg));
    OK(get(gb, dbeta, sizeof(float) * T * Hv) || get(gg, dg, sizeof(float) * T * Hv));
    for (int t = 0; t < T; t++)
        for (int h = 0; h < Hv; h++) {
            const int kh = h / rr, j = h % rr;
            const float b = ba[t * 2 * Hv + kh * 2 * rr + j], a = ba[t * 2 * Hv + kh * 2 * rr + rr + j] + dt[h];
            beta[t * Hv + h] = 1.0f / (1.0f + expf(-b));
            g[t * Hv + h] = (a > 20.0f ? a : logf(1.0f + expf(a))) * A[h];
        }
    const double eb = nerr(gb, beta, (int64_t)T * Hv), eg = nerr(gg, g, (int64_t)T * Hv);
    EXPECT(eb < 1e-6 && eg < 1e-6, "ssm_gates: beta %g, g %g", eb, eg);
    /* conv + silu over the two sequences' states */
    OK(mrc_ssm_conv(C, dx, NC, dw, dc, NC, dst, (int64_t)cn, dseq, T, dy, NC));
    OK(get(gy, dy, sizeof(float) * T * NC) || get(gst, dst, sizeof(float) * NS * cn));
    for (int t = 0; t < T; t++) {
        float *yt = y + (size_t)t * NC;
        cpu_conv_step(w, dc, NC, 0, NC, st + (size_t)seq[t] * cn, x + (size_t)t * NC, yt);
        for (int c = 0; c < NC; c++) yt[c] = yt[c] / (1.0f + expf(-yt[c]));
    }
    const double ey = nerr(gy, y, (int64_t)T * NC), es = nerr(gst, st, (int64_t)NS * cn);
    EXPECT(ey < 1e-6 && es == 0.0, "ssm_conv: y %g, state %g", ey, es);
    /* L2 norm of the q and k heads, on the device's conv output (the same input on both sides) */
    memcpy(y, gy, sizeof(float) * T * NC);
    float *dy0 = dup_dev(gy, sizeof(float) * T * NC), *dss0 = dup_dev(ss, sizeof(float) * NS * sn); /* for the fused */
    OK(mrc_l2norm(C, dy, T, 2 * Hk, S, NC, 1e-6f));
    OK(get(gy, dy, sizeof(float) * T * NC));
    for (int t = 0; t < T; t++)
        for (int h = 0; h < 2 * Hk; h++) cpu_l2norm(y + (size_t)t * NC + (size_t)h * S, S, 1e-6f);
    const double el = nerr(gy, y, (int64_t)T * NC);
    EXPECT(el < 1e-6, "l2norm: %g", el);
    /* delta rule over the two sequences' states */
    const float scale = 1.0f / sqrtf((float)S);
    OK(mrc_delta_rule(C, dy, NC, dg, dbeta, dss, (int64_t)sn, dseq, T, Hk, Hv, S, scale, dO, dI));
    OK(get(go, dO, sizeof(float) * T * dI) || get(gss, dss, sizeof(float) * NS * sn));
    for (int t = 0; t < T; t++)
        for (int h = 0; h < Hv; h++) {
            const float *xt = y + (size_t)t * NC;
            cpu_delta_step(ss + (size_t)seq[t] * sn + (size_t)h * S * S, S, S, xt + (size_t)(h / rr) * S,
                           xt + (size_t)(Hk + h / rr) * S, xt + (size_t)2 * Hk * S + (size_t)h * S, gg[t * Hv + h],
                           gb[t * Hv + h], scale, o + (size_t)t * dI + (size_t)h * S, true);
        }
    const double eo = nerr(go, o, (int64_t)T * dI), e2 = nerr(gss, ss, (int64_t)NS * sn);
    EXPECT(eo < 1e-5 && e2 < 1e-5, "delta_rule: out %g, state %g", eo, e2);
    /* gates + L2 norms + rule in one launch: the same floats as the three launches */
    float *dO2 = mrc_alloc(C, sizeof(float) * T * dI), *go2 = malloc(sizeof(float) * T * dI);
    float *gss2 = malloc(sizeof(float) * NS * sn);
    OK(mrc_delta_rule_g(C, dy0, NC, dba, ddt, dA, 1e-6f, dss0, (int64_t)sn, dseq, T, Hk, Hv, S, scale, dO2, dI));
    OK(get(go2, dO2, sizeof(float) * T * dI) || get(gss2, dss0, sizeof(float) * NS * sn));
    const bool same = !memcmp(go2, go, sizeof(float) * T * dI) && !memcmp(gss2, gss, sizeof(float) * NS * sn);
    EXPECT(same, "delta_rule_g differs from ssm_gates + l2norm + delta_rule: out %g, state %g",
           nerr(go2, go, (int64_t)T * dI), nerr(gss2, gss, (int64_t)NS * sn));
    mrc_dfree(dO2), mrc_dfree(dy0), mrc_dfree(dss0);
    free(go2), free(gss2);
    /* the gated norm quantized for the output projection, one token: fused == rmsnorm + act_q8 */
    bool same_ng = false;
    {
        const size_t rs = mrc_q8_1_row_size(dI);
        float *z = malloc(sizeof(float) * dI), *nw = malloc(sizeof(float) * S), *h[4];
        uint8_t *q[2] = {malloc(rs), malloc(rs)};
        fill(z, dI), fill(nw, S);
        float *dz[2] = {dup_dev(z, sizeof(float) * dI), dup_dev(z, sizeof(float) * dI)};
        float *dob[2] = {dup_dev(go, sizeof(float) * dI), dup_dev(go, sizeof(float) * dI)}, *dnw = dup_dev(nw, sizeof(float) * S);
        void *dq[2] = {mrc_alloc(C, rs), mrc_alloc(C, rs)};
        OK(mrc_rmsnorm(C, dob[0], dob[0], dnw, Hv, S, 1e-6f));
        OK(mrc_act_q8(C, 0, dz[0], dob[0], dq[0], 1, dI));
        OK(mrc_norm_gate_q8(C, dob[1], dz[1], dnw, dq[1], 1, Hv, S, 1e-6f));
        for (int i = 0; i < 4; i++) h[i] = malloc(sizeof(float) * dI);
        OK(get(h[0], dob[0], sizeof(float) * dI) || get(h[1], dob[1], sizeof(float) * dI) ||
           get(h[2], dz[0], sizeof(float) * dI) || get(h[3], dz[1], sizeof(float) * dI) || get(q[0], dq[0], rs) ||
           get(q[1], dq[1], rs));
        same_ng = !memcmp(h[0], h[1], sizeof(float) * dI) && !memcmp(h[2], h[3], sizeof(float) * dI) &&
                  !memcmp(q[0], q[1], rs);
        EXPECT(same_ng, "norm_gate_q8 differs from rmsnorm + act_q8");
        for (int i = 0; i < 2; i++) mrc_dfree(dz[i]), mrc_dfree(dob[i]), mrc_dfree(dq[i]), free(q[i]);
        for (int i = 0; i < 4; i++) free(h[i]);
        mrc_dfree(dnw), free(z), free(nw);
    }
    /* sigmoid gates: per element with a row stride (gated attention), per row (shared expert) */
    float *gy2 = malloc(sizeof(float) * T * NC);
    memcpy(y, x, sizeof(float) * T * NC);
    OK(mrc_upload(C, dy, x, sizeof(float) * T * NC));
    OK(mrc_sigmoid_mul(C, dy, dx + S, (int64_t)T * 2, S, 2 * S, 1));
    OK(mrc_sigmoid_mul(C, dy, dba, T, NC, 2 * Hv, 0));
    OK(get(gy2, dy, sizeof(float) * T * NC));
    for (int r = 0; r < T * 2; r++)
        for (int i = 0; i < S; i++) y[r * S + i] *= 1.0f / (1.0f + expf(-x[r * 2 * S + S + i]));
    for (int t = 0; t < T; t++)
        for (int i = 0; i < NC; i++) y[(size_t)t * NC + i] *= 1.0f / (1.0f + expf(-ba[t * 2 * Hv]));
    const double eq = nerr(gy2, y, (int64_t)T * NC);
    EXPECT(eq < 1e-6, "sigmoid_mul: %g", eq);
    printf("delta S %d, heads %d/%d, T %d: gates %.1e/%.1e conv %.1e/%.1e l2 %.1e rule %.1e/%.1e fused %s sigmoid "
           "%.1e, gated norm %s\n", S, Hk, Hv, T, eb, eg, ey, es, el, eo, e2, same ? "same" : "DIFFERS", eq,
           same_ng ? "same" : "DIFFERS");
    mrc_dfree(dseq), mrc_dfree(dba), mrc_dfree(ddt), mrc_dfree(dA), mrc_dfree(dbeta), mrc_dfree(dg), mrc_dfree(dx);
    mrc_dfree(dw), mrc_dfree(dst), mrc_dfree(dy), mrc_dfree(dss), mrc_dfree(dO);
    free(ba), free(beta), free(g), free(gb), free(gg), free(x), free(w), free(st), free(y), free(gy), free(gst);
    free(ss), free(gss), free(o), free(go), free(gy2);
}

/* Group-limited routing (mrc_moe_route_ex, and in router_route) against route_ref: E 256 in
 * n_group groups, n_group_used kept, sigmoid gating with a bias (DeepSeek-V3's 8 / 4). */
static void test_route_groups(int n_group, int n_group_used) {
    const int T = 7, E = 256, K = 8;
    float *l = malloc(sizeof(float) * T * E), bias[256], w[7 * 8], wr[8];
    int32_t ids[7 * 8];
    int ir[8];
    fill(l, T * E);
    for (int e = 0; e < E; e++) bias[e] = 0.1f * frand();
    float *dl = dup_dev(l, sizeof(float) * T * E), *db = dup_dev(bias, sizeof bias), *dw = mrc_alloc(C, sizeof w);
    int32_t *di = mrc_alloc(C, sizeof ids);
    OK(mrc_moe_route_ex(C, dl, T, E, K, 2, db, true, 2.5f, n_group, n_group_used, di, dw));
    OK(get(ids, di, sizeof ids));
    OK(get(w, dw, sizeof w));
    int bad = 0, outside = 0;
    double e = 0;
    for (int t = 0; t < T; t++) {
        route_ref(l + t * E, E, K, 2, bias, true, 2.5f, n_group, n_group_used, ir, wr);
        uint64_t groups = 0; /* up to 64 groups */
        for (int j = 0; j < K; j++) {
            bad += ids[t * K + j] != ir[j];
            e = fmax(e, fabs(w[t * K + j] - wr[j]));
            groups |= 1ull << (ids[t * K + j] / (E / n_group));
        }
        outside += __builtin_popcountll(groups) > n_group_used;
    }
    EXPECT(bad == 0 && outside == 0 && e < 1e-5,
           "route groups %d/%d: %d id mismatches, %d tokens with experts of too many groups, max weight err %.2e",
           n_group_used, n_group, bad, outside, e);
    printf("route groups %d of %d (E %d, top-%d): %s\n", n_group_used, n_group, E, K, bad || outside ? "BAD" : "ok");
    mrc_dfree(dl), mrc_dfree(db), mrc_dfree(dw), mrc_dfree(di);
    free(l);
}

static void test_route(int gating, bool with_bias, bool norm_w, float w_scale) {
    const int T = 5, E = 128, K = 8;
    float *l = malloc(sizeof(float) * T * E), bias[128], w[5 * 8], wr[8];
    int32_t ids[5 * 8];
    int ir[8];
    fill(l, T * E);
    for (int e = 0; e < E; e++) bias[e] = 0.1f * frand();
    l[3] = l[4]; /* a tie */
    float *dl = dup_dev(l, sizeof(float) * T * E), *db = dup_dev(bias, sizeof bias), *dw = mrc_alloc(C, sizeof w);
    int32_t *di = mrc_alloc(C, sizeof ids);
    OK(mrc_moe_route(C, dl, T, E, K, gating, with_bias ? db : NULL, norm_w, w_scale, di, dw));
    OK(get(ids, di, sizeof ids));
    OK(get(w, dw, sizeof w));
    int bad = 0;
    double e = 0;
    for (int t = 0; t < T; t++) {
        route_ref(l + t * E, E, K, gating, with_bias ? bias : NULL, norm_w, w_scale, 0, 0, ir, wr);
        for (int j = 0; j < K; j++) {
            bad += ids[t * K + j] != ir[j];
            e = fmax(e, fabs(w[t * K + j] - wr[j]));
        }
    }
    EXPECT(bad == 0 && e < 1e-5, "route gating %d bias %d norm %d scale %g: %d id mismatches, max weight err %.2e",
           gating, with_bias, norm_w, w_scale, bad, e);
    /* router_route (one token: router matvec + routing in one launch, twice: the done-counter
     * resets) against matvec + moe_route: the same logits, ids and weights */
    for (int wt = 0; wt < 3; wt++) {
        const uint32_t rt = wt == 2 ? MR_TYPE_BF16 : wt ? MR_TYPE_F16 : MR_TYPE_F32;
        const int64_t k = 2048;
        void *wh = make_weight(rt, k, E, 1);
        mrc_weight W;
        OK(mrc_weight_upload(C, &W, wh, rt, k, E, 1));
        float *x = malloc(sizeof(float) * k), la[128], lb[128], wa[8], wb[8];
        int32_t ia[8], ib[8];
        fill(x, k);
        float *dx = dup_dev(x, sizeof(float) * k), *dla = mrc_alloc(C, sizeof la), *dlb = mrc_alloc(C, sizeof lb);
        for (int rep = 0; rep < 2; rep++) {
            OK(mrc_matvec(C, &W, 0, dx, NULL, dla));
            OK(mrc_moe_route(C, dla, 1, E, K, gating, with_bias ? db : NULL, norm_w, w_scale, di, dw));
            OK(get(la, dla, sizeof la)); OK(get(ia, di, sizeof ia)); OK(get(wa, dw, sizeof wa));
            OK(mrc_router_route(C, &W, dx, dlb, K, gating, with_bias ? db : NULL, norm_w, w_scale, 0, 0, di, dw));
            OK(get(lb, dlb, sizeof lb)); OK(get(ib, di, sizeof ib)); OK(get(wb, dw, sizeof wb));
            EXPECT(!memcmp(la, lb, sizeof la) && !memcmp(ia, ib, sizeof ia) && !memcmp(wa, wb, sizeof wa),
                   "router_route %s gating %d (call %d) differs from matvec + moe_route", mr_type_name(rt), gating, rep);
        }
        mrc_weight_free(&W);
        mrc_dfree(dx), mrc_dfree(dla), mrc_dfree(dlb);
        free(x), free(wh);
    }
    mrc_dfree(dl), mrc_dfree(db), mrc_dfree(dw), mrc_dfree(di);
    free(l);
}

/* ---- attention decode ------------------------------------------------------------------------------- */
/* nt query tokens (strided queries, outputs and mask rows; token t sees the cells j with
 * j % 7 != 3 and j <= n_kv - nt + t: a prompt's causal mask) against the reference in double. */
static void test_attn(uint32_t tk, uint32_t tv, int H, int Hkv, int dk, int dv, bool v_in_k, int n_ctx, int n_kv,
                      int nt) {
    const size_t kr = mr_row_size(tk, dk), vr = mr_row_size(tv, dv);
    const int64_t qs = (int64_t)H * dk + 32, ms = n_kv + 3, os = (int64_t)H * dv + 16; /* padded strides */
    uint8_t *K = malloc(kr * Hkv * n_ctx), *V = malloc(vr * Hkv * n_ctx);
    float *q = malloc(sizeof(float) * qs * nt), *mask = malloc(sizeof(float) * ms * nt), *f = malloc(sizeof(float) * dk);
    float *ref = calloc((size_t)(os * nt), 4), *got = malloc(sizeof(float) * os * nt);
    fill(q, (int)(qs * nt));
    for (int i = 0; i < Hkv * n_ctx; i++) {
        fill(f, dk);
        quant_quantize_row(tk, f, K + i * kr, dk);
        fill(f, dv);
        quant_quantize_row(tv, f, V + i * vr, dv);
    }
    for (int t = 0; t < nt; t++)
        for (int j = 0; j < ms; j++) mask[t * ms + j] = (j % 7 == 3 || j > n_kv - nt + t) ? -INFINITY : 0.0f;
    const float scale = 1.0f / sqrtf((float)dk);
    float *kd = malloc(sizeof(float) * dk), *vd = malloc(sizeof(float) * dk), *s = malloc(sizeof(float) * n_kv);
    for (int t = 0; t < nt; t++)
        for (int h = 0; h < H; h++) {
            const int hk = h / (H / Hkv);
            const float *qh = q + t * qs + h * dk, *mt = mask + t * ms;
            double mx = -INFINITY, z = 0, acc[576] = {0};
            for (int j = 0; j < n_kv; j++) {
                quant_dequant_row(tk, K + (size_t)(hk * n_ctx + j) * kr, kd, dk);
                double a = 0;
                for (int i = 0; i < dk; i++) a += (double)qh[i] * kd[i];
                s[j] = (float)(a * scale) + mt[j];
                if (s[j] > mx) mx = s[j];
            }
            for (int j = 0; j < n_kv; j++) {
                if (mt[j] == -INFINITY) continue;
                const double p = exp(s[j] - mx);
                z += p;
                if (v_in_k) quant_dequant_row(tk, K + (size_t)(hk * n_ctx + j) * kr, vd, dk);
                else quant_dequant_row(tv, V + (size_t)(hk * n_ctx + j) * vr, vd, dv);
                for (int i = 0; i < dv; i++) acc[i] += p * vd[i];
            }
            for (int i = 0; i < dv; i++) ref[t * os + h * dv + i] = (float)(acc[i] / z);
        }
    void *dK = dup_dev(K, kr * Hkv * n_ctx), *dV = dup_dev(V, vr * Hkv * n_ctx);
    float *dq = dup_dev(q, sizeof(float) * qs * nt), *dm = dup_dev(mask, sizeof(float) * ms * nt),
          *dout = mrc_alloc(C, sizeof(float) * os * nt);
    /* prompts: the split kernel and the tiled one (MOERUN_CUDA_FA_TILE) */
    for (int tile = 0; tile < (nt > 1 ? 2 : 1); tile++) {
        if (nt > 1) setenv("MOERUN_CUDA_FA_TILE", tile ? "1" : "0", 1);
        OK(mrc_memset(C, dout, 0, sizeof(float) * os * nt));
        mrc_attn_params p = {.n_head = H, .n_head_kv = Hkv, .dk = dk, .dv = dv, .n_ctx = n_ctx, .n_kv = n_kv,
                             .type_k = tk, .type_v = tv, .scale = scale, .softcap = 0, .v_in_k = v_in_k,
                             .n_tok = nt, .q_stride = qs, .mask_stride = ms, .out_stride = os};
        OK(mrc_attn(C, &p, dq, dK, dV, dm, dout));
        OK(get(got, dout, sizeof(float) * os * nt));
        const double e = nerr(got, ref, (int)(os * nt));
        EXPECT(e < 1e-4, "attn K %s V %s H %d/%d dk %d dv %d n_kv %d tokens %d%s: %.3e", mr_type_name(tk),
               mr_type_name(tv), H, Hkv, dk, dv, n_kv, nt, tile ? " (tiled)" : "", e);
        printf("attn   K %-4s V %-4s H %d/%d dk %d dv %d n_kv %d x %d tokens%s%s: err %.2e\n", mr_type_name(tk),
               mr_type_name(tv), H, Hkv, dk, dv, n_kv, nt, v_in_k ? " (v in k)" : "", tile ? " (tiled)" : "", e);
        /* out_q8: the same outputs, and each token's row quantized as quantize_q8_1 would */
        {
            const size_t rq = mrc_q8_1_row_size((int64_t)H * dv);
            uint8_t *qa = malloc(rq * nt), *qb = malloc(rq * nt);
            float *got2 = malloc(sizeof(float) * os * nt);
            void *dqa = mrc_alloc(C, rq * nt), *dqb = mrc_alloc(C, rq * nt);
            OK(mrc_memset(C, dqa, 0, rq * nt)); OK(mrc_memset(C, dqb, 0, rq * nt));
            p.out_q8 = dqb;
            OK(mrc_attn(C, &p, dq, dK, dV, dm, dout));
            for (int t = 0; t < nt; t++) OK(mrc_quantize_q8_1(C, dout + t * os, (uint8_t *)dqa + t * rq, (int64_t)H * dv, 1));
            OK(get(got2, dout, sizeof(float) * os * nt)); OK(get(qa, dqa, rq * nt)); OK(get(qb, dqb, rq * nt));
            EXPECT(!memcmp(got, got2, sizeof(float) * os * nt) && !memcmp(qa, qb, rq * nt),
                   "attn with out_q8 (H %d dv %d, %d tokens): outputs or quantized rows differ", H, dv, nt);
            /* decode in one launch (the heads' last blocks merge): the same floats and bytes, twice
             * (the counters reset) */
            for (int rep = 0; nt == 1 && rep < 2; rep++) {
                p.one_launch = true;
                OK(mrc_memset(C, dqb, 0, rq * nt));
                OK(mrc_memset(C, dout, 0, sizeof(float) * os * nt));
                OK(mrc_attn(C, &p, dq, dK, dV, dm, dout));
                OK(get(got2, dout, sizeof(float) * os * nt)); OK(get(qb, dqb, rq * nt));
                EXPECT(!memcmp(got, got2, sizeof(float) * os * nt) && !memcmp(qa, qb, rq * nt),
                       "attn in one launch (H %d dv %d, call %d): outputs or quantized rows differ", H, dv, rep);
                p.one_launch = false;
            }
            mrc_dfree(dqa), mrc_dfree(dqb);
            free(qa), free(qb), free(got2);
        }
    }
    unsetenv("MOERUN_CUDA_FA_TILE");
    mrc_dfree(dK), mrc_dfree(dV), mrc_dfree(dq), mrc_dfree(dm), mrc_dfree(dout);
    free(K), free(V), free(q), free(mask), free(f), free(ref), free(got), free(kd), free(vd), free(s);
}

/* ---- prefill ------------------------------------------------------------------------------------------- */
static void test_dequant_gemm(uint32_t t) {
    const int64_t k = 512, m = 300, T = 33;
    void *wh = make_weight(t, k, m, 1);
    mrc_weight W;
    OK(mrc_weight_upload(C, &W, wh, t, k, m, 1));
    float *ref = malloc(sizeof(float) * k * m), *got = malloc(sizeof(float) * k * m);
    for (int64_t r = 0; r < m; r++) quant_dequant_row(t, (char *)wh + r * W.row_bytes, ref + r * k, k);
    float *dout = mrc_alloc(C, sizeof(float) * k * m);
    OK(mrc_dequant_rows(C, &W, 0, 0, NULL, m, dout, false));
    OK(get(got, dout, sizeof(float) * k * m));
    EXPECT(memcmp(got, ref, sizeof(float) * k * m) == 0, "dequant %s: not bit-exact", mr_type_name(t));
    const int32_t ids[3] = {299, 0, 17};
    int32_t *did = dup_dev(ids, sizeof ids);
    OK(mrc_dequant_rows(C, &W, 0, 0, did, 3, dout, false));
    OK(get(got, dout, sizeof(float) * k * 3));
    bool same = true;
    for (int i = 0; i < 3; i++) same = same && !memcmp(got + i * k, ref + ids[i] * k, sizeof(float) * k);
    EXPECT(same, "get_rows %s", mr_type_name(t));
    /* gemm */
    float *x = malloc(sizeof(float) * T * k), *y = malloc(sizeof(float) * T * m), *yr = malloc(sizeof(float) * T * m);
    fill(x, T * k);
    for (int64_t c = 0; c < T; c++)
        for (int64_t r = 0; r < m; r++) {
            double a = 0;
            for (int64_t i = 0; i < k; i++) a += (double)ref[r * k + i] * x[c * k + i];
            yr[c * m + r] = (float)a;
        }
    float *dx = dup_dev(x, sizeof(float) * T * k), *dy = mrc_alloc(C, sizeof(float) * T * m);
    OK(mrc_gemm(C, &W, 0, dx, T, dy));
    OK(get(y, dy, sizeof(float) * T * m));
    const double e = nerr(y, yr, T * m);
    EXPECT(e < 5e-3, "gemm %s: %.3e", mr_type_name(t), e);
    printf("dequant / get_rows / gemm %-4s: gemm err %.2e\n", mr_type_name(t), e);
    mrc_weight_free(&W);
    mrc_dfree(dout), mrc_dfree(did), mrc_dfree(dx), mrc_dfree(dy);
    free(wh), free(ref), free(got), free(x), free(y), free(yr);
}

/* ---- graphs and errors ---------------------------------------------------------------------------------- */
static void test_graph_and_errors(void) {
    const int64_t k = 1024, m = 512;
    void *wh = make_weight(MR_TYPE_Q4_K, k, m, 1);
    mrc_weight W;
    OK(mrc_weight_upload(C, &W, wh, MR_TYPE_Q4_K, k, m, 1));
    float *x = malloc(sizeof(float) * k), *y1 = malloc(sizeof(float) * m), *y2 = malloc(sizeof(float) * m);
    fill(x, k);
    float *dx = dup_dev(x, sizeof(float) * k), *dy = mrc_alloc(C, sizeof(float) * m);
    void *dxq = mrc_alloc(C, mrc_q8_1_row_size(k));
    OK(mrc_quantize_q8_1(C, dx, dxq, k, 1));
    OK(mrc_matvec(C, &W, 0, dx, dxq, dy));
    OK(get(y1, dy, sizeof(float) * m));
    OK(mrc_memset(C, dy, 0, sizeof(float) * m));
    OK(mrc_sync(C));
    OK(mrc_graph_begin(C));
    OK(mrc_quantize_q8_1(C, dx, dxq, k, 1));
    OK(mrc_matvec(C, &W, 0, dx, dxq, dy));
    OK(mrc_graph_end(C));
    OK(mrc_graph_launch(C));
    OK(get(y2, dy, sizeof(float) * m));
    EXPECT(!memcmp(y1, y2, sizeof(float) * m), "graph replay gives the same result");
    mrc_weight bad;
    EXPECT(mrc_weight_upload(C, &bad, wh, MR_TYPE_IQ2_XXS, k, m, 1) == -1 && strstr(mr_geterr(), "IQ2_XXS"),
           "unsupported type named: %s", mr_geterr());
    EXPECT(mrc_weight_upload(C, &bad, wh, MR_TYPE_Q4_K, 100, m, 1) == -1, "bad k");
    mrc_attn_params p = {.n_head = 8, .n_head_kv = 3, .dk = 128, .dv = 128, .n_ctx = 16, .n_kv = 8,
                         .type_k = MR_TYPE_F16, .type_v = MR_TYPE_F16, .scale = 1};
    EXPECT(mrc_attn(C, &p, dx, dx, dx, NULL, dy) == -1 && strstr(mr_geterr(), "heads 8/3"), "attn shape: %s",
           mr_geterr());
    printf("graph / errors: ok\n");
    mrc_weight_free(&W);
    mrc_dfree(dx), mrc_dfree(dy), mrc_dfree(dxq);
    free(wh), free(x), free(y1), free(y2);
}

/* ---- perf mode --------------------------------------------------------------------------------------- */
static void bench_mv(const char *what, uint32_t t, int64_t k, int64_t m, int64_t n_mat, int n_ids) {
    void *wh = make_weight(t, k, m, n_mat);
    mrc_weight W;
    if (mrc_weight_upload(C, &W, wh, t, k, m, n_mat)) {
        printf("%s: %s\n", what, mr_geterr());
        free(wh);
        return;
    }
    float *x = calloc((size_t)k, 4);
    fill(x, k);
    float *dx = dup_dev(x, sizeof(float) * k), *dy = mrc_alloc(C, sizeof(float) * m * (n_ids ? n_ids : 1));
    void *dxq = mrc_alloc(C, mrc_q8_1_row_size(k));
    int32_t ids[16];
    for (int i = 0; i < 16; i++) ids[i] = (int32_t)((i * 37) % n_mat);
    int32_t *did = dup_dev(ids, sizeof ids);
    mrc_quantize_q8_1(C, dx, dxq, k, 1);
    const int reps = 200;
    for (int warm = 0; warm < 2; warm++) {
        mrc_timer_start(C);
        for (int r = 0; r < (warm ? reps : 10); r++) {
            if (n_ids) mrc_moe_matvec(C, &W, did, n_ids, dx, 0, dxq, 0, dy);
            else mrc_matvec(C, &W, 0, dx, dxq, dy);
        }
        const double ms = mrc_timer_stop(C) / (warm ? reps : 10);
        const double bytes = (double)W.mat_bytes * (n_ids ? n_ids : 1);
        if (warm) printf("bench %-28s %-4s k %5lld m %6lld: %8.2f us  %7.1f GB/s\n", what, mr_type_name(t), (long long)k,
                         (long long)m, ms * 1e3, bytes / (ms * 1e-3) / 1e9);
    }
    mrc_weight_free(&W);
    mrc_dfree(dx), mrc_dfree(dy), mrc_dfree(dxq), mrc_dfree(did);
    free(wh), free(x);
}

/* A prompt's routed experts: T tokens x K slots sorted by expert (E experts, each about T*K/E
 * tokens), per-slot Q8_1 inputs, through moe_matvec (a weight row per slot, from L2) and the
 * grouped moe_matvec_grp (a weight row per run of up to 8 slots). GB/s: weight bytes the plain
 * kernel asks for per second (slots x matrix bytes), so the ratio is the speedup. */
static void bench_moe_prompt(const char *what, uint32_t t, int64_t k, int64_t m, int E, int T, int K) {
    const int n = T * K;
    void *wh = make_weight(t, k, m, E);
    mrc_weight W;
    if (mrc_weight_upload(C, &W, wh, t, k, m, E)) {
        printf("%s: %s\n", what, mr_geterr());
        free(wh);
        return;
    }
    int32_t *ids = malloc(sizeof(int32_t) * n);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((int64_t)i * E / n); /* sorted, n / E slots each */
    const size_t xs = mrc_q8_1_row_size(k);
    int32_t *did = dup_dev(ids, sizeof(int32_t) * n);
    void *dxq = mrc_alloc(C, xs * n);
    float *dy = mrc_alloc(C, sizeof(float) * m * n);
    mrc_memset(C, dxq, 0, xs * n);
    double ms[2];
    for (int grp = 0; grp < 2; grp++) {
        for (int warm = 0; warm < 2; warm++) {
            const int reps = warm ? 20 : 2;
            mrc_timer_start(C);
            for (int r = 0; r < reps; r++) {
                if (grp) mrc_moe_matvec_grp(C, &W, NULL, did, n, dxq, xs, dy, NULL);
                else mrc_moe_matvec(C, &W, did, n, NULL, 0, dxq, xs, dy);
            }
            ms[grp] = mrc_timer_stop(C) / reps;
        }
    }
    const double bytes = (double)W.mat_bytes * n;
    printf("bench moe prompt %-22s %-4s k %5lld m %5lld, %d tokens x %d of %d: per slot %8.3f ms (%6.0f GB/s), "
           "grouped %8.3f ms (%6.0f GB/s), x%.2f\n", what, mr_type_name(t), (long long)k, (long long)m, T, K, E, ms[0],
           bytes / (ms[0] * 1e-3) / 1e9, ms[1], bytes / (ms[1] * 1e-3) / 1e9, ms[0] / ms[1]);
    mrc_weight_free(&W);
    mrc_dfree(did), mrc_dfree(dxq), mrc_dfree(dy);
    free(wh), free(ids);
}

static void bench(void) {
    mrc_device_info di;
    mrc_device_info_get(mrc_device_of(C), &di);
    printf("\n%s: %d SMs, peak ~%.0f GB/s\n", di.name, di.n_sm, di.mem_bw_gbs);
    /* Qwen3-30B-A3B: attention (D 2048, 32 heads x 128, 4 KV heads), experts 768 wide, 128 of them, top-8 */
    bench_mv("attn_q", MR_TYPE_Q4_K, 2048, 4096, 1, 0);
    bench_mv("attn_output", MR_TYPE_Q4_K, 4096, 2048, 1, 0);
    bench_mv("ffn_gate_exps (8 of 128)", MR_TYPE_Q4_K, 2048, 768, 128, 8);
    bench_mv("ffn_down_exps (8 of 128)", MR_TYPE_Q6_K, 768, 2048, 128, 8);
    bench_mv("ffn_down_exps (8 of 128)", MR_TYPE_Q5_K, 768, 2048, 128, 8);
    bench_mv("output", MR_TYPE_Q6_K, 2048, 151936, 1, 0);
    bench_mv("q8_0 big", MR_TYPE_Q8_0, 4096, 14336, 1, 0);
    bench_mv("q4_0 big", MR_TYPE_Q4_0, 4096, 14336, 1, 0);
    bench_mv("router (f32)", MR_TYPE_F32, 2048, 128, 1, 0);
    /* pp512's experts, and 4 parallel sequences' decode step (4 tokens through one matrix) */
    bench_moe_prompt("ffn_gate_exps", MR_TYPE_Q4_K, 2048, 768, 128, 512, 8);
    bench_moe_prompt("ffn_down_exps", MR_TYPE_Q6_K, 768, 2048, 128, 512, 8);
    bench_moe_prompt("attn_q, 4 tokens", MR_TYPE_Q4_K, 2048, 4096, 1, 4, 1);
    /* attention decode over 4096 / 32768 cells, 32 heads / 4 KV heads, f16 */
    for (int n_kv = 4096; n_kv <= 32768; n_kv *= 8) {
        const int H = 32, Hkv = 4, d = 128;
        const size_t kb = (size_t)Hkv * n_kv * d * 2;
        void *dk = mrc_alloc(C, kb), *dv = mrc_alloc(C, kb);
        float *dq = mrc_alloc(C, sizeof(float) * H * d), *dout = mrc_alloc(C, sizeof(float) * H * d);
        mrc_memset(C, dk, 0, kb), mrc_memset(C, dv, 0, kb), mrc_memset(C, dq, 0, sizeof(float) * H * d);
        mrc_attn_params p = {.n_head = H, .n_head_kv = Hkv, .dk = d, .dv = d, .n_ctx = n_kv, .n_kv = n_kv,
                             .type_k = MR_TYPE_F16, .type_v = MR_TYPE_F16, .scale = 0.088f};
        mrc_attn(C, &p, dq, dk, dv, NULL, dout);
        mrc_timer_start(C);
        for (int r = 0; r < 100; r++) mrc_attn(C, &p, dq, dk, dv, NULL, dout);
        const double ms = mrc_timer_stop(C) / 100;
        printf("bench attn decode f16 H 32/4 d 128 n_kv %6d: %8.2f us  %7.1f GB/s\n", n_kv, ms * 1e3,
               2.0 * kb / (ms * 1e-3) / 1e9);
        mrc_dfree(dk), mrc_dfree(dv), mrc_dfree(dq), mrc_dfree(dout);
    }
    /* a 512-token prompt's attention (causal) at depths 0 / 4096 / 32768, the split kernel against
     * the tiled one (MOERUN_CUDA_FA_TILE), f16 cache, Qwen3-30B-A3B's heads */
    for (int depth = 0; depth <= 32768; depth = depth ? depth * 8 : 4096) {
        const int H = 32, Hkv = 4, d = 128, T = 512, n_kv = depth + T;
        const size_t kb = (size_t)Hkv * n_kv * d * 2;
        void *dk = mrc_alloc(C, kb), *dv = mrc_alloc(C, kb);
        float *dq = mrc_alloc(C, sizeof(float) * H * d * T), *dout = mrc_alloc(C, sizeof(float) * H * d * T);
        float *mask = malloc(sizeof(float) * (size_t)n_kv * T), *dm = mrc_alloc(C, sizeof(float) * (size_t)n_kv * T);
        for (int t = 0; t < T; t++)
            for (int j = 0; j < n_kv; j++) mask[(size_t)t * n_kv + j] = j <= depth + t ? 0.0f : -INFINITY;
        mrc_upload(C, dm, mask, sizeof(float) * (size_t)n_kv * T);
        mrc_memset(C, dk, 0, kb), mrc_memset(C, dv, 0, kb), mrc_memset(C, dq, 0, sizeof(float) * H * d * T);
        mrc_attn_params p = {.n_head = H, .n_head_kv = Hkv, .dk = d, .dv = d, .n_ctx = n_kv, .n_kv = n_kv,
                             .type_k = MR_TYPE_F16, .type_v = MR_TYPE_F16, .scale = 0.088f, .n_tok = T};
        double ms[2];
        for (int tile = 0; tile < 2; tile++) {
            setenv("MOERUN_CUDA_FA_TILE", tile ? "1" : "0", 1);
            mrc_attn(C, &p, dq, dk, dv, dm, dout);
            mrc_timer_start(C);
            for (int r = 0; r < 5; r++) mrc_attn(C, &p, dq, dk, dv, dm, dout);
            ms[tile] = mrc_timer_stop(C) / 5;
        }
        unsetenv("MOERUN_CUDA_FA_TILE");
        const double flop = 4.0 * H * d * T * (depth + (T + 1) / 2.0);
        printf("bench attn prompt f16 H 32/4 d 128, %d tokens at depth %5d: split %8.3f ms, tiled %8.3f ms (%.1f "
               "TFLOP/s)\n", T, depth, ms[0], ms[1], flop / (ms[1] * 1e-3) / 1e12);
        mrc_dfree(dk), mrc_dfree(dv), mrc_dfree(dq), mrc_dfree(dout), mrc_dfree(dm);
        free(mask);
    }
}

int main(int argc, char **argv) {
    const int n = mrc_device_count();
    if (n <= 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    C = mrc_init(0);
    if (!C) {
        fprintf(stderr, "mrc_init: %s\n", mr_geterr());
        return 1;
    }
    synth_rng_seed(&R, 42);
    const uint32_t types[] = {MR_TYPE_Q4_0, MR_TYPE_Q4_1, MR_TYPE_Q5_0, MR_TYPE_Q5_1, MR_TYPE_Q8_0,  MR_TYPE_Q2_K,
                              MR_TYPE_Q3_K, MR_TYPE_Q4_K, MR_TYPE_Q5_K, MR_TYPE_Q6_K, MR_TYPE_IQ4_NL, MR_TYPE_IQ4_XS,
                              MR_TYPE_F16,  MR_TYPE_BF16, MR_TYPE_F32};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        test_matvec(types[i], 256, 1);
        test_matvec(types[i], 768, 37);
        test_matvec(types[i], 2048, 2048);
        test_moe(types[i]);
        if (!mr_type_is_float(types[i])) test_matvec_n(types[i]), test_moe_grp(types[i]), test_moe_wide(types[i]);
        test_dequant_gemm(types[i]);
    }
    test_rows();
    test_side_stream();
    test_fused(2048, 3);
    test_kv_write(MR_TYPE_F16, MR_TYPE_F16, 128, 128);
    test_kv_write(MR_TYPE_Q8_0, MR_TYPE_Q8_0, 128, 64);
    test_kv_write(MR_TYPE_Q8_0, MR_TYPE_F16, 192, 128);
    test_fused(768, 8);
    test_fused(4096, 1);
    test_rope(MRC_ROPE_NORM, false);
    test_rope(MRC_ROPE_NEOX, false);
    test_rope(MRC_ROPE_NEOX, true);
    test_add_rows();
    test_delta(64, 2, 2, 37);
    test_delta(128, 4, 4, 1);
    test_delta(128, 2, 2, 64);
    test_moe_sort(512 * 8, 128, 8);
    test_moe_sort(65535, 256, 8);
    test_moe_sort(7, 3, 2);
    test_route(1, false, false, 0);
    test_route(1, false, true, 0);
    test_route(2, true, true, 2.5f);
    test_route(3, false, false, 1);
    test_route_groups(8, 4);
    test_route_groups(8, 1);
    test_route_groups(64, 7);
    test_attn(MR_TYPE_F16, MR_TYPE_F16, 8, 2, 128, 128, false, 300, 257, 1);
    test_attn(MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, false, 300, 257, 1);
    test_attn(MR_TYPE_F16, MR_TYPE_Q8_0, 4, 4, 64, 64, false, 5000, 4999, 1);
    test_attn(MR_TYPE_Q8_0, MR_TYPE_F16, 8, 2, 128, 128, false, 300, 257, 1);
    test_attn(MR_TYPE_F16, MR_TYPE_F16, 16, 1, 576, 512, true, 64, 40, 1);
    test_attn(MR_TYPE_F16, MR_TYPE_F16, 2, 1, 256, 256, false, 8, 1, 1);
    /* a prompt's tokens in one launch, causal */
    test_attn(MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, false, 300, 257, 37);
    test_attn(MR_TYPE_F16, MR_TYPE_F16, 16, 1, 576, 512, true, 64, 40, 40);
    test_attn(MR_TYPE_F16, MR_TYPE_F16, 8, 2, 128, 128, false, 300, 257, 37);
    test_attn(MR_TYPE_F16, MR_TYPE_Q8_0, 6, 2, 256, 256, false, 200, 150, 23); /* 8 cells a tile; G = 3 */
    test_attn(MR_TYPE_Q8_0, MR_TYPE_F16, 4, 4, 64, 64, false, 120, 70, 70);     /* G = 1: 16 tokens a block */
    test_attn(MR_TYPE_Q8_0, MR_TYPE_Q8_0, 6, 1, 576, 512, true, 100, 90, 21);   /* MLA: 8 rows a block, G = 6 */
    test_graph_and_errors();
    if (argc > 1 && !strcmp(argv[1], "--bench")) bench();
    mrc_free(C);
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
