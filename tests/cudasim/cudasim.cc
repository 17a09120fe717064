/*
 * cudasim.cc — the CUDA runtime and the cuBLAS calls of src/cuda on the CPU (cudasim.h tells
 * the model): fibers for the threads of a block, barriers and shuffles that check every
 * thread of them takes part, launch limits, synchronous streams, stream capture into
 * replayable graphs, per-device memory accounting.
 *
 * Environment: CUDASIM_DEVICES (devices listed, default 1), CUDASIM_MEM_MIB (memory of each,
 * default 16384), CUDASIM_ABORT=1 (abort() at the first failed launch, for a debugger).
 * Every kernel's pointer arguments are checked against the allocations (sim_check_ptr); pointers
 * inside structs passed by value are not.
 */
#include "cuda_runtime.h"
#include "cublas_v2.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

/* ---- fibers ----------------------------------------------------------------------------------- */
/* sim_switch(&save, to): saves the callee-saved registers and the stack pointer into *save, then
 * continues where `to` was saved (x86-64 System V). */
extern "C" void sim_switch(void **save, void *to);
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl sim_switch\n"
        ".type sim_switch,@function\n"
        "sim_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size sim_switch,.-sim_switch\n");
#else
#error "cudasim: fibers are written for x86-64"
#endif

enum { T_RUN, T_BLOCK_BAR, T_WARP_BAR, T_DONE };

struct sim_thread {
    void *sp;
    int state;
    uint3 tid;
    unsigned lin, lane, warp;
    unsigned wmask;        /* the mask of the warp barrier it waits at */
    unsigned shfl_seq;     /* shuffles done (the slot of the next one: shfl_seq & 1) */
    uint64_t shfl[2];
    int shfl_lane;         /* the partner lane of the pending shuffle, -1 for a plain __syncwarp */
};

static const size_t k_stack = 128 * 1024; /* per thread: kernels keep arrays in "registers" */
static const size_t k_guard = 4096;

static std::vector<sim_thread> g_thr;
static std::vector<char *> g_stacks;
static void *g_sched_sp;
static const std::function<void()> *g_body;
static sim_thread *g_cur;
static unsigned g_nthr;
static std::string g_fail; /* why the running block failed */
static std::vector<unsigned char> g_dyn;

uint3 sim_block_idx;
dim3 sim_block_dim, sim_grid_dim;
uint3 &sim_thread_index(void) { return g_cur->tid; }
void *sim_dyn_smem(void) { return g_dyn.data(); }

static char *stack_get(unsigned i) {
    while (g_stacks.size() <= i) {
        char *p = (char *)mmap(NULL, k_stack + k_guard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("cudasim: fiber stack");
            abort();
        }
        mprotect(p, k_guard, PROT_NONE); /* a kernel that overflows its stack faults here */
        g_stacks.push_back(p);
    }
    return g_stacks[i];
}

static void to_sched(void) { sim_switch(&g_cur->sp, g_sched_sp); }

static void fiber_main(void) {
    (*g_body)();
    g_cur->state = T_DONE;
    to_sched();
    abort(); /* a finished fiber is never resumed */
}

