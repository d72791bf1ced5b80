/*
 * cli_views.c — the Pipeline Manager in the terminal: `sluice health`, `runs`,
 * `jobs` and `show`. Each reads the SQL views of schema/004_views.sql
 * (dataset_health, recent_runs, jobs_overview) over a blocking connection and
 * prints an aligned table (table.h) or, with --json, the view rows as JSON
 * (keys are the views' column names; timestamps ISO 8601 in UTC).
 *
 * Before reading, a view loads the handler files and syncs them into the
 * registry as a partial sync (types found are upserted; none is marked
 * unavailable), so the datasets shown match the handlers on disk even before a
 * daemon has started. Bad filters (unknown brand, job type, status, id) are one
 * line on stderr and exit status 2.
 */
#include "buf.h"
#include "cli.h"
#include "config.h"
#include "ctx.h"
#include "queue.h"
#include "runtime.h"
#include "table.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ database */

/* A connection for a view: handlers loaded quietly and synced (partially), the
 * session in UTC. NULL after printing the error, with the exit status it calls
 * for in *status (sl_cli_connect); *status is left alone otherwise. */
static PGconn *view_connect(const sl_config *cfg, int *status)
{
    sl_ctx ctx;
    if (sl_queue_open(&ctx, cfg, SL_ECHO_NONE) < 0) {
        *status = 1;
        return NULL;
    }
    char *problems = NULL;
    sl_runtime_load_handlers(ctx.rt, NULL, 0, &problems);
    free(problems);
    char *reg = sl_runtime_registry_json(ctx.rt);
    sl_queue_close(&ctx);
    PGconn *c = sl_cli_connect(cfg, status);
    if (c && reg && reg[0] == '[' && strcmp(reg, "[]") != 0) {
        const char *p[] = {reg};
        PGresult *r =
            sl_cli_exec_line(c, "SELECT sluice.sync_registry($1::jsonb, true)", 1, p, NULL);
        if (!r) {
            PQfinish(c);
            c = NULL;
            *status = 1;
        }
        PQclear(r);
    }
    free(reg);
    if (c) PQclear(PQexec(c, "SET TimeZone = 'UTC'"));
    return c;
}

/* The value of column `name` in row `row`, or NULL when it is SQL NULL. */
static const char *col(PGresult *r, int row, const char *name)
{
    int i = PQfnumber(r, name);
    if (i < 0 || PQgetisnull(r, row, i)) return NULL;
    return PQgetvalue(r, row, i);
}

static double col_num(PGresult *r, int row, const char *name, double dflt)
{
    const char *v = col(r, row, name);
    return v ? atof(v) : dflt;
}

