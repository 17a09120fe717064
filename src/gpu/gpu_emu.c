/*
 * gpu_emu.c — the device API of gpu_api.h on the host (see gpu_api.h for why).
 *
 * Each op computes what its CUDA kernel computes, in the same number
 * formats, so that a result that passes llama.cpp's bars here tests the GPU
 * design and not only the executor: the quantized matvec multiplies the
 * weight row by the Q8_1 activations (int8 quants, float d per 32), the
 * prompt GEMM rounds both operands to F16 and accumulates in F32, attention
 * reads K/V in the cache's type with float queries and an F32 softmax, and
 * routing follows k_moe_route (ties to the lower expert). Device pointers
 * are host pointers; copies are memcpy; ops are synchronous.
 *
 * MOERUN_CUDA_EMU_Q8K=1 rounds activations (rows of a multiple of 256) as ggml's CPU does
 * for K-quant weights (Q8_K: one scale per 256) instead of the kernels' Q8_1, in the matvecs
 * and the prompt GEMM: some random-weight fixtures (tiny-qwen3next) amplify a change in that
 * rounding far past llama.cpp's bars, so the executor is checked against llama.cpp's CPU
 * logits with the reference's rounding; the kernels' own formats are the default.
 *
 * MOERUN_CUDA_EMU=N gives N devices named "emu0".."emuN-1";
 * MOERUN_CUDA_EMU_VRAM=SIZE (e.g. 4GiB) makes each report that much free
 * memory, so placement_check runs against it (default: unknown, no check).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cpu/cpu.h"
#include "cpu/delta.h"
#include "gpu/gpu_api.h"
#include "model/placement.h"
#include "quant/quant.h"
#include "quant/types.h"

/* A recorded op (graphs): the op and its arguments by value, as a CUDA graph keeps kernel
 * parameters. */
typedef enum { R_GELU, R_RMS, R_QUANT, R_MATVEC, R_MOEMV, R_SILU, R_ADD, R_ROPE, R_ROUTE, R_ATTN, R_GEMM, R_KVW, R_COMB,
               R_COPY, R_SORT, R_ROWS, R_ADDR, R_MVSUM, R_GUA,
               R_SIGM, R_SSMG, R_SSMC, R_L2, R_DELTA, R_DELTAG } rec_kind;
typedef struct {
    rec_kind k;
    mrc_weight W, W2;
    mrc_attn_params ap;
    mrc_rope_params rp;
    const void *p[4];
    void *o[3];
    int64_t n[8];
    float f[2];
    bool b;
} emu_rec;

typedef struct {
    int dev;
    float *row;    /* scratch: one dequantized weight row */
    size_t row_cap;
    bool cap;      /* capturing a graph */
    emu_rec *rec, *graph; /* being captured / the captured graph */
    int n_rec, cap_rec, n_graph;
} emu_ctx;

static int rec_push(emu_ctx *c, emu_rec r) {
    if (c->n_rec == c->cap_rec) {
        const int nc = c->cap_rec ? 2 * c->cap_rec : 256;
        emu_rec *n = realloc(c->rec, sizeof *n * (size_t)nc);
        if (!n) {
            mr_seterr("emu: graph of %d ops: out of memory", c->n_rec);
            return -1;
        }
        c->rec = n;
        c->cap_rec = nc;
    }
    c->rec[c->n_rec++] = r;
    return 0;
}
#define REC(cv, ...)                                                            \
    do {                                                                        \
        if (((emu_ctx *)(cv))->cap) return rec_push((emu_ctx *)(cv), (emu_rec){__VA_ARGS__}); \
    } while (0)

static int emu_count(void) {
    const char *s = getenv("MOERUN_CUDA_EMU");
    if (!s || !*s) return 0;
    const int n = atoi(s);
    return n < 0 ? 0 : n > PLC_MAX_DEV ? PLC_MAX_DEV : n;
}

static int emu_device_info(int dev, mrc_device_info *out) {
    if (dev < 0 || dev >= emu_count()) {
        mr_seterr("emu: no device %d (MOERUN_CUDA_EMU=%d)", dev, emu_count());
        return -1;
    }
    memset(out, 0, sizeof *out);
    out->id = dev;
    snprintf(out->name, sizeof out->name, "emu%d (host emulation of the CUDA backend)", dev);
    const char *v = getenv("MOERUN_CUDA_EMU_VRAM");
    uint64_t sz = 0;
    if (v && *v && placement_parse_sizes(v, &sz, 1) == 1) out->free = out->total = sz;
    out->cc_major = 0;
    out->n_sm = 1;
    return 0;
}

static void *emu_init(int dev) {
    if (dev < 0 || dev >= emu_count()) {
        mr_seterr("emu: no device %d", dev);
        return NULL;
    }
    emu_ctx *c = mr_calloc(1, sizeof *c);
    if (c) c->dev = dev;
    return c;
}
static void emu_free(void *cv) {
    emu_ctx *c = cv;
    if (!c) return;
    free(c->rec);
    free(c->graph);
    free(c->row);
    free(c);
}
static int emu_sync(void *c) {
    (void)c;
    return 0;
}
static void *emu_alloc(void *c, size_t n) {
    (void)c;
    return mr_malloc_aligned(n ? n : 1);
}
static void emu_dfree(void *c, void *p) {
    (void)c;
    mr_free_aligned(p);
}
static int emu_copy(void *c, void *dst, const void *src, size_t n) {
    if (((emu_ctx *)c)->cap) { /* CUDA cannot capture copies from / to pageable host memory either */
        mr_seterr("emu: host copy during graph capture");
        return -1;
    }
    if (n) memcpy(dst, src, n);
    return 0;
}
static int emu_memset(void *c, void *dst, int v, size_t n) {
    if (((emu_ctx *)c)->cap) {
        mr_seterr("emu: memset during graph capture (not recorded)");
        return -1;
    }
    memset(dst, v, n);
    return 0;
}

static bool emu_type_supported(uint32_t t) {
    return mr_type_is_float(t) || t == MR_TYPE_Q4_0 || t == MR_TYPE_Q4_1 || t == MR_TYPE_Q5_0 || t == MR_TYPE_Q5_1 ||
           t == MR_TYPE_Q8_0 || t == MR_TYPE_Q2_K || t == MR_TYPE_Q3_K || t == MR_TYPE_Q4_K || t == MR_TYPE_Q5_K ||
           t == MR_TYPE_Q6_K || t == MR_TYPE_IQ4_NL || t == MR_TYPE_IQ4_XS;
}

static int emu_weight_view(mrc_weight *w, void *p, uint32_t type, int64_t k, int64_t m, int64_t n_mat) {
    memset(w, 0, sizeof *w);
    const size_t rb = mr_row_size(type, k);
    if (!emu_type_supported(type) || rb == 0) {
        mr_seterr("emu: weight type %s with rows of %lld is not supported by the device kernels", mr_type_name(type),
                  (long long)k);
        return -1;
    }
    w->data = p;
    w->type = type;
    w->k = k, w->m = m, w->n_mat = n_mat;
    w->row_bytes = rb;
    w->mat_bytes = rb * (size_t)m;
    return 0;
}

static size_t emu_q8_1_row_size(int64_t k) { return (size_t)((k + k / 32 * 8 + 15) / 16 * 16); }

