/*
 * spawn — start a child program with an argv, contain everything it starts,
 * and know when it and all of its descendants are gone.
 *
 * Every program yci runs goes through here: git (always an argv, never a
 * shell string) and a job's commands (`/bin/sh -c <command>`, the user's own
 * command from their repository).
 *
 * What the child gets:
 *   - argv exactly as given; argv[0] is looked up in the PATH of the child's
 *     environment (or of this process when envp is NULL) before anything is
 *     forked, so a missing program is an error from spawn_start(), not a
 *     child that exits 127;
 *   - envp exactly as given (nothing added, nothing inherited), or this
 *     process's environment when envp is NULL;
 *   - stdin from /dev/null; stdout and stderr both to one descriptor: a new
 *     pipe (SPAWN_PIPE), /dev/null (SPAWN_NULL) or a descriptor of the caller;
 *   - no other descriptor of this process, whatever its close-on-exec flag
 *     (libraries in a threaded server cannot all be trusted to set it);
 *   - every signal at its default disposition and unblocked;
 *   - its own process group (the child is its leader), and cwd if given.
 * An exec failure (program not executable, cwd missing) is reported by
 * spawn_start() with errno's message, through a close-on-exec pipe.
 *
 * Containment. Each child runs under a small *supervisor*: a forked copy of
 * this process (no exec) that is the child's parent and a child subreaper
 * (PR_SET_CHILD_SUBREAPER). Whatever the child starts stays below the
 * supervisor however it detaches — background jobs, a new process group, a
 * double fork, setsid(): an orphan is re-parented to the supervisor, not to
 * init. When the child (the main process) exits, the supervisor SIGKILLs
 * its process group, then every process left below it, round after round,
 * until it has no child at all, and only then reports the main process's
 * status. So when spawn_wait() returns, nothing the child started is left
 * running. What this does NOT cover: work handed to a process outside the
 * tree (a systemd user service, `at`, a container daemon), and a
 * supervisor killed with SIGKILL by someone else. The supervisor also dies
 * with the thread that started it (PR_SET_PDEATHSIG): if that thread or the
 * whole process dies, the child's group and descendants are killed. With
 * the spawn helper (spawn_helper_start()), the supervisor is the helper's
 * child and dies with the helper, which dies with this process; and once
 * spawn_wait() has its report, it serves the next child (one at a time)
 * instead of exiting: the next of the thread that started it (a lease, see
 * spawn.c), else whichever the helper hands it.
 *
 * Why not make the whole process a subreaper: in `yci up` the server and the
 * runner share a process, and the orphans adopted by a process-wide subreaper
 * cannot be told apart by job, nor reaped without racing the waitpid() calls
 * of other code. A supervisor per child makes the tree exact.
 *
 * Between fork and exec, in the supervisor and the child, only
 * async-signal-safe calls are made (fork, setpgid, sigaction, sigprocmask,
 * dup2, fcntl, close_range, chdir, prctl, execve, waitpid/waitid, kill,
 * open/read/write/close, _exit). Signals are blocked in this process around
 * fork so that no handler of ours runs in the copy.
 *
 * Ownership: a struct spawn belongs to one thread, the one that started it
 * (see PR_SET_PDEATHSIG above, and the lease in spawn.c); it must outlive
 * the child, so that thread waits for it (and frees it) before it ends. Descriptors returned are O_CLOEXEC and owned by the struct.
 */
#ifndef YCI_OS_SPAWN_H
#define YCI_OS_SPAWN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/buf.h"

#define SPAWN_PIPE (-1) /* stdout+stderr to a new pipe: spawn_out_fd() */
#define SPAWN_NULL (-2) /* stdout+stderr to /dev/null */

struct spawn_opts {
    const char *const *argv; /* NULL-terminated, argv[0] the program */
    const char *const *envp; /* NULL-terminated whole environment; NULL: ours */
    const char *cwd;         /* NULL: ours */
    int out_fd;              /* SPAWN_PIPE, SPAWN_NULL or a descriptor (dup'ed, caller keeps it) */
};

struct spawn;

