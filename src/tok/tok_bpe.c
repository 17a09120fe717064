/*
 * tok_bpe.c — byte-level BPE as llama.cpp's llm_tokenizer_bpe_session does it.
 *
 * A pre-tokenizer word is byte-encoded (GPT-2 byte-to-unicode), split into one
 * symbol per byte, and adjacent pairs are merged lowest merge rank first (ties:
 * leftmost first) until no pair has a rank. Each remaining symbol is emitted as
 * its vocabulary id; a symbol that is no vocabulary entry is emitted byte by
 * byte (each byte of its encoded text looked up as a 1-byte entry, skipped if
 * absent — llama.cpp's fallback). With ignore_merges (llama3), a word that is a
 * vocabulary entry as a whole is emitted directly.
 *
 * Strings are interned: vocabulary texts keep their ids, merge parts that are
 * not tokens get ids >= n_vocab, so a pair lookup is one u64 hash probe and the
 * result of a merge is known from its rank. Results per word are cached.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tok/tok_int.h"

#define CACHE_MAX_WORD 256
#define CACHE_MAX_ENTRIES (1u << 17)

typedef struct {
    char *key; /* word bytes followed by the ids */
    uint32_t klen;
    int32_t n;
    int32_t *ids;
} cache_entry;

struct tok_bpe_cache {
    pthread_mutex_t mu;
    tok_strmap map; /* word -> entry index */
    cache_entry *e;
    uint32_t n, cap;
};

static void cache_clear(tok_bpe_cache *c) {
    for (uint32_t i = 0; i < c->n; i++) free(c->e[i].key);
    c->n = 0;
    tok_strmap_free(&c->map);
    tok_strmap_init(&c->map, 4096);
}

/* Intern a string: returns its id, adding an owned copy with a fresh id
 * (>= n_vocab) if it is new. -2 on allocation failure. */
static int32_t intern(tok_vocab *v, const char *s, uint32_t len) {
    int32_t id = tok_strmap_get(&v->intern, s, len);
    if (id >= 0) return id;
    if (v->n_intern_extra >= v->cap_intern_extra) {
        int32_t nc = v->cap_intern_extra ? v->cap_intern_extra * 2 : 1024;
        char **p = mr_realloc(v->intern_extra, (size_t)nc * sizeof *p);
        if (!p) return -2;
        v->intern_extra = p;
        v->cap_intern_extra = nc;
    }
    char *copy = mr_malloc(len + 1);
    if (!copy) return -2;
    memcpy(copy, s, len);
    copy[len] = 0;
    id = v->n_vocab + v->n_intern_extra;
    v->intern_extra[v->n_intern_extra++] = copy;
    if (tok_strmap_put(&v->intern, copy, len, id) < 0) return -2;
    return id;
}

int tok_bpe_init(tok_vocab *v, const gguf_value *merges) {
    if (tok_strmap_init(&v->intern, (uint32_t)v->n_vocab * 2) < 0) return -1;
    for (int32_t i = 0; i < v->n_vocab; i++)
        if (tok_strmap_put(&v->intern, v->text[i], v->len[i], i) < 0) return -1;
    uint64_t nm = merges ? merges->n : 0;
    if (nm > INT32_MAX) {
        mr_seterr("tokenizer.ggml.merges: %llu entries is too many", (unsigned long long)nm);
        return -1;
    }
    v->n_merges = (int32_t)nm;
    v->merge_result = mr_malloc((nm ? nm : 1) * sizeof *v->merge_result);
    if (!v->merge_result || tok_u64map_init(&v->merge_rank, (uint32_t)nm) < 0) return -1;
    char *buf = NULL;
    size_t bcap = 0;
    for (uint64_t r = 0; r < nm; r++) {
        const char *s = ((char **)merges->arr)[r];
        uint64_t len = merges->lens[r];
        v->merge_result[r] = -1;
        /* llama.cpp: split at the first space after position 0 */
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp) continue;
        uint32_t ll = (uint32_t)(sp - s), rl = (uint32_t)(len - ll - 1);
        int32_t a = intern(v, s, ll), b = intern(v, sp + 1, rl);
        if (bcap < len) {
            char *nb = mr_realloc(buf, len + 1);
            if (!nb) return -1;
            buf = nb;
            bcap = len + 1;
        }
        memcpy(buf, s, ll);
        memcpy(buf + ll, sp + 1, rl);
        int32_t m = intern(v, buf, ll + rl);
        if (a < 0 || b < 0 || m < 0) {
            free(buf);
            return -1;
        }
        v->merge_result[r] = m;
        if (tok_u64map_put_new(&v->merge_rank, ((uint64_t)(uint32_t)a << 32) | (uint32_t)b, (int32_t)r) < 0) {
            free(buf);
            return -1;
        }
    }
    free(buf);
    const tok_bytechar *b2u = tok_byte_to_unicode();
    for (int b = 0; b < 256; b++) {
        v->byte_sym[b] = tok_strmap_get(&v->intern, b2u[b].s, b2u[b].n);
        char c = (char)b;
        v->byte_tok[b] = tok_strmap_get(&v->map, &c, 1);
    }
    v->cache = mr_calloc(1, sizeof *v->cache);
    if (!v->cache) return -1;
    pthread_mutex_init(&v->cache->mu, NULL);
    if (tok_strmap_init(&v->cache->map, 4096) < 0) return -1;
    return 0;
}

