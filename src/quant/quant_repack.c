/*
 * quant_repack.c — GGUF rows (K-quants, 32-element block types) <-> the
 * row-interleaved R8 layouts of quant_impl.h, and the scalar kernel for R8 weights.
 *
 * Repacking is a permutation of the same information: every quant, scale and
 * d of 8 rows is moved, nothing is re-rounded, so quant_unpack_r8(quant_repack(x))
 * == x byte for byte and a kernel on R8 data computes the same integer sums
 * as on the GGUF blocks.
 */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "quant/quant_impl.h"

/* ---- per-block field codecs ------------------------------------------------------------ */

static inline uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* The 12 packed 6-bit scale/min bytes of a Q4_K/Q5_K block from sc[8], mn[8] (the inverse
 * of quant_k4_scales). */
static void k4_pack_scales(const uint8_t *sc, const uint8_t *mn, uint8_t *q) {
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        q[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        q[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
    }
}

/* Scales and mins of 8 rows <-> the scl/sch fields (K8_SIDX). */
static void k8_put_scales(uint8_t *scl, uint8_t *sch, int r, const uint8_t *sc, const uint8_t *mn) {
    for (int j = 0; j < 8; j++) {
        scl[K8_SIDX(j, r)] = (uint8_t)((sc[j] & 0xF) | ((mn[j] & 0xF) << 4));
        const int sh = j < 4 ? 0 : 4;
        uint8_t *h = &sch[K8_SIDX(j & 3, r)];
        *h = (uint8_t)((*h & ~(0xF << sh)) | (((sc[j] >> 4) | ((mn[j] >> 4) << 2)) << sh));
    }
}
static void k8_get_scales(const uint8_t *scl, const uint8_t *sch, int r, uint8_t *sc, uint8_t *mn) {
    for (int j = 0; j < 8; j++) {
        const uint8_t l = scl[K8_SIDX(j, r)], h = (uint8_t)(sch[K8_SIDX(j & 3, r)] >> (j < 4 ? 0 : 4));
        sc[j] = (uint8_t)((l & 0xF) | ((h & 3) << 4));
        mn[j] = (uint8_t)((l >> 4) | (((h >> 2) & 3) << 4));
    }
}

/* Q4_K / Q5_K qs: GGUF qs[32*j2 + l] <-> vector 8*j2 + l/4, lane r, byte l%4 (same byte:
 * the low/high nibble pairing is the same in both layouts). */
static inline size_t k8_qs_idx(int r, int l32) { return (size_t)32 * (size_t)(l32 >> 2) + 4 * (size_t)r + (size_t)(l32 & 3); }

/* Q5_K high bits: element 64*j2 + l (low nibble of qs[32*j2 + l]) has its 5th bit at GGUF qh[l]
 * bit 2*j2, element 64*j2 + 32 + l at bit 2*j2 + 1. In R8: qs vector v = 8*j2 + l/4 = 4w + p,
 * bits 2p (low) and 2p+1 (high) of qh[32w + 4r + l%4]. */
static inline size_t k5_qh_idx(int r, int j2, int l) {
    const int v = 8 * j2 + l / 4;
    return (size_t)32 * (size_t)(v >> 2) + 4 * (size_t)r + (size_t)(l & 3);
}
static inline int k5_qh_bit(int j2, int l) { return 2 * ((8 * j2 + l / 4) & 3); }

/* Q6_K: set element e (0..255) of a GGUF block to q (0..63). */
static inline void q6_set(blk_q6_K *b, int e, int q) {
    const int n = e / 128, g = (e % 128) / 32, l = e % 32;
    uint8_t *ql = &b->ql[64 * n + 32 * (g & 1) + l], *qh = &b->qh[32 * n + l];
    if (g < 2) *ql = (uint8_t)((*ql & 0xF0) | (q & 0xF));
    else *ql = (uint8_t)((*ql & 0x0F) | ((q & 0xF) << 4));
    *qh = (uint8_t)((*qh & ~(3 << (2 * g))) | (((q >> 4) & 3) << (2 * g)));
}
/* R8 positions of element e of row r: ql byte and nibble, qh byte and shift. */
static inline void q6r8_pos(int r, int e, size_t *qli, int *qlsh, size_t *qhi, int *qhsh) {
    const int o = e / 4, t = e % 4;
    *qli = q6r8_ql(o & 31) + 4 * (size_t)r + (size_t)t;
    *qlsh = o < 32 ? 0 : 4;
    *qhi = q6r8_qh(o & 15) + 4 * (size_t)r + (size_t)t;
    *qhsh = 2 * (o >> 4);
}

/* ---- one 256-block of 8 rows ----------------------------------------------------------------- */

/* Q4_K/Q5_K qs of 8 rows: for each 32-byte chunk j2, an 8 x 8 transpose of 4-byte words
 * (row r's word m goes to vector 8*j2 + m, lane r). */
static void k8_pack_qs(const uint8_t *const *rows_qs, uint8_t *qs) {
    for (int j2 = 0; j2 < 4; j2++)
        for (int r = 0; r < 8; r++)
            for (int m = 0; m < 8; m++) memcpy(qs + 256 * j2 + 32 * m + 4 * r, rows_qs[r] + 32 * j2 + 4 * m, 4);
}

static void pack_q4_K(const blk_q4_K *const *src, blk_q4_K_r8 *d) {
    memset(d->sch, 0, sizeof d->sch);
    const uint8_t *qs[8];
    for (int r = 0; r < 8; r++) {
        const blk_q4_K *b = src[r];
        d->d[r] = b->d, d->dmin[r] = b->dmin;
        uint8_t sc[8], mn[8];
        quant_k4_scales(b->scales, sc, mn);
        k8_put_scales(d->scl, d->sch, r, sc, mn);
        qs[r] = b->qs;
    }
    k8_pack_qs(qs, d->qs);
}
static void unpack_q4_K(const blk_q4_K_r8 *s, blk_q4_K *const *dst) {
    for (int r = 0; r < 8; r++) {
        blk_q4_K *b = dst[r];
        b->d = s->d[r], b->dmin = s->dmin[r];
        uint8_t sc[8], mn[8];
        k8_get_scales(s->scl, s->sch, r, sc, mn);
        k4_pack_scales(sc, mn, b->scales);
        for (int j2 = 0; j2 < 4; j2++)
            for (int l = 0; l < 32; l++) b->qs[32 * j2 + l] = s->qs[256 * j2 + k8_qs_idx(r, l)];
    }
}

static void pack_q5_K(const blk_q5_K *const *src, blk_q5_K_r8 *d) {
    memset(d->sch, 0, sizeof d->sch);
    const uint8_t *qs[8];
    for (int r = 0; r < 8; r++) {
        const blk_q5_K *b = src[r];
        d->d[r] = b->d, d->dmin[r] = b->dmin;
        uint8_t sc[8], mn[8];
        quant_k4_scales(b->scales, sc, mn);
        k8_put_scales(d->scl, d->sch, r, sc, mn);
        qs[r] = b->qs;
        /* qh vector w, byte 4r + t: bits 2p, 2p+1 = GGUF qh[l] bits 2*j2, 2*j2 + 1 for qs vector
         * v = 4w + p = 8*j2 + l/4, l = 4*(v % 8) + t: j2 = w/2 and l = 16*(w%2) + 4p + t, so
         * the 4 bytes t = 0..3 come from the 32-bit words of qh at 16*(w%2) + 4p */
        for (int w = 0; w < 8; w++) {
            const int sh = 2 * (w >> 1);
            uint32_t word = 0;
            for (int p = 0; p < 4; p++) word |= ((rd32(b->qh + 16 * (w & 1) + 4 * p) >> sh) & 0x03030303u) << (2 * p);
            wr32(d->qh + 32 * w + 4 * r, word);
        }
    }
    k8_pack_qs(qs, d->qs);
}
static void unpack_q5_K(const blk_q5_K_r8 *s, blk_q5_K *const *dst) {
    for (int r = 0; r < 8; r++) {
        blk_q5_K *b = dst[r];
        b->d = s->d[r], b->dmin = s->dmin[r];
        uint8_t sc[8], mn[8];
        k8_get_scales(s->scl, s->sch, r, sc, mn);
        k4_pack_scales(sc, mn, b->scales);
        memset(b->qh, 0, sizeof b->qh);
        for (int j2 = 0; j2 < 4; j2++)
            for (int l = 0; l < 32; l++) {
                b->qs[32 * j2 + l] = s->qs[256 * j2 + k8_qs_idx(r, l)];
                const int bits = (s->qh[k5_qh_idx(r, j2, l)] >> k5_qh_bit(j2, l)) & 3;
                b->qh[l] |= (uint8_t)(bits << (2 * j2));
            }
    }
}

static void pack_q6_K(const blk_q6_K *const *src, blk_q6_K_r8 *d) {
    for (int r = 0; r < 8; r++) {
        const blk_q6_K *b = src[r];
        d->d[r] = b->d;
        for (int j = 0; j < 16; j++) d->sc[K8_SIDX(j, r)] = b->scales[j];
        /* the 256 quants (0..63) in element order, as ggml's dequantization walks them; 4 bytes at
         * a time (the nibble and 2-bit fields of 4 consecutive elements sit in 4 consecutive bytes) */
        uint8_t q[256];
        for (int n = 0; n < 2; n++)
            for (int l = 0; l < 32; l += 4) {
                const uint32_t ql0 = rd32(b->ql + 64 * n + l), ql1 = rd32(b->ql + 64 * n + 32 + l),
                               qh = rd32(b->qh + 32 * n + l);
                wr32(q + 128 * n + l, (ql0 & 0x0F0F0F0Fu) | ((qh & 0x03030303u) << 4));
                wr32(q + 128 * n + 32 + l, (ql1 & 0x0F0F0F0Fu) | (((qh >> 2) & 0x03030303u) << 4));
                wr32(q + 128 * n + 64 + l, ((ql0 >> 4) & 0x0F0F0F0Fu) | (((qh >> 4) & 0x03030303u) << 4));
                wr32(q + 128 * n + 96 + l, ((ql1 >> 4) & 0x0F0F0F0Fu) | (((qh >> 6) & 0x03030303u) << 4));
            }
        for (int v = 0; v < 32; v++)
            wr32(d->q + q6r8_ql(v) + 4 * r,
                 (rd32(q + 4 * v) & 0x0F0F0F0Fu) | ((rd32(q + 4 * (v + 32)) & 0x0F0F0F0Fu) << 4));
        for (int u = 0; u < 16; u++) {
            uint32_t word = 0;
            for (int s2 = 0; s2 < 4; s2++) word |= ((rd32(q + 4 * (u + 16 * s2)) >> 4) & 0x03030303u) << (2 * s2);
            wr32(d->q + q6r8_qh(u) + 4 * r, word);
        }
    }
}
static void unpack_q6_K(const blk_q6_K_r8 *s, blk_q6_K *const *dst) {
    for (int r = 0; r < 8; r++) {
        blk_q6_K *b = dst[r];
        memset(b, 0, sizeof *b);
        b->d = s->d[r];
        for (int j = 0; j < 16; j++) b->scales[j] = s->sc[K8_SIDX(j, r)];
        for (int e = 0; e < 256; e++) {
            size_t qli, qhi;
            int qlsh, qhsh;
            q6r8_pos(r, e, &qli, &qlsh, &qhi, &qhsh);
            q6_set(b, e, ((s->q[qli] >> qlsh) & 0xF) | (((s->q[qhi] >> qhsh) & 3) << 4));
        }
    }
}

/* Q3_K: element e's u (0..7: low 2 bits | high bit << 2) and the 16 6-bit scales of a GGUF block
 * (ggml's dequantization order), and back. */
/* Q2_K / Q3_K 2-bit quants (element 128n + 32j + l at qs[32n + l] bits 2j; Q3_K's high bit at
 * hmask[l] bit 4n + j, or none) -> u[256], 4 elements at a time. */
static void k23_get_u(const uint8_t *qs, const uint8_t *hmask, uint8_t *u) {
    for (int n = 0; n < 2; n++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l += 4) {
                uint32_t w = (rd32(qs + 32 * n + l) >> (2 * j)) & 0x03030303u;
                if (hmask) w |= ((rd32(hmask + l) >> (4 * n + j)) & 0x01010101u) << 2;
                wr32(u + 128 * n + 32 * j + l, w);
            }
}
/* The low 2 bits of u[] into row r's lanes of the R8 qs vectors (quant_impl.h), and back. */
static void k23_put_qs(const uint8_t *u, uint8_t *qs, int r) {
    for (int v = 0; v < 16; v++) { /* the 4 bytes t = 0..3 at once */
        uint32_t word = 0;
        for (int k = 0; k < 4; k++) word |= (rd32(u + 4 * (v + 16 * k)) & 0x03030303u) << (2 * k);
        wr32(qs + 32 * v + 4 * r, word);
    }
}
static int k23_low(const uint8_t *qs, int r, int e) {
    const int o = e / 4;
    return (qs[32 * (o & 15) + 4 * r + e % 4] >> (2 * (o >> 4))) & 3;
}

static void q3_get(const blk_q3_K *b, uint8_t *u, uint8_t *sc) {
    k23_get_u(b->qs, b->hmask, u);
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? b->scales[j] & 0xF : b->scales[j - 8] >> 4;
        sc[j] = (uint8_t)(lo | (((b->scales[8 + (j & 3)] >> (2 * (j >> 2))) & 3) << 4));
    }
}
static void q3_put(blk_q3_K *b, const uint8_t *u, const uint8_t *sc) {
    memset(b->qs, 0, sizeof b->qs);
    memset(b->hmask, 0, sizeof b->hmask);
    for (int e = 0; e < 256; e++) {
        const int n = e / 128, j = (e % 128) / 32, l = e % 32;
        b->qs[32 * n + l] |= (uint8_t)((u[e] & 3) << (2 * j));
        b->hmask[l] |= (uint8_t)(((u[e] >> 2) & 1) << (4 * n + j));
    }
    for (int i = 0; i < 4; i++) {
        b->scales[i] = (uint8_t)((sc[i] & 0xF) | ((sc[i + 8] & 0xF) << 4));
        b->scales[i + 4] = (uint8_t)((sc[i + 4] & 0xF) | ((sc[i + 12] & 0xF) << 4));
        unsigned h = 0;
        for (int k = 0; k < 4; k++) h |= (unsigned)((sc[i + 4 * k] >> 4) & 3) << (2 * k);
        b->scales[i + 8] = (uint8_t)h;
    }
}

