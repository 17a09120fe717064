/*
 * cmd_soak.c — `moerun soak (--url URL | -m MODEL [serve flags]) --duration 1h
 * [--concurrency N] [--gate EXPR]... [--out DIR]`: a long stability run
 * against an OpenAI-compatible server.
 *
 * With -m, soak starts `moerun serve` itself (this binary) on a free loopback
 * port (it waits for the server's "listening on" line in DIR/server.log) and watches its RSS in /proc; with --url it talks to the
 * given server (RSS only with --pid). N worker threads send a seeded mix of
 * requests — short / medium / long prompts, chat and completions, streaming
 * or not, max_tokens varied — until the duration is over. Every few seconds
 * a sample records the server RSS, /health's kv_cache_usage, the throughput
 * and the requests in flight. Every request and sample goes to
 * DIR/soak.jsonl; the end writes DIR/report.md and report.html and checks
 * the gates (default: errors == 0, rss_growth <= 10% after warm-up,
 * stall <= 60s). Exit 0 all gates pass, 1 a gate failed or the run could not
 * be done, 2 usage.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ab/ab.h"
#include "base/base.h"
#include "bench/bench.h"
#include "commands.h"

#define SOAK_MAX_S (7 * 86400.0)

typedef struct {
    const char *url, *model, *out, *model_name;
    char **gates;
    int n_gates;
    char **serve;     /* flags forwarded to moerun serve */
    int n_serve;
    double duration, warmup, sample, timeout, interval, stall;
    int concurrency, max_tokens, pid;
    uint64_t seed;
    bool long_prompts, warmup_set, sample_set;
} soak_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: moerun soak --url URL [options]\n"
            "       moerun soak -m MODEL [serve flags: -np -c -t -ctk ...] [options]\n"
            "\n"
            "Stability run against an OpenAI-compatible server: a mix of requests (short/medium/long\n"
            "prompts, chat and completions, streaming or not, varied max_tokens) for --duration, with\n"
            "errors, latency percentiles, throughput and server memory over time, and gates.\n"
            "  --url URL           the server to test (e.g. http://127.0.0.1:8080)\n"
            "  -m MODEL            start `moerun serve -m MODEL` on a free loopback port; other\n"
            "                      unknown flags go to serve\n"
            "  --duration D        how long (30s, 10m, 1h; default 60s; at most 7 days)\n"
            "  --concurrency N     requests in flight (default 1)\n"
            "  --interval D        pause of each worker between requests (default 0)\n"
            "  --gate EXPR         a gate (repeatable), e.g. \"p95 <= 2s\", \"tg >= 20\", \"rss_growth <= 2%%\";\n"
            "                      defaults: errors == 0, rss_growth <= 10%%, stall <= 60s\n"
            "  --warmup D          RSS growth is measured after this (default: a fifth, at most 60s)\n"
            "  --stall D           the default stall gate's limit (default 60s)\n"
            "  --sample D          sampling interval of RSS, /health and throughput (default 1-5 s)\n"
            "  --max-tokens N      largest max_tokens of the mix (default 128)\n"
            "  --long              include long (~1.5k token) prompts in the mix\n"
            "  --timeout D         per request (default 300s)\n"
            "  --model-name NAME   \"model\" sent in requests (default \"default\")\n"
            "  --pid PID           with --url: the server's process, for RSS\n"
            "  --seed N            request mix seed (default 1)\n"
            "  --out DIR           report folder (default soak-out)\n"
            "Writes DIR/soak.jsonl (every request and sample), DIR/report.md, DIR/report.html,\n"
            "DIR/server.log (with -m). Exit 0 when all gates pass, 1 otherwise.\n"
            "Gate metrics: %s\n",
            ab_gate_metrics_help());
}

static int strv_push(char ***v, int *n, char *s) {
    char **a = realloc(*v, sizeof *a * (size_t)(*n + 2));
    if (!a) return -1;
    a[(*n)++] = s;
    a[*n] = NULL;
    *v = a;
    return 0;
}

