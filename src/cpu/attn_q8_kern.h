/*
 * attn_q8_kern.h — the q8_0 K score kernels (layout and method: attn_q8_avx2.c), compiled
 * twice: in attn_q8_avx2.c (ATTN_Q8_VNNI 0: vpmaddubsw + vpmaddwd) and in attn_avx512.c
 * (ATTN_Q8_VNNI 1: one vpdpbusd), defining the function ATTN_Q8_SCORES. Both sum the same
 * int32 products and do the same float operations: the scores are bit-identical.
 */
#ifndef ATTN_Q8_SCORES
#error "define ATTN_Q8_VNNI and ATTN_Q8_SCORES before including attn_q8_kern.h"
#endif

/* E = 32/H quants of a K row broadcast to the H head slots of a vector. */
ATTN_AI __m256i kbcast(const int H, const uint8_t *p) {
    if (H == 8) {
        int32_t v;
        memcpy(&v, p, 4);
        return _mm256_set1_epi32(v);
    }
    if (H == 4) {
        int64_t v;
        memcpy(&v, p, 8);
        return _mm256_set1_epi64x(v);
    }
    if (H == 2) return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_loadu_si256((const __m256i *)p);
}

/* The 8 int32 lanes of a group sum (lane i: bytes 4i..4i+3) -> head h in
 * lane h for h < H (lanes >= H: copies, ignored). Exact. */
ATTN_AI __m256i kreduce(const int H, __m256i v) {
    if (H == 8) return v;
    v = _mm256_hadd_epi32(v, v); /* pairs: [01 23 01 23 | 45 67 45 67] */
    if (H == 4) return _mm256_permute4x64_epi64(v, _MM_SHUFFLE(3, 1, 2, 0));
    v = _mm256_hadd_epi32(v, v); /* quads: [0123 x4 | 4567 x4] */
    if (H == 2) return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
    return _mm256_add_epi32(v, _mm256_permute2x128_si256(v, v, 1));
}

/* Unscaled scores of tile t's heads (lanes) against 4 K rows. */
ATTN_AI void kdot4(const int H, const attn_job *j, int t, const uint8_t *const r[4], __m256 s[4]) {
    const uint8_t *qt = j->qt + (size_t)t * j->dk * 8, *aqt = j->aqt + (size_t)t * j->dk * 8;
    const int nbk = j->dk / 32, E = 32 / H;
    const float *dq = j->dq + (size_t)t * nbk * 8;
#if !ATTN_Q8_VNNI
    const __m256i ones = _mm256_set1_epi16(1);
#endif
    s[0] = s[1] = s[2] = s[3] = _mm256_setzero_ps();
    for (int b = 0; b < nbk; b++) {
        __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                          _mm256_setzero_si256()};
        /* not unrolled further: GCC would reassociate the integer sums into
         * trees of live temporaries and spill them */
#pragma GCC unroll 2
        for (int gg = 0; gg < H; gg++) {
            const size_t go = (size_t)(b * H + gg) * 32;
            const __m256i qv = _mm256_load_si256((const __m256i *)(qt + go));
            const __m256i aq = _mm256_load_si256((const __m256i *)(aqt + go));
            for (int c = 0; c < 4; c++) {
                const __m256i kb = kbcast(H, r[c] + (size_t)b * ATTN_Q8B + 2 + gg * E);
#if ATTN_Q8_VNNI
                acc[c] = _mm256_dpbusd_epi32(acc[c], aq, _mm256_sign_epi8(kb, qv));
#else
                acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(kb, qv)), ones));
#endif
            }
        }
        const __m256 dqv = _mm256_load_ps(dq + b * 8);
        for (int c = 0; c < 4; c++) {
            const __m256 d = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(attn_ld16(r[c] + (size_t)b * ATTN_Q8B))), dqv);
            s[c] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(kreduce(H, acc[c])), s[c]);
        }
    }
}

ATTN_AI void scores_h(const int H, const attn_job *j, int t, int c0, int n, const int *idx, int nv, float *S) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY), sc = _mm256_set1_ps(j->scale);
    attn_pf pf = *j->pf;
    if (nv < n)
        for (int c = 0; c < n; c++) _mm256_store_ps(S + (size_t)c * 8, ninf);
    for (int k = 0; k < nv; k += ATTN_Q8_CELLS_PER_STEP) {
        const uint8_t *r[4];
        for (int i = 0; i < 4; i++) r[i] = j->Kh + (size_t)idx[k + i < nv ? k + i : nv - 1] * j->krb;
        attn_pf_step(&pf);
        __m256 s[4];
        kdot4(H, j, t, r, s);
        for (int i = 0; i < 4; i++) /* a constant count (the test inside): s stays in registers */
            if (k + i < nv) _mm256_store_ps(S + (size_t)(idx[k + i] - c0) * 8, _mm256_mul_ps(s[i], sc));
    }
    if (j->softcap > 0.0f)
        for (int k = 0; k < nv; k++) {
            float *o = S + (size_t)(idx[k] - c0) * 8;
            for (int h = 0; h < 8; h++) o[h] = j->softcap * tanhf(o[h] / j->softcap);
        }
    *j->pf = pf;
}

void ATTN_Q8_SCORES(const attn_job *j, int t, int c0, int n, const int *idx, int nv, float *S) {
    switch (j->H) {
    case 8: scores_h(8, j, t, c0, n, idx, nv, S); break;
    case 4: scores_h(4, j, t, c0, n, idx, nv, S); break;
    case 2: scores_h(2, j, t, c0, n, idx, nv, S); break;
    default: scores_h(1, j, t, c0, n, idx, nv, S); break;
    }
}
