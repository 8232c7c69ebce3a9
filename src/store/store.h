/*
 * store — all of yci's state, behind one interface.
 *
 * The server keeps every fact in the store: repositories, the branch heads the
 * observer last saw, builds, jobs with their leases, runners, and build events.
 * Log bytes are not here (see logstore.h). Two drivers implement this header:
 * SQLite (sqlite.c, WAL, the default) and, later, PostgreSQL (pg.c).
 *
 * Contracts:
 *  - Every function that changes something is one transaction: it happens
 *    whole or not at all. A struct store is safe to use from many threads
 *    (the SQLite driver serialises calls on one connection with a mutex).
 *  - Functions return 0 (or a count) on success and a negative errno value on
 *    failure: -ENOENT (no such object), -EEXIST (name taken), -ESTALE (the
 *    caller's attempt number is not the job's current one, or the job is no
 *    longer its), -EINVAL (bad argument), -EIO (the database failed; err says
 *    how). Output parameters are untouched on failure.
 *  - Reads return jansson objects shaped exactly as the HTTP API returns them
 *    (docs/api.md), owned by the caller (json_decref). Times are milliseconds
 *    since the epoch, or null.
 *  - "now" is always the store's own clock (time_now_ms()).
 *
 * Job states: queued, running, passed, failed, error, cancelled, timed_out.
 * Build states: queued (no job started), running, passed, failed, error,
 * cancelled. A build's state derives from its jobs, recomputed in the same
 * transaction as every job change: any job queued or running → running
 * (queued if none has started yet); else any failed or timed_out → failed;
 * else any error → error; else any cancelled → cancelled; else passed. A
 * build created with a configuration error has no jobs and state error; one
 * created with an empty list of jobs and no error is passed at once.
 */
#ifndef YCI_STORE_STORE_H
#define YCI_STORE_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../lib/buf.h"

struct store;

/* What a store call that returned rc (a negative errno) failed on: SQLite's
 * own words for -EIO when it had any ("database is locked", "database or
 * disk is full"), else strerror(-rc). Of the calling thread's last store
 * call; valid until its next one. */
const char *store_strerror(int rc);

/* Open (creating if needed) the database at path and migrate its schema. */
int store_open(const char *path, struct store **out, struct buf *err);
void store_free(struct store *st);

/*
 * Changes, for pages that update themselves. The store counts a version each
 * time a call changes what the pages show (a build or job created or changing
 * state, a runner registered; not a heartbeat) and then calls fn(arg), on the
 * calling thread, after its lock is released and the change committed. fn
 * must be cheap; it may call the store. Set it before other threads use st.
 */
typedef void (*store_change_fn)(void *arg);
void store_on_change(struct store *st, store_change_fn fn, void *arg);
uint64_t store_version(struct store *st);

/*
 * Repositories.
 * JSON: {"id", "name", "url", "created", "last_poll", "last_error", "github",
 * "private"}
 */
int store_repo_add(struct store *st, const char *name, const char *url, json_t **repo_out,
                   struct buf *err);
/* NULL when there is no such repository. */
json_t *store_repo_get(struct store *st, const char *name);
json_t *store_repo_get_id(struct store *st, int64_t id);
json_t *store_repo_list(struct store *st); /* array, by name */
/* Record the outcome of a poll: error NULL means it worked (clears last_error). */
int store_repo_polled(struct store *st, int64_t repo_id, const char *error);

/*
 * Heads the observer saw last: {"refs/heads/main": "<sha>", ...}.
 */
json_t *store_heads_get(struct store *st, int64_t repo_id);
/* Forget a ref that no longer exists. */
int store_head_delete(struct store *st, int64_t repo_id, const char *ref);
/* A ref that ended (a closed pull request): in one transaction, cancel the
 * unfinished jobs of its builds (each such build gets the event "WHY: N jobs
 * cancelled") and forget its head. A pull request's build that its branch
 * stands for (the repository's branch head.ref still at its commit, with no
 * build of its own there, see twin_ref) goes on: the branch needs it; so
 * does a branch's build the pull request adopted while the branch is at its
 * commit. An adopted build whose branch is gone or moved is cancelled. */
