/*
 * test_pattern.c — src/lua_pattern.c, sluice's string.find/match/gmatch/gsub
 * with a step budget: pattern_diff.lua (next to this file) runs thousands of
 * hand-picked and random cases through them and through the standard
 * library's functions in a plain Lua state and requires identical results and
 * error messages. Then the budget: a pattern that backtracks for seconds in the
 * standard library fails at once with a clear error, through each function and
 * through the string methods, and ordinary work on a large subject fits.
 *
 * SLUICE_PATTERN_SEED and SLUICE_PATTERN_ROUNDS change the random cases (the
 * seed is printed, and named in any failure). `test_pattern --bench` prints
 * bench/pattern.lua's speed figures instead.
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

static const char *source_dir(void)
{
    const char *dir = getenv("SLUICE_SOURCE_DIR");
    return dir && *dir ? dir : SLUICE_SOURCE_DIR;
}

/* A plain state with the standard libraries, sluice's functions as `mine`,
 * and the standard library's as `real`. */
static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "mine", luaopen_sluice_pattern, 1);
    lua_pop(L, 1);
    lua_getglobal(L, "string");
    lua_setglobal(L, "real");
    return L;
}

/* Run chunk src; returns NULL or the error (static storage). */
static const char *run(lua_State *L, const char *src)
{
    static char err[4096];
    if (luaL_dostring(L, src) == LUA_OK) return NULL;
    snprintf(err, sizeof err, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return err;
}

static void test_differential(void **state)
{
    (void)state;
    const char *seed_env = getenv("SLUICE_PATTERN_SEED");
    const char *rounds_env = getenv("SLUICE_PATTERN_ROUNDS");
    long long seed = seed_env ? atoll(seed_env) : 20240611;
    long long rounds = rounds_env ? atoll(rounds_env) : 20000;
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/unit/pattern_diff.lua", source_dir());
    lua_State *L = new_state();
    if (luaL_loadfile(L, path) != LUA_OK) fail_msg("%s", lua_tostring(L, -1));
    lua_getglobal(L, "real");
    lua_getglobal(L, "mine");
    lua_pushinteger(L, seed);
    lua_pushinteger(L, rounds);
    if (lua_pcall(L, 4, 1, 0) != LUA_OK) fail_msg("%s", lua_tostring(L, -1));
    printf("# seed %lld: %lld cases identical\n", seed, (long long)lua_tointeger(L, -1));
    lua_close(L);
}

/* Each function (and method) stops the backtracking pattern with its name. */
static void test_budget_stops_backtracking(void **state)
{
    (void)state;
    lua_State *L = new_state();
    const char *err = run(L, "local s = ('x'):rep(1500)\n"
                             "local function check(name, fn, ...)\n"
                             "  local ok, e = pcall(fn, ...)\n"
                             "  assert(not ok, name .. ' finished')\n"
                             "  local want = name .. ': pattern too complex for this input '\n"
                             "  assert(e:find(want, 1, true), e)\n"
                             "  assert(e:find('matching steps); simplify the pattern or the input',"
                             " 1, true), e)\n"
                             "end\n"
                             "check('string.find', mine.find, s, 'x*x*y')\n"
                             "check('string.match', mine.match, s, 'x*x*y')\n"
                             "check('string.gsub', mine.gsub, s, 'x*x*y', '')\n"
                             "check('string.gmatch', mine.gmatch(s, 'x*x*y'))\n"
                             "check('string.find', mine.find, s, 'x-x-y')\n"
                             "check('string.match', mine.match, s, '(x*)x*y')\n"
                             "for k, f in pairs(mine) do string[k] = f end\n"
                             "check('string.find', function() return s:find('x*x*y') end)\n"
                             "check('string.gsub', function() return s:gsub('x*.-x*y', '') end)\n");
    if (err) fail_msg("%s", err);
    lua_close(L);
}

/* Work proportional to a large subject fits the per-byte share of the budget. */
static void test_budget_allows_ordinary_work(void **state)
{
    (void)state;
    lua_State *L = new_state();
    const char *err = run(L, "local words = ('lorem ipsum, dolor sit amet. '):rep(200000)\n"
                             "local out, n = mine.gsub(words, '%s+', ' ')\n"
                             "assert(n == 1000000, n)\n"
                             "local c = 0\n"
                             "for w in mine.gmatch(words, '%a+') do c = c + 1 end\n"
                             "assert(c == 1000000, c)\n"
                             "assert(mine.find(words, '(%a+)%.%s*$') == #words - 5)\n"
                             "assert(mine.match(words .. 'x@y.z', '[%w.]+@[%w.]+') == 'x@y.z')\n"
                             "assert(not mine.find(words, 'q', 1, true))\n"
                             "assert(not mine.find(words, '%d'))\n");
    if (err) fail_msg("%s", err);
    lua_close(L);
}

/* `test_pattern --bench`: bench/pattern.lua's figures instead of the tests. */
static int bench(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/bench/pattern.lua", source_dir());
    lua_State *L = new_state();
    int rc = luaL_loadfile(L, path);
    if (rc == LUA_OK) {
        lua_getglobal(L, "real");
        lua_getglobal(L, "mine");
        rc = lua_pcall(L, 2, 0, 0);
    }
    if (rc != LUA_OK) fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_close(L);
    return rc == LUA_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) return bench();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_differential),
        cmocka_unit_test(test_budget_stops_backtracking),
        cmocka_unit_test(test_budget_allows_ordinary_work),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
