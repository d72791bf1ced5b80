/*
 * cli_competitors.c — `sluice competitors add|list|add-amazon-url`: the
 * competitors of a brand and their Amazon product pages, which the research job
 * types scrape (amazon_review_scrape takes a competitor_amazon_url_id). A thin
 * front for the SQL functions sluice.add_competitor and
 * sluice.add_competitor_amazon_url (schema/010_research.sql), which applications
 * may call directly.
 */
#include "buf.h"
#include "cli.h"
#include "table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice competitors add --brand NAME|UUID NAME [--facebook-page-id ID]\n"
                 "                              [--website URL] [--ad-library-url URL]\n"
                 "                              [--amazon-url URL]\n"
                 "       sluice competitors add-amazon-url COMPETITOR URL [--brand NAME|UUID]\n"
                 "       sluice competitors list [--brand NAME|UUID] [--json]\n\n"
                 "add             adds a competitor to a brand (or updates the given fields of\n"
                 "                the one with that name) and prints its id; --amazon-url also\n"
                 "                registers that product page\n"
                 "add-amazon-url  registers an Amazon product page of a competitor (given by id,\n"
                 "                or by name) and prints the id amazon_review_scrape takes as\n"
                 "                competitor_amazon_url_id; the ASIN and marketplace come from\n"
                 "                the URL (…/dp/ASIN, …/gp/product/ASIN)\n"
                 "list            competitors with their Amazon pages, review counts and when\n"
                 "                they were last scraped\n");
}

/* ---------------------------------------------------------------- add */

static int cmd_add(const struct sl_config *cfg, int argc, char **argv)
{
    const char *brand = NULL, *name = NULL;
    const char *fb = NULL, *web = NULL, *lib = NULL, *amazon = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "--brand") == 0)
            slot = &brand;
        else if (strcmp(a, "--facebook-page-id") == 0)
            slot = &fb;
        else if (strcmp(a, "--website") == 0)
            slot = &web;
        else if (strcmp(a, "--ad-library-url") == 0)
            slot = &lib;
        else if (strcmp(a, "--amazon-url") == 0)
            slot = &amazon;
        if (slot) {
            if (sl_cli_option_value(argc, argv, &i, "competitors add", NULL, slot) < 0) return 2;
        } else if (a[0] == '-') {
            sl_cli_error("competitors add: unknown option '%s' (see `sluice competitors --help`)",
                         a);
            return 2;
        } else if (!name) {
            name = a;
        } else {
            sl_cli_error("competitors add: unexpected argument '%s' (quote a name with spaces)", a);
            return 2;
        }
    }
    if (!brand || !name || !*name) {
        sl_cli_error("competitors add needs --brand and a NAME");
        return 2;
    }
    int failed;
    PGconn *c = sl_cli_connect(cfg, &failed);
    if (!c) return failed;
    const char *p[] = {brand, name, fb, web, lib, amazon};
    int status = 0;
    PGresult *r = sl_cli_exec_status(c, "SELECT sluice.add_competitor($1, $2, $3, $4, $5, $6)", 6,
                                     p, &status);
    if (r) {
        printf("%s\n", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(c);
    return status;
}

/* ---------------------------------------------------------------- add-amazon-url */

static int cmd_add_amazon_url(const struct sl_config *cfg, int argc, char **argv)
{
    const char *brand = NULL, *pos[2] = {NULL, NULL};
    int npos = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--brand") == 0) {
            if (sl_cli_option_value(argc, argv, &i, "competitors add-amazon-url", NULL, &brand) < 0)
                return 2;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            sl_cli_error("competitors add-amazon-url: unknown option '%s'", argv[i]);
            return 2;
        } else if (npos < 2) {
            pos[npos++] = argv[i];
        } else {
            sl_cli_error("competitors add-amazon-url: unexpected argument '%s'", argv[i]);
            return 2;
        }
    }
    if (npos != 2) {
        sl_cli_error("competitors add-amazon-url needs a COMPETITOR (id or name) and a URL");
        return 2;
    }
    int failed;
    PGconn *c = sl_cli_connect(cfg, &failed);
    if (!c) return failed;
    const char *p[] = {pos[0], brand, pos[1]};
    /* the new row is not visible to the statement that inserts it: its ASIN and
     * marketplace come from parsing the URL again */
    int status = 0;
    PGresult *r =
        sl_cli_exec_status(c,
                           "SELECT sluice.add_competitor_amazon_url(k.id, $3), u.asin, "
                           "u.domain_code, b.name FROM (SELECT sluice.resolve_competitor($1, $2) "
                           "AS id) k JOIN public.competitors c ON c.id = k.id "
                           "JOIN sluice.brands b ON b.id = c.brand_id, "
                           "sluice.parse_amazon_url($3) u",
                           3, p, &status);
    if (!r) {
        PQfinish(c);
        return status;
    }
    printf("%s\n", PQgetvalue(r, 0, 0));
    sl_buf brand_arg = {0};
    sl_cli_shell_quote(&brand_arg, PQgetvalue(r, 0, 3));
    fprintf(stderr,
            "ASIN %s on amazon.%s; scrape its reviews with\n"
            "  sluice queue amazon_review_scrape --brand %s --params "
            "'{\"competitor_amazon_url_id\": \"%s\"}'\n",
            PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), sl_buf_str(&brand_arg), PQgetvalue(r, 0, 0));
    sl_buf_free(&brand_arg);
    PQclear(r);
    PQfinish(c);
    return 0;
}

