/*
 * http/server — libmicrohttpd behind http/server.h.
 *
 * Threads. libmicrohttpd runs a pool of worker threads (epoll, one event loop
 * each); the access handler, the content readers and the completion callback
 * run there. One more thread of ours, the watcher, waits on an epoll set for
 * the two things libmicrohttpd does not watch while a connection is
 * suspended: the peer closing a suspended connection (so its owner hears of
 * it through the cancel callback), and a pipe response's pipe becoming
 * readable (so its connection is resumed instead of busy-waiting).
 *
 * A request's life, in req->state, all transitions under srv->lock:
 *
 *   BODY ──handler called──▶ HANDLER ──http_respond──▶ RESPONDED ──queued──▶ DONE
 *                              │                          ▲
 *                              └─http_suspend─▶ SUSPENDING┤ (responded before the handler
 *                                                 │       │  returned: no suspension at all)
 *                                 handler returns ▼       │
 *                                              SUSPENDED ─┘ (http_respond from any thread:
 *                                                 │          store + MHD_resume_connection)
 *                      peer closed / shutdown     ▼
 *                                             CANCELLING ──cancel returned──▶ CANCELLED
 *
 * MHD_resume_connection is only ever called by whoever moves a request out of
 * SUSPENDED (and MHD_suspend_connection only by the worker moving it into
 * it), both under srv->lock, so resume always follows suspend exactly once.
 * When libmicrohttpd calls the access handler again after a resume, the
 * stored response is queued. The request is freed by the completion callback
 * (MHD_OPTION_NOTIFY_COMPLETED), which runs once libmicrohttpd is done with
 * the request, whatever happened.
 *
 * Timeouts. libmicrohttpd does not time out suspended connections (the
 * timeout restarts on resume), so a long-poll may last longer than the idle
 * timeout.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/limits.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "lib/banned.h"

/* Seconds a connection may sit idle (not counting suspension). */
#define HTTP_IDLE_TIMEOUT 120
/* After a body without a Content-Length (chunked) passed its limit, how much
 * more we read and throw away so that the 413 can be sent once it ends (MHD
 * 0.9.75 refuses to queue a response in the middle of a body); past this the
 * connection is just closed. A Content-Length over the limit is answered 413
 * at once, without reading the body (MHD then closes the connection). */
#define HTTP_DISCARD_MAX (4u * 1024 * 1024)
/* Most connections at once (further bounded by RLIMIT_NOFILE). */
#define HTTP_MAX_CONNECTIONS 16384
/* Bytes the pipe reader asks for at a time. */
#define HTTP_PIPE_BLOCK (64 * 1024)

enum req_state {
    RS_BODY,       /* reading the body */
    RS_HANDLER,    /* the handler is running */
    RS_SUSPENDING, /* the handler called http_suspend and has not returned yet */
    RS_SUSPENDED,  /* MHD_suspend_connection done; waiting for a response */
    RS_RESPONDED,  /* a response is stored in req->resp, not yet queued */
    RS_CANCELLING, /* the cancel callback is running */
    RS_CANCELLED,  /* cancelled and resumed; the next access handler call ends it */
    RS_DONE,       /* a response was queued */
};

enum wait_kind { WAIT_PEER, WAIT_PIPE };

/* Something the watcher thread waits for; linked in srv->waits while armed.
 * The epoll key is id (never a pointer), so an event that arrives after the
 * wait was disarmed and its memory freed finds nothing and is ignored. */
struct wait {
    struct wait *prev, *next;
    uint64_t id; /* 0 when not armed */
    enum wait_kind kind;
    int fd;
    struct MHD_Connection *conn;
};

/* A response header added before the response: one allocation, the name
 * and then the value in name[]. */
struct hdr {
    struct hdr *next;
    const char *value; /* in name[], past the name's NUL */
    char name[];
};

