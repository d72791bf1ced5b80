/*
 * log.c — structured log lines on stderr (logfmt or JSON), credential redaction,
 * and the lines of a repeated task's failures (sl_log_attempt).
 *
 * The two settings below are written once by sl_log_setup() before the loop
 * starts and only read afterwards.
 */
#include "log.h"
#include "buf.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static int log_format; /* 0 logfmt, 1 json */
static int log_level = SL_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void sl_log_setup(int format, int level)
{
    log_format = format;
    log_level = level;
}

int sl_log_enabled(int level)
{
    return level >= log_level;
}

int sl_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0) return i;
    if (strcmp(s, "warning") == 0) return SL_WARN;
    return -1;
}

/* ------------------------------------------------------------------ redaction */

static int ci_prefix(const char *s, const char *p)
{
    for (; *p; s++, p++)
        if (tolower((unsigned char)*s) != *p) return 0;
    return 1;
}

/* Does the query/header name ending just before `end` (starting at `start`) look
 * like a credential? */
static int secret_name(const char *start, const char *end)
{
    static const char *const words[] = {"token", "key",       "secret", "password", "passwd",
                                        "auth",  "signature", "sig",    NULL};
    size_t n = (size_t)(end - start);
    char name[64];
    if (n == 0 || n >= sizeof name) return 0;
    for (size_t i = 0; i < n; i++)
        name[i] = (char)tolower((unsigned char)start[i]);
    name[n] = '\0';
    for (int i = 0; words[i]; i++)
        if (strstr(name, words[i])) return 1;
    return 0;
}

char *sl_redact(const char *s)
{
    size_t len = strlen(s), cap = len + 64, o = 0;
    char *out = sl_xmalloc(cap); /* callers have no way to report a failure */
    static const char mark[] = "[redacted]";
    for (size_t i = 0; i < len;) {
        /* room for the rest of the input and one mark: a step copies input and
         * adds at most one mark (and a space) */
        if (o + (len - i) + sizeof mark + 2 >= cap) {
            cap = (o + (len - i)) * 2 + sizeof mark + 2;
            out = sl_xrealloc(out, cap);
        }
        /* Header forms: "Authorization: …", "Cookie: …" up to end of line. */
        if ((i == 0 || s[i - 1] == '\n' || s[i - 1] == ' ' || s[i - 1] == '"') &&
            (ci_prefix(s + i, "authorization:") || ci_prefix(s + i, "cookie:") ||
             ci_prefix(s + i, "set-cookie:") || ci_prefix(s + i, "x-api-key:"))) {
            const char *colon = strchr(s + i, ':');
            size_t upto = (size_t)(colon - s) + 1;
            while (i < upto)
                out[o++] = s[i++];
            out[o++] = ' ';
            memcpy(out + o, mark, sizeof mark - 1);
            o += sizeof mark - 1;
            while (i < len && s[i] != '\n' && s[i] != '"')
                i++;
            continue;
        }
        /* "Bearer xyz" anywhere. */
        if (ci_prefix(s + i, "bearer ") && (i == 0 || !isalnum((unsigned char)s[i - 1]))) {
            memcpy(out + o, s + i, 7);
            o += 7;
            i += 7;
            memcpy(out + o, mark, sizeof mark - 1);
            o += sizeof mark - 1;
            while (i < len && !isspace((unsigned char)s[i]) && s[i] != '"' && s[i] != '&')
                i++;
            continue;
        }
        /* A URL's password: scheme://user:PASSWORD@host. */
        if (s[i] == ':' && i + 3 <= len && s[i + 1] == '/' && s[i + 2] == '/') {
            size_t h = i + 3, colon = 0;
            while (h < len && !strchr("/?#@\"", s[h]) && !isspace((unsigned char)s[h])) {
                if (s[h] == ':' && !colon) colon = h;
                h++;
            }
            if (h < len && s[h] == '@' && colon) {
                while (i <= colon)
                    out[o++] = s[i++];
                memcpy(out + o, mark, sizeof mark - 1);
                o += sizeof mark - 1;
                i = h;
                continue;
            }
        }
        /* name=value where name looks secret (query strings, logfmt). */
        if (s[i] == '=' && i > 0) {
            size_t st = i;
            while (st > 0 && (isalnum((unsigned char)s[st - 1]) || s[st - 1] == '_' ||
                              s[st - 1] == '-' || s[st - 1] == '.'))
                st--;
            if (secret_name(s + st, s + i)) {
                out[o++] = '=';
                i++;
                memcpy(out + o, mark, sizeof mark - 1);
                o += sizeof mark - 1;
                while (i < len && s[i] != '&' && !isspace((unsigned char)s[i]) && s[i] != '"' &&
                       s[i] != '#')
                    i++;
                continue;
            }
        }
        out[o++] = s[i++];
    }
    out[o] = '\0';
    return out;
}

/* ------------------------------------------------------------------ output */

