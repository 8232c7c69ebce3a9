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
#include "github/github.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "server/internal.h"
#include "server/pipeline.h"
#include "store/store.h"
#include "lib/banned.h"

/* How long after a fetch its housekeeping waits (`git maintenance run
 * --auto`): its git processes would otherwise take the CPU from the claims
 * and job starts that the fetch's new builds bring at once. */
#define MAINTAIN_DELAY_MS 2000
/* ... and how late it may be before it runs even while polls keep the
 * observer busy. */
#define MAINTAIN_LATE_MS 60000

struct observer {
    struct server *srv;
    struct github *gh; /* the observer thread's GitHub client; NULL without GitHub */
    json_t *registered; /* GITHUB_REPOSITORIES names known to be in the store */
    json_t *reg_errors; /* name → the last error registering it (logged once) */
    json_t *foreign;    /* names of GitHub repositories not ours to poll (logged once) */
    /* mirror path → when its housekeeping is due (time_mono_ms()); only the
     * thread that polls touches it */
    json_t *maintain;
    /* repository name → its open pull requests at its last poll (ref →
     * GitHub's object), for twin_of() before GitHub is asked again */
    json_t *pulls_seen;
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

/* What one poll of one repository carries from ref to ref. */
struct poll {
    struct server *srv;
    int64_t repo_id;
    const char *name;
    const char *mirror;
    struct git_reader *git; /* the mirror's objects */
    json_t *pipelines; /* commit → jobs (array) or error (string), for this poll */
    bool created;
};

/* Whether a pipeline is a .yci.py plan, whose jobs depend on the pull
 * request it is given. */
static bool is_plan(json_t *jobs)
{
    const char *kind =
        json_string_value(json_object_get(json_array_get(jobs, 0), "kind"));
    return json_array_size(jobs) == 1 && kind && strcmp(kind, "plan") == 0;
}

/*
 * ref is at sha now, old is what the store saw (NULL: new ref). Compute the
 * pipeline and advance the head, creating the build once. pull: the pull
 * request of a refs/pull/N/head ref (NULL otherwise); twin: its twin ref
 * (store_head_advance()), kept only when it builds the same jobs. 0, or
 * -errno with err.
 */
static int advance_ref(struct poll *p, const char *ref, const char *sha, const char *old,
                       json_t *pull, bool untrusted, const char *twin, struct buf *err)
{
    struct server *srv = p->srv;
    json_t *jobs = NULL;
    struct buf perr = BUF_INIT;
    int rc;
    /* Many refs often point at one commit (100 branches pushed at once):
     * compute each commit's pipeline once per poll, unless it depends on
     * the branch (a .yci.yml's branch filters). */
    json_t *cached = json_object_get(p->pipelines, sha);
    bool cancel_superseded = true; /* what every cached (not per-ref) outcome says */
    if (json_is_array(cached)) {
        jobs = json_incref(cached);
        rc = 0;
    } else if (json_is_string(cached)) {
        buf_adds(&perr, json_string_value(cached));
        rc = -EINVAL;
    } else {
        bool per_ref = true;
        rc = pipeline_for_commit(p->git, sha, ref, srv->cfg.max_jobs_per_build,
                                 srv->cfg.plan_timeout, &jobs, &per_ref, &cancel_superseded,
                                 &perr);
        if (rc < 0 && rc != -EINVAL) {
            buf_setf(err, "reading the pipeline of %s at %s: %s", ref, sha, perr.data);
            buf_release(&perr);
            return rc;
        }
        if (per_ref)
            ; /* not cached */
        else if (rc == 0)
            json_object_set(p->pipelines, sha, jobs);
        else
            json_object_set_new(p->pipelines, sha, json_string(perr.data));
        if (twin && per_ref) {
            /* A twin stands for this ref only if it builds the same. */
            json_t *tjobs = NULL;
            struct buf terr = BUF_INIT;
            int trc = pipeline_for_commit(p->git, sha, twin, srv->cfg.max_jobs_per_build,
                                          srv->cfg.plan_timeout, &tjobs, NULL, NULL, &terr);
            if (trc != rc || (rc == 0 && !json_equal(jobs, tjobs)) ||
                (rc < 0 && strcmp(terr.data ? terr.data : "", perr.data ? perr.data : "")))
                twin = NULL;
            json_decref(tjobs);
            buf_release(&terr);
        }
    }
    if (is_plan(jobs))
        twin = NULL; /* .yci.py is told which pull request it builds */
    int64_t build_id = 0;
    struct buf serr = BUF_INIT;
    int adv = store_head_advance(srv->store, p->repo_id, ref, old, sha, jobs,
                                 rc == -EINVAL ? perr.data : NULL, cancel_superseded, pull,
                                 untrusted, twin, &build_id, &serr);
    bool no_jobs = rc == 0 && json_array_size(jobs) == 0;
    json_decref(jobs);
    if (adv < 0) {
        buf_setf(err, "recording %s at %s: %s", ref, sha,
                 serr.len ? serr.data : store_strerror(adv));
        buf_release(&perr);
        buf_release(&serr);
        return adv;
    }
    if (adv == 0 && build_id)
        log_info("'%s' %s at %s: build %" PRId64 " of %s stands for it", p->name, ref, sha,
                 build_id, twin);
    if (adv > 0) {
        if (rc == -EINVAL) {
            log_warn("build %" PRId64 " created for '%s' %s at %s: %s", build_id, p->name, ref,
                     sha, perr.data);
            results_build_done(srv->results, build_id);
        } else if (no_jobs) {
            log_info("build %" PRId64 " created for '%s' %s at %s: %s", build_id, p->name, ref,
                     sha, PIPELINE_NO_JOBS);
            if (store_event_add(srv->store, build_id, 0, PIPELINE_NO_JOBS) < 0)
                log_warn("build %" PRId64 ": recording its event failed, ignoring", build_id);
            results_build_done(srv->results, build_id);
        } else {
            log_info("build %" PRId64 " created for '%s' %s at %s%s", build_id, p->name, ref,
                     sha, untrusted ? " (untrusted: a fork's pull request)" : "");
            p->created = true;
        }
        /* After the build's own event: what shows it finished shows it whole. */
        observer_commit_info(srv, p->git, build_id, sha);
    }
    buf_release(&perr);
    buf_release(&serr);
    return 0;
}

void observer_commit_info(struct server *srv, struct git_reader *git, int64_t build_id,
                          const char *sha)
{
    char *author = NULL, *subject = NULL;
    struct buf err = BUF_INIT;
    if (git_commit_info(git, sha, &author, &subject, &err) < 0)
        log_warn("build %" PRId64 ": the author of %s is unknown: %s", build_id, sha, err.data);
    else if (store_build_set_commit(srv->store, build_id, author, subject) < 0)
        log_warn("build %" PRId64 ": recording the author of %s failed", build_id, sha);
    free(author);
    free(subject);
    buf_release(&err);
}

/* Is a pull request from another repository (a fork)? Such builds are
 * marked untrusted. */
static bool pull_from_fork(json_t *pull)
{
    const char *head = json_string_value(
        json_object_get(json_object_get(json_object_get(pull, "head"), "repo"), "full_name"));
    const char *base = json_string_value(
        json_object_get(json_object_get(json_object_get(pull, "base"), "repo"), "full_name"));
    return !head || !base || strcmp(head, base) != 0;
}

/*
 * The open pull requests of a GitHub repository, as heads: each open PR N
 * whose refs/pull/N/head the mirror has (among refs) becomes heads[ref] = its
 * commit and pulls[ref] = the PR. 0; 1 when GitHub's list was partial; or
 * -errno with err (GitHub could not be asked).
 */
static int github_heads(struct observer *o, const char *full_name, json_t *refs, json_t *heads,
                        json_t *pulls, struct buf *err)
{
    json_t *open = NULL;
    int64_t retry_at = 0;
    int rc = github_open_pulls(o->gh, full_name, &open, &retry_at, err);
    if (rc < 0)
        return rc;
    bool partial = rc == 1;
    size_t i;
    json_t *pull;
    json_array_foreach(open, i, pull) {
        json_t *num = json_object_get(pull, "number");
        if (!json_is_integer(num) || json_integer_value(num) <= 0)
            continue;
        char ref[64];
        snprintf(ref, sizeof ref, "refs/pull/%" PRId64 "/head", (int64_t)json_integer_value(num));
        json_t *sha = json_object_get(refs, ref);
        if (!json_is_string(sha))
            continue; /* not fetched yet: the next poll has it */
        json_object_set(heads, ref, sha);
        json_object_set(pulls, ref, pull);
    }
    json_decref(open);
    return partial ? 1 : 0; /* 1: build these, close nothing */
}

/* The branch of a same-repository pull request. */
static const char *pull_branch(json_t *pull)
{
    return pull && !pull_from_fork(pull)
               ? json_string_value(json_object_get(json_object_get(pull, "head"), "ref"))
               : NULL;
}

/*
 * The twin of ref (store_head_advance()), newly allocated, or NULL: for the
 * head of a pull request from the repository itself, its branch; for a
 * branch, such a pull request whose branch it is, the one at the same
 * commit if several (pulls: ref → the open pull requests; heads: ref → its
 * commit).
 */
static char *twin_of(const char *ref, json_t *pulls, json_t *heads)
{
    const char *branch = pull_branch(json_object_get(pulls, ref));
    if (branch)
        return xasprintf("refs/heads/%s", branch);
    if (strncmp(ref, "refs/heads/", 11) != 0)
        return NULL;
    const char *pref, *first = NULL;
    json_t *pull;
    json_object_foreach(pulls, pref, pull)
    {
        branch = pull_branch(pull);
        if (!branch || strcmp(branch, ref + 11) != 0)
            continue;
        /* Of several, the one at the branch's commit. */
        if (json_equal(json_object_get(heads, pref), json_object_get(heads, ref)))
            return xstrdup(pref);
        if (!first)
            first = pref;
    }
    return first ? xstrdup(first) : NULL;
}

/*
 * Advance the refs of heads that moved since seen: the pull request heads
 * (those in pulls) or the others. twins: the open pull requests known for
 * twin_of(), refs: every ref's commit. Sets *moved when one did.
 */
static int advance_moved(struct poll *p, json_t *heads, json_t *seen, json_t *pulls,
                         bool pull_refs, json_t *twins, json_t *refs, bool *moved,
                         struct buf *err)
{
    const char *ref;
    json_t *v;
    json_object_foreach(heads, ref, v)
    {
        const char *sha = json_string_value(v);
        const char *old = json_string_value(json_object_get(seen, ref));
        json_t *pull = json_object_get(pulls, ref);
        if (!sha || (old && strcmp(old, sha) == 0) || pull_refs != (pull != NULL))
            continue;
        *moved = true;
        char *twin = twin_of(ref, twins, refs);
        int rc = advance_ref(p, ref, sha, old, pull, pull && pull_from_fork(pull), twin, err);
        free(twin);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Poll one repository; returns 0, or a negative errno with err set. */
static int poll_repo(struct observer *o, json_t *repo, struct buf *err)
{
    struct server *srv = o->srv;
    int64_t repo_id = json_integer_value(json_object_get(repo, "id"));
    const char *name = json_string_value(json_object_get(repo, "name"));
    const char *url = json_string_value(json_object_get(repo, "url"));
    const char *github = json_string_value(json_object_get(repo, "github"));
    if (!name || !url || !name_valid(name)) {
        buf_setf(err, "bad repository record");
        return -EINVAL;
    }
    char *mirror = server_mirror_path(srv, name);
    json_t *refs = NULL, *heads = json_object(), *seen = NULL, *pulls = json_object();
    struct poll p = {srv, repo_id, name, mirror, NULL, json_object(), false};
    bool fetched = false; /* a ref moved: the fetch brought objects */
    struct buf gerr = BUF_INIT;
    bool pulls_known = false;
    int rc = git_mirror_init(mirror, err);
    if (rc < 0)
        goto out;
    /* GitHub keeps each pull request's head at refs/pull/N/head. */
    static const char *const refspecs[] = {GIT_REFSPEC_HEADS, GIT_REFSPEC_PULLS};
    /* A GitHub repository is fetched with the GitHub credentials (private
     * repositories over HTTPS). */
    char *auth = github && o->gh && github_url_trusted(&srv->cfg.github, url)
                     ? github_git_header(&srv->cfg.github)
                     : NULL;
    rc = git_mirror_fetch(mirror, url, refspecs, github && o->gh ? 2 : 1, auth, err);
    free(auth);
    if (rc < 0)
        goto out;
    /* One listing for the branches and GitHub's pull request heads. */
    bool gh = github && o->gh;
    rc = git_list_refs(mirror, gh ? "refs/" : "refs/heads/", &refs, err);
    if (rc < 0)
        goto out;
    const char *ref;
    json_t *v;
    json_object_foreach(refs, ref, v)
    {
        if (strncmp(ref, "refs/heads/", 11) == 0)
            json_object_set(heads, ref, v);
    }
    struct buf herr = BUF_INIT;
    if (git_mirror_fix_head(mirror, heads, &herr) < 0)
        log_warn("repo '%s': %s, ignoring", name, herr.data);
    buf_release(&herr);
    seen = store_heads_get(srv->store, repo_id);
    if (!seen)
        seen = json_object();
    /* One git process reads every new commit's pipeline and author. */
    rc = git_reader_open(mirror, &p.git, err);
    if (rc < 0)
        goto out;

    /* The branches first, before GitHub is asked for the pull requests (a
     * round trip): their builds start meanwhile. Their twins are the pull
     * requests the last poll knew; one opened since finds the branch's
     * build and adopts it. */
    json_t *known = json_object_get(o->pulls_seen, name);
    rc = advance_moved(&p, heads, seen, pulls, false, known ? known : pulls, refs, &fetched, err);
    if (rc < 0)
        goto out;
    if (p.created)
        sched_kick(srv->sched);
    p.created = false;
    if (gh) {
        int g = github_heads(o, github, refs, heads, pulls, &gerr);
        pulls_known = g == 0;
        if (g == 1)
            log_warn("repo '%s': %s", name, gerr.data);
        if (pulls_known)
            json_object_set(o->pulls_seen, name, pulls);
        rc = advance_moved(&p, heads, seen, pulls, true, pulls, refs, &fetched, err);
        if (rc < 0)
            goto out;
    }
    json_object_foreach(seen, ref, v)
    {
        if (json_object_get(heads, ref))
            continue;
        if (strncmp(ref, "refs/pull/", 10) == 0) {
            /* Closed (or merged): only when GitHub said so just now. */
            if (!pulls_known)
                continue;
            int nlen = (int)strcspn(ref + 10, "/");
            char *why = xasprintf("pull request #%.*s was closed", nlen, ref + 10);
            int d = store_ref_close(srv->store, repo_id, ref, why);
            if (d < 0)
                log_warn("repo '%s': closing %s failed: %s, ignoring", name, ref,
                         store_strerror(d));
            else
                log_info("repo '%s': %s", name, why);
            free(why);
            continue;
        }
        int d = store_head_delete(srv->store, repo_id, ref);
        if (d < 0 && d != -ENOENT)
            log_warn("repo '%s': forgetting %s failed: %s, ignoring", name, ref,
                     store_strerror(d));
        else
            log_info("repo '%s': %s was deleted", name, ref);
    }
    if (p.created)
        sched_kick(srv->sched);
    /* The fetch left its housekeeping out (git_mirror_fetch()): it runs a
     * little later, once the new builds have started. */
    if (fetched && !json_object_get(o->maintain, mirror))
        json_object_set_new(o->maintain, mirror, json_integer(time_mono_ms() + MAINTAIN_DELAY_MS));
    rc = 0;
    if (gh && !pulls_known) {
        /* The branches were built; the pull requests wait for GitHub. */
        buf_setf(err, "%s", gerr.data ? gerr.data : "GitHub could not be asked");
        rc = -EAGAIN;
    }
out:
    git_reader_close(p.git);
    buf_release(&gerr);
    json_decref(p.pipelines);
    json_decref(pulls);
    json_decref(refs);
    json_decref(heads);
    json_decref(seen);
    free(mirror);
    return rc;
}

/*
 * Make sure each repository of GITHUB_REPOSITORIES is in the store (named
 * owner.repo, its URL GitHub's clone_url) and marked as GitHub's. Asks
 * GitHub once per repository; a failure is logged (once per message) and
 * retried at the next full poll.
 */
static int github_register(struct observer *o)
{
    int failed = 0;
    struct server *srv = o->srv;
    const char *list = srv->cfg.github_repos;
    if (!list || !o->gh)
        return 0;
    char *copy = xstrdup(list), *save = NULL;
    for (char *full = strtok_r(copy, " \t\n,", &save); full;
         full = strtok_r(NULL, " \t\n,", &save)) {
        if (json_object_get(o->registered, full))
            continue;
        struct buf err = BUF_INIT;
        char *name = github_repo_name(full);
        json_t *repo = NULL;
        int rc = 0;
        if (!github_full_name_valid(full) || !name_valid(name)) {
            buf_setf(&err, "'%s' in GITHUB_REPOSITORIES is not a repository (owner/name)", full);
            rc = -EINVAL;
        } else {
            /* Ask GitHub every time: the clone URL, and whether it is private. */
            json_t *gh_repo = NULL;
            rc = github_get_repo(o->gh, full, &gh_repo, NULL, &err);
            const char *url = json_string_value(json_object_get(gh_repo, "clone_url"));
            bool priv = json_is_true(json_object_get(gh_repo, "private"));
            if (rc == 0 && !(repo = store_repo_get(srv->store, name))) {
                rc = store_repo_add(srv->store, name, url, &repo, &err);
                if (rc == 0)
                    log_info("repo '%s' added for GitHub's %s: %s", name, full, url);
            }
            if (rc == 0) {
                rc = store_repo_set_github(srv->store,
                                           json_integer_value(json_object_get(repo, "id")), full,
                                           priv);
                if (rc < 0)
                    buf_setf(&err, "marking '%s' as GitHub's %s: %s", name, full,
                             strerror(-rc));
            }
            json_decref(gh_repo);
        }
        if (rc == 0) {
            json_object_set_new(o->registered, full, json_true());
        } else {
            const char *prev = json_string_value(json_object_get(o->reg_errors, full));
            if (!prev || strcmp(prev, err.data) != 0)
                log_error("GitHub repository %s: %s; will retry", full, err.data);
            json_object_set_new(o->reg_errors, full, json_string(err.data));
            failed++;
        }
        json_decref(repo);
        free(name);
        buf_release(&err);
    }
    free(copy);
    return failed;
}

static int poll_and_record(struct observer *o, json_t *repo)
{
    struct server *srv = o->srv;
    int64_t repo_id = json_integer_value(json_object_get(repo, "id"));
    const char *name = json_string_value(json_object_get(repo, "name"));
    const char *last = json_string_value(json_object_get(repo, "last_error"));
    const char *github = json_string_value(json_object_get(repo, "github"));
    /* Another configuration's (a cron pass's, with its credentials): not
     * fetched without them, nor with ours. */
    if (github && !github_list_has(srv->cfg.github_repos, github)) {
        if (name && !json_object_get(o->foreign, name)) {
            log_info("repo '%s' is GitHub's %s, which is not in GITHUB_REPOSITORIES: not "
                     "polled here (a pass configured with it polls it)",
                     name, github);
            json_object_set_new(o->foreign, name, json_true());
        }
        return 0;
    }
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
                  store_strerror(r2));
    buf_release(&err);
    return rc;
}

/* Run the housekeeping of one mirror whose time has come late ms ago (of
 * every one with all) and return -1; or return when the next is due, 0 when
 * none waits. */
static int64_t maintain_due(struct observer *o, bool all, int64_t late)
{
    int64_t now = time_mono_ms() - late, next = 0;
    const char *mirror;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(o->maintain, tmp, mirror, v)
    {
        int64_t due = json_integer_value(v);
        if (!all && due > now) {
            next = next && next < due ? next : due;
            continue;
        }
        struct buf err = BUF_INIT;
        if (git_mirror_maintain(mirror, &err) < 0)
            log_warn("%s: %s, ignoring", mirror, err.data);
        buf_release(&err);
        json_object_del(o->maintain, mirror);
        if (!all)
            return -1; /* one at a time: a poll asked for may be waiting */
    }
    return next;
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
            pthread_mutex_unlock(&o->lock);
            int64_t due = maintain_due(o, false, 0);
            pthread_mutex_lock(&o->lock);
            if (due < 0 || o->nwanted > 0 || o->stopping)
                continue;
            int64_t until = due && due < next_all ? due : next_all;
            struct timespec ts = {until / 1000, (until % 1000) * 1000000};
            pthread_cond_timedwait(&o->cond, &o->lock, &ts);
            continue;
        }
        if (now >= next_all) {
            o->nwanted = 0; /* a full poll answers every request */
            next_all = now + interval;
            pthread_mutex_unlock(&o->lock);
            github_register(o);
            json_t *repos = store_repo_list(srv->store);
            size_t i;
            json_t *repo;
            json_array_foreach(repos, i, repo)
            {
                poll_and_record(o, repo);
                /* Polls that never leave the observer idle (more
                 * repositories than the interval has time for) must not
                 * starve the housekeeping for ever. */
                maintain_due(o, false, MAINTAIN_LATE_MS);
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

int observer_once(struct server *srv)
{
    struct observer o = {.srv = srv, .registered = json_object(), .reg_errors = json_object(),
                         .foreign = json_object(),
                         .maintain = json_object(), .pulls_seen = json_object()};
    o.gh = github_new(&srv->cfg.github);
    int failed = github_register(&o);
    json_t *repos = store_repo_list(srv->store);
    size_t i;
    json_t *repo;
    json_array_foreach(repos, i, repo) {
        const char *gh = json_string_value(json_object_get(repo, "github"));
        if (gh && github_list_has(srv->cfg.github_repos, gh) && poll_and_record(&o, repo) < 0)
            failed++;
    }
    json_decref(repos);
    maintain_due(&o, true, 0); /* the pass ends here: now, not later */
    github_free(o.gh);
    json_decref(o.registered);
    json_decref(o.reg_errors);
    json_decref(o.foreign);
    json_decref(o.maintain);
    json_decref(o.pulls_seen);
    return failed;
}

int observer_new(struct server *srv, struct observer **out, struct buf *err)
{
    struct observer *o = xcalloc(1, sizeof(*o));
    o->srv = srv;
    o->registered = json_object();
    o->reg_errors = json_object();
    o->foreign = json_object();
    o->maintain = json_object();
    o->pulls_seen = json_object();
    if (srv->cfg.github_repos)
        o->gh = github_new(&srv->cfg.github);
    pthread_mutex_init(&o->lock, NULL);
    cond_init_monotonic(&o->cond);
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
    thread_stop(&o->lock, &o->cond, &o->stopping, o->thread, &o->thread_started);
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->lock);
    free(o->wanted);
    github_free(o->gh);
    json_decref(o->registered);
    json_decref(o->reg_errors);
    json_decref(o->foreign);
    json_decref(o->maintain);
    json_decref(o->pulls_seen);
    free(o);
}
