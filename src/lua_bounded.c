/*
 * lua_bounded.c — `string.rep`, `table.move`, `table.insert` and
 * `table.remove` with loops that end: the standard library's versions can loop
 * in C for as long as their arguments say, on no memory at all.
 *
 *   ("").rep("", 1e15)                       1e15 empty copies
 *   table.move({}, 1, 1e15, 1, {})           1e15 moves of nothing
 *   table.remove(setmetatable({}, {__len = function() return 1e15 end}), 1)
 *
 * Each held the whole worker: the instruction budget counts Lua instructions
 * and a run's timeout is a timer of the loop, and neither can stop one C call
 * (the same reason lua_pattern.c bounds pattern matching). These versions do
 * what the reference manual (§6.4, §6.6) says, with the standard library's
 * argument checks and messages, except that:
 *   - rep returns "" at once when every copy and separator is empty;
 *   - move refuses to move more than SL_MAX_MOVES elements in one call;
 *   - insert and remove refuse to shift more than SL_MAX_MOVES elements when the
 *     table's length comes from a __len metamethod (a plain table's length is
 *     bounded by the memory it holds, so a plain table is never refused).
 * Work that needs more is a loop in Lua, which the budget counts.
 *
 * runtime.lua installs them into the `string` and `table` tables before
 * anything else runs, as it does the pattern functions.
 */
#include "runtime_int.h"

#include <lauxlib.h>
#include <stdint.h>
#include <string.h>

/* At most this many elements moved or shifted by one call: some 0.1 s of
 * lua_geti/lua_seti pairs, a third of the memory cap's worth of array. */
#define SL_MAX_MOVES (1 << 22)

/* The largest string a result may be: what both a size_t and a Lua integer
 * can count. */
#define SL_MAX_STRING ((size_t)LUA_MAXINTEGER < SIZE_MAX ? (size_t)LUA_MAXINTEGER : SIZE_MAX)

/* ------------------------------------------------------------------ string */

static int b_rep(lua_State *L)
{
    size_t l = 0, lsep = 0;
    const char *s = luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    const char *sep = luaL_optlstring(L, 3, "", &lsep);
    if (n <= 0 || l + lsep == 0) { /* nothing to repeat */
        lua_pushliteral(L, "");
        return 1;
    }
    if (l + lsep < l || l + lsep > SL_MAX_STRING / (size_t)n)
        return luaL_error(L, "resulting string too large");
    size_t total = (size_t)n * l + (size_t)(n - 1) * lsep;
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, total);
    for (lua_Integer i = 0; i < n; i++) {
        memcpy(p, s, l);
        p += l;
        if (i + 1 < n && lsep > 0) {
            memcpy(p, sep, lsep);
            p += lsep;
        }
    }
    luaL_pushresultsize(&b, total);
    return 1;
}

/* ------------------------------------------------------------------ table */

enum { TAB_R = 1, TAB_W = 2, TAB_L = 4 };

/* A table, or a value whose metatable gives every operation in `what`
 * (the standard library accepts those too). */
static void check_tab(lua_State *L, int arg, int what)
{
    if (lua_type(L, arg) == LUA_TTABLE) return;
    int ok = lua_getmetatable(L, arg);
    if (ok) {
        static const struct {
            int bit;
            const char *field;
        } need[] = {{TAB_R, "__index"}, {TAB_W, "__newindex"}, {TAB_L, "__len"}};
        for (size_t i = 0; ok && i < sizeof need / sizeof need[0]; i++) {
            if (!(what & need[i].bit)) continue;
            lua_pushstring(L, need[i].field);
            ok = lua_rawget(L, -2) != LUA_TNIL;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    if (!ok) luaL_checktype(L, arg, LUA_TTABLE); /* raises "table expected" */
}

/* #t for insert and remove, and whether it came from a __len metamethod. */
static lua_Integer tab_len(lua_State *L, int *from_meta)
{
    check_tab(L, 1, TAB_R | TAB_W | TAB_L);
    *from_meta = luaL_getmetafield(L, 1, "__len") != LUA_TNIL;
    if (*from_meta) lua_pop(L, 1);
    return luaL_len(L, 1);
}

static void check_shift(lua_State *L, const char *fname, lua_Unsigned count)
{
    if (count > SL_MAX_MOVES)
        luaL_error(L,
                   "%s: shifting %I elements is more than one call may do (at most %d when "
                   "the length comes from __len); shift them in a loop",
                   fname, (lua_Integer)count, SL_MAX_MOVES);
}

static int b_insert(lua_State *L)
{
    int meta = 0;
    lua_Integer e = tab_len(L, &meta) + 1; /* the first empty slot */
    lua_Integer pos = e;
    switch (lua_gettop(L)) {
    case 2:
        break;
    case 3:
        pos = luaL_checkinteger(L, 2);
        luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)e, 2, "position out of bounds");
        if (meta) check_shift(L, "table.insert", (lua_Unsigned)(e - pos));
        for (lua_Integer i = e; i > pos; i--) {
            lua_geti(L, 1, i - 1);
            lua_seti(L, 1, i);
        }
        break;
    default:
        return luaL_error(L, "wrong number of arguments to 'insert'");
    }
    lua_seti(L, 1, pos);
    return 0;
}

static int b_remove(lua_State *L)
{
    int meta = 0;
    lua_Integer size = tab_len(L, &meta);
    lua_Integer pos = luaL_optinteger(L, 2, size);
    if (pos != size) /* argument #1 in the message, as the standard library says */
        luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)size, 1, "position out of bounds");
    if (meta && pos < size) check_shift(L, "table.remove", (lua_Unsigned)size - (lua_Unsigned)pos);
    lua_geti(L, 1, pos);
    for (; pos < size; pos++) {
        lua_geti(L, 1, pos + 1);
        lua_seti(L, 1, pos);
    }
    lua_pushnil(L);
    lua_seti(L, 1, pos);
    return 1;
}

static int b_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2);
    lua_Integer e = luaL_checkinteger(L, 3);
    lua_Integer t = luaL_checkinteger(L, 4);
    int tt = lua_isnoneornil(L, 5) ? 1 : 5; /* the destination table */
    check_tab(L, 1, TAB_R);
    check_tab(L, tt, TAB_W);
    if (e >= f) {
        luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
        lua_Integer n = e - f + 1;
        luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4, "destination wrap around");
        if (n > SL_MAX_MOVES)
            return luaL_error(L,
                              "table.move: %I elements is more than one call may move (at "
                              "most %d); move them in a loop",
                              n, SL_MAX_MOVES);
        int forward = t > e || t <= f || (tt != 1 && !lua_compare(L, 1, tt, LUA_OPEQ));
        for (lua_Integer i = 0; i < n; i++) {
            lua_Integer k = forward ? i : n - 1 - i;
            lua_geti(L, 1, f + k);
            lua_seti(L, tt, t + k);
        }
    }
    lua_pushvalue(L, tt);
    return 1;
}

/* ------------------------------------------------------------------ module */

int luaopen_sluice_bounded(lua_State *L)
{
    static const luaL_Reg string_fns[] = {{"rep", b_rep}, {NULL, NULL}};
    static const luaL_Reg table_fns[] = {
        {"move", b_move}, {"insert", b_insert}, {"remove", b_remove}, {NULL, NULL}};
    lua_createtable(L, 0, 2);
    luaL_newlib(L, string_fns);
    lua_setfield(L, -2, "string");
    luaL_newlib(L, table_fns);
    lua_setfield(L, -2, "table");
    return 1;
}
