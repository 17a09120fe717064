/*
 * fuzz_ab_plan.c — libFuzzer target for the `moerun ab` / `moerun soak` input
 * parsers: the hand-written TOML subset (ab_toml_parse), plan validation
 * (ab_plan_from_json, from TOML or from JSON), gate expressions
 * (ab_gate_parse), shell-style splitting of a config's args (ab_split_args)
 * and soak durations (soak_parse_duration).
 *
 * The first input byte selects the parser (low 2 bits); the rest is the text
 * (NUL-terminated copy; an embedded NUL ends it, as for the C-string APIs).
 * Checks: no crash, leak or hang; an error always comes with a message; a
 * parsed TOML document is a JSON object that dumps and reloads to an equal
 * value; an accepted plan holds fields within their documented ranges; an
 * accepted gate has a known metric, one of the six operators and a finite
 * value; split words never hold NUL and argv is NULL-terminated.
 *
 * Plans may name files ("file" of a workload or of quality, "model"): so the
 * fuzzer never reads arbitrary paths (/dev/zero, FIFOs), those strings are
 * rewritten to one of three small files in /tmp/moerun-fuzz-ab-UID/.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <math.h>

#include "ab/ab.h"
#include "base/base.h"

static volatile uint64_t sink;
static char g_dir[64];
static const char *k_files[] = {"a.txt", "b.txt", "c.txt"};

static void write_file(const char *name, const char *text) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

/* One folder per user, reused by every run (and by parallel jobs: they write
 * the same contents), so a crashing run leaves nothing new behind. */
static void setup(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/moerun-fuzz-ab-%u", (unsigned)getuid());
    if (mkdir(g_dir, 0700) != 0 && errno != EEXIST) abort();
    write_file("a.txt", "first turn\n---\nsecond turn\n---\n\n---\nthird");
    write_file("b.txt", "");
    write_file("c.txt", "The quick brown fox jumps over the lazy dog.\n");
}

static void error_set(void) {
    const char *e = mr_geterr();
    if (!e || !e[0]) abort(); /* failure without a message */
}

/* Rewrite a file-naming string field of o to one of the private files. */
static void remap_file(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) return;
    const char *s = json_string_value(v);
    size_t k = ab_fnv1a(s, strlen(s), 0) % MR_ARRAY_LEN(k_files);
    json_object_set_new(o, key, json_string(k_files[k]));
}

static void sandbox_paths(json_t *root) {
    if (!json_is_object(root)) return;
    json_t *m = json_object_get(root, "model");
    if (json_is_string(m) && strchr(json_string_value(m), '/')) json_object_set_new(root, "model", json_string("m.gguf"));
    const char *wkeys[] = {"workloads", "workload"};
    for (int w = 0; w < 2; w++) {
        json_t *wl = json_object_get(root, wkeys[w]);
        size_t i;
        json_t *v;
        if (json_is_object(wl)) remap_file(wl, "file");
        json_array_foreach(wl, i, v) if (json_is_object(v)) remap_file(v, "file");
    }
    json_t *q = json_object_get(root, "quality");
    if (json_is_object(q)) remap_file(q, "file");
}

