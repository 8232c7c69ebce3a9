/*
 * server — the yci server: HTTP API, observer, scheduler, git mirrors.
 *
 * server_start() opens (creating on first start) the data directory, the
 * store and the log store, starts the HTTP server, the observer thread and
 * the scheduler thread, and returns. Everything it serves is described in
 * docs/api.md. It can run alone (`yci server`) or beside a runner in the same
 * process (`yci up`).
 *
 * Data directory layout:
 *   <data>/yci.db                  the SQLite store
 *   <data>/admin-token             the admin token (0600), made on first start
 *   <data>/registration-secret     the runner registration secret (0600)
 *   <data>/mirrors/<repo>.git      bare mirrors of the watched repositories
 *   <data>/logs/<job/1000>/<job>.<attempt>.log   job logs (see logstore.h)
 *   <data>/test_results/<commit>   one result file per commit, as the seed
 */
#ifndef YCI_SERVER_SERVER_H
#define YCI_SERVER_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "github/github.h"
#include "lib/buf.h"

struct server;

struct server_config {
    const char *listen;    /* "host:port"; default "127.0.0.1:8888"; port 0: any */
    const char *data_dir;  /* default "yci-data" */
    int poll_interval;     /* seconds between polls of each repository; default 5 */
    int job_timeout;       /* seconds, for jobs that set none; default 3600 */
    unsigned threads;      /* HTTP threads; 0: 2 */
    bool quiet_secrets;    /* do not print a newly made registration secret */
    int max_jobs_per_build; /* after matrix expansion; 0: YCI_MAX_JOBS_PER_BUILD (256),
                               at most YCI_MAX_JOBS_PER_BUILD_CAP */
    int plan_timeout;       /* seconds a .yci.py plan job may run; 0: YCI_PLAN_TIMEOUT */
    /* GitHub (docs/github.md): the repositories to watch, "owner/repo ..."
     * (GITHUB_REPOSITORIES; NULL: none), and how to reach the API. */
    const char *github_repos;
    struct github_config github;
    const char *http_root; /* HTTP_ROOT: public root URL of the pages and logs; NULL: ours */
    const char *github_webhook_secret; /* GITHUB_WEBHOOK_SECRET; NULL: POST /hooks/github off */
    int64_t max_log_bytes; /* a job log's cap (head and tail kept); 0: YCI_MAX_LOG_DEFAULT */
};

/*
 * Seed 000's one-shot mode (`yci` run by cron with GITHUB_REPOSITORIES): one
 * pass under an exclusive lock (<data>/github-pass-HASH.lock, one per
 * GITHUB_API_URL and GITHUB_REPOSITORIES, so other users' passes run beside
 * it) — register the
 * repositories, update each mirror, list its open pull requests, queue a
 * build for each new head, deliver the commit statuses that are due (for at
 * most SERVER_PASS_STATUS_MS) — then return. A pass that finds the lock held
 * does nothing. Returns 0 when all went well, 1 when a repository failed
 * (logged), or -errno with err when the data directory cannot be used.
 */
#define SERVER_PASS_STATUS_MS 30000
int server_github_pass(const struct server_config *cfg, struct buf *err);

#define SERVER_CONFIG_INIT                                                                         \
    {NULL, NULL, 5, 3600, 0, false, 0, 0, NULL, {NULL, NULL, NULL, NULL}, NULL, NULL, 0}

/* Start serving; on failure *out is untouched and err says why. */
int server_start(const struct server_config *cfg, struct server **out, struct buf *err);
/* Stop every thread, close the store, free. NULL does nothing. */
void server_free(struct server *srv);

uint16_t server_port(const struct server *srv);
/* "http://127.0.0.1:<port>" (the listen address, with the bound port). */
const char *server_url(const struct server *srv);
const char *server_admin_token(const struct server *srv);
const char *server_registration_secret(const struct server *srv);

#endif
