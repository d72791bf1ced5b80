/*
 * cli_schedule.c — `sluice schedule`: create a recurring job from a cron
 * expression in a time zone; `sluice jobs edit ID` to change one; and
 * `sluice jobs cancel|pause|resume|run-now ID`.
 *
 * The expression and the zone are checked here (the error names the field), the
 * parameters against the handler's schema, and the first slot is computed before
 * anything is written. A schedule that is there already (the same one, or the
 * one holding --dedupe-key: sluice.ensure_schedule) is named, not made twice; a
 * zone is the same under any of its names (its IANA links: sl_tz_same_zone).
 */
#include "cli.h"
#include "config.h"
#include "ctx.h"
#include "queue.h"
#include "tz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "next run: 2026-11-30T08:00:00Z (2026-11-30 09:00:00 CET in Europe/Berlin)" on
 * stderr, the job's next slot as stored (nothing when it has none). */
static void say_next_run(PGconn *c, const char *job)
{
    PGresult *r = sl_cli_exec(c,
                              "SELECT to_char(next_run_at AT TIME ZONE 'UTC', "
                              "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), extract(epoch FROM next_run_at), "
                              "timezone FROM sluice.scheduled_jobs WHERE id = $1::uuid "
                              "AND isfinite(next_run_at)",
                              1, (const char *const[]){job});
    if (r && PQntuples(r) == 1) {
        char local[96];
        if (sl_cli_local_time(PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 1), local, sizeof local) == 0)
            fprintf(stderr, "next run: %s (%s in %s)\n", PQgetvalue(r, 0, 0), local,
                    PQgetvalue(r, 0, 2));
        else
            fprintf(stderr, "next run: %s\n", PQgetvalue(r, 0, 0));
    }
    if (r) PQclear(r);
}

/* The names zone tz goes by (sl_tz_same_zone: its IANA links, tz among them) as
 * a Postgres text[] literal, {"America/New_York","US/Eastern"}; malloc'd, or NULL
 * after saying why. */
static char *zone_names(const char *tz)
{
    char **names, err[256];
    size_t n;
    if (sl_tz_same_zone(NULL, tz, &names, &n, err, sizeof err) < 0) {
        sl_cli_error("%s", err);
        return NULL;
    }
    sl_buf b = {0};
    sl_buf_puts(&b, "{");
    for (size_t i = 0; i < n; i++) /* zone names need no escaping: sl_tz_valid_name */
        sl_buf_printf(&b, "%s\"%s\"", i ? "," : "", names[i]);
    sl_buf_puts(&b, "}");
    sl_tz_names_free(names, n);
    return b.data;
}

/* The options `schedule` and `jobs edit` take, as given (NULL: not given). */
typedef struct {
    const char *brand, *params, *cron, *tz, *name, *priority, *retries, *dedupe;
} schedule_opts;

/* Where option a's value goes (--brand and --dedupe-key only when creating), or
 * NULL. */
static const char **option_slot(schedule_opts *o, const char *a, int creating)
{
    return creating && strcmp(a, "--brand") == 0        ? &o->brand
           : creating && strcmp(a, "--dedupe-key") == 0 ? &o->dedupe
           : strcmp(a, "--params") == 0                 ? &o->params
           : strcmp(a, "--cron") == 0                   ? &o->cron
           : strcmp(a, "--tz") == 0                     ? &o->tz
           : strcmp(a, "--name") == 0                   ? &o->name
           : strcmp(a, "--priority") == 0               ? &o->priority
           : strcmp(a, "--max-retries") == 0            ? &o->retries
                                                        : NULL;
}

/* The whole numbers among o's options, checked: 0, or -1 after saying which. */
static int check_numbers(const schedule_opts *o)
{
    if (o->priority &&
        sl_cli_whole_number("--priority", o->priority, SL_PRIORITY_MIN, SL_PRIORITY_MAX, NULL) < 0)
        return -1;
    if (o->retries && sl_cli_whole_number("--max-retries", o->retries, 0, 1000, NULL) < 0)
        return -1;
    return 0;
}

