/*
 * follow — reading a job's log, and waiting for more of it.
 *
 * GET /api/jobs/{id}/log?offset=N&wait=S: when the log has nothing past
 * offset N yet and the job may still print, the request is suspended (no
 * thread held) for at most S seconds and answered as soon as a log chunk of
 * that job arrives, the job ends, or S runs out (an empty 200: ask again).
 * A follower (`yci logs -f`, a browser) thus gets the bytes within
 * milliseconds of their upload, with one request per wake-up, and resumes
 * from the offset it last saw. A slow follower costs nothing to the job or
 * the runner: it reads the log file; nobody waits for it.
 *
 * GET /api/changes?since=V&wait=S: the same for the pages that update
 * themselves: answered {"version": N} as soon as the store's version
 * (store_version()) is not V, or after S seconds with V.
 *
 * One mutex protects the lists of waiters; a waiter is answered, or forgotten
 * on its cancel callback, only with it held (the pattern of sched.c). A thread
 * answers waiters at their deadline and, every second, those whose job ended
 * in a way no log chunk or finish announced (a cancel, an expired lease).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "server/internal.h"
#include "store/logstore.h"
#include "store/store.h"
#include "lib/banned.h"

#define FOLLOW_TICK_MS 250
#define FOLLOW_CHECK_MS 1000

struct waiter {
    struct waiter *next;
    struct http_request *req;
    int64_t job, attempt, offset, limit;
    int64_t deadline; /* monotonic ms */
};

struct follow {
    struct server *srv;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    struct waiter *waiters;
    struct waiter *watchers; /* GET /api/changes; offset is their version */
    bool stopping, thread_started;
    pthread_t thread;
};

static bool final(const char *s)
{
    return s && strcmp(s, "queued") != 0 && strcmp(s, "running") != 0;
}

/*
 * Answer with the log of (job, attempt) from offset (at most limit bytes),
 * status and current the job's status and attempt now. attempt 0: no attempt yet (an empty log).
 */
void follow_respond(struct server *srv, struct http_request *req, int64_t id, int64_t attempt,
                    int64_t offset, int64_t limit, const char *status, int64_t current)
{
    int fd = -1;
    uint64_t size = 0;
    int rc = attempt > 0 ? logstore_open_read(srv->logs, id, (int)attempt, &fd, &size) : -ENOENT;
    if (rc < 0 && rc != -ENOENT) {
        log_error("job %" PRId64 ": reading its log failed: %s", id, strerror(-rc));
        http_respond_error(req, 500, "cannot read the log: %s", strerror(-rc));
        return;
    }
    char v[32];
    snprintf(v, sizeof v, "%" PRIu64, size);
    http_add_header(req, "X-Yci-Log-Size", v);
    http_add_header(req, "X-Yci-Job-Status", status ? status : "");
    snprintf(v, sizeof v, "%" PRId64, attempt);
    http_add_header(req, "X-Yci-Attempt", v);
    snprintf(v, sizeof v, "%" PRId64, current);
    http_add_header(req, "X-Yci-Current-Attempt", v);
    http_add_header(req, "Cache-Control", "no-cache");
    const char *ct = "text/plain; charset=utf-8";
    if (fd < 0 || (uint64_t)offset >= size) {
        if (fd >= 0)
            close(fd);
        http_respond(req, 200, ct, "", 0);
        return;
    }
    uint64_t len = size - (uint64_t)offset;
    if ((uint64_t)limit < len)
        len = (uint64_t)limit;
    http_respond_fd(req, 200, ct, fd, (uint64_t)offset, len);
}

/* Answer w now, with what its job has; with f->lock held. */
static void answer(struct follow *f, struct waiter *w)
{
    json_t *job = store_job_get(f->srv->store, w->job);
    const char *status = json_string_value(json_object_get(job, "status"));
    follow_respond(f->srv, w->req, w->job, w->attempt, w->offset, w->limit, status,
                   json_integer_value(json_object_get(job, "attempt")));
    json_decref(job);
}

/* Take req out of list; true when it was there. With f->lock held. */
static bool forget(struct waiter **list, struct http_request *req)
{
    for (struct waiter **p = list; *p; p = &(*p)->next) {
        if ((*p)->req == req) {
            struct waiter *w = *p;
            *p = w->next;
            free(w);
            return true;
        }
    }
    return false;
}

static void on_cancel(struct http_request *req, void *arg)
{
    struct follow *f = arg;
    pthread_mutex_lock(&f->lock);
    if (!forget(&f->waiters, req))
        forget(&f->watchers, req);
    pthread_mutex_unlock(&f->lock);
}

static void changes_respond(struct http_request *req, uint64_t version)
{
    char body[48];
    int n = snprintf(body, sizeof body, "{\"version\": %" PRIu64 "}\n", version);
    http_add_header(req, "Cache-Control", "no-cache");
    http_respond(req, 200, "application/json", body, (size_t)n);
}

void follow_changes(struct follow *f, struct http_request *req, uint64_t since, int wait_s)
{
    pthread_mutex_lock(&f->lock);
    /* With the lock held: a change counted after this read finds the
     * watcher in the list (follow_changed takes the lock). */
    uint64_t v = store_version(f->srv->store);
    if (v != since || wait_s <= 0) {
        pthread_mutex_unlock(&f->lock);
        changes_respond(req, v);
        return;
    }
    struct waiter *w = xcalloc(1, sizeof *w);
    w->req = req;
    w->offset = (int64_t)since;
    w->deadline = time_mono_ms() + (int64_t)wait_s * 1000;
    w->next = f->watchers;
    f->watchers = w;
    pthread_mutex_unlock(&f->lock);
    http_suspend(req, on_cancel, f);
}