struct http_request {
    struct http_server *srv;
    struct MHD_Connection *conn;
    const char *method; /* owned by libmicrohttpd, valid for the request */
    const char *path;
    char peer[INET6_ADDRSTRLEN];
    size_t limit;
    bool too_large;
    size_t discarded;
    struct buf body;
    struct hdr *headers;
    enum req_state state;
    struct MHD_Response *resp; /* RS_RESPONDED */
    unsigned status;
    http_cancel_fn cancel;
    void *cancel_arg;
    unsigned cancelled_status; /* RS_CANCELLED: 0 closes, else an error status */
    struct wait wait;          /* WAIT_PEER while RS_SUSPENDED */
};

struct pipe_reader {
    struct http_server *srv;
    struct wait wait; /* WAIT_PIPE; wait.fd is the pipe */
};

struct http_server {
    struct MHD_Daemon *daemon;
    uint16_t port;
    size_t max_body;
    http_body_limit_fn body_limit;
    http_handler_fn handler;
    void *ctx;

    pthread_mutex_t lock; /* everything below, and every req->state */
    bool stopping;
    struct wait *waits;
    uint64_t next_id;

    int epfd;
    int evfd;
    pthread_t watcher;
    bool watcher_started;
};

static __thread struct buf *start_log; /* MHD messages while starting */

static void lock(struct http_server *srv)
{
    pthread_mutex_lock(&srv->lock);
}

static void unlock(struct http_server *srv)
{
    pthread_mutex_unlock(&srv->lock);
}

static void oom(void)
{
    fputs("fatal: out of memory (libmicrohttpd)\n", stderr);
    abort();
}

/* ---- the watcher ------------------------------------------------------ */

/* Arm w (srv->lock held). */
static int watch_add(struct http_server *srv, struct wait *w)
{
    struct epoll_event ev = {0};
    w->id = ++srv->next_id;
    ev.data.u64 = w->id;
    ev.events = w->kind == WAIT_PEER ? EPOLLRDHUP : (EPOLLIN | EPOLLONESHOT);
    if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, w->fd, &ev) < 0) {
        int e = errno;
        w->id = 0;
        return -e;
    }
    w->prev = NULL;
    w->next = srv->waits;
    if (srv->waits)
        srv->waits->prev = w;
    srv->waits = w;
    return 0;
}

/* Disarm w if armed (srv->lock held). */
static void watch_del(struct http_server *srv, struct wait *w)
{
    if (!w->id)
        return;
    epoll_ctl(srv->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    if (w->prev)
        w->prev->next = w->next;
    else
        srv->waits = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->id = 0;
}

static struct wait *watch_find(struct http_server *srv, uint64_t id)
{
    for (struct wait *w = srv->waits; w; w = w->next)
        if (w->id == id)
            return w;
    return NULL;
}

#define REQ_OF_WAIT(w) ((struct http_request *)((char *)(w)-offsetof(struct http_request, wait)))

/* Run req's cancel callback (req is RS_CANCELLING, srv->lock not held), then
 * resume its connection so libmicrohttpd ends it: closed when status is 0,
 * else answered with a JSON error of that status. */
static void cancel_and_resume(struct http_request *req, unsigned status)
{
    struct http_server *srv = req->srv;
    if (req->cancel)
        req->cancel(req, req->cancel_arg);
    lock(srv);
    req->state = RS_CANCELLED;
    req->cancelled_status = status;
    MHD_resume_connection(req->conn);
    unlock(srv);
}

static void *watcher_main(void *arg)
{
    struct http_server *srv = arg;
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(srv->epfd, evs, 64, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return NULL;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == 0)
                return NULL; /* the stop event */
            lock(srv);
            struct wait *w = watch_find(srv, evs[i].data.u64);
            if (!w) {
                unlock(srv);
                continue;
            }
            watch_del(srv, w);
            if (w->kind == WAIT_PIPE) {
                MHD_resume_connection(w->conn);
                unlock(srv);
                continue;
            }
            struct http_request *req = REQ_OF_WAIT(w);
            req->state = RS_CANCELLING;
            unlock(srv);
            cancel_and_resume(req, 0);
        }
    }
}

