/*
 * web — two small server-rendered HTML pages: the recent builds (GET /) and
 * one build with its jobs (GET /builds/{id}), linking to the raw logs.
 *
 * Everything that comes from a user or a repository (names, branches, error
 * messages) is HTML-escaped, and the Content-Security-Policy forbids scripts
 * and every other resource, so even a missed escape could not run code. The
 * real dashboard arrives with a later issue; this is kept small on purpose.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/util.h"
#include "server/internal.h"
#include "store/store.h"
#include "lib/banned.h"

static const char *const csp = "default-src 'none'; style-src 'unsafe-inline'";

static void esc(struct buf *b, const char *s)
{
    if (!s)
        return;
    for (; *s; s++) {
        switch (*s) {
        case '&':
            buf_adds(b, "&amp;");
            break;
        case '<':
            buf_adds(b, "&lt;");
            break;
        case '>':
            buf_adds(b, "&gt;");
            break;
        case '"':
            buf_adds(b, "&quot;");
            break;
        case '\'':
            buf_adds(b, "&#39;");
            break;
        default:
            buf_addch(b, *s);
        }
    }
}

static void esc_field(struct buf *b, json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    esc(b, s ? s : dflt);
}

static void add_time(struct buf *b, json_t *v)
{
    if (!json_is_integer(v)) {
        buf_adds(b, "-");
        return;
    }
    time_t t = (time_t)(json_integer_value(v) / 1000);
    struct tm tm;
    char text[32];
    gmtime_r(&t, &tm);
    strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S", &tm);
    buf_adds(b, text);
}

static void add_duration(struct buf *b, json_t *v)
{
    if (json_is_integer(v))
        buf_addf(b, "%.1f s", (double)json_integer_value(v) / 1000.0);
    else
        buf_adds(b, "-");
}

static void page_start(struct buf *b, const char *title)
{
    buf_adds(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width\"><title>");
    esc(b, title);
    buf_adds(b, "</title><style>"
                "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}"
                "table{border-collapse:collapse}td,th{padding:.2em .8em;text-align:left;"
                "border-bottom:1px solid #ddd}code{font-size:13px}"
                ".passed{color:#080}.failed,.error,.timed_out{color:#b00}"
                ".running,.queued{color:#a60}.cancelled{color:#666}"
                "</style></head><body>\n<p><a href=\"/\">yci</a> | "
                "<a href=\"/runners\">runners</a></p>\n");
}

static void respond_page(struct http_request *req, int status, struct buf *b)
{
    buf_adds(b, "</body></html>\n");
    http_add_header(req, "Content-Security-Policy", csp);
    http_add_header(req, "X-Content-Type-Options", "nosniff");
    http_add_header(req, "Cache-Control", "no-cache");
    http_respond_buf(req, status, "text/html; charset=utf-8", b);
}

static void status_cell(struct buf *b, json_t *o)
{
    const char *s = json_string_value(json_object_get(o, "status"));
    buf_adds(b, "<td class=\"");
    esc(b, s ? s : "");
    buf_adds(b, "\">");
    esc(b, s ? s : "?");
    buf_adds(b, "</td>");
}

void web_not_found(struct http_request *req)
{
    struct buf b = BUF_INIT;
    page_start(&b, "not found");
    buf_adds(&b, "<h1>Not found</h1>\n");
    respond_page(req, 404, &b);
}

/* "3 min ago" */
static void add_age(struct buf *b, json_t *t, int64_t now)
{
    if (!json_is_integer(t)) {
        buf_adds(b, "-");
        return;
    }
    int64_t s = (now - json_integer_value(t)) / 1000;
    if (s < 60)
        buf_addf(b, "%" PRId64 " s ago", s < 0 ? 0 : s);
    else if (s < 3600)
        buf_addf(b, "%" PRId64 " min ago", s / 60);
    else if (s < 86400)
        buf_addf(b, "%" PRId64 " h ago", s / 3600);
    else
        buf_addf(b, "%" PRId64 " days ago", s / 86400);
}

