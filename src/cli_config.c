/*
 * cli_config.c — `sluice config`: the settings in effect after flags, the
 * environment and the config file, with where the file is and secrets masked.
 */
#include "buf.h"
#include "cli.h"
#include "config.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sl_cmd_config(const sl_config *cfg, int argc, char **argv)
{
    if (sl_cli_wants_help(argc, argv)) {
        printf("usage: sluice config [--json]\n\n"
               "Prints the settings in effect (flags > environment > config file),\n"
               "the config file's http_limit lines included.\n");
        return 0;
    }
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else {
            sl_cli_error(argv[i][0] == '-'
                             ? "config: unknown option '%s' (see `sluice config --help`)"
                             : "config: unexpected argument '%s'",
                         argv[i]);
            return 2;
        }
    }
    char *db = cfg->db_url ? sl_redact(cfg->db_url) /* user:[redacted]@, password=[redacted] */
                           : sl_xstrdup("(embedded cluster under home)");
    char handlers[4096] = "", lua[4096] = "";
    for (int i = 0; i < cfg->n_handler_dirs; i++)
        snprintf(handlers + strlen(handlers), sizeof handlers - strlen(handlers), "%s%s",
                 i ? ":" : "", cfg->handler_dirs[i]);
    for (int i = 0; i < cfg->n_lua_dirs; i++)
        snprintf(lua + strlen(lua), sizeof lua - strlen(lua), "%s%s", i ? ":" : "",
                 cfg->lua_dirs[i]);
    struct {
        const char *key;
        char val[4200];
    } rows[16];
    int n = 0;
#define ROW(k, ...) (rows[n].key = k, snprintf(rows[n].val, sizeof rows[n].val, __VA_ARGS__), n++)
#define NUMBER_ROW(k, v)                                                                           \
    (rows[n].key = (k), sl_config_fmt_number((v), rows[n].val, sizeof rows[n].val), n++)
    ROW("config_file", "%s", cfg->config_file ? cfg->config_file : "(none)");
    ROW("db", "%s", db);
    ROW("home", "%s", cfg->home);
    ROW("handlers", "%s", handlers);
    ROW("lua", "%s", lua);
    const char *key;
    double v;
    for (size_t i = 0; (key = sl_config_number_at(cfg, i, &v)); i++)
        NUMBER_ROW(key, v);
    ROW("log_format", "%s", cfg->log_format == SL_LOG_JSON ? "json" : "logfmt");
    ROW("log_level", "%s", (const char *[]){"debug", "info", "warn", "error"}[cfg->log_level & 3]);
#undef ROW
#undef NUMBER_ROW
    sl_buf b = {0};
    for (int i = 0; i < n; i++) {
        if (!json) {
            printf("%-20s %s\n", rows[i].key, rows[i].val);
            continue;
        }
        sl_buf_puts(&b, i ? "," : "{");
        sl_buf_json_string(&b, rows[i].key);
        sl_buf_puts(&b, ":");
        sl_buf_json_string(&b, rows[i].val);
    }
    /* the http_limit lines of the config file, in order (later lines win) */
    if (json) sl_buf_puts(&b, ",\"http_limit\":[");
    for (int i = 0; i < cfg->n_http_limits; i++) {
        if (!json) {
            printf("%-20s %s\n", "http_limit", cfg->http_limits[i]);
            continue;
        }
        if (i) sl_buf_puts(&b, ",");
        sl_buf_json_string(&b, cfg->http_limits[i]);
    }
    if (json) printf("%s]}\n", sl_buf_str(&b));
    sl_buf_free(&b);
    free(db);
    return 0;
}
