/*
 * migrate.c — the schema migration runner and `sluice migrate`.
 *
 * Migrations are the schema/NNN_name.sql files compiled into the binary (see
 * embed.h), or the *.sql files of $SLUICE_SCHEMA_DIR. The version of a file is its
 * number (NNN); files are applied in file-name order. sl_migrate() holds a session
 * advisory lock for the whole run so that concurrent `serve` start-ups apply each
 * file once; it creates schema sluice and sluice.schema_migrations itself, before
 * anything else. Each file runs with PQexec (several statements) inside its own
 * transaction together with the row recording it, so a file is either applied and
 * recorded or not at all. Checksums are the md5 of the file's text: computed at
 * build time for the embedded files (sending the whole schema to the server to
 * hash it cost every command ~1–2.5 ms at start-up), by the server for files read
 * from a directory. Blocking libpq throughout.
 */
#include "migrate.h"
#include "buf.h"
#include "cli.h"
#include "config.h"
#include "embed.h"
#include "log.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The advisory lock key: hashtext('sluice.migrate'), computed by the server. */
#define SL_MIGRATE_LOCK "pg_advisory_lock(hashtext('sluice.migrate'))"
#define SL_MIGRATE_UNLOCK "pg_advisory_unlock(hashtext('sluice.migrate'))"

static const char sl_migrations_ddl[] = "CREATE SCHEMA IF NOT EXISTS sluice;\n"
                                        "CREATE TABLE IF NOT EXISTS sluice.schema_migrations (\n"
                                        "    version    text PRIMARY KEY,\n"
                                        "    name       text NOT NULL,\n"
                                        "    checksum   text NOT NULL,\n"
                                        "    applied_at timestamptz NOT NULL DEFAULT now()\n"
                                        ");\n";

/* The first line of the connection's last error. */
static void pq_message(PGconn *c, char *dst, size_t dstlen)
{
    snprintf(dst, dstlen, "%s", PQerrorMessage(c));
    char *nl = strchr(dst, '\n');
    if (nl) *nl = '\0';
}

/* Why r failed: the server's message (without libpq's "ERROR:  "), and for a
 * privilege refused, the role and what it needs; else the connection's. */
static void result_message(PGconn *c, const PGresult *r, char *dst, size_t dstlen)
{
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!primary) {
        pq_message(c, dst, dstlen);
        return;
    }
    char note[512];
    sl_cli_privilege_note(c, r, note, sizeof note);
    snprintf(dst, dstlen, "%s%s", primary, note);
}

/* ================================================================ the file list */

typedef struct sl_migration {
    char *name;      /* "001_core.sql" */
    char *version;   /* "001" */
    const char *sql; /* the file's text */
    char *owned;     /* sql when read from a directory (freed with the list) */
    char md5[33];    /* embedded: from the build; else filled by checksum_all() */
} sl_migration;

typedef struct sl_migration_list {
    sl_migration *v;
    size_t n, cap;
} sl_migration_list;

static void list_free(sl_migration_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].version);
        free(l->v[i].owned);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* NNN_name.sql: digits, an underscore, a non-empty rest, ".sql". */
static int valid_name(const char *name)
{
    size_t len = strlen(name), digits = strspn(name, "0123456789");
    return digits > 0 && name[digits] == '_' && len > digits + 1 + 4 &&
           strcmp(name + len - 4, ".sql") == 0 && !strchr(name, '/');
}