/* MOERUN_CUDA_EMU_Q8K=1: activations rounded as ggml's CPU rounds them for K-quant weights. */
static bool emu_q8k(void) {
    const char *e = getenv("MOERUN_CUDA_EMU_Q8K"); /* read each time: tests switch it */
    return e && *e && strcmp(e, "0") != 0;
}

/* Rows of k (a multiple of 256) rounded as ggml's quantize_row_q8_K (one scale per 256: the
 * signed value of largest magnitude maps to -127), stored in the Q8_1 layout (the 256-block's
 * scale in each of its eight 32-blocks), so the emulation's dots read them unchanged. */
static void quantize_rows_q8k(const float *x, void *xq, int64_t k, int64_t n_rows, size_t rs) {
    for (int64_t r = 0; r < n_rows; r++) {
        int8_t *q = (int8_t *)((uint8_t *)xq + (size_t)r * rs);
        float *ds = (float *)((uint8_t *)q + k);
        const float *v = x + r * k;
        for (int64_t b = 0; b < k / 256; b++) {
            const float *vb = v + b * 256;
            float amax = 0.0f, mx = 0.0f;
            for (int i = 0; i < 256; i++)
                if (fabsf(vb[i]) > amax) amax = fabsf(vb[i]), mx = vb[i];
            const float iscale = amax > 0.0f ? -127.0f / mx : 0.0f, d = amax > 0.0f ? 1.0f / iscale : 0.0f;
            for (int j = 0; j < 8; j++) {
                int s = 0;
                for (int i = 0; i < 32; i++) {
                    const int qi = MR_MIN(127, (int)rintf(iscale * vb[32 * j + i]));
                    q[b * 256 + 32 * j + i] = (int8_t)qi;
                    s += qi;
                }
                ds[2 * (b * 8 + j)] = d;
                ds[2 * (b * 8 + j) + 1] = d * (float)s;
            }
        }
    }
}

/* Q8_1 rows as k_quantize_q8_1 (mrc_q8_1_warp) computes them. */
static int quantize_rows_q8_1(const float *x, void *xq, int64_t k, int64_t n_rows) {
    if (k <= 0 || k % 32) {
        mr_seterr("emu: quantize_q8_1: k = %lld is not a positive multiple of 32", (long long)k);
        return -1;
    }
    const size_t rs = emu_q8_1_row_size(k);
    if (emu_q8k() && k % 256 == 0) {
        quantize_rows_q8k(x, xq, k, n_rows, rs);
        return 0;
    }
    for (int64_t r = 0; r < n_rows; r++) {
        int8_t *q = (int8_t *)((uint8_t *)xq + (size_t)r * rs);
        float *ds = (float *)((uint8_t *)q + k);
        const float *v = x + r * k;
        for (int64_t b = 0; b < k / 32; b++) {
            float amax = 0.0f;
            for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(v[b * 32 + i]));
            const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
            int s = 0;
            for (int i = 0; i < 32; i++) {
                const int qi = (int)rintf(v[b * 32 + i] * id);
                q[b * 32 + i] = (int8_t)qi;
                s += qi;
            }
            ds[2 * b] = d;
            ds[2 * b + 1] = d * (float)s;
        }
    }
    return 0;
}

static int emu_quantize_q8_1(void *c, const float *x, void *xq, int64_t k, int64_t n_rows) {
    REC(c, .k = R_QUANT, .p = {x}, .o = {xq}, .n = {k, n_rows});
    return quantize_rows_q8_1(x, xq, k, n_rows);
}

static float *emu_row(emu_ctx *c, int64_t k) {
    if (c->row_cap < (size_t)k) {
        free(c->row);
        c->row = mr_malloc(sizeof(float) * (size_t)k);
        c->row_cap = c->row ? (size_t)k : 0;
    }
    return c->row;
}

/* dot of weight row r of matrix mat with activation xq (Q8_1) or x (float weights) */
static int emu_dot(emu_ctx *c, const mrc_weight *W, int64_t mat, int64_t r, const float *x, const void *xq,
                   float *out) {
    float *wr = emu_row(c, W->k);
    if (!wr) return -1;
    const uint8_t *src = (const uint8_t *)W->data + (size_t)mat * W->mat_bytes + (size_t)r * W->row_bytes;
    if (quant_dequant_row(W->type, src, wr, W->k)) return -1;
    double acc = 0.0;
    if (mr_type_is_float(W->type)) {
        for (int64_t i = 0; i < W->k; i++) acc += (double)wr[i] * x[i];
    } else {
        const int8_t *q = xq;
        const float *ds = (const float *)((const uint8_t *)xq + W->k);
        for (int64_t b = 0; b < W->k / 32; b++) {
            float s = 0.0f;
            for (int i = 0; i < 32; i++) s += wr[b * 32 + i] * (float)q[b * 32 + i];
            acc += (double)s * ds[2 * b];
        }
    }
    *out = (float)acc;
    return 0;
}

static int emu_matvec(void *cv, const mrc_weight *W, int64_t mat, const float *x, const void *xq, float *y) {
    emu_ctx *c = cv;
    REC(c, .k = R_MATVEC, .W = *W, .p = {x, xq}, .o = {y}, .n = {mat});
    const bool fl = mr_type_is_float(W->type);
    if (fl ? !x : !xq) {
        mr_seterr("emu: matvec %s: missing %s activations", mr_type_name(W->type), fl ? "float" : "Q8_1");
        return -1;
    }
    for (int64_t r = 0; r < W->m; r++)
        if (emu_dot(c, W, mat, r, x, xq, &y[r])) return -1;
    return 0;
}

static int emu_moe_matvec(void *cv, const mrc_weight *W, const int32_t *ids, int n_ids, const float *x,
                          size_t x_stride, const void *xq, size_t xq_stride, float *y) {
    emu_ctx *c = cv;
    REC(c, .k = R_MOEMV, .W = *W, .p = {ids, x, xq}, .o = {y}, .n = {n_ids, (int64_t)x_stride, (int64_t)xq_stride});
    for (int i = 0; i < n_ids; i++) {
        float *yi = y + (size_t)i * W->m;
        const int64_t mat = ids ? ids[i] : 0; /* no ids: matrix 0 for every slot, as the kernel */
        if (mat < 0 || mat >= W->n_mat) {
            memset(yi, 0, sizeof(float) * (size_t)W->m);
            continue;
        }
        const float *xi = x ? x + (size_t)i * x_stride : NULL;
        const void *qi = xq ? (const uint8_t *)xq + (size_t)i * xq_stride : NULL;
        if (emu_matvec(c, W, mat, xi, qi, yi)) return -1;
    }
    return 0;
}

static int emu_rmsnorm(void *c, float *out, const float *x, const float *w, int64_t n_rows, int n, float eps) {
    REC(c, .k = R_RMS, .o = {out}, .p = {x, w}, .n = {n_rows, n}, .f = {eps});
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * n;
        float *o = out + r * n;
        double ss = 0.0;
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        const float sc = 1.0f / sqrtf((float)(ss / n) + eps);
        for (int i = 0; i < n; i++) o[i] = xr[i] * sc * (w ? w[i] : 1.0f);
    }
    return 0;
}
static int emu_silu_mul(void *c, float *g, const float *u, int64_t n) {
    REC(c, .k = R_SILU, .o = {g}, .p = {u}, .n = {n});
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    return 0;
}
static int emu_gelu_mul(void *c, float *g, const float *u, int64_t n) {
    REC(c, .k = R_GELU, .o = {g}, .p = {u}, .n = {n});
    for (int64_t i = 0; i < n; i++) {
        const float v = g[i];
        g[i] = 0.5f * v * (1.0f + tanhf(0.797884560802865355f * v * (1.0f + 0.044715f * v * v))) * u[i];
    }
    return 0;
}
static int emu_add(void *c, float *y, const float *x, int64_t n) {
    REC(c, .k = R_ADD, .o = {y}, .p = {x}, .n = {n});
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
    return 0;
}

