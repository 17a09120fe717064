/*
 * tok_vocab.c — loading a vocabulary from GGUF metadata the way llama.cpp's
 * llama_vocab::impl::load does: model type, pre-tokenizer, token texts /
 * scores / types, default and explicit special token ids, the add_* flags,
 * auto-detection of EOT/EOM/FIM/EOG tokens by their text (which also marks
 * them as control tokens), the special-token list used for partitioning, the
 * per-model strip attributes and the token-to-piece cache. Plus accessors.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tok/tok_int.h"

/* GGUF token types (llama_token_type) -> attributes. */
static uint16_t type_to_attr(int64_t t) {
    switch (t) {
    case 1: return TOK_ATTR_NORMAL;
    case 2: return TOK_ATTR_UNKNOWN;
    case 3: return TOK_ATTR_CONTROL;
    case 4: return TOK_ATTR_USER_DEFINED;
    case 5: return TOK_ATTR_UNUSED;
    case 6: return TOK_ATTR_BYTE;
    default: return TOK_ATTR_UNDEFINED;
    }
}

static int64_t arr_int(const gguf_value *a, uint64_t i) {
    switch (a->arr_type) {
    case GGUF_VT_UINT8: return ((const uint8_t *)a->arr)[i];
    case GGUF_VT_INT8: return ((const int8_t *)a->arr)[i];
    case GGUF_VT_UINT16: return ((const uint16_t *)a->arr)[i];
    case GGUF_VT_INT16: return ((const int16_t *)a->arr)[i];
    case GGUF_VT_UINT32: return ((const uint32_t *)a->arr)[i];
    case GGUF_VT_INT32: return ((const int32_t *)a->arr)[i];
    case GGUF_VT_UINT64: return (int64_t)((const uint64_t *)a->arr)[i];
    case GGUF_VT_INT64: return ((const int64_t *)a->arr)[i];
    default: return 0;
    }
}

static bool arr_is_int(gguf_vtype t) {
    return t == GGUF_VT_UINT8 || t == GGUF_VT_INT8 || t == GGUF_VT_UINT16 || t == GGUF_VT_INT16 ||
           t == GGUF_VT_UINT32 || t == GGUF_VT_INT32 || t == GGUF_VT_UINT64 || t == GGUF_VT_INT64;
}

static const gguf_value *get_arr(const gguf_ctx *g, const char *key, gguf_vtype want, bool any_int) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return NULL;
    if (kv->val.type != GGUF_VT_ARRAY || (any_int ? !arr_is_int(kv->val.arr_type) : kv->val.arr_type != want)) {
        mr_seterr("%s: expected an array of %s, found %s", key, any_int ? "integers" : gguf_vtype_name(want),
                  gguf_vtype_name(kv->val.type == GGUF_VT_ARRAY ? kv->val.arr_type : kv->val.type));
        return (const gguf_value *)-1;
    }
    return &kv->val;
}

static void get_bool(const gguf_ctx *g, const char *key, bool *dst) {
    bool b;
    if (gguf_get_bool(g, key, &b)) *dst = b;
}

/* Special id from a key: kept when absent or out of range (llama.cpp warns). */
static void get_id(const tok_vocab *v, const gguf_ctx *g, const char *key, int32_t *id) {
    int64_t x;
    if (!gguf_get_i64(g, key, &x)) return;
    if (x < 0 || x >= v->n_vocab) {
        MR_WARN("%s = %lld is out of the vocabulary (%d entries); using %d", key, (long long)x, v->n_vocab, *id);
        return;
    }
    *id = (int32_t)x;
}

static void mark_control(tok_vocab *v, int32_t id) {
    if (id >= 0 && !(v->attr[id] & TOK_ATTR_CONTROL)) v->attr[id] |= TOK_ATTR_CONTROL;
}

/* First token among the candidate texts that exists (llama.cpp picks whichever
 * its hash map yields first; we take the list order, deterministic). */
static int32_t find_first(const tok_vocab *v, const char *const *cand) {
    for (; *cand; cand++) {
        int32_t id = tok_find(v, *cand, strlen(*cand));
        if (id >= 0) return id;
    }
    return TOK_NULL;
}

static void auto_special(tok_vocab *v, int32_t *id, const char *const *cand) {
    if (*id != TOK_NULL) return;
    *id = find_first(v, cand);
    mark_control(v, *id);
}

