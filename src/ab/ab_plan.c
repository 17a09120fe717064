/*
 * ab_plan.c — `moerun ab` plans: loading (JSON, or the TOML subset through
 * ab_toml.c), validation with messages naming the file and field, the
 * built-in workloads (short, medium, long, multi-turn), shell-style splitting
 * of a config's flags, and the plan hash that --resume checks.
 *
 * Plan (JSON; TOML the same with [[config]] / [[workload]] / [quality]):
 *   name        string, optional
 *   model       default -m for moerun configs
 *   baseline    config name (default: the first config)
 *   reps        repetitions per config x workload (default 5, 1..1000)
 *   warmup      warm-up rounds, not counted (default 1, 0..100)
 *   n_predict   default tokens to generate per turn (overrides the built-ins)
 *   timeout_s   per run (default 600)
 *   configs     [{name, args} | {name, url, model?}]
 *   workloads   ["short", ...] or [{name, builtin | prompt | file | turns, n_predict, system, chat}]
 *   gates       ["tg >= 20", "errors == 0", ...]
 *   quality     {file, ctx (default 256), chunks (default 4), kl (default true)}
 */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ab/ab.h"
#include "base/base.h"

uint64_t ab_fnv1a(const void *p, size_t n, uint64_t h) {
    if (!h) h = 0xcbf29ce484222325ull;
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void ab_free_argv(char **argv, int argc) {
    if (!argv) return;
    for (int i = 0; i < argc; i++) free(argv[i]);
    free(argv);
}

/* Shell-like word splitting: blanks separate words; '...' is literal; "..."
 * allows \" and \\; a backslash outside quotes escapes the next character. */
int ab_split_args(const char *s, char ***argv_out, int *argc_out) {
    char **argv = mr_calloc(1, sizeof *argv);
    int argc = 0;
    if (!argv) return -1;
    const char *p = s ? s : "";
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        ab_buf w = {0};
        ab_puts(&w, "");
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
            if (*p == '\'') {
                const char *e = strchr(p + 1, '\'');
                if (!e) goto unbalanced;
                ab_putn(&w, p + 1, (size_t)(e - p - 1));
                p = e + 1;
            } else if (*p == '"') {
                p++;
                while (*p && *p != '"') {
                    if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) p++;
                    ab_putn(&w, p, 1);
                    p++;
                }
                if (*p != '"') goto unbalanced;
                p++;
            } else if (*p == '\\' && p[1]) {
                ab_putn(&w, p + 1, 1);
                p += 2;
            } else {
                ab_putn(&w, p, 1);
                p++;
            }
            continue;
        unbalanced:
            ab_buf_free(&w);
            ab_free_argv(argv, argc);
            mr_seterr("unbalanced quote in \"%s\"", s);
            return -1;
        }
        char **a = mr_realloc(argv, sizeof *a * (size_t)(argc + 2));
        char *word = ab_buf_take(&w);
        if (!a || !word) {
            free(word);
            ab_free_argv(a ? a : argv, argc);
            return -1;
        }
        argv = a;
        argv[argc++] = word;
        argv[argc] = NULL;
    }
    *argv_out = argv;
    *argc_out = argc;
    return 0;
}

/* ---- built-in workloads ----------------------------------------------------------------- */
static const char *k_sentences[] = {
    "The harbor town woke slowly, fishing boats drifting back with the tide while gulls argued over the nets.",
    "Engineers measured the bridge every spring, noting how the steel expanded in the summer heat.",
    "A mixture-of-experts model routes each token to a few specialised feed-forward networks.",
    "She wrote the results in a notebook, then checked them twice against the original measurements.",
    "Rain arrived in the afternoon, turning the dusty road into a ribbon of shining mud.",
    "The library kept its oldest maps in a cool room, each one wrapped in acid-free paper.",
    "Memory bandwidth, not arithmetic, limits how fast a large model can generate text on a CPU.",
    "In the market square a violinist played while children chased pigeons between the stalls.",
};

