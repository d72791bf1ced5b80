/*
 * tz_links.c — which zone names are one zone: the links of the IANA time zone
 * database, so that "UTC", "Zulu" and "Etc/UTC", or "US/Eastern" and
 * "America/New_York", are known as one zone (`sluice schedule` makes a schedule
 * once, whichever of them it is given).
 *
 * The database says so itself: tzdata.zi, in the zoneinfo directory, lists each
 * link as a line "L TARGET NAME". The files alone cannot say it: a packager may
 * install a link as a symbolic link, a hard link or a copy, and a copy cannot be
 * told from a zone whose rules happen to be alike. So tzdata.zi is read when it
 * is there; without it, only names that are one file (symbolic or hard links:
 * one device and inode) are one zone, and copies stay apart. Two zones the
 * database has as zones are never one, however alike their rules.
 */
#include "buf.h"
#include "tz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SL_TZ_WALK_DEPTH 8 /* zoneinfo is two or three levels deep */

typedef struct {
    char **v;
    size_t n, cap;
} name_list;

static int has(const name_list *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0) return 1;
    return 0;
}

static void add(name_list *l, const char *s)
{
    if (has(l, s)) return;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = sl_xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = sl_xstrdup(s);
}

static void list_free(name_list *l)
{
    sl_tz_names_free(l->v, l->n);
    *l = (name_list){0};
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ------------------------------------------------------------------ tzdata.zi */

/* The links of tzdata.zi at path: targets[i] is what names[i] links to. 0, or
 * -1 when the file cannot be opened. */
static int read_links(const char *path, name_list *targets, name_list *names)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) >= 0) {
        char target[256], name[256];
        if (line[0] != 'L' || sscanf(line, "L %255s %255s", target, name) != 2) continue;
        /* by index, not add(): a name appears once, targets repeat */
        if (targets->n == targets->cap) {
            targets->cap = names->cap = targets->cap ? targets->cap * 2 : 64;
            targets->v = sl_xrealloc(targets->v, targets->cap * sizeof *targets->v);
            names->v = sl_xrealloc(names->v, names->cap * sizeof *names->v);
        }
        targets->v[targets->n++] = sl_xstrdup(target);
        names->v[names->n++] = sl_xstrdup(name);
    }
    free(line);
    fclose(f);
    return 0;
}

/* The zone name leads to through links (itself when it is none). Links in a
 * cycle, which zic refuses, lead nowhere: each is left as itself. */
static const char *resolve(const name_list *targets, const name_list *names, const char *name)
{
    const char *at = name;
    for (size_t step = 0; step <= names->n; step++) {
        size_t i = 0;
        while (i < names->n && strcmp(names->v[i], at) != 0)
            i++;
        if (i == names->n) return at;
        at = targets->v[i];
    }
    return name;
}

/* name's zone and every link that leads to it, from tzdata.zi. */
static void same_by_links(const name_list *targets, const name_list *names, const char *name,
                          name_list *out)
{
    const char *zone = resolve(targets, names, name);
    add(out, zone);
    for (size_t i = 0; i < names->n; i++)
        if (strcmp(resolve(targets, names, names->v[i]), zone) == 0) add(out, names->v[i]);
}

/* ------------------------------------------------------------------ files */

/* Every name under dir/rel (rel "" for dir itself) whose file is the file of
 * (dev, ino). Only real directories are entered (posix/ is often a symbolic
 * link back to the top), so the walk ends; "localtime" and "posixrules" name the
 * machine's settings, not zones, and are left out. */
static void walk(const char *dir, const char *rel, int depth, const struct stat *want,
                 name_list *out)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s%s%s", dir, *rel ? "/" : "", rel) >= sizeof path)
        return;
    DIR *d = opendir(path);
    if (!d) return;
    const struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (!*rel && (strcmp(e->d_name, "localtime") == 0 || strcmp(e->d_name, "posixrules") == 0))
            continue;
        char sub[1024], full[4096];
        if ((size_t)snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name) >=
                sizeof sub ||
            (size_t)snprintf(full, sizeof full, "%s/%s", path, e->d_name) >= sizeof full)
            continue;
        struct stat ls, st;
        if (lstat(full, &ls) < 0) continue;
        if (S_ISDIR(ls.st_mode)) {
            if (depth < SL_TZ_WALK_DEPTH) walk(dir, sub, depth + 1, want, out);
        } else if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == want->st_dev &&
                   st.st_ino == want->st_ino) {
            add(out, sub);
        }
    }
    closedir(d);
}

/* ------------------------------------------------------------------ names */

/* name's names into out: from tzdata.zi's links when it was read (have_zi),
 * else from the files under dir. */
static void same_names(const char *dir, int have_zi, const name_list *targets,
                       const name_list *linked, const char *name, name_list *out)
{
    char path[4096];
    struct stat st;
    add(out, name);
    if (have_zi)
        same_by_links(targets, linked, name, out);
    else if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) < sizeof path &&
             stat(path, &st) == 0 && S_ISREG(st.st_mode))
        walk(dir, "", 0, &st, out);
}

int sl_tz_same_zone(const char *dir, const char *name, char ***names, size_t *n, char *err,
                    size_t errlen)
{
    *names = NULL;
    *n = 0;
    if (!name || !sl_tz_valid_name(name)) {
        sl_seterr(err, errlen, "invalid time zone name \"%s\"", name ? name : "");
        return -1;
    }
    if (!dir || !*dir) dir = getenv("TZDIR");
    if (!dir || !*dir) dir = SL_TZ_DEFAULT_DIR;
    name_list out = {0}, targets = {0}, linked = {0};
    char path[4096];
    int have_zi = (size_t)snprintf(path, sizeof path, "%s/tzdata.zi", dir) < sizeof path &&
                  read_links(path, &targets, &linked) == 0;
    same_names(dir, have_zi, &targets, &linked, name, &out);
    /* UTC and Etc/UTC are both built in (tz.c), whatever the directory holds:
     * one zone, with the names of either */
    if (has(&out, "UTC") || has(&out, "Etc/UTC")) {
        same_names(dir, have_zi, &targets, &linked, "UTC", &out);
        same_names(dir, have_zi, &targets, &linked, "Etc/UTC", &out);
    }
    list_free(&targets);
    list_free(&linked);
    qsort(out.v, out.n, sizeof *out.v, by_name);
    *names = out.v;
    *n = out.n;
    return 0;
}

void sl_tz_names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}
