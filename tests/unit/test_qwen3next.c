/*
 * test_qwen3next.c — Qwen3-Next (gated delta net + gated attention) on
 * ../shared/fixtures/models/tiny-qwen3next.gguf:
 *  - conformance with llama.cpp's outputs in fixtures/golden-qwen3next (bars
 *    of the fixtures README: top1 >= 0.95, med <= 0.035, p80 <= 0.05,
 *    kl <= 0.005; greedy: the first 4 tokens decided by a margin >= 0.5),
 *    every case with flash attention off and on, and ids64 again with a q8_0
 *    KV cache against the f16 reference (1.5x the error bars);
 *  - the recurrent state: micro-batch sizes do not change logits, two
 *    sequences in one batch give each sequence's logits alone, whole-sequence
 *    kv_seq_rm resets the state, kv_seq_cp copies it, partial kv_seq_rm /
 *    kv_seq_cp and out-of-order positions are errors, kv_clear resets;
 *  - the chunked delta rule of prompts agrees with the recurrent one on the
 *    delta-net block (several chunk sizes, two interleaved sequences);
 *  - checkpoints (mr_kv_seq_checkpoint): rewinding a sequence to one and
 *    generating again gives the same logits; other partial removals fail;
 *  - the scalar reference path agrees with the fast path;
 *  - the legacy fused ssm_in layout (per key head [q | k | v | z]) gives the
 *    same logits as attn_qkv + attn_gate (a copy of the fixture with those
 *    rows regrouped into ssm_in, written with the GGUF writer);
 *  - the state and checkpoint tests again with every layer on a device (the
 *    host emulation of the CUDA backend, MOERUN_CUDA_EMU).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "check.h"
#include "engine_util.h"
#include "golden_case.h"
#include "engine/golden.h"
#include "gguf/gguf.h"
#include "model/delta_net.h"
#include "model/forward.h"
#include "model/kv.h"
#include "moerun.h"

/* The qwen3next bars of the fixtures README. */
static const family k_q3n = {"tiny-qwen3next", 0.95, 0.035, 0.05, 0.005, true, false};

static void run_golden(mr_model *m, const char *path, const char *name, bool kvq8, bool fa) {
    golden_case_check(m, &k_q3n, path, name, kvq8, fa, false);
}


