/*
 * cmd_ab.c — `moerun ab PLAN.json|PLAN.toml [--out DIR] [--resume]`: A/B
 * evaluation of engine configurations (and external OpenAI-compatible
 * endpoints) over workloads, with repetitions, warm-ups, gates, quality and a
 * report (src/ab/).
 *
 * Every moerun run is a child process: this binary (/proc/self/exe) with the
 * hidden `ab --worker` mode, which loads the model with the config's flags,
 * runs one workload (or the perplexity pass) and prints one JSON line. A
 * crash, a timeout or a bad exit of the child is recorded as that run's
 * error; its peak RSS comes from wait4. Runs go in an interleaved order
 * (src/ab/ab_sched.c) and are appended to DIR/results.jsonl as they finish,
 * so an interrupted evaluation keeps what it measured and --resume continues
 * it (same plan hash required). The report is DIR/report.md, report.html and
 * summary.json; child logs are in DIR/logs/.
 *
 * Exit: 0 done (gates are reported, see --fail-on-gates), 1 error,
 * 2 usage / bad plan, 130 interrupted (resume later).
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ab/ab.h"
#include "args.h"
#include "base/base.h"
#include "bench/bench.h"
#include "commands.h"

#define WORKER_GROUPS (ARGS_MODEL | ARGS_CTX)

/* ---- the worker (child) ------------------------------------------------------------- */
typedef struct {
    const char *workload, *ppl_text, *logits_out, *logits_base;
    int ppl_chunks;
} worker_opts;

static int worker_flag(void *ud, int argc, char **argv, int *i) {
    worker_opts *o = ud;
    const char *f = argv[*i];
    const char **dst = !strcmp(f, "--workload")      ? &o->workload
                       : !strcmp(f, "--ppl")         ? &o->ppl_text
                       : !strcmp(f, "--logits-out")  ? &o->logits_out
                       : !strcmp(f, "--logits-base") ? &o->logits_base
                                                     : NULL;
    if (dst) {
        *dst = args_value(argc, argv, i);
        return *dst ? 1 : -1;
    }
    if (!strcmp(f, "--ppl-chunks")) {
        const char *v = args_value(argc, argv, i);
        return v && args_int(f, v, 1, 1 << 20, &o->ppl_chunks) == 0 ? 1 : -1;
    }
    return 0;
}

/* `moerun ab --worker --workload W.json | --ppl TEXT [...] ENGINE-FLAGS`: one
 * measurement, one JSON line on stdout. Exit 0 ok, 1 error (stderr says). */
