/*
 * ops.cu — row and element-wise kernels of the forward pass: RMSNorm,
 * SiLU*mul, softmax, add, RoPE (normal / NEOX, YaRN as ggml's rope_yarn) and
 * MoE routing (softmax / sigmoid / softmax-over-chosen gating, selection
 * bias, top-k, weight normalisation and scale), with the CPU's semantics
 * (src/cpu/ops.c, route_token in src/model/forward_ffn.c).
 */
#include <math.h>

#include "cuda/cuda_common.cuh"
#include "cuda/route.cuh"

/* Sum over a block of up to 1024 threads (sh: 32 floats). */
__device__ float block_sum(float v, float *sh) {
    const int lane = threadIdx.x % 32, w = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
    v = mrc_warp_sum(v);
    __syncthreads(); /* sh may be in use by a previous reduction */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return mrc_warp_sum(v);
}

__device__ float block_max(float v, float *sh) {
    const int lane = threadIdx.x % 32, w = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
    v = mrc_warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return mrc_warp_max(v);
}

/* ---- RMSNorm: one block per row ------------------------------------------------------------ */
__global__ void k_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * n;
    float *o = out + (size_t)blockIdx.x * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, sh);
    const float scale = rsqrtf(ss / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = xr[i] * scale * (w ? w[i] : 1.0f);
}

int mrc_rmsnorm(mrc_ctx *c, float *out, const float *x, const float *w, int64_t n_rows, int n, float eps) {
    if (n_rows <= 0) return 0;
    k_rmsnorm<<<(unsigned)n_rows, n >= 1024 ? 1024 : 256, 0, c->stream>>>(out, x, w, n, eps);
    MRC_LAUNCHED(c, "rmsnorm", "rows %lld, n %d", (long long)n_rows, n);
    return 0;
}

/* RMSNorm and the Q8_1 quantization of its output in one launch (the same floats and bytes as
 * rmsnorm + quantize_q8_1: the same block size, so the same sum of squares), with res first
 * added to x (the residual add before the norm, x += res). One block per row, n a multiple of
 * 32; in the second pass warp w holds elements base + 32w + lane, one Q8_1 block (each
 * thread reads back only the elements it wrote). */
__global__ void __launch_bounds__(1024) k_rmsnorm_q8(float *out, uint8_t *xq, float *x, const float *res,
                                                    const float *w, int n, float eps, size_t row_size) {
    __shared__ float sh[32];
    float *xr = x + (size_t)blockIdx.x * n;
    float *o = out + (size_t)blockIdx.x * n;
    float ss = 0.0f;
    if (res) {
        const float *rr = res + (size_t)blockIdx.x * n;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            const float v = xr[i] + rr[i];
            xr[i] = v;
            ss += v * v;
        }
    } else
        for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, sh);
    const float scale = rsqrtf(ss / (float)n + eps);
    const int lane = threadIdx.x % 32;
    for (int base = threadIdx.x - lane; base < n; base += blockDim.x) { /* warp-uniform */
        const int i = base + lane;
        const float v = xr[i] * scale * (w ? w[i] : 1.0f);
        o[i] = v;
        mrc_q8_1_warp(v, xq + (size_t)blockIdx.x * row_size, n, base / 32, lane);
    }
}

int mrc_rmsnorm_q8(mrc_ctx *c, float *out, void *xq, float *x, const float *res, const float *w, int64_t n_rows, int n,
                   float eps) {
    if (n <= 0 || n % 32) {
        mr_seterr("cuda: rmsnorm_q8: n = %d is not a positive multiple of 32", n);
        return -1;
    }
    if (n_rows <= 0) return 0;
    k_rmsnorm_q8<<<(unsigned)n_rows, n >= 1024 ? 1024 : 256, 0, c->stream>>>(out, (uint8_t *)xq, x, res, w, n, eps,
                                                                               mrc_q8_1_row_size(n));
    MRC_LAUNCHED(c, "rmsnorm_q8", "rows %lld, n %d%s", (long long)n_rows, n, res ? ", residual" : "");
    return 0;
}

