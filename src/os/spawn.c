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
#include "supervise.h"

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
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/util.h"
#include "lib/xalloc.h"
#include "lib/banned.h"

extern char **environ;

#define SPAWN_PIPE_BYTES (1024 * 1024)

struct lease;

struct spawn {
    pid_t sup;   /* the supervisor; 0 once reaped (or ended, with the helper) */
    int pidfd;   /* the supervisor's pidfd when the helper forked it, else -1 */
    struct lease *lease; /* the lease it ran under (which owns pidfd), or NULL */
    pid_t pid;   /* the child, leader of its process group */
    int out_fd;  /* read end of the output pipe, or -1 */
    int done_fd; /* read end of the status pipe */
    bool done;
    int status;
};

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
 * its pid could be reused; a pidfd cannot), and for a lease (see below) the
 * supervisor's socket too. The helper dies with this
 * process (PR_SET_PDEATHSIG), and the supervisors with the helper.
 */
static pthread_mutex_t helper_mu = PTHREAD_MUTEX_INITIALIZER;
static int helper_fd = -1; /* our end of the socket; -1: fork here */
static pid_t helper_pid;

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

/* The helper program: next to this executable (a build tree, or both in
 * one directory), else where `meson install` puts it. NULL: none. */
static char *find_helper(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            char *p = xasprintf("%s/yci-spawn", self);
            if (access(p, X_OK) == 0)
                return p;
            free(p);
        }
    }
    if (access(YCI_LIBEXECDIR "/yci-spawn", X_OK) == 0)
        return xstrdup(YCI_LIBEXECDIR "/yci-spawn");
    return NULL;
}

/* Let a helper go: it exits at end of file on its socket; reap it. */
static void helper_end(int fd, pid_t pid)
{
    close(fd);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Fork the helper: exec program with the socket as descriptor 3, or (NULL)
 * be the helper in the forked copy. 0 once it said hello. */
static int helper_fork_start(const char *program, struct buf *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        buf_setf(err, "socketpair: %s", strerror(errno));
        return -errno;
    }
    pid_t parent = getpid();
    char pid_text[24];
    snprintf(pid_text, sizeof pid_text, "%d", (int)parent);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        if (!program)
            helper_main(sv[1], parent);
        if (sv[1] == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(sv[1], 3) < 0)
            _exit(127);
        execl(program, "yci-spawn", pid_text, (char *)NULL);
        _exit(127);
    }
    int fork_errno = errno;
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        buf_setf(err, "fork: %s", strerror(fork_errno));
        return -fork_errno;
    }
    struct helper_rep hello;
    int nfds = 0;
    if (recv_fds(sv[0], &hello, sizeof hello, NULL, &nfds) < 0 || hello.pid != pid) {
        helper_end(sv[0], pid);
        buf_setf(err, "the spawn helper %s did not start", program ? program : "(forked)");
        return -ECHILD;
    }
    /* The supervisors are signalled through pidfds: without them here
     * (Linux < 5.3, or valgrind) the helper is of no use. */
    int probe = (int)syscall(SYS_pidfd_open, pid, 0);
    int perr = probe < 0 ? errno : 0;
    if (probe >= 0) {
        if (syscall(SYS_pidfd_send_signal, probe, 0, NULL, 0) < 0)
            perr = errno;
        close(probe);
    }
    if (perr) {
        helper_end(sv[0], pid);
        buf_setf(err, "the spawn helper cannot work here: no pidfds: %s", strerror(perr));
        return -perr;
    }
    helper_fd = sv[0];
    helper_pid = pid;
    return 0;
}

int spawn_helper_start(const char *program, struct buf *err)
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
    char *found = program ? NULL : find_helper();
    if (program && *program) {
        ret = helper_fork_start(program, err);
    } else {
        ret = found ? helper_fork_start(found, err) : -ENOENT;
        if (ret < 0 && ret != -ENOSYS) /* no program of its own: a copy of this process */
            ret = helper_fork_start(NULL, err);
    }
    free(found);
out:
    pthread_mutex_unlock(&helper_mu);
    return ret;
}

