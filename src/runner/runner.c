/*
 * runner — the stock runner, built on the client library (yci/client.h).
 *
 * The library runs the loops (registration with backoff, one claim loop per
 * slot, the heartbeat, delivering results with backoff); this file supplies
 * the job handler. For each job, in the slot's thread:
 *
 *   do_job ── runs the executor (exec.c): workspace, commands, output
 *     │        appended to <workdir>/spool/slot-<slot>.log
 *     │   └─ once the job runs 100 ms or prints 512 KiB: hands the upload to
 *     │      the slot's uploader thread, which sends the spool by offset
 *     │      while the job runs
 *     └─ when the job ended: waits for the uploader, or sends what is left
 *        itself (a short job wakes no other thread), then returns the
 *        result (with the log's last bytes); the library delivers it;
 *        finished() empties the spool.
 *
 * A 409 "stale attempt" or a cancel from the heartbeat stops the executor
 * (SIGTERM to the job's group, SIGKILL after the grace period) and the job is
 * dropped without a result.
 */
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "exec.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "yci/client.h"
#include "lib/banned.h"

/* Upload when this much is waiting, or this long after the last upload. */
#define UPLOAD_INTERVAL_MS 100
/* At most this much of a log's end goes with the job's result. */
#define FINISH_LOG_MAX (64 * 1024)
#define UPLOAD_BACKOFF_MAX_MS 5000
/* The spool's acknowledged bytes are given back (a hole punched) in steps of
 * this much: see spool_release(). */
#define SPOOL_RELEASE_STEP (1024 * 1024)

/* A job's upload, when it needs a thread of its own (see struct exec's
 * kick): the result is the worker's once finished is set (under x->mu). */
struct upload_task {
    struct runner *r;
    struct yci_job *job;
    struct exec *x;
    struct buf *tail;     /* the worker's: the log's last bytes for the result */
    uint64_t tail_offset; /* where they go */
    bool started;         /* handed to the slot's uploader thread */
    bool ok;              /* upload()'s answer */
    bool finished;
};

/* A slot's uploader thread: started with the first job of the slot that
 * needs one and kept for the next (a thread per job cost a clone and a join
 * each, ~0.4 ms on a slow VM). Guarded by runner.mu. */
struct slot {
    struct runner *r;
    pthread_t thread;
    pthread_cond_t cond;
    bool started;
    bool quit;
    struct upload_task *work; /* handed over, not yet taken */
};

struct runner {
    char *server_url;
    char *workdir; /* absolute */
    char *hostname;
    int slots;
    struct yci_client *client;
    struct yci_handler handler;

    int lock_fd;       /* WORKDIR/lock, flock()ed: one runner per work directory */
    char *saved_token; /* the token in WORKDIR/runner-token (see save_token) */

    pthread_mutex_t mu;
    struct exec **running; /* [slots], the executor of each slot's job */
    struct slot *slot;     /* [slots] */
    atomic_bool stopping;
    atomic_int nrunning;
};

/*
 * A slot's spool: one file per slot, emptied for each job, never removed
 * while the runner runs. A file made and removed per job cost more than the
 * job itself on ext4 (each removed inode is skipped, slowly, by the next
 * allocations for a while: the server's log files paid for it too).
 */
static char *spool_path(struct runner *r, int slot)
{
    return xasprintf("%s/spool/slot-%d.log", r->workdir, slot);
}

/* The job's log is delivered (or given up on): its slot's spool is free. */
static void spool_empty(struct runner *r, const struct yci_job *job)
{
    char *path = spool_path(r, job->slot);
    if (truncate(path, 0) < 0)
        log_warn("job %" PRId64 ": cannot empty the spool '%s': %s", job->id, path,
                 strerror(errno));
    free(path);
}

/*
 * Give the memory (or disk) of the spool's acknowledged bytes back: punch a
 * hole over [*released, acked), in whole steps. A fast job's spool is then a
 * window of a few MiB of pages used again and again instead of a file as big
 * as its log: on this kind of VM writing into new pages costs ten times more
 * than into recycled ones (docs/benchmarks.md, "Logging path"), and a 10 GB
 * log no longer needs 10 GB of spool. The file keeps its size (the executor
 * appends at its end). A file system without holes is left alone.
 */
