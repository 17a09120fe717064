/*
 * cuda_backend.h — the CUDA backend's plain C API (callable from the C
 * engine; implemented in the .cu files of src/cuda, built only with -DMOERUN_CUDA=ON).
 *
 * Everything is explicit: a context (mrc_ctx) per device owns one stream, a
 * cuBLAS handle and a growable scratch buffer; ops take device pointers and
 * are queued on the context's stream (asynchronous: call mrc_sync to wait and
 * to collect errors of the kernels). Functions return 0 / -1 (or pointer /
 * NULL) and record the error with mr_seterr(), naming the kernel and shapes:
 *   "cuda: mmvq Q4_K (m 768, k 2048, ids 8): invalid configuration argument".
 * MOERUN_CUDA_SYNC=1 synchronises after every launch (errors at the right op).
 *
 * Activations of the quantized matvec are quantized once per input into
 * "Q8_1 SoA" rows (mrc_q8_1_row_size(k) bytes): k int8 quants, then k/32
 * (d, s) float pairs, s = d * sum(q) (the K-quant mins need it); see
 * src/cuda/README.md for why.
 *
 * Shapes follow the CPU side (src/cpu/cpu.h): a weight has n_mat matrices
 * of m rows of k elements in GGUF type `type`, activations are row-major
 * float (T, width).
 */
#ifndef MR_CUDA_BACKEND_H
#define MR_CUDA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- devices ---------------------------------------------------------------------- */
typedef struct {
    int id;
    char name[256];
    uint64_t free, total;      /* bytes, cudaMemGetInfo */
    int cc_major, cc_minor;
    int n_sm;
    double mem_bw_gbs;         /* theoretical peak from clock and bus width (0 when unknown) */
} mrc_device_info;

/* CUDA devices usable by this process: 0 when there is no driver, no device
 * or any other error (never an error by itself). */
int mrc_device_count(void);
/* Facts about device `dev` (selects it on the calling thread). 0 / -1. */
int mrc_device_info_get(int dev, mrc_device_info *out);

/* ---- context ------------------------------------------------------------------------ */
typedef struct mrc_ctx mrc_ctx;
mrc_ctx *mrc_init(int dev);
void mrc_free(mrc_ctx *c);
int mrc_device_of(const mrc_ctx *c);
/* Wait for everything queued; returns -1 with the error of a failed kernel. */
int mrc_sync(mrc_ctx *c);
/* Make c's device the calling thread's current one (kernels, cuBLAS, events and allocations
 * act on the current device; a cached cudaSetDevice). The gpu_api table calls it before
 * every op, so contexts on several GPUs can be used in turn. */
int mrc_make_current(mrc_ctx *c);
/* The cudaStream_t of the context (as void*, for callers that queue copies). */
void *mrc_stream(mrc_ctx *c);

/* Device memory (on c's device). mrc_dfree(NULL) is a no-op. */
void *mrc_alloc(mrc_ctx *c, size_t n);
void mrc_dfree(void *p);
/* Copies on c's stream; host memory should be pinned for overlap (mrc_host_alloc). */
int mrc_upload(mrc_ctx *c, void *dst, const void *src, size_t n);
int mrc_download(mrc_ctx *c, void *dst, const void *src, size_t n);
/* n bytes from src (on src_c's device, once src_c's queued work is done: it synchronizes
 * src_c) to dst on dst_c's device, queued on dst_c's stream: direct between GPUs where they
 * allow peer access, staged by the driver otherwise. */
int mrc_peer_copy(mrc_ctx *dst_c, void *dst, mrc_ctx *src_c, const void *src, size_t n);
int mrc_memset(mrc_ctx *c, void *dst, int v, size_t n);
void *mrc_host_alloc(size_t n); /* pinned host memory */
void mrc_host_free(void *p);

/* ---- weights -------------------------------------------------------------------------- */
/* Types the matvec / dequant kernels read: F32 F16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K. */
bool mrc_type_supported(uint32_t type);

