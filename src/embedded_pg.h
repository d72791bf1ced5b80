/*
 * embedded_pg.h — the private Postgres cluster sluice runs when no database URL is
 * given: created with initdb on first use under <home>/pg, reachable only through a
 * unix socket in a 0700 directory, started on demand and shared by every later
 * sluice invocation with the same home.
 *
 * Layout under the state directory (cfg->home):
 *   <home>/pg.lock        flock taken around initdb, start and stop
 *   <home>/pg/data        the data directory (owned by the server user, 0700)
 *   <home>/pg/run         the socket directory (0700), unless that path is too long
 *                         for a unix socket: then /tmp/sluice-<hash of home>
 *   <home>/pg/server.log  the server's log
 *
 * As root the server runs as the `postgres` system user (Postgres refuses root);
 * otherwise as the calling user. The superuser is `postgres`, the database `sluice`.
 * Server binaries: $SLUICE_PG_BIN, else the newest /usr/lib/postgresql/<v>/bin,
 * else PATH. All functions are blocking and meant for start-up and one-shot commands.
 */
#ifndef SL_EMBEDDED_PG_H
#define SL_EMBEDDED_PG_H

#include <stddef.h>

struct sl_config;

/* What sl_embedded_start() did (a bit set). */
enum { SL_EMBEDDED_INITDB = 1, SL_EMBEDDED_STARTED = 2 };

/* Ensures the embedded cluster under cfg->home exists and runs (initdb, start,
 * database `sluice`); returns its connection string (malloc'd), or NULL with a
 * one-line message in err. When it had to initialise or start the cluster it says
 * so in the log; when the cluster is already running it only connects. */
char *sl_embedded_ensure(const struct sl_config *cfg, char *err, size_t errlen);

/* Like sl_embedded_ensure() but silent, and reports in *actions (may be NULL) the
 * SL_EMBEDDED_* steps it took (0: it was already running). */
char *sl_embedded_start(const struct sl_config *cfg, int *actions, char *err, size_t errlen);

/* The connection string, computed from cfg->home without starting or creating
 * anything (malloc'd), or NULL with a message in err. */
char *sl_embedded_url(const struct sl_config *cfg, char *err, size_t errlen);

/* Stops the cluster (fast shutdown, waits). Returns 1 if it stopped it, 0 if it
 * was not running (or never initialised), -1 with a message in err. */
int sl_embedded_stop(const struct sl_config *cfg, char *err, size_t errlen);

/* 1 running, 0 not running (or not initialised), -1 error (message in info).
 * info gets a one-line state such as "running (pid 1234)" or "not initialised". */
int sl_embedded_status(const struct sl_config *cfg, char *info, size_t infolen);

/* Everything `sluice db status` shows. Strings are malloc'd; free with
 * sl_embedded_info_free(). */
typedef struct sl_embedded_info {
    char *data_dir;
    char *socket_dir;
    char *log_file;
    char *url;
    int initialised;   /* the data directory holds a cluster */
    int running;       /* the server answers on its socket */
    int accepting;     /* ... and accepts connections (not starting or stopping) */
    long pid;          /* postmaster pid from postmaster.pid, 0 if none */
    char version[128]; /* server_version if running, else the data directory's
                          major version, else "" */
} sl_embedded_info;

/* Fills info (without starting anything). Returns 0, or -1 with a message in err
 * (info is then empty and needs no free). */
int sl_embedded_describe(const struct sl_config *cfg, sl_embedded_info *info, char *err,
                         size_t errlen);
void sl_embedded_info_free(sl_embedded_info *info);

#endif
