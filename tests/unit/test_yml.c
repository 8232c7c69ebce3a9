/* Unit tests for src/pipeline: .yci.yml parsing and plan-job validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/limits.h"
#include "pipeline/pipeline.h"

#define SENTINEL ((json_t *)0x1)

/* Parse yml for branch; fail the test with the message on an error. */
static json_t *parse_ok(const char *yml, const char *branch)
{
    struct buf err = BUF_INIT;
    json_t *out = NULL;
    int r = pipeline_parse_yml(yml, strlen(yml), ".yci.yml", branch, 0, &out, &err);
    if (r != 0)
        fail_msg("unexpected error %d: %s", r, err.data);
    buf_release(&err);
    assert_non_null(out);
    return out;
}

/* The "jobs" of a good file. */
static json_t *jobs_of(json_t *doc)
{
    json_t *jobs = json_object_get(doc, "jobs");
    assert_true(json_is_array(jobs));
    return jobs;
}

/* Assert that parsing (data, len) with max_jobs fails with exactly msg. */
static void bad_n(const char *data, size_t len, int max_jobs, const char *msg)
{
    struct buf err = BUF_INIT;
    json_t *out = SENTINEL;
    int r = pipeline_parse_yml(data, len, ".yci.yml", "main", max_jobs, &out, &err);
    if (r == 0) {
        char *s = json_dumps(out, 0);
        fail_msg("expected an error, got %s", s);
    }
    assert_int_equal(r, -EINVAL);
    assert_ptr_equal(out, SENTINEL); /* untouched */
    assert_string_equal(err.data, msg);
    buf_release(&err);
}

static void bad(const char *yml, const char *msg)
{
    bad_n(yml, strlen(yml), 0, msg);
}

/* Compare a JSON value with the JSON text expected. */
static void assert_json(json_t *got, const char *expected)
{
    json_error_t e;
    json_t *want = json_loads(expected, 0, &e);
    if (!want)
        fail_msg("bad expected JSON: %s", e.text);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_SORT_KEYS);
        char *w = json_dumps(want, JSON_SORT_KEYS);
        fail_msg("got\n  %s\nexpected\n  %s", g, w);
    }
    json_decref(want);
}

/* ---- good files ----------------------------------------------------------- */

static const char SEED[] = "# The seed's .yci.py example, as YAML.\n"
                           "jobs:\n"
                           "  tests:\n"
                           "    run: ./test.sh\n"
                           "    matrix:\n"
                           "      ENV_VAR_1: [foo, bar]\n"
                           "      ENV_VAR_2: [x, y]\n"
                           "    retry: {count: 3, increment: 600}\n";

static void test_seed_example(void **state)
{
    (void)state;
    json_t *doc = parse_ok(SEED, "main");
    assert_int_equal(json_array_size(jobs_of(doc)), 4);
    assert_json(doc,
                "{\"cancel_superseded\": true, \"submodules\": false, \"jobs\": ["
                "{\"name\": \"tests (foo, x)\", \"commands\": [\"./test.sh\"],"
                " \"env\": {\"ENV_VAR_1\": \"foo\", \"ENV_VAR_2\": \"x\"}, \"labels\": {},"
                " \"timeout\": 0, \"retry\": {\"count\": 3, \"increment\": 600}, \"needs\": []},"
                "{\"name\": \"tests (foo, y)\", \"commands\": [\"./test.sh\"],"
                " \"env\": {\"ENV_VAR_1\": \"foo\", \"ENV_VAR_2\": \"y\"}, \"labels\": {},"
                " \"timeout\": 0, \"retry\": {\"count\": 3, \"increment\": 600}, \"needs\": []},"
                "{\"name\": \"tests (bar, x)\", \"commands\": [\"./test.sh\"],"
                " \"env\": {\"ENV_VAR_1\": \"bar\", \"ENV_VAR_2\": \"x\"}, \"labels\": {},"
                " \"timeout\": 0, \"retry\": {\"count\": 3, \"increment\": 600}, \"needs\": []},"
                "{\"name\": \"tests (bar, y)\", \"commands\": [\"./test.sh\"],"
                " \"env\": {\"ENV_VAR_1\": \"bar\", \"ENV_VAR_2\": \"y\"}, \"labels\": {},"
                " \"timeout\": 0, \"retry\": {\"count\": 3, \"increment\": 600}, \"needs\": []}"
                "]}");
    json_decref(doc);
}

static void test_features(void **state)
{
    (void)state;
    const char *yml = "cancel_superseded: false\n"
                      "submodules: true\n"
                      "jobs:\n"
                      "  lint:\n"
                      "    run: [make lint, \"echo 'done'\"]\n"
                      "    timeout: 10m\n"
                      "    retry: 2\n"
                      "  tests:\n"
                      "    run: |\n"
                      "      ./configure\n"
                      "      make check\n"
                      "    env: {PY: 3.10, DEBUG: yes, N: 010, ON: true, EMPTY: \"\", Q: '1e3'}\n"
                      "    matrix:\n"
                      "      PY: ['3.10', 3.12]\n"
                      "    labels: {os: linux, arch: x86_64}\n"
                      "    timeout: 1h30m\n"
                      "    retry: {increment: 90s}\n"
                      "    needs: lint\n"
                      "  deploy:\n"
                      "    run: ./deploy\n"
                      "    timeout: 600\n"
                      "    needs: [tests, lint, tests]\n";
    json_t *doc = parse_ok(yml, NULL);
    assert_json(doc,
                "{\"cancel_superseded\": false, \"submodules\": true, \"jobs\": ["
                "{\"name\": \"lint\", \"commands\": [\"make lint\", \"echo 'done'\"], \"env\": {},"
                " \"labels\": {}, \"timeout\": 600, \"retry\": {\"count\": 2, \"increment\": 0},"
                " \"needs\": []},"
                "{\"name\": \"tests (3.10)\", \"commands\": [\"./configure\\nmake check\\n\"],"
                " \"env\": {\"PY\": \"3.10\", \"DEBUG\": \"yes\", \"N\": \"010\", \"ON\": \"true\","
                "          \"EMPTY\": \"\", \"Q\": \"1e3\"},"
                " \"labels\": {\"os\": \"linux\", \"arch\": \"x86_64\"}, \"timeout\": 5400,"
                " \"retry\": {\"count\": 0, \"increment\": 90}, \"needs\": [\"lint\"]},"
                "{\"name\": \"tests (3.12)\", \"commands\": [\"./configure\\nmake check\\n\"],"
                " \"env\": {\"PY\": \"3.12\", \"DEBUG\": \"yes\", \"N\": \"010\", \"ON\": \"true\","
                "          \"EMPTY\": \"\", \"Q\": \"1e3\"},"
                " \"labels\": {\"os\": \"linux\", \"arch\": \"x86_64\"}, \"timeout\": 5400,"
                " \"retry\": {\"count\": 0, \"increment\": 90}, \"needs\": [\"lint\"]},"
                "{\"name\": \"deploy\", \"commands\": [\"./deploy\"], \"env\": {}, \"labels\": {},"
                " \"timeout\": 600, \"retry\": {\"count\": 0, \"increment\": 0},"
                " \"needs\": [\"tests (3.10)\", \"tests (3.12)\", \"lint\"]}"
                "]}");
    json_decref(doc);
}