static void test_state(mr_model *m) {
    const int V = mr_n_vocab(m), N = 40;
    mr_token toks[64], toks2[64];
    for (int i = 0; i < 64; i++) {
        toks[i] = (mr_token)((i * 7919 + 13) % (V - 300) + 100);
        toks2[i] = (mr_token)((i * 104729 + 5) % (V - 300) + 100);
    }
    float *ref = malloc(sizeof(float) * V), *got = malloc(sizeof(float) * V), *ref2 = malloc(sizeof(float) * V);

    /* micro-batch sizes: the state carries across micro-batches */
    mr_ctx *c = ctx(m, 256, 512, 512, 1, 0);
    CHECK(c && run_prompt(c, toks, N, 0, 0, ref, V) == 0, "decode: %s", mr_last_error());
    mr_ctx_free(c);
    const int ubs[] = {1, 7};
    for (int k = 0; k < 2; k++) {
        c = ctx(m, 256, 512, ubs[k], 1, 0);
        CHECK(c && run_prompt(c, toks, N, 0, 0, got, V) == 0, "decode ub %d", ubs[k]);
        CHECK(rel_diff(ref, got, V) < 1e-4, "ubatch %d vs 512: rel diff %g", ubs[k], rel_diff(ref, got, V));
        mr_ctx_free(c);
    }
    /* prompt in two calls = one call */
    c = ctx(m, 256, 512, 512, 1, 0);
    CHECK(c && run_prompt(c, toks, 25, 0, 0, NULL, V) == 0 && run_prompt(c, toks + 25, N - 25, 0, 25, got, V) == 0,
          "two calls: %s", mr_last_error());
    CHECK(rel_diff(ref, got, V) < 1e-4, "two calls vs one: %g", rel_diff(ref, got, V));
    mr_ctx_free(c);

    /* two sequences interleaved in one batch = each alone */
    c = ctx(m, 256, 512, 512, 1, 0);
    CHECK(c && run_prompt(c, toks2, N - 9, 0, 0, ref2, V) == 0, "decode seq alone");
    mr_ctx_free(c);
    c = ctx(m, 256, 512, 512, 3, 0);
    if (c) {
        mr_token bt[128];
        int32_t bp[128], bs[128];
        int8_t bl[128];
        int n = 0, last0 = -1, last1 = -1;
        for (int i = 0; i < N; i++) {
            bt[n] = toks[i], bp[n] = i, bs[n] = 0, bl[n] = i == N - 1;
            if (i == N - 1) last0 = n;
            n++;
            if (i < N - 9) {
                bt[n] = toks2[i], bp[n] = i, bs[n] = 2, bl[n] = i == N - 10;
                if (i == N - 10) last1 = n;
                n++;
            }
        }
        mr_batch b = {.n_tokens = n, .token = bt, .pos = bp, .seq = bs, .logits = bl};
        CHECK(mr_decode(c, &b) == 0, "two-seq batch: %s", mr_last_error());
        const float *l0 = mr_get_logits(c, last0), *l1 = mr_get_logits(c, last1);
        CHECK(l0 && l1, "logits rows");
        if (l0 && l1) {
            CHECK(rel_diff(ref, l0, V) < 1e-4, "seq 0 in a shared batch: %g", rel_diff(ref, l0, V));
            CHECK(rel_diff(ref2, l1, V) < 1e-4, "seq 2 in a shared batch: %g", rel_diff(ref2, l1, V));
        }
        /* decode one more token on both sequences in one batch = each alone */
        {
            mr_token t2[2] = {toks[N], toks2[N - 9]};
            int32_t p2[2] = {N, N - 9}, s2[2] = {0, 2};
            int8_t l2[2] = {1, 1};
            mr_batch b2 = {.n_tokens = 2, .token = t2, .pos = p2, .seq = s2, .logits = l2};
            CHECK(mr_decode(c, &b2) == 0, "two-seq decode step: %s", mr_last_error());
            mr_ctx *c1 = ctx(m, 256, 512, 512, 1, 0);
            float *a1 = malloc(sizeof(float) * V);
            /* alone: the same prompt, then the same single-token (recurrent) step; a prompt of
             * N - 8 tokens would take the chunked form for the last token too, a different
             * algorithm whose rounding this MoE net can amplify past the bound */
            CHECK(c1 && run_prompt(c1, toks2, N - 9, 0, 0, NULL, V) == 0 &&
                      run_prompt(c1, toks2 + N - 9, 1, 0, N - 9, a1, V) == 0,
                  "seq 2 alone + 1");
            CHECK(rel_diff(a1, mr_get_logits(c, 1), V) < 1e-4, "decode step, seq 2 with seq 0 in the batch: %g",
                  rel_diff(a1, mr_get_logits(c, 1), V));
            mr_kv_clear(c1);
            CHECK(run_prompt(c1, toks, N, 0, 0, NULL, V) == 0 && run_prompt(c1, toks + N, 1, 0, N, a1, V) == 0,
                  "seq 0 alone + 1");
            CHECK(rel_diff(a1, mr_get_logits(c, 0), V) < 1e-4, "decode step, seq 0 with seq 2 in the batch: %g",
                  rel_diff(a1, mr_get_logits(c, 0), V));
            mr_ctx_free(c1);
            free(a1);
        }
        /* partial removal cannot rewind the recurrent state: an error, nothing changed */
        const int used = mr_kv_used_cells(c);
        CHECK(mr_kv_seq_rm(c, 0, 20, -1) == -1 && strstr(mr_last_error(), "recurrent"), "partial seq_rm: %s",
              mr_last_error());
        CHECK(mr_kv_used_cells(c) == used && mr_kv_seq_pos_max(c, 0) == N, "failed seq_rm changed the cache");
        CHECK(mr_kv_seq_rm(c, 0, 1000, -1) == 0, "seq_rm of a range past the end is a no-op: %s", mr_last_error());
        /* out-of-order positions */
        CHECK(run_prompt(c, toks, 1, 0, 5, NULL, V) == -1 && strstr(mr_last_error(), "position"),
              "rewinding positions must fail: %s", mr_last_error());
        CHECK(mr_kv_used_cells(c) == used, "failed decode took cells");
        /* partial copy is an error */
        CHECK(mr_kv_seq_cp(c, 0, 1, 0, 10) == -1, "partial seq_cp must fail");
        /* whole-sequence removal resets: seq 2 re-decoded from scratch = alone */
        CHECK(mr_kv_seq_rm(c, 2, -1, -1) == 0 && mr_kv_seq_pos_max(c, 2) == -1, "seq_rm all of seq 2: %s",
              mr_last_error());
        CHECK(run_prompt(c, toks2, N - 9, 2, 0, got, V) == 0, "re-decode seq 2: %s", mr_last_error());
        CHECK(rel_diff(ref2, got, V) < 1e-4, "seq 2 after seq_rm + re-decode: %g", rel_diff(ref2, got, V));
        /* seq_cp: seq 1 := seq 0 (state included), then the same token on both */
        CHECK(mr_kv_seq_cp(c, 0, 1, -1, -1) == 0, "seq_cp: %s", mr_last_error());
        mr_token nt = toks[N + 1];
        CHECK(run_prompt(c, &nt, 1, 1, N + 1, got, V) == 0, "decode on copied seq: %s", mr_last_error());
        CHECK(run_prompt(c, &nt, 1, 0, N + 1, ref2, V) == 0, "decode on seq 0: %s", mr_last_error());
        CHECK(rel_diff(ref2, got, V) < 1e-4, "seq_cp: %g", rel_diff(ref2, got, V));
        /* clear: all state gone, a fresh prompt = a fresh context */
        mr_kv_clear(c);
        CHECK(mr_kv_used_cells(c) == 0, "clear");
        CHECK(run_prompt(c, toks, N, 0, 0, got, V) == 0 && rel_diff(ref, got, V) < 1e-4, "after clear: %g",
              rel_diff(ref, got, V));
        mr_ctx_free(c);
    }

    /* the scalar reference path agrees with the fast path */
    setenv("MOERUN_REF", "1", 1);
    c = ctx(m, 256, 512, 512, 1, 0);
    unsetenv("MOERUN_REF");
    CHECK(c && run_prompt(c, toks, N, 0, 0, got, V) == 0, "ref decode");
    CHECK(rel_diff(ref, got, V) < 5e-2, "reference vs fast: rel diff %g", rel_diff(ref, got, V));
    printf("tiny-qwen3next: reference vs fast path rel diff %.2e\n", rel_diff(ref, got, V));
    mr_ctx_free(c);
    free(ref);
    free(ref2);
    free(got);
}

