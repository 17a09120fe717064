/*
 * quant_r8_vnni_avx512.c — VNNI kernels for the fast row-interleaved types (Q4_K Q5_K Q6_K
 * Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 _R8F; layouts in quant_impl.h), for CPUs with AVX512_VNNI and
 * AVX512VL (Ice Lake and later Xeons, Sapphire Rapids, Zen 4/5). Compiled with the AVX-512
 * flags, run only where mr_cpu() reports them (quant_dispatch.c).
 *
 * The layout is the AVX2 kernels' (quant_r8_avx2.c, quant_r8b_avx2.c): a 32-byte weight
 * vector holds 4 quants of each of 8 rows, the 4 matching activation bytes are broadcast, a
 * result is one vector over the 8 rows. What changes is the inner product: vpdpbusd
 * multiplies and sums 4 bytes per lane straight into int32, where AVX2 needs vpmaddubsw,
 * int16 adds (bounded by int16 overflow: the reason the 5-bit types widened twice as often)
 * and vpmaddwd. K-quant tiles run on 512-bit vectors (two R8 vectors each, below), their
 * sub-block sums scaled by vpmulld (Q6_K: int16 sums and vpdpwssd); the 32-element block
 * types stay on 256-bit vectors, Q8_0 biased to unsigned (+128, a vpxor) with 128 * the
 * activations' sum taken off per block.
 *
 * Every integer sum equals the AVX2 kernel's, and the float operations are the same, in the
 * same order: the results are bit-identical to the AVX2 fast kernels (test_quant_r8).
 * The EVEX encoding gives 32 vector registers: 6 columns per K-quant tile, 8 per 32-block
 * tile. Q2_K Q3_K IQ4_XS and the exact (R8) kernels stay on AVX2.
 */
#include "quant/quant_r8_avx2.h"


/* ---- Q4_K_R8F / Q5_K_R8F --------------------------------------------------------------------------- */

/* 512-bit helpers. A zmm holds the R8 vectors v, v + 1 (v even) with dwords permuted (z_perm)
 * so that dword 2r + e is row r of vector v + e: one 8-byte activation broadcast (quads v and
 * v + 1) then serves it, and the int32 pairs (2r, 2r + 1) are added into row r once per block
 * (z_rows). */
#define z_perm() _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15)

/* A K8_SIDX scale vector (rows 0-3 / 4-7 in the 128-bit halves) with 128-bit lanes (rows 0-3,
 * 0-3, 4-7, 4-7), for the vpshufb masks below: lane L holds rows 2L, 2L + 1. */
Q_INLINE __m512i z_scales(__m256i s) {
    return _mm512_shuffle_i64x2(_mm512_castsi256_si512(s), _mm512_castsi256_si512(s), 0x50);
}
/* vpshufb mask over z_scales: int16 (byte 4q + (r & 3), same) in the high bytes of dwords 2r,
 * 2r + 1 (then >> 8 per int16 sign-extends) */
Q_INLINE __m512i z_pair8_hi(int q) {
    int a[4];
    for (int k = 0; k < 4; k++) a[k] = ((4 * q + k) << 24) | ((4 * q + k) << 8) | 0x00800080;
    return _mm512_setr_epi32(a[0], a[0], a[1], a[1], a[2], a[2], a[3], a[3], a[0], a[0], a[1], a[1], a[2], a[2], a[3],
                             a[3]);
}

/* Row sums of the dword pairs (2r, 2r + 1), rows in order (exact in int32). */
Q_INLINE __m256i z_rows(__m512i s) { return _mm512_cvtepi64_epi32(_mm512_add_epi32(s, _mm512_srli_epi64(s, 32))); }

Q_INLINE int64_t z_ld64(const void *p) {
    int64_t v;
    __builtin_memcpy(&v, p, 8);
    return v;
}

/* int16 scale pairs for z_pack sums over z_scales(sc): in 128-bit lane L (rows 2L, 2L + 1), int16
 * 0-3 = sub-block qa's scales of rows 2L, 2L, 2L + 1, 2L + 1 and 4-7 qb's, zero-extended. */
