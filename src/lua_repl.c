/*
 * lua_repl.c — the REPL's C side inside the runtime: the primitives the trusted
 * helpers of lua/sluice/repl.lua are built on, and the functions repl.c uses to
 * evaluate input (see repl.h).
 *
 *   clock()    → seconds               the loop's clock, updated: when a claim
 *                                      is sent
 *   claimed(sent) → true | nil, err    a claim sent at `sent` (clock()) was
 *                                      answered: its run may start, or it came
 *                                      back too late (sl_queue_lease_claimed)
 *   run(spec)  → outcome | nil, err    runs a claimed job in the foreground; the
 *                                      calling task waits, the run has its own
 *                                      coroutine; the outcome is recorded with
 *                                      finish_runs() before the task resumes
 *   reload()   → problems, sync_err    reloads handlers from disk, syncs the
 *                                      registry into the database
 *   worker()   → id, lease_seconds     the worker the REPL registered as
 *   out(s)                             s and a newline on stdout, flushed
 *   in_transaction() → boolean         the calling task is inside
 *                                      sluice.db.transaction (its queries run
 *                                      uncommitted on the transaction's
 *                                      connection)
 *
 * A foreground run outlives the task waiting for it only to be recorded: when the
 * task is cancelled (Ctrl-C cancels the input being evaluated), the run is
 * cancelled as failed "interrupted", recorded, then freed. Every run started here
 * and not yet recorded is on one list, so shutdown can end and record them, and
 * the state's __gc frees whatever is left.
 *
 * The driver's state is one userdata in the registry, made by luaopen; it is
 * inert in processes that never call sl_repl_attach (serve, exec).
 */
#include "cli.h"
#include "config.h"
#include "ctx.h"
#include "log.h"
#include "pg.h"
#include "queue.h"
#include "repl.h"
#include "runtime_int.h"

#include <ev.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char state_key; /* registry: the repl_state userdata */

typedef struct fg_run fg_run;

typedef struct repl_state {
    sl_runtime *rt;
    char worker[40]; /* "" until sl_repl_attach */
    char lease[32];
    double lease_seconds;
    sl_queue_lease renewal; /* held while runs are in flight */
    ev_timer beat;          /* the worker's heartbeat while none are (beat_cb) */
    int beat_sent;          /* a heartbeat is in flight */
    sl_pg_req *beating;     /* its statement, once sl_pg_query has returned */
    int running;            /* runs in flight */
    fg_run *ops;            /* every run started here and not yet recorded */
    sl_task *chunk;         /* the input being evaluated, or NULL */
    sl_chunk_done_fn done;
    void *done_data;
} repl_state;

struct fg_run {
    repl_state *st;
    sl_task *t; /* the task waiting in run(); NULL once it went away */
    sl_run *run;
    sl_pg_req *req;     /* finish_runs() in flight */
    int ended;          /* the run ended; recording it */
    int sending;        /* inside sl_pg_query (its callback may run at once) */
    int recorded;       /* the record's callback ran */
    char *record_error; /* why the outcome could not be recorded */
    char *decision;     /* what became of the job of a run that did not complete */
    int record_oom;     /* it could not be, and the reason could not be copied */
    fg_run *next, *prev;
};

static repl_state *state_of(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &state_key);
    repl_state *st = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return st;
}

/* ------------------------------------------------------------------ lease */

static void running_changed(repl_state *st, int delta)
{
    st->running += delta;
    if (st->running > 0 && st->worker[0] && !st->renewal.holding)
        sl_queue_lease_start(&st->renewal);
    else if (st->running == 0)
        sl_queue_lease_stop(&st->renewal);
}

/* While no run is in flight nothing renews the worker's heartbeat, and an
 * idle REPL would show as silent in `sluice workers` (and its row would be
 * deleted by retention in the end): every lease/3 it says it is there. The
 * timer does not keep the loop running (ev_unref). */
static void beat_done(PGresult *res, const char *err, void *data)
{
    repl_state *st = data;
    st->beat_sent = 0;
    st->beating = NULL;
    if (err) sl_log(SL_DEBUG, "the REPL's heartbeat failed", "error", err, NULL);
    if (res) PQclear(res);
}

