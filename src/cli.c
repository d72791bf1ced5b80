/*
 * cli.c — helpers shared by the one-shot subcommands: error output, resolving
 * and opening the database (embedded cluster or DATABASE_URL), running SQL with
 * readable errors, and resolving the (shortened) ids the tables show.
 */
#include "cli.h"
#include "buf.h"
#include "config.h"
#include "embedded_pg.h"
#include "log.h"
#include "migrate.h"
#include "pg.h"
#include "table.h"
#include "tz.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int errors_to_log;
/* why the first write to stdout failed (an errno), or 0: stdio keeps only that
 * one did (ferror), and the process has one stdout */
static int stdout_errno;

void sl_cli_errors_to_log(int on)
{
    errors_to_log = on;
}

void sl_cli_watch_signal(struct ev_loop *loop, ev_signal *w,
                         void (*cb)(struct ev_loop *, ev_signal *, int), int signum, void *data)
{
    struct sigaction was;
    ev_signal_init(w, cb, signum);
    w->data = data;
    if (sigaction(signum, NULL, &was) == 0 && was.sa_handler == SIG_IGN) return;
    ev_signal_start(loop, w);
}

int sl_cli_flush_stdout(void)
{
    int r = fflush(stdout);
    if (r != 0 && !stdout_errno) stdout_errno = errno;
    return r;
}

void sl_cli_put_line(const char *s, size_t len)
{
    /* a line longer than stdio's buffer is written at once, not at the flush */
    if ((fwrite(s, 1, len, stdout) < len || fputc('\n', stdout) == EOF) && !stdout_errno)
        stdout_errno = errno;
    sl_cli_flush_stdout();
}

int sl_cli_output_written(int status)
{
    int failed = ferror(stdout);
    if (sl_cli_flush_stdout() != 0) failed = 1;
    if (!failed) return status;
    sl_cli_error("cannot write the output: %s",
                 stdout_errno ? strerror(stdout_errno) : "write error");
    return status == 0 ? 1 : status;
}

