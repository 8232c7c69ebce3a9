/*
 * web — the dashboard's pages: the overview (GET /), a build (GET
 * /builds/{id}), a job and its log (GET /jobs/{id}), the runners (GET
 * /runners), the badges, and the static files the pages use (GET
 * /static/{name}: app.js, yci.css and the ANSI renderer ansi_up.js, embedded
 * in the binary from web/).
 *
 * The pages are rendered here, in full, so that they work without a script
 * and cost one request. web/app.js then makes them live: it long-polls GET
 * /api/changes (follow.c) and, when the store's version moves, fetches the
 * page again and swaps the parts marked data-live; on a job page it follows
 * the log through the log API (tail first, earlier parts on demand) and
 * renders its ANSI colours; on a build page it runs rebuild and cancel with
 * the admin token, asked once and kept in the browser's localStorage.
 *
 * Everything that comes from a user or a repository (names, branches, commit
 * subjects, authors, labels, client_info, error messages) is HTML-escaped
 * here, and log text by the script (ansi_up escapes it). The
 * Content-Security-Policy allows only this server's own script, style sheet
 * and API (no inline script or style, no other origin), so even a missed
 * escape could not run code.
 *
 * The page cache. The overview (GET /) and the build pages (GET /builds/{id})
 * are kept once rendered, and the same bytes are served again while nothing
 * they show can have changed: for the same store version (store_version(),
 * moved by any change to the builds and jobs the pages show) and within the
 * same wall-clock second. The second is there because the overview shows ages
 * ("3 min ago"): a page is rendered with "now" truncated to its second, so
 * every render for one (version, second) gives the same ages, and a cached
 * page is never more than a second old, whatever else it shows that no
 * version counts (a build page's waiting reasons, which follow the runners).
 * Nothing else on these pages depends on the request (no query, header,
 * token or cookie is read), so the key is (page, version, second); the
 * page's ETag is "version-second" and If-None-Match of it is answered 304.
 * The version is read before rendering, so a page holds everything up to it
 * (maybe a little more, which the script then catches up with at once: it
 * long-polls for changes since the page's data-version).
 *
 * The cache is YCI_PAGE_CACHE_SLOTS slots under one mutex, direct-mapped by
 * page (slot 0 is the overview, build N goes to slot 1 + N mod (slots - 1)),
 * so it is bounded and needs no eviction policy: a page pushes out whatever
 * was in its slot. The mutex is never held while rendering: two threads may
 * render the same page at once, and the newer (version, second) is kept.
 * A page is reference-counted: one reference for its slot and one for each
 * response still sending it (http_respond_shared(): no copy), so a response
 * never points at freed memory when its page is replaced.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/embed.h"
#include "lib/limits.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "server/internal.h"
#include "store/logstore.h"
#include "store/store.h"
#include "lib/banned.h"

static const char *const csp =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

extern const struct embed_file web_files[]; /* generated from web/ */

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

/* One version of all the static files (FNV-1a of their bytes), in their
 * URLs (?v=), so that a browser may keep them for a year: a new yci changes it. */
static pthread_once_t assets_once = PTHREAD_ONCE_INIT;
static char assets_version[17];

static void assets_hash(void)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const struct embed_file *f = web_files; f->name; f++)
        for (size_t i = 0; i < f->size; i++)
            h = (h ^ f->data[i]) * 0x100000001b3ULL;
    snprintf(assets_version, sizeof assets_version, "%016" PRIx64, h);
}

static const char *assets(void)
{
    pthread_once(&assets_once, assets_hash);
    return assets_version;
}

/* The page's head; version is the store version it shows (its data-version:
 * app.js asks for changes since then). */
static void page_start(struct buf *b, const char *title, uint64_t version)
{
    buf_adds(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width\"><title>");
    esc(b, title);
    buf_addf(b,
             "</title><link rel=\"icon\" href=\"/static/favicon.svg?v=%s\">"
             "<link rel=\"stylesheet\" href=\"/static/yci.css?v=%s\">"
             "<script type=\"module\" src=\"/static/app.js?v=%s\"></script></head>\n"
             "<body data-version=\"%" PRIu64 "\" data-assets=\"%s\">\n"
             "<header><a href=\"/\" class=\"brand\">yci</a> <a href=\"/\">builds</a> "
             "<a href=\"/runners\">runners</a></header>\n<main>\n",
             assets(), assets(), assets(), version, assets());
}

