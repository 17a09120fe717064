/*
 * test_quant.c — quantizer round trips, fp16/bf16 edge cases, the errors for
 * unknown / unsupported types, and the SIMD row converters (quantize and
 * dequantize) bit for bit against the scalar reference (the decoders vs
 * gguf-py: test_quant_zoo.c).
 */
#include <math.h>
#include <stdint.h>

#include "base/base.h"
#include "check.h"
#include "quant/quant.h"

static uint32_t rng_state = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

static void test_fp16(void) {
    /* exact values */
    CHECK(mr_fp16_to_fp32(0x3C00) == 1.0f, "1.0");
    CHECK(mr_fp16_to_fp32(0xC000) == -2.0f, "-2.0");
    CHECK(mr_fp16_to_fp32(0x7BFF) == 65504.0f, "max half");
    CHECK(mr_fp16_to_fp32(0x0001) == ldexpf(1, -24), "min subnormal");
    CHECK(mr_fp16_to_fp32(0x03FF) == ldexpf(1023, -24), "max subnormal");
    CHECK(mr_fp16_to_fp32(0x0400) == ldexpf(1, -14), "min normal");
    CHECK(isinf(mr_fp16_to_fp32(0x7C00)) && mr_fp16_to_fp32(0x7C00) > 0, "+inf");
    CHECK(isinf(mr_fp16_to_fp32(0xFC00)) && mr_fp16_to_fp32(0xFC00) < 0, "-inf");
    CHECK(isnan(mr_fp16_to_fp32(0x7E00)), "nan");
    CHECK(signbit(mr_fp16_to_fp32(0x8000)) && mr_fp16_to_fp32(0x8000) == 0, "-0");
    CHECK(mr_fp32_to_fp16(1.0f) == 0x3C00, "to 1.0");
    CHECK(mr_fp32_to_fp16(65504.0f) == 0x7BFF, "to max");
    CHECK(mr_fp32_to_fp16(65520.0f) == 0x7C00, "65520 rounds to inf");
    CHECK(mr_fp32_to_fp16(1e6f) == 0x7C00, "overflow to inf");
    CHECK(mr_fp32_to_fp16(-1e6f) == 0xFC00, "overflow to -inf");
    CHECK(mr_fp32_to_fp16(ldexpf(1, -24)) == 0x0001, "to min subnormal");
    CHECK(mr_fp32_to_fp16(ldexpf(1, -26)) == 0x0000, "underflow to 0");
    CHECK(mr_fp32_to_fp16(ldexpf(3, -26)) == 0x0001, "0.75 ulp rounds up");
    CHECK(mr_fp32_to_fp16(ldexpf(1, -25)) == 0x0000, "half ulp ties to even (0)");
    CHECK(mr_fp32_to_fp16(ldexpf(3, -25)) == 0x0002, "1.5 ulp ties to even (2)");
    CHECK(mr_fp32_to_fp16(1.0f + ldexpf(1, -11)) == 0x3C00, "tie to even at 1");
    CHECK(mr_fp32_to_fp16(1.0f + ldexpf(3, -11)) == 0x3C02, "tie to even up");
    CHECK((mr_fp32_to_fp16(NAN) & 0x7C00) == 0x7C00 && (mr_fp32_to_fp16(NAN) & 0x3FF), "nan stays nan");
    /* every finite half round-trips exactly */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7C00) == 0x7C00) continue;
        if (mr_fp32_to_fp16(mr_fp16_to_fp32((uint16_t)h)) != h) bad++;
    }
    CHECK(bad == 0, "%d halves do not round-trip", bad);
    /* bf16 */
    CHECK(mr_bf16_to_fp32(0x3F80) == 1.0f, "bf16 1.0");
    CHECK(mr_fp32_to_bf16(1.0f) == 0x3F80, "to bf16 1.0");
    CHECK(mr_fp32_to_bf16(1.0f + ldexpf(1, -8)) == 0x3F80, "bf16 tie to even");
    CHECK(isnan(mr_bf16_to_fp32(mr_fp32_to_bf16(NAN))), "bf16 nan");
}

