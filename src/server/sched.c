/*
 * sched — the scheduler: long-poll claims and lease expiry.
 *
 * A claim first tries the store at once. When nothing matches, the request is
 * suspended (no thread is held) in a FIFO list of waiters with a deadline. One
 * scheduler thread serves the waiters whenever jobs may have become available
 * (sched_kick(): a build was created or rebuilt, a job finished, leases were
 * re-queued) and at least every SCHED_TICK_MS, answers 204 at each deadline,
 * and expires leases every second.
 *
 * The work of a pass is proportional to the jobs handed out, not to the
 * waiters: once a claim for a runner with labels L finds nothing, no waiter
 * whose labels are a subset of L is tried again in that pass (it could only
 * match jobs that L would have matched). Runners usually share a handful of
 * label sets, so an empty queue costs one store query per label set.
 *
 * Concurrency: one mutex protects the waiter list. A waiter is answered, and a
 * cancelled one forgotten, only with the mutex held, so the cancel callback
 * (peer went away) and a response never race; the callback looks its request
 * up in the list, so a callback for a request already answered does nothing.
 * A claim made for a waiter happens with the mutex held too: a waiter cannot
 * vanish between its job being claimed and its response.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/limits.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "server/internal.h"
#include "store/store.h"
#include "lib/banned.h"

#define SCHED_TICK_MS 250
#define SCHED_EXPIRE_MS 1000
/* No expiry pass done for this long: the server was stalled (stopped, its
 * store locked or full) and runners' heartbeats went unanswered. */
#define SCHED_STALL_MS (3 * SCHED_EXPIRE_MS)
#define SCHED_MAX_FAILED_SETS 32

struct waiter {
    struct waiter *prev, *next;
    struct http_request *req;
    const struct auth_runner *runner; /* lives as long as the server */
    int64_t deadline;                 /* time_mono_ms() */
};

struct sched {
    struct server *srv;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    struct waiter *head, *tail;
    uint64_t kick_gen; /* grows with every kick, read by claims that go to sleep */
    bool kicked;
    bool stopping;
    bool thread_started;
    pthread_t thread;
};

static void list_remove(struct sched *s, struct waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        s->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        s->tail = w->prev;
    w->prev = w->next = NULL;
}

static void list_append(struct sched *s, struct waiter *w)
{
    w->prev = s->tail;
    w->next = NULL;
    if (s->tail)
        s->tail->next = w;
    else
        s->head = w;
    s->tail = w;
}

void sched_claimed(struct server *srv, const struct auth_runner *r, json_t *job)
{
    const char *repo = json_string_value(json_object_get(job, "repo"));
    const char *github = json_string_value(json_object_get(job, "github"));
    if (repo) {
        /* A GitHub repository's mirror by its GitHub path, so that a
         * relative submodule URL resolves as on GitHub ("../lib.git" of
         * owner/app is owner/lib: the repository owner.lib). */
        char *url = github ? xasprintf("/git/%s.git", github) : xasprintf("/git/%s", repo);
        json_object_set_new(job, "fetch_url", json_string(url));
        free(url);
    } else {
        json_object_set_new(job, "fetch_url", json_null());
    }
    json_object_del(job, "github");
    json_t *timeout = json_object_get(job, "timeout");
    if (!json_is_integer(timeout) || json_integer_value(timeout) <= 0)
        json_object_set_new(job, "timeout", json_integer(srv->cfg.job_timeout));
    json_object_set_new(job, "max_log_bytes", json_integer(srv->cfg.max_log_bytes));
    log_info("job %" PRId64 " attempt %" PRId64 " (build %" PRId64 ", '%s') claimed by runner "
             "'%s' (%" PRId64 ")",
             (int64_t)json_integer_value(json_object_get(job, "id")),
             (int64_t)json_integer_value(json_object_get(job, "attempt")),
             (int64_t)json_integer_value(json_object_get(job, "build_id")),
             json_string_value(json_object_get(job, "name")), r->name, r->id);
}

/* Claim a job for runner r: 1 and *job, the response body (logged), 0 when
 * none matches, or a store error (logged). */
static int claim_for(struct server *srv, const struct auth_runner *r, json_t **out)
{
    json_t *job = NULL;
    int rc = store_job_claim(srv->store, r->id, r->labels, r->lease_ms, &job);
    if (rc < 0)
        log_error("claim for runner '%s' (%" PRId64 ") failed: %s", r->name, r->id,
                  store_strerror(rc));
    if (rc <= 0)
        return rc;
    sched_claimed(srv, r, job);
    *out = job;
    return 1;
}

