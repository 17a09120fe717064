/*
 * test_cudasim.cu — cudasim itself (built only with -DMOERUN_CUDA_SIM=ON, through cu2cc.py like
 * src/cuda): block reductions through __syncthreads and shuffles give the right sums, and each
 * fault a GPU would hang on or misreport fails the launch with a message: a __syncthreads that
 * threads returned before, a shuffle with an exited lane, launch limits and __launch_bounds__, a pointer argument into
 * pageable host memory or another device's memory, synchronizing while capturing; graphs replay what they recorded; memory runs out at the device's size; half
 * conversions round to nearest even.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "check.h" /* tests/unit: CHECK, check_done */

__device__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o, 32);
    return v;
}

/* out[block] = sum of x over the block's threads (warp shuffles, then shared memory) */
__global__ void k_sum(const float *x, float *out) {
    __shared__ float sh[32];
    const unsigned i = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32, w = threadIdx.x / 32;
    float v = warp_sum(x[i]);
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < blockDim.x / 32 ? sh[lane] : 0.0f;
    if (w == 0) v = warp_sum(v);
    if (threadIdx.x == 0) out[blockIdx.x] = v;
}

/* threads of the upper half return before the barrier the lower half waits at */
__global__ void k_early_return(float *out) {
    if (threadIdx.x >= blockDim.x / 2) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

/* lane 31 exits, the others shuffle with it */
__global__ void k_shfl_exited(float *out) {
    if (threadIdx.x % 32 == 31) return;
    out[threadIdx.x] = warp_sum(1.0f);
}

__global__ void k_dyn(float *out, int n) {
    extern __shared__ float buf[];
    for (int i = threadIdx.x; i < n; i += blockDim.x) buf[i] = (float)i;
    __syncthreads();
    out[threadIdx.x] = buf[n - 1 - (int)threadIdx.x];
}

__global__ void __launch_bounds__(64) k_add1_b64(float *y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += 1.0f;
}

__global__ void k_add1(float *y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += 1.0f;
}

__global__ void k_shfl_width(int *out, int width) {
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 8, width);
}

__global__ void k_shfl_idx(int *out, int width) {
    out[threadIdx.x] = __shfl_sync(0xffffffffu, (int)threadIdx.x * 10, 5, width);
    out[32 + threadIdx.x] = (int)__byte_perm(0x33221100u, 0x77665544u, 0x7531u + threadIdx.x);
}

static void reset(void) {
    cudaDeviceReset();
    cudaGetLastError();
}

static void test_sum(void) {
    const int nb = 5, bs = 256, n = nb * bs;
    float *x, *o, h[5], *hx = (float *)malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) hx[i] = (float)(i % 7);
    cudaMalloc(&x, sizeof(float) * n);
    cudaMalloc(&o, sizeof(float) * nb);
    cudaMemcpy(x, hx, sizeof(float) * n, cudaMemcpyHostToDevice);
    k_sum<<<nb, bs>>>(x, o);
    CHECK(cudaGetLastError() == cudaSuccess && cudaDeviceSynchronize() == cudaSuccess, "k_sum launch");
    cudaMemcpy(h, o, sizeof h, cudaMemcpyDeviceToHost);
    for (int b = 0; b < nb; b++) {
        float r = 0;
        for (int i = 0; i < bs; i++) r += hx[b * bs + i];
        CHECK(h[b] == r, "block %d sum %g, want %g", b, h[b], r);
    }
    cudaFree(x), cudaFree(o), free(hx);
}

/* lane ^ 8 across the warp (width 32), and within groups of 8 (width 8): a lane whose partner
 * is in a later group keeps its own value, one whose partner is in an earlier group reads it */
static void test_shfl_width(void) {
    int *o, h[32];
    cudaMalloc(&o, sizeof h);
    k_shfl_width<<<1, 32>>>(o, 32);
    cudaMemcpy(h, o, sizeof h, cudaMemcpyDeviceToHost);
    CHECK(h[0] == 8 && h[8] == 0 && h[21] == 29, "width 32: %d %d %d", h[0], h[8], h[21]);
    k_shfl_width<<<1, 32>>>(o, 8);
    cudaMemcpy(h, o, sizeof h, cudaMemcpyDeviceToHost);
    CHECK(h[0] == 0 && h[8] == 0 && h[21] == 21 && h[29] == 21, "width 8: %d %d %d %d", h[0], h[8], h[21], h[29]);
    cudaFree(o);
}

