/*
 * golden.c — golden-format logits dumps and cmpgolden.py's statistics.
 */
#include "engine/golden.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

void golden_topk(const float *logits, int n, int k, int32_t *ids, float *vals) {
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        const float v = logits[i];
        if (cnt == k && !(v > vals[k - 1])) continue;
        int p = cnt < k ? cnt : k - 1;
        while (p > 0 && vals[p - 1] < v) {
            vals[p] = vals[p - 1];
            ids[p] = ids[p - 1];
            p--;
        }
        vals[p] = v;
        ids[p] = i;
        if (cnt < k) cnt++;
    }
}

static json_t *top_json(const float *logits, int n_vocab, int k) {
    int32_t ids[256];
    float vals[256];
    if (k > 256) k = 256;
    golden_topk(logits, n_vocab, k, ids, vals);
    json_t *a = json_array();
    for (int i = 0; i < k; i++) json_array_append_new(a, json_pack("[If]", (json_int_t)ids[i], (double)vals[i]));
    return a;
}

static const char *kv_name(int t) {
    switch (t) {
    case MR_KV_F16: return "f16";
    case MR_KV_Q8_0: return "q8_0";
    case MR_KV_Q4_0: return "q4_0";
    default: return "f32";
    }
}

json_t *golden_run(mr_model *m, const mr_ctx_params *cp, const mr_token *tokens, int n, int n_greedy, int top_k,
                   float **last_logits) {
    mr_ctx *c = mr_ctx_new(m, cp);
    if (!c) return NULL;
    const int V = mr_n_vocab(m);
    json_t *top = json_array(), *greedy = json_array(), *margin = json_array(), *gtop = json_array();
    json_t *jt = json_array();
    int8_t *want = NULL;
    mr_ctx_params p = *cp;
    const int nb = p.n_batch > 0 ? MR_MIN(p.n_batch, mr_ctx_n_ctx(c)) : MR_MIN(2048, mr_ctx_n_ctx(c));
    want = mr_malloc((size_t)nb);
    if (!want) goto fail;
    memset(want, 1, (size_t)nb);
    if (n + n_greedy + 1 > mr_ctx_n_ctx(c)) {
        mr_seterr("golden: %d prompt + %d greedy tokens exceed the context of %d", n, n_greedy, mr_ctx_n_ctx(c));
        goto fail;
    }
    const float *lg = NULL;
    for (int i0 = 0; i0 < n; i0 += nb) {
        const int k = MR_MIN(nb, n - i0);
        int32_t *pos = mr_malloc(sizeof(int32_t) * (size_t)k);
        if (!pos) goto fail;
        for (int i = 0; i < k; i++) pos[i] = i0 + i;
        mr_batch b = {.n_tokens = k, .token = tokens + i0, .pos = pos, .seq = NULL, .logits = want};
        int rc = mr_decode(c, &b);
        free(pos);
        if (rc) goto fail;
        for (int i = 0; i < k; i++) json_array_append_new(top, top_json(mr_get_logits(c, i), V, top_k));
        lg = mr_get_logits(c, k - 1);
    }
    if (last_logits) {
        *last_logits = mr_malloc(sizeof(float) * (size_t)V);
        if (!*last_logits) goto fail;
        memcpy(*last_logits, lg, sizeof(float) * (size_t)V);
    }
    /* greedy[s] is the argmax of the logits before step s (the prompt's last
     * position for s = 0); greedy_margin[s] and greedy_top[s] describe the
     * logits after feeding greedy[s], as llama.cpp's dumps do */
    for (int s = 0; s < n_greedy; s++) {
        int32_t ids[8];
        float vals[8];
        golden_topk(lg, V, 8, ids, vals);
        json_array_append_new(greedy, json_integer(ids[0]));
        mr_token t = ids[0];
        int32_t pos = n + s, seq = 0;
        int8_t one = 1;
        mr_batch b = {.n_tokens = 1, .token = &t, .pos = &pos, .seq = &seq, .logits = &one};
        if (mr_decode(c, &b)) goto fail;
        lg = mr_get_logits(c, 0);
        golden_topk(lg, V, 8, ids, vals);
        json_array_append_new(margin, json_real(round(((double)vals[0] - vals[1]) * 1e4) / 1e4));
        json_t *g8 = json_array();
        for (int i = 0; i < 8; i++) json_array_append_new(g8, json_pack("[If]", (json_int_t)ids[i], (double)vals[i]));
        json_array_append_new(gtop, g8);
    }
    for (int i = 0; i < n; i++) json_array_append_new(jt, json_integer(tokens[i]));
    json_t *o = json_object();
    json_object_set_new(o, "n_vocab", json_integer(V));
    json_object_set_new(o, "n_tokens", json_integer(n));
    json_object_set_new(o, "tokens", jt);
    json_object_set_new(o, "greedy", greedy);
    json_object_set_new(o, "greedy_margin", margin);
    json_object_set_new(o, "kv_type", json_string(kv_name(cp->type_k)));
    json_object_set_new(o, "top_k", json_integer(top_k));
    json_object_set_new(o, "top", top);
    json_object_set_new(o, "greedy_top", gtop);
    free(want);
    mr_ctx_free(c);
    return o;
fail:
    free(want);
    json_decref(top);
    json_decref(greedy);
    json_decref(margin);
    json_decref(gtop);
    json_decref(jt);
    mr_ctx_free(c);
    return NULL;
}

