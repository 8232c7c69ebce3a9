/*
 * Unit tests of the SQLite store (store.h). Each test gets a fresh data
 * directory under /tmp. `test_store --bench [N [JOBS_PER_BUILD]]` is a
 * benchmark run by hand: N claim + check + finish cycles, printed per second.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/limits.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "store/store.h"
#include "lib/banned.h"

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define SHA_C "cccccccccccccccccccccccccccccccccccccccc"
#define LEASE 30000

struct fixture {
    char dir[64];
    char *db;
    struct store *st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/yci-test-store-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    if (asprintf(&f->db, "%s/yci.db", f->dir) < 0)
        return -1;
    struct buf err = BUF_INIT;
    int r = store_open(f->db, &f->st, &err);
    if (r < 0)
        fprintf(stderr, "store_open: %s\n", err.data);
    buf_release(&err);
    *state = f;
    return r;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_free(f->st);
    remove_tree(f->dir);
    free(f->db);
    free(f);
    return 0;
}

/* ---- helpers ---- */

static json_t *js(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (!v)
        fail_msg("bad JSON in test: %s: %s", text, e.text);
    return v;
}

static int64_t ival(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static const char *sval(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool is_null(json_t *o, const char *key)
{
    return json_is_null(json_object_get(o, key));
}

static int64_t repo_add(struct store *st, const char *name)
{
    json_t *r = NULL;
    struct buf err = BUF_INIT;
    assert_int_equal(store_repo_add(st, name, "/srv/git/x", &r, &err), 0);
    int64_t id = ival(r, "id");
    json_decref(r);
    buf_release(&err);
    return id;
}

/* A build of the given jobs (JSON text) outside the observer. */
static int64_t build_new(struct store *st, int64_t repo_id, const char *ref, const char *jobs)
{
    json_t *j = js(jobs);
    int64_t id = 0;
    struct buf err = BUF_INIT;
    int r = store_build_create(st, repo_id, ref, ref ? SHA_A : NULL, j, NULL, &id, &err);
    if (r != 0)
        fail_msg("store_build_create: %d %s", r, err.data);
    json_decref(j);
    buf_release(&err);
    return id;
}

static int64_t runner_new(struct store *st, const char *name, const char *labels)
{
    json_t *l = js(labels), *p = js("{\"os\": \"Linux\", \"release\": \"6.1\", \"machine\": "
                                    "\"x86_64\"}");
    int64_t id = 0;
    struct buf err = BUF_INIT;
    char hash[64];
    snprintf(hash, sizeof(hash), "hash-of-%s", name);
    assert_int_equal(store_runner_register(st, name, l, p, 2, 10, hash, &id, &err), 0);
    assert_true(id > 0);
    json_decref(l);
    json_decref(p);
    buf_release(&err);
    return id;
}

/* Claim with the runner's labels (JSON text); NULL when nothing matched. */
static json_t *claim(struct store *st, int64_t runner_id, const char *labels, int64_t lease)
{
    json_t *l = js(labels), *job = NULL;
    int r = store_job_claim(st, runner_id, l, lease, &job);
    json_decref(l);
    assert_true(r == 0 || r == 1);
    if (r == 0)
        assert_null(job);
    return job;
}

static const char *build_status(struct store *st, int64_t id, json_t **keep)
{
    json_decref(*keep);
    *keep = store_build_get(st, id);
    assert_non_null(*keep);
    return sval(*keep, "status");
}

static const char *job_status(struct store *st, int64_t id, json_t **keep)
{
    json_decref(*keep);
    *keep = store_job_get(st, id);
    assert_non_null(*keep);
    return sval(*keep, "status");
}

/* Does any event of the build contain text? */
static bool has_event(struct store *st, int64_t build_id, const char *text)
{
    json_t *b = store_build_get(st, build_id);
    json_t *ev;
    size_t i;
    bool found = false;
    json_array_foreach(json_object_get(b, "events"), i, ev) {
        if (strstr(sval(ev, "message"), text))
            found = true;
    }
    if (!found) {
        char *s = json_dumps(json_object_get(b, "events"), JSON_INDENT(1));
        fprintf(stderr, "no event with \"%s\" in %s\n", text, s);
        free(s);
    }
    json_decref(b);
    return found;
}

#define ONE_JOB "[{\"name\": \"tests\", \"commands\": [\"true\"]}]"
#define THREE_JOBS                                                                                 \
    "[{\"name\": \"a\", \"commands\": [\"true\"]}, {\"name\": \"b\", \"commands\": [\"true\"]},"   \
    " {\"name\": \"c\", \"commands\": [\"true\"]}]"

/* ---- repositories and heads ---- */

/* Finish the job's current attempt on runner r. */
static void finish(struct store *st, json_t *job, int64_t r, const char *status)
{
    assert_int_equal(store_job_finish(st, ival(job, "id"), (int)ival(job, "attempt"), r, status,
                                      strcmp(status, "passed") == 0 ? 0 : 1, NULL, NULL),
                     0);
}

static void test_repos(void **state)
{
    struct fixture *f = *state;
    struct buf err = BUF_INIT;
    json_t *r = NULL;
    assert_int_equal(store_repo_add(f->st, "zeta", "https://example.com/zeta.git", &r, &err), 0);
    assert_string_equal(sval(r, "name"), "zeta");
    assert_string_equal(sval(r, "url"), "https://example.com/zeta.git");
    assert_true(ival(r, "created") > 0);
    assert_true(is_null(r, "last_poll"));
    assert_true(is_null(r, "last_error"));
    int64_t zeta = ival(r, "id");
    json_decref(r);
    r = NULL;

    assert_int_equal(store_repo_add(f->st, "alpha", "/srv/alpha", NULL, &err), 0);
    assert_int_equal(store_repo_add(f->st, "zeta", "/elsewhere", &r, &err), -EEXIST);
    assert_null(r);
    assert_non_null(strstr(err.data, "zeta"));
    assert_int_equal(store_repo_add(f->st, "../etc", "/x", NULL, &err), -EINVAL);
    assert_int_equal(store_repo_add(f->st, "-x", "/x", NULL, &err), -EINVAL);
    assert_int_equal(store_repo_add(f->st, "ok", "", NULL, &err), -EINVAL);

    json_t *list = store_repo_list(f->st);
    assert_int_equal(json_array_size(list), 2);
    assert_string_equal(sval(json_array_get(list, 0), "name"), "alpha");
    assert_string_equal(sval(json_array_get(list, 1), "name"), "zeta");
    json_decref(list);

    assert_null(store_repo_get(f->st, "nope"));
    assert_null(store_repo_get_id(f->st, 999));
    r = store_repo_get_id(f->st, zeta);
    assert_string_equal(sval(r, "name"), "zeta");
    json_decref(r);

    assert_int_equal(store_repo_polled(f->st, zeta, "fatal: repository not found"), 0);
    r = store_repo_get(f->st, "zeta");
    assert_string_equal(sval(r, "last_error"), "fatal: repository not found");
    assert_true(ival(r, "last_poll") > 0);
    json_decref(r);
    assert_int_equal(store_repo_polled(f->st, zeta, NULL), 0);
    r = store_repo_get(f->st, "zeta");
    assert_true(is_null(r, "last_error"));
    json_decref(r);
    assert_int_equal(store_repo_polled(f->st, 999, NULL), -ENOENT);
    buf_release(&err);
}

static int count_builds(struct store *st)
{
    json_t *f = js("{\"limit\": 1000}");
    json_t *l = store_build_list(st, f);
    int n = (int)json_array_size(l);
    json_decref(l);
    json_decref(f);
    return n;
}

static void test_head_advance(void **state)
{
    struct fixture *f = *state;
    int64_t repo = repo_add(f->st, "proj");
    json_t *jobs = js(ONE_JOB);
    struct buf err = BUF_INIT;
    int64_t b1 = 0, b2 = 0, bx = 0;

    /* New branch: no stored head. */
    assert_int_equal(
        store_head_advance(f->st, repo, "refs/heads/main", NULL, SHA_A, jobs, NULL, true, NULL, false, NULL, &b1, &err), 1);
    assert_true(b1 > 0);
    /* The same observation twice (a second poll racing): nothing. */
    assert_int_equal(
        store_head_advance(f->st, repo, "refs/heads/main", NULL, SHA_A, jobs, NULL, true, NULL, false, NULL, &bx, &err), 0);
    assert_int_equal(bx, 0);
    /* Head is A already, and a build of A exists: nothing. */
    assert_int_equal(
        store_head_advance(f->st, repo, "refs/heads/main", SHA_A, SHA_A, jobs, NULL, true, NULL, false, NULL, &bx, &err), 0);
    /* Stale old_sha: no build, head unchanged. */
    assert_int_equal(
        store_head_advance(f->st, repo, "refs/heads/main", SHA_C, SHA_B, jobs, NULL, true, NULL, false, NULL, &bx, &err), 0);
    assert_int_equal(bx, 0);
    json_t *heads = store_heads_get(f->st, repo);
    assert_string_equal(sval(heads, "refs/heads/main"), SHA_A);
    json_decref(heads);
    assert_int_equal(count_builds(f->st), 1);

    /* A real advance (without cancel_superseded: see test_superseded). */
    assert_int_equal(
        store_head_advance(f->st, repo, "refs/heads/main", SHA_A, SHA_B, jobs, NULL, false, NULL, false, NULL, &b2,
                           &err),
        1);
    assert_true(b2 > b1);
    /* Force-push back to A: the head moves, but A was built already. */
    assert_int_equal(
        store_head_advance(f->st, repo, "refs/heads/main", SHA_B, SHA_A, jobs, NULL, true, NULL, false, NULL, &bx, &err), 0);
    assert_int_equal(bx, 0);
    heads = store_heads_get(f->st, repo);
    assert_string_equal(sval(heads, "refs/heads/main"), SHA_A);
    json_decref(heads);
    assert_int_equal(count_builds(f->st), 2);

    /* Same commit on another ref: another build. A pull ref keeps its name. */
    assert_int_equal(
        store_head_advance(f->st, repo, "refs/pull/1/head", NULL, SHA_A, jobs, NULL, true, NULL, false, NULL, &bx, &err), 1);
    json_t *b = store_build_get(f->st, bx);
    assert_string_equal(sval(b, "branch"), "refs/pull/1/head");
    assert_string_equal(sval(b, "ref"), "refs/pull/1/head");
    assert_string_equal(sval(b, "repo"), "proj");
    assert_string_equal(sval(b, "commit"), SHA_A);
    json_decref(b);
    b = store_build_get(f->st, b1);
    assert_string_equal(sval(b, "branch"), "main");
    assert_string_equal(sval(b, "status"), "queued");
    assert_true(is_null(b, "rebuild_of"));
    assert_int_equal(json_array_size(json_object_get(b, "jobs")), 1);
    json_t *job = json_array_get(json_object_get(b, "jobs"), 0);
    assert_string_equal(sval(job, "name"), "tests");
    assert_string_equal(sval(job, "status"), "queued");
    assert_int_equal(ival(job, "attempt"), 0);
    assert_true(json_is_object(json_object_get(job, "env")));
    assert_true(json_is_object(json_object_get(job, "labels")));
    assert_int_equal(ival(job, "timeout"), 0);
    assert_true(is_null(job, "runner"));
    json_decref(b);

    heads = store_heads_get(f->st, repo);
    assert_int_equal(json_object_size(heads), 2);
    json_decref(heads);
    assert_int_equal(store_head_delete(f->st, repo, "refs/pull/1/head"), 0);
    heads = store_heads_get(f->st, repo);
    assert_int_equal(json_object_size(heads), 1);
    json_decref(heads);

    /* Unknown repository. */
    assert_int_equal(
        store_head_advance(f->st, 999, "refs/heads/main", NULL, SHA_A, jobs, NULL, true, NULL, false, NULL, &bx, &err),
        -ENOENT);
    json_decref(jobs);
    buf_release(&err);
}

/* A burst of observations of the same heads from two threads: each
 * (ref, sha) built exactly once. */
struct poller {
    struct store *st;
    int64_t repo;
    int created;
};

static void *poll_burst(void *arg)
{
    struct poller *p = arg;
    json_t *jobs = js(ONE_JOB);
    struct buf err = BUF_INIT;
    for (int i = 0; i < 100; i++) {
        char old[41], new[41];
        snprintf(new, sizeof(new), "%040d", i + 1);
        snprintf(old, sizeof(old), "%040d", i);
        int64_t id;
        int r = store_head_advance(p->st, p->repo, "refs/heads/main", i ? old : NULL, new, jobs,
                                   NULL, true, NULL, false, NULL, &id, &err);
        if (r == 1)
            p->created++;
        else if (r < 0)
            p->created = -1000;
    }
    json_decref(jobs);
    buf_release(&err);
    return NULL;
}

static void test_head_advance_race(void **state)
{
    struct fixture *f = *state;
    struct poller p[2] = {{f->st, repo_add(f->st, "race"), 0}, {f->st, 0, 0}};
    p[1].repo = p[0].repo;
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, poll_burst, &p[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(p[0].created + p[1].created, 100);
    assert_int_equal(count_builds(f->st), 100);
}

static void test_error_build(void **state)
{
    struct fixture *f = *state;
    int64_t repo = repo_add(f->st, "proj");
    struct buf err = BUF_INIT;
    int64_t id = 0;
    const char *msg = "no tests/ folder and no Makefile with a check or test target";
    assert_int_equal(
        store_head_advance(f->st, repo, "refs/heads/main", NULL, SHA_A, NULL, msg, true, NULL, false, NULL, &id, &err), 1);
    json_t *b = store_build_get(f->st, id);
    assert_string_equal(sval(b, "status"), "error");
    assert_string_equal(sval(b, "error"), msg);
    assert_int_equal(json_array_size(json_object_get(b, "jobs")), 0);
    assert_false(is_null(b, "finished"));
    json_decref(b);

    int64_t id2 = 0;
    assert_int_equal(store_build_create(f->st, 0, NULL, NULL, NULL, "bad plan", &id2, &err), 0);
    b = store_build_get(f->st, id2);
    assert_string_equal(sval(b, "status"), "error");
    assert_true(is_null(b, "repo"));
    assert_true(is_null(b, "ref"));
    assert_true(is_null(b, "branch"));
    json_decref(b);
    buf_release(&err);
}

/* ---- validation ---- */

static void expect_bad(struct store *st, const char *jobs, const char *needle)
{
    json_t *j = js(jobs);
    struct buf err = BUF_INIT;
    int64_t id = 0;
    assert_int_equal(store_build_create(st, 0, NULL, NULL, j, NULL, &id, &err), -EINVAL);
    assert_int_equal(id, 0);
    if (!err.data || !strstr(err.data, needle))
        fail_msg("error for %s: expected \"%s\" in \"%s\"", jobs, needle,
                 err.data ? err.data : "(none)");
    json_decref(j);
    buf_release(&err);
}

static void test_bad_jobs(void **state)
{
    struct fixture *f = *state;
    expect_bad(f->st, "{}", "array");
    expect_bad(f->st, "[1]", "job 1: must be an object");
    expect_bad(f->st, "[{\"commands\": [\"x\"]}]", "job 1: \"name\"");
    expect_bad(f->st, "[{\"name\": \"\", \"commands\": [\"x\"]}]", "job 1: \"name\"");
    expect_bad(f->st, "[{\"name\": 5, \"commands\": [\"x\"]}]", "\"name\"");
    expect_bad(f->st,
               "[{\"name\": \"a\", \"commands\": [\"x\"]}, {\"name\": \"a\", "
               "\"commands\": [\"y\"]}]",
               "job 'a': two jobs have this name");
    expect_bad(f->st, "[{\"name\": \"t\"}]", "job 't': \"commands\"");
    expect_bad(f->st, "[{\"name\": \"t\", \"commands\": []}]", "job 't': \"commands\"");
    expect_bad(f->st, "[{\"name\": \"t\", \"commands\": [\"ok\", 3]}]", "job 't': \"commands\"");
    expect_bad(f->st, "[{\"name\": \"t\", \"commands\": \"make\"}]", "job 't': \"commands\"");
    expect_bad(f->st, "[{\"name\": \"t\", \"commands\": [\"x\"], \"env\": []}]",
               "job 't': \"env\"");
    expect_bad(f->st, "[{\"name\": \"t\", \"commands\": [\"x\"], \"env\": {\"1A\": \"v\"}}]",
               "job 't': '1A' is not a valid environment variable name");
    expect_bad(f->st, "[{\"name\": \"t\", \"commands\": [\"x\"], \"env\": {\"A-B\": \"v\"}}]",
               "'A-B' is not a valid");
    expect_bad(f->st, "[{\"name\": \"t\", \"commands\": [\"x\"], \"env\": {\"A\": 1}}]",
               "job 't': env 'A' must be a string");
    expect_bad(f->st, "[{\"name\": \"t\", \"commands\": [\"x\"], \"labels\": {\"os\": 1}}]",
               "job 't': label 'os' must be a string");
    expect_bad(f->st, "[{\"name\": \"t\", \"commands\": [\"x\"], \"labels\": [\"os\"]}]",
               "job 't': \"labels\"");
    expect_bad(f->st, "[{\"name\": \"t\", \"commands\": [\"x\"], \"timeout\": -1}]",
               "job 't': \"timeout\"");
    expect_bad(f->st, "[{\"name\": \"t\", \"commands\": [\"x\"], \"timeout\": 1.5}]",
               "job 't': \"timeout\"");
    expect_bad(f->st, "[{\"name\": \"t\", \"commands\": [\"x\"], \"timeout\": \"10\"}]",
               "\"timeout\"");

    char name[120];
    memset(name, 'n', 101);
    name[101] = 0;
    char *text;
    assert_true(asprintf(&text, "[{\"name\": \"%s\", \"commands\": [\"x\"]}]", name) > 0);
    expect_bad(f->st, text, "longer than 100");
    free(text);

    /* Too many jobs. */
    json_t *many = json_array();
    for (int i = 0; i <= YCI_MAX_JOBS_PER_BUILD_CAP; i++) {
        char n[16];
        snprintf(n, sizeof(n), "j%d", i);
        json_array_append_new(many, json_pack("{s:s, s:[s]}", "name", n, "commands", "true"));
    }
    char *m = json_dumps(many, 0);
    expect_bad(f->st, m, "too many jobs");
    free(m);
    json_array_remove(many, 0);
    json_t *j = many;
    struct buf err = BUF_INIT;
    int64_t id = 0;
    assert_int_equal(store_build_create(f->st, 0, NULL, NULL, j, NULL, &id, &err), 0);
    json_decref(many);

    /* No jobs and no error: nothing to run, passed at once; so is a rebuild. */
    id = build_new(f->st, 0, NULL, "[]");
    json_t *b = store_build_get(f->st, id);
    assert_string_equal(json_string_value(json_object_get(b, "status")), "passed");
    assert_true(json_is_integer(json_object_get(b, "finished")));
    assert_int_equal(json_array_size(json_object_get(b, "jobs")), 0);
    json_decref(b);
    int64_t rid = 0;
    assert_int_equal(store_build_rebuild(f->st, id, &rid), 0);
    b = store_build_get(f->st, rid);
    assert_string_equal(json_string_value(json_object_get(b, "status")), "passed");
    assert_true(json_is_integer(json_object_get(b, "finished")));
    json_decref(b);

    /* Good, with every optional key; null counts as absent. */
    id = build_new(f->st, 0, NULL,
                   "[{\"name\": \"full\", \"commands\": [\"make\", \"make check\"], \"env\": "
                   "{\"CC\": \"gcc\", \"_X1\": \"\"}, \"labels\": {\"os\": \"linux\"}, "
                   "\"timeout\": 600}, {\"name\": \"min\", \"commands\": [\"true\"], "
                   "\"env\": null, \"labels\": null, \"timeout\": null}]");
    b = store_build_get(f->st, id);
    json_t *full = json_array_get(json_object_get(b, "jobs"), 0);
    assert_string_equal(sval(json_object_get(full, "env"), "CC"), "gcc");
    assert_string_equal(sval(json_object_get(full, "labels"), "os"), "linux");
    assert_int_equal(ival(full, "timeout"), 600);
    assert_int_equal(json_array_size(json_object_get(full, "commands")), 2);
    json_decref(b);

    /* A rejected description moves no head. */
    int64_t repo = repo_add(f->st, "proj");
    json_t *bad = js("[{\"name\": \"t\", \"commands\": []}]");
    assert_int_equal(
        store_head_advance(f->st, repo, "refs/heads/main", NULL, SHA_A, bad, NULL, true, NULL, false, NULL, &id, &err),
        -EINVAL);
    json_t *heads = store_heads_get(f->st, repo);
    assert_int_equal(json_object_size(heads), 0);
    json_decref(heads);
    json_decref(bad);
    buf_release(&err);
}

/* ---- the job protocol ---- */

static void test_claim_labels(void **state)
{
    struct fixture *f = *state;
    int64_t repo = repo_add(f->st, "proj");
    int64_t build = build_new(f->st, repo, "refs/heads/main",
                              "[{\"name\": \"mac\", \"commands\": [\"x\"], \"labels\": {\"os\": "
                              "\"mac\"}},"
                              " {\"name\": \"any\", \"commands\": [\"x\"]},"
                              " {\"name\": \"linux\", \"commands\": [\"x\"], \"labels\": {\"os\": "
                              "\"linux\"}},"
                              " {\"name\": \"gpu\", \"commands\": [\"x\"], \"labels\": {\"os\": "
                              "\"linux\", \"gpu\": \"yes\"}}]");
    int64_t lin = runner_new(f->st, "lin", "{\"os\": \"linux\", \"arch\": \"x86_64\"}");
    int64_t mac = runner_new(f->st, "mac", "{\"os\": \"mac\"}");
    const char *lin_labels = "{\"os\": \"linux\", \"arch\": \"x86_64\"}";

    json_t *keep = NULL;
    assert_string_equal(build_status(f->st, build, &keep), "queued");

    /* The oldest job the runner can take: "mac" is skipped. */
    json_t *j = claim(f->st, lin, lin_labels, LEASE);
    assert_non_null(j);
    assert_string_equal(sval(j, "name"), "any");
    assert_string_equal(sval(j, "status"), "running");
    assert_int_equal(ival(j, "attempt"), 1);
    assert_int_equal(ival(j, "build_id"), build);
    assert_int_equal(ival(j, "runner_id"), lin);
    assert_string_equal(sval(j, "runner"), "lin");
    assert_string_equal(sval(j, "repo"), "proj");
    assert_string_equal(sval(j, "commit"), SHA_A);
    assert_string_equal(sval(j, "ref"), "refs/heads/main");
    assert_true(json_is_array(json_object_get(j, "commands")));
    assert_true(ival(j, "lease_expires") >= time_now_ms() + LEASE - 1000);
    assert_false(is_null(j, "started"));
    json_decref(j);

    assert_string_equal(build_status(f->st, build, &keep), "running");
    assert_false(is_null(keep, "started"));

    j = claim(f->st, lin, lin_labels, LEASE);
    assert_string_equal(sval(j, "name"), "linux");
    json_decref(j);
    /* "gpu" needs a label lin lacks; "mac" another value. */
    assert_null(claim(f->st, lin, lin_labels, LEASE));
    j = claim(f->st, mac, "{\"os\": \"mac\"}", LEASE);
    assert_string_equal(sval(j, "name"), "mac");
    json_decref(j);
    assert_null(claim(f->st, mac, "{\"os\": \"mac\"}", LEASE));
    j = claim(f->st, lin, "{\"os\": \"linux\", \"gpu\": \"yes\", \"x\": \"y\"}", LEASE);
    assert_string_equal(sval(j, "name"), "gpu");
    json_decref(j);
    assert_null(claim(f->st, lin, "{}", LEASE));

    json_t *runners = store_runner_list(f->st, false);
    json_t *r0 = json_array_get(runners, 0);
    assert_string_equal(sval(r0, "name"), "lin");
    assert_int_equal(json_array_size(json_object_get(r0, "jobs")), 3);
    json_t *rj = json_array_get(json_object_get(r0, "jobs"), 0);
    assert_string_equal(sval(rj, "name"), "any");
    assert_int_equal(ival(rj, "attempt"), 1);
    assert_int_equal(ival(rj, "build_id"), build);
    json_decref(runners);
    json_decref(keep);
}

/* Many queued jobs, none with labels the runner has, then one it can take:
 * the claim looks past a whole batch. */
static void test_claim_past_batch(void **state)
{
    struct fixture *f = *state;
    json_t *jobs = json_array();
    for (int i = 0; i < 150; i++) {
        char n[16];
        snprintf(n, sizeof(n), "j%d", i);
        json_array_append_new(jobs, json_pack("{s:s, s:[s], s:{s:s}}", "name", n, "commands",
                                              "true", "labels", "os", "windows"));
    }
    json_array_append_new(jobs, json_pack("{s:s, s:[s]}", "name", "last", "commands", "true"));
    char *text = json_dumps(jobs, 0);
    build_new(f->st, 0, NULL, text);
    free(text);
    json_decref(jobs);
    int64_t r = runner_new(f->st, "r", "{}");
    json_t *j = claim(f->st, r, "{}", LEASE);
    assert_non_null(j);
    assert_string_equal(sval(j, "name"), "last");
    assert_true(is_null(j, "repo"));
    assert_true(is_null(j, "commit"));
    json_decref(j);
    assert_null(claim(f->st, r, "{}", LEASE));
}

static void test_check_finish(void **state)
{
    struct fixture *f = *state;
    int64_t build = build_new(f->st, 0, NULL, ONE_JOB);
    int64_t r1 = runner_new(f->st, "r1", "{}");
    int64_t r2 = runner_new(f->st, "r2", "{}");
    json_t *j = claim(f->st, r1, "{}", LEASE);
    int64_t id = ival(j, "id");
    json_decref(j);

    assert_int_equal(store_job_check(f->st, id, 1, r1), 0);
    assert_int_equal(store_job_check(f->st, id, 2, r1), -ESTALE);
    assert_int_equal(store_job_check(f->st, id, 0, r1), -ESTALE);
    assert_int_equal(store_job_check(f->st, id, 1, r2), -ESTALE);
    assert_int_equal(store_job_check(f->st, 999, 1, r1), -ENOENT);

    bool done = true;
    assert_int_equal(store_job_finish(f->st, id, 2, r1, "passed", 0, NULL, &done), -ESTALE);
    assert_int_equal(store_job_finish(f->st, id, 1, r2, "passed", 0, NULL, &done), -ESTALE);
    assert_int_equal(store_job_finish(f->st, 999, 1, r1, "passed", 0, NULL, &done), -ENOENT);
    assert_int_equal(store_job_finish(f->st, id, 1, r1, "bogus", 0, NULL, &done), -EINVAL);
    done = false;
    assert_int_equal(store_job_finish(f->st, id, 1, r1, "failed", 2, "exit 2", &done), 0);
    assert_true(done);

    json_t *keep = NULL;
    assert_string_equal(job_status(f->st, id, &keep), "failed");
    assert_int_equal(ival(keep, "exit_code"), 2);
    assert_string_equal(sval(keep, "error"), "exit 2");
    assert_true(ival(keep, "duration_ms") >= 0);
    assert_true(is_null(keep, "lease_expires"));
    assert_string_equal(sval(keep, "runner"), "r1");
    int64_t finished = ival(keep, "finished");

    /* Idempotent: the same attempt again changes nothing. */
    done = true;
    assert_int_equal(store_job_finish(f->st, id, 1, r1, "passed", 0, NULL, &done), 0);
    assert_false(done);
    assert_string_equal(job_status(f->st, id, &keep), "failed");
    assert_int_equal(ival(keep, "finished"), finished);
    assert_int_equal(ival(keep, "exit_code"), 2);
    /* A finished job is no longer anyone's to write to. */
    assert_int_equal(store_job_check(f->st, id, 1, r1), -ESTALE);

    assert_string_equal(build_status(f->st, build, &keep), "failed");
    assert_false(is_null(keep, "finished"));
    assert_true(ival(keep, "duration_ms") >= 0);
    json_decref(keep);
}

/* Run a build of n jobs to the given final states; return its status. */
static char *run_build(struct store *st, int64_t runner, const char *const *states, int n)
{
    json_t *jobs = json_array();
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof(name), "j%d", i);
        json_array_append_new(jobs, json_pack("{s:s, s:[s]}", "name", name, "commands", "x"));
    }
    char *text = json_dumps(jobs, 0);
    int64_t build = build_new(st, 0, NULL, text);
    free(text);
    json_decref(jobs);
    json_t *keep = NULL;
    assert_string_equal(build_status(st, build, &keep), "queued");
    for (int i = 0; i < n; i++) {
        json_t *j = claim(st, runner, "{}", LEASE);
        assert_non_null(j);
        int64_t id = ival(j, "id");
        json_decref(j);
        assert_string_equal(build_status(st, build, &keep), "running");
        bool done = false;
        if (strcmp(states[i], "cancelled") == 0)
            assert_int_equal(store_job_cancel(st, id), 0);
        else
            assert_int_equal(store_job_finish(st, id, 1, runner, states[i], 0, NULL, &done), 0);
        if (strcmp(states[i], "cancelled") != 0)
            assert_int_equal(done, i == n - 1);
    }
    char *s = strdup(build_status(st, build, &keep));
    assert_false(is_null(keep, "finished"));
    json_decref(keep);
    return s;
}

/* store_finish: the finish, the next claim and the job read back, in one
 * transaction; a claim only when the finish went through; labels matter. */
static void test_finish_and_claim(void **state)
{
    struct fixture *f = *state;
    int64_t build = build_new(f->st, 0, NULL, THREE_JOBS);
    int64_t r1 = runner_new(f->st, "r1", "{}");
    json_t *labels = js("{}");
    json_t *a = claim(f->st, r1, "{}", LEASE);
    assert_string_equal(sval(a, "name"), "a");

    struct store_finish fin = {.job_id = ival(a, "id"), .attempt = (int)ival(a, "attempt"),
                               .runner_id = r1, .status = "passed", .exit_code = 0,
                               .claim_labels = labels, .lease_ms = LEASE};
    assert_int_equal(store_finish(f->st, &fin, NULL), 0);
    assert_non_null(fin.job);
    assert_string_equal(sval(fin.job, "status"), "passed");
    assert_int_equal(ival(fin.job, "id"), ival(a, "id"));
    assert_false(fin.build_done);
    assert_non_null(fin.next);
    assert_string_equal(sval(fin.next, "name"), "b");
    assert_int_equal(ival(fin.next, "attempt"), 1);
    assert_true(is_null(fin.next, "repo"));
    json_t *keep = NULL;
    assert_string_equal(job_status(f->st, ival(fin.next, "id"), &keep), "running");
    assert_string_equal(sval(keep, "runner"), "r1");
    json_t *b = fin.next;
    json_decref(fin.job);

    /* A stale finish claims nothing: c stays queued. */
    fin = (struct store_finish){.job_id = ival(b, "id"), .attempt = 7, .runner_id = r1,
                                .status = "passed", .claim_labels = labels, .lease_ms = LEASE};
    assert_int_equal(store_finish(f->st, &fin, NULL), -ESTALE);
    assert_null(fin.job);
    assert_null(fin.next);
    json_t *c = claim(f->st, r1, "{}", LEASE);
    assert_string_equal(sval(c, "name"), "c");

    /* The last finish finds nothing to claim, and ends the build. */
    fin = (struct store_finish){.job_id = ival(b, "id"), .attempt = 1, .runner_id = r1,
                                .status = "passed", .claim_labels = labels, .lease_ms = LEASE};
    assert_int_equal(store_finish(f->st, &fin, NULL), 0);
    assert_null(fin.next);
    json_decref(fin.job);
    fin = (struct store_finish){.job_id = ival(c, "id"), .attempt = 1, .runner_id = r1,
                                .status = "failed", .exit_code = 1, .claim_labels = labels,
                                .lease_ms = LEASE};
    assert_int_equal(store_finish(f->st, &fin, NULL), 0);
    assert_true(fin.build_done);
    assert_null(fin.next);
    assert_string_equal(sval(fin.job, "status"), "failed");
    json_decref(fin.job);
    assert_string_equal(build_status(f->st, build, &keep), "failed");
    json_decref(keep);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(labels);
}

static void test_build_state(void **state)
{
    struct fixture *f = *state;
    int64_t r = runner_new(f->st, "r", "{}");
    struct {
        const char *states[3];
        int n;
        const char *want;
    } cases[] = {
        {{"passed"}, 1, "passed"},
        {{"passed", "passed", "passed"}, 3, "passed"},
        {{"passed", "failed", "passed"}, 3, "failed"},
        {{"timed_out", "passed"}, 2, "failed"},
        {{"error", "failed"}, 2, "failed"},
        {{"passed", "error"}, 2, "error"},
        {{"error", "cancelled"}, 2, "error"},
        {{"passed", "cancelled"}, 2, "cancelled"},
        {{"cancelled"}, 1, "cancelled"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = run_build(f->st, r, cases[i].states, cases[i].n);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu: build %s, expected %s", i, got, cases[i].want);
        free(got);
    }
}

static void test_lease_expiry(void **state)
{
    struct fixture *f = *state;
    int64_t build = build_new(f->st, 0, NULL, ONE_JOB);
    int64_t r1 = runner_new(f->st, "r1", "{}");
    json_t *keep = NULL;
    int requeued = -1;

    assert_int_equal(store_leases_expire(f->st, 3, &requeued), 0);
    assert_int_equal(requeued, 0);

    int64_t id = 0;
    for (int attempt = 1; attempt <= 4; attempt++) {
        /* lease -1: expired as soon as it is taken. */
        json_t *j = claim(f->st, r1, "{}", -1);
        assert_non_null(j);
        assert_int_equal(ival(j, "attempt"), attempt);
        id = ival(j, "id");
        json_decref(j);
        assert_int_equal(store_leases_expire(f->st, 3, &requeued), 1);
        char want[200];
        if (attempt < 4) {
            assert_int_equal(requeued, 1);
            assert_string_equal(job_status(f->st, id, &keep), "queued");
            assert_int_equal(ival(keep, "infra_retries"), attempt);
            assert_true(is_null(keep, "runner_id"));
            assert_true(is_null(keep, "lease_expires"));
            assert_int_equal(ival(keep, "attempt"), attempt);
            assert_string_equal(build_status(f->st, build, &keep), "running");
            snprintf(want, sizeof(want),
                     "job %lld (tests): runner 'r1' stopped answering (lease expired), re-queued "
                     "(attempt %d of 4)",
                     (long long)id, attempt + 1);
        } else {
            assert_int_equal(requeued, 0);
            assert_string_equal(job_status(f->st, id, &keep), "error");
            assert_non_null(strstr(sval(keep, "error"), "lease expired"));
            assert_string_equal(build_status(f->st, build, &keep), "error");
            assert_false(is_null(keep, "finished"));
            snprintf(want, sizeof(want),
                     "job %lld (tests): runner 'r1' stopped answering (lease expired), gave up "
                     "after 3 re-queues",
                     (long long)id);
        }
        assert_true(has_event(f->st, build, want));
        /* The presumed-dead runner's late writes are refused. */
        assert_int_equal(store_job_check(f->st, id, attempt, r1), -ESTALE);
        assert_int_equal(store_job_finish(f->st, id, attempt, r1, "passed", 0, NULL, NULL),
                         -ESTALE);
    }
    assert_null(claim(f->st, r1, "{}", LEASE));
    json_t *b = store_build_get(f->st, build);
    json_t *ev = json_array_get(json_object_get(b, "events"), 0);
    assert_int_equal(ival(ev, "job_id"), id);
    assert_true(ival(ev, "time") > 0);
    json_decref(b);
    json_decref(keep);
}

static void test_lease_requeue_then_finish(void **state)
{
    struct fixture *f = *state;
    int64_t build = build_new(f->st, 0, NULL, ONE_JOB);
    int64_t r1 = runner_new(f->st, "r1", "{}");
    int64_t r2 = runner_new(f->st, "r2", "{}");
    json_t *j = claim(f->st, r1, "{}", -1);
    int64_t id = ival(j, "id");
    json_decref(j);
    assert_int_equal(store_leases_expire(f->st, 3, NULL), 1);
    j = claim(f->st, r2, "{}", LEASE);
    assert_int_equal(ival(j, "attempt"), 2);
    json_decref(j);
    bool done = false;
    assert_int_equal(store_job_finish(f->st, id, 1, r1, "failed", 1, NULL, &done), -ESTALE);
    assert_int_equal(store_job_finish(f->st, id, 2, r2, "passed", 0, NULL, &done), 0);
    assert_true(done);
    json_t *keep = NULL;
    assert_string_equal(build_status(f->st, build, &keep), "passed");
    assert_string_equal(job_status(f->st, id, &keep), "passed");
    assert_int_equal(ival(keep, "infra_retries"), 1);
    assert_string_equal(sval(keep, "runner"), "r2");
    json_decref(keep);
}

static void test_leases_grace(void **state)
{
    struct fixture *f = *state;
    build_new(f->st, 0, NULL, THREE_JOBS);
    int64_t r1 = runner_new(f->st, "r1", "{}");
    json_t *j1 = claim(f->st, r1, "{}", -1);
    json_t *j2 = claim(f->st, r1, "{}", 10 * 60 * 1000);
    assert_int_equal(store_leases_grace(f->st, 60000), 2);
    assert_int_equal(store_leases_expire(f->st, 3, NULL), 0);
    json_t *keep = NULL;
    assert_string_equal(job_status(f->st, ival(j1, "id"), &keep), "running");
    assert_true(ival(keep, "lease_expires") >= time_now_ms() + 50000);
    /* Grace never shortens a lease. */
    assert_string_equal(job_status(f->st, ival(j2, "id"), &keep), "running");
    assert_int_equal(ival(keep, "lease_expires"), ival(j2, "lease_expires"));
    json_decref(keep);
    json_decref(j1);
    json_decref(j2);
}

static bool in_cancel(json_t *cancel, int64_t id, int64_t attempt)
{
    json_t *c;
    size_t i;
    json_array_foreach(cancel, i, c) {
        if (ival(c, "id") == id && ival(c, "attempt") == attempt)
            return true;
    }
    return false;
}

static void test_heartbeat(void **state)
{
    struct fixture *f = *state;
    build_new(f->st, 0, NULL, THREE_JOBS);
    int64_t r1 = runner_new(f->st, "r1", "{}");
    int64_t r2 = runner_new(f->st, "r2", "{}");
    json_t *a = claim(f->st, r1, "{}", 1000);
    json_t *b = claim(f->st, r1, "{}", 1000);
    int64_t ida = ival(a, "id"), idb = ival(b, "id");
    assert_int_equal(store_job_cancel(f->st, idb), 0);

    json_t *jobs = json_pack("[{s:I, s:i}, {s:I, s:i}, {s:i, s:i}, {s:I, s:i}]", "id",
                             (json_int_t)ida, "attempt", 1, "id", (json_int_t)idb, "attempt", 1,
                             "id", 9999, "attempt", 1, "id", (json_int_t)ida, "attempt", 7);
    json_t *info = js("{\"load\": 0.5, \"jobs_run\": 12}");
    json_t *cancel = NULL;
    assert_int_equal(store_runner_heartbeat(f->st, r1, info, jobs, 60000, &cancel), 0);
    assert_int_equal(json_array_size(cancel), 3);
    assert_true(in_cancel(cancel, idb, 1));
    assert_true(in_cancel(cancel, 9999, 1));
    assert_true(in_cancel(cancel, ida, 7));
    assert_false(in_cancel(cancel, ida, 1));
    json_decref(cancel);
    json_t *keep = NULL;
    assert_string_equal(job_status(f->st, ida, &keep), "running");
    assert_true(ival(keep, "lease_expires") >= time_now_ms() + 50000);

    /* Another runner's heartbeat cannot keep r1's job alive. */
    cancel = NULL;
    assert_int_equal(store_runner_heartbeat(f->st, r2, NULL, jobs, 60000, &cancel), 0);
    assert_true(in_cancel(cancel, ida, 1));
    json_decref(cancel);
    assert_int_equal(store_runner_heartbeat(f->st, 999, NULL, jobs, 60000, &cancel), -ENOENT);

    json_t *list = store_runner_list(f->st, false);
    json_t *rr = json_array_get(list, 0);
    assert_int_equal(ival(json_object_get(rr, "client_info"), "jobs_run"), 12);
    assert_true(json_is_true(json_object_get(rr, "alive")));
    assert_int_equal(json_array_size(json_object_get(rr, "jobs")), 1); /* b was cancelled */
    json_t *r2j = json_array_get(list, 1);
    assert_true(is_null(r2j, "client_info"));
    json_decref(list);

    /* A heartbeat without client_info keeps the last one. */
    json_t *none = json_array();
    assert_int_equal(store_runner_heartbeat(f->st, r1, NULL, none, 60000, &cancel), 0);
    assert_int_equal(json_array_size(cancel), 0);
    json_decref(cancel);
    json_t *me = store_runner_by_token(f->st, "hash-of-r1");
    assert_int_equal(ival(json_object_get(me, "client_info"), "jobs_run"), 12);
    json_decref(me);

    json_decref(none);
    json_decref(keep);
    json_decref(info);
    json_decref(jobs);
    json_decref(a);
    json_decref(b);
}

static void test_cancel_build(void **state)
{
    struct fixture *f = *state;
    int64_t build = build_new(f->st, 0, NULL, THREE_JOBS);
    int64_t r1 = runner_new(f->st, "r1", "{}");
    json_t *a = claim(f->st, r1, "{}", LEASE);
    assert_int_equal(store_job_finish(f->st, ival(a, "id"), 1, r1, "passed", 0, NULL, NULL), 0);
    json_t *b = claim(f->st, r1, "{}", LEASE);
    int64_t idb = ival(b, "id");

    assert_int_equal(store_build_cancel(f->st, build), 2);
    json_t *keep = NULL;
    assert_string_equal(build_status(f->st, build, &keep), "cancelled");
    assert_false(is_null(keep, "finished"));
    json_t *jobs = json_object_get(keep, "jobs");
    assert_string_equal(sval(json_array_get(jobs, 0), "status"), "passed");
    assert_string_equal(sval(json_array_get(jobs, 1), "status"), "cancelled");
    assert_string_equal(sval(json_array_get(jobs, 2), "status"), "cancelled");
    assert_false(is_null(json_array_get(jobs, 1), "finished"));
    assert_true(has_event(f->st, build, "cancelled"));

    /* The runner of b learns at its heartbeat, and its writes are refused. */
    assert_int_equal(store_job_check(f->st, idb, 1, r1), -ESTALE);
    assert_int_equal(store_job_finish(f->st, idb, 1, r1, "passed", 0, NULL, NULL), -ESTALE);
    assert_string_equal(job_status(f->st, idb, &keep), "cancelled");
    json_t *hb = json_pack("[{s:I, s:i}]", "id", (json_int_t)idb, "attempt", 1);
    json_t *cancel = NULL;
    assert_int_equal(store_runner_heartbeat(f->st, r1, NULL, hb, LEASE, &cancel), 0);
    assert_true(in_cancel(cancel, idb, 1));
    json_decref(cancel);
    json_decref(hb);

    assert_int_equal(store_build_cancel(f->st, build), 0);
    assert_int_equal(store_build_cancel(f->st, 999), -ENOENT);
    assert_int_equal(store_job_cancel(f->st, ival(a, "id")), 0);
    assert_string_equal(job_status(f->st, ival(a, "id"), &keep), "passed");
    assert_int_equal(store_job_cancel(f->st, 999), -ENOENT);
    assert_null(claim(f->st, r1, "{}", LEASE));

    /* Cancelling a build nobody started. */
    int64_t b2 = build_new(f->st, 0, NULL, ONE_JOB);
    assert_int_equal(store_build_cancel(f->st, b2), 1);
    assert_string_equal(build_status(f->st, b2, &keep), "cancelled");
    assert_null(claim(f->st, r1, "{}", LEASE));
    json_decref(keep);
    json_decref(a);
    json_decref(b);
}

static void test_rebuild(void **state)
{
    struct fixture *f = *state;
    int64_t repo = repo_add(f->st, "proj");
    int64_t build = build_new(f->st, repo, "refs/heads/dev",
                              "[{\"name\": \"unit\", \"commands\": [\"make check\"], \"env\": "
                              "{\"A\": \"1\"}, \"labels\": {\"os\": \"linux\"}, \"timeout\": 60},"
                              " {\"name\": \"lint\", \"commands\": [\"make lint\"]}]");
    int64_t r1 = runner_new(f->st, "r1", "{\"os\": \"linux\"}");
    json_t *j = claim(f->st, r1, "{\"os\": \"linux\"}", LEASE);
    assert_int_equal(store_job_finish(f->st, ival(j, "id"), 1, r1, "failed", 1, NULL, NULL), 0);
    json_decref(j);

    int64_t nb = 0;
    assert_int_equal(store_build_rebuild(f->st, build, &nb), 0);
    assert_true(nb > build);
    json_t *old = store_build_get(f->st, build), *new = store_build_get(f->st, nb);
    assert_int_equal(ival(new, "rebuild_of"), build);
    assert_string_equal(sval(new, "status"), "queued");
    assert_string_equal(sval(new, "repo"), "proj");
    assert_string_equal(sval(new, "ref"), "refs/heads/dev");
    assert_string_equal(sval(new, "branch"), "dev");
    assert_string_equal(sval(new, "commit"), SHA_A);
    assert_true(is_null(new, "started"));
    json_t *oj = json_object_get(old, "jobs"), *nj = json_object_get(new, "jobs");
    assert_int_equal(json_array_size(nj), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *o = json_array_get(oj, i), *n = json_array_get(nj, i);
        assert_string_equal(sval(o, "name"), sval(n, "name"));
        assert_true(json_equal(json_object_get(o, "commands"), json_object_get(n, "commands")));
        assert_true(json_equal(json_object_get(o, "env"), json_object_get(n, "env")));
        assert_true(json_equal(json_object_get(o, "labels"), json_object_get(n, "labels")));
        assert_int_equal(ival(o, "timeout"), ival(n, "timeout"));
        assert_string_equal(sval(n, "status"), "queued");
        assert_int_equal(ival(n, "attempt"), 0);
        assert_true(is_null(n, "exit_code"));
        assert_int_equal(ival(n, "build_id"), nb);
    }
    assert_true(has_event(f->st, nb, "rebuild of build"));
    json_decref(old);
    json_decref(new);

    /* A rebuild of an error build is an error build again. */
    int64_t eb = 0, neb = 0;
    struct buf err = BUF_INIT;
    assert_int_equal(
        store_build_create(f->st, repo, "refs/heads/x", SHA_B, NULL, "bad config", &eb, &err), 0);
    assert_int_equal(store_build_rebuild(f->st, eb, &neb), 0);
    json_t *keep = NULL;
    assert_string_equal(build_status(f->st, neb, &keep), "error");
    assert_string_equal(sval(keep, "error"), "bad config");
    json_decref(keep);
    assert_int_equal(store_build_rebuild(f->st, 999, &neb), -ENOENT);
    buf_release(&err);
}

static void test_runners(void **state)
{
    struct fixture *f = *state;
    struct buf err = BUF_INIT;
    int64_t id = 0;
    json_t *labels = js("{\"os\": \"linux\"}"), *plat = js("{\"os\": \"Linux\"}");
    assert_int_equal(store_runner_register(f->st, "r1", labels, plat, 4, 5, "h1", &id, &err), 0);
    int64_t id2 = 0;
    assert_int_equal(store_runner_register(f->st, "r2", NULL, NULL, 1, 10, "h2", &id2, &err), 0);
    assert_true(id2 > id);
    int64_t x = 0;
    assert_int_equal(store_runner_register(f->st, "r3", labels, plat, 1, 10, "h1", &x, &err),
                     -EEXIST);
    assert_int_equal(store_runner_register(f->st, "bad name", labels, plat, 1, 10, "h3", &x, &err),
                     -EINVAL);
    assert_int_equal(store_runner_register(f->st, "r3", labels, plat, 0, 10, "h3", &x, &err),
                     -EINVAL);
    json_t *bad = js("{\"os\": 5}");
    assert_int_equal(store_runner_register(f->st, "r3", bad, plat, 1, 10, "h3", &x, &err), -EINVAL);
    json_decref(bad);
    assert_int_equal(x, 0);

    json_t *r = store_runner_by_token(f->st, "h1");
    assert_non_null(r);
    assert_int_equal(ival(r, "id"), id);
    assert_string_equal(sval(r, "name"), "r1");
    assert_string_equal(sval(json_object_get(r, "labels"), "os"), "linux");
    assert_string_equal(sval(json_object_get(r, "platform"), "os"), "Linux");
    assert_int_equal(ival(r, "slots"), 4);
    assert_int_equal(ival(r, "heartbeat"), 5);
    assert_true(json_is_true(json_object_get(r, "alive")));
    assert_true(ival(r, "created") > 0);
    assert_true(ival(r, "last_seen") > 0);
    assert_true(is_null(r, "client_info"));
    assert_int_equal(json_array_size(json_object_get(r, "jobs")), 0);
    assert_null(json_object_get(r, "token_hash"));
    json_decref(r);
    assert_null(store_runner_by_token(f->st, "nope"));

    r = store_runner_by_token(f->st, "h2");
    assert_int_equal(json_object_size(json_object_get(r, "labels")), 0);
    assert_true(is_null(r, "platform"));
    json_decref(r);

    json_t *list = store_runner_list(f->st, false);
    assert_int_equal(json_array_size(list), 2);
    json_decref(list);
    json_decref(labels);
    json_decref(plat);
    buf_release(&err);
}

static json_t *list_with(struct store *st, const char *filter)
{
    json_t *fj = js(filter), *l = store_build_list(st, fj);
    json_decref(fj);
    return l;
}

static void test_list_filters(void **state)
{
    struct fixture *f = *state;
    int64_t a = repo_add(f->st, "a"), b = repo_add(f->st, "b");
    int64_t ids[6];
    ids[0] = build_new(f->st, a, "refs/heads/main", ONE_JOB);
    ids[1] = build_new(f->st, a, "refs/heads/dev", ONE_JOB);
    ids[2] = build_new(f->st, b, "refs/heads/main", ONE_JOB);
    ids[3] = build_new(f->st, b, "refs/pull/7/head", ONE_JOB);
    ids[4] = build_new(f->st, 0, NULL, ONE_JOB);
    ids[5] = build_new(f->st, a, "refs/heads/main", ONE_JOB);
    assert_int_equal(store_build_cancel(f->st, ids[2]), 1);

    json_t *l = list_with(f->st, "{}");
    assert_int_equal(json_array_size(l), 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(ival(json_array_get(l, (size_t)i), "id"), ids[5 - i]);
    assert_null(json_object_get(json_array_get(l, 0), "jobs"));
    assert_null(json_object_get(json_array_get(l, 0), "events"));
    json_decref(l);

    l = list_with(f->st, "{\"repo\": \"a\"}");
    assert_int_equal(json_array_size(l), 3);
    json_decref(l);
    l = list_with(f->st, "{\"repo\": \"a\", \"branch\": \"main\"}");
    assert_int_equal(json_array_size(l), 2);
    assert_int_equal(ival(json_array_get(l, 0), "id"), ids[5]);
    json_decref(l);
    l = list_with(f->st, "{\"branch\": \"main\"}");
    assert_int_equal(json_array_size(l), 3);
    json_decref(l);
    l = list_with(f->st, "{\"branch\": \"refs/pull/7/head\"}");
    assert_int_equal(json_array_size(l), 1);
    json_decref(l);
    l = list_with(f->st, "{\"status\": \"cancelled\"}");
    assert_int_equal(json_array_size(l), 1);
    assert_int_equal(ival(json_array_get(l, 0), "id"), ids[2]);
    json_decref(l);
    l = list_with(f->st, "{\"status\": \"queued\", \"repo\": \"b\"}");
    assert_int_equal(json_array_size(l), 1);
    assert_int_equal(ival(json_array_get(l, 0), "id"), ids[3]);
    json_decref(l);
    l = list_with(f->st, "{\"repo\": \"nope\"}");
    assert_int_equal(json_array_size(l), 0);
    json_decref(l);

    /* Paging: limit, then before the last id seen (integer or string). */
    l = list_with(f->st, "{\"limit\": 2}");
    assert_int_equal(json_array_size(l), 2);
    int64_t last = ival(json_array_get(l, 1), "id");
    json_decref(l);
    char filter[64];
    snprintf(filter, sizeof(filter), "{\"before\": %lld, \"limit\": \"2\"}", (long long)last);
    l = list_with(f->st, filter);
    assert_int_equal(json_array_size(l), 2);
    assert_int_equal(ival(json_array_get(l, 0), "id"), ids[3]);
    json_decref(l);
    l = list_with(f->st, "{\"limit\": 0}");
    assert_int_equal(json_array_size(l), 6);
    json_decref(l);
    l = store_build_list(f->st, NULL);
    assert_int_equal(json_array_size(l), 6);
    json_decref(l);
}

static void test_event_add(void **state)
{
    struct fixture *f = *state;
    int64_t build = build_new(f->st, 0, NULL, ONE_JOB);
    json_t *b = store_build_get(f->st, build);
    int64_t job = ival(json_array_get(json_object_get(b, "jobs"), 0), "id");
    json_decref(b);
    assert_int_equal(store_event_add(f->st, build, 0, "configuration read from .yci.yml"), 0);
    assert_int_equal(store_event_add(f->st, build, job, "job note"), 0);
    assert_int_equal(store_event_add(f->st, 999, 0, "x"), -ENOENT);
    b = store_build_get(f->st, build);
    json_t *ev = json_object_get(b, "events");
    assert_int_equal(json_array_size(ev), 2);
    assert_true(is_null(json_array_get(ev, 0), "job_id"));
    assert_string_equal(sval(json_array_get(ev, 0), "message"), "configuration read from .yci.yml");
    assert_int_equal(ival(json_array_get(ev, 1), "job_id"), job);
    json_decref(b);
    assert_null(store_build_get(f->st, 999));
    assert_null(store_job_get(f->st, 999));
}

/* The database changed under the store (here a table dropped by hand): a
 * statement that can no longer be prepared fails its call with an error, as
 * a failed step does; the store does not abort and the rest works on. */
static void test_database_changed_under_us(void **state)
{
    struct fixture *f = *state;
    int64_t build = build_new(f->st, 0, NULL, ONE_JOB);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE events", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(store_event_add(f->st, build, 0, "a note"), -EIO);
    assert_int_equal(store_event_add(f->st, build, 0, "again"), -EIO);
    /* Its events cannot be read (that statement was never prepared): the
     * build without them. */
    json_t *b = store_build_get(f->st, build);
    assert_non_null(b);
    assert_int_equal(json_array_size(json_object_get(b, "jobs")), 1);
    assert_int_equal(json_array_size(json_object_get(b, "events")), 0);
    json_decref(b);
    /* What does not need the table goes on. */
    int64_t r1 = runner_new(f->st, "r1", "{}");
    json_t *a = claim(f->st, r1, "{}", LEASE);
    assert_non_null(a);
    assert_int_equal(store_job_finish(f->st, ival(a, "id"), 1, r1, "passed", 0, NULL, NULL), 0);
    json_decref(a);
}

static void test_reopen(void **state)
{
    struct fixture *f = *state;
    int64_t repo = repo_add(f->st, "proj");
    json_t *jobs = js(THREE_JOBS);
    struct buf err = BUF_INIT;
    int64_t build = 0;
    assert_int_equal(
        store_head_advance(f->st, repo, "refs/heads/main", NULL, SHA_A, jobs, NULL, true, NULL, false, NULL, &build, &err),
        1);
    int64_t r1 = runner_new(f->st, "r1", "{}");
    json_t *a = claim(f->st, r1, "{}", LEASE);
    assert_int_equal(store_job_finish(f->st, ival(a, "id"), 1, r1, "passed", 0, NULL, NULL), 0);
    json_t *b = claim(f->st, r1, "{}", LEASE);
    json_t *before = store_build_get(f->st, build);

    store_free(f->st);
    f->st = NULL;
    assert_int_equal(store_open(f->db, &f->st, &err), 0);

    json_t *after = store_build_get(f->st, build);
    assert_true(json_equal(before, after));
    json_t *heads = store_heads_get(f->st, repo);
    assert_string_equal(sval(heads, "refs/heads/main"), SHA_A);
    json_decref(heads);
    /* Still exactly one build of (main, A). */
    int64_t x = 0;
    assert_int_equal(
        store_head_advance(f->st, repo, "refs/heads/main", SHA_A, SHA_A, jobs, NULL, true, NULL, false, NULL, &x, &err), 0);
    json_t *r = store_runner_by_token(f->st, "hash-of-r1");
    assert_int_equal(ival(r, "id"), r1);
    assert_int_equal(json_array_size(json_object_get(r, "jobs")), 1);
    json_decref(r);
    /* The running job goes on: its runner can still finish it. */
    assert_int_equal(store_job_check(f->st, ival(b, "id"), 1, r1), 0);
    json_t *c = claim(f->st, r1, "{}", LEASE);
    assert_string_equal(sval(c, "name"), "c");
    bool done = false;
    assert_int_equal(store_job_finish(f->st, ival(b, "id"), 1, r1, "passed", 0, NULL, &done), 0);
    assert_false(done);
    assert_int_equal(store_job_finish(f->st, ival(c, "id"), 1, r1, "passed", 0, NULL, &done), 0);
    assert_true(done);

    /* The schema version is recorded. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_true(sqlite3_column_int(s, 0) >= 1);
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);

    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(before);
    json_decref(after);
    json_decref(jobs);
    buf_release(&err);
}

/*
 * The claim's cost does not grow with history: with 20,000 finished jobs
 * and 5,000 queued ones, the claim query (the same text as in sqlite.c)
 * reads the partial index of queued jobs, and running it to find the first
 * queued job takes a handful of VM steps. No timing.
 */
/* The claim's two statements (src/store/sqlite.c): the next label set queued,
 * and the oldest ready job of a set. */
#define CLAIM_LABELS_SQL                                                                           \
    "SELECT labels FROM jobs INDEXED BY jobs_queued WHERE status = 'queued' AND waiting = 0 "      \
    "AND labels > ?1 ORDER BY labels LIMIT 1"
#define CLAIM_FIRST_SQL                                                                            \
    "SELECT id FROM jobs INDEXED BY jobs_queued WHERE status = 'queued' AND waiting = 0 "          \
    "AND labels = ?1 AND not_before <= ?2 ORDER BY id LIMIT 1"


/* ---- retry, needs, cancel_superseded ---- */

static void test_release(void **state)
{
    struct fixture *f = *state;
    int64_t build = build_new(f->st, 0, NULL, ONE_JOB);
    int64_t r1 = runner_new(f->st, "r1", "{}"), r2 = runner_new(f->st, "r2", "{}");
    json_t *a = claim(f->st, r1, "{}", LEASE);
    int64_t id = ival(a, "id");
    json_decref(a);
    assert_int_equal(store_job_release(f->st, id, 1, r2, "r2"), -ESTALE); /* not its job */
    assert_int_equal(store_job_release(f->st, id, 2, r1, "r1"), -ESTALE); /* not that attempt */
    assert_int_equal(store_job_release(f->st, id + 100, 1, r1, "r1"), -ENOENT);
    assert_int_equal(store_job_release(f->st, id, 1, r1, "r1"), 0);
    assert_true(has_event(f->st, build, "runner 'r1' stopped and gave it back, re-queued"));
    json_t *j = store_job_get(f->st, id);
    assert_string_equal(sval(j, "status"), "queued");
    assert_int_equal(ival(j, "infra_retries"), 0);
    json_decref(j);
    assert_int_equal(store_job_release(f->st, id, 1, r1, "r1"), -ESTALE); /* once */
    /* Claimed again: the next attempt; its finish counts, the old one's not. */
    json_t *b = claim(f->st, r2, "{}", LEASE);
    assert_int_equal(ival(b, "id"), id);
    assert_int_equal(ival(b, "attempt"), 2);
    json_decref(b);
    assert_int_equal(store_job_finish(f->st, id, 1, r1, "passed", 0, NULL, NULL), -ESTALE);
    bool done = false;
    assert_int_equal(store_job_finish(f->st, id, 2, r2, "passed", 0, NULL, &done), 0);
    assert_true(done);
}

static void test_reregister(void **state)
{
    struct fixture *f = *state;
    build_new(f->st, 0, NULL, ONE_JOB);
    int64_t r1 = runner_new(f->st, "r1", "{}"), id = 0;
    json_t *a = claim(f->st, r1, "{}", LEASE);
    int64_t job = ival(a, "id");
    json_decref(a);
    json_t *labels = js("{\"gpu\": \"yes\"}"), *plat = js("{}");
    struct buf err = BUF_INIT;
    assert_int_equal(store_runner_reregister(f->st, "hash-of-nobody", "r1", labels, plat, 1, 5,
                                             &id, &err),
                     -ENOENT);
    assert_int_equal(store_runner_reregister(f->st, "hash-of-r1", "r1-again", labels, plat, 4, 5,
                                             &id, &err),
                     0);
    assert_int_equal(id, r1);
    json_t *r = store_runner_by_token(f->st, "hash-of-r1");
    assert_string_equal(sval(r, "name"), "r1-again");
    assert_int_equal(ival(r, "slots"), 4);
    assert_string_equal(sval(json_object_get(r, "labels"), "gpu"), "yes");
    json_decref(r);
    /* The job the old process ran: its lease is over, re-queued now. */
    int requeued = 0;
    assert_int_equal(store_leases_expire(f->st, 3, &requeued), 1);
    assert_int_equal(requeued, 1);
    json_t *j = store_job_get(f->st, job);
    assert_string_equal(sval(j, "status"), "queued");
    json_decref(j);
    assert_int_equal(store_runner_reregister(f->st, "hash-of-r1", "bad name!", labels, plat, 1, 5,
                                             &id, &err),
                     -EINVAL);
    json_decref(labels);
    json_decref(plat);
    buf_release(&err);
}

static void test_forgotten_runners(void **state)
{
    struct fixture *f = *state;
    int64_t old = runner_new(f->st, "old", "{}"), busy = runner_new(f->st, "busy", "{}");
    int64_t fresh = runner_new(f->st, "fresh", "{}");
    build_new(f->st, 0, NULL, ONE_JOB);
    json_t *j = claim(f->st, busy, "{}", LEASE);
    json_decref(j);
    /* Two of them last seen 8 days ago; one of those still runs a job. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    char *sql = sqlite3_mprintf("UPDATE runners SET last_seen = %lld WHERE id IN (%lld, %lld)",
                                (long long)(time_now_ms() - 8LL * 24 * 3600 * 1000),
                                (long long)old, (long long)busy);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_free(sql);
    sqlite3_close(db);
    json_t *list = store_runner_list(f->st, false);
    assert_int_equal(json_array_size(list), 2);
    assert_int_equal(ival(json_array_get(list, 0), "id"), busy);
    assert_int_equal(ival(json_array_get(list, 1), "id"), fresh);
    json_decref(list);
    list = store_runner_list(f->st, true);
    assert_int_equal(json_array_size(list), 3);
    assert_int_equal(ival(json_array_get(list, 0), "id"), old);
    json_decref(list);
}

static void test_retry(void **state)
{
    struct fixture *f = *state;
    int64_t build = build_new(f->st, 0, NULL,
                              "[{\"name\": \"t\", \"commands\": [\"x\"], "
                              "\"retry\": {\"count\": 2, \"increment\": 0}},"
                              " {\"name\": \"slow\", \"commands\": [\"x\"], "
                              "\"retry\": {\"count\": 3, \"increment\": 600}}]");
    int64_t r = runner_new(f->st, "r", "{}");
    json_t *keep = NULL;

    /* t: fails, fails, passes on retry 2: passed and flaky. */
    json_t *j = claim(f->st, r, "{}", LEASE);
    assert_string_equal(sval(j, "name"), "t");
    assert_int_equal(ival(j, "max_retries"), 2);
    assert_int_equal(ival(j, "retries"), 0);
    int64_t t = ival(j, "id");
    finish(f->st, j, r, "failed");
    assert_string_equal(job_status(f->st, t, &keep), "queued");
    assert_int_equal(ival(keep, "retries"), 1);
    assert_int_equal(ival(keep, "exit_code"), 1); /* the failed attempt's, until the next claim */
    assert_true(has_event(f->st, build, "(t): failed, retry 1 of 2 in 0 s"));
    /* Idempotent: the runner repeating its finish changes nothing. */
    assert_int_equal(store_job_finish(f->st, t, 1, r, "failed", 1, NULL, NULL), 0);
    assert_int_equal(ival(job_status(f->st, t, &keep) ? keep : NULL, "retries"), 1);
    assert_string_equal(build_status(f->st, build, &keep), "running");
    json_decref(j);

    j = claim(f->st, r, "{}", LEASE);
    assert_int_equal(ival(j, "id"), t);
    assert_int_equal(ival(j, "attempt"), 2);
    assert_true(is_null(j, "exit_code"));
    finish(f->st, j, r, "timed_out");
    assert_true(has_event(f->st, build, "(t): timed out, retry 2 of 2 in 0 s"));
    json_decref(j);
    j = claim(f->st, r, "{}", LEASE);
    assert_int_equal(ival(j, "attempt"), 3);
    finish(f->st, j, r, "passed");
    json_decref(j);
    assert_string_equal(job_status(f->st, t, &keep), "passed");
    assert_true(json_is_true(json_object_get(keep, "flaky")));
    assert_int_equal(ival(keep, "retries"), 2);

    /* slow: fails; retry 1 waits 600 s, so nothing is claimable. */
    j = claim(f->st, r, "{}", LEASE);
    int64_t slow = ival(j, "id");
    assert_false(json_is_true(json_object_get(j, "flaky")));
    int64_t before = time_now_ms();
    finish(f->st, j, r, "failed");
    json_decref(j);
    assert_true(has_event(f->st, build, "(slow): failed, retry 1 of 3 in 600 s"));
    assert_string_equal(job_status(f->st, slow, &keep), "queued");
    assert_true(ival(keep, "not_before") >= before + 600000);
    assert_true(ival(keep, "not_before") <= time_now_ms() + 600000);
    assert_null(claim(f->st, r, "{}", LEASE));
    assert_string_equal(build_status(f->st, build, &keep), "running");
    /* error (the infrastructure) is never retried: cancel to finish. */
    assert_int_equal(store_job_cancel(f->st, slow), 0);
    assert_string_equal(build_status(f->st, build, &keep), "cancelled");

    /* A job whose retries are used up fails; error is not retried. */
    int64_t b2 = build_new(f->st, 0, NULL,
                           "[{\"name\": \"a\", \"commands\": [\"x\"], \"retry\": {\"count\": 1}},"
                           " {\"name\": \"e\", \"commands\": [\"x\"], \"retry\": {\"count\": 1}}]");
    j = claim(f->st, r, "{}", LEASE);
    finish(f->st, j, r, "failed");
    json_decref(j);
    j = claim(f->st, r, "{}", LEASE);
    assert_string_equal(sval(j, "name"), "a");
    finish(f->st, j, r, "failed");
    json_decref(j);
    j = claim(f->st, r, "{}", LEASE);
    assert_string_equal(sval(j, "name"), "e");
    finish(f->st, j, r, "error");
    json_decref(j);
    assert_string_equal(build_status(f->st, b2, &keep), "failed");
    json_t *jobs = json_object_get(keep, "jobs");
    assert_string_equal(sval(json_array_get(jobs, 0), "status"), "failed");
    assert_false(json_is_true(json_object_get(json_array_get(jobs, 0), "flaky")));
    assert_string_equal(sval(json_array_get(jobs, 1), "status"), "error");
    assert_int_equal(ival(json_array_get(jobs, 1), "retries"), 0);
    json_decref(keep);
}

/* A .yci.py plan job: its finish adds the generated jobs in one transaction;
 * a failed plan is the build's error; a rebuild copies the plan, not what it
 * generated; a retry count never re-runs a plan. */
static void test_plan(void **state)
{
    struct fixture *f = *state;
    const char *plan = "[{\"name\": \".yci.py\", \"kind\": \"plan\", \"commands\": [\"gen\"], "
                       "\"retry\": {\"count\": 3}}]";
    int64_t build = build_new(f->st, 0, NULL, plan);
    int64_t r = runner_new(f->st, "r", "{}");
    json_t *keep = NULL;
    struct buf err = BUF_INIT;

    json_t *j = claim(f->st, r, "{}", LEASE);
    assert_string_equal(sval(j, "kind"), "plan");
    assert_false(json_is_true(json_object_get(j, "planned")));
    int64_t pid = ival(j, "id");
    /* A plan that passes must say what it planned. */
    assert_int_equal(store_plan_finish(f->st, pid, 1, r, "passed", 0, NULL, NULL, NULL, &err),
                     -EINVAL);
    /* Bad jobs are refused whole, the plan job still running. */
    json_t *bad = js("[{\"name\": \"a\", \"commands\": []}]");
    assert_int_equal(store_plan_finish(f->st, pid, 1, r, "passed", 0, NULL, bad, NULL, &err),
                     -EINVAL);
    json_decref(bad);
    /* A name taken by the plan job itself. */
    json_t *clash = js("[{\"name\": \".yci.py\", \"commands\": [\"x\"]}]");
    assert_int_equal(store_plan_finish(f->st, pid, 1, r, "passed", 0, NULL, clash, NULL, &err),
                     -EINVAL);
    assert_non_null(strstr(err.data, "name of the plan job"));
    json_decref(clash);
    assert_string_equal(job_status(f->st, pid, &keep), "running");

    json_t *gen = js("[{\"name\": \"a\", \"commands\": [\"x\"], \"env\": {\"K\": \"v\"}},"
                     " {\"name\": \"b\", \"commands\": [\"y\"], \"needs\": [\"a\"],"
                     "  \"retry\": {\"count\": 2, \"increment\": 5}}]");
    bool done = true;
    assert_int_equal(store_plan_finish(f->st, pid, 1, r, "passed", 0, NULL, gen, &done, &err), 0);
    assert_false(done);
    /* Idempotent: the same finish again adds nothing. */
    assert_int_equal(store_plan_finish(f->st, pid, 1, r, "passed", 0, NULL, gen, &done, &err), 0);
    json_decref(gen);
    assert_true(has_event(f->st, build, ".yci.py planned 2 jobs"));
    json_t *b = store_build_get(f->st, build);
    json_t *jobs = json_object_get(b, "jobs");
    assert_int_equal(json_array_size(jobs), 3);
    json_t *a = json_array_get(jobs, 1), *bj = json_array_get(jobs, 2);
    assert_string_equal(sval(a, "name"), "a");
    assert_string_equal(sval(a, "kind"), "test");
    assert_true(json_is_true(json_object_get(a, "planned")));
    assert_string_equal(sval(json_object_get(a, "env"), "K"), "v");
    assert_true(json_is_true(json_object_get(bj, "waiting")));
    assert_int_equal(ival(bj, "max_retries"), 2);
    assert_string_equal(sval(b, "status"), "running");
    json_decref(b);
    json_decref(j);

    /* The generated jobs run like any. */
    j = claim(f->st, r, "{}", LEASE);
    assert_string_equal(sval(j, "name"), "a");
    finish(f->st, j, r, "passed");
    json_decref(j);
    j = claim(f->st, r, "{}", LEASE);
    assert_string_equal(sval(j, "name"), "b");
    finish(f->st, j, r, "passed");
    json_decref(j);
    assert_string_equal(build_status(f->st, build, &keep), "passed");

    /* A rebuild plans again: the plan job only. */
    int64_t nb = 0;
    assert_int_equal(store_build_rebuild(f->st, build, &nb), 0);
    b = store_build_get(f->st, nb);
    assert_int_equal(json_array_size(json_object_get(b, "jobs")), 1);
    assert_string_equal(sval(json_array_get(json_object_get(b, "jobs"), 0), "kind"), "plan");
    json_decref(b);

    /* A plan that fails, even with retries left, is the build's error. */
    j = claim(f->st, r, "{}", LEASE);
    assert_int_equal(ival(j, "build_id"), nb);
    done = false;
    assert_int_equal(store_plan_finish(f->st, ival(j, "id"), 1, r, "error", -1,
                                       ".yci.py:3: test_generator raised ValueError: boom", NULL,
                                       &done, &err),
                     0);
    assert_true(done);
    json_decref(j);
    assert_string_equal(build_status(f->st, nb, &keep), "error");
    assert_string_equal(sval(keep, "error"), ".yci.py:3: test_generator raised ValueError: boom");
    /* Its rebuild does not inherit the error: it plans again. */
    int64_t nb2 = 0;
    assert_int_equal(store_build_rebuild(f->st, nb, &nb2), 0);
    assert_string_equal(build_status(f->st, nb2, &keep), "queued");
    assert_true(is_null(keep, "error"));

    /* A timed-out plan is not retried either. */
    j = claim(f->st, r, "{}", LEASE);
    assert_int_equal(ival(j, "build_id"), nb2);
    assert_int_equal(store_plan_finish(f->st, ival(j, "id"), 1, r, "timed_out", -1,
                                       "ran past its time limit", NULL, NULL, &err),
                     0);
    json_decref(j);
    assert_string_equal(build_status(f->st, nb2, &keep), "failed");

    /* Nothing generated: the build passes, marked as having no jobs. */
    int64_t empty = build_new(f->st, 0, NULL, plan);
    j = claim(f->st, r, "{}", LEASE);
    assert_int_equal(ival(j, "build_id"), empty);
    gen = json_array();
    assert_int_equal(
        store_plan_finish(f->st, ival(j, "id"), 1, r, "passed", 0, NULL, gen, NULL, &err), 0);
    json_decref(gen);
    json_decref(j);
    assert_string_equal(build_status(f->st, empty, &keep), "passed");
    assert_true(has_event(f->st, empty, "no jobs: the .yci.py test_generator yielded nothing"));
    json_decref(keep);
    buf_release(&err);
}

static void test_needs(void **state)
{
    struct fixture *f = *state;
    int64_t r = runner_new(f->st, "r", "{}");
    /* lint ← tests ← deploy; other needs nothing. */
    const char *text = "[{\"name\": \"deploy\", \"commands\": [\"x\"], \"needs\": [\"tests\"]},"
                       " {\"name\": \"tests\", \"commands\": [\"x\"], \"needs\": [\"lint\"]},"
                       " {\"name\": \"lint\", \"commands\": [\"x\"]},"
                       " {\"name\": \"other\", \"commands\": [\"x\"], \"needs\": []}]";
    int64_t build = build_new(f->st, 0, NULL, text);
    json_t *keep = NULL;
    build_status(f->st, build, &keep);
    json_t *jobs = json_object_get(keep, "jobs");
    assert_true(json_is_true(json_object_get(json_array_get(jobs, 0), "waiting")));
    assert_string_equal(sval(json_array_get(jobs, 0), "status"), "queued");
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(json_array_get(jobs, 0), "needs"), 0)),
                        "tests");
    assert_false(json_is_true(json_object_get(json_array_get(jobs, 2), "waiting")));

    json_t *a = claim(f->st, r, "{}", LEASE), *b = claim(f->st, r, "{}", LEASE);
    assert_string_equal(sval(a, "name"), "lint");
    assert_string_equal(sval(b, "name"), "other");
    assert_null(claim(f->st, r, "{}", LEASE));
    finish(f->st, a, r, "passed");
    json_decref(a);
    a = claim(f->st, r, "{}", LEASE);
    assert_string_equal(sval(a, "name"), "tests");
    assert_null(claim(f->st, r, "{}", LEASE));
    finish(f->st, a, r, "passed");
    json_decref(a);
    a = claim(f->st, r, "{}", LEASE);
    assert_string_equal(sval(a, "name"), "deploy");
    finish(f->st, a, r, "passed");
    finish(f->st, b, r, "passed");
    json_decref(a);
    json_decref(b);
    assert_string_equal(build_status(f->st, build, &keep), "passed");

    /* A failed need cancels its dependents, transitively; a retry is not
     * the end of the need. */
    const char *t2 = "[{\"name\": \"lint\", \"commands\": [\"x\"], \"retry\": {\"count\": 1}},"
                     " {\"name\": \"tests\", \"commands\": [\"x\"], \"needs\": [\"lint\"]},"
                     " {\"name\": \"deploy\", \"commands\": [\"x\"], \"needs\": [\"tests\"]}]";
    int64_t b2 = build_new(f->st, 0, NULL, t2);
    a = claim(f->st, r, "{}", LEASE);
    finish(f->st, a, r, "failed");
    json_decref(a);
    build_status(f->st, b2, &keep);
    assert_string_equal(sval(json_array_get(json_object_get(keep, "jobs"), 1), "status"),
                        "queued");
    a = claim(f->st, r, "{}", LEASE);
    assert_string_equal(sval(a, "name"), "lint");
    finish(f->st, a, r, "failed");
    json_decref(a);
    assert_null(claim(f->st, r, "{}", LEASE));
    assert_string_equal(build_status(f->st, b2, &keep), "failed");
    jobs = json_object_get(keep, "jobs");
    assert_string_equal(sval(json_array_get(jobs, 1), "status"), "cancelled");
    assert_string_equal(sval(json_array_get(jobs, 1), "error"), "needed job 'lint' failed");
    assert_string_equal(sval(json_array_get(jobs, 2), "status"), "cancelled");
    assert_string_equal(sval(json_array_get(jobs, 2), "error"),
                        "needed job 'tests' was cancelled");
    assert_true(has_event(f->st, b2, "(tests): cancelled: needed job 'lint' failed"));

    /* Cancelling the needed job cancels the dependent. */
    int64_t b3 = build_new(f->st, 0, NULL, t2);
    a = claim(f->st, r, "{}", LEASE);
    assert_int_equal(store_job_cancel(f->st, ival(a, "id")), 0);
    json_decref(a);
    assert_string_equal(build_status(f->st, b3, &keep), "cancelled");

    /* A rebuild waits again. */
    int64_t nb = 0;
    assert_int_equal(store_build_rebuild(f->st, build, &nb), 0);
    build_status(f->st, nb, &keep);
    assert_true(json_is_true(json_object_get(json_array_get(json_object_get(keep, "jobs"), 0),
                                             "waiting")));
    assert_int_equal(store_build_cancel(f->st, nb), 4);

    /* Bad needs. */
    const char *bad[] = {
        "[{\"name\": \"a\", \"commands\": [\"x\"], \"needs\": [\"nope\"]}]",
        "[{\"name\": \"a\", \"commands\": [\"x\"], \"needs\": [\"a\"]}]",
        "[{\"name\": \"a\", \"commands\": [\"x\"], \"needs\": \"b\"}, "
        "{\"name\": \"b\", \"commands\": [\"x\"]}]",
        "[{\"name\": \"a\", \"commands\": [\"x\"], \"needs\": [\"b\"]}, "
        "{\"name\": \"b\", \"commands\": [\"x\"], \"needs\": [\"c\"]}, "
        "{\"name\": \"c\", \"commands\": [\"x\"], \"needs\": [\"a\"]}]",
        "[{\"name\": \"a\", \"commands\": [\"x\"], \"retry\": {\"count\": 11}}]",
        "[{\"name\": \"a\", \"commands\": [\"x\"], \"retry\": {\"increment\": -1}}]",
        "[{\"name\": \"a\", \"commands\": [\"x\"], \"retry\": 3}]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = js(bad[i]);
        int64_t id = 0;
        struct buf err = BUF_INIT;
        assert_int_equal(store_build_create(f->st, 0, NULL, NULL, j, NULL, &id, &err), -EINVAL);
        assert_true(err.len > 0);
        if (i == 3)
            assert_non_null(strstr(err.data, "cycle"));
        buf_release(&err);
        json_decref(j);
    }
    json_decref(keep);
}

static void test_superseded(void **state)
{
    struct fixture *f = *state;
    int64_t repo = repo_add(f->st, "proj");
    int64_t r = runner_new(f->st, "r", "{}");
    json_t *jobs = js(THREE_JOBS), *keep = NULL;
    struct buf err = BUF_INIT;
    int64_t b1 = 0, b2 = 0, b3 = 0, other = 0;
    assert_int_equal(store_head_advance(f->st, repo, "refs/heads/main", NULL, SHA_A, jobs, NULL,
                                        true, NULL, false, NULL, &b1, &err),
                     1);
    assert_int_equal(store_head_advance(f->st, repo, "refs/heads/dev", NULL, SHA_A, jobs, NULL,
                                        true, NULL, false, NULL, &other, &err),
                     1);
    json_t *a = claim(f->st, r, "{}", LEASE), *b = claim(f->st, r, "{}", LEASE);
    finish(f->st, a, r, "passed");
    /* b is running, c queued: both are cancelled by the next commit. */
    assert_int_equal(store_head_advance(f->st, repo, "refs/heads/main", SHA_A, SHA_B, jobs, NULL,
                                        true, NULL, false, NULL, &b2, &err),
                     1);
    assert_string_equal(build_status(f->st, b1, &keep), "cancelled");
    json_t *j1 = json_object_get(keep, "jobs");
    assert_string_equal(sval(json_array_get(j1, 0), "status"), "passed");
    assert_string_equal(sval(json_array_get(j1, 1), "status"), "cancelled");
    assert_string_equal(sval(json_array_get(j1, 2), "status"), "cancelled");
    char want[64];
    snprintf(want, sizeof(want), "superseded by build %lld: 2 jobs cancelled", (long long)b2);
    assert_true(has_event(f->st, b1, want));
    assert_int_equal(store_job_finish(f->st, ival(b, "id"), 1, r, "passed", 0, NULL, NULL),
                     -ESTALE);
    /* Other branches are untouched; so are older builds with false. */
    assert_string_equal(build_status(f->st, other, &keep), "queued");
    assert_int_equal(store_head_advance(f->st, repo, "refs/heads/main", SHA_B, SHA_C, jobs, NULL,
                                        false, NULL, false, NULL, &b3, &err),
                     1);
    assert_string_equal(build_status(f->st, b2, &keep), "queued");
    json_decref(a);
    json_decref(b);
    json_decref(jobs);
    json_decref(keep);
    buf_release(&err);
}

/* A twin ref's build of the same commit stands for a ref: no second build;
 * a pull request adopts its branch's build; the ref's older builds are
 * superseded by it; a cancelled twin build does not count. */
/* store_head_advance() as the observer calls it for a GitHub repository. */
static int adv(struct store *st, int64_t repo, const char *ref, const char *old, const char *sha,
               json_t *jobs, json_t *pull, const char *twin, int64_t *id)
{
    struct buf err = BUF_INIT;
    int r = store_head_advance(st, repo, ref, old, sha, jobs, NULL, true, pull, false, twin, id,
                               &err);
    buf_release(&err);
    return r;
}

static void test_twin(void **state)
{
    struct fixture *f = *state;
    int64_t repo = repo_add(f->st, "proj");
    json_t *jobs = js(ONE_JOB), *pull = js("{\"number\": 1}"), *keep = NULL;
    int64_t br = 0, id = 0, pr = 0;
    const char *B = "refs/heads/feature", *P = "refs/pull/1/head";
    assert_int_equal(adv(f->st, repo, B, NULL, SHA_A, jobs, NULL, P, &br), 1);
    /* The pull request at the same commit: the branch's build is its build. */
    assert_int_equal(adv(f->st, repo, P, NULL, SHA_A, jobs, pull, B, &id), 0);
    assert_int_equal(id, br);
    json_t *b = store_build_get(f->st, br);
    assert_int_equal(ival(b, "pull_number"), 1);
    json_decref(b);
    assert_true(has_event(f->st, br, "refs/pull/1/head is at this commit too: this build stands for it"));
    json_t *heads = store_heads_get(f->st, repo);
    assert_string_equal(sval(heads, P), SHA_A);
    json_decref(heads);

    /* The pull request moves first: its own build; then its branch follows. */
    assert_int_equal(adv(f->st, repo, P, SHA_A, SHA_B, jobs, pull, B, &pr), 1);
    assert_int_equal(adv(f->st, repo, B, SHA_A, SHA_B, jobs, NULL, P, &id), 0);
    assert_int_equal(id, pr);
    /* The branch's older build was superseded by the pull request's. */
    assert_string_equal(build_status(f->st, br, &keep), "cancelled");
    char want[64];
    snprintf(want, sizeof(want), "superseded by build %lld: 1 job cancelled", (long long)pr);
    assert_true(has_event(f->st, br, want));

    /* Without a twin, or with a twin whose build was cancelled: a build. */
    assert_int_equal(store_build_cancel(f->st, pr), 1);
    assert_int_equal(adv(f->st, repo, B, SHA_B, SHA_C, jobs, NULL, NULL, &id), 1);
    assert_int_equal(adv(f->st, repo, "refs/heads/x", NULL, SHA_B, jobs, NULL, P, &id), 1);

    /* Closing a pull request cancels its builds, but not one its branch
     * (still at that commit) stands for, nor its branch's it adopted. */
    json_t *same = js("{\"number\": 2, \"head\": {\"ref\": \"topic\", \"repo\": "
                      "{\"full_name\": \"o/p\"}}, \"base\": {\"repo\": {\"full_name\": "
                      "\"o/p\"}}}");
    const char *T = "refs/heads/topic", *P2 = "refs/pull/2/head";
    int64_t repo2 = repo_add(f->st, "proj2"), old = 0;
    assert_int_equal(adv(f->st, repo2, P2, NULL, SHA_A, jobs, same, T, &old), 1);
    assert_int_equal(adv(f->st, repo2, P2, SHA_A, SHA_B, jobs, same, T, &pr), 1);
    assert_int_equal(adv(f->st, repo2, T, NULL, SHA_B, jobs, NULL, P2, &id), 0);
    assert_int_equal(id, pr);
    assert_int_equal(adv(f->st, repo2, B, NULL, SHA_C, jobs, NULL, P, &br), 1);
    assert_int_equal(adv(f->st, repo2, P, NULL, SHA_C, jobs, pull, B, &id), 0);
    assert_int_equal(store_build_cancel(f->st, old), 0); /* superseded already */
    assert_int_equal(store_ref_close(f->st, repo2, P2, "pull request #2 was closed"), 0);
    assert_int_equal(store_ref_close(f->st, repo2, P, "pull request #1 was closed"), 0);
    assert_string_equal(build_status(f->st, pr, &keep), "queued");
    assert_string_equal(build_status(f->st, br, &keep), "queued");
    /* The branch moves on: the closed pull request's build it stood for is
     * superseded like the branch's own (another branch's is not). */
    int64_t next = 0;
    assert_int_equal(adv(f->st, repo2, "refs/heads/other", NULL, SHA_C, jobs, NULL, NULL, &next), 1);
    assert_string_equal(build_status(f->st, pr, &keep), "queued");
    assert_int_equal(adv(f->st, repo2, T, SHA_B, SHA_C, jobs, NULL, NULL, &next), 1);
    assert_string_equal(build_status(f->st, pr, &keep), "cancelled");
    snprintf(want, sizeof(want), "superseded by build %lld: 1 job cancelled", (long long)next);
    assert_true(has_event(f->st, pr, want));
    assert_string_equal(build_status(f->st, br, &keep), "queued");
    /* Its branch moved on: then the pull request's own build is cancelled. */
    assert_int_equal(adv(f->st, repo2, P2, NULL, SHA_A, jobs, same, T, &pr), 1);
    assert_int_equal(store_ref_close(f->st, repo2, P2, "pull request #2 was closed"), 0);
    assert_string_equal(build_status(f->st, pr, &keep), "cancelled");
    assert_true(has_event(f->st, pr, "pull request #2 was closed: 1 job cancelled"));
    json_decref(same);

    /* A pull request's own build beside its branch's (different jobs):
     * closing cancels it. A build it adopted whose branch was deleted:
     * closing cancels it too. */
    json_t *p3 = js("{\"number\": 3, \"head\": {\"ref\": \"t3\", \"repo\": "
                    "{\"full_name\": \"o/p\"}}, \"base\": {\"repo\": {\"full_name\": "
                    "\"o/p\"}}}");
    json_t *p4 = js("{\"number\": 4}");
    int64_t repo5 = repo_add(f->st, "proj5"), t3 = 0, own = 0, t4 = 0;
    assert_int_equal(adv(f->st, repo5, "refs/heads/t3", NULL, SHA_A, jobs, NULL, NULL, &t3), 1);
    assert_int_equal(adv(f->st, repo5, "refs/pull/3/head", NULL, SHA_A, jobs, p3, NULL, &own), 1);
    assert_int_equal(store_ref_close(f->st, repo5, "refs/pull/3/head", "pull request #3 was closed"),
                     0);
    assert_string_equal(build_status(f->st, own, &keep), "cancelled");
    assert_string_equal(build_status(f->st, t3, &keep), "queued");
    assert_int_equal(adv(f->st, repo5, "refs/heads/t4", NULL, SHA_B, jobs, NULL, NULL, &t4), 1);
    assert_int_equal(adv(f->st, repo5, "refs/pull/4/head", NULL, SHA_B, jobs, p4, "refs/heads/t4",
                         &id),
                     0);
    assert_int_equal(id, t4);
    assert_int_equal(store_head_delete(f->st, repo5, "refs/heads/t4"), 0);
    assert_int_equal(store_ref_close(f->st, repo5, "refs/pull/4/head", "pull request #4 was closed"),
                     0);
    assert_string_equal(build_status(f->st, t4, &keep), "cancelled");
    assert_true(has_event(f->st, t4, "pull request #4 was closed: 1 job cancelled"));
    json_decref(p3);
    json_decref(p4);

    /* Two pull requests from one branch: the second is not the first's. */
    int64_t repo4 = repo_add(f->st, "proj4"), b1 = 0, p1 = 0, p2 = 0;
    json_t *pull2 = js("{\"number\": 2}");
    assert_int_equal(adv(f->st, repo4, B, NULL, SHA_A, jobs, NULL, P, &b1), 1);
    assert_int_equal(adv(f->st, repo4, P, NULL, SHA_A, jobs, pull, B, &p1), 0);
    assert_int_equal(p1, b1);
    assert_int_equal(adv(f->st, repo4, "refs/pull/2/head", NULL, SHA_A, jobs, pull2, B, &p2), 1);
    assert_true(p2 != b1);
    json_decref(pull2);

    /* A ref back at a commit it has a build of: no new build, and its build
     * of the commit it left is superseded all the same. */
    int64_t repo3 = repo_add(f->st, "proj3"), at_a = 0, at_b = 0;
    struct buf err = BUF_INIT;
    assert_int_equal(adv(f->st, repo3, B, NULL, SHA_A, jobs, NULL, NULL, &at_a), 1);
    assert_int_equal(store_head_advance(f->st, repo3, B, SHA_A, SHA_B, jobs, NULL, false, NULL,
                                        false, NULL, &at_b, &err),
                     1);
    assert_string_equal(build_status(f->st, at_a, &keep), "queued");
    assert_int_equal(adv(f->st, repo3, B, SHA_B, SHA_A, jobs, NULL, NULL, &id), 0);
    assert_string_equal(build_status(f->st, at_b, &keep), "cancelled");
    snprintf(want, sizeof(want), "superseded by build %lld: 1 job cancelled", (long long)at_a);
    assert_true(has_event(f->st, at_b, want));
    assert_string_equal(build_status(f->st, at_a, &keep), "queued");
    buf_release(&err);
    json_decref(keep);
    json_decref(jobs);
    json_decref(pull);
}

/* The plan of a claim statement reads jobs_queued, sorts nothing; the
 * statement's VM steps on its first row, which must not depend on the queue. */
static int claim_steps(sqlite3 *db, const char *sql, const char *labels)
{
    sqlite3_stmt *s;
    char *eqp = xasprintf("EXPLAIN QUERY PLAN %s", sql);
    assert_int_equal(sqlite3_prepare_v2(db, eqp, -1, &s, NULL), SQLITE_OK);
    free(eqp);
    struct buf plan = BUF_INIT;
    while (sqlite3_step(s) == SQLITE_ROW)
        buf_addf(&plan, "%s\n", (const char *)sqlite3_column_text(s, 3));
    sqlite3_finalize(s);
    if (!strstr(plan.data, "SEARCH jobs USING INDEX jobs_queued") || strstr(plan.data, "TEMP B-TREE"))
        fail_msg("claim plan: %s", plan.data);
    buf_release(&plan);

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    sqlite3_bind_text(s, 1, labels, -1, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(s) > 1)
        sqlite3_bind_int64(s, 2, time_now_ms());
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int steps = sqlite3_stmt_status(s, SQLITE_STMTSTATUS_VM_STEP, 0);
    assert_int_equal(sqlite3_stmt_status(s, SQLITE_STMTSTATUS_FULLSCAN_STEP, 0), 0);
    sqlite3_finalize(s);
    return steps;
}

static void test_claim_cost(void **state)
{
    struct fixture *f = *state;
    json_t *jobs = json_array(), *other = json_array();
    for (int i = 0; i < 250; i++) {
        char n[16];
        snprintf(n, sizeof(n), "j%d", i);
        json_array_append_new(jobs, json_pack("{s:s, s:[s]}", "name", n, "commands", "true"));
        json_array_append_new(other, json_pack("{s:s, s:[s], s:{s:s}}", "name", n, "commands",
                                               "true", "labels", "pool", "nobody-has-it"));
    }
    char *text = json_dumps(jobs, 0), *otext = json_dumps(other, 0);
    for (int i = 0; i < 80; i++) /* 20,000 jobs, finished (cancelled) */
        assert_int_equal(store_build_cancel(f->st, build_new(f->st, 0, NULL, text)), 250);
    for (int i = 0; i < 40; i++) /* 10,000 queued ahead that no runner can take */
        build_new(f->st, 0, NULL, otext);
    int64_t first = build_new(f->st, 0, NULL, text);
    for (int i = 1; i < 20; i++) /* 5,000 queued */
        build_new(f->st, 0, NULL, text);
    free(text);
    free(otext);
    json_decref(jobs);
    json_decref(other);

    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_true(claim_steps(db, CLAIM_LABELS_SQL, "") < 100);
    assert_true(claim_steps(db, CLAIM_FIRST_SQL, "{}") < 100);
    sqlite3_close(db);

    /* The store's own claim skips the 10,000 it cannot take and takes the
     * oldest of the rest; a runner with the label takes the oldest of all. */
    int64_t r = runner_new(f->st, "r", "{}");
    json_t *j = claim(f->st, r, "{}", LEASE);
    assert_int_equal(ival(j, "build_id"), first);
    assert_string_equal(sval(j, "name"), "j0");
    json_decref(j);
    int64_t r2 = runner_new(f->st, "r2", "{\"pool\": \"nobody-has-it\"}");
    j = claim(f->st, r2, "{\"pool\": \"nobody-has-it\"}", LEASE);
    assert_int_equal(ival(j, "build_id"), first - 40);
    assert_string_equal(sval(j, "name"), "j0");
    json_decref(j);
}

/* Threads claiming and finishing at once: every job runs exactly once. */
struct worker {
    struct store *st;
    int64_t runner;
    int done;
    int errors;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    json_t *labels = json_object();
    for (;;) {
        json_t *j = NULL;
        int r = store_job_claim(w->st, w->runner, labels, LEASE, &j);
        if (r <= 0) {
            if (r < 0)
                w->errors++;
            break;
        }
        if (store_job_finish(w->st, json_integer_value(json_object_get(j, "id")), 1, w->runner,
                             "passed", 0, NULL, NULL) != 0)
            w->errors++;
        w->done++;
        json_decref(j);
    }
    json_decref(labels);
    return NULL;
}

static void test_threads(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 20; i++)
        build_new(f->st, 0, NULL, THREE_JOBS);
    struct worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        char name[8];
        snprintf(name, sizeof(name), "w%d", i);
        w[i] = (struct worker){f->st, runner_new(f->st, name, "{}"), 0, 0};
        pthread_create(&t[i], NULL, work, &w[i]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].errors, 0);
        total += w[i].done;
    }
    assert_int_equal(total, 60);
    json_t *l = list_with(f->st, "{\"status\": \"passed\"}");
    assert_int_equal(json_array_size(l), 20);
    json_decref(l);
}

