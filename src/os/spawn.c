/*
 * spawn — see spawn.h for the contract. The shape of it:
 *
 *   this process ── fork ──▶ supervisor (subreaper, own process group)
 *                                └─ fork + execve ──▶ child (own process group)
 *                                                        └─ whatever it starts
 *
 * The supervisor and this process talk over a "status" pipe of fixed-size
 * records: STARTED (child pid) or EXEC_FAILED (errno) once, then EXITED
 * (wait status) when the child and everything below it are gone. The child
 * reports a failed execve to the supervisor over its own close-on-exec pipe.
 * This process signals the supervisor: SIGTERM means "SIGTERM the child's
 * group", SIGUSR1 means "SIGKILL it all".
 */
#include "spawn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/util.h"
#include "lib/xalloc.h"
#include "lib/banned.h"

extern char **environ;

enum { REC_STARTED = 1, REC_EXEC_FAILED = 2, REC_EXITED = 3 };

struct rec {
    int32_t type;
    int32_t value;
};

struct spawn {
    pid_t sup;   /* the supervisor; 0 once reaped (or ended, with the helper) */
    int pidfd;   /* the supervisor's pidfd when the helper forked it, else -1 */
    pid_t pid;   /* the child, leader of its process group */
    int out_fd;  /* read end of the output pipe, or -1 */
    int done_fd; /* read end of the status pipe */
    bool done;
    int status;
};

/* Everything the forked copies need, prepared before fork (no allocation
 * happens after it). */
struct child_args {
    const char *path;
    char *const *argv;
    char *const *envp;
    const char *cwd;
    int null_fd;
    int out_fd;
    int status_fd;
    pid_t parent;
    int max_fd;
};

/* ---- in the supervisor and the child: async-signal-safe code only ---- */

/* Fixed descriptor numbers in the supervisor (see supervise()). */
enum { FD_NULL = 3, FD_OUT = 4, FD_STATUS = 5, FD_FIRST_FREE = 6 };

static volatile sig_atomic_t sup_child;      /* the child's pid once known */
static volatile sig_atomic_t sup_child_done; /* the child exited: stop signalling its group */

static void sup_on_signal(int sig)
{
    int saved = errno;
    pid_t p = sup_child;
    if (p > 0 && !sup_child_done)
        kill(-p, sig == SIGUSR1 ? SIGKILL : SIGTERM);
    errno = saved;
}

static void write_all_raw(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static void send_rec(int fd, int type, int value)
{
    struct rec r = {type, value};
    write_all_raw(fd, &r, sizeof r);
}

/* Close every descriptor >= from except keep (-1: none). */
static void close_from(int from, int keep, int max_fd)
{
    if (keep >= from) {
        if (keep > from && syscall(SYS_close_range, (unsigned)from, (unsigned)keep - 1, 0) < 0)
            for (int fd = from; fd < keep; fd++)
                close(fd);
        from = keep + 1;
    }
    if (syscall(SYS_close_range, (unsigned)from, ~0U, 0) < 0)
        for (int fd = from; fd < max_fd; fd++)
            close(fd);
}

static void reset_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &sa, NULL); /* glibc's reserved signals fail: fine */
}

static void unblock_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void block_signals(void)
{
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
}

/* The grandchild: becomes the program. Never returns. */
static void exec_child(const struct child_args *a, int err_fd) __attribute__((noreturn));
static void exec_child(const struct child_args *a, int err_fd)
{
    int e;
    setpgid(0, 0);
    if (dup2(FD_NULL, 0) < 0 || dup2(FD_OUT, 1) < 0 || dup2(FD_OUT, 2) < 0)
        goto fail;
    close_from(3, err_fd, a->max_fd);
    if (a->cwd && chdir(a->cwd) < 0)
        goto fail;
    reset_signals();
    unblock_signals();
    execve(a->path, a->argv, a->envp);
fail:
    e = errno;
    write_all_raw(err_fd, &e, sizeof e);
    _exit(127);
}