void sl_cli_error(const char *fmt, ...)
{
    va_list ap;
    if (errors_to_log) {
        char msg[4096];
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        size_t n = strlen(msg);
        while (n > 0 && isspace((unsigned char)msg[n - 1])) /* libpq's end in a newline */
            msg[--n] = '\0';
        sl_log(SL_ERROR, msg, NULL);
        return;
    }
    fputs("sluice: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int sl_cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return 1;
    return 0;
}

char *sl_cli_db_url(const sl_config *cfg)
{
    char err[1024];
    if (cfg->db_url) {
        char *url = strdup(cfg->db_url);
        if (!url) sl_cli_error("out of memory");
        return url;
    }
    char *url = sl_embedded_ensure(cfg, err, sizeof err);
    if (!url) sl_cli_error("%s", err);
    return url;
}

/* The embedded cluster is usually up already: a connection to it then costs
 * one round of start-up instead of the checks (and test connection) that start
 * it when it is not. NULL if it does not answer. */
static PGconn *embedded_if_up(const sl_config *cfg, char **url)
{
    char err[256];
    if (cfg->db_url || !(*url = sl_embedded_url(cfg, err, sizeof err))) return NULL;
    PGconn *c = sl_pg_connect(*url);
    if (PQstatus(c) == CONNECTION_OK) return c;
    PQfinish(c);
    free(*url);
    *url = NULL;
    return NULL;
}

/* "cannot connect to the database: …" for a connection to url that failed
 * (NULL: its connect_timeout expired). A failure for the connection's settings
 * (sl_pg_connect_reason) says so, with where the URL came from and the PG*
 * variables libpq read too. Returns the exit status it calls for: 2 for the
 * settings, as for any configuration error; 1 otherwise. */
static int connect_error(const sl_config *cfg, const char *url, PGconn *c)
{
    char msg[1024];
    int refused = sl_pg_connect_reason(c ? PQerrorMessage(c) : "timeout expired (connect_timeout)",
                                       msg, sizeof msg);
    if (!refused) {
        sl_cli_error("cannot connect to the database: %s", msg);
        return 1;
    }
    char origin[256], env[40][32];
    sl_config_db_origin(cfg, origin, sizeof origin);
    int nenv = sl_config_pg_env(url, env, 40);
    const char *names[40];
    for (int i = 0; i < nenv; i++)
        names[i] = env[i];
    sl_buf vars = {0};
    sl_buf_join_and(&vars, names, (size_t)nenv);
    char *shown = sl_redact(msg);
    sl_cli_error("cannot connect to the database: %s (a configuration problem, not an outage: "
                 "the server or libpq refuses the settings of the URL from %s%s%s%s; waiting "
                 "will not change that)",
                 shown, origin, nenv ? ", with " : "", nenv ? sl_buf_str(&vars) : "",
                 nenv ? " from the environment" : "");
    free(shown);
    sl_buf_free(&vars);
    return 2;
}

/* Migrates an open connection; takes c and url. NULL after printing the error. */
static PGconn *migrated(PGconn *c, char *url, char **url_out)
{
    char err[1024];
    if (sl_migrate(c, 0, err, sizeof err) < 0) {
        sl_cli_error("%s", err);
        PQfinish(c);
        free(url);
        return NULL;
    }
    if (url_out)
        *url_out = url;
    else
        free(url);
    return c;
}

PGconn *sl_cli_open(const sl_config *cfg, char **url_out, int *status)
{
    char *url = NULL;
    int failed = 1;
    PGconn *c = embedded_if_up(cfg, &url);
    if (!c && (url = sl_cli_db_url(cfg))) {
        c = sl_pg_connect(url);
        if (PQstatus(c) != CONNECTION_OK) {
            failed = connect_error(cfg, url, c);
            PQfinish(c);
            c = NULL;
            free(url);
        }
    }
    if (c) c = migrated(c, url, url_out);
    if (!c && status) *status = failed;
    return c;
}

struct sl_cli_early {
    PGconn *conn; /* being opened: the start-up message is out */
    char *url;
};

sl_cli_early *sl_cli_open_early(const sl_config *cfg)
{
    char err[256];
    char *url = cfg->db_url ? strdup(cfg->db_url) : sl_embedded_url(cfg, err, sizeof err);
    if (!url) return NULL;
    sl_cli_early *e = calloc(1, sizeof *e);
    if (!e) {
        free(url);
        return NULL;
    }
    e->url = url;
    e->conn = sl_pg_connect_start(url);
    return e;
}

void sl_cli_early_free(sl_cli_early *e)
{
    if (!e) return;
    if (e->conn) PQfinish(e->conn);
    free(e->url);
    free(e);
}

PGconn *sl_cli_open_finish(const sl_config *cfg, sl_cli_early *e, char **url_out, int *status)
{
    if (!e) return sl_cli_open(cfg, url_out, status);
    PGconn *c = sl_pg_connect_finish(e->conn);
    char *url = e->url;
    e->conn = NULL;
    e->url = NULL;
    sl_cli_early_free(e);
    if (c && PQstatus(c) == CONNECTION_OK) {
        c = migrated(c, url, url_out);
        if (!c && status) *status = 1;
        return c;
    }
    if (!cfg->db_url) {
        /* the embedded cluster did not answer: sl_cli_open starts it */
        if (c) PQfinish(c);
        free(url);
        return sl_cli_open(cfg, url_out, status);
    }
    int failed = connect_error(cfg, url, c);
    if (status) *status = failed;
    if (c) PQfinish(c);
    free(url);
    return NULL;
}

PGconn *sl_cli_connect(const sl_config *cfg, int *status)
{
    return sl_cli_open(cfg, NULL, status);
}

PGresult *sl_cli_exec(PGconn *c, const char *sql, int nparams, const char *const *params)
{
    return sl_cli_exec_status(c, sql, nparams, params, NULL);
}

int sl_cli_exit_status(const PGresult *failed)
{
    const char *state = PQresultErrorField(failed, PG_DIAG_SQLSTATE);
    return sl_pg_sqlstate_fault(state) == SL_PG_BAD_INPUT ? 2 : 1;
}

void sl_cli_privilege_note(PGconn *c, const PGresult *failed, char *buf, size_t len)
{
    const char *state = failed ? PQresultErrorField(failed, PG_DIAG_SQLSTATE) : NULL;
    if (!state || strcmp(state, "42501") != 0) {
        snprintf(buf, len, "%s", "");
        return;
    }
    snprintf(buf, len,
             " (the role \"%s\" lacks privileges on sluice's schema: it needs USAGE on schema "
             "sluice, SELECT, INSERT, UPDATE and DELETE on its tables and USAGE on its "
             "sequences; see \"Using your own server\" in the database docs)",
             PQuser(c));
}

/* sl_cli_exec_status and sl_cli_exec_line: the hint follows the server's
 * message on a line of its own, or (one_line) in parentheses. */
static PGresult *exec_reporting(PGconn *c, const char *sql, int nparams, const char *const *params,
                                int *status, int one_line)
{
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return r;
    if (status) *status = sl_cli_exit_status(r);
    /* the server's message and hint are one line each, and may quote stored
     * text (the known brands, a brand's name from before brands_check_name):
     * a control character shows as ^[ or ^J, as in show, never as itself */
    const char *field = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    char *primary = field ? sl_text_visible(field, 0) : NULL;
    field = PQresultErrorField(r, PG_DIAG_MESSAGE_HINT);
    char *hint = field ? sl_text_visible(field, 0) : NULL;
    char note[512];
    sl_cli_privilege_note(c, r, note, sizeof note);
    if (primary && hint)
        sl_cli_error(one_line ? "%s%s (%s)" : "%s%s\n  hint: %s", primary, note, hint);
    else if (primary)
        sl_cli_error("%s%s", primary, note);
    else
        sl_cli_error("%s", PQerrorMessage(c));
    free(primary);
    free(hint);
    PQclear(r);
    return NULL;
}

PGresult *sl_cli_exec_status(PGconn *c, const char *sql, int nparams, const char *const *params,
                             int *status)
{
    return exec_reporting(c, sql, nparams, params, status, 0);
}

PGresult *sl_cli_exec_line(PGconn *c, const char *sql, int nparams, const char *const *params,
                           int *status)
{
    return exec_reporting(c, sql, nparams, params, status, 1);
}

/* Bounds of the ids that start with hex digits h[0..n): h padded with 0s and
 * with fs, as UUIDs. */
static void prefix_bounds(const char *h, size_t n, char lo[37], char hi[37])
{
    size_t k = 0;
    for (size_t i = 0; i < 32; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20) {
            lo[k] = hi[k] = '-';
            k++;
        }
        lo[k] = i < n ? h[i] : '0';
        hi[k] = i < n ? h[i] : 'f';
        k++;
    }
    lo[k] = hi[k] = '\0';
}

