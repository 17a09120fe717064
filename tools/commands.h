/*
 * commands.h — the subcommands of the moerun binary.
 *
 * Each command lives in tools/cmd_NAME.c and defines
 *   int cmd_NAME(int argc, char **argv);   // argv[0] is the command name
 * returning the process exit code: 0 ok, 1 error, 2 usage error.
 * Declared weak so the dispatcher builds while a command is being written;
 * one that is absent is reported as not available in this build.
 */
#ifndef MR_COMMANDS_H
#define MR_COMMANDS_H

#define MR_CMDS(X)                                                               \
    X(run, "generate text from a prompt")                                        \
    X(chat, "interactive chat in the terminal")                                  \
    X(serve, "OpenAI-compatible HTTP server")                                    \
    X(bench, "llama-bench compatible benchmark (pp/tg), bandwidth roofline")     \
    X(sweep, "speed as the KV cache fills (sweep-bench)")                        \
    X(ab, "A/B evaluation of configurations with gates and reports")             \
    X(soak, "long stability run against a server, with gates")                   \
    X(perplexity, "perplexity of a text file")                                   \
    X(logits, "write logits in the golden-fixture JSON shape")                   \
    X(tokenize, "tokenize text with a model's vocabulary")                      \
    X(info, "describe a GGUF model")                                             \
    X(dump, "print rows of a tensor as floats")                                  \
    X(synth, "write a GGUF with random well-formed weights in a real shape")

#define MR_DECL(name, help) __attribute__((weak)) int cmd_##name(int argc, char **argv);
MR_CMDS(MR_DECL)
#undef MR_DECL

#endif
