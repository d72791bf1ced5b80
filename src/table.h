/*
 * table.h — aligned text tables for the terminal views (`sluice types`, `health`,
 * `runs`, `jobs`, `show`), and the small formatters they share.
 *
 *   static const sl_table_col cols[] = {
 *       {"TYPE", SL_ALIGN_LEFT, 0},
 *       {"TOOK", SL_ALIGN_RIGHT, 0},
 *       {"LOG", SL_ALIGN_LEFT, 12},                    // may shrink to 12 columns
 *   };
 *   sl_term term = sl_term_for(stdout);
 *   sl_table *t = sl_table_new(cols, 3);
 *   sl_table_add(t, "📣 echo", SL_COLOR_NONE); ...     // cells, row by row
 *   sl_table_print(t, stdout, &term);
 *   sl_table_free(t);
 *
 * Widths are display columns: UTF-8 is decoded and each character measured with
 * wcwidth() under a UTF-8 locale (emoji and CJK take two columns, combining marks
 * and zero-width joiners none; a character followed by the emoji variation
 * selector takes two). When the table is wider than the terminal, shrinkable
 * columns give way first (the widest first), then the others down to their
 * headers; cut cells end in "…". Control characters in cells print as spaces.
 * Colour is used only when sl_term says so (a terminal, NO_COLOR unset).
 */
#ifndef SL_TABLE_H
#define SL_TABLE_H

#include <stddef.h>
#include <stdio.h>

typedef enum {
    SL_COLOR_NONE = 0,
    SL_COLOR_RED,
    SL_COLOR_GREEN,
    SL_COLOR_YELLOW,
    SL_COLOR_BLUE,
    SL_COLOR_DIM,
    SL_COLOR_BOLD,
} sl_color;

typedef enum { SL_ALIGN_LEFT = 0, SL_ALIGN_RIGHT } sl_align;

/* How output to one stream looks: its width in columns and whether to colour. */
typedef struct sl_term {
    int width;
    int color;
} sl_term;

/* The width is the terminal's (TIOCGWINSZ) when out is a terminal, else
 * $COLUMNS, else 100. Colour: out is a terminal, $NO_COLOR is unset or empty and
 * $TERM is not "dumb". */
sl_term sl_term_for(FILE *out);

/* The escape sequence that starts colour c, and the one that ends it ("" when
 * term does not colour). */
const char *sl_color_on(const sl_term *term, sl_color c);
const char *sl_color_off(const sl_term *term);

typedef struct sl_table sl_table;

/* One column: its header and alignment; shrink_min > 0 makes it shrinkable
 * down to that many columns before any other column gives way. */
typedef struct sl_table_col {
    const char *header;
    sl_align align;
    int shrink_min;
} sl_table_col;

/* A table of the ncols columns cols[0..ncols), left to right. */
sl_table *sl_table_new(const sl_table_col *cols, int ncols);
void sl_table_free(sl_table *t);

/* Appends the next cell (left to right, row after row); NULL is an empty cell. */
void sl_table_add(sl_table *t, const char *text, sl_color color);

/* Number of complete rows added so far. */
int sl_table_rows(const sl_table *t);

/* Prints the header and the rows, fitted to term->width. */
void sl_table_print(sl_table *t, FILE *out, const sl_term *term);

/* Display columns of the UTF-8 text s (see above). */
size_t sl_text_width(const char *s);

/* Text safe to print to a terminal, as `cat -v` shows it: each control
 * character in caret notation ("^[" for ESC, "^G" for BEL, "^M" for CR, "^?"
 * for DEL), a C1 control (U+0080 to U+009F) and a byte that is not UTF-8 as
 * "M-" and the same ("M-^[" for U+009B, CSI). keep_layout keeps new lines and
 * tabs. Returns a malloc'd string. */
char *sl_text_visible(const char *s, int keep_layout);

/* A duration for people: "420ms", "4.2s", "45s", "3m05s", "12m", "3h05m", "7d", "2d03h". */
void sl_fmt_duration(double seconds, char *out, size_t len);

/* Seconds relative to now for people: "just now", "3m ago", "in 2h". A positive
 * value is in the past. */
void sl_fmt_ago(double seconds_ago, char *out, size_t len);

#endif