/* The delta-net block of layer il on random normed inputs: a model_run with
 * MOERUN_DELTA_CHUNK=chunk over two ubatches (lens[0], lens[1] tokens) whose
 * tokens of two sequences interleave (every third token is seq 1); outputs
 * (sum of lens, D) to out, final states of both sequences to st (2, ssm_n). */
static int run_block(mr_model *m, const char *chunk, int il, const float *xn, const int *lens, float *out, float *st) {
    setenv("MOERUN_DELTA_CHUNK", chunk, 1);
    kv_cache *kv = kv_new(m, 512, MR_KV_F16, MR_KV_F16, 2);
    model_run *r = kv ? model_run_new(m, kv, 256, 2, false, false) : NULL;
    unsetenv("MOERUN_DELTA_CHUNK");
    int rc = r ? 0 : -1;
    const int D = m->hp.n_embd;
    int32_t seq[256], pos[256], cell[256], next[2] = {0, 0};
    for (int u = 0, t0 = 0; u < 2 && !rc; t0 += lens[u++]) {
        for (int t = 0; t < lens[u]; t++) {
            seq[t] = (t0 + t) % 3 == 1;
            pos[t] = next[seq[t]]++;
            cell[t] = t0 + t;
        }
        model_ubatch ub = {.n = lens[u], .pos = pos, .seq = seq, .cell = cell};
        rc = model_attn_delta(r, &ub, il, xn + (size_t)t0 * D, out + (size_t)t0 * D);
    }
    if (!rc)
        for (int q = 0; q < 2; q++)
            memcpy(st + q * kv->rec->ssm_n, kv_rec_ssm(kv->rec, il, q), sizeof(float) * kv->rec->ssm_n);
    model_run_free(r);
    kv_free(kv);
    return rc;
}

