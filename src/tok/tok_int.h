/*
 * tok_int.h — private structures shared by the tokenizer files (src/tok/).
 *
 *   tok_map.c    string -> int32 and u64 -> int32 hash maps
 *   tok_vocab.c  loading from GGUF, special tokens, attributes, accessors
 *   tok_pre.c    UTF-8 sanitizing, the PCRE2 pre-tokenizers, byte-to-unicode
 *   tok_bpe.c    byte-level BPE merges with a per-word cache
 *   tok_spm.c    SentencePiece (llama.cpp's llm_tokenizer_spm)
 *   tok_wpm.c    WordPiece (llama.cpp's llm_tokenizer_wpm)
 *   tok_encode.c special-token partition, encode, pieces, detokenize, stream
 */
#ifndef MR_TOK_INT_H
#define MR_TOK_INT_H

#include <pthread.h>

#include "tok/tok.h"

/* ---- hash maps (open addressing, power-of-two capacity) ------------------------------ */
/* Keys are (pointer, length) into storage the caller keeps alive. */
typedef struct {
    const char **key;
    uint32_t *klen;
    int32_t *val;
    uint32_t *hash;
    uint32_t cap, n;
} tok_strmap;

int tok_strmap_init(tok_strmap *m, uint32_t expect);
void tok_strmap_free(tok_strmap *m);
/* Insert or overwrite; returns 0 / -1 (allocation). */
int tok_strmap_put(tok_strmap *m, const char *k, uint32_t len, int32_t val);
/* Insert only if absent; *existing receives the value present (or val). */
int tok_strmap_put_new(tok_strmap *m, const char *k, uint32_t len, int32_t val, int32_t *existing);
int32_t tok_strmap_get(const tok_strmap *m, const char *k, uint32_t len); /* -1 if absent */
uint32_t tok_hash(const char *k, uint32_t len);

typedef struct {
    uint64_t *key; /* 0 = empty slot; keys stored as key+1 */
    int32_t *val;
    uint32_t cap, n;
} tok_u64map;
int tok_u64map_init(tok_u64map *m, uint32_t expect);
void tok_u64map_free(tok_u64map *m);
int tok_u64map_put_new(tok_u64map *m, uint64_t k, int32_t val);
int32_t tok_u64map_get(const tok_u64map *m, uint64_t k); /* -1 if absent */

/* ---- pre-tokenizers ------------------------------------------------------------------ */
typedef enum {
    TOK_PRE_DEFAULT = 0,
    TOK_PRE_LLAMA3,
    TOK_PRE_DEEPSEEK_LLM,
    TOK_PRE_DEEPSEEK_CODER,
    TOK_PRE_DEEPSEEK3,
    TOK_PRE_FALCON,
    TOK_PRE_MPT,
    TOK_PRE_STARCODER,
    TOK_PRE_GPT2,
    TOK_PRE_REFACT,
    TOK_PRE_QWEN2,
    TOK_PRE_COUNT
} tok_pre_type;

#define TOK_PRE_MAX_REGEX 6
typedef struct tok_pre tok_pre; /* compiled regex list (tok_pre.c) */

/* Resolve a tokenizer.ggml.pre name; fills the llama.cpp flags it implies.
 * Returns -1 if unknown. */
int tok_pre_lookup(const char *name, tok_pre_type *type, bool *ignore_merges, bool *add_bos, bool *clean_spaces);
const char *tok_pre_type_name(tok_pre_type t);
tok_pre *tok_pre_new(tok_pre_type t);
void tok_pre_free(tok_pre *p);

/* A byte range of a text. */
typedef struct {
    uint32_t off, len;
} tok_span;

/* Growable span list. */
typedef struct {
    tok_span *s;
    int n, cap;
} tok_spans;
int tok_spans_push(tok_spans *l, uint32_t off, uint32_t len);

/* Split valid UTF-8 text into pre-tokenizer words (llama.cpp's
 * unicode_regex_split offsets). out is reset first. Returns 0 / -1. */
