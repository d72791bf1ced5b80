/*
 * cli_logs.c — `sluice logs ID [--follow]`: a run's log, or the log of a job's
 * newest run, and with --follow the lines as the worker records them until the
 * run ends (for a one-time job, through its retries until it settles).
 *
 * A worker records the lines of a run in flight every two seconds and the rest
 * when the run ends (worker.c), so following is reading the run's row every
 * half second from where the last read stopped: the log is only ever appended
 * to. Lines are printed as `sluice show` prints stored text, control
 * characters as `cat -v` shows them; the outcome goes to stderr, so stdout is
 * the log alone.
 */
#include "buf.h"
#include "cli.h"
#include "config.h"
#include "pg.h"
#include "table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { POLL_MS = 500, RECONNECT_SECONDS = 60 };

typedef struct {
    PGconn *c;
    char job[40]; /* the job whose runs are followed ("" for one run) */
    char run[40]; /* the run being printed ("" while waiting for one) */
    long printed; /* characters of its log printed */
    int follow;
} logs_state;

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice logs RUN_ID|JOB_ID [--follow]\n\n"
                 "A run's log, or for a job the log of its newest run (the one in flight,\n"
                 "if any). An id may be shortened to a unique prefix of at least 4\n"
                 "characters. Control characters are shown as `cat -v` does.\n\n"
                 "  -f, --follow   keep printing lines as the worker records them (every two\n"
                 "                 seconds) until the run ends, then say how it ended on\n"
                 "                 stderr. For a job: wait for a run to start if it has had\n"
                 "                 none, and follow a one-time job's retries until it\n"
                 "                 completes, fails for good or is cancelled. Exit status 0\n"
                 "                 when the last run followed completed, 1 when it did not.\n");
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A statement the server answered with an error: says it. NULL. */
static PGresult *query_failed(logs_state *s, PGresult *r)
{
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (!msg) msg = PQerrorMessage(s->c);
    sl_cli_error("logs: %.*s", (int)strcspn(msg, "\n"), msg);
    PQclear(r);
    return NULL;
}

/* Runs a query, and after a lost connection tries again (reconnecting once a
 * second for up to a minute, saying so once), as a follow outlives a database
 * restart. NULL after printing the error. */
static PGresult *query(logs_state *s, const char *sql, int n, const char *const *p)
{
    PGresult *r = PQexecParams(s->c, sql, n, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) return r;
    if (PQstatus(s->c) == CONNECTION_OK || !s->follow) return query_failed(s, r);
    PQclear(r);
    fprintf(stderr, "sluice: the database connection was lost: reconnecting\n");
    for (int i = 0; i < RECONNECT_SECONDS; i++) {
        sleep_ms(1000);
        PQreset(s->c);
        if (PQstatus(s->c) != CONNECTION_OK) continue;
        r = PQexecParams(s->c, sql, n, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK) return r;
        /* back, and the statement itself refused: no reconnecting cures that */
        if (PQstatus(s->c) == CONNECTION_OK) return query_failed(s, r);
        PQclear(r);
    }
    char why[512]; /* libpq's text as connecting commands show it, no blank line after */
    sl_pg_connect_reason(PQerrorMessage(s->c), why, sizeof why);
    sl_cli_error("logs: the database did not come back in %d seconds: %s", RECONNECT_SECONDS, why);
    return NULL;
}

static void print_visible(const char *text)
{
    if (!*text) return;
    char *v = sl_text_visible(text, 1);
    fputs(v, stdout);
    free(v);
    fflush(stdout);
}

/* A job as read in one statement, so that its run and its status agree: the
 * run its log comes from (the one in flight, else its newest; "" when it has
 * none yet), its status and schedule type, and when it is due next ("" when
 * it is not). */
typedef struct {
    char run[40];
    char status[16];
    char kind[16];
    char due[32];
    int run_attempt;  /* that run's attempt number */
    int next_attempt; /* the number of the job's next attempt, when it is due */
} job_state;

