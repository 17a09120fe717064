/*
 * cmd_sweep.c — `moerun sweep`: speed as the KV cache fills (ik_llama.cpp's
 * sweep-bench).
 *
 *   moerun sweep -m MODEL -c 4096 -ub 512 [-n TG] [-t N] [-ctk T] [-fa on] ...
 *                [--json FILE] [--svg FILE] [-o md|jsonl]
 *   moerun sweep --plot A.json [B.json ...] --svg FILE    chart of saved sweeps
 *
 * Procedure (as sweep-bench): one warm-up token, cache cleared; then for each
 * N_KV = 0, ub, 2 ub, ... while the window fits in -c:
 *   1. drop cells from N_KV on, generate TG tokens one at a time from N_KV
 *      (timed: T_TG, S_TG = TG / T_TG);
 *   2. drop them again (mr_kv_seq_rm), decode ub random tokens at N_KV in
 *      batches of -b (timed: T_PP, S_PP = ub / T_PP); these stay, so the next
 *      step starts at N_KV + ub. A checkpoint there (mr_kv_seq_checkpoint,
 *      untimed) lets recurrent models rewind their state to it in 1 and 2.
 * TG defaults to ub / 4 (as sweep-bench) unless -n is given.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base/base.h"
#include "bench/bench.h"
#include "commands.h"

typedef struct {
    const char *json_path, *svg_path;
    bool jsonl, warmup;
    const char **plot;
    int n_plot;
} sweep_opts;

static int extra_flag(void *ud, int argc, char **argv, int *i) {
    sweep_opts *o = ud;
    const char *a = argv[*i];
    if (!strcmp(a, "--json") || !strcmp(a, "--svg")) {
        const char *v = args_value(argc, argv, i);
        if (!v) return -1;
        if (a[2] == 'j') o->json_path = v;
        else o->svg_path = v;
        return 1;
    }
    if (!strcmp(a, "-o") || !strcmp(a, "--output-format")) {
        const char *v = args_value(argc, argv, i);
        if (!v) return -1;
        if (!strcmp(v, "md") || !strcmp(v, "table")) o->jsonl = false;
        else if (!strcmp(v, "jsonl")) o->jsonl = true;
        else {
            fprintf(stderr, "moerun sweep: -o: expected md or jsonl, got '%s' (see moerun sweep --help)\n", v);
            return -1;
        }
        return 1;
    }
    if (!strcmp(a, "--no-warmup")) {
        o->warmup = false;
        return 1;
    }
    if (!strcmp(a, "--plot")) {
        /* every following non-flag argument is a sweep JSON file */
        int n0 = o->n_plot;
        while (*i + 1 < argc && argv[*i + 1][0] != '-') {
            const char **p = realloc(o->plot, (size_t)(o->n_plot + 1) * sizeof *p);
            if (!p) return -1;
            o->plot = p;
            o->plot[o->n_plot++] = argv[++*i];
        }
        if (o->n_plot == n0) {
            fprintf(stderr, "moerun sweep: --plot needs sweep JSON files (see moerun sweep --help)\n");
            return -1;
        }
        return 1;
    }
    return 0;
}

static const args_cmd k_cmd = {
    "sweep", "-m MODEL -c N_CTX -ub N [options]",
    "  -n N               tokens generated at each depth (default: ub / 4)\n"
    "  -o md|jsonl        table (default) or one JSON object per step on stdout\n"
    "  --json FILE        write the whole sweep (rows, flags, build, machine) as JSON\n"
    "  --svg FILE         line chart of PP and TG speed against KV depth\n"
    "  --plot A.json ...  with --svg: chart saved sweeps (no model needed)\n"
    "  --no-warmup        skip the one-token warm-up\n"
    "Steps N_KV = 0, ub, 2 ub, ... < -c: generate n tokens at depth N_KV (timed), drop them,\n"
    "then process ub prompt tokens at N_KV (timed); as ik_llama.cpp's sweep-bench. On the CPU the\n"
    "read bandwidth is probed around each TG step (~0.1 s each, untimed); if it moved by more than\n"
    "25 %, a note after the table gives the range: S_TG then moves with the machine, not only N_KV.\n",
    extra_flag, NULL};

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "moerun sweep: %s: cannot write\n", path);
        return -1;
    }
    fputs(text, f);
    if (fclose(f)) {
        fprintf(stderr, "moerun sweep: %s: write failed\n", path);
        return -1;
    }
    return 0;
}

