/*
 * attn_mla.c — the MLA (deepseek2) attention block kind: PLACEHOLDER.
 *
 * The deepseek2 engineer replaces this file. What to fill in:
 *  - model_bind_attn_mla(): bind wq (q_lora_rank == 0) or wq_a, q_a_norm, wq_b;
 *    wkv_a_mqa, kv_a_norm, wk_b, wv_b, wo (model_bind + model_check_*), and set
 *    the layer's cache geometry: kv_heads = 1, kv_dk = kv_lora_rank + n_rot,
 *    kv_dv = kv_lora_rank, kv_v_in_k = true (absorbed MLA: the cached latent
 *    [normed c_kv | roped k_pe] serves as K, its first kv_lora values as V).
 *  - model_attn_mla(): the forward of one layer's attention (same contract as
 *    model_attn_gqa in forward_attn.c): write the ubatch's cache rows with
 *    model_kv_write(), run cpu_attn_head() over the cache (cpu_attn_args with
 *    v_in_k), project with wv_b per head and wo.
 */
#include "base/base.h"
#include "model/forward.h"

int model_bind_attn_mla(mr_model *m, int il) {
    mr_seterr("%s: architecture %s: MLA attention is not implemented yet (layer %d)", m->g->path, m->arch->name, il);
    return -1;
}

int model_attn_mla(model_run *r, const model_ubatch *ub, int il, const float *xn, float *out) {
    mr_seterr("MLA attention is not implemented yet (layer %d)", il);
    return -1;
}
