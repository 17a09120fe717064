/*
 * ab_gate.c — gate expressions of `moerun ab` and `moerun soak`:
 * "METRIC[@WORKLOAD] OP VALUE[UNIT]" with OP one of >= <= > < == != and a unit
 * fitting the metric (GB, GiB, MB, ... for memory; ms or s for times; % for
 * relative ones). Values are kept in the metric's base unit: bytes, ms for
 * latencies, s for stalls, % for growth and rates, tokens/s for speeds.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ab/ab.h"
#include "base/base.h"

enum { K_RATE, K_COUNT, K_BYTES, K_MS, K_SEC, K_PCT, K_PLAIN };

typedef struct {
    const char *name;
    int kind;
    bool higher_better;
    const char *help;
} metric;

static const metric k_metrics[] = {
    {"tg", K_RATE, true, "generation tokens/s (ab: worst workload mean; soak: overall)"},
    {"pp", K_RATE, true, "prompt tokens/s"},
    {"ttft", K_MS, false, "time to first token (ms; soak: p95)"},
    {"errors", K_COUNT, false, "failed runs / requests"},
    {"error_rate", K_PCT, false, "failed requests in %"},
    {"rss", K_BYTES, false, "peak resident memory"},
    {"vram", K_BYTES, false, "peak GPU memory"},
    {"rss_growth", K_PCT, false, "RSS growth after warm-up in %"},
    {"ppl", K_PLAIN, false, "perplexity"},
    {"ppl_delta", K_PCT, false, "perplexity change vs the baseline in %"},
    {"kl", K_PLAIN, false, "mean KL divergence vs the baseline"},
    {"p50", K_MS, false, "median request latency (ms)"},
    {"p95", K_MS, false, "95th percentile latency (ms)"},
    {"p99", K_MS, false, "99th percentile latency (ms)"},
    {"stall", K_SEC, false, "longest time without progress (s)"},
    {"requests", K_COUNT, true, "completed requests"},
};

static const metric *find_metric(const char *m) {
    for (size_t i = 0; i < MR_ARRAY_LEN(k_metrics); i++)
        if (!strcmp(k_metrics[i].name, m)) return &k_metrics[i];
    return NULL;
}

bool ab_gate_metric_known(const char *m) { return find_metric(m) != NULL; }

bool ab_gate_higher_better(const char *m) {
    const metric *x = find_metric(m);
    return x && x->higher_better;
}

const char *ab_gate_metrics_help(void) {
    return "tg pp ttft errors error_rate rss vram rss_growth ppl ppl_delta kl p50 p95 p99 stall requests";
}

/* Multiplier of a unit suffix for a metric kind; 0 when it does not fit. */
static double unit_mult(int kind, const char *u) {
    if (!*u) return 1;
    if (kind == K_BYTES) {
        static const struct {
            const char *u;
            double m;
        } t[] = {{"B", 1},           {"KB", 1e3},           {"MB", 1e6},           {"GB", 1e9},
                 {"TB", 1e12},       {"KiB", 1024.0},       {"MiB", 1048576.0},    {"GiB", 1073741824.0},
                 {"TiB", 1099511627776.0}, {"K", 1024.0},   {"M", 1048576.0},      {"G", 1073741824.0}};
        for (size_t i = 0; i < MR_ARRAY_LEN(t); i++)
            if (!strcmp(u, t[i].u)) return t[i].m;
        return 0;
    }
    if (kind == K_MS) return !strcmp(u, "ms") ? 1 : !strcmp(u, "s") ? 1000 : 0;
    if (kind == K_SEC) return !strcmp(u, "s") ? 1 : !strcmp(u, "ms") ? 1e-3 : !strcmp(u, "min") ? 60 : 0;
    if (kind == K_PCT) return !strcmp(u, "%") ? 1 : 0;
    if (kind == K_RATE) return !strcmp(u, "t/s") || !strcmp(u, "tok/s") ? 1 : 0;
    return 0;
}