static void page_end(struct buf *b)
{
    buf_adds(b, "</main></body></html>\n");
}

static void page_headers(struct http_request *req)
{
    http_add_header(req, "Content-Security-Policy", csp);
    http_add_header(req, "Referrer-Policy", "same-origin");
    http_add_header(req, "Cache-Control", "no-cache");
}

static void respond_page(struct http_request *req, int status, struct buf *b)
{
    page_end(b);
    page_headers(req);
    http_respond_buf(req, status, "text/html; charset=utf-8", b);
}

/* ---- the page cache (see the top of the file) ---------------------------- */

struct page {
    atomic_uint refs; /* the slot's, and each response's still sending it */
    int64_t key;      /* 0: the overview; N: the page of build N */
    uint64_t version; /* the store version read before rendering */
    int64_t second;   /* the wall-clock second its ages are relative to */
    char etag[48];
    char *data;
    size_t len;
};

struct web_cache {
    pthread_mutex_t lock; /* slots */
    struct page *slots[YCI_PAGE_CACHE_SLOTS];
};

struct web_cache *web_cache_new(void)
{
    struct web_cache *c = xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

/* Drop a reference: the http_respond_shared() callback too. */
static void page_unref(void *arg)
{
    struct page *p = arg;
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    free(p->data);
    free(p);
}

void web_cache_free(struct web_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < YCI_PAGE_CACHE_SLOTS; i++)
        page_unref(c->slots[i]);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static struct page **cache_slot(struct web_cache *c, int64_t key)
{
    size_t i = key <= 0 ? 0 : 1 + (size_t)((uint64_t)key % (YCI_PAGE_CACHE_SLOTS - 1));
    return &c->slots[i];
}

/* The cached page of key for (version, second) with a reference for the
 * caller, or NULL. */
static struct page *cache_get(struct web_cache *c, int64_t key, uint64_t version, int64_t second)
{
    pthread_mutex_lock(&c->lock);
    struct page *p = *cache_slot(c, key);
    if (p && p->key == key && p->version == version && p->second == second)
        atomic_fetch_add(&p->refs, 1);
    else
        p = NULL;
    pthread_mutex_unlock(&c->lock);
    return p;
}

/* Keep p (the caller keeps its own reference) unless its slot holds a newer
 * render of the same page. */
static void cache_put(struct web_cache *c, struct page *p)
{
    if (p->len > YCI_PAGE_CACHE_MAX_BYTES)
        return;
    pthread_mutex_lock(&c->lock);
    struct page **slot = cache_slot(c, p->key);
    struct page *old = *slot;
    if (old && old->key == p->key &&
        (old->version > p->version || (old->version == p->version && old->second >= p->second))) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    atomic_fetch_add(&p->refs, 1);
    *slot = p;
    pthread_mutex_unlock(&c->lock);
    page_unref(old); /* freed here at most when no response holds it */
}

/* Render a whole page into b for the store version given, with ages
 * relative to now (ms); false when there is no such page (404). */
typedef bool (*render_fn)(struct server *srv, struct buf *b, int64_t key, uint64_t version,
                          int64_t now);

/* GET a cached page: from the cache when it holds key for the current store
 * version and second, else rendered (and kept). */
static void cached_page(struct server *srv, struct http_request *req, int64_t key, render_fn render)
{
    uint64_t version = store_version(srv->store);
    int64_t second = time_now_ms() / 1000;
    struct page *p = cache_get(srv->pages, key, version, second);
    if (!p) {
        struct buf b = BUF_INIT;
        if (!render(srv, &b, key, version, second * 1000)) {
            buf_release(&b);
            web_not_found(req);
            return;
        }
        page_end(&b);
        p = xcalloc(1, sizeof *p);
        atomic_init(&p->refs, 1);
        p->key = key;
        p->version = version;
        p->second = second;
        snprintf(p->etag, sizeof p->etag, "\"%" PRIu64 "-%" PRId64 "\"", version, second);
        p->data = buf_detach(&b, &p->len);
        cache_put(srv->pages, p);
    }
    page_headers(req);
    http_add_header(req, "ETag", p->etag);
    const char *inm = http_req_header(req, "If-None-Match");
    if (inm && strcmp(inm, p->etag) == 0) {
        page_unref(p);
        http_respond(req, 304, "text/html; charset=utf-8", "", 0);
        return;
    }
    http_respond_shared(req, 200, "text/html; charset=utf-8", p->data, p->len, page_unref, p);
}

/* <span class="st st-passed">passed</span>; a flaky pass says so. */
static void status_badge(struct buf *b, json_t *o)
{
    const char *s = json_string_value(json_object_get(o, "status"));
    bool flaky = json_is_true(json_object_get(o, "flaky"));
    buf_adds(b, "<span class=\"st st-");
    esc(b, s ? s : "unknown");
    if (flaky)
        buf_adds(b, " flaky\" title=\"failed, then passed on a retry\">passed (flaky)</span>");
    else {
        buf_adds(b, "\">");
        esc(b, s ? s : "?");
        buf_adds(b, "</span>");
    }
}

static void status_cell(struct buf *b, json_t *o)
{
    buf_adds(b, "<td>");
    status_badge(b, o);
    buf_adds(b, "</td>");
}

void web_not_found(struct http_request *req)
{
    struct buf b = BUF_INIT;
    page_start(&b, "not found", 0);
    buf_adds(&b, "<h1>Not found</h1>\n");
    respond_page(req, 404, &b);
}

/* "3 min ago", in a <time> the script keeps current. */
static void add_age(struct buf *b, json_t *t, int64_t now)
{
    if (!json_is_integer(t)) {
        buf_adds(b, "-");
        return;
    }
    int64_t ms = json_integer_value(t);
    int64_t s = (now - ms) / 1000;
    buf_addf(b, "<time class=\"age\" data-ms=\"%" PRId64 "\">", ms);
    if (s < 60)
        buf_addf(b, "%" PRId64 " s ago", s < 0 ? 0 : s);
    else if (s < 3600)
        buf_addf(b, "%" PRId64 " min ago", s / 60);
    else if (s < 86400)
        buf_addf(b, "%" PRId64 " h ago", s / 3600);
    else
        buf_addf(b, "%" PRId64 " days ago", s / 86400);
    buf_adds(b, "</time>");
}

/* The commit: its short id and its subject line. */
static void add_commit(struct buf *b, json_t *bd)
{
    const char *commit = json_string_value(json_object_get(bd, "commit"));
    char short_sha[13];
    snprintf(short_sha, sizeof short_sha, "%s", commit ? commit : "-");
    buf_adds(b, "<code title=\"");
    esc(b, commit ? commit : "");
    buf_adds(b, "\">");
    esc(b, short_sha);
    buf_adds(b, "</code>");
    const char *subject = json_string_value(json_object_get(bd, "subject"));
    if (subject) {
        buf_adds(b, " <span class=\"subject\">");
        esc(b, subject);
        buf_adds(b, "</span>");
    }
}

/* "branch main", "pull request #4 (fork)" */
static void add_ref(struct buf *b, json_t *bd)
{
    json_t *pull = json_object_get(bd, "pull_number");
    if (json_is_integer(pull))
        buf_addf(b, "pull request #%" PRId64 "%s", (int64_t)json_integer_value(pull),
                 json_is_true(json_object_get(bd, "untrusted")) ? " (fork)" : "");
    else
        esc_field(b, bd, "branch", "-");
}

/* The overview, in the runbot manner: each repository with the newest build
 * of each of its branches and pull requests. */
static void overview(struct server *srv, struct buf *b, int64_t now)
{
    json_t *latest = store_latest_builds(srv->store);
    const char *repo = NULL;
    size_t i;
    json_t *bd;
    json_array_foreach(latest, i, bd) {
        const char *r = json_string_value(json_object_get(bd, "repo"));
        if (!r)
            continue;
        if (!repo || strcmp(repo, r) != 0) {
            if (repo)
                buf_adds(b, "</tbody></table>\n");
            else
                buf_adds(b, "<h1>Branches and pull requests</h1>\n");
            repo = r;
            buf_adds(b, "<h2>");
            esc(b, r);
            buf_adds(b, "</h2>\n<table class=\"overview\"><thead><tr><th>branch</th>"
                        "<th>status</th><th>build</th><th>commit</th><th>author</th>"
                        "<th>started</th><th>duration</th></tr></thead><tbody>\n");
        }
        int64_t id = json_integer_value(json_object_get(bd, "id"));
        buf_adds(b, "<tr class=\"row-");
        esc_field(b, bd, "status", "unknown");
        buf_adds(b, "\"><td>");
        add_ref(b, bd);
        buf_adds(b, "</td>");
        status_cell(b, bd);
        buf_addf(b, "<td><a href=\"/builds/%" PRId64 "\">#%" PRId64 "</a></td><td>", id, id);
        add_commit(b, bd);
        buf_adds(b, "</td><td>");
        esc_field(b, bd, "author", "-");
        buf_adds(b, "</td><td>");
        add_age(b, json_object_get(bd, "created"), now);
        buf_adds(b, "</td><td>");
        add_duration(b, json_object_get(bd, "duration_ms"));
        buf_adds(b, "</td></tr>\n");
    }
    if (repo)
        buf_adds(b, "</tbody></table>\n");
    json_decref(latest);
}

static bool render_index(struct server *srv, struct buf *b, int64_t key, uint64_t version,
                         int64_t now)
{
    (void)key;
    page_start(b, "yci: builds", version);
    json_t *filter = json_pack("{s:i}", "limit", 30);
    json_t *builds = store_build_list(srv->store, filter);
    json_decref(filter);
    buf_adds(b, "<section id=\"overview\" data-live>\n");
    overview(srv, b, now);
    buf_adds(b, "<h1>Recent builds</h1>\n");
    if (json_array_size(builds) == 0) {
        buf_adds(b, "<p>No builds yet.</p>\n");
    } else {
        buf_adds(b, "<table class=\"recent\"><thead><tr><th>build</th><th>repository</th>"
                    "<th>branch</th><th>commit</th><th>author</th><th>status</th>"
                    "<th>created</th><th>duration</th></tr></thead><tbody>\n");
        size_t i;
        json_t *bd;
        json_array_foreach(builds, i, bd)
        {
            int64_t id = json_integer_value(json_object_get(bd, "id"));
            buf_addf(b, "<tr><td><a href=\"/builds/%" PRId64 "\">#%" PRId64 "</a></td><td>", id,
                     id);
            esc_field(b, bd, "repo", "-");
            buf_adds(b, "</td><td>");
            add_ref(b, bd);
            buf_adds(b, "</td><td>");
            add_commit(b, bd);
            buf_adds(b, "</td><td>");
            esc_field(b, bd, "author", "-");
            buf_adds(b, "</td>");
            status_cell(b, bd);
            buf_adds(b, "<td>");
            add_age(b, json_object_get(bd, "created"), now);
            buf_adds(b, "</td><td>");
            add_duration(b, json_object_get(bd, "duration_ms"));
            buf_adds(b, "</td></tr>\n");
        }
        buf_adds(b, "</tbody></table>\n");
    }
    buf_adds(b, "</section>\n");
    json_decref(builds);
    return true;
}

void web_index(struct server *srv, struct http_request *req)
{
    cached_page(srv, req, 0, render_index);
}

static bool final_status(const char *s)
{
    return s && strcmp(s, "queued") != 0 && strcmp(s, "running") != 0;
}

/*
 * A matrix cell is named "JOB (V1, V2, ...)". The jobs of one JOB with the
 * same number of values n >= 2 are laid out as a grid: a row for each
 * combination of the first n-1 values, a column for each last value.
 */
struct cell {
    json_t *job;
    char *base;  /* JOB */
    char *row;   /* V1, ..., V(n-1) */
    char *col;   /* Vn */
};

static bool cell_parse(json_t *job, struct cell *c)
{
    const char *name = json_string_value(json_object_get(job, "name"));
    size_t n = name ? strlen(name) : 0;
    const char *open = name ? strstr(name, " (") : NULL;
    if (!open || n < 4 || name[n - 1] != ')')
        return false;
    const char *vals = open + 2;
    const char *last = NULL;
    for (const char *p = vals; p < name + n - 1; p++)
        if (p[0] == ',' && p[1] == ' ')
            last = p;
    if (!last)
        return false;
    c->job = job;
    c->base = xstrndup(name, (size_t)(open - name));
    c->row = xstrndup(vals, (size_t)(last - vals));
    c->col = xstrndup(last + 2, (size_t)(name + n - 1 - (last + 2)));
    return true;
}

/* Distinct strings in order of first appearance. */
static size_t distinct(char **all, size_t n, char **out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < k && strcmp(out[j], all[i]) != 0)
            j++;
        if (j == k)
            out[k++] = all[i];
    }
    return k;
}

