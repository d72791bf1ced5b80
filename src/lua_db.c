/*
 * lua_db.c — sluice.db's C driver: parameterised queries on the nonblocking pool,
 * and the begin/commit/rollback primitives sluice.db.transaction is built on.
 *
 *   rows, err = query(sql, ...)   -- parameters are always bound ($1, $2 …)
 *
 * Values: nil and the null sentinel → NULL; booleans, numbers, strings as text;
 * tables → JSON (json.c). Results: an array of rows keyed by column name; int/float/numeric
 * → numbers, bool → boolean, json/jsonb → decoded values (json.c), NULL → the null
 * sentinel (cjson.null); rows.affected (through the rows' metatable) holds the
 * command's row count. SQL errors come back as nil, "message", sqlstate: the
 * server's five-character SQLSTATE ("22003"), or nil when no server answered
 * (the connection failed or was lost) — so that a caller can tell bad data
 * (classes 22, 23) from a failure a retry may cure. A NUL byte in the text or a
 * string parameter, where libpq would cut the string, is bad data of the same
 * kind: not sent, nil, err, "22021".
 *
 * A failed query inside a transaction aborts it, and Postgres then answers
 * COMMIT with the tag ROLLBACK rather than an error: commit() reports that as
 * nil, err, sqlstate naming the transaction's first failed query (kept on its
 * task), so a rolled-back transaction never reads as committed.
 */
#include "cli.h"
#include "config.h"
#include "ctx.h"
#include "json.h"
#include "pg.h"
#include "runtime_int.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OID_BOOL 16
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_OID 26
#define OID_JSON 114
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_NUMERIC 1700
#define OID_JSONB 3802

/* What a db_op is: a query, acquiring a connection, or the statement that ends
 * a transaction and releases its connection. */
enum { OP_QUERY, OP_ACQUIRE, OP_ROLLBACK, OP_COMMIT };

typedef struct {
    sl_task *t;
    sl_pg_req *req;
    PGresult *res;
    char *err;
    char sqlstate[6]; /* of err, "" when no server answered */
    int kind;         /* OP_* */
    int oom;          /* an error came but could not be copied: err is NULL */
    sl_pg_conn *conn;
} db_op;

/* Copies the error a callback got into op->err; when the copy cannot be made the
 * op still fails, with op_error's fallback message. */
static void set_error(db_op *op, const char *err)
{
    op->err = err ? strdup(err) : NULL;
    op->oom = err && !op->err;
}

/* The op's error for the task, or NULL when it succeeded. */
static const char *op_error(const db_op *op)
{
    return op->oom ? "sluice.db: out of memory" : op->err;
}

static sl_pg *open_pool(lua_State *L, sl_ctx *ctx)
{
    char *url = NULL;
    PGconn *c = NULL;
    if (ctx->db_url) {
        url = strdup(ctx->db_url);
        if (!url) luaL_error(L, "sluice.db: out of memory");
    } else { /* first use in a script or the REPL: open (and migrate) the database once */
        int failed = 1;
        c = sl_cli_open(ctx->cfg, &url, &failed);
        ctx->db_refused |= failed == 2; /* `sluice exec` exits 2 for it, not 1 */
    }
    if (!url) luaL_error(L, "sluice.db: the database is not available"); /* c is NULL too */
    sl_pg *pg = sl_pg_new(ctx->loop, url, ctx->cfg ? ctx->cfg->pool_size : 4);
    free(url);
    if (c) sl_pg_adopt(pg, c); /* the pool's first connection, not a second one */
    return pg;
}

/* The context's pool, opened on first use. A query's result larger than the Lua
 * state's cap could never be handed to the task: the pool stops reading it
 * there (sl_pg_limit_results), before it takes the process's memory. */
static sl_pg *pool(lua_State *L, sl_ctx *ctx)
{
    if (!ctx->pg) ctx->pg = open_pool(L, ctx);
    sl_pg_limit_results(ctx->pg, sl_runtime_of(L)->opts.memory_limit);
    return ctx->pg;
}

/* ------------------------------------------------------------------ results */

