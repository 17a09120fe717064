/*
 * fuzz_srv_request.c — libFuzzer target for the server's request parsing and
 * validation (src/server/srv_json.c): raw body bytes go through
 * srv_parse_request (chat and completion), srv_parse_tokenize and
 * srv_parse_detokenize, then the error JSON, the response / SSE formatting of
 * the parsed text, the UTF-8 cleaner and the stop-string search.
 *
 * The first input byte selects the entry point (low 2 bits) and a split point
 * for the text helpers; the rest is the body, passed with its exact length
 * (no NUL terminator, so reads past the end are caught by ASan).
 * Checks: no crash, leak or hang; failure implies a 4xx/5xx status, a type and
 * a non-empty message, and the error JSON parses back with that message;
 * success implies every field within the documented ranges (srv_json.h), and
 * that the same body parses the same way twice; srv_utf8_clean yields valid
 * UTF-8 and consumes everything when flushing; srv_stop_find's match and hold
 * are consistent with a brute-force search.
 * Built only with the server (libmicrohttpd); otherwise the target is empty.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#ifdef MOERUN_HAVE_SERVER
#include "server/srv_json.h"

static volatile uint64_t sink;

static bool utf8_ok(const char *s, size_t n) {
    json_t *j = json_stringn(s, n); /* jansson validates UTF-8 */
    if (!j) return false;
    json_decref(j);
    return true;
}

static void check_error(const srv_error *e) {
    if (e->status < 400 || e->status > 599 || !e->type || !e->message[0]) abort();
    if (!memchr(e->message, 0, sizeof e->message)) abort();
    char *s = srv_error_json(e);
    if (!s) abort();
    json_error_t je;
    json_t *j = json_loads(s, 0, &je);
    json_t *msg = json_object_get(json_object_get(j, "error"), "message");
    if (!json_is_string(msg) || json_string_length(msg) == 0) abort();
    json_decref(j);
    free(s);
    srv_buf b = {0};
    if (srv_sse_error(&b, e) < 0) abort();
    srv_buf_free(&b);
}

static bool in(float x, float lo, float hi) { return isnan(x) || (x >= lo && x <= hi); }

static void check_request(const srv_request *r, int kind) {
    if (r->kind != kind) abort();
    if (kind == SRV_CHAT) {
        if (r->n_msgs < 1 || !r->msgs || r->prompt) abort();
        for (int i = 0; i < r->n_msgs; i++) {
            if (!r->msgs[i].role || !r->msgs[i].content) abort();
            if (!strcmp(r->msgs[i].role, "developer")) abort(); /* mapped to system */
            if (!utf8_ok(r->msgs[i].content, strlen(r->msgs[i].content))) abort();
        }
    } else if (!r->prompt || r->msgs || r->n_msgs) abort();
    if (r->max_tokens != -1 && (r->max_tokens < 1 || r->max_tokens > (1 << 30))) abort();
    if (r->top_k != -1 && (r->top_k < 0 || r->top_k > (1 << 30))) abort();
    if (!in(r->temperature, 0, 2) || !in(r->top_p, 0, 1) || !in(r->min_p, 0, 1)) abort();
    if (!in(r->presence_penalty, -2, 2) || !in(r->frequency_penalty, -2, 2)) abort();
    if (!in(r->repeat_penalty, 1e-3f, 100)) abort();
    if (r->n_stop < 0 || r->n_stop > SRV_MAX_STOP) abort();
    for (int i = 0; i < r->n_stop; i++)
        if (!r->stop[i] || !r->stop[i][0]) abort();
    if (r->include_usage && !r->stream) sink++; /* allowed, only meaningful with stream */
}

/* Format the parsed text as the server would send it back. */
static void echo(const char *text, int kind, const srv_request *r) {
    srv_buf clean = {0};
    size_t n = strlen(text);
    long used = srv_utf8_clean(text, n, true, &clean);
    if (used != (long)n) abort();
    srv_result res = {.kind = kind, .id = "fuzz", .model = r->model ? r->model : "m", .created = 1,
                      .text = clean.p ? clean.p : "", .text_len = clean.n, .finish = "stop", .n_prompt = 1,
                      .n_gen = 2};
    char *s = srv_json_result(&res);
    if (!s) abort();
    free(s);
    srv_buf sse = {0};
    if (srv_sse_chunk(&sse, &res, res.text, res.text_len, true, NULL) < 0) abort();
    if (srv_sse_chunk(&sse, &res, "", 0, false, "length") < 0) abort();
    if (srv_sse_usage(&sse, &res) < 0) abort();
    srv_buf_free(&sse);
    srv_buf_free(&clean);
}

