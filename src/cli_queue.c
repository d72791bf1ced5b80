/*
 * cli_queue.c — `sluice queue`: validate a job against its handler and queue it.
 *
 * Validation happens here first (unknown type with the nearest name, every
 * parameter problem at once) so that nothing is written on bad input; the SQL
 * function then checks again, as it does for any other client.
 */
#include "cli.h"
#include "config.h"
#include "ctx.h"
#include "queue.h"
#include "table.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice queue <job_type> [--brand NAME|UUID] [--params JSON] [--at TIME]\n"
                 "                    [--priority N] [--dedupe-key KEY] [--max-retries N]\n"
                 "                    [--if-stale]\n\n"
                 "Queues a one-time job and prints its id. Parameters are checked against the\n"
                 "handler's schema first; on any problem nothing is queued.\n\n"
                 "  --brand       the brand (name or id); omit for a platform job\n"
                 "  --params      a JSON object (default {}); the schema's defaults fill the rest\n"
                 "  --at          when it is due: a timestamp (2026-12-01T09:00:00Z; one\n"
                 "                without a zone or offset, such as 2026-12-01 09:00, is UTC)\n"
                 "                or a delay such as +30s, +15m, +2h, +1d, at most 3650d\n"
                 "                (default: now); the instant is printed on stderr in UTC\n"
                 "  --priority    lower runs first: -1000000 to 1000000 (default 0)\n"
                 "  --dedupe-key  while a job of this type and brand with this key is pending,\n"
                 "                running or paused (cancelled too, until its run has ended),\n"
                 "                queueing again returns that job instead and queues nothing\n"
                 "  --max-retries overrides the handler's max_retries for this job\n"
                 "  --if-stale    queue only if one of the type's datasets is stale, never\n"
                 "                completed or failing for this brand; otherwise say until when\n"
                 "                it is fresh and queue nothing (exit 0, no id printed)\n");
}

/* The longest delay --at takes: ten years. */
#define MAX_DELAY_SECONDS (3650.0 * 86400)

/* --at: a delay "+N[smhd]" (N digits, with an optional decimal part) becomes
 * its interval text for Postgres in *interval ("5400 seconds"); a timestamp is
 * left for Postgres to read, but it must start with a digit (a date), so that
 * the special words Postgres takes as timestamps (infinity, epoch, now,
 * tomorrow, …) are refused here. Returns 1 for a delay, 0 for a timestamp, -1
 * after saying what is wrong. */
static int parse_at(const char *at, char *interval, size_t len)
{
    static const char forms[] = "give a timestamp such as 2026-12-01T09:00:00Z, or a delay: +N "
                                "followed by s, m, h or d (e.g. +30s, +15m, +2h, +1d)";
    if (at[0] != '+') {
        if (isdigit((unsigned char)at[0])) return 0;
        sl_cli_error("--at '%s': %s%s", at, forms,
                     at[0] == '-' ? "; a delay counts forward from now" : "");
        return -1;
    }
    const char *p = at + 1, *digits = p;
    while (isdigit((unsigned char)*p))
        p++;
    int whole = (int)(p - digits), frac = 0;
    if (*p == '.') {
        const char *f = ++p;
        while (isdigit((unsigned char)*p))
            p++;
        frac = (int)(p - f);
    }
    double unit = strcmp(p, "s") == 0 || *p == '\0' ? 1
                  : strcmp(p, "m") == 0             ? 60
                  : strcmp(p, "h") == 0             ? 3600
                  : strcmp(p, "d") == 0             ? 86400
                                                    : 0;
    if (whole + frac == 0 || unit == 0) {
        sl_cli_error("--at '%s': a delay is + and a number (digits, with an optional decimal "
                     "part) followed by s, m, h or d, e.g. +30s, +15m, +1.5h, +1d",
                     at);
        return -1;
    }
    double seconds = strtod(digits, NULL) * unit;
    if (!(seconds <= MAX_DELAY_SECONDS)) {
        sl_cli_error("--at '%s': a delay can be at most 3650d (ten years)", at);
        return -1;
    }
    snprintf(interval, len, "%.3f seconds", seconds);
    return 1;
}