static void *fiber_init(char *base) {
    uintptr_t top = ((uintptr_t)(base + k_guard + k_stack)) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = NULL;                     /* fiber_main's return address slot: rsp = 8 mod 16 at its entry */
    *--sp = (void *)&fiber_main;      /* popped by sim_switch's ret */
    for (int i = 0; i < 6; i++) *--sp = NULL; /* rbp rbx r12-r15 */
    return sp;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
    if (!g_fail.empty()) return;
    char b[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    g_fail = b;
}

void sim_syncthreads(void) {
    g_cur->state = T_BLOCK_BAR;
    to_sched();
}

static void warp_wait(unsigned mask, int partner) {
    g_cur->state = T_WARP_BAR;
    g_cur->wmask = mask;
    g_cur->shfl_lane = partner;
    to_sched();
}

void sim_syncwarp(unsigned mask) { warp_wait(mask, -1); }

/* One shuffle: this lane stores v, waits for every lane of the mask, then reads the value of
 * lane `partner` (own: its own value). */
static uint64_t shfl_from(unsigned mask, uint64_t v, int partner, bool own) {
    sim_thread *t = g_cur;
    const unsigned slot = t->shfl_seq & 1;
    t->shfl[slot] = v;
    warp_wait(mask, partner);
    /* every lane of the mask stored this shuffle's value before any was released */
    const sim_thread &p = g_thr[t->warp * 32 + (unsigned)partner];
    t->shfl_seq++;
    return own ? v : p.shfl[slot];
}

static void shfl_width(int width) {
    if (width != 32 && (width <= 0 || width > 32 || (width & (width - 1)))) fail("shuffle width %d", width);
}

uint64_t sim_shfl_xor(unsigned mask, uint64_t v, int lane_mask, int width) {
    shfl_width(width);
    const int lane = (int)g_cur->lane, partner = (lane ^ lane_mask) & 31;
    /* with width < 32, a lane reading from a later group of width lanes gets its own value */
    return shfl_from(mask, v, partner, width > 0 && width < 32 && partner / width > lane / width);
}

/* __shfl_sync: lane src % width of the caller's group of width lanes */
uint64_t sim_shfl_idx(unsigned mask, uint64_t v, int src, int width) {
    shfl_width(width);
    const int lane = (int)g_cur->lane, w = width > 0 && width <= 32 ? width : 32;
    return shfl_from(mask, v, (lane & ~(w - 1)) | (src & (w - 1)), false);
}

/* Release the warp barriers every lane of whose mask waits at; false when a barrier can never
 * complete (g_fail says why). */
static bool warp_release(bool *released) {
    const unsigned nw = (g_nthr + 31) / 32;
    for (unsigned w = 0; w < nw; w++) {
        unsigned waiting = 0, done = 0, mask = 0;
        bool any = false;
        for (unsigned l = 0; l < 32 && w * 32 + l < g_nthr; l++) {
            const sim_thread &t = g_thr[w * 32 + l];
            if (t.state == T_WARP_BAR) {
                waiting |= 1u << l;
                if (any && t.wmask != mask) {
                    fail("warp %u: lanes wait at __syncwarp / shuffles with different masks (%#x, %#x)", w, mask, t.wmask);
                    return false;
                }
                mask = t.wmask, any = true;
            } else if (t.state == T_DONE)
                done |= 1u << l;
        }
        if (!any) continue;
        const unsigned exist = w * 32 + 32 <= g_nthr ? 0xffffffffu : (1u << (g_nthr - w * 32)) - 1;
        if (mask & ~exist) {
            fail("warp %u: mask %#x names lanes the block does not have (%u threads)", w, mask, g_nthr);
            return false;
        }
        if (mask & done) {
            fail("warp %u: lanes %#x exited before a __syncwarp / shuffle of mask %#x", w, mask & done, mask);
            return false;
        }
        if ((waiting & mask) != mask) continue; /* some lanes still on their way (at a block barrier) */
        for (unsigned l = 0; l < 32; l++)
            if (mask >> l & 1) {
                sim_thread &t = g_thr[w * 32 + l];
                if (t.shfl_lane >= 0 && !(mask >> t.shfl_lane & 1)) {
                    fail("warp %u: lane %u shuffles with lane %d outside the mask %#x", w, l, t.shfl_lane, mask);
                    return false;
                }
                t.state = T_RUN;
            }
        *released = true;
    }
    return true;
}

/* Run one block of the current launch; false with g_fail set when it went wrong. */
static bool run_block(void) {
    for (unsigned i = 0; i < g_nthr; i++) {
        sim_thread &t = g_thr[i];
        t.state = T_RUN;
        t.lin = i, t.lane = i % 32, t.warp = i / 32;
        t.tid.x = i % sim_block_dim.x;
        t.tid.y = i / sim_block_dim.x % sim_block_dim.y;
        t.tid.z = i / (sim_block_dim.x * sim_block_dim.y);
        t.shfl_seq = 0, t.wmask = 0, t.shfl_lane = -1;
        t.sp = fiber_init(stack_get(i));
    }
    for (;;) {
        for (unsigned i = 0; i < g_nthr; i++)
            if (g_thr[i].state == T_RUN) {
                g_cur = &g_thr[i];
                sim_switch(&g_sched_sp, g_cur->sp);
                if (!g_fail.empty()) return false;
            }
        bool released = false;
        if (!warp_release(&released)) return false;
        if (released) continue;
        unsigned at_bar = 0, done = 0, at_warp = 0;
        for (unsigned i = 0; i < g_nthr; i++) {
            at_bar += g_thr[i].state == T_BLOCK_BAR;
            done += g_thr[i].state == T_DONE;
            at_warp += g_thr[i].state == T_WARP_BAR;
        }
        if (done == g_nthr) return true;
        if (at_bar == g_nthr) {
            for (unsigned i = 0; i < g_nthr; i++) g_thr[i].state = T_RUN;
            continue;
        }
        unsigned first_done = 0;
        while (first_done < g_nthr && g_thr[first_done].state != T_DONE) first_done++;
        if (at_warp == 0)
            fail("__syncthreads reached by %u of %u threads; %u exited (thread %u first) without it", at_bar, g_nthr,
                 done, first_done);
        else
            fail("deadlock: %u threads at __syncthreads, %u at __syncwarp / shuffles, %u exited", at_bar, at_warp, done);
        return false;
    }
}

/* ---- errors, devices, memory ---------------------------------------------------------------------- */
static std::recursive_mutex g_mu; /* one launch or API call at a time */
static cudaError_t g_last = cudaSuccess;   /* cleared by cudaGetLastError */
static cudaError_t g_sticky = cudaSuccess; /* a failed kernel: every later sync returns it, as a device's */
static thread_local int t_dev = 0;

struct sim_dev {
    size_t total, used;
};
static std::vector<sim_dev> g_devs;
/* Device allocations (dev >= 0) and page-locked host memory (dev -1: cudaMallocHost,
 * cudaHostRegister), which kernels may also read, by start address. */
struct sim_region {
    size_t n;
    int dev;
};
static std::map<uintptr_t, sim_region> g_regions;
static const sim_region *region_of(const void *p, uintptr_t *start) {
    auto it = g_regions.upper_bound((uintptr_t)p);
    if (it == g_regions.begin()) return NULL;
    --it;
    if ((uintptr_t)p > it->first + it->second.n) return NULL; /* one past the end is a pointer too */
    if (start) *start = it->first;
    return &it->second;
}

static void devs_init(void) {
    if (!g_devs.empty()) return;
    const char *s = getenv("CUDASIM_DEVICES");
    int n = s && *s ? atoi(s) : 1;
    if (n < 0) n = 0;
    if (n > 8) n = 8;
    const char *m = getenv("CUDASIM_MEM_MIB");
    const size_t mib = m && *m ? (size_t)atoll(m) : 16384;
    g_devs.assign((size_t)n, sim_dev{mib << 20, 0});
}

static cudaError_t ret(cudaError_t e) {
    if (e != cudaSuccess) g_last = e;
    return e;
}

cudaError_t cudaGetLastError(void) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    const cudaError_t e = g_last != cudaSuccess ? g_last : g_sticky;
    g_last = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return g_last != cudaSuccess ? g_last : g_sticky; }

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    }
    return "unknown error";
}

