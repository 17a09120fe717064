/*
 * attn_mla.c — the MLA attention block kind (deepseek2: DeepSeek V2 / V2-Lite /
 * V3 and their relatives), in the absorbed form llama.cpp runs (MQA over the
 * compressed latent); micro-batches of 32 tokens and more run the prompt form
 * (decompressed heads, below "the prompt form").
 *
 * Per layer (T tokens, H heads, head sizes nope / rope = n_rot / dv, latent
 * rank R = kv_lora_rank, dk = nope + rope):
 *   q = xn Wq^T                                     (T, H*dk)   V2-Lite (no q-lora)
 *     | rmsnorm(xn Wq_a^T, q_a_norm) Wq_b^T          (T, H*dk)   V3 (q-lora)
 *   ckv = xn Wkv_a_mqa^T                            (T, R + rope): [c | k_pe]
 *   RoPE (llama.cpp's NORM style, YaRN) on each head's q_pe and on k_pe;
 *   c = rmsnorm(c, kv_a_norm)
 *   cache row = [c | k_pe]   (one latent "KV head"; V = its first R values)
 *   Q = [q_nope Wk_b[h] (R) | q_pe (rope)]  per head  (T, H, R + rope)
 *   lat = softmax(Q cache^T * kq_scale, mask) cache[:, :R]   (T, H, R)
 *   o_h = Wv_b[h] lat_h  (T, H*dv);  out = o Wo^T
 *
 * Weights (GGUF order): wk_b (nope, R, H): head h is an (R rows of nope)
 * matrix; wv_b (R, dv, H): head h is (dv rows of R). Files in the legacy
 * fused form carry attn_kv_b (R, H*(nope+dv)) instead: the binder derives
 * F32 wk_b / wv_b from it once at load (owned by the model).
 *
 * Scale (llama.cpp's deepseek2 graph and llama_context YaRN setup, the
 * [TAG_DEEPSEEK2_YARN_LOG_MUL_FIX] form): with f = 1 / freq_scale and
 * L = rope.scaling.yarn_log_multiplier / 0.1 (the converter wrote 0.1 * L),
 *   YaRN on:  af = get_mscale(f, L != 1 ? L : 1) / get_mscale(f, L)   (L != 0)
 *                | get_mscale(f, 1)                                    (L == 0)
 *             af /= 1 + 0.1 ln f      (cancels ggml rope_yarn's own magnitude)
 *   af *= rope.scaling.yarn_attn_factor (1 by default); RoPE runs with af;
 *   mscale = af * (1 + 0.1 ln f) * (1 + 0.1 L ln f);
 *   kq_scale = mscale^2 / sqrt(dk)        (dk = key_length_mla: nope + rope)
 * where get_mscale(s, m) = s <= 1 ? 1 : 1 + 0.1 m ln s.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/forward.h"
#include "quant/quant.h"

#define BIND(w, name, req)                                              \
    do {                                                                \
        if (model_bind(m, &ly->w, il, name, "weight", req)) return -1; \
    } while (0)

/* MLA head sizes: key_length_mla / value_length_mla, or (legacy files
 * without them) key_length / value_length, as llama.cpp's n_embd_head_k_mla(). */
static int mla_dk(const model_hparams *hp) { return hp->head_dim_k_mla > 0 ? hp->head_dim_k_mla : hp->head_dim_k; }
static int mla_dv(const model_hparams *hp) { return hp->head_dim_v_mla > 0 ? hp->head_dim_v_mla : hp->head_dim_v; }
void model_mla_dims(const model_hparams *hp, int *dk, int *dv) {
    *dk = mla_dk(hp);
    *dv = mla_dv(hp);
}

/* Chain buf into the model's owned list (first word = next); frees buf on failure. */
static int own(mr_model *m, void *buf) {
    void **node = mr_malloc(sizeof(void *) * 2);
    if (!node) {
        free(buf);
        return -1;
    }
    node[0] = m->mla_owned;
    node[1] = buf;
    m->mla_owned = node;
    return 0;
}

/* Derive wk_b (nope, R, H) and wv_b (R, dv, H) as F32 from the fused
 * attn_kv_b (R, H*(nope+dv)): per head, rows [0, nope) are the K part, rows
 * [nope, nope+dv) the V part. The buffer is appended to m->mla_owned. */
