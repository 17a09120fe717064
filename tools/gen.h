/*
 * gen.h — helpers shared by the generating commands (run, chat, perplexity):
 * tokenizing into a heap array, decoding a token run in batches, streaming
 * token pieces as whole UTF-8 sequences, and the Ctrl-C flag.
 */
#ifndef MR_TOOLS_GEN_H
#define MR_TOOLS_GEN_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "moerun.h"

/* Tokenize text into a malloc'd array (*n tokens). NULL on error (mr_geterr()). */
mr_token *gen_tokenize(const mr_model *m, const char *text, bool add_special, bool parse_special, int *n);

/* Decode toks[0..n) of sequence 0 at positions pos0.. in calls of at most
 * n_batch tokens, asking for the logits of the very last token only (read them
 * with mr_get_logits(c, -1)). 0, or -1 with the engine's error. */
int gen_decode(mr_ctx *c, const mr_token *toks, int n, int pos0, int n_batch);

/* Streams token pieces to a FILE without ever splitting a UTF-8 sequence:
 * bytes of an incomplete trailing sequence are held until the next piece
 * completes it (at most 3 bytes). */
typedef struct {
    unsigned char held[4];
    int n_held;
} utf8_out;
/* Write piece bytes; returns the number of bytes written now. */
size_t utf8_out_put(utf8_out *u, const char *p, size_t n, FILE *f);
/* Write whatever is held (an unfinished sequence at the end of the output). */
void utf8_out_flush(utf8_out *u, FILE *f);
/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8
 * sequence that could still be completed. */
size_t utf8_complete_len(const unsigned char *s, size_t n);

/* The piece of a token into a malloc'd NUL-terminated string (*len bytes).
 * special: render control tokens as text. */
char *gen_piece(const mr_model *m, mr_token t, bool special, int *len);

/* Ctrl-C: gen_sigint_install() makes SIGINT set gen_interrupted (without
 * restarting interrupted reads, so a blocking fgets/getline returns). */
extern volatile sig_atomic_t gen_interrupted;
void gen_sigint_install(void);

#endif
