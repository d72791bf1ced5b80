/*
 * cli_brands.c — `sluice brands add|list`: the brands jobs belong to.
 */
#include "cli.h"
#include "table.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice brands add NAME\n"
                 "       sluice brands [list] [--json]\n\n"
                 "A brand's name cannot start or end with white space, hold control\n"
                 "characters, start with '-', be \"(platform)\" or be a UUID.\n");
}

/* Why name cannot be a brand's, or NULL: the rule of sluice.brand_name_problem()
 * (schema/097_finite_run_at.sql), checked here before connecting. */
static const char *name_problem(const char *name)
{
    const unsigned char *s = (const unsigned char *)name;
    size_t n = strlen(name), i;
    for (i = 0; i < n && isspace(s[i]); i++)
        ;
    if (i == n) return "a brand's name cannot be empty or only spaces";
    if (isspace(s[0]) || isspace(s[n - 1]))
        return "a brand's name cannot start or end with white space";
    for (i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] == 0x7F || (s[i] == 0xC2 && i + 1 < n && s[i + 1] < 0xA0))
            return "a brand's name cannot contain control characters (new lines, tabs, escapes)";
    if (s[0] == '-') return "a brand's name cannot start with '-' (it would read as an option)";
    if (strcasecmp(name, "(platform)") == 0)
        return "a brand cannot be named (platform): that is how jobs without a brand are shown";
    int uuid = n == 36;
    for (i = 0; uuid && i < n; i++)
        uuid = i == 8 || i == 13 || i == 18 || i == 23 ? s[i] == '-' : isxdigit(s[i]) != 0;
    if (uuid) return "a brand's name cannot be a UUID (--brand takes a UUID as a brand's id)";
    return NULL;
}

int sl_cmd_brands(const struct sl_config *cfg, int argc, char **argv)
{
    if (sl_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    /* `sluice brands` and `sluice brands --json` list, as `jobs` and `runs` do */
    int implicit = argc < 2 || strcmp(argv[1], "--json") == 0;
    const char *sub = implicit ? "list" : argv[1];
    int first = implicit ? 1 : 2; /* the words after the subcommand */
    int json = 0;
    for (int i = first; i < argc; i++)
        if (strcmp(argv[i], "--json") == 0) json = 1;
    if (strcmp(sub, "add") == 0) {
        if (argc != 3) {
            sl_cli_error("brands add needs exactly one NAME");
            return 2;
        }
        const char *why = name_problem(argv[2]);
        if (why) {
            sl_cli_error("brands add: %s", why);
            return 2;
        }
    } else if (strcmp(sub, "list") == 0) {
        for (int i = first; i < argc; i++) {
            if (strcmp(argv[i], "--json") == 0) continue;
            sl_cli_error(argv[i][0] == '-'
                             ? "brands list: unknown option '%s' (see `sluice brands --help`)"
                             : "brands list: unexpected argument '%s'",
                         argv[i]);
            return 2;
        }
    } else {
        sl_cli_error("brands: unknown subcommand '%s' (add or list)", sub);
        return 2;
    }
    int failed;
    PGconn *c = sl_cli_connect(cfg, &failed);
    if (!c) return failed;
    int status = 0;
    if (strcmp(sub, "add") == 0) {
        const char *p[] = {argv[2]};
        PGresult *r = sl_cli_exec_status(c,
                                         "INSERT INTO sluice.brands (name) VALUES ($1) "
                                         "ON CONFLICT (name) DO UPDATE SET name = excluded.name "
                                         "RETURNING id, (xmax = 0) AS created",
                                         1, p, &status);
        if (r) {
            printf("%s\n", PQgetvalue(r, 0, 0));
            if (strcmp(PQgetvalue(r, 0, 1), "t") != 0)
                fprintf(stderr, "brand '%s' already exists\n", argv[2]);
            PQclear(r);
        }
    } else {
        PGresult *r = sl_cli_exec(
            c,
            json ? "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY name), '[]') FROM (SELECT id, "
                   "name, created_at FROM sluice.brands) t"
                 : "SELECT id, name FROM sluice.brands ORDER BY name",
            0, NULL);
        if (!r) {
            status = 1;
        } else if (json) {
            printf("%s\n", PQgetvalue(r, 0, 0));
            PQclear(r);
        } else {
            if (PQntuples(r) == 0)
                fprintf(stderr, "no brands yet: add one with `sluice brands add NAME`\n");
            /* a name from before brands_check_name may hold control characters:
             * shown as ^[, as show shows stored text */
            for (int i = 0; i < PQntuples(r); i++) {
                char *name = sl_text_visible(PQgetvalue(r, i, 1), 0);
                printf("%s  %s\n", PQgetvalue(r, i, 0), name);
                free(name);
            }
            PQclear(r);
        }
    }
    PQfinish(c);
    return status;
}
