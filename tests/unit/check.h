/*
 * check.h — the tiny assertion harness of the unit tests.
 *
 * CHECK(cond, fmt, ...) counts a pass or prints the failure and counts it;
 * check_done() prints "N passed, N failed" and returns the exit status
 * (ctest reads the exit code; 77 means skipped).
 * check_shared(sub) returns the path of ../shared/<sub> or NULL (then the test
 * prints a skip message and exits 77).
 */
#ifndef MR_CHECK_H
#define MR_CHECK_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int check_pass_, check_fail_;

#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        if (cond) check_pass_++;                                                     \
        else {                                                                       \
            check_fail_++;                                                           \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
        }                                                                            \
    } while (0)

static inline int check_done(void) {
    printf("%d passed, %d failed\n", check_pass_, check_fail_);
    return check_fail_ ? 1 : 0;
}

/* Path under the shared fixtures folder, or NULL when it is absent. The
 * result lives in one of 16 static buffers used in turn, so a test may hold
 * several paths at once without freeing anything. */
static inline const char *check_shared(const char *sub) {
    static char bufs[16][4096];
    static int next;
    char *buf = bufs[next++ & 15];
    const char *root = getenv("MOERUN_SHARED");
    if (!root) root = "../shared";
    snprintf(buf, 4096, "%s/%s", root, sub);
    struct stat st;
    if (stat(buf, &st) != 0) return NULL;
    return buf;
}

#define SKIP_UNLESS_SHARED(var, sub)                                                          \
    const char *var = check_shared(sub);                                                      \
    if (!var) {                                                                               \
        printf("SKIP: %s not found (set MOERUN_SHARED to the shared fixtures folder)\n", sub);  \
        return 77;                                                                            \
    }
#endif