static void push_value(lua_State *L, PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) {
        lua_pushlightuserdata(L, NULL); /* cjson.null */
        return;
    }
    const char *v = PQgetvalue(res, row, col);
    switch (PQftype(res, col)) {
    case OID_BOOL:
        lua_pushboolean(L, v[0] == 't');
        break;
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID:
    case OID_FLOAT4:
    case OID_FLOAT8:
    case OID_NUMERIC:
        if (lua_stringtonumber(L, v) == 0) lua_pushstring(L, v); /* NaN, Infinity, huge numerics */
        break;
    case OID_JSON:
    case OID_JSONB: {
        char err[128]; /* json.c's decoder; text it refuses (deeper than it goes) stays text */
        if (sl_json_decode(L, v, (size_t)PQgetlength(res, row, col), err, sizeof err) != 0)
            lua_pushstring(L, v);
        break;
    }
    default:
        lua_pushstring(L, v);
    }
}

/* Builds the rows on the main state (not on the suspended coroutine), then
 * moves them to the coroutine. */
static int push_result(lua_State *co, void *data)
{
    db_op *op = data;
    if (!co) {
        if (op->res) PQclear(op->res);
        free(op->err);
        free(op);
        return 0;
    }
    int n;
    if (op_error(op)) {
        lua_pushnil(co);
        lua_pushstring(co, op_error(op));
        if (op->sqlstate[0])
            lua_pushstring(co, op->sqlstate);
        else
            lua_pushnil(co);
        n = 3;
    } else {
        lua_State *L = sl_runtime_of(co)->L;
        PGresult *res = op->res;
        int rows = PQntuples(res), cols = PQnfields(res);
        lua_createtable(L, rows, 1);
        for (int r = 0; r < rows; r++) {
            lua_createtable(L, 0, cols);
            for (int c = 0; c < cols; c++) {
                push_value(L, res, r, c);
                lua_setfield(L, -2, PQfname(res, c));
            }
            lua_rawseti(L, -2, r + 1);
        }
        /* rows.affected through a metatable, so the rows stay a plain array */
        const char *affected = PQcmdTuples(res);
        lua_createtable(L, 0, 1);
        lua_createtable(L, 0, 1);
        lua_pushinteger(L, affected && *affected ? atoll(affected) : rows);
        lua_setfield(L, -2, "affected");
        lua_setfield(L, -2, "__index");
        lua_setmetatable(L, -2);
        lua_xmove(L, co, 1);
        n = 1;
    }
    if (op->res) PQclear(op->res);
    free(op->err);
    free(op);
    return n;
}

/* A COMMIT answered with the tag ROLLBACK: a statement inside the transaction
 * failed, Postgres aborted it and rolled it back instead of committing (it
 * raises no error for that). Turns the answer into nil, err, sqlstate naming
 * the first failure the task saw inside the transaction, when there was one. */
static void commit_rolled_back(db_op *op)
{
    static const char why[] = "the transaction was rolled back because a statement in it failed";
    sl_task *t = op->t;
    size_t len = sizeof why + 2 + (t->tx_error ? strlen(t->tx_error) : 0);
    op->err = malloc(len);
    snprintf(op->sqlstate, sizeof op->sqlstate, "%s",
             t->tx_error && t->tx_sqlstate[0] ? t->tx_sqlstate : "25P02");
    if (!op->err) {
        op->oom = 1; /* still a failure, with the fallback message */
        return;
    }
    if (t->tx_error)
        snprintf(op->err, len, "%s: %s", why, t->tx_error);
    else
        snprintf(op->err, len, "%s", why);
}