void tok_bpe_free(tok_vocab *v) {
    if (v->cache) {
        for (uint32_t i = 0; i < v->cache->n; i++) free(v->cache->e[i].key);
        free(v->cache->e);
        tok_strmap_free(&v->cache->map);
        pthread_mutex_destroy(&v->cache->mu);
        free(v->cache);
        v->cache = NULL;
    }
    for (int32_t i = 0; i < v->n_intern_extra; i++) free(v->intern_extra[i]);
    free(v->intern_extra);
    tok_strmap_free(&v->intern);
    tok_u64map_free(&v->merge_rank);
    free(v->merge_result);
}

/* ---- per-word merge ------------------------------------------------------------------ */
typedef struct {
    uint32_t start, n; /* bytes of the encoded word */
    int32_t id;        /* intern id, -1 if not interned */
    int32_t prev, next;
} sym;

typedef struct {
    int32_t rank, left, right;
    uint32_t ln, rn;
} bigram;

/* Per-thread scratch, grown as needed. */
static __thread sym *t_sym;
static __thread bigram *t_heap;
static __thread char *t_enc;
static __thread size_t t_sym_cap, t_heap_cap, t_enc_cap;

void tok_bpe_scratch_free(void) {
    free(t_sym);
    free(t_heap);
    free(t_enc);
    t_sym = NULL;
    t_heap = NULL;
    t_enc = NULL;
    t_sym_cap = t_heap_cap = t_enc_cap = 0;
}

/* One key for both tokenizers: its destructor frees this thread's scratch. */
static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;
static __thread bool t_registered;

static void scratch_dtor(void *p) {
    (void)p;
    tok_bpe_scratch_free();
    tok_spm_scratch_free();
}
static void scratch_key_init(void) { pthread_key_create(&g_scratch_key, scratch_dtor); }

void tok_scratch_register(void) {
    if (t_registered) return;
    pthread_once(&g_scratch_once, scratch_key_init);
    pthread_setspecific(g_scratch_key, (void *)1);
    t_registered = true;
}

static inline bool bg_less(const bigram *a, const bigram *b) { /* a comes out first */
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int heap_push(int *n, bigram b) {
    if ((size_t)*n >= t_heap_cap) {
        size_t nc = t_heap_cap ? t_heap_cap * 2 : 256;
        bigram *h = mr_realloc(t_heap, nc * sizeof *h);
        if (!h) return -1;
        t_heap = h;
        t_heap_cap = nc;
        tok_scratch_register();
    }
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!bg_less(&b, &t_heap[p])) break;
        t_heap[i] = t_heap[p];
        i = p;
    }
    t_heap[i] = b;
    return 0;
}

static bigram heap_pop(int *n) {
    bigram top = t_heap[0];
    bigram last = t_heap[--(*n)];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        const bigram *best = &last;
        if (l < *n && bg_less(&t_heap[l], best)) m = l, best = &t_heap[l];
        if (r < *n && bg_less(&t_heap[r], best)) m = r;
        if (m == i) break;
        t_heap[i] = t_heap[m];
        i = m;
    }
    if (*n > 0) t_heap[i] = last;
    return top;
}

static int add_bigram(const tok_vocab *v, int *nh, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return 0;
    const sym *a = &t_sym[left], *b = &t_sym[right];
    if (a->id < 0 || b->id < 0) return 0;
    int32_t rank = tok_u64map_get(&v->merge_rank, ((uint64_t)(uint32_t)a->id << 32) | (uint32_t)b->id);
    if (rank < 0) return 0;
    return heap_push(nh, (bigram){rank, left, right, a->n, b->n});
}

