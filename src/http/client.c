/*
 * http/client — libcurl behind http/client.h.
 *
 * One easy handle per client, reset (not recreated) before each request:
 * curl_easy_reset() keeps the connection cache, so consecutive requests to
 * the same server reuse one keep-alive connection.
 */
#include "http/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/xalloc.h"
#include "lib/banned.h"

/* Connecting is bounded separately from the request's own timeout. */
#define HTTP_CONNECT_TIMEOUT_MS 5000L
/* A body over this size is sent from an upload buffer of this size (curl's
 * default is 64 KiB): a MiB of log then goes out in one or two send() calls
 * instead of sixteen, each with two poll() calls around it. Smaller bodies
 * go with the request's headers and never allocate the buffer. */
#define HTTP_UPLOAD_BUFFER (1024 * 1024L)

struct http_client {
    CURL *curl;
    char *base_url;
    char *auth; /* "Authorization: Bearer ..." or NULL */
    char errbuf[CURL_ERROR_SIZE];
    const atomic_int *cancel; /* see http_client_set_cancel() */
    char **headers;           /* see http_client_set_headers(); NULL-terminated */
};

void http_result_release(struct http_result *res)
{
    buf_release(&res->body);
    buf_release(&res->location);
    buf_release(&res->headers);
    res->status = 0;
}

int http_result_header(const struct http_result *res, const char *name, struct buf *out)
{
    buf_reset(out);
    size_t nlen = strlen(name);
    const char *p = res->headers.data, *end = p ? p + res->headers.len : NULL;
    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        if ((size_t)(line_end - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            while (v < line_end && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = line_end;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            buf_add(out, v, (size_t)(ve - v));
            if (!out->data)
                buf_adds(out, "");
            return 1;
        }
        p = eol ? eol + 1 : end;
    }
    return 0;
}

void http_client_set_headers(struct http_client *c, const char *const *headers)
{
    if (c->headers)
        for (char **h = c->headers; *h; h++)
            free(*h);
    free(c->headers);
    c->headers = NULL;
    if (!headers)
        return;
    size_t n = 0;
    while (headers[n])
        n++;
    c->headers = xcalloc(n + 1, sizeof *c->headers);
    for (size_t i = 0; i < n; i++)
        c->headers[i] = xstrdup(headers[i]);
}

static void set_token(struct http_client *c, const char *token)
{
    free(c->auth);
    c->auth = token ? xasprintf("Authorization: Bearer %s", token) : NULL;
}

struct http_client *http_client_new(const char *base_url, const char *token)
{
    struct http_client *c = xcalloc(1, sizeof(*c));
    c->curl = curl_easy_init();
    if (!c->curl) {
        /* Only out of memory (or no curl_global_init): as fatal as xmalloc. */
        fputs("fatal: curl_easy_init failed\n", stderr);
        abort();
    }
    /* No trailing slash: paths start with one. */
    size_t n = strlen(base_url);
    while (n && base_url[n - 1] == '/')
        n--;
    c->base_url = xstrndup(base_url, n);
    set_token(c, token);
    return c;
}

void http_client_free(struct http_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    http_client_set_headers(c, NULL);
    free(c->base_url);
    free(c->auth);
    free(c);
}

void http_client_set_token(struct http_client *c, const char *token)
{
    set_token(c, token);
}

const char *http_client_base_url(const struct http_client *c)
{
    return c->base_url;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_result *res = arg;
    size_t n = size * nmemb;
    if (buf_add(&res->body, data, n) < 0)
        return 0; /* a cap set by the caller: abort the transfer */
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_result *res = arg;
    size_t n = size * nmemb;
    static const char name[] = "location:";
    if (n > 5 && !strncmp(data, "HTTP/", 5)) {
        /* A new status line (after a 100 Continue, say): forget the last. */
        buf_reset(&res->location);
        buf_reset(&res->headers);
        return n;
    }
    if (n > 2 && res->headers.len < 256 * 1024)
        buf_add(&res->headers, data, n);
    if (n >= sizeof(name) - 1 && !strncasecmp(data, name, sizeof(name) - 1)) {
        const char *v = data + sizeof(name) - 1;
        const char *end = data + n;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        buf_reset(&res->location);
        buf_add(&res->location, v, (size_t)(end - v));
    }
    return n;
}

void http_client_set_cancel(struct http_client *c, const atomic_int *flag)
{
    c->cancel = flag;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    const struct http_client *c = arg;
    return atomic_load(c->cancel) ? 1 : 0;
}

int http_client_request(struct http_client *c, const char *method, const char *path,
                        const char *content_type, const void *body, size_t len, long timeout_ms,
                        struct http_result *res, struct buf *err)
{
    return http_client_request_h(c, method, path, NULL, content_type, body, len, timeout_ms, res,
                                 err);
}

int http_client_request_h(struct http_client *c, const char *method, const char *path,
                          const char *const *headers, const char *content_type, const void *body,
                          size_t len, long timeout_ms, struct http_result *res, struct buf *err)
{
    CURL *h = c->curl;
    struct curl_slist *hdrs = NULL;
    bool whole = !strncmp(path, "http://", 7) || !strncmp(path, "https://", 8);
    char *url = whole ? xstrdup(path) : xasprintf("%s%s", c->base_url, path);
    char *ct = NULL;
    int r = 0;

    buf_reset(&res->body);
    buf_reset(&res->location);
    buf_reset(&res->headers);
    res->status = 0;

    curl_easy_reset(h);
    c->errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, HTTP_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 0L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "yci/" YCI_VERSION);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, res);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, res);
    if (c->cancel) {
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
    }

    bool has_body = body != NULL || len > 0;
    if (!strcmp(method, "GET") && !has_body) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (!strcmp(method, "HEAD")) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(method, "POST") || !strcmp(method, "PUT") || has_body) {
        /* POSTFIELDS with an explicit size sends exactly len bytes (none
         * for len 0, with "Content-Length: 0"). */
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, len ? body : "");
        if (len > 64 * 1024)
            curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, HTTP_UPLOAD_BUFFER);
        if (strcmp(method, "POST"))
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (!content_type)
            hdrs = curl_slist_append(hdrs, "Content-Type:"); /* none, not a form */
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }

    /* No "Expect: 100-continue" round trip before a body. */
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (content_type) {
        ct = xasprintf("Content-Type: %s", content_type);
        hdrs = curl_slist_append(hdrs, ct);
    }
    if (c->auth)
        hdrs = curl_slist_append(hdrs, c->auth);
    for (char **x = c->headers; x && *x; x++)
        hdrs = curl_slist_append(hdrs, *x);
    for (const char *const *x = headers; x && *x; x++)
        hdrs = curl_slist_append(hdrs, *x);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);

    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        switch (rc) {
        case CURLE_COULDNT_CONNECT:
            r = -ECONNREFUSED;
            break;
        case CURLE_OPERATION_TIMEDOUT:
            r = -ETIMEDOUT;
            break;
        case CURLE_ABORTED_BY_CALLBACK:
            r = -ECANCELED;
            break;
        default:
            r = -EIO;
            break;
        }
        buf_setf(err, "%s %s: %s", method, url, c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
        buf_reset(&res->body);
        buf_reset(&res->location);
        buf_reset(&res->headers);
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);

out:
    /* The handle keeps pointers to these until the next reset. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    free(ct);
    free(url);
    return r;
}

void http_client_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void http_client_global_cleanup(void)
{
    curl_global_cleanup();
}
