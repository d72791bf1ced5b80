/*
 * test_bounded.c — src/lua_bounded.c, sluice's string.rep, table.move,
 * table.insert and table.remove: on every case the standard library finishes,
 * the same results, the same table afterwards and the same error messages as
 * the standard library's; on the cases where the standard library loops in C
 * for as long as its arguments say, an answer at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>

#include "runtime_int.h"

/* A plain state with the standard libraries and sluice's versions as `mine`
 * (mine.string.rep, mine.table.move, ...). */
static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "mine", luaopen_sluice_bounded, 1);
    lua_pop(L, 1);
    return L;
}

static void run(const char *src)
{
    lua_State *L = new_state();
    if (luaL_dostring(L, src) != LUA_OK) fail_msg("%s", lua_tostring(L, -1));
    lua_close(L);
}

/* call(fn, ...) calls through a local named `fn` in both cases, so argument
 * errors name the function alike; show() prints a value and, for a table, its
 * contents in key order. */
static const char *const prelude =
    "local function show(v)\n"
    "  if type(v) ~= 'table' then return type(v) .. ':' .. tostring(v) end\n"
    "  local ks = {}\n"
    "  for k in pairs(v) do ks[#ks + 1] = k end\n"
    "  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)\n"
    "  local out = {}\n"
    "  for _, k in ipairs(ks) do out[#out + 1] = tostring(k) .. '=' .. show(v[k]) end\n"
    "  return '{' .. table.concat(out, ',') .. '}'\n"
    "end\n"
    "local function call(fn, ...)\n"
    "  local args = table.pack(...)\n"
    "  return table.pack(pcall(function()\n"
    "    local r = table.pack(fn(table.unpack(args, 1, args.n)))\n"
    "    return r\n"
    "  end))\n"
    "end\n"
    "local function args_of(make) return table.pack(make()) end\n"
    "local cases = 0\n"
    "local function same(lib, name, make)\n"
    "  local a, b = args_of(make), args_of(make)\n"
    "  local ra = call(_G[lib][name], table.unpack(a, 1, a.n))\n"
    "  local rb = call(mine[lib][name], table.unpack(b, 1, b.n))\n"
    "  local sa, sb = {}, {}\n"
    "  for i = 1, ra.n do sa[i] = show(ra[i]) end\n"
    "  for i = 1, rb.n do sb[i] = show(rb[i]) end\n"
    "  for i = 1, a.n do sa[#sa + 1] = 'arg' .. i .. show(a[i]) end\n"
    "  for i = 1, b.n do sb[#sb + 1] = 'arg' .. i .. show(b[i]) end\n"
    "  local ta, tb = table.concat(sa, ' '), table.concat(sb, ' ')\n"
    "  if ta ~= tb then\n"
    "    error(('%s.%s case %d: standard %s | sluice %s'):format(lib, name, cases + 1, ta, tb))\n"
    "  end\n"
    "  cases = cases + 1\n"
    "end\n"
    "local maxi = math.maxinteger\n"
    /* a table-like proxy: reads, writes and length through metamethods */
    "local function proxy(t)\n"
    "  return setmetatable({}, { __index = t, __newindex = t,\n"
    "                            __len = function() return #t end })\n"
    "end\n";

