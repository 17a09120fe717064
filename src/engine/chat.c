/*
 * chat.c — native chat-template rendering: detection of a model's Jinja
 * tokenizer.chat_template by distinctive substrings (llama.cpp's
 * llm_chat_detect_template order) and renderers for the supported styles
 * (see chat.h for the list and the output of each).
 *
 * Where llama.cpp's built-in renderer and the model's real template differ,
 * the real template's output is reproduced: Qwen3 (think stripping, tool
 * responses, enable_thinking), Qwen2/2.5 (default system prompt), DeepSeek V3
 * (the system prompt is written straight after BOS, several system messages
 * joined by "\n\n"), Gemma (the system text is prefixed to the first user turn
 * untrimmed, followed by "\n\n"). The others follow llama.cpp.
 */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#define DS_EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>" /* <｜end▁of▁sentence｜> */
#define DS_USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"                                     /* <｜User｜> */
#define DS_ASSISTANT "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"                        /* <｜Assistant｜> */

#define QWEN25_SYSTEM "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
#define QWEN2_SYSTEM "You are a helpful assistant."

static const char k_names[] =
    "chatml, qwen3, chatml-nothink, llama3, llama2, deepseek, deepseek2, deepseek3, gemma, phi3";

const char *chat_template_names(void) { return k_names; }

/* ---- string builder --------------------------------------------------------- */
typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_addn(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *q = mr_realloc(b->p, nc);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_add(sbuf *b, const char *s) { sb_addn(b, s, strlen(s)); }

static char *sb_finish(sbuf *b) {
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    if (!b->p) return mr_strdup("");
    return b->p;
}

/* A view of a string slice. */
typedef struct {
    const char *s;
    size_t n;
} slice;

static slice sl(const char *s) { return (slice){s ? s : "", s ? strlen(s) : 0}; }
static void sb_sl(sbuf *b, slice x) { sb_addn(b, x.s, x.n); }

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
/* Python's str.strip() / Jinja's trim (ASCII whitespace). */
static slice trim(slice x) {
    while (x.n && is_ws(x.s[0])) x.s++, x.n--;
    while (x.n && is_ws(x.s[x.n - 1])) x.n--;
    return x;
}
static slice lstrip_nl(slice x) {
    while (x.n && x.s[0] == '\n') x.s++, x.n--;
    return x;
}
static slice rstrip_nl(slice x) {
    while (x.n && x.s[x.n - 1] == '\n') x.n--;
    return x;
}
/* First / last occurrence of a needle inside a slice; NULL if absent. */
static const char *sl_find(slice x, const char *needle) {
    size_t m = strlen(needle);
    if (m > x.n) return NULL;
    for (size_t i = 0; i + m <= x.n; i++)
        if (!memcmp(x.s + i, needle, m)) return x.s + i;
    return NULL;
}
static const char *sl_rfind(slice x, const char *needle) {
    size_t m = strlen(needle);
    if (m > x.n) return NULL;
    for (size_t i = x.n - m + 1; i-- > 0;)
        if (!memcmp(x.s + i, needle, m)) return x.s + i;
    return NULL;
}
static bool sl_starts(slice x, const char *p) { size_t m = strlen(p); return x.n >= m && !memcmp(x.s, p, m); }
static bool sl_ends(slice x, const char *p) { size_t m = strlen(p); return x.n >= m && !memcmp(x.s + x.n - m, p, m); }

static bool role_is(const mr_chat_msg *m, const char *r) { return m->role && !strcmp(m->role, r); }

/* ---- names and detection ------------------------------------------------------- */
static const struct {
    const char *name;
    chat_kind kind;
    bool no_think;
} k_by_name[] = {
    {"chatml", CHAT_CHATML, false},
    {"qwen3", CHAT_QWEN3, false},
    {"chatml-nothink", CHAT_QWEN3, true},
    {"qwen3-nothink", CHAT_QWEN3, true},
    {"llama3", CHAT_LLAMA3, false},
    {"llama2", CHAT_LLAMA2, false},
    {"llama2-sys", CHAT_LLAMA2_SYS, false},
    {"llama2-sys-bos", CHAT_LLAMA2_SYS_BOS, false},
    {"llama2-sys-strip", CHAT_LLAMA2_SYS_STRIP, false},
    {"deepseek", CHAT_DEEPSEEK, false},
    {"deepseek2", CHAT_DEEPSEEK2, false},
    {"deepseek3", CHAT_DEEPSEEK3, false},
    {"gemma", CHAT_GEMMA, false},
    {"phi3", CHAT_PHI3, false},
};

int chat_style_from_name(const char *name, chat_style *out) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; name && i < MR_ARRAY_LEN(k_by_name); i++) {
        if (strcmp(name, k_by_name[i].name) != 0) continue;
        out->kind = k_by_name[i].kind;
        out->no_think = k_by_name[i].no_think;
        return 0;
    }
    mr_seterr("unknown chat template name '%s' (known: %s)", name ? name : "(null)", k_names);
    return -1;
}

