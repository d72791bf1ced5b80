/*
 * tz.c — IANA time zones read straight from TZif files, so that every job can
 * have its own zone without touching the process-global TZ/tzset/localtime.
 *
 * A zone is a sorted table of transitions, each naming a local-time type
 * (offset, DST flag, abbreviation), plus the POSIX TZ rule from the file's
 * footer that governs every instant after the last transition. Lookups are a
 * binary search in the table or a few lines of calendar arithmetic for the rule;
 * nothing is mutated after loading. The file format is RFC 8536.
 */
#include "tz.h"
#include "buf.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define SL_TZ_MAX_FILE (1 << 20)
#define SL_TZ_ABBR_MAX 16              /* bytes, with the NUL */
#define SL_TZ_LIMIT 1000000000000000LL /* |t| we accept: about 31 million years */
#define SL_TZ_MIN_UTOFF (-89999)       /* -24:59:59, RFC 8536 section 3.2 */
#define SL_TZ_MAX_UTOFF 93599          /* +25:59:59 */
#define SL_TZ_WINDOW 93600             /* no wall clock is further than this from UTC */

typedef struct {
    int32_t utoff; /* seconds east of UTC */
    int isdst;
    char abbr[SL_TZ_ABBR_MAX];
} tz_type;

/* A date in a POSIX TZ rule: Jn (1-365, Feb 29 never counted), n (0-365) or
 * Mm.w.d (week w of month m, 5 = last; weekday d, 0 = Sunday), and the local
 * time of day of the change, which may be negative or past 24 h (version 3). */
typedef struct {
    char kind; /* 'J', 'D' (the zero-based n form) or 'M' */
    int n, m, w, d;
    int32_t secs;
} tz_date;

typedef struct {
    tz_type std, dst;
    int has_dst;
    tz_date start, end; /* start: std → dst, in standard time; end: dst → std, in DST */
} tz_rule;

struct sl_tz {
    char *name;
    int64_t *trans;     /* ascending */
    unsigned char *idx; /* type of each transition */
    size_t ntrans;
    tz_type *types;
    size_t ntypes;
    int has_rule;
    tz_rule rule;
};

struct sl_tz_cache {
    sl_tz **zones;
    size_t n, cap;
};

/* ------------------------------------------------------------------ calendar */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* After Howard Hinnant's days_from_civil / civil_from_days (public domain). */
int64_t sl_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void sl_civil_from_days(int64_t days, int64_t *y, int *m, int *d)
{
    int64_t z = days + 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int mm = (int)(mp < 10 ? mp + 3 : mp - 9);
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = mm;
    *y = yoe + era * 400 + (mm <= 2);
}

int sl_days_in_month(int64_t y, int m)
{
    static const int len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && is_leap(y)) return 29;
    return len[(m - 1) % 12];
}

/* 0 = Sunday. 1970-01-01 was a Thursday. */
static int weekday(int64_t days)
{
    return (int)(days - floor_div(days + 4, 7) * 7 + 4);
}

/* ------------------------------------------------------------------ POSIX TZ rules */

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* An abbreviation: three or more letters, or <...> of letters, digits, + and -. */
static int parse_abbr(const char **sp, char out[SL_TZ_ABBR_MAX])
{
    const char *s = *sp;
    size_t n = 0;
    if (*s == '<') {
        for (s++; *s != '>'; s++) {
            if (!(is_alpha(*s) || is_digit(*s) || *s == '+' || *s == '-') ||
                n + 1 >= SL_TZ_ABBR_MAX)
                return -1;
            out[n++] = *s;
        }
        s++;
    } else {
        for (; is_alpha(*s); s++) {
            if (n + 1 >= SL_TZ_ABBR_MAX) return -1;
            out[n++] = *s;
        }
    }
    if (n < 3) return -1;
    out[n] = '\0';
    *sp = s;
    return 0;
}

