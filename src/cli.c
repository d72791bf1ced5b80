/*
 * cli.c — helpers shared by the one-shot subcommands: error output, resolving
 * and opening the database (embedded cluster or DATABASE_URL), running SQL with
 * readable errors.
 */
#include "cli.h"
#include "config.h"
#include "embedded_pg.h"
#include "migrate.h"
#include "pg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sl_cli_error(const char *fmt, ...)
{
    va_list ap;
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
    if (cfg->db_url) return strdup(cfg->db_url);
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

/* "cannot connect to the database: …" for a connection that failed (NULL: its
 * connect_timeout expired). */
static void connect_error(PGconn *c)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", c ? PQerrorMessage(c) : "timeout expired (connect_timeout)");
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    sl_cli_error("cannot connect to the database: %s", msg);
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

PGconn *sl_cli_open(const sl_config *cfg, char **url_out)
{
    char *url = NULL;
    PGconn *c = embedded_if_up(cfg, &url);
    if (!c) {
        if (!(url = sl_cli_db_url(cfg))) return NULL;
        c = sl_pg_connect(url);
        if (PQstatus(c) != CONNECTION_OK) {
            connect_error(c);
            PQfinish(c);
            free(url);
            return NULL;
        }
    }
    return migrated(c, url, url_out);
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

PGconn *sl_cli_open_finish(const sl_config *cfg, sl_cli_early *e, char **url_out)
{
    if (!e) return sl_cli_open(cfg, url_out);
    PGconn *c = sl_pg_connect_finish(e->conn);
    char *url = e->url;
    e->conn = NULL;
    e->url = NULL;
    sl_cli_early_free(e);
    if (c && PQstatus(c) == CONNECTION_OK) return migrated(c, url, url_out);
    if (!cfg->db_url) {
        /* the embedded cluster did not answer: sl_cli_open starts it */
        if (c) PQfinish(c);
        free(url);
        return sl_cli_open(cfg, url_out);
    }
    connect_error(c);
    if (c) PQfinish(c);
    free(url);
    return NULL;
}

PGconn *sl_cli_connect(const sl_config *cfg)
{
    return sl_cli_open(cfg, NULL);
}

PGresult *sl_cli_exec(PGconn *c, const char *sql, int nparams, const char *const *params)
{
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return r;
    const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *hint = PQresultErrorField(r, PG_DIAG_MESSAGE_HINT);
    if (primary)
        sl_cli_error("%s%s%s", primary, hint ? "\n  hint: " : "", hint ? hint : "");
    else
        sl_cli_error("%s", PQerrorMessage(c));
    PQclear(r);
    return NULL;
}
