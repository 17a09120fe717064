/*
 * ab_aggr.c — aggregation of `moerun ab` run records: per config x workload
 * summaries of generation / prompt speed and time to first token, errors,
 * memory, quality; the Welch comparison against the baseline; the gate
 * values of each config; and the one-line recommendation.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ab/ab_report.h"
#include "base/base.h"

static double num(const json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static void push(double **a, int *n, double v) {
    double *x = realloc(*a, sizeof *x * (size_t)(*n + 1));
    if (!x) return;
    x[*n] = v;
    *a = x;
    (*n)++;
}

int ab_aggr_build(const ab_plan *p, const ab_results *r, ab_aggr *A) {
    memset(A, 0, sizeof *A);
    int nc = p->n_configs, nw = p->n_workloads;
    A->nc = nc;
    A->nw = nw;
    A->cell = mr_calloc((size_t)(nc * nw), sizeof *A->cell);
    A->cfg = mr_calloc((size_t)nc, sizeof *A->cfg);
    if (!A->cell || !A->cfg) return -1;
    for (int c = 0; c < nc; c++) {
        A->cfg[c].ppl = A->cfg[c].ppl_se = A->cfg[c].kl = NAN;
        A->cfg[c].vram = NAN;
    }
    double **tg = mr_calloc((size_t)(nc * nw), sizeof *tg), **pp = mr_calloc((size_t)(nc * nw), sizeof *pp),
           **tt = mr_calloc((size_t)(nc * nw), sizeof *tt);
    int *ntg = mr_calloc((size_t)(nc * nw), sizeof *ntg), *npp = mr_calloc((size_t)(nc * nw), sizeof *npp),
        *ntt = mr_calloc((size_t)(nc * nw), sizeof *ntt);
    if (!tg || !pp || !tt || !ntg || !npp || !ntt) {
        free(tg), free(pp), free(tt), free(ntg), free(npp), free(ntt);
        return -1;
    }
    for (int i = 0; i < nc * nw; i++) {
        A->cell[i].rss_first = A->cell[i].rss_last = NAN;
        A->cell[i].first_rep = A->cell[i].last_rep = -1;
    }
    for (int i = 0; i < r->n; i++) {
        const json_t *o = r->runs[i];
        const char *cn = json_string_value(json_object_get(o, "config"));
        const char *wn = json_string_value(json_object_get(o, "workload"));
        int c = cn ? ab_plan_find_config(p, cn) : -1;
        if (c < 0 || !wn) continue;
        ab_cfg_aggr *ca = &A->cfg[c];
        const char *commit = json_string_value(json_object_get(o, "commit"));
        if (commit && !ca->commit[0]) snprintf(ca->commit, sizeof ca->commit, "%s", commit);
        bool ok = json_is_true(json_object_get(o, "ok"));
        if (!strcmp(wn, "_quality")) {
            if (ok) {
                ca->ppl = num(o, "ppl");
                ca->ppl_se = num(o, "ppl_se");
                ca->kl = num(o, "kl");
            } else {
                ca->errors++;
                ca->quality_failed = true;
            }
            continue;
        }
        int w = ab_plan_find_workload(p, wn);
        if (w < 0) continue;
        ab_cell *cell = &A->cell[c * nw + w];
        bool warm = json_is_true(json_object_get(o, "warmup"));
        double rss = num(o, "peak_rss"), vram = num(o, "vram");
        if (isfinite(rss)) ca->rss = MR_MAX(ca->rss, rss);
        if (isfinite(vram)) ca->vram = isnan(ca->vram) ? vram : MR_MAX(ca->vram, vram);
        if (!ok) {
            cell->errors++;
            ca->errors++;
            if (!cell->first_error[0]) {
                const char *e = json_string_value(json_object_get(o, "error"));
                snprintf(cell->first_error, sizeof cell->first_error, "%s", e ? e : "unknown error");
            }
            continue;
        }
        if (warm) continue;
        int rep = (int)num(o, "rep");
        if (isfinite(rss)) {
            if (cell->first_rep < 0 || rep < cell->first_rep) cell->first_rep = rep, cell->rss_first = rss;
            if (rep > cell->last_rep) cell->last_rep = rep, cell->rss_last = rss;
        }
        int k = c * nw + w;
        double v;
        if (isfinite(v = num(o, "tg_tps")) && v > 0) push(&tg[k], &ntg[k], v);
        if (isfinite(v = num(o, "pp_tps")) && v > 0) push(&pp[k], &npp[k], v);
        if (isfinite(v = num(o, "ttft_ms"))) push(&tt[k], &ntt[k], v);
        cell->ok_runs++;
        ca->ok_runs++;
    }
    for (int k = 0; k < nc * nw; k++) {
        ab_summarize(tg[k], ntg[k], &A->cell[k].tg);
        ab_summarize(pp[k], npp[k], &A->cell[k].pp);
        ab_summarize(tt[k], ntt[k], &A->cell[k].ttft);
        free(tg[k]), free(pp[k]), free(tt[k]);
    }
    free(tg), free(pp), free(tt), free(ntg), free(npp), free(ntt);
    /* comparison with the baseline */
    int b = p->baseline;
    for (int c = 0; c < nc; c++)
        for (int w = 0; w < nw; w++) {
            ab_cell *x = &A->cell[c * nw + w], *y = &A->cell[b * nw + w];
            double t, df, ratio;
            bench_compare_vals(y->tg.mean, x->tg.mean, &ratio, &x->d_tg);
            bench_compare_vals(y->pp.mean, x->pp.mean, &ratio, &x->d_pp);
            bench_compare_vals(y->ttft.mean, x->ttft.mean, &ratio, &x->d_ttft);
            ab_welch(&y->tg, &x->tg, &t, &df, &x->p_tg);
            ab_welch(&y->pp, &x->pp, &t, &df, &x->p_pp);
            ab_welch(&y->ttft, &x->ttft, &t, &df, &x->p_ttft);
            if (c == b) x->p_tg = x->p_pp = x->p_ttft = NAN;
        }
    /* gates */
    A->gate_val = mr_calloc((size_t)(nc * MR_MAX(p->n_gates, 1)), sizeof *A->gate_val);
    A->gate_state = mr_calloc((size_t)(nc * MR_MAX(p->n_gates, 1)), sizeof *A->gate_state);
    if (!A->gate_val || !A->gate_state) return -1;
    for (int c = 0; c < nc; c++)
        for (int g = 0; g < p->n_gates; g++) {
            double v = ab_aggr_metric(p, A, c, p->gates[g].metric, p->gates[g].workload);
            int k = c * p->n_gates + g;
            A->gate_val[k] = v;
            bool speed = !strcmp(p->gates[g].metric, "tg") || !strcmp(p->gates[g].metric, "pp") ||
                         !strcmp(p->gates[g].metric, "ttft");
            if (isnan(v)) A->gate_state[k] = speed ? AB_GATE_FAIL : AB_GATE_NA;
            else A->gate_state[k] = ab_gate_check(&p->gates[g], v) ? AB_GATE_PASS : AB_GATE_FAIL;
            if (A->gate_state[k] == AB_GATE_FAIL) A->cfg[c].gates_failed++;
            if (A->gate_state[k] == AB_GATE_NA) A->cfg[c].gates_na++;
        }
    return 0;
}

