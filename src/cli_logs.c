/*
 * cli_logs.c — `sluice logs ID [--follow]`: a run's log, or the log of a job's
 * newest run, and with --follow the lines as the worker records them until the
 * run ends (for a one-time job, through its retries until it settles).
 *
 * A worker records the lines of a run in flight every two seconds and the rest
 * when the run ends (worker_passes.c, worker.c), so following is reading the
 * run's row every half second from where the last read stopped: the log is
 * only ever appended to. Lines are printed as `sluice show` prints stored
 * text, control characters as `cat -v` shows them; the outcome goes to stderr,
 * so stdout is the log alone.
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
    int orphaned; /* whether its lease was said to have expired */
} logs_state;

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice logs RUN_ID|JOB_ID [--follow]\n\n"
                 "A run's log, or for a job the log of its newest run (the one in flight,\n"
                 "if any). An id may be shortened to a unique prefix of at least 4\n"
                 "characters. Control characters are shown as `cat -v` does.\n\n"
                 "  -f, --follow   keep printing lines as the worker records them (every two\n"
                 "                 seconds) until the run ends, then say how it ended on\n"
                 "                 stderr. For a job with no run in flight: wait for one\n"
                 "                 to start when the job is due (after `jobs run-now`,\n"
                 "                 say) or has had none, else start from its newest run.\n"
                 "                 A one-time job's retries are followed (a paused job's\n"
                 "                 too) until it completes, fails for good or is\n"
                 "                 cancelled. Exit status 0 when the last run followed\n"
                 "                 completed, 1 when it did not.\n");
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Runs a query, and after a lost connection tries again (reconnecting once a
 * second for up to a minute, saying so once), as a follow outlives a database
 * restart. NULL after printing the error. */
static PGresult *query_failed(logs_state *s, PGresult *r)
{
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (!msg) msg = PQerrorMessage(s->c);
    sl_cli_error("logs: %.*s", (int)strcspn(msg, "\n"), msg);
    PQclear(r);
    return NULL;
}

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
    sl_cli_flush_stdout();
}

/* A job as one statement reads it, so that its status and its runs agree. */
typedef struct {
    char run[40];    /* the run its log comes from: the one in flight, else the newest */
    char newest[40]; /* its newest run ("" for both when it has none) */
    char status[16];
    char kind[16]; /* schedule_type */
    char due[32];  /* next_run_at as ISO 8601, "" when none */
    int due_now;   /* active, no run in flight, next_run_at passed */
    int newest_attempt;
    int next_attempt; /* the number its next attempt will have */
    char type[128];   /* its job type, when marked unavailable (no handler file where the
                         last daemon synced the registry: no worker claims it); "" otherwise */
} job_state;

/* Reads s->job into *j. 0; 1 after printing the error (also when the job is
 * gone). */
static int read_job(logs_state *s, job_state *j)
{
    const char *p[] = {s->job};
    PGresult *r =
        query(s,
              "SELECT coalesce(j.current_run_id, n.id)::text, n.id::text, j.status, "
              "j.schedule_type, to_char(j.next_run_at AT TIME ZONE 'UTC', "
              "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), j.current_run_id IS NULL AND "
              "j.status = 'active' AND j.next_run_at <= now(), n.attempt_number, "
              "j.attempts + 1, CASE WHEN NOT t.available THEN t.name END "
              "FROM sluice.scheduled_jobs j "
              "LEFT JOIN sluice.job_types t ON t.name = j.job_type LEFT JOIN LATERAL (SELECT r.id, "
              "r.attempt_number FROM sluice.scheduled_job_runs r "
              "WHERE r.scheduled_job_id = j.id ORDER BY r.created_at DESC, r.id "
              "LIMIT 1) n ON true WHERE j.id = $1",
              1, p);
    if (!r) return 1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        sl_cli_error("logs: job %s is gone", s->job);
        return 1;
    }
    snprintf(j->run, sizeof j->run, "%s", PQgetvalue(r, 0, 0)); /* "" for NULL */
    snprintf(j->newest, sizeof j->newest, "%s", PQgetvalue(r, 0, 1));
    snprintf(j->status, sizeof j->status, "%s", PQgetvalue(r, 0, 2));
    snprintf(j->kind, sizeof j->kind, "%s", PQgetvalue(r, 0, 3));
    snprintf(j->due, sizeof j->due, "%s", PQgetvalue(r, 0, 4));
    j->due_now = strcmp(PQgetvalue(r, 0, 5), "t") == 0;
    j->newest_attempt = atoi(PQgetvalue(r, 0, 6));
    j->next_attempt = atoi(PQgetvalue(r, 0, 7));
    snprintf(j->type, sizeof j->type, "%s", PQgetvalue(r, 0, 8));
    PQclear(r);
    return 0;
}

