/*
 * ops.c — row kernels of the forward pass in plain C: RMSNorm, activations,
 * softmax, top-k, RoPE with YaRN. These are the reference; they follow ggml's
 * CPU definitions (RMSNorm sums in double, GELU tanh approximation, rope_yarn).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "base/base.h"
#include "cpu/cpu.h"

double cpu_sumsq_avx2(const float *x, int n);
static bool act_simd(void);

void cpu_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    if (act_simd()) ss = cpu_sumsq_avx2(x, n);
    else
        for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    if (w)
        for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
    else
        for (int i = 0; i < n; i++) out[i] = x[i] * scale;
}

void cpu_rmsnorm_rows(float *out, const float *x, const float *w, int64_t T, int n, float eps) {
    for (int64_t t = 0; t < T; t++) cpu_rmsnorm(out + t * n, x + t * n, w, n, eps);
}

/* AVX2+FMA versions (ops_avx2.c) where the CPU has them (not under MOERUN_CPU=generic). */
void cpu_silu_mul_avx2(float *g, const float *u, int64_t n);
void cpu_gelu_mul_avx2(float *g, const float *u, int64_t n);

static bool act_simd(void) {
    static _Atomic int ok = -1; /* computed once; threads may race to the same value */
    int v = atomic_load_explicit(&ok, memory_order_relaxed);
    if (v < 0) {
        v = mr_cpu()->avx2 && mr_cpu()->fma;
        atomic_store_explicit(&ok, v, memory_order_relaxed);
    }
    return v;
}

void cpu_silu_mul_ref(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void cpu_silu_mul(float *g, const float *u, int64_t n) {
    if (act_simd()) cpu_silu_mul_avx2(g, u, n);
    else cpu_silu_mul_ref(g, u, n);
}

float cpu_gelu(float x) {
    const float c = 0.797884560802865355f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(c * x * (1.0f + 0.044715f * x * x)));
}

void cpu_gelu_mul_ref(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = cpu_gelu(g[i]) * u[i];
}

void cpu_gelu_mul(float *g, const float *u, int64_t n) {
    if (act_simd()) cpu_gelu_mul_avx2(g, u, n);
    else cpu_gelu_mul_ref(g, u, n);
}

void cpu_softmax(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void cpu_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void cpu_topk(const float *x, int n, int k, int *idx) {
    /* insertion into a sorted list of k: n is the expert count (small) */
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        if (cnt == k && !(x[i] > x[idx[k - 1]])) continue;
        int p = cnt < k ? cnt : k - 1;
        while (p > 0 && x[idx[p - 1]] < x[i]) {
            idx[p] = idx[p - 1];
            p--;
        }
        idx[p] = i;
        if (cnt < k) cnt++;
    }
}

/* ---- RoPE (ggml's rope_yarn) -------------------------------------------------- */

static float rope_yarn_ramp(float low, float high, int i0) {
    const float y = (i0 / 2 - low) / fmaxf(0.001f, high - low);
    return 1.0f - fminf(1.0f, fmaxf(0.0f, y));
}

static float yarn_corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base) {
    return n_dims * logf(n_ctx_orig / (n_rot * 2 * (float)M_PI)) / (2 * logf(base));
}

void cpu_rope_cache(const cpu_rope_params *p, float pos, float *cs) {
    float corr[2] = {0, 0};
    if (p->ext_factor != 0.0f) {
        float start = floorf(yarn_corr_dim(p->n_dims, p->n_ctx_orig, p->beta_fast, p->freq_base));
        float end = ceilf(yarn_corr_dim(p->n_dims, p->n_ctx_orig, p->beta_slow, p->freq_base));
        corr[0] = fmaxf(0.0f, start);
        corr[1] = fminf((float)(p->n_dims - 1), end);
    }
    const float theta_scale = powf(p->freq_base, -2.0f / p->n_dims);
    float theta = pos;
    for (int i0 = 0; i0 < p->n_dims; i0 += 2) {
        const float ff = p->freq_factors ? p->freq_factors[i0 / 2] : 1.0f;
        const float theta_extrap = theta / ff;
        const float theta_interp = p->freq_scale * theta_extrap;
        float th = theta_interp, mscale = p->attn_factor;
        if (p->ext_factor != 0.0f) {
            const float ramp_mix = rope_yarn_ramp(corr[0], corr[1], i0) * p->ext_factor;
            th = theta_interp * (1 - ramp_mix) + theta_extrap * ramp_mix;
            mscale *= 1.0f + 0.1f * logf(1.0f / p->freq_scale);
        }
        cs[i0] = cosf(th) * mscale;
        cs[i0 + 1] = sinf(th) * mscale;
        theta *= theta_scale;
    }
}

void cpu_rope_apply(const cpu_rope_params *p, const float *cs, float *x, int n_heads, int head_dim) {
    const int nd = p->n_dims;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        if (p->mode == CPU_ROPE_NEOX) {
            for (int i0 = 0; i0 < nd; i0 += 2) {
                const float c = cs[i0], s = cs[i0 + 1];
                const float x0 = v[i0 / 2], x1 = v[i0 / 2 + nd / 2];
                v[i0 / 2] = x0 * c - x1 * s;
                v[i0 / 2 + nd / 2] = x0 * s + x1 * c;
            }
        } else {
            for (int i0 = 0; i0 < nd; i0 += 2) {
                const float c = cs[i0], s = cs[i0 + 1];
                const float x0 = v[i0], x1 = v[i0 + 1];
                v[i0] = x0 * c - x1 * s;
                v[i0 + 1] = x0 * s + x1 * c;
            }
        }
    }
}
