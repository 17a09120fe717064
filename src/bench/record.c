/*
 * record.c — one benchmark result: samples and derived numbers, and its forms:
 * the llama-bench markdown table, CSV, and the JSON record that carries
 * everything needed to compare runs later (model, all flags, build, machine,
 * date, samples, roofline). JSON records are read back for `bench --compare`.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "bench/bench.h"

/* ---- environment ------------------------------------------------------------------ */
void bench_iso8601_now(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void bench_env_fill(bench_env *e) {
    memset(e, 0, sizeof *e);
    snprintf(e->version, sizeof e->version, "%s", mr_version());
    snprintf(e->commit, sizeof e->commit, "%s", mr_git_commit());
    snprintf(e->compiler, sizeof e->compiler, "%s", mr_compiler());
    snprintf(e->cpu_features, sizeof e->cpu_features, "%s", mr_cpu_features_str());
    e->cuda = mr_have_cuda();
    snprintf(e->cpu_model, sizeof e->cpu_model, "%s", mr_cpu_model());
    e->cores_physical = mr_cpu_physical_cores();
    e->cores_logical = mr_cpu_logical_cores();
    e->ram_bytes = mr_ram_bytes();
    bench_iso8601_now(e->date, sizeof e->date);
    if (gethostname(e->hostname, sizeof e->hostname - 1) != 0) strcpy(e->hostname, "unknown");
}

void bench_env_set_command(bench_env *e, const char *prog, int argc, char **argv) {
    size_t o = (size_t)snprintf(e->command, sizeof e->command, "%s", prog);
    for (int i = 0; i < argc && o < sizeof e->command; i++) {
        bool q = argv[i][strcspn(argv[i], " \t'\"$\\;&|*?<>()")] != 0 || !argv[i][0];
        o += (size_t)snprintf(e->command + o, sizeof e->command - o, q ? " '%s'" : " %s", argv[i]);
    }
}

json_t *bench_env_build_json(const bench_env *e) {
    return json_pack("{s:s, s:s, s:s, s:s, s:b}", "version", e->version, "commit", e->commit, "compiler",
                     e->compiler, "cpu_features", e->cpu_features, "cuda", e->cuda);
}

json_t *bench_env_machine_json(const bench_env *e) {
    return json_pack("{s:s, s:i, s:i, s:I, s:s}", "cpu_model", e->cpu_model, "cores_physical",
                     e->cores_physical, "cores_logical", e->cores_logical, "ram_bytes",
                     (json_int_t)e->ram_bytes, "hostname", e->hostname);
}

/* ---- samples ------------------------------------------------------------------------ */
void bench_result_init(bench_result *r) {
    memset(r, 0, sizeof *r);
    strcpy(r->backend, "CPU");
    r->type_k = r->type_v = MR_KV_F16;
    r->n_batch = 2048;
    r->n_ubatch = 512;
    r->roofline = r->roofline_best = NAN;
}

void bench_result_free(bench_result *r) {
    free(r->samples_ns);
    free(r->samples_ts);
    free(r->samples_bw);
    r->samples_ns = r->samples_ts = r->samples_bw = NULL;
    r->n_samples = r->n_samples_bw = 0;
}

int bench_result_n_tokens(const bench_result *r) { return r->n_prompt + r->n_gen; }

int bench_result_add_sample(bench_result *r, int n_tokens, double seconds) {
    double *a = mr_realloc(r->samples_ns, (size_t)(r->n_samples + 1) * sizeof *a);
    if (!a) return -1;
    r->samples_ns = a;
    double *b = mr_realloc(r->samples_ts, (size_t)(r->n_samples + 1) * sizeof *b);
    if (!b) return -1;
    r->samples_ts = b;
    a[r->n_samples] = seconds * 1e9;
    b[r->n_samples] = seconds > 0 ? n_tokens / seconds : 0.0;
    r->n_samples++;
    return 0;
}

int bench_result_add_bw(bench_result *r, double gbs) {
    double *a = mr_realloc(r->samples_bw, (size_t)(r->n_samples_bw + 1) * sizeof *a);
    if (!a) return -1;
    r->samples_bw = a;
    a[r->n_samples_bw++] = gbs > 0 && isfinite(gbs) ? gbs : 0.0;
    return 0;
}

void bench_result_note_probe(bench_result *r, double gbs) {
    if (gbs > 0 && isfinite(gbs) && (r->bw_probe_min <= 0 || gbs < r->bw_probe_min)) r->bw_probe_min = gbs;
}

bool bench_bw_moved(const bench_result *r, double *lo, double *hi) {
    double l = r->bw_probe_min > 0 ? r->bw_probe_min : INFINITY, h = 0;
    for (int i = 0; i < r->n_samples_bw; i++) {
        const double g = r->samples_bw[i];
        if (!(g > 0)) continue;
        if (g < l) l = g;
        if (g > h) h = g;
    }
    if (!(h > 0) || !isfinite(l)) return false;
    *lo = l, *hi = h;
    return bench_bw_spread(l, h);
}

bool bench_bw_spread(double lo, double hi) {
    return lo > 0 && isfinite(lo) && isfinite(hi) && hi > BENCH_BW_MOVED * lo;
}

/* Mean/stddev of the samples; the roofline is the bytes read per second (weights, and the KV
 * cache rows decode steps' attention reads) over the measured bandwidth:
 * (bytes/token) * (tokens/s) / (GB/s * 1e9). roofline_best divides the mean rate by the best
 * bandwidth measured around the whole test; with a bandwidth per repetition (samples_bw, every
 * one known) roofline is the median over repetitions of each one's rate over its own bandwidth,
 * which a VM whose bandwidth jumps between two levels within seconds (ours: 37 and 70 GB/s)
 * does not turn into noise. */
void bench_result_finish(bench_result *r) {
    r->avg_ns = bench_mean(r->samples_ns, r->n_samples);
    r->stddev_ns = bench_stddev(r->samples_ns, r->n_samples);
    r->avg_ts = bench_mean(r->samples_ts, r->n_samples);
    r->stddev_ts = bench_stddev(r->samples_ts, r->n_samples);
    r->weight_gbs = r->weight_bytes_per_token * r->avg_ts / 1e9;
    const double kv_gbs = (r->kv_bytes_per_token > 0 ? r->kv_bytes_per_token : 0) * r->avg_ts / 1e9;
    r->roofline_best = r->bandwidth_gbs > 0 && r->weight_bytes_per_token > 0
                           ? (r->weight_gbs + kv_gbs) / r->bandwidth_gbs
                           : NAN;
    r->roofline = r->roofline_best;
    bool per_rep = r->n_samples_bw == r->n_samples && r->n_samples > 0 && r->weight_bytes_per_token > 0;
    for (int i = 0; per_rep && i < r->n_samples; i++) per_rep = r->samples_bw[i] > 0;
    if (per_rep) {
        const double bpt = r->weight_bytes_per_token + (r->kv_bytes_per_token > 0 ? r->kv_bytes_per_token : 0);
        double *f = mr_malloc(sizeof(double) * (size_t)r->n_samples);
        if (f) {
            for (int i = 0; i < r->n_samples; i++) f[i] = bpt * r->samples_ts[i] / 1e9 / r->samples_bw[i];
            r->roofline = bench_percentile(f, r->n_samples, 50.0);
            free(f);
        }
    }
}

void bench_test_name(const bench_result *r, char *buf, size_t n) {
    size_t o;
    if (r->n_prompt > 0 && r->n_gen > 0) o = (size_t)snprintf(buf, n, "pp%d+tg%d", r->n_prompt, r->n_gen);
    else if (r->n_prompt > 0) o = (size_t)snprintf(buf, n, "pp%d", r->n_prompt);
    else o = (size_t)snprintf(buf, n, "tg%d", r->n_gen);
    if (r->n_depth > 0 && o < n) snprintf(buf + o, n - o, " @ d%d", r->n_depth);
}

/* ---- markdown ------------------------------------------------------------------------- */
static const char *fa_str(int fa) { return fa < 0 ? "auto" : fa ? "1" : "0"; }

void bench_md_header(FILE *f, const bench_md_cols *c) {
    fprintf(f, "| %-30s | %10s | %10s | %-10s | %7s |", "model", "size", "params", "backend", "threads");
    if (c->n_batch) fprintf(f, " %7s |", "n_batch");
    if (c->n_ubatch) fprintf(f, " %8s |", "n_ubatch");
    if (c->type_k) fprintf(f, " %6s |", "type_k");
    if (c->type_v) fprintf(f, " %6s |", "type_v");
    if (c->flash_attn) fprintf(f, " %4s |", "fa");
    if (c->n_gpu_layers) fprintf(f, " %3s |", "ngl");
    if (c->n_cpu_moe) fprintf(f, " %9s |", "n_cpu_moe");
    if (c->ot) fprintf(f, " %-20s |", "ot");
    if (c->repack) fprintf(f, " %6s |", "repack");
    fprintf(f, " %15s | %20s |", "test", "t/s");
    if (c->roofline) fprintf(f, " %8s |", "roofline");
    if (c->rss) fprintf(f, " %10s |", "peak RSS");
    if (c->vram) fprintf(f, " %10s |", "VRAM");
    fprintf(f, "\n| %-30s | %10s | %10s | %-10s | %7s |", "------------------------------", "---------:",
            "---------:", "----------", "------:");
    if (c->n_batch) fprintf(f, " %7s |", "------:");
    if (c->n_ubatch) fprintf(f, " %8s |", "-------:");
    if (c->type_k) fprintf(f, " %6s |", "------");
    if (c->type_v) fprintf(f, " %6s |", "------");
    if (c->flash_attn) fprintf(f, " %4s |", "---:");
    if (c->n_gpu_layers) fprintf(f, " %3s |", "--:");
    if (c->n_cpu_moe) fprintf(f, " %9s |", "--------:");
    if (c->ot) fprintf(f, " %-20s |", "--------------------");
    if (c->repack) fprintf(f, " %6s |", "------");
    fprintf(f, " %15s | %20s |", "--------------:", "-------------------:");
    if (c->roofline) fprintf(f, " %8s |", "-------:");
    if (c->rss) fprintf(f, " %10s |", "---------:");
    if (c->vram) fprintf(f, " %10s |", "---------:");
    fputc('\n', f);
}

void bench_md_row(FILE *f, const bench_md_cols *c, const bench_result *r) {
    char size[32], params[32], test[64], ts[64];
    mr_fmt_bytes(size, sizeof size, r->model_size);
    mr_fmt_count(params, sizeof params, r->model_n_params);
    bench_test_name(r, test, sizeof test);
    snprintf(ts, sizeof ts, "%.2f ± %.2f", r->avg_ts, r->stddev_ts);
    fprintf(f, "| %-30s | %10s | %10s | %-10s | %7d |", r->model_type, size, params, r->backend, r->n_threads);
    if (c->n_batch) fprintf(f, " %7d |", r->n_batch);
    if (c->n_ubatch) fprintf(f, " %8d |", r->n_ubatch);
    if (c->type_k) fprintf(f, " %6s |", bench_kv_type_name(r->type_k));
    if (c->type_v) fprintf(f, " %6s |", bench_kv_type_name(r->type_v));
    if (c->flash_attn) fprintf(f, " %4s |", fa_str(r->flash_attn));
    if (c->n_gpu_layers) fprintf(f, " %3d |", r->n_gpu_layers);
    if (c->n_cpu_moe) fprintf(f, " %9d |", r->n_cpu_moe);
    if (c->ot) fprintf(f, " %-20s |", r->ot[0] ? r->ot : "-");
    if (c->repack) fprintf(f, " %6s |", r->repack[0] ? r->repack : "-");
    fprintf(f, " %15s | %20s |", test, ts);
    if (c->roofline) {
        if (isfinite(r->roofline)) fprintf(f, " %5.1f %%%s |", r->roofline * 100.0, r->bytes_estimated ? "~" : " ");
        else fprintf(f, " %8s |", "-");
    }
    if (c->rss) {
        char rss[32];
        fprintf(f, " %10s |", mr_fmt_bytes(rss, sizeof rss, r->peak_rss_bytes));
    }
    if (c->vram) {
        char vr[32];
        fprintf(f, " %10s |", r->vram_bytes ? mr_fmt_bytes(vr, sizeof vr, r->vram_bytes) : "-");
    }
    fputc('\n', f);
}

/* ---- CSV -------------------------------------------------------------------------------- */
static void csv_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_samples(FILE *f, const double *x, int n, const char *fmt) {
    fputc('"', f);
    for (int i = 0; i < n; i++) {
        if (i) fputc(';', f);
        fprintf(f, fmt, x[i]);
    }
    fputc('"', f);
}

static const char k_csv_cols[] =
    "build_commit,build_version,compiler,cpu_info,cpu_features,cuda,cores_physical,ram_bytes,"
    "model_filename,model_type,model_size,model_n_params,backend,n_batch,n_ubatch,n_threads,"
    "type_k,type_v,flash_attn,n_gpu_layers,n_cpu_moe,override_tensors,n_prompt,n_gen,n_depth,"
    "n_reps,test,test_time,avg_ns,stddev_ns,avg_ts,stddev_ts,samples_ts,weight_bytes_per_token,"
    "bandwidth_gbs,roofline,peak_rss_bytes,repack,vram_bytes,kv_bytes_per_token,roofline_best,samples_bw";

void bench_csv_header(FILE *f) { fprintf(f, "%s\n", k_csv_cols); }

void bench_csv_row(FILE *f, const bench_result *r, const bench_env *e) {
    char test[64];
    bench_test_name(r, test, sizeof test);
    csv_str(f, e->commit), fputc(',', f);
    csv_str(f, e->version), fputc(',', f);
    csv_str(f, e->compiler), fputc(',', f);
    csv_str(f, e->cpu_model), fputc(',', f);
    csv_str(f, e->cpu_features), fputc(',', f);
    fprintf(f, "%s,%d,%llu,", e->cuda ? "true" : "false", e->cores_physical, (unsigned long long)e->ram_bytes);
    csv_str(f, r->model_filename), fputc(',', f);
    csv_str(f, r->model_type), fputc(',', f);
    fprintf(f, "%llu,%llu,", (unsigned long long)r->model_size, (unsigned long long)r->model_n_params);
    csv_str(f, r->backend), fputc(',', f);
    fprintf(f, "%d,%d,%d,%s,%s,%d,%d,%d,", r->n_batch, r->n_ubatch, r->n_threads, bench_kv_type_name(r->type_k),
            bench_kv_type_name(r->type_v), r->flash_attn, r->n_gpu_layers, r->n_cpu_moe);
    csv_str(f, r->ot), fputc(',', f);
    fprintf(f, "%d,%d,%d,%d,", r->n_prompt, r->n_gen, r->n_depth, r->n_reps);
    csv_str(f, test), fputc(',', f);
    csv_str(f, r->test_time), fputc(',', f);
    fprintf(f, "%.0f,%.0f,%.6f,%.6f,", r->avg_ns, r->stddev_ns, r->avg_ts, r->stddev_ts);
    csv_samples(f, r->samples_ts, r->n_samples, "%.6f");
    fprintf(f, ",%.0f,%.3f,", r->weight_bytes_per_token, r->bandwidth_gbs);
    if (isfinite(r->roofline)) fprintf(f, "%.6f", r->roofline);
    fprintf(f, ",%llu,", (unsigned long long)r->peak_rss_bytes);
    csv_str(f, r->repack);
    fprintf(f, ",%llu,%.0f,", (unsigned long long)r->vram_bytes, r->kv_bytes_per_token);
    if (isfinite(r->roofline_best)) fprintf(f, "%.6f", r->roofline_best);
    fputc(',', f);
    csv_samples(f, r->samples_bw, r->n_samples_bw, "%.3f");
    fputc('\n', f);
}

/* ---- JSON ---------------------------------------------------------------------------------- */
static json_t *jreal(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *jsamples(const double *x, int n, bool integer) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, integer ? json_integer((json_int_t)llround(x[i])) : jreal(x[i]));
    return a;
}