static void test_defaults_and_nulls(void **state)
{
    (void)state;
    /* No value means "none" for env, labels, needs and branches. */
    json_t *doc = parse_ok("jobs:\n  t:\n    run: true\n    env:\n    labels:\n    needs:\n"
                           "    branches:\n",
                           "main");
    assert_json(doc, "{\"cancel_superseded\": true, \"submodules\": false, \"jobs\": ["
                     "{\"name\": \"t\", \"commands\": [\"true\"], \"env\": {}, \"labels\": {},"
                     " \"timeout\": 0, \"retry\": {\"count\": 0, \"increment\": 0},"
                     " \"needs\": []}]}");
    json_decref(doc);
    /* A UTF-8 byte order mark, CRLF line ends, flow style, durations. */
    doc = parse_ok("\xef\xbb\xbfjobs: {t: {run: [a, b], timeout: 2d, retry: {count: 10, "
                   "increment: 1h}}}\r\n",
                   NULL);
    json_t *t = json_array_get(jobs_of(doc), 0);
    assert_int_equal(json_integer_value(json_object_get(t, "timeout")), 2 * 86400);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "retry"), "count")), 10);
    json_decref(doc);
}

static void test_matrix(void **state)
{
    (void)state;
    /* Matrix values override the job's env; the last key varies fastest. */
    json_t *doc = parse_ok("jobs:\n"
                           "  t:\n"
                           "    run: x\n"
                           "    env: {A: job, KEEP: k}\n"
                           "    matrix: {A: [1, 2], B: [p], C: [q, r]}\n",
                           NULL);
    json_t *jobs = jobs_of(doc);
    assert_int_equal(json_array_size(jobs), 4);
    const char *names[] = {"t (1, p, q)", "t (1, p, r)", "t (2, p, q)", "t (2, p, r)"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(jobs, i), "name")),
                            names[i]);
    assert_json(json_object_get(json_array_get(jobs, 3), "env"),
                "{\"A\": \"2\", \"KEEP\": \"k\", \"B\": \"p\", \"C\": \"r\"}");
    json_decref(doc);

    /* Exactly max_jobs is fine. */
    struct buf err = BUF_INIT;
    json_t *out = NULL;
    const char *yml = "jobs: {t: {run: x, matrix: {A: [1, 2, 3], B: [1, 2]}}, u: {run: y}}\n";
    assert_int_equal(pipeline_parse_yml(yml, strlen(yml), ".yci.yml", NULL, 7, &out, &err), 0);
    assert_int_equal(json_array_size(jobs_of(out)), 7);
    json_decref(out);
    buf_release(&err);
}

