/*
 * ab_report.c — the report of `moerun ab`: report.md (Markdown tables),
 * report.html (self-contained: inline CSS and SVG bar charts with 95 % CI
 * error bars per workload) and summary.json (the same numbers for scripts).
 *
 * Per workload and config: mean ± stddev, 95 % CI, n, the delta in % against
 * the baseline with "*" when Welch's t-test gives p < 0.05; memory, quality,
 * gates, errors, and the one-line recommendation at the top.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ab/ab_report.h"
#include "base/base.h"

static const char *k_metric_title[3] = {"Generation speed (tokens/s)", "Prompt processing speed (tokens/s)",
                                        "Time to first token (ms)"};

static const ab_summary *cell_sum(const ab_cell *x, int m) { return m == 0 ? &x->tg : m == 1 ? &x->pp : &x->ttft; }

static void cell_delta(const ab_cell *x, int m, double *d, double *pv) {
    *d = m == 0 ? x->d_tg : m == 1 ? x->d_pp : x->d_ttft;
    *pv = m == 0 ? x->p_tg : m == 1 ? x->p_pp : x->p_ttft;
}

/* "+18.2 % *" (star: p < 0.05), "—" for the baseline, "n/a". */
static void fmt_delta(char *buf, size_t n, double d, double pv, bool base) {
    if (base) snprintf(buf, n, "baseline");
    else if (!isfinite(d)) snprintf(buf, n, "n/a");
    else snprintf(buf, n, "%+.1f %%%s", d, pv < 0.05 ? " *" : "");
}

static void fmt_p(char *buf, size_t n, double pv) {
    if (isnan(pv)) snprintf(buf, n, "–");
    else if (pv < 0.001) snprintf(buf, n, "<0.001");
    else snprintf(buf, n, "%.3f", pv);
}

static void fmt_sum(char *buf, size_t n, const ab_summary *s, int prec) {
    if (s->n == 0) snprintf(buf, n, "n/a");
    else snprintf(buf, n, "%.*f ± %.*f", prec, s->mean, prec, s->sd);
}

static void fmt_ci(char *buf, size_t n, const ab_summary *s, int prec) {
    if (s->n < 2) snprintf(buf, n, "n/a");
    else snprintf(buf, n, "[%.*f, %.*f]", prec, s->ci_lo, prec, s->ci_hi);
}

static void fmt_ppl(char *buf, size_t n, double ppl, double se) {
    if (ppl < 1e5) snprintf(buf, n, "%.4f ± %.4f", ppl, se);
    else snprintf(buf, n, "%.4g ± %.3g", ppl, se);
}

static const char *gate_word(int st) { return st == AB_GATE_PASS ? "pass" : st == AB_GATE_FAIL ? "FAIL" : "n/a"; }

static void fmt_bytes_or(char *buf, size_t n, double v, const char *none) {
    if (isfinite(v) && v > 0) mr_fmt_bytes(buf, n, (uint64_t)v);
    else snprintf(buf, n, "%s", none);
}

static const char *envs(const json_t *env, const char *a, const char *b) {
    const char *s = json_string_value(json_object_get(json_object_get(env, a), b));
    return s ? s : "?";
}

