/*
 * attn_avx2.c — AVX2/F16C flash attention over an f16 K/V cache (the default
 * cache type): one pass over the visible cells in blocks, each K and V row
 * converted to f32 once and used by all g query heads that share it (GQA).
 *
 * Same algorithms and mask as attn.c (standard: exact softmax, probabilities
 * rounded to f16; flash: online softmax per block, f32 accumulation of V);
 * K and V rows of a block of cells are converted to f32 once, scores are
 * computed 4 cells at a time per head, and each head's output stays in
 * registers while a block's V rows are added. Dot products are summed in 8
 * lanes, so results differ from the scalar-kernel path by float rounding only.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "cpu/attn.h"
#include "cpu/attn_simd.h"

#define FB CPU_ATTN_SIMD_BLK /* cells per online-softmax block */

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* e^x for 8 lanes (Cephes polynomial, ~1 ulp; x <= -88 gives ~0, callers
 * mask -inf themselves). */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    const __m256 fx = _mm256_round_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)),
                                      _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* sj[i] = (sj[i] == -inf) ? 0 : e^(sj[i] - mx) for i < n; returns their sum,
 * added in cell order (as attn.c: the result must not depend on where the
 * visible cells sit in the cache, e.g. interleaved with other sequences). */
static double exp_row(float *sj, int n, float mx) {
    const __m256 mv = _mm256_set1_ps(mx), ninf = _mm256_set1_ps(-INFINITY);
    for (int i = 0; i < n; i += 8) {
        float tmp[8];
        const int k = n - i < 8 ? n - i : 8;
        for (int t = 0; t < 8; t++) tmp[t] = t < k ? sj[i + t] : -INFINITY;
        const __m256 v = _mm256_loadu_ps(tmp);
        _mm256_storeu_ps(tmp, _mm256_andnot_ps(_mm256_cmp_ps(v, ninf, _CMP_EQ_OQ), exp8(_mm256_sub_ps(v, mv))));
        for (int t = 0; t < k; t++) sj[i + t] = tmp[t];
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += sj[i];
    return sum;
}

static inline void f16_to_f32(const uint16_t *src, float *dst, int n) {
    for (int i = 0; i < n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
}

static inline bool visible(const cpu_attn_args *a, int c, int32_t pos, int seq) {
    const int32_t cp = a->cell_pos[c];
    if (cp < 0 || cp > pos || !((a->cell_seq[c] >> seq) & 1)) return false;
    if (a->n_swa > 0 && pos - cp >= a->n_swa) return false;
    return true;
}

bool cpu_attn_f16_ok(const cpu_attn_args *a) {
    const int g = a->n_head / a->n_head_kv;
    return !a->ref && !a->v_in_k && a->k_type == MR_TYPE_F16 && a->v_type == MR_TYPE_F16 &&
           a->dk % 8 == 0 && a->dv % 8 == 0 && a->dk <= 512 && a->dv <= 512 && g <= CPU_ATTN_SIMD_MAX_G;
}

/* Scores of the g heads against cells [c0, c1) (c1 - c0 <= CPU_ATTN_SIMD_BLK)
 * into s[j*ld + (c - c0)] (-inf for invisible cells). The block's K rows are
 * converted to f32 once (kb), then each head's query is dotted with 4 rows at
 * a time (4 accumulators, one horizontal reduction for the 4). */
static void scores_f16(const cpu_attn_args *a, const uint8_t *Kh, const float *q, int g, int32_t pos, int seq, int c0,
                       int c1, float *s, size_t ld, float *kb) {
    const int dk = a->dk, n = c1 - c0;
    const size_t krb = (size_t)dk * 2;
    for (int c = 0; c < n; c++) f16_to_f32((const uint16_t *)(Kh + (size_t)(c0 + c) * krb), kb + (size_t)c * dk, dk);
    for (int j = 0; j < g; j++) {
        const float *qj = q + (size_t)j * dk;
        float *sj = s + (size_t)j * ld;
        int c = 0;
        for (; c + 4 <= n; c += 4) {
            const float *k0 = kb + (size_t)c * dk, *k1 = k0 + dk, *k2 = k1 + dk, *k3 = k2 + dk;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
                   a3 = _mm256_setzero_ps();
            for (int i = 0; i < dk; i += 8) {
                const __m256 qv = _mm256_loadu_ps(qj + i);
                a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + i), a0);
                a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + i), a1);
                a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + i), a2);
                a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + i), a3);
            }
            /* (a0..a3) -> 4 sums */
            const __m256 h01 = _mm256_hadd_ps(a0, a1), h23 = _mm256_hadd_ps(a2, a3);
            const __m256 h = _mm256_hadd_ps(h01, h23);
            const __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            _mm_storeu_ps(sj + c, r);
        }
        for (; c < n; c++) {
            /* the same lane order as a group of 4, so a cell's score does not depend on its group */
            const float *kr = kb + (size_t)c * dk;
            __m256 acc = _mm256_setzero_ps();
            for (int i = 0; i < dk; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(qj + i), _mm256_loadu_ps(kr + i), acc);
            const __m256 z = _mm256_setzero_ps(), h = _mm256_hadd_ps(_mm256_hadd_ps(acc, z), z);
            sj[c] = _mm_cvtss_f32(_mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
        }
        for (c = 0; c < n; c++) {
            float v = sj[c] * a->scale;
            if (a->softcap > 0.0f) v = a->softcap * tanhf(v / a->softcap);
            sj[c] = visible(a, c0 + c, pos, seq) ? v : -INFINITY;
        }
    }
}

