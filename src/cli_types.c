/*
 * cli_types.c — `sluice types [TYPE] [--json]`: the job-type registry as the
 * handler files declare it (the Pipeline Manager's JOB_TYPE_INFO and
 * DATASET_LABELS): emoji, label, brand rule, default parameters, datasets with
 * their max age; with a TYPE, its parameter schema too. Reads the handlers, not
 * the database.
 *
 * The registry arrives from the Lua side as JSON (sl_runtime_registry_json); a
 * small reader below turns it into a tree, which is printed as a table or
 * written back as JSON with object keys sorted (stable output).
 */
#include "buf.h"
#include "cli.h"
#include "config.h"
#include "ctx.h"
#include "queue.h"
#include "runtime.h"
#include "table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ JSON tree */

typedef enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ } jkind;

typedef struct jv {
    jkind kind;
    char *s;         /* J_STR: the decoded string; J_NUM: the number's text */
    size_t n;        /* J_ARR / J_OBJ: number of items */
    struct jv *item; /* items */
    char **key;      /* J_OBJ: their keys */
} jv;

static void jv_free(jv *v)
{
    for (size_t i = 0; i < v->n; i++) {
        jv_free(&v->item[i]);
        if (v->key) free(v->key[i]);
    }
    free(v->item);
    free(v->key);
    free(v->s);
    memset(v, 0, sizeof *v);
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* A string literal at *pp (at the opening quote); the decoded text, or NULL. */
static char *parse_string(const char **pp)
{
    const char *p = *pp + 1;
    sl_buf b = {0};
    sl_buf_add(&b, "", 0);
    while (*p && *p != '"') {
        if (*p != '\\') {
            sl_buf_add(&b, p++, 1);
            continue;
        }
        p++;
        char c = *p++;
        long u, lo;
        char u8[4];
        switch (c) {
        case 'b':
            sl_buf_add(&b, "\b", 1);
            break;
        case 'f':
            sl_buf_add(&b, "\f", 1);
            break;
        case 'n':
            sl_buf_add(&b, "\n", 1);
            break;
        case 'r':
            sl_buf_add(&b, "\r", 1);
            break;
        case 't':
            sl_buf_add(&b, "\t", 1);
            break;
        case 'u':
            if ((u = sl_hex4(p, strnlen(p, 4))) < 0) goto bad;
            p += 4;
            if (u >= 0xD800 && u < 0xDC00 && p[0] == '\\' && p[1] == 'u' &&
                (lo = sl_hex4(p + 2, strnlen(p + 2, 4))) >= 0xDC00 && lo < 0xE000) {
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            sl_buf_add(&b, u8, sl_utf8_put(u8, (unsigned long)u));
            break;
        case '"':
        case '\\':
        case '/':
            sl_buf_add(&b, &c, 1);
            break;
        default:
            goto bad;
        }
    }
    if (*p != '"') goto bad;
    *pp = p + 1;
    return b.data;
bad:
    sl_buf_free(&b);
    return NULL;
}

static int parse_value(const char **pp, jv *out, int depth);

static int parse_items(const char **pp, jv *out, int depth, int object)
{
    const char *p = skip_ws(*pp + 1);
    size_t cap = 0;
    char close = object ? '}' : ']';
    if (*p == close) {
        *pp = p + 1;
        return 0;
    }
    for (;;) {
        char *key = NULL;
        if (object) {
            if (*p != '"' || !(key = parse_string(&p))) return -1;
            p = skip_ws(p);
            if (*p++ != ':') {
                free(key);
                return -1;
            }
        }
        if (out->n == cap) {
            cap = cap ? cap * 2 : 8;
            out->item = sl_xrealloc(out->item, cap * sizeof *out->item);
            if (object) out->key = sl_xrealloc(out->key, cap * sizeof *out->key);
        }
        memset(&out->item[out->n], 0, sizeof out->item[0]);
        if (object) out->key[out->n] = key;
        out->n++;
        if (parse_value(&p, &out->item[out->n - 1], depth + 1) < 0) return -1;
        p = skip_ws(p);
        if (*p == ',') {
            p = skip_ws(p + 1);
            continue;
        }
        if (*p != close) return -1;
        *pp = p + 1;
        return 0;
    }
}

static int parse_value(const char **pp, jv *out, int depth)
{
    const char *p = skip_ws(*pp);
    if (depth > 200) return -1;
    if (*p == '{' || *p == '[') {
        out->kind = *p == '{' ? J_OBJ : J_ARR;
        *pp = p;
        return parse_items(pp, out, depth, out->kind == J_OBJ);
    }
    if (*p == '"') {
        out->kind = J_STR;
        if (!(out->s = parse_string(&p))) return -1;
    } else if (strncmp(p, "null", 4) == 0) {
        out->kind = J_NULL;
        p += 4;
    } else if (strncmp(p, "true", 4) == 0) {
        out->kind = J_TRUE;
        p += 4;
    } else if (strncmp(p, "false", 5) == 0) {
        out->kind = J_FALSE;
        p += 5;
    } else {
        const char *start = p;
        while (*p && strchr("+-0123456789.eE", *p))
            p++;
        if (p == start) return -1;
        out->kind = J_NUM;
        out->s = sl_xstrndup(start, (size_t)(p - start));
    }
    *pp = p;
    return 0;
}

static int jv_parse(const char *text, jv *out)
{
    const char *p = text;
    memset(out, 0, sizeof *out);
    if (parse_value(&p, out, 0) < 0 || *skip_ws(p) != '\0') {
        jv_free(out);
        return -1;
    }
    return 0;
}

static const jv *jv_get(const jv *o, const char *key)
{
    if (!o || o->kind != J_OBJ) return NULL;
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->key[i], key) == 0) return &o->item[i];
    return NULL;
}