void spawn_helper_stop(void)
{
    pthread_mutex_lock(&helper_mu);
    if (helper_fd >= 0) {
        helper_end(helper_fd, helper_pid);
        helper_fd = -1;
    }
    pthread_mutex_unlock(&helper_mu);
}

/* A request for a's child, as the helper and the supervisors read it. */
static void req_build(const struct child_args *a, struct helper_req *rq, struct buf *b)
{
    *rq = (struct helper_req){HELPER_SPAWN, 0, 0, 0, a->cwd != NULL, 0, 0};
    buf_add(b, a->path, strlen(a->path) + 1);
    if (a->cwd)
        buf_add(b, a->cwd, strlen(a->cwd) + 1);
    for (char *const *v = a->argv; *v; v++, rq->argc++)
        buf_add(b, *v, strlen(*v) + 1);
    for (char *const *v = a->envp; *v; v++, rq->envc++)
        buf_add(b, *v, strlen(*v) + 1);
    rq->len = (uint32_t)b->len;
}

/* Send a request on sock with a's descriptors (the status pipe, and the
 * child's output unless it is /dev/null). 0 or -errno. */
static int req_send(int sock, const struct child_args *a, const struct helper_req *rq,
                    const struct buf *b)
{
    int fds[2] = {a->status_fd, a->out_fd};
    int ret = send_fds(sock, rq, sizeof *rq, fds, a->out_fd != a->null_fd ? 2 : 1);
    if (ret == 0 && b->len)
        ret = fd_write_all(sock, b->data, b->len);
    return ret;
}

/*
 * Leases. A thread that starts one child after another (a runner's slot, a
 * job's commands) keeps the supervisor of its first: the helper hands that
 * supervisor's socket over with its pidfd, and the thread sends its next
 * requests to the supervisor itself. Each child then costs one message and
 * one wake-up of the supervisor, where it cost the helper's hop too (the
 * request, the answer, the release: three more wake-ups per child). A lease
 * is used only while it is idle (the last child's EXITED record was read):
 * a thread that starts a second child while its first runs asks the helper
 * as before. The supervisor is still the helper's child (reaped by it, dying
 * with it); it exits when the socket closes, when the thread ends.
 */
struct lease {
    int ctl; /* our end of the supervisor's socket; -1: no lease */
    int pidfd;
    pid_t pid;
    bool busy; /* a child of ours runs under it */
};

static _Thread_local struct lease lease = {-1, -1, 0, false};
static pthread_key_t lease_key;
static pthread_once_t lease_once = PTHREAD_ONCE_INIT;
static bool lease_key_made;

static void lease_drop(struct lease *l)
{
    if (l->ctl >= 0) {
        close(l->ctl);
        close(l->pidfd);
    }
    *l = (struct lease){-1, -1, 0, false};
}

static void lease_end(void *l)
{
    lease_drop(l);
}

static void lease_key_make(void)
{
    lease_key_made = pthread_key_create(&lease_key, lease_end) == 0;
}

/* Ask the helper for a supervisor of a; *sup and *pidfd on success. With
 * take_lease, ask for the supervisor to be this thread's from now on (its
 * socket comes with the answer): *leased says whether it is. */
static int helper_fork(const struct child_args *a, bool take_lease, pid_t *sup, int *pidfd,
                       bool *leased)
{
    struct buf b = BUF_INIT;
    struct helper_rep rep;
    struct helper_req rq;
    req_build(a, &rq, &b);
    rq.lease = take_lease;
    int ret = b.len > HELPER_MAX_REQ ? -E2BIG : 0;
    int fds[2] = {-1, -1}, got = take_lease ? 2 : 1;
    pthread_mutex_lock(&helper_mu);
    if (helper_fd < 0)
        ret = -ESRCH;
    if (ret == 0)
        ret = req_send(helper_fd, a, &rq, &b);
    if (ret == 0)
        ret = recv_fds(helper_fd, &rep, sizeof rep, fds, &got);
    if (ret == -EPIPE || ret == -ECONNRESET) {
        /* The helper died (killed by someone): fork here from now on. */
        helper_end(helper_fd, helper_pid);
        helper_fd = -1;
        ret = -ESRCH;
    }
    pthread_mutex_unlock(&helper_mu);
    buf_release(&b);
    if (ret < 0)
        return ret;
    if (rep.err || got < 1) {
        for (int i = 0; i < got; i++)
            close(fds[i]);
        return rep.err ? -rep.err : -EIO;
    }
    *sup = rep.pid;
    *pidfd = fds[0];
    *leased = got == 2;
    if (*leased) {
        lease = (struct lease){fds[1], fds[0], rep.pid, true};
        pthread_once(&lease_once, lease_key_make);
        if (lease_key_made)
            pthread_setspecific(lease_key, &lease);
    }
    return 0;
}