static void spool_release(int fd, uint64_t acked, uint64_t *released, bool *can_punch)
{
    uint64_t to = acked - acked % SPOOL_RELEASE_STEP;
    if (!*can_punch || to <= *released)
        return;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)*released,
                  (off_t)(to - *released)) < 0) {
        *can_punch = false; /* EOPNOTSUPP: the spool just keeps everything */
        return;
    }
    *released = to;
}

/*
 * The server lost bytes it had acknowledged (a crash of its machine) that the
 * spool no longer holds (spool_release): fill [at, at + n) of the region
 * [lost_from, released) with a note and blanks, so that the log keeps its
 * offsets and says what happened instead of holding zeros.
 */
static void lost_fill(char *chunk, size_t n, uint64_t at, uint64_t lost_from, uint64_t released)
{
    char note[160];
    snprintf(note, sizeof note,
             "\n[yci: the server lost %" PRIu64 " bytes of this log that the runner no longer "
             "had]",
             released - lost_from);
    log_gap_fill(chunk, n, at, lost_from, released, note);
}

static bool upload(struct runner *r, struct yci_job *job, struct exec *x, struct buf *tail,
                   uint64_t *tail_offset);

static void *slot_main(void *arg)
{
    struct slot *s = arg;
    pthread_mutex_lock(&s->r->mu);
    for (;;) {
        while (!s->work && !s->quit)
            pthread_cond_wait(&s->cond, &s->r->mu);
        struct upload_task *t = s->work;
        if (!t)
            break;
        s->work = NULL;
        pthread_mutex_unlock(&s->r->mu);
        bool ok = upload(t->r, t->job, t->x, t->tail, &t->tail_offset);
        pthread_mutex_lock(&t->x->mu);
        t->ok = ok;
        t->finished = true; /* the last touch of t: the worker may free it now */
        pthread_cond_broadcast(&t->x->cond);
        pthread_mutex_unlock(&t->x->mu);
        pthread_mutex_lock(&s->r->mu);
    }
    pthread_mutex_unlock(&s->r->mu);
    return NULL;
}

/* struct exec's kick, in the executor's thread: hand the upload to the
 * slot's uploader thread, starting the thread if need be. Should that fail,
 * the worker uploads everything once the job ended. */
static void upload_kick(void *arg)
{
    struct upload_task *t = arg;
    struct runner *r = t->r;
    struct slot *s = &r->slot[t->job->slot];
    int e = 0;
    pthread_mutex_lock(&r->mu);
    if (!s->started) {
        e = pthread_create(&s->thread, NULL, slot_main, s);
        s->started = e == 0;
    }
    if (!e) {
        s->work = t;
        t->started = true;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&r->mu);
    if (e)
        log_warn("job %" PRId64 ": cannot start an upload thread (%s): the log goes up when the "
                 "job ends",
                 t->job->id, strerror(e));
}

/* Wait until t's uploader has finished. */
static void upload_wait(struct upload_task *t)
{
    pthread_mutex_lock(&t->x->mu);
    while (!t->finished)
        pthread_cond_wait(&t->x->cond, &t->x->mu);
    pthread_mutex_unlock(&t->x->mu);
}

static int64_t upload_backoff(int64_t *cur)
{
    int64_t v = *cur ? *cur : 100;
    *cur = v * 2 > UPLOAD_BACKOFF_MAX_MS ? UPLOAD_BACKOFF_MAX_MS : v * 2;
    return v;
}

/*
 * Send the spool to the server by offset until the executor is done and all
 * of it is acknowledged, or its last bytes (up to FINISH_LOG_MAX) are in
 * *tail, from *tail_offset, to go with the result. Returns false when the job
 * was taken away (409) or the runner is stopping before everything was
 * delivered.
 */
/* The job's output and result are no longer wanted: it was cancelled or
 * taken away, or the runner is stopping. But a job that had ended by itself
 * when the runner was told to stop has a result: worth YCI_STOP_DELIVERY_MS more
 * (a server restarting) rather than a run again (*deadline: 0, then when
 * that time is up). */
