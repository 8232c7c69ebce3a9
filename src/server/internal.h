/*
 * server/internal — what the parts of the server share, private to src/server/.
 *
 * struct server is owned by server.c. The other parts (api.c, sched.c,
 * observer.c, results.c, auth.c) reach the store, the log store and each
 * other through it. Every part is started before the HTTP server and stopped
 * after it (see server_free()), so a request handler may use any of them.
 */
#ifndef YCI_SERVER_INTERNAL_H
#define YCI_SERVER_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "git/git.h"
#include "http/server.h"
#include "lib/buf.h"
#include "server/server.h"

struct store;
struct logstore;
struct sched;
struct observer;
struct results;
struct notifier;
struct follow;
struct auth_cache;
struct web_cache;

struct server {
    struct server_config cfg;
    char *data_dir;
    char *mirrors_dir; /* <data>/mirrors */
    char *results_dir; /* <data>/test_results */
    char *url;
    char *admin_token;
    char *reg_secret;
    struct store *store;
    struct logstore *logs;
    struct auth_cache *auth;
    struct sched *sched;
    struct observer *observer;
    struct results *results;
    struct notifier *notifier; /* GitHub commit statuses; NULL without GitHub */
    struct follow *follow;     /* requests waiting for more of a log (follow.c) */
    struct web_cache *pages;   /* rendered pages (web.c) */
    struct http_server *http;
};

/* The bare mirror of a repository: <data>/mirrors/<name>.git (newly allocated).
 * name must have passed name_valid(). */
char *server_mirror_path(const struct server *srv, const char *name);

/* The default lease of a runner, in ms, for a heartbeat interval in seconds:
 * three intervals, at least 3 s. */
int64_t server_lease_ms(int heartbeat);
/* How far running jobs' leases are pushed when the server could not hear its
 * runners for a while (its start after a crash, a stall): long enough for
 * every runner to reach it again. */
int64_t server_lease_grace_ms(void);

/*
 * api.c — the HTTP request handler and the per-route body limits.
 */
void api_handle(struct http_request *req, void *ctx);
size_t api_body_limit(const char *method, const char *path, void *ctx);

/*
 * web.c — the dashboard's HTML pages.
 */
/* The cache of rendered pages (the overview, build pages); see web.c. Free it
 * after the HTTP server (its handlers use it); a response still sending a
 * page holds a reference of its own. NULL does nothing. */
struct web_cache *web_cache_new(void);
void web_cache_free(struct web_cache *c);
void web_index(struct server *srv, struct http_request *req);
void web_build(struct server *srv, struct http_request *req, int64_t build_id);
void web_not_found(struct http_request *req);
void web_runners(struct server *srv, struct http_request *req);
/* GET /jobs/{id}: the job and its log (the log itself is read by the page's
 * script through the API). */
void web_job(struct server *srv, struct http_request *req, int64_t job_id);
/* GET /static/{name}: the pages' script, style sheet and ANSI renderer,
 * embedded in the binary (web/, by scripts/embed). */
void web_static(struct http_request *req, const char *name);
/* Set "queued_reason" on each queued job of jobs (an array; build_jobs: the
 * whole build's, for needs; NULL: jobs itself). See queued.c. */
void queued_reasons(struct server *srv, json_t *jobs, json_t *build_jobs);
void web_badge(struct server *srv, struct http_request *req, const char *repo, const char *branch);

/*
 * auth.c — tokens.
 *
 * The runner cache remembers (token hash → runner id, labels, heartbeat)
 * so the hot runner calls (claim, log, finish) cost no store read. Runners
 * are never deleted or re-keyed, so entries never go stale.
 */
struct auth_runner {
    int64_t id;
    int heartbeat;
    int64_t lease_ms;
    json_t *labels; /* borrowed from the cache: valid until auth_cache_free */
    char *name;
};