static int parse_pid(const char *s, size_t n, size_t *i)
{
    int v = 0;
    while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
        v = v * 10 + (s[*i] - '0');
        (*i)++;
    }
    return v;
}

/* SIGKILL every child of this (single-threaded) process; returns how many
 * were found, or -1 when /proc/thread-self/children cannot be read. */
static int kill_children_proc_file(void)
{
    int fd = open("/proc/thread-self/children", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[4096];
    int count = 0, carry = 0;
    bool in_num = false;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] >= '0' && buf[i] <= '9') {
                carry = carry * 10 + (buf[i] - '0');
                in_num = true;
            } else if (in_num) {
                kill(carry, SIGKILL);
                count++;
                carry = 0;
                in_num = false;
            }
        }
    }
    if (in_num) {
        kill(carry, SIGKILL);
        count++;
    }
    close(fd);
    return count;
}

/* The same by scanning /proc/<pid>/stat for our pid as the parent, for
 * kernels without CONFIG_PROC_CHILDREN. */
static int kill_children_scan(void)
{
    int dfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return 0;
    pid_t self = getpid();
    int count = 0;
    char dents[8192];
    for (;;) {
        long n = syscall(SYS_getdents64, dfd, dents, sizeof dents);
        if (n <= 0)
            break;
        for (long off = 0; off < n;) {
            /* struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name */
            unsigned short reclen;
            memcpy(&reclen, dents + off + 16, sizeof reclen);
            const char *name = dents + off + 19;
            off += reclen;
            if (name[0] < '1' || name[0] > '9')
                continue;
            char path[64] = "/proc/";
            size_t k = 6, nl = strlen(name);
            if (nl > 20)
                continue;
            memcpy(path + k, name, nl);
            k += nl;
            memcpy(path + k, "/stat", 6);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                continue;
            char st[512];
            ssize_t len = read(fd, st, sizeof st - 1);
            close(fd);
            if (len <= 0)
                continue;
            /* "pid (comm) S ppid ...": comm may hold anything, so find the last ')'. */
            ssize_t rp = len - 1;
            while (rp > 0 && st[rp] != ')')
                rp--;
            size_t i = (size_t)rp + 4; /* ") S " */
            if (i >= (size_t)len)
                continue;
            int ppid = parse_pid(st, (size_t)len, &i);
            if (ppid == self) {
                size_t j = 0;
                int pid = parse_pid(name, nl, &j);
                kill(pid, SIGKILL);
                count++;
            }
        }
    }
    close(dfd);
    return count;
}