static int eog_add(tok_vocab *v, int32_t id) {
    if (id < 0) return 0;
    for (int i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) return 0;
    int32_t *p = mr_realloc(v->eog, (size_t)(v->n_eog + 1) * sizeof *p);
    if (!p) return -1;
    v->eog = p;
    v->eog[v->n_eog++] = id;
    return 0;
}

static void eog_remove(tok_vocab *v, int32_t id) {
    for (int i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) {
            v->eog[i] = v->eog[--v->n_eog];
            return;
        }
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static __thread const tok_vocab *t_sort_vocab;
static int cmp_special(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = t_sort_vocab->len[x], ly = t_sort_vocab->len[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return (x > y) - (x < y);
}

/* Byte of a <0xNN> entry. */
static int hex_byte(const char *s, uint32_t n) {
    if (n < 5) return 0;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        int c = s[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 0;
        v = v * 16 + d;
    }
    return v;
}

/* Render a token for the piece cache (llama.cpp's token_to_piece with special = true). */
static int build_piece(tok_vocab *v, int32_t id) {
    const char *t = v->text[id];
    uint32_t n = v->len[id], a = v->attr[id];
    char *out = NULL;
    size_t on = 0;
    if (a & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED)) {
        out = mr_malloc(n + 1);
        if (!out) return -1;
        memcpy(out, t, n);
        on = n;
    } else if (a & TOK_ATTR_NORMAL) {
        if (v->model != TOK_MODEL_BPE) { /* SPM, WPM: ▁ -> ' ' */
            out = mr_malloc(n + 1);
            if (!out) return -1;
            for (uint32_t i = 0; i < n;) {
                if (i + 3 <= n && !memcmp(t + i, "\xE2\x96\x81", 3)) {
                    out[on++] = ' ';
                    i += 3;
                } else out[on++] = t[i++];
            }
        } else { /* byte-decode each code point */
            size_t cap = (size_t)n * 2 + 64;
            out = mr_malloc(cap);
            if (!out) return -1;
            for (uint32_t i = 0; i < n;) {
                int k = tok_utf8_valid_len((const unsigned char *)t + i, n - i);
                uint32_t cp = 0xFFFD;
                const unsigned char *p = (const unsigned char *)t + i;
                if (k == 1) cp = p[0];
                else if (k == 2) cp = ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
                else if (k == 3) cp = ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
                else if (k == 4) cp = ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
                i += k ? (uint32_t)k : 1;
                int b = tok_unicode_to_byte(cp);
                if (b >= 0) {
                    out[on++] = (char)b;
                    continue;
                }
                /* llama_decode_text: "[UNK_BYTE_0x<utf8 hex><token text>]" */
                size_t need = on + 12 + 8 + n + 2;
                if (need > cap) {
                    cap = need * 2;
                    char *no = mr_realloc(out, cap);
                    if (!no) {
                        free(out);
                        return -1;
                    }
                    out = no;
                }
                on += (size_t)sprintf(out + on, "[UNK_BYTE_0x");
                const unsigned char *u = k ? p : (const unsigned char *)"\xEF\xBF\xBD";
                for (int j = 0; j < (k ? k : 3); j++) on += (size_t)sprintf(out + on, "%02x", u[j]);
                memcpy(out + on, t, n);
                on += n;
                out[on++] = ']';
            }
        }
    } else if (a & TOK_ATTR_BYTE) {
        out = mr_malloc(2);
        if (!out) return -1;
        out[0] = (char)hex_byte(t, n);
        on = 1;
    } else {
        out = mr_malloc(1);
        if (!out) return -1;
    }
    out[on] = 0;
    v->piece[id] = out;
    v->piece_len[id] = (uint32_t)on;
    return 0;
}

static const char *const k_eot[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                    "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
                                    "<end_of_utterance>", NULL};
static const char *const k_eom[] = {"<|eom_id|>", NULL};
static const char *const k_fim_pre[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
                                        "▁<PRE>", "<|code_prefix|>", "<|prefix|>", NULL};
static const char *const k_fim_suf[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
                                        "▁<SUF>", "<|code_suffix|>", "<|suffix|>", NULL};
static const char *const k_fim_mid[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
                                        "▁<MID>", "<|code_middle|>", "<|middle|>", NULL};
static const char *const k_fim_pad[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
static const char *const k_fim_rep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL};
static const char *const k_fim_sep[] = {"<|file_sep|>", NULL};
static const char *const k_eog[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
                                    "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
                                    "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
                                    "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[", NULL};

static int load_specials(tok_vocab *v, const gguf_ctx *g) {
    int32_t *ids[] = {&v->bos, &v->eos, &v->eot, &v->eom, &v->unk, &v->sep, &v->pad, &v->mask,
                      &v->fim_pre, &v->fim_suf, &v->fim_mid, &v->fim_pad, &v->fim_rep, &v->fim_sep,
                      &v->fim_pre, &v->fim_suf, &v->fim_mid};
    const char *keys[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                          "tokenizer.ggml.eom_token_id", "tokenizer.ggml.unknown_token_id",
                          "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id",
                          "tokenizer.ggml.mask_token_id", "tokenizer.ggml.fim_pre_token_id",
                          "tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.fim_mid_token_id",
                          "tokenizer.ggml.fim_pad_token_id", "tokenizer.ggml.fim_rep_token_id",
                          "tokenizer.ggml.fim_sep_token_id", "tokenizer.ggml.prefix_token_id",
                          "tokenizer.ggml.suffix_token_id", "tokenizer.ggml.middle_token_id"};
    for (size_t i = 0; i < MR_ARRAY_LEN(keys); i++) {
        if (*ids[i] >= v->n_vocab) *ids[i] = TOK_NULL; /* default out of range: disabled */
        get_id(v, g, keys[i], ids[i]);
    }
    get_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos);
    get_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos);
    get_bool(g, "tokenizer.ggml.add_sep_token", &v->add_sep);

    auto_special(v, &v->eot, k_eot);
    auto_special(v, &v->eom, k_eom);
    auto_special(v, &v->fim_pre, k_fim_pre);
    auto_special(v, &v->fim_suf, k_fim_suf);
    auto_special(v, &v->fim_mid, k_fim_mid);
    auto_special(v, &v->fim_pad, k_fim_pad);
    auto_special(v, &v->fim_rep, k_fim_rep);
    auto_special(v, &v->fim_sep, k_fim_sep);

    /* control tokens named "unused" are unused */
    for (int32_t i = 0; i < v->n_vocab; i++)
        if ((v->attr[i] & TOK_ATTR_CONTROL) && strstr(v->text[i], "unused")) v->attr[i] |= TOK_ATTR_UNUSED;

    if (eog_add(v, v->fim_pad) || eog_add(v, v->fim_rep) || eog_add(v, v->fim_sep)) return -1;
    for (const char *const *c = k_eog; *c; c++) {
        int32_t id = tok_find(v, *c, strlen(*c));
        if (id < 0) continue;
        if (eog_add(v, id)) return -1;
        mark_control(v, id);
    }
    static const char *const k_always_user[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"};
    for (size_t i = 0; i < MR_ARRAY_LEN(k_always_user); i++) {
        int32_t id = tok_find(v, k_always_user[i], strlen(k_always_user[i]));
        if (id >= 0) v->attr[id] = TOK_ATTR_USER_DEFINED;
    }
    if (eog_add(v, v->eos) || eog_add(v, v->eot) || eog_add(v, v->eom)) return -1;
    /* o200k_harmony / solar-open: <|end|> is not an end of generation there */
    {
        bool has_return = false, has_call = false, has_flush = false;
        int32_t end_id = TOK_NULL;
        for (int i = 0; i < v->n_eog; i++) {
            const char *t = v->text[v->eog[i]];
            if (!strcmp(t, "<|return|>")) has_return = true;
            else if (!strcmp(t, "<|call|>") || !strcmp(t, "<|calls|>")) has_call = true;
            else if (!strcmp(t, "<|flush|>")) has_flush = true;
            else if (!strcmp(t, "<|end|>")) end_id = v->eog[i];
        }
        if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
            eog_remove(v, end_id);
            v->attr[end_id] = TOK_ATTR_USER_DEFINED;
        }
    }
    {
        int32_t tr = tok_find(v, "<|tool_response>", 16), s = tok_find(v, "</s>", 4);
        bool tr_eog = false, s_eog = false;
        for (int i = 0; i < v->n_eog; i++) {
            tr_eog |= v->eog[i] == tr;
            s_eog |= v->eog[i] == s;
        }
        if (tr >= 0 && s >= 0 && tr_eog && s_eog) {
            eog_remove(v, s);
            v->attr[s] = TOK_ATTR_NORMAL;
        }
    }
    qsort(v->eog, (size_t)v->n_eog, sizeof *v->eog, cmp_i32);

    /* special tokens for partitioning: longest text first */
    v->special = mr_malloc((size_t)(v->n_vocab ? v->n_vocab : 1) * sizeof *v->special);
    if (!v->special) return -1;
    for (int32_t i = 0; i < v->n_vocab; i++)
        if (v->attr[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)) {
            v->special[v->n_special++] = i;
            if ((int)v->len[i] > v->max_special_len) v->max_special_len = (int)v->len[i];
        }
    t_sort_vocab = v;
    qsort(v->special, (size_t)v->n_special, sizeof *v->special, cmp_special);

    /* per-model strip attributes (by general.name / tokenizer.ggml.pre) */
    const char *name = gguf_get_str(g, "general.name");
    char lname[256] = {0};
    if (name)
        for (size_t i = 0; name[i] && i + 1 < sizeof lname; i++) lname[i] = (char)tolower((unsigned char)name[i]);
    const char *pre = gguf_get_str(g, "tokenizer.ggml.pre");
    const char *arch = gguf_get_str(g, "general.architecture");
    if ((pre && (strstr(pre, "jina-v2-de") || strstr(pre, "jina-v2-es") || strstr(pre, "jina-v2-code"))) ||
        (arch && (strstr(arch, "nomic-bert-moe") || strstr(arch, "jina-bert-v3")))) {
        int32_t id = tok_find(v, "<mask>", 6);
        if (id >= 0) v->attr[id] |= TOK_ATTR_LSTRIP;
    } else if (strstr(lname, "phi-3") || strstr(lname, "phi3")) {
        for (int i = 0; i < v->n_special; i++) v->attr[v->special[i]] |= TOK_ATTR_RSTRIP;
        int32_t id = tok_find(v, "</s>", 4);
        if (id >= 0) v->attr[id] |= TOK_ATTR_RSTRIP;
        static const char *const k_no[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (size_t i = 0; i < MR_ARRAY_LEN(k_no); i++) {
            id = tok_find(v, k_no[i], strlen(k_no[i]));
            if (id >= 0) v->attr[id] &= (uint16_t)~TOK_ATTR_RSTRIP;
        }
    } else if (strstr(lname, "modern-bert")) {
        int32_t id = tok_find(v, "[MASK]", 6);
        if (id >= 0) v->attr[id] |= TOK_ATTR_LSTRIP;
    }
    return 0;
}

