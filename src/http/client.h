/*
 * http/client — the HTTP client seam (libcurl lives behind this header).
 *
 * A struct http_client belongs to one thread at a time and keeps its
 * connection to the server alive between requests, which matters: a runner
 * makes several requests per job. base_url is prefixed to every path.
 *
 * Return values: 0 when an HTTP response arrived (whatever its status, which
 * is in res->status), a negative errno-style value when none did (connection
 * refused: -ECONNREFUSED, timeout: -ETIMEDOUT, cancelled: -ECANCELED, anything else: -EIO), with a
 * message in err.
 */
#ifndef YCI_HTTP_CLIENT_H
#define YCI_HTTP_CLIENT_H

#include <stdatomic.h>
#include <stddef.h>

#include "../lib/buf.h"

struct http_client;

struct http_result {
    long status;
    struct buf body;       /* the response body */
    struct buf location;   /* value of a Location header, if any */
    struct buf headers;    /* the final response's header lines, "Name: value\r\n" each */
};

#define HTTP_RESULT_INIT {0, BUF_INIT, BUF_INIT, BUF_INIT}

void http_result_release(struct http_result *res);

/* The value of the response header name (case-insensitive; the first one),
 * trimmed, copied into out (reset first). 1 when found, 0 when not. */
int http_result_header(const struct http_result *res, const char *name, struct buf *out);

/* base_url like "http://127.0.0.1:8888"; token, if not NULL, is sent as
 * "Authorization: Bearer <token>". Both are copied. */
struct http_client *http_client_new(const char *base_url, const char *token);
void http_client_free(struct http_client *c);
void http_client_set_token(struct http_client *c, const char *token);
const char *http_client_base_url(const struct http_client *c);

/* Make requests of c cancellable: while *flag is non-zero, a request in
 * flight ends within about a second with -ECANCELED (curl's progress callback
 * looks at the flag). flag must outlive c; NULL turns this off. Used so that a
 * stopping runner does not wait out its claim long-poll. */
void http_client_set_cancel(struct http_client *c, const atomic_int *flag);

/* One request. content_type may be NULL when there is no body. timeout_ms
 * bounds the whole request (0: no limit); connecting is bounded separately
 * by a few seconds. res is reset first. */
int http_client_request(struct http_client *c, const char *method, const char *path,
                        const char *content_type, const void *body, size_t len,
                        long timeout_ms, struct http_result *res, struct buf *err);

/* The same with extra request header lines ("If-None-Match: W/\"x\"";
 * NULL-terminated, may be NULL) for this request only. A path that starts
 * with "http://" or "https://" is a whole URL (GitHub's Link headers give
 * those) and base_url is not prefixed. */
int http_client_request_h(struct http_client *c, const char *method, const char *path,
                          const char *const *headers, const char *content_type, const void *body,
                          size_t len, long timeout_ms, struct http_result *res, struct buf *err);

/* Header lines sent with every request of c, after the token's (copied;
 * NULL clears them). For APIs that want their own Authorization, Accept. */
void http_client_set_headers(struct http_client *c, const char *const *headers);

/* Global set-up and tear-down of the HTTP library; call once from main. */
void http_client_global_init(void);
void http_client_global_cleanup(void);

#endif