int store_ref_close(struct store *st, int64_t repo_id, const char *ref, const char *why);
/* Mark a repository as the GitHub repository full_name ("owner/name"; NULL:
 * none), private or not. Its JSON then has "github": full_name and
 * "private": true|false (the server's mirror of a private repository is
 * served to runners and admins only). -ENOENT: no such repo. */
int store_repo_set_github(struct store *st, int64_t repo_id, const char *full_name,
                          bool private_repo);

/*
 * A job as the caller describes it when creating a build:
 *   {"name": "tests", "commands": ["cmd", ...], "env": {"K": "V"},
 *    "labels": {"os": "linux"}, "timeout": seconds (0: the server default),
 *    "retry": {"count": 0..10, "increment": seconds}, "needs": ["lint", ...],
 *    "kind": "test" (default) or "plan", "submodules": false (default) or true:
 *    the runner checks the repository's submodules out, recursively}
 * All keys but "name" and "commands" optional. The store checks shapes (names
 * unique in the build, strings where strings belong, needs naming other jobs
 * of the build and making no cycle) and returns -EINVAL with a message
 * otherwise.
 *
 * retry: an attempt that ends failed or timed_out while the job has retries
 * left (not error, not cancelled) puts the job back in the queue, claimable
 * from now + increment × n seconds for retry n, with the build event
 * "job N (NAME): failed, retry n of COUNT in S s". A job that passes after a
 * retry is "passed" with "flaky": true. Every attempt keeps its log.
 *
 * needs: a job with needs is queued but "waiting" (out of the claim's index)
 * until every needed job has passed; it is released in the transaction that
 * finishes the last of them. When a needed job ends any other way the job is
 * cancelled with the error "needed job 'NAME' failed" (or "timed out", "was
 * cancelled", "ended in error"), which cancels the jobs that need it in turn.
 */

/*
 * The observer saw ref at new_sha. In one transaction: if the stored head of
 * ref is not old_sha (NULL: no stored head), nothing happens and the function
 * returns 0 (another poll got there first). Otherwise the head becomes new_sha
 * and, unless a build of (repo, ref, new_sha) that was not cancelled exists
 * already (a ref back at a commit whose build was cancelled, such as a
 * reopened pull request, builds again), a build is
 * created: with the jobs (an array of job descriptions) when error is NULL,
 * or with no jobs, state "error" and that error message otherwise. An empty
 * array of jobs without error (a .yci.yml with no job for the branch) makes a
 * build in state "passed", finished at once. When the head moves and
 * cancel_superseded is true, the queued and running jobs of the builds of
 * (repo, ref) at other commits are cancelled in the same transaction, each
 * such build getting the event "superseded by build N: K jobs cancelled",
 * N the build that now stands for ref (made now, the one it had of
 * new_sha already, or its twin's); runners learn at their next heartbeat,
 * as for store_build_cancel. pull (may be NULL)
 * is the pull request the build is for (GitHub's JSON, kept with the build,
 * sent to its .yci.py plan job and copied by rebuilds); untrusted marks a
 * build of code from outside the repository (a fork's pull request).
 * twin_ref (may be NULL) is a ref that would build the same jobs at this
 * commit (a same-repository pull request's branch, or the pull request of a
 * branch): when it has a build of new_sha that was not cancelled, no build
 * is created; that build stands for ref too (an event on it says so; it
 * supersedes the older builds of ref as a new build would; it gets pull
 * when it has no pull request yet). Returns 1 and
 * sets *build_id when a build was created; 0 otherwise, *build_id then the
 * twin's build when that is why, else 0.
 */