/* Prints the single JSON value of a one-row, one-column result. */
static int print_json_result(PGconn *c, const char *sql, int n, const char *const *params)
{
    int status = 1;
    PGresult *r = sl_cli_exec_line(c, sql, n, params, &status);
    if (!r) return status;
    printf("%s\n", PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

/* ------------------------------------------------------------------ filters */

typedef struct {
    const char *type, *brand, *status;
    const char *schedule; /* --recurring: "recurring", --one-time: "one_time" */
    int platform, json, check, limit;
    sl_buf params; /* --param key=value… as a JSON object */
    const char *id;
    char brand_id[40];
    /* the list views' query parameters, $1..$7 of runs_where and jobs_where */
    char limit_text[16];
    const char *list_params[7];
} view_args;

enum {
    OPT_TYPE = 1,
    OPT_BRAND = 2,
    OPT_STATUS = 4,
    OPT_PARAM = 8,
    OPT_LIMIT = 16,
    OPT_CHECK = 32,
    OPT_ID = 64,
    OPT_SCHEDULE = 128, /* --recurring, --one-time */
};

/* Parses argv for command `cmd` accepting the options in `allowed` (plus --json).
 * Returns 0, or 2 after printing the error. */
static int parse_args(const char *cmd, int argc, char **argv, int allowed, view_args *a)
{
    int nparams = 0;
    sl_buf_puts(&a->params, "{");
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char **slot = NULL;
        int flag = 0;
        if (strcmp(o, "--json") == 0) {
            a->json = 1;
            continue;
        }
        if (strcmp(o, "--platform") == 0 && (allowed & OPT_BRAND)) {
            a->platform = 1;
            continue;
        }
        if (strcmp(o, "--check") == 0 && (allowed & OPT_CHECK)) {
            a->check = 1;
            continue;
        }
        if ((strcmp(o, "--recurring") == 0 || strcmp(o, "--one-time") == 0) &&
            (allowed & OPT_SCHEDULE)) {
            const char *want = o[2] == 'r' ? "recurring" : "one_time";
            if (a->schedule && strcmp(a->schedule, want) != 0) {
                sl_cli_error("%s: give --recurring or --one-time, not both", cmd);
                return 2;
            }
            a->schedule = want;
            continue;
        }
        if (strcmp(o, "--type") == 0)
            slot = &a->type, flag = OPT_TYPE;
        else if (strcmp(o, "--brand") == 0)
            slot = &a->brand, flag = OPT_BRAND;
        else if (strcmp(o, "--status") == 0)
            slot = &a->status, flag = OPT_STATUS;
        else if (strcmp(o, "--param") == 0 || strcmp(o, "--limit") == 0)
            flag = o[2] == 'p' ? OPT_PARAM : OPT_LIMIT;
        if (flag && (allowed & flag)) {
            const char *v;
            if (sl_cli_option_value(argc, argv, &i, cmd, "--platform selects those without a brand",
                                    &v) < 0)
                return 2;
            if (slot) {
                *slot = v;
            } else if (flag == OPT_LIMIT) {
                char what[32];
                long n;
                snprintf(what, sizeof what, "%s: --limit", cmd);
                if (sl_cli_whole_number(what, v, 1, 100000, &n) < 0) return 2;
                a->limit = (int)n;
            } else {
                const char *eq = strchr(v, '=');
                if (!eq || eq == v) {
                    sl_cli_error("%s: --param takes key=value, not '%s'", cmd, v);
                    return 2;
                }
                char *key = sl_xstrndup(v, (size_t)(eq - v));
                sl_buf_puts(&a->params, nparams++ ? "," : "");
                sl_buf_json_string(&a->params, key);
                sl_buf_puts(&a->params, ":");
                sl_buf_json_string(&a->params, eq + 1);
                free(key);
            }
        } else if (o[0] == '-' && o[1] != '\0') {
            sl_cli_error("%s: unknown option '%s' (see `sluice %s --help`)", cmd, o, cmd);
            return 2;
        } else if ((allowed & OPT_ID) && !a->id) {
            a->id = o;
        } else {
            sl_cli_error("%s: unexpected argument '%s'", cmd, o);
            return 2;
        }
    }
    sl_buf_puts(&a->params, "}");
    if (a->brand && a->platform) {
        sl_cli_error("%s: give --brand or --platform, not both", cmd);
        return 2;
    }
    return 0;
}

/* Checks `status` against the NULL-terminated list of valid ones. */
static int check_status(const char *cmd, const char *status, const char *const *valid)
{
    if (!status) return 0;
    sl_buf b = {0};
    for (int i = 0; valid[i]; i++) {
        if (strcmp(status, valid[i]) == 0) {
            sl_buf_free(&b);
            return 0;
        }
        sl_buf_printf(&b, "%s%s", i ? ", " : "", valid[i]);
    }
    sl_cli_error("%s: unknown status '%s' (one of: %s)", cmd, status, sl_buf_str(&b));
    sl_buf_free(&b);
    return 2;
}

/* Resolves --brand into a->brand_id and checks --type against the registry.
 * Returns 0, or the exit status after printing the error (2 for a bad filter). */
static int resolve_filters(PGconn *c, view_args *a)
{
    int status = 1;
    if (a->brand) {
        const char *p[] = {a->brand};
        PGresult *r = sl_cli_exec_line(c, "SELECT sluice.resolve_brand($1)", 1, p, &status);
        if (!r) return status;
        snprintf(a->brand_id, sizeof a->brand_id, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    if (a->type) {
        const char *p[] = {a->type};
        PGresult *r =
            sl_cli_exec_line(c,
                             "SELECT EXISTS (SELECT 1 FROM sluice.job_types WHERE name = $1), "
                             "sluice.nearest_name($1, ARRAY(SELECT name FROM sluice.job_types)), "
                             "(SELECT string_agg(name, ', ' ORDER BY name) FROM sluice.job_types)",
                             1, p, &status);
        if (!r) return status;
        int found = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        if (!found) {
            const char *near = col(r, 0, "nearest_name");
            const char *known = col(r, 0, "string_agg");
            sl_cli_error("unknown job type '%s'%s%s%s (known: %s)", a->type,
                         near ? " — did you mean '" : "", near ? near : "", near ? "'?" : "",
                         known ? known : "none");
        }
        PQclear(r);
        if (!found) return 2;
    }
    return 0;
}

/* The first 8 characters of an id, for tables. */
static void short_id(const char *id, char out[16])
{
    snprintf(out, 16, "%.8s", id ? id : "");
}

/* "📣 echo" */
static void type_cell(sl_buf *b, const char *emoji, const char *type)
{
    sl_buf_reset(b);
    if (emoji && *emoji) sl_buf_printf(b, "%s ", emoji);
    sl_buf_puts(b, type ? type : "");
}

typedef struct {
    const char *name, *emoji;
    sl_color color;
} status_look;

static const status_look looks[] = {
    {"completed", "✅", SL_COLOR_GREEN},    {"failed", "❌", SL_COLOR_RED},
    {"running", "🔄", SL_COLOR_BLUE},       {"pending", "⏳", SL_COLOR_NONE},
    {"cancelled", "🚫", SL_COLOR_DIM},      {"fresh", "🟢", SL_COLOR_GREEN},
    {"stale", "🟡", SL_COLOR_YELLOW},    {"never", "⚪", SL_COLOR_DIM},
    {"failing", "🔴", SL_COLOR_RED},        {"active", "🟢", SL_COLOR_NONE},
    {"paused", "⏸️", SL_COLOR_YELLOW}, {"archived", "📦", SL_COLOR_DIM},
};

static const status_look *look(const char *status)
{
    for (size_t i = 0; status && i < sizeof looks / sizeof looks[0]; i++)
        if (strcmp(looks[i].name, status) == 0) return &looks[i];
    return NULL;
}

/* "✅ completed", coloured. */
static void add_status(sl_table *t, const char *status)
{
    const status_look *l = look(status);
    char text[64];
    snprintf(text, sizeof text, "%s%s%s", l ? l->emoji : "", l ? " " : "", status ? status : "");
    sl_table_add(t, text, l ? l->color : SL_COLOR_NONE);
}

/* The brand column: a brand's name, or a dim "(platform)". A name from before
 * brands_check_name may hold control characters: they show as ^[, as in show
 * and `brands list`, where the table alone would print a space. */
static void add_brand(sl_table *t, const char *brand)
{
    if (!brand) {
        sl_table_add(t, "(platform)", SL_COLOR_DIM);
        return;
    }
    char *visible = sl_text_visible(brand, 0);
    sl_table_add(t, visible, SL_COLOR_NONE);
    free(visible);
}

/* ------------------------------------------------------------------ health */

static void health_usage(FILE *out)
{
    fprintf(out, "usage: sluice health [--brand NAME|UUID | --platform] [--type T] [--check]\n"
                 "                     [--json]\n\n"
                 "Dataset freshness: one row per brand and dataset the job types keep, with its\n"
                 "state, its age against its max age, the last run's status and the last error.\n"
                 "  fresh    completed within max age       stale    completed longer ago\n"
                 "  never    never completed                failing  the last run failed\n"
                 "  running  a run that keeps it is in flight\n"
                 "Every brand is shown for every dataset (never, until something runs); the\n"
                 "platform scope (no brand) once a platform job keeps the dataset, and always\n"
                 "while no brands exist.\n\n"
                 "  --brand B    only this brand          --platform  only the platform scope\n"
                 "  --type T     only datasets job type T keeps\n"
                 "  --check      for monitoring: exit 1 when anything shown is stale, failing,\n"
                 "               never completed or stuck running (its run's lease expired a\n"
                 "               minute ago and no worker failed it, or it ended, or it has run\n"
                 "               longer than the max age), 0 otherwise; 2 when no dataset\n"
                 "               matches, as for any bad input\n"
                 "  --json       the rows of sluice.dataset_health as a JSON array\n");
}

static const char health_where[] = "FROM sluice.dataset_health h "
                                   "WHERE ($1::uuid IS NULL OR h.brand_id = $1::uuid) "
                                   "AND (NOT $2::boolean OR h.brand_id IS NULL) "
                                   "AND ($3::text IS NULL OR $3 = ANY (h.job_types)) ";

int sl_cmd_health(const sl_config *cfg, int argc, char **argv)
{
    view_args a = {0};
    if (sl_cli_wants_help(argc, argv)) {
        health_usage(stdout);
        return 0;
    }
    int status = parse_args("health", argc, argv, OPT_BRAND | OPT_TYPE | OPT_CHECK, &a);
    sl_buf_free(&a.params);
    if (status) return status;
    PGconn *c = view_connect(cfg, &status);
    if (!c) return status;
    PGresult *r = NULL;
    sl_buf sql = {0};
    if ((status = resolve_filters(c, &a))) goto out;
    const char *p[] = {a.brand ? a.brand_id : NULL, a.platform ? "true" : "false", a.type};
    if (a.json) {
        sl_buf_printf(&sql,
                      "SELECT coalesce(jsonb_agg(to_jsonb(h) ORDER BY h.brand_name NULLS FIRST, "
                      "h.dataset_key), '[]') %s",
                      health_where);
        if ((status = print_json_result(c, sl_buf_str(&sql), 3, p))) goto out;
        sl_buf_reset(&sql);
    }
    sl_buf_printf(&sql,
                  "SELECT h.brand_name, h.brand_id, h.dataset_key, h.dataset_label, h.state, "
                  "h.age_seconds, h.max_age_seconds, h.last_status, "
                  "extract(epoch FROM now() - h.last_attempt_at) AS attempt_ago, h.last_error, "
                  "h.healthy, h.stuck "
                  "%s ORDER BY h.brand_name NULLS FIRST, h.dataset_key",
                  health_where);
    if (!(r = sl_cli_exec_line(c, sl_buf_str(&sql), 3, p, &status))) goto out;
    int counts[5] = {0};
    static const char *const states[] = {"fresh", "running", "stale", "failing", "never"};
    int n = PQntuples(r), stuck = 0;
    for (int i = 0; i < n; i++) {
        for (int s = 0; s < 5; s++)
            if (strcmp(col(r, i, "state"), states[s]) == 0) counts[s]++;
        stuck += col(r, i, "stuck") != NULL;
    }
    /* the view's rule (180_health_stuck_running.sql): fresh, or running and
     * not stuck */
    int unhealthy = counts[2] + counts[3] + counts[4] + stuck;
    if (!a.json) {
        sl_term term = sl_term_for(stdout);
        static const sl_table_col cols[] = {
            {"BRAND", SL_ALIGN_LEFT, 8},    {"DATASET", SL_ALIGN_LEFT, 0},
            {"LABEL", SL_ALIGN_LEFT, 8},    {"STATE", SL_ALIGN_LEFT, 0},
            {"AGE", SL_ALIGN_RIGHT, 0},     {"MAX AGE", SL_ALIGN_RIGHT, 0},
            {"LAST RUN", SL_ALIGN_LEFT, 0}, {"LAST ERROR", SL_ALIGN_LEFT, 12},
        };
        sl_table *t = sl_table_new(cols, 8);
        for (int i = 0; i < n; i++) {
            char buf[512];
            add_brand(t, col(r, i, "brand_name"));
            sl_table_add(t, col(r, i, "dataset_key"), SL_COLOR_NONE);
            sl_table_add(t, col(r, i, "dataset_label"), SL_COLOR_NONE);
            add_status(t, col(r, i, "state"));
            if (col(r, i, "age_seconds"))
                sl_fmt_duration(col_num(r, i, "age_seconds", 0), buf, sizeof buf);
            else
                snprintf(buf, sizeof buf, "—");
            sl_table_add(t, buf, SL_COLOR_NONE);
            if (col(r, i, "max_age_seconds"))
                sl_fmt_duration(col_num(r, i, "max_age_seconds", 0), buf, sizeof buf);
            else
                snprintf(buf, sizeof buf, "none");
            sl_table_add(t, buf, SL_COLOR_NONE);
            if (col(r, i, "last_status")) {
                char ago[32];
                sl_fmt_ago(col_num(r, i, "attempt_ago", 0), ago, sizeof ago);
                snprintf(buf, sizeof buf, "%s %s", col(r, i, "last_status"), ago);
            } else {
                snprintf(buf, sizeof buf, "—");
            }
            sl_table_add(t, buf, SL_COLOR_NONE);
            if (col(r, i, "stuck")) {
                snprintf(buf, sizeof buf, "stuck: %s", col(r, i, "stuck"));
                sl_table_add(t, buf, SL_COLOR_RED);
            } else {
                sl_table_add(t, col(r, i, "last_error"), SL_COLOR_RED);
            }
        }
        if (n == 0 && !a.check) { /* with --check, nothing to check is an error: below */
            fprintf(stderr, "no datasets to show: %s\n",
                    a.brand || a.platform || a.type
                        ? "nothing matches the filters"
                        : "no job type declares datasets (see `sluice types`)");
        } else if (n > 0) {
            sl_table_print(t, stdout, &term);
            printf("\n%d dataset%s: %d fresh, %d running, %d stale, %d failing, %d never", n,
                   n == 1 ? "" : "s", counts[0], counts[1], counts[2], counts[3], counts[4]);
            if (stuck) printf(" (%d running stuck)", stuck);
            putchar('\n');
        }
        sl_table_free(t);
    }
    if (a.check && n == 0) {
        /* a monitor whose filters match nothing would pass for ever: a typo in
         * --type or a brand without the datasets is bad input, not health */
        if (a.brand || a.platform || a.type)
            sl_cli_error("health --check: no datasets match the filters, so there is nothing to "
                         "check");
        else
            sl_cli_error("health --check: no datasets to check: no job type declares datasets "
                         "(see `sluice types`)");
        status = 2;
        goto out;
    }
    status = a.check && unhealthy > 0 ? 1 : 0;
    if (a.check && unhealthy > 0 && !a.json)
        fprintf(stderr, "unhealthy: %d stale, %d failing, %d never completed, %d stuck running\n",
                counts[2], counts[3], counts[4], stuck);
out:
    PQclear(r);
    sl_buf_free(&sql);
    PQfinish(c);
    return status;
}

/* ------------------------------------------------------------------ runs */

static const char *const run_statuses[] = {"pending", "running",   "completed",
                                           "failed",  "cancelled", NULL};

static void runs_usage(FILE *out)
{
    fprintf(out, "usage: sluice runs [--type T] [--brand NAME|UUID | --platform] [--status S]\n"
                 "                   [--recurring | --one-time] [--param KEY=VALUE]… [--limit N]\n"
                 "                   [--json]\n\n"
                 "Recent runs, newest first: status, when, duration, attempt, the parameters\n"
                 "that differ from the type's defaults, and a log summary (the error of a\n"
                 "failed run, else its last log line).\n\n"
                 "  --type T         only runs of job type T\n"
                 "  --brand B        only runs for brand B       --platform  only platform runs\n"
                 "  --status S       pending, running, completed, failed or cancelled\n"
                 "  --recurring      only runs of recurring jobs   --one-time  of one-time jobs\n"
                 "  --param K=V      only runs whose parameter K is V (compared as text, like\n"
                 "                   parameters->>'K' = 'V'); repeat to require several\n"
                 "  --limit N        at most N runs (default 5)\n"
                 "  --json           the rows of sluice.recent_runs as a JSON array\n\n"
                 "`sluice show RUN_ID` prints a run's full logs.\n");
}

static const char runs_where[] =
    "FROM sluice.recent_runs r "
    "WHERE ($1::text IS NULL OR r.job_type = $1) "
    "AND ($2::uuid IS NULL OR r.brand_id = $2::uuid) "
    "AND (NOT $3::boolean OR r.brand_id IS NULL) "
    "AND ($4::text IS NULL OR r.status = $4) "
    "AND ($7::text IS NULL OR r.schedule_type = $7) "
    "AND NOT EXISTS (SELECT 1 FROM jsonb_each_text($5::jsonb) f "
    "                WHERE (r.parameters ->> f.key) IS DISTINCT FROM f.value) "
    "ORDER BY r.created_at DESC, r.run_id LIMIT $6";

/* Adds one run row (a recent_runs row) to a runs table. */
static void add_run_row(sl_table *t, PGresult *r, int i, int with_type, sl_buf *b)
{
    char buf[64], sid[16];
    short_id(col(r, i, "run_id"), sid);
    sl_table_add(t, sid, SL_COLOR_DIM);
    add_status(t, col(r, i, "status"));
    if (with_type) {
        type_cell(b, col(r, i, "emoji"), col(r, i, "job_type"));
        sl_table_add(t, sl_buf_str(b), SL_COLOR_NONE);
        add_brand(t, col(r, i, "brand_name"));
    }
    sl_fmt_ago(col_num(r, i, "ago", 0), buf, sizeof buf);
    sl_table_add(t, buf, SL_COLOR_NONE);
    if (col(r, i, "duration_seconds"))
        sl_fmt_duration(col_num(r, i, "duration_seconds", 0), buf, sizeof buf);
    else
        snprintf(buf, sizeof buf, "—");
    sl_table_add(t, buf, SL_COLOR_NONE);
    snprintf(buf, sizeof buf, "%s/%d", col(r, i, "attempt_number"),
             (int)col_num(r, i, "max_retries", 3) + 1);
    sl_table_add(t, buf, SL_COLOR_NONE);
    sl_table_add(t, col(r, i, "params_preview"), SL_COLOR_NONE);
    const char *st = col(r, i, "status");
    sl_table_add(t, col(r, i, "log_summary"),
                 st && strcmp(st, "failed") == 0 ? SL_COLOR_RED : SL_COLOR_NONE);
}

/* A runs table; with_type adds the TYPE and BRAND columns. */
static sl_table *runs_table(int with_type)
{
    static const sl_table_col cols[] = {
        {"RUN", SL_ALIGN_LEFT, 0},   {"STATUS", SL_ALIGN_LEFT, 0},
        {"TYPE", SL_ALIGN_LEFT, 16}, /* with_type */
        {"BRAND", SL_ALIGN_LEFT, 8}, /* with_type */
        {"WHEN", SL_ALIGN_LEFT, 0},  {"TOOK", SL_ALIGN_RIGHT, 0},
        {"TRY", SL_ALIGN_RIGHT, 0},  {"PARAMS", SL_ALIGN_LEFT, 12},
        {"LOG", SL_ALIGN_LEFT, 16},
    };
    if (with_type) return sl_table_new(cols, 9);
    const sl_table_col without[] = {cols[0], cols[1], cols[4], cols[5], cols[6], cols[7], cols[8]};
    return sl_table_new(without, 7);
}

/* The start every list view (runs, jobs) shares: options, the status filter,
 * the connection, the filters resolved to ids and the query parameters
 * (a->list_params). Returns 0 with *c open, or the exit status (then nothing
 * is left to free). */
static int list_view_open(const char *cmd, const sl_config *cfg, int argc, char **argv,
                          const char *const *statuses, view_args *a, PGconn **c)
{
    int status =
        parse_args(cmd, argc, argv,
                   OPT_TYPE | OPT_BRAND | OPT_STATUS | OPT_PARAM | OPT_LIMIT | OPT_SCHEDULE, a);
    if (!status) status = check_status(cmd, a->status, statuses);
    if (!status) *c = view_connect(cfg, &status);
    if (!status && (status = resolve_filters(*c, a))) {
        PQfinish(*c);
        *c = NULL;
    }
    if (status) {
        sl_buf_free(&a->params);
        return status;
    }
    snprintf(a->limit_text, sizeof a->limit_text, "%d", a->limit);
    const char *p[] = {a->type,    a->brand ? a->brand_id : NULL, a->platform ? "true" : "false",
                       a->status,  sl_buf_str(&a->params),        a->limit_text,
                       a->schedule};
    memcpy(a->list_params, p, sizeof p);
    return 0;
}

/* What an empty list view says. */
static void no_rows(const char *noun, const view_args *a)
{
    int filtered = a->type || a->brand || a->platform || a->status || a->schedule ||
                   strcmp(sl_buf_str(&a->params), "{}") != 0;
    fprintf(stderr, "no %s%s\n", noun, filtered ? " match the filters" : " yet");
}

static const char run_columns[] =
    "SELECT r.run_id, r.status, r.job_type, r.emoji, r.brand_name, r.attempt_number, "
    "r.max_retries, r.duration_seconds, r.params_preview, r.log_summary, "
    "extract(epoch FROM now() - coalesce(r.started_at, r.created_at)) AS ago ";

int sl_cmd_runs(const sl_config *cfg, int argc, char **argv)
{
    view_args a = {.limit = 5};
    if (sl_cli_wants_help(argc, argv)) {
        runs_usage(stdout);
        return 0;
    }
    PGconn *c = NULL;
    int status = list_view_open("runs", cfg, argc, argv, run_statuses, &a, &c);
    if (status) return status;
    PGresult *r = NULL;
    sl_buf sql = {0}, b = {0};
    const char *const *p = a.list_params;
    if (a.json) {
        sl_buf_printf(
            &sql,
            "SELECT coalesce(jsonb_agg(to_jsonb(q) ORDER BY q.created_at DESC, q.run_id), "
            "'[]') FROM (SELECT r.* %s) q",
            runs_where);
        status = print_json_result(c, sl_buf_str(&sql), 7, p);
        goto out;
    }
    sl_buf_printf(&sql, "%s %s", run_columns, runs_where);
    if (!(r = sl_cli_exec_line(c, sl_buf_str(&sql), 7, p, &status))) goto out;
    if (PQntuples(r) == 0) {
        no_rows("runs", &a);
        goto out;
    }
    sl_term term = sl_term_for(stdout);
    sl_table *t = runs_table(1);
    for (int i = 0; i < PQntuples(r); i++)
        add_run_row(t, r, i, 1, &b);
    sl_table_print(t, stdout, &term);
    sl_table_free(t);
out:
    PQclear(r);
    sl_buf_free(&sql);
    sl_buf_free(&b);
    sl_buf_free(&a.params);
    PQfinish(c);
    return status;
}

/* ------------------------------------------------------------------ jobs */

static const char *const job_statuses[] = {"active",    "paused",   "completed", "failed",
                                           "cancelled", "archived", NULL};

static void jobs_usage(FILE *out)
{
    fprintf(out, "usage: sluice jobs [--status S] [--type T] [--brand NAME|UUID | --platform]\n"
                 "                   [--recurring | --one-time] [--param KEY=VALUE]… [--limit N]\n"
                 "                   [--json]\n"
                 "       sluice jobs cancel|pause|resume|run-now JOB_ID…\n"
                 "       sluice jobs edit JOB_ID [--cron EXPR] [--tz ZONE] [--params JSON] …\n\n"
                 "Lists jobs: schedule (one-time, or cron and time zone), status, next run,\n"
                 "attempts, last run and last error. Active and paused jobs first, by next run;\n"
                 "then the others, most recently changed first.\n\n"
                 "  --status S   active, paused, completed, failed, cancelled or archived\n"
                 "  --type T     only jobs of type T\n"
                 "  --brand B    only jobs for brand B       --platform  only platform jobs\n"
                 "  --recurring  only recurring jobs         --one-time  only one-time jobs\n"
                 "  --param K=V  only jobs whose parameter K is V (as text); repeatable\n"
                 "  --limit N    at most N jobs (default 20)\n"
                 "  --json       the rows of sluice.jobs_overview as a JSON array\n\n"
                 "cancel ends a job for good (a run in flight is told to stop); pause holds\n"
                 "it until resume; run-now makes it due at once, once (a recurring job keeps\n"
                 "its schedule; `sluice jobs run-now --help`); edit changes a recurring job's\n"
                 "schedule, parameters, priority, name or retries (`sluice jobs edit --help`).\n"
                 "A JOB_ID may be shortened to a unique prefix of at least 4 characters, as\n"
                 "the table shows it.\n");
}

/* Seconds since a job's next_run_at, NULL for infinity and -infinity (only a
 * job queued before 097_finite_run_at.sql can have them): Postgres cannot
 * subtract those. */
#define NEXT_AGO                                                                                   \
    "CASE WHEN isfinite(j.next_run_at) THEN extract(epoch FROM now() - j.next_run_at) END"

/* The attempts a job spent in its cycle: those of the current one while it is
 * active or paused, else those of its last (its last run's attempt number).
 * finish_runs() sets attempts back to 0 when a cycle ends (a completion, a
 * failure with no retry left, as a run stopped with Ctrl-C is), so an ended job
 * showed 0 though it ran. */
#define TRIES                                                                                      \
    "CASE WHEN j.status IN ('active', 'paused') THEN j.attempts ELSE coalesce((SELECT "            \
    "r.attempt_number FROM sluice.scheduled_job_runs r WHERE r.id = j.last_run_id), j.attempts) "  \
    "END"

static const char jobs_where[] =
    "FROM sluice.jobs_overview j "
    "WHERE ($1::text IS NULL OR j.job_type = $1) "
    "AND ($2::uuid IS NULL OR j.brand_id = $2::uuid) "
    "AND (NOT $3::boolean OR j.brand_id IS NULL) "
    "AND ($4::text IS NULL OR j.status = $4) "
    "AND ($7::text IS NULL OR j.schedule_type = $7) "
    "AND NOT EXISTS (SELECT 1 FROM jsonb_each_text($5::jsonb) f "
    "                WHERE (j.parameters ->> f.key) IS DISTINCT FROM f.value) "
    "ORDER BY (j.status IN ('active', 'paused')) DESC, j.next_run_at NULLS LAST, "
    "j.updated_at DESC, j.job_id LIMIT $6";

int sl_cmd_jobs(const sl_config *cfg, int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "cancel") == 0 || strcmp(argv[1], "pause") == 0 ||
                     strcmp(argv[1], "resume") == 0 || strcmp(argv[1], "run-now") == 0))
        return sl_cmd_jobs_control(cfg, argc, argv);
    if (argc > 1 && strcmp(argv[1], "edit") == 0) return sl_cmd_jobs_edit(cfg, argc, argv);
    view_args a = {.limit = 20};
    if (sl_cli_wants_help(argc, argv)) {
        jobs_usage(stdout);
        return 0;
    }
    PGconn *c = NULL;
    int status = list_view_open("jobs", cfg, argc, argv, job_statuses, &a, &c);
    if (status) return status;
    PGresult *r = NULL;
    sl_buf sql = {0}, b = {0};
    const char *const *p = a.list_params;
    if (a.json) {
        sl_buf_printf(&sql,
                      "SELECT coalesce(jsonb_agg(to_jsonb(q) ORDER BY (q.status IN ('active', "
                      "'paused')) DESC, q.next_run_at NULLS LAST, q.updated_at DESC, q.job_id), "
                      "'[]') FROM (SELECT j.* %s) q",
                      jobs_where);
        status = print_json_result(c, sl_buf_str(&sql), 7, p);
        goto out;
    }
    sl_buf_printf(
        &sql,
        "SELECT j.job_id, j.job_type, j.emoji, j.brand_name, j.schedule, j.status, "
        "%s AS next_ago, j.current_run_id, "
        "CASE WHEN NOT isfinite(j.next_run_at) THEN j.next_run_at::text END AS next_word, " TRIES
        " AS attempts, j.max_retries, j.last_run_status, "
        "extract(epoch FROM now() - j.last_run_at) AS last_ago, j.last_error %s",
        NEXT_AGO, jobs_where);
    if (!(r = sl_cli_exec_line(c, sl_buf_str(&sql), 7, p, &status))) goto out;
    if (PQntuples(r) == 0) {
        no_rows("jobs", &a);
        goto out;
    }
    sl_term term = sl_term_for(stdout);
    static const sl_table_col cols[] = {
        {"JOB", SL_ALIGN_LEFT, 0},         {"TYPE", SL_ALIGN_LEFT, 16},
        {"BRAND", SL_ALIGN_LEFT, 8},       {"SCHEDULE", SL_ALIGN_LEFT, 10},
        {"STATUS", SL_ALIGN_LEFT, 0},      {"NEXT RUN", SL_ALIGN_LEFT, 0},
        {"TRIES", SL_ALIGN_RIGHT, 0},      {"LAST RUN", SL_ALIGN_LEFT, 0},
        {"LAST ERROR", SL_ALIGN_LEFT, 12},
    };
    sl_table *t = sl_table_new(cols, 9);
    for (int i = 0; i < PQntuples(r); i++) {
        char buf[96], sid[16], ago[32];
        short_id(col(r, i, "job_id"), sid);
        sl_table_add(t, sid, SL_COLOR_DIM);
        type_cell(&b, col(r, i, "emoji"), col(r, i, "job_type"));
        sl_table_add(t, sl_buf_str(&b), SL_COLOR_NONE);
        add_brand(t, col(r, i, "brand_name"));
        sl_table_add(t, col(r, i, "schedule"), SL_COLOR_NONE);
        add_status(t, col(r, i, "status"));
        if (col(r, i, "current_run_id")) {
            snprintf(buf, sizeof buf, "running");
        } else if (col(r, i, "next_word")) { /* infinity, -infinity: never, always due */
            snprintf(buf, sizeof buf, "%s", col(r, i, "next_word"));
        } else if (col(r, i, "next_ago")) {
            double next = col_num(r, i, "next_ago", 0);
            const char *st = col(r, i, "status");
            if (next >= 0 && st && strcmp(st, "paused") == 0) /* no worker takes it now */
                snprintf(buf, sizeof buf, "on resume");
            else if (next >= 0)
                snprintf(buf, sizeof buf, "due");
            else
                sl_fmt_ago(next, buf, sizeof buf);
        } else {
            snprintf(buf, sizeof buf, "—");
        }
        sl_table_add(t, buf, SL_COLOR_NONE);
        snprintf(buf, sizeof buf, "%s/%d", col(r, i, "attempts"),
                 (int)col_num(r, i, "max_retries", 3) + 1);
        sl_table_add(t, buf, SL_COLOR_NONE);
        if (col(r, i, "last_run_status")) {
            sl_fmt_ago(col_num(r, i, "last_ago", 0), ago, sizeof ago);
            const status_look *l = look(col(r, i, "last_run_status"));
            snprintf(buf, sizeof buf, "%s %s", l ? l->emoji : col(r, i, "last_run_status"), ago);
        } else {
            snprintf(buf, sizeof buf, "—");
        }
        sl_table_add(t, buf, SL_COLOR_NONE);
        sl_table_add(t, col(r, i, "last_error"), SL_COLOR_RED);
    }
    sl_table_print(t, stdout, &term);
    sl_table_free(t);
out:
    PQclear(r);
    sl_buf_free(&sql);
    sl_buf_free(&b);
    sl_buf_free(&a.params);
    PQfinish(c);
    return status;
}