static void schedule_usage(FILE *out)
{
    fprintf(out, "usage: sluice schedule <job_type> --cron EXPR [--tz ZONE] [--brand NAME|UUID]\n"
                 "                       [--params JSON] [--name NAME] [--priority N]\n"
                 "                       [--max-retries N] [--dedupe-key KEY]\n\n"
                 "Creates a recurring job and prints its id. EXPR is a five-field cron\n"
                 "expression (see `sluice cron next EXPR` to preview it); ZONE an IANA time\n"
                 "zone (default UTC). Slots missed while no worker ran are run once, not once\n"
                 "per missed slot. Parameters are checked against the handler's schema first;\n"
                 "on any problem nothing is created.\n\n"
                 "A schedule is made once: when an active or paused recurring job of the type\n"
                 "and brand has the same expression, zone (under any of its names: UTC, Etc/UTC\n"
                 "and Zulu are one zone) and parameters already, nothing is created and its\n"
                 "id is printed, with \"already scheduled as ID\" on stderr\n"
                 "(exit status 0); its name, priority and retries stay as they are (`sluice\n"
                 "jobs edit` changes them). With --dedupe-key, the key decides instead.\n\n"
                 "  --cron      the schedule, e.g. \"0 9 * * mon-fri\"\n"
                 "  --tz        the zone EXPR is read in (default UTC)\n"
                 "  --brand     the brand (name or id); omit for a platform job\n"
                 "  --params    a JSON object (default {}); the schema's defaults fill the rest\n"
                 "  --name      a name for the job, shown by `sluice show` (default none)\n"
                 "  --priority  lower runs first when several jobs are due: -1000000 to\n"
                 "              1000000 (default 0), as for `sluice queue`\n"
                 "  --max-retries\n"
                 "              retries of a failed run before the job waits for its next\n"
                 "              slot: 0 to 1000 (default: the handler's max_retries)\n"
                 "  --dedupe-key\n"
                 "              while a recurring job of this type and brand with this key is\n"
                 "              active or paused, scheduling again prints its id and creates\n"
                 "              nothing, whatever its expression; two schedules alike in all\n"
                 "              else can be had with two keys. A one-time job, or a cancelled\n"
                 "              one whose run is in flight, that holds the key is refused\n");
}

/* The job ensure_schedule() found instead of creating one (id): a recurring job
 * that is active or paused is the schedule asked for — its id on stdout, and on
 * stderr that it was there, what of it differs from the options given, and its
 * next slot; 0. Any other holder of --dedupe-key is refused; 2 (1 when the
 * database failed). */
static int say_already_scheduled(PGconn *c, const char *type, const char *id,
                                 const schedule_opts *o, const char *params, const char *zones)
{
    const char *p[] = {id, o->cron, o->tz, params, o->name, o->priority, o->retries, zones};
    int status = 1;
    PGresult *r = sl_cli_exec_status(
        c,
        "SELECT j.schedule_type, j.status, j.current_run_id IS NOT NULL, "
        "regexp_replace(concat_ws(', ', "
        "CASE WHEN sluice.cron_identity(j.cron_expression) IS DISTINCT FROM "
        "sluice.cron_identity($2) THEN 'expression' END, "
        "CASE WHEN j.timezone = ANY($8::text[]) AND j.timezone <> $3 THEN 'zone name' "
        "WHEN j.timezone <> $3 THEN 'zone' END, "
        "CASE WHEN j.parameters <> $4::jsonb THEN 'parameters' END, "
        "CASE WHEN j.name IS DISTINCT FROM coalesce($5, j.name) THEN 'name' END, "
        "CASE WHEN j.priority <> coalesce($6::int, j.priority) THEN 'priority' END, "
        "CASE WHEN j.max_retries IS DISTINCT FROM coalesce($7::int, j.max_retries) "
        "THEN 'retries' END), ', ([^,]*)$', ' and \\1') "
        "FROM sluice.scheduled_jobs j WHERE j.id = $1::uuid",
        8, p, &status);
    if (!r) return status;
    if (PQntuples(r) != 1) { /* deleted since */
        sl_cli_error("schedule: job %s, which held the schedule, was deleted meanwhile: try again",
                     id);
        PQclear(r);
        return 2;
    }
    const char *kind = PQgetvalue(r, 0, 0), *st = PQgetvalue(r, 0, 1);
    int live = strcmp(st, "active") == 0 || strcmp(st, "paused") == 0;
    if (!o->dedupe && !live) { /* cancelled or failed since it was found */
        sl_cli_error("schedule: job %s, the same schedule, was %s meanwhile: try again", id, st);
        PQclear(r);
        return 2;
    }
    if (strcmp(kind, "recurring") != 0 || !live) {
        sl_cli_error("schedule: dedupe key '%s' is held by %s job %s (%s%s); nothing was scheduled",
                     o->dedupe, strcmp(kind, "recurring") == 0 ? "recurring" : "one-time", id, st,
                     strcmp(PQgetvalue(r, 0, 2), "t") == 0 ? ", its run still in flight" : "");
        PQclear(r);
        return 2;
    }
    printf("%s\n", id);
    sl_cli_flush_stdout();
    if (o->dedupe)
        fprintf(stderr, "%s: already scheduled as %s, with dedupe key '%s'", type, id, o->dedupe);
    else
        fprintf(stderr,
                "%s: already scheduled as %s, with the same expression, zone and parameters", type,
                id);
    fprintf(stderr, "; nothing new was created");
    if (strcmp(st, "paused") == 0)
        fprintf(stderr, "; it is paused (`sluice jobs resume` lets it run)");
    const char *kept = PQgetvalue(r, 0, 3); /* "expression and zone name", "priority" */
    if (*kept)
        fprintf(stderr, "; it keeps its own %s (`sluice jobs edit` changes %s)", kept,
                strstr(kept, " and ") ? "them" : "it");
    fputc('\n', stderr);
    PQclear(r);
    say_next_run(c, id);
    return 0;
}