/* Answer req with a job from claim_for() (consumes job). */
static void respond_job(struct http_request *req, json_t *job)
{
    struct buf b = BUF_INIT;
    size_t n = json_dumpb(job, NULL, 0, JSON_COMPACT);
    buf_grow(&b, n);
    b.len = json_dumpb(job, b.data, n, JSON_COMPACT);
    b.data[b.len] = '\0';
    json_decref(job);
    http_respond_buf(req, 200, "application/json", &b);
}

static void on_cancel(struct http_request *req, void *arg)
{
    (void)req;
    struct sched *s = arg;
    pthread_mutex_lock(&s->lock);
    for (struct waiter *w = s->head; w; w = w->next) {
        if (w->req == req) {
            list_remove(s, w);
            free(w);
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

bool sched_open(struct sched *s)
{
    pthread_mutex_lock(&s->lock);
    bool stopping = s->stopping;
    pthread_mutex_unlock(&s->lock);
    return !stopping;
}

void sched_claim(struct sched *s, struct http_request *req, const struct auth_runner *r, int wait_s)
{
    struct server *srv = s->srv;
    pthread_mutex_lock(&s->lock);
    uint64_t gen = s->kick_gen;
    bool stopping = s->stopping;
    pthread_mutex_unlock(&s->lock);
    if (stopping) {
        http_respond_error(req, 503, "the server is shutting down");
        return;
    }

    json_t *job = NULL;
    int rc = claim_for(srv, r, &job);
    if (rc < 0) {
        http_respond_error(req, 500, "the store failed to claim a job");
        return;
    }
    if (rc > 0) {
        respond_job(req, job);
        return;
    }
    if (wait_s <= 0) {
        http_respond(req, 204, NULL, NULL, 0);
        return;
    }

    struct waiter *w = xcalloc(1, sizeof(*w));
    w->req = req;
    w->runner = r;
    w->deadline = time_mono_ms() + (int64_t)wait_s * 1000;
    pthread_mutex_lock(&s->lock);
    if (s->stopping) {
        pthread_mutex_unlock(&s->lock);
        free(w);
        http_respond_error(req, 503, "the server is shutting down");
        return;
    }
    /* Suspend before the scheduler thread can see the waiter, so it never
     * answers a request that is not suspended yet. */
    http_suspend(req, on_cancel, s);
    list_append(s, w);
    /* A job may have arrived between our claim and now: its kick found no
     * waiter, so make the thread look again. */
    if (s->kick_gen != gen)
        s->kicked = true;
    /* The thread must learn of a deadline earlier than the one it sleeps to. */
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void sched_kick(struct sched *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->kick_gen++;
    /* Nobody waits: nothing to serve, and waking the thread for nothing on
     * every finished job costs a context switch each. A claim that goes to
     * sleep later sees kick_gen move and wakes the thread itself. */
    if (s->head) {
        s->kicked = true;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
}

/* Is every label of a also in b, with the same value? */
static bool labels_subset(json_t *a, json_t *b)
{
    const char *key;
    json_t *v;
    json_object_foreach(a, key, v)
    {
        json_t *o = json_object_get(b, key);
        if (!o || !json_equal(o, v))
            return false;
    }
    return true;
}

/* One pass over the waiters; the mutex is held. Returns the earliest deadline
 * still pending (INT64_MAX when none). */
static int64_t serve_waiters(struct sched *s)
{
    struct server *srv = s->srv;
    int64_t now = time_mono_ms();
    int64_t next = INT64_MAX;

    /* Deadlines first: a runner whose wait is over may have given up. */
    for (struct waiter *w = s->head, *nw; w; w = nw) {
        nw = w->next;
        if (w->deadline <= now) {
            list_remove(s, w);
            http_respond(w->req, 204, NULL, NULL, 0);
            free(w);
        }
    }

    json_t *failed[SCHED_MAX_FAILED_SETS];
    size_t nfailed = 0;
    for (struct waiter *w = s->head, *nw; w; w = nw) {
        nw = w->next;
        bool skip = false;
        for (size_t i = 0; i < nfailed && !skip; i++)
            skip = labels_subset(w->runner->labels, failed[i]);
        if (skip) {
            if (w->deadline < next)
                next = w->deadline;
            continue;
        }
        json_t *job = NULL;
        int rc = claim_for(srv, w->runner, &job);
        if (rc > 0) {
            list_remove(s, w);
            respond_job(w->req, job);
            free(w);
            continue;
        }
        if (rc == 0 && nfailed < SCHED_MAX_FAILED_SETS)
            failed[nfailed++] = w->runner->labels;
        if (w->deadline < next)
            next = w->deadline;
    }
    return next;
}

/* *last_ok: time_mono_ms() of the last pass that worked. */
static void expire_leases(struct sched *s, int64_t *last_check_wall, int64_t *last_ok)
{
    struct server *srv = s->srv;
    int requeued = 0;
    int64_t started = time_now_ms(), stalled = time_mono_ms() - *last_ok;
    /* The runners were not heard meanwhile, through no fault of theirs:
     * they get the time to report (a result may be waiting) before a lease
     * that ran out during the stall is held against them. */
    if (stalled > SCHED_STALL_MS) {
        int g = store_leases_grace(srv->store, server_lease_grace_ms());
        if (g < 0) {
            log_error("extending leases after a stall failed: %s, retrying", store_strerror(g));
            return;
        }
        if (g > 0)
            log_warn("the server could not look after leases for %" PRId64 " s (stopped, or its "
                     "store locked or full): %d running job lease(s) extended by %" PRId64
                     " s for their runners to report",
                     stalled / 1000, g, server_lease_grace_ms() / 1000);
        *last_ok = time_mono_ms();
    }
    int n = store_leases_expire(srv->store, YCI_MAX_INFRA_RETRIES, &requeued);
    if (n < 0) {
        log_error("expiring leases failed: %s, retrying", store_strerror(n));
        return;
    }
    *last_ok = time_mono_ms();
    if (n > 0) {
        log_warn("%d job lease(s) expired: %d re-queued, %d given up as errors", n, requeued,
                 n - requeued);
        if (n > requeued)
            results_recent_errors(srv->results, *last_check_wall - SCHED_EXPIRE_MS);
        if (requeued > 0)
            sched_kick(s);
    }
    *last_check_wall = started;
}

static void deadline_to_timespec(int64_t mono_ms, struct timespec *ts)
{
    ts->tv_sec = mono_ms / 1000;
    ts->tv_nsec = (mono_ms % 1000) * 1000000;
}

static void *sched_thread(void *arg)
{
    struct sched *s = arg;
    int64_t next_expire = time_mono_ms();
    int64_t last_check_wall = time_now_ms(), last_ok = time_mono_ms();
    int64_t next_wake = 0;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->stopping && !s->kicked) {
            int64_t now = time_mono_ms();
            if (now >= next_wake)
                break;
            struct timespec ts;
            deadline_to_timespec(next_wake, &ts);
            pthread_cond_timedwait(&s->cond, &s->lock, &ts);
        }
        if (s->stopping)
            break;
        s->kicked = false;

        if (time_mono_ms() >= next_expire) {
            pthread_mutex_unlock(&s->lock);
            expire_leases(s, &last_check_wall, &last_ok);
            next_expire = time_mono_ms() + SCHED_EXPIRE_MS;
            pthread_mutex_lock(&s->lock);
        }

        int64_t deadline = serve_waiters(s);
        next_wake = time_mono_ms() + SCHED_TICK_MS;
        if (deadline < next_wake)
            next_wake = deadline;
        if (next_expire < next_wake)
            next_wake = next_expire;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int sched_new(struct server *srv, struct sched **out, struct buf *err)
{
    struct sched *s = xcalloc(1, sizeof(*s));
    s->srv = srv;
    pthread_mutex_init(&s->lock, NULL);
    cond_init_monotonic(&s->cond);
    int rc = pthread_create(&s->thread, NULL, sched_thread, s);
    if (rc != 0) {
        buf_setf(err, "cannot start the scheduler thread: %s", strerror(rc));
        sched_free(s);
        return -rc;
    }
    s->thread_started = true;
    *out = s;
    return 0;
}

void sched_stop(struct sched *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    while (s->head) {
        struct waiter *w = s->head;
        list_remove(s, w);
        http_respond(w->req, 204, NULL, NULL, 0);
        free(w);
    }
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (s->thread_started) {
        pthread_join(s->thread, NULL);
        s->thread_started = false;
    }
}

void sched_free(struct sched *s)
{
    if (!s)
        return;
    sched_stop(s);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