static int emu_add_rows(void *c, float *y, const float *x, int64_t rows, int64_t n) {
    REC(c, .k = R_ADDR, .o = {y}, .p = {x}, .n = {rows, n});
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) y[r * n + i] += x[i];
    return 0;
}

static int emu_rope(void *c, const mrc_rope_params *p, float *x, const int32_t *pos, int n_tok, int n_heads,
                    int head_dim) {
    REC(c, .k = R_ROPE, .rp = *p, .o = {x}, .p = {pos}, .n = {n_tok, n_heads, head_dim});
    const cpu_rope_params cp = {.mode = p->mode, .n_dims = p->n_dims, .freq_base = p->freq_base,
                                .freq_scale = p->freq_scale, .ext_factor = p->ext_factor,
                                .attn_factor = p->attn_factor, .beta_fast = p->beta_fast, .beta_slow = p->beta_slow,
                                .n_ctx_orig = p->n_ctx_orig, .freq_factors = p->freq_factors};
    float *cs = mr_malloc(sizeof(float) * ((size_t)p->n_dims + 2));
    if (!cs) return -1;
    for (int t = 0; t < n_tok; t++) {
        cpu_rope_cache(&cp, (float)pos[t], cs);
        cpu_rope_apply(&cp, cs, x + (size_t)t * n_heads * head_dim, n_heads, head_dim);
    }
    free(cs);
    return 0;
}

static int emu_moe_route(void *c, const float *logits, int n_tok, int E, int K, int gating, const float *bias,
                         bool norm_w, float w_scale, int n_group, int n_group_used, int32_t *ids, float *weights) {
    REC(c, .k = R_ROUTE, .p = {logits, bias}, .o = {ids, weights}, .n = {n_tok, E, K, gating, n_group, n_group_used},
        .b = norm_w, .f = {w_scale});
    if (E <= 0 || E > 1024 || K <= 0 || K > 32 || K > E || gating < 1 || gating > 3 || n_group > 64 ||
        (n_group > 1 && E % n_group)) {
        mr_seterr("emu: moe_route: %d experts, top-%d, gating %d", E, K, gating);
        return -1;
    }
    float prob[1024], sel[1024], ws[32];
    for (int t = 0; t < n_tok; t++) {
        const float *l = logits + (size_t)t * E;
        float mx = -INFINITY, s = 0.0f;
        for (int e = 0; e < E; e++) mx = fmaxf(mx, l[e]);
        for (int e = 0; e < E; e++) {
            float p = l[e];
            if (gating == 1) p = expf(p - mx), s += p;
            else if (gating == 2) p = 1.0f / (1.0f + expf(-p));
            prob[e] = p;
        }
        if (gating == 1)
            for (int e = 0; e < E; e++) prob[e] *= 1.0f / s;
        for (int e = 0; e < E; e++) sel[e] = prob[e] + (bias ? bias[e] : 0.0f);
        if (n_group > 1 && n_group_used > 0 && n_group_used < n_group) {
            const int per = E / n_group;
            float gs[64];
            for (int g = 0; g < n_group; g++) {
                float b1 = -INFINITY, b2 = -INFINITY;
                for (int e = g * per; e < (g + 1) * per; e++) {
                    if (sel[e] > b1) b2 = b1, b1 = sel[e];
                    else if (sel[e] > b2) b2 = sel[e];
                }
                gs[g] = b1 + (per > 1 ? b2 : 0.0f);
            }
            uint64_t keep = 0;
            for (int j = 0; j < n_group_used; j++) {
                int bg = -1;
                for (int g = 0; g < n_group; g++)
                    if (!((keep >> g) & 1) && (bg < 0 || gs[g] > gs[bg])) bg = g;
                keep |= (uint64_t)1 << bg;
            }
            for (int g = 0; g < n_group; g++)
                if (!((keep >> g) & 1))
                    for (int e = g * per; e < (g + 1) * per; e++) sel[e] = -INFINITY;
        }
        int32_t *id = ids + (size_t)t * K;
        for (int j = 0; j < K; j++) {
            int bi = -1;
            for (int e = 0; e < E; e++)
                if (!isnan(sel[e]) && (bi < 0 || sel[e] > sel[bi])) bi = e;
            id[j] = bi;
            ws[j] = prob[bi];
            sel[bi] = NAN;
        }
        if (gating == 3) {
            float m = -INFINITY, z = 0.0f;
            for (int j = 0; j < K; j++) m = fmaxf(m, ws[j]);
            for (int j = 0; j < K; j++) ws[j] = expf(ws[j] - m), z += ws[j];
            for (int j = 0; j < K; j++) ws[j] /= z;
        }
        if (norm_w) {
            float z = 0.0f;
            for (int j = 0; j < K; j++) z += ws[j];
            z = fmaxf(z, 6.103515625e-5f);
            for (int j = 0; j < K; j++) ws[j] /= z;
        }
        for (int j = 0; j < K; j++)
            weights[(size_t)t * K + j] = (w_scale != 0.0f && w_scale != 1.0f) ? ws[j] * w_scale : ws[j];
    }
    return 0;
}

