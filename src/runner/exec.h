/*
 * exec — the executor of one job: makes its workspace at the exact commit,
 * runs its commands, and appends their output to the job's spool file.
 *
 * The executor never touches the network (except git fetching from the
 * server's mirror while the workspace is made): it reads the job's pipe and
 * appends to the spool, so a slow or dead server never slows a job. Another
 * thread (the uploader, runner.c) reads the spool by offset and sends it.
 *
 * Threads: exec_run() runs in the caller's thread (the executor); exec_stop()
 * and the progress fields (under mu) are for any thread. The struct is owned
 * by the thread that runs it, which waits for its uploader (see kick) before
 * exec_free().
 *
 * Processes: each command is `/bin/sh -c <command>` (or, when it is plain
 * words, the program itself: spawn_command()) in its own process
 * group, under a supervisor that kills whatever it leaves behind
 * (os/spawn.h). On timeout or stop: SIGTERM to the group, SIGKILL to it and
 * every descendant EXEC_KILL_GRACE_MS later.
 */
#ifndef YCI_RUNNER_EXEC_H
#define YCI_RUNNER_EXEC_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/buf.h"
#include "yci/client.h"

#define EXEC_KILL_GRACE_MS 5000
/* The uploader is woken whenever this much new output is in the spool (or
 * UPLOAD_INTERVAL_MS after its last upload: runner.c). Half a MiB: a job
 * printing fast is sent in chunks of about a MiB (YCI_MAX_LOG_CHUNK), not
 * in one request per 64 KiB. */
#define EXEC_WAKE_BYTES (512 * 1024)
/* One read of the job's output (and of the tail ring when it is spooled);
 * the output pipe holds up to a MiB (spawn.c), so a fast job is not made to
 * wait for each read. */
#define EXEC_CHUNK (256 * 1024)
/* Most bytes one splice() moves from the job's pipe to the spool (all a
 * full pipe holds). */
#define EXEC_SPLICE_MAX (1024 * 1024)
/* After a round of reads that found less than EXEC_NAP_BELOW bytes in the
 * job's pipe, the executor leaves the pipe alone for EXEC_NAP_MS (it still
 * sees the job end and a stop at once): a job printing fast is then read in
 * a few large reads instead of a wake-up and four system calls for each of
 * its writes (a few KiB), which cost more CPU than the copy. The pipe (a
 * MiB) does not fill in that time below 500 MB/s, and a follower sees a line
 * at most that much later. An idle pipe is not napped on: the executor
 * sleeps in poll() until the job writes. */
#define EXEC_NAP_BELOW (64 * 1024)
#define EXEC_NAP_MS 2
/* Bound on each git command while making a workspace. */
#define EXEC_GIT_TIMEOUT_MS (10 * 60 * 1000)
/* Tries of the fetch of a job's commit from the server, 1, 2, 4, 8 s apart:
 * a server restarting meanwhile is not the job's error. */
#define EXEC_FETCH_TRIES 5

enum exec_stop_reason {
    EXEC_RUNNING = 0,
    EXEC_CANCELLED, /* the server asked, or the attempt went stale */
    EXEC_SHUTDOWN,  /* the runner is stopping */
};

struct exec {
    /* Inputs, set by exec_new(). */
    const struct yci_job *job;
    char *server_url;
    char *token; /* the runner token, sent when git fetches from the server (or NULL) */
    json_t *claim; /* the job as the server sent it (its fields beyond struct yci_job) */
    char *workdir; /* absolute */
    int slot;
    int spool_fd;    /* the executor only writes (at written), the uploader preads */
    bool no_splice;  /* splice() into the spool failed once: read and write instead */
    int spool_errno; /* why the spool could not be written (PUMP_SPOOL_FAILED) */
    int wake_fd;     /* eventfd, readable once a stop was asked */
    atomic_int stop; /* enum exec_stop_reason */

    pthread_mutex_t mu;
    pthread_cond_t cond; /* signalled every EXEC_WAKE_BYTES and when done */
    uint64_t written;    /* bytes in the spool */
    bool done;
    bool own_end; /* done, and the job's status is its own (no stop came first) */

    /* The uploader's start (set by the owner; kick NULL: none). The
     * executor calls kick(kick_arg) once, from its own thread, when the
     * spool holds output and either EXEC_WAKE_BYTES of it or kick_at (on
     * the monotonic clock) has come: a job that ends sooner, with less, is
     * sent whole by its owner after exec_run() returns, and no other thread
     * is woken for it. */
    void (*kick)(void *kick_arg);
    void *kick_arg;
    int64_t kick_at;
    bool kicked;

    /* The result, valid once done. */
    enum yci_status status;
    int exit_code; /* -1: none */
    struct buf error;
    char *plan_jobs; /* a plan job that passed: the generated jobs, JSON text */

    /* The log's cap (0: none), and the executor's own state for it. */
    uint64_t log_cap;
    uint64_t raw;        /* bytes of output so far */
    int tail_fd;         /* the ring of the tail, once past half the cap */
    char *tail_path;
    uint64_t tail_total; /* bytes that went to the ring */

    /*
     * The read buffer of the job's output (EXEC_CHUNK bytes), with the job: a
     * _Thread_local array would sit in every thread's static TLS block, which
     * glibc zero-fills when it creates a thread, so every thread of the
     * process (HTTP, scheduler, ...) would keep it resident.
     */
    char *chunk;
};

/* spool_fd is borrowed (the caller closes it after exec_free()). */
int exec_new(const struct yci_job *job, const char *server_url, const char *workdir, int slot,
             int spool_fd, struct exec **out, struct buf *err);
void exec_free(struct exec *x);
/* Run the job to the end: sets the result and done. */
void exec_run(struct exec *x);
/* Ask the job to stop (any thread; the first reason wins). */
void exec_stop(struct exec *x, enum exec_stop_reason why);

#endif