/* Start the spawn helper (see spawn.c): from then on, supervisors are forked
 * by a small helper process instead of by this one, which makes a spawn far
 * cheaper in a large, threaded process. program: the `yci-spawn` program to
 * run; NULL: look for it next to this executable, then in the directory
 * `meson install` puts it (libexecdir/yci), and without it fork a copy of
 * this process as the helper; "": that copy. Call it early, while the
 * process has one thread (-EBUSY otherwise; spawning then goes on without
 * it). The helper dies with this process; spawn_helper_stop() ends it. */
int spawn_helper_start(const char *program, struct buf *err);
void spawn_helper_stop(void);

/* Start a child. On success *out owns it; on failure *out is untouched, err
 * says why, and the return is -errno (-ENOENT: no such program, or the
 * errno of the failed chdir/execve). */
int spawn_start(const struct spawn_opts *opts, struct spawn **out, struct buf *err);

/* The child's pid, which is also its process group id. */
pid_t spawn_pid(const struct spawn *s);
/* The read end of the output pipe (O_NONBLOCK), or -1 unless SPAWN_PIPE. It
 * reaches end of file when every process holding the write end is gone. */
int spawn_out_fd(const struct spawn *s);
/* A descriptor that becomes readable once the child has exited and every
 * process it left behind is dead: poll it beside spawn_out_fd(). */
int spawn_done_fd(const struct spawn *s);

/* Ask the child to stop. hard = false: SIGTERM to its process group. hard =
 * true: SIGKILL to its group and then to everything below it. Harmless after
 * the child ended. Signals go through the supervisor, which knows when the
 * group id is still safe to signal (no pid-reuse race). */
int spawn_signal(struct spawn *s, bool hard);

/* Wait up to timeout_ms (-1: forever, 0: just look) for the end; then
 * *status is the main process's wait status (see spawn_exit_code()) and the
 * supervisor is reaped. -ETIMEDOUT when it is still running. */
int spawn_wait(struct spawn *s, int64_t timeout_ms, int *status);

/* SIGTERM, wait up to grace_ms, then SIGKILL everything, and wait. */
int spawn_terminate(struct spawn *s, int64_t grace_ms, int *status);

/* Kill (hard) and wait if still running, close, free. NULL is fine. */
void spawn_free(struct spawn *s);

/* A wait status as a shell would show it: the exit code, or 128 + signal. */
int spawn_exit_code(int status);

/* Start the shell command cmd with what `/bin/sh -c cmd` would start, as
 * make does: when it is plain words (letters, digits and -_./,:+@%=)
 * separated by spaces, the first neither a builtin nor a reserved word nor
 * an assignment, and opts' envp has no empty or relative directory in its
 * PATH (which the shell would search from its own directory), the program
 * itself; otherwise, or when that program cannot start (for the shell's
 * message and exit code, or a script without #!), /bin/sh -c cmd. `true`
 * and `false` alone, which the shell runs without a process, count as
 * programs: the same exit, for less than a shell's start. opts->argv is
 * ignored. *direct: started without the shell (a death by signal is then
 * the caller's to print: spawn_death_note()). As spawn_start() otherwise. */
int spawn_command(const char *cmd, const struct spawn_opts *opts, struct spawn **out,
                  bool *direct, struct buf *err);

/* What dash prints of a child that a signal killed ("Segmentation fault
 * (core dumped)\n"; nothing for SIGINT and SIGPIPE), for a caller that
 * started the program without the shell: its length, 0 when none. */
int spawn_death_note(int status, char *buf, size_t n);

/* Run to completion capturing stdout+stderr into out (appended; out->max is
 * honoured: output past it is read and dropped). timeout_ms > 0 bounds the
 * run: then the child is terminated (SIGTERM, 2 s, SIGKILL) and the return
 * is -ETIMEDOUT with *status set. Returns 0 when the child ran (whatever its
 * exit status), or a negative errno when it could not start.
 * opts->out_fd is ignored. */
int spawn_run(const struct spawn_opts *opts, int64_t timeout_ms, struct buf *out, int *status,
              struct buf *err);

#endif
