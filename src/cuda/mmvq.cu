/*
 * mmvq.cu — decode matrix-vector products reading GGUF blocks directly:
 * activation quantizer (float -> Q8_1 SoA), the quantized matvec for
 * Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS (dp4a, per-thread units of mmvq.cuh), the
 * grouped MoE variant (one grid row per selected expert, expert ids on the
 * device, so routing never goes back to the host), and a float-weight
 * matvec (F32 / F16 / BF16, e.g. the router).
 *
 * Mapping: `tpr` threads per weight row (32, or the smallest power of two
 * >= the row's unit count, at least 4, so short rows such as k = 768 do not
 * idle most of a warp), 128 threads per block, partial sums reduced with
 * shuffles inside the row's lane group.
 */
#include "cuda/cuda_common.cuh"
#include "cuda/mmvq.cuh"
#include "cuda/route.cuh"

#define MMVQ_THREADS 128

size_t mrc_q8_1_row_size(int64_t k) { return (size_t)((k + k / 32 * 8 + 15) / 16 * 16); }

/* ---- activation quantizer: one warp per 32-element block -------------------------------- */
__global__ void k_quantize_q8_1(const float *__restrict__ x, uint8_t *__restrict__ xq, int64_t k, int64_t n_rows,
                                size_t row_size) {
    const int64_t nb = k / 32;
    const int64_t gb = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; /* global block over all rows */
    const int lane = threadIdx.x % 32;
    if (gb >= nb * n_rows) return; /* whole warps leave together (nb*n_rows blocks, 32 lanes each) */
    const int64_t row = gb / nb, b = gb % nb;
    mrc_q8_1_warp(x[row * k + b * 32 + lane], xq + row * row_size, k, b, lane);
}

int mrc_quantize_q8_1(mrc_ctx *c, const float *x, void *xq, int64_t k, int64_t n_rows) {
    if (k <= 0 || k % 32) {
        mr_seterr("cuda: quantize_q8_1: k = %lld is not a positive multiple of 32", (long long)k);
        return -1;
    }
    if (n_rows <= 0) return 0;
    const int64_t threads = k / 32 * n_rows * 32;
    k_quantize_q8_1<<<mrc_cdiv(threads, 256), 256, 0, c->stream>>>(x, (uint8_t *)xq, k, n_rows, mrc_q8_1_row_size(k));
    MRC_LAUNCHED(c, "quantize_q8_1", "k %lld, rows %lld", (long long)k, (long long)n_rows);
    return 0;
}

/* g = act(g) * u (SiLU, or GELU when gelu), then g quantized into xq: silu_mul / gelu_mul
 * and quantize_q8_1 in one launch, the same bytes. One warp per 32-element block. */
__global__ void k_act_q8(int gelu, float *__restrict__ g, const float *__restrict__ u, uint8_t *__restrict__ xq,
                         int64_t k, int64_t n_rows, size_t row_size) {
    const int64_t nb = k / 32;
    const int64_t gb = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (gb >= nb * n_rows) return;
    const int64_t row = gb / nb, b = gb % nb, i = row * k + b * 32 + lane;
    const float v = gelu ? mrc_gelu_mul1(g[i], u[i]) : mrc_silu_mul1(g[i], u[i]);
    g[i] = v;
    mrc_q8_1_warp(v, xq + row * row_size, k, b, lane);
}

int mrc_act_q8(mrc_ctx *c, int gelu, float *g, const float *u, void *xq, int64_t n_rows, int64_t k) {
    if (k <= 0 || k % 32) {
        mr_seterr("cuda: act_q8: k = %lld is not a positive multiple of 32", (long long)k);
        return -1;
    }
    if (n_rows <= 0) return 0;
    const int64_t threads = k / 32 * n_rows * 32;
    k_act_q8<<<mrc_cdiv(threads, 256), 256, 0, c->stream>>>(gelu, g, u, (uint8_t *)xq, k, n_rows, mrc_q8_1_row_size(k));
    MRC_LAUNCHED(c, "act_q8", "%s, k %lld, rows %lld", gelu ? "gelu" : "silu", (long long)k, (long long)n_rows);
    return 0;
}

/* ---- quantized matvec ------------------------------------------------------------------------------ */
template <uint32_t T>
__device__ __forceinline__ float vdot(const uint8_t *row, int u, const int8_t *xq, const float *xds) {
    if (T == MR_TYPE_Q4_0) return mrc_vdot_q4_0(row, u, xq, xds);
    if (T == MR_TYPE_Q4_1) return mrc_vdot_q4_1(row, u, xq, xds);
    if (T == MR_TYPE_Q5_0) return mrc_vdot_q5_0(row, u, xq, xds);
    if (T == MR_TYPE_Q5_1) return mrc_vdot_q5_1(row, u, xq, xds);
    if (T == MR_TYPE_Q8_0) return mrc_vdot_q8_0(row, u, xq, xds);
    if (T == MR_TYPE_Q4_K) return mrc_vdot_q4_K(row, u, xq, xds);
    if (T == MR_TYPE_Q5_K) return mrc_vdot_q5_K(row, u, xq, xds);
    if (T == MR_TYPE_Q2_K) return mrc_vdot_q2_K(row, u, xq, xds);
    if (T == MR_TYPE_Q3_K) return mrc_vdot_q3_K(row, u, xq, xds);
    if (T == MR_TYPE_IQ4_NL) return mrc_vdot_iq4_nl(row, u, xq, xds);
    if (T == MR_TYPE_IQ4_XS) return mrc_vdot_iq4_xs(row, u, xq, xds);
    return mrc_vdot_q6_K(row, u, xq, xds);
}

/* A row's dot product with a Q8_1 activation x by its tpr lanes: each lane sums units lane,
 * lane + tpr, ..., then the lane group reduces by xor shuffles (every lane gets the same total).
 * All lanes of the warp must call it; row NULL (no row here) contributes 0. The one reduction
 * of every quantized matvec kernel, so the fused ones give the same sums. */
