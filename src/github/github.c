#include "github/github.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/client.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "lib/banned.h"

/* The longest a rate limit makes us wait, whatever the headers say. */
#define GITHUB_MAX_WAIT_S 3600
/* Largest answer read (a page of 100 pull requests is ~1.5 MB). */
#define GITHUB_MAX_BODY (32 * 1024 * 1024)
/* GitHub's limit on a status's description. */
#define GITHUB_DESCRIPTION_MAX 140

struct github {
    struct http_client *http;
    char *api_url;
    /* Per repository: {"etags": [...], "pages": [[...], ...], "next": [...]} */
    json_t *cache;
};

int github_config_from_env(struct github_config *cfg, const char **repositories)
{
    memset(cfg, 0, sizeof *cfg);
    const char *v = getenv("GITHUB_API_URL");
    cfg->api_url = v && *v ? v : NULL;
    v = getenv("GITHUB_ACCESS_TOKEN");
    cfg->token = v && *v ? v : NULL;
    v = getenv("GITHUB_USERNAME");
    cfg->username = v && *v ? v : NULL;
    v = getenv("GITHUB_PASSWORD");
    cfg->password = v && *v ? v : NULL;
    v = getenv("GITHUB_REPOSITORIES");
    if (repositories)
        *repositories = v && *v ? v : NULL;
    return v && strspn(v, " \t\n") < strlen(v);
}

/* The next name of a GITHUB_REPOSITORIES list at *p (commas or white space
 * between), its length in *len; NULL at the end. */
static const char *list_next(const char **p, size_t *len)
{
    if (!*p)
        return NULL;
    const char *name = *p + strspn(*p, " \t\n,");
    *len = strcspn(name, " \t\n,");
    *p = name + *len;
    return *len ? name : NULL;
}

bool github_list_has(const char *list, const char *full)
{
    size_t n = strlen(full), len;
    for (const char *name; (name = list_next(&list, &len));)
        if (len == n && strncasecmp(name, full, n) == 0)
            return true;
    return false;
}

