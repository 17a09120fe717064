/*
 * attn.h — attention of one query token over the KV cache (CPU).
 *
 * Cache layout (per layer): for each KV head, n_ctx rows (one per cell) of dk
 * elements in k_type (row bytes mr_row_size(k_type, dk)); V likewise with dv.
 * A head's keys are thus an ordinary (n_ctx, dk) matrix, and the scores of a
 * query against all cells are one quant_matvec over it (the query quantized
 * into the K type's vec-dot type, like llama.cpp's flash path).
 *
 * Cell c is visible to a query (pos, seq) when cell_pos[c] >= 0, bit seq of
 * cell_seq[c] is set, cell_pos[c] <= pos, and, with a sliding window n_swa > 0,
 * pos - cell_pos[c] < n_swa (llama.cpp's LLAMA_SWA_TYPE_STANDARD).
 *
 * Two algorithms: the standard one (scores of all cells, softmax, weighted
 * sum of V) and the flash one (blocks of cells with an online softmax, no
 * per-token score row). The reference mode (ref) dequantizes K and V and uses
 * the scalar kernels only.
 *
 * Precision follows ggml's CPU paths where it matters for conformance: with
 * an f16 K the query is rounded to f16 (ggml converts it to K's vec-dot
 * type), and in the standard path the probabilities are rounded to f16 before
 * they meet an f16 V. The flash path accumulates V in f32 (ggml's CPU flash
 * kernel accumulates f16 V in f16; ours is the more accurate of the two).
 *
 * A GQA layer with a q8_0 K and V and 8 query heads per KV head keeps, on AVX-512 VNNI CPUs, its cache
 * in the tiled layout instead (tiled, below): the decode kernel's own, read as rows by the other paths.
 *
 * MLA extension point: v_in_k says the value of a cell is the first dv
 * elements of its K row (absorbed MLA caches one latent per cell); V is then
 * unused.
 */
#ifndef MR_CPU_ATTN_H
#define MR_CPU_ATTN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int n_head, n_head_kv, dk, dv;
    float scale;         /* applied to q.k */
    float softcap;       /* > 0: s = softcap * tanh(s / softcap) */
    uint32_t k_type, v_type;
    const uint8_t *K, *V;/* layer base pointers (see layout) */
    int n_ctx;           /* rows per head in the cache */
    bool v_in_k;
    int n_cells;         /* scan cells [0, n_cells) */
    const int32_t *cell_pos;
    const uint64_t *cell_seq;
    int n_swa;           /* 0: no window */
    bool flash, ref;
    bool tiled;          /* K and V in the tiled q8_0 layout (below); n_ctx is then a multiple of CPU_ATTN_TILE */
    uint64_t q_tag;      /* nonzero: unique to these queries (the model counts its split decode runs): the
                            parts of a step a thread runs on one scratch prepare the queries once
                            (cpu_attn_head_part: same tag, KV head and q pointer as the last call) */
} cpu_attn_args;

/* The visibility rule above, for cell c of a cache with these cell positions / sequences. */
static inline bool cpu_attn_cell_visible(const int32_t *cell_pos, const uint64_t *cell_seq, int c, int32_t pos,
                                         int seq, int n_swa) {
    const int32_t cp = cell_pos[c];
    if (cp < 0 || cp > pos || !((cell_seq[c] >> seq) & 1)) return false;
    return !(n_swa > 0 && pos - cp >= n_swa);
}

/* Floats of per-thread scratch cpu_attn_head needs. */
size_t cpu_attn_scratch_floats(const cpu_attn_args *a);

/* Attention of the n_head/n_head_kv query heads that share KV head kvh.
 * q: those heads' query vectors (g, dk), already scaled/roped as the arch
 * wants; out: (g, dv). scratch: cpu_attn_scratch_floats() floats, 64-byte
 * aligned. A query that sees no cell gets zeros. */
void cpu_attn_head(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, int seq, float *out,
                   float *scratch);

