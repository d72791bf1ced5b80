/*
 * log.h — the daemon's structured log: one line per event on stderr, logfmt by
 * default or JSON, with a level, a message and key/value fields.
 *
 *   sl_log(SL_INFO, "run started", "run", id, "type", type, NULL);
 *   → ts=2026-11-26T10:00:00.123Z level=info msg="run started" run=… type=…
 *
 * The format and level are set at start-up (sl_log_setup), and again only by
 * serve's reload of its config file, on the loop's thread; read otherwise.
 * Values are passed through sl_redact() so credentials never reach the log.
 */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stddef.h>

enum { SL_DEBUG = 0, SL_INFO = 1, SL_WARN = 2, SL_ERROR = 3 };

void sl_log_setup(int format, int level);
int sl_log_enabled(int level);

/* A key may start with one of these to give its value a type in JSON lines
 * (logfmt writes the value alike either way; the prefix is not written):
 *
 *   sl_log(SL_INFO, "run completed", "run", id, SL_NUM "seconds", "0.012", NULL);
 *   → {…,"run":"6f1c…","seconds":0.012}
 *
 * SL_NUM: the value is a number's text, as "%d" or "%.3f" write it; SL_BOOL:
 * "true" or "false". Every other value is a string whatever its text: a type
 * is the call site's, never guessed from the value (a brand named "123" or a
 * run id stays a string). A typed value that is not what its type takes (not
 * a finite number in JSON's grammar, not true/false) is written as a string. */
#define SL_NUM "\001"
#define SL_BOOL "\002"

/* msg, then key/value string pairs, terminated by NULL. A NULL value is skipped. */
void sl_log(int level, const char *msg, ...);

/* printf-style message with no fields. */
void sl_logf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The failures of a task the process repeats (a lease renewal, a rescue pass)
 * while the database refuses it (read-only, a privilege revoked): the first
 * failure of a stretch is logged as it comes, the next ones as reminders only,
 * 10 s after it and then at doubling intervals up to 5 min (with how many and
 * for how long: `failures`, `failing_for`), the others at debug; the first
 * success after says that it works again. Its caller keeps one per task,
 * zeroed to begin with. */
typedef struct {
    double since; /* the stretch's first failure; 0: none */
    double told;  /* when it was last logged */
    double every; /* the interval to the next reminder */
    long failures;
} sl_log_repeat;

/* The schedule alone, for a caller with lines of its own (the pool's outage):
 * 1 when something failing at now is to be logged — the first failure of a
 * stretch (which starts it) or a reminder due (which moves the next one on) —
 * 0 when it is not. */
int sl_log_repeat_due(sl_log_repeat *r, double now);

/* An attempt of the task answered, at now (the loop's time). Failed (err not
 * NULL): `failed` ("rescue pass failed") with err, at `level` (SL_DEBUG: an
 * outage, which the pool reports, logged at debug and not counted). Worked
 * after failures: `again` ("rescue pass works again") at info, with how many
 * and for how long (`failures`, `failed_for`). */
void sl_log_attempt(sl_log_repeat *r, int level, double now, const char *err, const char *failed,
                    const char *again);

/* Parses "debug|info|warn|error"; -1 if unknown. */
int sl_log_level_parse(const char *s);

/* Rewrites credentials in s (in place): Authorization/Cookie header values,
 * and token/key/secret/password-like query values, become "[redacted]".
 * Returns a newly allocated string. */
char *sl_redact(const char *s);

#endif