static bool upload_unwanted(struct runner *r, struct yci_job *job, bool own_end,
                            int64_t *deadline)
{
    if (!yci_job_cancelled(job))
        return false;
    if (!own_end || !atomic_load(&r->stopping))
        return true;
    int64_t now = time_mono_ms();
    if (!*deadline)
        *deadline = now + YCI_STOP_DELIVERY_MS;
    return now >= *deadline;
}

static bool upload(struct runner *r, struct yci_job *job, struct exec *x, struct buf *tail,
                   uint64_t *tail_offset)
{
    int64_t stop_deadline = 0;
    uint64_t acked = 0, released = 0, lost_from = 0;
    bool can_punch = true;
    int64_t backoff = 0, next_try = 0, last_upload = time_mono_ms();
    bool warned = false;
    char *chunk = xmalloc(YCI_MAX_LOG_CHUNK);
    bool ok = false;

    for (;;) {
        pthread_mutex_lock(&x->mu);
        for (;;) {
            int64_t now = time_mono_ms();
            bool due = x->written > acked && (x->written - acked >= EXEC_WAKE_BYTES ||
                                              now - last_upload >= UPLOAD_INTERVAL_MS || x->done);
            bool cancelled = upload_unwanted(r, job, x->own_end, &stop_deadline);
            if (x->done && (cancelled || x->written == acked))
                break;
            if (!cancelled && due && now >= next_try)
                break;
            int64_t wait = next_try > now ? next_try - now : UPLOAD_INTERVAL_MS;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (wait % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&x->cond, &x->mu, &ts);
        }
        uint64_t written = x->written;
        bool done = x->done, own_end = x->own_end;
        pthread_mutex_unlock(&x->mu);

        if (upload_unwanted(r, job, own_end, &stop_deadline)) {
            /* Taken away or stopping: the executor is being stopped (see
             * on_cancel); wait for it, deliver nothing more. */
            if (done)
                break;
            continue;
        }
        if (done && written == acked) {
            ok = true;
            break;
        }
        /* The last bytes of a job that ended go with its result (one
         * request less per job), unless uploads are failing. */
        if (done && !warned && acked >= released && written - acked <= FINISH_LOG_MAX) {
            size_t n = (size_t)(written - acked);
            buf_reset(tail);
            buf_grow(tail, n);
            ssize_t got = pread(x->spool_fd, tail->data, n, (off_t)acked);
            if (got == (ssize_t)n) {
                tail->len = n;
                tail->data[n] = '\0';
                *tail_offset = acked;
                ok = true;
                break;
            }
            buf_reset(tail);
        }

        size_t n =
            written - acked > YCI_MAX_LOG_CHUNK ? YCI_MAX_LOG_CHUNK : (size_t)(written - acked);
        ssize_t got;
        if (acked < released) { /* given back, then lost by the server */
            if (n > released - acked)
                n = (size_t)(released - acked);
            lost_fill(chunk, n, acked, lost_from, released);
            got = (ssize_t)n;
        } else {
            got = pread(x->spool_fd, chunk, n, (off_t)acked);
        }
        if (got <= 0) {
            log_error("job %" PRId64 ": cannot read the spool: %s", job->id,
                      got < 0 ? strerror(errno) : "short file");
            exec_stop(x, EXEC_CANCELLED);
            next_try = time_mono_ms() + UPLOAD_BACKOFF_MAX_MS;
            continue;
        }
        struct yci_error err;
        uint64_t size = 0;
        int rc = yci_client_log(r->client, job->id, job->attempt, acked, chunk, (size_t)got, &size,
                                &err);
        last_upload = time_mono_ms();
        if (rc == 0) {
            acked += (uint64_t)got;
            spool_release(x->spool_fd, acked, &released, &can_punch);
            backoff = 0;
            next_try = 0;
            if (warned)
                log_info("job %" PRId64 ": log upload resumed at %" PRIu64 " bytes", job->id,
                         acked);
            warned = false;
        } else if (rc == -ERANGE) {
            /* The server has less than we thought (it lost its tail in a
             * crash): resend from what it has. */
            log_warn("job %" PRId64 ": server has %" PRIu64 " bytes of log, resending from there",
                     job->id, size);
            acked = size < written ? size : written;
            if (acked < released) {
                log_error("job %" PRId64 ": the server lost %" PRIu64 " bytes of log that the "
                          "spool no longer holds; they are replaced by a note",
                          job->id, released - acked);
                lost_from = acked;
            }
        } else if (rc == -ESTALE || rc == -ENOENT || rc == -EACCES) {
            log_warn("job %" PRId64 ": %s; stopping the job", job->id, err.message);
            /* do_job returns YCI_ABANDONED: the library sends no result. */
            exec_stop(x, EXEC_CANCELLED);
            break;
        } else {
            if (!warned)
                log_warn("job %" PRId64 ": log upload failed (%s); the job goes on, output is "
                         "spooled, retrying",
                         job->id, err.message);
            warned = true;
            next_try = time_mono_ms() + upload_backoff(&backoff);
        }
    }
    free(chunk);
    return ok;
}