static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void put_logfmt_value(FILE *f, const char *s)
{
    int quote = *s == '\0';
    for (const char *p = s; *p; p++)
        if (*p == ' ' || *p == '"' || *p == '=' || *p == '\n' || *p == '\\' || *p == '\t')
            quote = 1;
    if (!quote) {
        fputs(s, f);
        return;
    }
    put_json_string(f, s); /* the same escaping rules */
}

/* Is s a number in JSON's grammar (RFC 8259: no "+", no leading zero but in
 * "0", no hex, inf or nan) that a reader takes as a finite double? */
static int json_number(const char *s)
{
    const char *p = s;
    if (*p == '-') p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (isdigit((unsigned char)*p))
            p++;
    else
        return 0;
    if (*p == '.') {
        if (!isdigit((unsigned char)*++p)) return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!isdigit((unsigned char)*p)) return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p) return 0;
    errno = 0;
    double d = strtod(s, NULL);
    return errno != ERANGE && isfinite(d);
}

static void put_json_value(FILE *f, char type, const char *v)
{
    if ((type == SL_NUM[0] && json_number(v)) ||
        (type == SL_BOOL[0] && (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)))
        fputs(v, f);
    else
        put_json_string(f, v);
}

static void put_field(FILE *f, int first, const char *k, const char *v)
{
    char type = 0;
    if (k[0] == SL_NUM[0] || k[0] == SL_BOOL[0]) type = *k++;
    char *redacted = sl_redact(v);
    char *clean = sl_utf8_clean(redacted); /* a handler's bytes: the line stays UTF-8 (and JSON) */
    free(redacted);
    if (log_format == 1) {
        if (!first) fputc(',', f);
        put_json_string(f, k);
        fputc(':', f);
        put_json_value(f, type, clean);
    } else {
        if (!first) fputc(' ', f);
        fputs(k, f);
        fputc('=', f);
        put_logfmt_value(f, clean);
    }
    free(clean);
}

static void emit(int level, const char *msg, va_list ap)
{
    char ts[40];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03dZ", (int)(tv.tv_usec / 1000));

    char *line = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&line, &len);
    if (!f) return;
    if (log_format == 1) fputc('{', f);
    put_field(f, 1, "ts", ts);
    put_field(f, 0, "level", level_names[level]);
    put_field(f, 0, "msg", msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k) break;
        const char *v = va_arg(ap, const char *);
        if (v) put_field(f, 0, k, v);
    }
    if (log_format == 1) fputc('}', f);
    fputc('\n', f);
    if (fclose(f) != 0 || !line) { /* the stream could not grow: out of memory */
        free(line);
        return;
    }
    fwrite(line, 1, len, stderr);
    fflush(stderr);
    free(line);
}

void sl_log(int level, const char *msg, ...)
{
    va_list ap;
    if (level < log_level) return;
    va_start(ap, msg);
    emit(level, msg, ap);
    va_end(ap);
}

static void emit_plain(int level, const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    emit(level, msg, ap);
    va_end(ap);
}

void sl_logf(int level, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    if (level < log_level) return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    emit_plain(level, buf, NULL);
}

/* ------------------------------------------------------------------ repeats */

#define REPEAT_FIRST 10.0
#define REPEAT_MAX 300.0

int sl_log_repeat_due(sl_log_repeat *r, double now)
{
    if (!r->since) {
        r->since = r->told = now;
        r->every = REPEAT_FIRST;
        return 1;
    }
    if (now - r->told < r->every) return 0;
    r->told = now;
    r->every = r->every * 2 > REPEAT_MAX ? REPEAT_MAX : r->every * 2;
    return 1;
}

static void failed(sl_log_repeat *r, int level, double now, const char *msg, const char *err)
{
    if (level <= SL_DEBUG) {
        sl_log(SL_DEBUG, msg, "error", err, NULL);
        return;
    }
    r->failures++;
    int first = !r->since, due = sl_log_repeat_due(r, now);
    if (first) {
        sl_log(level, msg, "error", err, NULL);
        return;
    }
    char count[24], failing[32];
    snprintf(count, sizeof count, "%ld", r->failures);
    snprintf(failing, sizeof failing, "%.0fs", now - r->since);
    sl_log(due ? level : SL_DEBUG, msg, "error", err, SL_NUM "failures", count, "failing_for",
           failing, NULL);
}

static void worked(sl_log_repeat *r, double now, const char *again)
{
    if (!r->since) return;
    char count[24], span[32];
    snprintf(count, sizeof count, "%ld", r->failures);
    snprintf(span, sizeof span, "%.1fs", now - r->since);
    sl_log(SL_INFO, again, SL_NUM "failures", count, "failed_for", span, NULL);
    *r = (sl_log_repeat){0};
}

void sl_log_attempt(sl_log_repeat *r, int level, double now, const char *err,
                    const char *failed_msg, const char *again)
{
    if (err)
        failed(r, level, now, failed_msg, err);
    else
        worked(r, now, again);
}
