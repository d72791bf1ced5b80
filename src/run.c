/*
 * run.c — tasks (coroutines) and runs, and the one function that resumes them.
 *
 * A task is a Lua thread anchored in the runtime's thread table. Its extra space
 * (lua_getextraspace) points back at the sl_task, so a C function finds the task
 * it runs in with sl_task_of(L); threads a handler creates itself point nowhere.
 *
 * Waking is split from resuming: completion callbacks call sl_task_wake(), which
 * queues the task; task_resume() — called only from the loop's prepare watcher —
 * pushes the results with the stored prepare function and resumes. No watcher
 * callback touches a Lua stack.
 *
 * Limits: a count hook charges every task an instruction budget between yields;
 * once spent (or once the state's memory cap is hit by this task) the task is
 * marked for death and the hook raises on every line and every instruction after,
 * so pcall cannot swallow the kill.
 */
#include "buf.h"
#include "config.h"
#include "ctx.h"
#include "log.h"
#include "pg.h"
#include "runtime_int.h"
#include "table.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HOOK_EVERY 1000

static char threads_key;

/* ------------------------------------------------------------------ task lookup */

sl_task *sl_task_of(lua_State *L)
{
    return *(sl_task **)lua_getextraspace(L);
}

sl_task *sl_task_test(lua_State *L, const char *what)
{
    sl_task *t = sl_task_of(L);
    if (t && t->co == L) return t;
    lua_pushfstring(L,
                    "%s can only be called from a sluice task (a handler run, a script, or "
                    "sluice.spawn), not from a coroutine created with coroutine.create",
                    what);
    return NULL;
}

sl_task *sl_task_check(lua_State *L, const char *what)
{
    sl_task *t = sl_task_test(L, what);
    if (!t) {
        luaL_where(L, 1);
        lua_insert(L, -2);
        lua_concat(L, 2);
        lua_error(L);
    }
    return t;
}

struct sl_ctx *sl_task_ctx(sl_task *t)
{
    return t->rt->ctx;
}

const char *sl_task_run_id(sl_task *t)
{
    return t->run ? t->run->run_id : "";
}

void sl_task_log(sl_task *t, const char *line)
{
    if (t->run)
        sl_run_log(t->run, line);
    else
        fprintf(stderr, "%s\n", line);
}

/* ------------------------------------------------------------------ budget hook */

static const char budget_spent[] = "instruction budget exceeded: the handler ran too long "
                                   "without yielding (a loop that never waits?)";
/* the same outside runs: a `sluice exec` script, a REPL input, their tasks */
static const char budget_spent_code[] = "instruction budget exceeded: the code ran too long "
                                        "without yielding (a loop that never waits?)";

static const char *budget_spent_by(const sl_task *t)
{
    return t->run ? budget_spent : budget_spent_code;
}

static void kill_hook(lua_State *L, lua_Debug *ar);

/* Raises the task's kill now, and from then on on every line and instruction:
 * pcall cannot hold it. */
static void raise_kill(lua_State *L, const sl_task *t)
{
    lua_sethook(L, kill_hook, LUA_MASKLINE | LUA_MASKCOUNT, 1);
    luaL_error(L, "%s", t->kill);
}

static void kill_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    sl_runtime *rt = sl_runtime_of(L);
    if (rt && rt->guarding) {
        /* a coroutine a task created, resumed by host-run code (an error value's
         * __tostring, a cancelled task's __close): no task runs, the guard's
         * budget holds it */
        sl_guard_charge(rt, L, HOOK_EVERY);
        return;
    }
    sl_task *t = sl_task_of(L);
    if (!t && rt) t = rt->current; /* a coroutine the task created: charge the task */
    if (!t) return;
    if (!t->kill) {
        t->budget -= HOOK_EVERY;
        if (t->budget > 0) return;
        t->kill = budget_spent_by(t);
    }
    raise_kill(L, t);
}

void sl_charge(lua_State *L, long cost)
{
    sl_runtime *rt = sl_runtime_of(L);
    if (!rt || cost <= 0) return;
    if (rt->guarding) { /* host-run code (a file's top level, __close, __tostring) */
        sl_guard_charge(rt, L, cost);
        return;
    }
    sl_task *t = rt->current;
    if (!t) return;
    t->budget -= cost;
    if (!t->kill && t->budget <= 0) t->kill = budget_spent_by(t);
    if (t->kill) raise_kill(L, t);
}

/* ------------------------------------------------------------------ ready queue */

/* The prepare watcher runs only while tasks are ready: then it also keeps the
 * loop alive, so a task woken from a watcher callback (a timer that was the last
 * active watcher, say) is resumed before ev_run could return. */
static void ready_push(sl_runtime *rt, sl_task *t)
{
    t->state = T_READY;
    t->next_ready = NULL;
    t->prev_ready = rt->ready_tail;
    if (rt->ready_tail)
        rt->ready_tail->next_ready = t;
    else
        rt->ready_head = t;
    rt->ready_tail = t;
    if (!ev_is_active(&rt->prepare)) ev_prepare_start(rt->ctx->loop, &rt->prepare);
}

/* Takes t out of the ready queue, if it is in it. Every list a task is on lets
 * it go in constant time: a run may have a hundred thousand tasks. */
static void ready_unlink(sl_runtime *rt, sl_task *t)
{
    if (!t->prev_ready && rt->ready_head != t) return;
    if (t->prev_ready)
        t->prev_ready->next_ready = t->next_ready;
    else
        rt->ready_head = t->next_ready;
    if (t->next_ready)
        t->next_ready->prev_ready = t->prev_ready;
    else
        rt->ready_tail = t->prev_ready;
    t->next_ready = t->prev_ready = NULL;
}