/* The delta net's gated norm for one token's down projection: each head row (S of o, one block
 * of 256 threads as k_rmsnorm's for S < 1024, so the same sum) RMSNorm'd with w, then
 * z = silu(z) * o and z's Q8_1 blocks (a head is S / 32 whole blocks of its token's row of
 * Hv * S): mrc_rmsnorm + mrc_act_q8 in one launch, the same floats and bytes. */
__global__ void __launch_bounds__(256) k_norm_gate_q8(float *o, float *z, const float *w, uint8_t *xq, int S, int Hv,
                                                     float eps, size_t row_size) {
    __shared__ float sh[32];
    const int64_t r = blockIdx.x, t = r / Hv, h = r - t * Hv;
    float *orow = o + r * S, *zrow = z + r * S;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < S; i += blockDim.x) ss += orow[i] * orow[i];
    ss = block_sum(ss, sh);
    const float scale = rsqrtf(ss / (float)S + eps);
    const int i = threadIdx.x, lane = i % 32;
    if (i - lane >= S) return; /* whole warps: S is a multiple of 32 */
    const float v = orow[i] * scale * (w ? w[i] : 1.0f);
    orow[i] = v;
    const float gv = mrc_silu_mul1(zrow[i], v);
    zrow[i] = gv;
    mrc_q8_1_warp(gv, xq + t * row_size, (int64_t)Hv * S, (h * S + i) / 32, lane);
}

int mrc_norm_gate_q8(mrc_ctx *c, float *o, float *z, const float *w, void *xq, int T, int Hv, int S, float eps) {
    if (S <= 0 || S % 32 || S > 256) {
        mr_seterr("cuda: norm_gate_q8: head size %d (a multiple of 32 up to 256)", S);
        return -1;
    }
    if (T <= 0 || Hv <= 0) return 0;
    k_norm_gate_q8<<<(unsigned)((int64_t)T * Hv), 256, 0, c->stream>>>(o, z, w, (uint8_t *)xq, S, Hv, eps,
                                                                       mrc_q8_1_row_size((int64_t)Hv * S));
    MRC_LAUNCHED(c, "norm_gate_q8", "T %d, %d heads of %d", T, Hv, S);
    return 0;
}

/* ---- element-wise --------------------------------------------------------------------------------- */
__global__ void k_silu_mul(float *g, const float *u, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        g[i] = mrc_silu_mul1(g[i], u[i]);
    }
}

int mrc_silu_mul(mrc_ctx *c, float *g, const float *u, int64_t n) {
    if (n <= 0) return 0;
    k_silu_mul<<<mrc_cdiv(n, 256), 256, 0, c->stream>>>(g, u, n);
    MRC_LAUNCHED(c, "silu_mul", "n %lld", (long long)n);
    return 0;
}

/* g = gelu(g) * u, ggml's tanh approximation (GeGLU: gemma) */
__global__ void k_gelu_mul(float *g, const float *u, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        g[i] = mrc_gelu_mul1(g[i], u[i]);
    }
}

int mrc_gelu_mul(mrc_ctx *c, float *g, const float *u, int64_t n) {
    if (n <= 0) return 0;
    k_gelu_mul<<<mrc_cdiv(n, 256), 256, 0, c->stream>>>(g, u, n);
    MRC_LAUNCHED(c, "gelu_mul", "n %lld", (long long)n);
    return 0;
}

__global__ void k_add(float *y, const float *x, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += x[i];
}

int mrc_add(mrc_ctx *c, float *y, const float *x, int64_t n) {
    if (n <= 0) return 0;
    k_add<<<mrc_cdiv(n, 256), 256, 0, c->stream>>>(y, x, n);
    MRC_LAUNCHED(c, "add", "n %lld", (long long)n);
    return 0;
}

__global__ void k_add_rows(float *y, const float *x, int64_t n, int64_t total) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) y[i] += x[i % n];
}

int mrc_add_rows(mrc_ctx *c, float *y, const float *x, int64_t rows, int64_t n) {
    const int64_t total = rows * n;
    if (total <= 0) return 0;
    k_add_rows<<<mrc_cdiv(total, 256), 256, 0, c->stream>>>(y, x, n, total);
    MRC_LAUNCHED(c, "add_rows", "rows %lld, n %lld", (long long)rows, (long long)n);
    return 0;
}