static void test_branches(void **state)
{
    (void)state;
    const char *yml = "jobs:\n"
                      "  build:\n"
                      "    run: make\n"
                      "  release:\n"
                      "    run: ./release\n"
                      "    needs: build\n"
                      "    branches: {only: [main, \"release/*\"], except: [\"release/old*\"]}\n"
                      "  docs:\n"
                      "    run: make docs\n"
                      "    needs: [release, build]\n"
                      "    branches:\n"
                      "      except: wip/*\n";
    struct {
        const char *branch;
        const char *jobs;
    } cases[] = {
        {NULL, "build release docs"},
        {"main", "build release docs"},
        {"release/1.0", "build release docs"},
        {"release/1.0/hotfix", "build release docs"}, /* '*' matches '/' too */
        {"release/old-1", "build docs"},
        {"feature", "build docs"},
        {"wip/x", "build"},
        {"refs/tags/v1", "build docs"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *doc = parse_ok(yml, cases[i].branch);
        struct buf names = BUF_INIT;
        size_t k;
        json_t *j;
        json_array_foreach(jobs_of(doc), k, j)
        {
            buf_addf(&names, "%s%s", k ? " " : "", json_string_value(json_object_get(j, "name")));
        }
        assert_string_equal(names.data ? names.data : "", cases[i].jobs);
        /* A needed job that was dropped is not waited for. */
        if (strcmp(cases[i].jobs, "build docs") == 0)
            assert_json(json_object_get(json_array_get(jobs_of(doc), 1), "needs"), "[\"build\"]");
        buf_release(&names);
        json_decref(doc);
    }
    /* Every job dropped: a valid file with no jobs for this branch. */
    json_t *doc = parse_ok("jobs: {a: {run: x, branches: {only: main}}}\n", "dev");
    assert_int_equal(json_array_size(jobs_of(doc)), 0);
    json_decref(doc);
    /* A huge matrix on a job this branch skips costs nothing. */
    doc = parse_ok("jobs:\n  a: {run: x}\n"
                   "  big:\n    run: x\n    branches: {only: nightly}\n"
                   "    matrix: {A: [1,2,3,4,5,6,7,8,9,10], B: [1,2,3,4,5,6,7,8,9,10],"
                   " C: [1,2,3,4,5,6,7,8,9,10]}\n",
                   "main");
    assert_int_equal(json_array_size(jobs_of(doc)), 1);
    json_decref(doc);
}

/* Is a job with branches: {only: [pattern]} kept on branch? */
static bool kept(const char *pattern, const char *branch)
{
    struct buf yml = BUF_INIT;
    buf_addf(&yml, "jobs: {a: {run: x, branches: {only: ['%s']}}}\n", pattern);
    json_t *doc = parse_ok(yml.data, branch);
    bool k = json_array_size(jobs_of(doc)) == 1;
    json_decref(doc);
    buf_release(&yml);
    return k;
}

static void test_globs(void **state)
{
    (void)state;
    assert_true(kept("main", "main"));
    assert_false(kept("main", "main2"));
    assert_false(kept("main", "mai"));
    assert_true(kept("*", "anything/at/all"));
    assert_true(kept("release/*", "release/"));
    assert_false(kept("release/*", "release"));
    assert_true(kept("v?.x", "v1.x"));
    assert_false(kept("v?.x", "v10.x"));
    assert_true(kept("release/[0-9]*", "release/2.0"));
    assert_false(kept("release/[0-9]*", "release/next"));
    assert_true(kept("[!w]*", "main"));
    assert_false(kept("[!w]*", "wip"));
    assert_true(kept("[]]", "]"));
    assert_true(kept("a[", "a["));
    assert_true(kept("\\*", "*"));
    assert_false(kept("\\*", "x"));
    assert_true(kept("*-*-*", "a-b-c"));
    assert_true(kept("**x", "yyx"));
    /* Many stars against a long name: linear-ish, not exponential. */
    struct buf name = BUF_INIT;
    for (int i = 0; i < 250; i++)
        buf_addch(&name, 'a');
    assert_false(kept("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", name.data));
    assert_true(kept("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*", name.data));
    buf_release(&name);
}

static void test_anchors_and_merges(void **state)
{
    (void)state;
    const char *yml = "x-defaults: &defaults\n"
                      "  env: {A: \"1\"}\n"
                      "  timeout: 5m\n"
                      "  labels: &linux {os: linux}\n"
                      "x-run: &run [make, make check]\n"
                      "jobs:\n"
                      "  a:\n"
                      "    <<: *defaults\n"
                      "    run: *run\n"
                      "  b:\n"
                      "    <<: [*defaults, {retry: 1}]\n"
                      "    run: make\n"
                      "    env: {B: \"2\"}\n"
                      "    labels: *linux\n";
    json_t *doc = parse_ok(yml, NULL);
    assert_json(
        jobs_of(doc),
        "[{\"name\": \"a\", \"commands\": [\"make\", \"make check\"], \"env\": {\"A\": \"1\"},"
        "  \"labels\": {\"os\": \"linux\"}, \"timeout\": 300,"
        "  \"retry\": {\"count\": 0, \"increment\": 0}, \"needs\": []},"
        " {\"name\": \"b\", \"commands\": [\"make\"], \"env\": {\"B\": \"2\"},"
        "  \"labels\": {\"os\": \"linux\"}, \"timeout\": 300,"
        "  \"retry\": {\"count\": 1, \"increment\": 0}, \"needs\": []}]");
    json_decref(doc);
}

/* ---- errors --------------------------------------------------------------- */

static void test_syntax_errors(void **state)
{
    (void)state;
    bad("jobs:\n  a: [x\n",
        ".yci.yml:3:1: YAML syntax error: did not find expected ',' or ']' (while parsing a flow "
        "sequence at line 2, column 6)");
    bad("jobs:\n  a:\n    run: x\n   b: c\n",
        ".yci.yml:4:4: YAML syntax error: did not find expected key (while parsing a block "
        "mapping at line 2, column 3)");
    bad("jobs:\n\ta:\n", ".yci.yml:2:1: YAML syntax error: found character that cannot start "
                         "any token (while scanning for the next token at line 2, column 1)");
    bad("jobs: \"abc\n",
        ".yci.yml:2:1: YAML syntax error: found unexpected end of stream (while scanning a quoted "
        "scalar at line 1, column 7)");
    /* Control characters: libyaml's reader, with our position. */
    bad("jobs:\n  a:\n    run: \x01\n",
        ".yci.yml:3:10: YAML syntax error: control characters are not allowed (character U+0001)");
    bad_n("jobs:\n  a: {run: x}\0\n", 20, 0,
          ".yci.yml:2:14: YAML syntax error: control characters are not allowed (character "
          "U+0000)");
    bad("jobs:\n  a:\n    run: \"a\\0b\"\n", ".yci.yml:3:10: NUL characters are not allowed");
    bad("jobs: {a: {run: x}}\n---\njobs: {}\n",
        ".yci.yml:2:1: only one YAML document is allowed in the file (this is a second)");
    bad("jobs: {a: {run: !!int 5}}\n",
        ".yci.yml:1:17: YAML tags are not supported here (found '!!int')");
    bad("jobs: !custom {a: {run: x}}\n",
        ".yci.yml:1:7: YAML tags are not supported here (found '!custom')");
    /* !!str is fine: it only says "a string". */
    json_t *doc = parse_ok("jobs: {a: {run: !!str true, env: {X: !!str 1}}}\n", NULL);
    json_decref(doc);
}

static void test_utf8(void **state)
{
    (void)state;
    bad("jobs:\n  a:\n    run: x\n    env: {FOO: \xff}\n",
        ".yci.yml:4:16: the file is not valid UTF-8 (byte 0xff): .yci.yml must be UTF-8 text");
    bad("jobs:\n  caf\xc3\xa9:\n    run: \xc3\x28\n",
        ".yci.yml:3:10: the file is not valid UTF-8 (byte 0xc3): .yci.yml must be UTF-8 text");
    /* Overlong encodings, surrogates, UTF-16 (its byte order mark). */
    bad("jobs: \xc0\xaf\n",
        ".yci.yml:1:7: the file is not valid UTF-8 (byte 0xc0): .yci.yml must be UTF-8 text");
    bad("jobs: \xed\xa0\x80\n",
        ".yci.yml:1:7: the file is not valid UTF-8 (byte 0xed): .yci.yml must be UTF-8 text");
    bad_n("\xff\xfej\0o\0b\0s\0", 10, 0,
          ".yci.yml:1:1: the file is not valid UTF-8 (byte 0xff): .yci.yml must be UTF-8 text");
    bad("jobs: {a: {run: x}}\n\xe2\x82",
        ".yci.yml:2:1: the file is not valid UTF-8 (byte 0xe2): .yci.yml must be UTF-8 text");
    /* Good UTF-8 in names and values is kept as is. */
    json_t *doc = parse_ok("jobs:\n  tést ✓:\n    run: echo ünï 😀\n", NULL);
    json_t *j = json_array_get(jobs_of(doc), 0);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "tést ✓");
    json_decref(doc);
}