static int derive_kv_b(mr_model *m, int il, int H, int R, int nope, int dv) {
    model_layer *ly = &m->layers[il];
    const size_t nk = (size_t)H * R * nope, nv = (size_t)H * dv * R;
    float *buf = mr_malloc(sizeof(float) * (nk + nv + (size_t)R));
    if (!buf) return -1;
    float *wk = buf, *wv = buf + nk, *row = buf + nk + nv;
    for (int h = 0; h < H; h++)
        for (int i = 0; i < nope + dv; i++) {
            const int64_t r = (int64_t)h * (nope + dv) + i;
            if (quant_dequant_row(ly->wkv_b.type, (const char *)ly->wkv_b.data + (size_t)r * ly->wkv_b.row_bytes, row,
                                  R)) {
                free(buf);
                return -1;
            }
            if (i < nope)
                for (int l = 0; l < R; l++) wk[((size_t)h * R + l) * nope + i] = row[l];
            else memcpy(wv + ((size_t)h * dv + (i - nope)) * R, row, sizeof(float) * (size_t)R);
        }
    if (own(m, buf)) return -1;
    mr_weight k = {.data = wk, .name = "attn_k_b (from attn_kv_b)", .type = MR_TYPE_F32, .k = nope, .m = R, .n_mat = H};
    k.row_bytes = sizeof(float) * (size_t)nope;
    k.mat_bytes = k.row_bytes * (size_t)R;
    mr_weight v = {.data = wv, .name = "attn_v_b (from attn_kv_b)", .type = MR_TYPE_F32, .k = R, .m = dv, .n_mat = H};
    v.row_bytes = sizeof(float) * (size_t)R;
    v.mat_bytes = v.row_bytes * (size_t)dv;
    ly->wk_b = k;
    ly->wv_b = v;
    return 0;
}

void model_mla_free_owned(mr_model *m) {
    void **node = m->mla_owned;
    while (node) {
        void **next = node[0];
        free(node[1]);
        free(node);
        node = next;
    }
    m->mla_owned = NULL;
}

int model_bind_attn_mla(mr_model *m, int il) {
    const model_hparams *hp = &m->hp;
    model_layer *ly = &m->layers[il];
    const int D = hp->n_embd, H = ly->n_head, R = hp->kv_lora_rank, rope = hp->n_rot;
    const int dk = mla_dk(hp), dv = mla_dv(hp), nope = dk - rope;
    if (R <= 0) {
        mr_seterr("%s: %s: attention.kv_lora_rank is missing or 0 (MLA needs it)", m->g->path, m->arch->name);
        return -1;
    }
    if (nope <= 0 || dv <= 0 || rope <= 0) {
        mr_seterr("%s: MLA head sizes: key %d (rope %d, nope %d), value %d are not usable", m->g->path, dk, rope,
                  nope, dv);
        return -1;
    }
    BIND(attn_norm, "attn_norm", true);
    BIND(wq, "attn_q", false);
    if (!ly->wq.data) {
        BIND(wq_a, "attn_q_a", true);
        BIND(q_a_norm, "attn_q_a_norm", true);
        BIND(wq_b, "attn_q_b", true);
        const int64_t QR = ly->wq_a.m;
        if (hp->q_lora_rank > 0 && QR != hp->q_lora_rank) {
            mr_seterr("%s: tensor '%s' has %lld rows, attention.q_lora_rank is %d", m->g->path, ly->wq_a.name,
                      (long long)QR, hp->q_lora_rank);
            return -1;
        }
        if (model_check_mat(&ly->wq_a, D, QR, 1) || model_check_vec(&ly->q_a_norm, QR) ||
            model_check_mat(&ly->wq_b, QR, (int64_t)H * dk, 1))
            return -1;
    } else if (model_check_mat(&ly->wq, D, (int64_t)H * dk, 1))
        return -1;
    BIND(wkv_a_mqa, "attn_kv_a_mqa", true);
    BIND(kv_a_norm, "attn_kv_a_norm", true);
    BIND(wo, "attn_output", true);
    if (model_check_vec(&ly->attn_norm, D) || model_check_mat(&ly->wkv_a_mqa, D, (int64_t)R + rope, 1) ||
        model_check_vec(&ly->kv_a_norm, R) || model_check_mat(&ly->wo, (int64_t)H * dv, D, 1))
        return -1;
    BIND(wk_b, "attn_k_b", false);
    BIND(wv_b, "attn_v_b", false);
    if (ly->wk_b.data && ly->wv_b.data) {
        if (model_check_mat(&ly->wk_b, nope, R, H) || model_check_mat(&ly->wv_b, R, dv, H)) return -1;
    } else {
        BIND(wkv_b, "attn_kv_b", false);
        if (!ly->wkv_b.data) {
            mr_seterr("%s: layer %d: neither attn_k_b + attn_v_b nor attn_kv_b is present (MLA)", m->g->path, il);
            return -1;
        }
        if (model_check_shape(&ly->wkv_b, R, (int64_t)H * (nope + dv), 1)) return -1;
        if (!quant_can_dequant(ly->wkv_b.type)) {
            mr_seterr("%s: tensor '%s' has type %s, which cannot be dequantized", m->g->path, ly->wkv_b.name,
                      mr_type_name(ly->wkv_b.type));
            return -1;
        }
        if (derive_kv_b(m, il, H, R, nope, dv)) {
            mr_preerr("%s: layer %d: deriving attn_k_b / attn_v_b from attn_kv_b", m->g->path, il);
            return -1;
        }
    }
    ly->kv_heads = 1;
    ly->kv_dk = R + rope;
    ly->kv_dv = R;
    ly->kv_v_in_k = true;
    return 0;
}