static int worker_main(int argc, char **argv) {
    worker_opts o = {0};
    const args_cmd cmd = {"ab --worker", "--workload FILE | --ppl TEXT [engine flags]", NULL, worker_flag, &o};
    mr_args a;
    args_init(&a);
    int rc = args_parse(&a, argc, argv, WORKER_GROUPS, &cmd);
    if (rc >= 0) {
        args_free(&a);
        return rc;
    }
    int ret = 1;
    mr_model *m = NULL;
    json_t *res = NULL;
    ab_workload w = {0};
    char *text = NULL;
    FILE *lo = NULL, *lb = NULL;
    if (!a.model.path) {
        fprintf(stderr, "moerun ab worker: no model (-m)\n");
        goto done;
    }
    if (!o.workload == !o.ppl_text) {
        fprintf(stderr, "moerun ab worker: give --workload or --ppl\n");
        goto done;
    }
    if (o.workload) {
        json_error_t je;
        json_t *wj = json_load_file(o.workload, 0, &je);
        if (!wj || ab_workload_from_json(wj, &w) < 0) {
            fprintf(stderr, "moerun ab worker: %s: %s\n", o.workload, wj ? mr_geterr() : je.text);
            json_decref(wj);
            goto done;
        }
        json_decref(wj);
    } else {
        size_t len;
        text = mr_read_file(o.ppl_text, &len);
        if (!text) {
            fprintf(stderr, "moerun ab worker: %s\n", mr_geterr());
            goto done;
        }
        if (o.logits_out && !(lo = fopen(o.logits_out, "wb"))) {
            fprintf(stderr, "moerun ab worker: cannot write %s: %s\n", o.logits_out, strerror(errno));
            goto done;
        }
        if (o.logits_base && !(lb = fopen(o.logits_base, "rb"))) {
            fprintf(stderr, "moerun ab worker: cannot read %s: %s\n", o.logits_base, strerror(errno));
            goto done;
        }
    }
    double t0 = mr_time_s();
    m = mr_model_load(&a.model);
    if (!m) {
        fprintf(stderr, "moerun ab worker: %s\n", mr_geterr());
        goto done;
    }
    double t_load = mr_time_s() - t0;
    rc = o.workload ? ab_run_workload(m, &a.ctx, &w, &res)
                    : ab_run_perplexity(m, &a.ctx, text, o.ppl_chunks, lo, lb, &res);
    if (rc < 0) {
        fprintf(stderr, "moerun ab worker: %s\n", mr_geterr());
        goto done;
    }
    json_object_set_new(res, "load_s", json_real(t_load));
    json_object_set_new(res, "commit", json_string(mr_git_commit()));
    json_object_set_new(res, "version", json_string(mr_version()));
    json_object_set_new(res, "backend", json_string(mr_have_cuda() && a.model.n_gpu_layers > 0 ? "CUDA" : "CPU"));
    json_object_set_new(res, "peak_rss_self", json_integer((json_int_t)mr_peak_rss_bytes()));
    char *s = json_dumps(res, JSON_COMPACT);
    if (s) {
        printf("%s\n", s);
        fflush(stdout);
        free(s);
        ret = 0;
    }
done:
    if (lo && fclose(lo) != 0) ret = 1;
    if (lb) fclose(lb);
    json_decref(res);
    ab_workload_free(&w);
    free(text);
    mr_model_free(m);
    args_free(&a);
    return ret;
}

/* ---- the driver ----------------------------------------------------------------------- */
typedef struct {
    const char *plan, *out;
    bool resume, report_only, dry_run, fail_on_gates;
} ab_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: moerun ab PLAN.json|PLAN.toml [--out DIR] [--resume] [--report] [--dry-run]\n"
            "\n"
            "A/B evaluation: runs every config x workload x repetition of the plan in an interleaved\n"
            "order (warm-up rounds first), each moerun run in a child process, and writes:\n"
            "  DIR/results.jsonl   one JSON line per run, written as it finishes\n"
            "  DIR/report.md, report.html, summary.json   per workload mean, stddev, 95 %% CI, delta vs\n"
            "                      the baseline with Welch's t-test, memory, quality, gates, recommendation\n"
            "  DIR/logs/           the stderr of every child\n"
            "\n"
            "  --out DIR         output folder (default: ab-PLANNAME next to the current directory)\n"
            "  --resume          continue an interrupted evaluation in DIR (same plan), skipping recorded runs\n"
            "  --report          only rewrite the report from DIR/results.jsonl\n"
            "  --dry-run         print the run order and exit\n"
            "  --fail-on-gates   exit 1 when any config fails a gate\n"
            "\n"
            "Plan (JSON; TOML with [[config]], [[workload]], [quality]):\n"
            "  {\"name\": \"kv types\", \"model\": \"model.gguf\", \"baseline\": \"kv-f16\", \"reps\": 5, \"warmup\": 1,\n"
            "   \"configs\": [{\"name\": \"kv-f16\", \"args\": \"-ctk f16 -ctv f16 -t 8\"},\n"
            "               {\"name\": \"kv-q8\", \"args\": \"-ctk q8_0 -ctv q8_0 -t 8\"},\n"
            "               {\"name\": \"other\", \"url\": \"http://127.0.0.1:8081\", \"model\": \"m\"}],\n"
            "   \"workloads\": [\"short\", \"medium\", \"long\", \"multi-turn\",\n"
            "                 {\"name\": \"mine\", \"file\": \"prompt.txt\", \"n_predict\": 64}],\n"
            "   \"gates\": [\"tg >= 20\", \"pp >= 100\", \"errors == 0\", \"vram <= 117GB\"],\n"
            "   \"quality\": {\"file\": \"wiki.txt\", \"ctx\": 256, \"chunks\": 4, \"kl\": true}}\n"
            "Gate metrics: %s\n"
            "(speeds: the worst workload's mean; \"tg@short >= 20\" for one workload). A prompt file may\n"
            "hold several turns separated by lines \"---\". Engine flags of a config: -t -ngl -ot -ts -sm\n"
            "--n-cpu-moe -cmoe --no-mmap -rtr -c -b -ub -ctk -ctv -fa -m.\n",
            ab_gate_metrics_help());
}