cudaError_t cudaGetDeviceCount(int *n) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    devs_init();
    *n = (int)g_devs.size();
    return g_devs.empty() ? ret(cudaErrorNoDevice) : cudaSuccess;
}
static bool dev_ok(int d) {
    devs_init();
    return d >= 0 && d < (int)g_devs.size();
}
cudaError_t cudaSetDevice(int dev) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!dev_ok(dev)) return ret(cudaErrorInvalidDevice);
    t_dev = dev;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *dev) {
    *dev = t_dev;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!dev_ok(dev)) return ret(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "cudasim %d (CPU simulation of an sm_90 device)", dev);
    p->totalGlobalMem = g_devs[(size_t)dev].total;
    p->major = 9, p->minor = 0;
    p->multiProcessorCount = 132;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->sharedMemPerBlock = 48 * 1024;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int dev) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!dev_ok(dev)) return ret(cudaErrorInvalidDevice);
    switch (a) {
    case cudaDevAttrMultiProcessorCount: *v = 132; break;
    case cudaDevAttrMemoryClockRate: *v = 2619000; break; /* an H100 SXM's: 5120-bit HBM3 */
    case cudaDevAttrGlobalMemoryBusWidth: *v = 5120; break;
    default: return ret(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!dev_ok(t_dev)) return ret(cudaErrorInvalidDevice);
    const sim_dev &d = g_devs[(size_t)t_dev];
    *free_b = d.total - d.used, *total_b = d.total;
    return cudaSuccess;
}

