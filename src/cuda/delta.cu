/*
 * delta.cu — the kernels of Qwen3-Next's layers that no other model uses: the
 * sigmoid gates (gated attention's output gate, a shared expert's per-token
 * gate), and the gated delta net's gates, causal convolution, L2 norm and
 * delta rule (src/model/qwen3next.c and src/cpu/delta.h for the CPU forms
 * these follow, operation for operation).
 *
 * The recurrent state is one slot per sequence: the kernels read the
 * sequence of every token from device memory (seq), so a captured decode graph
 * stays valid whichever sequence the next token belongs to.
 */
#include <math.h>

#include "cuda/cuda_common.cuh"

/* ---- sigmoid gate ------------------------------------------------------------------------------ */
__global__ void k_sigmoid_mul(float *y, const float *g, int64_t rows, int64_t n, int64_t gs, int gi) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= rows * n) return;
    const int64_t r = idx / n, i = idx - r * n;
    y[idx] *= 1.0f / (1.0f + expf(-g[r * gs + i * gi]));
}

int mrc_sigmoid_mul(mrc_ctx *c, float *y, const float *gate, int64_t rows, int64_t n, int64_t g_stride, int g_inc) {
    if (rows <= 0 || n <= 0) return 0;
    k_sigmoid_mul<<<mrc_cdiv(rows * n, 256), 256, 0, c->stream>>>(y, gate, rows, n, g_stride, g_inc);
    MRC_LAUNCHED(c, "sigmoid_mul", "rows %lld, n %lld", (long long)rows, (long long)n);
    return 0;
}

/* ---- delta net gates: one thread per (token, value head) -------------------------------------- */
__global__ void k_ssm_gates(const float *ba, const float *dt, const float *A, int T, int Hk, int rr, float *beta,
                            float *g) {
    const int Hv = Hk * rr;
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= T * Hv) return;
    const int t = idx / Hv, h = idx - t * Hv, kh = h / rr, j = h - kh * rr;
    const float *bt = ba + (size_t)t * 2 * Hv + (size_t)kh * 2 * rr;
    const float b = bt[j], a = bt[rr + j] + dt[h];
    const float sp = a > 20.0f ? a : logf(1.0f + expf(a));
    beta[idx] = 1.0f / (1.0f + expf(-b));
    g[idx] = sp * A[h];
}

int mrc_ssm_gates(mrc_ctx *c, const float *ba, const float *dt_bias, const float *a, int T, int Hk, int rr,
                  float *beta, float *g) {
    if (T <= 0) return 0;
    k_ssm_gates<<<mrc_cdiv((int64_t)T * Hk * rr, 128), 128, 0, c->stream>>>(ba, dt_bias, a, T, Hk, rr, beta, g);
    MRC_LAUNCHED(c, "ssm_gates", "T %d, heads %d x %d", T, Hk, rr);
    return 0;
}

/* ---- causal depthwise convolution + SiLU: one thread per channel, the tokens in order ---------- */
__global__ void k_ssm_conv(const float *x, int64_t xs, const float *w, int dc, int C, float *st, int64_t ss,
                           const int32_t *seq, int T, float *y, int64_t ys) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int nk = dc - 1;
    const float *wc = w + (size_t)c * dc;
    for (int t = 0; t < T; t++) {
        float *S = st + (size_t)(seq ? seq[t] : 0) * ss;
        const float xv = x[(size_t)t * xs + c];
        float s = 0.0f;
        for (int k = 0; k < nk; k++) s += S[(size_t)k * C + c] * wc[k];
        s += xv * wc[nk];
        for (int k = 0; k + 1 < nk; k++) S[(size_t)k * C + c] = S[(size_t)(k + 1) * C + c];
        if (nk > 0) S[(size_t)(nk - 1) * C + c] = xv;
        y[(size_t)t * ys + c] = s / (1.0f + expf(-s));
    }
}

int mrc_ssm_conv(mrc_ctx *c, const float *x, int64_t x_stride, const float *w, int d_conv, int C, float *state,
                 int64_t state_stride, const int32_t *seq, int T, float *y, int64_t y_stride) {
    if (d_conv < 1 || C <= 0) {
        mr_seterr("cuda: ssm_conv: kernel %d, %d channels", d_conv, C);
        return -1;
    }
    if (T <= 0) return 0;
    k_ssm_conv<<<mrc_cdiv(C, 128), 128, 0, c->stream>>>(x, x_stride, w, d_conv, C, state, state_stride, seq, T, y,
                                                        y_stride);
    MRC_LAUNCHED(c, "ssm_conv", "T %d, C %d, kernel %d", T, C, d_conv);
    return 0;
}

