/*
 * test_tz.c — src/tz.c: calendar arithmetic, TZif loading (real tzdata and
 * hand-built files: version 1, slim version 2, 64-bit section preferred,
 * corrupt ones), POSIX TZ rules (footer path past 2037, southern hemisphere,
 * 30-minute DST, version 3 extensions), local↔UTC conversion across both DST
 * transitions in several zones, zone-name checks, the zone cache, and which
 * names are one zone (IANA links from tzdata.zi, else symbolic and hard links).
 *
 * Real zones come from $TZDIR, else /usr/share/zoneinfo (tzdata must be
 * installed). Expected values were taken from the IANA rules, not from this code.
 */
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

#include "tz.h"

/* ------------------------------------------------------------------ helpers */

/* "2026-03-08T07:00:00Z" → seconds. */
static int64_t at(const char *iso)
{
    int y, mo, d, h, mi, s;
    assert_int_equal(sscanf(iso, "%d-%d-%dT%d:%d:%dZ", &y, &mo, &d, &h, &mi, &s), 6);
    return sl_days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + s;
}

static sl_tz *load(const char *name)
{
    char err[256] = "";
    sl_tz *tz = sl_tz_load(name, err, sizeof err);
    if (!tz) fail_msg("loading %s: %s", name, err);
    return tz;
}

/* "2026-03-08 03:00:00 EDT -14400 dst" (or "std"), for the instant `iso`. */
static void check_local(const sl_tz *tz, const char *iso, const char *want)
{
    struct tm tm;
    int off = 12345;
    const char *abbr = NULL;
    char got[96];
    assert_int_equal(sl_tz_to_local(tz, at(iso), &tm, &off, &abbr), 0);
    snprintf(got, sizeof got, "%04d-%02d-%02d %02d:%02d:%02d %s %d %s", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, abbr, off,
             tm.tm_isdst ? "dst" : "std");
    assert_string_equal(got, want);
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
    return tm;
}

/* ------------------------------------------------------------------ calendar */