static const char *jv_str(const jv *o, const char *key)
{
    const jv *v = jv_get(o, key);
    return v && (v->kind == J_STR || v->kind == J_NUM) ? v->s : NULL;
}

static double jv_num(const jv *o, const char *key, double dflt)
{
    const jv *v = jv_get(o, key);
    return v && v->kind == J_NUM ? strtod(v->s, NULL) : dflt;
}

/* Indexes of an object's keys in byte order. Caller frees. */
static size_t *sorted_index(const jv *o)
{
    size_t *ix = sl_xmalloc((o->n ? o->n : 1) * sizeof *ix);
    for (size_t i = 0; i < o->n; i++)
        ix[i] = i;
    for (size_t i = 1; i < o->n; i++) /* insertion sort: objects are small */
        for (size_t j = i; j > 0 && strcmp(o->key[ix[j - 1]], o->key[ix[j]]) > 0; j--) {
            size_t t = ix[j];
            ix[j] = ix[j - 1];
            ix[j - 1] = t;
        }
    return ix;
}

/* Compact JSON with object keys sorted. */
static void jv_write(sl_buf *b, const jv *v)
{
    switch (v->kind) {
    case J_NULL:
        sl_buf_puts(b, "null");
        break;
    case J_FALSE:
        sl_buf_puts(b, "false");
        break;
    case J_TRUE:
        sl_buf_puts(b, "true");
        break;
    case J_NUM:
        sl_buf_puts(b, v->s);
        break;
    case J_STR:
        sl_buf_json_string(b, v->s);
        break;
    case J_ARR:
        sl_buf_puts(b, "[");
        for (size_t i = 0; i < v->n; i++) {
            if (i) sl_buf_puts(b, ",");
            jv_write(b, &v->item[i]);
        }
        sl_buf_puts(b, "]");
        break;
    case J_OBJ: {
        size_t *ix = sorted_index(v);
        sl_buf_puts(b, "{");
        for (size_t i = 0; i < v->n; i++) {
            if (i) sl_buf_puts(b, ",");
            sl_buf_json_string(b, v->key[ix[i]]);
            sl_buf_puts(b, ":");
            jv_write(b, &v->item[ix[i]]);
        }
        sl_buf_puts(b, "}");
        free(ix);
        break;
    }
    }
}

/* A value for people: strings bare, the rest as compact JSON. */
static void jv_show(sl_buf *b, const jv *v)
{
    if (v->kind == J_STR)
        sl_buf_puts(b, v->s);
    else
        jv_write(b, v);
}