static void beat_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    repl_state *st = t->data;
    sl_pg *pg = st->rt->ctx->pg;
    if (st->renewal.holding || st->beat_sent || !pg) return;
    const char *params[] = {st->worker};
    st->beat_sent = 1;
    sl_pg_req *req = sl_pg_query(pg, "UPDATE sluice.workers SET heartbeat_at = now() WHERE id = $1",
                                 1, params, beat_done, st);
    if (st->beat_sent) st->beating = req; /* not answered at once (beat_done clears both) */
}

static void beat_stop(repl_state *st)
{
    struct ev_loop *loop = st->rt->ctx->loop;
    if (ev_is_active(&st->beat)) {
        ev_ref(loop); /* as libev asks, before stopping a watcher that was unref'd */
        ev_timer_stop(loop, &st->beat);
    }
    if (st->beating) sl_pg_cancel(st->beating);
    st->beating = NULL;
    st->beat_sent = 0;
}

/* ------------------------------------------------------------------ foreground runs */

static void op_free(fg_run *op)
{
    repl_state *st = op->st;
    if (op->prev)
        op->prev->next = op->next;
    else
        st->ops = op->next;
    if (op->next) op->next->prev = op->prev;
    sl_run_free(op->run);
    free(op->record_error);
    free(op->decision);
    free(op);
}

/* Sets why the outcome could not be recorded; when the copy fails, it still
 * was not (push_outcome reports that). */
static void set_record_error(fg_run *op, const char *why)
{
    op->record_error = strdup(why);
    op->record_oom = !op->record_error;
}

/* Pushes the outcome table on co (the task resumes with it), or only frees. */
static int push_outcome(lua_State *co, void *data)
{
    fg_run *op = data;
    if (co) {
        const sl_run_outcome *o = sl_run_outcome_of(op->run);
        lua_createtable(co, 0, 9);
        lua_pushstring(co, sl_queue_status_name(o->status));
        lua_setfield(co, -2, "status");
        lua_pushstring(co, sl_run_id(op->run));
        lua_setfield(co, -2, "run_id");
        lua_pushstring(co, sl_run_job_id(op->run));
        lua_setfield(co, -2, "job_id");
        lua_pushstring(co, o->result_json);
        lua_setfield(co, -2, "result_json");
        lua_pushstring(co, o->error);
        lua_setfield(co, -2, "error");
        lua_pushnumber(co, o->finished - o->started);
        lua_setfield(co, -2, "seconds");
        lua_pushstring(co, op->record_oom ? "out of memory" : op->record_error);
        lua_setfield(co, -2, "record_error");
        lua_pushstring(co, op->decision);
        lua_setfield(co, -2, "decision");
    }
    op_free(op);
    return co ? 1 : 0;
}

/* The outcome is recorded (or could not be): wake the task, or free. */
static void record_complete(fg_run *op)
{
    if (op->t)
        sl_task_wake(op->t, push_outcome, op);
    else
        op_free(op);
}

static void record_done(PGresult *res, const char *err, void *data)
{
    fg_run *op = data;
    op->req = NULL;
    op->recorded = 1;
    if (err) {
        sl_log(SL_WARN, "recording a REPL run failed", "run", sl_run_id(op->run), "error", err,
               NULL);
        set_record_error(op, err);
    } else if (PQntuples(res) == 1 && PQgetisnull(res, 0, 0)) {
        /* finish_runs() updated nothing: the run was no longer running */
        set_record_error(op, "the run was no longer running: its job was deleted, or its lease "
                             "was lost and another worker's rescue failed it and retried the job");
    } else if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 1)) {
        op->decision = strdup(PQgetvalue(res, 0, 1)); /* NULL if out of memory: not said */
    }
    if (res) PQclear(res);
    if (!op->sending) record_complete(op);
}

