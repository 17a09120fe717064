/*
 * quant_dispatch.c — the public entry points (dot products, dequantization,
 * quantization): vec-dot types, argument checks, and run-time choice between
 * the scalar reference and the SIMD kernels (made once, from mr_cpu(), behind
 * pthread_once).
 */
#include <pthread.h>
#include <stdlib.h>

#include "base/base.h"
#include "quant/quant_impl.h"

uint32_t quant_vec_dot_type(uint32_t wtype) {
    if (mr_type_is_r8(wtype)) return mr_type_get(wtype) ? quant_vec_dot_type(mr_type_base(wtype)) : (uint32_t)-1;
    switch (wtype) {
    case MR_TYPE_F32: case MR_TYPE_F16: case MR_TYPE_BF16: return MR_TYPE_F32;
    case MR_TYPE_Q4_0: case MR_TYPE_Q4_1: case MR_TYPE_Q5_0: case MR_TYPE_Q5_1:
    case MR_TYPE_Q8_0: case MR_TYPE_IQ4_NL: return MR_TYPE_Q8_0;
    case MR_TYPE_Q2_K: case MR_TYPE_Q3_K: case MR_TYPE_Q4_K: case MR_TYPE_Q5_K:
    case MR_TYPE_Q6_K: case MR_TYPE_IQ4_XS: return MR_TYPE_Q8_K;
    default: return (uint32_t)-1;
    }
}

bool quant_supported(uint32_t wtype) { return quant_vec_dot_type(wtype) != (uint32_t)-1; }

int quant_check(uint32_t wtype, int64_t k) {
    if (!quant_supported(wtype)) {
        mr_seterr("matmul: unsupported weight type %s (id %u)", mr_type_name(wtype), wtype);
        return -1;
    }
    const uint32_t bw = mr_type_get(wtype)->blck, bx = mr_type_get(quant_vec_dot_type(wtype))->blck;
    if (k <= 0 || k % bw || k % bx) {
        mr_seterr("matmul: row length %lld is not a positive multiple of the %s block size %u", (long long)k,
                  mr_type_name(wtype), MR_MAX(bw, bx));
        return -1;
    }
    return 0;
}

/* ---- dispatch table ---------------------------------------------------------------------- */

static quant_mm_fn g_avx2[MR_TYPE_ALL]; /* NULL: none or not runnable here */
static quant_mm_fn g_vnni[MR_TYPE_ALL];
static quant_dq_fn g_avx2_dq[MR_TYPE_COUNT];
static quant_qz_fn g_avx2_qz[MR_TYPE_COUNT];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
int quant_r8_prefetch, quant_r8_prefetch_mm; /* quant_avx2.h: r8_pf */

static void init_tables(void) {
    const mr_cpu_features *f = mr_cpu();
    const char *pf = getenv("MOERUN_PREFETCH");
    const char *pm = getenv("MOERUN_PREFETCH_MM");
    /* quant_avx2.h: r8_pf (AMD: Zen 3 and older, and Zen 5; not Zen 4) */
    quant_r8_prefetch = pf && *pf ? atoi(pf) != 0 : f->amd && (!f->avx512_hw || f->family >= 0x1a);
    quant_r8_prefetch_mm = pm && *pm ? atoi(pm) != 0 : pf && *pf ? atoi(pf) != 0 : 1;
    if (f->avx2 && f->fma && f->f16c)
        for (uint32_t t = 0; t < MR_TYPE_ALL; t++) {
            if (quant_supported(t)) g_avx2[t] = mr_type_is_r8(t) ? quant_avx2_kernel_r8(t) : quant_avx2_kernel(t);
            if (t < MR_TYPE_COUNT) g_avx2_dq[t] = quant_avx2_dq(t), g_avx2_qz[t] = quant_avx2_qz(t);
        }
    if (f->avx2 && f->fma && f->f16c && f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni)
        for (uint32_t t = 0; t < MR_TYPE_ALL; t++)
            if (mr_type_is_r8(t) && quant_supported(t)) g_vnni[t] = quant_vnni_kernel_r8(t);
}

/* The kernel of an ISA for wtype; NULL where none (AUTO: the best one). */
static quant_mm_fn isa_kernel(quant_isa isa, uint32_t wtype) {
    pthread_once(&g_once, init_tables);
    if (wtype >= MR_TYPE_ALL) return NULL;
    switch (isa) {
    case QUANT_ISA_AVX2: return g_avx2[wtype];
    case QUANT_ISA_VNNI: return g_vnni[wtype];
    case QUANT_ISA_AUTO: return g_vnni[wtype] ? g_vnni[wtype] : g_avx2[wtype];
    case QUANT_ISA_SCALAR: return NULL;
    }
    return NULL;
}

static inline quant_mm_fn simd_kernel(uint32_t wtype) { return isa_kernel(QUANT_ISA_AUTO, wtype); }

bool quant_r8_fast(uint32_t t8) { return mr_type_is_r8(t8) && simd_kernel(t8) != NULL; }