/* The chunked delta rule (prompts) against the recurrent one on the whole
 * delta-net block (projections, conv, gates, norms): ubatches of 150 + 90
 * tokens of two interleaved sequences (runs of 100 + 60 and 50 + 30 tokens:
 * chunk 64 takes partial chunks, chunk 16 many; 30 >= 16 still chunked),
 * and 9 + 5 tokens (below the threshold: recurrent either way). The final
 * states must agree to 1e-5 of their largest magnitude, and so must 98% of
 * the tokens' outputs: ssm_out quantizes its input to Q8_K, so a float
 * rounding difference at a rounding boundary moves the odd token's output by
 * a quantization step (1e-2 at most). (Logits are compared in test_state and
 * by the golden cases: on the whole random-weight MoE net float rounding
 * also makes the odd expert-selection flip — the recurrent form with the
 * scalar step instead of the AVX2 one flips the same way — so a tight
 * per-position bar on logits would test the net's chaos, not the kernel.) */
static void test_chunked(mr_model *m) {
    const int D = m->hp.n_embd, il = 0, T = 256;
    CHECK(m->layers[il].attn_kind == MODEL_ATTN_DELTA, "layer %d is a delta-net layer", il);
    const size_t sn = (size_t)m->hp.ssm_dt_rank * m->hp.ssm_d_state * m->hp.ssm_d_state;
    float *xn = malloc(sizeof(float) * T * D), *o_ref = malloc(sizeof(float) * T * D);
    float *o = malloc(sizeof(float) * T * D);
    float *s_ref = malloc(sizeof(float) * 2 * sn), *st = malloc(sizeof(float) * 2 * sn);
    uint64_t x = 12345;
    for (int i = 0; i < T * D; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        xn[i] = (float)((x >> 40) * (2.0 / 16777216.0)) - 1.0f;
    }
    const int cases[2][2] = {{150, 90}, {9, 5}};
    const char *chunks[] = {"64", "16", "8"};
    for (int c = 0; c < 2; c++) {
        const int n = cases[c][0] + cases[c][1];
        CHECK(run_block(m, "0", il, xn, cases[c], o_ref, s_ref) == 0, "recurrent block: %s", mr_last_error());
        for (int k = 0; k < 3; k++) {
            CHECK(run_block(m, chunks[k], il, xn, cases[c], o, st) == 0, "chunked block: %s", mr_last_error());
            double eo = 0, mo = 1e-30, es = 0, ms = 1e-30;
            for (int i = 0; i < n * D; i++) mo = fmax(mo, fabs((double)o_ref[i]));
            int tight = 0;
            for (int t = 0; t < n; t++) {
                double e = 0;
                for (int i = 0; i < D; i++) e = fmax(e, fabs((double)o[t * D + i] - o_ref[t * D + i]));
                eo = fmax(eo, e);
                tight += e < 1e-5 * mo;
            }
            for (size_t i = 0; i < 2 * sn; i++) {
                es = fmax(es, fabs((double)st[i] - s_ref[i]));
                ms = fmax(ms, fabs((double)s_ref[i]));
            }
            printf("tiny-qwen3next: delta block, %d + %d tokens of 2 sequences, chunk %s vs recurrent: state %.2e, "
                   "outputs %d/%d within 1e-5 (max %.2e)\n",
                   cases[c][0], cases[c][1], chunks[k], es / ms, tight, n, eo / mo);
            CHECK(es / ms < 1e-5, "chunk %s, %d tokens: state err %g", chunks[k], n, es / ms);
            CHECK(tight >= n - n / 50 && eo / mo < 1e-2, "chunk %s, %d tokens: %d/%d outputs within 1e-5, max err %g",
                  chunks[k], n, tight, n, eo / mo);
        }
    }
    free(xn), free(o_ref), free(o), free(s_ref), free(st);
    setenv("MOERUN_DELTA_CHUNK", "12", 1);
    mr_ctx_params cp = mr_ctx_default_params();
    cp.n_ctx = 64;
    mr_ctx *cx = mr_ctx_new(m, &cp);
    unsetenv("MOERUN_DELTA_CHUNK");
    CHECK(cx == NULL && strstr(mr_last_error(), "MOERUN_DELTA_CHUNK"), "chunk 12 must be refused: %s", mr_last_error());
    mr_ctx_free(cx);
}