static void pack_q3_K(const blk_q3_K *const *src, blk_q3_K_r8 *d) {
    memset(d->scl, 0, sizeof d->scl);
    memset(d->sch, 0, sizeof d->sch);
    for (int r = 0; r < 8; r++) {
        const blk_q3_K *b = src[r];
        uint8_t u[256], sc[16];
        q3_get(b, u, sc);
        d->d[r] = b->d;
        for (int j = 0; j < 16; j++) {
            d->scl[K8_SIDX(j & 7, r)] |= (uint8_t)((sc[j] & 0xF) << (j < 8 ? 0 : 4));
            d->sch[K8_SIDX(j & 3, r)] |= (uint8_t)((sc[j] >> 4) << (2 * (j >> 2)));
        }
        k23_put_qs(u, d->qs, r);
        for (int w = 0; w < 8; w++) {
            uint32_t word = 0;
            for (int k = 0; k < 8; k++) word |= ((rd32(u + 4 * (w + 8 * k)) >> 2) & 0x01010101u) << k;
            wr32(d->hm + 32 * w + 4 * r, word);
        }
    }
}
static void unpack_q3_K(const blk_q3_K_r8 *s, blk_q3_K *const *dst) {
    for (int r = 0; r < 8; r++) {
        uint8_t u[256], sc[16];
        for (int j = 0; j < 16; j++)
            sc[j] = (uint8_t)(((s->scl[K8_SIDX(j & 7, r)] >> (j < 8 ? 0 : 4)) & 0xF) |
                              (((s->sch[K8_SIDX(j & 3, r)] >> (2 * (j >> 2))) & 3) << 4));
        for (int e = 0; e < 256; e++) {
            const int o = e / 4, hi = (s->hm[32 * (o & 7) + 4 * r + e % 4] >> (o >> 3)) & 1;
            u[e] = (uint8_t)(k23_low(s->qs, r, e) | hi << 2);
        }
        dst[r]->d = s->d[r];
        q3_put(dst[r], u, sc);
    }
}

