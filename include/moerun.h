/*
 * moerun.h — the public C API of the engine (model, context, batches,
 * tokenizer, sampling, chat templates). Tools, the server and the benches use
 * only this header. Modeled on llama.h so that users of that API feel at home.
 *
 * Errors: functions returning int give 0 on success and -1 on failure;
 * functions returning pointers give NULL on failure. In both cases
 * mr_last_error() has a message naming what is wrong.
 */
#ifndef MOERUN_H
#define MOERUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int32_t mr_token;
typedef struct mr_model mr_model;
typedef struct mr_ctx mr_ctx;

const char *mr_last_error(void);

/* ---- model ---------------------------------------------------------------- */
typedef struct {
    const char *path;      /* GGUF file (first part of a split set) */
    int n_threads;         /* <= 0: physical cores */
    int n_gpu_layers;      /* -ngl; 0 = CPU only */
    const char *overrides; /* -ot "REGEX=DEV[,REGEX=DEV...]" or NULL */
    int n_cpu_moe;         /* --n-cpu-moe N; -1 = all (-cmoe); 0 = none */
    const char *split_mode;/* -sm none|layer|row, NULL = layer */
    const char *tensor_split; /* -ts "a,b" or NULL */
    const char *devices;   /* -dev "CUDA0,CUDA1": the devices layers may use; "none": CPU only; NULL: all */
    bool use_mmap;         /* default true */
    bool no_repack;        /* --no-repack: keep the GGUF layouts (default: matmul weights are
                              interleaved by 8 rows at load for the SIMD kernels where one exists) */
    bool rtr;              /* -rtr: as ik_llama.cpp's run-time repack, implies no mmap: weights read
                              into huge-page memory and repacked in place */
    bool vocab_only;       /* load only the tokenizer (vocab GGUF files) */
} mr_model_params;

mr_model_params mr_model_default_params(void);
mr_model *mr_model_load(const mr_model_params *p);
void mr_model_free(mr_model *m);

typedef struct {
    char arch[64];        /* general.architecture */
    char name[256];       /* general.name or file stem */
    int n_layer, n_embd, n_head, n_head_kv, n_vocab, n_ctx_train;
    int n_expert, n_expert_used;
    uint64_t n_params;        /* total parameters */
    uint64_t file_bytes;      /* all parts */
    uint64_t weight_bytes;    /* bytes of tensor data */
    /* bytes read per decoded token if every layer's dense weights are read
     * once and n_expert_used experts per MoE layer (the roofline numerator
     * estimate; benches use the routing actually taken, see mr_ctx_stats) */
    uint64_t active_bytes_est;
    /* weights interleaved by 8 rows at load (0: none, GGUF layouts), of which n_repacked_fast
     * run on the fast kernels (float rounding differs from ggml's: by default all but the
     * recurrent layers' projections, with -rtr every one, repack_fast); the others on the
     * exact kernels (bit-identical to the GGUF layouts) */
    int n_repacked, n_repacked_fast;
    bool repack_fast;
} mr_model_info;
void mr_model_get_info(const mr_model *m, mr_model_info *out);

/* ---- tokenizer -------------------------------------------------------------- */
int mr_n_vocab(const mr_model *m);
mr_token mr_token_bos(const mr_model *m); /* -1 if none */
mr_token mr_token_eos(const mr_model *m);
mr_token mr_token_eot(const mr_model *m);
bool mr_token_is_eog(const mr_model *m, mr_token t); /* end of generation (EOS, EOT, ...) */
bool mr_add_bos(const mr_model *m);
/* Tokenize UTF-8 text. add_special: add BOS/EOS as the vocab says.
 * parse_special: recognise control/user-defined token texts in the input.
 * Returns the number of tokens; if > cap, nothing beyond cap is written and
 * the caller retries with a bigger buffer. -1 on error. */
int mr_tokenize(const mr_model *m, const char *text, size_t len, mr_token *out, int cap,
                bool add_special, bool parse_special);
/* The bytes of one token (may be a partial UTF-8 sequence). special: render
 * control tokens as their text (otherwise they render as empty). Returns
 * length written (or needed if > cap), -1 for an invalid id. */
int mr_token_to_piece(const mr_model *m, mr_token t, char *buf, int cap, bool special);
/* Detokenize a whole sequence. Same return convention. */
int mr_detokenize(const mr_model *m, const mr_token *toks, int n, char *buf, int cap, bool special);

/* ---- context ---------------------------------------------------------------- */
typedef enum { MR_KV_F16 = 1, MR_KV_Q8_0 = 8, MR_KV_Q4_0 = 2, MR_KV_F32 = 0 } mr_kv_type; /* = mr_type ids */

typedef struct {
    int n_ctx;        /* -c, total KV cells (shared by all sequences); 0 = min(train ctx, 4096) */
    int n_batch;      /* -b, max tokens per mr_decode call, default 2048 */
    int n_ubatch;     /* -ub, micro-batch, default 512 */
    int n_seq_max;    /* max distinct seq ids, default 1 */
    int n_threads;    /* <= 0: model's */
    int type_k, type_v; /* mr_kv_type, default F16 */
    int flash_attn;   /* -fa: -1 auto, 0 off, 1 on */
} mr_ctx_params;

mr_ctx_params mr_ctx_default_params(void);
mr_ctx *mr_ctx_new(mr_model *m, const mr_ctx_params *p);
void mr_ctx_free(mr_ctx *c);
int mr_ctx_n_ctx(const mr_ctx *c);