/* Kill and reap everything below us until we have no child at all. */
static void sweep(void)
{
    for (;;) {
        pid_t p;
        while ((p = waitpid(-1, NULL, WNOHANG)) > 0)
            ;
        if (p < 0 && errno == ECHILD)
            return;
        int n = kill_children_proc_file();
        if (n < 0)
            n = kill_children_scan();
        if (n > 0) {
            while ((p = waitpid(-1, NULL, 0)) < 0 && errno == EINTR)
                ;
        } else {
            /* A child exists but was not listed (a race with its birth or
             * re-parenting): look again shortly. */
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

static void supervise(const struct child_args *a) __attribute__((noreturn));
static void supervise(const struct child_args *a)
{
    /* Signals are all blocked here (the parent blocked them around fork). */
    setpgid(0, 0);

    /* Keep exactly three descriptors, at fixed numbers. */
    int n = fcntl(a->null_fd, F_DUPFD_CLOEXEC, 10);
    int o = fcntl(a->out_fd, F_DUPFD_CLOEXEC, 10);
    int s = fcntl(a->status_fd, F_DUPFD_CLOEXEC, 10);
    if (n < 0 || o < 0 || s < 0)
        _exit(126);
    if (dup3(n, FD_NULL, O_CLOEXEC) < 0 || dup3(o, FD_OUT, O_CLOEXEC) < 0 ||
        dup3(s, FD_STATUS, O_CLOEXEC) < 0)
        _exit(126);
    close_from(FD_FIRST_FREE, -1, a->max_fd);

    reset_signals();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = sup_on_signal;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);

    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0);
    if (getppid() != a->parent)
        kill(getpid(), SIGUSR1); /* our parent is already gone: pending until unblocked */

    int ep[2];
    if (pipe2(ep, O_CLOEXEC) < 0) {
        send_rec(FD_STATUS, REC_EXEC_FAILED, errno);
        _exit(127);
    }
    /* vfork: we are single-threaded with every signal blocked, and the
     * child only makes async-signal-safe calls on its own stack frame before
     * execve or _exit, so sharing our memory until then is safe, and it
     * spares copying the page tables of a large process twice per spawn. */
    pid_t child = vfork();
    if (child == 0)
        exec_child(a, ep[1]);
    if (child < 0) {
        send_rec(FD_STATUS, REC_EXEC_FAILED, errno);
        _exit(127);
    }
    close(ep[1]);
    int e = 0;
    ssize_t r;
    while ((r = read(ep[0], &e, sizeof e)) < 0 && errno == EINTR)
        ;
    close(ep[0]);
    if (r == (ssize_t)sizeof e) {
        waitpid(child, NULL, 0);
        send_rec(FD_STATUS, REC_EXEC_FAILED, e);
        _exit(127);
    }

    /* Our own stdio should not hold the caller's terminal or pipes open. */
    dup2(FD_NULL, 0);
    dup2(FD_NULL, 1);
    dup2(FD_NULL, 2);
    close(FD_NULL);
    close(FD_OUT);

    sup_child = child;
    send_rec(FD_STATUS, REC_STARTED, child);
    unblock_signals();

    /* Reap adopted orphans as they die until the child itself exits; look
     * at the child without reaping it, so that its pid (its group id)
     * cannot be reused while our handlers may still signal the group. */
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_ALL, 0, &si, WEXITED | WNOWAIT) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (si.si_pid == child)
            break;
        waitpid(si.si_pid, NULL, 0);
    }
    block_signals();
    sup_child_done = 1;
    kill(-child, SIGKILL);
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    sweep();
    send_rec(FD_STATUS, REC_EXITED, status);
    _exit(0);
}


/* ---- the helper: a small process that forks the supervisors ---- */

/*
 * Forking the supervisor from this process costs in proportion to this
 * process: its page tables are copied, every page it writes while the
 * supervisor lives is copied again (copy-on-write), and the copy is torn
 * down when the supervisor exits — with a runner's threads and libraries,
 * that was the largest part of a trivial job's cost (bench/throughput).
 * spawn_helper_start() forks, while the process is still small and has one
 * thread, a helper that does nothing but fork supervisors on request: its
 * forks are cheap and nothing of ours is copied.
 *
 * Requests go over a stream socket under helper_mu (one at a time: a fork
 * of the helper takes tens of microseconds): a header with the descriptors
 * (the status pipe's write end, the child's output) as SCM_RIGHTS, then the
 * strings. The answer is the supervisor's pid, with a pidfd of it (race-free
 * signals: the supervisor is the helper's child, reaped by the helper, so
 * its pid could be reused; a pidfd cannot). The helper dies with this
 * process (PR_SET_PDEATHSIG), and the supervisors with the helper.
 */
struct helper_req {
    uint32_t len;  /* bytes of strings that follow */
    uint32_t argc; /* argv strings, after path (and cwd) */
    uint32_t envc; /* envp strings, after argv */
    uint32_t has_cwd;
};

struct helper_rep {
    int32_t err; /* 0 or an errno */
    int32_t pid;
};

#define HELPER_MAX_REQ (64u << 20)

static pthread_mutex_t helper_mu = PTHREAD_MUTEX_INITIALIZER;
static int helper_fd = -1; /* our end of the socket; -1: fork here */
static pid_t helper_pid;