static void ready_remove(sl_runtime *rt, sl_task *t)
{
    ready_unlink(rt, t);
    if (!rt->ready_head && ev_is_active(&rt->prepare)) ev_prepare_stop(rt->ctx->loop, &rt->prepare);
}

/* Drops a completion that arrived but was not handed to the task yet: its
 * prepare is told there is no coroutine to push into. 0 if there was none. */
static int drop_prepared(sl_task *t)
{
    if (!t->prepare) return 0;
    sl_task_prepare_fn p = t->prepare;
    t->prepare = NULL;
    p(NULL, t->pdata);
    t->pdata = NULL;
    return 1;
}

int sl_task_wait(lua_State *L, sl_task *t, sl_task_cancel_fn cancel, void *op)
{
    if (!lua_isyieldable(L)) {
        /* inside a C call that cannot yield (table.sort's comparator, say): drop
         * the op as a cancel would, or its completion would later wake this task
         * in the middle of some other wait. Then say so where the handler made
         * the call: lua_yield's own "attempt to yield across a C-call boundary"
         * had neither a place nor a hint. */
        if (!drop_prepared(t)) cancel(op);
        lua_Debug ar;
        const char *name = NULL;
        if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar)) name = ar.name;
        return luaL_error(L,
                          "%s%s%scannot wait here (inside a metamethod, or a function that "
                          "C calls, such as a table.sort comparator or a string.gsub "
                          "replacement function)",
                          name ? "'" : "", name ? name : "", name ? "' " : "");
    }
    if (t->prepare) {
        /* completed before we got here (a synchronous failure): resume soon */
        ready_push(t->rt, t);
    } else {
        t->state = T_WAITING;
        t->cancel = cancel;
        t->op = op;
    }
    return lua_yield(L, 0);
}

void sl_task_wake(sl_task *t, sl_task_prepare_fn prepare, void *data)
{
    t->cancel = NULL;
    t->op = NULL;
    t->prepare = prepare;
    t->pdata = data;
    if (t->state == T_WAITING) ready_push(t->rt, t);
    /* T_RUNNING: the op finished before the task parked; sl_task_wait queues it. */
}

/* ------------------------------------------------------------------ children */

/* What a task parked in sluice.wait gets when woken: nothing; it then looks at
 * its tasks again (lua/sluice/spawn.lua). */
static int resume_nothing(lua_State *co, void *data)
{
    (void)co;
    (void)data;
    return 0;
}

/* t finished or is going away: wake the task parked on it in sluice.wait. That
 * park is over, so its cancel hook runs now (it unhooks the other tasks it was
 * parked on and frees its op) before the task is queued. */
static void wake_waiter(sl_task *t)
{
    sl_task *w = t->waiter;
    t->waiter = NULL;
    if (!w || w->state != T_WAITING) return;
    if (w->cancel) {
        sl_task_cancel_fn c = w->cancel;
        w->cancel = NULL;
        c(w->op);
    }
    sl_task_wake(w, resume_nothing, NULL);
}

/* Structured concurrency: nothing a task spawned outlives it. Cancels the
 * children still running and frees the finished ones nobody collected (their
 * handles keep the outcome); a child
 * on the C stack (the task running now) is only detached. */
static void unlink_child(sl_task *t)
{
    if (!t->parent) return;
    *t->pprev_sibling = t->next_sibling;
    if (t->next_sibling) t->next_sibling->pprev_sibling = t->pprev_sibling;
    t->parent = NULL;
    t->next_sibling = NULL;
    t->pprev_sibling = NULL;
}

void sl_task_adopt(sl_task *parent, sl_task *c)
{
    c->parent = parent;
    c->next_sibling = parent->children;
    if (parent->children) parent->children->pprev_sibling = &c->next_sibling;
    parent->children = c;
    c->pprev_sibling = &parent->children;
}

static void cancel_children(sl_task *t)
{
    sl_task *c;
    while ((c = t->children)) {
        unlink_child(c);
        sl_spawn_keep_outcome(c); /* a finished one: its handle can still say how */
        if (c->state != T_RUNNING) sl_task_cancel(c, "parent task ended");
    }
}

static void unlink_from_run(sl_task *t)
{
    if (!t->pprev_in_run) return;
    *t->pprev_in_run = t->next_in_run;
    if (t->next_in_run) t->next_in_run->pprev_in_run = t->pprev_in_run;
    t->next_in_run = NULL;
    t->pprev_in_run = NULL;
}

/* ------------------------------------------------------------------ tasks */

static void task_unanchor(sl_task *t)
{
    sl_runtime *rt = t->rt;
    lua_State *L = rt->L;
    if (t->ref != LUA_NOREF) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &threads_key);
        luaL_unref(L, -1, t->ref);
        lua_pop(L, 1);
        t->ref = LUA_NOREF;
        rt->refs--;
    }
    if (t->result_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, t->result_ref);
        t->result_ref = LUA_NOREF;
        rt->refs--;
    }
}

static void task_free(sl_task *t)
{
    cancel_children(t);
    unlink_child(t);
    if (t->handle) {
        *t->handle = NULL;
        t->handle = NULL;
    }
    wake_waiter(t);
    if (t->pinned) {
        sl_pg_release(t->pinned, 1); /* an open transaction dies with its task */
        t->pinned = NULL;
    }
    free(t->tx_error);
    if (t->run) {
        unlink_from_run(t);
        if (t->run->main == t) t->run->main = NULL;
    }
    task_unanchor(t);
    free(t);
}

/* Logs the error a __close handler of t raised (the value at idx on L), built
 * in C: a task may be running (one that cancelled t), and a Lua string made
 * here would be refused at the memory cap with no protected call to catch it. */
