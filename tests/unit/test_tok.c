/*
 * test_tok.c — tokenizer conformance: llama.cpp test vectors (every string
 * of every .inp file in ../shared/fixtures/vocab must tokenize to the ids of the
 * matching .out line, no BOS/EOS, special parsing off; byte-level BPE
 * vocabularies must also round-trip through the token pieces), plus our own
 * cases whose expected ids follow from facts (see each case).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "check.h"
#include "gguf/gguf.h"
#include "tok/tok.h"
#include "tok/tok_int.h" /* pre-tokenizer splits */

/* Tokenize into a malloc'd array; *n receives the count. */
static int32_t *enc(const tok_vocab *v, const char *s, size_t len, int *n, bool add_special, bool parse_special) {
    int k = tok_encode(v, s, len, NULL, 0, add_special, parse_special);
    if (k < 0) {
        *n = -1;
        return NULL;
    }
    int32_t *ids = malloc(sizeof *ids * (size_t)(k + 1));
    int k2 = tok_encode(v, s, len, ids, k, add_special, parse_special);
    *n = k2 == k ? k : -1;
    return ids;
}

/* Concatenated pieces (special tokens rendered), malloc'd; *len receives the length. */
static char *pieces(const tok_vocab *v, const int32_t *ids, int n, size_t *len) {
    size_t cap = 64, l = 0;
    char *out = malloc(cap);
    for (int i = 0; i < n; i++) {
        size_t pl;
        const char *p = tok_piece(v, ids[i], &pl);
        if (!p) continue;
        while (l + pl + 1 > cap) out = realloc(out, cap *= 2);
        memcpy(out + l, p, pl);
        l += pl;
    }
    out[l] = 0;
    *len = l;
    return out;
}

static tok_vocab *load(const char *dir, const char *name) {
    char path[20000];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    gguf_ctx *g = gguf_open(path);
    if (!g) {
        fprintf(stderr, "%s\n", mr_geterr());
        return NULL;
    }
    tok_vocab *v = tok_vocab_load(g, false);
    if (!v) fprintf(stderr, "%s\n", mr_geterr());
    gguf_close(g);
    return v;
}

