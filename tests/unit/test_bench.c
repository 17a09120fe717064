/*
 * test_bench.c — unit tests of the bench library: statistics, comma lists,
 * result records (markdown row, CSV parsed back, JSON round trip), the
 * comparison math and table, axis ticks, the SVG chart's well-formedness,
 * the bandwidth kernels and the bandwidth cache.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "bench/bench.h"
#include "check.h"

static bool near(double a, double b, double tol) { return fabs(a - b) <= tol * (1 + fabs(b)); }

static void test_stats(void) {
    double x[] = {2, 4, 4, 4, 5, 5, 7, 9};
    CHECK(near(bench_mean(x, 8), 5.0, 1e-12), "mean %g", bench_mean(x, 8));
    /* sample stddev: sum of squares 32, / 7 */
    CHECK(near(bench_stddev(x, 8), sqrt(32.0 / 7.0), 1e-12), "stddev %g", bench_stddev(x, 8));
    CHECK(bench_mean(x, 0) == 0.0, "empty mean");
    CHECK(bench_stddev(x, 1) == 0.0, "stddev of one");
    double c[] = {3, 3, 3};
    CHECK(bench_stddev(c, 3) == 0.0, "constant stddev");
    double r, d;
    bench_compare_vals(100, 110, &r, &d);
    CHECK(near(r, 1.1, 1e-12) && near(d, 10.0, 1e-9), "ratio %g delta %g", r, d);
    bench_compare_vals(50, 25, &r, &d);
    CHECK(near(r, 0.5, 1e-12) && near(d, -50.0, 1e-9), "ratio %g delta %g", r, d);
    bench_compare_vals(0, 25, &r, &d);
    CHECK(isnan(r) && isnan(d), "zero baseline gives NAN");
    bench_compare_vals(10, NAN, &r, &d);
    CHECK(isnan(r), "NAN value gives NAN");
}

static void test_ticks(void) {
    double f, s;
    int n = bench_nice_ticks(0, 100, 5, &f, &s, 32);
    CHECK(f == 0 && s == 20 && n == 6, "0..100: first %g step %g n %d", f, s, n);
    n = bench_nice_ticks(0, 3584, 8, &f, &s, 32);
    CHECK(f == 0 && s == 500 && n == 8, "0..3584: first %g step %g n %d", f, s, n);
    n = bench_nice_ticks(0.0, 0.37, 5, &f, &s, 32);
    CHECK(near(s, 0.1, 1e-12) && n == 4, "0..0.37: step %g n %d", s, n);
    n = bench_nice_ticks(5, 5, 5, &f, &s, 32);
    CHECK(n >= 1 && s > 0, "degenerate range: n %d step %g", n, s);
    n = bench_nice_ticks(13, 47, 4, &f, &s, 32);
    CHECK(f >= 13 && f + s * (n - 1) <= 47 + 1e-9, "13..47: first %g step %g n %d", f, s, n);
}

static void test_lists(void) {
    int *v = NULL, n = 0;
    CHECK(bench_parse_int_list("-t", "1,2,4", 1, 64, &v, &n) == 0 && n == 3 && v[2] == 4, "1,2,4 n=%d", n);
    CHECK(bench_parse_int_list("-t", "1-4", 1, 64, &v, &n) == 0 && n == 7 && v[3] == 1 && v[6] == 4, "range n=%d", n);
    CHECK(bench_parse_int_list("-t", "8-16+4", 1, 64, &v, &n) == 0 && n == 10 && v[7] == 8 && v[9] == 16,
          "stepped n=%d", n);
    int n0 = n;
    CHECK(bench_parse_int_list("-t", "1,x", 1, 64, &v, &n) == -1, "bad item");
    CHECK(strstr(mr_geterr(), "-t") != NULL, "error names the flag: %s", mr_geterr());
    CHECK(bench_parse_int_list("-t", "0", 1, 64, &v, &n) == -1, "out of range");
    CHECK(bench_parse_int_list("-t", "", 1, 64, &v, &n) == -1, "empty");
    CHECK(bench_parse_int_list("-t", "4-2", 1, 64, &v, &n) == -1, "reversed range");
    CHECK(bench_parse_int_list("-t", "2,", 1, 64, &v, &n) == -1, "trailing comma");
    (void)n0;
    free(v);
    int *k = NULL, nk = 0;
    CHECK(bench_parse_kv_list("-ctk", "f16,q8_0,Q4_0", &k, &nk) == 0 && nk == 3 && k[0] == MR_KV_F16 &&
              k[1] == MR_KV_Q8_0 && k[2] == MR_KV_Q4_0,
          "kv list");
    CHECK(bench_parse_kv_list("-ctk", "f16,q9", &k, &nk) == -1, "unknown kv type");
    CHECK(!strcmp(bench_kv_type_name(MR_KV_Q8_0), "q8_0"), "kv name");
    free(k);
}

