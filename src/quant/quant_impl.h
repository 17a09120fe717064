/*
 * quant_impl.h — private to src/quant: ggml block layouts (bit-exact) and the
 * signature shared by the scalar and SIMD matmul kernels.
 */
#ifndef MR_QUANT_IMPL_H
#define MR_QUANT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "quant/quant.h"

/* All fp16 fields are raw IEEE half bits. */
typedef struct { uint16_t d; uint8_t qs[16]; } blk_q4_0;                  /* x = d*(q-8) */
typedef struct { uint16_t d, m; uint8_t qs[16]; } blk_q4_1;               /* x = d*q + m */
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } blk_q5_0;   /* x = d*(q-16) */
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } blk_q5_1;
typedef struct { uint16_t d; int8_t qs[32]; } blk_q8_0;                   /* x = d*q */
typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; } blk_q2_K;
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; } blk_q3_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } blk_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } blk_q5_K;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } blk_q6_K;
typedef struct { float d; int8_t qs[256]; int16_t bsums[16]; } blk_q8_K;  /* bsums: sums of 16 qs */
typedef struct { uint16_t d; uint8_t qs[16]; } blk_iq4_nl;
typedef struct { uint16_t d; uint16_t scales_h; uint8_t scales_l[4]; uint8_t qs[128]; } blk_iq4_xs;

/* Row-interleaved forms (quant_repack.c): one 256-element block of 8 consecutive rows,
 * same bytes as the 8 GGUF blocks. Vectors of 32 bytes hold 4 bytes of each row (32-bit
 * lane r = row r), so one vector serves 8 rows and an 8-row result is one vector.
 *   Q4_K/Q5_K: qs vector v = 8*j2 + m (j2 < 4, m < 8), byte 4r+t = row r's qs[32*j2 + 4m + t]
 *     (low nibble: element 64*j2 + 4m + t, sub-block 2*j2; high: + 32, sub-block 2*j2 + 1).
 *     Scales/mins of sub-block j, row r: 4-bit lows in scl[K8_SIDX(j, r)] (scale low nibble,
 *     min high nibble), 2-bit highs in sch[K8_SIDX(j & 3, r)] at bits 0-1 (scale) and 2-3
 *     (min) for j < 4, bits 4-5 and 6-7 for j >= 4.
 *     Q5_K: qh vector w (w < 8), byte 4r+t, bits 2p / 2p+1: 5th bit of the low / high element
 *     of qs vector 4w + p.
 *   Q6_K: ql vector v (v < 32, at q + q6r8_ql(v)), byte 4r+t: low 4 bits of row r's element
 *     4v+t (low nibble) and 4(v+32)+t (high nibble); qh vector u (u < 16, at q + q6r8_qh(u)),
 *     byte 4r+t, bits 2s..2s+1: high 2 bits of element 4(u+16s)+t; sc[K8_SIDX(j, r)]: scale of
 *     16-element sub-block j. */
/*   Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 (32-element blocks, 8 * the GGUF block size): d[8] (fp16), then
 *     m[8] (Q4_1/Q5_1), then qh[32] (Q5_0/Q5_1: byte 4r+t, bit e = 5th bit of row r's element
 *     4e+t), then the quants: nibble types 4 vectors, vector v byte 4r+t = row r's qs[4v+t]
 *     (low nibble: element 4v+t, high: 16+4v+t); Q8_0 8 vectors, vector e byte 4r+t = row r's
 *     qs[4e+t]. */
