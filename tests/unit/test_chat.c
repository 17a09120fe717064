/*
 * test_chat.c — chat templates: detection of the real Qwen3 template (from the
 * qwen3 vocab fixture) and of representative fragments of the others, and
 * exact rendered strings. The Qwen3 expectations are what the template itself
 * renders under Jinja2 (trim_blocks, lstrip_blocks, as transformers does).
 */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "check.h"
#include "engine/chat.h"
#include "gguf/gguf.h"

#define DS_EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define DS_USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define DS_ASSISTANT "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"

static const mr_chat_msg k_conv[] = {
    {"system", "You are helpful."},
    {"user", "Hi"},
    {"assistant", "Hello!"},
    {"user", "How are you?"},
};

/* Render by name and compare. */
static void expect_name(const char *name, const mr_chat_msg *m, int n, bool gen, const char *want) {
    char *got = chat_render(NULL, name, m, n, gen, NULL, NULL);
    CHECK(got && !strcmp(got, want), "%s:\n got  [%s]\n want [%s]", name, got ? got : mr_geterr(), want);
    free(got);
}

static void expect_text(const char *what, const char *tmpl_text, const char *name, const mr_chat_msg *m, int n,
                        bool gen, const char *want) {
    char *got = chat_render(tmpl_text, name, m, n, gen, NULL, NULL);
    CHECK(got && !strcmp(got, want), "%s:\n got  [%s]\n want [%s]", what, got ? got : mr_geterr(), want);
    free(got);
}

static chat_kind detect(const char *t) {
    chat_style st;
    return chat_detect(t, &st) == 0 ? st.kind : CHAT_UNKNOWN;
}

