/*
 * table.c — aligned text tables fitted to the terminal, and the duration and
 * relative-time formatters the views share (see table.h).
 *
 * Text is measured in display columns, one grapheme-ish cluster at a time: a
 * character plus whatever attaches to it (combining marks, the emoji variation
 * selector, a zero-width joiner and the character it joins, a second regional
 * indicator). Characters are measured with wcwidth() under a UTF-8 locale made
 * for the table (newlocale/uselocale: per thread, restored after); without one a
 * small table of wide ranges stands in.
 */
#include "table.h"
#include "buf.h"

#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <wchar.h>

typedef struct {
    char *text;
    sl_color color;
} cell;

typedef struct {
    char *header;
    sl_align align;
    int shrink_min;
    size_t width;
} column;

struct sl_table {
    int ncols;
    column *cols;
    cell *cells;
    size_t ncells, cap;
};

/* ------------------------------------------------------------------ terminal */

sl_term sl_term_for(FILE *out)
{
    sl_term term = {100, 0};
    int fd = fileno(out);
    int tty = fd >= 0 && isatty(fd);
    struct winsize ws;
    const char *cols = getenv("COLUMNS");
    if (tty && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
        term.width = ws.ws_col;
    } else if (cols && *cols) {
        char *end;
        long n = strtol(cols, &end, 10);
        if (*end == '\0' && n > 0 && n < 100000) term.width = (int)n;
    }
    const char *no_color = getenv("NO_COLOR");
    const char *termname = getenv("TERM");
    term.color = tty && !(no_color && *no_color) && !(termname && strcmp(termname, "dumb") == 0);
    return term;
}

const char *sl_color_on(const sl_term *term, sl_color c)
{
    if (!term->color) return "";
    switch (c) {
    case SL_COLOR_RED:
        return "\033[31m";
    case SL_COLOR_GREEN:
        return "\033[32m";
    case SL_COLOR_YELLOW:
        return "\033[33m";
    case SL_COLOR_BLUE:
        return "\033[34m";
    case SL_COLOR_DIM:
        return "\033[2m";
    case SL_COLOR_BOLD:
        return "\033[1m";
    default:
        return "";
    }
}

const char *sl_color_off(const sl_term *term)
{
    return term->color ? "\033[0m" : "";
}

/* ------------------------------------------------------------------ measuring */

/* The code point at s (length in *n); invalid UTF-8 reads as U+FFFD, one byte. */
static uint32_t decode(const unsigned char *s, size_t *n)
{
    uint32_t c = s[0];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0) {
        *n = 1;
        return 0xFFFD;
    }
    if (len == 1) {
        *n = 1;
        return c;
    }
    c &= 0x7F >> len;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *n = 1;
            return 0xFFFD;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    *n = (size_t)len;
    return c;
}

/* Wide ranges for when no UTF-8 locale exists (East Asian Wide and emoji). */
static int fallback_width(uint32_t c)
{
    static const uint32_t wide[][2] = {
        {0x1100, 0x115F},   {0x231A, 0x231B},   {0x23E9, 0x23EC},   {0x23F0, 0x23F3},
        {0x25FD, 0x25FE},   {0x2614, 0x2615},   {0x2648, 0x2653},   {0x267F, 0x267F},
        {0x2693, 0x2693},   {0x26A1, 0x26A1},   {0x26AA, 0x26AB},   {0x26BD, 0x26BE},
        {0x26C4, 0x26C5},   {0x26D4, 0x26D4},   {0x26EA, 0x26EA},   {0x26F2, 0x26F5},
        {0x26FA, 0x26FD},   {0x2705, 0x2705},   {0x270A, 0x270B},   {0x2728, 0x2728},
        {0x274C, 0x274C},   {0x274E, 0x274E},   {0x2753, 0x2757},   {0x2795, 0x2797},
        {0x27B0, 0x27B0},   {0x27BF, 0x27BF},   {0x2B1B, 0x2B1C},   {0x2B50, 0x2B55},
        {0x2E80, 0x303E},   {0x3041, 0x33FF},   {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},
        {0xA000, 0xA4CF},   {0xAC00, 0xD7A3},   {0xF900, 0xFAFF},   {0xFE30, 0xFE4F},
        {0xFF00, 0xFF60},   {0xFFE0, 0xFFE6},   {0x1F004, 0x1F004}, {0x1F0CF, 0x1F0CF},
        {0x1F18E, 0x1F18E}, {0x1F191, 0x1F19A}, {0x1F200, 0x1F251}, {0x1F300, 0x1F64F},
        {0x1F680, 0x1F6FF}, {0x1F7E0, 0x1F7EB}, {0x1F900, 0x1F9FF}, {0x1FA70, 0x1FAFF},
        {0x20000, 0x3FFFD},
    };
    if ((c >= 0x300 && c <= 0x36F) || (c >= 0x200B && c <= 0x200F) ||
        (c >= 0xFE00 && c <= 0xFE0F) || (c >= 0x20D0 && c <= 0x20FF))
        return 0;
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++)
        if (c >= wide[i][0] && c <= wide[i][1]) return 2;
    return 1;
}

