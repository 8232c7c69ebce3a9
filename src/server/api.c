/*
 * api — the router and the handlers of docs/api.md.
 *
 * One table of routes (method, path pattern, token needed, handler). Routing
 * answers 404 for an unknown path, 405 (with Allow) for a known path with
 * another method, 401/403 for a missing, wrong or insufficient token, and
 * only then reads the body: a JSON body is checked for nesting depth before
 * jansson parses it, then for shape, field by field, with a 400 that names the
 * field. Every response body is JSON except logs, git's smart HTTP and the
 * two HTML pages (web.c).
 *
 * The runner calls (claim, log, finish, heartbeat) are the hot path: they
 * authenticate through the in-memory token cache (auth.c), touch the store
 * once or twice, and never run git.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "git/git.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "pipeline/pipeline.h"
#include "server/internal.h"
#include "server/pipeline.h"
#include "store/logstore.h"
#include "store/store.h"
#include "lib/banned.h"

enum need { NEED_NONE, NEED_ADMIN, NEED_REG, NEED_RUNNER };

#define MAX_SEGS 8

struct call {
    struct server *srv;
    struct http_request *req;
    const char *params[2];            /* the path segments matched by '*' */
    const struct auth_runner *runner; /* NEED_RUNNER routes */
    char segbuf[1024];
};

typedef void (*handler_fn)(struct call *c);

/* ---- responses ---------------------------------------------------------- */

/* Respond with v as JSON (consumes v). */
static void respond_json(struct http_request *req, int status, json_t *v)
{
    struct buf b = BUF_INIT;
    size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT);
    buf_grow(&b, n + 1);
    b.len = json_dumpb(v, b.data, n, JSON_COMPACT);
    b.data[b.len++] = '\n';
    b.data[b.len] = '\0';
    json_decref(v);
    http_respond_buf(req, status, "application/json", &b);
}

static void respond_store_error(struct http_request *req, int rc, const char *what,
                                const struct buf *err)
{
    if (rc == -ENOENT)
        http_respond_error(req, 404, "no such %s", what);
    else if (rc == -EINVAL)
        http_respond_error(req, 400, "%s", err && err->len ? err->data : "invalid request");
    else if (rc == -EEXIST)
        http_respond_error(req, 409, "%s", err && err->len ? err->data : "already exists");
    else {
        log_error("store error on %s %s: %s", http_req_method(req), http_req_path(req),
                  err && err->len ? err->data : store_strerror(rc));
        http_respond_error(req, 500, "internal error: %s",
                           err && err->len ? err->data : store_strerror(rc));
    }
}

/* Add "log_size" (of the current attempt) to a job object. */
static void add_log_size(struct server *srv, json_t *job)
{
    int64_t id = json_integer_value(json_object_get(job, "id"));
    int attempt = (int)json_integer_value(json_object_get(job, "attempt"));
    uint64_t size = 0;
    if (attempt > 0 && logstore_size(srv->logs, id, attempt, &size) < 0)
        size = 0;
    json_object_set_new(job, "log_size", json_integer((json_int_t)size));
}

static void add_log_sizes(struct server *srv, json_t *build)
{
    size_t i;
    json_t *job;
    json_array_foreach(json_object_get(build, "jobs"), i, job) add_log_size(srv, job);
}

/* ---- request parsing ---------------------------------------------------- */

/* Is the JSON text nested deeper than max? A scan, so that jansson never
 * recurses deeper than we allow. */
static bool json_too_deep(const char *s, size_t n, int max)
{
    int depth = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (ch == '\\')
                esc = true;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch == '[' || ch == '{') {
            if (++depth > max)
                return true;
        } else if (ch == ']' || ch == '}') {
            depth--;
        }
    }
    return false;
}

/* Parse the body as a JSON object. On failure the request is answered (400)
 * and NULL returned. An empty body is {} when empty_ok. */
static json_t *body_object(struct http_request *req, bool empty_ok)
{
    size_t len = 0;
    const char *body = http_req_body(req, &len);
    if (len == 0 && empty_ok)
        return json_object();
    if (json_too_deep(body, len, YCI_MAX_JSON_DEPTH)) {
        http_respond_error(req, 400, "invalid JSON: nested deeper than %d levels",
                           YCI_MAX_JSON_DEPTH);
        return NULL;
    }
    json_error_t jerr;
    json_t *v = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        http_respond_error(req, 400, "invalid JSON: %s (line %d, column %d, position %d)",
                           jerr.text, jerr.line, jerr.column, jerr.position);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        http_respond_error(req, 400, "the request body must be a JSON object");
        return NULL;
    }
    return v;
}

/* Field getters: false when the request was answered with a 400. A missing
 * or null optional field leaves *out alone. */
static bool field_string(struct http_request *req, json_t *o, const char *key, bool required,
                         const char **out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) {
            http_respond_error(req, 400, "missing field \"%s\"", key);
            return false;
        }
        return true;
    }
    if (!json_is_string(v)) {
        http_respond_error(req, 400, "field \"%s\" must be a string", key);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

static bool field_int(struct http_request *req, json_t *o, const char *key, bool required,
                      int64_t min, int64_t max, int64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) {
            http_respond_error(req, 400, "missing field \"%s\"", key);
            return false;
        }
        return true;
    }
    if (!json_is_integer(v)) {
        http_respond_error(req, 400, "field \"%s\" must be an integer", key);
        return false;
    }
    int64_t x = json_integer_value(v);
    if (x < min || x > max) {
        http_respond_error(req, 400, "field \"%s\" must be from %" PRId64 " to %" PRId64, key, min,
                           max);
        return false;
    }
    *out = x;
    return true;
}

static bool field_object(struct http_request *req, json_t *o, const char *key, json_t **out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_object(v)) {
        http_respond_error(req, 400, "field \"%s\" must be an object", key);
        return false;
    }
    *out = v;
    return true;
}

