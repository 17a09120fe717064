/*
 * tok_map.c — the small hash maps of the tokenizer: string -> int32 (token
 * texts, interned merge parts) and u64 -> int32 (merge pair -> rank). Open
 * addressing with linear probing; capacity is a power of two kept under 50%
 * load.
 */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tok/tok_int.h"

/* FNV-1a, 32 bit, with a final avalanche so that low bits are usable. */
uint32_t tok_hash(const char *k, uint32_t len) {
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < len; i++) {
        h ^= (uint8_t)k[i];
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    return h;
}

static uint32_t pow2_for(uint32_t expect) {
    uint32_t cap = 16;
    while (cap < expect * 2 + 1) cap <<= 1;
    return cap;
}

int tok_strmap_init(tok_strmap *m, uint32_t expect) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_for(expect);
    m->key = mr_calloc(m->cap, sizeof *m->key);
    m->klen = mr_calloc(m->cap, sizeof *m->klen);
    m->val = mr_calloc(m->cap, sizeof *m->val);
    m->hash = mr_calloc(m->cap, sizeof *m->hash);
    if (!m->key || !m->klen || !m->val || !m->hash) {
        tok_strmap_free(m);
        return -1;
    }
    return 0;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->key);
    free(m->klen);
    free(m->val);
    free(m->hash);
    memset(m, 0, sizeof *m);
}

static int strmap_grow(tok_strmap *m) {
    tok_strmap n;
    if (tok_strmap_init(&n, m->cap) < 0) return -1; /* doubles capacity */
    for (uint32_t i = 0; i < m->cap; i++) {
        if (!m->key[i]) continue;
        uint32_t j = m->hash[i] & (n.cap - 1);
        while (n.key[j]) j = (j + 1) & (n.cap - 1);
        n.key[j] = m->key[i];
        n.klen[j] = m->klen[i];
        n.val[j] = m->val[i];
        n.hash[j] = m->hash[i];
        n.n++;
    }
    tok_strmap_free(m);
    *m = n;
    return 0;
}

/* Slot of key k, or the empty slot where it would go. */
static uint32_t strmap_slot(const tok_strmap *m, const char *k, uint32_t len, uint32_t h) {
    uint32_t j = h & (m->cap - 1);
    while (m->key[j]) {
        if (m->hash[j] == h && m->klen[j] == len && memcmp(m->key[j], k, len) == 0) return j;
        j = (j + 1) & (m->cap - 1);
    }
    return j;
}

static int strmap_put(tok_strmap *m, const char *k, uint32_t len, int32_t val, bool overwrite, int32_t *existing) {
    if ((m->n + 1) * 2 > m->cap && strmap_grow(m) < 0) return -1;
    uint32_t h = tok_hash(k, len);
    uint32_t j = strmap_slot(m, k, len, h);
    if (m->key[j]) {
        if (overwrite) m->val[j] = val;
        if (existing) *existing = m->val[j];
        return 0;
    }
    /* an empty key needs a non-NULL pointer to mark the slot used */
    m->key[j] = k ? k : "";
    m->klen[j] = len;
    m->val[j] = val;
    m->hash[j] = h;
    m->n++;
    if (existing) *existing = val;
    return 0;
}

int tok_strmap_put(tok_strmap *m, const char *k, uint32_t len, int32_t val) {
    return strmap_put(m, k, len, val, true, NULL);
}

int tok_strmap_put_new(tok_strmap *m, const char *k, uint32_t len, int32_t val, int32_t *existing) {
    return strmap_put(m, k, len, val, false, existing);
}

int32_t tok_strmap_get(const tok_strmap *m, const char *k, uint32_t len) {
    if (!m->cap) return -1;
    uint32_t h = tok_hash(k, len);
    uint32_t j = strmap_slot(m, k, len, h);
    return m->key[j] ? m->val[j] : -1;
}

/* ---- u64 -> int32 ------------------------------------------------------------------ */
static inline uint32_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (uint32_t)x;
}

int tok_u64map_init(tok_u64map *m, uint32_t expect) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_for(expect);
    m->key = mr_calloc(m->cap, sizeof *m->key);
    m->val = mr_calloc(m->cap, sizeof *m->val);
    if (!m->key || !m->val) {
        tok_u64map_free(m);
        return -1;
    }
    return 0;
}

void tok_u64map_free(tok_u64map *m) {
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

int tok_u64map_put_new(tok_u64map *m, uint64_t k, int32_t val) {
    if ((m->n + 1) * 2 > m->cap) {
        tok_u64map n;
        if (tok_u64map_init(&n, m->cap) < 0) return -1;
        for (uint32_t i = 0; i < m->cap; i++) {
            if (!m->key[i]) continue;
            uint32_t j = mix64(m->key[i] - 1) & (n.cap - 1);
            while (n.key[j]) j = (j + 1) & (n.cap - 1);
            n.key[j] = m->key[i];
            n.val[j] = m->val[i];
            n.n++;
        }
        tok_u64map_free(m);
        *m = n;
    }
    uint32_t j = mix64(k) & (m->cap - 1);
    while (m->key[j]) {
        if (m->key[j] == k + 1) return 0;
        j = (j + 1) & (m->cap - 1);
    }
    m->key[j] = k + 1;
    m->val[j] = val;
    m->n++;
    return 0;
}

int32_t tok_u64map_get(const tok_u64map *m, uint64_t k) {
    if (!m->cap) return -1;
    uint32_t j = mix64(k) & (m->cap - 1);
    while (m->key[j]) {
        if (m->key[j] == k + 1) return m->val[j];
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

int tok_push(int32_t **out, int *n, int *cap, int32_t id) {
    if (*n >= *cap) {
        int nc = *cap ? *cap * 2 : 64;
        int32_t *p = mr_realloc(*out, (size_t)nc * sizeof *p);
        if (!p) return -1;
        *out = p;
        *cap = nc;
    }
    (*out)[(*n)++] = id;
    return 0;
}
