/*
 * lua_http.c — sluice.http's C driver: one yielding request primitive on the
 * process's curl multi driver (src/http.c), and the limiter setter/getter. The
 * friendly API handlers use (query encoding, JSON bodies, shorthands,
 * case-insensitive headers, res:json(), limit keys) is lua/sluice/http.lua.
 *
 *   res, err = request{ method = "GET", url = "https://…",
 *                       headers = { Name = "value", … }, body = "…",
 *                       timeout = 30, max_bytes = 52428800, follow = true,
 *                       max_redirects = 5, limit_key = "graph",
 *                       save_to = part }   -- a pending asset (lua_files.c)
 *   res = { status = 200, headers = { ["content-type"] = "…", … },
 *           body = "…", size = 1234, url = "final url", seconds = 0.012 }
 *   With save_to the body is written to the pending asset as it arrives and
 *   res.body holds only its first SAVE_HEAD bytes (enough to tell a file's type
 *   and an image's size); res.size is the whole body's.
 *   err = "connection refused" | "timed out after 2s" | "too many redirects" |
 *         "invalid url '…': …" (returned at once) | …
 *
 *   limit(name, { rate =, per =, burst =, concurrency = })   -- the code's setting;
 *                                                            -- {} removes it
 *   limit(name) → { rate, per, burst, concurrency, in_flight, waiting,
 *                   source = { rate =, burst =, concurrency = "config"|"code"|"both" },
 *                   config = { rate, per, burst, concurrency } | nil,
 *                   code = … | nil } | nil
 *   The limit in force is, part by part, the stricter of the config file's
 *   http_limit and the code's setting (sl_http_limit_merge).
 *
 * request follows the yielding-call steps of task.h: check the arguments (misuse
 * raises), check the task may yield, start the transfer, park with
 * sl_http_cancel as the cancel hook; the done callback only wakes the task and
 * push_response builds the result on resume. The client (ctx->http) is created
 * on first use; it is freed with the context (sl_queue_close, sl_cmd_serve).
 */
#include "buf.h"
#include "ctx.h"
#include "http.h"
#include "log.h"
#include "runtime_int.h"

#include <ctype.h>
#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHAT "sluice.http.request"
#define SAVE_HEAD ((size_t)256 << 10)
#define DEFAULT_MAX_BYTES ((size_t)50 << 20)
#define MAX_TIMEOUT (3650 * 86400.0) /* seconds: the longest duration sluice takes */
#define MAX_CONCURRENCY 100000       /* as the config file's http_limit */

/* The context's client, created on first use; raises when libcurl cannot
 * start (sl_http_new logged why), so that the run fails and is retried. */
static sl_http *http_of(lua_State *L, sl_ctx *ctx, const char *what)
{
    if (!ctx->http) ctx->http = sl_http_new(ctx->loop, ctx->cfg);
    if (!ctx->http) luaL_error(L, "%s: the HTTP client could not be started (see the log)", what);
    return ctx->http;
}

/* ------------------------------------------------------------------ results */

/* Header lines → a table keyed by lower-case name; repeated names are joined
 * with ", ", and a folded line (one that starts with a space or a tab, the
 * obsolete line folding of RFC 9112 5.2) continues the value of the line
 * before, joined with a space. Pushed on co. */
static void push_headers(lua_State *co, const char *p, size_t len)
{
    const char *end = p + len;
    char name[256];
    int folds = 0; /* name holds the field of the line before: a folded line continues it */
    lua_newtable(co);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (*p == ' ' || *p == '\t') {
            const char *v = p, *ve = line_end;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if (folds && ve > v) {
                size_t had = 0;
                lua_getfield(co, -1, name);
                lua_tolstring(co, -1, &had);
                if (had > 0) {
                    lua_pushliteral(co, " ");
                    lua_pushlstring(co, v, (size_t)(ve - v));
                    lua_concat(co, 3);
                } else {
                    lua_pop(co, 1);
                    lua_pushlstring(co, v, (size_t)(ve - v));
                }
                lua_setfield(co, -2, name);
            }
        } else if (colon && colon > p) {
            size_t n = (size_t)(colon - p);
            folds = n < sizeof name;
            if (n < sizeof name) {
                for (size_t i = 0; i < n; i++)
                    name[i] = (char)tolower((unsigned char)p[i]);
                name[n] = '\0';
                const char *v = colon + 1, *ve = line_end;
                while (v < ve && (*v == ' ' || *v == '\t'))
                    v++;
                while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                    ve--;
                if (lua_getfield(co, -1, name) == LUA_TSTRING) {
                    lua_pushliteral(co, ", ");
                    lua_pushlstring(co, v, (size_t)(ve - v));
                    lua_concat(co, 3);
                } else {
                    lua_pop(co, 1);
                    lua_pushlstring(co, v, (size_t)(ve - v));
                }
                lua_setfield(co, -2, name);
            }
        } else {
            folds = 0;
        }
        p = line_end + 1;
    }
}

