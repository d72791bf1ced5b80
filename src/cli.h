/*
 * cli.h — what every subcommand shares: error printing, the blocking database
 * connection used by one-shot commands, and small argument helpers.
 *
 * One-shot commands (queue, brands, migrate, db, views) run no event loop and use
 * blocking libpq; serve, run, repl and exec use the loop (src/pg.c).
 */
#ifndef SL_CLI_H
#define SL_CLI_H

#include <ev.h>
#include <libpq-fe.h>
#include <stdio.h>

struct sl_config;

/* Watches signum on loop with w (initialised here, so ev_is_active tells
 * whether it was started) unless the process started with the signal ignored,
 * as under nohup: an inherited ignore is kept. */
void sl_cli_watch_signal(struct ev_loop *loop, ev_signal *w,
                         void (*cb)(struct ev_loop *, ev_signal *, int), int signum, void *data);

/* "sluice: error: …" on stderr; a log line of level error instead while
 * sl_cli_errors_to_log(1) holds (serve's start-up, whose output is the log). */
void sl_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sl_cli_errors_to_log(int on);

/* fflush(stdout) for output that streams (print() outside runs, the REPL's
 * values, `logs --follow`, a line before the notes on stderr): the reason the
 * first write failed is kept for sl_cli_output_written, since a failed flush
 * drops what it held and a later one succeeds. Returns fflush's result. */
int sl_cli_flush_stdout(void);

/* len bytes of s and a newline on stdout, flushed with sl_cli_flush_stdout. */
void sl_cli_put_line(const char *s, size_t len);

/* At exit: output that could not be written (a full disk, say) fails the
 * command, "cannot write the output: <reason>", exit status 1 unless status
 * says a failure already. stdout is flushed here, before exit would flush it
 * and drop the error. */
int sl_cli_output_written(int status);

/* The connection string to use: cfg->db_url, or the embedded cluster's (started
 * on demand). Returns a malloc'd string, or NULL after printing the error. */
char *sl_cli_db_url(const struct sl_config *cfg);

/* A blocking connection (opened like the pool's: search_path sluice, public)
 * with migrations applied; the embedded cluster is started if it must be.
 * NULL after printing the error, with the exit status it calls for in *status
 * (status may be NULL): 2 when the connection failed for its settings (a role,
 * password, database or TLS setting the server or libpq refuses:
 * sl_pg_connect_reason) rather than for a server that did not answer — a
 * configuration error, which `serve` does not wait out at start-up; else 1. */
PGconn *sl_cli_connect(const struct sl_config *cfg, int *status);

/* sl_cli_connect, and *url_out (malloc'd) gets the connection string it used. */
PGconn *sl_cli_open(const struct sl_config *cfg, char **url_out, int *status);

/* sl_cli_open in two halves: sl_cli_open_early() starts opening the connection
 * (the server sets the session up while the caller loads its handlers);
 * sl_cli_open_finish() completes it, or does all of sl_cli_open when e is NULL
 * or the embedded cluster did not answer (it is started then), and frees e.
 * sl_cli_open_early returns NULL when there is nothing to start early (no
 * database configured yet: the embedded cluster is set up on demand).
 * sl_cli_early_free() drops one never finished. */
typedef struct sl_cli_early sl_cli_early;
sl_cli_early *sl_cli_open_early(const struct sl_config *cfg);
PGconn *sl_cli_open_finish(const struct sl_config *cfg, sl_cli_early *e, char **url_out,
                           int *status);
void sl_cli_early_free(sl_cli_early *e);

/* Runs sql with text params; on failure prints the server's message (with a
 * hint if any) and returns NULL. Caller PQclear()s. */
PGresult *sl_cli_exec(PGconn *c, const char *sql, int nparams, const char *const *params);

/* sl_cli_exec, and on failure the exit status it calls for into *status
 * (sl_cli_exit_status). */
PGresult *sl_cli_exec_status(PGconn *c, const char *sql, int nparams, const char *const *params,
                             int *status);

/* sl_cli_exec_status, but the server's hint follows its message on the same
 * line, in parentheses: for commands whose every error is one line. */