static int emu_attn_tok(const mrc_attn_params *p, const float *q, const void *k, const void *v, const float *mask,
                        float *out) {
    if (p->n_head_kv <= 0 || p->n_head % p->n_head_kv || p->n_kv > p->n_ctx || p->dk % 32 || p->dv % 32 ||
        p->dk > 576 || p->dv > 512 ||
        (p->type_k != MR_TYPE_F16 && p->type_k != MR_TYPE_Q8_0) ||
        (!p->v_in_k && p->type_v != MR_TYPE_F16 && p->type_v != MR_TYPE_Q8_0) || p->n_tok < 0 || p->q_stride < 0 ||
        p->mask_stride < 0 || p->out_stride < 0) {
        mr_seterr("emu: attn: heads %d/%d, dk %d, dv %d, K %s, V %s, n_kv %d of %d, %d tokens: unsupported", p->n_head,
                  p->n_head_kv, p->dk, p->dv, mr_type_name(p->type_k), mr_type_name(p->type_v), p->n_kv, p->n_ctx,
                  p->n_tok);
        return -1;
    }
    const size_t krow = mr_row_size(p->type_k, p->dk), vrow = p->v_in_k ? krow : mr_row_size(p->type_v, p->dv);
    const int g = p->n_head / p->n_head_kv, n = p->n_kv;
    /* per KV head: each cell's K (and V) row is dequantized once for the g query heads sharing it */
    float *buf = mr_malloc(sizeof(float) * ((size_t)p->dk + (size_t)g * p->dv + (size_t)g * (n > 0 ? n : 1) + 2 * (size_t)g));
    if (!buf) return -1;
    float *kr = buf, *acc = kr + p->dk, *s = acc + (size_t)g * p->dv, *mx = s + (size_t)g * (n > 0 ? n : 1), *z = mx + g;
    for (int kvh = 0; kvh < p->n_head_kv; kvh++) {
        const uint8_t *kb = (const uint8_t *)k + (size_t)kvh * p->n_ctx * krow;
        const uint8_t *vb = p->v_in_k ? kb : (const uint8_t *)v + (size_t)kvh * p->n_ctx * vrow;
        for (int hh = 0; hh < g; hh++) mx[hh] = -INFINITY, z[hh] = 0.0f;
        for (int j = 0; j < n; j++) {
            if (mask && mask[j] == -INFINITY) {
                for (int hh = 0; hh < g; hh++) s[(size_t)hh * n + j] = -INFINITY;
                continue;
            }
            quant_dequant_row(p->type_k, kb + (size_t)j * krow, kr, p->dk);
            for (int hh = 0; hh < g; hh++) {
                const float *qh = q + (size_t)(kvh * g + hh) * p->dk;
                float d = 0.0f;
                for (int i = 0; i < p->dk; i++) d += qh[i] * kr[i];
                d *= p->scale;
                if (p->softcap > 0.0f) d = p->softcap * tanhf(d / p->softcap);
                if (mask) d += mask[j];
                s[(size_t)hh * n + j] = d;
                mx[hh] = fmaxf(mx[hh], d);
            }
        }
        memset(acc, 0, sizeof(float) * (size_t)g * p->dv);
        for (int j = 0; j < n; j++) {
            bool any = false;
            for (int hh = 0; hh < g; hh++) any |= s[(size_t)hh * n + j] != -INFINITY;
            if (!any) continue;
            quant_dequant_row(p->v_in_k ? p->type_k : p->type_v, vb + (size_t)j * vrow, kr, p->v_in_k ? p->dk : p->dv);
            for (int hh = 0; hh < g; hh++) {
                const float sj = s[(size_t)hh * n + j];
                if (sj == -INFINITY) continue;
                const float w = expf(sj - mx[hh]);
                z[hh] += w;
                float *a = acc + (size_t)hh * p->dv;
                for (int i = 0; i < p->dv; i++) a[i] += w * kr[i];
            }
        }
        for (int hh = 0; hh < g; hh++) {
            float *o = out + (size_t)(kvh * g + hh) * p->dv;
            const float *a = acc + (size_t)hh * p->dv;
            for (int i = 0; i < p->dv; i++) o[i] = z[hh] > 0.0f ? a[i] / z[hh] : 0.0f;
        }
    }
    free(buf);
    return 0;
}


/* n_tok tokens: one emu_attn_tok each, at the strides of mrc_attn_params. */
static int emu_attn(void *cv, const mrc_attn_params *p, const float *q, const void *k, const void *v,
                    const float *mask, float *out) {
    emu_ctx *c = cv;
    REC(c, .k = R_ATTN, .ap = *p, .p = {q, k, v, mask}, .o = {out});
    const int n_tok = p->n_tok > 0 ? p->n_tok : 1;
    const int64_t qs = p->q_stride ? p->q_stride : (int64_t)p->n_head * p->dk;
    const int64_t ms = p->mask_stride ? p->mask_stride : p->n_kv;
    const int64_t os = p->out_stride ? p->out_stride : (int64_t)p->n_head * p->dv;
    for (int t = 0; t < n_tok; t++)
        if (emu_attn_tok(p, q + (size_t)t * qs, k, v, mask ? mask + (size_t)t * ms : NULL, out + (size_t)t * os))
            return -1;
    if (p->out_q8) { /* the rows quantized, as the combine kernel does (not recorded: inside this op) */
        const int64_t n = (int64_t)p->n_head * p->dv;
        const size_t rs = emu_q8_1_row_size(n);
        for (int t = 0; t < n_tok; t++)
            if (quantize_rows_q8_1(out + (size_t)t * os, (uint8_t *)p->out_q8 + (size_t)t * rs, n, 1)) return -1;
    }
    return 0;
}

/* F16 x F16 with F32 accumulation, as the cuBLAS GEMM: both operands rounded to F16, then the
 * CPU's F16 matmul kernels (their products of two halves are exact in F32). */
static int emu_gemm(void *cv, const mrc_weight *W, int64_t mat, const float *x, int64_t T, float *y) {
    emu_ctx *c = cv;
    REC(c, .k = R_GEMM, .W = *W, .p = {x}, .o = {y}, .n = {mat, T});
    if (emu_q8k() && !mr_type_is_float(W->type) && W->k % 256 == 0) {
        /* ggml's CPU rounding: every token's activations quantized, then the matvec */
        const size_t rs = emu_q8_1_row_size(W->k);
        void *xq = mr_malloc(rs);
        int rc = !xq;
        for (int64_t t = 0; t < T && !rc; t++) {
            quantize_rows_q8k(x + t * W->k, xq, W->k, 1, rs);
            for (int64_t r = 0; r < W->m && !rc; r++) rc = emu_dot(c, W, mat, r, NULL, xq, &y[t * W->m + r]);
        }
        free(xq);
        return rc ? -1 : 0;
    }
    float *wr = emu_row(c, W->k);
    const size_t rb16 = mr_row_size(MR_TYPE_F16, W->k);
    uint8_t *w16 = mr_malloc(rb16 * (size_t)W->m);
    float *x16 = mr_malloc(sizeof(float) * (size_t)(T * W->k)); /* x rounded to F16, as floats (the F16 kernels' input) */
    int rc = !wr || !w16 || !x16 ? -1 : 0;
    for (int64_t r = 0; r < W->m && !rc; r++) {
        const uint8_t *src = (const uint8_t *)W->data + (size_t)mat * W->mat_bytes + (size_t)r * W->row_bytes;
        rc = quant_dequant_row(W->type, src, wr, W->k) || quant_quantize_row(MR_TYPE_F16, wr, w16 + (size_t)r * rb16, W->k);
    }
    for (int64_t i = 0; !rc && i < T * W->k; i++) x16[i] = mr_fp16_to_fp32(mr_fp32_to_fp16(x[i]));
    if (!rc) quant_matmul(MR_TYPE_F16, w16, W->k, 0, W->m, x16, sizeof(float) * (size_t)W->k, T, y, W->m);
    free(w16);
    free(x16);
    return rc ? -1 : 0;
}

static int emu_kv_write(void *c, uint32_t type, const float *src, int heads, int d, int T, const int32_t *cells,
                        void *base, size_t row_bytes, int n_ctx) {
    REC(c, .k = R_KVW, .p = {src, cells}, .o = {base}, .n = {type, heads, d, T, (int64_t)row_bytes, n_ctx});
    if (type != MR_TYPE_F32 && type != MR_TYPE_F16 && type != MR_TYPE_Q8_0) {
        mr_seterr("emu: kv_write: cache type %s is not supported (f32, f16, q8_0)", mr_type_name(type));
        return -1;
    }
    for (int t = 0; t < T; t++)
        for (int h = 0; h < heads; h++)
            if (quant_quantize_row(type, src + ((size_t)t * heads + h) * d,
                                   (uint8_t *)base + ((size_t)h * n_ctx + (size_t)cells[t]) * row_bytes, d))
                return -1;
    return 0;
}

