/*
 * ab_child.c — child processes of `moerun ab` and `moerun soak`: run a
 * command with its stdout captured and stderr logged, a wall-clock timeout
 * and the peak RSS from wait4's rusage (a crash or timeout of a config is a
 * recorded error, never a crash of ab); spawn a background server; read a
 * process's VmRSS/VmHWM from /proc.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ab/ab.h"
#include "base/base.h"

volatile sig_atomic_t ab_stop;

int ab_self_exe(char *buf, size_t n) {
    ssize_t k = readlink("/proc/self/exe", buf, n - 1);
    if (k <= 0) {
        mr_seterr("cannot resolve /proc/self/exe: %s", strerror(errno));
        return -1;
    }
    buf[k] = 0;
    return 0;
}

static int open_log(const char *log_path) {
    if (!log_path) return open("/dev/null", O_WRONLY);
    return open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

/* The last non-empty line of a file (at most the last 4 KiB), trimmed. */
static void last_line(const char *path, char *out, size_t n) {
    out[0] = 0;
    if (!path) return;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    char buf[4096];
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    long off = sz > (long)sizeof buf - 1 ? sz - (long)sizeof buf + 1 : 0;
    fseek(f, off, SEEK_SET);
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[k] = 0;
    while (k > 0 && (buf[k - 1] == '\n' || buf[k - 1] == '\r' || buf[k - 1] == ' ')) buf[--k] = 0;
    char *ls = strrchr(buf, '\n');
    ls = ls ? ls + 1 : buf;
    /* a progress line may hold \r-separated updates: keep the last */
    char *cr = strrchr(ls, '\r');
    if (cr) ls = cr + 1;
    snprintf(out, n, "%.500s", ls);
}

int ab_child_run(char *const argv[], const char *log_path, double timeout_s, ab_child_result *res) {
    memset(res, 0, sizeof *res);
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0) {
        mr_seterr("pipe: %s", strerror(errno));
        return -1;
    }
    int lfd = open_log(log_path);
    if (lfd < 0) {
        mr_seterr("%s: %s", log_path, strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    double t0 = mr_time_s();
    pid_t pid = fork();
    if (pid < 0) {
        mr_seterr("fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        close(lfd);
        return -1;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) dup2(nul, 0);
        dup2(pfd[1], 1);
        dup2(lfd, 2);
        signal(SIGPIPE, SIG_DFL);
        execv(argv[0], argv);
        dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pfd[1]);
    close(lfd);
    ab_buf out = {0};
    ab_puts(&out, "");
    bool open_ = true, exited = false, term_sent = false;
    double t_term = 0;
    int status = 0;
    struct rusage ru = {0};
    while (!exited || open_) {
        if (open_) {
            struct pollfd p = {.fd = pfd[0], .events = POLLIN};
            int r = poll(&p, 1, 100);
            if (r > 0) {
                char buf[8192];
                ssize_t k = read(pfd[0], buf, sizeof buf);
                if (k > 0) ab_putn(&out, buf, (size_t)k);
                else if (k == 0 || (errno != EINTR && errno != EAGAIN)) open_ = false;
            }
        } else usleep(20000);
        if (!exited) {
            pid_t w = wait4(pid, &status, WNOHANG, &ru);
            if (w == pid) exited = true;
        }
        double now = mr_time_s();
        bool stop = ab_stop || (timeout_s > 0 && now - t0 > timeout_s);
        if (!exited && stop && !term_sent) {
            if (!ab_stop) res->timed_out = true;
            kill(pid, SIGTERM);
            term_sent = true;
            t_term = now;
        } else if (!exited && term_sent && now - t_term > 2.0) {
            kill(pid, SIGKILL);
        }
        if (exited && open_ && term_sent) open_ = false; /* a grandchild holding the pipe: stop waiting */
    }
    close(pfd[0]);
    res->wall_s = mr_time_s() - t0;
    res->peak_rss = (uint64_t)ru.ru_maxrss * 1024u;
    if (WIFEXITED(status)) res->exit_code = WEXITSTATUS(status);
    else {
        res->exit_code = -1;
        res->signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    }
    res->out = ab_buf_take(&out);
    last_line(log_path, res->err_tail, sizeof res->err_tail);
    return 0;
}

void ab_child_result_free(ab_child_result *r) {
    free(r->out);
    r->out = NULL;
}

int ab_child_spawn(char *const argv[], const char *log_path) {
    int lfd = open_log(log_path);
    if (lfd < 0) {
        mr_seterr("%s: %s", log_path ? log_path : "/dev/null", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        mr_seterr("fork: %s", strerror(errno));
        close(lfd);
        return -1;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
        }
        dup2(lfd, 2);
        /* the server must not outlive us if we are killed */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execv(argv[0], argv);
        dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(lfd);
    return pid;
}

static uint64_t proc_status_kb(int pid, const char *field) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    uint64_t v = 0;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, fl) && line[fl] == ':') {
            v = strtoull(line + fl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v * 1024u;
}

uint64_t ab_proc_rss(int pid) { return proc_status_kb(pid, "VmRSS"); }
uint64_t ab_proc_hwm(int pid) { return proc_status_kb(pid, "VmHWM"); }