/* A {"key": "value"} object of labels within the limits. */
static bool check_labels(struct http_request *req, const char *field, json_t *labels)
{
    if (json_object_size(labels) > YCI_MAX_LABELS) {
        http_respond_error(req, 400, "field \"%s\" has more than %d labels", field, YCI_MAX_LABELS);
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach(labels, k, v)
    {
        if (!json_is_string(v)) {
            http_respond_error(req, 400, "field \"%s\": label \"%s\" must be a string", field, k);
            return false;
        }
        if (!*k || strlen(k) > YCI_MAX_LABEL_LEN || json_string_length(v) > YCI_MAX_LABEL_LEN) {
            http_respond_error(req, 400,
                               "field \"%s\": label keys must be 1 to %d characters and values "
                               "at most %d",
                               field, YCI_MAX_LABEL_LEN, YCI_MAX_LABEL_LEN);
            return false;
        }
    }
    return true;
}

/* A query argument as an integer; false after a 400. Absent: *out unchanged. */
static bool query_int(struct http_request *req, const char *name, int64_t min, int64_t max,
                      int64_t *out)
{
    const char *s = http_req_query(req, name);
    if (!s)
        return true;
    int64_t v;
    if (parse_int64(s, min, max, &v) < 0) {
        if (max == INT64_MAX || max == INT32_MAX)
            http_respond_error(req, 400,
                               "query argument \"%s\" must be an integer of at least %" PRId64,
                               name, min);
        else
            http_respond_error(
                req, 400, "query argument \"%s\" must be an integer from %" PRId64 " to %" PRId64,
                name, min, max);
        return false;
    }
    *out = v;
    return true;
}

/* The id in path parameter i; false after a 404. */
static bool param_id(struct call *c, int i, const char *what, int64_t *id)
{
    if (parse_int64(c->params[i], 1, INT64_MAX, id) < 0) {
        http_respond_error(c->req, 404, "no such %s", what);
        return false;
    }
    return true;
}

/* ---- health and repositories -------------------------------------------- */

static void h_health(struct call *c)
{
    respond_json(c->req, 200, json_pack("{s:b, s:s}", "ok", 1, "version", YCI_VERSION));
}

static void h_repos_list(struct call *c)
{
    json_t *list = store_repo_list(c->srv->store);
    respond_json(c->req, 200, list ? list : json_array());
}

/* The default name of a repository: the url's last path component without
 * ".git". NULL when it would not be a valid name. */
static char *name_from_url(const char *url)
{
    size_t n = strlen(url);
    while (n > 0 && (url[n - 1] == '/' || url[n - 1] == '\\'))
        n--;
    size_t start = n;
    while (start > 0 && url[start - 1] != '/' && url[start - 1] != ':' && url[start - 1] != '\\')
        start--;
    size_t len = n - start;
    if (len > 4 && memcmp(url + start + len - 4, ".git", 4) == 0)
        len -= 4;
    char *name = xstrndup(url + start, len);
    if (!name_valid(name)) {
        free(name);
        return NULL;
    }
    return name;
}

static void h_repos_add(struct call *c)
{
    json_t *body = body_object(c->req, false);
    if (!body)
        return;
    const char *url = NULL, *name = NULL;
    char *derived = NULL;
    json_t *repo = NULL;
    struct buf err = BUF_INIT;
    if (!field_string(c->req, body, "url", true, &url) ||
        !field_string(c->req, body, "name", false, &name))
        goto out;
    if (!*url || url[0] == '-' || strlen(url) > 4096) {
        http_respond_error(c->req, 400, "field \"url\" must be a path or url git can fetch");
        goto out;
    }
    for (const char *p = url; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            http_respond_error(c->req, 400, "field \"url\" has control characters");
            goto out;
        }
    }
    if (!name) {
        derived = name_from_url(url);
        if (!derived) {
            http_respond_error(c->req, 400,
                               "cannot make a repository name from \"%s\"; give one in \"name\"",
                               url);
            goto out;
        }
        name = derived;
    }
    if (!name_valid(name)) {
        http_respond_error(c->req, 400,
                           "field \"name\" must be 1 to %d of A-Z a-z 0-9 . _ - and not start "
                           "with . or -",
                           YCI_MAX_NAME_LEN);
        goto out;
    }
    int rc = store_repo_add(c->srv->store, name, url, &repo, &err);
    if (rc == -EEXIST) {
        http_respond_error(c->req, 409, "a repository named \"%s\" exists", name);
        goto out;
    }
    if (rc < 0) {
        respond_store_error(c->req, rc, "repository", &err);
        goto out;
    }
    int64_t id = json_integer_value(json_object_get(repo, "id"));
    log_info("repo '%s' (%" PRId64 ") added: '%s'", name, id, url);
    observer_request(c->srv->observer, id);
    respond_json(c->req, 201, repo);
    repo = NULL;
out:
    json_decref(repo);
    json_decref(body);
    free(derived);
    buf_release(&err);
}

static json_t *repo_by_param(struct call *c)
{
    const char *name = c->params[0];
    json_t *repo = name_valid(name) ? store_repo_get(c->srv->store, name) : NULL;
    if (!repo)
        http_respond_error(c->req, 404, "no repository \"%s\"", name_valid(name) ? name : "?");
    return repo;
}

static void h_repo_get(struct call *c)
{
    json_t *repo = repo_by_param(c);
    if (repo)
        respond_json(c->req, 200, repo);
}

static void h_repo_poll(struct call *c)
{
    json_t *repo = repo_by_param(c);
    if (!repo)
        return;
    observer_request(c->srv->observer, json_integer_value(json_object_get(repo, "id")));
    json_decref(repo);
    respond_json(c->req, 202, json_pack("{s:b}", "queued", 1));
}

/* ---- builds ------------------------------------------------------------- */

static void h_builds_list(struct call *c)
{
    json_t *filter = json_object();
    static const char *const strs[] = {"repo", "branch", "status"};
    for (size_t i = 0; i < 3; i++) {
        const char *v = http_req_query(c->req, strs[i]);
        if (v && *v)
            json_object_set_new(filter, strs[i], json_string(v));
    }
    int64_t before = 0, limit = 0;
    if (!query_int(c->req, "before", 1, INT64_MAX, &before) ||
        !query_int(c->req, "limit", 1, INT64_MAX, &limit)) {
        json_decref(filter);
        return;
    }
    if (before > 0)
        json_object_set_new(filter, "before", json_integer(before));
    if (limit > 0)
        json_object_set_new(filter, "limit",
                            json_integer(limit > YCI_MAX_LIST ? YCI_MAX_LIST : limit));
    json_t *list = store_build_list(c->srv->store, filter);
    json_decref(filter);
    respond_json(c->req, 200, list ? list : json_array());
}

/* Respond 201 with the build just created (or 500 if it vanished). */
static void respond_build(struct call *c, int status, int64_t id)
{
    json_t *build = store_build_get(c->srv->store, id);
    if (!build) {
        http_respond_error(c->req, 500, "build %" PRId64 " vanished", id);
        return;
    }
    add_log_sizes(c->srv, build);
    respond_json(c->req, status, build);
}

static bool branch_ok(const char *b)
{
    size_t n = strlen(b);
    if (n == 0 || n > 255 || b[0] == '-' || b[0] == '/' || strstr(b, ".."))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)b[i];
        if (ch < 0x21 || ch == 0x7f || ch == '~' || ch == '^' || ch == ':' || ch == '?' ||
            ch == '*' || ch == '[' || ch == '\\')
            return false;
    }
    return true;
}

static void build_from_branch(struct call *c, json_t *body)
{
    const char *repo_name = NULL, *branch = NULL;
    if (!field_string(c->req, body, "repo", true, &repo_name) ||
        !field_string(c->req, body, "branch", true, &branch))
        return;
    json_t *repo = name_valid(repo_name) ? store_repo_get(c->srv->store, repo_name) : NULL;
    if (!repo) {
        http_respond_error(c->req, 404, "no repository \"%s\"", repo_name);
        return;
    }
    if (!branch_ok(branch)) {
        json_decref(repo);
        http_respond_error(c->req, 400, "field \"branch\" is not a valid branch name");
        return;
    }
    int64_t repo_id = json_integer_value(json_object_get(repo, "id"));
    char *mirror = server_mirror_path(c->srv, repo_name);
    char *ref = xasprintf("refs/heads/%s", branch);
    char *head = xasprintf("%s/HEAD", mirror);
    json_t *refs = NULL, *jobs = NULL;
    struct git_reader *git = NULL;
    struct buf err = BUF_INIT, perr = BUF_INIT;
    struct stat st;
    if (stat(head, &st) < 0) {
        http_respond_error(c->req, 409,
                           "repository \"%s\" is not mirrored yet: try again after its first poll",
                           repo_name);
        goto out;
    }
    int rc = git_list_refs(mirror, ref, &refs, &err);
    if (rc < 0) {
        log_error("repo '%s': %s", repo_name, err.data);
        http_respond_error(c->req, 500, "%s", err.data);
        goto out;
    }
    const char *sha = json_string_value(json_object_get(refs, ref));
    if (!sha) {
        http_respond_error(c->req, 404, "no branch \"%s\" in repository \"%s\"", branch, repo_name);
        goto out;
    }
    if ((rc = git_reader_open(mirror, &git, &err)) < 0) {
        http_respond_error(c->req, 500, "%s", err.data);
        goto out;
    }
    rc = pipeline_for_commit(git, sha, ref, c->srv->cfg.max_jobs_per_build,
                             c->srv->cfg.plan_timeout, &jobs, NULL, NULL, &perr);
    if (rc < 0 && rc != -EINVAL) {
        log_error("repo '%s': reading the pipeline at %s: %s", repo_name, sha, perr.data);
        http_respond_error(c->req, 500, "%s", perr.data);
        goto out;
    }
    int64_t id = 0;
    rc = store_build_create(c->srv->store, repo_id, ref, sha, jobs, rc < 0 ? perr.data : NULL, &id,
                            &err);
    if (rc < 0) {
        respond_store_error(c->req, rc, "build", &err);
        goto out;
    }
    bool no_jobs = jobs && json_array_size(jobs) == 0;
    const char *why = perr.len ? perr.data : no_jobs ? PIPELINE_NO_JOBS : NULL;
    log_info("build %" PRId64 " created for '%s' %s at %s (asked for)%s%s", id, repo_name, ref, sha,
             why ? ": " : "", why ? why : "");
    if (no_jobs && store_event_add(c->srv->store, id, 0, PIPELINE_NO_JOBS) < 0)
        log_warn("build %" PRId64 ": recording its event failed, ignoring", id);
    observer_commit_info(c->srv, git, id, sha);
    if (jobs && !no_jobs)
        sched_kick(c->srv->sched);
    else
        results_build_done(c->srv->results, id);
    respond_build(c, 201, id);
out:
    git_reader_close(git);
    json_decref(repo);
    json_decref(refs);
    json_decref(jobs);
    free(mirror);
    free(ref);
    free(head);
    buf_release(&err);
    buf_release(&perr);
}

