/*
 * test_cron.c — src/cron.c: every field syntax (values, ranges, lists, steps,
 * a/n, names, 7 = Sunday), the @macros, the day-of-month/day-of-week OR rule,
 * one error per kind and per field, leap years and short months, and fire
 * times across both DST transitions in New York, Berlin, Sydney and Lord Howe
 * (30-minute shift), including years only the zone's POSIX rule covers.
 *
 * Fire times are written as UTC instants; the comments give the local time.
 * Real zones come from $TZDIR, else /usr/share/zoneinfo (tzdata must be installed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cron.h"
#include "tz.h"

/* ------------------------------------------------------------------ helpers */

static int64_t at(const char *iso)
{
    int y, mo, d, h, mi, s;
    assert_int_equal(sscanf(iso, "%d-%d-%dT%d:%d:%dZ", &y, &mo, &d, &h, &mi, &s), 6);
    return sl_days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + s;
}

static void iso(int64_t t, char *buf, size_t len)
{
    int64_t days = t / 86400 - (t % 86400 < 0), secs = t - days * 86400, y;
    int m, d;
    sl_civil_from_days(days, &y, &m, &d);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)y, m, d, (int)(secs / 3600),
             (int)(secs / 60 % 60), (int)(secs % 60));
}

static sl_cron *parse(const char *expr)
{
    char err[256] = "";
    sl_cron *c = sl_cron_parse(expr, err, sizeof err);
    if (!c) fail_msg("\"%s\": %s", expr, err);
    return c;
}

static sl_tz *zone(const char *name)
{
    char err[256] = "";
    if (!name) return NULL;
    sl_tz *tz = sl_tz_load(name, err, sizeof err);
    if (!tz) fail_msg("%s: %s", name, err);
    return tz;
}

/* The fire times of expr in zone (NULL = UTC) after `from`, as many as `want`
 * lists (space-separated), must be exactly `want`. */
static void expect_next(const char *expr, const char *zname, const char *from, const char *want)
{
    sl_cron *c = parse(expr);
    sl_tz *tz = zone(zname);
    char got[1024] = "", one[32];
    int n = 1;
    for (const char *p = want; *p; p++)
        n += *p == ' ';
    int64_t t = at(from);
    for (int i = 0; i < n; i++) {
        if (sl_cron_next(c, tz, t, &t) < 0) {
            snprintf(got + strlen(got), sizeof got - strlen(got), "%snone", i ? " " : "");
            break;
        }
        iso(t, one, sizeof one);
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? " " : "", one);
    }
    sl_cron_free(c);
    sl_tz_free(tz);
    if (strcmp(got, want) != 0)
        fail_msg("\"%s\" in %s after %s:\n  got  %s\n  want %s", expr, zname ? zname : "UTC", from,
                 got, want);
}

static void expect_never(const char *expr, const char *zname)
{
    sl_cron *c = parse(expr);
    sl_tz *tz = zone(zname);
    int64_t next = 42;
    int r = sl_cron_next(c, tz, at("2026-01-01T00:00:00Z"), &next);
    sl_cron_free(c);
    sl_tz_free(tz);
    assert_int_equal(r, -1);
    assert_int_equal(next, 42);
}

static void expect_error(const char *expr, const char *want)
{
    char err[256] = "";
    sl_cron *c = sl_cron_parse(expr, err, sizeof err);
    if (c) {
        sl_cron_free(c);
        fail_msg("\"%s\" was accepted", expr);
    }
    if (strcmp(err, want) != 0) fail_msg("\"%s\":\n  got  %s\n  want %s", expr, err, want);
}

/* ------------------------------------------------------------------ field syntax */

