/*
 * config.c — builds the one sl_config: defaults, then environment, then the
 * config file. Flags are applied on top by main().
 *
 * Config file format (docs/operations.md): `key = value` lines, `#` comments.
 * Keys: db, home, handlers (colon-separated), lua, the numeric settings (the
 * table `numbers` below: concurrency, lease_seconds, …), log_format, log_level,
 * and http_limit (repeatable: `http_limit = NAME RATE/PERIOD [burst=N]
 * [concurrency=N]`, see http.h and docs/http.md).
 */
#include "config.h"
#include "buf.h"
#include "http.h"
#include "log.h"
#include "pg.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int sl_config_add_dir(char **dirs, int *n, const char *dir)
{
    if (*n >= SL_MAX_DIRS) return -1;
    dirs[(*n)++] = sl_xstrdup(dir);
    return 0;
}

static void set_str(char **slot, const char *v)
{
    free(*slot);
    *slot = v ? sl_xstrdup(v) : NULL;
}

static void add_path_list(char **dirs, int *n, const char *list)
{
    char *copy = sl_xstrdup(list), *save = NULL;
    for (char *p = strtok_r(copy, ":", &save); p; p = strtok_r(NULL, ":", &save))
        if (*p) sl_config_add_dir(dirs, n, p);
    free(copy);
}

static char *default_home(void)
{
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    char buf[4096];
    if (geteuid() == 0) return sl_xstrdup("/var/lib/sluice");
    if (xdg && *xdg)
        snprintf(buf, sizeof buf, "%s/sluice", xdg);
    else
        snprintf(buf, sizeof buf, "%s/.local/state/sluice", home && *home ? home : "/tmp");
    return sl_xstrdup(buf);
}

/* ------------------------------------------------------------------ numbers */

/* Every numeric setting: its field, default, bounds and what it counts, in
 * the order `sluice config` shows them (docs/operations.md lists the same). The
 * one list of them: sl_config_set finds a key here, parses and stores it, and
 * sl_config_init fills the defaults. NaN, infinities and values outside the
 * bounds are refused: a lease of nan aborted the daemon, one of 0.000001
 * renewed itself without end, and 1e+06 days was no interval Postgres reads. */
typedef enum { NUM_INT, NUM_LONG, NUM_DOUBLE } num_type;

typedef struct {
    const char *key; /* the field's name */
    size_t offset;   /* of the field in sl_config */
    num_type type;   /* the field's; NUM_INT and NUM_LONG take whole numbers only */
    double dflt, min, max;
    const char *unit; /* for the message: "seconds", "days", … or NULL */
} number;

/* An entry of the table: the key is the field's name, its type the field's. */
/* clang-format off */
#define NUMBER(field, dflt, min, max, unit) \
    {#field, offsetof(sl_config, field), \
     _Generic(((sl_config *)0)->field, int: NUM_INT, long: NUM_LONG, double: NUM_DOUBLE), \
     dflt, min, max, unit}
/* clang-format on */

static const number numbers[] = {
    NUMBER(concurrency, 10, 1, 10000, NULL),
    NUMBER(pool_size, 4, 1, 100, NULL),
    NUMBER(lease_seconds, 60, 1, 86400, "seconds"),
    NUMBER(grace_seconds, 30, 0, 86400, "seconds"),
    NUMBER(poll_seconds, 5, 0.1, 3600, "seconds"),
    NUMBER(archive_after_days, 7, 0.01, 36500, "days"),
    NUMBER(prune_after_days, 30, 0.01, 36500, "days"),
    NUMBER(retention_every_minutes, 10, 0.01, 10080, "minutes"),
    NUMBER(memory_limit_mb, 512, 16, 65536, "MB"),
    NUMBER(instruction_budget, 1e8, 10000, 1e12, "instructions"),
};

#undef NUMBER

#define N_NUMBERS (sizeof numbers / sizeof numbers[0])

/* The numeric setting called key, or NULL. */
static const number *number_of(const char *key)
{
    for (size_t k = 0; k < N_NUMBERS; k++)
        if (strcmp(numbers[k].key, key) == 0) return &numbers[k];
    return NULL;
}

static void store_number(sl_config *cfg, const number *n, double d)
{
    char *field = (char *)cfg + n->offset;
    if (n->type == NUM_INT)
        *(int *)(void *)field = (int)d;
    else if (n->type == NUM_LONG)
        *(long *)(void *)field = (long)d;
    else
        *(double *)(void *)field = d;
}