/* ---------------------------------------------------------------- list */

static const char list_sql[] =
    "SELECT c.id, b.name AS brand, c.name, "
    "  coalesce(json_agg((SELECT x FROM (SELECT u.id, u.asin, u.domain_code, u.amazon_url, "
    "    u.total_reviews_scraped, u.scrape_cost_estimate, u.last_scraped_at) x) "
    "    ORDER BY u.created_at) "
    "    FILTER (WHERE u.id IS NOT NULL), '[]') AS amazon_urls, "
    "  c.facebook_page_id, c.website_url, c.ad_library_url, c.last_scraped_at, c.ads_count "
    "FROM public.competitors c JOIN sluice.brands b ON b.id = c.brand_id "
    "LEFT JOIN public.competitor_amazon_urls u ON u.competitor_id = c.id "
    "WHERE $1::text IS NULL OR c.brand_id = sluice.resolve_brand($1) "
    "GROUP BY c.id, b.name ORDER BY b.name, c.name";

static int cmd_list(const struct sl_config *cfg, int argc, char **argv)
{
    const char *brand = NULL;
    int json = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--brand") == 0) {
            if (sl_cli_option_value(argc, argv, &i, "competitors list", NULL, &brand) < 0) return 2;
        } else {
            sl_cli_error("competitors list: unexpected argument '%s'", argv[i]);
            return 2;
        }
    }
    int failed;
    PGconn *c = sl_cli_connect(cfg, &failed);
    if (!c) return failed;
    const char *p[] = {brand};
    if (json) {
        char sql[sizeof list_sql + 256];
        snprintf(sql, sizeof sql,
                 "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY t.brand, t.name), '[]') "
                 "FROM (%s) t",
                 list_sql);
        int status = 0;
        PGresult *r = sl_cli_exec_status(c, sql, 1, p, &status);
        if (r) {
            printf("%s\n", PQgetvalue(r, 0, 0));
            PQclear(r);
        }
        PQfinish(c);
        return status;
    }
    char sql[sizeof list_sql + 512];
    snprintf(sql, sizeof sql,
             "SELECT t.id, t.brand, t.name, u->>'id', u->>'asin', u->>'domain_code', "
             "  u->>'total_reviews_scraped', "
             "  coalesce(to_char((u->>'last_scraped_at')::timestamptz, 'YYYY-MM-DD HH24:MI'), "
             "'never') "
             "FROM (%s) t LEFT JOIN LATERAL json_array_elements(t.amazon_urls) u ON true",
             list_sql);
    int status = 0;
    PGresult *r = sl_cli_exec_status(c, sql, 1, p, &status);
    if (!r) {
        PQfinish(c);
        return status;
    }
    if (PQntuples(r) == 0)
        fprintf(stderr, "no competitors yet: add one with "
                        "`sluice competitors add --brand BRAND NAME`\n");
    const char *last = "";
    for (int i = 0; i < PQntuples(r); i++) {
        if (strcmp(last, PQgetvalue(r, i, 0)) != 0) {
            /* a name is any text (a brand's from before brands_check_name too):
             * a control character shows as ^[, as in show */
            char *brand_name = sl_text_visible(PQgetvalue(r, i, 1), 0);
            char *name = sl_text_visible(PQgetvalue(r, i, 2), 0);
            printf("%s  %s  %s\n", PQgetvalue(r, i, 0), brand_name, name);
            free(brand_name);
            free(name);
            last = PQgetvalue(r, i, 0);
        }
        if (!PQgetisnull(r, i, 3))
            printf("    amazon %s  %s amazon.%s  %s reviews, last scraped %s\n",
                   PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 5),
                   PQgetvalue(r, i, 6), PQgetvalue(r, i, 7));
    }
    PQclear(r);
    PQfinish(c);
    return 0;
}

/* ---------------------------------------------------------------- entry */

int sl_cmd_competitors(const struct sl_config *cfg, int argc, char **argv)
{
    if (argc < 2 || sl_cli_wants_help(argc, argv)) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    int (*fn)(const struct sl_config *, int, char **) = NULL;
    if (strcmp(sub, "add") == 0)
        fn = cmd_add;
    else if (strcmp(sub, "add-amazon-url") == 0)
        fn = cmd_add_amazon_url;
    else if (strcmp(sub, "list") == 0)
        fn = cmd_list;
    if (!fn) {
        sl_cli_error("competitors: unknown subcommand '%s' (add, add-amazon-url or list)", sub);
        return 2;
    }
    return fn(cfg, argc, argv);
}
