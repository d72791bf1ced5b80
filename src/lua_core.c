/*
 * lua_core.c — the small primitives handlers build on: log lines, print, the
 * clock, sleep, and per-dataset reports, and json.c's decode and encode. The
 * friendly API around them is lua/sluice/runtime.lua.
 *
 * sleep follows the yielding-call steps of task.h: check args, find the task,
 * arm an ev_timer, park; the timer's callback only wakes the task.
 */
#include "cli.h"
#include "ctx.h"
#include "json.h"
#include "runtime_int.h"
#include "sha256.h"

#include <ev.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

const char *sl_lua_text(lua_State *L, int idx)
{
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (!s || !memchr(s, '\0', n)) return s;
    idx = lua_absindex(L, idx);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        if (s[i])
            luaL_addchar(&b, s[i]);
        else
            luaL_addstring(&b, "\xEF\xBF\xBD"); /* U+FFFD */
    }
    luaL_pushresult(&b);
    lua_replace(L, idx);
    return lua_tostring(L, idx);
}

/* ------------------------------------------------------------------ stack overflow */

/* Whether msg is one of Lua's stack overflow messages, bare or after a
 * position ("chunk:LINE: "); *pos_len is the position's length (0: none),
 * *kind 0 for a stack overflow, 1 for "error in error handling" (a stack
 * overflow while a message handler ran). */
static int overflow_kind(const char *msg, size_t *pos_len, int *kind)
{
    static const char *const texts[] = {"C stack overflow", "stack overflow",
                                        "error in error handling"};
    size_t n = strlen(msg);
    for (int i = 0; i < 3; i++) {
        size_t k = strlen(texts[i]);
        if (n < k || strcmp(msg + n - k, texts[i]) != 0) continue;
        size_t p = n - k, d;
        if (p > 0) { /* "…:LINE: " before it */
            if (p < 4 || msg[p - 1] != ' ' || msg[p - 2] != ':') continue;
            for (d = p - 2; d > 0 && msg[d - 1] >= '0' && msg[d - 1] <= '9'; d--)
                ;
            if (d == p - 2 || d < 2 || msg[d - 1] != ':') continue;
        }
        *pos_len = p;
        *kind = i == 2;
        return 1;
    }
    return 0;
}

/* The number of levels on co's stack from level `from` on. */
static int stack_levels(lua_State *co, int from)
{
    lua_Debug ar;
    if (!lua_getstack(co, from, &ar)) return 0;
    int li = from, le = from + 1; /* as luaL_traceback: lua_getstack walks from the top */
    while (lua_getstack(co, le, &ar)) {
        li = le;
        le = le < 1 << 29 ? le * 2 : le + 1;
    }
    while (li < le) {
        int m = li + (le - li) / 2;
        if (lua_getstack(co, m, &ar))
            li = m + 1;
        else
            le = m;
    }
    return le - from;
}