static double load_number(const sl_config *cfg, const number *n)
{
    const char *field = (const char *)cfg + n->offset;
    if (n->type == NUM_INT) return *(const int *)(const void *)field;
    if (n->type == NUM_LONG) return (double)*(const long *)(const void *)field;
    return *(const double *)(const void *)field;
}

const char *sl_config_number_at(const sl_config *cfg, size_t i, double *value)
{
    if (i >= N_NUMBERS) return NULL;
    *value = load_number(cfg, &numbers[i]);
    return numbers[i].key;
}

void sl_config_fmt_number(double v, char *out, size_t len)
{
    snprintf(out, len, "%.6f", v);
    char *dot = strchr(out, '.');
    if (!dot) return;
    char *e = out + strlen(out);
    while (e > dot + 1 && e[-1] == '0')
        *--e = '\0';
    if (e == dot + 1) *dot = '\0';
}

/* The text v for numeric setting n, checked against its bounds: 0, or -1 with
 * why not in err (prefixed with src). */
static int parse_number(const number *n, const char *v, const char *src, double *out, char *err,
                        size_t errlen)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    int whole = n->type != NUM_DOUBLE;
    /* strtod reads hex, inf and nan, and skips leading space: only decimal here */
    int ok = end != v && *end == '\0' && !isspace((unsigned char)*v) && !strpbrk(v, "xXnNiI") &&
             d == d && d >= n->min && d <= n->max && (!whole || d == (double)(long long)d);
    if (!ok) {
        char lo[32], hi[32];
        sl_config_fmt_number(n->min, lo, sizeof lo);
        sl_config_fmt_number(n->max, hi, sizeof hi);
        snprintf(err, errlen, "%s: bad value for %s: '%s' (%s from %s to %s%s%s)", src, n->key, v,
                 whole ? "a whole number" : "a number", lo, hi, n->unit ? " " : "",
                 n->unit ? n->unit : "");
        return -1;
    }
    *out = d;
    return 0;
}

/* Edits (insert, delete, replace) from a to b; more than 63 bytes count as far. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la > 63 || lb > 63) return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* The setting a mistyped key most likely meant (a third of its letters off at
 * most, or the first word of its name, as the flags spell it: lease for
 * lease_seconds), or NULL. */
static const char *nearest_key(const char *key)
{
    static const char *const words[] = {"db",         "home",      "handlers",  "lua",
                                        "log_format", "log_level", "http_limit"};
    const char *best = NULL;
    size_t best_d = strlen(key) / 3 + 1;
    for (size_t k = 0; k < N_NUMBERS + sizeof words / sizeof words[0]; k++) {
        const char *name = k < N_NUMBERS ? numbers[k].key : words[k - N_NUMBERS];
        size_t n = strlen(key), d = edit_distance(key, name);
        if (strncmp(name, key, n) == 0 && name[n] == '_') d = 0;
        if (d < best_d) {
            best_d = d;
            best = name;
        }
    }
    return best;
}

