/*
 * client — the runner side of the job protocol (include/yci/client.h).
 *
 * Requests go through src/http/client.h. An http_client belongs to one thread
 * at a time, so the client keeps a small pool of them: a request takes one
 * (keeping its connection alive for the next request) and gives it back.
 *
 * The run loop: one thread per slot (register if needed, claim, do_job,
 * finish, repeat) and one heartbeat thread. The jobs in hand sit in
 * c->in_hand[slot] under c->mu; the heartbeat reads them there, and a cancel
 * from the server is delivered to the job under the same lock, so a job is
 * never freed while its cancel callback runs.
 */
#include "yci/client.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "http/client.h"
#include "lib/buf.h"
#include "lib/limits.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "lib/banned.h"

#define POOL_MAX 16
#define BACKOFF_FIRST_MS 250
#define BACKOFF_MAX_MS 5000
#define REQUEST_TIMEOUT_MS 60000

struct yci_job_internal {
    json_t *root;
    const char **commands;
    char **env;
    char **labels;
    atomic_bool cancelled; /* stop asked: by the server, a 409, or yci_client_stop() */
    atomic_bool taken;     /* the job is no longer ours: do not report it */
};

struct worker {
    struct yci_client *c;
    int slot;
    pthread_t thread;
};

struct yci_client {
    /* configuration, immutable after new */
    char *server_url;
    char *secret;
    char *name;
    char **labels;
    size_t nlabels;
    int slots;
    int heartbeat;
    int claim_wait;
    char *os, *release, *machine;

    pthread_mutex_t mu;  /* everything below */
    pthread_cond_t cond; /* stop, push, registration and run state changes */
    char *token;
    int64_t runner_id;
    int lease_seconds;
    bool registered;
    bool registering;
    char *info; /* client_info JSON text */
    struct http_client *pool[POOL_MAX];
    int npool;

    /* run loop */
    const struct yci_handler *handler;
    struct yci_job **in_hand; /* [slots] */
    struct worker *workers;
    pthread_t heartbeat_thread;
    pthread_t bg_thread;
    bool bg_started;
    bool running; /* inside yci_client_run() */
    bool stop;
    atomic_int cancel_claims; /* set by stop: claims in flight give up at once */
    bool push;
    int run_rc;
    atomic_bool unreachable; /* the last request found no server (told server_state) */
};

/* ---- small helpers ---- */

