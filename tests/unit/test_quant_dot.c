/*
 * test_quant_dot.c — the dot-product kernels: the scalar reference against a
 * double-precision dot of the dequantized operands, and every SIMD kernel
 * against the scalar reference on random well-formed blocks, for several row
 * lengths, row ranges and 1..17 activation columns. Also checks that rows
 * outside [r0, r1) are left alone and that matvec == matmul with one column.
 */
#include <math.h>
#include <stdint.h>

#include "base/base.h"
#include "check.h"
#include "quant/quant.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float frand(void) { return (float)(rnd() & 0xFFFFFF) / 8388608.0f - 1.0f; }

/* Byte offsets of the fp16 scale fields in a block (-1 ends the list). */
static void scale_fields(uint32_t t, int off[3]) {
    off[0] = off[1] = off[2] = -1;
    switch (t) {
    case MR_TYPE_Q4_1: case MR_TYPE_Q5_1: case MR_TYPE_Q4_K: case MR_TYPE_Q5_K: off[0] = 0, off[1] = 2; break;
    case MR_TYPE_Q4_0: case MR_TYPE_Q5_0: case MR_TYPE_Q8_0: case MR_TYPE_IQ4_NL: case MR_TYPE_IQ4_XS: off[0] = 0; break;
    case MR_TYPE_Q2_K: off[0] = 80, off[1] = 82; break;
    case MR_TYPE_Q3_K: off[0] = 108; break;
    case MR_TYPE_Q6_K: off[0] = 208; break;
    }
}

/* Random well-formed weights: random quant bits, sane scales. */
static void fill_weights(uint32_t t, uint8_t *dst, int64_t n_elem) {
    const mr_type_traits *tr = mr_type_get(t);
    if (tr->blck == 1) {
        for (int64_t i = 0; i < n_elem; i++) {
            float v = frand();
            if (t == MR_TYPE_F32) ((float *)dst)[i] = v;
            else if (t == MR_TYPE_F16) ((uint16_t *)dst)[i] = mr_fp32_to_fp16(v);
            else ((uint16_t *)dst)[i] = mr_fp32_to_bf16(v);
        }
        return;
    }
    const int64_t nb = n_elem / tr->blck;
    for (int64_t i = 0; i < nb * tr->tsize; i++) dst[i] = (uint8_t)rnd();
    int off[3];
    scale_fields(t, off);
    for (int64_t b = 0; b < nb; b++)
        for (int j = 0; off[j] >= 0; j++) {
            uint16_t h = mr_fp32_to_fp16((0.02f + 0.01f * frand()) * (j == 1 ? 0.5f : 1.0f));
            memcpy(dst + b * tr->tsize + off[j], &h, 2);
        }
}

static double max_rel_err;