template <uint32_t T>
__device__ __forceinline__ float row_dot(const uint8_t *row, int units, int lane, int tpr, const uint8_t *x, int64_t k) {
    float sum = 0.0f;
    if (row)
        for (int u = lane; u < units; u += tpr) sum += vdot<T>(row, u, (const int8_t *)x, (const float *)(x + k));
    for (int o = tpr / 2; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o, 32);
    return sum;
}

/* Slots per block of the grouped kernels (k_mmvq_grp, k_mmvq_gua_grp). */
#define MMVQ_NC 8

/* row_dot for nc <= MMVQ_NC activations at once (activation c at x + c * x_stride): each unit of
 * the row is read once for all of them, and sum[c] is row_dot's sum for activation c, bit for bit
 * (the same units in the same order, the same reduction). nc is the same in the whole warp. */
template <uint32_t T>
__device__ __forceinline__ void row_dot_mc(const uint8_t *row, int units, int lane, int tpr, const uint8_t *x,
                                           size_t x_stride, int64_t k, int nc, float *sum) {
#pragma unroll
    for (int c = 0; c < MMVQ_NC; c++) sum[c] = 0.0f;
    if (row)
        for (int u = lane; u < units; u += tpr) {
#pragma unroll
            for (int c = 0; c < MMVQ_NC; c++) { /* break, not skip: column c runs after c - 1, so the
                                                  * compiler reuses its weight loads and unpacking */
                if (c >= nc) break;
                const uint8_t *xc = x + (size_t)c * x_stride;
                sum[c] += vdot<T>(row, u, (const int8_t *)xc, (const float *)(xc + k));
            }
        }
#pragma unroll
    for (int c = 0; c < MMVQ_NC; c++)
        if (c < nc)
            for (int o = tpr / 2; o > 0; o >>= 1) sum[c] += __shfl_xor_sync(0xffffffffu, sum[c], o, 32);
}

/* The next run of slots of one matrix in the block's group [c0, ns): its matrix (ids NULL: all
 * matrix 0) and its length. */
__device__ __forceinline__ int slot_run(const int32_t *ids, int s0, int c0, int ns, int64_t *mat) {
    if (!ids) {
        *mat = 0;
        return ns - c0;
    }
    const int32_t e = ids[s0 + c0];
    int n = 1;
    while (c0 + n < ns && ids[s0 + c0 + n] == e) n++;
    *mat = e;
    return n;
}

/* Slot blockIdx.y: matrix ids[slot] (0 without ids), activation at xq +
 * slot*x_stride, output y + slot*m. */
template <uint32_t T>
__global__ void __launch_bounds__(MMVQ_THREADS)
    k_mmvq(const uint8_t *__restrict__ W, size_t row_bytes, size_t mat_bytes, int64_t n_mat,
           const int32_t *__restrict__ ids, const uint8_t *__restrict__ xq, size_t x_stride, int64_t k,
           float *__restrict__ y, int64_t m, int units, int tpr, const uint8_t *__restrict__ W2, float *__restrict__ y2,
           int n1) {
    int slot = blockIdx.y;
    if (slot >= n1) { /* the second matrix (moe_matvec2: up after gate), the same slots */
        W = W2, y = y2;
        slot -= n1;
    }
    const int64_t r = (int64_t)blockIdx.x * (MMVQ_THREADS / tpr) + threadIdx.x / tpr;
    const int lane = threadIdx.x % tpr;
    const int64_t mat = ids ? ids[slot] : 0;
    const uint8_t *row = r < m && mat >= 0 && mat < n_mat ? W + (size_t)mat * mat_bytes + (size_t)r * row_bytes : NULL;
    const float sum = row_dot<T>(row, units, lane, tpr, xq + (size_t)slot * x_stride, k);
    if (lane == 0 && r < m) y[(size_t)slot * m + r] = sum;
}

/* k_mmvq over slots whose runs share a matrix (a prompt's pairs sorted by expert; ids NULL: all
 * matrix 0): block row g takes slots g*MMVQ_NC ... (up to MMVQ_NC) and reads a weight row once per
 * run of one matrix among them, not once per slot. The same floats as k_mmvq. Block rows from
 * n_grp on: the second matrix (W2 into y2), the same slots. */
template <uint32_t T>
__global__ void __launch_bounds__(MMVQ_THREADS)
    k_mmvq_grp(const uint8_t *__restrict__ W, size_t row_bytes, size_t mat_bytes, int64_t n_mat,
               const int32_t *__restrict__ ids, int n_slots, const uint8_t *__restrict__ xq, size_t x_stride,
               int64_t k, float *__restrict__ y, int64_t m, int units, int tpr, const uint8_t *__restrict__ W2,
               float *__restrict__ y2, int n_grp) {
    int g = blockIdx.y;
    if (g >= n_grp) {
        W = W2, y = y2;
        g -= n_grp;
    }
    const int s0 = g * MMVQ_NC, ns = min(MMVQ_NC, n_slots - s0);
    const int64_t r = (int64_t)blockIdx.x * (MMVQ_THREADS / tpr) + threadIdx.x / tpr;
    const int lane = threadIdx.x % tpr;
    for (int c0 = 0; c0 < ns;) {
        int64_t mat;
        const int nc = slot_run(ids, s0, c0, ns, &mat);
        const uint8_t *row =
            r < m && mat >= 0 && mat < n_mat ? W + (size_t)mat * mat_bytes + (size_t)r * row_bytes : NULL;
        float sum[MMVQ_NC];
        row_dot_mc<T>(row, units, lane, tpr, xq + (size_t)(s0 + c0) * x_stride, x_stride, k, nc, sum);
        if (lane == 0 && r < m) {
#pragma unroll
            for (int c = 0; c < MMVQ_NC; c++)
                if (c < nc) y[(size_t)(s0 + c0 + c) * m + r] = sum[c];
        }
        c0 += nc;
    }
}

