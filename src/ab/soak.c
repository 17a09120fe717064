/*
 * soak.c — the pure side of `moerun soak`: durations ("30s", "10m", "1h"),
 * the run's request and sample records, the gate metrics (latency
 * percentiles, errors, longest stall, RSS growth after warm-up, throughput)
 * and the report (report.md, self-contained report.html with the charts of
 * throughput and memory over time).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ab/ab.h"
#include "base/base.h"

int soak_parse_duration(const char *s, double max_s, double *out) {
    const char *p = s;
    double total = 0;
    bool any = false;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || v < 0 || !isfinite(v)) goto bad;
        p = end;
        double mult = 1;
        if (!strncmp(p, "ms", 2)) mult = 1e-3, p += 2;
        else if (*p == 's') p++;
        else if (!strncmp(p, "min", 3)) mult = 60, p += 3;
        else if (*p == 'm') mult = 60, p++;
        else if (*p == 'h') mult = 3600, p++;
        else if (*p == 'd') mult = 86400, p++;
        else if (*p) goto bad;
        total += v * mult;
        any = true;
    }
    if (!any || !(total > 0)) goto bad;
    if (total > max_s) {
        mr_seterr("duration '%s' is longer than the limit of %.0f s", s, max_s);
        return -1;
    }
    *out = total;
    return 0;
bad:
    mr_seterr("'%s' is not a duration (examples: 30s, 10m, 1h, 1h30m, 90)", s);
    return -1;
}

int soak_add_req(soak_run *r, const soak_req *q) {
    if (r->n_req == r->cap_req) {
        int cap = r->cap_req ? r->cap_req * 2 : 256;
        soak_req *a = mr_realloc(r->req, sizeof *a * (size_t)cap);
        if (!a) return -1;
        r->req = a;
        r->cap_req = cap;
    }
    r->req[r->n_req++] = *q;
    return 0;
}

int soak_add_sample(soak_run *r, const soak_sample *s) {
    if (r->n_smp == r->cap_smp) {
        int cap = r->cap_smp ? r->cap_smp * 2 : 256;
        soak_sample *a = mr_realloc(r->smp, sizeof *a * (size_t)cap);
        if (!a) return -1;
        r->smp = a;
        r->cap_smp = cap;
    }
    r->smp[r->n_smp++] = *s;
    return 0;
}

void soak_run_free(soak_run *r) {
    free(r->req);
    free(r->smp);
    for (int i = 0; i < r->n_gates; i++) ab_gate_free(&r->gates[i]);
    free(r->gates);
    r->req = NULL;
    r->smp = NULL;
    r->gates = NULL;
    r->n_req = r->n_smp = r->n_gates = 0;
}

static double lat_pct(const soak_run *r, double pct, bool ttft) {
    double *x = malloc(sizeof *x * (size_t)(r->n_req + 1));
    int n = 0;
    if (!x) return NAN;
    for (int i = 0; i < r->n_req; i++) {
        const soak_req *q = &r->req[i];
        if (!q->ok) continue;
        if (ttft && !q->stream) continue;
        x[n++] = ttft ? q->ttft_ms : q->latency_ms;
    }
    double v = ab_percentile(x, n, pct);
    free(x);
    return v;
}

double soak_metric(const soak_run *r, const char *m) {
    int errors = 0;
    long long gen = 0;
    for (int i = 0; i < r->n_req; i++) {
        errors += !r->req[i].ok;
        if (r->req[i].ok) gen += r->req[i].n_gen;
    }
    if (!strcmp(m, "errors")) return errors;
    if (!strcmp(m, "requests")) return r->n_req - errors;
    if (!strcmp(m, "error_rate")) return r->n_req ? 100.0 * errors / r->n_req : NAN;
    if (!strcmp(m, "p50")) return lat_pct(r, 50, false);
    if (!strcmp(m, "p95")) return lat_pct(r, 95, false);
    if (!strcmp(m, "p99")) return lat_pct(r, 99, false);
    if (!strcmp(m, "ttft")) return lat_pct(r, 95, true);
    if (!strcmp(m, "tg")) return r->elapsed_s > 0 ? gen / r->elapsed_s : NAN;
    if (!strcmp(m, "stall")) return r->max_stall_s;
    if (!strcmp(m, "rss")) {
        double mx = NAN;
        for (int i = 0; i < r->n_smp; i++)
            if (isfinite(r->smp[i].rss)) mx = isnan(mx) ? r->smp[i].rss : MR_MAX(mx, r->smp[i].rss);
        if (isfinite(r->rss_peak)) mx = isnan(mx) ? r->rss_peak : MR_MAX(mx, r->rss_peak);
        return mx;
    }
    if (!strcmp(m, "rss_growth")) {
        /* base: the first sample at the end of the warm-up (the last one if the run was shorter) */
        double base = NAN, after = NAN;
        int ib = -1;
        for (int i = 0; i < r->n_smp; i++) {
            if (!isfinite(r->smp[i].rss)) continue;
            ib = i;
            if (r->smp[i].t >= r->warmup_s) break;
        }
        if (ib >= 0) base = r->smp[ib].rss;
        for (int i = ib; ib >= 0 && i < r->n_smp; i++)
            if (isfinite(r->smp[i].rss)) after = isnan(after) ? r->smp[i].rss : MR_MAX(after, r->smp[i].rss);
        if (isnan(base) || isnan(after) || !(base > 0)) return NAN;
        return (after / base - 1) * 100;
    }
    return NAN;
}