/* Columns of one character; control characters count one (they print as a space). */
static int char_width(uint32_t c, int have_locale)
{
    if (c < 0x80) return 1;
    if (!have_locale) return fallback_width(c);
    int w = wcwidth((wchar_t)c);
    return w < 0 ? 1 : w;
}

static int is_regional(uint32_t c)
{
    return c >= 0x1F1E6 && c <= 0x1F1FF;
}

/* The cluster at s: its length in bytes (*n) and its width in columns. */
static int cluster(const char *s, size_t *n, int have_locale)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len;
    uint32_t c = decode(p, &len);
    int w = char_width(c, have_locale);
    size_t used = len;
    int first_regional = is_regional(c);
    while (p[used]) {
        uint32_t d = decode(p + used, &len);
        if (d == 0x200D) { /* zero-width joiner: the next character joins in */
            used += len;
            if (p[used]) {
                decode(p + used, &len);
                used += len;
            }
        } else if (d == 0xFE0F) { /* emoji presentation */
            used += len;
            if (w < 2) w = 2;
        } else if (first_regional && is_regional(d)) { /* a flag: two indicators */
            used += len;
            first_regional = 0;
            w = 2;
        } else if (d >= 0x300 && char_width(d, have_locale) == 0) {
            used += len;
        } else {
            break;
        }
    }
    *n = used;
    return w;
}

/* A UTF-8 LC_CTYPE locale for wcwidth, or (locale_t)0. */
static locale_t utf8_locale(void)
{
    locale_t l = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (!l) l = newlocale(LC_CTYPE_MASK, "en_US.UTF-8", (locale_t)0);
    return l;
}

static size_t measure(const char *s, int have_locale)
{
    size_t w = 0, n;
    while (s && *s) {
        w += (size_t)cluster(s, &n, have_locale);
        s += n;
    }
    return w;
}

size_t sl_text_width(const char *s)
{
    locale_t l = utf8_locale();
    locale_t old = l ? uselocale(l) : (locale_t)0;
    size_t w = measure(s, l != (locale_t)0);
    if (l) {
        uselocale(old);
        freelocale(l);
    }
    return w;
}

/* ------------------------------------------------------------------ visible text */

/* A C1 control (U+0080 to U+009F, CSI among them) at p, as UTF-8. */
static int is_c1(const unsigned char *p)
{
    return p[0] == 0xC2 && p[1] >= 0x80 && p[1] < 0xA0;
}

/* Byte b (below 0x80) in caret notation when it is a control: "^[" for ESC,
 * "^?" for DEL; else itself. */
static void caret(sl_buf *b, unsigned char c)
{
    char s[2] = {'^', c == 0x7F ? '?' : (char)(c + 0x40)};
    if (c < 0x20 || c == 0x7F)
        sl_buf_add(b, s, 2);
    else
        sl_buf_add(b, (const char *)&c, 1);
}