const char *chat_style_name(const chat_style *st) {
    if (st->kind == CHAT_QWEN3 && st->no_think) return "chatml-nothink";
    for (size_t i = 0; i < MR_ARRAY_LEN(k_by_name); i++)
        if (k_by_name[i].kind == st->kind && !k_by_name[i].no_think) return k_by_name[i].name;
    return "unknown";
}

int chat_detect(const char *t, chat_style *out) {
    memset(out, 0, sizeof *out);
    if (!t || !*t) {
        mr_seterr("the model has no chat template (tokenizer.chat_template); pass one with "
                  "--chat-template NAME (one of: %s)", k_names);
        return -1;
    }
    slice x = sl(t);
#define HAS(s) (sl_find(x, (s)) != NULL)
    if (HAS("<|im_start|>")) {
        if (HAS("<|im_sep|>") || HAS("<end_of_utterance>")) goto unknown; /* phi-4, SmolVLM */
        if (HAS("</think>")) {
            out->kind = CHAT_QWEN3;
        } else {
            out->kind = CHAT_CHATML;
            if (HAS(QWEN25_SYSTEM)) out->default_system = QWEN25_SYSTEM;
            else if (HAS("system\\nYou are a helpful assistant.<|im_end|>") ||
                     HAS("system\nYou are a helpful assistant.<|im_end|>"))
                out->default_system = QWEN2_SYSTEM;
        }
    } else if (sl_starts(x, "mistral") || HAS("[INST]")) {
        if (HAS("[SYSTEM_PROMPT]") || HAS("' [INST] ' + system_message") || HAS("[AVAILABLE_TOOLS]"))
            goto unknown; /* Mistral v1/v3/v7: not supported */
        if (HAS("content.strip()")) out->kind = CHAT_LLAMA2_SYS_STRIP;
        else if (HAS("bos_token + '[INST]")) out->kind = CHAT_LLAMA2_SYS_BOS;
        else if (HAS("<<SYS>>")) out->kind = CHAT_LLAMA2_SYS;
        else out->kind = CHAT_LLAMA2;
    } else if (HAS("<|assistant|>") && HAS("<|end|>")) {
        out->kind = CHAT_PHI3;
    } else if (HAS("<start_of_turn>")) {
        out->kind = CHAT_GEMMA;
    } else if (HAS("### Instruction:") && HAS("<|EOT|>")) {
        out->kind = CHAT_DEEPSEEK;
    } else if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) {
        out->kind = CHAT_LLAMA3;
    } else if (HAS("'Assistant: ' + message['content'] + eos_token")) {
        out->kind = CHAT_DEEPSEEK2;
    } else if (HAS(DS_ASSISTANT) && HAS(DS_USER) && HAS(DS_EOS)) {
        out->kind = CHAT_DEEPSEEK3;
        out->strip_think = HAS("</think>");
        out->gen_think = HAS(DS_ASSISTANT "<think>\\n") || HAS(DS_ASSISTANT "<think>\n");
    } else {
        goto unknown;
    }
#undef HAS
    return 0;