/* Prints what the run's log holds past s->printed. *ended: 1 once the run is
 * over (everything printed), with its outcome said on stderr; *ok whether it
 * completed. 0; 1 after printing the error; 2 when the run is gone, unsaid
 * (given back to its job before it started, or pruned). */
static int read_more(logs_state *s, int *ended, int *ok)
{
    char from[24];
    snprintf(from, sizeof from, "%ld", s->printed);
    const char *p[] = {s->run, from};
    PGresult *r = query(s,
                        "SELECT status, substr(logs, $2::int + 1), length(logs), "
                        "error_message, attempt_number, "
                        "extract(epoch FROM completed_at - started_at), "
                        "CASE WHEN status = 'running' AND lease_expires_at < now() - "
                        "interval '1 minute' THEN to_char(lease_expires_at AT TIME ZONE 'UTC', "
                        "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') END "
                        "FROM sluice.scheduled_job_runs WHERE id = $1",
                        2, p);
    if (!r) return 1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return 2;
    }
    print_visible(PQgetvalue(r, 0, 1));
    s->printed = atol(PQgetvalue(r, 0, 2));
    const char *status = PQgetvalue(r, 0, 0);
    *ended = strcmp(status, "running") != 0 && strcmp(status, "pending") != 0;
    *ok = strcmp(status, "completed") == 0;
    if (s->follow && !s->orphaned && !PQgetisnull(r, 0, 6)) {
        /* its worker is gone and no live one has failed it (`health` calls
         * its dataset stuck): say so once, rather than wait in silence */
        fprintf(stderr,
                "sluice: run %.8s's lease expired at %s and no worker has failed it: is any "
                "worker running and reaching the database? (waiting for one)\n",
                s->run, PQgetvalue(r, 0, 6));
        s->orphaned = 1;
    }
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

/* After a job's run ended: whether another run of it is to be followed (a
 * one-time job still active or paused: a retry), saying when it is due. -1
 * after an error. The attempt is the started run's, or the one the job's
 * count makes next, not the ended run's plus one: a failed job run again
 * with `sluice jobs run-now` counts its attempts afresh. */
static int job_goes_on(logs_state *s)
{
    job_state j;
    if (read_job(s, &j)) return -1;
    /* a retry that started, and even ended, since s->run did is followed */
    int started = strcmp(j.kind, "one_time") == 0 && *j.newest && strcmp(j.newest, s->run) != 0;
    int paused = strcmp(j.status, "paused") == 0;
    int on =
        started || (strcmp(j.kind, "one_time") == 0 && (paused || strcmp(j.status, "active") == 0));
    if (on)
        fprintf(stderr, "sluice: attempt %d %s%s%s: following it\n",
                started ? j.newest_attempt : j.next_attempt,
                started || !*j.due ? "has started" : "is due at ", started ? "" : j.due,
                paused && !started ? " once the job is resumed" : "");
    else if (strcmp(j.kind, "recurring") == 0)
        fprintf(stderr, "sluice: job %.8s is recurring (%s)%s%s%s\n", s->job, j.status,
                *j.due ? ": its next run is due at " : "", j.due,
                paused && *j.due ? " once it is resumed" : "");
    else
        fprintf(stderr, "sluice: job %.8s %s\n", s->job, j.status);
    return on;
}

/* Waits for a run of the job other than `after` (NULL: any) to exist; 0 with
 * s->run set, 1 after an error or when the job ended without one. `said`:
 * whether the wait was announced already (a retry's due time was said). A
 * pause or resume meanwhile is said as it is seen. */