static void log_close_error(sl_task *t, lua_State *L, int idx)
{
    size_t n = 0, i;
    const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &n) : NULL;
    sl_buf b = {0};
    sl_buf_puts(&b, "a to-be-closed variable's __close raised: ");
    if (!s) sl_buf_puts(&b, luaL_typename(L, idx));
    for (i = 0; s && i < n && (i < SL_ERROR_MAX || ((unsigned char)s[i] & 0xC0) == 0x80); i++)
        sl_buf_add(&b, s[i] ? s + i : "\xEF\xBF\xBD", s[i] ? 1 : 3); /* a NUL as U+FFFD */
    if (s && i < n) sl_buf_printf(&b, " … [error message cut: %zu bytes in all]", n);
    sl_task_log(t, b.data);
    free(b.data);
}

/* Closes t's coroutine: the __close handlers of its to-be-closed variables
 * still open run now, on a budget of their own (they are the handler's code,
 * and a killed task's budget is spent). Meanwhile the task counts as running,
 * with its code on the C stack: what the handlers do (cancel the task's parent,
 * or every task of a group the task is in, itself among them) neither cancels
 * it again nor frees it under them. An error one raises is logged. */
static void close_task(sl_task *t)
{
    sl_runtime *rt = t->rt;
    lua_State *L = rt->L;
    int top = lua_gettop(L), state = t->state;
    /* a coroutine dead of an error closes with that error (on its top), and
     * says so again after: another error is a handler's */
    int dead = lua_status(t->co) != LUA_OK && lua_status(t->co) != LUA_YIELD;
    if (dead) {
        lua_pushvalue(t->co, -1);
        lua_xmove(t->co, L, 1);
    }
    t->state = T_RUNNING;
    t->closing = 1;
    sl_guard g;
    int was = sl_runtime_hosting_enter(rt);
    sl_guard_enter(rt, t->co, &g);
#if LUA_VERSION_RELEASE_NUM >= 50406
    int st = lua_closethread(t->co, L);
#else
    int st = lua_resetthread(t->co);
#endif
    sl_guard_leave(rt, t->co, &g);
    sl_runtime_hosting_leave(rt, was);
    if (st != LUA_OK) {
        lua_xmove(t->co, L, 1);
        if (!dead || !lua_rawequal(L, -1, -2)) log_close_error(t, L, -1);
    }
    lua_settop(L, top);
    t->closing = 0;
    t->state = state;
}

void sl_task_cancel(sl_task *t, const char *why)
{
    (void)why;
    sl_runtime *rt = t->rt;
    if (t->state == T_READY) ready_remove(rt, t);
    if (t->cancel) {
        sl_task_cancel_fn c = t->cancel;
        t->cancel = NULL;
        c(t->op);
    }
    drop_prepared(t);
    if (t->state != T_DONE && t->co) {
        close_task(t); /* its handlers may still log to its run: it is theirs */
        *(sl_task **)lua_getextraspace(t->co) = NULL;
    }
    t->state = T_DONE;
    if (t->chunk_done) {
        sl_chunk_done_fn d = t->chunk_done;
        t->chunk_done = NULL;
        d(1, why ? why : "cancelled", t->chunk_data);
    }
    task_free(t);
}

sl_task *sl_task_spawn(sl_runtime *rt, lua_State *L, sl_run *run, int nargs)
{
    /* the thread first: lua_newthread and luaL_ref may raise a memory error,
     * and nothing of the task is allocated yet */
    lua_State *co = lua_newthread(L);
    /* a new thread has room for 40 values, and lua_xmove does not make more:
     * sluice.spawn(f, table.unpack(list)) wrote past its stack */
    if (!lua_checkstack(co, nargs + 1)) {
        lua_pop(L, 1);
        luaL_error(L, "cannot start a task with %d arguments: too many", nargs);
        return NULL; /* not reached */
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &threads_key);
    lua_pushvalue(L, -2);
    int ref = luaL_ref(L, -2);
    sl_task *t = calloc(1, sizeof *t);
    if (!t) {
        luaL_unref(L, -1, ref);
        luaL_error(L, "out of memory");
        return NULL; /* not reached */
    }
    lua_pop(L, 2); /* threads table, thread */
    t->rt = rt;
    t->run = run;
    t->co = co;
    t->ref = ref;
    t->result_ref = LUA_NOREF;
    rt->refs++;
    lua_xmove(L, t->co, nargs + 1);
    t->nargs = nargs;
    *(sl_task **)lua_getextraspace(t->co) = t;
    lua_sethook(t->co, kill_hook, LUA_MASKCOUNT, HOOK_EVERY);
    if (run) {
        t->next_in_run = run->tasks;
        if (run->tasks) run->tasks->pprev_in_run = &t->next_in_run;
        run->tasks = t;
        t->pprev_in_run = &run->tasks;
    }
    t->state = T_NEW;
    ready_push(rt, t);
    return t;
}

/* error_text(value) → message, permanent, for the code of a run (in_run) or
 * the code of a script or a REPL input, which describe_error names as such. */
