/*
 * test_json.c — src/json.c, the JSON encoder for Lua values: numbers exactly
 * (the full 64-bit integer range; floats as text strtod reads back to the same
 * double, 10,000 random ones included), strings, cjson's array/object rules with
 * encode_sparse_array on, and cjson's errors (NaN/Inf, nesting, cycles,
 * unsupported types and keys).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <limits.h>
#include <lualib.h>
#include <float.h>
#include <math.h>

#include "json.h"

static int setup(void **state)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    *state = L;
    return 0;
}

static int teardown(void **state)
{
    lua_close(*state);
    return 0;
}

/* The JSON of the value the Lua expression evaluates to; asserts it encodes.
 * Returns a static copy (valid until the next call). */
static const char *enc(lua_State *L, const char *expr)
{
    static char text[4096];
    char chunk[4096];
    snprintf(chunk, sizeof chunk, "return %s", expr);
    if (luaL_dostring(L, chunk) != 0) fail_msg("%s: %s", expr, lua_tostring(L, -1));
    int top = lua_gettop(L);
    sl_buf b = {0};
    char err[128] = "";
    int rc = sl_json_encode(L, -1, &b, err, sizeof err);
    if (rc != 0) fail_msg("%s: %s", expr, err);
    assert_int_equal(lua_gettop(L), top);
    snprintf(text, sizeof text, "%s", sl_buf_str(&b));
    sl_buf_free(&b);
    lua_settop(L, 0);
    return text;
}

/* The error encoding the expression's value gives; asserts it fails. */
static const char *enc_err(lua_State *L, const char *expr)
{
    static char err[128];
    char chunk[4096];
    snprintf(chunk, sizeof chunk, "return %s", expr);
    if (luaL_dostring(L, chunk) != 0) fail_msg("%s: %s", expr, lua_tostring(L, -1));
    int top = lua_gettop(L);
    sl_buf b = {0};
    err[0] = '\0';
    int rc = sl_json_encode(L, -1, &b, err, sizeof err);
    assert_int_equal(rc, -1);
    assert_int_equal(lua_gettop(L), top);
    sl_buf_free(&b);
    lua_settop(L, 0);
    return err;
}

static const char *enc_number(lua_State *L, double d)
{
    static char text[64];
    sl_buf b = {0};
    char err[128];
    lua_pushnumber(L, d);
    assert_int_equal(sl_json_encode(L, -1, &b, err, sizeof err), 0);
    snprintf(text, sizeof text, "%s", sl_buf_str(&b));
    sl_buf_free(&b);
    lua_settop(L, 0);
    return text;
}

static void test_integers(void **state)
{
    lua_State *L = *state;
    assert_string_equal(enc(L, "0"), "0");
    assert_string_equal(enc(L, "-7"), "-7");
    assert_string_equal(enc(L, "123456789012345"), "123456789012345");
    assert_string_equal(enc(L, "123456789012345678"), "123456789012345678");
    assert_string_equal(enc(L, "math.maxinteger"), "9223372036854775807");
    assert_string_equal(enc(L, "math.mininteger"), "-9223372036854775808");
    lua_pushinteger(L, LLONG_MAX);
    lua_setglobal(L, "max");
    lua_pushinteger(L, LLONG_MIN);
    lua_setglobal(L, "min");
    assert_string_equal(enc(L, "{max, min}"), "[9223372036854775807,-9223372036854775808]");
}

static void test_floats(void **state)
{
    lua_State *L = *state;
    assert_string_equal(enc(L, "0.1"), "0.1");
    assert_string_equal(enc(L, "0.1 + 0.2"), "0.30000000000000004");
    assert_string_equal(enc(L, "math.pi"), "3.141592653589793");
    assert_string_equal(enc(L, "1e300"), "1e+300");
    assert_string_equal(enc(L, "1e20"), "1e+20");
    assert_string_equal(enc(L, "-0.0"), "-0");
    assert_string_equal(enc(L, "3.0"), "3");
    assert_string_equal(enc(L, "-2.5"), "-2.5");
    assert_string_equal(enc(L, "1e17"), "100000000000000000");
    assert_string_equal(enc(L, "0.05"), "0.05");
    assert_string_equal(enc(L, "0.25"), "0.25");
    assert_string_equal(enc(L, "1.1"), "1.1");
    assert_string_equal(enc(L, "-12.75"), "-12.75");
    assert_string_equal(enc(L, "123.456"), "123.456");
    assert_string_equal(enc(L, "1e-5"), "0.00001");
    assert_string_equal(enc(L, "0.00001234"), "0.00001234");
    assert_string_equal(enc(L, "1e-6"), "1e-06");
    assert_string_equal(enc(L, "99999999999999.9"), "99999999999999.9");
    assert_string_equal(enc(L, "999999999999999.9"), "999999999999999.9");
    assert_string_equal(enc(L, "1/3"), "0.3333333333333333");
    assert_string_equal(enc(L, "2/3"), "0.6666666666666666");
    assert_string_equal(enc(L, "2^53 + 0.0"), "9007199254740992");
    /* the smallest subnormal: its text reads back to it */
    const char *tiny = enc(L, "5e-324");
    assert_true(strtod(tiny, NULL) == 5e-324);
    assert_true(strtod(enc_number(L, DBL_MAX), NULL) == DBL_MAX);
    assert_true(strtod(enc_number(L, -DBL_MIN), NULL) == -DBL_MIN);
}

