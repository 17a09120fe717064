/*
 * forward_ffn.c — the FFN block kinds: dense gated FFN (SwiGLU / GeGLU) and
 * the mixture of experts.
 *
 * MoE per layer (llama.cpp's build_moe_ffn):
 *   logits = xn Wr^T (T, E); probs = softmax(logits) | sigmoid(logits) | logits
 *   selection = probs (+ exp_probs_b); optional group-limited selection
 *   top-k experts by selection; weights = probs of the chosen ones
 *   (SOFTMAX_WEIGHT: softmax over the k chosen logits)
 *   norm_w: weights /= max(sum, 6.1e-5); scale: weights *= expert_weights_scale
 *   out = sum_k weights_k * down_e(act(gate_e xn) * up_e xn)
 *   + shared experts (dense FFN on xn, optionally gated by sigmoid(xn . w_gate_shexp))
 * Tokens are grouped by expert so each routed expert's weights are read once
 * per micro-batch.
 */
#include <math.h>
#include <string.h>

#include "base/base.h"
#include "cpu/moe.h"
#include "model/forward.h"

static void act_mul(const mr_model *m, float *g, const float *u, int64_t n) {
    if (m->arch->act == MODEL_ACT_GELU) cpu_gelu_mul(g, u, n);
    else cpu_silu_mul(g, u, n);
}

int model_ffn_dense(model_run *r, int T, const mr_weight *gate, const mr_weight *up, const mr_weight *down,
                    const float *xn, float *out) {
    const int64_t F = up->m;
    const mr_weight *gu[2] = {gate, up};
    float *const gy[2] = {r->ff_a, r->ff_b};
    if (cpu_matmul_multi(&r->mm, 2, gu, xn, T, gy)) return -1;
    act_mul(r->m, r->ff_a, r->ff_b, (int64_t)T * F);
    return cpu_matmul(&r->mm, down, 0, r->ff_a, T, out);
}

/* Route one token: logits (E) -> sel (k ids), w (k weights). probs is scratch (E),
 * sc scratch (E). Exposed shape of llama.cpp's routing for every MoE arch. */
static void route_token(const model_hparams *hp, const float *bias, const float *logits, float *probs, float *sc,
                        int32_t *sel, float *w) {
    const int E = hp->n_expert, K = hp->n_expert_used;
    int idx[512];
    memcpy(probs, logits, sizeof(float) * E);
    if (hp->gating == MODEL_GATING_SOFTMAX) cpu_softmax(probs, E);
    else if (hp->gating == MODEL_GATING_SIGMOID)
        for (int e = 0; e < E; e++) probs[e] = 1.0f / (1.0f + expf(-probs[e]));
    for (int e = 0; e < E; e++) sc[e] = probs[e] + (bias ? bias[e] : 0.0f);
    if (hp->n_expert_groups > 1 && hp->n_group_used > 0 && hp->n_group_used < hp->n_expert_groups) {
        /* group-limited: score of a group = sum of its 2 best selection scores */
        const int G = hp->n_expert_groups, per = E / G;
        float gs[64];
        int gi[64];
        for (int gr = 0; gr < G && gr < 64; gr++) {
            float b1 = -INFINITY, b2 = -INFINITY;
            for (int e = gr * per; e < (gr + 1) * per; e++) {
                if (sc[e] > b1) {
                    b2 = b1;
                    b1 = sc[e];
                } else if (sc[e] > b2)
                    b2 = sc[e];
            }
            gs[gr] = b1 + (per > 1 ? b2 : 0.0f);
        }
        cpu_topk(gs, G, hp->n_group_used, gi);
        for (int gr = 0; gr < G; gr++) {
            bool keep = false;
            for (int j = 0; j < hp->n_group_used; j++) keep |= gi[j] == gr;
            if (!keep)
                for (int e = gr * per; e < (gr + 1) * per; e++) sc[e] = -INFINITY;
        }
    }
    cpu_topk(sc, E, K, idx);
    for (int j = 0; j < K; j++) {
        sel[j] = idx[j];
        w[j] = probs[idx[j]];
    }
    if (hp->gating == MODEL_GATING_SOFTMAX_WEIGHT) cpu_softmax(w, K);
    if (hp->expert_norm_w) {
        float s = 0.0f;
        for (int j = 0; j < K; j++) s += w[j];
        if (s < 6.103515625e-5f) s = 6.103515625e-5f;
        for (int j = 0; j < K; j++) w[j] /= s;
    }
    if (hp->expert_w_scale != 0.0f && hp->expert_w_scale != 1.0f)
        for (int j = 0; j < K; j++) w[j] *= hp->expert_w_scale;
}

int model_ffn_moe(model_run *r, int T, int il, const float *xn, float *out) {
    const mr_model *m = r->m;
    const model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[il];
    const int E = hp->n_expert, K = hp->n_expert_used, D = hp->n_embd;

    if (cpu_matmul(&r->mm, &ly->gate_inp, 0, xn, T, r->router)) return -1;
    const float *bias = ly->exp_probs_b.data ? (const float *)ly->exp_probs_b.data : NULL;
    float probs[512], sc[512];
    MR_ASSERT(E <= 512);
    memset(r->ex_cnt, 0, sizeof(int32_t) * E);
    for (int t = 0; t < T; t++) {
        int32_t *sel = r->sel + (size_t)t * K;
        route_token(hp, bias, r->router + (size_t)t * E, probs, sc, sel, r->selw + (size_t)t * K);
        for (int j = 0; j < K; j++) {
            const int e = sel[j];
            r->ex_tok[(size_t)e * T + r->ex_cnt[e]] = t;
            r->ex_slot[(size_t)e * T + r->ex_cnt[e]] = j;
            r->ex_cnt[e]++;
        }
    }

    /* routed experts: quantize once, gate/up of all experts as one job, downs as one (cpu/moe.c) */
    const cpu_moe_w mw = {.gate = &ly->gate_exps, .up = &ly->up_exps, .down = &ly->down_exps,
                          .gelu = m->arch->act == MODEL_ACT_GELU};
    if (cpu_moe(&r->mm, &mw, T, xn, K, r->sel, r->selw, out)) return -1;

    if (ly->up_shexp.data) {
        /* shared experts: dense FFN, optionally gated per token */
        float *sh = r->ex_y;
        if (model_ffn_dense(r, T, &ly->gate_shexp, &ly->up_shexp, &ly->down_shexp, xn, sh)) return -1;
        if (ly->gate_inp_shexp.data) {
            if (cpu_matmul(&r->mm, &ly->gate_inp_shexp, 0, xn, T, r->router)) return -1;
            for (int t = 0; t < T; t++) {
                const float gsh = 1.0f / (1.0f + expf(-r->router[t]));
                for (int d = 0; d < D; d++) sh[(size_t)t * D + d] *= gsh;
            }
        }
        cpu_add(out, sh, (int64_t)T * D);
    }
    return 0;
}
