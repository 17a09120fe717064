/*
 * ab.h — library side of `moerun ab` (A/B evaluation of configurations) and
 * `moerun soak` (long stability run against a server): plans (JSON or a TOML
 * subset), the interleaved run schedule and resume, statistics (Welch's
 * t-test, confidence intervals), gates ("tg >= 20", "rss_growth <= 2%"),
 * the in-process workload runner the ab worker child uses, the child-process
 * runner, an HTTP client for OpenAI-compatible endpoints (libcurl, optional),
 * SVG charts and the Markdown / HTML reports.
 *
 * Pure parts (plan, toml, stats, gates, schedule, resume, charts) are unit
 * tested in tests/unit/test_ab*.c; the rest through tests/cli/ab.sh, soak.sh.
 */
#ifndef MR_AB_H
#define MR_AB_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "moerun.h"

/* ---- growable text buffer (ab_buf.c) ----------------------------------------------- */
typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} ab_buf;
void ab_printf(ab_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ab_puts(ab_buf *b, const char *s);
void ab_putn(ab_buf *b, const char *s, size_t n);
/* XML/HTML text escaping (& < > " ') of s. */
void ab_esc(ab_buf *b, const char *s);
void ab_buf_free(ab_buf *b);
/* Take the text (NUL-terminated, malloc'd; NULL after an allocation failure). */
char *ab_buf_take(ab_buf *b);

/* ---- TOML subset (ab_toml.c) -------------------------------------------------------- */
/* Parse the TOML subset plans use into a JSON object: key = value pairs with
 * bare or quoted keys (dotted keys as nested tables), [table] and [a.b]
 * headers, [[array.of.tables]], basic "..." and literal '...' strings,
 * integers, floats, true/false, arrays (nested, multi-line, trailing comma),
 * inline tables { k = v }, # comments. Multi-line strings and dates are not
 * supported (a clear error). NULL with an error "LINE:COL: message". */
json_t *ab_toml_parse(const char *text, const char *fname);

/* ---- plans (ab_plan.c) -------------------------------------------------------------- */
typedef struct {
    char *name;
    char *args;     /* engine flags for a moerun config ("" if none), NULL for endpoints */
    char *url;      /* endpoint base URL (http://127.0.0.1:8081), NULL for moerun configs */
    char *model;    /* endpoint: "model" sent in requests; moerun: -m default override */
    char **argv;    /* args split shell-style */
    int argc;
} ab_config;

typedef struct {
    char *role, *content;
} ab_msg;

typedef struct {
    char *name;
    char **turns;   /* user messages; > 1 = multi-turn (each turn continues the conversation) */
    int n_turns;
    int n_predict;  /* tokens to generate per turn */
    char *system;   /* system prompt or NULL */
    bool chat;      /* apply the chat template (default true) */
} ab_workload;

typedef struct {
    char *text;     /* metric op value as written */
    char metric[32];
    char op[3];     /* ">=", "<=", ">", "<", "==", "!=" */
    double value;   /* in the metric's base unit (bytes, ms, %, tokens/s) */
    char workload[64]; /* "tg@short >= 20": restricted to one workload ("" = all) */
} ab_gate;

typedef struct {
    char *name;
    char *model;            /* default -m of moerun configs (may be NULL if every config has -m) */
    ab_config *configs;
    int n_configs;
    ab_workload *workloads;
    int n_workloads;
    int reps, warmup;
    ab_gate *gates;
    int n_gates;
    int baseline;           /* index into configs */
    double timeout_s;       /* per run (default 600) */
    /* quality (optional) */
    char *ppl_file;         /* text for perplexity; NULL = none */
    int ppl_ctx, ppl_chunks;
    bool kl;                /* KL divergence vs the baseline (default true when ppl_file) */
    uint64_t hash;          /* FNV-1a of the canonical plan JSON */
    json_t *json;           /* the plan as JSON (after TOML conversion), owned */
    char *dir;              /* folder of the plan file (relative prompt files resolve there) */
} ab_plan;

/* Load PLAN.json or PLAN.toml (by extension; otherwise sniffed). 0 / -1 with
 * an error naming the file and field. */
int ab_plan_load(const char *path, ab_plan *p);
/* Build from a JSON object (borrowed; a reference is kept). dir: for relative
 * paths (may be NULL). */
int ab_plan_from_json(json_t *root, const char *dir, ab_plan *p);
void ab_plan_free(ab_plan *p);
int ab_plan_find_config(const ab_plan *p, const char *name);
int ab_plan_find_workload(const ab_plan *p, const char *name);
/* Split a command-line string shell-style (single/double quotes, backslash).
 * 0 / -1 (unbalanced quote). *argv is a NULL-terminated malloc'd array. */
int ab_split_args(const char *s, char ***argv, int *argc);
void ab_free_argv(char **argv, int argc);
/* The built-in workloads: short, medium, long, multi-turn. NULL if unknown. */
int ab_builtin_workload(const char *name, ab_workload *w);
void ab_workload_free(ab_workload *w);
/* Workload as JSON (the worker's input). */
json_t *ab_workload_json(const ab_workload *w);
int ab_workload_from_json(const json_t *o, ab_workload *w);
uint64_t ab_fnv1a(const void *p, size_t n, uint64_t h);

/* ---- statistics (ab_stats.c) ---------------------------------------------------------- */
/* Regularized incomplete beta I_x(a, b). */
double ab_betai(double a, double b, double x);
/* Student t: two-sided tail P(|T| > |t|) with df degrees of freedom (df may be
 * fractional), and the quantile q (P(T <= x) = q). */
double ab_t_two_sided_p(double t, double df);
double ab_t_quantile(double q, double df);
typedef struct {
    int n;
    double mean, sd, ci_lo, ci_hi; /* 95 % confidence interval of the mean (t-based); = mean if n < 2 */
    double min, max;
} ab_summary;
void ab_summarize(const double *x, int n, ab_summary *s);
/* Welch's unequal-variance t-test of two samples: t, df, two-sided p. p = NAN
 * when either has n < 2; both zero variance: p = 0 if the means differ, else 1. */
void ab_welch(const ab_summary *a, const ab_summary *b, double *t, double *df, double *p);
/* Percentile (0..100) by linear interpolation of the sorted copy. NAN if n == 0. */
double ab_percentile(const double *x, int n, double pct);

/* ---- gates (ab_gate.c) ------------------------------------------------------------------- */
/* Parse "tg >= 20", "errors == 0", "rss_growth <= 2%", "vram <= 117GB",
 * "ttft <= 500ms", "tg@short >= 20". Known metrics: ab_gate_metric_known().
 * 0 / -1 with an error quoting the expression. */
int ab_gate_parse(const char *s, ab_gate *g);
void ab_gate_free(ab_gate *g);
bool ab_gate_metric_known(const char *m);
/* Whether larger values of the metric are better (tg, pp, ...). */
bool ab_gate_higher_better(const char *m);
/* The comparison. NAN value: false. */
bool ab_gate_check(const ab_gate *g, double v);
/* Format a value in the metric's unit ("12.3 t/s", "1.20 GiB", "2.0 %"). */
void ab_gate_fmt(const char *metric, double v, char *buf, size_t n);
/* The list of metric names for messages. */
const char *ab_gate_metrics_help(void);

/* ---- schedule and resume (ab_sched.c) ---------------------------------------------------- */
typedef struct {
    int config, workload, rep; /* rep < 0: warm-up run -rep-1 */
} ab_slot;
/* The interleaved run order: warm-up rounds then repetition rounds; in each
 * round every workload, and for each workload every config, the config order
 * rotated by one each round (so no config always runs first after another).
 * Returns a malloc'd array of *n entries. */
ab_slot *ab_schedule(int n_configs, int n_workloads, int reps, int warmup, int *n);
/* Key "config|workload|rep" of a slot. */
void ab_slot_key(const ab_plan *p, const ab_slot *s, char *buf, size_t n);

/* Results file (results.jsonl): a header line {"type":"header","plan_hash":..}
 * then one line per run {"type":"run","key":...}. */
typedef struct {
    json_t **runs;   /* run records (owned) */
    int n;
    char plan_hash[24];
    long good_bytes; /* length of the file up to the last complete line */
} ab_results;
/* Read a results file. A torn last line is ignored (good_bytes ends before
 * it). 0 / -1 (missing file: -1 with errno ENOENT kept in the message). */
int ab_results_load(const char *path, ab_results *r);
void ab_results_free(ab_results *r);
bool ab_results_has(const ab_results *r, const char *key);

/* ---- the workload runner (ab_worker.c, runs inside the worker child) ----------------------- */
/* Run a workload on a loaded model: for each turn, the conversation so far
 * (chat template applied when w->chat and the model has one) is decoded
 * after the prefix already in the cache, then n_predict tokens are generated
 * greedily (end-of-generation ignored so every run does the same work).
 * Writes to *out a JSON object: pp_tps, tg_tps, ttft_ms (first turn),
 * n_prompt, n_gen, turns. 0 / -1. */
int ab_run_workload(mr_model *m, const mr_ctx_params *cp, const ab_workload *w, json_t **out);
/* Perplexity (llama.cpp's method) of text with n_ctx-token chunks (at most
 * n_chunks, <= 0 all). With logits_out != NULL the log-softmax of every
 * scored position is appended there (n_scored x n_vocab floats); with
 * base_logits != NULL (same layout) the mean KL(base || this) is computed.
 * Writes ppl, ppl_se, n_scored (and kl, kl_max) to *out. 0 / -1. */
int ab_run_perplexity(mr_model *m, const mr_ctx_params *cp, const char *text, int n_chunks, FILE *logits_out,
                      FILE *base_logits, json_t **out);

/* ---- child processes (ab_child.c) --------------------------------------------------------- */
typedef struct {
    int exit_code;        /* -1 if killed by a signal */
    int signal;           /* the signal, 0 if exited */
    bool timed_out;
    uint64_t peak_rss;    /* bytes, from wait4 rusage */
    double wall_s;
    char *out;            /* stdout (NUL-terminated, malloc'd) */
    char err_tail[512];   /* last line of stderr */
} ab_child_result;
/* Run argv (argv[0] a path) with stdout captured and stderr appended to
 * log_path (or discarded when NULL), killing it after timeout_s (SIGTERM,
 * then SIGKILL 2 s later). 0 when it could be started (see res), -1 when not. */
int ab_child_run(char *const argv[], const char *log_path, double timeout_s, ab_child_result *res);
void ab_child_result_free(ab_child_result *r);
/* Set (e.g. by a SIGINT/SIGTERM handler) to make ab_child_run stop its child
 * at once (SIGTERM, SIGKILL after 2 s) and return with res->signal set. */
extern volatile sig_atomic_t ab_stop;
/* Start argv in the background with stderr to log_path (stdout to /dev/null). pid or -1. */
int ab_child_spawn(char *const argv[], const char *log_path);
/* VmRSS / VmHWM of a process in bytes (0 when unknown). */
uint64_t ab_proc_rss(int pid);
uint64_t ab_proc_hwm(int pid);
/* The path of this executable (/proc/self/exe resolved) in buf. 0 / -1. */
int ab_self_exe(char *buf, size_t n);

/* ---- HTTP client (ab_http.c, libcurl; an error when built without) ----------------------------- */
typedef struct {
    int status;           /* HTTP status, 0 when no response (connection error / timeout) */
    char error[256];      /* "" when status 200 and the body parsed */
    double ttft_s;        /* first content token (streaming) or the whole response */
    double total_s;
    int n_prompt, n_gen;  /* from usage (or chunks counted when absent) */
    bool usage;           /* n_prompt/n_gen from the server's usage */
    char *content;        /* with want_content: the generated text (malloc'd; free it) */
    bool want_content;    /* set by the caller before ab_http_post (kept by it) */
} ab_http_result;
bool ab_http_available(void);
/* POST base_url + path with a JSON body (res->want_content may be set first). stream: read SSE chunks (data: ...)
 * timing the first one with content. timeout_s for the whole request. 0 when
 * a response was read to the end (status may still be an error), -1 on a
 * transport error (res->error says what). */
int ab_http_post(const char *base_url, const char *path, const char *body, bool stream, double timeout_s,
                 ab_http_result *res);
/* GET base_url + path into a malloc'd body (*status). NULL on transport error. */
char *ab_http_get(const char *base_url, const char *path, double timeout_s, int *status);
/* Accept only http:// URLs (the user's own); 0 / -1 with a message. */
int ab_url_check(const char *url);

/* ---- charts (ab_svg.c) ------------------------------------------------------------------------ */
/* Grouped bar chart: groups (x categories) x series (bars), with error bars
 * (err; NULL or NAN = none). values[g * n_series + s]. NAN bars are skipped. */
char *ab_svg_bars(const char *title, const char *ylabel, const char *const *groups, int n_groups,
                  const char *const *series, int n_series, const double *values, const double *err);
/* Line chart over time: n_lines lines sharing x (seconds); y[l * n + i]. */
char *ab_svg_lines(const char *title, const char *xlabel, const char *ylabel, const double *x, int n,
                   const char *const *labels, const double *y, int n_lines);

/* ---- the ab report (ab_report.c) ---------------------------------------------------------------- */
typedef struct {
    int n_gates_failed;  /* over all configs */
    bool baseline_ok;
    char recommendation[512];
} ab_report_info;
/* Write DIR/report.md, DIR/report.html and DIR/summary.json from the plan
 * and the run records. 0 / -1. */
int ab_report_write(const ab_plan *p, const ab_results *r, const char *dir, const json_t *env,
                    ab_report_info *info);

/* ---- soak (soak.c) ------------------------------------------------------------------------------ */
/* "30s", "10m", "1h", "1h30m", "90" (seconds), "500ms": seconds in *out, in
 * (0, max_s]. 0 / -1 with an error quoting s. */
int soak_parse_duration(const char *s, double max_s, double *out);

typedef struct {
    double t;          /* seconds since the start */
    double rss;        /* server RSS bytes (NAN unknown) */
    double kv;         /* /health kv_cache_usage 0..1 (NAN unknown) */
    double tps;        /* generated tokens/s of requests finished in the interval */
    double rps;        /* requests finished per second in the interval */
    int inflight, done, errors;
} soak_sample;

typedef struct {
    double t, latency_ms, ttft_ms;
    int status, n_prompt, n_gen, max_tokens;
    bool ok, stream, chat;
    char error[200];
} soak_req;

typedef struct {
    /* settings */
    char url[512];
    double duration_s, warmup_s, stall_limit_s;
    int concurrency;
    bool own_server;      /* started by soak (-m) */
    char server_cmd[1024];
    ab_gate *gates;
    int n_gates;
    /* data */
    soak_req *req;
    int n_req, cap_req;
    soak_sample *smp;
    int n_smp, cap_smp;
    double elapsed_s, max_stall_s;
    int server_exit;      /* own server: exit code after SIGTERM (-1 killed / unknown) */
    char server_note[256];
    double rss_peak;      /* own server VmHWM at the end (bytes, NAN unknown) */
} soak_run;

int soak_add_req(soak_run *r, const soak_req *q);
int soak_add_sample(soak_run *r, const soak_sample *s);
void soak_run_free(soak_run *r);
/* A gate metric from the run: errors, error_rate, p50/p95/p99 (ms), ttft
 * (p95 ms of streamed requests), tg (tokens/s over the run), stall (s), rss
 * (peak bytes), rss_growth (% of the max RSS from the end of the warm-up on
 * over the RSS of the first sample at the end of the warm-up), requests. NAN when not measured. */
double soak_metric(const soak_run *r, const char *metric);
/* Default gates (errors == 0, rss_growth <= 10%, stall <= LIMIT s) plus the
 * user's (a user gate on a metric replaces the default for it). */
int soak_default_gates(soak_run *r, char **user, int n_user);
/* Evaluate the gates: number failed (NAN values fail). */
int soak_gates_failed(const soak_run *r);
/* Write DIR/report.md and DIR/report.html. 0 / -1. */
int soak_report_write(const soak_run *r, const char *dir, const json_t *env);

#endif