int soak_default_gates(soak_run *r, char **user, int n_user) {
    char stall[64];
    snprintf(stall, sizeof stall, "stall <= %gs", r->stall_limit_s);
    const char *defs[] = {"errors == 0", "rss_growth <= 10%", stall};
    r->gates = mr_calloc((size_t)(n_user + 3), sizeof *r->gates);
    if (!r->gates) return -1;
    for (int i = 0; i < n_user; i++) {
        if (ab_gate_parse(user[i], &r->gates[r->n_gates]) < 0) return -1;
        r->n_gates++;
    }
    for (int d = 0; d < 3; d++) {
        ab_gate g;
        if (ab_gate_parse(defs[d], &g) < 0) return -1;
        bool dup = false;
        for (int i = 0; i < n_user; i++) dup |= !strcmp(r->gates[i].metric, g.metric);
        if (dup) ab_gate_free(&g);
        else r->gates[r->n_gates++] = g;
    }
    return 0;
}

/* Gate state: 1 pass, 0 fail; rss_growth without a server RSS (--url without
 * --pid) counts as not measured (pass with a note). */
static int gate_state(const soak_run *r, const ab_gate *g, double *v) {
    *v = soak_metric(r, g->metric);
    if (isnan(*v) && (!strcmp(g->metric, "rss_growth") || !strcmp(g->metric, "rss")) && !r->own_server) return 2;
    return ab_gate_check(g, *v) ? 1 : 0;
}

int soak_gates_failed(const soak_run *r) {
    int n = 0;
    for (int i = 0; i < r->n_gates; i++) {
        double v;
        n += gate_state(r, &r->gates[i], &v) == 0;
    }
    if (r->own_server && r->server_note[0]) n++; /* the server crashed or did not stop cleanly */
    return n;
}

/* ---- report ----------------------------------------------------------------------------- */
typedef struct {
    char msg[200];
    int n;
} err_count;

/* Distinct error messages with counts (at most cap). */
static int error_counts(const soak_run *r, err_count *e, int cap) {
    int n = 0;
    for (int i = 0; i < r->n_req; i++) {
        if (r->req[i].ok) continue;
        int k;
        for (k = 0; k < n; k++)
            if (!strcmp(e[k].msg, r->req[i].error)) break;
        if (k < n) e[k].n++;
        else if (n < cap) {
            snprintf(e[n].msg, sizeof e[n].msg, "%s", r->req[i].error);
            e[n++].n = 1;
        }
    }
    return n;
}

static const char *envs(const json_t *env, const char *a, const char *b) {
    const char *s = json_string_value(json_object_get(json_object_get(env, a), b));
    return s ? s : "?";
}

static void fmt_metric(const soak_run *r, const char *m, char *buf, size_t n) {
    ab_gate_fmt(m, soak_metric(r, m), buf, n);
}

static int write_text(const char *dir, const char *name, char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!text) {
        mr_seterr("out of memory writing %s", path);
        return -1;
    }
    FILE *f = fopen(path, "wb");
    size_t n = strlen(text);
    bool ok = f && fwrite(text, 1, n, f) == n;
    if (f) ok &= fclose(f) == 0;
    free(text);
    if (!ok) mr_seterr("cannot write %s", path);
    return ok ? 0 : -1;
}