/* out[j] += sum over cells c in [c0, c1) of p[j*ld + c - c0] * V[c]: the
 * block's V rows converted to f32 once (vb), each head's output kept in
 * registers 64 floats at a time while the block's cells are added. */
static void vacc_f16(const cpu_attn_args *a, const uint8_t *Vh, int g, int c0, int c1, const float *p, size_t ld,
                     float *out, float *vb) {
    const int dv = a->dv, n = c1 - c0;
    const size_t vrb = (size_t)dv * 2;
    bool conv = false;
    for (int j = 0; j < g; j++) {
        const float *pj = p + (size_t)j * ld;
        bool any = false;
        for (int c = 0; c < n && !any; c++) any = pj[c] != 0.0f;
        if (!any) continue;
        if (!conv) {
            for (int c = 0; c < n; c++) f16_to_f32((const uint16_t *)(Vh + (size_t)(c0 + c) * vrb), vb + (size_t)c * dv, dv);
            conv = true;
        }
        float *o = out + (size_t)j * dv;
        int i = 0;
        for (; i + 64 <= dv; i += 64) {
            __m256 o0 = _mm256_loadu_ps(o + i), o1 = _mm256_loadu_ps(o + i + 8), o2 = _mm256_loadu_ps(o + i + 16),
                   o3 = _mm256_loadu_ps(o + i + 24), o4 = _mm256_loadu_ps(o + i + 32), o5 = _mm256_loadu_ps(o + i + 40),
                   o6 = _mm256_loadu_ps(o + i + 48), o7 = _mm256_loadu_ps(o + i + 56);
            for (int c = 0; c < n; c++) {
                if (pj[c] == 0.0f) continue;
                const __m256 pv = _mm256_set1_ps(pj[c]);
                const float *v = vb + (size_t)c * dv + i;
                o0 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v), o0);
                o1 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 8), o1);
                o2 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 16), o2);
                o3 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 24), o3);
                o4 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 32), o4);
                o5 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 40), o5);
                o6 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 48), o6);
                o7 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 56), o7);
            }
            _mm256_storeu_ps(o + i, o0), _mm256_storeu_ps(o + i + 8, o1), _mm256_storeu_ps(o + i + 16, o2);
            _mm256_storeu_ps(o + i + 24, o3), _mm256_storeu_ps(o + i + 32, o4), _mm256_storeu_ps(o + i + 40, o5);
            _mm256_storeu_ps(o + i + 48, o6), _mm256_storeu_ps(o + i + 56, o7);
        }
        for (; i < dv; i += 8) {
            __m256 ov = _mm256_loadu_ps(o + i);
            for (int c = 0; c < n; c++)
                if (pj[c] != 0.0f) ov = _mm256_fmadd_ps(_mm256_set1_ps(pj[c]), _mm256_loadu_ps(vb + (size_t)c * dv + i), ov);
            _mm256_storeu_ps(o + i, ov);
        }
    }
}