static void test_civil_known_days(void **state)
{
    (void)state;
    assert_int_equal(sl_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(sl_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(sl_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(sl_days_from_civil(2024, 2, 29), 19782);
    assert_int_equal(sl_days_from_civil(1600, 1, 1), -135140);
    assert_int_equal(sl_days_from_civil(2400, 12, 31), 157419);
}

static void test_civil_round_trip(void **state)
{
    (void)state;
    int64_t prev_y = 0;
    int prev_m = 0, prev_d = 0;
    for (int64_t days = -800000; days <= 800000; days++) {
        int64_t y;
        int m, d;
        sl_civil_from_days(days, &y, &m, &d);
        assert_int_equal(sl_days_from_civil(y, m, d), days);
        assert_true(m >= 1 && m <= 12 && d >= 1 && d <= sl_days_in_month(y, m));
        if (days > -800000) /* consecutive days are consecutive dates */
            assert_true((y == prev_y && m == prev_m && d == prev_d + 1) ||
                        (y == prev_y && m == prev_m + 1 && d == 1) ||
                        (y == prev_y + 1 && m == 1 && d == 1 && prev_m == 12));
        prev_y = y, prev_m = m, prev_d = d;
    }
}

static void test_days_in_month(void **state)
{
    (void)state;
    assert_int_equal(sl_days_in_month(2024, 2), 29);
    assert_int_equal(sl_days_in_month(2026, 2), 28);
    assert_int_equal(sl_days_in_month(2000, 2), 29);
    assert_int_equal(sl_days_in_month(2100, 2), 28);
    assert_int_equal(sl_days_in_month(1900, 2), 28);
    assert_int_equal(sl_days_in_month(2026, 4), 30);
    assert_int_equal(sl_days_in_month(2026, 12), 31);
}

/* ------------------------------------------------------------------ UTC */

static void test_utc_is_built_in(void **state)
{
    (void)state;
    char err[256];
    const char *old = getenv("TZDIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("TZDIR", "/nonexistent/zoneinfo", 1);
    sl_tz *utc = sl_tz_load("UTC", err, sizeof err);
    sl_tz *etc = sl_tz_load("Etc/UTC", err, sizeof err);
    sl_tz *ny = sl_tz_load("America/New_York", err, sizeof err);
    if (saved)
        setenv("TZDIR", saved, 1);
    else
        unsetenv("TZDIR");
    free(saved);
    assert_non_null(utc);
    assert_non_null(etc);
    assert_null(ny);
    assert_non_null(strstr(err, "unknown time zone \"America/New_York\""));

    struct tm tm;
    int off = 1;
    const char *abbr = NULL;
    assert_int_equal(sl_tz_to_local(utc, 0, &tm, &off, &abbr), 0);
    assert_int_equal(tm.tm_year, 70);
    assert_int_equal(tm.tm_mon, 0);
    assert_int_equal(tm.tm_mday, 1);
    assert_int_equal(tm.tm_hour, 0);
    assert_int_equal(tm.tm_wday, 4); /* Thursday */
    assert_int_equal(tm.tm_yday, 0);
    assert_int_equal(tm.tm_isdst, 0);
    assert_int_equal(off, 0);
    assert_string_equal(abbr, "UTC");
    assert_string_equal(sl_tz_name(etc), "Etc/UTC");
    check_local(utc, "2026-12-31T23:59:59Z", "2026-12-31 23:59:59 UTC 0 std");
    check_local(etc, "1969-12-31T23:59:59Z", "1969-12-31 23:59:59 UTC 0 std");
    int64_t next;
    assert_int_equal(sl_tz_next_transition(utc, 0, &next), 0);
    sl_tz_free(utc);
    sl_tz_free(etc);
}

static void test_to_local_fields(void **state)
{
    (void)state;
    sl_tz *tz = load("America/New_York");
    struct tm tm;
    /* 2026-12-31 19:00 EST is a Thursday, day 364 of the year */
    assert_int_equal(sl_tz_to_local(tz, at("2027-01-01T00:00:00Z"), &tm, NULL, NULL), 0);
    assert_int_equal(tm.tm_year, 126);
    assert_int_equal(tm.tm_mon, 11);
    assert_int_equal(tm.tm_mday, 31);
    assert_int_equal(tm.tm_hour, 19);
    assert_int_equal(tm.tm_wday, 4);
    assert_int_equal(tm.tm_yday, 364);
    /* out of range */
    assert_int_equal(sl_tz_to_local(tz, INT64_MAX, &tm, NULL, NULL), -1);
    assert_int_equal(sl_tz_to_local(tz, -2000000000000000LL, &tm, NULL, NULL), -1);
    sl_tz_free(tz);
}

/* ------------------------------------------------------------------ real zones */

static void test_new_york(void **state)
{
    (void)state;
    sl_tz *tz = load("America/New_York");
    assert_string_equal(sl_tz_name(tz), "America/New_York");
    check_local(tz, "2026-03-08T06:59:59Z", "2026-03-08 01:59:59 EST -18000 std");
    check_local(tz, "2026-03-08T07:00:00Z", "2026-03-08 03:00:00 EDT -14400 dst");
    check_local(tz, "2026-11-01T05:59:59Z", "2026-11-01 01:59:59 EDT -14400 dst");
    check_local(tz, "2026-11-01T06:00:00Z", "2026-11-01 01:00:00 EST -18000 std");
    /* before 1883-11-18 17:00Z: local mean time, -4:56:02 */
    check_local(tz, "1883-11-18T16:59:59Z", "1883-11-18 12:03:57 LMT -17762 std");
    check_local(tz, "1883-11-18T17:00:00Z", "1883-11-18 12:00:00 EST -18000 std");
    assert_int_equal(sl_tz_offset(tz, at("2026-07-01T00:00:00Z")), -14400);
    sl_tz_free(tz);
}

static void test_berlin(void **state)
{
    (void)state;
    sl_tz *tz = load("Europe/Berlin");
    check_local(tz, "2026-03-29T00:59:59Z", "2026-03-29 01:59:59 CET 3600 std");
    check_local(tz, "2026-03-29T01:00:00Z", "2026-03-29 03:00:00 CEST 7200 dst");
    check_local(tz, "2026-10-25T00:59:59Z", "2026-10-25 02:59:59 CEST 7200 dst");
    check_local(tz, "2026-10-25T01:00:00Z", "2026-10-25 02:00:00 CET 3600 std");
    sl_tz_free(tz);
}

static void test_southern_hemisphere(void **state)
{
    (void)state;
    sl_tz *lh = load("Australia/Lord_Howe"); /* +10:30 standard, +11 summer */
    check_local(lh, "2026-10-03T15:29:59Z", "2026-10-04 01:59:59 +1030 37800 std");
    check_local(lh, "2026-10-03T15:30:00Z", "2026-10-04 02:30:00 +11 39600 dst");
    check_local(lh, "2026-04-04T14:59:59Z", "2026-04-05 01:59:59 +11 39600 dst");
    check_local(lh, "2026-04-04T15:00:00Z", "2026-04-05 01:30:00 +1030 37800 std");
    sl_tz_free(lh);
    sl_tz *syd = load("Australia/Sydney");
    check_local(syd, "2026-10-03T15:59:59Z", "2026-10-04 01:59:59 AEST 36000 std");
    check_local(syd, "2026-10-03T16:00:00Z", "2026-10-04 03:00:00 AEDT 39600 dst");
    check_local(syd, "2026-01-15T00:00:00Z", "2026-01-15 11:00:00 AEDT 39600 dst");
    sl_tz_free(syd);
}

/* 2045 lies after the last transition tzdata writes out (2037): the footer rule. */
static void test_footer_rule_2045(void **state)
{
    (void)state;
    sl_tz *ny = load("America/New_York");
    check_local(ny, "2045-03-12T06:59:59Z", "2045-03-12 01:59:59 EST -18000 std");
    check_local(ny, "2045-03-12T07:00:00Z", "2045-03-12 03:00:00 EDT -14400 dst");
    check_local(ny, "2045-11-05T05:59:59Z", "2045-11-05 01:59:59 EDT -14400 dst");
    check_local(ny, "2045-11-05T06:00:00Z", "2045-11-05 01:00:00 EST -18000 std");
    int64_t when;
    assert_int_equal(sl_tz_next_transition(ny, at("2045-01-01T00:00:00Z"), &when), 1);
    assert_int_equal(when, at("2045-03-12T07:00:00Z"));
    assert_int_equal(sl_tz_next_transition(ny, when, &when), 1);
    assert_int_equal(when, at("2045-11-05T06:00:00Z"));
    sl_tz_free(ny);

    sl_tz *be = load("Europe/Berlin"); /* CET-1CEST,M3.5.0,M10.5.0/3 */
    check_local(be, "2045-03-26T00:59:59Z", "2045-03-26 01:59:59 CET 3600 std");
    check_local(be, "2045-03-26T01:00:00Z", "2045-03-26 03:00:00 CEST 7200 dst");
    check_local(be, "2045-10-29T00:59:59Z", "2045-10-29 02:59:59 CEST 7200 dst");
    check_local(be, "2045-10-29T01:00:00Z", "2045-10-29 02:00:00 CET 3600 std");
    sl_tz_free(be);

    sl_tz *lh = load("Australia/Lord_Howe"); /* <+1030>-10:30<+11>-11,M10.1.0,M4.1.0 */
    check_local(lh, "2045-04-01T14:59:59Z", "2045-04-02 01:59:59 +11 39600 dst");
    check_local(lh, "2045-04-01T15:00:00Z", "2045-04-02 01:30:00 +1030 37800 std");
    check_local(lh, "2045-09-30T15:29:59Z", "2045-10-01 01:59:59 +1030 37800 std");
    check_local(lh, "2045-09-30T15:30:00Z", "2045-10-01 02:30:00 +11 39600 dst");
    sl_tz_free(lh);
}

static void test_next_transition(void **state)
{
    (void)state;
    sl_tz *tz = load("America/New_York");
    int64_t when;
    assert_int_equal(sl_tz_next_transition(tz, at("2026-01-01T00:00:00Z"), &when), 1);
    assert_int_equal(when, at("2026-03-08T07:00:00Z"));
    /* strictly after: from the transition itself, the next one */
    assert_int_equal(sl_tz_next_transition(tz, when, &when), 1);
    assert_int_equal(when, at("2026-11-01T06:00:00Z"));
    assert_int_equal(sl_tz_next_transition(tz, when - 1, &when), 1);
    assert_int_equal(when, at("2026-11-01T06:00:00Z"));
    sl_tz_free(tz);

    sl_tz *kol = load("Asia/Kolkata"); /* no DST since 1945 */
    assert_int_equal(sl_tz_next_transition(kol, at("2026-01-01T00:00:00Z"), &when), 0);
    check_local(kol, "2026-01-01T00:00:00Z", "2026-01-01 05:30:00 IST 19800 std");
    sl_tz_free(kol);
}

/* The file's table (through 2037) and its footer rule agree for every hour of 2030. */
static void test_table_matches_footer(void **state)
{
    (void)state;
    char err[256];
    sl_tz *file = load("America/New_York");
    sl_tz *rule = sl_tz_from_posix("EST5EDT,M3.2.0,M11.1.0", err, sizeof err);
    assert_non_null(rule);
    int changes = 0;
    for (int64_t t = at("2030-01-01T00:00:00Z"); t < at("2031-01-01T00:00:00Z"); t += 1800) {
        int a, b;
        const char *aa, *ba;
        sl_tz_to_local(file, t, NULL, &a, &aa);
        sl_tz_to_local(rule, t, NULL, &b, &ba);
        assert_int_equal(a, b);
        assert_string_equal(aa, ba);
        changes += sl_tz_offset(file, t) != sl_tz_offset(file, t - 1800);
    }
    assert_int_equal(changes, 2);
    sl_tz_free(file);
    sl_tz_free(rule);
}

/* ------------------------------------------------------------------ local → UTC */

static void expect_from_local(const sl_tz *tz, struct tm w, int n, const char *a, const char *b)
{
    int64_t out[2] = {0, 0};
    assert_int_equal(sl_tz_from_local(tz, &w, out), n);
    assert_int_equal(out[0], at(a));
    if (n == 2) assert_int_equal(out[1], at(b));
}

static void test_from_local_new_york(void **state)
{
    (void)state;
    sl_tz *tz = load("America/New_York");
    expect_from_local(tz, wall(2026, 7, 1, 12, 0), 1, "2026-07-01T16:00:00Z", NULL);
    expect_from_local(tz, wall(2026, 1, 15, 12, 0), 1, "2026-01-15T17:00:00Z", NULL);
    /* spring forward: 02:00-02:59 does not exist; the gap ends at 07:00Z */
    expect_from_local(tz, wall(2026, 3, 8, 2, 30), 0, "2026-03-08T07:00:00Z", NULL);
    expect_from_local(tz, wall(2026, 3, 8, 2, 0), 0, "2026-03-08T07:00:00Z", NULL);
    expect_from_local(tz, wall(2026, 3, 8, 1, 59), 1, "2026-03-08T06:59:00Z", NULL);
    expect_from_local(tz, wall(2026, 3, 8, 3, 0), 1, "2026-03-08T07:00:00Z", NULL);
    /* fall back: 01:00-01:59 happens twice, EDT first */
    expect_from_local(tz, wall(2026, 11, 1, 1, 30), 2, "2026-11-01T05:30:00Z",
                      "2026-11-01T06:30:00Z");
    expect_from_local(tz, wall(2026, 11, 1, 1, 0), 2, "2026-11-01T05:00:00Z",
                      "2026-11-01T06:00:00Z");
    expect_from_local(tz, wall(2026, 11, 1, 2, 0), 1, "2026-11-01T07:00:00Z", NULL);
    expect_from_local(tz, wall(2026, 11, 1, 0, 59), 1, "2026-11-01T04:59:00Z", NULL);
    /* the footer years */
    expect_from_local(tz, wall(2045, 3, 12, 2, 30), 0, "2045-03-12T07:00:00Z", NULL);
    expect_from_local(tz, wall(2045, 11, 5, 1, 30), 2, "2045-11-05T05:30:00Z",
                      "2045-11-05T06:30:00Z");
    sl_tz_free(tz);
}

static void test_from_local_berlin_lord_howe(void **state)
{
    (void)state;
    sl_tz *be = load("Europe/Berlin");
    expect_from_local(be, wall(2026, 3, 29, 2, 30), 0, "2026-03-29T01:00:00Z", NULL);
    expect_from_local(be, wall(2026, 10, 25, 2, 30), 2, "2026-10-25T00:30:00Z",
                      "2026-10-25T01:30:00Z");
    expect_from_local(be, wall(2026, 10, 25, 3, 0), 1, "2026-10-25T02:00:00Z", NULL);
    sl_tz_free(be);

    sl_tz *lh = load("Australia/Lord_Howe");
    /* 02:00-02:29 skipped, 01:30-01:59 repeated: a 30-minute shift */
    expect_from_local(lh, wall(2026, 10, 4, 2, 15), 0, "2026-10-03T15:30:00Z", NULL);
    expect_from_local(lh, wall(2026, 10, 4, 2, 30), 1, "2026-10-03T15:30:00Z", NULL);
    expect_from_local(lh, wall(2026, 10, 4, 1, 59), 1, "2026-10-03T15:29:00Z", NULL);
    expect_from_local(lh, wall(2026, 4, 5, 1, 45), 2, "2026-04-04T14:45:00Z",
                      "2026-04-04T15:15:00Z");
    expect_from_local(lh, wall(2026, 4, 5, 1, 15), 1, "2026-04-04T14:15:00Z", NULL);
    expect_from_local(lh, wall(2026, 4, 5, 2, 0), 1, "2026-04-04T15:30:00Z", NULL);
    sl_tz_free(lh);
}

static void test_from_local_normalizes(void **state)
{
    (void)state;
    sl_tz *utc = load("UTC");
    expect_from_local(utc, wall(2026, 13, 1, 0, 0), 1, "2027-01-01T00:00:00Z", NULL);
    expect_from_local(utc, wall(2026, 3, 0, 0, 0), 1, "2026-02-28T00:00:00Z", NULL);
    expect_from_local(utc, wall(2024, 2, 29, 24, 90), 1, "2024-03-01T01:30:00Z", NULL);
    struct tm w = wall(2026, 1, 1, 0, 0);
    w.tm_sec = -1;
    expect_from_local(utc, w, 1, "2025-12-31T23:59:59Z", NULL);
    w = wall(2026, 1, 1, 0, 0);
    w.tm_year = 2000000000;
    int64_t out[2];
    assert_int_equal(sl_tz_from_local(utc, &w, out), -1);
    sl_tz_free(utc);
}

/* Every wall time maps back to the instant it came from (or its first pass). */
static void test_round_trip_every_quarter_hour(void **state)
{
    (void)state;
    const char *zones[] = {"America/New_York", "Europe/Berlin", "Australia/Lord_Howe",
                           "Asia/Kolkata"};
    for (size_t z = 0; z < sizeof zones / sizeof zones[0]; z++) {
        sl_tz *tz = load(zones[z]);
        int ambiguous = 0;
        for (int64_t t = at("2026-01-01T00:00:00Z"); t < at("2027-01-01T00:00:00Z"); t += 900) {
            int off;
            int64_t out[2];
            sl_tz_to_local(tz, t, NULL, &off, NULL);
            int n = sl_tz_from_local_seconds(tz, t + off, out);
            assert_true(n == 1 || n == 2);
            assert_true(out[0] == t || (n == 2 && out[1] == t));
            ambiguous += n == 2;
        }
        /* the repeated hour (half hour on Lord Howe) seen twice, in quarter hours */
        int want = strcmp(zones[z], "Asia/Kolkata") == 0          ? 0
                   : strcmp(zones[z], "Australia/Lord_Howe") == 0 ? 4
                                                                  : 8;
        assert_int_equal(ambiguous, want);
        sl_tz_free(tz);
    }
}

/* ------------------------------------------------------------------ POSIX TZ strings */

static sl_tz *posix(const char *spec)
{
    char err[256] = "";
    sl_tz *tz = sl_tz_from_posix(spec, err, sizeof err);
    if (!tz) fail_msg("%s: %s", spec, err);
    return tz;
}

static void test_posix_rules(void **state)
{
    (void)state;
    sl_tz *tz = posix("EST5EDT,M3.2.0,M11.1.0");
    check_local(tz, "2026-03-08T06:59:59Z", "2026-03-08 01:59:59 EST -18000 std");
    check_local(tz, "2026-03-08T07:00:00Z", "2026-03-08 03:00:00 EDT -14400 dst");
    check_local(tz, "2026-11-01T06:00:00Z", "2026-11-01 01:00:00 EST -18000 std");
    sl_tz_free(tz);

    /* no rule given: the US rule */
    tz = posix("EST5EDT");
    check_local(tz, "2026-03-08T07:00:00Z", "2026-03-08 03:00:00 EDT -14400 dst");
    sl_tz_free(tz);

    tz = posix("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0");
    check_local(tz, "2026-10-03T15:30:00Z", "2026-10-04 02:30:00 +11 39600 dst");
    check_local(tz, "2026-04-04T15:00:00Z", "2026-04-05 01:30:00 +1030 37800 std");
    sl_tz_free(tz);

    /* version 3: negative transition times (America/Nuuk) */
    tz = posix("<-02>2<-01>,M3.5.0/-1,M10.5.0/0");
    check_local(tz, "2026-03-29T00:59:59Z", "2026-03-28 22:59:59 -02 -7200 std");
    check_local(tz, "2026-03-29T01:00:00Z", "2026-03-29 00:00:00 -01 -3600 dst");
    check_local(tz, "2026-10-25T00:59:59Z", "2026-10-24 23:59:59 -01 -3600 dst");
    check_local(tz, "2026-10-25T01:00:00Z", "2026-10-24 23:00:00 -02 -7200 std");
    sl_tz_free(tz);

    /* version 3: DST all year, the end running into next year's start */
    tz = posix("EST5EDT4,0/0,J365/25");
    check_local(tz, "2026-01-01T04:30:00Z", "2026-01-01 00:30:00 EDT -14400 dst");
    check_local(tz, "2026-07-01T00:00:00Z", "2026-06-30 20:00:00 EDT -14400 dst");
    check_local(tz, "2027-01-01T05:30:00Z", "2027-01-01 01:30:00 EDT -14400 dst");
    sl_tz_free(tz);

    /* Jn never counts Feb 29, n (zero-based) does: both on a leap year */
    tz = posix("AAA3BBB,J60/0,300");
    check_local(tz, "2028-03-01T02:59:59Z", "2028-02-29 23:59:59 AAA -10800 std");
    check_local(tz, "2028-03-01T03:00:00Z", "2028-03-01 01:00:00 BBB -7200 dst");
    sl_tz_free(tz);
    tz = posix("AAA3BBB,59/0,300");
    check_local(tz, "2028-02-29T02:59:59Z", "2028-02-28 23:59:59 AAA -10800 std");
    check_local(tz, "2028-02-29T03:00:00Z", "2028-02-29 01:00:00 BBB -7200 dst");
    check_local(tz, "2027-03-01T03:00:00Z", "2027-03-01 01:00:00 BBB -7200 dst");
    sl_tz_free(tz);

    tz = posix("JST-9");
    check_local(tz, "2026-06-01T00:00:00Z", "2026-06-01 09:00:00 JST 32400 std");
    int64_t when;
    assert_int_equal(sl_tz_next_transition(tz, 0, &when), 0);
    sl_tz_free(tz);

    /* M.5 is the last such weekday even in a four-week month */
    tz = posix("XXX0YYY,M2.5.0/0,M10.5.0/0");
    check_local(tz, "2026-02-22T00:00:00Z", "2026-02-22 01:00:00 YYY 3600 dst");
    check_local(tz, "2026-02-21T23:59:59Z", "2026-02-21 23:59:59 XXX 0 std");
    sl_tz_free(tz);
}

static void test_posix_invalid(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "E5",
                         "EST",
                         "EST+",
                         "EST25",
                         "<EST5",
                         "<E>5",
                         "EST5EDT,M3.2.0",
                         "EST5EDT,M13.1.0,M11.1.0",
                         "EST5EDT,M3.6.0,M11.1.0",
                         "EST5EDT,M3.2.7,M11.1.0",
                         "EST5EDT,J0,J365",
                         "EST5EDT,366,0",
                         "EST5EDT,M3.2.0/168,M11.1.0",
                         "EST5EDT,M3.2.0,M11.1.0x",
                         "EST5:60"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[128] = "";
        sl_tz *tz = sl_tz_from_posix(bad[i], err, sizeof err);
        if (tz) fail_msg("accepted \"%s\"", bad[i]);
        assert_non_null(strstr(err, "invalid POSIX TZ string"));
    }
}

/* ------------------------------------------------------------------ names */

static void test_zone_names_checked(void **state)
{
    (void)state;
    const char *bad[] = {"../etc/passwd",
                         "/etc/localtime",
                         "America/../Europe/Berlin",
                         "",
                         "America/",
                         "America//New_York",
                         "./UTC",
                         "Europe/./Berlin",
                         "Europe/Berlin\n",
                         "a b",
                         "Europe/Berlin/..",
                         "..",
                         "~root",
                         "Europe\\Berlin"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        sl_tz *tz = sl_tz_load(bad[i], err, sizeof err);
        if (tz) fail_msg("accepted \"%s\"", bad[i]);
        assert_non_null(strstr(err, "invalid time zone name"));
    }
    char err[256] = "";
    assert_null(sl_tz_load(NULL, err, sizeof err));
    assert_null(sl_tz_load("Mars/Olympus_Mons", err, sizeof err));
    assert_non_null(strstr(err, "unknown time zone \"Mars/Olympus_Mons\""));
    assert_null(strstr(err, "did you mean"));
    /* a name right but for case: the zone it most likely means */
    assert_null(sl_tz_load("europe/berlin", err, sizeof err));
    assert_non_null(strstr(err, "unknown time zone \"europe/berlin\""));
    assert_non_null(strstr(err, "did you mean \"Europe/Berlin\"? (zone names are case-sensitive)"));
    assert_null(sl_tz_load("AMERICA/new_YORK", err, sizeof err));
    assert_non_null(strstr(err, "did you mean \"America/New_York\"?"));
    assert_null(sl_tz_load("utc", err, sizeof err));
    assert_non_null(strstr(err, "did you mean \"UTC\"?"));
    assert_null(sl_tz_load("europe", err, sizeof err)); /* a region only: no zone to suggest */
    assert_null(strstr(err, "did you mean"));
    assert_null(sl_tz_load("America", err, sizeof err)); /* a directory */
    assert_non_null(strstr(err, "\"America\" is not a time zone but a region directory"));
    assert_non_null(strstr(err, "Region/City"));
    /* a tiny buffer is not overrun, and a NULL one is allowed */
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    assert_null(sl_tz_load("../x", tiny, 6));
    assert_int_equal(strlen(tiny), 5);
    assert_int_equal(tiny[6], 'x');
    assert_null(sl_tz_load("../x", NULL, 0));
}

/* ------------------------------------------------------------------ hand-built TZif files */

typedef struct {
    unsigned char b[2048];
    size_t n;
} tzif_buf;

static void put8(tzif_buf *w, unsigned v)
{
    assert_true(w->n < sizeof w->b);
    w->b[w->n++] = (unsigned char)v;
}

static void put32(tzif_buf *w, int64_t v)
{
    for (int i = 3; i >= 0; i--)
        put8(w, (unsigned)((uint64_t)v >> (i * 8)) & 0xff);
}

static void put64(tzif_buf *w, int64_t v)
{
    put32(w, (int64_t)((uint64_t)v >> 32));
    put32(w, v);
}

static void put_bytes(tzif_buf *w, const void *p, size_t n)
{
    assert_true(w->n + n <= sizeof w->b);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

/* counts: isut, isstd, leap, time, type, char */
static void put_header(tzif_buf *w, char version, const uint32_t c[6])
{
    put_bytes(w, "TZif", 4);
    put8(w, (unsigned char)version);
    for (int i = 0; i < 15; i++)
        put8(w, 0);
    for (int i = 0; i < 6; i++)
        put32(w, c[i]);
}

/* The minimal version-1 block that "slim" files carry. */
static void put_empty_v1(tzif_buf *w, char version)
{
    const uint32_t c[6] = {0, 0, 0, 0, 1, 1};
    put_header(w, version, c);
    put32(w, 0);
    put8(w, 0);
    put8(w, 0);
    put8(w, 0);
}

static char tmpdir[256];

static void write_zone(const char *name, const tzif_buf *w)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(w->b, 1, w->n, f), w->n);
    assert_int_equal(fclose(f), 0);
}

static int make_tmpdir(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/sluice-tz-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    const char *names[] = {"Slim",     "V1",   "Prefer64",  "Truncated", "Text",
                           "BadIndex", "Leap", "BadFooter", "Unsorted"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    return rmdir(tmpdir);
}

static sl_tz *load_tmp(const char *name, char *err, size_t errlen)
{
    return sl_tz_load_dir(tmpdir, name, err, errlen);
}

/* A slim version-2 file: one transition in 2007, then the footer rule. */
static void test_slim_file(void **state)
{
    (void)state;
    tzif_buf w = {.n = 0};
    put_empty_v1(&w, '2');
    const uint32_t c[6] = {0, 0, 0, 1, 2, 8};
    put_header(&w, '2', c);
    put64(&w, at("2007-11-04T06:00:00Z"));
    put8(&w, 1);
    put32(&w, -14400), put8(&w, 1), put8(&w, 0); /* type 0: EDT */
    put32(&w, -18000), put8(&w, 0), put8(&w, 4); /* type 1: EST */
    put_bytes(&w, "EDT\0EST\0", 8);
    put_bytes(&w, "\nEST5EDT,M3.2.0,M11.1.0\n", 24);
    write_zone("Slim", &w);

    char err[256] = "";
    sl_tz *tz = load_tmp("Slim", err, sizeof err);
    if (!tz) fail_msg("%s", err);
    check_local(tz, "2007-06-01T00:00:00Z", "2007-05-31 20:00:00 EDT -14400 dst"); /* type 0 */
    check_local(tz, "2007-11-04T05:59:59Z", "2007-11-04 01:59:59 EDT -14400 dst");
    check_local(tz, "2007-11-04T06:00:00Z", "2007-11-04 01:00:00 EST -18000 std");
    check_local(tz, "2008-03-09T06:59:59Z", "2008-03-09 01:59:59 EST -18000 std");
    check_local(tz, "2008-03-09T07:00:00Z", "2008-03-09 03:00:00 EDT -14400 dst");
    check_local(tz, "2026-11-01T06:00:00Z", "2026-11-01 01:00:00 EST -18000 std");
    int64_t when;
    assert_int_equal(sl_tz_next_transition(tz, at("2007-01-01T00:00:00Z"), &when), 1);
    assert_int_equal(when, at("2007-11-04T06:00:00Z"));
    assert_int_equal(sl_tz_next_transition(tz, when, &when), 1);
    assert_int_equal(when, at("2008-03-09T07:00:00Z"));
    sl_tz_free(tz);

    /* through $TZDIR as well */
    const char *old = getenv("TZDIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("TZDIR", tmpdir, 1);
    tz = sl_tz_load("Slim", err, sizeof err);
    sl_tz *missing = sl_tz_load("America/New_York", err, sizeof err);
    if (saved)
        setenv("TZDIR", saved, 1);
    else
        unsetenv("TZDIR");
    free(saved);
    assert_non_null(tz);
    assert_null(missing);
    check_local(tz, "2026-03-08T07:00:00Z", "2026-03-08 03:00:00 EDT -14400 dst");
    sl_tz_free(tz);
}

/* A version-1 file: 32-bit times, no footer; the last type lasts for ever. */
static void test_v1_file(void **state)
{
    (void)state;
    tzif_buf w = {.n = 0};
    const uint32_t c[6] = {0, 0, 0, 2, 2, 8};
    put_header(&w, 0, c);
    put32(&w, 1000000000);
    put32(&w, 1100000000);
    put8(&w, 1);
    put8(&w, 0);
    put32(&w, 3600), put8(&w, 0), put8(&w, 0);
    put32(&w, 7200), put8(&w, 1), put8(&w, 4);
    put_bytes(&w, "AAA\0BBB\0", 8);
    write_zone("V1", &w);

    char err[256] = "";
    sl_tz *tz = load_tmp("V1", err, sizeof err);
    if (!tz) fail_msg("%s", err);
    assert_int_equal(sl_tz_offset(tz, 0), 3600);
    assert_int_equal(sl_tz_offset(tz, 999999999), 3600);
    assert_int_equal(sl_tz_offset(tz, 1000000000), 7200);
    assert_int_equal(sl_tz_offset(tz, 1099999999), 7200);
    assert_int_equal(sl_tz_offset(tz, 1100000000), 3600);
    assert_int_equal(sl_tz_offset(tz, 4000000000LL), 3600);
    const char *abbr;
    sl_tz_to_local(tz, 1000000000, NULL, NULL, &abbr);
    assert_string_equal(abbr, "BBB");
    int64_t when;
    assert_int_equal(sl_tz_next_transition(tz, 0, &when), 1);
    assert_int_equal(when, 1000000000);
    assert_int_equal(sl_tz_next_transition(tz, 1100000000, &when), 0);
    sl_tz_free(tz);
}

/* A version-2 reader must use the 64-bit section, not the version-1 one. */
static void test_prefers_64_bit_section(void **state)
{
    (void)state;
    tzif_buf w = {.n = 0};
    const uint32_t c1[6] = {0, 0, 0, 0, 1, 4};
    put_header(&w, '2', c1);
    put32(&w, 3600), put8(&w, 0), put8(&w, 0);
    put_bytes(&w, "ONE\0", 4);
    put_header(&w, '2', c1);
    put32(&w, 7200), put8(&w, 0), put8(&w, 0);
    put_bytes(&w, "TWO\0", 4);
    put_bytes(&w, "\nTWO-2\n", 7);
    write_zone("Prefer64", &w);

    char err[256] = "";
    sl_tz *tz = load_tmp("Prefer64", err, sizeof err);
    if (!tz) fail_msg("%s", err);
    check_local(tz, "2026-01-01T00:00:00Z", "2026-01-01 02:00:00 TWO 7200 std");
    sl_tz_free(tz);
}

static void expect_load_error(const char *name, const char *want)
{
    char err[256] = "";
    sl_tz *tz = load_tmp(name, err, sizeof err);
    if (tz) fail_msg("%s loaded", name);
    if (!strstr(err, want)) fail_msg("%s: got \"%s\", want \"%s\"", name, err, want);
}

static void test_corrupt_files(void **state)
{
    (void)state;
    tzif_buf w = {.n = 0};
    put_bytes(&w, "Europe/Berlin\n", 14);
    write_zone("Text", &w);
    expect_load_error("Text", "not a TZif file");

    const uint32_t c[6] = {0, 0, 0, 2, 1, 4};
    w.n = 0;
    put_empty_v1(&w, '2');
    put_header(&w, '2', c);
    put64(&w, 0);
    w.n -= 3; /* cut short */
    write_zone("Truncated", &w);
    expect_load_error("Truncated", "truncated");

    w.n = 0;
    put_empty_v1(&w, '2');
    put_header(&w, '2', c);
    put64(&w, 0), put64(&w, 100);
    put8(&w, 0), put8(&w, 3); /* type 3 of 1 */
    put32(&w, 0), put8(&w, 0), put8(&w, 0);
    put_bytes(&w, "UTC\0\nUTC0\n", 10);
    write_zone("BadIndex", &w);
    expect_load_error("BadIndex", "corrupt TZif transitions");

    w.n = 0;
    put_empty_v1(&w, '2');
    put_header(&w, '2', c);
    put64(&w, 100), put64(&w, 0); /* not ascending */
    put8(&w, 0), put8(&w, 0);
    put32(&w, 0), put8(&w, 0), put8(&w, 0);
    put_bytes(&w, "UTC\0\nUTC0\n", 10);
    write_zone("Unsorted", &w);
    expect_load_error("Unsorted", "corrupt TZif transitions");

    const uint32_t cl[6] = {0, 0, 1, 0, 1, 4};
    w.n = 0;
    put_empty_v1(&w, '2');
    put_header(&w, '2', cl);
    put32(&w, 0), put8(&w, 0), put8(&w, 0);
    put_bytes(&w, "UTC\0", 4);
    put64(&w, 78796800), put32(&w, 1);
    put_bytes(&w, "\nUTC0\n", 6);
    write_zone("Leap", &w);
    expect_load_error("Leap", "leap seconds");

    const uint32_t c0[6] = {0, 0, 0, 0, 1, 4};
    w.n = 0;
    put_empty_v1(&w, '2');
    put_header(&w, '2', c0);
    put32(&w, 0), put8(&w, 0), put8(&w, 0);
    put_bytes(&w, "UTC\0\nnot a rule\n", 16);
    write_zone("BadFooter", &w);
    expect_load_error("BadFooter", "unsupported TZ rule");
}

/* ------------------------------------------------------------------ cache */

static void test_cache(void **state)
{
    (void)state;
    char err[256] = "";
    sl_tz_cache *cache = sl_tz_cache_new();
    assert_non_null(cache);
    const sl_tz *a = sl_tz_cache_get(cache, "Europe/Berlin", err, sizeof err);
    const sl_tz *b = sl_tz_cache_get(cache, "America/New_York", err, sizeof err);
    const sl_tz *c = sl_tz_cache_get(cache, "Europe/Berlin", err, sizeof err);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_equal(a, c);
    assert_ptr_not_equal(a, b);
    assert_string_equal(sl_tz_name(b), "America/New_York");
    assert_null(sl_tz_cache_get(cache, "No/Such_Zone", err, sizeof err));
    assert_non_null(strstr(err, "No/Such_Zone"));
    /* more zones than the first allocation holds */
    const char *more[] = {"UTC",
                          "Asia/Tokyo",
                          "Asia/Kolkata",
                          "Europe/London",
                          "Europe/Paris",
                          "Australia/Sydney",
                          "America/Chicago",
                          "Africa/Cairo",
                          "Australia/Lord_Howe"};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
        assert_non_null(sl_tz_cache_get(cache, more[i], err, sizeof err));
    assert_ptr_equal(sl_tz_cache_get(cache, "Europe/Berlin", err, sizeof err), a);
    assert_int_equal(sl_tz_offset(a, at("2026-07-01T00:00:00Z")), 7200);
    sl_tz_cache_free(cache);
    sl_tz_cache_free(NULL);
    sl_tz_free(NULL);
}

/* ------------------------------------------------------------------ links */

/* sl_tz_same_zone(dir, name) joined with spaces: "America/New_York US/Eastern". */
static void expect_same_zone(const char *dir, const char *name, const char *want)
{
    char **names, err[256] = "", got[1024] = "";
    size_t n;
    assert_int_equal(sl_tz_same_zone(dir, name, &names, &n, err, sizeof err), 0);
    for (size_t i = 0; i < n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? " " : "", names[i]);
    sl_tz_names_free(names, n);
    assert_string_equal(got, want);
}

/* 1 when name is one of the names of zone's zone in the system's tzdata. */
static int same_zone(const char *zone, const char *name)
{
    char **names, err[256] = "";
    size_t n;
    int found = 0;
    assert_int_equal(sl_tz_same_zone(NULL, zone, &names, &n, err, sizeof err), 0);
    for (size_t i = 0; i < n; i++)
        found |= strcmp(names[i], name) == 0;
    sl_tz_names_free(names, n);
    return found;
}

/* The system's tzdata: the names of UTC are links to one zone; Etc/GMT is a
 * zone of its own (its abbreviation is GMT), not a name of UTC's. */
static void test_same_zone_system(void **state)
{
    (void)state;
    const char *utc[] = {"UTC", "Etc/UTC", "Zulu", "Universal", "Etc/Universal", "Etc/Zulu"};
    for (size_t i = 0; i < sizeof utc / sizeof utc[0]; i++)
        for (size_t j = 0; j < sizeof utc / sizeof utc[0]; j++)
            if (!same_zone(utc[i], utc[j])) fail_msg("%s is not a name of %s", utc[j], utc[i]);
    assert_true(same_zone("US/Eastern", "America/New_York"));
    assert_true(same_zone("America/New_York", "US/Eastern"));
    assert_false(same_zone("UTC", "Etc/GMT"));
    assert_false(same_zone("Etc/GMT", "UTC"));
    assert_true(same_zone("Etc/GMT", "GMT"));
    assert_false(same_zone("America/New_York", "America/Chicago"));
    assert_false(same_zone("America/New_York", "America/Toronto"));
    char **names, err[256] = "";
    size_t n = 7;
    assert_int_equal(sl_tz_same_zone(NULL, "../etc/passwd", &names, &n, err, sizeof err), -1);
    assert_null(names);
    assert_int_equal(n, 0);
    assert_string_equal(err, "invalid time zone name \"../etc/passwd\"");
}

static void put_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* A directory of its own: with tzdata.zi its links decide — a link to a link is
 * followed, and two zones whose files are alike byte for byte stay two; without
 * it, symbolic and hard links are one zone, a copy is not, and "localtime" (the
 * machine's setting) is never a name. */
static void test_same_zone_links(void **state)
{
    (void)state;
    char dir[300], path[400], to[400];
    snprintf(dir, sizeof dir, "%s/links", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/Area", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    put_file(dir, "Area/Zone", "TZif zone");
    put_file(dir, "Area/Twin", "TZif zone"); /* a zone of its own, alike */
    snprintf(path, sizeof path, "%s/Area/Sym", dir);
    assert_int_equal(symlink("Zone", path), 0);
    snprintf(to, sizeof to, "%s/Area/Zone", dir);
    snprintf(path, sizeof path, "%s/Hard", dir);
    assert_int_equal(link(to, path), 0);
    snprintf(path, sizeof path, "%s/localtime", dir);
    assert_int_equal(symlink("Area/Zone", path), 0);
    snprintf(path, sizeof path, "%s/posix", dir); /* a loop the walk must not enter */
    assert_int_equal(symlink(".", path), 0);

    /* without tzdata.zi: the files */
    expect_same_zone(dir, "Area/Zone", "Area/Sym Area/Zone Hard");
    expect_same_zone(dir, "Hard", "Area/Sym Area/Zone Hard");
    expect_same_zone(dir, "Area/Twin", "Area/Twin");
    expect_same_zone(dir, "Area/Nowhere", "Area/Nowhere");
    expect_same_zone(dir, "UTC", "Etc/UTC UTC"); /* built in */

    /* with it: its links, whatever the files are */
    put_file(dir, "tzdata.zi",
             "# version test\nZ Area/Zone 1 - ZON\nZ Area/Twin 1 - ZON\nL Area/Zone Area/Sym\n"
             "L Area/Sym Old/Chain\nR Lx 2000 o - Ap 1 0 1 -\nL Etc/UTC Zulu\nZ Etc/UTC 0 - UTC\n"
             "L Loop/A Loop/B\nL Loop/B Loop/A\n");
    expect_same_zone(dir, "Area/Zone", "Area/Sym Area/Zone Old/Chain");
    expect_same_zone(dir, "Old/Chain", "Area/Sym Area/Zone Old/Chain");
    expect_same_zone(dir, "Hard", "Hard"); /* not a link the database has */
    expect_same_zone(dir, "Area/Twin", "Area/Twin");
    expect_same_zone(dir, "UTC", "Etc/UTC UTC Zulu");
    expect_same_zone(dir, "Zulu", "Etc/UTC UTC Zulu");
    expect_same_zone(dir, "Loop/A", "Loop/A"); /* a cycle ends, and leads nowhere */

    const char *made[] = {"tzdata.zi", "posix",     "localtime", "Hard",
                          "Area/Sym",  "Area/Twin", "Area/Zone"};
    for (size_t i = 0; i < sizeof made / sizeof made[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, made[i]);
        assert_int_equal(unlink(path), 0);
    }
    snprintf(path, sizeof path, "%s/Area", dir);
    assert_int_equal(rmdir(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

static int use_system_tzdata(void **state)
{
    (void)state;
    if (!getenv("TZDIR")) setenv("TZDIR", "/usr/share/zoneinfo", 1);
    return make_tmpdir(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_civil_known_days),
        cmocka_unit_test(test_civil_round_trip),
        cmocka_unit_test(test_days_in_month),
        cmocka_unit_test(test_utc_is_built_in),
        cmocka_unit_test(test_to_local_fields),
        cmocka_unit_test(test_new_york),
        cmocka_unit_test(test_berlin),
        cmocka_unit_test(test_southern_hemisphere),
        cmocka_unit_test(test_footer_rule_2045),
        cmocka_unit_test(test_next_transition),
        cmocka_unit_test(test_table_matches_footer),
        cmocka_unit_test(test_from_local_new_york),
        cmocka_unit_test(test_from_local_berlin_lord_howe),
        cmocka_unit_test(test_from_local_normalizes),
        cmocka_unit_test(test_round_trip_every_quarter_hour),
        cmocka_unit_test(test_posix_rules),
        cmocka_unit_test(test_posix_invalid),
        cmocka_unit_test(test_zone_names_checked),
        cmocka_unit_test(test_slim_file),
        cmocka_unit_test(test_v1_file),
        cmocka_unit_test(test_prefers_64_bit_section),
        cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_same_zone_system),
        cmocka_unit_test(test_same_zone_links),
    };
    return cmocka_run_group_tests(tests, use_system_tzdata, remove_tmpdir);
}
