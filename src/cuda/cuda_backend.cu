/*
 * cuda_backend.cu — device enumeration, the per-device context (stream,
 * cuBLAS handle, scratch), memory and copies, weight upload, graph capture,
 * timers, and the launch-error reporting every op uses.
 */
#include <cublas_v2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda/cuda_common.cuh"
#include "cuda/mmvq.cuh"

/* ---- errors ------------------------------------------------------------------------------ */

int mrc_launched(mrc_ctx *c, const char *kernel, const char *fmt, ...) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && c->sync_each && !c->capturing) e = cudaStreamSynchronize(c->stream);
    if (e == cudaSuccess) return 0;
    char shape[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(shape, sizeof shape, fmt, ap);
    va_end(ap);
    mr_seterr("cuda: %s (%s): %s", kernel, shape, cudaGetErrorString(e));
    return -1;
}

/* ---- devices ------------------------------------------------------------------------------- */

/* The calling thread's current device, cached: cudaSetDevice only when it changes. Every
 * cudaSetDevice of this file goes through here so the cache stays true. */
static __thread int t_cur_dev = -1;
static cudaError_t use_dev(int dev) {
    if (t_cur_dev == dev) return cudaSuccess;
    const cudaError_t e = cudaSetDevice(dev);
    t_cur_dev = e == cudaSuccess ? dev : -1;
    return e;
}

int mrc_make_current(mrc_ctx *c) {
    MRC_CALL(use_dev(c->dev), "CUDA%d: make current", c->dev);
    return 0;
}


int mrc_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky "no driver" error */
        return 0;
    }
    return n;
}

int mrc_device_info_get(int dev, mrc_device_info *out) {
    memset(out, 0, sizeof *out);
    cudaDeviceProp p;
    MRC_CALL(cudaGetDeviceProperties(&p, dev), "device %d", dev);
    MRC_CALL(use_dev(dev), "device %d", dev);
    size_t fr = 0, tot = 0;
    MRC_CALL(cudaMemGetInfo(&fr, &tot), "device %d", dev);
    out->id = dev;
    snprintf(out->name, sizeof out->name, "%s", p.name);
    out->free = fr, out->total = tot;
    out->cc_major = p.major, out->cc_minor = p.minor;
    out->n_sm = p.multiProcessorCount;
    int clock_khz = 0, bus = 0;
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, dev);
    cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, dev);
    out->mem_bw_gbs = 2.0 * clock_khz * 1e3 * (bus / 8) / 1e9; /* DDR: 2 transfers per clock */
    return 0;
}

/* ---- context ---------------------------------------------------------------------------------- */

mrc_ctx *mrc_init(int dev) {
    if (dev < 0 || dev >= mrc_device_count()) {
        mr_seterr("cuda: no device CUDA%d (%d device%s)", dev, mrc_device_count(), mrc_device_count() == 1 ? "" : "s");
        return NULL;
    }
    mrc_ctx *c = (mrc_ctx *)mr_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->dev = dev;
    const char *s = getenv("MOERUN_CUDA_SYNC");
    c->sync_each = s && *s && strcmp(s, "0");
    cudaError_t e = use_dev(dev);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaEventCreate(&c->t0);
    if (e == cudaSuccess) e = cudaEventCreate(&c->t1);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&c->n_sm, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) e = cudaMalloc((void **)&c->done, sizeof(unsigned) * MRC_DONE_N);
    /* on the context's stream (non-blocking: it would not wait for the default stream) */
    if (e == cudaSuccess) e = cudaMemsetAsync(c->done, 0, sizeof(unsigned) * MRC_DONE_N, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
        mr_seterr("cuda: init CUDA%d: %s", dev, cudaGetErrorString(e));
        mrc_free(c);
        return NULL;
    }
    cublasHandle_t h;
    cublasStatus_t st = cublasCreate(&h);
    if (st != CUBLAS_STATUS_SUCCESS) {
        mr_seterr("cuda: init CUDA%d: cublasCreate failed (status %d)", dev, (int)st);
        mrc_free(c);
        return NULL;
    }
    cublasSetStream(h, c->stream);
    c->cublas = h;
    return c;
}