static void test_star_and_strictly_after(void **state)
{
    (void)state;
    expect_next("* * * * *", NULL, "2026-01-01T00:00:00Z",
                "2026-01-01T00:01:00Z 2026-01-01T00:02:00Z");
    expect_next("* * * * *", NULL, "2026-01-01T00:00:30Z", "2026-01-01T00:01:00Z");
    expect_next("0 0 * * *", NULL, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z");
    expect_next("0 0 * * *", NULL, "2025-12-31T23:59:59Z", "2026-01-01T00:00:00Z");
    expect_next("59 23 31 12 *", NULL, "2026-06-01T00:00:00Z",
                "2026-12-31T23:59:00Z 2027-12-31T23:59:00Z");
}

static void test_minute_field(void **state)
{
    (void)state;
    const char *from = "2026-01-01T00:00:00Z";
    expect_next("7 * * * *", NULL, from, "2026-01-01T00:07:00Z 2026-01-01T01:07:00Z");
    expect_next("*/15 * * * *", NULL, from,
                "2026-01-01T00:15:00Z 2026-01-01T00:30:00Z 2026-01-01T00:45:00Z "
                "2026-01-01T01:00:00Z");
    expect_next("1-30/5 * * * *", NULL, from,
                "2026-01-01T00:01:00Z 2026-01-01T00:06:00Z 2026-01-01T00:11:00Z "
                "2026-01-01T00:16:00Z 2026-01-01T00:21:00Z 2026-01-01T00:26:00Z "
                "2026-01-01T01:01:00Z");
    expect_next("5/10 * * * *", NULL, from, /* 5-59/10 */
                "2026-01-01T00:05:00Z 2026-01-01T00:15:00Z 2026-01-01T00:25:00Z "
                "2026-01-01T00:35:00Z 2026-01-01T00:45:00Z 2026-01-01T00:55:00Z "
                "2026-01-01T01:05:00Z");
    expect_next("0,30 * * * *", NULL, from,
                "2026-01-01T00:30:00Z 2026-01-01T01:00:00Z 2026-01-01T01:30:00Z");
    expect_next("58-59,2 * * * *", NULL, from,
                "2026-01-01T00:02:00Z 2026-01-01T00:58:00Z 2026-01-01T00:59:00Z "
                "2026-01-01T01:02:00Z");
    expect_next("*/60 * * * *", NULL, from, "2026-01-01T01:00:00Z 2026-01-01T02:00:00Z");
    expect_next("10-12 * * * *", NULL, from,
                "2026-01-01T00:10:00Z 2026-01-01T00:11:00Z 2026-01-01T00:12:00Z "
                "2026-01-01T01:10:00Z");
}

static void test_hour_field(void **state)
{
    (void)state;
    const char *from = "2026-01-01T00:00:00Z";
    expect_next("0 9-11 * * *", NULL, from,
                "2026-01-01T09:00:00Z 2026-01-01T10:00:00Z 2026-01-01T11:00:00Z "
                "2026-01-02T09:00:00Z");
    expect_next("0 */6 * * *", NULL, from,
                "2026-01-01T06:00:00Z 2026-01-01T12:00:00Z 2026-01-01T18:00:00Z "
                "2026-01-02T00:00:00Z");
    expect_next("15 8/8 * * *", NULL, from, /* 8, 16 */
                "2026-01-01T08:15:00Z 2026-01-01T16:15:00Z 2026-01-02T08:15:00Z");
    expect_next("30 23 * * *", NULL, from, "2026-01-01T23:30:00Z 2026-01-02T23:30:00Z");
    expect_next("0,30 9,17 * * *", NULL, from,
                "2026-01-01T09:00:00Z 2026-01-01T09:30:00Z 2026-01-01T17:00:00Z "
                "2026-01-01T17:30:00Z 2026-01-02T09:00:00Z");
}

static void test_day_of_month_field(void **state)
{
    (void)state;
    expect_next("0 0 1,15 * *", NULL, "2026-01-20T00:00:00Z",
                "2026-02-01T00:00:00Z 2026-02-15T00:00:00Z 2026-03-01T00:00:00Z");
    expect_next("0 0 */10 * *", NULL, "2026-01-01T00:00:00Z", /* 1, 11, 21, 31 */
                "2026-01-11T00:00:00Z 2026-01-21T00:00:00Z 2026-01-31T00:00:00Z "
                "2026-02-01T00:00:00Z");
    expect_next("0 12 28-31 2 *", NULL, "2026-01-01T00:00:00Z",
                "2026-02-28T12:00:00Z 2027-02-28T12:00:00Z 2028-02-28T12:00:00Z "
                "2028-02-29T12:00:00Z 2029-02-28T12:00:00Z");
    expect_next("0 0 20/5 * *", NULL, "2026-04-01T00:00:00Z", /* 20, 25, 30 */
                "2026-04-20T00:00:00Z 2026-04-25T00:00:00Z 2026-04-30T00:00:00Z "
                "2026-05-20T00:00:00Z");
}

static void test_month_field(void **state)
{
    (void)state;
    const char *from = "2026-01-01T00:00:00Z";
    expect_next("0 0 1 */3 *", NULL, from,
                "2026-04-01T00:00:00Z 2026-07-01T00:00:00Z 2026-10-01T00:00:00Z "
                "2027-01-01T00:00:00Z");
    expect_next("0 0 1 6-7 *", NULL, from,
                "2026-06-01T00:00:00Z 2026-07-01T00:00:00Z 2027-06-01T00:00:00Z");
    expect_next("0 0 1 11/1 *", NULL, from,
                "2026-11-01T00:00:00Z 2026-12-01T00:00:00Z 2027-11-01T00:00:00Z");
    expect_next("0 0 5 12 *", NULL, from, "2026-12-05T00:00:00Z 2027-12-05T00:00:00Z");
}

/* 2026-01-01 is a Thursday. */
static void test_day_of_week_field(void **state)
{
    (void)state;
    const char *from = "2026-01-01T00:00:00Z";
    expect_next("0 0 * * 1-5", NULL, "2026-01-02T12:00:00Z",
                "2026-01-05T00:00:00Z 2026-01-06T00:00:00Z 2026-01-07T00:00:00Z "
                "2026-01-08T00:00:00Z 2026-01-09T00:00:00Z 2026-01-12T00:00:00Z");
    expect_next("0 0 * * 0", NULL, from, "2026-01-04T00:00:00Z 2026-01-11T00:00:00Z");
    expect_next("0 0 * * 7", NULL, from, "2026-01-04T00:00:00Z 2026-01-11T00:00:00Z");
    expect_next("0 0 * * 6-7", NULL, from,
                "2026-01-03T00:00:00Z 2026-01-04T00:00:00Z 2026-01-10T00:00:00Z");
    expect_next("0 0 * * */2", NULL, from, /* Sun, Tue, Thu, Sat */
                "2026-01-03T00:00:00Z 2026-01-04T00:00:00Z 2026-01-06T00:00:00Z "
                "2026-01-08T00:00:00Z");
    expect_next("0 0 * * 5/1", NULL, from, /* Fri-Sat */
                "2026-01-02T00:00:00Z 2026-01-03T00:00:00Z 2026-01-09T00:00:00Z");
    expect_next("0 0 * * 4", NULL, from, "2026-01-08T00:00:00Z 2026-01-15T00:00:00Z");
}

static void test_names(void **state)
{
    (void)state;
    const char *from = "2026-01-01T00:00:00Z";
    expect_next("0 0 1 jan,JUL *", NULL, from, "2026-07-01T00:00:00Z 2027-01-01T00:00:00Z");
    expect_next("0 0 1 Feb-apr *", NULL, from,
                "2026-02-01T00:00:00Z 2026-03-01T00:00:00Z 2026-04-01T00:00:00Z "
                "2027-02-01T00:00:00Z");
    expect_next("0 0 1 jan-dec/6 *", NULL, from, "2026-07-01T00:00:00Z 2027-01-01T00:00:00Z");
    expect_next("0 0 * * MON-fri", NULL, "2026-01-02T12:00:00Z",
                "2026-01-05T00:00:00Z 2026-01-06T00:00:00Z 2026-01-07T00:00:00Z "
                "2026-01-08T00:00:00Z 2026-01-09T00:00:00Z 2026-01-12T00:00:00Z");
    expect_next("0 0 * * fri-sun", NULL, from,
                "2026-01-02T00:00:00Z 2026-01-03T00:00:00Z 2026-01-04T00:00:00Z "
                "2026-01-09T00:00:00Z");
    expect_next("0 0 * * Tue,thu", NULL, from, "2026-01-06T00:00:00Z 2026-01-08T00:00:00Z");
    expect_next("0 0 * * mon-fri/2", NULL, from, /* Mon, Wed, Fri */
                "2026-01-02T00:00:00Z 2026-01-05T00:00:00Z 2026-01-07T00:00:00Z");
    expect_next("0 0 * dec sat", NULL, from, "2026-12-05T00:00:00Z 2026-12-12T00:00:00Z");
    expect_next("0 0 * * SUN", NULL, from, "2026-01-04T00:00:00Z");
}

static void test_macros(void **state)
{
    (void)state;
    const char *noon = "2026-01-01T12:00:00Z"; /* a Thursday */
    expect_next("@hourly", NULL, "2026-01-01T00:30:00Z",
                "2026-01-01T01:00:00Z 2026-01-01T02:00:00Z");
    expect_next("@daily", NULL, noon, "2026-01-02T00:00:00Z 2026-01-03T00:00:00Z");
    expect_next("@midnight", NULL, noon, "2026-01-02T00:00:00Z 2026-01-03T00:00:00Z");
    expect_next("@weekly", NULL, noon, "2026-01-04T00:00:00Z 2026-01-11T00:00:00Z");
    expect_next("@monthly", NULL, noon, "2026-02-01T00:00:00Z 2026-03-01T00:00:00Z");
    expect_next("@yearly", NULL, noon, "2027-01-01T00:00:00Z 2028-01-01T00:00:00Z");
    expect_next("@annually", NULL, noon, "2027-01-01T00:00:00Z 2028-01-01T00:00:00Z");
    expect_next("@Daily", NULL, noon, "2026-01-02T00:00:00Z");
    expect_next("  @HOURLY  ", NULL, noon, "2026-01-01T13:00:00Z");

    sl_cron *h = parse("@hourly"), *d = parse("@daily");
    assert_true(sl_cron_is_hourly(h));
    assert_false(sl_cron_is_hourly(d));
    sl_cron_free(h);
    sl_cron_free(d);
}

/* ------------------------------------------------------------------ the OR rule */

static void test_day_or_rule(void **state)
{
    (void)state;
    const char *from = "2026-01-01T00:00:00Z";
    /* both restricted: the 13th OR a Friday */
    expect_next("0 0 13 * fri", NULL, from,
                "2026-01-02T00:00:00Z 2026-01-09T00:00:00Z 2026-01-13T00:00:00Z "
                "2026-01-16T00:00:00Z");
    expect_next("0 0 13 * *", NULL, from, "2026-01-13T00:00:00Z 2026-02-13T00:00:00Z");
    expect_next("0 0 * * fri", NULL, from,
                "2026-01-02T00:00:00Z 2026-01-09T00:00:00Z 2026-01-16T00:00:00Z");
    expect_next("0 0 1-31 * mon", NULL, from, /* every day */
                "2026-01-02T00:00:00Z 2026-01-03T00:00:00Z 2026-01-04T00:00:00Z");
    /* a field starting with '*' does not count as restricted: AND */
    expect_next("0 0 */2 * fri", NULL, from, /* odd-numbered Fridays */
                "2026-01-09T00:00:00Z 2026-01-23T00:00:00Z 2026-02-13T00:00:00Z "
                "2026-02-27T00:00:00Z");
    expect_next("0 0 13 * */1", NULL, from, "2026-01-13T00:00:00Z 2026-02-13T00:00:00Z");
    /* Feb 30 never exists, but Mondays in February do */
    expect_next("0 0 30 2 mon", NULL, from, "2026-02-02T00:00:00Z 2026-02-09T00:00:00Z");
}

static struct tm wall(int y, int mo, int d, int h, int mi)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_wday = 3; /* deliberately wrong: it is recomputed */
    return tm;
}

