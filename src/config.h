/*
 * config.h — the settings every command reads: where the database and state live,
 * where handlers are, and the daemon's knobs. Precedence: flags > environment > file.
 *
 * One sl_config is built in main() and passed down read-only; nothing else holds
 * settings. `serve` keeps a copy of its own, the settings in force, which a
 * reload (SIGHUP) updates with what can change while it runs (see
 * worker_reload.c).
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stddef.h>

struct sl_buf;

#define SL_MAX_DIRS 16
#define SL_MAX_HTTP_LIMITS 64

typedef enum { SL_LOG_LOGFMT = 0, SL_LOG_JSON = 1 } sl_log_format;

typedef struct sl_config {
    char *db_url;                    /* NULL: the embedded cluster under home */
    char *db_source;                 /* where db_url was set: "--db", "DATABASE_URL", "FILE:LINE" */
    char *home;                      /* state directory (SLUICE_HOME) */
    char *handler_dirs[SL_MAX_DIRS]; /* where <job_type>.lua files live */
    int n_handler_dirs;
    char *lua_dirs[SL_MAX_DIRS]; /* extra library roots searched before lua/ */
    int n_lua_dirs;
    char *config_file;                     /* NULL: none found */
    int concurrency;                       /* runs in flight per daemon (default 10) */
    int pool_size;                         /* database connections (default 4) */
    double lease_seconds;                  /* run lease (default 60) */
    double grace_seconds;                  /* shutdown grace period (default 30) */
    double poll_seconds;                   /* fallback poll interval (default 5) */
    double archive_after_days;             /* finished one-time jobs archived after (7) */
    double prune_after_days;               /* runs deleted after (30; a job's last run stays) */
    double retention_every_minutes;        /* how often retention runs (10) */
    int memory_limit_mb;                   /* the Lua state's memory cap (512) */
    long instruction_budget;               /* Lua instructions between yields (100 million) */
    int log_format;                        /* sl_log_format */
    int log_level;                         /* sl_log_level */
    char *http_limits[SL_MAX_HTTP_LIMITS]; /* `http_limit` lines, in order (see http.h) */
    int n_http_limits;
    /* the command line it was built from (main's argv, which outlives every
     * config; not owned): a reload builds the config again from it */
    int argc;
    char **argv;
} sl_config;

/* Fills defaults, then the config file (if any), then the environment. The file
 * is config_flag (--config), else $SLUICE_CONFIG, else <home>/sluice.conf with
 * home = home_flag (--home), else $SLUICE_HOME, else the default; either flag
 * may be NULL. Returns 0, or -1 with a message in err. Flags are applied by the
 * caller afterwards. */
int sl_config_init(sl_config *cfg, const char *config_flag, const char *home_flag, char *err,
                   size_t errlen);

/* Builds cfg as every command gets it: sl_config_init (the file named by
 * --config or found through --home, then the environment), then the global
 * options of argv (--db, --home, --handlers, --lua, --log-format, --log-level),
 * then sl_config_finish; cfg remembers argc and argv. The other arguments go to
 * rest (which has room for argc; both may be NULL), their count to *nrest. Returns
 * 0, or -1 with a message in err (a file's error names FILE:LINE) and nothing
 * to free. Reads the same file and environment each time it is called. */
int sl_config_load(sl_config *cfg, int argc, char **argv, char **rest, int *nrest, char *err,
                   size_t errlen);

/* Handler dirs: flags, else SLUICE_HANDLERS (colon-separated), else the defaults. */
void sl_config_finish(sl_config *cfg);

/* Applies one `key = value` setting on top of cfg; src says where it came from
 * ("--lease", "SLUICE_LEASE_SECONDS", "FILE:LINE") and starts any error. A
 * numeric setting must be a finite number within its bounds (see config.c).
 * Returns 0, or -1 with a message in err. */
int sl_config_set(sl_config *cfg, const char *key, const char *val, const char *src, char *err,
                  size_t errlen);

/* A number as plain decimal text, up to 6 decimals, trailing zeros dropped
 * ("86400", "1.5"): what Postgres reads as a number or in an interval, and
 * people read without an exponent. */
void sl_config_fmt_number(double v, char *out, size_t len);

/* The numeric setting i (0, 1, … in the order `sluice config` shows them): its
 * key, and its value in cfg into *value; NULL past the last. */
const char *sl_config_number_at(const sl_config *cfg, size_t i, double *value);

/* Whether libpq takes the database URL in effect (none: the embedded cluster's,
 * which is sluice's own): 0, or -1 with a message in err that gives libpq's
 * reason and names the setting it came from. Checked once, before any command
 * connects: a URL libpq refuses is not a database that is down. */
int sl_config_check_db(const sl_config *cfg, char *err, size_t errlen);

/* Where the database URL in effect comes from, for a message: "--db",
 * "DATABASE_URL", "the db setting at FILE:LINE", or "the embedded cluster". */
void sl_config_db_origin(const sl_config *cfg, char *buf, size_t len);

/* The PG* environment variables libpq reads for the options url leaves out
 * (those every connection sets itself aside): up to max names into names;
 * returns how many. */
int sl_config_pg_env(const char *url, char (*names)[32], int max);

/* Adds a string to one of the directory lists (copies it). Returns -1 when full. */
int sl_config_add_dir(char **dirs, int *n, const char *dir);

/* A deep copy of src into dst (free it with sl_config_free). */
void sl_config_copy(sl_config *dst, const sl_config *src);

/* Setting i (0, 1, …: db, home, handlers, lua, the numeric settings,
 * log_format, log_level, http_limit): its key, its value in cfg appended to val
 * as text (lists joined; the http_limit lines by "; "; the db URL as given,
 * credentials and all: redact it to show it); NULL past the last. */
const char *sl_config_setting_at(const sl_config *cfg, size_t i, struct sl_buf *val);

void sl_config_free(sl_config *cfg);

#endif
