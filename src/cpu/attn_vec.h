/*
 * attn_vec.h — private to the SIMD attention files (include only from
 * attn_avx2.c, attn_q8_avx2.c, compiled with -mavx2 -mfma -mf16c, and
 * attn_avx512.c, attn_multi_avx512.c): the state of one cpu_attn_avx2() call, the mask test, the
 * prefetch cursor, and the kernels attn_avx2.c calls.
 *
 * Layout shared by both files: query heads are vector lanes. The g heads of
 * a KV group form tiles of 8 lanes (tile t: heads 8t..8t+7; H = the lanes a
 * kernel fills, 8 for g >= 5, else 1, 2 or 4 >= g; lanes of absent heads
 * hold copies or zeros and are ignored). Scores and probabilities of a cell
 * are one row of 8 floats per tile: S[(c - c0) * 8 + lane].
 */
#ifndef MR_CPU_ATTN_VEC_H
#define MR_CPU_ATTN_VEC_H

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "cpu/attn.h"
#include "cpu/attn_simd.h"
#include "cpu/vexp_avx2.h"

#define ATTN_FB CPU_ATTN_SIMD_FB /* cells per block */
#define ATTN_Q8B 34              /* bytes of a q8_0 block: fp16 scale + 32 int8 */
#define ATTN_AI static inline __attribute__((always_inline))
/* The integer V pass's weights (attn_avx512.c's i8_weights; the tiled and prompt kernels alike): p and d as
 * fractions of their largest in the group, p to ATTN_I8_P15 (255 x 128, so that the product's last rounding,
 * x / 128, stays under 256) and d to ATTN_I8_D15; two vpmulhrsw give w8 = p x d / (largest p x largest d) x 255,
 * so the weights' scale is largest p x largest d x ATTN_I8_SCALE. */
#define ATTN_I8_P15 32640.0f
#define ATTN_I8_D15 32767.0f
#define ATTN_I8_SCALE (4194304.0f / (ATTN_I8_P15 * ATTN_I8_D15))
#define ATTN_BF_KB_STRIDE (CPU_ATTN_SIMD_MAX_D + 64) /* bf16 per converted K row of the bf16 path */
/* floats of ext at pd (cpu_attn_simd_pd_floats): pd (ATTN_FB x nbv x 8), or with vi8 vt (ATTN_FB x nbv x
 * 32 bytes), wq (2 groups x 8 quads x nbv x 8 dwords), vsc (2 x nbv x 8), dvf (nbv x ATTN_FB), d15 (2 x
 * nbv x 32 int16), dm (2 x nbv), or with bf
 * vp (ATTN_FB / 2 x dv dwords), pp (ATTN_FB / 2 x 8 dwords), kb (16 x ATTN_BF_KB_STRIDE bf16) */

/* 8 dot products (8-lane accumulators) -> one vector, lane x = the sum of a[x]: the order of
 * the f16 scores' sums, shared by the decode and multi-token kernels (bit-identical outputs;
 * hsum8x8x2 below the same for two cells on AVX-512). */
ATTN_AI __m256 hsum8x8(const __m256 a[8]) {
    const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

#ifdef __AVX512F__
/* hsum8x8 of two cells at once on 512-bit vectors, bit for bit: h[x] holds row x's 8 lanes of cell A
 * in its low half and of cell B in its high half; the result, A's 8 sums low and B's high. The same
 * tree of adds (vhaddps is two shuffles and an add within 128-bit lanes, which vshufps and vaddps
 * do at 512 bits for both cells), in half the instructions of two hsum8x8: one Zen 5 thread, f16,
 * g 8, bench_attn -p 512 at depth 4096 68 -> 61 ms a prompt (median of 6 alternated runs), decode
 * at depth 1024 about 5 % less. test_attn compares the AVX-512 kernels with the AVX2 ones bit for
 * bit. */
ATTN_AI __m512 attn_hadd16(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xDD));
}
ATTN_AI __m512 hsum8x8x2(const __m512 h[8]) {
    const __m512 t0 = attn_hadd16(h[0], h[1]), t1 = attn_hadd16(h[2], h[3]);
    const __m512 t2 = attn_hadd16(h[4], h[5]), t3 = attn_hadd16(h[6], h[7]);
    const __m512 u0 = attn_hadd16(t0, t1), u1 = attn_hadd16(t2, t3);
    /* per cell: (u0's low 128, u1's low 128) + (u0's high 128, u1's high 128), as permute2f128 */
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    const __m512i hi = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    return _mm512_add_ps(_mm512_permutex2var_ps(u0, lo, u1), _mm512_permutex2var_ps(u0, hi, u1));
}
/* Row x's lanes of two cells' accumulators a, b whose vectors p hold rows 2p (low half) and 2p + 1
 * (high half): hsum8x8x2's h. */
