/*
 * cli_cron.c — `sluice cron next`: preview when a cron expression fires, in UTC
 * and in the job's time zone, computed exactly as the daemon does (src/cron.c,
 * src/tz.c). Needs no database.
 *
 *   $ sluice cron next "30 2 * * *" --tz America/New_York --from 2026-03-08T00:00:00Z -n 2
 *   2026-03-08T07:00:00Z  2026-03-08 03:00:00 EDT (-04:00)
 *   2026-03-09T06:30:00Z  2026-03-09 02:30:00 EDT (-04:00)
 */
#include "cli.h"
#include "cron.h"
#include "tz.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SL_CRON_CLI_MAX_COUNT 1000

/* The last instant listed: 9999-12-31T23:59:59Z. Times are printed with
 * four-digit years, as ISO 8601 writes them without an agreed extension, and
 * --from reads them so: a slot past it, in UTC or on the zone's clock, ends the
 * list (and is said to). */
#define SL_CRON_CLI_LAST_YEAR 9999

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice cron next EXPR [--tz ZONE] [--from TIME] [-n N] [--json]\n"
            "       sluice cron next -- EXPR [options]\n"
            "\n"
            "Prints the next N times EXPR fires after TIME, in UTC and in ZONE, up to\n"
            "the end of year %d.\n"
            "\n"
            "  EXPR         \"minute hour day-of-month month day-of-week\" (quote it), e.g.\n"
            "               \"*/15 9-17 * * mon-fri\", or @hourly @daily @midnight @weekly\n"
            "               @monthly @yearly @annually\n"
            "  --tz ZONE    IANA time zone, e.g. Europe/Berlin (default UTC)\n"
            "  --from TIME  list times after TIME (exclusive): now (default),\n"
            "               2026-03-08T01:00:00Z, 2026-03-08T01:00:00+01:00, or a wall\n"
            "               time in ZONE (UTC without --tz) such as \"2026-03-08 01:00\"\n"
            "  -n N         how many times to print (1-%d, default 5); or --count N\n"
            "  --json       print one JSON object instead of lines\n"
            "\n"
            "An argument with a space in it is the expression, never an option, even\n"
            "when it starts with '-'; so is the argument after --, whatever it is.\n"
            "\n"
            "Each line shows the UTC instant, then the local time with the zone's\n"
            "abbreviation and UTC offset.\n",
            SL_CRON_CLI_LAST_YEAR, SL_CRON_CLI_MAX_COUNT);
}

/* ------------------------------------------------------------------ time parsing */

/* Exactly n digits at *sp. */
static int digits(const char **sp, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*sp)[i];
        if (c < '0' || c > '9') return -1;
        v = v * 10 + (c - '0');
    }
    *sp += n;
    *out = v;
    return 0;
}

/* ISO 8601: YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|±HH[:MM]|±HHMM], or "now". Without
 * an offset the time is a wall time in tz. Returns 0 and *out, or -1. */
static int parse_time(const char *s, const sl_tz *tz, int64_t *out)
{
    int y, mo, d, h = 0, mi = 0, sec = 0;
    if (strcmp(s, "now") == 0) {
        *out = (int64_t)time(NULL);
        return 0;
    }
    if (digits(&s, 4, &y) < 0 || *s++ != '-' || digits(&s, 2, &mo) < 0 || *s++ != '-' ||
        digits(&s, 2, &d) < 0 || mo < 1 || mo > 12 || d < 1 || d > sl_days_in_month(y, mo))
        return -1;
    if (*s == 'T' || *s == 't' || *s == ' ') {
        s++;
        if (digits(&s, 2, &h) < 0 || *s++ != ':' || digits(&s, 2, &mi) < 0 || h > 23 || mi > 59)
            return -1;
        if (*s == ':') {
            s++;
            if (digits(&s, 2, &sec) < 0 || sec > 59) return -1;
            if (*s == '.' || *s == ',') { /* fractions are dropped */
                s++;
                if (*s < '0' || *s > '9') return -1;
                while (*s >= '0' && *s <= '9')
                    s++;
            }
        }
    }
    int64_t local =
        sl_days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + sec;
    if (*s == 'Z' || *s == 'z') {
        if (s[1] != '\0') return -1;
        *out = local;
        return 0;
    }
    if (*s == '+' || *s == '-') {
        int sign = *s++ == '-' ? -1 : 1, oh, om = 0;
        if (digits(&s, 2, &oh) < 0 || oh > 23) return -1;
        if (*s == ':') s++;
        if (*s != '\0' && (digits(&s, 2, &om) < 0 || om > 59)) return -1;
        if (*s != '\0') return -1;
        *out = local - (int64_t)sign * (oh * 3600 + om * 60);
        return 0;
    }
    if (*s != '\0') return -1;
    int64_t inst[2];
    if (sl_tz_from_local_seconds(tz, local, inst) < 0) return -1;
    *out = inst[0]; /* the first pass of a repeated time; the end of a gap */
    return 0;
}

