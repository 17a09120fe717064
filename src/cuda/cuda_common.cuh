/*
 * cuda_common.cuh — private to src/cuda: the context struct, error checking
 * macros that name the kernel and its shape, and small host/device helpers
 * (fp16 bits -> float, dp4a with a host fallback, unaligned int loads) that
 * let the dot-product code of mmvq.cuh also run on the host (tests/cuda).
 */
#ifndef MR_CUDA_COMMON_CUH
#define MR_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <string.h>

/* base.h is C: its _Noreturn is spelled for C++ here */
#define _Noreturn __attribute__((noreturn))
extern "C" {
#include "base/base.h"
#include "cuda/cuda_backend.h"
#include "quant/types.h"
}
#undef _Noreturn

struct mrc_ctx {
    int dev;
    cudaStream_t stream;
    cudaStream_t side;       /* the copy stream (mrc_upload_side; created on first use) */
    void *cublas;            /* cublasHandle_t */
    void *scratch;           /* growable device scratch (mrc_scratch) */
    size_t scratch_cap;
    cudaGraph_t graph;
    cudaGraphExec_t graph_exec;
    cudaEvent_t t0, t1;
    int n_sm;
    bool sync_each;          /* MOERUN_CUDA_SYNC=1 */
    bool capturing;          /* between mrc_graph_begin and mrc_graph_end */
    unsigned scratch_epoch;  /* +1 whenever the scratch moves (graphs that baked it in are stale) */
    unsigned *done;          /* device counters of finished blocks, 0 between launches: [0] mrc_router_route's,
                                [1 + h] head h's splits in a one-launch decode attention (MRC_DONE_N in all) */
};

#define MRC_DONE_N (1 + MRC_ATTN_MAX_FUSED)

/* A device scratch buffer of at least n bytes (valid until the next call). */
void *mrc_scratch(mrc_ctx *c, size_t n);

/* Return -1 with "cuda: WHAT: error" when a runtime call fails. */
#define MRC_CALL(call, ...)                                                                    \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            char w_[160];                                                                      \
            snprintf(w_, sizeof w_, __VA_ARGS__);                                              \
            mr_seterr("cuda: %s: %s (%s)", w_, cudaGetErrorString(e_), #call);                 \
            return -1;                                                                         \
        }                                                                                      \
    } while (0)

/* After a kernel launch: -1 with "cuda: KERNEL (shape): error" on a launch
 * error (or, with MOERUN_CUDA_SYNC=1, an execution error). */
int mrc_launched(mrc_ctx *c, const char *kernel, const char *fmt, ...) MR_PRINTF(3, 4);
#define MRC_LAUNCHED(c, kernel, ...)                                                           \
    do {                                                                                       \
        if (mrc_launched((c), (kernel), __VA_ARGS__)) return -1;                               \
    } while (0)

#define MRC_HD __host__ __device__ __forceinline__
/* unroll hints only in device code (the host compiler warns about the pragma) */
#ifdef __CUDA_ARCH__
#define MRC_UNROLL _Pragma("unroll")
#else
#define MRC_UNROLL
#endif

/* IEEE half bits -> float on both sides. */
MRC_HD float mrc_h2f(uint16_t h) {
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half(h));
#else
    const uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    uint32_t u;
    if (e == 0) {
        if (m == 0) u = s;
        else { /* subnormal */
            float f = (float)m * (1.0f / 16777216.0f);
            memcpy(&u, &f, 4);
            u |= s;
        }
    } else if (e == 31) u = s | 0x7f800000u | (m << 13);
    else u = s | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

/* Sum of 4 signed int8 products plus c. */
MRC_HD int mrc_dp4a(int a, int b, int c) {
#ifdef __CUDA_ARCH__
    return __dp4a(a, b, c);
#else
    const int8_t *x = (const int8_t *)&a, *y = (const int8_t *)&b;
    return c + x[0] * y[0] + x[1] * y[1] + x[2] * y[2] + x[3] * y[3];
#endif
}

/* Per-byte signed saturating a - b. */
MRC_HD int mrc_vsubss4(int a, int b) {
#ifdef __CUDA_ARCH__
    return __vsubss4(a, b);
#else
    int r;
    int8_t *o = (int8_t *)&r;
    const int8_t *x = (const int8_t *)&a, *y = (const int8_t *)&b;
    for (int i = 0; i < 4; i++) {
        int v = x[i] - y[i];
        o[i] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
    }
    return r;
#endif
}

/* 32-bit load from a 2-byte aligned address (Q4_0, Q8_0, Q6_K blocks). */
MRC_HD int mrc_ld_i32_a2(const void *p) {
    const uint16_t *h = (const uint16_t *)p;
    return (int)((uint32_t)h[0] | ((uint32_t)h[1] << 16));
}
MRC_HD uint16_t mrc_ld_u16(const void *p) { return *(const uint16_t *)p; }

/* 4 ints from a 16-byte aligned address (one 128-bit load on the device). */
MRC_HD void mrc_ld_i32x4(const void *p, int *o) {
#ifdef __CUDA_ARCH__
    const int4 v = *(const int4 *)p;
    o[0] = v.x, o[1] = v.y, o[2] = v.z, o[3] = v.w;
#else
    memcpy(o, p, 16);
#endif
}

#define MRC_WARP 32

__device__ __forceinline__ float mrc_warp_sum(float v) {
MRC_UNROLL
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o, 32);
    return v;
}
__device__ __forceinline__ float mrc_warp_max(float v) {
MRC_UNROLL
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o, 32));
    return v;
}

/* One Q8_1 block of a row by one warp (lane l holds element 32b + l): the int8
 * quants at row[32b + l], (d, d * sum q) at the row's scales (after its k
 * quants). The only Q8_1 quantizer: quantize_q8_1 and the fused ops
 * (rmsnorm_q8, act_q8) give the same bytes for the same floats. */
__device__ __forceinline__ void mrc_q8_1_warp(float v, uint8_t *row, int64_t k, int64_t b, int lane) {
    const float amax = mrc_warp_max(fabsf(v));
    const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    const int q = (int)rintf(v * id);
    const float s = mrc_warp_sum((float)q);
    ((int8_t *)row)[b * 32 + lane] = (int8_t)q;
    if (lane == 0) {
        float *ds = (float *)(row + k);
        ds[2 * b] = d;
        ds[2 * b + 1] = d * s;
    }
}

/* The gates of the FFN activations, as src/cpu/ops.c: SiLU(g) * u and ggml's tanh GELU(g) * u. */
__device__ __forceinline__ float mrc_silu_mul1(float g, float u) { return g / (1.0f + expf(-g)) * u; }
__device__ __forceinline__ float mrc_gelu_mul1(float g, float u) {
    return 0.5f * g * (1.0f + tanhf(0.797884560802865355f * g * (1.0f + 0.044715f * g * g))) * u;
}

static inline unsigned mrc_cdiv(int64_t a, int64_t b) { return (unsigned)((a + b - 1) / b); }

#endif
