/*
 * cli_check.c — `sluice check [FILE|DIR…]`: loads handler files exactly as the
 * daemon does and reports every problem, one line each, "file: field: message":
 * syntax and load errors, unknown fields, a missing run function, malformed
 * parameter schemas and defaults that fail their own schema, bad datasets,
 * job.dataset("key") calls with literal keys the handler does not declare (a
 * static scan of the source), and datasets declared differently by two files.
 *
 * No database is involved: this is the check to run before deploying a handler
 * (or in CI). Exit status: 0 and "N handlers OK", 1 on any problem, 2 on bad usage.
 */
#include "buf.h"
#include "cli.h"
#include "config.h"
#include "ctx.h"
#include "queue.h"
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice check [FILE|DIR…] [--json]\n\n"
                 "Loads handler files the way the daemon does and reports every problem\n"
                 "with its file and field. Without arguments it checks the configured\n"
                 "handler directories (--handlers / $SLUICE_HANDLERS). Needs no database.\n\n"
                 "  --json   {\"ok\": bool, \"handlers\": [names], \"problems\": [{\"file\",\n"
                 "           \"message\"}]} on stdout\n\n"
                 "Exit status: 0 when every handler is fine, 1 when there is any problem.\n");
}

/* Appends one problem line ("path: message") to the list. */
static void add_line(char **list, const char *path, const char *msg)
{
    size_t old = *list ? strlen(*list) : 0;
    size_t need = old + strlen(path) + strlen(msg) + 4;
    *list = sl_xrealloc(*list, need);
    snprintf(*list + old, need - old, "%s: %s\n", path, msg);
}

/* Explicit arguments the loader cannot take: missing paths and files that are
 * not .lua are reported here and dropped from files (n is updated). Returns the
 * number of problems added. */
static int check_paths(char **files, int *n, char **problems)
{
    int count = 0, kept = 0;
    for (int i = 0; i < *n; i++) {
        struct stat st;
        size_t len = strlen(files[i]);
        if (stat(files[i], &st) != 0) {
            add_line(problems, files[i], "no such file or directory");
            count++;
        } else if (!S_ISDIR(st.st_mode) && (len < 5 || strcmp(files[i] + len - 4, ".lua") != 0)) {
            add_line(problems, files[i], "not a handler file: handlers are <job_type>.lua");
            count++;
        } else {
            files[kept++] = files[i];
        }
    }
    *n = kept;
    return count;
}

/* Number of names in "a, b, c" ("" → 0). */
static int count_names(const char *names)
{
    if (!names || !*names) return 0;
    int n = 1;
    for (const char *p = names; (p = strstr(p, ", ")); p += 2)
        n++;
    return n;
}

static void print_json(const char *names, const char *problems)
{
    sl_buf b = {0};
    sl_buf_printf(&b, "{\"ok\":%s,\"handlers\":[", problems && *problems ? "false" : "true");
    const char *p = names;
    int first = 1;
    while (p && *p) {
        const char *comma = strstr(p, ", ");
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char *name = sl_xstrndup(p, n);
        sl_buf_puts(&b, first ? "" : ",");
        sl_buf_json_string(&b, name);
        free(name);
        first = 0;
        p = comma ? comma + 2 : NULL;
    }
    sl_buf_puts(&b, "],\"problems\":[");
    p = problems;
    first = 1;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char *line = sl_xstrndup(p, n);
        char *sep = strstr(line, ": ");
        if (sep) *sep = '\0';
        sl_buf_puts(&b, first ? "{\"file\":" : ",{\"file\":");
        sl_buf_json_string(&b, sep ? line : NULL);
        sl_buf_puts(&b, ",\"message\":");
        sl_buf_json_string(&b, sep ? sep + 2 : line);
        sl_buf_puts(&b, "}");
        free(line);
        first = 0;
        p = nl ? nl + 1 : NULL;
    }
    sl_buf_puts(&b, "]}");
    printf("%s\n", sl_buf_str(&b));
    sl_buf_free(&b);
}

int sl_cmd_check(const sl_config *cfg, int argc, char **argv)
{
    int json = 0, nfiles = 0;
    if (sl_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    char **files = sl_xcalloc((size_t)argc, sizeof *files);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            sl_cli_error("check: unknown option '%s' (see `sluice check --help`)", argv[i]);
            free(files);
            return 2;
        } else {
            files[nfiles++] = argv[i];
        }
    }
    if (nfiles == 0 && cfg->n_handler_dirs == 0) {
        sl_cli_error("check: no handler directory is configured and none was given "
                     "(use --handlers DIR, $SLUICE_HANDLERS, or name files)");
        free(files);
        return 2;
    }

    sl_ctx ctx;
    if (sl_queue_open(&ctx, cfg, SL_ECHO_NONE) < 0) {
        free(files);
        return 1;
    }
    char *problems = NULL;
    int given = nfiles;
    int count = check_paths(files, &nfiles, &problems);
    if (!given || nfiles)
        count += sl_runtime_load_handlers(ctx.rt, nfiles ? (const char *const *)files : NULL,
                                          nfiles, &problems);
    char *names = sl_runtime_type_names(ctx.rt, ", ");
    int n = count_names(names);
    if (count == 0 && n == 0) {
        add_line(&problems, given ? files[0] : cfg->handler_dirs[0],
                 "no handler files found (handlers are <job_type>.lua)");
        count++;
    }

    if (json) {
        print_json(names, problems);
    } else if (count == 0) {
        printf("%d handler%s OK\n", n, n == 1 ? "" : "s");
    } else {
        fputs(problems, stdout);
        sl_cli_flush_stdout();
        fprintf(stderr, "sluice: %d problem%s found; %d handler%s OK\n", count,
                count == 1 ? "" : "s", n, n == 1 ? "" : "s");
    }
    free(names);
    free(problems);
    free(files);
    sl_queue_close(&ctx);
    return count > 0 ? 1 : 0;
}