static int emu_moe_combine(void *c, float *y, const float *slots, const float *w, int n_tok, int k, int n, int acc) {
    REC(c, .k = R_COMB, .o = {y}, .p = {slots, w}, .n = {n_tok, k, n, acc});
    for (int t = 0; t < n_tok; t++)
        for (int i = 0; i < n; i++) {
            float s = 0.0f;
            for (int j = 0; j < k; j++) s += w[(size_t)t * k + j] * slots[((size_t)t * k + j) * n + i];
            y[(size_t)t * n + i] = acc ? y[(size_t)t * n + i] + s : s;
        }
    return 0;
}

/* The fused ops as their parts (each part records itself while a graph is captured). */
static int emu_norm_rope(void *c, const mrc_rope_params *p, float *x, const int32_t *pos, int n_tok, int n_heads,
                         int head_dim, const float *w1, const float *w2, int split, float eps) {
    for (int t = 0; t < n_tok; t++) {
        float *xt = x + (size_t)t * n_heads * head_dim;
        if (emu_rmsnorm(c, xt, xt, w1, split, head_dim, eps) ||
            emu_rmsnorm(c, xt + (size_t)split * head_dim, xt + (size_t)split * head_dim, w2, n_heads - split, head_dim,
                        eps))
            return -1;
    }
    return emu_rope(c, p, x, pos, n_tok, n_heads, head_dim);
}
static int emu_matvec_n(void *c, int n, const mrc_weight *const *W, const void *xq, float *const *y) {
    for (int i = 0; i < n; i++)
        if (n > 3 || !mrc_matvec_n_pair(W[0], W[i])) {
            mr_seterr("emu: matvec_n: %d matrices, %s and %s: one quantized type (or Q4_K/Q5_K/Q6_K) and row length", n,
                      mr_type_name(W[0]->type), mr_type_name(W[i]->type));
            return -1;
        }
    for (int i = 0; i < n; i++)
        if (emu_matvec(c, W[i], 0, NULL, xq, y[i])) return -1;
    return 0;
}
static int emu_kv_write2(void *c, int heads, int T, const int32_t *cells, int n_ctx, uint32_t tk, const float *k,
                         int dk, void *bk, size_t rbk, uint32_t tv, const float *v, int dv, void *bv, size_t rbv) {
    return emu_kv_write(c, tk, k, heads, dk, T, cells, bk, rbk, n_ctx) ||
                   emu_kv_write(c, tv, v, heads, dv, T, cells, bv, rbv, n_ctx)
               ? -1
               : 0;
}
/* The parts (each records itself while a graph is captured). */
static int emu_norm_rope_kv(void *c, const mrc_rope_params *p, float *x, const int32_t *pos, int n_tok, int n_heads,
                            int head_dim, const float *w1, const float *w2, int split, float eps, const mrc_kv_put *kv) {
    if (split < 0 || split >= n_heads) {
        mr_seterr("emu: norm_rope_kv: %d heads of which %d are q heads", n_heads, split);
        return -1;
    }
    const int hkv = n_heads - split;
    if (emu_norm_rope(c, p, x, pos, n_tok, n_heads, head_dim, w1, w2, split, eps)) return -1;
    for (int t = 0; t < n_tok; t++) /* the k heads of token t: after its q heads */
        if (emu_kv_write(c, kv->type_k, x + ((size_t)t * n_heads + split) * head_dim, hkv, head_dim, 1, kv->cells + t,
                         kv->base_k, kv->rb_k, kv->n_ctx))
            return -1;
    return emu_kv_write(c, kv->type_v, kv->v, hkv, kv->dv, n_tok, kv->cells, kv->base_v, kv->rb_v, kv->n_ctx);
}
/* Recorded as one op (its slots are a temporary of this call), computed as its parts. */
static int emu_moe_matvec_sum(void *c, const mrc_weight *W, const int32_t *ids, int n_ids, const void *xq,
                              size_t xq_stride, const float *wts, float *y, int acc) {
    REC(c, .k = R_MVSUM, .W = *W, .p = {ids, xq, wts}, .o = {y}, .n = {n_ids, (int64_t)xq_stride, acc});
    if (mr_type_is_float(W->type) || n_ids <= 0 || n_ids > 64) {
        mr_seterr("emu: moe_matvec_sum: %s weights, %d slots (quantized, 1 to 64)", mr_type_name(W->type), n_ids);
        return -1;
    }
    float *tmp = mr_malloc(sizeof(float) * (size_t)n_ids * (size_t)W->m);
    if (!tmp) return -1;
    const int rc = emu_moe_matvec(c, W, ids, n_ids, NULL, 0, xq, xq_stride, tmp) ||
                   emu_moe_combine(c, y, tmp, wts, 1, n_ids, (int)W->m, acc);
    free(tmp);
    return rc ? -1 : 0;
}
static int emu_moe_matvec2(void *c, const mrc_weight *W1, const mrc_weight *W2, const int32_t *ids, int n_ids,
                           const void *xq, size_t xq_stride, float *y1, float *y2);

/* The parts (each records itself while a graph is captured). */
static int emu_router_route(void *c, const mrc_weight *W, const float *x, float *logits, int k, int gating,
                            const float *bias, bool norm_w, float w_scale, int n_group, int n_group_used, int32_t *ids,
                            float *weights) {
    if (!mr_type_is_float(W->type)) {
        mr_seterr("emu: router_route: %s router (float weights)", mr_type_name(W->type));
        return -1;
    }
    return emu_matvec(c, W, 0, x, NULL, logits) || emu_moe_route(c, logits, 1, (int)W->m, k, gating, bias, norm_w,
                                                                 w_scale, n_group, n_group_used, ids, weights)
               ? -1
               : 0;
}
static int emu_act_q8(void *c, int gelu, float *g, const float *u, void *xq, int64_t n_rows, int64_t k);

/* Recorded as one op (the gate and up rows are temporaries of this call), computed as its parts. */
static int emu_moe_gate_up_q8(void *c, int gelu, const mrc_weight *Wg, const mrc_weight *Wu, const int32_t *ids,
                              int n_ids, const void *xq, size_t xq_stride, float *g_out, void *xq_out) {
    REC(c, .k = R_GUA, .W = *Wg, .W2 = *Wu, .p = {ids, xq}, .o = {g_out, xq_out},
        .n = {gelu, n_ids, (int64_t)xq_stride});
    if (Wg->m % 32) {
        mr_seterr("emu: moe_gate_up_q8: %lld rows (a multiple of 32)", (long long)Wg->m);
        return -1;
    }
    const size_t n = (size_t)n_ids * (size_t)Wg->m;
    float *g = mr_malloc(sizeof(float) * n), *u = mr_malloc(sizeof(float) * n);
    int rc = !g || !u;
    if (!rc) rc = emu_moe_matvec2(c, Wg, Wu, ids, n_ids, xq, xq_stride, g, u) || emu_act_q8(c, gelu, g, u, xq_out, n_ids, Wg->m);
    if (!rc && g_out) memcpy(g_out, g, sizeof(float) * n);
    free(g), free(u);
    return rc ? -1 : 0;
}
static int emu_moe_matvec2(void *c, const mrc_weight *W1, const mrc_weight *W2, const int32_t *ids, int n_ids,
                           const void *xq, size_t xq_stride, float *y1, float *y2) {
    const bool q = !mr_type_is_float(W1->type);
    if (!q || W1->type != W2->type || W1->k != W2->k || W1->m != W2->m || W1->n_mat != W2->n_mat ||
        W1->row_bytes != W2->row_bytes || 2 * n_ids > 65535) {
        mr_seterr("emu: moe_matvec2: %s and %s, %d slots: not a pair of one quantized type and shape",
                  mr_type_name(W1->type), mr_type_name(W2->type), n_ids);
        return -1;
    }
    return emu_moe_matvec(c, W1, ids, n_ids, NULL, 0, xq, xq_stride, y1) ||
                   emu_moe_matvec(c, W2, ids, n_ids, NULL, 0, xq, xq_stride, y2)
               ? -1
               : 0;
}
/* The grouped forms: the same floats as the plain ops (the device reads a weight row once for a
 * run of slots; here every slot is its own matvec either way). */
