/*
 * bench.h — library side of the measuring tools (`moerun bench`, `moerun sweep`):
 * statistics, memory-bandwidth measurement (the roofline's denominator), result
 * records with their md/csv/json/jsonl forms, comparison of two result files,
 * sweep records and the SVG chart, a TTY progress line, comma-list parsing.
 *
 * Nothing here loads a model except bench_run.c (the timed decode loops); the
 * rest is pure and unit-tested (tests/unit/test_bench*.c).
 */
#ifndef MR_BENCH_H
#define MR_BENCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "moerun.h"

/* ---- statistics (stats.c) ------------------------------------------------------ */
double bench_mean(const double *x, int n);   /* 0 for n <= 0 */
double bench_stddev(const double *x, int n); /* sample stddev (n-1), 0 for n < 2 */
double bench_percentile(const double *x, int n, double pct); /* 0..100, interpolated; NAN for n <= 0 */
/* Comparison of a new value b with a baseline a: ratio b/a and delta % (b/a-1)*100.
 * Both NAN when a <= 0 or either is not finite. */
void bench_compare_vals(double a, double b, double *ratio, double *delta_pct);
/* "Nice" axis ticks covering [lo, hi] with about n_target steps: writes the first
 * tick, the step and the count (<= cap). Returns the count. */
int bench_nice_ticks(double lo, double hi, int n_target, double *first, double *step, int cap);

/* ---- comma lists (lists.c) -------------------------------------------------------- */
/* Parse "1,2,4" (also "1-8" ranges, "1-8+2" stepped ranges as llama-bench) appending
 * to a growable int array. Values must be in [lo, hi]. 0 / -1 with an error naming flag. */
int bench_parse_int_list(const char *flag, const char *s, int lo, int hi, int **arr, int *n);
/* KV cache type by name: f32 f16 q8_0 q4_0 -> mr_kv_type; -1 if unknown. */
int bench_kv_type_from_name(const char *s);
const char *bench_kv_type_name(int t);
/* Parse "f16,q8_0" into kv types. */
int bench_parse_kv_list(const char *flag, const char *s, int **arr, int *n);
/* Append a copy of s to a growable string array. */
int bench_strv_push(char ***arr, int *n, const char *s);

/* ---- machine and build (record.c) ------------------------------------------------ */
typedef struct {
    char version[32], commit[48], compiler[128], cpu_features[256];
    bool cuda;
    char cpu_model[256];
    int cores_physical, cores_logical;
    uint64_t ram_bytes;
    char date[40]; /* ISO 8601 UTC of the run start */
    char hostname[128];
    char command[2048]; /* the command line, set by the tool ("" if unknown) */
} bench_env;
void bench_env_fill(bench_env *e);
/* Record argv (quoted where needed) as e->command. */
void bench_env_set_command(bench_env *e, const char *prog, int argc, char **argv);
void bench_iso8601_now(char *buf, size_t n);
json_t *bench_env_build_json(const bench_env *e);
json_t *bench_env_machine_json(const bench_env *e);