/* A plan job's generated jobs: the library copies res->plan_jobs after
 * do_job returns, so the text lives here until this thread's next job. */
static _Thread_local char *plan_jobs_text;
/* The same for the log's last bytes sent with the result (res->log). */
static _Thread_local struct buf log_tail;

static void do_job(struct yci_client *c, struct yci_job *job, struct yci_result *res, void *arg)
{
    free(plan_jobs_text);
    plan_jobs_text = NULL;
    buf_release(&log_tail);
    struct runner *r = arg;
    if (job->slot < 0 || job->slot >= r->slots) { /* not from the library's run loop */
        log_error("job %" PRId64 ": no slot %d on this runner", job->id, job->slot);
        res->status = YCI_ERROR;
        res->error = "the runner cannot start the job";
        return;
    }
    struct buf err = BUF_INIT;
    struct exec *x = NULL;
    char *path = spool_path(r, job->slot);
    int64_t t0 = time_mono_ms();
    /* Not O_APPEND: the executor writes at its own offset, and splice()
     * refuses a file opened for appending. */
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("job %" PRId64 ": cannot open the spool '%s': %s", job->id, path,
                  strerror(errno));
        res->status = YCI_ERROR;
        res->error = "the runner cannot write its spool file";
        goto out;
    }
    if (exec_new(job, r->server_url, r->workdir, job->slot, fd, &x, &err) < 0) {
        log_error("job %" PRId64 ": %s", job->id, err.data);
        res->status = YCI_ERROR;
        res->error = "the runner cannot start the job";
        goto out;
    }
    x->token = yci_client_token(c); /* git fetches private mirrors with it */
    log_info("job %" PRId64 ": claimed (build %" PRId64 ", '%s', attempt %d, slot %d)", job->id,
             job->build_id, job->name, job->attempt, job->slot);

    pthread_mutex_lock(&r->mu);
    r->running[job->slot] = x;
    pthread_mutex_unlock(&r->mu);
    atomic_fetch_add(&r->nrunning, 1);
    /* A cancel that came before the executor was visible. */
    if (yci_job_cancelled(job))
        exec_stop(x, atomic_load(&r->stopping) ? EXEC_SHUTDOWN : EXEC_CANCELLED);

    /* The job runs in this thread; its log goes up from the slot's
     * uploader thread once it runs long or prints much, else from here
     * when it ended: a short job wakes no other thread. */
    struct upload_task t = {r, job, x, &log_tail, 0, false, false, false};
    x->kick = upload_kick;
    x->kick_arg = &t;
    x->kick_at = time_mono_ms() + UPLOAD_INTERVAL_MS;
    exec_run(x);
    bool delivered;
    if (t.started) {
        upload_wait(&t);
        delivered = t.ok;
    } else {
        delivered = upload(r, job, x, &log_tail, &t.tail_offset);
    }
    pthread_mutex_lock(&x->mu);
    bool own = x->own_end;
    pthread_mutex_unlock(&x->mu);
    /* Stopping after the job ended by itself: its result goes, not a run
     * again (the library gives it YCI_STOP_DELIVERY_MS too). */
    bool kept = delivered && own && atomic_load(&r->stopping);
    if (!delivered || (yci_job_cancelled(job) && !kept)) {
        res->status = YCI_ABANDONED;
        log_info("job %" PRId64 ": dropped (%s)", job->id,
                 atomic_load(&r->stopping) ? "the runner is stopping: it goes back to the queue"
                                           : "cancelled or taken away");
    } else {
        res->status = x->status;
        res->exit_code = x->exit_code;
        res->log = log_tail.data;
        res->log_len = log_tail.len;
        res->log_offset = t.tail_offset;
        res->error = x->error.len ? x->error.data : NULL;
        if (x->status == YCI_PASSED && x->plan_jobs) {
            plan_jobs_text = x->plan_jobs;
            x->plan_jobs = NULL;
            res->plan_jobs = plan_jobs_text;
        }
        log_info("job %" PRId64 ": %s%s%s (exit %d) in %" PRId64 " ms", job->id,
                 x->status == YCI_PASSED      ? "passed"
                 : x->status == YCI_FAILED    ? "failed"
                 : x->status == YCI_TIMED_OUT ? "timed out"
                                              : "error",
                 x->error.len ? ": " : "", x->error.len ? x->error.data : "", x->exit_code,
                 time_mono_ms() - t0);
    }
    pthread_mutex_lock(&r->mu);
    r->running[job->slot] = NULL;
    pthread_mutex_unlock(&r->mu);
    atomic_fetch_sub(&r->nrunning, 1);