static volatile sig_atomic_t g_sig;
static void on_signal(int s) {
    g_sig = s;
    ab_stop = 1;
}

static int mkdir_p(const char *d) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", d);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0755);
            *p = '/';
        }
    if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
        mr_seterr("cannot create %s: %s", d, strerror(errno));
        return -1;
    }
    return 0;
}

/* Check a moerun config's flags with the worker's parser, so a typo fails
 * before anything runs. 0 / 2 (message printed). */
static int check_config_flags(const ab_config *c) {
    char name[128];
    snprintf(name, sizeof name, "ab (config '%s')", c->name);
    worker_opts wo = {0};
    const args_cmd cmd = {name, "", NULL, worker_flag, &wo};
    char **av = calloc((size_t)c->argc + 2, sizeof *av);
    if (!av) return 1;
    av[0] = "ab";
    for (int i = 0; i < c->argc; i++) av[i + 1] = c->argv[i];
    /* --help inside args would print usage; treat as an error */
    for (int i = 0; i < c->argc; i++)
        if (!strcmp(c->argv[i], "-h") || !strcmp(c->argv[i], "--help")) {
            fprintf(stderr, "moerun ab: config '%s': --help is not an engine flag\n", c->name);
            free(av);
            return 2;
        }
    mr_args a;
    args_init(&a);
    int rc = args_parse(&a, c->argc + 1, av, WORKER_GROUPS, &cmd);
    args_free(&a);
    free(av);
    if (wo.workload || wo.ppl_text) {
        fprintf(stderr, "moerun ab: config '%s': --workload/--ppl are internal flags\n", c->name);
        return 2;
    }
    return rc == -1 ? 0 : 2;
}

typedef struct {
    const ab_plan *p;
    const char *out, *exe;
    FILE *f; /* results.jsonl, appending */
    int seq;
    char wfiles[64][4096];
} ab_ctx;

static const char *sig_name(int s) {
    switch (s) {
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGKILL: return "SIGKILL (out of memory?)";
    case SIGTERM: return "SIGTERM";
    default: return "a signal";
    }
}

/* Child argv for a moerun config: exe ab --worker EXTRA... [-m plan model] config args [TAIL...]. */
static char **child_argv(const ab_ctx *x, const ab_config *c, char **extra, int n_extra, char **tail, int n_tail) {
    int n = 0;
    char **av = calloc((size_t)(c->argc + n_extra + n_tail + 8), sizeof *av);
    if (!av) return NULL;
    av[n++] = (char *)x->exe;
    av[n++] = "ab";
    av[n++] = "--worker";
    for (int i = 0; i < n_extra; i++) av[n++] = extra[i];
    if (x->p->model) {
        av[n++] = "-m";
        av[n++] = x->p->model;
    }
    for (int i = 0; i < c->argc; i++) av[n++] = c->argv[i];
    for (int i = 0; i < n_tail; i++) av[n++] = tail[i];
    av[n] = NULL;
    return av;
}