static void test_document_errors(void **state)
{
    (void)state;
    bad("", ".yci.yml:1:1: the file is empty: it needs a 'jobs:' mapping (see docs/pipelines.md)");
    bad("# nothing yet\n\n",
        ".yci.yml:1:1: the file is empty: it needs a 'jobs:' mapping (see docs/pipelines.md)");
    bad("---\n...\n",
        ".yci.yml:2:1: the file is empty: it needs a 'jobs:' mapping (see docs/pipelines.md)");
    bad("- a\n- b\n", ".yci.yml:1:1: the top level must be a mapping with 'jobs:' (got a list)");
    bad("just text\n", ".yci.yml:1:1: the top level must be a mapping with 'jobs:' (got 'just "
                       "text')");
    bad("cancel_superseded: true\n",
        ".yci.yml:1:1: 'jobs' is missing: the file must say which jobs to run");
    bad("jobs:\n", ".yci.yml:1:1: 'jobs' must list at least one job");
    bad("jobs: {}\n", ".yci.yml:1:7: 'jobs' must list at least one job");
    bad("jobs: [a, b]\n",
        ".yci.yml:1:7: 'jobs' must be a mapping of job names to jobs (got a list)");
    bad("jobs:\n  a:\n", ".yci.yml:2:5: job 'a' is empty: it needs at least 'run' (the commands "
                         "to run)");
    bad("jobs:\n  a: make\n",
        ".yci.yml:2:6: job 'a' must be a mapping with at least 'run' (got 'make')");
    bad("jobs:\n  a:\n    env: {A: b}\n", ".yci.yml:2:3: job 'a' has no 'run' (the commands to "
                                          "run)");
    bad("jobs:\n  [a]: {run: x}\n", ".yci.yml:2:3: keys must be non-empty strings (in 'jobs')");
    bad("jobs:\n  \"\": {run: x}\n", ".yci.yml:2:3: keys must be non-empty strings (in 'jobs')");
    bad("jobs:\n  \"a\\tb\": {run: x}\n",
        ".yci.yml:2:3: job 'a?b': a job name must not contain control characters");

    size_t n = PIPELINE_MAX_YML + 1;
    char *big = malloc(n);
    memset(big, '#', n);
    bad_n(big, n, 0, ".yci.yml:1:1: the file is larger than the limit of 1024 KiB");
    free(big);
}

static void test_unknown_keys(void **state)
{
    (void)state;
    bad("jobs:\n  tests:\n    run: ./test.sh\n    tiemout: 600\n",
        ".yci.yml:4:5: unknown key 'tiemout' in job 'tests' (did you mean 'timeout'?)");
    bad("jobs:\n  tests:\n    run: x\n    evn: {A: b}\n",
        ".yci.yml:4:5: unknown key 'evn' in job 'tests' (did you mean 'env'?)");
    bad("jobs:\n  tests:\n    script: x\n",
        ".yci.yml:3:5: unknown key 'script' in job 'tests' (did you mean 'run'?)");
    bad("jobs:\n  tests:\n    run: x\n    depends_on: [a]\n",
        ".yci.yml:4:5: unknown key 'depends_on' in job 'tests' (did you mean 'needs'?)");
    bad("jobs:\n  tests:\n    run: x\n    colour: blue\n",
        ".yci.yml:4:5: unknown key 'colour' in job 'tests' (valid keys: run, env, matrix, retry, "
        "timeout, labels, needs, branches)");
    bad("job:\n  tests: {run: x}\n",
        ".yci.yml:1:1: unknown key 'job' at the top level (did you mean 'jobs'?)");
    bad("cancel_superseeded: false\njobs: {a: {run: x}}\n",
        ".yci.yml:1:1: unknown key 'cancel_superseeded' at the top level (did you mean "
        "'cancel_superseded'?)");
    bad("tests:\n  run: ./test.sh\n",
        ".yci.yml:1:1: unknown key 'tests' at the top level (valid keys: jobs, "
        "cancel_superseded, submodules) (jobs go under 'jobs:')");
    bad("jobs:\n  a:\n    run: x\n    retry: {count: 3, incrment: 5}\n",
        ".yci.yml:4:23: unknown key 'incrment' in 'retry' of job 'a' (did you mean "
        "'increment'?)");
    bad("jobs:\n  a:\n    run: x\n    branches: {onyl: [main]}\n",
        ".yci.yml:4:16: unknown key 'onyl' in 'branches' of job 'a' (did you mean 'only'?)");
    /* x- keys are ignored (a place for anchors). */
    json_t *doc = parse_ok("x-anything: {whatever: [1, 2]}\njobs: {a: {run: x}}\n", NULL);
    json_decref(doc);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    bad("jobs:\n  tests:\n    run: x\n  tests:\n    run: y\n",
        ".yci.yml:4:3: job 'tests' is defined twice (first at line 2)");
    bad("jobs:\n  a:\n    run: x\n    run: y\n",
        ".yci.yml:4:5: key 'run' is given twice in job 'a' (first at line 3)");
    bad("jobs:\n  a:\n    run: x\n    env: {A: 1, A: 2}\n",
        ".yci.yml:4:17: key 'A' is given twice in 'env' of job 'a' (first at line 4)");
    bad("jobs: {a: {run: x}}\njobs: {b: {run: y}}\n",
        ".yci.yml:2:1: key 'jobs' is given twice in the top level (first at line 1)");
    /* Duplicates after matrix expansion. */
    bad("jobs:\n  t (a):\n    run: x\n  t:\n    run: y\n    matrix:\n      V: [a]\n",
        ".yci.yml:6:5: job 't': the job name 't (a)' is used twice (matrix cells are named 'JOB "
        "(VALUE, ...)')");
    bad("jobs:\n  t:\n    run: y\n    matrix:\n      V: [a, b, a]\n",
        ".yci.yml:4:5: job 't': the job name 't (a)' is used twice (matrix cells are named 'JOB "
        "(VALUE, ...)')");
}

