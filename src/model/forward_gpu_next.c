/*
 * forward_gpu_next.c — the Qwen3-Next parts of the GPU executor (forward_gpu.c):
 * the gated delta net layer on a device, the shared experts' sigmoid gate, and
 * the recurrent state's copies between the devices and kv_rec's host slots.
 */
#include <math.h>
#include <string.h>

#include "model/forward_gpu_impl.h"

/* Copy the recurrent state of the device layers for the sequences in the bit mask seqs between
 * the devices and rec's host slots (to_host: download; else upload), one contiguous range per
 * run of consecutive sequences. */
static int rec_copy(model_gpu *g, uint64_t seqs, bool to_host) {
    const kv_rec *rc = g->rec;
    for (int il = 0; il < g->m->hp.n_layer; il++) {
        const gpu_layer *L = &g->L[il];
        if (!L->rec_conv) continue;
        void *c = g->d[L->dev].c;
        for (int s0 = 0; s0 < rc->n_seq;) {
            if (!((seqs >> s0) & 1)) {
                s0++;
                continue;
            }
            int s1 = s0 + 1;
            while (s1 < rc->n_seq && ((seqs >> s1) & 1)) s1++;
            const size_t nc = rc->conv_n * (size_t)(s1 - s0), ns = rc->ssm_n * (size_t)(s1 - s0);
            float *hc = kv_rec_conv(rc, il, s0), *hs = kv_rec_ssm(rc, il, s0);
            float *dc = L->rec_conv + rc->conv_n * (size_t)s0, *ds = L->rec_ssm + rc->ssm_n * (size_t)s0;
            if (to_host ? g->api->download(c, hc, dc, sizeof(float) * nc) ||
                              g->api->download(c, hs, ds, sizeof(float) * ns)
                        : g->api->upload(c, dc, hc, sizeof(float) * nc) || g->api->upload(c, ds, hs, sizeof(float) * ns))
                return -1;
            s0 = s1;
        }
    }
    if (to_host)
        for (int d = 0; d < g->n_dev; d++)
            if (g->d[d].c && g->api->sync(g->d[d].c)) return -1;
    return 0;
}

/* kv_rec.dev_pull: the sequences' device state into rec's host slots. */
int fg_rec_pull(void *ud, uint64_t seqs) { return rec_copy(ud, seqs, true); }

/* Before a forward pass over the T tokens of sequences seq: the host slots onto the devices
 * where a sequence operation changed them; the device state of the batch's sequences is then
 * the newer one. */
int fg_rec_push(model_gpu *g, const int32_t *seq, int T) {
    kv_rec *rc = g->rec;
    if (!rc) return 0;
    if (rc->host_newer) {
        if (rec_copy(g, rc->host_newer, false)) return -1;
        rc->host_newer = 0;
    }
    for (int t = 0; t < T; t++) rc->dev_newer |= (uint64_t)1 << seq[t];
    return 0;
}

/* Qwen3-Next's gated delta net (qwen3next.c's model_attn_delta) on the device: projections,
 * gates, causal conv + SiLU over the sequence's conv state, L2 norms of q and k, the delta rule
 * over its state, gated RMSNorm, output projection into D->tmp. Each token's state slot is its
 * sequence's (D->seq), read on the device, so a captured decode step serves any sequence. */