int sl_config_set(sl_config *cfg, const char *key, const char *val, const char *src, char *err,
                  size_t errlen)
{
    const char *bad = NULL; /* the values the key takes, when val is not one */
    const number *num;
    if ((strcmp(key, "db") == 0 || strcmp(key, "home") == 0) && !*val) {
        /* an empty db was libpq's defaults: whatever server they reach */
        snprintf(err, errlen, "%s: %s needs a value (leave it out for the default)", src, key);
        return -1;
    }
    if (strcmp(key, "db") == 0) {
        set_str(&cfg->db_url, val);
        set_str(&cfg->db_source, src);
    } else if (strcmp(key, "home") == 0)
        set_str(&cfg->home, val);
    else if (strcmp(key, "handlers") == 0)
        add_path_list(cfg->handler_dirs, &cfg->n_handler_dirs, val);
    else if (strcmp(key, "lua") == 0)
        add_path_list(cfg->lua_dirs, &cfg->n_lua_dirs, val);
    else if ((num = number_of(key))) {
        double d;
        if (parse_number(num, val, src, &d, err, errlen) < 0) return -1;
        store_number(cfg, num, d);
    } else if (strcmp(key, "log_format") == 0) {
        if (strcmp(val, "json") == 0)
            cfg->log_format = SL_LOG_JSON;
        else if (strcmp(val, "logfmt") == 0)
            cfg->log_format = SL_LOG_LOGFMT;
        else
            bad = "logfmt or json";
    } else if (strcmp(key, "log_level") == 0) {
        if ((cfg->log_level = sl_log_level_parse(val)) < 0) bad = "debug, info, warn or error";
    } else if (strcmp(key, "http_limit") == 0) {
        char name[256], why[256];
        sl_http_limit l;
        if (sl_http_limit_parse(val, name, sizeof name, &l, why, sizeof why) < 0) {
            snprintf(err, errlen, "%s: bad http_limit '%s': %s", src, val, why);
            return -1;
        }
        if (cfg->n_http_limits >= SL_MAX_HTTP_LIMITS) {
            snprintf(err, errlen, "%s: too many http_limit lines (at most %d)", src,
                     SL_MAX_HTTP_LIMITS);
            return -1;
        }
        cfg->http_limits[cfg->n_http_limits++] = sl_xstrdup(val);
    } else {
        const char *near = nearest_key(key);
        snprintf(err, errlen, "%s: unknown setting '%s'%s%s%s", src, key,
                 near ? " — did you mean '" : "", near ? near : "", near ? "'?" : "");
        return -1;
    }
    if (bad) {
        snprintf(err, errlen, "%s: bad value for %s: '%s' (%s)", src, key, val, bad);
        return -1;
    }
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int read_file(sl_config *cfg, const char *path, int required, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[4096], src[4200];
    int lineno = 0, rc = 0;
    if (!f) {
        if (!required && errno == ENOENT) return 0;
        snprintf(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
        return -1;
    }
    set_str(&cfg->config_file, path);
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *s = trim(line);
        if (!*s) continue;
        char *eq = strchr(s, '=');
        snprintf(src, sizeof src, "%s:%d", path, lineno);
        if (!eq) {
            snprintf(err, errlen, "%s: expected `key = value`", src);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *val = trim(eq + 1);
        size_t n = strlen(val);
        if (n >= 2 && val[0] == '"' && val[n - 1] == '"') {
            val[n - 1] = '\0';
            val++;
        }
        rc = sl_config_set(cfg, trim(s), val, src, err, errlen);
    }
    fclose(f);
    return rc;
}

int sl_config_init(sl_config *cfg, const char *config_flag, const char *home_flag, char *err,
                   size_t errlen)
{
    static const struct {
        const char *env, *key;
    } envs[] = {
        {"DATABASE_URL", "db"},
        {"SLUICE_HOME", "home"},
        {"SLUICE_CONCURRENCY", "concurrency"},
        {"SLUICE_LEASE_SECONDS", "lease_seconds"},
        {"SLUICE_GRACE_SECONDS", "grace_seconds"},
        {"SLUICE_LOG_FORMAT", "log_format"},
        {"SLUICE_LOG_LEVEL", "log_level"},
        {"SLUICE_MEMORY_LIMIT_MB", "memory_limit_mb"},
        {"SLUICE_INSTRUCTION_BUDGET", "instruction_budget"},
    };
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_NUMBERS; i++)
        store_number(cfg, &numbers[i], numbers[i].dflt);
    cfg->log_format = SL_LOG_LOGFMT;
    cfg->log_level = SL_INFO;

    /* The file first (lowest precedence), found via the home in effect. */
    const char *file = config_flag ? config_flag : getenv("SLUICE_CONFIG");
    int rc;
    if (file && *file) {
        rc = read_file(cfg, file, 1, err, errlen);
    } else {
        char path[4200];
        const char *h = home_flag ? home_flag : getenv("SLUICE_HOME");
        char *home = h && *h ? sl_xstrdup(h) : default_home();
        snprintf(path, sizeof path, "%s/sluice.conf", home);
        /* the home, or a part of its path, is a file: say so, not that the
         * config file cannot be read */
        struct stat st;
        int found = stat(home, &st) == 0;
        if (found ? !S_ISDIR(st.st_mode) : errno == ENOTDIR) {
            snprintf(err, errlen, "the home %s (%s) is not a directory%s", home,
                     !h || !*h   ? "the default"
                     : home_flag ? "--home"
                                 : "SLUICE_HOME",
                     found ? "" : ": a part of its path is a file");
            rc = -1;
        } else {
            rc = read_file(cfg, path, 0, err, errlen);
        }
        free(home);
    }
    if (rc < 0) goto fail;
    /* A file's handler list is replaced, not extended, by the environment's. */
    for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++) {
        const char *v = getenv(envs[i].env);
        if (v && *v && sl_config_set(cfg, envs[i].key, v, envs[i].env, err, errlen) < 0) goto fail;
    }
    const char *hd = getenv("SLUICE_HANDLERS");
    if (hd && *hd) {
        for (int i = 0; i < cfg->n_handler_dirs; i++)
            free(cfg->handler_dirs[i]);
        cfg->n_handler_dirs = 0;
        add_path_list(cfg->handler_dirs, &cfg->n_handler_dirs, hd);
    }
    if (!cfg->home) cfg->home = default_home();
    return 0;
fail:
    sl_config_free(cfg); /* the caller gets nothing to free on failure */
    return -1;
}