static void test_matches(void **state)
{
    (void)state;
    sl_cron *c = parse("0 0 13 * fri");
    struct tm fri = wall(2026, 1, 2, 0, 0), tue13 = wall(2026, 1, 13, 0, 0),
              wed = wall(2026, 1, 14, 0, 0), late = wall(2026, 1, 2, 0, 1);
    assert_true(sl_cron_matches(c, &fri));
    assert_true(sl_cron_matches(c, &tue13));
    assert_false(sl_cron_matches(c, &wed));
    assert_false(sl_cron_matches(c, &late));
    struct tm carried = wall(2025, 13, 13, 0, 0); /* = 2026-01-13 */
    assert_true(sl_cron_matches(c, &carried));
    sl_cron_free(c);

    c = parse("30 9 * 2 mon-fri");
    struct tm mon = wall(2026, 2, 2, 9, 30), sun = wall(2026, 2, 1, 9, 30),
              march = wall(2026, 3, 2, 9, 30), hour = wall(2026, 2, 2, 10, 30);
    assert_true(sl_cron_matches(c, &mon));
    assert_false(sl_cron_matches(c, &sun));
    assert_false(sl_cron_matches(c, &march));
    assert_false(sl_cron_matches(c, &hour));
    sl_cron_free(c);
}

/* ------------------------------------------------------------------ errors */