json_t *bench_result_to_json(const bench_result *r, const bench_env *e) {
    char test[64];
    bench_test_name(r, test, sizeof test);
    json_t *o = json_object();
    /* llama-bench field names first */
    json_object_set_new(o, "build_commit", json_string(e->commit));
    json_object_set_new(o, "cpu_info", json_string(e->cpu_model));
    json_object_set_new(o, "gpu_info", json_string(""));
    json_object_set_new(o, "backends", json_string(r->backend));
    json_object_set_new(o, "model_filename", json_string(r->model_filename));
    json_object_set_new(o, "model_path", json_string(r->model_path));
    json_object_set_new(o, "model_type", json_string(r->model_type));
    json_object_set_new(o, "model_size", json_integer((json_int_t)r->model_size));
    json_object_set_new(o, "model_n_params", json_integer((json_int_t)r->model_n_params));
    json_object_set_new(o, "model_active_bytes_est", json_integer((json_int_t)r->model_active_bytes_est));
    json_object_set_new(o, "n_batch", json_integer(r->n_batch));
    json_object_set_new(o, "n_ubatch", json_integer(r->n_ubatch));
    json_object_set_new(o, "n_threads", json_integer(r->n_threads));
    json_object_set_new(o, "type_k", json_string(bench_kv_type_name(r->type_k)));
    json_object_set_new(o, "type_v", json_string(bench_kv_type_name(r->type_v)));
    json_object_set_new(o, "n_gpu_layers", json_integer(r->n_gpu_layers));
    json_object_set_new(o, "n_cpu_moe", json_integer(r->n_cpu_moe));
    json_object_set_new(o, "override_tensors", json_string(r->ot));
    json_object_set_new(o, "repack", json_string(r->repack));
    json_object_set_new(o, "flash_attn", json_integer(r->flash_attn));
    json_object_set_new(o, "n_prompt", json_integer(r->n_prompt));
    json_object_set_new(o, "n_gen", json_integer(r->n_gen));
    json_object_set_new(o, "n_depth", json_integer(r->n_depth));
    json_object_set_new(o, "n_reps", json_integer(r->n_reps));
    json_object_set_new(o, "test", json_string(test));
    json_object_set_new(o, "test_time", json_string(r->test_time));
    json_object_set_new(o, "avg_ns", json_integer((json_int_t)llround(r->avg_ns)));
    json_object_set_new(o, "stddev_ns", json_integer((json_int_t)llround(r->stddev_ns)));
    json_object_set_new(o, "avg_ts", jreal(r->avg_ts));
    json_object_set_new(o, "stddev_ts", jreal(r->stddev_ts));
    json_object_set_new(o, "samples_ns", jsamples(r->samples_ns, r->n_samples, true));
    json_object_set_new(o, "samples_ts", jsamples(r->samples_ts, r->n_samples, false));
    /* roofline */
    json_object_set_new(o, "weight_bytes_per_token", jreal(r->weight_bytes_per_token));
    json_object_set_new(o, "weight_bytes_estimated", json_boolean(r->bytes_estimated));
    json_object_set_new(o, "kv_bytes_per_token", jreal(r->kv_bytes_per_token));
    json_object_set_new(o, "bandwidth_gbs", jreal(r->bandwidth_gbs));
    json_object_set_new(o, "weight_gbs", jreal(r->weight_gbs));
    json_object_set_new(o, "roofline", jreal(r->roofline));
    json_object_set_new(o, "roofline_best", jreal(r->roofline_best));
    json_object_set_new(o, "samples_bw", jsamples(r->samples_bw, r->n_samples_bw, false));
    json_object_set_new(o, "peak_rss_bytes", json_integer((json_int_t)r->peak_rss_bytes));
    json_object_set_new(o, "vram_bytes", json_integer((json_int_t)r->vram_bytes));
    json_object_set_new(o, "date", json_string(e->date));
    json_object_set_new(o, "command", json_string(e->command));
    json_object_set_new(o, "build", bench_env_build_json(e));
    json_object_set_new(o, "machine", bench_env_machine_json(e));
    return o;
}