/* n sentences cycling through the list, as one paragraph. */
static char *filler(int n) {
    ab_buf b = {0};
    for (int i = 0; i < n; i++) {
        ab_puts(&b, k_sentences[i % (int)MR_ARRAY_LEN(k_sentences)]);
        ab_puts(&b, i % 6 == 5 ? "\n\n" : " ");
    }
    return ab_buf_take(&b);
}

static int set_turns(ab_workload *w, int n, char **turns) {
    w->turns = mr_calloc((size_t)n, sizeof *w->turns);
    if (!w->turns) return -1;
    for (int i = 0; i < n; i++) w->turns[i] = turns[i];
    w->n_turns = n;
    return 0;
}

int ab_builtin_workload(const char *name, ab_workload *w) {
    memset(w, 0, sizeof *w);
    w->chat = true;
    char *t[4] = {0};
    int n = 1;
    if (!strcmp(name, "short")) {
        t[0] = mr_strdup("Write one sentence about the sea.");
        w->n_predict = 64;
    } else if (!strcmp(name, "medium")) {
        char *f = filler(12);
        ab_buf b = {0};
        ab_printf(&b, "Summarise the following text in three bullet points.\n\n%s", f ? f : "");
        free(f);
        t[0] = ab_buf_take(&b);
        w->n_predict = 128;
    } else if (!strcmp(name, "long")) {
        char *f = filler(80);
        ab_buf b = {0};
        ab_printf(&b, "Read the notes below and list the main topics they cover.\n\n%s", f ? f : "");
        free(f);
        t[0] = ab_buf_take(&b);
        w->n_predict = 128;
    } else if (!strcmp(name, "multi-turn")) {
        t[0] = mr_strdup("I am planning a three-day walking trip along a coast. What should I pack?");
        t[1] = mr_strdup("Good. The forecast says rain on the second day; what changes?");
        t[2] = mr_strdup("Suggest a short daily schedule, starting at eight in the morning.");
        t[3] = mr_strdup("Now give me the whole plan again as a compact checklist.");
        n = 4;
        w->n_predict = 64;
    } else {
        mr_seterr("unknown built-in workload '%s' (short, medium, long, multi-turn)", name);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (!t[i]) {
            for (int j = 0; j < n; j++) free(t[j]);
            return -1;
        }
    w->name = mr_strdup(name);
    if (!w->name || set_turns(w, n, t) < 0) {
        for (int j = 0; j < n; j++) free(t[j]);
        free(w->name);
        return -1;
    }
    return 0;
}

void ab_workload_free(ab_workload *w) {
    if (!w) return;
    free(w->name);
    for (int i = 0; i < w->n_turns; i++) free(w->turns[i]);
    free(w->turns);
    free(w->system);
    memset(w, 0, sizeof *w);
}

json_t *ab_workload_json(const ab_workload *w) {
    json_t *turns = json_array();
    for (int i = 0; i < w->n_turns; i++) json_array_append_new(turns, json_string(w->turns[i]));
    json_t *o = json_pack("{s:s,s:o,s:i,s:b}", "name", w->name, "turns", turns, "n_predict", w->n_predict, "chat",
                          w->chat);
    if (o && w->system) json_object_set_new(o, "system", json_string(w->system));
    return o;
}

int ab_workload_from_json(const json_t *o, ab_workload *w) {
    memset(w, 0, sizeof *w);
    json_t *turns = json_object_get(o, "turns");
    const char *name = json_string_value(json_object_get(o, "name"));
    if (!name || !json_is_array(turns) || json_array_size(turns) == 0) {
        mr_seterr("workload JSON needs \"name\" and a non-empty \"turns\" array");
        return -1;
    }
    w->name = mr_strdup(name);
    w->n_turns = (int)json_array_size(turns);
    w->turns = mr_calloc((size_t)w->n_turns, sizeof *w->turns);
    if (!w->name || !w->turns) goto fail;
    for (int i = 0; i < w->n_turns; i++) {
        const char *s = json_string_value(json_array_get(turns, (size_t)i));
        if (!s) {
            mr_seterr("workload '%s': turns[%d] is not a string", name, i);
            goto fail;
        }
        if (!(w->turns[i] = mr_strdup(s))) goto fail;
    }
    json_t *np = json_object_get(o, "n_predict");
    w->n_predict = json_is_integer(np) ? (int)json_integer_value(np) : 64;
    w->chat = !json_is_false(json_object_get(o, "chat"));
    const char *sys = json_string_value(json_object_get(o, "system"));
    if (sys && !(w->system = mr_strdup(sys))) goto fail;
    return 0;
fail:
    ab_workload_free(w);
    return -1;
}

/* ---- validation helpers ---------------------------------------------------------------- */
static int check_keys(const json_t *o, const char *where, const char *const *allowed) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        bool ok = false;
        for (int i = 0; allowed[i]; i++) ok |= !strcmp(k, allowed[i]);
        if (!ok) {
            ab_buf b = {0};
            for (int i = 0; allowed[i]; i++) ab_printf(&b, "%s%s", i ? ", " : "", allowed[i]);
            mr_seterr("%s: unknown key \"%s\" (expected one of: %s)", where, k, b.s ? b.s : "");
            ab_buf_free(&b);
            return -1;
        }
    }
    return 0;
}