/* Adds a file; takes ownership of `owned` (may be NULL) even on failure. */
static int list_add(sl_migration_list *l, const char *name, const char *sql, const char *md5,
                    char *owned, char *err, size_t errlen)
{
    if (!valid_name(name)) {
        sl_seterr(err, errlen, "schema file %s is not named NNN_name.sql", name);
        free(owned);
        return -1;
    }
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        sl_migration *nv = realloc(l->v, ncap * sizeof *nv);
        if (!nv) {
            free(owned);
            sl_seterr(err, errlen, "out of memory");
            return -1;
        }
        l->v = nv;
        l->cap = ncap;
    }
    sl_migration *m = &l->v[l->n];
    memset(m, 0, sizeof *m);
    m->name = strdup(name);
    m->version = strndup(name, strspn(name, "0123456789"));
    m->sql = sql;
    m->owned = owned;
    if (md5) snprintf(m->md5, sizeof m->md5, "%s", md5);
    l->n++;
    if (!m->name || !m->version) {
        sl_seterr(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int load_embedded(sl_migration_list *l, char *err, size_t errlen)
{
    static const char prefix[] = "schema/";
    for (const sl_embedded_file *f = sl_embedded_files; f->path; f++) {
        if (strncmp(f->path, prefix, sizeof prefix - 1) != 0) continue;
        const char *name = f->path + sizeof prefix - 1;
        size_t len = strlen(name);
        if (strchr(name, '/') || len < 4 || strcmp(name + len - 4, ".sql") != 0) continue;
        if (list_add(l, name, f->data, f->md5, NULL, err, errlen) < 0) return -1;
    }
    return 0;
}

static int load_dir(sl_migration_list *l, const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        sl_seterr(err, errlen, "cannot read SLUICE_SCHEMA_DIR %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 4 || strcmp(e->d_name + len - 4, ".sql") != 0) continue;
        char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, e->d_name) < 0) {
            sl_seterr(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        char *sql = sl_read_file(path, NULL);
        if (!sql) {
            sl_seterr(err, errlen, "cannot read %s: %s", path, strerror(errno));
            rc = -1;
        } else {
            rc = list_add(l, e->d_name, sql, NULL, sql, err, errlen);
        }
        free(path);
    }
    closedir(d);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const sl_migration *)a)->name, ((const sl_migration *)b)->name);
}

/* The migrations to consider, sorted by file name, versions unique. */
static int load_migrations(sl_migration_list *l, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    const char *dir = getenv("SLUICE_SCHEMA_DIR");
    int rc = dir && *dir ? load_dir(l, dir, err, errlen) : load_embedded(l, err, errlen);
    if (rc < 0) {
        list_free(l);
        return -1;
    }
    if (l->n) qsort(l->v, l->n, sizeof *l->v, by_name);
    for (size_t i = 1; i < l->n; i++) {
        if (strcmp(l->v[i - 1].version, l->v[i].version) == 0) {
            sl_seterr(err, errlen, "schema files %s and %s share the version %s", l->v[i - 1].name,
                      l->v[i].name, l->v[i].version);
            list_free(l);
            return -1;
        }
    }
    return 0;
}

/* ================================================================ database steps */

/* Runs a statement that must succeed; on failure sets err (prefixed by what). */
static int exec_ok(PGconn *c, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        char msg[1024];
        result_message(c, r, msg, sizeof msg);
        sl_seterr(err, errlen, "%s: %s", what, msg);
    }
    PQclear(r);
    return ok ? 0 : -1;
}

/* Has the server hash, in one round trip (SELECT md5($1), md5($2), …), the files
 * that have no checksum yet: those read from a directory. md5() of the text as
 * sent equals the build's md5 of an embedded file's bytes. */