Q_INLINE int z_sp1(int byte) { /* dword of two int16 = byte `byte` of the lane, zero-extended */
    const unsigned h = (unsigned)byte | 0x8000u;
    return (int)(h | h << 16);
}
Q_INLINE __m512i z_spair(int qa, int qb) {
    int a[16];
    for (int L = 0; L < 4; L++) {
        const int r = 2 * (L & 1); /* r & 3 of row 2L */
        a[4 * L + 0] = z_sp1(4 * qa + r), a[4 * L + 1] = z_sp1(4 * qa + r + 1);
        a[4 * L + 2] = z_sp1(4 * qb + r), a[4 * L + 3] = z_sp1(4 * qb + r + 1);
    }
    return _mm512_setr_epi32(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13],
                             a[14], a[15]);
}

/* The two operands (low / high nibbles, Q5_K: with their 5th bits) of qs vectors v, v + 1
 * (v = 8 * j2 + 2 * mm) as k45z_tile multiplies them: dwords permuted (z_perm). */
Q_INLINE void k45z_operands(const int Q5, const k45_blk *kb, int j2, int mm, __m512i *lo, __m512i *hi) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m16 = _mm512_set1_epi8(0x10);
    const __m512i perm = z_perm(), dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    /* 5th bits: rotate bit 2(p + e) (+1: high nibble) of qh vector w to bit 4, p = 0 or 2 */
    const __m512i rl0 = _mm512_set1_epi64(((int64_t)2 << 32) | 4), rh0 = _mm512_set1_epi64(((int64_t)1 << 32) | 3);
    const __m512i rl2 = _mm512_set1_epi64(((int64_t)30 << 32) | 0), rh2 = _mm512_set1_epi64(((int64_t)29 << 32) | 31);
    const int v = 8 * j2 + 2 * mm;
    const __m512i q = _mm512_permutexvar_epi32(perm, _mm512_loadu_si512((const void *)(kb->qs + 32 * v)));
    *lo = _mm512_and_si512(q, m4), *hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    if (Q5) {
        const int w = v >> 2, p = v & 3;
        const __m512i hz = _mm512_permutexvar_epi32(
            dup, _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(kb->qh + 32 * w))));
        *lo = _mm512_ternarylogic_epi32(*lo, _mm512_rolv_epi32(hz, p ? rl2 : rl0), m16, 0xF8);
        *hi = _mm512_ternarylogic_epi32(*hi, _mm512_rolv_epi32(hz, p ? rh2 : rh0), m16, 0xF8);
    }
}

/* int16 scale pairs of sub-blocks 2 * j2, 2 * j2 + 1 for the vpdpwssd of k45z_tile. */
Q_INLINE __m512i k45z_scp(const k45_blk *kb, int j2) {
    return _mm512_shuffle_epi8(z_scales(j2 < 2 ? kb->sc0 : kb->sc1), z_spair((2 * j2) & 3, (2 * j2 + 1) & 3));
}

/* A Q4_K/Q5_K R8 block unpacked once for every column tile of a prompt (k45z_unpack): its
 * operands, scale pairs, minimums and d. The tiles then only load them: for 6 columns the
 * unpacking (a vpermd, two ands and a shift per operand pair, Q5_K also a vpermd, two
 * rotates and two ternary ops) was a third to a half of the instructions. */
typedef struct {
    __m512i op[4][4][2]; /* [j2][mm][low / high] */
    __m512i scp[4];
    k45_md md;
} k45z_pre;
#define K45Z_PRE_MAX 32 /* blocks (k <= 8192): 80 KiB on the stack */

