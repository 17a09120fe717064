/*
 * fuzz_tok.c — libFuzzer target for the tokenizer: arbitrary bytes are
 * encoded (with and without special parsing and BOS/EOS), decoded back, and
 * fed through the streaming decoder. Checks: no crash, the capacity protocol
 * is consistent, every id is in range, the stream releases only whole UTF-8,
 * and for byte-level BPE decoding valid UTF-8 input gives it back.
 * Vocabulary: $MOERUN_FUZZ_VOCAB or ../shared/fixtures/vocab/ggml-vocab-qwen3.gguf.
 * The first input byte selects the flags; the rest is the text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "gguf/gguf.h"
#include "tok/tok.h"

static tok_vocab *g_vocab;

static void load(void) {
    const char *path = getenv("MOERUN_FUZZ_VOCAB");
    if (!path) path = "../shared/fixtures/vocab/ggml-vocab-qwen3.gguf";
    gguf_ctx *g = gguf_open(path);
    g_vocab = g ? tok_vocab_load(g, true) : NULL;
    if (g) gguf_close(g);
    if (!g_vocab) {
        fprintf(stderr, "fuzz_tok: cannot load vocabulary '%s': %s (set MOERUN_FUZZ_VOCAB)\n", path, mr_geterr());
        abort();
    }
}

static bool valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int k = tok_utf8_valid_len((const unsigned char *)s + i, n - i);
        if (!k) return false;
        i += (size_t)k;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_vocab) load();
    if (size == 0) return 0;
    const tok_vocab *v = g_vocab;
    uint8_t flags = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    bool add_special = flags & 1, parse_special = flags & 2;

    int32_t small[4];
    int n = tok_encode(v, text, len, small, 4, add_special, parse_special);
    if (n < 0) abort();
    int32_t *ids = malloc(sizeof *ids * (size_t)(n + 1));
    if (tok_encode(v, text, len, ids, n, add_special, parse_special) != n) abort();
    for (int i = 0; i < MR_MIN(n, 4); i++)
        if (ids[i] != small[i]) abort();
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tok_n_vocab(v)) abort();

    int dl = tok_detokenize(v, ids, n, NULL, 0, flags & 4, flags & 8);
    if (dl < 0) abort();
    char *buf = malloc((size_t)dl + 1);
    if (tok_detokenize(v, ids, n, buf, dl, flags & 4, flags & 8) != dl) abort();

    /* raw concatenation of pieces = input for byte-level BPE on valid UTF-8 without specials */
    tok_stream st;
    tok_stream_init(&st);
    size_t cap = 64, tot = 0;
    char *cat = malloc(cap);
    for (int i = 0; i < n; i++) {
        int r = tok_stream_push(&st, v, ids[i], true);
        if (r < 0) abort();
        /* a release ends on a character boundary unless it holds hopeless bytes */
        if (valid_utf8(text, len) && !valid_utf8(st.data, (size_t)r)) abort();
        while (tot + (size_t)r + 1 > cap) cat = realloc(cat, cap *= 2);
        memcpy(cat + tot, st.data, (size_t)r);
        tot += (size_t)r;
    }
    int r = tok_stream_flush(&st);
    while (tot + (size_t)r + 1 > cap) cat = realloc(cat, cap *= 2);
    memcpy(cat + tot, st.data, (size_t)r);
    tot += (size_t)r;
    if (tok_model_type(v) == TOK_MODEL_BPE && !add_special && valid_utf8(text, len))
        if (tot != len || memcmp(cat, text, len) != 0) abort();
    tok_stream_free(&st);
    free(cat);
    free(buf);
    free(ids);
    return 0;
}