/* ---- the prompt form: weights ------------------------------------------------------------ */

#define MLA_PF_MAX_RANK 4096          /* kv_lora_rank at most (mla_pf_dequant: a q8_0 row on the stack) */
#define MLA_PF_MIN_TOKENS 32          /* shorter micro-batches: no measurable difference */
#define MLA_PF_CELLS 256              /* cells per decompression matmul */
#define MLA_PF_MAX ((size_t)96 << 20) /* bytes of f16 K / V heads at most (MOERUN_MLA_PROMPT_MIB) */

/* Whether weight w's tensor goes to a GPU (engine placement): that layer never runs here. */
static bool mla_on_device(const mr_model *m, const mr_weight *w) {
    if (!m->on_device || !w->name) return false;
    const gguf_tensor *t = gguf_tensor_find(m->g, w->name);
    return t && m->on_device[t - m->g->tensors];
}

/* The prompt form is on unless MOERUN_MLA_PROMPT=0 (the absorbed form for every micro-batch). */
static bool mla_prompt_enabled(void) {
    const char *e = getenv("MOERUN_MLA_PROMPT");
    return !(e && !strcmp(e, "0"));
}

/* wkv_nb of one layer: rows h*nope + i = column i of Wk_b[h] (Wk_b[h] is R rows of nope), for
 * every head, then rows H*nope + h*dv + i = row i of Wv_b[h] (dv rows of R); Q8_0, interleaved by
 * 8 rows for the fast kernels when repack. Transposing Wk_b re-blocks it: a second Q8_0 rounding
 * of its values (about as large as the absorbed form's q8_0 rounding of the queries). */
static int derive_kv_nb(mr_model *m, model_layer *ly, int H, int R, int nope, int dv, bool repack) {
    const int64_t M = (int64_t)H * (nope + dv);
    const size_t rb = mr_row_size(MR_TYPE_Q8_0, R), bytes = rb * (size_t)M;
    char *q = mr_malloc(bytes);
    float *wk = mr_malloc(sizeof(float) * ((size_t)R * nope + R));
    if (!q || !wk) {
        free(q), free(wk);
        return -1;
    }
    float *row = wk + (size_t)R * nope;
    const mr_weight *K = &ly->wk_b, *V = &ly->wv_b;
    int rc = 0;
    for (int h = 0; h < H && !rc; h++) {
        for (int r = 0; r < R && !rc; r++) /* Wk_b[h] row r: nope values */
            rc = quant_dequant_row(K->type, (const char *)K->data + (size_t)h * K->mat_bytes + (size_t)r * K->row_bytes,
                                   wk + (size_t)r * nope, nope);
        for (int i = 0; i < nope && !rc; i++) {
            for (int r = 0; r < R; r++) row[r] = wk[(size_t)r * nope + i];
            rc = quant_quantize_row(MR_TYPE_Q8_0, row, q + ((size_t)h * nope + i) * rb, R);
        }
        for (int i = 0; i < dv && !rc; i++) {
            rc = quant_dequant_row(V->type, (const char *)V->data + (size_t)h * V->mat_bytes + (size_t)i * V->row_bytes,
                                   row, R);
            if (!rc) rc = quant_quantize_row(MR_TYPE_Q8_0, row, q + ((size_t)H * nope + (size_t)h * dv + i) * rb, R);
        }
    }
    free(wk);
    if (rc) {
        free(q);
        return -1;
    }
    uint32_t type = MR_TYPE_Q8_0;
    if (repack && quant_can_repack(type, R, M) && quant_r8_fast(MR_TYPE_R8F_BASE + type)) {
        char *r8 = mr_malloc(bytes);
        if (!r8 || quant_repack(type, q, r8, R, M)) {
            free(r8), free(q);
            return -1;
        }
        free(q);
        q = r8;
        type += MR_TYPE_R8F_BASE;
    }
    if (own(m, q)) return -1;
    ly->wkv_nb = (mr_weight){.data = q, .name = "attn_kv_nb (derived)", .type = type, .k = R, .m = M, .n_mat = 1,
                             .row_bytes = rb, .mat_bytes = bytes};
    return 0;
}

