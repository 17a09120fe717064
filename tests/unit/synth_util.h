/*
 * synth_util.h — writes a synthetic model's plan (src/synth) to a GGUF file for the unit
 * tests (test_synth, test_gpu_types): tensor k's data drawn with seed + k.
 */
#ifndef MR_SYNTH_UTIL_H
#define MR_SYNTH_UTIL_H
#include <stdlib.h>

#include "base/base.h"
#include "gguf/gguf.h"
#include "quant/types.h"
#include "synth/synth.h"

/* Writes plan pl (with vocab v or synthetic) to path. */
static inline int write_plan(const synth_plan *pl, const char *path, const gguf_ctx *v, uint64_t seed) {
    gguf_writer *w = gguf_writer_new(path);
    if (!w) return -1;
    if (synth_write_meta(w, pl, v, seed)) goto fail;
    for (int k = 0; k < pl->n_t; k++)
        if (gguf_writer_add_tensor(w, pl->t[k].name, pl->t[k].type, pl->t[k].n_dims, pl->t[k].ne)) goto fail;
    size_t cap = 1 << 20;
    uint8_t *buf = malloc(cap);
    for (int k = 0; k < pl->n_t; k++) {
        const synth_tensor *t = &pl->t[k];
        const mr_type_traits *tr = mr_type_get(t->type);
        uint64_t left = (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2]) / tr->blck * tr->tsize;
        synth_rng r;
        synth_rng_seed(&r, seed + (uint64_t)k);
        while (left) {
            uint64_t n = MR_MIN(left, cap / tr->tsize * tr->tsize);
            if (synth_fill(t, &r, buf, n) || gguf_writer_write_data(w, buf, n)) { free(buf); goto fail; }
            left -= n;
        }
    }
    free(buf);
    return gguf_writer_close(w);
fail:
    gguf_writer_abort(w);
    return -1;
}

#endif