static void fill_result(bench_result *r, int n_prompt, int n_gen, int threads, double base) {
    bench_result_init(r);
    strcpy(r->model_filename, "tiny-qwen3.gguf");
    strcpy(r->model_path, "/x/tiny-qwen3.gguf");
    strcpy(r->model_type, "qwen3 9.21M");
    r->model_size = 10u << 20;
    r->model_n_params = 9210000;
    r->n_threads = threads;
    r->n_prompt = n_prompt;
    r->n_gen = n_gen;
    r->n_reps = 3;
    strcpy(r->ot, "exps=CPU,\"x\"");
    strcpy(r->test_time, "2025-01-01T00:00:00Z");
    int tok = n_prompt + n_gen;
    bench_result_add_sample(r, tok, tok / base);
    bench_result_add_sample(r, tok, tok / (base * 1.1));
    bench_result_add_sample(r, tok, tok / (base * 0.9));
    r->weight_bytes_per_token = 5e6;
    r->bandwidth_gbs = 10.0;
    r->peak_rss_bytes = 123456789;
    bench_result_finish(r);
}

static void test_record(void) {
    bench_result r;
    fill_result(&r, 0, 128, 4, 50.0);
    CHECK(r.n_samples == 3, "samples %d", r.n_samples);
    CHECK(near(r.avg_ts, 50.0, 1e-9), "avg_ts %g", r.avg_ts);
    CHECK(near(r.stddev_ts, 5.0, 1e-9), "stddev_ts %g", r.stddev_ts);
    /* 5e6 B/token * 50 t/s = 0.25 GB/s over 10 GB/s */
    CHECK(near(r.roofline, 0.025, 1e-9), "roofline %g", r.roofline);
    r.kv_bytes_per_token = 2.5e6; /* the KV rows a decode step reads count too */
    bench_result_finish(&r);
    CHECK(near(r.roofline, 0.0375, 1e-9), "roofline with KV bytes %g", r.roofline);
    r.kv_bytes_per_token = 0;
    bench_result_finish(&r);
    CHECK(near(r.roofline_best, r.roofline, 0), "one bandwidth: roofline_best %g = roofline", r.roofline_best);
    /* a bandwidth per repetition: the median of each one's rate over its own (5e6 B/token x
     * 50, 55, 45 t/s over 5, 10, 10 GB/s = 0.05, 0.0275, 0.0225), roofline_best as before */
    bench_result_add_bw(&r, 5.0), bench_result_add_bw(&r, 10.0), bench_result_add_bw(&r, 10.0);
    bench_result_finish(&r);
    CHECK(near(r.roofline, 0.0275, 1e-9), "per-repetition roofline %g", r.roofline);
    CHECK(near(r.roofline_best, 0.025, 1e-9), "roofline_best %g", r.roofline_best);
    r.samples_bw[1] = 0; /* a failed measurement: back to the one figure */
    bench_result_finish(&r);
    CHECK(near(r.roofline, 0.025, 1e-9), "a repetition without bandwidth: roofline %g", r.roofline);
    free(r.samples_bw), r.samples_bw = NULL, r.n_samples_bw = 0;
    bench_result_finish(&r);
    char name[64];
    bench_test_name(&r, name, sizeof name);
    CHECK(!strcmp(name, "tg128"), "name %s", name);
    r.n_depth = 1024;
    r.n_prompt = 512;
    bench_test_name(&r, name, sizeof name);
    CHECK(!strcmp(name, "pp512+tg128 @ d1024"), "name %s", name);
    r.n_depth = 0;
    r.n_prompt = 0;

    /* markdown row: same number of cells as the header, values present */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    bench_md_cols cols = {.n_ubatch = true, .roofline = true, .rss = true};
    bench_md_header(f, &cols);
    bench_md_row(f, &cols, &r);
    fclose(f);
    char *l1 = buf, *l3 = strchr(strchr(buf, '\n') + 1, '\n') + 1;
    int p1 = 0, p3 = 0;
    for (char *p = l1; *p != '\n'; p++) p1 += *p == '|';
    for (char *p = l3; *p && *p != '\n'; p++) p3 += *p == '|';
    CHECK(p1 == p3 && p1 == 11, "md cells header %d row %d", p1, p3);
    CHECK(strstr(l3, "50.00 ± 5.00") && strstr(l3, "tg128") && strstr(l3, "2.5 %") && strstr(l3, "qwen3 9.21M"),
          "md row: %s", l3);
    size_t w1 = strcspn(l1, "\n"), w3 = strcspn(l3, "\n");
    /* widths count bytes (as llama-bench): the row is as long as the header */
    CHECK(w3 == w1, "md row width %zu header %zu", w3, w1);
    free(buf);

    /* CSV: parse back with quotes */
    bench_env e;
    bench_env_fill(&e);
    strcpy(e.cpu_model, "CPU, with \"comma\"");
    buf = NULL;
    f = open_memstream(&buf, &len);
    bench_csv_header(f);
    bench_csv_row(f, &r, &e);
    fclose(f);
    char *hdr = buf, *row = strchr(buf, '\n') + 1;
    int nh = 1;
    for (char *p = hdr; *p != '\n'; p++) nh += *p == ',';
    /* split the row */
    char fields[64][256];
    int nf = 0, q = 0;
    size_t k = 0;
    for (char *p = row; *p && *p != '\n' && nf < 64; p++) {
        if (q) {
            if (*p == '"' && p[1] == '"') fields[nf][k++] = '"', p++;
            else if (*p == '"') q = 0;
            else fields[nf][k++] = *p;
        } else if (*p == '"') q = 1;
        else if (*p == ',') fields[nf][k] = 0, nf++, k = 0;
        else fields[nf][k++] = *p;
    }
    fields[nf][k] = 0;
    nf++;
    CHECK(nf == nh, "csv fields %d header %d", nf, nh);
    CHECK(!strcmp(fields[3], "CPU, with \"comma\""), "csv cpu field '%s'", fields[3]);
    int col_avg = -1, col_samples = -1, col_ot = -1, col_roof = -1;
    char *h = strndup(hdr, strcspn(hdr, "\n"));
    int ci = 0;
    for (char *t = strtok(h, ","); t; t = strtok(NULL, ","), ci++) {
        if (!strcmp(t, "avg_ts")) col_avg = ci;
        if (!strcmp(t, "samples_ts")) col_samples = ci;
        if (!strcmp(t, "override_tensors")) col_ot = ci;
        if (!strcmp(t, "roofline")) col_roof = ci;
    }
    free(h);
    CHECK(col_avg >= 0 && near(atof(fields[col_avg]), 50.0, 1e-6), "csv avg_ts '%s'", fields[col_avg]);
    CHECK(col_samples >= 0 && strchr(fields[col_samples], ';'), "csv samples '%s'", fields[col_samples]);
    CHECK(col_ot >= 0 && !strcmp(fields[col_ot], "exps=CPU,\"x\""), "csv ot '%s'", fields[col_ot]);
    CHECK(col_roof >= 0 && near(atof(fields[col_roof]), 0.025, 1e-6), "csv roofline '%s'", fields[col_roof]);
    free(buf);

    /* JSON round trip through text */
    json_t *j = bench_result_to_json(&r, &e);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    json_error_t err;
    json_t *back = json_loads(s, 0, &err);
    CHECK(back != NULL, "json parses: %s", err.text);
    CHECK(json_is_object(json_object_get(back, "build")) && json_is_object(json_object_get(back, "machine")),
          "json has build and machine");
    CHECK(json_string_value(json_object_get(back, "date")) != NULL, "json has date");
    bench_result r2;
    CHECK(bench_result_from_json(back, &r2) == 0, "from_json: %s", mr_geterr());
    CHECK(r2.n_gen == 128 && r2.n_threads == 4 && r2.n_samples == 3, "round trip ints");
    CHECK(near(r2.avg_ts, r.avg_ts, 1e-12) && near(r2.roofline, r.roofline, 1e-12), "round trip reals");
    CHECK(!strcmp(r2.ot, r.ot) && !strcmp(r2.model_filename, r.model_filename), "round trip strings");
    CHECK(near(r2.samples_ts[1], r.samples_ts[1], 1e-12), "round trip samples");
    bench_result_free(&r2);
    json_decref(back);
    free(s);

    /* NAN roofline is written as null and read back as NAN */
    r.bandwidth_gbs = 0;
    bench_result_finish(&r);
    CHECK(isnan(r.roofline), "no bandwidth: no roofline");
    j = bench_result_to_json(&r, &e);
    CHECK(json_is_null(json_object_get(j, "roofline")), "roofline null");
    CHECK(bench_result_from_json(j, &r2) == 0 && isnan(r2.roofline), "null roofline reads back as NAN");
    bench_result_free(&r2);
    json_decref(j);
    /* missing required field */
    j = json_pack("{s:i}", "n_gen", 3);
    CHECK(bench_result_from_json(j, &r2) == -1 && strstr(mr_geterr(), "n_prompt"), "missing field: %s", mr_geterr());
    bench_result_free(&r2);
    json_decref(j);
    bench_result_free(&r);
}