/* Up to max_digits digits, value <= max. */
static int parse_num(const char **sp, int max_digits, int max, int *out)
{
    const char *s = *sp;
    int v = 0, k = 0;
    while (is_digit(*s) && k < max_digits) {
        v = v * 10 + (*s++ - '0');
        k++;
    }
    if (k == 0 || v > max || is_digit(*s)) return -1;
    *out = v;
    *sp = s;
    return 0;
}

/* [+-]h[h[h]][:mm[:ss]] with hours <= max_hours; seconds in *out. */
static int parse_hms(const char **sp, int max_hours, int32_t *out)
{
    const char *s = *sp;
    int sign = 1, h, mi = 0, sec = 0;
    if (*s == '+' || *s == '-') sign = *s++ == '-' ? -1 : 1;
    if (parse_num(&s, 3, max_hours, &h) < 0) return -1;
    if (*s == ':') {
        s++;
        if (parse_num(&s, 2, 59, &mi) < 0) return -1;
        if (*s == ':') {
            s++;
            if (parse_num(&s, 2, 59, &sec) < 0) return -1;
        }
    }
    *out = sign * (h * 3600 + mi * 60 + sec);
    *sp = s;
    return 0;
}

static int parse_rule_date(const char **sp, tz_date *dt)
{
    const char *s = *sp;
    if (*s == 'J') {
        s++;
        dt->kind = 'J';
        if (parse_num(&s, 3, 365, &dt->n) < 0 || dt->n < 1) return -1;
    } else if (*s == 'M') {
        s++;
        dt->kind = 'M';
        if (parse_num(&s, 2, 12, &dt->m) < 0 || dt->m < 1 || *s++ != '.' ||
            parse_num(&s, 1, 5, &dt->w) < 0 || dt->w < 1 || *s++ != '.' ||
            parse_num(&s, 1, 6, &dt->d) < 0)
            return -1;
    } else {
        dt->kind = 'D';
        if (parse_num(&s, 3, 365, &dt->n) < 0) return -1;
    }
    dt->secs = 7200;
    if (*s == '/') {
        s++;
        if (parse_hms(&s, 167, &dt->secs) < 0) return -1;
    }
    *sp = s;
    return 0;
}

/* std offset [dst [offset] [,start[/time],end[/time]]]. Offsets count west. */
static int parse_posix(const char *spec, tz_rule *r)
{
    const char *s = spec;
    int32_t off;
    memset(r, 0, sizeof *r);
    if (parse_abbr(&s, r->std.abbr) < 0 || parse_hms(&s, 24, &off) < 0) return -1;
    r->std.utoff = -off;
    if (*s == '\0') return 0;
    if (parse_abbr(&s, r->dst.abbr) < 0) return -1;
    r->has_dst = 1;
    r->dst.isdst = 1;
    r->dst.utoff = r->std.utoff + 3600;
    if (*s != ',' && *s != '\0') {
        if (parse_hms(&s, 24, &off) < 0) return -1;
        r->dst.utoff = -off;
    }
    if (*s == '\0') { /* no rule: the US rule, as tzcode assumes */
        r->start = (tz_date){.kind = 'M', .m = 3, .w = 2, .d = 0, .secs = 7200};
        r->end = (tz_date){.kind = 'M', .m = 11, .w = 1, .d = 0, .secs = 7200};
        return 0;
    }
    if (*s++ != ',' || parse_rule_date(&s, &r->start) < 0 || *s++ != ',' ||
        parse_rule_date(&s, &r->end) < 0 || *s != '\0')
        return -1;
    return 0;
}

/* Days since the epoch of a rule date in year y. */
static int64_t rule_day(const tz_date *dt, int64_t y)
{
    int64_t jan1 = sl_days_from_civil(y, 1, 1);
    if (dt->kind == 'J') return jan1 + dt->n - 1 + (is_leap(y) && dt->n >= 60);
    if (dt->kind == 'D') return jan1 + dt->n;
    int64_t first = sl_days_from_civil(y, dt->m, 1);
    int day = (dt->d - weekday(first) + 7) % 7 + (dt->w - 1) * 7;
    while (day >= sl_days_in_month(y, dt->m))
        day -= 7;
    return first + day;
}