static void test_errors_name_the_field(void **state)
{
    (void)state;
    expect_error("61 * * * *", "minute field \"61\": value 61 out of range 0-59");
    expect_error("* * * *", "expected 5 fields, got 4");
    expect_error("* * * * mon-fri/0", "day-of-week field \"mon-fri/0\": step must be at least 1");
    expect_error("* 24 * * *", "hour field \"24\": value 24 out of range 0-23");
    expect_error("* * 0 * *", "day-of-month field \"0\": value 0 out of range 1-31");
    expect_error("* * 1,32 * *", "day-of-month field \"1,32\": value 32 out of range 1-31");
    expect_error("* * * 13 *", "month field \"13\": value 13 out of range 1-12");
    expect_error("* * * 0 *", "month field \"0\": value 0 out of range 1-12");
    expect_error("* * * * 8", "day-of-week field \"8\": value 8 out of range 0-7");
    expect_error("* * * foo *", "month field \"foo\": unknown month name \"foo\" (use jan-dec)");
    expect_error("* * * january *",
                 "month field \"january\": unknown month name \"january\" (use jan-dec)");
    expect_error("* * * * mon-fro", "day-of-week field \"mon-fro\": unknown day name \"fro\" "
                                    "(use sun-sat)");
    expect_error("* * * * monday",
                 "day-of-week field \"monday\": unknown day name \"monday\" (use sun-sat)");
    expect_error("mon * * * *", "minute field \"mon\": \"mon\" is not a number");
    expect_error("* jan * * *", "hour field \"jan\": \"jan\" is not a number");
    expect_error("* * L * *", "day-of-month field \"L\": \"L\" is not a number");
    expect_error("* * ? * *", "day-of-month field \"?\": unexpected \"?\"");
    expect_error("1,,2 * * * *", "minute field \"1,,2\": empty list item");
    expect_error("1, * * * *", "minute field \"1,\": empty list item");
    expect_error("5x * * * *", "minute field \"5x\": unexpected \"x\"");
    expect_error("*-5 * * * *", "minute field \"*-5\": unexpected \"-5\"");
    expect_error("-5 * * * *", "minute field \"-5\": missing value");
    expect_error("* 5- * * *", "hour field \"5-\": missing value");
    expect_error("*/ * * * *", "minute field \"*/\": missing step after \"/\"");
    expect_error("*/0 * * * *", "minute field \"*/0\": step must be at least 1");
    expect_error("* */25 * * *", "hour field \"*/25\": step 25 out of range 1-24");
    expect_error("* * * 1-12/13 *", "month field \"1-12/13\": step 13 out of range 1-12");
    expect_error("5-2 * * * *",
                 "minute field \"5-2\": range 5-2 is backwards (a range does not wrap "
                 "around: write 5-59,0-2)");
    expect_error("* * * * sat-mon",
                 "day-of-week field \"sat-mon\": range 6-1 is backwards (a range "
                 "does not wrap around: write sat,sun-mon)");
    expect_error("* 22-2 * * *",
                 "hour field \"22-2\": range 22-2 is backwards (a range does not wrap "
                 "around: write 22-23,0-2)");
    expect_error("* * * nov-feb *",
                 "month field \"nov-feb\": range 11-2 is backwards (a range does "
                 "not wrap around: write nov-dec,jan-feb)");
    expect_error("* * * * 5-1",
                 "day-of-week field \"5-1\": range 5-1 is backwards (a range does not "
                 "wrap around: write 5-6,0-1)");
    expect_error("* * 31-1 * *",
                 "day-of-month field \"31-1\": range 31-1 is backwards (a range does "
                 "not wrap around: write 31,1)");
    expect_error("* 22-2/2 * * *", "hour field \"22-2/2\": range 22-2 is backwards");
    expect_error("99999999999 * * * *",
                 "minute field \"99999999999\": value 99999999999 out of range 0-59");
    expect_error("* * * * * *", "expected 5 fields, got 6");
    expect_error("", "expected 5 fields, got 0");
    expect_error(" \t ", "expected 5 fields, got 0");
    expect_error(NULL, "expected 5 fields, got 0");
    expect_error("@reboot", "unknown macro \"@reboot\" (use @hourly, @daily, @midnight, "
                            "@weekly, @monthly, @yearly or @annually)");
    expect_error("@daily 5", "@daily takes no fields, got \"5\"");

    char big[2000];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    expect_error(big, "cron expression too long (1999 bytes; at most 1023)");

    /* no buffer, or a tiny one, is fine */
    assert_null(sl_cron_parse("61 * * * *", NULL, 0));
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    assert_null(sl_cron_parse("61 * * * *", tiny, 4));
    assert_string_equal(tiny, "min");
    assert_int_equal(tiny[4], 'x');
}