void mrc_free(mrc_ctx *c) {
    if (!c) return;
    use_dev(c->dev);
    if (c->graph_exec) cudaGraphExecDestroy(c->graph_exec);
    if (c->graph) cudaGraphDestroy(c->graph);
    if (c->cublas) cublasDestroy((cublasHandle_t)c->cublas);
    if (c->scratch) cudaFree(c->scratch);
    if (c->done) cudaFree(c->done);
    if (c->t0) cudaEventDestroy(c->t0);
    if (c->t1) cudaEventDestroy(c->t1);
    if (c->stream) cudaStreamDestroy(c->stream);
    if (c->side) cudaStreamDestroy(c->side);
    free(c);
}

int mrc_device_of(const mrc_ctx *c) { return c->dev; }
void *mrc_stream(mrc_ctx *c) { return (void *)c->stream; }

int mrc_sync(mrc_ctx *c) {
    MRC_CALL(cudaStreamSynchronize(c->stream), "CUDA%d: synchronize", c->dev);
    if (c->side) MRC_CALL(cudaStreamSynchronize(c->side), "CUDA%d: synchronize the copy stream", c->dev);
    return 0;
}

/* ---- the copy stream and events ---------------------------------------------------------------------- */
static cudaStream_t stream_of(mrc_ctx *c, int side) {
    if (!side) return c->stream;
    if (!c->side && cudaStreamCreateWithFlags(&c->side, cudaStreamNonBlocking) != cudaSuccess) c->side = NULL;
    return c->side;
}

int mrc_upload_side(mrc_ctx *c, void *dst, const void *src, size_t n) {
    cudaStream_t s = stream_of(c, 1);
    if (!s) {
        mr_seterr("cuda: CUDA%d: cannot create a copy stream", c->dev);
        return -1;
    }
    MRC_CALL(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s), "upload %zu bytes (copy stream)", n);
    return 0;
}

void *mrc_event_new(mrc_ctx *c) {
    cudaEvent_t e;
    if (cudaEventCreate(&e) != cudaSuccess) {
        mr_seterr("cuda: CUDA%d: cannot create an event", c->dev);
        return NULL;
    }
    return (void *)e;
}

int mrc_event_record(mrc_ctx *c, void *e, int side) {
    cudaStream_t s = stream_of(c, side);
    if (!s) {
        mr_seterr("cuda: CUDA%d: cannot create a copy stream", c->dev);
        return -1;
    }
    MRC_CALL(cudaEventRecord((cudaEvent_t)e, s), "record an event on the %s stream", side ? "copy" : "main");
    return 0;
}

int mrc_event_wait(mrc_ctx *c, void *e, int side) {
    cudaStream_t s = stream_of(c, side);
    if (!s) {
        mr_seterr("cuda: CUDA%d: cannot create a copy stream", c->dev);
        return -1;
    }
    MRC_CALL(cudaStreamWaitEvent(s, (cudaEvent_t)e, 0), "the %s stream waits for an event", side ? "copy" : "main");
    return 0;
}

void mrc_event_free(void *e) {
    if (e) cudaEventDestroy((cudaEvent_t)e);
}

void *mrc_scratch(mrc_ctx *c, size_t n) {
    if (n <= c->scratch_cap) return c->scratch;
    if (c->capturing) { /* a graph must not bake in a buffer that is about to move */
        mr_seterr("cuda: CUDA%d: scratch of %zu bytes would grow during graph capture (run the step once first)",
                  c->dev, n);
        return NULL;
    }
    c->scratch_epoch++;
    /* growing frees the old buffer: wait for the ops that may still use it */
    cudaStreamSynchronize(c->stream);
    if (c->scratch) cudaFree(c->scratch);
    c->scratch = NULL;
    c->scratch_cap = 0;
    const size_t cap = n + n / 4;
    if (cudaMalloc(&c->scratch, cap) != cudaSuccess) {
        cudaGetLastError();
        mr_seterr("cuda: CUDA%d: scratch of %zu bytes: out of device memory", c->dev, cap);
        return NULL;
    }
    c->scratch_cap = cap;
    return c->scratch;
}

