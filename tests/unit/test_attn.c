/*
 * test_attn.c — CPU decode attention (cpu_attn_head): the SIMD path
 * (attn_avx2.c with attn_q8_avx2.c: f16 or q8_0 K, f16 or q8_0 V or MLA's
 * value inside K) against the generic path (quant kernels + scalar loops,
 * the same query rounding / quantization) and against the scalar reference
 * (ref: float query, dequantized K and V, double dots), standard and flash,
 * for g = 1, 2, 3, 4, 5, 6, 8, 12, 16 query heads per KV head, several head
 * sizes, depths that are and are not multiples of the block sizes, masked
 * cells (empty cells, other sequences, future positions, a sliding window,
 * with positions out of cell order so they sit inside the visible range;
 * masked K rows are large, so attending to one shows), soft-capping, a
 * query that sees nothing, and shapes the SIMD path declines.
 * The multi-token path (cpu_attn_multi, flash and standard) against cpu_attn_head per token,
 * bit for bit with the f32 V pass, and with the integer one within its rounding bound.
 * Also runs itself under MOERUN_CPU=generic and checks that no SIMD path is
 * taken there (cpu_attn_head == the generic path, bit for bit), and, where the
 * CPU has AVX-512 VNNI, under MOERUN_CPU=avx2: the AVX-512 kernels give the
 * AVX2 path's outputs bit for bit (with the f32 V pass). The integer V pass of a
 * wide q8_0 V on those CPUs is checked against a bound on its weights' rounding
 * (int8_v_bound), its f32 twin (MOERUN_ATTN_V8=0) as every other case. The bf16 products of
 * an f16 cache (opt-in, forced on here where the CPU has AVX512_BF16) are checked against their
 * emulation in double (bf16_emulate: a bound per element and no scale error), their f32 twin as
 * every other case.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/base.h"
#include "check.h"
#include "cpu/attn.h"
#include "cpu/attn_simd.h"
#include "quant/quant.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float frand(void) { return (float)(rnd() & 0xFFFFFF) / 8388608.0f - 1.0f; }

typedef struct {
    uint32_t kt, vt;
    int g, n_kv, dk, dv, n_cells;
    bool v_in_k, masked, flash;
    int n_swa;
    float qmag, softcap;
    bool gap; /* only the first and last 10 cells are visible: whole blocks in between are not */
} tcase;

typedef struct {
    cpu_attn_args a;
    uint8_t *K, *V;
    int32_t *cp;
    uint64_t *cs;
    float *q;
    int32_t pos;
    int seq, kvh, n_vis;
} tsetup;

/* Random cache and queries for a case. Masked cells get K rows 30x larger
 * than the others. */
static void setup(const tcase *tc, tsetup *s) {
    const int n_ctx = tc->n_cells + 5;
    const size_t krb = mr_row_size(tc->kt, tc->dk), vrb = tc->v_in_k ? 0 : mr_row_size(tc->vt, tc->dv);
    s->K = mr_malloc(krb * (size_t)n_ctx * tc->n_kv + 64);
    s->V = tc->v_in_k ? NULL : mr_malloc(vrb * (size_t)n_ctx * tc->n_kv + 64);
    s->cp = mr_malloc(sizeof(int32_t) * (size_t)n_ctx);
    s->cs = mr_malloc(sizeof(uint64_t) * (size_t)n_ctx);
    s->q = mr_malloc(sizeof(float) * (size_t)tc->g * tc->dk);
    s->seq = 1;
    s->pos = tc->masked ? tc->n_cells - 4 : tc->n_cells - 1;
    s->kvh = tc->n_kv - 1;
    s->n_vis = 0;
    for (int c = 0; c < n_ctx; c++) s->cp[c] = c, s->cs[c] = 2; /* seq 1 */
    if (tc->masked) /* positions out of cell order (a reused cache), so masked cells sit inside the visible range */
        for (int c = n_ctx - 1; c > 0; c--) {
            const int o = (int)(rnd() % (uint32_t)(c + 1));
            const int32_t t = s->cp[c];
            s->cp[c] = s->cp[o], s->cp[o] = t;
        }
    for (int c = 0; c < n_ctx; c++) {
        if (tc->masked) {
            const uint32_t r = rnd() % 10;
            if (r == 0) s->cp[c] = -1;
            else if (r == 1) s->cs[c] = 1 | 4; /* other sequences only */
            else if (r == 2) s->cs[c] = 3;      /* shared with seq 0 */
        }
        if (tc->gap && c >= 10 && c < tc->n_cells - 10) s->cs[c] = 1;
    }
    for (int c = 0; c < tc->n_cells; c++) {
        const int32_t cp = s->cp[c];
        const bool vis = cp >= 0 && cp <= s->pos && ((s->cs[c] >> s->seq) & 1) && !(tc->n_swa > 0 && s->pos - cp >= tc->n_swa);
        s->n_vis += vis;
    }
    float *row = mr_malloc(sizeof(float) * (size_t)(tc->dk > tc->dv ? tc->dk : tc->dv));
    for (int h = 0; h < tc->n_kv; h++)
        for (int c = 0; c < n_ctx; c++) {
            const size_t r = (size_t)h * n_ctx + c;
            const int32_t cp = s->cp[c];
            const bool vis = c < tc->n_cells && cp >= 0 && cp <= s->pos && ((s->cs[c] >> s->seq) & 1) &&
                             !(tc->n_swa > 0 && s->pos - cp >= tc->n_swa);
            const float mag = vis ? 1.0f : 30.0f;
            for (int i = 0; i < tc->dk; i++) row[i] = mag * frand();
            quant_quantize_row(tc->kt, row, s->K + r * krb, tc->dk);
            if (!tc->v_in_k) {
                for (int i = 0; i < tc->dv; i++) row[i] = (vis ? 1.0f : 30.0f) * frand();
                quant_quantize_row(tc->vt, row, s->V + r * vrb, tc->dv);
            }
        }
    free(row);
    for (int i = 0; i < tc->g * tc->dk; i++) s->q[i] = tc->qmag * frand();
    s->a = (cpu_attn_args){.n_head = tc->g * tc->n_kv, .n_head_kv = tc->n_kv, .dk = tc->dk, .dv = tc->dv,
                           .scale = 1.0f / sqrtf((float)tc->dk), .softcap = tc->softcap, .k_type = tc->kt,
                           .v_type = tc->v_in_k ? tc->kt : tc->vt, .K = s->K, .V = s->V, .n_ctx = n_ctx,
                           .v_in_k = tc->v_in_k, .n_cells = tc->n_cells, .cell_pos = s->cp, .cell_seq = s->cs,
                           .n_swa = tc->n_swa, .flash = tc->flash};
}

static void teardown(tsetup *s) {
    free(s->K), free(s->V), free(s->cp), free(s->cs), free(s->q);
}

/* Run one path into out (g x dv); the scratch is filled with NaNs first so a
 * read of something never written shows. which: 0 cpu_attn_head, 1 generic,
 * 2 reference. */
static void run_path(const tsetup *s, int which, float *out) {
    cpu_attn_args a = s->a;
    a.ref = which == 2;
    const size_t nf = cpu_attn_scratch_floats(&a);
    float *scratch = mr_malloc_aligned(sizeof(float) * nf);
    for (size_t i = 0; i < nf; i++) scratch[i] = NAN;
    const int g = a.n_head / a.n_head_kv;
    for (int i = 0; i < g * a.dv; i++) out[i] = NAN;
    if (which == 1) cpu_attn_head_generic(&a, s->kvh, s->q, s->pos, s->seq, out, scratch);
    else cpu_attn_head(&a, s->kvh, s->q, s->pos, s->seq, out, scratch);
    mr_free_aligned(scratch);
}