int sl_cmd_schedule(const sl_config *cfg, int argc, char **argv)
{
    const char *type = NULL;
    schedule_opts o = {.params = "{}", .tz = "UTC"};
    if (sl_cli_wants_help(argc, argv)) {
        schedule_usage(stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = option_slot(&o, a, 1);
        if (slot) {
            if (sl_cli_option_value(argc, argv, &i, "schedule", NO_BRAND_JOB, slot) < 0) return 2;
        } else if (a[0] == '-') {
            sl_cli_error("schedule: unknown option '%s' (see `sluice schedule --help`)", a);
            return 2;
        } else if (!type) {
            type = a;
        } else {
            sl_cli_error("schedule: unexpected argument '%s'", a);
            return 2;
        }
    }
    if (!type || !o.cron) {
        if (type)
            sl_cli_error("schedule needs --cron EXPR");
        else
            schedule_usage(stderr);
        return 2;
    }
    if (check_numbers(&o) < 0) return 2;
    char next[40], why[512];
    if (sl_queue_cron_slot(o.cron, o.tz, NULL, next, why, sizeof why) < 0) {
        sl_cli_error("%s", why);
        return 2;
    }
    char *zones = zone_names(o.tz);
    if (!zones) return 2;
    sl_ctx ctx;
    if (sl_queue_open(&ctx, cfg, 0) < 0) {
        free(zones);
        return 1;
    }
    int status = 2;
    char *normalized = NULL;
    PGconn *c = NULL;
    sl_queue_connect_early(&ctx);
    sl_queue_load(&ctx, 0);
    char *problem = sl_runtime_validate(ctx.rt, type, o.params, &normalized,
                                        o.brand ? 0 : SL_VALIDATE_NO_BRAND);
    if (problem) {
        sl_cli_error("%s", problem);
        goto out;
    }
    c = sl_queue_boot(&ctx, "run", NULL, &status);
    if (!c) goto out;
    const char *p[] = {o.brand, type,       o.cron,    o.tz,     normalized, next,
                       o.name,  o.priority, o.retries, o.dedupe, zones};
    PGresult *r =
        sl_cli_exec_status(c,
                           "SELECT job_id, created FROM sluice.ensure_schedule($1, $2, $3, "
                           "$4, $5::jsonb, $6::timestamptz, $7, $8::int, $9::int, "
                           "'scheduled', $10, $11::text[])",
                           11, p, &status);
    if (!r) goto out;
    if (strcmp(PQgetvalue(r, 0, 1), "t") == 0) {
        printf("%s\n", PQgetvalue(r, 0, 0));
        sl_cli_flush_stdout();
        say_next_run(c, PQgetvalue(r, 0, 0));
        status = 0;
    } else {
        status = say_already_scheduled(c, type, PQgetvalue(r, 0, 0), &o, normalized, zones);
    }
    PQclear(r);
out:
    free(zones);
    free(problem);
    free(normalized);
    if (c) PQfinish(c);
    sl_queue_close(&ctx);
    return status;
}

static void run_now_usage(FILE *out)
{
    fprintf(out, "usage: sluice jobs run-now JOB_ID…\n\n"
                 "Makes a job due at once, once: an idle worker starts it within moments\n"
                 "(among jobs due together, lower priority numbers still go first). A\n"
                 "recurring job keeps its schedule: when this run ends, its next slot comes\n"
                 "from its cron expression as after any run, so the slot it was waiting for\n"
                 "still runs if this run has ended by then. A one-time job waiting for its\n"
                 "time or for a retry's backoff runs now (as that attempt); a failed\n"
                 "one-time job runs again with its retries counted afresh. A job that is\n"
                 "due already is left as it is.\n\n"
                 "Refused: a job with a run in flight, a paused job (resume it first), a\n"
                 "recurring job failed for a schedule that cannot be evaluated (`sluice jobs\n"
                 "edit` it), and a completed, cancelled or archived one (queue or schedule\n"
                 "it again); each is reported and skipped, the others still run (exit\n"
                 "status 2). An id that names no job or more than one changes nothing: no\n"
                 "job is touched. A JOB_ID may be shortened to a unique prefix of at least\n"
                 "4 characters, as `sluice jobs` shows it. Each line of output names the\n"
                 "job in full and says it is due; a job named twice is made due and printed\n"
                 "once.\n");
}

static void control_usage(FILE *out, const char *action)
{
    if (strcmp(action, "run-now") == 0) {
        run_now_usage(out);
        return;
    }
    fprintf(out,
            "usage: sluice jobs %s JOB_ID…\n\n"
            "cancel ends a job for good (a run in flight is told to stop); pause holds it\n"
            "until resume; resume lets a paused job run again. A JOB_ID may be shortened\n"
            "to a unique prefix of at least 4 characters, as `sluice jobs` shows it. Each\n"
            "line of output names the job in full and its new status; a job named twice\n"
            "is changed and printed once.\n\n"
            "A job already where the action would put it (cancelled, paused, active) is\n"
            "left alone and its status printed: repeating an action succeeds. A job\n"
            "whose state the action cannot change (pausing one that is not active,\n"
            "resuming one that is not paused, cancelling one that completed or failed)\n"
            "is refused: each is reported and skipped, the others still changed (exit\n"
            "status 2). An id that names no job or more than one changes nothing: every\n"
            "id is looked up before any job is touched.\n",
            action);
}

/* After a job was made due (run-now) or let run again (resume): when its type
 * is marked unavailable — the last sync of the registry had no handler file
 * for it — no worker claims it until one that has the file syncs, which
 * nothing else would tell: say so on stderr. The change stands either way. */
static void say_type_unavailable(PGconn *c, const char *what, const char *id)
{
    PGresult *r = sl_cli_exec(c,
                              "SELECT t.name FROM sluice.scheduled_jobs j "
                              "JOIN sluice.job_types t ON t.name = j.job_type "
                              "WHERE j.id = $1::uuid AND NOT t.available",
                              1, (const char *const[]){id});
    if (r && PQntuples(r) == 1)
        fprintf(stderr, "sluice: %s: " TYPE_UNAVAILABLE_NOTE, what, PQgetvalue(r, 0, 0));
    PQclear(r);
}

/* `sluice jobs cancel|pause|resume|run-now ID…` (called by the jobs command). */
int sl_cmd_jobs_control(const sl_config *cfg, int argc, char **argv)
{
    const char *action = argv[1];
    if (sl_cli_wants_help(argc, argv)) {
        control_usage(stdout, action);
        return 0;
    }
    for (int i = 2; i < argc; i++)
        if (argv[i][0] == '-') {
            sl_cli_error("jobs %s: unknown option '%s' (see `sluice jobs %s --help`)", action,
                         argv[i], action);
            return 2;
        }
    if (argc < 3) {
        sl_cli_error("jobs %s needs at least one job id", action);
        return 2;
    }
    const char *fn = strcmp(action, "cancel") == 0    ? "sluice.cancel_job"
                     : strcmp(action, "pause") == 0   ? "sluice.pause_job"
                     : strcmp(action, "run-now") == 0 ? "sluice.run_job_now"
                                                      : "sluice.resume_job";
    int failed;
    PGconn *c = sl_cli_connect(cfg, &failed);
    if (!c) return failed;
    int status = 0, n = argc - 2;
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT %s($1::uuid)", fn);
    char what[32], kind[8];
    snprintf(what, sizeof what, "jobs %s", action);
    /* every id is resolved before any job is changed: a mistyped one changes nothing */
    char(*full)[40] = calloc((size_t)n, sizeof *full);
    if (!full) {
        sl_cli_error("out of memory");
        PQfinish(c);
        return 1;
    }
    for (int i = 0; i < n && status != 1; i++) {
        int st = sl_cli_find_id(c, what, argv[i + 2], 1, kind, full[i]);
        if (st && status != 1) status = st; /* a fault of the database outweighs bad input */
    }
    if (status) {
        fprintf(stderr, "sluice: %s: no job was changed\n", what);
        n = 0;
    }
    /* a job named twice (the same id, or a prefix beside its full id) is acted
     * on and printed once, where it was first named */
    int kept = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int j = 0; j < kept && !seen; j++)
            seen = strcmp(full[j], full[i]) == 0;
        if (!seen) memmove(full[kept++], full[i], sizeof *full);
    }
    n = kept;
    for (int i = 0; i < n; i++) {
        int st;
        PGresult *r = sl_cli_exec_status(c, sql, 1, (const char *const[]){full[i]}, &st);
        if (!r) {
            if (status != 1) status = st;
            continue;
        }
        printf("%s  %s\n", full[i], PQgetvalue(r, 0, 0));
        PQclear(r);
        if (strcmp(action, "run-now") == 0 || strcmp(action, "resume") == 0)
            say_type_unavailable(c, what, full[i]);
    }
    free(full);
    PQfinish(c);
    return status;
}