/* A batch of tokens, possibly from several sequences. logits[i] != 0 asks for
 * the logits of token i. pos/seq may be NULL: then positions continue the
 * sequence 0 and seq ids are 0; logits NULL: only the last token. */
typedef struct {
    int n_tokens;
    const mr_token *token;
    const int32_t *pos;
    const int32_t *seq;
    const int8_t *logits;
} mr_batch;

/* Run the model over the batch (split into micro-batches internally).
 * Returns 0, -1 on error (bad token id, position/seq out of range, KV cache
 * full: the message says which). */
int mr_decode(mr_ctx *c, const mr_batch *b);
/* Logits of the i-th token of the last batch that asked for logits (i in batch
 * index space); NULL if none were requested for it. n_vocab floats. */
const float *mr_get_logits(mr_ctx *c, int i);

/* KV cache management per sequence. p1 < 0 means "to the end". */
int mr_kv_seq_rm(mr_ctx *c, int seq, int p0, int p1);
int mr_kv_seq_cp(mr_ctx *c, int seq_src, int seq_dst, int p0, int p1);
void mr_kv_clear(mr_ctx *c);
int mr_kv_seq_pos_max(const mr_ctx *c, int seq); /* -1 if empty */
/* Remember sequence seq's recurrent state (qwen3next's delta-net layers) at
 * its current end P = pos_max + 1, so that a later mr_kv_seq_rm(c, seq, P,
 * -1) can rewind to it (without a checkpoint there, removing part of such a
 * sequence is an error). Up to 2 checkpoints are kept per sequence (the least
 * recently used replaced); removing the whole sequence, copying onto it or
 * rewinding before a checkpoint drops it. A no-op returning 0 for models
 * without recurrent state. 0, -1 on error (seq out of range, memory). */
int mr_kv_seq_checkpoint(mr_ctx *c, int seq);
int mr_kv_used_cells(const mr_ctx *c);

typedef struct {
    uint64_t n_decode_tokens;  /* tokens run through the model */
    uint64_t weight_bytes_read;/* weight bytes read, with experts counted as routed */
    double t_decode_s;
    uint64_t n_mla_prompt;     /* MLA layer passes run in the prompt form (decompressed heads) */
    uint64_t kv_bytes_read;    /* KV-cache bytes the attention of decode steps read (CPU layers) */
} mr_ctx_stats;
void mr_ctx_get_stats(const mr_ctx *c, mr_ctx_stats *s);
/* What runs on GPU devices (placement flags -ngl, -ot, -cmoe, ...): layers and
 * output head computed there, weight bytes uploaded, the backend ("cuda", or
 * "emu" for the host emulation of MOERUN_CUDA_EMU=N; "" when all is on the CPU). */
typedef struct {
    int n_layers_dev;
    bool output_dev;
    bool all_dev;        /* every layer and the head on devices (the roofline is the devices') */
    uint64_t weight_bytes;
    uint64_t dev_bytes;  /* device memory held on all devices: weights, KV, buffers, scratch (peak) */
    double dev_bw_gbs;   /* peak memory bandwidth of the slowest device used (0: unknown) */
    int graph_launches;  /* decode steps replayed from a captured device graph */
    int graph_captures;  /* graphs captured (one per 256-cell KV bucket, or after the scratch moved) */
    uint64_t stream_buf_bytes; /* device buffers RAM experts are streamed into for large micro-batches */
    uint64_t streamed_bytes;   /* RAM expert bytes streamed to devices so far (MOERUN_OFFLOAD_MIN_BATCH) */
    char backend[16];
} mr_ctx_offload_info;
void mr_ctx_get_offload(const mr_ctx *c, mr_ctx_offload_info *out);
void mr_ctx_reset_stats(mr_ctx *c);

/* ---- sampling ------------------------------------------------------------------ */
typedef struct {
    float temperature;   /* <= 0: greedy */
    int top_k;           /* <= 0: off */
    float top_p;         /* >= 1: off */
    float min_p;         /* <= 0: off */
    float repeat_penalty;/* 1: off */
    int repeat_last_n;   /* window for penalties, default 64 */
    float presence_penalty, frequency_penalty;
    uint64_t seed;
} mr_sampler_params;

typedef struct mr_sampler mr_sampler;
mr_sampler_params mr_sampler_default_params(void);
mr_sampler *mr_sampler_new(const mr_sampler_params *p);
void mr_sampler_free(mr_sampler *s);
/* Pick a token from logits (n_vocab). Penalties use the tokens given to
 * mr_sampler_accept. */
mr_token mr_sampler_sample(mr_sampler *s, const float *logits, int n_vocab);
void mr_sampler_accept(mr_sampler *s, mr_token t);
void mr_sampler_reset(mr_sampler *s);

/* ---- chat templates ----------------------------------------------------------------- */
typedef struct {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} mr_chat_msg;

/* Render messages with the model's tokenizer.chat_template (or tmpl if not
 * NULL: a template name "chatml", "llama3", "deepseek", "deepseek3", "gemma",
 * or a Jinja text). Returns a malloc'd string, NULL with an error that says how
 * to pass a template when it cannot be rendered. */
char *mr_chat_apply(const mr_model *m, const char *tmpl, const mr_chat_msg *msgs, int n,
                    bool add_generation_prompt);

#ifdef __cplusplus
}
#endif
#endif
