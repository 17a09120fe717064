/*
 * route.cuh — one token's MoE routing by one warp (device code shared by
 * ops.cu's k_moe_route and mmvq.cu's fused router): softmax / sigmoid /
 * softmax-over-chosen gating, selection bias, group-limited selection
 * (DeepSeek-V3), top-k (ties to the lower id), weight normalisation and
 * scale, with the CPU's semantics (route_token in src/model/forward_ffn.c).
 */
#ifndef MR_CUDA_ROUTE_CUH
#define MR_CUDA_ROUTE_CUH

#include "cuda/cuda_common.cuh"

#define ROUTE_MAX_E 1024
#define ROUTE_MAX_K 32

/* Called by the 32 lanes of one warp (the only warp of its block that calls it): l the
 * token's E logits, ids / weights its K choices. Scores in shared memory. */
__device__ __forceinline__ void mrc_route_warp(const float *l, int E, int K, int gating, const float *bias, bool norm_w,
                                               float w_scale, int n_group, int n_group_used, int32_t *ids,
                                               float *weights) {
    __shared__ float prob[ROUTE_MAX_E], sel[ROUTE_MAX_E];
    __shared__ float wsel[ROUTE_MAX_K];
    __shared__ int isel[ROUTE_MAX_K];
    const int lane = threadIdx.x % 32;
    float mx = -INFINITY;
    for (int e = lane; e < E; e += 32) mx = fmaxf(mx, l[e]);
    mx = mrc_warp_max(mx);
    float s = 0.0f;
    for (int e = lane; e < E; e += 32) {
        float p = l[e];
        if (gating == 1) p = expf(p - mx), s += p;
        else if (gating == 2) p = 1.0f / (1.0f + expf(-p));
        prob[e] = p;
    }
    if (gating == 1) {
        const float inv = 1.0f / mrc_warp_sum(s);
        for (int e = lane; e < E; e += 32) prob[e] *= inv;
    }
    for (int e = lane; e < E; e += 32) sel[e] = prob[e] + (bias ? bias[e] : 0.0f);
    __syncwarp();
    if (n_group > 1 && n_group_used > 0 && n_group_used < n_group && lane == 0) {
        /* group-limited (DeepSeek-V3): a group scores its two best; the others' experts drop out */
        const int per = E / n_group;
        float gs[64];
        for (int g = 0; g < n_group; g++) {
            float b1 = -INFINITY, b2 = -INFINITY;
            for (int e = g * per; e < (g + 1) * per; e++) {
                if (sel[e] > b1) b2 = b1, b1 = sel[e];
                else if (sel[e] > b2) b2 = sel[e];
            }
            gs[g] = b1 + (per > 1 ? b2 : 0.0f);
        }
        unsigned long long keep = 0;
        for (int j = 0; j < n_group_used; j++) {
            int bg = -1;
            for (int g = 0; g < n_group; g++)
                if (!((keep >> g) & 1) && (bg < 0 || gs[g] > gs[bg])) bg = g;
            keep |= 1ull << bg;
        }
        for (int g = 0; g < n_group; g++)
            if (!((keep >> g) & 1))
                for (int e = g * per; e < (g + 1) * per; e++) sel[e] = -INFINITY;
    }
    __syncwarp();
    for (int j = 0; j < K; j++) {
        float bv = -INFINITY;
        int bi = 0x7fffffff;
        for (int e = lane; e < E; e += 32) {
            const float v = sel[e]; /* taken: NaN, never chosen */
            if (v > bv || (v == bv && e < bi)) bv = v, bi = e;
        }
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
        }
        if (lane == 0) {
            isel[j] = bi;
            wsel[j] = bi < E ? prob[bi] : 0.0f;
            if (bi < E) sel[bi] = NAN;
        }
        __syncwarp();
    }
    if (lane == 0) {
        if (gating == 3) {
            float m = -INFINITY, z = 0.0f;
            for (int j = 0; j < K; j++) m = fmaxf(m, wsel[j]);
            for (int j = 0; j < K; j++) wsel[j] = expf(wsel[j] - m), z += wsel[j];
            for (int j = 0; j < K; j++) wsel[j] /= z;
        }
        if (norm_w) {
            float z = 0.0f;
            for (int j = 0; j < K; j++) z += wsel[j];
            z = fmaxf(z, 6.103515625e-5f);
            for (int j = 0; j < K; j++) wsel[j] /= z;
        }
        for (int j = 0; j < K; j++) {
            ids[j] = isel[j];
            weights[j] = (w_scale != 0.0f && w_scale != 1.0f) ? wsel[j] * w_scale : wsel[j];
        }
    }
}

#endif
