/*
 * lua_spawn.c — the C driver under sluice.spawn / sluice.wait / sluice.map:
 * child tasks of the running task, and a primitive to park until one of them
 * ends. The API handlers use is lua/sluice/spawn.lua.
 *
 *   h = spawn(fn, ...)     a child task of the caller (same run), started soon;
 *                          nil, misuse when the caller is not a task
 *   state(h)               "running" | "done" | "failed" | "cancelled"
 *   collect(h)             true, results… | false, error  (once the task ended;
 *                          the task is freed, the handle keeps the outcome)
 *   park(h1, h2, …)        yields until one of the running ones ends; returns at
 *                          once (nothing) when one has already ended, and at once
 *                          with a message when it cannot wait (misuse)
 *   cancel(h)              cancels a running task (its pending I/O included)
 *   is_task(v)             v is a task handle
 *
 * Lifetimes: a task is freed when it is collected, when its parent ends (run.c:
 * nothing a task spawned outlives it; one that had finished leaves its outcome
 * in its handle, sl_spawn_keep_outcome) or when its run ends. The handle is a
 * userdata holding the task pointer; run.c clears that pointer when it frees the
 * task (sl_task.handle), and the handle's __gc clears sl_task.handle, so neither
 * side can outlive the other. Results move into the handle's user value at
 * collect, so they can be read again.
 *
 * Misuse the handler can commit through sluice.spawn and sluice.wait (calling
 * them outside a task, a task waiting for itself) is returned, not raised: the
 * facade in spawn.lua raises it at its caller's level, so the error names the
 * handler's line rather than spawn.lua's.
 */
#include "runtime_int.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdlib.h>

#define HANDLE_MT "sluice.task"

enum { H_PENDING = 0, H_DONE, H_FAILED };

typedef struct {
    sl_task *t;   /* NULL once the task is freed */
    int outcome;  /* H_*, set at collect (or when its parent freed it finished) */
    int kept_ref; /* a registry ref to the results of a task freed finished but not
                   * collected (sl_spawn_keep_outcome), until they move into the
                   * user value; owned by the handle */
} task_handle;

static task_handle *check_handle(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, HANDLE_MT);
}

static const char *state_of(const task_handle *h)
{
    if (h->t) return h->t->state != T_DONE ? "running" : h->t->failed ? "failed" : "done";
    return h->outcome == H_DONE ? "done" : h->outcome == H_FAILED ? "failed" : "cancelled";
}

/* spawn(fn, ...) → handle | nil, misuse */
static int l_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    sl_task *parent = sl_task_test(L, "sluice.spawn");
    if (!parent) { /* [fn args… misuse] */
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    sl_runtime *rt = sl_runtime_of(L);
    int nargs = lua_gettop(L) - 1;
    task_handle *h = lua_newuserdatauv(L, sizeof *h, 1);
    h->t = NULL;
    h->outcome = H_PENDING;
    h->kept_ref = LUA_NOREF;
    luaL_setmetatable(L, HANDLE_MT);
    lua_insert(L, 1); /* [h fn args…] */
    sl_task *c = sl_task_spawn(rt, L, parent->run, nargs);
    sl_task_adopt(parent, c);
    c->handle = &h->t;
    h->t = c;
    return 1;
}

static int l_state(lua_State *L)
{
    lua_pushstring(L, state_of(check_handle(L, 1)));
    return 1;
}

static int l_is_task(lua_State *L)
{
    lua_pushboolean(L, luaL_testudata(L, 1, HANDLE_MT) != NULL);
    return 1;
}

/* Pushes the outcome kept in the handle: true, results… | false, error. */
static int push_outcome(lua_State *L, int hidx, task_handle *h)
{
    if (h->outcome == H_PENDING) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "the task was cancelled");
        return 2;
    }
    if (h->kept_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, h->kept_ref);
        lua_setiuservalue(L, hidx, 1);
        luaL_unref(L, LUA_REGISTRYINDEX, h->kept_ref);
        h->kept_ref = LUA_NOREF;
        sl_runtime_of(L)->refs--;
    }
    lua_getiuservalue(L, hidx, 1);
    if (h->outcome == H_FAILED) {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    int tbl = lua_gettop(L);
    lua_getfield(L, tbl, "n");
    lua_Integer n = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (n < 0 || n > 1000000 || !lua_checkstack(L, (int)n + 2))
        return luaL_error(L, "sluice.wait: too many results");
    lua_pushboolean(L, 1);
    for (lua_Integer i = 1; i <= n; i++)
        lua_rawgeti(L, tbl, i);
    return (int)n + 1;
}