/* ---- Markdown ------------------------------------------------------------------------ */
static void write_md(ab_buf *b, const ab_plan *p, const ab_results *r, const ab_aggr *A, const json_t *env,
                     const char *rec) {
    int nc = A->nc, nw = A->nw, base = p->baseline;
    char s1[128], s2[128], s3[64], s4[64];
    ab_printf(b, "# moerun ab: %s\n\n", p->name ? p->name : "A/B evaluation");
    ab_printf(b, "**Recommendation:** %s\n\n", rec);
    ab_printf(b, "- plan hash `%016llx`, %d config(s) x %d workload(s) x %d repetition(s) (+%d warm-up), interleaved\n",
              (unsigned long long)p->hash, nc, nw, p->reps, p->warmup);
    ab_printf(b, "- baseline: **%s**; %d run record(s)\n", p->configs[base].name, r->n);
    ab_printf(b, "- moerun %s, commit `%s`, %s\n", envs(env, "build", "version"), envs(env, "build", "commit"),
              envs(env, "build", "compiler"));
    ab_printf(b, "- machine: %s, %s\n\n", envs(env, "machine", "cpu_model"), envs(env, "machine", "hostname"));

    ab_puts(b, "## Configurations\n\n| config | kind | flags / URL | engine commit |\n|---|---|---|---|\n");
    for (int c = 0; c < nc; c++) {
        const ab_config *cf = &p->configs[c];
        ab_printf(b, "| %s%s | %s | `%s` | %s |\n", cf->name, c == base ? " (baseline)" : "", cf->url ? "endpoint" : "moerun",
                  cf->url ? cf->url : (cf->args[0] ? cf->args : "(defaults)"), A->cfg[c].commit[0] ? A->cfg[c].commit : "–");
    }
    for (int m = 0; m < 3; m++) {
        ab_printf(b, "\n## %s\n\n", k_metric_title[m]);
        ab_printf(b, "| workload | config | n | mean ± sd | 95 %% CI | vs %s | p (Welch) |\n|---|---|---:|---:|---:|---:|---:|\n",
                  p->configs[base].name);
        int prec = m == 2 ? 1 : 2;
        for (int w = 0; w < nw; w++)
            for (int c = 0; c < nc; c++) {
                const ab_cell *x = &A->cell[c * nw + w];
                double d, pv;
                cell_delta(x, m, &d, &pv);
                fmt_sum(s1, sizeof s1, cell_sum(x, m), prec);
                fmt_ci(s2, sizeof s2, cell_sum(x, m), prec);
                fmt_delta(s3, sizeof s3, d, pv, c == base);
                fmt_p(s4, sizeof s4, pv);
                ab_printf(b, "| %s | %s | %d | %s | %s | %s | %s |\n", p->workloads[w].name, p->configs[c].name,
                          cell_sum(x, m)->n, s1, s2, s3, s4);
            }
    }
    ab_puts(b, "\n`*`: the difference to the baseline is significant (Welch's t-test, p < 0.05). For time to first "
               "token lower is better.\n");

    ab_puts(b, "\n## Memory\n\n| config | peak RSS | VRAM | RSS growth (first to last rep, worst workload) |\n|---|---:|---:|---:|\n");
    for (int c = 0; c < nc; c++) {
        fmt_bytes_or(s1, sizeof s1, A->cfg[c].rss, "n/a");
        fmt_bytes_or(s2, sizeof s2, A->cfg[c].vram, "n/a (CPU)");
        double g = ab_aggr_metric(p, A, c, "rss_growth", NULL);
        if (isfinite(g)) snprintf(s3, sizeof s3, "%+.2f %%", g);
        else snprintf(s3, sizeof s3, "n/a");
        ab_printf(b, "| %s | %s | %s | %s |\n", p->configs[c].name, s1, p->configs[c].url ? "n/a (endpoint)" : s2, s3);
    }

    if (p->ppl_file) {
        ab_printf(b, "\n## Quality\n\nPerplexity of `%s` (%d-token chunks, at most %d), KL divergence against %s's "
                     "token distributions.\n\n| config | PPL | vs baseline | KL (mean) |\n|---|---:|---:|---:|\n",
                  p->ppl_file, p->ppl_ctx, p->ppl_chunks, p->configs[base].name);
        for (int c = 0; c < nc; c++) {
            const ab_cfg_aggr *ca = &A->cfg[c];
            if (isfinite(ca->ppl)) fmt_ppl(s1, sizeof s1, ca->ppl, ca->ppl_se);
            else snprintf(s1, sizeof s1, "%s", ca->quality_failed ? "error" : "n/a");
            double d = ab_aggr_metric(p, A, c, "ppl_delta", NULL);
            if (c == base) snprintf(s2, sizeof s2, "baseline");
            else if (isfinite(d)) snprintf(s2, sizeof s2, "%+.2f %%", d);
            else snprintf(s2, sizeof s2, "n/a");
            if (isfinite(ca->kl)) snprintf(s3, sizeof s3, "%.5f", ca->kl);
            else snprintf(s3, sizeof s3, c == base ? "0 (reference)" : "n/a");
            ab_printf(b, "| %s | %s | %s | %s |\n", p->configs[c].name, s1, s2, s3);
        }
    }

    ab_puts(b, "\n## Gates\n\n");
    if (p->n_gates == 0) ab_puts(b, "No gates in the plan.\n");
    else {
        ab_puts(b, "| config | gate | value | result |\n|---|---|---:|---|\n");
        for (int c = 0; c < nc; c++)
            for (int g = 0; g < p->n_gates; g++) {
                int k = c * p->n_gates + g;
                ab_gate_fmt(p->gates[g].metric, A->gate_val[k], s1, sizeof s1);
                ab_printf(b, "| %s | `%s` | %s | %s |\n", p->configs[c].name, p->gates[g].text, s1,
                          gate_word(A->gate_state[k]));
            }
        ab_puts(b, "\nSpeeds are the worst workload's mean unless the gate names one (`tg@short >= 20`); `n/a`: not "
                   "measured in this run (e.g. VRAM on CPU), not counted as a failure.\n");
    }

    int n_err = 0;
    for (int i = 0; i < r->n; i++) n_err += !json_is_true(json_object_get(r->runs[i], "ok"));
    ab_printf(b, "\n## Errors\n\n");
    if (!n_err) ab_puts(b, "None.\n");
    for (int i = 0; i < r->n; i++) {
        const json_t *o = r->runs[i];
        if (json_is_true(json_object_get(o, "ok"))) continue;
        const char *e = json_string_value(json_object_get(o, "error"));
        ab_printf(b, "- `%s`: %s\n", json_string_value(json_object_get(o, "key")), e ? e : "unknown");
    }
}