Q_INLINE void k45z_unpack(const int Q5, const char *g, int64_t nb, k45z_pre *pre, bool pf) {
    const size_t bsz = Q5 ? sizeof(blk_q5_K_r8) : sizeof(blk_q4_K_r8);
    for (int64_t i = 0; i < nb; i++) {
        k45_blk kb;
        if (pf) r8_prefetch(g + (size_t)i * bsz, bsz);
        k45_load(Q5, g + (size_t)i * bsz, &kb);
        k45z_pre *P = pre + i;
        _Pragma("GCC unroll 16")
        for (int j2 = 0; j2 < 4; j2++) {
            P->scp[j2] = k45z_scp(&kb, j2);
            _Pragma("GCC unroll 16")
            for (int mm = 0; mm < 4; mm++) k45z_operands(Q5, &kb, j2, mm, &P->op[j2][mm][0], &P->op[j2][mm][1]);
        }
        k45_md_of(&kb, &P->md);
    }
}

/* 8 rows x NC (<= 8) columns on 512-bit vectors (VNNI's int8 rate is about 1.3x the 256-bit
 * one on Sapphire Rapids, and the unpacking takes half the instructions). qs vector 8*j2 + m
 * carries sub-blocks 2*j2 (low nibbles) and 2*j2 + 1 (high). Per column, two vpdpbusd chains
 * (low, high) run over vector pairs m = 0, 1 and 2, 3 (Q4_K: 0-3): 8 products per int32, at most
 * 31 * 128 * 8 < 2^15 (Q4_K 16, 15 * 128 * 16), so vpackssdw packs the two chains into int16
 * without loss, and one vpdpwssd applies
 * both sub-blocks' scales (z_spair) and adds the dword pairs of a row. The int32 sums are the
 * same as with a vpmulld per sub-block, for fewer instructions. The minimums come from the
 * driver's table (k8_bp_prepare) through vpdpwssd. With pre (k45z_unpack) the blocks come
 * unpacked and g is not read. */
Q_INLINE void k45z_tile(const int Q5, const int NC, const char *g, const k45z_pre *pre, int64_t nb, const char *xv,
                        size_t xs, const int32_t *bp, float *y, int64_t ys, bool pf) {
    /* sums per 128-bit lane: rows 2L, 2L + 1 (low sub-block), then the same (high) -> rows in order */
    const __m512i rows = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 0, 1, 4, 5, 8, 9, 12, 13);
    __m256 acc[8];
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    const size_t bsz = Q5 ? sizeof(blk_q5_K_r8) : sizeof(blk_q4_K_r8);
    for (int64_t i = 0; i < nb; i++) {
        k45_blk kb;
        const k45z_pre *P = pre ? pre + i : NULL;
        if (!P) {
            const char *blk = g + (size_t)i * bsz;
            if (pf) r8_prefetch(blk, bsz);
            k45_load(Q5, blk, &kb);
        }
        const __m256i *mp = P ? P->md.mp : kb.mp;
        const __m256 d8 = P ? P->md.d8 : kb.d8, dm8 = P ? P->md.dm8 : kb.dm8;
        const blk_q8_K *xb[8];
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) xb[c] = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) { /* the minimums first, as the AVX2 kernel */
            const int32_t *b = bp + 4 * ((size_t)c * (size_t)nb + (size_t)i);
            __m256i mi = _mm256_madd_epi16(mp[0], _mm256_set1_epi32(b[0]));
            mi = _mm256_dpwssd_epi32(mi, mp[1], _mm256_set1_epi32(b[1]));
            mi = _mm256_dpwssd_epi32(mi, mp[2], _mm256_set1_epi32(b[2]));
            mi = _mm256_dpwssd_epi32(mi, mp[3], _mm256_set1_epi32(b[3]));
            acc[c] = _mm256_fnmadd_ps(_mm256_mul_ps(dm8, _mm256_set1_ps(xb[c]->d)), _mm256_cvtepi32_ps(mi), acc[c]);
        }
        __m512i sumi[8];
        _Pragma("GCC unroll 16")
        for (int j2 = 0; j2 < 4; j2++) {
            const __m512i scp = P ? P->scp[j2] : k45z_scp(&kb, j2);
            /* Q4_K: 16 products of at most 15 * 128 per int32 fit int16 too: one pack per j2 */
            const int H = Q5 ? 2 : 1, MH = 4 / H;
            _Pragma("GCC unroll 16")
            for (int half = 0; half < H; half++) {
                __m512i s0[8], s1[8];
                _Pragma("GCC unroll 16")
                for (int mm = MH * half; mm < MH * half + MH; mm++) {
                    __m512i lo, hi;
                    if (P) lo = P->op[j2][mm][0], hi = P->op[j2][mm][1];
                    else k45z_operands(Q5, &kb, j2, mm, &lo, &hi);
                    _Pragma("GCC unroll 16")
                    for (int c = 0; c < NC; c++) {
                        const int8_t *x = xb[c]->qs + 64 * j2 + 8 * mm;
                        const bool first = mm == MH * half;
                        s0[c] = _mm512_dpbusd_epi32(first ? _mm512_setzero_si512() : s0[c], lo,
                                                    _mm512_set1_epi64(z_ld64(x)));
                        s1[c] = _mm512_dpbusd_epi32(first ? _mm512_setzero_si512() : s1[c], hi,
                                                    _mm512_set1_epi64(z_ld64(x + 32)));
                    }
                }
                _Pragma("GCC unroll 16")
                for (int c = 0; c < NC; c++) {
                    const __m512i p = _mm512_packs_epi32(s0[c], s1[c]);
                    sumi[c] = j2 || half ? _mm512_dpwssd_epi32(sumi[c], p, scp) : _mm512_madd_epi16(p, scp);
                }
            }
        }
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) {
            const __m512i t = _mm512_add_epi32(sumi[c], _mm512_shuffle_epi32(sumi[c], _MM_PERM_BADC));
            const __m256i r = _mm512_castsi512_si256(_mm512_permutexvar_epi32(rows, t));
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(d8, _mm256_set1_ps(xb[c]->d)), _mm256_cvtepi32_ps(r), acc[c]);
        }
    }
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(y + c * ys, acc[c]);
}