static void matrix_grids(struct buf *b, json_t *jobs)
{
    size_t n = json_array_size(jobs);
    if (n < 2 || n > 1024)
        return;
    struct cell *cells = xcalloc(n, sizeof *cells);
    size_t nc = 0;
    for (size_t i = 0; i < n; i++)
        if (cell_parse(json_array_get(jobs, i), &cells[nc]))
            nc++;
    bool *done = xcalloc(nc ? nc : 1, sizeof *done);
    char **rows = xcalloc(nc ? nc : 1, sizeof *rows), **cols = xcalloc(nc ? nc : 1, sizeof *cols);
    char **tmp = xcalloc(nc ? nc : 1, sizeof *tmp);
    for (size_t i = 0; i < nc; i++) {
        if (done[i])
            continue;
        /* The cells of this JOB. */
        size_t m = 0;
        struct cell **group = xcalloc(nc, sizeof *group);
        for (size_t j = i; j < nc; j++)
            if (!done[j] && strcmp(cells[j].base, cells[i].base) == 0) {
                done[j] = true;
                group[m++] = &cells[j];
            }
        if (m >= 2) {
            for (size_t j = 0; j < m; j++)
                tmp[j] = group[j]->row;
            size_t nr = distinct(tmp, m, rows);
            for (size_t j = 0; j < m; j++)
                tmp[j] = group[j]->col;
            size_t ncol = distinct(tmp, m, cols);
            buf_adds(b, "<table class=\"matrix\"><caption>");
            esc(b, cells[i].base);
            buf_adds(b, "</caption><thead><tr><th></th>");
            for (size_t c = 0; c < ncol; c++) {
                buf_adds(b, "<th>");
                esc(b, cols[c]);
                buf_adds(b, "</th>");
            }
            buf_adds(b, "</tr></thead><tbody>\n");
            for (size_t r = 0; r < nr; r++) {
                buf_adds(b, "<tr><th>");
                esc(b, rows[r]);
                buf_adds(b, "</th>");
                for (size_t c = 0; c < ncol; c++) {
                    struct cell *hit = NULL;
                    for (size_t j = 0; j < m && !hit; j++)
                        if (!strcmp(group[j]->row, rows[r]) && !strcmp(group[j]->col, cols[c]))
                            hit = group[j];
                    if (!hit) {
                        buf_adds(b, "<td></td>");
                        continue;
                    }
                    buf_addf(b, "<td><a href=\"/jobs/%" PRId64 "\">",
                             (int64_t)json_integer_value(json_object_get(hit->job, "id")));
                    status_badge(b, hit->job);
                    buf_adds(b, "</a></td>");
                }
                buf_adds(b, "</tr>\n");
            }
            buf_adds(b, "</tbody></table>\n");
        }
        free(group);
    }
    for (size_t i = 0; i < nc; i++) {
        free(cells[i].base);
        free(cells[i].row);
        free(cells[i].col);
    }
    free(cells);
    free(done);
    free(rows);
    free(cols);
    free(tmp);
}