static int write_set(const char *path, const double *ts, int n, bool jsonl, const char *model) {
    bench_env e;
    bench_env_fill(&e);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    if (!jsonl) fputs("[\n", f);
    for (int i = 0; i < n; i++) {
        bench_result r;
        fill_result(&r, i == 0 ? 512 : 0, i == 0 ? 0 : 128, 1 + i % 2, ts[i]);
        strcpy(r.model_filename, model);
        json_t *j = bench_result_to_json(&r, &e);
        char *s = json_dumps(j, jsonl ? JSON_COMPACT : JSON_INDENT(2));
        fprintf(f, "%s%s\n", s, !jsonl && i + 1 < n ? "," : "");
        free(s);
        json_decref(j);
        bench_result_free(&r);
    }
    if (!jsonl) fputs("]\n", f);
    fclose(f);
    return 0;
}

static void test_compare(void) {
    char dir[] = "/tmp/test_bench_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char pa[128], pb[128], pc[128];
    snprintf(pa, sizeof pa, "%s/a.json", dir);
    snprintf(pb, sizeof pb, "%s/b.jsonl", dir);
    snprintf(pc, sizeof pc, "%s/c.json", dir);
    double ta[] = {100, 20, 30}, tb[] = {120, 10, 30};
    write_set(pa, ta, 3, false, "m.gguf");
    write_set(pb, tb, 2, true, "m.gguf");
    write_set(pc, tb, 2, false, "other.gguf");
    bench_result_set a, b, c;
    CHECK(bench_load_results(pa, &a) == 0 && a.n == 3, "load json: %s", mr_geterr());
    CHECK(bench_load_results(pb, &b) == 0 && b.n == 2, "load jsonl: %s", mr_geterr());
    CHECK(bench_load_results(pc, &c) == 0 && c.n == 2, "load c: %s", mr_geterr());
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int m = bench_compare_print(f, &a, &b, "a.json", "b.jsonl");
    fclose(f);
    CHECK(m == 2, "matched %d", m);
    CHECK(strstr(buf, "1.200") && strstr(buf, "+20.0%"), "pp ratio in table:\n%s", buf);
    CHECK(strstr(buf, "0.500") && strstr(buf, "-50.0%"), "tg ratio in table:\n%s", buf);
    CHECK(strstr(buf, "1 test(s) only in A"), "unmatched counted:\n%s", buf);
    free(buf);
    /* different models: matched without the model in the key */
    buf = NULL;
    f = open_memstream(&buf, &len);
    m = bench_compare_print(f, &a, &c, "a", "c");
    fclose(f);
    CHECK(m == 2 && strstr(buf, "m.gguf / other.gguf"), "cross-model compare:\n%s", buf);
    free(buf);
    bench_result_set_free(&a);
    bench_result_set_free(&b);
    bench_result_set_free(&c);
    /* bad file */
    FILE *g = fopen(pa, "w");
    fputs("{not json\n", g);
    fclose(g);
    CHECK(bench_load_results(pa, &a) == -1 && strstr(mr_geterr(), pa), "bad file error: %s", mr_geterr());
    unlink(pa), unlink(pb), unlink(pc), rmdir(dir);
}