typedef struct {
    void *data;          /* device, 256-byte aligned (cudaMalloc) */
    uint32_t type;
    int64_t k, m, n_mat;
    size_t row_bytes, mat_bytes;
    bool owned;          /* data freed by mrc_weight_free */
} mrc_weight;

/* Upload n_mat matrices of m rows of k elements of `type` from host memory
 * (a GGUF mapping). Checks the type is supported and k a multiple of its
 * block size. 0 / -1. */
int mrc_weight_upload(mrc_ctx *c, mrc_weight *w, const void *host, uint32_t type, int64_t k, int64_t m,
                      int64_t n_mat);
/* Describe a weight already in device memory at `dev_ptr` (16-byte aligned;
 * not owned), e.g. inside one big per-device pool. 0 / -1. */
int mrc_weight_view(mrc_weight *w, void *dev_ptr, uint32_t type, int64_t k, int64_t m, int64_t n_mat);
void mrc_weight_free(mrc_weight *w);

/* ---- matrix-vector products (decode) ------------------------------------------------------ */
/* Bytes of one Q8_1 SoA activation row of k elements (k a multiple of 32). */
size_t mrc_q8_1_row_size(int64_t k);
/* Quantize n_rows rows of k floats (row stride k) into Q8_1 SoA rows (stride
 * mrc_q8_1_row_size(k)). */
int mrc_quantize_q8_1(mrc_ctx *c, const float *x, void *xq, int64_t k, int64_t n_rows);

/* y[r] = dot(row r of matrix `mat` of W, x) for r < W->m. Quantized weights
 * read xq (one Q8_1 row of W->k), float weights (F32, F16) read x. */
int mrc_matvec(mrc_ctx *c, const mrc_weight *W, int64_t mat, const float *x, const void *xq, float *y);

/* Grouped MoE matvec for one token: for slot i < n_ids, y[i*W->m + r] =
 * dot(row r of matrix ids[i] of W, activation i), with ids on the device (ids NULL:
 * matrix 0 for every slot, i.e. one matrix times n_ids activations in one launch).
 * Activation i is at xq + i*xq_stride (xq_stride 0: one activation shared by
 * all slots, as for gate/up; the Q8_1 row size for down). Float weights read
 * x / x_stride (floats) instead. Slots whose id is outside [0, n_mat) get 0. */
int mrc_moe_matvec(mrc_ctx *c, const mrc_weight *W, const int32_t *ids, int n_ids, const float *x, size_t x_stride,
                   const void *xq, size_t xq_stride, float *y);

/* y[i] = W[i] xq for i < n <= 3 matrices (matrix 0 of each), each paired with W[0] as
 * mrc_matvec_n_pair says, one launch (q, k and v of a token); the same sums as mrc_matvec of each. */
int mrc_matvec_n(mrc_ctx *c, int n, const mrc_weight *const *W, const void *xq, float *const *y);
/* Two weights mrc_matvec_n reads in one launch: one row length, and one quantized type or two
 * K-quants of 64-element units (Q4_K, Q5_K, Q6_K: a Q4_K_M file's Q4_K q and k with a Q6_K v). */
static inline bool mrc_kq64(uint32_t t) { return t == MR_TYPE_Q4_K || t == MR_TYPE_Q5_K || t == MR_TYPE_Q6_K; }
static inline bool mrc_matvec_n_pair(const mrc_weight *a, const mrc_weight *b) {
    return a->k == b->k && !mr_type_is_float(a->type) &&
           (a->type == b->type || (mrc_kq64(a->type) && mrc_kq64(b->type)));
}
/* moe_matvec2 of gate and up, then act_q8 (act(g) * u into g_out, which may be NULL, and its
 * Q8_1 rows into xq_out, row stride mrc_q8_1_row_size(m)) in one launch, the same floats and
 * bytes; gate and up of one quantized type and shape, m a multiple of 32. */
int mrc_moe_gate_up_q8(mrc_ctx *c, int gelu, const mrc_weight *Wg, const mrc_weight *Wu, const int32_t *ids, int n_ids,
                       const void *xq, size_t xq_stride, float *g_out, void *xq_out);
/* One token's router (float weights W: E = W->m logits of x, into logits) and its routing (as
 * mrc_moe_route_ex) in one launch: the same logits as mrc_matvec, the same choices. */