/* Up to 3 matrices of one type and row length times one Q8_1 activation (q, k and v), one
 * launch: the rows of all matrices in a row, row r of the grid in matrix s. */
struct mv_set {
    const uint8_t *w[3];
    float *y[3];
    int64_t m[3];
    size_t rb[3];
};

template <uint32_t T>
__global__ void __launch_bounds__(MMVQ_THREADS)
    k_mmvq_n(mv_set S, const uint8_t *__restrict__ xq, int64_t k, int64_t m_all, int units, int tpr) {
    const int64_t rg = (int64_t)blockIdx.x * (MMVQ_THREADS / tpr) + threadIdx.x / tpr;
    const int lane = threadIdx.x % tpr;
    int64_t r = rg;
    int s = 0;
    if (rg < m_all)
        while (r >= S.m[s]) r -= S.m[s], s++;
    const float sum = row_dot<T>(rg < m_all ? S.w[s] + (size_t)r * S.rb[s] : NULL, units, lane, tpr, xq, k);
    if (lane == 0 && rg < m_all) S.y[s][r] = sum;
}

/* k_mmvq_n for matrices of different K-quants of 64-element units (Q4_K, Q5_K, Q6_K: the same
 * units and lanes): each matrix's rows start a block (blocks blk0[s] .. blk0[s + 1] - 1 are matrix
 * s), so the type a block reads is the same for all its warps, and every row is k_mmvq's sum. */
struct mv_setk {
    const uint8_t *w[3];
    float *y[3];
    int64_t m[3];
    size_t rb[3];
    uint32_t type[3];
    unsigned blk0[4];
};

__global__ void __launch_bounds__(MMVQ_THREADS)
    k_mmvq_nk(mv_setk S, const uint8_t *__restrict__ xq, int64_t k, int units, int tpr) {
    /* the block's matrix, its fields picked by branches (an index into the parameter arrays
     * would copy them to local memory) */
    const int s = blockIdx.x < S.blk0[1] ? 0 : blockIdx.x < S.blk0[2] ? 1 : 2;
#define MV_PICK(F) (s == 0 ? S.F[0] : s == 1 ? S.F[1] : S.F[2])
    const int64_t m = MV_PICK(m);
    const uint32_t type = MV_PICK(type);
    float *y = MV_PICK(y);
    const int64_t r = (int64_t)(blockIdx.x - MV_PICK(blk0)) * (MMVQ_THREADS / tpr) + threadIdx.x / tpr;
    const int lane = threadIdx.x % tpr;
    const uint8_t *row = r < m ? MV_PICK(w) + (size_t)r * MV_PICK(rb) : NULL;
#undef MV_PICK
    const float sum = type == MR_TYPE_Q4_K   ? row_dot<MR_TYPE_Q4_K>(row, units, lane, tpr, xq, k)
                      : type == MR_TYPE_Q5_K ? row_dot<MR_TYPE_Q5_K>(row, units, lane, tpr, xq, k)
                                             : row_dot<MR_TYPE_Q6_K>(row, units, lane, tpr, xq, k);
    if (lane == 0 && r < m) y[r] = sum;
}

/* Gate and up of 32 rows for one slot (grid: 32-row group x slot), act(g) * u, and the 32
 * results quantized as one Q8_1 block of the slot's row: moe_matvec2 + act_q8 in one launch,
 * the same dot products (k_mmvq's lanes and reduction), gate function and quantizer. A decode
 * step has few such blocks (Qwen3-30B-A3B: 24 x 8), so each is large (gua_threads: 32 rows at
 * once, or 16 at a time for full 32-lane rows): more loads in flight per block, which is what
 * a latency-bound grid of a few hundred blocks needs to approach the bandwidth. */
#define GUA_THREADS 512
static int gua_threads(int tpr) { return tpr == 32 ? GUA_THREADS : 32 * tpr; }

template <uint32_t T>
__global__ void __launch_bounds__(GUA_THREADS)
    k_mmvq_gua(const uint8_t *__restrict__ Wg, const uint8_t *__restrict__ Wu, size_t row_bytes, size_t mat_bytes,
               int64_t n_mat, const int32_t *__restrict__ ids, const uint8_t *__restrict__ xq, size_t x_stride,
               int64_t k, int64_t m, int units, int tpr, int gelu, float *__restrict__ g_out,
               uint8_t *__restrict__ xq_out, size_t out_row) {
    __shared__ float vals[32];
    const int slot = blockIdx.y, lane = threadIdx.x % tpr, per = blockDim.x / tpr; /* gua_threads: 32 % per == 0 */
    const int64_t mat = ids ? ids[slot] : 0;
    const uint8_t *x = xq + (size_t)slot * x_stride;
    const bool ok = mat >= 0 && mat < n_mat;
    for (int r0 = 0; r0 < 32; r0 += per) {
        const int64_t r = (int64_t)blockIdx.x * 32 + r0 + threadIdx.x / tpr;
        const size_t off = (size_t)mat * mat_bytes + (size_t)r * row_bytes;
        const float sg = row_dot<T>(ok ? Wg + off : NULL, units, lane, tpr, x, k);
        const float su = row_dot<T>(ok ? Wu + off : NULL, units, lane, tpr, x, k);
        if (lane == 0) vals[r0 + threadIdx.x / tpr] = gelu ? mrc_gelu_mul1(sg, su) : mrc_silu_mul1(sg, su);
    }
    __syncthreads();
    if (threadIdx.x < 32) {
        const float v = vals[threadIdx.x];
        if (g_out) g_out[(size_t)slot * m + blockIdx.x * 32 + threadIdx.x] = v;
        mrc_q8_1_warp(v, xq_out + (size_t)slot * out_row, m, blockIdx.x, threadIdx.x);
    }
}