/* Generation of the fixed tokens gen[0..ng) one at a time on seq
 * from pos0; logits of each step to out (ng, V). */
static int gen_steps(mr_ctx *c, const mr_token *gen, int ng, int seq, int pos0, float *out, int V) {
    for (int i = 0; i < ng; i++)
        if (run_prompt(c, gen + i, 1, seq, pos0 + i, out + (size_t)i * V, V)) return -1;
    return 0;
}

/* Checkpoints: decode a prompt, checkpoint, generate 4, remove back to the
 * checkpoint, generate again: the same logits; the sweep pattern (rewind
 * twice); rewinding one sequence leaves another alone; removals that cannot
 * be rewound are errors that change nothing; at most KV_REC_CKPT (2) kept. */
static void test_checkpoint(mr_model *m) {
    const int V = mr_n_vocab(m), N = 40, NG = 4;
    mr_token toks[64], gen[8], gen2[8];
    for (int i = 0; i < 64; i++) toks[i] = (mr_token)((i * 7919 + 13) % (V - 300) + 100);
    for (int i = 0; i < 8; i++) gen[i] = (mr_token)((i * 31337 + 7) % (V - 300) + 100), gen2[i] = gen[i] + 1;
    float *a = malloc(sizeof(float) * V * NG), *b = malloc(sizeof(float) * V * NG), *x = malloc(sizeof(float) * V);
    float *o1 = malloc(sizeof(float) * V), *o2 = malloc(sizeof(float) * V);
    mr_ctx *c = ctx(m, 256, 512, 512, 2, 0);
    if (!c) return;
    CHECK(mr_kv_seq_checkpoint(c, 0) == 0, "checkpoint of an empty sequence: %s", mr_last_error());
    CHECK(mr_kv_seq_checkpoint(c, 2) == -1, "checkpoint of seq 2 of 2 must fail");
    CHECK(run_prompt(c, toks, N, 0, 0, NULL, V) == 0 && run_prompt(c, toks, 30, 1, 0, o1, V) == 0, "prompts: %s",
          mr_last_error());
    CHECK(mr_kv_seq_checkpoint(c, 0) == 0 && mr_kv_seq_checkpoint(c, 1) == 0, "checkpoint: %s", mr_last_error());
    CHECK(gen_steps(c, gen, NG, 0, N, a, V) == 0, "generate: %s", mr_last_error());
    /* not at a checkpoint: an error, nothing changed */
    const int used = mr_kv_used_cells(c);
    CHECK(mr_kv_seq_rm(c, 0, N + 2, -1) == -1 && strstr(mr_last_error(), "checkpoint"), "rm to N+2: %s",
          mr_last_error());
    CHECK(mr_kv_seq_rm(c, 0, 10, 20) == -1 && strstr(mr_last_error(), "recurrent"), "rm of a middle range: %s",
          mr_last_error());
    CHECK(mr_kv_seq_rm(c, 0, N, N + 2) == -1, "rm of [N, N+2) keeps cells past it: must fail");
    CHECK(mr_kv_used_cells(c) == used && mr_kv_seq_pos_max(c, 0) == N + NG - 1, "failed rm changed the cache");
    /* rewind to the checkpoint (twice, as sweep does) and generate again: same logits */
    for (int rep = 0; rep < 2; rep++) {
        CHECK(mr_kv_seq_rm(c, 0, N, -1) == 0, "rm back to the checkpoint: %s", mr_last_error());
        CHECK(mr_kv_seq_pos_max(c, 0) == N - 1 && mr_kv_used_cells(c) == N + 30, "cells after the rewind");
        CHECK(gen_steps(c, gen, NG, 0, N, b, V) == 0, "generate again: %s", mr_last_error());
        double worst = 0;
        for (int i = 0; i < NG; i++) worst = fmax(worst, rel_diff(a + (size_t)i * V, b + (size_t)i * V, V));
        CHECK(worst == 0.0, "rewind %d: logits differ from the first generation: %g", rep, worst);
    }
    /* a different continuation, then back again: still the first one's logits */
    CHECK(mr_kv_seq_rm(c, 0, N, N + NG) == 0, "rm [N, N+NG) (the whole tail): %s", mr_last_error());
    CHECK(gen_steps(c, gen2, NG, 0, N, b, V) == 0, "generate other tokens");
    CHECK(mr_kv_seq_rm(c, 0, N, -1) == 0 && gen_steps(c, gen, 1, 0, N, b, V) == 0 && rel_diff(a, b, V) == 0.0,
          "rewind after another continuation: %s", mr_last_error());
    /* seq 1 was not touched: its next token = the same token on a fresh context */
    CHECK(run_prompt(c, gen, 1, 1, 30, o1, V) == 0, "seq 1 next");
    {
        mr_ctx *c1 = ctx(m, 256, 512, 512, 1, 0);
        CHECK(c1 && run_prompt(c1, toks, 30, 0, 0, NULL, V) == 0 && run_prompt(c1, gen, 1, 0, 30, o2, V) == 0,
              "seq 1 alone");
        CHECK(rel_diff(o1, o2, V) < 1e-4, "seq 1 after rewinds of seq 0: %g", rel_diff(o1, o2, V));
        mr_ctx_free(c1);
    }
    /* seq 1: rewind to its checkpoint at 30 and take the same step again */
    CHECK(mr_kv_seq_rm(c, 1, 30, -1) == 0 && run_prompt(c, gen, 1, 1, 30, x, V) == 0 && rel_diff(o1, x, V) == 0.0,
          "seq 1 rewind: %s", mr_last_error());
    /* a second checkpoint at N+1; rewinding to N drops it; 3 checkpoints keep the last 2 */
    CHECK(mr_kv_seq_rm(c, 0, N, -1) == 0 && gen_steps(c, gen, 1, 0, N, b, V) == 0 && mr_kv_seq_checkpoint(c, 0) == 0,
          "checkpoint at N+1: %s", mr_last_error());
    CHECK(gen_steps(c, gen + 1, 1, 0, N + 1, b, V) == 0 && rel_diff(a + V, b, V) == 0.0, "step past N+1");
    CHECK(mr_kv_seq_rm(c, 0, N + 1, -1) == 0, "rewind to N+1: %s", mr_last_error());
    CHECK(mr_kv_seq_rm(c, 0, N, -1) == 0, "rewind to N: %s", mr_last_error());
    CHECK(gen_steps(c, gen, 2, 0, N, b, V) == 0 && mr_kv_seq_rm(c, 0, N + 1, -1) == -1,
          "the checkpoint at N+1 must be gone after rewinding to N");
    CHECK(mr_kv_seq_checkpoint(c, 0) == 0 && gen_steps(c, gen + 2, 1, 0, N + 2, b, V) == 0 &&
              mr_kv_seq_checkpoint(c, 0) == 0,
          "checkpoints at N+2, N+3: %s", mr_last_error());
    CHECK(mr_kv_seq_rm(c, 0, N + 3, -1) == 0 && mr_kv_seq_rm(c, 0, N + 2, -1) == 0, "rewind N+3, N+2: %s",
          mr_last_error());
    CHECK(mr_kv_seq_rm(c, 0, N, -1) == -1, "the oldest checkpoint (N) must have been replaced");
    /* whole removal drops the checkpoints (the one at N+2 must not be restored) */
    CHECK(mr_kv_seq_rm(c, 0, -1, -1) == 0 && run_prompt(c, toks, N + 3, 0, 0, NULL, V) == 0 &&
              mr_kv_seq_rm(c, 0, N + 2, -1) == -1,
          "no checkpoint after a whole removal");
    mr_ctx_free(c);
    free(a), free(b), free(x), free(o1), free(o2);
}