unknown:
    out->kind = CHAT_UNKNOWN;
    mr_seterr("the model's chat template is not one moerun can render; pass one with "
              "--chat-template NAME (one of: %s)", k_names);
    return -1;
}

/* ---- renderers -------------------------------------------------------------------- */
static void render_chatml(sbuf *b, const chat_style *st, const mr_chat_msg *m, int n, bool add_gen) {
    if (st->default_system && (n == 0 || !role_is(&m[0], "system"))) {
        sb_add(b, "<|im_start|>system\n");
        sb_add(b, st->default_system);
        sb_add(b, "<|im_end|>\n");
    }
    for (int i = 0; i < n; i++) {
        sb_add(b, "<|im_start|>");
        sb_add(b, m[i].role);
        sb_add(b, "\n");
        sb_add(b, m[i].content);
        sb_add(b, "<|im_end|>\n");
    }
    if (add_gen) sb_add(b, "<|im_start|>assistant\n");
}

/* Qwen3's template (the branch without tools). */
static void render_qwen3(sbuf *b, const chat_style *st, const mr_chat_msg *m, int n, bool add_gen) {
    if (n > 0 && role_is(&m[0], "system")) {
        sb_add(b, "<|im_start|>system\n");
        sb_add(b, m[0].content);
        sb_add(b, "<|im_end|>\n");
    }
    /* the last user message that is not a tool response */
    int last_query = n - 1;
    for (int i = n - 1; i >= 0; i--) {
        slice c = sl(m[i].content);
        if (role_is(&m[i], "user") && !(sl_starts(c, "<tool_response>") && sl_ends(c, "</tool_response>"))) {
            last_query = i;
            break;
        }
    }
    for (int i = 0; i < n; i++) {
        slice c = sl(m[i].content);
        if (role_is(&m[i], "user") || (role_is(&m[i], "system") && i > 0)) {
            sb_add(b, "<|im_start|>");
            sb_add(b, m[i].role);
            sb_add(b, "\n");
            sb_sl(b, c);
            sb_add(b, "<|im_end|>\n");
        } else if (role_is(&m[i], "assistant")) {
            slice content = c, reasoning = {"", 0};
            const char *end = sl_find(c, "</think>");
            if (end) {
                const char *last_end = sl_rfind(c, "</think>");
                content = lstrip_nl((slice){last_end + 8, (size_t)(c.s + c.n - (last_end + 8))});
                slice before = rstrip_nl((slice){c.s, (size_t)(end - c.s)});
                const char *open = sl_rfind(before, "<think>");
                if (open) before = (slice){open + 7, (size_t)(before.s + before.n - (open + 7))};
                reasoning = lstrip_nl(before);
            }
            sb_add(b, "<|im_start|>assistant\n");
            if (i > last_query && (i == n - 1 || reasoning.n > 0)) {
                sb_add(b, "<think>\n");
                sb_sl(b, lstrip_nl(rstrip_nl(reasoning)));
                sb_add(b, "\n</think>\n\n");
                sb_sl(b, lstrip_nl(content));
            } else {
                sb_sl(b, content);
            }
            sb_add(b, "<|im_end|>\n");
        } else if (role_is(&m[i], "tool")) {
            if (i == 0 || !role_is(&m[i - 1], "tool")) sb_add(b, "<|im_start|>user");
            sb_add(b, "\n<tool_response>\n");
            sb_sl(b, c);
            sb_add(b, "\n</tool_response>");
            if (i == n - 1 || !role_is(&m[i + 1], "tool")) sb_add(b, "<|im_end|>\n");
        }
        /* a first-position system message was written above; other roles are dropped */
    }
    if (add_gen) {
        sb_add(b, "<|im_start|>assistant\n");
        if (st->no_think) sb_add(b, "<think>\n\n</think>\n\n");
    }
}

