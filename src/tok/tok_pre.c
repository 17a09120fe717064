/*
 * tok_pre.c — BPE pre-tokenizers: the regex lists of llama.cpp's
 * llm_tokenizer_bpe (src/llama-vocab.cpp) run with PCRE2 (UTF, JIT), plus
 * UTF-8 sanitizing and the GPT-2 byte-to-unicode table.
 *
 * llama.cpp applies a list of regexes in turn: each one splits every piece
 * left by the previous one into matched and unmatched parts (unmatched text
 * between two matches stays one piece), and a piece's end is the end of the
 * subject (lookaheads and `$` do not see past it). We do the same by matching
 * each piece as its own PCRE2 subject.
 *
 * llama.cpp does not run the patterns with a plain regex engine; where its
 * engine behaves differently from PCRE2 on the same pattern, the PCRE2 text
 * below is adapted so that the splits are identical:
 *  - `\s`: llama.cpp's whitespace is Unicode White_Space (includes U+0085,
 *    which PCRE2's \s lacks), so \s is spelled out as the class WSC below.
 *  - the gpt2/llama3/qwen2 patterns run as hand-written matchers in
 *    unicode.cpp (unicode_regex_split_custom_*); these behave like the regex
 *    plus a final `\s+` alternative, which is added here.
 *  - other patterns with \p{..} run with std::regex over a "collapsed" text
 *    where ASCII keeps its value and \p{S} covers only $+<=>^`| in ASCII: '~'
 *    (Unicode Sm) is not a symbol there. deepseek-v3's \p{S} excludes '~'.
 *  - patterns without \p{..} run with std::wregex on text whose non-ASCII
 *    whitespace was replaced by U+000B, so literal ranges in them never match
 *    whitespace: deepseek-llm's `　-。` becomes U+3001-U+3002 and the CJK range
 *    U+0800-U+4E00 skips U+1680, U+2000-U+200A, U+2028/9, U+202F, U+205F, U+3000.
 *  - `$` (ECMAScript: end of subject only) is `\z`.
 * The llama.cpp source of each list is kept in the comment above it.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tok/tok_int.h"

/* llama.cpp's whitespace set (unicode_set_whitespace: Unicode White_Space). */
#define WSC "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define WS "[" WSC "]"
#define NWS "[^" WSC "]"

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)  (custom gpt2 matcher) */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WSC "\\p{L}\\p{N}]+|" WS "+(?!" NWS ")|" WS "+"
#define RE_CONTRACT "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
#define RE_LLAMA3                                                                                  \
    RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^" WSC "\\p{L}\\p{N}]+[\\r\\n]*|" WS \
                "*[\\r\\n]+|" WS "+(?!" NWS ")|" WS "+"
/* same as llama3 with \p{N} instead of \p{N}{1,3} */
#define RE_QWEN2                                                                                  \
    RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WSC "\\p{L}\\p{N}]+[\\r\\n]*|" WS    \
                "*[\\r\\n]+|" WS "+(?!" NWS ")|" WS "+"
/* [一-龥ࠀ-一가-퟿]+ without the whitespace code points inside U+0800-U+4E00 */
#define RE_CJK_DS                                                                               \
    "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{167F}\\x{1681}-\\x{1FFF}\\x{200B}-\\x{2027}\\x{202A}-\\x{202E}" \
    "\\x{2030}-\\x{205E}\\x{2060}-\\x{2FFF}\\x{3001}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"

typedef struct {
    const char *name;
    const char *re[TOK_PRE_MAX_REGEX];
} pre_def;