static void test_random_doubles_round_trip(void **state)
{
    lua_State *L = *state;
    uint64_t x = 0x9e3779b97f4a7c15ULL; /* xorshift64: the same doubles every run */
    for (int i = 0; i < 10000; i++) {
        double d;
        do {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            memcpy(&d, &x, sizeof d); /* any bit pattern: every exponent */
        } while (!isfinite(d));
        if (i % 3 == 1) d = (double)(x >> 11) / 9007199254740992.0 * 1000; /* everyday ones */
        if (i % 3 == 2) /* and short decimals, some with 15 digits */
            d = (double)(long long)(x % 2000000000000000ULL - 1000000000000000LL) /
                pow(10, (double)(x >> 60));
        const char *s = enc_number(L, d);
        char *end;
        double back = strtod(s, &end);
        if (back != d || *end) fail_msg("%.17g encoded as %s reads back as %.17g", d, s, back);
        /* no longer than printf's shortest that reads back */
        char g[40];
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(g, sizeof g, "%.*g", prec, d);
            if (strtod(g, NULL) == d) break;
        }
        if (strlen(s) > strlen(g) && !(fabs(d) >= 1e-5 && fabs(d) < 1e-4) && strchr(g, 'e') == NULL)
            fail_msg("%.17g encoded as %s, longer than %s", d, s, g);
        assert_non_null(strpbrk(s, "0123456789"));
        assert_null(strchr(s, ','));
    }
}

static void test_nan_and_inf_raise(void **state)
{
    lua_State *L = *state;
    const char *why = "Cannot serialise number: must not be NaN or Inf";
    assert_string_equal(enc_err(L, "0/0"), why);
    assert_string_equal(enc_err(L, "math.huge"), why);
    assert_string_equal(enc_err(L, "-math.huge"), why);
    assert_string_equal(enc_err(L, "{1, {x = 0/0}}"), why);
    assert_string_equal(enc_err(L, "{[math.huge] = 1}"), why);
}