/* Field readers for bench_result_from_json: a missing or mistyped required
 * field is an error naming it. */
static int jget_num(const json_t *o, const char *k, double *v, bool required) {
    json_t *x = json_object_get(o, k);
    if (x && json_is_number(x)) {
        *v = json_number_value(x);
        return 0;
    }
    if (x && json_is_null(x)) {
        *v = NAN;
        return 0;
    }
    if (!required) return 0;
    mr_seterr("result record: field '%s' missing or not a number", k);
    return -1;
}

static int jget_int(const json_t *o, const char *k, int *v, bool required) {
    double d = *v;
    if (jget_num(o, k, &d, required)) return -1;
    if (isfinite(d)) *v = (int)d;
    return 0;
}

static void jget_str(const json_t *o, const char *k, char *buf, size_t n) {
    const char *s = json_string_value(json_object_get(o, k));
    if (s) snprintf(buf, n, "%s", s);
}

static int jget_samples(const json_t *o, const char *k, double **out, int *n) {
    json_t *a = json_object_get(o, k);
    if (!json_is_array(a)) return 0;
    size_t m = json_array_size(a);
    double *x = mr_calloc(m ? m : 1, sizeof *x);
    if (!x) return -1;
    for (size_t i = 0; i < m; i++) {
        json_t *v = json_array_get(a, i);
        x[i] = json_is_number(v) ? json_number_value(v) : NAN;
    }
    *out = x;
    *n = (int)m;
    return 0;
}