/* The overview, in the runbot manner: each repository with the newest build
 * of each of its branches and pull requests. */
static void overview(struct server *srv, struct buf *b)
{
    json_t *latest = store_latest_builds(srv->store);
    int64_t now = time_now_ms();
    const char *repo = NULL;
    size_t i;
    json_t *bd;
    json_array_foreach(latest, i, bd) {
        const char *r = json_string_value(json_object_get(bd, "repo"));
        if (!r)
            continue;
        if (!repo || strcmp(repo, r) != 0) {
            if (repo)
                buf_adds(b, "</table>\n");
            else
                buf_adds(b, "<h1>Branches and pull requests</h1>\n");
            repo = r;
            buf_adds(b, "<h2>");
            esc(b, r);
            buf_adds(b, "</h2>\n<table class=\"overview\"><tr><th>branch</th><th>status</th>"
                        "<th>build</th><th>commit</th><th>started</th><th>duration</th></tr>\n");
        }
        int64_t id = json_integer_value(json_object_get(bd, "id"));
        json_t *pull = json_object_get(bd, "pull_number");
        buf_adds(b, "<tr><td>");
        if (json_is_integer(pull))
            buf_addf(b, "pull request #%" PRId64 "%s", (int64_t)json_integer_value(pull),
                     json_is_true(json_object_get(bd, "untrusted")) ? " (fork)" : "");
        else
            esc_field(b, bd, "branch", "-");
        buf_adds(b, "</td>");
        status_cell(b, bd);
        buf_addf(b, "<td><a href=\"/builds/%" PRId64 "\">#%" PRId64 "</a></td><td><code>", id,
                 id);
        const char *commit = json_string_value(json_object_get(bd, "commit"));
        char short_sha[13];
        snprintf(short_sha, sizeof short_sha, "%s", commit ? commit : "-");
        esc(b, short_sha);
        buf_adds(b, "</code></td><td>");
        add_age(b, json_object_get(bd, "created"), now);
        buf_adds(b, "</td><td>");
        add_duration(b, json_object_get(bd, "duration_ms"));
        buf_adds(b, "</td></tr>\n");
    }
    if (repo)
        buf_adds(b, "</table>\n");
    json_decref(latest);
}

void web_index(struct server *srv, struct http_request *req)
{
    json_t *filter = json_pack("{s:i}", "limit", 30);
    json_t *builds = store_build_list(srv->store, filter);
    json_decref(filter);
    struct buf b = BUF_INIT;
    page_start(&b, "yci: builds");
    overview(srv, &b);
    buf_adds(&b, "<h1>Recent builds</h1>\n");
    if (json_array_size(builds) == 0) {
        buf_adds(&b, "<p>No builds yet.</p>\n");
    } else {
        buf_adds(&b, "<table><tr><th>build</th><th>repository</th><th>branch</th>"
                     "<th>commit</th><th>status</th><th>created (UTC)</th><th>duration</th>"
                     "</tr>\n");
        size_t i;
        json_t *bd;
        json_array_foreach(builds, i, bd)
        {
            int64_t id = json_integer_value(json_object_get(bd, "id"));
            const char *commit = json_string_value(json_object_get(bd, "commit"));
            buf_addf(&b, "<tr><td><a href=\"/builds/%" PRId64 "\">#%" PRId64 "</a></td><td>", id,
                     id);
            esc_field(&b, bd, "repo", "-");
            buf_adds(&b, "</td><td>");
            esc_field(&b, bd, "branch", "-");
            buf_adds(&b, "</td><td><code>");
            if (commit) {
                char short_sha[13];
                snprintf(short_sha, sizeof(short_sha), "%s", commit);
                esc(&b, short_sha);
            } else {
                buf_adds(&b, "-");
            }
            buf_adds(&b, "</code></td>");
            status_cell(&b, bd);
            buf_adds(&b, "<td>");
            add_time(&b, json_object_get(bd, "created"));
            buf_adds(&b, "</td><td>");
            add_duration(&b, json_object_get(bd, "duration_ms"));
            buf_adds(&b, "</td></tr>\n");
        }
        buf_adds(&b, "</table>\n");
    }
    json_decref(builds);
    respond_page(req, 200, &b);
}