/* ---- softmax: one block per row ---------------------------------------------------------------------- */
__global__ void k_softmax(float *x, int n) {
    __shared__ float sh[32];
    float *r = x + (size_t)blockIdx.x * n;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < n; i += blockDim.x) mx = fmaxf(mx, r[i]);
    mx = block_max(mx, sh);
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float e = expf(r[i] - mx);
        r[i] = e;
        s += e;
    }
    s = block_sum(s, sh);
    const float inv = 1.0f / s;
    for (int i = threadIdx.x; i < n; i += blockDim.x) r[i] *= inv;
}

int mrc_softmax(mrc_ctx *c, float *x, int64_t n_rows, int n) {
    if (n_rows <= 0) return 0;
    k_softmax<<<(unsigned)n_rows, 256, 0, c->stream>>>(x, n);
    MRC_LAUNCHED(c, "softmax", "rows %lld, n %d", (long long)n_rows, n);
    return 0;
}

/* ---- RoPE: one thread per (token, head, rotated pair) --------------------------------------------------- */
struct rope_k {
    int mode, n_dims;
    float freq_scale, ext_factor, attn_factor, theta_scale, corr0, corr1;
    const float *ff;
};

/* cos and sin (times the YaRN magnitude scale) of rotated pair i at position pos: the one
 * formula of k_rope and k_norm_rope. */
__device__ __forceinline__ void rope_cs(const rope_k &p, int32_t pos, int i, float *cp, float *sp) {
    const int i0 = 2 * i;
    const float theta_extrap = (float)pos * powf(p.theta_scale, (float)i) / (p.ff ? p.ff[i] : 1.0f);
    const float theta_interp = p.freq_scale * theta_extrap;
    float theta = theta_interp, mscale = p.attn_factor;
    if (p.ext_factor != 0.0f) {
        const float y = ((float)(i0 / 2) - p.corr0) / fmaxf(0.001f, p.corr1 - p.corr0);
        const float ramp = (1.0f - fminf(1.0f, fmaxf(0.0f, y))) * p.ext_factor;
        theta = theta_interp * (1.0f - ramp) + theta_extrap * ramp;
        mscale *= 1.0f + 0.1f * logf(1.0f / p.freq_scale);
    }
    float s, c;
    sincosf(theta, &s, &c);
    *cp = c * mscale, *sp = s * mscale;
}

/* The element pair rotated by pair i (normal: adjacent; NEOX: i and i + n_dims/2). */
__device__ __forceinline__ void rope_ab(const rope_k &p, int i, int *a, int *b) {
    *a = p.mode == MRC_ROPE_NEOX ? i : 2 * i;
    *b = p.mode == MRC_ROPE_NEOX ? i + p.n_dims / 2 : 2 * i + 1;
}

__global__ void k_rope(rope_k p, float *x, const int32_t *pos, int n_tok, int n_heads, int head_dim) {
    const int half = p.n_dims / 2;
    const int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= (int64_t)n_tok * n_heads * half) return;
    const int i = (int)(id % half);
    const int64_t th = id / half; /* token * n_heads + head */
    const int t = (int)(th / n_heads);
    float c, s;
    rope_cs(p, pos[t], i, &c, &s);
    float *v = x + th * head_dim;
    int a, b;
    rope_ab(p, i, &a, &b);
    const float x0 = v[a], x1 = v[b];
    v[a] = x0 * c - x1 * s;
    v[b] = x0 * s + x1 * c;
}

/* Per head row of x (n_tok, n_heads, head_dim): RMSNorm with w1 (heads < split) or w2 (the
 * rest), then RoPE: the q and k norms and their rotation in one launch (a token's q heads and
 * k heads back to back). One block of 256 threads per row, as k_rmsnorm for rows below 1024
 * (the same sum of squares), the normed row in shared memory, then the rotation of k_rope:
 * the same floats as rmsnorm + rmsnorm + rope. */
