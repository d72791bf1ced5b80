/*
 * json.c — sluice's JSON encoder for Lua values: sluice.json.encode, and with it
 * run results, parameters, dataset reports, checkpoints, sluice.db.query table
 * parameters and sluice.http json bodies.
 *
 * Why not cjson's: lua-cjson 2.1.0 prints every number through a double with at
 * most 14 significant digits, so 123456789012345 was stored as 123456789012340
 * and 0.1 + 0.2 as 0.3. Here integers print exactly and floats as the shortest
 * of 15, 16 or 17 digits that reads back to the same double. Decoding stays
 * cjson's (lua_core.c).
 *
 * Everything else follows cjson 2.1.0 with encode_sparse_array(true), so the
 * text and the errors are what handlers saw before:
 *   - a table whose keys are all integers >= 1 is an array, unless it is
 *     excessively sparse (largest key > 2 × the number of keys and > 10): then,
 *     like any other table (and the empty one), it is an object;
 *   - object keys are strings, or numbers printed as strings; other keys raise
 *     "Cannot serialise <type>: table key must be a number or string";
 *   - nil and the null sentinel (NULL light userdata) are null; functions,
 *     userdata and threads raise "Cannot serialise <type>: type not supported";
 *     NaN and ±Inf raise "Cannot serialise number: must not be NaN or Inf";
 *   - more than SL_JSON_MAX_DEPTH nested tables (or a cycle) raise
 *     "Cannot serialise, excessive nesting (1001)".
 * Tables are read raw (no metamethods), as cjson did. Strings are escaped by
 * sl_buf_json_stringn (buf.c): control characters as \uXXXX, '/' as it is, and a
 * byte that is not UTF-8 as \ufffd, so the text is always valid JSON.
 *
 * Memory: the text is built in an sl_buf. sl_json_encode() appends to the
 * caller's; sl_json_push() uses a scratch buffer owned by the lua_State (a
 * userdata in its registry, freed by its __gc), so a Lua error raised while the
 * text is pushed (out of memory) leaks nothing. No global mutable state.
 */
#include "json.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ numbers */

static void add_integer(sl_buf *b, lua_Integer i)
{
    char s[24];
    char *p = s + sizeof s;
    unsigned long long u = i < 0 ? 0ULL - (unsigned long long)i : (unsigned long long)i;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (i < 0) *--p = '-';
    sl_buf_add(b, p, (size_t)(s + sizeof s - p));
}

/* Tries the shortest text with up to 15 digits in fixed notation for d (a
 * finite, non-integral double with 1e-5 <= |d| < 1e15): the fewest k decimals
 * such that m = round(d * 10^k) gives m / 10^k == d. That division of two exact
 * doubles rounds m / 10^k to nearest, as strtod does reading "m e-k", so the text
 * reads back to d. 0 when none fits (then printf's digits are used). */
static int add_fixed(sl_buf *b, double d)
{
    double p = 1;
    for (int k = 1; k <= 15; k++) {
        p *= 10; /* exact up to 1e22 */
        double m = round(d * p);
        if (fabs(m) >= 1e15) return 0;
        if (m / p != d) continue;
        unsigned long long u = (unsigned long long)fabs(m);
        int decimals = k;
        while (u % 10 == 0) { /* never past the point: d is not integral */
            u /= 10;
            decimals--;
        }
        char s[24];
        char *q = s + sizeof s;
        for (int i = 0; i <= decimals || u; i++) { /* right to left; "0." before 0.05 */
            if (i == decimals) *--q = '.';
            *--q = (char)('0' + u % 10);
            u /= 10;
        }
        if (d < 0) *--q = '-';
        sl_buf_add(b, q, (size_t)(s + sizeof s - q));
        return 1;
    }
    return 0;
}

/* A finite double: an integral one below 1e18 as an integer (3.0 → 3, as cjson
 * printed it; 1e17 without exponent), any other as the shortest text that strtod
 * reads back to d: fixed notation when that has at most 15 digits (add_fixed),
 * else the shortest of %.15g, %.16g and %.17g (17 digits always do). */
static void add_float(sl_buf *b, double d)
{
    if (d == floor(d) && fabs(d) < 1e18 && !(d == 0 && signbit(d))) {
        add_integer(b, (lua_Integer)d);
        return;
    }
    if (fabs(d) >= 1e-5 && fabs(d) < 1e15 && add_fixed(b, d)) return;
    char s[40];
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(s, sizeof s, "%.*g", prec, d);
        if (prec == 17 || strtod(s, NULL) == d) break;
    }
    /* printf and strtod use the locale's decimal point (LC_NUMERIC, which may be
     * "," or more than one byte): JSON's is '.' */
    char out[40];
    size_t m = 0;
    int point = 0;
    for (int i = 0; i < n && i < (int)sizeof s; i++) {
        char c = s[i];
        if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e') {
            out[m++] = c;
        } else if (!point) {
            out[m++] = '.';
            point = 1;
        }
    }
    sl_buf_add(b, out, m);
}

/* ------------------------------------------------------------------ values */

typedef struct {
    lua_State *L;
    sl_buf *b;
    char *err;
    size_t errlen;
} encoder;

/* cjson's exception: "Cannot serialise <type of the value at idx>: <reason>". */
static int fail(encoder *e, int idx, const char *reason)
{
    sl_seterr(e->err, e->errlen, "Cannot serialise %s: %s", luaL_typename(e->L, idx), reason);
    return -1;
}

static int add_number(encoder *e, int idx)
{
    if (lua_isinteger(e->L, idx)) {
        add_integer(e->b, lua_tointeger(e->L, idx));
        return 0;
    }
    lua_Number d = lua_tonumber(e->L, idx);
    if (isnan(d) || isinf(d)) return fail(e, idx, "must not be NaN or Inf");
    add_float(e->b, d);
    return 0;
}