static int write_svg(const char *path, const sweep_series *s, int n, const char *title) {
    char *svg = sweep_svg(s, n, title);
    if (!svg) {
        fprintf(stderr, "moerun sweep: SVG: %s\n", mr_geterr());
        return -1;
    }
    int rc = write_text(path, svg);
    free(svg);
    return rc;
}

/* --plot: chart of saved sweeps. */
static int plot_only(const sweep_opts *o) {
    if (!o->svg_path) {
        fprintf(stderr, "moerun sweep: --plot needs --svg FILE (see moerun sweep --help)\n");
        return 2;
    }
    sweep_series *s = calloc((size_t)o->n_plot, sizeof *s);
    int rc = 0, n = 0;
    for (; n < o->n_plot; n++)
        if (sweep_load_json(o->plot[n], &s[n])) {
            fprintf(stderr, "moerun sweep: %s\n", mr_geterr());
            rc = 1;
            break;
        }
    char title[BENCH_MAX_STR] = "moerun sweep";
    if (n == 1 && s[0].title[0]) snprintf(title, sizeof title, "%s", s[0].title);
    else if (!rc) {
        size_t l = strlen(title);
        for (int i = 0; i < n && l < sizeof title; i++)
            l += (size_t)snprintf(title + l, sizeof title - l, "%s%s", i ? " vs " : ": ", s[i].label);
    }
    if (!rc) rc = write_svg(o->svg_path, s, n, title) ? 1 : 0;
    for (int i = 0; i < n; i++) sweep_series_free(&s[i]);
    free(s);
    return rc;
}

static const char *fa_name(int fa) { return fa < 0 ? "auto" : fa ? "on" : "off"; }

static json_t *params_json(const mr_args *a, int n_ctx, int tg) {
    json_t *p = json_object();
    json_object_set_new(p, "n_ctx", json_integer(n_ctx));
    json_object_set_new(p, "n_batch", json_integer(a->ctx.n_batch));
    json_object_set_new(p, "n_ubatch", json_integer(a->ctx.n_ubatch));
    json_object_set_new(p, "n_gen", json_integer(tg));
    json_object_set_new(p, "n_threads", json_integer(a->ctx.n_threads));
    json_object_set_new(p, "type_k", json_string(bench_kv_type_name(a->ctx.type_k)));
    json_object_set_new(p, "type_v", json_string(bench_kv_type_name(a->ctx.type_v)));
    json_object_set_new(p, "flash_attn", json_integer(a->ctx.flash_attn));
    json_object_set_new(p, "n_gpu_layers", json_integer(a->model.n_gpu_layers));
    json_object_set_new(p, "n_cpu_moe", json_integer(a->model.n_cpu_moe));
    json_object_set_new(p, "override_tensors", json_string(a->model.overrides ? a->model.overrides : ""));
    json_object_set_new(p, "use_mmap", json_boolean(a->model.use_mmap));
    return p;
}

#define SWEEP_PROBE_BYTES ((size_t)256 << 20) /* as bench's per-repetition probes */