/* ---- L2 norm of head rows: one warp per row, the sum of squares in double (as the CPU) ---------- */
__global__ void k_l2norm(float *x, int64_t rows, int nh, int n, int64_t ts, float eps) {
    const int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (r >= rows) return;
    const int64_t t = r / nh, h = r - t * nh;
    float *xr = x + t * ts + h * n;
    double ss = 0.0;
    for (int i = lane; i < n; i += 32) ss += (double)(xr[i] * xr[i]);
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o, 32);
    const float scale = 1.0f / fmaxf(sqrtf((float)ss), eps);
    for (int i = lane; i < n; i += 32) xr[i] *= scale;
}

int mrc_l2norm(mrc_ctx *c, float *x, int n_tok, int n_heads, int n, int64_t tok_stride, float eps) {
    const int64_t rows = (int64_t)n_tok * n_heads;
    if (rows <= 0 || n <= 0) return 0;
    k_l2norm<<<mrc_cdiv(rows, 4), 128, 0, c->stream>>>(x, rows, n_heads, n, tok_stride, eps);
    MRC_LAUNCHED(c, "l2norm", "%d tokens x %d heads of %d", n_tok, n_heads, n);
    return 0;
}

/* ---- the gated delta rule ----------------------------------------------------------------------
 * Row j of a head's state (Sk floats, delta.h's layout) depends only on its own values, so
 * every warp owns one row and keeps it in registers (NR = Sk / 32 per lane) for all the
 * tokens of the call, loading it again only where the sequence changes. Per token, as
 * cpu_delta_step: row *= exp(g); d = beta (v_j - row.k); row += k d; o_j = scale row.q.
 * Grid: (Sv / 4, Hv), 4 warps per block.
 * GATES (mrc_delta_rule_g): g and beta computed from ba as k_ssm_gates does, and q and k
 * L2-normalized in registers as k_l2norm does (the same lanes, order and shuffles, so the same
 * floats), from the conv output as it is: ssm_gates + l2norm + delta_rule in one launch. */
struct delta_gates {
    const float *ba, *dt, *A;
    float eps;
};

/* x (NR per lane, lane + 32u) /= max(||x||, eps), the sum of squares in double (k_l2norm) */
template <int NR> __device__ __forceinline__ void l2norm_regs(float *v, float eps) {
    double ss = 0.0;
#pragma unroll
    for (int u = 0; u < NR; u++) ss += (double)(v[u] * v[u]);
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o, 32);
    const float scale = 1.0f / fmaxf(sqrtf((float)ss), eps);
#pragma unroll
    for (int u = 0; u < NR; u++) v[u] *= scale;
}