/* The run ended (completed, failed, timed out or cancelled): record it. */
static void run_ended(sl_run *run, void *data)
{
    fg_run *op = data;
    (void)run;
    op->ended = 1;
    running_changed(op->st, -1);
    sl_pg *pg = op->st->rt->ctx->pg;
    if (!pg) {
        set_record_error(op, "no database connection");
        record_complete(op);
        return;
    }
    sl_buf b = {0};
    sl_buf_puts(&b, "[");
    sl_queue_outcome_json(&b, op->run, NULL);
    sl_buf_puts(&b, "]");
    const char *p[] = {sl_buf_str(&b)};
    op->sending = 1;
    sl_pg_req *req =
        sl_pg_query(pg, "SELECT job_status, decision FROM sluice.finish_runs($1::jsonb)", 1, p,
                    record_done, op);
    op->sending = 0;
    sl_buf_free(&b);
    if (op->recorded)
        record_complete(op); /* the query failed at once */
    else
        op->req = req;
}

/* The waiting task was cancelled: end the run (it is recorded, then freed). */
static void run_cancel(void *data)
{
    fg_run *op = data;
    op->t = NULL;
    if (!op->ended) {
        sl_run_log(op->run, "interrupted");
        sl_run_cancel(op->run, SL_RUN_FAILED, "interrupted", 0);
    }
}

static const char *opt_string(lua_State *L, int idx, const char *key)
{
    lua_getfield(L, idx, key); /* left on the stack: keeps the string alive */
    return lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
}

/* clock() → the loop's time now (updated: the loop's own is from when this
 * iteration began), to pass to claimed(). */
static int l_clock(lua_State *L)
{
    struct ev_loop *loop = state_of(L)->rt->ctx->loop;
    ev_now_update(loop);
    lua_pushnumber(L, ev_now(loop));
    return 1;
}

/* claimed(sent) → true | nil, err: the claim of a run, sent at `sent` (clock()),
 * has been answered. Its lease runs from then: the fence counts from then (the
 * lease is held from now on, and run() starts the run under it); but past the
 * fence's share of the lease the lease may have run out and a rescue may have
 * failed the run already: it must not start (the caller gives it back to its
 * job with sluice.release_runs). */
