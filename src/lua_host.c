/*
 * lua_host.c — the lua_State (its allocator and memory cap are lua_alloc.c's),
 * the C modules, the trusted host script (lua/sluice/runtime.lua) that builds
 * sandboxes and the handler registry, and loading handler files and Lua
 * libraries from disk or from the copies compiled into the binary.
 *
 * Module list: every C module is registered from the one table `drivers` below;
 * runtime.lua receives them and decides what handlers see.
 */
#include "buf.h"
#include "config.h"
#include "ctx.h"
#include "embed.h"
#include "json.h"
#include "log.h"
#include "runtime_int.h"

#include <dirent.h>
#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char runtime_key; /* registry: the sl_runtime light userdata */
static char host_key;    /* registry: the table runtime.lua returned */
static char ctx_key;     /* registry: the sl_ctx light userdata */
static char errerr_key;  /* registry: Lua's "error in error handling", kept (sl_runtime_new) */

static const luaL_Reg drivers[] = {
    {"core", luaopen_sluice_core},
    {"db", luaopen_sluice_db},
    {"http", luaopen_sluice_http},
    {"spawn", luaopen_sluice_spawn},
    {"files", luaopen_sluice_files},
    {"repl", luaopen_sluice_repl},
    {"pattern", luaopen_sluice_pattern},
    {"bounded", luaopen_sluice_bounded},
    {"cjson", luaopen_cjson},
    {NULL, NULL},
};

sl_runtime *sl_runtime_of(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &runtime_key);
    sl_runtime *rt = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return rt;
}

sl_ctx *sl_ctx_from_lua(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ctx_key);
    sl_ctx *ctx = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!ctx) luaL_error(L, "sluice context missing");
    return ctx;
}

/* ------------------------------------------------------------------ files */

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* 64-bit FNV-1a of the file's bytes: the handler version recorded on each run. */
static void content_hash(const char *s, size_t n, char out[17])
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* push_source(text, len) → the text as a Lua string (text: light userdata). */
static int push_source(lua_State *L)
{
    lua_pushlstring(L, lua_touserdata(L, 1), (size_t)lua_tointeger(L, 2));
    return 1;
}

/* read_module(name) → source, chunkname | nil, message.
 * Library roots: --lua dirs, the source tree's lua/ (if present), then the copies
 * compiled into the binary. "sluice.params" → "sluice/params.lua". */
static int l_read_module(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    sl_runtime *rt = sl_runtime_of(L);
    char rel[512], path[4096];
    size_t n = strlen(name);
    if (n == 0 || n > 200 || strstr(name, "..")) return luaL_error(L, "bad module name '%s'", name);
    snprintf(rel, sizeof rel, "%s", name);
    for (char *p = rel; *p; p++)
        if (*p == '.') *p = '/';
    strncat(rel, ".lua", sizeof rel - strlen(rel) - 1);
    const sl_config *cfg = rt->ctx->cfg;
    for (int i = 0; cfg && i <= cfg->n_lua_dirs; i++) {
        const char *root = i < cfg->n_lua_dirs ? cfg->lua_dirs[i] : SLUICE_SOURCE_DIR "/lua";
        snprintf(path, sizeof path, "%s/%s", root, rel);
        size_t len;
        char *src = sl_read_source(path, SL_SOURCE_MAX, &len);
        if (src) {
            /* the copy may be refused (the cap, while a handler file loads): in a
             * protected call, so that src is freed either way */
            lua_pushcfunction(L, push_source);
            lua_pushlightuserdata(L, src);
            lua_pushinteger(L, (lua_Integer)len);
            int st = lua_pcall(L, 2, 1, 0);
            free(src);
            if (st != LUA_OK) return lua_error(L);
            lua_pushfstring(L, "@%s", path);
            return 2;
        }
    }
    snprintf(path, sizeof path, "lua/%s", rel);
    const sl_embedded_file *f = sl_embedded_find(path);
    if (f) {
        lua_pushlstring(L, f->data, f->len);
        lua_pushfstring(L, "@%s", path);
        return 2;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "module '%s' not found", name);
    return 2;
}

