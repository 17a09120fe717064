/*
 * srv_json.c — request parsing/validation, OpenAI-shaped response and error
 * JSON, SSE chunk formatting and the generation text helpers (UTF-8 cleaning,
 * stop strings). No engine calls: see srv_json.h.
 */
#include "server/srv_json.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

/* ---- buffer ------------------------------------------------------------------- */
int srv_buf_add(srv_buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = mr_realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

void srv_buf_free(srv_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ---- errors ------------------------------------------------------------------- */
void srv_err(srv_error *e, int status, const char *type, const char *code, const char *param,
             const char *fmt, ...) {
    e->status = status;
    e->type = type ? type : (status >= 500 ? "server_error" : "invalid_request_error");
    e->code = code;
    e->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

/* Cleans a message that may hold arbitrary bytes (e.g. an echoed field) so
 * jansson accepts it. */
static json_t *clean_string(const char *s) {
    srv_buf b = {0};
    size_t n = strlen(s);
    if (srv_utf8_clean(s, n, true, &b) < 0) return json_string("");
    json_t *j = json_stringn(b.p ? b.p : "", b.n);
    srv_buf_free(&b);
    return j ? j : json_string("");
}

static json_t *error_obj(const srv_error *e) {
    json_t *err = json_object();
    json_object_set_new(err, "message", clean_string(e->message));
    json_object_set_new(err, "type", json_string(e->type ? e->type : "invalid_request_error"));
    json_object_set_new(err, "param", e->param ? json_string(e->param) : json_null());
    json_object_set_new(err, "code", e->code ? json_string(e->code) : json_null());
    json_t *root = json_object();
    json_object_set_new(root, "error", err);
    return root;
}

char *srv_error_json(const srv_error *e) {
    json_t *root = error_obj(e);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

/* ---- request parsing ------------------------------------------------------------------ */
static int bad(srv_error *e, const char *param, const char *fmt, const char *what) {
    srv_err(e, 400, "invalid_request_error", NULL, param, fmt, what);
    return -1;
}

/* Optional number field in [lo, hi]; *out unchanged when absent or null. */
static int get_num(json_t *o, const char *key, double lo, double hi, float *out, srv_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return bad(e, key, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        srv_err(e, 400, "invalid_request_error", NULL, key, "'%s' must be between %g and %g (got %g)", key, lo,
                hi, d);
        return -1;
    }
    *out = (float)d;
    return 0;
}

static int get_int(json_t *o, const char *key, long long lo, long long hi, long long *out, bool *has,
                   srv_error *e) {
    json_t *v = json_object_get(o, key);
    if (has) *has = false;
    if (!v || json_is_null(v)) return 0;
    long long x;
    if (json_is_integer(v)) x = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 9e15)
        x = (long long)json_real_value(v);
    else return bad(e, key, "'%s' must be an integer", key);
    if (x < lo || x > hi) {
        srv_err(e, 400, "invalid_request_error", NULL, key, "'%s' must be between %lld and %lld (got %lld)", key,
                lo, hi, x);
        return -1;
    }
    *out = x;
    if (has) *has = true;
    return 0;
}

static int get_bool(json_t *o, const char *key, bool *out, srv_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return bad(e, key, "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return 0;
}

static json_t *load(const char *body, size_t len, srv_error *e) {
    json_error_t je;
    if (!body || len == 0) {
        srv_err(e, 400, "invalid_request_error", NULL, NULL, "request body is empty (expected a JSON object)");
        return NULL;
    }
    json_t *root = json_loadb(body, len, 0, &je);
    if (!root) {
        srv_err(e, 400, "invalid_request_error", "invalid_json", NULL, "malformed JSON at line %d column %d: %s",
                je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        srv_err(e, 400, "invalid_request_error", "invalid_json", NULL, "request body must be a JSON object");
        return NULL;
    }
    return root;
}

/* Message content: a string, null, or an array of {"type":"text","text":...} parts. */
static char *content_text(json_t *c, int i, srv_error *e) {
    if (!c || json_is_null(c)) return mr_strdup("");
    if (json_is_string(c)) return mr_strdup(json_string_value(c));
    if (!json_is_array(c)) {
        srv_err(e, 400, "invalid_request_error", NULL, "messages", "messages[%d].content must be a string or an array of text parts", i);
        return NULL;
    }
    srv_buf b = {0};
    srv_buf_add(&b, "", 0);
    size_t k;
    json_t *part;
    json_array_foreach(c, k, part) {
        json_t *type = json_object_get(part, "type");
        json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
            !json_is_string(text)) {
            srv_err(e, 400, "invalid_request_error", NULL, "messages",
                    "messages[%d].content[%zu]: only {\"type\":\"text\",\"text\":...} parts are supported", i, k);
            srv_buf_free(&b);
            return NULL;
        }
        if (srv_buf_add(&b, json_string_value(text), json_string_length(text)) < 0) {
            srv_buf_free(&b);
            srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
            return NULL;
        }
    }
    return b.p;
}

static int parse_messages(json_t *root, srv_request *r, srv_error *e) {
    json_t *m = json_object_get(root, "messages");
    if (!m || json_is_null(m)) {
        srv_err(e, 400, "invalid_request_error", NULL, "messages", "'messages' is required");
        return -1;
    }
    if (!json_is_array(m)) return bad(e, "messages", "'%s' must be an array", "messages");
    size_t n = json_array_size(m);
    if (n == 0) return bad(e, "messages", "'%s' must contain at least one message", "messages");
    if (n > 100000) return bad(e, "messages", "too many %s", "messages");
    r->msgs = mr_calloc(n, sizeof *r->msgs);
    if (!r->msgs) {
        srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *msg = json_array_get(m, i);
        if (!json_is_object(msg)) {
            srv_err(e, 400, "invalid_request_error", NULL, "messages", "messages[%zu] must be an object", i);
            return -1;
        }
        json_t *role = json_object_get(msg, "role");
        if (!json_is_string(role)) {
            srv_err(e, 400, "invalid_request_error", NULL, "messages", "messages[%zu].role must be a string", i);
            return -1;
        }
        const char *rs = json_string_value(role);
        if (!strcmp(rs, "developer")) rs = "system"; /* newer OpenAI clients */
        r->msgs[i].role = mr_strdup(rs);
        r->n_msgs = (int)i + 1;
        r->msgs[i].content = content_text(json_object_get(msg, "content"), (int)i, e);
        if (!r->msgs[i].role || !r->msgs[i].content) {
            if (!r->msgs[i].content && e->status == 0) srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
            return -1;
        }
    }
    return 0;
}

static int parse_stop(json_t *root, srv_request *r, srv_error *e) {
    json_t *s = json_object_get(root, "stop");
    if (!s || json_is_null(s)) return 0;
    if (json_is_string(s)) {
        if (json_string_length(s) > 0) r->stop[r->n_stop++] = mr_strdup(json_string_value(s));
        return 0;
    }
    if (!json_is_array(s)) return bad(e, "stop", "'%s' must be a string or an array of strings", "stop");
    if (json_array_size(s) > SRV_MAX_STOP) {
        srv_err(e, 400, "invalid_request_error", NULL, "stop", "'stop' may hold at most %d strings", SRV_MAX_STOP);
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(s, i, v) {
        if (!json_is_string(v)) return bad(e, "stop", "'%s' must be a string or an array of strings", "stop");
        if (json_string_length(v) > 0) r->stop[r->n_stop++] = mr_strdup(json_string_value(v));
    }
    return 0;
}

int srv_parse_request(const char *body, size_t len, int kind, srv_request *r, srv_error *e) {
    memset(r, 0, sizeof *r);
    memset(e, 0, sizeof *e);
    r->kind = kind;
    r->max_tokens = -1;
    r->top_k = -1;
    r->temperature = r->top_p = r->min_p = NAN;
    r->presence_penalty = r->frequency_penalty = r->repeat_penalty = NAN;
    json_t *root = load(body, len, e);
    if (!root) return -1;
    int rc = -1;

    json_t *model = json_object_get(root, "model");
    if (model && !json_is_null(model) && !json_is_string(model)) {
        bad(e, "model", "'%s' must be a string", "model");
        goto done;
    }
    if (json_is_string(model)) r->model = mr_strdup(json_string_value(model));

    if (kind == SRV_CHAT) {
        if (parse_messages(root, r, e) < 0) goto done;
    } else {
        json_t *p = json_object_get(root, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
            p = json_array_get(p, 0);
        if (!p || json_is_null(p)) {
            srv_err(e, 400, "invalid_request_error", NULL, "prompt", "'prompt' is required");
            goto done;
        }
        if (!json_is_string(p)) {
            bad(e, "prompt", "'%s' must be a string (or an array of one string)", "prompt");
            goto done;
        }
        r->prompt = mr_strdup(json_string_value(p));
    }

    long long x;
    bool has;
    if (get_int(root, "n", 1, 1 << 20, &x, &has, e) < 0) goto done;
    if (has && x != 1) {
        srv_err(e, 400, "invalid_request_error", NULL, "n", "only n = 1 is supported (got %lld)", x);
        goto done;
    }
    /* max_completion_tokens (newer name) wins over max_tokens */
    if (get_int(root, "max_tokens", 1, 1 << 30, &x, &has, e) < 0) goto done;
    if (has) r->max_tokens = (int)x;
    if (get_int(root, "max_completion_tokens", 1, 1 << 30, &x, &has, e) < 0) goto done;
    if (has) r->max_tokens = (int)x;
    if (get_int(root, "top_k", 0, 1 << 30, &x, &has, e) < 0) goto done;
    if (has) r->top_k = (int)x;
    if (get_int(root, "seed", INT64_MIN, INT64_MAX, &x, &has, e) < 0) goto done;
    if (has) {
        r->has_seed = true;
        r->seed = (uint64_t)x;
    }
    if (get_num(root, "temperature", 0, 2, &r->temperature, e) < 0) goto done;
    if (get_num(root, "top_p", 0, 1, &r->top_p, e) < 0) goto done;
    if (get_num(root, "min_p", 0, 1, &r->min_p, e) < 0) goto done;
    if (get_num(root, "presence_penalty", -2, 2, &r->presence_penalty, e) < 0) goto done;
    if (get_num(root, "frequency_penalty", -2, 2, &r->frequency_penalty, e) < 0) goto done;
    if (get_num(root, "repeat_penalty", 1e-3, 100, &r->repeat_penalty, e) < 0) goto done;
    if (get_bool(root, "stream", &r->stream, e) < 0) goto done;
    if (get_bool(root, "ignore_eos", &r->ignore_eos, e) < 0) goto done;
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) {
            bad(e, "stream_options", "'%s' must be an object", "stream_options");
            goto done;
        }
        if (get_bool(so, "include_usage", &r->include_usage, e) < 0) goto done;
    }
    if (parse_stop(root, r, e) < 0) goto done;
    rc = 0;
done:
    json_decref(root);
    return rc;
}

void srv_request_free(srv_request *r) {
    for (int i = 0; i < r->n_msgs; i++) {
        free(r->msgs[i].role);
        free(r->msgs[i].content);
    }
    free(r->msgs);
    free(r->prompt);
    free(r->model);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

int srv_parse_tokenize(const char *body, size_t len, char **content, bool *add_special, bool *parse_special,
                       bool *with_pieces, srv_error *e) {
    memset(e, 0, sizeof *e);
    *content = NULL;
    *add_special = false;
    *parse_special = true;
    *with_pieces = false;
    json_t *root = load(body, len, e);
    if (!root) return -1;
    int rc = -1;
    json_t *c = json_object_get(root, "content");
    if (!c) {
        srv_err(e, 400, "invalid_request_error", NULL, "content", "'content' is required");
        goto done;
    }
    if (!json_is_string(c)) {
        bad(e, "content", "'%s' must be a string", "content");
        goto done;
    }
    if (get_bool(root, "add_special", add_special, e) < 0 || get_bool(root, "parse_special", parse_special, e) < 0 ||
        get_bool(root, "with_pieces", with_pieces, e) < 0)
        goto done;
    *content = mr_strdup(json_string_value(c));
    rc = *content ? 0 : -1;
done:
    json_decref(root);
    return rc;
}

int srv_parse_detokenize(const char *body, size_t len, int32_t **toks, int *n, srv_error *e) {
    memset(e, 0, sizeof *e);
    *toks = NULL;
    *n = 0;
    json_t *root = load(body, len, e);
    if (!root) return -1;
    int rc = -1;
    json_t *t = json_object_get(root, "tokens");
    if (!t) {
        srv_err(e, 400, "invalid_request_error", NULL, "tokens", "'tokens' is required");
        goto done;
    }
    if (!json_is_array(t)) {
        bad(e, "tokens", "'%s' must be an array of integers", "tokens");
        goto done;
    }
    size_t cnt = json_array_size(t);
    if (cnt) {
        *toks = mr_malloc(cnt * sizeof **toks);
        if (!*toks) goto done;
    }
    size_t i;
    json_t *v;
    json_array_foreach(t, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX) {
            srv_err(e, 400, "invalid_request_error", NULL, "tokens", "tokens[%zu] must be a non-negative integer", i);
            free(*toks);
            *toks = NULL;
            goto done;
        }
        (*toks)[i] = (int32_t)json_integer_value(v);
    }
    *n = (int)cnt;
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* ---- responses ------------------------------------------------------------------ */
static json_t *usage_obj(const srv_result *r) {
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", r->n_prompt, "completion_tokens", r->n_gen, "total_tokens",
                     r->n_prompt + r->n_gen);
}

static json_t *base_obj(const srv_result *r, const char *object) {
    return json_pack("{s:s,s:s,s:I,s:s,s:s}", "id", r->id, "object", object, "created", (json_int_t)r->created,
                     "model", r->model, "system_fingerprint", "moerun");
}

static json_t *text_or_null(const char *s, size_t n) {
    json_t *j = json_stringn(s ? s : "", s ? n : 0);
    return j ? j : json_string("\xEF\xBF\xBD"); /* cannot happen with cleaned text */
}

char *srv_json_result(const srv_result *r) {
    bool chat = r->kind == SRV_CHAT;
    json_t *root = base_obj(r, chat ? "chat.completion" : "text_completion");
    if (!root) return NULL;
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    if (chat) {
        json_t *msg = json_object();
        json_object_set_new(msg, "role", json_string("assistant"));
        json_object_set_new(msg, "content", text_or_null(r->text, r->text_len));
        json_object_set_new(choice, "message", msg);
    } else {
        json_object_set_new(choice, "text", text_or_null(r->text, r->text_len));
    }
    json_object_set_new(choice, "logprobs", json_null());
    json_object_set_new(choice, "finish_reason", json_string(r->finish ? r->finish : "stop"));
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(root, "choices", choices);
    json_object_set_new(root, "usage", usage_obj(r));
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

static int sse_emit(srv_buf *out, json_t *root) {
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (!s) return -1;
    int rc = srv_buf_add(out, "data: ", 6);
    if (rc == 0) rc = srv_buf_add(out, s, strlen(s));
    if (rc == 0) rc = srv_buf_add(out, "\n\n", 2);
    free(s);
    return rc;
}

int srv_sse_chunk(srv_buf *out, const srv_result *r, const char *text, size_t len, bool role_first,
                  const char *finish) {
    bool chat = r->kind == SRV_CHAT;
    json_t *root = base_obj(r, chat ? "chat.completion.chunk" : "text_completion");
    if (!root) return -1;
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    if (chat) {
        json_t *delta = json_object();
        if (role_first) json_object_set_new(delta, "role", json_string("assistant"));
        if (len || role_first) json_object_set_new(delta, "content", text_or_null(text, len));
        json_object_set_new(choice, "delta", delta);
    } else {
        json_object_set_new(choice, "text", text_or_null(text, len));
    }
    json_object_set_new(choice, "logprobs", json_null());
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(root, "choices", choices);
    return sse_emit(out, root);
}

int srv_sse_usage(srv_buf *out, const srv_result *r) {
    json_t *root = base_obj(r, r->kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion");
    if (!root) return -1;
    json_object_set_new(root, "choices", json_array());
    json_object_set_new(root, "usage", usage_obj(r));
    return sse_emit(out, root);
}

int srv_sse_error(srv_buf *out, const srv_error *e) { return sse_emit(out, error_obj(e)); }

/* ---- text helpers ------------------------------------------------------------------- */
/* Length of the well-formed sequence at p (1..4); 0 if p[0..avail) can never
 * be one; -1 if it is a valid but incomplete prefix. */
static int utf8_seq(const unsigned char *p, size_t avail) {
    unsigned c = p[0];
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= avail) return -1;
        unsigned b = p[i];
        unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h) return 0;
    }
    return need;
}

long srv_utf8_clean(const char *in, size_t n, bool flush, srv_buf *out) {
    const unsigned char *p = (const unsigned char *)in;
    size_t i = 0, run = 0; /* run: start of the pending clean span */
    while (i < n) {
        int k = utf8_seq(p + i, n - i);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        if (srv_buf_add(out, in + run, i - run) < 0) return -1;
        if (k < 0 && !flush) return (long)i; /* incomplete tail: keep for later */
        if (srv_buf_add(out, "\xEF\xBF\xBD", 3) < 0) return -1;
        i += k < 0 ? n - i : 1; /* flush: the whole incomplete tail is one U+FFFD */
        run = i;
    }
    if (srv_buf_add(out, in + run, i - run) < 0) return -1;
    return (long)i;
}

long srv_stop_find(const char *text, size_t n, char *const *stops, int n_stops, size_t *hold) {
    long best = -1;
    size_t h = 0;
    for (int s = 0; s < n_stops; s++) {
        size_t L = strlen(stops[s]);
        if (L == 0) continue;
        const char *m = memmem(text, n, stops[s], L);
        if (m && (best < 0 || m - text < best)) best = m - text;
        for (size_t k = MR_MIN(L - 1, n); k > h; k--)
            if (memcmp(text + n - k, stops[s], k) == 0) {
                h = k;
                break;
            }
    }
    *hold = best >= 0 ? 0 : h;
    return best;
}