/* ---- dequantization / quantization entry points ------------------------------------------ */

/* Common argument check: known type, n a non-negative multiple of the block. */
static int check_n(const char *what, uint32_t type, int64_t n) {
    const mr_type_traits *tr = mr_type_get(type);
    if (n < 0 || n % tr->blck) {
        mr_seterr("%s %s: %lld elements is not a multiple of the block size %u", what, tr->name, (long long)n,
                  tr->blck);
        return -1;
    }
    return 0;
}

int quant_dequant_row_isa(quant_isa isa, uint32_t type, const void *src, float *dst, int64_t n) {
    quant_dq_fn f = quant_ref_dq(type);
    if (!f) {
        mr_seterr("dequantize: unsupported tensor type %s (id %u)", mr_type_name(type), type);
        return -1;
    }
    if (check_n("dequantize", type, n)) return -1;
    if (isa != QUANT_ISA_SCALAR) {
        pthread_once(&g_once, init_tables);
        if (g_avx2_dq[type]) f = g_avx2_dq[type];
    }
    f(src, dst, n / mr_type_get(type)->blck);
    return 0;
}

int quant_dequant_row(uint32_t type, const void *src, float *dst, int64_t n) {
    return quant_dequant_row_isa(QUANT_ISA_AUTO, type, src, dst, n);
}

int quant_quantize_row_isa(quant_isa isa, uint32_t type, const float *x, void *dst, int64_t n) {
    quant_qz_fn f = quant_ref_qz(type);
    if (!f) {
        mr_seterr("quantize: unsupported target type %s (id %u)", mr_type_name(type), type);
        return -1;
    }
    if (check_n("quantize", type, n)) return -1;
    if (isa != QUANT_ISA_SCALAR) {
        pthread_once(&g_once, init_tables);
        if (g_avx2_qz[type]) f = g_avx2_qz[type];
    }
    f(x, dst, n / mr_type_get(type)->blck);
    return 0;
}

int quant_quantize_row(uint32_t type, const float *x, void *dst, int64_t n) {
    return quant_quantize_row_isa(QUANT_ISA_AUTO, type, x, dst, n);
}

bool quant_isa_available(quant_isa isa, uint32_t wtype) {
    switch (isa) {
    case QUANT_ISA_SCALAR: return quant_supported(wtype);
    case QUANT_ISA_AVX2: case QUANT_ISA_VNNI: return isa_kernel(isa, wtype) != NULL;
    case QUANT_ISA_AUTO: return quant_supported(wtype);
    }
    return false;
}

quant_isa quant_isa_selected(uint32_t wtype) {
    return isa_kernel(QUANT_ISA_VNNI, wtype) ? QUANT_ISA_VNNI
           : isa_kernel(QUANT_ISA_AVX2, wtype) ? QUANT_ISA_AVX2 : QUANT_ISA_SCALAR;
}

const char *quant_isa_name(quant_isa isa) {
    switch (isa) {
    case QUANT_ISA_AUTO: return "auto";
    case QUANT_ISA_SCALAR: return "scalar";
    case QUANT_ISA_AVX2: return "avx2";
    case QUANT_ISA_VNNI: return "avx512vnni";
    }
    return "?";
}

void quant_matmul_isa(quant_isa isa, uint32_t wtype, const void *W, int64_t k, int64_t r0, int64_t r1,
                      const void *xq, size_t xq_stride, int64_t n_cols, float *y, int64_t y_stride) {
    if (r1 <= r0 || n_cols <= 0) return;
    MR_ASSERT(quant_supported(wtype));
    const size_t ws = mr_row_size(wtype, k);
    const void *w0 = (const char *)W + (size_t)r0 * ws;
    quant_mm_fn fn = isa_kernel(isa, wtype);
    if (mr_type_is_r8(wtype)) MR_ASSERT(r0 % 8 == 0 && (r1 - r0) % 8 == 0);
    if (fn) fn(w0, ws, k, r1 - r0, xq, xq_stride, n_cols, y + r0, y_stride);
    else if (mr_type_is_r8(wtype)) quant_ref_matmul_r8(wtype, w0, ws, k, r1 - r0, xq, xq_stride, n_cols, y + r0, y_stride);
    else quant_ref_matmul(wtype, w0, ws, k, r1 - r0, xq, xq_stride, n_cols, y + r0, y_stride);
}

void quant_matmul(uint32_t wtype, const void *W, int64_t k, int64_t r0, int64_t r1, const void *xq,
                  size_t xq_stride, int64_t n_cols, float *y, int64_t y_stride) {
    quant_matmul_isa(QUANT_ISA_AUTO, wtype, W, k, r0, r1, xq, xq_stride, n_cols, y, y_stride);
}

void quant_matvec(uint32_t wtype, const void *W, int64_t k, int64_t r0, int64_t r1, const void *xq, float *y) {
    quant_matmul_isa(QUANT_ISA_AUTO, wtype, W, k, r0, r1, xq, 0, 1, y, 0);
}
