/*
 * ab_svg.c — the charts of the ab and soak reports, as plain SVG 1.1 text
 * (no scripts, no external references) to inline in report.html or save as
 * .svg: a grouped bar chart with error bars (one group per workload, one bar
 * per config) and a line chart over time (soak throughput and memory).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ab/ab.h"
#include "base/base.h"
#include "bench/bench.h"

static const char *k_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

/* Tick label with as many decimals as the step needs. */
static void tick_label(char *buf, size_t n, double v, double step) {
    if (fabs(v) < step * 1e-6) snprintf(buf, n, "0");
    else if (step >= 1) snprintf(buf, n, "%.0f", v);
    else {
        int d = (int)ceil(-log10(step) - 1e-9);
        if (d > 6) d = 6;
        snprintf(buf, n, "%.*f", d, v);
    }
}

static void header(ab_buf *b, double W, double H, const char *title) {
    ab_printf(b,
              "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" height=\"%.0f\" "
              "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n",
              W, H, W, H);
    ab_puts(b, "<title>");
    ab_esc(b, title);
    ab_puts(b, "</title>\n<rect width=\"100%\" height=\"100%\" fill=\"#fafafa\"/>\n");
    ab_printf(b, "<text x=\"%.1f\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">", W / 2);
    ab_esc(b, title);
    ab_puts(b, "</text>\n");
}

static void legend(ab_buf *b, double x, double y, const char *const *labels, int n) {
    ab_puts(b, "<g class=\"legend\">\n");
    for (int s = 0; s < n; s++) {
        const char *col = k_colors[s % MR_ARRAY_LEN(k_colors)];
        ab_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"10\" fill=\"%s\"/>\n", x, y - 9, col);
        ab_printf(b, "<text x=\"%.1f\" y=\"%.1f\">", x + 19, y);
        char l[64];
        snprintf(l, sizeof l, "%s", labels[s]);
        ab_esc(b, l);
        ab_puts(b, "</text>\n");
        x += 34 + 7.0 * (double)strlen(l);
    }
    ab_puts(b, "</g>\n");
}

/* Y axis: grid, ticks and labels for [0, ymax]; returns the axis top value. */
static double y_axis(ab_buf *b, double x0, double y0, double w, double h, double ymax, const char *ylabel) {
    if (!(ymax > 0) || !isfinite(ymax)) ymax = 1;
    double first, step;
    int ny = bench_nice_ticks(0, ymax * 1.08, 5, &first, &step, 32);
    double top = MR_MAX(ymax * 1.1, first + step * (ny - 1));
    for (int i = 0; i < ny; i++) {
        double v = first + step * i, y = y0 + h - v / top * h;
        char lab[48];
        tick_label(lab, sizeof lab, v, step);
        ab_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n", x0, y, x0 + w, y);
        ab_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" dominant-baseline=\"middle\">%s</text>\n", x0 - 6,
                  y, lab);
    }
    ab_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444444\"/>\n", x0, y0,
              w, h);
    double cy = y0 + h / 2;
    ab_printf(b, "<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.1f)\">", cy, cy);
    ab_esc(b, ylabel);
    ab_puts(b, "</text>\n");
    return top;
}