double ab_aggr_metric(const ab_plan *p, const ab_aggr *A, int c, const char *m, const char *wl) {
    int nw = A->nw, w0 = 0, w1 = nw;
    if (wl && wl[0]) {
        w0 = ab_plan_find_workload(p, wl);
        if (w0 < 0) return NAN;
        w1 = w0 + 1;
    }
    const ab_cfg_aggr *ca = &A->cfg[c];
    double v = NAN;
    for (int w = w0; w < w1; w++) {
        const ab_cell *x = &A->cell[c * nw + w];
        double y = NAN;
        bool take_min = false;
        if (!strcmp(m, "tg")) y = x->tg.n ? x->tg.mean : NAN, take_min = true;
        else if (!strcmp(m, "pp")) y = x->pp.n ? x->pp.mean : NAN, take_min = true;
        else if (!strcmp(m, "ttft")) y = x->ttft.n ? x->ttft.mean : NAN;
        else if (!strcmp(m, "errors")) y = x->errors;
        else if (!strcmp(m, "rss_growth"))
            y = x->last_rep > x->first_rep && x->rss_first > 0 ? (x->rss_last / x->rss_first - 1) * 100 : NAN;
        else break;
        if (isnan(y)) {
            if (take_min || !strcmp(m, "ttft")) return NAN; /* a workload without a measurement */
            continue;
        }
        if (!strcmp(m, "errors")) v = isnan(v) ? y : v + y;
        else if (isnan(v)) v = y;
        else v = take_min ? MR_MIN(v, y) : MR_MAX(v, y);
    }
    if (!strcmp(m, "errors") && !(wl && wl[0])) return ca->errors;
    if (!strcmp(m, "rss")) return ca->rss > 0 ? ca->rss : NAN;
    if (!strcmp(m, "vram")) return ca->vram;
    if (!strcmp(m, "ppl")) return ca->ppl;
    if (!strcmp(m, "kl")) return ca->kl;
    if (!strcmp(m, "ppl_delta")) {
        double base = A->cfg[p->baseline].ppl, d = NAN, r;
        bench_compare_vals(base, ca->ppl, &r, &d);
        return d;
    }
    return v;
}