__device__ __forceinline__ void norm_rope_row(const rope_k &p, float *x, const int32_t *pos, int n_heads, int head_dim,
                                              const float *w1, const float *w2, int split, float eps, float *row,
                                              float *sh) {
    const int64_t th = blockIdx.x; /* token * n_heads + head */
    const int t = (int)(th / n_heads), h = (int)(th % n_heads);
    float *v = x + th * head_dim;
    const float *w = h < split ? w1 : w2;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) ss += v[i] * v[i];
    ss = block_sum(ss, sh);
    const float scale = rsqrtf(ss / (float)head_dim + eps);
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
        const float y = v[i] * scale * (w ? w[i] : 1.0f);
        row[i] = y;
        if (i >= p.n_dims) v[i] = y; /* not rotated */
    }
    __syncthreads();
    for (int i = threadIdx.x; i < p.n_dims / 2; i += blockDim.x) {
        float c, s;
        rope_cs(p, pos[t], i, &c, &s);
        int a, b;
        rope_ab(p, i, &a, &b);
        const float x0 = row[a], x1 = row[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
}

__global__ void __launch_bounds__(256) k_norm_rope(rope_k p, float *x, const int32_t *pos, int n_heads, int head_dim,
                                                   const float *w1, const float *w2, int split, float eps) {
    extern __shared__ float row[];
    __shared__ float sh[32];
    norm_rope_row(p, x, pos, n_heads, head_dim, w1, w2, split, eps, row, sh);
}

static float corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base) {
    return n_dims * logf(n_ctx_orig / (n_rot * 2 * (float)M_PI)) / (2 * logf(base));
}

static int rope_params(const mrc_rope_params *p, int head_dim, rope_k *out) {
    if (p->n_dims <= 0 || p->n_dims > head_dim || p->n_dims % 2) {
        mr_seterr("cuda: rope: n_dims %d with head_dim %d", p->n_dims, head_dim);
        return -1;
    }
    rope_k k;
    k.mode = p->mode, k.n_dims = p->n_dims;
    k.freq_scale = p->freq_scale, k.ext_factor = p->ext_factor, k.attn_factor = p->attn_factor;
    k.theta_scale = powf(p->freq_base, -2.0f / p->n_dims);
    k.corr0 = k.corr1 = 0;
    if (p->ext_factor != 0.0f) {
        k.corr0 = fmaxf(0.0f, floorf(corr_dim(p->n_dims, p->n_ctx_orig, p->beta_fast, p->freq_base)));
        k.corr1 = fminf((float)(p->n_dims - 1), ceilf(corr_dim(p->n_dims, p->n_ctx_orig, p->beta_slow, p->freq_base)));
    }
    k.ff = p->freq_factors;
    *out = k;
    return 0;
}

int mrc_rope(mrc_ctx *c, const mrc_rope_params *p, float *x, const int32_t *pos, int n_tok, int n_heads, int head_dim) {
    rope_k k;
    if (rope_params(p, head_dim, &k)) return -1;
    const int64_t n = (int64_t)n_tok * n_heads * (p->n_dims / 2);
    if (n <= 0) return 0;
    k_rope<<<mrc_cdiv(n, 256), 256, 0, c->stream>>>(k, x, pos, n_tok, n_heads, head_dim);
    MRC_LAUNCHED(c, "rope", "tokens %d, heads %d, head_dim %d, n_dims %d, mode %d", n_tok, n_heads, head_dim, p->n_dims,
                 p->mode);
    return 0;
}

int mrc_norm_rope(mrc_ctx *c, const mrc_rope_params *p, float *x, const int32_t *pos, int n_tok, int n_heads,
                  int head_dim, const float *w1, const float *w2, int split, float eps) {
    rope_k k;
    if (rope_params(p, head_dim, &k)) return -1;
    if (head_dim >= 1024) {
        mr_seterr("cuda: norm_rope: head_dim %d (below 1024)", head_dim);
        return -1;
    }
    const int64_t rows = (int64_t)n_tok * n_heads;
    if (rows <= 0) return 0;
    k_norm_rope<<<(unsigned)rows, 256, sizeof(float) * (size_t)head_dim, c->stream>>>(k, x, pos, n_heads, head_dim, w1,
                                                                                      w2, split, eps);
    MRC_LAUNCHED(c, "norm_rope", "tokens %d, heads %d (%d with the first weight), head_dim %d, n_dims %d", n_tok,
                 n_heads, split, head_dim, p->n_dims);
    return 0;
}

