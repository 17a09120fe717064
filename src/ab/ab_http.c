/*
 * ab_http.c — the HTTP client of `moerun ab` (endpoint configs) and
 * `moerun soak`: POST to an OpenAI-compatible server with or without SSE
 * streaming, timing the first content token (TTFT) and reading the token
 * counts from "usage" (or counting content chunks when the server sends
 * none), and plain GETs for /health. libcurl when the build found it
 * (MOERUN_HAVE_CURL); otherwise every call fails with a message saying so.
 * Only URLs the user gave are contacted.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ab/ab.h"
#include "base/base.h"

int ab_url_check(const char *url) {
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        mr_seterr("url \"%s\" must start with http:// (e.g. http://127.0.0.1:8080)", url ? url : "");
        return -1;
    }
    const char *h = strstr(url, "://") + 3;
    if (!*h || *h == '/' || *h == ':') {
        mr_seterr("url \"%s\" has no host", url);
        return -1;
    }
    return 0;
}

#ifdef MOERUN_HAVE_CURL
#include <curl/curl.h>

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

bool ab_http_available(void) { return true; }

typedef struct {
    ab_buf text;      /* generated text (want_content) */
    ab_buf body;      /* non-streaming body, or the SSE line being assembled */
    ab_http_result *res;
    bool stream, got_first, done;
    double t0;
    int n_chunks;
} xfer;

static void build_url(char *buf, size_t n, const char *base, const char *path) {
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/') bl--;
    snprintf(buf, n, "%.*s%s", (int)bl, base, path);
}

/* Usage counts and errors from a response object (a whole body or an SSE chunk). */
static void read_usage(json_t *o, ab_http_result *r) {
    json_t *u = json_object_get(o, "usage");
    if (json_is_object(u)) {
        json_t *pt = json_object_get(u, "prompt_tokens"), *ct = json_object_get(u, "completion_tokens");
        if (json_is_integer(pt) && json_is_integer(ct)) {
            r->n_prompt = (int)json_integer_value(pt);
            r->n_gen = (int)json_integer_value(ct);
            r->usage = true;
        }
    }
    json_t *e = json_object_get(o, "error");
    if (e && !r->error[0]) {
        const char *m = json_string_value(json_object_get(e, "message"));
        if (!m) m = json_string_value(e);
        snprintf(r->error, sizeof r->error, "server error: %s", m ? m : "(no message)");
    }
}

/* Non-empty generated text in a chunk or response: delta.content (chat
 * stream), message.content (chat), text (completions). Appended to text. */
static bool chunk_has_content(json_t *o, ab_buf *text) {
    json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    if (!ch) return false;
    const char *s = json_string_value(json_object_get(json_object_get(ch, "delta"), "content"));
    if (!s) s = json_string_value(json_object_get(json_object_get(ch, "message"), "content"));
    if (!s) s = json_string_value(json_object_get(ch, "text"));
    if (!s) s = json_string_value(json_object_get(json_object_get(ch, "delta"), "reasoning_content"));
    if (s && text) ab_puts(text, s);
    return s && *s;
}

static void sse_line(xfer *x, const char *line) {
    if (strncmp(line, "data:", 5) != 0) return;
    line += 5;
    while (*line == ' ') line++;
    if (!strcmp(line, "[DONE]")) {
        x->done = true;
        return;
    }
    json_t *o = json_loads(line, 0, NULL);
    if (!o) return;
    if (chunk_has_content(o, x->res->want_content ? &x->text : NULL)) {
        x->n_chunks++;
        if (!x->got_first) {
            x->got_first = true;
            x->res->ttft_s = mr_time_s() - x->t0;
        }
    }
    read_usage(o, x->res);
    json_decref(o);
}

static size_t on_data(char *p, size_t sz, size_t nm, void *ud) {
    xfer *x = ud;
    size_t n = sz * nm;
    if (!x->stream) {
        if (x->body.n + n > (64u << 20)) return 0; /* refuse absurd bodies */
        ab_putn(&x->body, p, n);
        return n;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            if (x->body.n && x->body.s[x->body.n - 1] == '\r') x->body.s[--x->body.n] = 0;
            if (x->body.n) sse_line(x, x->body.s);
            x->body.n = 0;
            if (x->body.s) x->body.s[0] = 0;
        } else ab_putn(&x->body, p + i, 1);
        if (x->body.n > (16u << 20)) return 0;
    }
    return n;
}

