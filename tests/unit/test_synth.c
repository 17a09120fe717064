/*
 * test_synth.c — synthetic models (src/synth/): sizes and parameter counts of
 * the full presets against the real files, tensor names / shapes / metadata
 * against the fixture models, decoded values finite and centred, the
 * synthetic vocabulary a valid BPE, determinism, and --vocab transplanting.
 */
#include <math.h>
#include <unistd.h>

#include "base/base.h"
#include "check.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "quant/types.h"
#include "synth/synth.h"
#include "synth_util.h"

static char g_tmp[256];

static uint64_t file_size_of(const synth_plan *pl, const gguf_ctx *v, uint64_t seed) {
    gguf_writer *w = gguf_writer_new("/dev/null");
    synth_write_meta(w, pl, v, seed);
    for (int k = 0; k < pl->n_t; k++) gguf_writer_add_tensor(w, pl->t[k].name, pl->t[k].type, pl->t[k].n_dims, pl->t[k].ne);
    uint64_t s = gguf_writer_file_size(w);
    gguf_writer_abort(w);
    return s;
}

static void test_full_sizes(void) {
    /* name, GiB, B params (real llama.cpp files), tolerance */
    struct { const char *name; double gib, bparams; } want[] = {
        {"qwen3moe-30b-a3b", 17.28, 30.53},   /* Qwen3-30B-A3B-Q4_K_M.gguf */
        {"deepseek-v3", 376.65, 671.03},      /* DeepSeek-V3 Q4_K_M (no MTP layer) */
        {"qwen3-next-80b-a3b", 79.0, 79.67},  /* Qwen3-Next-80B-A3B Q8_0, 84.8 GB */
        {"deepseek-v2-lite", 11.04, 15.71},   /* DeepSeek-V2-Lite Q5_K_M, 11.9 GB */
    };
    for (size_t i = 0; i < MR_ARRAY_LEN(want); i++) {
        synth_plan pl;
        CHECK(synth_plan_build(&pl, want[i].name, 0, 0) == 0, "%s: %s", want[i].name, mr_geterr());
        double gib = file_size_of(&pl, NULL, 1) / 1073741824.0, bp = pl.n_params / 1e9;
        printf("%-20s %4d tensors  %8.2f GiB  %8.2f B params\n", want[i].name, pl.n_t, gib, bp);
        CHECK(fabs(gib / want[i].gib - 1) < 0.01, "%s: %.2f GiB, want %.2f", want[i].name, gib, want[i].gib);
        CHECK(fabs(bp / want[i].bparams - 1) < 0.01, "%s: %.3f B params, want %.2f", want[i].name, bp, want[i].bparams);
        synth_plan_free(&pl);
    }
    /* the Q4_K_M rule on Qwen3-30B-A3B: 24 of 48 layers get Q6_K attn_v / ffn_down_exps */
    synth_plan pl;
    synth_plan_build(&pl, "qwen3moe-30b-a3b", 0, 0);
    int n6 = 0, n6d = 0;
    for (int k = 0; k < pl.n_t; k++) {
        if (strstr(pl.t[k].name, "attn_v.weight") && pl.t[k].type == MR_TYPE_Q6_K) n6++;
        if (strstr(pl.t[k].name, "ffn_down_exps") && pl.t[k].type == MR_TYPE_Q6_K) n6d++;
        if (!strcmp(pl.t[k].name, "blk.0.attn_v.weight")) CHECK(pl.t[k].type == MR_TYPE_Q6_K, "blk.0 attn_v");
        if (!strcmp(pl.t[k].name, "blk.6.ffn_down_exps.weight")) CHECK(pl.t[k].type == MR_TYPE_Q4_K, "blk.6 down");
        if (!strcmp(pl.t[k].name, "blk.8.ffn_down_exps.weight")) CHECK(pl.t[k].type == MR_TYPE_Q6_K, "blk.8 down");
        if (!strcmp(pl.t[k].name, "output.weight")) CHECK(pl.t[k].type == MR_TYPE_Q6_K, "output Q6_K");
        if (!strcmp(pl.t[k].name, "token_embd.weight")) CHECK(pl.t[k].type == MR_TYPE_Q4_K, "token_embd Q4_K");
        if (strstr(pl.t[k].name, "ffn_gate_inp")) CHECK(pl.t[k].type == MR_TYPE_F32, "router F32");
    }
    CHECK(n6 == 24 && n6d == 24, "use_more_bits layers: %d attn_v, %d ffn_down", n6, n6d);
    synth_plan_free(&pl);
    /* --layers and errors */
    CHECK(synth_plan_build(&pl, "deepseek-v3", 5, 0) == 0 && pl.n_layer == 5, "v3 5 layers");
    int dense = 0;
    for (int k = 0; k < pl.n_t; k++) dense += strstr(pl.t[k].name, "ffn_down.weight") != NULL;
    CHECK(dense == 3, "v3 --layers 5 keeps 3 dense layers (%d)", dense);
    synth_plan_free(&pl);
    CHECK(synth_plan_build(&pl, "no-such-preset", 0, 0) != 0 && strstr(mr_geterr(), "no-such-preset"), "unknown preset");
    int n = 0;
    for (const char *const *p = synth_preset_names(); *p; p++, n++) CHECK(synth_preset_desc(*p) != NULL, "desc %s", *p);
    CHECK(n >= 7, "%d presets", n);
}

