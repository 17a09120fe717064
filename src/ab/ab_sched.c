/*
 * ab_sched.c — the run order of `moerun ab` and the results file behind
 * --resume.
 *
 * Order: rounds of warm-ups first, then one round per repetition; a round
 * visits every workload and, for each, every config. The config order is
 * rotated by one each round, so slow drift (thermal, background load) and
 * "who runs right after whom" effects hit every config alike.
 *
 * Results: results.jsonl, a header line with the plan hash, then one JSON
 * line per finished run, flushed as it is written. A run killed mid-write
 * leaves a torn last line, which loading ignores (and --resume truncates).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ab/ab.h"
#include "base/base.h"

ab_slot *ab_schedule(int n_configs, int n_workloads, int reps, int warmup, int *n) {
    *n = 0;
    if (n_configs <= 0 || n_workloads <= 0 || reps < 0 || warmup < 0) return NULL;
    size_t total = (size_t)n_configs * (size_t)n_workloads * (size_t)(reps + warmup);
    ab_slot *s = mr_calloc(total ? total : 1, sizeof *s);
    if (!s) return NULL;
    int k = 0, round = 0;
    for (int r = -warmup; r < reps; r++, round++)
        for (int w = 0; w < n_workloads; w++)
            for (int i = 0; i < n_configs; i++) {
                int c = (i + round) % n_configs;
                s[k++] = (ab_slot){c, w, r};
            }
    *n = k;
    return s;
}

void ab_slot_key(const ab_plan *p, const ab_slot *s, char *buf, size_t n) {
    if (s->rep < 0)
        snprintf(buf, n, "%s|%s|warmup%d", p->configs[s->config].name, p->workloads[s->workload].name, -s->rep - 1);
    else snprintf(buf, n, "%s|%s|%d", p->configs[s->config].name, p->workloads[s->workload].name, s->rep);
}

int ab_results_load(const char *path, ab_results *r) {
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "rb");
    if (!f) {
        mr_seterr("%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long pos = 0;
    int lineno = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        bool complete = line[len - 1] == '\n';
        json_error_t je;
        json_t *o = complete ? json_loadb(line, (size_t)len, 0, &je) : NULL;
        if (!o) {
            /* a torn or broken line: stop here; what follows is not trusted */
            if (!complete) break;
            MR_WARN("%s:%d: unreadable line ignored (and what follows)", path, lineno);
            break;
        }
        pos += len;
        r->good_bytes = pos;
        const char *type = json_string_value(json_object_get(o, "type"));
        if (type && !strcmp(type, "header")) {
            const char *h = json_string_value(json_object_get(o, "plan_hash"));
            snprintf(r->plan_hash, sizeof r->plan_hash, "%s", h ? h : "");
            json_decref(o);
            continue;
        }
        if (!type || strcmp(type, "run") != 0 || !json_is_string(json_object_get(o, "key"))) {
            json_decref(o);
            continue;
        }
        json_t **a = mr_realloc(r->runs, sizeof *a * (size_t)(r->n + 1));
        if (!a) {
            json_decref(o);
            free(line);
            fclose(f);
            ab_results_free(r);
            return -1;
        }
        r->runs = a;
        r->runs[r->n++] = o;
    }
    free(line);
    fclose(f);
    return 0;
}

void ab_results_free(ab_results *r) {
    for (int i = 0; i < r->n; i++) json_decref(r->runs[i]);
    free(r->runs);
    memset(r, 0, sizeof *r);
}

bool ab_results_has(const ab_results *r, const char *key) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(json_string_value(json_object_get(r->runs[i], "key")), key)) return true;
    return false;
}