static void test_wrong_types(void **state)
{
    (void)state;
    bad("jobs:\n  tests:\n    run: {a: b}\n",
        ".yci.yml:3:10: job 'tests': 'run' must be a string or a list of strings (got a mapping)");
    bad("jobs:\n  tests:\n    run: [make, [x]]\n",
        ".yci.yml:3:17: job 'tests': 'run' must be a string or a list of strings (item 2 is a "
        "list)");
    bad("jobs:\n  tests:\n    run: []\n",
        ".yci.yml:3:10: job 'tests': 'run' must be a string or a list of strings (got an empty "
        "list)");
    bad("jobs:\n  tests:\n    run:\n", ".yci.yml:3:9: job 'tests': 'run' must be a string or a "
                                       "list of strings (got nothing)");
    bad("jobs:\n  tests:\n    run: \"\"\n", ".yci.yml:3:10: job 'tests': 'run' must not be empty");
    bad("jobs:\n  tests:\n    run: [a, \"\"]\n",
        ".yci.yml:3:14: job 'tests': item 2 of 'run' is empty");
    bad("jobs:\n  t:\n    run: x\n    env: [A=b]\n",
        ".yci.yml:4:10: job 't': 'env' must be a mapping of names to values (got a list)");
    bad("jobs:\n  t:\n    run: x\n    env: {A: [1]}\n",
        ".yci.yml:4:14: job 't': env 'A' must be a string (got a list)");
    bad("jobs:\n  t:\n    run: x\n    env: {A: }\n",
        ".yci.yml:4:14: job 't': env 'A' has no value (write A: \"\" for an empty string)");
    bad("jobs:\n  t:\n    run: x\n    labels: linux\n",
        ".yci.yml:4:13: job 't': 'labels' must be a mapping of names to values (got 'linux')");
    bad("jobs:\n  t:\n    run: x\n    needs: {a: b}\n",
        ".yci.yml:4:12: job 't': 'needs' must be a job name or a list of job names (got a "
        "mapping)");
    bad("jobs:\n  t:\n    run: x\n    branches: [main]\n",
        ".yci.yml:4:15: job 't': 'branches' must be a mapping with 'only' and/or 'except' (got a "
        "list)");
    bad("jobs:\n  t:\n    run: x\n    branches: {only: []}\n",
        ".yci.yml:4:22: job 't': 'only' must be a branch pattern or a non-empty list of them (got "
        "an empty list)");
    bad("cancel_superseded: yes\njobs: {a: {run: x}}\n",
        ".yci.yml:1:20: 'cancel_superseded' must be true or false (got 'yes')");
    bad("submodules: \"true\"\njobs: {a: {run: x}}\n",
        ".yci.yml:1:13: 'submodules' must be true or false (got 'true')");
    bad("jobs:\n  t:\n    run: x\n    retry: [3]\n",
        ".yci.yml:4:12: job 't': 'retry' must be a mapping {count: N, increment: SECONDS} or a "
        "count (got a list)");
    bad("x-m: &m {a: b}\njobs:\n  <<: [*m, 3]\n",
        ".yci.yml:3:12: a merge key ('<<') takes a mapping or a list of mappings (got '3')");
}

static void test_numbers(void **state)
{
    (void)state;
    bad("jobs:\n  a:\n    run: x\n    timeout: -5\n",
        ".yci.yml:4:14: job 'a': 'timeout' must be a non-negative number of seconds or a duration "
        "such as '10m' or '1h30m' (got '-5')");
    bad("jobs:\n  a:\n    run: x\n    timeout: 1.5\n",
        ".yci.yml:4:14: job 'a': 'timeout' must be a non-negative number of seconds or a duration "
        "such as '10m' or '1h30m' (got '1.5')");
    bad("jobs:\n  a:\n    run: x\n    timeout: 1h30\n",
        ".yci.yml:4:14: job 'a': 'timeout' must be a non-negative number of seconds or a duration "
        "such as '10m' or '1h30m' (got '1h30')");
    bad("jobs:\n  a:\n    run: x\n    timeout: true\n",
        ".yci.yml:4:14: job 'a': 'timeout' must be a non-negative number of seconds or a duration "
        "such as '10m' or '1h30m' (got 'true')");
    bad("jobs:\n  a:\n    run: x\n    timeout:\n",
        ".yci.yml:4:13: job 'a': 'timeout' must be a non-negative number of seconds or a duration "
        "such as '10m' or '1h30m' (got nothing)");
    bad("jobs:\n  a:\n    run: x\n    timeout: 8d\n",
        ".yci.yml:4:14: job 'a': 'timeout' is longer than the limit of 604800 seconds (7 days)");
    bad("jobs:\n  a:\n    run: x\n    timeout: 99999999999999999999999\n",
        ".yci.yml:4:14: job 'a': 'timeout' is longer than the limit of 604800 seconds (7 days)");
    bad("jobs:\n  a:\n    run: x\n    retry: {count: -1}\n",
        ".yci.yml:4:20: job 'a': the retry 'count' must be an integer from 0 to 10 (got '-1')");
    bad("jobs:\n  a:\n    run: x\n    retry: 11\n",
        ".yci.yml:4:12: job 'a': the retry 'count' must be an integer from 0 to 10 (got '11')");
    bad("jobs:\n  a:\n    run: x\n    retry: {count: \"3\"}\n",
        ".yci.yml:4:20: job 'a': the retry 'count' must be an integer from 0 to 10 (got '3')");
    bad("jobs:\n  a:\n    run: x\n    retry: {count: 3, increment: -600}\n",
        ".yci.yml:4:34: job 'a': 'increment' must be a non-negative number of seconds or a "
        "duration such as '10m' or '1h30m' (got '-600')");
}

static void test_matrix_errors(void **state)
{
    (void)state;
    bad("jobs:\n  tests:\n    run: x\n    matrix: {}\n",
        ".yci.yml:4:13: job 'tests': the matrix is empty");
    bad("jobs:\n  tests:\n    run: x\n    matrix:\n",
        ".yci.yml:4:12: job 'tests': 'matrix' must be a mapping of environment variables to lists "
        "of values (got nothing)");
    bad("jobs:\n  tests:\n    run: x\n    matrix:\n      A: []\n",
        ".yci.yml:5:10: job 'tests': matrix 'A' has no values");
    bad("jobs:\n  tests:\n    run: x\n    matrix:\n      A:\n",
        ".yci.yml:5:9: job 'tests': matrix 'A' has no values");
    bad("jobs:\n  tests:\n    run: x\n    matrix:\n      A: foo\n",
        ".yci.yml:5:10: job 'tests': matrix 'A' must be a list of values (got 'foo')");
    bad("jobs:\n  tests:\n    run: x\n    matrix:\n      A: [a, {b: c}]\n",
        ".yci.yml:5:14: job 'tests': the values of matrix 'A' must be strings (item 2 is a "
        "mapping)");
    bad("jobs:\n  tests:\n    run: x\n    matrix:\n      A-B: [1]\n",
        ".yci.yml:5:7: job 'tests': 'A-B' is not a valid environment variable name (letters, "
        "digits and '_', not starting with a digit)");
}

static void test_env_names(void **state)
{
    (void)state;
    bad("jobs:\n  a:\n    run: x\n    env: {1FOO: x}\n",
        ".yci.yml:4:11: job 'a': '1FOO' is not a valid environment variable name (letters, "
        "digits and '_', not starting with a digit)");
    bad("jobs:\n  a:\n    run: x\n    env:\n      \"A B\": x\n",
        ".yci.yml:5:7: job 'a': 'A B' is not a valid environment variable name (letters, digits "
        "and '_', not starting with a digit)");
    bad("jobs:\n  a:\n    run: x\n    env: {\"A=B\": x}\n",
        ".yci.yml:4:11: job 'a': 'A=B' is not a valid environment variable name (letters, "
        "digits and '_', not starting with a digit)");
    json_t *doc = parse_ok("jobs: {a: {run: x, env: {_a1: x, Z_9: y}}}\n", NULL);
    json_decref(doc);
}