/* ---- HTML --------------------------------------------------------------------------- */
static void html_table_row(ab_buf *b, const char *const *cells, int n, const char *cls) {
    ab_printf(b, "<tr%s%s%s>", cls ? " class=\"" : "", cls ? cls : "", cls ? "\"" : "");
    for (int i = 0; i < n; i++) {
        ab_puts(b, i == 0 ? "<td class=\"l\">" : "<td>");
        ab_esc(b, cells[i]);
        ab_puts(b, "</td>");
    }
    ab_puts(b, "</tr>\n");
}

static void html_head_row(ab_buf *b, const char *const *cells, int n) {
    ab_puts(b, "<tr>");
    for (int i = 0; i < n; i++) {
        ab_puts(b, "<th>");
        ab_esc(b, cells[i]);
        ab_puts(b, "</th>");
    }
    ab_puts(b, "</tr>\n");
}

static void write_html(ab_buf *b, const ab_plan *p, const ab_results *r, const ab_aggr *A, const json_t *env,
                       const char *rec) {
    int nc = A->nc, nw = A->nw, base = p->baseline;
    char s[8][160];
    const char *cells[8];
    for (int i = 0; i < 8; i++) cells[i] = s[i];
    ab_puts(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>moerun ab: ");
    ab_esc(b, p->name ? p->name : "A/B evaluation");
    ab_puts(b, "</title>\n<style>\n"
               "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1000px}\n"
               "table{border-collapse:collapse;margin:8px 0 18px}th,td{border:1px solid #ccc;padding:3px 8px;"
               "text-align:right;font-size:13px}td.l,th{text-align:left}th{background:#eee}\n"
               ".rec{background:#eef6ee;border-left:5px solid #2ca02c;padding:10px 14px;font-size:15px}\n"
               ".fail{color:#b00;font-weight:bold}.pass{color:#080}.meta{color:#555;font-size:13px}\n"
               "tr.base td{background:#f6f6fb}svg{display:block;margin:8px 0}\n"
               "</style>\n</head>\n<body>\n<h1>moerun ab: ");
    ab_esc(b, p->name ? p->name : "A/B evaluation");
    ab_puts(b, "</h1>\n<p class=\"rec\"><b>Recommendation:</b> ");
    ab_esc(b, rec);
    ab_printf(b, "</p>\n<p class=\"meta\">plan hash %016llx · %d config(s) × %d workload(s) × %d repetition(s) (+%d "
                 "warm-up), interleaved · baseline <b>",
              (unsigned long long)p->hash, nc, nw, p->reps, p->warmup);
    ab_esc(b, p->configs[base].name);
    ab_printf(b, "</b> · %d run record(s)<br/>moerun ", r->n);
    ab_esc(b, envs(env, "build", "version"));
    ab_puts(b, " commit ");
    ab_esc(b, envs(env, "build", "commit"));
    ab_puts(b, " · ");
    ab_esc(b, envs(env, "machine", "cpu_model"));
    ab_puts(b, "</p>\n<h2>Configurations</h2>\n<table>\n");
    const char *hc[] = {"config", "kind", "flags / URL", "engine commit"};
    html_head_row(b, hc, 4);
    for (int c = 0; c < nc; c++) {
        const ab_config *cf = &p->configs[c];
        snprintf(s[0], sizeof s[0], "%s%s", cf->name, c == base ? " (baseline)" : "");
        snprintf(s[1], sizeof s[1], "%s", cf->url ? "endpoint" : "moerun");
        snprintf(s[2], sizeof s[2], "%.150s", cf->url ? cf->url : (cf->args[0] ? cf->args : "(defaults)"));
        snprintf(s[3], sizeof s[3], "%s", A->cfg[c].commit[0] ? A->cfg[c].commit : "–");
        html_table_row(b, cells, 4, c == base ? "base" : NULL);
    }
    ab_puts(b, "</table>\n");
    /* charts + tables per metric */
    const char **gnames = mr_calloc((size_t)nw, sizeof *gnames), **snames = mr_calloc((size_t)nc, sizeof *snames);
    double *vals = mr_calloc((size_t)(nw * nc), sizeof *vals), *errs = mr_calloc((size_t)(nw * nc), sizeof *errs);
    if (!gnames || !snames || !vals || !errs) {
        free(gnames), free(snames), free(vals), free(errs);
        b->oom = true;
        return;
    }
    for (int w = 0; w < nw; w++) gnames[w] = p->workloads[w].name;
    for (int c = 0; c < nc; c++) snames[c] = p->configs[c].name;
    for (int m = 0; m < 3; m++) {
        ab_printf(b, "<h2>%s</h2>\n", k_metric_title[m]);
        for (int w = 0; w < nw; w++)
            for (int c = 0; c < nc; c++) {
                const ab_summary *x = cell_sum(&A->cell[c * nw + w], m);
                vals[w * nc + c] = x->n ? x->mean : NAN;
                errs[w * nc + c] = x->n >= 2 ? x->ci_hi - x->mean : NAN;
            }
        char *svg = ab_svg_bars(k_metric_title[m], m == 2 ? "ms" : "tokens/s", gnames, nw, snames, nc, vals, errs);
        if (svg) ab_puts(b, svg);
        free(svg);
        ab_puts(b, "<table>\n");
        const char *hm[] = {"workload", "config", "n", "mean ± sd", "95 % CI", "vs baseline", "p (Welch)"};
        html_head_row(b, hm, 7);
        int prec = m == 2 ? 1 : 2;
        for (int w = 0; w < nw; w++)
            for (int c = 0; c < nc; c++) {
                const ab_cell *x = &A->cell[c * nw + w];
                double d, pv;
                cell_delta(x, m, &d, &pv);
                snprintf(s[0], sizeof s[0], "%s", p->workloads[w].name);
                snprintf(s[1], sizeof s[1], "%s", p->configs[c].name);
                snprintf(s[2], sizeof s[2], "%d", cell_sum(x, m)->n);
                fmt_sum(s[3], sizeof s[3], cell_sum(x, m), prec);
                fmt_ci(s[4], sizeof s[4], cell_sum(x, m), prec);
                fmt_delta(s[5], sizeof s[5], d, pv, c == base);
                fmt_p(s[6], sizeof s[6], pv);
                html_table_row(b, cells, 7, c == base ? "base" : NULL);
            }
        ab_puts(b, "</table>\n");
    }
    ab_puts(b, "<p class=\"meta\">*: significant difference to the baseline (Welch's t-test, p &lt; 0.05). Error "
               "bars: 95 % confidence interval of the mean.</p>\n");
    /* memory */
    ab_puts(b, "<h2>Memory</h2>\n");
    for (int c = 0; c < nc; c++) vals[c] = A->cfg[c].rss > 0 ? A->cfg[c].rss / 1048576.0 : NAN;
    const char *mg[] = {"peak RSS"};
    char *svg = ab_svg_bars("Peak resident memory per config", "MiB", mg, 1, snames, nc, vals, NULL);
    if (svg) ab_puts(b, svg);
    free(svg);
    ab_puts(b, "<table>\n");
    const char *hmem[] = {"config", "peak RSS", "VRAM", "RSS growth"};
    html_head_row(b, hmem, 4);
    for (int c = 0; c < nc; c++) {
        snprintf(s[0], sizeof s[0], "%s", p->configs[c].name);
        fmt_bytes_or(s[1], sizeof s[1], A->cfg[c].rss, "n/a");
        fmt_bytes_or(s[2], sizeof s[2], A->cfg[c].vram, p->configs[c].url ? "n/a (endpoint)" : "n/a (CPU)");
        double g = ab_aggr_metric(p, A, c, "rss_growth", NULL);
        if (isfinite(g)) snprintf(s[3], sizeof s[3], "%+.2f %%", g);
        else snprintf(s[3], sizeof s[3], "n/a");
        html_table_row(b, cells, 4, c == base ? "base" : NULL);
    }
    ab_puts(b, "</table>\n");
    if (p->ppl_file) {
        ab_puts(b, "<h2>Quality</h2>\n<table>\n");
        const char *hq[] = {"config", "PPL", "vs baseline", "KL (mean)"};
        html_head_row(b, hq, 4);
        for (int c = 0; c < nc; c++) {
            const ab_cfg_aggr *ca = &A->cfg[c];
            snprintf(s[0], sizeof s[0], "%s", p->configs[c].name);
            if (isfinite(ca->ppl)) fmt_ppl(s[1], sizeof s[1], ca->ppl, ca->ppl_se);
            else snprintf(s[1], sizeof s[1], "%s", ca->quality_failed ? "error" : "n/a");
            double d = ab_aggr_metric(p, A, c, "ppl_delta", NULL);
            if (c == base) snprintf(s[2], sizeof s[2], "baseline");
            else if (isfinite(d)) snprintf(s[2], sizeof s[2], "%+.2f %%", d);
            else snprintf(s[2], sizeof s[2], "n/a");
            if (isfinite(ca->kl)) snprintf(s[3], sizeof s[3], "%.5f", ca->kl);
            else snprintf(s[3], sizeof s[3], "%s", c == base ? "reference" : "n/a");
            html_table_row(b, cells, 4, c == base ? "base" : NULL);
        }
        ab_puts(b, "</table>\n");
    }
    ab_puts(b, "<h2>Gates</h2>\n");
    if (!p->n_gates) ab_puts(b, "<p>No gates in the plan.</p>\n");
    else {
        ab_puts(b, "<table>\n");
        const char *hg[] = {"config", "gate", "value", "result"};
        html_head_row(b, hg, 4);
        for (int c = 0; c < nc; c++)
            for (int g = 0; g < p->n_gates; g++) {
                int k = c * p->n_gates + g, st = A->gate_state[k];
                ab_gate_fmt(p->gates[g].metric, A->gate_val[k], s[2], sizeof s[2]);
                ab_puts(b, "<tr><td class=\"l\">");
                ab_esc(b, p->configs[c].name);
                ab_puts(b, "</td><td class=\"l\"><code>");
                ab_esc(b, p->gates[g].text);
                ab_puts(b, "</code></td><td>");
                ab_esc(b, s[2]);
                ab_printf(b, "</td><td class=\"l %s\">%s</td></tr>\n", st == AB_GATE_FAIL ? "fail" : "pass",
                          gate_word(st));
            }
        ab_puts(b, "</table>\n");
    }
    ab_puts(b, "<h2>Errors</h2>\n<ul>\n");
    int n_err = 0;
    for (int i = 0; i < r->n; i++) {
        const json_t *o = r->runs[i];
        if (json_is_true(json_object_get(o, "ok"))) continue;
        n_err++;
        const char *e = json_string_value(json_object_get(o, "error"));
        ab_puts(b, "<li><code>");
        ab_esc(b, json_string_value(json_object_get(o, "key")));
        ab_puts(b, "</code>: ");
        ab_esc(b, e ? e : "unknown");
        ab_puts(b, "</li>\n");
    }
    if (!n_err) ab_puts(b, "<li>None.</li>\n");
    ab_puts(b, "</ul>\n</body>\n</html>\n");
    free(gnames), free(snames), free(vals), free(errs);
}

static json_t *sum_json(const ab_summary *s) {
    if (s->n == 0) return json_null();
    return json_pack("{s:i,s:f,s:f,s:f,s:f}", "n", s->n, "mean", s->mean, "sd", s->sd, "ci_lo", s->ci_lo, "ci_hi",
                     s->ci_hi);
}

static json_t *real_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *summary_json(const ab_plan *p, const ab_aggr *A, const json_t *env, const char *rec) {
    json_t *cfgs = json_array();
    for (int c = 0; c < A->nc; c++) {
        json_t *wl = json_object();
        for (int w = 0; w < A->nw; w++) {
            const ab_cell *x = &A->cell[c * A->nw + w];
            json_object_set_new(wl, p->workloads[w].name,
                                json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:i}", "tg", sum_json(&x->tg), "pp",
                                          sum_json(&x->pp), "ttft_ms", sum_json(&x->ttft), "tg_delta_pct",
                                          real_or_null(x->d_tg), "tg_p", real_or_null(x->p_tg), "pp_delta_pct",
                                          real_or_null(x->d_pp), "pp_p", real_or_null(x->p_pp), "errors", x->errors));
        }
        json_t *gates = json_array();
        for (int g = 0; g < p->n_gates; g++) {
            int k = c * p->n_gates + g;
            json_array_append_new(gates, json_pack("{s:s,s:o,s:s}", "gate", p->gates[g].text, "value",
                                                   real_or_null(A->gate_val[k]), "result",
                                                   gate_word(A->gate_state[k])));
        }
        const ab_cfg_aggr *ca = &A->cfg[c];
        json_array_append_new(cfgs, json_pack("{s:s,s:b,s:o,s:i,s:o,s:o,s:o,s:o,s:o,s:i}", "name", p->configs[c].name,
                                              "baseline", c == p->baseline, "workloads", wl, "errors", ca->errors,
                                              "peak_rss", real_or_null(ca->rss), "vram", real_or_null(ca->vram), "ppl",
                                              real_or_null(ca->ppl), "kl", real_or_null(ca->kl), "gates", gates,
                                              "gates_failed", ca->gates_failed));
    }
    char h[24];
    snprintf(h, sizeof h, "%016llx", (unsigned long long)p->hash);
    return json_pack("{s:s,s:s,s:o,s:O}", "plan_hash", h, "recommendation", rec, "configs", cfgs, "env",
                     env ? (json_t *)env : json_null());
}

