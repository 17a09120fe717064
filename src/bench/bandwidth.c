/*
 * bandwidth.c — measured memory read bandwidth, the denominator of the
 * roofline: n threads each sum their slice of a large pre-faulted buffer
 * (first touch by the reading thread), all starting together at a barrier;
 * the best of several runs counts. Also the small cache file under
 * ~/.cache/moerun/ keyed by CPU model and thread count.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "base/base.h"
#include "bench/bench.h"

/* Scalar fallback: four accumulators. */
double bench_sum_f64_scalar(const double *p, size_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += p[i];
        s1 += p[i + 1];
        s2 += p[i + 2];
        s3 += p[i + 3];
    }
    for (; i < n; i++) s0 += p[i];
    return (s0 + s1) + (s2 + s3);
}

double bench_sum_f64(const double *p, size_t n) {
#if defined(__x86_64__)
    if (mr_cpu()->avx2) return bench_sum_f64_avx2(p, n);
#endif
    return bench_sum_f64_scalar(p, n);
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state; /* 0 wait, 1 go, -1 abort */
    pthread_barrier_t bar;
} bw_shared;

typedef struct {
    int id, n_runs;
    double *p;
    size_t n;
    bw_shared *sh;
    double *times; /* thread 0 records each run's time */
    volatile double sink;
} bw_worker;

/* Wait for the go (or abort), fault the slice in from this thread (NUMA first
 * touch), then n_runs timed sums between barriers. */
static void *bw_thread(void *arg) {
    bw_worker *w = arg;
    bw_shared *sh = w->sh;
    pthread_mutex_lock(&sh->mu);
    while (sh->state == 0) pthread_cond_wait(&sh->cv, &sh->mu);
    int st = sh->state;
    pthread_mutex_unlock(&sh->mu);
    if (st < 0) return NULL;
    for (size_t i = 0; i < w->n; i++) w->p[i] = 1.0;
    pthread_barrier_wait(&sh->bar);
    for (int r = 0; r < w->n_runs; r++) {
        pthread_barrier_wait(&sh->bar);
        double t0 = mr_time_s();
        w->sink += bench_sum_f64(w->p, w->n);
        pthread_barrier_wait(&sh->bar);
        if (w->id == 0) w->times[r] = mr_time_s() - t0;
    }
    return NULL;
}

static void bw_release(bw_shared *sh, int state) {
    pthread_mutex_lock(&sh->mu);
    sh->state = state;
    pthread_cond_broadcast(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
}

/* GB/s = all bytes / fastest run. The calling thread is worker 0. */
double bench_bandwidth_gbs(int n_threads, size_t bytes, int n_runs) {
    if (n_threads < 1) n_threads = 1;
    if (n_runs < 1) n_runs = 1;
    /* slices of whole 4 KiB pages, so every slice is 32-byte aligned */
    size_t per = bytes / (size_t)n_threads / 4096 * 4096;
    if (per < 4096) per = 4096;
    size_t total = per * (size_t)n_threads;
    void *buf = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        mr_seterr("bandwidth: cannot map %zu bytes: %s", total, strerror(errno));
        return -1;
    }
#ifdef MADV_HUGEPAGE
    madvise(buf, total, MADV_HUGEPAGE);
#endif
    double best = -1;
    bw_worker *w = mr_calloc((size_t)n_threads, sizeof *w);
    pthread_t *th = mr_calloc((size_t)n_threads, sizeof *th);
    double *times = mr_calloc((size_t)n_runs, sizeof *times);
    bw_shared sh = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .state = 0};
    if (!w || !th || !times) goto out;
    pthread_barrier_init(&sh.bar, NULL, (unsigned)n_threads);
    int started = 1;
    for (int i = 0; i < n_threads; i++) {
        w[i] = (bw_worker){.id = i, .n_runs = n_runs, .p = (double *)((char *)buf + per * (size_t)i),
                           .n = per / sizeof(double), .sh = &sh, .times = times};
        if (i == 0) continue;
        if (pthread_create(&th[i], NULL, bw_thread, &w[i]) != 0) {
            mr_seterr("bandwidth: cannot start thread %d of %d", i + 1, n_threads);
            break;
        }
        started++;
    }
    if (started == n_threads) {
        bw_release(&sh, 1);
        bw_thread(&w[0]);
    } else {
        bw_release(&sh, -1);
    }
    for (int i = 1; i < started; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&sh.bar);
    if (started == n_threads) {
        double tmin = times[0];
        for (int r = 1; r < n_runs; r++) tmin = MR_MIN(tmin, times[r]);
        best = tmin > 0 ? (double)total / tmin / 1e9 : -1;
    }
out:
    munmap(buf, total);
    free(w);
    free(th);
    free(times);
    return best;
}

/* ---- cache file ------------------------------------------------------------------ */
static int cache_path(char *buf, size_t n, bool create) {
    const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    char dir[1024];
    if (x && *x) snprintf(dir, sizeof dir, "%s/moerun", x);
    else if (h && *h) snprintf(dir, sizeof dir, "%s/.cache/moerun", h);
    else return -1;
    if (create) {
        char parent[1024];
        snprintf(parent, sizeof parent, "%s", dir);
        char *s = strrchr(parent, '/');
        if (s) {
            *s = 0;
            mkdir(parent, 0755);
        }
        mkdir(dir, 0755);
    }
    snprintf(buf, n, "%s/bandwidth.tsv", dir);
    return 0;
}

static const char *kernel_name(void) { return mr_cpu()->avx2 ? "avx2" : "scalar"; }

/* Lines "CPU MODEL<TAB>kernel<TAB>threads<TAB>GB/s<TAB>date"; the last matching
 * line wins (the kernel is part of the key: MOERUN_CPU=generic measures less). */
int bench_bw_cache_get(int n_threads, double *gbs) {
    char path[1100], line[1024];
    if (cache_path(path, sizeof path, false)) return -1;
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char key[512];
    snprintf(key, sizeof key, "%s\t%s\t", mr_cpu_model(), kernel_name());
    size_t kl = strlen(key);
    int found = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl)) continue;
        char *e;
        long t = strtol(line + kl, &e, 10);
        if (t != n_threads || *e != '\t') continue;
        double v = strtod(e + 1, NULL);
        if (v > 0) {
            *gbs = v;
            found = 0;
        }
    }
    fclose(f);
    return found;
}

int bench_bw_cache_put(int n_threads, double gbs) {
    char path[1100], date[40];
    if (cache_path(path, sizeof path, true)) {
        mr_seterr("bandwidth cache: neither XDG_CACHE_HOME nor HOME is set");
        return -1;
    }
    FILE *f = fopen(path, "a");
    if (!f) {
        mr_seterr("%s: cannot write: %s", path, strerror(errno));
        return -1;
    }
    bench_iso8601_now(date, sizeof date);
    fprintf(f, "%s\t%s\t%d\t%.3f\t%s\n", mr_cpu_model(), kernel_name(), n_threads, gbs, date);
    fclose(f);
    return 0;
}