void web_build(struct server *srv, struct http_request *req, int64_t build_id)
{
    json_t *bd = store_build_get(srv->store, build_id);
    if (!bd) {
        web_not_found(req);
        return;
    }
    struct buf b = BUF_INIT;
    char title[64];
    snprintf(title, sizeof(title), "yci: build %" PRId64, build_id);
    page_start(&b, title);
    buf_addf(&b, "<h1>Build #%" PRId64 "</h1>\n<table>", build_id);
    static const char *const keys[] = {"repo", "branch", "commit"};
    for (size_t i = 0; i < 3; i++) {
        buf_addf(&b, "<tr><th>%s</th><td><code>", keys[i]);
        esc_field(&b, bd, keys[i], "-");
        buf_adds(&b, "</code></td></tr>");
    }
    json_t *pull = json_object_get(bd, "pull_number");
    if (json_is_integer(pull))
        buf_addf(&b, "<tr><th>pull request</th><td>#%" PRId64 "%s</td></tr>",
                 (int64_t)json_integer_value(pull),
                 json_is_true(json_object_get(bd, "untrusted")) ? " (untrusted: from a fork)"
                                                                : "");
    buf_adds(&b, "<tr><th>status</th>");
    status_cell(&b, bd);
    buf_adds(&b, "</tr><tr><th>created (UTC)</th><td>");
    add_time(&b, json_object_get(bd, "created"));
    buf_adds(&b, "</td></tr><tr><th>duration</th><td>");
    add_duration(&b, json_object_get(bd, "duration_ms"));
    buf_adds(&b, "</td></tr>");
    if (json_string_value(json_object_get(bd, "error"))) {
        buf_adds(&b, "<tr><th>error</th><td>");
        esc_field(&b, bd, "error", "");
        buf_adds(&b, "</td></tr>");
    }
    buf_addf(&b, "</table>\n<p><a href=\"/api/builds/%" PRId64 "\">JSON</a></p>\n", build_id);

    json_t *jobs = json_object_get(bd, "jobs");
    queued_reasons(srv, jobs, NULL);
    buf_adds(&b, "<h2>Jobs</h2>\n<table><tr><th>job</th><th>name</th><th>status</th>"
                 "<th>exit code</th><th>duration</th><th>runner</th><th>retries</th>"
                 "<th>logs</th></tr>\n");
    size_t i;
    json_t *job;
    json_array_foreach(jobs, i, job)
    {
        int64_t id = json_integer_value(json_object_get(job, "id"));
        buf_addf(&b, "<tr><td>%" PRId64 "</td><td>", id);
        esc_field(&b, job, "name", "?");
        buf_adds(&b, "</td>");
        if (json_is_true(json_object_get(job, "flaky")))
            buf_adds(&b, "<td class=\"passed flaky\" title=\"failed, then passed on a retry\">"
                         "passed (flaky)</td>");
        else
            status_cell(&b, job);
        json_t *code = json_object_get(job, "exit_code");
        if (json_is_integer(code))
            buf_addf(&b, "<td>%" PRId64 "</td><td>", (int64_t)json_integer_value(code));
        else
            buf_adds(&b, "<td>-</td><td>");
        add_duration(&b, json_object_get(job, "duration_ms"));
        buf_adds(&b, "</td><td>");
        esc_field(&b, job, "runner", "-");
        buf_adds(&b, "</td><td>");
        int64_t max = json_integer_value(json_object_get(job, "max_retries"));
        if (max > 0)
            buf_addf(&b, "%" PRId64 " of %" PRId64,
                     (int64_t)json_integer_value(json_object_get(job, "retries")), max);
        else
            buf_adds(&b, "-");
        json_t *nb = json_object_get(job, "not_before");
        const char *st = json_string_value(json_object_get(job, "status"));
        if (json_is_integer(nb) && st && strcmp(st, "queued") == 0) {
            buf_adds(&b, ", next at ");
            add_time(&b, nb);
        }
        /* Every attempt keeps its log. */
        int64_t attempts = json_integer_value(json_object_get(job, "attempt"));
        buf_addf(&b, "</td><td><a href=\"/api/jobs/%" PRId64 "/log\">log</a>", id);
        for (int64_t a = 1; attempts > 1 && a <= attempts && a <= 50; a++)
            buf_addf(&b, " <a href=\"/api/jobs/%" PRId64 "/log?attempt=%" PRId64 "\">#%" PRId64
                         "</a>",
                     id, a, a);
        buf_adds(&b, "</td></tr>\n");
        static const char *const notes[] = {"error", "queued_reason"};
        for (size_t k = 0; k < 2; k++)
            if (json_string_value(json_object_get(job, notes[k]))) {
                buf_addf(&b, "<tr><td></td><td colspan=\"7\" class=\"%s\">", notes[k]);
                esc_field(&b, job, notes[k], "");
                buf_adds(&b, "</td></tr>\n");
            }
    }
    buf_adds(&b, "</table>\n");

    json_t *events = json_object_get(bd, "events");
    if (json_array_size(events) > 0) {
        buf_adds(&b, "<h2>Events</h2>\n<ul>\n");
        json_t *ev;
        json_array_foreach(events, i, ev)
        {
            buf_adds(&b, "<li>");
            add_time(&b, json_object_get(ev, "time"));
            json_t *jid = json_object_get(ev, "job_id");
            if (json_is_integer(jid) && json_integer_value(jid) > 0)
                buf_addf(&b, " job %" PRId64, (int64_t)json_integer_value(jid));
            buf_adds(&b, ": ");
            esc_field(&b, ev, "message", "");
            buf_adds(&b, "</li>\n");
        }
        buf_adds(&b, "</ul>\n");
    }
    json_decref(bd);
    respond_page(req, 200, &b);
}