static int checksum_all(PGconn *c, sl_migration_list *l, char *err, size_t errlen)
{
    const char **params = calloc(l->n + 1, sizeof *params);
    if (!params) {
        sl_seterr(err, errlen, "cannot checksum the migration files: out of memory");
        return -1;
    }
    size_t n = 0;
    sl_buf q = {0};
    sl_buf_puts(&q, "SELECT ");
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].md5[0]) continue;
        sl_buf_printf(&q, "%smd5($%zu)", n ? ", " : "", n + 1);
        params[n++] = l->v[i].sql;
    }
    int rc = 0;
    if (n > 0) {
        PGresult *r = PQexecParams(c, sl_buf_str(&q), (int)n, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
            char msg[512];
            pq_message(c, msg, sizeof msg);
            sl_seterr(err, errlen, "cannot checksum the migration files: %s", msg);
            rc = -1;
        } else {
            /* the same files, in the same order, as the query's columns */
            for (size_t i = 0, k = 0; i < l->n; i++)
                if (!l->v[i].md5[0])
                    snprintf(l->v[i].md5, sizeof l->v[i].md5, "%s", PQgetvalue(r, 0, (int)k++));
        }
        PQclear(r);
    }
    free(params);
    sl_buf_free(&q);
    return rc;
}

/* Row of `applied` (version, name, checksum, applied_at) for version, or -1. */
static int find_applied(PGresult *applied, const char *version)
{
    for (int i = 0; applied && i < PQntuples(applied); i++)
        if (strcmp(PQgetvalue(applied, i, 0), version) == 0) return i;
    return -1;
}

/* True when `applied` records every file of l. */
static int all_applied(PGresult *applied, const sl_migration_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (find_applied(applied, l->v[i].version) < 0) return 0;
    return 1;
}

static PGresult *read_applied(PGconn *c, char *err, size_t errlen)
{
    PGresult *r =
        PQexec(c, "SELECT version, name, checksum FROM sluice.schema_migrations ORDER BY name");
    if (PQresultStatus(r) == PGRES_TUPLES_OK) return r;
    char msg[1024];
    result_message(c, r, msg, sizeof msg);
    sl_seterr(err, errlen, "cannot read sluice.schema_migrations: %s", msg);
    PQclear(r);
    return NULL;
}

/* 1-based line of the 1-based character position pos (positions count characters,
 * not bytes) in text. */
static long line_of(const char *text, long pos)
{
    long line = 1, chars = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if ((*p & 0xC0) != 0x80 && ++chars >= pos) break;
        if (*p == '\n') line++;
    }
    return line;
}

/* "migration 002_x.sql failed at line 7: <message> (<detail>; hint: <hint>)" */
static void describe_failure(PGconn *c, PGresult *r, const sl_migration *m, char *err,
                             size_t errlen)
{
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *pos = r ? PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION) : NULL;
    const char *detail = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *hint = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_HINT) : NULL;
    char msg[512], where[64] = "";
    if (primary)
        snprintf(msg, sizeof msg, "%s", primary);
    else
        pq_message(c, msg, sizeof msg);
    if (pos) snprintf(where, sizeof where, " at line %ld", line_of(m->sql, atol(pos)));
    sl_seterr(err, errlen, "migration %s failed%s: %s%s%s%s%s%s", m->name, where, msg,
              detail || hint ? " (" : "", detail ? detail : "", detail && hint ? "; " : "",
              hint ? "hint: " : "", hint ? hint : "");
    if (detail || hint) {
        size_t n = strlen(err);
        if (n + 1 < errlen) {
            err[n] = ')';
            err[n + 1] = '\0';
        }
    }
}

/* Leaves a COPY state a migration file put the connection in. */
static void abandon_copy(PGconn *c, ExecStatusType st)
{
    if (st == PGRES_COPY_IN) {
        PQputCopyEnd(c, "COPY FROM STDIN is not supported in migrations");
    } else if (st == PGRES_COPY_OUT) {
        char *buf;
        while (PQgetCopyData(c, &buf, 0) > 0)
            PQfreemem(buf);
    }
    PGresult *r;
    while ((r = PQgetResult(c)))
        PQclear(r);
}

/* One file and its record in one transaction. On failure the transaction is rolled
 * back by the caller (sl_migrate's exit path). */