/* Fixture tensor names/shapes (ignoring the vocab dimension) vs ours. */
static void compare_with_fixture(const char *preset, int layers, const char *fixture, bool keys) {
    char path[1024];
    const char *root = check_shared("fixtures/models");
    if (!root) {
        printf("SKIP (%s): fixtures not found\n", fixture);
        return;
    }
    snprintf(path, sizeof path, "%s/%s", root, fixture);
    gguf_ctx *f = gguf_open(path);
    CHECK(f != NULL, "%s", mr_geterr());
    if (!f) return;
    synth_plan pl;
    CHECK(synth_plan_build(&pl, preset, layers, 0) == 0, "%s", mr_geterr());
    int64_t vocab = gguf_i64_or(f, "tokenizer.ggml.tokens", 0);
    const gguf_kv *tk = gguf_find(f, "tokenizer.ggml.tokens");
    vocab = tk ? (int64_t)tk->val.n : 0;
    CHECK((uint64_t)pl.n_t == f->n_tensors, "%s: %d tensors, fixture %s has %llu", preset, pl.n_t, fixture,
          (unsigned long long)f->n_tensors);
    for (int k = 0; k < pl.n_t; k++) {
        const synth_tensor *t = &pl.t[k];
        const gguf_tensor *ft = gguf_tensor_find(f, t->name);
        CHECK(ft != NULL, "%s: %s not in %s", preset, t->name, fixture);
        if (!ft) continue;
        bool same = ft->n_dims == t->n_dims;
        for (int d = 0; d < 4; d++)
            if (!(ft->ne[d] == t->ne[d] || (d == 1 && ft->ne[d] == vocab && t->ne[d] == pl.n_vocab))) same = false;
        CHECK(same, "%s: %s shape [%lld,%lld,%lld] vs fixture [%lld,%lld,%lld]", preset, t->name, (long long)t->ne[0],
              (long long)t->ne[1], (long long)t->ne[2], (long long)ft->ne[0], (long long)ft->ne[1], (long long)ft->ne[2]);
        CHECK((ft->type == MR_TYPE_F32) == (t->type == MR_TYPE_F32), "%s: %s F32 vs quantized differs", preset, t->name);
    }
    if (keys) {
        /* every hyperparameter key of the fixture exists in ours with the same value */
        const char *tmp = "/dev/null";
        (void)tmp;
        char out[512];
        snprintf(out, sizeof out, "%s/%s.gguf", g_tmp, preset);
        CHECK(write_plan(&pl, out, NULL, 7) == 0, "write %s: %s", out, mr_geterr());
        gguf_ctx *o = gguf_open(out);
        CHECK(o != NULL, "%s", mr_geterr());
        const char *arch = gguf_get_str(f, "general.architecture");
        for (uint64_t i = 0; o && i < f->n_kv; i++) {
            const char *key = f->kv[i].key;
            if (strncmp(key, arch, strlen(arch)) || strstr(key, "vocab_size") || strstr(key, "q_lora_rank")) continue;
            const gguf_kv *ok = gguf_find(o, key);
            CHECK(ok != NULL, "%s: key %s missing", preset, key);
            if (!ok) continue;
            char a[128], b[128];
            gguf_value_str(&f->kv[i].val, a, sizeof a);
            gguf_value_str(&ok->val, b, sizeof b);
            CHECK(!strcmp(a, b) && ok->val.type == f->kv[i].val.type, "%s: %s = %s, fixture %s", preset, key, b, a);
        }
        gguf_close(o);
        unlink(out);
    }
    synth_plan_free(&pl);
    gguf_close(f);
}

