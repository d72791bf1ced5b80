/*
 * migrate.h — the schema migration runner: applies the numbered schema/NNN_name.sql
 * files compiled into the binary, in file-name order, each in its own transaction,
 * under a session advisory lock, recording each in sluice.schema_migrations.
 *
 * SLUICE_SCHEMA_DIR, when set, names a directory whose *.sql files are used instead
 * of the compiled-in ones (for working on the schema without rebuilding).
 */
#ifndef SL_MIGRATE_H
#define SL_MIGRATE_H

#include <libpq-fe.h>
#include <stddef.h>

/* Applies pending migrations on c, which must be idle (not in a transaction).
 * Returns the number applied (0 if none), or -1 with a one-line message in err
 * naming the failing file; a failing file is rolled back entirely and later files
 * are not tried. A file whose content changed after it was applied is logged as a
 * warning, not an error. verbose: print "applied 001_core.sql" lines on stderr.
 * Blocking; the session's client_min_messages is restored on return. */
int sl_migrate(PGconn *c, int verbose, char *err, size_t errlen);

/* The migrations recorded as applied in c's database that this build does not
 * have (a newer sluice applied them), by name and in version order, as
 * "205_a.sql, 206_b.sql" in names ("" for none, cut to len). Returns their
 * number, or -1 with the reason in names. Blocking. */
int sl_migrate_unknown(PGconn *c, char *names, size_t len);

#endif