/* Optional string field: 0 (absent: *out NULL), -1 wrong type. */
static int get_str(const json_t *o, const char *key, const char *where, char **out) {
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v) return 0;
    if (!json_is_string(v)) {
        mr_seterr("%s: \"%s\" must be a string", where, key);
        return -1;
    }
    *out = mr_strdup(json_string_value(v));
    return *out ? 0 : -1;
}

static int get_int(const json_t *o, const char *key, const char *where, long long lo, long long hi, int *out) {
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : NAN;
    /* isfinite / floor before any cast: (long long)1e300 is undefined */
    if (!json_is_number(v) || !isfinite(d) || d != floor(d)) {
        mr_seterr("%s: \"%s\" must be an integer", where, key);
        return -1;
    }
    if (d < lo || d > hi) {
        mr_seterr("%s: \"%s\" = %g is out of range [%lld, %lld]", where, key, d, lo, hi);
        return -1;
    }
    *out = (int)d;
    return 0;
}

static char *join_path(const char *dir, const char *f) {
    if (!dir || f[0] == '/') return mr_strdup(f);
    ab_buf b = {0};
    ab_printf(&b, "%s/%s", dir, f);
    return ab_buf_take(&b);
}

static int load_workload(const json_t *v, int idx, const char *dir, int n_predict_default, ab_workload *w) {
    char where[96];
    snprintf(where, sizeof where, "workloads[%d]", idx);
    if (json_is_string(v)) {
        if (ab_builtin_workload(json_string_value(v), w) < 0) {
            mr_preerr("%s", where);
            return -1;
        }
        if (n_predict_default > 0) w->n_predict = n_predict_default;
        return 0;
    }
    if (!json_is_object(v)) {
        mr_seterr("%s: must be a built-in name (short, medium, long, multi-turn) or an object", where);
        return -1;
    }
    static const char *const keys[] = {"name", "builtin", "prompt", "file", "turns", "n_predict", "system", "chat", NULL};
    if (check_keys(v, where, keys) < 0) return -1;
    const char *builtin = json_string_value(json_object_get(v, "builtin"));
    json_t *prompt = json_object_get(v, "prompt"), *file = json_object_get(v, "file"),
           *turns = json_object_get(v, "turns");
    int n_src = !!builtin + !!prompt + !!file + !!turns;
    if (n_src != 1) {
        mr_seterr("%s: give exactly one of \"builtin\", \"prompt\", \"file\", \"turns\"", where);
        return -1;
    }
    memset(w, 0, sizeof *w);
    if (builtin) {
        if (ab_builtin_workload(builtin, w) < 0) {
            mr_preerr("%s", where);
            return -1;
        }
    } else {
        w->chat = true;
        w->n_predict = 64;
        char *t[256];
        int n = 0;
        if (prompt) {
            if (!json_is_string(prompt)) {
                mr_seterr("%s: \"prompt\" must be a string", where);
                return -1;
            }
            t[n++] = mr_strdup(json_string_value(prompt));
        } else if (turns) {
            if (!json_is_array(turns) || json_array_size(turns) == 0 || json_array_size(turns) > 256) {
                mr_seterr("%s: \"turns\" must be an array of 1 to 256 strings", where);
                return -1;
            }
            for (size_t i = 0; i < json_array_size(turns); i++) {
                const char *s = json_string_value(json_array_get(turns, i));
                if (!s) {
                    for (int j = 0; j < n; j++) free(t[j]);
                    mr_seterr("%s: turns[%zu] must be a string", where, i);
                    return -1;
                }
                t[n++] = mr_strdup(s);
            }
        } else {
            if (!json_is_string(file)) {
                mr_seterr("%s: \"file\" must be a string", where);
                return -1;
            }
            char *path = join_path(dir, json_string_value(file));
            size_t len;
            char *text = path ? mr_read_file(path, &len) : NULL;
            if (!text) {
                mr_preerr("%s: prompt file", where);
                free(path);
                return -1;
            }
            free(path);
            /* a line "---" separates turns */
            char *p = text;
            for (;;) {
                char *sep = strstr(p, "\n---\n");
                if (sep) *sep = 0;
                if (n < 256 && *p) t[n++] = mr_strdup(p);
                if (!sep) break;
                p = sep + 5;
            }
            free(text);
            if (n == 0) {
                mr_seterr("%s: prompt file \"%s\" is empty", where, json_string_value(file));
                return -1;
            }
        }
        if (set_turns(w, n, t) < 0) {
            for (int j = 0; j < n; j++) free(t[j]);
            return -1;
        }
    }
    if (n_predict_default > 0) w->n_predict = n_predict_default;
    char *name = NULL;
    if (get_str(v, "name", where, &name) < 0 || get_int(v, "n_predict", where, 1, 1 << 20, &w->n_predict) < 0 ||
        get_str(v, "system", where, &w->system) < 0)
        goto fail;
    json_t *chat = json_object_get(v, "chat");
    if (chat && !json_is_boolean(chat)) {
        mr_seterr("%s: \"chat\" must be true or false", where);
        goto fail;
    }
    if (chat) w->chat = json_is_true(chat);
    if (name) {
        free(w->name);
        w->name = name;
        name = NULL;
    }
    if (!w->name) {
        mr_seterr("%s: \"name\" is required (except for built-ins)", where);
        goto fail;
    }
    return 0;
fail:
    free(name);
    ab_workload_free(w);
    return -1;
}

