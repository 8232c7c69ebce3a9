/*
 * notify — delivers the outbox of commit statuses to GitHub.
 *
 * The store keeps the outbox (store.h, "The outbox of commit statuses"): a
 * row per job and per build of a GitHub repository, updated in the same
 * transactions as their states. This thread sends what is due of the
 * repositories of its GITHUB_REPOSITORIES (those it has the credentials of:
 * a cron pass of another user's on the same data sends theirs), oldest
 * first, and marks each row with the version it delivered, so the newest
 * state is always the last one GitHub gets. A 5xx, a timeout or no
 * connection retries that row with backoff; a rate limit (403/429 with
 * Retry-After or X-RateLimit-Reset) pauses every delivery until GitHub says;
 * bad credentials retry slowly (someone may fix the token); a status GitHub
 * refuses (422) is given up with an error in the log. The outbox survives
 * restarts: what was not delivered is delivered after.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "github/github.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "server/internal.h"
#include "store/store.h"
#include "lib/banned.h"

/* How often the outbox is looked at when nothing kicks the thread. */
#define NOTIFY_TICK_MS 250
/* Rows taken at once. */
#define NOTIFY_BATCH 50
/* Longest wait between two tries of a row. */
#define NOTIFY_BACKOFF_MAX_MS (10 * 60 * 1000)

struct notifier {
    struct server *srv;
    struct github *gh;
    json_t *only; /* GITHUB_REPOSITORIES: the statuses this process sends */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    bool stopping, kicked, thread_started;
    pthread_t thread;
    int64_t paused_until; /* wall clock: a rate limit */
    bool failing;         /* a delivery failed since the last one that worked */
};

/* GitHub's state for a yci status. */
static const char *github_state(const char *s)
{
    if (!s || !strcmp(s, "queued") || !strcmp(s, "running"))
        return "pending";
    if (!strcmp(s, "passed"))
        return "success";
    if (!strcmp(s, "failed") || !strcmp(s, "timed_out"))
        return "failure";
    return "error"; /* error, cancelled */
}