tok_vocab *tok_vocab_load(const gguf_ctx *g, bool allow_unknown_pre) {
    const char *file = g && g->path ? g->path : "gguf";
    const char *model = gguf_get_str(g, "tokenizer.ggml.model");
    if (!model) {
        mr_seterr("%s: no tokenizer.ggml.model (not a model or vocabulary file?)", file);
        return NULL;
    }
    tok_vocab *v = mr_calloc(1, sizeof *v);
    if (!v) return NULL;
    v->eot = v->eom = v->sep = v->pad = v->mask = TOK_NULL;
    v->fim_pre = v->fim_suf = v->fim_mid = v->fim_pad = v->fim_rep = v->fim_sep = TOK_NULL;
    v->newline = TOK_NULL;
    if (!strcmp(model, "llama")) {
        v->model = TOK_MODEL_SPM;
        v->bos = 1, v->eos = 2, v->unk = 0;
        v->add_space_prefix = true, v->clean_spaces = false, v->add_bos = true, v->add_eos = false;
    } else if (!strcmp(model, "gpt2")) {
        v->model = TOK_MODEL_BPE;
        v->bos = 11, v->eos = 11, v->unk = TOK_NULL;
        const char *pre = gguf_get_str(g, "tokenizer.ggml.pre");
        if (!pre || !*pre) {
            MR_WARN("%s: missing tokenizer.ggml.pre, using the 'default' pre-tokenizer (quality may degrade)", file);
            pre = "default";
        }
        snprintf(v->pre_name, sizeof v->pre_name, "%s", pre);
        if (tok_pre_lookup(pre, &v->pre, &v->ignore_merges, &v->add_bos, &v->clean_spaces) < 0) {
            if (!allow_unknown_pre) {
                mr_seterr("%s: unknown pre-tokenizer tokenizer.ggml.pre = '%s' (known: %s); pass "
                          "--allow-unknown-pre to fall back to 'default'",
                          file, pre, tok_pre_names());
                goto fail;
            }
            MR_WARN("%s: unknown pre-tokenizer '%s', falling back to 'default'", file, pre);
            tok_pre_lookup("default", &v->pre, &v->ignore_merges, &v->add_bos, &v->clean_spaces);
            snprintf(v->pre_name, sizeof v->pre_name, "default");
        }
    } else if (!strcmp(model, "bert")) { /* WordPiece: llama.cpp's defaults for LLAMA_VOCAB_TYPE_WPM */
        v->model = TOK_MODEL_WPM;
        v->bos = 101, v->eos = TOK_NULL, v->unk = 100, v->sep = 102, v->pad = 0, v->mask = 103;
        v->add_space_prefix = false, v->clean_spaces = true, v->add_bos = true, v->add_eos = false;
        v->add_sep = true;
    } else {
        mr_seterr("%s: tokenizer.ggml.model = '%s' is not supported (supported: gpt2, llama, bert)", file, model);
        goto fail;
    }
    get_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix);

    const gguf_value *toks = get_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, false);
    if (!toks) {
        mr_seterr("%s: no tokenizer.ggml.tokens", file);
        goto fail;
    }
    if (toks == (const gguf_value *)-1) goto fail_ctx;
    if (toks->n == 0 || toks->n > INT32_MAX / 2) {
        mr_seterr("%s: tokenizer.ggml.tokens has %llu entries", file, (unsigned long long)toks->n);
        goto fail;
    }
    v->n_vocab = (int32_t)toks->n;
    const gguf_value *scores = get_arr(g, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, false);
    if (scores == (const gguf_value *)-1) goto fail_ctx;
    if (scores && scores->n < toks->n) {
        mr_seterr("%s: tokenizer.ggml.scores has %llu entries for %d tokens", file, (unsigned long long)scores->n,
                  v->n_vocab);
        goto fail;
    }
    const gguf_value *types = get_arr(g, "tokenizer.ggml.token_type", GGUF_VT_INT32, true);
    if (types == (const gguf_value *)-1) goto fail_ctx;
    if (types && types->n < toks->n) {
        mr_seterr("%s: tokenizer.ggml.token_type has %llu entries for %d tokens", file, (unsigned long long)types->n,
                  v->n_vocab);
        goto fail;
    }
    size_t nv = (size_t)v->n_vocab;
    v->text = mr_calloc(nv, sizeof *v->text);
    v->len = mr_calloc(nv, sizeof *v->len);
    v->score = mr_calloc(nv, sizeof *v->score);
    v->attr = mr_calloc(nv, sizeof *v->attr);
    v->piece = mr_calloc(nv, sizeof *v->piece);
    v->piece_len = mr_calloc(nv, sizeof *v->piece_len);
    if (!v->text || !v->len || !v->score || !v->attr || !v->piece || !v->piece_len) goto fail;
    if (tok_strmap_init(&v->map, (uint32_t)nv) < 0) goto fail;
    for (size_t i = 0; i < nv; i++) {
        const char *s = ((char **)toks->arr)[i];
        uint64_t l = toks->lens[i];
        if (l > UINT32_MAX / 2) {
            mr_seterr("%s: token %zu is too long", file, i);
            goto fail;
        }
        char *t;
        if (l == 0) { /* llama.cpp: "[EMPTY_<id>]" */
            char tmp[32];
            int k = snprintf(tmp, sizeof tmp, "[EMPTY_%zu]", i);
            t = mr_strdup(tmp);
            l = (uint64_t)k;
        } else {
            t = mr_malloc(l + 1);
            if (t) {
                memcpy(t, s, l);
                t[l] = 0;
            }
        }
        if (!t) goto fail;
        v->text[i] = t;
        v->len[i] = (uint32_t)l;
        if ((int64_t)l > v->max_token_len) v->max_token_len = (int32_t)l;
        v->score[i] = scores ? ((const float *)scores->arr)[i] : 0.0f;
        v->attr[i] = types ? type_to_attr(arr_int(types, i)) : TOK_ATTR_NORMAL;
        if (tok_strmap_put(&v->map, t, (uint32_t)l, (int32_t)i) < 0) goto fail;
    }

    if (v->model == TOK_MODEL_BPE) {
        const gguf_value *merges = get_arr(g, "tokenizer.ggml.merges", GGUF_VT_STRING, false);
        if (merges == (const gguf_value *)-1) goto fail_ctx;
        if (!merges) {
            mr_seterr("%s: no tokenizer.ggml.merges (needed by the gpt2 tokenizer)", file);
            goto fail;
        }
        if (tok_bpe_init(v, merges) < 0) goto fail_ctx;
        v->pre_re = tok_pre_new(v->pre);
        if (!v->pre_re) goto fail_ctx;
    } else if (v->model == TOK_MODEL_SPM) {
        for (int b = 0; b < 256; b++) {
            char buf[8];
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            int32_t id = tok_find(v, buf, 6);
            if (id < 0) {
                char c = (char)b;
                id = tok_find(v, &c, 1);
            }
            v->byte_tok[b] = id;
        }
        for (int32_t i = 0; i < v->n_vocab; i++)
            for (uint32_t j = 1; j < v->len[i]; j++) {
                unsigned k = (unsigned)(uint8_t)v->text[i][j - 1] << 8 | (uint8_t)v->text[i][j];
                v->pair_bits[k >> 3] |= (uint8_t)(1u << (k & 7));
            }
    }
    if (load_specials(v, g) < 0) goto fail_ctx;
    for (int32_t i = 0; i < v->n_vocab; i++)
        if (build_piece(v, i) < 0) goto fail;

    /* newline token: SPM <0x0A>, WPM the pad token, otherwise the tokenization of "\n" */
    if (v->model == TOK_MODEL_SPM) {
        v->newline = v->byte_tok['\n'] >= 0 ? v->byte_tok['\n'] : v->pad;
    } else if (v->model == TOK_MODEL_WPM) {
        v->newline = v->pad;
    } else {
        int32_t nl[4];
        int n = tok_encode(v, "\n", 1, nl, 4, false, false);
        v->newline = n > 0 ? nl[0] : v->pad;
    }
    return v;
