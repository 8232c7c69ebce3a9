/*
 * test_pipeline — the default pipeline rule on real git repositories, and the
 * git module under it (mirror, fetch, refs, blobs).
 *
 * Each test makes a repository in a temporary directory with the git program
 * (argv only, through os/spawn.h), commits some files, and asks what the
 * commit runs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "git/git.h"
#include "lib/buf.h"
#include "lib/limits.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "os/spawn.h"
#include "server/pipeline.h"
#include "lib/banned.h"

struct repo {
    char dir[64];  /* the temporary directory */
    char *work;    /* <dir>/work: a non-bare repository */
    char *git_dir; /* <dir>/work/.git */
};

/* Run git in the work tree; its output (trimmed) in out if not NULL. */
static void git(struct repo *r, struct buf *out, const char *first, ...)
{
    const char *argv[32] = {"git",
                            "-C",
                            r->work,
                            "-c",
                            "user.name=t",
                            "-c",
                            "user.email=t@example.com",
                            "-c",
                            "init.defaultBranch=main"};
    size_t n = 9;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 31; a = va_arg(ap, const char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    struct spawn_opts opts = {.argv = argv, .out_fd = SPAWN_PIPE};
    struct buf o = BUF_INIT, err = BUF_INIT;
    int status = 0;
    int rc = spawn_run(&opts, 60000, &o, &status, &err);
    if (rc < 0 || spawn_exit_code(status) != 0)
        fail_msg("git %s failed: %s%s", first, err.data ? err.data : "", o.data ? o.data : "");
    while (o.len && (o.data[o.len - 1] == '\n' || o.data[o.len - 1] == ' '))
        o.data[--o.len] = '\0';
    if (out)
        buf_add(out, o.data ? o.data : "", o.len);
    buf_release(&o);
    buf_release(&err);
}

static void write_file(struct repo *r, const char *rel, const char *text)
{
    char *path = xasprintf("%s/%s", r->work, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    assert_int_equal(mkdir_p(path, 0755), 0);
    *slash = '/';
    assert_int_equal(file_write_atomic(path, text, strlen(text), 0644), 0);
    free(path);
}

/* Commit everything; the new commit's id in sha. */
static void commit(struct repo *r, char sha[41])
{
    struct buf out = BUF_INIT;
    git(r, NULL, "add", "-A", NULL);
    git(r, NULL, "commit", "-q", "--allow-empty", "-m", "c", NULL);
    git(r, &out, "rev-parse", "HEAD", NULL);
    assert_true(sha_valid(out.data));
    memcpy(sha, out.data, 41);
    buf_release(&out);
}

static int setup(void **state)
{
    struct repo *r = xcalloc(1, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "/tmp/yci-test-pipeline-XXXXXX");
    if (!mkdtemp(r->dir))
        return -1;
    r->work = xasprintf("%s/work", r->dir);
    r->git_dir = xasprintf("%s/.git", r->work);
    mkdir_p(r->work, 0755);
    git(r, NULL, "init", "-q", NULL);
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    struct repo *r = *state;
    remove_tree(r->dir);
    free(r->work);
    free(r->git_dir);
    free(r);
    return 0;
}

/* pipeline_for_commit() through a reader of the work tree's repository. */
static int pipeline_at(struct repo *r, const char *commit, const char *ref, int max_jobs,
                       int plan_timeout, json_t **jobs, bool *per_ref, bool *cancel_superseded,
                       struct buf *err)
{
    struct git_reader *g = NULL;
    assert_int_equal(git_reader_open(r->git_dir, &g, err), 0);
    int rc = pipeline_for_commit(g, commit, ref, max_jobs, plan_timeout, jobs, per_ref,
                                 cancel_superseded, err);
    git_reader_close(g);
    return rc;
}

/* The one job of jobs: its name and its single command. */
static void assert_one_job(json_t *jobs, const char *name, const char *command)
{
    assert_true(json_is_array(jobs));
    assert_int_equal(json_array_size(jobs), 1);
    json_t *job = json_array_get(jobs, 0);
    assert_string_equal(json_string_value(json_object_get(job, "name")), name);
    json_t *cmds = json_object_get(job, "commands");
    assert_int_equal(json_array_size(cmds), 1);
    assert_string_equal(json_string_value(json_array_get(cmds, 0)), command);
}

static void test_tests_folder(void **state)
{
    struct repo *r = *state;
    char sha[41];
    write_file(r, "tests/test_a.py", "import unittest\n");
    write_file(r, "Makefile", "check:\n\ttrue\n"); /* tests/ wins */
    commit(r, sha);
    json_t *jobs = NULL;
    struct buf err = BUF_INIT;
    assert_int_equal(pipeline_at(r, sha, NULL, 0, 0, &jobs, NULL, NULL, &err), 0);
    assert_one_job(jobs, "tests", "python3 -m unittest discover -s tests -v");
    json_decref(jobs);
    buf_release(&err);
}

static void test_makefile(void **state)
{
    struct repo *r = *state;
    char sha[41];
    json_t *jobs = NULL;
    struct buf err = BUF_INIT;

    /* "tests" as a file is not a tests/ folder; test: only → make test */
    write_file(r, "tests", "not a folder\n");
    write_file(r, "Makefile", "all:\n\ttrue\ncheck := nothing\n\ntest :\n\ttrue\n");
    commit(r, sha);
    assert_int_equal(pipeline_at(r, sha, NULL, 0, 0, &jobs, NULL, NULL, &err), 0);
    assert_one_job(jobs, "test", "make test");
    json_decref(jobs);

    /* check: and test: → make check */
    write_file(r, "Makefile", "test:\n\ttrue\ncheck: all\n\ttrue\n");
    commit(r, sha);
    assert_int_equal(pipeline_at(r, sha, NULL, 0, 0, &jobs, NULL, NULL, &err), 0);
    assert_one_job(jobs, "check", "make check");
    json_decref(jobs);
    buf_release(&err);
}

/* .yci.py: one plan job, never run by the server; .yci.yml wins over it, and
 * it wins over the default rule. */
static void test_yci_py(void **state)
{
    struct repo *r = *state;
    char sha[41];
    json_t *jobs = NULL;
    struct buf err = BUF_INIT;
    write_file(r, ".yci.py", "raise SystemExit('the server must not run this')\n");
    write_file(r, "tests/test_a.py", "import unittest\n");
    commit(r, sha);
    assert_int_equal(pipeline_at(r, sha, NULL, 0, 7, &jobs, NULL, NULL, &err), 0);
    assert_int_equal(json_array_size(jobs), 1);
    json_t *plan = json_array_get(jobs, 0);
    assert_string_equal(json_string_value(json_object_get(plan, "name")), ".yci.py");
    assert_string_equal(json_string_value(json_object_get(plan, "kind")), "plan");
    assert_int_equal(json_integer_value(json_object_get(plan, "timeout")), 7);
    json_decref(jobs);

    /* No time limit given: the default one. */
    assert_int_equal(pipeline_at(r, sha, NULL, 0, 0, &jobs, NULL, NULL, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(jobs, 0), "timeout")),
                     YCI_PLAN_TIMEOUT);
    json_decref(jobs);

    write_file(r, ".yci.yml", "jobs:\n  a:\n    run: true\n");
    commit(r, sha);
    assert_int_equal(pipeline_at(r, sha, NULL, 0, 0, &jobs, NULL, NULL, &err), 0);
    assert_one_job(jobs, "a", "true");
    json_decref(jobs);
    buf_release(&err);
}

static void test_nothing(void **state)
{
    struct repo *r = *state;
    char sha[41];
    json_t *jobs = NULL;
    struct buf err = BUF_INIT;
    write_file(r, "README", "hello\n");
    write_file(r, "Makefile", "all:\n\ttrue\n# check: in a comment\n");
    commit(r, sha);
    assert_int_equal(pipeline_at(r, sha, NULL, 0, 0, &jobs, NULL, NULL, &err), -EINVAL);
    assert_null(jobs);
    char *want = xasprintf("no pipeline found at %s: yci looked for a .yci.yml file, a .yci.py "
                           "file, a tests/ folder (run with python3 -m unittest discover) and a "
                           "Makefile with "
                           "a check or test target",
                           sha);
    assert_string_equal(err.data, want);
    free(want);

    /* A commit the repository does not have is a git error, not a config error. */
    buf_reset(&err);
    int rc = pipeline_at(r, "0123456789012345678901234567890123456789", NULL, 0, 0,
                                 &jobs, NULL, NULL, &err);
    assert_true(rc < 0 && rc != -EINVAL);
    assert_true(err.len > 0);
    buf_release(&err);
}

/* .yci.yml wins over the default rule; its branch filters see the ref's
 * branch; its problems are the build's error with file, line and column. */
static void test_yml(void **state)
{
    struct repo *r = *state;
    char sha[41];
    json_t *jobs = NULL;
    struct buf err = BUF_INIT;
    bool per_ref = false;
    write_file(r, "tests/x.py", "print(1)\n");
    write_file(r, ".yci.yml",
               "jobs:\n"
               "  t:\n"
               "    run: [./a, ./b]\n"
               "    matrix: {A: [1, 2]}\n"
               "    timeout: 5\n"
               "    labels: {os: linux}\n"
               "  deploy:\n"
               "    run: ./deploy\n"
               "    branches: {only: main}\n");
    commit(r, sha);
    assert_int_equal(
        pipeline_at(r, sha, "refs/heads/main", 0, 0, &jobs, &per_ref, NULL, &err), 0);
    assert_true(per_ref);
    assert_int_equal(json_array_size(jobs), 3);
    json_t *j = json_array_get(jobs, 1);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "t (2)");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "commands"), 1)),
                        "./b");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "env"), "A")), "2");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "labels"), "os")),
                        "linux");
    assert_int_equal(json_integer_value(json_object_get(j, "timeout")), 5);
    json_decref(jobs);

    /* Another branch: deploy is dropped; the job limit is passed on. */
    jobs = NULL;
    assert_int_equal(
        pipeline_at(r, sha, "refs/heads/dev", 0, 0, &jobs, &per_ref, NULL, &err), 0);
    assert_int_equal(json_array_size(jobs), 2);
    json_decref(jobs);
    jobs = NULL;
    assert_int_equal(
        pipeline_at(r, sha, "refs/heads/dev", 1, 0, &jobs, &per_ref, NULL, &err), -EINVAL);
    assert_null(jobs);
    assert_non_null(strstr(err.data, "limit of 1 job"));

    /* Only filtered jobs: an empty list, not an error. */
    write_file(r, ".yci.yml", "jobs:\n  d:\n    run: x\n    branches: {only: main}\n");
    commit(r, sha);
    assert_int_equal(
        pipeline_at(r, sha, "refs/heads/dev", 0, 0, &jobs, &per_ref, NULL, &err), 0);
    assert_int_equal(json_array_size(jobs), 0);
    json_decref(jobs);
    jobs = NULL;

    /* A problem in the file. */
    buf_reset(&err);
    write_file(r, ".yci.yml", "jobs:\n  t:\n    run: x\n    tiemout: 5\n");
    commit(r, sha);
    assert_int_equal(
        pipeline_at(r, sha, "refs/heads/main", 0, 0, &jobs, &per_ref, NULL, &err), -EINVAL);
    assert_null(jobs);
    assert_true(per_ref);
    assert_string_equal(err.data,
                        ".yci.yml:4:5: unknown key 'tiemout' in job 't' (did you mean 'timeout'?)");

    /* A directory named .yci.yml. */
    buf_reset(&err);
    git(r, NULL, "rm", "-q", ".yci.yml", NULL);
    write_file(r, ".yci.yml/x", "x\n");
    commit(r, sha);
    assert_int_equal(
        pipeline_at(r, sha, "refs/heads/main", 0, 0, &jobs, &per_ref, NULL, &err), -EINVAL);
    assert_string_equal(err.data, ".yci.yml is a directory, not a file");

    /* No .yci.yml: the default rule, the same for every ref. */
    git(r, NULL, "rm", "-q", "-r", ".yci.yml", NULL);
    commit(r, sha);
    assert_int_equal(
        pipeline_at(r, sha, "refs/heads/main", 0, 0, &jobs, &per_ref, NULL, &err), 0);
    assert_false(per_ref);
    assert_one_job(jobs, "tests", "python3 -m unittest discover -s tests -v");
    json_decref(jobs);
    buf_release(&err);
}