/* ---- cmpgolden.py ------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int golden_compare(const json_t *ref, const json_t *ours, golden_stats *s) {
    const json_t *ta = json_object_get(ref, "top"), *tb = json_object_get(ours, "top");
    if (!json_is_array(ta) || !json_is_array(tb)) {
        mr_seterr("golden: 'top' missing");
        return -1;
    }
    const size_t n = MR_MIN(json_array_size(ta), json_array_size(tb));
    if (n == 0) {
        mr_seterr("golden: no positions to compare");
        return -1;
    }
    double *rel = mr_malloc(sizeof(double) * n);
    if (!rel) return -1;
    double kl_sum = 0.0;
    int agree = 0, cnt = 0;
    for (size_t p = 0; p < n; p++) {
        const json_t *x = json_array_get(ta, p), *y = json_array_get(tb, p);
        const size_t nx = json_array_size(x), ny = json_array_size(y);
        int64_t xi[256], yi[256];
        double xv[256], yv[256];
        const size_t mx_ = MR_MIN(nx, 256), my_ = MR_MIN(ny, 256);
        if (mx_ < 2 || my_ < 1) {
            free(rel);
            mr_seterr("golden: position %zu has fewer than 2 reference / 1 own top entries", p);
            return -1;
        }
        for (size_t i = 0; i < mx_; i++) {
            xi[i] = json_integer_value(json_array_get(json_array_get(x, i), 0));
            xv[i] = json_number_value(json_array_get(json_array_get(x, i), 1));
        }
        double ymin = INFINITY;
        for (size_t i = 0; i < my_; i++) {
            yi[i] = json_integer_value(json_array_get(json_array_get(y, i), 0));
            yv[i] = json_number_value(json_array_get(json_array_get(y, i), 1));
            if (yv[i] < ymin) ymin = yv[i];
        }
        const double spread = xv[0] - xv[mx_ - 1];
        const double floor_ = ymin - 1.0;
        double err = -1.0;
        int ncommon = 0;
        double vy[256];
        for (size_t i = 0; i < mx_; i++) {
            int found = -1;
            for (size_t j = 0; j < my_; j++)
                if (yi[j] == xi[i]) {
                    found = (int)j;
                    break;
                }
            vy[i] = found >= 0 ? yv[found] : floor_;
            if (found >= 0 && ncommon < 16) {
                ncommon++;
                const double e = fabs(xv[i] - yv[found]);
                if (e > err) err = e;
            }
        }
        if (!ncommon) err = spread;
        rel[p] = err / MR_MAX(spread, 1e-6);
        double mx = -INFINITY, my = -INFINITY;
        for (size_t i = 0; i < mx_; i++) {
            mx = MR_MAX(mx, xv[i]);
            my = MR_MAX(my, vy[i]);
        }
        double sx = 0, sy = 0, px[256], py[256];
        for (size_t i = 0; i < mx_; i++) {
            px[i] = exp(xv[i] - mx);
            sx += px[i];
            py[i] = exp(vy[i] - my);
            sy += py[i];
        }
        double kl = 0.0;
        for (size_t i = 0; i < mx_; i++) {
            const double a = px[i] / sx, b = py[i] / sy;
            if (a > 0) kl += a * log(a / b);
        }
        kl_sum += kl;
        if (mx_ > 1 && xv[0] - xv[1] > 0.3) {
            cnt++;
            agree += my_ > 0 && xi[0] == yi[0];
        }
    }
    qsort(rel, n, sizeof(double), cmp_double);
    s->top1 = (double)agree / MR_MAX(cnt, 1);
    s->med = rel[n / 2];
    s->p80 = rel[(size_t)((double)n * 0.8)];
    s->kl = kl_sum / (double)n;
    free(rel);
    return 0;
}

int golden_greedy_check(const json_t *ref, const json_t *ours, double min_margin, int cap, int *checked) {
    const json_t *ga = json_object_get(ref, "greedy"), *gb = json_object_get(ours, "greedy");
    const json_t *ma = json_object_get(ref, "greedy_margin"), *top = json_object_get(ref, "top");
    const size_t n = MR_MIN(json_array_size(ga), json_array_size(gb));
    /* the margin that decided greedy[0] is that of the last prompt position */
    const json_t *last = json_array_get(top, json_array_size(top) - 1);
    double m0 = json_number_value(json_array_get(json_array_get(last, 0), 1)) -
                json_number_value(json_array_get(json_array_get(last, 1), 1));
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        if (cap > 0 && k >= cap) break;
        const double mg = i == 0 ? m0 : json_number_value(json_array_get(ma, i - 1));
        if (mg < min_margin) break;
        k++;
        if (json_integer_value(json_array_get(ga, i)) != json_integer_value(json_array_get(gb, i))) {
            *checked = k;
            return (int)i;
        }
    }
    *checked = k;
    return -1;
}