static int send_fds(int sock, const void *data, size_t len, const int *fds, int nfds)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(2 * sizeof(int))];
    } c;
    memset(&c, 0, sizeof c);
    struct iovec iov = {(void *)data, len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        m.msg_control = c.buf;
        m.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(h), fds, (size_t)nfds * sizeof(int));
    }
    ssize_t n;
    while ((n = sendmsg(sock, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return -errno;
    if ((size_t)n < len)
        return fd_write_all(sock, (const char *)data + n, len - (size_t)n);
    return 0;
}

/* Receive exactly len bytes, the first of them with up to *nfds descriptors
 * (O_CLOEXEC); *nfds is set to how many came. 0, -EPIPE at end of file, or
 * -errno. */
static int recv_fds(int sock, void *data, size_t len, int *fds, int *nfds)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(2 * sizeof(int))];
    } c;
    int want = *nfds;
    *nfds = 0;
    size_t got = 0;
    while (got < len) {
        struct iovec iov = {(char *)data + got, len - got};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
        if (got == 0 && want > 0) {
            m.msg_control = c.buf;
            m.msg_controllen = sizeof c.buf;
        }
        ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EPIPE;
        for (struct cmsghdr *h = m.msg_controllen ? CMSG_FIRSTHDR(&m) : NULL; h;
             h = CMSG_NXTHDR(&m, h)) {
            if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
                continue;
            int k = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(h) + (size_t)i * sizeof(int), sizeof fd);
                if (*nfds < want)
                    fds[(*nfds)++] = fd;
                else
                    close(fd);
            }
        }
        got += (size_t)n;
    }
    return 0;
}

/* The strings of a request: NULL-terminated. */
static const char *next_str(const char **p, const char *end)
{
    const char *s = *p, *z = s < end ? memchr(s, '\0', (size_t)(end - s)) : NULL;
    if (!z)
        return NULL;
    *p = z + 1;
    return s;
}

/* In the helper: serve one request (its descriptors status_fd, out_fd). */
static void helper_serve(int sock, const struct helper_req *rq, char *strs, int status_fd,
                         int out_fd, int null_fd, int max_fd)
{
    struct helper_rep rep = {0, 0};
    const char **argv = calloc(rq->argc + 1, sizeof *argv);
    const char **envp = calloc(rq->envc + 1, sizeof *envp);
    const char *p = strs, *end = strs + rq->len, *path = next_str(&p, end), *cwd = NULL;
    bool ok = argv && envp && path && rq->argc > 0;
    if (ok && rq->has_cwd)
        ok = (cwd = next_str(&p, end)) != NULL;
    for (uint32_t i = 0; ok && i < rq->argc; i++)
        ok = (argv[i] = next_str(&p, end)) != NULL;
    for (uint32_t i = 0; ok && i < rq->envc; i++)
        ok = (envp[i] = next_str(&p, end)) != NULL;
    int pidfd = -1;
    if (!ok) {
        rep.err = EINVAL;
    } else {
        struct child_args a = {
            .path = path,
            .argv = (char *const *)argv,
            .envp = (char *const *)envp,
            .cwd = cwd,
            .null_fd = null_fd,
            .out_fd = out_fd >= 0 ? out_fd : null_fd,
            .status_fd = status_fd,
            .parent = getpid(),
            .max_fd = max_fd,
        };
        pid_t sup = fork(); /* signals are blocked for good in the helper */
        if (sup == 0)
            supervise(&a);
        if (sup < 0) {
            rep.err = errno;
        } else {
            rep.pid = sup;
            pidfd = (int)syscall(SYS_pidfd_open, sup, 0);
            if (pidfd < 0) {
                rep.err = errno;
                kill(sup, SIGUSR1); /* it kills the child; we reap it */
            }
        }
    }
    free(argv);
    free(envp);
    send_fds(sock, &rep, sizeof rep, &pidfd, pidfd >= 0 ? 1 : 0);
    if (pidfd >= 0)
        close(pidfd);
}