static int load_config(const json_t *v, int idx, ab_config *c) {
    char where[96];
    snprintf(where, sizeof where, "configs[%d]", idx);
    memset(c, 0, sizeof *c);
    if (!json_is_object(v)) {
        mr_seterr("%s: must be an object {\"name\": ..., \"args\": ...} or {\"name\": ..., \"url\": ...}", where);
        return -1;
    }
    static const char *const keys[] = {"name", "args", "url", "model", NULL};
    if (check_keys(v, where, keys) < 0) return -1;
    if (get_str(v, "name", where, &c->name) < 0 || get_str(v, "args", where, &c->args) < 0 ||
        get_str(v, "url", where, &c->url) < 0 || get_str(v, "model", where, &c->model) < 0)
        return -1;
    if (!c->name || !c->name[0]) {
        mr_seterr("%s: \"name\" is required", where);
        return -1;
    }
    if (strpbrk(c->name, "|/\n") || strlen(c->name) > 63) {
        mr_seterr("%s: name \"%s\" must be at most 63 characters without '|', '/' or newlines", where, c->name);
        return -1;
    }
    if (c->url && c->args) {
        mr_seterr("config '%s': give \"args\" (a moerun config) or \"url\" (an endpoint), not both", c->name);
        return -1;
    }
    if (c->url) {
        if (ab_url_check(c->url) < 0) {
            mr_preerr("config '%s'", c->name);
            return -1;
        }
        return 0;
    }
    if (!c->args && !(c->args = mr_strdup(""))) return -1;
    if (ab_split_args(c->args, &c->argv, &c->argc) < 0) {
        mr_preerr("config '%s': args", c->name);
        return -1;
    }
    return 0;
}