/* Q2_K: qs as Q3_K's low bits (element 128n + 32j + l: qs[32n + l] bits 2j), scale bytes as they are. */
static void pack_q2_K(const blk_q2_K *const *src, blk_q2_K_r8 *d) {
    for (int r = 0; r < 8; r++) {
        const blk_q2_K *b = src[r];
        d->d[r] = b->d, d->dmin[r] = b->dmin;
        for (int j = 0; j < 16; j++) d->sc[K8_SIDX(j & 3, r) + 32 * (j >> 2)] = b->scales[j];
        uint8_t u[256];
        k23_get_u(b->qs, NULL, u);
        k23_put_qs(u, d->qs, r);
    }
}
static void unpack_q2_K(const blk_q2_K_r8 *s, blk_q2_K *const *dst) {
    for (int r = 0; r < 8; r++) {
        blk_q2_K *b = dst[r];
        b->d = s->d[r], b->dmin = s->dmin[r];
        for (int j = 0; j < 16; j++) b->scales[j] = s->sc[K8_SIDX(j & 3, r) + 32 * (j >> 2)];
        memset(b->qs, 0, sizeof b->qs);
        for (int e = 0; e < 256; e++)
            b->qs[32 * (e / 128) + e % 32] |= (uint8_t)(k23_low(s->qs, r, e) << (2 * ((e % 128) / 32)));
    }
}

