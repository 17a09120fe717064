/*
 * ab_buf.c — the growable text buffer the ab/soak reports and charts are
 * written into, with XML/HTML escaping. An allocation failure sets b->oom and
 * turns later writes into no-ops; ab_buf_take() then returns NULL.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ab/ab.h"
#include "base/base.h"

/* Make room for k more bytes plus the NUL. */
static bool grow(ab_buf *b, size_t k) {
    if (b->oom) return false;
    if (b->n + k + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + k + 1) cap *= 2;
    char *s = mr_realloc(b->s, cap);
    if (!s) {
        b->oom = true;
        return false;
    }
    b->s = s;
    b->cap = cap;
    return true;
}

void ab_putn(ab_buf *b, const char *s, size_t n) {
    if (!grow(b, n)) return;
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

void ab_puts(ab_buf *b, const char *s) { ab_putn(b, s, strlen(s)); }

void ab_printf(ab_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0 || !grow(b, (size_t)k)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

/* Escapes the five XML specials; drops control characters other than tab and
 * newline (invalid in XML 1.0). */
void ab_esc(ab_buf *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': ab_puts(b, "&amp;"); break;
        case '<': ab_puts(b, "&lt;"); break;
        case '>': ab_puts(b, "&gt;"); break;
        case '"': ab_puts(b, "&quot;"); break;
        case '\'': ab_puts(b, "&#39;"); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t' || *s == '\n') ab_putn(b, s, 1);
        }
    }
}

void ab_buf_free(ab_buf *b) {
    free(b->s);
    *b = (ab_buf){0};
}

char *ab_buf_take(ab_buf *b) {
    if (b->oom) {
        ab_buf_free(b);
        return NULL;
    }
    if (!b->s) return mr_strdup("");
    char *s = b->s;
    *b = (ab_buf){0};
    return s;
}
