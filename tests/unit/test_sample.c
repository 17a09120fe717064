/*
 * test_sample.c — the sampler: greedy equivalences, sampled frequencies against
 * the softmax, the filters' kept sets, penalties computed by hand, determinism
 * per seed, and the cost on a 152k vocabulary.
 */
#include <math.h>
#include <stdint.h>

#include "base/base.h"
#include "check.h"
#include "engine/sample.h"
#include "moerun.h"

#define NV_BIG 151936

/* Speed bounds hold for optimized builds; sanitizers and -O0 get slack. */
#if !defined(__OPTIMIZE__)
#define SLOW 20.0
#elif defined(__SANITIZE_ADDRESS__)
#define SLOW 5.0
#else
#define SLOW 1.0
#endif

static mr_sampler_params plain(float temp, uint64_t seed) {
    mr_sampler_params p = mr_sampler_default_params();
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = seed;
    return p;
}

static void rand_logits(uint64_t rng[4], float *l, int n, float scale) {
    for (int i = 0; i < n; i++) {
        /* sum of uniforms: roughly normal */
        double u = 0;
        for (int k = 0; k < 4; k++) u += (double)(sampler_rng_next(rng) >> 11) * 0x1.0p-53;
        l[i] = (float)((u - 2.0) * scale);
    }
}

static int argmax_f(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

/* Draw N samples; compare the frequencies with expected probabilities (within
 * 4.5 standard deviations, plus a small absolute slack). Returns failures. */
static int freq_check(mr_sampler *s, const float *logits, int n, const double *expect, int N, const char *what) {
    int cnt[64] = {0};
    for (int i = 0; i < N; i++) {
        mr_token t = mr_sampler_sample(s, logits, n);
        if (t < 0 || t >= n) {
            CHECK(0, "%s: token %d out of range", what, t);
            return 1;
        }
        cnt[t]++;
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        double f = (double)cnt[i] / N, e = expect[i];
        double sd = sqrt(e * (1 - e) / N);
        bool ok = fabs(f - e) <= 4.5 * sd + 1e-9;
        if (e == 0) ok = cnt[i] == 0;
        CHECK(ok, "%s: token %d freq %.4f expected %.4f (sd %.4f)", what, i, f, e, sd);
        bad += !ok;
    }
    return bad;
}

static void softmax_d(const float *l, int n, double t, double *out) {
    double m = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) m = l[i] > m ? l[i] : m;
    for (int i = 0; i < n; i++) s += out[i] = exp((l[i] - m) / t);
    for (int i = 0; i < n; i++) out[i] /= s;
}

static void test_greedy_equivalences(void) {
    uint64_t rng[4];
    sampler_rng_seed(rng, 7);
    float *l = malloc(sizeof(float) * 5000);
    for (int trial = 0; trial < 50; trial++) {
        rand_logits(rng, l, 5000, 3.0f);
        int best = argmax_f(l, 5000);
        mr_sampler_params p = plain(0.0f, 1);
        mr_sampler *g = mr_sampler_new(&p);
        CHECK(mr_sampler_sample(g, l, 5000) == best, "temp 0 is argmax");
        mr_sampler_free(g);

        p = plain(1.0f, 100 + trial);
        p.top_k = 1;
        mr_sampler *k1 = mr_sampler_new(&p);
        p = plain(1.5f, 200 + trial);
        p.top_p = 1e-6f;
        mr_sampler *tp = mr_sampler_new(&p);
        p = plain(2.0f, 300 + trial);
        p.min_p = 0.9999f;
        mr_sampler *mp = mr_sampler_new(&p);
        for (int r = 0; r < 5; r++) {
            CHECK(mr_sampler_sample(k1, l, 5000) == best, "top-k 1 equals greedy");
            CHECK(mr_sampler_sample(tp, l, 5000) == best, "tiny top-p equals greedy");
            CHECK(mr_sampler_sample(mp, l, 5000) == best, "min-p ~1 equals greedy");
        }
        mr_sampler_free(k1);
        mr_sampler_free(tp);
        mr_sampler_free(mp);
    }
    /* ties: lowest id */
    float tie[4] = {1, 3, 3, 0};
    mr_sampler_params p = plain(0.0f, 1);
    mr_sampler *g = mr_sampler_new(&p);
    CHECK(mr_sampler_sample(g, tie, 4) == 1, "greedy tie picks the lowest id");
    mr_sampler_free(g);
    free(l);
}

