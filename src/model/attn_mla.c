/*
 * attn_mla.c — the MLA attention block kind (deepseek2: DeepSeek V2 / V2-Lite /
 * V3 and their relatives), in the absorbed form llama.cpp runs (MQA over the
 * compressed latent).
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
    /* chain the buffer into the model's owned list: first word = next */
    void **node = mr_malloc(sizeof(void *) * 2);
    if (!node) {
        free(buf);
        return -1;
    }
    node[0] = m->mla_owned;
    node[1] = buf;
    m->mla_owned = node;
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
    r->mla = s;
    return s;
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
