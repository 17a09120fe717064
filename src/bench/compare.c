/*
 * compare.c — `moerun bench --compare A.json B.json`: match the tests of two
 * result files (model x test x depth x threads x every other flag) and print a
 * side-by-side markdown table with both speeds, the ratio B/A and the delta %.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "bench/bench.h"

/* Everything that identifies a test; the model file name only with with_model. */
void bench_result_key(const bench_result *r, bool with_model, char *buf, size_t n) {
    snprintf(buf, n, "%s|p%d|n%d|d%d|t%d|b%d|ub%d|k%d|v%d|fa%d|ngl%d|cmoe%d|ot=%s",
             with_model ? r->model_filename : "", r->n_prompt, r->n_gen, r->n_depth, r->n_threads, r->n_batch,
             r->n_ubatch, r->type_k, r->type_v, r->flash_attn, r->n_gpu_layers, r->n_cpu_moe, r->ot);
}

static int find_key(const bench_result_set *s, bool with_model, const char *key, const bool *used) {
    char k[BENCH_MAX_STR * 3];
    for (int i = 0; i < s->n; i++) {
        if (used && used[i]) continue;
        bench_result_key(&s->r[i], with_model, k, sizeof k);
        if (!strcmp(k, key)) return i;
    }
    return -1;
}

static int count_matches(const bench_result_set *a, const bench_result_set *b, bool with_model) {
    char k[BENCH_MAX_STR * 3];
    int n = 0;
    for (int i = 0; i < a->n; i++) {
        bench_result_key(&a->r[i], with_model, k, sizeof k);
        if (find_key(b, with_model, k, NULL) >= 0) n++;
    }
    return n;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* A describes the row: model (when the key has it, else "A vs B" names), test, threads. */
int bench_compare_print(FILE *f, const bench_result_set *a, const bench_result_set *b, const char *name_a,
                        const char *name_b) {
    bool with_model = count_matches(a, b, true) > 0;
    bool *used = mr_calloc((size_t)(b->n ? b->n : 1), sizeof *used);
    if (!used) return -1;
    char ha[64], hb[64];
    snprintf(ha, sizeof ha, "A t/s");
    snprintf(hb, sizeof hb, "B t/s");
    fprintf(f, "A: %s\nB: %s\n", name_a, name_b);
    if (!with_model && count_matches(a, b, false) > 0)
        fprintf(f, "(no test matches with the same model file: comparing %s against %s)\n",
                a->r[0].model_filename, b->r[0].model_filename);
    fputc('\n', f);
    fprintf(f, "| %-30s | %-18s | %7s | %20s | %20s | %6s | %8s |\n", "model", "test", "threads", ha, hb, "B/A",
            "delta");
    fprintf(f, "| %-30s | %-18s | %7s | %20s | %20s | %6s | %8s |\n", "------------------------------",
            "------------------", "------:", "-------------------:", "-------------------:", "-----:", "-------:");
    int matched = 0;
    char key[BENCH_MAX_STR * 3], test[64], sa[64], sb[64], model[BENCH_MAX_STR * 2 + 8];
    for (int i = 0; i < a->n; i++) {
        const bench_result *ra = &a->r[i];
        bench_result_key(ra, with_model, key, sizeof key);
        int j = find_key(b, with_model, key, used);
        if (j < 0) continue;
        used[j] = true;
        const bench_result *rb = &b->r[j];
        double ratio, delta;
        bench_compare_vals(ra->avg_ts, rb->avg_ts, &ratio, &delta);
        bench_test_name(ra, test, sizeof test);
        snprintf(sa, sizeof sa, "%.2f ± %.2f", ra->avg_ts, ra->stddev_ts);
        snprintf(sb, sizeof sb, "%.2f ± %.2f", rb->avg_ts, rb->stddev_ts);
        if (with_model) snprintf(model, sizeof model, "%s", base_name(ra->model_filename));
        else snprintf(model, sizeof model, "%s / %s", base_name(ra->model_filename), base_name(rb->model_filename));
        fprintf(f, "| %-30s | %-18s | %7d | %20s | %20s | %6.3f | %+7.1f%% |\n", model, test, ra->n_threads, sa, sb,
                ratio, delta);
        matched++;
    }
    int only_a = a->n - matched, only_b = b->n - matched;
    if (only_a || only_b)
        fprintf(f, "\n%d test(s) only in A, %d only in B (not compared)\n", only_a, only_b);
    free(used);
    return matched;
}