/* ---- one benchmark result (record.c) ----------------------------------------------- */
#define BENCH_MAX_STR 512
typedef struct {
    /* model */
    char model_filename[BENCH_MAX_STR]; /* base name of the file */
    char model_path[BENCH_MAX_STR];
    char model_type[BENCH_MAX_STR];     /* "qwen3moe 30.53B" */
    uint64_t model_size;                /* file bytes */
    uint64_t model_n_params;
    uint64_t model_active_bytes_est;    /* from mr_model_info */
    char backend[32];                   /* "CPU" or "CUDA" */
    /* parameters */
    int n_threads, n_batch, n_ubatch, type_k, type_v, flash_attn, n_gpu_layers, n_cpu_moe;
    char ot[BENCH_MAX_STR];             /* -ot overrides ("" if none) */
    char repack[8];                     /* weight layout: "none" (GGUF), "r8" (exact), "r8f" (-rtr) */
    int n_prompt, n_gen, n_depth, n_reps;
    /* samples */
    int n_samples;
    double *samples_ns;                 /* per repetition, the timed part in ns */
    double *samples_ts;                 /* per repetition, tokens per second */
    double avg_ns, stddev_ns, avg_ts, stddev_ts;
    /* roofline */
    double weight_bytes_per_token;      /* weight bytes read per token in the timed part */
    double kv_bytes_per_token;          /* KV-cache bytes decode steps' attention read, per token */
    bool bytes_estimated;               /* true: from active_bytes_est, engine counted 0 */
    double bandwidth_gbs;               /* measured read bandwidth (GB/s = 1e9 B/s), 0 unknown */
    double dev_bw_gbs;                  /* offloaded runs: the devices' peak bandwidth (all on devices), NAN
                                           (hybrid: no single roofline), 0 (CPU run: bandwidth_gbs) */
    double weight_gbs;                  /* weight bytes read per second (GB/s) */
    double *samples_bw;                 /* per repetition, the bandwidth measured right around its timed
                                           part (GB/s; NULL when the run measured once) */
    int n_samples_bw;
    double bw_probe_min;                /* the lowest bandwidth probe seen around the repetitions (GB/s;
                                           0 none): with samples_bw, bench_bw_moved's range */
    double roofline;                    /* with samples_bw: the median over repetitions of (weight + KV bytes
                                           per second) / that repetition's bandwidth; else roofline_best.
                                           NAN unknown */
    double roofline_best;               /* (weight + KV bytes per second) / bandwidth_gbs: against the best
                                           bandwidth of the whole test, the conservative figure */
    uint64_t peak_rss_bytes;
    uint64_t vram_bytes;                /* device memory the context held (GPU runs; 0 on the CPU) */
    char test_time[40];                 /* ISO 8601 */
} bench_result;

void bench_result_init(bench_result *r);
void bench_result_free(bench_result *r);
/* Append one repetition's timing: tokens processed in the timed part, seconds. */
int bench_result_add_sample(bench_result *r, int n_tokens, double seconds);
/* Append one repetition's bandwidth (GB/s, <= 0: unknown), in the samples' order. */
int bench_result_add_bw(bench_result *r, double gbs);
/* Note one bandwidth probe taken around a repetition (before or after it; <= 0: ignored) for
 * bench_bw_moved. */
void bench_result_note_probe(bench_result *r, double gbs);
/* Whether the machine's bandwidth moved by more than BENCH_BW_MOVED (highest / lowest probe)
 * during the test, and its range (*lo, *hi in GB/s). On VMs whose bandwidth jumps between
 * states, t/s follows it and a difference between two runs can be the machine's. */
#define BENCH_BW_MOVED 1.25
bool bench_bw_moved(const bench_result *r, double *lo, double *hi);
/* hi > BENCH_BW_MOVED * lo with both known (> 0, finite): the test of bench_bw_moved and sweep. */
bool bench_bw_spread(double lo, double hi);
/* Recompute the mean/stddev fields and the roofline from samples and bytes. */
void bench_result_finish(bench_result *r);
/* "pp512", "tg128", "pp512+tg128", with " @ d1024" for a depth. */
void bench_test_name(const bench_result *r, char *buf, size_t n);
int bench_result_n_tokens(const bench_result *r); /* n_prompt + n_gen */

/* Which optional columns the markdown table shows (those the user varied or set). */
typedef struct {
    bool n_batch, n_ubatch, type_k, type_v, flash_attn, n_gpu_layers, n_cpu_moe, ot, repack, roofline, rss, vram;
} bench_md_cols;
void bench_md_header(FILE *f, const bench_md_cols *c);
void bench_md_row(FILE *f, const bench_md_cols *c, const bench_result *r);
void bench_csv_header(FILE *f);
void bench_csv_row(FILE *f, const bench_result *r, const bench_env *e);
/* Full record (all flags, model, build, machine, samples). */
json_t *bench_result_to_json(const bench_result *r, const bench_env *e);
/* Read back a record written by bench_result_to_json (env part ignored).
 * 0 / -1 with an error naming the missing field. */
int bench_result_from_json(const json_t *o, bench_result *r);

/* A set of results loaded from a json (array) or jsonl file. */
typedef struct {
    bench_result *r;
    int n;
} bench_result_set;
int bench_load_results(const char *path, bench_result_set *s);
void bench_result_set_free(bench_result_set *s);