/* IQ4_XS: scales re-laid (quant_impl.h), quant bytes moved 4 at a time. */
static int iq4xs_ls(const blk_iq4_xs *b, int ib) {
    return ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b->scales_h >> (2 * ib)) & 3) << 4);
}
static void pack_iq4_xs(const blk_iq4_xs *const *src, blk_iq4_xs_r8 *d) {
    memset(d->scl, 0, sizeof d->scl);
    memset(d->sch, 0, sizeof d->sch);
    for (int r = 0; r < 8; r++) {
        const blk_iq4_xs *b = src[r];
        d->d[r] = b->d;
        for (int ib = 0; ib < 8; ib++) {
            const int ls = iq4xs_ls(b, ib), p = K8_SIDX(ib & 3, r);
            d->scl[p] |= (uint8_t)((ls & 0xF) << (ib < 4 ? 0 : 4));
            d->sch[p / 2] |= (uint8_t)(((ls >> 4) << (ib < 4 ? 0 : 2)) << (4 * (p % 2)));
        }
        for (int v = 0; v < 32; v++) memcpy(d->qs + 32 * v + 4 * r, b->qs + 4 * v, 4);
    }
}
static void unpack_iq4_xs(const blk_iq4_xs_r8 *s, blk_iq4_xs *const *dst) {
    for (int r = 0; r < 8; r++) {
        blk_iq4_xs *b = dst[r];
        b->d = s->d[r];
        b->scales_h = 0;
        memset(b->scales_l, 0, sizeof b->scales_l);
        for (int ib = 0; ib < 8; ib++) {
            const int p = K8_SIDX(ib & 3, r);
            const int lo = (s->scl[p] >> (ib < 4 ? 0 : 4)) & 0xF;
            const int hi = (s->sch[p / 2] >> (4 * (p % 2) + (ib < 4 ? 0 : 2))) & 3;
            b->scales_l[ib / 2] |= (uint8_t)(lo << (4 * (ib % 2)));
            b->scales_h |= (uint16_t)(hi << (2 * ib));
        }
        for (int v = 0; v < 32; v++) memcpy(b->qs + 4 * v, s->qs + 32 * v + 4 * r, 4);
    }
}