/* ------------------------------------------------------------------ host calls */

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

void sl_host_push(lua_State *L, const char *name)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &host_key);
    lua_getfield(L, -1, name); /* the host table has no metatable: nothing runs */
    lua_remove(L, -2);
}

#define GUARD_EVERY 1000 /* instructions between the guard's counts */

static void guard_hook(lua_State *L, lua_Debug *ar);

/* The guarded code's budget is spent: raises now, and from then on on every
 * line and instruction (pcall cannot hold it). */
static void guard_spent(lua_State *L)
{
    lua_sethook(L, guard_hook, LUA_MASKLINE | LUA_MASKCOUNT, 1);
    luaL_error(L, "instruction budget exceeded: ran too long without yielding (a loop that "
                  "never ends?)");
}

/* Charges the guard's budget, or, in a coroutine made under a guard (a handler
 * file's top level keeps this hook) resumed later by a run, the run's: it is
 * the run's code then (sl_charge tells which). */
static void guard_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    sl_charge(L, GUARD_EVERY);
}

void sl_guard_charge(sl_runtime *rt, lua_State *L, long cost)
{
    rt->guard_left -= cost;
    if (rt->guard_left <= 0) guard_spent(L);
}

void sl_guard_enter(sl_runtime *rt, lua_State *L, sl_guard *saved)
{
    saved->hook = lua_gethook(L);
    saved->mask = lua_gethookmask(L);
    saved->count = lua_gethookcount(L);
    saved->guarding = rt->guarding;
    if (!rt->guarding) rt->guard_left = rt->opts.instruction_budget;
    rt->guarding = 1;
    lua_sethook(L, guard_hook, LUA_MASKCOUNT, GUARD_EVERY);
}

void sl_guard_leave(sl_runtime *rt, lua_State *L, const sl_guard *saved)
{
    lua_sethook(L, saved->hook, saved->mask, saved->count);
    rt->guarding = saved->guarding;
}

int sl_host_call(sl_runtime *rt, const char *name, int nargs, int nresults, char *err,
                 size_t errlen)
{
    lua_State *L = rt->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    sl_host_push(L, name);
    lua_rotate(L, base + 1, 2); /* [handler fn args...] */
    sl_guard g;
    sl_guard_enter(rt, L, &g);
    int status = lua_pcall(L, nargs, nresults, base + 1);
    sl_guard_leave(rt, L, &g);
    if (status != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
        lua_settop(L, base);
        return -1;
    }
    lua_remove(L, base + 1);
    return 0;
}

int sl_host_push_handler(sl_runtime *rt, const char *job_type, double *timeout,
                         const char **version)
{
    lua_State *L = rt->L;
    /* runtime.lua's handlers table, read here: it and its entries are plain
     * tables (no metamethods), so nothing runs */
    sl_host_push(L, "handlers");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    lua_getfield(L, -1, job_type);
    lua_remove(L, -2);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    lua_getfield(L, -1, "timeout_seconds");
    *timeout = lua_tonumber(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, -1, "version");
    *version = lua_tostring(L, -1); /* kept alive by the entry below it */
    lua_pop(L, 1);
    return 1;
}

/* ------------------------------------------------------------------ state */