/* quantize -> dequantize: the error per element is bounded by the block's step. */
static void test_roundtrip(void) {
    enum { N = 4096 };
    static float x[N], y[N];
    static uint8_t buf[N * 4];
    for (int i = 0; i < N; i++) x[i] = frand() * (1 + (i / 256) % 7); /* blocks of different scale */
    x[100] = 0; /* and an all-zero block: */
    for (int i = 512; i < 768; i++) x[i] = 0;
    const uint32_t types[] = {MR_TYPE_F32, MR_TYPE_F16, MR_TYPE_BF16, MR_TYPE_Q8_0, MR_TYPE_Q8_K, MR_TYPE_Q4_0};
    for (size_t ti = 0; ti < MR_ARRAY_LEN(types); ti++) {
        const uint32_t t = types[ti];
        const uint32_t bs = mr_type_get(t)->blck == 1 ? 32 : mr_type_get(t)->blck;
        CHECK(quant_can_quantize(t), "%s quantizable", mr_type_name(t));
        CHECK(quant_quantize_row(t, x, buf, N) == 0, "quantize %s: %s", mr_type_name(t), mr_geterr());
        CHECK(quant_dequant_row(t, buf, y, N) == 0, "dequant %s: %s", mr_type_name(t), mr_geterr());
        int bad = 0;
        double worst = 0;
        for (int b0 = 0; b0 < N; b0 += bs) {
            float amax = 0;
            for (uint32_t j = 0; j < bs; j++) amax = fmaxf(amax, fabsf(x[b0 + j]));
            for (uint32_t j = 0; j < bs; j++) {
                const float xi = x[b0 + j], e = fabsf(y[b0 + j] - xi);
                float bound;
                switch (t) {
                case MR_TYPE_F32: bound = 0; break;
                case MR_TYPE_F16: bound = fabsf(xi) * ldexpf(1, -11) + ldexpf(1, -25); break;
                case MR_TYPE_BF16: bound = fabsf(xi) * ldexpf(1, -8); break;
                case MR_TYPE_Q8_0: bound = amax / 127 * 0.5f * 1.01f + amax * ldexpf(1, -11); break; /* + fp16 d */
                case MR_TYPE_Q8_K: bound = amax / 127 * 0.5f * 1.0001f; break;
                default: /* Q4_0: levels -8..7 of d = max/-8; the far end (-max) clamps to 7d */
                    bound = (fabsf(xi) <= amax * 7.5f / 8 ? amax / 16 : amax / 8) * 1.01f + amax * ldexpf(1, -10);
                    break;
                }
                if (e > bound) bad++;
                if (amax > 0) worst = fmax(worst, e / amax);
            }
        }
        CHECK(bad == 0, "%s round trip: %d elements beyond bound", mr_type_name(t), bad);
        printf("round trip %-5s max err / block max = %.3g\n", mr_type_name(t), worst);
    }
    /* Q8_K bsums are the sums of 16 quants */
    quant_quantize_row(MR_TYPE_Q8_K, x, buf, 256);
    const int8_t *qs = (const int8_t *)(buf + 4);
    const int16_t *bsums = (const int16_t *)(buf + 4 + 256);
    int bad = 0;
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += qs[16 * g + l];
        if (s != bsums[g]) bad++;
    }
    CHECK(bad == 0, "Q8_K bsums wrong in %d groups", bad);
    /* the Q8_K all-zero block decodes to zeros */
    quant_quantize_row(MR_TYPE_Q8_K, x + 512, buf, 256);
    quant_dequant_row(MR_TYPE_Q8_K, buf, y, 256);
    bad = 0;
    for (int i = 0; i < 256; i++) bad += y[i] != 0;
    CHECK(bad == 0, "zero block");
}

static void test_errors(void) {
    float f[256];
    uint8_t buf[1024] = {0};
    mr_clearerr();
    CHECK(quant_dequant_row(MR_TYPE_IQ2_XXS, buf, f, 256) == -1, "IQ2_XXS not decodable");
    CHECK(strstr(mr_geterr(), "IQ2_XXS") != NULL, "error names the type: %s", mr_geterr());
    CHECK(quant_dequant_row(77, buf, f, 256) == -1, "unknown id");
    CHECK(strstr(mr_geterr(), "77") != NULL, "error names the id: %s", mr_geterr());
    CHECK(quant_dequant_row(MR_TYPE_Q4_K, buf, f, 100) == -1, "n not multiple of 256");
    CHECK(strstr(mr_geterr(), "Q4_K") != NULL, "error names the type: %s", mr_geterr());
    CHECK(quant_quantize_row(MR_TYPE_Q6_K, f, buf, 256) == -1, "Q6_K not a quantize target");
    CHECK(strstr(mr_geterr(), "Q6_K") != NULL, "error names the type: %s", mr_geterr());
    CHECK(quant_quantize_row(MR_TYPE_Q8_0, f, buf, 33) == -1, "n=33 for Q8_0");
    CHECK(!quant_supported(MR_TYPE_IQ1_S) && !quant_supported(MR_TYPE_I32) && !quant_supported(999), "supported");
    CHECK(quant_vec_dot_type(MR_TYPE_TQ2_0) == (uint32_t)-1, "no vec dot type");
    CHECK(quant_check(MR_TYPE_MXFP4, 256) == -1 && strstr(mr_geterr(), "MXFP4"), "check names type: %s",
          mr_geterr());
    CHECK(quant_check(MR_TYPE_Q4_K, 300) == -1 && strstr(mr_geterr(), "300"), "check names k: %s", mr_geterr());
    CHECK(quant_check(MR_TYPE_Q4_K, 512) == 0, "Q4_K k=512 ok");
    CHECK(quant_check(MR_TYPE_F16, 7) == 0, "F16 any k");
    CHECK(quant_vec_dot_type(MR_TYPE_Q4_K) == MR_TYPE_Q8_K && quant_vec_dot_type(MR_TYPE_Q4_0) == MR_TYPE_Q8_0 &&
              quant_vec_dot_type(MR_TYPE_F16) == MR_TYPE_F32,
          "vec dot types");
}