static void h_builds_create(struct call *c)
{
    json_t *body = body_object(c->req, false);
    if (!body)
        return;
    json_t *jobs = json_object_get(body, "jobs");
    if (!jobs || json_is_null(jobs)) {
        build_from_branch(c, body);
        json_decref(body);
        return;
    }
    struct buf err = BUF_INIT;
    if (!json_is_array(jobs)) {
        http_respond_error(c->req, 400, "field \"jobs\" must be an array");
        goto out;
    }
    if (json_object_get(body, "repo")) {
        http_respond_error(c->req, 400,
                           "give either \"jobs\" (no repository) or \"repo\" and \"branch\"");
        goto out;
    }
    size_t n = json_array_size(jobs);
    int max_jobs = c->srv->cfg.max_jobs_per_build;
    if (n == 0 || n > (size_t)max_jobs) {
        http_respond_error(c->req, 400, "field \"jobs\" must hold 1 to %d jobs", max_jobs);
        goto out;
    }
    /* The rules of .yci.yml and of a plan's jobs (unknown keys, lengths,
     * limits): nothing a pipeline could not say, nor the store's own kinds. */
    json_t *checked = NULL;
    if (pipeline_validate_jobs(jobs, max_jobs, &checked, &err) < 0) {
        http_respond_error(c->req, 400, "%s", err.data ? err.data : "invalid jobs");
        goto out;
    }
    int64_t id = 0;
    int rc = store_build_create(c->srv->store, 0, NULL, NULL, checked, NULL, &id, &err);
    json_decref(checked);
    if (rc < 0) {
        respond_store_error(c->req, rc, "build", &err);
        goto out;
    }
    log_info("build %" PRId64 " created with %zu job(s) (no repository)", id, n);
    sched_kick(c->srv->sched);
    respond_build(c, 201, id);
out:
    buf_release(&err);
    json_decref(body);
}

static void h_build_get(struct call *c)
{
    int64_t id;
    if (!param_id(c, 0, "build", &id))
        return;
    json_t *build = store_build_get(c->srv->store, id);
    if (!build) {
        http_respond_error(c->req, 404, "no build %" PRId64, id);
        return;
    }
    add_log_sizes(c->srv, build);
    queued_reasons(c->srv, json_object_get(build, "jobs"), NULL);
    respond_json(c->req, 200, build);
}

static void h_build_rebuild(struct call *c)
{
    int64_t id, new_id = 0;
    if (!param_id(c, 0, "build", &id))
        return;
    int rc = store_build_rebuild(c->srv->store, id, &new_id);
    if (rc < 0) {
        respond_store_error(c->req, rc, "build", NULL);
        return;
    }
    log_info("build %" PRId64 " created as a rebuild of build %" PRId64, new_id, id);
    sched_kick(c->srv->sched);
    respond_build(c, 201, new_id);
}

/* If the build has reached a final state, have its result file written. */
static void maybe_done(struct server *srv, int64_t build_id)
{
    json_t *b = store_build_get(srv->store, build_id);
    const char *s = json_string_value(json_object_get(b, "status"));
    if (s && strcmp(s, "queued") != 0 && strcmp(s, "running") != 0)
        results_build_done(srv->results, build_id);
    json_decref(b);
}

static void h_build_cancel(struct call *c)
{
    int64_t id;
    if (!param_id(c, 0, "build", &id))
        return;
    int n = store_build_cancel(c->srv->store, id);
    if (n < 0) {
        respond_store_error(c->req, n, "build", NULL);
        return;
    }
    log_info("build %" PRId64 " cancelled (%d job(s))", id, n);
    if (n > 0)
        maybe_done(c->srv, id);
    respond_json(c->req, 200, json_pack("{s:i}", "cancelled", n));
}

/* ---- jobs --------------------------------------------------------------- */

static void h_job_get(struct call *c)
{
    int64_t id;
    if (!param_id(c, 0, "job", &id))
        return;
    json_t *job = store_job_get(c->srv->store, id);
    if (!job) {
        http_respond_error(c->req, 404, "no job %" PRId64, id);
        return;
    }
    add_log_size(c->srv, job);
    json_t *one = json_pack("[O]", job);
    queued_reasons(c->srv, one, NULL);
    json_decref(one);
    respond_json(c->req, 200, job);
}

static void h_job_cancel(struct call *c)
{
    int64_t id;
    if (!param_id(c, 0, "job", &id))
        return;
    int rc = store_job_cancel(c->srv->store, id);
    if (rc < 0) {
        respond_store_error(c->req, rc, "job", NULL);
        return;
    }
    json_t *job = store_job_get(c->srv->store, id);
    if (!job) {
        http_respond_error(c->req, 404, "no job %" PRId64, id);
        return;
    }
    log_info("job %" PRId64 " cancelled (now %s)", id,
             json_string_value(json_object_get(job, "status")));
    maybe_done(c->srv, json_integer_value(json_object_get(job, "build_id")));
    add_log_size(c->srv, job);
    respond_json(c->req, 200, job);
}

/*
 * A single "Range: bytes=A-B" (or "A-", or "-N": the last N) against a file
 * of size bytes: 1 and [*from, *from + *len) when satisfiable, 0 when there
 * is no Range header (or one yci does not serve, such as several ranges:
 * the whole file then, as RFC 9110 allows), -1 when unsatisfiable.
 */
static int byte_range(const char *h, uint64_t size, uint64_t *from, uint64_t *len)
{
    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return 0;
    const char *spec = h + 6, *dash = strchr(spec, '-');
    if (!dash)
        return 0;
    char a[24] = "", b[24] = "";
    size_t la = (size_t)(dash - spec), lb = strlen(dash + 1);
    if (la >= sizeof a || lb >= sizeof b)
        return 0;
    memcpy(a, spec, la);
    memcpy(b, dash + 1, lb + 1);
    int64_t x = 0, y = 0;
    if (!la) { /* the last N bytes */
        if (parse_int64(b, 1, INT64_MAX, &y) < 0)
            return 0;
        if (size == 0)
            return -1;
        *from = (uint64_t)y >= size ? 0 : size - (uint64_t)y;
        *len = size - *from;
        return 1;
    }
    if (parse_int64(a, 0, INT64_MAX, &x) < 0 || (lb && parse_int64(b, 0, INT64_MAX, &y) < 0))
        return 0;
    if (lb && y < x)
        return 0;
    if ((uint64_t)x >= size)
        return -1;
    uint64_t end = lb && (uint64_t)y < size - 1 ? (uint64_t)y : size - 1;
    *from = (uint64_t)x;
    *len = end - (uint64_t)x + 1;
    return 1;
}