/* ---- the benchmark (by hand) ---- */

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int bench(int n, int per)
{
    char dir[] = "/tmp/yci-bench-store-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[64];
    snprintf(path, sizeof(path), "%s/yci.db", dir);
    struct store *st;
    struct buf err = BUF_INIT;
    if (store_open(path, &st, &err) < 0) {
        fprintf(stderr, "%s\n", err.data);
        return 1;
    }
    json_t *jobs = json_array();
    for (int i = 0; i < per; i++) {
        char name[16];
        snprintf(name, sizeof(name), "j%d", i);
        json_array_append_new(jobs, json_pack("{s:s, s:[s]}", "name", name, "commands", "true"));
    }
    int64_t t0 = time_mono_ms();
    for (int i = 0; i < n / per; i++) {
        int64_t id;
        if (store_build_create(st, 0, NULL, NULL, jobs, NULL, &id, &err) < 0)
            return 1;
    }
    int64_t t1 = time_mono_ms();
    int64_t rid;
    json_t *labels = json_object();
    store_runner_register(st, "bench", labels, NULL, 2, 10, "bench", &rid, &err);
    int done = 0;
    double tclaim = 0, tcheck = 0, tfinish = 0;
    for (;;) {
        json_t *j = NULL;
        double a = now_us();
        if (store_job_claim(st, rid, labels, LEASE, &j) != 1)
            break;
        double b = now_us();
        int64_t id = json_integer_value(json_object_get(j, "id"));
        if (store_job_check(st, id, 1, rid) != 0)
            return 1;
        double c = now_us();
        if (store_job_finish(st, id, 1, rid, "passed", 0, NULL, NULL) != 0)
            return 1;
        double d = now_us();
        tclaim += b - a;
        tcheck += c - b;
        tfinish += d - c;
        json_decref(j);
        done++;
    }
    int64_t t2 = time_mono_ms();
    if (done)
        printf("per cycle: claim %.1f us, check %.1f us, finish %.1f us\n", tclaim / done,
               tcheck / done, tfinish / done);
    printf("create: %d jobs in %lld ms (%.0f jobs/s)\n", n, (long long)(t1 - t0),
           n * 1000.0 / (double)(t1 - t0 ? t1 - t0 : 1));
    printf("claim+check+finish: %d cycles in %lld ms (%.0f cycles/s)\n", done, (long long)(t2 - t1),
           done * 1000.0 / (double)(t2 - t1 ? t2 - t1 : 1));
    json_decref(labels);
    json_decref(jobs);
    store_free(st);
    buf_release(&err);
    remove_tree(dir);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
        int n = 20000, per = 100;
        if (argc > 2 && parse_int(argv[2], 100, 10000000, &n) < 0)
            return 2;
        if (argc > 3 && parse_int(argv[3], 1, YCI_MAX_JOBS_PER_BUILD, &per) < 0)
            return 2;
        return bench(n, per);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_repos, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_advance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_advance_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_build, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_past_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_and_claim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_requeue_then_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leases_grace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_build, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runners, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_add, setup, teardown),
        cmocka_unit_test_setup_teardown(test_database_changed_under_us, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reregister, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forgotten_runners, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_needs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_superseded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_twin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_cost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
