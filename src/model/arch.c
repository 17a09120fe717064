/*
 * arch.c — the architecture table: one entry per GGUF architecture.
 *
 * Fields: block kinds, RoPE style as llama.cpp's llama_model_rope_type()
 * gives it (NORM = adjacent pairs, llama/deepseek2; NEOX = halves, qwen/gemma),
 * FFN activation, flags (model.h) and MoE / sliding-window defaults that
 * the GGUF may override (expert_gating_func, expert_weights_norm).
 */
#include <string.h>

#include "model/model.h"

static const model_arch k_archs[] = {
    /* name        attn            rope           act             flags                                        gating                moe_norm_w swa  swa_base */
    {"qwen3moe", MODEL_ATTN_GQA, CPU_ROPE_NEOX, MODEL_ACT_SILU, ARCH_QK_NORM | ARCH_TIED_OK | ARCH_MOE, MODEL_GATING_SOFTMAX, true, 0, 0},
    {"qwen3", MODEL_ATTN_GQA, CPU_ROPE_NEOX, MODEL_ACT_SILU, ARCH_QK_NORM | ARCH_TIED_OK, MODEL_GATING_SOFTMAX, true, 0, 0},
    {"llama", MODEL_ATTN_GQA, CPU_ROPE_NORM, MODEL_ACT_SILU, ARCH_TIED_OK | ARCH_MOE, MODEL_GATING_SOFTMAX, true, 0, 0},
    {"qwen2", MODEL_ATTN_GQA, CPU_ROPE_NEOX, MODEL_ACT_SILU, ARCH_TIED_OK, MODEL_GATING_SOFTMAX, false, 0, 0},
    {"qwen2moe", MODEL_ATTN_GQA, CPU_ROPE_NEOX, MODEL_ACT_SILU, ARCH_TIED_OK | ARCH_MOE, MODEL_GATING_SOFTMAX, false, 0, 0},
    {"gemma3", MODEL_ATTN_GQA, CPU_ROPE_NEOX, MODEL_ACT_GELU,
     ARCH_QK_NORM | ARCH_POST_NORMS | ARCH_EMBD_SCALE | ARCH_TIED_OK | ARCH_SWA_PATTERN, MODEL_GATING_SOFTMAX, false, 6,
     10000.0f},
    {"qwen3next", MODEL_ATTN_GATED, CPU_ROPE_NEOX, MODEL_ACT_SILU, ARCH_TIED_OK | ARCH_MOE | ARCH_HYBRID_DELTA, MODEL_GATING_SOFTMAX, true, 0, 0},
    {"deepseek2", MODEL_ATTN_MLA, CPU_ROPE_NORM, MODEL_ACT_SILU, ARCH_TIED_OK | ARCH_MOE, MODEL_GATING_SOFTMAX, false, 0, 0},
};

const model_arch *model_arch_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++)
        if (!strcmp(k_archs[i].name, name)) return &k_archs[i];
    return NULL;
}

const char *model_arch_names(void) { return "qwen3moe, qwen3, llama, qwen2, qwen2moe, gemma3, deepseek2, qwen3next"; }