int mrc_router_route(mrc_ctx *c, const mrc_weight *W, const float *x, float *logits, int k, int gating,
                     const float *bias, bool norm_w, float w_scale, int n_group, int n_group_used, int32_t *ids,
                     float *weights);
/* One token's routed experts in one launch: y[r] = sum over j < n_ids of wts[j] (device) *
 * dot(row r of matrix ids[j], Q8_1 activation j at xq + j * xq_stride) (acc: added to y);
 * the same floats as mrc_moe_matvec into slots, then mrc_moe_combine. Quantized W, n_ids <= 64. */
int mrc_moe_matvec_sum(mrc_ctx *c, const mrc_weight *W, const int32_t *ids, int n_ids, const void *xq,
                       size_t xq_stride, const float *wts, float *y, int acc);
/* mrc_moe_matvec of W1 into y1 and of W2 into y2 (the same ids and Q8_1 activations: gate and
 * up) in one launch; W1 and W2 of one quantized type and shape (mrc_matvec2_ok); at most
 * 32767 slots. */
bool mrc_matvec2_ok(const mrc_weight *W1, const mrc_weight *W2);
int mrc_moe_matvec2(mrc_ctx *c, const mrc_weight *W1, const mrc_weight *W2, const int32_t *ids, int n_ids,
                    const void *xq, size_t xq_stride, float *y1, float *y2);
/* mrc_moe_matvec (W2 not NULL: mrc_moe_matvec2) over slots whose runs of equal ids share a matrix:
 * a prompt's (token, expert) pairs sorted by expert, or ids NULL (every slot matrix 0: a few
 * tokens through one matrix). A block takes 8 consecutive slots and reads each weight row once
 * per run of one matrix among them, not once per slot: the weights of an expert with 40 tokens
 * are read 5 times, not 40. Quantized weights; the same floats as mrc_moe_matvec, any ids order
 * (unsorted ids are correct, only slower). At most 524280 slots (262140 with W2). */
int mrc_moe_matvec_grp(mrc_ctx *c, const mrc_weight *W1, const mrc_weight *W2, const int32_t *ids, int n_ids,
                       const void *xq, size_t xq_stride, float *y1, float *y2);
/* mrc_moe_gate_up_q8 over such slots: the same floats and bytes. */
int mrc_moe_gate_up_q8_grp(mrc_ctx *c, int gelu, const mrc_weight *Wg, const mrc_weight *Wu, const int32_t *ids,
                           int n_ids, const void *xq, size_t xq_stride, float *g_out, void *xq_out);

/* ---- element-wise / row ops ------------------------------------------------------------------ */
/* out = x / rms(x) * w per row of n (w may be NULL); in-place allowed. */
int mrc_rmsnorm(mrc_ctx *c, float *out, const float *x, const float *w, int64_t n_rows, int n, float eps);
/* x += res where res is not NULL (as mrc_add), then rmsnorm of x (as mrc_rmsnorm, into out)
 * and the Q8_1 quantization of out (as mrc_quantize_q8_1, into xq), in one launch with the
 * same floats and bytes; n a multiple of 32; out may be x. */
int mrc_rmsnorm_q8(mrc_ctx *c, float *out, void *xq, float *x, const float *res, const float *w, int64_t n_rows, int n,
                   float eps);
/* g = silu(g) * u (gelu: gelu(g) * u) for n_rows rows of k, then g quantized into Q8_1 rows
 * at xq: silu_mul / gelu_mul and quantize_q8_1 in one launch, the same floats and bytes. */
int mrc_act_q8(mrc_ctx *c, int gelu, float *g, const float *u, void *xq, int64_t n_rows, int64_t k);
/* g = silu(g) * u, n elements. */
int mrc_silu_mul(mrc_ctx *c, float *g, const float *u, int64_t n);
/* g = gelu(g) * u (tanh approximation, as ggml_gelu), n elements. */
int mrc_gelu_mul(mrc_ctx *c, float *g, const float *u, int64_t n);
/* Row softmax in place. */
int mrc_softmax(mrc_ctx *c, float *x, int64_t n_rows, int n);
/* y += x */
int mrc_add(mrc_ctx *c, float *y, const float *x, int64_t n);
/* y[r*n + i] += x[i] for r < rows, i < n: a bias added to every row, one launch. */
int mrc_add_rows(mrc_ctx *c, float *y, const float *x, int64_t rows, int64_t n);

