/*
 * quant_cvt_avx2.c — AVX2 row converters: quantization of activations / KV
 * rows (F16, Q8_0, Q8_K) and dequantization of the types the forward pass
 * decodes row by row (F16 BF16 KV caches and embeddings, Q4_0 Q8_0 KV caches,
 * Q4_K Q6_K embeddings).
 *
 * Every converter is bit-identical to its scalar reference in quant_ref.c,
 * including the rounding (Q8_0: roundf, half away from zero; Q8_K: lrintf,
 * half to even), the NaN handling (NaNs ignored by the block maximum, a NaN
 * element encodes as 0) and the order of float operations (products are kept
 * out of FMA contraction with q_nofma).
 */
#include <string.h>

#include "quant/quant_avx2.h"

/* An optimisation barrier: the compiler may not fuse v into a following add. */
Q_INLINE __m256 q_nofma(__m256 v) {
    __asm__("" : "+x"(v));
    return v;
}

Q_INLINE __m256 q_abs(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

Q_INLINE float q_hmax256(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* max |x[j]| over n (a multiple of 8) floats, NaNs ignored like fmaxf: vmaxps
 * returns its second operand when either is NaN. */
Q_INLINE float q_amax(const float *x, int n) {
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) m = _mm256_max_ps(q_abs(_mm256_loadu_ps(x + j)), m);
    return q_hmax256(m);
}

/* 32 int32 (4 vectors, element order) -> 32 bytes in element order. TRUNC:
 * keep the low byte of each (what the scalar (int8_t) conversion does, also
 * for the out-of-range NaN result 0x80000000); else the values must already
 * be in [-128, 127]. */
Q_INLINE __m256i q_pack32(__m256i a, __m256i b, __m256i c, __m256i d, const bool trunc) {
    if (trunc) {
        const __m256i ff = _mm256_set1_epi32(0xFF);
        a = _mm256_and_si256(a, ff), b = _mm256_and_si256(b, ff);
        c = _mm256_and_si256(c, ff), d = _mm256_and_si256(d, ff);
        const __m256i ab = _mm256_packus_epi32(a, b), cd = _mm256_packus_epi32(c, d);
        const __m256i v = _mm256_packus_epi16(ab, cd);
        return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    }
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    const __m256i v = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* roundf (half away from zero) of 8 floats, as int32; exact for all floats
 * (|v| >= 2^23 are integers already). */
Q_INLINE __m256i q_roundf(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 half = _mm256_cmp_ps(q_abs(_mm256_sub_ps(v, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, _mm256_set1_ps(-0.0f)));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(half, one)));
}

/* ---- quantization ------------------------------------------------------------------------ */

static void qz_q8_0(const float *x, void *dst, int64_t nb) {
    blk_q8_0 *b = dst;
    for (int64_t i = 0; i < nb; i++, b++, x += 32) {
        const float amax = q_amax(x, 32);
        const float d = amax / 127.f, id = d ? 1.f / d : 0.f;
        b->d = mr_fp32_to_fp16(d);
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int j = 0; j < 4; j++) q[j] = q_roundf(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), vid));
        _mm256_storeu_si256((__m256i *)b->qs, q_pack32(q[0], q[1], q[2], q[3], true));
    }
}

/* Sums of 16 consecutive int8 of v (32 bytes) -> 2 int16 in bits 0..31 of the result. */
Q_INLINE uint32_t q_bsums2(__m256i v) {
    const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), v), _mm256_set1_epi16(1));
    __m256i h = _mm256_hadd_epi32(s, s); /* per lane: [s0+s1, s2+s3, ...] */
    h = _mm256_hadd_epi32(h, h);         /* per lane: the lane's 16-byte sum */
    const uint32_t lo = (uint32_t)_mm256_extract_epi32(h, 0), hi = (uint32_t)_mm256_extract_epi32(h, 4);
    return (lo & 0xFFFF) | (hi << 16);
}

static void qz_q8_K(const float *x, void *dst, int64_t nb) {
    blk_q8_K *b = dst;
    for (int64_t i = 0; i < nb; i++, b++, x += 256) {
        const float amax = q_amax(x, 256);
        if (!(amax > 0)) {
            memset(b, 0, sizeof *b);
            continue;
        }
        const float iscale = 127.f / amax;
        const __m256 vis = _mm256_set1_ps(iscale);
        const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
        uint32_t bs[8];
        for (int g = 0; g < 8; g++) {
            __m256i q[4];
            for (int j = 0; j < 4; j++) {
                __m256 p = _mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 8 * j), vis);
                p = _mm256_and_ps(p, _mm256_cmp_ps(p, p, _CMP_ORD_Q)); /* NaN -> 0, as (int)lrintf does */
                q[j] = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(p), lo), hi);
            }
            const __m256i v = q_pack32(q[0], q[1], q[2], q[3], false);
            _mm256_storeu_si256((__m256i *)(b->qs + 32 * g), v);
            bs[g] = q_bsums2(v);
        }
        memcpy(b->bsums, bs, sizeof bs);
        b->d = 1.f / iscale;
    }
}

/* F16: vcvtps2ph rounds to nearest even like mr_fp32_to_fp16; NaNs (whose
 * payload bits may differ) are re-encoded by the scalar routine. */
static void qz_f16(const float *x, void *dst, int64_t n) {
    uint16_t *o = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        _mm_storeu_si128((__m128i *)(o + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)))
            for (int j = 0; j < 8; j++) o[i + j] = mr_fp32_to_fp16(x[i + j]);
    }
    for (; i < n; i++) o[i] = mr_fp32_to_fp16(x[i]);
}

