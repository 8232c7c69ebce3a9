/*
 * supervise — see supervise.h. The supervisor, the child's set-up before
 * execve, the sweep of everything left below, and the spawn helper's loop.
 */
#include "supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/banned.h"

/* ---- in the supervisor and the child: async-signal-safe code only ---- */

/* Fixed descriptor numbers in the supervisor (see supervise()). */
enum { FD_NULL = 3, FD_OUT = 4, FD_STATUS = 5, FD_CTL = 6, FD_FIRST_FREE = 7 };

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

static bool write_all_ok(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static void send_rec(int fd, int type, int value)
{
    struct rec r = {type, value};
    write_all_ok(fd, &r, sizeof r);
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
    /* The supervisor reset every other disposition when it started; these
     * three are its own (execve would reset the two handled, not SIG_IGN). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    unblock_signals();
    execve(a->path, a->argv, a->envp);
fail:
    e = errno;
    write_all_ok(err_fd, &e, sizeof e);
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

/* Drop SIGTERM and SIGUSR1 left pending (blocked) from the last child: a
 * caller signals a supervisor only until it has read the EXITED record, so
 * by the time the next request arrives, whatever it sent is pending here. */
static void drop_pending_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&set, NULL, &zero) > 0)
        ;
}

/* Run a's child to its end and report it on FD_STATUS (signals blocked on
 * entry and on return). false: it could not start (reported). */
static bool supervise_one(const struct child_args *a)
{
    sup_child = 0;
    sup_child_done = 0;
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) < 0) {
        send_rec(FD_STATUS, REC_EXEC_FAILED, errno);
        return false;
    }
    /* vfork: we are single-threaded with every signal blocked, and the
     * child only makes async-signal-safe calls on its own stack frame before
     * execve or _exit, so sharing our memory until then is safe, and it
     * spares copying the page tables of a large process twice per spawn. */
    pid_t child = vfork();
    if (child == 0)
        exec_child(a, ep[1]);
    if (child < 0) {
        int e = errno;
        close(ep[0]);
        close(ep[1]);
        send_rec(FD_STATUS, REC_EXEC_FAILED, e);
        return false;
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
        return false;
    }

    /* The child's output is the child's: we hold no end of it. (The fixed
     * numbers stay taken, by /dev/null, so that descriptors received later
     * never land on them.) */
    dup3(FD_NULL, FD_OUT, O_CLOEXEC);

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
    dup3(FD_NULL, FD_STATUS, O_CLOEXEC);
    return true;
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

/* A request's strings as a's path, cwd, argv and envp (argv and envp
 * allocated, pointing into strs). false: malformed (or out of memory). */
static bool parse_req(const struct helper_req *rq, const char *strs, struct child_args *a)
{
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
    if (!ok) {
        free(argv);
        free(envp);
        return false;
    }
    a->path = path;
    a->cwd = cwd;
    a->argv = (char *const *)argv;
    a->envp = (char *const *)envp;
    return true;
}

/* Read a request: its header, up to two descriptors, its strings (*strs,
 * allocated). 0, or -errno (-EPIPE: the other end is closed). */
static int read_req(int sock, struct helper_req *rq, int *fds, int *nfds, char **strs)
{
    *nfds = 2;
    *strs = NULL;
    int r = recv_fds(sock, rq, sizeof *rq, fds, nfds);
    if (r < 0)
        return r;
    if (rq->kind != HELPER_SPAWN || rq->len > HELPER_MAX_REQ)
        return rq->kind == HELPER_RELEASE ? 0 : -EPROTO;
    *strs = malloc(rq->len ? rq->len : 1);
    int none = 0;
    if (!*strs)
        return -ENOMEM;
    return recv_fds(sock, *strs, rq->len, NULL, &none);
}