int store_head_advance(struct store *st, int64_t repo_id, const char *ref, const char *old_sha,
                       const char *new_sha, json_t *jobs, const char *error,
                       bool cancel_superseded, json_t *pull, bool untrusted, const char *twin_ref,
                       int64_t *build_id, struct buf *err);

/*
 * A build not tied to the observer: repo_id 0 means no repository (jobs run
 * in an empty workspace), ref and commit may then be NULL. Used by the API
 * (POST /api/builds) and the benchmarks.
 */
int store_build_create(struct store *st, int64_t repo_id, const char *ref, const char *commit,
                       json_t *jobs, const char *error, int64_t *build_id, struct buf *err);

/*
 * Builds.
 * JSON of a build: {"id", "repo" (name or null), "ref", "branch" (ref without
 * refs/heads/), "commit", "status", "error", "created", "started", "finished",
 * "duration_ms", "rebuild_of", "pull_number" (the pull request's number, or
 * null), "untrusted", "author" and "subject" (of the commit, or null), "jobs": [job...] (only from store_build_get),
 * "events": [{"time", "job_id", "message"}] (only from store_build_get)}
 */
json_t *store_build_get(struct store *st, int64_t id);
/* Newest first. filter keys, all optional: "repo" (name), "branch", "status",
 * "before" (id: only builds with a smaller id), "limit" (default 50, at most
 * YCI_MAX_LIST). */
json_t *store_build_list(struct store *st, json_t *filter);
/* The newest build of every ref the observer sees now (branches, open pull
 * requests) that has one, by repository name then ref: a deleted branch or a
 * closed pull request leaves it. For the overview page; its cost does not
 * grow with the history. */
json_t *store_latest_builds(struct store *st);
/* Record the commit's author and subject line on the build (either NULL). */
int store_build_set_commit(struct store *st, int64_t id, const char *author, const char *subject);
/* A new build with the same repository, ref, commit and job descriptions. */
int store_build_rebuild(struct store *st, int64_t id, int64_t *new_id);
/* Cancel every queued or running job of the build. Returns the number of
 * jobs cancelled; runners learn of running ones at their next heartbeat. */
int store_build_cancel(struct store *st, int64_t id);
/* Append an event shown on the build (job_id 0: the build itself). */
int store_event_add(struct store *st, int64_t build_id, int64_t job_id, const char *message);

/*
 * Jobs.
 * JSON of a job: {"id", "build_id", "name", "status", "attempt", "commands",
 * "env", "labels", "timeout", "runner" (name or null), "runner_id",
 * "exit_code", "error", "created", "started", "finished", "duration_ms",
 * "infra_retries", "lease_expires", "retries" (retries used so far),
 * "max_retries", "retry_increment" (seconds), "flaky" (passed on a retry),
 * "needs" (array of names), "waiting" (queued until its needs pass),
 * "not_before" (no claim before this time, or null), "kind" ("test", or "plan"
 * for the job that runs a .yci.py generator), "planned" (added by the build's
 * plan job), "submodules"}
 */
json_t *store_job_get(struct store *st, int64_t id);
int store_job_cancel(struct store *st, int64_t id);

/*
 * Claim the oldest queued job whose labels are all among the runner's labels
 * (same key, same value). In one transaction: the job becomes running, its
 * attempt grows by one, runner_id is set, and its lease expires lease_ms from
 * now. Returns 1 and sets *job_out (the job JSON plus "repo" (name or null),
 * "commit", "ref", "build_id", "pull" for a plan job of a pull request, and
 * "github", the repository's GitHub full name, when it is GitHub's) when one
 * was claimed, 0 when none matched.
 * The cost must not grow with the number of finished jobs, and should not
 * grow with the number of queued jobs when they have no labels.
 */
int store_job_claim(struct store *st, int64_t runner_id, json_t *runner_labels, int64_t lease_ms,
                    json_t **job_out);

