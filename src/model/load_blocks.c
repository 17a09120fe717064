/*
 * load_blocks.c — tensor binders of the block kinds: GQA attention and the
 * FFNs (dense, MoE with optional shared experts). Each binds a layer's
 * tensors by name, checks shapes and types, and sets the layer's KV geometry.
 */
#include "base/base.h"
#include "model/model.h"

#define BIND(w, name, req)                                              \
    do {                                                                \
        if (model_bind(m, &ly->w, il, name, "weight", req)) return -1; \
    } while (0)
#define BIND_B(w, name)                                                 \
    do {                                                                \
        if (model_bind(m, &ly->w, il, name, "bias", false)) return -1; \
    } while (0)

int model_bind_attn_gqa(mr_model *m, int il) {
    const model_hparams *hp = &m->hp;
    model_layer *ly = &m->layers[il];
    const unsigned fl = m->arch->flags;
    const int D = hp->n_embd, H = ly->n_head, Hkv = ly->n_head_kv, Dk = hp->head_dim_k, Dv = hp->head_dim_v;
    BIND(attn_norm, "attn_norm", true);
    BIND(wq, "attn_q", true);
    BIND(wk, "attn_k", true);
    BIND(wv, "attn_v", true);
    BIND(wo, "attn_output", true);
    BIND_B(bq, "attn_q");
    BIND_B(bk, "attn_k");
    BIND_B(bv, "attn_v");
    BIND_B(bo, "attn_output");
    BIND(q_norm, "attn_q_norm", (fl & ARCH_QK_NORM) != 0);
    BIND(k_norm, "attn_k_norm", (fl & ARCH_QK_NORM) != 0);
    BIND(attn_post_norm, "post_attention_norm", (fl & ARCH_POST_NORMS) != 0);
    if (model_check_vec(&ly->attn_norm, D) || model_check_mat(&ly->wq, D, (int64_t)H * Dk, 1) ||
        model_check_mat(&ly->wk, D, (int64_t)Hkv * Dk, 1) || model_check_mat(&ly->wv, D, (int64_t)Hkv * Dv, 1) ||
        model_check_mat(&ly->wo, (int64_t)H * Dv, D, 1))
        return -1;
    if ((ly->bq.data && model_check_vec(&ly->bq, (int64_t)H * Dk)) ||
        (ly->bk.data && model_check_vec(&ly->bk, (int64_t)Hkv * Dk)) ||
        (ly->bv.data && model_check_vec(&ly->bv, (int64_t)Hkv * Dv)) || (ly->bo.data && model_check_vec(&ly->bo, D)))
        return -1;
    if ((ly->q_norm.data && model_check_vec(&ly->q_norm, Dk)) || (ly->k_norm.data && model_check_vec(&ly->k_norm, Dk)))
        return -1;
    if (ly->attn_post_norm.data && model_check_vec(&ly->attn_post_norm, D)) return -1;
    if (hp->n_rot > Dk) {
        mr_seterr("%s: rope.dimension_count %d exceeds the head size %d", m->g->path, hp->n_rot, Dk);
        return -1;
    }
    ly->kv_heads = Hkv;
    ly->kv_dk = Dk;
    ly->kv_dv = Dv;
    ly->kv_v_in_k = false;
    return 0;
}

int model_bind_ffn(mr_model *m, int il) {
    const model_hparams *hp = &m->hp;
    model_layer *ly = &m->layers[il];
    const int D = hp->n_embd;
    /* qwen3next names its pre-FFN norm post_attention_norm */
    BIND(ffn_norm, (m->arch->flags & ARCH_HYBRID_DELTA) ? "post_attention_norm" : "ffn_norm", true);
    if (model_check_vec(&ly->ffn_norm, D)) return -1;
    BIND(ffn_post_norm, "post_ffw_norm", (m->arch->flags & ARCH_POST_NORMS) != 0);
    if (ly->ffn_post_norm.data && model_check_vec(&ly->ffn_post_norm, D)) return -1;
    if (ly->ffn_kind == MODEL_FFN_DENSE) {
        BIND(ffn_gate, "ffn_gate", true);
        BIND(ffn_up, "ffn_up", true);
        BIND(ffn_down, "ffn_down", true);
        const int64_t F = ly->ffn_up.m;
        if (model_check_mat(&ly->ffn_gate, D, F, 1) || model_check_mat(&ly->ffn_up, D, F, 1) ||
            model_check_mat(&ly->ffn_down, F, D, 1))
            return -1;
        return 0;
    }
    const int E = hp->n_expert, Fe = hp->n_ff_exp > 0 ? hp->n_ff_exp : hp->n_ff;
    BIND(gate_inp, "ffn_gate_inp", true);
    BIND(gate_exps, "ffn_gate_exps", true);
    BIND(up_exps, "ffn_up_exps", true);
    BIND(down_exps, "ffn_down_exps", true);
    if (model_bind(m, &ly->exp_probs_b, il, "exp_probs_b", "bias", false)) return -1;
    if (model_check_mat(&ly->gate_inp, D, E, 1) || model_check_mat(&ly->gate_exps, D, Fe, E) ||
        model_check_mat(&ly->up_exps, D, Fe, E) || model_check_mat(&ly->down_exps, Fe, D, E))
        return -1;
    if (ly->exp_probs_b.data && model_check_vec(&ly->exp_probs_b, E)) return -1;
    /* shared experts: present when the tensors are */
    BIND(gate_shexp, "ffn_gate_shexp", false);
    BIND(up_shexp, "ffn_up_shexp", false);
    BIND(down_shexp, "ffn_down_shexp", false);
    BIND(gate_inp_shexp, "ffn_gate_inp_shexp", false);
    if (ly->up_shexp.data || ly->gate_shexp.data || ly->down_shexp.data) {
        if (!ly->up_shexp.data || !ly->gate_shexp.data || !ly->down_shexp.data) {
            mr_seterr("%s: layer %d: shared expert tensors ffn_{gate,up,down}_shexp must all be present", m->g->path,
                      il);
            return -1;
        }
        const int64_t Fs = ly->up_shexp.m;
        if (model_check_mat(&ly->gate_shexp, D, Fs, 1) || model_check_mat(&ly->up_shexp, D, Fs, 1) ||
            model_check_mat(&ly->down_shexp, Fs, D, 1))
            return -1;
        if (ly->gate_inp_shexp.data && model_check_mat(&ly->gate_inp_shexp, D, 1, 1)) return -1;
    }
    return 0;
}