/* ------------------------------------------------------------------ calendar edges */

static void test_leap_years(void **state)
{
    (void)state;
    expect_next("0 0 29 2 *", NULL, "2026-03-01T00:00:00Z",
                "2028-02-29T00:00:00Z 2032-02-29T00:00:00Z 2036-02-29T00:00:00Z");
    expect_next("0 0 29 2 *", NULL, "2028-02-28T23:59:59Z", "2028-02-29T00:00:00Z");
    /* 2100 is not a leap year: eight years to wait */
    expect_next("0 0 29 2 *", NULL, "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z");
    expect_next("0 0 29 2 *", "America/New_York", "2026-03-01T00:00:00Z", "2028-02-29T05:00:00Z");
    /* every day of February: 28 fires in 2026, 29 in 2028 */
    sl_cron *c = parse("0 0 * 2 *");
    for (int year = 2026; year <= 2028; year += 2) {
        char from[32], to[32];
        snprintf(from, sizeof from, "%d-01-31T00:00:00Z", year);
        snprintf(to, sizeof to, "%d-03-01T00:00:00Z", year);
        int n = 0;
        for (int64_t t = at(from); sl_cron_next(c, NULL, t, &t) == 0 && t < at(to);)
            n++;
        assert_int_equal(n, year == 2028 ? 29 : 28);
    }
    sl_cron_free(c);
}