static void test_same_as_standard_library(void **state)
{
    (void)state;
    char src[8192];
    snprintf(
        src, sizeof src, "%s%s", prelude,
        "local function R(...) local a = table.pack(...) return function()\n"
        "  return table.unpack(a, 1, a.n) end end\n"
        "for _, a in ipairs({\n"
        "  R('ab', 3), R('ab', 3, ', '), R('', 5), R('', 5, '-'), R('x', 0), R('x', -1),\n"
        "  R('x', 1, '-'), R('', 1), R('', 0, ''), R(12, 2), R('a', 2.0), R('a', '3'),\n"
        "  R('a', 2.5), R('a'), R(nil, 2), R({}, 2), R('a', 3, 5), R('a', 2, {}),\n"
        "  R('ab', maxi), R('a', maxi, 'b'), R('a', -maxi), R('a\\0b', 2, '\\0'),\n"
        "}) do same('string', 'rep', a) end\n"
        "for _, f in ipairs({\n"
        "  function() return {1, 2, 3}, 4 end, function() return {1, 2, 3}, 1, 0 end,\n"
        "  function() return {1, 2, 3}, 2, 'x' end, function() return {1, 2, 3}, 4, 9 end,\n"
        "  function() return {1, 2, 3}, 5, 9 end, function() return {1, 2, 3}, 0, 9 end,\n"
        "  function() return {1, 2, 3}, -1, 9 end, function() return {}, 1, 'a' end,\n"
        "  function() return {}, 'x' end, function() return {1} end,\n"
        "  function() return {1}, 1, 2, 3 end, function() return nil, 1 end,\n"
        "  function() return 'str', 1 end, function() return {1, 2}, 1.5, 0 end,\n"
        "  function() return {1, 2}, 1.0, 0 end, function() return {1, 2}, '1', 0 end,\n"
        "  function() return proxy({1, 2, 3}), 1, 0 end, function() return proxy({}), 'v' end,\n"
        "  function() return setmetatable({}, {__index = {}}), 1 end,\n"
        "  function() return setmetatable({}, {__len = function() return 2 end}), 1, 0 end,\n"
        "  function() return setmetatable({}, {__len = function() return 'x' end}), 1 end,\n"
        "}) do same('table', 'insert', f) end\n"
        "for _, f in ipairs({\n"
        "  function() return {1, 2, 3} end, function() return {1, 2, 3}, 1 end,\n"
        "  function() return {1, 2, 3}, 3 end, function() return {1, 2, 3}, 4 end,\n"
        "  function() return {1, 2, 3}, 5 end, function() return {1, 2, 3}, 0 end,\n"
        "  function() return {}, 0 end, function() return {}, 1 end,\n"
        "  function() return {}, -1 end, function() return {}, 2 end, function() return {} end,\n"
        "  function() return {[0] = 'z'}, 0 end, function() return nil end,\n"
        "  function() return {1, 2}, 'x' end, function() return {1, 2}, 1.5 end,\n"
        "  function() return proxy({1, 2, 3}), 2 end, function() return proxy({}) end,\n"
        "  function() return setmetatable({}, {__len = function() return 3 end}), 1 end,\n"
        "  function() return setmetatable({}, {__len = function() return -2 end}), -2 end,\n"
        "}) do same('table', 'remove', f) end\n"
        "for _, f in ipairs({\n"
        "  function() return {1, 2, 3}, 1, 3, 2 end, function() return {1, 2, 3}, 2, 3, 1 end,\n"
        "  function() return {1, 2, 3}, 1, 3, 1, {} end, function() return {1, 2, 3}, 1, 0, 5, {} "
        "end,\n"
        "  function() return {1, 2, 3}, 1, 3, 3 end, function() return {1, 2, 3}, 1, 3, 3, nil "
        "end,\n"
        "  function() return {1, 2, 3}, -1, 1, 10 end, function() return {1, 2, 3}, 3, 1, 1 end,\n"
        "  function() local t = {1, 2, 3} return t, 1, 3, 2, t end,\n"
        "  function() return {1, 2, 3}, 0, maxi, 1 end, function() return {1, 2, 3}, 1, 2, maxi "
        "end,\n"
        "  function() return {1, 2, 3}, -maxi, 5, 1 end, function() return {1, 2, 3}, 1, 3 end,\n"
        "  function() return nil, 1, 2, 3 end, function() return {1}, 1, 1, 1, 'x' end,\n"
        "  function() return {1, 2}, 1.5, 2, 1 end, function() return {1, 2}, '1', '2', '3' end,\n"
        "  function() return proxy({1, 2, 3}), 1, 3, 2 end,\n"
        "  function() return {1, 2, 3}, 1, 3, 1, proxy({}) end,\n"
        "  function() return setmetatable({}, {__newindex = {}}), 1, 2, 1 end,\n"
        "  function() return {1, 2}, 1, 2, 1, setmetatable({}, {__index = {}}) end,\n"
        "}) do same('table', 'move', f) end\n"
        "assert(cases == 83, cases)\n");
    run(src);
}

/* What the standard library would loop on for hours answers at once. */
static void test_unbounded_cases_answer_at_once(void **state)
{
    (void)state;
    run("assert(mine.string.rep('', 1e15) == '')\n"
        "assert(mine.string.rep('', math.maxinteger, '') == '')\n"
        "local ok, e = pcall(mine.table.move, {}, 1, 1e15, 1, {})\n"
        "assert(not ok and e:find('table.move: 1000000000000000 elements is more than one "
        "call may move (at most 4194304); move them in a loop', 1, true), e)\n"
        "local huge = setmetatable({}, {__len = function() return 1e15 end})\n"
        "ok, e = pcall(mine.table.remove, huge, 1)\n"
        "assert(not ok and e:find('table.remove: shifting 999999999999999 elements is more "
        "than one call may do', 1, true), e)\n"
        "ok, e = pcall(mine.table.insert, huge, 1, 'x')\n"
        "assert(not ok and e:find('table.insert: shifting 1000000000000000 elements', 1, true), "
        "e)\n"
        /* the last element of a __len table: nothing to shift, nothing refused */
        "assert(mine.table.remove(huge) == nil)\n"
        "mine.table.insert(huge, 'end')\n"
        "assert(rawget(huge, 1e15 + 1) == 'end')\n");
}

/* A plain table's length is bounded by its memory: one larger than the cap
 * still shifts (insert and remove at the front), and a move of exactly the cap
 * is allowed. */
static void test_plain_tables_are_not_refused(void **state)
{
    (void)state;
    run("local n = (1 << 22) + 3\n"
        "local t = {}\n"
        "for i = 1, n do t[i] = i end\n"
        "mine.table.insert(t, 1, 0)\n"
        "assert(#t == n + 1 and t[1] == 0 and t[n + 1] == n)\n"
        "assert(mine.table.remove(t, 1) == 0 and #t == n and t[1] == 1 and t[n] == n)\n"
        "local dst = mine.table.move(t, 1, 1 << 22, 1, {})\n"
        "assert(#dst == 1 << 22 and dst[1 << 22] == 1 << 22)\n"
        "local ok, e = pcall(mine.table.move, t, 1, (1 << 22) + 1, 1, {})\n"
        "assert(not ok and e:find('at most 4194304', 1, true), e)\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_as_standard_library),
        cmocka_unit_test(test_unbounded_cases_answer_at_once),
        cmocka_unit_test(test_plain_tables_are_not_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