static void test_frequencies(void) {
    const int N = 20000;
    float l[6] = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f, 0.0f};
    double e[6];
    /* temperature 1, no filters: softmax */
    softmax_d(l, 6, 1.0, e);
    mr_sampler_params p = plain(1.0f, 42);
    mr_sampler *s = mr_sampler_new(&p);
    freq_check(s, l, 6, e, N, "temp 1");
    mr_sampler_free(s);
    /* temperature 0.5 */
    softmax_d(l, 6, 0.5, e);
    p = plain(0.5f, 43);
    s = mr_sampler_new(&p);
    freq_check(s, l, 6, e, N, "temp 0.5");
    mr_sampler_free(s);
    /* temperature 2 */
    softmax_d(l, 6, 2.0, e);
    p = plain(2.0f, 44);
    s = mr_sampler_new(&p);
    freq_check(s, l, 6, e, N, "temp 2");
    mr_sampler_free(s);

    /* top-k 2 at temperature 1: tokens 1 and 4 renormalised */
    p = plain(1.0f, 45);
    p.top_k = 2;
    s = mr_sampler_new(&p);
    double ek[6] = {0};
    ek[1] = 1.0 / (1.0 + exp(-0.5));
    ek[4] = 1.0 - ek[1];
    freq_check(s, l, 6, ek, N, "top-k 2");
    mr_sampler_free(s);

    /* top-p: probabilities 0.5 0.3 0.15 0.05 */
    float lp[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    p = plain(1.0f, 46);
    p.top_p = 0.75f; /* 0.5 < 0.75 <= 0.8: keep two */
    s = mr_sampler_new(&p);
    double ep[4] = {0.5 / 0.8, 0.3 / 0.8, 0, 0};
    freq_check(s, lp, 4, ep, N, "top-p 0.75");
    mr_sampler_free(s);
    p.top_p = 0.9f; /* keep three */
    p.seed = 47;
    s = mr_sampler_new(&p);
    double ep3[4] = {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0};
    freq_check(s, lp, 4, ep3, N, "top-p 0.9");
    mr_sampler_free(s);

    /* min-p 0.2: keep p >= 0.1 -> 0.5 0.3 0.15 */
    p = plain(1.0f, 48);
    p.min_p = 0.2f;
    s = mr_sampler_new(&p);
    freq_check(s, lp, 4, ep3, N, "min-p 0.2");
    mr_sampler_free(s);

    /* top-k then temperature: top-3 kept at temperature 1, then sharpened by t = 0.5 */
    p = plain(0.5f, 49);
    p.top_k = 3;
    s = mr_sampler_new(&p);
    float l3[3] = {lp[0], lp[1], lp[2]};
    double e3[4] = {0};
    softmax_d(l3, 3, 0.5, e3);
    freq_check(s, lp, 4, e3, N, "top-k 3 + temp 0.5");
    mr_sampler_free(s);

    /* top-p uses temperature-1 probabilities even when temp != 1 (llama.cpp order) */
    p = plain(3.0f, 50);
    p.top_p = 0.75f;
    s = mr_sampler_new(&p);
    double et[4] = {0};
    float l2[2] = {lp[0], lp[1]};
    softmax_d(l2, 2, 3.0, et);
    freq_check(s, lp, 4, et, N, "top-p before temperature");
    mr_sampler_free(s);
}