/* ------------------------------------------------------------------ output */

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice types [TYPE] [--json]\n\n"
                 "Lists the job types the handler files declare: emoji, name, label, brand\n"
                 "rule, default parameters, and the datasets each keeps fresh with their\n"
                 "max age. With TYPE, also its parameters. Reads the handlers (--handlers /\n"
                 "$SLUICE_HANDLERS), not the database.\n\n"
                 "  --json   the registry as JSON: an array of {name, label, emoji,\n"
                 "           description, brand_rule, default_params, param_schema,\n"
                 "           timeout_seconds, max_retries, retry_base_seconds,\n"
                 "           retry_max_seconds, file, version, datasets: {key: {label,\n"
                 "           max_age_seconds}}}, sorted by name\n");
}

/* "max_posts=500, timeframe=month" for an object of values. */
static void show_pairs(sl_buf *b, const jv *o)
{
    if (!o || o->kind != J_OBJ) return;
    size_t *ix = sorted_index(o);
    for (size_t i = 0; i < o->n; i++) {
        sl_buf_printf(b, "%s%s=", i ? ", " : "", o->key[ix[i]]);
        jv_show(b, &o->item[ix[i]]);
    }
    free(ix);
}

/* "Echo Data [echo_data, 1h], …" */
static void show_datasets(sl_buf *b, const jv *ds)
{
    if (!ds || ds->kind != J_OBJ) return;
    size_t *ix = sorted_index(ds);
    for (size_t i = 0; i < ds->n; i++) {
        const jv *d = &ds->item[ix[i]];
        const char *label = jv_str(d, "label");
        double age = jv_num(d, "max_age_seconds", 0);
        sl_buf_printf(b, "%s%s [%s", i ? ", " : "", label ? label : ds->key[ix[i]], ds->key[ix[i]]);
        if (age > 0) {
            char dur[32];
            sl_fmt_duration(age, dur, sizeof dur);
            sl_buf_printf(b, ", %s", dur);
        }
        sl_buf_puts(b, "]");
    }
    free(ix);
}

static void print_types(const jv *types, const sl_term *term)
{
    static const sl_table_col cols[] = {
        {"TYPE", SL_ALIGN_LEFT, 0},
        {"LABEL", SL_ALIGN_LEFT, 10},
        {"BRAND", SL_ALIGN_LEFT, 0},
        {"DEFAULT PARAMS", SL_ALIGN_LEFT, 14},
        {"DATASETS (MAX AGE)", SL_ALIGN_LEFT, 18},
        {"TIMEOUT", SL_ALIGN_RIGHT, 0},
        {"RETRIES", SL_ALIGN_RIGHT, 0},
    };
    sl_table *t = sl_table_new(cols, 7);
    for (size_t i = 0; i < types->n; i++) {
        const jv *ty = &types->item[i];
        const char *emoji = jv_str(ty, "emoji"), *name = jv_str(ty, "name");
        sl_buf b = {0};
        sl_buf_printf(&b, "%s%s%s", emoji && *emoji ? emoji : "", emoji && *emoji ? " " : "",
                      name ? name : "");
        sl_table_add(t, sl_buf_str(&b), SL_COLOR_NONE);
        sl_table_add(t, jv_str(ty, "label"), SL_COLOR_NONE);
        sl_table_add(t, jv_str(ty, "brand_rule"), SL_COLOR_NONE);
        sl_buf_reset(&b);
        show_pairs(&b, jv_get(ty, "default_params"));
        sl_table_add(t, sl_buf_str(&b), SL_COLOR_NONE);
        sl_buf_reset(&b);
        show_datasets(&b, jv_get(ty, "datasets"));
        sl_table_add(t, sl_buf_str(&b), SL_COLOR_NONE);
        char dur[32];
        sl_fmt_duration(jv_num(ty, "timeout_seconds", 0), dur, sizeof dur);
        sl_table_add(t, dur, SL_COLOR_NONE);
        sl_table_add(t, jv_str(ty, "max_retries"), SL_COLOR_NONE);
        sl_buf_free(&b);
    }
    sl_table_print(t, stdout, term);
    sl_table_free(t);
}