typedef struct {
    int64_t at;
    int dst; /* the state from `at` on */
} tz_edge;

#define SL_TZ_EDGES 8

/* The rule's changes in the four years around t, in time order. Insertion order
 * is kept on ties so that a DST period ending exactly where the next begins
 * (DST all year, "EST5EDT4,0/0,J365/25") stays DST. */
static void rule_edges(const tz_rule *r, int64_t t, tz_edge e[SL_TZ_EDGES])
{
    int64_t y;
    int m, d, n = 0;
    sl_civil_from_days(floor_div(t + r->std.utoff, 86400), &y, &m, &d);
    for (int64_t yy = y - 1; yy <= y + 2; yy++) {
        e[n++] = (tz_edge){rule_day(&r->start, yy) * 86400 + r->start.secs - r->std.utoff, 1};
        e[n++] = (tz_edge){rule_day(&r->end, yy) * 86400 + r->end.secs - r->dst.utoff, 0};
    }
    for (int i = 1; i < n; i++) {
        tz_edge x = e[i];
        int j = i;
        for (; j > 0 && e[j - 1].at > x.at; j--)
            e[j] = e[j - 1];
        e[j] = x;
    }
}

static const tz_type *rule_type_at(const tz_rule *r, int64_t t)
{
    tz_edge e[SL_TZ_EDGES] = {{0, 0}};
    int dst = 0;
    if (!r->has_dst) return &r->std;
    rule_edges(r, t, e);
    for (int i = 0; i < SL_TZ_EDGES && e[i].at <= t; i++)
        dst = e[i].dst;
    return dst ? &r->dst : &r->std;
}