int soak_report_write(const soak_run *r, const char *dir, const json_t *env) {
    int failed = soak_gates_failed(r);
    char verdict[256];
    int errors = (int)soak_metric(r, "errors");
    snprintf(verdict, sizeof verdict, "%s: %d requests in %.0f s at concurrency %d, %d error(s), %d gate(s) failed.",
             failed ? "FAIL" : "PASS", r->n_req, r->elapsed_s, r->concurrency, errors, failed);
    static const char *rows[] = {"requests", "errors", "error_rate", "p50", "p95", "p99", "ttft", "tg", "stall", "rss",
                                 "rss_growth"};
    static const char *row_names[] = {"completed requests", "errors", "error rate", "latency p50", "latency p95",
                                      "latency p99", "TTFT p95 (streamed)", "generation throughput",
                                      "longest stall", "peak server RSS", "RSS growth after warm-up"};
    err_count errs[20];
    int n_err = error_counts(r, errs, 20);
    char v[96];

    /* Markdown */
    ab_buf md = {0};
    ab_printf(&md, "# moerun soak\n\n**Result:** %s\n\n", verdict);
    ab_printf(&md, "- target: %s%s\n", r->url, r->own_server ? " (server started by soak)" : "");
    if (r->own_server) ab_printf(&md, "- server: `%s`\n", r->server_cmd);
    ab_printf(&md, "- duration %.0f s (warm-up %.0f s), concurrency %d\n", r->duration_s, r->warmup_s, r->concurrency);
    ab_printf(&md, "- moerun %s, commit `%s`; %s\n\n", envs(env, "build", "version"), envs(env, "build", "commit"),
              envs(env, "machine", "cpu_model"));
    ab_puts(&md, "## Summary\n\n| metric | value |\n|---|---:|\n");
    for (size_t i = 0; i < MR_ARRAY_LEN(rows); i++) {
        fmt_metric(r, rows[i], v, sizeof v);
        ab_printf(&md, "| %s | %s |\n", row_names[i], v);
    }
    ab_puts(&md, "\n## Gates\n\n| gate | value | result |\n|---|---:|---|\n");
    for (int i = 0; i < r->n_gates; i++) {
        double x;
        int st = gate_state(r, &r->gates[i], &x);
        ab_gate_fmt(r->gates[i].metric, x, v, sizeof v);
        ab_printf(&md, "| `%s` | %s | %s |\n", r->gates[i].text, v, st == 1 ? "pass" : st == 2 ? "n/a" : "FAIL");
    }
    if (r->own_server && r->server_note[0]) ab_printf(&md, "| server exit | %s | FAIL |\n", r->server_note);
    ab_puts(&md, "\n## Errors\n\n");
    if (!n_err) ab_puts(&md, "None.\n");
    for (int i = 0; i < n_err; i++) ab_printf(&md, "- %d x %s\n", errs[i].n, errs[i].msg);
    ab_puts(&md, "\nCharts: report.html. Every request and sample: soak.jsonl.\n");

    /* charts */
    int n = r->n_smp;
    double *x = mr_calloc((size_t)n + 1, sizeof *x), *y1 = mr_calloc((size_t)(2 * n) + 1, sizeof *y1),
           *y2 = mr_calloc((size_t)(2 * n) + 1, sizeof *y2);
    char *svg1 = NULL, *svg2 = NULL;
    if (x && y1 && y2) {
        bool have_kv = false;
        for (int i = 0; i < n; i++) {
            x[i] = r->smp[i].t;
            y1[i] = r->smp[i].tps;
            y1[n + i] = r->smp[i].rps * 10;
            y2[i] = isfinite(r->smp[i].rss) ? r->smp[i].rss / 1048576.0 : NAN;
            y2[n + i] = isfinite(r->smp[i].kv) ? r->smp[i].kv * 100 : NAN;
            have_kv |= isfinite(r->smp[i].kv);
        }
        const char *l1[] = {"generated tokens/s", "requests/s x 10"};
        const char *l2[] = {"server RSS (MiB)", "KV cache usage (%)"};
        svg1 = ab_svg_lines("Throughput over time", "time (s)", "tokens/s", x, n, l1, y1, 2);
        svg2 = ab_svg_lines("Server memory and KV cache over time", "time (s)", "MiB / %", x, n, l2, y2,
                            have_kv ? 2 : 1);
    }

    /* HTML */
    ab_buf h = {0};
    ab_puts(&h, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>moerun soak</title>\n<style>\n"
                "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1000px}\n"
                "table{border-collapse:collapse;margin:8px 0 18px}th,td{border:1px solid #ccc;padding:3px 8px;"
                "text-align:right;font-size:13px}td.l,th{text-align:left}th{background:#eee}\n"
                ".pass{background:#eef6ee;border-left:5px solid #2ca02c;padding:10px 14px;font-size:15px}\n"
                ".fail{background:#fbeeee;border-left:5px solid #d62728;padding:10px 14px;font-size:15px}\n"
                "td.bad{color:#b00;font-weight:bold}.meta{color:#555;font-size:13px}svg{display:block;margin:8px 0}\n"
                "</style>\n</head>\n<body>\n<h1>moerun soak</h1>\n");
    ab_printf(&h, "<p class=\"%s\"><b>Result:</b> ", failed ? "fail" : "pass");
    ab_esc(&h, verdict);
    ab_puts(&h, "</p>\n<p class=\"meta\">target ");
    ab_esc(&h, r->url);
    if (r->own_server) {
        ab_puts(&h, " (server started by soak: <code>");
        ab_esc(&h, r->server_cmd);
        ab_puts(&h, "</code>)");
    }
    ab_printf(&h, "<br/>duration %.0f s (warm-up %.0f s), concurrency %d · moerun ", r->duration_s, r->warmup_s,
              r->concurrency);
    ab_esc(&h, envs(env, "build", "version"));
    ab_puts(&h, " commit ");
    ab_esc(&h, envs(env, "build", "commit"));
    ab_puts(&h, "</p>\n");
    if (svg1) ab_puts(&h, svg1);
    if (svg2) ab_puts(&h, svg2);
    ab_puts(&h, "<h2>Summary</h2>\n<table>\n<tr><th>metric</th><th>value</th></tr>\n");
    for (size_t i = 0; i < MR_ARRAY_LEN(rows); i++) {
        fmt_metric(r, rows[i], v, sizeof v);
        ab_printf(&h, "<tr><td class=\"l\">%s</td><td>", row_names[i]);
        ab_esc(&h, v);
        ab_puts(&h, "</td></tr>\n");
    }
    ab_puts(&h, "</table>\n<h2>Gates</h2>\n<table>\n<tr><th>gate</th><th>value</th><th>result</th></tr>\n");
    for (int i = 0; i < r->n_gates; i++) {
        double xv;
        int st = gate_state(r, &r->gates[i], &xv);
        ab_gate_fmt(r->gates[i].metric, xv, v, sizeof v);
        ab_puts(&h, "<tr><td class=\"l\"><code>");
        ab_esc(&h, r->gates[i].text);
        ab_puts(&h, "</code></td><td>");
        ab_esc(&h, v);
        ab_printf(&h, "</td><td class=\"l%s\">%s</td></tr>\n", st == 0 ? " bad" : "",
                  st == 1 ? "pass" : st == 2 ? "n/a" : "FAIL");
    }
    if (r->own_server && r->server_note[0]) {
        ab_puts(&h, "<tr><td class=\"l\">server exit</td><td>");
        ab_esc(&h, r->server_note);
        ab_puts(&h, "</td><td class=\"l bad\">FAIL</td></tr>\n");
    }
    ab_puts(&h, "</table>\n<h2>Errors</h2>\n<ul>\n");
    if (!n_err) ab_puts(&h, "<li>None.</li>\n");
    for (int i = 0; i < n_err; i++) {
        ab_printf(&h, "<li>%d × ", errs[i].n);
        ab_esc(&h, errs[i].msg);
        ab_puts(&h, "</li>\n");
    }
    ab_puts(&h, "</ul>\n</body>\n</html>\n");
    free(svg1);
    free(svg2);
    free(x);
    free(y1);
    free(y2);
    int rc = write_text(dir, "report.md", ab_buf_take(&md));
    if (write_text(dir, "report.html", ab_buf_take(&h)) < 0) rc = -1;
    return rc;
}