int bench_result_from_json(const json_t *o, bench_result *r) {
    bench_result_init(r);
    if (!json_is_object(o)) {
        mr_seterr("result record: not a JSON object");
        return -1;
    }
    char buf[64] = "";
    double d = 0;
    jget_str(o, "model_filename", r->model_filename, sizeof r->model_filename);
    jget_str(o, "model_path", r->model_path, sizeof r->model_path);
    jget_str(o, "model_type", r->model_type, sizeof r->model_type);
    jget_str(o, "backends", r->backend, sizeof r->backend);
    jget_str(o, "override_tensors", r->ot, sizeof r->ot);
    jget_str(o, "repack", r->repack, sizeof r->repack);
    jget_str(o, "test_time", r->test_time, sizeof r->test_time);
    if (jget_int(o, "n_prompt", &r->n_prompt, true) || jget_int(o, "n_gen", &r->n_gen, true) ||
        jget_int(o, "n_threads", &r->n_threads, true) || jget_num(o, "avg_ts", &r->avg_ts, true))
        return -1;
    jget_int(o, "n_depth", &r->n_depth, false);
    jget_int(o, "n_batch", &r->n_batch, false);
    jget_int(o, "n_ubatch", &r->n_ubatch, false);
    jget_int(o, "n_gpu_layers", &r->n_gpu_layers, false);
    jget_int(o, "n_cpu_moe", &r->n_cpu_moe, false);
    jget_int(o, "n_reps", &r->n_reps, false);
    json_t *fa = json_object_get(o, "flash_attn");
    if (json_is_boolean(fa)) r->flash_attn = json_is_true(fa);
    else jget_int(o, "flash_attn", &r->flash_attn, false);
    jget_str(o, "type_k", buf, sizeof buf);
    if (buf[0] && bench_kv_type_from_name(buf) >= 0) r->type_k = bench_kv_type_from_name(buf);
    buf[0] = 0;
    jget_str(o, "type_v", buf, sizeof buf);
    if (buf[0] && bench_kv_type_from_name(buf) >= 0) r->type_v = bench_kv_type_from_name(buf);
    if (!jget_num(o, "model_size", &d, false) && d > 0) r->model_size = (uint64_t)d;
    d = 0;
    if (!jget_num(o, "model_n_params", &d, false) && d > 0) r->model_n_params = (uint64_t)d;
    d = 0;
    if (!jget_num(o, "peak_rss_bytes", &d, false) && d > 0) r->peak_rss_bytes = (uint64_t)d;
    d = 0;
    if (!jget_num(o, "vram_bytes", &d, false) && d > 0) r->vram_bytes = (uint64_t)d;
    jget_num(o, "stddev_ts", &r->stddev_ts, false);
    jget_num(o, "avg_ns", &r->avg_ns, false);
    jget_num(o, "stddev_ns", &r->stddev_ns, false);
    jget_num(o, "weight_bytes_per_token", &r->weight_bytes_per_token, false);
    jget_num(o, "kv_bytes_per_token", &r->kv_bytes_per_token, false);
    jget_num(o, "bandwidth_gbs", &r->bandwidth_gbs, false);
    jget_num(o, "weight_gbs", &r->weight_gbs, false);
    jget_num(o, "roofline", &r->roofline, false);
    r->roofline_best = r->roofline; /* files before roofline_best had the one figure */
    jget_num(o, "roofline_best", &r->roofline_best, false);
    r->bytes_estimated = json_is_true(json_object_get(o, "weight_bytes_estimated"));
    int n1 = 0, n2 = 0;
    if (jget_samples(o, "samples_ts", &r->samples_ts, &n1) || jget_samples(o, "samples_ns", &r->samples_ns, &n2))
        return -1;
    r->n_samples = MR_MIN(n1, n2);
    return 0;
}