/* ---- comparison (compare.c) ------------------------------------------------------ */
/* Print the side-by-side table of two result sets. Tests match by model file,
 * test, depth, threads and every parameter; when no test matches that way the
 * model is left out of the key (comparing two models on the same tests).
 * md: markdown table. Returns the number of matched rows. */
int bench_compare_print(FILE *f, const bench_result_set *a, const bench_result_set *b,
                        const char *name_a, const char *name_b);
/* The matching key of a result (without the model when with_model is false). */
void bench_result_key(const bench_result *r, bool with_model, char *buf, size_t n);

/* ---- bandwidth (bandwidth.c, bandwidth_avx2.c) -------------------------------------- */
/* Measured read bandwidth in GB/s (1e9 bytes/s) with n_threads threads summing a
 * buffer of `bytes` bytes (pre-faulted), best of n_runs. -1 on error. */
double bench_bandwidth_gbs(int n_threads, size_t bytes, int n_runs);
/* Sum of the n doubles at p (what the bandwidth loop reads); AVX2 when available. */
double bench_sum_f64(const double *p, size_t n);
double bench_sum_f64_scalar(const double *p, size_t n);
double bench_sum_f64_avx2(const double *p, size_t n);
/* Cache under $XDG_CACHE_HOME/moerun or ~/.cache/moerun, keyed by CPU model and
 * thread count. get: 0 and *gbs when found, -1 otherwise. */
int bench_bw_cache_get(int n_threads, double *gbs);
int bench_bw_cache_put(int n_threads, double gbs);

/* ---- progress line (progress.c) ---------------------------------------------------- */
/* A status line on stderr: with `lines` every update is printed as its own line
 * (--progress); otherwise a single \r-rewritten line, only when stderr is a TTY
 * and the job has run for more than 2 s, at most 5 updates per second. */
typedef struct {
    bool lines, tty, shown;
    double t0, t_last;
} bench_progress;
void bench_progress_init(bench_progress *p, bool lines);
void bench_progress_update(bench_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void bench_progress_done(bench_progress *p);

/* ---- sweep (sweep.c, svg.c) --------------------------------------------------------- */
typedef struct {
    int pp, tg, n_kv;
    double t_pp, speed_pp, t_tg, speed_tg;
} sweep_row;

typedef struct {
    char label[BENCH_MAX_STR];  /* legend: model file name (+ flags) */
    char title[BENCH_MAX_STR];  /* "model: sweep -c 4096 -ub 512 -t 8 ..." */
    char subtitle[BENCH_MAX_STR]; /* machine, build, date */
    sweep_row *rows;
    int n_rows, cap_rows;
} sweep_series;

int sweep_series_add(sweep_series *s, const sweep_row *row);
void sweep_series_free(sweep_series *s);
void sweep_md_header(FILE *f);
void sweep_md_row(FILE *f, const sweep_row *r);
json_t *sweep_row_json(const sweep_row *r);
/* Load the rows (and label/title) of a sweep JSON written by `moerun sweep --json`. */
int sweep_load_json(const char *path, sweep_series *s);
/* Line chart of PP and TG speed against KV depth: two stacked panels sharing the
 * x axis, one line per series, legend, title (and the subtitle of the first
 * series when there is one series). Returns a malloc'd SVG text. */
char *sweep_svg(const sweep_series *series, int n_series, const char *title);

/* ---- timed decode loops (run.c) ---------------------------------------------------- */
/* Deterministic pseudo-random token ids in [0, n_vocab) (xorshift, fixed seed). */
void bench_random_tokens(mr_token *out, int n, int n_vocab, uint64_t seed);
/* Decode n tokens from toks at positions pos0.. of sequence 0 in batches of at
 * most n_batch tokens (one mr_decode per batch). 0 / -1. */
int bench_decode_prompt(mr_ctx *c, const mr_token *toks, int n, int pos0, int n_batch);
/* Decode n tokens one at a time at positions pos0.. (generation). 0 / -1. */
int bench_decode_gen(mr_ctx *c, const mr_token *toks, int n, int pos0);

#endif