int sl_cli_find_id(PGconn *c, const char *what, const char *id, int jobs_only, char kind[8],
                   char full[40])
{
    const char *noun = jobs_only ? "job" : "run or job";
    char hex[33];
    size_t n = 0, len = strlen(id);
    int ok = len >= 4 && len <= 36;
    for (size_t i = 0; ok && i < len; i++) {
        if (id[i] == '-') continue;
        ok = isxdigit((unsigned char)id[i]) && n < 32;
        if (ok) hex[n++] = (char)tolower((unsigned char)id[i]);
    }
    if (!ok || n < 4) {
        sl_cli_error("%s: '%s' is not a %s id (give it whole, or at least its first 4 "
                     "characters, as the tables show them)",
                     what, id, noun);
        return 2;
    }
    char lo[37], hi[37];
    prefix_bounds(hex, n, lo, hi);
    const char *p[] = {lo, hi};
    /* a range of the primary keys: an index scan, however many rows there are */
    int status = 0;
    PGresult *r = sl_cli_exec_status(
        c,
        jobs_only ? "SELECT 'job', id::text FROM sluice.scheduled_jobs WHERE id BETWEEN $1 AND $2 "
                    "ORDER BY 2 LIMIT 4"
                  : "SELECT kind, id::text FROM ("
                    " SELECT 'run' AS kind, id FROM sluice.scheduled_job_runs"
                    "  WHERE id BETWEEN $1 AND $2"
                    " UNION ALL"
                    " SELECT 'job', id FROM sluice.scheduled_jobs"
                    "  WHERE id BETWEEN $1 AND $2) x ORDER BY 1, 2 LIMIT 4",
        2, p, &status);
    if (!r) return status;
    int rows = PQntuples(r);
    if (rows == 0) {
        sl_cli_error("%s: no %s with id '%s'", what, noun, id);
        status = 2;
    } else if (rows > 1) {
        sl_buf b = {0};
        for (int i = 0; i < rows && i < 3; i++)
            sl_buf_printf(&b, "%s%s %s", i ? ", " : "", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
        sl_cli_error("%s: id prefix '%s' is ambiguous (%s%s): give more characters", what, id,
                     sl_buf_str(&b), rows > 3 ? ", …" : "");
        sl_buf_free(&b);
        status = 2;
    } else {
        snprintf(kind, 8, "%s", PQgetvalue(r, 0, 0));
        snprintf(full, 40, "%s", PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    return status;
}

int sl_cli_option_value(int argc, char **argv, int *i, const char *cmd, const char *brand_hint,
                        const char **out)
{
    const char *o = argv[*i];
    if (*i + 1 >= argc) {
        sl_cli_error("%s: %s needs a value", cmd, o);
        return -1;
    }
    const char *v = argv[++*i];
    if (!*v) { /* often an unset shell variable: say so rather than guess */
        int hint = brand_hint && strcmp(o, "--brand") == 0;
        sl_cli_error("%s: %s needs a value, not an empty one%s%s%s", cmd, o, hint ? " (" : "",
                     hint ? brand_hint : "", hint ? ")" : "");
        return -1;
    }
    *out = v;
    return 0;
}

void sl_cli_shell_quote(sl_buf *b, const char *s)
{
    sl_buf_puts(b, "'");
    for (const char *p = s; *p; p++) {
        if (*p == '\'')
            sl_buf_puts(b, "'\\''"); /* end the quote, an escaped ', quote again */
        else
            sl_buf_add(b, p, 1);
    }
    sl_buf_puts(b, "'");
}

int sl_cli_whole_number(const char *opt, const char *v, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    /* strtol skips leading white space and takes a sign: digits only here */
    int ok =
        *v && !isspace((unsigned char)*v) && *end == '\0' && errno == 0 && n >= min && n <= max;
    if (!ok) {
        sl_cli_error("%s must be a whole number from %ld to %ld, not '%s'", opt, min, max, v);
        return -1;
    }
    if (out) *out = n;
    return 0;
}

int sl_cli_local_time(const char *zone, const char *epoch, char *out, size_t len)
{
    out[0] = '\0';
    char *end, err[256];
    double t = epoch ? strtod(epoch, &end) : 0;
    if (!zone || !epoch || end == epoch || *end || strcmp(zone, "UTC") == 0 ||
        strcmp(zone, "Etc/UTC") == 0 || !(t > -1e15 && t < 1e15))
        return -1;
    sl_tz *tz = sl_tz_load(zone, err, sizeof err);
    if (!tz) return -1;
    struct tm tm;
    const char *abbr = "";
    int ok = sl_tz_to_local(tz, (int64_t)t, &tm, NULL, &abbr) == 0;
    if (ok)
        snprintf(out, len, "%04d-%02d-%02d %02d:%02d:%02d %s", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, abbr);
    sl_tz_free(tz);
    return ok ? 0 : -1;
}
