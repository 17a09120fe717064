/*
 * threadpool.c — persistent fork-join workers with a spin-then-sleep wait.
 *
 * Protocol: a job is nth tasks (indices 0..nth-1). The caller stores the job
 * (fn, arg), publishes `claim` = (job number << 32 | 0), bumps `gen` and
 * wakes sleepers. Every thread, the caller included, claims task indices
 * with a CAS on `claim` (which also checks the job number, so a late worker
 * can never run a task of a later job) and counts finished tasks in `done`;
 * the caller returns when done == nth. A worker that is not scheduled in time
 * costs nothing: the others take its tasks (important on oversubscribed
 * machines). Workers spin for MR_TP_SPIN iterations, then yield the CPU a few
 * times, before sleeping, so in a forward pass (hundreds of jobs per token)
 * they rarely touch the mutex, and an oversubscribed machine is not made
 * worse by spinning.
 */
#include "base/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "base/base.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MR_PAUSE() _mm_pause()
#else
#define MR_PAUSE() ((void)0)
#endif

/* Wait between jobs: MR_TP_SPIN pause iterations (~0.1 ms: the next job of
 * a forward pass usually follows within microseconds), then MR_TP_YIELD
 * sched_yield() rounds (a loaded machine gets the core back instead of
 * watching us spin), then sleep on the condition variable. */
#define MR_TP_SPIN 4000
#define MR_TP_YIELD 64

struct mr_threadpool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic uint64_t gen;
    _Atomic uint64_t claim; /* job number << 32 | next task index */
    _Atomic int done;
    _Atomic int stop;
    _Atomic int sleepers;
    mr_tp_fn fn;
    void *arg;
};

typedef struct {
    mr_threadpool *tp;
    int ith;
} worker_arg;

/* Claim and run tasks of job `job` until none is left. */
static void run_tasks(mr_threadpool *tp, uint32_t job) {
    for (;;) {
        uint64_t v = atomic_load_explicit(&tp->claim, memory_order_acquire);
        for (;;) {
            if ((uint32_t)(v >> 32) != job || (int)(uint32_t)v >= tp->n) return;
            if (atomic_compare_exchange_weak_explicit(&tp->claim, &v, v + 1, memory_order_acq_rel,
                                                      memory_order_acquire))
                break;
        }
        /* a claimed task keeps the caller waiting, so fn/arg are this job's */
        tp->fn(tp->arg, (int)(uint32_t)v, tp->n);
        atomic_fetch_add_explicit(&tp->done, 1, memory_order_release);
    }
}

static void *worker_main(void *p) {
    worker_arg wa = *(worker_arg *)p;
    free(p);
    mr_threadpool *tp = wa.tp;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&tp->gen, memory_order_acquire)) == seen) {
            if (atomic_load_explicit(&tp->stop, memory_order_relaxed)) return NULL;
            if (++spins < MR_TP_SPIN) {
                MR_PAUSE();
                continue;
            }
            if (spins < MR_TP_SPIN + MR_TP_YIELD) {
                sched_yield();
                continue;
            }
            pthread_mutex_lock(&tp->mu);
            atomic_fetch_add(&tp->sleepers, 1);
            while (atomic_load(&tp->gen) == seen && !atomic_load(&tp->stop)) pthread_cond_wait(&tp->cv, &tp->mu);
            atomic_fetch_sub(&tp->sleepers, 1);
            pthread_mutex_unlock(&tp->mu);
            spins = 0;
        }
        if (atomic_load(&tp->stop)) return NULL;
        seen = g;
        run_tasks(tp, (uint32_t)g);
    }
}

mr_threadpool *mr_tp_new(int n) {
    if (n <= 0) n = mr_cpu_physical_cores();
    if (n < 1) n = 1;
    if (n > 512) n = 512;
    mr_threadpool *tp = mr_calloc(1, sizeof *tp);
    if (!tp) return NULL;
    tp->n = n;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
    tp->threads = mr_calloc((size_t)n, sizeof(pthread_t));
    if (!tp->threads) {
        free(tp);
        return NULL;
    }
    for (int i = 1; i < n; i++) {
        worker_arg *wa = mr_malloc(sizeof *wa);
        if (!wa) {
            tp->n = i;
            mr_tp_free(tp);
            return NULL;
        }
        wa->tp = tp;
        wa->ith = i;
        if (pthread_create(&tp->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            mr_seterr("threadpool: cannot start thread %d of %d", i, n);
            tp->n = i;
            mr_tp_free(tp);
            return NULL;
        }
    }
    return tp;
}

void mr_tp_free(mr_threadpool *tp) {
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->stop, 1);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 1; i < tp->n; i++) pthread_join(tp->threads[i], NULL);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->cv);
    free(tp->threads);
    free(tp);
}

int mr_tp_n(const mr_threadpool *tp) { return tp ? tp->n : 1; }

void mr_tp_run(mr_threadpool *tp, mr_tp_fn fn, void *arg) {
    if (!tp || tp->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->arg = arg;
    atomic_store_explicit(&tp->done, 0, memory_order_relaxed);
    const uint32_t job = (uint32_t)(atomic_load(&tp->gen) + 1);
    atomic_store_explicit(&tp->claim, (uint64_t)job << 32, memory_order_release);
    atomic_fetch_add(&tp->gen, 1); /* seq_cst: ordered before the sleepers load */
    if (atomic_load(&tp->sleepers) > 0) {
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(&tp->cv);
        pthread_mutex_unlock(&tp->mu);
    }
    run_tasks(tp, job);
    int spins = 0;
    while (atomic_load_explicit(&tp->done, memory_order_acquire) != tp->n) {
        if (++spins < MR_TP_SPIN) MR_PAUSE();
        else sched_yield();
    }
}
