/*
 * Tests of the HTTP seam: http/server.c answered by http/client.c (and by raw
 * libcurl where the client deliberately offers no knob, such as chunked
 * uploads and reading response headers), over loopback.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "http/client.h"
#include "http/server.h"
#include "lib/limits.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "lib/banned.h"

/* ---- requests the tests answer by hand --------------------------------- */

#define MAX_WAITERS 128

struct waiters {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct http_request *reqs[MAX_WAITERS];
    int n;
    int cancelled;
};

static struct waiters W = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0};

static void waiters_reset(void)
{
    pthread_mutex_lock(&W.mu);
    W.n = 0;
    W.cancelled = 0;
    pthread_mutex_unlock(&W.mu);
}

/* The cancel callback: forget the request (the sched.c pattern). */
static void on_cancel(struct http_request *req, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&W.mu);
    for (int i = 0; i < W.n; i++) {
        if (W.reqs[i] == req) {
            W.reqs[i] = W.reqs[--W.n];
            break;
        }
    }
    W.cancelled++;
    pthread_cond_broadcast(&W.cond);
    pthread_mutex_unlock(&W.mu);
}

/* Wait until pred holds (W.mu held while testing), up to ms. */
static bool wait_for(bool (*pred)(int), int arg, int ms)
{
    int64_t deadline = time_mono_ms() + ms;
    pthread_mutex_lock(&W.mu);
    while (!pred(arg)) {
        if (time_mono_ms() > deadline) {
            pthread_mutex_unlock(&W.mu);
            return false;
        }
        pthread_mutex_unlock(&W.mu);
        time_sleep_ms(5);
        pthread_mutex_lock(&W.mu);
    }
    pthread_mutex_unlock(&W.mu);
    return true;
}

static bool have_waiters(int n)
{
    return W.n >= n;
}

static bool have_cancelled(int n)
{
    return W.cancelled >= n;
}

/* Answer every waiting request "answer <id>" (under W.mu, as the contract asks). */
static int answer_all(void)
{
    int n = 0;
    pthread_mutex_lock(&W.mu);
    while (W.n) {
        struct http_request *req = W.reqs[--W.n];
        const char *id = http_req_query(req, "id");
        struct buf b = BUF_INIT;
        buf_addf(&b, "answer %s", id ? id : "-");
        http_respond_buf(req, 200, "text/plain", &b);
        n++;
    }
    pthread_mutex_unlock(&W.mu);
    return n;
}

/* ---- the handler -------------------------------------------------------- */

static void *respond_now(void *arg)
{
    http_respond(arg, 200, "text/plain", "raced", 5);
    return NULL;
}

static void *write_pipe(void *arg)
{
    int fd = (int)(intptr_t)arg;
    if (write(fd, "hello ", 6) != 6)
        abort();
    time_sleep_ms(100); /* the reader finds the pipe empty and suspends */
    if (write(fd, "world", 5) != 5)
        abort();
    close(fd);
    return NULL;
}

static size_t body_limit(const char *method, const char *path, void *ctx)
{
    (void)method;
    (void)ctx;
    return !strncmp(path, "/small", 6) ? 10 : YCI_MAX_JSON_BODY;
}

