/*
 * quant_ref.c — scalar reference: dequantization of every supported block
 * type, the quantizers (F32 F16 BF16 Q8_0 Q8_K Q4_0), and the portable matmul
 * kernel (dequantize a chunk of the weight row and of each activation column,
 * multiply in float). The SIMD kernels are tested against this.
 */
#include <math.h>
#include <string.h>

#include "base/base.h"
#include "quant/quant_impl.h"

const int8_t quant_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                       1,    13,   25,  38,  53,  69,  89,  113};

static inline float h2f(uint16_t h) { return mr_fp16_to_fp32(h); }

/* ---- dequantization: nb blocks from src to y ------------------------------------ */

static void dq_f32(const void *src, float *y, int64_t n) { memcpy(y, src, (size_t)n * 4); }

static void dq_f16(const void *src, float *y, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) y[i] = h2f(s[i]);
}

static void dq_bf16(const void *src, float *y, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) y[i] = mr_bf16_to_fp32(s[i]);
}

static void dq_q4_0(const void *src, float *y, int64_t nb) {
    const blk_q4_0 *b = src;
    for (int64_t i = 0; i < nb; i++, b++, y += 32) {
        const float d = h2f(b->d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * ((b->qs[j] & 0xF) - 8);
            y[j + 16] = d * ((b->qs[j] >> 4) - 8);
        }
    }
}

static void dq_q4_1(const void *src, float *y, int64_t nb) {
    const blk_q4_1 *b = src;
    for (int64_t i = 0; i < nb; i++, b++, y += 32) {
        const float d = h2f(b->d), m = h2f(b->m);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (b->qs[j] & 0xF) + m;
            y[j + 16] = d * (b->qs[j] >> 4) + m;
        }
    }
}

