/*
 * synth.h — synthetic GGUF models: presets with the real shapes and metadata of
 * llama.cpp-converted MoE models, filled with random but well-formed blocks.
 *
 * A plan (synth_plan) is the list of tensors (name, shape, type, how to fill)
 * for a preset at a given layer count and vocabulary size; the type mix
 * follows llama.cpp's quantization rules (Q4_K_M / Q5_K_M / Q8_0 / Q4_0,
 * use_more_bits for attn_v / ffn_down, Q6_K output, shape fallbacks), so the
 * sizes and parameter counts match the real files. `moerun synth` writes it.
 */
#ifndef MR_SYNTH_H
#define MR_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"

/* How a tensor's values are drawn. */
typedef enum {
    SYNTH_INIT_WEIGHT, /* centred, std ~ 1/sqrt(ne[0]) (a matmul weight) */
    SYNTH_INIT_NORM,   /* 1 +- 0.05 (RMS norm gains) */
    SYNTH_INIT_SMALL,  /* uniform in +-0.01 (biases, expert selection bias) */
    SYNTH_INIT_SSM_A,  /* negative, in [-2, -0.1] (qwen3next -exp(A_log)) */
    SYNTH_INIT_CONV,   /* uniform, std ~ 0.3 (short convolution taps) */
} synth_init;

typedef struct {
    char name[80];
    uint32_t type; /* mr_type */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    synth_init init;
} synth_tensor;

typedef struct synth_preset synth_preset;

typedef struct {
    const synth_preset *p;
    int ftype; /* llama_ftype (general.file_type): the preset's, or synth_plan_set_ftype's */
    int n_layer;
    int64_t n_vocab;
    synth_tensor *t;
    int n_t;
    uint64_t n_params;    /* sum of tensor elements */
    uint64_t data_bytes;  /* sum of tensor bytes (no padding) */
} synth_plan;

/* Names of all presets, NULL-terminated; and a one-line description of each. */
const char *const *synth_preset_names(void);
const char *synth_preset_desc(const char *name);
/* The preset's own vocabulary size (used when no --vocab is given). */
int64_t synth_preset_vocab(const char *name);

/* Build the plan for preset `name` with n_layer layers (0: the preset's) and
 * n_vocab tokens (0: the preset's). Returns 0, or -1 with mr_geterr() set
 * (unknown preset, bad layer count). Free with synth_plan_free(). */
int synth_plan_build(synth_plan *plan, const char *name, int n_layer, int64_t n_vocab);
void synth_plan_free(synth_plan *plan);
/* File types synth writes, by llama.cpp's names ("q4_k_m", "q3_k_m", "q2_k", "iq4_xs",
 * "iq4_nl", "q8_0", "q4_0", "bf16", "f16", ...; case-insensitive): the llama_ftype, or -1; and
 * the name of one (NULL if synth does not write it). */
int synth_ftype_from_name(const char *name);
const char *synth_ftype_name(int ftype);
/* Re-type the plan's weights as file type `ftype`'s mix (llama.cpp's choices per tensor for
 * these shapes); updates data_bytes. 0, or -1 for a file type synth does not write. */
int synth_plan_set_ftype(synth_plan *plan, int ftype);
/* Store the routed experts (names with "_exps.weight") as `type` where their rows are a
 * multiple of its block (the others keep their type); updates data_bytes. Returns how many
 * tensors changed. */
int synth_plan_set_exps_type(synth_plan *plan, uint32_t type);

/* Add all metadata of the plan to w: general.*, ARCH.* hyperparameters and the
 * tokenizer: copied (every tokenizer.* key) from `vocab` when not NULL, else a
 * synthetic byte-level BPE vocabulary of plan->n_vocab tokens. Returns 0/-1. */
int synth_write_meta(gguf_writer *w, const synth_plan *plan, const gguf_ctx *vocab, uint64_t seed);

/* ---- data generation (synth_fill.c) --------------------------------------------- */
typedef struct { uint64_t s[4]; } synth_rng;
void synth_rng_seed(synth_rng *r, uint64_t seed);
uint64_t synth_rng_next(synth_rng *r); /* xoshiro256** */

/* Fill nbytes (a whole number of blocks of t->type) at dst with the next part of
 * tensor t's data, drawing from r. Returns 0, or -1 for a type it cannot make. */
int synth_fill(const synth_tensor *t, synth_rng *r, void *dst, uint64_t nbytes);
/* Whether synth_fill() can generate the type. */
bool synth_can_fill(uint32_t type);

/* Synthetic byte-level BPE vocabulary: 256 GPT-2 byte tokens, merged tokens up
 * to n_vocab - 2, then <|begin_of_text|> (bos, n_vocab-2) and <|end_of_text|>
 * (eos, n_vocab-1). Arrays are heap-allocated; free with synth_vocab_free(). */
typedef struct {
    int64_t n_tokens, n_merges;
    char **tokens;
    int32_t *types;
    char **merges;
    uint32_t bos, eos;
} synth_vocab;
int synth_vocab_make(synth_vocab *v, int64_t n_vocab, uint64_t seed);
void synth_vocab_free(synth_vocab *v);

#endif