static void test_needs_errors(void **state)
{
    (void)state;
    bad("jobs:\n  lint:\n    run: x\n  tests:\n    run: y\n    needs: [lnit]\n",
        ".yci.yml:6:13: job 'tests': 'needs' names 'lnit', which is not a job (did you mean "
        "'lint'?)");
    bad("jobs:\n  a:\n    run: x\n    needs: nothing\n",
        ".yci.yml:4:12: job 'a': 'needs' names 'nothing', which is not a job");
    bad("jobs:\n  a:\n    run: x\n    needs: b\n  b:\n    run: y\n    needs: [a]\n",
        ".yci.yml:7:13: job 'b': 'needs' makes a cycle: a -> b -> a");
    bad("jobs:\n  a:\n    run: x\n    needs: a\n",
        ".yci.yml:4:12: job 'a': 'needs' makes a cycle: a -> a");
    bad("jobs:\n  ok:\n    run: x\n  a:\n    run: x\n    needs: [ok, c]\n"
        "  b:\n    run: y\n    needs: a\n  c:\n    run: z\n    needs: b\n",
        ".yci.yml:9:12: job 'b': 'needs' makes a cycle: a -> c -> b -> a");
    /* Cycles are errors even on a branch that drops the jobs. */
    bad("jobs:\n  x:\n    run: x\n  a:\n    run: x\n    needs: a\n    branches: {only: "
        "never}\n",
        ".yci.yml:6:12: job 'a': 'needs' makes a cycle: a -> a");
}

static void test_limits(void **state)
{
    (void)state;
    /* A 100x100x100 matrix fails at once, without building a million jobs. */
    struct buf yml = BUF_INIT;
    buf_adds(&yml, "jobs:\n  t:\n    run: x\n    matrix:\n");
    for (int k = 0; k < 3; k++) {
        buf_addf(&yml, "      V%d: [", k);
        for (int i = 0; i < 100; i++)
            buf_addf(&yml, "%s%d", i ? ", " : "", i);
        buf_adds(&yml, "]\n");
    }
    bad(yml.data, ".yci.yml:4:5: job 't': too many jobs: its matrix makes 1000000 jobs, more than "
                  "the limit of 256 jobs in a build");
    buf_release(&yml);

    /* Twenty 10x10x10x10x10x10x10x10x10x10x10x10x10x10x10x10x10x10x10x10 would
     * overflow a 64-bit count. */
    buf_adds(&yml, "jobs:\n  t:\n    run: x\n    matrix:\n");
    for (int k = 0; k < 25; k++)
        buf_addf(&yml, "      V%d: [0,1,2,3,4,5,6,7,8,9]\n", k);
    bad(yml.data, ".yci.yml:4:5: job 't': too many jobs: its matrix makes more than "
                  "18446744073709551615 jobs, more than the limit of 256 jobs in a build");
    buf_release(&yml);

    /* What execve() would refuse on the runner is refused here, named. */
    struct buf big = BUF_INIT;
    for (int i = 0; i < 200000; i++)
        buf_addch(&big, 'x');
    buf_addf(&yml, "jobs:\n  t:\n    run: echo ok\n    env: {BIG: %s}\n", big.data);
    bad(yml.data, ".yci.yml:2:3: job 't': env 'BIG' is 200004 bytes long with its name, more "
                  "than one environment variable can hold (131071)");
    buf_reset(&yml);
    buf_addf(&yml, "jobs:\n  t:\n    run: [echo ok, 'echo %s']\n", big.data);
    bad(yml.data, ".yci.yml:2:3: job 't': command 2 is 200005 bytes long, more than a program "
                  "can be given (131071): put it in a script");
    buf_reset(&yml);
    buf_addf(&yml, "jobs:\n  t:\n    run: echo ok\n    matrix: {V: [a, %s]}\n", big.data);
    bad(yml.data, ".yci.yml:4:5: job 't': matrix value 2 of 'V' is 200002 bytes long with its "
                  "name, more than one environment variable can hold (131071)");
    buf_reset(&yml);
    buf_adds(&yml, "jobs:\n  t:\n    run: echo ok\n    env:\n");
    buf_addf(&yml, "      V0: &big %.100000s\n", big.data); /* the file's limit is 1 MiB */
    for (int k = 1; k < 11; k++)
        buf_addf(&yml, "      V%d: *big\n", k);
    bad(yml.data, ".yci.yml:2:3: job 't': its environment takes 1100045 bytes, more than the "
                  "1048576 a job can have");
    buf_release(&big);
    buf_release(&yml);

    /* The count is over the whole build. */
    const char *two = "jobs:\n  a: {run: x, matrix: {A: [1, 2, 3]}}\n"
                      "  b: {run: x, matrix: {B: [1, 2, 3]}}\n";
    bad_n(two, strlen(two), 5,
          ".yci.yml:3:15: job 'b': too many jobs: the build would have 6 jobs, more than the "
          "limit of 5");
    const char *plain = "jobs: {a: {run: x}, b: {run: x}, c: {run: x}}\n";
    bad_n(plain, strlen(plain), 2,
          ".yci.yml:1:34: job 'c': too many jobs: the build would have 3 jobs, more than the "
          "limit of 2");

    /* Billion laughs: aliases count as copies. */
    buf_adds(&yml, "x-a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (int i = 1; i < 10; i++) {
        buf_addf(&yml, "x-a%d: &a%d [", i, i);
        for (int k = 0; k < 10; k++)
            buf_addf(&yml, "%s*a%d", k ? ", " : "", i - 1);
        buf_adds(&yml, "]\n");
    }
    buf_adds(&yml, "jobs: {a: {run: x}}\n");
    bad(yml.data, ".yci.yml:5:47: the file is too large: more than 100000 YAML nodes (aliases "
                  "count as copies of what they name)");
    buf_release(&yml);

    /* Bytes, too: one long string named many times. */
    buf_adds(&yml, "x-s: &s \"");
    for (int i = 0; i < 200000; i++)
        buf_addch(&yml, 'a');
    buf_adds(&yml, "\"\nx-l: [");
    for (int i = 0; i < 50; i++)
        buf_addf(&yml, "%s*s", i ? ", " : "");
    buf_adds(&yml, "]\njobs: {a: {run: x}}\n");
    bad(yml.data, ".yci.yml:2:167: the file is too large: more than 8 MiB of text (aliases count "
                  "as copies of what they name)");
    buf_release(&yml);

    /* A big command times a big matrix: too much output. */
    buf_adds(&yml, "jobs:\n  t:\n    run: \"");
    for (int i = 0; i < 100000; i++)
        buf_addch(&yml, 'a');
    buf_adds(&yml, "\"\n    matrix: {A: [");
    for (int i = 0; i < 200; i++)
        buf_addf(&yml, "%s%d", i ? ", " : "", i);
    buf_adds(&yml, "]}\n");
    bad(yml.data, "the jobs are too large: expanded, their commands, environments, labels and "
                  "needs would take more than 16 MiB");
    buf_release(&yml);

    /* Nesting. */
    buf_adds(&yml, "jobs: ");
    for (int i = 0; i < 100000; i++)
        buf_addch(&yml, '[');
    bad(yml.data, ".yci.yml:1:70: the YAML is nested more than 64 levels deep");
    buf_release(&yml);

    /* Job names: the store's limit, matrix cells included. */
    char name[PIPELINE_MAX_JOB_NAME + 2];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = 0;
    buf_addf(&yml, "jobs:\n  %s: {run: x}\n", name);
    /* Long names are shown cut to 92 bytes. */
    char shown[93];
    memset(shown, 'n', 92);
    shown[92] = 0;
    struct buf msg = BUF_INIT;
    buf_addf(&msg, ".yci.yml:2:3: job '%s...': a job name must be at most 100 bytes long", shown);
    bad(yml.data, msg.data);
    buf_reset(&yml);
    buf_reset(&msg);
    name[95] = 0;
    buf_addf(&yml, "jobs:\n  %s: {run: x, matrix: {A: [long]}}\n", name);
    buf_addf(&msg,
             ".yci.yml:2:109: job '%s...': matrix cell '%s...': a job name must be at most 100 "
             "bytes long",
             shown, shown);
    bad(yml.data, msg.data);
    buf_release(&msg);
    buf_release(&yml);

    /* Labels. */
    bad("jobs: {a: {run: x, labels: {os: [linux]}}}\n",
        ".yci.yml:1:33: job 'a': label 'os' must be a string (got a list)");
}

