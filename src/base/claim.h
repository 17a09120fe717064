/*
 * claim.h — work items [0, n) split into one contiguous range per thread, each
 * thread claiming its own range from the front, and a thread whose range is
 * empty taking items from the back of the range with the most left.
 *
 * Why not one shared counter: with a shared counter the threads take
 * alternate items, so at any moment they stream neighbouring pieces of the
 * same weight matrix, and on the machines we measured that streams far
 * below the bandwidth two distant streams get (2 threads, Sapphire Rapids VM,
 * Q4_K matvec in 128 KiB items: 77 % of the read bandwidth alternating, 95 %
 * with a contiguous range per thread). Items must be independent (their
 * results must not depend on which thread runs them or in what order).
 *
 * A range is one 64-bit atomic (front in the high half, back in the low
 * half), changed by compare-and-swap: the owner moves the front, thieves the
 * back. Slots sit on their own cache lines.
 */
#ifndef MR_CLAIM_H
#define MR_CLAIM_H

#include <stdatomic.h>
#include <stdint.h>

#define MR_CLAIM_MAX 64 /* ranges; more threads share them (thread i owns range i % MR_CLAIM_MAX) */

typedef struct {
    _Alignas(64) _Atomic uint64_t r; /* front << 32 | back */
} mr_claim_slot;

typedef struct {
    mr_claim_slot s[MR_CLAIM_MAX];
    int n;
} mr_claim;

/* n_items < 2^31; nth the threads that will claim (>= 1). */
static inline void mr_claim_init(mr_claim *c, int64_t n_items, int nth) {
    const int n = nth < 1 ? 1 : nth > MR_CLAIM_MAX ? MR_CLAIM_MAX : nth;
    c->n = n;
    for (int t = 0; t < n; t++) {
        const uint64_t lo = (uint64_t)(n_items * t / n), hi = (uint64_t)(n_items * (t + 1) / n);
        atomic_store_explicit(&c->s[t].r, lo << 32 | hi, memory_order_relaxed);
    }
}

/* The next item for thread ith, or -1 when every range is empty. */
static inline int64_t mr_claim_next(mr_claim *c, int ith) {
    _Atomic uint64_t *own = &c->s[(unsigned)ith % (unsigned)c->n].r;
    uint64_t v = atomic_load_explicit(own, memory_order_relaxed);
    while ((v >> 32) < (v & 0xFFFFFFFFu))
        if (atomic_compare_exchange_weak_explicit(own, &v, v + ((uint64_t)1 << 32), memory_order_relaxed,
                                                  memory_order_relaxed))
            return (int64_t)(v >> 32);
    for (;;) { /* steal the last item of the fullest range */
        int best = -1;
        uint64_t bv = 0, left = 0;
        for (int t = 0; t < c->n; t++) {
            const uint64_t w = atomic_load_explicit(&c->s[t].r, memory_order_relaxed);
            const uint64_t lo = w >> 32, hi = w & 0xFFFFFFFFu;
            if (lo < hi && hi - lo > left) best = t, bv = w, left = hi - lo;
        }
        if (best < 0) return -1;
        if (atomic_compare_exchange_weak_explicit(&c->s[best].r, &bv, bv - 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return (int64_t)(bv & 0xFFFFFFFFu) - 1;
    }
}

#endif
