/*
 * fuzz_chat.c — libFuzzer target for chat templates (src/engine/chat.c):
 * detection of a Jinja template text by its substrings, template names, and
 * the native renderers with fuzzed roles and contents.
 *
 * Input: byte 0 holds flags (bit 0 add_gen, bit 1 pass the template as the
 * --chat-template argument instead of the model's text, bit 2 custom BOS/EOS
 * texts, bit 3 a NULL role/content in the first message); the rest is split
 * on NUL bytes: template text, then role, content, role, content, ... (at most
 * 64 messages). Checks: no crash, leak or hang; failure sets a message; a
 * detected style renders the same through chat_render and chat_render_style;
 * a style's canonical name maps back to it; every style renders every message
 * list, and the (trimmed) text of each user message appears in the output.
 */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "engine/chat.h"

static volatile uint64_t sink;

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* The user messages' trimmed contents appear in the rendering. */
static void check_users(const char *out, const mr_chat_msg *m, int n) {
    size_t on = strlen(out);
    for (int i = 0; i < n; i++) {
        if (!m[i].role || strcmp(m[i].role, "user") || !m[i].content) continue;
        const char *s = m[i].content;
        size_t k = strlen(s);
        while (k && is_ws(*s)) s++, k--;
        while (k && is_ws(s[k - 1])) k--;
        if (k && !memmem(out, on, s, k)) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    uint8_t flags = data[0];
    /* NUL-terminated copy of the rest: the pieces point into it */
    char *buf = malloc(size);
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;
    const char *end = buf + size - 1;

    const char *tmpl = buf;
    const char *p = buf + strlen(buf) + 1;
    mr_chat_msg msgs[64];
    int n = 0;
    while (p < end && n < 64) {
        const char *role = p;
        p += strlen(p) + 1;
        const char *content = p < end ? p : "";
        if (p < end) p += strlen(p) + 1;
        msgs[n].role = (char *)role;
        msgs[n].content = (char *)content;
        n++;
    }
    if ((flags & 8) && n > 0) {
        if (flags & 16) msgs[0].role = NULL;
        else msgs[0].content = NULL;
    }
    bool add_gen = flags & 1;
    const char *bos = (flags & 4) ? "<BOS>" : NULL, *eos = (flags & 4) ? "<EOS>" : NULL;

    mr_clearerr();
    char *out = (flags & 2) ? chat_render(NULL, tmpl, msgs, n, add_gen, bos, eos)
                            : chat_render(tmpl, NULL, msgs, n, add_gen, bos, eos);
    chat_style st;
    int det = chat_detect(tmpl, &st);
    if (!out) {
        const char *e = mr_geterr();
        if (!e || !e[0]) abort();
        /* the model's text path fails exactly when detection fails */
        if (!(flags & 2) && det == 0) abort();
    } else {
        check_users(out, msgs, n);
        if (!(flags & 2)) {
            if (det != 0) abort();
            char *again = chat_render_style(&st, msgs, n, add_gen, bos, eos);
            if (!again || strcmp(again, out)) abort();
            free(again);
        }
        sink += strlen(out);
        free(out);
    }
    if (det == 0) {
        chat_style back;
        if (chat_style_from_name(chat_style_name(&st), &back) != 0 || back.kind != st.kind ||
            back.no_think != st.no_think)
            abort();
    } else if (st.kind != CHAT_UNKNOWN) abort();

    /* every style renders every message list */
    for (int k = CHAT_CHATML; k <= CHAT_PHI3; k++) {
        chat_style s = {.kind = (chat_kind)k, .no_think = flags & 32, .strip_think = flags & 64,
                        .gen_think = flags & 128, .default_system = (flags & 32) ? "Default system." : NULL};
        char *o = chat_render_style(&s, msgs, n, add_gen, bos, eos);
        if (!o) abort();
        check_users(o, msgs, n);
        sink += strlen(o);
        free(o);
    }
    /* an out-of-range style is an error, not a crash */
    chat_style bad = {.kind = (chat_kind)99};
    char *o = chat_render_style(&bad, msgs, n, add_gen, bos, eos);
    if (o) abort();
    free(buf);
    return 0;
}
