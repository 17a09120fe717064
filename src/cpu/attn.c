/*
 * attn.c — CPU attention over the KV cache: standard and flash (online
 * softmax over blocks of cells). See attn.h for the layout and the mask.
 */
#include "cpu/attn.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cpu/attn_simd.h"
#include "cpu/attn_tiled.h"
#include "quant/quant.h"

/* AVX2+FMA+F16C for the SIMD path (attn_avx2.c, attn_q8_avx2.c: f16 and
 * q8_0 caches); MOERUN_CPU=generic or MOERUN_ATTN=scalar disables it. */
static bool simd_ok(void) {
    static _Atomic int ok = -1; /* computed once; threads may race to the same value */
    int v = atomic_load_explicit(&ok, memory_order_relaxed);
    if (v < 0) {
        const mr_cpu_features *f = mr_cpu();
        const char *e = getenv("MOERUN_ATTN");
        v = f->avx2 && f->fma && f->f16c && !(e && !strcmp(e, "scalar"));
        atomic_store_explicit(&ok, v, memory_order_relaxed);
    }
    return v;
}

#define ATTN_BLOCK 128
/* cpu_attn_multi's flash blocks are the SIMD path's, so its outputs are that path's bit for bit */
_Static_assert(CPU_ATTN_MULTI_MB == CPU_ATTN_SIMD_FB, "multi-token and decode flash blocks");
_Static_assert(CPU_ATTN_SIMD_FB <= ATTN_BLOCK, "flash score scratch holds a SIMD block");

static inline bool cell_visible(const cpu_attn_args *a, int c, int32_t pos, int seq) {
    return cpu_attn_cell_visible(a->cell_pos, a->cell_seq, c, pos, seq, a->n_swa);
}

static uint8_t *tiled_rows(const cpu_attn_args *a, int kvh, int c0, int c1, cpu_attn_args *r);

static inline size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Score rows per cell: g, or the 8-lane tiles of the SIMD path. */
static inline size_t score_rows(int g) {
    const size_t t = (size_t)cpu_attn_simd_tiles(g) * 8;
    return t > (size_t)g ? t : (size_t)g;
}

/* Tokens of a cpu_attn_multi call: about 64 query rows; the standard path keeps every cell's
 * scores (n_ctx x rows), so fewer tokens where that would pass MULTI_STD_FLOATS. */
#define MULTI_STD_FLOATS ((size_t)1 << 20) /* 4 MiB a thread */
static int multi_nt(const cpu_attn_args *a) {
    const int g = a->n_head / a->n_head_kv;
    int nt = g >= 64 ? 1 : 64 / g;
    if (!a->flash)
        while (nt > 1 && pad16((size_t)nt * g) * (size_t)a->n_ctx > MULTI_STD_FLOATS) nt--;
    return nt;
}

/* The integer V pass of cpu_attn_multi_avx512 (a q8_0 V of dv >= CPU_ATTN_INT8_V_MIN_DV): its
 * 8-bit weights (MB / 4 quads x dv / 32 blocks x Rp dwords), their scales (2 groups x dv / 32 x
 * Rp), the V block scales (dv / 32 x MB), their largest per group (2 x dv / 32) and their
 * fractions of it (2 x dv / 32 x 32 int16, and in pairs: dv / 32 x MB / 2 x 8 int16), whatever the types
 * (64-byte aligned). */
static size_t multi_i8_floats(const cpu_attn_args *a, size_t Rp) {
    const size_t nbv = (size_t)a->dv / 32, MB = CPU_ATTN_MULTI_MB;
    return MB / 4 * nbv * Rp + 2 * nbv * Rp + nbv * MB + 2 * nbv + 32 * nbv + nbv * MB * 2 + 48;
}

/* cpu_attn_multi_avx512's scratch for nt tokens: Qt, O, K and V blocks, scores, m, l, the
 * listed cells' masks and indices (a block of them, or every cell for the standard path), a
 * q8_0 V's scaled probabilities (a block's, 64-byte aligned). */