static void test_aliases(void **state)
{
    (void)state;
    bad("a: &a [x, *a]\n",
        ".yci.yml:1:11: the alias '*a' names no anchor defined before it (or one whose node is "
        "not complete: recursive structures are not allowed)");
    bad("jobs: {a: {run: *nope}}\n",
        ".yci.yml:1:17: the alias '*nope' names no anchor defined before it (or one whose node "
        "is not complete: recursive structures are not allowed)");
    /* An anchor may be redefined; an alias names the latest. */
    json_t *doc = parse_ok("x-1: &c one\nx-2: &c two\njobs: {a: {run: *c}}\n", NULL);
    assert_json(json_object_get(json_array_get(jobs_of(doc), 0), "commands"), "[\"two\"]");
    json_decref(doc);
    /* An alias as a key. */
    doc = parse_ok("x-k: &k run\njobs: {a: {*k : x}}\n", NULL);
    json_decref(doc);
}

static void test_filename_and_default_limit(void **state)
{
    (void)state;
    struct buf err = BUF_INIT;
    json_t *out = SENTINEL;
    assert_int_equal(pipeline_parse_yml("jobs:", 5, "repo/.yci.yml", NULL, -1, &out, &err),
                     -EINVAL);
    assert_string_equal(err.data, "repo/.yci.yml:1:1: 'jobs' must list at least one job");
    assert_int_equal(pipeline_parse_yml(NULL, 0, NULL, NULL, 0, &out, &err), -EINVAL);
    assert_string_equal(err.data, ".yci.yml:1:1: the file is empty: it needs a 'jobs:' mapping "
                                  "(see docs/pipelines.md)");
    assert_ptr_equal(out, SENTINEL);
    /* Not NUL-terminated: only len bytes count. */
    const char *yml = "jobs: {a: {run: x}}\nGARBAGE: [";
    assert_int_equal(pipeline_parse_yml(yml, 20, ".yci.yml", NULL, 0, &out, &err), 0);
    json_decref(out);
    buf_release(&err);
}

/* ---- plan output ---------------------------------------------------------- */

static json_t *plan_ok(const char *text)
{
    json_error_t e;
    json_t *in = json_loads(text, 0, &e);
    if (!in)
        fail_msg("bad test JSON: %s", e.text);
    struct buf err = BUF_INIT;
    json_t *out = NULL;
    int r = pipeline_validate_jobs(in, 0, &out, &err);
    if (r != 0)
        fail_msg("unexpected error %d: %s", r, err.data);
    json_decref(in);
    buf_release(&err);
    return out;
}

static void plan_bad_n(const char *text, int max_jobs, const char *msg)
{
    json_error_t e;
    json_t *in = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!in)
        fail_msg("bad test JSON: %s", e.text);
    struct buf err = BUF_INIT;
    json_t *out = SENTINEL;
    assert_int_equal(pipeline_validate_jobs(in, max_jobs, &out, &err), -EINVAL);
    assert_ptr_equal(out, SENTINEL);
    assert_string_equal(err.data, msg);
    json_decref(in);
    buf_release(&err);
}

static void plan_bad(const char *text, const char *msg)
{
    plan_bad_n(text, 0, msg);
}

static void test_plan_good(void **state)
{
    (void)state;
    /* The seed's four tests, as the plan job reports them. */
    json_t *out = plan_ok(
        "[{\"name\": \"tests (foo, x)\", \"commands\": [\"./test.sh\"],"
        "  \"env\": {\"ENV_VAR_1\": \"foo\", \"ENV_VAR_2\": \"x\"},"
        "  \"retry\": {\"count\": 3, \"increment\": 600}},"
        " {\"name\": \"tests (foo, y)\", \"commands\": \"./test.sh\","
        "  \"env\": {\"ENV_VAR_1\": \"foo\", \"ENV_VAR_2\": \"y\"}, \"retry\": 3},"
        " {\"name\": \"lint\", \"commands\": [\"make lint\"], \"labels\": {\"os\": \"linux\"},"
        "  \"timeout\": \"10m\", \"needs\": \"tests (foo, x)\", \"env\": null},"
        " {\"name\": \"last\", \"commands\": [\"true\"], \"timeout\": 30,"
        "  \"needs\": [\"lint\", \"tests (foo, y)\"], \"retry\": {\"increment\": \"1m\"}}]");
    assert_json(out,
                "[{\"name\": \"tests (foo, x)\", \"commands\": [\"./test.sh\"],"
                "  \"env\": {\"ENV_VAR_1\": \"foo\", \"ENV_VAR_2\": \"x\"}, \"labels\": {},"
                "  \"timeout\": 0, \"retry\": {\"count\": 3, \"increment\": 600}, \"needs\": []},"
                " {\"name\": \"tests (foo, y)\", \"commands\": [\"./test.sh\"],"
                "  \"env\": {\"ENV_VAR_1\": \"foo\", \"ENV_VAR_2\": \"y\"}, \"labels\": {},"
                "  \"timeout\": 0, \"retry\": {\"count\": 3, \"increment\": 0}, \"needs\": []},"
                " {\"name\": \"lint\", \"commands\": [\"make lint\"], \"env\": {},"
                "  \"labels\": {\"os\": \"linux\"}, \"timeout\": 600,"
                "  \"retry\": {\"count\": 0, \"increment\": 0}, \"needs\": [\"tests (foo, x)\"]},"
                " {\"name\": \"last\", \"commands\": [\"true\"], \"env\": {}, \"labels\": {},"
                "  \"timeout\": 30, \"retry\": {\"count\": 0, \"increment\": 60},"
                "  \"needs\": [\"lint\", \"tests (foo, y)\"]}]");
    json_decref(out);
    /* A plan that yields nothing. */
    out = plan_ok("[]");
    assert_json(out, "[]");
    json_decref(out);
}