/* The prepare function (task.h): the request's outcome as Lua values. */
static int push_response(lua_State *co, void *data)
{
    sl_http_req *req = data;
    int n = 0;
    if (co) {
        const sl_http_result *r = sl_http_result_of(req);
        lua_checkstack(co, 8);
        if (r->error) {
            lua_pushnil(co);
            lua_pushstring(co, r->error);
            n = 2;
        } else {
            lua_createtable(co, 0, 6);
            lua_pushinteger(co, r->status);
            lua_setfield(co, -2, "status");
            push_headers(co, r->headers, r->headers_len);
            lua_setfield(co, -2, "headers");
            lua_pushlstring(co, r->body, r->body_len);
            lua_setfield(co, -2, "body");
            lua_pushinteger(co, (lua_Integer)r->body_size);
            lua_setfield(co, -2, "size");
            lua_pushstring(co, r->url);
            lua_setfield(co, -2, "url");
            lua_pushnumber(co, r->seconds);
            lua_setfield(co, -2, "seconds");
            n = 1;
        }
    }
    sl_asset_sink_done(sl_http_sink_data(req));
    sl_http_req_free(req);
    return n;
}

static void request_done(sl_http_req *req, void *data)
{
    sl_task_wake(data, push_response, req);
}

static void request_cancel(void *op)
{
    sl_asset_sink_done(sl_http_sink_data(op));
    sl_http_cancel(op); /* removes the transfer from the multi handle at once */
}

/* ------------------------------------------------------------------ request */

/* misuse()'s level for request(): where the handler's call is, which the
 * spec's `level` field names as http.lua counts levels. */
#define AT_CALL 0

/* Raises fmt… as a misuse, prefixed with the position `level` levels up as
 * luaL_where counts (1: the http.lua line that called this driver; 2: the
 * line that called that http.lua function), or, with AT_CALL, request()'s. */