/* k_mmvq_gua over slots whose runs share a matrix (as k_mmvq_grp): block (32-row group, g)
 * takes slots g*MMVQ_NC ..., reads each gate and up row once per run, and quantizes one Q8_1
 * block of each of its slots' rows. The same floats and bytes as k_mmvq_gua. */
template <uint32_t T>
__global__ void __launch_bounds__(MMVQ_THREADS)
    k_mmvq_gua_grp(const uint8_t *__restrict__ Wg, const uint8_t *__restrict__ Wu, size_t row_bytes,
                   size_t mat_bytes, int64_t n_mat, const int32_t *__restrict__ ids, int n_slots,
                   const uint8_t *__restrict__ xq, size_t x_stride, int64_t k, int64_t m, int units, int tpr, int gelu,
                   float *__restrict__ g_out, uint8_t *__restrict__ xq_out, size_t out_row) {
    __shared__ float vals[MMVQ_NC][32];
    const int s0 = blockIdx.y * MMVQ_NC, ns = min(MMVQ_NC, n_slots - s0);
    const int lane = threadIdx.x % tpr, per = MMVQ_THREADS / tpr;
    for (int c0 = 0; c0 < ns;) {
        int64_t mat;
        const int nc = slot_run(ids, s0, c0, ns, &mat);
        const bool ok = mat >= 0 && mat < n_mat;
        const uint8_t *x = xq + (size_t)(s0 + c0) * x_stride;
        for (int r0 = 0; r0 < 32; r0 += per) {
            const int64_t r = (int64_t)blockIdx.x * 32 + r0 + threadIdx.x / tpr;
            const size_t off = (size_t)mat * mat_bytes + (size_t)r * row_bytes;
            float sg[MMVQ_NC], su[MMVQ_NC];
            row_dot_mc<T>(ok ? Wg + off : NULL, units, lane, tpr, x, x_stride, k, nc, sg);
            row_dot_mc<T>(ok ? Wu + off : NULL, units, lane, tpr, x, x_stride, k, nc, su);
            if (lane == 0) {
#pragma unroll
                for (int c = 0; c < MMVQ_NC; c++)
                    if (c < nc)
                        vals[c0 + c][r0 + threadIdx.x / tpr] =
                            gelu ? mrc_gelu_mul1(sg[c], su[c]) : mrc_silu_mul1(sg[c], su[c]);
            }
        }
        c0 += nc;
    }
    __syncthreads();
    for (int c = threadIdx.x / 32; c < ns; c += MMVQ_THREADS / 32) { /* a warp per slot */
        const int l = threadIdx.x % 32;
        const float v = vals[c][l];
        if (g_out) g_out[(size_t)(s0 + c) * m + blockIdx.x * 32 + l] = v;
        mrc_q8_1_warp(v, xq_out + (size_t)(s0 + c) * out_row, m, blockIdx.x, l);
    }
}

/* One token's routed experts summed: y[r] (+)= sum over j < n_ids of wts[j] * dot(row r of
 * matrix ids[j], activation j): the down projections and moe_combine in one launch, the same
 * per-slot sums as k_mmvq (same lanes and reduction) and the same weighted sum as
 * k_moe_combine (j ascending, fused multiply-adds from 0). A block takes the 32 / tpr rows one
 * warp holds; its 8 warps take the slots j = warp, warp + 8, ... (the dot products of one row
 * run side by side, not one after another), and the weighted sums are made from shared memory
 * in j order. n_ids <= 64. */
#define SUM_THREADS 256
template <uint32_t T>
__global__ void __launch_bounds__(SUM_THREADS)
    k_mmvq_sum(const uint8_t *__restrict__ W, size_t row_bytes, size_t mat_bytes, int64_t n_mat,
               const int32_t *__restrict__ ids, int n_ids, const uint8_t *__restrict__ xq, size_t x_stride, int64_t k,
               const float *__restrict__ wts, float *__restrict__ y, int64_t m, int units, int tpr, int acc) {
    __shared__ float dots[64 * 8]; /* [slot][row of the block] */
    const int rpw = 32 / tpr, wl = threadIdx.x % 32, lr = wl / tpr, lane = wl % tpr;
    const int64_t r = (int64_t)blockIdx.x * rpw + lr;
    for (int j = threadIdx.x / 32; j < n_ids; j += SUM_THREADS / 32) { /* warp-uniform */
        const int64_t mat = ids[j];
        const uint8_t *row =
            r < m && mat >= 0 && mat < n_mat ? W + (size_t)mat * mat_bytes + (size_t)r * row_bytes : NULL;
        const float d = row_dot<T>(row, units, lane, tpr, xq + (size_t)j * x_stride, k);
        if (lane == 0) dots[j * 8 + lr] = d;
    }
    __syncthreads();
    const int64_t rr = (int64_t)blockIdx.x * rpw + threadIdx.x;
    if ((int)threadIdx.x < rpw && rr < m) {
        float s = 0.0f;
        for (int j = 0; j < n_ids; j++) s = __fmaf_rn(wts[j], dots[j * 8 + threadIdx.x], s);
        y[rr] = acc ? y[rr] + s : s;
    }
}

/* A float-weight row's dot product with x by its tpr lanes (every lane gets the total; row NULL:
 * 0; all lanes of the warp call it). With k a multiple of 4 and row and x aligned to 4 elements, lane l
 * takes the 4-element groups l, l + tpr, ...: one vector load of W and of x each, four partial
 * sums (independent chains, so loads overlap), summed as (s0 + s1) + (s2 + s3); else element by
 * element. Then xor shuffles. k_mv_float and k_router_route both use it: the same logits. */
