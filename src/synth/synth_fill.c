/*
 * synth_fill.c — random but well-formed tensor data and a synthetic BPE vocabulary.
 *
 * Blocks are ggml's layouts bit for bit. Quant bits and packed sub-block
 * scales are uniform random bytes (every bit pattern is a valid block); the
 * fp16 super-block scales are chosen so the decoded values are finite,
 * centred on zero (min terms set to the mean of the scale x quant term) and
 * have a standard deviation of about 1/sqrt(row length), with a +-25 % per-block
 * jitter. Norm gains are 1 +- 0.05. The PRNG is xoshiro256** (fast; the data
 * is generated at disk speed).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "quant/types.h"
#include "synth/synth.h"

/* ---- PRNG ----------------------------------------------------------------------- */
static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void synth_rng_seed(synth_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix(&seed);
}

uint64_t synth_rng_next(synth_rng *r) {
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

/* uniform in [0, 1) */
static inline double rng_u(synth_rng *r) { return (double)(synth_rng_next(r) >> 11) * 0x1.0p-53; }

static inline void rand_bytes(synth_rng *r, uint8_t *dst, size_t n) {
    while (n >= 8) {
        uint64_t x = synth_rng_next(r);
        memcpy(dst, &x, 8);
        dst += 8;
        n -= 8;
    }
    if (n) {
        uint64_t x = synth_rng_next(r);
        memcpy(dst, &x, n);
    }
}

/* ---- blocks ---------------------------------------------------------------------- */
bool synth_can_fill(uint32_t type) {
    switch (type) {
    case MR_TYPE_F32: case MR_TYPE_F16: case MR_TYPE_BF16: case MR_TYPE_Q4_0: case MR_TYPE_Q4_1: case MR_TYPE_Q5_0:
    case MR_TYPE_Q5_1: case MR_TYPE_Q8_0: case MR_TYPE_Q4_K: case MR_TYPE_Q5_K: case MR_TYPE_Q6_K:
    case MR_TYPE_Q2_K: case MR_TYPE_Q3_K: case MR_TYPE_IQ4_NL: case MR_TYPE_IQ4_XS:
        return true;
    default: return false;
    }
}

/* One float drawn per the tensor's init kind; sigma for weights. */
static float draw(synth_init init, double sigma, synth_rng *r) {
    double u = rng_u(r);
    switch (init) {
    case SYNTH_INIT_NORM: return (float)(1.0 + 0.1 * (u - 0.5));
    case SYNTH_INIT_SMALL: return (float)(0.02 * (u - 0.5));
    case SYNTH_INIT_SSM_A: return (float)-(0.1 + 1.9 * u);
    case SYNTH_INIT_CONV: return (float)(1.04 * (u - 0.5)); /* std 0.3 */
    default: return (float)(sigma * 3.4641016 * (u - 0.5)); /* uniform, std sigma */
    }
}

/* Std of the decoded value per unit of d for each type (see the banner). */
static double unit_std(uint32_t type) {
    switch (type) {
    case MR_TYPE_Q4_0: case MR_TYPE_Q4_1: return 4.61;
    case MR_TYPE_Q5_0: case MR_TYPE_Q5_1: return 9.23;
    case MR_TYPE_Q8_0: return 73.9;
    case MR_TYPE_Q4_K: return 270.0;
    case MR_TYPE_Q5_K: return 544.0;
    case MR_TYPE_Q6_K: return 1370.0;
    /* random scales and quants: rough stds of the decoded value per unit of d */
    case MR_TYPE_Q2_K: return 12.0;     /* sc (0..15) x q (0..3), centred by dmin = 1.5 d */
    case MR_TYPE_Q3_K: return 42.0;     /* (sc - 32) x q3 (-4..3) */
    case MR_TYPE_IQ4_NL: return 62.0;   /* the non-linear table, -127..113 */
    case MR_TYPE_IQ4_XS: return 1150.0; /* (ls - 32) x table */
    default: return 1.0;
    }
}

int synth_fill(const synth_tensor *t, synth_rng *r, void *dst, uint64_t nbytes) {
    const mr_type_traits *tr = mr_type_get(t->type);
    if (!tr || !synth_can_fill(t->type)) {
        mr_seterr("synth: tensor '%s': cannot generate type %s", t->name, mr_type_name(t->type));
        return -1;
    }
    double sigma = 1.0 / sqrt((double)(t->ne[0] > 0 ? t->ne[0] : 1));
    uint8_t *p = dst;
    if (t->type == MR_TYPE_F32 || t->type == MR_TYPE_F16 || t->type == MR_TYPE_BF16) {
        uint64_t n = nbytes / tr->tsize;
        for (uint64_t i = 0; i < n; i++) {
            float f = draw(t->init, sigma, r);
            if (t->type == MR_TYPE_F32) memcpy(p + 4 * i, &f, 4);
            else {
                uint16_t h = t->type == MR_TYPE_F16 ? mr_fp32_to_fp16(f) : mr_fp32_to_bf16(f);
                memcpy(p + 2 * i, &h, 2);
            }
        }
        return 0;
    }
    /* Quantized: 16 jittered fp16 scales (d, and the matching min for types with one). */
    double d0 = sigma / unit_std(t->type);
    uint16_t dtab[16], mtab[16];
    for (int i = 0; i < 16; i++) {
        double d = d0 * (0.75 + 0.5 * i / 15.0);
        dtab[i] = mr_fp32_to_fp16((float)d);
        double dmin = t->type == MR_TYPE_Q2_K   ? 1.5 * d
                      : t->type == MR_TYPE_Q4_K ? 7.5 * d
                      : t->type == MR_TYPE_Q5_K ? 15.5 * d
                      : t->type == MR_TYPE_Q4_1 ? -7.5 * d /* x = d*q + m, q in 0..15: centred */
                                                : -15.5 * d;
        mtab[i] = mr_fp32_to_fp16((float)dmin);
    }
    uint64_t nb = nbytes / tr->tsize;
    uint64_t jitter = 0;
    int jbits = 0;
    for (uint64_t b = 0; b < nb; b++, p += tr->tsize) {
        if (jbits < 4) { jitter = synth_rng_next(r); jbits = 64; }
        int j = (int)(jitter & 15);
        jitter >>= 4;
        jbits -= 4;
        switch (t->type) {
        case MR_TYPE_Q4_0: case MR_TYPE_Q5_0: case MR_TYPE_Q8_0: case MR_TYPE_IQ4_NL: /* d, quants */
        case MR_TYPE_IQ4_XS: /* d, scales_h, scales_l[4], qs[128] */
            memcpy(p, &dtab[j], 2);
            rand_bytes(r, p + 2, tr->tsize - 2);
            break;
        case MR_TYPE_Q4_1: case MR_TYPE_Q5_1: /* d, m, (qh), qs */
            memcpy(p, &dtab[j], 2);
            memcpy(p + 2, &mtab[j], 2);
            rand_bytes(r, p + 4, tr->tsize - 4);
            break;
        case MR_TYPE_Q4_K: case MR_TYPE_Q5_K: /* d, dmin, scales[12], (qh), qs */
            memcpy(p, &dtab[j], 2);
            memcpy(p + 2, &mtab[j], 2);
            rand_bytes(r, p + 4, tr->tsize - 4);
            break;
        case MR_TYPE_Q2_K: /* scales[16], qs[64], d, dmin */
            rand_bytes(r, p, 80);
            memcpy(p + 80, &dtab[j], 2);
            memcpy(p + 82, &mtab[j], 2);
            break;
        case MR_TYPE_Q3_K: /* hmask[32], qs[64], scales[12], d */
            rand_bytes(r, p, 108);
            memcpy(p + 108, &dtab[j], 2);
            break;
        case MR_TYPE_Q6_K: /* ql[128], qh[64], scales[16], d */
            rand_bytes(r, p, 208);
            memcpy(p + 208, &dtab[j], 2);
            break;
        }
    }
    return 0;
}

/* ---- synthetic vocabulary ------------------------------------------------------------- */
/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the others
 * to U+0100 upwards, in byte order. Writes the UTF-8 of byte b's character. */
static void byte_token(int b, char out[4]) {
    int cp;
    bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    if (printable) cp = b;
    else {
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff))) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; }
    else { out[0] = (char)(0xc0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3f)); out[2] = 0; }
}

static uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

void synth_vocab_free(synth_vocab *v) {
    if (v->tokens)
        for (int64_t i = 0; i < v->n_tokens; i++) free(v->tokens[i]);
    if (v->merges)
        for (int64_t i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->merges);
    free(v->types);
    memset(v, 0, sizeof *v);
}

int synth_vocab_make(synth_vocab *v, int64_t n_vocab, uint64_t seed) {
    memset(v, 0, sizeof *v);
    if (n_vocab < 258 || n_vocab > (1 << 24)) {
        mr_seterr("synth: vocabulary size %lld out of range [258, 16M]", (long long)n_vocab);
        return -1;
    }
    v->tokens = mr_calloc((size_t)n_vocab, sizeof(char *));
    v->types = mr_calloc((size_t)n_vocab, sizeof(int32_t));
    v->merges = mr_calloc((size_t)n_vocab, sizeof(char *));
    uint64_t cap = 1024;
    while (cap < (uint64_t)n_vocab * 3) cap *= 2;
    int64_t *set = mr_malloc(cap * sizeof(int64_t));
    if (!v->tokens || !v->types || !v->merges || !set) goto fail;
    for (uint64_t i = 0; i < cap; i++) set[i] = -1;
    v->n_tokens = n_vocab;
    for (int b = 0; b < 256; b++) {
        char s[4];
        byte_token(b, s);
        if (!(v->tokens[b] = mr_strdup(s))) goto fail;
        v->types[b] = 1; /* normal */
        uint64_t h = str_hash(s) & (cap - 1);
        while (set[h] >= 0) h = (h + 1) & (cap - 1);
        set[h] = b;
    }
    synth_rng r;
    synth_rng_seed(&r, seed ^ 0x766f636162ull);
    /* Text-like merges: start mostly from letters and 'Ġ' (byte 0x20), grow by
     * joining random earlier tokens; each new string is unique. */
    static const char k_base[] = "etaoinshrdlucmfwypvbgkjqxzETAOINSHRDLU       .,";
    int64_t n_norm = n_vocab - 2;
    for (int64_t id = 256; id < n_norm; id++) {
        char buf[80];
        for (int tries = 0;; tries++) {
            int64_t a, b;
            uint64_t x = synth_rng_next(&r);
            if (id < 600 || (x & 3) == 0) a = (uint8_t)k_base[(x >> 8) % (sizeof k_base - 1)];
            else a = 256 + (int64_t)((double)(id - 256) * rng_u(&r) * rng_u(&r));
            if ((x & 12) == 0 || id < 400) b = (uint8_t)k_base[(x >> 24) % (sizeof k_base - 1)];
            else b = 256 + (int64_t)((double)(id - 256) * rng_u(&r));
            if (tries > 200) { a = (int64_t)(x % (uint64_t)id); b = (int64_t)((x >> 32) % (uint64_t)id); }
            size_t la = strlen(v->tokens[a]), lb = strlen(v->tokens[b]);
            if (la + lb > 48) continue;
            memcpy(buf, v->tokens[a], la);
            memcpy(buf + la, v->tokens[b], lb + 1);
            uint64_t h = str_hash(buf) & (cap - 1);
            bool dup = false;
            while (set[h] >= 0) {
                if (!strcmp(v->tokens[set[h]], buf)) { dup = true; break; }
                h = (h + 1) & (cap - 1);
            }
            if (dup) continue;
            if (!(v->tokens[id] = mr_strdup(buf))) goto fail;
            set[h] = id;
            v->types[id] = 1;
            char *m = mr_malloc(la + lb + 2);
            if (!m) goto fail;
            memcpy(m, v->tokens[a], la);
            m[la] = ' ';
            memcpy(m + la + 1, v->tokens[b], lb + 1);
            v->merges[v->n_merges++] = m;
            break;
        }
    }
    v->bos = (uint32_t)(n_vocab - 2);
    v->eos = (uint32_t)(n_vocab - 1);
    if (!(v->tokens[v->bos] = mr_strdup("<|begin_of_text|>")) || !(v->tokens[v->eos] = mr_strdup("<|end_of_text|>")))
        goto fail;
    v->types[v->bos] = v->types[v->eos] = 3; /* control */
    free(set);
    return 0;
fail:
    free(set);
    synth_vocab_free(v);
    return -1;
}
