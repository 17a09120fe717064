/*
 * test_golden.c — conformance against llama.cpp's outputs
 * (../shared/fixtures/golden, bars in ../shared/fixtures/README.md).
 *
 * For every golden case of an implemented architecture: run the prompt and
 * the greedy continuation (engine/golden.c), compute cmpgolden.py's
 * statistics and check them against the family's bars (1.5x the error bars
 * for q8_0 KV cases), and check the greedy tokens (dense: up to the first
 * token decided by a reference margin < 0.5; MoE: the first 4 of those).
 * Cases without a -fa/-kvq8 suffix run with flash attention off (as the
 * reference) and again with it on, against the same bars. Every case runs
 * once more with every weight repacked for the fast kernels (-rtr) where that
 * changes a kernel: by default only the recurrent layers' projections stay on
 * the exact kernels (bit-identical to the GGUF-layout ones, test_quant_r8), so
 * for the other models -rtr computes what the default does (test_engine: the
 * in-place and arena repacks give the same logits bit for bit).
 *
 * k_skip lists models to leave out of the run (none today).
 */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "golden_case.h"
#include "moerun.h"

static const char *const k_skip[] = {
    "", /* (none: every architecture with golden cases is implemented) */
};



static const family k_fam[] = {
    {"tiny-qwen3moe", 0.80, 0.12, 0.20, 0.35, true, false},
    {"tiny-qwen3", 0.95, 0.04, 0.10, 0.01, false, false},
    {"tiny-llama", 0.95, 0.04, 0.10, 0.01, false, false},
    {"tiny-gemma3", 0.95, 0.10, 0.15, 0.02, false, false},
    {"tiny-deepseek2-lite", 0.70, 0.20, 0.45, 0.60, true, true},
    {"tiny-deepseek3", 0.70, 0.20, 0.45, 0.60, true, true},
};

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    SKIP_UNLESS_SHARED(gdir, "fixtures/golden");
    SKIP_UNLESS_SHARED(mdir, "fixtures/models");
    const char *only = argc > 1 ? argv[1] : getenv("MOERUN_GOLDEN_ONLY"); /* substring filter */
    DIR *d = opendir(gdir);
    CHECK(d != NULL, "cannot open %s", gdir);
    if (!d) return check_done();
    char *names[512];
    int nn = 0;
    struct dirent *e;
    while ((e = readdir(d)) && nn < 512) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".json")) names[nn++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)nn, sizeof(char *), cmp_str);

    mr_model *m = NULL, *mf = NULL; /* default load, -rtr load */
    char cur[256] = "";
    int n_run = 0;
    for (int i = 0; i < nn; i++) {
        char model[256], cname[256], path[4096], mpath[4096];
        snprintf(cname, sizeof cname, "%.*s", (int)(strlen(names[i]) - 5), names[i]);
        snprintf(model, sizeof model, "%s", cname);
        char *dot = strchr(model, '.');
        if (dot) *dot = 0;
        if (only && !strstr(cname, only)) continue;
        bool skip = false;
        for (size_t k = 0; k < sizeof k_skip / sizeof k_skip[0]; k++) skip |= !strcmp(model, k_skip[k]);
        const family *f = NULL;
        for (size_t k = 0; k < sizeof k_fam / sizeof k_fam[0]; k++)
            if (!strcmp(model, k_fam[k].model)) f = &k_fam[k];
        if (skip || !f) {
            printf("%-28s SKIP (listed in k_skip)\n", cname);
            continue;
        }
        if (strcmp(cur, model)) {
            mr_model_free(m);
            mr_model_free(mf);
            snprintf(mpath, sizeof mpath, "%s/%s.gguf", mdir, model);
            mr_model_params mp = mr_model_default_params();
            mp.path = mpath;
            m = mr_model_load(&mp);
            CHECK(m != NULL, "load %s: %s", mpath, mr_last_error());
            mr_model_info info = {0};
            if (m) mr_model_get_info(m, &info);
            mf = NULL;
            if (info.n_repacked_fast < info.n_repacked) { /* -rtr moves some weight to the fast kernels */
                mp.rtr = true;
                mf = mr_model_load(&mp);
                CHECK(mf != NULL, "load %s -rtr: %s", mpath, mr_last_error());
            }
            if (!m || (info.n_repacked_fast < info.n_repacked && !mf)) {
                cur[0] = 0;
                continue;
            }
            snprintf(cur, sizeof cur, "%s", model);
        }
        snprintf(path, sizeof path, "%s/%s", gdir, names[i]);
        const bool kvq8 = strstr(cname, "-kvq8") != NULL, fa = kvq8 || strstr(cname, "-fa") != NULL;
        golden_case_check(m, f, path, cname, kvq8, fa, false);
        if (!fa) golden_case_check(m, f, path, cname, false, true, true);
        if (mf) {
            char rname[300];
            snprintf(rname, sizeof rname, "%s -rtr", cname);
            golden_case_check(mf, f, path, rname, kvq8, fa, false);
        }
        n_run++;
    }
    mr_model_free(m);
    mr_model_free(mf);
    for (int i = 0; i < nn; i++) free(names[i]);
    if (n_run == 0) {
        printf("SKIP: no golden case ran\n");
        return 77;
    }
    return check_done();
}
