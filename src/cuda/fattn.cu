/*
 * fattn.cu — flash attention of n_tok query tokens against n_kv cache cells
 * in F16 or Q8_0, in the CPU cache layout (per KV head, n_ctx rows of dk / dv
 * values). One block per (head, split, token): a decode step's cells are
 * split over blocks (flash decoding) so that even 4-32 heads fill the GPU; a
 * prompt's tokens are the third grid dimension, all of them in one launch
 * (each with its own mask row: the causal mask). Each warp of a block runs an
 * online softmax over its cells with lane l owning elements l, l+32, ... of
 * q, K, V and the output (coalesced loads for F16 and Q8_0 alike); warps are
 * merged in shared memory, splits by a second kernel.
 *
 * Prompts with enough query rows to fill the GPU without splitting the cells run k_fattn_tile
 * instead: a block takes 16 query rows of one KV head (the GQA group's heads of consecutive
 * tokens; MLA's 576 / 512-wide heads: 8 rows), stages tiles of 8-32 cells of K and V in shared
 * memory as floats, and each of its 4 warps runs the online softmax of its rows over them: a K
 * or V element is read from the cache once per 16 (8) rows instead of once per row.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_common.cuh"
#include "cuda/mmvq.cuh"

#define FA_WARPS 4
#define FA_MAXK 18 /* dk <= 576 (MLA latent + rope) */
#define FA_MAXV 16 /* dv <= 512 */

template <uint32_t T>
__device__ __forceinline__ float kv_elem(const uint8_t *row, int e) {
    if (T == MR_TYPE_F16) return __half2float(((const __half *)row)[e]);
    const uint8_t *b = row + (e >> 5) * MRC_Q8_0_BYTES;
    return mrc_h2f(mrc_ld_u16(b)) * (float)(int8_t)b[2 + (e & 31)];
}

struct fa_args {
    int H, Hkv, dk, dv, n_ctx, n_kv, n_split, cells_per_split;
    size_t k_row, v_row;
    int64_t q_stride, mask_stride; /* between tokens, floats */
    float scale, softcap;
    bool v_in_k;
};

/* The merge of head h's n_split partial states p (acc[dv], m, l each) into out[h*dv + e] (0 when
 * all are masked), and with xq that row's Q8_1 blocks (the token's row of H*dv at xq; warp w of
 * the 128 threads holds 32 consecutive elements, one block). Reads through L2 (__ldcg): in the
 * one-launch decode the partials are other blocks'. The one merge of k_fattn_combine and of the
 * decode kernel's last block, so both give the same floats. */
__device__ __forceinline__ void fa_merge(const float *p, int n_split, int dv, int H, int h, float *out, uint8_t *xq) {
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++) M = fmaxf(M, __ldcg(p + s * (dv + 2) + dv));
    float L = 0.0f;
    for (int s = 0; s < n_split; s++) {
        const float ms = __ldcg(p + s * (dv + 2) + dv);
        if (ms != -INFINITY) L += __ldcg(p + s * (dv + 2) + dv + 1) * __expf(ms - M);
    }
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    for (int e = threadIdx.x; e < dv; e += blockDim.x) {
        float v = 0.0f;
        for (int s = 0; s < n_split; s++) {
            const float ms = __ldcg(p + s * (dv + 2) + dv);
            if (ms != -INFINITY) v += __ldcg(p + s * (dv + 2) + e) * __expf(ms - M);
        }
        out[(size_t)h * dv + e] = v * inv;
        if (xq) mrc_q8_1_warp(v * inv, xq, (int64_t)H * dv, (h * dv + e) / 32, threadIdx.x % 32);
    }
}

/* grid (H, n_split, tokens); token z's queries at q + z * q_stride, its mask row at
 * mask + z * mask_stride; writes part[((z*H + h)*n_split + s)*(dv+2) + ...] = acc[dv], m, l. */
/* With done (one launch, a single token): head h's last block to finish merges its splits into
 * fout (and xq) with fa_merge, and resets done[h]. */