/* Minimal XML well-formedness: tags balance and nest, attributes quoted, only
 * the five entities. Returns NULL if fine, else a description. */
static const char *xml_check(const char *s) {
    static char msg[128];
    const char *stack[256];
    size_t stack_len[256];
    int depth = 0, roots = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '&') {
            if (strncmp(p, "&amp;", 5) && strncmp(p, "&lt;", 4) && strncmp(p, "&gt;", 4) && strncmp(p, "&quot;", 6) &&
                strncmp(p, "&apos;", 6))
                return "bad entity";
            continue;
        }
        if (*p == '>') return "stray >";
        if (*p != '<') continue;
        if (p[1] == '?') {
            p = strstr(p, "?>");
            if (!p) return "unterminated <?";
            p++;
            continue;
        }
        if (p[1] == '/') {
            const char *n = p + 2;
            size_t l = strcspn(n, "> \n");
            if (depth == 0 || l != stack_len[depth - 1] || strncmp(n, stack[depth - 1], l)) {
                snprintf(msg, sizeof msg, "mismatched </%.*s>", (int)l, n);
                return msg;
            }
            depth--;
            p = strchr(p, '>');
            if (!p) return "unterminated close tag";
            continue;
        }
        const char *n = p + 1;
        size_t l = strcspn(n, " />\n");
        if (l == 0) return "empty tag name";
        const char *q = n + l;
        int inq = 0;
        for (; *q && (inq || (*q != '>')); q++) {
            if (*q == '"') inq = !inq;
            if (inq && *q == '<') return "< inside attribute";
        }
        if (!*q) return "unterminated tag";
        if (q[-1] != '/') {
            if (depth == 0) roots++;
            if (depth == 256) return "too deep";
            stack[depth] = n;
            stack_len[depth++] = l;
        } else if (depth == 0) roots++;
        p = q;
    }
    if (depth) return "unclosed element";
    if (roots != 1) return "not exactly one root";
    return NULL;
}

