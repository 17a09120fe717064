/*
 * mmvq.cuh — the per-thread pieces of the quantized matrix-vector product
 * and of the dequantizer, as __host__ __device__ functions so that
 * tests/cuda/test_cuda_emul.cu runs exactly this code on the host (no GPU
 * needed) against the scalar reference of src/quant.
 *
 * Work unit: a weight row is cut into "units" of 32 (Q4_0, Q8_0, IQ4_NL, and
 * Q2_K, Q3_K, IQ4_XS: an eighth of a 256-block) or 64 (Q4_K, Q5_K, Q6_K: a
 * quarter of a 256-block) elements; a thread computes
 * the dot of one unit with the matching Q8_1 activations and the threads of a
 * row stride over the units (mmvq.cu). Q4_K/Q5_K units are 32 quant bytes at a
 * 16-byte aligned offset: two 128-bit loads per thread, four consecutive
 * threads read one block's 128 quant bytes (coalesced).
 *
 * Activations (Q8_1 SoA row of k): int8 q[k], then float (d, s) per 32
 * elements with x ~= d*q and s = d*sum(q).
 */
#ifndef MR_CUDA_MMVQ_CUH
#define MR_CUDA_MMVQ_CUH

#include "cuda/cuda_common.cuh"

/* Block layouts (bytes): ggml's, read through byte offsets. */
enum {
    MRC_Q4_0_BYTES = 18,  /* d, qs[16] */
    MRC_Q4_1_BYTES = 20,  /* d, m, qs[16] */
    MRC_Q5_0_BYTES = 22,  /* d, qh[4], qs[16] */
    MRC_Q5_1_BYTES = 24,  /* d, m, qh[4], qs[16] */
    MRC_Q8_0_BYTES = 34,  /* d, qs[32] */
    MRC_Q4_K_BYTES = 144, /* d, dmin, scales[12], qs[128] */
    MRC_Q5_K_BYTES = 176, /* d, dmin, scales[12], qh[32], qs[128] */
    MRC_Q6_K_BYTES = 210, /* ql[128], qh[64], scales[16], d */
    MRC_Q2_K_BYTES = 84,  /* scales[16], qs[64], d, dmin */
    MRC_Q3_K_BYTES = 110, /* hmask[32], qs[64], scales[12], d */
    MRC_IQ4_NL_BYTES = 18, /* d, qs[16] */
    MRC_IQ4_XS_BYTES = 136, /* d, scales_h, scales_l[4], qs[128] */
};

/* Elements per unit of a weight type (0: not a quantized type of ours). */
MRC_HD int mrc_unit_elems(uint32_t t) {
    return t == MR_TYPE_Q4_0 || t == MR_TYPE_Q4_1 || t == MR_TYPE_Q5_0 || t == MR_TYPE_Q5_1 || t == MR_TYPE_Q8_0 ||
                   t == MR_TYPE_Q2_K || t == MR_TYPE_Q3_K || t == MR_TYPE_IQ4_NL || t == MR_TYPE_IQ4_XS
               ? 32
           : t == MR_TYPE_Q4_K || t == MR_TYPE_Q5_K || t == MR_TYPE_Q6_K ? 64
                                                                          : 0;
}

