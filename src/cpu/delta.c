/*
 * delta.c — gated delta net kernels in plain C (see delta.h) and the run-time
 * choice of the AVX2 delta-rule kernel.
 */
#include "cpu/delta.h"

#include <math.h>

#include "base/base.h"

void cpu_conv_step(const float *w, int d_conv, int C, int c0, int c1, float *state, const float *x, float *out) {
    const int nk = d_conv - 1;
    for (int c = c0; c < c1; c++) {
        const float *wc = w + (size_t)c * d_conv;
        float s = 0.0f;
        for (int k = 0; k < nk; k++) s += state[(size_t)k * C + c] * wc[k];
        s += x[c] * wc[nk];
        out[c] = s;
        for (int k = 0; k + 1 < nk; k++) state[(size_t)k * C + c] = state[(size_t)(k + 1) * C + c];
        if (nk > 0) state[(size_t)(nk - 1) * C + c] = x[c];
    }
}

void cpu_l2norm(float *x, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)(x[i] * x[i]);
    const float scale = 1.0f / fmaxf(sqrtf((float)ss), eps);
    for (int i = 0; i < n; i++) x[i] *= scale;
}

/* One pass per row j: decay, dot with k, rank-1 update, dot with q. */
static void delta_step_ref(float *S, int Sk, int Sv, const float *q, const float *k, const float *v, float g,
                           float beta, float scale, float *o) {
    const float eg = expf(g);
    for (int j = 0; j < Sv; j++) {
        float *row = S + (size_t)j * Sk;
        float sk = 0.0f;
        for (int i = 0; i < Sk; i++) {
            row[i] *= eg;
            sk += row[i] * k[i];
        }
        const float d = (v[j] - sk) * beta;
        float sq = 0.0f;
        for (int i = 0; i < Sk; i++) {
            row[i] += k[i] * d;
            sq += row[i] * q[i];
        }
        o[j] = sq * scale;
    }
}

void cpu_delta_step(float *S, int Sk, int Sv, const float *q, const float *k, const float *v, float g, float beta,
                    float scale, float *o, bool ref) {
    static int use_avx2 = -1;
    if (use_avx2 < 0) use_avx2 = mr_cpu()->avx2 && mr_cpu()->fma;
    if (!ref && use_avx2 && Sk % 8 == 0) cpu_delta_step_avx2(S, Sk, Sv, q, k, v, g, beta, scale, o);
    else delta_step_ref(S, Sk, Sv, q, k, v, g, beta, scale, o);
}

void cpu_delta_recurrent(float *S, const cpu_delta_seq *a, int n, const int32_t *rows, bool ref) {
    for (int t = 0; t < n; t++) {
        const size_t r = (size_t)rows[t];
        cpu_delta_step(S, a->Sk, a->Sv, a->q + r * a->ld_x, a->k + r * a->ld_x, a->v + r * a->ld_x, a->g[r * a->ld_g],
                       a->beta[r * a->ld_g], a->scale, a->o + r * a->ld_o, ref);
    }
}