static size_t multi_floats(const cpu_attn_args *a, int nt) {
    const size_t Rp = pad16((size_t)nt * (size_t)(a->n_head / a->n_head_kv)), MB = CPU_ATTN_MULTI_MB;
    const size_t ns = a->flash ? MB : (size_t)a->n_ctx;
    return (size_t)a->dk * Rp + Rp * (size_t)a->dv + (MB + 2) * (size_t)a->dk + MB * (size_t)a->dv + (ns + 6) * Rp +
           2 * Rp + 3 * ns + 16 + MB * Rp + 16 + multi_i8_floats(a, Rp);
}

/* The SIMD paths on and AVX-512 VNNI: the multi-token kernels and the tiled decode kernel. */
static bool avx512_vnni_ok(void) {
    const mr_cpu_features *f = mr_cpu();
    return simd_ok() && f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni;
}

int cpu_attn_multi_tokens(const cpu_attn_args *a) {
    const int g = a->n_head / a->n_head_kv;
    if (a->ref || a->softcap > 0.0f || !avx512_vnni_ok()) return 0;
    const uint32_t vt = a->v_in_k ? a->k_type : a->v_type;
    if ((a->k_type != MR_TYPE_F16 && a->k_type != MR_TYPE_Q8_0) || (vt != MR_TYPE_F16 && vt != MR_TYPE_Q8_0) ||
        a->dk % 16 || a->dv % 32 || (a->k_type == MR_TYPE_Q8_0 && a->dk % 32))
        return 0;
    /* a wide q8_0 V that the decode kernel takes in integer products (MLA's latent): left to it */
    if (vt == MR_TYPE_Q8_0 && a->dv >= CPU_ATTN_INT8_V_MULTI_DV && cpu_attn_int8_v()) return 0;
    const char *e = getenv("MOERUN_ATTN_MULTI");
    if (e && !strcmp(e, "0")) return 0;
    const int nt = multi_nt(a);
    return nt > 1 || g >= 16 ? nt : 0; /* fewer rows: the per-token kernel */
}

enum { KEY_FLOATS = 16 }; /* attn_head's query key: 3 uint64_t, padded to 64 bytes */

size_t cpu_attn_scratch_floats(const cpu_attn_args *a) {
    const int g = a->n_head / a->n_head_kv;
    const size_t nsc = a->flash ? ATTN_BLOCK : (size_t)a->n_cells;
    /* scores (g x nsc, or 8-lane tiles), quantized q (<= dk*4 bytes + blocks), k row, v row, m/l per head,
     * the query key, f16 query copy, SIMD ext */
    const size_t one = pad16(score_rows(g) * nsc) + pad16((size_t)a->dk + 64) + pad16((size_t)a->dk) +
                       pad16((size_t)a->dv) + pad16((size_t)2 * g) + KEY_FLOATS + pad16((size_t)g * a->dk) +
                       pad16(cpu_attn_simd_ext_floats(a->dk, a->dv, g));
    /* the multi-token path's, whatever the cache types (callers may size this before they are known) */
    if (!avx512_vnni_ok()) return one;
    const size_t mf = multi_floats(a, multi_nt(a));
    return mf > one ? mf : one;
}

void cpu_attn_multi_avx512(const cpu_attn_args *a, int kvh, int nt, const float *q, size_t qs, const int32_t *pos,
                           const int32_t *seq, float *out, size_t os, float *scratch);

void cpu_attn_multi(const cpu_attn_args *a, int kvh, int nt, const float *q, size_t qs, const int32_t *pos,
                    const int32_t *seq, float *out, size_t os, float *scratch) {
    MR_ASSERT(nt >= 1 && nt <= 64 && nt <= MR_MAX(1, cpu_attn_multi_tokens(a)));
    if (a->tiled && !(a->dv >= CPU_ATTN_INT8_V_MIN_DV && cpu_attn_int8_v())) { /* the f32 V pass: on rows */
        cpu_attn_args r;
        uint8_t *buf = tiled_rows(a, kvh, 0, a->n_cells, &r);
        MR_ASSERT(buf && "out of memory for a tiled KV head's rows");
        cpu_attn_multi_avx512(&r, 0, nt, q, qs, pos, seq, out, os, scratch);
        free(buf);
        return;
    }
    cpu_attn_multi_avx512(a, kvh, nt, q, qs, pos, seq, out, os, scratch);
}