#define K8_SIDX(j, r) ((((j) >> 2) << 5) | (((r) >> 2) << 4) | (((j) & 3) << 2) | ((r) & 3))
typedef struct { uint16_t d[8], dmin[8]; uint8_t scl[64]; uint8_t sch[32]; uint8_t qs[1024]; } blk_q4_K_r8;
typedef struct {
    uint16_t d[8], dmin[8];
    uint8_t scl[64];
    uint8_t sch[32];
    uint8_t qh[256];
    uint8_t qs[1024];
} blk_q5_K_r8;
typedef struct { uint16_t d[8]; int8_t sc[128]; uint8_t q[1536]; } blk_q6_K_r8;
/*   Q6_K's ql and qh vectors share q[] in the order the kernels first touch them: 64-byte pairs
 *     ql 2p, 2p + 1 then qh 2p, 2p + 1 for p < 8, then ql 16..31. The kernels walk the ql
 *     vectors in order and the qh vectors twice over, so every cache line of a block is first
 *     read after the lines before it: the hardware prefetchers follow one rising stream (with ql
 *     and qh as two regions, Zen 4 streamed the access pattern alone at 21.7 GB/s against 31). */
static inline size_t q6r8_ql(int v) { return v < 16 ? (size_t)(128 * (v >> 1) + 32 * (v & 1)) : (size_t)(32 * v + 512); }
static inline size_t q6r8_qh(int u) { return (size_t)(128 * (u >> 1) + 64 + 32 * (u & 1)); }
/*   Q3_K (fast kernels only): u = low 2 bits | high bit << 2 (0..7; the value is u - 4) and the
 *     6-bit scales s (value s - 32). qs vector v (v < 16), byte 4r+t, bits 2k..2k+1: low bits of
 *     row r's element 4(v+16k)+t; hm vector w (w < 8), byte 4r+t, bit b: high bit of element
 *     4(w+8b)+t; scl[K8_SIDX(j & 7, r)]: low 4 bits of s[j] (low nibble for j < 8, high for
 *     j >= 8); sch[K8_SIDX(j & 3, r)] bits 2(j/4)..2(j/4)+1: its high 2 bits. */
typedef struct { uint16_t d[8]; uint8_t scl[64]; uint8_t sch[32]; uint8_t qs[512]; uint8_t hm[256]; } blk_q3_K_r8;
/*   Q2_K (fast kernels only): d[8], dmin[8]; sc[K8_SIDX(j & 3, r) + 32 * (j / 4)]: row r's scale
 *     byte of sub-block j (scale low nibble, min high nibble); qs as Q3_K's (2-bit quants). */
typedef struct { uint16_t d[8], dmin[8]; uint8_t sc[128]; uint8_t qs[512]; } blk_q2_K_r8;
/*   IQ4_XS (fast kernels only): d[8]; the 6-bit sub-block scales ls[ib] (8 per row): low 4 bits in
 *     scl[K8_SIDX(ib & 3, r)] (low nibble for ib < 4, high for ib >= 4), high 2 bits in sch: position
 *     p = K8_SIDX(ib & 3, r) has a nibble, byte p / 2 (low nibble for even p), bits 0-1 for ib < 4,
 *     2-3 for ib >= 4; qs vector 4 ib + m (m < 4), byte 4r+t = row r's qs[16 ib + 4m + t] (low
 *     nibble: element 32 ib + 4m + t, high: + 16). */
typedef struct { uint16_t d[8]; uint8_t scl[32]; uint8_t sch[16]; uint8_t qs[1024]; } blk_iq4_xs_r8;
_Static_assert(sizeof(blk_q4_K_r8) == 8 * 144, "q4_K_r8");
_Static_assert(sizeof(blk_q5_K_r8) == 8 * 176, "q5_K_r8");
_Static_assert(sizeof(blk_q6_K_r8) == 8 * 210, "q6_K_r8");
_Static_assert(sizeof(blk_q3_K_r8) == 8 * 110, "q3_K_r8");
_Static_assert(sizeof(blk_q2_K_r8) == 8 * 84, "q2_K_r8");
_Static_assert(sizeof(blk_iq4_xs_r8) == 8 * 136, "iq4_xs_r8");