static json_t *argv_json(char **av) {
    json_t *a = json_array();
    for (int i = 1; av[i]; i++) json_array_append_new(a, json_string(av[i]));
    return a;
}

/* Run a child and merge its JSON line into rec (ok/error set). */
static void run_child(const ab_ctx *x, char **av, const char *key, json_t *rec) {
    char log[4096], safe[256];
    snprintf(safe, sizeof safe, "%s", key);
    for (char *q = safe; *q; q++)
        if (*q == '|' || *q == '/' || *q == ' ') *q = '_';
    snprintf(log, sizeof log, "%s/logs/%s.log", x->out, safe);
    unlink(log);
    ab_child_result cr;
    json_object_set_new(rec, "argv", argv_json(av));
    if (ab_child_run(av, log, x->p->timeout_s, &cr) < 0) {
        json_object_set_new(rec, "ok", json_false());
        json_object_set_new(rec, "error", json_string(mr_geterr()));
        return;
    }
    json_object_set_new(rec, "wall_s", json_real(cr.wall_s));
    json_object_set_new(rec, "peak_rss", json_integer((json_int_t)cr.peak_rss));
    json_object_set_new(rec, "vram", json_null()); /* the worker's line sets it when layers ran on a device */
    char err[800] = "";
    json_t *o = NULL;
    if (cr.timed_out) snprintf(err, sizeof err, "timed out after %.0f s (timeout_s)", x->p->timeout_s);
    else if (cr.signal) snprintf(err, sizeof err, "crashed: killed by %s (%d)%s%s", sig_name(cr.signal), cr.signal,
                                 cr.err_tail[0] ? ": " : "", cr.err_tail);
    else if (cr.exit_code != 0)
        snprintf(err, sizeof err, "exit code %d: %s", cr.exit_code, cr.err_tail[0] ? cr.err_tail : "(no message)");
    else {
        /* the last line of stdout is the result */
        char *s = cr.out, *last = NULL;
        for (char *l = strtok(s, "\n"); l; l = strtok(NULL, "\n")) last = l;
        o = last ? json_loads(last, 0, NULL) : NULL;
        if (!json_is_object(o)) {
            json_decref(o);
            o = NULL;
            snprintf(err, sizeof err, "the worker printed no result line");
        }
    }
    if (o) {
        json_object_update(rec, o);
        json_decref(o);
        json_object_set_new(rec, "ok", json_true());
        json_object_set_new(rec, "error", json_null());
    } else {
        json_object_set_new(rec, "ok", json_false());
        json_object_set_new(rec, "error", json_string(err));
    }
    json_object_set_new(rec, "log", json_string(log));
    ab_child_result_free(&cr);
}