static void h_job_log_get(struct call *c)
{
    int64_t id;
    if (!param_id(c, 0, "job", &id))
        return;
    json_t *job = store_job_get(c->srv->store, id);
    if (!job) {
        http_respond_error(c->req, 404, "no job %" PRId64, id);
        return;
    }
    int64_t attempt = json_integer_value(json_object_get(job, "attempt"));
    int64_t offset = 0, limit = INT64_MAX, wait = 0;
    char status[32];
    snprintf(status, sizeof(status), "%s", json_string_value(json_object_get(job, "status")));
    json_decref(job);
    int64_t current_attempt = attempt;
    if (!query_int(c->req, "attempt", 1, INT32_MAX, &attempt) ||
        !query_int(c->req, "offset", 0, INT64_MAX, &offset) ||
        !query_int(c->req, "limit", 0, INT64_MAX, &limit) ||
        !query_int(c->req, "wait", 0, YCI_MAX_CLAIM_WAIT, &wait))
        return;
    bool current = attempt == current_attempt;
    http_add_header(c->req, "Accept-Ranges", "bytes");
    int64_t lines = 0;
    if (!query_int(c->req, "lines", 0, 1, &lines))
        return;
    if (lines && attempt > 0) {
        uint64_t before = 0;
        if (logstore_count_lines(c->srv->logs, id, (int)attempt, (uint64_t)offset, &before) < 0) {
            http_respond_error(c->req, 500, "cannot read the log");
            return;
        }
        char v[32];
        snprintf(v, sizeof v, "%" PRIu64, before);
        http_add_header(c->req, "X-Yci-Lines-Before", v);
    }
    const char *range_h = http_req_header(c->req, "Range");
    if (range_h) {
        int fd = -1;
        uint64_t size = 0, from = 0, rlen = 0;
        int rc = attempt > 0 ? logstore_open_read(c->srv->logs, id, (int)attempt, &fd, &size)
                             : -ENOENT;
        if (rc < 0 && rc != -ENOENT) {
            http_respond_error(c->req, 500, "cannot read the log: %s", strerror(-rc));
            return;
        }
        int range = byte_range(range_h, size, &from, &rlen);
        if (range != 0) {
            char cr[80];
            if (range < 0) {
                if (fd >= 0)
                    close(fd);
                snprintf(cr, sizeof cr, "bytes */%" PRIu64, size);
                http_add_header(c->req, "Content-Range", cr);
                http_respond_error(c->req, 416, "the range is past the log's %" PRIu64 " bytes",
                                   size);
                return;
            }
            snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, from,
                     from + rlen - 1, size);
            http_add_header(c->req, "Content-Range", cr);
            http_add_header(c->req, "Cache-Control", "no-cache");
            http_respond_fd(c->req, 206, "text/plain; charset=utf-8", fd, from, rlen);
            return;
        }
        if (fd >= 0)
            close(fd);
    }
    /* Nothing new yet, and the job may still print: wait for it. A follower
     * of an older attempt (attempt= given) is answered at once. */
    if (wait > 0 && current && strcmp(status, "queued") != 0 && strcmp(status, "running") != 0)
        wait = 0;
    if (wait > 0 && current) {
        uint64_t size = 0;
        if (attempt > 0)
            logstore_size(c->srv->logs, id, (int)attempt, &size); /* none yet: 0 */
        if ((uint64_t)offset >= size) {
            follow_wait(c->srv->follow, c->req, id, attempt, offset, limit, (int)wait);
            return;
        }
    }
    follow_respond(c->srv, c->req, id, attempt, offset, limit, status, current_attempt);
}

static void respond_stale(struct call *c, int64_t job_id)
{
    json_t *job = store_job_get(c->srv->store, job_id);
    if (!job) {
        http_respond_error(c->req, 404, "no job %" PRId64, job_id);
        return;
    }
    const char *st = json_string_value(json_object_get(job, "status"));
    json_t *attempt = json_object_get(job, "attempt");
    respond_json(
        c->req, 409,
        json_pack("{s:s, s:O}", "error",
                  st && strcmp(st, "cancelled") == 0 ? "job was cancelled" : "stale attempt",
                  "attempt", attempt));
    json_decref(job);
}

/* The most of a log the server stores, whatever a runner sends: twice the
 * cap (the stock runner keeps to the cap, its own lines aside). */
static uint64_t log_limit(const struct server *srv)
{
    return 2 * (uint64_t)srv->cfg.max_log_bytes;
}

/* Write a runner's bytes of a log at offset, as logstore_append() does (and
 * -ERANGE with the size when offset is past the end), up to log_limit().
 * Past that, the bytes are dropped, with a note at the limit, and *size
 * says they were taken: a runner that ignores the cap can neither fill the
 * server's disk nor be stuck sending them again. */
static int log_write_capped(struct server *srv, int64_t id, int attempt, uint64_t offset,
                            const char *p, size_t len, uint64_t *size)
{
    uint64_t limit = log_limit(srv), cur = 0;
    if (offset + len <= limit)
        return logstore_append(srv->logs, id, attempt, offset, p, len, size);
    int rc = offset < limit ? logstore_append(srv->logs, id, attempt, offset, p,
                                              (size_t)(limit - offset), &cur)
                            : logstore_size(srv->logs, id, attempt, &cur);
    if (rc < 0)
        return rc;
    if (cur < limit) { /* bytes before the limit are missing: those first */
        *size = cur;
        return -ERANGE;
    }
    char note[160];
    int n = snprintf(note, sizeof note,
                     "\n[yci: the server dropped the rest of this log: it keeps at most "
                     "%" PRIu64 " bytes, twice --max-log-size]\n",
                     limit);
    if (cur == limit)
        log_info("job %" PRId64 " attempt %d: its log reached %" PRIu64
                 " bytes; the runner's further bytes are dropped",
                 id, attempt, limit);
    rc = logstore_append(srv->logs, id, attempt, limit, note, (size_t)n, &cur);
    if (rc == 0)
        *size = offset + len;
    return rc;
}

static void h_job_log_post(struct call *c)
{
    int64_t id, attempt = -1, offset = -1;
    if (!param_id(c, 0, "job", &id))
        return;
    if (!query_int(c->req, "attempt", 1, INT32_MAX, &attempt) ||
        !query_int(c->req, "offset", 0, INT64_MAX, &offset))
        return;
    if (attempt < 0 || offset < 0) {
        http_respond_error(c->req, 400, "query arguments \"attempt\" and \"offset\" are needed");
        return;
    }
    int rc = store_job_check(c->srv->store, id, (int)attempt, c->runner->id);
    if (rc == -ESTALE) {
        respond_stale(c, id);
        return;
    }
    if (rc < 0) {
        respond_store_error(c->req, rc, "job", NULL);
        return;
    }
    size_t len = 0;
    const char *body = http_req_body(c->req, &len);
    uint64_t size = 0;
    rc = log_write_capped(c->srv, id, (int)attempt, (uint64_t)offset, body, len, &size);
    if (rc == -ERANGE) {
        respond_json(c->req, 409,
                     json_pack("{s:s, s:I}", "error", "offset past the end of the log", "size",
                               (json_int_t)size));
        return;
    }
    if (rc < 0) {
        log_error("job %" PRId64 ": writing its log failed: %s", id, strerror(-rc));
        http_respond_error(c->req, 500, "cannot write the log: %s", strerror(-rc));
        return;
    }
    char out[48];
    int n = snprintf(out, sizeof(out), "{\"size\":%" PRIu64 "}\n", size);
    http_respond(c->req, 200, "application/json", out, (size_t)n);
    if (len > 0)
        follow_notify(c->srv->follow, id);
}

