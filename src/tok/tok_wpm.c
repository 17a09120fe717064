/*
 * tok_wpm.c — WordPiece (tokenizer.ggml.model "bert") as llama.cpp's
 * llm_tokenizer_wpm_session does it (src/llama-vocab.cpp):
 *
 *  1. preprocess: the text is decoded to code points (each invalid byte is
 *     U+FFFD, dropped below) and every code point is replaced by the FIRST
 *     code point of its canonical decomposition (llama.cpp's
 *     unicode_cpts_normalize_nfd: "é" -> "e", a Hangul syllable -> its leading
 *     jamo; combining marks already in the text are kept). Then, per code point:
 *       - White_Space (llama.cpp's set, incl. U+0085) ends the current word;
 *       - U+0000, U+FFFD and \p{C} except unassigned (Cc Cf Co Cs) are dropped;
 *       - the rest is lowercased (simple mapping of UnicodeData.txt);
 *       - \p{P}, ASCII \p{S} ($+<=>^`|~) and CJK ideographs (llama.cpp's
 *         is_chinese_char ranges) are words of their own;
 *       - anything else is appended to the current word.
 *  2. each word gets the phantom-space prefix U+2581 (the GGUF converter
 *     stores BERT word-start pieces as "▁piece" and "##piece" continuations
 *     as "piece") and is cut greedily, left to right, into the longest
 *     vocabulary entries (byte-wise, at most max_token_len bytes); if some
 *     position matches nothing, the word's tokens are dropped and the word is
 *     one UNK token.
 *
 * Unicode properties come from libunistring (general category, simple
 * lowercase, canonical decomposition); llama.cpp's tables are generated from
 * the UnicodeData.txt of its time, so only code points assigned in a newer
 * Unicode version than libunistring's can differ.
 */
#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>

#include "base/base.h"
#include "tok/tok_int.h"

/* First code point of the full canonical decomposition of cp (cp if none). */
static uint32_t nfd_first(uint32_t cp) {
    ucs4_t d[UC_DECOMPOSITION_MAX_LENGTH];
    for (int depth = 0; depth < 8; depth++) {
        if (uc_canonical_decomposition((ucs4_t)cp, d) <= 0) break;
        cp = d[0];
    }
    return cp;
}

/* llama.cpp's unicode_set_whitespace (Unicode White_Space). */
static bool wpm_is_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* llama.cpp's is_chinese_char (the HF BERT ranges, with its 0x2B920 quirk). */
static bool wpm_is_cjk(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) ||
           (cp >= 0x2B920 && cp <= 0x2CEAF) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* \p{C} without Cn (llama.cpp flags Cn as undefined, not control). */
static bool wpm_is_control(uint32_t cp) {
    return uc_is_general_category((ucs4_t)cp, UC_CATEGORY_Cc) || uc_is_general_category((ucs4_t)cp, UC_CATEGORY_Cf) ||
           uc_is_general_category((ucs4_t)cp, UC_CATEGORY_Co) || uc_is_general_category((ucs4_t)cp, UC_CATEGORY_Cs);
}

static int put_utf8(char *dst, uint32_t cp) {
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xC0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xE0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    dst[0] = (char)(0xF0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Greedy longest match of one word (w[0..3) is the U+2581 prefix; n > 3).
 * Appends the tokens, or UNK when a position matches nothing. */
static int wpm_word(const tok_vocab *v, const char *w, size_t n, int32_t **out, int *nout, int *cap) {
    int start = *nout;
    size_t maxl = (size_t)v->max_token_len;
    for (size_t i = 0; i < n;) {
        size_t j = i + maxl + 1 < n ? i + maxl + 1 : n;
        int32_t id = TOK_NULL;
        for (; j > i; j--) {
            id = tok_strmap_get(&v->map, w + i, (uint32_t)(j - i));
            if (id >= 0) break;
        }
        if (id < 0) { /* discard the word's tokens */
            *nout = start;
            break;
        }
        if (tok_push(out, nout, cap, id) < 0) return -1;
        i = j;
    }
    if (*nout == start && v->unk >= 0) return tok_push(out, nout, cap, v->unk);
    return 0;
}

int tok_wpm_text(const tok_vocab *v, const char *text, size_t len, int32_t **out, int *n, int *cap) {
    if (len == 0) return 0;
    char *clean = NULL;
    size_t ccap = 0;
    long cl = tok_utf8_sanitize(text, len, &clean, &ccap);
    if (cl < 0) return -1;
    /* a lowercased code point takes at most 4 bytes; the word buffer never
     * outgrows 3 (prefix) + 4 bytes per input byte of the clean text */
    size_t wcap = 3 + 4 * (size_t)cl + 8;
    char *w = mr_malloc(wcap);
    if (!w) {
        free(clean);
        return -1;
    }
    memcpy(w, "\xE2\x96\x81", 3);
    size_t wl = 3;
    int rc = 0;
    const unsigned char *p = (const unsigned char *)clean;
    for (size_t i = 0; rc == 0 && i < (size_t)cl;) {
        int k = tok_utf8_valid_len(p + i, (size_t)cl - i);
        uint32_t cp;
        if (k == 1) cp = p[i];
        else if (k == 2) cp = ((p[i] & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu);
        else if (k == 3) cp = ((p[i] & 0x0Fu) << 12) | ((p[i + 1] & 0x3Fu) << 6) | (p[i + 2] & 0x3Fu);
        else if (k == 4)
            cp = ((p[i] & 0x07u) << 18) | ((p[i + 1] & 0x3Fu) << 12) | ((p[i + 2] & 0x3Fu) << 6) | (p[i + 3] & 0x3Fu);
        else cp = 0xFFFD, k = 1; /* cannot happen after sanitizing */
        i += (size_t)k;
        cp = nfd_first(cp);
        if (wpm_is_space(cp)) {
            if (wl > 3) rc = wpm_word(v, w, wl, out, n, cap);
            wl = 3;
            continue;
        }
        if (cp == 0 || cp == 0xFFFD || wpm_is_control(cp)) continue;
        uint32_t lc = (uint32_t)uc_tolower((ucs4_t)cp);
        bool alone = uc_is_general_category((ucs4_t)cp, UC_CATEGORY_P) ||
                     (cp < 0x7F && uc_is_general_category((ucs4_t)cp, UC_CATEGORY_S)) || wpm_is_cjk(cp);
        if (alone) {
            if (wl > 3) rc = wpm_word(v, w, wl, out, n, cap);
            wl = 3 + (size_t)put_utf8(w + 3, lc);
            if (rc == 0) rc = wpm_word(v, w, wl, out, n, cap);
            wl = 3;
        } else {
            wl += (size_t)put_utf8(w + wl, lc);
        }
    }
    if (rc == 0 && wl > 3) rc = wpm_word(v, w, wl, out, n, cap);
    free(w);
    free(clean);
    return rc;
}