const char *sl_stack_overflow_text(lua_State *L, lua_State *co, int from, const char *msg)
{
    size_t pos_len;
    int kind;
    if (!msg || !overflow_kind(msg, &pos_len, &kind)) return NULL;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (pos_len) {
        luaL_addlstring(&b, msg, pos_len);
    } else if (co) {
        /* raised inside a library function: said at the innermost line of Lua
         * not in the sandbox's own wrappers (runtime.lua's table.sort, …) */
        lua_Debug ar;
        char first[LUA_IDSIZE + 24] = "";
        for (int level = from; lua_getstack(co, level, &ar); level++) {
            if (!lua_getinfo(co, "Sl", &ar) || ar.currentline <= 0) continue;
            size_t n = strlen(ar.source);
            int own = n >= 18 && strcmp(ar.source + n - 18, "sluice/runtime.lua") == 0;
            if (!own || !first[0])
                snprintf(first, sizeof first, "%s:%d: ", ar.short_src, ar.currentline);
            if (!own) break;
        }
        luaL_addstring(&b, first);
    }
    if (kind == 1) {
        luaL_addstring(&b, "stack overflow while handling an error (error in error handling: "
                           "a message handler that raises, or calls nested too deeply)");
    } else {
        luaL_addstring(&b, "stack overflow: calls nested too deeply (");
        int levels = co ? stack_levels(co, from) : 0;
        if (levels > 0) {
            lua_pushfstring(L, "%d levels: ", levels);
            luaL_addvalue(&b);
        }
        luaL_addstring(&b, "a function that calls itself without end?)");
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* pcall's message handler: a stack overflow said plainly, with the stack it
 * overflowed still there to count (level 0 is this function). */
static int overflow_handler(lua_State *L)
{
    const char *msg = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : NULL;
    if (sl_stack_overflow_text(L, L, 1, msg)) lua_replace(L, 1);
    lua_settop(L, 1);
    return 1;
}

/* xpcall's: the same, then the caller's handler (upvalue 1) on the message. */
static int xpcall_handler(lua_State *L)
{
    overflow_handler(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 1, 1);
    return 1;
}

/* As the base library's finishpcall: extra is the number of values below the
 * leading true. An "error in error handling" (a stack overflow the message
 * handler could not see) is said plainly here. */
static int pcall_done(lua_State *L, int status, lua_KContext extra)
{
    if (status != LUA_OK && status != LUA_YIELD) {
        const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (!sl_stack_overflow_text(L, NULL, 0, msg)) lua_pushvalue(L, -1);
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2; /* false, message */
    }
    return lua_gettop(L) - (int)extra;
}

/* pcall(f, …) and xpcall(f, handler, …) for handlers: the base library's, but a
 * stack overflow is said as what it is, not as Lua's bare "C stack overflow". */
static int l_pcall(lua_State *L)
{
    /* the messages of the base library's, whatever name the caller gave it */
    if (lua_isnone(L, 1)) return luaL_error(L, "bad argument #1 to 'pcall' (value expected)");
    lua_pushcfunction(L, overflow_handler);
    lua_insert(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 2); /* handler, true, f, args… */
    int status = lua_pcallk(L, lua_gettop(L) - 3, LUA_MULTRET, 1, 1, pcall_done);
    return pcall_done(L, status, 1); /* true, results… (the handler below) */
}

static int l_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    if (lua_type(L, 2) != LUA_TFUNCTION)
        return luaL_error(L, "bad argument #2 to 'xpcall' (function expected, got %s)",
                          n < 2 ? "no value" : luaL_typename(L, 2));
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2); /* f, handler, true, f, args… */
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, pcall_done);
    return pcall_done(L, status, 2); /* true, results… (f and the handler below) */
}

/* The task the calling code belongs to: its own, or for a coroutine a task made,
 * the task being resumed; NULL outside tasks. */
static sl_task *current_task(lua_State *L)
{
    sl_task *t = sl_task_of(L);
    if (t) return t;
    sl_runtime *rt = sl_runtime_of(L);
    return rt ? rt->current : NULL;
}

/* log(line): appends to the run's log (or stderr outside runs). */
static int l_log(lua_State *L)
{
    luaL_checkstring(L, 1);
    const char *line = sl_lua_text(L, 1);
    sl_task *t = current_task(L);
    if (t)
        sl_task_log(t, line);
    else
        fprintf(stderr, "%s\n", line);
    return 0;
}

/* print(...): like Lua's, into the run's log inside runs, stdout elsewhere. */
static int l_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    sl_task *t = current_task(L);
    if (t && t->run) {
        sl_run_log(t->run, sl_lua_text(L, -1));
    } else { /* every byte, as Lua's print: a NUL does not end the line */
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        sl_cli_put_line(s, len);
    }
    return 0;
}

/* Bytes hashed that cost one instruction of the budget: the hash reads some
 * 85 MB a second, about half what a second of instructions is, and allocates
 * nothing; uncharged, a loop hashing one 400 MB string held the worker for five
 * seconds a call, with a few instructions counted. */
#define SL_HASH_BYTES_PER_INSTRUCTION 2

/* sha256(s) → the SHA-256 of the string s as 64 lower-case hex digits. */
static int l_sha256(lua_State *L)
{
    size_t n;
    const char *p = luaL_checklstring(L, 1, &n);
    sl_sha256 h;
    char hex[65];
    sl_charge(L, (long)(n / SL_HASH_BYTES_PER_INSTRUCTION));
    sl_sha256_init(&h);
    sl_sha256_update(&h, p, n);
    sl_sha256_hex(&h, hex);
    lua_pushlstring(L, hex, 64);
    return 1;
}

/* now() → seconds since the epoch, with sub-millisecond precision. */
static int l_now(lua_State *L)
{
    lua_pushnumber(L, ev_time());
    return 1;
}

/* ------------------------------------------------------------------ sleep */

typedef struct {
    ev_timer w;
    struct ev_loop *loop;
    sl_task *t;
} sleep_op;

static int sleep_done(lua_State *co, void *data)
{
    (void)co;
    free(data);
    return 0;
}

static void sleep_fired(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sleep_op *op = w->data;
    sl_task_wake(op->t, sleep_done, op);
}