/* Scores of query q against cells [c0, c1) of head kvh into s[0..c1-c0). */
static void scores(const cpu_attn_args *a, int kvh, const float *q, int c0, int c1, float *s, void *qq,
                   float *krow) {
    const size_t krb = mr_row_size(a->k_type, a->dk);
    const uint8_t *Kh = a->K + (size_t)kvh * a->n_ctx * krb;
    if (a->ref) {
        for (int c = c0; c < c1; c++) {
            quant_dequant_row(a->k_type, Kh + (size_t)c * krb, krow, a->dk);
            double acc = 0.0;
            for (int i = 0; i < a->dk; i++) acc += (double)q[i] * krow[i];
            s[c - c0] = (float)acc;
        }
    } else {
        const uint32_t vt = quant_vec_dot_type(a->k_type);
        const void *xq = q;
        if (vt != MR_TYPE_F32) {
            quant_quantize_row(vt, q, qq, a->dk);
            xq = qq;
        }
        /* quant_matvec indexes y by absolute row: shift the output pointer */
        quant_matvec(a->k_type, Kh, a->dk, c0, c1, xq, s - c0);
    }
    for (int c = c0; c < c1; c++) {
        float v = s[c - c0] * a->scale;
        if (a->softcap > 0.0f) v = a->softcap * tanhf(v / a->softcap);
        s[c - c0] = v;
    }
}

/* Dequantize the value row of cell c, head kvh, into vrow (dv floats). */
static void value_row(const cpu_attn_args *a, int kvh, int c, float *vrow) {
    if (a->v_in_k) {
        const size_t krb = mr_row_size(a->k_type, a->dk);
        quant_dequant_row(a->k_type, a->K + ((size_t)kvh * a->n_ctx + c) * krb, vrow, a->dv);
    } else {
        const size_t vrb = mr_row_size(a->v_type, a->dv);
        quant_dequant_row(a->v_type, a->V + ((size_t)kvh * a->n_ctx + c) * vrb, vrow, a->dv);
    }
}

bool cpu_attn_simd_path(const cpu_attn_args *a) { return simd_ok() && cpu_attn_simd_ok(a); }

/* A tiled cache's KV head kvh as rows (cells [c0, c1) filled) in a new buffer, and args r for it as KV head 0:
 * the paths other than the tiled decode kernel run on that. NULL when out of memory. */
static uint8_t *tiled_rows(const cpu_attn_args *a, int kvh, int c0, int c1, cpu_attn_args *r) {
    const size_t krb = mr_row_size(a->k_type, a->dk), vrb = mr_row_size(a->v_type, a->dv);
    uint8_t *buf = malloc((size_t)c1 * (krb + vrb) + 1);
    if (!buf) return NULL;
    const uint8_t *kh = a->K + (size_t)kvh * a->n_ctx * krb, *vh = a->V + (size_t)kvh * a->n_ctx * vrb;
    uint8_t *V = buf + (size_t)c1 * krb;
    for (int c = c0; c < c1; c++) {
        cpu_attn_tiled_get(kh, a->n_ctx, a->dk, true, c, buf + (size_t)c * krb);
        cpu_attn_tiled_get(vh, a->n_ctx, a->dv, false, c, V + (size_t)c * vrb);
    }
    *r = *a;
    r->K = buf, r->V = V, r->n_ctx = c1, r->n_head = a->n_head / a->n_head_kv, r->n_head_kv = 1, r->tiled = false;
    r->q_tag = 0;
    return buf;
}

/* The tiled kernel's shapes: q8_0 K and V, 8 query heads a KV head, head sizes multiples of 32 up to 256. */
static bool tiled_shape(int n_head, int n_head_kv, int dk, int dv, uint32_t k_type, uint32_t v_type, bool v_in_k) {
    return !v_in_k && k_type == MR_TYPE_Q8_0 && v_type == MR_TYPE_Q8_0 && n_head_kv > 0 && n_head == 8 * n_head_kv &&
           dk % 32 == 0 && dv % 32 == 0 && dk > 0 && dv > 0 && dk <= 256 && dv <= 256;
}