json_t *github_list_json(const char *list)
{
    json_t *a = json_array();
    size_t len;
    for (const char *name; (name = list_next(&list, &len));) {
        char *lower = xstrndup(name, len);
        for (char *c = lower; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        json_array_append_new(a, json_string(lower));
        free(lower);
    }
    return a;
}

static bool owner_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

bool github_full_name_valid(const char *s)
{
    const char *slash = s ? strchr(s, '/') : NULL;
    if (!slash || slash == s || slash - s > 39 || !slash[1] || strlen(slash + 1) > 100)
        return false;
    for (const char *p = s; p < slash; p++)
        if (!owner_char(*p))
            return false;
    if (strcmp(slash + 1, ".") == 0 || strcmp(slash + 1, "..") == 0)
        return false;
    for (const char *p = slash + 1; *p; p++)
        if (!owner_char(*p) && *p != '_' && *p != '.')
            return false;
    return true;
}

/* "Authorization: Basic base64(user:password)" */
static char *basic_auth(const char *user, const char *password)
{
    char *pair = xasprintf("%s:%s", user, password ? password : "");
    size_t len = strlen(pair);
    unsigned char *b64 = xmalloc(4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock(b64, (const unsigned char *)pair, (int)len);
    char *auth = xasprintf("Authorization: Basic %s", b64);
    free(b64);
    free(pair);
    return auth;
}

/* The scheme and host of url ("https", "github.com"), without port or user. */
static bool url_parts(const char *url, char *scheme, size_t ns, char *host, size_t nh)
{
    const char *sep = strstr(url, "://");
    if (!sep || (size_t)(sep - url) >= ns)
        return false;
    snprintf(scheme, ns, "%.*s", (int)(sep - url), url);
    const char *h = sep + 3;
    size_t len = strcspn(h, "/?#");
    const char *at = memchr(h, '@', len);
    if (at) {
        len -= (size_t)(at + 1 - h);
        h = at + 1;
    }
    size_t hl = strcspn(h, ":/?#");
    if (hl > len)
        hl = len;
    if (hl == 0 || hl >= nh)
        return false;
    snprintf(host, nh, "%.*s", (int)hl, h);
    return true;
}

bool github_url_trusted(const struct github_config *cfg, const char *url)
{
    const char *api = cfg->api_url ? cfg->api_url : GITHUB_API_URL_DEFAULT;
    char s1[16], h1[256], s2[16], h2[256];
    if (!url || !url_parts(api, s1, sizeof s1, h1, sizeof h1) ||
        !url_parts(url, s2, sizeof s2, h2, sizeof h2))
        return false;
    /* api.github.com serves the API of github.com */
    const char *web = strcasecmp(h1, "api.github.com") == 0 ? "github.com" : h1;
    if (strcasecmp(h2, web) != 0 && strcasecmp(h2, h1) != 0)
        return false;
    /* https, or the API's own scheme (an http:// Enterprise or test server) */
    return strcmp(s2, "https") == 0 || strcmp(s2, s1) == 0;
}

char *github_git_header(const struct github_config *cfg)
{
    if (cfg->token)
        return basic_auth("x-access-token", cfg->token);
    if (cfg->username)
        return basic_auth(cfg->username, cfg->password);
    return NULL;
}

struct github *github_new(const struct github_config *cfg)
{
    struct github *gh = xcalloc(1, sizeof *gh);
    const char *url = cfg->api_url ? cfg->api_url : GITHUB_API_URL_DEFAULT;
    size_t n = strlen(url);
    while (n && url[n - 1] == '/')
        n--;
    gh->api_url = xstrndup(url, n);
    gh->http = http_client_new(gh->api_url, NULL);
    gh->cache = json_object();

    char *auth = NULL;
    if (cfg->token) {
        auth = xasprintf("Authorization: token %s", cfg->token);
    } else if (cfg->username) {
        auth = basic_auth(cfg->username, cfg->password);
    }
    const char *headers[] = {"Accept: application/vnd.github+json",
                             "X-GitHub-Api-Version: 2022-11-28", auth, NULL};
    http_client_set_headers(gh->http, headers);
    free(auth);
    return gh;
}

void github_free(struct github *gh)
{
    if (!gh)
        return;
    http_client_free(gh->http);
    json_decref(gh->cache);
    free(gh->api_url);
    free(gh);
}

/* GitHub's message in an error body, or the status. */
static void answer_error(const struct http_result *res, const char *what, struct buf *err)
{
    json_t *j = res->body.len ? json_loadb(res->body.data, res->body.len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(j, "message"));
    buf_setf(err, "%s: GitHub answered %ld%s%.200s", what, res->status, msg ? ": " : "",
             msg ? msg : "");
    json_decref(j);
}

static int64_t header_int(const struct http_result *res, const char *name, int64_t dflt)
{
    struct buf v = BUF_INIT;
    int64_t out = dflt;
    if (http_result_header(res, name, &v) && parse_int64(v.data, 0, INT64_MAX / 1000, &out) < 0)
        out = dflt;
    buf_release(&v);
    return out;
}

/*
 * Map an answer that is not a success to an error code, setting
 * *retry_at_ms for the ones to retry (0: the caller's own backoff).
 */
static int classify(const struct http_result *res, const char *what, int64_t *retry_at_ms,
                    struct buf *err)
{
    int64_t now = time_now_ms();
    *retry_at_ms = 0;
    answer_error(res, what, err);
    int64_t retry_after = header_int(res, "retry-after", -1);
    int64_t remaining = header_int(res, "x-ratelimit-remaining", -1);
    int64_t reset = header_int(res, "x-ratelimit-reset", -1);
    if (res->status == 429 || (res->status == 403 && (retry_after >= 0 || remaining == 0))) {
        /* At most an hour: a broken proxy's header must not stop us for years. */
        if (retry_after > GITHUB_MAX_WAIT_S)
            retry_after = GITHUB_MAX_WAIT_S;
        if (retry_after >= 0)
            *retry_at_ms = now + retry_after * 1000;
        else if (reset > 0 && reset < now / 1000 + GITHUB_MAX_WAIT_S)
            *retry_at_ms = reset * 1000 + 1000;
        else if (reset > 0)
            *retry_at_ms = now + GITHUB_MAX_WAIT_S * 1000;
        else
            *retry_at_ms = now + 60000;
        buf_addf(err, " (rate limited: retrying in %" PRId64 " s)",
                 (*retry_at_ms - now + 999) / 1000);
        return -EAGAIN;
    }
    if (res->status >= 500)
        return -EAGAIN;
    if (res->status == 401 || res->status == 403)
        return -EACCES;
    if (res->status == 404)
        return -ENOENT;
    return -EINVAL;
}

/* Every call starts here: no retry time yet, and a name GitHub could have. */
static int name_checked(const char *full_name, int64_t *retry_at_ms, struct buf *err)
{
    *retry_at_ms = 0;
    if (github_full_name_valid(full_name))
        return 0;
    buf_setf(err, "'%s' is not a GitHub repository name (owner/name)", full_name);
    return -EINVAL;
}

static int request(struct github *gh, const char *method, const char *path,
                   const char *const *headers, const char *body, struct http_result *res,
                   int64_t *retry_at_ms, struct buf *err)
{
    res->body.max = GITHUB_MAX_BODY;
    int r = http_client_request_h(gh->http, method, path, headers,
                                  body ? "application/json" : NULL, body,
                                  body ? strlen(body) : 0, GITHUB_TIMEOUT_MS, res, err);
    if (r < 0) {
        *retry_at_ms = 0;
        return -EAGAIN; /* no answer: the network, or GitHub, is down */
    }
    return 0;
}

/* The URL of the Link header's rel="next", if it stays under the API URL. */
static char *link_next(const struct github *gh, const struct http_result *res)
{
    struct buf link = BUF_INIT;
    char *next = NULL;
    if (!http_result_header(res, "link", &link)) {
        buf_release(&link);
        return NULL;
    }
    const char *p = link.data;
    while (p && *p && !next) {
        const char *lt = strchr(p, '<'), *gt = lt ? strchr(lt, '>') : NULL;
        if (!gt)
            break;
        const char *end = strchr(gt, ',');
        size_t seglen = end ? (size_t)(end - gt) : strlen(gt);
        char *seg = xstrndup(gt, seglen);
        if (strstr(seg, "rel=\"next\""))
            next = xstrndup(lt + 1, (size_t)(gt - lt - 1));
        free(seg);
        p = end ? end + 1 : NULL;
    }
    buf_release(&link);
    size_t n = strlen(gh->api_url);
    if (next && (strncmp(next, gh->api_url, n) != 0 || (next[n] != '/' && next[n] != '?'))) {
        free(next); /* elsewhere: never send our credentials there */
        next = NULL;
    }
    return next;
}

int github_open_pulls(struct github *gh, const char *full_name, json_t **pulls,
                      int64_t *retry_at_ms, struct buf *err)
{
    int64_t ignored;
    if (!retry_at_ms)
        retry_at_ms = &ignored;
    if (name_checked(full_name, retry_at_ms, err) < 0)
        return -EINVAL;
    json_t *cached = json_object_get(gh->cache, full_name);
    json_t *etags = json_array(), *pages = json_array(), *nexts = json_array();
    json_t *all = json_array();
    char *url = xasprintf("/repos/%s/pulls?state=open&sort=created&direction=asc&per_page=%d",
                          full_name, GITHUB_PER_PAGE);
    struct http_result res = HTTP_RESULT_INIT;
    struct buf etag = BUF_INIT;
    int r = 0;
    bool partial = false;
    for (int page = 0; url; page++) {
        if (page >= GITHUB_MAX_PAGES) {
            buf_setf(err, "%s has more than %d pages of open pull requests; reading the first",
                     full_name, GITHUB_MAX_PAGES);
            partial = true;
            break;
        }
        const char *old_etag =
            json_string_value(json_array_get(json_object_get(cached, "etags"), (size_t)page));
        const char *old_url =
            json_string_value(json_array_get(json_object_get(cached, "urls"), (size_t)page));
        char *inm = old_etag && old_url && strcmp(old_url, url) == 0
                        ? xasprintf("If-None-Match: %s", old_etag)
                        : NULL;
        const char *headers[] = {inm, NULL};
        r = request(gh, "GET", url, headers, NULL, &res, retry_at_ms, err);
        free(inm);
        if (r < 0)
            break;
        json_t *items = NULL;
        char *next = NULL;
        if (res.status == 304 && old_etag) {
            items = json_incref(
                json_array_get(json_object_get(cached, "pages"), (size_t)page));
            const char *n =
                json_string_value(json_array_get(json_object_get(cached, "next"), (size_t)page));
            next = n ? xstrdup(n) : NULL;
            json_array_append_new(etags, json_string(old_etag));
        } else if (res.status == 200) {
            items = json_loadb(res.body.data ? res.body.data : "", res.body.len, 0, NULL);
            next = link_next(gh, &res);
            if (http_result_header(&res, "etag", &etag))
                json_array_append_new(etags, json_string(etag.data));
            else
                json_array_append_new(etags, json_null());
        } else {
            r = classify(&res, full_name, retry_at_ms, err);
            break;
        }
        if (!json_is_array(items)) {
            json_decref(items);
            free(next);
            buf_setf(err, "%s: GitHub's list of pull requests is not a JSON array", full_name);
            r = -EPROTO;
            break;
        }
        json_array_extend(all, items);
        json_array_append_new(pages, items);
        json_array_append_new(nexts, next ? json_string(next) : json_null());
        free(url);
        url = next;
    }
    if (r == 0) {
        /* Remember each page's URL too: a 304 is only valid for the same URL. */
        json_t *urls = json_array();
        json_t *first = json_sprintf("/repos/%s/pulls?state=open&sort=created&direction=asc"
                                     "&per_page=%d",
                                     full_name, GITHUB_PER_PAGE);
        json_array_append_new(urls, first);
        size_t i;
        json_t *n;
        json_array_foreach(nexts, i, n) {
            if (json_is_string(n))
                json_array_append(urls, n);
        }
        json_object_set_new(gh->cache, full_name,
                            json_pack("{s:o, s:o, s:o, s:o}", "etags", etags, "pages", pages,
                                      "next", nexts, "urls", urls));
        *pulls = all;
    } else {
        json_decref(etags);
        json_decref(pages);
        json_decref(nexts);
        json_decref(all);
    }
    free(url);
    buf_release(&etag);
    http_result_release(&res);
    return r == 0 && partial ? 1 : r;
}

char *github_repo_name(const char *full_name)
{
    char *name = xstrdup(full_name);
    char *slash = strchr(name, '/');
    if (slash)
        *slash = '.';
    return name;
}

int github_get_repo(struct github *gh, const char *full_name, json_t **repo, int64_t *retry_at_ms,
                    struct buf *err)
{
    int64_t ignored;
    if (!retry_at_ms)
        retry_at_ms = &ignored;
    if (name_checked(full_name, retry_at_ms, err) < 0)
        return -EINVAL;
    char *path = xasprintf("/repos/%s", full_name);
    struct http_result res = HTTP_RESULT_INIT;
    int r = request(gh, "GET", path, NULL, NULL, &res, retry_at_ms, err);
    if (r == 0 && res.status != 200)
        r = classify(&res, full_name, retry_at_ms, err);
    if (r == 0) {
        json_t *j = json_loadb(res.body.data ? res.body.data : "", res.body.len, 0, NULL);
        if (!json_is_object(j) || !json_is_string(json_object_get(j, "clone_url"))) {
            json_decref(j);
            buf_setf(err, "%s: GitHub's answer is not a repository", full_name);
            r = -EPROTO;
        } else {
            *repo = j;
        }
    }
    free(path);
    http_result_release(&res);
    return r;
}

int github_create_status(struct github *gh, const char *full_name, const char *sha,
                         const char *state, const char *target_url, const char *description,
                         const char *context, int64_t *retry_at_ms, struct buf *err)
{
    int64_t ignored;
    if (!retry_at_ms)
        retry_at_ms = &ignored;
    *retry_at_ms = 0;
    if (!github_full_name_valid(full_name) || !sha_valid(sha)) {
        buf_setf(err, "bad repository or commit for a status");
        return -EINVAL;
    }
    /* Cut the description at a character boundary. */
    char desc[GITHUB_DESCRIPTION_MAX * 4 + 1] = "";
    if (description) {
        size_t bytes = 0, chars = 0;
        while (description[bytes] && chars < GITHUB_DESCRIPTION_MAX) {
            bytes++;
            while ((description[bytes] & 0xC0) == 0x80)
                bytes++;
            chars++;
        }
        snprintf(desc, sizeof desc, "%.*s", (int)bytes, description);
    }
    json_t *body = json_pack("{s:s, s:s, s:s?, s:s?}", "state", state, "context", context,
                             "target_url", target_url, "description",
                             description ? desc : NULL);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        buf_setf(err, "a status that is not valid UTF-8");
        return -EINVAL;
    }
    char *path = xasprintf("/repos/%s/statuses/%s", full_name, sha);
    struct http_result res = HTTP_RESULT_INIT;
    int r = request(gh, "POST", path, NULL, text, &res, retry_at_ms, err);
    if (r == 0 && res.status != 201 && res.status != 200)
        r = classify(&res, full_name, retry_at_ms, err);
    free(path);
    free(text);
    http_result_release(&res);
    return r;
}