/* Where log_gap_write() writes, for the server: a job attempt's log. */
struct log_at {
    struct logstore *ls;
    int64_t job;
    int attempt;
};

static int log_write_at(void *arg, uint64_t at, const char *p, size_t n)
{
    const struct log_at *to = arg;
    uint64_t size;
    return logstore_append(to->ls, to->job, to->attempt, at, p, n, &size);
}

/* A finish's "log": {"offset": N, "text": "..."}: the log's last bytes, sent
 * with the result instead of by a last POST .../log (one request less per
 * job). Appended by offset as that request would be, while (job, attempt)
 * is the runner's live attempt; otherwise (a retried finish whose first try
 * ended the job, or a stale one) left to the finish itself to answer. Bytes
 * lost before them become a note of their size. false: answered (400, 500). */
static bool finish_log(struct call *c, int64_t id, int attempt, json_t *log)
{
    json_t *off = json_object_get(log, "offset"), *text = json_object_get(log, "text");
    if (!json_is_object(log) || !json_is_integer(off) || json_integer_value(off) < 0 ||
        !json_is_string(text) || json_string_length(text) > YCI_MAX_LOG_CHUNK) {
        http_respond_error(c->req, 400,
                           "field \"log\" must be {\"offset\": N >= 0, \"text\": a string of at "
                           "most %d bytes}",
                           YCI_MAX_LOG_CHUNK);
        return false;
    }
    size_t len = json_string_length(text);
    if (len == 0 || store_job_check(c->srv->store, id, attempt, c->runner->id) < 0)
        return true;
    uint64_t offset = (uint64_t)json_integer_value(off), size = 0;
    int rc = log_write_capped(c->srv, id, attempt, offset, json_string_value(text), len, &size);
    if (rc == -ERANGE) {
        /* This server lost bytes before these (its machine crashed after it
         * answered their upload): a note of the same size stands for them,
         * so that offsets hold, then what came. */
        struct log_at to = {c->srv->logs, id, attempt};
        uint64_t limit = log_limit(c->srv);
        rc = log_gap_write(size, offset < limit ? offset : limit, log_write_at, &to);
        if (rc == 0)
            rc = log_write_capped(c->srv, id, attempt, offset, json_string_value(text), len,
                                  &size);
    }
    if (rc < 0) {
        log_error("job %" PRId64 ": writing its log failed: %s", id, strerror(-rc));
        http_respond_error(c->req, 500, "cannot write the log: %s", strerror(-rc));
        return false;
    }
    return true;
}

/* A runner's write about job id answered by the store with rc: when it
 * failed, respond (409 for a stale attempt) and return true. */
static bool job_write_failed(struct call *c, int64_t id, int rc)
{
    if (rc == -ESTALE)
        respond_stale(c, id);
    else if (rc < 0)
        respond_store_error(c->req, rc, "job", NULL);
    return rc < 0;
}

static void h_job_finish(struct call *c)
{
    int64_t id;
    if (!param_id(c, 0, "job", &id))
        return;
    json_t *body = body_object(c->req, false);
    if (!body)
        return;
    int64_t attempt = 0, exit_code = -1;
    const char *status = NULL, *error = NULL;
    /* Before the first goto out: released there. */
    struct buf perr = BUF_INIT, serr = BUF_INIT;
    bool has_exit = json_is_integer(json_object_get(body, "exit_code"));
    if (!field_int(c->req, body, "attempt", true, 1, INT32_MAX, &attempt) ||
        !field_string(c->req, body, "status", true, &status) ||
        !field_int(c->req, body, "exit_code", false, INT32_MIN, INT32_MAX, &exit_code) ||
        !field_string(c->req, body, "error", false, &error))
        goto out;
    json_t *log = json_object_get(body, "log");
    if (log && !json_is_null(log) && !finish_log(c, id, (int)attempt, log))
        goto out;
    if (strcmp(status, "passed") != 0 && strcmp(status, "failed") != 0 &&
        strcmp(status, "timed_out") != 0 && strcmp(status, "error") != 0) {
        http_respond_error(c->req, 400,
                           "field \"status\" must be one of passed, failed, timed_out, error");
        goto out;
    }
    /* A .yci.py plan job sends the jobs its generator yielded: they are
     * checked like a .yci.yml's, and a problem is the plan's (and so the
     * build's) error, never a request the runner would retry. */
    json_t *plan = json_object_get(body, "jobs"), *planned = NULL;
    if (plan && strcmp(status, "passed") == 0 &&
        pipeline_validate_jobs(plan, c->srv->cfg.max_jobs_per_build, &planned, &perr) < 0) {
        buf_setf(&serr, ".yci.py: %s", perr.data ? perr.data : "invalid jobs");
        status = "error";
        error = serr.data;
    }
    /* "claim": true: the runner's next job in the same answer (one request
     * less per job), and in the same transaction as the finish. */
    bool claim = json_is_true(json_object_get(body, "claim")) && sched_open(c->srv->sched);
    struct store_finish f = {.job_id = id, .attempt = (int)attempt, .runner_id = c->runner->id,
                             .status = status, .exit_code = has_exit ? (int)exit_code : -1,
                             .error = error, .plan_jobs = planned,
                             .claim_labels = claim ? c->runner->labels : NULL,
                             .lease_ms = c->runner->lease_ms};
    int rc = store_finish(c->srv->store, &f, &perr);
    if (rc == -EINVAL && planned) {
        buf_setf(&serr, ".yci.py: %s", perr.data ? perr.data : "invalid jobs");
        f.status = "error";
        f.error = serr.data;
        f.plan_jobs = NULL;
        rc = store_finish(c->srv->store, &f, NULL);
    }
    json_decref(planned);
    if (rc == -EINVAL) {
        http_respond_error(c->req, 400, "a plan job that passed must send \"jobs\"");
        goto out;
    }
    if (job_write_failed(c, id, rc))
        goto out;
    json_t *job = f.job;
    int64_t build_id = json_integer_value(json_object_get(job, "build_id"));
    if (has_exit)
        log_info("job %" PRId64 " attempt %" PRId64 " finished: %s, exit code %" PRId64
                 " (runner '%s')",
                 id, attempt, f.status, exit_code, c->runner->name);
    else
        log_info("job %" PRId64 " attempt %" PRId64 " finished: %s%s%s (runner '%s')", id, attempt,
                 f.status, f.error ? ": " : "", f.error ? f.error : "", c->runner->name);
    if (f.build_done)
        results_build_done(c->srv->results, build_id);
    sched_kick(c->srv->sched);
    follow_notify(c->srv->follow, id);
    add_log_size(c->srv, job);
    if (f.next) {
        sched_claimed(c->srv, c->runner, f.next);
        json_object_set_new(job, "next", f.next);
    }
    respond_json(c->req, 200, job);
out:
    buf_release(&perr);
    buf_release(&serr);
    json_decref(body);
}