/* ---- responses ------------------------------------------------------- */

/* Once each (an error response gets them made, then again when handed over). */
static void add_std_headers(struct MHD_Response *resp, const char *content_type)
{
    if (content_type && !MHD_get_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (!MHD_get_response_header(resp, "X-Content-Type-Options"))
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
}

/* A response {"error": msg}; msg need not be valid UTF-8. */
static struct MHD_Response *error_response(const char *msg)
{
    json_t *s = json_string(msg);
    if (!s) {
        /* Not UTF-8: keep the ASCII and mark the rest. */
        char *copy = xstrdup(msg);
        for (char *p = copy; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
        s = json_string(copy);
        free(copy);
    }
    json_t *o = json_object();
    json_object_set_new(o, "error", s ? s : json_string("(unprintable error)"));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text)
        oom();
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(strlen(text), text, free);
    if (!resp)
        oom();
    add_std_headers(resp, "application/json");
    return resp;
}

static enum MHD_Result queue_and_release(struct http_request *req, unsigned status,
                                         struct MHD_Response *resp)
{
    lock(req->srv);
    req->state = RS_DONE; /* a late http_respond* now just drops its response */
    unlock(req->srv);
    enum MHD_Result r = MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result queue_error(struct http_request *req, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result queue_error(struct http_request *req, unsigned status, const char *fmt, ...)
{
    struct buf msg = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vaddf(&msg, fmt, ap);
    va_end(ap);
    struct MHD_Response *resp = error_response(msg.data ? msg.data : "");
    buf_release(&msg);
    return queue_and_release(req, status, resp);
}

/* Hand resp to req: the heart of the respond-from-any-thread contract. */
static void respond_with(struct http_request *req, unsigned status, const char *content_type,
                         struct MHD_Response *resp)
{
    struct http_server *srv = req->srv;
    if (status < 100 || status > 999)
        status = 500;
    add_std_headers(resp, content_type);
    for (struct hdr *h = req->headers; h; h = h->next)
        MHD_add_response_header(resp, h->name, h->value);

    lock(srv);
    switch (req->state) {
    case RS_HANDLER:
    case RS_SUSPENDING:
        /* The worker queues it once the handler returns. */
        req->resp = resp;
        req->status = status;
        req->state = RS_RESPONDED;
        break;
    case RS_SUSPENDED:
        watch_del(srv, &req->wait);
        req->resp = resp;
        req->status = status;
        req->state = RS_RESPONDED;
        MHD_resume_connection(req->conn);
        break;
    default:
        /* RS_CANCELLING: the owner raced the peer's disconnect and lost;
         * anything else is a second response. Drop it (closes an fd). */
        MHD_destroy_response(resp);
        break;
    }
    unlock(srv);
}

void http_respond(struct http_request *req, int status, const char *content_type, const void *body,
                  size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(len ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (!resp)
        oom();
    respond_with(req, (unsigned)status, content_type, resp);
}

void http_respond_buf(struct http_request *req, int status, const char *content_type, struct buf *b)
{
    size_t len;
    char *data = buf_detach(b, &len);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, data, free);
    if (!resp)
        oom();
    respond_with(req, (unsigned)status, content_type, resp);
}

void http_respond_shared(struct http_request *req, int status, const char *content_type,
                         const void *body, size_t len, void (*done)(void *arg), void *arg)
{
    /* libmicrohttpd reads the buffer in place (it never writes to it) and
     * calls done(arg) when it destroys the response. */
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(
        len, (void *)(len ? body : ""), done, arg);
    if (!resp)
        oom();
    respond_with(req, (unsigned)status, content_type, resp);
}

void http_respond_fd(struct http_request *req, int status, const char *content_type, int fd,
                     uint64_t offset, uint64_t len)
{
    /* libmicrohttpd closes fd when it destroys the response. */
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, offset);
    if (!resp) {
        close(fd);
        http_respond_error(req, 500, "cannot serve %llu bytes at offset %llu",
                           (unsigned long long)len, (unsigned long long)offset);
        return;
    }
    respond_with(req, (unsigned)status, content_type, resp);
}

/* Content reader of a pipe response: never blocks a worker. When the pipe is
 * empty the connection is suspended and the watcher resumes it once the pipe
 * is readable (or closed). */
static ssize_t pipe_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct pipe_reader *pr = cls;
    struct http_server *srv = pr->srv;
    (void)pos;
    for (;;) {
        ssize_t n = read(pr->wait.fd, out, max);
        if (n > 0)
            return n;
        if (n == 0)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        break;
    }
    lock(srv);
    if (srv->stopping || watch_add(srv, &pr->wait) < 0) {
        unlock(srv);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    MHD_suspend_connection(pr->wait.conn);
    unlock(srv);
    return 0;
}

static void pipe_free(void *cls)
{
    struct pipe_reader *pr = cls;
    lock(pr->srv);
    watch_del(pr->srv, &pr->wait);
    unlock(pr->srv);
    close(pr->wait.fd);
    free(pr);
}

void http_respond_pipe(struct http_request *req, int status, const char *content_type, int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        close(fd);
        http_respond_error(req, 500, "bad pipe: %s", strerror(errno));
        return;
    }
    struct pipe_reader *pr = xcalloc(1, sizeof(*pr));
    pr->srv = req->srv;
    pr->wait.kind = WAIT_PIPE;
    pr->wait.fd = fd;
    pr->wait.conn = req->conn;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, HTTP_PIPE_BLOCK,
                                                                  pipe_read, pr, pipe_free);
    if (!resp)
        oom();
    respond_with(req, (unsigned)status, content_type, resp);
}