int model_mla_prepare(mr_model *m, bool repack) {
    const model_hparams *hp = &m->hp;
    if (!mla_prompt_enabled()) return 0;
    const double t0 = mr_time_s();
    int n = 0;
    size_t bytes = 0;
    for (int il = 0; il < hp->n_layer; il++) {
        model_layer *ly = &m->layers[il];
        if (ly->attn_kind != MODEL_ATTN_MLA || !ly->wk_b.data || !ly->wv_b.data) continue;
        const int H = ly->n_head, R = hp->kv_lora_rank, dk = mla_dk(hp), dv = mla_dv(hp), nope = dk - hp->n_rot;
        /* the prompt attention runs on f16 heads with the multi-token kernels' sizes */
        if (R % 32 || R > MLA_PF_MAX_RANK || nope % 8 || dv % 32 || mla_on_device(m, &ly->wkv_a_mqa)) continue;
        if (derive_kv_nb(m, ly, H, R, nope, dv, repack)) {
            mr_preerr("%s: layer %d: deriving the MLA prompt weights", m->g->path, il);
            return -1;
        }
        n++;
        bytes += ly->wkv_nb.mat_bytes;
    }
    if (n) {
        char b[32];
        MR_INFO("MLA prompt form: %d layers, %s of derived weights in %.1f s", n, mr_fmt_bytes(b, sizeof b, bytes),
                mr_time_s() - t0);
    }
    return 0;
}

/* ---- forward ------------------------------------------------------------------------ */

static float get_mscale(float s, float ms) { return s <= 1.0f ? 1.0f : 0.1f * ms * logf(s) + 1.0f; }

/* RoPE parameters of layer il with deepseek2's attn_factor, and kq_scale
 * (see the banner). */
cpu_rope_params model_mla_rope(const mr_model *m, int il, float *kq_scale) {
    const model_hparams *hp = &m->hp;
    cpu_rope_params p = model_rope_params(m, il);
    const float fs = p.freq_scale, log_mul = hp->yarn_log_mul / 0.1f;
    float af = 1.0f;
    if (p.ext_factor != 0.0f) {
        const float f = 1.0f / fs;
        if (log_mul != 0.0f) af = get_mscale(f, log_mul != 1.0f ? log_mul : 1.0f) / get_mscale(f, log_mul);
        else af = get_mscale(f, 1.0f);
        af *= 1.0f / (1.0f + 0.1f * logf(f));
    }
    af *= hp->yarn_attn_factor != 0.0f ? hp->yarn_attn_factor : 1.0f;
    p.attn_factor = af;
    const float af_org = af * (1.0f + 0.1f * logf(1.0f / fs));
    const float mscale = af_org * (1.0f + 0.1f * log_mul * logf(1.0f / fs));
    *kq_scale = mscale * mscale / sqrtf((float)mla_dk(hp));
    return p;
}

/* Scratch of the MLA kind (r->mla), sized for r->n_ub tokens. */
typedef struct {
    float *qa;    /* (T, q_lora) */
    float *q;     /* (T, H*dk) */
    float *ckv;   /* (T, R + rope) */
    float *qabs;  /* (T, H*(R + rope)) */
    float *lat;   /* (T, H*R) */
    float *o;     /* (T, H*dv) */
    /* the prompt form's buffer (mla_prompt), grown on demand: f16 K / V heads of a head group,
     * then the dequantized cells and their decompressed rows of one chunk */
    void *pf;
    size_t pf_bytes;
    size_t pf_max;  /* bytes of f16 K / V heads at most (MLA_PF_MAX, MOERUN_MLA_PROMPT_MIB) */
} mla_scratch;