static void handler(struct http_request *req, void *ctx)
{
    const char *path = http_req_path(req);
    (void)ctx;

    if (!strcmp(path, "/echo") || !strcmp(path, "/small") || !strcmp(path, "/echo/a b")) {
        size_t len;
        const char *body = http_req_body(req, &len);
        const char *a = http_req_query(req, "a");
        const char *auth = http_req_header(req, "authorization");
        const char *ct = http_req_header(req, "Content-Type");
        json_t *o = json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:s%, s:s}", "method",
                              http_req_method(req), "path", path, "a", a, "auth", auth, "ct", ct,
                              "body", body, len, "peer", http_req_peer(req));
        char *text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        http_add_header(req, "X-Echo", "yes");
        http_respond(req, 200, "application/json", text, strlen(text));
        free(text);
    } else if (!strcmp(path, "/suspend")) {
        pthread_mutex_lock(&W.mu);
        if (W.n == MAX_WAITERS) {
            pthread_mutex_unlock(&W.mu);
            http_respond_error(req, 503, "too many waiters");
            return;
        }
        W.reqs[W.n++] = req;
        http_suspend(req, on_cancel, NULL);
        pthread_cond_broadcast(&W.cond);
        pthread_mutex_unlock(&W.mu);
    } else if (!strcmp(path, "/race")) {
        /* Another thread responds while the handler is still running. */
        pthread_t t;
        http_suspend(req, NULL, NULL);
        pthread_create(&t, NULL, respond_now, req);
        pthread_detach(t);
        if (http_req_query(req, "sleep"))
            time_sleep_ms(2);
    } else if (!strcmp(path, "/suspend-respond")) {
        http_suspend(req, NULL, NULL);
        http_respond(req, 200, "text/plain", "inline", 6);
    } else if (!strcmp(path, "/fd")) {
        char tmpl[] = "/tmp/test_http.XXXXXX";
        int fd = mkostemp(tmpl, O_CLOEXEC);
        unlink(tmpl);
        if (fd < 0 || write(fd, "0123456789", 10) != 10)
            abort();
        http_respond_fd(req, 200, "text/plain", fd, 2, 5);
    } else if (!strcmp(path, "/pipe")) {
        int p[2];
        pthread_t t;
        if (pipe2(p, O_CLOEXEC) < 0)
            abort();
        pthread_create(&t, NULL, write_pipe, (void *)(intptr_t)p[1]);
        pthread_detach(t);
        http_respond_pipe(req, 200, "application/x-test", p[0]);
    } else if (!strcmp(path, "/redirect")) {
        http_add_header(req, "Location", "/elsewhere");
        http_respond(req, 303, NULL, NULL, 0);
    } else if (!strcmp(path, "/nothing")) {
        /* forgets to respond */
    } else {
        http_respond_error(req, 404, "no route for %s \"%s\"", http_req_method(req), path);
    }
}

/* ---- fixtures ----------------------------------------------------------- */

static struct http_server *srv;
static char base[64];

static struct http_server *start(unsigned idle_timeout, char *base_out)
{
    struct http_server_config cfg = {
        .listen = "127.0.0.1:0",
        .threads = 2,
        .body_limit = body_limit,
        .handler = handler,
        .idle_timeout = idle_timeout,
    };
    struct http_server *s = NULL;
    struct buf err = BUF_INIT;
    int r = http_server_start(&cfg, &s, &err);
    if (r < 0) {
        fprintf(stderr, "start: %s\n", err.data);
        abort();
    }
    buf_release(&err);
    snprintf(base_out, 64, "http://127.0.0.1:%u", http_server_port(s));
    return s;
}

static int group_setup(void **state)
{
    (void)state;
    http_client_global_init();
    srv = start(0, base);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    http_server_free(srv);
    http_client_global_cleanup();
    return 0;
}

/* One request with a fresh client. */
static int req1(const char *method, const char *path, const char *ct, const void *body, size_t len,
                long timeout_ms, struct http_result *res)
{
    struct http_client *c = http_client_new(base, "tok");
    struct buf err = BUF_INIT;
    int r = http_client_request(c, method, path, ct, body, len, timeout_ms, res, &err);
    buf_release(&err);
    http_client_free(c);
    return r;
}

static json_t *parse(const struct http_result *res)
{
    json_t *j = json_loadb(res->body.data ? res->body.data : "", res->body.len, 0, NULL);
    assert_non_null(j);
    return j;
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* A request through raw libcurl: extra headers, chunked uploads, and the
 * response headers. */
struct raw {
    long status;
    struct buf body;
    struct buf headers;
};

static size_t raw_cb(char *d, size_t s, size_t n, void *arg)
{
    buf_add(arg, d, s * n);
    return s * n;
}

static int raw_request(const char *method, const char *path, const char *extra_header,
                       const void *body, size_t len, struct raw *out)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
    char *url = xasprintf("%s%s", base, path);
    if (extra_header)
        hdrs = curl_slist_append(hdrs, extra_header);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        if (!extra_header || !strstr(extra_header, "chunked"))
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, raw_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &out->body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, raw_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &out->headers);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    free(url);
    return rc == CURLE_OK ? 0 : -EIO;
}

static void raw_release(struct raw *r)
{
    buf_release(&r->body);
    buf_release(&r->headers);
}

