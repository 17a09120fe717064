/*
 * attn_tiled_avx512.c — decode attention (one token, the 8 query heads of a KV head, flash) over the
 * tiled q8_0 cache (layout: attn.h), on AVX-512 VNNI.
 *
 * Per block of 64 cells (4 tiles):
 *  - scores: per tile and K block, the 8 zmm of quants (16 cells in the lanes, 4 dimensions a dword,
 *    unsigned) are loaded once for all 8 heads; each head's query dword is a broadcast, so 8
 *    vpdpbusd give a head's block sums of 16 cells, which start from -128 x its quant sum; then the
 *    float steps of the row kernels (block scale of the cell x the query's, times the int32 sum,
 *    added block by block);
 *  - the online softmax per head (running max and sum; the output rescaled when the max grows);
 *  - V in integer products, as attn_avx512.c's pass: per head, V block and 32 cells, the weights
 *    p x (the cell's V block scale) rounded to 0..255 against the product of the group's largest p
 *    and largest scale (15-bit fractions of each, multiplied 32 cells at a time with vpmulhrsw), then
 *    per quad of cells one vpdpbusd of the 4 weights (a dword broadcast) against the quad's quants as
 *    stored.
 * The next block's K and V bytes are prefetched along the way (the cache is read in order, two
 * streams, but the hardware prefetcher alone left a cold call 2.4x slower).
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "cpu/attn_simd.h"
#include "cpu/attn_vec.h"
#include "cpu/attn_tiled.h"
#include "quant/quant.h"

#define BLK 64
#define NT (BLK / CPU_ATTN_TILE)
#define DMAX 256


/* out(h, one V block's 32 dimensions) += vsc[h] x the int32 sums over NQ quads (from v, a quad's block every
 * nbv * 128 bytes) of the weights w[h][quad] against the quants: NQ a constant, the accumulators in registers */
static inline __attribute__((always_inline)) void vprod(const int NQ, const uint8_t *v, int nbv, const uint32_t (*w)[8],
                                                        const float *vsc, float *out, int dv) {
    enum { G = 8 };
    __m512i ac[G][2];
    for (int h = 0; h < G; h++) ac[h][0] = ac[h][1] = _mm512_setzero_si512();
    for (int k = 0; k < NQ; k++) {
        const uint8_t *vk = v + (size_t)k * nbv * 128;
        const __m512i v0 = _mm512_loadu_si512((const void *)vk), v1 = _mm512_loadu_si512((const void *)(vk + 64));
        for (int h = 0; h < G; h++) {
            const __m512i wb = _mm512_set1_epi32((int)w[h][k]);
            ac[h][0] = _mm512_dpbusd_epi32(ac[h][0], wb, v0);
            ac[h][1] = _mm512_dpbusd_epi32(ac[h][1], wb, v1);
        }
    }
    for (int h = 0; h < G; h++) {
        const __m512 sc = _mm512_set1_ps(vsc[h]);
        float *o = out + (size_t)h * dv;
        _mm512_storeu_ps(o, _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(ac[h][0]), _mm512_loadu_ps(o)));
        _mm512_storeu_ps(o + 16, _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(ac[h][1]), _mm512_loadu_ps(o + 16)));
    }
}

/* The cells of [c, e) (within the block at c0) visible to (pos, seq), bit c - c0: cpu_attn_cell_visible 16 cells
 * a vector (masked loads: nothing read outside [c, e)). */
