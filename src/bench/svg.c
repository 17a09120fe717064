/*
 * svg.c — the chart of `moerun sweep --svg`: prompt-processing and generation
 * speed (tokens/s) against KV cache depth, as two stacked panels sharing the x
 * axis (top PP, bottom TG), one colored line with point markers per series,
 * nice ticks, grid, axis labels with units, a legend and a title. Plain SVG
 * 1.1 text, no scripts or external references.
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "bench/bench.h"

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if ((size_t)k < b->cap - b->n) { b->n += (size_t)k; return; }
        size_t cap = (b->cap + (size_t)k + 1) * 2;
        char *s = mr_realloc(b->s, cap);
        if (!s) { b->oom = 1; return; }
        b->s = s;
        b->cap = cap;
    }
}

/* XML text escaping into sb. */
static void sb_text(sbuf *b, const char *t) {
    for (; *t; t++) {
        switch (*t) {
        case '&': sb_printf(b, "&amp;"); break;
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        default:
            if ((unsigned char)*t >= 0x20 || *t == '\t') sb_printf(b, "%c", *t);
        }
    }
}

static const char *k_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

/* Tick label: integers plain (thousands as "12k" when all ticks are multiples of
 * 1000), otherwise as many decimals as the step needs. */
static void tick_label(char *buf, size_t n, double v, double step) {
    if (fabs(v) < step * 1e-6) {
        snprintf(buf, n, "0");
        return;
    }
    if (step >= 1000 && fmod(step, 1000) == 0) snprintf(buf, n, "%gk", v / 1000);
    else if (step >= 1) snprintf(buf, n, "%.0f", v);
    else {
        int d = (int)ceil(-log10(step) - 1e-9);
        if (fmod(step * pow(10, d), 1.0) > 1e-6) d++;
        snprintf(buf, n, "%.*f", d, v);
    }
}

typedef struct {
    double x0, y0, w, h;      /* plot area in pixels (y0 top) */
    double xmin, xmax, ymin, ymax;
} panel;

static double px(const panel *p, double x) { return p->x0 + (x - p->xmin) / (p->xmax - p->xmin) * p->w; }
static double py(const panel *p, double y) { return p->y0 + p->h - (y - p->ymin) / (p->ymax - p->ymin) * p->h; }

/* One panel: frame, grid, y ticks and label, x ticks (labels only when
 * x_labels), and the lines of field which (0 PP, 1 TG). */
static void draw_panel(sbuf *b, panel *p, const sweep_series *ser, int n_ser, int which, const char *ylabel,
                       const char *ptitle, bool x_labels) {
    double ymax = 0;
    int n_pts = 0;
    for (int s = 0; s < n_ser; s++)
        for (int i = 0; i < ser[s].n_rows; i++) {
            double v = which ? ser[s].rows[i].speed_tg : ser[s].rows[i].speed_pp;
            if (isfinite(v) && v > 0) {
                ymax = MR_MAX(ymax, v);
                n_pts++;
            }
        }
    if (!(ymax > 0)) ymax = 1;
    double first, step;
    double yt[32], xt[32];
    int ny = bench_nice_ticks(0, ymax * 1.05, 5, &first, &step, 32);
    for (int i = 0; i < ny; i++) yt[i] = first + step * i;
    p->ymin = 0;
    p->ymax = MR_MAX(ymax * 1.08, yt[ny - 1]);
    double ystep = step;
    int nx = bench_nice_ticks(p->xmin, p->xmax, 8, &first, &step, 32);
    for (int i = 0; i < nx; i++) xt[i] = first + step * i;
    char lab[64];

    sb_printf(b, "<g class=\"panel\" id=\"panel-%s\">\n", which ? "tg" : "pp");
    sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#ffffff\" stroke=\"#444444\"/>\n",
              p->x0, p->y0, p->w, p->h);
    for (int i = 0; i < ny; i++) {
        double y = py(p, yt[i]);
        tick_label(lab, sizeof lab, yt[i], ystep);
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n", p->x0, y,
                  p->x0 + p->w, y);
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444444\"/>\n", p->x0 - 5, y,
                  p->x0, y);
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" dominant-baseline=\"middle\">%s</text>\n",
                  p->x0 - 8, y, lab);
    }
    for (int i = 0; i < nx; i++) {
        double x = px(p, xt[i]);
        tick_label(lab, sizeof lab, xt[i], step);
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n", x, p->y0, x,
                  p->y0 + p->h);
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444444\"/>\n", x, p->y0 + p->h,
                  x, p->y0 + p->h + 5);
        if (x_labels)
            sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x, p->y0 + p->h + 20, lab);
    }
    /* panel title and y label */
    sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-weight=\"bold\">", p->x0 + 6, p->y0 - 7);
    sb_text(b, ptitle);
    sb_printf(b, "</text>\n");
    double cy = p->y0 + p->h / 2;
    sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 %.1f %.1f)\">", 22.0, cy,
              22.0, cy);
    sb_text(b, ylabel);
    sb_printf(b, "</text>\n");
    if (n_pts == 0)
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#888888\">no data</text>\n",
                  p->x0 + p->w / 2, cy);
    /* lines and markers */
    for (int s = 0; s < n_ser; s++) {
        const char *col = k_colors[s % MR_ARRAY_LEN(k_colors)];
        sb_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"",
                  col);
        for (int i = 0; i < ser[s].n_rows; i++) {
            double v = which ? ser[s].rows[i].speed_tg : ser[s].rows[i].speed_pp;
            if (isfinite(v) && v > 0) sb_printf(b, "%.1f,%.1f ", px(p, ser[s].rows[i].n_kv), py(p, v));
        }
        sb_printf(b, "\"/>\n");
        for (int i = 0; i < ser[s].n_rows; i++) {
            double v = which ? ser[s].rows[i].speed_tg : ser[s].rows[i].speed_pp;
            if (isfinite(v) && v > 0)
                sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>N_KV %d: %.2f t/s</title></circle>\n",
                          px(p, ser[s].rows[i].n_kv), py(p, v), col, ser[s].rows[i].n_kv, v);
        }
    }
    sb_printf(b, "</g>\n");
}

