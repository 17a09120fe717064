/*
 * gen.c — helpers shared by run, chat and perplexity (see gen.h).
 */
#include "gen.h"

#include <stdlib.h>
#include <string.h>

#include "base/base.h"

mr_token *gen_tokenize(const mr_model *m, const char *text, bool add_special, bool parse_special, int *n) {
    size_t len = strlen(text);
    int cap = (int)MR_MIN(len + 16, (size_t)1 << 30);
    mr_token *t = mr_malloc(sizeof *t * (size_t)cap);
    if (!t) return NULL;
    int k = mr_tokenize(m, text, len, t, cap, add_special, parse_special);
    if (k > cap) {
        mr_token *t2 = mr_realloc(t, sizeof *t * (size_t)k);
        if (!t2) {
            free(t);
            return NULL;
        }
        t = t2;
        cap = k;
        k = mr_tokenize(m, text, len, t, cap, add_special, parse_special);
    }
    if (k < 0 || k > cap) {
        if (k > cap) mr_seterr("tokenizer: token count changed between calls");
        free(t);
        return NULL;
    }
    *n = k;
    return t;
}

int gen_decode(mr_ctx *c, const mr_token *toks, int n, int pos0, int n_batch) {
    if (n_batch <= 0) n_batch = 512;
    int32_t *pos = mr_malloc(sizeof *pos * (size_t)MR_MIN(n, n_batch) + 1);
    if (!pos) return -1;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i += n_batch) {
        int nb = MR_MIN(n_batch, n - i);
        for (int k = 0; k < nb; k++) pos[k] = pos0 + i + k;
        mr_batch b = {.n_tokens = nb, .token = toks + i, .pos = pos, .seq = NULL, .logits = NULL};
        rc = mr_decode(c, &b);
    }
    free(pos);
    return rc;
}

size_t utf8_complete_len(const unsigned char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char b = s[n - k];
        if ((b & 0xC0) == 0x80) continue; /* continuation byte: look further back */
        size_t need = b >= 0xF8 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
        return need > k ? n - k : n;
    }
    return n; /* only continuation bytes (invalid) or empty: nothing to wait for */
}

size_t utf8_out_put(utf8_out *u, const char *p, size_t n, FILE *f) {
    /* the held bytes first: complete them from the new piece */
    size_t used = 0, written = 0;
    while (u->n_held > 0 && u->n_held < 4 && used < n) {
        u->held[u->n_held++] = (unsigned char)p[used++];
        size_t c = utf8_complete_len(u->held, (size_t)u->n_held);
        if (c == (size_t)u->n_held || u->n_held == 4) {
            fwrite(u->held, 1, (size_t)u->n_held, f);
            written += (size_t)u->n_held;
            u->n_held = 0;
        }
    }
    if (used == n) return written;
    const unsigned char *q = (const unsigned char *)p + used;
    size_t m = n - used, c = utf8_complete_len(q, m);
    fwrite(q, 1, c, f);
    written += c;
    memcpy(u->held, q + c, m - c);
    u->n_held = (int)(m - c);
    return written;
}

void utf8_out_flush(utf8_out *u, FILE *f) {
    if (u->n_held) fwrite(u->held, 1, (size_t)u->n_held, f);
    u->n_held = 0;
}

char *gen_piece(const mr_model *m, mr_token t, bool special, int *len) {
    char small[256];
    int n = mr_token_to_piece(m, t, small, (int)sizeof small, special);
    if (n < 0) {
        mr_seterr("invalid token id %d", (int)t);
        return NULL;
    }
    char *s = mr_malloc((size_t)n + 1);
    if (!s) return NULL;
    if (n <= (int)sizeof small) memcpy(s, small, (size_t)n);
    else if (mr_token_to_piece(m, t, s, n, special) != n) {
        free(s);
        mr_seterr("token %d: piece length changed", (int)t);
        return NULL;
    }
    s[n] = 0;
    *len = n;
    return s;
}

volatile sig_atomic_t gen_interrupted = 0;

static void on_sigint(int sig) {
    (void)sig;
    gen_interrupted = 1;
}

void gen_sigint_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: reads return EINTR */
    sigaction(SIGINT, &sa, NULL);
}