/* ---- Q6_K_R8F ------------------------------------------------------------------------------------ */

/* Operand pair e of 16-element sub-block j (operands o = 4j + 2e, o + 1; their ql and qh vectors
 * are adjacent, with the same nibble and bit pair) as q6z_tile multiplies it: 6-bit quants,
 * dwords permuted (z_perm) after unpacking. */
Q_INLINE __m512i q6z_operand(const blk_q6_K_r8 *b, int j, int e) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30), perm = z_perm();
    const int o = 4 * j + 2 * e;
    const __m512i l = _mm512_loadu_si512((const void *)(b->q + q6r8_ql(o & 31)));
    const __m512i hq = _mm512_loadu_si512((const void *)(b->q + q6r8_qh(o & 15)));
    const __m512i lo = o < 32 ? _mm512_and_si512(l, m4) : _mm512_and_si512(_mm512_srli_epi16(l, 4), m4);
    const int s2 = o >> 4;
    const __m512i hs = s2 == 0 ? _mm512_slli_epi16(hq, 4) : s2 == 1 ? _mm512_slli_epi16(hq, 2)
                       : s2 == 2 ? hq : _mm512_srli_epi16(hq, 2);
    return _mm512_permutexvar_epi32(perm, _mm512_ternarylogic_epi32(lo, hs, m30, 0xF8));
}
/* int16 pairs (sc, sc) per dword of sub-block j: the two products' int16 sums meet the scale in
 * vpdpwssd. */
Q_INLINE __m512i q6z_scv(const blk_q6_K_r8 *b, int j) {
    const __m512i ss = z_scales(_mm256_loadu_si256((const __m256i *)(b->sc + 32 * (j >> 2))));
    return _mm512_srai_epi16(_mm512_shuffle_epi8(ss, z_pair8_hi(j & 3)), 8);
}

/* A Q6_K R8 block unpacked once for every column tile of a prompt (q6z_unpack), as k45z_pre. */
typedef struct {
    __m512i op[16][2];
    __m512i scv[16];
    __m256i sc[4];
    __m256 d8;
} q6z_pre;
#define Q6Z_PRE_MAX 32 /* blocks (k <= 8192): 101 KiB on the stack */