/* Reads s->job into *j. 0, or 1 after printing the error (the job is gone). */
static int read_job(logs_state *s, job_state *j)
{
    const char *p[] = {s->job};
    PGresult *r = query(s,
                        "SELECT r.id::text, j.status, j.schedule_type, "
                        "to_char(j.next_run_at AT TIME ZONE 'UTC', "
                        "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), r.attempt_number, j.attempts + 1 "
                        "FROM sluice.scheduled_jobs j LEFT JOIN LATERAL ("
                        " SELECT x.id, x.attempt_number FROM sluice.scheduled_job_runs x"
                        " WHERE x.id = j.current_run_id OR (j.current_run_id IS NULL"
                        "  AND x.scheduled_job_id = j.id)"
                        " ORDER BY x.created_at DESC, x.id LIMIT 1) r ON true "
                        "WHERE j.id = $1",
                        1, p);
    if (!r) return 1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        sl_cli_error("logs: job %s is gone", s->job);
        return 1;
    }
    snprintf(j->run, sizeof j->run, "%s", PQgetvalue(r, 0, 0)); /* "" for NULL */
    snprintf(j->status, sizeof j->status, "%s", PQgetvalue(r, 0, 1));
    snprintf(j->kind, sizeof j->kind, "%s", PQgetvalue(r, 0, 2));
    snprintf(j->due, sizeof j->due, "%s", PQgetvalue(r, 0, 3));
    j->run_attempt = atoi(PQgetvalue(r, 0, 4));
    j->next_attempt = atoi(PQgetvalue(r, 0, 5));
    PQclear(r);
    return 0;
}

static int job_waits(const job_state *j)
{
    return strcmp(j->status, "active") == 0 || strcmp(j->status, "paused") == 0;
}

/* Waits for a run of the job other than `after` (NULL: any) to exist; 0 with
 * s->run set, 1 after an error or when the job ended without one. */
static int wait_for_run(logs_state *s, const char *after)
{
    int said = after != NULL; /* a retry's due time was said already */
    for (;;) {
        job_state j;
        if (read_job(s, &j)) return 1;
        if (j.run[0] && (!after || strcmp(j.run, after) != 0)) {
            snprintf(s->run, sizeof s->run, "%s", j.run);
            return 0;
        }
        if (!job_waits(&j)) {
            sl_cli_error("logs: job %.8s is %s, with no run to follow", s->job, j.status);
            return 1;
        }
        if (!said) {
            fprintf(stderr, "sluice: job %.8s has no run yet (%s%s%s): waiting for one\n", s->job,
                    j.status, j.due[0] ? ", due " : "", j.due);
            said = 1;
        }
        sleep_ms(POLL_MS);
    }
}

/* Prints what the run's log holds past s->printed. *ended: 1 once the run is
 * over (everything printed), with its outcome said on stderr; *ok whether it
 * completed. 0, or 1 after printing the error. */
static int read_more(logs_state *s, int *ended, int *ok)
{
    char from[24];
    snprintf(from, sizeof from, "%ld", s->printed);
    const char *p[] = {s->run, from};
    PGresult *r = query(s,
                        "SELECT status, substr(logs, $2::int + 1), length(logs), "
                        "error_message, attempt_number, "
                        "extract(epoch FROM completed_at - started_at) "
                        "FROM sluice.scheduled_job_runs WHERE id = $1",
                        2, p);
    if (!r) return 1;
    if (PQntuples(r) != 1) { /* pruned by retention meanwhile */
        PQclear(r);
        sl_cli_error("logs: run %s is gone (pruned)", s->run);
        return 1;
    }
    print_visible(PQgetvalue(r, 0, 1));
    s->printed = atol(PQgetvalue(r, 0, 2));
    const char *status = PQgetvalue(r, 0, 0);
    *ended = strcmp(status, "running") != 0 && strcmp(status, "pending") != 0;
    *ok = strcmp(status, "completed") == 0;
    if (*ended && s->follow) {
        char took[64] = "";
        if (!PQgetisnull(r, 0, 5)) sl_fmt_duration(atof(PQgetvalue(r, 0, 5)), took, sizeof took);
        const char *err = PQgetisnull(r, 0, 3) ? NULL : PQgetvalue(r, 0, 3);
        char *short_err = err ? sl_text_visible(err, 1) : NULL;
        if (short_err) short_err[strcspn(short_err, "\n")] = '\0'; /* no traceback */
        fprintf(stderr, "sluice: run %.8s (attempt %s) %s%s%s%s%s\n", s->run, PQgetvalue(r, 0, 4),
                status, *took ? (*ok ? " in " : " after ") : "", took, short_err ? ": " : "",
                short_err ? short_err : "");
        free(short_err);
    }
    PQclear(r);
    return 0;
}