ATTN_AI void attn_pair_rows(const __m512 a[4], const __m512 b[4], __m512 h[8]) {
    for (int p = 0; p < 4; p++) {
        h[2 * p] = _mm512_shuffle_f32x4(a[p], b[p], _MM_SHUFFLE(1, 0, 1, 0));
        h[2 * p + 1] = _mm512_shuffle_f32x4(a[p], b[p], _MM_SHUFFLE(3, 2, 3, 2));
    }
}

/* cpu_exp8 (vexp_avx2.h) on 16 lanes, for the AVX-512 files: the same body (CPU_EXP_BODY) at 512
 * bits, so the same bits lane by lane. */
static inline __m512 attn_exp16(__m512 x) { CPU_EXP_BODY(512, __m512, __m512i, _mm512_roundscale_ps); }
#endif

/* Software prefetch of V rows at an even pace (the hardware prefetcher
 * follows K, read in order, but not V, read a few dimensions of every row of
 * a block at a time): in flash the score pass of a block prefetches the
 * block's V rows (not with V inside K, MLA: it reads them itself) and the V
 * pass the next block's K rows, in standard the V pass prefetches the next
 * block's V rows. The
 * num lines of the range [p, end) are spread evenly over the pass's den
 * steps (attn_avx2.c's score_steps / vacc_steps; an empty range: none), into
 * L1, or into L2 where l2 is set (attn_avx2.c's flash: the next K rows during
 * the integer V pass). Kernels copy the cursor to a local and back, so it
 * stays in registers. */
typedef struct {
    const char *p, *end;
    int num, den, acc;
    bool l2;
} attn_pf;

static inline void attn_pf_start(attn_pf *c, const uint8_t *base, size_t rb, int c0, int c1, int steps) {
    c->p = (const char *)base + (size_t)c0 * rb;
    c->end = (const char *)base + (size_t)c1 * rb;
    c->num = (int)((c->end - c->p + 63) / 64);
    c->den = steps > 0 ? steps : 1;
    c->acc = 0;
    c->l2 = false;
}

static inline void attn_pf_step(attn_pf *c) {
    for (c->acc += c->num; c->acc >= c->den && c->p < c->end; c->acc -= c->den, c->p += 64)
        if (c->l2) _mm_prefetch(c->p, _MM_HINT_T1);
        else _mm_prefetch(c->p, _MM_HINT_T0);
}

/* One cpu_attn_avx2() call. Pointers into ext: see cpu_attn_simd_ext_floats. */
typedef struct {
    int g, ntile, H, dk, dv;
    bool kq8, vq8; /* K / V is q8_0 (else f16) */
    bool z;        /* AVX-512 VNNI kernels (attn_avx512.c) for V and the q8_0 K scores */
    bool vi8;      /* q8_0 V with j->z: integer products (attn_vt_z, attn_vacc_i8_z) */
    bool zw;       /* q8_0 K, 8-head tiles, j->z: the scores on 512-bit vectors (one tile: attn_q8_scores_zw;
                    * tile pairs: attn_q8_scores_z's 512-bit form) */
    bool dvk;      /* flash, vi8 and zw with V inside K (MLA): the score pass (q8_512_dot) writes the V block
                    * scales dvf that attn_vt_z otherwise converts (the cell's K block scales, read there anyway) */
    bool bf;       /* f16 K and V, 8-head tiles, AVX512_BF16: bf16 products (attn_bf16_avx512.c) */
    float scale, softcap;
    const uint8_t *Kh, *Vh; /* this KV head's rows (V: inside K with v_in_k) */
    size_t krb, vrb;        /* row strides in bytes */
    attn_pf *pf;            /* the range the current pass prefetches */
    float *qf;              /* f16 K: tile t at t * 8 * dk: the queries, rows of absent heads zero */
    uint8_t *qt, *aqt;      /* q8_0 K: tile t at t * 8 * dk bytes: quants, |quants| (attn_q8_avx2.c) */
    float *dq;              /* q8_0 K: tile t at t * (dk/32) * 8: the query scales, [block][lane] */
    float *m, *l;           /* tile t at t * 8: running max and sum (flash) */
    float *pd;              /* q8_0 V: ATTN_FB x dv/32 x 8: probabilities times the V block scales */
    uint8_t *vt;            /* vi8 (in pd's place, cpu_attn_simd_pd_floats): the block's V quants transposed, */
    uint32_t *wq;           /* the tile's 8-bit weights, their scales vsc, the V block scales dvf */
    float *vsc, *dvf;       /* (layouts: attn_vt_z, i8_weights in attn_avx512.c), */
    int16_t *d15;           /* the V block scales as 15-bit fractions of their group's largest, */
    float *dm;              /* which is dm (attn_d15_z) */
    int *idx;               /* ATTN_FB: the visible cells of a block */
    float *qz;              /* f16 K with j->z and 8-head tiles, instead of qf (same place): tile t at
                             * t * 8 * dk, the queries as head pairs interleaved per 8 dimensions
                             * (attn_f16_scores_z) */
    uint32_t *qb;           /* bf (qf's place): tile t at t * dk / 2 * 8, the queries' bf16 dimension
                             * pairs [dk / 2][8 heads] */
    uint32_t *vp, *pp;      /* bf (pd's place): a block's V rows and a tile's probabilities as bf16
                             * cell pairs; */
    uint16_t *kb;           /* 16 K rows in bf16 (layouts: attn_bf16_avx512.c) */
} attn_job;