static int l_claimed(lua_State *L)
{
    double sent = luaL_checknumber(L, 1);
    repl_state *st = state_of(L);
    if (!st->worker[0]) return luaL_error(L, "claimed: this process is not registered as a worker");
    struct ev_loop *loop = st->rt->ctx->loop;
    ev_now_update(loop);
    if (sl_queue_lease_claimed(&st->renewal, sent) < 0) {
        char why[256];
        sl_queue_late_claim_why(why, sizeof why, ev_now(loop) - sent, st->lease);
        lua_pushnil(L);
        lua_pushstring(L, why);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* run(spec) → outcome | nil, err. spec: a start_direct_run() row with
 * run_id, job_id, job_type, brand_id, params_json, checkpoint_json (strings),
 * attempt, timeout_seconds, trigger_source. */
static int l_run(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    sl_task *t = sl_task_check(L, "run");
    repl_state *st = state_of(L);
    sl_run_spec spec = {0};
    spec.run_id = opt_string(L, 1, "run_id");
    spec.job_id = opt_string(L, 1, "job_id");
    spec.job_type = opt_string(L, 1, "job_type");
    spec.brand_id = opt_string(L, 1, "brand_id");
    spec.params_json = opt_string(L, 1, "params_json");
    spec.checkpoint_json = opt_string(L, 1, "checkpoint_json");
    spec.trigger_source = opt_string(L, 1, "trigger_source");
    lua_getfield(L, 1, "attempt");
    spec.attempt = (int)luaL_optinteger(L, -1, 1);
    lua_getfield(L, 1, "timeout_seconds");
    spec.timeout_seconds = luaL_optnumber(L, -1, 0);
    /* the lease is held since claimed(): a run that does not start gives it up
     * when no other is running */
    const char *problem =
        !spec.run_id || !spec.job_type ? "run: spec needs run_id and job_type" : NULL;
    fg_run *op = problem ? NULL : calloc(1, sizeof *op);
    if (!op) {
        if (st->running == 0) sl_queue_lease_stop(&st->renewal);
        return luaL_error(L, "%s", problem ? problem : "run: out of memory");
    }
    char err[512];
    op->st = st;
    op->t = t;
    op->run = sl_run_start(st->rt, &spec, run_ended, op, err, sizeof err);
    if (!op->run) {
        free(op);
        if (st->running == 0) sl_queue_lease_stop(&st->renewal);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    op->next = st->ops;
    if (st->ops) st->ops->prev = op;
    st->ops = op;
    running_changed(st, 1);
    return sl_task_wait(L, t, run_cancel, op);
}

/* ------------------------------------------------------------------ reload */

typedef struct {
    sl_task *t;
    sl_pg_req *req; /* the registry sync in flight */
    int woken;
    char *problems;
    char *err;
    const char *fail; /* the error when err is NULL: a fixed message (out of memory) */
} reload_op;

static void reload_op_free(reload_op *op)
{
    free(op->problems);
    free(op->err);
    free(op);
}

static int push_reloaded(lua_State *co, void *data)
{
    reload_op *op = data;
    if (co) {
        lua_pushstring(co, op->problems);
        lua_pushstring(co, op->err ? op->err : op->fail);
    }
    reload_op_free(op);
    return co ? 2 : 0;
}

static void synced(PGresult *res, const char *err, void *data)
{
    reload_op *op = data;
    if (res) PQclear(res);
    op->req = NULL;
    op->woken = 1;
    op->err = err ? strdup(err) : NULL;
    if (err && !op->err) op->fail = "out of memory";
    sl_task_wake(op->t, push_reloaded, op);
}

static void reload_cancel(void *data)
{
    reload_op *op = data;
    if (op->req) sl_pg_cancel(op->req);
    reload_op_free(op);
}

/* reload() → problems | nil, sync_error | nil: loads every handler file again (a
 * file with problems keeps its previous version) and syncs the registry into the
 * database, so SQL enqueues see the new types. */
static int l_reload(lua_State *L)
{
    sl_task *t = sl_task_check(L, "reload");
    sl_runtime *rt = sl_runtime_of(L);
    reload_op *op = calloc(1, sizeof *op);
    if (!op) return luaL_error(L, "reload: out of memory");
    op->t = t;
    sl_task *asking = sl_runtime_host_enter(rt); /* loading handlers is the host's work */
    sl_runtime_load_handlers(rt, NULL, 0, &op->problems);
    char *reg = rt->ctx->pg ? sl_runtime_registry_json(rt) : NULL;
    sl_runtime_host_leave(rt, asking);
    if (!rt->ctx->pg) return push_reloaded(L, op);
    if (!reg) { /* logged; the handlers are loaded, the database is not told */
        op->fail = "cannot describe the handler registry";
        return push_reloaded(L, op);
    }
    const char *p[] = {reg};
    sl_pg_req *req = sl_pg_query(rt->ctx->pg, sl_queue_registry_sync_sql(rt, 0), 1, p, synced, op);
    free(reg);
    if (!op->woken) /* else it failed at once: op is alive until the task resumes */
        op->req = req;
    return sl_task_wait(L, t, reload_cancel, op);
}

/* worker() → id, lease_seconds | nil */
static int l_worker(lua_State *L)
{
    repl_state *st = state_of(L);
    if (!st->worker[0]) return 0;
    lua_pushstring(L, st->worker);
    lua_pushnumber(L, st->lease_seconds);
    return 2;
}

/* out(s): s and a newline on stdout, flushed, as print() writes outside runs:
 * a write that fails keeps its reason for the exit's message */
static int l_out(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    sl_cli_put_line(s, len);
    return 0;
}

static int l_in_transaction(lua_State *L)
{
    sl_task *t = sl_task_of(L);
    lua_pushboolean(L, t && t->pinned);
    return 1;
}

/* ------------------------------------------------------------------ state */

static int state_gc(lua_State *L)
{
    /* The runtime has ended every run by now (sl_runtime_free cancels them before
     * closing the state): drop the records still in flight. */
    repl_state *st = lua_touserdata(L, 1);
    sl_queue_lease_stop(&st->renewal);
    beat_stop(st);
    while (st->ops) {
        fg_run *op = st->ops;
        if (op->req) sl_pg_cancel(op->req);
        op_free(op);
    }
    return 0;
}

int luaopen_sluice_repl(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"clock", l_clock},   {"claimed", l_claimed}, {"run", l_run},
        {"reload", l_reload}, {"worker", l_worker},   {"in_transaction", l_in_transaction},
        {"out", l_out},       {NULL, NULL},
    };
    repl_state *st = lua_newuserdatauv(L, sizeof *st, 0);
    memset(st, 0, sizeof *st);
    st->rt = sl_runtime_of(L);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, state_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &state_key);
    luaL_newlib(L, fns);
    return 1;
}