/* ---- MoE routing: one warp per token (route.cuh) -------------------------------------------------------- */
__global__ void __launch_bounds__(32) k_moe_route(const float *logits, int E, int K, int gating, const float *bias,
                                                  bool norm_w, float w_scale, int n_group, int n_group_used,
                                                  int32_t *ids, float *weights) {
    const int t = blockIdx.x;
    mrc_route_warp(logits + (size_t)t * E, E, K, gating, bias, norm_w, w_scale, n_group, n_group_used,
                   ids + (size_t)t * K, weights + (size_t)t * K);
}

int mrc_moe_route(mrc_ctx *c, const float *logits, int n_tok, int n_expert, int k, int gating, const float *bias,
                  bool norm_w, float w_scale, int32_t *ids, float *weights) {
    return mrc_moe_route_ex(c, logits, n_tok, n_expert, k, gating, bias, norm_w, w_scale, 0, 0, ids, weights);
}

int mrc_moe_route_ex(mrc_ctx *c, const float *logits, int n_tok, int n_expert, int k, int gating, const float *bias,
                     bool norm_w, float w_scale, int n_group, int n_group_used, int32_t *ids, float *weights) {
    if (n_group > 64 || (n_group > 1 && n_expert % n_group)) {
        mr_seterr("cuda: moe_route: %d experts in %d groups (at most 64 equal groups)", n_expert, n_group);
        return -1;
    }
    if (n_expert <= 0 || n_expert > ROUTE_MAX_E || k <= 0 || k > ROUTE_MAX_K || k > n_expert || gating < 1 || gating > 3) {
        mr_seterr("cuda: moe_route: %d experts, top-%d, gating %d (max %d experts, top-%d; gating 1..3)", n_expert, k,
                  gating, ROUTE_MAX_E, ROUTE_MAX_K);
        return -1;
    }
    if (n_tok <= 0) return 0;
    k_moe_route<<<(unsigned)n_tok, 32, 0, c->stream>>>(logits, n_expert, k, gating, bias, norm_w, w_scale, n_group,
                                                       n_group_used, ids, weights);
    MRC_LAUNCHED(c, "moe_route", "tokens %d, experts %d, k %d, gating %d", n_tok, n_expert, k, gating);
    return 0;
}

/* ---- KV cache rows: one warp per (token, head, 32-element block) ------------------------------ */
/* F32 / F16 (round to nearest) / Q8_0 (d = amax / 127 stored as f16, q = round(x / d) away from
 * zero, as quantize_row_q8_0_ref) into the cache layout [head][n_ctx] rows of row_bytes. */
struct kv_part { /* K or V of a kv_write: rows (T, heads, d) of src into the cache at base */
    uint32_t type;
    const float *src;
    int d;
    uint8_t *base;
    size_t row_bytes;
};

/* Element b * 32 + lane of a cache row: v as F32, F16 or Q8_0 (the block's scale from the warp's
 * maximum); all 32 lanes of the warp call it for the same block. */
__device__ __forceinline__ void kv_put(uint32_t type, uint8_t *row, int b, int lane, float v) {
    if (type == MR_TYPE_F32) {
        ((float *)row)[b * 32 + lane] = v;
    } else if (type == MR_TYPE_F16) {
        ((__half *)row)[b * 32 + lane] = __float2half_rn(v);
    } else {
        const float amax = mrc_warp_max(fabsf(v));
        const float dq = amax / 127.0f, id = dq != 0.0f ? 1.0f / dq : 0.0f;
        uint8_t *blk = row + (size_t)b * 34;
        blk[2 + lane] = (uint8_t)(int8_t)roundf(v * id);
        if (lane == 0) {
            const __half hd = __float2half_rn(dq);
            memcpy(blk, &hd, 2);
        }
    }
}