static void query_done(PGresult *res, const char *err, void *data)
{
    db_op *op = data;
    sl_task *t = op->t;
    op->req = NULL;
    op->res = res;
    set_error(op, err);
    if (err) /* the SQLSTATE is the delivered request's only during this callback */
        snprintf(op->sqlstate, sizeof op->sqlstate, "%s", sl_pg_error_sqlstate(sl_task_ctx(t)->pg));
    if (op->kind == OP_QUERY && err && t->pinned && !t->tx_error) {
        t->tx_error = strdup(err); /* the transaction's first failure (NULL: out of memory,
                                    * then COMMIT reports the failure without it) */
        memcpy(t->tx_sqlstate, op->sqlstate, sizeof t->tx_sqlstate);
    }
    if (op->kind == OP_COMMIT && !err && res && strcmp(PQcmdStatus(res), "ROLLBACK") == 0)
        commit_rolled_back(op);
    if (op->kind == OP_ROLLBACK || op->kind == OP_COMMIT) {
        if (t->pinned) sl_pg_release(t->pinned, 0);
        t->pinned = NULL;
        free(t->tx_error);
        t->tx_error = NULL;
    }
    sl_task_wake(t, push_result, op);
}

/* The task was cancelled (its run ended: a timeout, a cancel, a stop; the
 * REPL's Ctrl-C): a query in flight is stopped in the server as well, or it
 * would hold its connection for as long as it runs. A COMMIT or ROLLBACK is
 * left to finish. */
static void op_cancel(void *data)
{
    db_op *op = data;
    if (op->req && op->kind == OP_QUERY)
        sl_pg_interrupt(op->req);
    else if (op->req)
        sl_pg_cancel(op->req);
    free(op);
}

/* ------------------------------------------------------------------ query */

/* Converts argument i to the text form Postgres parses; NULL for SQL NULL. */
static const char *param_text(lua_State *L, int i)
{
    switch (lua_type(L, i)) {
    case LUA_TNIL:
        return NULL;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, i) == NULL) return NULL;
        break;
    case LUA_TBOOLEAN:
        return lua_toboolean(L, i) ? "true" : "false";
    case LUA_TNUMBER:
        if (lua_isinteger(L, i)) {
            lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, i));
        } else {
            char buf[64];
            snprintf(buf, sizeof buf, "%.17g", lua_tonumber(L, i));
            lua_pushstring(L, buf);
        }
        lua_replace(L, i);
        return lua_tostring(L, i);
    case LUA_TSTRING:
        return lua_tostring(L, i);
    case LUA_TTABLE:
        sl_json_push(L, i); /* a table that cannot be encoded raises: misuse */
        lua_replace(L, i);
        return lua_tostring(L, i);
    default:
        break;
    }
    luaL_error(L, "sluice.db.query: parameter %d: cannot send a %s to the database", i - 1,
               luaL_typename(L, i));
    return NULL;
}

/* Where the query's text (0) or its parameter i (1 …) holds a NUL byte, which
 * libpq would take as the end of the string (sending the rest of the text
 * silently cut) and Postgres text cannot store: -1 when none does. */
static int nul_at(lua_State *L, int first, int n, const char *sql, size_t sql_len,
                  const char *const *params)
{
    if (strlen(sql) != sql_len) return 0;
    for (int i = 0; i < n; i++) {
        size_t len;
        if (params[i] && lua_type(L, first + i) == LUA_TSTRING &&
            (lua_tolstring(L, first + i, &len), strlen(params[i]) != len))
            return i + 1;
    }
    return -1;
}

/* What a query whose text or parameter holds a NUL gets instead of being sent:
 * nil, err, 22021 (character_not_in_repertoire, as Postgres says of a NUL in
 * text: bad data). Inside a transaction it is the transaction's failure as a
 * failed statement is: recorded, and the transaction aborted on the server
 * (by a statement that fails there the same way), so that COMMIT rolls back. */
static int refuse_nul(lua_State *L, sl_task *t, int at)
{
    if (at == 0)
        lua_pushliteral(L, "sluice.db.query: the query holds a NUL byte");
    else
        lua_pushfstring(L,
                        "sluice.db.query: parameter %d holds a NUL byte, which Postgres text "
                        "cannot store",
                        at);
    if (t->pinned) {
        if (!t->tx_error) {
            t->tx_error = strdup(lua_tostring(L, -1));
            memcpy(t->tx_sqlstate, "22021", sizeof t->tx_sqlstate);
        }
        sl_pg_conn_query(t->pinned, "SELECT convert_from('\\x00'::bytea, 'UTF8')", 0, NULL, NULL,
                         NULL);
    }
    lua_pushnil(L);
    lua_insert(L, -2);
    lua_pushliteral(L, "22021");
    return 3;
}