int ab_http_post(const char *base_url, const char *path, const char *body, bool stream, double timeout_s,
                 ab_http_result *res) {
    bool want = res->want_content;
    memset(res, 0, sizeof *res);
    res->want_content = want;
    res->ttft_s = res->total_s = NAN;
    pthread_once(&g_once, curl_init_once);
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(res->error, sizeof res->error, "curl_easy_init failed");
        return -1;
    }
    char url[1024];
    build_url(url, sizeof url, base_url, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, stream ? "Accept: text/event-stream" : "Accept: application/json");
    xfer x = {.res = res, .stream = stream, .t0 = mr_time_s()};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* never through a proxy: these are the user's own servers */
    CURLcode rc = curl_easy_perform(c);
    res->total_s = mr_time_s() - x.t0;
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    res->status = (int)status;
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    int ret = 0;
    if (rc != CURLE_OK) {
        snprintf(res->error, sizeof res->error, "%s", curl_easy_strerror(rc));
        ret = -1;
    } else if (!stream) {
        json_t *o = x.body.s ? json_loads(x.body.s, 0, NULL) : NULL;
        if (o) {
            read_usage(o, res);
            bool has = chunk_has_content(o, want ? &x.text : NULL);
            if (status == 200 && !res->usage) res->n_gen = has ? 1 : 0;
            json_decref(o);
        } else if (status == 200) snprintf(res->error, sizeof res->error, "response is not JSON");
        res->ttft_s = res->total_s;
    } else {
        if (x.body.n) sse_line(&x, x.body.s);
        if (!res->usage) res->n_gen = x.n_chunks;
        if (status == 200 && !x.done && !res->error[0])
            snprintf(res->error, sizeof res->error, "stream ended without [DONE]");
        if (!x.got_first) res->ttft_s = res->total_s;
    }
    if (ret == 0 && status != 200 && !res->error[0]) {
        const char *b = x.body.s ? x.body.s : "";
        snprintf(res->error, sizeof res->error, "HTTP %ld: %.200s", status, b);
    } else if (ret == 0 && status != 200) {
        char tmp[256];
        snprintf(tmp, sizeof tmp, "HTTP %ld: %.200s", status, res->error);
        snprintf(res->error, sizeof res->error, "%s", tmp);
    }
    ab_buf_free(&x.body);
    if (want) res->content = ab_buf_take(&x.text);
    else ab_buf_free(&x.text);
    return ret;
}

char *ab_http_get(const char *base_url, const char *path, double timeout_s, int *status) {
    pthread_once(&g_once, curl_init_once);
    *status = 0;
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    char url[1024];
    build_url(url, sizeof url, base_url, path);
    ab_http_result res;
    memset(&res, 0, sizeof res);
    xfer x = {.res = &res};  /* not streaming: the body is collected */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    CURLcode rc = curl_easy_perform(c);
    long st = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        mr_seterr("GET %s: %s", url, curl_easy_strerror(rc));
        ab_buf_free(&x.body);
        return NULL;
    }
    *status = (int)st;
    return ab_buf_take(&x.body);
}

#else /* no libcurl */

bool ab_http_available(void) { return false; }

int ab_http_post(const char *base_url, const char *path, const char *body, bool stream, double timeout_s,
                 ab_http_result *res) {
    memset(res, 0, sizeof *res);
    res->ttft_s = res->total_s = NAN;
    snprintf(res->error, sizeof res->error,
             "this build has no HTTP client (install libcurl4-openssl-dev and rebuild)");
    return -1;
}

char *ab_http_get(const char *base_url, const char *path, double timeout_s, int *status) {
    *status = 0;
    mr_seterr("this build has no HTTP client (install libcurl4-openssl-dev and rebuild)");
    return NULL;
}
#endif
