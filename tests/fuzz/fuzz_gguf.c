/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader.
 *
 * Parses the input with gguf_parse_buffer(), then touches everything a caller
 * could: every metadata value (typed getters, display strings, array
 * elements, nested arrays), every tensor (name lookup, the first and last byte
 * of its data). Any crash, sanitizer report or leak is a bug in the reader.
 * Seed corpus: tests/fuzz/corpus_gguf/ (tiny valid files, see gen_corpus in
 * tests/unit/test_gguf.c).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "gguf/gguf.h"

static volatile uint64_t sink;

static void touch_value(const gguf_value *v, int depth) {
    char buf[256];
    gguf_value_str(v, buf, sizeof buf);
    sink += (uint8_t)buf[0];
    if (v->type == GGUF_VT_STRING) sink += v->v.str.len ? (uint8_t)v->v.str.s[v->v.str.len - 1] : 0;
    if (v->type != GGUF_VT_ARRAY) return;
    if (v->arr_type == GGUF_VT_STRING) {
        char **s = v->arr;
        for (uint64_t i = 0; i < v->n; i++) sink += v->lens[i] ? (uint8_t)s[i][v->lens[i] - 1] : (uint8_t)s[i][0];
    } else if (v->arr_type == GGUF_VT_ARRAY) {
        const gguf_value *sub = v->arr;
        for (uint64_t i = 0; i < v->n && depth < 16; i++) touch_value(&sub[i], depth + 1);
    } else if (v->n) {
        const uint8_t *a = v->arr;
        sink += a[0];
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* an exact-size copy so reads past the end are caught by ASan */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    gguf_ctx *g = gguf_parse_buffer(buf, size, "fuzz.gguf");
    if (!g) {
        const char *e = mr_geterr();
        sink += e && e[0];
        free(buf);
        return 0;
    }
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        touch_value(&kv->val, 0);
        int64_t iv;
        double fv;
        bool bv;
        int64_t arr[8];
        double farr[8];
        if (gguf_get_i64(g, kv->key, &iv)) sink += (uint64_t)iv;
        if (gguf_get_f64(g, kv->key, &fv)) sink += (uint64_t)(fv == fv);
        if (gguf_get_bool(g, kv->key, &bv)) sink += bv;
        const char *s = gguf_get_str(g, kv->key);
        if (s) sink += (uint8_t)s[0];
        if (gguf_get_arr_i64(g, kv->key, arr, 8) > 0) sink += (uint64_t)arr[0];
        if (gguf_get_arr_f64(g, kv->key, farr, 8) > 0) sink += (uint64_t)(farr[0] == farr[0]);
        if (gguf_find(g, kv->key) != kv) abort(); /* keys are unique */
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (gguf_tensor_find(g, t->name) != t) abort(); /* names are unique */
        const uint8_t *p = t->data;
        if (t->nbytes) sink += p[0] + p[t->nbytes - 1];
        if ((const uint8_t *)t->data < buf || (const uint8_t *)t->data + t->nbytes > buf + size) abort();
    }
    gguf_close(g);
    free(buf);
    return 0;
}