/* Write a copy of the GGUF at src to dst with every delta layer's attn_qkv /
 * attn_gate regrouped into the legacy ssm_in (rows are whole quant blocks, so
 * regrouping rows is exact). 0 / -1. */
static int write_legacy(const char *src, const char *dst) {
    gguf_ctx *g = gguf_open(src);
    if (!g) return -1;
    const int S = (int)gguf_i64_or(g, "qwen3next.ssm.state_size", 0), Hk = (int)gguf_i64_or(g, "qwen3next.ssm.group_count", 0);
    const int Hv = (int)gguf_i64_or(g, "qwen3next.ssm.time_step_rank", 0), rr = Hv / Hk;
    gguf_writer *w = gguf_writer_new(dst);
    int rc = w ? 0 : -1;
    for (uint64_t i = 0; i < g->n_kv && !rc; i++) rc = gguf_writer_kv_copy(w, &g->kv[i]);
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (strstr(t->name, ".attn_gate.")) continue;
        char nm[256];
        snprintf(nm, sizeof nm, "%s", t->name);
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        char *p = strstr(nm, ".attn_qkv.");
        if (p) {
            int il = atoi(nm + 4);
            snprintf(nm, sizeof nm, "blk.%d.ssm_in.weight", il);
            ne[1] += (int64_t)Hv * S;
        }
        rc = gguf_writer_add_tensor(w, nm, t->type, t->n_dims, ne);
    }
    if (!rc) rc = gguf_writer_begin_data(w);
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (strstr(t->name, ".attn_gate.")) continue;
        if (!strstr(t->name, ".attn_qkv.")) {
            rc = gguf_writer_write_data(w, t->data, t->nbytes);
            continue;
        }
        char gn[256];
        snprintf(gn, sizeof gn, "blk.%d.attn_gate.weight", atoi(t->name + 4));
        const gguf_tensor *gt = gguf_tensor_find(g, gn);
        const size_t rb = t->nbytes / (size_t)t->ne[1];
        const uint8_t *qkv = t->data, *z = gt ? gt->data : NULL;
        if (!z || gt->nbytes / (size_t)gt->ne[1] != rb) rc = -1;
        for (int kh = 0; kh < Hk && !rc; kh++) {
            /* [q (S rows) | k (S) | v (r*S) | z (r*S)] of key head kh */
            rc = gguf_writer_write_data(w, qkv + (size_t)kh * S * rb, (size_t)S * rb) ||
                 gguf_writer_write_data(w, qkv + ((size_t)Hk * S + (size_t)kh * S) * rb, (size_t)S * rb) ||
                 gguf_writer_write_data(w, qkv + ((size_t)2 * Hk * S + (size_t)kh * rr * S) * rb, (size_t)rr * S * rb) ||
                 gguf_writer_write_data(w, z + (size_t)kh * rr * S * rb, (size_t)rr * S * rb);
        }
    }
    if (w) {
        if (rc) gguf_writer_abort(w);
        else rc = gguf_writer_close(w);
    }
    gguf_close(g);
    return rc ? -1 : 0;
}

