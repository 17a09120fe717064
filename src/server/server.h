/*
 * server.h — `moerun serve`: an OpenAI-compatible HTTP server (libmicrohttpd +
 * jansson) with continuous batching over one mr_ctx.
 *
 * Architecture: libmicrohttpd runs one thread per connection; those threads
 * parse and validate requests, render chat templates and tokenize, then hand a
 * job to ONE engine thread that owns the mr_ctx. The engine runs every active
 * slot (one sequence id per slot) in a single mr_decode batch per step; new
 * requests join between steps and their prompts are fed in chunks so running
 * streams keep flowing. Jobs beyond the slots wait in a bounded queue (503 with
 * Retry-After past it). See srv_engine.c and srv_http.c.
 *
 * Context: cfg.cp.n_ctx is the TOTAL number of KV cells, split evenly over
 * the slots (each slot n_ctx / n_slots, as llama.cpp's server does).
 */
#ifndef MR_SERVER_H
#define MR_SERVER_H

#include <stddef.h>

#include "moerun.h"

typedef struct {
    mr_model_params mp;   /* model to load (mp.path required) */
    mr_ctx_params cp;     /* context; n_seq_max is set to n_slots */
    mr_sampler_params samp; /* sampling defaults for fields a request leaves out */
    const char *host;     /* listen address, default "127.0.0.1" */
    int port;             /* default 8080; 0 = any free port (printed at startup) */
    int n_slots;          /* -np, parallel sequences, default 1 */
    int max_queue;        /* waiting jobs beyond the slots before 503, default 64 */
    int chunk;            /* prompt tokens fed per engine step, default 256 */
    size_t max_body;      /* request body limit in bytes (413 beyond), default 4 MiB */
    const char *alias;    /* model id in responses; default the GGUF file stem */
    const char *chat_template; /* template name or Jinja text, NULL = the model's */
    double drain_s;       /* on SIGTERM: seconds running requests may finish, default 3 */
    int max_conn;         /* connection limit, default 256 */
} srv_config;

/* Fills the defaults above (and the library defaults of mp/cp). */
void srv_config_default(srv_config *c);

/* Load the model, start the engine thread and the HTTP daemon, serve until
 * SIGINT/SIGTERM, drain and free everything. Blocks SIGINT/SIGTERM/SIGPIPE in
 * the calling thread (and so in every thread it creates) and waits for them
 * with sigwait. Returns the process exit code: 0 after a clean drain, 1 when
 * startup fails (message on stderr). */
int srv_run(const srv_config *cfg);

#endif