static double max_abs_diff(const float *x, const float *y, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        const double d = fabs((double)x[i] - y[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

static bool all_finite(const float *x, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

static double max_abs(const float *x, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static const char *case_name(const tcase *tc, char *buf, size_t n) {
    snprintf(buf, n, "K %s V %s g %d dk %d dv %d cells %d%s%s%s%s swa %d qmag %.0f softcap %.0f",
             mr_type_name(tc->kt), tc->v_in_k ? "in K" : mr_type_name(tc->vt), tc->g, tc->dk, tc->dv, tc->n_cells,
             tc->masked ? " masked" : "", tc->gap ? " gap" : "", tc->flash ? " flash" : " std", tc->v_in_k ? " v_in_k" : "",
             tc->n_swa,
             (double)tc->qmag, (double)tc->softcap);
    return buf;
}

static bool have_simd(void) {
    const mr_cpu_features *f = mr_cpu();
    const char *e = getenv("MOERUN_ATTN");
    return f->avx2 && f->fma && f->f16c && !(e && !strcmp(e, "scalar"));
}

/* Whether cpu_attn_head takes the integer V pass here (attn_avx512.c: a q8_0 V on AVX-512 VNNI). */
static bool int8_v_path(const tsetup *s) {
    const mr_cpu_features *f = mr_cpu();
    const uint32_t vt = s->a.v_in_k ? s->a.k_type : s->a.v_type;
    return cpu_attn_simd_path(&s->a) && f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni &&
           vt == MR_TYPE_Q8_0 && s->a.dv >= CPU_ATTN_INT8_V_MIN_DV && cpu_attn_int8_v();
}

/* The integer V pass rounds w = p * d(V block) to a step of 1/255 of a scale per group of cells (per head
 * and V block): the output moves by at most half a step times |quant| per cell. bound (g x dv) gets that
 * sum, from the exact softmax (f32 query, dequantized K; the kernel's q8_0 query moves it by a fraction of
 * it). The groups and their scales, by mode:
 *   0: the decode kernel (attn_avx512.c's i8_weights): 32 consecutive visible cells of a 64-cell block,
 *      scaled by the product of their largest p and largest d (two 15-bit fractions rounded twice: half
 *      a step and 1/128 of one), which is at least their largest w;
 *   1: cpu_attn_multi's flash: 32 of the block's cells that any of its tokens sees, scaled as mode 0, so
 *      bounded by the largest p of the head's visible cells of the 64-cell block times the largest d of
 *      all the block's cells (other tokens' cells count for d);
 *   2: cpu_attn_multi's standard path: 32 of all the cells its tokens see: the largest p of all its
 *      visible cells times the largest d of all cells;
 *   3: the tiled kernel: the two aligned halves of each 64-cell block, scaled as mode 0. */
/* The q8_0 block scale of block b of cell c's V row. */
static double v_scale(const uint8_t *Vh, size_t vrb, int c, int b) {
    uint16_t dh;
    memcpy(&dh, Vh + (size_t)c * vrb + (size_t)b * 34, 2);
    return mr_fp16_to_fp32(dh);
}

static void int8_v_bound(const tsetup *s, float *bound, int mode) {
    const cpu_attn_args *a = &s->a;
    const int g = a->n_head / a->n_head_kv, dv = a->dv, nbv = dv / 32, FB = CPU_ATTN_SIMD_FB;
    const size_t krb = mr_row_size(a->k_type, a->dk), vrb = a->v_in_k ? krb : mr_row_size(a->v_type, dv);
    const uint8_t *Kh = a->K + (size_t)s->kvh * a->n_ctx * krb;
    const uint8_t *Vh = a->v_in_k ? Kh : a->V + (size_t)s->kvh * a->n_ctx * vrb;
    float *k = mr_malloc(sizeof(float) * (size_t)a->dk);
    double *u = mr_malloc(sizeof(double) * (size_t)a->n_cells);
    int *vis = mr_malloc(sizeof(int) * (size_t)a->n_cells);
    int nv = 0;
    for (int c = 0; c < a->n_cells; c++)
        if (cpu_attn_cell_visible(a->cell_pos, a->cell_seq, c, s->pos, s->seq, a->n_swa)) vis[nv++] = c;
    for (int i = 0; i < g * dv; i++) bound[i] = 0.0f;
    for (int h = 0; h < g; h++) {
        const float *q = s->q + (size_t)h * a->dk;
        double mx = -INFINITY, l = 0.0;
        for (int x = 0; x < nv; x++) {
            quant_dequant_row(a->k_type, Kh + (size_t)vis[x] * krb, k, a->dk);
            double d = 0.0;
            for (int i = 0; i < a->dk; i++) d += (double)q[i] * k[i];
            d *= a->scale;
            if (a->softcap > 0.0f) d = a->softcap * tanh(d / a->softcap);
            u[x] = d, mx = fmax(mx, d);
        }
        for (int x = 0; x < nv; x++) u[x] = exp(u[x] - mx), l += u[x];
        for (int x0 = 0; x0 < nv;) { /* a group */
            int x1 = x0 + 1;
            if (mode == 3)
                while (x1 < nv && vis[x1] / 32 == vis[x0] / 32) x1++;
            else
                while (x1 < nv && (mode || x1 - x0 < 32) && (mode == 2 || vis[x1] / FB == vis[x0] / FB)) x1++;
            double pm = 0.0;
            for (int x = x0; x < x1; x++) pm = fmax(pm, u[x]);
            /* the cells whose d can share the group's scale: its own, or (modes 1, 2) any other token's */
            const int d0 = mode == 1 ? vis[x0] / FB * FB : mode == 2 ? 0 : -1;
            const int d1 = mode == 1 ? MR_MIN(d0 + FB, a->n_cells) : mode == 2 ? a->n_cells : -1;
            for (int b = 0; b < nbv; b++) {
                double dmax = 0.0;
                for (int x = x0; x < x1; x++) dmax = fmax(dmax, v_scale(Vh, vrb, vis[x], b));
                for (int c = d0; c < d1; c++) dmax = fmax(dmax, v_scale(Vh, vrb, c, b));
                const double half = (0.5 + 1.0 / 128) * pm * dmax / 255.0;
                for (int x = x0; x < x1; x++) {
                    const int8_t *qs = (const int8_t *)(Vh + (size_t)vis[x] * vrb + (size_t)b * 34 + 2);
                    for (int e = 0; e < 32; e++) bound[(size_t)h * dv + 32 * b + e] += (float)(half * abs(qs[e]) / l);
                }
            }
            x0 = x1;
        }
    }
    free(k), free(u), free(vis);
}

/* Whether cpu_attn_head takes the bf16 products here (attn_bf16_avx512.c: f16 K and V, AVX512_BF16). */
static bool bf16_path(const tsetup *s) { return cpu_attn_simd_path(&s->a) && cpu_attn_bf16_takes(&s->a); }

static float bf16r(float x) { return mr_bf16_to_fp32(mr_fp32_to_bf16(x)); }

/* The bf16 path emulated in double: the query (rounded to f16, as every f16-K path) and the K
 * values rounded to bf16, exact scores and softmax, V rounded to bf16 (oem, g x dv). What the
 * kernel adds is the rounding of each probability to bf16 (at most 2^-8 of it: flash rounds it
 * against a block's running max, so it is not emulated) and f32 sums: bound (g x dv) gets
 * 2^-8 x sum p |V| / l plus the scores' f32 rounding through the softmax. */
static void bf16_emulate(const tsetup *s, float *oem, float *bound) {
    const cpu_attn_args *a = &s->a;
    const int g = a->n_head / a->n_head_kv, dk = a->dk, dv = a->dv;
    const size_t krb = mr_row_size(a->k_type, dk), vrb = a->v_in_k ? krb : mr_row_size(a->v_type, dv);
    const uint8_t *Kh = a->K + (size_t)s->kvh * a->n_ctx * krb;
    const uint8_t *Vh = a->v_in_k ? Kh : a->V + (size_t)s->kvh * a->n_ctx * vrb;
    float *k = mr_malloc(sizeof(float) * (size_t)dk), *v = mr_malloc(sizeof(float) * (size_t)dv);
    float *q = mr_malloc(sizeof(float) * (size_t)dk);
    double *u = mr_malloc(sizeof(double) * (size_t)a->n_cells), *acc = mr_malloc(sizeof(double) * 2 * (size_t)dv);
    for (int h = 0; h < g; h++) {
        for (int i = 0; i < dk; i++) q[i] = bf16r(mr_fp16_to_fp32(mr_fp32_to_fp16(s->q[(size_t)h * dk + i])));
        double mx = -INFINITY, l = 0.0, delta = 0.0;
        for (int c = 0; c < a->n_cells; c++) {
            u[c] = -INFINITY;
            if (!cpu_attn_cell_visible(a->cell_pos, a->cell_seq, c, s->pos, s->seq, a->n_swa)) continue;
            quant_dequant_row(a->k_type, Kh + (size_t)c * krb, k, dk);
            double d = 0.0, da = 0.0;
            for (int i = 0; i < dk; i++) d += (double)q[i] * bf16r(k[i]), da += fabs((double)q[i] * bf16r(k[i]));
            delta = fmax(delta, dk * 0x1p-24 * da * a->scale);
            d *= a->scale;
            if (a->softcap > 0.0f) d = a->softcap * tanh(d / a->softcap);
            u[c] = d, mx = fmax(mx, d);
        }
        for (int i = 0; i < 2 * dv; i++) acc[i] = 0.0;
        for (int c = 0; c < a->n_cells; c++) {
            if (u[c] == -INFINITY) continue;
            u[c] = exp(u[c] - mx), l += u[c];
            quant_dequant_row(a->v_in_k ? a->k_type : a->v_type, Vh + (size_t)c * vrb, v, dv);
            for (int i = 0; i < dv; i++) acc[i] += u[c] * bf16r(v[i]), acc[dv + i] += u[c] * fabs(bf16r(v[i]));
        }
        for (int i = 0; i < dv; i++) {
            oem[(size_t)h * dv + i] = l > 0.0 ? (float)(acc[i] / l) : 0.0f;
            bound[(size_t)h * dv + i] = l > 0.0 ? (float)((0x1p-8 + 2.0 * delta + 1e-5) * acc[dv + i] / l) : 0.0f;
        }
    }
    free(k), free(v), free(q), free(u), free(acc);
}

/* o against the emulation: every element within 1.1 x its bound, and no scale error: the
 * regression of o - oem on oem (rounding is not correlated with the output; a scale error of
 * 0.2 % is). Returns the largest error over its bound. */
static double bf16_check(const char *nm, const float *o, const float *oem, const float *bound, int n) {
    double over = 0.0, xy = 0.0, yy = 0.0;
    for (int i = 0; i < n; i++) {
        const double e = (double)o[i] - oem[i];
        over = fmax(over, fabs(e) / (1.1 * bound[i] + 1e-6));
        xy += e * oem[i], yy += (double)oem[i] * oem[i];
    }
    const double beta = yy > 0.0 ? xy / yy : 0.0;
    CHECK(over <= 1.0, "%s: bf16 products vs their emulation: %.2f x the bound", nm, over);
    CHECK(fabs(beta) <= 2e-3, "%s: bf16 products vs their emulation: scaled by 1 %+.2g", nm, beta);
    return over;
}

/* Tolerances (max abs difference; V elements are in [-1, 1]): against the
 * generic path the SIMD paths differ by float rounding only (the standard
 * path with an f16 V also rounds probabilities to f16, where a flip near a
 * rounding boundary costs up to 2^-11 of a probability); against the
 * reference the query quantization to q8_0 dominates. */
static void check_case(const tcase *tc, int *n_simd, int *n_i8, int *n_bf) {
    char nm[256];
    case_name(tc, nm, sizeof nm);
    tsetup s;
    setup(tc, &s);
    const int g = tc->g, n = g * tc->dv;
    float *o = mr_malloc(sizeof(float) * n), *og = mr_malloc(sizeof(float) * n), *orf = mr_malloc(sizeof(float) * n);
    run_path(&s, 0, o);
    run_path(&s, 1, og);
    run_path(&s, 2, orf);
    const bool simd = cpu_attn_simd_path(&s.a);
    *n_simd += simd;
    /* the SIMD path takes f16 / q8_0 K (dk % 8 / % 32) with f16 / q8_0 V or v_in_k, dv % 32 */
    const bool kok = (tc->kt == MR_TYPE_F16 && tc->dk % 8 == 0) || (tc->kt == MR_TYPE_Q8_0 && tc->dk % 32 == 0);
    const bool vok = (tc->v_in_k || tc->vt == MR_TYPE_Q8_0 || tc->vt == MR_TYPE_F16) && tc->dv % 32 == 0;
    const bool want_simd = have_simd() && kok && vok;
    CHECK(simd == want_simd, "%s: SIMD path taken %d, expected %d", nm, simd, want_simd);
    if (s.n_vis == 0) {
        CHECK(all_finite(o, n) && max_abs(o, n) == 0.0, "%s: nothing visible but output %g", nm, max_abs(o, n));
    } else {
        const double mag = max_abs(og, n);
        CHECK(mag > 1e-3, "%s: generic output is ~0 (%g): the case tests nothing", nm, mag);
        const bool f16p = !tc->flash && (tc->v_in_k ? tc->kt : tc->vt) == MR_TYPE_F16;
        const double tol_g = f16p ? 3e-4 : 2e-5;
        const double tol_r = tc->kt == MR_TYPE_Q8_0 ? 6e-2 : 1e-4;
        double dg = max_abs_diff(o, og, n), dr = max_abs_diff(o, orf, n), over = 0.0;
        if (int8_v_path(&s)) {
            /* the integer V pass: within its rounding bound of the generic path; the f32 V pass
             * (cpu_attn_set_int8_v(0)) within float rounding, as every other case */
            float *bound = mr_malloc(sizeof(float) * n), *o32 = mr_malloc(sizeof(float) * n);
            int8_v_bound(&s, bound, 0);
            double over_r = 0.0;
            for (int i = 0; i < n; i++) {
                over = fmax(over, fabs((double)o[i] - og[i]) / (1.25 * bound[i] + tol_g));
                over_r = fmax(over_r, fabs((double)o[i] - orf[i]) / (1.25 * bound[i] + tol_r));
            }
            CHECK(over <= 1.0, "%s: integer V pass vs generic: %.2f x its rounding bound", nm, over);
            CHECK(over_r <= 1.0, "%s: integer V pass vs reference: %.2f x its rounding bound + %g", nm, over_r, tol_r);
            dr = max_abs_diff(og, orf, n); /* the generic path's own error, against tol_r below */
            cpu_attn_set_int8_v(0);
            run_path(&s, 0, o32);
            cpu_attn_set_int8_v(-1);
            dg = max_abs_diff(o32, og, n);
            (*n_i8) += s.n_vis > 1 && max_abs_diff(o, o32, n) > 0.0;
            free(bound), free(o32);
        }
        if (bf16_path(&s)) {
            /* bf16 products: within their bound of the emulation; the f32 products (cpu_attn_set_bf16(0))
             * within float rounding of the generic path, as every other case */
            float *oem = mr_malloc(sizeof(float) * n), *bound = mr_malloc(sizeof(float) * n);
            float *o32 = mr_malloc(sizeof(float) * n);
            bf16_emulate(&s, oem, bound);
            over = bf16_check(nm, o, oem, bound, n);
            cpu_attn_set_bf16(0);
            run_path(&s, 0, o32);
            cpu_attn_set_bf16(1);
            CHECK(max_abs_diff(o, o32, n) <= 2e-2, "%s: bf16 vs f32 products: max abs diff %g", nm, max_abs_diff(o, o32, n));
            (*n_bf) += max_abs_diff(o, o32, n) > 0.0;
            dg = max_abs_diff(o32, og, n);
            dr = max_abs_diff(og, orf, n);
            free(oem), free(bound), free(o32);
        }
        CHECK(dg <= tol_g, "%s: vs generic: max abs diff %g > %g", nm, dg, tol_g);
        CHECK(dr <= tol_r, "%s: vs reference: max abs diff %g > %g", nm, dr, tol_r);
        if (getenv("TEST_ATTN_VERBOSE"))
            printf("%-90s simd %d  vs generic %.3g  vs ref %.3g  int8 V / bf16 %.2f of bound\n", nm, simd, dg, dr, over);
    }
    free(o), free(og), free(orf);
    teardown(&s);
}

/* The tiled q8_0 cache (attn.h): s's rows copied into it must come back as they were; the decode kernel over
 * it must stay within the integer V pass's rounding bound of the reference (wide: its groups are 32 cells of a
 * 64-cell block, visible or not), whole and split into parts; the other paths (reference, standard, several
 * tokens) read it as rows, so they must give what they give on the rows, bit for bit. */
static int check_tiled(const tcase *tc) {
    char nm[256];
    case_name(tc, nm, sizeof nm);
    tsetup s;
    setup(tc, &s);
    const cpu_attn_args *a = &s.a;
    const int g = tc->g, n = g * tc->dv, np = cpu_attn_tiled_cells(a->n_ctx);
    const size_t krb = mr_row_size(a->k_type, a->dk), vrb = mr_row_size(a->v_type, a->dv);
    uint8_t *TK = mr_malloc(krb * (size_t)np * tc->n_kv), *TV = mr_malloc(vrb * (size_t)np * tc->n_kv);
    uint8_t *row = mr_malloc(krb + vrb);
    int bad = 0;
    for (int h = 0; h < tc->n_kv; h++)
        for (int c = 0; c < a->n_ctx; c++) {
            const uint8_t *kr = a->K + ((size_t)h * a->n_ctx + c) * krb, *vr = a->V + ((size_t)h * a->n_ctx + c) * vrb;
            cpu_attn_tiled_put(TK + (size_t)h * np * krb, np, a->dk, true, c, kr);
            cpu_attn_tiled_put(TV + (size_t)h * np * vrb, np, a->dv, false, c, vr);
        }
    for (int h = 0; h < tc->n_kv; h++)
        for (int c = 0; c < a->n_ctx; c++) {
            cpu_attn_tiled_get(TK + (size_t)h * np * krb, np, a->dk, true, c, row);
            bad += memcmp(row, a->K + ((size_t)h * a->n_ctx + c) * krb, krb) != 0;
            cpu_attn_tiled_get(TV + (size_t)h * np * vrb, np, a->dv, false, c, row);
            bad += memcmp(row, a->V + ((size_t)h * a->n_ctx + c) * vrb, vrb) != 0;
        }
    CHECK(bad == 0, "%s: %d rows differ after the tiled layout's round trip", nm, bad);
    const bool kern = tc->softcap == 0.0f && g == 8 && cpu_attn_int8_v() && /* -fa 0 too: the same attention */
                      cpu_attn_tiled_ok(a->n_head, a->n_head_kv, a->dk, a->dv, a->k_type, a->v_type, a->v_in_k);
    tsetup t = s;
    t.a.K = TK, t.a.V = TV, t.a.n_ctx = np, t.a.tiled = true;
    float *o = mr_malloc(sizeof(float) * n), *ot = mr_malloc(sizeof(float) * n), *orf = mr_malloc(sizeof(float) * n);
    run_path(&s, 2, orf);
    run_path(&t, 2, ot);
    CHECK(memcmp(ot, orf, sizeof(float) * n) == 0, "%s: reference path on the tiled cache differs from the rows'", nm);
    run_path(&s, 0, o);
    run_path(&t, 0, ot);
    if (!kern) {
        CHECK(memcmp(ot, o, sizeof(float) * n) == 0, "%s: tiled cache, rows path: differs from the rows'", nm);
    } else if (s.n_vis == 0) {
        CHECK(all_finite(ot, n) && max_abs(ot, n) == 0.0, "%s: tiled, nothing visible but output %g", nm, max_abs(ot, n));
    } else {
        float *bound = mr_malloc(sizeof(float) * n);
        int8_v_bound(&s, bound, 3);
        /* against the reference (exact query) and, tighter, the generic path (the same q8_0 query) */
        float *og = mr_malloc(sizeof(float) * n);
        run_path(&s, 1, og);
        double over = 0.0, over_g = 0.0;
        for (int i = 0; i < n; i++) {
            over = fmax(over, fabs((double)ot[i] - orf[i]) / (1.25 * bound[i] + 6e-2));
            over_g = fmax(over_g, fabs((double)ot[i] - og[i]) / (1.25 * bound[i] + 2e-5));
        }
        free(og);
        CHECK(max_abs(orf, n) > 1e-3, "%s: reference output ~0: the case tests nothing", nm);
        CHECK(all_finite(ot, n) && over <= 1.0, "%s: tiled kernel vs reference: %.2f x the bound", nm, over);
        CHECK(over_g <= 1.0, "%s: tiled kernel vs generic: %.2f x the bound", nm, over_g);
        over = fmax(over, over_g);
        if (getenv("TEST_ATTN_VERBOSE")) printf("%-90s tiled: %.2f of bound\n", nm, over);
        /* split into parts and merged: the same blocks, so the same output to float rounding */
        int per = 0;
        const int npart = cpu_attn_split(&t.a, &per); /* 1 without flash */
        if (npart > 1) {
            float *parts = mr_malloc(sizeof(float) * (size_t)npart * n), *mls = mr_malloc(sizeof(float) * 2 * g * npart);
            float *merged = mr_malloc(sizeof(float) * n);
            float *scratch = mr_malloc_aligned(sizeof(float) * cpu_attn_scratch_floats(&t.a));
            for (int p = 0; p < npart; p++)
                cpu_attn_head_part(&t.a, s.kvh, s.q, s.pos, s.seq, p * per, (p + 1) * per, parts + (size_t)p * n,
                                   mls + (size_t)p * 2 * g, scratch);
            cpu_attn_merge(g, tc->dv, npart, parts, mls, merged);
            CHECK(max_abs_diff(merged, ot, n) <= 2e-5, "%s: tiled, %d parts merged vs one call: %g", nm, npart,
                  max_abs_diff(merged, ot, n));
            /* with a query tag the parts after the first reuse the queries' form: the same bits */
            cpu_attn_args ta = t.a;
            ta.q_tag = 0x5eed;
            float *pt = mr_malloc(sizeof(float) * (size_t)npart * n), *mt = mr_malloc(sizeof(float) * 2 * g * npart);
            for (int p = 0; p < npart; p++)
                cpu_attn_head_part(&ta, s.kvh, s.q, s.pos, s.seq, p * per, (p + 1) * per, pt + (size_t)p * n,
                                   mt + (size_t)p * 2 * g, scratch);
            CHECK(memcmp(pt, parts, sizeof(float) * (size_t)npart * n) == 0 && memcmp(mt, mls, sizeof(float) * 2 * g * npart) == 0,
                  "%s: tiled parts with a query tag differ from untagged ones", nm);
            free(pt), free(mt);
            free(parts), free(mls), free(merged), mr_free_aligned(scratch);
        }
        free(bound);
    }
    if (cpu_attn_multi_tokens(&s.a) > 0) { /* several tokens: the last 3 positions, through the rows */
        const int nt = 3;
        float *q = mr_malloc(sizeof(float) * (size_t)nt * a->n_head * a->dk);
        float *om = mr_malloc(sizeof(float) * (size_t)nt * a->n_head * a->dv), *omt = mr_malloc(sizeof(float) * (size_t)nt * a->n_head * a->dv);
        int32_t pos[3], seq[3];
        for (int i = 0; i < nt * a->n_head * a->dk; i++) q[i] = frand();
        for (int i = 0; i < nt; i++) pos[i] = s.pos - 2 + i, seq[i] = s.seq;
        float *scratch = mr_malloc_aligned(sizeof(float) * cpu_attn_scratch_floats(a));
        for (int kvh = 0; kvh < tc->n_kv; kvh++) {
            const size_t h0 = (size_t)kvh * g;
            cpu_attn_multi(&s.a, kvh, nt, q + h0 * a->dk, (size_t)a->n_head * a->dk, pos, seq, om + h0 * a->dv,
                           (size_t)a->n_head * a->dv, scratch);
            cpu_attn_multi(&t.a, kvh, nt, q + h0 * a->dk, (size_t)a->n_head * a->dk, pos, seq, omt + h0 * a->dv,
                           (size_t)a->n_head * a->dv, scratch);
        }
        CHECK(memcmp(om, omt, sizeof(float) * (size_t)nt * a->n_head * a->dv) == 0,
              "%s: several tokens on the tiled cache differ from the rows'", nm);
        free(q), free(om), free(omt), mr_free_aligned(scratch);
    }
    free(o), free(ot), free(orf), free(TK), free(TV), free(row);
    teardown(&s);
    return kern;
}

/* cpu_attn_multi (several tokens of a prompt at once) against cpu_attn_head per token, bit for bit: T tokens
 * at consecutive positions after a cache of `depth` cells (the tokens' own cells included, so
 * the causal mask cuts through blocks), every 5th token on another sequence (masked = true:
 * cells of either sequence, empty cells, a window), calls of nt tokens and a shorter last one. */
static void check_multi(uint32_t kt, uint32_t vt, int g, int n_kv, int dk, int dv, bool v_in_k, int depth, bool masked,
                        int n_swa, bool flash, int *n_multi, int *n_multi_i8) {
    const int T = 37;
    tcase tc = {kt, vt, g, n_kv, dk, dv, depth + T, v_in_k, false, flash, n_swa, 3.0f, 0.0f, false};
    tsetup s;
    setup(&tc, &s);
    int32_t pos[64], seq[64];
    for (int c = 0; c < tc.n_cells; c++) { /* cells in order; the prompt's after the cache */
        s.cp[c] = c, s.cs[c] = 2;
        if (masked && c % 7 == 3) s.cs[c] = 4; /* sequence 2 only */
        if (masked && c % 11 == 5) s.cp[c] = -1;
    }
    for (int t = 0; t < T; t++) pos[t] = depth + t, seq[t] = masked && t % 5 == 4 ? 2 : 1;
    { /* setup's large rows are for its own query: all rows alike here (the scores' size sets the rounding) */
        const int n_ctx = s.a.n_ctx;
        const size_t krb = mr_row_size(kt, dk), vrb = v_in_k ? 0 : mr_row_size(vt, dv);
        float *row = mr_malloc(sizeof(float) * (size_t)(dk > dv ? dk : dv));
        for (size_t r = 0; r < (size_t)n_ctx * n_kv; r++) {
            for (int i = 0; i < dk; i++) row[i] = frand();
            quant_quantize_row(kt, row, s.K + r * krb, dk);
            if (!v_in_k) {
                for (int i = 0; i < dv; i++) row[i] = frand();
                quant_quantize_row(vt, row, s.V + r * vrb, dv);
            }
        }
        free(row);
    }
    const int H = g * n_kv;
    float *q = mr_malloc(sizeof(float) * (size_t)T * H * dk);
    for (size_t i = 0; i < (size_t)T * H * dk; i++) q[i] = 3.0f * frand();
    float *o1 = mr_malloc(sizeof(float) * (size_t)T * H * dv), *om = mr_malloc(sizeof(float) * (size_t)T * H * dv);
    const size_t nf = cpu_attn_scratch_floats(&s.a);
    float *scratch = mr_malloc_aligned(sizeof(float) * nf);
    /* the multi-token path is the f32 products' twin (the bf16 products and the integer V pass:
     * check_case) */
    const bool i8 = cpu_attn_int8_v();
    cpu_attn_set_bf16(0);
    cpu_attn_set_int8_v(0);
    for (int t = 0; t < T; t++)
        for (int kvh = 0; kvh < n_kv; kvh++)
            cpu_attn_head(&s.a, kvh, q + ((size_t)t * H + (size_t)kvh * g) * dk, pos[t], seq[t],
                          o1 + ((size_t)t * H + (size_t)kvh * g) * dv, scratch);
    cpu_attn_set_bf16(1);
    cpu_attn_set_int8_v(i8);
    const int nt = cpu_attn_multi_tokens(&s.a);
    cpu_attn_set_int8_v(0); /* the f32 V pass: bit for bit against o1 */
    char nm[200];
    snprintf(nm, sizeof nm, "multi: %s/%s g %d kv %d dk %d dv %d%s depth %d%s swa %d %s", mr_type_name(kt),
             mr_type_name(v_in_k ? kt : vt), g, n_kv, dk, dv, v_in_k ? " v_in_k" : "", depth, masked ? " masked" : "",
             n_swa, flash ? "flash" : "std");
    if (nt > 0) {
        *n_multi += 1;
        for (size_t i = 0; i < nf; i++) scratch[i] = NAN;
        for (size_t i = 0; i < (size_t)T * H * dv; i++) om[i] = NAN;
        for (int t0 = 0; t0 < T; t0 += nt)
            for (int kvh = 0; kvh < n_kv; kvh++) {
                const size_t h0 = (size_t)t0 * H + (size_t)kvh * g;
                cpu_attn_multi(&s.a, kvh, MR_MIN(nt, T - t0), q + h0 * dk, (size_t)H * dk, pos + t0, seq + t0,
                               om + h0 * dv, (size_t)H * dv, scratch);
            }
        const size_t n = (size_t)T * H * dv;
        const double mag = max_abs(o1, (int)n), d = max_abs_diff(om, o1, (int)n);
        CHECK(mag > 1e-3, "%s: output ~0 (%g): the case tests nothing", nm, mag);
        if (getenv("TEST_ATTN_DEBUG"))
            for (size_t i = 0; i < n; i++)
                if (om[i] != o1[i]) {
                    const size_t per = (size_t)H * dv;
                    printf("first diff: token %zu head %zu dim %zu: %.9g vs %.9g (pos %d seq %d)\n", i / per,
                           i % per / dv, i % dv, om[i], o1[i], pos[i / per], seq[i / per]);
                    break;
                }
        /* the same sums in the same order: bit for bit (so results do not depend on the micro-batch size) */
        CHECK(memcmp(om, o1, sizeof(float) * n) == 0, "%s: differs from cpu_attn_head: max abs diff %g (tokens per call %d)",
              nm, d, nt);
        if (getenv("TEST_ATTN_VERBOSE")) printf("%-90s nt %d  vs per-token %.3g\n", nm, nt, d);
        /* with the integer V pass (a q8_0 V of 128 or more): within its rounding bound of the f32
         * V pass, per token and head (a bound for any grouping of the cells it groups) */
        const mr_cpu_features *f = mr_cpu();
        const bool vnni = f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni;
        if (i8 && vnni && (v_in_k ? kt : vt) == MR_TYPE_Q8_0 && dv >= CPU_ATTN_INT8_V_MIN_DV &&
            dv < CPU_ATTN_INT8_V_MULTI_DV) {
            cpu_attn_set_int8_v(1);
            for (int t0 = 0; t0 < T; t0 += nt)
                for (int kvh = 0; kvh < n_kv; kvh++) {
                    const size_t h0 = (size_t)t0 * H + (size_t)kvh * g;
                    cpu_attn_multi(&s.a, kvh, MR_MIN(nt, T - t0), q + h0 * dk, (size_t)H * dk, pos + t0, seq + t0,
                                   om + h0 * dv, (size_t)H * dv, scratch);
                }
            float *bound = mr_malloc(sizeof(float) * (size_t)g * dv);
            double over = 0.0;
            for (int t = 0; t < T; t++)
                for (int kvh = 0; kvh < n_kv; kvh++) {
                    tsetup v = s;
                    const size_t h0 = (size_t)t * H + (size_t)kvh * g;
                    v.q = q + h0 * dk, v.pos = pos[t], v.seq = seq[t], v.kvh = kvh;
                    int8_v_bound(&v, bound, flash ? 1 : 2);
                    for (int i = 0; i < g * dv; i++)
                        over = fmax(over, fabs((double)om[h0 * dv + i] - o1[h0 * dv + i]) / (1.25 * bound[i] + 2e-5));
                }
            free(bound);
            CHECK(over <= 1.0, "%s: integer V pass vs f32: %.2f x its rounding bound", nm, over);
            CHECK(max_abs_diff(om, o1, (int)n) > 0.0, "%s: the integer V pass changed nothing: not taken?", nm);
            *n_multi_i8 += 1;
            if (getenv("TEST_ATTN_VERBOSE")) printf("%-90s integer V: %.2f of its bound\n", nm, over);
        }
    }
    cpu_attn_set_int8_v(i8);
    mr_free_aligned(scratch);
    free(q), free(o1), free(om);
    teardown(&s);
}

/* Under MOERUN_CPU=generic: no SIMD path, and cpu_attn_head is the generic path bit for bit. */
static int generic_child(void) {
    const tcase cases[] = {
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, 300, false, true, true, 0, 3, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, 300, false, true, false, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 8, 2, 128, 128, 300, false, true, true, 0, 3, 0, false},
    };
    for (size_t i = 0; i < MR_ARRAY_LEN(cases); i++) {
        char nm[256];
        case_name(&cases[i], nm, sizeof nm);
        tsetup s;
        setup(&cases[i], &s);
        const int n = cases[i].g * cases[i].dv;
        float *o = mr_malloc(sizeof(float) * n), *og = mr_malloc(sizeof(float) * n);
        CHECK(!cpu_attn_simd_path(&s.a), "MOERUN_CPU=generic: %s takes a SIMD path", nm);
        run_path(&s, 0, o);
        run_path(&s, 1, og);
        CHECK(memcmp(o, og, sizeof(float) * n) == 0, "MOERUN_CPU=generic: %s differs from the generic path", nm);
        free(o), free(og);
        teardown(&s);
    }
    return check_done();
}

/* AVX-512 (attn_avx512.c) against AVX2: these cases' outputs, each from a fresh generator,
 * concatenated (n floats), with the f32 V pass (the integer one has no AVX2 twin); wide: the
 * single tiles' q8_0 K scores on 512-bit vectors (cpu_attn_set_wide_scores) or not. */
static float *zcases_run(size_t *n, int wide) {
    const tcase cases[] = {
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, 300, false, true, true, 0, 3, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, 300, false, true, false, 0, 3, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 3, 2, 128, 128, 129, false, false, true, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 8, 2, 128, 128, 300, false, true, true, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 5, 2, 64, 64, 77, false, true, false, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_Q8_0, 8, 2, 128, 128, 100, false, true, true, 0, 3, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 16, 1, 576, 512, 150, true, true, true, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 16, 1, 576, 512, 150, true, true, false, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 8, 1, 64, 64, 93, false, true, true, 0, 3, 30.0f, false}, /* softcap, odd cells */
        /* q8_0 K tiles in pairs and alone (attn_q8_scores_z): 3 tiles, a partial second tile, softcap */
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 24, 1, 128, 128, 201, false, true, true, 0, 3, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_F16, 12, 2, 64, 64, 130, false, true, false, 0, 3, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 16, 1, 128, 128, 99, false, false, true, 0, 3, 20.0f, false},
        /* one tile (attn_q8_scores_zw where wide): absent heads, masked, soft-capped, 3 K blocks */
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 6, 1, 64, 64, 77, false, true, true, 0, 3, 20.0f, false},
        {MR_TYPE_Q8_0, MR_TYPE_F16, 7, 2, 96, 96, 45, false, false, false, 0, 3, 0, false},
    };
    size_t tot = 0;
    cpu_attn_set_wide_scores(wide);
    cpu_attn_set_int8_v(0); /* the f32 V pass and products, which AVX2 shares bit for bit */
    cpu_attn_set_bf16(0);
    for (size_t i = 0; i < MR_ARRAY_LEN(cases); i++) tot += (size_t)cases[i].g * cases[i].dv;
    float *o = mr_malloc(sizeof(float) * tot), *p = o;
    for (size_t i = 0; i < MR_ARRAY_LEN(cases); i++) {
        rng = 0x9E3779B97F4A7C15ull ^ (i + 1);
        tsetup s;
        setup(&cases[i], &s);
        run_path(&s, 0, p);
        p += (size_t)cases[i].g * cases[i].dv;
        teardown(&s);
    }
    cpu_attn_set_int8_v(-1);
    cpu_attn_set_bf16(1);
    cpu_attn_set_wide_scores(-1);
    *n = tot;
    return o;
}

/* Under MOERUN_CPU=avx2: the outputs equal those the parent wrote to path. */
static int avx2_child(const char *path) {
    size_t n = 0;
    float *o = zcases_run(&n, 1), *z = mr_malloc(sizeof(float) * n);
    FILE *f = fopen(path, "rb");
    CHECK(f && fread(z, sizeof(float), n, f) == n, "read %s", path);
    if (f) fclose(f);
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += memcmp(&o[i], &z[i], sizeof(float)) != 0;
    CHECK(diff == 0, "AVX-512 attention differs from AVX2 in %zu of %zu outputs", diff, n);
    free(o), free(z);
    return check_done();
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--generic-child")) return generic_child();
    if (argc > 2 && !strcmp(argv[1], "--avx2-child")) return avx2_child(argv[2]);
    int n_simd = 0, n_cases = 0, n_i8 = 0, n_bf = 0;
    cpu_attn_set_bf16(-1);
    CHECK(!cpu_attn_bf16() || getenv("MOERUN_ATTN_BF16"), "bf16 products on by default");
    cpu_attn_set_bf16(1); /* opt-in (MOERUN_ATTN_BF16=1): tested wherever the CPU has them */
    const uint32_t kv[][2] = {{MR_TYPE_Q8_0, MR_TYPE_Q8_0}, {MR_TYPE_Q8_0, MR_TYPE_F16}, {MR_TYPE_F16, MR_TYPE_F16}};
    const int gs[] = {1, 2, 3, 8, 16};
    const int depths[] = {1, 3, 63, 64, 65, 129, 300, 1030};
    for (size_t t = 0; t < MR_ARRAY_LEN(kv); t++)
        for (size_t gi = 0; gi < MR_ARRAY_LEN(gs); gi++)
            for (size_t di = 0; di < MR_ARRAY_LEN(depths); di++)
                for (int fl = 0; fl < 2; fl++)
                    for (int mk = 0; mk < 2; mk++) {
                        const int g = gs[gi], d = depths[di];
                        if (g == 16 && d > 300) continue; /* keep the test quick */
                        tcase tc = {kv[t][0], kv[t][1], g, 2, 128, 128, d, false, mk, fl, 0, 3.0f, 0.0f, false};
                        if (mk && d > 64) tc.n_swa = d / 2; /* window: the oldest cells drop out */
                        check_case(&tc, &n_simd, &n_i8, &n_bf), n_cases++;
                    }
    /* other head sizes, peaky softmax, soft-capping, a single KV head */
    const tcase extra[] = {
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 1, 64, 96, 200, false, true, true, 0, 3, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 1, 64, 96, 200, false, true, false, 0, 3, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 4, 2, 256, 256, 500, false, false, true, 0, 12, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 4, 2, 256, 256, 500, false, false, false, 0, 12, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 5, 2, 128, 128, 150, false, true, true, 0, 12, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, 400, false, false, true, 0, 20, 30, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, 400, false, false, false, 0, 20, 30, false},
        {MR_TYPE_F16, MR_TYPE_F16, 8, 2, 128, 128, 400, false, false, true, 0, 20, 30, false},
        {MR_TYPE_F16, MR_TYPE_F16, 6, 2, 64, 64, 77, false, true, true, 0, 3, 0, false},
        /* MLA-like: one KV head, the value is the first dv elements of the K row */
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 16, 1, 576, 512, 150, true, true, true, 0, 3, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 16, 1, 576, 512, 150, true, true, false, 0, 3, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 12, 1, 576, 512, 70, true, false, true, 0, 3, 0, false},
        /* the integer V pass (q8_0 V, dv >= 256): partial tiles, windows, gaps, an f16 K, peaky softmax */
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 5, 1, 576, 512, 300, true, true, true, 100, 3, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 3, 2, 256, 256, 300, false, false, false, 0, 3, 0, true},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 16, 1, 576, 512, 300, true, false, true, 0, 3, 0, true},
        {MR_TYPE_F16, MR_TYPE_Q8_0, 8, 2, 256, 512, 130, false, true, true, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_Q8_0, 12, 1, 256, 256, 97, false, false, false, 0, 3, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 1, 256, 256, 200, false, true, true, 0, 20, 30, false},
        /* MLA-like with an f16 cache; an f16 K with dk a multiple of 8 only; mixed K / V types */
        {MR_TYPE_F16, MR_TYPE_F16, 16, 1, 576, 512, 150, true, true, true, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 16, 1, 576, 512, 150, true, true, false, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 8, 2, 72, 64, 90, false, true, true, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_Q8_0, 8, 2, 128, 128, 100, false, true, true, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_Q8_0, 3, 2, 128, 128, 100, false, true, false, 0, 3, 0, false},
        /* bf16 products (f16 K and V, dv >= 256, whole 8-head tiles): a separate V, 3 tiles, peaky
         * softmax, a window, a gap, soft-capping, odd cell counts, one cell */
        {MR_TYPE_F16, MR_TYPE_F16, 8, 2, 256, 256, 301, false, true, true, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 8, 2, 256, 256, 129, false, false, false, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 24, 1, 576, 512, 97, true, true, true, 0, 12, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 16, 1, 576, 512, 300, true, true, true, 100, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 16, 1, 576, 512, 300, true, false, false, 0, 3, 0, true},
        {MR_TYPE_F16, MR_TYPE_F16, 16, 1, 576, 512, 200, true, false, true, 0, 20, 30, false},
        {MR_TYPE_F16, MR_TYPE_F16, 8, 1, 320, 288, 65, false, false, true, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 16, 1, 576, 512, 1, true, false, true, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 12, 1, 576, 512, 70, true, false, true, 0, 3, 0, false}, /* 12 heads: f32 */
        /* blocks with no visible cell between visible ones */
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, 300, false, false, true, 0, 3, 0, true},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, 300, false, false, false, 0, 3, 0, true},
        {MR_TYPE_F16, MR_TYPE_F16, 8, 2, 128, 128, 300, false, false, true, 0, 3, 0, true},
        {MR_TYPE_F16, MR_TYPE_F16, 2, 2, 128, 128, 300, false, false, false, 0, 3, 0, true},
        /* the generic path (no SIMD path for these types or sizes) */
        {MR_TYPE_Q8_0, MR_TYPE_Q4_0, 8, 2, 128, 128, 100, false, true, false, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 8, 2, 64, 72, 100, false, true, true, 0, 3, 0, false},
        {MR_TYPE_F32, MR_TYPE_F32, 8, 2, 64, 64, 100, false, true, true, 0, 3, 0, false},
    };
    for (size_t i = 0; i < MR_ARRAY_LEN(extra); i++) check_case(&extra[i], &n_simd, &n_i8, &n_bf), n_cases++;
    /* a query that sees nothing (all cells in the future or empty) */
    for (int fl = 0; fl < 2; fl++) {
        tcase tc = {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, 40, false, false, fl, 0, 3, 0, false};
        tsetup s;
        setup(&tc, &s);
        for (int c = 0; c < tc.n_cells; c++) s.cp[c] = c < 20 ? -1 : s.pos + 1 + c;
        float o[8 * 128];
        run_path(&s, 0, o);
        CHECK(all_finite(o, 8 * 128) && max_abs(o, 8 * 128) == 0.0, "nothing visible (flash %d): output not 0", fl);
        teardown(&s);
    }
    /* model_attn_run splits the query heads of one KV head into slices of 8
     * when a decode step has fewer (token, KV head) items than threads (MLA):
     * the slices must give the whole call's output bit for bit */
    const tcase split[] = {
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 16, 1, 576, 512, 300, true, true, true, 0, 3, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 16, 1, 576, 512, 300, true, true, false, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 16, 1, 576, 512, 300, true, false, true, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 16, 1, 576, 512, 300, true, false, false, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 32, 1, 128, 128, 200, false, true, true, 0, 3, 0, false},
    };
    for (size_t i = 0; i < MR_ARRAY_LEN(split); i++) {
        const tcase *tc = &split[i];
        tsetup s;
        setup(tc, &s);
        const int g = tc->g, n = g * tc->dv;
        float *whole = mr_malloc(sizeof(float) * (size_t)n), *parts = mr_malloc(sizeof(float) * (size_t)n);
        run_path(&s, 0, whole);
        for (int ns = 2; ns <= g / 8; ns *= 2) {
            cpu_attn_args sa = s.a;
            sa.n_head = s.a.n_head / ns;
            const size_t nf = cpu_attn_scratch_floats(&sa);
            float *scratch = mr_malloc_aligned(sizeof(float) * nf);
            for (int k = 0; k < ns; k++)
                cpu_attn_head(&sa, s.kvh, s.q + (size_t)k * (g / ns) * tc->dk, s.pos, s.seq,
                              parts + (size_t)k * (g / ns) * tc->dv, scratch);
            mr_free_aligned(scratch);
            char nm[160];
            CHECK(memcmp(whole, parts, sizeof(float) * (size_t)n) == 0, "%s: %d head slices differ from one call",
                  case_name(tc, nm, sizeof nm), ns);
        }
        free(whole), free(parts);
        teardown(&s);
    }

    /* a decode step split over cells (cpu_attn_split, cpu_attn_head_part, cpu_attn_merge; flash): the
     * merged parts against one call (float rounding) and the reference; parts that see no cell
     * (gap, window, nothing visible at all); the split's shape */
    const tcase cells[] = {
        {MR_TYPE_F16, MR_TYPE_F16, 8, 2, 128, 128, 1500, false, true, true, 0, 3, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, 1500, false, true, true, 900, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_Q8_0, 5, 2, 128, 128, 1100, false, false, true, 0, 12, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 8, 1, 64, 64, 2000, false, false, true, 0, 3, 0, true},
        {MR_TYPE_F16, MR_TYPE_F16, 16, 1, 576, 512, 1300, true, true, true, 0, 3, 0, false},
        {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 16, 1, 576, 512, 1300, true, false, true, 0, 3, 0, false},
        {MR_TYPE_F16, MR_TYPE_F16, 8, 1, 64, 64, 700, false, true, true, 0, 3, 30.0f, false},
        {MR_TYPE_F32, MR_TYPE_F32, 4, 2, 64, 64, 1200, false, true, true, 0, 3, 0, false}, /* generic path */
    };
    for (size_t i = 0; i < MR_ARRAY_LEN(cells); i++) {
        const tcase *tc = &cells[i];
        char nm[256];
        case_name(tc, nm, sizeof nm);
        tsetup s;
        setup(tc, &s);
        const int g = tc->g, n = g * tc->dv;
        for (int none = 0; none < 2; none++) {
            if (none) /* nothing visible: every part empty */
                for (int c = 0; c < tc->n_cells; c++) s.cp[c] = -1;
            int per = 0;
            const int np = cpu_attn_split(&s.a, &per);
            CHECK(np > 1 && np <= CPU_ATTN_SPLIT_MAX && per >= CPU_ATTN_SPLIT_MIN && (np - 1) * per < tc->n_cells &&
                      np * per >= tc->n_cells,
                  "%s: split into %d parts of %d cells", nm, np, per);
            if (np < 1 || np > CPU_ATTN_SPLIT_MAX) break;
            float *whole = mr_malloc(sizeof(float) * (size_t)n), *orf = mr_malloc(sizeof(float) * (size_t)n);
            float *parts = mr_malloc(sizeof(float) * (size_t)n * np), *mls = mr_malloc(sizeof(float) * 2 * g * np);
            float *merged = mr_malloc(sizeof(float) * (size_t)n);
            run_path(&s, 0, whole);
            run_path(&s, 2, orf);
            const size_t nf = cpu_attn_scratch_floats(&s.a);
            float *scratch = mr_malloc_aligned(sizeof(float) * nf);
            for (size_t k = 0; k < nf; k++) scratch[k] = NAN;
            for (int p = 0; p < np; p++)
                cpu_attn_head_part(&s.a, s.kvh, s.q, s.pos, s.seq, p * per, (p + 1) * per, parts + (size_t)p * n,
                                   mls + (size_t)p * 2 * g, scratch);
            cpu_attn_merge(g, tc->dv, np, parts, mls, merged);
            { /* with a query tag the parts after the first reuse its prepared queries (the same
               * scratch): bit for bit the untagged parts; another q under the same tag is its own */
                cpu_attn_args ta = s.a;
                ta.q_tag = 1000 + i;
                float *tp = mr_malloc(sizeof(float) * (size_t)n * np), *tm = mr_malloc(sizeof(float) * 2 * g * np);
                float *q2 = mr_malloc(sizeof(float) * (size_t)tc->g * tc->dk);
                for (int k = 0; k < tc->g * tc->dk; k++) q2[k] = -0.5f * s.q[k];
                int bad = 0;
                for (int rep = 0; rep < 2; rep++) { /* rep 1: q2, then s.q again, under the same tag */
                    for (int p = 0; p < np; p++)
                        cpu_attn_head_part(&ta, s.kvh, rep ? q2 : s.q, s.pos, s.seq, p * per, (p + 1) * per,
                                           tp + (size_t)p * n, tm + (size_t)p * 2 * g, scratch);
                    if (rep) {
                        float *rp = mr_malloc(sizeof(float) * (size_t)n * np), *rm = mr_malloc(sizeof(float) * 2 * g * np);
                        for (int p = 0; p < np; p++)
                            cpu_attn_head_part(&s.a, s.kvh, q2, s.pos, s.seq, p * per, (p + 1) * per, rp + (size_t)p * n,
                                               rm + (size_t)p * 2 * g, scratch);
                        bad += memcmp(tp, rp, sizeof(float) * (size_t)n * np) != 0;
                        free(rp), free(rm);
                        for (int p = 0; p < np; p++)
                            cpu_attn_head_part(&ta, s.kvh, s.q, s.pos, s.seq, p * per, (p + 1) * per, tp + (size_t)p * n,
                                               tm + (size_t)p * 2 * g, scratch);
                    }
                    bad += memcmp(tp, parts, sizeof(float) * (size_t)n * np) != 0;
                    bad += memcmp(tm, mls, sizeof(float) * 2 * g * np) != 0;
                }
                CHECK(bad == 0, "%s: parts with a query tag differ from untagged ones (%d)", nm, bad);
                free(tp), free(tm), free(q2);
            }
            mr_free_aligned(scratch);
            double dw = max_abs_diff(merged, whole, n), dr = max_abs_diff(merged, orf, n);
            const double tol_r = tc->kt == MR_TYPE_Q8_0 ? 6e-2 : 1e-4;
            if (!none && int8_v_path(&s)) {
                /* the integer V pass rounds each part's weights against its own block maxima: merged
                 * and whole are each within the rounding bound of the exact weights */
                float *bound = mr_malloc(sizeof(float) * (size_t)n);
                int8_v_bound(&s, bound, 0);
                double ow = 0.0, orr = 0.0;
                for (int k = 0; k < n; k++) {
                    ow = fmax(ow, fabs((double)merged[k] - whole[k]) / (2.5 * bound[k] + 2e-5));
                    orr = fmax(orr, fabs((double)merged[k] - orf[k]) / (1.25 * bound[k] + tol_r));
                }
                CHECK(ow <= 1.0 && orr <= 1.0, "%s: integer V pass, %d parts: %.2f / %.2f x the bounds (whole / ref)", nm,
                      np, ow, orr);
                dw = dr = 0.0;
                free(bound);
            }
            if (!none && bf16_path(&s)) { /* bf16 products: each part rounds its own probabilities */
                float *oem = mr_malloc(sizeof(float) * (size_t)n), *bound = mr_malloc(sizeof(float) * (size_t)n);
                bf16_emulate(&s, oem, bound);
                bf16_check(nm, merged, oem, bound, n);
                bf16_check(nm, whole, oem, bound, n);
                dw = dr = 0.0;
                free(oem), free(bound);
            }
            if (none) CHECK(all_finite(merged, n) && max_abs(merged, n) == 0.0, "%s: split, nothing visible: not 0", nm);
            else {
                CHECK(max_abs(whole, n) > 1e-3, "%s: output ~0: the case tests nothing", nm);
                CHECK(dw <= 2e-5, "%s: %d parts merged vs one call: max abs diff %g", nm, np, dw);
                CHECK(dr <= tol_r, "%s: %d parts merged vs reference: max abs diff %g", nm, np, dr);
            }
            if (getenv("TEST_ATTN_VERBOSE")) printf("split %-84s parts %d  vs whole %.3g  vs ref %.3g\n", nm, np, dw, dr);
            free(whole), free(orf), free(parts), free(mls), free(merged);
        }
        teardown(&s);
    }
    { /* the split's shape: no split at or under CPU_ATTN_SPLIT_MIN cells, without flash or in ref; at most
       * CPU_ATTN_SPLIT_MAX parts of whole 128-cell blocks on a long cache */
        cpu_attn_args a = {.n_head = 8, .n_head_kv = 1, .dk = 128, .dv = 128, .flash = true, .n_cells = 512};
        int per = 0;
        CHECK(cpu_attn_split(&a, &per) == 1, "split of 512 cells");
        a.n_cells = 513;
        CHECK(cpu_attn_split(&a, &per) == 2 && per == 512, "split of 513 cells");
        a.n_cells = 1000000;
        const int np = cpu_attn_split(&a, &per);
        CHECK(np <= CPU_ATTN_SPLIT_MAX && per % 128 == 0 && (long)np * per >= a.n_cells, "split of 1e6 cells: %d x %d",
              np, per);
        a.flash = false;
        CHECK(cpu_attn_split(&a, &per) == 1, "split without flash");
        a.flash = true, a.ref = true;
        CHECK(cpu_attn_split(&a, &per) == 1, "split in ref");
    }

    printf("%d cases, %d on a SIMD path, %d through the integer V pass, %d in bf16 products\n", n_cases, n_simd, n_i8,
           n_bf);
    {
        const mr_cpu_features *f = mr_cpu();
        const bool want_i8 = have_simd() && f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni && cpu_attn_int8_v();
        CHECK(want_i8 ? n_i8 >= 10 : n_i8 == 0, "integer V pass taken in %d cases (this CPU: %s)", n_i8,
              want_i8 ? "expected" : "not expected");
        const bool want_bf = have_simd() && f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni && f->avx512bf16;
        CHECK(want_bf ? n_bf >= 10 : n_bf == 0, "bf16 products taken in %d cases (this CPU: %s)", n_bf,
              want_bf ? "expected" : "not expected");
        if (!want_bf) printf("no AVX512_BF16 on this CPU: the bf16 products are not tested (skipped)\n");
    }

    /* several tokens at once (AVX-512; flash and standard) */
    enum { F16 = MR_TYPE_F16, Q8 = MR_TYPE_Q8_0 };
    int n_multi = 0, n_multi_i8 = 0;
    const mr_cpu_features *fm = mr_cpu();
    const bool want_multi = have_simd() && fm->avx512f && fm->avx512bw && fm->avx512vl && fm->avx512vnni;
    for (int fl = 0; fl < 2; fl++) {
        check_multi(F16, F16, 8, 2, 128, 128, false, 0, false, 0, fl, &n_multi, &n_multi_i8);
        check_multi(F16, F16, 8, 2, 128, 128, false, 150, true, 0, fl, &n_multi, &n_multi_i8);
        check_multi(F16, F16, 8, 2, 128, 128, false, 200, false, 90, fl, &n_multi, &n_multi_i8);
        check_multi(F16, F16, 16, 1, 576, 512, true, 100, true, 0, fl, &n_multi, &n_multi_i8);
        check_multi(F16, F16, 3, 2, 64, 64, false, 70, true, 0, fl, &n_multi, &n_multi_i8);
        check_multi(F16, F16, 32, 1, 128, 128, false, 64, false, 0, fl, &n_multi, &n_multi_i8);
        check_multi(F16, F16, 64, 1, 128, 128, false, 10, true, 0, fl, &n_multi, &n_multi_i8);
        check_multi(F16, F16, 4, 1, 256, 256, false, 0, false, 0, fl, &n_multi, &n_multi_i8);
        check_multi(F16, F16, 4, 1, 256, 256, false, 3, false, 20, fl, &n_multi, &n_multi_i8);
        check_multi(F16, F16, 4, 1, 64, 64, false, 3, false, 32, fl, &n_multi, &n_multi_i8);
        check_multi(F16, F16, 4, 1, 64, 64, false, 34, false, 32, fl, &n_multi, &n_multi_i8);
        check_multi(F16, F16, 8, 2, 72, 64, false, 50, false, 0, fl, &n_multi, &n_multi_i8);    /* declined: head sizes */
        /* value sizes not a multiple of 64 (a V tile of 32 dims): MLA's prompt form (g 1, dk 192,
         * dv 128... and its sizes on the tiny fixtures, dk 64, dv 32); dv 48 or 80 would differ from
         * the per-token kernel in the last bits, so they stay on it */
        check_multi(F16, F16, 1, 3, 192, 128, false, 90, true, 0, fl, &n_multi, &n_multi_i8);
        check_multi(F16, F16, 1, 8, 64, 32, false, 40, false, 0, fl, &n_multi, &n_multi_i8);
        check_multi(F16, F16, 2, 2, 64, 96, false, 70, true, 0, fl, &n_multi, &n_multi_i8);
        check_multi(F16, F16, 2, 2, 64, 48, false, 70, true, 0, fl, &n_multi, &n_multi_i8);     /* declined: dv % 32 */
        check_multi(F16, F16, 4, 1, 32, 80, false, 20, false, 0, fl, &n_multi, &n_multi_i8);    /* declined: dv % 32 */
    }
    /* a q8_0 K in integer products, a q8_0 V widened; either with the other type */
    cpu_attn_set_int8_v(1);
    for (int fl = 0; fl < 2; fl++) {
        check_multi(Q8, Q8, 8, 2, 128, 128, false, 0, false, 0, fl, &n_multi, &n_multi_i8);
        check_multi(Q8, Q8, 8, 2, 128, 128, false, 150, true, 0, fl, &n_multi, &n_multi_i8);
        check_multi(Q8, Q8, 8, 2, 128, 128, false, 200, false, 90, fl, &n_multi, &n_multi_i8);
        check_multi(Q8, Q8, 3, 2, 64, 64, false, 70, true, 0, fl, &n_multi, &n_multi_i8);
        check_multi(Q8, Q8, 32, 1, 128, 128, false, 64, false, 0, fl, &n_multi, &n_multi_i8);
        check_multi(Q8, Q8, 64, 1, 128, 128, false, 10, true, 0, fl, &n_multi, &n_multi_i8);
        check_multi(Q8, Q8, 4, 1, 256, 256, false, 3, false, 20, fl, &n_multi, &n_multi_i8); /* declined: integer V */
        check_multi(Q8, Q8, 1, 3, 192, 128, false, 90, true, 0, fl, &n_multi, &n_multi_i8);
        check_multi(Q8, F16, 8, 2, 128, 128, false, 50, true, 0, fl, &n_multi, &n_multi_i8);
        check_multi(F16, Q8, 8, 2, 128, 128, false, 50, true, 0, fl, &n_multi, &n_multi_i8);
        /* a q8_0 V of 256 or more (MLA's latent) goes through the decode kernel's integer V pass, so
         * the per-token path; with that pass off, here */
        check_multi(Q8, Q8, 16, 1, 576, 512, true, 100, true, 0, fl, &n_multi, &n_multi_i8); /* declined: integer V */
        cpu_attn_set_int8_v(0);
        check_multi(Q8, Q8, 16, 1, 576, 512, true, 100, true, 0, fl, &n_multi, &n_multi_i8);
        cpu_attn_set_int8_v(1);
    }
    cpu_attn_set_int8_v(-1);
    const int multi_want = 28 + 20;
    CHECK(n_multi == (want_multi ? multi_want : 0), "multi-token path taken for %d shapes, expected %d", n_multi,
          want_multi ? multi_want : 0);
    if (!want_multi) printf("no AVX-512 VNNI on this CPU: the multi-token attention path is not tested (skipped)\n");
    /* the integer V pass of several tokens: the q8_0 V cases of 128 <= dv < 256 above */
    CHECK(n_multi_i8 == (want_multi ? 14 : 0), "multi-token integer V pass checked for %d shapes, expected %d", n_multi_i8,
          want_multi ? 14 : 0);

    /* the same binary under MOERUN_CPU=generic */
    const pid_t pid = fork();
    if (pid == 0) {
        setenv("MOERUN_CPU", "generic", 1);
        execl("/proc/self/exe", argv[0], "--generic-child", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "MOERUN_CPU=generic child failed (status %d)", st);

    /* AVX-512 against AVX2, bit for bit (the child runs under MOERUN_CPU=avx2) */
    {   /* the tiled q8_0 cache: 8 query heads a KV head; odd depths, masks, windows, gaps, other head sizes */
        const int tdepths[] = {1, 15, 16, 17, 63, 64, 65, 129, 300, 1030, 2100};
        int nk = 0, nt = 0;
        for (size_t di = 0; di < MR_ARRAY_LEN(tdepths); di++)
            for (int mk = 0; mk < 2; mk++) {
                const int d = tdepths[di];
                tcase tc = {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, d, false, mk, true, 0, 3.0f, 0.0f, false};
                if (mk && d > 64) tc.n_swa = d / 2;
                nk += check_tiled(&tc), nt++;
            }
        const tcase textra[] = {
            {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 1, 64, 96, 200, false, true, true, 0, 3, 0, false},
            {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 256, 256, 333, false, false, true, 0, 12, 0, false},
            {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, 700, false, false, true, 0, 20, 0, false}, /* peaky */
            {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, 300, false, false, true, 0, 3, 0, true},   /* gap */
            {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, 300, false, true, false, 0, 3, 0, false},  /* standard */
            {MR_TYPE_Q8_0, MR_TYPE_Q8_0, 8, 2, 128, 128, 300, false, false, true, 0, 20, 30, false}, /* soft-cap */
        };
        for (size_t i = 0; i < MR_ARRAY_LEN(textra); i++) nk += check_tiled(&textra[i]), nt++;
        const mr_cpu_features *f = mr_cpu();
        if (f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni && cpu_attn_int8_v())
            CHECK(nk == nt - 1, "the tiled decode kernel took %d of %d cases (all but the soft-capped one)", nk, nt);
        else
            printf("no AVX-512 VNNI on this CPU: the tiled decode kernel is not run (%d cases through rows)\n", nt);
    }
    const mr_cpu_features *f = mr_cpu();
    if (f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni) {
        size_t n = 0;
        float *o = zcases_run(&n, 1);
        size_t n0 = 0, diff = 0;
        float *o0 = zcases_run(&n0, 0); /* the 256-bit q8_0 K score kernel: the same bits */
        for (size_t i = 0; i < n && n0 == n; i++) diff += memcmp(&o[i], &o0[i], sizeof(float)) != 0;
        CHECK(n0 == n && diff == 0, "512-bit q8_0 K scores differ from the 256-bit kernel's in %zu of %zu outputs", diff, n);
        free(o0);
        char path[] = "/tmp/test_attn_zXXXXXX";
        const int fd = mkstemp(path);
        FILE *fo = fd >= 0 ? fdopen(fd, "wb") : NULL;
        CHECK(fo && fwrite(o, sizeof(float), n, fo) == n, "write %s", path);
        if (fo) fclose(fo);
        free(o);
        const pid_t pz = fork();
        if (pz == 0) {
            setenv("MOERUN_CPU", "avx2", 1);
            execl("/proc/self/exe", argv[0], "--avx2-child", path, (char *)NULL);
            _exit(127);
        }
        int sz = 0;
        CHECK(pz > 0 && waitpid(pz, &sz, 0) == pz && WIFEXITED(sz) && WEXITSTATUS(sz) == 0,
              "MOERUN_CPU=avx2 child failed (status %d)", sz);
        unlink(path);
    } else {
        printf("no AVX-512 VNNI on this CPU: the AVX-512 attention kernels are not compared (skipped)\n");
    }
    return check_done();
}