/* RoPE with ggml's rope_yarn (same meaning as cpu_rope_params). */
enum { MRC_ROPE_NORM = 0, MRC_ROPE_NEOX = 2 };
typedef struct {
    int mode, n_dims;
    float freq_base, freq_scale, ext_factor, attn_factor, beta_fast, beta_slow;
    int n_ctx_orig;
    const float *freq_factors; /* device, n_dims/2 or NULL */
} mrc_rope_params;
/* Rotate x (n_tok, n_heads, head_dim) in place; pos: device, n_tok positions. */
int mrc_rope(mrc_ctx *c, const mrc_rope_params *p, float *x, const int32_t *pos, int n_tok, int n_heads, int head_dim);
/* Per head row of x (n_tok, n_heads, head_dim): RMSNorm with weight w1 for heads < split and
 * w2 for the others (either may be NULL: no weight), then RoPE as mrc_rope: the q and k norms
 * and the rotation of a token in one launch (its q heads, then its k heads). The same floats as
 * mrc_rmsnorm of each part, then mrc_rope; head_dim below 1024. */
int mrc_norm_rope(mrc_ctx *c, const mrc_rope_params *p, float *x, const int32_t *pos, int n_tok, int n_heads,
                  int head_dim, const float *w1, const float *w2, int split, float eps);

/* MoE routing per token (row of n_expert router logits): gating 1 softmax,
 * 2 sigmoid, 3 softmax over the chosen (llama.cpp's ids); bias (n_expert,
 * may be NULL) is added for the selection only; weights normalised to sum 1
 * when norm_w, then multiplied by w_scale (0/1: off). Writes ids (n_tok, k)
 * and weights (n_tok, k), best first; ties pick the lower index. n_expert <= 1024, k <= 32. */
int mrc_moe_route(mrc_ctx *c, const float *logits, int n_tok, int n_expert, int k, int gating, const float *bias,
                  bool norm_w, float w_scale, int32_t *ids, float *weights);
/* The same with group-limited selection (DeepSeek-V3): the experts form n_group equal groups,
 * a group scores the sum of its two best selection scores, only the n_group_used best groups
 * (ties: lower index) compete for the top k. n_group <= 64; 0 or n_group_used >= n_group: off. */
int mrc_moe_route_ex(mrc_ctx *c, const float *logits, int n_tok, int n_expert, int k, int gating, const float *bias,
                     bool norm_w, float w_scale, int n_group, int n_group_used, int32_t *ids, float *weights);

/* The n (token, slot) pairs of a prompt ordered by expert, so that a grouped matvec over them
 * reads each expert's weights for all its tokens in a row (from L2): pair i = t*k + j has
 * expert ids[i]; writes perm[s] = the pair at sorted position s, sids[s] = ids[perm[s]],
 * stok[s] = perm[s] / k. Experts ascending (ids outside [0, n_expert) last); the order of
 * one expert's pairs is unspecified on the device (each pair is computed on its own, so
 * results do not depend on it). n <= 65535, n_expert <= 4096. */
int mrc_moe_sort(mrc_ctx *c, const int32_t *ids, int n, int n_expert, int k, int32_t *perm, int32_t *sids,
                 int32_t *stok);
/* Indexed row copy: for i < n, dst row (dst_idx ? dst_idx[i] : i) = src row (src_idx ?
 * src_idx[i] : i), rows of row_bytes (a multiple of 4) bytes: a gather (src_idx) or a scatter
 * (dst_idx). */
int mrc_rows_idx(mrc_ctx *c, void *dst, const int32_t *dst_idx, const void *src, const int32_t *src_idx, int64_t n,
                 size_t row_bytes);