static int misuse(lua_State *L, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    if (level == AT_CALL) {
        lua_getfield(L, 1, "level");
        level = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    luaL_where(L, level > 0 ? level : 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
    return lua_error(L);
}

/* A string option, or def when absent; with len, its length (NUL bytes
 * included: strlen stops at the first). */
static const char *opt_lstring(lua_State *L, const char *field, const char *def, size_t *len)
{
    int ty = lua_getfield(L, 1, field);
    const char *s = def;
    size_t n = def ? strlen(def) : 0;
    if (ty == LUA_TSTRING)
        s = lua_tolstring(L, -1, &n); /* kept alive by the spec table */
    else if (ty != LUA_TNIL)
        misuse(L, AT_CALL, WHAT ": %s must be a string, not a %s", field, luaL_typename(L, -1));
    lua_pop(L, 1);
    if (len) *len = n;
    return s;
}

static const char *opt_string(lua_State *L, const char *field, const char *def)
{
    return opt_lstring(L, field, def, NULL);
}

/* A number option from min to max (HUGE_VAL: no upper bound), or def when absent. */
static double opt_number(lua_State *L, const char *field, double def, double min, double max)
{
    int ty = lua_getfield(L, 1, field);
    double d = def;
    if (ty == LUA_TNUMBER) {
        d = lua_tonumber(L, -1);
        char lo[32], hi[48] = "";
        snprintf(lo, sizeof lo, "%g", min);
        if (max < HUGE_VAL) snprintf(hi, sizeof hi, " and at most %.0f", max);
        if (!(d >= min && d <= max))
            misuse(L, AT_CALL, WHAT ": %s must be a number of at least %s%s, not %s", field, lo, hi,
                   lua_tostring(L, -1));
    } else if (ty != LUA_TNIL) {
        misuse(L, AT_CALL, WHAT ": %s must be a number, not a %s", field, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return d;
}

static int header_token_ok(const char *s, size_t n)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 127 || strchr("\"(),/:;<=>?@[\\]{}", c)) /* RFC 9110 5.6.2 */
            return 0;
    }
    return 1;
}

/* Checks the headers table (misuse raises) and returns the size of its lines. */
static size_t check_headers(lua_State *L, int idx)
{
    size_t total = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t kn, vn;
        if (lua_type(L, -2) != LUA_TSTRING)
            misuse(L, AT_CALL, WHAT ": header names must be strings");
        const char *k = lua_tolstring(L, -2, &kn);
        if (!header_token_ok(k, kn))
            misuse(L, AT_CALL, WHAT ": '%s' is not a valid header name", k);
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            misuse(L, AT_CALL, WHAT ": header %s must be a string or number, not a %s", k,
                   luaL_typename(L, -1));
        if (lua_type(L, -1) == LUA_TNUMBER && !isfinite(lua_tonumber(L, -1)))
            misuse(L, AT_CALL, WHAT ": header %s must be a finite number, not %s", k,
                   lua_tostring(L, -1)); /* it went out as "-nan" or "inf" */
        lua_pushvalue(L, -1);
        const char *v = lua_tolstring(L, -1, &vn); /* a copy: numbers convert in place */
        if (memchr(v, '\r', vn) || memchr(v, '\n', vn) || strlen(v) != vn)
            misuse(L, AT_CALL, WHAT ": header %s must not contain line breaks or NUL bytes", k);
        total += kn + vn + 4;
        lua_pop(L, 2);
    }
    return total;
}

/* Appends "Name: value\n" for each header (already checked) to b. Allocates
 * nothing on the Lua side, so it cannot raise. */
static void build_headers(lua_State *L, int idx, sl_buf *b)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        char num[64];
        size_t vn;
        const char *v;
        if (lua_type(L, -1) == LUA_TSTRING) {
            v = lua_tolstring(L, -1, &vn);
        } else {
            if (lua_isinteger(L, -1))
                snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, -1));
            else
                snprintf(num, sizeof num, "%.14g", lua_tonumber(L, -1));
            v = num;
            vn = strlen(num);
        }
        sl_buf_puts(b, lua_tostring(L, -2));
        /* blanks alone are no value either: libcurl reads "Name: " as "do not
         * send Name", which dropped the header (and its own User-Agent) */
        if (strspn(v, " \t") == vn) {
            sl_buf_puts(b, ";\n"); /* libcurl's syntax for a header with no value */
        } else {
            sl_buf_puts(b, ": ");
            sl_buf_add(b, v, vn);
            sl_buf_puts(b, "\n");
        }
        lua_pop(L, 1);
    }
}