static int emu_moe_matvec_grp(void *c, const mrc_weight *W1, const mrc_weight *W2, const int32_t *ids, int n_ids,
                              const void *xq, size_t xq_stride, float *y1, float *y2) {
    if (W2) return emu_moe_matvec2(c, W1, W2, ids, n_ids, xq, xq_stride, y1, y2);
    if (mr_type_is_float(W1->type)) {
        mr_seterr("emu: moe_matvec_grp: %s weights (quantized)", mr_type_name(W1->type));
        return -1;
    }
    return emu_moe_matvec(c, W1, ids, n_ids, NULL, 0, xq, xq_stride, y1);
}
static int emu_rmsnorm_q8(void *c, float *out, void *xq, float *x, const float *res, const float *w, int64_t n_rows,
                          int n, float eps) {
    return (res && emu_add(c, x, res, n_rows * n)) || emu_rmsnorm(c, out, x, w, n_rows, n, eps) ||
                   emu_quantize_q8_1(c, out, xq, n, n_rows)
               ? -1
               : 0;
}
static int emu_act_q8(void *c, int gelu, float *g, const float *u, void *xq, int64_t n_rows, int64_t k) {
    return (gelu ? emu_gelu_mul(c, g, u, n_rows * k) : emu_silu_mul(c, g, u, n_rows * k)) ||
                   emu_quantize_q8_1(c, g, xq, k, n_rows)
               ? -1
               : 0;
}

static int emu_copy_rows(void *c, float *dst, int64_t ds, const float *src, int64_t ss, int64_t rows, int64_t cols) {
    REC(c, .k = R_COPY, .o = {dst}, .p = {src}, .n = {ds, ss, rows, cols});
    for (int64_t r = 0; r < rows; r++) memmove(dst + r * ds, src + r * ss, sizeof(float) * (size_t)cols);
    return 0;
}

/* Stable counting sort of the pairs by expert (the device's order within an expert may differ;
 * results do not depend on it). */
static int emu_moe_sort(void *c, const int32_t *ids, int n, int n_expert, int k, int32_t *perm, int32_t *sids,
                        int32_t *stok) {
    REC(c, .k = R_SORT, .p = {ids}, .o = {perm, sids, stok}, .n = {n, n_expert, k});
    if (n < 0 || n > 65535 || n_expert <= 0 || n_expert > 4096 || k <= 0) {
        mr_seterr("emu: moe_sort: %d pairs of %d experts (k %d): unsupported", n, n_expert, k);
        return -1;
    }
    int *cnt = mr_calloc((size_t)n_expert + 1, sizeof(int));
    if (!cnt) return -1;
    for (int i = 0; i < n; i++) cnt[ids[i] >= 0 && ids[i] < n_expert ? ids[i] : n_expert]++;
    for (int e = 0, s = 0; e <= n_expert; e++) {
        const int v = cnt[e];
        cnt[e] = s;
        s += v;
    }
    for (int i = 0; i < n; i++) {
        const int pos = cnt[ids[i] >= 0 && ids[i] < n_expert ? ids[i] : n_expert]++;
        perm[pos] = i, sids[pos] = ids[i], stok[pos] = i / k;
    }
    free(cnt);
    return 0;
}

static int emu_rows_idx(void *c, void *dst, const int32_t *di, const void *src, const int32_t *si, int64_t n,
                        size_t rb) {
    REC(c, .k = R_ROWS, .o = {dst}, .p = {di, src, si}, .n = {n, (int64_t)rb});
    if (rb % 4 || n < 0) {
        mr_seterr("emu: rows_idx: %lld rows of %zu bytes (a multiple of 4 is needed)", (long long)n, rb);
        return -1;
    }
    for (int64_t i = 0; i < n; i++)
        memmove((uint8_t *)dst + (size_t)(di ? di[i] : i) * rb, (const uint8_t *)src + (size_t)(si ? si[i] : i) * rb,
                rb);
    return 0;
}

/* ---- Qwen3-Next: the CPU's own kernels (src/cpu/delta.c, the plain C forms) ---------------------- */
static int emu_sigmoid_mul(void *c, float *y, const float *g, int64_t rows, int64_t n, int64_t gs, int gi) {
    REC(c, .k = R_SIGM, .o = {y}, .p = {g}, .n = {rows, n, gs, gi});
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) y[r * n + i] *= 1.0f / (1.0f + expf(-g[r * gs + i * gi]));
    return 0;
}
static int emu_ssm_gates(void *c, const float *ba, const float *dt, const float *a, int T, int Hk, int rr, float *beta,
                         float *g) {
    REC(c, .k = R_SSMG, .p = {ba, dt, a}, .o = {beta, g}, .n = {T, Hk, rr});
    const int Hv = Hk * rr;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < Hv; h++) {
            const int kh = h / rr, j = h % rr;
            const float *bt = ba + (size_t)t * 2 * Hv + (size_t)kh * 2 * rr;
            const float b = bt[j], av = bt[rr + j] + dt[h];
            const float sp = av > 20.0f ? av : logf(1.0f + expf(av));
            beta[(size_t)t * Hv + h] = 1.0f / (1.0f + expf(-b));
            g[(size_t)t * Hv + h] = sp * a[h];
        }
    return 0;
}
static int emu_ssm_conv(void *c, const float *x, int64_t xs, const float *w, int dc, int C, float *st, int64_t ss,
                        const int32_t *seq, int T, float *y, int64_t ys) {
    REC(c, .k = R_SSMC, .p = {x, w, seq}, .o = {st, y}, .n = {xs, dc, C, ss, T, ys});
    if (dc < 1 || C <= 0) {
        mr_seterr("emu: ssm_conv: kernel %d, %d channels", dc, C);
        return -1;
    }
    for (int t = 0; t < T; t++) {
        float *yt = y + (size_t)t * ys;
        cpu_conv_step(w, dc, C, 0, C, st + (size_t)(seq ? seq[t] : 0) * ss, x + (size_t)t * xs, yt);
        for (int i = 0; i < C; i++) yt[i] = yt[i] / (1.0f + expf(-yt[i]));
    }
    return 0;
}
static int emu_l2norm(void *c, float *x, int nt, int nh, int n, int64_t ts, float eps) {
    REC(c, .k = R_L2, .o = {x}, .n = {nt, nh, n, ts}, .f = {eps});
    for (int t = 0; t < nt; t++)
        for (int h = 0; h < nh; h++) cpu_l2norm(x + (size_t)t * ts + (size_t)h * n, n, eps);
    return 0;
}
static int emu_delta_rule(void *c, const float *x, int64_t xs, const float *g, const float *beta, float *st,
                          int64_t ss, const int32_t *seq, int T, int Hk, int Hv, int S, float scale, float *o,
                          int64_t os) {
    REC(c, .k = R_DELTA, .p = {x, g, beta, seq}, .o = {st, o}, .n = {xs, ss, T, Hk, Hv, S, os}, .f = {scale});
    if (S <= 0 || S % 32 || S > 256 || Hk <= 0 || Hv <= 0 || Hv % Hk) {
        mr_seterr("emu: delta_rule: state size %d (a multiple of 32 up to 256), %d key / %d value heads", S, Hk, Hv);
        return -1;
    }
    const int rr = Hv / Hk;
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * xs;
        float *slot = st + (size_t)(seq ? seq[t] : 0) * ss;
        for (int h = 0; h < Hv; h++) {
            const int kh = h / rr;
            cpu_delta_step(slot + (size_t)h * S * S, S, S, xt + (size_t)kh * S, xt + (size_t)(Hk + kh) * S,
                           xt + (size_t)2 * Hk * S + (size_t)h * S, g[(size_t)t * Hv + h], beta[(size_t)t * Hv + h],
                           scale, o + (size_t)t * os + (size_t)h * S, true);
        }
    }
    return 0;
}

