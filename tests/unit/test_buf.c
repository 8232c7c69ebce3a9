#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"

static void test_add_and_detach(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    assert_int_equal(buf_adds(&b, "hello"), 0);
    assert_int_equal(buf_addch(&b, ' '), 0);
    assert_int_equal(buf_addf(&b, "%d-%s", 42, "x"), 0);
    assert_string_equal(b.data, "hello 42-x");
    assert_int_equal(b.len, 10);
    size_t len;
    char *s = buf_detach(&b, &len);
    assert_int_equal(len, 10);
    assert_string_equal(s, "hello 42-x");
    assert_null(b.data);
    free(s);
}

static void test_binary_and_growth(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    char chunk[1000];
    for (int i = 0; i < 1000; i++)
        chunk[i] = (char)(i % 256);
    for (int i = 0; i < 100; i++)
        assert_int_equal(buf_add(&b, chunk, sizeof(chunk)), 0);
    assert_int_equal(b.len, 100000);
    assert_memory_equal(b.data + 99000, chunk, 1000);
    assert_int_equal(b.data[b.len], 0);
    buf_consume(&b, 99500);
    assert_int_equal(b.len, 500);
    assert_memory_equal(b.data, chunk + 500, 500);
    buf_release(&b);
}

static void test_cap(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    b.max = 8;
    assert_int_equal(buf_adds(&b, "12345678"), 0);
    assert_int_equal(buf_adds(&b, "9"), -E2BIG);
    assert_int_equal(b.len, 8);
    assert_int_equal(buf_addf(&b, "%s", "x"), -E2BIG);
    assert_string_equal(b.data, "12345678");
    buf_release(&b);
}

static void test_setf_reset(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    buf_setf(&b, "first %d", 1);
    buf_setf(&b, "second %d", 2);
    assert_string_equal(b.data, "second 2");
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    char *s = buf_detach(&b, NULL);
    assert_string_equal(s, "");
    free(s);
    struct buf empty = BUF_INIT;
    s = buf_detach(&empty, NULL);
    assert_string_equal(s, "");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_detach),
        cmocka_unit_test(test_binary_and_growth),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_setf_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
