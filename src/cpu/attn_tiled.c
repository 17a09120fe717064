/*
 * attn_tiled.c — the tiled q8_0 KV layout (attn.h): a cell's row into and out of it (the cache writes; the
 * paths other than the decode kernel read rows). Which layers take it: cpu_attn_tiled_ok (attn.c).
 */
#include <string.h>

#include "base/base.h"
#include "cpu/attn.h"
#include "quant/quant.h"

/* attn_vt_z's dimension order: per 32 dimensions, two zmm of [0-3 16-19 4-7 20-23] [8-11 24-27 12-15 28-31] */
const uint8_t cpu_attn_vt_dim[32] = {0, 1, 2,  3,  16, 17, 18, 19, 4,  5,  6,  7,  20, 21, 22, 23,
                                     8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31};

enum { QB = 34 }; /* bytes of a q8_0 block */

void cpu_attn_tiled_put(uint8_t *head, int n, int d, bool is_k, int c, const uint8_t *row) {
    const int nb = d / 32, T = c / CPU_ATTN_TILE, i = c % CPU_ATTN_TILE;
    uint8_t *sc = head + (size_t)n * d;
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * QB;
        memcpy(sc + (((size_t)T * nb + b) * CPU_ATTN_TILE + i) * 2, blk, 2);
        if (is_k) {
            uint8_t *q = head + ((size_t)T * nb + b) * 512;
            for (int gg = 0; gg < 8; gg++)
                for (int e = 0; e < 4; e++) q[(gg * 16 + i) * 4 + e] = (uint8_t)(blk[2 + 4 * gg + e] ^ 0x80);
        } else {
            uint8_t *q = head + ((size_t)(c / 4) * nb + b) * 128;
            for (int w = 0; w < 32; w++) q[w * 4 + c % 4] = blk[2 + cpu_attn_vt_dim[w]];
        }
    }
}

void cpu_attn_tiled_get(const uint8_t *head, int n, int d, bool is_k, int c, uint8_t *row) {
    const int nb = d / 32, T = c / CPU_ATTN_TILE, i = c % CPU_ATTN_TILE;
    const uint8_t *sc = head + (size_t)n * d;
    for (int b = 0; b < nb; b++) {
        uint8_t *blk = row + (size_t)b * QB;
        memcpy(blk, sc + (((size_t)T * nb + b) * CPU_ATTN_TILE + i) * 2, 2);
        if (is_k) {
            const uint8_t *q = head + ((size_t)T * nb + b) * 512;
            for (int gg = 0; gg < 8; gg++)
                for (int e = 0; e < 4; e++) blk[2 + 4 * gg + e] = (uint8_t)(q[(gg * 16 + i) * 4 + e] ^ 0x80);
        } else {
            const uint8_t *q = head + ((size_t)(c / 4) * nb + b) * 128;
            for (int w = 0; w < 32; w++) blk[2 + cpu_attn_vt_dim[w]] = q[w * 4 + c % 4];
        }
    }
}
