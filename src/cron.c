/*
 * cron.c — parsing of five-field cron expressions into bit sets, and the search
 * for the next fire time in a time zone (src/tz.c supplies offsets and
 * transitions).
 *
 * The search walks the stretches of time during which the zone's UTC offset is
 * constant. Inside one, wall time and real time move together, so the first
 * matching wall minute is found with plain calendar arithmetic; the seams
 * between stretches are where DST rules apply (see cron.h).
 */
#include "cron.h"
#include "buf.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SL_CRON_MAX_EXPR 1024
#define SL_CRON_HORIZON_SECS ((int64_t)SL_CRON_HORIZON_YEARS * 366 * 86400)
#define SL_CRON_LIMIT 1000000000000000LL /* the range sl_tz accepts */

struct sl_cron {
    uint64_t minute; /* bit n set: minute n matches */
    uint32_t hour;
    uint32_t dom;   /* bits 1-31 */
    uint32_t month; /* bits 1-12 */
    uint32_t dow;   /* bits 0-6, Sunday = 0 */
    int dom_star;   /* the field starts with '*' (for the day OR rule) */
    int dow_star;
    int hour_star; /* follows the real clock across DST changes */
};

/* ------------------------------------------------------------------ parsing */

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

typedef struct {
    const char *name;
    const char *const *names; /* 3-letter names of names_base, names_base + 1, … */
    const char *name_kind;    /* "month" / "day", for messages */
    int names_base;
    int min, max; /* numbers accepted */
    int open_max; /* where * and a/n stop (6 for day-of-week: 7 is Sunday again) */
} field_spec;

static const field_spec fields[5] = {
    {.name = "minute", .min = 0, .max = 59, .open_max = 59},
    {.name = "hour", .min = 0, .max = 23, .open_max = 23},
    {.name = "day-of-month", .min = 1, .max = 31, .open_max = 31},
    {.name = "month",
     .names = month_names,
     .name_kind = "month",
     .names_base = 1,
     .min = 1,
     .max = 12,
     .open_max = 12},
    {.name = "day-of-week",
     .names = day_names,
     .name_kind = "day",
     .names_base = 0,
     .min = 0,
     .max = 7,
     .open_max = 6},
};

static const struct {
    const char *name, *expr;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static int ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower(a[i]) != lower(b[i])) return 0;
    return 1;
}

/* A number or (month, day-of-week) a name, at *sp. Returns 0, or -1 with msg. */
static int parse_value(const char **sp, const field_spec *fs, int *out, char *msg, size_t msglen)
{
    const char *s = *sp, *start = s;
    if (is_digit(*s)) {
        long v = 0;
        while (is_digit(*s)) {
            if (v < 1000000) v = v * 10 + (*s - '0');
            s++;
        }
        if (v < fs->min || v > fs->max) {
            sl_seterr(msg, msglen, "value %.*s out of range %d-%d", (int)(s - start), start,
                      fs->min, fs->max);
            return -1;
        }
        *out = (int)v;
    } else if (is_alpha(*s)) {
        while (is_alpha(*s))
            s++;
        size_t n = (size_t)(s - start);
        if (!fs->names) {
            sl_seterr(msg, msglen, "\"%.*s\" is not a number", (int)n, start);
            return -1;
        }
        int k = 0;
        while (fs->names[k] && !(n == 3 && ieq(start, fs->names[k], 3)))
            k++;
        if (!fs->names[k]) {
            sl_seterr(msg, msglen, "unknown %s name \"%.*s\" (use %s-%s)", fs->name_kind, (int)n,
                      start, fs->names[0], fs->names[k - 1]);
            return -1;
        }
        *out = fs->names_base + k;
    } else if (*s == '\0' || *s == ',' || *s == '-' || *s == '/') {
        sl_seterr(msg, msglen, "missing value");
        return -1;
    } else {
        sl_seterr(msg, msglen, "unexpected \"%c\"", *s);
        return -1;
    }
    *sp = s;
    return 0;
}

/* "lo-hi" (or "lo" alone) of a field, in names when named. */
static void range_text(const field_spec *fs, int named, int lo, int hi, char *out, size_t len)
{
    char l[8], h[8];
    snprintf(l, sizeof l, "%s", named ? fs->names[lo - fs->names_base] : "");
    snprintf(h, sizeof h, "%s", named ? fs->names[hi - fs->names_base] : "");
    if (!named) {
        snprintf(l, sizeof l, "%d", lo);
        snprintf(h, sizeof h, "%d", hi);
    }
    if (lo == hi)
        snprintf(out, len, "%s", l);
    else
        snprintf(out, len, "%s-%s", l, h);
}