struct auth_cache *auth_cache_new(void);
void auth_cache_free(struct auth_cache *c);
/* SHA-256 of token as 64 lowercase hex characters (out must hold 65). */
void auth_token_hash(const char *token, char out[65]);
/* The bearer token of the request, or NULL. */
const char *auth_bearer(struct http_request *req);
/* The runner a token belongs to (from the cache or the store), or NULL. */
const struct auth_runner *auth_runner_lookup(struct server *srv, const char *token);
/* The runner with this token hash registered again (new labels, heartbeat):
 * the next lookup reads its record anew. What was handed out stays valid. */
void auth_runner_forget(struct server *srv, const char *hash);
/* The labels a runner is matched by: its own, plus "os" (its platform's
 * kernel name in lower case: linux) and "arch" (its machine: x86_64) where
 * it did not set those itself. A new object. */
json_t *runner_match_labels(json_t *labels, json_t *platform);

/*
 * sched.c — long-poll claims and lease expiry.
 */
int sched_new(struct server *srv, struct sched **out, struct buf *err);
/* Answer every waiting claim with 204 and refuse new ones (503); join the thread. */
void sched_stop(struct sched *s);
void sched_free(struct sched *s);
/* Jobs may have become available: serve the waiting claims soon. Cheap. */
void sched_kick(struct sched *s);
/* Handle a claim for runner r: answer at once or suspend the request for up to
 * wait_s seconds. Always answers the request (now or later). */
void sched_claim(struct sched *s, struct http_request *req, const struct auth_runner *r,
                 int wait_s);
/* A job was claimed for runner r (store_job_claim, or store_finish for a
 * finish that asked for the next one): make job the claim response body,
 * and log the claim. */
void sched_claimed(struct server *srv, const struct auth_runner *r, json_t *job);
/* Are claims served (false once the server is stopping)? */
bool sched_open(struct sched *s);

/*
 * observer.c — watches repositories.
 */
int observer_new(struct server *srv, struct observer **out, struct buf *err);
void observer_free(struct observer *o);
/* Ask for a poll of one repository (repo id) now; requests coalesce. */
void observer_request(struct observer *o, int64_t repo_id);
/* Record the author and subject of the build's commit (read through git, a
 * reader of the mirror); a failure is logged, the build goes on without
 * them. */
void observer_commit_info(struct server *srv, struct git_reader *git, int64_t build_id,
                          const char *sha);
/* One pass over GITHUB_REPOSITORIES, in this thread: register them, poll
 * each once. Returns how many failed (each logged). */
int observer_once(struct server *srv);

/*
 * results.c — <data>/test_results/<commit>, written by a worker thread.
 */
void hooks_github(struct server *srv, struct http_request *req);

int follow_new(struct server *srv, struct follow **out, struct buf *err);
void follow_free(struct follow *f);
/* Suspend req until job's log grows past offset, the job ends, or wait_s. */
void follow_wait(struct follow *f, struct http_request *req, int64_t job, int64_t attempt,
                 int64_t offset, int64_t limit, int wait_s);
/* GET /api/changes: answer {"version"} once the store's version is not since,
 * or after wait_s. */
void follow_changes(struct follow *f, struct http_request *req, uint64_t since, int wait_s);
/* The store changed (its store_on_change callback; arg is the follow). */
void follow_changed(void *arg);
/* Job's log grew, or the job ended: answer its waiters. */
void follow_notify(struct follow *f, int64_t job);
/* The log of (job, attempt) from offset, at most limit bytes. */
void follow_respond(struct server *srv, struct http_request *req, int64_t id, int64_t attempt,
                    int64_t offset, int64_t limit, const char *status, int64_t current);

int notifier_new(struct server *srv, struct notifier **out, struct buf *err);
void notifier_free(struct notifier *n);
/* Deliver what is due, in this thread, until nothing is due, a rate limit
 * or deadline_ms (monotonic). Returns how many statuses are left. */
int notifier_flush(struct server *srv, int64_t deadline_ms);

int results_new(struct server *srv, struct results **out, struct buf *err);
/* Write what is queued, then stop. */
void results_free(struct results *r);
/* The build reached a final state: write its result file soon. */
void results_build_done(struct results *r, int64_t build_id);
/* Jobs were given up (lease expiries): write the result files of the builds in
 * state error that finished at or after since_ms (wall clock). */
void results_recent_errors(struct results *r, int64_t since_ms);

#endif