static int load_host_script(sl_runtime *rt, char *err, size_t errlen)
{
    lua_State *L = rt->L;
    int top = lua_gettop(L);
    lua_pushcfunction(L, traceback); /* [tb] */
    lua_pushcfunction(L, l_read_module);
    lua_pushstring(L, "sluice.runtime");
    lua_call(L, 1, 2); /* [tb src chunkname] */
    if (lua_isnil(L, -2)) {
        snprintf(err, errlen, "the host script lua/sluice/runtime.lua is missing");
        lua_settop(L, top);
        return -1;
    }
    size_t len;
    const char *src = lua_tolstring(L, -2, &len);
    if (luaL_loadbufferx(L, src, len, lua_tostring(L, -1), "t") != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_settop(L, top);
        return -1;
    }
    lua_remove(L, top + 2);
    lua_remove(L, top + 2); /* [tb chunk] */
    lua_newtable(L);
    for (const luaL_Reg *d = drivers; d->name; d++) {
        luaL_requiref(L, d->name, d->func, 0);
        lua_setfield(L, -2, d->name);
    }
    lua_pushcfunction(L, l_read_module); /* [tb chunk drivers read_module] */
    if (lua_pcall(L, 2, 1, top + 1) != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_settop(L, top);
        return -1;
    }
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "lua/sluice/runtime.lua must return a table");
        lua_settop(L, top);
        return -1;
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, &host_key);
    lua_settop(L, top);
    return 0;
}

sl_runtime *sl_runtime_new(sl_ctx *ctx, const sl_runtime_opts *opts, char *err, size_t errlen)
{
    sl_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        snprintf(err, errlen, "cannot create the Lua state: out of memory");
        return NULL;
    }
    rt->ctx = ctx;
    if (opts) rt->opts = *opts;
    if (!rt->opts.memory_limit && ctx->cfg && ctx->cfg->memory_limit_mb > 0)
        rt->opts.memory_limit = (size_t)ctx->cfg->memory_limit_mb << 20;
    if (!rt->opts.instruction_budget && ctx->cfg)
        rt->opts.instruction_budget = ctx->cfg->instruction_budget;
    if (!rt->opts.memory_limit) rt->opts.memory_limit = (size_t)512 << 20;
    if (!rt->opts.instruction_budget) rt->opts.instruction_budget = 100000000L;
    rt->L = lua_newstate(sl_lua_alloc, rt);
    if (!rt->L) {
        snprintf(err, errlen, "cannot create the Lua state");
        free(rt);
        return NULL;
    }
    *(sl_task **)lua_getextraspace(rt->L) = NULL;
    luaL_openlibs(rt->L);
    lua_pushlightuserdata(rt->L, rt);
    lua_rawsetp(rt->L, LUA_REGISTRYINDEX, &runtime_key);
    lua_pushlightuserdata(rt->L, ctx);
    lua_rawsetp(rt->L, LUA_REGISTRYINDEX, &ctx_key);
    sl_json_set_max(rt->L, rt->opts.memory_limit); /* a longer text would not fit in it */
    /* Lua makes this message where no protected call catches a memory error (a
     * coroutine closed after an error in error handling, run.c's close_task,
     * held to the cap): kept, it is never made again */
    lua_pushliteral(rt->L, "error in error handling");
    lua_rawsetp(rt->L, LUA_REGISTRYINDEX, &errerr_key);
    ctx->rt = rt;
    sl_runtime_start_scheduler(rt);
    if (load_host_script(rt, err, errlen) < 0) {
        sl_runtime_free(rt);
        ctx->rt = NULL;
        return NULL;
    }
    return rt;
}

size_t sl_runtime_set_caps(sl_runtime *rt, size_t memory_limit, long instruction_budget)
{
    if (memory_limit) {
        rt->opts.memory_limit = memory_limit;
        sl_json_set_max(rt->L, memory_limit);
    }
    if (instruction_budget > 0) rt->opts.instruction_budget = instruction_budget;
    return rt->mem_used;
}

void sl_runtime_free(sl_runtime *rt)
{
    if (!rt) return;
    rt->opts.echo = SL_ECHO_NONE;
    sl_runtime_cancel_all(rt);
    sl_runtime_stop_scheduler(rt);
    lua_close(rt->L);
    sl_lua_alloc_release(rt);
    if (rt->refs != 0) sl_log(SL_WARN, "lua references leaked at exit", NULL);
    free(rt);
}

/* ------------------------------------------------------------------ handlers */