/* cjson's lua_array_length with encode_sparse_array(true): the length of the
 * table at t as an array, or -1 when it is to be an object (a key that is not an
 * integer >= 1, or excessively sparse: ratio 2, safe 10). 0 for an empty table,
 * which is an object too. */
static lua_Integer array_length(lua_State *L, int t)
{
    lua_Number max = 0;
    lua_Integer items = 0;
    lua_pushnil(L); /* [key] */
    while (lua_next(L, t)) {
        lua_pop(L, 1); /* [key] */
        lua_Number k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
        if (k < 1 || floor(k) != k) {
            lua_pop(L, 1);
            return -1;
        }
        if (k > max) max = k;
        items++;
    }
    if (max > (lua_Number)items * 2 && max > 10) return -1;
    return (lua_Integer)max;
}

static int add_value(encoder *e, int depth);

/* The table on top of the stack, at nesting level depth (1 for the outermost). */
static int add_table(encoder *e, int depth)
{
    lua_State *L = e->L;
    /* its key and value, and one to spare (cjson's check) */
    if (depth > SL_JSON_MAX_DEPTH || !lua_checkstack(L, 3)) {
        sl_seterr(e->err, e->errlen, "Cannot serialise, excessive nesting (%d)", depth);
        return -1;
    }
    int t = lua_gettop(L);
    lua_Integer n = array_length(L, t);
    if (n > 0) {
        sl_buf_add(e->b, "[", 1);
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1) sl_buf_add(e->b, ",", 1);
            lua_rawgeti(L, t, i); /* [value] */
            if (add_value(e, depth) != 0) return -1;
            lua_pop(L, 1);
        }
        sl_buf_add(e->b, "]", 1);
        return 0;
    }
    sl_buf_add(e->b, "{", 1);
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, t)) { /* [key, value] */
        if (!first) sl_buf_add(e->b, ",", 1);
        first = 0;
        switch (lua_type(L, -2)) {
        case LUA_TSTRING: {
            size_t len;
            const char *k = lua_tolstring(L, -2, &len); /* a string: not converted in place */
            sl_buf_json_stringn(e->b, k, len);
            sl_buf_add(e->b, ":", 1);
            break;
        }
        case LUA_TNUMBER:
            sl_buf_add(e->b, "\"", 1);
            if (add_number(e, -2) != 0) return -1;
            sl_buf_add(e->b, "\":", 2);
            break;
        default:
            return fail(e, -2, "table key must be a number or string");
        }
        if (add_value(e, depth) != 0) return -1;
        lua_pop(L, 1); /* [key] */
    }
    sl_buf_add(e->b, "}", 1);
    return 0;
}

/* The value on top of the stack, inside depth levels of tables. */
static int add_value(encoder *e, int depth)
{
    lua_State *L = e->L;
    switch (lua_type(L, -1)) {
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        sl_buf_json_stringn(e->b, s, len);
        return 0;
    }
    case LUA_TNUMBER:
        return add_number(e, -1);
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, -1))
            sl_buf_add(e->b, "true", 4);
        else
            sl_buf_add(e->b, "false", 5);
        return 0;
    case LUA_TNIL:
        sl_buf_add(e->b, "null", 4);
        return 0;
    case LUA_TTABLE:
        return add_table(e, depth + 1);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, -1) == NULL) { /* cjson.null */
            sl_buf_add(e->b, "null", 4);
            return 0;
        }
        return fail(e, -1, "type not supported");
    default: /* function, full userdata, thread */
        return fail(e, -1, "type not supported");
    }
}

int sl_json_encode(lua_State *L, int idx, sl_buf *out, char *err, size_t errlen)
{
    encoder e = {L, out, err, errlen};
    int top = lua_gettop(L);
    if (!lua_checkstack(L, 3)) {
        sl_seterr(err, errlen, "Cannot serialise, excessive nesting (0)");
        return -1;
    }
    lua_pushvalue(L, idx);
    int rc = add_value(&e, 0);
    lua_settop(L, top); /* an error leaves keys and values of the levels it left */
    return rc;
}

/* ------------------------------------------------------------------ Lua side */

/* The scratch buffer is kept between calls (no allocation for most values),
 * unless a large value made it larger than this. */
#define SCRATCH_KEEP ((size_t)64 * 1024)

static const char scratch_key = 0; /* its address keys the registry entry */

static int scratch_gc(lua_State *L)
{
    sl_buf_free(lua_touserdata(L, 1));
    return 0;
}

/* The state's scratch buffer, made on first use. */
static sl_buf *scratch(lua_State *L)
{
    sl_buf *b;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &scratch_key) == LUA_TUSERDATA) {
        b = lua_touserdata(L, -1);
    } else {
        lua_pop(L, 1);
        b = lua_newuserdatauv(L, sizeof *b, 0);
        memset(b, 0, sizeof *b);
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, scratch_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &scratch_key);
    }
    lua_pop(L, 1);
    return b;
}

void sl_json_push(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    sl_buf *b = scratch(L);
    char err[128];
    sl_buf_reset(b);
    int rc = sl_json_encode(L, idx, b, err, sizeof err);
    if (rc == 0) lua_pushlstring(L, sl_buf_str(b), b->len);
    if (b->cap > SCRATCH_KEEP) sl_buf_free(b);
    if (rc != 0) luaL_error(L, "%s", err);
}

int sl_json_lua_encode(lua_State *L)
{
    luaL_argcheck(L, lua_gettop(L) == 1, 1, "expected 1 argument");
    sl_json_push(L, 1);
    return 1;
}