bool cpu_attn_tiled_ok(int n_head, int n_head_kv, int dk, int dv, uint32_t k_type, uint32_t v_type, bool v_in_k) {
    const char *e = getenv("MOERUN_KV_TILED");
    if (e && !strcmp(e, "0")) return false;
    /* the kernel's needs (the integer V pass too), else every call would read rows */
    return avx512_vnni_ok() && cpu_attn_int8_v() && tiled_shape(n_head, n_head_kv, dk, dv, k_type, v_type, v_in_k);
}

/* Whether the tiled decode kernel takes a (a tiled cache; else its rows, tiled_rows): per call, so no
 * environment lookups; a->tiled says the cache chose the layout. */
static bool tiled_kernel(const cpu_attn_args *a, bool simd) {
    return simd && !a->ref && a->softcap == 0.0f && avx512_vnni_ok() && cpu_attn_int8_v() &&
           tiled_shape(a->n_head, a->n_head_kv, a->dk, a->dv, a->k_type, a->v_type, a->v_in_k);
}

/* Whether the SIMD call before this one, on this scratch (key), had the same queries (a->q_tag, KV head,
 * q pointer): their prepared forms are still there. Records these. */
static bool same_queries(uint64_t *key, const cpu_attn_args *a, int kvh, const float *q) {
    const bool same = a->q_tag && key[0] == a->q_tag && key[1] == (uint64_t)kvh && key[2] == (uint64_t)(uintptr_t)q;
    key[0] = a->q_tag, key[1] = (uint64_t)kvh, key[2] = (uint64_t)(uintptr_t)q;
    return same;
}

/* cpu_attn_head with the SIMD paths allowed (simd) or not, over the cells [c_lo, c_hi); with ml
 * (flash only) the part form of cpu_attn_head_part: out left unnormalized, m and l into ml. */