/* ------------------------------------------------------------------ jobs edit */

static void edit_usage(FILE *out)
{
    fprintf(out, "usage: sluice jobs edit JOB_ID [--cron EXPR] [--tz ZONE] [--params JSON]\n"
                 "                        [--priority N] [--name NAME] [--max-retries N]\n\n"
                 "Changes a recurring job in place, keeping its id, status and runs. Only\n"
                 "what is given changes. A new expression or zone is checked as by `sluice\n"
                 "schedule` and gives the job its next slot from now (printed on stderr); it\n"
                 "cannot change while a run is in flight. New parameters replace the old ones\n"
                 "(the schema's defaults fill the rest) and apply from the next run. Active\n"
                 "and paused recurring jobs can be edited (a paused one stays paused), and\n"
                 "failed ones, whose schedule could not be evaluated, given a new --cron or\n"
                 "--tz that can: they become active.\n"
                 "JOB_ID may be shortened to a unique prefix of at least 4 characters. Prints\n"
                 "the job's id and status; on any problem nothing changes (exit status 2). An\n"
                 "edit that makes the job the same schedule as another is done, and stderr\n"
                 "names the other.\n\n"
                 "  --cron      the new schedule, e.g. \"30 8 * * mon-fri\"\n"
                 "  --tz        the zone the expression is read in, e.g. Europe/Berlin\n"
                 "  --params    a JSON object: the job's parameters from now on\n"
                 "  --priority  -1000000 to 1000000, lower first\n"
                 "  --name      the job's name\n"
                 "  --max-retries\n"
                 "              0 to 1000: retries of a failed run from now on\n");
}