/* Write T tokens' K (or V) rows, src (T, heads, d) floats, into a cache laid out as
 * [head][n_ctx] rows of row_bytes (kv.c's layout) at the cells cells[t] (device), converted
 * to type F32, F16 or Q8_0. */
int mrc_kv_write(mrc_ctx *c, uint32_t type, const float *src, int heads, int d, int T, const int32_t *cells,
                 void *base, size_t row_bytes, int n_ctx);
/* Where mrc_norm_rope_kv writes K and V: the tokens' cells (n_ctx per head), K rows of type_k
 * at base_k (rb_k bytes each), V rows (n_tok, heads, dv) from v as type_v at base_v. */
typedef struct {
    const int32_t *cells;
    int n_ctx;
    uint32_t type_k;
    void *base_k;
    size_t rb_k;
    uint32_t type_v;
    const float *v;
    int dv;
    void *base_v;
    size_t rb_v;
} mrc_kv_put;
/* mrc_norm_rope of x (the k heads from split on), then those k rows and the V rows into the
 * cache as mrc_kv_write2: the same floats and bytes, one launch (a decode step's Qwen3 q/k
 * norms, RoPE and cache write). */
int mrc_norm_rope_kv(mrc_ctx *c, const mrc_rope_params *p, float *x, const int32_t *pos, int n_tok, int n_heads,
                     int head_dim, const float *w1, const float *w2, int split, float eps, const mrc_kv_put *kv);
/* K and V of the same tokens and cells (heads each) in one launch: mrc_kv_write of each. */
int mrc_kv_write2(mrc_ctx *c, int heads, int T, const int32_t *cells, int n_ctx, uint32_t type_k, const float *k,
                  int dk, void *base_k, size_t rb_k, uint32_t type_v, const float *v, int dv, void *base_v,
                  size_t rb_v);
/* dst[r * dst_stride + i] = src[r * src_stride + i] for r < rows, i < cols (floats). */
int mrc_copy_rows(mrc_ctx *c, float *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows,
                  int64_t cols);
/* y (n_tok, n) = sum over j < k of w[t][j] * slots (n_tok, k, n): the routed experts' sum;
 * acc: y += that sum instead (the residual add fused; the same float as a separate add). */
int mrc_moe_combine(mrc_ctx *c, float *y, const float *slots, const float *w, int n_tok, int k, int n, int acc);

/* ---- Qwen3-Next (src/cuda/delta.cu) --------------------------------------------------------------- */
/* y[r*n + i] *= sigmoid(gate[r*g_stride + i*g_inc]) for r < rows, i < n: the gated attention's
 * output gate (g_inc 1) or a per-row gate (a shared expert's: g_stride 1, g_inc 0). */
int mrc_sigmoid_mul(mrc_ctx *c, float *y, const float *gate, int64_t rows, int64_t n, int64_t g_stride, int g_inc);
/* The delta net's gates of T tokens: value head h = kh*rr + j (Hk key heads, rr value heads
 * each) reads b = ba[t][kh*2rr + j], a = ba[t][kh*2rr + rr + j] (ba: T rows of 2*Hk*rr);
 * beta[t][h] = sigmoid(b), g[t][h] = softplus(a + dt_bias[h]) * a_coef[h]. */
int mrc_ssm_gates(mrc_ctx *c, const float *ba, const float *dt_bias, const float *a_coef, int T, int Hk, int rr,
                  float *beta, float *g);
/* Causal depthwise conv1d + SiLU of T tokens, in order: x (T rows at x_stride) of C channels,
 * w (C rows of d_conv taps, oldest first), state: per sequence s, d_conv - 1 rows of C at
 * state + s*state_stride (the previous inputs, oldest first; shifted and appended per token);
 * token t uses sequence seq[t] (device; NULL: 0). y (T rows at y_stride) = silu(conv). */
int mrc_ssm_conv(mrc_ctx *c, const float *x, int64_t x_stride, const float *w, int d_conv, int C, float *state,
                 int64_t state_stride, const int32_t *seq, int T, float *y, int64_t y_stride);