/* Float weight types the float kernels read (F32, F16, BF16): one lane's element as float. */
struct mrc_bf16 {
    uint16_t x;
};
MRC_HD float mrc_bf2f(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
MRC_HD float mrc_w2f(float v) { return v; }
MRC_HD float mrc_w2f(__half v) { return __half2float(v); }
MRC_HD float mrc_w2f(mrc_bf16 v) { return mrc_bf2f(v.x); }
/* Four consecutive float weights from a 4-element aligned address (one 16- or 8-byte load). */
struct alignas(8) mrc_u16x4 {
    uint16_t v[4];
};
MRC_HD void mrc_w4(const float *p, float *w) {
    const float4 v = *(const float4 *)p;
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
}
MRC_HD void mrc_w4(const __half *p, float *w) {
    const mrc_u16x4 v = *(const mrc_u16x4 *)p;
    for (int i = 0; i < 4; i++) w[i] = mrc_h2f(v.v[i]);
}
MRC_HD void mrc_w4(const mrc_bf16 *p, float *w) {
    const mrc_u16x4 v = *(const mrc_u16x4 *)p;
    for (int i = 0; i < 4; i++) w[i] = mrc_bf2f(v.v[i]);
}

/* IQ4_NL / IQ4_XS: four 4-bit indices (one in the low nibble of each byte of q) to the four
 * int8 values of the non-linear table: two byte permutations (indices 0-7 and 8-15) and a
 * per-byte choice by bit 3. The host runs the same steps on mrc_byte_perm's emulation. */
MRC_HD uint32_t mrc_byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#ifdef __CUDA_ARCH__
    return __byte_perm(x, y, s);
#else
    const uint64_t v = (uint64_t)x | ((uint64_t)y << 32);
    uint32_t r = 0;
    for (int n = 0; n < 4; n++) r |= (uint32_t)((v >> (8 * ((s >> (4 * n)) & 7))) & 0xFF) << (8 * n);
    return r;
#endif
}
MRC_HD int mrc_iq4_lut(int q) {
    /* -127 -104 -83 -65 | -49 -35 -22 -10 | 1 13 25 38 | 53 69 89 113, little-endian bytes */
    const uint32_t t0 = 0xBFAD9881u, t1 = 0xF6EADDCFu, t2 = 0x26190D01u, t3 = 0x71594535u;
    const uint32_t x = (uint32_t)q & 0x07070707u, y = x | (x >> 4);
    const uint32_t sel = (y & 0x77u) | ((y >> 8) & 0x7700u);
    const uint32_t m = (((uint32_t)q >> 3) & 0x01010101u) * 0xFFu;
    return (int)((mrc_byte_perm(t0, t1, sel) & ~m) | (mrc_byte_perm(t2, t3, sel) & m));
}

/* The 8 ints of Q8_1 quants of activation block b, and its (d, s). */
MRC_HD void mrc_x_block(const int8_t *xq, const float *xds, int b, int *v, float *d, float *s) {
    mrc_ld_i32x4(xq + 32 * b, v);
    mrc_ld_i32x4(xq + 32 * b + 16, v + 4);
    *d = xds[2 * b];
    *s = xds[2 * b + 1];
}

