/*
 * test_buf.c — src/buf.c's cleaners for text Postgres must store:
 * sl_utf8_clean (bytes that are not UTF-8 become U+FFFD) and sl_json_clean
 * (the same, and "\u0000", which jsonb refuses, becomes "\ufffd"), the empty
 * input included.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"

/* Leaves non-zero bytes in the heap chunk a 256-byte allocation is likely to get
 * next, so a result that was never NUL-terminated shows. */
static void dirty_heap(void)
{
    char *p = malloc(256);
    memset(p, 'x', 256);
    free(p);
}

static void test_utf8_clean(void **state)
{
    (void)state;
    dirty_heap();
    char *s = sl_utf8_clean("");
    assert_string_equal(s, "");
    free(s);
    s = sl_utf8_clean("caf\xc3\xa9 \xff ok \xc3");
    assert_string_equal(s, "caf\xc3\xa9 \xef\xbf\xbd ok \xef\xbf\xbd");
    free(s);
    s = sl_utf8_clean("\xed\xa0\x80"); /* a surrogate: three bytes, none valid */
    assert_string_equal(s, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    free(s);
}

static void test_json_clean(void **state)
{
    (void)state;
    dirty_heap();
    char *s = sl_json_clean("");
    assert_string_equal(s, "");
    free(s);
    s = sl_json_clean("{\"a\":\"x\\u0000y\",\"b\":\"\\\\u0000\",\"c\":\"\xff\"}");
    assert_string_equal(s, "{\"a\":\"x\\ufffdy\",\"b\":\"\\\\u0000\",\"c\":\"\xef\xbf\xbd\"}");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_clean),
        cmocka_unit_test(test_json_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