/* UTF-8 cleaning of raw bytes, in two pieces as a stream would deliver them. */
static void fuzz_clean(const char *p, size_t n, size_t cut) {
    if (cut > n) cut = n;
    srv_buf out = {0};
    long a = srv_utf8_clean(p, cut, false, &out);
    if (a < 0 || (size_t)a > cut || cut - (size_t)a > 3) abort();
    /* the rest, starting with the unconsumed tail, flushed */
    long b = srv_utf8_clean(p + a, n - (size_t)a, true, &out);
    if (b != (long)(n - (size_t)a)) abort();
    if (out.n && !utf8_ok(out.p, out.n)) abort();
    if (out.n && strlen(out.p) != out.n && !memchr(p, 0, n)) abort();
    /* in one piece the result is the same */
    srv_buf one = {0};
    if (srv_utf8_clean(p, n, true, &one) != (long)n) abort();
    if (one.n != out.n || (one.n && memcmp(one.p, out.p, one.n))) abort();
    srv_buf_free(&one);
    srv_buf_free(&out);
}

/* Stop strings: the first 1..4 NUL-free pieces of the text before a 0x01 byte
 * are the stops, the rest is the text. */
static void fuzz_stop(const char *p, size_t n) {
    const char *sep = memchr(p, 1, n);
    if (!sep) return;
    char stops_buf[256];
    size_t sl = (size_t)(sep - p);
    if (sl >= sizeof stops_buf) return;
    memcpy(stops_buf, p, sl);
    stops_buf[sl] = 0;
    char *stops[4];
    int ns = 0;
    for (char *t = stops_buf; ns < 4;) {
        stops[ns++] = t;
        char *e = strchr(t, '\n');
        if (!e) break;
        *e = 0;
        t = e + 1;
    }
    const char *text = sep + 1;
    size_t tn = n - sl - 1;
    size_t hold = 12345;
    long m = srv_stop_find(text, tn, stops, ns, &hold);
    /* brute force */
    long best = -1;
    size_t h = 0;
    for (int s = 0; s < ns; s++) {
        size_t L = strlen(stops[s]);
        if (!L) continue;
        for (size_t i = 0; i + L <= tn; i++)
            if (!memcmp(text + i, stops[s], L)) {
                if (best < 0 || (long)i < best) best = (long)i;
                break;
            }
        for (size_t k = 1; k < L && k <= tn; k++)
            if (!memcmp(text + tn - k, stops[s], k) && k > h) h = k;
    }
    if (m != best) abort();
    if (hold != (best >= 0 ? 0 : h)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    uint8_t sel = data[0];
    size_t len = size - 1;
    char *body = malloc(len ? len : 1);
    memcpy(body, data + 1, len);
    srv_error e;
    switch (sel & 3) {
    case 0:
    case 1: {
        int kind = (sel & 3) == 0 ? SRV_CHAT : SRV_COMPLETION;
        srv_request r;
        int rc = srv_parse_request(body, len, kind, &r, &e);
        if (rc < 0) {
            check_error(&e);
        } else {
            if (rc != 0) abort();
            check_request(&r, kind);
            /* deterministic: the same body gives the same request */
            srv_request r2;
            srv_error e2;
            if (srv_parse_request(body, len, kind, &r2, &e2) != 0 || r2.n_msgs != r.n_msgs ||
                r2.max_tokens != r.max_tokens || r2.n_stop != r.n_stop || r2.seed != r.seed)
                abort();
            srv_request_free(&r2);
            if (kind == SRV_CHAT)
                for (int i = 0; i < r.n_msgs; i++) echo(r.msgs[i].content, kind, &r);
            else echo(r.prompt, kind, &r);
        }
        srv_request_free(&r);
        break;
    }
    case 2: {
        char *content = NULL;
        bool as = true, ps = false, wp = true;
        if (srv_parse_tokenize(body, len, &content, &as, &ps, &wp, &e) < 0) {
            check_error(&e);
            if (content) abort();
        } else if (!content) abort();
        else sink += strlen(content);
        free(content);
        int32_t *toks = NULL;
        int n = -1;
        if (srv_parse_detokenize(body, len, &toks, &n, &e) < 0) {
            check_error(&e);
            if (toks) abort();
        } else {
            if (n < 0 || (n > 0 && !toks)) abort();
            for (int i = 0; i < n; i++)
                if (toks[i] < 0) abort();
        }
        free(toks);
        break;
    }
    default:
        fuzz_clean(body, len, sel >> 2);
        fuzz_stop(body, len);
        break;
    }
    free(body);
    return 0;
}
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)data;
    (void)size;
    return 0;
}
#endif