/* The sweep proper on a loaded model; rows go to stdout and into s. */
static int sweep_run(mr_args *a, const sweep_opts *o, mr_model *m, sweep_series *s, int *n_ctx_out, int *tg_out) {
    mr_ctx *c = mr_ctx_new(m, &a->ctx);
    if (!c) {
        fprintf(stderr, "moerun sweep: %s\n", mr_last_error());
        return 1;
    }
    const int n_ctx = mr_ctx_n_ctx(c), ub = a->ctx.n_ubatch > 0 ? a->ctx.n_ubatch : 512;
    const int tg = a->set_n_predict && a->n_predict >= 0 ? a->n_predict : ub / 4;
    const int n_batch = a->ctx.n_batch > 0 ? a->ctx.n_batch : 2048;
    *n_ctx_out = n_ctx;
    *tg_out = tg;
    const int n_vocab = mr_n_vocab(m);
    mr_token *toks = mr_malloc((size_t)(ub + tg + 1) * sizeof *toks);
    if (!toks) {
        mr_ctx_free(c);
        return 1;
    }
    int rc = 0;
    if (o->warmup) {
        mr_token t0 = mr_token_bos(m) >= 0 ? mr_token_bos(m) : 0;
        rc = bench_decode_gen(c, &t0, 1, 0);
        mr_kv_clear(c);
    }
    if (!o->jsonl) {
        printf("\nmoerun sweep: n_kv_max = %d, n_batch = %d, n_ubatch = %d, flash_attn = %s, n_gpu_layers = %d, "
               "n_threads = %d\n\n",
               n_ctx, n_batch, ub, fa_name(a->ctx.flash_attn), a->model.n_gpu_layers, a->ctx.n_threads);
        sweep_md_header(stdout);
        fflush(stdout);
    }
    bench_progress pr;
    bench_progress_init(&pr, false);
    /* on the CPU, the bandwidth right before and after each TG step (as bench's probes): a VM whose
     * bandwidth jumps moves S_TG as much as the depth does, and the note after the table says so */
    mr_ctx_offload_info oi;
    mr_ctx_get_offload(c, &oi);
    const bool probe = tg > 0 && oi.n_layers_dev == 0 && !oi.output_dev;
    const int probe_threads = a->ctx.n_threads > 0 ? a->ctx.n_threads : mr_cpu_physical_cores();
    double bw_lo = INFINITY, bw_hi = 0;
    int kv_lo = 0, kv_hi = 0;
    int steps = n_ctx / ub, step = 0;
    uint64_t seed = 1;
    for (int n_kv = 0; !rc && n_kv + MR_MAX(ub, tg) <= n_ctx; n_kv += ub, step++) {
        sweep_row row = {.pp = ub, .tg = tg, .n_kv = n_kv};
        bench_random_tokens(toks, ub + tg, n_vocab, seed++);
        bench_progress_update(&pr, "sweep step %d/%d: N_KV %d", step + 1, steps, n_kv);
        if (tg > 0) {
            if (mr_kv_seq_rm(c, 0, n_kv, -1)) { rc = -1; break; }
            const double bw0 = probe ? bench_bandwidth_gbs(probe_threads, SWEEP_PROBE_BYTES, 3) : 0;
            double t0 = mr_time_s();
            if ((rc = bench_decode_gen(c, toks + ub, tg, n_kv))) break;
            row.t_tg = mr_time_s() - t0;
            row.speed_tg = row.t_tg > 0 ? tg / row.t_tg : 0;
            const double bw1 = probe ? bench_bandwidth_gbs(probe_threads, SWEEP_PROBE_BYTES, 3) : 0;
            for (int i = 0; i < 2; i++) {
                const double g = i ? bw1 : bw0;
                if (g > 0 && g < bw_lo) bw_lo = g, kv_lo = n_kv;
                if (g > bw_hi) bw_hi = g, kv_hi = n_kv;
            }
        }
        if (mr_kv_seq_rm(c, 0, n_kv, -1)) { rc = -1; break; }
        double t0 = mr_time_s();
        if ((rc = bench_decode_prompt(c, toks, ub, n_kv, n_batch))) break;
        row.t_pp = mr_time_s() - t0;
        /* recurrent models (qwen3next) rewind the state to here at the next step */
        if (mr_kv_seq_checkpoint(c, 0)) { rc = -1; break; }
        row.speed_pp = row.t_pp > 0 ? ub / row.t_pp : 0;
        bench_progress_done(&pr);
        if (o->jsonl) {
            json_t *j = sweep_row_json(&row);
            json_object_set_new(j, "n_kv_max", json_integer(n_ctx));
            json_object_set_new(j, "n_batch", json_integer(n_batch));
            json_object_set_new(j, "n_ubatch", json_integer(ub));
            json_object_set_new(j, "n_threads", json_integer(a->ctx.n_threads));
            char *t = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
            printf("%s\n", t);
            free(t);
            json_decref(j);
        } else {
            sweep_md_row(stdout, &row);
        }
        fflush(stdout);
        if (sweep_series_add(s, &row)) rc = -1;
    }
    bench_progress_done(&pr);
    if (!rc && bench_bw_spread(bw_lo, bw_hi))
        fprintf(stderr,
                "moerun sweep: note: the memory bandwidth moved between %.1f GB/s (at N_KV %d) and %.1f GB/s (at "
                "N_KV %d) during the TG steps (%.2fx): S_TG moves with it as well as with N_KV\n",
                bw_lo, kv_lo, bw_hi, kv_hi, bw_hi / bw_lo);
    if (rc) fprintf(stderr, "moerun sweep: %s\n", mr_last_error());
    else if (s->n_rows == 0)
        fprintf(stderr, "moerun sweep: no step fits: -c %d is smaller than -ub %d (or -n %d)\n", n_ctx, ub, tg), rc = 2;
    free(toks);
    mr_ctx_free(c);
    return rc ? (rc == 2 ? 2 : 1) : 0;
}