/* Writes a tiny preset, reads it back, decodes every tensor. */
static void test_values(const char *preset) {
    char out[512];
    snprintf(out, sizeof out, "%s/%s-v.gguf", g_tmp, preset);
    synth_plan pl;
    synth_plan_build(&pl, preset, 0, 0);
    CHECK(write_plan(&pl, out, NULL, 3) == 0, "write: %s", mr_geterr());
    gguf_ctx *g = gguf_open(out);
    CHECK(g != NULL, "open: %s", mr_geterr());
    if (!g) { synth_plan_free(&pl); return; }
    CHECK(g->n_tensors == (uint64_t)pl.n_t, "tensor count");
    CHECK(g->total_size == file_size_of(&pl, NULL, 3), "predicted size %llu vs %llu",
          (unsigned long long)file_size_of(&pl, NULL, 3), (unsigned long long)g->total_size);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (!quant_can_dequant(t->type)) { CHECK(0, "%s: type %s", t->name, mr_type_name(t->type)); continue; }
        float *x = malloc((size_t)t->nelem * sizeof(float));
        CHECK(quant_dequant_row(t->type, t->data, x, t->nelem) == 0, "%s: %s", t->name, mr_geterr());
        double s = 0, s2 = 0;
        bool finite = true;
        for (int64_t k = 0; k < t->nelem; k++) {
            finite &= isfinite(x[k]);
            s += x[k];
            s2 += (double)x[k] * x[k];
        }
        double mean = s / t->nelem, sd = sqrt(fmax(s2 / t->nelem - mean * mean, 0));
        CHECK(finite, "%s: non-finite values", t->name);
        if (strstr(t->name, "norm")) CHECK(fabs(mean - 1) < 0.02 && sd < 0.05, "%s: norm mean %g sd %g", t->name, mean, sd);
        else if (strstr(t->name, ".weight")) {
            double want = 1 / sqrt((double)t->ne[0]);
            CHECK(fabs(mean) < 0.25 * want + 3 * want / sqrt((double)t->nelem) * 10, "%s: mean %g (sd %g)", t->name, mean, sd);
            CHECK(sd > 0.5 * want && sd < 2 * want, "%s (%s): sd %g, want ~%g", t->name, mr_type_name(t->type), sd, want);
        }
        free(x);
    }
    /* tokenizer: valid BPE */
    const gguf_kv *tk = gguf_find(g, "tokenizer.ggml.tokens"), *mg = gguf_find(g, "tokenizer.ggml.merges");
    CHECK(tk && mg && (int64_t)tk->val.n == pl.n_vocab, "vocab size");
    CHECK(!strcmp(gguf_get_str(g, "tokenizer.ggml.model"), "gpt2"), "model gpt2");
    if (tk && mg) {
        char **toks = tk->val.arr, **mer = mg->val.arr;
        /* hash lookup via a sorted copy would be faster; a simple O(n) scan over a
         * sample of merges keeps this short */
        int bad = 0;
        for (uint64_t m = 0; m < mg->val.n; m += 97) {
            const char *sp = strchr(mer[m], ' ');
            if (!sp) { bad++; continue; }
            char a[128], ab[128];
            snprintf(a, sizeof a, "%.*s", (int)(sp - mer[m]), mer[m]);
            snprintf(ab, sizeof ab, "%s%s", a, sp + 1);
            int fa = 0, fb = 0, fab = 0;
            for (uint64_t t = 0; t < tk->val.n; t++) {
                fa |= !strcmp(toks[t], a);
                fb |= !strcmp(toks[t], sp + 1);
                fab |= !strcmp(toks[t], ab);
            }
            bad += !(fa && fb && fab);
        }
        CHECK(bad == 0, "%d merges refer to missing tokens", bad);
        int64_t eos = gguf_i64_or(g, "tokenizer.ggml.eos_token_id", -1);
        CHECK(eos == pl.n_vocab - 1 && !strcmp(toks[eos], "<|end_of_text|>"), "eos");
        CHECK(!strcmp(toks[32], "Ġ") && !strcmp(toks['a'], "a") && !strcmp(toks[10], "Ċ"), "byte tokens");
    }
    CHECK(gguf_i64_or(g, "general.file_type", 0) > 0 && gguf_i64_or(g, "general.quantization_version", 0) == 2, "general.*");
    gguf_close(g);
    unlink(out);
    synth_plan_free(&pl);
}