static mla_scratch *mla_scratch_get(model_run *r) {
    if (r->mla) return r->mla;
    const mr_model *m = r->m;
    const model_hparams *hp = &m->hp;
    size_t qa = 1, q = 1, ckv = 1, qabs = 1, lat = 1, o = 1;
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *ly = &m->layers[il];
        if (ly->attn_kind != MODEL_ATTN_MLA) continue;
        const size_t H = (size_t)ly->n_head, R = (size_t)hp->kv_lora_rank, rope = (size_t)hp->n_rot;
        if (ly->wq_a.data) qa = MR_MAX(qa, (size_t)ly->wq_a.m);
        q = MR_MAX(q, H * (size_t)mla_dk(hp));
        ckv = MR_MAX(ckv, R + rope);
        qabs = MR_MAX(qabs, H * (R + rope));
        lat = MR_MAX(lat, H * R);
        o = MR_MAX(o, H * (size_t)mla_dv(hp));
    }
    /* one block: the header, then the arrays (each a multiple of 16 floats) */
    const size_t T = (size_t)r->n_ub;
    size_t sz[6] = {qa * T, q * T, ckv * T, qabs * T, lat * T, o * T}, tot = 0;
    for (int i = 0; i < 6; i++) tot += (sz[i] + 15) & ~(size_t)15;
    const size_t hdr = (sizeof(mla_scratch) + 63) & ~(size_t)63;
    char *blk = mr_calloc(1, hdr + sizeof(float) * tot + 64);
    if (!blk) return NULL;
    mla_scratch *s = (mla_scratch *)blk;
    float *p = (float *)(((uintptr_t)(blk + hdr) + 63) & ~(uintptr_t)63);
    float **dst[6] = {&s->qa, &s->q, &s->ckv, &s->qabs, &s->lat, &s->o};
    for (int i = 0; i < 6; i++) {
        *dst[i] = p;
        p += (sz[i] + 15) & ~(size_t)15;
    }
    const char *e = getenv("MOERUN_MLA_PROMPT_MIB");
    const double mib = e ? strtod(e, NULL) : 0;
    s->pf_max = mib > 0 && mib < 1e6 ? (size_t)(mib * 1048576.0) : MLA_PF_MAX;
    r->mla = s;
    return s;
}

void model_mla_run_free(model_run *r) {
    mla_scratch *s = r->mla;
    if (s) mr_free_aligned(s->pf);
    free(s);
    r->mla = NULL;
}

/* ---- the prompt form: forward ------------------------------------------------------------------ *
 * The absorbed form attends over the latent: per (query, cell, head) kd + R = 1088 multiply-adds
 * (V2-Lite), in f32 on the cache. Decompressing the cache into ordinary heads, K = [Wk_b[h]^T c |
 * k_pe] (dk) and V = Wv_b[h] c (dv), costs cells x H x (nope + dv) x R int8 multiply-adds per
 * micro-batch (matmuls on wkv_nb, twice: mla_pf_dequant) and leaves dk + dv = 320 per (query,
 * cell, head); it also drops the per-token absorption and up-projection matmuls. For a prompt of
 * T tokens over N cells that wins once T is a sizeable fraction of N (mla_pf_wins); micro-batches
 * under MLA_PF_MIN_TOKENS and decode steps keep the absorbed form. This is ik_llama.cpp's -mla 3
 * split. Heads run in groups whose f16 K / V (cells x group x (dk + dv) x 2 bytes) fit
 * MLA_PF_MAX (MOERUN_MLA_PROMPT_MIB); the attention is the multi-token kernel's on f16 heads,
 * which needs AVX-512 (elsewhere the absorbed form runs). Accuracy: against the exact MLA
 * arithmetic (f32 weights and cache) on the tiny fixtures, the prompt form is as close as
 * llama.cpp's absorbed path and ours (KL 0.11-0.46 vs 0.10-0.44 there, a chaotic random net), and
 * the golden cases of 64 and 300 tokens, which run it, pass their bars. */

typedef struct {
    const uint8_t *cache; /* the layer's latent rows */
    size_t cache_rs;      /* their bytes */
    uint32_t cache_type;
    int kd, R, rope, nope, dv, G, N, c0, n;
    float *row;           /* per thread: kd floats (a cache row; in mla_pf_convert, k_pe in f16) */
    float *c, *ce, *kpe;  /* (n, R) latents; (n, R) what their q8_0 rounding loses; (n, rope) k_pe */
    float *yk, *yv;       /* (n, G*nope) K, (n, G*dv) V from c */
    float *yk2, *yv2;     /* the same from ce */
    uint16_t *kt, *vt;    /* (G, N, nope + rope), (G, N, dv) f16 */
    _Atomic int failed;
} mla_pf_job;

/* Cells [c0, c0 + n): latents, k_pe, and the part of each latent that its q8_0 quantization (the
 * matmul's activation type) loses, which a second matmul adds back: the rounding would otherwise
 * reach every cell's K and V (the absorbed form rounds each query instead). */