/* ---- memory ---------------------------------------------------------------------------------------- */

void *mrc_alloc(mrc_ctx *c, size_t n) {
    void *p = NULL;
    use_dev(c->dev);
    cudaError_t e = cudaMalloc(&p, n ? n : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        char a[32], b[32];
        mr_seterr("cuda: CUDA%d: allocating %s: %s (%s free)", c->dev, mr_fmt_bytes(a, sizeof a, n),
                  cudaGetErrorString(e), mr_fmt_bytes(b, sizeof b, fr));
        return NULL;
    }
    return p;
}

void mrc_dfree(void *p) {
    if (p) cudaFree(p);
}

int mrc_upload(mrc_ctx *c, void *dst, const void *src, size_t n) {
    MRC_CALL(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->stream), "upload %zu bytes", n);
    return 0;
}

int mrc_download(mrc_ctx *c, void *dst, const void *src, size_t n) {
    MRC_CALL(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->stream), "download %zu bytes", n);
    return 0;
}

int mrc_peer_copy(mrc_ctx *dst_c, void *dst, mrc_ctx *src_c, const void *src, size_t n) {
    MRC_CALL(cudaStreamSynchronize(src_c->stream), "CUDA%d: synchronize before a copy to CUDA%d", src_c->dev, dst_c->dev);
    MRC_CALL(use_dev(dst_c->dev), "CUDA%d: make current", dst_c->dev);
    MRC_CALL(cudaMemcpyPeerAsync(dst, dst_c->dev, src, src_c->dev, n, dst_c->stream), "copy %zu bytes CUDA%d -> CUDA%d",
             n, src_c->dev, dst_c->dev);
    return 0;
}

int mrc_memset(mrc_ctx *c, void *dst, int v, size_t n) {
    MRC_CALL(cudaMemsetAsync(dst, v, n, c->stream), "memset %zu bytes", n);
    return 0;
}

void *mrc_host_alloc(size_t n) {
    void *p = NULL;
    if (cudaMallocHost(&p, n) != cudaSuccess) {
        cudaGetLastError();
        mr_seterr("cuda: pinned host allocation of %zu bytes failed", n);
        return NULL;
    }
    return p;
}

void mrc_host_free(void *p) {
    if (p) cudaFreeHost(p);
}

/* ---- weights ------------------------------------------------------------------------------------------ */

bool mrc_type_supported(uint32_t t) {
    return t == MR_TYPE_F32 || t == MR_TYPE_F16 || t == MR_TYPE_BF16 || mrc_unit_elems(t) > 0;
}

int mrc_weight_view(mrc_weight *w, void *dev_ptr, uint32_t type, int64_t k, int64_t m, int64_t n_mat) {
    memset(w, 0, sizeof *w);
    const mr_type_traits *tr = mr_type_get(type);
    if (!mrc_type_supported(type) || !tr) {
        mr_seterr("cuda: weight type %s is not supported by the CUDA kernels (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 "
                  "Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS)",
                  mr_type_name(type));
        return -1;
    }
    if (k <= 0 || m <= 0 || n_mat <= 0 || k % (int64_t)tr->blck || (mrc_unit_elems(type) && k % mrc_unit_elems(type))) {
        mr_seterr("cuda: weight %s with rows of %lld elements: not a positive multiple of the block size",
                  mr_type_name(type), (long long)k);
        return -1;
    }
    if ((uintptr_t)dev_ptr % 16) {
        mr_seterr("cuda: weight at %p: not 16-byte aligned", dev_ptr);
        return -1;
    }
    w->data = dev_ptr;
    w->type = type;
    w->k = k, w->m = m, w->n_mat = n_mat;
    w->row_bytes = mr_row_size(type, k);
    w->mat_bytes = w->row_bytes * (size_t)m;
    return 0;
}

