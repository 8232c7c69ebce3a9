/*
 * server — starting and stopping the yci server (see server.h).
 *
 * Start order: data directory, secrets, store, log store, then the worker
 * threads (results, scheduler, observer), and the HTTP server last, so a
 * request never meets a half-built server. Stop order: the scheduler answers
 * its waiting claims (and refuses new ones) while the HTTP server still runs;
 * then the HTTP server stops; then the threads its handlers used.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/limits.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "server/internal.h"
#include "store/logstore.h"
#include "store/store.h"
#include "lib/banned.h"

/* The lease a runner with the default heartbeat (10 s) gets. After a restart
 * every running job keeps its lease for twice that, so runners have time to
 * reconnect before anything is re-queued. */
#define SERVER_DEFAULT_HEARTBEAT 10

json_t *runner_match_labels(json_t *labels, json_t *platform)
{
    json_t *m = json_is_object(labels) ? json_copy(labels) : json_object();
    const char *os = json_string_value(json_object_get(platform, "os"));
    const char *machine = json_string_value(json_object_get(platform, "machine"));
    if (os && *os && !json_object_get(m, "os")) {
        char *lower = xstrdup(os);
        for (char *p = lower; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        json_object_set_new(m, "os", json_string(lower));
        free(lower);
    }
    if (machine && *machine && !json_object_get(m, "arch"))
        json_object_set_new(m, "arch", json_string(machine));
    return m;
}

int64_t server_lease_grace_ms(void)
{
    return 2 * server_lease_ms(SERVER_DEFAULT_HEARTBEAT);
}

int64_t server_lease_ms(int heartbeat)
{
    int64_t ms = (int64_t)(heartbeat > 0 ? heartbeat : SERVER_DEFAULT_HEARTBEAT) * 3000;
    return ms < 3000 ? 3000 : ms;
}

char *server_mirror_path(const struct server *srv, const char *name)
{
    return xasprintf("%s/%s.git", srv->mirrors_dir, name);
}

/* Read the secret in path, or make one (0600) when there is none. *made tells
 * which. */
static int load_secret(const char *path, char **out, bool *made, struct buf *err)
{
    struct buf b = BUF_INIT;
    int rc = file_read(path, &b);
    if (rc == 0) {
        while (b.len > 0 &&
               (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r' || b.data[b.len - 1] == ' '))
            b.data[--b.len] = '\0';
        if (b.len < 16) {
            buf_setf(err, "%s holds no usable secret (too short); delete it to make a new one",
                     path);
            buf_release(&b);
            return -EINVAL;
        }
        *out = buf_detach(&b, NULL);
        *made = false;
        return 0;
    }
    buf_release(&b);
    if (rc != -ENOENT) {
        buf_setf(err, "cannot read %s: %s", path, strerror(-rc));
        return rc;
    }
    char *secret = random_token(32);
    char *text = xasprintf("%s\n", secret);
    rc = file_write_atomic(path, text, strlen(text), 0600);
    free(text);
    if (rc < 0) {
        buf_setf(err, "cannot write %s: %s", path, strerror(-rc));
        free(secret);
        return rc;
    }
    *out = secret;
    *made = true;
    return 0;
}

/* "http://host:port" for clients, from the listen address and the bound port. */
static char *make_url(const char *listen, uint16_t port)
{
    const char *colon = strrchr(listen, ':');
    size_t hlen = colon ? (size_t)(colon - listen) : strlen(listen);
    char *host = xstrndup(listen, hlen);
    if (hlen == 0 || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0) {
        free(host);
        host = xstrdup("127.0.0.1");
    } else if (strcmp(host, "[::]") == 0 || strcmp(host, "::") == 0) {
        free(host);
        host = xstrdup("[::1]");
    }
    char *url = xasprintf("http://%s:%u", host, (unsigned)port);
    free(host);
    return url;
}

/* The data directory, secrets, store and log store: what every use of the
 * data needs, without threads or a listener. */
static int server_open(const struct server_config *cfg_in, struct server **out, struct buf *err)
{
    struct server *srv = xcalloc(1, sizeof(*srv));
    srv->cfg = *cfg_in;
    if (!srv->cfg.listen)
        srv->cfg.listen = "127.0.0.1:8888";
    if (!srv->cfg.data_dir)
        srv->cfg.data_dir = "yci-data";
    if (srv->cfg.poll_interval <= 0)
        srv->cfg.poll_interval = 5;
    if (srv->cfg.job_timeout <= 0)
        srv->cfg.job_timeout = 3600;
    if (srv->cfg.max_log_bytes <= 0)
        srv->cfg.max_log_bytes = YCI_MAX_LOG_DEFAULT;
    if (srv->cfg.plan_timeout <= 0)
        srv->cfg.plan_timeout = YCI_PLAN_TIMEOUT;
    if (srv->cfg.max_jobs_per_build <= 0)
        srv->cfg.max_jobs_per_build = YCI_MAX_JOBS_PER_BUILD;
    if (srv->cfg.max_jobs_per_build > YCI_MAX_JOBS_PER_BUILD_CAP)
        srv->cfg.max_jobs_per_build = YCI_MAX_JOBS_PER_BUILD_CAP;
    srv->auth = auth_cache_new();

    char *path = NULL;
    int rc = mkdir_p(srv->cfg.data_dir, 0700);
    if (rc < 0) {
        buf_setf(err, "cannot create %s: %s", srv->cfg.data_dir, strerror(-rc));
        goto fail;
    }
    /* Absolute from here on: git and the jobs run in other directories. */
    srv->data_dir = realpath(srv->cfg.data_dir, NULL);
    if (!srv->data_dir) {
        rc = -errno;
        buf_setf(err, "cannot resolve %s: %s", srv->cfg.data_dir, strerror(-rc));
        goto fail;
    }
    srv->cfg.data_dir = srv->data_dir;
    srv->mirrors_dir = xasprintf("%s/mirrors", srv->data_dir);
    srv->results_dir = xasprintf("%s/test_results", srv->data_dir);
    const char *dirs[] = {srv->mirrors_dir, srv->results_dir};
    for (size_t i = 0; i < 2; i++) {
        rc = mkdir_p(dirs[i], 0755);
        if (rc < 0) {
            buf_setf(err, "cannot create %s: %s", dirs[i], strerror(-rc));
            goto fail;
        }
    }

    bool made = false;
    path = xasprintf("%s/admin-token", srv->data_dir);
    rc = load_secret(path, &srv->admin_token, &made, err);
    if (rc < 0)
        goto fail;
    free(path);
    path = xasprintf("%s/registration-secret", srv->data_dir);
    rc = load_secret(path, &srv->reg_secret, &made, err);
    if (rc < 0)
        goto fail;
    if (made && !srv->cfg.quiet_secrets)
        fprintf(stderr,
                "yci: a new runner registration secret was made (kept in %s):\n"
                "yci:     %s\n",
                path, srv->reg_secret);
    free(path);

    path = xasprintf("%s/yci.db", srv->data_dir);
    rc = store_open(path, &srv->store, err);
    if (rc < 0)
        goto fail;
    free(path);
    path = xasprintf("%s/logs", srv->data_dir);
    rc = logstore_open(path, &srv->logs, err);
    if (rc < 0)
        goto fail;
    free(path);
    *out = srv;
    return 0;

fail:
    free(path);
    server_free(srv);
    return rc < 0 ? rc : -EIO;
}

int server_start(const struct server_config *cfg_in, struct server **out, struct buf *err)
{
    struct server *srv = NULL;
    int rc = server_open(cfg_in, &srv, err);
    if (rc < 0)
        return rc;
    char *path = NULL;

    rc = store_leases_grace(srv->store, server_lease_grace_ms());
    if (rc < 0) {
        buf_setf(err, "cannot extend the leases of running jobs: %s", store_strerror(rc));
        goto fail;
    }

    rc = results_new(srv, &srv->results, err);
    if (rc < 0)
        goto fail;
    rc = sched_new(srv, &srv->sched, err);
    if (rc < 0)
        goto fail;
    rc = observer_new(srv, &srv->observer, err);
    if (rc < 0)
        goto fail;
    rc = follow_new(srv, &srv->follow, err);
    if (rc < 0)
        goto fail;
    store_on_change(srv->store, follow_changed, srv->follow);
    srv->pages = web_cache_new();

    struct http_server_config hc = {
        .listen = srv->cfg.listen,
        .threads = srv->cfg.threads,
        .max_body = 0,
        .body_limit = api_body_limit,
        .handler = api_handle,
        .ctx = srv,
    };
    rc = http_server_start(&hc, &srv->http, err);
    if (rc < 0)
        goto fail;
    srv->url = make_url(srv->cfg.listen, http_server_port(srv->http));
    if (srv->cfg.github_repos) {
        rc = notifier_new(srv, &srv->notifier, err);
        if (rc < 0)
            goto fail;
        /* The statuses' links are for people on other machines. */
        if ((!srv->cfg.http_root || !*srv->cfg.http_root) &&
            (strstr(srv->url, "//127.") || strstr(srv->url, "//[::1]") ||
             strstr(srv->url, "//localhost")))
            log_warn("HTTP_ROOT is not set: the commit statuses link to %s/jobs/ID, which only "
                     "this machine can open; set it to the URL people reach yci at",
                     srv->url);
    }
    log_info("yci server %s listening on %s, data in '%s'", YCI_VERSION, srv->url, srv->data_dir);
    *out = srv;
    return 0;

fail:
    free(path);
    server_free(srv);
    return rc < 0 ? rc : -EIO;
}

void server_free(struct server *srv)
{
    if (!srv)
        return;
    /* Answer the long-polls and refuse new ones, then stop the HTTP server
     * (its shutdown may still call the scheduler's cancel callback, so the
     * scheduler is freed after it), then the threads that handlers use. */
    sched_stop(srv->sched);
    http_server_free(srv->http);
    srv->http = NULL;
    if (srv->store)
        store_on_change(srv->store, NULL, NULL); /* the threads below still write */
    follow_free(srv->follow); /* after the HTTP server: it cancelled the waiters */
    srv->follow = NULL;
    web_cache_free(srv->pages);
    srv->pages = NULL;
    notifier_free(srv->notifier);
    srv->notifier = NULL;
    observer_free(srv->observer);
    srv->observer = NULL;
    sched_free(srv->sched);
    srv->sched = NULL;
    results_free(srv->results);
    srv->results = NULL;
    logstore_free(srv->logs);
    store_free(srv->store);
    auth_cache_free(srv->auth);
    free(srv->admin_token);
    free(srv->reg_secret);
    free(srv->url);
    free(srv->mirrors_dir);
    free(srv->results_dir);
    free(srv->data_dir);
    free(srv);
}

uint16_t server_port(const struct server *srv)
{
    return http_server_port(srv->http);
}

const char *server_url(const struct server *srv)
{
    return srv->url;
}

const char *server_admin_token(const struct server *srv)
{
    return srv->admin_token;
}

const char *server_registration_secret(const struct server *srv)
{
    return srv->reg_secret;
}

int server_github_pass(const struct server_config *cfg, struct buf *err)
{
    struct server *srv = NULL;
    struct server_config c = *cfg;
    c.quiet_secrets = true;
    int rc = server_open(&c, &srv, err);
    if (rc < 0)
        return rc;
    /* What the seed needed lockrun for: overlapping cron runs of the same
     * configuration. Other users' passes (other repositories, another API)
     * take another lock and run side by side. */
    char *key = xasprintf("%s\n%s", cfg->github.api_url ? cfg->github.api_url : "",
                          cfg->github_repos ? cfg->github_repos : "");
    char hash[65];
    auth_token_hash(key, hash);
    free(key);
    char *path = xasprintf("%s/github-pass-%.16s.lock", srv->data_dir, hash);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        buf_setf(err, "cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK) {
            log_info("another pass holds %s: nothing to do", path);
            rc = 0;
        } else {
            rc = -errno;
            buf_setf(err, "cannot lock %s: %s", path, strerror(errno));
        }
        goto out;
    }
    int failed = observer_once(srv);
    int left = notifier_flush(srv, time_mono_ms() + SERVER_PASS_STATUS_MS);
    if (left > 0)
        log_info("%d commit status%s left for the next pass", left, left == 1 ? "" : "es");
    rc = failed ? 1 : 0;
out:
    if (fd >= 0)
        close(fd); /* releases the lock */
    free(path);
    server_free(srv);
    return rc;
}