template <uint32_t TK, uint32_t TV>
__global__ void __launch_bounds__(FA_WARPS * 32)
    k_fattn_decode(fa_args a, const float *__restrict__ q, const uint8_t *__restrict__ K, const uint8_t *__restrict__ V,
                   const float *__restrict__ mask, float *__restrict__ part, unsigned *done, float *fout,
                   uint8_t *xq) {
    __shared__ bool last;
    extern __shared__ float sh[]; /* FA_WARPS * (dv + 2) */
    const int h = blockIdx.x, sp = blockIdx.y, lane = threadIdx.x % 32, w = threadIdx.x / 32;
    const int hk = h / (a.H / a.Hkv);
    q += (size_t)blockIdx.z * a.q_stride;
    if (mask) mask += (size_t)blockIdx.z * a.mask_stride;
    part += (size_t)blockIdx.z * a.H * a.n_split * (a.dv + 2);
    const int c0 = sp * a.cells_per_split, c1 = min(a.n_kv, c0 + a.cells_per_split);
    const int nk = a.dk / 32, nv = a.dv / 32;
    float qr[FA_MAXK], acc[FA_MAXV];
    MRC_UNROLL
    for (int i = 0; i < FA_MAXK; i++) qr[i] = i < nk ? q[(size_t)h * a.dk + lane + 32 * i] : 0.0f;
    MRC_UNROLL
    for (int i = 0; i < FA_MAXV; i++) acc[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const uint8_t *Kh = K + (size_t)hk * a.n_ctx * a.k_row;
    const uint8_t *Vh = a.v_in_k ? Kh : V + (size_t)hk * a.n_ctx * a.v_row;
    const size_t vrow = a.v_in_k ? a.k_row : a.v_row;
    for (int j = c0 + w; j < c1; j += FA_WARPS) {
        const float mj = mask ? mask[j] : 0.0f;
        if (mj == -INFINITY) continue; /* uniform over the warp */
        const uint8_t *kr = Kh + (size_t)j * a.k_row;
        float s = 0.0f;
        MRC_UNROLL
        for (int i = 0; i < FA_MAXK; i++)
            if (i < nk) s += qr[i] * kv_elem<TK>(kr, lane + 32 * i);
        s = mrc_warp_sum(s) * a.scale;
        if (a.softcap > 0.0f) s = a.softcap * tanhf(s / a.softcap);
        s += mj;
        const float mn = fmaxf(m, s);
        const float corr = __expf(m - mn), p = __expf(s - mn);
        l = l * corr + p;
        const uint8_t *vr = Vh + (size_t)j * vrow;
        MRC_UNROLL
        for (int i = 0; i < FA_MAXV; i++)
            if (i < nv) acc[i] = acc[i] * corr + p * kv_elem<TV>(vr, lane + 32 * i);
        m = mn;
    }
    /* merge the warps */
    float *mine = sh + w * (a.dv + 2);
    MRC_UNROLL
    for (int i = 0; i < FA_MAXV; i++)
        if (i < nv) mine[lane + 32 * i] = acc[i];
    if (lane == 0) mine[a.dv] = m, mine[a.dv + 1] = l;
    __syncthreads();
    float M = -INFINITY;
    for (int x = 0; x < FA_WARPS; x++) M = fmaxf(M, sh[x * (a.dv + 2) + a.dv]);
    float *head_part = part + (size_t)h * a.n_split * (a.dv + 2), *out = head_part + (size_t)sp * (a.dv + 2);
    for (int e = threadIdx.x; e < a.dv; e += blockDim.x) {
        float v = 0.0f;
        for (int x = 0; x < FA_WARPS; x++) {
            const float mx = sh[x * (a.dv + 2) + a.dv];
            if (mx != -INFINITY) v += sh[x * (a.dv + 2) + e] * __expf(mx - M);
        }
        out[e] = v;
    }
    if (threadIdx.x == 0) {
        float L = 0.0f;
        for (int x = 0; x < FA_WARPS; x++) {
            const float mx = sh[x * (a.dv + 2) + a.dv];
            if (mx != -INFINITY) L += sh[x * (a.dv + 2) + a.dv + 1] * __expf(mx - M);
        }
        out[a.dv] = M, out[a.dv + 1] = L;
    }
    if (!done) return;
    __threadfence(); /* this block's partial state is visible device-wide before it counts itself */
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(done + h, 1u) == (unsigned)a.n_split - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    fa_merge(head_part, a.n_split, a.dv, a.H, h, fout, xq);
    if (threadIdx.x == 0) done[h] = 0;
}

/* ---- prompts: 16 query rows per block over shared tiles of K and V ------------------------------- */
#define FT_WARPS 4
#define FT_SMEM (48 * 1024)

/* Shared memory of a tiled block: its rows' queries, tc K rows padded by the lanes per cell, tc V
 * rows (none when V is K's first dv values: MLA), a flag. */
static size_t ft_smem(int rows, int tc, int dk, int dv, bool v_in_k) {
    return sizeof(float) * ((size_t)rows * dk + (size_t)tc * (dk + 32 / tc) + (v_in_k ? 0 : (size_t)tc * dv)) + 16;
}

/* Cells per tile: 32, 16 or 8, the largest whose shared memory fits FT_SMEM; 0 if none does. */
static int ft_cells(int rows, int dk, int dv, bool v_in_k) {
    for (int tc = 32; tc >= 8; tc /= 2)
        if (ft_smem(rows, tc, dk, dv, v_in_k) <= FT_SMEM) return tc;
    return 0;
}

/* ROWS query rows a warp (4 rows: dk, dv <= 32 * MAXD = 256; MLA's 576 / 512: 2 rows, MAXD 16).
 * grid (row blocks, KV heads). Row r of KV head hk is token r / G, head hk*G + r % G (G = H / Hkv).
 * Scores: lane l takes cell l % tc and the dims l / tc, l / tc + lpc, ... (lpc = 32 / tc lanes per
 * cell; K rows padded to dk + lpc floats, so the 32 lanes read 32 banks), summed over the cell's
 * lanes by shuffles; then each row's tile max and sum over the cells, and the V pass with lane l
 * owning output elements l, l + 32, ... and each cell's probability broadcast from its lane. Rows
 * whose cells are all masked give 0. With xq, each token's output row is also quantized (Q8_1). */
template <uint32_t TK, uint32_t TV, int ROWS, int MAXD>
__global__ void __launch_bounds__(FT_WARPS * 32)
    k_fattn_tile(fa_args a, int n_tok, int tc, const float *__restrict__ q, const uint8_t *__restrict__ K,
                 const uint8_t *__restrict__ V, const float *__restrict__ mask, float *__restrict__ out,
                 int64_t out_stride, uint8_t *__restrict__ xq, size_t xq_row) {
    extern __shared__ float sh[];
    const int BROWS = FT_WARPS * ROWS, lpc = 32 / tc, kst = a.dk + lpc, vst = a.v_in_k ? kst : a.dv;
    float *qs = sh, *ks = qs + BROWS * a.dk, *vs = a.v_in_k ? ks : ks + tc * kst;
    int *flag = (int *)(ks + tc * kst + (a.v_in_k ? 0 : tc * a.dv));
    const int hk = blockIdx.y, G = a.H / a.Hkv, lane = threadIdx.x % 32, w = threadIdx.x / 32;
    const int64_t rb = (int64_t)blockIdx.x * BROWS;
    const int nv = a.dv / 32;
    for (int i = threadIdx.x; i < BROWS * a.dk; i += blockDim.x) {
        const int64_t r = rb + i / a.dk, t = r / G;
        qs[i] = t < n_tok ? q[t * a.q_stride + (size_t)(hk * G + r % G) * a.dk + i % a.dk] : 0.0f;
    }
    int tok[ROWS]; /* -1: a row past the last token */
    int head[ROWS];
    float m[ROWS], l[ROWS], acc[ROWS][MAXD];
    MRC_UNROLL
    for (int i = 0; i < ROWS; i++) {
        const int64_t r = rb + w * ROWS + i;
        tok[i] = r / G < n_tok ? (int)(r / G) : -1;
        head[i] = hk * G + (int)(r % G);
        m[i] = -INFINITY, l[i] = 0.0f;
        MRC_UNROLL
        for (int j = 0; j < MAXD; j++) acc[i][j] = 0.0f;
    }
    const int64_t t_first = rb / G, t_last = min((int64_t)n_tok - 1, (rb + BROWS - 1) / G);
    const uint8_t *Kh = K + (size_t)hk * a.n_ctx * a.k_row, *Vh = V + (size_t)hk * a.n_ctx * a.v_row;
    const int cl = lane % tc, part = lane / tc;
    for (int c0 = 0; c0 < a.n_kv; c0 += tc) {
        const int nc = min(tc, a.n_kv - c0);
        __syncthreads(); /* the last tile's reads are done */
        if (threadIdx.x == 0) *flag = 0;
        __syncthreads();
        /* skip a tile that every token of the block has masked (the causal mask's upper part) */
        bool any = !mask;
        for (int i = threadIdx.x; !any && i < (int)(t_last - t_first + 1) * nc; i += blockDim.x)
            any = mask[(t_first + i / nc) * a.mask_stride + c0 + i % nc] != -INFINITY;
        if (any) *flag = 1;
        __syncthreads();
        if (!*flag) continue;
        for (int i = threadIdx.x; i < tc * a.dk; i += blockDim.x) {
            const int c = i / a.dk, d = i % a.dk;
            ks[c * kst + d] = c < nc ? kv_elem<TK>(Kh + (size_t)(c0 + c) * a.k_row, d) : 0.0f;
        }
        for (int i = threadIdx.x; !a.v_in_k && i < tc * a.dv; i += blockDim.x) {
            const int c = i / a.dv;
            vs[i] = c < nc ? kv_elem<TV>(Vh + (size_t)(c0 + c) * a.v_row, i % a.dv) : 0.0f;
        }
        __syncthreads();
        float s[ROWS];
        MRC_UNROLL
        for (int i = 0; i < ROWS; i++) s[i] = 0.0f;
        const float *kr = ks + cl * kst, *qw = qs + w * ROWS * a.dk;
        for (int d = part; d < a.dk; d += lpc) {
            const float kv = kr[d];
            MRC_UNROLL
            for (int i = 0; i < ROWS; i++) s[i] = __fmaf_rn(qw[i * a.dk + d], kv, s[i]);
        }
        MRC_UNROLL
        for (int i = 0; i < ROWS; i++) {
            for (int o = tc; o < 32; o <<= 1) s[i] += __shfl_xor_sync(0xffffffffu, s[i], o, 32);
            float sv = -INFINITY;
            if (tok[i] >= 0 && cl < nc) {
                const float mj = mask ? mask[tok[i] * a.mask_stride + c0 + cl] : 0.0f;
                if (mj != -INFINITY) {
                    sv = s[i] * a.scale;
                    if (a.softcap > 0.0f) sv = a.softcap * tanhf(sv / a.softcap);
                    sv += mj;
                }
            }
            float mx = sv;
            for (int o = 1; o < tc; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o, 32));
            const float mn = fmaxf(m[i], mx);
            if (mn == -INFINITY) continue; /* nothing of this row so far: uniform over the warp */
            const float corr = __expf(m[i] - mn), p = __expf(sv - mn);
            float ps = p;
            for (int o = 1; o < tc; o <<= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o, 32);
            l[i] = l[i] * corr + ps;
            m[i] = mn;
            MRC_UNROLL
            for (int j = 0; j < MAXD; j++) acc[i][j] *= corr;
            for (int c = 0; c < nc; c++) {
                const float pc = __shfl_sync(0xffffffffu, p, c, 32);
                MRC_UNROLL
                for (int j = 0; j < MAXD; j++)
                    if (j < nv) acc[i][j] = __fmaf_rn(pc, vs[c * vst + lane + 32 * j], acc[i][j]);
            }
        }
    }
    MRC_UNROLL
    for (int i = 0; i < ROWS; i++) {
        if (tok[i] < 0) continue; /* uniform over the warp */
        const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
        float *o = out + tok[i] * out_stride + (size_t)head[i] * a.dv;
        MRC_UNROLL
        for (int j = 0; j < MAXD; j++)
            if (j < nv) {
                const float v = acc[i][j] * inv;
                o[lane + 32 * j] = v;
                if (xq)
                    mrc_q8_1_warp(v, xq + tok[i] * xq_row, (int64_t)a.H * a.dv, (head[i] * a.dv) / 32 + j, lane);
            }
    }
}