Q_INLINE void q6z_unpack(const char *g, int64_t nb, q6z_pre *pre, bool pf) {
    for (int64_t i = 0; i < nb; i++) {
        const blk_q6_K_r8 *b = (const blk_q6_K_r8 *)g + i;
        if (pf) r8_prefetch((const char *)b, sizeof *b);
        q6z_pre *P = pre + i;
        _Pragma("GCC unroll 16")
        for (int j = 0; j < 16; j++) {
            P->scv[j] = q6z_scv(b, j);
            P->op[j][0] = q6z_operand(b, j, 0), P->op[j][1] = q6z_operand(b, j, 1);
        }
        for (int v4 = 0; v4 < 4; v4++) P->sc[v4] = _mm256_loadu_si256((const __m256i *)(b->sc + 32 * v4));
        P->d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->d));
    }
}

/* 8 rows x NC (<= 8) columns on 512-bit vectors as k45z_tile: a zmm is operands o, o + 1.
 * 16-element sub-block j = operands 4j..4j+3 (2 zmm): with sub-blocks this short a vpmulld
 * per sub-block would cost as much as the products, so they are vpmaddubsw pairs summed in
 * int16 and scaled by one vpdpwssd (as AVX2's vpmaddwd); the -32 offset through the bsums, as
 * the AVX2 kernel. With pre (q6z_unpack) the blocks come unpacked and g is not read. */
Q_INLINE void q6z_tile(const int NC, const char *g, const q6z_pre *pre, int64_t nb, const char *xv, size_t xs,
                       float *y, int64_t ys, bool pf) {
    __m256 acc[8];
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const blk_q6_K_r8 *b = (const blk_q6_K_r8 *)g + i;
        const q6z_pre *P = pre ? pre + i : NULL;
        if (!P && pf) r8_prefetch((const char *)b, sizeof *b);
        const blk_q8_K *xb[8];
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) xb[c] = (const blk_q8_K *)(xv + (size_t)c * xs) + i;
        const __m256 d8 = P ? P->d8 : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->d));
        __m512i sumi[8];
        _Pragma("GCC unroll 16")
        for (int j = 0; j < 16; j++) {
            const __m512i scv = P ? P->scv[j] : q6z_scv(b, j);
            const __m512i v0 = P ? P->op[j][0] : q6z_operand(b, j, 0), v1 = P ? P->op[j][1] : q6z_operand(b, j, 1);
            _Pragma("GCC unroll 16")
            for (int c = 0; c < NC; c++) { /* 4 products of at most 63 * 128 per int16 */
                const __m512i p = _mm512_add_epi16(
                    _mm512_maddubs_epi16(v0, _mm512_set1_epi64(z_ld64(xb[c]->qs + 16 * j))),
                    _mm512_maddubs_epi16(v1, _mm512_set1_epi64(z_ld64(xb[c]->qs + 16 * j + 8))));
                sumi[c] = j ? _mm512_dpwssd_epi32(sumi[c], p, scv) : _mm512_madd_epi16(p, scv);
            }
        }
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) {
            /* -32 * sum_j sc[j] * bsums[j]: the offset of the unsigned 6-bit quants */
            __m256i off = _mm256_setzero_si256();
            _Pragma("GCC unroll 16")
            for (int v4 = 0; v4 < 4; v4++)
                off = _mm256_add_epi32(
                    off, r8_scale_bsums(P ? P->sc[v4] : _mm256_loadu_si256((const __m256i *)(b->sc + 32 * v4)),
                                        xb[c]->bsums + 4 * v4));
            const __m256i tot = _mm256_sub_epi32(z_rows(sumi[c]), _mm256_slli_epi32(off, 5));
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(d8, _mm256_set1_ps(xb[c]->d)), _mm256_cvtepi32_ps(tot), acc[c]);
        }
    }
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(y + c * ys, acc[c]);
}

/* ---- Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 _R8F ------------------------------------------------------------------ */

