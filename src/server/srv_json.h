/*
 * srv_json.h — the model-free half of the server: OpenAI request parsing and
 * validation, OpenAI-style error and response JSON, and the text helpers of
 * generation (UTF-8 cleaning, stop strings). Pure functions over jansson; no
 * engine calls, so tests/unit/test_server.c exercises them without a model.
 */
#ifndef MR_SRV_JSON_H
#define MR_SRV_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- growable byte buffer ----------------------------------------------------- */
typedef struct {
    char *p;     /* NUL-terminated when non-NULL */
    size_t n, cap;
} srv_buf;
/* Append n bytes; 0 or -1 on allocation failure (buffer unchanged). */
int srv_buf_add(srv_buf *b, const char *s, size_t n);
void srv_buf_free(srv_buf *b);

/* ---- errors --------------------------------------------------------------------- */
typedef struct {
    int status;         /* HTTP status: 400, 404, 405, 413, 500, 503 */
    const char *type;   /* "invalid_request_error", "server_error", ... (static) */
    const char *code;   /* "context_length_exceeded", ... or NULL (static) */
    const char *param;  /* offending field or NULL (static) */
    char message[512];
} srv_error;

void srv_err(srv_error *e, int status, const char *type, const char *code, const char *param,
             const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* {"error":{"message":..,"type":..,"param":..,"code":..}} — malloc'd, never NULL
 * unless out of memory. */
char *srv_error_json(const srv_error *e);

/* ---- requests -------------------------------------------------------------------- */
enum { SRV_CHAT = 1, SRV_COMPLETION = 2 };

typedef struct {
    char *role, *content;
} srv_msg;

#define SRV_MAX_STOP 16

/* A validated /v1/chat/completions or /v1/completions request. Sampling fields
 * not given by the client are marked unset (NAN, or has_* false) so the engine
 * applies the library defaults. */
typedef struct {
    int kind;               /* SRV_CHAT or SRV_COMPLETION */
    srv_msg *msgs;          /* chat: messages (content parts joined) */
    int n_msgs;
    char *prompt;           /* completion: the prompt */
    char *model;            /* as sent, or NULL (any name is accepted) */
    int max_tokens;         /* -1: until EOG or the slot context */
    bool stream, include_usage;
    bool ignore_eos;        /* llama.cpp extension: never sample end-of-generation tokens */
    float temperature, top_p, min_p, presence_penalty, frequency_penalty, repeat_penalty; /* NAN = unset */
    int top_k;              /* -1 = unset */
    bool has_seed;
    uint64_t seed;
    char *stop[SRV_MAX_STOP];
    int n_stop;
} srv_request;

/* Parse and validate a request body. Returns 0, or -1 with *e filled (400:
 * malformed JSON, wrong types, missing messages/prompt, n != 1, values out of
 * range). Frees nothing on failure that the caller must free: call
 * srv_request_free in both cases. */
int srv_parse_request(const char *body, size_t len, int kind, srv_request *r, srv_error *e);
void srv_request_free(srv_request *r);

/* POST /tokenize: {"content": str, "add_special": bool=false, "parse_special": bool=true,
 * "with_pieces": bool=false}. *content is malloc'd. */
int srv_parse_tokenize(const char *body, size_t len, char **content, bool *add_special,
                       bool *parse_special, bool *with_pieces, srv_error *e);
/* POST /detokenize: {"tokens": [int...]}. *toks is malloc'd (may be NULL when n = 0). */
int srv_parse_detokenize(const char *body, size_t len, int32_t **toks, int *n, srv_error *e);

/* ---- responses ------------------------------------------------------------------ */
typedef struct {
    int kind;
    const char *id, *model;
    long long created;
    const char *text;       /* all generated text */
    size_t text_len;
    const char *finish;     /* "stop" | "length" */
    int n_prompt, n_gen;
} srv_result;

/* The non-streaming response object (chat.completion / text_completion). */
char *srv_json_result(const srv_result *r);
/* One SSE event "data: {...}\n\n" for a stream chunk: role_first adds the
 * assistant role (chat's first chunk), finish (may be NULL) ends the choice. */
int srv_sse_chunk(srv_buf *out, const srv_result *r, const char *text, size_t len, bool role_first,
                  const char *finish);
/* The usage-only chunk of stream_options.include_usage (choices: []). */
int srv_sse_usage(srv_buf *out, const srv_result *r);
/* An error event inside a stream: "data: {"error":...}\n\n". */
int srv_sse_error(srv_buf *out, const srv_error *e);

/* ---- generation text helpers -------------------------------------------------- */
/* Appends to out the longest clean UTF-8 text that in[0..n) yields and returns
 * how many input bytes it consumed. Bytes that can never start a well-formed
 * sequence become U+FFFD each; a trailing sequence that may still complete is
 * left unconsumed unless flush (then it becomes U+FFFD). -1 on allocation
 * failure. */
long srv_utf8_clean(const char *in, size_t n, bool flush, srv_buf *out);

/* Searches text[0..n) for the stop strings. Returns the offset of the earliest
 * complete match, or -1 when none; then *hold is the length of the longest
 * suffix of the text that is a proper prefix of some stop string (text that
 * must not be sent yet because a stop string may be completing). */
long srv_stop_find(const char *text, size_t n, char *const *stops, int n_stops, size_t *hold);

#endif
