/*
 * base.h — errors, logging, checked allocation, timers, CPU features.
 *
 * Error convention used across moerun: library functions return 0 (or a valid
 * pointer) on success and -1 (or NULL) on failure after recording a message with
 * mr_seterr(). The message names the file, tensor, key or field at fault. The
 * caller either adds context with mr_preerr() or prints mr_geterr(). Nothing in
 * library code aborts on bad input; MR_ASSERT is for broken internal invariants.
 */
#ifndef MR_BASE_H
#define MR_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define MR_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define MR_LIKELY(x) __builtin_expect(!!(x), 1)
#define MR_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define MR_PRINTF(a, b)
#define MR_LIKELY(x) (x)
#define MR_UNLIKELY(x) (x)
#endif

#define MR_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MR_MAX(a, b) ((a) > (b) ? (a) : (b))
#define MR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- errors (thread-local last error) ---------------------------------- */
void mr_seterr(const char *fmt, ...) MR_PRINTF(1, 2);
/* Prefix the current error with more context: "ctx: old message". */
void mr_preerr(const char *fmt, ...) MR_PRINTF(1, 2);
const char *mr_geterr(void);
void mr_clearerr(void);

/* Internal invariant check: prints file:line and aborts. Never for input errors. */
#define MR_ASSERT(x)                                                                   \
    do {                                                                               \
        if (MR_UNLIKELY(!(x))) mr_assert_fail(#x, __FILE__, __LINE__);                 \
    } while (0)
_Noreturn void mr_assert_fail(const char *expr, const char *file, int line);

/* ---- logging ------------------------------------------------------------ */
enum { MR_LOG_ERROR = 0, MR_LOG_WARN = 1, MR_LOG_INFO = 2, MR_LOG_DEBUG = 3 };
extern int mr_log_level; /* default MR_LOG_WARN; MOERUN_LOG=debug|info|warn|error */
void mr_log(int level, const char *fmt, ...) MR_PRINTF(2, 3);
#define MR_ERR(...) mr_log(MR_LOG_ERROR, __VA_ARGS__)
#define MR_WARN(...) mr_log(MR_LOG_WARN, __VA_ARGS__)
#define MR_INFO(...) mr_log(MR_LOG_INFO, __VA_ARGS__)
#define MR_DBG(...) mr_log(MR_LOG_DEBUG, __VA_ARGS__)

/* ---- allocation ---------------------------------------------------------- */
/* Checked allocators: on failure they record an error naming the size and
 * return NULL (library code must handle it). */
void *mr_malloc(size_t n);
void *mr_calloc(size_t n, size_t sz);
void *mr_realloc(void *p, size_t n);
char *mr_strdup(const char *s);
/* 64-byte aligned allocation, freed with mr_free_aligned(). */
void *mr_malloc_aligned(size_t n);
void mr_free_aligned(void *p);
/* Zeroed, 2 MiB aligned and, on Linux, advised into transparent huge pages (MADV_HUGEPAGE:
 * honoured where /sys/kernel/mm/transparent_hugepage/enabled is "madvise", the common default,
 * as well as "always"), for large arrays read in long scans (the KV cache); freed with
 * mr_free_aligned(). */
void *mr_calloc_huge(size_t n);

/* Overflow-checked arithmetic: return false on overflow. */
/* A spin-wait hint (x86 pause: the waiting core yields its pipeline to its sibling). */
static inline void mr_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline bool mr_add_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_add_overflow(a, b, r); }
static inline bool mr_mul_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_mul_overflow(a, b, r); }

/* ---- time ---------------------------------------------------------------- */
double mr_time_s(void); /* monotonic seconds */
uint64_t mr_time_us(void);

/* ---- CPU / machine ------------------------------------------------------- */
typedef struct {
    bool avx, avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16, avx_vnni, bmi2;
    bool amd;        /* x86 vendor AuthenticAMD */
    int family;      /* x86 family (base + extended: AMD Zen 3/4 0x19, Zen 5 0x1a); 0 unknown */
    bool avx512_hw;  /* the CPU has AVX-512F, also where MOERUN_CPU=avx2 hides it from the kernels */
    bool neon, dotprod;
} mr_cpu_features;
const mr_cpu_features *mr_cpu(void);
/* "AVX2 FMA F16C ..." — features this binary may use at run time. */
const char *mr_cpu_features_str(void);
const char *mr_cpu_model(void);      /* from /proc/cpuinfo, "unknown" otherwise */
int mr_cpu_physical_cores(void);     /* physical cores, >= 1 */
int mr_cpu_logical_cores(void);
uint64_t mr_ram_bytes(void);         /* total RAM */
uint64_t mr_mem_available(void);     /* MemAvailable (free + reclaimable page cache); 0 if unknown */
uint64_t mr_peak_rss_bytes(void);    /* peak resident set size of this process (since the last reset) */
int mr_peak_rss_reset(void);         /* restart the peak at the current RSS: 0, or -1 where Linux refuses */
uint64_t mr_rss_bytes(void);         /* current resident set size */

/* ---- human formatting ---------------------------------------------------- */
/* "17.28 GiB", "30.53 B" into a caller buffer; returns buf. */
char *mr_fmt_bytes(char *buf, size_t n, uint64_t bytes);
char *mr_fmt_count(char *buf, size_t n, uint64_t count);

/* ---- build info ---------------------------------------------------------- */
const char *mr_version(void);
const char *mr_git_commit(void);
const char *mr_compiler(void);
bool mr_have_cuda(void);

/* ---- whole-file read ----------------------------------------------------- */
/* Reads a file into a NUL-terminated heap buffer. */
char *mr_read_file(const char *path, size_t *len);

#endif