/* A decode step split over cells (flash only), so one KV head's cache is read once by several
 * threads and a long cache spreads over all of them. The split depends only on the cache extent
 * (n_cells), never on the thread count, so results do not depend on it either.
 * cpu_attn_split: the parts (>= 1) and *cells, the cells per part (part p: cells [p * cells,
 * (p + 1) * cells)); 1 when not flash, ref, or n_cells <= CPU_ATTN_SPLIT_MIN.
 * cpu_attn_head_part: cpu_attn_head over the cells [c0, c1) only, its output left unnormalized
 * (out, g x dv) and each head's running max m and sum l in ml (g floats m, then g floats l; a
 * head that sees no cell there: m -inf, l 0, out zeros). cpu_attn_merge: the np parts (part p's
 * out at parts + p * g * dv, its m/l at mls + p * 2 * g, in cell order) into the normalized
 * output (g x dv), as one online softmax over all cells would give to float rounding. */
/* With a q8_0 V of at least CPU_ATTN_INT8_V_MIN_DV elements (GQA heads of 128, MLA's latent of
 * 512) on AVX-512 VNNI CPUs the decode kernels compute the V pass in integer products
 * (attn_avx512.c: the probability-times-scale weights rounded to 8 bits per 32 cells, about as
 * much rounding as llama.cpp's q8_0 query against a q8_0 K); MOERUN_ATTN_V8=0 keeps it in f32.
 * Several tokens at once (cpu_attn_multi) take it too for a V under CPU_ATTN_INT8_V_MULTI_DV
 * (GQA's heads), with groups of 32 of the cells any of the call's tokens sees (the decode
 * kernel's groups wherever all of them see the same cells, so a prompt's attention can differ
 * from the same tokens decoded one at a time by that rounding, near the causal diagonal), and
 * leave a wider one (MLA's latent) to the decode kernel. Both scale a group's weights by the
 * product of its largest probability (per head or row) and its largest V block scale.
 * cpu_attn_set_int8_v: 1 / 0 force it on / off, -1 back to the environment's choice (tests). */
#define CPU_ATTN_INT8_V_MIN_DV 128
#define CPU_ATTN_INT8_V_MULTI_DV 256
bool cpu_attn_int8_v(void);
void cpu_attn_set_int8_v(int on);
/* The q8_0 K scores of a single group of up to 8 query heads on 512-bit vectors (bit-identical to
 * the 256-bit kernel's; faster where a 512-bit vpdpbusd issues at the 256-bit rate): on by default
 * on AMD Zen 5 (family 0x1a), MOERUN_ATTN_WIDE=1 / 0 forces it on / off; cpu_attn_set_wide_scores
 * likewise (tests; -1 back to the default). */
bool cpu_attn_wide_scores(void);
void cpu_attn_set_wide_scores(int on);
/* MOERUN_ATTN_BF16=1 (off by default): with an f16 K and V of at least CPU_ATTN_BF16_MIN_DV
 * values (MLA's latent), query heads in whole groups of 8, on AVX-512 CPUs with AVX512_BF16,
 * decode attention multiplies in bf16 (vdpbf16ps: twice the f32 FMA's products per
 * instruction) with f32 sums, each product within about 2^-8 of its f32 value (test_attn
 * bounds it). That is the q8_0 cache's precision class, not f16's: forced onto the tiny
 * DeepSeek golden fixtures it fails 3-5 of their f16 bars, hence opt-in.
 * cpu_attn_bf16: that switch; cpu_attn_set_bf16: 1 / 0 force it, -1 back to the environment's
 * choice (tests); cpu_attn_bf16_takes: whether cpu_attn_head's SIMD path takes it for a. */
#define CPU_ATTN_BF16_MIN_DV 256
bool cpu_attn_bf16(void);
void cpu_attn_set_bf16(int on);
bool cpu_attn_bf16_takes(const cpu_attn_args *a);

#define CPU_ATTN_SPLIT_MIN 512
#define CPU_ATTN_SPLIT_MAX 64
int cpu_attn_split(const cpu_attn_args *a, int *cells);
void cpu_attn_head_part(const cpu_attn_args *a, int kvh, const float *q, int32_t pos, int seq, int c0, int c1,
                        float *out, float *ml, float *scratch);
