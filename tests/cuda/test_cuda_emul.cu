/*
 * test_cuda_emul.cu — runs the device dot-product and dequantization code of
 * src/cuda/mmvq.cuh on the host (no GPU needed): every unit of random
 * well-formed Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / Q2_K / Q3_K / Q4_K / Q5_K / Q6_K / IQ4_NL / IQ4_XS
 * rows (synth_fill) dotted with
 * Q8_1 activations must equal the scalar reference (src/quant dequant of the
 * weight row times the dequantized activations) to float rounding, and
 * mrc_dq_elem must reproduce quant_dequant_row bit for bit (also for F16 and BF16 rows).
 * The IQ4 table lookup runs the device's byte permutations on a host emulation of
 * __byte_perm; every 4-index word of it is checked against the table.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda/mmvq.cuh"

#define _Noreturn __attribute__((noreturn))
extern "C" {
#include "quant/quant.h"
#include "synth/synth.h"
extern const int8_t quant_iq4nl_values[16]; /* quant_impl.h: the IQ4 table */
}
#undef _Noreturn

static int g_fail, g_pass;
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

/* Host copy of the device quantizer (mrc_quantize_q8_1): d = amax/127, q = round(x/d). */
static void quantize_q8_1(const float *x, int64_t k, int8_t *q, float *ds) {
    for (int64_t b = 0; b < k / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * b + j]));
        const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            q[32 * b + j] = (int8_t)lrintf(x[32 * b + j] * id);
            sum += q[32 * b + j];
        }
        ds[2 * b] = d;
        ds[2 * b + 1] = d * (float)sum;
    }
}

typedef float (*vdot_fn)(const uint8_t *, int, const int8_t *, const float *);