/* A stopping runner gives back the job it runs (job, attempt): the job is
 * queued again at once (its next claim is attempt + 1), without counting an
 * infrastructure retry, and the build gets an event naming runner_name. 0,
 * -ESTALE when that attempt is not running on this runner (finished,
 * cancelled, expired), -ENOENT when there is no such job. */
int store_job_release(struct store *st, int64_t job_id, int attempt, int64_t runner_id,
                      const char *runner_name);

/* Is (job, attempt) the job's current attempt, running on this runner?
 * 0 if so, -ESTALE if not, -ENOENT when there is no such job. A cheap read:
 * called for every log chunk. */
int store_job_check(struct store *st, int64_t job_id, int attempt, int64_t runner_id);

/*
 * Finish an attempt. status is one of passed, failed, error, timed_out.
 * failed and timed_out with retries left re-queue the job (see "retry"
 * above; the build stays running). Idempotent: finishing the current attempt
 * again returns 0 and changes nothing, also once it is queued for a retry. -ESTALE when attempt is not the current one, or the job was
 * cancelled meanwhile (its state stays cancelled). *build_done is set to
 * true when this made the build reach a final state.
 */
int store_job_finish(struct store *st, int64_t job_id, int attempt, int64_t runner_id,
                     const char *status, int exit_code, const char *error, bool *build_done);

/*
 * Finish an attempt of a job, which may be a .yci.py plan job (kind "plan").
 * For a plan job that passed, plan_jobs (required: -EINVAL otherwise) is the
 * array of job descriptions it generated, checked like a build's jobs; in the
 * same transaction they are added to the build (with "planned": true) and
 * the plan job passes, with the build event ".yci.py planned N jobs" (or
 * "no jobs: ..." for an empty array, and the build passes). A plan job that
 * did not pass sets the build's error to its error message (the build's
 * state derives: error, failed for timed_out). Plan jobs are never retried
 * by "retry" (an expired lease still re-queues them). For other jobs
 * plan_jobs must be NULL and this is store_job_finish(). -EINVAL (err says
 * why) when plan_jobs is not a valid job list or a name is the plan job's.
 */
int store_plan_finish(struct store *st, int64_t job_id, int attempt, int64_t runner_id,
                      const char *status, int exit_code, const char *error, json_t *plan_jobs,
                      bool *build_done, struct buf *err);

/*
 * Finish an attempt as store_plan_finish() does and, when claim_labels is
 * set, claim the runner's next job as store_job_claim() does, in the same
 * transaction (a busy runner asks for its next job with its result: one
 * transaction per job instead of two). The claim is made whenever the finish
 * returns 0 (also when it changed nothing), and the two succeed or fail
 * together. On success f->job is the job as store_job_get() shows it after
 * the finish, f->next the claimed job or NULL, f->build_done as
 * store_plan_finish() says; the caller owns both. On failure both are NULL.
 */
struct store_finish {
    int64_t job_id;
    int attempt;
    int64_t runner_id;
    const char *status;
    int exit_code;
    const char *error;
    json_t *plan_jobs;
    json_t *claim_labels; /* the runner's labels, or NULL: no claim */
    int64_t lease_ms;
    bool build_done; /* out */
    json_t *job;     /* out */
    json_t *next;    /* out */
};

int store_finish(struct store *st, struct store_finish *f, struct buf *err);

/*
 * Leases. Put every running job whose lease expired back in the queue
 * (attempt stays; the next claim increments it; infra_retries + 1, runner
 * cleared), or, once infra_retries reaches max_retries, make it "error".
 * Each such change adds a build event naming the runner. Returns how many
 * jobs changed; *requeued counts the re-queued ones (for waking claims).
 */
int store_leases_expire(struct store *st, int max_retries, int *requeued);
/* On start-up after a crash: every running job's lease is pushed to at least
 * now + grace_ms, so runners get time to reconnect before anything expires. */
int store_leases_grace(struct store *st, int64_t grace_ms);

