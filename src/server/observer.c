/*
 * observer — watches repositories for new branch heads.
 *
 * One thread polls every repository every poll_interval seconds, and a single
 * repository at once when asked (POST /api/repos/{name}/poll, a new
 * repository). Requests coalesce: asking ten times while a poll runs gives one
 * more poll, not ten.
 *
 * A poll: make sure the bare mirror exists (<data>/mirrors/<name>.git), fetch
 * the branches with prune, list the heads, and compare them with the heads the
 * store saw last. Every new or moved head gets its pipeline computed at the
 * new commit and goes through store_head_advance(), which creates the build
 * exactly once per (ref, commit) even if two polls race. A burst of commits
 * between two polls is one build for the newest head of the branch. Refs that
 * vanished are forgotten. An error (repository gone, fetch failed) is
 * recorded on the repository and logged once per change of message; the other
 * repositories keep being watched, and the next successful poll clears it.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "git/git.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "server/internal.h"
#include "server/pipeline.h"
#include "store/store.h"
#include "lib/banned.h"

struct observer {
    struct server *srv;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    int64_t *wanted;     /* repository ids asked for, without duplicates */
    size_t nwanted, capwanted;
    bool stopping;
    bool thread_started;
    pthread_t thread;
};

void observer_request(struct observer *o, int64_t repo_id)
{
    if (!o)
        return;
    pthread_mutex_lock(&o->lock);
    bool present = false;
    for (size_t i = 0; i < o->nwanted && !present; i++)
        present = o->wanted[i] == repo_id;
    if (!present) {
        if (o->nwanted == o->capwanted) {
            o->capwanted = o->capwanted ? o->capwanted * 2 : 8;
            o->wanted = xrealloc(o->wanted, o->capwanted * sizeof(*o->wanted));
        }
        o->wanted[o->nwanted++] = repo_id;
    }
    pthread_cond_signal(&o->cond);
    pthread_mutex_unlock(&o->lock);
}

/* Poll one repository; returns 0, or a negative errno with err set. */
static int poll_repo(struct observer *o, json_t *repo, struct buf *err)
{
    struct server *srv = o->srv;
    int64_t repo_id = json_integer_value(json_object_get(repo, "id"));
    const char *name = json_string_value(json_object_get(repo, "name"));
    const char *url = json_string_value(json_object_get(repo, "url"));
    if (!name || !url || !name_valid(name)) {
        buf_setf(err, "bad repository record");
        return -EINVAL;
    }
    char *mirror = server_mirror_path(srv, name);
    json_t *heads = NULL, *seen = NULL, *pipelines = json_object();
    int rc = git_mirror_init(mirror, err);
    if (rc < 0)
        goto out;
    static const char *const refspecs[] = {GIT_REFSPEC_HEADS};
    rc = git_mirror_fetch(mirror, url, refspecs, 1, err);
    if (rc < 0)
        goto out;
    rc = git_list_refs(mirror, "refs/heads/", &heads, err);
    if (rc < 0)
        goto out;
    struct buf herr = BUF_INIT;
    if (git_mirror_fix_head(mirror, heads, &herr) < 0)
        log_warn("repo '%s': %s, ignoring", name, herr.data);
    buf_release(&herr);
    seen = store_heads_get(srv->store, repo_id);
    if (!seen)
        seen = json_object();

    bool created = false;
    const char *ref;
    json_t *v;
    json_object_foreach(heads, ref, v)
    {
        const char *sha = json_string_value(v);
        const char *old = json_string_value(json_object_get(seen, ref));
        if (!sha || (old && strcmp(old, sha) == 0))
            continue;
        json_t *jobs = NULL;
        struct buf perr = BUF_INIT;
        /* Many refs often point at one commit (100 branches pushed at once):
         * compute each commit's pipeline once per poll, unless it depends on
         * the branch (a .yci.yml's branch filters). */
        json_t *cached = json_object_get(pipelines, sha);
        bool cancel_superseded = true; /* what every cached (not per-ref) outcome says */
        if (json_is_array(cached)) {
            jobs = json_incref(cached);
            rc = 0;
        } else if (json_is_string(cached)) {
            buf_adds(&perr, json_string_value(cached));
            rc = -EINVAL;
        } else {
            bool per_ref = true;
            rc = pipeline_for_commit(mirror, sha, ref, srv->cfg.max_jobs_per_build,
                                     srv->cfg.plan_timeout, &jobs, &per_ref,
                                     &cancel_superseded, &perr);
            if (rc < 0 && rc != -EINVAL) {
                buf_setf(err, "reading the pipeline of %s at %s: %s", ref, sha, perr.data);
                buf_release(&perr);
                goto out;
            }
            if (per_ref)
                ; /* not cached */
            else if (rc == 0)
                json_object_set(pipelines, sha, jobs);
            else
                json_object_set_new(pipelines, sha, json_string(perr.data));
        }
        int64_t build_id = 0;
        struct buf serr = BUF_INIT;
        int adv = store_head_advance(srv->store, repo_id, ref, old, sha, jobs,
                                     rc == -EINVAL ? perr.data : NULL, cancel_superseded,
                                     &build_id, &serr);
        bool no_jobs = rc == 0 && json_array_size(jobs) == 0;
        json_decref(jobs);
        if (adv < 0) {
            buf_setf(err, "recording %s at %s: %s", ref, sha,
                     serr.len ? serr.data : strerror(-adv));
            buf_release(&perr);
            buf_release(&serr);
            rc = adv;
            goto out;
        }
        if (adv > 0) {
            if (rc == -EINVAL) {
                log_warn("build %" PRId64 " created for '%s' %s at %s: %s", build_id, name, ref,
                         sha, perr.data);
                results_build_done(srv->results, build_id);
            } else if (no_jobs) {
                log_info("build %" PRId64 " created for '%s' %s at %s: %s", build_id, name, ref,
                         sha, PIPELINE_NO_JOBS);
                if (store_event_add(srv->store, build_id, 0, PIPELINE_NO_JOBS) < 0)
                    log_warn("build %" PRId64 ": recording its event failed, ignoring", build_id);
                results_build_done(srv->results, build_id);
            } else {
                log_info("build %" PRId64 " created for '%s' %s at %s", build_id, name, ref, sha);
                created = true;
            }
        }
        buf_release(&perr);
        buf_release(&serr);
    }
    json_object_foreach(seen, ref, v)
    {
        if (json_object_get(heads, ref))
            continue;
        int d = store_head_delete(srv->store, repo_id, ref);
        if (d < 0 && d != -ENOENT)
            log_warn("repo '%s': forgetting %s failed: %s, ignoring", name, ref, strerror(-d));
        else
            log_info("repo '%s': %s was deleted", name, ref);
    }
    if (created)
        sched_kick(srv->sched);
    rc = 0;
out:
    json_decref(pipelines);
    json_decref(heads);
    json_decref(seen);
    free(mirror);
    return rc;
}