/* One case: m rows of k, columns quantized, rows [r0, r1). */
static void run_case(uint32_t wt, int64_t k, int64_t m, int64_t r0, int64_t r1, int64_t nc) {
    const uint32_t vt = quant_vec_dot_type(wt);
    const size_t ws = mr_row_size(wt, k), xs = mr_row_size(vt, k);
    uint8_t *W = malloc(ws * (size_t)m), *X = malloc(xs * (size_t)nc);
    float *xf = malloc(sizeof(float) * (size_t)k), *wf = malloc(sizeof(float) * (size_t)k),
          *xd = malloc(sizeof(float) * (size_t)(k * nc));
    const int64_t ys = m + 3;
    float *yr = malloc(sizeof(float) * (size_t)(ys * nc)), *yv = malloc(sizeof(float) * (size_t)(ys * nc)),
          *y1 = malloc(sizeof(float) * (size_t)ys);
    fill_weights(wt, W, k * m);
    for (int64_t c = 0; c < nc; c++) {
        const float sc = 0.5f + 2 * (float)(c % 5);
        for (int64_t i = 0; i < k; i++) xf[i] = frand() * sc * ((i % 97) == 3 ? 8 : 1);
        CHECK(quant_quantize_row(vt, xf, X + c * xs, k) == 0, "quantize %s", mr_geterr());
        quant_dequant_row(vt, X + c * xs, xd + c * k, k);
    }
    for (int64_t i = 0; i < ys * nc; i++) yr[i] = yv[i] = -12345.0f;
    quant_matmul_isa(QUANT_ISA_SCALAR, wt, W, k, r0, r1, X, xs, nc, yr, ys);
    const bool simd = quant_isa_available(QUANT_ISA_AVX2, wt);
    quant_matmul_isa(QUANT_ISA_AVX2, wt, W, k, r0, r1, X, xs, nc, yv, ys);
    int untouched_bad = 0;
    for (int64_t c = 0; c < nc; c++)
        for (int64_t r = 0; r < ys; r++)
            if ((r < r0 || r >= r1) && (yr[c * ys + r] != -12345.0f || yv[c * ys + r] != -12345.0f)) untouched_bad++;
    CHECK(untouched_bad == 0, "%s: %d outputs outside the row range written", mr_type_name(wt), untouched_bad);
    int bad_ref = 0, bad_simd = 0;
    for (int64_t r = r0; r < r1; r++) {
        quant_dequant_row(wt, W + r * ws, wf, k);
        for (int64_t c = 0; c < nc; c++) {
            double exact = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) {
                exact += (double)wf[i] * xd[c * k + i];
                mag += fabs((double)wf[i] * xd[c * k + i]);
            }
            const double ref = yr[c * ys + r], v = yv[c * ys + r];
            if (!(fabs(ref - exact) <= 1e-6 * mag + 1e-30)) {
                if (bad_ref++ < 3)
                    fprintf(stderr, "  %s k=%lld r=%lld c=%lld: ref %.9g exact %.9g\n", mr_type_name(wt),
                            (long long)k, (long long)r, (long long)c, ref, exact);
            }
            const double rel = fabs(v - ref) / (mag + 1e-30);
            if (rel > max_rel_err) max_rel_err = rel;
            if (!(rel <= 2e-5)) {
                if (bad_simd++ < 3)
                    fprintf(stderr, "  %s k=%lld r=%lld c=%lld: simd %.9g ref %.9g (mag %.3g)\n", mr_type_name(wt),
                            (long long)k, (long long)r, (long long)c, v, ref, mag);
            }
        }
    }
    CHECK(bad_ref == 0, "%s k=%lld: scalar reference off the exact dot in %d outputs", mr_type_name(wt),
          (long long)k, bad_ref);
    CHECK(bad_simd == 0, "%s k=%lld rows [%lld,%lld) nc=%lld: %s off the reference in %d outputs", mr_type_name(wt),
          (long long)k, (long long)r0, (long long)r1, (long long)nc, simd ? "avx2" : "fallback", bad_simd);
    /* matvec == first column of matmul */
    for (int64_t i = 0; i < ys; i++) y1[i] = -12345.0f;
    quant_matvec(wt, W, k, r0, r1, X, y1);
    int mv_bad = 0;
    for (int64_t r = r0; r < r1; r++) {
        const float expect = quant_isa_selected(wt) == QUANT_ISA_AVX2 ? yv[r] : yr[r];
        if (y1[r] != expect) mv_bad++;
    }
    CHECK(mv_bad == 0, "%s: matvec differs from matmul column 0 in %d rows", mr_type_name(wt), mv_bad);
    free(W), free(X), free(xf), free(wf), free(xd), free(yr), free(yv), free(y1);
}

int main(void) {
    const uint32_t types[] = {MR_TYPE_F32,  MR_TYPE_F16,  MR_TYPE_BF16, MR_TYPE_Q4_0,  MR_TYPE_Q4_1,
                              MR_TYPE_Q5_0, MR_TYPE_Q5_1, MR_TYPE_Q8_0, MR_TYPE_Q2_K,  MR_TYPE_Q3_K,
                              MR_TYPE_Q4_K, MR_TYPE_Q5_K, MR_TYPE_Q6_K, MR_TYPE_IQ4_NL, MR_TYPE_IQ4_XS};
    printf("cpu: %s\n", mr_cpu_features_str());
    for (size_t ti = 0; ti < MR_ARRAY_LEN(types); ti++) {
        const uint32_t t = types[ti];
        CHECK(quant_supported(t), "%s supported", mr_type_name(t));
        const uint32_t bs = MR_MAX(mr_type_get(t)->blck, mr_type_get(quant_vec_dot_type(t))->blck);
        int64_t ks[6];
        int nk = 0;
        if (bs == 1) ks[nk++] = 1, ks[nk++] = 7, ks[nk++] = 24, ks[nk++] = 100, ks[nk++] = 256, ks[nk++] = 1000;
        else if (bs == 32) ks[nk++] = 32, ks[nk++] = 96, ks[nk++] = 288, ks[nk++] = 1024;
        else ks[nk++] = 256, ks[nk++] = 512, ks[nk++] = 1792;
        max_rel_err = 0;
        int n_cases = 0;
        for (int ki = 0; ki < nk; ki++) {
            /* row ranges: all rows of 11 (4-row blocks + tail), a middle range, one row */
            const int64_t ranges[4][2] = {{0, 11}, {3, 9}, {5, 6}, {0, 8}};
            for (int ri = 0; ri < 4; ri++) {
                const int64_t ncs[] = {1, 2, 3, 5, 8, 17};
                for (size_t ci = 0; ci < MR_ARRAY_LEN(ncs); ci++) {
                    if (ks[ki] > 512 && ncs[ci] > 5 && ri) continue; /* keep the run short */
                    run_case(t, ks[ki], 11, ranges[ri][0], ranges[ri][1], ncs[ci]);
                    n_cases++;
                }
            }
        }
        printf("%-7s %-6s %3d cases, max rel err vs scalar %.2g\n", mr_type_name(t),
               quant_isa_name(quant_isa_selected(t)), n_cases, max_rel_err);
    }
    return check_done();
}