/* ------------------------------------------------------------------ show */

static void show_usage(FILE *out)
{
    fprintf(out,
            "usage: sluice show RUN_ID|JOB_ID [--json]\n\n"
            "Everything about one run (status, timing, attempt, worker, handler version,\n"
            "parameters, result, error, full logs) or one job (schedule, status, next\n"
            "run, attempts, the keys of its checkpoint, parameters, and its runs). An\n"
            "id may be shortened to any unique prefix of at least 4 characters, as the\n"
            "tables show them. Control characters in stored text are shown as `cat -v`\n"
            "does (^[ for ESC).\n\n"
            "  --json   {\"kind\": \"run\", \"run\": {…, logs, result}, \"job\": {…}} or\n"
            "           {\"kind\": \"job\", \"job\": {…}, \"runs\": […]}, with the columns of\n"
            "           sluice.recent_runs and sluice.jobs_overview as keys (and a job's\n"
            "           checkpoint_keys)\n");
}

/* Stored text (names, errors, logs, results) may hold anything a handler or
 * a scraped page put there: show prints it through sl_text_visible(), so a
 * control character reaches the terminal as "^[", never as itself. */

/* "  label       value" lines; NULL values are skipped. A value of several lines
 * (an error with its traceback) goes on under the first, indented. */