/* One warp per 32-element block: warps below n_blk0 write part pa, the rest part pb (K and V
 * of the same tokens and cells in one launch). */
__global__ void k_kv_write(kv_part pa, kv_part pb, int heads, const int32_t *cells, int n_ctx, int64_t n_blk0,
                           int64_t n_blk) {
    int64_t gb = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (gb >= n_blk) return;
    const kv_part a = gb < n_blk0 ? pa : pb;
    if (gb >= n_blk0) gb -= n_blk0;
    const uint32_t type = a.type;
    const float *src = a.src;
    const int d = a.d;
    uint8_t *base = a.base;
    const size_t row_bytes = a.row_bytes;
    const int nb = d / 32;
    const int64_t th = gb / nb; /* token * heads + head */
    const int b = (int)(gb % nb), h = (int)(th % heads);
    const int64_t t = th / heads;
    kv_put(type, base + ((size_t)h * n_ctx + (size_t)cells[t]) * row_bytes, b, lane, src[th * d + b * 32 + lane]);
}

/* norm_rope of a token's q and k heads (k: heads from split on), then each k head's row and each
 * V row (V.src: (n_tok, n_heads - split, V.d)) written into the cache at the token's cell: the
 * norms and rotation of k_norm_rope and the bytes of k_kv_write in one launch. Blocks from
 * n_tok * n_heads on write V rows. A warp per 32-element block of a row. */
__global__ void __launch_bounds__(256) k_norm_rope_kv(rope_k p, float *x, const int32_t *pos, int n_tok, int n_heads,
                                                      int head_dim, const float *w1, const float *w2, int split,
                                                      float eps, const int32_t *cells, int n_ctx, kv_part K,
                                                      kv_part V) {
    extern __shared__ float row[];
    __shared__ float sh[32];
    const int hkv = n_heads - split, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t rows = (int64_t)n_tok * n_heads;
    if ((int64_t)blockIdx.x >= rows) { /* a V row */
        const int64_t vr = (int64_t)blockIdx.x - rows, t = vr / hkv;
        const int h = (int)(vr % hkv);
        uint8_t *dst = V.base + ((size_t)h * n_ctx + (size_t)cells[t]) * V.row_bytes;
        for (int b = warp; b < V.d / 32; b += blockDim.x / 32)
            kv_put(V.type, dst, b, lane, V.src[vr * V.d + b * 32 + lane]);
        return;
    }
    norm_rope_row(p, x, pos, n_heads, head_dim, w1, w2, split, eps, row, sh);
    const int64_t t = (int64_t)blockIdx.x / n_heads;
    const int h = (int)((int64_t)blockIdx.x % n_heads);
    if (h < split) return; /* a q head */
    __syncthreads(); /* the row's rotated values, written by the block's threads, are visible to all of it */
    const float *v = x + (int64_t)blockIdx.x * head_dim;
    uint8_t *dst = K.base + ((size_t)(h - split) * n_ctx + (size_t)cells[t]) * K.row_bytes;
    for (int b = warp; b < head_dim / 32; b += blockDim.x / 32) kv_put(K.type, dst, b, lane, v[b * 32 + lane]);
}

static int kv_type_ok(uint32_t type, int d) {
    if ((type != MR_TYPE_F32 && type != MR_TYPE_F16 && type != MR_TYPE_Q8_0) || d <= 0 || d % 32) {
        mr_seterr("cuda: kv_write: cache type %s with head size %d (f32, f16, q8_0; multiples of 32)",
                  mr_type_name(type), d);
        return 0;
    }
    return 1;
}

int mrc_kv_write(mrc_ctx *c, uint32_t type, const float *src, int heads, int d, int T, const int32_t *cells,
                 void *base, size_t row_bytes, int n_ctx) {
    if (!kv_type_ok(type, d)) return -1;
    const int64_t n_blk = (int64_t)T * heads * (d / 32);
    if (n_blk <= 0) return 0;
    const kv_part p = {type, src, d, (uint8_t *)base, row_bytes};
    k_kv_write<<<mrc_cdiv(n_blk * 32, 256), 256, 0, c->stream>>>(p, p, heads, cells, n_ctx, n_blk, n_blk);
    MRC_LAUNCHED(c, "kv_write", "%s, tokens %d, heads %d, d %d", mr_type_name(type), T, heads, d);
    return 0;
}

