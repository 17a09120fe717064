/*
 * srv_main.c — lifecycle of `moerun serve`: load the model and context, start
 * the engine thread and the HTTP daemon, wait for SIGINT/SIGTERM, then drain:
 * stop accepting connections, answer queued requests 503, let running ones
 * finish for cfg.drain_s seconds, cancel the rest, join everything, exit 0.
 */
#include <errno.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "server/srv_internal.h"

void srv_config_default(srv_config *c) {
    memset(c, 0, sizeof *c);
    c->mp = mr_model_default_params();
    c->cp = mr_ctx_default_params();
    c->samp = mr_sampler_default_params();
    c->host = "127.0.0.1";
    c->port = 8080;
    c->n_slots = 1;
    c->max_queue = 64;
    c->chunk = 256;
    c->max_body = 4u << 20;
    c->drain_s = 3.0;
    c->max_conn = 256;
}

/* Model id: the alias, else the GGUF file name without directory and ".gguf". */
static void model_id(char *out, size_t n, const srv_config *c) {
    if (c->alias && *c->alias) {
        snprintf(out, n, "%s", c->alias);
        return;
    }
    const char *p = c->mp.path ? c->mp.path : "model";
    const char *b = strrchr(p, '/');
    b = b ? b + 1 : p;
    snprintf(out, n, "%s", b);
    size_t l = strlen(out);
    if (l > 5 && !strcmp(out + l - 5, ".gguf")) out[l - 5] = 0;
}

int srv_run(const srv_config *cfg) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread created below */
    signal(SIGPIPE, SIG_IGN);

    srv_server *s = mr_calloc(1, sizeof *s);
    if (!s) return 1;
    s->cfg = *cfg;
    if (s->cfg.n_slots < 1) s->cfg.n_slots = 1;
    if (s->cfg.chunk < 1) s->cfg.chunk = 256;
    if (s->cfg.max_queue < 0) s->cfg.max_queue = 0;
    if (s->cfg.max_conn < 4) s->cfg.max_conn = 4;
    if (!s->cfg.host) s->cfg.host = "127.0.0.1";
    pthread_mutex_init(&s->qmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->qcv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->mmu, NULL);
    model_id(s->model_id, sizeof s->model_id, &s->cfg);
    s->t_started = (long long)time(NULL);
    int rc = 1;
    struct MHD_Daemon *d = NULL;

    s->model = mr_model_load(&s->cfg.mp);
    if (!s->model) {
        fprintf(stderr, "moerun serve: cannot load model: %s\n", mr_last_error());
        goto out;
    }
    s->cfg.cp.n_seq_max = s->cfg.n_slots;
    if (s->cfg.cp.n_batch > 0 && s->cfg.cp.n_batch < s->cfg.n_slots + 1) s->cfg.cp.n_batch = s->cfg.n_slots + 1;
    s->ctx = mr_ctx_new(s->model, &s->cfg.cp);
    if (!s->ctx) {
        fprintf(stderr, "moerun serve: cannot create the context: %s\n", mr_last_error());
        goto out;
    }
    s->n_ctx = mr_ctx_n_ctx(s->ctx);
    s->n_ctx_slot = s->n_ctx / s->cfg.n_slots;
    s->n_vocab = mr_n_vocab(s->model);
    if (s->n_ctx_slot < 2) {
        fprintf(stderr, "moerun serve: context of %d cells is too small for %d slots (-c / -np)\n", s->n_ctx,
                s->cfg.n_slots);
        goto out;
    }
    s->tokpool = srv_tokpool_new(s->model);
    if (!s->tokpool) {
        fprintf(stderr, "moerun serve: %s\n", mr_last_error());
        goto out;
    }
    if (srv_engine_start(s) < 0) {
        fprintf(stderr, "moerun serve: %s\n", mr_last_error());
        goto out;
    }
    int port = 0;
    d = srv_http_start(s, s->cfg.host, s->cfg.port, &port);
    if (!d) {
        fprintf(stderr, "moerun serve: %s\n", mr_last_error());
        goto out;
    }
    fprintf(stderr,
            "moerun serve: listening on http://%s:%d model=%s slots=%d ctx=%d (%d per slot) queue=%d chunk=%d "
            "body-limit=%zu\n",
            s->cfg.host, port, s->model_id, s->cfg.n_slots, s->n_ctx, s->n_ctx_slot, s->cfg.max_queue, s->cfg.chunk,
            s->cfg.max_body);

    /* main loop: tokenize for the HTTP threads (see srv_tokpool.c), poll signals */
    int sig = 0;
    for (;;) {
        srv_tokpool_serve(s->tokpool, 100);
        struct timespec zero = {0, 0};
        sig = sigtimedwait(&set, NULL, &zero);
        if (sig == SIGINT || sig == SIGTERM) break;
    }
    fprintf(stderr, "moerun serve: %s received, draining (up to %.1f s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
            s->cfg.drain_s);
    MHD_socket lfd = MHD_quiesce_daemon(d);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    srv_tokpool_close(s->tokpool); /* requests still being tokenized get 503 */
    srv_drain_queue(s);
    double t_end = mr_time_s() + s->cfg.drain_s;
    while (mr_time_s() < t_end && atomic_load(&s->slots_busy) > 0) usleep(20000);
    int left = atomic_load(&s->slots_busy);
    srv_engine_stop(s); /* cancels what is still running */
    MHD_stop_daemon(d);
    d = NULL;
    fprintf(stderr, "moerun serve: stopped (%d request%s cancelled at shutdown)\n", left, left == 1 ? "" : "s");
    rc = 0;
out:
    if (d) MHD_stop_daemon(d);
    srv_engine_stop(s);
    srv_tokpool_close(s->tokpool); /* wakes any handler still waiting (startup failure paths) */
    srv_tokpool_free(s->tokpool);
    mr_ctx_free(s->ctx);
    mr_model_free(s->model);
    pthread_mutex_destroy(&s->qmu);
    pthread_cond_destroy(&s->qcv);
    pthread_mutex_destroy(&s->mmu);
    free(s);
    return rc;
}
