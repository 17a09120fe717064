/*
 * tok.h — tokenizers exact to llama.cpp: byte-level BPE (tokenizer.ggml.model
 * "gpt2") with the pre-tokenizer named by tokenizer.ggml.pre, and SentencePiece
 * (model "llama") with llama.cpp's score-driven merges and <0xNN> byte fallback,
 * and WordPiece (model "bert": lowercased, accent-stripped, greedy longest
 * match, see tok_wpm.c).
 *
 * The oracle is llama.cpp (src/llama-vocab.cpp, src/unicode.cpp): the same
 * special-token defaults and auto-detection, the same special-token partition
 * (tokenizer_st_partition), the same pre-tokenizer splits (its regexes run
 * here with PCRE2, adapted where llama.cpp's own engine differs from a plain
 * regex: see tok_pre.c), the same merge order and the same detokenizer.
 *
 * Invalid UTF-8: for BPE vocabularies every byte that does not start a
 * well-formed UTF-8 sequence (RFC 3629: no overlongs, no surrogates, nothing
 * above U+10FFFF, no truncated sequences) is replaced by U+FFFD before
 * pre-tokenization, one U+FFFD per bad byte — what llama.cpp does for the
 * common cases (stray continuation bytes, truncated sequences, 0xF8..0xFF).
 * (llama.cpp passes overlongs and surrogates through and aborts on code points
 * above U+10FFFF; we replace them.) SentencePiece input is used as raw bytes,
 * as in llama.cpp: bytes that form no token come out as <0xNN> byte tokens.
 * Encoding never fails on any input; decoding never fails on valid ids.
 *
 * Thread safety: a loaded vocabulary is immutable except for an internal,
 * mutex-protected cache of per-word BPE results; all functions may be called
 * from several threads at once.
 */
#ifndef MR_TOK_H
#define MR_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"

typedef struct tok_vocab tok_vocab;

#define TOK_NULL (-1)

typedef enum { TOK_MODEL_SPM = 1, TOK_MODEL_BPE = 2, TOK_MODEL_WPM = 3 } tok_model;

/* Token attributes (the bit values of llama.cpp's llama_token_attr). */
enum {
    TOK_ATTR_UNDEFINED = 0,
    TOK_ATTR_UNKNOWN = 1 << 0,
    TOK_ATTR_UNUSED = 1 << 1,
    TOK_ATTR_NORMAL = 1 << 2,
    TOK_ATTR_CONTROL = 1 << 3,
    TOK_ATTR_USER_DEFINED = 1 << 4,
    TOK_ATTR_BYTE = 1 << 5,
    TOK_ATTR_NORMALIZED = 1 << 6,
    TOK_ATTR_LSTRIP = 1 << 7,
    TOK_ATTR_RSTRIP = 1 << 8,
    TOK_ATTR_SINGLE_WORD = 1 << 9,
};

/* Load the vocabulary of a GGUF file (model or vocabulary-only). Reads
 * tokenizer.ggml.{model,pre,tokens,scores,token_type,merges,*_token_id,
 * add_bos_token,add_eos_token,add_space_prefix} with llama.cpp's defaults when
 * absent. An unknown tokenizer.ggml.pre is an error that lists the known
 * names, unless allow_unknown_pre: then the 'default' pre-tokenizer is used
 * with a warning (as is done, always, when the key is absent). Returns NULL
 * with mr_geterr() set on error. The gguf context may be closed afterwards. */
tok_vocab *tok_vocab_load(const gguf_ctx *g, bool allow_unknown_pre);
void tok_vocab_free(tok_vocab *v);

/* Names of the supported pre-tokenizers, comma separated (for messages). */
const char *tok_pre_names(void);

/* ---- accessors ---------------------------------------------------------------- */
int tok_n_vocab(const tok_vocab *v);
tok_model tok_model_type(const tok_vocab *v);
const char *tok_pre_name(const tok_vocab *v); /* pre-tokenizer in use ("default", "qwen2", ...; "" for SPM) */
int32_t tok_bos(const tok_vocab *v);          /* TOK_NULL (-1) if none */
int32_t tok_eos(const tok_vocab *v);
int32_t tok_eot(const tok_vocab *v);
int32_t tok_eom(const tok_vocab *v);
int32_t tok_pad(const tok_vocab *v);
int32_t tok_unk(const tok_vocab *v);
int32_t tok_sep(const tok_vocab *v);
int32_t tok_newline(const tok_vocab *v);
bool tok_add_bos(const tok_vocab *v);
bool tok_add_eos(const tok_vocab *v);
/* tokenizer.ggml.add_sep_token (default true for "bert"). Informational:
 * like llama.cpp, tok_encode with add_special always wraps WordPiece text as
 * BOS ([CLS]) ... SEP ([SEP]), whatever add_bos / add_sep say. */
