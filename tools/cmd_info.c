/*
 * cmd_info.c — `moerun info FILE [--json] [--tensors] [--kv]`: describe a GGUF model.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "gguf/gguf.h"
#include "quant/types.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: moerun info FILE.gguf [--json] [--tensors] [--kv]\n"
            "  Architecture, hyperparameters, tokenizer, parameters, size, bits per weight,\n"
            "  tensor-type histogram.\n"
            "  --json     machine-readable output\n"
            "  --tensors  also list every tensor: name, type, shape, bytes\n"
            "  --kv       also list every metadata key (long arrays summarised)\n");
}

typedef struct {
    uint64_t n_tensors, params, bytes;
    uint64_t type_count[MR_TYPE_COUNT], type_params[MR_TYPE_COUNT], type_bytes[MR_TYPE_COUNT];
} summary;

static void summarize(const gguf_ctx *g, summary *s) {
    memset(s, 0, sizeof *s);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        s->n_tensors++;
        s->params += (uint64_t)t->nelem;
        s->bytes += t->nbytes;
        s->type_count[t->type]++;
        s->type_params[t->type] += (uint64_t)t->nelem;
        s->type_bytes[t->type] += t->nbytes;
    }
}

static void shape_str(const gguf_tensor *t, char *buf, size_t n) {
    size_t o = 0;
    for (uint32_t d = 0; d < t->n_dims && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? " x " : "", (long long)t->ne[d]);
}

/* Hyperparameter keys: everything under "<arch>." */
static bool is_hparam(const char *key, const char *arch) {
    size_t n = strlen(arch);
    return arch[0] && !strncmp(key, arch, n) && key[n] == '.';
}

static json_t *value_json(const gguf_value *v, bool full) {
    switch (v->type) {
    case GGUF_VT_STRING: return json_stringn(v->v.str.s, v->v.str.len);
    case GGUF_VT_FLOAT32: case GGUF_VT_FLOAT64: return json_real(v->v.f);
    case GGUF_VT_BOOL: return json_boolean(v->v.b);
    case GGUF_VT_INT8: case GGUF_VT_INT16: case GGUF_VT_INT32: case GGUF_VT_INT64: return json_integer(v->v.i);
    case GGUF_VT_ARRAY: {
        if (!full && v->n > 64) {
            char buf[64];
            snprintf(buf, sizeof buf, "[%llu %s]", (unsigned long long)v->n, gguf_vtype_name(v->arr_type));
            return json_string(buf);
        }
        json_t *a = json_array();
        for (uint64_t i = 0; i < v->n; i++) {
            if (v->arr_type == GGUF_VT_STRING) json_array_append_new(a, json_stringn(((char **)v->arr)[i], v->lens[i]));
            else if (v->arr_type == GGUF_VT_ARRAY) json_array_append_new(a, value_json(&((gguf_value *)v->arr)[i], full));
            else {
                double d;
                /* numeric element via the f64 accessor semantics */
                const uint8_t *p = v->arr;
                switch (v->arr_type) {
                case GGUF_VT_UINT8: case GGUF_VT_BOOL: d = p[i]; break;
                case GGUF_VT_INT8: d = (int8_t)p[i]; break;
                case GGUF_VT_UINT16: { uint16_t x; memcpy(&x, p + 2 * i, 2); d = x; break; }
                case GGUF_VT_INT16: { int16_t x; memcpy(&x, p + 2 * i, 2); d = x; break; }
                case GGUF_VT_UINT32: { uint32_t x; memcpy(&x, p + 4 * i, 4); d = x; break; }
                case GGUF_VT_INT32: { int32_t x; memcpy(&x, p + 4 * i, 4); d = x; break; }
                case GGUF_VT_FLOAT32: { float x; memcpy(&x, p + 4 * i, 4); d = x; break; }
                case GGUF_VT_UINT64: { uint64_t x; memcpy(&x, p + 8 * i, 8); d = (double)x; break; }
                case GGUF_VT_INT64: { int64_t x; memcpy(&x, p + 8 * i, 8); d = (double)x; break; }
                default: { double x; memcpy(&x, p + 8 * i, 8); d = x; break; }
                }
                if (v->arr_type == GGUF_VT_FLOAT32 || v->arr_type == GGUF_VT_FLOAT64) json_array_append_new(a, json_real(d));
                else json_array_append_new(a, json_integer((json_int_t)d));
            }
        }
        return a;
    }
    default: return json_integer((json_int_t)v->v.u);
    }
}

