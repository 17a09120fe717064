/*
 * srv_internal.h — types shared by the HTTP layer (srv_http.c) and the engine
 * thread (srv_engine.c): jobs, the server state, metrics.
 *
 * Ownership: a job is reference counted; the HTTP connection holds one
 * reference and the engine (queue or slot) another. Job output fields are
 * guarded by the job's mutex; `cancel` is an atomic the HTTP side sets (client
 * gone, shutdown) and the engine checks between steps.
 */
#ifndef MR_SRV_INTERNAL_H
#define MR_SRV_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "moerun.h"
#include "server/server.h"
#include "server/srv_json.h"

typedef enum { JOB_QUEUED = 0, JOB_RUNNING, JOB_DONE } srv_job_state;

typedef struct srv_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs; /* under mu */

    /* input (immutable after submit) */
    srv_request req;
    mr_token *prompt;
    int n_prompt;
    char id[48];
    long long created;

    /* output (under mu) */
    srv_job_state state;
    srv_buf text;        /* all text emitted so far (clean UTF-8, stop strings cut) */
    int n_gen;           /* tokens generated */
    const char *finish;  /* "stop" | "length" once done */
    int err_status;      /* != 0: failed (500 engine error, 503 shutdown) */
    char err_msg[256];
    double t_submit, t_start, t_first, t_end; /* mr_time_s() */

    atomic_bool cancel;  /* set by the HTTP side: stop generating, free the slot */
    struct srv_job *next; /* queue link (under the server queue mutex) */
} srv_job;

/* Metrics by HTTP status (index into k_status list in srv_http.c). */
#define SRV_N_STATUS 10

typedef struct srv_server {
    srv_config cfg;
    mr_model *model;
    mr_ctx *ctx;
    char model_id[256];
    int n_ctx, n_ctx_slot, n_vocab;
    long long t_started;

    /* queue (qmu) */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    srv_job *qhead, *qtail;
    int qlen;
    bool stop_engine;   /* engine thread exits after cancelling everything */
    bool draining;      /* no new jobs accepted */
    pthread_t engine;
    bool engine_started;
    struct srv_engine *eng; /* slots and batch buffers, engine thread only */
    struct srv_tokpool *tokpool;

    /* published by the engine after each step */
    atomic_int slots_busy, kv_used, n_active_jobs;

    /* metrics (mmu) */
    pthread_mutex_t mmu;
    uint64_t req_status[SRV_N_STATUS];
    uint64_t req_total;
    uint64_t prompt_tokens, gen_tokens;   /* of finished generations */
    uint64_t step_prompt_tokens, step_gen_tokens; /* decoded by the engine */
    double t_busy;                        /* seconds inside mr_decode + sampling */
    uint64_t n_cancelled, n_rejected_queue;
} srv_server;

/* ---- jobs (srv_engine.c) ---------------------------------------------------------- */
srv_job *srv_job_new(void);
void srv_job_ref(srv_job *j);
void srv_job_unref(srv_job *j);
/* Marks the job done with an error (under its mutex) and wakes waiters. */
void srv_job_fail(srv_job *j, int status, const char *msg);

/* ---- engine (srv_engine.c) -------------------------------------------------------- */
int srv_engine_start(srv_server *s);
/* Stops the thread: cancels queued and running jobs, frees the slots. */
void srv_engine_stop(srv_server *s);
/* Queue a job (takes a new reference). Returns 0; 503 when the queue is full;
 * -1 when the server is draining (answer 503 as well). */
int srv_submit(srv_server *s, srv_job *j);
/* Fails every queued job with 503 (draining) and refuses new ones. */
void srv_drain_queue(srv_server *s);


/* ---- simple routes (srv_routes.c) --------------------------------------------------
 * Each returns the HTTP status and a malloc'd body in *body (JSON unless
 * *ctype says otherwise). On 4xx the body is an OpenAI-style error. */
typedef struct {
    char *body;
    const char *ctype;
} srv_reply;
int srv_route_health(srv_server *s, srv_reply *out);
int srv_route_metrics(srv_server *s, srv_reply *out);
int srv_route_models(srv_server *s, srv_reply *out);
int srv_route_tokenize(srv_server *s, const char *body, size_t len, srv_reply *out);
int srv_route_detokenize(srv_server *s, const char *body, size_t len, srv_reply *out);
/* The error reply for e (status = e->status). */
int srv_reply_error(const srv_error *e, srv_reply *out);

/* Index of an HTTP status in the metrics table (last = other). */
int srv_status_index(int status);
extern const int srv_status_codes[SRV_N_STATUS];

/* ---- tokenization on the main thread (srv_tokpool.c) ------------------------------- */
struct srv_tokpool;
struct srv_tokpool *srv_tokpool_new(const mr_model *m);
/* Main thread: runs queued tasks, waiting up to timeout_ms for one. */
void srv_tokpool_serve(struct srv_tokpool *p, int timeout_ms);
/* Refuses new tasks and fails queued ones (shutdown). */
void srv_tokpool_close(struct srv_tokpool *p);
void srv_tokpool_free(struct srv_tokpool *p);
/* mr_tokenize done by the thread that calls srv_tokpool_serve; blocks. Returns
 * the count and a malloc'd array in *out; -1 on error, -2 when shutting down
 * (mr_seterr in both cases). */
int srv_tokenize(struct srv_tokpool *p, const char *text, size_t len, bool add_special, bool parse_special,
                 mr_token **out);

/* ---- HTTP daemon (srv_http.c) --------------------------------------------------------- */
struct MHD_Daemon;
struct MHD_Daemon *srv_http_start(srv_server *s, const char *host, int port, int *bound_port);
#endif
