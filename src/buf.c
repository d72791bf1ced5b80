/*
 * buf.c — growable buffer, JSON string escaping, and the UTF-8 pieces the JSON
 * readers share (json.c, cli_types.c).
 */
#include "buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void sl_oom(void)
{
    static const char msg[] = "sluice: out of memory\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    abort();
}

void *sl_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) sl_oom();
    return p;
}

void *sl_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) sl_oom();
    return p;
}

void *sl_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) sl_oom();
    return q;
}

char *sl_xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) sl_oom();
    return d;
}

char *sl_xstrndup(const char *s, size_t n)
{
    char *d = strndup(s, n);
    if (!d) sl_oom();
    return d;
}

static void reserve(sl_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->data = sl_xrealloc(b->data, cap);
    b->cap = cap;
}

void sl_buf_add(sl_buf *b, const char *s, size_t n)
{
    reserve(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void sl_buf_puts(sl_buf *b, const char *s)
{
    sl_buf_add(b, s, strlen(s));
}

void sl_buf_join_and(sl_buf *b, const char *const *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0) sl_buf_puts(b, i + 1 < n ? ", " : " and ");
        sl_buf_puts(b, items[i]);
    }
}

void sl_buf_id_array(sl_buf *b, const char *ids)
{
    size_t n = strlen(ids);
    if (n > 0 && ids[n - 1] == ',') n--;
    sl_buf_puts(b, "{");
    sl_buf_add(b, ids, n);
    sl_buf_puts(b, "}");
}

void sl_buf_printf(sl_buf *b, const char *fmt, ...)
{
    va_list ap;
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    va_start(ap, fmt);
    int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n <= 0) {
        if (room) b->data[b->len] = '\0';
        return;
    }
    if ((size_t)n >= room) { /* it did not fit: again, with room for it */
        reserve(b, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

size_t sl_utf8_len(const unsigned char *p, size_t avail)
{
    size_t n;
    unsigned min;
    unsigned cp;
    if ((p[0] & 0xe0) == 0xc0) {
        n = 2, min = 0x80, cp = p[0] & 0x1f;
    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3, min = 0x800, cp = p[0] & 0x0f;
    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 4, min = 0x10000, cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (n > avail) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return n;
}

size_t sl_utf8_put(char out[4], unsigned long c)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xc0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xe0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        out[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    out[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

long sl_hex4(const char *p, size_t avail)
{
    if (avail < 4) return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int x;
        if (c >= '0' && c <= '9')
            x = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            x = (c | 0x20) - 'a' + 10;
        else
            return -1;
        v = v * 16 + x;
    }
    return v;
}

/* Appends the character at *p (advancing it): a valid UTF-8 sequence as it is,
 * any other byte as U+FFFD. */
static void add_char_clean(sl_buf *b, const unsigned char **p)
{
    size_t n = **p < 0x80 ? 1 : sl_utf8_len(*p, 4); /* NUL-terminated: stops at the NUL */
    sl_buf_add(b, n ? (const char *)*p : "\xef\xbf\xbd", n ? n : 3);
    *p += n ? n : 1;
}

char *sl_utf8_clean(const char *s)
{
    sl_buf b = {0};
    reserve(&b, strlen(s));
    b.data[0] = '\0'; /* "" when nothing is added */
    for (const unsigned char *p = (const unsigned char *)s; *p;)
        add_char_clean(&b, &p);
    return b.data;
}

char *sl_json_clean(const char *s)
{
    sl_buf b = {0};
    reserve(&b, strlen(s));
    b.data[0] = '\0'; /* "" when nothing is added */
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        if (*p == '\\' && p[1]) { /* an escape: copied whole, unless it is \u0000 */
            int nul = p[1] == 'u' && strncmp((const char *)p + 2, "0000", 4) == 0;
            sl_buf_add(&b, nul ? "\\ufffd" : (const char *)p, nul ? 6 : 2);
            p += nul ? 6 : 2;
        } else {
            add_char_clean(&b, &p);
        }
    }
    return b.data;
}

void sl_buf_json_string(sl_buf *b, const char *s)
{
    if (!s)
        sl_buf_puts(b, "null");
    else
        sl_buf_json_stringn(b, s, strlen(s));
}

void sl_buf_json_stringn(sl_buf *b, const char *s, size_t n)
{
    reserve(b, n + 2);
    sl_buf_add(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        const unsigned char *run = p; /* characters that need no escape, added at once */
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p > run) sl_buf_add(b, (const char *)run, (size_t)(p - run));
        if (p == end) break;
        char esc[8];
        switch (*p) {
        case '"':
            sl_buf_add(b, "\\\"", 2);
            break;
        case '\\':
            sl_buf_add(b, "\\\\", 2);
            break;
        case '\n':
            sl_buf_add(b, "\\n", 2);
            break;
        case '\r':
            sl_buf_add(b, "\\r", 2);
            break;
        case '\t':
            sl_buf_add(b, "\\t", 2);
            break;
        default:
            if (*p < 0x20) { /* NUL too: \u0000 */
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                sl_buf_add(b, esc, 6);
            } else {
                size_t len = sl_utf8_len(p, (size_t)(end - p));
                if (len == 0) {
                    sl_buf_add(b, "\\ufffd", 6); /* not UTF-8: the database would refuse it */
                } else {
                    sl_buf_add(b, (const char *)p, len);
                    p += len - 1;
                }
            }
        }
        p++;
    }
    sl_buf_add(b, "\"", 1);
}

void sl_buf_reset(sl_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void sl_buf_free(sl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

const char *sl_buf_str(const sl_buf *b)
{
    return b->data ? b->data : "";
}

/* Reads f to its end, at most max bytes (EFBIG past them), and closes it unless
 * it is stdin. */
static char *read_all(FILE *f, size_t max, size_t *len)
{
    sl_buf b = {0};
    char chunk[8192];
    size_t r;
    while (b.len <= max && (r = fread(chunk, 1, sizeof chunk, f)) > 0)
        sl_buf_add(&b, chunk, r);
    /* a directory opens, then fails to read (EISDIR); a file may grow as it is read */
    int e = ferror(f) ? errno : b.len > max ? EFBIG : 0;
    if (f != stdin) fclose(f);
    if (e) {
        sl_buf_free(&b);
        errno = e;
        return NULL;
    }
    if (!b.data) sl_buf_add(&b, "", 0);
    if (len) *len = b.len;
    return b.data;
}

char *sl_read_file(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rbe"); /* e: close-on-exec */
    return f ? read_all(f, SIZE_MAX, len) : NULL;
}

char *sl_read_source(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO's open would block */
    if (fd < 0) return NULL;
    struct stat st;
    int e = fstat(fd, &st) != 0 ? errno : !S_ISREG(st.st_mode) ? ENODEV : 0;
    if (!e && (uint64_t)st.st_size > max) e = EFBIG;
    FILE *f = e ? NULL : fdopen(fd, "rb");
    if (!f) {
        e = e ? e : errno;
        close(fd);
        errno = e;
        return NULL;
    }
    return read_all(f, max, len);
}

void sl_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || errlen == 0) return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