static int error_text_in(lua_State *L, int in_run)
{
    int permanent = 0;
    lua_settop(L, 1);
    if (lua_type(L, 1) == LUA_TTABLE) {
        if (lua_getfield(L, 1, "permanent") != LUA_TNIL && lua_toboolean(L, -1)) permanent = 1;
        lua_pop(L, 1);
        lua_getfield(L, 1, "message");
        if (!lua_isstring(L, 2)) lua_pop(L, 1);
    } else if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER) {
        lua_pushvalue(L, 1);
    }
    if (lua_gettop(L) == 1 && luaL_getmetafield(L, 1, "__tostring") != LUA_TNIL) {
        lua_pop(L, 1);
        luaL_tolstring(L, 1, NULL);
    } else if (lua_gettop(L) == 1) {
        /* error({code = 1}), error(nil), error(true): said plainly, not "table: 0x…" */
        sl_host_push(L, "describe_error");
        lua_pushvalue(L, 1);
        lua_pushboolean(L, !in_run);
        lua_call(L, 2, 1);
        if (!lua_isstring(L, 2)) {
            lua_pop(L, 1);
            lua_pushliteral(L, "error object is not a string");
        }
    }
    lua_tostring(L, 2); /* a number as text, in place */
    sl_lua_text(L, 2);  /* error("a\0b") said whole */
    lua_pushboolean(L, permanent);
    return 2;
}

/* error_text(value) → message, permanent (runtime_int.h). The code calling it
 * is the task's it belongs to (its own, or for a coroutine a task made, the
 * task being resumed); with no task (a handler file loading), a handler's. */
int sl_error_text(lua_State *L)
{
    sl_task *t = sl_task_of(L);
    if (!t) {
        sl_runtime *rt = sl_runtime_of(L);
        t = rt ? rt->current : NULL;
    }
    return error_text_in(L, !t || t->run);
}

/* error_text(value, in_run) for a task that has ended: no task is current any
 * more to say whether it belonged to a run. */
static int ended_task_error_text(lua_State *L)
{
    return error_text_in(L, lua_toboolean(L, 2));
}

/* A copy of msg, cut to SL_ERROR_MAX bytes between two characters: an error is
 * stored with its run and its job and logged, and a handler's can be any size. */
static char *cut_error(const char *msg)
{
    size_t len = strlen(msg), cut = SL_ERROR_MAX;
    if (len <= SL_ERROR_MAX) return sl_xstrdup(msg);
    while (cut > 0 && ((unsigned char)msg[cut] & 0xC0) == 0x80) /* inside a UTF-8 sequence */
        cut--;
    sl_buf b = {0};
    sl_buf_add(&b, msg, cut);
    sl_buf_printf(&b, " … [error message cut: %zu bytes in all]", len);
    return b.data;
}

/* A run's main task or a chunk ended: turn its error value into a message with a
 * traceback; permanent errors (sluice.permanent) are not retried. */
static char *error_message(sl_task *t, int *retryable, char **traceback)
{
    lua_State *L = t->rt->L; /* the dead coroutine cannot run __tostring: work here */
    const char *msg;
    int top = lua_gettop(L);
    *retryable = 1;
    lua_xmove(t->co, L, 1);
    if (t->kill) {
        msg = t->kill;
        *retryable = 0;
    } else {
        lua_pushcfunction(L, ended_task_error_text);
        lua_pushvalue(L, top + 1);
        lua_pushboolean(L, t->run != NULL);
        sl_guard g;
        int was = sl_runtime_hosting_enter(t->rt);
        sl_guard_enter(t->rt, L, &g);
        int status = lua_pcall(L, 2, 2, 0);
        sl_guard_leave(t->rt, L, &g);
        sl_runtime_hosting_leave(t->rt, was);
        if (status == LUA_OK) {
            msg = lua_tostring(L, -2);
            if (lua_toboolean(L, -1)) *retryable = 0;
        } else {
            msg = lua_pushfstring(L, "the error value could not be said as text: %s",
                                  lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                                 : "(its error is not a string)");
        }
    }
    /* Lua's bare "C stack overflow" (raised inside a library function, e.g. a
     * string.gsub replacement function calling itself through it) said plainly,
     * at the innermost line of Lua in the dead coroutine, the handler's */
    const char *overflow = sl_stack_overflow_text(L, t->co, 0, msg);
    if (overflow) msg = overflow;
    char *copy = cut_error(msg);
    luaL_traceback(L, t->co, copy, 0);
    *traceback = sl_xstrdup(lua_tostring(L, -1));
    lua_settop(L, top);
    return copy;
}

/* Encodes the value on top of co, the result of a run of job_type, as JSON via
 * the runtime's encoder; pops it. NULL with the reason in why when it cannot be
 * encoded; *whole is then 1 when why is the whole message (a records that is
 * not a count), 0 when it is the encoder's reason. */
static char *encode_result(sl_task *t, const char *job_type, char *why, size_t whylen, int *whole)
{
    sl_runtime *rt = t->rt;
    lua_xmove(t->co, rt->L, 1);
    lua_pushstring(rt->L, job_type);
    *whole = 0;
    if (sl_host_call(rt, "encode_result", 2, 3, why, whylen) != 0) return NULL;
    int encoded = lua_isstring(rt->L, -3);
    char *s = encoded ? strdup(lua_tostring(rt->L, -3)) : NULL;
    if (!s) {
        snprintf(why, whylen, "%s",
                 encoded                   ? "out of memory"
                 : lua_isstring(rt->L, -2) ? lua_tostring(rt->L, -2)
                                           : "?");
        *whole = !encoded && lua_toboolean(rt->L, -1);
    }
    lua_pop(rt->L, 3);
    return s;
}