/* ---- tests -------------------------------------------------------------- */

static void test_get_echo(void **state)
{
    (void)state;
    struct http_result res = HTTP_RESULT_INIT;
    assert_int_equal(req1("GET", "/echo?a=1%202&b=x", NULL, NULL, 0, 5000, &res), 0);
    assert_int_equal(res.status, 200);
    json_t *j = parse(&res);
    assert_string_equal(jstr(j, "method"), "GET");
    assert_string_equal(jstr(j, "path"), "/echo");
    assert_string_equal(jstr(j, "a"), "1 2");
    assert_string_equal(jstr(j, "auth"), "Bearer tok");
    assert_string_equal(jstr(j, "body"), "");
    assert_string_equal(jstr(j, "peer"), "127.0.0.1");
    json_decref(j);

    /* The path arrives decoded. */
    assert_int_equal(req1("GET", "/echo/a%20b", NULL, NULL, 0, 5000, &res), 0);
    assert_int_equal(res.status, 200);
    j = parse(&res);
    assert_string_equal(jstr(j, "path"), "/echo/a b");
    assert_null(jstr(j, "a"));
    json_decref(j);
    http_result_release(&res);
}

static void test_post_echo(void **state)
{
    (void)state;
    struct http_result res = HTTP_RESULT_INIT;
    assert_int_equal(req1("POST", "/echo?a=q", "text/plain", "hello", 5, 5000, &res), 0);
    assert_int_equal(res.status, 200);
    json_t *j = parse(&res);
    assert_string_equal(jstr(j, "method"), "POST");
    assert_string_equal(jstr(j, "body"), "hello");
    assert_string_equal(jstr(j, "ct"), "text/plain");
    assert_string_equal(jstr(j, "a"), "q");
    json_decref(j);

    /* An empty POST. */
    assert_int_equal(req1("POST", "/echo", "application/json", NULL, 0, 5000, &res), 0);
    assert_int_equal(res.status, 200);
    j = parse(&res);
    assert_string_equal(jstr(j, "body"), "");
    json_decref(j);

    /* Other methods reach the handler too. */
    assert_int_equal(req1("DELETE", "/echo", NULL, NULL, 0, 5000, &res), 0);
    j = parse(&res);
    assert_string_equal(jstr(j, "method"), "DELETE");
    json_decref(j);
    assert_int_equal(req1("PUT", "/echo", "text/plain", "x", 1, 5000, &res), 0);
    j = parse(&res);
    assert_string_equal(jstr(j, "method"), "PUT");
    assert_string_equal(jstr(j, "body"), "x");
    json_decref(j);
    http_result_release(&res);
}

static void test_keepalive_many(void **state)
{
    (void)state;
    /* One client, many requests: alternate GETs and POSTs so that a reused
     * handle never carries one request's options into the next. */
    struct http_client *c = http_client_new(base, NULL);
    struct http_result res = HTTP_RESULT_INIT;
    struct buf err = BUF_INIT;
    for (int i = 0; i < 50; i++) {
        if (i % 2) {
            assert_int_equal(
                http_client_request(c, "POST", "/echo", "text/plain", "b", 1, 5000, &res, &err), 0);
            json_t *j = parse(&res);
            assert_string_equal(jstr(j, "body"), "b");
            json_decref(j);
        } else {
            assert_int_equal(
                http_client_request(c, "GET", "/echo", NULL, NULL, 0, 5000, &res, &err), 0);
            json_t *j = parse(&res);
            assert_string_equal(jstr(j, "method"), "GET");
            assert_string_equal(jstr(j, "body"), "");
            assert_null(jstr(j, "auth"));
            json_decref(j);
        }
    }
    http_result_release(&res);
    buf_release(&err);
    http_client_free(c);
}

