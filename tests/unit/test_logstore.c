#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/util.h"
#include "store/logstore.h"
#include "lib/banned.h"

struct fixture {
    char dir[64];
    char *logs;
    struct logstore *ls;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/yci-test-logstore-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    /* A directory that does not exist yet: logstore_open makes it. */
    if (asprintf(&f->logs, "%s/data/logs", f->dir) < 0)
        return -1;
    struct buf err = BUF_INIT;
    int r = logstore_open(f->logs, &f->ls, &err);
    buf_release(&err);
    *state = f;
    return r;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    logstore_free(f->ls);
    remove_tree(f->dir);
    free(f->logs);
    free(f);
    return 0;
}

static void read_all(struct logstore *ls, int64_t job, int attempt, struct buf *out)
{
    char *path = logstore_path(ls, job, attempt);
    assert_int_equal(file_read(path, out), 0);
    free(path);
}

static void test_append_by_offset(void **state)
{
    struct fixture *f = *state;
    uint64_t size = 99;
    assert_int_equal(logstore_size(f->ls, 7, 1, &size), 0);
    assert_int_equal(size, 0);

    assert_int_equal(logstore_append(f->ls, 7, 1, 0, "hello ", 6, &size), 0);
    assert_int_equal(size, 6);
    assert_int_equal(logstore_append(f->ls, 7, 1, 6, "world\n", 6, &size), 0);
    assert_int_equal(size, 12);
    /* A retried chunk rewrites the same bytes: nothing changes. */
    assert_int_equal(logstore_append(f->ls, 7, 1, 6, "world\n", 6, &size), 0);
    assert_int_equal(size, 12);
    /* Overlapping the end: only the new tail grows the file. */
    assert_int_equal(logstore_append(f->ls, 7, 1, 9, "ld\nmore", 7, &size), 0);
    assert_int_equal(size, 16);
    /* Past the end: refused, size reported. */
    size = 0;
    assert_int_equal(logstore_append(f->ls, 7, 1, 17, "x", 1, &size), -ERANGE);
    assert_int_equal(size, 16);

    struct buf b = BUF_INIT;
    read_all(f->ls, 7, 1, &b);
    assert_int_equal(b.len, 16);
    assert_memory_equal(b.data, "hello world\nmore", 16);
    buf_release(&b);

    assert_int_equal(logstore_size(f->ls, 7, 1, &size), 0);
    assert_int_equal(size, 16);
    /* Another attempt is another file. */
    assert_int_equal(logstore_size(f->ls, 7, 2, &size), 0);
    assert_int_equal(size, 0);
    assert_int_equal(logstore_append(f->ls, 7, 2, 0, "two", 3, &size), 0);
    assert_int_equal(size, 3);
    assert_int_equal(logstore_append(f->ls, 7, 2, 0, "", 0, &size), 0);
    assert_int_equal(size, 3);
}

