/*
 * chat_apply.c — mr_chat_apply: renders messages with the model's chat
 * template (or a name / text given by the caller) through chat_render().
 * Kept apart from chat.c so that the renderer links without the model code.
 */
#include <stdlib.h>

#include "base/base.h"
#include "chat.h"
#include "gguf/gguf.h"
#include "model/model.h"

const char *model_chat_template(const mr_model *m) {
    return m && m->g ? gguf_get_str(m->g, "tokenizer.chat_template") : NULL;
}

/* Text of a special token (BOS / EOS) or NULL when the vocab has none. */
static char *token_text(const mr_model *m, mr_token t) {
    if (t < 0) return NULL;
    char buf[128];
    int n = mr_token_to_piece(m, t, buf, (int)sizeof buf - 1, true);
    if (n <= 0 || n >= (int)sizeof buf) return NULL;
    buf[n] = 0;
    return mr_strdup(buf);
}

char *mr_chat_apply(const mr_model *m, const char *tmpl, const mr_chat_msg *msgs, int n,
                    bool add_generation_prompt) {
    const char *text = m ? model_chat_template(m) : NULL;
    char *bos = m ? token_text(m, mr_token_bos(m)) : NULL;
    char *eos = m ? token_text(m, mr_token_eos(m)) : NULL;
    char *out = chat_render(text, tmpl, msgs, n, add_generation_prompt, bos, eos);
    free(bos);
    free(eos);
    return out;
}