/* 8 rows x NC (<= 2) columns (pre: the columns' table rows, rb_prepare with vnni) on 256-bit
 * vectors: for one or two columns (decode) the 512-bit tile's pairing costs more than it saves.
 * Two int32 chains per column (low / high nibbles; Q8_0: even / odd vectors). */
Q_INLINE void rbv_tile(const int T, const int NC, const char *g, int64_t nb, const char *xv, size_t xs,
                       const rb_pre *pre, float *y, int64_t ys, bool pf) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m16 = _mm256_set1_epi8(0x10), bias = _mm256_set1_epi8((char)0x80);
    const size_t bsz = rb_bsz(T);
    __m256 acc[8];
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const char *blk = g + (size_t)i * bsz;
        if (pf) r8_prefetch(blk, bsz);
        const uint8_t *qs = (const uint8_t *)blk + rb_qs(T);
        const int8_t *xq[8];
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) xq[c] = ((const blk_q8_0 *)(xv + (size_t)c * xs) + i)->qs;
        /* the sums start at rb_prepare's -aux / 2 each (offset types and Q8_0), else 0 */
        __m256i s0[8];
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++)
            s0[c] = rb_min(T) ? _mm256_setzero_si256() : _mm256_set1_epi32(pre[(size_t)c * (size_t)nb + i].aux.i);
        __m256i sa[8], sb[8];
        if (T == R_Q8_0) {
            _Pragma("GCC unroll 16")
            for (int e = 0; e < 8; e++) {
                const __m256i w = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(qs + 32 * e)), bias);
                _Pragma("GCC unroll 16")
                for (int c = 0; c < NC; c++) {
                    __m256i *s = e & 1 ? &sb[c] : &sa[c];
                    *s = _mm256_dpbusd_epi32(e > 1 ? *s : s0[c], w, bcast32(xq[c] + 4 * e));
                }
            }
        } else {
            __m256i qh = _mm256_setzero_si256();
            if (rb_q5(T)) qh = _mm256_loadu_si256((const __m256i *)(blk + rb_qh(T)));
            _Pragma("GCC unroll 16")
            for (int v = 0; v < 4; v++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * v));
                __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                if (rb_q5(T)) { /* group e's 5th bit (bit e of each byte) to bit 4: e = v (low), v + 4 (high) */
                    const __m256i hl = _mm256_slli_epi16(qh, 4 - v);
                    const __m256i hh = v == 0 ? qh : _mm256_srli_epi16(qh, v);
                    lo = _mm256_or_si256(lo, _mm256_and_si256(hl, m16));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(hh, m16));
                }
                _Pragma("GCC unroll 16")
                for (int c = 0; c < NC; c++) {
                    sa[c] = _mm256_dpbusd_epi32(v ? sa[c] : s0[c], lo, bcast32(xq[c] + 4 * v));
                    sb[c] = _mm256_dpbusd_epi32(v ? sb[c] : s0[c], hi, bcast32(xq[c] + 16 + 4 * v));
                }
            }
        }
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
        __m256 m8 = _mm256_setzero_ps();
        if (rb_min(T)) m8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16)));
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) {
            const rb_pre *p = pre + (size_t)c * (size_t)nb + i;
            const __m256i s = _mm256_add_epi32(sa[c], sb[c]);
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(d8, _mm256_set1_ps(p->dx)), _mm256_cvtepi32_ps(s), acc[c]);
            if (rb_min(T)) acc[c] = _mm256_fmadd_ps(m8, _mm256_set1_ps(p->aux.f), acc[c]);
        }
    }
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(y + c * ys, acc[c]);
}

/* zmm (a in lanes 0-7, b in 8-15) */
Q_INLINE __m512 z_halves(__m256 a, __m256 b) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(a)), _mm256_castps_pd(b), 1));
}

/* 8 rows x NC (<= 8) columns (pre: the columns' table rows, rb_prepare with vnni) on 512-bit
 * vectors, as k45z_tile: a zmm is the R8 vectors 2u, 2u + 1 with dwords permuted (z_perm), one
 * 8-byte activation broadcast per zmm, one int32 chain per column (dword pairs 2r, 2r + 1 of row
 * r). Per block, the pairs of columns c, c + 1 are added into one zmm of both columns' rows
 * (two vpermt2d and an add) and scaled there, so the per-block tail costs half a 256-bit one.
 * The integer sums and the float operations are the 256-bit kernel's. */
