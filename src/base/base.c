/*
 * base.c — errors, logging, allocation, timers, machine facts.
 */

#include "base.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

/* ---- errors ------------------------------------------------------------- */
static _Thread_local char g_err[1024];

void mr_seterr(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
}

void mr_preerr(const char *fmt, ...) {
    char pre[256], old[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, g_err, sizeof old);
    snprintf(g_err, sizeof g_err, "%s: %.700s", pre, old);
}

const char *mr_geterr(void) { return g_err[0] ? g_err : "unknown error"; }
void mr_clearerr(void) { g_err[0] = 0; }

void mr_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "moerun: internal error: assertion '%s' failed at %s:%d\n", expr, file, line);
    abort();
}

/* ---- logging ------------------------------------------------------------ */
int mr_log_level = -1;

static void log_init(void) {
    const char *e = getenv("MOERUN_LOG");
    mr_log_level = MR_LOG_WARN;
    if (!e) return;
    if (!strcmp(e, "debug")) mr_log_level = MR_LOG_DEBUG;
    else if (!strcmp(e, "info")) mr_log_level = MR_LOG_INFO;
    else if (!strcmp(e, "error")) mr_log_level = MR_LOG_ERROR;
}

void mr_log(int level, const char *fmt, ...) {
    if (mr_log_level < 0) log_init();
    if (level > mr_log_level) return;
    static const char *names[] = {"error", "warn", "info", "debug"};
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "moerun: %s: %s\n", names[level], buf);
}

/* ---- allocation ------------------------------------------------------------ */
void *mr_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) mr_seterr("out of memory allocating %zu bytes", n);
    return p;
}
void *mr_calloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) mr_seterr("out of memory allocating %zu x %zu bytes", n, sz);
    return p;
}
void *mr_realloc(void *q, size_t n) {
    void *p = realloc(q, n ? n : 1);
    if (!p) mr_seterr("out of memory reallocating to %zu bytes", n);
    return p;
}
char *mr_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = mr_malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}
void *mr_malloc_aligned(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? (n + 63) & ~(size_t)63 : 64) != 0) {
        mr_seterr("out of memory allocating %zu bytes", n);
        return NULL;
    }
    return p;
}
void mr_free_aligned(void *p) { free(p); }

void *mr_calloc_huge(size_t n) {
    const size_t huge = (size_t)2 << 20, sz = n ? (n + huge - 1) / huge * huge : huge;
    if (sz < n) {
        mr_seterr("out of memory allocating %zu bytes", n);
        return NULL;
    }
    void *p = NULL;
    if (posix_memalign(&p, huge, sz) != 0) {
        mr_seterr("out of memory allocating %zu bytes", n);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(p, sz, MADV_HUGEPAGE); /* advice only: small pages where refused */
#endif
    memset(p, 0, sz); /* after the advice, so the pages fault in huge */
    return p;
}

/* ---- time ------------------------------------------------------------------ */
double mr_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
uint64_t mr_time_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- CPU features ------------------------------------------------------------ */
static mr_cpu_features g_cpu;
static int g_cpu_init;

static void cpu_init(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid(0, &a, &b, &c, &d)) g_cpu.amd = b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        g_cpu.family = (int)((a >> 8) & 0xf) + ((a >> 8 & 0xf) == 0xf ? (int)((a >> 20) & 0xff) : 0);
        g_cpu.fma = (c >> 12) & 1;
        g_cpu.f16c = (c >> 29) & 1;
        bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
        unsigned long long xcr0 = 0;
        if (osxsave) {
            unsigned lo, hi;
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            xcr0 = ((unsigned long long)hi << 32) | lo;
        }
        bool ymm = (xcr0 & 6) == 6, zmm = (xcr0 & 0xe6) == 0xe6;
        g_cpu.avx = avx && ymm;
        if (!g_cpu.avx) g_cpu.fma = g_cpu.f16c = false;
        if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
            g_cpu.avx2 = g_cpu.avx && ((b >> 5) & 1);
            g_cpu.bmi2 = (b >> 8) & 1;
            g_cpu.avx512f = zmm && ((b >> 16) & 1);
            g_cpu.avx512bw = zmm && ((b >> 30) & 1);
            g_cpu.avx512vl = zmm && ((b >> 31) & 1);
            /* the AVX-512 files are also built with DQ (b bit 17), which every VNNI CPU has */
            g_cpu.avx512vnni = zmm && ((c >> 11) & 1) && ((b >> 17) & 1);
        }
        if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) {
            g_cpu.avx_vnni = g_cpu.avx2 && ((a >> 4) & 1);
            g_cpu.avx512bf16 = g_cpu.avx512vnni && ((a >> 5) & 1);
        }
    }
    /* MOERUN_CPU=generic forces the scalar paths (for tests and comparisons). */
    const char *e = getenv("MOERUN_CPU");
    g_cpu.avx512_hw = g_cpu.avx512f;
    if (e && !strcmp(e, "generic")) memset(&g_cpu, 0, sizeof g_cpu);
    else if (e && !strcmp(e, "avx2")) {
        g_cpu.avx512f = g_cpu.avx512bw = g_cpu.avx512vl = g_cpu.avx512vnni = g_cpu.avx512bf16 = false;
    }