static void test_short_months(void **state)
{
    (void)state;
    expect_next("0 0 31 * *", NULL, "2026-01-31T00:00:00Z",
                "2026-03-31T00:00:00Z 2026-05-31T00:00:00Z 2026-07-31T00:00:00Z "
                "2026-08-31T00:00:00Z 2026-10-31T00:00:00Z 2026-12-31T00:00:00Z "
                "2027-01-31T00:00:00Z");
    expect_next("0 0 30 * *", NULL, "2026-01-30T00:00:00Z",
                "2026-03-30T00:00:00Z 2026-04-30T00:00:00Z");
    expect_never("0 0 30 2 *", NULL);
    expect_never("0 0 31 2 *", "Europe/Berlin");
    expect_never("0 0 31 4,6,9,11 *", "America/New_York");
}

static void test_extreme_after(void **state)
{
    (void)state;
    sl_cron *c = parse("* * * * *");
    int64_t next = 7;
    assert_int_equal(sl_cron_next(c, NULL, INT64_MAX, &next), -1);
    assert_int_equal(sl_cron_next(c, NULL, INT64_MIN, &next), -1);
    assert_int_equal(next, 7);
    /* before the epoch */
    assert_int_equal(sl_cron_next(c, NULL, at("1969-12-31T23:59:30Z"), &next), 0);
    assert_int_equal(next, 0);
    sl_cron_free(c);
}

static void test_null_zone_is_utc(void **state)
{
    (void)state;
    sl_cron *c = parse("*/7 3,15 * * 1-5");
    sl_tz *utc = zone("UTC");
    int64_t a = at("2026-01-01T00:00:00Z"), b = a;
    for (int i = 0; i < 200; i++) {
        assert_int_equal(sl_cron_next(c, NULL, a, &a), 0);
        assert_int_equal(sl_cron_next(c, utc, b, &b), 0);
        assert_int_equal(a, b);
    }
    sl_cron_free(c);
    sl_tz_free(utc);
}

/* ------------------------------------------------------------------ DST */

static void test_dst_new_york_spring(void **state)
{
    (void)state;
    const char *ny = "America/New_York"; /* 2026-03-08 02:00 EST → 03:00 EDT (07:00Z) */
    /* 02:30 does not exist that day: fire at 03:00 EDT */
    expect_next("30 2 * * *", ny, "2026-03-07T12:00:00Z",
                "2026-03-08T07:00:00Z 2026-03-09T06:30:00Z");
    expect_next("0 2 * * *", ny, "2026-03-07T12:00:00Z",
                "2026-03-08T07:00:00Z 2026-03-09T06:00:00Z");
    /* several skipped times still fire once */
    expect_next("*/15 2 * * *", ny, "2026-03-07T12:00:00Z",
                "2026-03-08T07:00:00Z 2026-03-09T06:00:00Z 2026-03-09T06:15:00Z");
    expect_next("*/20 1-2 * * *", ny, "2026-03-08T05:30:00Z",
                "2026-03-08T06:00:00Z 2026-03-08T06:20:00Z 2026-03-08T06:40:00Z "
                "2026-03-08T07:00:00Z 2026-03-09T05:00:00Z");
    /* hourly jobs follow the real clock: one fire per real hour */
    expect_next("0 * * * *", ny, "2026-03-08T04:30:00Z",
                "2026-03-08T05:00:00Z 2026-03-08T06:00:00Z 2026-03-08T07:00:00Z "
                "2026-03-08T08:00:00Z");
    expect_next("30 * * * *", ny, "2026-03-08T05:45:00Z", /* 01:30 EST, 03:30 EDT */
                "2026-03-08T06:30:00Z 2026-03-08T07:30:00Z");
    expect_next("*/15 * * * *", ny, "2026-03-08T06:30:00Z",
                "2026-03-08T06:45:00Z 2026-03-08T07:00:00Z 2026-03-08T07:15:00Z");
}

