/*
 * srv_http.c — the libmicrohttpd layer of `moerun serve`: request bodies,
 * routing, the generation endpoints (non-streaming and SSE streaming) and the
 * one-line-per-request log.
 *
 * MHD runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION), so the
 * handlers may block: a non-streaming request waits for its job; a streaming
 * one answers with a callback response whose reader waits for new text. Both
 * poll the client socket for a hang-up (POLLRDHUP) while waiting, so a client
 * that leaves cancels its generation at once (the engine frees the slot at
 * the next step); the response-free and request-completed callbacks cancel
 * as well.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "base/base.h"
#include "server/srv_internal.h"

typedef struct {
    srv_server *s;
    char method[16];
    char url[128];
    double t0;
    srv_buf body;
    bool too_big;
    int status;
    bool is_stream;
    srv_job *job; /* generation requests: a reference for the log line */
    int fd;
} req_ctx;

typedef struct {
    srv_server *s;
    srv_job *job;
    srv_result res; /* id/model/created/kind for chunks */
    srv_buf out;
    size_t out_off;
    size_t text_sent;
    bool sent_role, done;
    int fd;
} stream_ctx;

/* True when the peer has closed its end (or the socket failed). */
static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

static void deadline_ms(struct timespec *ts, long ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_nsec += ms * 1000000L;
    while (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* ---- sending ------------------------------------------------------------------- */
static enum MHD_Result send_body(struct MHD_Connection *c, req_ctx *rq, int status, char *body, const char *ctype) {
    if (!body) {
        status = 500;
        body = mr_strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
        ctype = "application/json";
        if (!body) return MHD_NO;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype ? ctype : "application/json");
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 405)
        MHD_add_response_header(r, "Allow", strcmp(rq->method, "GET") == 0 ? "POST" : "GET, HEAD");
    if (status == 413) MHD_add_response_header(r, "Connection", "close");
    rq->status = status;
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_error(struct MHD_Connection *c, req_ctx *rq, const srv_error *e) {
    return send_body(c, rq, e->status, srv_error_json(e), "application/json");
}

static enum MHD_Result send_reply(struct MHD_Connection *c, req_ctx *rq, int status, srv_reply *r) {
    return send_body(c, rq, status, r->body, r->ctype);
}

/* ---- generation ------------------------------------------------------------------- */
static void make_id(char *buf, size_t n, const char *prefix) {
    static _Atomic uint64_t counter;
    uint64_t x = mr_time_us() ^ ((uint64_t)atomic_fetch_add(&counter, 1) * 0x9E3779B97F4A7C15ull);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    snprintf(buf, n, "%s%016llx", prefix, (unsigned long long)x);
}

/* The prompt text of a request: the chat template over the messages, or the
 * completion prompt. malloc'd; NULL with *e set. */
static char *prompt_text(srv_server *s, const srv_request *r, srv_error *e) {
    if (r->kind == SRV_COMPLETION) {
        char *p = mr_strdup(r->prompt);
        if (!p) srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
        return p;
    }
    mr_chat_msg *m = mr_calloc((size_t)r->n_msgs, sizeof *m);
    if (!m) {
        srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
        return NULL;
    }
    for (int i = 0; i < r->n_msgs; i++) m[i] = (mr_chat_msg){r->msgs[i].role, r->msgs[i].content};
    char *t = mr_chat_apply(s->model, s->cfg.chat_template, m, r->n_msgs, true);
    if (!t && !s->cfg.chat_template) {
        static _Atomic int warned;
        char why[256];
        snprintf(why, sizeof why, "%s", mr_last_error());
        t = mr_chat_apply(s->model, "chatml", m, r->n_msgs, true);
        if (t && atomic_fetch_add(&warned, 1) == 0)
            fprintf(stderr, "moerun serve: warning: the model's chat template failed (%s); using chatml "
                            "(pass --chat-template to choose)\n", why);
    }
    if (!t) srv_err(e, 500, "server_error", "chat_template_error", NULL, "chat template: %s", mr_last_error());
    free(m);
    return t;
}

/* Tokenizes the prompt into j->prompt (on a tokenizer worker) and checks that
 * it is not empty and fits a slot with room for one generated token. */
static int tokenize_prompt(srv_server *s, srv_job *j, const char *text, srv_error *e) {
    const char *what = j->req.kind == SRV_CHAT ? "messages" : "prompt";
    int n = srv_tokenize(s->tokpool, text, strlen(text), true, true, &j->prompt);
    if (n == -2) {
        srv_err(e, 503, "server_error", "server_shutting_down", NULL, "the server is shutting down");
        return -1;
    }
    if (n < 0) {
        srv_err(e, 500, "server_error", NULL, NULL, "tokenize: %s", mr_last_error());
        return -1;
    }
    j->n_prompt = n;
    mr_token bos = mr_token_bos(s->model);
    if (n >= 2 && bos >= 0 && j->prompt[0] == bos && j->prompt[1] == bos) { /* the template added one too */
        memmove(j->prompt, j->prompt + 1, (size_t)(n - 1) * sizeof *j->prompt);
        j->n_prompt--;
    }
    if (j->n_prompt == 0) {
        srv_err(e, 400, "invalid_request_error", NULL, what, "the prompt is empty");
        return -1;
    }
    if (j->n_prompt >= s->n_ctx_slot) {
        srv_err(e, 400, "invalid_request_error", "context_length_exceeded", what,
                "This model's maximum context length is %d tokens per slot. However, your %s resulted in %d "
                "tokens. Please reduce the length of the %s.",
                s->n_ctx_slot, what, j->n_prompt, what);
        return -1;
    }
    return 0;
}

static void fill_result(srv_result *r, srv_server *s, srv_job *j) {
    r->kind = j->req.kind;
    r->id = j->id;
    r->model = s->model_id;
    r->created = j->created;
    r->n_prompt = j->n_prompt;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_ctx *st = cls;
    srv_job *j = st->job;
    for (;;) {
        if (st->out_off < st->out.n) {
            size_t n = MR_MIN(max, st->out.n - st->out_off);
            memcpy(buf, st->out.p + st->out_off, n);
            st->out_off += n;
            if (st->out_off == st->out.n) st->out_off = st->out.n = 0;
            return (ssize_t)n;
        }
        if (st->done) return MHD_CONTENT_READER_END_OF_STREAM;
        if (st->res.kind == SRV_CHAT && !st->sent_role) {
            st->sent_role = true;
            if (srv_sse_chunk(&st->out, &st->res, "", 0, true, NULL) < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        /* wait for new text or the end */
        pthread_mutex_lock(&j->mu);
        while (j->text.n == st->text_sent && j->state != JOB_DONE) {
            struct timespec ts;
            deadline_ms(&ts, 100);
            pthread_cond_timedwait(&j->cv, &j->mu, &ts);
            if (j->text.n == st->text_sent && j->state != JOB_DONE && client_gone(st->fd)) {
                pthread_mutex_unlock(&j->mu);
                atomic_store(&j->cancel, true);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
        }
        size_t n_new = j->text.n - st->text_sent;
        char *fresh = n_new ? mr_malloc(n_new) : NULL;
        if (fresh) memcpy(fresh, j->text.p + st->text_sent, n_new);
        st->text_sent = j->text.n;
        bool done = j->state == JOB_DONE;
        int err = j->err_status;
        char msg[256];
        snprintf(msg, sizeof msg, "%s", j->err_msg);
        const char *finish = j->finish;
        st->res.n_gen = j->n_gen;
        pthread_mutex_unlock(&j->mu);
        if (fresh) srv_sse_chunk(&st->out, &st->res, fresh, n_new, false, NULL);
        free(fresh);
        if (done) {
            st->done = true;
            if (err == 499) return MHD_CONTENT_READER_END_WITH_ERROR;
            if (err) {
                srv_error e;
                srv_err(&e, err, NULL, err == 503 ? "server_shutting_down" : NULL, NULL, "%s", msg);
                srv_sse_error(&st->out, &e);
            } else {
                srv_sse_chunk(&st->out, &st->res, NULL, 0, false, finish ? finish : "stop");
                if (j->req.include_usage) srv_sse_usage(&st->out, &st->res);
                srv_buf_add(&st->out, "data: [DONE]\n\n", 14);
            }
        }
    }
}

static void stream_free(void *cls) {
    stream_ctx *st = cls;
    atomic_store(&st->job->cancel, true); /* no-op when it already finished */
    srv_job_unref(st->job);
    srv_buf_free(&st->out);
    free(st);
}

/* Waits for a non-streaming job; cancels it when the client hangs up.
 * Returns false when the client is gone. */
static bool wait_job(srv_server *s, srv_job *j, int fd) {
    bool gone = false;
    pthread_mutex_lock(&j->mu);
    while (j->state != JOB_DONE) {
        struct timespec ts;
        deadline_ms(&ts, 100);
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
        if (j->state != JOB_DONE && !gone && client_gone(fd)) {
            gone = true;
            atomic_store(&j->cancel, true);
        }
    }
    pthread_mutex_unlock(&j->mu);
    return !gone;
}

static enum MHD_Result handle_generate(struct MHD_Connection *c, req_ctx *rq, int kind) {
    srv_server *s = rq->s;
    srv_error e = {0};
    srv_job *j = srv_job_new();
    if (!j) {
        srv_err(&e, 500, "server_error", NULL, NULL, "out of memory");
        return send_error(c, rq, &e);
    }
    rq->job = j; /* rq's reference (released in the completed callback) */
    if (srv_parse_request(rq->body.p, rq->body.n, kind, &j->req, &e) < 0) return send_error(c, rq, &e);
    char *text = prompt_text(s, &j->req, &e);
    if (!text) return send_error(c, rq, &e);
    int rc = tokenize_prompt(s, j, text, &e);
    free(text);
    if (rc < 0) return send_error(c, rq, &e);
    make_id(j->id, sizeof j->id, kind == SRV_CHAT ? "chatcmpl-" : "cmpl-");
    j->created = (long long)time(NULL);
    int st = srv_submit(s, j);
    if (st) {
        if (st < 0) srv_err(&e, 503, "server_error", "server_shutting_down", NULL, "the server is shutting down");
        else {
            srv_err(&e, 503, "server_error", "server_overloaded", NULL,
                    "the server is busy (%d slots, queue of %d full); retry later", s->cfg.n_slots, s->cfg.max_queue);
            pthread_mutex_lock(&s->mmu);
            s->n_rejected_queue++;
            pthread_mutex_unlock(&s->mmu);
        }
        return send_error(c, rq, &e);
    }
    if (j->req.stream) {
        stream_ctx *sc = mr_calloc(1, sizeof *sc);
        if (!sc) {
            atomic_store(&j->cancel, true);
            srv_err(&e, 500, "server_error", NULL, NULL, "out of memory");
            return send_error(c, rq, &e);
        }
        sc->s = s;
        sc->job = j;
        srv_job_ref(j);
        sc->fd = rq->fd;
        fill_result(&sc->res, s, j);
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, sc, stream_free);
        if (!r) {
            stream_free(sc);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        MHD_add_response_header(r, "X-Accel-Buffering", "no");
        rq->status = 200;
        rq->is_stream = true;
        enum MHD_Result ok = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ok;
    }
    if (!wait_job(s, j, rq->fd)) {
        rq->status = 499;
        return MHD_NO; /* client gone: close */
    }
    if (j->err_status) {
        srv_err(&e, j->err_status, NULL, j->err_status == 503 ? "server_shutting_down" : NULL, NULL, "%s",
                j->err_msg);
        return send_error(c, rq, &e);
    }
    srv_result res;
    fill_result(&res, s, j);
    pthread_mutex_lock(&j->mu);
    res.text = j->text.p ? j->text.p : "";
    res.text_len = j->text.n;
    res.finish = j->finish;
    res.n_gen = j->n_gen;
    char *body = srv_json_result(&res);
    pthread_mutex_unlock(&j->mu);
    return send_body(c, rq, 200, body, "application/json");
}

/* ---- routing --------------------------------------------------------------------- */
enum { R_HEALTH, R_METRICS, R_MODELS, R_CHAT, R_COMPL, R_TOK, R_DETOK };
static const struct {
    const char *path;
    int id;
    bool post;
} k_routes[] = {
    {"/health", R_HEALTH, false},         {"/metrics", R_METRICS, false},
    {"/v1/models", R_MODELS, false},      {"/models", R_MODELS, false},
    {"/v1/chat/completions", R_CHAT, true}, {"/chat/completions", R_CHAT, true},
    {"/v1/completions", R_COMPL, true},   {"/completions", R_COMPL, true},
    {"/tokenize", R_TOK, true},           {"/detokenize", R_DETOK, true},
};

static enum MHD_Result route(struct MHD_Connection *c, req_ctx *rq, const char *url) {
    srv_server *s = rq->s;
    srv_error e = {0};
    srv_reply rep = {0};
    int found = -1;
    for (size_t i = 0; i < MR_ARRAY_LEN(k_routes); i++)
        if (!strcmp(url, k_routes[i].path)) found = (int)i;
    if (found < 0) {
        srv_err(&e, 404, "invalid_request_error", "not_found", NULL, "unknown route: %s %s", rq->method, url);
        return send_error(c, rq, &e);
    }
    bool is_get = !strcmp(rq->method, "GET") || !strcmp(rq->method, "HEAD");
    bool is_post = !strcmp(rq->method, "POST");
    if ((k_routes[found].post && !is_post) || (!k_routes[found].post && !is_get)) {
        srv_err(&e, 405, "invalid_request_error", "method_not_allowed", NULL, "%s does not accept %s (use %s)", url,
                rq->method, k_routes[found].post ? "POST" : "GET");
        return send_error(c, rq, &e);
    }
    if (rq->too_big) {
        srv_err(&e, 413, "invalid_request_error", "request_too_large", NULL,
                "request body exceeds the limit of %zu bytes", s->cfg.max_body);
        return send_error(c, rq, &e);
    }
    int st;
    switch (k_routes[found].id) {
    case R_HEALTH: st = srv_route_health(s, &rep); break;
    case R_METRICS: st = srv_route_metrics(s, &rep); break;
    case R_MODELS: st = srv_route_models(s, &rep); break;
    case R_TOK: st = srv_route_tokenize(s, rq->body.p, rq->body.n, &rep); break;
    case R_DETOK: st = srv_route_detokenize(s, rq->body.p, rq->body.n, &rep); break;
    case R_CHAT: return handle_generate(c, rq, SRV_CHAT);
    default: return handle_generate(c, rq, SRV_COMPLETION);
    }
    return send_reply(c, rq, st, &rep);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    srv_server *s = cls;
    req_ctx *rq = *con_cls;
    if (!rq) {
        rq = mr_calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        rq->s = s;
        rq->t0 = mr_time_s();
        rq->fd = -1;
        snprintf(rq->method, sizeof rq->method, "%s", method);
        snprintf(rq->url, sizeof rq->url, "%s", url);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci) rq->fd = ci->connect_fd;
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!rq->too_big) {
            if (rq->body.n + *upload_size > s->cfg.max_body) {
                rq->too_big = true;
                srv_buf_free(&rq->body);
            } else if (srv_buf_add(&rq->body, upload, *upload_size) < 0) {
                rq->too_big = true; /* out of memory: answer 413 as well */
                srv_buf_free(&rq->body);
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return route(c, rq, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    srv_server *s = cls;
    req_ctx *rq = *con_cls;
    if (!rq) return;
    *con_cls = NULL;
    int n_prompt = 0, n_gen = 0;
    bool cancelled = false;
    if (rq->job) {
        srv_job *j = rq->job;
        pthread_mutex_lock(&j->mu);
        if (j->state != JOB_DONE || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) atomic_store(&j->cancel, true);
        cancelled = j->err_status == 499 || (j->state != JOB_DONE && rq->status == 200);
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && rq->is_stream) cancelled = true;
        n_prompt = j->n_prompt;
        n_gen = j->n_gen;
        pthread_mutex_unlock(&j->mu);
        srv_job_unref(j);
    }
    int status = rq->status ? rq->status : 499;
    double ms = (mr_time_s() - rq->t0) * 1e3;
    pthread_mutex_lock(&s->mmu);
    s->req_total++;
    s->req_status[srv_status_index(cancelled && status == 200 ? 499 : status)]++;
    pthread_mutex_unlock(&s->mmu);
    fprintf(stderr, "moerun serve: %s %s %d prompt=%d gen=%d %.1f ms%s\n", rq->method, rq->url, status, n_prompt,
            n_gen, ms, cancelled ? " (cancelled: client disconnected)" : "");
    srv_buf_free(&rq->body);
    free(rq);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    if (mr_log_level < MR_LOG_INFO) return;
    fprintf(stderr, "moerun serve: mhd: ");
    vfprintf(stderr, fmt, ap);
}

struct MHD_Daemon *srv_http_start(srv_server *s, const char *host, int port, int *bound_port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    int gr = getaddrinfo(host, ports, &hints, &ai);
    if (gr != 0 || !ai) {
        mr_seterr("--host %s: %s", host, gai_strerror(gr));
        return NULL;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | MHD_USE_POLL;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_access, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->cfg.max_conn,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!d) {
        mr_seterr("cannot listen on %s:%d: %s", host, port, errno ? strerror(errno) : "libmicrohttpd failed");
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    *bound_port = di ? di->port : port;
    return d;
}