static inline uint64_t visible(const cpu_attn_args *a, int c0, int c, int e, int32_t pos, int seq) {
    const __m512i P = _mm512_set1_epi32(pos), W = _mm512_set1_epi32(a->n_swa), bit = _mm512_set1_epi64((long long)(1ull << seq));
    uint64_t vis = 0;
    for (int t = 0; t < NT; t++) {
        const int cb = c0 + CPU_ATTN_TILE * t, i0 = c > cb ? c - cb : 0, i1 = e < cb + CPU_ATTN_TILE ? e - cb : CPU_ATTN_TILE;
        if (i1 <= i0) continue;
        const __mmask16 in = (__mmask16)((0xffffu >> (16 - (i1 - i0))) << i0);
        const __m512i cp = _mm512_maskz_loadu_epi32(in, a->cell_pos + cb);
        __mmask16 m = _mm512_mask_cmpge_epi32_mask(in, cp, _mm512_setzero_si512()) & _mm512_cmple_epi32_mask(cp, P);
        if (a->n_swa > 0) m &= _mm512_cmplt_epi32_mask(_mm512_sub_epi32(P, cp), W);
        const __m512i s0 = _mm512_maskz_loadu_epi64((__mmask8)in, a->cell_seq + cb);
        const __m512i s1 = _mm512_maskz_loadu_epi64((__mmask8)(in >> 8), a->cell_seq + cb + 8);
        m &= (__mmask16)(_mm512_test_epi64_mask(s0, bit) | ((unsigned)_mm512_test_epi64_mask(s1, bit) << 8));
        vis |= (uint64_t)m << (CPU_ATTN_TILE * t);
    }
    return vis;
}

/* lines [i0, i1) of the n lines at p */
static inline void pf_lines(const uint8_t *p, int i0, int i1) {
    for (int i = i0; i < i1; i++) _mm_prefetch((const char *)p + (size_t)i * 64, _MM_HINT_T0);
}

