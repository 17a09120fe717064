/*
 * test_claim.c — base/claim.h: every item is claimed exactly once, whatever the
 * number of threads (fewer than the ranges, more than MR_CLAIM_MAX), and a
 * thread takes its own range front to back before it steals from the back of
 * another's.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "base/claim.h"
#include "check.h"

typedef struct {
    mr_claim *c;
    _Atomic int *seen;
    int ith, spin;
} worker;

static void *run(void *arg) {
    worker *w = arg;
    for (int64_t it; (it = mr_claim_next(w->c, w->ith)) >= 0;) {
        atomic_fetch_add(&w->seen[it], 1);
        for (volatile int s = 0; s < w->spin; s++) {} /* uneven threads: some ranges get stolen */
    }
    return NULL;
}

/* n items, ranges for nth threads, `running` of them actually run */
static void check_once(int64_t n, int nth, int running) {
    static mr_claim c;
    _Atomic int *seen = calloc((size_t)(n > 0 ? n : 1), sizeof *seen);
    mr_claim_init(&c, n, nth);
    pthread_t th[128];
    worker w[128];
    for (int t = 0; t < running; t++) {
        w[t] = (worker){&c, seen, t, (t % 3) * 200};
        pthread_create(&th[t], NULL, run, &w[t]);
    }
    for (int t = 0; t < running; t++) pthread_join(th[t], NULL);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += atomic_load(&seen[i]) != 1;
    CHECK(bad == 0, "%lld items, %d ranges, %d threads: %lld items not claimed exactly once", (long long)n, nth, running,
          (long long)bad);
    CHECK(mr_claim_next(&c, 0) == -1, "claims after the end");
    free(seen);
}

int main(void) {
    const int64_t ns[] = {0, 1, 2, 7, 100, 10007};
    const int nths[][2] = {{1, 1}, {2, 2}, {3, 3}, {5, 5}, {8, 8}, {4, 1}, {8, 3}, {70, 70}, {100, 9}};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        for (size_t k = 0; k < sizeof nths / sizeof nths[0]; k++) check_once(ns[i], nths[k][0], nths[k][1]);

    /* order: one thread with two ranges of 5 items takes 0..4, then steals 9, 8, 7, 6, 5 */
    mr_claim c;
    mr_claim_init(&c, 10, 2);
    const int64_t want[] = {0, 1, 2, 3, 4, 9, 8, 7, 6, 5, -1};
    int ok = 1;
    for (int i = 0; i < 11; i++) ok &= mr_claim_next(&c, 0) == want[i];
    CHECK(ok, "claim order of a lone thread");
    /* a thief takes from the fullest range */
    mr_claim_init(&c, 9, 3); /* ranges [0,3) [3,6) [6,9) */
    for (int i = 0; i < 3; i++) (void)mr_claim_next(&c, 0);
    (void)mr_claim_next(&c, 1);
    CHECK(mr_claim_next(&c, 0) == 8, "steal from the fullest range (the third)");
    return check_done();
}