/*
 * The outbox of commit statuses. For builds of a repository marked as
 * GitHub's (store_repo_set_github), the store keeps one row per job
 * (context "yci/NAME") and one for the build (job_id 0, context "yci"), in
 * the same transactions that change their states: nothing is lost across a
 * crash. Each change bumps the row's version; a row is due while the
 * version delivered is older. Rows: {"id", "build_id", "job_id", "github"
 * (owner/repo), "sha", "context", "state" (yci's status), "version", "tries",
 * and of the job: "exit_code", "error", "started", "finished", "attempt",
 * "retries", "max_retries"; of the build: "build_error"}.
 */
/* Due rows (next_try <= now), the longest waiting first, at most limit.
 * only: an array of the repositories ("owner/repo" in lower case) whose rows
 * are wanted, or NULL for all; also in _wake and _pending. A process sends
 * the statuses of the repositories it has the credentials of, and no other. */
json_t *store_statuses_due(struct store *st, int64_t now, int limit, const json_t *only);
/* version was delivered (a newer one stays due). */
int store_status_sent(struct store *st, int64_t id, int64_t version);
/* Delivering version failed: try again at next_try (unless the row has a
 * newer version, which stays due); error is kept for the record. */
int store_status_retry(struct store *st, int64_t id, int64_t version, int64_t next_try,
                       const char *error);
/* Make every row waiting for a retry due now (GitHub answers again).
 * Returns how many. */
int store_statuses_wake(struct store *st, const json_t *only);
/* How many rows are due or waiting for a retry. */
int64_t store_statuses_pending(struct store *st, const json_t *only);

/* Record a webhook delivery id: 1 when it is new, 0 when it was seen in the
 * last STORE_DELIVERY_KEEP_MS (older ones are forgotten), or -errno. */
#define STORE_DELIVERY_KEEP_MS (7LL * 24 * 3600 * 1000)
int store_delivery_new(struct store *st, const char *id);

/*
 * Runners.
 * JSON of a runner: {"id", "name", "labels", "platform", "slots",
 * "heartbeat" (seconds), "client_info", "created", "last_seen", "alive",
 * "jobs": [{"id", "attempt", "build_id", "name"}]}
 * alive: last_seen within 3 heartbeat intervals.
 */
int store_runner_register(struct store *st, const char *name, json_t *labels, json_t *platform,
                          int slots, int heartbeat, const char *token_hash, int64_t *id,
                          struct buf *err);
/* A runner registering again with the token of an earlier registration (a
 * restarted process): its record (id, history) is kept and updated with
 * these fields, and the jobs it was running lose their leases now (the new
 * process does not have them: they are re-queued by the next expiry pass).
 * -ENOENT when no runner has that token. */
int store_runner_reregister(struct store *st, const char *token_hash, const char *name,
                            json_t *labels, json_t *platform, int slots, int heartbeat,
                            int64_t *id, struct buf *err);
/* The runner whose token hashes to token_hash, or NULL. */
json_t *store_runner_by_token(struct store *st, const char *token_hash);
/* A runner not seen for this long (and running nothing) is left out of the
 * list, and out of the count against YCI_MAX_RUNNERS: a machine gone for
 * good, or one of many short-lived runners. Its record stays for history. */
#define STORE_RUNNER_FORGET_MS (7LL * 24 * 3600 * 1000)
/* The runners, by id; all: also those forgotten (STORE_RUNNER_FORGET_MS). */
json_t *store_runner_list(struct store *st, bool all);
/*
 * A heartbeat: record client_info (may be NULL) and last_seen, and push the
 * lease of every job in jobs ([{"id", "attempt"}]) that is still this
 * runner's current attempt to now + lease_ms. Returns in *cancel
 * ([{"id","attempt"}]) the listed jobs the runner must stop: cancelled,
 * re-assigned, or unknown.
 */
int store_runner_heartbeat(struct store *st, int64_t runner_id, json_t *client_info,
                           json_t *jobs, int64_t lease_ms, json_t **cancel);

#endif