/* Q5_0/Q5_1: the 5th bit of element j is bit j of the little-endian qh word. */
static void dq_q5_0(const void *src, float *y, int64_t nb) {
    const blk_q5_0 *b = src;
    for (int64_t i = 0; i < nb; i++, b++, y += 32) {
        const float d = h2f(b->d);
        uint32_t qh;
        memcpy(&qh, b->qh, 4);
        for (int j = 0; j < 16; j++) {
            int lo = (b->qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
            int hi = (b->qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = d * (lo - 16);
            y[j + 16] = d * (hi - 16);
        }
    }
}

static void dq_q5_1(const void *src, float *y, int64_t nb) {
    const blk_q5_1 *b = src;
    for (int64_t i = 0; i < nb; i++, b++, y += 32) {
        const float d = h2f(b->d), m = h2f(b->m);
        uint32_t qh;
        memcpy(&qh, b->qh, 4);
        for (int j = 0; j < 16; j++) {
            int lo = (b->qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
            int hi = (b->qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = d * lo + m;
            y[j + 16] = d * hi + m;
        }
    }
}

static void dq_q8_0(const void *src, float *y, int64_t nb) {
    const blk_q8_0 *b = src;
    for (int64_t i = 0; i < nb; i++, b++, y += 32) {
        const float d = h2f(b->d);
        for (int j = 0; j < 32; j++) y[j] = d * b->qs[j];
    }
}

/* Q2_K: 16 sub-blocks of 16; scales[s] low nibble = scale, high = min; 2-bit
 * quants, 4 per byte: byte l of a 32-byte group holds elements l, l+32, l+64,
 * l+96 of its 128-half in bits 0-1, 2-3, 4-5, 6-7. */
static void dq_q2_K(const void *src, float *y, int64_t nb) {
    const blk_q2_K *b = src;
    for (int64_t i = 0; i < nb; i++, b++) {
        const float d = h2f(b->d), dmin = h2f(b->dmin);
        const uint8_t *q = b->qs;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int g = 0; g < 2; g++) {
                    const uint8_t sc = b->scales[is++];
                    const float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * ((q[16 * g + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

/* Q3_K's 16 6-bit scales (biased by 32) packed in 12 bytes. */
static void q3k_scales(const uint8_t *p, int8_t *out) {
    for (int j = 0; j < 16; j++) {
        int lo = (j < 8) ? (p[j] & 0xF) : (p[j - 8] >> 4);
        int hi = (p[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

/* Q3_K: 2 low bits as in Q2_K; hmask bit clear means subtract 4. */
static void dq_q3_K(const void *src, float *y, int64_t nb) {
    const blk_q3_K *b = src;
    for (int64_t i = 0; i < nb; i++, b++) {
        const float d = h2f(b->d);
        int8_t sc[16];
        q3k_scales(b->scales, sc);
        const uint8_t *q = b->qs;
        uint8_t m = 1;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int g = 0; g < 2; g++) {
                    const float dl = d * sc[is++];
                    for (int l = 0; l < 16; l++) {
                        int v = ((q[16 * g + l] >> shift) & 3) - ((b->hmask[16 * g + l] & m) ? 0 : 4);
                        *y++ = dl * v;
                    }
                }
            }
        }
    }
}

static void dq_q4_K(const void *src, float *y, int64_t nb) {
    const blk_q4_K *b = src;
    for (int64_t i = 0; i < nb; i++, b++) {
        const float d = h2f(b->d), dmin = h2f(b->dmin);
        uint8_t sc[8], mn[8];
        quant_k4_scales(b->scales, sc, mn);
        const uint8_t *q = b->qs;
        for (int j = 0; j < 4; j++, q += 32) {
            const float d1 = d * sc[2 * j], m1 = dmin * mn[2 * j];
            const float d2 = d * sc[2 * j + 1], m2 = dmin * mn[2 * j + 1];
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

static void dq_q5_K(const void *src, float *y, int64_t nb) {
    const blk_q5_K *b = src;
    for (int64_t i = 0; i < nb; i++, b++) {
        const float d = h2f(b->d), dmin = h2f(b->dmin);
        uint8_t sc[8], mn[8];
        quant_k4_scales(b->scales, sc, mn);
        const uint8_t *q = b->qs;
        for (int j = 0; j < 4; j++, q += 32) {
            const float d1 = d * sc[2 * j], m1 = dmin * mn[2 * j];
            const float d2 = d * sc[2 * j + 1], m2 = dmin * mn[2 * j + 1];
            const uint8_t u1 = (uint8_t)(1u << (2 * j)), u2 = (uint8_t)(2u << (2 * j));
            for (int l = 0; l < 32; l++) *y++ = d1 * ((q[l] & 0xF) + ((b->qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * ((q[l] >> 4) + ((b->qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

/* Q6_K: per 128-half, byte l of ql[0..63] holds low nibbles of elements l and
 * l+64 (l < 32) / l and l+64 with l+32 offset; qh byte l holds the two high
 * bits of elements l, l+32, l+64, l+96. */
static void dq_q6_K(const void *src, float *y, int64_t nb) {
    const blk_q6_K *b = src;
    for (int64_t i = 0; i < nb; i++, b++) {
        const float d = h2f(b->d);
        const uint8_t *ql = b->ql, *qh = b->qh;
        const int8_t *sc = b->scales;
        for (int half = 0; half < 2; half++, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[is] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

static void dq_q8_K(const void *src, float *y, int64_t nb) {
    const blk_q8_K *b = src;
    for (int64_t i = 0; i < nb; i++, b++, y += 256)
        for (int j = 0; j < 256; j++) y[j] = b->d * b->qs[j];
}

static void dq_iq4_nl(const void *src, float *y, int64_t nb) {
    const blk_iq4_nl *b = src;
    for (int64_t i = 0; i < nb; i++, b++, y += 32) {
        const float d = h2f(b->d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * quant_iq4nl_values[b->qs[j] & 0xF];
            y[j + 16] = d * quant_iq4nl_values[b->qs[j] >> 4];
        }
    }
}

static void dq_iq4_xs(const void *src, float *y, int64_t nb) {
    const blk_iq4_xs *b = src;
    for (int64_t i = 0; i < nb; i++, b++) {
        const float d = h2f(b->d);
        const uint8_t *qs = b->qs;
        for (int ib = 0; ib < 8; ib++, qs += 16, y += 32) {
            int ls = ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b->scales_h >> (2 * ib)) & 3) << 4);
            const float dl = d * (ls - 32);
            for (int j = 0; j < 16; j++) {
                y[j] = dl * quant_iq4nl_values[qs[j] & 0xF];
                y[j + 16] = dl * quant_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

quant_dq_fn quant_ref_dq(uint32_t t) {
    switch (t) {
    case MR_TYPE_F32: return dq_f32;
    case MR_TYPE_F16: return dq_f16;
    case MR_TYPE_BF16: return dq_bf16;
    case MR_TYPE_Q4_0: return dq_q4_0;
    case MR_TYPE_Q4_1: return dq_q4_1;
    case MR_TYPE_Q5_0: return dq_q5_0;
    case MR_TYPE_Q5_1: return dq_q5_1;
    case MR_TYPE_Q8_0: return dq_q8_0;
    case MR_TYPE_Q2_K: return dq_q2_K;
    case MR_TYPE_Q3_K: return dq_q3_K;
    case MR_TYPE_Q4_K: return dq_q4_K;
    case MR_TYPE_Q5_K: return dq_q5_K;
    case MR_TYPE_Q6_K: return dq_q6_K;
    case MR_TYPE_Q8_K: return dq_q8_K;
    case MR_TYPE_IQ4_NL: return dq_iq4_nl;
    case MR_TYPE_IQ4_XS: return dq_iq4_xs;
    default: return NULL;
    }
}

bool quant_can_dequant(uint32_t type) { return quant_ref_dq(type) != NULL; }

/* ---- quantization ---------------------------------------------------------------- */

/* Round to nearest, ties to even (what ggml's nearest_int does). */
static inline int nearest_int(float f) { return (int)lrintf(f); }

static void qz_q8_0(const float *x, void *dst, int64_t nb) {
    blk_q8_0 *b = dst;
    for (int64_t i = 0; i < nb; i++, b++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.f, id = d ? 1.f / d : 0.f;
        b->d = mr_fp32_to_fp16(d);
        for (int j = 0; j < 32; j++) b->qs[j] = (int8_t)roundf(x[j] * id);
    }
}

static void qz_q8_K(const float *x, void *dst, int64_t nb) {
    blk_q8_K *b = dst;
    for (int64_t i = 0; i < nb; i++, b++, x += 256) {
        float amax = 0;
        for (int j = 0; j < 256; j++) amax = fmaxf(amax, fabsf(x[j]));
        if (!(amax > 0)) { /* zero block (or NaNs: treat as zero rather than poison) */
            memset(b, 0, sizeof *b);
            continue;
        }
        const float iscale = 127.f / amax;
        for (int j = 0; j < 256; j++) {
            int v = nearest_int(iscale * x[j]);
            b->qs[j] = (int8_t)MR_MAX(-127, MR_MIN(127, v));
        }
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += b->qs[16 * g + l];
            b->bsums[g] = (int16_t)s;
        }
        b->d = 1.f / iscale;
    }
}

static void qz_q4_0(const float *x, void *dst, int64_t nb) {
    blk_q4_0 *b = dst;
    for (int64_t i = 0; i < nb; i++, b++, x += 32) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -8.f, id = d ? 1.f / d : 0.f;
        b->d = mr_fp32_to_fp16(d);
        for (int j = 0; j < 16; j++) {
            int lo = MR_MIN(15, (int)(x[j] * id + 8.5f));
            int hi = MR_MIN(15, (int)(x[j + 16] * id + 8.5f));
            lo = MR_MAX(0, lo), hi = MR_MAX(0, hi);
            b->qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static void qz_f32(const float *x, void *dst, int64_t n) { memcpy(dst, x, (size_t)n * 4); }

static void qz_f16(const float *x, void *dst, int64_t n) {
    uint16_t *o = dst;
    for (int64_t i = 0; i < n; i++) o[i] = mr_fp32_to_fp16(x[i]);
}

static void qz_bf16(const float *x, void *dst, int64_t n) {
    uint16_t *o = dst;
    for (int64_t i = 0; i < n; i++) o[i] = mr_fp32_to_bf16(x[i]);
}

quant_qz_fn quant_ref_qz(uint32_t type) {
    switch (type) {
    case MR_TYPE_F32: return qz_f32;
    case MR_TYPE_F16: return qz_f16;
    case MR_TYPE_BF16: return qz_bf16;
    case MR_TYPE_Q8_0: return qz_q8_0;
    case MR_TYPE_Q8_K: return qz_q8_K;
    case MR_TYPE_Q4_0: return qz_q4_0;
    default: return NULL;
    }
}

bool quant_can_quantize(uint32_t type) { return quant_ref_qz(type) != NULL; }

/* ---- scalar matmul ----------------------------------------------------------------- */

#define REF_CHUNK 256 /* elements dequantized at a time (a multiple of every block size) */
#define REF_COLS 8    /* columns accumulated together */
#define REF_ROWS 4    /* rows sharing one dequantized activation chunk */

/* Dot of n floats in double, 4 independent partial sums (n a multiple of 4
 * except for float weights, handled by the tail loop). */
static double dot_f64(const float *a, const float *b, int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        s0 += (double)a[j] * b[j];
        s1 += (double)a[j + 1] * b[j + 1];
        s2 += (double)a[j + 2] * b[j + 2];
        s3 += (double)a[j + 3] * b[j + 3];
    }
    for (; j < n; j++) s0 += (double)a[j] * b[j];
    return (s0 + s1) + (s2 + s3);
}

/* Reference kernel: for a tile of up to REF_ROWS rows x REF_COLS columns,
 * dequantize REF_CHUNK activations of each column and REF_CHUNK weights of
 * each row, multiply in double. Slow but the numerical yardstick (and the
 * fallback for types without a SIMD kernel). */
void quant_ref_matmul(uint32_t wtype, const void *W, size_t w_stride, int64_t k, int64_t nr,
                      const void *xq, size_t xq_stride, int64_t nc, float *y, int64_t y_stride) {
    const uint32_t vt = quant_vec_dot_type(wtype);
    const mr_type_traits *wt = mr_type_get(wtype), *xt = mr_type_get(vt);
    const quant_dq_fn wdq = quant_ref_dq(wtype), xdq = quant_ref_dq(vt);
    float wbuf[REF_CHUNK], xbuf[REF_COLS][REF_CHUNK];
    for (int64_t c0 = 0; c0 < nc; c0 += REF_COLS) {
        const int ncb = (int)MR_MIN(REF_COLS, nc - c0);
        for (int64_t r0 = 0; r0 < nr; r0 += REF_ROWS) {
            const int nrb = (int)MR_MIN(REF_ROWS, nr - r0);
            double acc[REF_ROWS][REF_COLS] = {{0}};
            for (int64_t i0 = 0; i0 < k; i0 += REF_CHUNK) {
                /* n is a multiple of both block sizes (k is, and REF_CHUNK is) */
                const int64_t n = MR_MIN(REF_CHUNK, k - i0);
                for (int c = 0; c < ncb; c++) {
                    const char *xrow = (const char *)xq + (size_t)(c0 + c) * xq_stride;
                    xdq(xrow + (size_t)(i0 / xt->blck) * xt->tsize, xbuf[c], n / xt->blck);
                }
                for (int r = 0; r < nrb; r++) {
                    const char *wrow = (const char *)W + (size_t)(r0 + r) * w_stride;
                    wdq(wrow + (size_t)(i0 / wt->blck) * wt->tsize, wbuf, n / wt->blck);
                    for (int c = 0; c < ncb; c++) acc[r][c] += dot_f64(wbuf, xbuf[c], n);
                }
            }
            for (int r = 0; r < nrb; r++)
                for (int c = 0; c < ncb; c++) y[(c0 + c) * y_stride + r0 + r] = (float)acc[r][c];
        }
    }
}