static void field(const sl_term *term, const char *label, const char *value, sl_color color)
{
    if (!value || !*value) return;
    char *text = sl_text_visible(value, 1);
    printf("  %-11s %s", label, sl_color_on(term, color));
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        int n = nl ? (int)(nl - p) : (int)strlen(p);
        printf("%s%.*s", p == text ? "" : "\n              ", n, p);
        p = nl ? nl + 1 : p + n;
    }
    printf("%s\n", color != SL_COLOR_NONE ? sl_color_off(term) : "");
    free(text);
}

/* "2026-02-07 10:00:00Z (3m ago)" from a timestamp column and its age column. */
static void when(char *out, size_t len, PGresult *r, const char *ts, const char *ago)
{
    const char *t = col(r, 0, ts);
    if (!t) {
        out[0] = '\0';
        return;
    }
    if (!col(r, 0, ago)) { /* a time that is no point in time: infinity */
        snprintf(out, len, "%s", t);
        return;
    }
    char rel[32];
    sl_fmt_ago(col_num(r, 0, ago, 0), rel, sizeof rel);
    snprintf(out, len, "%s (%s)", t, rel);
}

/* The fields a run and a job both show, from the columns of row 0 of their
 * views: the status with its emoji and colour, the job type with its emoji and
 * label, the brand. */