static int tokenizer_size(const gguf_ctx *g) {
    const gguf_kv *kv = gguf_find(g, "tokenizer.ggml.tokens");
    return kv && kv->val.type == GGUF_VT_ARRAY ? (int)kv->val.n : 0;
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool json = false, tensors = false, kvs = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--tensors")) tensors = true;
        else if (!strcmp(argv[i], "--kv")) kvs = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        else if (!strcmp(argv[i], "-m") && i + 1 < argc) path = argv[++i];
        else if (argv[i][0] == '-') {
            fprintf(stderr, "moerun info: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (!path) path = argv[i];
        else {
            fprintf(stderr, "moerun info: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    gguf_ctx *g = gguf_open(path);
    if (!g) {
        fprintf(stderr, "moerun info: %s\n", mr_geterr());
        return 1;
    }
    summary s;
    summarize(g, &s);
    const char *arch = gguf_get_str(g, "general.architecture");
    const char *name = gguf_get_str(g, "general.name");
    const char *tokm = gguf_get_str(g, "tokenizer.ggml.model");
    const char *tokp = gguf_get_str(g, "tokenizer.ggml.pre");
    double bpw = s.params ? s.bytes * 8.0 / (double)s.params : 0;
    char b1[64], b2[64];

    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "file", json_string(path));
        json_object_set_new(o, "gguf_version", json_integer(g->version));
        json_object_set_new(o, "architecture", arch ? json_string(arch) : json_null());
        json_object_set_new(o, "name", name ? json_string(name) : json_null());
        json_object_set_new(o, "file_bytes", json_integer((json_int_t)g->total_size));
        json_object_set_new(o, "split_parts", json_integer(g->n_parts));
        json_object_set_new(o, "n_tensors", json_integer((json_int_t)s.n_tensors));
        json_object_set_new(o, "n_params", json_integer((json_int_t)s.params));
        json_object_set_new(o, "tensor_bytes", json_integer((json_int_t)s.bytes));
        json_object_set_new(o, "bits_per_weight", json_real(bpw));
        json_t *hp = json_object();
        for (uint64_t i = 0; i < g->n_kv; i++)
            if (arch && is_hparam(g->kv[i].key, arch))
                json_object_set_new(hp, g->kv[i].key + strlen(arch) + 1, value_json(&g->kv[i].val, false));
        json_object_set_new(o, "hparams", hp);
        json_t *tk = json_object();
        json_object_set_new(tk, "model", tokm ? json_string(tokm) : json_null());
        json_object_set_new(tk, "pre", tokp ? json_string(tokp) : json_null());
        json_object_set_new(tk, "n_tokens", json_integer(tokenizer_size(g)));
        json_object_set_new(o, "tokenizer", tk);
        json_t *th = json_object();
        for (int t = 0; t < MR_TYPE_COUNT; t++) {
            if (!s.type_count[t]) continue;
            json_t *e = json_object();
            json_object_set_new(e, "tensors", json_integer((json_int_t)s.type_count[t]));
            json_object_set_new(e, "params", json_integer((json_int_t)s.type_params[t]));
            json_object_set_new(e, "bytes", json_integer((json_int_t)s.type_bytes[t]));
            json_object_set_new(th, mr_type_name(t), e);
        }
        json_object_set_new(o, "types", th);
        if (tensors) {
            json_t *ta = json_array();
            for (uint64_t i = 0; i < g->n_tensors; i++) {
                const gguf_tensor *t = &g->tensors[i];
                json_t *e = json_object(), *sh = json_array();
                for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(sh, json_integer(t->ne[d]));
                json_object_set_new(e, "name", json_string(t->name));
                json_object_set_new(e, "type", json_string(mr_type_name(t->type)));
                json_object_set_new(e, "shape", sh);
                json_object_set_new(e, "bytes", json_integer((json_int_t)t->nbytes));
                json_array_append_new(ta, e);
            }
            json_object_set_new(o, "tensors", ta);
        }
        if (kvs) {
            json_t *ko = json_object();
            for (uint64_t i = 0; i < g->n_kv; i++) json_object_set_new(ko, g->kv[i].key, value_json(&g->kv[i].val, false));
            json_object_set_new(o, "metadata", ko);
        }
        char *txt = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(txt);
        free(txt);
        json_decref(o);
        gguf_close(g);
        return 0;
    }

    printf("file:          %s%s\n", path, g->n_parts > 1 ? " (split)" : "");
    if (g->n_parts > 1) printf("parts:         %d\n", g->n_parts);
    printf("gguf version:  %u\n", g->version);
    printf("architecture:  %s\n", arch ? arch : "(none)");
    printf("name:          %s\n", name ? name : "(none)");
    printf("file size:     %s (%llu bytes)\n", mr_fmt_bytes(b1, sizeof b1, g->total_size), (unsigned long long)g->total_size);
    printf("parameters:    %s (%llu)\n", mr_fmt_count(b2, sizeof b2, s.params), (unsigned long long)s.params);
    printf("bits/weight:   %.2f\n", bpw);
    printf("tensors:       %llu\n", (unsigned long long)s.n_tensors);
    if (tokm) printf("tokenizer:     %s%s%s%s, %d tokens\n", tokm, tokp ? " (pre " : "", tokp ? tokp : "", tokp ? ")" : "", tokenizer_size(g));
    else printf("tokenizer:     (none)\n");
    if (arch) {
        printf("hyperparameters:\n");
        for (uint64_t i = 0; i < g->n_kv; i++) {
            if (!is_hparam(g->kv[i].key, arch)) continue;
            char vb[256];
            printf("  %-40s %s\n", g->kv[i].key + strlen(arch) + 1, gguf_value_str(&g->kv[i].val, vb, sizeof vb));
        }
    }
    printf("tensor types:\n");
    for (int t = 0; t < MR_TYPE_COUNT; t++) {
        if (!s.type_count[t]) continue;
        printf("  %-8s %5llu tensors  %10s params  %10s  %5.1f%%\n", mr_type_name(t), (unsigned long long)s.type_count[t],
               mr_fmt_count(b1, sizeof b1, s.type_params[t]), mr_fmt_bytes(b2, sizeof b2, s.type_bytes[t]),
               s.bytes ? 100.0 * s.type_bytes[t] / s.bytes : 0);
    }
    if (kvs) {
        printf("metadata:\n");
        for (uint64_t i = 0; i < g->n_kv; i++) {
            char vb[256];
            printf("  %-48s %-6s %s\n", g->kv[i].key, gguf_vtype_name(g->kv[i].val.type), gguf_value_str(&g->kv[i].val, vb, sizeof vb));
        }
    }
    if (tensors) {
        printf("%-48s %-8s %-28s %s\n", "tensor", "type", "shape", "bytes");
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const gguf_tensor *t = &g->tensors[i];
            char sh[96];
            shape_str(t, sh, sizeof sh);
            printf("%-48s %-8s %-28s %llu\n", t->name, mr_type_name(t->type), sh, (unsigned long long)t->nbytes);
        }
    }
    gguf_close(g);
    return 0;
}