static void test_penalties(void) {
    mr_sampler_params p = plain(0.0f, 1);
    /* repeat penalty on a positive logit: 2.0 / 1.2 = 1.667 < 1.9 */
    float a[3] = {2.0f, 1.9f, 0.0f};
    p.repeat_penalty = 1.2f;
    mr_sampler *s = mr_sampler_new(&p);
    CHECK(mr_sampler_sample(s, a, 3) == 0, "no history: best");
    mr_sampler_accept(s, 0);
    CHECK(mr_sampler_sample(s, a, 3) == 1, "repeat penalty divides a positive logit");
    mr_sampler_free(s);
    /* 2.0 / 1.05 = 1.905 > 1.9: still 0 */
    p.repeat_penalty = 1.05f;
    s = mr_sampler_new(&p);
    mr_sampler_accept(s, 0);
    CHECK(mr_sampler_sample(s, a, 3) == 0, "weak repeat penalty keeps the pick");
    mr_sampler_free(s);
    /* negative logits are multiplied: -1.0 * 1.2 = -1.2 < -1.1 */
    float b[3] = {-1.0f, -1.1f, -5.0f};
    p.repeat_penalty = 1.2f;
    s = mr_sampler_new(&p);
    mr_sampler_accept(s, 0);
    CHECK(mr_sampler_sample(s, b, 3) == 1, "repeat penalty multiplies a negative logit");
    mr_sampler_free(s);
    /* frequency: 3.0 - 2 * 0.3 = 2.4 < 2.5; once: 2.7 > 2.5 */
    float c[3] = {3.0f, 2.5f, 0.0f};
    p = plain(0.0f, 1);
    p.frequency_penalty = 0.3f;
    s = mr_sampler_new(&p);
    mr_sampler_accept(s, 0);
    CHECK(mr_sampler_sample(s, c, 3) == 0, "frequency penalty x1 keeps the pick");
    mr_sampler_accept(s, 0);
    CHECK(mr_sampler_sample(s, c, 3) == 1, "frequency penalty x2 changes the pick");
    mr_sampler_reset(s);
    CHECK(mr_sampler_sample(s, c, 3) == 0, "reset clears the history");
    mr_sampler_free(s);
    /* presence: 3.0 - 0.6 = 2.4 < 2.5 after one occurrence, not more after two */
    p = plain(0.0f, 1);
    p.presence_penalty = 0.6f;
    s = mr_sampler_new(&p);
    mr_sampler_accept(s, 0);
    CHECK(mr_sampler_sample(s, c, 3) == 1, "presence penalty changes the pick");
    mr_sampler_free(s);
    p.presence_penalty = 0.45f;
    s = mr_sampler_new(&p);
    mr_sampler_accept(s, 0);
    mr_sampler_accept(s, 0);
    mr_sampler_accept(s, 0);
    CHECK(mr_sampler_sample(s, c, 3) == 0, "presence penalty is counted once");
    mr_sampler_free(s);
    /* combined, as llama.cpp: (3.0 / 1.1) - 2*0.1 - 0.1 = 2.427 < 2.5 */
    p = plain(0.0f, 1);
    p.repeat_penalty = 1.1f;
    p.frequency_penalty = 0.1f;
    p.presence_penalty = 0.1f;
    s = mr_sampler_new(&p);
    mr_sampler_accept(s, 0);
    mr_sampler_accept(s, 0);
    CHECK(mr_sampler_sample(s, c, 3) == 1, "combined penalties");
    mr_sampler_free(s);
    /* window: only the last repeat_last_n tokens count */
    p = plain(0.0f, 1);
    p.repeat_penalty = 1.2f;
    p.repeat_last_n = 2;
    s = mr_sampler_new(&p);
    mr_sampler_accept(s, 0);
    CHECK(mr_sampler_sample(s, a, 3) == 1, "in window");
    mr_sampler_accept(s, 2);
    CHECK(mr_sampler_sample(s, a, 3) == 1, "still in window");
    mr_sampler_accept(s, 2);
    CHECK(mr_sampler_sample(s, a, 3) == 0, "fell out of the window");
    mr_sampler_free(s);
    /* repeat_last_n = 0: off; -1: all history */
    p.repeat_last_n = 0;
    s = mr_sampler_new(&p);
    mr_sampler_accept(s, 0);
    CHECK(mr_sampler_sample(s, a, 3) == 0, "repeat_last_n 0 disables");
    mr_sampler_free(s);
    p.repeat_last_n = -1;
    s = mr_sampler_new(&p);
    mr_sampler_accept(s, 0);
    for (int i = 0; i < 1000; i++) mr_sampler_accept(s, 2);
    CHECK(mr_sampler_sample(s, a, 3) == 1, "repeat_last_n -1 keeps all history");
    mr_sampler_free(s);
    /* out-of-range accepted ids are ignored */
    p.repeat_last_n = 8;
    s = mr_sampler_new(&p);
    mr_sampler_accept(s, 999);
    mr_sampler_accept(s, -3);
    CHECK(mr_sampler_sample(s, a, 3) == 0, "ids outside the vocab ignored");
    mr_sampler_free(s);
    /* penalties change a sampled distribution too: with frequency 100 token 0 never appears */
    p = plain(1.0f, 9);
    p.frequency_penalty = 100.0f;
    s = mr_sampler_new(&p);
    mr_sampler_accept(s, 0);
    int hits = 0;
    for (int i = 0; i < 2000; i++) hits += mr_sampler_sample(s, c, 3) == 0;
    CHECK(hits == 0, "penalised token drawn %d times", hits);
    mr_sampler_free(s);
    /* bad params */
    p = plain(1.0f, 1);
    p.repeat_penalty = 0.0f;
    CHECK(mr_sampler_new(&p) == NULL, "repeat_penalty 0 rejected");
    p.repeat_penalty = NAN;
    CHECK(mr_sampler_new(&p) == NULL, "NaN rejected");
}