template <typename WT>
__device__ __forceinline__ float frow_dot(const WT *row, const float *x, int64_t k, int lane, int tpr) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    if (row) {
        if (k % 4 == 0 && ((uintptr_t)x & 15) == 0 && ((uintptr_t)row & (4 * sizeof(WT) - 1)) == 0) {
            for (int64_t i = 4 * (int64_t)lane; i < k; i += 4 * (int64_t)tpr) {
                float w[4];
                mrc_w4(row + i, w);
                const float4 xv = *(const float4 *)(x + i);
                s0 = __fmaf_rn(w[0], xv.x, s0), s1 = __fmaf_rn(w[1], xv.y, s1);
                s2 = __fmaf_rn(w[2], xv.z, s2), s3 = __fmaf_rn(w[3], xv.w, s3);
            }
        } else
            for (int64_t i = lane; i < k; i += tpr) s0 = __fmaf_rn(mrc_w2f(row[i]), x[i], s0);
    }
    float sum = (s0 + s1) + (s2 + s3);
    for (int o = tpr / 2; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o, 32);
    return sum;
}

/* Float weights (F32, F16) times float activations: tpr lanes per row. */
template <typename WT>
__global__ void __launch_bounds__(MMVQ_THREADS)
    k_mv_float(const WT *__restrict__ W, int64_t n_mat, const int32_t *__restrict__ ids, const float *__restrict__ x,
               size_t x_stride, int64_t k, float *__restrict__ y, int64_t m, int tpr) {
    const int slot = blockIdx.y;
    const int64_t r = (int64_t)blockIdx.x * (MMVQ_THREADS / tpr) + threadIdx.x / tpr;
    const int lane = threadIdx.x % tpr;
    const int64_t mat = ids ? ids[slot] : 0;
    const float *xs = x + (size_t)slot * x_stride;
    const float sum = frow_dot(r < m && mat >= 0 && mat < n_mat ? W + ((size_t)mat * m + r) * k : NULL, xs, k, lane, tpr);
    if (lane == 0 && r < m) y[(size_t)slot * m + r] = sum;
}

/* The router of one token and its routing in one launch: the logits (float weights, tpr lanes
 * per row, the sums of k_mv_float), then the last block to finish (a device counter, reset to 0
 * by that block, so graphs can replay it) routes with one warp (route.cuh, as k_moe_route). */
template <typename WT>
__global__ void __launch_bounds__(MMVQ_THREADS)
    k_router_route(const WT *__restrict__ W, const float *__restrict__ x, int64_t k, int E, int tpr, float *logits,
                   unsigned *done, int K, int gating, const float *bias, bool norm_w, float w_scale, int n_group,
                   int n_group_used, int32_t *ids, float *weights) {
    __shared__ float lg[ROUTE_MAX_E];
    __shared__ bool last;
    const int64_t r = (int64_t)blockIdx.x * (MMVQ_THREADS / tpr) + threadIdx.x / tpr;
    const int lane = threadIdx.x % tpr;
    const float sum = frow_dot(r < E ? W + (size_t)r * k : NULL, x, k, lane, tpr);
    if (lane == 0 && r < E) logits[r] = sum;
    __threadfence(); /* the logits are visible device-wide before this block counts itself done */
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(done, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int e = threadIdx.x; e < E; e += blockDim.x) lg[e] = __ldcg(logits + e); /* from L2, not a stale L1 */
    __syncthreads();
    if (threadIdx.x < 32)
        mrc_route_warp(lg, E, K, gating, bias, norm_w, w_scale, n_group, n_group_used, ids, weights);
    if (threadIdx.x == 0) *done = 0;
}

/* The quantized weight types the dot-product kernels take: one case per type in each
 * launcher's switch (X(T) expands to that launcher's case). */
#define MMVQ_QTYPES(X)                                                                                                 \
    X(MR_TYPE_Q4_0) X(MR_TYPE_Q4_1) X(MR_TYPE_Q5_0) X(MR_TYPE_Q5_1) X(MR_TYPE_Q8_0) X(MR_TYPE_Q4_K) X(MR_TYPE_Q5_K)   \
        X(MR_TYPE_Q6_K) X(MR_TYPE_Q2_K) X(MR_TYPE_Q3_K) X(MR_TYPE_IQ4_NL) X(MR_TYPE_IQ4_XS)

static int pick_tpr(int64_t units) {
    int t = 4;
    while (t < 32 && t < units) t *= 2;
    return t;
}

/* One launch for n_slots slots (grid.y); with base2 (quantized weights of W's type and shape),
 * also the same slots of that second matrix into y2, in the same launch. */
static int launch(mrc_ctx *c, const mrc_weight *W, const uint8_t *base, int64_t n_mat, const int32_t *ids, int n_slots,
                  const float *x, size_t x_stride, const void *xq, size_t xq_stride, float *y,
                  const uint8_t *base2 = NULL, float *y2 = NULL) {
    if (n_slots <= 0) return 0;
    const int ny = base2 ? 2 * n_slots : n_slots;
    if (ny > 65535) {
        mr_seterr("cuda: matvec: %d slots (max 65535)", ny);
        return -1;
    }
    const int ue = mrc_unit_elems(W->type);
    if (ue == 0) {
        if (base2) {
            mr_seterr("cuda: matvec2: float weights (%s) are not paired", mr_type_name(W->type));
            return -1;
        }
        const int tpr = pick_tpr(W->k);
        const dim3 grid(mrc_cdiv(W->m, MMVQ_THREADS / tpr), (unsigned)n_slots);
        if (W->type == MR_TYPE_F32)
            k_mv_float<float><<<grid, MMVQ_THREADS, 0, c->stream>>>((const float *)base, n_mat, ids, x, x_stride, W->k,
                                                                   y, W->m, tpr);
        else if (W->type == MR_TYPE_BF16)
            k_mv_float<mrc_bf16><<<grid, MMVQ_THREADS, 0, c->stream>>>((const mrc_bf16 *)base, n_mat, ids, x, x_stride,
                                                                      W->k, y, W->m, tpr);
        else
            k_mv_float<__half><<<grid, MMVQ_THREADS, 0, c->stream>>>((const __half *)base, n_mat, ids, x, x_stride, W->k,
                                                                    y, W->m, tpr);
        MRC_LAUNCHED(c, "mv_float", "%s, m %lld, k %lld, slots %d", mr_type_name(W->type), (long long)W->m,
                     (long long)W->k, n_slots);
        return 0;
    }
    const int units = (int)(W->k / ue);
    const int tpr = pick_tpr(units);
    const dim3 grid(mrc_cdiv(W->m, MMVQ_THREADS / tpr), (unsigned)ny);
    const uint8_t *xb = (const uint8_t *)xq;
#define MMVQ_CASE(T)                                                                                                   \
    case T:                                                                                                            \
        k_mmvq<T><<<grid, MMVQ_THREADS, 0, c->stream>>>(base, W->row_bytes, W->mat_bytes, n_mat, ids, xb, xq_stride,  \
                                                        W->k, y, W->m, units, tpr, base2, y2, n_slots);                \
        break;
    switch (W->type) {
        MMVQ_QTYPES(MMVQ_CASE)
    default: mr_seterr("cuda: mmvq: type %s unsupported", mr_type_name(W->type)); return -1;
    }
#undef MMVQ_CASE
    MRC_LAUNCHED(c, base2 ? "mmvq (pair)" : "mmvq", "%s, m %lld, k %lld, slots %d, tpr %d", mr_type_name(W->type),
                 (long long)W->m, (long long)W->k, n_slots, tpr);
    return 0;
}