/* ---- streams, capture, graphs ---------------------------------------------------------------------------- */
struct sim_graph {
    std::vector<std::function<cudaError_t()>> nodes;
};
struct sim_stream {
    int dev;
    bool capturing, invalidated;
    sim_graph *g;
};
struct sim_event {
    double t;
};
static thread_local int t_capturing = 0; /* captures this thread has going (not relaxed) */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* An API call that is not allowed while the calling thread captures: it fails and the capture is
 * invalidated, as on a device. */
static std::vector<sim_stream *> g_streams;
static bool unsafe_in_capture(void) {
    if (!t_capturing) return false;
    for (sim_stream *s : g_streams)
        if (s->capturing) s->invalidated = true;
    g_last = cudaErrorStreamCaptureUnsupported;
    return true;
}

/* Run op now, or record it when s captures. */
static cudaError_t enqueue(cudaStream_t s, std::function<cudaError_t()> op) {
    if (s && s->capturing) {
        s->g->nodes.push_back(std::move(op));
        return cudaSuccess;
    }
    if (!s && t_capturing) { /* the legacy stream while capturing: not allowed */
        unsafe_in_capture();
        return cudaErrorStreamCaptureUnsupported;
    }
    return op();
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    (void)flags;
    std::lock_guard<std::recursive_mutex> l(g_mu);
    *s = new sim_stream{t_dev, false, false, NULL};
    g_streams.push_back(*s);
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!s) return ret(cudaErrorInvalidResourceHandle);
    for (size_t i = 0; i < g_streams.size(); i++)
        if (g_streams[i] == s) g_streams.erase(g_streams.begin() + (long)i);
    if (s->capturing) t_capturing--, delete s->g;
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if ((s && s->capturing) || unsafe_in_capture()) {
        if (s) s->invalidated = true;
        return ret(cudaErrorStreamCaptureUnsupported);
    }
    return g_sticky;
}
cudaError_t cudaDeviceSynchronize(void) { return cudaStreamSynchronize(NULL); }

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!s || s->capturing) return ret(cudaErrorInvalidValue); /* the legacy stream cannot be captured */
    s->capturing = true, s->invalidated = false;
    s->g = new sim_graph;
    if (mode != cudaStreamCaptureModeRelaxed) t_capturing++;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!s || !s->capturing) return ret(cudaErrorInvalidValue);
    s->capturing = false;
    if (t_capturing > 0) t_capturing--;
    if (s->invalidated) {
        delete s->g;
        s->g = NULL;
        *g = NULL;
        return ret(cudaErrorStreamCaptureInvalidated);
    }
    *g = s->g;
    s->g = NULL;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags) {
    (void)flags;
    if (!g) return ret(cudaErrorInvalidValue);
    *e = new sim_graph(*g);
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!e) return ret(cudaErrorInvalidValue);
    sim_graph *ge = e;
    return enqueue(s, [ge]() {
        for (auto &op : ge->nodes) {
            const cudaError_t r = op();
            if (r != cudaSuccess) return r;
        }
        return cudaSuccess;
    });
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
    delete e;
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new sim_event{0};
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!e) return ret(cudaErrorInvalidResourceHandle);
    return ret(enqueue(s, [e]() {
        e->t = now_ms();
        return cudaSuccess;
    }));
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!e) return ret(cudaErrorInvalidResourceHandle);
    if (unsafe_in_capture()) return cudaErrorStreamCaptureUnsupported;
    return g_sticky;
}
/* Streams run each call to completion here, so a wait has nothing to wait for (captured: a no-op node). */
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!e) return ret(cudaErrorInvalidResourceHandle);
    if (flags) return ret(cudaErrorInvalidValue);
    return ret(enqueue(s, []() { return cudaSuccess; }));
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    if (!a || !b) return ret(cudaErrorInvalidResourceHandle);
    *ms = (float)(b->t - a->t);
    return cudaSuccess;
}

