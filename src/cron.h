/*
 * cron.h — five-field cron expressions and their next fire time in a time zone.
 *
 *   minute hour day-of-month month day-of-week     e.g. "0,30 9-17 * * mon-fri"
 *
 * Fields take *, values, ranges a-b and lists a,b,c; a step "/n" may follow *,
 * a range, or a single value a (meaning a to the field's maximum). Months and weekdays take English
 * names (jan, mon; any case); day-of-week 0 and 7 are both Sunday. @hourly, @daily, @midnight,
 * @weekly, @monthly, @yearly and @annually stand for their usual expressions.
 * When neither day field starts with '*', a day matches if either does (the
 * Vixie cron rule); otherwise both must.
 *
 * Time zones and daylight saving time (see docs/cron.md):
 *   - a wall time skipped when clocks go forward fires at the moment they jump;
 *   - a wall time repeated when clocks go back fires once, at its first pass;
 *   - except that jobs whose hour field starts with '*' (hourly and finer) just
 *     follow the real clock: nothing is added in a gap, and the repeated hour
 *     runs again, so an hourly job fires once every real hour.
 *
 * Pure computation: no I/O, no global state; a parsed sl_cron is read-only.
 */
#ifndef SL_CRON_H
#define SL_CRON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "tz.h"

typedef struct sl_cron sl_cron;

/* How far sl_cron_next() looks ahead before giving up. */
#define SL_CRON_HORIZON_YEARS 30

/* Parses expr. Returns NULL with a message naming the field in err, e.g.
 * `minute field "61": value 61 out of range 0-59` or `expected 5 fields, got 4`. */
sl_cron *sl_cron_parse(const char *expr, char *err, size_t errlen);

void sl_cron_free(sl_cron *c);

/* The first fire time strictly after `after` (UTC seconds) in zone tz (NULL =
 * UTC): 0 and *next set, or -1 if it never fires within SL_CRON_HORIZON_YEARS
 * (e.g. "0 0 30 2 *"). Fire times are at second 0 of a local minute. */
int sl_cron_next(const sl_cron *c, const sl_tz *tz, int64_t after, int64_t *next);

/* True if the local wall time (tm_year, tm_mon, tm_mday, tm_hour, tm_min; tm_wday
 * is recomputed) matches all five fields, ignoring time zones. */
int sl_cron_matches(const sl_cron *c, const struct tm *local);

/* True if the hour field starts with '*' (the job follows the real clock across
 * DST changes rather than the wall clock). */
int sl_cron_is_hourly(const sl_cron *c);

#endif