int mrc_matvec(mrc_ctx *c, const mrc_weight *W, int64_t mat, const float *x, const void *xq, float *y) {
    if (mat < 0 || mat >= W->n_mat) {
        mr_seterr("cuda: matvec: matrix %lld of %lld", (long long)mat, (long long)W->n_mat);
        return -1;
    }
    const uint8_t *base = (const uint8_t *)W->data + (size_t)mat * W->mat_bytes;
    return launch(c, W, base, 1, NULL, 1, x, 0, xq, 0, y);
}

int mrc_moe_matvec(mrc_ctx *c, const mrc_weight *W, const int32_t *ids, int n_ids, const float *x, size_t x_stride,
                   const void *xq, size_t xq_stride, float *y) {
    return launch(c, W, (const uint8_t *)W->data, W->n_mat, ids, n_ids, x, x_stride, xq, xq_stride, y);
}

int mrc_matvec_n(mrc_ctx *c, int n, const mrc_weight *const *W, const void *xq, float *const *y) {
    if (n < 1 || n > 3) {
        mr_seterr("cuda: matvec_n: %d matrices (1 to 3)", n);
        return -1;
    }
    mv_set S = {};
    int64_t m_all = 0;
    bool mixed = false;
    for (int i = 0; i < n; i++) {
        if (!mrc_matvec_n_pair(W[0], W[i]) || mrc_unit_elems(W[i]->type) == 0) {
            mr_seterr("cuda: matvec_n: %s (k %lld) with %s (k %lld): one quantized type (or Q4_K/Q5_K/Q6_K) and row "
                      "length", mr_type_name(W[0]->type), (long long)W[0]->k, mr_type_name(W[i]->type),
                      (long long)W[i]->k);
            return -1;
        }
        mixed |= W[i]->type != W[0]->type;
        S.w[i] = (const uint8_t *)W[i]->data, S.y[i] = y[i], S.m[i] = W[i]->m, S.rb[i] = W[i]->row_bytes;
        m_all += W[i]->m;
    }
    for (int i = n; i < 3; i++) S.m[i] = INT64_MAX; /* never reached: r < m_all */
    const int units = (int)(W[0]->k / mrc_unit_elems(W[0]->type));
    const int tpr = pick_tpr(units);
    const uint8_t *xb = (const uint8_t *)xq;
    if (mixed) { /* K-quants of 64-element units: the same units and lanes, the type per block */
        mv_setk K = {};
        K.blk0[0] = 0;
        for (int i = 0; i < 3; i++) {
            if (i < n) K.w[i] = S.w[i], K.y[i] = S.y[i], K.m[i] = S.m[i], K.rb[i] = S.rb[i], K.type[i] = W[i]->type;
            K.blk0[i + 1] = K.blk0[i] + (i < n ? mrc_cdiv(W[i]->m, MMVQ_THREADS / tpr) : 0);
        }
        k_mmvq_nk<<<K.blk0[3], MMVQ_THREADS, 0, c->stream>>>(K, xb, W[0]->k, units, tpr);
        MRC_LAUNCHED(c, "mmvq_nk", "%s %s %s, %d matrices, %lld rows, k %lld, tpr %d", mr_type_name(W[0]->type),
                     mr_type_name(W[1]->type), n > 2 ? mr_type_name(W[2]->type) : "", n, (long long)m_all,
                     (long long)W[0]->k, tpr);
        return 0;
    }
    const unsigned grid = (unsigned)mrc_cdiv(m_all, MMVQ_THREADS / tpr);
#define MMVQ_N_CASE(T)                                                                                                 \
    case T: k_mmvq_n<T><<<grid, MMVQ_THREADS, 0, c->stream>>>(S, xb, W[0]->k, m_all, units, tpr); break;
    switch (W[0]->type) {
        MMVQ_QTYPES(MMVQ_N_CASE)
    default: mr_seterr("cuda: matvec_n: type %s unsupported", mr_type_name(W[0]->type)); return -1;
    }
#undef MMVQ_N_CASE
    MRC_LAUNCHED(c, "mmvq_n", "%s, %d matrices, %lld rows, k %lld, tpr %d", mr_type_name(W[0]->type), n,
                 (long long)m_all, (long long)W[0]->k, tpr);
    return 0;
}

