/*
 * delta.h — CPU kernels of the gated delta net (qwen3next linear attention):
 * the causal depthwise convolution step, the L2 norm, and one token of the
 * gated delta rule for one head. Plain C reference (delta.c) with an AVX2/FMA
 * variant of the delta rule (delta_avx2.c) picked at run time.
 *
 * Delta-rule state of one head: S (Sk x Sv) stored as Sv rows of Sk floats,
 * row j = column j of S (ggml's GATED_DELTA_NET layout, so every access is a
 * contiguous row). One token (q, k of Sk; v of Sv; scalars g, beta):
 *   S = exp(g) S;  d_j = beta (v_j - S[:,j] . k);  S[:,j] += k d_j;
 *   o_j = scale * (S[:,j] . q)
 */
#ifndef MR_CPU_DELTA_H
#define MR_CPU_DELTA_H

#include <stdbool.h>

/* One token of a depthwise causal conv1d over channels [c0, c1) of C with a
 * kernel of d_conv taps (w: C rows of d_conv, oldest tap first, as
 * ssm_conv1d is stored). state: (d_conv - 1, C), the previous inputs oldest
 * first; those channels are shifted and x appended. out[c] = sum_k w[c][k] *
 * window[k][c] (no bias, no activation). out may not alias x. Summation
 * order as ggml_ssm_conv. */
void cpu_conv_step(const float *w, int d_conv, int C, int c0, int c1, float *state, const float *x, float *out);

/* x /= max(||x||_2, eps) (ggml_l2_norm: sum of squares in double). */
void cpu_l2norm(float *x, int n, float eps);

/* One token of the gated delta rule for one head (see above). S: Sv rows of
 * Sk floats, updated in place; o: Sv outputs. ref: scalar reference. */
void cpu_delta_step(float *S, int Sk, int Sv, const float *q, const float *k, const float *v, float g, float beta,
                    float scale, float *o, bool ref);

/* The AVX2/FMA version (delta_avx2.c); Sk a multiple of 8. */
void cpu_delta_step_avx2(float *S, int Sk, int Sv, const float *q, const float *k, const float *v, float g,
                         float beta, float scale, float *o);

#endif