void cpu_attn_std_f16_avx2(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, int seq, int lo, int hi,
                           float *out, float *scratch, float *ext) {
    const int g = a->n_head / a->n_head_kv, dk = a->dk, dv = a->dv, n = hi - lo;
    const uint8_t *Kh = a->K + (size_t)kvh * a->n_ctx * (size_t)dk * 2;
    const uint8_t *Vh = a->V + (size_t)kvh * a->n_ctx * (size_t)dv * 2;
    float *s = scratch;                   /* (g, n) */
    float *blk = ext; /* CPU_ATTN_SIMD_BLK rows of f32 */
    (void)dk;
    memset(out, 0, sizeof(float) * (size_t)g * dv);
    for (int c0 = lo; c0 < hi; c0 += CPU_ATTN_SIMD_BLK) {
        const int c1 = c0 + CPU_ATTN_SIMD_BLK < hi ? c0 + CPU_ATTN_SIMD_BLK : hi;
        scores_f16(a, Kh, q, g, pos, seq, c0, c1, s + (c0 - lo), (size_t)n, blk);
    }
    /* exact softmax per head (as attn.c's standard path), probabilities rounded to f16 as ggml */
    for (int j = 0; j < g; j++) {
        float *sj = s + (size_t)j * n, mx = -INFINITY;
        for (int i = 0; i < n; i++) mx = sj[i] > mx ? sj[i] : mx;
        if (mx == -INFINITY) { /* nothing visible for this head (cannot happen inside [lo, hi)) */
            memset(sj, 0, sizeof(float) * (size_t)n);
            continue;
        }
        const float inv = (float)(1.0 / exp_row(sj, n, mx));
        for (int i = 0; i < n; i++) sj[i] = _cvtsh_ss(_cvtss_sh(sj[i] * inv, 0));
    }
    for (int c0 = lo; c0 < hi; c0 += CPU_ATTN_SIMD_BLK) {
        const int c1 = c0 + CPU_ATTN_SIMD_BLK < hi ? c0 + CPU_ATTN_SIMD_BLK : hi;
        vacc_f16(a, Vh, g, c0, c1, s + (c0 - lo), (size_t)n, out, blk);
    }
}

void cpu_attn_flash_f16_avx2(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, int seq, int lo, int hi,
                             float *out, float *scratch, float *ext) {
    const int g = a->n_head / a->n_head_kv, dk = a->dk, dv = a->dv;
    const size_t krb = (size_t)dk * 2, vrb = (size_t)dv * 2;
    const uint8_t *Kh = a->K + (size_t)kvh * a->n_ctx * krb;
    const uint8_t *Vh = a->V + (size_t)kvh * a->n_ctx * vrb;
    float *s = scratch;                        /* (g, FB) */
    float *row = ext;                          /* FB rows of dk or dv floats */
    float *m = row + (size_t)FB * (dk > dv ? dk : dv), *l = m + g;
    for (int j = 0; j < g; j++) {
        m[j] = -INFINITY;
        l[j] = 0.0f;
    }
    memset(out, 0, sizeof(float) * (size_t)g * dv);
    for (int c0 = lo; c0 < hi; c0 += FB) {
        const int c1 = c0 + FB < hi ? c0 + FB : hi, n = c1 - c0;
        scores_f16(a, Kh, q, g, pos, seq, c0, c1, s, FB, row);
        /* online softmax per head over the block */
        for (int j = 0; j < g; j++) {
            float *sj = s + (size_t)j * FB;
            float bm = -INFINITY;
            for (int i = 0; i < n; i++) bm = sj[i] > bm ? sj[i] : bm;
            if (bm == -INFINITY) {
                memset(sj, 0, sizeof(float) * (size_t)n);
                continue;
            }
            if (bm > m[j]) {
                const float r = m[j] == -INFINITY ? 0.0f : expf(m[j] - bm);
                if (r != 1.0f) {
                    const __m256 rv = _mm256_set1_ps(r);
                    float *o = out + (size_t)j * dv;
                    for (int i = 0; i < dv; i += 8) _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_loadu_ps(o + i), rv));
                }
                l[j] *= r;
                m[j] = bm;
            }
            l[j] += (float)exp_row(sj, n, m[j]);
        }
        vacc_f16(a, Vh, g, c0, c1, s, FB, out, row);
    }
    for (int j = 0; j < g; j++) {
        if (l[j] == 0.0f) continue;
        const __m256 inv = _mm256_set1_ps(1.0f / l[j]);
        float *o = out + (size_t)j * dv;
        for (int i = 0; i < dv; i += 8) _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_loadu_ps(o + i), inv));
    }
}