Q_INLINE void rbz_tile(const int T, const int NC, const char *g, int64_t nb, const char *xv, size_t xs,
                       const rb_pre *pre, float *y, int64_t ys, bool pf) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m16 = _mm512_set1_epi8(0x10), bias = _mm512_set1_epi8((char)0x80);
    const __m512i perm = z_perm(), dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const size_t bsz = rb_bsz(T);
    const int NP = (NC + 1) / 2;
    __m512 acc[4];
    _Pragma("GCC unroll 16")
    for (int p = 0; p < NP; p++) acc[p] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const char *blk = g + (size_t)i * bsz;
        if (pf) r8_prefetch(blk, bsz);
        const uint8_t *qs = (const uint8_t *)blk + rb_qs(T);
        const int8_t *xq[8];
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++) xq[c] = ((const blk_q8_0 *)(xv + (size_t)c * xs) + i)->qs;
        /* the sums start at rb_prepare's -aux / 2 in both dwords of a row (offset types and Q8_0), else 0 */
        __m512i s[8];
        _Pragma("GCC unroll 16")
        for (int c = 0; c < NC; c++)
            s[c] = rb_min(T) ? _mm512_setzero_si512() : _mm512_set1_epi32(pre[(size_t)c * (size_t)nb + i].aux.i);
        if (T == R_Q8_0) {
            _Pragma("GCC unroll 16")
            for (int u = 0; u < 4; u++) {
                const __m512i w = _mm512_xor_si512(
                    _mm512_permutexvar_epi32(perm, _mm512_loadu_si512((const void *)(qs + 64 * u))), bias);
                _Pragma("GCC unroll 16")
                for (int c = 0; c < NC; c++) s[c] = _mm512_dpbusd_epi32(s[c], w, _mm512_set1_epi64(z_ld64(xq[c] + 8 * u)));
            }
        } else {
            __m512i hz = _mm512_setzero_si512();
            if (rb_q5(T))
                hz = _mm512_permutexvar_epi32(dup,
                                              _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(blk + rb_qh(T)))));
            _Pragma("GCC unroll 16")
            for (int u = 0; u < 2; u++) {
                const __m512i q = _mm512_permutexvar_epi32(perm, _mm512_loadu_si512((const void *)(qs + 64 * u)));
                __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
                if (rb_q5(T)) { /* vector 2u + e: 5th bits at bit 2u + e (low), 2u + e + 4 (high), to bit 4 */
                    const __m512i sl = _mm512_set1_epi64(((int64_t)(3 - 2 * u) << 32) | (4 - 2 * u));
                    const __m512i sr = _mm512_set1_epi64(((int64_t)(2 * u + 1) << 32) | (2 * u));
                    lo = _mm512_ternarylogic_epi32(lo, _mm512_sllv_epi32(hz, sl), m16, 0xF8);
                    hi = _mm512_ternarylogic_epi32(hi, _mm512_srlv_epi32(hz, sr), m16, 0xF8);
                }
                _Pragma("GCC unroll 16")
                for (int c = 0; c < NC; c++) {
                    s[c] = _mm512_dpbusd_epi32(s[c], lo, _mm512_set1_epi64(z_ld64(xq[c] + 8 * u)));
                    s[c] = _mm512_dpbusd_epi32(s[c], hi, _mm512_set1_epi64(z_ld64(xq[c] + 16 + 8 * u)));
                }
            }
        }
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
        const __m512 d16 = z_halves(d8, d8);
        __m512 m16f = _mm512_setzero_ps();
        if (rb_min(T)) {
            const __m256 m8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16)));
            m16f = z_halves(m8, m8);
        }
        _Pragma("GCC unroll 16")
        for (int p = 0; p < NP; p++) {
            const int c0 = 2 * p, c1 = 2 * p + 1 < NC ? 2 * p + 1 : 2 * p; /* an odd last column pairs with itself */
            const rb_pre *p0 = pre + (size_t)c0 * (size_t)nb + i, *p1 = pre + (size_t)c1 * (size_t)nb + i;
            const __m512i r = _mm512_add_epi32(_mm512_permutex2var_epi32(s[c0], ev, s[c1]),
                                               _mm512_permutex2var_epi32(s[c0], od, s[c1]));
            const __m512 dx = z_halves(_mm256_set1_ps(p0->dx), _mm256_set1_ps(p1->dx));
            acc[p] = _mm512_fmadd_ps(_mm512_mul_ps(d16, dx), _mm512_cvtepi32_ps(r), acc[p]);
            if (rb_min(T))
                acc[p] = _mm512_fmadd_ps(m16f, z_halves(_mm256_set1_ps(p0->aux.f), _mm256_set1_ps(p1->aux.f)), acc[p]);
        }
    }
    _Pragma("GCC unroll 16")
    for (int c = 0; c < NC; c++) {
        const __m512 a = acc[c / 2];
        _mm256_storeu_ps(y + c * ys, c & 1 ? _mm512_extractf32x8_ps(a, 1) : _mm512_castps512_ps256(a));
    }
}