static int apply_one(PGconn *c, const sl_migration *m, char *err, size_t errlen)
{
    if (exec_ok(c, "BEGIN", "cannot begin a transaction", err, errlen) < 0 ||
        exec_ok(c, "SET LOCAL search_path = sluice, public", "cannot set search_path", err,
                errlen) < 0)
        return -1;
    PGresult *r = PQexec(c, m->sql);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT) {
        PQclear(r);
        abandon_copy(c, st);
        sl_seterr(err, errlen, "migration %s failed: COPY to or from the client is not supported",
                  m->name);
        return -1;
    }
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        describe_failure(c, r, m, err, errlen);
        PQclear(r);
        return -1;
    }
    PQclear(r);
    if (PQtransactionStatus(c) != PQTRANS_INTRANS) {
        sl_seterr(err, errlen,
                  "migration %s ended the transaction it runs in: migration files must not "
                  "contain BEGIN, COMMIT or ROLLBACK (check what it left applied)",
                  m->name);
        return -1;
    }
    const char *params[3] = {m->version, m->name, m->md5};
    r = PQexecParams(c,
                     "INSERT INTO sluice.schema_migrations (version, name, checksum) "
                     "VALUES ($1, $2, $3)",
                     3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        char msg[512];
        pq_message(c, msg, sizeof msg);
        sl_seterr(err, errlen, "cannot record migration %s: %s", m->name, msg);
        PQclear(r);
        return -1;
    }
    PQclear(r);
    r = PQexec(c, "COMMIT");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        describe_failure(c, r, m, err, errlen);
        PQclear(r);
        return -1;
    }
    PQclear(r);
    return 0;
}

/* Reads a setting of the session (for restoring it), or "" on failure. */
static void current_setting(PGconn *c, const char *name, char *dst, size_t dstlen)
{
    const char *params[1] = {name};
    PGresult *r = PQexecParams(c, "SELECT current_setting($1)", 1, NULL, params, NULL, NULL, 0);
    dst[0] = '\0';
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        snprintf(dst, dstlen, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
}

static void set_setting(PGconn *c, const char *name, const char *value)
{
    const char *params[2] = {name, value};
    PQclear(PQexecParams(c, "SELECT set_config($1, $2, false)", 2, NULL, params, NULL, NULL, 0));
}

#define BOOKKEEPING_EXISTS                                                                         \
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class t JOIN pg_catalog.pg_namespace n ON "        \
    "n.oid = t.relnamespace WHERE n.nspname = 'sluice' AND t.relname = 'schema_migrations')"

/* True when sluice.schema_migrations exists. Checked before the CREATE … IF NOT
 * EXISTS statements because those need CREATE privileges even when there is
 * nothing to create, which a role of an already migrated database may lack.
 * Asked of the catalog, which every role reads: to_regclass() does not see a
 * table in a schema the role has no USAGE on, and the runner then tried to
 * create it ("permission denied for database"). */
static int bookkeeping_exists(PGconn *c)
{
    PGresult *r = PQexec(c, BOOKKEEPING_EXISTS);
    int yes = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
              strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return yes;
}