static void attn_head(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, int seq, int c_lo, int c_hi,
                      float *out, float *ml_out, float *scratch, bool simd) {
    const int g = a->n_head / a->n_head_kv, dk = a->dk, dv = a->dv;
    const size_t nsc = a->flash ? ATTN_BLOCK : (size_t)a->n_cells;
    float *s = scratch;
    void *qq = scratch + pad16(score_rows(g) * nsc);
    float *krow = (float *)qq + pad16((size_t)dk + 64);
    float *vrow = krow + pad16((size_t)dk);
    float *ml = vrow + pad16((size_t)dv);
    memset(out, 0, sizeof(float) * (size_t)g * dv);
    if (ml_out)
        for (int j = 0; j < g; j++) ml_out[j] = -INFINITY, ml_out[g + j] = 0.0f;

    /* visible range: cells outside [lo, hi) are never visible */
    int lo = c_lo > 0 ? c_lo : 0, hi = c_hi < a->n_cells ? c_hi : a->n_cells;
    while (lo < hi && !cell_visible(a, lo, pos, seq)) lo++;
    while (hi > lo && !cell_visible(a, hi - 1, pos, seq)) hi--;
    if (lo >= hi) return;

    /* the last SIMD call's queries (a->q_tag, KV head, q pointer), whose forms q16 and ext still hold */
    uint64_t *key = (uint64_t *)(ml + pad16((size_t)2 * g));
    float *q16 = (float *)key + KEY_FLOATS;
    if (a->tiled) {
        if (tiled_kernel(a, simd)) {
            /* the queries' form in ext (cpu_attn_simd_ext_floats covers CPU_ATTN_TILED_PREP) */
            const bool same = same_queries(key, a, kvh, q);
            cpu_attn_tiled_z(a, kvh, q, pos, seq, lo, hi, out, ml_out, (int32_t *)(q16 + pad16((size_t)g * dk)), same);
            return;
        }
        key[0] = 0;
        cpu_attn_args r;
        uint8_t *buf = tiled_rows(a, kvh, lo, hi, &r);
        MR_ASSERT(buf && "out of memory for a tiled KV head's rows");
        attn_head(&r, 0, q, pos, seq, lo, hi, out, ml_out, scratch, simd);
        free(buf);
        return;
    }

    if (simd && cpu_attn_simd_ok(a)) {
        const bool same = same_queries(key, a, kvh, q);
        if (a->k_type == MR_TYPE_F16) { /* rounded as below (F16C rounds to nearest even too) */
            if (!same) cpu_attn_round_f16(q, q16, (size_t)g * dk);
            q = q16;
        }
        /* ext: after the q16 copy (the last region of the layout above) */
        cpu_attn_avx2(a, kvh, q, pos, seq, lo, hi, out, ml_out, scratch, q16 + pad16((size_t)g * dk), same);
        return;
    }
    key[0] = 0; /* q16 below is not a SIMD call's */
    if (a->k_type == MR_TYPE_F16) {
        /* as ggml: the query meets an f16 K in f16 (it is converted to K's
         * vec-dot type), so round it once here */
        for (size_t i = 0; i < (size_t)g * dk; i++) q16[i] = mr_fp16_to_fp32(mr_fp32_to_fp16(q[i]));
        q = q16;
    }

    if (!a->flash) {
        const int n = hi - lo;
        for (int j = 0; j < g; j++) {
            float *sj = s + (size_t)j * n;
            scores(a, kvh, q + (size_t)j * dk, lo, hi, sj, qq, krow);
            float mx = -INFINITY;
            for (int c = lo; c < hi; c++) {
                if (!cell_visible(a, c, pos, seq)) sj[c - lo] = -INFINITY;
                else if (sj[c - lo] > mx) mx = sj[c - lo];
            }
            double sum = 0.0;
            for (int i = 0; i < n; i++) {
                sj[i] = sj[i] == -INFINITY ? 0.0f : expf(sj[i] - mx);
                sum += sj[i];
            }
            const float inv = (float)(1.0 / sum);
            for (int i = 0; i < n; i++) sj[i] *= inv;
            if ((a->v_in_k ? a->k_type : a->v_type) == MR_TYPE_F16) /* as ggml: probabilities meet f16 V in f16 */
                for (int i = 0; i < n; i++) sj[i] = mr_fp16_to_fp32(mr_fp32_to_fp16(sj[i]));
        }
        for (int c = lo; c < hi; c++) {
            bool any = false;
            for (int j = 0; j < g && !any; j++) any = s[(size_t)j * n + (c - lo)] != 0.0f;
            if (!any) continue;
            value_row(a, kvh, c, vrow);
            for (int j = 0; j < g; j++) {
                const float p = s[(size_t)j * n + (c - lo)];
                if (p == 0.0f) continue;
                float *o = out + (size_t)j * dv;
                for (int i = 0; i < dv; i++) o[i] += p * vrow[i];
            }
        }
        return;
    }

    /* flash: running max m_j and sum l_j per head, acc in out */
    float *m = ml, *l = ml + g;
    for (int j = 0; j < g; j++) {
        m[j] = -INFINITY;
        l[j] = 0.0f;
    }
    for (int c0 = lo; c0 < hi; c0 += ATTN_BLOCK) {
        const int c1 = c0 + ATTN_BLOCK < hi ? c0 + ATTN_BLOCK : hi;
        for (int j = 0; j < g; j++) {
            float *sj = s + (size_t)j * ATTN_BLOCK;
            scores(a, kvh, q + (size_t)j * dk, c0, c1, sj, qq, krow);
            float bm = -INFINITY;
            for (int c = c0; c < c1; c++) {
                if (!cell_visible(a, c, pos, seq)) sj[c - c0] = -INFINITY;
                else if (sj[c - c0] > bm) bm = sj[c - c0];
            }
            if (bm == -INFINITY) {
                memset(sj, 0, sizeof(float) * (size_t)(c1 - c0));
                continue;
            }
            if (bm > m[j]) {
                const float r = m[j] == -INFINITY ? 0.0f : expf(m[j] - bm);
                float *o = out + (size_t)j * dv;
                for (int i = 0; i < dv; i++) o[i] *= r;
                l[j] *= r;
                m[j] = bm;
            }
            for (int c = c0; c < c1; c++)
                if (sj[c - c0] != -INFINITY) {
                    sj[c - c0] = expf(sj[c - c0] - m[j]);
                    l[j] += sj[c - c0];
                } else
                    sj[c - c0] = 0.0f;
        }
        for (int c = c0; c < c1; c++) {
            bool any = false;
            for (int j = 0; j < g && !any; j++) any = s[(size_t)j * ATTN_BLOCK + (c - c0)] != 0.0f;
            if (!any) continue;
            value_row(a, kvh, c, vrow);
            for (int j = 0; j < g; j++) {
                const float p = s[(size_t)j * ATTN_BLOCK + (c - c0)];
                if (p == 0.0f) continue;
                float *o = out + (size_t)j * dv;
                for (int i = 0; i < dv; i++) o[i] += p * vrow[i];
            }
        }
    }
    if (ml_out) {
        memcpy(ml_out, ml, sizeof(float) * 2 * (size_t)g);
        return;
    }
    for (int j = 0; j < g; j++) {
        if (l[j] == 0.0f) continue;
        const float inv = 1.0f / l[j];
        float *o = out + (size_t)j * dv;
        for (int i = 0; i < dv; i++) o[i] *= inv;
    }
}

