/*
 * test_gpu_emu.c — ops of the host emulation of the device backend
 * (src/gpu/gpu_emu.c) that the golden models do not reach: group-limited
 * routing (DeepSeek-V3), checked on a case built so that it changes the
 * choice, the strided copy, the expert order of a prompt's pairs (moe_sort, rows_idx), and
 * the profiling wrapper (gpu_prof.c). The rest of the emulation is checked
 * end to end against llama.cpp's logits by test_gpu_golden.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    /* a prompt's pairs in expert order: 5 tokens x 3 slots, one id out of range (sorted last) */
    const int32_t pid[15] = {4, 1, 7, 1, 0, 4, 9, 2, 1, 4, 0, 2, 7, 7, 1};
    int32_t perm[15], sids[15], stok[15];
    CHECK(A->moe_sort(c, pid, 15, 8, 3, perm, sids, stok) == 0, "moe_sort");
    int seen[15] = {0}, sorted = 1, consistent = 1;
    for (int s = 0; s < 15; s++) {
        if (perm[s] >= 0 && perm[s] < 15) seen[perm[s]]++;
        consistent &= perm[s] >= 0 && perm[s] < 15 && sids[s] == pid[perm[s]] && stok[s] == perm[s] / 3;
        if (s > 0) {
            const int a = sids[s - 1] < 8 ? sids[s - 1] : 8, b = sids[s] < 8 ? sids[s] : 8;
            sorted &= a < b || (a == b && perm[s - 1] < perm[s]); /* stable in the emulation */
        }
    }
    int perm_ok = 1;
    for (int i = 0; i < 15; i++) perm_ok &= seen[i] == 1;
    CHECK(perm_ok && consistent, "moe_sort: perm is a permutation, sids/stok follow it");
    CHECK(sorted && sids[14] == 9, "moe_sort: experts ascending, out-of-range last (last id %d)", sids[14]);
    CHECK(A->moe_sort(c, pid, 15, 0, 3, perm, sids, stok) != 0, "moe_sort refuses 0 experts");
    /* gather by stok, scatter back by perm: rows return to their pairs */
    float rows[5][4], g[15][4], back[15][4];
    for (int t = 0; t < 5; t++)
        for (int e = 0; e < 4; e++) rows[t][e] = (float)(10 * t + e);
    CHECK(A->rows_idx(c, g, NULL, rows, stok, 15, sizeof rows[0]) == 0, "rows_idx gather");
    CHECK(A->rows_idx(c, back, perm, g, NULL, 15, sizeof g[0]) == 0, "rows_idx scatter");
    int rows_ok = 1;
    for (int i = 0; i < 15; i++)
        for (int e = 0; e < 4; e++) rows_ok &= back[i][e] == rows[i / 3][e];
    CHECK(rows_ok, "gather then scatter: pair i holds token i/3's row");
    CHECK(A->rows_idx(c, back, NULL, g, NULL, 2, 6) != 0, "rows_idx refuses rows of 6 bytes");
    /* a bias on every row, one op */
    float yb[6] = {0, 1, 2, 3, 4, 5};
    const float bb[3] = {10, 20, 30};
    CHECK(A->add_rows(c, yb, bb, 2, 3) == 0, "add_rows");
    CHECK(yb[0] == 10 && yb[2] == 32 && yb[3] == 13 && yb[5] == 35, "add_rows values %g %g %g %g", yb[0], yb[2], yb[3],
          yb[5]);
    A->free(c);

    /* MOERUN_CUDA_PROFILE's wrapper: ops still compute, each is counted once, an op captured
     * into a graph is not (the launch is one "graph" op), the report names them */
    const gpu_api *P = gpu_prof_wrap(A);
    CHECK(P != A && P->add != A->add, "profiled table wraps the ops");
    void *pc = P->init(0);
    CHECK(pc != NULL, "profiled init");
    if (!pc) return check_done();
    float y[4] = {1, 2, 3, 4}, x[4] = {10, 20, 30, 40};
    gpu_prof_step();
    CHECK(P->add(pc, y, x, 4) == 0 && P->add(pc, y, x, 4) == 0, "profiled add");
    CHECK(y[0] == 21 && y[3] == 84, "profiled add values %g %g", y[0], y[3]);
    CHECK(P->copy_rows(pc, dst, 4, src + 1, 3, 3, 2) == 0 && dst[5] == 5, "profiled copy_rows");
    CHECK(P->graph_begin(pc) == 0 && P->add(pc, y, x, 4) == 0 && P->graph_end(pc) == 0, "profiled capture");
    CHECK(y[0] == 21, "a captured add does not run");
    CHECK(P->graph_launch(pc) == 0 && y[0] == 31, "graph launch runs it (%g)", y[0]);
    CHECK(P->sync(pc) == 0, "profiled sync");
    char *rep = NULL;
    size_t rep_n = 0;
    FILE *mf = open_memstream(&rep, &rep_n);
    gpu_prof_report(mf);
    fclose(mf);
    CHECK(rep && strstr(rep, "device 0 (emu): 4 ops"), "report header: %s", rep ? rep : "(none)");
    CHECK(rep && strstr(rep, "add ") && strstr(rep, "2 calls"), "report: add twice: %s", rep ? rep : "");
    CHECK(rep && strstr(rep, "graph ") && strstr(rep, "copy_rows "), "report: graph and copy_rows: %s", rep ? rep : "");
    free(rep);
    gpu_prof_reset();
    rep = NULL;
    mf = open_memstream(&rep, &rep_n);
    gpu_prof_report(mf);
    fclose(mf);
    CHECK(rep && rep_n == 0, "nothing to report after a reset: %s", rep ? rep : "");
    free(rep);
    P->free(pc);
    return check_done();
}