/* ---- one 32-block of 8 rows (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0; layout in quant_impl.h) ---------------- */

/* Field offsets of a GGUF 32-block and of its R8 form. */
typedef struct { bool min, q5, q8; int qh, qs; int r8_qh, r8_qs; } b32_fmt;
static b32_fmt b32_format(uint32_t t) {
    b32_fmt f = {.min = t == MR_TYPE_Q4_1 || t == MR_TYPE_Q5_1, .q5 = t == MR_TYPE_Q5_0 || t == MR_TYPE_Q5_1,
                 .q8 = t == MR_TYPE_Q8_0};
    f.qh = f.min ? 4 : 2;
    f.qs = f.qh + (f.q5 ? 4 : 0);
    f.r8_qh = f.min ? 32 : 16;
    f.r8_qs = f.r8_qh + (f.q5 ? 32 : 0);
    return f;
}

static void pack_b32(uint32_t t, const uint8_t *const *src, uint8_t *d) {
    const b32_fmt f = b32_format(t);
    for (int r = 0; r < 8; r++) {
        const uint8_t *b = src[r];
        memcpy(d + 2 * r, b, 2);
        if (f.min) memcpy(d + 16 + 2 * r, b + 2, 2);
        if (f.q5) {
            const uint32_t h = rd32(b + f.qh);
            for (int t4 = 0; t4 < 4; t4++) { /* bits t4, t4 + 4, ..., t4 + 28 -> bits 0..7 */
                uint32_t x = (h >> t4) & 0x11111111u;
                x = (x | (x >> 3)) & 0x03030303u;
                x = (x | (x >> 6)) & 0x000F000Fu;
                d[f.r8_qh + 4 * r + t4] = (uint8_t)(x | (x >> 12));
            }
        }
        const int nv = f.q8 ? 8 : 4;
        for (int v = 0; v < nv; v++) memcpy(d + f.r8_qs + 32 * v + 4 * r, b + f.qs + 4 * v, 4);
    }
}
static void unpack_b32(uint32_t t, const uint8_t *s, uint8_t *const *dst) {
    const b32_fmt f = b32_format(t);
    for (int r = 0; r < 8; r++) {
        uint8_t *b = dst[r];
        memcpy(b, s + 2 * r, 2);
        if (f.min) memcpy(b + 2, s + 16 + 2 * r, 2);
        if (f.q5) {
            uint32_t h = 0;
            for (int t4 = 0; t4 < 4; t4++)
                for (int e = 0; e < 8; e++) h |= (uint32_t)((s[f.r8_qh + 4 * r + t4] >> e) & 1u) << (4 * e + t4);
            memcpy(b + f.qh, &h, 4);
        }
        const int nv = f.q8 ? 8 : 4;
        for (int v = 0; v < nv; v++) memcpy(b + f.qs + 4 * v, s + f.r8_qs + 32 * v + 4 * r, 4);
    }
}