/* ---- memory ------------------------------------------------------------------------------------------------ */
cudaError_t cudaMalloc(void **p, size_t n) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    *p = NULL;
    if (unsafe_in_capture()) return cudaErrorStreamCaptureUnsupported;
    if (!dev_ok(t_dev)) return ret(cudaErrorInvalidDevice);
    sim_dev &d = g_devs[(size_t)t_dev];
    if (n > d.total - d.used) return ret(cudaErrorMemoryAllocation);
    void *q = NULL; /* the exact size: under AddressSanitizer a kernel reading past it is caught */
    if (posix_memalign(&q, 256, n ? n : 1)) return ret(cudaErrorMemoryAllocation);
    d.used += n;
    g_regions[(uintptr_t)q] = {n, t_dev};
    *p = q;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!p) return cudaSuccess;
    if (unsafe_in_capture()) return cudaErrorStreamCaptureUnsupported;
    auto it = g_regions.find((uintptr_t)p);
    if (it == g_regions.end() || it->second.dev < 0) {
        fprintf(stderr, "cudasim: cudaFree(%p): not a device allocation\n", p);
        return ret(cudaErrorInvalidValue);
    }
    g_devs[(size_t)it->second.dev].used -= it->second.n;
    g_regions.erase(it);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaDeviceReset(void) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    for (auto it = g_regions.begin(); it != g_regions.end();)
        if (it->second.dev == t_dev) {
            g_devs[(size_t)t_dev].used -= it->second.n;
            free((void *)it->first);
            it = g_regions.erase(it);
        } else
            ++it;
    g_sticky = g_last = cudaSuccess;
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t n) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    *p = NULL;
    if (unsafe_in_capture()) return cudaErrorStreamCaptureUnsupported;
    if (posix_memalign(p, 4096, n ? n : 1)) {
        *p = NULL;
        return ret(cudaErrorMemoryAllocation);
    }
    g_regions[(uintptr_t)*p] = {n, -1};
    return cudaSuccess;
}
static cudaError_t host_forget(void *p) {
    auto it = g_regions.find((uintptr_t)p);
    if (it == g_regions.end() || it->second.dev != -1) return ret(cudaErrorInvalidValue);
    g_regions.erase(it);
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (unsafe_in_capture()) return cudaErrorStreamCaptureUnsupported;
    if (!p) return cudaSuccess;
    const cudaError_t e = host_forget(p);
    if (e == cudaSuccess) free(p);
    return e;
}
cudaError_t cudaHostRegister(void *p, size_t n, unsigned flags) {
    (void)flags;
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!p || !n) return ret(cudaErrorInvalidValue);
    if (unsafe_in_capture()) return cudaErrorStreamCaptureUnsupported;
    uintptr_t st;
    if (region_of(p, &st) && st + g_regions[st].n > (uintptr_t)p) return ret(cudaErrorInvalidValue); /* overlaps */
    g_regions[(uintptr_t)p] = {n, -1};
    return cudaSuccess;
}
cudaError_t cudaHostUnregister(void *p) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!p) return ret(cudaErrorInvalidValue);
    if (unsafe_in_capture()) return cudaErrorStreamCaptureUnsupported;
    return host_forget(p);
}