static int rule_next(const tz_rule *r, int64_t t, int64_t *when)
{
    tz_edge e[SL_TZ_EDGES] = {{0, 0}};
    rule_edges(r, t, e);
    for (int i = 0; i < SL_TZ_EDGES; i++) {
        if (e[i].at > t) {
            *when = e[i].at;
            return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ lookups */

static const tz_type *type_at(const sl_tz *tz, int64_t t)
{
    if (tz->has_rule && (tz->ntrans == 0 || t >= tz->trans[tz->ntrans - 1]))
        return rule_type_at(&tz->rule, t);
    if (tz->ntrans == 0 || t < tz->trans[0]) return &tz->types[0];
    size_t lo = 0, hi = tz->ntrans; /* trans[lo] <= t < trans[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->trans[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return &tz->types[tz->idx[lo]];
}

int sl_tz_offset(const sl_tz *tz, int64_t t)
{
    return type_at(tz, t)->utoff;
}

int sl_tz_next_transition(const sl_tz *tz, int64_t t, int64_t *when)
{
    if (tz->ntrans > 0 && t < tz->trans[tz->ntrans - 1]) {
        size_t lo = 0, hi = tz->ntrans - 1; /* the first trans[i] > t is in [lo, hi] */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (tz->trans[mid] > t)
                hi = mid;
            else
                lo = mid + 1;
        }
        *when = tz->trans[lo];
        return 1;
    }
    if (tz->has_rule && tz->rule.has_dst) return rule_next(&tz->rule, t, when);
    return 0;
}

int sl_tz_to_local(const sl_tz *tz, int64_t t, struct tm *out, int *utcoff, const char **abbr)
{
    if (t < -SL_TZ_LIMIT || t > SL_TZ_LIMIT) return -1;
    const tz_type *ty = type_at(tz, t);
    if (out) {
        int64_t local = t + ty->utoff;
        int64_t days = floor_div(local, 86400), secs = local - days * 86400, y;
        int m, d;
        sl_civil_from_days(days, &y, &m, &d);
        memset(out, 0, sizeof *out);
        out->tm_year = (int)(y - 1900);
        out->tm_mon = m - 1;
        out->tm_mday = d;
        out->tm_hour = (int)(secs / 3600);
        out->tm_min = (int)(secs / 60 % 60);
        out->tm_sec = (int)(secs % 60);
        out->tm_wday = weekday(days);
        out->tm_yday = (int)(days - sl_days_from_civil(y, 1, 1));
        out->tm_isdst = ty->isdst;
    }
    if (utcoff) *utcoff = ty->utoff;
    if (abbr) *abbr = ty->abbr;
    return 0;
}

/* Walks the stretches of constant offset that cover [L - window, L + window]:
 * each that shows the wall time L contributes the instant L - offset; if none
 * does, L lies in a gap, which ends where the first stretch starting past L
 * begins. */
int sl_tz_from_local_seconds(const sl_tz *tz, int64_t local, int64_t out[2])
{
    if (local < -SL_TZ_LIMIT || local > SL_TZ_LIMIT) return -1;
    int64_t t = local - SL_TZ_WINDOW, hi = local + SL_TZ_WINDOW, gap = 0, end;
    int n = 0, have_gap = 0;
    for (;;) {
        int has_next = sl_tz_next_transition(tz, t, &end);
        int64_t cand = local - sl_tz_offset(tz, t);
        if (cand >= t && (!has_next || cand < end)) {
            if (n < 2) out[n] = cand;
            n++;
        } else if (cand < t && n == 0 && !have_gap) {
            gap = t;
            have_gap = 1;
        }
        if (!has_next || end > hi) break;
        t = end;
    }
    if (n > 0) return n > 2 ? 2 : n;
    out[0] = have_gap ? gap : local - sl_tz_offset(tz, local);
    return 0;
}

int sl_tz_from_local(const sl_tz *tz, const struct tm *local, int64_t out[2])
{
    int64_t months = (int64_t)local->tm_year * 12 + local->tm_mon;
    int64_t y = floor_div(months, 12) + 1900;
    int m = (int)(months - floor_div(months, 12) * 12) + 1;
    if (y < -40000000 || y > 40000000) return -1;
    int64_t days = sl_days_from_civil(y, m, 1) + local->tm_mday - 1;
    int64_t secs =
        days * 86400 + (int64_t)local->tm_hour * 3600 + (int64_t)local->tm_min * 60 + local->tm_sec;
    return sl_tz_from_local_seconds(tz, secs, out);
}

/* ------------------------------------------------------------------ loading */

static sl_tz *tz_new(const char *name)
{
    sl_tz *tz = calloc(1, sizeof *tz);
    if (!tz) return NULL;
    tz->name = strdup(name);
    if (!tz->name) {
        free(tz);
        return NULL;
    }
    return tz;
}

void sl_tz_free(sl_tz *tz)
{
    if (!tz) return;
    free(tz->name);
    free(tz->trans);
    free(tz->idx);
    free(tz->types);
    free(tz);
}

const char *sl_tz_name(const sl_tz *tz)
{
    return tz->name;
}

/* A zone called name with one local time type (zeroed) and no transitions. */
static sl_tz *tz_new_fixed(const char *name, char *err, size_t errlen)
{
    sl_tz *tz = tz_new(name);
    if (tz) tz->types = calloc(1, sizeof *tz->types);
    if (!tz || !tz->types) {
        sl_tz_free(tz);
        sl_seterr(err, errlen, "out of memory");
        return NULL;
    }
    tz->ntypes = 1;
    return tz;
}

static sl_tz *builtin_utc(const char *name, char *err, size_t errlen)
{
    sl_tz *tz = tz_new_fixed(name, err, errlen);
    if (tz) strcpy(tz->types[0].abbr, "UTC");
    return tz;
}

sl_tz *sl_tz_from_posix(const char *spec, char *err, size_t errlen)
{
    tz_rule r;
    if (!spec || parse_posix(spec, &r) < 0) {
        sl_seterr(err, errlen, "invalid POSIX TZ string \"%s\"", spec ? spec : "");
        return NULL;
    }
    sl_tz *tz = tz_new_fixed(spec, err, errlen);
    if (!tz) return NULL;
    tz->types[0] = r.std;
    tz->has_rule = 1;
    tz->rule = r;
    return tz;
}

int sl_tz_valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 255 || name[0] == '/' || name[n - 1] == '/' || strstr(name, "..") ||
        strstr(name, "//") || strcmp(name, ".") == 0 || strncmp(name, "./", 2) == 0 ||
        strstr(name, "/./") || (n >= 2 && strcmp(name + n - 2, "/.") == 0))
        return 0;
    for (const char *p = name; *p; p++)
        if (!(is_alpha(*p) || is_digit(*p) || strchr("/_+-.", *p))) return 0;
    return 1;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