static void mla_pf_dequant(void *arg, int ith, int nth) {
    mla_pf_job *j = arg;
    uint8_t q8[MLA_PF_MAX_RANK / 32 * 34];
    float *x = j->row + (size_t)ith * j->kd;
    for (int c = j->n * ith / nth; c < j->n * (ith + 1) / nth; c++) {
        float *lat = j->c + (size_t)c * j->R, *e = j->ce + (size_t)c * j->R;
        if (quant_dequant_row(j->cache_type, j->cache + (size_t)(j->c0 + c) * j->cache_rs, x, j->kd) ||
            quant_quantize_row(MR_TYPE_Q8_0, x, q8, j->R) || quant_dequant_row(MR_TYPE_Q8_0, q8, e, j->R)) {
            atomic_store(&j->failed, 1);
            continue;
        }
        for (int i = 0; i < j->R; i++) lat[i] = x[i], e[i] = x[i] - e[i];
        memcpy(j->kpe + (size_t)c * j->rope, x + j->R, sizeof(float) * (size_t)j->rope);
    }
}

/* The decompressed rows of cells [c0, c0 + n) into the f16 K / V heads. */
static void mla_pf_convert(void *arg, int ith, int nth) {
    mla_pf_job *j = arg;
    const int dk = j->nope + j->rope;
    uint16_t *kpe = (uint16_t *)(j->row + (size_t)ith * j->kd); /* the cell's k_pe in f16, shared by its heads */
    for (int c = j->n * ith / nth; c < j->n * (ith + 1) / nth; c++) {
        float *yk = j->yk + (size_t)c * j->G * j->nope, *yv = j->yv + (size_t)c * j->G * j->dv;
        const float *yk2 = j->yk2 + (size_t)c * j->G * j->nope, *yv2 = j->yv2 + (size_t)c * j->G * j->dv;
        for (int i = 0; i < j->G * j->nope; i++) yk[i] += yk2[i];
        for (int i = 0; i < j->G * j->dv; i++) yv[i] += yv2[i];
        int rc = quant_quantize_row(MR_TYPE_F16, j->kpe + (size_t)c * j->rope, kpe, j->rope);
        for (int h = 0; h < j->G; h++) {
            uint16_t *k = j->kt + ((size_t)h * j->N + j->c0 + c) * dk;
            uint16_t *v = j->vt + ((size_t)h * j->N + j->c0 + c) * j->dv;
            rc |= quant_quantize_row(MR_TYPE_F16, yk + (size_t)h * j->nope, k, j->nope);
            memcpy(k + j->nope, kpe, sizeof(uint16_t) * (size_t)j->rope);
            rc |= quant_quantize_row(MR_TYPE_F16, yv + (size_t)h * j->dv, v, j->dv);
        }
        if (rc) atomic_store(&j->failed, 1);
    }
}

/* Whether the prompt form is cheaper for T queries over N cells (multiply-adds per head; the int8
 * matmuls, run twice, go at about twice the f32 attention's rate). */
static bool mla_pf_wins(int T, int N, int R, int rope, int nope, int dv) {
    const double vis = MR_MAX((double)N - 0.5 * T, 0.5 * T), kd = R + rope, dk = nope + rope;
    const double absorbed = (double)T * vis * (kd + R) + 0.5 * T * ((double)nope * R + (double)R * dv);
    const double pf = (double)T * vis * (dk + dv) + N * (double)(nope + dv) * R + 4.0 * N * (dk + dv);
    return pf < absorbed;
}

/* The attention of the prompt form: q (T, H*dk) -> o (T, H*dv). Returns 1 when it does not apply
 * (the caller runs the absorbed form), -1 on error. */