/* ------------------------------------------------------------------ flags */

static const char *const global_names[] = {"--db",     "--home",       "--handlers",  "--lua",
                                           "--config", "--log-format", "--log-level", NULL};
enum { G_DB, G_HOME, G_HANDLERS, G_LUA, G_CONFIG, G_LOG_FORMAT, G_LOG_LEVEL };

/* Which global option argv[*i] is ("--name VALUE" or "--name=VALUE"; *i moves
 * past the value, into *val): its index in global_names, -1 when it is none,
 * -2 when its value is missing. */
static int global_option(int argc, char **argv, int *i, const char **val)
{
    const char *arg = argv[*i];
    for (int k = 0; global_names[k]; k++) {
        size_t n = strlen(global_names[k]);
        if (strncmp(arg, global_names[k], n) != 0 || (arg[n] != '\0' && arg[n] != '=')) continue;
        if (arg[n] == '=')
            *val = arg + n + 1;
        else if (*i + 1 < argc)
            *val = argv[++*i];
        else
            return -2;
        return k;
    }
    return -1;
}

/* Takes the global option at argv[*i] (and its value) into cfg. Returns 1 if it
 * was one, 0 if not, -1 with a message in err. */
static int take_global(sl_config *cfg, int argc, char **argv, int *i, int *handlers_from_flags,
                       char *err, size_t errlen)
{
    const char *val = NULL;
    int k = global_option(argc, argv, i, &val);
    if (k == -1) return 0;
    if (k == -2) {
        snprintf(err, errlen, "%s needs a value", argv[*i]);
        return -1;
    }
    switch (k) {
    case G_DB:
        set_str(&cfg->db_url, val);
        set_str(&cfg->db_source, "--db");
        break;
    case G_HOME:
        set_str(&cfg->home, val);
        break;
    case G_HANDLERS:
        if (!*handlers_from_flags) {
            /* flags replace the directories the environment or file named */
            for (int d = 0; d < cfg->n_handler_dirs; d++)
                free(cfg->handler_dirs[d]);
            cfg->n_handler_dirs = 0;
            *handlers_from_flags = 1;
        }
        if (sl_config_add_dir(cfg->handler_dirs, &cfg->n_handler_dirs, val) < 0) {
            snprintf(err, errlen, "too many --handlers directories");
            return -1;
        }
        break;
    case G_LUA:
        if (sl_config_add_dir(cfg->lua_dirs, &cfg->n_lua_dirs, val) < 0) {
            snprintf(err, errlen, "too many --lua directories");
            return -1;
        }
        break;
    case G_CONFIG:
        break; /* read before the others, see sl_config_load() */
    case G_LOG_FORMAT:
        if (strcmp(val, "logfmt") == 0)
            cfg->log_format = SL_LOG_LOGFMT;
        else if (strcmp(val, "json") == 0)
            cfg->log_format = SL_LOG_JSON;
        else {
            snprintf(err, errlen, "--log-format must be logfmt or json, not '%s'", val);
            return -1;
        }
        break;
    case G_LOG_LEVEL:
        if ((cfg->log_level = sl_log_level_parse(val)) < 0) {
            snprintf(err, errlen, "--log-level must be debug, info, warn or error, not '%s'", val);
            return -1;
        }
        break;
    }
    return 1;
}