int sl_migrate(PGconn *c, int verbose, char *err, size_t errlen)
{
    if (!c || PQstatus(c) != CONNECTION_OK) {
        sl_seterr(err, errlen, "cannot migrate: not connected");
        return -1;
    }
    if (PQtransactionStatus(c) != PQTRANS_IDLE) {
        sl_seterr(err, errlen, "cannot migrate: the connection is inside a transaction");
        return -1;
    }
    sl_migration_list l;
    if (load_migrations(&l, err, errlen) < 0) return -1;

    int rc = -1, locked = 0, applied_count = 0;
    PGresult *applied = NULL;
    char saved_level[32] = "";
    if (checksum_all(c, &l, err, errlen) < 0) goto out;
    /* Usually every file is applied: a read says so, without the lock. */
    if (bookkeeping_exists(c) && !(applied = read_applied(c, err, errlen))) goto out;
    if (!applied || !all_applied(applied, &l)) {
        PQclear(applied);
        applied = NULL;
        /* IF NOT EXISTS and DROP … IF EXISTS raise NOTICEs nobody needs to see. */
        current_setting(c, "client_min_messages", saved_level, sizeof saved_level);
        if (exec_ok(c, "SET client_min_messages = warning", "cannot set client_min_messages", err,
                    errlen) < 0)
            goto out;
        if (exec_ok(c, "SELECT " SL_MIGRATE_LOCK, "cannot take the migration lock", err, errlen) <
            0)
            goto out;
        locked = 1;
        if (!bookkeeping_exists(c) &&
            exec_ok(c, sl_migrations_ddl, "cannot create sluice.schema_migrations", err, errlen) <
                0)
            goto out;
        /* read again under the lock: another process may have applied them */
        if (!(applied = read_applied(c, err, errlen))) goto out;
    }
    for (size_t i = 0; i < l.n; i++) {
        const sl_migration *m = &l.v[i];
        int row = find_applied(applied, m->version);
        if (row >= 0) {
            if (strcmp(PQgetvalue(applied, row, 2), m->md5) != 0)
                sl_log(SL_WARN, "migration changed after it was applied", "file", m->name,
                       "applied_as", PQgetvalue(applied, row, 1), "applied_checksum",
                       PQgetvalue(applied, row, 2), "checksum", m->md5, NULL);
            continue;
        }
        if (apply_one(c, m, err, errlen) < 0) goto out;
        applied_count++;
        if (verbose) fprintf(stderr, "applied %s\n", m->name);
    }
    rc = applied_count;
out:
    if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
        PQclear(PQexec(c, "ROLLBACK"));
    if (locked && PQstatus(c) == CONNECTION_OK) PQclear(PQexec(c, "SELECT " SL_MIGRATE_UNLOCK));
    if (saved_level[0] && PQstatus(c) == CONNECTION_OK)
        set_setting(c, "client_min_messages", saved_level);
    PQclear(applied);
    list_free(&l);
    return rc;
}

int sl_migrate_unknown(PGconn *c, char *names, size_t len)
{
    char err[512];
    names[0] = '\0';
    sl_migration_list l;
    if (load_migrations(&l, err, sizeof err) < 0) {
        snprintf(names, len, "%s", err);
        return -1;
    }
    int n = 0;
    if (bookkeeping_exists(c)) {
        PGresult *applied = read_applied(c, err, sizeof err);
        if (!applied) {
            snprintf(names, len, "%s", err);
            list_free(&l);
            return -1;
        }
        sl_buf b = {0};
        for (int row = 0; row < PQntuples(applied); row++) {
            int known = 0;
            for (size_t i = 0; i < l.n && !known; i++)
                known = strcmp(l.v[i].version, PQgetvalue(applied, row, 0)) == 0;
            if (known) continue;
            sl_buf_printf(&b, "%s%s", n++ ? ", " : "", PQgetvalue(applied, row, 1));
        }
        snprintf(names, len, "%s", b.len ? sl_buf_str(&b) : "");
        sl_buf_free(&b);
        PQclear(applied);
    }
    list_free(&l);
    return n;
}

/* ================================================================ sluice migrate */

static void migrate_usage(FILE *out)
{
    fprintf(out, "usage: sluice migrate [--status]\n"
                 "\n"
                 "Apply pending schema migrations (schema/NNN_name.sql, built into sluice) in\n"
                 "order, each in its own transaction, recording them in\n"
                 "sluice.schema_migrations. `serve` does the same at start-up.\n"
                 "\n"
                 "  --status   list applied and pending migrations; apply nothing\n"
                 "\n"
                 "SLUICE_SCHEMA_DIR=DIR uses DIR/*.sql instead of the built-in files.\n");
}

