/*
 * delta_chunk.c — the chunked (parallel) form of the gated delta rule (see
 * delta.h): per chunk of L tokens, the decay-masked K K^T and Q K^T, a
 * forward substitution for the WY-form corrections D, then the chunk's
 * outputs and the state update as matrix products (cpu_delta_gemm, AVX2
 * when available). The recurrent form (delta.c) is the reference.
 *
 * Inside the chunk the state is kept in the natural layout S (Sk rows of
 * Sv floats) so every product is row-major A B; the caller's layout (Sv rows
 * of Sk) is transposed in at the start and out at the end.
 */
#include <math.h>
#include <string.h>

#include "base/base.h"
#include "cpu/delta.h"

void cpu_delta_gemm(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int M, int N, int K,
                    bool acc) {
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (!acc) memset(c, 0, sizeof(float) * (size_t)N);
        for (int p = 0; p < K; p++) {
            const float a = A[(size_t)i * lda + p];
            const float *b = B + (size_t)p * ldb;
            for (int j = 0; j < N; j++) c[j] += a * b[j];
        }
    }
}

/* Work buffer layout (floats), L the chunk size, all pieces multiples of 8. */
typedef struct {
    float *St; /* (Sk, Sv) state, natural layout */
    float *Q;  /* (L, Sk) */
    float *K;  /* (L, Sk) */
    float *KT; /* (Sk, L) K transposed (zero past the chunk's tokens); then decay-weighted */
    float *D;  /* (L, Sv) right-hand sides, then the corrections D */
    float *PQ; /* (L, Sv) Q S0, then the outputs */
    float *PK; /* (L, Sv) K S0 */
    float *AQ; /* (L, L) Q K^T, then masked and decayed */
    float *AK; /* (L, L) K K^T */
    double *G; /* (L) cumulative log decay, in double: differences of large sums stay exact */
    float *B;  /* (L) beta */
    float *EG; /* (L) e^g per token */
} chunk_work;

#define FS_BLOCK 6 /* rows per block of the forward substitution (the AVX2 product's tile height) */

static size_t up8(size_t n) { return (n + 7) & ~(size_t)7; }

static size_t layout(int Sk, int Sv, int L, float *w, chunk_work *cw) {
    const size_t sk = (size_t)Sk, sv = (size_t)Sv, l = (size_t)L;
    const size_t sz[] = {sk * sv, l * sk, l * sk, sk * l, l * sv, l * sv, l * sv, l * l, l * l, 2 * l, l, l};
    float **ptr[] = {&cw->St, &cw->Q,  &cw->K,  &cw->KT,          &cw->D, &cw->PQ,
                     &cw->PK, &cw->AQ, &cw->AK, (float **)&cw->G, &cw->B, &cw->EG};
    size_t off = 0;
    for (size_t i = 0; i < MR_ARRAY_LEN(sz); i++) {
        if (w) *ptr[i] = w + off;
        off += up8(sz[i]);
    }
    return off;
}

