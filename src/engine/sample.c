/*
 * sample.c — token sampling (mr_sampler_* of moerun.h).
 *
 * The chain follows llama.cpp's default order and semantics:
 *   penalties -> top-k -> top-p -> min-p -> temperature -> dist
 *
 *  - penalties: over the last repeat_last_n accepted tokens (-1: every token
 *    accepted since the last reset). For each distinct token in that window with
 *    count c: repeat penalty divides a positive logit / multiplies a negative one
 *    (logit <= 0), then logit -= c * frequency_penalty + presence_penalty.
 *  - top-k keeps the k highest logits (k <= 0: off).
 *  - top-p keeps the smallest prefix of the descending list whose probability
 *    (softmax at temperature 1) reaches p (p >= 1: off); min-p keeps tokens
 *    whose probability is >= p * the highest probability (p <= 0: off). Both
 *    always keep at least one token.
 *  - temperature <= 0 is greedy (the highest logit after penalties, lowest id on
 *    ties); otherwise the kept logits are divided by it and one token is drawn
 *    from their softmax with the sampler's own PRNG (xoshiro256**, seeded by
 *    splitmix64 from `seed`): the same seed and inputs give the same tokens.
 *    seed == MR_SAMPLER_SEED_RANDOM (0xFFFFFFFF, llama.cpp's LLAMA_DEFAULT_SEED)
 *    draws a seed from the clock.
 *
 * Cost for a 152k vocabulary: one O(V) pass to copy the logits; penalties are
 * O(window log window); top-k is a quickselect (O(V)) plus a sort of k items;
 * top-p without top-k grows a selected prefix (64, 256, ... items) until it
 * holds p of the mass, so a full sort happens only when p covers most of V.
 */
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"

typedef struct {
    float logit;
    mr_token id;
} cand;

struct mr_sampler {
    mr_sampler_params p;
    uint64_t rng[4];
    /* history of accepted tokens: a ring of `cap` entries (cap = repeat_last_n),
     * or a growing array when repeat_last_n < 0 */
    mr_token *hist;
    int hist_cap, hist_n, hist_head;
    /* scratch, grown to the vocabulary size */
    cand *cands;
    int cands_cap;
    mr_token *win; /* sorted copy of the window */
    int win_cap;
};

/* ---- PRNG ---------------------------------------------------------------- */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t sampler_rng_next(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

void sampler_rng_seed(uint64_t s[4], uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s[i] = splitmix64(&x);
}

/* Uniform double in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4]) { return (double)(sampler_rng_next(s) >> 11) * 0x1.0p-53; }

/* ---- params -------------------------------------------------------------- */
mr_sampler_params mr_sampler_default_params(void) {
    /* llama.cpp's common defaults */
    mr_sampler_params p = {
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .seed = MR_SAMPLER_SEED_RANDOM,
    };
    return p;
}

mr_sampler *mr_sampler_new(const mr_sampler_params *p) {
    mr_sampler_params d = p ? *p : mr_sampler_default_params();
    if (isnan(d.temperature) || isnan(d.top_p) || isnan(d.min_p) || isnan(d.repeat_penalty) ||
        isnan(d.presence_penalty) || isnan(d.frequency_penalty)) {
        mr_seterr("sampler: NaN parameter");
        return NULL;
    }
    if (d.repeat_penalty <= 0.0f) {
        mr_seterr("sampler: repeat_penalty must be > 0 (got %g; 1 = off)", (double)d.repeat_penalty);
        return NULL;
    }
    mr_sampler *s = mr_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = d;
    if (d.repeat_last_n > 0) {
        s->hist_cap = d.repeat_last_n;
        s->hist = mr_malloc((size_t)s->hist_cap * sizeof *s->hist);
        if (!s->hist) {
            free(s);
            return NULL;
        }
    }
    mr_sampler_reset(s);
    return s;
}

void mr_sampler_free(mr_sampler *s) {
    if (!s) return;
    free(s->hist);
    free(s->cands);
    free(s->win);
    free(s);
}

void mr_sampler_reset(mr_sampler *s) {
    if (!s) return;
    s->hist_n = s->hist_head = 0;
    uint64_t seed = s->p.seed;
    if (seed == MR_SAMPLER_SEED_RANDOM) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)s;
    }
    sampler_rng_seed(s->rng, seed);
}

