/*
 * tok_encode.c — tokenize / detokenize as llama.cpp's llama_vocab::impl does:
 * the special-token partition (tokenizer_st_partition), BOS/EOS, the SPM space
 * prefix and escaping, BPE pre-tokenization + merges, WordPiece, token pieces, the
 * detokenizer with its clean-up passes, and a UTF-8-safe streaming helper.
 */
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tok/tok_int.h"

#define TOK_MAX_TEXT ((size_t)1 << 30)

typedef struct {
    int32_t id; /* >= 0: a special token; -1: raw text [off, off+len) */
    uint32_t off, len;
} frag;

typedef struct {
    frag *f;
    int n, cap;
} frags;

static int frag_push(frags *l, frag f) {
    if (l->n >= l->cap) {
        int nc = l->cap ? l->cap * 2 : 16;
        frag *p = mr_realloc(l->f, (size_t)nc * sizeof *p);
        if (!p) return -1;
        l->f = p;
        l->cap = nc;
    }
    l->f[l->n++] = f;
    return 0;
}

/* Which special tokens occur anywhere in the text (a cheap pre-filter: the
 * partition below only runs for those). present[k] for v->special[k]. */
static int specials_present(const tok_vocab *v, const char *text, size_t len, bool parse_special, uint8_t *present,
                            int *n_present) {
    *n_present = 0;
    if (v->n_special == 0) return 0;
    /* distinct lengths and first bytes of the candidates */
    uint8_t first[256] = {0};
    int lens[64], nl = 0;
    bool many_lens = false;
    tok_strmap m;
    if (tok_strmap_init(&m, (uint32_t)v->n_special) < 0) return -1;
    for (int k = 0; k < v->n_special; k++) {
        int32_t id = v->special[k];
        if (!parse_special && (v->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN))) continue;
        uint32_t l = v->len[id];
        first[(uint8_t)v->text[id][0]] = 1;
        tok_strmap_put(&m, v->text[id], l, k);
        bool seen = false;
        for (int j = 0; j < nl; j++) seen |= lens[j] == (int)l;
        if (!seen) {
            if (nl < (int)MR_ARRAY_LEN(lens)) lens[nl++] = (int)l;
            else many_lens = true;
        }
    }
    if (many_lens) { /* unusual vocabulary: check every candidate with memmem */
        for (int k = 0; k < v->n_special; k++) {
            int32_t id = v->special[k];
            if (!parse_special && (v->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN))) continue;
            if (memmem(text, len, v->text[id], v->len[id])) present[k] = 1, (*n_present)++;
        }
        tok_strmap_free(&m);
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (!first[(uint8_t)text[i]]) continue;
        for (int j = 0; j < nl; j++) {
            if ((size_t)lens[j] > len - i) continue;
            int32_t k = tok_strmap_get(&m, text + i, (uint32_t)lens[j]);
            if (k >= 0 && !present[k]) present[k] = 1, (*n_present)++;
        }
    }
    tok_strmap_free(&m);
    return 0;
}

/* tokenizer_st_partition: split the text at special-token occurrences, longest
 * tokens first; control/unknown ones only when parse_special. */