/* ---- result files -------------------------------------------------------------------------- */
static int set_push(bench_result_set *s, const json_t *o, const char *path, int idx) {
    bench_result *a = mr_realloc(s->r, (size_t)(s->n + 1) * sizeof *a);
    if (!a) return -1;
    s->r = a;
    if (bench_result_from_json(o, &a[s->n])) {
        bench_result_free(&a[s->n]);
        mr_preerr("%s: record %d", path, idx + 1);
        return -1;
    }
    s->n++;
    return 0;
}

/* A JSON array of records (-o json), one object, or one object per line (-o jsonl). */
int bench_load_results(const char *path, bench_result_set *s) {
    memset(s, 0, sizeof *s);
    size_t len;
    char *text = mr_read_file(path, &len);
    if (!text) return -1;
    json_error_t err;
    json_t *root = json_loadb(text, len, 0, &err);
    int rc = 0;
    if (root) {
        if (json_is_array(root)) {
            for (size_t i = 0; i < json_array_size(root) && !rc; i++)
                rc = set_push(s, json_array_get(root, i), path, (int)i);
        } else {
            rc = set_push(s, root, path, 0);
        }
        json_decref(root);
    } else {
        /* JSON lines */
        int line = 0;
        for (char *p = text; *p && !rc;) {
            char *e = strchr(p, '\n');
            if (e) *e = 0;
            line++;
            if (strspn(p, " \t\r") != strlen(p)) {
                json_t *o = json_loads(p, 0, &err);
                if (!o) {
                    mr_seterr("%s:%d: not JSON: %s", path, line, err.text);
                    rc = -1;
                } else {
                    rc = set_push(s, o, path, line - 1);
                    json_decref(o);
                }
            }
            if (!e) break;
            p = e + 1;
        }
    }
    free(text);
    if (!rc && s->n == 0) {
        mr_seterr("%s: no benchmark records", path);
        rc = -1;
    }
    if (rc) bench_result_set_free(s);
    return rc;
}

void bench_result_set_free(bench_result_set *s) {
    for (int i = 0; i < s->n; i++) bench_result_free(&s->r[i]);
    free(s->r);
    s->r = NULL;
    s->n = 0;
}