char *ab_svg_bars(const char *title, const char *ylabel, const char *const *groups, int n_groups,
                  const char *const *series, int n_series, const double *values, const double *err) {
    const double W = 900, H = 400, left = 80, right = 20, top = 62, bottom = 60;
    ab_buf b = {0};
    header(&b, W, H, title);
    legend(&b, left, 46, series, n_series);
    double ymax = 0;
    for (int i = 0; i < n_groups * n_series; i++) {
        double v = values[i], e = err && isfinite(err[i]) ? err[i] : 0;
        if (isfinite(v)) ymax = MR_MAX(ymax, v + e);
    }
    double x0 = left, y0 = top, w = W - left - right, h = H - top - bottom;
    double ytop = y_axis(&b, x0, y0, w, h, ymax, ylabel);
    double gw = w / MR_MAX(n_groups, 1), bw = gw * 0.8 / MR_MAX(n_series, 1);
    for (int g = 0; g < n_groups; g++) {
        double gx = x0 + g * gw + gw * 0.1;
        ab_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", x0 + g * gw + gw / 2, y0 + h + 20);
        ab_esc(&b, groups[g]);
        ab_puts(&b, "</text>\n");
        for (int s = 0; s < n_series; s++) {
            double v = values[g * n_series + s];
            if (!isfinite(v)) continue;
            double e = err && isfinite(err[g * n_series + s]) ? err[g * n_series + s] : 0;
            double x = gx + s * bw, y = y0 + h - v / ytop * h;
            const char *col = k_colors[s % MR_ARRAY_LEN(k_colors)];
            ab_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>", x + 1, y,
                      MR_MAX(bw - 2, 1), y0 + h - y, col);
            ab_esc(&b, series[s]);
            ab_printf(&b, " / ");
            ab_esc(&b, groups[g]);
            ab_printf(&b, ": %.3g ± %.2g</title></rect>\n", v, e);
            if (e > 0) {
                double cx = x + bw / 2, ylo = y0 + h - MR_MAX(v - e, 0) / ytop * h, yhi = y0 + h - (v + e) / ytop * h;
                ab_printf(&b,
                          "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" stroke=\"#222222\" "
                          "stroke-width=\"1.2\" fill=\"none\"/>\n",
                          cx, ylo, yhi, cx - 4, yhi, cx + 4, cx - 4, ylo, cx + 4);
            }
            if (bw >= 28)
                ab_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"10\">%.*f</text>\n",
                          x + bw / 2, y0 + h - (v + e) / ytop * h - 4, fabs(v) >= 100 ? 0 : fabs(v) >= 10 ? 1 : 2, v);
        }
    }
    if (err)
        ab_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"10\" fill=\"#555555\">"
                      "error bars: 95 %% confidence interval of the mean</text>\n",
                  W - right, H - 12);
    ab_puts(&b, "</svg>\n");
    return ab_buf_take(&b);
}

char *ab_svg_lines(const char *title, const char *xlabel, const char *ylabel, const double *x, int n,
                   const char *const *labels, const double *y, int n_lines) {
    const double W = 900, H = 340, left = 80, right = 20, top = 62, bottom = 52;
    ab_buf b = {0};
    header(&b, W, H, title);
    legend(&b, left, 46, labels, n_lines);
    double ymax = 0, xmin = INFINITY, xmax = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (isfinite(x[i])) xmin = MR_MIN(xmin, x[i]), xmax = MR_MAX(xmax, x[i]);
        for (int l = 0; l < n_lines; l++)
            if (isfinite(y[l * n + i])) ymax = MR_MAX(ymax, y[l * n + i]);
    }
    if (!isfinite(xmin)) xmin = 0, xmax = 1;
    if (xmax <= xmin) xmax = xmin + 1;
    double x0 = left, y0 = top, w = W - left - right, h = H - top - bottom;
    double ytop = y_axis(&b, x0, y0, w, h, ymax, ylabel);
    double first, step;
    int nx = bench_nice_ticks(xmin, xmax, 8, &first, &step, 32);
    for (int i = 0; i < nx; i++) {
        double v = first + step * i, px = x0 + (v - xmin) / (xmax - xmin) * w;
        char lab[48];
        tick_label(lab, sizeof lab, v, step);
        ab_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444444\"/>\n", px, y0 + h, px,
                  y0 + h + 5);
        ab_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", px, y0 + h + 18, lab);
    }
    ab_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", x0 + w / 2, H - 10);
    ab_esc(&b, xlabel);
    ab_puts(&b, "</text>\n");
    if (n == 0)
        ab_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#888888\">no data</text>\n", x0 + w / 2,
                  y0 + h / 2);
    for (int l = 0; l < n_lines; l++) {
        const char *col = k_colors[l % MR_ARRAY_LEN(k_colors)];
        ab_printf(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"", col);
        for (int i = 0; i < n; i++) {
            double v = y[l * n + i];
            if (isfinite(v) && isfinite(x[i]))
                ab_printf(&b, "%.1f,%.1f ", x0 + (x[i] - xmin) / (xmax - xmin) * w, y0 + h - v / ytop * h);
        }
        ab_puts(&b, "\"/>\n");
    }
    ab_puts(&b, "</svg>\n");
    return ab_buf_take(&b);
}