static void test_git_mirror(void **state)
{
    struct repo *r = *state;
    char sha[41];
    struct buf err = BUF_INIT, blob = BUF_INIT;
    write_file(r, "tests/x.py", "print(1)\n");
    commit(r, sha);
    git(r, NULL, "branch", "feature", NULL);

    char *mirror = xasprintf("%s/mirror.git", r->dir);
    assert_int_equal(git_mirror_init(mirror, &err), 0);
    assert_int_equal(git_mirror_init(mirror, &err), 0); /* again: nothing to do */
    const char *const refspecs[] = {GIT_REFSPEC_HEADS};
    assert_int_equal(git_mirror_fetch(mirror, r->work, refspecs, 1, NULL, &err), 0);
    json_t *heads = NULL;
    assert_int_equal(git_list_refs(mirror, "refs/heads/", &heads, &err), 0);
    assert_int_equal(json_object_size(heads), 2);
    assert_string_equal(json_string_value(json_object_get(heads, "refs/heads/main")), sha);
    assert_string_equal(json_string_value(json_object_get(heads, "refs/heads/feature")), sha);
    assert_int_equal(git_mirror_fix_head(mirror, heads, &err), 0);
    json_decref(heads);

    struct git_reader *g = NULL;
    assert_int_equal(git_reader_open(mirror, &g, &err), 0);
    assert_int_equal(git_path_type(g, sha, "tests", &err), GIT_PATH_TREE);
    assert_int_equal(git_path_type(g, sha, "tests/x.py", &err), GIT_PATH_BLOB);
    assert_int_equal(git_path_type(g, sha, "nope", &err), GIT_PATH_NONE);
    assert_int_equal(git_read_blob(g, sha, "tests/x.py", 100, &blob, &err), 0);
    assert_string_equal(blob.data, "print(1)\n");
    assert_int_equal(git_read_blob(g, sha, "tests/x.py", 3, &blob, &err), -EFBIG);
    assert_int_equal(git_read_blob(g, sha, "nope", 100, &blob, &err), -ENOENT);
    assert_int_equal(git_path_type(g, sha, "a\nb", &err), -EINVAL);
    assert_int_equal(git_path_type(g, sha, "/etc", &err), -EINVAL);
    /* The same reader sees what a later fetch brings. */
    char sha2[41];
    write_file(r, "tests/y.py", "print(2)\n");
    commit(r, sha2);
    assert_int_equal(git_mirror_fetch(mirror, r->work, refspecs, 1, NULL, &err), 0);
    assert_int_equal(git_mirror_maintain(mirror, &err), 0);
    buf_reset(&blob);
    assert_int_equal(git_read_blob(g, sha2, "tests/y.py", 100, &blob, &err), 0);
    assert_string_equal(blob.data, "print(2)\n");
    git_reader_close(g);

    /* A deleted branch is pruned; a vanished origin is a clear error. */
    git(r, NULL, "branch", "-D", "feature", NULL);
    assert_int_equal(git_mirror_fetch(mirror, r->work, refspecs, 1, NULL, &err), 0);
    assert_int_equal(git_list_refs(mirror, "refs/heads/", &heads, &err), 0);
    assert_int_equal(json_object_size(heads), 1);
    json_decref(heads);
    char *gone = xasprintf("%s/gone", r->dir);
    buf_reset(&err);
    assert_true(git_mirror_fetch(mirror, gone, refspecs, 1, NULL, &err) < 0);
    assert_non_null(strstr(err.data, "does not appear to be a git repository"));
    assert_int_equal(git_mirror_fetch(mirror, "--upload-pack=touch", refspecs, 1, NULL, &err), -EINVAL);

    struct buf adv = BUF_INIT;
    assert_int_equal(git_upload_pack_advertise(mirror, &adv, &err), 0);
    assert_memory_equal(adv.data, "001e# service=git-upload-pack\n0000", 34);
    assert_non_null(memmem(adv.data, adv.len, "refs/heads/main", 15));
    buf_release(&adv);

    free(gone);
    free(mirror);
    buf_release(&blob);
    buf_release(&err);
}