static void helper_main(int sock, pid_t parent) __attribute__((noreturn));
static void helper_main(int sock, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent)
        _exit(0);
    prctl(PR_SET_NAME, "yci-spawn", 0, 0, 0);
    /* Every signal blocked for good (fork in helper_serve relies on it);
     * SIGCHLD read from a signalfd, to reap the supervisors. */
    block_signals();
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    int nfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (sfd < 0 || nfd < 0)
        _exit(1);
    /* Hold nothing of the caller's (its terminal, its pipes, its sockets):
     * keep three descriptors, at fixed numbers. */
    enum { H_SOCK = 3, H_SIGNAL = 4, H_NULL = 5 };
    int a = fcntl(sock, F_DUPFD_CLOEXEC, 10), b = fcntl(sfd, F_DUPFD_CLOEXEC, 10),
        c = fcntl(nfd, F_DUPFD_CLOEXEC, 10);
    if (a < 0 || b < 0 || c < 0 || dup3(a, H_SOCK, O_CLOEXEC) < 0 ||
        dup3(b, H_SIGNAL, O_CLOEXEC) < 0 || dup3(c, H_NULL, O_CLOEXEC) < 0)
        _exit(1);
    long open_max = sysconf(_SC_OPEN_MAX);
    int max_fd = open_max > 0 && open_max < 65536 ? (int)open_max : 65536;
    close_from(H_NULL + 1, -1, max_fd);
    dup2(H_NULL, 0);
    dup2(H_NULL, 1);
    dup2(H_NULL, 2);
    sock = H_SOCK;
    sfd = H_SIGNAL;
    int null_fd = H_NULL;
    for (;;) {
        struct pollfd pfd[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(pfd, 2, -1) < 0 && errno != EINTR)
            _exit(1);
        if (pfd[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0)
                ;
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        }
        if (!pfd[0].revents)
            continue;
        struct helper_req rq;
        int fds[2] = {-1, -1}, nfds = 2;
        if (recv_fds(sock, &rq, sizeof rq, fds, &nfds) < 0)
            _exit(0); /* the caller closed its end, or died */
        char *strs = rq.len <= HELPER_MAX_REQ ? malloc(rq.len ? rq.len : 1) : NULL;
        int none = 0;
        if (!strs || recv_fds(sock, strs, rq.len, NULL, &none) < 0)
            _exit(1);
        if (nfds >= 1)
            helper_serve(sock, &rq, strs, fds[0], nfds == 2 ? fds[1] : -1, null_fd, max_fd);
        else
            send_fds(sock, &(struct helper_rep){EINVAL, 0}, sizeof(struct helper_rep), NULL, 0);
        free(strs);
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
    }
}

static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

int spawn_helper_start(struct buf *err)
{
    pthread_mutex_lock(&helper_mu);
    int ret = 0;
    if (helper_fd >= 0)
        goto out;
    if (count_threads() != 1) {
        buf_setf(err, "the spawn helper must start while the process has one thread");
        ret = -EBUSY;
        goto out;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        ret = -errno;
        buf_setf(err, "socketpair: %s", strerror(errno));
        goto out;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        helper_main(sv[1], parent);
    }
    int fork_errno = errno;
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        ret = -fork_errno;
        buf_setf(err, "fork: %s", strerror(fork_errno));
        goto out;
    }
    helper_fd = sv[0];
    helper_pid = pid;
out:
    pthread_mutex_unlock(&helper_mu);
    return ret;
}