/* grid (H, tokens): out[z*out_stride + h*dv + e] = sum_s acc_s[e] e^(m_s - M) / sum_s l_s e^(m_s - M)
 * (0 when all masked); with xq, token z's row of H*dv outputs also quantized into the Q8_1 row
 * at xq + z*xq_row (warp w of 128 threads holds 32 consecutive elements: one Q8_1 block). */
__global__ void k_fattn_combine(const float *part, int n_split, int dv, float *out, int64_t out_stride, uint8_t *xq,
                                size_t xq_row) {
    const int H = (int)gridDim.x, h = blockIdx.x;
    fa_merge(part + ((size_t)blockIdx.y * H + h) * n_split * (dv + 2), n_split, dv, H, h,
             out + (size_t)blockIdx.y * out_stride, xq ? xq + (size_t)blockIdx.y * xq_row : NULL);
}

/* The K / V type pairs the attention kernels take (F16 or Q8_0 each): L(TK, TV) for the pair of
 * p->type_k and tv, in the launcher's scope. */
#define FA_TYPE_PAIRS(L)                                                                                               \
    if (p->type_k == MR_TYPE_F16 && tv == MR_TYPE_F16) L(MR_TYPE_F16, MR_TYPE_F16);                                   \
    else if (p->type_k == MR_TYPE_F16) L(MR_TYPE_F16, MR_TYPE_Q8_0);                                                   \
    else if (tv == MR_TYPE_F16) L(MR_TYPE_Q8_0, MR_TYPE_F16);                                                          \
    else L(MR_TYPE_Q8_0, MR_TYPE_Q8_0)