/* The log links of a job: the current attempt's page and raw text, and
 * every earlier attempt's. */
static void log_links(struct buf *b, json_t *job)
{
    int64_t id = json_integer_value(json_object_get(job, "id"));
    int64_t attempts = json_integer_value(json_object_get(job, "attempt"));
    buf_addf(b, "<a href=\"/jobs/%" PRId64 "\">log</a> <a href=\"/api/jobs/%" PRId64
                "/log\">raw</a>",
             id, id);
    for (int64_t a = 1; attempts > 1 && a <= attempts && a <= 50; a++)
        buf_addf(b, " <a href=\"/jobs/%" PRId64 "?attempt=%" PRId64 "\">#%" PRId64 "</a>", id,
                 a, a);
}

/* The page of a build: it shows no ages (times are absolute), so now is not
 * used; what it shows of the runners (waiting reasons) no version counts,
 * which the cache's second bounds. */
static bool render_build(struct server *srv, struct buf *b, int64_t build_id, uint64_t version,
                         int64_t now)
{
    (void)now;
    json_t *bd = store_build_get(srv->store, build_id);
    if (!bd)
        return false;
    char title[64];
    snprintf(title, sizeof(title), "yci: build %" PRId64, build_id);
    page_start(b, title, version);
    const char *bstatus = json_string_value(json_object_get(bd, "status"));
    buf_addf(b, "<section id=\"build\" data-live>\n<h1>Build #%" PRId64 " ", build_id);
    status_badge(b, bd);
    buf_addf(b,
             "</h1>\n<p class=\"actions\"><button type=\"button\" data-action=\"rebuild\" "
             "data-build=\"%" PRId64 "\">Rebuild</button>",
             build_id);
    if (!final_status(bstatus))
        buf_addf(b,
                 " <button type=\"button\" data-action=\"cancel\" data-build=\"%" PRId64
                 "\">Cancel</button>",
                 build_id);
    buf_adds(b,
             " <span class=\"action-result\" role=\"status\"></span></p>\n<table class=\"info\">");
    buf_adds(b, "<tr><th>repository</th><td>");
    esc_field(b, bd, "repo", "-");
    buf_adds(b, "</td></tr><tr><th>ref</th><td>");
    add_ref(b, bd);
    json_t *pull = json_object_get(bd, "pull_number");
    if (json_is_integer(pull) && json_is_true(json_object_get(bd, "untrusted")))
        buf_adds(b, " <span class=\"note\">untrusted: from a fork</span>");
    buf_adds(b, "</td></tr><tr><th>commit</th><td>");
    add_commit(b, bd);
    buf_adds(b, "</td></tr><tr><th>author</th><td>");
    esc_field(b, bd, "author", "-");
    buf_adds(b, "</td></tr><tr><th>created (UTC)</th><td>");
    add_time(b, json_object_get(bd, "created"));
    buf_adds(b, "</td></tr><tr><th>duration</th><td>");
    add_duration(b, json_object_get(bd, "duration_ms"));
    buf_adds(b, "</td></tr>");
    json_t *rebuild_of = json_object_get(bd, "rebuild_of");
    if (json_is_integer(rebuild_of))
        buf_addf(b,
                 "<tr><th>rebuild of</th><td><a href=\"/builds/%" PRId64 "\">#%" PRId64
                 "</a></td></tr>",
                 (int64_t)json_integer_value(rebuild_of), (int64_t)json_integer_value(rebuild_of));
    if (json_string_value(json_object_get(bd, "error"))) {
        buf_adds(b, "<tr><th>error</th><td class=\"error\">");
        esc_field(b, bd, "error", "");
        buf_adds(b, "</td></tr>");
    }
    buf_addf(b, "</table>\n<p><a href=\"/api/builds/%" PRId64 "\">JSON</a></p>\n", build_id);

    json_t *jobs = json_object_get(bd, "jobs");
    queued_reasons(srv, jobs, NULL);
    buf_adds(b, "<h2>Jobs</h2>\n");
    matrix_grids(b, jobs);
    buf_adds(b, "<table class=\"jobs\"><thead><tr><th>job</th><th>name</th><th>status</th>"
                "<th>exit code</th><th>duration</th><th>runner</th><th>retries</th>"
                "<th>logs</th></tr></thead><tbody>\n");
    size_t i;
    json_t *job;
    json_array_foreach(jobs, i, job)
    {
        int64_t id = json_integer_value(json_object_get(job, "id"));
        buf_addf(b, "<tr><td>%" PRId64 "</td><td><a href=\"/jobs/%" PRId64 "\">", id, id);
        esc_field(b, job, "name", "?");
        buf_adds(b, "</a></td>");
        status_cell(b, job);
        json_t *code = json_object_get(job, "exit_code");
        if (json_is_integer(code))
            buf_addf(b, "<td>%" PRId64 "</td><td>", (int64_t)json_integer_value(code));
        else
            buf_adds(b, "<td>-</td><td>");
        add_duration(b, json_object_get(job, "duration_ms"));
        buf_adds(b, "</td><td>");
        esc_field(b, job, "runner", "-");
        buf_adds(b, "</td><td>");
        int64_t max = json_integer_value(json_object_get(job, "max_retries"));
        if (max > 0)
            buf_addf(b, "%" PRId64 " of %" PRId64,
                     (int64_t)json_integer_value(json_object_get(job, "retries")), max);
        else
            buf_adds(b, "-");
        json_t *nb = json_object_get(job, "not_before");
        const char *st = json_string_value(json_object_get(job, "status"));
        if (json_is_integer(nb) && st && strcmp(st, "queued") == 0) {
            buf_adds(b, ", next at ");
            add_time(b, nb);
        }
        buf_adds(b, "</td><td>");
        log_links(b, job);
        buf_adds(b, "</td></tr>\n");
        static const char *const notes[] = {"error", "queued_reason"};
        for (size_t k = 0; k < 2; k++)
            if (json_string_value(json_object_get(job, notes[k]))) {
                buf_addf(b, "<tr><td></td><td colspan=\"7\" class=\"%s\">", notes[k]);
                esc_field(b, job, notes[k], "");
                buf_adds(b, "</td></tr>\n");
            }
    }
    buf_adds(b, "</tbody></table>\n");

    json_t *events = json_object_get(bd, "events");
    if (json_array_size(events) > 0) {
        buf_adds(b, "<h2>Events</h2>\n<ul class=\"events\">\n");
        json_t *ev;
        json_array_foreach(events, i, ev)
        {
            buf_adds(b, "<li>");
            add_time(b, json_object_get(ev, "time"));
            json_t *jid = json_object_get(ev, "job_id");
            if (json_is_integer(jid) && json_integer_value(jid) > 0)
                buf_addf(b, " job %" PRId64, (int64_t)json_integer_value(jid));
            buf_adds(b, ": ");
            esc_field(b, ev, "message", "");
            buf_adds(b, "</li>\n");
        }
        buf_adds(b, "</ul>\n");
    }
    buf_adds(b, "</section>\n");
    json_decref(bd);
    return true;
}