out:
    /* res->error may point into x->error: the library copies it after we
     * return, so keep x alive until then (freed in finished()). */
    if (x && res->error && res->error == x->error.data) {
        static _Thread_local char msg[512];
        snprintf(msg, sizeof msg, "%s", x->error.data);
        res->error = msg;
    }
    exec_free(x);
    if (fd >= 0)
        close(fd);
    if (res->status == YCI_ABANDONED)
        spool_empty(r, job);
    free(path);
    buf_release(&err);
}

/* Called by the library with its lock held: only flag and wake. */
static void on_cancel(struct yci_client *c, struct yci_job *job, void *arg)
{
    (void)c;
    struct runner *r = arg;
    bool shutdown = atomic_load(&r->stopping);
    pthread_mutex_lock(&r->mu);
    struct exec *x = job->slot >= 0 && job->slot < r->slots ? r->running[job->slot] : NULL;
    if (x && x->job == job)
        exec_stop(x, shutdown ? EXEC_SHUTDOWN : EXEC_CANCELLED);
    pthread_mutex_unlock(&r->mu);
    if (!shutdown)
        log_info("job %" PRId64 ": cancelled by the server, stopping it", job->id);
}

/* Say so once when the server goes away, and once when it is back. */
static void on_server_state(struct yci_client *c, bool reachable, const char *why, void *arg)
{
    (void)c;
    (void)arg;
    if (reachable)
        log_info("the server answers again");
    else
        log_warn("cannot reach the server (%s); trying again: running jobs go on, their output "
                 "waits in the spool",
                 why);
}

static void on_finished(struct yci_client *c, struct yci_job *job, int rc, void *arg)
{
    (void)c;
    struct runner *r = arg;
    free(plan_jobs_text); /* delivered (or given up on): see do_job */
    plan_jobs_text = NULL;
    buf_release(&log_tail);
    if (rc == 0 || rc == -ESTALE) {
        spool_empty(r, job);
        if (rc == -ESTALE)
            log_warn("job %" PRId64 ": the server refused the result (stale attempt or "
                     "cancelled)",
                     job->id);
    } else {
        log_warn("job %" PRId64 ": result not delivered (%s), its lease will expire", job->id,
                 strerror(-rc));
    }
}

/*
 * The runner's registration outlives the process: WORKDIR/runner-token
 * ({"server", "token"}, mode 0600) is presented when it registers again, so
 * a restarted runner keeps its record (id, history) instead of adding a dead
 * one per restart. Only to the server it came from.
 */
