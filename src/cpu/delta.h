/*
 * delta.h — CPU kernels of the gated delta net (qwen3next linear attention):
 * the causal depthwise convolution step, the L2 norm, and one token of the
 * gated delta rule for one head. Plain C reference (delta.c) with an AVX2/FMA
 * variant of the delta rule (delta_avx2.c) picked at run time, and the
 * chunked form of the delta rule for prompts (delta_chunk.c).
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
#include <stddef.h>
#include <stdint.h>

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

/* ---- several tokens of one sequence, one head ----------------------------------------
 * Token t (t < n) of the run is row rows[t] of the inputs: q = q + rows[t]*ld_x
 * (Sk), k likewise, v = v + rows[t]*ld_x (Sv), g = g[rows[t]*ld_g], beta
 * likewise; its output goes to o + rows[t]*ld_o (Sv). Rows are in the
 * sequence's order (they may interleave with other sequences' rows). */
typedef struct {
    int Sk, Sv;
    const float *q, *k, *v;
    size_t ld_x;
    const float *g, *beta;
    size_t ld_g;
    float *o;
    size_t ld_o;
    float scale;
} cpu_delta_seq;

/* The recurrent form: cpu_delta_step per token, in order. */
void cpu_delta_recurrent(float *S, const cpu_delta_seq *a, int n, const int32_t *rows, bool ref);

/* The chunked (parallel) form of the same recurrence (delta_chunk.c), chunks
 * of L tokens (L a multiple of 8, 8..256). With G_i the cumulative log decay
 * inside a chunk (G_i = g_0 + ... + g_i), S0 the state before it:
 *   A_ij = beta_i e^(G_i - G_j) k_i.k_j (j < i),  (I + A) D = beta (V - e^G K S0)
 *   O = scale (e^G Q S0 + (e^(G_i - G_j) q_i.k_j)_(j <= i) D)
 *   S = e^(G_last) S0 + K^T diag(e^(G_last - G)) D
 * (the WY / forward-substitution form of flash-linear-attention's
 * chunk_gated_delta_rule and llama.cpp's build_delta_net_chunking). Same
 * results as cpu_delta_recurrent up to float rounding. work: at least
 * cpu_delta_chunk_work(Sk, Sv, L) floats, 32-byte aligned. ref: plain C
 * matrix products (no AVX2). */
size_t cpu_delta_chunk_work(int Sk, int Sv, int L);
void cpu_delta_chunked(float *S, const cpu_delta_seq *a, int n, const int32_t *rows, int L, float *work, bool ref);

/* C (M x N, row stride ldc) = [C +] A (M x K, lda) B (K x N, ldb), all
 * row-major. The plain C version, and the AVX2/FMA one (delta_avx2.c; N a
 * multiple of 8). */
void cpu_delta_gemm(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int M, int N, int K,
                    bool acc);
void cpu_delta_gemm_avx2(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int M, int N, int K,
                         bool acc);

#endif