/* A commit's author and subject as git show's %an and %s give them; a
 * missing commit and a broken repository are errors, not a crash. */
static void test_reader(void **state)
{
    struct repo *r = *state;
    char sha[41];
    struct buf err = BUF_INIT, out = BUF_INIT;
    write_file(r, "f", "1\n");
    git(r, NULL, "add", "-A", NULL);
    git(r, NULL, "-c", "user.name=Ann  Author ", "commit", "-q", "-m",
        "  \nFirst line\nsecond line   \n\nThe body.\n", NULL);
    git(r, &out, "rev-parse", "HEAD", NULL);
    memcpy(sha, out.data, 41);
    struct git_reader *g = NULL;
    assert_int_equal(git_reader_open(r->git_dir, &g, &err), 0);
    char *author = NULL, *subject = NULL;
    for (int i = 0; i < 50; i++) { /* one git answers them all */
        assert_int_equal(git_commit_info(g, sha, &author, &subject, &err), 0);
        if (i < 49) {
            free(author);
            free(subject);
        }
    }
    /* What git itself prints, byte for byte. */
    buf_reset(&out);
    git(r, &out, "show", "-s", "--format=%an|%s", sha, NULL);
    char *want = xasprintf("%s|%s", author, subject);
    assert_string_equal(want, out.data);
    assert_string_equal(subject, "First line second line");
    free(want);
    free(author);
    free(subject);

    /* A Latin-1 commit (an "encoding" header) comes out as UTF-8. */
    write_file(r, "f", "2\n");
    git(r, NULL, "add", "-A", NULL);
    git(r, NULL, "-c", "i18n.commitEncoding=ISO-8859-1", "-c", "user.name=Ren\xe9", "commit", "-q",
        "-m", "caf\xe9", NULL);
    buf_reset(&out);
    git(r, &out, "rev-parse", "HEAD", NULL);
    assert_int_equal(git_commit_info(g, out.data, &author, &subject, &err), 0);
    assert_string_equal(author, "Ren\xc3\xa9");
    assert_string_equal(subject, "caf\xc3\xa9");
    free(author);
    free(subject);

    /* A long subject is cut (and a commit over GIT_MAX_COMMIT not read). */
    char *huge = xmalloc(100001);
    memset(huge, 'x', 100000);
    huge[100000] = '\0';
    git(r, NULL, "commit", "-q", "--allow-empty", "-m", huge, NULL);
    free(huge);
    buf_reset(&out);
    git(r, &out, "rev-parse", "HEAD", NULL);
    assert_int_equal(git_commit_info(g, out.data, &author, &subject, &err), 0);
    assert_int_equal(strlen(subject), 500);
    free(author);
    free(subject);

    /* No such commit: an error, and the reader goes on. */
    const char *none = "0123456789012345678901234567890123456789";
    buf_reset(&err);
    assert_int_equal(git_commit_info(g, none, &author, &subject, &err), -ENOENT);
    assert_null(author);
    assert_true(err.len > 0);
    assert_true(git_path_type(g, none, "f", &err) < 0);
    assert_int_equal(git_path_type(g, sha, "f", &err), GIT_PATH_BLOB);
    git_reader_close(g);

    /* Not a repository: git's own message; every later call fails too. */
    char *bogus = xasprintf("%s/not-a-repository", r->dir);
    assert_int_equal(git_reader_open(bogus, &g, &err), 0);
    buf_reset(&err);
    assert_int_equal(git_path_type(g, sha, "f", &err), -EIO);
    assert_non_null(strstr(err.data, "not a git repository"));
    buf_reset(&err);
    assert_int_equal(git_path_type(g, sha, "f", &err), -EIO);
    assert_true(err.len > 0);
    git_reader_close(g);
    git_reader_close(NULL);
    free(bogus);
    buf_release(&out);
    buf_release(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tests_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_makefile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_yci_py, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_yml, setup, teardown),
        cmocka_unit_test_setup_teardown(test_git_mirror, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
