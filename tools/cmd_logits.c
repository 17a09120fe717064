/*
 * cmd_logits.c — `moerun logits`: write logits in the golden-fixture JSON
 * shape (../shared/fixtures/README.md): the top 32 [id, logit] of every
 * prompt position and N greedy tokens decoded one at a time through the cache.
 *
 *   moerun logits -m MODEL (--ids 1,2,3 | -p TEXT | --golden CASE.json) [-n N]
 *                 [-c N] [-ctk T -ctv T] [-fa on|off] [-t N] --json OUT
 *
 * --golden takes the prompt tokens (and N, from its greedy list) from a golden
 * JSON and, with --compare, prints cmpgolden.py's statistics against it.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "base/base.h"
#include "engine/golden.h"
#include "moerun.h"

typedef struct {
    const char *ids, *golden, *json;
    bool compare;
    int top_k;
} logits_opts;

static int logits_flag(void *ud, int argc, char **argv, int *i) {
    logits_opts *o = ud;
    const char *a = argv[*i];
    if (!strcmp(a, "--ids") || !strcmp(a, "--golden") || !strcmp(a, "--json") || !strcmp(a, "--top-k")) {
        const char *v = args_value(argc, argv, i);
        if (!v) return -1;
        if (!strcmp(a, "--ids")) o->ids = v;
        else if (!strcmp(a, "--golden")) o->golden = v;
        else if (!strcmp(a, "--json")) o->json = v;
        else return args_int("--top-k", v, 1, 256, &o->top_k) == 0 ? 1 : -1;
        return 1;
    }
    if (!strcmp(a, "--compare")) {
        o->compare = true;
        return 1;
    }
    return 0;
}

/* Parse "1,2,3" into a malloc'd array. */
static int parse_ids(const char *s, mr_token **out) {
    int cap = 16, n = 0;
    mr_token *t = malloc(sizeof(mr_token) * (size_t)cap);
    while (t && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT32_MAX) {
            free(t);
            return -1;
        }
        if (n == cap) {
            cap *= 2;
            mr_token *nt = realloc(t, sizeof(mr_token) * (size_t)cap);
            if (!nt) break;
            t = nt;
        }
        t[n++] = (mr_token)v;
        s = end;
        if (*s == ',') s++;
        else if (*s) {
            free(t);
            return -1;
        }
    }
    *out = t;
    return n;
}

int cmd_logits(int argc, char **argv) {
    logits_opts o = {.top_k = 32};
    mr_args a;
    args_init(&a);
    a.ctx.n_ctx = 4096;
    const args_cmd cmd = {"logits", "-m MODEL (--ids 1,2,3 | -p TEXT | --golden CASE.json) --json OUT [options]",
                          "  --ids LIST      prompt token ids, comma separated\n"
                          "  --golden FILE   take the prompt (and -n) from a golden JSON\n"
                          "  --compare       with --golden: print cmpgolden statistics against it\n"
                          "  --json FILE     output file ('-' for stdout)\n"
                          "  --top-k N       entries per position (default 32)\n",
                          logits_flag, &o};
    int rc = args_parse(&a, argc, argv, ARGS_MODEL | ARGS_CTX | ARGS_PROMPT | ARGS_NPREDICT, &cmd);
    if (rc >= 0) return rc;
    rc = 1;
    mr_model *m = NULL;
    mr_token *toks = NULL;
    json_t *ref = NULL, *out = NULL;
    int n = 0, n_greedy = a.set_n_predict ? a.n_predict : 16;
    if (!o.json && !o.compare) {
        rc = args_error(&cmd, "--json OUT is required");
        goto done;
    }
    if (!!o.ids + !!o.golden + !!a.prompt + !!a.prompt_file != 1) {
        rc = args_error(&cmd, "give exactly one of --ids, -p/-f, --golden");
        goto done;
    }
    if (o.ids && (n = parse_ids(o.ids, &toks)) <= 0) {
        rc = args_error(&cmd, "--ids: '%s' is not a comma-separated list of token ids", o.ids);
        goto done;
    }
    if (o.golden) {
        json_error_t je;
        ref = json_load_file(o.golden, 0, &je);
        const json_t *jt = ref ? json_object_get(ref, "tokens") : NULL;
        if (!json_is_array(jt)) {
            fprintf(stderr, "moerun logits: %s: %s\n", o.golden, ref ? "no 'tokens' array" : je.text);
            goto done;
        }
        n = (int)json_array_size(jt);
        toks = malloc(sizeof(mr_token) * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) toks[i] = (mr_token)json_integer_value(json_array_get(jt, i));
        if (!a.set_n_predict) n_greedy = (int)json_array_size(json_object_get(ref, "greedy"));
    }
    m = mr_model_load(&a.model);
    if (!m) {
        fprintf(stderr, "moerun logits: %s\n", mr_last_error());
        goto done;
    }
    if (a.prompt || a.prompt_file) {
        char *text = args_prompt_text(&a, &cmd);
        if (!text) goto done;
        int cap = (int)strlen(text) + 8;
        toks = malloc(sizeof(mr_token) * (size_t)cap);
        n = mr_tokenize(m, text, strlen(text), toks, cap, true, false);
        free(text);
        if (n < 0 || n > cap) {
            fprintf(stderr, "moerun logits: tokenization failed: %s\n", mr_last_error());
            goto done;
        }
    }
    if (n_greedy < 0) n_greedy = 16;
    out = golden_run(m, &a.ctx, toks, n, n_greedy, o.top_k, NULL);
    if (!out) {
        fprintf(stderr, "moerun logits: %s\n", mr_last_error());
        goto done;
    }
    if (o.json) {
        int jr = !strcmp(o.json, "-") ? json_dumpf(out, stdout, JSON_COMPACT) : json_dump_file(out, o.json, JSON_COMPACT);
        if (jr) {
            fprintf(stderr, "moerun logits: cannot write %s\n", o.json);
            goto done;
        }
    }
    if (o.compare && ref) {
        golden_stats s;
        if (golden_compare(ref, out, &s)) {
            fprintf(stderr, "moerun logits: %s\n", mr_last_error());
            goto done;
        }
        int checked;
        int bad = golden_greedy_check(ref, out, 0.5, 0, &checked);
        printf("top1=%.4f med=%.4f p80=%.4f kl=%.4f greedy=%s (%d steps checked)\n", s.top1, s.med, s.p80, s.kl,
               bad < 0 ? "ok" : "MISMATCH", checked);
    }
    rc = 0;
done:
    json_decref(ref);
    json_decref(out);
    free(toks);
    mr_model_free(m);
    args_free(&a);
    return rc;
}
