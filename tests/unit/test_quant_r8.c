/*
 * test_quant_r8.c — row-interleaved (R8) weights (K-quants, exact and fast
 * kernels; Q4_0 Q4_1 Q5_0 Q5_1 Q8_0, fast kernels): repacking is a
 * lossless permutation (unpack(repack(W)) == W byte for byte, in place or not),
 * and the R8 kernels (AVX2 where available, else the scalar path) agree with
 * the scalar reference on the GGUF layout for 1..13 columns and row ranges in
 * groups of 8, including blocks at the int16 limits (every quant at its
 * maximum against activations of +-127) and outputs outside the range untouched.
 * Where the CPU has AVX-512 VNNI, the VNNI fast kernels are bit-identical to the
 * AVX2 ones (skipped with a message elsewhere).
 */
#include <math.h>
#include <stdint.h>

#include "base/base.h"
#include "check.h"
#include "quant/quant.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float frand(void) { return (float)(rnd() & 0xFFFFFF) / 8388608.0f - 1.0f; }

/* Random blocks with sane fp16 scales; extreme: every quant bit set (largest quants and
 * 6-bit scales/mins; Q6_K scales 127). */
static void fill(uint32_t t, uint8_t *w, int64_t nb, bool extreme) {
    const size_t bs = mr_type_get(t)->tsize;
    for (int64_t i = 0; i < nb * (int64_t)bs; i++) w[i] = extreme ? 0xFF : (uint8_t)rnd();
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = w + b * bs;
        const uint16_t d = mr_fp32_to_fp16(0.02f + 0.01f * frand()), dm = mr_fp32_to_fp16(0.01f + 0.005f * frand());
        if (t == MR_TYPE_Q3_K) { /* d last; extreme: all bits set (u = 7, scales 63) */
            memcpy(blk + 108, &d, 2);
        } else if (t == MR_TYPE_IQ4_XS) { /* d first, then the scales and quants */
            memcpy(blk, &d, 2);
        } else if (t == MR_TYPE_Q2_K) { /* d, dmin last */
            memcpy(blk + 80, &d, 2);
            memcpy(blk + 82, &dm, 2);
        } else if (t == MR_TYPE_Q8_0) { /* extreme: every quant -128 (0x80), the sign trick's edge */
            memcpy(blk, &d, 2);
            if (extreme) memset(blk + 2, 0x80, 32);
        } else if (t == MR_TYPE_Q4_0 || t == MR_TYPE_Q5_0) {
            memcpy(blk, &d, 2);
        } else if (t == MR_TYPE_Q6_K) {
            memcpy(blk + 208, &d, 2);
            if (extreme) memset(blk + 192, 127, 16);
        } else {
            memcpy(blk, &d, 2);
            memcpy(blk + 2, &dm, 2);
        }
    }
}

/* fast: the R8F kernels (tolerance), else the exact R8 kernels (bit-identical to the GGUF-layout
 * kernels of this machine). */
