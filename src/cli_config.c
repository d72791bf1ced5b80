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
    /* one row a setting, in sl_config_setting_at's order, the database URL
     * masked; the http_limit lines follow, one row each */
    sl_buf b = {0}, val = {0};
    const char *key = "config_file";
    sl_buf_puts(&val, cfg->config_file ? cfg->config_file : "(none)");
    for (size_t i = 0; key; sl_buf_reset(&val), key = sl_config_setting_at(cfg, i++, &val)) {
        if (strcmp(key, "http_limit") == 0) continue;
        const char *v = strcmp(key, "db") == 0 ? db : sl_buf_str(&val);
        if (!json) {
            printf("%-24s %s\n", key, v);
            continue;
        }
        sl_buf_puts(&b, b.len ? "," : "{");
        sl_buf_json_string(&b, key);
        sl_buf_puts(&b, ":");
        sl_buf_json_string(&b, v);
    }
    sl_buf_free(&val);
    /* the http_limit lines of the config file, in order (later lines win) */
    if (json) sl_buf_puts(&b, ",\"http_limit\":[");
    for (int i = 0; i < cfg->n_http_limits; i++) {
        if (!json) {
            printf("%-24s %s\n", "http_limit", cfg->http_limits[i]);
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
