/*
 * cli_db.c — `sluice db status|start|stop|url`: the embedded Postgres cluster from
 * the command line (src/embedded_pg.c does the work).
 *
 * When a database URL is configured (--db or DATABASE_URL) the embedded cluster is
 * not in use: start and stop refuse, url prints the configured URL, status reports
 * whether a connection to that server opens (or why not: down, or its settings
 * refused).
 */
#include "cli.h"
#include "config.h"
#include "embedded_pg.h"
#include "log.h"
#include "pg.h"

#include <libpq-fe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exit statuses: 3 is `status` on a stopped cluster (as pg_ctl status does). */
enum { SL_DB_OK = 0, SL_DB_FAILED = 1, SL_DB_USAGE = 2, SL_DB_STOPPED = 3 };

static void db_usage(FILE *out)
{
    fprintf(out, "usage: sluice db <status|start|stop|url>\n"
                 "\n"
                 "Manage the embedded Postgres cluster that sluice uses when no database URL is\n"
                 "given (--db or DATABASE_URL). It lives under the state directory (--home,\n"
                 "SLUICE_HOME), listens only on a unix socket, and is started on demand by any\n"
                 "command that needs it.\n"
                 "\n"
                 "  status   whether it runs, where its data, socket and log are, its URL and\n"
                 "           version (exit 0 if running, 3 if stopped)\n"
                 "  start    initialise it on first use, start it, create the `sluice` database\n"
                 "  stop     stop it (fast shutdown)\n"
                 "  url      print its connection string (starting it if needed), e.g.\n"
                 "           psql \"$(sluice db url)\"\n"
                 "\n"
                 "With a database URL, start and stop refuse (exit 2), url prints that URL,\n"
                 "and status says whether a connection to it opens (exit 0), or why not:\n"
                 "a server that does not answer (exit 3), or one that refuses the role,\n"
                 "password, database or TLS settings (exit 2).\n");
}

/* The URL with the password of its user-info part replaced by "***", for display. */
static char *mask_password(const char *url)
{
    char *copy = strdup(url);
    if (!copy) return NULL;
    char *scheme = strstr(copy, "://");
    if (!scheme) return copy;
    char *auth = scheme + 3;
    size_t span = strcspn(auth, "/?#");
    char *at = memchr(auth, '@', span);
    char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!colon) return copy;
    char *masked = NULL;
    if (asprintf(&masked, "%.*s:***%s", (int)(colon - copy), copy, at) < 0) masked = NULL;
    free(copy);
    return masked;
}

static int db_status_external(const sl_config *cfg)
{
    char *masked = mask_password(cfg->db_url);
    char *shown = masked ? sl_redact(masked) : NULL; /* password=… in conninfo/query */
    free(masked);
    /* a connection as every command opens it, not a ping: a server that
     * answers but refuses the role, password, database or TLS settings was
     * "answering" (exit 0) while every command failed, and a TLS setting
     * libpq could not meet "not answering", as if it were down */
    PGconn *c = sl_pg_connect(cfg->db_url);
    int up = c && PQstatus(c) == CONNECTION_OK, refused = 0;
    char why[1024] = "";
    if (!up)
        refused = sl_pg_connect_reason(c ? PQerrorMessage(c) : "timeout expired (connect_timeout)",
                                       why, sizeof why);
    PQfinish(c);
    char *reason = sl_redact(why);
    printf("embedded:   not in use (a database URL is configured)\n"
           "url:        %s\n"
           "status:     %s%s\n",
           shown ? shown : "",
           up        ? "answering"
           : refused ? "refuses this connection's settings (a configuration problem, not an "
                       "outage): "
                     : "not answering: ",
           reason ? reason : why);
    free(reason);
    free(shown);
    return up ? SL_DB_OK : refused ? SL_DB_USAGE : SL_DB_STOPPED;
}

static int db_status(const sl_config *cfg)
{
    if (cfg->db_url) return db_status_external(cfg);
    sl_embedded_info in;
    char err[1024];
    if (sl_embedded_describe(cfg, &in, err, sizeof err) < 0) {
        sl_cli_error("%s", err);
        return SL_DB_FAILED;
    }
    if (!in.initialised)
        printf("status:     stopped (not initialised)\n");
    else if (in.accepting)
        printf("status:     running (pid %ld)\n", in.pid);
    else if (in.running)
        printf("status:     running (pid %ld), not accepting connections yet\n", in.pid);
    else
        printf("status:     stopped\n");
    printf("data:       %s\n"
           "socket:     %s\n"
           "log:        %s\n"
           "url:        %s\n",
           in.data_dir, in.socket_dir, in.log_file, in.url);
    if (in.version[0])
        printf("version:    %s%s\n", in.version, in.accepting ? "" : " (data directory)");
    int rc = in.running ? SL_DB_OK : SL_DB_STOPPED;
    sl_embedded_info_free(&in);
    return rc;
}

static int db_start(const sl_config *cfg)
{
    char err[1024];
    int actions = 0;
    char *url = sl_embedded_start(cfg, &actions, err, sizeof err);
    if (!url) {
        sl_cli_error("%s", err);
        return SL_DB_FAILED;
    }
    if (actions & SL_EMBEDDED_INITDB)
        printf("initialised the embedded database under %s\n", cfg->home);
    if (actions & SL_EMBEDDED_STARTED)
        printf("started the embedded database: %s\n", url);
    else
        printf("the embedded database is already running: %s\n", url);
    free(url);
    return SL_DB_OK;
}

static int db_stop(const sl_config *cfg)
{
    char err[1024];
    int r = sl_embedded_stop(cfg, err, sizeof err);
    if (r < 0) {
        sl_cli_error("%s", err);
        return SL_DB_FAILED;
    }
    printf(r ? "stopped the embedded database\n" : "the embedded database is not running\n");
    return SL_DB_OK;
}

static int db_url(const sl_config *cfg)
{
    if (cfg->db_url) {
        printf("%s\n", cfg->db_url);
        return SL_DB_OK;
    }
    char err[1024];
    char *url = sl_embedded_ensure(cfg, err, sizeof err);
    if (!url) {
        sl_cli_error("%s", err);
        return SL_DB_FAILED;
    }
    printf("%s\n", url);
    free(url);
    return SL_DB_OK;
}

int sl_cmd_db(const sl_config *cfg, int argc, char **argv)
{
    if (sl_cli_wants_help(argc, argv)) {
        db_usage(stdout);
        return SL_DB_OK;
    }
    if (argc < 2) {
        db_usage(stderr);
        return SL_DB_USAGE;
    }
    if (argc > 2) {
        sl_cli_error("db %s: unexpected argument '%s' (see `sluice db --help`)", argv[1], argv[2]);
        return SL_DB_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "status") == 0) return db_status(cfg);
    if (strcmp(sub, "url") == 0) return db_url(cfg);
    if (strcmp(sub, "start") == 0 || strcmp(sub, "stop") == 0) {
        if (cfg->db_url) {
            sl_cli_error("the embedded database is not in use: a database URL is configured "
                         "(--db or DATABASE_URL); `db %s` only manages the embedded cluster",
                         sub);
            return SL_DB_USAGE;
        }
        return strcmp(sub, "start") == 0 ? db_start(cfg) : db_stop(cfg);
    }
    sl_cli_error("unknown db command '%s' (status, start, stop or url)", sub);
    return SL_DB_USAGE;
}