/* One list item: * or a or a-b, then optionally /step. */
static int parse_item(const char **sp, const field_spec *fs, uint64_t *bits, char *msg,
                      size_t msglen)
{
    const char *s = *sp;
    int lo, hi, step = 1;
    if (*s == '\0' || *s == ',') {
        sl_seterr(msg, msglen, "empty list item");
        return -1;
    }
    if (*s == '*') {
        s++;
        lo = fs->min;
        hi = fs->open_max;
    } else {
        if (parse_value(&s, fs, &lo, msg, msglen) < 0) return -1;
        hi = lo;
        if (*s == '-') {
            s++;
            if (parse_value(&s, fs, &hi, msg, msglen) < 0) return -1;
            if (fs->names == day_names && hi == 0 && lo > 0) hi = 7; /* fri-sun */
            if (hi < lo) {
                /* a range does not wrap around the field: say how to write one
                 * that would, in the item's own terms (names or numbers) */
                char a[16], b[16];
                int named = fs->names && isalpha((unsigned char)**sp);
                range_text(fs, named, lo, fs->open_max, a, sizeof a);
                range_text(fs, named, fs->min, hi, b, sizeof b);
                if (*s == '/')
                    sl_seterr(msg, msglen, "range %d-%d is backwards", lo, hi);
                else
                    sl_seterr(
                        msg, msglen,
                        "range %d-%d is backwards (a range does not wrap around: write %s,%s)", lo,
                        hi, a, b);
                return -1;
            }
        } else if (*s == '/') {
            hi = fs->open_max > lo ? fs->open_max : lo; /* 5/10 = 5-max/10 */
        }
    }
    if (*s == '/') {
        s++;
        if (!is_digit(*s)) {
            sl_seterr(msg, msglen, "missing step after \"/\"");
            return -1;
        }
        const char *start = s;
        long v = 0;
        while (is_digit(*s)) {
            if (v < 1000000) v = v * 10 + (*s - '0');
            s++;
        }
        int span = fs->open_max - fs->min + 1;
        if (v < 1) {
            sl_seterr(msg, msglen, "step must be at least 1");
            return -1;
        }
        if (v > span) {
            sl_seterr(msg, msglen, "step %.*s out of range 1-%d", (int)(s - start), start, span);
            return -1;
        }
        step = (int)v;
    }
    if (*s != '\0' && *s != ',') {
        const char *end = s;
        while (*end && *end != ',')
            end++;
        sl_seterr(msg, msglen, "unexpected \"%.*s\"", (int)(end - s), s);
        return -1;
    }
    for (int v = lo; v <= hi; v += step)
        *bits |= (uint64_t)1 << (fs->names == day_names && v == 7 ? 0 : v);
    *sp = s;
    return 0;
}

static int parse_field(const char *text, const field_spec *fs, uint64_t *bits, char *err,
                       size_t errlen)
{
    char msg[160];
    const char *s = text;
    *bits = 0;
    for (;;) {
        if (parse_item(&s, fs, bits, msg, sizeof msg) < 0) {
            sl_seterr(err, errlen, "%s field \"%s\": %s", fs->name, text, msg);
            return -1;
        }
        if (*s == '\0') return 0;
        s++; /* ',' */
    }
}

sl_cron *sl_cron_parse(const char *expr, char *err, size_t errlen)
{
    char buf[SL_CRON_MAX_EXPR];
    char *tok[5];
    int n = 0;
    if (!expr) expr = "";
    while (is_space(*expr))
        expr++;
    if (strlen(expr) >= sizeof buf) {
        sl_seterr(err, errlen, "cron expression too long (%zu bytes; at most %d)", strlen(expr),
                  SL_CRON_MAX_EXPR - 1);
        return NULL;
    }
    if (*expr == '@') {
        size_t len = 0;
        while (expr[len] && !is_space(expr[len]))
            len++;
        const char *rest = expr + len;
        while (is_space(*rest))
            rest++;
        for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++) {
            if (strlen(macros[i].name) != len || !ieq(expr, macros[i].name, len)) continue;
            if (*rest) {
                sl_seterr(err, errlen, "%s takes no fields, got \"%s\"", macros[i].name, rest);
                return NULL;
            }
            return sl_cron_parse(macros[i].expr, err, errlen);
        }
        sl_seterr(err, errlen,
                  "unknown macro \"%.*s\" (use @hourly, @daily, @midnight, @weekly, @monthly, "
                  "@yearly or @annually)",
                  (int)len, expr);
        return NULL;
    }
    memcpy(buf, expr, strlen(expr) + 1);
    for (char *p = buf; *p;) {
        while (is_space(*p))
            *p++ = '\0';
        if (!*p) break;
        if (n < 5) tok[n] = p;
        n++;
        while (*p && !is_space(*p))
            p++;
    }
    if (n != 5) {
        sl_seterr(err, errlen, "expected 5 fields, got %d", n);
        return NULL;
    }

    uint64_t bits[5];
    for (int i = 0; i < 5; i++)
        if (parse_field(tok[i], &fields[i], &bits[i], err, errlen) < 0) return NULL;
    sl_cron *c = calloc(1, sizeof *c);
    if (!c) {
        sl_seterr(err, errlen, "out of memory");
        return NULL;
    }
    c->minute = bits[0];
    c->hour = (uint32_t)bits[1];
    c->dom = (uint32_t)bits[2];
    c->month = (uint32_t)bits[3];
    c->dow = (uint32_t)bits[4];
    c->hour_star = tok[1][0] == '*';
    c->dom_star = tok[2][0] == '*';
    c->dow_star = tok[4][0] == '*';
    return c;
}