void cpu_attn_tiled_z(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, int seq, int lo, int hi,
                      float *out, float *ml, int32_t *prep, bool prepped) {
    enum { G = 8 };
    const int dk = a->dk, dv = a->dv, nbk = dk / 32, nbv = dv / 32, n = a->n_ctx;
    const size_t krb = mr_row_size(MR_TYPE_Q8_0, dk), vrb = mr_row_size(MR_TYPE_Q8_0, dv);
    const uint8_t *kq = a->K + (size_t)kvh * n * krb, *ks = kq + (size_t)n * dk;
    const uint8_t *vq = a->V + (size_t)kvh * n * vrb, *vs = vq + (size_t)n * dv;

    /* the queries in q8_0 (prep, unless prepped: the last call's, the same queries): dwords qd[h][b][gg],
     * -128 x the block's quant sum corr[h][b], scales dq[h][b] */
    int32_t *qd = prep, *corr = prep + G * nbk * 8;
    float *dq = (float *)(corr + G * nbk);
    if (!prepped) {
        uint8_t row[DMAX / 32 * 34];
        for (int h = 0; h < G; h++) {
            quant_quantize_row(MR_TYPE_Q8_0, q + (size_t)h * dk, row, dk);
            for (int b = 0; b < nbk; b++) {
                const uint8_t *blk = row + (size_t)b * 34;
                uint16_t d16;
                memcpy(&d16, blk, 2);
                dq[h * nbk + b] = _cvtsh_ss(d16);
                memcpy(qd + (h * nbk + b) * 8, blk + 2, 32);
                int s = 0;
                for (int e = 0; e < 32; e++) s += (int8_t)blk[2 + e];
                corr[h * nbk + b] = -128 * s;
            }
        }
    }

    float m[G], l[G];
    for (int h = 0; h < G; h++) m[h] = -INFINITY, l[h] = 0.0f;
    memset(out, 0, sizeof(float) * G * (size_t)dv);
    _Alignas(64) float S[G][BLK];
    _Alignas(64) uint32_t wq[DMAX / 32][G][8];
    float vsc[DMAX / 32][G];
    const __m512 scale = _mm512_set1_ps(a->scale), ninf = _mm512_set1_ps(-INFINITY);
    const int kl = NT * nbk * 8, vl = BLK / 4 * nbv * 2; /* lines of a block's K and V quants */

    for (int c0 = lo - lo % BLK; c0 < hi; c0 += BLK) {
        const int e = c0 + BLK < hi ? c0 + BLK : hi;
        const uint64_t vis = visible(a, c0, c0 > lo ? c0 : lo, e, pos, seq);
        if (!vis) continue;
        const int ntl = (e - c0 + CPU_ATTN_TILE - 1) / CPU_ATTN_TILE, T0 = c0 / CPU_ATTN_TILE;
        /* the next block's quants (within the cache's cells: a part of a split step is followed by the next) */
        const bool pf = c0 + BLK < a->n_cells && c0 + 2 * BLK <= n;
        const uint8_t *pk = kq + (size_t)(T0 + NT) * nbk * 512, *pv = vq + ((size_t)(c0 + BLK) / 4) * nbv * 128;

        /* scores */
        for (int t = 0; t < NT; t++) {
            if (t >= ntl) {
                for (int h = 0; h < G; h++) _mm512_store_ps(S[h] + 16 * t, ninf);
                continue;
            }
            if (pf) pf_lines(pk, t * kl / NT, (t + 1) * kl / NT);
            if (pf && t == 0) /* and their scales */
                pf_lines(ks + (size_t)(T0 + NT) * nbk * 32, 0, NT * nbk / 2), pf_lines(vs + (size_t)(T0 + NT) * nbv * 32, 0, NT * nbv / 2);
            const size_t T = (size_t)T0 + t;
            __m512 s[G];
            for (int h = 0; h < G; h++) s[h] = _mm512_setzero_ps();
            for (int b = 0; b < nbk; b++) {
                const uint8_t *kb = kq + (T * nbk + b) * 512;
                const __m512 dkc = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ks + (T * nbk + b) * 32)));
                __m512i kv[8];
                for (int gg = 0; gg < 8; gg++) kv[gg] = _mm512_loadu_si512((const void *)(kb + 64 * gg));
                _Pragma("GCC unroll 8")
                for (int h = 0; h < G; h++) {
                    __m512i acc = _mm512_set1_epi32(corr[h * nbk + b]);
                    const int32_t *qh = qd + (h * nbk + b) * 8;
                    for (int gg = 0; gg < 8; gg++) /* the query dword as an embedded broadcast: no separate uop */
                        __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(kv[gg]), "m"(qh[gg]));
                    s[h] = _mm512_fmadd_ps(_mm512_mul_ps(dkc, _mm512_set1_ps(dq[h * nbk + b])), _mm512_cvtepi32_ps(acc), s[h]);
                }
            }
            const __mmask16 mk = (__mmask16)(vis >> (16 * t));
            for (int h = 0; h < G; h++) _mm512_store_ps(S[h] + 16 * t, _mm512_mask_mul_ps(ninf, mk, s[h], scale));
        }

        /* online softmax */
        for (int h = 0; h < G; h++) {
            __m512 x[NT];
            for (int t = 0; t < NT; t++) x[t] = _mm512_load_ps(S[h] + 16 * t);
            const float bm = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(x[0], x[1]), _mm512_max_ps(x[2], x[3])));
            const float mn = bm > m[h] ? bm : m[h];
            if (mn > m[h] && m[h] != -INFINITY) {
                const float r = expf(m[h] - mn);
                const __m512 rv = _mm512_set1_ps(r);
                float *o = out + (size_t)h * dv;
                for (int i = 0; i < dv; i += 16) _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_loadu_ps(o + i), rv));
                l[h] *= r;
            }
            m[h] = mn;
            const __m512 mv = _mm512_set1_ps(mn);
            __m512 sum = _mm512_setzero_ps();
            for (int t = 0; t < NT; t++) {
                const __mmask16 mk = (__mmask16)(vis >> (16 * t));
                x[t] = _mm512_maskz_mov_ps(mk, attn_exp16(_mm512_sub_ps(x[t], mv)));
                _mm512_store_ps(S[h] + 16 * t, x[t]);
                sum = _mm512_add_ps(sum, x[t]);
            }
            l[h] += _mm512_reduce_add_ps(sum);
        }

        /* V: two groups of 32 cells */
        for (int gi = 0; gi < 2; gi++) {
            if (!(uint32_t)(vis >> (32 * gi))) continue;
            const int t0 = 2 * gi, nq = (ntl - t0 >= 2 ? 2 : 1) * 4; /* quads of the group's tiles that exist */
            const size_t Q0 = (size_t)(c0 + 32 * gi) / 4;
            const __mmask16 m0 = (__mmask16)(vis >> (32 * gi)), m1 = (__mmask16)(vis >> (32 * gi + 16));
            /* the weights (attn_avx512.c's i8_weights): p and d as 15-bit fractions of their largest in the
             * group, 32 cells a vector of words (packus order, put back by the qword permutation) */
            const __m512i qo = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
            __m512i d15[DMAX / 32];
            float dm[DMAX / 32];
            for (int b = 0; b < nbv; b++) { /* masked: a cell never written may hold any scale */
                const __m512 d0 = _mm512_maskz_mov_ps(m0, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vs + (((size_t)T0 + t0) * nbv + b) * 32))));
                const __m512 d1 = nq > 4 ? _mm512_maskz_mov_ps(m1, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vs + (((size_t)T0 + t0 + 1) * nbv + b) * 32))))
                                         : _mm512_setzero_ps();
                dm[b] = _mm512_reduce_max_ps(_mm512_max_ps(d0, d1));
                const __m512 inv = _mm512_set1_ps(dm[b] > 0.0f ? ATTN_I8_D15 / dm[b] : 0.0f);
                d15[b] = _mm512_permutexvar_epi64(qo, _mm512_packus_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(d0, inv)),
                                                                          _mm512_cvtps_epi32(_mm512_mul_ps(d1, inv))));
            }
            const __m512i c256 = _mm512_set1_epi16(256);
            for (int h = 0; h < G; h++) {
                const __m512 p0 = _mm512_load_ps(S[h] + 32 * gi), p1 = _mm512_load_ps(S[h] + 32 * gi + 16);
                const float pm = _mm512_reduce_max_ps(_mm512_max_ps(p0, p1));
                const __m512 inv = _mm512_set1_ps(pm > 0.0f ? ATTN_I8_P15 / pm : 0.0f);
                const __m512i p15 = _mm512_permutexvar_epi64(qo, _mm512_packus_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(p0, inv)),
                                                                                     _mm512_cvtps_epi32(_mm512_mul_ps(p1, inv))));
                const float pk = pm * ATTN_I8_SCALE;
                for (int b = 0; b < nbv; b++) {
                    vsc[b][h] = pk * dm[b];
                    const __m512i w = _mm512_mulhrs_epi16(_mm512_mulhrs_epi16(p15, d15[b]), c256);
                    _mm256_store_si256((__m256i *)&wq[b][h][0], _mm512_cvtusepi16_epi8(w));
                }
            }
            for (int b = 0; b < nbv; b++) {
                if (pf) pf_lines(pv, (gi * nbv + b) * vl / (2 * nbv), (gi * nbv + b + 1) * vl / (2 * nbv));
                const uint8_t *v = vq + (Q0 * nbv + b) * 128;
                if (nq == 8) vprod(8, v, nbv, wq[b], vsc[b], out + 32 * b, dv);
                else vprod(4, v, nbv, wq[b], vsc[b], out + 32 * b, dv);
            }
        }
    }

    /* dimensions back from the quads' order (cpu_attn_vt_dim) */
    const __m512i lo16 = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    const __m512i hi16 = _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    for (int h = 0; h < G; h++) {
        const float f = ml || l[h] == 0.0f ? 1.0f : 1.0f / l[h];
        for (int i = 0; i < dv; i += 32) {
            float *o = out + (size_t)h * dv + i;
            const __m512 f0 = _mm512_loadu_ps(o), f1 = _mm512_loadu_ps(o + 16);
            _mm512_storeu_ps(o, _mm512_mul_ps(_mm512_permutex2var_ps(f0, lo16, f1), _mm512_set1_ps(f)));
            _mm512_storeu_ps(o + 16, _mm512_mul_ps(_mm512_permutex2var_ps(f0, hi16, f1), _mm512_set1_ps(f)));
        }
    }
    if (ml)
        for (int h = 0; h < G; h++) ml[h] = l[h] > 0.0f ? m[h] : -INFINITY, ml[G + h] = l[h];
}