static void poll_and_record(struct observer *o, json_t *repo)
{
    struct server *srv = o->srv;
    int64_t repo_id = json_integer_value(json_object_get(repo, "id"));
    const char *name = json_string_value(json_object_get(repo, "name"));
    const char *last = json_string_value(json_object_get(repo, "last_error"));
    struct buf err = BUF_INIT;
    int rc = poll_repo(o, repo, &err);
    const char *msg = rc < 0 ? (err.len ? err.data : strerror(-rc)) : NULL;
    if (msg && (!last || strcmp(last, msg) != 0))
        log_error("repo '%s': %s; will retry at the next poll", name ? name : "?", msg);
    else if (!msg && last)
        log_info("repo '%s': polled fine again", name ? name : "?");
    int r2 = store_repo_polled(srv->store, repo_id, msg);
    if (r2 < 0 && r2 != -ENOENT)
        log_error("repo '%s': recording the poll failed: %s, ignoring", name ? name : "?",
                  strerror(-r2));
    buf_release(&err);
}

static void *observer_thread(void *arg)
{
    struct observer *o = arg;
    struct server *srv = o->srv;
    int64_t interval = (int64_t)(srv->cfg.poll_interval > 0 ? srv->cfg.poll_interval : 5) * 1000;
    int64_t next_all = time_mono_ms();

    pthread_mutex_lock(&o->lock);
    while (!o->stopping) {
        int64_t now = time_mono_ms();
        if (o->nwanted == 0 && now < next_all) {
            struct timespec ts = {next_all / 1000, (next_all % 1000) * 1000000};
            pthread_cond_timedwait(&o->cond, &o->lock, &ts);
            continue;
        }
        if (now >= next_all) {
            o->nwanted = 0; /* a full poll answers every request */
            next_all = now + interval;
            pthread_mutex_unlock(&o->lock);
            json_t *repos = store_repo_list(srv->store);
            size_t i;
            json_t *repo;
            json_array_foreach(repos, i, repo)
            {
                poll_and_record(o, repo);
                pthread_mutex_lock(&o->lock);
                bool stop = o->stopping;
                pthread_mutex_unlock(&o->lock);
                if (stop)
                    break;
            }
            json_decref(repos);
            pthread_mutex_lock(&o->lock);
            continue;
        }
        int64_t id = o->wanted[0];
        memmove(o->wanted, o->wanted + 1, (o->nwanted - 1) * sizeof(*o->wanted));
        o->nwanted--;
        pthread_mutex_unlock(&o->lock);
        json_t *repo = store_repo_get_id(srv->store, id);
        if (repo)
            poll_and_record(o, repo);
        json_decref(repo);
        pthread_mutex_lock(&o->lock);
    }
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

int observer_new(struct server *srv, struct observer **out, struct buf *err)
{
    struct observer *o = xcalloc(1, sizeof(*o));
    o->srv = srv;
    pthread_mutex_init(&o->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&o->cond, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&o->thread, NULL, observer_thread, o);
    if (rc != 0) {
        buf_setf(err, "cannot start the observer thread: %s", strerror(rc));
        observer_free(o);
        return -rc;
    }
    o->thread_started = true;
    *out = o;
    return 0;
}

void observer_free(struct observer *o)
{
    if (!o)
        return;
    pthread_mutex_lock(&o->lock);
    o->stopping = true;
    pthread_cond_signal(&o->cond);
    pthread_mutex_unlock(&o->lock);
    if (o->thread_started)
        pthread_join(o->thread, NULL);
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->lock);
    free(o->wanted);
    free(o);
}
