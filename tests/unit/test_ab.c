/*
 * test_ab.c — unit tests of src/ab: Student t and Welch's test against
 * reference values, confidence intervals, percentiles, gate parsing and
 * evaluation, plan loading (JSON and TOML) with the errors of bad plans, the
 * TOML subset, shell-style argument splitting, the interleaved schedule, the
 * results file behind --resume (torn last line), aggregation and the
 * recommendation, soak durations and metrics, and the SVG charts.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ab/ab.h"
#include "ab/ab_report.h"
#include "base/base.h"
#include "check.h"

#define NEAR(a, b, tol) (fabs((a) - (b)) <= (tol))

static void test_stats(void) {
    /* R: t.test(1:5, c(2,4,6,8,10)) -> t = -1.8974, df = 5.8824, p = 0.1075 */
    double x[] = {1, 2, 3, 4, 5}, y[] = {2, 4, 6, 8, 10};
    ab_summary a, b;
    ab_summarize(x, 5, &a);
    ab_summarize(y, 5, &b);
    double t, df, p;
    ab_welch(&a, &b, &t, &df, &p);
    CHECK(NEAR(t, 1.8973666, 1e-6), "t %f (b - a)", t);
    CHECK(NEAR(df, 5.8823529, 1e-6), "df %f", df);
    CHECK(NEAR(p, 0.1075312, 2e-5), "p %f", p);
    /* t quantiles */
    CHECK(NEAR(ab_t_quantile(0.975, 1), 12.7062047, 1e-5), "t(.975,1) %f", ab_t_quantile(0.975, 1));
    CHECK(NEAR(ab_t_quantile(0.975, 4), 2.7764451, 1e-6), "t(.975,4) %f", ab_t_quantile(0.975, 4));
    CHECK(NEAR(ab_t_quantile(0.975, 10), 2.2281389, 1e-6), "t(.975,10)");
    CHECK(NEAR(ab_t_quantile(0.975, 1000), 1.9623391, 1e-5), "t(.975,1000)");
    CHECK(NEAR(ab_t_quantile(0.025, 4), -2.7764451, 1e-6), "lower quantile");
    CHECK(NEAR(ab_t_two_sided_p(2.7764451, 4), 0.05, 1e-6), "p at the quantile");
    CHECK(NEAR(ab_t_two_sided_p(0, 7), 1.0, 1e-12), "p(0) = 1");
    CHECK(NEAR(ab_betai(2, 3, 0.4), 0.5248, 1e-9), "I_0.4(2,3) %f", ab_betai(2, 3, 0.4));
    /* CI: mean 3, sd sqrt(2.5), n 5 -> 3 +- 2.776445 * 0.7071068 */
    CHECK(NEAR(a.mean, 3, 1e-12) && NEAR(a.sd, sqrt(2.5), 1e-12), "summary");
    CHECK(NEAR(a.ci_lo, 3 - 1.9632432, 1e-6) && NEAR(a.ci_hi, 3 + 1.9632432, 1e-6), "CI [%f, %f]", a.ci_lo, a.ci_hi);
    CHECK(a.min == 1 && a.max == 5, "min/max");
    /* degenerate cases */
    ab_summary one;
    ab_summarize(x, 1, &one);
    ab_welch(&one, &b, &t, &df, &p);
    CHECK(isnan(p) && one.ci_lo == one.mean, "n = 1: no test, CI = mean");
    double c1[] = {5, 5, 5}, c2[] = {6, 6, 6};
    ab_summary s1, s2;
    ab_summarize(c1, 3, &s1);
    ab_summarize(c2, 3, &s2);
    ab_welch(&s1, &s2, &t, &df, &p);
    CHECK(p == 0, "constant different samples: p 0 (%f)", p);
    ab_welch(&s1, &s1, &t, &df, &p);
    CHECK(p == 1, "constant equal samples: p 1");
    /* percentiles (linear interpolation, as numpy) */
    double v[] = {10, 1, 7, 3, 5};
    CHECK(ab_percentile(v, 5, 50) == 5, "median");
    CHECK(NEAR(ab_percentile(v, 5, 95), 9.4, 1e-12), "p95 %f", ab_percentile(v, 5, 95));
    CHECK(ab_percentile(v, 5, 0) == 1 && ab_percentile(v, 5, 100) == 10, "ends");
    CHECK(isnan(ab_percentile(v, 0, 50)), "empty");
}