typedef struct {
    uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
} tzif_counts;

#define SL_TZIF_HEADER 44

/* Reads a header at p; returns the version (1-4) or -1. */
static int tzif_header(const unsigned char *p, size_t avail, tzif_counts *c, const char **why)
{
    if (avail < SL_TZIF_HEADER || memcmp(p, "TZif", 4) != 0) {
        *why = "not a TZif file";
        return -1;
    }
    int version = p[4] == 0 ? 1 : p[4] >= '2' && p[4] <= '4' ? p[4] - '0' : -1;
    if (version < 0) {
        *why = "unsupported TZif version";
        return -1;
    }
    c->isutcnt = be32(p + 20);
    c->isstdcnt = be32(p + 24);
    c->leapcnt = be32(p + 28);
    c->timecnt = be32(p + 32);
    c->typecnt = be32(p + 36);
    c->charcnt = be32(p + 40);
    if (c->typecnt == 0 || c->typecnt > 256 || c->charcnt == 0 || c->timecnt > SL_TZ_MAX_FILE ||
        c->charcnt > SL_TZ_MAX_FILE || c->leapcnt > SL_TZ_MAX_FILE ||
        (c->isutcnt != 0 && c->isutcnt != c->typecnt) ||
        (c->isstdcnt != 0 && c->isstdcnt != c->typecnt)) {
        *why = "corrupt TZif header";
        return -1;
    }
    return version;
}

static size_t tzif_block(const tzif_counts *c, size_t timesize)
{
    return c->timecnt * timesize + c->timecnt + (size_t)c->typecnt * 6 + c->charcnt +
           c->leapcnt * (timesize + 4) + c->isstdcnt + c->isutcnt;
}