static inline int attn_tile_heads(const attn_job *j, int t) { return j->g - 8 * t < 8 ? j->g - 8 * t : 8; }

static inline uint16_t attn_ld16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* The mask of attn.h: whether cell c is visible to a query (pos, seq). */
static inline bool attn_visible(const cpu_attn_args *a, int c, int32_t pos, int seq) {
    const int32_t cp = a->cell_pos[c];
    if (cp < 0 || cp > pos || !((a->cell_seq[c] >> seq) & 1)) return false;
    if (a->n_swa > 0 && pos - cp >= a->n_swa) return false;
    return true;
}

/* q8_0 K (attn_q8_avx2.c). attn_q8_prep: quantize the g queries q (g, dk)
 * to q8_0 into the tiles qt/aqt/dq. attn_q8_scores: the scores of tile t
 * (scaled, soft-capped) for the nv visible cells idx[] of the block of n
 * cells starting at c0, into S rows; rows of the other cells get -inf;
 * steps the prefetch cursor once per ATTN_Q8_CELLS_PER_STEP cells. */
#define ATTN_Q8_CELLS_PER_STEP 4
void attn_q8_prep(attn_job *j, const float *q);
void attn_q8_scores(const attn_job *j, int t, int c0, int n, const int *idx, int nv, float *S);

/* AVX-512 (attn_avx512.c, where j->z): attn_q8_scores with vpdpbusd (bit-identical), and
 * the V accumulation of the nh heads of a tile (out: the tile's output rows; P: its
 * probability rows; q8_0 V: j->pd folded) on 16-dimension vectors, each probability
 * broadcast feeding 2 FMAs per head and V converted once for the tile's heads. The same
 * FMAs per element in cell order as attn_avx2.c's vacc_h: bit-identical outputs. Steps the
 * prefetch cursor once per cell of a 32-dimension chunk (once per 16, its prefetches came in
 * bursts that stalled on the miss buffers). */
void attn_q8_scores_vnni(const attn_job *j, int t, int c0, int n, const int *idx, int nv, float *S);
void attn_vacc_z(const attn_job *j, int nh, int c0, const int *idx, int nv, const float *P, float *out);
/* q8_0 V in integer products (j->vi8; method in attn_avx512.c): attn_vt_z transposes a block's
 * visible V rows once for all tiles (stepping the prefetch cursor once per 4 cells), then
 * attn_vacc_i8_z adds the tile's nh heads (stepping it once per 4 cells of a V block): the f32
 * path's result up to the rounding of the probability-times-scale weights to 8 bits per 32 cells. */
void attn_vt_z(const attn_job *j, const int *idx, int nv);
void attn_d15_z(const attn_job *j, int nv);
void attn_vacc_i8_z(const attn_job *j, int nh, int c0, const int *idx, int nv, const float *P, float *out);
/* The flash softmax over a block's nv listed cells idx[] (rows idx[k] - c0 of S) on 512-bit vectors,
 * two rows a vector, where the integer V pass follows (which rounds the probabilities anyway, so
 * its sum need not be in the f32 pass's cell order): attn_rows_max_z returns the rows' lane-wise
 * max, attn_rows_exp_z puts e^(row - mn) (cpu_exp8's bits) in place and returns l + their sum. */