/* The parts (each records itself while a graph is captured). */
static int emu_norm_gate_q8(void *c, float *o, float *z, const float *w, void *xq, int T, int Hv, int S, float eps) {
    if (S <= 0 || S % 32 || S > 256) {
        mr_seterr("emu: norm_gate_q8: head size %d (a multiple of 32 up to 256)", S);
        return -1;
    }
    return emu_rmsnorm(c, o, o, w, (int64_t)T * Hv, S, eps) || emu_act_q8(c, 0, z, o, xq, T, (int64_t)Hv * S) ? -1 : 0;
}

/* Recorded as one op, computed as its parts on a copy of x's q and k heads (x is not changed). */
static int emu_delta_rule_g(void *c, const float *x, int64_t xs, const float *ba, const float *dt, const float *a,
                            float eps, float *st, int64_t ss, const int32_t *seq, int T, int Hk, int Hv, int S,
                            float scale, float *o, int64_t os) {
    REC(c, .k = R_DELTAG, .p = {x, ba, dt, a}, .o = {st, o, (void *)seq}, .n = {xs, ss, T, Hk, Hv, S, os},
        .f = {eps, scale});
    if (Hk <= 0 || Hv <= 0 || Hv % Hk || T < 0) {
        mr_seterr("emu: delta_rule_g: %d key / %d value heads", Hk, Hv);
        return -1;
    }
    const size_t n = (size_t)T * (size_t)xs;
    float *xc = mr_malloc(sizeof(float) * (n ? n : 1)), *g = mr_malloc(sizeof(float) * ((size_t)T * Hv + 1));
    float *beta = mr_malloc(sizeof(float) * ((size_t)T * Hv + 1));
    int rc = !xc || !g || !beta;
    if (!rc) {
        memcpy(xc, x, sizeof(float) * n);
        rc = emu_ssm_gates(c, ba, dt, a, T, Hk, Hv / Hk, beta, g) || emu_l2norm(c, xc, T, 2 * Hk, S, xs, eps) ||
             emu_delta_rule(c, xc, xs, g, beta, st, ss, seq, T, Hk, Hv, S, scale, o, os);
    }
    free(xc), free(g), free(beta);
    return rc ? -1 : 0;
}

static int emu_peer_copy(void *dc, void *dst, void *sc, const void *src, size_t n) {
    (void)dc, (void)sc;
    memmove(dst, src, n);
    return 0;
}

static int emu_graph_begin(void *cv) {
    emu_ctx *c = cv;
    c->cap = true;
    c->n_rec = 0;
    return 0;
}
static int emu_graph_end(void *cv) {
    emu_ctx *c = cv;
    c->cap = false;
    free(c->graph);
    c->graph = c->rec; /* the recording becomes the graph */
    c->n_graph = c->n_rec;
    c->rec = NULL;
    c->n_rec = c->cap_rec = 0;
    return 0;
}
static int emu_graph_launch(void *cv) {
    emu_ctx *c = cv;
    if (!c->graph) {
        mr_seterr("emu: no captured graph");
        return -1;
    }
    for (int i = 0; i < c->n_graph; i++) {
        const emu_rec *r = &c->graph[i];
        int rc = 0;
        switch (r->k) {
        case R_RMS: rc = emu_rmsnorm(c, r->o[0], r->p[0], r->p[1], r->n[0], (int)r->n[1], r->f[0]); break;
        case R_QUANT: rc = emu_quantize_q8_1(c, r->p[0], r->o[0], r->n[0], r->n[1]); break;
        case R_MATVEC: rc = emu_matvec(c, &r->W, r->n[0], r->p[0], r->p[1], r->o[0]); break;
        case R_MOEMV:
            rc = emu_moe_matvec(c, &r->W, r->p[0], (int)r->n[0], r->p[1], (size_t)r->n[1], r->p[2], (size_t)r->n[2],
                                r->o[0]);
            break;
        case R_SILU: rc = emu_silu_mul(c, r->o[0], r->p[0], r->n[0]); break;
        case R_GELU: rc = emu_gelu_mul(c, r->o[0], r->p[0], r->n[0]); break;
        case R_ADD: rc = emu_add(c, r->o[0], r->p[0], r->n[0]); break;
        case R_ROPE: rc = emu_rope(c, &r->rp, r->o[0], r->p[0], (int)r->n[0], (int)r->n[1], (int)r->n[2]); break;
        case R_ROUTE:
            rc = emu_moe_route(c, r->p[0], (int)r->n[0], (int)r->n[1], (int)r->n[2], (int)r->n[3], r->p[1], r->b,
                               r->f[0], (int)r->n[4], (int)r->n[5], r->o[0], r->o[1]);
            break;
        case R_ATTN: rc = emu_attn(c, &r->ap, r->p[0], r->p[1], r->p[2], r->p[3], r->o[0]); break;
        case R_GEMM: rc = emu_gemm(c, &r->W, r->n[0], r->p[0], r->n[1], r->o[0]); break;
        case R_KVW:
            rc = emu_kv_write(c, (uint32_t)r->n[0], r->p[0], (int)r->n[1], (int)r->n[2], (int)r->n[3], r->p[1],
                              r->o[0], (size_t)r->n[4], (int)r->n[5]);
            break;
        case R_COMB:
            rc = emu_moe_combine(c, r->o[0], r->p[0], r->p[1], (int)r->n[0], (int)r->n[1], (int)r->n[2], (int)r->n[3]);
            break;
        case R_COPY: rc = emu_copy_rows(c, r->o[0], r->n[0], r->p[0], r->n[1], r->n[2], r->n[3]); break;
        case R_SORT:
            rc = emu_moe_sort(c, r->p[0], (int)r->n[0], (int)r->n[1], (int)r->n[2], r->o[0], r->o[1], r->o[2]);
            break;
        case R_ADDR: rc = emu_add_rows(c, r->o[0], r->p[0], r->n[0], r->n[1]); break;
        case R_ROWS: rc = emu_rows_idx(c, r->o[0], r->p[0], r->p[1], r->p[2], r->n[0], (size_t)r->n[1]); break;
        case R_GUA:
            rc = emu_moe_gate_up_q8(c, (int)r->n[0], &r->W, &r->W2, r->p[0], (int)r->n[1], r->p[1], (size_t)r->n[2],
                                    r->o[0], r->o[1]);
            break;
        case R_MVSUM:
            rc = emu_moe_matvec_sum(c, &r->W, r->p[0], (int)r->n[0], r->p[1], (size_t)r->n[1], r->p[2], r->o[0],
                                    (int)r->n[2]);
            break;
        case R_SIGM: rc = emu_sigmoid_mul(c, r->o[0], r->p[0], r->n[0], r->n[1], r->n[2], (int)r->n[3]); break;
        case R_SSMG:
            rc = emu_ssm_gates(c, r->p[0], r->p[1], r->p[2], (int)r->n[0], (int)r->n[1], (int)r->n[2], r->o[0],
                               r->o[1]);
            break;
        case R_SSMC:
            rc = emu_ssm_conv(c, r->p[0], r->n[0], r->p[1], (int)r->n[1], (int)r->n[2], r->o[0], r->n[3], r->p[2],
                              (int)r->n[4], r->o[1], r->n[5]);
            break;
        case R_L2: rc = emu_l2norm(c, r->o[0], (int)r->n[0], (int)r->n[1], (int)r->n[2], r->n[3], r->f[0]); break;
        case R_DELTAG:
            rc = emu_delta_rule_g(c, r->p[0], r->n[0], r->p[1], r->p[2], r->p[3], r->f[0], r->o[0], r->n[1], r->o[2],
                                  (int)r->n[2], (int)r->n[3], (int)r->n[4], (int)r->n[5], r->f[1], r->o[1], r->n[6]);
            break;
        case R_DELTA:
            rc = emu_delta_rule(c, r->p[0], r->n[0], r->p[1], r->p[2], r->o[0], r->n[1], r->p[3], (int)r->n[2],
                                (int)r->n[3], (int)r->n[4], (int)r->n[5], r->f[0], r->o[1], r->n[6]);
            break;
        }
        if (rc) return -1;
    }
    return 0;
}
static int emu_host_register_ro(const void *p, size_t n) {
    (void)p, (void)n;
    return 0;
}
static int emu_host_register(void *p, size_t n) {
    (void)p, (void)n;
    return 0;
}
static void emu_host_unregister(void *p) { (void)p; }
static size_t emu_scratch_bytes(void *c) {
    (void)c;
    return 0; /* the emulation's temporaries are host memory */
}
static unsigned emu_scratch_epoch(void *c) {
    (void)c;
    return 0;
}

