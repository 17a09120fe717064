/*
 * chat.h — chat templates rendered natively (no Jinja interpreter).
 *
 * A model's tokenizer.chat_template (Jinja) is recognised by distinctive
 * substrings, as llama.cpp's llm_chat_detect_template does, and rendered by C
 * code that reproduces the template's output for plain text messages (roles
 * system / user / assistant, plus "tool" for ChatML). Supported styles and the
 * names accepted for them (--chat-template NAME):
 *
 *   chatml          <|im_start|>ROLE\nCONTENT<|im_end|>\n ... <|im_start|>assistant\n
 *                   (Qwen2 / Qwen2.5: their default system prompt is added when the
 *                   model's template has one and the chat has no system message)
 *   qwen3           ChatML as Qwen3's template: past assistant turns lose their
 *                   <think>...</think> part; tool results wrapped in <tool_response>
 *   chatml-nothink  qwen3 with enable_thinking=false: the generation prompt is
 *   (qwen3-nothink) followed by an empty "<think>\n\n</think>\n\n"
 *   llama3          <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>
 *   llama2          [INST] ... [/INST] (variants llama2-sys, llama2-sys-bos,
 *                   llama2-sys-strip as llama.cpp)
 *   deepseek        DeepSeek Coder: ### Instruction:\n ... ### Response:\n
 *   deepseek2       DeepSeek V2 / LLM chat: User: ...\n\nAssistant: ...EOS
 *   deepseek3       DeepSeek V3 / R1: SYSTEM<｜User｜>...<｜Assistant｜>...<｜end▁of▁sentence｜>
 *   gemma           <start_of_turn>user\n...<end_of_turn>\n, system merged into the
 *                   first user turn, "model" for the assistant role
 *   phi3            <|ROLE|>\nCONTENT<|end|>\n ... <|assistant|>\n
 *
 * The rendered text never holds the BOS token: tokenize it with add_special
 * (the vocabulary adds BOS where it should) and parse_special.
 */
#ifndef MR_CHAT_H
#define MR_CHAT_H

#include <stdbool.h>

#include "moerun.h"

typedef enum {
    CHAT_UNKNOWN = 0,
    CHAT_CHATML,
    CHAT_QWEN3,
    CHAT_LLAMA2,
    CHAT_LLAMA2_SYS,
    CHAT_LLAMA2_SYS_BOS,
    CHAT_LLAMA2_SYS_STRIP,
    CHAT_LLAMA3,
    CHAT_DEEPSEEK,
    CHAT_DEEPSEEK2,
    CHAT_DEEPSEEK3,
    CHAT_GEMMA,
    CHAT_PHI3,
} chat_kind;

typedef struct {
    chat_kind kind;
    bool no_think;              /* qwen3: enable_thinking = false */
    bool strip_think;           /* deepseek3 (R1): drop <think>..</think> of past answers */
    bool gen_think;             /* deepseek3 (R1 0528+): generation prompt opens <think>\n */
    const char *default_system; /* chatml: system prompt used when none is given */
} chat_style;

/* The accepted template names, comma separated (for messages). */
const char *chat_template_names(void);

/* Style for a template name (case-sensitive, see the list above). 0, or -1
 * with an error listing the names. */
int chat_style_from_name(const char *name, chat_style *out);

/* Style for a Jinja template text by its distinctive substrings. 0, or -1
 * (CHAT_UNKNOWN) with an error saying how to pass a template. */
int chat_detect(const char *template_text, chat_style *out);

/* Canonical name of a style ("qwen3", "chatml-nothink", ...). */
const char *chat_style_name(const chat_style *st);

/* Render messages in a style. bos_text / eos_text: the vocabulary's BOS / EOS
 * token texts where a style writes them inside the history (llama2-sys-bos,
 * llama2, deepseek2); NULL for the usual "<s>", "</s>", "<｜end▁of▁sentence｜>".
 * Returns a malloc'd string or NULL (out of memory). */
char *chat_render_style(const chat_style *st, const mr_chat_msg *msgs, int n, bool add_gen,
                        const char *bos_text, const char *eos_text);

/* Render with a template name or text: tmpl_name (a name from the list above,
 * or a Jinja text to detect) wins over template_text (the model's
 * tokenizer.chat_template). Both NULL, or a template that is not recognised:
 * NULL with an error that says to pass --chat-template NAME and lists the names. */
char *chat_render(const char *template_text, const char *tmpl_name, const mr_chat_msg *msgs, int n,
                  bool add_gen, const char *bos_text, const char *eos_text);

/* The model's tokenizer.chat_template, or NULL when it has none (defined in
 * src/engine/chat_apply.c from the model's gguf_ctx; used by mr_chat_apply). */
const char *model_chat_template(const mr_model *m);

#endif