static void test_headers_and_404(void **state)
{
    (void)state;
    struct raw r = {0, BUF_INIT, BUF_INIT};
    assert_int_equal(raw_request("GET", "/nope", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    assert_non_null(strcasestr(r.headers.data, "X-Content-Type-Options: nosniff"));
    assert_non_null(strcasestr(r.headers.data, "Content-Type: application/json"));
    json_error_t je;
    json_t *j = json_loads(r.body.data, 0, &je);
    assert_non_null(j);
    assert_string_equal(jstr(j, "error"), "no route for GET \"/nope\"");
    json_decref(j);
    raw_release(&r);

    /* Response headers added by the handler, and on a 200. */
    assert_int_equal(raw_request("GET", "/echo", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr(r.headers.data, "X-Echo: yes"));
    assert_non_null(strcasestr(r.headers.data, "X-Content-Type-Options: nosniff"));
    raw_release(&r);

    /* Location reaches the client's result. */
    struct http_result res = HTTP_RESULT_INIT;
    assert_int_equal(req1("GET", "/redirect", NULL, NULL, 0, 5000, &res), 0);
    assert_int_equal(res.status, 303);
    assert_string_equal(res.location.data, "/elsewhere");
    http_result_release(&res);

    /* A handler that forgets to respond gives a 500, not a hang. */
    assert_int_equal(req1("GET", "/nothing", NULL, NULL, 0, 5000, &res), 0);
    assert_int_equal(res.status, 500);
    j = parse(&res);
    assert_non_null(jstr(j, "error"));
    json_decref(j);
    http_result_release(&res);
}

static void test_too_large(void **state)
{
    (void)state;
    size_t big = YCI_MAX_JSON_BODY + 1;
    char *body = xmalloc(2 * big);
    memset(body, 'x', 2 * big);
    struct http_result res = HTTP_RESULT_INIT;

    /* Content-Length over the limit: refused up front. */
    for (int i = 0; i < 2; i++) {
        size_t len = i ? 2 * big : big;
        assert_int_equal(req1("POST", "/echo", "text/plain", body, len, 10000, &res), 0);
        assert_int_equal(res.status, 413);
        json_t *j = parse(&res);
        assert_string_equal(jstr(j, "error"), "request body too large (limit 1048576 bytes)");
        json_decref(j);
    }
    /* Exactly the limit is fine. */
    assert_int_equal(req1("POST", "/echo", "text/plain", body, big - 1, 10000, &res), 0);
    assert_int_equal(res.status, 200);

    /* A per-route limit. */
    assert_int_equal(req1("POST", "/small", "text/plain", body, 11, 5000, &res), 0);
    assert_int_equal(res.status, 413);
    json_t *j = parse(&res);
    assert_string_equal(jstr(j, "error"), "request body too large (limit 10 bytes)");
    json_decref(j);
    assert_int_equal(req1("POST", "/small", "text/plain", body, 10, 5000, &res), 0);
    assert_int_equal(res.status, 200);

    /* Chunked, with no Content-Length: counted as it streams. */
    struct raw r = {0, BUF_INIT, BUF_INIT};
    body[2 * big - 1] = '\0';
    assert_int_equal(raw_request("POST", "/echo", "Transfer-Encoding: chunked", body, 0, &r), 0);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body.data, "limit 1048576 bytes"));
    raw_release(&r);
    body[20] = '\0';
    assert_int_equal(raw_request("POST", "/small", "Transfer-Encoding: chunked", body, 0, &r), 0);
    assert_int_equal(r.status, 413);
    raw_release(&r);
    body[5] = '\0';
    assert_int_equal(raw_request("POST", "/small", "Transfer-Encoding: chunked", body, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "\"body\":\"xxxxx\""));
    raw_release(&r);

    /* The server is still fine. */
    assert_int_equal(req1("GET", "/echo", NULL, NULL, 0, 5000, &res), 0);
    assert_int_equal(res.status, 200);
    http_result_release(&res);
    free(body);
}

struct call {
    char path[64];
    long timeout_ms;
    int rc;
    long status;
    char body[64];
    int64_t ms;
};

static void *do_call(void *arg)
{
    struct call *c = arg;
    struct http_result res = HTTP_RESULT_INIT;
    int64_t t0 = time_mono_ms();
    c->rc = req1("POST", c->path, "application/json", "{}", 2, c->timeout_ms, &res);
    c->ms = time_mono_ms() - t0;
    c->status = res.status;
    snprintf(c->body, sizeof(c->body), "%s", res.body.data ? res.body.data : "");
    http_result_release(&res);
    return NULL;
}

static void test_suspend_answered_later(void **state)
{
    (void)state;
    waiters_reset();
    struct call c = {.path = "/suspend?id=7", .timeout_ms = 5000};
    pthread_t t;
    pthread_create(&t, NULL, do_call, &c);
    assert_true(wait_for(have_waiters, 1, 3000));
    time_sleep_ms(200);
    assert_int_equal(answer_all(), 1);
    pthread_join(t, NULL);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.status, 200);
    assert_string_equal(c.body, "answer 7");
    assert_true(c.ms >= 200);
    assert_int_equal(W.cancelled, 0);
}