int ab_gate_parse(const char *s, ab_gate *g) {
    memset(g, 0, sizeof *g);
    const char *p = s;
    while (isspace((unsigned char)*p)) p++;
    size_t k = 0;
    while (isalnum((unsigned char)p[k]) || p[k] == '_') k++;
    if (k == 0 || k >= sizeof g->metric) {
        mr_seterr("gate \"%s\": expected METRIC OP VALUE, e.g. \"tg >= 20\" (metrics: %s)", s,
                  ab_gate_metrics_help());
        return -1;
    }
    memcpy(g->metric, p, k);
    g->metric[k] = 0;
    p += k;
    const metric *m = find_metric(g->metric);
    if (!m) {
        mr_seterr("gate \"%s\": unknown metric '%s' (known: %s)", s, g->metric, ab_gate_metrics_help());
        return -1;
    }
    if (*p == '@') {
        p++;
        k = 0;
        while (p[k] && !isspace((unsigned char)p[k]) && !strchr("<>=!", p[k])) k++;
        if (k == 0 || k >= sizeof g->workload) {
            mr_seterr("gate \"%s\": expected a workload name after '@'", s);
            return -1;
        }
        memcpy(g->workload, p, k);
        g->workload[k] = 0;
        p += k;
    }
    while (isspace((unsigned char)*p)) p++;
    static const char *ops[] = {">=", "<=", "==", "!=", ">", "<"};
    size_t oi;
    for (oi = 0; oi < MR_ARRAY_LEN(ops); oi++)
        if (!strncmp(p, ops[oi], strlen(ops[oi]))) break;
    if (oi == MR_ARRAY_LEN(ops)) {
        mr_seterr("gate \"%s\": expected a comparison (>=, <=, >, <, ==, !=) after '%s'", s, g->metric);
        return -1;
    }
    snprintf(g->op, sizeof g->op, "%s", ops[oi]);
    p += strlen(ops[oi]);
    while (isspace((unsigned char)*p)) p++;
    char *end;
    double v = strtod(p, &end);
    if (end == p || !isfinite(v)) {
        mr_seterr("gate \"%s\": expected a number after '%s'", s, g->op);
        return -1;
    }
    p = end;
    while (isspace((unsigned char)*p)) p++;
    char unit[16];
    k = strlen(p);
    while (k > 0 && isspace((unsigned char)p[k - 1])) k--;
    if (k >= sizeof unit) {
        mr_seterr("gate \"%s\": unexpected text after the value", s);
        return -1;
    }
    memcpy(unit, p, k);
    unit[k] = 0;
    double mult = unit_mult(m->kind, unit);
    if (mult == 0) {
        static const char *units[] = {"t/s", "none", "B KB MB GB TB KiB MiB GiB TiB", "ms s", "s ms min", "%", "none"};
        mr_seterr("gate \"%s\": unit '%s' does not fit metric '%s' (units: %s)", s, unit, g->metric, units[m->kind]);
        return -1;
    }
    g->value = v * mult;
    if (!isfinite(g->value)) {
        mr_seterr("gate \"%s\": the value is out of range", s);
        return -1;
    }
    g->text = mr_strdup(s);
    return g->text ? 0 : -1;
}

void ab_gate_free(ab_gate *g) {
    free(g->text);
    g->text = NULL;
}

bool ab_gate_check(const ab_gate *g, double v) {
    if (isnan(v)) return false;
    const char *o = g->op;
    if (!strcmp(o, ">=")) return v >= g->value;
    if (!strcmp(o, "<=")) return v <= g->value;
    if (!strcmp(o, ">")) return v > g->value;
    if (!strcmp(o, "<")) return v < g->value;
    if (!strcmp(o, "==")) return v == g->value;
    return v != g->value;
}

void ab_gate_fmt(const char *name, double v, char *buf, size_t n) {
    const metric *m = find_metric(name);
    if (isnan(v)) {
        snprintf(buf, n, "n/a");
        return;
    }
    switch (m ? m->kind : K_PLAIN) {
    case K_RATE: snprintf(buf, n, "%.2f t/s", v); break;
    case K_COUNT: snprintf(buf, n, "%.0f", v); break;
    case K_BYTES: mr_fmt_bytes(buf, n, v < 0 ? 0 : v >= 0x1p64 ? UINT64_MAX : (uint64_t)v); break; /* no UB cast */
    case K_MS: snprintf(buf, n, "%.1f ms", v); break;
    case K_SEC: snprintf(buf, n, "%.1f s", v); break;
    case K_PCT: snprintf(buf, n, "%+.2f %%", v); break;
    default: snprintf(buf, n, "%.4g", v);
    }
}
