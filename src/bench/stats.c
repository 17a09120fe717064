/*
 * stats.c — the arithmetic of the benches: mean, sample standard deviation, percentiles,
 * comparison ratios, "nice" axis ticks for the charts, and the fixed
 * pseudo-random token ids the timed loops feed.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"

/* Arithmetic mean of x[0..n); 0 for an empty set. */
double bench_mean(const double *x, int n) {
    if (n <= 0) return 0.0;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += x[i];
    return s / n;
}

/* Sample standard deviation (divides by n-1, as llama-bench); 0 when n < 2.
 * Two-pass for accuracy. */
double bench_stddev(const double *x, int n) {
    if (n < 2) return 0.0;
    double m = bench_mean(x, n), s = 0.0;
    for (int i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
    return sqrt(s / (n - 1));
}

static int cmp_dbl(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentile (0..100) by linear interpolation of the sorted copy; NAN if n <= 0 or out of memory. */
double bench_percentile(const double *x, int n, double pct) {
    if (n <= 0) return NAN;
    double *s = malloc(sizeof *s * (size_t)n);
    if (!s) return NAN;
    memcpy(s, x, sizeof *s * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_dbl);
    double r = pct / 100 * (n - 1);
    if (r < 0) r = 0;
    if (r > n - 1) r = n - 1;
    const int i = (int)floor(r);
    const double f = r - i, v = i + 1 < n ? s[i] + f * (s[i + 1] - s[i]) : s[i];
    free(s);
    return v;
}

/* ratio = b / a and delta % = (b / a - 1) * 100; NAN for a non-positive or
 * non-finite baseline. */
void bench_compare_vals(double a, double b, double *ratio, double *delta_pct) {
    if (!(a > 0.0) || !isfinite(a) || !isfinite(b)) {
        *ratio = NAN;
        *delta_pct = NAN;
        return;
    }
    *ratio = b / a;
    *delta_pct = (b / a - 1.0) * 100.0;
}

/* Ticks at multiples of 1, 2, 2.5 or 5 x 10^k, from the first multiple >= lo to
 * the last <= hi (with a small tolerance). Degenerate ranges get a unit step. */
int bench_nice_ticks(double lo, double hi, int n_target, double *first, double *step, int cap) {
    if (n_target < 1) n_target = 1;
    if (!(hi > lo)) hi = lo + 1.0;
    double raw = (hi - lo) / n_target;
    double mag = pow(10.0, floor(log10(raw)));
    double r = raw / mag, st;
    if (r <= 1.0) st = 1.0;
    else if (r <= 2.0) st = 2.0;
    else if (r <= 2.5) st = 2.5;
    else if (r <= 5.0) st = 5.0;
    else st = 10.0;
    st *= mag;
    double f = ceil(lo / st - 1e-9) * st + 0.0; /* + 0.0: no "-0" */
    if (f == 0) f = 0;
    int n = 0;
    while (n < cap && f + st * n <= hi + st * 1e-9) n++;
    *first = f;
    *step = st;
    return n;
}

/* xorshift64 from a fixed seed: the same ids on every run, spread over the vocab. */
void bench_random_tokens(mr_token *out, int n, int n_vocab, uint64_t seed) {
    uint64_t x = seed ? seed : 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[i] = n_vocab > 0 ? (mr_token)(x % (uint64_t)n_vocab) : 0;
    }
}