/* x /= max(||x||_2, eps) for each of n_heads rows of n per token (token t at x + t*tok_stride). */
int mrc_l2norm(mrc_ctx *c, float *x, int n_tok, int n_heads, int n, int64_t tok_stride, float eps);
/* The gated delta rule (src/cpu/delta.h) of T tokens in order, Hv value heads of state S x S
 * (Hk key heads, value head h reads key head h / (Hv / Hk)): token t's q of key head kh is at
 * x + t*x_stride + kh*S, its k at + (Hk + kh)*S, its v of value head h at + 2*Hk*S + h*S;
 * g, beta: (T, Hv); state of sequence s, head h: S rows of S floats at state + s*state_stride +
 * h*S*S, read and updated; output o + t*o_stride + h*S (S floats). S a multiple of 32, <= 256. */
int mrc_delta_rule(mrc_ctx *c, const float *x, int64_t x_stride, const float *g, const float *beta, float *state,
                   int64_t state_stride, const int32_t *seq, int T, int Hk, int Hv, int S, float scale, float *o,
                   int64_t o_stride);
/* The delta net's gated norm, quantized for the output projection: mrc_rmsnorm of the T * Hv
 * head rows of o (S each) with w, then mrc_act_q8 (SiLU) of z (T rows of Hv * S) times o into
 * xq; one launch, the same floats and bytes. S a multiple of 32, <= 256. */
int mrc_norm_gate_q8(mrc_ctx *c, float *o, float *z, const float *w, void *xq, int T, int Hv, int S, float eps);
/* mrc_ssm_gates (ba, dt_bias, a_coef; rr = Hv / Hk), mrc_l2norm of the q and k heads (eps) and
 * mrc_delta_rule in one launch, the same floats; x (the conv output) is read, not normalized in
 * place. */
int mrc_delta_rule_g(mrc_ctx *c, const float *x, int64_t x_stride, const float *ba, const float *dt_bias,
                     const float *a_coef, float eps, float *state, int64_t state_stride, const int32_t *seq, int T,
                     int Hk, int Hv, int S, float scale, float *o, int64_t o_stride);

/* Decode graphs are captured per KV bucket of MRC_KV_BUCKET cells (model_gpu_decode) and replay
 * over the bucket's cells, the rest masked; mrc_attn cuts its cells by the same bucket so an eager
 * step and a replay give the same floats. */
enum { MRC_KV_BUCKET = 256 };
static inline int mrc_kv_bucket(int n_kv, int n_ctx) {
    const int nb = (n_kv + MRC_KV_BUCKET - 1) / MRC_KV_BUCKET * MRC_KV_BUCKET;
    return nb < n_ctx ? nb : n_ctx;
}

/* ---- attention ----------------------------------------------------------------------------------- */
/* n_tok query tokens (decode: 1; a prompt: all its tokens in one launch)
 * against n_kv cache cells (flash decoding: the cells are split over blocks,
 * partial softmax states are merged). Token t's queries: (n_head, dk) floats
 * at q + t * q_stride; its mask: n_kv floats at mask + t * mask_stride added
 * to the scores (0 / -INFINITY; the causal mask of a prompt), or mask NULL;
 * its output: (n_head, dv) at out + t * out_stride. Strides 0: the rows are
 * packed (n_head * dk, n_kv, n_head * dv); n_tok 0 counts as 1. K/V: the CPU
 * cache layout, per KV head n_ctx rows of dk (dv) values in kv_type F16 or
 * Q8_0: head h's cell j at base + (h*n_ctx + j)*row_bytes. dk <= 576,
 * dv <= 512, multiples of 32. Scratch from the context. */