static void status_field(const sl_term *term, PGresult *r)
{
    char buf[512];
    const status_look *l = look(col(r, 0, "status"));
    snprintf(buf, sizeof buf, "%s %s", l ? l->emoji : "", col(r, 0, "status"));
    field(term, "status", buf, l ? l->color : SL_COLOR_NONE);
}

static void type_field(const sl_term *term, PGresult *r)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s%s%s (%s)", col(r, 0, "emoji"), *col(r, 0, "emoji") ? " " : "",
             col(r, 0, "job_type"), col(r, 0, "job_label"));
    field(term, "type", buf, SL_COLOR_NONE);
}

static void brand_field(const sl_term *term, PGresult *r)
{
    const char *brand = col(r, 0, "brand_name");
    field(term, "brand", brand ? brand : "(platform)", SL_COLOR_NONE);
}

/* Prints text indented by two spaces, line by line. */
static void block(const char *title, const char *text)
{
    printf("\n%s\n", title);
    char *visible = sl_text_visible(text && *text ? text : "(none)", 1);
    const char *p = visible;
    while (*p) {
        const char *nl = strchr(p, '\n');
        int n = nl ? (int)(nl - p) : (int)strlen(p);
        printf("  %.*s\n", n, p);
        p = nl ? nl + 1 : p + n;
    }
    free(visible);
}