static void test_suspend_client_gives_up(void **state)
{
    (void)state;
    waiters_reset();
    struct http_result res = HTTP_RESULT_INIT;
    int64_t t0 = time_mono_ms();
    assert_int_equal(req1("POST", "/suspend?id=1", NULL, NULL, 0, 300, &res), -ETIMEDOUT);
    assert_true(time_mono_ms() - t0 < 2000);
    /* The server notices the disconnect and the owner hears of it. */
    assert_true(wait_for(have_cancelled, 1, 3000));
    assert_int_equal(W.n, 0);
    http_result_release(&res);
    /* And keeps serving. */
    assert_int_equal(req1("GET", "/echo", NULL, NULL, 0, 5000, &res), 0);
    assert_int_equal(res.status, 200);
    http_result_release(&res);
}

static void test_suspend_50(void **state)
{
    (void)state;
    enum { N = 50 };
    waiters_reset();
    struct call calls[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        memset(&calls[i], 0, sizeof(calls[i]));
        snprintf(calls[i].path, sizeof(calls[i].path), "/suspend?id=%d", i);
        calls[i].timeout_ms = 10000;
        pthread_create(&t[i], NULL, do_call, &calls[i]);
    }
    assert_true(wait_for(have_waiters, N, 5000));
    assert_int_equal(answer_all(), N);
    for (int i = 0; i < N; i++) {
        char want[32];
        pthread_join(t[i], NULL);
        snprintf(want, sizeof(want), "answer %d", i);
        assert_int_equal(calls[i].rc, 0);
        assert_int_equal(calls[i].status, 200);
        assert_string_equal(calls[i].body, want);
    }
    assert_int_equal(W.cancelled, 0);
}

static void test_respond_races_suspend(void **state)
{
    (void)state;
    struct http_client *c = http_client_new(base, NULL);
    struct http_result res = HTTP_RESULT_INIT;
    struct buf err = BUF_INIT;
    for (int i = 0; i < 300; i++) {
        const char *path = i % 3 == 0 ? "/race" : i % 3 == 1 ? "/race?sleep=1" : "/suspend-respond";
        assert_int_equal(http_client_request(c, "GET", path, NULL, NULL, 0, 5000, &res, &err), 0);
        assert_int_equal(res.status, 200);
        assert_string_equal(res.body.data, i % 3 == 2 ? "inline" : "raced");
    }
    http_result_release(&res);
    buf_release(&err);
    http_client_free(c);
}

static void test_fd_and_pipe(void **state)
{
    (void)state;
    struct http_result res = HTTP_RESULT_INIT;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(req1("GET", "/fd", NULL, NULL, 0, 5000, &res), 0);
        assert_int_equal(res.status, 200);
        assert_int_equal(res.body.len, 5);
        assert_string_equal(res.body.data, "23456");
        assert_int_equal(req1("GET", "/pipe", NULL, NULL, 0, 5000, &res), 0);
        assert_int_equal(res.status, 200);
        assert_string_equal(res.body.data, "hello world");
    }
    http_result_release(&res);
}

static void test_suspension_outlives_idle_timeout(void **state)
{
    (void)state;
    char b[64];
    struct http_server *s = start(1, b);
    char saved[64];
    memcpy(saved, base, sizeof(saved));
    memcpy(base, b, sizeof(base));
    waiters_reset();
    struct call c = {.path = "/suspend?id=9", .timeout_ms = 10000};
    pthread_t t;
    pthread_create(&t, NULL, do_call, &c);
    assert_true(wait_for(have_waiters, 1, 3000));
    time_sleep_ms(2500); /* well past the 1 s idle timeout */
    assert_int_equal(answer_all(), 1);
    pthread_join(t, NULL);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.status, 200);
    assert_string_equal(c.body, "answer 9");
    assert_int_equal(W.cancelled, 0);
    http_server_free(s);
    memcpy(base, saved, sizeof(base));
}