static int need(int argc, char **argv, int i) {
    if (i + 1 >= argc) {
        fprintf(stderr, "moerun soak: %s needs a value (see moerun soak --help)\n", argv[i]);
        return -1;
    }
    return 0;
}

static int dur_flag(const char *flag, const char *v, double max, double *out) {
    if (soak_parse_duration(v, max, out) < 0) {
        fprintf(stderr, "moerun soak: %s: %s\n", flag, mr_geterr());
        return -1;
    }
    return 0;
}

static int int_flag(const char *flag, const char *v, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "moerun soak: %s: '%s' is not an integer in [%ld, %ld]\n", flag, v, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* -1 to run, else the exit code. */
static int parse(soak_opts *o, int argc, char **argv) {
    o->duration = 60;
    o->concurrency = 1;
    o->timeout = 300;
    o->stall = 60;
    o->max_tokens = 128;
    o->seed = 1;
    o->out = "soak-out";
    o->model_name = "default";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
#define VAL() \
    if (need(argc, argv, i) < 0) return 2; \
    const char *v = argv[++i];
        if (!strcmp(a, "--url")) {
            VAL();
            if (ab_url_check(v) < 0) {
                fprintf(stderr, "moerun soak: %s\n", mr_geterr());
                return 2;
            }
            o->url = v;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            VAL();
            o->model = v;
        } else if (!strcmp(a, "--duration")) {
            VAL();
            if (dur_flag(a, v, SOAK_MAX_S, &o->duration) < 0) return 2;
        } else if (!strcmp(a, "--warmup")) {
            VAL();
            if (dur_flag(a, v, SOAK_MAX_S, &o->warmup) < 0) return 2;
            o->warmup_set = true;
        } else if (!strcmp(a, "--sample")) {
            VAL();
            if (dur_flag(a, v, 3600, &o->sample) < 0) return 2;
            o->sample_set = true;
        } else if (!strcmp(a, "--timeout")) {
            VAL();
            if (dur_flag(a, v, 86400, &o->timeout) < 0) return 2;
        } else if (!strcmp(a, "--interval")) {
            VAL();
            if (dur_flag(a, v, 86400, &o->interval) < 0) return 2;
        } else if (!strcmp(a, "--stall")) {
            VAL();
            if (dur_flag(a, v, 86400, &o->stall) < 0) return 2;
        } else if (!strcmp(a, "--concurrency") || !strcmp(a, "-C")) {
            VAL();
            if (int_flag(a, v, 1, 256, &o->concurrency) < 0) return 2;
        } else if (!strcmp(a, "--max-tokens")) {
            VAL();
            if (int_flag(a, v, 1, 1 << 20, &o->max_tokens) < 0) return 2;
        } else if (!strcmp(a, "--pid")) {
            VAL();
            if (int_flag(a, v, 1, 1 << 30, &o->pid) < 0) return 2;
        } else if (!strcmp(a, "--seed")) {
            VAL();
            int s;
            if (int_flag(a, v, 0, 1 << 30, &s) < 0) return 2;
            o->seed = (uint64_t)s;
        } else if (!strcmp(a, "--gate")) {
            VAL();
            ab_gate g;
            if (ab_gate_parse(v, &g) < 0) {
                fprintf(stderr, "moerun soak: --gate: %s\n", mr_geterr());
                return 2;
            }
            ab_gate_free(&g);
            if (strv_push(&o->gates, &o->n_gates, (char *)v) < 0) return 1;
        } else if (!strcmp(a, "--out")) {
            VAL();
            o->out = v;
        } else if (!strcmp(a, "--model-name")) {
            VAL();
            o->model_name = v;
        } else if (!strcmp(a, "--long")) {
            o->long_prompts = true;
        } else if (!strcmp(a, "--port") || !strcmp(a, "--host")) {
            fprintf(stderr, "moerun soak: %s: soak picks a free loopback port for the server it starts\n", a);
            return 2;
        } else {
            if (strv_push(&o->serve, &o->n_serve, argv[i]) < 0) return 1;
        }
#undef VAL
    }
    if (!o->url == !o->model) {
        fprintf(stderr, "moerun soak: give --url URL (a running server) or -m MODEL (soak starts one)\n");
        return 2;
    }
    if (o->url && o->n_serve) {
        fprintf(stderr, "moerun soak: unknown option '%s' (serve flags only go with -m; see moerun soak --help)\n",
                o->serve[0]);
        return 2;
    }
    if (!o->warmup_set) o->warmup = MR_MIN(60.0, o->duration / 5);
    if (o->warmup >= o->duration) {
        fprintf(stderr, "moerun soak: --warmup must be shorter than --duration\n");
        return 2;
    }
    if (!o->sample_set) o->sample = MR_MIN(5.0, MR_MAX(1.0, o->duration / 30));
    return -1;
}