/* --status: every known file and every recorded version, with its state. */
static int migrate_status(PGconn *c)
{
    char err[1024];
    sl_migration_list l;
    if (load_migrations(&l, err, sizeof err) < 0 || checksum_all(c, &l, err, sizeof err) < 0) {
        list_free(&l);
        sl_cli_error("%s", err);
        return 1;
    }
    PGresult *exists = PQexec(c, BOOKKEEPING_EXISTS);
    PGresult *applied = NULL;
    int rc = 0;
    if (PQresultStatus(exists) != PGRES_TUPLES_OK) {
        pq_message(c, err, sizeof err);
        sl_cli_error("%s", err);
        rc = 1;
        goto out;
    }
    if (strcmp(PQgetvalue(exists, 0, 0), "t") == 0) {
        applied = PQexec(c, "SELECT version, name, checksum, "
                            "to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
                            "|| 'Z' FROM sluice.schema_migrations ORDER BY name");
        if (PQresultStatus(applied) != PGRES_TUPLES_OK) {
            result_message(c, applied, err, sizeof err);
            sl_cli_error("cannot read sluice.schema_migrations: %s", err);
            rc = 1;
            goto out;
        }
    }
    int pending = 0;
    for (size_t i = 0; i < l.n; i++) {
        int row = find_applied(applied, l.v[i].version);
        if (row < 0) {
            printf("%-8s %-21s %s\n", "pending", "", l.v[i].name);
            pending++;
        } else {
            int changed = strcmp(PQgetvalue(applied, row, 2), l.v[i].md5) != 0;
            printf("%-8s %-21s %s%s\n", "applied", PQgetvalue(applied, row, 3), l.v[i].name,
                   changed ? "  (file changed since it was applied)" : "");
        }
    }
    for (int row = 0; applied && row < PQntuples(applied); row++) {
        int known = 0;
        for (size_t i = 0; i < l.n && !known; i++)
            known = strcmp(l.v[i].version, PQgetvalue(applied, row, 0)) == 0;
        if (!known)
            printf("%-8s %-21s %s  (no such file in this build)\n", "applied",
                   PQgetvalue(applied, row, 3), PQgetvalue(applied, row, 1));
    }
    printf(pending ? "%d pending\n" : "schema is up to date\n", pending);
out:
    PQclear(exists);
    PQclear(applied);
    list_free(&l);
    return rc;
}

int sl_cmd_migrate(const sl_config *cfg, int argc, char **argv)
{
    if (sl_cli_wants_help(argc, argv)) {
        migrate_usage(stdout);
        return 0;
    }
    int status_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--status") == 0) {
            status_only = 1;
        } else {
            sl_cli_error("migrate: %s '%s' (see `sluice migrate --help`)",
                         argv[i][0] == '-' ? "unknown option" : "unexpected argument", argv[i]);
            return 2;
        }
    }
    char *url = sl_cli_db_url(cfg);
    if (!url) return 1;
    PGconn *c = PQconnectdb(url);
    free(url);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        char msg[512] = "out of memory";
        if (c) pq_message(c, msg, sizeof msg);
        sl_cli_error("cannot connect to the database: %s", msg);
        PQfinish(c);
        return 1;
    }
    int rc = 0;
    if (status_only) {
        rc = migrate_status(c);
    } else {
        char err[2048];
        int n = sl_migrate(c, 1, err, sizeof err);
        if (n < 0) {
            sl_cli_error("%s", err);
            rc = 1;
        } else if (n == 0) {
            printf("schema is up to date\n");
        } else {
            printf("%d migration%s applied\n", n, n == 1 ? "" : "s");
        }
        char newer[1024];
        if (n >= 0 && sl_migrate_unknown(c, newer, sizeof newer) > 0)
            fprintf(stderr,
                    "sluice: note: the database has migrations this build does not have (%s): "
                    "a newer sluice applied them; this one works on such a schema, as during a "
                    "rolling upgrade, but should be upgraded\n",
                    newer);
    }
    PQfinish(c);
    return rc;
}