__m256 attn_rows_max_z(const float *S, int c0, const int *idx, int nv);
__m256 attn_rows_exp_z(float *S, int c0, const int *idx, int nv, __m256 mn, __m256 l);
/* attn_rows_exp_z with the sum in cell order (the f32 V pass's flash softmax, bit for bit the 8-lane loop). */
__m256 attn_cells_exp_z(float *S, int c0, const int *idx, int nv, __m256 mn, __m256 l);
/* The products of the integer V pass, shared by the decode kernel (rows: a tile's heads) and
 * cpu_attn_multi (rows: query rows): out(r, block b) += the nr (<= 8) rows' sums over ng groups
 * of 8 quads of vt (attn_vt_z's layout; a group: 32 cells, one scale), row r's weights of quad q
 * and V block b at wq[(q * nbv + b) * ws + r] (a dword: 4 cells' 8-bit weights), its scales of
 * group g at vsc[(g * nbv + b) * ws + r], its output at out + r * dv, each 32 dimensions in vt's
 * order (attn_i8_order_z). Steps the prefetch cursor once per quad and V block. */
void attn_i8_products_z(int nr, const uint8_t *vt, int dv, int ng, const uint32_t *wq, size_t ws, const float *vsc,
                        float *out, attn_pf *pf);
/* The integer V pass leaves each 32 dimensions of an output row in vt's order (elementwise steps,
 * rescaling and normalizing, do not mind): attn_i8_order_z restores the g rows' order, once. */
void attn_i8_order_z(const attn_job *j, float *out);
/* q8_0 K with j->z and 8-head tiles (attn_avx512.c): attn_q8_prep_z lays the queries out for
 * attn_q8_scores_z (in qt, aqt and dq's places, tiles in pairs), which computes the scores of all
 * tiles of a block (tile t's rows at S + t * ts) two tiles to a 512-bit vector, with the unsigned
 * K bytes + 128 against the signed queries (vpdpbusd, no sign fix-up) and 128 * the queries' block
 * sums taken off: the same int32 sums and float steps as attn_q8_scores, bit-identical scores.
 * Steps the prefetch cursor once per tile and ATTN_Q8_CELLS_PER_STEP cells, as attn_q8_scores.
 * With j->zw a tile pair's 16 heads share one 512-bit vector per cell (the same bits again). */
void attn_q8_prep_z(attn_job *j, const float *q);
void attn_q8_scores_z(const attn_job *j, int c0, int n, const int *idx, int nv, float *S, size_t ts);
/* The same q8_0 K scores for a single tile (j->ntile == 1, j->zw) on 512-bit vectors: lanes 2h, 2h + 1
 * hold head h's two dword groups of 8 bytes of a cell broadcast as a quadword, half the vpdpbusd of
 * attn_q8_scores_z where a 512-bit one issues at the 256-bit rate (AMD Zen 5), the pair added per
 * block in int32: bit-identical scores again (layout: attn_avx512.c). */
void attn_q8_prep_zw(attn_job *j, const float *q);
void attn_q8_scores_zw(const attn_job *j, int c0, int n, const int *idx, int nv, float *S);
/* f16 K scores of an 8-head tile (j->H == 8, j->qz) on 512-bit vectors: a vector holds two heads'
 * 8-lane partial sums against 8 dimensions of a cell converted to both halves, four cells a
 * step (then two, one); the same FMAs per lane in the same order and the same sums (hsum8x8,
 * hsum8x8x2 for a pair of cells) as attn_avx2.c's
 * scores_f16_h, so the same scores bit for bit. Steps the prefetch cursor once per cell. */
void attn_f16_scores_z(const attn_job *j, int t, int c0, int n, const int *idx, int nv, float *S);
/* f16 K and V in bf16 products (j->bf; attn_bf16_avx512.c): attn_bf_prep lays the queries out
 * (qb); attn_bf_scores computes all tiles' scores of a block (tile t's rows at S + t * ts; steps
 * the prefetch cursor once per tile and 16 cells); attn_bf_vpairs converts the block's visible V
 * rows once for all tiles; attn_bf_vacc adds tile t's block (P: its probability rows) to its
 * output rows, which hold [dv][8 heads] during the call (steps the cursor once per 16
 * dimensions); attn_bf_rescale multiplies tile t's output by the lanes of r; attn_bf_order puts
 * every tile's rows back in [8 heads][dv] order, once at the end. */
void attn_bf_prep(attn_job *j, const float *q);
void attn_bf_scores(const attn_job *j, int c0, int n, const int *idx, int nv, float *S, size_t ts);
void attn_bf_vpairs(const attn_job *j, const int *idx, int nv);
void attn_bf_vacc(const attn_job *j, int t, int c0, const int *idx, int nv, const float *P, float *out);
void attn_bf_rescale(const attn_job *j, int t, __m256 r, float *out);
void attn_bf_order(const attn_job *j, float *out);

#endif