/* ---- shared state of a run -------------------------------------------------------------- */
typedef struct {
    soak_opts *o;
    soak_run *run;
    pthread_mutex_t mu;
    FILE *log;
    double t0, t_end;
    int inflight, done, errors;
    double last_progress;
    long long gen_interval, done_interval;
    char *prompts[3];
    int n_prompts;
} soak_state;

static volatile sig_atomic_t g_stop;
static void on_signal(int s) {
    (void)s;
    g_stop = 1;
}

static uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void log_json(soak_state *st, json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    if (s) {
        fprintf(st->log, "%s\n", s);
        fflush(st->log);
    }
    free(s);
    json_decref(o);
}

typedef struct {
    soak_state *st;
    int id;
} worker_arg;

static void *worker(void *arg) {
    worker_arg *wa = arg;
    soak_state *st = wa->st;
    soak_opts *o = st->o;
    uint64_t rng = o->seed * 0x9E3779B97F4A7C15ull + (uint64_t)wa->id * 7919 + 1;
    for (;;) {
        double now = mr_time_s();
        if (g_stop || now >= st->t_end) break;
        /* the mix: prompt 60 % short, 30 % medium, 10 % long (or medium); 75 % chat; 50 % streamed */
        uint64_t r = xorshift(&rng);
        int pr = (int)(r % 10), pi = pr < 6 ? 0 : pr < 9 ? 1 : st->n_prompts - 1;
        bool chat = (r >> 8) % 4 != 0, stream = (r >> 12) % 2 == 0;
        int lo = MR_MIN(8, o->max_tokens), max_tokens = lo + (int)((r >> 16) % (uint64_t)(o->max_tokens - lo + 1));
        json_t *body;
        if (chat)
            body = json_pack("{s:s,s:[{s:s,s:s}],s:i,s:b,s:f,s:I}", "model", o->model_name, "messages", "role", "user",
                             "content", st->prompts[pi], "max_tokens", max_tokens, "stream", stream, "temperature",
                             0.7, "seed", (json_int_t)(r >> 20 & 0xffff));
        else
            body = json_pack("{s:s,s:s,s:i,s:b,s:f,s:I}", "model", o->model_name, "prompt", st->prompts[pi],
                             "max_tokens", max_tokens, "stream", stream, "temperature", 0.7, "seed",
                             (json_int_t)(r >> 20 & 0xffff));
        if (stream) json_object_set_new(body, "stream_options", json_pack("{s:b}", "include_usage", 1));
        char *bs = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        pthread_mutex_lock(&st->mu);
        if (st->inflight++ == 0) st->last_progress = mr_time_s(); /* idle time is not a stall */
        pthread_mutex_unlock(&st->mu);
        double t_req = mr_time_s();
        double tmo = MR_MIN(o->timeout, MR_MAX(10.0, st->t_end - t_req + 30));
        ab_http_result res;
        memset(&res, 0, sizeof res);
        ab_http_post(st->o->url ? st->o->url : st->run->url, chat ? "/v1/chat/completions" : "/v1/completions",
                     bs ? bs : "{}", stream, tmo, &res);
        free(bs);
        double t_done = mr_time_s();
        soak_req q = {.t = t_done - st->t0, .latency_ms = (t_done - t_req) * 1e3,
                      .ttft_ms = isfinite(res.ttft_s) ? res.ttft_s * 1e3 : NAN, .status = res.status,
                      .n_prompt = res.n_prompt, .n_gen = res.n_gen, .max_tokens = max_tokens,
                      .ok = res.status == 200 && !res.error[0], .stream = stream, .chat = chat};
        if (!q.ok) snprintf(q.error, sizeof q.error, "%.190s", res.error[0] ? res.error : "request failed");
        pthread_mutex_lock(&st->mu);
        st->inflight--;
        st->done++;
        st->done_interval++;
        st->last_progress = t_done;
        if (q.ok) st->gen_interval += q.n_gen;
        else st->errors++;
        soak_add_req(st->run, &q);
        json_t *lj = json_pack("{s:s,s:f,s:s,s:b,s:i,s:i,s:b,s:f,s:o,s:i,s:i,s:s?}", "type", "request", "t", q.t,
                               "endpoint", chat ? "chat" : "completion", "stream", stream, "max_tokens", max_tokens,
                               "status", q.status, "ok", q.ok, "latency_ms", q.latency_ms, "ttft_ms",
                               isfinite(q.ttft_ms) ? json_real(q.ttft_ms) : json_null(), "n_prompt", q.n_prompt,
                               "n_gen", q.n_gen, "error", q.ok ? NULL : q.error);
        if (lj) log_json(st, lj);
        pthread_mutex_unlock(&st->mu);
        if (res.status == 0) usleep(100000); /* no connection: do not spin */
        if (o->interval > 0) {
            double until = mr_time_s() + o->interval;
            while (!g_stop && mr_time_s() < MR_MIN(until, st->t_end)) usleep(50000);
        }
    }
    return NULL;
}