/* ---- rows ---------------------------------------------------------------------------------- */

static bool is_b32(uint32_t t) {
    return t == MR_TYPE_Q4_0 || t == MR_TYPE_Q4_1 || t == MR_TYPE_Q5_0 || t == MR_TYPE_Q5_1 || t == MR_TYPE_Q8_0;
}

bool quant_can_repack(uint32_t t, int64_t k, int64_t m) {
    if (m <= 0 || m % 8 || k <= 0) return false;
    if (t == MR_TYPE_Q2_K || t == MR_TYPE_Q3_K || t == MR_TYPE_IQ4_XS || t == MR_TYPE_Q4_K || t == MR_TYPE_Q5_K || t == MR_TYPE_Q6_K) return k % QK_K == 0;
    return is_b32(t) && k % 32 == 0 && k <= QUANT_R8_B32_MAX_K;
}

/* One group of 8 rows (8 * ws bytes at s) into d, through tmp (8 * ws bytes): s may equal d. */
static void group_convert(uint32_t t, bool pack, const char *s, char *d, char *tmp, size_t ws, int64_t nb) {
    const size_t bs = mr_type_get(t)->tsize;
    for (int64_t i = 0; i < nb; i++) {
        char *grp = tmp + (size_t)i * 8 * bs; /* R8 block i */
        const void *rows_c[8];
        void *rows[8];
        for (int r = 0; r < 8; r++) {
            rows_c[r] = s + (size_t)r * ws + (size_t)i * bs;
            rows[r] = tmp + (size_t)r * ws + (size_t)i * bs;
        }
        if (is_b32(t)) {
            if (pack) pack_b32(t, (const uint8_t *const *)rows_c, (uint8_t *)grp);
            else unpack_b32(t, (const uint8_t *)s + (size_t)i * 8 * bs, (uint8_t *const *)rows);
        } else if (pack) {
            switch (t) {
            case MR_TYPE_Q4_K: pack_q4_K((const blk_q4_K *const *)rows_c, (blk_q4_K_r8 *)grp); break;
            case MR_TYPE_Q5_K: pack_q5_K((const blk_q5_K *const *)rows_c, (blk_q5_K_r8 *)grp); break;
            case MR_TYPE_Q3_K: pack_q3_K((const blk_q3_K *const *)rows_c, (blk_q3_K_r8 *)grp); break;
            case MR_TYPE_Q2_K: pack_q2_K((const blk_q2_K *const *)rows_c, (blk_q2_K_r8 *)grp); break;
            case MR_TYPE_IQ4_XS: pack_iq4_xs((const blk_iq4_xs *const *)rows_c, (blk_iq4_xs_r8 *)grp); break;
            default: pack_q6_K((const blk_q6_K *const *)rows_c, (blk_q6_K_r8 *)grp); break;
            }
        } else {
            const char *sg = s + (size_t)i * 8 * bs;
            switch (t) {
            case MR_TYPE_Q4_K: unpack_q4_K((const blk_q4_K_r8 *)sg, (blk_q4_K *const *)rows); break;
            case MR_TYPE_Q5_K: unpack_q5_K((const blk_q5_K_r8 *)sg, (blk_q5_K *const *)rows); break;
            case MR_TYPE_Q3_K: unpack_q3_K((const blk_q3_K_r8 *)sg, (blk_q3_K *const *)rows); break;
            case MR_TYPE_Q2_K: unpack_q2_K((const blk_q2_K_r8 *)sg, (blk_q2_K *const *)rows); break;
            case MR_TYPE_IQ4_XS: unpack_iq4_xs((const blk_iq4_xs_r8 *)sg, (blk_iq4_xs *const *)rows); break;
            default: unpack_q6_K((const blk_q6_K_r8 *)sg, (blk_q6_K *const *)rows); break;
            }
        }
    }
    memcpy(d, tmp, 8 * ws);
}

