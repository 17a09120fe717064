/*
 * cmd_synth.c — `moerun synth`: write a GGUF with random, well-formed weights in
 * the real shape, type mix and metadata of a known model (see src/synth/).
 *
 * Data is generated block by block into one reusable buffer with xoshiro256**
 * and written with large fwrites, so it runs at disk speed; a progress bar goes
 * to stderr when it is a terminal. --dry-run prints the size and parameter
 * count the file would have without writing it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "gguf/gguf.h"
#include "quant/types.h"
#include "synth/synth.h"

#define BUF_BYTES (16u << 20)

static void list_presets(FILE *f) {
    for (const char *const *n = synth_preset_names(); *n; n++) fprintf(f, "  %-20s %s\n", *n, synth_preset_desc(*n));
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: moerun synth --preset NAME --out FILE [options]\n"
            "Write a GGUF model with random but well-formed weights in a real model's shape.\n\n"
            "  --preset NAME     model shape (below)\n"
            "  --out FILE        output .gguf (not needed with --dry-run)\n"
            "  --layers N        number of layers (default: the preset's)\n"
            "  --vocab FILE      copy the tokenizer.* keys from this GGUF (vocab size taken from it);\n"
            "                    default: a synthetic byte-level BPE vocabulary\n"
            "  --seed S          random seed (default 1)\n"
            "  --ftype NAME      the file type's mix of weight types instead of the preset's, as llama.cpp's\n"
            "                    llama-quantize picks them: q4_k_m q5_k_m q3_k_m q2_k iq4_xs iq4_nl q4_0 q8_0\n"
            "                    bf16 f16 (norms, routers and convolutions stay F32)\n"
            "  --exps-type TYPE  store the routed experts (ffn_*_exps) as TYPE, e.g. q2_k, q3_k, iq4_xs, q8_0\n"
            "                    (the low-bit expert mixes people run large MoE models with); rows that\n"
            "                    are not a multiple of TYPE's block keep the preset's type\n"
            "  --dry-run         print the file size and parameter count it would write, write nothing\n"
            "  -q, --quiet       no progress bar\n"
            "  -h, --help        this help\n\npresets:\n");
    list_presets(f);
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static void progress(uint64_t done, uint64_t total, double t0, bool final) {
    double el = mr_time_s() - t0, rate = el > 0 ? done / el : 0;
    int width = 30, fill = total ? (int)((double)done / total * width) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    char a[32], b[32], c[32];
    fprintf(stderr, "\r%3d%% [%s] %s / %s  %s/s  ETA %.0fs ", total ? (int)(100.0 * done / total) : 100, bar,
            mr_fmt_bytes(a, sizeof a, done), mr_fmt_bytes(b, sizeof b, total), mr_fmt_bytes(c, sizeof c, (uint64_t)rate),
            rate > 0 ? (total - done) / rate : 0.0);
    if (final) fputc('\n', stderr);
}

int cmd_synth(int argc, char **argv) {
    const char *preset = NULL, *out = NULL, *vocab_path = NULL, *exps_type = NULL;
    int ftype = -1;
    long layers = 0;
    uint64_t seed = 1;
    bool dry = false, quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--dry-run")) dry = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = true;
        else if (!strcmp(a, "--preset") || !strcmp(a, "--out") || !strcmp(a, "--layers") || !strcmp(a, "--vocab") ||
                 !strcmp(a, "--seed") || !strcmp(a, "--exps-type") || !strcmp(a, "--ftype")) {
            if (!v) {
                fprintf(stderr, "moerun synth: %s needs a value\n", a);
                return 2;
            }
            i++;
            char *end;
            if (!strcmp(a, "--preset")) preset = v;
            else if (!strcmp(a, "--out")) out = v;
            else if (!strcmp(a, "--vocab")) vocab_path = v;
            else if (!strcmp(a, "--exps-type")) {
                const int ty = mr_type_from_name(v);
                if (ty < 0 || !synth_can_fill((uint32_t)ty) || mr_type_get((uint32_t)ty)->blck < 2) {
                    fprintf(stderr, "moerun synth: --exps-type: '%s' is not a quantized type synth can write\n", v);
                    return 2;
                }
                exps_type = v;
            } else if (!strcmp(a, "--ftype")) {
                if ((ftype = synth_ftype_from_name(v)) < 0) {
                    fprintf(stderr, "moerun synth: --ftype: '%s' is not a file type synth writes (q4_k_m q5_k_m q3_k_m "
                            "q2_k iq4_xs iq4_nl q4_0 q8_0 bf16 f16)\n", v);
                    return 2;
                }
            }
            else if (!strcmp(a, "--layers")) {
                errno = 0;
                layers = strtol(v, &end, 10);
                if (errno || *end || layers < 1 || layers > 1000) {
                    fprintf(stderr, "moerun synth: --layers must be an integer in [1, 1000], got '%s'\n", v);
                    return 2;
                }
            } else {
                errno = 0;
                seed = strtoull(v, &end, 0);
                if (errno || *end || !*v) {
                    fprintf(stderr, "moerun synth: --seed must be an integer, got '%s'\n", v);
                    return 2;
                }
            }
        } else {
            fprintf(stderr, "moerun synth: unknown option '%s' (see moerun synth --help)\n", a);
            return 2;
        }
    }
    if (!preset) {
        fprintf(stderr, "moerun synth: --preset is required; presets:\n");
        list_presets(stderr);
        return 2;
    }
    if (!synth_preset_desc(preset)) {
        fprintf(stderr, "moerun synth: unknown preset '%s'; presets:\n", preset);
        list_presets(stderr);
        return 2;
    }
    if (!out && !dry) {
        fprintf(stderr, "moerun synth: --out FILE is required (or --dry-run)\n");
        return 2;
    }

    gguf_ctx *vocab = NULL;
    int64_t n_vocab = 0;
    if (vocab_path) {
        if (!(vocab = gguf_open(vocab_path))) {
            fprintf(stderr, "moerun synth: %s\n", mr_geterr());
            return 1;
        }
        const gguf_kv *tk = gguf_find(vocab, "tokenizer.ggml.tokens");
        if (!tk || tk->val.type != GGUF_VT_ARRAY || tk->val.arr_type != GGUF_VT_STRING || tk->val.n == 0) {
            fprintf(stderr, "moerun synth: %s: no tokenizer.ggml.tokens string array\n", vocab_path);
            gguf_close(vocab);
            return 1;
        }
        n_vocab = (int64_t)tk->val.n;
    }

    int rc = 1;
    synth_plan pl;
    gguf_writer *w = NULL;
    uint8_t *buf = NULL;
    if (synth_plan_build(&pl, preset, (int)layers, n_vocab) != 0) {
        fprintf(stderr, "moerun synth: %s\n", mr_geterr());
        gguf_close(vocab);
        return 1;
    }
    if (ftype >= 0 && synth_plan_set_ftype(&pl, ftype) != 0) { /* the names parsed are all written */
        fprintf(stderr, "moerun synth: %s\n", mr_geterr());
        synth_plan_free(&pl);
        gguf_close(vocab);
        return 2;
    }
    if (exps_type) {
        const int ne = synth_plan_set_exps_type(&pl, (uint32_t)mr_type_from_name(exps_type));
        if (ne == 0) {
            fprintf(stderr, "moerun synth: --exps-type %s: preset %s has no routed experts whose rows fit it\n",
                    exps_type, preset);
            synth_plan_free(&pl);
            gguf_close(vocab);
            return 2;
        }
    }
    if (!(w = gguf_writer_new(dry ? "/dev/null" : out))) goto fail;
    if (synth_write_meta(w, &pl, vocab, seed) != 0) goto fail;
    for (int k = 0; k < pl.n_t; k++)
        if (gguf_writer_add_tensor(w, pl.t[k].name, pl.t[k].type, pl.t[k].n_dims, pl.t[k].ne) != 0) goto fail;
    uint64_t fsize = gguf_writer_file_size(w);

    char a[32], b[32];
    if (dry) {
        printf("preset:     %s (%s)\n", preset, synth_preset_desc(preset));
        printf("layers:     %d\n", pl.n_layer);
        printf("file type:  %s\n", synth_ftype_name(pl.ftype));
        printf("vocab:      %lld%s\n", (long long)pl.n_vocab, vocab ? " (from --vocab)" : " (synthetic)");
        printf("tensors:    %d\n", pl.n_t);
        /* per-type breakdown */
        for (uint32_t ty = 0; ty < MR_TYPE_COUNT; ty++) {
            uint64_t np = 0, nb = 0;
            int nt = 0;
            for (int k = 0; k < pl.n_t; k++)
                if (pl.t[k].type == ty) {
                    uint64_t ne = (uint64_t)pl.t[k].ne[0] * pl.t[k].ne[1] * pl.t[k].ne[2];
                    np += ne;
                    nb += mr_row_size(ty, pl.t[k].ne[0]) * (ne / (uint64_t)pl.t[k].ne[0]);
                    nt++;
                }
            if (nt)
                printf("  %-6s %4d tensors %10s params %10s\n", mr_type_name(ty), nt, mr_fmt_count(a, sizeof a, np),
                       mr_fmt_bytes(b, sizeof b, nb));
        }
        printf("params:     %s (%llu)\n", mr_fmt_count(a, sizeof a, pl.n_params), (unsigned long long)pl.n_params);
        printf("file size:  %s (%llu bytes)\n", mr_fmt_bytes(b, sizeof b, fsize), (unsigned long long)fsize);
        printf("bpw:        %.3f\n", 8.0 * (double)pl.data_bytes / (double)pl.n_params);
        gguf_writer_abort(w);
        synth_plan_free(&pl);
        gguf_close(vocab);
        return 0;
    }

    if (gguf_writer_begin_data(w) != 0) goto fail;
    if (!(buf = mr_malloc_aligned(BUF_BYTES))) goto fail;
    bool bar = !quiet && isatty(2);
    double t0 = mr_time_s(), last = 0;
    uint64_t done = 0;
    for (int k = 0; k < pl.n_t; k++) {
        const synth_tensor *t = &pl.t[k];
        const mr_type_traits *tr = mr_type_get(t->type);
        uint64_t ne = (uint64_t)t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        uint64_t left = ne / tr->blck * tr->tsize, chunk = BUF_BYTES / tr->tsize * tr->tsize;
        synth_rng r;
        synth_rng_seed(&r, seed * 0x9e3779b97f4a7c15ull ^ name_hash(t->name));
        while (left) {
            uint64_t n = MR_MIN(left, chunk);
            if (synth_fill(t, &r, buf, n) != 0 || gguf_writer_write_data(w, buf, n) != 0) goto fail;
            left -= n;
            done += n;
            if (bar && mr_time_s() - last > 0.2) {
                last = mr_time_s();
                progress(done, pl.data_bytes, t0, false);
            }
        }
    }
    if (bar) progress(done, pl.data_bytes, t0, true);
    int crc = gguf_writer_close(w);
    w = NULL;
    if (crc != 0) goto fail;
    double el = mr_time_s() - t0;
    printf("wrote %s: %s, %s params, %d tensors in %.1f s (%s/s)\n", out, mr_fmt_bytes(a, sizeof a, fsize),
           mr_fmt_count(b, sizeof b, pl.n_params), pl.n_t, el, mr_fmt_bytes((char[32]){0}, 32, (uint64_t)(fsize / (el > 0 ? el : 1e-9))));
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "moerun synth: %s\n", mr_geterr());
    if (w) gguf_writer_abort(w);
    rc = 1;
done:
    mr_free_aligned(buf);
    synth_plan_free(&pl);
    gguf_close(vocab);
    return rc;
}