/* A stopping runner gives its job back: queued again at once. */
static void h_job_release(struct call *c)
{
    int64_t id, attempt = 0;
    if (!param_id(c, 0, "job", &id))
        return;
    json_t *body = body_object(c->req, false);
    if (!body)
        return;
    if (!field_int(c->req, body, "attempt", true, 1, INT32_MAX, &attempt))
        goto out;
    int rc = store_job_release(c->srv->store, id, (int)attempt, c->runner->id, c->runner->name);
    if (job_write_failed(c, id, rc))
        goto out;
    log_info("job %" PRId64 " attempt %" PRId64 ": runner '%s' is stopping and gave it back; "
             "queued again",
             id, attempt, c->runner->name);
    sched_kick(c->srv->sched);
    follow_notify(c->srv->follow, id);
    json_t *job = store_job_get(c->srv->store, id);
    if (job) {
        add_log_size(c->srv, job);
        respond_json(c->req, 200, job);
    } else {
        http_respond_error(c->req, 404, "no job %" PRId64, id);
    }
out:
    json_decref(body);
}

/* ---- runners ------------------------------------------------------------ */

static void h_runners_list(struct call *c)
{
    int64_t all = 0;
    if (!query_int(c->req, "all", 0, 1, &all))
        return;
    json_t *list = store_runner_list(c->srv->store, all == 1);
    respond_json(c->req, 200, list ? list : json_array());
}

static void h_runner_register(struct call *c)
{
    json_t *body = body_object(c->req, false);
    if (!body)
        return;
    const char *name = NULL, *old = NULL;
    json_t *labels = NULL, *platform = NULL;
    int64_t slots = 1, heartbeat = 10;
    char *token = NULL;
    struct buf err = BUF_INIT;
    /* "token": a restarted runner's earlier one, to keep its record. */
    if (!field_string(c->req, body, "name", true, &name) ||
        !field_object(c->req, body, "labels", &labels) ||
        !field_object(c->req, body, "platform", &platform) ||
        !field_int(c->req, body, "slots", false, 1, 1024, &slots) ||
        !field_int(c->req, body, "heartbeat", false, 1, 3600, &heartbeat) ||
        !field_string(c->req, body, "token", false, &old))
        goto out;
    if (!name_valid(name)) {
        http_respond_error(c->req, 400,
                           "field \"name\" must be 1 to %d of A-Z a-z 0-9 . _ - and not start "
                           "with . or -",
                           YCI_MAX_NAME_LEN);
        goto out;
    }
    if (labels && !check_labels(c->req, "labels", labels))
        goto out;
    if (platform) {
        const char *k;
        json_t *v;
        json_object_foreach(platform, k, v)
        {
            if (!json_is_string(v) || json_string_length(v) > YCI_MAX_LABEL_LEN) {
                http_respond_error(c->req, 400,
                                   "field \"platform\": \"%s\" must be a string of "
                                   "at most %d characters",
                                   k, YCI_MAX_LABEL_LEN);
                goto out;
            }
        }
    }
    labels = labels ? json_incref(labels) : json_object();
    platform = platform ? json_incref(platform) : json_object();
    char hash[65];
    int64_t id = 0;
    int rc = -ENOENT;
    if (old && *old) {
        auth_token_hash(old, hash);
        rc = store_runner_reregister(c->srv->store, hash, name, labels, platform, (int)slots,
                                     (int)heartbeat, &id, &err);
        if (rc == 0) {
            token = xstrdup(old);
            auth_runner_forget(c->srv, hash);
        }
    }
    bool again = rc == 0;
    if (rc == -ENOENT) {
        token = random_token(32);
        auth_token_hash(token, hash);
        rc = store_runner_register(c->srv->store, name, labels, platform, (int)slots,
                                   (int)heartbeat, hash, &id, &err);
    }
    json_decref(labels);
    json_decref(platform);
    if (rc < 0) {
        if (rc == -ENOSPC || rc == -EDQUOT)
            http_respond_error(c->req, 403, "%s", err.len ? err.data : "too many runners");
        else
            respond_store_error(c->req, rc, "runner", &err);
        goto out;
    }
    int64_t lease_ms = server_lease_ms((int)heartbeat);
    log_info("runner '%s' (%" PRId64 ") registered%s from %s: %" PRId64 " slot(s), heartbeat %" PRId64
             " s",
             name, id, again ? " again" : "", http_req_peer(c->req), slots, heartbeat);
    if (again)
        sched_kick(c->srv->sched); /* its old jobs' leases ended */
    respond_json(c->req, again ? 200 : 201,
                 json_pack("{s:I, s:s, s:I}", "id", (json_int_t)id, "token", token, "lease_seconds",
                           (json_int_t)(lease_ms / 1000)));
out:
    free(token);
    buf_release(&err);
    json_decref(body);
}

static void h_runner_heartbeat(struct call *c)
{
    json_t *body = body_object(c->req, true);
    if (!body)
        return;
    json_t *info = NULL, *jobs = json_object_get(body, "jobs"), *cancel = NULL;
    if (!field_object(c->req, body, "client_info", &info))
        goto out;
    if (info && json_dumpb(info, NULL, 0, JSON_COMPACT) > YCI_MAX_CLIENT_INFO) {
        http_respond_error(c->req, 400, "field \"client_info\" is larger than %d bytes",
                           YCI_MAX_CLIENT_INFO);
        goto out;
    }
    if (jobs && !json_is_null(jobs)) {
        if (!json_is_array(jobs)) {
            http_respond_error(c->req, 400, "field \"jobs\" must be an array");
            goto out;
        }
        size_t i;
        json_t *j;
        json_array_foreach(jobs, i, j)
        {
            if (!json_is_object(j) || !json_is_integer(json_object_get(j, "id")) ||
                !json_is_integer(json_object_get(j, "attempt"))) {
                http_respond_error(c->req, 400,
                                   "jobs[%zu] must be an object with integer \"id\" and "
                                   "\"attempt\"",
                                   i);
                goto out;
            }
        }
    } else {
        jobs = NULL;
    }
    json_t *none = jobs ? NULL : json_array();
    int rc = store_runner_heartbeat(c->srv->store, c->runner->id, info, jobs ? jobs : none,
                                    c->runner->lease_ms, &cancel);
    json_decref(none);
    if (rc < 0) {
        respond_store_error(c->req, rc, "runner", NULL);
        goto out;
    }
    respond_json(c->req, 200, json_pack("{s:o}", "cancel", cancel ? cancel : json_array()));
out:
    json_decref(body);
}

static void h_runner_claim(struct call *c)
{
    int64_t wait = 30;
    if (!query_int(c->req, "wait", 0, INT64_MAX, &wait))
        return;
    if (wait > YCI_MAX_CLAIM_WAIT)
        wait = YCI_MAX_CLAIM_WAIT;
    size_t len = 0;
    http_req_body(c->req, &len);
    if (len > 0) {
        json_t *body = body_object(c->req, true);
        if (!body)
            return;
        json_decref(body);
    }
    sched_claim(c->srv->sched, c->req, c->runner, (int)wait);
}

/* ---- git smart HTTP ----------------------------------------------------- */

/* The repository served at /git/{name} ("name.git" too) or, by its GitHub
 * path, /git/{owner}/{name}.git: the repository owner.name or, as before
 * there was that path, name. NULL when there is none. *name_out is the
 * repository's name, or the first name tried when none (NULL if invalid). */
static json_t *git_repo_param(struct call *c, char **name_out)
{
    const char *last = c->params[1] ? c->params[1] : c->params[0];
    int n = (int)strlen(last);
    if (n > 4 && strcmp(last + n - 4, ".git") == 0)
        n -= 4;
    /* The names tried, in order; the second may be the first again. */
    char *cand[2] = {c->params[1] ? xasprintf("%s.%.*s", c->params[0], n, last) : xstrdup(last),
                     xstrndup(last, (size_t)n)};
    json_t *repo = NULL;
    int i = 0;
    for (; i < 2; i++)
        if ((i == 0 || strcmp(cand[0], cand[1]) != 0) && name_valid(cand[i]) &&
            (repo = store_repo_get(c->srv->store, cand[i])))
            break;
    int keep = repo ? i : 0;
    *name_out = repo || name_valid(cand[0]) ? cand[keep] : NULL;
    free(cand[1 - keep]);
    if (!*name_out)
        free(cand[keep]);
    return repo;
}