static void test_svg(void) {
    sweep_series s[2] = {0};
    strcpy(s[0].label, "a <&> \"b\"");
    strcpy(s[1].label, "second");
    for (int i = 0; i < 8; i++) {
        sweep_row r = {512, 128, 512 * i, 1.0 + 0.1 * i, 512 / (1.0 + 0.1 * i), 2.0, 64.0 - 3 * i};
        sweep_series_add(&s[0], &r);
        r.speed_pp *= 1.3;
        r.speed_tg *= 0.8;
        sweep_series_add(&s[1], &r);
    }
    char *svg = sweep_svg(s, 2, "model.gguf: sweep -c 4096 <x> & y");
    CHECK(svg != NULL, "svg");
    const char *e = xml_check(svg);
    CHECK(e == NULL, "svg well-formed: %s", e);
    CHECK(strstr(svg, "KV cache depth") && strstr(svg, "tokens/s") && strstr(svg, "&lt;x&gt; &amp; y"),
          "labels and escaped title");
    CHECK(strstr(svg, "<polyline") && strstr(svg, "id=\"legend\""), "lines and legend");
    free(svg);
    /* one point, and a series without TG */
    sweep_series one = {0};
    sweep_row r = {16, 0, 0, 0.1, 160, 0, NAN};
    sweep_series_add(&one, &r);
    svg = sweep_svg(&one, 1, NULL);
    CHECK(svg && xml_check(svg) == NULL && strstr(svg, "no data"), "single point svg");
    free(svg);
    CHECK(xml_check("<a><b></a>") != NULL, "checker rejects mismatched tags");
    sweep_series_free(&s[0]);
    sweep_series_free(&s[1]);
    sweep_series_free(&one);
}

