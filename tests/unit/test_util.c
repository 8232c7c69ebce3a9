#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/util.h"

static void test_parse(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(parse_int64("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(parse_int64("-5", -10, 10, &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(parse_int64("101", 0, 100, &v), -ERANGE);
    assert_int_equal(parse_int64("4x", 0, 100, &v), -EINVAL);
    assert_int_equal(parse_int64("", 0, 100, &v), -EINVAL);
    assert_int_equal(parse_int64(" 4", 0, 100, &v), -EINVAL);
    assert_int_equal(parse_int64(NULL, 0, 100, &v), -EINVAL);
    assert_int_equal(parse_int64("99999999999999999999999", 0, INT64_MAX, &v), -ERANGE);
    int i;
    assert_int_equal(parse_int("7", 1, 8, &i), 0);
    assert_int_equal(i, 7);
}

static void test_names(void **state)
{
    (void)state;
    assert_true(name_valid("demo"));
    assert_true(name_valid("my-repo_1.x"));
    assert_false(name_valid(""));
    assert_false(name_valid(".git"));
    assert_false(name_valid("-rf"));
    assert_false(name_valid("a/b"));
    assert_false(name_valid(".."));
    assert_false(name_valid("a b"));
    assert_false(name_valid(NULL));
    char longname[200];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[199] = 0;
    assert_false(name_valid(longname));
    assert_true(sha_valid("0123456789abcdef0123456789abcdef01234567"));
    assert_false(sha_valid("0123456789ABCDEF0123456789abcdef01234567"));
    assert_false(sha_valid("0123"));
}

static void test_secrets(void **state)
{
    (void)state;
    assert_true(secret_equal("abc", "abc"));
    assert_false(secret_equal("abc", "abd"));
    assert_false(secret_equal("abc", "abcd"));
    assert_false(secret_equal("", "a"));
    assert_true(secret_equal("", ""));
    assert_false(secret_equal(NULL, "a"));
    char *t1 = random_token(16), *t2 = random_token(16);
    assert_int_equal(strlen(t1), 32);
    assert_string_not_equal(t1, t2);
    free(t1);
    free(t2);
}

static void test_files(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/yci-test-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char path[256];
    snprintf(path, sizeof(path), "%s/a/b/c", tmpl);
    assert_int_equal(mkdir_p(path, 0755), 0);
    assert_int_equal(mkdir_p(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/a/b/c/file", tmpl);
    assert_int_equal(file_write_atomic(path, "data\n", 5, 0600), 0);
    char below[300];
    snprintf(below, sizeof(below), "%s/x", path); /* a file in the way */
    assert_int_equal(mkdir_p(below, 0755), -ENOTDIR);
    snprintf(below, sizeof(below), "%s/a/d/e", tmpl); /* beside an existing one */
    assert_int_equal(mkdir_p(below, 0755), 0);
    struct buf b = BUF_INIT;
    assert_int_equal(file_read(path, &b), 0);
    assert_string_equal(b.data, "data\n");
    buf_release(&b);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* A read-only directory inside must not stop remove_tree. */
    snprintf(path, sizeof(path), "%s/a/b", tmpl);
    chmod(path, 0500);
    assert_int_equal(remove_tree(tmpl), 0);
    assert_int_equal(stat(tmpl, &st), -1);
    assert_int_equal(remove_tree(tmpl), 0);
    assert_int_equal(file_read("/nonexistent/file", &b), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
