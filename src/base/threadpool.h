/*
 * threadpool.h — a persistent fork-join thread pool for the CPU kernels.
 *
 * mr_tp_run(tp, fn, arg) calls fn(arg, ith, nth) once for each ith in
 * [0, nth) (nth = pool size) and returns when all calls returned. The calls
 * run concurrently on the pool's threads, but which thread runs which ith is
 * not fixed (an idle thread takes the tasks of one that is not scheduled), so
 * per-task state must be indexed by ith, never by thread.
 * Workers spin on a generation counter for a short while after each job (the
 * next job of a forward pass usually follows within microseconds), then sleep
 * on a condition variable so that idle pools cost no CPU.
 *
 * One job at a time: mr_tp_run is not reentrant and must be called from a
 * single thread. A pool of 1 thread runs the job inline.
 */
#ifndef MR_THREADPOOL_H
#define MR_THREADPOOL_H

#include <stdint.h>

typedef struct mr_threadpool mr_threadpool;
typedef void (*mr_tp_fn)(void *arg, int ith, int nth);

/* n <= 0: mr_cpu_physical_cores(). NULL with an error on failure. */
mr_threadpool *mr_tp_new(int n);
void mr_tp_free(mr_threadpool *tp);
int mr_tp_n(const mr_threadpool *tp);
void mr_tp_run(mr_threadpool *tp, mr_tp_fn fn, void *arg);

/* Split [0, n) into nth near-equal ranges; range ith is [*r0, *r1). align > 1
 * rounds the boundaries to multiples of align (the last range takes the rest). */
static inline void mr_split_range(int64_t n, int ith, int nth, int64_t align, int64_t *r0, int64_t *r1) {
    if (align < 1) align = 1;
    int64_t chunks = (n + align - 1) / align;
    int64_t per = chunks / nth, rem = chunks % nth;
    int64_t c0 = ith * per + (ith < rem ? ith : rem);
    int64_t c1 = c0 + per + (ith < rem ? 1 : 0);
    *r0 = c0 * align < n ? c0 * align : n;
    *r1 = c1 * align < n ? c1 * align : n;
}

#endif