_Static_assert(sizeof(blk_q4_0) == 18, "q4_0");
_Static_assert(sizeof(blk_q4_1) == 20, "q4_1");
_Static_assert(sizeof(blk_q5_0) == 22, "q5_0");
_Static_assert(sizeof(blk_q5_1) == 24, "q5_1");
_Static_assert(sizeof(blk_q8_0) == 34, "q8_0");
_Static_assert(sizeof(blk_q2_K) == 84, "q2_K");
_Static_assert(sizeof(blk_q3_K) == 110, "q3_K");
_Static_assert(sizeof(blk_q4_K) == 144, "q4_K");
_Static_assert(sizeof(blk_q5_K) == 176, "q5_K");
_Static_assert(sizeof(blk_q6_K) == 210, "q6_K");
_Static_assert(sizeof(blk_q8_K) == 292, "q8_K");
_Static_assert(sizeof(blk_iq4_nl) == 18, "iq4_nl");
_Static_assert(sizeof(blk_iq4_xs) == 136, "iq4_xs");

/* The 16 non-linear levels of IQ4_NL / IQ4_XS. */
extern const int8_t quant_iq4nl_values[16];

/* Unpack the 12 packed 6-bit scales/mins of Q4_K/Q5_K into sc[8] and mn[8]. */
static inline void quant_k4_scales(const uint8_t *q, uint8_t *sc, uint8_t *mn) {
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        mn[j] = q[j + 4] & 63;
        sc[j + 4] = (uint8_t)((q[j + 8] & 0xF) | ((q[j] >> 6) << 4));
        mn[j + 4] = (uint8_t)((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
    }
}

/* Kernel: y[c*y_stride + r] = dot(row r, column c) for r < nr, c < nc.
 * W points at the first row (row stride w_stride bytes), xq at column 0
 * (column stride xq_stride bytes), y at the first row's output. k is a
 * positive multiple of the weight's block size (checked by the caller). */
typedef void (*quant_mm_fn)(const void *W, size_t w_stride, int64_t k, int64_t nr, const void *xq,
                            size_t xq_stride, int64_t nc, float *y, int64_t y_stride);

/* Scalar reference kernel for any dequantizable weight type (quant_ref.c). */
void quant_ref_matmul(uint32_t wtype, const void *W, size_t w_stride, int64_t k, int64_t nr,
                      const void *xq, size_t xq_stride, int64_t nc, float *y, int64_t y_stride);

/* AVX2 kernels for wtype, or NULL (quant_*_avx2.c; quant_r8_avx2.c for the R8 types). */
quant_mm_fn quant_avx2_kernel(uint32_t wtype);
quant_mm_fn quant_avx2_kernel_r8(uint32_t wtype);
quant_mm_fn quant_avx2_kernel_r8b(uint32_t wtype); /* 32-element block types (quant_r8b_avx2.c) */
/* AVX-512 VNNI kernels of the fast R8 types (quant_r8_vnni_avx512.c); NULL where none. */
quant_mm_fn quant_vnni_kernel_r8(uint32_t wtype);

/* Scalar kernel for an R8 type (quant_repack.c): each 8-row group unpacked to the GGUF
 * layout, then quant_ref_matmul. nr a multiple of 8, W at a group. */
void quant_ref_matmul_r8(uint32_t wtype, const void *W, size_t w_stride, int64_t k, int64_t nr, const void *xq,
                         size_t xq_stride, int64_t nc, float *y, int64_t y_stride);

/* Row converters: decode nb blocks (elements, for the float types) from src
 * into y / encode nb blocks of x into dst. The scalar ones (quant_ref.c) for
 * every type quant_can_dequant()/quant_can_quantize() accept; the AVX2 ones
 * (quant_cvt_avx2.c, NULL where none) produce bit-identical output. */
typedef void (*quant_dq_fn)(const void *src, float *y, int64_t nb);
typedef void (*quant_qz_fn)(const float *x, void *dst, int64_t nb);
quant_dq_fn quant_ref_dq(uint32_t type);
quant_qz_fn quant_ref_qz(uint32_t type);
quant_dq_fn quant_avx2_dq(uint32_t type);
quant_qz_fn quant_avx2_qz(uint32_t type);

#endif