/* collect(h) → true, results… | false, error; nothing while it still runs. */
static int l_collect(lua_State *L)
{
    task_handle *h = check_handle(L, 1);
    sl_task *t = h->t;
    if (t && t->state != T_DONE) return 0;
    if (t) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->result_ref);
        lua_setiuservalue(L, 1, 1);
        h->outcome = t->failed ? H_FAILED : H_DONE;
        sl_task_cancel(t, NULL); /* a finished task: this only frees it (h->t = NULL) */
    }
    return push_outcome(L, 1, h);
}

/* ------------------------------------------------------------------ park */

typedef struct {
    sl_task *w;
    int n;
    sl_task *tasks[];
} park_op;

/* The cancel hook of a park: unhooks the waiter from every task (all alive: a
 * task going away wakes its waiter, which runs this first) and frees the op. */
static void park_cancel(void *data)
{
    park_op *op = data;
    for (int i = 0; i < op->n; i++)
        if (op->tasks[i]->waiter == op->w) op->tasks[i]->waiter = NULL;
    free(op);
}

/* park(h1, …) → nothing | misuse: see the file comment. */
static int l_park(lua_State *L)
{
    int n = lua_gettop(L), pending = 0;
    sl_task *w = sl_task_test(L, "sluice.wait");
    if (!w) return 1;
    for (int i = 1; i <= n; i++) {
        task_handle *h = check_handle(L, i);
        if (!h->t || h->t->state == T_DONE) return 0; /* one has ended already: no need to wait */
        if (h->t == w) {
            lua_pushliteral(L, "sluice.wait: a task cannot wait for itself");
            return 1;
        }
        if (h->t->waiter && h->t->waiter != w) {
            lua_pushliteral(L, "sluice.wait: another task is already waiting for this task");
            return 1;
        }
        pending++;
    }
    if (pending == 0) return 0;
    if (!lua_isyieldable(L)) {
        lua_pushliteral(L, "sluice.wait cannot wait here (inside a metamethod or a C iterator)");
        return 1;
    }
    park_op *op = calloc(1, sizeof *op + sizeof(sl_task *) * (size_t)pending);
    if (!op) return luaL_error(L, "sluice.wait: out of memory");
    op->w = w;
    op->n = 0;
    for (int i = 1; i <= n; i++) {
        sl_task *t = check_handle(L, i)->t;
        t->waiter = w;
        op->tasks[op->n++] = t;
    }
    return sl_task_wait(L, w, park_cancel, op);
}

/* cancel(h) → true if it was running and is now cancelled */
static int l_cancel(lua_State *L)
{
    task_handle *h = check_handle(L, 1);
    sl_task *t = h->t;
    if (!t || t->state == T_DONE || t->closing) { /* ended, or ending: its __close handlers run */
        lua_pushboolean(L, 0);
        return 1;
    }
    if (t->state == T_RUNNING || t == sl_task_of(L))
        return luaL_error(L, "sluice.spawn: a task cannot cancel itself");
    sl_task_cancel(t, "cancelled");
    lua_pushboolean(L, 1);
    return 1;
}

/* ------------------------------------------------------------------ handle */

static int handle_gc(lua_State *L)
{
    task_handle *h = check_handle(L, 1);
    if (h->t) {
        h->t->handle = NULL;
        h->t = NULL;
    }
    if (h->kept_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, h->kept_ref);
        h->kept_ref = LUA_NOREF;
        sl_runtime_of(L)->refs--;
    }
    return 0;
}

void sl_spawn_keep_outcome(sl_task *t)
{
    if (!t->handle || t->state != T_DONE) return;
    task_handle *h = (task_handle *)(void *)((char *)t->handle - offsetof(task_handle, t));
    h->outcome = t->failed ? H_FAILED : H_DONE;
    h->kept_ref = t->result_ref; /* the handle's now: task_free leaves it */
    t->result_ref = LUA_NOREF;
}

static int handle_tostring(lua_State *L)
{
    task_handle *h = check_handle(L, 1);
    lua_pushfstring(L, "sluice task (%s): %p", state_of(h), (void *)h);
    return 1;
}

int luaopen_sluice_spawn(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"spawn", l_spawn},   {"state", l_state},     {"collect", l_collect}, {"park", l_park},
        {"cancel", l_cancel}, {"is_task", l_is_task}, {NULL, NULL},
    };
    static const luaL_Reg methods[] = {
        {"status", l_state},
        {"cancel", l_cancel},
        {NULL, NULL},
    };
    luaL_newmetatable(L, HANDLE_MT);
    lua_pushcfunction(L, handle_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, handle_tostring);
    lua_setfield(L, -2, "__tostring");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    return 1;
}