static void test_layout_and_modes(void **state)
{
    struct fixture *f = *state;
    uint64_t size;
    mode_t old = umask(022);
    assert_int_equal(logstore_append(f->ls, 12, 3, 0, "x", 1, &size), 0);
    assert_int_equal(logstore_append(f->ls, 12345, 2, 0, "y", 1, &size), 0);
    umask(old);
    char *path = logstore_path(f->ls, 12, 3);
    char *want;
    assert_true(asprintf(&want, "%s/0/12.3.log", f->logs) > 0);
    assert_string_equal(path, want);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    free(want);
    free(path);
    path = logstore_path(f->ls, 12345, 2);
    assert_true(asprintf(&want, "%s/12/12345.2.log", f->logs) > 0);
    assert_string_equal(path, want);
    assert_int_equal(stat(path, &sb), 0);
    char *dir;
    assert_true(asprintf(&dir, "%s/12", f->logs) > 0);
    assert_int_equal(stat(dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0755);
    free(dir);
    free(want);
    free(path);
}

static void put(const char *logs, const char *name, const char *text)
{
    char *path;
    assert_true(asprintf(&path, "%s/%s", logs, name) > 0);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    assert_int_equal(mkdir_p(path, 0755), 0);
    *slash = '/';
    assert_int_equal(file_write_atomic(path, text, strlen(text), 0644), 0);
    free(path);
}

static bool exists(const char *logs, const char *name)
{
    char *path;
    assert_true(asprintf(&path, "%s/%s", logs, name) > 0);
    bool r = access(path, F_OK) == 0;
    free(path);
    return r;
}

/* The first layout's logs (<job>/<attempt>.log) are moved at open, once;
 * a directory that is both job 5's (first layout) and jobs 5000-5999's
 * keeps the latter. */
static void test_old_layout_moved(void **state)
{
    struct fixture *f = *state;
    logstore_free(f->ls);
    f->ls = NULL;
    char *mark;
    assert_true(asprintf(&mark, "%s/.layout-2", f->logs) > 0);
    assert_int_equal(unlink(mark), 0); /* as before the second layout */
    put(f->logs, "7/1.log", "seven one");
    put(f->logs, "7/2.log", "seven two");
    put(f->logs, "5/1.log", "five");
    put(f->logs, "5/5001.1.log", "new five thousand one");
    put(f->logs, "4321/3.log", "four thousand");
    put(f->logs, "notes/1.log", "not a log of ours");
    struct buf err = BUF_INIT;
    assert_int_equal(logstore_open(f->logs, &f->ls, &err), 0);
    buf_release(&err);
    struct buf b = BUF_INIT;
    const struct {
        int64_t job;
        int attempt;
        const char *text;
    } want[] = {{7, 1, "seven one"}, {7, 2, "seven two"}, {5, 1, "five"},
                {5001, 1, "new five thousand one"}, {4321, 3, "four thousand"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        buf_reset(&b);
        read_all(f->ls, want[i].job, want[i].attempt, &b);
        assert_string_equal(b.data, want[i].text);
    }
    assert_false(exists(f->logs, "7"));
    assert_false(exists(f->logs, "4321"));
    assert_true(exists(f->logs, "5/5001.1.log"));
    assert_false(exists(f->logs, "5/1.log"));
    assert_true(exists(f->logs, "notes/1.log"));
    assert_true(exists(f->logs, ".layout-2"));
    /* Once: an old-looking file made later is left alone. */
    logstore_free(f->ls);
    put(f->logs, "8/1.log", "late");
    assert_int_equal(logstore_open(f->logs, &f->ls, &err), 0);
    assert_true(exists(f->logs, "8/1.log"));
    buf_release(&b);
    buf_release(&err);
    free(mark);
}

static void test_open_read(void **state)
{
    struct fixture *f = *state;
    int fd = -1;
    uint64_t size = 0;
    assert_int_equal(logstore_open_read(f->ls, 5, 1, &fd, &size), -ENOENT);
    assert_int_equal(fd, -1);
    assert_int_equal(logstore_append(f->ls, 5, 1, 0, "abc", 3, &size), 0);
    assert_int_equal(logstore_open_read(f->ls, 5, 1, &fd, &size), 0);
    assert_int_equal(size, 3);
    char b[8];
    assert_int_equal(read(fd, b, sizeof(b)), 3);
    assert_memory_equal(b, "abc", 3);
    close(fd);
}

static void test_bad_ids(void **state)
{
    struct fixture *f = *state;
    uint64_t size = 0;
    assert_int_equal(logstore_append(f->ls, 0, 1, 0, "x", 1, &size), -EINVAL);
    assert_int_equal(logstore_append(f->ls, 1, 0, 0, "x", 1, &size), -EINVAL);
    assert_int_equal(logstore_append(f->ls, -3, 1, 0, "x", 1, &size), -EINVAL);
}

struct writer {
    struct logstore *ls;
    int64_t job;
    int ok;
};

static void *write_many(void *arg)
{
    struct writer *w = arg;
    uint64_t size = 0;
    char line[32];
    w->ok = 1;
    for (int i = 0; i < 200; i++) {
        int n = snprintf(line, sizeof(line), "line %03d\n", i);
        if (logstore_append(w->ls, w->job, 1, size, line, (size_t)n, &size) != 0)
            w->ok = 0;
    }
    return NULL;
}

/* Several threads, each its own log (the protocol has one writer per
 * attempt): all complete and whole. */
static void test_threads(void **state)
{
    struct fixture *f = *state;
    pthread_t t[4];
    struct writer w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct writer){f->ls, 100 + i, 0};
        pthread_create(&t[i], NULL, write_many, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_true(w[i].ok);
        uint64_t size;
        assert_int_equal(logstore_size(f->ls, 100 + i, 1, &size), 0);
        assert_int_equal(size, 200 * 9);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_by_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout_and_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_layout_moved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