static void set_err(struct yci_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_err(struct yci_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

static void free_strv(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static struct timespec deadline_in(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

/* Sleep ms unless the client stops first; true if it is stopping. */
static bool sleep_unless_stopped(struct yci_client *c, int64_t ms)
{
    struct timespec ts = deadline_in(ms);
    pthread_mutex_lock(&c->mu);
    while (!c->stop && pthread_cond_timedwait(&c->cond, &c->mu, &ts) != ETIMEDOUT)
        ;
    bool stop = c->stop;
    pthread_mutex_unlock(&c->mu);
    return stop;
}

/* Exponential backoff with +-25% jitter, so that runners reconnecting to a
 * restarted server do not arrive in lockstep. */
static int64_t backoff_next(int64_t *cur)
{
    static _Thread_local uint32_t seed;
    if (!seed)
        seed = (uint32_t)time_mono_ms() ^ (uint32_t)(uintptr_t)&seed;
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    int64_t base = *cur ? *cur : BACKOFF_FIRST_MS;
    *cur = base * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : base * 2;
    return base * 3 / 4 + (int64_t)(seed % (uint32_t)(base / 2 + 1));
}

bool yci_client_stopping(struct yci_client *c)
{
    pthread_mutex_lock(&c->mu);
    bool s = c->stop;
    pthread_mutex_unlock(&c->mu);
    return s;
}

/* ---- HTTP ---- */

char *yci_client_token(struct yci_client *c)
{
    pthread_mutex_lock(&c->mu);
    char *t = c->token && c->registered ? xstrdup(c->token) : NULL;
    pthread_mutex_unlock(&c->mu);
    return t;
}

static struct http_client *conn_get(struct yci_client *c, const char *token)
{
    struct http_client *h;
    pthread_mutex_lock(&c->mu);
    h = c->npool ? c->pool[--c->npool] : NULL;
    char *tok = token ? xstrdup(token) : (c->token ? xstrdup(c->token) : NULL);
    pthread_mutex_unlock(&c->mu);
    if (!h)
        h = http_client_new(c->server_url, tok);
    else
        http_client_set_token(h, tok);
    free(tok);
    return h;
}

static void conn_put(struct yci_client *c, struct http_client *h)
{
    pthread_mutex_lock(&c->mu);
    if (c->npool < POOL_MAX) {
        c->pool[c->npool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    http_client_free(h);
}

/* A request found the server (up) or did not (why): tell the handler's
 * server_state when that differs from the request before. */
static void server_state(struct yci_client *c, bool up, const char *why)
{
    if (atomic_load(&c->unreachable) != up)
        return; /* as before: every request that works comes here */
    pthread_mutex_lock(&c->mu);
    const struct yci_handler *h = c->handler;
    bool changed = h && h->server_state && atomic_load(&c->unreachable) == up;
    if (changed)
        atomic_store(&c->unreachable, !up);
    pthread_mutex_unlock(&c->mu);
    if (changed)
        h->server_state(c, up, up ? NULL : why, h->arg);
}

/* One request. token NULL: the runner token. 0 when an answer came. A
 * cancellable request (a claim) ends early with -ECANCELED once stop is asked;
 * the others (log, finish) are left to complete. */
static int request_ex(struct yci_client *c, const char *token, const char *method,
                      const char *path, const char *ctype, const void *body, size_t len,
                      long timeout_ms, bool cancellable, struct http_result *res,
                      struct yci_error *err)
{
    struct buf e = BUF_INIT;
    struct http_client *h = conn_get(c, token);
    http_client_set_cancel(h, cancellable ? &c->cancel_claims : NULL);
    int rc = http_client_request(h, method, path, ctype, body, len, timeout_ms, res, &e);
    if (rc < 0) {
        if (!e.len)
            buf_setf(&e, "%s %s%s: %s", method, c->server_url, path, strerror(-rc));
        set_err(err, "%s", e.data);
        if (rc != -ECANCELED)
            server_state(c, false, e.data);
        if (rc != -ECONNREFUSED && rc != -ETIMEDOUT && rc != -ECANCELED)
            rc = -EIO;
        /* A broken connection is not worth keeping. */
        http_client_free(h);
    } else {
        conn_put(c, h);
        if (res->status >= 502 && res->status <= 504) {
            buf_setf(&e, "%s %s%s: HTTP %ld", method, c->server_url, path, res->status);
            server_state(c, false, e.data);
        } else {
            server_state(c, true, NULL);
        }
    }
    buf_release(&e);
    return rc;
}

static int request(struct yci_client *c, const char *token, const char *method, const char *path,
                   const char *ctype, const void *body, size_t len, long timeout_ms,
                   struct http_result *res, struct yci_error *err)
{
    return request_ex(c, token, method, path, ctype, body, len, timeout_ms, false, res, err);
}

/* Map an unexpected status to an error code, with the server's message. */
static int status_error(const struct http_result *res, const char *what, struct yci_error *err)
{
    const char *msg = NULL;
    json_t *j = res->body.len ? json_loadb(res->body.data, res->body.len, 0, NULL) : NULL;
    if (json_is_object(j))
        msg = json_string_value(json_object_get(j, "error"));
    set_err(err, "%s: HTTP %ld%s%s", what, res->status, msg ? ": " : "", msg ? msg : "");
    json_decref(j);
    if (res->status == 401 || res->status == 403)
        return -EACCES;
    if (res->status == 404)
        return -ENOENT;
    if (res->status == 409)
        return -ESTALE;
    if (res->status >= 500)
        return -EAGAIN;
    return -EPROTO;
}

static json_t *parse_object(const struct http_result *res, const char *what, struct yci_error *err)
{
    json_error_t je;
    json_t *j = json_loadb(res->body.data ? res->body.data : "", res->body.len, 0, &je);
    if (!json_is_object(j)) {
        set_err(err, "%s: the server's answer is not a JSON object", what);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Serialise a request body (taking the reference); NULL when it could not
 * be built, e.g. a string that is not UTF-8. */
static char *dump_body(json_t *body, struct yci_error *err)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        set_err(err, "cannot encode the request (a string that is not UTF-8?)");
    return text;
}

/* ---- lifecycle ---- */

static bool label_valid(const char *l)
{
    const char *eq = strchr(l, '=');
    return eq && eq != l && strlen(l) <= 2 * YCI_MAX_LABEL_LEN + 1 &&
           (size_t)(eq - l) <= YCI_MAX_LABEL_LEN && strlen(eq + 1) <= YCI_MAX_LABEL_LEN;
}

int yci_client_new(const struct yci_client_config *cfg, struct yci_client **out,
                   struct yci_error *err)
{
    if (!cfg->server_url || !*cfg->server_url) {
        set_err(err, "no server URL");
        return -EINVAL;
    }
    if (cfg->nlabels > YCI_MAX_LABELS) {
        set_err(err, "too many labels (at most %d)", YCI_MAX_LABELS);
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->nlabels; i++) {
        if (!label_valid(cfg->labels[i])) {
            set_err(err, "bad label '%s': expected key=value (at most %d bytes each)",
                    cfg->labels[i], YCI_MAX_LABEL_LEN);
            return -EINVAL;
        }
        size_t klen = (size_t)(strchr(cfg->labels[i], '=') - cfg->labels[i]);
        for (size_t j = 0; j < i; j++)
            if (strncmp(cfg->labels[j], cfg->labels[i], klen + 1) == 0) {
                set_err(err, "label '%.*s' given twice", (int)klen, cfg->labels[i]);
                return -EINVAL;
            }
    }
    if (cfg->slots < 0 || cfg->heartbeat < 0 || cfg->claim_wait < 0) {
        set_err(err, "slots, heartbeat and claim_wait must not be negative");
        return -EINVAL;
    }

    struct yci_client *c = xcalloc(1, sizeof *c);
    size_t ulen = strlen(cfg->server_url);
    while (ulen > 1 && cfg->server_url[ulen - 1] == '/')
        ulen--;
    c->server_url = xstrndup(cfg->server_url, ulen);
    c->secret = cfg->registration_secret ? xstrdup(cfg->registration_secret) : NULL;
    c->token = cfg->token && *cfg->token ? xstrdup(cfg->token) : NULL;
    if (cfg->name && *cfg->name) {
        c->name = xstrdup(cfg->name);
    } else {
        char host[256] = "";
        if (gethostname(host, sizeof host - 1) < 0 || !*host)
            snprintf(host, sizeof host, "runner");
        c->name = xstrdup(host);
    }
    c->labels = xcalloc(cfg->nlabels + 1, sizeof *c->labels);
    for (size_t i = 0; i < cfg->nlabels; i++)
        c->labels[i] = xstrdup(cfg->labels[i]);
    c->nlabels = cfg->nlabels;
    c->slots = cfg->slots ? cfg->slots : 1;
    c->heartbeat = cfg->heartbeat ? cfg->heartbeat : 10;
    c->claim_wait = cfg->claim_wait ? cfg->claim_wait : 30;
    if (c->claim_wait > YCI_MAX_CLAIM_WAIT)
        c->claim_wait = YCI_MAX_CLAIM_WAIT;
    struct utsname u;
    bool have_uname = uname(&u) == 0;
    c->os = xstrdup(cfg->os ? cfg->os : have_uname ? u.sysname : "unknown");
    c->release = xstrdup(cfg->release ? cfg->release : have_uname ? u.release : "unknown");
    c->machine = xstrdup(cfg->machine ? cfg->machine : have_uname ? u.machine : "unknown");
    c->info = xstrdup("{}");
    c->in_hand = xcalloc((size_t)c->slots, sizeof *c->in_hand);

    pthread_mutex_init(&c->mu, NULL);
    cond_init_monotonic(&c->cond);
    *out = c;
    return 0;
}

void yci_client_free(struct yci_client *c)
{
    if (!c)
        return;
    yci_client_stop(c);
    for (int i = 0; i < c->npool; i++)
        http_client_free(c->pool[i]);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    free(c->server_url);
    free(c->secret);
    free(c->name);
    free_strv(c->labels, c->nlabels);
    free(c->os);
    free(c->release);
    free(c->machine);
    free(c->token);
    free(c->info);
    free(c->in_hand);
    free(c->workers);
    free(c);
}

/* ---- protocol calls ---- */

int yci_client_register(struct yci_client *c, struct yci_error *err)
{
    if (!c->secret) {
        set_err(err, "no registration secret");
        return -EACCES;
    }
    json_t *labels = json_object();
    for (size_t i = 0; i < c->nlabels; i++) {
        const char *eq = strchr(c->labels[i], '=');
        char *key = xstrndup(c->labels[i], (size_t)(eq - c->labels[i]));
        json_object_set_new(labels, key, json_string(eq + 1));
        free(key);
    }
    json_t *body = json_pack("{s:s, s:o, s:{s:s, s:s, s:s}, s:i, s:i}", "name", c->name, "labels",
                             labels, "platform", "os", c->os, "release", c->release, "machine",
                             c->machine, "slots", c->slots, "heartbeat", c->heartbeat);
    pthread_mutex_lock(&c->mu);
    if (c->token)
        json_object_set_new(body, "token", json_string(c->token));
    pthread_mutex_unlock(&c->mu);
    char *text = dump_body(body, err);
    if (!text)
        return -EINVAL;

    struct http_result res = HTTP_RESULT_INIT;
    int rc = request(c, c->secret, "POST", "/api/runners/register", "application/json", text,
                     strlen(text), REQUEST_TIMEOUT_MS, &res, err);
    free(text);
    if (rc < 0)
        goto out;
    if (res.status != 201 && res.status != 200) {
        rc = status_error(&res, "register", err);
        if (rc == -ESTALE)
            rc = -EPROTO; /* 409 means nothing here (a name clash?): not retryable */
        goto out;
    }
    json_t *j = parse_object(&res, "register", err);
    const char *token = j ? json_string_value(json_object_get(j, "token")) : NULL;
    json_t *id = j ? json_object_get(j, "id") : NULL;
    if (!token || !json_is_integer(id)) {
        if (j)
            set_err(err, "register: the answer lacks id or token");
        json_decref(j);
        rc = -EPROTO;
        goto out;
    }
    pthread_mutex_lock(&c->mu);
    free(c->token);
    c->token = xstrdup(token);
    c->runner_id = json_integer_value(id);
    c->lease_seconds = (int)json_integer_value(json_object_get(j, "lease_seconds"));
    c->registered = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    json_decref(j);
out:
    http_result_release(&res);
    return rc;
}

int64_t yci_client_runner_id(struct yci_client *c)
{
    pthread_mutex_lock(&c->mu);
    int64_t id = c->runner_id;
    pthread_mutex_unlock(&c->mu);
    return id;
}

int yci_client_lease_seconds(struct yci_client *c)
{
    pthread_mutex_lock(&c->mu);
    int s = c->lease_seconds;
    pthread_mutex_unlock(&c->mu);
    return s;
}

static int parse_refs(json_t *arr, struct yci_job_ref **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return 0;
    struct yci_job_ref *refs = xcalloc(json_array_size(arr), sizeof *refs);
    size_t k = 0, i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        json_t *id = json_object_get(v, "id"), *at = json_object_get(v, "attempt");
        if (!json_is_integer(id))
            continue;
        refs[k].id = json_integer_value(id);
        refs[k].attempt = json_is_integer(at) ? (int)json_integer_value(at) : 0;
        k++;
    }
    *out = refs;
    *n = k;
    return 0;
}

int yci_client_heartbeat(struct yci_client *c, const char *client_info,
                         const struct yci_job_ref *jobs, size_t njobs, struct yci_job_ref **cancel,
                         size_t *ncancel, struct yci_error *err)
{
    json_t *info = client_info ? json_loads(client_info, 0, NULL) : json_object();
    if (!json_is_object(info)) {
        json_decref(info);
        set_err(err, "client_info is not a JSON object");
        return -EINVAL;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < njobs; i++)
        json_array_append_new(
            arr, json_pack("{s:I, s:i}", "id", (json_int_t)jobs[i].id, "attempt", jobs[i].attempt));
    char *text = dump_body(json_pack("{s:o, s:o}", "client_info", info, "jobs", arr), err);
    if (!text)
        return -EINVAL;
    if (strlen(text) > YCI_MAX_JSON_BODY) {
        free(text);
        set_err(err, "heartbeat too large");
        return -EINVAL;
    }

    struct http_result res = HTTP_RESULT_INIT;
    int rc = request(c, NULL, "POST", "/api/runners/heartbeat", "application/json", text,
                     strlen(text), REQUEST_TIMEOUT_MS, &res, err);
    free(text);
    if (rc < 0)
        goto out;
    if (res.status != 200) {
        rc = status_error(&res, "heartbeat", err);
        goto out;
    }
    json_t *j = parse_object(&res, "heartbeat", err);
    if (!j) {
        rc = -EPROTO;
        goto out;
    }
    struct yci_job_ref *refs;
    size_t n;
    parse_refs(json_object_get(j, "cancel"), &refs, &n);
    json_decref(j);
    if (cancel) {
        *cancel = refs;
        *ncancel = n;
    } else {
        free(refs);
    }
out:
    http_result_release(&res);
    return rc;
}

static const char *opt_string(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* {"k": "v"} -> "k=v" strings; non-string values in their JSON form. */
static char **kv_strings(json_t *obj, size_t *n)
{
    *n = 0;
    char **v = xcalloc(json_is_object(obj) ? json_object_size(obj) + 1 : 1, sizeof *v);
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        if (json_is_string(val)) {
            v[(*n)++] = xasprintf("%s=%s", key, json_string_value(val));
        } else if (!json_is_null(val)) {
            char *t = json_dumps(val, JSON_ENCODE_ANY | JSON_COMPACT);
            v[(*n)++] = xasprintf("%s=%s", key, t ? t : "");
            free(t);
        }
    }
    return v;
}

static struct yci_job *job_from_json(json_t *j, const char *text, struct yci_error *err)
{
    json_t *id = json_object_get(j, "id"), *attempt = json_object_get(j, "attempt");
    json_t *cmds = json_object_get(j, "commands");
    if (!json_is_integer(id) || !json_is_integer(attempt) ||
        (cmds && !json_is_array(cmds) && !json_is_null(cmds))) {
        set_err(err, "claim: the job lacks id, attempt or commands");
        return NULL;
    }
    struct yci_job *job = xcalloc(1, sizeof *job);
    struct yci_job_internal *in = xcalloc(1, sizeof *in);
    job->internal = in;
    in->root = json_incref(j);
    job->id = json_integer_value(id);
    job->attempt = (int)json_integer_value(attempt);
    job->build_id = json_integer_value(json_object_get(j, "build_id"));
    job->slot = -1;
    job->name = opt_string(j, "name") ? opt_string(j, "name") : "";
    job->repo = opt_string(j, "repo");
    job->fetch_url = opt_string(j, "fetch_url");
    job->commit = opt_string(j, "commit");
    job->ref = opt_string(j, "ref");
    size_t nc = json_array_size(cmds), k = 0, i;
    in->commands = xcalloc(nc + 1, sizeof *in->commands);
    json_t *v;
    json_array_foreach(cmds, i, v)
    {
        if (json_is_string(v))
            in->commands[k++] = json_string_value(v);
    }
    job->commands = in->commands;
    job->ncommands = k;
    in->env = kv_strings(json_object_get(j, "env"), &job->nenv);
    job->env = (const char *const *)in->env;
    in->labels = kv_strings(json_object_get(j, "labels"), &job->nlabels);
    job->labels = (const char *const *)in->labels;
    json_t *t = json_object_get(j, "timeout");
    job->timeout =
        json_is_integer(t) && json_integer_value(t) > 0 && json_integer_value(t) < INT32_MAX
            ? (int)json_integer_value(t)
            : 0;
    job->plan = json_is_string(json_object_get(j, "kind")) &&
                strcmp(opt_string(j, "kind"), "plan") == 0;
    job->submodules = json_is_true(json_object_get(j, "submodules"));
    job->json = text;
    return job;
}

void yci_job_free(struct yci_job *job)
{
    if (!job)
        return;
    struct yci_job_internal *in = job->internal;
    free_strv(in->env, job->nenv);
    free_strv(in->labels, job->nlabels);
    free(in->commands);
    free((char *)job->json);
    json_decref(in->root);
    free(in);
    free(job);
}

int yci_client_claim(struct yci_client *c, int wait_seconds, struct yci_job **out,
                     struct yci_error *err)
{
    if (wait_seconds < 0)
        wait_seconds = 0;
    if (wait_seconds > YCI_MAX_CLAIM_WAIT)
        wait_seconds = YCI_MAX_CLAIM_WAIT;
    char path[64];
    snprintf(path, sizeof path, "/api/runners/claim?wait=%d", wait_seconds);
    struct http_result res = HTTP_RESULT_INIT;
    int rc = request_ex(c, NULL, "POST", path, "application/json", "{}", 2,
                        (wait_seconds + 15) * 1000L, true, &res, err);
    if (rc < 0)
        goto out;
    if (res.status == 204) {
        rc = 0;
        goto out;
    }
    if (res.status != 200) {
        rc = status_error(&res, "claim", err);
        goto out;
    }
    json_t *j = parse_object(&res, "claim", err);
    struct yci_job *job = j ? job_from_json(j, NULL, err) : NULL;
    json_decref(j);
    if (!job) {
        rc = -EPROTO;
        goto out;
    }
    job->json = buf_detach(&res.body, NULL);
    *out = job;
    rc = 1;
out:
    http_result_release(&res);
    return rc;
}

int yci_client_log(struct yci_client *c, int64_t job_id, int attempt, uint64_t offset,
                   const void *data, size_t len, uint64_t *size, struct yci_error *err)
{
    if (len > YCI_MAX_LOG_CHUNK) {
        set_err(err, "log chunk of %zu bytes is over the limit", len);
        return -EINVAL;
    }
    char path[128];
    snprintf(path, sizeof path, "/api/jobs/%" PRId64 "/log?attempt=%d&offset=%" PRIu64, job_id,
             attempt, offset);
    struct http_result res = HTTP_RESULT_INIT;
    int rc = request(c, NULL, "POST", path, "application/octet-stream", data, len,
                     REQUEST_TIMEOUT_MS, &res, err);
    if (rc < 0)
        goto out;
    json_t *j = NULL;
    if (res.status == 200 || res.status == 409)
        j = json_loadb(res.body.data ? res.body.data : "", res.body.len, 0, NULL);
    json_t *sz = json_object_get(j, "size");
    if (res.status == 200 && json_is_integer(sz) && json_integer_value(sz) >= 0) {
        if (size)
            *size = (uint64_t)json_integer_value(sz);
    } else if (res.status == 409 && json_is_integer(sz) && json_integer_value(sz) >= 0) {
        if (size)
            *size = (uint64_t)json_integer_value(sz);
        set_err(err, "log of job %" PRId64 ": offset %" PRIu64 " past the end (%" PRId64 ")",
                job_id, offset, (int64_t)json_integer_value(sz));
        rc = -ERANGE;
    } else if (res.status == 200) {
        set_err(err, "log: the answer lacks size");
        rc = -EPROTO;
    } else {
        rc = status_error(&res, "log", err);
    }
    json_decref(j);
out:
    http_result_release(&res);
    return rc;
}

static const char *status_name(enum yci_status s)
{
    switch (s) {
    case YCI_PASSED:
        return "passed";
    case YCI_FAILED:
        return "failed";
    case YCI_TIMED_OUT:
        return "timed_out";
    default:
        return "error";
    }
}

/* Where log_gap_write() writes, for the library: a job attempt's log on the
 * server. */
struct log_at {
    struct yci_client *c;
    int64_t job;
    int attempt;
    struct yci_error *err;
};

static int log_write_at(void *arg, uint64_t at, const char *p, size_t n)
{
    const struct log_at *to = arg;
    return yci_client_log(to->c, to->job, to->attempt, at, p, n, NULL, to->err);
}

/* A result's log bytes that cannot go in its JSON (not UTF-8): uploaded by
 * offset before it. Bytes the server lost before them (-ERANGE: it has
 * less) become a note of their size, as the server does with a finish's. */
static int upload_log(struct yci_client *c, int64_t job_id, int attempt, uint64_t offset,
                      const char *data, size_t len, struct yci_error *err)
{
    while (len > 0) {
        size_t n = len > YCI_MAX_LOG_CHUNK ? YCI_MAX_LOG_CHUNK : len;
        uint64_t size = 0;
        int rc = yci_client_log(c, job_id, attempt, offset, data, n, &size, err);
        if (rc == -ERANGE && size < offset) {
            struct log_at to = {c, job_id, attempt, err};
            rc = log_gap_write(size, offset, log_write_at, &to);
            if (rc == 0)
                continue;
        }
        if (rc < 0)
            return rc;
        offset += n;
        data += n;
        len -= n;
    }
    return 0;
}

int yci_client_finish(struct yci_client *c, int64_t job_id, int attempt, const struct yci_result *r,
                      struct yci_error *err)
{
    return yci_client_finish_next(c, job_id, attempt, r, NULL, err);
}

int yci_client_finish_next(struct yci_client *c, int64_t job_id, int attempt,
                           const struct yci_result *r, struct yci_job **next,
                           struct yci_error *err)
{
    if (next)
        *next = NULL;
    if (r->status == YCI_ABANDONED) {
        set_err(err, "an abandoned job is not finished");
        return -EINVAL;
    }
    json_t *body = json_pack("{s:i, s:s}", "attempt", attempt, "status", status_name(r->status));
    json_object_set_new(body, "exit_code",
                        r->exit_code >= 0 ? json_integer(r->exit_code) : json_null());
    json_object_set_new(body, "error", r->error ? json_string(r->error) : json_null());
    if (r->error && !json_is_string(json_object_get(body, "error")))
        json_object_set_new(body, "error", json_string("(error message not UTF-8)"));
    if (r->plan_jobs) {
        json_error_t je;
        json_t *jobs = json_loads(r->plan_jobs, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_array(jobs)) {
            json_decref(jobs);
            set_err(err, "the plan's jobs are not a JSON array: %s", je.text);
            json_decref(body);
            return -EINVAL;
        }
        json_object_set_new(body, "jobs", jobs);
    }
    if (next)
        json_object_set_new(body, "claim", json_true());
    if (r->log_len > 0) {
        /* As a JSON string when it is one: UTF-8 without NUL (the server's
         * parser refuses \u0000). */
        json_t *t = r->log_len <= YCI_MAX_LOG_CHUNK && !memchr(r->log, '\0', r->log_len)
                        ? json_stringn(r->log, r->log_len)
                        : NULL;
        if (t) {
            json_object_set_new(body, "log",
                                json_pack("{s:I, s:o}", "offset", (json_int_t)r->log_offset, "text", t));
        } else {
            int rc = upload_log(c, job_id, attempt, r->log_offset, r->log, r->log_len, err);
            if (rc < 0) {
                json_decref(body);
                return rc;
            }
        }
    }
    char *text = dump_body(body, err);
    if (!text)
        return -EINVAL;
    char path[96];
    snprintf(path, sizeof path, "/api/jobs/%" PRId64 "/finish", job_id);
    struct http_result res = HTTP_RESULT_INIT;
    int rc = request(c, NULL, "POST", path, "application/json", text, strlen(text),
                     REQUEST_TIMEOUT_MS, &res, err);
    free(text);
    if (rc == 0 && res.status != 200)
        rc = status_error(&res, "finish", err);
    if (rc == 0 && next) {
        /* The job in "next", if any; a bad one is dropped (its lease ends). */
        json_t *j = json_loadb(res.body.data ? res.body.data : "", res.body.len, 0, NULL);
        json_t *nj = json_object_get(j, "next");
        struct yci_error ignored;
        if (json_is_object(nj) && (*next = job_from_json(nj, NULL, &ignored)))
            (*next)->json = json_dumps(nj, JSON_COMPACT);
        json_decref(j);
    }
    http_result_release(&res);
    return rc;
}

int yci_client_release(struct yci_client *c, int64_t job_id, int attempt, struct yci_error *err)
{
    char path[96], text[48];
    snprintf(path, sizeof path, "/api/jobs/%" PRId64 "/release", job_id);
    snprintf(text, sizeof text, "{\"attempt\": %d}", attempt);
    struct http_result res = HTTP_RESULT_INIT;
    int rc = request(c, NULL, "POST", path, "application/json", text, strlen(text),
                     REQUEST_TIMEOUT_MS, &res, err);
    if (rc == 0 && res.status != 200)
        rc = status_error(&res, "release", err);
    http_result_release(&res);
    return rc;
}

/* ---- jobs in the run loop ---- */

bool yci_job_cancelled(const struct yci_job *job)
{
    return atomic_load(&job->internal->cancelled);
}

/* The job is no longer ours (c->mu held): flag it and tell the handler. */
static void take_away_locked(struct yci_client *c, struct yci_job *job, bool taken)
{
    if (taken)
        atomic_store(&job->internal->taken, true);
    if (atomic_exchange(&job->internal->cancelled, true))
        return;
    if (c->handler && c->handler->cancel)
        c->handler->cancel(c, job, c->handler->arg);
}

int yci_client_job_log(struct yci_client *c, struct yci_job *job, const void *data, size_t len,
                       struct yci_error *err)
{
    const char *p = data;
    int64_t backoff = 0;
    while (len > 0) {
        if (yci_job_cancelled(job)) {
            set_err(err, "job %" PRId64 " was cancelled", job->id);
            return -ECANCELED;
        }
        size_t n = len > YCI_MAX_LOG_CHUNK ? YCI_MAX_LOG_CHUNK : len;
        uint64_t size = 0;
        int rc = yci_client_log(c, job->id, job->attempt, job->log_offset, p, n, &size, err);
        if (rc == 0) {
            job->log_offset += n;
            p += n;
            len -= n;
            backoff = 0;
            continue;
        }
        if (rc == -ESTALE) {
            pthread_mutex_lock(&c->mu);
            take_away_locked(c, job, true);
            pthread_mutex_unlock(&c->mu);
        }
        if (rc != -ECONNREFUSED && rc != -ETIMEDOUT && rc != -EIO && rc != -EAGAIN)
            return rc;
        if (sleep_unless_stopped(c, backoff_next(&backoff)))
            return rc;
    }
    return 0;
}

int yci_client_set_info(struct yci_client *c, const char *json_object)
{
    json_t *j = json_loads(json_object, 0, NULL);
    bool ok = json_is_object(j);
    json_decref(j);
    if (!ok)
        return -EINVAL;
    pthread_mutex_lock(&c->mu);
    free(c->info);
    c->info = xstrdup(json_object);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

void yci_client_push_status(struct yci_client *c)
{
    pthread_mutex_lock(&c->mu);
    c->push = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

/* ---- the run loop ---- */

static bool retryable(int rc)
{
    return rc == -ECONNREFUSED || rc == -ETIMEDOUT || rc == -EIO || rc == -EAGAIN;
}

/* Register unless registered, retrying with backoff; one thread registers,
 * the others wait for it. 0, a fatal error, or -ECANCELED on stop. */
static int ensure_registered(struct yci_client *c, struct yci_error *err)
{
    pthread_mutex_lock(&c->mu);
    while (c->registering && !c->stop)
        pthread_cond_wait(&c->cond, &c->mu);
    if (c->registered || c->stop) {
        int rc = c->stop ? -ECANCELED : 0;
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    c->registering = true;
    pthread_mutex_unlock(&c->mu);

    int rc;
    int64_t backoff = 0;
    for (;;) {
        rc = yci_client_register(c, err);
        if (rc == 0 || !retryable(rc))
            break;
        if (sleep_unless_stopped(c, backoff_next(&backoff))) {
            rc = -ECANCELED;
            break;
        }
    }
    pthread_mutex_lock(&c->mu);
    c->registering = false;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static void unregistered(struct yci_client *c)
{
    pthread_mutex_lock(&c->mu);
    c->registered = false;
    pthread_mutex_unlock(&c->mu);
}

/* Run the job and deliver its result; returns the next job when the server
 * sent one with its answer. */
static struct yci_job *run_job(struct yci_client *c, struct yci_job *job)
{
    struct yci_job *next = NULL;
    const struct yci_handler *h = c->handler;
    struct yci_result res = {.status = YCI_ERROR, .exit_code = -1};
    h->do_job(c, job, &res, h->arg);
    char *error = res.error ? xstrdup(res.error) : NULL;
    res.error = error;
    char *plan_jobs = res.plan_jobs ? xstrdup(res.plan_jobs) : NULL;
    res.plan_jobs = plan_jobs;
    char *log = res.log_len ? xmemdup(res.log, res.log_len) : NULL;
    res.log = log;

    int rc = 0;
    int64_t backoff = 0, stop_deadline = 0;
    if (res.status != YCI_ABANDONED && !atomic_load(&job->internal->taken)) {
        struct yci_error err;
        for (int tries = 0;; tries++) {
            /* The next job is asked for once: a retry could claim another. */
            rc = yci_client_finish_next(c, job->id, job->attempt, &res,
                                        tries == 0 && !yci_client_stopping(c) ? &next : NULL,
                                        &err);
            if (rc == 0 || !retryable(rc))
                break;
            int64_t wait = backoff_next(&backoff);
            if (!yci_client_stopping(c)) {
                if (!sleep_unless_stopped(c, wait))
                    continue;
            }
            /* Stopping with a result in hand: it is worth a little wait (a
             * server restarting), not a run of the job again. */
            int64_t now = time_mono_ms();
            if (!stop_deadline)
                stop_deadline = now + YCI_STOP_DELIVERY_MS;
            if (now >= stop_deadline)
                break;
            time_sleep_ms(wait < stop_deadline - now ? wait : stop_deadline - now);
        }
    } else if (res.status == YCI_ABANDONED && !atomic_load(&job->internal->taken) &&
               yci_client_stopping(c)) {
        /* Stopping: the job goes back to the queue now, not when its lease
         * ends (one try: a lease still ends). */
        struct yci_error err;
        rc = yci_client_release(c, job->id, job->attempt, &err);
    }
    pthread_mutex_lock(&c->mu);
    c->in_hand[job->slot] = NULL;
    pthread_mutex_unlock(&c->mu);
    if (h->finished)
        h->finished(c, job, rc, h->arg);
    free(error);
    free(plan_jobs);
    free(log);
    yci_job_free(job);
    return next;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct yci_client *c = w->c;
    int64_t backoff = 0;
    struct yci_job *next = NULL; /* sent with the last result */
    while (!yci_client_stopping(c)) {
        struct yci_error err;
        int rc = ensure_registered(c, &err);
        if (rc < 0) {
            if (rc == -ECANCELED || sleep_unless_stopped(c, BACKOFF_MAX_MS))
                break;
            continue;
        }
        struct yci_job *job = next;
        next = NULL;
        rc = job ? 1 : yci_client_claim(c, c->claim_wait, &job, &err);
        if (rc < 0) {
            if (rc == -EACCES)
                unregistered(c);
            if (sleep_unless_stopped(c, backoff_next(&backoff)))
                break;
            continue;
        }
        backoff = 0;
        if (rc == 0)
            continue;
        job->slot = w->slot;
        pthread_mutex_lock(&c->mu);
        bool stop = c->stop;
        if (!stop)
            c->in_hand[w->slot] = job;
        pthread_mutex_unlock(&c->mu);
        if (stop) {
            /* Claimed while stopping: leave it to its lease. */
            yci_job_free(job);
            break;
        }
        next = run_job(c, job);
    }
    /* Sent with the last result while stopping: left to its lease. */
    yci_job_free(next);
    return NULL;
}

static void *heartbeat_main(void *arg)
{
    struct yci_client *c = arg;
    const struct yci_handler *h = c->handler;
    for (;;) {
        struct timespec ts = deadline_in((int64_t)c->heartbeat * 1000);
        pthread_mutex_lock(&c->mu);
        while (!c->stop && !c->push && pthread_cond_timedwait(&c->cond, &c->mu, &ts) != ETIMEDOUT)
            ;
        bool stop = c->stop, registered = c->registered;
        c->push = false;
        pthread_mutex_unlock(&c->mu);
        if (stop)
            break;
        if (!registered)
            continue;

        char *info = h->client_info ? h->client_info(c, h->arg) : NULL;
        pthread_mutex_lock(&c->mu);
        if (!info)
            info = xstrdup(c->info);
        struct yci_job_ref *refs = xcalloc((size_t)c->slots, sizeof *refs);
        size_t n = 0;
        for (int i = 0; i < c->slots; i++)
            if (c->in_hand[i] && !atomic_load(&c->in_hand[i]->internal->taken)) {
                refs[n].id = c->in_hand[i]->id;
                refs[n++].attempt = c->in_hand[i]->attempt;
            }
        pthread_mutex_unlock(&c->mu);

        struct yci_job_ref *cancel = NULL;
        size_t ncancel = 0;
        struct yci_error err;
        int rc = yci_client_heartbeat(c, info, refs, n, &cancel, &ncancel, &err);
        if (rc == -EACCES)
            unregistered(c);
        if (rc == 0 && ncancel) {
            pthread_mutex_lock(&c->mu);
            for (size_t k = 0; k < ncancel; k++)
                for (int i = 0; i < c->slots; i++) {
                    struct yci_job *job = c->in_hand[i];
                    if (job && job->id == cancel[k].id &&
                        (cancel[k].attempt == 0 || job->attempt == cancel[k].attempt))
                        take_away_locked(c, job, true);
                }
            pthread_mutex_unlock(&c->mu);
        }
        free(cancel);
        free(refs);
        free(info);
    }
    return NULL;
}

int yci_client_run(struct yci_client *c, const struct yci_handler *handler)
{
    pthread_mutex_lock(&c->mu);
    if (c->running || !handler || !handler->do_job) {
        pthread_mutex_unlock(&c->mu);
        return -EINVAL;
    }
    c->running = true;
    c->handler = handler;
    pthread_mutex_unlock(&c->mu);

    struct yci_error err;
    int rc = ensure_registered(c, &err);
    if (rc == -ECANCELED)
        rc = 0;
    if (rc < 0 || yci_client_stopping(c))
        goto out;

    c->workers = xcalloc((size_t)c->slots, sizeof *c->workers);
    pthread_create(&c->heartbeat_thread, NULL, heartbeat_main, c);
    for (int i = 0; i < c->slots; i++) {
        c->workers[i].c = c;
        c->workers[i].slot = i;
        pthread_create(&c->workers[i].thread, NULL, worker_main, &c->workers[i]);
    }
    pthread_mutex_lock(&c->mu);
    while (!c->stop)
        pthread_cond_wait(&c->cond, &c->mu);
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < c->slots; i++)
        pthread_join(c->workers[i].thread, NULL);
    pthread_join(c->heartbeat_thread, NULL);
out:
    pthread_mutex_lock(&c->mu);
    c->running = false;
    c->run_rc = rc;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

struct bg_args {
    struct yci_client *c;
    const struct yci_handler *h;
};

static void *bg_main(void *arg)
{
    struct bg_args *a = arg;
    yci_client_run(a->c, a->h);
    free(a);
    return NULL;
}

int yci_client_start(struct yci_client *c, const struct yci_handler *handler, struct yci_error *err)
{
    if (!handler || !handler->do_job) {
        set_err(err, "no do_job callback");
        return -EINVAL;
    }
    pthread_mutex_lock(&c->mu);
    bool busy = c->bg_started || c->running;
    if (!busy)
        c->bg_started = true; /* stop() joins the thread from now on */
    pthread_mutex_unlock(&c->mu);
    if (busy) {
        set_err(err, "the client is already running");
        return -EBUSY;
    }
    struct bg_args *a = xmalloc(sizeof *a);
    a->c = c;
    a->h = handler;
    int e = pthread_create(&c->bg_thread, NULL, bg_main, a);
    if (e) {
        free(a);
        pthread_mutex_lock(&c->mu);
        c->bg_started = false;
        pthread_mutex_unlock(&c->mu);
        set_err(err, "cannot start a thread: %s", strerror(e));
        return -e;
    }
    return 0;
}

void yci_client_stop(struct yci_client *c)
{
    atomic_store(&c->cancel_claims, 1);
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_broadcast(&c->cond);
    for (int i = 0; i < c->slots; i++)
        if (c->in_hand[i])
            take_away_locked(c, c->in_hand[i], false);
    bool bg = c->bg_started;
    c->bg_started = false;
    if (!bg)
        while (c->running)
            pthread_cond_wait(&c->cond, &c->mu);
    pthread_mutex_unlock(&c->mu);
    if (bg)
        pthread_join(c->bg_thread, NULL);
}