static int write_file(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        mr_seterr("cannot write %s", path);
        return -1;
    }
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n;
    ok &= fclose(f) == 0;
    if (!ok) mr_seterr("writing %s failed", path);
    return ok ? 0 : -1;
}

int ab_report_write(const ab_plan *p, const ab_results *r, const char *dir, const json_t *env, ab_report_info *info) {
    ab_aggr A;
    memset(info, 0, sizeof *info);
    if (ab_aggr_build(p, r, &A) < 0) {
        ab_aggr_free(&A);
        return -1;
    }
    ab_recommend(p, &A, info->recommendation, sizeof info->recommendation);
    for (int c = 0; c < A.nc; c++) info->n_gates_failed += A.cfg[c].gates_failed;
    info->baseline_ok = A.cfg[p->baseline].gates_failed == 0;
    ab_buf md = {0}, html = {0};
    write_md(&md, p, r, &A, env, info->recommendation);
    write_html(&html, p, r, &A, env, info->recommendation);
    json_t *sj = summary_json(p, &A, env, info->recommendation);
    char *sjs = sj ? json_dumps(sj, JSON_INDENT(2) | JSON_ENSURE_ASCII) : NULL;
    json_decref(sj);
    char *mds = ab_buf_take(&md), *hs = ab_buf_take(&html);
    int rc = -1;
    if (mds && hs && sjs)
        rc = write_file(dir, "report.md", mds) || write_file(dir, "report.html", hs) ||
                     write_file(dir, "summary.json", sjs)
                 ? -1
                 : 0;
    else if (!mr_geterr()[0]) mr_seterr("out of memory writing the report");
    free(mds);
    free(hs);
    free(sjs);
    ab_aggr_free(&A);
    return rc;
}