void web_build(struct server *srv, struct http_request *req, int64_t build_id)
{
    cached_page(srv, req, build_id, render_build);
}

/*
 * GET /jobs/{id}[?attempt=N]: the job, and an empty log view that app.js
 * fills (data-job, data-attempt, data-size, data-status tell it where to
 * start). Without a script, the raw log link still works.
 */
void web_job(struct server *srv, struct http_request *req, int64_t job_id)
{
    uint64_t version = store_version(srv->store); /* before what the page shows */
    json_t *job = store_job_get(srv->store, job_id);
    if (!job) {
        web_not_found(req);
        return;
    }
    int64_t current = json_integer_value(json_object_get(job, "attempt"));
    int64_t attempt = current;
    const char *q = http_req_query(req, "attempt");
    bool asked = q && parse_int64(q, 1, current > 0 ? current : 1, &attempt) == 0 && current > 0;
    if (!asked)
        attempt = current;
    json_t *one = json_array();
    json_array_append(one, job);
    queued_reasons(srv, one, NULL);
    json_decref(one);
    uint64_t size = 0;
    if (attempt > 0)
        logstore_size(srv->logs, job_id, (int)attempt, &size);
    const char *status = json_string_value(json_object_get(job, "status"));
    /* An earlier attempt is over, whatever the job does now. */
    const char *log_status = asked && attempt != current ? "ended" : status ? status : "";
    int64_t build_id = json_integer_value(json_object_get(job, "build_id"));

    struct buf b = BUF_INIT;
    char title[80];
    snprintf(title, sizeof title, "yci: job %" PRId64, job_id);
    page_start(&b, title, version);
    buf_adds(&b, "<section id=\"jobinfo\" data-live>\n<h1>");
    esc_field(&b, job, "name", "?");
    buf_adds(&b, " ");
    status_badge(&b, job);
    buf_addf(&b, "</h1>\n<table class=\"info\"><tr><th>build</th><td><a href=\"/builds/%" PRId64
                 "\">#%" PRId64 "</a></td></tr><tr><th>job</th><td>%" PRId64
                 "</td></tr><tr><th>attempt</th><td>",
             build_id, build_id, job_id);
    for (int64_t a = 1; a <= current && a <= 50; a++) {
        if (a == attempt)
            buf_addf(&b, "<strong>#%" PRId64 "</strong> ", a);
        else
            buf_addf(&b, "<a href=\"/jobs/%" PRId64 "?attempt=%" PRId64 "\">#%" PRId64 "</a> ",
                     job_id, a, a);
    }
    if (current == 0)
        buf_adds(&b, "none yet");
    buf_adds(&b, "</td></tr><tr><th>runner</th><td>");
    esc_field(&b, job, "runner", "-");
    buf_adds(&b, "</td></tr><tr><th>exit code</th><td>");
    json_t *code = json_object_get(job, "exit_code");
    if (json_is_integer(code))
        buf_addf(&b, "%" PRId64, (int64_t)json_integer_value(code));
    else
        buf_adds(&b, "-");
    buf_adds(&b, "</td></tr><tr><th>duration</th><td>");
    add_duration(&b, json_object_get(job, "duration_ms"));
    buf_adds(&b, "</td></tr>");
    static const char *const notes[] = {"error", "queued_reason"};
    static const char *const heads[] = {"error", "waiting"};
    for (size_t k = 0; k < 2; k++)
        if (json_string_value(json_object_get(job, notes[k]))) {
            buf_addf(&b, "<tr><th>%s</th><td class=\"%s\">", heads[k], notes[k]);
            esc_field(&b, job, notes[k], "");
            buf_adds(&b, "</td></tr>");
        }
    buf_adds(&b, "</table>\n</section>\n");

    char raw[96];
    snprintf(raw, sizeof raw, "/api/jobs/%" PRId64 "/log?attempt=%" PRId64, job_id, attempt);
    buf_addf(&b, "<p class=\"logbar\"><a href=\"%s\">raw log</a> "
                 "<button type=\"button\" data-action=\"top\">Jump to start</button> "
                 "<button type=\"button\" data-action=\"end\">Jump to end</button> "
                 "<span class=\"log-state\" role=\"status\"></span></p>\n",
             attempt > 0 ? raw : "#");
    buf_addf(&b, "<div id=\"log\" class=\"log\" data-job=\"%" PRId64 "\" data-attempt=\"%" PRId64
                 "\" data-asked=\"%d\" data-size=\"%" PRIu64 "\" data-status=\"",
             job_id, attempt, asked ? 1 : 0, size);
    esc(&b, log_status);
    buf_adds(&b, "\"></div>\n<noscript><p>The log view needs JavaScript: read the "
                 "<a href=\"");
    buf_adds(&b, attempt > 0 ? raw : "#");
    buf_adds(&b, "\">raw log</a>.</p></noscript>\n");
    json_decref(job);
    respond_page(req, 200, &b);
}

