/*
 * cmd_tokenize.c — `moerun tokenize -m MODEL.gguf (-p TEXT | -f FILE) [--ids]
 * [--no-special] [--parse-special] [--allow-unknown-pre]`: print the tokens of
 * a text with the model's vocabulary (works on vocabulary-only GGUF files).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "gguf/gguf.h"
#include "tok/tok.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: moerun tokenize -m MODEL.gguf (-p TEXT | -f FILE) [options]\n"
            "  Tokenize a text with the vocabulary of a GGUF model (or vocabulary-only file)\n"
            "  and print one token per line: id and quoted piece.\n"
            "  -m FILE               model or vocabulary GGUF\n"
            "  -p TEXT               text to tokenize\n"
            "  -f FILE               read the text from a file\n"
            "  --ids                 print only the ids, space separated, on one line\n"
            "  --no-special          do not add BOS/EOS\n"
            "  --parse-special       recognise control-token texts such as <|im_start|>\n"
            "  --allow-unknown-pre   use the 'default' pre-tokenizer for an unknown tokenizer.ggml.pre\n");
}

/* Print a piece quoted: printable ASCII and whole UTF-8 characters as they are,
 * \n \r \t \\ \' escaped, other bytes as \xNN. */
static void print_quoted(const char *p, int n) {
    putchar('\'');
    for (int i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        int k = tok_utf8_valid_len((const unsigned char *)p + i, (size_t)(n - i));
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c == '\'') fputs("\\'", stdout);
        else if (c >= 0x20 && c < 0x7F) putchar(c);
        else if (k > 1) {
            fwrite(p + i, 1, (size_t)k, stdout);
            i += k;
            continue;
        } else printf("\\x%02x", c);
        i++;
    }
    putchar('\'');
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *file = NULL;
    bool ids_only = false, add_special = true, parse_special = false, allow_unknown = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "-p") || !strcmp(a, "--prompt") ||
                   !strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moerun tokenize: %s needs a value\n", a);
                return 2;
            }
            const char *val = argv[++i];
            if (a[1] == 'm' || !strcmp(a, "--model")) model = val;
            else if (a[1] == 'p' || !strcmp(a, "--prompt")) prompt = val;
            else file = val;
        } else if (!strcmp(a, "--ids")) ids_only = true;
        else if (!strcmp(a, "--no-special")) add_special = false;
        else if (!strcmp(a, "--parse-special")) parse_special = true;
        else if (!strcmp(a, "--allow-unknown-pre")) allow_unknown = true;
        else {
            fprintf(stderr, "moerun tokenize: unknown argument '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "moerun tokenize: -m MODEL.gguf is required (see --help)\n");
        return 2;
    }
    if (!prompt == !file) {
        fprintf(stderr, "moerun tokenize: give exactly one of -p TEXT or -f FILE (see --help)\n");
        return 2;
    }
    char *text = NULL;
    size_t len;
    if (file) {
        text = mr_read_file(file, &len);
        if (!text) {
            fprintf(stderr, "moerun tokenize: %s\n", mr_geterr());
            return 1;
        }
    } else {
        len = strlen(prompt);
    }
    const char *t = text ? text : prompt;
    gguf_ctx *g = gguf_open(model);
    tok_vocab *v = g ? tok_vocab_load(g, allow_unknown) : NULL;
    if (g) gguf_close(g);
    if (!v) {
        fprintf(stderr, "moerun tokenize: %s\n", mr_geterr());
        free(text);
        return 1;
    }
    int n = tok_encode(v, t, len, NULL, 0, add_special, parse_special);
    int32_t *ids = n >= 0 ? malloc(sizeof *ids * (size_t)(n + 1)) : NULL;
    if (n < 0 || !ids || tok_encode(v, t, len, ids, n, add_special, parse_special) != n) {
        fprintf(stderr, "moerun tokenize: %s\n", n < 0 ? mr_geterr() : "out of memory");
        free(ids);
        free(text);
        tok_vocab_free(v);
        return 1;
    }
    if (ids_only) {
        for (int i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
        putchar('\n');
    } else {
        for (int i = 0; i < n; i++) {
            size_t pl;
            const char *p = tok_piece(v, ids[i], &pl);
            printf("%6d ", ids[i]);
            print_quoted(p, (int)pl);
            putchar('\n');
        }
    }
    free(ids);
    free(text);
    tok_vocab_free(v);
    return fflush(stdout) == 0 ? 0 : 1;
}