int sl_config_load(sl_config *cfg, int argc, char **argv, char **rest, int *nrest, char *err,
                   size_t errlen)
{
    /* --config and --home must be known before the file is read: it is the one
     * they name (the last of each wins, as for every option). An empty value
     * (an unset shell variable, often) is refused, not read as "the default":
     * --db "" connected to whatever server libpq's defaults reach. */
    const char *config_flag = NULL, *home_flag = NULL;
    for (int i = 1; i < argc; i++) {
        const char *val = NULL;
        int k = global_option(argc, argv, &i, &val); /* a missing value is reported below */
        if (k >= 0 && !*val) {
            snprintf(err, errlen, "%s needs a value, not an empty one", global_names[k]);
            return -1;
        }
        if (k == G_CONFIG) config_flag = val;
        if (k == G_HOME) home_flag = val;
    }
    if (sl_config_init(cfg, config_flag, home_flag, err, errlen) < 0) return -1;
    int handlers_from_flags = 0;
    if (nrest) *nrest = 0;
    for (int i = 1; i < argc; i++) {
        int r = take_global(cfg, argc, argv, &i, &handlers_from_flags, err, errlen);
        if (r < 0) {
            sl_config_free(cfg);
            return -1;
        }
        if (r == 0 && rest && nrest) rest[(*nrest)++] = argv[i];
    }
    sl_config_finish(cfg);
    cfg->argc = argc;
    cfg->argv = argv;
    return 0;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

void sl_config_finish(sl_config *cfg)
{
    /* Default handler directory: ./handlers if present, else the source tree's
     * (a binary run from its build directory), else the installed copy
     * (`cmake --install`: an installed binary must not need the checkout). */
    if (cfg->n_handler_dirs == 0) {
        static const char *const defaults[] = {"handlers", SLUICE_SOURCE_DIR "/handlers",
                                               SLUICE_DATA_DIR "/handlers"};
        for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
            if (is_dir(defaults[i])) {
                sl_config_add_dir(cfg->handler_dirs, &cfg->n_handler_dirs, defaults[i]);
                break;
            }
    }
}

void sl_config_db_origin(const sl_config *cfg, char *buf, size_t len)
{
    const char *src = cfg->db_source ? cfg->db_source : "--db";
    if (!cfg->db_url)
        snprintf(buf, len, "the embedded cluster");
    else if (strcmp(src, "--db") == 0 || strcmp(src, "DATABASE_URL") == 0)
        snprintf(buf, len, "%s", src);
    else
        snprintf(buf, len, "the db setting at %s", src);
}

/* Options every connection sets itself (pg.c's conn_keys): their variables
 * (PGOPTIONS, PGCLIENTENCODING, PGAPPNAME) are not read. */
static int set_by_sluice(const char *keyword)
{
    return strcmp(keyword, "options") == 0 || strcmp(keyword, "client_encoding") == 0 ||
           strcmp(keyword, "application_name") == 0;
}

int sl_config_pg_env(const char *url, char (*names)[32], int max)
{
    int is_conninfo = strncmp(url, "postgresql://", 13) == 0 ||
                      strncmp(url, "postgres://", 11) == 0 || strchr(url, '=') != NULL;
    PQconninfoOption *given = is_conninfo ? PQconninfoParse(url, NULL) : NULL;
    PQconninfoOption *all = PQconndefaults();
    int n = 0;
    for (PQconninfoOption *o = all; o && o->keyword && n < max; o++) {
        const char *v = o->envvar ? getenv(o->envvar) : NULL;
        if (!v || !*v || set_by_sluice(o->keyword)) continue;
        if (!is_conninfo && strcmp(o->keyword, "dbname") == 0) continue; /* the url is one */
        int in_url = 0;
        for (PQconninfoOption *g = given; g && g->keyword; g++)
            if (strcmp(g->keyword, o->keyword) == 0 && g->val && *g->val) in_url = 1;
        if (in_url) continue;
        snprintf(names[n++], 32, "%s", o->envvar);
    }
    PQconninfoFree(all);
    PQconninfoFree(given);
    return n;
}

int sl_config_check_db(const sl_config *cfg, char *err, size_t errlen)
{
    char why[1024], again[1024];
    if (!cfg->db_url || sl_pg_check_url(cfg->db_url, why, sizeof why) == 0) return 0;
    /* the options the URL leaves out are read from PG* variables: one whose
     * value is refused is named instead of the URL, found by checking again
     * without it (taken out of the environment for that moment, and put back:
     * nothing else runs yet) */
    char env[40][32];
    const char *culprits[40];
    int nenv = sl_config_pg_env(cfg->db_url, env, 40), nculprits = 0;
    for (int i = 0; i < nenv; i++) {
        char *saved = sl_xstrdup(getenv(env[i]));
        unsetenv(env[i]);
        if (sl_pg_check_url(cfg->db_url, again, sizeof again) == 0 || strcmp(again, why) != 0)
            culprits[nculprits++] = env[i];
        setenv(env[i], saved, 1);
        free(saved);
    }
    char origin[256];
    sl_buf from = {0};
    sl_buf_join_and(&from, culprits, (size_t)nculprits);
    if (nculprits) {
        sl_buf_puts(&from, " in the environment");
    } else {
        sl_config_db_origin(cfg, origin, sizeof origin);
        sl_buf_puts(&from, origin);
    }
    /* libpq quotes the URL in some of its reasons, password and all */
    char *shown = sl_redact(why);
    snprintf(err, errlen, "the database URL is not valid: %s (it comes from %s)", shown,
             sl_buf_str(&from));
    free(shown);
    sl_buf_free(&from);
    return -1;
}

void sl_config_copy(sl_config *dst, const sl_config *src)
{
    *dst = *src; /* the numbers and the command line (not owned) */
    dst->db_url = src->db_url ? sl_xstrdup(src->db_url) : NULL;
    dst->db_source = src->db_source ? sl_xstrdup(src->db_source) : NULL;
    dst->home = src->home ? sl_xstrdup(src->home) : NULL;
    dst->config_file = src->config_file ? sl_xstrdup(src->config_file) : NULL;
    for (int i = 0; i < src->n_handler_dirs; i++)
        dst->handler_dirs[i] = sl_xstrdup(src->handler_dirs[i]);
    for (int i = 0; i < src->n_lua_dirs; i++)
        dst->lua_dirs[i] = sl_xstrdup(src->lua_dirs[i]);
    for (int i = 0; i < src->n_http_limits; i++)
        dst->http_limits[i] = sl_xstrdup(src->http_limits[i]);
}

static void put_list(sl_buf *b, char *const *items, int n, const char *sep)
{
    for (int i = 0; i < n; i++) {
        if (i) sl_buf_puts(b, sep);
        sl_buf_puts(b, items[i]);
    }
}

const char *sl_config_setting_at(const sl_config *cfg, size_t i, sl_buf *val)
{
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    double v;
    char num[64];
    switch (i) {
    case 0:
        sl_buf_puts(val, cfg->db_url ? cfg->db_url : "(embedded cluster under home)");
        return "db";
    case 1:
        sl_buf_puts(val, cfg->home ? cfg->home : "");
        return "home";
    case 2:
        put_list(val, cfg->handler_dirs, cfg->n_handler_dirs, ":");
        return "handlers";
    case 3:
        put_list(val, cfg->lua_dirs, cfg->n_lua_dirs, ":");
        return "lua";
    default:
        break;
    }
    i -= 4;
    const char *key = sl_config_number_at(cfg, i, &v);
    if (key) {
        sl_config_fmt_number(v, num, sizeof num);
        sl_buf_puts(val, num);
        return key;
    }
    switch (i - N_NUMBERS) {
    case 0:
        sl_buf_puts(val, cfg->log_format == SL_LOG_JSON ? "json" : "logfmt");
        return "log_format";
    case 1:
        sl_buf_puts(val, levels[cfg->log_level & 3]);
        return "log_level";
    case 2:
        put_list(val, cfg->http_limits, cfg->n_http_limits, "; ");
        return "http_limit";
    default:
        return NULL;
    }
}

void sl_config_free(sl_config *cfg)
{
    free(cfg->db_url);
    free(cfg->db_source);
    free(cfg->home);
    free(cfg->config_file);
    for (int i = 0; i < cfg->n_handler_dirs; i++)
        free(cfg->handler_dirs[i]);
    for (int i = 0; i < cfg->n_lua_dirs; i++)
        free(cfg->lua_dirs[i]);
    for (int i = 0; i < cfg->n_http_limits; i++)
        free(cfg->http_limits[i]);
    memset(cfg, 0, sizeof *cfg);
}