/* Answer the watchers whose version is behind, or (expired) whose deadline
 * came, with the version now. */
static void watchers_sweep(struct follow *f, bool expired)
{
    int64_t now = expired ? time_mono_ms() : 0;
    pthread_mutex_lock(&f->lock);
    uint64_t v = f->watchers ? store_version(f->srv->store) : 0;
    struct waiter **p = &f->watchers;
    while (*p) {
        struct waiter *w = *p;
        if ((uint64_t)w->offset == v && !(expired && w->deadline <= now)) {
            p = &w->next;
            continue;
        }
        *p = w->next;
        changes_respond(w->req, v);
        free(w);
    }
    pthread_mutex_unlock(&f->lock);
}

void follow_changed(void *arg)
{
    /* One lock and no store call when nobody watches: the common case under
     * load. */
    watchers_sweep(arg, false);
}

void follow_wait(struct follow *f, struct http_request *req, int64_t job, int64_t attempt,
                 int64_t offset, int64_t limit, int wait_s)
{
    struct waiter *w = xcalloc(1, sizeof *w);
    w->req = req;
    w->job = job;
    w->attempt = attempt;
    w->offset = offset;
    w->limit = limit;
    w->deadline = time_mono_ms() + (int64_t)wait_s * 1000;
    pthread_mutex_lock(&f->lock);
    /* A chunk may have come since the caller looked at the size: its
     * follow_notify() found no waiter. Looking again with the lock held
     * closes that gap (a later chunk's notify needs the lock). */
    uint64_t size = 0;
    if (attempt > 0)
        logstore_size(f->srv->logs, job, (int)attempt, &size);
    if (size > (uint64_t)offset) {
        pthread_mutex_unlock(&f->lock);
        free(w);
        json_t *j = store_job_get(f->srv->store, job);
        follow_respond(f->srv, req, job, attempt, offset, limit,
                       json_string_value(json_object_get(j, "status")),
                       json_integer_value(json_object_get(j, "attempt")));
        json_decref(j);
        return;
    }
    w->next = f->waiters;
    f->waiters = w;
    pthread_mutex_unlock(&f->lock);
    http_suspend(req, on_cancel, f);
}

/* Answer (and drop) the waiters of job, or of every job when job is 0 and
 * their job ended or their deadline came. */
static void sweep(struct follow *f, int64_t job, bool check_ended)
{
    int64_t now = time_mono_ms();
    pthread_mutex_lock(&f->lock);
    struct waiter **p = &f->waiters;
    while (*p) {
        struct waiter *w = *p;
        bool go = job ? w->job == job : w->deadline <= now;
        if (!go && !job && check_ended) {
            json_t *j = store_job_get(f->srv->store, w->job);
            const char *st = json_string_value(json_object_get(j, "status"));
            int64_t att = json_integer_value(json_object_get(j, "attempt"));
            go = !j || final(st) || att != w->attempt;
            json_decref(j);
        }
        if (!go) {
            p = &w->next;
            continue;
        }
        *p = w->next;
        answer(f, w);
        free(w);
    }
    pthread_mutex_unlock(&f->lock);
}

void follow_notify(struct follow *f, int64_t job)
{
    if (f && job > 0)
        sweep(f, job, false);
}

static void *follow_thread(void *arg)
{
    struct follow *f = arg;
    int64_t next_check = time_mono_ms() + FOLLOW_CHECK_MS;
    pthread_mutex_lock(&f->lock);
    while (!f->stopping) {
        cond_wait_ms(&f->cond, &f->lock, FOLLOW_TICK_MS);
        if (f->stopping || (!f->waiters && !f->watchers))
            continue;
        pthread_mutex_unlock(&f->lock);
        watchers_sweep(f, true);
        int64_t now = time_mono_ms();
        bool check = now >= next_check;
        if (check)
            next_check = now + FOLLOW_CHECK_MS;
        sweep(f, 0, check);
        pthread_mutex_lock(&f->lock);
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

int follow_new(struct server *srv, struct follow **out, struct buf *err)
{
    struct follow *f = xcalloc(1, sizeof *f);
    f->srv = srv;
    pthread_mutex_init(&f->lock, NULL);
    cond_init_monotonic(&f->cond);
    int rc = pthread_create(&f->thread, NULL, follow_thread, f);
    if (rc != 0) {
        buf_setf(err, "cannot start the log follower thread: %s", strerror(rc));
        follow_free(f);
        return -rc;
    }
    f->thread_started = true;
    *out = f;
    return 0;
}

/* Stop the thread. Waiters left are answered by the HTTP server's shutdown
 * (their cancel callbacks run from http_server_free), so call this after it. */
void follow_free(struct follow *f)
{
    if (!f)
        return;
    thread_stop(&f->lock, &f->cond, &f->stopping, f->thread, &f->thread_started);
    while (f->waiters)
        forget(&f->waiters, f->waiters->req);
    while (f->watchers)
        forget(&f->watchers, f->watchers->req);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f);
}
