/*
 * placement.h — where every tensor of a model lives (CPU, CUDA0, CUDA1, ...)
 * and how many bytes each device needs, decided from llama.cpp's flags before
 * anything is uploaded:
 *
 *   -ngl N            the last N layers go to the GPU(s), counting from the
 *                     last layer; the output layer (output_norm, output) too
 *                     when N > n_layer; N < 0 means all (n_layer + 1)
 *   -ot RE=DEV,...    POSIX extended regexes matched (searched) against tensor
 *                     names; the first matching override wins over everything
 *   -cmoe / --n-cpu-moe N   the routed experts (*_exps) of all / the first N
 *                     layers stay on the CPU (applied after the user's -ot,
 *                     like llama.cpp, which appends these as overrides)
 *   -sm none|layer|row  none: all GPU layers on the main (first) device;
 *                     layer: GPU layers split over the devices in proportion
 *                     to -ts (default: their free memory, else equally);
 *                     row: matrices of GPU layers split by rows over the
 *                     devices in proportion, everything else on the main one
 *   -ts a,b           proportions per device (',' or '/' separated)
 *   -dev CUDA0,CUDA1  the devices used for layers ("none": CPU only)
 *
 * The token embedding stays on the CPU (llama.cpp's input layer). A model
 * without output.weight (tied embeddings) gets a copy of token_embd on the
 * output device when the output layer is offloaded. The KV cache of a layer
 * lives on the layer's device (row split: the main device).
 *
 * The plan is a pure function of (tensor list, model numbers, options,
 * device memory), so it is unit-tested without a GPU; the runtime passes the
 * free memory of cudaMemGetInfo, tests pass --fake-vram style sizes.
 */
#ifndef MR_PLACEMENT_H
#define MR_PLACEMENT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "gguf/gguf.h"

#define PLC_MAX_DEV 16 /* CUDA devices */
#define PLC_CPU (-1)   /* device id of the CPU; CUDA devices are 0.. */

/* One tensor of the model (a view: the name is not copied). */
typedef struct {
    const char *name;
    uint32_t type;             /* mr_type */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
} plc_tensor;

/* The model numbers the plan needs besides the tensors. KV geometry per
 * layer: elements of one cell's keys / values over all KV heads of the layer
 * (kv_heads * kv_dk, kv_heads * kv_dv; v 0 when the values live in the keys as
 * in MLA; both 0 for recurrent layers without a cache). */
typedef struct {
    int n_layer;
    int n_embd, n_vocab, n_head;
    int n_ff;              /* widest FFN of a token: max(dense n_ff, n_expert_used * n_ff_exp) */
    int64_t *kv_k, *kv_v;  /* n_layer entries each (owned when filled by placement_model_*) */
    int64_t *rec;          /* n_layer: bytes of a recurrent layer's state per sequence (0: none) */
} plc_model;

typedef enum { PLC_SPLIT_NONE = 0, PLC_SPLIT_LAYER = 1, PLC_SPLIT_ROW = 2 } plc_split;

typedef struct {
    int n_gpu_layers;          /* -ngl */
    const char *overrides;     /* -ot, NULL for none */
    int n_cpu_moe;             /* -1: all (-cmoe), 0: none, N: first N layers */
    const char *split_mode;    /* NULL = "layer" */
    const char *tensor_split;  /* NULL = by free memory (or equal) */
    const char *devices;       /* -dev "CUDA0,CUDA1", "none", NULL = all */
    int n_ctx;                 /* KV cells */
    uint32_t type_k, type_v;   /* mr_type of the cache (F16, Q8_0, ...) */
    int n_ubatch;              /* compute-buffer estimate (0: 512) */
    int n_seq;                 /* sequences (recurrent state slots; 0: 1) */
    bool flash_attn;           /* no context-sized score buffers in the estimate */
    /* micro-batches of this many tokens or more run a device layer's RAM-resident routed
     * experts on the device, streaming the layer's expert tensors into a buffer there
     * (placement_offload_min_batch; 0: never) */
    int offload_min_batch;
} plc_options;

/* The CUDA devices there are. free[i] == 0 means "unknown" (no check). */
typedef struct {
    int n;
    uint64_t free[PLC_MAX_DEV];
    uint64_t total[PLC_MAX_DEV];
    char name[PLC_MAX_DEV][64]; /* "NVIDIA H100 80GB HBM3" or "" */
} plc_devices;

/* Per device (index 0 = CPU, 1 + i = CUDAi). */
typedef struct {
    int n_layers;          /* layers whose compute and KV cache run here */
    int first_layer, last_layer; /* -1 when none (layers need not be contiguous with -ot) */
    int n_tensors;
    uint64_t weight_bytes, kv_bytes, compute_bytes; /* kv_bytes: the KV cache and recurrent state */
    uint64_t stream_bytes; /* of compute_bytes: the buffers RAM experts are streamed into (0: none) */
} plc_dev_sum;