/* GET /static/{name} */
void web_static(struct http_request *req, const char *name)
{
    const struct embed_file *f = web_files;
    while (f->name && strcmp(f->name, name) != 0)
        f++;
    if (!f->name) {
        http_respond_error(req, 404, "no static file %s", name);
        return;
    }
    const char *dot = strrchr(name, '.');
    const char *type = "application/octet-stream";
    if (dot && strcmp(dot, ".js") == 0)
        type = "text/javascript; charset=utf-8";
    else if (dot && strcmp(dot, ".css") == 0)
        type = "text/css; charset=utf-8";
    else if (dot && strcmp(dot, ".svg") == 0)
        type = "image/svg+xml";
    char etag[24];
    snprintf(etag, sizeof etag, "\"%s\"", assets());
    http_add_header(req, "ETag", etag);
    /* Versioned URLs (?v=) never change; others are checked each time. */
    const char *v = http_req_query(req, "v");
    http_add_header(req, "Cache-Control", v && strcmp(v, assets()) == 0
                                              ? "public, max-age=31536000, immutable"
                                              : "no-cache");
    const char *inm = http_req_header(req, "If-None-Match");
    if (inm && strcmp(inm, etag) == 0) {
        http_respond(req, 304, type, "", 0);
        return;
    }
    http_respond(req, 200, type, f->data, f->size);
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
    uint64_t version = store_version(srv->store); /* before what the page shows */
    json_t *runners = store_runner_list(srv->store, false);
    int64_t now = time_now_ms();
    struct buf b = BUF_INIT;
    page_start(&b, "yci: runners", version);
    /* Heartbeats are not changes: the script also refreshes it every 5 s. */
    buf_adds(&b, "<section id=\"runners\" data-live data-refresh=\"5\">\n<h1>Runners</h1>\n");
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
            buf_addf(&b, "</td><td><span class=\"st st-%s\">%s</span></td><td>",
                     alive ? "passed" : "failed", alive ? "alive" : "dead");
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
                buf_addf(&b, "%s<a href=\"/jobs/%" PRId64 "\">", k ? ", " : "",
                         (int64_t)json_integer_value(json_object_get(j, "id")));
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
    buf_adds(&b, "</section>\n");
    json_decref(runners);
    respond_page(req, 200, &b);
}