/* After an edit of job id's expression, zone or parameters: when another active
 * or paused recurring job is now the same schedule as it (sluice.same_schedule,
 * as `sluice schedule` finds one instead of making it: type, brand,
 * expression, zone under any of its names, parameters; two jobs that both hold
 * a dedupe key were made apart on purpose and are not named), say so on
 * stderr, naming it. The edit stands (it was asked for); should the check
 * itself fail, its error is printed and the edit still stands. tz is the
 * job's zone, whose names are looked for. */
static void say_same_schedule(PGconn *c, const char *id, const char *tz)
{
    char *zones = zone_names(tz);
    if (!zones) return;
    PGresult *r = sl_cli_exec(c, "SELECT sluice.same_schedule_as($1::uuid, $2::text[])", 2,
                              (const char *const[]){id, zones});
    if (r && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        fprintf(stderr,
                "jobs edit: job %s is now the same schedule as job %s (type, brand, expression, "
                "zone and parameters): both run at every slot; `sluice jobs cancel %s` if one "
                "is enough\n",
                id, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 0));
    if (r) PQclear(r);
    free(zones);
}

/* `sluice jobs edit ID [options]` (called by the jobs command). */
int sl_cmd_jobs_edit(const sl_config *cfg, int argc, char **argv)
{
    const char *id = NULL;
    schedule_opts o = {0};
    if (sl_cli_wants_help(argc, argv)) {
        edit_usage(stdout);
        return 0;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = option_slot(&o, a, 0);
        if (slot) {
            if (sl_cli_option_value(argc, argv, &i, "jobs edit", NULL, slot) < 0) return 2;
        } else if (a[0] == '-') {
            sl_cli_error("jobs edit: unknown option '%s' (see `sluice jobs edit --help`)", a);
            return 2;
        } else if (!id) {
            id = a;
        } else {
            sl_cli_error("jobs edit: unexpected argument '%s' (one job at a time)", a);
            return 2;
        }
    }
    if (!id) {
        sl_cli_error("jobs edit needs a job id (see `sluice jobs edit --help`)");
        return 2;
    }
    if (!o.cron && !o.tz && !o.params && !o.priority && !o.name && !o.retries) {
        sl_cli_error("jobs edit: nothing to change: give --cron, --tz, --params, --priority, "
                     "--name or --max-retries");
        return 2;
    }
    if (check_numbers(&o) < 0) return 2;
    sl_ctx ctx;
    if (sl_queue_open(&ctx, cfg, 0) < 0) return 1;
    int status = 2;
    char *normalized = NULL, *problem = NULL;
    PGconn *c = NULL;
    PGresult *job = NULL;
    sl_queue_connect_early(&ctx);
    sl_queue_load(&ctx, 0);
    c = sl_queue_boot(&ctx, "run", NULL, &status);
    if (!c) goto out;
    char kind[8], full[40];
    status = sl_cli_find_id(c, "jobs edit", id, 1, kind, full);
    if (status) goto out;
    job =
        sl_cli_exec_status(c,
                           "SELECT job_type, cron_expression, timezone FROM sluice.scheduled_jobs "
                           "WHERE id = $1::uuid",
                           1, (const char *const[]){full}, &status);
    if (!job) goto out;
    status = 2;
    if (PQntuples(job) != 1) {
        sl_cli_error("jobs edit: no job with id '%s'", id); /* deleted meanwhile */
        goto out;
    }
    if (o.params) {
        problem = sl_runtime_validate(ctx.rt, PQgetvalue(job, 0, 0), o.params, &normalized, 0);
        if (problem) {
            sl_cli_error("%s", problem);
            goto out;
        }
    }
    /* a one-time job has no expression: the database says why it cannot be edited */
    char next[40] = "", why[512];
    if ((o.cron || o.tz) && !PQgetisnull(job, 0, 1) &&
        sl_queue_cron_slot(o.cron ? o.cron : PQgetvalue(job, 0, 1),
                           o.tz ? o.tz : PQgetvalue(job, 0, 2), NULL, next, why, sizeof why) < 0) {
        sl_cli_error("%s", why);
        goto out;
    }
    const char *p[] = {full,       o.cron,     o.tz,   *next ? next : NULL,
                       normalized, o.priority, o.name, o.retries};
    PGresult *r = sl_cli_exec_line(c,
                                   "SELECT sluice.edit_schedule($1::uuid, $2, $3, $4::timestamptz, "
                                   "$5::jsonb, $6::int, $7, $8::int)",
                                   8, p, &status);
    if (!r) goto out;
    printf("%s  %s\n", full, PQgetvalue(r, 0, 0));
    PQclear(r);
    status = 0;
    sl_cli_flush_stdout();
    say_next_run(c, full); /* the slot it has now (a later statement: it sees the change) */
    if (o.cron || o.tz || o.params) say_same_schedule(c, full, o.tz ? o.tz : PQgetvalue(job, 0, 2));
out:
    if (job) PQclear(job);
    free(problem);
    free(normalized);
    if (c) PQfinish(c);
    sl_queue_close(&ctx);
    return status;
}