/* Big vocabulary: kept sets checked against a full sort, determinism, speed. */
static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static void test_big_vocab(void) {
    float *l = malloc(sizeof(float) * NV_BIG), *sorted = malloc(sizeof(float) * NV_BIG);
    uint64_t rng[4];
    sampler_rng_seed(rng, 99);
    rand_logits(rng, l, NV_BIG, 8.0f);
    memcpy(sorted, l, sizeof(float) * NV_BIG);
    qsort(sorted, NV_BIG, sizeof(float), cmp_desc);

    /* top-k 40: every draw is among the 40 best */
    mr_sampler_params p = plain(1.0f, 5);
    p.top_k = 40;
    mr_sampler *s = mr_sampler_new(&p);
    int bad = 0;
    for (int i = 0; i < 300; i++) {
        mr_token t = mr_sampler_sample(s, l, NV_BIG);
        if (t < 0 || l[t] < sorted[39]) bad++;
    }
    CHECK(bad == 0, "top-k 40 on 152k: %d draws outside the top 40", bad);
    mr_sampler_free(s);

    /* top-p 0.9 without top-k: every draw within the reference prefix */
    double m = sorted[0], sum = 0;
    for (int i = 0; i < NV_BIG; i++) sum += exp(sorted[i] - m);
    double cum = 0;
    int keep = NV_BIG;
    for (int i = 0; i < NV_BIG; i++) {
        cum += exp(sorted[i] - m);
        if (cum >= 0.9 * sum) {
            keep = i + 1;
            break;
        }
    }
    p = plain(1.0f, 6);
    p.top_p = 0.9f;
    s = mr_sampler_new(&p);
    bad = 0;
    int seen_deep = 0;
    for (int i = 0; i < 300; i++) {
        mr_token t = mr_sampler_sample(s, l, NV_BIG);
        if (t < 0 || l[t] < sorted[keep - 1]) bad++;
        if (t >= 0 && l[t] < sorted[keep / 2]) seen_deep++;
    }
    CHECK(bad == 0, "top-p 0.9 on 152k (prefix %d): %d draws outside", keep, bad);
    CHECK(seen_deep > 0, "top-p 0.9 draws reach the second half of the prefix");
    mr_sampler_free(s);

    /* determinism: same seed same stream; different seed different stream */
    mr_sampler_params d = mr_sampler_default_params();
    d.seed = 1234;
    d.repeat_penalty = 1.1f;
    mr_sampler *s1 = mr_sampler_new(&d), *s2 = mr_sampler_new(&d);
    d.seed = 1235;
    mr_sampler *s3 = mr_sampler_new(&d);
    int same12 = 1, diff13 = 0;
    mr_token first[200];
    for (int i = 0; i < 200; i++) {
        mr_token a = mr_sampler_sample(s1, l, NV_BIG), b = mr_sampler_sample(s2, l, NV_BIG),
                 c = mr_sampler_sample(s3, l, NV_BIG);
        first[i] = a;
        same12 &= a == b;
        diff13 |= a != c;
        mr_sampler_accept(s1, a);
        mr_sampler_accept(s2, b);
        mr_sampler_accept(s3, c);
    }
    CHECK(same12, "same seed gives the same tokens");
    CHECK(diff13, "different seeds give different tokens");
    /* reset restarts the stream */
    mr_sampler_reset(s1);
    int same_after_reset = 1;
    for (int i = 0; i < 200; i++) {
        mr_token a = mr_sampler_sample(s1, l, NV_BIG);
        same_after_reset &= a == first[i];
        mr_sampler_accept(s1, a);
    }
    CHECK(same_after_reset, "reset replays the seed");
    mr_sampler_free(s1);
    mr_sampler_free(s2);
    mr_sampler_free(s3);

    /* speed with the llama.cpp default chain on 152k */
    d = mr_sampler_default_params();
    d.seed = 3;
    s = mr_sampler_new(&d);
    double t0 = mr_time_s();
    for (int i = 0; i < 200; i++) mr_sampler_accept(s, mr_sampler_sample(s, l, NV_BIG));
    double per = (mr_time_s() - t0) / 200 * 1e3;
    printf("default chain on %d logits: %.3f ms per token\n", NV_BIG, per);
    CHECK(per < 20.0 * SLOW, "sampling takes %.2f ms per token", per);
    mr_sampler_free(s);
    /* top-p only (no top-k) on a flat distribution: still bounded */
    for (int i = 0; i < NV_BIG; i++) l[i] *= 0.01f;
    p = plain(1.0f, 8);
    p.top_p = 0.95f;
    s = mr_sampler_new(&p);
    t0 = mr_time_s();
    for (int i = 0; i < 20; i++) mr_sampler_sample(s, l, NV_BIG);
    per = (mr_time_s() - t0) / 20 * 1e3;
    printf("top-p 0.95 on a flat %d: %.3f ms per token\n", NV_BIG, per);
    CHECK(per < 200.0 * SLOW, "flat top-p takes %.2f ms per token", per);
    mr_sampler_free(s);

    /* NaN and -inf logits never win */
    float w[4] = {NAN, -INFINITY, 0.5f, 0.1f};
    p = plain(1.0f, 4);
    s = mr_sampler_new(&p);
    bad = 0;
    for (int i = 0; i < 500; i++) {
        mr_token t = mr_sampler_sample(s, w, 4);
        bad += t < 2;
    }
    CHECK(bad == 0, "NaN/-inf drawn %d times", bad);
    mr_sampler_free(s);
    free(l);
    free(sorted);
}

int main(void) {
    test_greedy_equivalences();
    test_frequencies();
    test_penalties();
    test_big_vocab();
    return check_done();
}