/* Bitwise equal, or both NaN (NaN payloads may differ between converters). */
static bool same_float(float a, float b) {
    uint32_t ua, ub;
    memcpy(&ua, &a, 4), memcpy(&ub, &b, 4);
    return ua == ub || (isnan(a) && isnan(b));
}

/* The AVX2 converters against the scalar ones, bit for bit, on random data
 * with specials: ties (x*id = k + 0.5), NaN / inf / -0 / subnormal elements,
 * all-zero blocks, and (dequant) random raw bytes (NaN / inf scales). */
static void test_simd_converters(void) {
    enum { N = 4096 };
    static float x[N], ya[N], yb[N];
    static uint8_t qa[N * 4 + 64], qb[N * 4 + 64];
    for (int i = 0; i < N; i++) x[i] = frand() * ldexpf(1, (i / 256) % 9 - 4);
    /* block 3 (of 32) and the 4th Q8_K block: amax 127 and exact halves (roundf vs rint) */
    for (int i = 96; i < 128; i++) x[i] = (float)((i % 11) - 5) + 0.5f;
    x[96] = 127;
    for (int i = 768; i < 1024; i++) x[i] = (float)((i % 9) - 4) + 0.5f;
    x[768] = -127;
    for (int i = 1024; i < 1280; i++) x[i] = 0; /* zero blocks */
    x[1300] = NAN, x[1301] = -0.0f, x[1302] = 1e-40f, x[1400] = INFINITY, x[1600] = -INFINITY;
    x[1700] = 70000.0f, x[1701] = 1e-7f, x[1702] = 65520.0f;
    for (int i = 2048; i < 2304; i++) x[i] = (i & 1) ? NAN : 0.0f; /* NaNs and zeros only */
    const uint32_t qtypes[] = {MR_TYPE_F16, MR_TYPE_Q8_0, MR_TYPE_Q8_K, MR_TYPE_BF16, MR_TYPE_Q4_0};
    for (size_t ti = 0; ti < MR_ARRAY_LEN(qtypes); ti++) {
        const uint32_t t = qtypes[ti];
        const size_t bytes = mr_row_size(t, N);
        memset(qa, 0xAA, sizeof qa), memset(qb, 0x55, sizeof qb);
        CHECK(quant_quantize_row_isa(QUANT_ISA_SCALAR, t, x, qa, N) == 0, "scalar quantize %s", mr_type_name(t));
        CHECK(quant_quantize_row_isa(QUANT_ISA_AVX2, t, x, qb, N) == 0, "simd quantize %s", mr_type_name(t));
        size_t diff = 0;
        for (size_t i = 0; i < bytes; i++) diff += qa[i] != qb[i];
        CHECK(diff == 0, "quantize %s: simd differs from scalar in %zu of %zu bytes", mr_type_name(t), diff, bytes);
    }
    const uint32_t dtypes[] = {MR_TYPE_F16, MR_TYPE_BF16, MR_TYPE_Q4_0, MR_TYPE_Q8_0, MR_TYPE_Q4_K, MR_TYPE_Q6_K};
    for (size_t ti = 0; ti < MR_ARRAY_LEN(dtypes); ti++) {
        const uint32_t t = dtypes[ti];
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 0) { /* well-formed: quantize-like random bytes with sane fp16 fields */
                for (size_t i = 0; i < sizeof qa; i++) qa[i] = (uint8_t)(rng_state = rng_state * 1664525u + 1013904223u) >> 24;
                if (t == MR_TYPE_F16 || t == MR_TYPE_BF16)
                    quant_quantize_row_isa(QUANT_ISA_SCALAR, t, x, qa, N);
            } else { /* raw random bytes: NaN / inf scales and elements */
                for (size_t i = 0; i < sizeof qa; i++) qa[i] = (uint8_t)((rng_state = rng_state * 1664525u + 1013904223u) >> 13);
            }
            CHECK(quant_dequant_row_isa(QUANT_ISA_SCALAR, t, qa, ya, N) == 0, "scalar dequant %s", mr_type_name(t));
            CHECK(quant_dequant_row_isa(QUANT_ISA_AVX2, t, qa, yb, N) == 0, "simd dequant %s", mr_type_name(t));
            int diff = 0;
            for (int i = 0; i < N; i++) diff += !same_float(ya[i], yb[i]);
            CHECK(diff == 0, "dequant %s (pass %d): simd differs from scalar in %d of %d values", mr_type_name(t), pass,
                  diff, N);
        }
    }
}

int main(void) {
    test_fp16();
    test_roundtrip();
    test_errors();
    test_simd_converters();
    return check_done();
}