#elif defined(__aarch64__)
    g_cpu.neon = true;
#endif
    g_cpu_init = 1;
}

const mr_cpu_features *mr_cpu(void) {
    if (!g_cpu_init) cpu_init();
    return &g_cpu;
}

const char *mr_cpu_features_str(void) {
    static char buf[256];
    const mr_cpu_features *f = mr_cpu();
    buf[0] = 0;
#define F(x, s) if (f->x) strcat(buf, s " ");
    F(avx, "AVX") F(avx2, "AVX2") F(fma, "FMA") F(f16c, "F16C") F(bmi2, "BMI2")
    F(avx512f, "AVX512F") F(avx512bw, "AVX512BW") F(avx512vnni, "AVX512_VNNI") F(avx512bf16, "AVX512_BF16") F(avx_vnni, "AVX_VNNI")
    F(neon, "NEON") F(dotprod, "DOTPROD")
#undef F
    size_t n = strlen(buf);
    if (n) buf[n - 1] = 0;
    else strcpy(buf, "generic");
    return buf;
}

const char *mr_cpu_model(void) {
    static char model[256];
    if (model[0]) return model;
    strcpy(model, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return model;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ' || *p == '\t') p++;
                p[strcspn(p, "\n")] = 0;
                snprintf(model, sizeof model, "%s", p);
            }
            break;
        }
    }
    fclose(f);
    return model;
}

int mr_cpu_logical_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int mr_cpu_physical_cores(void) {
    /* Count distinct (physical id, core id) pairs in /proc/cpuinfo. */
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return mr_cpu_logical_cores();
    char line[256];
    int phys = -1, core = -1, n = 0;
    static int seen[4096][2];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "physical id", 11)) phys = atoi(strchr(line, ':') + 1);
        else if (!strncmp(line, "core id", 7)) core = atoi(strchr(line, ':') + 1);
        else if (line[0] == '\n' && core >= 0) {
            int dup = 0;
            for (int i = 0; i < n; i++)
                if (seen[i][0] == phys && seen[i][1] == core) dup = 1;
            if (!dup && n < 4096) { seen[n][0] = phys; seen[n][1] = core; n++; }
            phys = core = -1;
        }
    }
    fclose(f);
    return n > 0 ? n : mr_cpu_logical_cores();
}

uint64_t mr_ram_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    return pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
}

uint64_t mr_mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024u;
}

uint64_t mr_peak_rss_bytes(void) {
    /* VmHWM (resettable through clear_refs); getrusage's maxrss where /proc is missing */
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        unsigned long long kb = 0;
        bool found = false;
        while (!found && fgets(line, sizeof line, f)) found = sscanf(line, "VmHWM: %llu kB", &kb) == 1;
        fclose(f);
        if (found) return (uint64_t)kb * 1024u;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_maxrss * 1024u;
}

int mr_peak_rss_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    const bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

uint64_t mr_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size = 0, res = 0;
    int ok = fscanf(f, "%lu %lu", &size, &res);
    fclose(f);
    return ok == 2 ? (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

/* ---- formatting -------------------------------------------------------------- */
char *mr_fmt_bytes(char *buf, size_t n, uint64_t b) {
    if (b >= (1ull << 30)) snprintf(buf, n, "%.2f GiB", b / 1073741824.0);
    else if (b >= (1ull << 20)) snprintf(buf, n, "%.2f MiB", b / 1048576.0);
    else if (b >= 1024) snprintf(buf, n, "%.2f KiB", b / 1024.0);
    else snprintf(buf, n, "%llu B", (unsigned long long)b);
    return buf;
}

char *mr_fmt_count(char *buf, size_t n, uint64_t c) {
    if (c >= 1000000000ull) snprintf(buf, n, "%.2f B", c / 1e9);
    else if (c >= 1000000ull) snprintf(buf, n, "%.2f M", c / 1e6);
    else if (c >= 1000ull) snprintf(buf, n, "%.2f K", c / 1e3);
    else snprintf(buf, n, "%llu", (unsigned long long)c);
    return buf;
}

/* ---- build info ---------------------------------------------------------------- */
#ifndef MOERUN_VERSION
#define MOERUN_VERSION "0.1.0"
#endif
#ifndef MOERUN_GIT_COMMIT
#define MOERUN_GIT_COMMIT "unknown"
#endif
const char *mr_version(void) { return MOERUN_VERSION; }
const char *mr_git_commit(void) { return MOERUN_GIT_COMMIT; }
const char *mr_compiler(void) {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}
bool mr_have_cuda(void) {
#ifdef MOERUN_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

/* ---- files ------------------------------------------------------------------------ */
char *mr_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        mr_seterr("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = mr_malloc(cap + 1);
    if (!buf) { fclose(f); return NULL; }
    for (;;) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap) {
            if (ferror(f)) {
                mr_seterr("%s: read error", path);
                free(buf);
                fclose(f);
                return NULL;
            }
            break;
        }
        cap *= 2;
        char *nb = mr_realloc(buf, cap + 1);
        if (!nb) { free(buf); fclose(f); return NULL; }
        buf = nb;
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}
