/*
 * test_log.c — src/log.c's lines: in JSON, a field typed at its call site
 * (SL_NUM, SL_BOOL) is a JSON number or boolean when its text is one, every
 * other field a string whatever its text; logfmt writes them all alike.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

/* The line sl_log writes for one field (k, v), from after the level and msg. */
static char *line_for(int format, const char *k, const char *v)
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(fileno(stderr));
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), fileno(stderr)) >= 0);
    sl_log_setup(format, SL_DEBUG);
    sl_log(SL_INFO, "m", k, v, NULL);
    fflush(stderr);
    assert_true(dup2(saved, fileno(stderr)) >= 0);
    close(saved);
    static char buf[1024];
    rewind(tmp);
    size_t n = fread(buf, 1, sizeof buf - 1, tmp);
    buf[n] = '\0';
    fclose(tmp);
    char *rest = strstr(buf, format == 1 ? "\"msg\":\"m\"," : "msg=m ");
    assert_non_null(rest);
    return rest + (format == 1 ? 10 : 6);
}

static void json(const char *k, const char *v, const char *want)
{
    assert_string_equal(line_for(1, k, v), want);
}

static void test_typed_numbers(void **state)
{
    (void)state;
    json(SL_NUM "seconds", "0.012", "\"seconds\":0.012}\n");
    json(SL_NUM "concurrency", "4", "\"concurrency\":4}\n");
    json(SL_NUM "n", "0", "\"n\":0}\n");
    json(SL_NUM "n", "-1.5e3", "\"n\":-1.5e3}\n");
    /* not a number in JSON's grammar, or not a finite one: a string */
    const char *bad[] = {"007", "+1",    "0x10", "inf", "nan", "1.", ".5",
                         "1e",  "1e999", "",     "12s", "1 ",  NULL};
    for (int i = 0; bad[i]; i++) {
        char want[64];
        snprintf(want, sizeof want, "\"n\":\"%s\"}\n", bad[i]);
        json(SL_NUM "n", bad[i], want);
    }
}

static void test_typed_booleans(void **state)
{
    (void)state;
    json(SL_BOOL "running", "true", "\"running\":true}\n");
    json(SL_BOOL "running", "false", "\"running\":false}\n");
    json(SL_BOOL "running", "yes", "\"running\":\"yes\"}\n");
}

static void test_untyped_values_stay_strings(void **state)
{
    (void)state;
    json("brand", "123", "\"brand\":\"123\"}\n");
    json("brand", "true", "\"brand\":\"true\"}\n");
    json("run", "6f1c0000-0000-4000-8000-000000000001",
         "\"run\":\"6f1c0000-0000-4000-8000-000000000001\"}\n");
}

static void test_logfmt_writes_the_text(void **state)
{
    (void)state;
    assert_string_equal(line_for(0, SL_NUM "seconds", "0.012"), "seconds=0.012\n");
    assert_string_equal(line_for(0, SL_BOOL "running", "true"), "running=true\n");
    assert_string_equal(line_for(0, "brand", "123"), "brand=123\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typed_numbers),
        cmocka_unit_test(test_typed_booleans),
        cmocka_unit_test(test_untyped_values_stay_strings),
        cmocka_unit_test(test_logfmt_writes_the_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