static void test_legacy(mr_model *m, const char *path) {
    char tmp[256];
    const char *td = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/moerun-q3n-legacy-%d.gguf", td ? td : "/tmp", (int)getpid());
    CHECK(write_legacy(path, tmp) == 0, "write legacy copy: %s", mr_last_error());
    mr_model_params mp = mr_model_default_params();
    mp.path = tmp;
    mr_model *ml = mr_model_load(&mp);
    CHECK(ml != NULL, "load legacy ssm_in copy: %s", mr_last_error());
    if (ml) {
        const int V = mr_n_vocab(m), N = 24;
        mr_token toks[24];
        for (int i = 0; i < N; i++) toks[i] = (mr_token)((i * 7919 + 13) % (V - 300) + 100);
        float *a = malloc(sizeof(float) * V), *b = malloc(sizeof(float) * V);
        mr_ctx *c1 = ctx(m, 64, 64, 64, 1, 0), *c2 = ctx(ml, 64, 64, 64, 1, 0);
        CHECK(c1 && c2 && run_prompt(c1, toks, N, 0, 0, a, V) == 0 && run_prompt(c2, toks, N, 0, 0, b, V) == 0,
              "legacy decode: %s", mr_last_error());
        CHECK(rel_diff(a, b, V) < 1e-6, "legacy ssm_in vs attn_qkv/attn_gate: rel diff %g", rel_diff(a, b, V));
        mr_ctx_free(c1);
        mr_ctx_free(c2);
        free(a);
        free(b);
        mr_model_free(ml);
    }
    /* -ngl 99 on a device backend: the legacy layout has no device path, so the context warns
     * and runs every layer on the CPU (same logits), never a wrong answer */
    setenv("MOERUN_CUDA_EMU", "1", 1);
    mp.n_gpu_layers = 99;
    ml = mr_model_load(&mp);
    CHECK(ml != NULL, "load legacy copy with -ngl 99: %s", mr_last_error());
    if (ml) {
        mr_ctx *c = ctx(ml, 64, 64, 64, 1, 0);
        mr_ctx_offload_info oi = {0};
        if (c) mr_ctx_get_offload(c, &oi);
        CHECK(c && oi.n_layers_dev == 0, "legacy ssm_in with -ngl 99: %d layers on a device (want 0: CPU)",
              oi.n_layers_dev);
        mr_ctx_free(c);
        mr_model_free(ml);
    }
    unsetenv("MOERUN_CUDA_EMU");
    unlink(tmp);
}