static void test_vocab_unique(void) {
    synth_vocab v;
    CHECK(synth_vocab_make(&v, 151936, 1) == 0, "vocab: %s", mr_geterr());
    /* uniqueness: sort pointers */
    char **s = malloc((size_t)v.n_tokens * sizeof(char *));
    memcpy(s, v.tokens, (size_t)v.n_tokens * sizeof(char *));
    int cmp(const void *a, const void *b);
    qsort(s, (size_t)v.n_tokens, sizeof(char *), (int (*)(const void *, const void *))cmp);
    int dups = 0;
    for (int64_t i = 1; i < v.n_tokens; i++) dups += !strcmp(s[i - 1], s[i]);
    CHECK(dups == 0, "%d duplicate tokens", dups);
    CHECK(v.n_merges == v.n_tokens - 258, "merges %lld", (long long)v.n_merges);
    free(s);
    synth_vocab_free(&v);
    CHECK(synth_vocab_make(&v, 10, 1) != 0, "tiny vocab refused");
}
int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_determinism(void) {
    synth_tensor t = {.name = "x", .type = MR_TYPE_Q4_K, .n_dims = 2, .ne = {256, 4, 1, 1}};
    uint8_t a[576], b[576];
    synth_rng r;
    synth_rng_seed(&r, 5);
    synth_fill(&t, &r, a, sizeof a);
    synth_rng_seed(&r, 5);
    synth_fill(&t, &r, b, sizeof b);
    CHECK(!memcmp(a, b, sizeof a), "same seed, same data");
    synth_rng_seed(&r, 6);
    synth_fill(&t, &r, b, sizeof b);
    CHECK(memcmp(a, b, sizeof a), "other seed, other data");
    t.type = MR_TYPE_IQ2_XXS;
    CHECK(synth_fill(&t, &r, b, 66) != 0, "unsupported type refused");
}

static void test_vocab_copy(void) {
    const char *vp = check_shared("fixtures/vocab/ggml-vocab-qwen3.gguf");
    if (!vp) {
        printf("SKIP (--vocab): fixtures/vocab/ggml-vocab-qwen3.gguf not found\n");
        return;
    }
    gguf_ctx *v = gguf_open(vp);
    CHECK(v != NULL, "%s", mr_geterr());
    if (!v) return;
    const gguf_kv *tk = gguf_find(v, "tokenizer.ggml.tokens");
    synth_plan pl;
    CHECK(synth_plan_build(&pl, "tiny-qwen3moe", 2, (int64_t)tk->val.n) == 0, "plan");
    char out[512];
    snprintf(out, sizeof out, "%s/vocab.gguf", g_tmp);
    CHECK(write_plan(&pl, out, v, 1) == 0, "write: %s", mr_geterr());
    gguf_ctx *o = gguf_open(out);
    CHECK(o != NULL, "%s", mr_geterr());
    if (o) {
        int n_tok_keys = 0;
        for (uint64_t i = 0; i < v->n_kv; i++) {
            if (strncmp(v->kv[i].key, "tokenizer.", 10)) continue;
            n_tok_keys++;
            const gguf_kv *k = gguf_find(o, v->kv[i].key);
            CHECK(k && k->val.type == v->kv[i].val.type && k->val.n == v->kv[i].val.n, "key %s copied", v->kv[i].key);
        }
        CHECK(n_tok_keys >= 5, "tokenizer keys %d", n_tok_keys);
        const gguf_tensor *t = gguf_tensor_find(o, "token_embd.weight");
        CHECK(t && t->ne[1] == (int64_t)tk->val.n, "token_embd rows = vocab");
        CHECK(gguf_i64_or(o, "qwen3moe.vocab_size", 0) == (int64_t)tk->val.n, "vocab_size");
        const char *tmpl = gguf_get_str(o, "tokenizer.chat_template");
        CHECK(!gguf_find(v, "tokenizer.chat_template") || (tmpl && strstr(tmpl, "im_start")), "chat template");
        gguf_close(o);
    }
    unlink(out);
    synth_plan_free(&pl);
    gguf_close(v);
}

