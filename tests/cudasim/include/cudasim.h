/*
 * cudasim.h — the slice of CUDA that src/cuda uses, on the CPU, so that the backend's kernels
 * run (and are tested) on a machine without a GPU: -DMOERUN_CUDA_SIM=ON (CMakeLists.txt)
 * compiles the .cu files of src/cuda as C++ against these headers after tests/cudasim/cu2cc.py has
 * rewritten the launch syntax (k<<<g, b, s, st>>>(args) -> sim_launch("k", k, g, b, s, st)(args))
 * and dynamic shared memory (extern __shared__ T x[] -> T *x = (T *)sim_dyn_smem()).
 *
 * Model (cudasim.cc):
 *  - every CUDA thread is a fiber; a block's fibers run in turn on the calling host thread, one
 *    block after another; __syncthreads, __syncwarp and the shuffles switch fibers. A barrier
 *    that not all of its threads reach (a thread returned early, a divergent __syncthreads, a
 *    shuffle whose partner lane has exited) fails the launch with the kernel, block and thread
 *    named, where a GPU would hang or read garbage;
 *  - __shared__ variables are statics (one block runs at a time); device memory is host memory
 *    (cudaMalloc is malloc, so AddressSanitizer sees a kernel's out-of-bounds accesses);
 *  - launches check the limits of a real device (1024 threads a block, grid y/z <= 65535,
 *    48 KiB of dynamic shared memory without an opt-in) and the kernel's __launch_bounds__;
 *    a pointer argument must point into the launching device's memory or page-locked host
 *    memory (pointers inside structs passed by value are not checked);
 *  - streams run synchronously; stream capture records launches, copies and memsets into a
 *    graph that cudaGraphLaunch replays; a synchronization, allocation or free during capture
 *    fails and invalidates it, as on a device;
 *  - float math is the host's (expf for __expf, fmaf for __fmaf_rn), so results match a GPU's
 *    within rounding, not bit for bit.
 */
#ifndef MR_CUDASIM_H
#define MR_CUDASIM_H

#ifndef __cplusplus
#error "cudasim.h is C++ (the .cu sources of src/cuda compiled by the host compiler)"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

/* ---- qualifiers ------------------------------------------------------------------------- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __shared__ static
#define __launch_bounds__(...)
#define __noinline__ __attribute__((noinline))

/* ---- vector types ------------------------------------------------------------------------- */
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
struct alignas(8) int2 {
    int x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};

/* ---- runtime types ---------------------------------------------------------------------- */
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchFailure = 719,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
} cudaError_t;

typedef struct sim_stream *cudaStream_t;
typedef struct sim_event *cudaEvent_t;
typedef struct sim_graph *cudaGraph_t;
typedef struct sim_graph *cudaGraphExec_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2
};
enum cudaDeviceAttr {
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrMemoryClockRate = 36,
    cudaDevAttrGlobalMemoryBusWidth = 37
};
#define cudaStreamNonBlocking 0x01u
#define cudaHostRegisterPortable 0x01u
#define cudaHostRegisterReadOnly 0x08u

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int major, minor;
    int multiProcessorCount;
    int warpSize;
    int maxThreadsPerBlock;
    size_t sharedMemPerBlock;
};

cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int dev);
cudaError_t cudaGetDevice(int *dev);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev);
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int dev);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaDeviceSynchronize(void);
/* frees the current device's allocations and clears a failed kernel's sticky error */
cudaError_t cudaDeviceReset(void);
cudaError_t cudaMalloc(void **p, size_t n);
template <typename T> cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc((void **)p, n); }
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t n);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaHostRegister(void *p, size_t n, unsigned flags);
cudaError_t cudaHostUnregister(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemcpyPeerAsync(void *dst, int dst_dev, const void *src, int src_dev, size_t n, cudaStream_t s = 0);
cudaError_t cudaMemset(void *dst, int v, size_t n);
cudaError_t cudaMemsetAsync(void *dst, int v, size_t n, cudaStream_t s = 0);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);

/* ---- half precision --------------------------------------------------------------------- */
uint16_t sim_f2h(float f); /* round to nearest even, as __float2half_rn */
float sim_h2f(uint16_t h);

struct __half {
    uint16_t x;
    __half() = default;
    __half(float f) : x(sim_f2h(f)) {}
    operator float() const { return sim_h2f(x); }
};
static inline float __half2float(__half h) { return sim_h2f(h.x); }
static inline __half __float2half(float f) { return __half(f); }
static inline __half __float2half_rn(float f) { return __half(f); }
static inline __half __ushort_as_half(unsigned short u) {
    __half h;
    h.x = u;
    return h;
}
static inline unsigned short __half_as_ushort(__half h) { return h.x; }

/* ---- the executing thread ------------------------------------------------------------------- */
extern uint3 sim_block_idx;
extern dim3 sim_block_dim, sim_grid_dim;
/* threadIdx.x etc.: the current fiber's index */
extern uint3 &sim_thread_index(void);
#define threadIdx (sim_thread_index())
#define blockIdx sim_block_idx
#define blockDim sim_block_dim
#define gridDim sim_grid_dim


void sim_syncthreads(void);
void sim_syncwarp(unsigned mask);
uint64_t sim_shfl_xor(unsigned mask, uint64_t v, int lane_mask, int width);
uint64_t sim_shfl_idx(unsigned mask, uint64_t v, int src, int width);
void *sim_dyn_smem(void);