int main(int argc, char **argv) {
    SKIP_UNLESS_SHARED(mdir, "fixtures/models/tiny-qwen3next.gguf");
    const char *gdir = check_shared("fixtures/golden-qwen3next");
    mr_model_params mp = mr_model_default_params();
    mp.path = mdir;
    mr_model *m = mr_model_load(&mp);
    CHECK(m != NULL, "load %s: %s", mdir, mr_last_error());
    if (!m) return check_done();
    mr_model_info mi;
    mr_model_get_info(m, &mi);
    CHECK(!strcmp(mi.arch, "qwen3next") && mi.n_layer == 4 && mi.n_expert == 16, "info");
    const char *only = argc > 1 ? argv[1] : NULL;
    if (!only || !strcmp(only, "state")) test_state(m);
    if (!only || !strcmp(only, "chunked")) test_chunked(m);
    if (!only || !strcmp(only, "checkpoint")) test_checkpoint(m);
    if (!only || !strcmp(only, "legacy")) test_legacy(m, mdir);
    /* the same state tests with every layer on a device: the host emulation of the CUDA backend
     * (its delta-net ops, the state on the device, the sequence operations pulling it to the host
     * and pushing it back), with ggml's activation rounding (MOERUN_CUDA_EMU_Q8K) so that
     * micro-batch sizes give the same rounding as on the CPU */
    if (!only || !strcmp(only, "gpu")) {
        setenv("MOERUN_CUDA_EMU", "1", 1);
        setenv("MOERUN_CUDA_EMU_Q8K", "1", 1);
        mr_model_params gp = mr_model_default_params();
        gp.path = mdir;
        gp.n_gpu_layers = 99;
        mr_model *gm = mr_model_load(&gp);
        CHECK(gm != NULL, "load with -ngl 99: %s", mr_last_error());
        if (gm) {
            mr_ctx *c = ctx(gm, 256, 512, 512, 2, 0);
            mr_ctx_offload_info oi = {0};
            if (c) mr_ctx_get_offload(c, &oi);
            CHECK(c && oi.n_layers_dev == 4 && !strcmp(oi.backend, "emu"), "-ngl 99: %d layers on the device (%s)",
                  oi.n_layers_dev, c ? oi.backend : mr_last_error());
            mr_ctx_free(c);
            printf("tiny-qwen3next -ngl 99 (emu): state and checkpoint tests\n");
            test_state(gm);
            test_checkpoint(gm);
            setenv("MOERUN_CUDA_FUSE", "0", 1); /* the separate ops instead of the fused ones */
            printf("tiny-qwen3next -ngl 99 (emu, MOERUN_CUDA_FUSE=0): checkpoint tests\n");
            test_checkpoint(gm);
            unsetenv("MOERUN_CUDA_FUSE");
            mr_model_free(gm);
        }
        unsetenv("MOERUN_CUDA_EMU");
        unsetenv("MOERUN_CUDA_EMU_Q8K");
    }
    if (gdir) {
        const char *cases[] = {"hello", "ids64", "ids300"};
        for (int i = 0; i < 3; i++) {
            if (only && strcmp(only, cases[i])) continue;
            char path[4096], name[64];
            snprintf(path, sizeof path, "%s/tiny-qwen3next.%s.json", gdir, cases[i]);
            snprintf(name, sizeof name, "tiny-qwen3next.%s", cases[i]);
            run_golden(m, path, name, false, false);
            run_golden(m, path, name, false, true);
            if (!strcmp(cases[i], "ids64")) run_golden(m, path, name, true, true);
        }
    } else
        printf("SKIP golden: fixtures/golden-qwen3next not found\n");
    mr_model_free(m);
    return check_done();
}
