/*
 * types.c — block traits for the GGUF tensor types, and half-float conversion.
 */
#include "types.h"

#include <string.h>
#include <strings.h>

static const mr_type_traits k_traits[MR_TYPE_COUNT] = {
    [MR_TYPE_F32] = {"F32", 1, 4},
    [MR_TYPE_F16] = {"F16", 1, 2},
    [MR_TYPE_Q4_0] = {"Q4_0", 32, 18},
    [MR_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [MR_TYPE_Q5_0] = {"Q5_0", 32, 22},
    [MR_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [MR_TYPE_Q8_0] = {"Q8_0", 32, 34},
    [MR_TYPE_Q8_1] = {"Q8_1", 32, 36},
    [MR_TYPE_Q2_K] = {"Q2_K", 256, 84},
    [MR_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [MR_TYPE_Q4_K] = {"Q4_K", 256, 144},
    [MR_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [MR_TYPE_Q6_K] = {"Q6_K", 256, 210},
    [MR_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [MR_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [MR_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [MR_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [MR_TYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [MR_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18},
    [MR_TYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [MR_TYPE_IQ2_S] = {"IQ2_S", 256, 82},
    [MR_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [MR_TYPE_I8] = {"I8", 1, 1},
    [MR_TYPE_I16] = {"I16", 1, 2},
    [MR_TYPE_I32] = {"I32", 1, 4},
    [MR_TYPE_I64] = {"I64", 1, 8},
    [MR_TYPE_F64] = {"F64", 1, 8},
    [MR_TYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [MR_TYPE_BF16] = {"BF16", 1, 2},
    [MR_TYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [MR_TYPE_TQ2_0] = {"TQ2_0", 256, 66},
    [MR_TYPE_MXFP4] = {"MXFP4", 32, 17},
};

static const mr_type_traits k_r8_traits[] = { /* exact kernels */
    [MR_TYPE_Q4_K] = {"Q4_K_R8", 256, 144},
    [MR_TYPE_Q5_K] = {"Q5_K_R8", 256, 176},
    [MR_TYPE_Q6_K] = {"Q6_K_R8", 256, 210},
};
/* 32-element block types, Q2_K, Q3_K and IQ4_XS: fast kernels only (no exact R8 forms) */
static const mr_type_traits k_r8f_traits[] = {
    [MR_TYPE_Q4_0] = {"Q4_0_R8F", 32, 18},
    [MR_TYPE_Q4_1] = {"Q4_1_R8F", 32, 20},
    [MR_TYPE_Q5_0] = {"Q5_0_R8F", 32, 22},
    [MR_TYPE_Q5_1] = {"Q5_1_R8F", 32, 24},
    [MR_TYPE_Q8_0] = {"Q8_0_R8F", 32, 34},
    [MR_TYPE_Q2_K] = {"Q2_K_R8F", 256, 84},
    [MR_TYPE_Q3_K] = {"Q3_K_R8F", 256, 110},
    [MR_TYPE_IQ4_XS] = {"IQ4_XS_R8F", 256, 136},
    [MR_TYPE_Q4_K] = {"Q4_K_R8F", 256, 144},
    [MR_TYPE_Q5_K] = {"Q5_K_R8F", 256, 176},
    [MR_TYPE_Q6_K] = {"Q6_K_R8F", 256, 210},
};

const mr_type_traits *mr_type_get(uint32_t t) {
    if (mr_type_is_r8(t)) {
        const uint32_t b = mr_type_base(t);
        const mr_type_traits *tab = t >= MR_TYPE_R8F_BASE ? k_r8f_traits : k_r8_traits;
        const size_t n = t >= MR_TYPE_R8F_BASE ? sizeof k_r8f_traits / sizeof k_r8f_traits[0]
                                               : sizeof k_r8_traits / sizeof k_r8_traits[0];
        return b < n && tab[b].name ? &tab[b] : NULL;
    }
    if (t >= MR_TYPE_COUNT || !k_traits[t].name) return NULL;
    return &k_traits[t];
}

const char *mr_type_name(uint32_t t) {
    const mr_type_traits *tr = mr_type_get(t);
    return tr ? tr->name : "?";
}

size_t mr_row_size(uint32_t t, int64_t n) {
    const mr_type_traits *tr = mr_type_get(t);
    if (!tr || n < 0 || n % tr->blck) return 0;
    return (size_t)(n / tr->blck) * tr->tsize;
}

int mr_type_from_name(const char *s) {
    for (int t = 0; t < MR_TYPE_COUNT; t++)
        if (k_traits[t].name && !strcasecmp(k_traits[t].name, s)) return t;
    return -1;
}

float mr_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            man &= 0x3ff;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t mr_fp32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff);
    uint32_t man = x & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0)); /* inf/nan */
    int32_t e = exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00); /* overflow -> inf */
    if (e <= 0) {                                   /* subnormal or zero */
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t hm = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (hm & 1))) hm++;
        return (uint16_t)(sign | hm);
    }
    uint32_t hm = man >> 13, rem = man & 0x1fff;
    uint32_t r = sign | ((uint32_t)e << 10) | hm;
    if (rem > 0x1000 || (rem == 0x1000 && (hm & 1))) r++; /* round to nearest even; carries into exp ok */
    return (uint16_t)r;
}

float mr_bf16_to_fp32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t mr_fp32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 64); /* quiet nan */
    return (uint16_t)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}