/*
 * GET /badge/REPO/BRANCH.svg — the status of the branch's newest finished
 * build (or of its running one when none has finished), for a README. The
 * SVG holds only fixed words: nothing from the repository reaches it.
 */
void web_badge(struct server *srv, struct http_request *req, const char *repo, const char *branch)
{
    json_t *filter = json_pack("{s:s, s:s, s:i}", "repo", repo, "branch", branch, "limit", 20);
    json_t *list = store_build_list(srv->store, filter);
    json_decref(filter);
    const char *status = NULL;
    size_t i;
    json_t *b;
    json_array_foreach(list, i, b) {
        const char *s = json_string_value(json_object_get(b, "status"));
        if (!s)
            continue;
        if (!status)
            status = s; /* the newest, in case none has finished */
        if (strcmp(s, "queued") != 0 && strcmp(s, "running") != 0) {
            status = s;
            break;
        }
    }
    static const struct {
        const char *status, *text, *colour;
    } looks[] = {
        {"passed", "passing", "#4c1"},    {"failed", "failing", "#e05d44"},
        {"error", "error", "#fe7d37"},    {"cancelled", "cancelled", "#9f9f9f"},
        {"running", "running", "#dfb317"}, {"queued", "queued", "#dfb317"},
    };
    const char *text = "no builds", *colour = "#9f9f9f";
    for (size_t k = 0; status && k < sizeof looks / sizeof looks[0]; k++)
        if (strcmp(looks[k].status, status) == 0) {
            text = looks[k].text;
            colour = looks[k].colour;
        }
    /* Widths at ~7 px a character of Verdana 11 px, as shields.io does. */
    int lw = 6 + 3 * 7 + 6, rw = 6 + (int)strlen(text) * 7 + 6, w = lw + rw;
    struct buf svg = BUF_INIT;
    buf_addf(&svg,
             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"20\" role=\"img\" "
             "aria-label=\"yci: %s\"><title>yci: %s</title>"
             "<rect width=\"%d\" height=\"20\" rx=\"3\" fill=\"#555\"/>"
             "<rect x=\"%d\" width=\"%d\" height=\"20\" rx=\"3\" fill=\"%s\"/>"
             "<rect x=\"%d\" width=\"4\" height=\"20\" fill=\"%s\"/>"
             "<g fill=\"#fff\" text-anchor=\"middle\" "
             "font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\">"
             "<text x=\"%d\" y=\"14\">yci</text><text x=\"%d\" y=\"14\">%s</text></g></svg>\n",
             w, text, text, w, lw, rw, colour, lw, colour, lw / 2, lw + rw / 2, text);
    json_decref(list);
    http_add_header(req, "Cache-Control", "no-cache, max-age=0");
    http_add_header(req, "X-Content-Type-Options", "nosniff");
    http_add_header(req, "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
    http_respond_buf(req, 200, "image/svg+xml; charset=utf-8", &svg);
}

/* GET /runners — every runner: name, labels, platform, client_info, the time
 * since its last heartbeat, its jobs; dead ones marked as such. */
void web_runners(struct server *srv, struct http_request *req)
{
    json_t *runners = store_runner_list(srv->store);
    int64_t now = time_now_ms();
    struct buf b = BUF_INIT;
    page_start(&b, "yci: runners");
    buf_adds(&b, "<h1>Runners</h1>\n");
    if (json_array_size(runners) == 0) {
        buf_adds(&b, "<p>No runners. Start one with <code>yci runner --server URL</code>.</p>\n");
    } else {
        buf_adds(&b, "<table><tr><th>runner</th><th>state</th><th>last heartbeat</th>"
                     "<th>labels</th><th>platform</th><th>slots</th><th>jobs</th>"
                     "<th>client info</th></tr>\n");
        size_t i;
        json_t *r;
        json_array_foreach(runners, i, r) {
            bool alive = json_is_true(json_object_get(r, "alive"));
            buf_adds(&b, "<tr><td>");
            esc_field(&b, r, "name", "?");
            buf_addf(&b, "</td><td class=\"%s\">%s</td><td>", alive ? "passed" : "failed",
                     alive ? "alive" : "dead");
            json_t *seen = json_object_get(r, "last_seen");
            if (json_is_integer(seen))
                buf_addf(&b, "%.1f s ago", (double)(now - json_integer_value(seen)) / 1000.0);
            else
                buf_adds(&b, "never");
            static const char *const objs[] = {"labels", "platform"};
            for (size_t k = 0; k < 2; k++) {
                buf_adds(&b, "</td><td><code>");
                const char *key;
                json_t *v;
                bool first = true;
                json_object_foreach(json_object_get(r, objs[k]), key, v) {
                    buf_adds(&b, first ? "" : ", ");
                    esc(&b, key);
                    buf_adds(&b, "=");
                    esc(&b, json_string_value(v) ? json_string_value(v) : "?");
                    first = false;
                }
            }
            buf_addf(&b, "</code></td><td>%" PRId64 "</td><td>",
                     (int64_t)json_integer_value(json_object_get(r, "slots")));
            size_t k;
            json_t *j;
            json_array_foreach(json_object_get(r, "jobs"), k, j) {
                buf_addf(&b, "%s<a href=\"/builds/%" PRId64 "\">", k ? ", " : "",
                         (int64_t)json_integer_value(json_object_get(j, "build_id")));
                esc_field(&b, j, "name", "?");
                buf_adds(&b, "</a>");
            }
            buf_adds(&b, "</td><td><code>");
            json_t *info = json_object_get(r, "client_info");
            char *text = json_is_object(info) ? json_dumps(info, JSON_COMPACT) : NULL;
            esc(&b, text ? text : "-");
            free(text);
            buf_adds(&b, "</code></td></tr>\n");
        }
        buf_adds(&b, "</table>\n");
    }
    json_decref(runners);
    respond_page(req, 200, &b);
}