static int partition(const tok_vocab *v, const char *text, size_t len, bool parse_special, frags *out) {
    out->n = 0;
    if (len == 0) return 0;
    if (frag_push(out, (frag){-1, 0, (uint32_t)len}) < 0) return -1;
    uint8_t *present = mr_calloc((size_t)v->n_special + 1, 1);
    if (!present) return -1;
    int np;
    if (specials_present(v, text, len, parse_special, present, &np) < 0) {
        free(present);
        return -1;
    }
    frags tmp = {0};
    for (int k = 0; k < v->n_special && np > 0; k++) {
        if (!present[k]) continue;
        int32_t id = v->special[k];
        const char *st = v->text[id];
        uint32_t sl = v->len[id];
        uint16_t attr = v->attr[id];
        tmp.n = 0;
        for (int i = 0; i < out->n; i++) {
            frag f = out->f[i];
            if (f.id >= 0) {
                if (frag_push(&tmp, f) < 0) goto oom;
                continue;
            }
            uint32_t off = f.off, flen = f.len;
            for (;;) {
                const char *m = flen >= sl ? memmem(text + off, flen, st, sl) : NULL;
                if (!m) {
                    if (flen > 0 && frag_push(&tmp, (frag){-1, off, flen}) < 0) goto oom;
                    break;
                }
                uint32_t mpos = (uint32_t)(m - text);
                if (mpos > off) {
                    uint32_t ll = mpos - off;
                    if (attr & TOK_ATTR_LSTRIP)
                        while (ll > 0 && isspace((unsigned char)text[off + ll - 1])) ll--;
                    if (ll > 0 && frag_push(&tmp, (frag){-1, off, ll}) < 0) goto oom;
                }
                if (frag_push(&tmp, (frag){id, 0, 0}) < 0) goto oom;
                uint32_t roff = mpos + sl, rlen = off + flen - roff;
                if (rlen == 0) break;
                if (attr & TOK_ATTR_RSTRIP)
                    while (rlen > 0 && isspace((unsigned char)text[roff])) roff++, rlen--;
                off = roff;
                flen = rlen;
            }
        }
        frags t = *out;
        *out = tmp;
        tmp = t;
    }
    free(tmp.f);
    free(present);
    return 0;
oom:
    free(tmp.f);
    free(present);
    return -1;
}

/* Byte-level BPE on one raw fragment. */
static int encode_bpe(const tok_vocab *v, const char *text, size_t len, int32_t **ids, int *n, int *cap) {
    char *clean = NULL;
    size_t ccap = 0;
    long cl = tok_utf8_sanitize(text, len, &clean, &ccap);
    if (cl < 0) return -1;
    tok_spans words = {0}, tmp = {0};
    int rc = tok_pre_split(v->pre_re, clean, (size_t)cl, &words, &tmp);
    for (int i = 0; rc == 0 && i < words.n; i++)
        rc = tok_bpe_word(v, clean + words.s[i].off, words.s[i].len, ids, n, cap);
    free(words.s);
    free(tmp.s);
    free(clean);
    return rc;
}

/* SentencePiece on one raw fragment: optional leading space, ' ' -> U+2581. */
static int encode_spm(const tok_vocab *v, const char *text, size_t len, bool prefix, int32_t **ids, int *n, int *cap) {
    size_t nsp = prefix ? 1 : 0;
    for (size_t i = 0; i < len; i++) nsp += text[i] == ' ';
    char *buf = mr_malloc(len + 1 + nsp * 2 + 1);
    if (!buf) return -1;
    size_t j = 0;
    if (prefix) memcpy(buf, "\xE2\x96\x81", 3), j = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') memcpy(buf + j, "\xE2\x96\x81", 3), j += 3;
        else buf[j++] = text[i];
    }
    int rc = tok_spm_text(v, buf, j, ids, n, cap);
    free(buf);
    return rc;
}