typedef struct {
    int n_head, n_head_kv, dk, dv, n_ctx, n_kv;
    uint32_t type_k, type_v;
    float scale;
    float softcap; /* 0: off */
    bool v_in_k;   /* MLA: the values are the first dv elements of the key rows (v ignored) */
    int n_tok;
    int64_t q_stride, mask_stride, out_stride;
    /* not NULL: each token's output row (n_head * dv) also quantized into Q8_1 rows here (row
     * stride mrc_q8_1_row_size(n_head * dv)), as quantize_q8_1 of out (the next matvec's input) */
    void *out_q8;
    /* one launch for a decode step (n_tok 1, n_head <= MRC_ATTN_MAX_FUSED): the last of a head's
     * split blocks to finish merges the splits (a device counter per head, reset by that block),
     * instead of a second kernel; the same floats */
    bool one_launch;
} mrc_attn_params;
#define MRC_ATTN_MAX_FUSED 1024
int mrc_attn(mrc_ctx *c, const mrc_attn_params *p, const float *q, const void *k, const void *v,
                    const float *mask, float *out);

/* ---- prefill --------------------------------------------------------------------------------------- */
/* Dequantize rows [r0, r0+n) of matrix `mat` of W into out as F32 (out_f16
 * false) or F16 (true); also the embedding lookup (get_rows) via ids when
 * ids != NULL (device, n rows: row ids[i] -> out row i). */
int mrc_dequant_rows(mrc_ctx *c, const mrc_weight *W, int64_t mat, int64_t r0, const int32_t *ids, int64_t n,
                     void *out, bool out_f16);
/* y (T, m) = x (T, k) @ W[mat]^T for prompts: W dequantized to F16 in the
 * scratch, x converted to F16, cuBLAS GEMM with F32 accumulation. */
int mrc_gemm(mrc_ctx *c, const mrc_weight *W, int64_t mat, const float *x, int64_t T, float *y);

/* ---- graphs ------------------------------------------------------------------------------------------ */
/* Capture the ops queued between begin and end into a CUDA graph owned by c
 * (replacing the previous one); mrc_graph_launch replays it. Pointers and
 * shapes are baked in: re-capture when they change. */
int mrc_graph_begin(mrc_ctx *c);
int mrc_graph_end(mrc_ctx *c);
int mrc_graph_launch(mrc_ctx *c);
/* Changes whenever the context's scratch buffer moves (grows): a graph captured before
 * then reads freed memory and must be captured again. A capture that would grow the
 * scratch fails instead (run the step once without capturing first). */
unsigned mrc_scratch_epoch(const mrc_ctx *c);
/* Page-lock an existing host range so copies to and from it are direct DMA (faster, and
 * asynchronous where the API allows); 0, or -1 with a message (nothing changed). */
int mrc_host_register(void *p, size_t n);
/* The same for memory mapped read-only (a GGUF file's pages: the RAM experts streamed to a
 * device, then copied by DMA without staging). */
int mrc_host_register_ro(const void *p, size_t n);
void mrc_host_unregister(void *p);
/* Bytes of the context's device scratch (it only grows: its peak). */
size_t mrc_scratch_bytes(const mrc_ctx *c);

/* ---- the copy stream ------------------------------------------------------------------------------------ */
/* A second stream per context for uploads that overlap the kernels (the RAM experts streamed
 * for a prompt's next layer): mrc_upload_side queues a host -> device copy there; events order
 * the two streams: record after the work queued so far on the main (side 0) or copy (side 1)
 * stream, and make a stream wait for an event. mrc_sync waits for both streams. */
int mrc_upload_side(mrc_ctx *c, void *dst, const void *src, size_t n);
void *mrc_event_new(mrc_ctx *c);
int mrc_event_record(mrc_ctx *c, void *e, int side);
int mrc_event_wait(mrc_ctx *c, void *e, int side);
void mrc_event_free(void *e);

/* ---- timing (benches) --------------------------------------------------------------------------------- */
/* Milliseconds between two points on the stream: mrc_timer_start, then mrc_timer_stop (synchronises). */
int mrc_timer_start(mrc_ctx *c);
double mrc_timer_stop(mrc_ctx *c);
/* Stamps (events) for profiling: new (NULL on error), record on the stream after the work
 * queued so far, milliseconds between two recorded stamps (waits for `to`; -1 on error), free. */
void *mrc_stamp_new(mrc_ctx *c);
int mrc_stamp(mrc_ctx *c, void *s);
double mrc_stamp_ms(void *from, void *to);
void mrc_stamp_free(void *s);

#ifdef __cplusplus
}
#endif
#endif