/* One workload on an endpoint config, turn by turn over HTTP with streaming. */
static void run_endpoint(const ab_ctx *x, const ab_config *c, const ab_workload *w, json_t *rec) {
    json_t *msgs = json_array();
    if (w->system) json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", w->system));
    double t_pp = 0, t_tg = 0, ttft = NAN;
    long long n_pp = 0, n_tg = 0;
    char err[512] = "";
    for (int t = 0; t < w->n_turns && !err[0]; t++) {
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", w->turns[t]));
        json_t *body = json_pack("{s:s,s:O,s:i,s:b,s:{s:b},s:i,s:b}", "model", c->model ? c->model : "default",
                                 "messages", msgs, "max_tokens", w->n_predict, "stream", 1, "stream_options",
                                 "include_usage", 1, "temperature", 0, "ignore_eos", 1);
        char *bs = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        ab_http_result r = {.want_content = true};
        int rc = ab_http_post(c->url, "/v1/chat/completions", bs ? bs : "{}", true, x->p->timeout_s, &r);
        free(bs);
        if (rc < 0 || r.status != 200 || r.error[0]) {
            snprintf(err, sizeof err, "turn %d: %s", t + 1, r.error[0] ? r.error : "request failed");
        } else {
            if (t == 0) ttft = r.ttft_s * 1e3;
            t_pp += r.ttft_s;
            n_pp += r.n_prompt;
            if (r.n_gen > 1 && r.total_s > r.ttft_s) {
                t_tg += r.total_s - r.ttft_s;
                n_tg += r.n_gen - 1;
            }
            json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "assistant", "content",
                                                  r.content ? r.content : ""));
        }
        free(r.content);
    }
    json_decref(msgs);
    json_object_set_new(rec, "vram", json_null());
    json_object_set_new(rec, "peak_rss", json_null());
    if (err[0]) {
        json_object_set_new(rec, "ok", json_false());
        json_object_set_new(rec, "error", json_string(err));
        return;
    }
    json_object_set_new(rec, "ok", json_true());
    json_object_set_new(rec, "error", json_null());
    json_object_set_new(rec, "pp_tps", json_real(t_pp > 0 ? n_pp / t_pp : 0));
    json_object_set_new(rec, "tg_tps", json_real(t_tg > 0 ? n_tg / t_tg : 0));
    json_object_set_new(rec, "ttft_ms", json_real(ttft));
    json_object_set_new(rec, "n_prompt", json_integer(n_pp));
    json_object_set_new(rec, "n_gen", json_integer(n_tg));
    json_object_set_new(rec, "note", json_string("endpoint: pp = prompt tokens / time to first token"));
}

static json_t *new_record(const ab_ctx *x, const char *key, const ab_config *c, const char *workload, int rep,
                          bool warm) {
    char ts[40];
    bench_iso8601_now(ts, sizeof ts);
    char h[24];
    snprintf(h, sizeof h, "%016llx", (unsigned long long)x->p->hash);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:b,s:i,s:s,s:s?,s:s?}", "type", "run", "plan_hash", h, "key", key,
                     "config", c->name, "workload", workload, "rep", rep, "warmup", warm, "seq", x->seq, "time", ts,
                     "flags", c->args, "url", c->url);
}

static int append(ab_ctx *x, json_t *rec) {
    char *s = json_dumps(rec, JSON_COMPACT);
    if (!s) return -1;
    int ok = fprintf(x->f, "%s\n", s) > 0 && fflush(x->f) == 0;
    fsync(fileno(x->f));
    free(s);
    if (!ok) {
        mr_seterr("writing the results file failed: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void say_run(int i, int n, const json_t *rec) {
    const char *k = json_string_value(json_object_get(rec, "key"));
    if (json_is_true(json_object_get(rec, "ok"))) {
        double tg = json_number_value(json_object_get(rec, "tg_tps")), pp = json_number_value(json_object_get(rec, "pp_tps"));
        json_t *ppl = json_object_get(rec, "ppl");
        json_t *kl = json_object_get(rec, "kl");
        if (ppl && kl)
            fprintf(stderr, "moerun ab: [%d/%d] %s: PPL %.4f, KL %.5f\n", i, n, k, json_number_value(ppl),
                    json_number_value(kl));
        else if (ppl)
            fprintf(stderr, "moerun ab: [%d/%d] %s: PPL %.4f\n", i, n, k, json_number_value(ppl));
        else
            fprintf(stderr, "moerun ab: [%d/%d] %s: pp %.1f t/s, tg %.1f t/s, ttft %.1f ms\n", i, n, k, pp, tg,
                    json_number_value(json_object_get(rec, "ttft_ms")));
    } else
        fprintf(stderr, "moerun ab: [%d/%d] %s: ERROR %s\n", i, n, k, json_string_value(json_object_get(rec, "error")));
}

static int parse_opts(ab_opts *o, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--out") || !strcmp(a, "-o")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moerun ab: %s needs a value (see moerun ab --help)\n", a);
                return 2;
            }
            o->out = argv[++i];
        } else if (!strcmp(a, "--resume")) o->resume = true;
        else if (!strcmp(a, "--report")) o->report_only = true;
        else if (!strcmp(a, "--dry-run")) o->dry_run = true;
        else if (!strcmp(a, "--fail-on-gates")) o->fail_on_gates = true;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "moerun ab: unknown option '%s' (see moerun ab --help)\n", a);
            return 2;
        } else if (!o->plan) o->plan = a;
        else {
            fprintf(stderr, "moerun ab: more than one plan given ('%s' and '%s')\n", o->plan, a);
            return 2;
        }
    }
    if (!o->plan) {
        fprintf(stderr, "moerun ab: no plan: give PLAN.json or PLAN.toml (see moerun ab --help)\n");
        return 2;
    }
    return -1;
}