static void test_names(void) {
    expect_name("chatml", k_conv, 4, true,
                "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n"
                "<|im_start|>assistant\n");
    expect_name("chatml", k_conv + 1, 1, false, "<|im_start|>user\nHi<|im_end|>\n");
    expect_name("llama3", k_conv, 4, true,
                "<|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n");
    /* llama3 trims contents */
    mr_chat_msg sp[] = {{"user", "  padded \n"}};
    expect_name("llama3", sp, 1, false, "<|start_header_id|>user<|end_header_id|>\n\npadded<|eot_id|>");
    expect_name("deepseek", k_conv, 4, true,
                "You are helpful.### Instruction:\nHi\n### Response:\nHello!\n<|EOT|>\n"
                "### Instruction:\nHow are you?\n### Response:\n");
    expect_name("deepseek2", k_conv, 4, true,
                "You are helpful.\n\nUser: Hi\n\nAssistant: Hello!" DS_EOS "User: How are you?\n\nAssistant:");
    expect_name("deepseek3", k_conv, 4, true,
                "You are helpful." DS_USER "Hi" DS_ASSISTANT "Hello!" DS_EOS DS_USER "How are you?" DS_ASSISTANT);
    /* several system messages are joined by a blank line at the start */
    mr_chat_msg two_sys[] = {{"system", "A"}, {"user", "u"}, {"system", "B"}};
    expect_name("deepseek3", two_sys, 3, true, "A\n\nB" DS_USER "u" DS_ASSISTANT);
    expect_name("gemma", k_conv, 4, true,
                "<start_of_turn>user\nYou are helpful.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
                "<start_of_turn>user\nHow are you?<end_of_turn>\n<start_of_turn>model\n");
    expect_name("gemma", k_conv + 1, 1, true, "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
    expect_name("llama2", k_conv, 4, true,
                "[INST] You are helpful.\nHi [/INST]Hello!</s>[INST] How are you? [/INST]");
    expect_name("llama2-sys", k_conv, 4, true,
                "[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi [/INST]Hello!</s>[INST] How are you? [/INST]");
    expect_name("llama2-sys-bos", k_conv, 4, true,
                "[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi [/INST]Hello!</s><s>[INST] How are you? [/INST]");
    expect_name("phi3", k_conv + 1, 2, true, "<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|assistant|>\n");
    /* the vocabulary's EOS text replaces the default where the template writes eos_token */
    char *r = chat_render(NULL, "deepseek2", k_conv + 1, 2, false, "<B>", "<E>");
    CHECK(r && !strcmp(r, "User: Hi\n\nAssistant: Hello!<E>"), "deepseek2 eos text: %s", r ? r : "NULL");
    free(r);
    /* empty message list */
    expect_name("chatml", NULL, 0, true, "<|im_start|>assistant\n");
    /* NULL content renders as empty */
    mr_chat_msg nul[] = {{"user", NULL}};
    expect_name("chatml", nul, 1, false, "<|im_start|>user\n<|im_end|>\n");
}

static void test_errors(void) {
    char *r = chat_render(NULL, "vicuna", k_conv, 4, true, NULL, NULL);
    CHECK(!r, "unknown name rejected");
    CHECK(strstr(mr_geterr(), "--chat-template") && strstr(mr_geterr(), "chatml") && strstr(mr_geterr(), "vicuna"),
          "message names the flag, the known names and the bad one: %s", mr_geterr());
    free(r);
    r = chat_render(NULL, NULL, k_conv, 4, true, NULL, NULL);
    CHECK(!r && strstr(mr_geterr(), "--chat-template") && strstr(mr_geterr(), "no chat template"),
          "no template: %s", mr_geterr());
    free(r);
    r = chat_render("{% for m in messages %}{{ m.content }}{% endfor %}", NULL, k_conv, 4, true, NULL, NULL);
    CHECK(!r && strstr(mr_geterr(), "--chat-template") && strstr(mr_geterr(), "deepseek3"),
          "unrecognised template: %s", mr_geterr());
    free(r);
    /* a name wins over the model's template */
    r = chat_render("{{ garbage }}", "chatml", k_conv + 1, 1, false, NULL, NULL);
    CHECK(r && !strcmp(r, "<|im_start|>user\nHi<|im_end|>\n"), "name overrides text");
    free(r);
    /* a Jinja text given as tmpl is detected */
    r = chat_render(NULL, "{% for message in messages %}<start_of_turn>{{ message['role'] }}{% endfor %}",
                    k_conv + 1, 1, true, NULL, NULL);
    CHECK(r && !strcmp(r, "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"), "text as tmpl");
    free(r);
}

static void test_detect_fragments(void) {
    CHECK(detect("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                 "'<|im_end|>' + '\\n'}}{% endfor %}") == CHAT_CHATML, "chatml");
    CHECK(detect("{{- '<|im_start|>system\\n' }}{%- if '</think>' in message.content %}<|im_start|>") == CHAT_QWEN3,
          "qwen3");
    CHECK(detect("<|im_start|>{{ role }}<|im_sep|>") == CHAT_UNKNOWN, "phi-4 is not chatml");
    CHECK(detect("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] "
                 "| trim + '<|eot_id|>' }}") == CHAT_LLAMA3, "llama3");
    CHECK(detect("{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}") ==
              CHAT_GEMMA, "gemma");
    CHECK(detect("{{'### Instruction:\\n' + message['content'] + '\\n'}}{{'### Response:\\n' + "
                 "message['content'] + '\\n<|EOT|>\\n'}}") == CHAT_DEEPSEEK, "deepseek coder");
    CHECK(detect("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + "
                 "message['content'] + '\\n\\n' }}{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + "
                 "message['content'] + eos_token }}{% endif %}{% endfor %}") == CHAT_DEEPSEEK2, "deepseek2");
    CHECK(detect("{{bos_token}}{{ns.system_prompt}}{{'" DS_USER "' + message['content']}}{{'" DS_ASSISTANT
                 "' + message['content'] + '" DS_EOS "'}}") == CHAT_DEEPSEEK3, "deepseek3");
    CHECK(detect("{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}") ==
              CHAT_LLAMA2_SYS_BOS, "llama2 bos");
    CHECK(detect("[INST] <<SYS>>\\n") == CHAT_LLAMA2_SYS, "llama2 sys");
    CHECK(detect("[INST] {{ message['content'].strip() }}") == CHAT_LLAMA2, "llama2");
    CHECK(detect("[INST] <<SYS>> {{ content.strip() }}") == CHAT_LLAMA2_SYS_STRIP, "llama2 strip");
    CHECK(detect("[SYSTEM_PROMPT][INST]") == CHAT_UNKNOWN, "mistral v7 unsupported");
    CHECK(detect("{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}") ==
              CHAT_PHI3, "phi3");
    CHECK(detect("") == CHAT_UNKNOWN && detect(NULL) == CHAT_UNKNOWN, "empty");
    /* R1 flavour of DeepSeek V3: past answers lose their reasoning, generation opens <think> */
    const char *r1 = "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
                     "{{'" DS_USER "' + message['content']}}{{'" DS_ASSISTANT "' + content + '" DS_EOS "'}}"
                     "{% if add_generation_prompt %}{{'" DS_ASSISTANT "<think>\\n'}}{% endif %}";
    mr_chat_msg m[] = {{"user", "q"}, {"assistant", "<think>mull</think>A"}, {"user", "q2"}};
    expect_text("r1", r1, NULL, m, 3, true, DS_USER "q" DS_ASSISTANT "A" DS_EOS DS_USER "q2" DS_ASSISTANT "<think>\n");
    /* Qwen2.5's default system prompt */
    const char *q25 = "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] "
                      "+ '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba "
                      "Cloud. You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}";
    expect_text("qwen2.5 default system", q25, NULL, k_conv + 1, 1, true,
                "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    expect_text("qwen2.5 given system", q25, NULL, k_conv, 2, false,
                "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    const char *q2 = "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a "
                     "helpful assistant.<|im_end|>\\n' }}{% endif %}";
    expect_text("qwen2 default system", q2, NULL, k_conv + 1, 1, false,
                "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

/* The real Qwen3 template from the vocab fixture. */
static void test_qwen3_real(void) {
    const char *path = check_shared("fixtures/vocab/ggml-vocab-qwen3.gguf");
    if (!path) {
        printf("SKIP part: fixtures/vocab/ggml-vocab-qwen3.gguf not found (set MOERUN_SHARED)\n");
        return;
    }
    gguf_ctx *g = gguf_open(path);
    CHECK(g != NULL, "open %s: %s", path, mr_geterr());
    if (!g) return;
    const char *t = gguf_get_str(g, "tokenizer.chat_template");
    CHECK(t != NULL, "qwen3 vocab has a chat template");
    if (!t) {
        gguf_close(g);
        return;
    }
    chat_style st;
    CHECK(chat_detect(t, &st) == 0 && st.kind == CHAT_QWEN3, "qwen3 template detected as qwen3 (got %d)", st.kind);
    CHECK(!strcmp(chat_style_name(&st), "qwen3"), "style name %s", chat_style_name(&st));

    mr_chat_msg basic[] = {{"system", "You are helpful."},
                           {"user", "Hi"},
                           {"assistant", "<think>\nLet me think.\n</think>\n\nHello!"},
                           {"user", "How are you?"}};
    const char *want_basic = "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                             "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n"
                             "<|im_start|>assistant\n";
    expect_text("qwen3 basic (think stripped from history)", t, NULL, basic, 4, true, want_basic);
    expect_text("qwen3 by name", NULL, "qwen3", basic, 4, true, want_basic);

    mr_chat_msg hi[] = {{"user", "Hi"}};
    expect_text("qwen3 nothink", t, "chatml-nothink", hi, 1, true,
                "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    expect_text("qwen3-nothink alias", t, "qwen3-nothink", hi, 1, true,
                "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    mr_chat_msg la[] = {{"user", "Hi"}, {"assistant", "ans"}};
    expect_text("qwen3 last assistant", t, NULL, la, 2, false,
                "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nans<|im_end|>\n");
    mr_chat_msg lt[] = {{"user", "Hi"}, {"assistant", "<think>\nr\n</think>\n\nans"}};
    expect_text("qwen3 last assistant with reasoning", t, NULL, lt, 2, false,
                "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\nr\n</think>\n\nans<|im_end|>\n");
    mr_chat_msg tools[] = {{"user", "q"}, {"assistant", "call"}, {"tool", "r1"}, {"tool", "r2"}};
    expect_text("qwen3 tool responses", t, NULL, tools, 4, true,
                "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\ncall<|im_end|>\n<|im_start|>user\n"
                "<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n</tool_response><|im_end|>\n"
                "<|im_start|>assistant\n");
    mr_chat_msg midsys[] = {{"user", "a"}, {"system", "s2"}, {"assistant", "x</think>y"}};
    expect_text("qwen3 later system + bare </think>", t, NULL, midsys, 3, false,
                "<|im_start|>user\na<|im_end|>\n<|im_start|>system\ns2<|im_end|>\n"
                "<|im_start|>assistant\n<think>\nx\n</think>\n\ny<|im_end|>\n");
    gguf_close(g);
}

int main(void) {
    test_names();
    test_errors();
    test_detect_fragments();
    test_qwen3_real();
    return check_done();
}
