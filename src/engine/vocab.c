/*
 * vocab.c — the tokenizer part of the public API (include/moerun.h): thin
 * wrappers over src/tok for a loaded model.
 */
#include "base/base.h"
#include "model/model.h"
#include "tok/tok.h"

int mr_n_vocab(const mr_model *m) { return m->arch ? m->hp.n_vocab : tok_n_vocab(m->vocab); }
mr_token mr_token_bos(const mr_model *m) { return tok_bos(m->vocab); }
mr_token mr_token_eos(const mr_model *m) { return tok_eos(m->vocab); }
mr_token mr_token_eot(const mr_model *m) { return tok_eot(m->vocab); }
bool mr_token_is_eog(const mr_model *m, mr_token t) { return tok_is_eog(m->vocab, t); }
bool mr_add_bos(const mr_model *m) { return tok_add_bos(m->vocab); }

int mr_tokenize(const mr_model *m, const char *text, size_t len, mr_token *out, int cap, bool add_special,
                bool parse_special) {
    return tok_encode(m->vocab, text, len, out, cap, add_special, parse_special);
}

int mr_token_to_piece(const mr_model *m, mr_token t, char *buf, int cap, bool special) {
    return tok_token_to_piece(m->vocab, t, buf, cap, 0, special);
}

int mr_detokenize(const mr_model *m, const mr_token *toks, int n, char *buf, int cap, bool special) {
    return tok_detokenize(m->vocab, toks, n, buf, cap, false, special);
}