int tok_encode(const tok_vocab *v, const char *text, size_t len, int32_t *out, int cap, bool add_special,
               bool parse_special) {
    if (len > TOK_MAX_TEXT) {
        mr_seterr("tokenize: text of %zu bytes is longer than the limit (%zu)", len, TOK_MAX_TEXT);
        return -1;
    }
    if (!text) len = 0;
    frags fr = {0};
    if (partition(v, text, len, parse_special, &fr) < 0) return -1;
    int32_t *ids = NULL;
    int n = 0, icap = 0, rc = 0;
    bool wpm = v->model == TOK_MODEL_WPM;
    /* WPM: [CLS] ... [SEP] whenever add_special (llama.cpp ignores add_bos/add_sep there) */
    if (add_special && (v->add_bos || wpm) && v->bos >= 0) rc = tok_push(&ids, &n, &icap, v->bos);
    bool prev_special = true; /* SPM: prefix a space to the first fragment and after specials */
    for (int i = 0; rc == 0 && i < fr.n; i++) {
        const frag *f = &fr.f[i];
        if (f->id >= 0) {
            rc = tok_push(&ids, &n, &icap, f->id);
            prev_special = true;
            continue;
        }
        if (v->model == TOK_MODEL_SPM) {
            rc = encode_spm(v, text + f->off, f->len, v->add_space_prefix && prev_special, &ids, &n, &icap);
            prev_special = false;
        } else if (wpm) {
            rc = tok_wpm_text(v, text + f->off, f->len, &ids, &n, &icap);
        } else {
            rc = encode_bpe(v, text + f->off, f->len, &ids, &n, &icap);
        }
    }
    if (rc == 0 && add_special && wpm && v->sep >= 0) rc = tok_push(&ids, &n, &icap, v->sep);
    if (rc == 0 && add_special && !wpm && v->add_eos && v->eos >= 0) rc = tok_push(&ids, &n, &icap, v->eos);
    free(fr.f);
    if (rc < 0) {
        free(ids);
        mr_preerr("tokenize");
        return -1;
    }
    if (out && cap > 0 && n > 0) memcpy(out, ids, sizeof *ids * (size_t)MR_MIN(n, cap));
    free(ids);
    return n;
}

/* ---- decode ---------------------------------------------------------------------------- */
int tok_token_to_piece(const tok_vocab *v, int32_t id, char *buf, int cap, int lstrip, bool special) {
    if (id < 0 || id >= v->n_vocab) {
        mr_seterr("token id %d is out of the vocabulary (%d entries)", id, v->n_vocab);
        return -1;
    }
    if (!special && (v->attr[id] & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL))) return 0;
    const char *p = v->piece[id];
    uint32_t n = v->piece_len[id];
    for (int i = 0; i < lstrip && n && *p == ' '; i++) p++, n--;
    if (n > INT_MAX) return -1;
    if ((int)n > cap) return (int)n;
    if (n) memcpy(buf, p, n);
    return (int)n;
}

/* llama.cpp's clean_up_tokenization_spaces, in place; returns the new length. */
static int32_t clean_spaces(char *text, int32_t total) {
    /* first pass: " ?", " !", " .", " ," */
    const int32_t total1 = total;
    total = total ? 1 : 0;
    for (int32_t i = 1; i < total1; ++i) {
        const char x = text[i];
        if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) total--;
        text[total++] = x;
    }
    /* second pass: strip a single apostrophe between spaces */
    const int32_t total2 = total;
    total = total ? 1 : 0;
    for (int32_t i = 1; i < total2; ++i) {
        const char x = text[i];
        if (x == '\'' && i + 1 < total2 && text[i - 1] == ' ' && text[i + 1] == ' ') {
            total--;
            text[++i] = '\0';
        }
        text[total++] = x;
    }
    /* third pass: " 's", " 'm", " 're", " 've" lose the space */
    const int32_t total3 = total;
    total = total ? 1 : 0;
    for (int32_t i = 1; i < total3; ++i) {
        const char x = text[i];
        if (text[i - 1] == ' ' && x == '\'' && i + 1 < total3) {
            const char x1 = text[i + 1];
            if (x1 == 's' || x1 == 'm') total--;
            else if (i + 2 < total3) {
                const char x2 = text[i + 2];
                if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) total--;
            }
        }
        text[total++] = x;
    }
    return total;
}