static const pre_def k_pre[TOK_PRE_COUNT] = {
    /* default: "[\p{P}\$\+<=>\^~\|]+", gpt2, "\p{N}+", "[0-9][0-9][0-9]" */
    [TOK_PRE_DEFAULT] = {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
    [TOK_PRE_LLAMA3] = {"llama3", {RE_LLAMA3}},
    /* "[\r\n]", "\s?[A-Za-zµÀ-Ö...]+", "\s?[!-/:-~！-／：-～‘-‟　-。]+", "\s+$", "[一-龥ࠀ-一가-퟿]+", "\p{N}+" */
    [TOK_PRE_DEEPSEEK_LLM] = {"deepseek-llm",
                              {"[\r\n]",
                               WS "?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+",
                               WS "?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3001}-\\x{3002}]+", WS "+\\z", RE_CJK_DS, "\\p{N}+"}},
    /* "[\r\n]", "\s?\p{L}+", "\s?\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\p{N}" */
    [TOK_PRE_DEEPSEEK_CODER] = {"deepseek-coder",
                                {"[\r\n]", WS "?\\p{L}+", WS "?\\p{P}+", RE_CJK_DS, "\\p{N}"}},
    /* "\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
     * "[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+" */
    [TOK_PRE_DEEPSEEK3] = {"deepseek-v3",
                           {"\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
                            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
                            "|(?:~|[^\\r\\n\\p{L}\\p{P}\\p{S}])?[\\p{L}\\p{M}]+"
                            "| ?(?:(?!~)[\\p{P}\\p{S}])+[\\r\\n]*"
                            "|" WS "*[\\r\\n]+|" WS "+(?!" NWS ")|" WS "+"}},
    /* "[\p{P}\$\+<=>\^~\|`]+", gpt2, "[0-9][0-9][0-9]" */
    [TOK_PRE_FALCON] = {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    [TOK_PRE_MPT] = {"mpt", {RE_GPT2}},
    /* "\p{N}", gpt2 */
    [TOK_PRE_STARCODER] = {"starcoder", {"\\p{N}", RE_GPT2}},
    [TOK_PRE_GPT2] = {"gpt-2", {RE_GPT2}},
    [TOK_PRE_REFACT] = {"refact", {"\\p{N}", RE_GPT2}},
    [TOK_PRE_QWEN2] = {"qwen2", {RE_QWEN2}},
};

/* tokenizer.ggml.pre names (llama.cpp's aliases for the types above). */
static const struct {
    const char *name;
    tok_pre_type type;
} k_pre_names[] = {
    {"default", TOK_PRE_DEFAULT},     {"llama3", TOK_PRE_LLAMA3},          {"llama-v3", TOK_PRE_LLAMA3},
    {"llama-bpe", TOK_PRE_LLAMA3},    {"falcon3", TOK_PRE_LLAMA3},         {"falcon-h1", TOK_PRE_LLAMA3},
    {"pixtral", TOK_PRE_LLAMA3},      {"midm-2.0", TOK_PRE_LLAMA3},        {"lfm2", TOK_PRE_LLAMA3},
    {"dbrx", TOK_PRE_LLAMA3},         {"smaug-bpe", TOK_PRE_LLAMA3},       {"deepseek-llm", TOK_PRE_DEEPSEEK_LLM},
    {"deepseek-coder", TOK_PRE_DEEPSEEK_CODER},                            {"deepseek-v3", TOK_PRE_DEEPSEEK3},
    {"falcon", TOK_PRE_FALCON},       {"mpt", TOK_PRE_MPT},                {"olmo", TOK_PRE_MPT},
    {"starcoder", TOK_PRE_STARCODER}, {"gpt-2", TOK_PRE_GPT2},             {"phi-2", TOK_PRE_GPT2},
    {"refact", TOK_PRE_REFACT},       {"qwen2", TOK_PRE_QWEN2},            {"deepseek-r1-qwen", TOK_PRE_QWEN2},
    {"stablelm2", TOK_PRE_QWEN2},
};

const char *tok_pre_names(void) {
    static char buf[1024];
    if (!buf[0]) {
        size_t n = 0;
        for (size_t i = 0; i < MR_ARRAY_LEN(k_pre_names); i++)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? ", " : "", k_pre_names[i].name);
    }
    return buf;
}

int tok_pre_lookup(const char *name, tok_pre_type *type, bool *ignore_merges, bool *add_bos, bool *clean_spaces) {
    for (size_t i = 0; i < MR_ARRAY_LEN(k_pre_names); i++) {
        if (strcmp(name, k_pre_names[i].name) != 0) continue;
        tok_pre_type t = k_pre_names[i].type;
        *type = t;
        /* llama.cpp: BPE vocabularies clean spaces unless said otherwise */
        *ignore_merges = false;
        *add_bos = false;
        *clean_spaces = true;
        bool llama3_family = !strcmp(name, "llama3") || !strcmp(name, "llama-v3") || !strcmp(name, "llama-bpe") ||
                             !strcmp(name, "falcon3") || !strcmp(name, "falcon-h1") || !strcmp(name, "pixtral") ||
                             !strcmp(name, "midm-2.0") || !strcmp(name, "lfm2");
        if (llama3_family) {
            *ignore_merges = true;
            *add_bos = true;
        }
        if (t == TOK_PRE_DEEPSEEK_LLM || t == TOK_PRE_DEEPSEEK_CODER || t == TOK_PRE_DEEPSEEK3 ||
            !strcmp(name, "qwen2") || !strcmp(name, "deepseek-r1-qwen"))
            *clean_spaces = false;
        return 0;
    }
    return -1;
}

const char *tok_pre_type_name(tok_pre_type t) { return (unsigned)t < TOK_PRE_COUNT ? k_pre[t].name : "?"; }

struct tok_pre {
    int n;
    pcre2_code *re[TOK_PRE_MAX_REGEX];
};

tok_pre *tok_pre_new(tok_pre_type t) {
    if ((unsigned)t >= TOK_PRE_COUNT) {
        mr_seterr("pre-tokenizer %d: unknown", (int)t);
        return NULL;
    }
    tok_pre *p = mr_calloc(1, sizeof *p);
    if (!p) return NULL;
    for (int i = 0; i < TOK_PRE_MAX_REGEX && k_pre[t].re[i]; i++) {
        int err;
        PCRE2_SIZE eoff;
        pcre2_code *c = pcre2_compile((PCRE2_SPTR)k_pre[t].re[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &eoff, NULL);
        if (!c) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            mr_seterr("pre-tokenizer '%s': regex %d: %s at offset %zu", k_pre[t].name, i, (char *)msg, (size_t)eoff);
            tok_pre_free(p);
            return NULL;
        }
        pcre2_jit_compile(c, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is unavailable */
        p->re[p->n++] = c;
    }
    return p;
}

void tok_pre_free(tok_pre *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) pcre2_code_free(p->re[i]);
    free(p);
}

int tok_spans_push(tok_spans *l, uint32_t off, uint32_t len) {
    if (l->n >= l->cap) {
        int nc = l->cap ? l->cap * 2 : 256;
        tok_span *s = mr_realloc(l->s, (size_t)nc * sizeof *s);
        if (!s) return -1;
        l->s = s;
        l->cap = nc;
    }
    l->s[l->n++] = (tok_span){off, len};
    return 0;
}

/* Split every span of `in` with one regex into `out` (matched pieces and the
 * unmatched text between them). */
static int split_one(const pcre2_code *re, pcre2_match_data *md, const char *text, const tok_spans *in,
                     tok_spans *out) {
    out->n = 0;
    for (int k = 0; k < in->n; k++) {
        const uint32_t base = in->s[k].off, len = in->s[k].len;
        PCRE2_SPTR subj = (PCRE2_SPTR)(text + base);
        uint32_t cur = 0; /* end of the last piece, relative to base */
        while (cur < len) {
            int rc = pcre2_match(re, subj, len, cur, PCRE2_NO_UTF_CHECK, md, NULL);
            if (rc < 0) {
                if (rc != PCRE2_ERROR_NOMATCH)
                    MR_WARN("tokenizer: regex match error %d; keeping the rest of the piece whole", rc);
                break;
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            uint32_t m0 = (uint32_t)ov[0], m1 = (uint32_t)ov[1];
            if (m1 <= m0) break; /* no pattern here can match empty; be safe */
            if (m0 > cur && tok_spans_push(out, base + cur, m0 - cur) < 0) return -1;
            if (tok_spans_push(out, base + m0, m1 - m0) < 0) return -1;
            cur = m1;
        }
        if (cur < len && tok_spans_push(out, base + cur, len - cur) < 0) return -1;
    }
    return 0;
}

int tok_pre_split(const tok_pre *p, const char *text, size_t len, tok_spans *out, tok_spans *tmp) {
    out->n = 0;
    if (len == 0) return 0;
    if (tok_spans_push(out, 0, (uint32_t)len) < 0) return -1;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) {
        mr_seterr("tokenizer: out of memory (pcre2 match data)");
        return -1;
    }
    for (int i = 0; i < p->n; i++) {
        if (split_one(p->re[i], md, text, out, tmp) < 0) {
            pcre2_match_data_free(md);
            return -1;
        }
        tok_spans t = *out;
        *out = *tmp;
        *tmp = t;
    }
    pcre2_match_data_free(md);
    return 0;
}

/* ---- UTF-8 ---------------------------------------------------------------------------- */
int tok_utf8_valid_len(const unsigned char *p, size_t n) {
    if (n == 0) return 0;
    unsigned c = p[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0; /* continuation byte or overlong 2-byte lead */
    if (c < 0xE0) return (n >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && p[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0; /* overlong */
        if (c == 0xF4 && p[1] >= 0x90) return 0; /* > U+10FFFF */
        return 4;
    }
    return 0;
}

long tok_utf8_sanitize(const char *text, size_t len, char **dst, size_t *cap) {
    const unsigned char *p = (const unsigned char *)text;
    size_t need = len * 3 + 1; /* worst case: every byte becomes U+FFFD */
    if (*cap < need) {
        char *d = mr_realloc(*dst, need);
        if (!d) return -1;
        *dst = d;
        *cap = need;
    }
    char *o = *dst;
    size_t j = 0;
    for (size_t i = 0; i < len;) {
        if (p[i] < 0x80) {
            o[j++] = (char)p[i++];
            continue;
        }
        int k = tok_utf8_valid_len(p + i, len - i);
        if (k) {
            memcpy(o + j, p + i, (size_t)k);
            j += (size_t)k;
            i += (size_t)k;
        } else {
            memcpy(o + j, "\xEF\xBF\xBD", 3);
            j += 3;
            i++;
        }
    }
    return (long)j;
}

/* ---- GPT-2 byte <-> unicode -------------------------------------------------------------- */
static tok_bytechar g_b2u[256];
static int16_t g_u2b[324]; /* code points < 324 stand for bytes */
static pthread_once_t g_b2u_once = PTHREAD_ONCE_INIT;

static void b2u_init(void) {
    for (int i = 0; i < 324; i++) g_u2b[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        uint32_t cp;
        if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) cp = (uint32_t)b;
        else cp = 256u + (uint32_t)n++;
        tok_bytechar *c = &g_b2u[b];
        if (cp < 0x80) {
            c->s[0] = (char)cp;
            c->n = 1;
        } else {
            c->s[0] = (char)(0xC0 | (cp >> 6));
            c->s[1] = (char)(0x80 | (cp & 0x3F));
            c->n = 2;
        }
        g_u2b[cp] = (int16_t)b;
    }
}

const tok_bytechar *tok_byte_to_unicode(void) {
    pthread_once(&g_b2u_once, b2u_init);
    return g_b2u;
}

int tok_unicode_to_byte(uint32_t cp) {
    pthread_once(&g_b2u_once, b2u_init);
    return cp < 324 ? g_u2b[cp] : -1;
}
