/*
 * srv_tokpool.c — tokenization for the HTTP threads, run on the server's main
 * thread.
 *
 * Why: libmicrohttpd runs one short-lived thread per connection, and the
 * tokenizer keeps per-thread scratch buffers (__thread in src/tok/) that are
 * never freed when a thread exits: tokenizing on connection threads leaks a
 * few KiB per connection, and on any thread that exits before the process a
 * leak LeakSanitizer reports. The main thread lives as long as the process
 * and otherwise only waits for signals, so srv_run's main loop serves the
 * tokenization tasks here (srv_tokpool_serve) between signal checks. HTTP
 * threads block in srv_tokenize until their task is done.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "server/srv_internal.h"

typedef struct tok_task {
    const char *text;
    size_t len;
    bool add_special, parse_special;
    mr_token *out; /* result, malloc'd */
    int n;         /* tokens; -1 error; -2 shutting down */
    char err[256];
    bool done;
    struct tok_task *next;
} tok_task;

struct srv_tokpool {
    const mr_model *model;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    tok_task *head, *tail;
    bool closed;
};

static void run_task(const mr_model *m, tok_task *t) {
    int cap = (int)MR_MIN(t->len + 16, (size_t)1 << 28);
    for (int tries = 0; tries < 2; tries++) {
        free(t->out);
        t->out = mr_malloc((size_t)cap * sizeof *t->out);
        if (!t->out) break;
        int n = mr_tokenize(m, t->text, t->len, t->out, cap, t->add_special, t->parse_special);
        if (n < 0) break;
        if (n <= cap) {
            t->n = n;
            return;
        }
        cap = n;
    }
    snprintf(t->err, sizeof t->err, "%s", mr_last_error());
    free(t->out);
    t->out = NULL;
    t->n = -1;
}

struct srv_tokpool *srv_tokpool_new(const mr_model *m) {
    struct srv_tokpool *p = mr_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->model = m;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv_work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&p->cv_done, NULL);
    return p;
}

void srv_tokpool_serve(struct srv_tokpool *p, int timeout_ms) {
    pthread_mutex_lock(&p->mu);
    if (!p->head && !p->closed) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += (long)timeout_ms * 1000000L;
        while (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->cv_work, &p->mu, &ts);
    }
    while (p->head) {
        tok_task *t = p->head;
        p->head = t->next;
        if (!p->head) p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        run_task(p->model, t);
        pthread_mutex_lock(&p->mu);
        t->done = true;
        pthread_cond_broadcast(&p->cv_done);
    }
    pthread_mutex_unlock(&p->mu);
}

void srv_tokpool_close(struct srv_tokpool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->closed = true;
    for (tok_task *t = p->head; t; t = t->next) {
        t->n = -2;
        t->done = true;
    }
    p->head = p->tail = NULL;
    pthread_cond_broadcast(&p->cv_done);
    pthread_mutex_unlock(&p->mu);
}

void srv_tokpool_free(struct srv_tokpool *p) {
    if (!p) return;
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int srv_tokenize(struct srv_tokpool *p, const char *text, size_t len, bool add_special, bool parse_special,
                 mr_token **out) {
    tok_task t = {.text = text, .len = len, .add_special = add_special, .parse_special = parse_special};
    pthread_mutex_lock(&p->mu);
    if (p->closed) {
        pthread_mutex_unlock(&p->mu);
        mr_seterr("the server is shutting down");
        return -2;
    }
    if (p->tail) p->tail->next = &t;
    else p->head = &t;
    p->tail = &t;
    pthread_cond_signal(&p->cv_work);
    while (!t.done) pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    if (t.n == -2) {
        mr_seterr("the server is shutting down");
        return -2;
    }
    if (t.n < 0) {
        mr_seterr("%s", t.err);
        return -1;
    }
    *out = t.out;
    return t.n;
}