/* llama.cpp test-tokenizer-0: strings separated by "\n__ggml_vocab_test__\n". */
static void run_vectors(const char *dir, const char *name, int *n_ok, int *n_all) {
    char path[20000];
    snprintf(path, sizeof path, "%s/%s.inp", dir, name);
    size_t inl, outl;
    char *inp = mr_read_file(path, &inl);
    snprintf(path, sizeof path, "%s/%s.out", dir, name);
    char *out = mr_read_file(path, &outl);
    tok_vocab *v = load(dir, name);
    CHECK(inp && out && v, "%s: cannot load vocab or vectors", name);
    if (!inp || !out || !v) goto done;
    bool byte_level = tok_model_type(v) == TOK_MODEL_BPE;
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t sl = strlen(sep), pos = 0;
    char *line = out;
    int ok = 0, all = 0;
    while (pos < inl) {
        char *nx = memmem(inp + pos, inl - pos, sep, sl);
        size_t end = nx ? (size_t)(nx - inp) : inl;
        const char *s = inp + pos;
        size_t len = end - pos;
        pos = nx ? end + sl : inl;
        /* expected line */
        char *eol = line ? strchr(line, '\n') : NULL;
        if (eol) *eol = 0;
        int32_t want[1024];
        int nw = 0;
        for (char *p = line; p && *p;) {
            char *e;
            long x = strtol(p, &e, 10);
            if (e == p) break;
            if (nw < 1024) want[nw++] = (int32_t)x;
            p = e;
        }
        line = eol ? eol + 1 : NULL;
        int n;
        int32_t *got = enc(v, s, len, &n, false, false);
        bool same = n == nw && (n == 0 || memcmp(got, want, sizeof *got * (size_t)n) == 0);
        all++;
        if (same) ok++;
        CHECK(same, "%s: string %d '%.*s': got %d tokens, want %d", name, all, (int)MR_MIN(len, 60), s, n, nw);
        if (!same && getenv("TOK_VERBOSE")) {
            fprintf(stderr, "  got:");
            for (int i = 0; i < n; i++) fprintf(stderr, " %d", got[i]);
            fprintf(stderr, "\n  want:");
            for (int i = 0; i < nw; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n");
        }
        if (byte_level && n >= 0) {
            size_t dl;
            char *d = pieces(v, got, n, &dl);
            CHECK(dl == len && memcmp(d, s, len) == 0, "%s: string %d does not round-trip", name, all);
            free(d);
        }
        free(got);
    }
    printf("%-34s %d/%d\n", name, ok, all);
    *n_ok += ok;
    *n_all += all;
done:
    tok_vocab_free(v);
    free(inp);
    free(out);
}

/* Ids of a string (no specials), compared with an expected list. */
static bool enc_is(const tok_vocab *v, const char *s, bool parse_special, const int32_t *want, int nw) {
    int n;
    int32_t *got = enc(v, s, strlen(s), &n, false, parse_special);
    bool same = n == nw && memcmp(got, want, sizeof *got * (size_t)n) == 0;
    if (!same) {
        fprintf(stderr, "  '%s' got:", s);
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", got[i]);
        fprintf(stderr, "\n");
    }
    free(got);
    return same;
}

static bool roundtrip(const tok_vocab *v, const char *s, size_t len) {
    int n;
    int32_t *ids = enc(v, s, len, &n, false, false);
    size_t dl;
    char *d = pieces(v, ids, n, &dl);
    bool ok = dl == len && memcmp(d, s, len) == 0;
    free(ids);
    free(d);
    return ok;
}

/* Decoded text of each token, to test splitting invariants. */
static int token_strings(const tok_vocab *v, const char *s, char out[][64], int max) {
    int n;
    int32_t *ids = enc(v, s, strlen(s), &n, false, false);
    int k = 0;
    for (int i = 0; i < n && k < max; i++) {
        size_t pl;
        const char *p = tok_piece(v, ids[i], &pl);
        snprintf(out[k++], 64, "%.*s", (int)MR_MIN(pl, 63), p);
    }
    free(ids);
    return k;
}

static void own_cases_qwen3(const char *dir) {
    tok_vocab *v = load(dir, "ggml-vocab-qwen3.gguf");
    CHECK(v != NULL, "qwen3 vocab");
    if (!v) return;
    /* specials: ids from the vocabulary itself */
    int32_t ims = tok_find(v, "<|im_start|>", 12), ime = tok_find(v, "<|im_end|>", 10);
    int32_t eot_text = tok_find(v, "<|endoftext|>", 13);
    CHECK(ims >= 0 && ime >= 0 && eot_text >= 0, "qwen3 has <|im_start|>, <|im_end|>, <|endoftext|>");
    CHECK(tok_attr(v, ims) & TOK_ATTR_CONTROL, "<|im_start|> is a control token");
    CHECK(tok_is_eog(v, ime) && tok_is_eog(v, eot_text), "<|im_end|> and <|endoftext|> end generation");
    CHECK(!tok_is_eog(v, ims), "<|im_start|> does not end generation");
    CHECK(!tok_add_bos(v), "qwen2 pre-tokenizer adds no BOS");
    /* parse_special on: the control token is one id; off: plain text (several ids, no control id) */
    int32_t w1[] = {ims};
    CHECK(enc_is(v, "<|im_start|>", true, w1, 1), "<|im_start|> with parse_special is one token");
    int n;
    int32_t *ids = enc(v, "<|im_start|>", 12, &n, false, false);
    bool has_ctl = false;
    for (int i = 0; i < n; i++) has_ctl |= ids[i] == ims;
    CHECK(n > 1 && !has_ctl, "<|im_start|> without parse_special is plain text (%d tokens)", n);
    free(ids);
    /* chat line: the pieces of the specials and the text between them */
    {
        const char *s = "<|im_start|>user\nHi<|im_end|>";
        ids = enc(v, s, strlen(s), &n, false, true);
        int32_t user = tok_find(v, "user", 4), nl = tok_find(v, "\xC4\x8A", 2), hi = tok_find(v, "Hi", 2);
        int32_t w[] = {ims, user, nl, hi, ime};
        CHECK(n == 5 && !memcmp(ids, w, sizeof w), "chatml line = im_start user \\n Hi im_end");
        free(ids);
    }
    /* a single vocabulary entry gives its id: " Hello" is "ĠHello" */
    int32_t hello = tok_find(v, "\xC4\xA0Hello", 7);
    CHECK(hello >= 0 && enc_is(v, " Hello", false, &hello, 1), "' Hello' is the single entry 'ĠHello'");
    /* qwen2 splits digits one by one: 12345 -> 5 tokens, each one digit */
    char ts[64][64];
    int k = token_strings(v, "12345", ts, 64);
    bool digits = k == 5;
    for (int i = 0; i < k && digits; i++) digits = strlen(ts[i]) == 1;
    CHECK(digits, "qwen2: 12345 -> 5 single-digit tokens (%d)", k);
    /* contractions in capitals split like lower case: "DON'T" -> ... "'T" */
    k = token_strings(v, "DON'T", ts, 64);
    CHECK(k >= 2 && !strcmp(ts[k - 1], "'T"), "qwen2: DON'T ends with the contraction 'T");
    /* whitespace: "a\t\tb" keeps "\t" runs apart from the letter; "\r\n" is one piece or more, never merged with text */
    k = token_strings(v, "x \r\n\ty", ts, 64);
    CHECK(k >= 3 && !strcmp(ts[0], "x") && ts[k - 1][strlen(ts[k - 1]) - 1] == 'y', "CR/LF/tab split");
    /* round trips of hard cases (byte-level BPE is lossless on valid UTF-8) */
    static const char *rt[] = {
        "👨‍👩‍👧‍👦 family", "🏳️‍🌈", "日本語のテキスト、中文文本。", "e\xCC\x81t\xC3\xA9 cafe\xCC\x81",
        "1234567890 3.14159 1,000,000", "  \t\t  \r\n\r\n \n", "I'M YOU'LL WE'VE THEY'RE HE'D SHE'S",
        "int main(void) { return a->b[0] << 2; } // x", "https://example.com/a?b=c&d=e#f",
        "\xE2\x80\xA8\xC2\x85\xE3\x80\x80 x", "مرحبا بالعالم", "ﷺ ‮RTL‬ \xEF\xBF\xBD"};
    for (size_t i = 0; i < MR_ARRAY_LEN(rt); i++) CHECK(roundtrip(v, rt[i], strlen(rt[i])), "round trip '%s'", rt[i]);
    /* invalid UTF-8: deterministic, each bad byte becomes U+FFFD (same ids as the U+FFFD text) */
    {
        int n1, n2;
        int32_t *a = enc(v, "a\xFF\xC3(b\x80", 7, &n1, false, false);
        int32_t *b = enc(v, "a\xEF\xBF\xBD\xEF\xBF\xBD(b\xEF\xBF\xBD", 13, &n2, false, false);
        CHECK(n1 > 0 && n1 == n2 && !memcmp(a, b, sizeof *a * (size_t)n1), "invalid bytes = U+FFFD");
        free(a);
        free(b);
        const char trunc[] = "\xF0\x9F\x98"; /* truncated emoji at the end */
        a = enc(v, trunc, 3, &n1, false, false);
        b = enc(v, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", 9, &n2, false, false);
        CHECK(n1 == n2 && !memcmp(a, b, sizeof *a * (size_t)n1), "truncated sequence = one U+FFFD per byte");
        free(a);
        free(b);
        const char surrogate[] = "\xED\xA0\x80 \xC0\xAF"; /* surrogate and overlong */
        a = enc(v, surrogate, 6, &n1, false, false);
        CHECK(n1 > 0, "surrogates/overlongs tokenize");
        free(a);
    }
    /* the capacity protocol: a short buffer gets the count and a prefix */
    {
        int32_t two[2];
        int need = tok_encode(v, "Hello world, this is a test.", 28, two, 2, false, false);
        int32_t *all = enc(v, "Hello world, this is a test.", 28, &n, false, false);
        CHECK(need == n && need > 2 && two[0] == all[0] && two[1] == all[1], "cap protocol");
        free(all);
    }
    /* detokenize: control tokens rendered only with unparse_special */
    {
        int32_t t[] = {ims, hello};
        char buf[64];
        int l = tok_detokenize(v, t, 2, buf, sizeof buf, false, false);
        CHECK(l == 6 && !memcmp(buf, " Hello", 6), "detokenize hides control tokens");
        l = tok_detokenize(v, t, 2, buf, sizeof buf, false, true);
        CHECK(l == 18 && !memcmp(buf, "<|im_start|> Hello", 18), "detokenize renders control tokens");
        CHECK(tok_detokenize(v, t, 2, buf, 3, false, true) == 18, "detokenize returns the needed size");
        int32_t bad = tok_n_vocab(v);
        CHECK(tok_detokenize(v, &bad, 1, buf, sizeof buf, false, false) == -1, "detokenize rejects bad ids");
        CHECK(tok_token_to_piece(v, -5, buf, sizeof buf, 0, true) == -1, "piece rejects bad ids");
    }
    /* streaming: an emoji split over byte tokens is released only when complete */
    {
        const char *s = "héllo 🙂 世界";
        ids = enc(v, s, strlen(s), &n, false, false);
        tok_stream st;
        tok_stream_init(&st);
        char acc[128];
        size_t al = 0;
        bool complete = true;
        for (int i = 0; i < n; i++) {
            int r = tok_stream_push(&st, v, ids[i], false);
            for (int j = 0; j < r;) { /* every release is whole UTF-8 */
                int cl = tok_utf8_valid_len((const unsigned char *)st.data + j, (size_t)(r - j));
                if (!cl) {
                    complete = false;
                    break;
                }
                j += cl;
            }
            memcpy(acc + al, st.data, (size_t)r);
            al += (size_t)r;
        }
        int r = tok_stream_flush(&st);
        memcpy(acc + al, st.data, (size_t)r);
        al += (size_t)r;
        CHECK(complete && r == 0 && al == strlen(s) && !memcmp(acc, s, al), "stream releases whole characters");
        /* bytes pushed one at a time */
        const char *e = "\xF0\x9F\x99\x82";
        int r1 = tok_stream_push_bytes(&st, e, 1), r2 = tok_stream_push_bytes(&st, e + 1, 2);
        int r3 = tok_stream_push_bytes(&st, e + 3, 1);
        CHECK(r1 == 0 && r2 == 0 && r3 == 4 && !memcmp(st.data, e, 4), "stream holds a partial emoji");
        r1 = tok_stream_push_bytes(&st, "\xFF" "a", 2);
        CHECK(r1 == 2, "stream releases bytes that can never be valid");
        tok_stream_free(&st);
        free(ids);
    }
    tok_vocab_free(v);
}


/* The qwen3 vocabulary with tokenizer.ggml.pre replaced (written to a temp
 * file through the GGUF writer), for the pre-tokenizers without fixtures. */
static tok_vocab *load_with_pre(const char *dir, const char *pre, bool allow_unknown) {
    char path[20000], tmp[64];
    snprintf(path, sizeof path, "%s/ggml-vocab-qwen3.gguf", dir);
    snprintf(tmp, sizeof tmp, "/tmp/test_tok_%d.gguf", (int)getpid());
    gguf_ctx *g = gguf_open(path);
    if (!g) return NULL;
    gguf_writer *w = gguf_writer_new(tmp);
    for (uint64_t i = 0; w && i < g->n_kv; i++) {
        if (!strcmp(g->kv[i].key, "tokenizer.ggml.pre")) gguf_writer_kv_str(w, "tokenizer.ggml.pre", pre);
        else gguf_writer_kv_copy(w, &g->kv[i]);
    }
    gguf_close(g);
    if (!w || gguf_writer_begin_data(w) < 0 || gguf_writer_close(w) < 0) return NULL;
    g = gguf_open(tmp);
    tok_vocab *v = g ? tok_vocab_load(g, allow_unknown) : NULL;
    if (g) gguf_close(g);
    unlink(tmp);
    return v;
}

static void pre_variants(const char *dir) {
    char ts[64][64];
    /* unknown pre: a clear error naming the known ones, unless allowed */
    tok_vocab *v = load_with_pre(dir, "no-such-pre", false);
    CHECK(!v && strstr(mr_geterr(), "no-such-pre") && strstr(mr_geterr(), "qwen2") &&
              strstr(mr_geterr(), "deepseek-v3"),
          "unknown pre is an error listing the known names: %s", mr_geterr());
    tok_vocab_free(v);
    v = load_with_pre(dir, "no-such-pre", true);
    CHECK(v && !strcmp(tok_pre_name(v), "default"), "allow_unknown_pre falls back to default");
    tok_vocab_free(v);
    /* llama3 (llama-bpe) */
    v = load_with_pre(dir, "llama-bpe", false);
    CHECK(v != NULL, "llama-bpe variant loads");
    if (v) {
        const char *s = "x = 10000000; // ünïcödé 日本";
        CHECK(roundtrip(v, s, strlen(s)), "llama3 round trip");
        tok_vocab_free(v);
    }
    /* deepseek-v3: digits in groups of three, CJK runs split from Latin */
    v = load_with_pre(dir, "deepseek-v3", false);
    CHECK(v != NULL, "deepseek-v3 variant loads");
    if (v) {
        int k;
        k = token_strings(v, "ab日本", ts, 64);
        bool apart = k >= 2 && !strcmp(ts[0], "ab");
        CHECK(apart, "deepseek-v3: Latin and CJK are separate words");
        /* '~' is not \p{S} in llama.cpp's engine: "~~" stays an unmatched piece, still round-trips */
        CHECK(roundtrip(v, "a ~~ b ~x $+ 1,234", 18), "deepseek-v3 round trip");
        (void)k;
        tok_vocab_free(v);
    }
}

/* Words of the pre-tokenizer of a type, joined with '|'. */
static bool split_is(tok_pre_type t, const char *s, const char *want) {
    tok_pre *p = tok_pre_new(t);
    tok_spans w = {0}, tmp = {0};
    char got[1024];
    size_t gl = 0;
    if (p && tok_pre_split(p, s, strlen(s), &w, &tmp) == 0)
        for (int i = 0; i < w.n; i++)
            gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%.*s", i ? "|" : "", (int)w.s[i].len, s + w.s[i].off);
    got[gl] = 0;
    bool ok = !strcmp(got, want);
    if (!ok) fprintf(stderr, "  split '%s': got '%s' want '%s'\n", s, got, want);
    free(w.s);
    free(tmp.s);
    tok_pre_free(p);
    return ok;
}

/* Pre-tokenizer splits that follow from the regexes (llama.cpp semantics). */
static void splits(void) {
    /* llama3: \p{N}{1,3} groups of three from the left; case-insensitive contractions */
    CHECK(split_is(TOK_PRE_LLAMA3, "1234567", "123|456|7"), "llama3 digit groups");
    CHECK(split_is(TOK_PRE_LLAMA3, "WE'RE here", "WE|'RE| here"), "llama3 'RE");
    /* \s*[\r\n]+ then \s+(?!\S): "a \r\n\t b" */
    CHECK(split_is(TOK_PRE_LLAMA3, "a \r\n\t b", "a| \r\n|\t| b"), "llama3 CR/LF/tab");
    CHECK(split_is(TOK_PRE_QWEN2, "x   y", "x|  | y"), "qwen2: spaces before a word leave one for it");
    CHECK(split_is(TOK_PRE_QWEN2, "12345", "1|2|3|4|5"), "qwen2 single digits");
    CHECK(split_is(TOK_PRE_QWEN2, "hi!!\n\nok", "hi|!!\n\n|ok"), "qwen2 punctuation takes newlines");
    /* U+0085 and U+3000 are whitespace for llama.cpp (PCRE2's \s lacks U+0085) */
    CHECK(split_is(TOK_PRE_QWEN2, "a\xC2\x85\xC2\x85" "b", "a|\xC2\x85|\xC2\x85" "b"), "qwen2 NEL is whitespace");
    CHECK(split_is(TOK_PRE_GPT2, "I'll can't", "I|'ll| can|'t"), "gpt2 contractions");
    CHECK(split_is(TOK_PRE_GPT2, "don'T", "don|'|T"), "gpt2 contractions are case sensitive");
    CHECK(split_is(TOK_PRE_DEEPSEEK3, "12345", "123|45"), "deepseek-v3 digit groups");
    CHECK(split_is(TOK_PRE_DEEPSEEK3, "ab日本cd", "ab|日本|cd"), "deepseek-v3 CJK runs");
    /* deepseek-v3: '~' is no \p{S} in llama.cpp's collapsed regex: "a ~~" leaves "~~" unmatched (one piece) */
    CHECK(split_is(TOK_PRE_DEEPSEEK3, "a ~~", "a| |~~"), "deepseek-v3 tilde");
    CHECK(split_is(TOK_PRE_DEFAULT, "1234567", "123|456|7"), "default: digits then [0-9]{3}");
    CHECK(split_is(TOK_PRE_DEEPSEEK_LLM, "ab  \n", "ab|  |\n"), "deepseek-llm: \\s+$ and [\\r\\n]");
}

static void own_cases_spm(const char *dir) {
    tok_vocab *v = load(dir, "ggml-vocab-llama-spm.gguf");
    CHECK(v != NULL, "llama-spm vocab");
    if (!v) return;
    CHECK(tok_bos(v) == 1 && tok_eos(v) == 2 && tok_add_bos(v) && tok_add_space_prefix(v), "spm defaults");
    /* add_special puts BOS first */
    int n;
    int32_t *ids = enc(v, "Hello", 5, &n, true, false);
    CHECK(n >= 2 && ids[0] == 1, "BOS added");
    /* "▁Hello" is one entry: "Hello" (with the space prefix) is that entry */
    int32_t h = tok_find(v, "\xE2\x96\x81Hello", 8);
    CHECK(h >= 0 && n == 2 && ids[1] == h, "'Hello' -> ▁Hello");
    free(ids);
    /* byte fallback: a character missing from the vocabulary is <0xNN> tokens */
    const char *rare = "\xF0\x9F\xA6\x80"; /* 🦀 */
    ids = enc(v, rare, 4, &n, false, false);
    int32_t b0 = tok_find(v, "<0xF0>", 6);
    bool fallback = n >= 4 && ids[n - 4] == b0;
    CHECK(fallback, "byte fallback for a missing character");
    char buf[64];
    int l = tok_detokenize(v, ids, n, buf, sizeof buf, false, false);
    CHECK(l == 4 && !memcmp(buf, rare, 4), "byte tokens decode to the bytes (space prefix removed)");
    free(ids);
    /* invalid UTF-8 survives as byte tokens */
    ids = enc(v, "a\xFF", 2, &n, false, false);
    l = tok_detokenize(v, ids, n, buf, sizeof buf, false, false);
    CHECK(l == 2 && !memcmp(buf, "a\xFF", 2), "spm keeps invalid bytes as bytes");
    free(ids);
    tok_vocab_free(v);
}

/* WordPiece (bert-bge): facts of BERT's uncased normalization and of the
 * GGUF converter's "▁word" / "continuation" convention. */
static void own_cases_wpm(const char *dir) {
    tok_vocab *v = load(dir, "ggml-vocab-bert-bge.gguf");
    CHECK(v != NULL, "bert-bge vocab");
    if (!v) return;
    size_t l;
    CHECK(tok_model_type(v) == TOK_MODEL_WPM, "bert is WordPiece");
    CHECK(tok_text(v, tok_bos(v), &l) && !strcmp(tok_text(v, tok_bos(v), &l), "[CLS]"), "BOS is [CLS]");
    CHECK(tok_text(v, tok_sep(v), &l) && !strcmp(tok_text(v, tok_sep(v), &l), "[SEP]"), "SEP is [SEP]");
    CHECK(tok_text(v, tok_unk(v), &l) && !strcmp(tok_text(v, tok_unk(v), &l), "[UNK]"), "UNK is [UNK]");
    CHECK(tok_add_sep(v) && tok_eos(v) == TOK_NULL, "bert adds SEP, has no EOS");
    int32_t hello = tok_find(v, "\xE2\x96\x81hello", 8), world = tok_find(v, "\xE2\x96\x81world", 8);
    int32_t comma = tok_find(v, "\xE2\x96\x81,", 4);
    CHECK(hello >= 0 && world >= 0 && comma >= 0, "word-start pieces carry U+2581");
    /* add_special: [CLS] ... [SEP]; lowercased; punctuation is a word of its own */
    int32_t w1[] = {tok_bos(v), hello, comma, world, tok_sep(v)};
    int n;
    int32_t *ids = enc(v, "HeLLo,World", 11, &n, true, false);
    CHECK(n == 5 && !memcmp(ids, w1, sizeof w1), "[CLS] hello , world [SEP]");
    /* detokenize: BOS dropped with remove_special, control [SEP] hidden, ▁ -> ' ' */
    char buf[64];
    int dl = tok_detokenize(v, ids, n, buf, sizeof buf, true, false);
    CHECK(dl == 13 && !memcmp(buf, " hello, world", 13), "detokenize: ' hello, world' (%d)", dl);
    free(ids);
    /* accents stripped (first code point of the canonical decomposition), case folded */
    int n1, n2;
    int32_t *a = enc(v, "CAF\xC3\x89 na\xC3\xAFve", 12, &n1, false, false);
    int32_t *b = enc(v, "cafe naive", 10, &n2, false, false);
    CHECK(n1 > 0 && n1 == n2 && !memcmp(a, b, sizeof *a * (size_t)n1), "CAFÉ naïve = cafe naive");
    free(a);
    free(b);
    /* whitespace runs (incl. U+0085, U+3000) and control/format characters vanish */
    a = enc(v, "\t hello\xC2\x85\xE3\x80\x80wo\xE2\x80\x8Drld\x01 ", 20, &n1, false, false);
    int32_t w2[] = {hello, world};
    CHECK(n1 == 2 && !memcmp(a, w2, sizeof w2), "whitespace splits, ZWJ and \\x01 dropped");
    free(a);
    /* private-use characters (Co) are dropped like controls */
    a = enc(v, "hello \xEE\x80\x80world", 14, &n1, false, false);
    CHECK(n1 == 2 && a[0] == hello && a[1] == world, "private-use character is dropped (Co)");
    free(a);
    /* a word with a character no piece covers is one [UNK] */
    if (tok_find(v, "\xE2\x96\x81\xF0\x9F\xA6\x80", 7) < 0) {
        a = enc(v, "hello x\xF0\x9F\xA6\x80x", 12, &n1, false, false);
        CHECK(n1 == 2 && a[0] == hello && a[1] == tok_unk(v), "unknown word -> [UNK]");
        free(a);
    }
    /* CJK ideographs are words of their own: pieces of 2 chars = the 2 chars apart */
    a = enc(v, "\xE5\xA4\xA9\xE5\xA4\xA9", 6, &n1, false, false);
    b = enc(v, "\xE5\xA4\xA9 \xE5\xA4\xA9", 7, &n2, false, false);
    CHECK(n1 == 2 && n1 == n2 && !memcmp(a, b, sizeof *a * 2), "CJK ideographs split");
    free(a);
    free(b);
    /* continuation pieces: concatenated texts give "▁" + the lowercased word */
    {
        const char *word = "Tokenization";
        ids = enc(v, word, strlen(word), &n, false, false);
        char cat[128] = {0};
        size_t cl = 0;
        for (int i = 0; i < n; i++) {
            const char *t = tok_text(v, ids[i], &l);
            if (cl + l < sizeof cat) memcpy(cat + cl, t, l), cl += l;
        }
        CHECK(n >= 2 && cl == 15 && !memcmp(cat, "\xE2\x96\x81tokenization", 15), "greedy pieces of Tokenization");
        free(ids);
    }
    /* the newline token is the pad token, as in llama.cpp */
    CHECK(tok_newline(v) == tok_pad(v), "WPM newline = pad");
    tok_vocab_free(v);
}

int main(void) {
    SKIP_UNLESS_SHARED(dir, "fixtures/vocab");
    DIR *d = opendir(dir);
    CHECK(d != NULL, "open %s", dir);
    char names[64][256];
    int nn = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) && nn < 64) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".gguf"))
            snprintf(names[nn++], 256, "%s", e->d_name);
    }
    if (d) closedir(d);
    qsort(names, (size_t)nn, 256, (int (*)(const void *, const void *))strcmp);
    int ok = 0, all = 0;
    for (int i = 0; i < nn; i++) run_vectors(dir, names[i], &ok, &all);
    printf("llama.cpp vectors: %d/%d strings exact\n", ok, all);
    own_cases_qwen3(dir);
    own_cases_spm(dir);
    own_cases_wpm(dir);
    pre_variants(dir);
    splits();
    return check_done();
}
