/*
 * main.c — command-line entry: global options, then dispatch to one subcommand.
 *
 * Global options may appear anywhere on the line and are removed before the
 * subcommand parses the rest: --db URL, --home DIR, --handlers DIR (repeatable),
 * --lua DIR (repeatable), --config FILE, --log-format logfmt|json, --log-level L
 * (read by sl_config_load, which a reload calls again).
 */
#include "buf.h"
#include "cli.h"
#include "config.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*fn)(const sl_config *, int, char **);
    const char *summary;
} sl_command;

static const sl_command commands[] = {
    {"serve", sl_cmd_serve, "run the daemon: claim due jobs and run them"},
    {"queue", sl_cmd_queue, "queue a one-time job"},
    {"schedule", sl_cmd_schedule, "create a recurring job (cron + time zone)"},
    {"run", sl_cmd_run, "run one job in the foreground and record it"},
    {"brands", sl_cmd_brands, "add or list brands"},
    {"competitors", sl_cmd_competitors, "add or list competitors and their Amazon product URLs"},
    {"cron", sl_cmd_cron, "preview a cron expression's next times"},
    {"exec", sl_cmd_exec, "run a Lua script with the sluice API"},
    {"repl", sl_cmd_repl, "interactive Lua with the sluice API and job helpers"},
    {"migrate", sl_cmd_migrate, "apply pending schema migrations"},
    {"config", sl_cmd_config, "print the settings in effect (secrets masked)"},
    {"db", sl_cmd_db, "manage the embedded Postgres cluster (status|start|stop|url)"},
    {"check", sl_cmd_check, "check handler files and report every problem"},
    {"types", sl_cmd_types, "list job types: emoji, label, default params, datasets"},
    {"health", sl_cmd_health, "dataset freshness per brand (--check for monitoring)"},
    {"runs", sl_cmd_runs, "recent runs: status, duration, params, log summary"},
    {"jobs", sl_cmd_jobs, "list jobs; jobs cancel|pause|resume|run-now|edit ID"},
    {"show", sl_cmd_show, "everything about one run or job"},
    {"logs", sl_cmd_logs, "a run's log (or a job's newest run's); --follow as it runs"},
    {"workers", sl_cmd_workers, "the processes registered: live or not, and what they serve"},
};

static const sl_command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0) return &commands[i];
    return NULL;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice [global options] <command> [args]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\nglobal options (anywhere on the line; --db URL or --db=URL):\n"
            "  --db URL            Postgres connection string (default: $DATABASE_URL,\n"
            "                      else the embedded cluster under the state directory)\n"
            "  --home DIR          state directory (default: $SLUICE_HOME, else\n"
            "                      /var/lib/sluice as root, else $XDG_STATE_HOME/sluice,\n"
            "                      else ~/.local/state/sluice)\n"
            "  --handlers DIR      handler directory, repeatable (default: $SLUICE_HANDLERS,\n"
            "                      colon-separated, else the config file's, else\n"
            "                      ./handlers, else the source tree's or the installed\n"
            "                      handlers)\n"
            "  --lua DIR           extra Lua library root, repeatable\n"
            "  --config FILE       config file (default: $SLUICE_CONFIG, else\n"
            "                      <home>/sluice.conf)\n"
            "  --log-format F      logfmt (default) or json\n"
            "  --log-level L       debug, info (default), warn or error\n"
            "  --version, --help\n\n"
            "`sluice <command> --help` (or `sluice help <command>`) describes each command.\n");
}

int main(int argc, char **argv)
{
    sl_config cfg;
    char err[1024];
    int status = 2;
    char **rest = sl_xcalloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0;
    if (sl_config_load(&cfg, argc, argv, rest, &nrest, err, sizeof err) < 0) {
        sl_cli_error("%s", err);
        free(rest);
        return 2;
    }
    sl_log_setup(cfg.log_format, cfg.log_level);

    if (nrest > 1 && strcmp(rest[0], "help") == 0) {
        /* `sluice help jobs [cancel]` is `sluice jobs [cancel] --help` */
        for (int i = 0; i + 1 < nrest; i++)
            rest[i] = rest[i + 1];
        rest[nrest - 1] = "--help";
        if (!find_command(rest[0]) && strcmp(rest[0], "version") != 0) {
            sl_cli_error("help: unknown command '%s' (see `sluice --help`)", rest[0]);
            goto out;
        }
    }
    if (nrest == 0 || strcmp(rest[0], "--help") == 0 || strcmp(rest[0], "-h") == 0 ||
        strcmp(rest[0], "help") == 0) {
        usage(nrest == 0 ? stderr : stdout);
        status = nrest == 0 ? 2 : 0;
        goto out;
    }
    if (strcmp(rest[0], "--version") == 0 || strcmp(rest[0], "version") == 0) {
        printf("sluice %s\n", SLUICE_VERSION);
        status = 0;
        goto out;
    }
    /* A URL libpq refuses fails every connection alike: every command that
     * would use it stops here (exit 2, as for the config file's errors) instead
     * of reporting, or the daemon waiting out, a database that seems down. */
    if (!sl_cli_wants_help(nrest, rest) && sl_config_check_db(&cfg, err, sizeof err) < 0) {
        sl_cli_error("%s", err);
        goto out;
    }
    if (strcmp(rest[0], "jobs") == 0 && nrest > 1 &&
        (strcmp(rest[1], "cancel") == 0 || strcmp(rest[1], "pause") == 0 ||
         strcmp(rest[1], "resume") == 0 || strcmp(rest[1], "run-now") == 0)) {
        status = sl_cmd_jobs_control(&cfg, nrest, rest);
        goto out;
    }
    if (strcmp(rest[0], "jobs") == 0 && nrest > 1 && strcmp(rest[1], "edit") == 0) {
        status = sl_cmd_jobs_edit(&cfg, nrest, rest);
        goto out;
    }
    const sl_command *cmd = find_command(rest[0]);
    if (cmd) {
        status = cmd->fn(&cfg, nrest, rest);
        goto out;
    }
    if (rest[0][0] == '-')
        sl_cli_error("unknown option '%s' (see `sluice --help`)", rest[0]);
    else
        sl_cli_error("unknown command '%s' (see `sluice --help`)", rest[0]);
out:
    free(rest);
    sl_config_free(&cfg);
    /* a listing cut short by a full disk must not look like a whole one */
    return sl_cli_output_written(status);
}