int ab_plan_find_config(const ab_plan *p, const char *name) {
    for (int i = 0; i < p->n_configs; i++)
        if (!strcmp(p->configs[i].name, name)) return i;
    return -1;
}

int ab_plan_find_workload(const ab_plan *p, const char *name) {
    for (int i = 0; i < p->n_workloads; i++)
        if (!strcmp(p->workloads[i].name, name)) return i;
    return -1;
}

/* First of the given keys present in o (plans may say "config" or "configs"). */
static json_t *get_any(const json_t *o, const char *a, const char *b) {
    json_t *v = json_object_get(o, a);
    return v ? v : json_object_get(o, b);
}

int ab_plan_from_json(json_t *root, const char *dir, ab_plan *p) {
    memset(p, 0, sizeof *p);
    p->reps = 5;
    p->warmup = 1;
    p->timeout_s = 600;
    p->ppl_ctx = 256;
    p->ppl_chunks = 4;
    if (!json_is_object(root)) {
        mr_seterr("the plan must be a JSON object");
        return -1;
    }
    p->json = json_incref(root);
    p->dir = dir ? mr_strdup(dir) : NULL;
    static const char *const keys[] = {"name", "model", "baseline", "reps", "warmup", "n_predict", "timeout_s",
                                       "configs", "config", "workloads", "workload", "gates", "gate", "quality",
                                       NULL};
    if (check_keys(root, "plan", keys) < 0) goto fail;
    int n_predict = 0;
    char *baseline = NULL;
    if (get_str(root, "name", "plan", &p->name) < 0 || get_str(root, "model", "plan", &p->model) < 0 ||
        get_str(root, "baseline", "plan", &baseline) < 0 || get_int(root, "reps", "plan", 1, 1000, &p->reps) < 0 ||
        get_int(root, "warmup", "plan", 0, 100, &p->warmup) < 0 ||
        get_int(root, "n_predict", "plan", 1, 1 << 20, &n_predict) < 0)
        goto fail_b;
    json_t *to = json_object_get(root, "timeout_s");
    if (to) {
        if (!json_is_number(to) || !(json_number_value(to) > 0) || json_number_value(to) > 86400) {
            mr_seterr("plan: \"timeout_s\" must be a number of seconds in (0, 86400]");
            goto fail_b;
        }
        p->timeout_s = json_number_value(to);
    }
    if (p->model && p->model[0] != '/' && dir) {
        /* a relative model path is relative to the plan's folder when it exists there */
        char *m = join_path(dir, p->model);
        FILE *f = m ? fopen(m, "rb") : NULL;
        if (f) {
            fclose(f);
            free(p->model);
            p->model = m;
        } else free(m);
    }

    json_t *cfgs = get_any(root, "configs", "config");
    if (!json_is_array(cfgs) || json_array_size(cfgs) == 0) {
        mr_seterr("plan: \"configs\" must be a non-empty array of configurations");
        goto fail_b;
    }
    if (json_array_size(cfgs) > 64) {
        mr_seterr("plan: at most 64 configs (got %zu)", json_array_size(cfgs));
        goto fail_b;
    }
    p->configs = mr_calloc(json_array_size(cfgs), sizeof *p->configs);
    if (!p->configs) goto fail_b;
    for (size_t i = 0; i < json_array_size(cfgs); i++) {
        p->n_configs++;
        if (load_config(json_array_get(cfgs, i), (int)i, &p->configs[i]) < 0) goto fail_b;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(p->configs[j].name, p->configs[i].name)) {
                mr_seterr("plan: two configs are named '%s'", p->configs[i].name);
                goto fail_b;
            }
        if (p->configs[i].args && !p->model) {
            bool has_m = false;
            for (int k = 0; k < p->configs[i].argc; k++)
                has_m |= !strcmp(p->configs[i].argv[k], "-m") || !strcmp(p->configs[i].argv[k], "--model");
            if (!has_m) {
                mr_seterr("config '%s': no model: set \"model\" in the plan or -m in its args", p->configs[i].name);
                goto fail_b;
            }
        }
    }

    json_t *wls = get_any(root, "workloads", "workload");
    if (!wls) {
        wls = json_pack("[s,s]", "short", "medium");
        json_object_set_new(root, "workloads", wls);
    }
    if (!json_is_array(wls) || json_array_size(wls) == 0 || json_array_size(wls) > 64) {
        mr_seterr("plan: \"workloads\" must be an array of 1 to 64 workloads");
        goto fail_b;
    }
    p->workloads = mr_calloc(json_array_size(wls), sizeof *p->workloads);
    if (!p->workloads) goto fail_b;
    for (size_t i = 0; i < json_array_size(wls); i++) {
        if (load_workload(json_array_get(wls, i), (int)i, p->dir, n_predict, &p->workloads[i]) < 0) goto fail_b;
        p->n_workloads++;
        if (strpbrk(p->workloads[i].name, "|/\n")) {
            mr_seterr("workloads[%zu]: name \"%s\" must not contain '|', '/' or newlines", i, p->workloads[i].name);
            goto fail_b;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(p->workloads[j].name, p->workloads[i].name)) {
                mr_seterr("plan: two workloads are named '%s' (give one a \"name\")", p->workloads[i].name);
                goto fail_b;
            }
    }

    json_t *gates = get_any(root, "gates", "gate");
    if (gates) {
        if (json_is_string(gates)) gates = json_pack("[O]", gates), json_object_set_new(root, "gates", gates);
        if (!json_is_array(gates)) {
            mr_seterr("plan: \"gates\" must be an array of strings like \"tg >= 20\"");
            goto fail_b;
        }
        p->gates = mr_calloc(json_array_size(gates) + 1, sizeof *p->gates);
        if (!p->gates) goto fail_b;
        for (size_t i = 0; i < json_array_size(gates); i++) {
            const char *g = json_string_value(json_array_get(gates, i));
            if (!g) {
                mr_seterr("plan: gates[%zu] must be a string like \"tg >= 20\"", i);
                goto fail_b;
            }
            if (ab_gate_parse(g, &p->gates[i]) < 0) {
                mr_preerr("plan: gates[%zu]", i);
                goto fail_b;
            }
            p->n_gates++;
            if (p->gates[i].workload[0] && ab_plan_find_workload(p, p->gates[i].workload) < 0) {
                mr_seterr("plan: gate \"%s\" names workload '%s', which the plan does not have", g,
                          p->gates[i].workload);
                goto fail_b;
            }
        }
    }

    p->baseline = 0;
    if (baseline) {
        p->baseline = ab_plan_find_config(p, baseline);
        if (p->baseline < 0) {
            mr_seterr("plan: baseline '%s' is not one of the configs", baseline);
            goto fail_b;
        }
    }
    free(baseline);
    baseline = NULL;

    json_t *q = json_object_get(root, "quality");
    if (q) {
        static const char *const qkeys[] = {"file", "ctx", "chunks", "kl", NULL};
        if (!json_is_object(q)) {
            mr_seterr("plan: \"quality\" must be an object {\"file\": TEXT, \"ctx\": 256, \"chunks\": 4}");
            goto fail_b;
        }
        char *f = NULL;
        if (check_keys(q, "quality", qkeys) < 0 || get_str(q, "file", "quality", &f) < 0 ||
            get_int(q, "ctx", "quality", 8, 1 << 20, &p->ppl_ctx) < 0 ||
            get_int(q, "chunks", "quality", 1, 1 << 20, &p->ppl_chunks) < 0) {
            free(f);
            goto fail_b;
        }
        if (!f) {
            mr_seterr("quality: \"file\" (a text file for perplexity) is required");
            goto fail_b;
        }
        p->ppl_file = join_path(p->dir, f);
        free(f);
        json_t *kl = json_object_get(q, "kl");
        p->kl = kl ? json_is_true(kl) : true;
        FILE *tf = p->ppl_file ? fopen(p->ppl_file, "rb") : NULL;
        if (!tf) {
            mr_seterr("quality: cannot open text file \"%s\"", p->ppl_file ? p->ppl_file : "?");
            goto fail_b;
        }
        fclose(tf);
    }

    /* hash: canonical plan JSON + the resolved workloads (prompt files included) */
    char *canon = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    uint64_t h = ab_fnv1a(canon ? canon : "", canon ? strlen(canon) : 0, 0);
    free(canon);
    for (int i = 0; i < p->n_workloads; i++) {
        json_t *wj = ab_workload_json(&p->workloads[i]);
        char *s = wj ? json_dumps(wj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (s) h = ab_fnv1a(s, strlen(s), h);
        free(s);
        json_decref(wj);
    }
    p->hash = h;
    return 0;
fail_b:
    free(baseline);
fail:
    ab_plan_free(p);
    return -1;
}

