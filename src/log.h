/*
 * log.h — the daemon's structured log: one line per event on stderr, logfmt by
 * default or JSON, with a level, a message and key/value fields.
 *
 *   sl_log(SL_INFO, "run started", "run", id, "type", type, NULL);
 *   → ts=2026-11-26T10:00:00.123Z level=info msg="run started" run=… type=…
 *
 * The format and level are set once at start-up (sl_log_setup) and only read after.
 * Values are passed through sl_redact() so credentials never reach the log.
 */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stddef.h>

enum { SL_DEBUG = 0, SL_INFO = 1, SL_WARN = 2, SL_ERROR = 3 };

void sl_log_setup(int format, int level);
int sl_log_enabled(int level);

/* msg, then key/value string pairs, terminated by NULL. A NULL value is skipped. */
void sl_log(int level, const char *msg, ...);

/* printf-style message with no fields. */
void sl_logf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses "debug|info|warn|error"; -1 if unknown. */
int sl_log_level_parse(const char *s);

/* Rewrites credentials in s (in place): Authorization/Cookie header values,
 * and token/key/secret/password-like query values, become "[redacted]".
 * Returns a newly allocated string. */
char *sl_redact(const char *s);

#endif