quant_qz_fn quant_avx2_qz(uint32_t type) {
    switch (type) {
    case MR_TYPE_F16: return qz_f16;
    case MR_TYPE_Q8_0: return qz_q8_0;
    case MR_TYPE_Q8_K: return qz_q8_K;
    default: return NULL;
    }
}

/* ---- dequantization ---------------------------------------------------------------------- */

/* F16 -> F32 is exact in vcvtph2ps, NaNs included (quiet NaNs keep their payload). */
static void dq_f16(const void *src, float *y, int64_t n) {
    const uint16_t *s = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    for (; i < n; i++) y[i] = mr_fp16_to_fp32(s[i]);
}

static void dq_bf16(const void *src, float *y, int64_t n) {
    const uint16_t *s = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + i)));
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_slli_epi32(h, 16));
    }
    for (; i < n; i++) y[i] = mr_bf16_to_fp32(s[i]);
}

/* 32 int8 (element order) times d into y[0..31]. */
Q_INLINE void q_store_scaled(float *y, __m256i q, __m256 d) {
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
}

static void dq_q8_0(const void *src, float *y, int64_t nb) {
    const blk_q8_0 *b = src;
    for (int64_t i = 0; i < nb; i++, b++, y += 32)
        q_store_scaled(y, _mm256_loadu_si256((const __m256i *)b->qs), _mm256_set1_ps(q_h2f(b->d)));
}

static void dq_q4_0(const void *src, float *y, int64_t nb) {
    const blk_q4_0 *b = src;
    for (int64_t i = 0; i < nb; i++, b++, y += 32) {
        const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b->qs));
        const __m256i q = _mm256_and_si256(_mm256_srlv_epi64(t, _mm256_set_epi64x(4, 4, 0, 0)), _mm256_set1_epi8(0x0F));
        q_store_scaled(y, _mm256_sub_epi8(q, _mm256_set1_epi8(8)), _mm256_set1_ps(q_h2f(b->d)));
    }
}

/* 8 consecutive unsigned bytes at p as floats. */
Q_INLINE __m256 q_u8x8(const uint8_t *p) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p))); }

static void dq_q4_K(const void *src, float *y, int64_t nb) {
    const blk_q4_K *b = src;
    for (int64_t i = 0; i < nb; i++, b++) {
        const float d = q_h2f(b->d), dmin = q_h2f(b->dmin);
        uint8_t sc[8], mn[8];
        quant_k4_scales(b->scales, sc, mn);
        const uint8_t *q = b->qs;
        for (int j = 0; j < 4; j++, q += 32) {
            /* unpack the 32 bytes into 64 nibbles: lo (elements 0..31), hi (32..63) */
            uint8_t u[64];
            const __m256i v = _mm256_loadu_si256((const __m256i *)q);
            _mm256_storeu_si256((__m256i *)u, _mm256_and_si256(v, _mm256_set1_epi8(0x0F)));
            _mm256_storeu_si256((__m256i *)(u + 32),
                                _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F)));
            for (int h = 0; h < 2; h++) {
                const __m256 d1 = _mm256_set1_ps(d * sc[2 * j + h]), m1 = _mm256_set1_ps(dmin * mn[2 * j + h]);
                for (int l = 0; l < 32; l += 8)
                    _mm256_storeu_ps(y + l, _mm256_sub_ps(q_nofma(_mm256_mul_ps(d1, q_u8x8(u + 32 * h + l))), m1));
                y += 32;
            }
        }
    }
}

/* Q6_K: y = (d * sc) * q with q = 6-bit - 32 (the scalar's order of products). */
static void dq_q6_K(const void *src, float *y, int64_t nb) {
    const blk_q6_K *b = src;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), o32 = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < nb; i++, b++) {
        const float d = q_h2f(b->d);
        for (int half = 0; half < 2; half++, y += 128) {
            const uint8_t *ql = b->ql + 64 * half, *qh = b->qh + 32 * half;
            const int8_t *sc = b->scales + 8 * half;
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
            __m256i g[4];
            g[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
            g[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
            g[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m30));
            g[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
            for (int k = 0; k < 4; k++) {
                /* elements 32k + l: scale sc[2k] for l < 16, sc[2k+1] for l >= 16 */
                const __m256i q = _mm256_sub_epi8(g[k], o32);
                const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
                const __m256 s0 = _mm256_set1_ps(d * sc[2 * k]), s1 = _mm256_set1_ps(d * sc[2 * k + 1]);
                float *yk = y + 32 * k;
                _mm256_storeu_ps(yk, _mm256_mul_ps(s0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
                _mm256_storeu_ps(yk + 8, _mm256_mul_ps(s0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
                _mm256_storeu_ps(yk + 16, _mm256_mul_ps(s1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
                _mm256_storeu_ps(yk + 24, _mm256_mul_ps(s1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
            }
        }
    }
}

quant_dq_fn quant_avx2_dq(uint32_t type) {
    switch (type) {
    case MR_TYPE_F16: return dq_f16;
    case MR_TYPE_BF16: return dq_bf16;
    case MR_TYPE_Q4_0: return dq_q4_0;
    case MR_TYPE_Q8_0: return dq_q8_0;
    case MR_TYPE_Q4_K: return dq_q4_K;
    case MR_TYPE_Q6_K: return dq_q6_K;
    default: return NULL;
    }
}