int mrc_kv_write2(mrc_ctx *c, int heads, int T, const int32_t *cells, int n_ctx, uint32_t type_k, const float *k,
                  int dk, void *base_k, size_t rb_k, uint32_t type_v, const float *v, int dv, void *base_v,
                  size_t rb_v) {
    if (!kv_type_ok(type_k, dk) || !kv_type_ok(type_v, dv)) return -1;
    const int64_t nk = (int64_t)T * heads * (dk / 32), n_blk = nk + (int64_t)T * heads * (dv / 32);
    if (n_blk <= 0) return 0;
    const kv_part a = {type_k, k, dk, (uint8_t *)base_k, rb_k}, b = {type_v, v, dv, (uint8_t *)base_v, rb_v};
    k_kv_write<<<mrc_cdiv(n_blk * 32, 256), 256, 0, c->stream>>>(a, b, heads, cells, n_ctx, nk, n_blk);
    MRC_LAUNCHED(c, "kv_write2", "K %s, V %s, tokens %d, heads %d, dk %d, dv %d", mr_type_name(type_k),
                 mr_type_name(type_v), T, heads, dk, dv);
    return 0;
}

int mrc_norm_rope_kv(mrc_ctx *c, const mrc_rope_params *p, float *x, const int32_t *pos, int n_tok, int n_heads,
                     int head_dim, const float *w1, const float *w2, int split, float eps, const mrc_kv_put *kv) {
    rope_k k;
    if (rope_params(p, head_dim, &k)) return -1;
    if (head_dim >= 1024 || split < 0 || split >= n_heads) {
        mr_seterr("cuda: norm_rope_kv: head_dim %d (below 1024), %d heads of which %d are q heads", head_dim, n_heads,
                  split);
        return -1;
    }
    if (!kv_type_ok(kv->type_k, head_dim) || !kv_type_ok(kv->type_v, kv->dv)) return -1;
    const int64_t rows = (int64_t)n_tok * n_heads, vrows = (int64_t)n_tok * (n_heads - split);
    if (rows <= 0) return 0;
    const kv_part K = {kv->type_k, NULL, head_dim, (uint8_t *)kv->base_k, kv->rb_k};
    const kv_part V = {kv->type_v, kv->v, kv->dv, (uint8_t *)kv->base_v, kv->rb_v};
    const unsigned grid = (unsigned)(rows + vrows);
    const size_t shm = sizeof(float) * (size_t)head_dim;
    k_norm_rope_kv<<<grid, 256, shm, c->stream>>>(k, x, pos, n_tok, n_heads, head_dim, w1, w2, split, eps, kv->cells,
                                                  kv->n_ctx, K, V);
    MRC_LAUNCHED(c, "norm_rope_kv", "tokens %d, heads %d (%d q), head_dim %d, dv %d, K %s, V %s", n_tok, n_heads, split,
                 head_dim, kv->dv, mr_type_name(kv->type_k), mr_type_name(kv->type_v));
    return 0;
}

/* ---- weighted sum of the expert outputs: y[t] = sum_j w[t][j] * slots[t][j] ------------------------- */
__global__ void k_moe_combine(float *y, const float *slots, const float *w, int k, int n, int64_t total, int acc) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const int64_t t = i / n, e = i % n;
    float s = 0.0f;
    for (int j = 0; j < k; j++) s = __fmaf_rn(w[t * k + j], slots[(t * k + j) * n + e], s); /* as k_mmvq_sum */
    y[i] = acc ? y[i] + s : s; /* acc: the residual add fused (the same float as add after combine) */
}

int mrc_moe_combine(mrc_ctx *c, float *y, const float *slots, const float *w, int n_tok, int k, int n, int acc) {
    const int64_t total = (int64_t)n_tok * n;
    if (total <= 0) return 0;
    k_moe_combine<<<mrc_cdiv(total, 256), 256, 0, c->stream>>>(y, slots, w, k, n, total, acc);
    MRC_LAUNCHED(c, "moe_combine", "tokens %d, k %d, n %d%s", n_tok, k, n, acc ? ", accumulate" : "");
    return 0;
}