void http_respond_error(struct http_request *req, int status, const char *fmt, ...)
{
    struct buf msg = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vaddf(&msg, fmt, ap);
    va_end(ap);
    struct MHD_Response *resp = error_response(msg.data ? msg.data : "");
    buf_release(&msg);
    /* error_response set the Content-Type already. */
    respond_with(req, (unsigned)status, NULL, resp);
}

void http_add_header(struct http_request *req, const char *name, const char *value)
{
    size_t n = strlen(name) + 1, v = strlen(value) + 1;
    struct hdr *h = xmalloc(sizeof(*h) + n + v);
    memcpy(h->name, name, n);
    memcpy(h->name + n, value, v);
    h->value = h->name + n;
    h->next = req->headers;
    req->headers = h;
}

void http_suspend(struct http_request *req, http_cancel_fn cancel, void *arg)
{
    struct http_server *srv = req->srv;
    lock(srv);
    if (req->state == RS_HANDLER) {
        req->cancel = cancel;
        req->cancel_arg = arg;
        req->state = RS_SUSPENDING;
    }
    unlock(srv);
}

/* ---- accessors ------------------------------------------------------- */

const char *http_req_method(const struct http_request *req)
{
    return req->method;
}

const char *http_req_path(const struct http_request *req)
{
    return req->path;
}

const char *http_req_query(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_req_header(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_req_body(const struct http_request *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return req->body.data ? req->body.data : "";
}

const char *http_req_peer(const struct http_request *req)
{
    return req->peer;
}

/* ---- libmicrohttpd callbacks ------------------------------------------ */

static struct http_request *req_new(struct http_server *srv, struct MHD_Connection *conn,
                                    const char *url, const char *method)
{
    struct http_request *req = xcalloc(1, sizeof(*req));
    req->srv = srv;
    req->conn = conn;
    req->method = method;
    req->path = url;
    req->state = RS_BODY;
    req->wait.kind = WAIT_PEER;
    req->limit = srv->body_limit ? srv->body_limit(method, url, srv->ctx) : srv->max_body;

    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, req->peer,
                  sizeof(req->peer));
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, req->peer,
                  sizeof(req->peer));
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    req->wait.fd = ci ? ci->connect_fd : -1;
    return req;
}