/* request(spec) → res | nil, err (see the file comment). */
static int l_request(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    sl_task *t = sl_task_test(L, WHAT);
    if (!t) return misuse(L, AT_CALL, "%s", lua_tostring(L, -1)); /* not a task */
    sl_http *h = http_of(L, sl_task_ctx(t), WHAT);
    sl_http_opts o = {0};

    const char *method = opt_string(L, "method", "GET");
    char upper[32];
    size_t mn = strlen(method);
    if (mn == 0 || mn >= sizeof upper) return misuse(L, AT_CALL, WHAT ": bad method '%s'", method);
    for (size_t i = 0; i < mn; i++) {
        if (!isalpha((unsigned char)method[i]))
            return misuse(L, AT_CALL, WHAT ": bad method '%s'", method);
        upper[i] = (char)toupper((unsigned char)method[i]);
    }
    upper[mn] = '\0';
    o.method = upper;

    size_t url_len;
    o.url = opt_lstring(L, "url", NULL, &url_len);
    if (!o.url) return misuse(L, AT_CALL, WHAT ": url is required");
    /* libcurl would read the URL up to the NUL: another URL than the one given */
    int url_nul = strlen(o.url) != url_len;
    /* libcurl takes whole milliseconds in a long: math.huge converted was undefined */
    o.timeout = opt_number(L, "timeout", 30, 0.001, MAX_TIMEOUT);
    double mb = opt_number(L, "max_bytes", 0, 1, HUGE_VAL); /* 0: not given */
    double mr = opt_number(L, "max_redirects", 5, 0, HUGE_VAL);
    o.max_redirects = mr > 1000 ? 1000 : (int)mr;
    o.limit_key = opt_string(L, "limit_key", NULL);

    int ty = lua_getfield(L, 1, "follow");
    if (ty != LUA_TNIL && ty != LUA_TBOOLEAN)
        return misuse(L, AT_CALL, WHAT ": follow must be a boolean");
    o.follow = ty == LUA_TNIL ? 1 : lua_toboolean(L, -1);
    lua_pop(L, 1);

    ty = lua_getfield(L, 1, "body"); /* stays on the stack while the request starts */
    if (ty == LUA_TSTRING)
        o.body = lua_tolstring(L, -1, &o.body_len);
    else if (ty != LUA_TNIL)
        return misuse(L, AT_CALL, WHAT ": body must be a string, not a %s", luaL_typename(L, -1));

    ty = lua_getfield(L, 1, "headers");
    int hidx = lua_gettop(L);
    if (ty != LUA_TNIL && ty != LUA_TTABLE)
        return misuse(L, AT_CALL, WHAT ": headers must be a table, not a %s", luaL_typename(L, -1));
    if (ty == LUA_TTABLE) check_headers(L, hidx);

    if (!lua_isyieldable(L))
        return luaL_error(L, WHAT " cannot wait here (inside a metamethod or a C iterator)");

    /* stays on the stack (keeps the pending asset alive) while the request runs */
    int saving = lua_getfield(L, 1, "save_to") != LUA_TNIL;
    /* a body kept in memory is handed to the task whole: one past the Lua
     * state's cap could never be, and would take the process's memory first */
    size_t cap = sl_runtime_of(L)->opts.memory_limit;
    if (mb == 0) /* the default, within the cap */
        o.max_bytes = saving || cap > DEFAULT_MAX_BYTES ? DEFAULT_MAX_BYTES : cap;
    else if (!saving && mb > (double)cap)
        return misuse(L, AT_CALL,
                      WHAT ": max_bytes may be at most %d MB for a body kept in memory (the "
                           "memory cap, memory_limit_mb); save_to takes larger ones",
                      (int)(cap >> 20));
    else /* a file takes any size the disk does; this keeps the conversion defined */
        o.max_bytes = mb < 0x1p62 ? (size_t)mb : (size_t)1 << 62;
    if (saving) {
        int sidx = lua_gettop(L);
        lua_getfield(L, 1, "level"); /* the caller's level, as misuse() takes it */
        int level = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        o.sink_data = sl_asset_sink_claim(L, sidx, WHAT, level > 0 ? level : 1);
        o.sink = sl_asset_sink_write;
        o.keep_head = SAVE_HEAD;
    }

    /* From here on nothing raises until the request is parked. */
    sl_buf hb = {0};
    if (ty == LUA_TTABLE) {
        build_headers(L, hidx, &hb);
        o.headers = sl_buf_str(&hb);
    }
    char err[1024];
    sl_http_req *req = NULL;
    if (url_nul) {
        char *safe = sl_redact(o.url);
        snprintf(err, sizeof err, "invalid url '%s…': it contains a NUL byte", safe);
        free(safe);
    } else {
        req = sl_http_start(h, &o, request_done, t, err, sizeof err);
    }
    sl_buf_free(&hb);
    if (!req) { /* an unusable URL (often data, e.g. a scraped link): known at once */
        sl_asset_sink_done(o.sink_data);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return sl_task_wait(L, t, request_cancel, req);
}

/* ------------------------------------------------------------------ limits */

/* A limit's field: a finite number of at least min; a whole one up to
 * MAX_CONCURRENCY when integer (a larger one cast to int was another number:
 * 2^32 + 1 became 1). Infinity is refused too: per = math.huge let one request
 * through and made the rest wait for ever. */
static double limit_field(lua_State *L, int idx, const char *field, double min, int integer)
{
    int ty = lua_getfield(L, idx, field);
    double d = 0;
    if (ty == LUA_TNUMBER) {
        d = lua_tonumber(L, -1);
        double max = integer ? MAX_CONCURRENCY : HUGE_VAL;
        if (!(d >= min && d < max + 1) || (integer && d != floor(d))) {
            char lo[32], hi[48] = "";
            snprintf(lo, sizeof lo, "%g", min);
            if (integer) snprintf(hi, sizeof hi, " and at most %d", MAX_CONCURRENCY);
            misuse(L, 2, "sluice.http.limit: %s must be a %s of at least %s%s, not %s", field,
                   integer ? "whole number" : "finite number", lo, hi, lua_tostring(L, -1));
        }
    } else if (ty != LUA_TNIL) {
        misuse(L, 2, "sluice.http.limit: %s must be a number, not a %s", field,
               luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return d;
}

/* One side's setting as a table { rate, per, burst, concurrency }, or nil
 * when that side has none. */
static void push_setting(lua_State *L, const sl_http_limit *l)
{
    if (l->rate <= 0 && l->concurrency <= 0) {
        lua_pushnil(L);
        return;
    }
    lua_createtable(L, 0, 4);
    lua_pushnumber(L, l->rate);
    lua_setfield(L, -2, "rate");
    lua_pushnumber(L, l->rate > 0 ? l->per : 0);
    lua_setfield(L, -2, "per");
    lua_pushnumber(L, l->burst > 0 ? l->burst : l->rate);
    lua_setfield(L, -2, "burst");
    lua_pushinteger(L, l->concurrency);
    lua_setfield(L, -2, "concurrency");
}

/* Sets source[part] to "config", "code" or "both"; nothing when from is 0. */
static void set_from(lua_State *L, const char *part, int from)
{
    if (!from) return;
    lua_pushstring(L, from == SL_FROM_CONFIG ? "config" : from == SL_FROM_CODE ? "code" : "both");
    lua_setfield(L, -2, part);
}

/* limit(name, spec) sets the code's setting; limit(name) reads the limit in
 * force (see the file comment). */
static int l_limit(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    if (!*name || strlen(name) > 255 || strpbrk(name, " \t\r\n"))
        return misuse(L, 2, "sluice.http.limit: bad name '%s'", name);
    sl_http *h = http_of(L, sl_ctx_from_lua(L), "sluice.http.limit");
    sl_http_limit l = {0};
    if (lua_isnoneornil(L, 2)) {
        sl_http_limit_info m;
        /* a removed limit's bucket stays while requests hold it: no limit all the same */
        if (!sl_http_get_limit(h, name, &m) ||
            (m.in_force.rate <= 0 && m.in_force.concurrency <= 0)) {
            lua_pushnil(L);
            return 1;
        }
        push_setting(L, &m.in_force); /* in force: the bucket and per are filled in */
        lua_pushinteger(L, m.in_flight);
        lua_setfield(L, -2, "in_flight");
        lua_pushinteger(L, m.waiting);
        lua_setfield(L, -2, "waiting");
        lua_createtable(L, 0, 3);
        set_from(L, "rate", m.rate_from);
        set_from(L, "burst", m.burst_from);
        set_from(L, "concurrency", m.concurrency_from);
        lua_setfield(L, -2, "source");
        push_setting(L, &m.config);
        lua_setfield(L, -2, "config");
        push_setting(L, &m.code);
        lua_setfield(L, -2, "code");
        return 1;
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    l.rate = limit_field(L, 2, "rate", 0, 0);
    l.per = limit_field(L, 2, "per", 0.001, 0);
    l.burst = limit_field(L, 2, "burst", 1, 0);
    l.concurrency = (int)limit_field(L, 2, "concurrency", 0, 1);
    if (l.rate > 0 && l.per == 0) l.per = 1;
    if (l.rate <= 0 && l.concurrency <= 0) l = (sl_http_limit){0}; /* {}: the code's is removed */
    if (sl_http_set_limit(h, name, SL_LIMIT_CODE, &l) != 0)
        return luaL_error(L, "sluice.http.limit: out of memory");
    return 0;
}

int luaopen_sluice_http(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"request", l_request},
        {"limit", l_limit},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
