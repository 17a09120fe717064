/*
 * cpu.h — the CPU kernels of the forward pass: weights as views into the
 * GGUF mapping, the threaded matmul wrapper over src/quant, norms, RoPE
 * (normal / NEOX, YaRN), activations, softmax, top-k routing.
 *
 * Dimension letters: T tokens of a micro-batch, D model width (n_embd),
 * H query heads, Hkv KV heads, Dk/Dv head sizes, F FFN width, E experts.
 * Activations are row-major float (T, width): token t's row at x + t*width.
 */
#ifndef MR_CPU_H
#define MR_CPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/threadpool.h"

/* A weight: n_mat matrices (experts; 1 for plain weights) of m rows of k
 * elements in GGUF type `type`. data == NULL means "absent" (optional
 * tensors). Shapes in GGUF order: ne = {k, m, n_mat}. */
typedef struct {
    const void *data;
    const char *name;   /* the tensor name (owned by the GGUF context) */
    uint32_t type;
    int64_t k, m, n_mat;
    size_t row_bytes;   /* mr_row_size(type, k) */
    size_t mat_bytes;   /* row_bytes * m */
} mr_weight;

static inline bool mr_weight_ok(const mr_weight *w) { return w->data != NULL; }

/* ---- matmul --------------------------------------------------------------- */
/* State the matmul wrapper needs: the pool, a growable buffer for quantized
 * activations and a weight-bytes counter (for the roofline stats). */
typedef struct {
    mr_threadpool *tp;
    void *xq;           /* quantized activations (aligned) */
    size_t xq_cap;
    bool ref;           /* scalar reference kernels, single-threaded */
    uint64_t bytes_read;/* weight bytes read so far (caller resets) */
    struct cpu_moe_buf *moe; /* MoE scratch (moe.c), freed by cpu_mm_free */
} cpu_mm;

/* y (T, m) = x (T, k) @ W[mat]^T for matrix `mat` of W. The T rows of x are
 * quantized once into the weight's vec-dot type, then the rows of W are split
 * across the pool's threads. Returns 0, -1 on allocation failure. */
int cpu_matmul(cpu_mm *mm, const mr_weight *W, int64_t mat, const float *x, int64_t T, float *y);
/* Same with an explicit output row stride (floats) and input row stride. */
int cpu_matmul_s(cpu_mm *mm, const mr_weight *W, int64_t mat, const float *x, int64_t x_stride, int64_t T,
                 float *y, int64_t y_stride);
/* Per-head matmuls: for every matrix h < W.n_mat, y[t*y_stride + h*y_head + i] = row i of W[h]
 * dotted with x[t*x_stride + h*x_head + 0..k). All heads' inputs are quantized first, then their
 * row chunks run as jobs of up to 16 matrices (MLA's wk_b / wv_b: one barrier for 16 heads
 * instead of one per head). */
int cpu_matmul_heads(cpu_mm *mm, const mr_weight *W, const float *x, int64_t x_stride, int64_t x_head, int64_t T,
                     float *y, int64_t y_stride, int64_t y_head);
/* y[i] (T, W[i].m) = x (T, k) @ W[i]^T for the n (<= 8) weights of matrix 0
 * that share the input (q/k/v, gate/up): x is quantized once per activation
 * format and all row chunks of all weights run as one job (one barrier). */
int cpu_matmul_multi(cpu_mm *mm, int n, const mr_weight *const *W, const float *x, int64_t T, float *const *y);
/* Dequantize row r of matrix 0 of W into out (k floats); adds to bytes_read. */
int cpu_get_row(cpu_mm *mm, const mr_weight *W, int64_t r, float *out);
void cpu_mm_free(cpu_mm *mm);

/* ---- element-wise / row kernels (plain C: they are the reference) ------------ */
/* out[i] = x[i] / rms(x) * w[i] over n elements (w may be NULL: no weight). In-place allowed. */
void cpu_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
/* Per-row RMSNorm of T rows of width n (row stride = n). */
void cpu_rmsnorm_rows(float *out, const float *x, const float *w, int64_t T, int n, float eps);
void cpu_silu_mul(float *g, const float *u, int64_t n);   /* g = silu(g) * u (AVX2 where available) */
void cpu_gelu_mul(float *g, const float *u, int64_t n);   /* g = gelu_tanh(g) * u (AVX2 where available) */
void cpu_silu_mul_ref(float *g, const float *u, int64_t n); /* the scalar references (libm expf / tanhf) */
void cpu_gelu_mul_ref(float *g, const float *u, int64_t n);
float cpu_gelu(float x);
void cpu_softmax(float *x, int n);
void cpu_add(float *y, const float *x, int64_t n);        /* y += x */
/* Indices of the k largest values of x[0..n) in descending order (ties: lower index first). */
void cpu_topk(const float *x, int n, int k, int *idx);

/* ---- RoPE -------------------------------------------------------------------- */
enum { CPU_ROPE_NORM = 0, CPU_ROPE_NEOX = 2 };

/* Everything ggml_rope_ext takes besides the tensor, with llama.cpp's meaning:
 * n_dims rotated dims (the rest pass through), freq_base, freq_scale (1 /
 * scaling factor), YaRN ext_factor (0 = off), attn_factor (magnitude),
 * beta_fast/slow, n_ctx_orig, and optional per-dim-pair freq_factors. */
typedef struct {
    int mode;              /* CPU_ROPE_NORM | CPU_ROPE_NEOX */
    int n_dims;
    float freq_base, freq_scale;
    float ext_factor, attn_factor, beta_fast, beta_slow;
    int n_ctx_orig;
    const float *freq_factors; /* n_dims/2 or NULL */
} cpu_rope_params;

/* Fill cs (n_dims floats: cos, sin interleaved per pair) for position pos
 * with ggml's rope_yarn formula. */
void cpu_rope_cache(const cpu_rope_params *p, float pos, float *cs);
/* Rotate n_heads vectors of head_dim floats (stride head_dim) in place with
 * the cache of cpu_rope_cache. */
void cpu_rope_apply(const cpu_rope_params *p, const float *cs, float *x, int n_heads, int head_dim);

#endif
