/*
 * test_gpu_emu.c — ops of the host emulation of the device backend
 * (src/gpu/gpu_emu.c) that the golden models do not reach: group-limited
 * routing (DeepSeek-V3), checked on a case built so that it changes the
 * choice, and the strided copy. The rest of the emulation is checked
 * end to end against llama.cpp's logits by test_gpu_golden.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "gpu/gpu_api.h"

static float logit(float p) { return logf(p / (1.0f - p)); }

int main(void) {
    setenv("MOERUN_CUDA_EMU", "1", 1);
    const gpu_api *A = gpu_api_emu();
    void *c = A->init(0);
    CHECK(c != NULL, "emu init");
    if (!c) return check_done();

    /* 8 experts in 4 groups of 2, sigmoid gating, top-2 of the best 2 groups. Alone, experts 0
     * and 1 score best; by groups (sum of the two best) groups 2 and 3 win: experts 4, 5. */
    const float p[8] = {0.95f, 0.05f, 0.9f, 0.1f, 0.8f, 0.79f, 0.7f, 0.69f};
    float l[8], w[2];
    int32_t ids[2];
    for (int e = 0; e < 8; e++) l[e] = logit(p[e]);
    CHECK(A->moe_route(c, l, 1, 8, 2, 2, NULL, true, 0.0f, 0, 0, ids, w) == 0, "route");
    CHECK(ids[0] == 0 && ids[1] == 2, "no groups: ids %d %d, want 0 2", ids[0], ids[1]);
    CHECK(A->moe_route(c, l, 1, 8, 2, 2, NULL, true, 0.0f, 4, 2, ids, w) == 0, "route groups");
    CHECK(ids[0] == 4 && ids[1] == 5, "groups: ids %d %d, want 4 5", ids[0], ids[1]);
    CHECK(fabsf(w[0] - 0.8f / 1.59f) < 1e-5f && fabsf(w[1] - 0.79f / 1.59f) < 1e-5f, "groups: weights %g %g", w[0],
          w[1]);
    /* a selection bias moves group 3 above group 2 (bias counts for selection only) */
    const float bias[8] = {0, 0, 0, 0, 0, 0, 0.2f, 0.2f};
    CHECK(A->moe_route(c, l, 1, 8, 2, 2, bias, false, 2.5f, 4, 1, ids, w) == 0, "route groups + bias");
    CHECK(ids[0] == 6 && ids[1] == 7, "groups + bias: ids %d %d, want 6 7", ids[0], ids[1]);
    CHECK(fabsf(w[0] - 0.7f * 2.5f) < 1e-4f && fabsf(w[1] - 0.69f * 2.5f) < 1e-4f, "scaled weights %g %g", w[0],
          w[1]);
    CHECK(A->moe_route(c, l, 1, 8, 2, 2, NULL, true, 0.0f, 3, 1, ids, w) != 0, "8 experts in 3 groups is refused");

    /* strided copy */
    float src[12], dst[12] = {0};
    for (int i = 0; i < 12; i++) src[i] = (float)i;
    CHECK(A->copy_rows(c, dst, 4, src + 1, 3, 3, 2) == 0, "copy_rows");
    CHECK(dst[0] == 1 && dst[1] == 2 && dst[4] == 4 && dst[5] == 5 && dst[8] == 7 && dst[9] == 8 && dst[2] == 0,
          "copy_rows values");
    A->free(c);
    return check_done();
}