static int run_case(uint32_t t, bool fast, int64_t k, int64_t m, int64_t nc, bool extreme, int xsign) {
    const uint32_t t8 = (fast ? MR_TYPE_R8F_BASE : MR_TYPE_R8_BASE) + t, vt = quant_vec_dot_type(t);
    const size_t ws = mr_row_size(t, k), xs = mr_row_size(vt, k);
    CHECK(mr_row_size(t8, k) == ws, "%s row size", mr_type_name(t8));
    CHECK(quant_vec_dot_type(t8) == vt, "%s vec dot type", mr_type_name(t8));
    uint8_t *W = malloc(ws * (size_t)m), *R = malloc(ws * (size_t)m), *U = malloc(ws * (size_t)m),
            *X = malloc(xs * (size_t)nc);
    float *xf = malloc(sizeof(float) * (size_t)k), *wd = malloc(sizeof(float) * (size_t)(k * m)),
          *xd = malloc(sizeof(float) * (size_t)(k * nc));
    const int64_t ys = m + 5;
    float *yr = malloc(sizeof(float) * (size_t)(ys * nc)), *y8 = malloc(sizeof(float) * (size_t)(ys * nc)),
          *ys8 = malloc(sizeof(float) * (size_t)(ys * nc)), *yg = malloc(sizeof(float) * (size_t)(ys * nc)),
          *yv = malloc(sizeof(float) * (size_t)(ys * nc)), *ya = malloc(sizeof(float) * (size_t)(ys * nc));
    const bool vnni = quant_isa_available(QUANT_ISA_VNNI, t8) && quant_isa_available(QUANT_ISA_AVX2, t8);
    fill(t, W, (k / mr_type_get(t)->blck) * m, extreme);
    for (int64_t c = 0; c < nc; c++) {
        for (int64_t i = 0; i < k; i++) xf[i] = extreme ? (float)xsign * (1.0f + 0.0f * frand()) : frand() * (1 + c % 3);
        quant_quantize_row(vt, xf, X + c * xs, k);
        quant_dequant_row(vt, X + c * xs, xd + c * k, k);
    }
    for (int64_t r = 0; r < m; r++) quant_dequant_row(t, W + r * ws, wd + r * k, k);
    int fails = 0;
    /* lossless, out of place and in place */
    CHECK(quant_repack(t, W, R, k, m) == 0, "repack: %s", mr_geterr());
    CHECK(quant_unpack_r8(t8, R, U, k, m) == 0, "unpack: %s", mr_geterr());
    const bool same = memcmp(U, W, ws * (size_t)m) == 0;
    CHECK(same, "%s k=%lld: unpack(repack(W)) != W", mr_type_name(t), (long long)k);
    fails += !same;
    memcpy(U, W, ws * (size_t)m);
    CHECK(quant_repack(t, U, U, k, m) == 0, "in-place repack");
    const bool inplace = memcmp(U, R, ws * (size_t)m) == 0;
    CHECK(inplace, "%s: in-place repack differs", mr_type_name(t));
    fails += !inplace;

    const int64_t ranges[3][2] = {{0, m}, {8, 16}, {m - 8, m}};
    for (int ri = 0; ri < 3; ri++) {
        const int64_t r0 = ranges[ri][0], r1 = ranges[ri][1];
        for (int64_t i = 0; i < ys * nc; i++) yr[i] = y8[i] = ys8[i] = yg[i] = yv[i] = ya[i] = -12345.0f;
        quant_matmul_isa(QUANT_ISA_SCALAR, t, W, k, r0, r1, X, xs, nc, yr, ys);
        quant_matmul(t, W, k, r0, r1, X, xs, nc, yg, ys); /* the GGUF-layout SIMD kernel */
        quant_matmul(t8, R, k, r0, r1, X, xs, nc, y8, ys);
        quant_matmul_isa(QUANT_ISA_SCALAR, t8, R, k, r0, r1, X, xs, nc, ys8, ys);
        int bad = 0, bad_scalar = 0, outside = 0, not_exact = 0, vnni_diff = 0;
        if (vnni) {
            quant_matmul_isa(QUANT_ISA_VNNI, t8, R, k, r0, r1, X, xs, nc, yv, ys);
            quant_matmul_isa(QUANT_ISA_AVX2, t8, R, k, r0, r1, X, xs, nc, ya, ys);
            for (int64_t i = 0; i < ys * nc; i++)
                if (memcmp(&yv[i], &ya[i], sizeof(float)) && vnni_diff++ < 3)
                    fprintf(stderr, "  %s k=%lld nc=%lld [%lld]: vnni %.9g avx2 %.9g\n", mr_type_name(t8), (long long)k,
                            (long long)nc, (long long)i, yv[i], ya[i]);
        }
        for (int64_t c = 0; c < nc; c++)
            for (int64_t r = 0; r < ys; r++) {
                const float ref = yr[c * ys + r], v = y8[c * ys + r];
                if (r < r0 || r >= r1) {
                    outside += v != -12345.0f;
                    continue;
                }
                bad_scalar += ys8[c * ys + r] != ref;
                if (!fast && quant_r8_fast(t8) && v != yg[c * ys + r] && not_exact++ < 3)
                    fprintf(stderr, "  %s k=%lld r=%lld c=%lld: r8 %.9g gguf-layout kernel %.9g\n", mr_type_name(t8),
                            (long long)k, (long long)r, (long long)c, v, yg[c * ys + r]);
                /* integer sums are exact; only the float order of a few terms per block
                 * differs: bounded relative to the sum of |products| */
                double mag = 0;
                for (int64_t i = 0; i < k; i++) mag += fabs((double)wd[r * k + i] * xd[c * k + i]);
                const double tol = 2e-6 * mag + 1e-30;
                if (!(fabs(v - ref) <= tol)) {
                    if (bad++ < 3)
                        fprintf(stderr, "  %s k=%lld r=%lld c=%lld: r8 %.9g ref %.9g\n", mr_type_name(t8), (long long)k,
                                (long long)r, (long long)c, v, ref);
                }
            }
        CHECK(bad == 0, "%s k=%lld rows [%lld,%lld) nc=%lld%s: %d outputs off", mr_type_name(t8), (long long)k,
              (long long)r0, (long long)r1, (long long)nc, extreme ? " extreme" : "", bad);
        CHECK(bad_scalar == 0, "%s scalar path differs from the GGUF-layout reference in %d outputs",
              mr_type_name(t8), bad_scalar);
        CHECK(outside == 0, "%s: %d outputs outside the rows written", mr_type_name(t8), outside);
        CHECK(not_exact == 0, "%s k=%lld nc=%lld: %d outputs not bit-identical to the GGUF-layout kernel",
              mr_type_name(t8), (long long)k, (long long)nc, not_exact);
        CHECK(vnni_diff == 0, "%s k=%lld nc=%lld: %d outputs of the VNNI kernel differ from the AVX2 one",
              mr_type_name(t8), (long long)k, (long long)nc, vnni_diff);
        fails += bad + bad_scalar + outside + not_exact + vnni_diff;
    }
    free(W), free(R), free(U), free(X), free(xf), free(wd), free(xd), free(yr), free(y8), free(ys8), free(yg), free(yv), free(ya);
    return fails;
}