template <int NR, bool GATES>
__global__ void __launch_bounds__(128) k_delta_rule(const float *x, int64_t xs, const float *g, const float *beta,
                                                    delta_gates dg, float *st, int64_t ss, const int32_t *seq, int T,
                                                    int Hk, int Hv, int S, float scale, float *o, int64_t os) {
    const int lane = threadIdx.x % 32, j = blockIdx.x * 4 + threadIdx.x / 32, h = blockIdx.y;
    if (j >= S) return;
    const int rr = Hv / Hk, kh = h / rr;
    const size_t roff = (size_t)h * S * S + (size_t)j * S; /* row j of head h within a slot */
    float row[NR];
    int cur = -1;
    for (int t = 0; t < T; t++) {
        const int s = seq ? seq[t] : 0;
        if (s != cur) {
            if (cur >= 0)
#pragma unroll
                for (int u = 0; u < NR; u++) st[(size_t)cur * ss + roff + lane + 32 * u] = row[u];
#pragma unroll
            for (int u = 0; u < NR; u++) row[u] = st[(size_t)s * ss + roff + lane + 32 * u];
            cur = s;
        }
        const float *xt = x + (size_t)t * xs;
        const float *q = xt + (size_t)kh * S, *k = xt + (size_t)(Hk + kh) * S;
        float gt, bt;
        if (GATES) { /* k_ssm_gates' formula */
            const float *bat = dg.ba + (size_t)t * 2 * Hv + (size_t)kh * 2 * rr;
            const int jj = h - kh * rr;
            const float a = bat[rr + jj] + dg.dt[h];
            gt = (a > 20.0f ? a : logf(1.0f + expf(a))) * dg.A[h];
            bt = 1.0f / (1.0f + expf(-bat[jj]));
        } else
            gt = g[(size_t)t * Hv + h], bt = beta[(size_t)t * Hv + h];
        const float eg = expf(gt), b = bt;
        const float v = xt[(size_t)2 * Hk * S + (size_t)h * S + j];
        float kv[NR], qv[NR];
#pragma unroll
        for (int u = 0; u < NR; u++) kv[u] = k[lane + 32 * u], qv[u] = q[lane + 32 * u];
        if (GATES) l2norm_regs<NR>(qv, dg.eps), l2norm_regs<NR>(kv, dg.eps);
        float sk = 0.0f;
#pragma unroll
        for (int u = 0; u < NR; u++) {
            row[u] *= eg;
            sk += row[u] * kv[u];
        }
        sk = mrc_warp_sum(sk);
        const float d = (v - sk) * b;
        float sq = 0.0f;
#pragma unroll
        for (int u = 0; u < NR; u++) {
            row[u] += kv[u] * d;
            sq += row[u] * qv[u];
        }
        sq = mrc_warp_sum(sq);
        if (lane == 0) o[(size_t)t * os + (size_t)h * S + j] = sq * scale;
    }
    if (cur >= 0)
#pragma unroll
        for (int u = 0; u < NR; u++) st[(size_t)cur * ss + roff + lane + 32 * u] = row[u];
}

template <bool GATES>
static int delta_launch(mrc_ctx *c, const float *x, int64_t x_stride, const float *g, const float *beta,
                        delta_gates dg, float *state, int64_t state_stride, const int32_t *seq, int T, int Hk, int Hv,
                        int S, float scale, float *o, int64_t o_stride) {
    if (S <= 0 || S % 32 || S > 256 || Hk <= 0 || Hv <= 0 || Hv % Hk) {
        mr_seterr("cuda: delta_rule: state size %d (a multiple of 32 up to 256), %d key / %d value heads", S, Hk, Hv);
        return -1;
    }
    if (T <= 0) return 0;
    const dim3 grid(mrc_cdiv(S, 4), (unsigned)Hv);
#define DR(NR)                                                                                                        \
    k_delta_rule<NR, GATES><<<grid, 128, 0, c->stream>>>(x, x_stride, g, beta, dg, state, state_stride, seq, T, Hk, Hv, \
                                                         S, scale, o, o_stride)
    switch (S / 32) {
    case 1: DR(1); break;
    case 2: DR(2); break;
    case 3: DR(3); break;
    case 4: DR(4); break;
    case 5: DR(5); break;
    case 6: DR(6); break;
    case 7: DR(7); break;
    default: DR(8); break;
    }
#undef DR
    MRC_LAUNCHED(c, GATES ? "delta_rule_g" : "delta_rule", "T %d, heads %d/%d, state %d", T, Hk, Hv, S);
    return 0;
}

int mrc_delta_rule(mrc_ctx *c, const float *x, int64_t x_stride, const float *g, const float *beta, float *state,
                   int64_t state_stride, const int32_t *seq, int T, int Hk, int Hv, int S, float scale, float *o,
                   int64_t o_stride) {
    const delta_gates dg = {NULL, NULL, NULL, 0.0f};
    return delta_launch<false>(c, x, x_stride, g, beta, dg, state, state_stride, seq, T, Hk, Hv, S, scale, o,
                               o_stride);
}

int mrc_delta_rule_g(mrc_ctx *c, const float *x, int64_t x_stride, const float *ba, const float *dt_bias,
                     const float *a_coef, float eps, float *state, int64_t state_stride, const int32_t *seq, int T,
                     int Hk, int Hv, int S, float scale, float *o, int64_t o_stride) {
    const delta_gates dg = {ba, dt_bias, a_coef, eps};
    return delta_launch<true>(c, x, x_stride, NULL, NULL, dg, state, state_stride, seq, T, Hk, Hv, S, scale, o,
                              o_stride);
}