static int valid_type_name(const char *s, size_t n)
{
    if (n == 0 || n > 63 || s[0] < 'a' || s[0] > 'z') return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

/* Out of memory, the line is left out (the count of problems still has it). */
static void add_problem(char **problems, const char *line)
{
    size_t old = *problems ? strlen(*problems) : 0;
    char *grown = realloc(*problems, old + strlen(line) + 2);
    if (!grown) return;
    *problems = grown;
    memcpy(*problems + old, line, strlen(line));
    (*problems)[old + strlen(line)] = '\n';
    (*problems)[old + strlen(line) + 1] = '\0';
}

/* Records that the job type `name` failed to load in the `failed` table, which
 * sits just below `entries` on the stack: on a reload its previous version stays. */
static void mark_failed(lua_State *L, const char *name, size_t len)
{
    lua_pushlstring(L, name, len);
    lua_pushboolean(L, 1);
    lua_rawset(L, -4);
}

/* Loads one file into the `entries` table at the top of L (a `failed` table just
 * below it); returns the number of problems. */
static int load_one(sl_runtime *rt, const char *path, char **problems)
{
    lua_State *L = rt->L;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    char line[4608], err[4096];
    if (n < 5 || strcmp(base + n - 4, ".lua") != 0) return 0;
    if (!valid_type_name(base, n - 4)) {
        snprintf(line, sizeof line,
                 "%s: the file name must be the job type: lower-case letters, digits and _, "
                 "starting with a letter, at most 63 characters",
                 path);
        add_problem(problems, line);
        return 1;
    }
    size_t len;
    char *src = sl_read_source(path, SL_SOURCE_MAX, &len);
    if (!src) {
        char why[64];
        int e = errno;
        snprintf(why, sizeof why, "%s", strerror(e));
        if (e == ENODEV) snprintf(why, sizeof why, "not a regular file");
        if (e == EFBIG) snprintf(why, sizeof why, "larger than %d MiB", SL_SOURCE_MAX >> 20);
        snprintf(line, sizeof line, "%s: cannot read the file: %s", path, why);
        add_problem(problems, line);
        return 1;
    }
    char version[17];
    content_hash(src, len, version);
    lua_pushlstring(L, base, n - 4);
    lua_pushstring(L, path);
    lua_pushlstring(L, src, len);
    lua_pushstring(L, version);
    free(src);
    rt->loading = 1;
    rt->load_over_cap = 0;
    rt->refused.pending = 0;
    int rc = sl_host_call(rt, "load_handler", 4, 2, err, sizeof err);
    sl_runtime_cap_settle(rt);
    rt->loading = 0;
    if (rt->load_over_cap) { /* even if the file caught the memory error itself */
        if (rc == 0) lua_pop(L, 2);
        snprintf(line, sizeof line,
                 "%s: memory limit exceeded: loading the file took the Lua state past its "
                 "cap (memory_limit_mb = %zu)",
                 path, rt->opts.memory_limit >> 20);
        add_problem(problems, line);
        mark_failed(L, base, n - 4);
        lua_gc(L, LUA_GCCOLLECT); /* what it allocated */
        return 1;
    }
    if (rc != 0) {
        /* the handler's own code raised (a metamethod, say): the message is the
         * problem; the traceback through the runtime says nothing more */
        char *tb = strstr(err, "\nstack traceback:");
        if (tb) *tb = '\0';
        snprintf(line, sizeof line, "%s: %s", path, err);
        add_problem(problems, line);
        mark_failed(L, base, n - 4);
        return 1;
    }
    /* entry | nil, problems (a list of strings) */
    int count = 0;
    if (lua_istable(L, -1)) {
        lua_Integer np = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= np; i++) {
            lua_rawgeti(L, -1, i);
            snprintf(line, sizeof line, "%s: %s", path, lua_tostring(L, -1));
            lua_pop(L, 1);
            add_problem(problems, line);
            count++;
        }
    }
    lua_pop(L, 1);
    if (count > 0 || lua_isnil(L, -1)) {
        lua_pop(L, 1);
        mark_failed(L, base, n - 4);
        return count > 0 ? count : 1;
    }
    if (!lua_isnil(L, -1) && count == 0) {
        lua_pushlstring(L, base, n - 4);
        lua_rawget(L, -3);
        int dup = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (dup) {
            snprintf(line, sizeof line,
                     "%s: job type '%.*s' is already defined in an earlier directory", path,
                     (int)(n - 4), base);
            add_problem(problems, line);
            count++;
        } else {
            lua_pushlstring(L, base, n - 4);
            lua_insert(L, -2);
            lua_rawset(L, -3);
            return 0;
        }
    }
    lua_pop(L, 1);
    return count;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* dir could not be read: marks the types loaded from its files before as
 * failed in the `failed` table below `entries` on the stack (on a reload their
 * previous versions stay), and notes it (sl_runtime_dirs_unread). */
static void keep_types_in(sl_runtime *rt, const char *dir)
{
    lua_State *L = rt->L;
    char err[256];
    rt->dirs_unread = 1;
    lua_pushstring(L, dir);
    if (sl_host_call(rt, "types_in", 1, 1, err, sizeof err) != 0) return;
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i); /* [failed entries names name] */
        lua_pushboolean(L, 1);
        lua_rawset(L, -5);
    }
    lua_pop(L, 1);
}