int fg_delta_layer(model_run *r, const model_ubatch *ub, int il, gpu_dev *D, const void *xq) {
    model_gpu *g = r->gpu;
    const gpu_api *A = g->api;
    const model_hparams *hp = &r->m->hp;
    const gpu_layer *L = &g->L[il];
    const kv_rec *rc = g->rec;
    const int T = ub->n, Hk = hp->ssm_n_group, Hv = hp->ssm_dt_rank, S = hp->ssm_d_state, rr = Hv / Hk;
    const int dI = hp->ssm_d_inner, C = 2 * Hk * S + dI;
    const float eps = hp->rms_eps;
    /* projections: qkv (T, C), z (T, dI), ba (T, 2 Hv); one token: one launch where they pair */
    if (T == 1 && xq && g->fuse && A->matvec_n && mrc_matvec_n_pair(&L->wqkv, &L->wqkv_gate)) {
        const bool n3 = mrc_matvec_n_pair(&L->wqkv, &L->ssm_ba);
        const mrc_weight *W[3] = {&L->wqkv, &L->wqkv_gate, &L->ssm_ba};
        float *const y[3] = {D->d_qkv, D->d_z, D->d_ba};
        if (A->matvec_n(D->c, n3 ? 3 : 2, W, xq, y) || (!n3 && fg_gmm(g, D, &L->ssm_ba, D->xn, xq, T, D->d_ba)))
            return -1;
    } else {
        const mrc_weight *W[3] = {&L->wqkv, &L->wqkv_gate, &L->ssm_ba};
        float *const y[3] = {D->d_qkv, D->d_z, D->d_ba};
        if (fg_gmm_n(g, D, 3, W, D->xn, xq, T, y)) return -1;
    }
    const float scale = 1.0f / sqrtf((float)S);
    if (A->ssm_conv(D->c, D->d_qkv, C, L->ssm_conv1d, hp->ssm_d_conv, C, L->rec_conv, (int64_t)rc->conv_n, D->seq, T,
                    D->d_xc, C))
        return -1;
    if (g->fuse && A->delta_rule_g) { /* the gates, the q / k norms and the rule in one launch */
        if (A->delta_rule_g(D->c, D->d_xc, C, D->d_ba, L->ssm_dt_b, L->ssm_a, eps, L->rec_ssm, (int64_t)rc->ssm_n,
                            D->seq, T, Hk, Hv, S, scale, D->d_o, dI))
            return -1;
    } else if (A->ssm_gates(D->c, D->d_ba, L->ssm_dt_b, L->ssm_a, T, Hk, rr, D->d_beta, D->d_g) ||
               A->l2norm(D->c, D->d_xc, T, 2 * Hk, S, C, eps) ||
               A->delta_rule(D->c, D->d_xc, C, D->d_g, D->d_beta, L->rec_ssm, (int64_t)rc->ssm_n, D->seq, T, Hk, Hv,
                             S, scale, D->d_o, dI))
        return -1;
    /* gated RMSNorm: o = rmsnorm(o_h) * w, then o * silu(z) (as z = silu(z) * o); for one token
     * quantized for ssm_out, in one launch where the backend fuses them */
    if (T == 1 && g->fuse && A->norm_gate_q8 && !is_float(&L->ssm_out))
        return A->norm_gate_q8(D->c, D->d_o, D->d_z, L->ssm_norm, D->xq2, 1, Hv, S, eps) ||
                       fg_gmm(g, D, &L->ssm_out, D->d_z, D->xq2, T, D->tmp)
                   ? -1
                   : 0;
    if (A->rmsnorm(D->c, D->d_o, D->d_o, L->ssm_norm, (int64_t)T * Hv, S, eps)) return -1;
    if (T == 1 && g->fuse && !is_float(&L->ssm_out))
        return A->act_q8(D->c, 0, D->d_z, D->d_o, D->xq2, 1, dI) || fg_gmm(g, D, &L->ssm_out, D->d_z, D->xq2, T, D->tmp)
                   ? -1
                   : 0;
    return A->silu_mul(D->c, D->d_z, D->d_o, (int64_t)T * dI) || fg_gmm(g, D, &L->ssm_out, D->d_z, NULL, T, D->tmp) ? -1
                                                                                                                : 0;
}

/* The shared experts' output y (T rows) times sigmoid(gate_inp_shexp . xn) per token (Qwen3-Next,
 * Qwen2-MoE); nothing without that gate. */
int fg_shared_gate(model_gpu *g, gpu_dev *D, const gpu_layer *L, const void *xq, int T, float *y) {
    if (!L->gate_inp_sh.data) return 0;
    return fg_gmm(g, D, &L->gate_inp_sh, D->xn, xq, T, D->shg) ||
                   g->api->sigmoid_mul(D->c, y, D->shg, T, g->m->hp.n_embd, 1, 0)
               ? -1
               : 0;
}