static void check_plan(json_t *root) {
    sandbox_paths(root);
    ab_plan p;
    mr_clearerr();
    if (ab_plan_from_json(root, g_dir, &p) < 0) {
        error_set();
        return;
    }
    if (p.n_configs < 1 || p.n_configs > 64 || !p.configs) abort();
    if (p.n_workloads < 1 || p.n_workloads > 64 || !p.workloads) abort();
    if (p.reps < 1 || p.reps > 1000 || p.warmup < 0 || p.warmup > 100) abort();
    if (p.baseline < 0 || p.baseline >= p.n_configs) abort();
    if (!(p.timeout_s > 0 && p.timeout_s <= 86400)) abort();
    for (int i = 0; i < p.n_configs; i++) {
        const ab_config *c = &p.configs[i];
        if (!c->name || !c->name[0] || strlen(c->name) > 63 || strpbrk(c->name, "|/\n")) abort();
        if (!!c->url == !!c->args) abort(); /* exactly one of args / url */
        if (c->args) {
            if (!c->argv || c->argv[c->argc]) abort();
            for (int k = 0; k < c->argc; k++) sink += strlen(c->argv[k]);
        }
        if (ab_plan_find_config(&p, c->name) != i) abort();
    }
    for (int i = 0; i < p.n_workloads; i++) {
        const ab_workload *w = &p.workloads[i];
        if (!w->name || strpbrk(w->name, "|/\n") || w->n_turns < 1 || w->n_turns > 256) abort();
        if (w->n_predict < 1 || w->n_predict > (1 << 20)) abort();
        for (int k = 0; k < w->n_turns; k++)
            if (!w->turns[k]) abort();
        if (ab_plan_find_workload(&p, w->name) != i) abort();
        /* the worker's JSON round trip gives the same workload */
        json_t *j = ab_workload_json(w);
        if (!j) abort();
        ab_workload w2;
        if (ab_workload_from_json(j, &w2) < 0) abort();
        if (strcmp(w2.name, w->name) || w2.n_turns != w->n_turns || w2.n_predict != w->n_predict ||
            w2.chat != w->chat || !w2.system != !w->system)
            abort();
        for (int k = 0; k < w->n_turns; k++)
            if (strcmp(w2.turns[k], w->turns[k])) abort();
        ab_workload_free(&w2);
        json_decref(j);
    }
    for (int i = 0; i < p.n_gates; i++) {
        const ab_gate *g = &p.gates[i];
        if (!g->text || !ab_gate_metric_known(g->metric) || !isfinite(g->value)) abort();
        if (g->workload[0] && ab_plan_find_workload(&p, g->workload) < 0) abort();
    }
    if (p.ppl_file && (p.ppl_ctx < 8 || p.ppl_chunks < 1)) abort();
    /* the run schedule for this plan */
    int n = 0;
    ab_slot *s = ab_schedule(p.n_configs, p.n_workloads, p.reps > 4 ? 4 : p.reps, p.warmup > 2 ? 2 : p.warmup, &n);
    if (s) {
        char key[256];
        for (int i = 0; i < n; i++) {
            if (s[i].config < 0 || s[i].config >= p.n_configs || s[i].workload < 0 || s[i].workload >= p.n_workloads)
                abort();
            ab_slot_key(&p, &s[i], key, sizeof key);
            sink += (uint8_t)key[0];
        }
        free(s);
    }
    ab_plan_free(&p);
}

static void fuzz_toml(const char *text) {
    mr_clearerr();
    json_t *j = ab_toml_parse(text, "fuzz.toml");
    if (!j) {
        error_set();
        return;
    }
    if (!json_is_object(j)) abort();
    /* the document is valid JSON: dump and reload gives an equal value */
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!s) abort();
    json_error_t je;
    json_t *back = json_loads(s, 0, &je);
    if (!back || !json_equal(back, j)) abort();
    json_decref(back);
    free(s);
    check_plan(j);
    json_decref(j);
}

static void fuzz_json(const char *text, size_t len) {
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    if (!j) return;
    check_plan(j);
    json_decref(j);
}

static void fuzz_gate(const char *text) {
    ab_gate g;
    mr_clearerr();
    if (ab_gate_parse(text, &g) < 0) {
        error_set();
        ab_gate_free(&g);
        return;
    }
    static const char *ops[] = {">=", "<=", "==", "!=", ">", "<"};
    bool op_ok = false;
    for (size_t i = 0; i < MR_ARRAY_LEN(ops); i++) op_ok |= !strcmp(g.op, ops[i]);
    if (!op_ok || !ab_gate_metric_known(g.metric) || !isfinite(g.value) || !g.text || strcmp(g.text, text))
        abort();
    /* exactly one of <, ==, > holds for a finite value (per the operator's meaning) */
    bool lt = ab_gate_check(&(ab_gate){.op = "<", .value = g.value}, g.value - 1);
    if (!lt && fabs(g.value) < 1e15) abort();
    if (ab_gate_check(&g, NAN)) abort();
    sink += ab_gate_check(&g, g.value) + ab_gate_higher_better(g.metric);
    char buf[64];
    ab_gate_fmt(g.metric, g.value, buf, sizeof buf);
    sink += (uint8_t)buf[0];
    ab_gate_free(&g);
}

static void fuzz_split(const char *text) {
    char **argv = NULL;
    int argc = -1;
    mr_clearerr();
    if (ab_split_args(text, &argv, &argc) < 0) {
        error_set();
    } else {
        if (!argv || argc < 0 || argv[argc]) abort();
        for (int i = 0; i < argc; i++) sink += strlen(argv[i]);
        ab_free_argv(argv, argc);
    }
    double d = 0;
    mr_clearerr();
    if (soak_parse_duration(text, 7 * 86400, &d) < 0) error_set();
    else if (!(d > 0 && d <= 7 * 86400)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_dir[0]) setup();
    if (size == 0) return 0;
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    switch (data[0] & 3) {
    case 0: fuzz_toml(text); break;
    case 1: fuzz_json(text, size - 1); break;
    case 2: fuzz_gate(text); break;
    default: fuzz_split(text); break;
    }
    free(text);
    return 0;
}