static void render_llama2(sbuf *b, chat_kind k, const mr_chat_msg *m, int n, const char *bos, const char *eos) {
    bool sys_ok = k != CHAT_LLAMA2, bos_inside = k == CHAT_LLAMA2_SYS_BOS, strip = k == CHAT_LLAMA2_SYS_STRIP;
    bool inside = true;
    sb_add(b, "[INST] ");
    for (int i = 0; i < n; i++) {
        slice c = strip ? trim(sl(m[i].content)) : sl(m[i].content);
        if (!inside) {
            inside = true;
            if (bos_inside) sb_add(b, bos ? bos : "<s>");
            sb_add(b, "[INST] ");
        }
        if (role_is(&m[i], "system")) {
            if (sys_ok) {
                sb_add(b, "<<SYS>>\n");
                sb_sl(b, c);
                sb_add(b, "\n<</SYS>>\n\n");
            } else {
                sb_sl(b, c);
                sb_add(b, "\n");
            }
        } else if (role_is(&m[i], "user")) {
            sb_sl(b, c);
            sb_add(b, " [/INST]");
        } else {
            sb_sl(b, c);
            sb_add(b, eos ? eos : "</s>");
            inside = false;
        }
    }
}

static void render_llama3(sbuf *b, const mr_chat_msg *m, int n, bool add_gen) {
    for (int i = 0; i < n; i++) {
        sb_add(b, "<|start_header_id|>");
        sb_add(b, m[i].role);
        sb_add(b, "<|end_header_id|>\n\n");
        sb_sl(b, trim(sl(m[i].content)));
        sb_add(b, "<|eot_id|>");
    }
    if (add_gen) sb_add(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void render_deepseek(sbuf *b, const mr_chat_msg *m, int n, bool add_gen) {
    for (int i = 0; i < n; i++) {
        if (role_is(&m[i], "system")) {
            sb_add(b, m[i].content);
        } else if (role_is(&m[i], "user")) {
            sb_add(b, "### Instruction:\n");
            sb_add(b, m[i].content);
            sb_add(b, "\n");
        } else if (role_is(&m[i], "assistant")) {
            sb_add(b, "### Response:\n");
            sb_add(b, m[i].content);
            sb_add(b, "\n<|EOT|>\n");
        }
    }
    if (add_gen) sb_add(b, "### Response:\n");
}

static void render_deepseek2(sbuf *b, const mr_chat_msg *m, int n, bool add_gen, const char *eos) {
    for (int i = 0; i < n; i++) {
        if (role_is(&m[i], "system")) {
            sb_add(b, m[i].content);
            sb_add(b, "\n\n");
        } else if (role_is(&m[i], "user")) {
            sb_add(b, "User: ");
            sb_add(b, m[i].content);
            sb_add(b, "\n\n");
        } else if (role_is(&m[i], "assistant")) {
            sb_add(b, "Assistant: ");
            sb_add(b, m[i].content);
            sb_add(b, eos ? eos : DS_EOS);
        }
    }
    if (add_gen) sb_add(b, "Assistant:");
}

static void render_deepseek3(sbuf *b, const chat_style *st, const mr_chat_msg *m, int n, bool add_gen) {
    bool first_sys = true;
    for (int i = 0; i < n; i++) {
        if (!role_is(&m[i], "system")) continue;
        if (!first_sys) sb_add(b, "\n\n");
        sb_add(b, m[i].content);
        first_sys = false;
    }
    for (int i = 0; i < n; i++) {
        if (role_is(&m[i], "user")) {
            sb_add(b, DS_USER);
            sb_add(b, m[i].content);
        } else if (role_is(&m[i], "assistant")) {
            slice c = sl(m[i].content);
            if (st->strip_think) {
                const char *e = sl_rfind(c, "</think>");
                if (e) c = (slice){e + 8, (size_t)(c.s + c.n - (e + 8))};
            }
            sb_add(b, DS_ASSISTANT);
            sb_sl(b, c);
            sb_add(b, DS_EOS);
        }
    }
    if (add_gen) {
        sb_add(b, DS_ASSISTANT);
        if (st->gen_think) sb_add(b, "<think>\n");
    }
}

static void render_gemma(sbuf *b, const mr_chat_msg *m, int n, bool add_gen) {
    slice sys = {NULL, 0};
    bool pending = false;
    for (int i = 0; i < n; i++) {
        if (role_is(&m[i], "system")) {
            /* Gemma has no system role: its text opens the next user turn */
            sys = sl(m[i].content);
            pending = true;
            continue;
        }
        bool model = role_is(&m[i], "assistant") || role_is(&m[i], "model");
        sb_add(b, "<start_of_turn>");
        sb_add(b, model ? "model" : m[i].role);
        sb_add(b, "\n");
        if (pending && !model) {
            sb_sl(b, sys);
            sb_add(b, "\n\n");
            pending = false;
        }
        sb_sl(b, trim(sl(m[i].content)));
        sb_add(b, "<end_of_turn>\n");
    }
    if (add_gen) sb_add(b, "<start_of_turn>model\n");
}

static void render_phi3(sbuf *b, const mr_chat_msg *m, int n, bool add_gen) {
    for (int i = 0; i < n; i++) {
        sb_add(b, "<|");
        sb_add(b, m[i].role);
        sb_add(b, "|>\n");
        sb_add(b, m[i].content);
        sb_add(b, "<|end|>\n");
    }
    if (add_gen) sb_add(b, "<|assistant|>\n");
}

char *chat_render_style(const chat_style *st, const mr_chat_msg *msgs, int n, bool add_gen,
                        const char *bos_text, const char *eos_text) {
    /* NULL roles / contents are rendered as empty strings */
    mr_chat_msg *m = mr_malloc(sizeof *m * (size_t)(n > 0 ? n : 1));
    if (!m) return NULL;
    for (int i = 0; i < n; i++) {
        m[i].role = msgs[i].role ? msgs[i].role : "";
        m[i].content = msgs[i].content ? msgs[i].content : "";
    }
    sbuf b = {0};
    switch (st->kind) {
    case CHAT_CHATML: render_chatml(&b, st, m, n, add_gen); break;
    case CHAT_QWEN3: render_qwen3(&b, st, m, n, add_gen); break;
    case CHAT_LLAMA2:
    case CHAT_LLAMA2_SYS:
    case CHAT_LLAMA2_SYS_BOS:
    case CHAT_LLAMA2_SYS_STRIP: render_llama2(&b, st->kind, m, n, bos_text, eos_text); break;
    case CHAT_LLAMA3: render_llama3(&b, m, n, add_gen); break;
    case CHAT_DEEPSEEK: render_deepseek(&b, m, n, add_gen); break;
    case CHAT_DEEPSEEK2: render_deepseek2(&b, m, n, add_gen, eos_text); break;
    case CHAT_DEEPSEEK3: render_deepseek3(&b, st, m, n, add_gen); break;
    case CHAT_GEMMA: render_gemma(&b, m, n, add_gen); break;
    case CHAT_PHI3: render_phi3(&b, m, n, add_gen); break;
    default:
        free(m);
        mr_seterr("chat template style %d cannot be rendered; pass --chat-template NAME (one of: %s)",
                  (int)st->kind, k_names);
        return NULL;
    }
    free(m);
    return sb_finish(&b);
}

char *chat_render(const char *template_text, const char *tmpl_name, const mr_chat_msg *msgs, int n,
                  bool add_gen, const char *bos_text, const char *eos_text) {
    if (n < 0 || (n > 0 && !msgs)) {
        mr_seterr("chat template: bad message list");
        return NULL;
    }
    chat_style st;
    if (tmpl_name && *tmpl_name) {
        bool is_name = true;
        for (const char *p = tmpl_name; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_')) is_name = false;
        if (is_name) {
            if (chat_style_from_name(tmpl_name, &st) != 0) {
                mr_seterr("unknown chat template '%s'; pass --chat-template NAME with one of: %s", tmpl_name, k_names);
                return NULL;
            }
        } else if (chat_detect(tmpl_name, &st) != 0) {
            mr_seterr("the chat template given is not one moerun can render; pass --chat-template NAME "
                      "with one of: %s", k_names);
            return NULL;
        }
    } else if (chat_detect(template_text, &st) != 0) {
        return NULL;
    }
    return chat_render_style(&st, msgs, n, add_gen, bos_text, eos_text);
}