/* Send a's request to this thread's idle supervisor. 0: sent (the lease is
 * busy); -errno: no lease, or it broke (dropped: the supervisor is gone). */
static int lease_spawn(const struct child_args *a, pid_t *sup, int *pidfd)
{
    if (lease.ctl < 0 || lease.busy)
        return -ESRCH;
    struct buf b = BUF_INIT;
    struct helper_req rq;
    req_build(a, &rq, &b);
    int ret = b.len > HELPER_MAX_REQ ? -E2BIG : req_send(lease.ctl, a, &rq, &b);
    buf_release(&b);
    if (ret < 0) {
        lease_drop(&lease); /* killed, or the helper died: it is of no use now */
        return ret;
    }
    lease.busy = true;
    *sup = lease.pid;
    *pidfd = lease.pidfd;
    return 0;
}

/* Tell the helper that we are done with supervisor sup (see
 * HELPER_RELEASE): it may give that supervisor the next child. */
static void helper_release(pid_t sup)
{
    struct helper_req rq = {HELPER_RELEASE, 0, 0, 0, 0, sup, 0};
    pthread_mutex_lock(&helper_mu);
    if (helper_fd >= 0 && send_fds(helper_fd, &rq, sizeof rq, NULL, 0) < 0) {
        helper_end(helper_fd, helper_pid);
        helper_fd = -1;
    }
    pthread_mutex_unlock(&helper_mu);
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

/* spawn_start(), once; *lease_broke: this thread's supervisor was gone
 * before it started the child (try again: the lease is dropped). */
static int spawn_try(const struct spawn_opts *opts, struct spawn **out, struct buf *err,
                     bool *lease_broke)
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
        /* A MiB of room (the default limit of an unprivileged pipe): a child
         * printing fast waits for our reads far less often than with the
         * default 64 KiB. Best effort. */
        fcntl(pipe_fd[0], F_SETPIPE_SZ, SPAWN_PIPE_BYTES);
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
        .ctl_fd = -1,
    };

    pid_t sup = -1;
    int pidfd = -1;
    bool leased = false;
    if (lease_spawn(&a, &sup, &pidfd) == 0)
        leased = true;
    else /* -ESRCH: no helper (any more) */
        ret = helper_fork(&a, lease.ctl < 0, &sup, &pidfd, &leased);
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
        /* Without a word, a leased one was killed, or its helper died, before
         * it read our request (it starts nothing once the helper is gone). */
        *lease_broke = leased && rr == 0;
        if (leased)
            lease_drop(&lease); /* one that could not start its child exits */
        else if (pidfd >= 0)
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
    s->lease = leased ? &lease : NULL;
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