static void test_type(uint32_t type, vdot_fn vdot, int64_t k, int rows) {
    synth_tensor st;
    memset(&st, 0, sizeof st);
    st.type = type;
    st.n_dims = 2;
    st.ne[0] = k, st.ne[1] = rows, st.ne[2] = st.ne[3] = 1;
    st.init = SYNTH_INIT_WEIGHT;
    const size_t rb = mr_row_size(type, k);
    /* 16-byte aligned rows, as on the device */
    uint8_t *w = (uint8_t *)aligned_alloc(64, rb * rows + 64);
    synth_rng r;
    synth_rng_seed(&r, 1234 + type);
    if (synth_fill(&st, &r, w, rb * rows)) {
        EXPECT(0, "%s: synth_fill", mr_type_name(type));
        free(w);
        return;
    }
    float *x = (float *)calloc((size_t)k, sizeof(float)), *wd = (float *)malloc(sizeof(float) * k),
          *xd = (float *)malloc(sizeof(float) * k);
    int8_t *xq = (int8_t *)aligned_alloc(64, (size_t)k + 64);
    float *xds = (float *)malloc(sizeof(float) * (k / 16));
    for (int64_t i = 0; i < k; i++) x[i] = (float)((synth_rng_next(&r) >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
    quantize_q8_1(x, k, xq, xds);
    for (int64_t i = 0; i < k; i++) xd[i] = xds[2 * (i / 32)] * xq[i];
    const int ue = mrc_unit_elems(type);
    double max_rel = 0;
    int dq_bad = 0;
    for (int rr = 0; rr < rows; rr++) {
        const uint8_t *row = w + (size_t)rr * rb;
        quant_dequant_row(type, row, wd, k);
        double ref = 0, mag = 0;
        for (int64_t i = 0; i < k; i++) ref += (double)wd[i] * xd[i], mag += fabs((double)wd[i] * xd[i]);
        double got = 0;
        for (int u = 0; u < k / ue; u++) got += vdot(row, u, xq, xds);
        const double rel = fabs(got - ref) / (mag > 0 ? mag : 1);
        if (rel > max_rel) max_rel = rel;
        for (int64_t i = 0; i < k; i++)
            if (mrc_dq_elem(type, row, i) != wd[i]) dq_bad++;
    }
    printf("%-5s k %5lld: max |dot - ref| / sum|terms| = %.2e, dequant mismatches %d\n", mr_type_name(type),
           (long long)k, max_rel, dq_bad);
    EXPECT(max_rel < 1e-5, "%s: dot error %.3e", mr_type_name(type), max_rel);
    EXPECT(dq_bad == 0, "%s: %d dequant mismatches", mr_type_name(type), dq_bad);
    free(w), free(x), free(wd), free(xd), free(xq), free(xds);
}

static void test_f16(void) {
    for (int i = 0; i < 65536; i++) {
        const float a = mrc_h2f((uint16_t)i), b = mr_fp16_to_fp32((uint16_t)i);
        if (!(a == b || (isnan(a) && isnan(b)))) {
            EXPECT(0, "h2f(0x%04x) = %g, want %g", i, a, b);
            return;
        }
    }
    g_pass++;
}

/* mrc_iq4_lut against the table for every index in every byte position. */
static void test_iq4_lut(void) {
    int bad = 0;
    for (int i = 0; i < 16; i++)
        for (int pos = 0; pos < 4; pos++) {
            const int o = (i + 5 * pos + 3) & 15; /* other bytes: other indices */
            int q = 0;
            for (int b = 0; b < 4; b++) q |= (b == pos ? i : (o + b) & 15) << (8 * b);
            const int r = mrc_iq4_lut(q);
            for (int b = 0; b < 4; b++)
                bad += (int8_t)(r >> (8 * b)) != quant_iq4nl_values[(q >> (8 * b)) & 15];
        }
    EXPECT(bad == 0, "iq4 lut: %d wrong bytes", bad);
}

/* F16 and BF16 rows: mrc_dq_elem is the reference's conversion, bit for bit. */
static void test_float_rows(uint32_t type) {
    const int64_t k = 4096;
    uint16_t *w = (uint16_t *)malloc(2 * k);
    float *ref = (float *)malloc(sizeof(float) * k);
    for (int64_t i = 0; i < k; i++) w[i] = (uint16_t)(i * 40503u + 17);
    quant_dequant_row(type, w, ref, k);
    int bad = 0;
    for (int64_t i = 0; i < k; i++) {
        const float v = mrc_dq_elem(type, (const uint8_t *)w, i);
        bad += !(v == ref[i] || (isnan(v) && isnan(ref[i])));
    }
    EXPECT(bad == 0, "%s: %d dequant mismatches", mr_type_name(type), bad);
    free(w), free(ref);
}

int main(void) {
    test_f16();
    test_iq4_lut();
    test_float_rows(MR_TYPE_F16);
    test_float_rows(MR_TYPE_BF16);
    const int64_t ks[] = {256, 768, 2048};
    for (int i = 0; i < 3; i++) {
        test_type(MR_TYPE_Q4_0, mrc_vdot_q4_0, ks[i], 8);
        test_type(MR_TYPE_Q4_1, mrc_vdot_q4_1, ks[i], 8);
        test_type(MR_TYPE_Q5_0, mrc_vdot_q5_0, ks[i], 8);
        test_type(MR_TYPE_Q5_1, mrc_vdot_q5_1, ks[i], 8);
        test_type(MR_TYPE_Q8_0, mrc_vdot_q8_0, ks[i], 8);
        test_type(MR_TYPE_Q4_K, mrc_vdot_q4_K, ks[i], 8);
        test_type(MR_TYPE_Q5_K, mrc_vdot_q5_K, ks[i], 8);
        test_type(MR_TYPE_Q6_K, mrc_vdot_q6_K, ks[i], 8);
        test_type(MR_TYPE_Q2_K, mrc_vdot_q2_K, ks[i], 8);
        test_type(MR_TYPE_Q3_K, mrc_vdot_q3_K, ks[i], 8);
        test_type(MR_TYPE_IQ4_NL, mrc_vdot_iq4_nl, ks[i], 8);
        test_type(MR_TYPE_IQ4_XS, mrc_vdot_iq4_xs, ks[i], 8);
    }
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