/* ---- drivers ----------------------------------------------------------------------------------------- */

#define Q4V_TILE(N, ...) k45z_tile(0, N, __VA_ARGS__)
#define Q5V_TILE(N, ...) k45z_tile(1, N, __VA_ARGS__)
#define Q4V_UNPACK(...) k45z_unpack(0, __VA_ARGS__)
#define Q5V_UNPACK(...) k45z_unpack(1, __VA_ARGS__)
R8_DRIVER_BP(mm_q4_K_r8f_vnni, Q4V_TILE, 6, k45z_pre, K45Z_PRE_MAX, Q4V_UNPACK)
R8_DRIVER_BP(mm_q5_K_r8f_vnni, Q5V_TILE, 6, k45z_pre, K45Z_PRE_MAX, Q5V_UNPACK)
R8_DRIVER_PRE(mm_q6_K_r8f_vnni, q6z_tile, 6, q6z_pre, Q6Z_PRE_MAX, q6z_unpack)
/* one or two columns: 256-bit; more: 512-bit */
#define RBZ_TILE(T, N, ...) ((N) <= 2 ? rbv_tile(T, N, __VA_ARGS__) : rbz_tile(T, N, __VA_ARGS__))
RB_DRIVER(mm_q4_0_r8f_vnni, R_Q4_0, RBZ_TILE, 1, 8)
RB_DRIVER(mm_q4_1_r8f_vnni, R_Q4_1, RBZ_TILE, 1, 8)
RB_DRIVER(mm_q5_0_r8f_vnni, R_Q5_0, RBZ_TILE, 1, 8)
RB_DRIVER(mm_q5_1_r8f_vnni, R_Q5_1, RBZ_TILE, 1, 8)
RB_DRIVER(mm_q8_0_r8f_vnni, R_Q8_0, RBZ_TILE, 1, 8)

quant_mm_fn quant_vnni_kernel_r8(uint32_t wtype) {
    switch (wtype) {
    case MR_TYPE_Q4_K_R8F: return mm_q4_K_r8f_vnni;
    case MR_TYPE_Q5_K_R8F: return mm_q5_K_r8f_vnni;
    case MR_TYPE_Q6_K_R8F: return mm_q6_K_r8f_vnni;
    case MR_TYPE_Q4_0_R8F: return mm_q4_0_r8f_vnni;
    case MR_TYPE_Q4_1_R8F: return mm_q4_1_r8f_vnni;
    case MR_TYPE_Q5_0_R8F: return mm_q5_0_r8f_vnni;
    case MR_TYPE_Q5_1_R8F: return mm_q5_1_r8f_vnni;
    case MR_TYPE_Q8_0_R8F: return mm_q8_0_r8f_vnni;
    default: return NULL;
    }
}