char *sl_text_visible(const char *s, int keep_layout)
{
    sl_buf b = {0};
    sl_buf_puts(&b, ""); /* "" rather than NULL for empty text */
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        size_t n;
        if (*p < 0x80) {
            if (keep_layout && (*p == '\n' || *p == '\t'))
                sl_buf_add(&b, (const char *)p, 1);
            else
                caret(&b, *p);
            p++;
        } else if ((n = sl_utf8_len(p, 4)) == 0) { /* not UTF-8: the byte as cat -v shows it */
            sl_buf_puts(&b, "M-");
            caret(&b, *p & 0x7F);
            p++;
        } else if (is_c1(p)) {
            sl_buf_puts(&b, "M-");
            caret(&b, p[1] & 0x7F);
            p += 2;
        } else {
            sl_buf_add(&b, (const char *)p, n);
            p += n;
        }
    }
    return b.data; /* allocated by the first puts: "" for empty text */
}

/* ------------------------------------------------------------------ the table */

sl_table *sl_table_new(const sl_table_col *cols, int ncols)
{
    sl_table *t = sl_xcalloc(1, sizeof *t);
    t->ncols = ncols;
    t->cols = sl_xcalloc((size_t)ncols, sizeof *t->cols);
    for (int i = 0; i < ncols; i++) {
        t->cols[i].header = sl_xstrdup(cols[i].header ? cols[i].header : "");
        t->cols[i].align = cols[i].align;
        t->cols[i].shrink_min = cols[i].shrink_min;
    }
    return t;
}

void sl_table_free(sl_table *t)
{
    if (!t) return;
    for (int i = 0; i < t->ncols; i++)
        free(t->cols[i].header);
    for (size_t i = 0; i < t->ncells; i++)
        free(t->cells[i].text);
    free(t->cols);
    free(t->cells);
    free(t);
}

void sl_table_add(sl_table *t, const char *text, sl_color color)
{
    if (t->ncells == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->cells = sl_xrealloc(t->cells, t->cap * sizeof *t->cells);
    }
    t->cells[t->ncells].text = sl_xstrdup(text ? text : "");
    t->cells[t->ncells].color = color;
    t->ncells++;
}

int sl_table_rows(const sl_table *t)
{
    return t->ncols > 0 ? (int)(t->ncells / (size_t)t->ncols) : 0;
}

/* Prints s in exactly `width` columns: cut with "…" when wider, padded per align
 * (no padding after the last column). */
static void emit(FILE *out, const char *s, size_t width, sl_align align, int last, int have_locale)
{
    size_t natural = measure(s, have_locale);
    size_t limit = natural > width ? (width > 0 ? width - 1 : 0) : natural;
    size_t shown = 0, n;
    if (natural <= width && align == SL_ALIGN_RIGHT)
        for (size_t i = natural; i < width; i++)
            fputc(' ', out);
    const char *p = s;
    while (*p) {
        int w = cluster(p, &n, have_locale);
        if (shown + (size_t)w > limit) break;
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)p[i];
            if (i + 1 < n && is_c1((const unsigned char *)p + i)) {
                fputc(' ', out);
                i++;
                continue;
            }
            fputc(ch < 0x20 || ch == 0x7F ? ' ' : ch, out);
        }
        shown += (size_t)w;
        p += n;
    }
    if (natural > width && width > 0) {
        fputs("…", out);
        shown++;
    }
    if ((natural > width || align == SL_ALIGN_LEFT) && !last)
        for (size_t i = shown; i < width; i++)
            fputc(' ', out);
}

/* Shrinks columns until the table fits `avail` columns (or nothing can give):
 * first shrinkable columns down to their minimum, then down to their header,
 * then every column down to its header, then down to 3 columns (headers cut
 * too), widest first. */