static cudaError_t copy_op(cudaStream_t s, void *dst, const void *src, size_t n) {
    if (!n) return cudaSuccess;
    if (!dst || !src) return ret(cudaErrorInvalidValue);
    return ret(enqueue(s, [dst, src, n]() {
        memmove(dst, src, n);
        return cudaSuccess;
    }));
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    (void)kind;
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (unsafe_in_capture()) return cudaErrorStreamCaptureUnsupported;
    if (g_sticky) return g_sticky;
    return copy_op(NULL, dst, src, n);
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t s) {
    (void)kind;
    std::lock_guard<std::recursive_mutex> l(g_mu);
    return copy_op(s, dst, src, n);
}
cudaError_t cudaMemcpyPeerAsync(void *dst, int dst_dev, const void *src, int src_dev, size_t n, cudaStream_t s) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!dev_ok(dst_dev) || !dev_ok(src_dev)) return ret(cudaErrorInvalidDevice);
    return copy_op(s, dst, src, n);
}
cudaError_t cudaMemset(void *dst, int v, size_t n) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (unsafe_in_capture()) return cudaErrorStreamCaptureUnsupported;
    return cudaMemsetAsync(dst, v, n, NULL);
}
cudaError_t cudaMemsetAsync(void *dst, int v, size_t n, cudaStream_t s) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!n) return cudaSuccess;
    if (!dst) return ret(cudaErrorInvalidValue);
    return ret(enqueue(s, [dst, v, n]() {
        memset(dst, v, n);
        return cudaSuccess;
    }));
}

/* ---- launches ----------------------------------------------------------------------------------------------- */
static cudaError_t run_grid(const char *name, dim3 g, dim3 b, size_t smem, const std::function<void()> &body) {
    if (g_sticky) return g_sticky;
    const unsigned n = b.x * b.y * b.z;
    g_thr.resize(n > g_thr.size() ? n : g_thr.size());
    g_nthr = n;
    sim_grid_dim = g, sim_block_dim = b;
    g_dyn.assign(smem ? smem : 16, 0xff); /* never-written shared floats read as NaN */
    g_body = &body;
    for (unsigned z = 0; z < g.z; z++)
        for (unsigned y = 0; y < g.y; y++)
            for (unsigned x = 0; x < g.x; x++) {
                sim_block_idx = uint3{x, y, z};
                g_fail.clear();
                if (!run_block()) {
                    fprintf(stderr, "cudasim: kernel %s, grid (%u,%u,%u) block (%u,%u,%u): block (%u,%u,%u): %s\n", name,
                            g.x, g.y, g.z, b.x, b.y, b.z, x, y, z, g_fail.c_str());
                    const char *a = getenv("CUDASIM_ABORT");
                    if (a && *a && strcmp(a, "0")) abort();
                    g_sticky = cudaErrorLaunchFailure;
                    return g_sticky;
                }
            }
    return cudaSuccess;
}

void sim_over_bounds(const char *name, dim3 b, unsigned max_threads) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    fprintf(stderr, "cudasim: kernel %s: %u threads a block, its __launch_bounds__ allow %u\n", name, b.x * b.y * b.z,
            max_threads);
    g_last = cudaErrorLaunchOutOfResources;
}

/* A kernel's pointer arguments must point into the launching device's memory or page-locked host
 * memory (or be NULL): on a GPU, anything else faults when the kernel reads it. */
static std::string g_bad_arg;
void sim_check_ptr(const char *name, int i, const void *p) {
    if (!p || !g_bad_arg.empty()) return;
    std::lock_guard<std::recursive_mutex> l(g_mu);
    const sim_region *r = region_of(p, NULL);
    char b[256];
    if (!r)
        snprintf(b, sizeof b, "argument %d (%p) points into no device allocation and no page-locked host memory", i, p);
    else if (r->dev >= 0 && r->dev != t_dev)
        snprintf(b, sizeof b, "argument %d (%p) points into device %d's memory, launched on device %d", i, p, r->dev,
                 t_dev);
    else
        return;
    g_bad_arg = b;
    (void)name;
}