static int64_t jint(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* A line for a reviewer: what happened, in GitHub's 140 characters. */
static void describe(json_t *row, struct buf *d)
{
    const char *state = json_string_value(json_object_get(row, "state"));
    const char *error = json_string_value(json_object_get(row, jint(row, "job_id") ? "error"
                                                                                   : "build_error"));
    state = state ? state : "?";
    if (!strcmp(state, "queued") && jint(row, "retries") > 0)
        buf_setf(d, "retry %" PRId64 " of %" PRId64 " queued", jint(row, "retries"),
                 jint(row, "max_retries"));
    else if (!strcmp(state, "running") && jint(row, "attempt") > 1)
        buf_setf(d, "running (attempt %" PRId64 ")", jint(row, "attempt"));
    else if (!strcmp(state, "passed") && jint(row, "finished") && jint(row, "started"))
        buf_setf(d, "passed in %" PRId64 " s",
                 (jint(row, "finished") - jint(row, "started") + 999) / 1000);
    else if (error && strcmp(state, "passed") != 0)
        buf_setf(d, "%s: %s", !strcmp(state, "timed_out") ? "timed out" : state, error);
    else
        buf_setf(d, "%s", !strcmp(state, "timed_out") ? "timed out" : state);
}

static char *target_url(struct server *srv, json_t *row)
{
    const char *root = srv->cfg.http_root && *srv->cfg.http_root ? srv->cfg.http_root : srv->url;
    if (!root)
        return NULL; /* a one-shot pass without HTTP_ROOT knows no URL */
    size_t n = strlen(root);
    while (n && root[n - 1] == '/')
        n--;
    if (jint(row, "job_id"))
        return xasprintf("%.*s/jobs/%" PRId64, (int)n, root, jint(row, "job_id"));
    return xasprintf("%.*s/builds/%" PRId64, (int)n, root, jint(row, "build_id"));
}

static int64_t backoff_ms(int64_t tries)
{
    int64_t ms = 1000;
    for (int64_t i = 0; i < tries && ms < NOTIFY_BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms < NOTIFY_BACKOFF_MAX_MS ? ms : NOTIFY_BACKOFF_MAX_MS;
}

/* Send one row. Returns false when deliveries must pause (rate limit). */
static bool deliver(struct notifier *n, json_t *row)
{
    struct server *srv = n->srv;
    int64_t id = jint(row, "id"), now = time_now_ms(), retry_at = 0;
    const char *github = json_string_value(json_object_get(row, "github"));
    const char *sha = json_string_value(json_object_get(row, "sha"));
    const char *context = json_string_value(json_object_get(row, "context"));
    const char *state = json_string_value(json_object_get(row, "state"));
    struct buf desc = BUF_INIT, err = BUF_INIT;
    describe(row, &desc);
    char *url = target_url(srv, row);
    int rc = github_create_status(n->gh, github ? github : "", sha ? sha : "",
                                  github_state(state), url, desc.data, context ? context : "yci",
                                  &retry_at, &err);
    bool go_on = true;
    if (rc == 0) {
        store_status_sent(srv->store, id, jint(row, "version"));
        if (n->failing) {
            /* GitHub answers again: what waited out a backoff goes now. */
            n->failing = false;
            int woken = store_statuses_wake(srv->store, n->only);
            if (woken > 0)
                log_info("GitHub answers again: %d waiting status%s sent now", woken,
                         woken == 1 ? "" : "es");
        }
    } else if (rc == -EINVAL) {
        log_error("status %s %s of %s@%.12s: %s; given up", context, github_state(state), github,
                  sha, err.data);
        store_status_sent(srv->store, id, jint(row, "version"));
    } else {
        /* GitHub down (not a refusal, not a rate limit): a later success
         * wakes what waits. */
        if (rc == -EAGAIN && retry_at <= now)
            n->failing = true;
        int64_t tries = jint(row, "tries");
        int64_t next = retry_at > now ? retry_at : now + backoff_ms(tries);
        if (rc == -EACCES || rc == -ENOENT)
            next = now + NOTIFY_BACKOFF_MAX_MS;
        if (tries == 0)
            log_warn("status %s of %s@%.12s not delivered: %s; retrying in %" PRId64 " s",
                     context, github, sha, err.data, (next - now + 999) / 1000);
        store_status_retry(srv->store, id, jint(row, "version"), next, err.data);
        if (retry_at > now) {
            log_warn("GitHub rate limited the statuses: delivering none for %" PRId64 " s",
                     (retry_at - now + 999) / 1000);
            pthread_mutex_lock(&n->lock);
            n->paused_until = retry_at;
            pthread_mutex_unlock(&n->lock);
            go_on = false;
        }
    }
    free(url);
    buf_release(&desc);
    buf_release(&err);
    return go_on;
}

static void *notifier_thread(void *arg)
{
    struct notifier *n = arg;
    pthread_mutex_lock(&n->lock);
    while (!n->stopping) {
        int64_t now = time_now_ms();
        if (n->paused_until > now || !n->kicked) {
            int64_t wait = n->paused_until > now ? n->paused_until - now : NOTIFY_TICK_MS;
            if (wait > NOTIFY_TICK_MS * 4)
                wait = NOTIFY_TICK_MS * 4; /* see a stop soon */
            cond_wait_ms(&n->cond, &n->lock, wait);
            if (n->paused_until > time_now_ms())
                continue;
        }
        n->kicked = false;
        pthread_mutex_unlock(&n->lock);
        json_t *due = store_statuses_due(n->srv->store, time_now_ms(), NOTIFY_BATCH, n->only);
        size_t i;
        json_t *row;
        json_array_foreach(due, i, row) {
            if (!deliver(n, row))
                break;
            pthread_mutex_lock(&n->lock);
            bool stop = n->stopping;
            pthread_mutex_unlock(&n->lock);
            if (stop)
                break;
        }
        bool more = json_array_size(due) == NOTIFY_BATCH;
        json_decref(due);
        pthread_mutex_lock(&n->lock);
        if (more)
            n->kicked = true;
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

int notifier_flush(struct server *srv, int64_t deadline_ms)
{
    struct notifier n = {.srv = srv};
    pthread_mutex_init(&n.lock, NULL);
    n.gh = github_new(&srv->cfg.github);
    n.only = github_list_json(srv->cfg.github_repos);
    bool go_on = true;
    while (go_on && time_mono_ms() < deadline_ms) {
        json_t *due = store_statuses_due(srv->store, time_now_ms(), NOTIFY_BATCH, n.only);
        size_t i;
        json_t *row;
        json_array_foreach(due, i, row) {
            if (!(go_on = deliver(&n, row)) || time_mono_ms() >= deadline_ms)
                break;
        }
        if (json_array_size(due) == 0)
            go_on = false;
        json_decref(due);
    }
    github_free(n.gh);
    pthread_mutex_destroy(&n.lock);
    int64_t left = store_statuses_pending(srv->store, n.only);
    json_decref(n.only);
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

int notifier_new(struct server *srv, struct notifier **out, struct buf *err)
{
    struct notifier *n = xcalloc(1, sizeof *n);
    n->srv = srv;
    n->gh = github_new(&srv->cfg.github);
    n->only = github_list_json(srv->cfg.github_repos);
    n->kicked = true;
    pthread_mutex_init(&n->lock, NULL);
    cond_init_monotonic(&n->cond);
    int rc = pthread_create(&n->thread, NULL, notifier_thread, n);
    if (rc != 0) {
        buf_setf(err, "cannot start the notifier thread: %s", strerror(rc));
        notifier_free(n);
        return -rc;
    }
    n->thread_started = true;
    *out = n;
    return 0;
}

void notifier_free(struct notifier *n)
{
    if (!n)
        return;
    thread_stop(&n->lock, &n->cond, &n->stopping, n->thread, &n->thread_started);
    pthread_cond_destroy(&n->cond);
    pthread_mutex_destroy(&n->lock);
    github_free(n->gh);
    json_decref(n->only);
    free(n);
}