int mrc_moe_matvec_sum(mrc_ctx *c, const mrc_weight *W, const int32_t *ids, int n_ids, const void *xq,
                       size_t xq_stride, const float *wts, float *y, int acc) {
    const int ue = mrc_unit_elems(W->type);
    if (ue == 0 || n_ids <= 0 || n_ids > 64) {
        mr_seterr("cuda: moe_matvec_sum: %s weights, %d slots (quantized, 1 to 64)", mr_type_name(W->type), n_ids);
        return -1;
    }
    const int units = (int)(W->k / ue);
    const int tpr = pick_tpr(units);
    const unsigned grid = (unsigned)mrc_cdiv(W->m, 32 / tpr);
    const uint8_t *xb = (const uint8_t *)xq, *base = (const uint8_t *)W->data;
#define MMVQ_SUM_CASE(T)                                                                                               \
    case T:                                                                                                            \
        k_mmvq_sum<T><<<grid, SUM_THREADS, 0, c->stream>>>(base, W->row_bytes, W->mat_bytes, W->n_mat, ids, n_ids,    \
                                                            xb, xq_stride, W->k, wts, y, W->m, units, tpr, acc);        \
        break;
    switch (W->type) {
        MMVQ_QTYPES(MMVQ_SUM_CASE)
    default: mr_seterr("cuda: moe_matvec_sum: type %s unsupported", mr_type_name(W->type)); return -1;
    }
#undef MMVQ_SUM_CASE
    MRC_LAUNCHED(c, "mmvq_sum", "%s, m %lld, k %lld, slots %d, tpr %d%s", mr_type_name(W->type), (long long)W->m,
                 (long long)W->k, n_ids, tpr, acc ? ", accumulate" : "");
    return 0;
}

int mrc_moe_gate_up_q8(mrc_ctx *c, int gelu, const mrc_weight *Wg, const mrc_weight *Wu, const int32_t *ids, int n_ids,
                       const void *xq, size_t xq_stride, float *g_out, void *xq_out) {
    if (!mrc_matvec2_ok(Wg, Wu) || Wg->m % 32 || n_ids <= 0 || n_ids > 65535) {
        mr_seterr("cuda: moe_gate_up_q8: %s / %s, %lld rows, %d slots (one quantized type and shape, rows a multiple "
                  "of 32)", mr_type_name(Wg->type), mr_type_name(Wu->type), (long long)Wg->m, n_ids);
        return -1;
    }
    const int units = (int)(Wg->k / mrc_unit_elems(Wg->type));
    const int tpr = pick_tpr(units);
    const dim3 grid((unsigned)(Wg->m / 32), (unsigned)n_ids);
    const size_t out_row = mrc_q8_1_row_size(Wg->m);
    const uint8_t *xb = (const uint8_t *)xq, *bg = (const uint8_t *)Wg->data, *bu = (const uint8_t *)Wu->data;
#define MMVQ_GUA_CASE(T)                                                                                               \
    case T:                                                                                                            \
        k_mmvq_gua<T><<<grid, gua_threads(tpr), 0, c->stream>>>(bg, bu, Wg->row_bytes, Wg->mat_bytes, Wg->n_mat, ids,  \
                                                                xb, xq_stride, Wg->k, Wg->m, units, tpr, gelu, g_out,  \
                                                                (uint8_t *)xq_out, out_row);                           \
        break;
    switch (Wg->type) {
        MMVQ_QTYPES(MMVQ_GUA_CASE)
    default: mr_seterr("cuda: moe_gate_up_q8: type %s unsupported", mr_type_name(Wg->type)); return -1;
    }
#undef MMVQ_GUA_CASE
    MRC_LAUNCHED(c, "mmvq_gate_up_q8", "%s, m %lld, k %lld, slots %d, tpr %d, %s", mr_type_name(Wg->type),
                 (long long)Wg->m, (long long)Wg->k, n_ids, tpr, gelu ? "gelu" : "silu");
    return 0;
}

int mrc_router_route(mrc_ctx *c, const mrc_weight *W, const float *x, float *logits, int k, int gating,
                     const float *bias, bool norm_w, float w_scale, int n_group, int n_group_used, int32_t *ids,
                     float *weights) {
    const int E = (int)W->m;
    if (!mr_type_is_float(W->type) || E <= 0 || E > ROUTE_MAX_E || k <= 0 || k > ROUTE_MAX_K || k > E || gating < 1 ||
        gating > 3 || n_group > 64 || (n_group > 1 && E % n_group)) {
        mr_seterr("cuda: router_route: %s router of %d experts, top-%d, gating %d, %d groups (float weights, at most "
                  "%d experts, top-%d)", mr_type_name(W->type), E, k, gating, n_group, ROUTE_MAX_E, ROUTE_MAX_K);
        return -1;
    }
    const int tpr = pick_tpr(W->k);
    const unsigned grid = (unsigned)mrc_cdiv(E, MMVQ_THREADS / tpr);
    if (W->type == MR_TYPE_F32)
        k_router_route<float><<<grid, MMVQ_THREADS, 0, c->stream>>>((const float *)W->data, x, W->k, E, tpr, logits,
                                                                    c->done, k, gating, bias, norm_w, w_scale, n_group,
                                                                    n_group_used, ids, weights);
    else if (W->type == MR_TYPE_BF16)
        k_router_route<mrc_bf16><<<grid, MMVQ_THREADS, 0, c->stream>>>((const mrc_bf16 *)W->data, x, W->k, E, tpr,
                                                                       logits, c->done, k, gating, bias, norm_w,
                                                                       w_scale, n_group, n_group_used, ids, weights);
    else
        k_router_route<__half><<<grid, MMVQ_THREADS, 0, c->stream>>>((const __half *)W->data, x, W->k, E, tpr, logits,
                                                                     c->done, k, gating, bias, norm_w, w_scale, n_group,
                                                                     n_group_used, ids, weights);
    MRC_LAUNCHED(c, "router_route", "%s, %d experts, k %lld, top-%d, gating %d", mr_type_name(W->type), E,
                 (long long)W->k, k, gating);
    return 0;
}

