/*
 * cmd_dump.c — `moerun dump FILE TENSOR [--rows N] [--cols N] [--json]`:
 * decode the first rows of a tensor to floats.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: moerun dump FILE.gguf TENSOR [--rows N] [--cols N] [--json]\n"
            "  Prints the first N rows (default 4) of TENSOR as floats; --cols limits the\n"
            "  values shown per row in text mode (default 16; 0 = all).\n");
}

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cmd_dump(int argc, char **argv) {
    const char *path = NULL, *name = NULL;
    long rows = 4, cols = 16;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--rows") || !strcmp(argv[i], "--cols")) {
            long *dst = argv[i][2] == 'r' ? &rows : &cols;
            if (i + 1 >= argc || parse_int(argv[i + 1], 0, 1L << 40, dst)) {
                fprintf(stderr, "moerun dump: %s needs a non-negative integer\n", argv[i]);
                return 2;
            }
            i++;
        } else if (!strcmp(argv[i], "-m") && i + 1 < argc) path = argv[++i];
        else if (argv[i][0] == '-') {
            fprintf(stderr, "moerun dump: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (!path) path = argv[i];
        else if (!name) name = argv[i];
        else { fprintf(stderr, "moerun dump: unexpected argument '%s'\n", argv[i]); return 2; }
    }
    if (!path || !name) { usage(stderr); return 2; }
    gguf_ctx *g = gguf_open(path);
    if (!g) { fprintf(stderr, "moerun dump: %s\n", mr_geterr()); return 1; }
    const gguf_tensor *t = gguf_tensor_find(g, name);
    if (!t) {
        fprintf(stderr, "moerun dump: %s: no tensor named '%s' (moerun info --tensors lists them)\n", path, name);
        gguf_close(g);
        return 1;
    }
    if (!quant_can_dequant(t->type)) {
        fprintf(stderr, "moerun dump: tensor '%s': type %s cannot be decoded\n", name, mr_type_name(t->type));
        gguf_close(g);
        return 1;
    }
    int64_t k = t->ne[0], nrows = k ? t->nelem / k : 0;
    if (rows > nrows) rows = nrows;
    size_t rs = mr_row_size(t->type, k);
    float *buf = mr_malloc((size_t)(k ? k : 1) * sizeof(float));
    if (!buf) { fprintf(stderr, "moerun dump: %s\n", mr_geterr()); gguf_close(g); return 1; }
    json_t *arr = json ? json_array() : NULL;
    if (!json) printf("tensor %s: type %s, row length %lld, %lld rows\n", name, mr_type_name(t->type), (long long)k, (long long)nrows);
    int rc = 0;
    for (long r = 0; r < rows; r++) {
        if (quant_dequant_row(t->type, (const char *)t->data + (size_t)r * rs, buf, k)) {
            fprintf(stderr, "moerun dump: tensor '%s': %s\n", name, mr_geterr());
            rc = 1;
            break;
        }
        if (json) {
            json_t *row = json_array();
            for (int64_t c = 0; c < k; c++) json_array_append_new(row, json_real(buf[c]));
            json_array_append_new(arr, row);
        } else {
            int64_t show = cols == 0 || cols > k ? k : cols;
            printf("[%ld]", r);
            for (int64_t c = 0; c < show; c++) printf(" %.6g", buf[c]);
            if (show < k) printf(" ... (%lld more)", (long long)(k - show));
            printf("\n");
        }
    }
    if (json && rc == 0) {
        json_t *o = json_object();
        json_t *sh = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(sh, json_integer(t->ne[d]));
        json_object_set_new(o, "name", json_string(name));
        json_object_set_new(o, "type", json_string(mr_type_name(t->type)));
        json_object_set_new(o, "shape", sh);
        json_object_set_new(o, "rows", arr);
        arr = NULL;
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
        json_decref(o);
    }
    json_decref(arr);
    free(buf);
    gguf_close(g);
    return rc;
}