/* After the run s->run of a job ended: whether another run of it is to be
 * followed — a one-time job's retry (which may have started already), saying
 * so — or else how the job stands. 1: s->run is that run, or it is to be
 * waited for (*wait); 0: the job is done with; -1 after an error. */
static int job_goes_on(logs_state *s, int *wait)
{
    job_state j;
    if (read_job(s, &j)) return -1;
    int one_time = strcmp(j.kind, "one_time") == 0;
    *wait = 0;
    if (one_time && j.run[0] && strcmp(j.run, s->run) != 0) { /* the retry is under way */
        fprintf(stderr, "sluice: attempt %d has started: following it\n", j.run_attempt);
        snprintf(s->run, sizeof s->run, "%s", j.run);
        return 1;
    }
    if (one_time && strcmp(j.status, "active") == 0) {
        fprintf(stderr, "sluice: attempt %d %s%s: following it\n", j.next_attempt,
                j.due[0] ? "is due at " : "has started", j.due);
        *wait = 1;
        return 1;
    }
    if (!one_time)
        fprintf(stderr, "sluice: job %.8s is recurring (%s)%s%s\n", s->job, j.status,
                j.due[0] ? ": its next run is due at " : "", j.due);
    else
        fprintf(stderr, "sluice: job %.8s %s\n", s->job, j.status);
    return 0;
}

static int follow(logs_state *s)
{
    int ended = 0, ok = 0;
    for (;;) {
        if (read_more(s, &ended, &ok)) return 1;
        if (!ended) {
            sleep_ms(POLL_MS);
            continue;
        }
        if (!s->job[0]) return ok ? 0 : 1;
        char last[40];
        snprintf(last, sizeof last, "%s", s->run);
        int wait, on = job_goes_on(s, &wait);
        if (on < 0) return 1;
        if (!on) return ok ? 0 : 1;
        if (wait && wait_for_run(s, last)) return 1;
        s->printed = 0;
    }
}

int sl_cmd_logs(const sl_config *cfg, int argc, char **argv)
{
    if (sl_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    logs_state s = {0};
    const char *id = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--follow") == 0) {
            s.follow = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            sl_cli_error("logs: unknown option '%s' (see `sluice logs --help`)", argv[i]);
            return 2;
        } else if (id) {
            sl_cli_error("logs: one id at a time ('%s' and '%s')", id, argv[i]);
            return 2;
        } else {
            id = argv[i];
        }
    }
    if (!id) {
        usage(stderr);
        return 2;
    }
    s.c = sl_cli_connect(cfg);
    if (!s.c) return 1;
    char kind[8], full[40];
    int status = sl_cli_find_id(s.c, "logs", id, 0, kind, full);
    if (!status) {
        if (strcmp(kind, "run") == 0) {
            snprintf(s.run, sizeof s.run, "%s", full);
        } else {
            snprintf(s.job, sizeof s.job, "%s", full);
            job_state j;
            if (s.follow) {
                status = wait_for_run(&s, NULL);
            } else if (!(status = read_job(&s, &j))) {
                snprintf(s.run, sizeof s.run, "%s", j.run);
                if (!s.run[0]) fprintf(stderr, "sluice: job %.8s has no runs yet\n", full);
            }
        }
    }
    if (!status && s.run[0]) {
        int ended, ok;
        status = s.follow ? follow(&s) : read_more(&s, &ended, &ok);
    }
    PQfinish(s.c);
    return status;
}