int cmd_sweep(int argc, char **argv) {
    sweep_opts o = {.warmup = true};
    args_cmd cmd = k_cmd;
    cmd.ud = &o;
    mr_args a;
    args_init(&a);
    int rc = args_parse(&a, argc, argv, ARGS_MODEL | ARGS_CTX | ARGS_NPREDICT, &cmd);
    if (rc >= 0) goto out;
    if (o.n_plot) {
        rc = plot_only(&o);
        goto out;
    }
    if (!a.model.path) {
        rc = args_error(&cmd, "-m MODEL is required");
        goto out;
    }
    if (a.ctx.n_ubatch <= 0) a.ctx.n_ubatch = 512;
    if (a.ctx.n_batch < a.ctx.n_ubatch) a.ctx.n_batch = a.ctx.n_ubatch;
    if (a.ctx.n_threads <= 0) a.ctx.n_threads = a.model.n_threads > 0 ? a.model.n_threads : mr_cpu_physical_cores();
    if (a.model.n_threads <= 0) a.model.n_threads = a.ctx.n_threads;

    bench_env env;
    bench_env_fill(&env);
    bench_env_set_command(&env, "moerun sweep", argc - 1, argv + 1);
    mr_model *m = mr_model_load(&a.model);
    if (!m) {
        fprintf(stderr, "moerun sweep: %s: %s\n", a.model.path, mr_last_error());
        rc = 1;
        goto out;
    }
    mr_model_info info;
    mr_model_get_info(m, &info);
    sweep_series s = {0};
    int n_ctx = 0, tg = 0;
    rc = sweep_run(&a, &o, m, &s, &n_ctx, &tg);
    snprintf(s.label, sizeof s.label, "%s (t=%d, %s)", base_name(a.model.path), a.ctx.n_threads,
             env.cuda && a.model.n_gpu_layers > 0 ? "CUDA" : "CPU");
    int tl = snprintf(s.title, sizeof s.title, "%s: sweep -c %d -ub %d -b %d -n %d -t %d -ctk %s -ctv %s -fa %s",
                      base_name(a.model.path), n_ctx, a.ctx.n_ubatch, a.ctx.n_batch, tg, a.ctx.n_threads,
                      bench_kv_type_name(a.ctx.type_k), bench_kv_type_name(a.ctx.type_v), fa_name(a.ctx.flash_attn));
    if (a.model.n_gpu_layers && tl > 0 && (size_t)tl < sizeof s.title)
        snprintf(s.title + tl, sizeof s.title - (size_t)tl, " -ngl %d", a.model.n_gpu_layers);
    snprintf(s.subtitle, sizeof s.subtitle, "%s, %d cores, %.0f GiB RAM | moerun %s (%s) | %s", env.cpu_model,
             env.cores_physical, env.ram_bytes / 1073741824.0, env.version, env.commit, env.date);
    if (rc == 0 && o.json_path) {
        json_t *j = json_object();
        json_object_set_new(j, "label", json_string(s.label));
        json_object_set_new(j, "title", json_string(s.title));
        json_object_set_new(j, "subtitle", json_string(s.subtitle));
        json_object_set_new(j, "model_filename", json_string(base_name(a.model.path)));
        json_object_set_new(j, "model_path", json_string(a.model.path));
        json_object_set_new(j, "model_type", json_string(info.arch));
        json_object_set_new(j, "model_size", json_integer((json_int_t)info.file_bytes));
        json_object_set_new(j, "model_n_params", json_integer((json_int_t)info.n_params));
        json_object_set_new(j, "params", params_json(&a, n_ctx, tg));
        json_object_set_new(j, "date", json_string(env.date));
        json_object_set_new(j, "command", json_string(env.command));
        json_object_set_new(j, "build", bench_env_build_json(&env));
        json_object_set_new(j, "machine", bench_env_machine_json(&env));
        json_object_set_new(j, "peak_rss_bytes", json_integer((json_int_t)mr_peak_rss_bytes()));
        json_t *rows = json_array();
        for (int i = 0; i < s.n_rows; i++) json_array_append_new(rows, sweep_row_json(&s.rows[i]));
        json_object_set_new(j, "rows", rows);
        if (json_dump_file(j, o.json_path, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) {
            fprintf(stderr, "moerun sweep: %s: cannot write\n", o.json_path);
            rc = 1;
        }
        json_decref(j);
    }
    if (rc == 0 && o.svg_path && write_svg(o.svg_path, &s, 1, s.title)) rc = 1;
    sweep_series_free(&s);
    mr_model_free(m);
out:
    free(o.plot);
    args_free(&a);
    return rc;
}
