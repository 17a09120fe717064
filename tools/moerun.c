/*
 * moerun.c — entry point: dispatches to the subcommands in tools/cmd_*.c.
 */
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "commands.h"

typedef struct {
    const char *name, *help;
    int (*fn)(int, char **);
} command;

#define MR_ENTRY(name, help) {#name, help, cmd_##name},
static const command k_cmds[] = {MR_CMDS(MR_ENTRY)};
#undef MR_ENTRY

static void usage(FILE *f) {
    fprintf(f, "moerun %s (%s) — inference engine for Mixture-of-Experts GGUF models\n\n",
            mr_version(), mr_git_commit());
    fprintf(f, "usage: moerun COMMAND [options]   (moerun COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < MR_ARRAY_LEN(k_cmds); i++)
        if (k_cmds[i].fn) fprintf(f, "  %-12s %s\n", k_cmds[i].name, k_cmds[i].help);
    fprintf(f, "\n  --version    print version, commit, compiler and CPU features\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *c = argv[1];
    if (!strcmp(c, "-h") || !strcmp(c, "--help") || !strcmp(c, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(c, "--version") || !strcmp(c, "version")) {
        printf("moerun %s\ncommit: %s\ncompiler: %s\ncpu: %s\ncpu features: %s\ncuda: %s\n", mr_version(),
               mr_git_commit(), mr_compiler(), mr_cpu_model(), mr_cpu_features_str(),
               mr_have_cuda() ? "yes" : "no");
        return 0;
    }
    for (size_t i = 0; i < MR_ARRAY_LEN(k_cmds); i++) {
        if (strcmp(c, k_cmds[i].name) != 0) continue;
        if (!k_cmds[i].fn) {
            fprintf(stderr, "moerun: '%s' is not available in this build\n", c);
            return 1;
        }
        return k_cmds[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "moerun: unknown command '%s'\n\n", c);
    usage(stderr);
    return 2;
}