fail_ctx:
    mr_preerr("%s", file);
fail:
    tok_vocab_free(v);
    return NULL;
}

void tok_vocab_free(tok_vocab *v) {
    if (!v) return;
    if (v->model == TOK_MODEL_BPE) tok_bpe_free(v);
    tok_pre_free(v->pre_re);
    for (int32_t i = 0; i < v->n_vocab; i++) {
        if (v->text) free(v->text[i]);
        if (v->piece) free(v->piece[i]);
    }
    free(v->text);
    free(v->len);
    free(v->score);
    free(v->attr);
    free(v->piece);
    free(v->piece_len);
    tok_strmap_free(&v->map);
    free(v->eog);
    free(v->special);
    free(v);
}

/* ---- accessors -------------------------------------------------------------------------- */
int tok_n_vocab(const tok_vocab *v) { return v->n_vocab; }
tok_model tok_model_type(const tok_vocab *v) { return v->model; }
const char *tok_pre_name(const tok_vocab *v) { return v->pre_name; }
int32_t tok_bos(const tok_vocab *v) { return v->bos; }
int32_t tok_eos(const tok_vocab *v) { return v->eos; }
int32_t tok_eot(const tok_vocab *v) { return v->eot; }
int32_t tok_eom(const tok_vocab *v) { return v->eom; }
int32_t tok_pad(const tok_vocab *v) { return v->pad; }
int32_t tok_unk(const tok_vocab *v) { return v->unk; }
int32_t tok_sep(const tok_vocab *v) { return v->sep; }
int32_t tok_newline(const tok_vocab *v) { return v->newline; }
bool tok_add_bos(const tok_vocab *v) { return v->add_bos; }
bool tok_add_eos(const tok_vocab *v) { return v->add_eos; }
bool tok_add_sep(const tok_vocab *v) { return v->add_sep; }
bool tok_add_space_prefix(const tok_vocab *v) { return v->add_space_prefix; }

bool tok_is_eog(const tok_vocab *v, int32_t id) {
    if (id < 0) return false;
    return bsearch(&id, v->eog, (size_t)v->n_eog, sizeof *v->eog, cmp_i32) != NULL;
}

const char *tok_text(const tok_vocab *v, int32_t id, size_t *len) {
    if (id < 0 || id >= v->n_vocab) return NULL;
    if (len) *len = v->len[id];
    return v->text[id];
}

float tok_score(const tok_vocab *v, int32_t id) { return id >= 0 && id < v->n_vocab ? v->score[id] : 0.0f; }
int tok_attr(const tok_vocab *v, int32_t id) { return id >= 0 && id < v->n_vocab ? v->attr[id] : 0; }

int32_t tok_find(const tok_vocab *v, const char *text, size_t len) {
    if (len > UINT32_MAX) return TOK_NULL;
    return tok_strmap_get(&v->map, text, (uint32_t)len);
}

const char *tok_piece(const tok_vocab *v, int32_t id, size_t *len) {
    if (id < 0 || id >= v->n_vocab) return NULL;
    if (len) *len = v->piece_len[id];
    return v->piece[id];
}