int ab_plan_load(const char *path, ab_plan *p) {
    size_t len;
    char *text = mr_read_file(path, &len);
    if (!text) {
        mr_preerr("plan");
        return -1;
    }
    if (strlen(text) != len) { /* the TOML parser would silently stop at it */
        mr_seterr("plan: %s: holds a NUL byte at offset %zu (not a text file?)", path, strlen(text));
        free(text);
        return -1;
    }
    size_t pl = strlen(path);
    bool toml = pl > 5 && !strcmp(path + pl - 5, ".toml");
    if (!(pl > 5 && !strcmp(path + pl - 5, ".json")) && !toml) {
        const char *s = text;
        while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
        toml = *s != '{';
    }
    json_t *root;
    if (toml) {
        root = ab_toml_parse(text, path);
    } else {
        json_error_t je;
        root = json_loadb(text, len, 0, &je);
        if (!root) mr_seterr("%s:%d:%d: %s", path, je.line, je.column, je.text);
    }
    free(text);
    if (!root) return -1;
    char *dcopy = mr_strdup(path);
    if (!dcopy) {
        json_decref(root);
        return -1;
    }
    int rc = ab_plan_from_json(root, dirname(dcopy), p);
    free(dcopy);
    json_decref(root);
    if (rc < 0) mr_preerr("%s", path);
    return rc;
}

void ab_plan_free(ab_plan *p) {
    if (!p) return;
    for (int i = 0; i < p->n_configs; i++) {
        ab_config *c = &p->configs[i];
        free(c->name);
        free(c->args);
        free(c->url);
        free(c->model);
        ab_free_argv(c->argv, c->argc);
    }
    free(p->configs);
    for (int i = 0; i < p->n_workloads; i++) ab_workload_free(&p->workloads[i]);
    free(p->workloads);
    for (int i = 0; i < p->n_gates; i++) ab_gate_free(&p->gates[i]);
    free(p->gates);
    free(p->name);
    free(p->model);
    free(p->ppl_file);
    free(p->dir);
    json_decref(p->json);
    memset(p, 0, sizeof *p);
}