void ab_aggr_free(ab_aggr *A) {
    free(A->cell);
    free(A->cfg);
    free(A->gate_val);
    free(A->gate_state);
    memset(A, 0, sizeof *A);
}

/* Mean of the per-workload deltas (finite ones) and how many workloads are
 * significantly better / worse. */
static double mean_delta(const ab_aggr *A, int c, int which, int *n_better, int *n_worse) {
    double s = 0;
    int n = 0;
    *n_better = *n_worse = 0;
    for (int w = 0; w < A->nw; w++) {
        const ab_cell *x = &A->cell[c * A->nw + w];
        double d = which ? x->d_pp : x->d_tg, pv = which ? x->p_pp : x->p_tg;
        if (!isfinite(d)) continue;
        s += d;
        n++;
        if (pv < 0.05 && d > 0) (*n_better)++;
        if (pv < 0.05 && d < 0) (*n_worse)++;
    }
    return n ? s / n : NAN;
}

void ab_recommend(const ab_plan *p, const ab_aggr *A, char *out, size_t n) {
    int b = p->baseline, best = -1;
    double best_d = -INFINITY;
    const char *bn = p->configs[b].name;
    for (int c = 0; c < A->nc; c++) {
        if (c == b || A->cfg[c].gates_failed || A->cfg[c].ok_runs == 0) continue;
        int nb, nwo;
        double d = mean_delta(A, c, 0, &nb, &nwo);
        double pd = ab_aggr_metric(p, A, c, "ppl_delta", NULL);
        if (isfinite(pd) && pd > 1.0) continue; /* quality loss */
        if (!isfinite(d) || nb == 0 || nwo > 0) continue;
        if (d > best_d) best_d = d, best = c;
    }
    char q[160] = "quality not measured";
    if (best < 0) {
        /* explain why the baseline stays */
        int cand = -1;
        double cd = -INFINITY;
        for (int c = 0; c < A->nc; c++) {
            if (c == b) continue;
            int nb, nwo;
            double d = mean_delta(A, c, 0, &nb, &nwo);
            if (isfinite(d) && d > cd) cd = d, cand = c;
        }
        if (A->nc == 1)
            snprintf(out, n, "Only one config (%s): %s.", bn,
                     A->cfg[b].gates_failed ? "it fails gates" : "all gates pass");
        else if (cand >= 0)
            snprintf(out, n, "Keep %s: no config is significantly faster on generation with all gates passing and "
                             "no quality loss (closest: %s %+.1f %%%s)%s.",
                     bn, p->configs[cand].name, cd, A->cfg[cand].gates_failed ? ", fails gates" : "",
                     A->cfg[b].gates_failed ? "; note the baseline itself fails gates" : "");
        else snprintf(out, n, "Keep %s: the other configs produced no comparable measurements.", bn);
        return;
    }
    int nb, nwo, pb, pwo;
    mean_delta(A, best, 0, &nb, &nwo);
    double dpp = mean_delta(A, best, 1, &pb, &pwo);
    double pd = ab_aggr_metric(p, A, best, "ppl_delta", NULL), kl = A->cfg[best].kl;
    if (isfinite(pd)) {
        if (isfinite(kl)) snprintf(q, sizeof q, "no quality loss (PPL %+.2f %%, KL %.4f)", pd, kl);
        else snprintf(q, sizeof q, "no quality loss (PPL %+.2f %%)", pd);
    }
    char mem[96] = "";
    double rb = A->cfg[b].rss, rc = A->cfg[best].rss, r, dm;
    bench_compare_vals(rb, rc, &r, &dm);
    if (isfinite(dm) && fabs(dm) >= 1) snprintf(mem, sizeof mem, ", %s memory (%+.0f %% RSS)", dm < 0 ? "less" : "more", dm);
    snprintf(out, n, "%s is %.0f %% faster on generation than %s (significant on %d/%d workloads), prompt %+.0f %%%s, "
                     "%s, %s.",
             p->configs[best].name, best_d, bn, nb, A->nw, isfinite(dpp) ? dpp : 0.0, mem, q,
             p->n_gates ? (A->cfg[best].gates_na ? "all measured gates pass" : "all gates pass") : "no gates set");
}
