/*
 * buf.h — a growable byte buffer, with JSON string escaping, for building SQL
 * payloads and output. Owns its memory; sl_buf_free() releases it.
 */
#ifndef SL_BUF_H
#define SL_BUF_H

#include <stddef.h>

/* Allocation that cannot fail: on out of memory it writes "sluice: out of
 * memory" to stderr and aborts. For the buffers below and for paths that have
 * no way to report a failure (building a message, start-up); code that can fail
 * an operation or raise a Lua error checks malloc's result instead. */
_Noreturn void sl_oom(void);
void *sl_xmalloc(size_t n);
void *sl_xcalloc(size_t n, size_t size);
void *sl_xrealloc(void *p, size_t n);
char *sl_xstrdup(const char *s);
char *sl_xstrndup(const char *s, size_t n);

/* A buffer's growth uses sl_xrealloc: adding to one never fails. */
typedef struct sl_buf {
    char *data; /* NUL-terminated once anything was added */
    size_t len, cap;
} sl_buf;

void sl_buf_add(sl_buf *b, const char *s, size_t n);
void sl_buf_puts(sl_buf *b, const char *s);
void sl_buf_printf(sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string literal (with quotes); NULL → null */
void sl_buf_json_string(sl_buf *b, const char *s);
/* The n bytes at s (NULs included) as a JSON string literal: '"', '\\' and
 * control characters escaped ('/' is not), a byte that is not part of valid
 * UTF-8 as \ufffd. */
void sl_buf_json_stringn(sl_buf *b, const char *s, size_t n);
/* items[0..n-1] as a list in a sentence: "A", "A and B", "A, B and C" (nothing
 * when n is 0). */
void sl_buf_join_and(sl_buf *b, const char *const *items, size_t n);
/* ids ("a,b," as lists of run ids are kept, or "a,b": one trailing comma is
 * dropped) as a Postgres array literal, "{a,b}" ("{}" for none). */
void sl_buf_id_array(sl_buf *b, const char *ids);
void sl_buf_reset(sl_buf *b);
void sl_buf_free(sl_buf *b);
/* The contents ("" when empty); valid until the next change. */
const char *sl_buf_str(const sl_buf *b);

/* Formats a message into err (ignored when err is NULL or errlen 0): the
 * "char *err, size_t errlen" convention of functions that can fail. */
void sl_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Length of the valid UTF-8 sequence of two to four bytes at p (lead byte >=
 * 0x80; at most avail bytes readable, or up to a NUL), or 0: overlong forms,
 * surrogates and code points past U+10FFFF are not valid. */
size_t sl_utf8_len(const unsigned char *p, size_t avail);

/* Code point c (at most U+10FFFF) as UTF-8 into out; returns its length, 1 to 4.
 * Surrogates are encoded as any other code point: callers replace them first. */
size_t sl_utf8_put(char out[4], unsigned long c);

/* The value of the four hex digits at p (those of a \uXXXX escape), or -1 when
 * fewer than four bytes are readable (avail) or one is not a hex digit. */
long sl_hex4(const char *p, size_t avail);

/* A copy of s with each byte that is not part of valid UTF-8 replaced by U+FFFD.
 * Caller frees. */
char *sl_utf8_clean(const char *s);

/* A copy of JSON text (e.g. cjson's, which passes a Lua string's bytes through)
 * that Postgres accepts as jsonb: bytes that are not UTF-8 become U+FFFD, and so
 * does the escape \u0000 (jsonb has no NUL). Caller frees. */
char *sl_json_clean(const char *json);

/* A whole file ("-": standard input), NUL-terminated, its size in *len; NULL
 * (errno set) if it cannot be opened or read. Caller frees. */
char *sl_read_file(const char *path, size_t *len);

/* The same for a file that must be a regular one of at most max bytes (a
 * handler or a library: a FIFO would block the reader, a device never end).
 * Opening does not block. NULL with errno set, ENODEV for anything but a
 * regular file and EFBIG for one larger than max. */
char *sl_read_source(const char *path, size_t max, size_t *len);

#endif