/* Parses a whole TZif file into tz. Returns 0, or -1 with *why set. */
static int tzif_parse(sl_tz *tz, const unsigned char *buf, size_t len, const char **why)
{
    tzif_counts c;
    size_t timesize = 4, off = SL_TZIF_HEADER;
    int version = tzif_header(buf, len, &c, why);
    if (version < 0) return -1;
    if (version >= 2) { /* skip the 32-bit data, use the 64-bit section */
        size_t skip = SL_TZIF_HEADER + tzif_block(&c, 4);
        if (skip > len || tzif_header(buf + skip, len - skip, &c, why) < 0) {
            if (skip > len) *why = "truncated TZif file";
            return -1;
        }
        off = skip + SL_TZIF_HEADER;
        timesize = 8;
    }
    if (c.leapcnt != 0) {
        *why = "zones with leap seconds (right/...) are not supported";
        return -1;
    }
    size_t block = tzif_block(&c, timesize);
    if (off > len || block > len - off) {
        *why = "truncated TZif file";
        return -1;
    }
    const unsigned char *p = buf + off;
    const unsigned char *pidx = p + c.timecnt * timesize;
    const unsigned char *ptypes = pidx + c.timecnt;
    const char *chars = (const char *)(ptypes + (size_t)c.typecnt * 6);

    tz->ntrans = c.timecnt;
    tz->ntypes = c.typecnt;
    tz->trans = malloc((c.timecnt ? c.timecnt : 1) * sizeof *tz->trans);
    tz->idx = malloc(c.timecnt ? c.timecnt : 1);
    tz->types = calloc(c.typecnt, sizeof *tz->types);
    if (!tz->trans || !tz->idx || !tz->types) {
        *why = "out of memory";
        return -1;
    }
    for (size_t i = 0; i < c.timecnt; i++) {
        tz->trans[i] = timesize == 8 ? be64(p + i * 8) : (int32_t)be32(p + i * 4);
        tz->idx[i] = pidx[i];
        if (pidx[i] >= c.typecnt || (i > 0 && tz->trans[i] <= tz->trans[i - 1])) {
            *why = "corrupt TZif transitions";
            return -1;
        }
    }
    for (size_t i = 0; i < c.typecnt; i++) {
        const unsigned char *q = ptypes + i * 6;
        tz_type *ty = &tz->types[i];
        ty->utoff = (int32_t)be32(q);
        ty->isdst = q[4];
        size_t ai = q[5], n = 0;
        if (ty->utoff < SL_TZ_MIN_UTOFF || ty->utoff > SL_TZ_MAX_UTOFF || q[4] > 1 ||
            ai >= c.charcnt) {
            *why = "corrupt TZif local time type";
            return -1;
        }
        while (ai + n < c.charcnt && chars[ai + n] != '\0')
            n++;
        if (ai + n >= c.charcnt || n >= SL_TZ_ABBR_MAX) {
            *why = "corrupt TZif abbreviation";
            return -1;
        }
        memcpy(ty->abbr, chars + ai, n);
        ty->abbr[n] = '\0';
    }
    if (version >= 2) { /* footer: "\n<POSIX TZ string>\n" */
        const char *f = (const char *)p + block, *endp = (const char *)buf + len;
        const char *nl =
            f < endp && *f == '\n' ? memchr(f + 1, '\n', (size_t)(endp - f - 1)) : NULL;
        if (!nl) {
            *why = "missing TZif footer";
            return -1;
        }
        size_t flen = (size_t)(nl - f - 1);
        if (flen > 0) {
            char spec[128];
            if (flen >= sizeof spec) {
                *why = "TZif footer too long";
                return -1;
            }
            memcpy(spec, f + 1, flen);
            spec[flen] = '\0';
            if (parse_posix(spec, &tz->rule) < 0) {
                *why = "unsupported TZ rule in TZif footer";
                return -1;
            }
            tz->has_rule = 1;
        }
    }
    return 0;
}

/* The zone file under dir whose path is name but for case ("europe/london":
 * "Europe/London") into out; 0 when there is one, -1 otherwise. name is valid
 * (sl_tz_valid_name): relative, no "." or ".." components. */
static int case_match(const char *dir, const char *name, char *out, size_t outlen)
{
    if (strcasecmp(name, "UTC") == 0 || strcasecmp(name, "Etc/UTC") == 0) {
        snprintf(out, outlen, "%s", strchr(name, '/') ? "Etc/UTC" : "UTC");
        return 0;
    }
    char path[4096];
    size_t plen = (size_t)snprintf(path, sizeof path, "%s", dir), olen = 0;
    out[0] = '\0';
    for (const char *p = name; *p;) {
        size_t n = strcspn(p, "/");
        char want[256];
        if (n >= sizeof want) return -1;
        memcpy(want, p, n);
        want[n] = '\0';
        DIR *d = opendir(path);
        if (!d) return -1;
        const struct dirent *e;
        while ((e = readdir(d)) != NULL && strcasecmp(e->d_name, want) != 0) {
        }
        int w = e ? snprintf(path + plen, sizeof path - plen, "/%s", e->d_name) : -1;
        int o = e ? snprintf(out + olen, outlen - olen, "%s%s", olen ? "/" : "", e->d_name) : -1;
        closedir(d);
        if (w < 0 || (size_t)w >= sizeof path - plen || o < 0 || (size_t)o >= outlen - olen)
            return -1;
        plen += (size_t)w;
        olen += (size_t)o;
        p += n;
        if (*p == '/') p++;
    }
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) ? 0 : -1;
}