/* --if-stale: 1 when a dataset of the type is stale, never completed or failing
 * for the brand (NULL: platform scope), with why in why[] (said once the job is
 * queued: the queueing can still be refused), 0 when all are fresh or being
 * refreshed (said on stderr), -1 after printing an error, with its exit status
 * in *status. */
static int needs_refresh(PGconn *c, const char *type, const char *brand, char *why, size_t len,
                         int *status)
{
    const char *p[] = {type, brand};
    PGresult *r = sl_cli_exec_status(
        c,
        "SELECT f.dataset_key, f.state, f.last_run_id, "
        "to_char(f.fresh_until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS\"Z\"'), "
        "extract(epoch FROM f.fresh_until - now()) "
        "FROM sluice.job_type_freshness($1, sluice.resolve_brand($2)) f",
        2, p, status);
    if (!r) return -1;
    int n = PQntuples(r), stale = 0;
    if (n == 0) {
        sl_cli_error("--if-stale: job type '%s' keeps no datasets, so it is never stale", type);
        PQclear(r);
        *status = 2;
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const char *st = PQgetvalue(r, i, 1);
        if (strcmp(st, "stale") == 0 || strcmp(st, "never") == 0 || strcmp(st, "failing") == 0) {
            snprintf(why, len, "%s is %s%s%s: queueing %s", PQgetvalue(r, i, 0),
                     strcmp(st, "never") == 0 ? "never completed" : st, brand ? " for " : "",
                     brand ? brand : "", type);
            stale = 1;
            break;
        }
    }
    if (!stale) {
        fprintf(stderr, "%s is fresh%s%s: ", type, brand ? " for " : "", brand ? brand : "");
        for (int i = 0; i < n; i++) {
            const char *key = PQgetvalue(r, i, 0);
            if (strcmp(PQgetvalue(r, i, 1), "running") == 0)
                fprintf(stderr, "%s%s is being refreshed by run %s", i ? "; " : "", key,
                        PQgetvalue(r, i, 2));
            else if (PQgetisnull(r, i, 3))
                fprintf(stderr, "%s%s has no max age", i ? "; " : "", key);
            else {
                char left[32];
                sl_fmt_duration(atof(PQgetvalue(r, i, 4)), left, sizeof left);
                fprintf(stderr, "%s%s until %s (in %s)", i ? "; " : "", key, PQgetvalue(r, i, 3),
                        left);
            }
        }
        fprintf(stderr, "; nothing queued\n");
    }
    PQclear(r);
    return stale;
}