static void test_strings(void **state)
{
    lua_State *L = *state;
    assert_string_equal(enc(L, "'plain'"), "\"plain\"");
    assert_string_equal(enc(L, "''"), "\"\"");
    assert_string_equal(enc(L, "'a \"quote\" and a \\\\ backslash'"),
                        "\"a \\\"quote\\\" and a \\\\ backslash\"");
    assert_string_equal(enc(L, "'\\n\\r\\t\\1\\31\\127'"), "\"\\n\\r\\t\\u0001\\u001f\x7f\"");
    assert_string_equal(enc(L, "'a\\0b'"), "\"a\\u0000b\""); /* a NUL does not end it */
    assert_string_equal(enc(L, "'/path/to'"), "\"/path/to\"");
    assert_string_equal(enc(L, "'caf\\u{e9} \\u{1F600}'"), "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
    /* bytes that are not UTF-8 (a lone continuation byte, a cut-off sequence) */
    assert_string_equal(enc(L, "'x\\255y'"), "\"x\\ufffdy\"");
    assert_string_equal(enc(L, "'\\xc3'"), "\"\\ufffd\"");
    assert_string_equal(enc(L, "'\\xed\\xa0\\x80'"), "\"\\ufffd\\ufffd\\ufffd\""); /* a surrogate */
}

static void test_tables(void **state)
{
    lua_State *L = *state;
    assert_string_equal(enc(L, "{}"), "{}");
    assert_string_equal(enc(L, "{1, 'two', true, false}"), "[1,\"two\",true,false]");
    assert_string_equal(enc(L, "{a = {b = {1, {c = 'd'}}}}"), "{\"a\":{\"b\":[1,{\"c\":\"d\"}]}}");
    assert_string_equal(enc(L, "{{}, {{}}}"), "[{},[{}]]");
    assert_string_equal(enc(L, "{1, nil, 3}"), "[1,null,3]");
    assert_string_equal(enc(L, "nil"), "null");
    assert_string_equal(enc(L, "true"), "true");
    /* mixed keys: an object, number keys as strings */
    const char *mixed = enc(L, "{1, x = 2}");
    assert_true(strcmp(mixed, "{\"1\":1,\"x\":2}") == 0 || strcmp(mixed, "{\"x\":2,\"1\":1}") == 0);
    assert_string_equal(enc(L, "{[0] = 'zero'}"), "{\"0\":\"zero\"}");
    assert_string_equal(enc(L, "{[-1] = 'm'}"), "{\"-1\":\"m\"}");
    assert_string_equal(enc(L, "{[1.5] = 'f'}"), "{\"1.5\":\"f\"}");
    assert_string_equal(enc(L, "{[123456789012345] = 1}"), "{\"123456789012345\":1}");
    /* the table is read raw: no __index, __pairs or __len */
    assert_string_equal(enc(L, "setmetatable({}, {__index = function() return 1 end, __len = "
                               "function() return 3 end})"),
                        "{}");
}

/* cjson's rule, ratio 2, safe 10: an object when the largest index is more than
 * twice the number of items and more than 10. */
static void test_sparse_arrays(void **state)
{
    lua_State *L = *state;
    assert_string_equal(enc(L, "{[10] = 1}"), "[null,null,null,null,null,null,null,null,null,1]");
    assert_string_equal(enc(L, "{[11] = 1}"), "{\"11\":1}");
    const char *two = enc(L, "{[1] = 1, [12] = 2}");
    assert_true(strcmp(two, "{\"1\":1,\"12\":2}") == 0 || strcmp(two, "{\"12\":2,\"1\":1}") == 0);
    /* 6 items up to 12: exactly twice, still an array */
    assert_string_equal(enc(L, "{1, 2, 3, 4, 5, [12] = 6}"),
                        "[1,2,3,4,5,null,null,null,null,null,null,6]");
    assert_true(enc(L, "{1, 2, 3, 4, 5, [13] = 6}")[0] == '{');
    assert_true(enc(L, "{[2^53] = 1}")[0] == '{');
    assert_true(enc(L, "{[2^70] = 1}")[0] == '{'); /* a float key beyond the integers */
}

static void test_null(void **state)
{
    lua_State *L = *state;
    lua_pushlightuserdata(L, NULL);
    lua_setglobal(L, "null");
    assert_string_equal(enc(L, "null"), "null");
    assert_string_equal(enc(L, "{a = null}"), "{\"a\":null}");
    assert_string_equal(enc(L, "{b = {null, 1}}"), "{\"b\":[null,1]}");
    assert_string_equal(enc(L, "{null, null}"), "[null,null]");
}

static void test_depth_and_cycles(void **state)
{
    lua_State *L = *state;
    /* 1000 nested tables encode; 1001 do not */
    const char *make = "(function(n) local t = {} for _ = 2, n do t = {t} end return t end)";
    char expr[256];
    snprintf(expr, sizeof expr, "%s(1000)", make);
    const char *deep = enc(L, expr);
    assert_int_equal(strlen(deep), 1000 + 999 + 1);
    snprintf(expr, sizeof expr, "%s(1001)", make);
    assert_string_equal(enc_err(L, expr), "Cannot serialise, excessive nesting (1001)");
    assert_string_equal(enc_err(L, "(function() local t = {} t.self = t return t end)()"),
                        "Cannot serialise, excessive nesting (1001)");
    assert_string_equal(
        enc_err(L, "(function() local a, b = {}, {} a[1] = b b[1] = a return a end)()"),
        "Cannot serialise, excessive nesting (1001)");
}

static void test_unsupported(void **state)
{
    lua_State *L = *state;
    assert_string_equal(enc_err(L, "print"), "Cannot serialise function: type not supported");
    assert_string_equal(enc_err(L, "{f = function() end}"),
                        "Cannot serialise function: type not supported");
    assert_string_equal(enc_err(L, "coroutine.create(print)"),
                        "Cannot serialise thread: type not supported");
    assert_string_equal(enc_err(L, "io.stdout"), "Cannot serialise userdata: type not supported");
    lua_pushlightuserdata(L, L);
    lua_setglobal(L, "ptr");
    assert_string_equal(enc_err(L, "{ptr}"), "Cannot serialise userdata: type not supported");
    assert_string_equal(enc_err(L, "{[true] = 1}"),
                        "Cannot serialise boolean: table key must be a number or string");
    assert_string_equal(enc_err(L, "{[{}] = 1}"),
                        "Cannot serialise table: table key must be a number or string");
}

/* sl_json_push and the Lua function: the text pushed, errors raised with
 * cjson's wording and no position. */
static void test_lua_function(void **state)
{
    lua_State *L = *state;
    lua_pushcfunction(L, sl_json_lua_encode);
    lua_setglobal(L, "encode");
    assert_int_equal(luaL_dostring(L, "return encode({n = 123456789012345, f = 0.1 + 0.2})"), 0);
    const char *s = lua_tostring(L, -1);
    assert_true(strcmp(s, "{\"n\":123456789012345,\"f\":0.30000000000000004}") == 0 ||
                strcmp(s, "{\"f\":0.30000000000000004,\"n\":123456789012345}") == 0);
    lua_settop(L, 0);
    assert_int_equal(luaL_dostring(L, "local ok, e = pcall(encode, {print}) return e"), 0);
    assert_string_equal(lua_tostring(L, -1), "Cannot serialise function: type not supported");
    lua_settop(L, 0);
    /* a large value, then a small one: the scratch buffer is reused or dropped */
    assert_int_equal(luaL_dostring(L, "return #encode(string.rep('x', 200000)) + #encode({1})"), 0);
    assert_int_equal(lua_tointeger(L, -1), 200002 + 3);
    lua_settop(L, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_integers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_floats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_doubles_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nan_and_inf_raise, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sparse_arrays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth_and_cycles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsupported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lua_function, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