/* __shfl_sync: lane 5 of the caller's group of width lanes; __byte_perm: byte (s >> 4n) & 7 of
 * y:x as result byte n */
static void test_shfl_idx(void) {
    int *o, h[64];
    cudaMalloc(&o, sizeof h);
    k_shfl_idx<<<1, 32>>>(o, 32);
    cudaMemcpy(h, o, sizeof h, cudaMemcpyDeviceToHost);
    CHECK(h[0] == 50 && h[31] == 50 && h[32] == 0x77553311 && h[33] == 0x77553322, "width 32: %d %d %#x %#x", h[0],
          h[31], h[32], h[33]);
    k_shfl_idx<<<1, 32>>>(o, 8);
    cudaMemcpy(h, o, sizeof h, cudaMemcpyDeviceToHost);
    CHECK(h[0] == 50 && h[7] == 50 && h[8] == 130 && h[30] == 290, "width 8: %d %d %d %d", h[0], h[7], h[8], h[30]);
    cudaFree(o);
}

static void test_faults(void) {
    float *o;
    cudaMalloc(&o, sizeof(float) * 1024);
    k_early_return<<<1, 128>>>(o);
    CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "a __syncthreads half the block returned before");
    CHECK(cudaMemcpy(o, o, 4, cudaMemcpyDeviceToDevice) == cudaErrorLaunchFailure, "the failure is sticky");
    reset();
    cudaMalloc(&o, sizeof(float) * 1024);
    k_shfl_exited<<<1, 64>>>(o);
    CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "a shuffle with an exited lane");
    reset();
    cudaMalloc(&o, sizeof(float) * 1024);
    k_add1<<<1, 2048>>>(o, 1024);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads a block");
    CHECK(cudaGetLastError() == cudaSuccess, "a configuration error is not sticky");
    k_add1_b64<<<1, 128>>>(o, 1024);
    CHECK(cudaGetLastError() == cudaErrorLaunchOutOfResources, "128 threads, __launch_bounds__(64)");
    k_add1_b64<<<2, 64>>>(o, 128);
    CHECK(cudaGetLastError() == cudaSuccess, "64 threads, __launch_bounds__(64)");
    k_add1<<<dim3(1, 70000), 32>>>(o, 1024);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "grid y 70000");
    k_dyn<<<1, 64, 64 * 1024>>>(o, 16384);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "64 KiB of dynamic shared memory");
    k_dyn<<<1, 64, 1000 * sizeof(float)>>>(o, 1000);
    float h[64];
    CHECK(cudaMemcpy(h, o, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess && h[0] == 999.0f && h[63] == 936.0f,
           "dynamic shared memory: %g %g", h[0], h[63]);
    cudaFree(o);
    /* pointer arguments: pageable host memory and another device's memory fault on a GPU */
    float hostbuf[32] = {0}, *pin = NULL, *d1 = NULL;
    k_add1<<<1, 32>>>(hostbuf, 32);
    CHECK(cudaDeviceSynchronize() == cudaErrorIllegalAddress && hostbuf[0] == 0.0f, "pageable host memory");
    reset();
    cudaMallocHost((void **)&pin, sizeof(float) * 32);
    memset(pin, 0, sizeof(float) * 32);
    k_add1<<<1, 32>>>(pin, 32);
    CHECK(cudaDeviceSynchronize() == cudaSuccess && pin[31] == 1.0f, "page-locked host memory");
    cudaFreeHost(pin);
    cudaSetDevice(1);
    cudaMalloc(&d1, sizeof(float) * 32);
    cudaSetDevice(0);
    k_add1<<<1, 32>>>(d1, 32);
    CHECK(cudaDeviceSynchronize() == cudaErrorIllegalAddress, "device 1's memory on device 0");
    reset();
    cudaSetDevice(1);
    cudaFree(d1);
    cudaSetDevice(0);
}