/* Timestamps for people: "2026-02-07 10:00:00Z" and the age in seconds. */
static const char show_run_sql[] =
    "SELECT r.*, x.logs, jsonb_pretty(x.result) AS result_pretty, "
    "jsonb_pretty(r.parameters) AS params_pretty, j.status AS job_status, j.schedule, "
    "to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS\"Z\"') AS started, "
    "extract(epoch FROM now() - r.started_at) AS started_ago, "
    "to_char(r.completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS\"Z\"') AS finished "
    "FROM sluice.recent_runs r JOIN sluice.scheduled_job_runs x ON x.id = r.run_id "
    "JOIN sluice.jobs_overview j ON j.job_id = r.job_id WHERE r.run_id = $1";

/* The keys of job j's checkpoint: what its attempts saved for the next run. */
#define CHECKPOINT_KEYS                                                                            \
    "sluice.scheduled_jobs s CROSS JOIN LATERAL jsonb_object_keys(s.checkpoint) k "                \
    "WHERE s.id = j.job_id"

static const char show_job_sql[] =
    "SELECT j.*, jsonb_pretty(j.parameters) AS params_pretty, "
    "CASE WHEN isfinite(j.next_run_at) "
    "THEN to_char(j.next_run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS\"Z\"') "
    "ELSE j.next_run_at::text END AS next, " NEXT_AGO " AS next_ago, " TRIES " AS tries, "
    "CASE WHEN isfinite(j.next_run_at) THEN extract(epoch FROM j.next_run_at) END AS next_epoch, "
    "to_char(j.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS\"Z\"') AS created, "
    "extract(epoch FROM now() - j.created_at) AS created_ago, "
    "(SELECT string_agg(k, ', ' ORDER BY k) FROM " CHECKPOINT_KEYS ") AS checkpoint_keys "
    "FROM sluice.jobs_overview j WHERE j.job_id = $1";

