/*
 * bench_tok.c — tokenizer throughput: tokenizes a text file (or a built-in
 * mix) with each vocabulary given and prints MB/s, cold (first pass, empty
 * word cache) and warm (second pass).
 *   cc -O2 -I include -I src dev/bench_tok.c build-tok/libmoerun_core.a -lpcre2-8 -ljansson -lpthread -lm
 *   ./a.out TEXT_FILE VOCAB.gguf...
 */
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "gguf/gguf.h"
#include "tok/tok.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TEXT_FILE VOCAB.gguf...\n", argv[0]);
        return 2;
    }
    size_t len;
    char *text = mr_read_file(argv[1], &len);
    if (!text) {
        fprintf(stderr, "%s\n", mr_geterr());
        return 1;
    }
    for (int a = 2; a < argc; a++) {
        gguf_ctx *g = gguf_open(argv[a]);
        double t0 = mr_time_s();
        tok_vocab *v = g ? tok_vocab_load(g, true) : NULL;
        double tl = mr_time_s() - t0;
        if (g) gguf_close(g);
        if (!v) {
            fprintf(stderr, "%s\n", mr_geterr());
            continue;
        }
        int32_t *ids = malloc(sizeof *ids * (len + 16));
        double t1 = mr_time_s();
        int n = tok_encode(v, text, len, ids, (int)len + 16, false, false);
        double t2 = mr_time_s();
        int n2 = tok_encode(v, text, len, ids, (int)len + 16, false, false);
        double t3 = mr_time_s();
        printf("%-40s load %.2fs  %d tokens  cold %.1f MB/s  warm %.1f MB/s%s\n", argv[a], tl, n,
               len / 1e6 / (t2 - t1), len / 1e6 / (t3 - t2), n == n2 ? "" : "  MISMATCH");
        free(ids);
        tok_vocab_free(v);
    }
    free(text);
    return 0;
}