int spawn_start(const struct spawn_opts *opts, struct spawn **out, struct buf *err)
{
    bool lease_broke = false;
    int ret = spawn_try(opts, out, err, &lease_broke);
    if (lease_broke)
        ret = spawn_try(opts, out, err, &lease_broke); /* through the helper, or forked */
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
        bool exited = rr > 0 && r.type == REC_EXITED;
        if (s->lease && exited)
            s->lease->busy = false;
        else if (s->lease)
            lease_drop(s->lease); /* killed: not one to hand the next child */
        else if (s->pidfd >= 0 && exited)
            helper_release(s->sup);
        if (s->lease)
            s->pidfd = -1; /* the lease's */
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

/* ---- commands without a shell ---- */

/* Shell builtins and reserved words (dash's, and bash's that dash lacks): a
 * command that starts with one goes through the shell. */
static const char *const SHELL_WORDS[] = {
    ".",      ":",       "[",       "alias",    "bg",     "break",  "case",   "cd",
    "chdir",  "command", "continue", "do",      "done",   "echo",   "elif",   "else",
    "esac",   "eval",    "exec",    "exit",     "export", "false",  "fc",     "fg",
    "fi",     "for",     "function", "getopts", "hash",   "if",     "in",     "jobs",
    "kill",   "local",   "printf",  "pwd",      "read",   "readonly", "return", "select",
    "set",    "shift",   "source",  "test",     "then",   "time",   "times",  "trap",
    "true",   "type",    "ulimit",  "umask",    "unalias", "unset", "until",  "wait",
    "while",
};

static bool shell_word(const char *w, size_t len)
{
    for (size_t i = 0; i < sizeof SHELL_WORDS / sizeof *SHELL_WORDS; i++)
        if (strlen(SHELL_WORDS[i]) == len && memcmp(SHELL_WORDS[i], w, len) == 0)
            return true;
    return false;
}

/* A character that means the same to the shell as to a program: anything
 * else (quotes, $, `, globs, redirections, separators, ~, #, {}, !, ^, tabs,
 * newlines) makes the command the shell's. */
static bool plain_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("-_./,:+@%=", c));
}

/* The words of cmd when spawn_command() may start them without the shell
 * (see spawn.h), else NULL. One allocation: free the array. */
static char **plain_words(const char *cmd, const char *const *envp)
{
    size_t n = strlen(cmd), nwords = 0;
    if (n == 0 || n > 4096)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (cmd[i] != ' ' && !plain_char((unsigned char)cmd[i]))
            return NULL;
        if (cmd[i] != ' ' && (i == 0 || cmd[i - 1] == ' '))
            nwords++;
    }
    if (nwords == 0)
        return NULL;
    const char *first = cmd + strspn(cmd, " ");
    size_t flen = strcspn(first, " ");
    bool alone = first[flen + strspn(first + flen, " ")] == '\0';
    if (memchr(first, '=', flen))
        return NULL;
    if (shell_word(first, flen) &&
        !(alone && ((flen == 4 && memcmp(first, "true", 4) == 0) ||
                    (flen == 5 && memcmp(first, "false", 5) == 0))))
        return NULL;
    const char *p = env_get(envp ? envp : (const char *const *)environ, "PATH");
    while (p) {
        if (*p != '/')
            return NULL; /* an empty or relative directory */
        if ((p = strchr(p, ':')))
            p++;
    }
    char **argv = xmalloc((nwords + 1) * sizeof *argv + n + 1);
    char *text = (char *)(argv + nwords + 1);
    memcpy(text, cmd, n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ')
            text[i] = '\0';
        else if (i == 0 || text[i - 1] == '\0')
            argv[k++] = text + i;
    }
    argv[k] = NULL;
    return argv;
}

int spawn_command(const char *cmd, const struct spawn_opts *opts, struct spawn **out,
                  bool *direct, struct buf *err)
{
    struct spawn_opts o = *opts;
    char **words = plain_words(cmd, opts->envp);
    int ret = -ENOENT;
    if (words) {
        o.argv = (const char *const *)words;
        ret = spawn_start(&o, out, err);
        free(words);
    }
    *direct = ret == 0;
    if (ret == 0)
        return 0;
    buf_reset(err);
    const char *const sh[] = {"/bin/sh", "-c", cmd, NULL};
    o.argv = sh;
    return spawn_start(&o, out, err);
}

int spawn_death_note(int status, char *buf, size_t n)
{
    if (n == 0 || !WIFSIGNALED(status) || WTERMSIG(status) == SIGINT ||
        WTERMSIG(status) == SIGPIPE) {
        if (n)
            buf[0] = '\0';
        return 0;
    }
    int len = snprintf(buf, n, "%s%s\n", strsignal(WTERMSIG(status)),
                       WCOREDUMP(status) ? " (core dumped)" : "");
    return len < 0 ? 0 : len;
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