int mrc_attn(mrc_ctx *c, const mrc_attn_params *p, const float *q, const void *k, const void *v, const float *mask,
             float *out) {
    const bool tk_ok = p->type_k == MR_TYPE_F16 || p->type_k == MR_TYPE_Q8_0;
    const bool tv_ok = p->v_in_k || p->type_v == MR_TYPE_F16 || p->type_v == MR_TYPE_Q8_0;
    const int n_tok = p->n_tok > 0 ? p->n_tok : 1;
    if (!tk_ok || !tv_ok || p->dk <= 0 || p->dk % 32 || p->dk > 32 * FA_MAXK || p->dv <= 0 || p->dv % 32 ||
        p->dv > 32 * FA_MAXV || p->n_head_kv <= 0 || p->n_head % p->n_head_kv || p->n_kv > p->n_ctx ||
        (p->v_in_k && p->dv > p->dk) || p->n_tok < 0 || p->q_stride < 0 || p->mask_stride < 0 || p->out_stride < 0) {
        mr_seterr("cuda: attn: unsupported shape (heads %d/%d, dk %d, dv %d, K %s, V %s, n_kv %d of %d, %d tokens)",
                  p->n_head, p->n_head_kv, p->dk, p->dv, mr_type_name(p->type_k), mr_type_name(p->type_v), p->n_kv,
                  p->n_ctx, p->n_tok);
        return -1;
    }
    if (p->n_head <= 0) return 0;
    const uint8_t *K = (const uint8_t *)k, *V = (const uint8_t *)(p->v_in_k ? k : v);
    const uint32_t tv = p->v_in_k ? p->type_k : p->type_v;
    fa_args a;
    a.H = p->n_head, a.Hkv = p->n_head_kv, a.dk = p->dk, a.dv = p->dv, a.n_ctx = p->n_ctx, a.n_kv = p->n_kv;
    a.k_row = mr_row_size(p->type_k, p->dk);
    a.v_row = p->v_in_k ? a.k_row : mr_row_size(p->type_v, p->dv);
    a.scale = p->scale, a.softcap = p->softcap, a.v_in_k = p->v_in_k;
    a.q_stride = p->q_stride ? p->q_stride : (int64_t)p->n_head * p->dk;
    a.mask_stride = p->mask_stride ? p->mask_stride : p->n_kv;
    const int64_t out_stride = p->out_stride ? p->out_stride : (int64_t)p->n_head * p->dv;
    const size_t xq_row = mrc_q8_1_row_size((int64_t)p->n_head * p->dv);
    /* a prompt whose 16-row blocks alone fill the GPU: the tiled kernel (MOERUN_CUDA_FA_TILE=0 / 1
     * turns it off / on whatever the size, for A/B runs and tests) */
    const bool mla = p->dk > 256 || p->dv > 256; /* 2 rows a warp, 16 values a lane */
    const int rows = FT_WARPS * (mla ? 2 : 4);
    const int tc = p->dk > 576 || p->dv > 512 ? 0 : ft_cells(rows, p->dk, p->dv, p->v_in_k);
    const int64_t n_rb = ((int64_t)n_tok * (p->n_head / p->n_head_kv) + rows - 1) / rows;
    bool tile = tc > 0 && n_tok > 1 && n_rb <= 0x7fffffff; /* the environment only for prompts, not per token */
    if (tile) {
        const char *ft_env = getenv("MOERUN_CUDA_FA_TILE");
        tile = ft_env && *ft_env ? strcmp(ft_env, "0") != 0 : n_rb * p->n_head_kv >= c->n_sm;
    }
    if (tile) {
        const dim3 grid((unsigned)n_rb, (unsigned)p->n_head_kv);
        const size_t shm = ft_smem(rows, tc, p->dk, p->dv, p->v_in_k);
        uint8_t *xq = (uint8_t *)p->out_q8;
#define FT_LAUNCH(TK, TV, R, D)                                                                                        \
    k_fattn_tile<TK, TV, R, D><<<grid, FT_WARPS * 32, shm, c->stream>>>(a, n_tok, tc, q, K, V, mask, out, out_stride, xq, \
                                                                        xq_row)
#define FT_GQA(TK, TV) FT_LAUNCH(TK, TV, 4, 8)
#define FT_MLA(TK, TV) FT_LAUNCH(TK, TV, 2, 16)
        if (mla) {
            FA_TYPE_PAIRS(FT_MLA);
        } else {
            FA_TYPE_PAIRS(FT_GQA);
        }
#undef FT_MLA
#undef FT_GQA
#undef FT_LAUNCH
        MRC_LAUNCHED(c, "fattn_tile", "heads %d/%d, dk %d, dv %d, n_kv %d, tokens %d, %d cells a tile, K %s, V %s",
                     p->n_head, p->n_head_kv, p->dk, p->dv, p->n_kv, n_tok, tc, mr_type_name(p->type_k),
                     mr_type_name(tv));
        return 0;
    }
    /* about two blocks per SM over all (head, token) pairs, at least 64 cells per split. The
     * cells are cut as if n_kv were rounded up to the decode graphs' bucket (mrc_kv_bucket),
     * so an eager step over n_kv cells and a replayed graph over the bucket's (the rest masked)
     * share splits and warps cell for cell, and give the same floats; splits past n_kv are empty
     * (m = -inf) and the combine skips them. */
    const int64_t pairs = (int64_t)p->n_head * n_tok;
    const int nb = mrc_kv_bucket(p->n_kv, p->n_ctx);
    int n_split = (int)((2 * c->n_sm + pairs - 1) / pairs);
    n_split = max(1, min(n_split, (nb + 63) / 64));
    a.cells_per_split = (nb + n_split - 1) / n_split;
    if (a.cells_per_split == 0) a.cells_per_split = 1;
    a.n_split = n_split;
    const int chunk = 65535; /* grid z */
    const int nz = n_tok < chunk ? n_tok : chunk;
    float *part = (float *)mrc_scratch(c, sizeof(float) * (size_t)p->n_head * n_split * nz * (p->dv + 2));
    if (!part) return -1;
    const size_t shm = sizeof(float) * FA_WARPS * (p->dv + 2);
    for (int t0 = 0; t0 < n_tok; t0 += chunk) {
        const int nt = n_tok - t0 < chunk ? n_tok - t0 : chunk;
        const float *qt = q + (size_t)t0 * a.q_stride, *mt = mask ? mask + (size_t)t0 * a.mask_stride : NULL;
        const dim3 grid((unsigned)p->n_head, (unsigned)n_split, (unsigned)nt);
        /* one launch: the heads' last blocks merge (a decode step) */
        const bool one = p->one_launch && n_tok == 1 && p->n_head <= MRC_ATTN_MAX_FUSED;
        unsigned *done = one ? c->done + 1 : NULL;
        uint8_t *xq = p->out_q8 ? (uint8_t *)p->out_q8 + (size_t)t0 * xq_row : NULL;
        float *ot = out + (size_t)t0 * out_stride;
#define FD_LAUNCH(TK, TV)                                                                                              \
    k_fattn_decode<TK, TV><<<grid, FA_WARPS * 32, shm, c->stream>>>(a, qt, K, V, mt, part, done, ot, xq)
        FA_TYPE_PAIRS(FD_LAUNCH);
#undef FD_LAUNCH
        MRC_LAUNCHED(c, "fattn_decode", "heads %d/%d, dk %d, dv %d, n_kv %d, splits %d, tokens %d, K %s, V %s%s",
                     p->n_head, p->n_head_kv, p->dk, p->dv, p->n_kv, n_split, nt, mr_type_name(p->type_k),
                     mr_type_name(tv), one ? ", one launch" : "");
        if (one) continue;
        k_fattn_combine<<<dim3((unsigned)p->n_head, (unsigned)nt), 128, 0, c->stream>>>(part, n_split, p->dv, ot,
                                                                                     out_stride, xq, xq_row);
        MRC_LAUNCHED(c, "fattn_combine", "heads %d, dv %d, splits %d, tokens %d", p->n_head, p->dv, n_split, nt);
    }
    return 0;
}