int tok_detokenize(const tok_vocab *v, const int32_t *toks, int n, char *buf, int cap, bool remove_special,
                   bool unparse_special) {
    bool remove_space = v->add_space_prefix;
    if (remove_special && v->add_bos && n > 0 && toks[0] == v->bos) {
        remove_space = false;
        n--;
        toks++;
    }
    if (remove_special && v->add_eos && n > 0 && toks[n - 1] == v->eos) n--;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (toks[i] < 0 || toks[i] >= v->n_vocab) {
            mr_seterr("detokenize: token %d (id %d) is out of the vocabulary (%d entries)", i, toks[i], v->n_vocab);
            return -1;
        }
        total += v->piece_len[toks[i]];
    }
    if (total > INT_MAX) {
        mr_seterr("detokenize: output of %zu bytes is too long", total);
        return -1;
    }
    char *tmp = mr_malloc(total + 1);
    if (!tmp) return -1;
    int32_t len = 0;
    for (int i = 0; i < n; i++) {
        int k = tok_token_to_piece(v, toks[i], tmp + len, (int)total - len, remove_space ? 1 : 0, unparse_special);
        remove_space = false;
        len += k;
    }
    if (v->clean_spaces) len = clean_spaces(tmp, len);
    if (len <= cap && len > 0) memcpy(buf, tmp, (size_t)len);
    free(tmp);
    return len;
}

/* ---- streaming ------------------------------------------------------------------------- */
void tok_stream_init(tok_stream *s) { memset(s, 0, sizeof *s); }

void tok_stream_free(tok_stream *s) {
    free(s->data);
    memset(s, 0, sizeof *s);
}

/* Could the k bytes at p (k < needed length) still become a valid sequence? */
static bool utf8_prefix_ok(const unsigned char *p, int k) {
    unsigned c = p[0];
    for (int i = 1; i < k; i++)
        if ((p[i] & 0xC0) != 0x80) return false;
    if (k >= 2) {
        if (c == 0xE0 && p[1] < 0xA0) return false;
        if (c == 0xED && p[1] >= 0xA0) return false;
        if (c == 0xF0 && p[1] < 0x90) return false;
        if (c == 0xF4 && p[1] >= 0x90) return false;
    }
    return true;
}

static int stream_reserve(tok_stream *s, int n) {
    if (n <= s->cap) return 0;
    int nc = s->cap ? s->cap : 256;
    while (nc < n) nc *= 2;
    char *d = mr_realloc(s->data, (size_t)nc);
    if (!d) return -1;
    s->data = d;
    s->cap = nc;
    return 0;
}

int tok_stream_push_bytes(tok_stream *s, const char *bytes, int nb) {
    if (nb < 0 || nb > INT_MAX - 8) return -1;
    int n = s->n_hold + nb;
    if (stream_reserve(s, n + 1) < 0) return -1;
    memcpy(s->data, s->hold, (size_t)s->n_hold);
    if (nb) memcpy(s->data + s->n_hold, bytes, (size_t)nb);
    int cut = n;
    const unsigned char *d = (const unsigned char *)s->data;
    for (int k = 1; k <= 3 && k <= n; k++) {
        unsigned c = d[n - k];
        if ((c & 0xC0) == 0x80) continue;
        int need = (c >= 0xC2 && c < 0xE0) ? 2 : (c >= 0xE0 && c < 0xF0) ? 3 : (c >= 0xF0 && c < 0xF5) ? 4 : 1;
        if (need > k && utf8_prefix_ok(d + n - k, k)) cut = n - k;
        break;
    }
    s->n_hold = n - cut;
    memcpy(s->hold, s->data + cut, (size_t)s->n_hold);
    return cut;
}

int tok_stream_push(tok_stream *s, const tok_vocab *v, int32_t id, bool special) {
    size_t len;
    if (id < 0 || id >= v->n_vocab) {
        mr_seterr("token id %d is out of the vocabulary (%d entries)", id, v->n_vocab);
        return -1;
    }
    const char *p = tok_piece(v, id, &len);
    if (!special && (v->attr[id] & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL))) len = 0;
    if (len > INT_MAX - 8) return -1;
    return tok_stream_push_bytes(s, p, (int)len);
}

int tok_stream_flush(tok_stream *s) {
    int n = s->n_hold;
    if (stream_reserve(s, n + 1) < 0) return -1;
    memcpy(s->data, s->hold, (size_t)n);
    s->n_hold = 0;
    return n;
}