void sl_cron_free(sl_cron *c)
{
    free(c);
}

int sl_cron_is_hourly(const sl_cron *c)
{
    return c->hour_star;
}

/* ------------------------------------------------------------------ matching */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* 0 = Sunday; day 0 (1970-01-01) was a Thursday. */
static int weekday(int64_t days)
{
    return (int)(days - floor_div(days + 4, 7) * 7 + 4);
}

static int day_matches(const sl_cron *c, int64_t days, int mday)
{
    int dom = (int)(c->dom >> mday & 1), dow = (int)(c->dow >> weekday(days) & 1);
    return c->dom_star || c->dow_star ? dom && dow : dom || dow;
}

/* The lowest set bit >= from, or -1. */
static int next_bit(uint64_t bits, int from)
{
    bits = from >= 64 ? 0 : bits >> from << from;
    return bits ? __builtin_ctzll(bits) : -1;
}

int sl_cron_matches(const sl_cron *c, const struct tm *local)
{
    int64_t months = (int64_t)local->tm_year * 12 + local->tm_mon;
    int64_t y = floor_div(months, 12) + 1900;
    int m = (int)(months - floor_div(months, 12) * 12) + 1;
    int64_t days = sl_days_from_civil(y, m, 1) + local->tm_mday - 1;
    int64_t secs = (int64_t)local->tm_hour * 3600 + (int64_t)local->tm_min * 60;
    int64_t w = days * 86400 + secs;
    days = floor_div(w, 86400);
    int sod = (int)(w - days * 86400), d;
    sl_civil_from_days(days, &y, &m, &d);
    return (c->month >> m & 1) && day_matches(c, days, d) && (c->hour >> (sod / 3600) & 1) &&
           (c->minute >> (sod / 60 % 60) & 1);
}

/* The first matching wall minute in [lo, hi), in local seconds: 1 and *out, or 0. */
static int wall_next(const sl_cron *c, int64_t lo, int64_t hi, int64_t *out)
{
    int64_t w = -floor_div(-lo, 60) * 60;
    while (w < hi) {
        int64_t days = floor_div(w, 86400), y;
        int sod = (int)(w - days * 86400), m, d;
        sl_civil_from_days(days, &y, &m, &d);
        if (!(c->month >> m & 1)) {
            w = (m == 12 ? sl_days_from_civil(y + 1, 1, 1) : sl_days_from_civil(y, m + 1, 1)) *
                86400;
            continue;
        }
        if (!day_matches(c, days, d)) {
            w = (days + 1) * 86400;
            continue;
        }
        int h = next_bit(c->hour, sod / 3600);
        if (h < 0) {
            w = (days + 1) * 86400;
            continue;
        }
        int mi = next_bit(c->minute, h == sod / 3600 ? sod / 60 % 60 : 0);
        if (mi < 0) {
            w = days * 86400 + (int64_t)(h + 1) * 3600;
            continue;
        }
        w = days * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60;
        if (w >= hi) return 0;
        *out = w;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ next fire time */

/* Each pass handles one stretch [t, end) of constant offset `off`. For jobs on
 * the wall clock (hour field not '*'): a stretch entered by a jump forward first
 * fires at its start if a matching wall time was jumped over; a wall time that
 * already showed before (clocks went back) is skipped. */
int sl_cron_next(const sl_cron *c, const sl_tz *tz, int64_t after, int64_t *next)
{
    if (after < -SL_CRON_LIMIT || after > SL_CRON_LIMIT - SL_CRON_HORIZON_SECS) return -1;
    int64_t limit = after + SL_CRON_HORIZON_SECS, t = after + 1, w;
    if (!tz) {
        if (!wall_next(c, t, limit + 1, &w)) return -1;
        *next = w;
        return 0;
    }
    int wall_clock = !c->hour_star;
    for (;;) {
        int off = sl_tz_offset(tz, t);
        int64_t end;
        int has_end = sl_tz_next_transition(tz, t, &end);
        if (wall_clock) {
            int prev = sl_tz_offset(tz, t - 1);
            if (prev < off && wall_next(c, t + prev, t + off, &w)) {
                *next = t;
                return 0;
            }
        }
        int64_t seg_hi = has_end && end <= limit ? end : limit + 1;
        int64_t lo = t + off;
        while (wall_next(c, lo, seg_hi + off, &w)) {
            int64_t inst = w - off, first[2];
            if (wall_clock && sl_tz_from_local_seconds(tz, w, first) == 2 && first[0] < inst) {
                lo = w + 60;
                continue;
            }
            *next = inst;
            return 0;
        }
        if (!has_end || end > limit) return -1;
        t = end;
    }
}