static void test_free_cancels_suspended(void **state)
{
    (void)state;
    char b[64];
    struct http_server *s = start(0, b);
    char saved[64];
    memcpy(saved, base, sizeof(saved));
    memcpy(base, b, sizeof(base));
    waiters_reset();
    struct call c[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        snprintf(c[i].path, sizeof(c[i].path), "/suspend?id=%d", i);
        c[i].timeout_ms = 10000;
        pthread_create(&t[i], NULL, do_call, &c[i]);
    }
    assert_true(wait_for(have_waiters, 3, 3000));
    int64_t t0 = time_mono_ms();
    http_server_free(s);
    assert_int_equal(W.cancelled, 3);
    assert_int_equal(W.n, 0);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        /* Either the 503 made it out before the close, or the client saw the close. */
        assert_true((c[i].rc == 0 && c[i].status == 503) || c[i].rc == -EIO);
    }
    assert_true(time_mono_ms() - t0 < 3000);
    memcpy(base, saved, sizeof(base));
}

static void test_refused_and_timeout(void **state)
{
    (void)state;
    char b[64];
    struct http_server *s = start(0, b);
    struct http_client *c = http_client_new(b, NULL);
    struct http_result res = HTTP_RESULT_INIT;
    struct buf err = BUF_INIT;
    assert_int_equal(http_client_request(c, "GET", "/echo", NULL, NULL, 0, 5000, &res, &err), 0);
    assert_int_equal(res.status, 200);
    http_server_free(s);
    /* The kept-alive connection is gone and nobody listens any more. */
    assert_int_equal(http_client_request(c, "GET", "/echo", NULL, NULL, 0, 5000, &res, &err),
                     -ECONNREFUSED);
    assert_non_null(strstr(err.data, "/echo"));
    http_client_free(c);

    /* A server that never answers. */
    waiters_reset();
    c = http_client_new(base, NULL);
    assert_int_equal(http_client_request(c, "GET", "/suspend", NULL, NULL, 0, 200, &res, &err),
                     -ETIMEDOUT);
    assert_true(wait_for(have_cancelled, 1, 3000));
    /* The same client recovers on its next request. */
    assert_int_equal(http_client_request(c, "GET", "/echo", NULL, NULL, 0, 5000, &res, &err), 0);
    assert_int_equal(res.status, 200);
    http_client_free(c);
    http_result_release(&res);
    buf_release(&err);
}

static void test_start_errors(void **state)
{
    (void)state;
    struct buf err = BUF_INIT;
    struct http_server *s = (struct http_server *)&err; /* must stay untouched */
    struct http_server_config cfg = {.listen = "nonsense", .handler = handler};
    assert_int_equal(http_server_start(&cfg, &s, &err), -EINVAL);
    assert_ptr_equal(s, (struct http_server *)&err);
    assert_non_null(strstr(err.data, "nonsense"));

    /* The port the fixture already holds. */
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", http_server_port(srv));
    cfg.listen = addr;
    assert_int_equal(http_server_start(&cfg, &s, &err), -EADDRINUSE);
    assert_non_null(strstr(err.data, "in use"));

    /* "localhost" works. */
    cfg.listen = "localhost:0";
    s = NULL;
    assert_int_equal(http_server_start(&cfg, &s, &err), 0);
    assert_true(http_server_port(s) > 0);
    http_server_free(s);
    http_server_free(NULL);
    buf_release(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_echo),
        cmocka_unit_test(test_post_echo),
        cmocka_unit_test(test_keepalive_many),
        cmocka_unit_test(test_headers_and_404),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_suspend_answered_later),
        cmocka_unit_test(test_suspend_client_gives_up),
        cmocka_unit_test(test_suspend_50),
        cmocka_unit_test(test_respond_races_suspend),
        cmocka_unit_test(test_fd_and_pipe),
        cmocka_unit_test(test_suspension_outlives_idle_timeout),
        cmocka_unit_test(test_free_cancels_suspended),
        cmocka_unit_test(test_refused_and_timeout),
        cmocka_unit_test(test_start_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