static char *token_path(const struct runner *r)
{
    return xasprintf("%s/runner-token", r->workdir);
}

static char *load_token(const struct runner *r)
{
    char *path = token_path(r);
    struct buf b = BUF_INIT;
    char *token = NULL;
    if (file_read(path, &b) == 0) {
        json_t *j = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
        const char *server = json_string_value(json_object_get(j, "server"));
        const char *t = json_string_value(json_object_get(j, "token"));
        if (server && t && strcmp(server, r->server_url) == 0)
            token = xstrdup(t);
        json_decref(j);
    }
    buf_release(&b);
    free(path);
    return token;
}

/* Write the client's token when it is not the one saved (from the heartbeat
 * thread, and after the first registration: one writer at a time). */
static void save_token(struct runner *r)
{
    char *t = yci_client_token(r->client);
    if (!t || (r->saved_token && strcmp(t, r->saved_token) == 0)) {
        free(t);
        return;
    }
    json_t *j = json_pack("{s:s, s:s}", "server", r->server_url, "token", t);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    char *path = token_path(r);
    int rc = text ? file_write_atomic(path, text, strlen(text), 0600) : -ENOMEM;
    if (rc < 0)
        log_warn("cannot keep the runner's token in '%s' (%s): a restart registers anew", path,
                 strerror(-rc));
    free(path);
    free(text);
    free(r->saved_token);
    r->saved_token = t;
}