static int mla_prompt(model_run *r, const model_ubatch *ub, int il, mla_scratch *s, float kq_scale) {
    const mr_model *m = r->m;
    const model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[il];
    const kv_cache *kv = r->kv;
    const int T = ub->n, H = ly->n_head, R = hp->kv_lora_rank, rope = hp->n_rot, N = kv->n_hi;
    const int dk = mla_dk(hp), dv = mla_dv(hp), nope = dk - rope, kd = R + rope;
    if (!ly->wkv_nb.data || r->ref || T < MLA_PF_MIN_TOKENS || !mla_pf_wins(T, N, R, rope, nope, dv)) return 1;
    cpu_attn_args a = {
        .n_head = H, .n_head_kv = H, .dk = dk, .dv = dv,
        .scale = kq_scale, .softcap = hp->attn_softcap,
        .k_type = MR_TYPE_F16, .v_type = MR_TYPE_F16,
        .n_ctx = N, .v_in_k = false,
        .n_cells = N, .cell_pos = kv->pos, .cell_seq = kv->seq,
        .n_swa = 0, .flash = r->flash, .ref = false,
    };
    if (cpu_attn_multi_tokens(&a) <= 0) return 1; /* the per-token kernel would read every head's K per token */
    const size_t per_head = (size_t)N * (dk + dv) * sizeof(uint16_t);
    const int G = (int)MR_MIN((size_t)H, s->pf_max / per_head);
    if (G < 1) return 1;
    /* buffer: K / V heads; per thread a cache row; per chunk of cells the latents, their q8_0
     * residues, k_pe and the decompressed rows; for head groups the queries and outputs */
    const int nth = mr_tp_n(r->tp);
    const size_t CH = MLA_PF_CELLS, kvb = ((size_t)G * per_head + 63) & ~(size_t)63;
    const size_t fl = (size_t)nth * kd + CH * (2 * (size_t)R + rope) + CH * G * 2 * ((size_t)nope + dv) +
                      (G < H ? (size_t)T * G * (dk + dv) : 0);
    const size_t need = kvb + sizeof(float) * fl;
    if (s->pf_bytes < need) {
        mr_free_aligned(s->pf);
        s->pf_bytes = 0;
        if (!(s->pf = mr_malloc_aligned(need))) {
            mr_preerr("MLA prompt buffer");
            return -1;
        }
        s->pf_bytes = need;
    }
    mla_pf_job j = {.cache = kv->k[il], .cache_rs = mr_row_size(kv->type_k, kd), .cache_type = kv->type_k,
                    .kd = kd, .R = R, .rope = rope, .nope = nope, .dv = dv, .N = N, .kt = s->pf};
    float *p = (float *)((char *)s->pf + kvb);
    j.row = p, p += (size_t)nth * kd;
    j.c = p, p += CH * R;
    j.ce = p, p += CH * R;
    j.kpe = p, p += CH * rope;
    j.yk = p, p += CH * G * nope;
    j.yv = p, p += CH * G * dv;
    j.yk2 = p, p += CH * G * nope;
    j.yv2 = p, p += CH * G * dv;
    float *qg = p, *og = qg + (size_t)T * G * dk;
    const uint64_t bytes0 = r->mm.bytes_read;
    for (int h0 = 0; h0 < H; h0 += G) {
        const int g = MR_MIN(G, H - h0);
        j.G = g;
        j.vt = j.kt + (size_t)g * N * dk;
        /* the rows of heads [h0, h0 + g): their K part and their V part */
        mr_weight Wk = ly->wkv_nb, Wv = ly->wkv_nb;
        Wk.data = (const char *)Wk.data + (size_t)h0 * nope * Wk.row_bytes;
        Wk.m = (int64_t)g * nope;
        Wv.data = (const char *)Wv.data + ((size_t)H * nope + (size_t)h0 * dv) * Wv.row_bytes;
        Wv.m = (int64_t)g * dv;
        Wk.mat_bytes = Wk.row_bytes * (size_t)Wk.m, Wv.mat_bytes = Wv.row_bytes * (size_t)Wv.m;
        const mr_weight *W2[2] = {&Wk, &Wv};
        for (int c0 = 0; c0 < N; c0 += (int)CH) {
            j.c0 = c0, j.n = (int)MR_MIN((int)CH, N - c0);
            atomic_init(&j.failed, 0);
            mr_tp_run(r->tp, mla_pf_dequant, &j);
            float *y[2] = {j.yk, j.yv}, *y2[2] = {j.yk2, j.yv2};
            if (atomic_load(&j.failed) || cpu_matmul_multi(&r->mm, 2, W2, j.c, j.n, y) ||
                cpu_matmul_multi(&r->mm, 2, W2, j.ce, j.n, y2))
                return -1;
            mr_tp_run(r->tp, mla_pf_convert, &j);
            if (atomic_load(&j.failed)) return -1;
        }
        a.n_head = a.n_head_kv = g;
        a.K = (const uint8_t *)j.kt, a.V = (const uint8_t *)j.vt;
        if (g == H) {
            model_attn_run(r, ub, &a, s->q, s->o);
            break;
        }
        for (int t = 0; t < T; t++)
            memcpy(qg + (size_t)t * g * dk, s->q + ((size_t)t * H + h0) * dk, sizeof(float) * (size_t)g * dk);
        model_attn_run(r, ub, &a, qg, og);
        for (int t = 0; t < T; t++)
            memcpy(s->o + ((size_t)t * H + h0) * dv, og + (size_t)t * g * dv, sizeof(float) * (size_t)g * dv);
    }
    r->mm.bytes_read = bytes0 + ly->wkv_nb.mat_bytes; /* the weight once, whatever the chunks */
    r->n_mla_prompt++;
    return 0;
}