void supervise(const struct child_args *a)
{
    /* Signals are all blocked here (the parent blocked them around fork). */
    setpgid(0, 0);

    /* Keep exactly three descriptors (four with ctl_fd), at fixed numbers. */
    int n = fcntl(a->null_fd, F_DUPFD_CLOEXEC, 10);
    int o = fcntl(a->out_fd, F_DUPFD_CLOEXEC, 10);
    int s = fcntl(a->status_fd, F_DUPFD_CLOEXEC, 10);
    int c = a->ctl_fd >= 0 ? fcntl(a->ctl_fd, F_DUPFD_CLOEXEC, 10) : -1;
    if (n < 0 || o < 0 || s < 0 || (a->ctl_fd >= 0 && c < 0))
        _exit(126);
    if (dup3(n, FD_NULL, O_CLOEXEC) < 0 || dup3(o, FD_OUT, O_CLOEXEC) < 0 ||
        dup3(s, FD_STATUS, O_CLOEXEC) < 0 || (c >= 0 && dup3(c, FD_CTL, O_CLOEXEC) < 0))
        _exit(126);
    close_from(FD_FIRST_FREE, -1, a->max_fd);
    /* Our own stdio should not hold the caller's terminal or pipes open. */
    dup2(FD_NULL, 0);
    dup2(FD_NULL, 1);
    dup2(FD_NULL, 2);

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

    bool started = supervise_one(a);
    if (c < 0 || !started)
        _exit(started ? 0 : 127);

    /* A supervisor of the helper's: the next request comes on FD_CTL, from
     * the helper once the caller released us (see helper_main()), or from
     * the caller's thread itself when it leased us (see spawn.c), sparing a
     * fork and an exit per child. End of file: let go, or the other end
     * died. */
    struct child_args next = *a;
    char *strs = NULL;
    for (;;) {
        free(strs);
        free((void *)next.argv);
        free((void *)next.envp);
        next.argv = next.envp = NULL;
        if (getppid() != a->parent)
            _exit(0); /* the helper died: a leased socket may still be open */
        struct helper_req rq;
        int fds[2] = {-1, -1}, nfds = 0;
        if (read_req(FD_CTL, &rq, fds, &nfds, &strs) < 0 || rq.kind != HELPER_SPAWN ||
            nfds < 1 || !parse_req(&rq, strs, &next))
            _exit(0);
        if (dup3(fds[0], FD_STATUS, O_CLOEXEC) < 0 ||
            dup3(nfds == 2 ? fds[1] : FD_NULL, FD_OUT, O_CLOEXEC) < 0)
            _exit(126);
        close(fds[0]);
        if (nfds == 2)
            close(fds[1]);
        drop_pending_signals();
        if (getppid() != a->parent)
            _exit(0); /* the helper died (our SIGUSR1 was one of those dropped) */
        if (!supervise_one(&next))
            _exit(127);
    }
}

/* ---- the helper (see spawn.c) ---- */

int send_fds(int sock, const void *data, size_t len, const int *fds, int nfds)
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
    for (size_t done = (size_t)n; done < len; done += (size_t)n) {
        while ((n = write(sock, (const char *)data + done, len - done)) < 0 && errno == EINTR)
            ;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
    }
    return 0;
}

/* Receive exactly len bytes, the first of them with up to *nfds descriptors
 * (O_CLOEXEC); *nfds is set to how many came. 0, -EPIPE at end of file, or
 * -errno. */
int recv_fds(int sock, void *data, size_t len, int *fds, int *nfds)
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

/*
 * The helper keeps the supervisors it forked. Once a caller released one
 * (it read the EXITED record and will not signal it again), the supervisor
 * waits on its ctl socket and the helper gives it the next request instead
 * of forking another: a fork and an exit fewer per child. At most
 * MAX_IDLE wait; past that a released one is let go (end of file).
 */
enum { MAX_IDLE = 16 };

struct sup {
    pid_t pid;
    int pidfd;
    int ctl; /* our end of its ctl socket */
    bool idle;
};

static struct sup *sups;
static size_t nsups, sups_cap;

static void sup_drop(size_t i)
{
    close(sups[i].ctl);
    close(sups[i].pidfd);
    sups[i] = sups[--nsups];
}

static struct sup *sup_find(pid_t pid)
{
    for (size_t i = 0; i < nsups; i++)
        if (sups[i].pid == pid)
            return &sups[i];
    return NULL;
}

/* Hand the request to an idle supervisor; NULL when none took it. */
static struct sup *sup_reuse(const struct helper_req *rq, const char *strs, const int *fds,
                             int nfds)
{
    for (size_t i = 0; i < nsups;) {
        if (!sups[i].idle) {
            i++;
            continue;
        }
        if (send_fds(sups[i].ctl, rq, sizeof *rq, fds, nfds) == 0 &&
            (rq->len == 0 || write_all_ok(sups[i].ctl, strs, rq->len))) {
            sups[i].idle = false;
            return &sups[i];
        }
        kill(sups[i].pid, SIGKILL); /* gone or stuck: we reap it */
        sup_drop(i);
    }
    return NULL;
}