static void test_bandwidth(void) {
    size_t n = 1000003;
    double *p = mr_malloc_aligned(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (double)(i % 7);
    double want = 0;
    for (size_t i = 0; i < n; i++) want += p[i];
    CHECK(bench_sum_f64_scalar(p, n) == want, "scalar sum");
    if (mr_cpu()->avx2) CHECK(bench_sum_f64_avx2(p, n) == want, "avx2 sum");
    CHECK(bench_sum_f64(p, 5) == 0 + 1 + 2 + 3 + 4, "short sum");
    mr_free_aligned(p);
    double g = bench_bandwidth_gbs(2, 16u << 20, 2);
    CHECK(g > 0.1 && g < 10000, "bandwidth %g GB/s", g);
    /* cache under a private XDG_CACHE_HOME */
    char dir[] = "/tmp/test_bench_cache_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    setenv("XDG_CACHE_HOME", dir, 1);
    double v = 0;
    CHECK(bench_bw_cache_get(3, &v) == -1, "empty cache");
    CHECK(bench_bw_cache_put(3, 12.5) == 0 && bench_bw_cache_put(4, 20) == 0 && bench_bw_cache_put(3, 13.5) == 0,
          "cache put: %s", mr_geterr());
    CHECK(bench_bw_cache_get(3, &v) == 0 && v == 13.5, "cache get 3: %g", v);
    CHECK(bench_bw_cache_get(4, &v) == 0 && v == 20, "cache get 4: %g", v);
    CHECK(bench_bw_cache_get(5, &v) == -1, "cache miss");
    char path[256];
    snprintf(path, sizeof path, "%s/moerun/bandwidth.tsv", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/moerun", dir);
    rmdir(path);
    rmdir(dir);
}

/* bench_bw_moved: the range over the per-repetition bandwidths and the probes noted around them. */
static void test_bw_moved(void) {
    bench_result r;
    bench_result_init(&r);
    double lo = -1, hi = -1;
    CHECK(!bench_bw_moved(&r, &lo, &hi) && lo == -1, "no probes: not moved");
    CHECK(bench_result_add_bw(&r, 60.0) == 0 && bench_result_add_bw(&r, 55.0) == 0, "add bw");
    bench_result_note_probe(&r, 60.0), bench_result_note_probe(&r, 55.0);
    CHECK(!bench_bw_moved(&r, &lo, &hi), "60 / 55 GB/s: within %.2fx", BENCH_BW_MOVED);
    CHECK(lo == 55.0 && hi == 60.0, "range %g - %g", lo, hi);
    /* a slow probe before a repetition whose after-probe (the sample, their max) was fast */
    bench_result_note_probe(&r, 34.0);
    bench_result_note_probe(&r, 0.0); /* unknown: ignored */
    bench_result_note_probe(&r, NAN);
    CHECK(bench_bw_moved(&r, &lo, &hi) && lo == 34.0 && hi == 60.0, "34 - 60 GB/s moved: %g - %g", lo, hi);
    bench_result_free(&r);
    /* the samples alone, with an unknown one */
    bench_result_init(&r);
    CHECK(bench_result_add_bw(&r, 0.0) == 0 && bench_result_add_bw(&r, 70.0) == 0 && bench_result_add_bw(&r, 37.0) == 0,
          "add bw");
    CHECK(bench_bw_moved(&r, &lo, &hi) && lo == 37.0 && hi == 70.0, "samples 37 - 70: %g - %g", lo, hi);
    bench_result_free(&r);
    /* sweep's test of its own range (INFINITY / 0: no probe) */
    CHECK(bench_bw_spread(34.0, 62.0) && !bench_bw_spread(50.0, 60.0), "spread 34-62 yes, 50-60 no");
    CHECK(!bench_bw_spread(INFINITY, 0.0) && !bench_bw_spread(0.0, 60.0) && !bench_bw_spread(30.0, NAN),
          "unknown ends: no spread");
}

static void test_tokens(void) {
    mr_token a[100], b[100];
    bench_random_tokens(a, 100, 1000, 7);
    bench_random_tokens(b, 100, 1000, 7);
    int same = 1, inrange = 1, distinct = 0;
    for (int i = 0; i < 100; i++) {
        same &= a[i] == b[i];
        inrange &= a[i] >= 0 && a[i] < 1000;
        distinct += i && a[i] != a[i - 1];
    }
    CHECK(same && inrange && distinct > 90, "random tokens fixed and in range");
}

int main(void) {
    test_stats();
    test_ticks();
    test_lists();
    test_record();
    test_compare();
    test_svg();
    test_bandwidth();
    test_bw_moved();
    test_tokens();
    return check_done();
}
