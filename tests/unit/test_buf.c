/*
 * test_buf.c — src/buf.c's cleaners for text Postgres must store:
 * sl_utf8_clean (bytes that are not UTF-8 become U+FFFD) and sl_json_clean
 * (the same, and "\u0000", which jsonb refuses, becomes "\ufffd"), the empty
 * input included; and the two halves of reading a \uXXXX escape, sl_hex4 and
 * sl_utf8_put; and sl_buf_join_and's "A, B and C"; and sl_buf_id_array's
 * "{a,b}"; and sl_buf_printf, into an empty buffer, into room left, and past
 * it.
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

static void test_utf8_put(void **state)
{
    (void)state;
    static const struct {
        unsigned long c;
        const char *utf8;
    } cases[] = {
        {0x41, "A"},
        {0x7f, "\x7f"},
        {0x80, "\xc2\x80"},
        {0xe9, "\xc3\xa9"},
        {0x7ff, "\xdf\xbf"},
        {0x800, "\xe0\xa0\x80"},
        {0xfffd, "\xef\xbf\xbd"},
        {0xffff, "\xef\xbf\xbf"},
        {0x10000, "\xf0\x90\x80\x80"},
        {0x1f600, "\xf0\x9f\x98\x80"},
        {0x10ffff, "\xf4\x8f\xbf\xbf"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[4];
        size_t n = sl_utf8_put(out, cases[i].c);
        assert_int_equal(n, strlen(cases[i].utf8));
        assert_memory_equal(out, cases[i].utf8, n);
        if (n > 1) assert_int_equal(sl_utf8_len((const unsigned char *)out, n), n);
    }
    char nul[4] = "xxx";
    assert_int_equal(sl_utf8_put(nul, 0), 1);
    assert_int_equal(nul[0], '\0');
}

static void test_hex4(void **state)
{
    (void)state;
    assert_int_equal(sl_hex4("0000", 4), 0);
    assert_int_equal(sl_hex4("00e9", 4), 0xe9);
    assert_int_equal(sl_hex4("D83D", 4), 0xd83d);
    assert_int_equal(sl_hex4("dE0aXYZ", 7), 0xde0a); /* four digits, no more */
    assert_int_equal(sl_hex4("ffff", 4), 0xffff);
    assert_int_equal(sl_hex4("12g4", 4), -1);
    assert_int_equal(sl_hex4("12 4", 4), -1);
    assert_int_equal(sl_hex4("123", 3), -1); /* too few readable */
    assert_int_equal(sl_hex4("1234", 3), -1);
    assert_int_equal(sl_hex4("12", 4), -1); /* a NUL is not a digit */
}

static void test_join_and(void **state)
{
    (void)state;
    const char *items[] = {"PGUSER", "PGPORT", "PGSSLMODE", "PGHOST"};
    const char *want[] = {"", "PGUSER", "PGUSER and PGPORT", "PGUSER, PGPORT and PGSSLMODE",
                          "PGUSER, PGPORT, PGSSLMODE and PGHOST"};
    for (size_t n = 0; n <= 4; n++) {
        sl_buf b = {0};
        sl_buf_join_and(&b, items, n);
        assert_string_equal(sl_buf_str(&b), want[n]);
        sl_buf_free(&b);
    }
    sl_buf b = {0}; /* added to what is there */
    sl_buf_puts(&b, "from ");
    sl_buf_join_and(&b, items, 2);
    assert_string_equal(sl_buf_str(&b), "from PGUSER and PGPORT");
    sl_buf_free(&b);
}

static void test_id_array(void **state)
{
    (void)state;
    static const struct {
        const char *ids, *want;
    } cases[] = {
        {"a,b,", "{a,b}"}, {"a,b", "{a,b}"}, {"a,", "{a}"}, {"a", "{a}"}, {"", "{}"}, {",", "{}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sl_buf b = {0};
        sl_buf_id_array(&b, cases[i].ids);
        assert_string_equal(sl_buf_str(&b), cases[i].want);
        sl_buf_free(&b);
    }
    sl_buf b = {0}; /* added to what is there */
    sl_buf_puts(&b, "runs ");
    sl_buf_id_array(&b, "a,");
    assert_string_equal(sl_buf_str(&b), "runs {a}");
    sl_buf_free(&b);
}

static void test_printf(void **state)
{
    (void)state;
    sl_buf b = {0};
    sl_buf_printf(&b, "%s", ""); /* nothing, into nothing */
    assert_string_equal(sl_buf_str(&b), "");
    sl_buf_printf(&b, "%d-%s", 42, "x"); /* the first allocation */
    assert_string_equal(sl_buf_str(&b), "42-x");
    sl_buf_printf(&b, "%s", ""); /* nothing, into room: still terminated */
    assert_string_equal(sl_buf_str(&b), "42-x");
    sl_buf_printf(&b, ",%05d", 7); /* fits in what is there */
    assert_string_equal(sl_buf_str(&b), "42-x,00007");
    char big[1000];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    sl_buf_printf(&b, "[%s]", big); /* past the room: written again in full */
    assert_int_equal(strlen(sl_buf_str(&b)), strlen("42-x,00007") + 2 + sizeof big - 1);
    assert_memory_equal(sl_buf_str(&b), "42-x,00007[yyy", 14);
    assert_string_equal(sl_buf_str(&b) + strlen(sl_buf_str(&b)) - 3, "yy]");
    sl_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_clean), cmocka_unit_test(test_json_clean),
        cmocka_unit_test(test_utf8_put),   cmocka_unit_test(test_hex4),
        cmocka_unit_test(test_join_and),   cmocka_unit_test(test_id_array),
        cmocka_unit_test(test_printf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