int mrc_weight_upload(mrc_ctx *c, mrc_weight *w, const void *host, uint32_t type, int64_t k, int64_t m, int64_t n_mat) {
    mrc_weight v;
    /* validate the shape before allocating (view of a dummy aligned pointer) */
    if (mrc_weight_view(&v, (void *)(uintptr_t)256, type, k, m, n_mat)) return -1;
    const size_t n = v.mat_bytes * (size_t)n_mat;
    void *p = mrc_alloc(c, n);
    if (!p) return -1;
    if (mrc_upload(c, p, host, n) || mrc_sync(c)) {
        cudaFree(p);
        return -1;
    }
    mrc_weight_view(w, p, type, k, m, n_mat);
    w->owned = true;
    return 0;
}

void mrc_weight_free(mrc_weight *w) {
    if (w->owned && w->data) cudaFree(w->data);
    memset(w, 0, sizeof *w);
}

/* ---- graphs ----------------------------------------------------------------------------------------------- */

int mrc_graph_begin(mrc_ctx *c) {
    MRC_CALL(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), "CUDA%d: begin capture", c->dev);
    c->capturing = true;
    return 0;
}

int mrc_graph_end(mrc_ctx *c) {
    cudaGraph_t g = NULL;
    c->capturing = false;
    MRC_CALL(cudaStreamEndCapture(c->stream, &g), "CUDA%d: end capture", c->dev);
    if (c->graph_exec) cudaGraphExecDestroy(c->graph_exec);
    if (c->graph) cudaGraphDestroy(c->graph);
    c->graph = g;
    c->graph_exec = NULL;
    MRC_CALL(cudaGraphInstantiate(&c->graph_exec, g, 0), "CUDA%d: instantiate graph", c->dev);
    return 0;
}

unsigned mrc_scratch_epoch(const mrc_ctx *c) { return c->scratch_epoch; }
size_t mrc_scratch_bytes(const mrc_ctx *c) { return c->scratch_cap; }

int mrc_host_register(void *p, size_t n) {
    MRC_CALL(cudaHostRegister(p, n, cudaHostRegisterPortable), "pinning %zu bytes of host memory", n);
    return 0;
}

int mrc_host_register_ro(const void *p, size_t n) {
    MRC_CALL(cudaHostRegister((void *)p, n, cudaHostRegisterPortable | cudaHostRegisterReadOnly),
             "pinning %zu bytes of read-only host memory", n);
    return 0;
}

void mrc_host_unregister(void *p) {
    if (p && cudaHostUnregister(p) != cudaSuccess) cudaGetLastError();
}

int mrc_graph_launch(mrc_ctx *c) {
    if (!c->graph_exec) {
        mr_seterr("cuda: CUDA%d: no captured graph", c->dev);
        return -1;
    }
    MRC_CALL(cudaGraphLaunch(c->graph_exec, c->stream), "CUDA%d: graph launch", c->dev);
    return 0;
}

/* ---- timers ------------------------------------------------------------------------------------------------- */

int mrc_timer_start(mrc_ctx *c) {
    MRC_CALL(cudaEventRecord(c->t0, c->stream), "timer");
    return 0;
}

void *mrc_stamp_new(mrc_ctx *c) {
    (void)c;
    cudaEvent_t e;
    if (cudaEventCreate(&e) != cudaSuccess) {
        cudaGetLastError();
        mr_seterr("cuda: stamp: cannot create an event");
        return NULL;
    }
    return (void *)e;
}

int mrc_stamp(mrc_ctx *c, void *s) {
    MRC_CALL(cudaEventRecord((cudaEvent_t)s, c->stream), "stamp");
    return 0;
}

double mrc_stamp_ms(void *from, void *to) {
    float ms = 0;
    if (cudaEventSynchronize((cudaEvent_t)to) != cudaSuccess ||
        cudaEventElapsedTime(&ms, (cudaEvent_t)from, (cudaEvent_t)to) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    return ms;
}

void mrc_stamp_free(void *s) {
    if (s) cudaEventDestroy((cudaEvent_t)s);
}

double mrc_timer_stop(mrc_ctx *c) {
    float ms = 0;
    if (cudaEventRecord(c->t1, c->stream) != cudaSuccess || cudaEventSynchronize(c->t1) != cudaSuccess ||
        cudaEventElapsedTime(&ms, c->t0, c->t1) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    return ms;
}