/* Every case for type t: 3 row lengths x 1..13 columns, the int16 limits both signs, and (wide) a
 * row of 65536 elements; prints the tally. */
static void run_type(uint32_t t, bool fast, const int64_t ks[3], bool wide) {
    const uint32_t t8 = (fast ? MR_TYPE_R8F_BASE : MR_TYPE_R8_BASE) + t;
    int fails = 0, cases = 0;
    const int64_t ncs[] = {1, 2, 3, 4, 5, 7, 8, 13, 17};
    for (int ki = 0; ki < 3; ki++)
        for (size_t ci = 0; ci < MR_ARRAY_LEN(ncs); ci++, cases++) fails += run_case(t, fast, ks[ki], 24, ncs[ci], false, 1);
    fails += run_case(t, fast, 512, 16, 5, true, 1);
    fails += run_case(t, fast, 512, 16, 5, true, -1);
    cases += 2;
    if (wide) fails += run_case(t, fast, 65536, 16, 6, false, 1), cases++;
    printf("%-8s %-10s %d cases, %d failures\n", mr_type_name(t8), quant_isa_name(quant_isa_selected(t8)), cases, fails);
}

int main(void) {
    printf("cpu: %s\n", mr_cpu_features_str());
    if (!quant_isa_available(QUANT_ISA_VNNI, MR_TYPE_R8F_BASE + MR_TYPE_Q4_K))
        printf("no AVX-512 VNNI on this CPU: the VNNI kernels are not compared (skipped)\n");
    const uint32_t types[] = {MR_TYPE_Q4_K, MR_TYPE_Q5_K, MR_TYPE_Q6_K};
    CHECK(!quant_can_repack(MR_TYPE_Q4_K, 256, 12), "m not a multiple of 8");
    CHECK(!quant_can_repack(MR_TYPE_Q4_K, 128, 8), "k not a multiple of 256");
    CHECK(!quant_can_repack(MR_TYPE_IQ4_NL, 256, 8), "no R8 form of IQ4_NL");
    CHECK(!quant_can_repack(MR_TYPE_Q8_K, 256, 8), "no R8 form of Q8_K");
    CHECK(!quant_can_repack(MR_TYPE_Q8_0, 48, 8), "Q8_0: k not a multiple of 32");
    CHECK(!quant_can_repack(MR_TYPE_Q8_0, 2 * QUANT_R8_B32_MAX_K, 8), "Q8_0: k over the kernels' limit");
    CHECK(quant_repack(MR_TYPE_IQ4_NL, NULL, NULL, 256, 8) == -1 && strstr(mr_geterr(), "IQ4_NL"),
          "refused with a message");
    CHECK(mr_type_get(MR_TYPE_R8_BASE + MR_TYPE_Q8_0) == NULL, "no exact R8 form of Q8_0");
    CHECK(mr_type_get(MR_TYPE_R8F_BASE + MR_TYPE_IQ4_NL) == NULL, "no traits for an R8 type that does not exist");
    for (int fast = 0; fast < 2; fast++)
        for (size_t ti = 0; ti < MR_ARRAY_LEN(types); ti++) {
            const uint32_t t = types[ti], t8 = (fast ? MR_TYPE_R8F_BASE : MR_TYPE_R8_BASE) + t;
            CHECK(quant_can_repack(t, 512, 16), "%s repackable", mr_type_name(t));
            CHECK(mr_type_base(t8) == t && mr_type_is_r8(t8) && !mr_type_is_r8(t), "%s ids", mr_type_name(t8));
            const int64_t ks[] = {256, 768, 2048};
            run_type(t, fast, ks, false);
        }
    /* fast kernels only: Q2_K, Q3_K, IQ4_XS, and the 32-element block types (k = 1408 is DeepSeek-V2-Lite's
     * expert width) */
    const uint32_t b32[] = {MR_TYPE_Q2_K, MR_TYPE_Q3_K, MR_TYPE_IQ4_XS, MR_TYPE_Q4_0, MR_TYPE_Q4_1, MR_TYPE_Q5_0, MR_TYPE_Q5_1, MR_TYPE_Q8_0};
    for (size_t ti = 0; ti < MR_ARRAY_LEN(b32); ti++) {
        const uint32_t t = b32[ti], t8 = MR_TYPE_R8F_BASE + t;
        const bool kq = t == MR_TYPE_Q2_K || t == MR_TYPE_Q3_K || t == MR_TYPE_IQ4_XS;
        CHECK(quant_can_repack(t, kq ? 1536 : 1408, 16) && quant_supported(t8) && mr_type_base(t8) == t, "%s repackable",
              mr_type_name(t));
        const int64_t ks[] = {kq ? 256 : 32, kq ? 768 : 1408, 2048};
        /* 32-blocks: more columns than one chunk of the kernel's activation table (8192 / 2048 blocks) */
        run_type(t, true, ks, !kq);
    }
    return check_done();
}