/* ------------------------------------------------------------------ for repl.c */

void sl_repl_attach(sl_runtime *rt, const char *worker_id, double lease_seconds)
{
    repl_state *st = state_of(rt->L);
    snprintf(st->worker, sizeof st->worker, "%s", worker_id ? worker_id : "");
    st->lease_seconds = lease_seconds > 0 ? lease_seconds : 60;
    sl_config_fmt_number(st->lease_seconds, st->lease, sizeof st->lease);
    st->renewal = (sl_queue_lease){.ctx = rt->ctx, .worker = st->worker, .lease = st->lease};
    if (!st->worker[0] || ev_is_active(&st->beat)) return;
    ev_timer_init(&st->beat, beat_cb, st->lease_seconds / 3, st->lease_seconds / 3);
    st->beat.data = st;
    ev_timer_start(rt->ctx->loop, &st->beat);
    ev_unref(rt->ctx->loop);
}

/* An input's error as the person at the prompt (or reading -e's output) wants
 * it: without the frames of the REPL's wrapper (lua/sluice/repl.lua's evaluator
 * calls the input as upvalue 'fn') and of the host's own Lua, and with no
 * traceback at all when what is left says no more than the message's position
 * (error() called from the input itself: "[C]: in function 'error'"). */
static char *tidy_traceback(const char *msg)
{
    static const char marker[] = "\nstack traceback:\n";
    static const char wrapper_call[] = "in upvalue 'fn'";
    const char *tb = strstr(msg, marker);
    if (!tb) return strdup(msg);
    sl_buf b = {0};
    int telling = 0; /* frames that say more than the message */
    sl_buf_add(&b, msg, (size_t)(tb - msg));
    size_t head = b.len;
    sl_buf_puts(&b, "\nstack traceback:");
    for (const char *p = tb + sizeof marker - 1; *p;) {
        size_t n = strcspn(p, "\n");
        const char *call = memmem(p, n, wrapper_call, sizeof wrapper_call - 1);
        if (memmem(p, n, "sluice/repl.lua:", 16) || memmem(p, n, "sluice/runtime.lua:", 19) ||
            memmem(p, n, "(...tail calls...)", 18)) {
            /* the host's frames */
        } else if (call) {
            sl_buf_printf(&b, "\n%.*sin main chunk", (int)(call - p), p);
        } else {
            sl_buf_printf(&b, "\n%.*s", (int)n, p);
            if (!memmem(p, n, "[C]: ", 5)) telling = 1;
        }
        p += n;
        if (*p == '\n') p++;
    }
    if (!telling) b.data[head] = '\0';
    char *out = strdup(sl_buf_str(&b));
    sl_buf_free(&b);
    return out;
}

static void chunk_done(int failed, const char *message, void *data)
{
    repl_state *st = data;
    sl_chunk_done_fn done = st->done;
    char *tidy = message ? tidy_traceback(message) : NULL;
    st->chunk = NULL;
    st->done = NULL;
    if (done) done(failed, tidy ? tidy : message, st->done_data); /* untidied: out of memory */
    free(tidy);
}