/* dst (cols, rows) = src (rows, cols)^T, both dense; in 8 x 8 tiles. */
static void transpose(float *dst, const float *src, int rows, int cols) {
    for (int r0 = 0; r0 < rows; r0 += 8)
        for (int c0 = 0; c0 < cols; c0 += 8) {
            const int r1 = MR_MIN(rows, r0 + 8), c1 = MR_MIN(cols, c0 + 8);
            for (int c = c0; c < c1; c++)
                for (int r = r0; r < r1; r++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
        }
}

size_t cpu_delta_chunk_work(int Sk, int Sv, int L) {
    chunk_work cw;
    return layout(Sk, Sv, L, NULL, &cw);
}

void cpu_delta_chunked(float *S, const cpu_delta_seq *a, int n, const int32_t *rows, int L, float *work, bool ref) {
    const int Sk = a->Sk, Sv = a->Sv;
    MR_ASSERT(L >= 8 && L % 8 == 0);
    chunk_work w;
    layout(Sk, Sv, L, work, &w);
    static int use_avx2 = -1;
    if (use_avx2 < 0) use_avx2 = mr_cpu()->avx2 && mr_cpu()->fma;
    void (*gemm)(float *, int, const float *, int, const float *, int, int, int, int, bool) =
        !ref && use_avx2 && Sv % 8 == 0 ? cpu_delta_gemm_avx2 : cpu_delta_gemm;

    /* state in: S is Sv rows of Sk (row j = column j) -> St (Sk, Sv) */
    transpose(w.St, S, Sv, Sk);

    for (int c0 = 0; c0 < n; c0 += L) {
        const int Lc = MR_MIN(L, n - c0), Lp = (Lc + 7) & ~7; /* Lp: KT columns used, zero-padded */
        /* pack the chunk */
        double gc = 0.0;
        for (int t = 0; t < Lc; t++) {
            const size_t r = (size_t)rows[c0 + t];
            memcpy(w.Q + (size_t)t * Sk, a->q + r * a->ld_x, sizeof(float) * (size_t)Sk);
            memcpy(w.K + (size_t)t * Sk, a->k + r * a->ld_x, sizeof(float) * (size_t)Sk);
            memcpy(w.D + (size_t)t * Sv, a->v + r * a->ld_x, sizeof(float) * (size_t)Sv);
            gc += a->g[r * a->ld_g];
            w.G[t] = gc;
            w.B[t] = a->beta[r * a->ld_g];
            w.EG[t] = expf(a->g[r * a->ld_g]);
        }
        for (int m = 0; m < Sk; m++) {
            float *kt = w.KT + (size_t)m * L;
            for (int t = 0; t < Lc; t++) kt[t] = w.K[(size_t)t * Sk + m];
            for (int t = Lc; t < Lp; t++) kt[t] = 0.0f;
        }
        /* Q K^T, K K^T (Lc, Lp); Q S0, K S0 (Lc, Sv) */
        gemm(w.AQ, L, w.Q, Sk, w.KT, L, Lc, Lp, Sk, false);
        gemm(w.AK, L, w.K, Sk, w.KT, L, Lc, Lp, Sk, false);
        gemm(w.PQ, Sv, w.Q, Sk, w.St, Sv, Lc, Sv, Sk, false);
        gemm(w.PK, Sv, w.K, Sk, w.St, Sv, Lc, Sv, Sk, false);

        /* decay masks: row i, j <= i: e^(G_i - G_j) = e^g_(j+1) ... e^g_i (products as the
         * recurrence takes them, and only L exps); AK := -beta_i e^(G_i - G_j) k_i.k_j (j < i),
         * AQ := e^(G_i - G_j) q_i.k_j (j <= i, zero above) */
        for (int i = 0; i < Lc; i++) {
            float *aq = w.AQ + (size_t)i * L, *ak = w.AK + (size_t)i * L;
            const float bi = w.B[i];
            float f = 1.0f;
            for (int j = i; j >= 0; j--) {
                aq[j] *= f;
                ak[j] *= -bi * f;
                f *= w.EG[j];
            }
            for (int j = i + 1; j < Lc; j++) aq[j] = 0.0f;
        }
        /* forward substitution: D_i = beta_i (v_i - e^G_i (K S0)_i) - sum_{j<i} A_ij D_j
         * (AK holds -A), in blocks of FS_BLOCK rows: the finished rows above the block
         * by one product, then the small triangle inside it */
        for (int i = 0; i < Lc; i++) {
            const float bi = w.B[i], egi = expf((float)w.G[i]);
            float *d = w.D + (size_t)i * Sv;
            const float *pk = w.PK + (size_t)i * Sv;
            for (int x = 0; x < Sv; x++) d[x] = bi * (d[x] - egi * pk[x]);
        }
        for (int i0 = 0; i0 < Lc; i0 += FS_BLOCK) {
            const int i1 = MR_MIN(Lc, i0 + FS_BLOCK);
            if (i0 > 0) gemm(w.D + (size_t)i0 * Sv, Sv, w.AK + (size_t)i0 * L, L, w.D, Sv, i1 - i0, Sv, i0, true);
            for (int i = i0 + 1; i < i1; i++) {
                float *d = w.D + (size_t)i * Sv;
                const float *ak = w.AK + (size_t)i * L;
                for (int j = i0; j < i; j++) {
                    const float aij = ak[j];
                    const float *dj = w.D + (size_t)j * Sv;
                    for (int x = 0; x < Sv; x++) d[x] += aij * dj[x];
                }
            }
        }
        /* outputs: O = e^G (Q S0) + AQ D, times scale */
        for (int i = 0; i < Lc; i++) {
            const float egi = expf((float)w.G[i]);
            float *pq = w.PQ + (size_t)i * Sv;
            for (int x = 0; x < Sv; x++) pq[x] *= egi;
        }
        gemm(w.PQ, Sv, w.AQ, L, w.D, Sv, Lc, Sv, Lc, true);
        for (int i = 0; i < Lc; i++) {
            const float *pq = w.PQ + (size_t)i * Sv;
            float *o = a->o + (size_t)rows[c0 + i] * a->ld_o;
            for (int x = 0; x < Sv; x++) o[x] = pq[x] * a->scale;
        }
        /* state: S = e^G_last S0 + (K^T diag(e^(G_last - G))) D */
        const double gl = w.G[Lc - 1];
        const float egl = expf((float)gl);
        for (size_t x = 0; x < (size_t)Sk * Sv; x++) w.St[x] *= egl;
        for (int t = 0; t < Lc; t++) w.B[t] = expf((float)(gl - w.G[t])); /* beta is not needed any more */
        for (int m = 0; m < Sk; m++) {
            float *kt = w.KT + (size_t)m * L;
            for (int t = 0; t < Lc; t++) kt[t] *= w.B[t];
        }
        gemm(w.St, Sv, w.KT, L, w.D, Sv, Sk, Sv, Lc, true);
    }

    /* state out */
    transpose(S, w.St, Sk, Sv);
}
