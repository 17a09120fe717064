/*
 * ab_report.h — internal to src/ab: the aggregation of ab run records that
 * the reports and the gate checks share (ab_aggr.c), used by ab_report.c and
 * the unit tests.
 */
#ifndef MR_AB_REPORT_H
#define MR_AB_REPORT_H

#include "ab/ab.h"
#include "bench/bench.h"

enum { AB_GATE_PASS = 1, AB_GATE_FAIL = 2, AB_GATE_NA = 3 };

typedef struct {
    ab_summary tg, pp, ttft;      /* over measured (non-warm-up, ok) runs */
    double d_tg, d_pp, d_ttft;    /* % vs the baseline's mean (NAN when not comparable) */
    double p_tg, p_pp, p_ttft;    /* Welch p vs the baseline (NAN for the baseline itself) */
    int errors, ok_runs;
    int first_rep, last_rep;
    double rss_first, rss_last;   /* peak RSS of the first / last measured repetition */
    char first_error[256];
} ab_cell;

typedef struct {
    int errors, ok_runs;
    double rss, vram;             /* max peak RSS over runs (bytes); VRAM NAN = not measured */
    double ppl, ppl_se, kl;       /* NAN = not measured */
    bool quality_failed;
    int gates_failed, gates_na;
    char commit[48];
} ab_cfg_aggr;

typedef struct {
    int nc, nw;
    ab_cell *cell;      /* [config * nw + workload] */
    ab_cfg_aggr *cfg;
    double *gate_val;   /* [config * n_gates + gate] */
    int *gate_state;
} ab_aggr;

int ab_aggr_build(const ab_plan *p, const ab_results *r, ab_aggr *A);
void ab_aggr_free(ab_aggr *A);
/* A gate metric of config c: speeds are the worst workload's mean (min tg/pp,
 * max ttft), errors the sum, memory the max; wl restricts to one workload. */
double ab_aggr_metric(const ab_plan *p, const ab_aggr *A, int c, const char *m, const char *wl);
/* The one-line recommendation. */
void ab_recommend(const ab_plan *p, const ab_aggr *A, char *out, size_t n);

#endif