/* Header line of a new results file. */
static int write_header(ab_ctx *x, const json_t *env) {
    char h[24];
    snprintf(h, sizeof h, "%016llx", (unsigned long long)x->p->hash);
    json_t *hd = json_pack("{s:s,s:s,s:O,s:O}", "type", "header", "plan_hash", h, "plan", x->p->json, "env", env);
    int rc = hd ? append(x, hd) : -1;
    json_decref(hd);
    return rc;
}

int cmd_ab(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "--worker")) return worker_main(argc - 1, argv + 1);
    ab_opts o = {0};
    int rc = parse_opts(&o, argc, argv);
    if (rc >= 0) return rc;
    ab_plan p;
    if (ab_plan_load(o.plan, &p) < 0) {
        fprintf(stderr, "moerun ab: %s\n", mr_geterr());
        return 2;
    }
    int ret = 1;
    ab_results prev = {0};
    ab_slot *sched = NULL;
    json_t *env = NULL;
    ab_ctx x = {.p = &p};
    char out_def[512], exe[4096], path[4096];
    if (!o.out) {
        const char *b = strrchr(o.plan, '/');
        b = b ? b + 1 : o.plan;
        snprintf(out_def, sizeof out_def, "ab-%.*s", (int)strcspn(b, "."), b);
        o.out = out_def;
    }
    x.out = o.out;
    for (int c = 0; c < p.n_configs; c++) {
        if (p.configs[c].url) {
            if (!ab_http_available()) {
                fprintf(stderr, "moerun ab: config '%s' is an endpoint, but this build has no HTTP client "
                                "(install libcurl4-openssl-dev and rebuild)\n", p.configs[c].name);
                ret = 2;
                goto done;
            }
        } else if (check_config_flags(&p.configs[c]) != 0) {
            ret = 2;
            goto done;
        }
    }
    int n_sched = 0;
    sched = ab_schedule(p.n_configs, p.n_workloads, p.reps, p.warmup, &n_sched);
    if (!sched) {
        fprintf(stderr, "moerun ab: %s\n", mr_geterr());
        goto done;
    }
    if (o.dry_run) {
        char key[256];
        for (int i = 0; i < n_sched; i++) {
            ab_slot_key(&p, &sched[i], key, sizeof key);
            printf("%d\t%s\n", i + 1, key);
        }
        if (p.ppl_file)
            for (int c = 0; c < p.n_configs; c++)
                if (!p.configs[c].url) printf("quality\t%s|_quality|0\n", p.configs[c].name);
        ret = 0;
        goto done;
    }
    bench_env e;
    bench_env_fill(&e);
    bench_env_set_command(&e, "moerun", argc, argv);
    env = json_pack("{s:o,s:o}", "build", bench_env_build_json(&e), "machine", bench_env_machine_json(&e));
    snprintf(path, sizeof path, "%s/results.jsonl", o.out);
    if (o.report_only) {
        if (ab_results_load(path, &prev) < 0) {
            fprintf(stderr, "moerun ab: %s\n", mr_geterr());
            goto done;
        }
        goto report;
    }
    if (mkdir_p(o.out) < 0) {
        fprintf(stderr, "moerun ab: %s\n", mr_geterr());
        goto done;
    }
    snprintf(exe, sizeof exe, "%s/logs", o.out);
    mkdir_p(exe);
    snprintf(exe, sizeof exe, "%s/workloads", o.out);
    mkdir_p(exe);
    if (ab_self_exe(exe, sizeof exe) < 0) {
        fprintf(stderr, "moerun ab: %s\n", mr_geterr());
        goto done;
    }
    x.exe = exe;
    char hash[24];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)p.hash);
    if (access(path, F_OK) == 0) {
        if (!o.resume) {
            fprintf(stderr, "moerun ab: %s exists: continue it with --resume, or choose another --out\n", path);
            ret = 2;
            goto done;
        }
        if (ab_results_load(path, &prev) < 0) {
            fprintf(stderr, "moerun ab: %s\n", mr_geterr());
            goto done;
        }
        if (prev.plan_hash[0] && strcmp(prev.plan_hash, hash) != 0) {
            fprintf(stderr,
                    "moerun ab: %s was written by a different plan (hash %s, this plan %s): it cannot be resumed; "
                    "use another --out\n",
                    path, prev.plan_hash, hash);
            ret = 2;
            goto done;
        }
        if (truncate(path, prev.good_bytes) < 0) {
            fprintf(stderr, "moerun ab: cannot truncate %s: %s\n", path, strerror(errno));
            goto done;
        }
        x.f = fopen(path, "ab");
        if (x.f && !prev.plan_hash[0] && write_header(&x, env) < 0) goto io_err;
        fprintf(stderr, "moerun ab: resuming %s: %d run(s) already recorded\n", path, prev.n);
    } else {
        if (o.resume) fprintf(stderr, "moerun ab: nothing to resume in %s: starting\n", o.out);
        x.f = fopen(path, "wb");
        if (x.f && write_header(&x, env) < 0) goto io_err;
    }
    if (!x.f) {
        fprintf(stderr, "moerun ab: cannot write %s: %s\n", path, strerror(errno));
        goto done;
    }
    /* workload files for the children */
    for (int w = 0; w < p.n_workloads; w++) {
        snprintf(x.wfiles[w], sizeof x.wfiles[w], "%s/workloads/%d.json", o.out, w);
        json_t *wj = ab_workload_json(&p.workloads[w]);
        if (!wj || json_dump_file(wj, x.wfiles[w], JSON_INDENT(1)) < 0) {
            json_decref(wj);
            fprintf(stderr, "moerun ab: cannot write %s\n", x.wfiles[w]);
            goto done;
        }
        json_decref(wj);
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    x.seq = prev.n;
    int n_total = n_sched, done_n = 0;
    int n_quality = 0;
    if (p.ppl_file)
        for (int c = 0; c < p.n_configs; c++) n_quality += !p.configs[c].url;
    n_total += n_quality;
    fprintf(stderr, "moerun ab: %d config(s) x %d workload(s) x (%d + %d warm-up) = %d runs%s -> %s\n", p.n_configs,
            p.n_workloads, p.reps, p.warmup, n_sched, n_quality ? " + quality" : "", o.out);
    for (int i = 0; i < n_sched && !ab_stop; i++) {
        char key[256];
        ab_slot_key(&p, &sched[i], key, sizeof key);
        done_n++;
        if (ab_results_has(&prev, key)) continue;
        const ab_config *c = &p.configs[sched[i].config];
        const ab_workload *w = &p.workloads[sched[i].workload];
        bool warm = sched[i].rep < 0;
        json_t *rec = new_record(&x, key, c, w->name, warm ? -sched[i].rep - 1 : sched[i].rep, warm);
        if (!rec) goto done;
        if (c->url) {
            double t0 = mr_time_s();
            run_endpoint(&x, c, w, rec);
            json_object_set_new(rec, "wall_s", json_real(mr_time_s() - t0));
        } else {
            char *extra[2] = {"--workload", x.wfiles[sched[i].workload]};
            char **av = child_argv(&x, c, extra, 2, NULL, 0);
            if (!av) {
                json_decref(rec);
                goto done;
            }
            run_child(&x, av, key, rec);
            free(av);
        }
        if (ab_stop) { /* interrupted mid-run: not a measurement */
            json_decref(rec);
            break;
        }
        int arc = append(&x, rec);
        x.seq++;
        say_run(done_n, n_total, rec);
        json_decref(rec);
        if (arc < 0) goto io_err;
    }
    /* quality: baseline first (its log-probabilities are the KL reference) */
    if (p.ppl_file && !ab_stop) {
        char lb[4096];
        snprintf(lb, sizeof lb, "%s/logits-baseline.f32", o.out);
        for (int k = 0; k < p.n_configs && !ab_stop; k++) {
            int ci = k == 0 ? p.baseline : (k <= p.baseline ? k - 1 : k);
            const ab_config *c = &p.configs[ci];
            if (c->url) continue;
            char key[256];
            snprintf(key, sizeof key, "%s|_quality|0", c->name);
            done_n++;
            if (ab_results_has(&prev, key)) continue;
            bool base = ci == p.baseline;
            char chunks[16], ctxs[16];
            snprintf(chunks, sizeof chunks, "%d", p.ppl_chunks);
            snprintf(ctxs, sizeof ctxs, "%d", p.ppl_ctx);
            char *extra[6] = {"--ppl", p.ppl_file, "--ppl-chunks", chunks, NULL, NULL};
            int ne = 4;
            if (p.kl && base) extra[ne++] = "--logits-out", extra[ne++] = lb;
            else if (p.kl && access(lb, R_OK) == 0) extra[ne++] = "--logits-base", extra[ne++] = lb;
            char *tail[2] = {"-c", ctxs};
            char **av = child_argv(&x, c, extra, ne, tail, 2);
            json_t *rec = av ? new_record(&x, key, c, "_quality", 0, false) : NULL;
            if (!rec) {
                free(av);
                goto done;
            }
            run_child(&x, av, key, rec);
            free(av);
            if (ab_stop) {
                json_decref(rec);
                break;
            }
            int arc = append(&x, rec);
            x.seq++;
            say_run(done_n, n_total, rec);
            json_decref(rec);
            if (arc < 0) goto io_err;
        }
        if (!ab_stop && p.kl) unlink(lb); /* large; only needed while the quality runs go */
    }
    fclose(x.f);
    x.f = NULL;
    if (ab_stop) {
        fprintf(stderr, "moerun ab: interrupted (%s): what was measured is in %s; continue with --resume\n",
                g_sig == SIGINT ? "SIGINT" : "SIGTERM", path);
        ret = 130;
        goto done;
    }
    ab_results_free(&prev);
    if (ab_results_load(path, &prev) < 0) {
        fprintf(stderr, "moerun ab: %s\n", mr_geterr());
        goto done;
    }
report:;
    ab_report_info info;
    if (ab_report_write(&p, &prev, o.out, env, &info) < 0) {
        fprintf(stderr, "moerun ab: report: %s\n", mr_geterr());
        goto done;
    }
    printf("%s\n", info.recommendation);
    printf("report: %s/report.md, %s/report.html (%d run records%s)\n", o.out, o.out, prev.n,
           info.n_gates_failed ? ", some gates FAILED" : "");
    ret = o.fail_on_gates && info.n_gates_failed ? 1 : 0;
    goto done;
io_err:
    fprintf(stderr, "moerun ab: %s\n", mr_geterr());
done:
    if (x.f) fclose(x.f);
    free(sched);
    json_decref(env);
    ab_results_free(&prev);
    ab_plan_free(&p);
    return ret;
}