int model_attn_mla(model_run *r, const model_ubatch *ub, int il, const float *xn, float *out) {
    const mr_model *m = r->m;
    const model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[il];
    const int T = ub->n, H = ly->n_head, R = hp->kv_lora_rank, rope = hp->n_rot;
    const int dk = mla_dk(hp), dv = mla_dv(hp), nope = dk - rope, kd = R + rope;
    mla_scratch *s = mla_scratch_get(r);
    if (!s) {
        mr_preerr("MLA scratch for micro-batches of %d tokens", r->n_ub);
        return -1;
    }

    /* q (T, H*dk) */
    if (ly->wq.data) { /* q and the compressed kv read the same input: one job */
        const mr_weight *w2[2] = {&ly->wq, &ly->wkv_a_mqa};
        float *y2[2] = {s->q, s->ckv};
        if (cpu_matmul_multi(&r->mm, 2, w2, xn, T, y2)) return -1;
    } else {
        const int QR = (int)ly->wq_a.m;
        if (cpu_matmul(&r->mm, &ly->wq_a, 0, xn, T, s->qa)) return -1;
        cpu_rmsnorm_rows(s->qa, s->qa, ly->q_a_norm.data, T, QR, hp->rms_eps);
        if (cpu_matmul(&r->mm, &ly->wq_b, 0, s->qa, T, s->q)) return -1;
    }
    /* compressed kv + k_pe (T, R + rope) */
    if (!ly->wq.data && cpu_matmul(&r->mm, &ly->wkv_a_mqa, 0, xn, T, s->ckv)) return -1;

    float kq_scale;
    const cpu_rope_params rp = model_mla_rope(m, il, &kq_scale);
    for (int t = 0; t < T; t++) {
        float *q = s->q + (size_t)t * H * dk, *c = s->ckv + (size_t)t * kd;
        cpu_rope_cache(&rp, (float)ub->pos[t], r->rope_cs);
        cpu_rope_apply(&rp, r->rope_cs, q + nope, H, dk); /* q_pe of each head */
        cpu_rope_apply(&rp, r->rope_cs, c + R, 1, rope);  /* k_pe */
        cpu_rmsnorm(c, c, ly->kv_a_norm.data, R, hp->rms_eps);
    }
    model_kv_write(r, ub, il, s->ckv, NULL);

    const int pf = mla_prompt(r, ub, il, s, kq_scale);
    if (pf < 0) return -1;
    if (pf == 0) return cpu_matmul(&r->mm, &ly->wo, 0, s->o, T, out);

    /* absorbed queries: [q_nope Wk_b[h] | q_pe] per head */
    const int64_t qs = (int64_t)H * dk, as = (int64_t)H * kd;
    MR_ASSERT(ly->wk_b.n_mat == H && ly->wv_b.n_mat == H);
    if (cpu_matmul_heads(&r->mm, &ly->wk_b, s->q, qs, dk, T, s->qabs, as, kd)) return -1;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            memcpy(s->qabs + (size_t)t * as + (size_t)h * kd + R, s->q + (size_t)t * qs + (size_t)h * dk + nope,
                   sizeof(float) * (size_t)rope);

    const kv_cache *kv = r->kv;
    cpu_attn_args a = {
        .n_head = H, .n_head_kv = 1, .dk = kd, .dv = R,
        .scale = kq_scale, .softcap = hp->attn_softcap,
        .k_type = kv->type_k, .v_type = kv->type_k,
        .K = kv->k[il], .V = NULL, .n_ctx = kv->n_ctx, .v_in_k = true,
        .n_cells = kv->n_hi, .cell_pos = kv->pos, .cell_seq = kv->seq,
        .n_swa = 0, .flash = r->flash, .ref = r->ref,
    };
    model_attn_run(r, ub, &a, s->qabs, s->lat);

    /* per-head value up-projection, then the output projection */
    const int64_t ls = (int64_t)H * R, os = (int64_t)H * dv;
    if (cpu_matmul_heads(&r->mm, &ly->wv_b, s->lat, ls, R, T, s->o, os, dv)) return -1;
    return cpu_matmul(&r->mm, &ly->wo, 0, s->o, T, out);
}