static void req_free(struct http_request *req)
{
    if (req->resp)
        MHD_destroy_response(req->resp);
    while (req->headers) {
        struct hdr *h = req->headers;
        req->headers = h->next;
        free(h);
    }
    buf_release(&req->body);
    free(req);
}

static enum MHD_Result queue_too_large(struct http_request *req)
{
    return queue_error(req, 413, "request body too large (limit %zu bytes)", req->limit);
}

/* The handler has returned: queue its response, or suspend. */
static enum MHD_Result after_handler(struct http_request *req)
{
    struct http_server *srv = req->srv;
    struct MHD_Response *resp;
    unsigned status;

    lock(srv);
    switch (req->state) {
    case RS_RESPONDED:
        resp = req->resp;
        status = req->status;
        req->resp = NULL;
        unlock(srv);
        return queue_and_release(req, status, resp);
    case RS_SUSPENDING:
        if (srv->stopping || req->wait.fd < 0)
            break;
        /* A failed watch only costs the early notice of a disconnect. */
        watch_add(srv, &req->wait);
        MHD_suspend_connection(req->conn);
        req->state = RS_SUSPENDED;
        unlock(srv);
        return MHD_YES;
    default:
        unlock(srv);
        return queue_error(req, 500, "internal error: no response for %s %s", req->method,
                           req->path);
    }
    /* Suspending while the server stops: cancel at once. */
    req->state = RS_CANCELLING;
    unlock(srv);
    if (req->cancel)
        req->cancel(req, req->cancel_arg);
    return queue_error(req, 503, "server shutting down");
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* libmicrohttpd's unescaping of the path and the query arguments, but for
 * "%00": a NUL would end the C string there and route "/api/builds/1%00/x"
 * as "/api/builds/1". Left as it is, it matches no route nor number. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    char *w = s;
    for (const char *r = s; *r; r++) {
        int hi = r[0] == '%' ? hex_digit(r[1]) : -1, lo = hi >= 0 ? hex_digit(r[2]) : -1;
        if (lo >= 0 && (hi || lo)) {
            *w++ = (char)(hi * 16 + lo);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct http_server *srv = cls;
    struct http_request *req = *con_cls;
    (void)version;

    if (!req) {
        req = req_new(srv, conn, url, method);
        *con_cls = req;
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        int64_t n;
        if (cl && parse_int64(cl, 0, INT64_MAX, &n) == 0 && (uint64_t)n > req->limit) {
            req->too_large = true;
            return queue_too_large(req);
        }
        /* A body of known size (within the limit) gets its buffer at once:
         * grown by doubling, a MiB of log cost a dozen reallocations, their
         * copies, and a 2 MiB buffer. */
        if (cl && parse_int64(cl, 0, INT64_MAX, &n) == 0 && n > 0)
            buf_grow(&req->body, (size_t)n);
        return MHD_YES;
    }

    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->state != RS_BODY)
            return MHD_YES;
        if (!req->too_large && n > req->limit - req->body.len) {
            req->too_large = true;
            buf_release(&req->body);
        }
        if (req->too_large) {
            req->discarded += n;
            /* Reading on so the 413 reaches the client, but not forever. */
            return req->discarded > HTTP_DISCARD_MAX ? MHD_NO : MHD_YES;
        }
        buf_add(&req->body, upload_data, n);
        return MHD_YES;
    }