static void test_gates(void) {
    ab_gate g;
    CHECK(ab_gate_parse("tg >= 20", &g) == 0 && !strcmp(g.metric, "tg") && !strcmp(g.op, ">=") && g.value == 20,
          "tg gate");
    CHECK(ab_gate_check(&g, 20) && ab_gate_check(&g, 25) && !ab_gate_check(&g, 19.9) && !ab_gate_check(&g, NAN),
          "tg check");
    ab_gate_free(&g);
    CHECK(ab_gate_parse("vram <= 117GB", &g) == 0 && g.value == 117e9, "GB");
    ab_gate_free(&g);
    CHECK(ab_gate_parse("rss<=2GiB", &g) == 0 && g.value == 2.0 * 1073741824.0 && !strcmp(g.op, "<="), "GiB, no blanks");
    ab_gate_free(&g);
    CHECK(ab_gate_parse(" rss_growth <= 2% ", &g) == 0 && g.value == 2, "percent");
    ab_gate_free(&g);
    CHECK(ab_gate_parse("errors == 0", &g) == 0 && ab_gate_check(&g, 0) && !ab_gate_check(&g, 1), "errors");
    ab_gate_free(&g);
    CHECK(ab_gate_parse("p95 <= 2s", &g) == 0 && g.value == 2000, "seconds to ms");
    ab_gate_free(&g);
    CHECK(ab_gate_parse("stall < 500ms", &g) == 0 && NEAR(g.value, 0.5, 1e-12) && !strcmp(g.op, "<"), "ms to s");
    ab_gate_free(&g);
    CHECK(ab_gate_parse("tg@short > 5", &g) == 0 && !strcmp(g.workload, "short") && !strcmp(g.op, ">"), "workload");
    ab_gate_free(&g);
    CHECK(ab_gate_parse("foo >= 1", &g) < 0 && strstr(mr_geterr(), "unknown metric 'foo'"), "unknown metric: %s",
          mr_geterr());
    CHECK(ab_gate_parse("tg => 1", &g) < 0 && strstr(mr_geterr(), "comparison"), "bad op: %s", mr_geterr());
    CHECK(ab_gate_parse("tg >= fast", &g) < 0 && strstr(mr_geterr(), "number"), "bad number");
    CHECK(ab_gate_parse("tg >= 20GB", &g) < 0 && strstr(mr_geterr(), "unit 'GB'"), "bad unit: %s", mr_geterr());
    CHECK(ab_gate_parse("rss <= 3%", &g) < 0, "percent on bytes");
    CHECK(ab_gate_parse("", &g) < 0, "empty");
    char buf[64];
    ab_gate_fmt("rss", 1073741824.0, buf, sizeof buf);
    CHECK(strstr(buf, "GiB") != NULL, "fmt bytes %s", buf);
    ab_gate_fmt("tg", NAN, buf, sizeof buf);
    CHECK(!strcmp(buf, "n/a"), "fmt nan");
    CHECK(ab_gate_higher_better("tg") && !ab_gate_higher_better("ttft"), "direction");
}

static void test_split(void) {
    char **av;
    int ac;
    CHECK(ab_split_args("-ctk f16  -ot 'exps=CPU' -p \"a \\\"b\\\" c\" x\\ y", &av, &ac) == 0 && ac == 7, "split n %d",
          ac);
    if (ac == 7) {
        CHECK(!strcmp(av[3], "exps=CPU") && !strcmp(av[5], "a \"b\" c") && !strcmp(av[6], "x y") && !av[7],
              "split words '%s' '%s' '%s'", av[3], av[5], av[6]);
    }
    ab_free_argv(av, ac);
    CHECK(ab_split_args("", &av, &ac) == 0 && ac == 0 && av[0] == NULL, "empty split");
    ab_free_argv(av, ac);
    CHECK(ab_split_args("-ot 'exps=CPU", &av, &ac) < 0 && strstr(mr_geterr(), "unbalanced"), "unbalanced");
}

static json_t *J(const char *s) {
    json_error_t e;
    json_t *j = json_loads(s, 0, &e);
    if (!j) fprintf(stderr, "bad test json: %s\n", e.text);
    return j;
}

