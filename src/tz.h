/*
 * tz.h — IANA time zones without the C library's process-global TZ state.
 *
 * A zone is loaded once from a TZif file (versions 1 to 4; the 64-bit section is
 * preferred) under the zoneinfo directory ($TZDIR, else /usr/share/zoneinfo) into
 * an sl_tz the caller owns. Instants after the file's last transition follow the
 * POSIX TZ rule in its footer, so "slim" files work. A loaded zone is read-only:
 * one sl_tz may be shared by any number of callers and threads.
 *
 * Times are int64 seconds since 1970-01-01T00:00:00Z, leap seconds not counted.
 * "Local seconds" are the same count for the wall clock read as if it were UTC,
 * i.e. t + utoff.
 */
#ifndef SL_TZ_H
#define SL_TZ_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct sl_tz sl_tz;

/* Where zones are read from when $TZDIR is not set. */
#define SL_TZ_DEFAULT_DIR "/usr/share/zoneinfo"

/* Zone names are relative paths of letters, digits and "/_+-.", with no empty,
 * "." or ".." components: nothing that could leave the zoneinfo directory.
 * 1 for such a name, else 0. */
int sl_tz_valid_name(const char *name);

/* Loads the zone `name` ("Europe/Berlin"). "UTC" and "Etc/UTC" are built in and
 * work without tzdata. Names are checked first: no absolute paths, no "." or ".."
 * components, only [A-Za-z0-9/_+-.]. Returns NULL with a message in err. */
sl_tz *sl_tz_load(const char *name, char *err, size_t errlen);

/* The same, reading from the directory `dir` instead of $TZDIR. */
sl_tz *sl_tz_load_dir(const char *dir, const char *name, char *err, size_t errlen);

/* A zone made from a POSIX TZ string alone, e.g. "EST5EDT,M3.2.0,M11.1.0" or
 * "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0" (the TZif footer syntax, including the
 * version 3 extensions). A DST zone with no rule uses M3.2.0,M11.1.0. */
sl_tz *sl_tz_from_posix(const char *spec, char *err, size_t errlen);

void sl_tz_free(sl_tz *tz);

/* The name the zone was loaded with (the spec for sl_tz_from_posix zones). */
const char *sl_tz_name(const sl_tz *tz);

/* UTC instant → local broken-down time (tm_isdst set, tm_wday and tm_yday
 * filled, other fields zeroed), the offset east of UTC in seconds, and
 * the abbreviation ("EDT", "+1030"; it lives as long as tz). Any of out, utcoff
 * and abbr may be NULL. Returns 0, or -1 if t is outside ±1e15 seconds. */
int sl_tz_to_local(const sl_tz *tz, int64_t t, struct tm *out, int *utcoff, const char **abbr);

/* Local wall time → the UTC instants showing it, earliest first. Only tm_year,
 * tm_mon, tm_mday, tm_hour, tm_min and tm_sec are read (out-of-range values are
 * carried, as mktime does; tm_isdst is ignored). Returns 1, 2 (the wall time
 * repeats when clocks go back), or 0 when it falls in a gap (clocks went forward
 * over it); then out[0] is the first instant after the gap, i.e. the moment of
 * the transition. Returns -1 if the time is out of range. */
int sl_tz_from_local(const sl_tz *tz, const struct tm *local, int64_t out[2]);

/* The same for local seconds. */
int sl_tz_from_local_seconds(const sl_tz *tz, int64_t local, int64_t out[2]);

/* The offset east of UTC in effect at t, in seconds. */
int sl_tz_offset(const sl_tz *tz, int64_t t);

/* The first instant after t at which the zone's offset, DST flag or abbreviation
 * may change: 1 and *when set, or 0 if there is none. */
int sl_tz_next_transition(const sl_tz *tz, int64_t t, int64_t *when);

/* ---- proleptic Gregorian calendar helpers (pure arithmetic) ---- */

/* Days since 1970-01-01 of year y, month m (1-12), day d (1-31). */
int64_t sl_days_from_civil(int64_t y, int m, int d);

/* The inverse: year, month (1-12) and day (1-31) of a day count. */
void sl_civil_from_days(int64_t days, int64_t *y, int *m, int *d);

/* 28 to 31. */
int sl_days_in_month(int64_t y, int m);

/* ---- which names are one zone (tz_links.c) ---- */

/* The names zone `name` goes by in the zoneinfo directory dir (NULL: $TZDIR,
 * else SL_TZ_DEFAULT_DIR), sorted, name among them: the zone and every link of
 * the IANA database that leads to it ("US/Eastern": "America/New_York",
 * "US/Eastern", …), read from the directory's tzdata.zi. Without tzdata.zi, the
 * names whose file is name's file (a symbolic or hard link); a copy is not
 * known as a link. Zones that are distinct in the database are never one, however
 * alike their rules. "UTC" and "Etc/UTC" are always one (both are built in). A
 * name the database does not know is alone. Into *names (n of them, each and the
 * array malloc'd: sl_tz_names_free); 0, or -1 with a message in err when name is
 * not a valid zone name. Whether the zone exists is not checked: load it. */
int sl_tz_same_zone(const char *dir, const char *name, char ***names, size_t *n, char *err,
                    size_t errlen);

void sl_tz_names_free(char **names, size_t n);

/* ---- a cache of loaded zones, owned by its caller ---- */

typedef struct sl_tz_cache sl_tz_cache;

/* An empty cache (made at start-up: aborts when out of memory, see buf.h). */
sl_tz_cache *sl_tz_cache_new(void);

/* The zone `name`, loaded on first use and kept until sl_tz_cache_free(). Failed
 * loads are not cached. NULL with a message in err. */
const sl_tz *sl_tz_cache_get(sl_tz_cache *cache, const char *name, char *err, size_t errlen);

void sl_tz_cache_free(sl_tz_cache *cache);

#endif
