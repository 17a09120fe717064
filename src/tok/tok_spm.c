/*
 * tok_spm.c — SentencePiece tokenization as llama.cpp's llm_tokenizer_spm does
 * it: the text (spaces already replaced by U+2581) is split into UTF-8
 * characters (by lead byte, clipped at the end: invalid bytes are 1-byte
 * symbols); every adjacent pair whose concatenation is a vocabulary entry is
 * queued with that entry's score; the highest score is merged first (ties:
 * leftmost), new neighbours are queued, and the remaining symbols are emitted
 * as their ids, or byte by byte as <0xNN> tokens when they are no entry.
 */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tok/tok_int.h"

typedef struct {
    uint32_t start, n;
    int32_t prev, next;
} ssym;

typedef struct {
    float score;
    int32_t left, right;
    uint32_t size;
} sbigram;

static __thread ssym *t_sym;
static __thread sbigram *t_heap;
static __thread size_t t_sym_cap, t_heap_cap;

void tok_spm_scratch_free(void) {
    free(t_sym);
    free(t_heap);
    t_sym = NULL;
    t_heap = NULL;
    t_sym_cap = t_heap_cap = 0;
}

static inline bool sb_first(const sbigram *a, const sbigram *b) { /* a comes out before b */
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int sheap_push(int *n, sbigram b) {
    if ((size_t)*n >= t_heap_cap) {
        size_t nc = t_heap_cap ? t_heap_cap * 2 : 256;
        sbigram *h = mr_realloc(t_heap, nc * sizeof *h);
        if (!h) return -1;
        t_heap = h;
        t_heap_cap = nc;
        tok_scratch_register();
    }
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!sb_first(&b, &t_heap[p])) break;
        t_heap[i] = t_heap[p];
        i = p;
    }
    t_heap[i] = b;
    return 0;
}

static sbigram sheap_pop(int *n) {
    sbigram top = t_heap[0];
    sbigram last = t_heap[--(*n)];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        const sbigram *best = &last;
        if (l < *n && sb_first(&t_heap[l], best)) m = l, best = &t_heap[l];
        if (r < *n && sb_first(&t_heap[r], best)) m = r;
        if (m == i) break;
        t_heap[i] = t_heap[m];
        i = m;
    }
    if (*n > 0) t_heap[i] = last;
    return top;
}

static int try_add(const tok_vocab *v, const char *text, int *nh, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return 0;
    uint32_t start = t_sym[left].start, size = t_sym[left].n + t_sym[right].n;
    int32_t id = tok_strmap_get(&v->map, text + start, size);
    if (id < 0) return 0;
    return sheap_push(nh, (sbigram){v->score[id], left, right, size});
}

/* Token for one byte: <0xNN>, else the 1-byte entry, else UNK, else none. */
static int32_t spm_byte_token(const tok_vocab *v, uint8_t b) {
    if (v->byte_tok[b] >= 0) return v->byte_tok[b];
    return v->unk;
}

/* One chunk: the whole algorithm above on text[0, len). */
static int spm_chunk(const tok_vocab *v, const char *text, size_t len, int32_t **out, int *n, int *cap) {
    if (t_sym_cap < len) {
        ssym *s = mr_realloc(t_sym, len * sizeof *s);
        if (!s) return -1;
        t_sym = s;
        t_sym_cap = len;
        tok_scratch_register();
    }
    static const uint8_t k_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    int32_t ns = 0;
    for (size_t off = 0; off < len;) {
        size_t cl = k_len[(uint8_t)text[off] >> 4];
        if (cl > len - off) cl = len - off;
        t_sym[ns] = (ssym){(uint32_t)off, (uint32_t)cl, ns - 1, off + cl == len ? -1 : ns + 1};
        off += cl;
        ns++;
    }
    int nh = 0;
    for (int32_t i = 1; i < ns; i++)
        if (try_add(v, text, &nh, i - 1, i) < 0) return -1;
    while (nh > 0) {
        sbigram bg = sheap_pop(&nh);
        ssym *l = &t_sym[bg.left], *r = &t_sym[bg.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != bg.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) t_sym[r->next].prev = bg.left;
        if (try_add(v, text, &nh, l->prev, bg.left) < 0 || try_add(v, text, &nh, bg.left, l->next) < 0) return -1;
    }
    for (int32_t i = 0; i >= 0; i = t_sym[i].next) {
        const ssym *s = &t_sym[i];
        int32_t id = tok_strmap_get(&v->map, text + s->start, s->n);
        if (id >= 0) {
            if (tok_push(out, n, cap, id) < 0) return -1;
            continue;
        }
        for (uint32_t j = 0; j < s->n; j++) {
            int32_t b = spm_byte_token(v, (uint8_t)text[s->start + j]);
            if (b >= 0 && tok_push(out, n, cap, b) < 0) return -1;
        }
    }
    return 0;
}

/* The text is cut into chunks between two characters whose boundary bytes are
 * never adjacent inside a vocabulary entry: no bigram can span such a cut, so
 * merging each chunk alone gives exactly the result of merging the whole text
 * (the merge order restricted to a chunk is unchanged), with small heaps. */
int tok_spm_text(const tok_vocab *v, const char *text, size_t len, int32_t **out, int *n, int *cap) {
    if (len == 0) return 0;
    if (len > UINT32_MAX / 2) {
        mr_seterr("tokenizer: text of %zu bytes is too long", len);
        return -1;
    }
    static const uint8_t k_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    size_t cs = 0;
    for (size_t off = 0; off < len;) {
        size_t cl = k_len[(uint8_t)text[off] >> 4];
        if (cl > len - off) cl = len - off;
        off += cl;
        if (off < len) {
            unsigned k = (unsigned)(uint8_t)text[off - 1] << 8 | (uint8_t)text[off];
            if (v->pair_bits[k >> 3] & (1u << (k & 7))) continue;
            if (spm_chunk(v, text + cs, off - cs, out, n, cap) < 0) return -1;
            cs = off;
        }
    }
    return spm_chunk(v, text + cs, len - cs, out, n, cap);
}