static void task_finished(sl_task *t, int status, int nres)
{
    sl_run *run = t->run;
    int child = !t->chunk_done && !(run && run->main == t);
    if (status == LUA_OK && !t->kill) {
        t->state = T_DONE;
        cancel_children(t);
        if (t->chunk_done) {
            lua_pop(t->co, nres);
            sl_chunk_done_fn d = t->chunk_done;
            t->chunk_done = NULL;
            d(0, NULL, t->chunk_data);
            task_free(t);
            return;
        }
        if (run && run->main == t) {
            if (nres == 0)
                lua_pushnil(t->co);
            else if (nres > 1)
                lua_pop(t->co, nres - 1);
            char why[256], msg[320];
            int whole;
            char *json = encode_result(t, run->job_type, why, sizeof why, &whole);
            size_t len = json ? strlen(json) : 0;
            if (!json) {
                snprintf(msg, sizeof msg,
                         whole ? "%s" : "the handler's return value cannot be encoded as JSON: %s",
                         why);
                sl_run_finish(run, SL_RUN_FAILED, NULL, msg, 0);
            } else if (len > SL_RESULT_MAX) {
                snprintf(msg, sizeof msg,
                         "the handler's return value is %.1f MiB as JSON; a run's result may be "
                         "at most %d MiB (keep bulk data in tables or the asset store)",
                         (double)len / (1 << 20), SL_RESULT_MAX >> 20);
                sl_run_finish(run, SL_RUN_FAILED, NULL, msg, 0);
            } else {
                sl_run_finish(run, SL_RUN_COMPLETED, json, NULL, 0);
            }
            free(json);
            return;
        }
        /* a spawned child: keep its results for wait() */
        lua_createtable(t->co, nres, 1);
        lua_insert(t->co, -(nres + 1));
        for (int i = nres; i >= 1; i--)
            lua_rawseti(t->co, -(i + 1), i);
        lua_pushinteger(t->co, nres);
        lua_setfield(t->co, -2, "n");
        lua_xmove(t->co, t->rt->L, 1);
        t->result_ref = luaL_ref(t->rt->L, LUA_REGISTRYINDEX);
        t->rt->refs++;
        wake_waiter(t);
        if (!t->parent || !t->handle)
            task_free(t); /* no parent, or its handle is gone: nobody can collect it */
        return;
    }
    int retryable, keep_value = child && status != LUA_OK && !t->kill;
    char *tb = NULL;
    lua_checkstack(t->co, 2);
    lua_pushvalue(t->co, -1); /* error_message takes it; the error stays for the close */
    char *msg = error_message(t, &retryable, &tb);
    if (child) {          /* a spawned child failed: keep the error for wait() */
        if (keep_value) { /* the error value itself, for wait() to raise */
            lua_pushvalue(t->co, -1);
            lua_xmove(t->co, t->rt->L, 1);
        } else {
            lua_pushstring(t->rt->L, msg);
        }
        t->result_ref = luaL_ref(t->rt->L, LUA_REGISTRYINDEX);
        t->rt->refs++;
    }
    if (run && !t->chunk_done) {
        sl_run_log(run, tb);
    } else if (child) { /* a script's or the REPL's task: said on stderr, as a run's log
                         * would have it, whether or not anything waits for it */
        sl_buf b = {0};
        sl_buf_printf(&b, "a task started by sluice.spawn failed: %s", tb);
        sl_task_log(t, b.data ? b.data : tb);
        free(b.data);
    }
    /* A coroutine that raised keeps its to-be-closed variables open (Lua closes
     * them as a function returns or a pcall catches, not as a coroutine dies):
     * their __close handlers run now, before anything of the task is let go,
     * and may still log to its run (so after the traceback). */
    close_task(t);
    t->state = T_DONE;
    cancel_children(t);
    if (t->chunk_done) {
        sl_chunk_done_fn d = t->chunk_done;
        t->chunk_done = NULL;
        d(1, tb, t->chunk_data);
        task_free(t);
    } else if (!child) {
        sl_run_finish(run, SL_RUN_FAILED, NULL, msg, retryable);
    } else {
        t->failed = 1;
        wake_waiter(t);
        int killed = run && t->kill;
        if (!t->parent || !t->handle) task_free(t);
        /* a kill (the instruction budget, the memory cap) fails the whole run, not
         * retried: its parent cannot catch it, and what the run holds is let go */
        if (killed) sl_run_finish(run, SL_RUN_FAILED, NULL, msg, 0);
    }
    free(msg);
    free(tb);
}

/* coroutine.yield() called by the handler's own code at the top of a task (not
 * inside a coroutine it created, not through a sluice call): nothing would
 * ever resume the task. Pushes its error on t->co: a permanent one
 * (sluice.permanent), as the same code yields the same way on every attempt;
 * a retry would only spend the job's retries on the mistake. */
static void stray_yield(sl_task *t)
{
    const char *msg =
        t->run ? "coroutine.yield() called outside a coroutine the handler created: a handler "
                 "must not yield its run itself; only sluice calls suspend it"
               /* a `sluice exec` script, a REPL input, their tasks */
               : "coroutine.yield() called outside a coroutine the code created: the code must "
                 "not yield its task itself; only sluice calls suspend it";
    char err[256];
    sl_runtime *rt = t->rt;
    lua_pushstring(rt->L, msg);
    if (sl_host_call(rt, "permanent", 1, 1, err, sizeof err) == 0)
        lua_xmove(rt->L, t->co, 1);
    else /* out of memory: the message alone */
        lua_pushstring(t->co, msg);
}

/* The one place a coroutine is resumed. */
static void task_resume(sl_task *t)
{
    sl_runtime *rt = t->rt;
    int nargs, nres = 0;
    if (t->nargs >= 0) {
        nargs = t->nargs; /* first resume: the function and its arguments */
        t->nargs = -1;
    } else {
        nargs = 0;
        if (t->prepare) {
            sl_task_prepare_fn p = t->prepare;
            t->prepare = NULL;
            nargs = p(t->co, t->pdata);
        }
    }
    t->pdata = NULL;
    t->state = T_RUNNING;
    t->budget = rt->opts.instruction_budget;
    rt->current = t;
    rt->refused.pending = 0;
    int st = lua_resume(t->co, rt->L, nargs, &nres);
    sl_runtime_cap_settle(rt);
    rt->current = NULL;
    if (st == LUA_YIELD) {
        lua_pop(t->co, nres);
        if (t->state == T_WAITING || t->state == T_READY) return;
        stray_yield(t);
        task_finished(t, LUA_ERRRUN, 0);
        return;
    }
    task_finished(t, st, nres);
}