void spawn_helper_stop(void)
{
    pthread_mutex_lock(&helper_mu);
    if (helper_fd >= 0) {
        close(helper_fd); /* the helper exits at end of file */
        helper_fd = -1;
        while (waitpid(helper_pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    pthread_mutex_unlock(&helper_mu);
}

/* Ask the helper for a supervisor of a; *sup and *pidfd on success. */
static int helper_fork(const struct child_args *a, pid_t *sup, int *pidfd)
{
    struct buf b = BUF_INIT;
    struct helper_req rq = {0, 0, 0, a->cwd != NULL};
    buf_add(&b, a->path, strlen(a->path) + 1);
    if (a->cwd)
        buf_add(&b, a->cwd, strlen(a->cwd) + 1);
    for (char *const *v = a->argv; *v; v++, rq.argc++)
        buf_add(&b, *v, strlen(*v) + 1);
    for (char *const *v = a->envp; *v; v++, rq.envc++)
        buf_add(&b, *v, strlen(*v) + 1);
    rq.len = (uint32_t)b.len;
    int ret = b.len > HELPER_MAX_REQ ? -E2BIG : 0;
    pthread_mutex_lock(&helper_mu);
    if (helper_fd < 0)
        ret = -ESRCH;
    int fds[2] = {a->status_fd, a->out_fd};
    if (ret == 0)
        ret = send_fds(helper_fd, &rq, sizeof rq, fds, a->out_fd != a->null_fd ? 2 : 1);
    if (ret == 0 && b.len)
        ret = fd_write_all(helper_fd, b.data, b.len);
    struct helper_rep rep;
    int got = 1;
    if (ret == 0)
        ret = recv_fds(helper_fd, &rep, sizeof rep, pidfd, &got);
    if (ret == -EPIPE || ret == -ECONNRESET) {
        /* The helper died (killed by someone): fork here from now on. */
        close(helper_fd);
        helper_fd = -1;
        while (waitpid(helper_pid, NULL, 0) < 0 && errno == EINTR)
            ;
        ret = -ESRCH;
    }
    pthread_mutex_unlock(&helper_mu);
    buf_release(&b);
    if (ret < 0)
        return ret;
    if (rep.err) {
        if (got)
            close(*pidfd);
        return -rep.err;
    }
    if (!got)
        return -EIO;
    *sup = rep.pid;
    return 0;
}

/* ---- in this process ---- */

static const char *env_get(const char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (; envp && *envp; envp++)
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
            return *envp + n + 1;
    return NULL;
}

static int resolve_program(const char *prog, const char *const *envp, char **out)
{
    if (strchr(prog, '/')) {
        *out = xstrdup(prog);
        return 0;
    }
    const char *path = env_get(envp ? envp : (const char *const *)environ, "PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    int ret = -ENOENT;
    for (const char *p = path;; p++) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        char *cand = len ? xasprintf("%.*s/%s", (int)len, p, prog) : xasprintf("./%s", prog);
        struct stat st;
        if (stat(cand, &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(cand, X_OK) == 0) {
                *out = cand;
                return 0;
            }
            ret = -EACCES;
        }
        free(cand);
        if (!colon)
            break;
        p = colon;
    }
    return ret;
}

static int read_rec(int fd, struct rec *r)
{
    size_t got = 0;
    while (got < sizeof *r) {
        ssize_t n = read(fd, (char *)r + got, sizeof *r - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = {fd, POLLIN, 0};
            poll(&pfd, 1, -1);
            continue;
        }
        if (n < 0)
            return -errno;
        if (n == 0)
            return got ? -EIO : 0;
        got += (size_t)n;
    }
    return 1;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

int spawn_start(const struct spawn_opts *opts, struct spawn **out, struct buf *err)
{
    int ret;
    char *path = NULL;
    int null_fd = -1, pipe_fd[2] = {-1, -1}, status_fd[2] = {-1, -1};

    if (!opts->argv || !opts->argv[0]) {
        buf_setf(err, "nothing to run");
        return -EINVAL;
    }
    ret = resolve_program(opts->argv[0], opts->envp, &path);
    if (ret < 0) {
        buf_setf(err, "cannot run '%s': %s", opts->argv[0], strerror(-ret));
        return ret;
    }
    null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0) {
        ret = -errno;
        buf_setf(err, "cannot open /dev/null: %s", strerror(errno));
        goto out;
    }
    int child_out = null_fd;
    if (opts->out_fd == SPAWN_PIPE) {
        if (pipe2(pipe_fd, O_CLOEXEC) < 0) {
            ret = -errno;
            buf_setf(err, "pipe: %s", strerror(errno));
            goto out;
        }
        fcntl(pipe_fd[0], F_SETFL, O_NONBLOCK);
        child_out = pipe_fd[1];
    } else if (opts->out_fd >= 0) {
        child_out = opts->out_fd;
    }
    if (pipe2(status_fd, O_CLOEXEC) < 0) {
        ret = -errno;
        buf_setf(err, "pipe: %s", strerror(errno));
        goto out;
    }

    long open_max = sysconf(_SC_OPEN_MAX);
    struct child_args a = {
        .path = path,
        .argv = (char *const *)opts->argv,
        .envp = (char *const *)(opts->envp ? opts->envp : (const char *const *)environ),
        .cwd = opts->cwd,
        .null_fd = null_fd,
        .out_fd = child_out,
        .status_fd = status_fd[1],
        .parent = getpid(),
        .max_fd = open_max > 0 && open_max < 65536 ? (int)open_max : 65536,
    };

    pid_t sup = -1;
    int pidfd = -1;
    ret = helper_fork(&a, &sup, &pidfd); /* -ESRCH: no helper (any more) */
    if (ret < 0 && ret != -ESRCH) {
        buf_setf(err, "cannot start a supervisor: %s", strerror(-ret));
        goto out;
    }
    if (ret == -ESRCH) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        sup = fork();
        if (sup == 0)
            supervise(&a);
        int fork_errno = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (sup < 0) {
            ret = -fork_errno;
            buf_setf(err, "fork: %s", strerror(fork_errno));
            goto out;
        }
    }
    close_fd(&status_fd[1]);
    close_fd(&pipe_fd[1]);

    struct rec r;
    int rr = read_rec(status_fd[0], &r);
    if (rr <= 0 || r.type != REC_STARTED) {
        int st = 0;
        if (pidfd >= 0)
            close(pidfd); /* the helper reaps it */
        else
            while (waitpid(sup, &st, 0) < 0 && errno == EINTR)
                ;
        if (rr > 0 && r.type == REC_EXEC_FAILED) {
            ret = -r.value;
            if (opts->cwd && r.value == ENOENT)
                buf_setf(err, "cannot run '%s' in '%s': %s", opts->argv[0], opts->cwd,
                         strerror(r.value));
            else
                buf_setf(err, "cannot run '%s': %s", opts->argv[0], strerror(r.value));
        } else {
            ret = -EIO;
            buf_setf(err, "cannot run '%s': its supervisor died (status %d)", opts->argv[0], st);
        }
        goto out;
    }

    struct spawn *s = xcalloc(1, sizeof *s);
    s->sup = sup;
    s->pidfd = pidfd;
    s->pid = r.value;
    s->out_fd = pipe_fd[0];
    s->done_fd = status_fd[0];
    pipe_fd[0] = status_fd[0] = -1;
    *out = s;
    ret = 0;
out:
    free(path);
    close_fd(&null_fd);
    close_fd(&pipe_fd[0]);
    close_fd(&pipe_fd[1]);
    close_fd(&status_fd[0]);
    close_fd(&status_fd[1]);
    return ret;
}

pid_t spawn_pid(const struct spawn *s)
{
    return s->pid;
}

int spawn_out_fd(const struct spawn *s)
{
    return s->out_fd;
}

int spawn_done_fd(const struct spawn *s)
{
    return s->done_fd;
}

int spawn_signal(struct spawn *s, bool hard)
{
    if (s->done || s->sup <= 0)
        return 0;
    int sig = hard ? SIGUSR1 : SIGTERM;
    /* The supervisor is our unreaped child, so its pid cannot be reused;
     * or the helper's, known by a pidfd, which cannot be reused either. */
    if (s->pidfd >= 0) {
        if (syscall(SYS_pidfd_send_signal, s->pidfd, sig, NULL, 0) < 0 && errno != ESRCH)
            return -errno;
        return 0;
    }
    if (kill(s->sup, sig) < 0)
        return -errno;
    return 0;
}

int spawn_wait(struct spawn *s, int64_t timeout_ms, int *status)
{
    if (!s->done) {
        struct pollfd pfd = {s->done_fd, POLLIN, 0};
        int64_t deadline = timeout_ms > 0 ? time_mono_ms() + timeout_ms : 0;
        for (;;) {
            int wait = -1;
            if (timeout_ms == 0)
                wait = 0;
            else if (timeout_ms > 0) {
                int64_t left = deadline - time_mono_ms();
                wait = left > 0 ? (int)(left > INT_MAX ? INT_MAX : left) : 0;
            }
            int n = poll(&pfd, 1, wait);
            if (n < 0 && errno == EINTR)
                continue;
            if (n == 0)
                return -ETIMEDOUT;
            break;
        }
        struct rec r;
        int rr = read_rec(s->done_fd, &r);
        /* The helper's supervisors are reaped by the helper: one without an
         * EXITED record was killed, as if by SIGKILL. */
        int sup_status = SIGKILL;
        if (s->pidfd < 0)
            while (waitpid(s->sup, &sup_status, 0) < 0 && errno == EINTR)
                ;
        s->sup = 0;
        s->done = true;
        /* Without an EXITED record the supervisor itself was killed: report
         * how it died. */
        s->status = rr > 0 && r.type == REC_EXITED ? r.value : sup_status;
    }
    if (status)
        *status = s->status;
    return 0;
}

int spawn_terminate(struct spawn *s, int64_t grace_ms, int *status)
{
    spawn_signal(s, false);
    if (spawn_wait(s, grace_ms > 0 ? grace_ms : 0, status) == 0)
        return 0;
    spawn_signal(s, true);
    return spawn_wait(s, -1, status);
}

void spawn_free(struct spawn *s)
{
    if (!s)
        return;
    if (!s->done) {
        spawn_signal(s, true);
        spawn_wait(s, -1, NULL);
    }
    close_fd(&s->out_fd);
    close_fd(&s->done_fd);
    close_fd(&s->pidfd);
    free(s);
}

int spawn_exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 255;
}

static void drain(int fd, struct buf *out, bool *eof)
{
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0) {
            buf_add(out, chunk, (size_t)n); /* past out->max: dropped */
            continue;
        }
        if (n == 0 || errno != EAGAIN)
            *eof = true;
        return;
    }
}