PGresult *sl_cli_exec_line(PGconn *c, const char *sql, int nparams, const char *const *params,
                           int *status);

/* For a statement refused for want of a privilege (SQLSTATE 42501): a note
 * naming the role the connection logged in as and what it needs, " (the role
 * \"app\" lacks privileges on sluice's schema: …)"; "" for any other
 * failure. */
void sl_cli_privilege_note(PGconn *c, const PGresult *failed, char *buf, size_t len);

/* The exit status a failed result calls for: 2 when the server refused the
 * input (a data exception, a constraint, or a function's RAISE such as "unknown
 * brand": SL_PG_BAD_INPUT), 1 otherwise (the connection, the server). */
int sl_cli_exit_status(const PGresult *failed);

/* The note, after "sluice: " (and the command's name), for a job whose type is
 * marked unavailable: its printf format, with the type's name for %s. */
#define TYPE_UNAVAILABLE_NOTE                                                                      \
    "note: job type '%s' is unavailable (the last daemon to sync the registry has no handler "     \
    "file for it): no worker runs the job until one that has the file does\n"

/* The value of the option at argv[*i] (advancing *i past it) into *out; -1 after
 * saying why when there is none or it is empty (for an empty --brand, with
 * brand_hint, the command's way to say "no brand", when given). */
#define NO_BRAND_JOB "leave --brand out for a job without a brand"
int sl_cli_option_value(int argc, char **argv, int *i, const char *cmd, const char *brand_hint,
                        const char **out);

/* Resolves a run or job id, whole or shortened to a unique prefix of at least 4
 * hex digits (as the tables show them): "run" or "job" into kind, the full id
 * into full. jobs_only: among jobs only. Returns 0, or the exit status after
 * printing why not (prefixed with what, the command): 2 for an id that names
 * nothing or more than one, 1 when the database failed. */
int sl_cli_find_id(PGconn *c, const char *what, const char *id, int jobs_only, char kind[8],
                   char full[40]);

/* Appends s quoted for a POSIX shell, for the commands a hint prints:
 * 'O'\''Brien & Sons'. */
struct sl_buf;
void sl_cli_shell_quote(struct sl_buf *b, const char *s);

/* Option opt's value v as a whole number from min to max into *out (may be
 * NULL); -1 after saying "--priority must be a whole number from … to …". */
int sl_cli_whole_number(const char *opt, const char *v, long min, long max, long *out);

/* The wall time of the instant `epoch` (seconds, as text) in the zone `zone`,
 * "2026-11-30 09:00:00 CET", into out; -1 (out empty) when either cannot be
 * read or the zone is UTC, where the UTC time says it all. */
int sl_cli_local_time(const char *zone, const char *epoch, char *out, size_t len);

/* A job's priority, for queue and schedule alike (lower runs first). */
#define SL_PRIORITY_MIN (-1000000L)
#define SL_PRIORITY_MAX 1000000L

/* True when argv[i] is "-h" or "--help". */
int sl_cli_wants_help(int argc, char **argv);

/* Subcommands: argv[0] is the command name. Return the process exit status. */
int sl_cmd_db(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_migrate(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_queue(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_serve(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_run(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_brands(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_workers(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_competitors(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_cron(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_exec(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_repl(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_check(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_types(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_health(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_runs(const struct sl_config *cfg, int argc, char **argv);
/* `jobs` lists jobs; `jobs cancel|pause|resume …` goes to sl_cmd_jobs_control,
 * `jobs edit …` to sl_cmd_jobs_edit. */
int sl_cmd_jobs(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_show(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_logs(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_schedule(const struct sl_config *cfg, int argc, char **argv);
int sl_cmd_config(const struct sl_config *cfg, int argc, char **argv);
/* `jobs cancel|pause|resume ID…`: argv[1] is the action. */
int sl_cmd_jobs_control(const struct sl_config *cfg, int argc, char **argv);
/* `jobs edit ID [--cron …]`: argv[1] is "edit". */
int sl_cmd_jobs_edit(const struct sl_config *cfg, int argc, char **argv);

#endif