int tok_pre_split(const tok_pre *p, const char *text, size_t len, tok_spans *out, tok_spans *tmp);

/* Copy text into *dst replacing each byte that does not start a well-formed
 * UTF-8 sequence with U+FFFD. Returns the new length or -1. */
long tok_utf8_sanitize(const char *text, size_t len, char **dst, size_t *cap);

/* GPT-2 byte-to-unicode table: UTF-8 of the code point standing for byte b. */
typedef struct {
    char s[3];
    uint8_t n;
} tok_bytechar;
extern const tok_bytechar *tok_byte_to_unicode(void);
/* Inverse: code point -> byte, -1 if the code point stands for no byte. */
int tok_unicode_to_byte(uint32_t cp);

/* ---- vocabulary ---------------------------------------------------------------------- */
typedef struct tok_bpe_cache tok_bpe_cache;

struct tok_vocab {
    tok_model model;
    tok_pre_type pre;
    char pre_name[64];
    int32_t n_vocab;
    int32_t max_token_len; /* longest entry in bytes (WPM's match window) */
    char **text; /* owned, NUL-terminated */
    uint32_t *len;
    float *score;
    uint16_t *attr;
    tok_strmap map; /* text -> id (last id wins for duplicates) */

    int32_t bos, eos, eot, eom, unk, sep, pad, mask, newline;
    int32_t fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
    bool add_bos, add_eos, add_sep, add_space_prefix, ignore_merges, clean_spaces;

    int32_t *eog; /* sorted ids */
    int n_eog;

    int32_t *special; /* control/user-defined/unknown ids, longest text first */
    int n_special;
    int max_special_len;

    char **piece; /* token_to_piece(special = true) cache */
    uint32_t *piece_len;

    /* BPE */
    tok_pre *pre_re;
    tok_strmap intern;     /* vocab texts (id < n_vocab) and merge parts (id >= n_vocab) */
    char **intern_extra;   /* owned strings for ids >= n_vocab */
    int32_t n_intern_extra, cap_intern_extra;
    tok_u64map merge_rank; /* (left id, right id) -> rank */
    int32_t *merge_result; /* rank -> intern id of left+right */
    int32_t n_merges;
    int32_t byte_sym[256]; /* intern id of the single byte-char symbol, -1 if none */
    int32_t byte_tok[256]; /* BPE: token for the 1-byte string (fallback); SPM: <0xNN> or raw byte token */
    tok_bpe_cache *cache;
    /* SPM: bit (a << 8 | b) set when bytes a, b are adjacent inside some entry;
     * the text can be cut between two characters whose bytes never are */
    uint8_t pair_bits[8192];
};

/* BPE: tokenize one byte-encoded pre-tokenizer word; appends to *out. */
int tok_bpe_word(const tok_vocab *v, const char *raw, uint32_t raw_len, int32_t **out, int *n, int *cap);
int tok_bpe_init(tok_vocab *v, const gguf_value *merges);
void tok_bpe_free(tok_vocab *v);
/* SPM: tokenize text (spaces already escaped as ▁); appends to *out. */
int tok_spm_text(const tok_vocab *v, const char *text, size_t len, int32_t **out, int *n, int *cap);

/* WPM: tokenize one raw text fragment (normalized and split into words here);
 * appends to *out. */
int tok_wpm_text(const tok_vocab *v, const char *text, size_t len, int32_t **out, int *n, int *cap);

/* Append one id to a growable array. */
int tok_push(int32_t **out, int *n, int *cap, int32_t id);

/* Per-thread scratch of the BPE and SentencePiece merge loops: the first time
 * a thread grows it, tok_scratch_register() arranges for the buffers to be
 * freed when the thread exits (servers run one thread per connection). */
void tok_scratch_register(void);
void tok_bpe_scratch_free(void);
void tok_spm_scratch_free(void);

#endif
