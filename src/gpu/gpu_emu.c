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
#include "gpu/gpu_api.h"
#include "model/placement.h"
#include "quant/quant.h"
#include "quant/types.h"

typedef struct {
    int dev;
    float *row;    /* scratch: one dequantized weight row */
    size_t row_cap;
} emu_ctx;

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
    (void)c;
    if (n) memcpy(dst, src, n);
    return 0;
}
static int emu_memset(void *c, void *dst, int v, size_t n) {
    (void)c;
    memset(dst, v, n);
    return 0;
}

static bool emu_type_supported(uint32_t t) {
    return t == MR_TYPE_F32 || t == MR_TYPE_F16 || t == MR_TYPE_Q4_0 || t == MR_TYPE_Q8_0 || t == MR_TYPE_Q4_K ||
           t == MR_TYPE_Q5_K || t == MR_TYPE_Q6_K;
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

static int emu_quantize_q8_1(void *c, const float *x, void *xq, int64_t k, int64_t n_rows) {
    (void)c;
    if (k <= 0 || k % 32) {
        mr_seterr("emu: quantize_q8_1: k = %lld is not a positive multiple of 32", (long long)k);
        return -1;
    }
    const size_t rs = emu_q8_1_row_size(k);
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
    if (W->type == MR_TYPE_F32 || W->type == MR_TYPE_F16) {
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
    const bool fl = W->type == MR_TYPE_F32 || W->type == MR_TYPE_F16;
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
    for (int i = 0; i < n_ids; i++) {
        float *yi = y + (size_t)i * W->m;
        if (ids[i] < 0 || ids[i] >= W->n_mat) {
            memset(yi, 0, sizeof(float) * (size_t)W->m);
            continue;
        }
        const float *xi = x ? x + (size_t)i * x_stride : NULL;
        const void *qi = xq ? (const uint8_t *)xq + (size_t)i * xq_stride : NULL;
        if (emu_matvec(c, W, ids[i], xi, qi, yi)) return -1;
    }
    return 0;
}

static int emu_rmsnorm(void *c, float *out, const float *x, const float *w, int64_t n_rows, int n, float eps) {
    (void)c;
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
    (void)c;
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    return 0;
}
static int emu_add(void *c, float *y, const float *x, int64_t n) {
    (void)c;
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
    return 0;
}

static int emu_rope(void *c, const mrc_rope_params *p, float *x, const int32_t *pos, int n_tok, int n_heads,
                    int head_dim) {
    (void)c;
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
    (void)c;
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

static int emu_attn_decode(void *cv, const mrc_attn_params *p, const float *q, const void *k, const void *v,
                           const float *mask, float *out) {
    emu_ctx *c = cv;
    if (p->n_head_kv <= 0 || p->n_head % p->n_head_kv || p->n_kv > p->n_ctx || p->dk % 32 || p->dv % 32 ||
        p->dk > 576 || p->dv > 512 ||
        (p->type_k != MR_TYPE_F16 && p->type_k != MR_TYPE_Q8_0) ||
        (!p->v_in_k && p->type_v != MR_TYPE_F16 && p->type_v != MR_TYPE_Q8_0)) {
        mr_seterr("emu: attn_decode: heads %d/%d, dk %d, dv %d, K %s, V %s, n_kv %d of %d: unsupported", p->n_head,
                  p->n_head_kv, p->dk, p->dv, mr_type_name(p->type_k), mr_type_name(p->type_v), p->n_kv, p->n_ctx);
        return -1;
    }
    const size_t krow = mr_row_size(p->type_k, p->dk), vrow = p->v_in_k ? krow : mr_row_size(p->type_v, p->dv);
    const int g = p->n_head / p->n_head_kv, n = p->n_kv;
    float *buf = mr_malloc(sizeof(float) * ((size_t)p->dk + (size_t)p->dv + (size_t)(n > 0 ? n : 1)));
    if (!buf) return -1;
    float *kr = buf, *acc = buf + p->dk, *s = acc + p->dv;
    (void)c;
    for (int h = 0; h < p->n_head; h++) {
        const int kvh = h / g;
        const uint8_t *kb = (const uint8_t *)k + (size_t)kvh * p->n_ctx * krow;
        const uint8_t *vb = p->v_in_k ? kb : (const uint8_t *)v + (size_t)kvh * p->n_ctx * vrow;
        const float *qh = q + (size_t)h * p->dk;
        float mx = -INFINITY;
        for (int j = 0; j < n; j++) {
            if (mask && mask[j] == -INFINITY) {
                s[j] = -INFINITY;
                continue;
            }
            quant_dequant_row(p->type_k, kb + (size_t)j * krow, kr, p->dk);
            float d = 0.0f;
            for (int i = 0; i < p->dk; i++) d += qh[i] * kr[i];
            d *= p->scale;
            if (p->softcap > 0.0f) d = p->softcap * tanhf(d / p->softcap);
            if (mask) d += mask[j];
            s[j] = d;
            mx = fmaxf(mx, d);
        }
        memset(acc, 0, sizeof(float) * (size_t)p->dv);
        float z = 0.0f;
        if (mx > -INFINITY)
            for (int j = 0; j < n; j++) {
                if (s[j] == -INFINITY) continue;
                const float w = expf(s[j] - mx);
                z += w;
                quant_dequant_row(p->v_in_k ? p->type_k : p->type_v, vb + (size_t)j * vrow, kr,
                                  p->v_in_k ? p->dk : p->dv);
                for (int i = 0; i < p->dv; i++) acc[i] += w * kr[i];
            }
        float *o = out + (size_t)h * p->dv;
        for (int i = 0; i < p->dv; i++) o[i] = z > 0.0f ? acc[i] / z : 0.0f;
    }
    free(buf);
    return 0;
}

static float f16r(float x) { return mr_fp16_to_fp32(mr_fp32_to_fp16(x)); }

static int emu_gemm(void *cv, const mrc_weight *W, int64_t mat, const float *x, int64_t T, float *y) {
    emu_ctx *c = cv;
    float *wr = emu_row(c, W->k);
    float *xh = mr_malloc(sizeof(float) * (size_t)(T * W->k));
    if (!wr || !xh) {
        free(xh);
        return -1;
    }
    for (int64_t i = 0; i < T * W->k; i++) xh[i] = f16r(x[i]);
    for (int64_t r = 0; r < W->m; r++) {
        const uint8_t *src = (const uint8_t *)W->data + (size_t)mat * W->mat_bytes + (size_t)r * W->row_bytes;
        if (quant_dequant_row(W->type, src, wr, W->k)) {
            free(xh);
            return -1;
        }
        for (int64_t i = 0; i < W->k; i++) wr[i] = f16r(wr[i]);
        for (int64_t t = 0; t < T; t++) {
            float acc[8] = {0};
            const float *xt = xh + t * W->k;
            for (int64_t i = 0; i < W->k; i += 8) /* k is a multiple of 32 */
                for (int l = 0; l < 8; l++) acc[l] += wr[i + l] * xt[i + l];
            y[t * W->m + r] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        }
    }
    free(xh);
    return 0;
}

static int emu_kv_write(void *c, uint32_t type, const float *src, int heads, int d, int T, const int32_t *cells,
                        void *base, size_t row_bytes, int n_ctx) {
    (void)c;
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

static int emu_moe_combine(void *c, float *y, const float *slots, const float *w, int n_tok, int k, int n) {
    (void)c;
    for (int t = 0; t < n_tok; t++)
        for (int i = 0; i < n; i++) {
            float s = 0.0f;
            for (int j = 0; j < k; j++) s += w[(size_t)t * k + j] * slots[((size_t)t * k + j) * n + i];
            y[(size_t)t * n + i] = s;
        }
    return 0;
}

static int emu_copy_rows(void *c, float *dst, int64_t ds, const float *src, int64_t ss, int64_t rows, int64_t cols) {
    (void)c;
    for (int64_t r = 0; r < rows; r++) memmove(dst + r * ds, src + r * ss, sizeof(float) * (size_t)cols);
    return 0;
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
    .add = emu_add,
    .rope = emu_rope,
    .moe_route = emu_moe_route,
    .attn_decode = emu_attn_decode,
    .gemm = emu_gemm,
    .kv_write = emu_kv_write,
    .moe_combine = emu_moe_combine,
    .copy_rows = emu_copy_rows,
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