static int convert(uint32_t t, bool pack, const void *src, void *dst, int64_t k, int64_t m) {
    if (!quant_can_repack(t, k, m)) {
        mr_seterr("repack: %s rows of %lld x %lld cannot be interleaved by 8", mr_type_name(t), (long long)m,
                  (long long)k);
        return -1;
    }
    const size_t ws = mr_row_size(t, k);
    char *tmp = mr_malloc(8 * ws);
    if (!tmp) return -1;
    for (int64_t g = 0; g < m / 8; g++)
        group_convert(t, pack, (const char *)src + (size_t)g * 8 * ws, (char *)dst + (size_t)g * 8 * ws, tmp, ws,
                      k / mr_type_get(t)->blck);
    free(tmp);
    return 0;
}

int quant_repack(uint32_t t, const void *src, void *dst, int64_t k, int64_t m) {
    return convert(t, true, src, dst, k, m);
}

int quant_unpack_r8(uint32_t t8, const void *src, void *dst, int64_t k, int64_t m) {
    return convert(mr_type_base(t8), false, src, dst, k, m);
}

/* ---- scalar kernel ----------------------------------------------------------------------------- */

void quant_ref_matmul_r8(uint32_t wtype, const void *W, size_t w_stride, int64_t k, int64_t nr, const void *xq,
                         size_t xq_stride, int64_t nc, float *y, int64_t y_stride) {
    const uint32_t t = mr_type_base(wtype);
    MR_ASSERT(nr % 8 == 0);
    char *rows = mr_malloc(8 * w_stride);
    MR_ASSERT(rows);
    for (int64_t g = 0; g < nr / 8; g++) {
        const int rc = convert(t, false, (const char *)W + (size_t)g * 8 * w_stride, rows, k, 8);
        MR_ASSERT(rc == 0);
        quant_ref_matmul(t, rows, w_stride, k, 8, xq, xq_stride, nc, y + g * 8, y_stride);
    }
    free(rows);
}
