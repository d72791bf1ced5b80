/*
 * cli_workers.c — `sluice workers`: the processes registered on the database
 * (daemons, foreground runs, REPLs), whether each still lives, and the job
 * types each serves (sluice.worker_status, 200_only_daemons_retire_types.sql).
 */
#include "cli.h"
#include "table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice workers [--all] [--check] [--json]\n\n"
                 "Lists the processes registered on the database: daemons (serve), foreground\n"
                 "runs (run) and REPLs (repl), with their host and process id, version,\n"
                 "state, concurrency, runs in flight and the job types they have handlers for.\n"
                 "Live ones first, then the others, most recently seen first.\n"
                 "  live     its heartbeat is no older than two of its leases\n"
                 "  stopped  it said so as it left\n"
                 "  silent   neither: killed, or cut off from the database (a REPL or a\n"
                 "           foreground run holding no run renews nothing, and is silent too)\n"
                 "A job type is available to SQL clients while a live daemon serves it.\n\n"
                 "  --all    every worker ever registered (default: the live ones, and the\n"
                 "           others last seen within the past hour)\n"
                 "  --check  for monitoring: exit 1 when no daemon is live (saying when one\n"
                 "           was last seen), 0 otherwise\n"
                 "  --json   the rows of sluice.worker_status as a JSON array\n");
}

#define WORKERS_WHERE                                                                              \
    " FROM sluice.worker_status w WHERE $1::boolean OR w.state = 'live' "                          \
    "OR w.last_seen > now() - interval '1 hour'"
#define WORKERS_ORDER " ORDER BY w.state <> 'live', w.last_seen DESC, w.started_at DESC"

static const sl_table_col cols[] = {
    {"WORKER", SL_ALIGN_LEFT, 0},  {"KIND", SL_ALIGN_LEFT, 0},    {"HOST", SL_ALIGN_LEFT, 8},
    {"PID", SL_ALIGN_RIGHT, 0},    {"VERSION", SL_ALIGN_LEFT, 0}, {"STATE", SL_ALIGN_LEFT, 0},
    {"STARTED", SL_ALIGN_LEFT, 0}, {"CONC", SL_ALIGN_RIGHT, 0},   {"RUNNING", SL_ALIGN_RIGHT, 0},
    {"TYPES", SL_ALIGN_LEFT, 12},
};

/* "live", "stopped 3m ago", "silent 12m" (since its last heartbeat). */
static void state_cell(const char *state, double seen_ago, char *out, size_t len, sl_color *color)
{
    char ago[32];
    if (strcmp(state, "live") == 0) {
        snprintf(out, len, "live");
        *color = SL_COLOR_GREEN;
    } else if (strcmp(state, "stopped") == 0) {
        sl_fmt_ago(seen_ago, ago, sizeof ago);
        snprintf(out, len, "stopped %s", ago);
        *color = SL_COLOR_DIM;
    } else {
        sl_fmt_duration(seen_ago, ago, sizeof ago);
        snprintf(out, len, "silent %s", ago);
        *color = SL_COLOR_YELLOW;
    }
}