/* The rules of one parameter spec for people: "1…10000", "one of: a, b", … */
static void show_rules(sl_buf *b, const jv *spec)
{
    static const char *const keys[] = {"min",       "max",       "min_length", "max_length",
                                       "min_items", "max_items", "pattern",    NULL};
    const char *sep = "";
    for (int i = 0; keys[i]; i++) {
        const jv *v = jv_get(spec, keys[i]);
        if (!v) continue;
        const char *op = strncmp(keys[i], "min", 3) == 0 ? ">=" : "<=";
        if (strcmp(keys[i], "min") == 0 && jv_get(spec, "exclusive_min")) op = ">";
        if (strcmp(keys[i], "max") == 0 && jv_get(spec, "exclusive_max")) op = "<";
        if (strcmp(keys[i], "pattern") == 0)
            sl_buf_printf(b, "%spattern %s", sep, v->s);
        else if (strchr(keys[i], '_'))
            sl_buf_printf(b, "%s%s %s %s", sep, strchr(keys[i], '_') + 1, op, v->s);
        else
            sl_buf_printf(b, "%s%s %s", sep, op, v->s);
        sep = ", ";
    }
    const jv *e = jv_get(spec, "enum");
    if (e && e->kind == J_ARR) {
        sl_buf_printf(b, "%sone of ", sep);
        for (size_t i = 0; i < e->n; i++) {
            if (i) sl_buf_puts(b, "|");
            jv_show(b, &e->item[i]);
        }
        sep = ", ";
    }
    const jv *jt = jv_get(spec, "nullable");
    if (jt && jt->kind == J_TRUE) sl_buf_printf(b, "%snullable", sep);
}

static void print_params(const jv *ty, const sl_term *term)
{
    const jv *schema = jv_get(ty, "param_schema");
    if (!schema || schema->kind != J_OBJ || schema->n == 0) {
        printf("\nno parameters\n");
        return;
    }
    printf("\nparameters\n");
    static const sl_table_col cols[] = {
        {"PARAM", SL_ALIGN_LEFT, 0},    {"TYPE", SL_ALIGN_LEFT, 0},
        {"REQUIRED", SL_ALIGN_LEFT, 0}, {"DEFAULT", SL_ALIGN_LEFT, 10},
        {"RULES", SL_ALIGN_LEFT, 10},   {"DESCRIPTION", SL_ALIGN_LEFT, 12},
    };
    sl_table *t = sl_table_new(cols, 6);
    size_t *ix = sorted_index(schema);
    for (size_t i = 0; i < schema->n; i++) {
        const jv *spec = &schema->item[ix[i]];
        sl_buf b = {0};
        sl_table_add(t, schema->key[ix[i]], SL_COLOR_NONE);
        const char *type = jv_str(spec, "type");
        const jv *items = jv_get(spec, "items");
        if (items && jv_str(items, "type"))
            sl_buf_printf(&b, "%s of %s", type, jv_str(items, "type"));
        else
            sl_buf_puts(&b, type ? type : "");
        sl_table_add(t, sl_buf_str(&b), SL_COLOR_NONE);
        const jv *req = jv_get(spec, "required");
        sl_table_add(t, req && req->kind == J_TRUE ? "yes" : "", SL_COLOR_NONE);
        sl_buf_reset(&b);
        const jv *d = jv_get(spec, "default");
        if (d) jv_show(&b, d);
        sl_table_add(t, sl_buf_str(&b), SL_COLOR_NONE);
        sl_buf_reset(&b);
        show_rules(&b, spec);
        sl_table_add(t, sl_buf_str(&b), SL_COLOR_NONE);
        sl_table_add(t, jv_str(spec, "description"), SL_COLOR_NONE);
        sl_buf_free(&b);
    }
    free(ix);
    sl_table_print(t, stdout, term);
    sl_table_free(t);
}

/* The lines of problems (one per line, "path: message") that are about the
 * handler file of job type `name` (…/name.lua), or about no file but a handler
 * directory (name NULL: lines saying "cannot open the handler directory"),
 * each as "  line\n"; "" when none. Caller frees. */