int sl_repl_eval(sl_runtime *rt, const char *src, size_t len, const char *chunkname,
                 sl_chunk_done_fn done, void *data, char *err, size_t errlen)
{
    lua_State *L = rt->L;
    repl_state *st = state_of(L);
    int top = lua_gettop(L);
    if (st->chunk) {
        snprintf(err, errlen, "an input is still being evaluated");
        return SL_REPL_ERROR;
    }
    lua_pushlstring(L, src, len);
    lua_pushstring(L, chunkname);
    /* repl_compile(source, chunkname) → function | nil, message, incomplete */
    if (sl_host_call(rt, "repl_compile", 2, 3, err, errlen) != 0) return SL_REPL_ERROR;
    if (lua_isnil(L, -3)) {
        int more = lua_toboolean(L, -1);
        snprintf(err, errlen, "%s", lua_tostring(L, -2) ? lua_tostring(L, -2) : "syntax error");
        lua_settop(L, top);
        return more ? SL_REPL_MORE : SL_REPL_ERROR;
    }
    lua_pop(L, 2);
    sl_task *t = sl_task_spawn(rt, L, NULL, 0);
    t->chunk_done = chunk_done;
    t->chunk_data = st;
    st->chunk = t;
    st->done = done;
    st->done_data = data;
    lua_settop(L, top);
    return SL_REPL_STARTED;
}

int sl_repl_interrupt(sl_runtime *rt, const char *why)
{
    repl_state *st = state_of(rt->L);
    if (!st->chunk) return 0;
    sl_task_cancel(st->chunk, why);
    return 1;
}

void sl_repl_stop_runs(sl_runtime *rt, const char *why)
{
    repl_state *st = state_of(rt->L);
    for (;;) {
        fg_run *op = st->ops;
        while (op && op->ended)
            op = op->next;
        if (!op) break;
        sl_run_log(op->run, why);
        sl_run_cancel(op->run, SL_RUN_FAILED, why, 1);
    }
}

int sl_repl_pending(sl_runtime *rt)
{
    int n = 0;
    for (fg_run *op = state_of(rt->L)->ops; op; op = op->next)
        n++;
    return n;
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **sl_repl_complete(sl_runtime *rt, const char *before, const char *word, int *append)
{
    lua_State *L = rt->L;
    char err[512];
    int top = lua_gettop(L);
    *append = '\0';
    lua_pushstring(L, before);
    lua_pushstring(L, word);
    /* repl_complete(before, word) → { candidates… }, append */
    if (sl_host_call(rt, "repl_complete", 2, 2, err, sizeof err) != 0) return NULL;
    if (!lua_istable(L, -2)) {
        lua_settop(L, top);
        return NULL;
    }
    if (lua_type(L, -1) == LUA_TSTRING) *append = (unsigned char)lua_tostring(L, -1)[0];
    lua_Integer n = luaL_len(L, -2);
    if (n <= 0) {
        lua_settop(L, top);
        return NULL;
    }
    if (n > 500) n = 500;
    char **m = calloc((size_t)n + 2, sizeof *m); /* out of memory: no candidates */
    int k = 0;
    for (lua_Integer i = 1; m && i <= n; i++) {
        lua_rawgeti(L, -2, i);
        if (lua_type(L, -1) == LUA_TSTRING && (m[1 + k] = strdup(lua_tostring(L, -1)))) k++;
        lua_pop(L, 1);
    }
    lua_settop(L, top);
    if (k == 0) {
        free(m);
        return NULL;
    }
    qsort(m + 1, (size_t)k, sizeof *m, by_string);
    /* [0]: the longest prefix every candidate shares */
    size_t common = strlen(m[1]);
    for (int i = 2; i <= k; i++) {
        size_t j = 0;
        while (j < common && m[i][j] == m[1][j])
            j++;
        common = j;
    }
    if (k == 1) {
        m[0] = m[1];
        m[1] = NULL;
    } else if (!(m[0] = strndup(m[1], common))) { /* out of memory: no candidates */
        for (int i = 1; i <= k; i++)
            free(m[i]);
        free(m);
        return NULL;
    }
    return m;
}