static void sleep_cancel(void *data)
{
    sleep_op *op = data;
    ev_timer_stop(op->loop, &op->w);
    free(op);
}

/* sleep(seconds): parks the task; other runs go on. */
static int l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    if (s < 0 || s != s)
        return luaL_error(L, "sluice.sleep: seconds must be a number of at least 0, not %s",
                          lua_tostring(L, 1));
    sl_task *t = sl_task_check(L, "sluice.sleep");
    sleep_op *op = calloc(1, sizeof *op);
    if (!op) return luaL_error(L, "sluice.sleep: out of memory");
    op->loop = sl_task_ctx(t)->loop;
    op->t = t;
    ev_timer_init(&op->w, sleep_fired, s, 0);
    op->w.data = op;
    /* libev counts from the loop's time, taken when this iteration began: after
     * work in this iteration (starting a run, a burst of results) it is behind,
     * and the sleep would end that much early */
    ev_now_update(op->loop);
    ev_timer_start(op->loop, &op->w);
    return sl_task_wait(L, t, sleep_cancel, op);
}

/* dataset(key, json) → true | nil, why: records an explicit freshness report for
 * this run (refused when larger than SL_DATASET_REPORT_MAX). */
static int l_dataset(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    const char *json = luaL_checkstring(L, 2);
    sl_task *t = sl_task_check(L, "job.dataset");
    if (!t->run) return luaL_error(L, "job.dataset: not inside a job run");
    size_t len = strlen(json);
    if (len > SL_DATASET_REPORT_MAX) { /* nil, why: runtime.lua raises it at the caller's line */
        lua_pushnil(L);
        lua_pushfstring(L,
                        "job.dataset: the report for '%s' is %d KiB as JSON; at most %d KiB "
                        "(metadata is a summary: keep bulk data in tables)",
                        key, (int)(len >> 10), SL_DATASET_REPORT_MAX >> 10);
        return 2;
    }
    if (sl_run_dataset(t->run, key, json) != 0) return luaL_error(L, "job.dataset: out of memory");
    lua_pushboolean(L, 1);
    return 1;
}

/* run_id() → the id of the run the calling task belongs to, or nil (a script,
 * the REPL's prompt). */
static int l_run_id(lua_State *L)
{
    sl_task *t = current_task(L);
    if (t && t->run && t->run->run_id)
        lua_pushstring(L, t->run->run_id);
    else
        lua_pushnil(L);
    return 1;
}

/* run_active(run_id) → true while the run with that id runs in this process. */
static int l_run_active(lua_State *L)
{
    const char *id = luaL_checkstring(L, 1);
    sl_runtime *rt = sl_runtime_of(L);
    lua_pushboolean(L, rt && sl_runtime_find_run(rt, id) != NULL);
    return 1;
}

/* in_task() → true when called from a sluice task (not a plain coroutine). */
static int l_in_task(lua_State *L)
{
    lua_pushboolean(L, sl_task_of(L) != NULL);
    return 1;
}

/* charge(cost): charges cost instructions to the running code's budget (for
 * runtime.lua's bounded library functions: utf8.len, table.sort, …). */
static int l_charge(lua_State *L)
{
    lua_Number cost = luaL_checknumber(L, 1);
    sl_charge(L, cost >= 1e15 ? (long)1e15 : (long)cost);
    return 0;
}

/* is_task(co) → true when the thread co is (or was) a sluice task: a run's main
 * coroutine or a task of sluice.spawn. Only the scheduler may resume one; the
 * sandbox's coroutine.resume and coroutine.close refuse it. */
static int l_is_task(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    lua_pushboolean(L, co && co != L && sl_task_of(co) != NULL);
    return 1;
}

int luaopen_sluice_core(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"log", l_log},
        {"print", l_print},
        {"now", l_now},
        {"sleep", l_sleep},
        {"dataset", l_dataset},
        {"in_task", l_in_task},
        {"run_id", l_run_id},
        {"sha256", l_sha256},
        {"is_task", l_is_task},
        {"charge", l_charge},
        {"run_active", l_run_active},
        {"pcall", l_pcall},
        {"xpcall", l_xpcall},
        {"error_text", sl_error_text},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    /* json.c: cjson 2.1.0 reads numbers as doubles and prints 14 digits */
    lua_pushcfunction(L, sl_json_lua_decode);
    lua_setfield(L, -2, "json_decode");
    lua_pushcfunction(L, sl_json_lua_encode);
    lua_setfield(L, -2, "json_encode");
    return 1;
}