static int wait_for_run(logs_state *s, const char *after, int said)
{
    int followed = said; /* something was said of the job: its end is news too */
    char seen[16] = "";  /* the job's status when last said */
    for (;;) {
        job_state j;
        if (read_job(s, &j)) return 1;
        if (*j.run && (!after || strcmp(j.run, after) != 0)) {
            snprintf(s->run, sizeof s->run, "%s", j.run);
            return 0;
        }
        const char *st = j.status;
        int paused = strcmp(st, "paused") == 0;
        if (strcmp(st, "active") != 0 && !paused) {
            if (followed) /* the job ended between two runs */
                fprintf(stderr, "sluice: job %.8s %s\n", s->job, st);
            else
                sl_cli_error("logs: job %.8s is %s, with no run to follow", s->job, st);
            return 1;
        }
        if (!said) {
            fprintf(stderr, "sluice: job %.8s has no run %s (%s%s%s): waiting for one\n", s->job,
                    after ? "in flight" : "yet", st, *j.due ? ", due " : "", j.due);
            if (*j.type) fprintf(stderr, "sluice: " TYPE_UNAVAILABLE_NOTE, j.type);
            said = 1;
        } else if (*seen && strcmp(seen, st) != 0) {
            fprintf(stderr, "sluice: job %.8s %s%s%s\n", s->job,
                    paused ? "is paused: waiting for it to be resumed" : "was resumed",
                    paused || !*j.due ? "" : ", due ", paused ? "" : j.due);
        }
        snprintf(seen, sizeof seen, "%s", st);
        sleep_ms(POLL_MS);
    }
}

/* For --follow of a job: the run to start from. The one in flight; else,
 * when the job is due (queued, a retry whose backoff is over, or `sluice jobs
 * run-now`), the run about to start, not the newest one, which is over and
 * would be followed in its place (a recurring job's last run said "completed"
 * and ended the follow before the run asked for began); else the newest run,
 * or the first to start when it has none. 0, or 1 after an error. */
static int first_run(logs_state *s)
{
    job_state j;
    if (read_job(s, &j)) return 1;
    return wait_for_run(s, j.due_now && *j.newest ? j.newest : NULL, 0);
}

static int follow(logs_state *s)
{
    int ended = 0, ok = 0;
    for (;;) {
        int st = read_more(s, &ended, &ok);
        if (st == 2 && s->job[0]) {
            /* a claimed run given back before it started (its job paused, its
             * worker stopping, its claim answered too late): the job's next
             * run is followed (retention never prunes the latest run of a job) */
            fprintf(stderr,
                    "sluice: run %.8s was given back to job %.8s before it started: waiting for "
                    "the job's next run\n",
                    s->run, s->job);
            job_state j;
            if (read_job(s, &j)) return 1;
            if (wait_for_run(s, *j.newest ? j.newest : NULL, 1)) return 1;
            s->printed = 0;
            s->orphaned = 0;
            continue;
        }
        if (st == 2)
            sl_cli_error("logs: run %.8s is gone: given back to its job before it started, or "
                         "pruned",
                         s->run);
        if (st) return 1;
        if (!ended) {
            sleep_ms(POLL_MS);
            continue;
        }
        if (!s->job[0]) return ok ? 0 : 1;
        int on = job_goes_on(s);
        if (on < 0) return 1;
        if (!on) return ok ? 0 : 1;
        char last[40];
        snprintf(last, sizeof last, "%s", s->run);
        if (wait_for_run(s, last, 1)) return 1;
        s->printed = 0;
        s->orphaned = 0;
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
    int failed;
    s.c = sl_cli_connect(cfg, &failed);
    if (!s.c) return failed;
    char kind[8], full[40];
    int status = sl_cli_find_id(s.c, "logs", id, 0, kind, full);
    if (!status) {
        if (strcmp(kind, "run") == 0) {
            snprintf(s.run, sizeof s.run, "%s", full);
        } else {
            snprintf(s.job, sizeof s.job, "%s", full);
            job_state j;
            status = s.follow ? first_run(&s) : read_job(&s, &j);
            if (!status && !s.follow) snprintf(s.run, sizeof s.run, "%s", j.run);
            if (!status && !s.run[0]) fprintf(stderr, "sluice: job %.8s has no runs yet\n", full);
        }
    }
    if (!status && s.run[0]) {
        int ended, ok;
        status = s.follow ? follow(&s) : read_more(&s, &ended, &ok);
        if (status == 2) { /* between the id's lookup and the read */
            sl_cli_error("logs: run %.8s is gone: given back to its job before it started, or "
                         "pruned",
                         s.run);
            status = 1;
        }
    }
    PQfinish(s.c);
    return status;
}