static int load_dir(sl_runtime *rt, const char *dir, char **problems)
{
    DIR *d = opendir(dir);
    char line[4200];
    if (!d) {
        snprintf(line, sizeof line, "%s: cannot open the handler directory: %s", dir,
                 strerror(errno));
        add_problem(problems, line);
        keep_types_in(rt, dir); /* gone for a moment, as while a deploy swaps it */
        return 1;
    }
    char **names = NULL;
    size_t nn = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.' || n < 5 || strcmp(e->d_name + n - 4, ".lua") != 0) continue;
        char **grown = realloc(names, sizeof *names * (nn + 1));
        char *copy = grown ? strdup(e->d_name) : NULL;
        if (grown) names = grown;
        if (!copy) { /* out of memory: as if the directory could not be opened */
            closedir(d);
            for (size_t i = 0; i < nn; i++)
                free(names[i]);
            free(names);
            snprintf(line, sizeof line, "%s: cannot list the handler directory: out of memory",
                     dir);
            add_problem(problems, line);
            keep_types_in(rt, dir);
            return 1;
        }
        names[nn++] = copy;
    }
    closedir(d);
    if (nn > 1) qsort(names, nn, sizeof *names, cmp_str);
    int count = 0;
    for (size_t i = 0; i < nn; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        count += load_one(rt, path, problems);
        free(names[i]);
    }
    free(names);
    return count;
}

int sl_runtime_dirs_unread(const sl_runtime *rt)
{
    return rt->dirs_unread;
}

int sl_runtime_load_handlers(sl_runtime *rt, const char *const *files, int nfiles, char **problems)
{
    lua_State *L = rt->L;
    const sl_config *cfg = rt->ctx->cfg;
    int count = 0;
    char err[1024];
    rt->dirs_unread = 0;
    if (sl_host_call(rt, "begin_load", 0, 0, err, sizeof err) != 0) {
        add_problem(problems, err);
        return 1;
    }
    lua_newtable(L); /* failed: names whose files had problems */
    lua_newtable(L); /* entries by name */
    if (files) {
        for (int i = 0; i < nfiles; i++) {
            if (is_dir(files[i]))
                count += load_dir(rt, files[i], problems);
            else
                count += load_one(rt, files[i], problems);
        }
    } else {
        for (int i = 0; cfg && i < cfg->n_handler_dirs; i++)
            count += load_dir(rt, cfg->handler_dirs[i], problems);
    }
    /* Cross-file checks (datasets declared with different settings) and install. */
    lua_insert(L, -2); /* install(entries, failed) */
    if (sl_host_call(rt, "install", 2, 1, err, sizeof err) != 0) {
        add_problem(problems, err);
        return count + 1;
    }
    if (lua_istable(L, -1)) {
        lua_Integer np = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= np; i++) {
            lua_rawgeti(L, -1, i);
            add_problem(problems, lua_tostring(L, -1));
            lua_pop(L, 1);
            count++;
        }
    }
    lua_pop(L, 1);
    return count;
}