static void fit(sl_table *t, size_t avail)
{
    size_t total = 2 * (size_t)(t->ncols - 1);
    for (int i = 0; i < t->ncols; i++)
        total += t->cols[i].width;
    for (int pass = 0; pass < 4 && total > avail; pass++) {
        while (total > avail) {
            int pick = -1;
            for (int i = 0; i < t->ncols; i++) {
                column *c = &t->cols[i];
                size_t h = measure(c->header, 0), min = h > 3 && pass < 3 ? h : 3;
                if (pass < 2 && c->shrink_min <= 0) continue;
                if (pass == 0 && (size_t)c->shrink_min > min) min = (size_t)c->shrink_min;
                if (c->width > min && (pick < 0 || c->width > t->cols[pick].width)) pick = i;
            }
            if (pick < 0) break;
            t->cols[pick].width--;
            total--;
        }
    }
}

void sl_table_print(sl_table *t, FILE *out, const sl_term *term)
{
    locale_t l = utf8_locale();
    locale_t old = l ? uselocale(l) : (locale_t)0;
    int have = l != (locale_t)0;
    size_t rows = (size_t)sl_table_rows(t);
    for (int i = 0; i < t->ncols; i++) {
        column *c = &t->cols[i];
        c->width = measure(c->header, have);
        for (size_t r = 0; r < rows; r++) {
            size_t w = measure(t->cells[r * (size_t)t->ncols + (size_t)i].text, have);
            if (w > c->width) c->width = w;
        }
    }
    fit(t, term->width > 0 ? (size_t)term->width : 100);
    for (int i = 0; i < t->ncols; i++) {
        fputs(sl_color_on(term, SL_COLOR_BOLD), out);
        emit(out, t->cols[i].header, t->cols[i].width, t->cols[i].align, i == t->ncols - 1, have);
        fputs(sl_color_off(term), out);
        if (i < t->ncols - 1) fputs("  ", out);
    }
    fputc('\n', out);
    for (size_t r = 0; r < rows; r++) {
        for (int i = 0; i < t->ncols; i++) {
            const cell *c = &t->cells[r * (size_t)t->ncols + (size_t)i];
            int colored = c->color != SL_COLOR_NONE && term->color && c->text[0];
            if (colored) fputs(sl_color_on(term, c->color), out);
            emit(out, c->text, t->cols[i].width, t->cols[i].align, i == t->ncols - 1, have);
            if (colored) fputs(sl_color_off(term), out);
            if (i < t->ncols - 1) fputs("  ", out);
        }
        fputc('\n', out);
    }
    if (l) {
        uselocale(old);
        freelocale(l);
    }
}

/* ------------------------------------------------------------------ formatting */

void sl_fmt_duration(double s, char *out, size_t len)
{
    if (!(s > 0)) {
        snprintf(out, len, "0s");
        return;
    }
    if (s < 1) {
        snprintf(out, len, "%.0fms", s * 1000);
        return;
    }
    if (s < 10) {
        snprintf(out, len, "%.1fs", s);
        return;
    }
    long n = (long)(s + 0.5);
    long d = n / 86400, h = n % 86400 / 3600, m = n % 3600 / 60, sec = n % 60;
    if (n < 60)
        snprintf(out, len, "%lds", n);
    else if (n < 600)
        snprintf(out, len, sec ? "%ldm%02lds" : "%ldm", m, sec);
    else if (n < 3600)
        snprintf(out, len, "%ldm", m);
    else if (n < 86400)
        snprintf(out, len, m ? "%ldh%02ldm" : "%ldh", h, m);
    else
        snprintf(out, len, h ? "%ldd%02ldh" : "%ldd", d, h);
}

void sl_fmt_ago(double ago, char *out, size_t len)
{
    double a = ago < 0 ? -ago : ago;
    char span[32];
    long n = (long)(a + 0.5);
    if (a < 5) {
        snprintf(out, len, ago < 0 ? "now" : "just now");
        return;
    }
    if (n < 60)
        snprintf(span, sizeof span, "%lds", n);
    else if (n < 3600)
        snprintf(span, sizeof span, "%ldm", n / 60);
    else if (n < 86400)
        snprintf(span, sizeof span, "%ldh", n / 3600);
    else
        snprintf(span, sizeof span, "%ldd", n / 86400);
    snprintf(out, len, ago < 0 ? "in %s" : "%s ago", span);
}