/* Resuming stops for a poll after this long (seconds): a burst of ready runs
 * (a claim of hundreds, a wave of responses) must not hold back the I/O of
 * those that already ran (their requests go out as the loop polls). */
#define RESUME_SLICE 0.002

static void idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    ev_idle_stop(loop, w); /* it only kept the loop from blocking */
}

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    sl_runtime *rt = w->data;
    sl_task *t;
    double until = ev_time() + RESUME_SLICE;
    while ((t = rt->ready_head) && ev_time() < until) {
        ready_unlink(rt, t);
        task_resume(t);
    }
    if (rt->ready_head)
        ev_idle_start(loop, &rt->idle); /* poll without waiting, then go on */
    else
        ev_prepare_stop(loop, w);
}

void sl_runtime_start_scheduler(sl_runtime *rt)
{
    ev_prepare_init(&rt->prepare, prepare_cb); /* started by ready_push */
    rt->prepare.data = rt;
    ev_idle_init(&rt->idle, idle_cb);
    lua_newtable(rt->L);
    lua_rawsetp(rt->L, LUA_REGISTRYINDEX, &threads_key);
}

void sl_runtime_stop_scheduler(sl_runtime *rt)
{
    if (ev_is_active(&rt->prepare)) ev_prepare_stop(rt->ctx->loop, &rt->prepare);
    if (ev_is_active(&rt->idle)) ev_idle_stop(rt->ctx->loop, &rt->idle);
}

/* ------------------------------------------------------------------ runs */

static void now_stamp(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03ld", ts.tv_nsec / 1000000);
}

#define LOG_CAP (1 << 20)
/* What of a run's log is echoed (the daemon log, a foreground run's terminal):
 * each line up to ECHO_LINE_MAX bytes, and ECHO_CAP bytes in all. Without them a
 * handler logging megabyte lines in a loop wrote hundreds of MB a minute to the
 * daemon's log, and held the loop (and every other run) while each was written. */
#define ECHO_LINE_MAX (64 << 10)
#define ECHO_CAP (16 << 20)

/* Grows the run's log buffer to cap bytes; 0 (the buffer as it was) when out of
 * memory. */
static int grow_log(sl_run *run, size_t cap)
{
    char *p = realloc(run->logs, cap);
    if (!p) return 0;
    run->logs = p;
    run->logcap = cap;
    return 1;
}

/* Writes one line of a run's log where the runtime echoes it (cut, and only
 * while the run's echo is under its cap: see ECHO_CAP). */
static void echo_line(sl_run *run, const char *stamp, const char *line)
{
    static const char stop[] = "[this run's log is past 16 MiB: its further lines are kept "
                               "only in its record, up to 1 MiB]";
    size_t len = strlen(line);
    sl_buf cut = {0};
    if (run->echoed >= ECHO_CAP || run->rt->opts.echo == SL_ECHO_NONE) return;
    if (len > ECHO_LINE_MAX) {
        size_t n = ECHO_LINE_MAX;
        while (n > 0 && ((unsigned char)line[n] & 0xC0) == 0x80) /* inside a character */
            n--;
        sl_buf_add(&cut, line, n);
        sl_buf_printf(&cut, " … [line cut: %zu bytes in all]", len);
        if (cut.data) line = cut.data; /* out of memory: whole */
    }
    run->echoed += strlen(line);
    if (run->echoed >= ECHO_CAP) line = stop;
    switch (run->rt->opts.echo) {
    case SL_ECHO_LOG:
        sl_log(SL_INFO, line, "run", run->run_id, "type", run->job_type, NULL);
        break;
    case SL_ECHO_PLAIN: { /* a terminal: a control character shows as ^[, as in show */
        char *visible = sl_text_visible(line, 1);
        fprintf(stderr, "%s  %s\n", stamp, visible);
        fflush(stderr);
        free(visible);
        break;
    }
    default:
        break;
    }
    free(cut.data);
}

void sl_run_log(sl_run *run, const char *raw)
{
    char stamp[32];
    if (run->log_full && (run->echoed >= ECHO_CAP || run->rt->opts.echo == SL_ECHO_NONE))
        return; /* kept nowhere */
    now_stamp(stamp, sizeof stamp);
    /* the database stores the log as text: bytes that are not UTF-8 become U+FFFD
     * before the line is placed (flushes go by byte offset) */
    char *line = sl_utf8_clean(raw);
    size_t need = strlen(stamp) + strlen(line) + 3;
    /* out of memory: the line is left out of the run's record, the echo still shows it */
    if (run->loglen + need < LOG_CAP) {
        if (run->loglen + need + 1 <= run->logcap || grow_log(run, (run->loglen + need + 1) * 2))
            run->loglen += (size_t)snprintf(run->logs + run->loglen, run->logcap - run->loglen,
                                            "%s %s\n", stamp, line);
    } else if (!run->log_full) {
        /* the run's record keeps the first LOG_CAP bytes; the echo goes on to ECHO_CAP */
        static const char note[] = "[log truncated: the run's record keeps the first 1 MiB]\n";
        if (run->loglen + sizeof note <= run->logcap || grow_log(run, run->loglen + sizeof note)) {
            run->log_full = 1;
            memcpy(run->logs + run->loglen, note, sizeof note);
            run->loglen += sizeof note - 1;
        }
    }
    echo_line(run, stamp, line);
    free(line);
}