/* The mirror's path for a /git/ request; NULL after an error answered. */
static char *git_mirror_param(struct call *c)
{
    char *name = NULL;
    json_t *repo = git_repo_param(c, &name);
    char *mirror = NULL;
    if (repo && json_is_true(json_object_get(repo, "private"))) {
        /* A private GitHub repository's mirror: runners and admins only. */
        const char *token = auth_bearer(c->req);
        bool ok = token && (secret_equal(token, c->srv->admin_token) ||
                            auth_runner_lookup(c->srv, token));
        if (!ok) {
            json_decref(repo);
            free(name);
            http_add_header(c->req, "WWW-Authenticate", "Bearer realm=\"yci\"");
            http_respond_error(c->req, 401,
                               "a private repository: a runner token or the admin token is "
                               "needed (git -c http.extraHeader=\"Authorization: Bearer ...\")");
            return NULL;
        }
    }
    if (repo) {
        mirror = server_mirror_path(c->srv, name);
        char *head = xasprintf("%s/HEAD", mirror);
        struct stat st;
        if (stat(head, &st) < 0) {
            free(mirror);
            mirror = NULL;
        }
        free(head);
    }
    if (!mirror)
        http_respond_error(c->req, 404, "no repository \"%s\"", name ? name : "?");
    json_decref(repo);
    free(name);
    return mirror;
}

static void h_git_info_refs(struct call *c)
{
    const char *service = http_req_query(c->req, "service");
    if (!service || strcmp(service, "git-upload-pack") != 0) {
        http_respond_error(c->req, 403,
                           "only git's smart HTTP with service=git-upload-pack is served");
        return;
    }
    char *mirror = git_mirror_param(c);
    if (!mirror)
        return;
    struct buf out = BUF_INIT, err = BUF_INIT;
    int rc = git_upload_pack_advertise(mirror, &out, &err);
    if (rc < 0) {
        log_error("git: %s", err.data);
        http_respond_error(c->req, 500, "%s", err.data);
    } else {
        http_add_header(c->req, "Cache-Control", "no-cache");
        http_respond_buf(c->req, 200, "application/x-git-upload-pack-advertisement", &out);
    }
    buf_release(&out);
    buf_release(&err);
    free(mirror);
}

/* Inflate a gzip body into fd, at most max bytes; -E2BIG past it, -EINVAL on
 * bad data. */
static int gunzip_to_fd(const char *in, size_t len, int fd, size_t max)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return -ENOMEM;
    unsigned char out[65536];
    size_t total = 0;
    int rc = 0;
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)len;
    for (;;) {
        zs.next_out = out;
        zs.avail_out = sizeof(out);
        int z = inflate(&zs, Z_NO_FLUSH);
        if (z != Z_OK && z != Z_STREAM_END) {
            rc = z == Z_MEM_ERROR ? -ENOMEM : -EINVAL;
            break;
        }
        size_t got = sizeof(out) - zs.avail_out;
        total += got;
        if (total > max) {
            rc = -E2BIG;
            break;
        }
        rc = fd_write_all(fd, out, got);
        if (rc < 0 || z == Z_STREAM_END)
            break;
        if (got == 0 && zs.avail_in == 0) {
            rc = -EINVAL; /* truncated */
            break;
        }
    }
    inflateEnd(&zs);
    return rc;
}

static void h_git_upload_pack(struct call *c)
{
    char *mirror = git_mirror_param(c);
    if (!mirror)
        return;
    size_t len = 0;
    const char *body = http_req_body(c->req, &len);
    const char *enc = http_req_header(c->req, "Content-Encoding");
    struct buf err = BUF_INIT;
    int fd = memfd_create("yci-upload-pack", MFD_CLOEXEC);
    if (fd < 0) {
        http_respond_error(c->req, 500, "memfd_create: %s", strerror(errno));
        goto out;
    }
    int rc;
    if (enc && (strcasecmp(enc, "gzip") == 0 || strcasecmp(enc, "x-gzip") == 0)) {
        rc = gunzip_to_fd(body, len, fd, YCI_MAX_GIT_BODY);
        if (rc == -E2BIG) {
            http_respond_error(c->req, 413, "the request inflates to more than %d bytes",
                               YCI_MAX_GIT_BODY);
            goto out;
        }
        if (rc < 0) {
            http_respond_error(c->req, 400, "bad gzip body");
            goto out;
        }
    } else if (enc && *enc && strcasecmp(enc, "identity") != 0) {
        http_respond_error(c->req, 415, "unsupported Content-Encoding \"%s\"", enc);
        goto out;
    } else {
        rc = fd_write_all(fd, body, len);
        if (rc < 0) {
            http_respond_error(c->req, 500, "buffering the request: %s", strerror(-rc));
            goto out;
        }
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        http_respond_error(c->req, 500, "lseek: %s", strerror(errno));
        goto out;
    }
    int out_fd = -1;
    rc = git_upload_pack_start(mirror, fd, &out_fd, &err);
    if (rc < 0) {
        log_error("git: %s", err.data);
        http_respond_error(c->req, 500, "%s", err.data);
        goto out;
    }
    http_add_header(c->req, "Cache-Control", "no-cache");
    http_respond_pipe(c->req, 200, "application/x-git-upload-pack-result", out_fd);
out:
    if (fd >= 0)
        close(fd);
    buf_release(&err);
    free(mirror);
}

/* ---- HTML --------------------------------------------------------------- */

static void h_web_index(struct call *c)
{
    web_index(c->srv, c->req);
}

/* The id of a page's path (/builds/ID, /jobs/ID), or the not-found page. */
static bool page_id(struct call *c, int64_t *id)
{
    if (parse_int64(c->params[0], 1, INT64_MAX, id) == 0)
        return true;
    web_not_found(c->req);
    return false;
}

static void h_web_build(struct call *c)
{
    int64_t id;
    if (page_id(c, &id))
        web_build(c->srv, c->req, id);
}

static void h_web_job(struct call *c)
{
    int64_t id;
    if (page_id(c, &id))
        web_job(c->srv, c->req, id);
}

static void h_web_static(struct call *c)
{
    web_static(c->req, c->params[0]);
}

/* GET /api/changes?since=V&wait=S: see follow.c. */
static void h_changes(struct call *c)
{
    int64_t since = -1, wait = 0;
    if (!query_int(c->req, "since", 0, INT64_MAX, &since) ||
        !query_int(c->req, "wait", 0, YCI_MAX_CLAIM_WAIT, &wait))
        return;
    if (since < 0)
        wait = 0; /* no version yet: the current one, at once */
    follow_changes(c->srv->follow, c->req, (uint64_t)(since < 0 ? 0 : since), (int)wait);
}

static void h_web_runners(struct call *c)
{
    web_runners(c->srv, c->req);
}

/* GitHub's webhooks: signed with GITHUB_WEBHOOK_SECRET (hooks.c). */
static void h_hook_github(struct call *c)
{
    hooks_github(c->srv, c->req);
}

/* ---- routing ------------------------------------------------------------ */

struct route {
    const char *method;
    const char *pattern; /* segments after the leading '/'; "*" matches one */
    enum need need;
    handler_fn fn;
};