static void test_plan_bad(void **state)
{
    (void)state;
    plan_bad("{\"name\": \"a\"}", "the plan's jobs must be a JSON array (got an object)");
    plan_bad("[1]", "job 1: a job must be an object (got an integer)");
    plan_bad("[{\"commands\": [\"x\"]}]", "job 1: 'name' must be a string (got nothing)");
    plan_bad("[{\"name\": 5}]", "job 1: 'name' must be a string (got an integer)");
    plan_bad("[{\"name\": \"\", \"commands\": \"x\"}]", "job 1: a job name must not be empty");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\"}, {\"name\": \"b\"}]",
             "job 2 'b': 'commands' is missing (what should the job run?)");
    plan_bad("[{\"name\": \"a\", \"commands\": {}}]",
             "job 1 'a': 'commands' must be a string or a non-empty list of strings (got an "
             "object)");
    plan_bad("[{\"name\": \"a\", \"commands\": null}]",
             "job 1 'a': 'commands' must be a string or a non-empty list of strings (got null)");
    plan_bad("[{\"name\": \"a\", \"commands\": []}]",
             "job 1 'a': 'commands' must be a string or a non-empty list of strings (got an "
             "array)");
    plan_bad("[{\"name\": \"a\", \"commands\": [\"x\", 3]}]",
             "job 1 'a': 'commands' must be a string or a non-empty list of strings (command 2 is "
             "an integer)");
    plan_bad("[{\"name\": \"a\", \"commands\": [\"x\", \"a\\u0000b\"]}]",
             "job 1 'a': command 2 is empty or contains a NUL character");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"env\": {\"A\": 1}}]",
             "job 1 'a': env 'A' must be a string (got an integer)");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"env\": {\"1A\": \"x\"}}]",
             "job 1 'a': '1A' is not a valid environment variable name (letters, digits and '_', "
             "not starting with a digit)");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"env\": [\"A=1\"]}]",
             "job 1 'a': 'env' must be an object of strings (got an array)");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"labels\": {\"os\": true}}]",
             "job 1 'a': label 'os' must be a string (got a boolean)");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"timeout\": -1}]",
             "job 1 'a': 'timeout' must be a non-negative number of seconds or a duration such as "
             "'10m' or '1h30m'");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"timeout\": 1.5}]",
             "job 1 'a': 'timeout' must be a non-negative number of seconds or a duration such as "
             "'10m' or '1h30m'");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"timeout\": 9999999}]",
             "job 1 'a': 'timeout' is longer than the limit of 604800 seconds (7 days)");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"retry\": \"3\"}]",
             "job 1 'a': 'retry' must be an object {\"count\": N, \"increment\": SECONDS} or a "
             "count (got a string)");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"retry\": {\"count\": 11}}]",
             "job 1 'a': the retry count must be an integer from 0 to 10");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"retry\": {\"count\": 1, \"delay\": 5}}]",
             "job 1 'a': unknown key 'delay' in 'retry' (valid keys: count, increment)");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"retry\": {\"increment\": -5}}]",
             "job 1 'a': the retry increment must be a non-negative number of seconds or a "
             "duration such as '10m' or '1h30m'");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"needs\": 3}]",
             "job 1 'a': 'needs' must be a job name or a list of job names (got an integer)");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"needs\": [\"b\", null]}]",
             "job 1 'a': 'needs' must be a job name or a list of job names (item 2 is null)");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"needs\": \"b\"}]",
             "job 1 'a': 'needs' names 'b', which is not a job");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"needs\": \"b\"},"
             " {\"name\": \"b\", \"commands\": \"x\", \"needs\": [\"a\"]}]",
             "job 2 'b': 'needs' makes a cycle: a -> b -> a");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\"}, {\"name\": \"a\", \"commands\": \"y\"}]",
             "job 2 'a': the name is used twice (also job 1)");
    plan_bad("[{\"name\": \"a\", \"comands\": \"x\"}]",
             "job 1 'a': 'commands' is missing (what should the job run?)");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"tiemout\": 5}]",
             "job 1 'a': unknown key 'tiemout' (did you mean 'timeout'?)");
    plan_bad("[{\"name\": \"a\", \"commands\": \"x\", \"run\": \"y\"}]",
             "job 1 'a': unknown key 'run' (did you mean 'commands'?)");
    plan_bad_n("[{\"name\": \"a\", \"commands\": \"x\"}, {\"name\": \"b\", \"commands\": \"x\"}]",
               1, "too many jobs: the plan gave 2, more than the limit of 1");
    plan_bad("\"jobs\"", "the plan's jobs must be a JSON array (got a string)");
    struct buf err = BUF_INIT;
    json_t *out = SENTINEL;
    assert_int_equal(pipeline_validate_jobs(NULL, 0, &out, &err), -EINVAL);
    assert_string_equal(err.data, "the plan's jobs must be a JSON array (got nothing)");
    buf_release(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_example),
        cmocka_unit_test(test_features),
        cmocka_unit_test(test_defaults_and_nulls),
        cmocka_unit_test(test_matrix),
        cmocka_unit_test(test_branches),
        cmocka_unit_test(test_globs),
        cmocka_unit_test(test_anchors_and_merges),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_document_errors),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_matrix_errors),
        cmocka_unit_test(test_env_names),
        cmocka_unit_test(test_needs_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_filename_and_default_limit),
        cmocka_unit_test(test_plan_good),
        cmocka_unit_test(test_plan_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