int spawn_run(const struct spawn_opts *opts, int64_t timeout_ms, struct buf *out, int *status,
              struct buf *err)
{
    struct spawn_opts o = *opts;
    o.out_fd = out ? SPAWN_PIPE : SPAWN_NULL;
    struct spawn *s;
    int ret = spawn_start(&o, &s, err);
    if (ret < 0)
        return ret;

    int64_t deadline = timeout_ms > 0 ? time_mono_ms() + timeout_ms : 0;
    int64_t kill_at = 0;
    bool eof = s->out_fd < 0, timed_out = false;
    for (;;) {
        struct pollfd pfd[2] = {{s->done_fd, POLLIN, 0}, {eof ? -1 : s->out_fd, POLLIN, 0}};
        int wait = -1;
        int64_t now = time_mono_ms(), next = kill_at ? kill_at : deadline;
        if (next)
            wait = next > now ? (int)(next - now) : 0;
        int n = poll(pfd, 2, wait);
        if (n < 0 && errno != EINTR)
            break;
        if (pfd[1].revents)
            drain(s->out_fd, out, &eof);
        if (pfd[0].revents)
            break;
        now = time_mono_ms();
        if (kill_at && now >= kill_at) {
            spawn_signal(s, true);
            kill_at = 0;
            deadline = 0;
        } else if (deadline && now >= deadline && !timed_out) {
            timed_out = true;
            spawn_signal(s, false);
            kill_at = now + 2000;
        }
    }
    spawn_wait(s, -1, status);
    if (!eof)
        drain(s->out_fd, out, &eof);
    spawn_free(s);
    if (timed_out) {
        buf_setf(err, "'%s' timed out after %lld ms", opts->argv[0], (long long)timeout_ms);
        return -ETIMEDOUT;
    }
    return 0;
}