/* Plan from JSON text: 0 ok (plan freed), -1 error (message in mr_geterr). */
static int plan_rc(const char *s) {
    json_t *j = J(s);
    ab_plan p;
    int rc = ab_plan_from_json(j, NULL, &p);
    if (rc == 0) ab_plan_free(&p);
    json_decref(j);
    return rc;
}

static void test_plan(void) {
    json_t *j = J("{\"name\":\"t\",\"model\":\"m.gguf\",\"baseline\":\"b\",\"reps\":3,\"warmup\":0,"
                  "\"configs\":[{\"name\":\"a\",\"args\":\"-ctk f16 -t 2\"},{\"name\":\"b\",\"args\":\"-ctk q8_0\"},"
                  "{\"name\":\"ext\",\"url\":\"http://127.0.0.1:8081\",\"model\":\"x\"}],"
                  "\"workloads\":[\"short\",\"multi-turn\",{\"name\":\"mine\",\"prompt\":\"hi\",\"n_predict\":4},"
                  "{\"name\":\"conv\",\"turns\":[\"a\",\"b\"],\"system\":\"be brief\"}],"
                  "\"gates\":[\"tg >= 20\",\"errors == 0\",\"tg@mine >= 1\"]}");
    ab_plan p;
    int rc = ab_plan_from_json(j, NULL, &p);
    CHECK(rc == 0, "good plan: %s", mr_geterr());
    if (rc == 0) {
        CHECK(p.n_configs == 3 && p.n_workloads == 4 && p.reps == 3 && p.warmup == 0 && p.baseline == 1, "counts");
        CHECK(p.configs[0].argc == 4 && !strcmp(p.configs[0].argv[3], "2"), "config argv");
        CHECK(p.configs[2].url && !p.configs[2].args, "endpoint config");
        CHECK(p.workloads[1].n_turns == 4 && p.workloads[3].n_turns == 2 && !strcmp(p.workloads[3].system, "be brief"),
              "turns");
        CHECK(p.workloads[2].n_predict == 4 && p.workloads[0].n_predict == 64, "n_predict");
        CHECK(p.n_gates == 3 && !strcmp(p.gates[2].workload, "mine"), "gates");
        /* workload JSON round trip (what the worker reads) */
        json_t *wj = ab_workload_json(&p.workloads[3]);
        ab_workload w;
        CHECK(ab_workload_from_json(wj, &w) == 0 && w.n_turns == 2 && !strcmp(w.turns[1], "b") && w.system &&
                  w.chat,
              "workload round trip");
        ab_workload_free(&w);
        json_decref(wj);
        uint64_t h1 = p.hash;
        ab_plan_free(&p);
        ab_plan p2;
        CHECK(ab_plan_from_json(j, NULL, &p2) == 0 && p2.hash == h1, "hash is stable");
        ab_plan_free(&p2);
    }
    json_decref(j);
    /* bad plans -> clear errors */
    struct {
        const char *plan, *msg;
    } bad[] = {
        {"[]", "must be a JSON object"},
        {"{\"model\":\"m\"}", "\"configs\" must be a non-empty array"},
        {"{\"model\":\"m\",\"configs\":[]}", "non-empty"},
        {"{\"model\":\"m\",\"configs\":[{\"args\":\"-t 1\"}]}", "\"name\" is required"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\"},{\"name\":\"a\"}]}", "two configs are named 'a'"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\",\"flags\":\"-t 1\"}]}", "unknown key \"flags\""},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\",\"args\":\"-ot 'x\"}]}", "unbalanced quote"},
        {"{\"configs\":[{\"name\":\"a\",\"args\":\"-t 1\"}]}", "no model"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\",\"url\":\"ftp://x\"}]}", "must start with http://"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\",\"url\":\"http://x\",\"args\":\"-t 1\"}]}", "not both"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\"}],\"workloads\":[\"huge\"]}", "unknown built-in workload 'huge'"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\"}],\"workloads\":[{\"prompt\":\"x\"}]}", "\"name\" is required"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\"}],\"workloads\":[{\"name\":\"x\",\"prompt\":\"x\",\"file\":\"f\"}]}",
         "exactly one of"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\"}],\"workloads\":[{\"name\":\"x\",\"file\":\"/nonexistent/p.txt\"}]}",
         "prompt file"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\"}],\"workloads\":[\"short\",\"short\"]}", "two workloads"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\"}],\"reps\":0}", "\"reps\" = 0 is out of range"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\"}],\"reps\":2.5}", "\"reps\" must be an integer"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\"}],\"baseline\":\"zz\"}", "baseline 'zz' is not one of"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\"}],\"gates\":[\"speed > 3\"]}", "unknown metric 'speed'"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\"}],\"gates\":[\"tg@nope > 3\"]}", "workload 'nope'"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\"}],\"quality\":{\"ctx\":64}}", "\"file\""},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\"}],\"quality\":{\"file\":\"/nonexistent.txt\"}}", "cannot open"},
        {"{\"model\":\"m\",\"configs\":[{\"name\":\"a\"}],\"repz\":3}", "unknown key \"repz\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc2 = plan_rc(bad[i].plan);
        CHECK(rc2 < 0 && strstr(mr_geterr(), bad[i].msg), "bad plan %zu: want '%s', got '%s'", i, bad[i].msg,
              rc2 < 0 ? mr_geterr() : "(accepted)");
    }
}