/* ---- strided 2-D copy of floats ------------------------------------------------------------------------ */
__global__ void k_copy_rows(float *dst, int64_t ds, const float *src, int64_t ss, int64_t cols, int64_t total) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const int64_t r = i / cols, e = i % cols;
    dst[r * ds + e] = src[r * ss + e];
}

int mrc_copy_rows(mrc_ctx *c, float *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows,
                  int64_t cols) {
    const int64_t total = rows * cols;
    if (total <= 0) return 0;
    k_copy_rows<<<mrc_cdiv(total, 256), 256, 0, c->stream>>>(dst, dst_stride, src, src_stride, cols, total);
    MRC_LAUNCHED(c, "copy_rows", "rows %lld, cols %lld", (long long)rows, (long long)cols);
    return 0;
}

/* ---- expert order for prompts ---------------------------------------------------------------- */
#define SORT_THREADS 1024
#define SORT_MAX_E 4096

/* One block: a histogram of the experts in shared memory, its prefix sums, then each pair
 * takes the next place of its expert (atomics: the order within an expert is unspecified). */
__global__ void __launch_bounds__(SORT_THREADS)
    k_moe_sort(const int32_t *ids, int n, int n_expert, int k, int32_t *perm, int32_t *sids, int32_t *stok) {
    __shared__ int cnt[SORT_MAX_E + 1];
    for (int e = threadIdx.x; e <= n_expert; e += blockDim.x) cnt[e] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int e = ids[i];
        atomicAdd(&cnt[e >= 0 && e < n_expert ? e : n_expert], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int s = 0;
        for (int e = 0; e <= n_expert; e++) {
            const int v = cnt[e];
            cnt[e] = s;
            s += v;
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int e = ids[i];
        const int pos = atomicAdd(&cnt[e >= 0 && e < n_expert ? e : n_expert], 1);
        perm[pos] = i;
        sids[pos] = e;
        stok[pos] = i / k;
    }
}

int mrc_moe_sort(mrc_ctx *c, const int32_t *ids, int n, int n_expert, int k, int32_t *perm, int32_t *sids,
                 int32_t *stok) {
    if (n < 0 || n > 65535 || n_expert <= 0 || n_expert > SORT_MAX_E || k <= 0) {
        mr_seterr("cuda: moe_sort: %d pairs of %d experts (k %d): unsupported", n, n_expert, k);
        return -1;
    }
    if (n == 0) return 0;
    k_moe_sort<<<1, SORT_THREADS, 0, c->stream>>>(ids, n, n_expert, k, perm, sids, stok);
    MRC_LAUNCHED(c, "moe_sort", "pairs %d, experts %d", n, n_expert);
    return 0;
}

__global__ void k_rows_idx(uint32_t *dst, const int32_t *di, const uint32_t *src, const int32_t *si, int64_t words,
                           int64_t total) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const int64_t r = i / words, w = i % words;
    const int64_t dr = di ? di[r] : r, sr = si ? si[r] : r;
    dst[dr * words + w] = src[sr * words + w];
}

int mrc_rows_idx(mrc_ctx *c, void *dst, const int32_t *dst_idx, const void *src, const int32_t *src_idx, int64_t n,
                 size_t row_bytes) {
    if (row_bytes % 4 || n < 0) {
        mr_seterr("cuda: rows_idx: %lld rows of %zu bytes (a multiple of 4 is needed)", (long long)n, row_bytes);
        return -1;
    }
    const int64_t words = (int64_t)(row_bytes / 4), total = n * words;
    if (total <= 0) return 0;
    k_rows_idx<<<mrc_cdiv(total, 256), 256, 0, c->stream>>>((uint32_t *)dst, dst_idx, (const uint32_t *)src, src_idx,
                                                            words, total);
    MRC_LAUNCHED(c, "rows_idx", "rows %lld, %zu bytes", (long long)n, row_bytes);
    return 0;
}