/* Q4_K/Q5_K: 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes. */
MRC_HD void mrc_k4_scale_min(const uint8_t *q, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* ---- dot of unit u of a weight row with the activations ------------------------------- */

/* sum of the 32 unsigned nibbles of a 32-element block (qs[16]: element j in the low nibble
 * of byte j, element 16+j in the high one) times the Q8_1 quants xv. */
MRC_HD int mrc_q4_sumi(const uint8_t *qs, const int *xv) {
    int sumi = 0;
MRC_UNROLL
    for (int i = 0; i < 4; i++) {
        const int q = mrc_ld_i32_a2(qs + 4 * i);
        sumi = mrc_dp4a(q & 0x0F0F0F0F, xv[i], sumi);            /* elements 4i..4i+3 */
        sumi = mrc_dp4a((q >> 4) & 0x0F0F0F0F, xv[i + 4], sumi); /* elements 16+4i.. */
    }
    return sumi;
}

MRC_HD float mrc_vdot_q4_0(const uint8_t *row, int u, const int8_t *xq, const float *xds) {
    const uint8_t *b = row + (size_t)u * MRC_Q4_0_BYTES;
    const float d = mrc_h2f(mrc_ld_u16(b));
    int xv[8];
    float dx, sx;
    mrc_x_block(xq, xds, u, xv, &dx, &sx);
    return d * (dx * (float)mrc_q4_sumi(b + 2, xv) - 8.0f * sx);
}

/* Q4_1: x = d*q + m, so dot = d*dx*sum(q*xq) + m*sum(x) with sum(x) = s of the Q8_1 block. */
MRC_HD float mrc_vdot_q4_1(const uint8_t *row, int u, const int8_t *xq, const float *xds) {
    const uint8_t *b = row + (size_t)u * MRC_Q4_1_BYTES;
    const float d = mrc_h2f(mrc_ld_u16(b)), m = mrc_h2f(mrc_ld_u16(b + 2));
    int xv[8];
    float dx, sx;
    mrc_x_block(xq, xds, u, xv, &dx, &sx);
    return d * dx * (float)mrc_q4_sumi(b + 4, xv) + m * sx;
}

/* Bits sh..sh+3 of qh to bit 4 of bytes 0..3 (the 5th bits of 4 consecutive elements). */
MRC_HD int mrc_qh4(uint32_t qh, int sh) {
    const uint32_t b = (qh >> sh) & 0xF;
    return (int)(((b & 1) << 4) | ((b & 2) << 11) | ((b & 4) << 18) | ((b & 8) << 25));
}

/* Q5_0 / Q5_1: element j of the block has its 5th bit at bit j of qh (j < 32); Q5_0 is
 * offset by -16, Q5_1 has a minimum m as Q4_1. */
MRC_HD float mrc_vdot_q5_x(const uint8_t *b, bool one, const int8_t *xq, const float *xds, int u) {
    const float d = mrc_h2f(mrc_ld_u16(b)), m = one ? mrc_h2f(mrc_ld_u16(b + 2)) : 0.0f;
    const uint8_t *qhp = b + (one ? 4 : 2), *qs = qhp + 4;
    const uint32_t qh = (uint32_t)mrc_ld_i32_a2(qhp);
    int xv[8];
    float dx, sx;
    mrc_x_block(xq, xds, u, xv, &dx, &sx);
    int sumi = 0;
MRC_UNROLL
    for (int i = 0; i < 4; i++) {
        const int q = mrc_ld_i32_a2(qs + 4 * i);
        sumi = mrc_dp4a((q & 0x0F0F0F0F) | mrc_qh4(qh, 4 * i), xv[i], sumi);
        sumi = mrc_dp4a(((q >> 4) & 0x0F0F0F0F) | mrc_qh4(qh, 16 + 4 * i), xv[i + 4], sumi);
    }
    return one ? d * dx * (float)sumi + m * sx : d * (dx * (float)sumi - 16.0f * sx);
}
MRC_HD float mrc_vdot_q5_0(const uint8_t *row, int u, const int8_t *xq, const float *xds) {
    return mrc_vdot_q5_x(row + (size_t)u * MRC_Q5_0_BYTES, false, xq, xds, u);
}
MRC_HD float mrc_vdot_q5_1(const uint8_t *row, int u, const int8_t *xq, const float *xds) {
    return mrc_vdot_q5_x(row + (size_t)u * MRC_Q5_1_BYTES, true, xq, xds, u);
}

MRC_HD float mrc_vdot_q8_0(const uint8_t *row, int u, const int8_t *xq, const float *xds) {
    const uint8_t *b = row + (size_t)u * MRC_Q8_0_BYTES;
    const float d = mrc_h2f(mrc_ld_u16(b));
    int xv[8];
    float dx, sx;
    mrc_x_block(xq, xds, u, xv, &dx, &sx);
    int sumi = 0;
MRC_UNROLL
    for (int i = 0; i < 8; i++) sumi = mrc_dp4a(mrc_ld_i32_a2(b + 2 + 4 * i), xv[i], sumi);
    return d * dx * (float)sumi;
}

/* Unit u = block u/4, quant bytes 32j..32j+31 (j = u%4): elements 64j..64j+31
 * (low nibbles, sub-block 2j) and 64j+32.. (high nibbles, sub-block 2j+1). */
MRC_HD float mrc_vdot_q4_K(const uint8_t *row, int u, const int8_t *xq, const float *xds) {
    const int ib = u >> 2, j = u & 3;
    const uint8_t *b = row + (size_t)ib * MRC_Q4_K_BYTES;
    const float d = mrc_h2f(mrc_ld_u16(b)), dmin = mrc_h2f(mrc_ld_u16(b + 2));
    int sc0, mn0, sc1, mn1;
    mrc_k4_scale_min(b + 4, 2 * j, &sc0, &mn0);
    mrc_k4_scale_min(b + 4, 2 * j + 1, &sc1, &mn1);
    int q[8];
    mrc_ld_i32x4(b + 16 + 32 * j, q);
    mrc_ld_i32x4(b + 16 + 32 * j + 16, q + 4);
    int x0[8], x1[8];
    float d0, s0, d1, s1;
    mrc_x_block(xq, xds, ib * 8 + 2 * j, x0, &d0, &s0);
    mrc_x_block(xq, xds, ib * 8 + 2 * j + 1, x1, &d1, &s1);
    int a0 = 0, a1 = 0;
MRC_UNROLL
    for (int i = 0; i < 8; i++) {
        a0 = mrc_dp4a(q[i] & 0x0F0F0F0F, x0[i], a0);
        a1 = mrc_dp4a((q[i] >> 4) & 0x0F0F0F0F, x1[i], a1);
    }
    return d * ((float)sc0 * d0 * (float)a0 + (float)sc1 * d1 * (float)a1) - dmin * ((float)mn0 * s0 + (float)mn1 * s1);
}

/* As Q4_K; the 5th bit of element 64j+l is bit 2j of qh[l] (bit 2j+1 for 64j+32+l). */
MRC_HD float mrc_vdot_q5_K(const uint8_t *row, int u, const int8_t *xq, const float *xds) {
    const int ib = u >> 2, j = u & 3;
    const uint8_t *b = row + (size_t)ib * MRC_Q5_K_BYTES;
    const float d = mrc_h2f(mrc_ld_u16(b)), dmin = mrc_h2f(mrc_ld_u16(b + 2));
    int sc0, mn0, sc1, mn1;
    mrc_k4_scale_min(b + 4, 2 * j, &sc0, &mn0);
    mrc_k4_scale_min(b + 4, 2 * j + 1, &sc1, &mn1);
    int q[8], h[8];
    mrc_ld_i32x4(b + 48 + 32 * j, q);
    mrc_ld_i32x4(b + 48 + 32 * j + 16, q + 4);
    mrc_ld_i32x4(b + 16, h);
    mrc_ld_i32x4(b + 32, h + 4);
    int x0[8], x1[8];
    float d0, s0, d1, s1;
    mrc_x_block(xq, xds, ib * 8 + 2 * j, x0, &d0, &s0);
    mrc_x_block(xq, xds, ib * 8 + 2 * j + 1, x1, &d1, &s1);
    int a0 = 0, a1 = 0;
MRC_UNROLL
    for (int i = 0; i < 8; i++) {
        const int lo = (q[i] & 0x0F0F0F0F) | (((h[i] >> (2 * j)) & 0x01010101) << 4);
        const int hi = ((q[i] >> 4) & 0x0F0F0F0F) | (((h[i] >> (2 * j + 1)) & 0x01010101) << 4);
        a0 = mrc_dp4a(lo, x0[i], a0);
        a1 = mrc_dp4a(hi, x1[i], a1);
    }
    return d * ((float)sc0 * d0 * (float)a0 + (float)sc1 * d1 * (float)a1) - dmin * ((float)mn0 * s0 + (float)mn1 * s1);
}

/* Unit u = block u/4; t = u%4: half h = t/2 (128 elements), l in [16s, 16s+16)
 * with s = t%2. Element l+32g of the half (g = 0..3) is nibble (g/2) of
 * ql[l + 32*(g%2)] with bits 2g..2g+1 of qh[l] on top, minus 32; scale
 * scales[8h + s + 2g]. */
MRC_HD float mrc_vdot_q6_K(const uint8_t *row, int u, const int8_t *xq, const float *xds) {
    const int ib = u >> 2, t = u & 3, h = t >> 1, s = t & 1;
    const uint8_t *b = row + (size_t)ib * MRC_Q6_K_BYTES;
    const uint8_t *ql = b + 64 * h + 16 * s, *qh = b + 128 + 32 * h + 16 * s;
    const int8_t *sc = (const int8_t *)(b + 192 + 8 * h + s);
    const float d = mrc_h2f(mrc_ld_u16(b + 208));
    const int xb = ib * 8 + 4 * h; /* activation blocks of the half */
    float acc = 0;
MRC_UNROLL
    for (int g = 0; g < 4; g++) {
        int a = 0;
MRC_UNROLL
        for (int i = 0; i < 4; i++) {
            const int lq = mrc_ld_i32_a2(ql + 32 * (g & 1) + 4 * i);
            const int hq = mrc_ld_i32_a2(qh + 4 * i);
            const int v = ((lq >> (4 * (g >> 1))) & 0x0F0F0F0F) | (((hq >> (2 * g)) & 0x03030303) << 4);
            const int xv = mrc_ld_i32_a2(xq + 32 * (xb + g) + 16 * s + 4 * i);
            a = mrc_dp4a(mrc_vsubss4(v, 0x20202020), xv, a);
        }
        acc += (float)sc[2 * g] * xds[2 * (xb + g)] * (float)a;
    }
    return d * acc;
}

/* Q2_K / Q3_K: unit u = block u/8; t = u%8 is Q8_1 block t of the 256 (half h = t/4, 2-bit
 * field s = t%4): its element 16g+l (g = 0, 1) is bits 2s..2s+1 of qs[32h + 16g + l], with
 * sub-block scale 8h + 2s + g. Q2_K: x = d*(sc & 15)*q - dmin*(sc >> 4); Q3_K: x = d*(sc - 32)*
 * (q - 4, or q when bit 4h+s of hmask[16g + l] is set). */
MRC_HD float mrc_vdot_q2_K(const uint8_t *row, int u, const int8_t *xq, const float *xds) {
    const int ib = u >> 3, t = u & 7, h = t >> 2, s = t & 3;
    const uint8_t *b = row + (size_t)ib * MRC_Q2_K_BYTES, *qs = b + 16 + 32 * h;
    const int sc0 = b[8 * h + 2 * s], sc1 = b[8 * h + 2 * s + 1];
    int xv[8];
    float dx, sx;
    mrc_x_block(xq, xds, u, xv, &dx, &sx);
    int a0 = 0, a1 = 0, m0 = 0, m1 = 0;
MRC_UNROLL
    for (int i = 0; i < 4; i++) {
        a0 = mrc_dp4a((mrc_ld_i32_a2(qs + 4 * i) >> (2 * s)) & 0x03030303, xv[i], a0);
        a1 = mrc_dp4a((mrc_ld_i32_a2(qs + 16 + 4 * i) >> (2 * s)) & 0x03030303, xv[i + 4], a1);
        m0 = mrc_dp4a(0x01010101, xv[i], m0);
        m1 = mrc_dp4a(0x01010101, xv[i + 4], m1);
    }
    const float d = mrc_h2f(mrc_ld_u16(b + 80)), dmin = mrc_h2f(mrc_ld_u16(b + 82));
    return dx * (d * (float)((sc0 & 15) * a0 + (sc1 & 15) * a1) - dmin * (float)((sc0 >> 4) * m0 + (sc1 >> 4) * m1));
}

/* Q3_K's 6-bit scale j (0..15) from its 12 packed bytes, minus 32. */
MRC_HD int mrc_q3k_scale(const uint8_t *p, int j) {
    const int lo = j < 8 ? p[j] & 0xF : p[j - 8] >> 4;
    return (lo | (((p[8 + (j & 3)] >> (2 * (j >> 2))) & 3) << 4)) - 32;
}

MRC_HD float mrc_vdot_q3_K(const uint8_t *row, int u, const int8_t *xq, const float *xds) {
    const int ib = u >> 3, t = u & 7, h = t >> 2, s = t & 3;
    const uint8_t *b = row + (size_t)ib * MRC_Q3_K_BYTES, *qs = b + 32 + 32 * h;
    int xv[8];
    float dx, sx;
    mrc_x_block(xq, xds, u, xv, &dx, &sx);
    int a0 = 0, a1 = 0;
MRC_UNROLL
    for (int i = 0; i < 4; i++) {
        const int l0 = (mrc_ld_i32_a2(qs + 4 * i) >> (2 * s)) & 0x03030303;
        const int l1 = (mrc_ld_i32_a2(qs + 16 + 4 * i) >> (2 * s)) & 0x03030303;
        const int h0 = ((mrc_ld_i32_a2(b + 4 * i) >> (4 * h + s)) & 0x01010101) << 2;
        const int h1 = ((mrc_ld_i32_a2(b + 16 + 4 * i) >> (4 * h + s)) & 0x01010101) << 2;
        a0 = mrc_dp4a(mrc_vsubss4(l0 | h0, 0x04040404), xv[i], a0);
        a1 = mrc_dp4a(mrc_vsubss4(l1 | h1, 0x04040404), xv[i + 4], a1);
    }
    const int sc0 = mrc_q3k_scale(b + 96, 8 * h + 2 * s), sc1 = mrc_q3k_scale(b + 96, 8 * h + 2 * s + 1);
    return mrc_h2f(mrc_ld_u16(b + 108)) * dx * (float)(sc0 * a0 + sc1 * a1);
}

/* The 32 table values of an IQ4 block's 16 quant bytes (element j low nibble of byte j,
 * element 16+j the high one) times the Q8_1 quants xv. */
MRC_HD int mrc_iq4_sumi(const uint8_t *qs, const int *xv) {
    int sumi = 0;
MRC_UNROLL
    for (int i = 0; i < 4; i++) {
        const int q = mrc_ld_i32_a2(qs + 4 * i);
        sumi = mrc_dp4a(mrc_iq4_lut(q & 0x0F0F0F0F), xv[i], sumi);
        sumi = mrc_dp4a(mrc_iq4_lut((q >> 4) & 0x0F0F0F0F), xv[i + 4], sumi);
    }
    return sumi;
}

MRC_HD float mrc_vdot_iq4_nl(const uint8_t *row, int u, const int8_t *xq, const float *xds) {
    const uint8_t *b = row + (size_t)u * MRC_IQ4_NL_BYTES;
    int xv[8];
    float dx, sx;
    mrc_x_block(xq, xds, u, xv, &dx, &sx);
    return mrc_h2f(mrc_ld_u16(b)) * dx * (float)mrc_iq4_sumi(b + 2, xv);
}

/* IQ4_XS sub-block j's 6-bit scale (low 4 bits in scales_l, high 2 in scales_h), minus 32. */
MRC_HD int mrc_iq4xs_scale(const uint8_t *b, int j) {
    return (((b[4 + j / 2] >> (4 * (j & 1))) & 0xF) | (((mrc_ld_u16(b + 2) >> (2 * j)) & 3) << 4)) - 32;
}

/* Unit u = sub-block u%8 (32 elements, quant bytes 16j..16j+15) of block u/8. */
MRC_HD float mrc_vdot_iq4_xs(const uint8_t *row, int u, const int8_t *xq, const float *xds) {
    const int j = u & 7;
    const uint8_t *b = row + (size_t)(u >> 3) * MRC_IQ4_XS_BYTES;
    int xv[8];
    float dx, sx;
    mrc_x_block(xq, xds, u, xv, &dx, &sx);
    return mrc_h2f(mrc_ld_u16(b)) * (float)mrc_iq4xs_scale(b, j) * dx * (float)mrc_iq4_sumi(b + 8 + 16 * j, xv);
}

/* ---- dequantization of one element (prefill, get_rows) ---------------------------------------- */
/* Element i of a row of type t (quantized types above, F16, BF16, F32). */
MRC_HD float mrc_dq_elem(uint32_t t, const uint8_t *row, int64_t i) {
    switch (t) {
    case MR_TYPE_F32: return ((const float *)row)[i];
    case MR_TYPE_F16: return mrc_h2f(((const uint16_t *)row)[i]);
    case MR_TYPE_BF16: return mrc_bf2f(((const uint16_t *)row)[i]);
    case MR_TYPE_Q2_K:
    case MR_TYPE_Q3_K: {
        const bool three = t == MR_TYPE_Q3_K;
        const uint8_t *b = row + (i / 256) * (three ? MRC_Q3_K_BYTES : MRC_Q2_K_BYTES);
        const int e = (int)(i % 256), h = e / 128, s = (e / 32) % 4, g = (e / 16) % 2, l = e % 16;
        const int q = (b[(three ? 32 : 16) + 32 * h + 16 * g + l] >> (2 * s)) & 3, j = 8 * h + 2 * s + g;
        if (three)
            return mrc_h2f(mrc_ld_u16(b + 108)) * (float)mrc_q3k_scale(b + 96, j) *
                   (float)(q - ((b[16 * g + l] >> (4 * h + s)) & 1 ? 0 : 4));
        return mrc_h2f(mrc_ld_u16(b + 80)) * (float)(b[j] & 15) * (float)q -
               mrc_h2f(mrc_ld_u16(b + 82)) * (float)(b[j] >> 4);
    }
    case MR_TYPE_IQ4_NL:
    case MR_TYPE_IQ4_XS: {
        const bool xs = t == MR_TYPE_IQ4_XS;
        const uint8_t *b = row + (i / (xs ? 256 : 32)) * (xs ? MRC_IQ4_XS_BYTES : MRC_IQ4_NL_BYTES);
        const int e = (int)(i % (xs ? 256 : 32)), j = e / 32, l = e % 32;
        const uint8_t *qs = xs ? b + 8 + 16 * j : b + 2;
        const int n = l < 16 ? qs[l] & 0xF : qs[l - 16] >> 4;
        const float d = mrc_h2f(mrc_ld_u16(b)) * (xs ? (float)mrc_iq4xs_scale(b, j) : 1.0f);
        return d * (float)(int8_t)(mrc_iq4_lut(n) & 0xFF);
    }
    case MR_TYPE_Q4_0: {
        const uint8_t *b = row + (i / 32) * MRC_Q4_0_BYTES;
        const int j = (int)(i % 32);
        const int q = j < 16 ? (b[2 + j] & 0xF) : (b[2 + j - 16] >> 4);
        return mrc_h2f(mrc_ld_u16(b)) * (float)(q - 8);
    }
    case MR_TYPE_Q4_1: {
        const uint8_t *b = row + (i / 32) * MRC_Q4_1_BYTES;
        const int j = (int)(i % 32);
        const int q = j < 16 ? (b[4 + j] & 0xF) : (b[4 + j - 16] >> 4);
        return mrc_h2f(mrc_ld_u16(b)) * (float)q + mrc_h2f(mrc_ld_u16(b + 2));
    }
    case MR_TYPE_Q5_0:
    case MR_TYPE_Q5_1: {
        const bool one = t == MR_TYPE_Q5_1;
        const uint8_t *b = row + (i / 32) * (one ? MRC_Q5_1_BYTES : MRC_Q5_0_BYTES);
        const uint8_t *qhp = b + (one ? 4 : 2), *qs = qhp + 4;
        const int j = (int)(i % 32);
        const uint32_t qh = (uint32_t)qhp[0] | ((uint32_t)qhp[1] << 8) | ((uint32_t)qhp[2] << 16) |
                            ((uint32_t)qhp[3] << 24);
        const int q = (j < 16 ? (qs[j] & 0xF) : (qs[j - 16] >> 4)) | (int)(((qh >> j) & 1) << 4);
        const float d = mrc_h2f(mrc_ld_u16(b));
        return one ? d * (float)q + mrc_h2f(mrc_ld_u16(b + 2)) : d * (float)(q - 16);
    }
    case MR_TYPE_Q8_0: {
        const uint8_t *b = row + (i / 32) * MRC_Q8_0_BYTES;
        return mrc_h2f(mrc_ld_u16(b)) * (float)(int8_t)b[2 + i % 32];
    }
    case MR_TYPE_Q4_K:
    case MR_TYPE_Q5_K: {
        const bool five = t == MR_TYPE_Q5_K;
        const uint8_t *b = row + (i / 256) * (five ? MRC_Q5_K_BYTES : MRC_Q4_K_BYTES);
        const int e = (int)(i % 256), j = e / 64, hi = (e / 32) & 1, l = e % 32;
        int sc, mn;
        mrc_k4_scale_min(b + 4, 2 * j + hi, &sc, &mn);
        const uint8_t qb = b[(five ? 48 : 16) + 32 * j + l];
        int q = hi ? qb >> 4 : qb & 0xF;
        if (five) q += ((b[16 + l] >> (2 * j + hi)) & 1) << 4;
        return mrc_h2f(mrc_ld_u16(b)) * (float)sc * (float)q - mrc_h2f(mrc_ld_u16(b + 2)) * (float)mn;
    }
    case MR_TYPE_Q6_K: {
        const uint8_t *b = row + (i / 256) * MRC_Q6_K_BYTES;
        const int e = (int)(i % 256), h = e / 128, r = e % 128, g = r / 32, l = r % 32;
        const uint8_t lq = b[64 * h + l + 32 * (g & 1)];
        const int q = (((lq >> (4 * (g >> 1))) & 0xF) | (((b[128 + 32 * h + l] >> (2 * g)) & 3) << 4)) - 32;
        const int8_t sc = (int8_t)b[192 + 8 * h + l / 16 + 2 * g];
        return mrc_h2f(mrc_ld_u16(b + 208)) * (float)sc * (float)q;
    }
    default: return 0.0f;
    }
}

#endif