    struct MHD_Response *resp;
    unsigned status;
    switch (req->state) {
    case RS_BODY:
        if (req->too_large)
            return queue_too_large(req);
        req->state = RS_HANDLER;
        srv->handler(req, srv->ctx);
        return after_handler(req);
    case RS_RESPONDED: /* resumed by a response */
        lock(srv);
        resp = req->resp;
        status = req->status;
        req->resp = NULL;
        unlock(srv);
        return queue_and_release(req, status, resp);
    case RS_CANCELLED:
        if (req->cancelled_status)
            return queue_error(req, req->cancelled_status, "server shutting down");
        return MHD_NO;
    default:
        /* Resumed after a content reader suspension, or called again with
         * nothing new: nothing to do. */
        return MHD_YES;
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct http_request *req = *con_cls;
    (void)conn;
    (void)toe;
    if (!req)
        return;
    *con_cls = NULL;
    lock(srv);
    watch_del(srv, &req->wait);
    unlock(srv);
    req_free(req);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    struct buf msg = BUF_INIT;
    buf_vaddf(&msg, fmt, ap);
    while (msg.len && msg.data[msg.len - 1] == '\n')
        msg.data[--msg.len] = '\0';
    if (start_log) {
        if (start_log->len)
            buf_adds(start_log, "; ");
        buf_add(start_log, msg.data, msg.len);
    }
    log_debug("libmicrohttpd: %s", msg.data ? msg.data : "");
    buf_release(&msg);
}

/* ---- start and stop --------------------------------------------------- */

static int parse_listen(const char *listen, struct sockaddr_in *sa, struct buf *err)
{
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    int port;
    if (!colon || parse_int(colon + 1, 0, 65535, &port) < 0) {
        buf_setf(err, "bad listen address \"%s\" (want host:port)", listen ? listen : "");
        return -EINVAL;
    }
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);

    char *host = xstrndup(listen, (size_t)(colon - listen));
    int r = 0;
    if (!*host || !strcmp(host, "*")) {
        sa->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        struct addrinfo hints = {0}, *ai = NULL;
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        int g = getaddrinfo(host, NULL, &hints, &ai);
        if (g || !ai) {
            buf_setf(err, "cannot resolve \"%s\": %s", host, gai_strerror(g));
            r = -EINVAL;
        } else {
            sa->sin_addr = ((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        }
        if (ai)
            freeaddrinfo(ai);
    }
    free(host);
    return r;
}

static int open_listener(const char *addr, int *fd_out, uint16_t *port_out, struct buf *err)
{
    struct sockaddr_in sa;
    int r = parse_listen(addr, &sa, err);
    if (r < 0)
        return r;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        r = -errno;
        buf_setf(err, "socket: %s", strerror(errno));
        return r;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = -errno;
        buf_setf(err, "cannot listen on %s: %s", addr, strerror(errno));
        goto fail;
    }
    if (listen(fd, 1024) < 0) {
        r = -errno;
        buf_setf(err, "listen on %s: %s", addr, strerror(errno));
        goto fail;
    }
    socklen_t sl = sizeof(sa);
    if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        r = -errno;
        buf_setf(err, "getsockname: %s", strerror(errno));
        goto fail;
    }
    *fd_out = fd;
    *port_out = ntohs(sa.sin_port);
    return 0;
fail:
    close(fd);
    return r;
}

static unsigned connection_limit(void)
{
    struct rlimit rl;
    rlim_t lim = HTTP_MAX_CONNECTIONS;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        lim = rl.rlim_cur > 128 ? rl.rlim_cur - 64 : 64; /* leave fds for the rest */
    if (lim > HTTP_MAX_CONNECTIONS)
        lim = HTTP_MAX_CONNECTIONS;
    return (unsigned)lim;
}

int http_server_start(const struct http_server_config *cfg, struct http_server **out,
                      struct buf *err)
{
    struct http_server *srv = xcalloc(1, sizeof(*srv));
    int listen_fd = -1;
    int r;