static char *problems_about(const char *problems, const char *name)
{
    static const char dir_problem[] = ": cannot open the handler directory";
    sl_buf b = {0};
    sl_buf_puts(&b, "");
    for (const char *p = problems ? problems : ""; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char *line = sl_xstrndup(p, n);
        int about;
        if (!name) {
            about = strstr(line, dir_problem) != NULL;
        } else {
            char file[300];
            snprintf(file, sizeof file, "/%s.lua: ", name);
            about = strstr(line, file) != NULL || strstr(line, file + 1) == line;
        }
        if (about) {
            sl_buf_puts(&b, "  ");
            sl_buf_puts(&b, line);
            sl_buf_puts(&b, "\n");
        }
        free(line);
        p = nl ? nl + 1 : p + n;
    }
    char *out = sl_xstrdup(sl_buf_str(&b));
    sl_buf_free(&b);
    return out;
}

int sl_cmd_types(const sl_config *cfg, int argc, char **argv)
{
    int json = 0;
    const char *only = NULL;
    if (sl_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (argv[i][0] == '-') {
            sl_cli_error("types: unknown option '%s' (see `sluice types --help`)", argv[i]);
            return 2;
        } else if (!only) {
            only = argv[i];
        } else {
            sl_cli_error("types: unexpected argument '%s'", argv[i]);
            return 2;
        }
    }
    sl_ctx ctx;
    if (sl_queue_open(&ctx, cfg, SL_ECHO_NONE) < 0) return 1;
    int status = 0;
    char *problems = NULL, *reg = NULL;
    jv types = {0};
    int nproblems = sl_runtime_load_handlers(ctx.rt, NULL, 0, &problems);
    if (only) {
        char *err = sl_runtime_validate(ctx.rt, only, "{}", NULL, 0);
        if (err && strncmp(err, "unknown job type", 16) == 0) {
            sl_cli_error("%s", err);
            free(err);
            status = 2;
            goto out;
        }
        free(err);
    }
    reg = sl_runtime_registry_json(ctx.rt);
    if (!reg || jv_parse(reg, &types) < 0 || types.kind != J_ARR) {
        sl_cli_error("cannot read the handler registry");
        status = 1;
        goto out;
    }
    /* keep the loaded types (the registry also names files that failed to load),
     * or only the asked-for one */
    size_t kept = 0;
    for (size_t i = 0; i < types.n; i++) {
        const char *name = jv_str(&types.item[i], "name");
        int failed = jv_get(&types.item[i], "failed") != NULL;
        int asked = !only || (name && strcmp(name, only) == 0);
        if (asked && !failed)
            types.item[kept++] = types.item[i];
        else
            jv_free(&types.item[i]);
    }
    types.n = kept;
    if (only && types.n == 0) {
        /* its file is there but did not load: say so, not "no handler files" */
        char *why = problems_about(problems, only);
        size_t n = strlen(why);
        if (n) why[n - 1] = '\0'; /* the last line's new line: sl_cli_error ends it */
        sl_cli_error("types: job type '%s' is not available: its handler file failed to load "
                     "(see `sluice check`)%s%s",
                     only, *why ? ":\n" : "", why);
        free(why);
        status = 2;
        goto out;
    }
    char *unreadable = types.n == 0 ? problems_about(problems, NULL) : NULL;
    if (unreadable && *unreadable) {
        unreadable[strlen(unreadable) - 1] = '\0';
        sl_cli_error("types: no job types: a handler directory cannot be read:\n%s", unreadable);
        free(unreadable);
        status = 2;
        goto out;
    }
    free(unreadable);
    if (json) {
        sl_buf b = {0};
        jv_write(&b, &types);
        printf("%s\n", sl_buf_str(&b));
        sl_buf_free(&b);
    } else if (types.n == 0) {
        if (nproblems > 0)
            fprintf(stderr, "no job types: no handler file loaded\n");
        else
            fprintf(stderr,
                    "no job types: no handler files were found in the handler directories\n");
    } else {
        sl_term term = sl_term_for(stdout);
        print_types(&types, &term);
        if (only) {
            const char *desc = jv_str(&types.item[0], "description");
            if (desc) printf("\n%s\n", desc);
            print_params(&types.item[0], &term);
        }
    }
    if (nproblems > 0)
        fprintf(stderr,
                "note: %d problem%s in handler files kept some types out: see `sluice check`\n",
                nproblems, nproblems == 1 ? "" : "s");
out:
    jv_free(&types);
    free(reg);
    free(problems);
    sl_queue_close(&ctx);
    return status;
}