/* kv_cache_usage from /health (NAN when unavailable). */
static double health_kv(const char *url) {
    int status = 0;
    char *b = ab_http_get(url, "/health", 5, &status);
    double kv = NAN;
    json_t *o = b ? json_loads(b, 0, NULL) : NULL;
    json_t *v = json_object_get(o, "kv_cache_usage");
    if (json_is_number(v)) kv = json_number_value(v);
    json_decref(o);
    free(b);
    return kv;
}

/* A free loopback TCP port (bound to 0, read back, closed), 0 on failure.
 * `moerun serve --port` needs a real number; the tiny window until the
 * server binds it is acceptable for a test tool. */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = 0};
    socklen_t len = sizeof a;
    int port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Start moerun serve and wait for its "listening on http://HOST:PORT" line. pid or -1. */
static int start_server(soak_opts *o, soak_run *run, const char *logp) {
    char exe[4096];
    if (ab_self_exe(exe, sizeof exe) < 0) {
        fprintf(stderr, "moerun soak: %s\n", mr_geterr());
        return -1;
    }
    char **av = calloc((size_t)o->n_serve + 10, sizeof *av);
    if (!av) return -1;
    int n = 0;
    av[n++] = exe;
    av[n++] = "serve";
    av[n++] = "-m";
    av[n++] = (char *)o->model;
    for (int i = 0; i < o->n_serve; i++) av[n++] = o->serve[i];
    av[n++] = "--host";
    av[n++] = "127.0.0.1";
    char port[16];
    snprintf(port, sizeof port, "%d", free_port());
    if (!strcmp(port, "0")) {
        fprintf(stderr, "moerun soak: no free loopback port: %s\n", strerror(errno));
        free(av);
        return -1;
    }
    av[n++] = "--port";
    av[n++] = port;
    av[n] = NULL;
    ab_buf cmd = {0};
    for (int i = 1; i < n; i++) ab_printf(&cmd, "%s%s", i > 1 ? " " : "moerun ", av[i]);
    snprintf(run->server_cmd, sizeof run->server_cmd, "%s", cmd.s ? cmd.s : "");
    ab_buf_free(&cmd);
    unlink(logp);
    int pid = ab_child_spawn(av, logp);
    free(av);
    if (pid < 0) {
        fprintf(stderr, "moerun soak: %s\n", mr_geterr());
        return -1;
    }
    double t0 = mr_time_s();
    while (!g_stop && mr_time_s() - t0 < 600) {
        size_t len;
        char *text = mr_read_file(logp, &len);
        const char *p = text ? strstr(text, "listening on http://") : NULL;
        if (p) {
            p += strlen("listening on ");
            size_t k = strcspn(p, " \n");
            snprintf(run->url, sizeof run->url, "%.*s", (int)k, p);
            free(text);
            return pid;
        }
        free(text);
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            char tail[512] = "";
            text = mr_read_file(logp, &len);
            if (text) {
                char *e = text + strlen(text);
                while (e > text && (e[-1] == '\n' || e[-1] == ' ')) *--e = 0;
                char *l = strrchr(text, '\n');
                snprintf(tail, sizeof tail, "%.500s", l ? l + 1 : text);
            }
            free(text);
            fprintf(stderr, "moerun soak: the server exited at startup (%s): %s\n",
                    WIFEXITED(status) ? "exit code" : "signal", tail[0] ? tail : "(no message)");
            return -1;
        }
        usleep(100000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fprintf(stderr, "moerun soak: the server did not start listening (see %s)\n", logp);
    return -1;
}

/* SIGTERM, wait for the drain, SIGKILL after 30 s. Sets run->server_note on a bad exit. */
static void stop_server(int pid, soak_run *run) {
    kill(pid, SIGTERM);
    double t0 = mr_time_s();
    int status = 0;
    pid_t w = 0;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && mr_time_s() - t0 < 30) usleep(50000);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        snprintf(run->server_note, sizeof run->server_note, "did not stop within 30 s of SIGTERM (killed)");
        run->server_exit = -1;
        return;
    }
    if (w < 0) return; /* already reaped (it died during the run: note set there) */
    if (WIFEXITED(status)) {
        run->server_exit = WEXITSTATUS(status);
        if (run->server_exit != 0)
            snprintf(run->server_note, sizeof run->server_note, "exit code %d after SIGTERM", run->server_exit);
    } else {
        run->server_exit = -1;
        snprintf(run->server_note, sizeof run->server_note, "killed by signal %d", WTERMSIG(status));
    }
}

