/*
 * supervise — what runs in a job's supervisor and in the spawn helper (see
 * spawn.h for the contract and spawn.c for the side that asks). Only libc,
 * and between fork and exec only async-signal-safe calls: this file also
 * makes the small `yci-spawn` program (spawn-helper.c), so that the helper
 * forks supervisors from a process with a handful of mappings instead of a
 * copy of a large one.
 */
#ifndef YCI_OS_SUPERVISE_H
#define YCI_OS_SUPERVISE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The status pipe: STARTED (child pid) or EXEC_FAILED (errno) once, then
 * EXITED (wait status). */
enum { REC_STARTED = 1, REC_EXEC_FAILED = 2, REC_EXITED = 3 };

struct rec {
    int32_t type;
    int32_t value;
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
    int ctl_fd; /* -1: one child, then exit; else the helper's socket, on
                 * which the next request comes once this one is released */
};

/* A request to the helper. HELPER_SPAWN: this header, with the status
 * pipe's write end and (when not /dev/null) the child's output as
 * SCM_RIGHTS, then len bytes of NUL-terminated strings: path, cwd (if
 * has_cwd), argv, envp. The answer: a helper_rep, with a pidfd of the
 * supervisor when err is 0. The helper forwards the same request to an idle
 * supervisor, which reads it on its ctl_fd.
 * HELPER_RELEASE: the header alone, no answer: the caller read the EXITED
 * record of supervisor pid and will not signal it again, so that supervisor
 * may take the next request. */
enum { HELPER_SPAWN = 1, HELPER_RELEASE = 2 };

struct helper_req {
    uint32_t kind;
    uint32_t len;  /* bytes of strings that follow */
    uint32_t argc; /* argv strings, after path (and cwd) */
    uint32_t envc; /* envp strings, after argv */
    uint32_t has_cwd;
    int32_t pid; /* HELPER_RELEASE: the supervisor */
    uint32_t lease; /* HELPER_SPAWN: the caller keeps the supervisor (its
                     * socket comes with the answer; see spawn.c) */
};

struct helper_rep {
    int32_t err; /* 0 or an errno */
    int32_t pid;
};

#define HELPER_MAX_REQ (64u << 20)

/* Become the supervisor of a's child (in a forked copy, signals blocked);
 * with a->ctl_fd, then of the child of every request that comes on it. */
void supervise(const struct child_args *a) __attribute__((noreturn));

/* Serve requests on sock until it is closed; die with parent. */
void helper_main(int sock, pid_t parent) __attribute__((noreturn));

/* len bytes with nfds (<= 2) descriptors attached; 0 or -errno. */
int send_fds(int sock, const void *data, size_t len, const int *fds, int nfds);
/* Exactly len bytes, the first with up to *nfds descriptors (O_CLOEXEC);
 * *nfds says how many came. 0, -EPIPE at end of file, or -errno. */
int recv_fds(int sock, void *data, size_t len, int *fds, int *nfds);

#endif