sl_tz *sl_tz_load_dir(const char *dir, const char *name, char *err, size_t errlen)
{
    if (!name) name = "";
    if (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0)
        return builtin_utc(name, err, errlen);
    if (!sl_tz_valid_name(name)) {
        sl_seterr(err, errlen, "invalid time zone name \"%s\"", name);
        return NULL;
    }
    if (!dir || !*dir) dir = SL_TZ_DEFAULT_DIR;

    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
        sl_seterr(err, errlen, "time zone directory path too long");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    struct stat st = {0};
    if (!f || fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        int e = f ? 0 : errno, dir_named = f && S_ISDIR(st.st_mode);
        char near[256];
        if (f) fclose(f);
        if (dir_named) /* America, Europe: a region, whose zones are in it */
            sl_seterr(err, errlen,
                      "\"%s\" is not a time zone but a region directory (in %s): give a zone "
                      "as Region/City, e.g. Europe/Berlin or America/New_York",
                      name, dir);
        else if ((e == ENOENT || e == ENOTDIR) && case_match(dir, name, near, sizeof near) == 0)
            sl_seterr(err, errlen,
                      "unknown time zone \"%s\" (not found in %s) — did you mean \"%s\"? "
                      "(zone names are case-sensitive)",
                      name, dir, near);
        else if (e == 0 || e == ENOENT || e == ENOTDIR)
            sl_seterr(err, errlen, "unknown time zone \"%s\" (not found in %s)", name, dir);
        else
            sl_seterr(err, errlen, "cannot read time zone \"%s\": %s", name, strerror(e));
        return NULL;
    }
    unsigned char *buf = malloc(SL_TZ_MAX_FILE);
    size_t len = buf ? fread(buf, 1, SL_TZ_MAX_FILE, f) : 0;
    int rerr = ferror(f);
    fclose(f);
    sl_tz *tz = buf ? tz_new(name) : NULL;
    const char *why = "out of memory";
    if (buf && rerr)
        why = "read error";
    else if (buf && len == SL_TZ_MAX_FILE)
        why = "file too large";
    if (!tz || rerr || len == SL_TZ_MAX_FILE || tzif_parse(tz, buf, len, &why) < 0) {
        sl_seterr(err, errlen, "cannot load time zone \"%s\": %s", name, why);
        sl_tz_free(tz);
        free(buf);
        return NULL;
    }
    free(buf);
    return tz;
}

sl_tz *sl_tz_load(const char *name, char *err, size_t errlen)
{
    return sl_tz_load_dir(getenv("TZDIR"), name, err, errlen);
}

/* ------------------------------------------------------------------ cache */

sl_tz_cache *sl_tz_cache_new(void)
{
    return sl_xcalloc(1, sizeof(sl_tz_cache));
}

const sl_tz *sl_tz_cache_get(sl_tz_cache *cache, const char *name, char *err, size_t errlen)
{
    for (size_t i = 0; i < cache->n; i++)
        if (strcmp(cache->zones[i]->name, name) == 0) return cache->zones[i];
    if (cache->n == cache->cap) {
        size_t cap = cache->cap ? cache->cap * 2 : 8;
        sl_tz **z = realloc(cache->zones, cap * sizeof(sl_tz *));
        if (!z) {
            sl_seterr(err, errlen, "out of memory");
            return NULL;
        }
        cache->zones = z;
        cache->cap = cap;
    }
    sl_tz *tz = sl_tz_load(name, err, errlen);
    if (tz) cache->zones[cache->n++] = tz;
    return tz;
}

void sl_tz_cache_free(sl_tz_cache *cache)
{
    if (!cache) return;
    for (size_t i = 0; i < cache->n; i++)
        sl_tz_free(cache->zones[i]);
    free(cache->zones);
    free(cache);
}