void cpu_attn_head(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, int seq, float *out,
                   float *scratch) {
    attn_head(a, kvh, q, pos, seq, 0, a->n_cells, out, NULL, scratch, simd_ok());
}

void cpu_attn_head_generic(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, int seq, float *out,
                           float *scratch) {
    attn_head(a, kvh, q, pos, seq, 0, a->n_cells, out, NULL, scratch, false);
}

/* ---- decode split over cells ---------------------------------------------------------- */

int cpu_attn_split(const cpu_attn_args *a, int *cells) {
    *cells = a->n_cells > 0 ? a->n_cells : 1;
    if (!a->flash || a->ref || a->n_cells <= CPU_ATTN_SPLIT_MIN) return 1;
    /* parts of at least CPU_ATTN_SPLIT_MIN cells, at most CPU_ATTN_SPLIT_MAX of them, whole flash blocks */
    int per = (a->n_cells + CPU_ATTN_SPLIT_MAX - 1) / CPU_ATTN_SPLIT_MAX;
    per = per < CPU_ATTN_SPLIT_MIN ? CPU_ATTN_SPLIT_MIN : (per + ATTN_BLOCK - 1) / ATTN_BLOCK * ATTN_BLOCK;
    *cells = per;
    return (a->n_cells + per - 1) / per;
}

void cpu_attn_head_part(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, int seq, int c0, int c1,
                        float *out, float *ml, float *scratch) {
    MR_ASSERT(a->flash && !a->ref);
    attn_head(a, kvh, q, pos, seq, c0, c1, out, ml, scratch, simd_ok());
}

void cpu_attn_merge(int g, int dv, int np, const float *parts, const float *mls, float *out) {
    const size_t ps = (size_t)g * dv;
    float w[CPU_ATTN_SPLIT_MAX];
    MR_ASSERT(np <= CPU_ATTN_SPLIT_MAX);
    const bool simd = simd_ok() && dv % 8 == 0;
    for (int j = 0; j < g; j++) {
        float M = -INFINITY;
        for (int p = 0; p < np; p++) {
            const float *ml = mls + (size_t)p * 2 * g;
            if (ml[g + j] > 0.0f && ml[j] > M) M = ml[j];
        }
        float *o = out + (size_t)j * dv;
        if (M == -INFINITY) { /* sees no cell: zeros */
            memset(o, 0, sizeof(float) * (size_t)dv);
            continue;
        }
        float L = 0.0f; /* each part's weight e^(m_p - M) (0: a part that sees no cell), and their sum */
        for (int p = 0; p < np; p++) {
            const float *ml = mls + (size_t)p * 2 * g;
            w[p] = ml[g + j] > 0.0f ? expf(ml[j] - M) : 0.0f;
            L += w[p] * ml[g + j];
        }
        if (simd) {
            cpu_attn_merge_row_avx2(dv, np, parts + (size_t)j * dv, ps, w, 1.0f / L, o);
            continue;
        }
        memset(o, 0, sizeof(float) * (size_t)dv);
        for (int p = 0; p < np; p++) {
            if (w[p] == 0.0f) continue;
            const float *op = parts + (size_t)p * ps + (size_t)j * dv;
            for (int i = 0; i < dv; i++) o[i] += w[p] * op[i];
        }
        const float inv = 1.0f / L;
        for (int i = 0; i < dv; i++) o[i] *= inv;
    }
}