int sl_run_dataset(sl_run *run, const char *key, const char *json)
{
    /* {"k1":{...},"k2":{...}} — a later report for the same key wins in SQL's ->, which
     * takes the last duplicate key of a jsonb object. */
    char *clean = sl_json_clean(json); /* a handler's bytes: the batch must not fail on them */
    size_t old = run->datasets_json ? strlen(run->datasets_json) : 0;
    size_t need = old + strlen(key) + strlen(clean) + 8;
    char *s = malloc(need);
    if (!s) {
        free(clean);
        return -1;
    }
    if (old <= 2)
        snprintf(s, need, "{\"%s\":%s}", key, clean);
    else
        snprintf(s, need, "%.*s,\"%s\":%s}", (int)(old - 1), run->datasets_json, key, clean);
    free(clean);
    free(run->datasets_json);
    run->datasets_json = s;
    return 0;
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sl_run *run = w->data;
    char msg[128];
    char secs[40];
    sl_config_fmt_number(run->timeout, secs, sizeof secs); /* 1000000, not 1e+06 */
    snprintf(msg, sizeof msg, "timed out after %ss", secs);
    sl_run_log(run, msg);
    sl_run_cancel(run, SL_RUN_FAILED, msg, 1);
}

void sl_run_finish(sl_run *run, int status, const char *result_json, const char *error,
                   int retryable)
{
    sl_runtime *rt = run->rt;
    if (run->finished) return;
    run->finished = 1;
    if (ev_is_active(&run->timer)) ev_timer_stop(rt->ctx->loop, &run->timer);
    /* structured concurrency: nothing of the run outlives it */
    while (run->tasks) {
        sl_task *t = run->tasks;
        if (t->state == T_RUNNING) {
            /* the task ending the run is on the C stack: just detach it */
            unlink_from_run(t);
            t->run = NULL;
            continue;
        }
        sl_task_cancel(t, "run ended");
    }
    /* a handler's bytes (not UTF-8, "\u0000") would make Postgres refuse the whole
     * batch of outcomes this one is recorded with */
    run->result_json = result_json ? sl_json_clean(result_json) : NULL;
    run->error = error ? strdup(error) : NULL;
    run->out.status = status;
    run->out.result_json = run->result_json;
    run->out.error = run->error || !error ? run->error : "out of memory"; /* the copy failed */
    /* only what the periodic flushes have not recorded yet */
    run->out.logs = run->logs ? run->logs + run->logsent : "";
    run->out.log_from = run->logsent;
    run->out.datasets_json = run->datasets_json;
    run->out.handler_version = run->version;
    run->out.retryable = retryable;
    run->out.finished = ev_time();
    if (run->prev)
        run->prev->next = run->next;
    else
        rt->runs = run->next;
    if (run->next) run->next->prev = run->prev;
    run->next = run->prev = NULL;
    rt->nruns--;
    /* The daemon logs a completed run here (at debug level); a run that failed
     * or was cancelled it logs once its outcome is recorded, with what became
     * of its job (worker.c). In the foreground (`sluice run`, the REPL, exec)
     * the caller reports the outcome itself, once. */
    if (rt->opts.echo == SL_ECHO_LOG && status == SL_RUN_COMPLETED && sl_log_enabled(SL_DEBUG)) {
        char dur[32];
        snprintf(dur, sizeof dur, "%.3f", run->out.finished - run->out.started);
        sl_log(SL_DEBUG, "run completed", "run", run->run_id, "type", run->job_type,
               SL_NUM "seconds", dur, NULL);
    }
    run->done(run, run->done_data);
}