static int send_query(lua_State *L, sl_task *t, const char *sql, size_t sql_len, int first,
                      int kind)
{
    sl_ctx *ctx = sl_task_ctx(t);
    int n = lua_gettop(L) - first + 1;
    if (n < 0) n = 0;
    if (n > 100) return luaL_error(L, "sluice.db.query: too many parameters");
    const char *params[100];
    for (int i = 0; i < n; i++)
        params[i] = param_text(L, first + i);
    int nul = nul_at(L, first, n, sql, sql_len, params);
    if (nul >= 0) return refuse_nul(L, t, nul);
    sl_pg *pg = t->pinned ? NULL : pool(L, ctx); /* may raise: before op is allocated */
    db_op *op = calloc(1, sizeof *op);
    if (!op) return luaL_error(L, "sluice.db.query: out of memory");
    op->t = t;
    op->kind = kind;
    if (t->pinned)
        op->req = sl_pg_conn_query(t->pinned, sql, n, params, query_done, op);
    else
        op->req = sl_pg_query_shared(pg, sql, n, params, query_done, op);
    return sl_task_wait(L, t, op_cancel, op);
}

static int l_query(lua_State *L)
{
    size_t sql_len;
    const char *sql = luaL_checklstring(L, 1, &sql_len);
    sl_task *t = sl_task_check(L, "sluice.db.query");
    return send_query(L, t, sql, sql_len, 2, OP_QUERY);
}

/* ------------------------------------------------------------------ transactions */

static int push_acquired(lua_State *co, void *data)
{
    db_op *op = data;
    int n = 0;
    if (co) {
        if (op_error(op)) {
            lua_pushnil(co);
            lua_pushstring(co, op_error(op));
            n = 2;
        } else {
            lua_pushboolean(co, 1);
            n = 1;
        }
    }
    free(op->err);
    free(op);
    return n;
}

static void acquired(sl_pg_conn *conn, const char *err, void *data)
{
    db_op *op = data;
    op->req = NULL;
    if (conn) {
        op->t->pinned = conn;
        sl_pg_conn_query(conn, "BEGIN", 0, NULL, NULL, NULL);
    }
    set_error(op, err);
    sl_task_wake(op->t, push_acquired, op);
}

static void acquire_cancel(void *data)
{
    db_op *op = data;
    if (op->req) sl_pg_cancel(op->req);
    free(op);
}

/* begin() → true | nil, err | false, misuse: pins a connection for this task
 * and opens a transaction. Misuse (not a task, a transaction open already) is
 * returned for sluice.db.transaction to raise at its caller's line. */
static int l_begin(lua_State *L)
{
    sl_task *t = sl_task_test(L, "sluice.db.transaction");
    if (t && t->pinned) lua_pushliteral(L, "sluice.db.transaction: already inside a transaction");
    if (!t || t->pinned) { /* [misuse] */
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    sl_pg *pg = pool(L, sl_task_ctx(t)); /* may raise: before op is allocated */
    db_op *op = calloc(1, sizeof *op);
    if (!op) return luaL_error(L, "sluice.db.transaction: out of memory");
    op->t = t;
    op->kind = OP_ACQUIRE;
    op->req = sl_pg_acquire_shared(pg, acquired, op);
    return sl_task_wait(L, t, acquire_cancel, op);
}

static int finish_tx(lua_State *L, const char *sql, int kind)
{
    sl_task *t = sl_task_check(L, "sluice.db.transaction");
    if (!t->pinned) return luaL_error(L, "sluice.db: no transaction is open");
    lua_settop(L, 0);
    return send_query(L, t, sql, strlen(sql), 1, kind);
}

static int l_commit(lua_State *L)
{
    return finish_tx(L, "COMMIT", OP_COMMIT);
}

static int l_rollback(lua_State *L)
{
    return finish_tx(L, "ROLLBACK", OP_ROLLBACK);
}

int luaopen_sluice_db(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"query", l_query},       {"begin", l_begin}, {"commit", l_commit},
        {"rollback", l_rollback}, {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