static void print_table(PGresult *r)
{
    sl_term term = sl_term_for(stdout);
    sl_table *t = sl_table_new(cols, (int)(sizeof cols / sizeof cols[0]));
    int live = 0, stopped = 0, silent = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        char id[9], state[64], started[32];
        sl_color color;
        const char *st = PQgetvalue(r, i, 5);
        live += strcmp(st, "live") == 0;
        stopped += strcmp(st, "stopped") == 0;
        silent += strcmp(st, "silent") == 0;
        snprintf(id, sizeof id, "%s", PQgetvalue(r, i, 0));
        state_cell(st, atof(PQgetvalue(r, i, 6)), state, sizeof state, &color);
        sl_fmt_ago(atof(PQgetvalue(r, i, 7)), started, sizeof started);
        char *host = sl_text_visible(PQgetvalue(r, i, 2), 0);
        sl_table_add(t, id, SL_COLOR_NONE);
        sl_table_add(t, PQgetvalue(r, i, 1), SL_COLOR_NONE);
        sl_table_add(t, host, SL_COLOR_NONE);
        sl_table_add(t, PQgetvalue(r, i, 3), SL_COLOR_NONE);
        sl_table_add(t, PQgetvalue(r, i, 4), SL_COLOR_NONE);
        sl_table_add(t, state, color);
        sl_table_add(t, started, SL_COLOR_NONE);
        sl_table_add(t, PQgetvalue(r, i, 8), SL_COLOR_NONE);
        sl_table_add(t, PQgetvalue(r, i, 9), SL_COLOR_NONE);
        sl_table_add(t, PQgetvalue(r, i, 10), SL_COLOR_NONE);
        free(host);
    }
    sl_table_print(t, stdout, &term);
    sl_table_free(t);
    printf("\n%d worker%s: %d live, %d stopped, %d silent\n", PQntuples(r),
           PQntuples(r) == 1 ? "" : "s", live, stopped, silent);
}

/* --check: 0 when a daemon is live; else 1, after saying when one was last
 * seen (or that none ever was); 1 too when the database does not answer. */
static int check_live(PGconn *c)
{
    int status = 1;
    PGresult *r = sl_cli_exec_status(
        c,
        "SELECT count(*) FILTER (WHERE state = 'live'), "
        "extract(epoch FROM now() - max(last_seen)) FROM sluice.worker_status WHERE kind = 'serve'",
        0, NULL, &status);
    if (!r) return status;
    status = 0;
    if (atoi(PQgetvalue(r, 0, 0)) == 0) {
        char ago[32];
        if (PQgetisnull(r, 0, 1)) {
            fprintf(stderr, "unhealthy: no daemon is live: none was ever started on this "
                            "database (`sluice serve`)\n");
        } else {
            sl_fmt_ago(atof(PQgetvalue(r, 0, 1)), ago, sizeof ago);
            fprintf(stderr, "unhealthy: no daemon is live: the last one was seen %s\n", ago);
        }
        status = 1;
    }
    PQclear(r);
    return status;
}

int sl_cmd_workers(const struct sl_config *cfg, int argc, char **argv)
{
    if (sl_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    int all = 0, json = 0, check = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--all") == 0) {
            all = 1;
        } else if (strcmp(argv[i], "--check") == 0) {
            check = 1;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else {
            sl_cli_error(argv[i][0] == '-'
                             ? "workers: unknown option '%s' (see `sluice workers --help`)"
                             : "workers: unexpected argument '%s'",
                         argv[i]);
            return 2;
        }
    }
    int status;
    PGconn *c = sl_cli_connect(cfg, &status);
    if (!c) return status;
    const char *p[] = {all ? "true" : "false"};
    PGresult *r = sl_cli_exec_status(
        c,
        json ? "SELECT coalesce(jsonb_agg(to_jsonb(w)" WORKERS_ORDER "), '[]')" WORKERS_WHERE
             : "SELECT w.id, w.kind, w.hostname, w.pid, coalesce(w.version, ''), w.state, "
               "extract(epoch FROM now() - w.last_seen), extract(epoch FROM now() - w.started_at), "
               "coalesce(w.concurrency::text, ''), w.running, "
               "coalesce(array_to_string(w.types, ', '), '')" WORKERS_WHERE WORKERS_ORDER,
        1, p, &status);
    if (r) {
        status = 0;
        if (json)
            printf("%s\n", PQgetvalue(r, 0, 0));
        else if (PQntuples(r) == 0)
            fprintf(stderr, all ? "no workers yet: start one with `sluice serve`\n"
                                : "no workers seen within the past hour (`sluice workers --all` "
                                  "lists every one)\n");
        else
            print_table(r);
        PQclear(r);
        if (check) status = check_live(c);
    }
    PQfinish(c);
    return status;
}