static void test_dst_new_york_fall(void **state)
{
    (void)state;
    const char *ny = "America/New_York"; /* 2026-11-01 02:00 EDT → 01:00 EST (06:00Z) */
    /* 01:30 happens twice (05:30Z EDT, 06:30Z EST): fire at the first only */
    expect_next("30 1 * * *", ny, "2026-10-31T12:00:00Z",
                "2026-11-01T05:30:00Z 2026-11-02T06:30:00Z");
    expect_next("30 1 * * *", ny, "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z");
    /* even when asked from between the two passes */
    expect_next("30 1 * * *", ny, "2026-11-01T05:45:00Z", "2026-11-02T06:30:00Z");
    expect_next("30 1 * * *", ny, "2026-11-01T06:15:00Z", "2026-11-02T06:30:00Z");
    expect_next("0 2 * * *", ny, "2026-10-31T12:00:00Z",
                "2026-11-01T07:00:00Z 2026-11-02T07:00:00Z");
    expect_next("*/20 1-2 * * *", ny, "2026-11-01T04:30:00Z",
                "2026-11-01T05:00:00Z 2026-11-01T05:20:00Z 2026-11-01T05:40:00Z "
                "2026-11-01T07:00:00Z 2026-11-01T07:20:00Z 2026-11-01T07:40:00Z "
                "2026-11-02T06:00:00Z");
    /* hourly: 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST, 03:00 EST */
    expect_next("0 * * * *", ny, "2026-11-01T03:30:00Z",
                "2026-11-01T04:00:00Z 2026-11-01T05:00:00Z 2026-11-01T06:00:00Z "
                "2026-11-01T07:00:00Z 2026-11-01T08:00:00Z");
    expect_next("*/30 * * * *", ny, "2026-11-01T04:45:00Z",
                "2026-11-01T05:00:00Z 2026-11-01T05:30:00Z 2026-11-01T06:00:00Z "
                "2026-11-01T06:30:00Z 2026-11-01T07:00:00Z");
    expect_next("30 * * * *", ny, "2026-11-01T05:45:00Z", "2026-11-01T06:30:00Z");
}

/* Over a whole year: daily jobs fire once a day, real-clock jobs at even spacing. */
static void test_dst_whole_year(void **state)
{
    (void)state;
    sl_tz *tz = zone("America/New_York");
    int64_t start = at("2026-01-01T05:00:00Z") - 1, end = at("2027-01-01T05:00:00Z");
    struct {
        const char *expr;
        int fires, at_other_time;
    } daily[] = {{"30 2 * * *", 365, 1}, {"30 1 * * *", 365, 0}, {"0 0 * * *", 365, 0}};
    for (size_t i = 0; i < sizeof daily / sizeof daily[0]; i++) {
        sl_cron *c = parse(daily[i].expr);
        int n = 0, other = 0, prev_yday = -1;
        for (int64_t t = start; sl_cron_next(c, tz, t, &t) == 0 && t < end; n++) {
            struct tm tm;
            sl_tz_to_local(tz, t, &tm, NULL, NULL);
            assert_int_not_equal(tm.tm_yday, prev_yday); /* never twice a day */
            prev_yday = tm.tm_yday;
            other += !sl_cron_matches(c, &tm);
        }
        assert_int_equal(n, daily[i].fires);
        assert_int_equal(other, daily[i].at_other_time);
        sl_cron_free(c);
    }
    struct {
        const char *expr;
        int64_t step;
    } regular[] = {{"0 * * * *", 3600}, {"*/15 * * * *", 900}, {"@hourly", 3600}};
    for (size_t i = 0; i < sizeof regular / sizeof regular[0]; i++) {
        sl_cron *c = parse(regular[i].expr);
        int64_t t = at("2026-01-01T00:00:00Z"), prev = t;
        int n = 0;
        while (sl_cron_next(c, tz, t, &t) == 0 && t <= at("2027-01-01T00:00:00Z")) {
            assert_int_equal(t - prev, regular[i].step);
            prev = t;
            n++;
        }
        assert_int_equal(n, 365 * 86400LL / regular[i].step);
        sl_cron_free(c);
    }
    sl_tz_free(tz);
}

static void test_dst_berlin(void **state)
{
    (void)state;
    const char *be = "Europe/Berlin"; /* 03-29 02:00 CET → 03:00 CEST; 10-25 03:00 → 02:00 */
    expect_next("30 2 * * *", be, "2026-03-28T12:00:00Z",
                "2026-03-29T01:00:00Z 2026-03-30T00:30:00Z");
    expect_next("30 2 * * *", be, "2026-10-24T12:00:00Z",
                "2026-10-25T00:30:00Z 2026-10-26T01:30:00Z");
    expect_next("30 2 * * *", be, "2026-10-25T00:45:00Z", "2026-10-26T01:30:00Z");
    expect_next("0 * * * *", be, "2026-10-24T23:30:00Z", /* 02:00 CEST, 02:00 CET, 03:00 */
                "2026-10-25T00:00:00Z 2026-10-25T01:00:00Z 2026-10-25T02:00:00Z");
    expect_next("0 * * * *", be, "2026-03-28T23:30:00Z", /* 01:00 CET, 03:00 CEST, 04:00 */
                "2026-03-29T00:00:00Z 2026-03-29T01:00:00Z 2026-03-29T02:00:00Z");
    expect_next("0 9 * * mon-fri", be, "2026-03-27T12:00:00Z", /* Friday → Monday, now CEST */
                "2026-03-30T07:00:00Z 2026-03-31T07:00:00Z");
}