void mr_sampler_accept(mr_sampler *s, mr_token t) {
    if (!s || s->p.repeat_last_n == 0) return;
    if (s->p.repeat_last_n > 0) {
        s->hist[s->hist_head] = t;
        s->hist_head = (s->hist_head + 1) % s->hist_cap;
        if (s->hist_n < s->hist_cap) s->hist_n++;
        return;
    }
    /* unbounded window */
    if (s->hist_n == s->hist_cap) {
        int nc = s->hist_cap ? s->hist_cap * 2 : 256;
        mr_token *h = mr_realloc(s->hist, (size_t)nc * sizeof *h);
        if (!h) return; /* out of memory: the oldest tokens are simply not tracked */
        s->hist = h;
        s->hist_cap = nc;
    }
    s->hist[s->hist_n++] = t;
}

/* ---- helpers --------------------------------------------------------------- */
static int cmp_tok(const void *a, const void *b) {
    mr_token x = *(const mr_token *)a, y = *(const mr_token *)b;
    return (x > y) - (x < y);
}

/* Descending logit, then ascending id (a total order, so results are stable). */
static inline bool cand_before(const cand *a, const cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    return cand_before(x, y) ? -1 : cand_before(y, x) ? 1 : 0;
}

static inline void cswap(cand *a, cand *b) {
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Rearrange c[0..n) so that c[0..k) are the k first in cand_before order,
 * sorted. Quickselect (median of three) then qsort of the k. 1 <= k <= n. */
static void select_top(cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (hi > lo && k < n) {
        int mid = lo + (hi - lo) / 2;
        if (cand_before(&c[mid], &c[lo])) cswap(&c[mid], &c[lo]);
        if (cand_before(&c[hi], &c[lo])) cswap(&c[hi], &c[lo]);
        if (cand_before(&c[hi], &c[mid])) cswap(&c[hi], &c[mid]);
        cand pv = c[mid];
        int i = lo, j = hi;
        while (i <= j) {
            while (cand_before(&c[i], &pv)) i++;
            while (cand_before(&pv, &c[j])) j--;
            if (i <= j) cswap(&c[i++], &c[j--]);
        }
        /* now [lo..j] before-or-equal pv, [i..hi] after-or-equal pv */
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
    qsort(c, (size_t)k, sizeof *c, cmp_cand);
}

static int ensure_scratch(mr_sampler *s, int n_vocab) {
    if (s->cands_cap < n_vocab) {
        cand *c = mr_realloc(s->cands, (size_t)n_vocab * sizeof *c);
        if (!c) return -1;
        s->cands = c;
        s->cands_cap = n_vocab;
    }
    return 0;
}

/* Apply the penalties to c (c[i].id == i for all i, full vocabulary). */
static void apply_penalties(mr_sampler *s, cand *c, int n_vocab) {
    const mr_sampler_params *p = &s->p;
    if (s->hist_n == 0 || p->repeat_last_n == 0) return;
    if (p->repeat_penalty == 1.0f && p->frequency_penalty == 0.0f && p->presence_penalty == 0.0f) return;
    if (s->win_cap < s->hist_n) {
        mr_token *w = mr_realloc(s->win, (size_t)s->hist_n * sizeof *w);
        if (!w) return;
        s->win = w;
        s->win_cap = s->hist_n;
    }
    memcpy(s->win, s->hist, (size_t)s->hist_n * sizeof *s->win); /* ring order is irrelevant */
    qsort(s->win, (size_t)s->hist_n, sizeof *s->win, cmp_tok);
    for (int i = 0; i < s->hist_n;) {
        mr_token t = s->win[i];
        int j = i;
        while (j < s->hist_n && s->win[j] == t) j++;
        int count = j - i;
        i = j;
        if (t < 0 || t >= n_vocab) continue;
        float l = c[t].logit;
        if (l <= 0.0f) l *= p->repeat_penalty;
        else l /= p->repeat_penalty;
        l -= (float)count * p->frequency_penalty + p->presence_penalty;
        c[t].logit = l;
    }
}

/* Index of the best candidate of c[0..n). */
static int argmax(const cand *c, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (c[i].logit > c[b].logit) b = i; /* strict: lowest id wins ties (c is in id order) */
    return b;
}

mr_token mr_sampler_sample(mr_sampler *s, const float *logits, int n_vocab) {
    if (!s || !logits || n_vocab <= 0) {
        mr_seterr("sampler: no logits");
        return -1;
    }
    if (ensure_scratch(s, n_vocab) != 0) return -1;
    const mr_sampler_params *p = &s->p;
    cand *c = s->cands;
    int n = n_vocab;
    for (int i = 0; i < n; i++) {
        float l = logits[i];
        c[i].logit = isnan(l) ? -INFINITY : l;
        c[i].id = i;
    }
    apply_penalties(s, c, n_vocab);

    /* greedy: every filter keeps the best token, and temperature <= 0 picks it */
    if (p->temperature <= 0.0f) return c[argmax(c, n)].id;

    bool sorted = false; /* c[0..n) sorted by cand_before */
    if (p->top_k > 0 && p->top_k < n) {
        select_top(c, n, p->top_k);
        n = p->top_k;
        sorted = true;
    }

    /* softmax stats at temperature 1 over the current set */
    float maxl = -INFINITY;
    for (int i = 0; i < n; i++) maxl = c[i].logit > maxl ? c[i].logit : maxl;
    if (maxl == -INFINITY) return c[0].id; /* every logit masked: nothing to weigh */

    if (p->top_p < 1.0f) {
        double sum = 0.0;
        for (int i = 0; i < n; i++) sum += exp((double)(c[i].logit - maxl));
        double target = (double)p->top_p * sum;
        if (sorted) {
            double cum = 0.0;
            int keep = n;
            for (int i = 0; i < n; i++) {
                cum += exp((double)(c[i].logit - maxl));
                if (cum >= target) {
                    keep = i + 1;
                    break;
                }
            }
            n = keep;
        } else {
            /* grow a sorted prefix until it holds the mass (or covers all) */
            int k = 64;
            for (;;) {
                if (k >= n) k = n;
                select_top(c, n, k);
                double cum = 0.0;
                int keep = -1;
                for (int i = 0; i < k; i++) {
                    cum += exp((double)(c[i].logit - maxl));
                    if (cum >= target) {
                        keep = i + 1;
                        break;
                    }
                }
                if (keep > 0) {
                    n = keep;
                    break;
                }
                if (k == n) break; /* rounding: keep everything */
                k = k > n / 4 ? n : k * 4;
            }
            sorted = true;
        }
        if (n < 1) n = 1;
    }

    if (p->min_p > 0.0f) {
        /* prob_i >= min_p * prob_max  <=>  logit_i >= maxl + log(min_p) */
        float thr = maxl + logf(p->min_p);
        if (sorted) {
            int keep = 1;
            while (keep < n && c[keep].logit >= thr) keep++;
            n = keep;
        } else {
            int m = 0;
            for (int i = 0; i < n; i++)
                if (c[i].logit >= thr) c[m++] = c[i];
            n = m > 0 ? m : 1; /* m >= 1: the max passes */
        }
    }

    /* temperature and draw */
    double inv_t = 1.0 / (double)p->temperature, sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp(((double)c[i].logit - maxl) * inv_t);
    double u = rng_uniform(s->rng) * sum, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += exp(((double)c[i].logit - maxl) * inv_t);
        if (u < cum) return c[i].id;
    }
    /* u landed on the rounding slack: the last token with nonzero weight */
    for (int i = n - 1; i > 0; i--)
        if (c[i].logit > -INFINITY) return c[i].id;
    return c[0].id;
}
