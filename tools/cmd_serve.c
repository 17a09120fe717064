/*
 * cmd_serve.c — `moerun serve -m MODEL [--host 127.0.0.1] [--port 8080]
 * [-np SLOTS] [-c CTX] [engine flags]`: the OpenAI-compatible HTTP server
 * (src/server/). -c is the total KV context, split evenly over the -np slots
 * (each slot gets c / np cells, as llama.cpp's server does). Sampling flags
 * set the defaults for fields a request leaves out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base/base.h"

#ifdef MOERUN_HAVE_SERVER
#include "server/server.h"

static int serve_flag(void *ud, int argc, char **argv, int *i) {
    srv_config *c = ud;
    const char *f = argv[*i];
    const char *v;
    if (!strcmp(f, "--max-queue")) {
        v = args_value(argc, argv, i);
        return v && args_int(f, v, 0, 100000, &c->max_queue) == 0 ? 1 : -1;
    }
    if (!strcmp(f, "--chunk")) {
        v = args_value(argc, argv, i);
        return v && args_int(f, v, 1, 65536, &c->chunk) == 0 ? 1 : -1;
    }
    if (!strcmp(f, "--max-conn")) {
        v = args_value(argc, argv, i);
        return v && args_int(f, v, 4, 65536, &c->max_conn) == 0 ? 1 : -1;
    }
    if (!strcmp(f, "--max-body")) {
        long long x;
        v = args_value(argc, argv, i);
        if (!v || args_i64(f, v, 1024, 1ll << 32, &x) != 0) return -1;
        c->max_body = (size_t)x;
        return 1;
    }
    if (!strcmp(f, "--drain")) {
        float x;
        v = args_value(argc, argv, i);
        if (!v || args_float(f, v, 0, 3600, &x) != 0) return -1;
        c->drain_s = x;
        return 1;
    }
    if (!strcmp(f, "-a") || !strcmp(f, "--alias")) {
        v = args_value(argc, argv, i);
        if (!v) return -1;
        c->alias = v;
        return 1;
    }
    return 0;
}

int cmd_serve(int argc, char **argv) {
    srv_config cfg;
    srv_config_default(&cfg);
    mr_args a;
    args_init(&a);
    const args_cmd cmd = {
        "serve", "-m MODEL [--host ADDR] [--port N] [-np SLOTS] [-c CTX] [options]",
        "  -a, --alias NAME      model id in responses (default: the file name without .gguf;\n"
        "                        any \"model\" a request sends is accepted)\n"
        "  --max-queue N         requests waiting for a slot before 503 + Retry-After (default 64)\n"
        "  --chunk N             prompt tokens fed per engine step, shared by new requests (default 256)\n"
        "  --max-body BYTES      request body limit, 413 beyond (default 4194304)\n"
        "  --max-conn N          simultaneous connections (default 256)\n"
        "  --drain S             on SIGTERM/SIGINT, seconds running requests may finish (default 3)\n"
        "  -c is the TOTAL context: each of the -np slots gets c/np cells. Sampling flags set the\n"
        "  defaults for fields a request leaves out. Routes: POST /v1/chat/completions,\n"
        "  /v1/completions, /tokenize, /detokenize; GET /v1/models, /health, /metrics.\n",
        serve_flag, &cfg};
    int rc = args_parse(&a, argc, argv, ARGS_MODEL | ARGS_CTX | ARGS_SAMPLING | ARGS_CHAT | ARGS_SERVER, &cmd);
    if (rc >= 0) {
        args_free(&a);
        return rc;
    }
    if (!a.model.path) {
        args_free(&a);
        return args_error(&cmd, "-m MODEL is required");
    }
    if (a.system_prompt || a.chat) {
        args_free(&a);
        return args_error(&cmd, "-sys and --chat do not apply to serve (send messages in requests)");
    }
    cfg.mp = a.model;
    cfg.cp = a.ctx;
    cfg.samp = a.samp;
    cfg.host = a.host;
    cfg.port = a.port;
    cfg.n_slots = a.n_parallel > 0 ? a.n_parallel : 1;
    cfg.chat_template = a.chat_template;
    rc = srv_run(&cfg);
    args_free(&a);
    return rc;
}
#else
int cmd_serve(int argc, char **argv) {
    fprintf(stderr, "moerun serve: this build has no server (install libmicrohttpd-dev and rebuild)\n");
    return 1;
}
#endif