/* --ftype: the mixes' types per tensor (llama.cpp's choices for these names), names both ways,
 * general.file_type written, unknown names refused; the preset's own mix is unchanged. */
static const synth_tensor *find_t(const synth_plan *pl, const char *name) {
    for (int k = 0; k < pl->n_t; k++)
        if (!strcmp(pl->t[k].name, name)) return &pl->t[k];
    return NULL;
}
static uint32_t type_of(const synth_plan *pl, const char *name) {
    const synth_tensor *t = find_t(pl, name);
    CHECK(t != NULL, "no tensor %s", name);
    return t ? t->type : UINT32_MAX;
}

static void test_ftypes(void) {
    CHECK(synth_ftype_from_name("Q3_K_M") == 12 && synth_ftype_from_name("q2_k") == 10 &&
              synth_ftype_from_name("iq4_xs") == 30 && synth_ftype_from_name("bf16") == 32 &&
              synth_ftype_from_name("q3_k") == -1 && synth_ftype_from_name("") == -1,
          "file type names");
    CHECK(synth_ftype_name(15) && !strcmp(synth_ftype_name(15), "q4_k_m") && synth_ftype_name(99) == NULL,
          "file type of an id");
    synth_plan pl, ref;
    CHECK(synth_plan_build(&pl, "qwen3moe-30b-a3b", 8, 0) == 0 && synth_plan_build(&ref, "qwen3moe-30b-a3b", 8, 0) == 0,
          "plans: %s", mr_geterr());
    CHECK(synth_plan_set_ftype(&pl, 15) == 0, "q4_k_m");
    bool same = pl.data_bytes == ref.data_bytes;
    for (int k = 0; k < pl.n_t; k++) same = same && pl.t[k].type == ref.t[k].type;
    CHECK(same, "--ftype q4_k_m on a Q4_K_M preset changes its mix");
    CHECK(synth_plan_set_ftype(&pl, 12) == 0, "q3_k_m");
    CHECK(type_of(&pl, "blk.3.ffn_gate_exps.weight") == MR_TYPE_Q3_K && type_of(&pl, "blk.3.attn_q.weight") == MR_TYPE_Q3_K &&
              type_of(&pl, "blk.0.attn_v.weight") == MR_TYPE_Q5_K && type_of(&pl, "blk.5.attn_v.weight") == MR_TYPE_Q4_K &&
              type_of(&pl, "blk.2.attn_output.weight") == MR_TYPE_Q4_K && type_of(&pl, "output.weight") == MR_TYPE_Q6_K &&
              type_of(&pl, "blk.0.ffn_down_exps.weight") == MR_TYPE_Q4_K && /* layer 0 of 8: more bits */
              type_of(&pl, "blk.3.ffn_down_exps.weight") == MR_TYPE_Q4_K && /* (3 - 1) % 3 == 2 */
              type_of(&pl, "blk.4.ffn_down_exps.weight") == MR_TYPE_Q3_K &&
              type_of(&pl, "blk.3.ffn_gate_inp.weight") == MR_TYPE_F32 && type_of(&pl, "blk.3.attn_norm.weight") == MR_TYPE_F32,
          "q3_k_m mix");
    CHECK(pl.data_bytes < ref.data_bytes * 0.85, "q3_k_m is smaller than q4_k_m: %llu vs %llu",
          (unsigned long long)pl.data_bytes, (unsigned long long)ref.data_bytes);
    CHECK(synth_plan_set_ftype(&pl, 32) == 0, "bf16");
    int nbf = 0, nmat = 0;
    for (int k = 0; k < pl.n_t; k++)
        if (pl.t[k].n_dims >= 2 && !strstr(pl.t[k].name, "ffn_gate_inp")) nmat++, nbf += pl.t[k].type == MR_TYPE_BF16;
    CHECK(nbf == nmat && type_of(&pl, "blk.0.ffn_gate_inp.weight") == MR_TYPE_F32, "bf16: %d of %d matrices BF16", nbf,
          nmat);
    CHECK(synth_plan_set_ftype(&pl, 3) != 0 && synth_plan_set_ftype(&pl, 99) != 0, "unknown file types refused");
    /* rows that do not fit a 256-block fall back as llama.cpp's: DeepSeek-V2-Lite's expert downs
     * (rows of 1408 = 5.5 x 256) in IQ4_NL */
    synth_plan dl;
    CHECK(synth_plan_build(&dl, "deepseek-v2-lite", 0, 0) == 0 && synth_plan_set_ftype(&dl, 30) == 0, "v2-lite iq4_xs");
    CHECK(type_of(&dl, "blk.3.ffn_down_exps.weight") == MR_TYPE_IQ4_NL &&
              type_of(&dl, "blk.3.ffn_up_exps.weight") == MR_TYPE_IQ4_XS, "v2-lite iq4_xs: fallback");
    for (int k = 0; k < dl.n_t; k++) {
        const synth_tensor *t = &dl.t[k];
        CHECK(t->type == MR_TYPE_F32 || t->ne[0] % mr_type_get(t->type)->blck == 0, "%s: %s rows of %lld", t->name,
              mr_type_name(t->type), (long long)t->ne[0]);
    }
    /* general.file_type */
    char out[512];
    snprintf(out, sizeof out, "%s/ft.gguf", g_tmp);
    synth_plan tq;
    CHECK(synth_plan_build(&tq, "tiny-qwen3moe", 0, 0) == 0 && synth_plan_set_ftype(&tq, 10) == 0, "tiny q2_k");
    CHECK(write_plan(&tq, out, NULL, 5) == 0, "write: %s", mr_geterr());
    gguf_ctx *g = gguf_open(out);
    const gguf_kv *kv = g ? gguf_find(g, "general.file_type") : NULL;
    CHECK(kv && kv->val.type == GGUF_VT_UINT32 && kv->val.v.u == 10, "general.file_type of a q2_k file");
    const gguf_tensor *gt = g ? gguf_tensor_find(g, "blk.1.ffn_up_exps.weight") : NULL;
    CHECK(gt && gt->type == MR_TYPE_Q2_K, "q2_k experts in the file");
    gguf_close(g);
    unlink(out);
    synth_plan_free(&tq);
    synth_plan_free(&dl);
    synth_plan_free(&pl);
    synth_plan_free(&ref);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/moerun-test-synth-XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    double t0 = mr_time_s();
    test_full_sizes();
    test_determinism();
    test_vocab_unique();
    test_values("tiny-qwen3moe");
    test_values("tiny-deepseek2");
    test_values("tiny-llama");
    compare_with_fixture("tiny-qwen3moe", 0, "tiny-qwen3moe.gguf", true);
    compare_with_fixture("tiny-deepseek2", 0, "tiny-deepseek2-lite.gguf", true);
    compare_with_fixture("tiny-qwen3next", 0, "tiny-qwen3next.gguf", true);
    test_values("tiny-qwen3next");
    test_vocab_copy();
    test_ftypes();
    rmdir(g_tmp);
    printf("%.2f s\n", mr_time_s() - t0);
    return check_done();
}
