/*
 * forward_gpu.h — the forward pass on GPU devices (any gpu_api backend:
 * CUDA, or the host emulation in tests), layer by layer as the placement
 * plan says; the CPU forward (forward.c) calls in for the layers and the
 * output head placed on a device.
 *
 * What runs on a device: GQA attention layers (q/k/v biases, QK-norm, RoPE
 * with YaRN and freq factors, sliding windows via the mask, softcap), MLA
 * (deepseek2, absorbed form, q-lora or not, f16/q8_0 latent cache), SiLU
 * and GeGLU dense FFNs (post-norms: gemma3), MoE with softmax / sigmoid / softmax-over-chosen gating,
 * selection bias, group-limited selection, normalised and scaled weights,
 * shared experts without a gate, and the output head. The routed experts of a device layer may stay
 * on the CPU (-cmoe, --n-cpu-moe, -ot exps=CPU): the device routes, the CPU
 * runs the chosen experts on its kernels, the device adds their sum.
 * model_gpu_supported() says what does not run yet (the qwen3next layers,
 * gated shared experts, row split, tensors of a CPU layer placed on a
 * device): the context then runs on the
 * CPU with a warning.
 *
 * Residency: the hidden state stays on a device across consecutive layers
 * there and moves (device -> host -> device) only where the plan changes
 * device. K/V of a device layer live on that device in kv.c's layout; the
 * host keeps cell positions and sequences, so every kv.c operation (seq_rm,
 * seq_cp, clear) stays valid.
 */
#ifndef MR_FORWARD_GPU_H
#define MR_FORWARD_GPU_H

#include <stdbool.h>

#include "gpu/gpu_api.h"
#include "model/kv.h"
#include "model/model.h"
#include "model/placement.h"

typedef struct model_gpu model_gpu;

/* NULL when the plan can run on api's devices; else a static reason. */
const char *model_gpu_supported(const mr_model *m, const placement *pl);

/* Upload the weights the plan puts on devices, allocate their KV cache and
 * scratch for micro-batches of n_ub tokens. NULL with an error. */
model_gpu *model_gpu_new(const gpu_api *api, const mr_model *m, const placement *pl, const kv_cache *kv, int n_ub);
void model_gpu_free(model_gpu *g);

/* True when layer il computes on a device; the output head likewise. */
bool model_gpu_layer_on(const model_gpu *g, int il);
bool model_gpu_head_on(const model_gpu *g);
/* Weight bytes uploaded to the devices. */
uint64_t model_gpu_weight_bytes(const model_gpu *g);
/* Device memory the context holds on all its devices: weights, KV, buffers, the backends'
 * scratch (the CUDA context's own overhead not included). */
uint64_t model_gpu_dev_bytes(const model_gpu *g);
const char *model_gpu_backend(const model_gpu *g); /* the gpu_api's name */
double model_gpu_bw_gbs(const model_gpu *g);        /* slowest used device's peak GB/s, 0 unknown */
/* Decode steps replayed from a captured graph, and captures (MOERUN_CUDA_GRAPH=0: none). */
void model_gpu_graph_stats(const model_gpu *g, int *launches, int *captures);
/* RAM experts streamed for large micro-batches: the devices' buffers for them, bytes so far. */
void model_gpu_stream_stats(const model_gpu *g, uint64_t *buf_bytes, uint64_t *streamed);

#endif