/* What `show --json` prints of a run or a job: one JSON value. */
static const char show_run_json_sql[] =
    "SELECT jsonb_build_object('kind', 'run', "
    " 'run', to_jsonb(r) || jsonb_build_object('logs', x.logs, 'result', x.result), "
    " 'job', to_jsonb(j)) "
    "FROM sluice.recent_runs r JOIN sluice.scheduled_job_runs x ON x.id = r.run_id "
    "JOIN sluice.jobs_overview j ON j.job_id = r.job_id WHERE r.run_id = $1";

static const char show_job_json_sql[] =
    "SELECT jsonb_build_object('kind', 'job', 'job', to_jsonb(j) || jsonb_build_object("
    " 'checkpoint_keys', (SELECT coalesce(jsonb_agg(k ORDER BY k), '[]') FROM " CHECKPOINT_KEYS
    ")), 'runs', "
    " (SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.created_at, r.run_id), '[]') "
    "  FROM sluice.recent_runs r WHERE r.job_id = j.job_id)) "
    "FROM sluice.jobs_overview j WHERE j.job_id = $1";

/* The start of `show` for kind "run" or "job": with json, prints the JSON and
 * returns NULL with the exit status in *status; else prints the title and
 * returns the row to show (NULL, *status set, after printing the error). */
static PGresult *show_start(PGconn *c, const char *kind, const char *id, int json,
                            const sl_term *term, int *status)
{
    int run = strcmp(kind, "run") == 0;
    const char *p[] = {id};
    if (json) {
        *status = print_json_result(c, run ? show_run_json_sql : show_job_json_sql, 1, p);
        return NULL;
    }
    *status = 1;
    PGresult *r = sl_cli_exec_line(c, run ? show_run_sql : show_job_sql, 1, p, status);
    if (r) printf("%s%s %s%s\n", sl_color_on(term, SL_COLOR_BOLD), kind, id, sl_color_off(term));
    return r;
}