static char *host_string(sl_runtime *rt, const char *fn, int nargs)
{
    char err[1024];
    if (sl_host_call(rt, fn, nargs, 1, err, sizeof err) != 0) return sl_xstrdup(err);
    char *s = sl_xstrdup(lua_tostring(rt->L, -1) ? lua_tostring(rt->L, -1) : "");
    lua_pop(rt->L, 1);
    return s;
}

char *sl_runtime_registry_json(sl_runtime *rt)
{
    char err[1024];
    if (sl_host_call(rt, "registry_json", 0, 1, err, sizeof err) != 0) {
        sl_log(SL_ERROR, "cannot describe the handler registry", "error", err, NULL);
        return NULL;
    }
    char *s = strdup(lua_tostring(rt->L, -1) ? lua_tostring(rt->L, -1) : "[]");
    lua_pop(rt->L, 1);
    if (!s)
        sl_log(SL_ERROR, "cannot describe the handler registry", "error", "out of memory", NULL);
    return s;
}

void sl_runtime_preload(sl_runtime *rt)
{
    char err[1024];
    if (sl_host_call(rt, "preload", 0, 0, err, sizeof err) != 0)
        sl_log(SL_WARN, "preloading the handler libraries failed; they load on first use", "error",
               err, NULL);
}

char *sl_runtime_type_names(sl_runtime *rt, const char *sep)
{
    lua_pushstring(rt->L, sep);
    return host_string(rt, "type_names", 1);
}

char *sl_runtime_validate(sl_runtime *rt, const char *job_type, const char *params_json,
                          char **normalized, unsigned flags)
{
    lua_State *L = rt->L;
    char err[1024];
    lua_pushstring(L, job_type);
    lua_pushstring(L, params_json);
    lua_pushboolean(L, (flags & SL_VALIDATE_HERE) != 0);
    lua_pushboolean(L, (flags & SL_VALIDATE_NO_BRAND) != 0);
    if (sl_host_call(rt, "validate", 4, 2, err, sizeof err) != 0) return sl_xstrdup(err);
    char *problem = NULL;
    if (lua_isnil(L, -2)) {
        problem = sl_xstrdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "invalid");
    } else if (normalized) {
        *normalized = sl_xstrdup(lua_tostring(L, -2));
        if (lua_isstring(L, -1)) sl_log(SL_WARN, lua_tostring(L, -1), NULL); /* a note */
    }
    lua_pop(L, 2);
    return problem;
}

/* ------------------------------------------------------------------ chunks */

int sl_runtime_exec(sl_runtime *rt, const char *source, size_t len, const char *chunkname,
                    const char *arg0, const char *const *args, int nargs, sl_chunk_done_fn done,
                    void *data, sl_task **chunk, char *err, size_t errlen)
{
    lua_State *L = rt->L;
    int top = lua_gettop(L);
    /* compile(source, chunkname, args) → function (sandboxed env with `arg`) */
    lua_pushlstring(L, source, len);
    lua_pushstring(L, chunkname);
    lua_createtable(L, nargs, 1);
    lua_pushstring(L,
                   arg0 ? arg0 : chunkname + (*chunkname == '@' || *chunkname == '=')); /* arg[0] */
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < nargs; i++) {
        lua_pushstring(L, args[i]);
        lua_rawseti(L, -2, i + 1);
    }
    if (sl_host_call(rt, "compile_chunk", 3, 2, err, errlen) != 0) return -1;
    if (lua_isnil(L, -2)) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_settop(L, top);
        return -1;
    }
    lua_pop(L, 1);
    sl_task *t = sl_task_spawn(rt, L, NULL, 0);
    t->chunk_done = done;
    t->chunk_data = data;
    *chunk = t;
    lua_settop(L, top);
    return 0;
}
