/*
 * main.c — command-line entry: global options, then dispatch to one subcommand.
 *
 * Global options may appear anywhere on the line and are removed before the
 * subcommand parses the rest: --db URL, --home DIR, --handlers DIR (repeatable),
 * --lua DIR (repeatable), --config FILE, --log-format logfmt|json, --log-level L.
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

static const char *const global_names[] = {"--db",     "--home",       "--handlers",  "--lua",
                                           "--config", "--log-format", "--log-level", NULL};
enum { G_DB, G_HOME, G_HANDLERS, G_LUA, G_CONFIG, G_LOG_FORMAT, G_LOG_LEVEL };

/* Which global option argv[*i] is ("--name VALUE" or "--name=VALUE"; *i moves
 * past the value, into *val): its index in global_names, -1 when it is none,
 * -2 when its value is missing. */
static int global_option(int argc, char **argv, int *i, const char **val)
{
    const char *arg = argv[*i];
    for (int k = 0; global_names[k]; k++) {
        size_t n = strlen(global_names[k]);
        if (strncmp(arg, global_names[k], n) != 0 || (arg[n] != '\0' && arg[n] != '=')) continue;
        if (arg[n] == '=')
            *val = arg + n + 1;
        else if (*i + 1 < argc)
            *val = argv[++*i];
        else
            return -2;
        return k;
    }
    return -1;
}

/* Takes the global option at argv[*i] (and its value) into cfg. Returns 1 if it was
 * one, 0 if not, -1 on error. */
static int take_global(sl_config *cfg, int argc, char **argv, int *i, int *handlers_from_flags)
{
    const char *val = NULL;
    int k = global_option(argc, argv, i, &val);
    if (k == -1) return 0;
    if (k == -2) {
        sl_cli_error("%s needs a value", argv[*i]);
        return -1;
    }
    switch (k) {
    case G_DB:
        free(cfg->db_url);
        cfg->db_url = sl_xstrdup(val);
        free(cfg->db_source);
        cfg->db_source = sl_xstrdup("--db");
        break;
    case G_HOME:
        free(cfg->home);
        cfg->home = sl_xstrdup(val);
        break;
    case G_HANDLERS:
        if (!*handlers_from_flags) {
            /* flags replace the directories the environment or file named */
            for (int d = 0; d < cfg->n_handler_dirs; d++)
                free(cfg->handler_dirs[d]);
            cfg->n_handler_dirs = 0;
            *handlers_from_flags = 1;
        }
        if (sl_config_add_dir(cfg->handler_dirs, &cfg->n_handler_dirs, val) < 0) {
            sl_cli_error("too many --handlers directories");
            return -1;
        }
        break;
    case G_LUA:
        if (sl_config_add_dir(cfg->lua_dirs, &cfg->n_lua_dirs, val) < 0) {
            sl_cli_error("too many --lua directories");
            return -1;
        }
        break;
    case G_CONFIG:
        break; /* read before the others, see main() */
    case G_LOG_FORMAT:
        if (strcmp(val, "logfmt") == 0)
            cfg->log_format = SL_LOG_LOGFMT;
        else if (strcmp(val, "json") == 0)
            cfg->log_format = SL_LOG_JSON;
        else {
            sl_cli_error("--log-format must be logfmt or json, not '%s'", val);
            return -1;
        }
        break;
    case G_LOG_LEVEL:
        if ((cfg->log_level = sl_log_level_parse(val)) < 0) {
            sl_cli_error("--log-level must be debug, info, warn or error, not '%s'", val);
            return -1;
        }
        break;
    }
    return 1;
}

int main(int argc, char **argv)
{
    sl_config cfg;
    char err[1024];
    int status = 2;

    /* --config and --home must be known before the file is read: it is the one
     * they name (the last of each wins, as for every option). An empty value
     * (an unset shell variable, often) is refused, not read as "the default":
     * --db "" connected to whatever server libpq's defaults reach. */
    const char *config_flag = NULL, *home_flag = NULL;
    for (int i = 1; i < argc; i++) {
        const char *val = NULL;
        int k = global_option(argc, argv, &i, &val); /* a missing value is reported below */
        if (k >= 0 && !*val) {
            sl_cli_error("%s needs a value, not an empty one", global_names[k]);
            return 2;
        }
        if (k == G_CONFIG) config_flag = val;
        if (k == G_HOME) home_flag = val;
    }
    if (sl_config_init(&cfg, config_flag, home_flag, err, sizeof err) < 0) {
        sl_cli_error("%s", err);
        return 2;
    }

    char **rest = sl_xcalloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0;
    int handlers_from_flags = 0;
    for (int i = 1; i < argc; i++) {
        int r = take_global(&cfg, argc, argv, &i, &handlers_from_flags);
        if (r < 0) goto out;
        if (r == 0) rest[nrest++] = argv[i];
    }
    sl_config_finish(&cfg);
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
    return status;
}
