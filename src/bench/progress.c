/*
 * progress.c — the progress line of the benches on stderr. With --progress
 * every update is its own line (as llama-bench --progress); otherwise one
 * line rewritten in place with \r, shown only on a TTY and only once the job
 * has run for more than two seconds, rate-limited to 5 updates per second.
 */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "base/base.h"
#include "bench/bench.h"

void bench_progress_init(bench_progress *p, bool lines) {
    p->lines = lines;
    p->tty = isatty(STDERR_FILENO);
    p->shown = false;
    p->t0 = mr_time_s();
    p->t_last = 0;
}

void bench_progress_update(bench_progress *p, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    double now = mr_time_s();
    if (p->lines) {
        fprintf(stderr, "moerun: %s\n", msg);
        return;
    }
    if (!p->tty || now - p->t0 < 2.0 || now - p->t_last < 0.2) return;
    p->t_last = now;
    p->shown = true;
    fprintf(stderr, "\r\033[K[%6.1f s] %s", now - p->t0, msg);
    fflush(stderr);
}

void bench_progress_done(bench_progress *p) {
    if (p->shown) fprintf(stderr, "\r\033[K");
    p->shown = false;
}