static int bpe_merge(const tok_vocab *v, const char *raw, uint32_t raw_len, int32_t **out, int *n, int *cap) {
    const tok_bytechar *b2u = tok_byte_to_unicode();
    if (t_enc_cap < (size_t)raw_len * 2 + 1) {
        char *e = mr_realloc(t_enc, (size_t)raw_len * 2 + 1);
        if (!e) return -1;
        t_enc = e;
        t_enc_cap = (size_t)raw_len * 2 + 1;
        tok_scratch_register();
    }
    if (t_sym_cap < raw_len) {
        sym *s = mr_realloc(t_sym, (size_t)raw_len * sizeof *s);
        if (!s) return -1;
        t_sym = s;
        t_sym_cap = raw_len;
        tok_scratch_register();
    }
    uint32_t el = 0;
    for (uint32_t i = 0; i < raw_len; i++) {
        const tok_bytechar *c = &b2u[(uint8_t)raw[i]];
        t_sym[i] = (sym){el, c->n, v->byte_sym[(uint8_t)raw[i]], (int32_t)i - 1,
                         i + 1 == raw_len ? -1 : (int32_t)i + 1};
        memcpy(t_enc + el, c->s, c->n);
        el += c->n;
    }
    if (v->ignore_merges) {
        int32_t id = tok_strmap_get(&v->map, t_enc, el);
        if (id >= 0) return tok_push(out, n, cap, id);
    }
    int nh = 0;
    for (uint32_t i = 1; i < raw_len; i++)
        if (add_bigram(v, &nh, (int32_t)i - 1, (int32_t)i) < 0) return -1;
    while (nh > 0) {
        bigram bg = heap_pop(&nh);
        sym *l = &t_sym[bg.left], *r = &t_sym[bg.right];
        if (l->n == 0 || r->n == 0 || l->n != bg.ln || r->n != bg.rn) continue; /* outdated */
        l->n += r->n;
        r->n = 0;
        l->id = v->merge_result[bg.rank];
        l->next = r->next;
        if (r->next >= 0) t_sym[r->next].prev = bg.left;
        if (add_bigram(v, &nh, l->prev, bg.left) < 0 || add_bigram(v, &nh, bg.left, l->next) < 0) return -1;
    }
    for (int32_t i = 0; i >= 0 && raw_len > 0; i = t_sym[i].next) {
        const sym *s = &t_sym[i];
        if (s->n == 0) continue;
        if (s->id >= 0 && s->id < v->n_vocab) {
            if (tok_push(out, n, cap, s->id) < 0) return -1;
            continue;
        }
        for (uint32_t j = 0; j < s->n; j++) {
            int32_t id = v->byte_tok[(uint8_t)t_enc[s->start + j]];
            if (id >= 0 && tok_push(out, n, cap, id) < 0) return -1;
        }
    }
    return 0;
}

int tok_bpe_word(const tok_vocab *v, const char *raw, uint32_t raw_len, int32_t **out, int *n, int *cap) {
    tok_bpe_cache *c = v->cache;
    bool cacheable = raw_len <= CACHE_MAX_WORD;
    if (cacheable) {
        pthread_mutex_lock(&c->mu);
        int32_t e = tok_strmap_get(&c->map, raw, raw_len);
        if (e >= 0) {
            const cache_entry *ce = &c->e[e];
            int rc = 0;
            for (int32_t i = 0; i < ce->n && rc == 0; i++) rc = tok_push(out, n, cap, ce->ids[i]);
            pthread_mutex_unlock(&c->mu);
            return rc;
        }
        pthread_mutex_unlock(&c->mu);
    }
    int n0 = *n;
    if (bpe_merge(v, raw, raw_len, out, n, cap) < 0) return -1;
    if (!cacheable) return 0;
    int32_t nid = *n - n0;
    char *blob = malloc(raw_len + sizeof(int32_t) * (size_t)nid + sizeof(int32_t));
    if (!blob) return 0; /* caching is optional */
    int32_t *ids = (int32_t *)blob;
    memcpy(ids, *out + n0, sizeof(int32_t) * (size_t)nid);
    char *key = blob + sizeof(int32_t) * ((size_t)nid + 1);
    memcpy(key, raw, raw_len);
    pthread_mutex_lock(&c->mu);
    if (c->n >= CACHE_MAX_ENTRIES) cache_clear(c);
    if (tok_strmap_get(&c->map, key, raw_len) >= 0) { /* another thread added it */
        pthread_mutex_unlock(&c->mu);
        free(blob);
        return 0;
    }
    if (c->n >= c->cap) {
        uint32_t nc = c->cap ? c->cap * 2 : 4096;
        cache_entry *ne = realloc(c->e, nc * sizeof *ne);
        if (!ne) {
            pthread_mutex_unlock(&c->mu);
            free(blob);
            return 0;
        }
        c->e = ne;
        c->cap = nc;
    }
    c->e[c->n] = (cache_entry){blob, raw_len, nid, ids};
    if (tok_strmap_put(&c->map, key, raw_len, (int32_t)c->n) == 0) c->n++;
    else free(blob);
    pthread_mutex_unlock(&c->mu);
    return 0;
}