static void test_dst_southern_hemisphere(void **state)
{
    (void)state;
    /* Lord Howe: 2026-10-04 02:00 → 02:30 (+10:30 → +11); 2026-04-05 02:00 → 01:30 */
    const char *lh = "Australia/Lord_Howe";
    expect_next("15 2 * * *", lh, "2026-10-03T00:00:00Z", /* 02:30 +11, then 02:15 */
                "2026-10-03T15:30:00Z 2026-10-04T15:15:00Z");
    expect_next("45 1 * * *", lh, "2026-04-04T00:00:00Z", /* 01:45 +11, then +10:30 */
                "2026-04-04T14:45:00Z 2026-04-05T15:15:00Z");
    expect_next("45 1 * * *", lh, "2026-04-04T15:00:00Z", "2026-04-05T15:15:00Z");
    expect_next("0 * * * *", lh, "2026-10-03T13:00:00Z", /* 00:00, 01:00 +10:30, 03:00 +11 */
                "2026-10-03T13:30:00Z 2026-10-03T14:30:00Z 2026-10-03T16:00:00Z "
                "2026-10-03T17:00:00Z");

    /* Sydney: 2026-10-04 02:00 AEST → 03:00 AEDT; 2026-04-05 03:00 AEDT → 02:00 AEST */
    const char *syd = "Australia/Sydney";
    expect_next("30 2 * * *", syd, "2026-10-03T00:00:00Z",
                "2026-10-03T16:00:00Z 2026-10-04T15:30:00Z");
    expect_next("30 2 * * *", syd, "2026-04-04T00:00:00Z",
                "2026-04-04T15:30:00Z 2026-04-05T16:30:00Z");
    expect_next("0 * * * *", syd, "2026-04-04T14:30:00Z",
                "2026-04-04T15:00:00Z 2026-04-04T16:00:00Z 2026-04-04T17:00:00Z");
}

/* After 2037 tzdata has no transition table, only the POSIX rule. */
static void test_dst_rule_years(void **state)
{
    (void)state;
    expect_next("30 2 * * *", "America/New_York", "2045-03-11T12:00:00Z",
                "2045-03-12T07:00:00Z 2045-03-13T06:30:00Z");
    expect_next("30 1 * * *", "America/New_York", "2045-11-05T05:45:00Z", "2045-11-06T06:30:00Z");
    expect_next("0 * * * *", "America/New_York", "2045-11-05T04:30:00Z",
                "2045-11-05T05:00:00Z 2045-11-05T06:00:00Z 2045-11-05T07:00:00Z");
    expect_next("30 2 * * *", "Europe/Berlin", "2045-03-25T12:00:00Z",
                "2045-03-26T01:00:00Z 2045-03-27T00:30:00Z");
    expect_next("15 2 * * *", "Australia/Lord_Howe", "2045-09-30T00:00:00Z",
                "2045-09-30T15:30:00Z 2045-10-01T15:15:00Z");
}

static void test_fixed_offset_zone(void **state)
{
    (void)state;
    expect_next("0 9 * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z",
                "2026-01-01T03:30:00Z 2026-01-02T03:30:00Z");
    expect_next("0 0 1 1 *", "Pacific/Kiritimati", "2026-06-01T00:00:00Z", /* UTC+14 */
                "2026-12-31T10:00:00Z");
}

static int use_system_tzdata(void **state)
{
    (void)state;
    if (!getenv("TZDIR")) setenv("TZDIR", "/usr/share/zoneinfo", 1);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_star_and_strictly_after),
        cmocka_unit_test(test_minute_field),
        cmocka_unit_test(test_hour_field),
        cmocka_unit_test(test_day_of_month_field),
        cmocka_unit_test(test_month_field),
        cmocka_unit_test(test_day_of_week_field),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_macros),
        cmocka_unit_test(test_day_or_rule),
        cmocka_unit_test(test_matches),
        cmocka_unit_test(test_errors_name_the_field),
        cmocka_unit_test(test_leap_years),
        cmocka_unit_test(test_short_months),
        cmocka_unit_test(test_extreme_after),
        cmocka_unit_test(test_null_zone_is_utc),
        cmocka_unit_test(test_dst_new_york_spring),
        cmocka_unit_test(test_dst_new_york_fall),
        cmocka_unit_test(test_dst_whole_year),
        cmocka_unit_test(test_dst_berlin),
        cmocka_unit_test(test_dst_southern_hemisphere),
        cmocka_unit_test(test_dst_rule_years),
        cmocka_unit_test(test_fixed_offset_zone),
    };
    return cmocka_run_group_tests(tests, use_system_tzdata, NULL);
}