/* ------------------------------------------------------------------ output */

static void fmt_offset(char *buf, size_t len, int off)
{
    int a = off < 0 ? -off : off;
    if (a % 60)
        snprintf(buf, len, "%c%02d:%02d:%02d", off < 0 ? '-' : '+', a / 3600, a / 60 % 60, a % 60);
    else
        snprintf(buf, len, "%c%02d:%02d", off < 0 ? '-' : '+', a / 3600, a / 60 % 60);
}

/* "2026-03-08T07:00:00Z" */
static void fmt_utc(char *buf, size_t len, const sl_tz *utc, int64_t t)
{
    struct tm tm;
    sl_tz_to_local(utc, t, &tm, NULL, NULL);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

/* ------------------------------------------------------------------ the command */

/* If argv[*i] is the option `name` ("--tz", "-n"), takes its value from "--tz=V",
 * "-nV" or the next argument: returns 1 with *val set, 0 if it is not that
 * option, -1 (after printing the error) if the value is missing. */
static int take_option(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return 0;
    if (a[n] == '=')
        *val = a + n + 1;
    else if (a[n] != '\0' && name[1] != '-')
        *val = a + n; /* -n3 */
    else if (a[n] != '\0')
        return 0; /* --tzfoo */
    else if (*i + 1 < argc)
        *val = argv[++*i];
    else {
        sl_cli_error("%s needs a value", name);
        return -1;
    }
    return 1;
}

/* Whether a is an option (or a mistyped one): a dash and a name. An argument
 * with whitespace in it is not: no option has any, and a cron expression
 * such as "-1 * * * *" (refused by the parser, which says why) does. */
static int is_option(const char *a)
{
    return a[0] == '-' && a[1] != '\0' && !strpbrk(a, " \t\n\r\f\v");
}

/* The year of instant t in tz (UTC when tz is NULL). */
static int64_t year_of(const sl_tz *tz, int64_t t)
{
    struct tm tm;
    sl_tz_to_local(tz, t, &tm, NULL, NULL);
    return (int64_t)tm.tm_year + 1900;
}

static int cron_next(int argc, char **argv)
{
    const char *expr = NULL, *zone = "UTC", *from = "now", *count_s = "5", *count_opt = "-n";
    int json = 0, count;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = 0, marked = strcmp(a, "--") == 0; /* `-- EXPR`: EXPR is no option */
        if (marked) {
            if (i + 1 == argc) {
                sl_cli_error("-- needs the cron expression after it");
                return 2;
            }
            a = argv[++i];
        }
        if (marked || !is_option(a)) {
            if (expr) {
                sl_cli_error("one cron expression expected, got '%s' and '%s' (quote the "
                             "expression)",
                             expr, a);
                return 2;
            }
            expr = a;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        if ((r = take_option(argc, argv, &i, "--tz", &zone)) == 0 &&
            (r = take_option(argc, argv, &i, "--from", &from)) == 0) {
            static const char *const counts[] = {"--count", "-n"}; /* named as given */
            for (int k = 0; k < 2 && r == 0; k++)
                if ((r = take_option(argc, argv, &i, counts[k], &count_s)) > 0)
                    count_opt = counts[k];
        }
        if (r < 0) return 2;
        if (r > 0) continue;
        sl_cli_error("unknown option '%s' (see `sluice cron next --help`; an expression that "
                     "starts with '-' goes after --)",
                     a);
        return 2;
    }
    if (!expr) {
        sl_cli_error("a cron expression is needed, e.g. sluice cron next \"0 9 * * mon-fri\"");
        return 2;
    }
    long n;
    if (sl_cli_whole_number(count_opt, count_s, 1, SL_CRON_CLI_MAX_COUNT, &n) < 0) return 2;
    count = (int)n;

    char err[256];
    int status = 2;
    sl_cron *cron = sl_cron_parse(expr, err, sizeof err);
    sl_tz *tz = NULL, *utc = NULL;
    int64_t t;
    if (!cron) {
        sl_cli_error("bad cron expression '%s': %s", expr, err);
        goto out;
    }
    if (!(tz = sl_tz_load(zone, err, sizeof err))) {
        sl_cli_error("--tz: %s", err);
        goto out;
    }
    if (!(utc = sl_tz_load("UTC", err, sizeof err))) {
        sl_cli_error("%s", err);
        goto out;
    }
    if (parse_time(from, tz, &t) < 0) {
        sl_cli_error("--from: cannot read '%s' (use now, 2026-03-08T01:00:00Z, "
                     "2026-03-08T01:00:00+01:00 or \"2026-03-08 01:00\")",
                     from);
        goto out;
    }
    if (year_of(utc, t) > SL_CRON_CLI_LAST_YEAR) {
        sl_cli_error("--from: '%s' is after the end of year %d in UTC, where listing ends", from,
                     SL_CRON_CLI_LAST_YEAR);
        goto out;
    }

    char ubuf[40], obuf[16];
    if (json) {
        fmt_utc(ubuf, sizeof ubuf, utc, t);
        printf("{\"expression\":");
        json_string(stdout, expr);
        printf(",\"tz\":");
        json_string(stdout, sl_tz_name(tz));
        printf(",\"from\":\"%s\",\"next\":[", ubuf);
    }
    int found = 0, past_end = 0;
    for (; found < count && sl_cron_next(cron, tz, t, &t) == 0; found++) {
        struct tm lt;
        int off;
        const char *abbr;
        sl_tz_to_local(tz, t, &lt, &off, &abbr);
        if (year_of(utc, t) > SL_CRON_CLI_LAST_YEAR ||
            (int64_t)lt.tm_year + 1900 > SL_CRON_CLI_LAST_YEAR) {
            past_end = 1;
            break;
        }
        fmt_utc(ubuf, sizeof ubuf, utc, t);
        fmt_offset(obuf, sizeof obuf, off);
        if (json) {
            printf(
                "%s{\"utc\":\"%s\",\"local\":\"%04d-%02d-%02dT%02d:%02d:%02d%s\",\"abbreviation\":",
                found ? "," : "", ubuf, lt.tm_year + 1900, lt.tm_mon + 1, lt.tm_mday, lt.tm_hour,
                lt.tm_min, lt.tm_sec, obuf);
            json_string(stdout, abbr);
            printf(",\"utc_offset\":\"%s\",\"dst\":%s}", obuf, lt.tm_isdst ? "true" : "false");
        } else {
            printf("%s  %04d-%02d-%02d %02d:%02d:%02d %s (%s)\n", ubuf, lt.tm_year + 1900,
                   lt.tm_mon + 1, lt.tm_mday, lt.tm_hour, lt.tm_min, lt.tm_sec, abbr, obuf);
        }
    }
    if (json) printf("]}\n");
    if (past_end) {
        sl_cli_flush_stdout();
        if (found)
            fprintf(stderr, "listing ends with year %d: %d of %d times shown\n",
                    SL_CRON_CLI_LAST_YEAR, found, count);
        else
            sl_cli_error("\"%s\" does not fire after %s before the end of year %d, where "
                         "listing ends",
                         expr, from, SL_CRON_CLI_LAST_YEAR);
        status = found ? 0 : 1;
    } else if (found == 0) {
        sl_cli_error("\"%s\" never fires (nothing matches within %d years)", expr,
                     SL_CRON_HORIZON_YEARS);
        status = 1;
    } else {
        status = 0;
    }
out:
    sl_cron_free(cron);
    sl_tz_free(tz);
    sl_tz_free(utc);
    return status;
}

int sl_cmd_cron(const struct sl_config *cfg, int argc, char **argv)
{
    (void)cfg;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(sub, "next") == 0) return cron_next(argc - 1, argv + 1);
    sl_cli_error("unknown cron command '%s' (try `sluice cron next EXPR`)", sub);
    return 2;
}
