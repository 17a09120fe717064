/*
 * ab_stats.c — the statistics of `moerun ab` and `moerun soak`: summaries
 * (mean, sample stddev, 95 % t confidence interval), Welch's unequal-variance
 * t-test, Student-t tail and quantile through the regularized incomplete
 * beta function (continued fraction, Numerical Recipes' betacf), percentiles.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ab/ab.h"
#include "base/base.h"
#include "bench/bench.h"

/* Continued fraction of the incomplete beta (modified Lentz). */
static double betacf(double a, double b, double x) {
    const double eps = 1e-15, fpmin = 1e-300;
    double qab = a + b, qap = a + 1, qam = a - 1, c = 1, d = 1 - qab * x / qap;
    if (fabs(d) < fpmin) d = fpmin;
    d = 1 / d;
    double h = d;
    for (int m = 1; m <= 10000; m++) {
        int m2 = 2 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1 + aa * d;
        if (fabs(d) < fpmin) d = fpmin;
        c = 1 + aa / c;
        if (fabs(c) < fpmin) c = fpmin;
        d = 1 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1 + aa * d;
        if (fabs(d) < fpmin) d = fpmin;
        c = 1 + aa / c;
        if (fabs(c) < fpmin) c = fpmin;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < eps) break;
    }
    return h;
}

/* I_x(a, b) for a, b > 0 and x in [0, 1]; NAN outside. */
double ab_betai(double a, double b, double x) {
    if (!(a > 0) || !(b > 0) || !(x >= 0) || !(x <= 1)) return NAN;
    if (x == 0 || x == 1) return x;
    double lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    double bt = exp(lbt);
    if (x < (a + 1) / (a + b + 2)) return bt * betacf(a, b, x) / a;
    return 1 - bt * betacf(b, a, 1 - x) / b;
}

/* P(|T| > |t|) = I_{df/(df+t^2)}(df/2, 1/2). */
double ab_t_two_sided_p(double t, double df) {
    if (!isfinite(df) || !(df > 0)) return NAN;
    if (isnan(t)) return NAN;
    if (isinf(t)) return 0;
    return ab_betai(df / 2, 0.5, df / (df + t * t));
}

/* Bisection on the CDF: P(T <= x) = 1 - p/2 for x > 0. */
double ab_t_quantile(double q, double df) {
    if (!(q > 0 && q < 1) || !(df > 0)) return NAN;
    if (q == 0.5) return 0;
    bool neg = q < 0.5;
    double tail = neg ? q : 1 - q; /* one-sided upper tail wanted */
    double lo = 0, hi = 1;
    while (ab_t_two_sided_p(hi, df) / 2 > tail && hi < 1e12) hi *= 2;
    for (int i = 0; i < 200; i++) {
        double mid = (lo + hi) / 2;
        if (ab_t_two_sided_p(mid, df) / 2 > tail) lo = mid;
        else hi = mid;
        if (hi - lo < 1e-12 * hi) break;
    }
    double x = (lo + hi) / 2;
    return neg ? -x : x;
}

void ab_summarize(const double *x, int n, ab_summary *s) {
    memset(s, 0, sizeof *s);
    s->n = n;
    if (n <= 0) {
        s->mean = s->sd = s->ci_lo = s->ci_hi = s->min = s->max = NAN;
        return;
    }
    s->mean = bench_mean(x, n);
    s->sd = bench_stddev(x, n);
    s->min = s->max = x[0];
    for (int i = 1; i < n; i++) {
        s->min = MR_MIN(s->min, x[i]);
        s->max = MR_MAX(s->max, x[i]);
    }
    if (n < 2) {
        s->ci_lo = s->ci_hi = s->mean;
        return;
    }
    double h = ab_t_quantile(0.975, n - 1) * s->sd / sqrt((double)n);
    s->ci_lo = s->mean - h;
    s->ci_hi = s->mean + h;
}

void ab_welch(const ab_summary *a, const ab_summary *b, double *t, double *df, double *p) {
    *t = *df = *p = NAN;
    if (a->n < 2 || b->n < 2) return;
    double va = a->sd * a->sd / a->n, vb = b->sd * b->sd / b->n, se2 = va + vb;
    if (!(se2 > 0)) {
        *t = a->mean == b->mean ? 0 : (b->mean > a->mean ? INFINITY : -INFINITY);
        *df = a->n + b->n - 2;
        *p = a->mean == b->mean ? 1 : 0;
        return;
    }
    *t = (b->mean - a->mean) / sqrt(se2);
    *df = se2 * se2 / (va * va / (a->n - 1) + vb * vb / (b->n - 1));
    *p = ab_t_two_sided_p(*t, *df);
}

double ab_percentile(const double *x, int n, double pct) { return bench_percentile(x, n, pct); }