/* stamps: the host clock (every op has finished when it returns) */
static void *emu_stamp_new(void *c) {
    (void)c;
    return mr_calloc(1, sizeof(double));
}
static int emu_stamp(void *c, void *s) {
    (void)c;
    *(double *)s = mr_time_s();
    return 0;
}
static double emu_stamp_ms(void *c, void *a, void *b) {
    (void)c;
    return (*(double *)b - *(double *)a) * 1e3;
}
static void emu_stamp_free(void *c, void *s) {
    (void)c;
    free(s);
}

/* the copy stream: every op is done when it returns, so an upload there is an upload and waits
 * have nothing to wait for (events are tokens) */
static int emu_upload_side(void *c, void *dst, const void *src, size_t n) { return emu_copy(c, dst, src, n); }
static void *emu_event_new(void *c) {
    (void)c;
    return mr_calloc(1, 1);
}
static int emu_event_op(void *c, void *e, int side) {
    (void)c;
    if (!e || side < 0 || side > 1) {
        mr_seterr("emu: event: %s", e ? "side must be 0 or 1" : "no event");
        return -1;
    }
    return 0;
}
static void emu_event_free(void *c, void *e) {
    (void)c;
    free(e);
}

static const gpu_api k_emu = {
    .name = "emu",
    .device_count = emu_count,
    .device_info = emu_device_info,
    .init = emu_init,
    .free = emu_free,
    .sync = emu_sync,
    .alloc = emu_alloc,
    .dfree = emu_dfree,
    .upload = emu_copy,
    .download = emu_copy,
    .memset = emu_memset,
    .type_supported = emu_type_supported,
    .weight_view = emu_weight_view,
    .q8_1_row_size = emu_q8_1_row_size,
    .quantize_q8_1 = emu_quantize_q8_1,
    .matvec = emu_matvec,
    .moe_matvec = emu_moe_matvec,
    .rmsnorm = emu_rmsnorm,
    .silu_mul = emu_silu_mul,
    .gelu_mul = emu_gelu_mul,
    .add = emu_add,
    .add_rows = emu_add_rows,
    .rope = emu_rope,
    .moe_route = emu_moe_route,
    .attn = emu_attn,
    .gemm = emu_gemm,
    .kv_write = emu_kv_write,
    .moe_combine = emu_moe_combine,
    .rmsnorm_q8 = emu_rmsnorm_q8,
    .act_q8 = emu_act_q8,
    .moe_matvec2 = emu_moe_matvec2,
    .norm_rope = emu_norm_rope,
    .norm_rope_kv = emu_norm_rope_kv,
    .matvec_n = emu_matvec_n,
    .kv_write2 = emu_kv_write2,
    .moe_matvec_sum = emu_moe_matvec_sum,
    .moe_gate_up_q8 = emu_moe_gate_up_q8,
    .moe_matvec_grp = emu_moe_matvec_grp,
    .moe_gate_up_q8_grp = emu_moe_gate_up_q8,
    .router_route = emu_router_route,
    .copy_rows = emu_copy_rows,
    .sigmoid_mul = emu_sigmoid_mul,
    .ssm_gates = emu_ssm_gates,
    .ssm_conv = emu_ssm_conv,
    .l2norm = emu_l2norm,
    .delta_rule = emu_delta_rule,
    .delta_rule_g = emu_delta_rule_g,
    .norm_gate_q8 = emu_norm_gate_q8,
    .peer_copy = emu_peer_copy,
    .moe_sort = emu_moe_sort,
    .rows_idx = emu_rows_idx,
    .graph_begin = emu_graph_begin,
    .graph_end = emu_graph_end,
    .graph_launch = emu_graph_launch,
    .scratch_epoch = emu_scratch_epoch,
    .scratch_bytes = emu_scratch_bytes,
    .host_register = emu_host_register,
    .host_register_ro = emu_host_register_ro,
    .host_unregister = emu_host_unregister,
    .upload_side = emu_upload_side,
    .event_new = emu_event_new,
    .event_record = emu_event_op,
    .event_wait = emu_event_op,
    .event_free = emu_event_free,
    .stamp_new = emu_stamp_new,
    .stamp = emu_stamp,
    .stamp_ms = emu_stamp_ms,
    .stamp_free = emu_stamp_free,
};

const gpu_api *gpu_api_emu(void) { return &k_emu; }

const gpu_api *gpu_api_get(void) {
    if (emu_count() > 0) return &k_emu;
#ifdef MOERUN_HAVE_CUDA
    return gpu_api_cuda();
#else
    return NULL;
#endif
}