static void test_toml(void) {
    const char *t = "# plan\nname = \"kv\"  # trailing\nreps = 3\nratio = 1.5e0\nflag = true\n"
                    "list = [1, 2,\n  3, ] # multi-line\n"
                    "'quoted key' = 'lit\\eral'\n"
                    "esc = \"a\\tb\\u00e9\"\n"
                    "[quality]\nfile = \"w.txt\"\nctx = 0x40\n"
                    "[[config]]\nname = \"a\"\nargs = \"-t 1\"\n"
                    "[[config]]\nname = \"b\"\nopt = { x = 1, y = \"z\" }\n"
                    "[deep.er]\nk.v = 1_000\n";
    json_t *j = ab_toml_parse(t, "t.toml");
    CHECK(j != NULL, "toml parse: %s", mr_geterr());
    if (j) {
        CHECK(!strcmp(json_string_value(json_object_get(j, "name")), "kv"), "string");
        CHECK(json_integer_value(json_object_get(j, "reps")) == 3, "int");
        CHECK(json_real_value(json_object_get(j, "ratio")) == 1.5, "float");
        CHECK(json_is_true(json_object_get(j, "flag")), "bool");
        CHECK(json_array_size(json_object_get(j, "list")) == 3, "array");
        CHECK(!strcmp(json_string_value(json_object_get(j, "quoted key")), "lit\\eral"), "literal string");
        CHECK(!strcmp(json_string_value(json_object_get(j, "esc")), "a\tb\xc3\xa9"), "escapes");
        CHECK(json_integer_value(json_object_get(json_object_get(j, "quality"), "ctx")) == 64, "hex, table");
        json_t *cfg = json_object_get(j, "config");
        CHECK(json_array_size(cfg) == 2 &&
                  !strcmp(json_string_value(json_object_get(json_array_get(cfg, 1), "name")), "b"),
              "array of tables");
        CHECK(json_integer_value(json_object_get(json_object_get(json_array_get(cfg, 1), "opt"), "x")) == 1,
              "inline table");
        CHECK(json_integer_value(json_object_get(
                  json_object_get(json_object_get(json_object_get(j, "deep"), "er"), "k"), "v")) == 1000,
              "dotted keys, underscores");
        json_decref(j);
    }
    struct {
        const char *t, *msg;
    } bad[] = {
        {"a = \"x\nb = 1\n", "p.toml:1:7: unterminated string"},
        {"a = 1\na = 2\n", "2:5: duplicate key a"},
        {"a = \"\"\"x\"\"\"\n", "multi-line strings"},
        {"d = 1979-05-27\n", "dates"},
        {"a = [1, 2\n", "expected ',' or ']'"},
        {"[t\nx=1\n", "expected ']'"},
        {"a = 1 b = 2\n", "end of the line"},
        {"a = nope\n", "not a number"},
        {"= 3\n", "expected a key"},
        {"a = 1\n[a]\n", "already a value"},
        {"a = \"\\q\"\n", "unknown escape"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *b = ab_toml_parse(bad[i].t, "p.toml");
        CHECK(!b && strstr(mr_geterr(), bad[i].msg), "bad toml %zu: want '%s', got '%s'", i, bad[i].msg,
              b ? "(accepted)" : mr_geterr());
        json_decref(b);
    }
    /* a TOML plan through ab_plan_load */
    char path[] = "/tmp/moerun-test-ab-XXXXXX.toml";
    int fd = mkstemps(path, 5);
    const char *plan = "model = \"m.gguf\"\nreps = 2\n[[config]]\nname = \"f16\"\nargs = \"-ctk f16\"\n"
                       "[[config]]\nname = \"q8\"\nargs = \"-ctk q8_0\"\n[[workload]]\nbuiltin = \"short\"\n"
                       "n_predict = 4\n";
    if (fd >= 0) {
        CHECK(write(fd, plan, strlen(plan)) == (ssize_t)strlen(plan), "write");
        close(fd);
        ab_plan p;
        int rc = ab_plan_load(path, &p);
        CHECK(rc == 0, "toml plan: %s", mr_geterr());
        if (rc == 0) {
            CHECK(p.n_configs == 2 && p.n_workloads == 1 && p.workloads[0].n_predict == 4 && p.reps == 2,
                  "toml plan content");
            ab_plan_free(&p);
        }
        unlink(path);
    }
    CHECK(ab_plan_load("/nonexistent/plan.json", &(ab_plan){0}) < 0 && strstr(mr_geterr(), "/nonexistent/plan.json"),
          "missing plan file names it: %s", mr_geterr());
}

static void test_schedule(void) {
    int n;
    ab_slot *s = ab_schedule(3, 2, 2, 1, &n);
    CHECK(s && n == 18, "schedule size %d", n);
    if (s && n == 18) {
        /* warm-up round first */
        bool warm_first = true;
        for (int i = 0; i < 6; i++) warm_first &= s[i].rep == -1;
        for (int i = 6; i < 18; i++) warm_first &= s[i].rep >= 0;
        CHECK(warm_first, "warm-ups first");
        /* within each round x workload every config once; the order rotates per round */
        bool all = true;
        for (int blk = 0; blk < 6; blk++) {
            int seen = 0;
            for (int k = 0; k < 3; k++) seen |= 1 << s[blk * 3 + k].config;
            all &= seen == 7;
            for (int k = 0; k < 3; k++) all &= s[blk * 3 + k].workload == s[blk * 3].workload;
        }
        CHECK(all, "each block has every config once");
        CHECK(s[0].config == 0 && s[6].config == 1 && s[12].config == 2, "rotation %d %d %d", s[0].config,
              s[6].config, s[12].config);
        /* every (config, workload, rep) exactly once */
        int cnt[3][2][3] = {{{0}}};
        for (int i = 0; i < n; i++) cnt[s[i].config][s[i].workload][s[i].rep + 1]++;
        bool once = true;
        for (int c = 0; c < 3; c++)
            for (int w = 0; w < 2; w++)
                for (int r = 0; r < 3; r++) once &= cnt[c][w][r] == 1;
        CHECK(once, "each slot once");
    }
    free(s);
}

static void test_results_and_report(void) {
    json_t *j = J("{\"model\":\"m\",\"baseline\":\"a\",\"reps\":3,\"warmup\":1,\"configs\":[{\"name\":\"a\"},"
                  "{\"name\":\"b\"}],\"workloads\":[\"short\"],\"gates\":[\"tg >= 100\",\"errors == 0\",\"vram <= 1GB\"]}");
    ab_plan p;
    if (ab_plan_from_json(j, NULL, &p) < 0) {
        CHECK(0, "plan: %s", mr_geterr());
        json_decref(j);
        return;
    }
    char path[] = "/tmp/moerun-test-ab-res-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "{\"type\":\"header\",\"plan_hash\":\"00ff\"}\n");
    fprintf(f, "{\"type\":\"run\",\"key\":\"a|short|warmup0\",\"config\":\"a\",\"workload\":\"short\",\"rep\":0,"
               "\"warmup\":true,\"ok\":true,\"tg_tps\":50,\"pp_tps\":500,\"ttft_ms\":9,\"peak_rss\":1000}\n");
    double ta[] = {100, 102, 98}, tb[] = {120, 121, 119};
    for (int r = 0; r < 3; r++) {
        fprintf(f, "{\"type\":\"run\",\"key\":\"a|short|%d\",\"config\":\"a\",\"workload\":\"short\",\"rep\":%d,"
                   "\"warmup\":false,\"ok\":true,\"tg_tps\":%g,\"pp_tps\":1000,\"ttft_ms\":10,\"peak_rss\":%d}\n",
                r, r, ta[r], 1000 + r);
        fprintf(f, "{\"type\":\"run\",\"key\":\"b|short|%d\",\"config\":\"b\",\"workload\":\"short\",\"rep\":%d,"
                   "\"warmup\":false,\"ok\":true,\"tg_tps\":%g,\"pp_tps\":1010,\"ttft_ms\":9,\"peak_rss\":900}\n",
                r, r, tb[r]);
    }
    fprintf(f, "{\"type\":\"run\",\"key\":\"b|sh"); /* torn line of a killed run */
    fclose(f);
    ab_results r;
    CHECK(ab_results_load(path, &r) == 0, "load results: %s", mr_geterr());
    CHECK(r.n == 7 && !strcmp(r.plan_hash, "00ff"), "7 runs, hash (%d)", r.n);
    CHECK(ab_results_has(&r, "b|short|2") && !ab_results_has(&r, "b|short|3"), "has");
    FILE *g = fopen(path, "rb");
    fseek(g, 0, SEEK_END);
    long full = ftell(g);
    fclose(g);
    CHECK(r.good_bytes > 0 && r.good_bytes < full && full - r.good_bytes == 25, "torn tail excluded (%ld of %ld)",
          r.good_bytes, full);
    ab_aggr A;
    CHECK(ab_aggr_build(&p, &r, &A) == 0, "aggregate");
    const ab_cell *ca = &A.cell[0], *cb = &A.cell[1];
    CHECK(ca->tg.n == 3 && NEAR(ca->tg.mean, 100, 1e-9), "warm-up excluded, mean %f", ca->tg.mean);
    CHECK(NEAR(cb->d_tg, 20, 1e-9) && cb->p_tg < 0.05 && isnan(ca->p_tg), "delta %f p %f", cb->d_tg, cb->p_tg);
    CHECK(NEAR(ca->rss_last / ca->rss_first, 1002.0 / 1000.0, 1e-12), "rss first/last");
    CHECK(NEAR(ab_aggr_metric(&p, &A, 0, "rss_growth", NULL), 0.2, 1e-9), "rss growth");
    /* gates: a passes tg >= 100? min workload mean 100 -> pass; vram n/a */
    CHECK(A.gate_state[0] == AB_GATE_PASS && A.gate_state[2] == AB_GATE_NA, "gates a %d %d", A.gate_state[0],
          A.gate_state[2]);
    char rec[512];
    ab_recommend(&p, &A, rec, sizeof rec);
    CHECK(strstr(rec, "b is 20 % faster on generation") && strstr(rec, "significant on 1/1"), "recommendation: %s", rec);
    ab_aggr_free(&A);
    /* report files */
    char dir[] = "/tmp/moerun-test-ab-dir-XXXXXX";
    if (mkdtemp(dir)) {
        ab_report_info info;
        CHECK(ab_report_write(&p, &r, dir, NULL, &info) == 0, "report: %s", mr_geterr());
        char fp[512];
        snprintf(fp, sizeof fp, "%s/report.html", dir);
        size_t len;
        char *html = mr_read_file(fp, &len);
        CHECK(html && strstr(html, "<svg") && strstr(html, "</html>") && strstr(html, "+20.0 % *"), "html");
        free(html);
        snprintf(fp, sizeof fp, "%s/report.md", dir);
        char *md = mr_read_file(fp, &len);
        CHECK(md && strstr(md, "| short | b | 3 | 120.00 ± 1.00 |"), "md row");
        free(md);
        const char *files[] = {"report.md", "report.html", "summary.json"};
        for (int i = 0; i < 3; i++) {
            snprintf(fp, sizeof fp, "%s/%s", dir, files[i]);
            unlink(fp);
        }
        rmdir(dir);
    }
    ab_results_free(&r);
    unlink(path);
    ab_plan_free(&p);
    json_decref(j);
}

static void test_soak(void) {
    double d;
    CHECK(soak_parse_duration("30s", 1e6, &d) == 0 && d == 30, "30s");
    CHECK(soak_parse_duration("10m", 1e6, &d) == 0 && d == 600, "10m");
    CHECK(soak_parse_duration("1h", 1e6, &d) == 0 && d == 3600, "1h");
    CHECK(soak_parse_duration("1h30m", 1e6, &d) == 0 && d == 5400, "1h30m");
    CHECK(soak_parse_duration("90", 1e6, &d) == 0 && d == 90, "bare seconds");
    CHECK(soak_parse_duration("500ms", 1e6, &d) == 0 && NEAR(d, 0.5, 1e-12), "ms");
    CHECK(soak_parse_duration("2d", 86400, &d) < 0 && strstr(mr_geterr(), "limit"), "bounded");
    CHECK(soak_parse_duration("soon", 1e6, &d) < 0 && strstr(mr_geterr(), "not a duration"), "bad");
    CHECK(soak_parse_duration("0s", 1e6, &d) < 0 && soak_parse_duration("", 1e6, &d) < 0, "zero / empty");

    soak_run r;
    memset(&r, 0, sizeof r);
    r.warmup_s = 10;
    r.elapsed_s = 100;
    r.own_server = true;
    r.stall_limit_s = 60;
    r.rss_peak = NAN;
    for (int i = 0; i < 100; i++) {
        soak_req q = {.t = i, .latency_ms = i + 1, .ttft_ms = 5, .ok = i != 7, .stream = i % 2, .n_gen = 10};
        if (!q.ok) snprintf(q.error, sizeof q.error, "HTTP 500");
        soak_add_req(&r, &q);
    }
    for (int t = 0; t <= 100; t += 5) {
        soak_sample s = {.t = t, .rss = t < 10 ? 900 : t == 10 ? 1000 : 1050, .kv = 0.1};
        soak_add_sample(&r, &s);
    }
    CHECK(soak_metric(&r, "errors") == 1 && soak_metric(&r, "requests") == 99, "errors");
    CHECK(NEAR(soak_metric(&r, "error_rate"), 1, 1e-12), "error rate");
    CHECK(NEAR(soak_metric(&r, "rss_growth"), 5, 1e-9), "rss growth %f", soak_metric(&r, "rss_growth"));
    CHECK(NEAR(soak_metric(&r, "tg"), 9.9, 1e-9), "tg");
    CHECK(soak_metric(&r, "p50") > 40 && soak_metric(&r, "p50") < 60, "p50");
    CHECK(soak_metric(&r, "ttft") == 5, "ttft");
    char *user[] = {"errors <= 1", "p99 <= 50ms"};
    CHECK(soak_default_gates(&r, user, 2) == 0 && r.n_gates == 4, "gates: user replaces a default (%d)", r.n_gates);
    CHECK(soak_gates_failed(&r) == 1, "p99 fails only (%d)", soak_gates_failed(&r));
    soak_run_free(&r);
}

static void test_svg(void) {
    const char *g[] = {"short", "long"}, *s[] = {"a", "b<&>"};
    double v[] = {10, 12, 5, NAN}, e[] = {1, NAN, 0.5, 1};
    char *svg = ab_svg_bars("T & t", "t/s", g, 2, s, 2, v, e);
    CHECK(svg && strstr(svg, "<svg") && strstr(svg, "b&lt;&amp;&gt;") && strstr(svg, "T &amp; t") && strstr(svg, "</svg>"),
          "bars");
    int rects = 0;
    for (const char *p = svg; p && (p = strstr(p, "<rect x=")); p++) rects++;
    CHECK(rects >= 3 + 2, "bars drawn (%d rect)", rects);
    free(svg);
    double x[] = {0, 1, 2}, y[] = {1, 2, 3, NAN, 4, 5};
    const char *l[] = {"tps", "rss"};
    svg = ab_svg_lines("L", "s", "y", x, 3, l, y, 2);
    CHECK(svg && strstr(svg, "<polyline") && strstr(svg, "</svg>"), "lines");
    free(svg);
    svg = ab_svg_lines("empty", "s", "y", x, 0, l, y, 1);
    CHECK(svg && strstr(svg, "no data"), "empty chart");
    free(svg);
}

int main(void) {
    test_stats();
    test_gates();
    test_split();
    test_plan();
    test_toml();
    test_schedule();
    test_results_and_report();
    test_soak();
    test_svg();
    return check_done();
}