static inline void __syncthreads(void) { sim_syncthreads(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { sim_syncwarp(mask); }
static inline void __threadfence(void) {}
static inline void __threadfence_block(void) {}
/* a shuffled value travels as 64 bits */
template <typename T> static inline uint64_t sim_shfl_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a small value");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    return u;
}
template <typename T> static inline T sim_shfl_value(uint64_t u) {
    T r;
    memcpy(&r, &u, sizeof r);
    return r;
}
template <typename T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return sim_shfl_value<T>(sim_shfl_xor(mask, sim_shfl_bits(v), lane_mask, width));
}
template <typename T> static inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    return sim_shfl_value<T>(sim_shfl_idx(mask, sim_shfl_bits(v), src_lane, width));
}
template <typename T> static inline T __ldcg(const T *p) { return *p; }
template <typename T> static inline T __ldg(const T *p) { return *p; }

/* Fibers take turns, never run at once: atomics are plain read-modify-writes. */
template <typename T> static inline T atomicAdd(T *p, T v) {
    const T o = *p;
    *p = o + v;
    return o;
}
template <typename T> static inline T atomicMax(T *p, T v) {
    const T o = *p;
    if (v > o) *p = v;
    return o;
}
template <typename T> static inline T atomicExch(T *p, T v) {
    const T o = *p;
    *p = v;
    return o;
}

/* ---- device math ---------------------------------------------------------------------------- */
/* glibc declares __expf and __logf but does not export them: the exact functions instead */
#define __expf(x) expf(x)
#define __logf(x) logf(x)
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline int __dp4a(int a, int b, int c) {
    const int8_t *x = (const int8_t *)&a, *y = (const int8_t *)&b;
    return c + x[0] * y[0] + x[1] * y[1] + x[2] * y[2] + x[3] * y[3];
}
static inline unsigned __vsubss4(unsigned a, unsigned b) {
    unsigned r;
    int8_t *o = (int8_t *)&r;
    const int8_t *x = (const int8_t *)&a, *y = (const int8_t *)&b;
    for (int i = 0; i < 4; i++) {
        const int v = x[i] - y[i];
        o[i] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
    }
    return r;
}
/* r byte n = byte (s >> 4n) & 7 of the 8 bytes y:x (x bytes 0-3), as documented for __byte_perm */
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const uint64_t v = (uint64_t)x | ((uint64_t)y << 32);
    unsigned r = 0;
    for (int n = 0; n < 4; n++) r |= (unsigned)((v >> (8 * ((s >> (4 * n)) & 7))) & 0xFF) << (8 * n);
    return r;
}
/* CUDA's integer and float min / max overloads (device code calls them unqualified) */
template <typename A, typename B> static inline typename std::common_type<A, B>::type min(A a, B b) {
    typedef typename std::common_type<A, B>::type C;
    return (C)a < (C)b ? (C)a : (C)b;
}
template <typename A, typename B> static inline typename std::common_type<A, B>::type max(A a, B b) {
    typedef typename std::common_type<A, B>::type C;
    return (C)a > (C)b ? (C)a : (C)b;
}

/* ---- launches ---------------------------------------------------------------------------------- */
/* Run (or, while s is capturing, record) body once per thread of a grid g x b. */
void sim_submit(const char *name, dim3 g, dim3 b, size_t smem, cudaStream_t s, std::function<void()> body);

/* A launch of more threads than the kernel's __launch_bounds__ (cudaErrorLaunchOutOfResources). */
void sim_over_bounds(const char *name, dim3 b, unsigned max_threads);
/* Pointer arguments: NULL, or into the launching device's allocations or page-locked host memory. */
void sim_check_ptr(const char *name, int i, const void *p);
template <typename T> static inline void sim_check_arg(const char *, int, const T &) {}
template <typename T> static inline void sim_check_arg(const char *name, int i, T *const &p) {
    sim_check_ptr(name, i, (const void *)p);
}

template <typename... P> struct sim_launcher {
    const char *name;
    void (*k)(P...);
    dim3 g, b;
    size_t smem;
    cudaStream_t s;
    unsigned max_threads; /* the kernel's __launch_bounds__, 0: none */
    sim_launcher bounded(unsigned n) const {
        sim_launcher l = *this;
        l.max_threads = n;
        return l;
    }
    template <typename... A> void operator()(A &&...a) const {
        static_assert(sizeof...(A) == sizeof...(P), "kernel argument count");
        if (max_threads && b.x * b.y * b.z > max_threads) {
            sim_over_bounds(name, b, max_threads);
            return;
        }
        std::tuple<typename std::decay<P>::type...> args(std::forward<A>(a)...); /* by value, as a launch */
        std::apply(
            [this](const auto &...v) {
                int i = 0;
                (sim_check_arg(name, i++, v), ...);
            },
            args);
        void (*kk)(P...) = k;
        sim_submit(name, g, b, smem, s, [kk, args]() { std::apply(kk, args); });
    }
};
template <typename... P>
static inline sim_launcher<P...> sim_launch(const char *name, void (*k)(P...), dim3 g, dim3 b, size_t smem = 0,
                                            cudaStream_t s = 0) {
    return sim_launcher<P...>{name, k, g, b, smem, s, 0};
}

#endif
