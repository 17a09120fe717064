/*
 * lists.c — parsing the comma-list flags of `moerun bench` (as llama-bench:
 * "-t 1,2,4", "-t 1-8", "-t 1-8+2", "-ctk f16,q8_0") into growable arrays.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "bench/bench.h"

static int push_int(int **arr, int *n, int v) {
    int *a = mr_realloc(*arr, (size_t)(*n + 1) * sizeof **arr);
    if (!a) return -1;
    a[(*n)++] = v;
    *arr = a;
    return 0;
}

static int parse_one(const char *flag, const char *s, char **end, long *v) {
    errno = 0;
    *v = strtol(s, end, 10);
    if (*end == s || errno) {
        mr_seterr("%s: expected an integer at '%s'", flag, s);
        return -1;
    }
    return 0;
}

/* Items separated by ','; each is N, A-B (inclusive) or A-B+S (step S > 0). */
int bench_parse_int_list(const char *flag, const char *s, int lo, int hi, int **arr, int *n) {
    if (!s || !*s) {
        mr_seterr("%s: empty list", flag);
        return -1;
    }
    const char *p = s;
    for (;;) {
        char *e;
        long a, b, st = 1;
        if (parse_one(flag, p, &e, &a)) return -1;
        b = a;
        if (*e == '-') {
            if (parse_one(flag, e + 1, &e, &b)) return -1;
            if (*e == '+') {
                if (parse_one(flag, e + 1, &e, &st)) return -1;
                if (st <= 0) {
                    mr_seterr("%s: range step must be positive in '%s'", flag, s);
                    return -1;
                }
            }
            if (b < a) {
                mr_seterr("%s: empty range in '%s'", flag, s);
                return -1;
            }
        }
        if (*e != ',' && *e != 0) {
            mr_seterr("%s: unexpected '%c' in '%s'", flag, *e, s);
            return -1;
        }
        for (long v = a; v <= b; v += st) {
            if (v < lo || v > hi) {
                mr_seterr("%s: value %ld out of range [%d, %d]", flag, v, lo, hi);
                return -1;
            }
            if (push_int(arr, n, (int)v)) return -1;
        }
        if (*e == 0) break;
        p = e + 1;
    }
    return 0;
}

static const struct {
    const char *name;
    int type;
} k_kv_types[] = {{"f32", MR_KV_F32}, {"f16", MR_KV_F16}, {"q8_0", MR_KV_Q8_0}, {"q4_0", MR_KV_Q4_0}};

int bench_kv_type_from_name(const char *s) {
    for (size_t i = 0; i < MR_ARRAY_LEN(k_kv_types); i++)
        if (!strcasecmp(s, k_kv_types[i].name)) return k_kv_types[i].type;
    return -1;
}

const char *bench_kv_type_name(int t) {
    for (size_t i = 0; i < MR_ARRAY_LEN(k_kv_types); i++)
        if (k_kv_types[i].type == t) return k_kv_types[i].name;
    return "?";
}

int bench_parse_kv_list(const char *flag, const char *s, int **arr, int *n) {
    char buf[256];
    const char *p = s;
    if (!s || !*s) {
        mr_seterr("%s: empty list", flag);
        return -1;
    }
    for (;;) {
        size_t l = strcspn(p, ",");
        if (l == 0 || l >= sizeof buf) {
            mr_seterr("%s: bad cache type list '%s'", flag, s);
            return -1;
        }
        memcpy(buf, p, l);
        buf[l] = 0;
        int t = bench_kv_type_from_name(buf);
        if (t < 0) {
            mr_seterr("%s: unknown cache type '%s' (f32, f16, q8_0, q4_0)", flag, buf);
            return -1;
        }
        if (push_int(arr, n, t)) return -1;
        if (!p[l]) break;
        p += l + 1;
    }
    return 0;
}

int bench_strv_push(char ***arr, int *n, const char *s) {
    char *c = mr_strdup(s);
    if (!c) return -1;
    char **a = mr_realloc(*arr, (size_t)(*n + 1) * sizeof **arr);
    if (!a) {
        free(c);
        return -1;
    }
    a[(*n)++] = c;
    *arr = a;
    return 0;
}