static const struct route routes[] = {
    {"GET", "api/health", NEED_NONE, h_health},
    {"POST", "hooks/github", NEED_NONE, h_hook_github},
    {"GET", "api/repos", NEED_NONE, h_repos_list},
    {"POST", "api/repos", NEED_ADMIN, h_repos_add},
    {"GET", "api/repos/*", NEED_NONE, h_repo_get},
    {"POST", "api/repos/*/poll", NEED_NONE, h_repo_poll},
    {"GET", "api/builds", NEED_NONE, h_builds_list},
    {"POST", "api/builds", NEED_ADMIN, h_builds_create},
    {"GET", "api/builds/*", NEED_NONE, h_build_get},
    {"POST", "api/builds/*/rebuild", NEED_ADMIN, h_build_rebuild},
    {"POST", "api/builds/*/cancel", NEED_ADMIN, h_build_cancel},
    {"GET", "api/jobs/*", NEED_NONE, h_job_get},
    {"POST", "api/jobs/*/cancel", NEED_ADMIN, h_job_cancel},
    {"GET", "api/jobs/*/log", NEED_NONE, h_job_log_get},
    {"POST", "api/jobs/*/log", NEED_RUNNER, h_job_log_post},
    {"POST", "api/jobs/*/finish", NEED_RUNNER, h_job_finish},
    {"POST", "api/jobs/*/release", NEED_RUNNER, h_job_release},
    {"GET", "api/runners", NEED_NONE, h_runners_list},
    {"POST", "api/runners/register", NEED_REG, h_runner_register},
    {"POST", "api/runners/heartbeat", NEED_RUNNER, h_runner_heartbeat},
    {"POST", "api/runners/claim", NEED_RUNNER, h_runner_claim},
    {"GET", "git/*/info/refs", NEED_NONE, h_git_info_refs},
    {"POST", "git/*/git-upload-pack", NEED_NONE, h_git_upload_pack},
    {"GET", "git/*/*/info/refs", NEED_NONE, h_git_info_refs},
    {"POST", "git/*/*/git-upload-pack", NEED_NONE, h_git_upload_pack},
    {"GET", "", NEED_NONE, h_web_index},
    {"GET", "builds/*", NEED_NONE, h_web_build},
    {"GET", "runners", NEED_NONE, h_web_runners},
    {"GET", "jobs/*", NEED_NONE, h_web_job},
    {"GET", "static/*", NEED_NONE, h_web_static},
    {"GET", "api/changes", NEED_NONE, h_changes},
};

/* Split path (after its leading '/') into at most MAX_SEGS segments in buf;
 * returns the count, or -1 when the path is too long, has too many or empty
 * segments. "/" is zero segments. */
static int split_path(const char *path, char *buf, size_t bufsize, char **segs)
{
    if (path[0] != '/')
        return -1;
    size_t n = strlen(path + 1);
    if (n >= bufsize)
        return -1;
    memcpy(buf, path + 1, n + 1);
    if (n == 0)
        return 0;
    int count = 0;
    char *p = buf;
    for (;;) {
        char *slash = strchr(p, '/');
        if (slash)
            *slash = '\0';
        if (!*p || count == MAX_SEGS)
            return -1;
        segs[count++] = p;
        if (!slash)
            break;
        p = slash + 1;
    }
    return count;
}

static bool match(const char *pattern, char **segs, int nsegs, const char **params)
{
    int i = 0, np = 0;
    const char *p = pattern;
    params[0] = params[1] = NULL;
    if (!*p)
        return nsegs == 0;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (i >= nsegs)
            return false;
        if (len == 1 && *p == '*') {
            if (np < 2)
                params[np++] = segs[i];
        } else if (strlen(segs[i]) != len || memcmp(segs[i], p, len) != 0) {
            return false;
        }
        i++;
        p += len;
        if (*p == '/')
            p++;
    }
    return i == nsegs;
}

static bool authorize(struct call *c, enum need need)
{
    if (need == NEED_NONE)
        return true;
    struct server *srv = c->srv;
    const char *token = auth_bearer(c->req);
    if (!token) {
        http_respond_error(c->req, 401, "missing token (Authorization: Bearer ...)");
        return false;
    }
    bool admin = secret_equal(token, srv->admin_token);
    if (need == NEED_ADMIN) {
        if (admin)
            return true;
        if (secret_equal(token, srv->reg_secret) || auth_runner_lookup(srv, token))
            http_respond_error(c->req, 403, "this call needs the admin token");
        else
            http_respond_error(c->req, 401, "bad token");
        return false;
    }
    if (need == NEED_REG) {
        if (admin || secret_equal(token, srv->reg_secret))
            return true;
        if (auth_runner_lookup(srv, token))
            http_respond_error(c->req, 403, "registration needs the registration secret");
        else
            http_respond_error(c->req, 401, "bad registration secret");
        return false;
    }
    c->runner = auth_runner_lookup(srv, token);
    if (c->runner)
        return true;
    if (admin || secret_equal(token, srv->reg_secret))
        http_respond_error(c->req, 403, "this call needs a runner token");
    else
        http_respond_error(c->req, 401, "bad runner token");
    return false;
}

void api_handle(struct http_request *req, void *ctx)
{
    struct call c = {.srv = ctx, .req = req};
    const char *method = http_req_method(req);
    const char *path = http_req_path(req);
    char *segs[MAX_SEGS];
    int nsegs = split_path(path ? path : "", c.segbuf, sizeof(c.segbuf), segs);
    if (nsegs < 0) {
        http_respond_error(req, 404, "no such route");
        return;
    }
    bool head = strcmp(method, "HEAD") == 0;
    /* /badge/REPO/BRANCH.svg: a branch name may hold slashes. */
    if (nsegs >= 3 && strcmp(segs[0], "badge") == 0 && (head || !strcmp(method, "GET"))) {
        const char *branch = path + 7 + strlen(segs[1]) + 1;
        size_t blen = strlen(branch);
        if (name_valid(segs[1]) && blen > 4 && strcmp(branch + blen - 4, ".svg") == 0) {
            char *b = xstrndup(branch, blen - 4);
            web_badge(c.srv, req, segs[1], b);
            free(b);
        } else {
            http_respond_error(req, 404, "a badge is /badge/REPO/BRANCH.svg");
        }
        return;
    }
    struct buf allow = BUF_INIT;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *r = &routes[i];
        if (!match(r->pattern, segs, nsegs, c.params))
            continue;
        if (strcmp(r->method, method) == 0 || (head && strcmp(r->method, "GET") == 0)) {
            buf_release(&allow);
            if (authorize(&c, r->need))
                r->fn(&c);
            return;
        }
        if (!strstr(allow.data ? allow.data : "", r->method))
            buf_addf(&allow, "%s%s", allow.len ? ", " : "", r->method);
    }
    if (allow.len) {
        http_add_header(req, "Allow", allow.data);
        http_respond_error(req, 405, "method %s not allowed here (allowed: %s)", method,
                           allow.data);
    } else {
        http_respond_error(req, 404, "no such route: %s", path);
    }
    buf_release(&allow);
}

size_t api_body_limit(const char *method, const char *path, void *ctx)
{
    (void)ctx;
    if (method && strcmp(method, "POST") == 0 && path) {
        size_t n = strlen(path);
        if (strncmp(path, "/api/jobs/", 10) == 0 && n > 4 && strcmp(path + n - 4, "/log") == 0)
            return YCI_MAX_LOG_CHUNK;
        /* GitHub sends webhook payloads of up to 25 MB. */
        if (strcmp(path, "/hooks/github") == 0)
            return YCI_MAX_WEBHOOK_BODY;
        /* A plan job's finish carries the jobs it generated. */
        if (strncmp(path, "/api/jobs/", 10) == 0 && n > 7 && strcmp(path + n - 7, "/finish") == 0)
            return YCI_MAX_PLAN_BODY;
        if (strncmp(path, "/git/", 5) == 0 && n > 16 &&
            strcmp(path + n - 16, "/git-upload-pack") == 0)
            return YCI_MAX_GIT_BODY;
    }
    return YCI_MAX_JSON_BODY;
}