static int show_run(PGconn *c, const char *id, int json)
{
    int status;
    sl_term term = sl_term_for(stdout);
    PGresult *r = show_start(c, "run", id, json, &term, &status);
    if (!r) return status;
    char buf[512], t1[128];
    status_field(&term, r);
    type_field(&term, r);
    brand_field(&term, r);
    snprintf(buf, sizeof buf, "%s (%s, %s)", col(r, 0, "job_id"), col(r, 0, "schedule"),
             col(r, 0, "job_status"));
    field(&term, "job", buf, SL_COLOR_NONE);
    snprintf(buf, sizeof buf, "%s of %d", col(r, 0, "attempt_number"),
             (int)col_num(r, 0, "max_retries", 3) + 1);
    field(&term, "attempt", buf, SL_COLOR_NONE);
    field(&term, "trigger", col(r, 0, "trigger_source"), SL_COLOR_NONE);
    when(buf, sizeof buf, r, "started", "started_ago");
    field(&term, "started", buf, SL_COLOR_NONE);
    if (col(r, 0, "finished")) {
        sl_fmt_duration(col_num(r, 0, "duration_seconds", 0), t1, sizeof t1);
        snprintf(buf, sizeof buf, "%s (took %s)", col(r, 0, "finished"), t1);
        field(&term, "finished", buf, SL_COLOR_NONE);
    } else if (col(r, 0, "duration_seconds")) {
        sl_fmt_duration(col_num(r, 0, "duration_seconds", 0), t1, sizeof t1);
        snprintf(buf, sizeof buf, "still running after %s", t1);
        field(&term, "finished", buf, SL_COLOR_NONE);
    }
    field(&term, "handler", col(r, 0, "handler_version"), SL_COLOR_NONE);
    field(&term, "worker", col(r, 0, "worker_id"), SL_COLOR_NONE);
    field(&term, "error", col(r, 0, "error_message"), SL_COLOR_RED);
    block("parameters", col(r, 0, "params_pretty"));
    block("result", col(r, 0, "result_pretty"));
    block("logs", col(r, 0, "logs"));
    PQclear(r);
    return 0;
}

static int show_job(PGconn *c, const char *id, int json)
{
    int status;
    sl_term term = sl_term_for(stdout);
    PGresult *r = show_start(c, "job", id, json, &term, &status);
    if (!r) return status;
    char buf[512];
    type_field(&term, r);
    field(&term, "name", col(r, 0, "name"), SL_COLOR_NONE);
    brand_field(&term, r);
    status_field(&term, r);
    field(&term, "schedule", col(r, 0, "schedule"), SL_COLOR_NONE);
    if (col(r, 0, "current_run_id")) {
        snprintf(buf, sizeof buf, "running now (run %s)", col(r, 0, "current_run_id"));
        field(&term, "next run", buf, SL_COLOR_NONE);
    } else {
        const char *st = col(r, 0, "status");
        if (st && strcmp(st, "paused") == 0 && col(r, 0, "next_ago")) {
            /* no worker takes a paused job: its time is no "now" or "ago" */
            double ago = col_num(r, 0, "next_ago", 0);
            char rel[32];
            sl_fmt_ago(ago, rel, sizeof rel);
            if (ago > -5) /* the time has come (or comes within seconds) */
                snprintf(buf, sizeof buf, "%s (paused: runs once resumed)", col(r, 0, "next"));
            else
                snprintf(buf, sizeof buf, "%s (%s if resumed by then; paused)", col(r, 0, "next"),
                         rel);
        } else {
            when(buf, sizeof buf, r, "next", "next_ago");
        }
        char local[96];
        size_t n = strlen(buf);
        /* a recurring job's slot on the wall clock of its zone too */
        if (sl_cli_local_time(col(r, 0, "timezone"), col(r, 0, "next_epoch"), local,
                              sizeof local) == 0)
            snprintf(buf + n, sizeof buf - n, ", %s", local);
        field(&term, "next run", buf, SL_COLOR_NONE);
    }
    const char *st = col(r, 0, "status");
    int ended = !st || (strcmp(st, "active") != 0 && strcmp(st, "paused") != 0);
    snprintf(buf, sizeof buf, "%s of %d in %s cycle; %s run%s in all", col(r, 0, "tries"),
             (int)col_num(r, 0, "max_retries", 3) + 1, ended ? "its last" : "this",
             col(r, 0, "run_count"), strcmp(col(r, 0, "run_count"), "1") == 0 ? "" : "s");
    field(&term, "attempts", buf, SL_COLOR_NONE);
    field(&term, "priority", col(r, 0, "priority"), SL_COLOR_NONE);
    field(&term, "dedupe key", col(r, 0, "dedupe_key"), SL_COLOR_NONE);
    field(&term, "trigger", col(r, 0, "trigger_source"), SL_COLOR_NONE);
    when(buf, sizeof buf, r, "created", "created_ago");
    field(&term, "created", buf, SL_COLOR_NONE);
    field(&term, "last error", col(r, 0, "last_error"), SL_COLOR_RED);
    if (col(r, 0, "checkpoint_keys")) {
        snprintf(buf, sizeof buf, "%s (saved by its attempts: its next run resumes from them)",
                 col(r, 0, "checkpoint_keys"));
        field(&term, "checkpoint", buf, SL_COLOR_NONE);
    }
    block("parameters", col(r, 0, "params_pretty"));
    PQclear(r);

    const char *p[] = {id};
    r = sl_cli_exec_line(c,
                         "SELECT r.run_id, r.status, r.attempt_number, r.max_retries, "
                         "r.duration_seconds, r.params_preview, r.log_summary, "
                         "extract(epoch FROM now() - coalesce(r.started_at, r.created_at)) AS ago "
                         "FROM sluice.recent_runs r WHERE r.job_id = $1 "
                         "ORDER BY r.created_at DESC, r.run_id",
                         1, p, &status);
    if (!r) return status;
    printf("\nruns\n");
    if (PQntuples(r) == 0) {
        printf("  (none yet)\n");
    } else {
        sl_table *t = runs_table(0);
        for (int i = 0; i < PQntuples(r); i++)
            add_run_row(t, r, i, 0, NULL);
        sl_table_print(t, stdout, &term);
        sl_table_free(t);
    }
    PQclear(r);
    return 0;
}

int sl_cmd_show(const sl_config *cfg, int argc, char **argv)
{
    view_args a = {0};
    if (sl_cli_wants_help(argc, argv)) {
        show_usage(stdout);
        return 0;
    }
    int status = parse_args("show", argc, argv, OPT_ID, &a);
    sl_buf_free(&a.params);
    if (status) return status;
    if (!a.id) {
        show_usage(stderr);
        return 2;
    }
    PGconn *c = view_connect(cfg, &status);
    if (!c) return status;
    char kind[8], id[40];
    status = sl_cli_find_id(c, "show", a.id, 0, kind, id);
    if (!status)
        status = strcmp(kind, "run") == 0 ? show_run(c, id, a.json) : show_job(c, id, a.json);
    PQfinish(c);
    return status;
}