void sim_submit(const char *name, dim3 g, dim3 b, size_t smem, cudaStream_t s, std::function<void()> body) {
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!g_bad_arg.empty()) {
        fprintf(stderr, "cudasim: kernel %s: %s\n", name, g_bad_arg.c_str());
        g_bad_arg.clear();
        const char *a = getenv("CUDASIM_ABORT");
        if (a && *a && strcmp(a, "0")) abort();
        g_sticky = g_last = cudaErrorIllegalAddress; /* as the fault a device would raise */
        return;
    }
    const uint64_t n = (uint64_t)b.x * b.y * b.z;
    if (n == 0 || n > 1024 || b.z > 64 || g.x == 0 || g.y == 0 || g.z == 0 || g.x > 0x7fffffffu || g.y > 65535 ||
        g.z > 65535 || smem > 48 * 1024) {
        fprintf(stderr, "cudasim: kernel %s: invalid configuration: grid (%u,%u,%u) block (%u,%u,%u) shared %zu\n", name,
                g.x, g.y, g.z, b.x, b.y, b.z, smem);
        g_last = cudaErrorInvalidConfiguration;
        return;
    }
    std::string nm = name;
    ret(enqueue(s, [nm, g, b, smem, body]() { return run_grid(nm.c_str(), g, b, smem, body); }));
}

/* ---- half precision ----------------------------------------------------------------------------------------------- */
uint16_t sim_f2h(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint32_t s = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return (uint16_t)(s | (a > 0x7f800000u ? 0x7e00u : 0x7c00u)); /* NaN, inf */
    if (a >= 0x477ff000u) return (uint16_t)(s | 0x7c00u);                                /* rounds past 65504 */
    if (a < 0x38800000u) {                                                               /* subnormal or zero */
        if (a < 0x33000000u) return (uint16_t)s;                                          /* below half the least */
        const uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        const uint32_t sh = 126 - e; /* 14..24 */
        uint32_t r = m >> sh;
        const uint32_t rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(s | r);
    }
    uint32_t r = ((a >> 13) - (112u << 10));
    const uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
    return (uint16_t)(s | r);
}

float sim_h2f(uint16_t h) {
    const uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    uint32_t u;
    if (e == 0) {
        float f = (float)m * (1.0f / 16777216.0f);
        memcpy(&u, &f, 4);
        u |= s;
    } else if (e == 31)
        u = s | 0x7f800000u | (m << 13);
    else
        u = s | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- cuBLAS ------------------------------------------------------------------------------------------------------ */
struct sim_cublas {
    cudaStream_t s;
};
cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = new sim_cublas{NULL};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    h->s = s;
    return CUBLAS_STATUS_SUCCESS;
}

static float ld(const void *p, cudaDataType t, size_t i) {
    return t == CUDA_R_16F ? sim_h2f(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt,
                            int ldb, const void *beta, void *C, cudaDataType ct, int ldc, cublasComputeType_t comp,
                            cublasGemmAlgo_t algo) {
    (void)algo;
    std::lock_guard<std::recursive_mutex> l(g_mu);
    if (!h || m < 0 || n < 0 || k < 0 || comp != CUBLAS_COMPUTE_32F) return CUBLAS_STATUS_INVALID_VALUE;
    if (lda < (ta == CUBLAS_OP_N ? m : k) || ldb < (tb == CUBLAS_OP_N ? k : n) || ldc < m || lda < 1 || ldb < 1 ||
        ldc < 1)
        return CUBLAS_STATUS_INVALID_VALUE;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    enqueue(h->s, [=]() {
        std::vector<float> a((size_t)k), bcol((size_t)k);
        for (int j = 0; j < n; j++) {
            for (int l2 = 0; l2 < k; l2++)
                bcol[(size_t)l2] = ld(B, bt, tb == CUBLAS_OP_N ? (size_t)l2 + (size_t)j * ldb : (size_t)j + (size_t)l2 * ldb);
            for (int i = 0; i < m; i++) {
                float s = 0.0f;
                for (int l2 = 0; l2 < k; l2++) {
                    const size_t ia = ta == CUBLAS_OP_N ? (size_t)i + (size_t)l2 * lda : (size_t)l2 + (size_t)i * lda;
                    s = fmaf(ld(A, at, ia), bcol[(size_t)l2], s);
                }
                const size_t ic = (size_t)i + (size_t)j * ldc;
                const float old = be != 0.0f ? ld(C, ct, ic) : 0.0f;
                const float v = al * s + be * old;
                if (ct == CUDA_R_16F) ((uint16_t *)C)[ic] = sim_f2h(v);
                else ((float *)C)[ic] = v;
            }
        }
        return cudaSuccess;
    });
    return CUBLAS_STATUS_SUCCESS;
}
