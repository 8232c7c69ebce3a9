/*
 * http/server — the HTTP server seam (libmicrohttpd lives behind this header).
 *
 * One struct http_server runs a small pool of threads (libmicrohttpd's
 * internal thread pool, epoll). For every request whose body has been read in
 * full the server calls the single handler given at start; the handler routes
 * by method and path itself (server/api.c).
 *
 * Responding. Every request gets exactly one response, through one of the
 * http_respond* functions. The handler may respond before it returns, or call
 * http_suspend() and return: the connection then waits (no thread is held)
 * until some thread — any thread — calls an http_respond* function on it.
 * This is how a runner's claim long-polls without costing a thread per runner.
 * After a response call the struct http_request must not be touched again by
 * the caller: the server frees it once the response is queued.
 *
 * If the peer disconnects while a request is suspended, the server calls the
 * cancel callback registered with http_suspend() (from a server thread); the
 * owner must then forget the request and must not respond to it. The cancel
 * callback and http_respond* on the same request are serialised by the owner
 * (see server/sched.c for the pattern: one mutex protects the waiter list).
 *
 * Precisely: the cancel callback runs on the server's watcher thread when the
 * peer closes a suspended connection, and from http_server_free() (on the
 * caller's thread) for every request still suspended; it is called without
 * any server lock held, at most once per request, and never after a response
 * was accepted. The request stays valid until the callback returns. An
 * http_respond* call that races with it (made before the callback returns,
 * typically by an owner that already took the request out of its list) is
 * safe: the response is dropped (an fd it carried is closed). After the
 * callback has returned the request may be freed at any moment, so the owner
 * must make sure no response call can start after that — calling
 * http_respond* under the same lock the cancel callback takes does it.
 * A disconnect is noticed through the socket closing (EPOLLRDHUP); the
 * server's idle timeout does not apply while a request is suspended.
 *
 * Limits. A body longer than the handler's limit (the body_limit callback, or
 * max_body) is answered 413 with a JSON error without calling the handler: at
 * once when the Content-Length says so, otherwise (chunked) once the body
 * ends, reading at most 4 MiB past the limit before closing the connection.
 *
 * Every response carries X-Content-Type-Options: nosniff. Errors that
 * libmicrohttpd answers by itself (a malformed request line, headers too big)
 * are not JSON.
 */
#ifndef YCI_HTTP_SERVER_H
#define YCI_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../lib/buf.h"

struct http_server;
struct http_request;

typedef void (*http_handler_fn)(struct http_request *req, void *ctx);
/* Return the largest body accepted for this method and path. */
typedef size_t (*http_body_limit_fn)(const char *method, const char *path, void *ctx);
typedef void (*http_cancel_fn)(struct http_request *req, void *arg);

struct http_server_config {
    const char *listen;            /* "host:port"; port 0 picks a free port */
    unsigned threads;              /* worker threads; 0 picks 2 */
    size_t max_body;               /* default body limit; 0 means YCI_MAX_JSON_BODY */
    http_body_limit_fn body_limit; /* optional per-route limit */
    http_handler_fn handler;
    void *ctx;             /* passed to handler and body_limit */
    unsigned idle_timeout; /* seconds an idle connection is kept; 0 picks 120 */
};

/* Bind and start serving. On failure *out is untouched and err says why. */
int http_server_start(const struct http_server_config *cfg, struct http_server **out,
                      struct buf *err);
/* Stop accepting, finish with the threads and free. Suspended requests are
 * cancelled (their cancel callbacks run, on this thread) and their connections
 * closed, so free the server before whatever its cancel callbacks touch.
 * NULL does nothing. */
void http_server_free(struct http_server *srv);
/* The port actually bound (useful with port 0). */
uint16_t http_server_port(const struct http_server *srv);

/* Request accessors; strings are owned by the request. */
const char *http_req_method(const struct http_request *req);
const char *http_req_path(const struct http_request *req); /* decoded, no query */
/* A query argument, or NULL when absent. */
const char *http_req_query(const struct http_request *req, const char *name);
/* A header (case-insensitive name), or NULL. */
const char *http_req_header(const struct http_request *req, const char *name);
const char *http_req_body(const struct http_request *req, size_t *len);
/* The peer's address as text, e.g. "127.0.0.1". */
const char *http_req_peer(const struct http_request *req);

/* Add a response header; call before the http_respond* call. */
void http_add_header(struct http_request *req, const char *name, const char *value);

/* Respond with a copy of body. */
void http_respond(struct http_request *req, int status, const char *content_type, const void *body,
                  size_t len);
/* Respond with b's contents; takes ownership of b's memory (b is left empty). */
void http_respond_buf(struct http_request *req, int status, const char *content_type,
                      struct buf *b);
/* Respond with len bytes at body without copying them, for a body shared
 * by many responses (the page cache, server/web.c). The bytes must stay
 * valid and unchanged until done(arg) is called: exactly once, when the
 * server no longer needs them (the response was sent, the connection closed,
 * or the response dropped), from a server thread or in http_server_free().
 * done may be NULL. */
void http_respond_shared(struct http_request *req, int status, const char *content_type,
                         const void *body, size_t len, void (*done)(void *arg), void *arg);
/* Respond with len bytes of fd from offset; takes ownership of fd. */
void http_respond_fd(struct http_request *req, int status, const char *content_type, int fd,
                     uint64_t offset, uint64_t len);
/* Respond with whatever can be read from fd until EOF (chunked); takes ownership
 * of fd (it is made non-blocking; no server thread ever waits on it: the
 * connection sleeps until the pipe has data). Used for git upload-pack output. */
void http_respond_pipe(struct http_request *req, int status, const char *content_type, int fd);
/* Respond {"error": message} with the given status. */
void http_respond_error(struct http_request *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keep the connection open without a response; see the header comment. Only
 * valid inside the handler; cancel may be NULL. If the handler (or another
 * thread) responds before the handler returns, the request is simply answered.
 * If the server is stopping, cancel runs at once and the client gets a 503. */
void http_suspend(struct http_request *req, http_cancel_fn cancel, void *arg);

#endif