void sl_run_cancel(sl_run *run, int status, const char *error, int retryable)
{
    sl_run_finish(run, status, NULL, error, retryable);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static sl_run *start_run(sl_runtime *rt, const sl_run_spec *spec, sl_run_done_fn done, void *data,
                         char *err, size_t errlen)
{
    lua_State *L = rt->L;
    double timeout = 0;
    const char *version = NULL;
    int top = lua_gettop(L);
    sl_host_push(L, "execute");
    if (!sl_host_push_handler(rt, spec->job_type, &timeout, &version)) {
        lua_settop(L, top);
        /* the registry (sluice types) may know it: another worker, or an earlier
         * version of this one's handlers, registered it */
        snprintf(err, errlen,
                 "unknown job type '%s': this worker has no %s.lua in its handler "
                 "directories, or it failed to load (see `sluice check`)",
                 spec->job_type, spec->job_type);
        return NULL;
    }
    sl_run *run = calloc(1, sizeof *run);
    if (!run) {
        lua_settop(L, top);
        sl_seterr(err, errlen, "out of memory");
        return NULL;
    }
    run->rt = rt;
    run->run_id = strdup(spec->run_id);
    run->job_id = dup_or_null(spec->job_id);
    run->job_type = strdup(spec->job_type);
    run->brand_id = dup_or_null(spec->brand_id);
    run->params_json = strdup(spec->params_json ? spec->params_json : "{}");
    run->checkpoint_json = strdup(spec->checkpoint_json ? spec->checkpoint_json : "{}");
    run->trigger = dup_or_null(spec->trigger_source);
    run->cron = dup_or_null(spec->cron_expression);
    run->tz = dup_or_null(spec->timezone);
    run->attempt = spec->attempt;
    run->version = dup_or_null(version);
    if (!run->run_id || !run->job_type || !run->params_json || !run->checkpoint_json ||
        (spec->job_id && !run->job_id) || (spec->brand_id && !run->brand_id) ||
        (spec->trigger_source && !run->trigger) || (spec->cron_expression && !run->cron) ||
        (spec->timezone && !run->tz) || (version && !run->version)) {
        sl_run_free(run);
        lua_settop(L, top);
        sl_seterr(err, errlen, "out of memory");
        return NULL;
    }
    run->timeout = spec->timeout_seconds > 0 ? spec->timeout_seconds : timeout;
    if (run->timeout <= 0) run->timeout = 1800;
    run->done = done;
    run->done_data = data;
    run->out.started = ev_time();

    /* the job description handed to runtime.execute(entry, spec) */
    lua_createtable(L, 0, 10);
    lua_pushstring(L, run->run_id);
    lua_setfield(L, -2, "run_id");
    if (run->job_id) {
        lua_pushstring(L, run->job_id);
        lua_setfield(L, -2, "id");
    }
    lua_pushstring(L, run->job_type);
    lua_setfield(L, -2, "type");
    if (run->brand_id) {
        lua_pushstring(L, run->brand_id);
        lua_setfield(L, -2, "brand_id");
    }
    lua_pushstring(L, run->params_json);
    lua_setfield(L, -2, "params_json");
    lua_pushstring(L, run->checkpoint_json);
    lua_setfield(L, -2, "checkpoint_json");
    lua_pushinteger(L, run->attempt);
    lua_setfield(L, -2, "attempt");
    if (run->trigger) {
        lua_pushstring(L, run->trigger);
        lua_setfield(L, -2, "trigger_source");
    }

    /* stack: execute, entry, spec. The spawn may raise a memory error, as the
     * pushes above may: the run is listed only once nothing more can. */
    run->main = sl_task_spawn(rt, L, run, 2);
    lua_settop(L, top);
    run->next = rt->runs;
    if (rt->runs) rt->runs->prev = run;
    rt->runs = run;
    rt->nruns++;
    ev_timer_init(&run->timer, timeout_cb, run->timeout, 0);
    run->timer.data = run;
    ev_now_update(rt->ctx->loop); /* from now, not from when this loop iteration began */
    ev_timer_start(rt->ctx->loop, &run->timer);
    return run;
}

/* Starting a run is the host's work, whoever asks for it (sl_runtime_host_enter). */
sl_run *sl_run_start(sl_runtime *rt, const sl_run_spec *spec, sl_run_done_fn done, void *data,
                     char *err, size_t errlen)
{
    sl_task *asking = sl_runtime_host_enter(rt);
    sl_run *run = start_run(rt, spec, done, data, err, errlen);
    sl_runtime_host_leave(rt, asking);
    return run;
}

const sl_run_outcome *sl_run_outcome_of(const sl_run *run)
{
    return &run->out;
}

const char *sl_run_id(const sl_run *run)
{
    return run->run_id;
}

const char *sl_run_job_id(const sl_run *run)
{
    return run->job_id;
}

const char *sl_run_job_type(const sl_run *run)
{
    return run->job_type;
}

const char *sl_run_cron(const sl_run *run)
{
    return run->cron;
}

const char *sl_run_timezone(const sl_run *run)
{
    return run->tz;
}

void sl_run_free(sl_run *run)
{
    if (!run) return;
    free(run->run_id);
    free(run->job_id);
    free(run->job_type);
    free(run->brand_id);
    free(run->params_json);
    free(run->checkpoint_json);
    free(run->trigger);
    free(run->cron);
    free(run->tz);
    free(run->logs);
    free(run->datasets_json);
    free(run->result_json);
    free(run->error);
    free(run->version);
    free(run);
}

sl_run *sl_runtime_find_run(sl_runtime *rt, const char *run_id)
{
    for (sl_run *r = rt->runs; r; r = r->next)
        if (strcmp(r->run_id, run_id) == 0) return r;
    return NULL;
}

int sl_runtime_pending_logs(sl_runtime *rt, sl_buf *out, sl_log_chunk *chunks)
{
    int n = 0;
    for (sl_run *r = rt->runs; r; r = r->next) {
        if (r->loglen <= r->logsent) continue;
        sl_buf_puts(out, n++ ? "," : "[");
        sl_buf_puts(out, "{\"run_id\":");
        sl_buf_json_string(out, r->run_id);
        /* a copy up to loglen: the buffer is NUL-terminated there */
        sl_buf_puts(out, ",\"logs\":");
        sl_buf_json_string(out, r->logs + r->logsent);
        sl_buf_printf(out, ",\"from\":%zu,\"upto\":%zu}", r->logsent, r->loglen);
        snprintf(chunks[n - 1].run_id, sizeof chunks[n - 1].run_id, "%s", r->run_id);
        chunks[n - 1].upto = r->loglen;
    }
    if (n) sl_buf_puts(out, "]");
    return n;
}

void sl_runtime_logs_sent(sl_runtime *rt, const sl_log_chunk *chunk)
{
    sl_run *r = sl_runtime_find_run(rt, chunk->run_id);
    if (r && chunk->upto > r->logsent && chunk->upto <= r->loglen) r->logsent = chunk->upto;
}

void sl_runtime_run_ids(const sl_runtime *rt, sl_buf *out)
{
    for (sl_run *r = rt->runs; r; r = r->next) {
        sl_buf_puts(out, r->run_id);
        sl_buf_puts(out, ",");
    }
}

int sl_runtime_active(const sl_runtime *rt)
{
    return rt->nruns;
}

void sl_runtime_cancel_all_runs(sl_runtime *rt, const char *why)
{
    while (rt->runs)
        sl_run_cancel(rt->runs, SL_RUN_FAILED, why, 1);
}

/* Cancels every run and task (process exit). */
void sl_runtime_cancel_all(sl_runtime *rt)
{
    sl_runtime_cancel_all_runs(rt, "shutdown");
    sl_task *t;
    while ((t = rt->ready_head))
        sl_task_cancel(t, "shutdown");
}