bool mrc_matvec2_ok(const mrc_weight *W1, const mrc_weight *W2) {
    return W1->type == W2->type && mrc_unit_elems(W1->type) > 0 && W1->k == W2->k && W1->m == W2->m &&
           W1->n_mat == W2->n_mat && W1->row_bytes == W2->row_bytes && W1->mat_bytes == W2->mat_bytes;
}

int mrc_moe_matvec2(mrc_ctx *c, const mrc_weight *W1, const mrc_weight *W2, const int32_t *ids, int n_ids,
                    const void *xq, size_t xq_stride, float *y1, float *y2) {
    if (!mrc_matvec2_ok(W1, W2)) {
        mr_seterr("cuda: moe_matvec2: %s (%lld x %lld) and %s (%lld x %lld) are not a pair of one quantized type and "
                  "shape", mr_type_name(W1->type), (long long)W1->m, (long long)W1->k, mr_type_name(W2->type),
                  (long long)W2->m, (long long)W2->k);
        return -1;
    }
    return launch(c, W1, (const uint8_t *)W1->data, W1->n_mat, ids, n_ids, NULL, 0, xq, xq_stride, y1,
                  (const uint8_t *)W2->data, y2);
}

int mrc_moe_matvec_grp(mrc_ctx *c, const mrc_weight *W1, const mrc_weight *W2, const int32_t *ids, int n_ids,
                       const void *xq, size_t xq_stride, float *y1, float *y2) {
    const int ue = mrc_unit_elems(W1->type);
    if (ue == 0 || (W2 && !mrc_matvec2_ok(W1, W2))) {
        mr_seterr("cuda: moe_matvec_grp: %s%s%s weights (quantized; a second matrix of the same type and shape)",
                  mr_type_name(W1->type), W2 ? " and " : "", W2 ? mr_type_name(W2->type) : "");
        return -1;
    }
    if (n_ids <= 0) return 0;
    const int n_grp = (int)mrc_cdiv(n_ids, MMVQ_NC), ny = W2 ? 2 * n_grp : n_grp;
    if (ny > 65535) {
        mr_seterr("cuda: moe_matvec_grp: %d slots (max %d)", n_ids, 65535 / (W2 ? 2 : 1) * MMVQ_NC);
        return -1;
    }
    const int units = (int)(W1->k / ue);
    const int tpr = pick_tpr(units);
    const dim3 grid(mrc_cdiv(W1->m, MMVQ_THREADS / tpr), (unsigned)ny);
    const uint8_t *xb = (const uint8_t *)xq, *b1 = (const uint8_t *)W1->data;
    const uint8_t *b2 = W2 ? (const uint8_t *)W2->data : NULL;
#define MMVQ_GRP_CASE(T)                                                                                               \
    case T:                                                                                                            \
        k_mmvq_grp<T><<<grid, MMVQ_THREADS, 0, c->stream>>>(b1, W1->row_bytes, W1->mat_bytes, W1->n_mat, ids, n_ids,   \
                                                            xb, xq_stride, W1->k, y1, W1->m, units, tpr, b2, y2,      \
                                                            n_grp);                                                    \
        break;
    switch (W1->type) {
        MMVQ_QTYPES(MMVQ_GRP_CASE)
    default: mr_seterr("cuda: moe_matvec_grp: type %s unsupported", mr_type_name(W1->type)); return -1;
    }
#undef MMVQ_GRP_CASE
    MRC_LAUNCHED(c, W2 ? "mmvq_grp (pair)" : "mmvq_grp", "%s, m %lld, k %lld, slots %d%s, tpr %d",
                 mr_type_name(W1->type), (long long)W1->m, (long long)W1->k, n_ids, ids ? "" : " (one matrix)", tpr);
    return 0;
}

int mrc_moe_gate_up_q8_grp(mrc_ctx *c, int gelu, const mrc_weight *Wg, const mrc_weight *Wu, const int32_t *ids,
                           int n_ids, const void *xq, size_t xq_stride, float *g_out, void *xq_out) {
    const int n_grp = (int)mrc_cdiv(MR_MAX(n_ids, 0), MMVQ_NC);
    if (!mrc_matvec2_ok(Wg, Wu) || Wg->m % 32 || n_ids <= 0 || n_grp > 65535) {
        mr_seterr("cuda: moe_gate_up_q8_grp: %s / %s, %lld rows, %d slots (one quantized type and shape, rows a "
                  "multiple of 32)", mr_type_name(Wg->type), mr_type_name(Wu->type), (long long)Wg->m, n_ids);
        return -1;
    }
    const int units = (int)(Wg->k / mrc_unit_elems(Wg->type));
    const int tpr = pick_tpr(units);
    const dim3 grid((unsigned)(Wg->m / 32), (unsigned)n_grp);
    const size_t out_row = mrc_q8_1_row_size(Wg->m);
    const uint8_t *xb = (const uint8_t *)xq, *bg = (const uint8_t *)Wg->data, *bu = (const uint8_t *)Wu->data;
#define MMVQ_GUAG_CASE(T)                                                                                              \
    case T:                                                                                                            \
        k_mmvq_gua_grp<T><<<grid, MMVQ_THREADS, 0, c->stream>>>(bg, bu, Wg->row_bytes, Wg->mat_bytes, Wg->n_mat, ids,  \
                                                                n_ids, xb, xq_stride, Wg->k, Wg->m, units, tpr, gelu,  \
                                                                g_out, (uint8_t *)xq_out, out_row);                    \
        break;
    switch (Wg->type) {
        MMVQ_QTYPES(MMVQ_GUAG_CASE)
    default: mr_seterr("cuda: moe_gate_up_q8_grp: type %s unsupported", mr_type_name(Wg->type)); return -1;
    }
#undef MMVQ_GUAG_CASE
    MRC_LAUNCHED(c, "mmvq_gate_up_q8_grp", "%s, m %lld, k %lld, slots %d, tpr %d, %s", mr_type_name(Wg->type),
                 (long long)Wg->m, (long long)Wg->k, n_ids, tpr, gelu ? "gelu" : "silu");
    return 0;
}