int sl_cmd_queue(const sl_config *cfg, int argc, char **argv)
{
    const char *type = NULL, *brand = NULL, *params = "{}", *at = NULL, *priority = "0",
               *dedupe = NULL, *retries = NULL;
    int if_stale = 0;
    if (sl_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = strcmp(a, "--brand") == 0         ? &brand
                            : strcmp(a, "--params") == 0      ? &params
                            : strcmp(a, "--at") == 0          ? &at
                            : strcmp(a, "--priority") == 0    ? &priority
                            : strcmp(a, "--dedupe-key") == 0  ? &dedupe
                            : strcmp(a, "--max-retries") == 0 ? &retries
                                                              : NULL;
        if (slot) {
            if (sl_cli_option_value(argc, argv, &i, "queue", NO_BRAND_JOB, slot) < 0) return 2;
        } else if (strcmp(a, "--if-stale") == 0) {
            if_stale = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            sl_cli_error("queue: unknown option '%s' (see `sluice queue --help`)", a);
            return 2;
        } else if (!type) {
            type = a;
        } else {
            sl_cli_error("queue: unexpected argument '%s'", a);
            return 2;
        }
    }
    if (!type) {
        usage(stderr);
        return 2;
    }
    if (sl_cli_whole_number("--priority", priority, SL_PRIORITY_MIN, SL_PRIORITY_MAX, NULL) < 0)
        return 2;
    if (retries && sl_cli_whole_number("--max-retries", retries, 0, 1000, NULL) < 0) return 2;
    char interval[64];
    int is_delay = at ? parse_at(at, interval, sizeof interval) : 0;
    if (is_delay < 0) return 2;

    sl_ctx ctx;
    if (sl_queue_open(&ctx, cfg, 0) < 0) return 1;
    sl_queue_connect_early(&ctx);
    int status = 1;
    char *normalized = NULL;
    PGconn *c = NULL;
    char *problem = NULL;
    /* load handlers quietly: problems in other files do not block this job */
    char *problems = NULL;
    sl_runtime_load_handlers(ctx.rt, NULL, 0, &problems);
    problem =
        sl_runtime_validate(ctx.rt, type, params, &normalized, brand ? 0 : SL_VALIDATE_NO_BRAND);
    if (problem) {
        sl_cli_error("%s", problem);
        if (problems && strstr(problem, "unknown job type"))
            fprintf(stderr, "note: some handler files failed to load:\n%s", problems);
        status = 2;
        goto out;
    }
    c = sl_queue_boot(&ctx, "run", NULL, &status);
    if (!c) goto out;
    char stale_why[512] = "";
    if (if_stale) {
        int need = needs_refresh(c, type, brand, stale_why, sizeof stale_why, &status);
        if (need <= 0) {
            if (need == 0) status = 0;
            goto out;
        }
    }
    char at_value[128];
    const char *atp = NULL;
    if (is_delay > 0) {
        PGresult *r = sl_cli_exec_status(c, "SELECT (now() + $1::interval)::text", 1,
                                         (const char *const[]){interval}, &status);
        if (!r) goto out;
        snprintf(at_value, sizeof at_value, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        atp = at_value;
    } else if (at) {
        atp = at;
    }
    const char *p[] = {brand, type, normalized, atp, priority, dedupe, retries};
    /* with the status of the job that holds the dedupe key when there is one,
     * and when the job is due, in UTC (a time without a zone is UTC: the
     * session's zone, see src/pg.c) */
    PGresult *r = sl_cli_exec_status(
        c,
        "SELECT e.job_id, e.created, (SELECT j.status FROM sluice.scheduled_jobs j WHERE "
        "j.id = e.job_id AND NOT e.created), to_char($4::timestamptz AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM sluice.enqueue($1, $2, $3::jsonb, $4::timestamptz, "
        "$5::int, $6, $7::int, 'manual') e",
        7, p, &status);
    if (!r) goto out;
    const char *id = PQgetvalue(r, 0, 0), *holder = PQgetvalue(r, 0, 2);
    if (*stale_why) fprintf(stderr, "%s\n", stale_why);
    printf("%s\n", id);
    if (at && strcmp(PQgetvalue(r, 0, 1), "t") == 0 && !PQgetisnull(r, 0, 3))
        fprintf(stderr, "due: %s\n", PQgetvalue(r, 0, 3));
    if (strcmp(PQgetvalue(r, 0, 1), "t") != 0) {
        if (strcmp(holder, "paused") == 0)
            fprintf(stderr,
                    "%s: a job with dedupe key '%s' is paused: %s; nothing new was queued "
                    "(`sluice jobs resume` lets it run)\n",
                    type, dedupe, id);
        else if (!*holder || strcmp(holder, "active") == 0)
            fprintf(stderr, "%s: a job with dedupe key '%s' is already pending or running: %s\n",
                    type, dedupe, id);
        else /* cancelled: the key is held until its run has ended */
            fprintf(stderr,
                    "%s: a job with dedupe key '%s' is %s but its run is still in flight: %s; "
                    "the key is free once that run has ended\n",
                    type, dedupe, holder, id);
    }
    PQclear(r);
    status = 0;
out:
    free(problem);
    free(problems);
    free(normalized);
    if (c) PQfinish(c);
    sl_queue_close(&ctx);
    return status;
}