char *sweep_svg(const sweep_series *ser, int n_ser, const char *title) {
    const double W = 900, H = 600, left = 80, right = 24;
    sbuf b = {mr_malloc(1 << 14), 0, 1 << 14, 0};
    if (!b.s) return NULL;
    double xmin = INFINITY, xmax = -INFINITY;
    for (int s = 0; s < n_ser; s++)
        for (int i = 0; i < ser[s].n_rows; i++) {
            xmin = MR_MIN(xmin, (double)ser[s].rows[i].n_kv);
            xmax = MR_MAX(xmax, (double)ser[s].rows[i].n_kv);
        }
    if (!isfinite(xmin)) xmin = 0, xmax = 1;
    if (xmax <= xmin) xmax = xmin + 1;

    sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    sb_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" height=\"%.0f\" "
                  "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n",
              W, H, W, H);
    sb_printf(&b, "<title>");
    sb_text(&b, title ? title : "moerun sweep");
    sb_printf(&b, "</title>\n<rect width=\"100%%\" height=\"100%%\" fill=\"#fafafa\"/>\n");
    /* title, truncated to fit */
    char t[128];
    const char *tt = title ? title : "moerun sweep";
    if (strlen(tt) > 110) snprintf(t, sizeof t, "%.107s...", tt);
    else snprintf(t, sizeof t, "%s", tt);
    sb_printf(&b, "<text x=\"%.1f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">", W / 2);
    sb_text(&b, t);
    sb_printf(&b, "</text>\n");
    if (n_ser == 1 && ser[0].subtitle[0]) {
        char st[160];
        if (strlen(ser[0].subtitle) > 140) snprintf(st, sizeof st, "%.137s...", ser[0].subtitle);
        else snprintf(st, sizeof st, "%s", ser[0].subtitle);
        sb_printf(&b, "<text x=\"%.1f\" y=\"41\" text-anchor=\"middle\" font-size=\"11\" fill=\"#555555\">", W / 2);
        sb_text(&b, st);
        sb_printf(&b, "</text>\n");
    }
    /* legend row */
    sb_printf(&b, "<g id=\"legend\">\n");
    double lx = left;
    for (int s = 0; s < n_ser; s++) {
        const char *col = k_colors[s % MR_ARRAY_LEN(k_colors)];
        char l[80];
        snprintf(l, sizeof l, "%s", ser[s].label[0] ? ser[s].label : "run");
        if (strlen(ser[s].label) > 60) snprintf(l, sizeof l, "%.57s...", ser[s].label);
        sb_printf(&b, "<line x1=\"%.1f\" y1=\"60\" x2=\"%.1f\" y2=\"60\" stroke=\"%s\" stroke-width=\"3\"/>\n", lx,
                  lx + 22, col);
        sb_printf(&b, "<circle cx=\"%.1f\" cy=\"60\" r=\"3\" fill=\"%s\"/>\n", lx + 11, col);
        sb_printf(&b, "<text x=\"%.1f\" y=\"64\">", lx + 28);
        sb_text(&b, l);
        sb_printf(&b, "</text>\n");
        lx += 40 + 7.0 * (double)strlen(l);
    }
    sb_printf(&b, "</g>\n");
    panel pp = {left, 95, W - left - right, 190, xmin, xmax, 0, 1};
    panel tg = {left, 325, W - left - right, 190, xmin, xmax, 0, 1};
    draw_panel(&b, &pp, ser, n_ser, 0, "PP speed (tokens/s)", "Prompt processing (S_PP)", false);
    draw_panel(&b, &tg, ser, n_ser, 1, "TG speed (tokens/s)", "Token generation (S_TG)", true);
    sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">KV cache depth N_KV (tokens)</text>\n",
              left + (W - left - right) / 2, H - 28);
    sb_printf(&b, "</svg>\n");
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