static void test_capture(void) {
    const int n = 300;
    float *y, h[300];
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    cudaMalloc(&y, sizeof(float) * n);
    cudaMemsetAsync(y, 0, sizeof(float) * n, s);
    cudaGraph_t g = NULL;
    cudaGraphExec_t e = NULL;
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
    k_add1<<<(n + 127) / 128, 128, 0, s>>>(y, n);
    k_add1<<<(n + 127) / 128, 128, 0, s>>>(y, n);
    CHECK(cudaStreamEndCapture(s, &g) == cudaSuccess && g, "end capture");
    cudaMemcpy(h, y, sizeof h, cudaMemcpyDeviceToHost);
    CHECK(h[0] == 0.0f && h[n - 1] == 0.0f, "captured launches do not run");
    cudaGraphInstantiate(&e, g, 0);
    for (int r = 0; r < 3; r++) cudaGraphLaunch(e, s);
    cudaStreamSynchronize(s);
    cudaMemcpy(h, y, sizeof h, cudaMemcpyDeviceToHost);
    CHECK(h[0] == 6.0f && h[n - 1] == 6.0f, "three replays of two launches: %g", h[0]);
    cudaGraphExecDestroy(e), cudaGraphDestroy(g);
    /* synchronizing or allocating while capturing fails and invalidates the capture */
    cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    k_add1<<<1, 32, 0, s>>>(y, n);
    CHECK(cudaStreamSynchronize(s) == cudaErrorStreamCaptureUnsupported, "sync while capturing");
    g = NULL;
    CHECK(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated && !g, "the capture is invalidated");
    cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    float *z;
    CHECK(cudaMalloc(&z, 64) == cudaErrorStreamCaptureUnsupported, "cudaMalloc while capturing");
    CHECK(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated, "invalidated by cudaMalloc");
    cudaGetLastError();
    cudaFree(y);
    cudaStreamDestroy(s);
}

static void test_memory(void) {
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    void *p = NULL;
    CHECK(cudaMalloc(&p, tot + 1) == cudaErrorMemoryAllocation && !p, "more than the device has");
    cudaGetLastError();
    CHECK(cudaMalloc(&p, 1 << 20) == cudaSuccess, "1 MiB");
    size_t fr2 = 0;
    cudaMemGetInfo(&fr2, &tot);
    CHECK(fr - fr2 == (1u << 20), "free memory counts allocations: %zu", fr - fr2);
    cudaFree(p);
}

static void test_half(void) {
    int bad = 0;
    for (unsigned u = 0; u < 65536; u++) { /* every half survives float and back */
        const __half h = __ushort_as_half((unsigned short)u);
        const float f = __half2float(h);
        if (f != f) continue;
        bad += __half_as_ushort(__float2half_rn(f)) != u;
    }
    CHECK(bad == 0, "%d halves do not round-trip", bad);
    CHECK(__half_as_ushort(__float2half_rn(1.0f + 1.0f / 2048)) == 0x3c00, "a tie rounds to even (down)");
    CHECK(__half_as_ushort(__float2half_rn(1.0f + 3.0f / 2048)) == 0x3c02, "a tie rounds to even (up)");
    CHECK(__half_as_ushort(__float2half_rn(65520.0f)) == 0x7c00, "65520 overflows to inf");
    CHECK(__half_as_ushort(__float2half_rn(65519.0f)) == 0x7bff, "65519 rounds to 65504");
    CHECK(__half_as_ushort(__float2half_rn(ldexpf(1.0f, -25))) == 0, "2^-25 (a tie) rounds to 0");
    CHECK(__half_as_ushort(__float2half_rn(ldexpf(1.5f, -25))) == 1, "1.5 x 2^-25 rounds to the least subnormal");
    CHECK(__half_as_ushort(__float2half_rn(-ldexpf(1.0f, -14) * 0.75f)) == 0x8300, "a negative subnormal");
}

int main(void) {
    setenv("CUDASIM_DEVICES", "2", 0); /* the cross-device check needs two */
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 2) {
        printf("SKIP: cudasim lists %d devices (CUDASIM_DEVICES), this test needs 2\n", n);
        return 77;
    }
    test_sum();
    test_shfl_width();
    test_shfl_idx();
    test_faults();
    test_capture();
    test_memory();
    test_half();
    return check_done();
}