static char *client_info(struct yci_client *c, void *arg)
{
    (void)c;
    struct runner *r = arg;
    save_token(r); /* registered in the background since the last one */
    double load[3] = {0, 0, 0};
    int nl = getloadavg(load, 3);
    json_t *l = json_array();
    for (int i = 0; i < (nl > 0 ? nl : 0); i++)
        json_array_append_new(l, json_real(load[i]));
    json_t *j = json_pack("{s:i, s:i, s:o, s:s, s:s}", "slots", r->slots, "running",
                          atomic_load(&r->nrunning), "load", l, "hostname", r->hostname, "version",
                          YCI_VERSION);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

static int prepare_workdir(struct runner *r, const char *workdir, struct buf *err)
{
    int ret = mkdir_p(workdir, 0755);
    if (ret < 0) {
        buf_setf(err, "cannot make the work directory '%s': %s", workdir, strerror(-ret));
        return ret;
    }
    char *abs = realpath(workdir, NULL);
    if (!abs) {
        buf_setf(err, "'%s': %s", workdir, strerror(errno));
        return -errno;
    }
    r->workdir = abs;
    /* Two runners in one work directory would empty each other's
     * workspaces under their jobs. */
    char *lock = xasprintf("%s/lock", abs);
    r->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (r->lock_fd < 0 || flock(r->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        if (e == EWOULDBLOCK)
            buf_setf(err, "another runner works in '%s' (it holds '%s'): give each runner a "
                          "--workdir of its own", abs, lock);
        else
            buf_setf(err, "'%s': %s", lock, strerror(e));
        free(lock);
        return -e;
    }
    free(lock);
    /* Spools of a previous run are of jobs whose leases have expired. */
    const char *subdirs[] = {"cache", "ws", "spool"};
    for (size_t i = 0; i < 3; i++) {
        char *d = xasprintf("%s/%s", abs, subdirs[i]);
        if (i == 2)
            remove_tree(d);
        ret = mkdir_p(d, 0755);
        if (ret < 0)
            buf_setf(err, "cannot make '%s': %s", d, strerror(-ret));
        free(d);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static void runner_destroy(struct runner *r)
{
    yci_client_free(r->client);
    for (int i = 0; i < r->slots; i++) {
        struct slot *s = &r->slot[i];
        thread_stop(&r->mu, &s->cond, &s->quit, s->thread, &s->started);
        pthread_cond_destroy(&s->cond);
    }
    free(r->slot);
    pthread_mutex_destroy(&r->mu);
    free(r->running);
    free(r->server_url);
    free(r->workdir);
    free(r->hostname);
    free(r->saved_token);
    if (r->lock_fd >= 0)
        close(r->lock_fd);
    free(r);
}

int runner_start(const struct runner_config *cfg, struct runner **out, struct buf *err)
{
    int ret;
    if (!cfg->server_url || !*cfg->server_url) {
        buf_setf(err, "no server URL");
        return -EINVAL;
    }
    if (strncmp(cfg->server_url, "http://", 7) != 0 && strncmp(cfg->server_url, "https://", 8)) {
        buf_setf(err, "bad server URL '%s': expected http://host:port", cfg->server_url);
        return -EINVAL;
    }
    if (cfg->slots < 0 || cfg->slots > 1024 || cfg->heartbeat < 0) {
        buf_setf(err, "bad slots or heartbeat");
        return -EINVAL;
    }

    struct runner *r = xcalloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    size_t ulen = strlen(cfg->server_url);
    while (ulen > 1 && cfg->server_url[ulen - 1] == '/')
        ulen--;
    r->server_url = xstrndup(cfg->server_url, ulen);
    r->slots = cfg->slots > 0 ? cfg->slots : 1;
    r->running = xcalloc((size_t)r->slots, sizeof *r->running);
    r->slot = xcalloc((size_t)r->slots, sizeof *r->slot);
    for (int i = 0; i < r->slots; i++) {
        r->slot[i].r = r;
        pthread_cond_init(&r->slot[i].cond, NULL);
    }
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) < 0 || !*host)
        snprintf(host, sizeof host, "localhost");
    r->hostname = xstrdup(host);
    atomic_init(&r->stopping, false);
    atomic_init(&r->nrunning, 0);
    r->lock_fd = -1;

    ret = prepare_workdir(r, cfg->workdir && *cfg->workdir ? cfg->workdir : "yci-runner", err);
    if (ret < 0)
        goto fail;

    struct yci_client_config cc = {
        .server_url = r->server_url,
        .registration_secret = cfg->registration_secret,
        .name = cfg->name,
        .labels = cfg->labels,
        .nlabels = cfg->nlabels,
        .slots = r->slots,
        .heartbeat = cfg->heartbeat > 0 ? cfg->heartbeat : 10,
        .claim_wait = cfg->claim_wait,
    };
    r->saved_token = load_token(r);
    cc.token = r->saved_token;
    struct yci_error e;
    ret = yci_client_new(&cc, &r->client, &e);
    if (ret < 0) {
        buf_setf(err, "%s", e.message);
        goto fail;
    }
    /* One attempt now, so that a wrong secret is an error at once; an
     * unreachable server is retried in the background. */
    ret = yci_client_register(r->client, &e);
    if (ret == -EACCES || ret == -EPROTO || ret == -EINVAL || ret == -ENOENT) {
        buf_setf(err, "registration refused: %s", e.message);
        goto fail;
    }
    if (ret < 0)
        log_warn("cannot register yet (%s); retrying in the background", e.message);
    else
        log_info("registered with %s as runner %" PRId64 " (%d slot%s, work directory '%s')",
                 r->server_url, yci_client_runner_id(r->client), r->slots, r->slots == 1 ? "" : "s",
                 r->workdir);
    if (ret == 0)
        save_token(r); /* before any thread that could */

    r->handler = (struct yci_handler){
        .do_job = do_job,
        .cancel = on_cancel,
        .client_info = client_info,
        .finished = on_finished,
        .server_state = on_server_state,
        .arg = r,
    };
    ret = yci_client_start(r->client, &r->handler, &e);
    if (ret < 0) {
        buf_setf(err, "%s", e.message);
        goto fail;
    }
    *out = r;
    return 0;
fail:
    runner_destroy(r);
    return ret;
}

void runner_free(struct runner *r)
{
    if (!r)
        return;
    atomic_store(&r->stopping, true);
    /* Stops claiming, stops each running job through on_cancel (SIGTERM,
     * SIGKILL after the grace period) and joins every thread. */
    yci_client_stop(r->client);
    runner_destroy(r);
}