bool tok_add_sep(const tok_vocab *v);
bool tok_add_space_prefix(const tok_vocab *v);
/* End of generation: EOS, EOT, EOM and the end-like tokens llama.cpp detects
 * by text (<|im_end|>, <|endoftext|>, <|eot_id|>, ...). */
bool tok_is_eog(const tok_vocab *v, int32_t id);
/* Raw vocabulary entry (byte-encoded for BPE, with ▁ for SPM); NULL if the id
 * is out of range. *len (may be NULL) receives its byte length. */
const char *tok_text(const tok_vocab *v, int32_t id, size_t *len);
float tok_score(const tok_vocab *v, int32_t id); /* 0 if out of range */
int tok_attr(const tok_vocab *v, int32_t id);    /* TOK_ATTR_* bits, 0 if out of range */
/* Id of the vocabulary entry with exactly this text, or TOK_NULL. */
int32_t tok_find(const tok_vocab *v, const char *text, size_t len);

/* ---- encode / decode -------------------------------------------------------------- */
/* Tokenize len bytes of text. add_special: add BOS/EOS as the vocabulary says
 * (add_bos/add_eos; WordPiece: BOS ... SEP, see tok_add_sep). parse_special:
 * split out control (and unknown) token texts first; user-defined tokens are
 * always split out, as in llama.cpp. Returns the
 * number of tokens; when it is > cap, only the first cap were written and the
 * caller retries with a bigger buffer (out may be NULL when cap is 0). Returns
 * -1 only on allocation failure. */
int tok_encode(const tok_vocab *v, const char *text, size_t len, int32_t *out, int cap, bool add_special,
               bool parse_special);

/* The bytes of one token (for BPE the byte-decoded text; may be part of a
 * UTF-8 sequence). Control/unknown tokens render as their text when special,
 * as nothing otherwise; unused/undefined ones as nothing. lstrip: remove up to
 * that many leading spaces. Returns the length; if it is > cap nothing is
 * written (call again with a bigger buffer); -1 for an id out of range. No NUL
 * is written. */
int tok_token_to_piece(const tok_vocab *v, int32_t id, char *buf, int cap, int lstrip, bool special);
/* Cached piece (special = true rendering) without copying; NULL if out of range. */
const char *tok_piece(const tok_vocab *v, int32_t id, size_t *len);

/* llama_detokenize: concatenated pieces; remove_special drops a leading BOS /
 * trailing EOS when the vocabulary adds them; unparse_special renders control
 * tokens; SPM drops the leading space the encoder adds; vocabularies with
 * clean_up_tokenization_spaces (gpt-2, falcon, mpt, starcoder, refact, ...)
 * get llama.cpp's space cleanup (" ?" -> "?", ...). Same return convention as
 * tok_token_to_piece (-1: an id out of range). */
int tok_detokenize(const tok_vocab *v, const int32_t *toks, int n, char *buf, int cap, bool remove_special,
                   bool unparse_special);

/* ---- streaming UTF-8 ----------------------------------------------------------------
 * Feed token pieces; tok_stream_push returns how many bytes are ready in
 * s->data: the longest prefix that ends on a complete UTF-8 sequence (a partial
 * sequence at the end is held back until the next piece). Bytes that can never
 * become valid UTF-8 are released as they are (the stream never stalls).
 * tok_stream_flush releases whatever is held. Usage:
 *     tok_stream s; tok_stream_init(&s);
 *     n = tok_stream_push(&s, v, id, false); fwrite(s.data, 1, n, f); ...
 *     n = tok_stream_flush(&s); fwrite(s.data, 1, n, f); tok_stream_free(&s);
 */
typedef struct {
    char *data;   /* ready bytes after push/flush (heap, owned) */
    int cap;
    char hold[4]; /* incomplete UTF-8 tail held back */
    int n_hold;
} tok_stream;
void tok_stream_init(tok_stream *s);
/* Returns the number of ready bytes at s->data, -1 for an invalid id or
 * allocation failure. */
int tok_stream_push(tok_stream *s, const tok_vocab *v, int32_t id, bool special);
/* Same for raw bytes (used by tok_stream_push). */
int tok_stream_push_bytes(tok_stream *s, const char *bytes, int n);
int tok_stream_flush(tok_stream *s);
void tok_stream_free(tok_stream *s);

/* ---- UTF-8 helpers ------------------------------------------------------------------ */
/* Length of the well-formed UTF-8 sequence at p (1..4), 0 if the bytes at p
 * do not start one (n = bytes available). */
int tok_utf8_valid_len(const unsigned char *p, size_t n);

#endif