/* Fork a supervisor for the request; NULL with errno set. */
static struct sup *sup_fork(const struct helper_req *rq, char *strs, int status_fd, int out_fd,
                            int null_fd, int max_fd)
{
    struct child_args a = {
        .null_fd = null_fd,
        .out_fd = out_fd >= 0 ? out_fd : null_fd,
        .status_fd = status_fd,
        .parent = getpid(),
        .max_fd = max_fd,
        .ctl_fd = -1,
    };
    if (!parse_req(rq, strs, &a)) {
        errno = EINVAL;
        return NULL;
    }
    struct sup *out = NULL;
    int sv[2] = {-1, -1};
    if (nsups == sups_cap) {
        size_t cap = sups_cap ? 2 * sups_cap : 8;
        struct sup *grown = realloc(sups, cap * sizeof *grown);
        if (!grown) {
            errno = ENOMEM;
            goto out;
        }
        sups = grown;
        sups_cap = cap;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        goto out;
    a.ctl_fd = sv[1];
    pid_t pid = fork(); /* signals are blocked for good in the helper */
    if (pid == 0)
        supervise(&a);
    int e = errno;
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        errno = e;
        goto out;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        e = errno;
        close(sv[0]);
        kill(pid, SIGUSR1); /* it kills the child; we reap it */
        errno = e;
        goto out;
    }
    out = &sups[nsups++];
    *out = (struct sup){pid, pidfd, sv[0], false};
out:
    free((void *)a.argv);
    free((void *)a.envp);
    return out;
}

/* In the helper: serve one spawn request (its descriptors fds[0]: the status
 * pipe, fds[1]: the child's output, if any). */
static void helper_serve(int sock, const struct helper_req *rq, char *strs, const int *fds,
                         int nfds, int null_fd, int max_fd)
{
    struct helper_rep rep = {0, 0};
    struct sup *sup = sup_reuse(rq, strs, fds, nfds);
    if (!sup)
        sup = sup_fork(rq, strs, fds[0], nfds == 2 ? fds[1] : -1, null_fd, max_fd);
    if (!sup)
        rep.err = errno ? errno : EIO;
    else
        rep.pid = sup->pid;
    int give[2] = {sup ? sup->pidfd : -1, sup ? sup->ctl : -1};
    send_fds(sock, &rep, sizeof rep, give, sup ? (rq->lease ? 2 : 1) : 0);
    /* Leased: the caller sends it requests itself from now on, and its
     * socket's end of file (the caller's thread ended) lets it go. We only
     * reap it. */
    if (sup && rq->lease)
        sup_drop((size_t)(sup - sups));
}

/* A supervisor was released: it may take the next request. */
static void helper_release(pid_t pid)
{
    struct sup *sup = sup_find(pid);
    if (!sup || sup->idle)
        return;
    size_t idle = 0;
    for (size_t i = 0; i < nsups; i++)
        idle += sups[i].idle;
    if (idle < MAX_IDLE)
        sup->idle = true;
    else
        sup_drop((size_t)(sup - sups)); /* end of file: it exits; we reap it */
}

void helper_main(int sock, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent)
        _exit(0);
    prctl(PR_SET_NAME, "yci-spawn", 0, 0, 0);
    /* Every signal blocked for good (fork in sup_fork relies on it);
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
    /* Hello: the caller knows we run (and that an exec worked). */
    struct helper_rep hello = {0, (int32_t)getpid()};
    if (send_fds(sock, &hello, sizeof hello, NULL, 0) < 0)
        _exit(1);
    for (;;) {
        struct pollfd pfd[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(pfd, 2, -1) < 0 && errno != EINTR)
            _exit(1);
        if (pfd[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0)
                ;
            pid_t p;
            while ((p = waitpid(-1, NULL, WNOHANG)) > 0) {
                struct sup *gone = sup_find(p);
                if (gone)
                    sup_drop((size_t)(gone - sups));
            }
        }
        if (!pfd[0].revents)
            continue;
        struct helper_req rq;
        int fds[2] = {-1, -1}, nfds = 0;
        char *strs = NULL;
        int r = read_req(sock, &rq, fds, &nfds, &strs);
        if (r == -EPIPE)
            _exit(0); /* the caller closed its end, or died */
        if (r < 0)
            _exit(1);
        if (rq.kind == HELPER_RELEASE)
            helper_release(rq.pid);
        else if (nfds >= 1)
            helper_serve(sock, &rq, strs, fds, nfds, null_fd, max_fd);
        else
            send_fds(sock, &(struct helper_rep){EINVAL, 0}, sizeof(struct helper_rep), NULL, 0);
        free(strs);
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
    }
}