typedef struct {
    int n_tensors;
    int8_t *dev;          /* per tensor: PLC_CPU or a CUDA index (row split: the main device) */
    bool *row_split;      /* per tensor: its rows are split over the split devices */
    int n_layer;
    int8_t *layer_dev;    /* per layer: where it computes / keeps its KV cache */
    int output_dev;       /* the output layer's device */
    plc_split split;
    int n_split;          /* devices layers are split over */
    int split_dev[PLC_MAX_DEV];
    float split_frac[PLC_MAX_DEV]; /* normalised proportions */
    int n_cuda;           /* CUDA devices known (plc_devices.n) */
    plc_dev_sum sum[PLC_MAX_DEV + 1];
    uint64_t free[PLC_MAX_DEV]; /* copied from plc_devices (0: unknown) */
    char dev_name[PLC_MAX_DEV][64];
    char note[256];       /* e.g. "-ngl 20 ignored: no CUDA device" ("" when none) */
    int offload_min;      /* plc_options.offload_min_batch where some device streams experts, else 0 */
} placement;

/* MOERUN_OFFLOAD_MIN_BATCH, else llama.cpp's GGML_OP_OFFLOAD_MIN_BATCH, else 32: the smallest
 * micro-batch whose RAM experts run on the device (0: never). A value that is not a count
 * gets a warning and the default. */
int placement_offload_min_batch(void);

/* ---- inputs ---------------------------------------------------------------------- */

/* The tensor list of a GGUF context (views into g, valid while g is open).
 * Returns a malloc'd array of g->n_tensors entries, NULL with an error. */
plc_tensor *placement_tensors_from_gguf(const gguf_ctx *g, int *n_out);

/* Model numbers of a loaded model (KV geometry from its bound layers). The
 * argument is a struct mr_model (src/model/model.h). 0 / -1. Free with
 * placement_model_free. */
struct mr_model;
int placement_model_from_model(const struct mr_model *m, plc_model *out);
/* Allocate kv_k/kv_v for n_layer layers (zeroed) and set n_layer. 0 / -1. */
int placement_model_alloc(plc_model *pm, int n_layer);
void placement_model_free(plc_model *pm);

/* Options with llama.cpp's defaults: -ngl 0, layer split, n_ctx 4096, f16 KV, ubatch 512. */
plc_options placement_default_options(void);

/* Parse "24GiB,8GiB" (units B, K/KiB, M/MiB, G/GiB, T/TiB = powers of 1024;
 * KB/MB/GB/TB = powers of 1000; a bare number is bytes) into out[]. Returns
 * the count, or -1 with an error naming the bad item. Fills dev->n, free and
 * total when dev is not NULL (the --fake-vram test hook). */
int placement_parse_sizes(const char *s, uint64_t *out, int cap);
int placement_fake_devices(const char *s, plc_devices *dev);

/* ---- the plan ---------------------------------------------------------------------- */

/* Assign every tensor to a device and sum the bytes per device. dev may be
 * NULL (no CUDA devices). Returns 0, or -1 with an error for bad options (a
 * regex that does not compile, an unknown device name, a -ts list longer than
 * the devices). Does not check memory: see placement_check. Free with
 * placement_free. */
int placement_plan(placement *pl, const plc_tensor *t, int n_t, const plc_model *pm, const plc_options *o,
                   const plc_devices *dev);
void placement_free(placement *pl);

/* Bytes a device needs (weights + KV + compute). d: PLC_CPU or a CUDA index. */
uint64_t placement_need(const placement *pl, int d);

/* Check every CUDA device with known free memory can hold what it needs.
 * Returns 0, or -1 with an error naming the device, need vs free and a fix:
 * the smallest --n-cpu-moe N that fits (re-planning with the same inputs),
 * or, when even all experts on the CPU do not fit, "-cmoe -ngl G" with the largest G that does. */
int placement_check(const placement *pl, const plc_tensor *t, int n_t, const plc_model *pm, const plc_options *o,
                    const plc_devices *dev);

/* Smallest --n-cpu-moe N (>= o->n_cpu_moe, <= n_layer) with which every device
 * fits; -1 when none does. The largest -ngl that fits (with o's n_cpu_moe), -1
 * when not even 0 (cannot happen: 0 puts nothing on the GPUs). */
int placement_fit_n_cpu_moe(const plc_tensor *t, int n_t, const plc_model *pm, const plc_options *o,
                            const plc_devices *dev);
int placement_fit_ngl(const plc_tensor *t, int n_t, const plc_model *pm, const plc_options *o,
                      const plc_devices *dev);

/* Device name: "CPU", "CUDA0", ... into buf; returns buf. */
const char *placement_dev_name(int d, char *buf, size_t n);

/* Print the plan as a table: device, layers, tensors, weights, KV, compute,
 * total, free (and the note, if any). */
void placement_print(const placement *pl, FILE *f);

#endif