    pthread_mutex_init(&srv->lock, NULL);
    srv->epfd = srv->evfd = -1;
    srv->max_body = cfg->max_body ? cfg->max_body : YCI_MAX_JSON_BODY;
    srv->body_limit = cfg->body_limit;
    srv->handler = cfg->handler;
    srv->ctx = cfg->ctx;
    if (!cfg->handler) {
        buf_setf(err, "no handler");
        r = -EINVAL;
        goto fail;
    }

    r = open_listener(cfg->listen, &listen_fd, &srv->port, err);
    if (r < 0)
        goto fail;

    srv->epfd = epoll_create1(EPOLL_CLOEXEC);
    srv->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (srv->epfd < 0 || srv->evfd < 0) {
        r = -errno;
        buf_setf(err, "epoll/eventfd: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->evfd, &ev) < 0) {
        r = -errno;
        buf_setf(err, "epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    r = pthread_create(&srv->watcher, NULL, watcher_main, srv);
    if (r) {
        buf_setf(err, "cannot start a thread: %s", strerror(r));
        r = -r;
        goto fail;
    }
    srv->watcher_started = true;

    unsigned threads = cfg->threads ? cfg->threads : 2;
    unsigned timeout = cfg->idle_timeout ? cfg->idle_timeout : HTTP_IDLE_TIMEOUT;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_LISTEN_SOCKET, listen_fd, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, timeout, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, connection_limit(), NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, srv},
        {MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape, NULL},
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, NULL},
        {threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    struct buf mhd_err = BUF_INIT;
    start_log = &mhd_err;
    srv->daemon =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                             MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
                         0, NULL, NULL, on_request, srv, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    start_log = NULL;
    if (!srv->daemon) {
        buf_setf(err, "cannot start the HTTP server on %s: %s", cfg->listen,
                 mhd_err.len ? mhd_err.data : "libmicrohttpd failed");
        buf_release(&mhd_err);
        r = -EIO;
        goto fail;
    }
    buf_release(&mhd_err);
    *out = srv;
    return 0;

fail:
    if (listen_fd >= 0)
        close(listen_fd);
    http_server_free(srv);
    return r;
}

uint16_t http_server_port(const struct http_server *srv)
{
    return srv->port;
}

void http_server_free(struct http_server *srv)
{
    if (!srv)
        return;

    lock(srv);
    srv->stopping = true; /* no new suspensions from here on */
    unlock(srv);

    /* Stop the watcher first: a cancel it has started finishes (and resumes
     * its connection) before we go on. */
    if (srv->watcher_started) {
        uint64_t one = 1;
        if (write(srv->evfd, &one, sizeof(one)) < 0) {
            /* an eventfd write cannot fail here; the join below would hang */
            abort();
        }
        pthread_join(srv->watcher, NULL);
    }

    /* Cancel every suspended request and resume every connection:
     * libmicrohttpd must not be stopped with suspended connections. */
    struct http_request *cancelled = NULL; /* chained through wait.next */
    lock(srv);
    while (srv->waits) {
        struct wait *w = srv->waits;
        watch_del(srv, w);
        if (w->kind == WAIT_PIPE) {
            MHD_resume_connection(w->conn);
        } else {
            struct http_request *req = REQ_OF_WAIT(w);
            req->state = RS_CANCELLING;
            req->wait.next = cancelled ? &cancelled->wait : NULL;
            cancelled = req;
        }
    }
    unlock(srv);
    while (cancelled) {
        struct http_request *req = cancelled;
        cancelled = req->wait.next ? REQ_OF_WAIT(req->wait.next) : NULL;
        req->wait.next = NULL;
        cancel_and_resume(req, 503);
    }

    if (srv->daemon)
        MHD_stop_daemon(srv->daemon); /* closes the listening socket */
    if (srv->epfd >= 0)
        close(srv->epfd);
    if (srv->evfd >= 0)
        close(srv->evfd);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}
