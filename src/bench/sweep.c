/*
 * sweep.c — records of `moerun sweep` (ik_llama.cpp sweep-bench): the rows
 * (PP, TG, N_KV, T_PP s, S_PP t/s, T_TG s, S_TG t/s), their markdown table and
 * JSON, and reading a sweep JSON back (for charts of several runs).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "bench/bench.h"

int sweep_series_add(sweep_series *s, const sweep_row *row) {
    if (s->n_rows == s->cap_rows) {
        int cap = s->cap_rows ? s->cap_rows * 2 : 16;
        sweep_row *r = mr_realloc(s->rows, (size_t)cap * sizeof *r);
        if (!r) return -1;
        s->rows = r;
        s->cap_rows = cap;
    }
    s->rows[s->n_rows++] = *row;
    return 0;
}

void sweep_series_free(sweep_series *s) {
    free(s->rows);
    s->rows = NULL;
    s->n_rows = s->cap_rows = 0;
}

void sweep_md_header(FILE *f) {
    fprintf(f, "|%6s | %6s | %6s | %8s | %8s | %8s | %8s |\n", "PP", "TG", "N_KV", "T_PP s", "S_PP t/s", "T_TG s",
            "S_TG t/s");
    fprintf(f, "|%6s-|-%6s-|-%6s-|-%8s-|-%8s-|-%8s-|-%8s-|\n", "------", "------", "------", "--------", "--------",
            "--------", "--------");
}

void sweep_md_row(FILE *f, const sweep_row *r) {
    fprintf(f, "|%6d | %6d | %6d | %8.3f | %8.2f | %8.3f | %8.2f |\n", r->pp, r->tg, r->n_kv, r->t_pp, r->speed_pp,
            r->t_tg, r->speed_tg);
}

static json_t *jreal(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *sweep_row_json(const sweep_row *r) {
    json_t *o = json_object();
    json_object_set_new(o, "pp", json_integer(r->pp));
    json_object_set_new(o, "tg", json_integer(r->tg));
    json_object_set_new(o, "n_kv", json_integer(r->n_kv));
    json_object_set_new(o, "t_pp", jreal(r->t_pp));
    json_object_set_new(o, "speed_pp", jreal(r->speed_pp));
    json_object_set_new(o, "t_tg", jreal(r->t_tg));
    json_object_set_new(o, "speed_tg", jreal(r->speed_tg));
    return o;
}

static double num(const json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* {"rows": [...], "label": ..., "title": ...} as written by `moerun sweep --json`,
 * or a bare array of rows (also ik_llama.cpp's jsonl fields, one per line). */
int sweep_load_json(const char *path, sweep_series *s) {
    memset(s, 0, sizeof *s);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    json_t *rows = NULL;
    if (!root) {
        /* jsonl: wrap the lines into an array */
        size_t len;
        char *text = mr_read_file(path, &len);
        if (!text) return -1;
        rows = json_array();
        for (char *p = text, *e; p && *p; p = e ? e + 1 : NULL) {
            e = strchr(p, '\n');
            if (e) *e = 0;
            if (strspn(p, " \t\r") == strlen(p)) continue;
            json_t *o = json_loads(p, 0, &err);
            if (!o) {
                mr_seterr("%s: not JSON: %s", path, err.text);
                free(text);
                json_decref(rows);
                return -1;
            }
            json_array_append_new(rows, o);
        }
        free(text);
        root = rows;
    } else if (json_is_object(root)) {
        rows = json_object_get(root, "rows");
        const char *l = json_string_value(json_object_get(root, "label"));
        const char *t = json_string_value(json_object_get(root, "title"));
        const char *st = json_string_value(json_object_get(root, "subtitle"));
        if (l) snprintf(s->label, sizeof s->label, "%s", l);
        if (t) snprintf(s->title, sizeof s->title, "%s", t);
        if (st) snprintf(s->subtitle, sizeof s->subtitle, "%s", st);
    } else {
        rows = root;
    }
    if (!json_is_array(rows) || json_array_size(rows) == 0) {
        mr_seterr("%s: no sweep rows", path);
        json_decref(root);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(rows); i++) {
        json_t *o = json_array_get(rows, i);
        sweep_row r = {(int)num(o, "pp"), (int)num(o, "tg"), (int)num(o, "n_kv"), num(o, "t_pp"),
                       num(o, "speed_pp"), num(o, "t_tg"), num(o, "speed_tg")};
        if (!isfinite(num(o, "n_kv"))) {
            mr_seterr("%s: row %zu has no n_kv", path, i + 1);
            json_decref(root);
            sweep_series_free(s);
            return -1;
        }
        if (sweep_series_add(s, &r)) {
            json_decref(root);
            sweep_series_free(s);
            return -1;
        }
    }
    if (!s->label[0]) {
        const char *b = strrchr(path, '/');
        snprintf(s->label, sizeof s->label, "%s", b ? b + 1 : path);
    }
    json_decref(root);
    return 0;
}