void cpu_attn_merge(int g, int dv, int np, const float *parts, const float *mls, float *out);

/* Several tokens at once (flash and standard; attn_multi_avx512.c): the queries of
 * nt consecutive tokens of a micro-batch for KV head kvh (token t's heads at
 * q + t * qs, its output at out + t * os, its position and sequence pos[t],
 * seq[t]) in one pass over the cache, each K/V row converted once for all of
 * them. cpu_attn_multi_tokens(a): the nt to use, or 0 where the path does not
 * apply (ref, K/V neither f16 nor q8_0, a q8_0 V of CPU_ATTN_INT8_V_MULTI_DV or
 * more that the decode kernel takes in integer products, softcap, head sizes, a CPU without AVX-512 VNNI): then
 * run cpu_attn_head per token. scratch as cpu_attn_head's
 * (cpu_attn_scratch_floats covers both). Gives cpu_attn_head's outputs bit for
 * bit with the integer V pass off (test_attn). */
#define CPU_ATTN_MULTI_MB 64 /* cells per block */
int cpu_attn_multi_tokens(const cpu_attn_args *a);
void cpu_attn_multi(const cpu_attn_args *a, int kvh, int nt, const float *q, size_t qs, const int32_t *pos,
                    const int32_t *seq, float *out, size_t os, float *scratch);

/* ---- the tiled q8_0 cache (attn_tiled.c, decode kernel attn_tiled_avx512.c) ----------------------------
 * A GQA layer whose K and V are both q8_0 and whose KV heads each serve 8 query heads keeps, on CPUs with
 * AVX-512 VNNI, its cache in the decode kernel's own layout instead of rows: the kernel then reads the
 * bytes its vpdpbusd take straight from the cache, with no transposition per step. A KV head's region is
 * n (the cell stride, a multiple of CPU_ATTN_TILE) rows' bytes, as in the row layout:
 *   K: quants, tile T (cells 16T .. 16T + 15) and block b (dimensions 32b ..) at (T * nbk + b) * 512:
 *        byte (gg * 16 + i) * 4 + e = quant 4gg + e of cell 16T + i, plus 128 (unsigned: vpdpbusd's
 *        first operand, the cells in the lanes against a query dword broadcast);
 *      then, at n * dk, the scales: f16 at ((T * nbk + b) * 16 + i) * 2.
 *   V: quants, quad Q (cells 4Q .. 4Q + 3) and block b at (Q * nbv + b) * 128: dword w holds the 4
 *        cells' quants (signed) of dimension cpu_attn_vt_dim[w] (attn_vt_z's order: the weights of
 *        4 cells broadcast against it);
 *      then, at n * dv, the scales as K's.
 * Decode (with or without flash) runs the tiled kernel; prompts (cpu_attn_multi) read the tiles block by
 * block; the reference path, soft-capping and the f32 V pass read rows copied out (cpu_attn_tiled_get). */
#define CPU_ATTN_TILE 16
extern const uint8_t cpu_attn_vt_dim[32];
/* Whether a layer with these heads and types keeps the tiled layout on this CPU (MOERUN_KV_TILED=0: never). */
bool cpu_attn_tiled_ok(int n_head, int n_head_kv, int dk, int dv, uint32_t k_type, uint32_t v_type, bool v_in_k);
/* The cell stride of a tiled cache of n_ctx cells. */
static inline int cpu_attn_tiled_cells(int n_ctx) { return (n_ctx + CPU_ATTN_TILE - 1) / CPU_ATTN_TILE * CPU_ATTN_TILE; }
/* Row (one q8_0 row of d elements) of cell c into / out of a KV head's tiled region (stride n cells). */
void cpu_attn_tiled_put(uint8_t *head, int n, int d, bool is_k, int c, const uint8_t *row);
void cpu_attn_tiled_get(const uint8_t *head, int n, int d, bool is_k, int c, uint8_t *row);

#endif