int cmd_soak(int argc, char **argv) {
    soak_opts o = {0};
    int rc = parse(&o, argc, argv);
    if (rc >= 0) {
        free(o.gates);
        free(o.serve);
        return rc;
    }
    if (!ab_http_available()) {
        fprintf(stderr, "moerun soak: this build has no HTTP client (install libcurl4-openssl-dev and rebuild)\n");
        free(o.gates);
        free(o.serve);
        return 1;
    }
    int ret = 1, pid = -1;
    soak_run run;
    memset(&run, 0, sizeof run);
    run.rss_peak = NAN;
    run.duration_s = o.duration;
    run.warmup_s = o.warmup;
    run.stall_limit_s = o.stall;
    run.concurrency = o.concurrency;
    soak_state st = {.o = &o, .run = &run};
    pthread_mutex_init(&st.mu, NULL);
    pthread_t *th = NULL;
    worker_arg *wa = NULL;
    int n_th = 0;
    json_t *env = NULL;
    bench_progress prog;
    if (soak_default_gates(&run, o.gates, o.n_gates) < 0) {
        fprintf(stderr, "moerun soak: %s\n", mr_geterr());
        ret = 2;
        goto done;
    }
    if (mkdir(o.out, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "moerun soak: cannot create %s: %s\n", o.out, strerror(errno));
        goto done;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    char path[4096];
    snprintf(path, sizeof path, "%s/soak.jsonl", o.out);
    st.log = fopen(path, "wb");
    if (!st.log) {
        fprintf(stderr, "moerun soak: cannot write %s: %s\n", path, strerror(errno));
        goto done;
    }
    bench_env e;
    bench_env_fill(&e);
    bench_env_set_command(&e, "moerun", argc, argv);
    env = json_pack("{s:o,s:o}", "build", bench_env_build_json(&e), "machine", bench_env_machine_json(&e));
    if (o.model) {
        char logp[4096];
        snprintf(logp, sizeof logp, "%s/server.log", o.out);
        pid = start_server(&o, &run, logp);
        if (pid < 0) goto done;
        run.own_server = true;
        fprintf(stderr, "moerun soak: server pid %d at %s (log %s)\n", pid, run.url, logp);
    } else snprintf(run.url, sizeof run.url, "%s", o.url);
    int rss_pid = pid > 0 ? pid : o.pid;
    /* the prompts of the mix */
    const char *names[3] = {"short", "medium", o.long_prompts ? "long" : "medium"};
    for (int i = 0; i < 3; i++) {
        ab_workload w;
        if (ab_builtin_workload(names[i], &w) < 0) goto done;
        st.prompts[i] = w.turns[0];
        w.turns[0] = mr_strdup("");
        ab_workload_free(&w);
    }
    st.n_prompts = 3;
    json_t *hdr = json_pack("{s:s,s:s,s:f,s:f,s:i,s:O}", "type", "header", "url", run.url, "duration_s", o.duration,
                            "warmup_s", o.warmup, "concurrency", o.concurrency, "env", env);
    if (hdr) log_json(&st, hdr);
    fprintf(stderr, "moerun soak: %.0f s against %s, concurrency %d, report in %s\n", o.duration, run.url,
            o.concurrency, o.out);
    st.t0 = mr_time_s();
    st.t_end = st.t0 + o.duration;
    st.last_progress = st.t0;
    th = calloc((size_t)o.concurrency, sizeof *th);
    wa = calloc((size_t)o.concurrency, sizeof *wa);
    if (!th || !wa) goto done;
    for (int i = 0; i < o.concurrency; i++) {
        wa[i] = (worker_arg){&st, i};
        if (pthread_create(&th[i], NULL, worker, &wa[i]) != 0) break;
        n_th++;
    }
    bench_progress_init(&prog, false);
    prog.t0 -= 3; /* show the status line from the start (TTY only) */
    double t_next = st.t0, t_prev = st.t0; /* the first sample right away: the RSS at the start */
    bool server_died = false;
    for (;;) {
        usleep(100000);
        double now = mr_time_s();
        pthread_mutex_lock(&st.mu);
        int inflight = st.inflight;
        if (inflight > 0) run.max_stall_s = MR_MAX(run.max_stall_s, now - st.last_progress);
        pthread_mutex_unlock(&st.mu);
        if (pid > 0 && !server_died) {
            int status;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                server_died = true;
                run.server_exit = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
                snprintf(run.server_note, sizeof run.server_note, "the server died during the run (%s %d)",
                         WIFEXITED(status) ? "exit code" : "signal",
                         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
                fprintf(stderr, "\nmoerun soak: %s\n", run.server_note);
                g_stop = 1;
            }
        }
        bool end = g_stop || now >= st.t_end;
        if (now >= t_next || end) {
            soak_sample s = {.t = now - st.t0, .rss = NAN, .kv = NAN};
            if (rss_pid > 0 && !server_died) {
                uint64_t r = ab_proc_rss(rss_pid);
                if (r) s.rss = (double)r;
            }
            if (!server_died) s.kv = health_kv(run.url);
            pthread_mutex_lock(&st.mu);
            double dt = now - t_prev;
            s.tps = dt > 0 ? st.gen_interval / dt : 0;
            s.rps = dt > 0 ? st.done_interval / dt : 0;
            s.inflight = st.inflight;
            s.done = st.done;
            s.errors = st.errors;
            st.gen_interval = st.done_interval = 0;
            soak_add_sample(&run, &s);
            json_t *lj = json_pack("{s:s,s:f,s:o,s:o,s:f,s:f,s:i,s:i,s:i}", "type", "sample", "t", s.t, "rss",
                                   isfinite(s.rss) ? json_integer((json_int_t)s.rss) : json_null(), "kv_cache_usage",
                                   isfinite(s.kv) ? json_real(s.kv) : json_null(), "tokens_per_s", s.tps,
                                   "requests_per_s", s.rps, "inflight", s.inflight, "done", s.done, "errors", s.errors);
            if (lj) log_json(&st, lj);
            pthread_mutex_unlock(&st.mu);
            t_prev = now;
            t_next = now + o.sample;
            char rss[32] = "n/a";
            if (isfinite(s.rss)) mr_fmt_bytes(rss, sizeof rss, (uint64_t)s.rss);
            bench_progress_update(&prog, "%.0f/%.0f s  %d req  %d err  %.1f tok/s  RSS %s  kv %.0f %%", s.t,
                                  o.duration, s.done, s.errors, s.tps, rss, isfinite(s.kv) ? s.kv * 100 : 0.0);
        }
        if (end) break;
    }
    for (int i = 0; i < n_th; i++) pthread_join(th[i], NULL);
    bench_progress_done(&prog);
    run.elapsed_s = mr_time_s() - st.t0;
    if (pid > 0) {
        uint64_t hwm = server_died ? 0 : ab_proc_hwm(pid);
        if (hwm) run.rss_peak = (double)hwm;
        if (!server_died) stop_server(pid, &run);
        pid = -1;
    }
    if (g_stop && !server_died) fprintf(stderr, "moerun soak: interrupted after %.0f s: reporting what ran\n", run.elapsed_s);
    if (soak_report_write(&run, o.out, env) < 0) {
        fprintf(stderr, "moerun soak: report: %s\n", mr_geterr());
        goto done;
    }
    int failed = soak_gates_failed(&run);
    char p95[32], tg[32];
    ab_gate_fmt("p95", soak_metric(&run, "p95"), p95, sizeof p95);
    ab_gate_fmt("tg", soak_metric(&run, "tg"), tg, sizeof tg);
    printf("%s: %d requests in %.0f s, %d error(s), p95 %s, %s, max stall %.1f s; report %s/report.md, %s/report.html\n",
           failed ? "FAIL" : "PASS", run.n_req, run.elapsed_s, (int)soak_metric(&run, "errors"), p95, tg,
           run.max_stall_s, o.out, o.out);
    for (int i = 0; i < run.n_gates; i++) {
        double v = soak_metric(&run, run.gates[i].metric);
        char vs[48];
        ab_gate_fmt(run.gates[i].metric, v, vs, sizeof vs);
        bool ok = ab_gate_check(&run.gates[i], v) ||
                  (isnan(v) && !run.own_server && strstr(run.gates[i].metric, "rss"));
        printf("  %-4s %-24s %s\n", ok ? "ok" : "FAIL", run.gates[i].text, vs);
    }
    if (run.server_note[0]) printf("  FAIL server: %s\n", run.server_note);
    ret = failed ? 1 : 0;
done:
    if (pid > 0) stop_server(pid, &run);
    if (st.log) fclose(st.log);
    for (int i = 0; i < 3; i++) free(st.prompts[i]);
    free(th);
    free(wa);
    json_decref(env);
    soak_run_free(&run);
    pthread_mutex_destroy(&st.mu);
    free(o.gates);
    free(o.serve);
    return ret;
}
