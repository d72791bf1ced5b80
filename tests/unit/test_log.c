/*
 * test_log.c — src/log.c's lines: in JSON, a field typed at its call site
 * (SL_NUM, SL_BOOL) is a JSON number or boolean when its text is one, every
 * other field a string whatever its text; logfmt writes them all alike. And a
 * repeated task's failures: the first, then reminders at growing intervals,
 * then one line when it works again.
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

/* What is written on stderr between capture() and captured(), into a static
 * buffer. */
typedef struct {
    FILE *tmp;
    int saved;
} capturing;

static capturing capture(void)
{
    fflush(stderr);
    capturing c = {tmpfile(), dup(fileno(stderr))};
    assert_non_null(c.tmp);
    assert_true(c.saved >= 0);
    assert_true(dup2(fileno(c.tmp), fileno(stderr)) >= 0);
    return c;
}

static char *captured(capturing c)
{
    fflush(stderr);
    assert_true(dup2(c.saved, fileno(stderr)) >= 0);
    close(c.saved);
    static char buf[4096];
    rewind(c.tmp);
    size_t n = fread(buf, 1, sizeof buf - 1, c.tmp);
    buf[n] = '\0';
    fclose(c.tmp);
    return buf;
}

/* The line sl_log writes for one field (k, v), from after the level and msg. */
static char *line_for(int format, const char *k, const char *v)
{
    capturing c = capture();
    sl_log_setup(format, SL_DEBUG);
    sl_log(SL_INFO, "m", k, v, NULL);
    char *buf = captured(c);
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

/* The lines, without their timestamps, of a task failing every 2 s from t = 0
 * to 40 (an outage's failures between, which count for nothing), working at
 * 41, failing again at 50. */
static void test_repeated_failures_are_reminded_at_growing_intervals(void **state)
{
    (void)state;
    capturing c = capture();
    sl_log_setup(0, SL_INFO);
    sl_log_repeat r = {0};
    for (int t = 0; t <= 40; t += 2) {
        sl_log_attempt(&r, SL_WARN, 1000 + t, "refused", "pass failed", "pass works again");
        sl_log_attempt(&r, SL_DEBUG, 1001 + t, "unreachable", "pass failed", "pass works again");
    }
    sl_log_attempt(&r, SL_WARN, 1041, NULL, "pass failed", "pass works again");
    sl_log_attempt(&r, SL_WARN, 1042, NULL, "pass failed", "pass works again"); /* nothing */
    sl_log_attempt(&r, SL_WARN, 1050, "refused", "pass failed", "pass works again");
    char *out = captured(c), *lines[8];
    int n = 0;
    for (char *l = strtok(out, "\n"); l && n < 8; l = strtok(NULL, "\n")) {
        char *level = strstr(l, "level=");
        assert_non_null(level);
        lines[n++] = level;
    }
    assert_int_equal(n, 5);
    assert_string_equal(lines[0], "level=warn msg=\"pass failed\" error=refused");
    assert_string_equal(lines[1],
                        "level=warn msg=\"pass failed\" error=refused failures=6 failing_for=10s");
    assert_string_equal(lines[2],
                        "level=warn msg=\"pass failed\" error=refused failures=16 failing_for=30s");
    assert_string_equal(lines[3],
                        "level=info msg=\"pass works again\" failures=21 failed_for=41.0s");
    assert_string_equal(lines[4], "level=warn msg=\"pass failed\" error=refused");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typed_numbers),
        cmocka_unit_test(test_typed_booleans),
        cmocka_unit_test(test_untyped_values_stay_strings),
        cmocka_unit_test(test_logfmt_writes_the_text),
        cmocka_unit_test(test_repeated_failures_are_reminded_at_growing_intervals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
