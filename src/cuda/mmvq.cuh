/*
 * mmvq.cuh — the per-thread pieces of the quantized matrix-vector product
 * and of the dequantizer, as __host__ __device__ functions so that
 * tests/cuda/test_cuda_emul.cu runs exactly this code on the host (no GPU
 * needed) against the scalar reference of src/quant.
 *
 * Work unit: a weight row is cut into "units" of 32 (Q4_0, Q8_0) or 64
 * (Q4_K, Q5_K, Q6_K: a quarter of a 256-block) elements; a thread computes
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
};

/* Elements per unit of a weight type (0: not a quantized type of ours). */
MRC_HD int mrc_unit_elems(uint32_t t) {
    return t == MR_TYPE_Q4_0 || t == MR_TYPE_Q4_1 || t == MR_TYPE_Q5_0 || t == MR_TYPE_Q5_1 || t == MR_TYPE_Q8_0 ? 32
           : t == MR_TYPE_Q4_K || t == MR_TYPE_Q5_K || t == MR_TYPE_Q6_K ? 64
                                                                          : 0;
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

/* ---- dequantization of one element (prefill, get_rows) ---------------------------------------- */
/* Element i of a row of type t (quantized types above, F16, F32). */
MRC_HD float mrc_dq_elem(uint32_t t, const uint8_t *row, int64_t i) {
    switch (t) {
    case MR_TYPE_F32: return ((const float *)row)[i];
    case MR_TYPE_F16: return mrc_h2f(((const uint16_t *)row)[i]);
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
