/*
 * test_json.c — src/json.c, JSON for Lua values.
 *
 * The encoder: numbers exactly (the full 64-bit integer range; floats as text
 * strtod reads back to the same double, 10,000 random ones included), strings,
 * cjson's array/object rules with encode_sparse_array on, and cjson's errors
 * (NaN/Inf, nesting, cycles, unsupported types and keys).
 *
 * The decoder: every kind of value, integers exactly to the int64 edges (2^53 +
 * 1 included), floats that read back to what was encoded (10,000 random ones),
 * escapes and surrogate pairs, NUL bytes, nesting to the limit, every error
 * with its position, and large documents.
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
#include <locale.h>
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

/* Pushes the value the Lua expression evaluates to. */
static void push_expr(lua_State *L, const char *expr)
{
    char chunk[4096];
    snprintf(chunk, sizeof chunk, "return %s", expr);
    if (luaL_dostring(L, chunk) != 0) fail_msg("%s: %s", expr, lua_tostring(L, -1));
}

/* Encodes the value on top of the stack into b and empties the stack; the
 * encoder's status, its error in err. Asserts the encoder leaves the stack as
 * it was. */
static int encode_top(lua_State *L, sl_buf *b, char err[128])
{
    int top = lua_gettop(L);
    err[0] = '\0';
    int rc = sl_json_encode(L, -1, b, err, 128);
    assert_int_equal(lua_gettop(L), top);
    lua_settop(L, 0);
    return rc;
}

/* The JSON of the value on top of the stack (what: for the message); asserts it
 * encodes. Returns a static copy (valid until the next call). */
static const char *encoded(lua_State *L, const char *what)
{
    static char text[4096];
    sl_buf b = {0};
    char err[128];
    if (encode_top(L, &b, err) != 0) fail_msg("%s: %s", what, err);
    snprintf(text, sizeof text, "%s", sl_buf_str(&b));
    sl_buf_free(&b);
    return text;
}

/* The JSON of the value the Lua expression evaluates to (see encoded). */
static const char *enc(lua_State *L, const char *expr)
{
    push_expr(L, expr);
    return encoded(L, expr);
}

static const char *enc_number(lua_State *L, double d)
{
    lua_pushnumber(L, d);
    return encoded(L, "a number");
}

/* The error encoding the expression's value gives; asserts it fails. */
static const char *enc_err(lua_State *L, const char *expr)
{
    static char err[128];
    sl_buf b = {0};
    push_expr(L, expr);
    assert_int_equal(encode_top(L, &b, err), -1);
    sl_buf_free(&b);
    return err;
}

/* The next of a run of test doubles from the xorshift64 state *x (the same run
 * for the same seed): i % 3 picks any bit pattern (every exponent), an
 * everyday one, or a short decimal (some with 15 digits). Finite. */
static double next_double(uint64_t *x, int i)
{
    double d;
    do {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        memcpy(&d, x, sizeof d);
    } while (!isfinite(d));
    if (i % 3 == 1) d = (double)(*x >> 11) / 9007199254740992.0 * 1000;
    if (i % 3 == 2)
        d = (double)(long long)(*x % 2000000000000000ULL - 1000000000000000LL) /
            pow(10, (double)(*x >> 60));
    return d;
}

/* Runs the Lua chunk and asserts it returns true (about: for the message). */
static void holds(lua_State *L, const char *about, const char *chunk)
{
    if (luaL_dostring(L, chunk) != 0) fail_msg("%s: %s", about, lua_tostring(L, -1));
    if (!lua_toboolean(L, -1)) fail_msg("%s: not %s", about, chunk);
    lua_settop(L, 0);
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
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 10000; i++) {
        double d = next_double(&x, i);
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

/* The state's longest text: a table holding one string many times is refused
 * while its text is built, whichever string or table passes the limit, and the
 * limit can be lifted again. */
static void test_lua_function_text_limit(void **state)
{
    lua_State *L = *state;
    lua_pushcfunction(L, sl_json_lua_encode);
    lua_setglobal(L, "encode");
    sl_json_set_max(L, 1000);
    static const char *const too_long[] = {
        "local s = string.rep('x', 100) local t = {} for i = 1, 100 do t[i] = s end "
        "return select(2, pcall(encode, t))",
        "local s = string.rep('x', 100) local t = {} for i = 1, 100 do t['k' .. i] = s end "
        "return select(2, pcall(encode, t))",
        "local t = {} for i = 1, 1000 do t[i] = true end return select(2, pcall(encode, t))",
        "return select(2, pcall(encode, string.rep('x', 1000)))",
        "return select(2, pcall(encode, {[string.rep('k', 1000)] = 1}))",
    };
    for (size_t i = 0; i < sizeof too_long / sizeof *too_long; i++) {
        assert_int_equal(luaL_dostring(L, too_long[i]), 0);
        assert_string_equal(lua_tostring(L, -1),
                            "Cannot serialise, the text would be more than 1000 bytes");
        lua_settop(L, 0);
    }
    assert_int_equal(luaL_dostring(L, "return encode(string.rep('x', 998))"), 0);
    assert_int_equal(lua_rawlen(L, -1), 1000);
    lua_settop(L, 0);
    sl_json_set_max(L, 0);
    assert_int_equal(luaL_dostring(L, "local s = string.rep('x', 100) local t = {} "
                                      "for i = 1, 100 do t[i] = s end return #encode(t)"),
                     0);
    assert_int_equal(lua_tointeger(L, -1), 100 * 103 + 1);
    lua_settop(L, 0);
}

/* ------------------------------------------------------------------ decoding */

/* Decodes text (n bytes; strlen when n is 0) and asserts it decodes, to one
 * value, with the stack otherwise as it was; the value is left in global v. */
static void decn(lua_State *L, const char *text, size_t n)
{
    if (!n) n = strlen(text);
    int top = lua_gettop(L);
    char err[128] = "";
    if (sl_json_decode(L, text, n, err, sizeof err) != 0) fail_msg("%s: %s", text, err);
    assert_int_equal(lua_gettop(L), top + 1);
    lua_setglobal(L, "v");
}

/* Decodes text and asserts the Lua expression holds for v. */
static void dec_is(lua_State *L, const char *text, const char *cond)
{
    decn(L, text, 0);
    char chunk[1024];
    snprintf(chunk, sizeof chunk, "return %s", cond);
    holds(L, text, chunk);
}

/* Decodes text and asserts v is a number of Lua type ty ("integer" or
 * "float") equal to the Lua expression value. */
static void dec_num(lua_State *L, const char *text, const char *ty, const char *value)
{
    char cond[256];
    snprintf(cond, sizeof cond, "math.type(v) == '%s' and v == %s", ty, value);
    dec_is(L, text, cond);
}

/* The error decoding text gives; asserts it fails and leaves the stack alone. */
static const char *dec_err(lua_State *L, const char *text)
{
    static char err[128];
    lua_pushliteral(L, "below");
    err[0] = '\0';
    assert_int_equal(sl_json_decode(L, text, strlen(text), err, sizeof err), -1);
    assert_int_equal(lua_gettop(L), 1);
    assert_string_equal(lua_tostring(L, 1), "below");
    lua_settop(L, 0);
    return err;
}

static int null_setup(void **state)
{
    setup(state);
    lua_State *L = *state;
    lua_pushlightuserdata(L, NULL);
    lua_setglobal(L, "null");
    return 0;
}

static void test_decode_literals(void **state)
{
    lua_State *L = *state;
    dec_is(L, "true", "v == true");
    dec_is(L, "false", "v == false");
    dec_is(L, "null", "v == null and type(v) == 'userdata'");
    dec_is(L, "\"text\"", "v == 'text'");
    dec_is(L, "\"\"", "v == ''");
    dec_num(L, "0", "integer", "0");
    dec_num(L, "-12", "integer", "-12");
    dec_num(L, "2.5", "float", "2.5");
    dec_is(L, "[]", "type(v) == 'table' and next(v) == nil");
    dec_is(L, "{}", "type(v) == 'table' and next(v) == nil");
    dec_is(L, " \t\r\n 7 \n\t", "v == 7"); /* whitespace around: fine */
    dec_is(L, "\t\r\n [ 1 , { \"a\" : 2 } ] \n", "v[1] == 1 and v[2].a == 2");
}

static void test_decode_integers(void **state)
{
    lua_State *L = *state;
    static const char *exact[] = {
        "9007199254740993", /* 2^53 + 1: a double would give 2^53 */
        "-9007199254740993",   "123456789012345678",   "999999999999999999",  "1000000000000000000",
        "9223372036854775807", "-9223372036854775807", "9223372036854775806",
    };
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++) {
        dec_num(L, exact[i], "integer", exact[i]);
    }
    dec_is(L, "-9223372036854775808", "v == math.mininteger");
    dec_is(L, "[9223372036854775807, -9223372036854775808]",
           "v[1] == math.maxinteger and v[2] == math.mininteger");
    dec_num(L, "-0", "integer", "0");
    dec_is(L, "{\"records\": 9007199254740993}", "v.records == 9007199254740992 + 1");
    /* beyond int64: the nearest double, even when that is a whole one in range */
    dec_num(L, "9223372036854775808", "float", "2^63");
    dec_num(L, "-9223372036854775809", "float", "-2^63");
    dec_num(L, "18446744073709551616", "float", "2^64");
    dec_num(L, "123456789012345678901234567890", "float", "1.2345678901234568e29");
    /* a whole float that fits is an integer, as sluice made cjson's (1.0 → 1) */
    dec_num(L, "1.0", "integer", "1");
    dec_num(L, "1e2", "integer", "100");
    dec_num(L, "1E+2", "integer", "100");
    dec_num(L, "-2.000", "integer", "-2");
    dec_num(L, "-0.0", "integer", "0");
    dec_num(L, "1e18", "integer", "1000000000000000000");
    dec_num(L, "9007199254740993.0", "integer", "9007199254740992");
    dec_num(L, "1e19", "float", "1e19");
    dec_is(L, "[1.5, -0.25, 1e-3, 2.5E-1]",
           "v[1] == 1.5 and v[2] == -0.25 and v[3] == 0.001 and v[4] == 0.25");
    /* too large for a double: ±inf, as cjson read it (the params check refuses it) */
    dec_is(L, "1e309", "v == math.huge");
    dec_is(L, "-1e309", "v == -math.huge");
    dec_is(L, "1e-400", "v == 0");
    /* the text ends where its length says, whatever follows in memory */
    decn(L, "1.59", 3);
    holds(L, "1.59", "return v == 1.5");
    decn(L, "1e29", 3);
    holds(L, "1e29", "return math.type(v) == 'integer' and v == 100");
    /* a literal longer than any buffer */
    char lng[420] = "0.";
    memset(lng + 2, '3', 400);
    lng[402] = '\0';
    dec_is(L, lng, "v == 1/3");
}

static void test_decode_random_doubles_round_trip(void **state)
{
    lua_State *L = *state;
    uint64_t x = 0x2545f4914f6cdd1dULL;
    for (int i = 0; i < 10000; i++) {
        double d = next_double(&x, i);
        const char *s = enc_number(L, d);
        char err[128];
        if (sl_json_decode(L, s, strlen(s), err, sizeof err) != 0) fail_msg("%s: %s", s, err);
        double back = lua_tonumber(L, -1);
        if (back != d) fail_msg("%.17g encoded as %s decodes as %.17g", d, s, back);
        if (lua_isinteger(L, -1) && d != floor(d)) fail_msg("%s decodes as an integer", s);
        lua_settop(L, 0);
    }
}

/* JSON's point is '.', whatever LC_NUMERIC says. Skipped unless a locale with
 * ',' is installed (e.g. localedef -i de_DE -f UTF-8 DIR/de_DE.UTF-8 and
 * LOCPATH=DIR). */
static void test_decode_ignores_the_locale(void **state)
{
    lua_State *L = *state;
    static const char *commas[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8",
                                   "de_DE"};
    const char *set = NULL;
    for (size_t i = 0; i < sizeof commas / sizeof *commas && !set; i++)
        set = setlocale(LC_NUMERIC, commas[i]);
    if (!set) skip();
    dec_is(L, "[2.5, 0.30000000000000004, 1e-3, 12.75e1]",
           "v[1] == 2.5 and v[2] == 0.1 + 0.2 and v[3] == 0.001 and v[4] == 127.5");
    setlocale(LC_NUMERIC, "C");
}

static void test_decode_strings(void **state)
{
    lua_State *L = *state;
    dec_is(L, "\"a \\\"quote\\\", a \\\\ and a \\/\"", "v == 'a \"quote\", a \\\\ and a /'");
    dec_is(L, "\"\\b\\f\\n\\r\\t\"", "v == '\\b\\f\\n\\r\\t'");
    dec_is(L, "\"caf\\u00e9 \\u00E9 \\u20ac\"", "v == 'caf\\u{e9} \\u{e9} \\u{20ac}'");
    dec_is(L, "\"\\u0041\\u007f\\u0080\\u07ff\\u0800\\uffff\"",
           "v == 'A\\u{7f}\\u{80}\\u{7ff}\\u{800}\\u{ffff}'");
    /* a surrogate pair: one character, four bytes */
    dec_is(L, "\"\\ud83d\\ude00\"", "v == '\\u{1F600}' and #v == 4");
    dec_is(L, "\"\\uD800\\uDC00 \\uDBFF\\uDFFF\"", "v == '\\u{10000} \\u{10FFFF}'");
    /* half a surrogate pair (what a cut emoji becomes): U+FFFD, the rest kept */
    dec_is(L, "\"ok \\ud800\"", "v == 'ok \\u{fffd}'");
    dec_is(L, "\"\\ud83d\\u0041\"", "v == '\\u{fffd}A'");
    dec_is(L, "\"\\ud800\\n\"", "v == '\\u{fffd}\\n'");
    dec_is(L, "\"\\udc00x\\ude00\"", "v == '\\u{fffd}x\\u{fffd}'");
    dec_is(L, "\"\\ud83d\\ud83d\\ude00\"", "v == '\\u{fffd}\\u{1F600}'");
    /* \u0000 is a NUL byte in the string */
    dec_is(L, "\"a\\u0000b\"", "v == 'a\\0b' and #v == 3");
    dec_is(L, "{\"k\\u0000\": 1}", "v['k\\0'] == 1");
    /* bytes as they are: raw UTF-8, bytes that are not UTF-8, control characters */
    dec_is(L, "\"caf\xc3\xa9\"", "v == 'caf\\u{e9}'");
    dec_is(L, "\"x\xffy\xc3\"", "v == 'x\\255y\\xc3'");
    dec_is(L, "\"tab\there\x01\"", "v == 'tab\\there\\1'");
    decn(L, "\"a\0b\"", 5); /* a raw NUL byte too */
    holds(L, "a raw NUL", "return v == 'a\\0b'");
    /* a long string with escapes (the buffer leaves the stack for the heap) */
    dec_is(L, "[\"\\n\", \"\\u00e9\"]", "v[1] == '\\n' and v[2] == '\\u{e9}'");
    assert_int_equal(luaL_dostring(L, "s = string.rep('ab\\\\n\\\\u00e9\\\\\"', 20000)"), 0);
    lua_getglobal(L, "s");
    lua_pushfstring(L, "\"%s\"", lua_tostring(L, -1));
    decn(L, lua_tostring(L, -1), 0);
    lua_settop(L, 0);
    holds(L, "a long string", "return v == string.rep('ab\\n\\u{e9}\"', 20000)");
}

static void test_decode_tables(void **state)
{
    lua_State *L = *state;
    dec_is(L, "[1, \"two\", true, false, null, 6]",
           "#v == 6 and v[2] == 'two' and v[3] == true and v[4] == false and v[5] == null and v[6] "
           "== 6");
    dec_is(L, "[null, null]", "#v == 2 and v[1] == null");
    dec_is(L, "{\"a\": {\"b\": [1, {\"c\": \"d\"}]}, \"e\": []}",
           "v.a.b[1] == 1 and v.a.b[2].c == 'd' and next(v.e) == nil");
    dec_is(L, "{\"x\": 1, \"x\": 2, \"y\": 3, \"x\": 4}", "v.x == 4 and v.y == 3");
    dec_is(L, "{\"1\": \"one\"}", "v['1'] == 'one' and v[1] == nil"); /* keys stay strings */
    dec_is(L, "[[], {}, [[]]]",
           "#v == 3 and next(v[1]) == nil and next(v[2]) == nil and #v[3] == 1");
    dec_is(L, "{\"\": 0}", "v[''] == 0");
    dec_is(L, "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]", "#v == 17 and v[17] == 17");
}

static void test_decode_depth(void **state)
{
    lua_State *L = *state;
    char text[2 * 1001 + 1];
    /* 1000 nested arrays decode, 1001 do not (cjson's decode_max_depth) */
    memset(text, '[', 1000);
    memset(text + 1000, ']', 1000);
    text[2000] = '\0';
    dec_is(L, text, "type(v[1][1][1]) == 'table'");
    memset(text, '[', 1001);
    memset(text + 1001, ']', 1001);
    text[2002] = '\0';
    assert_string_equal(dec_err(L, text),
                        "Found too many nested data structures (1001) at character 1001");
    /* objects count the same */
    sl_buf b = {0};
    for (int i = 0; i < 1001; i++)
        sl_buf_add(&b, "{\"a\":", 5);
    sl_buf_add(&b, "1", 1);
    for (int i = 0; i < 1001; i++)
        sl_buf_add(&b, "}", 1);
    assert_string_equal(dec_err(L, sl_buf_str(&b)),
                        "Found too many nested data structures (1001) at character 5001");
    sl_buf_free(&b);
    /* a table can hold as many tables as it likes */
    dec_is(L, "[[],[],[],[],[],[],[],[],[],[],[],[],[],[],[],[],[],[],[],[],[],[],[],[],[]]",
           "#v == 25");
}

static void test_decode_errors(void **state)
{
    lua_State *L = *state;
    static const char *cases[][2] = {
        {"", "Expected value but found T_END at character 1"},
        {"   ", "Expected value but found T_END at character 4"},
        {"{\"message\": \"x\",}", "Expected object key string but found T_OBJ_END at character 17"},
        {"{", "Expected object key string but found T_END at character 2"},
        {"{1: 2}", "Expected object key string but found T_NUMBER at character 2"},
        {"{\"a\" 1}", "Expected colon but found T_NUMBER at character 6"},
        {"{\"a\":}", "Expected value but found T_OBJ_END at character 6"},
        {"{\"a\":1 \"b\":2}", "Expected comma or object end but found T_STRING at character 8"},
        {"{\"a\":1", "Expected comma or object end but found T_END at character 7"},
        {"[1,2", "Expected comma or array end but found T_END at character 5"},
        {"[1 2]", "Expected comma or array end but found T_NUMBER at character 4"},
        {"[1,]", "Expected value but found T_ARR_END at character 4"},
        {"[,1]", "Expected value but found T_COMMA at character 2"},
        {"]", "Expected value but found T_ARR_END at character 1"},
        {"}", "Expected value but found T_OBJ_END at character 1"},
        {":", "Expected value but found T_COLON at character 1"},
        {"{\"a\": T}", "Expected value but found invalid token at character 7"},
        {"tru", "Expected value but found invalid token at character 1"},
        {"nul", "Expected value but found invalid token at character 1"},
        {"'single'", "Expected value but found invalid token at character 1"},
        {"\xef\xbb\xbf{}", "Expected value but found invalid token at character 1"}, /* a BOM */
        /* strings */
        {"\"abc", "Expected value but found unexpected end of string at character 5"},
        {"\"abc\\", "Expected value but found unexpected end of string at character 6"},
        {"{\"ke", "Expected object key string but found unexpected end of string at character 5"},
        {"[\"a\\x\"]", "Expected value but found invalid escape code at character 4"},
        {"\"\\u12\"", "Expected value but found invalid unicode escape code at character 2"},
        {"\"\\u12g4\"", "Expected value but found invalid unicode escape code at character 2"},
        {"{\"\\q\": 1}", "Expected object key string but found invalid escape code at character 3"},
        /* numbers */
        {"-", "Expected value but found invalid number at character 1"},
        {"-a", "Expected value but found invalid number at character 1"},
        {"01", "Expected value but found invalid number at character 1"},
        {"[-01]", "Expected value but found invalid number at character 2"},
        {"1.", "Expected value but found invalid number at character 1"},
        {"1.e5", "Expected value but found invalid number at character 1"},
        {"1e", "Expected value but found invalid number at character 1"},
        {"1e+", "Expected value but found invalid number at character 1"},
        {"0x10", "Expected value but found invalid number at character 1"},
        {"1.5.3", "Expected value but found invalid number at character 1"},
        {"12abc", "Expected value but found invalid number at character 1"},
        {"[1-2]", "Expected value but found invalid number at character 2"},
        {".5", "Expected value but found invalid token at character 1"},
        {"+1", "Expected value but found invalid token at character 1"},
        /* trailing text */
        {"1 2", "Expected the end but found T_NUMBER at character 3"},
        {"[1] x", "Expected the end but found invalid token at character 5"},
        {"{} {}", "Expected the end but found T_OBJ_BEGIN at character 4"},
        {"null x", "Expected the end but found invalid token at character 6"},
        {"truex", "Expected the end but found invalid token at character 5"},
        {"\"a\"\"b\"", "Expected the end but found T_STRING at character 4"},
        {"[] ,", "Expected the end but found T_COMMA at character 4"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *got = dec_err(L, cases[i][0]);
        if (strcmp(got, cases[i][1]) != 0)
            fail_msg("%s: %s, not %s", cases[i][0], got, cases[i][1]);
    }
    /* a NUL byte is not whitespace */
    char err[128];
    assert_int_equal(sl_json_decode(L, "1\0", 2, err, sizeof err), -1);
    assert_string_equal(err, "Expected the end but found invalid token at character 2");
    assert_int_equal(lua_gettop(L), 0);
}

/* JSON has no NaN or Infinity (cjson 2.1.0 read them) */
static void test_decode_refuses_nan_and_infinity(void **state)
{
    lua_State *L = *state;
    static const char *cases[][2] = {
        {"NaN", "Expected value but found invalid token at character 1"},
        {"nan", "Expected value but found invalid token at character 1"},
        {"Infinity", "Expected value but found invalid token at character 1"},
        {"inf", "Expected value but found invalid token at character 1"},
        {"-Infinity", "Expected value but found invalid number at character 1"},
        {"-inf", "Expected value but found invalid number at character 1"},
        {"{\"x\": NaN}", "Expected value but found invalid token at character 7"},
        {"[1, -nan]", "Expected value but found invalid number at character 5"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_string_equal(dec_err(L, cases[i][0]), cases[i][1]);
}

/* A document of 100,000 records, encoded by json.c and decoded back. */
static void test_decode_big_documents(void **state)
{
    lua_State *L = *state;
    const char *make =
        "local t = {} for i = 1, 100000 do t[i] = {id = 9007199254740993 + i, name = "
        "'record \"' .. i .. '\"\\n', score = i / 7, tags = {'a', 'b'}, none = null} end "
        "return t";
    assert_int_equal(luaL_dostring(L, make), 0);
    sl_buf b = {0};
    char err[128];
    assert_int_equal(sl_json_encode(L, -1, &b, err, sizeof err), 0);
    lua_settop(L, 0);
    decn(L, sl_buf_str(&b), b.len);
    sl_buf_free(&b);
    assert_int_equal(
        luaL_dostring(L, "for i = 1, 100000 do local r = v[i] "
                         "if r.id ~= 9007199254740993 + i or r.name ~= 'record \"' .. i .. '\"\\n' "
                         "or r.score ~= i / 7 or r.tags[2] ~= 'b' or r.none ~= null then "
                         "return i end end return #v"),
        0);
    assert_int_equal(lua_tointeger(L, -1), 100000);
    lua_settop(L, 0);
}

/* The Lua function: the value, or the error raised with no position prefix. */
static void test_decode_lua_function(void **state)
{
    lua_State *L = *state;
    lua_pushcfunction(L, sl_json_lua_decode);
    lua_setglobal(L, "decode");
    lua_pushcfunction(L, sl_json_lua_encode);
    lua_setglobal(L, "encode");
    holds(L, "decode",
          "local v = decode('{\"n\": 9223372036854775807, \"f\": 0.1}') "
          "return v.n == math.maxinteger and v.f == 0.1");
    assert_int_equal(luaL_dostring(L, "local ok, e = pcall(decode, '{\"a\":1,}') return e"), 0);
    assert_string_equal(lua_tostring(L, -1),
                        "Expected object key string but found T_OBJ_END at character 8");
    lua_settop(L, 0);
    assert_int_equal(luaL_dostring(L, "local ok, e = pcall(decode, {}) return e"), 0);
    assert_non_null(strstr(lua_tostring(L, -1), "string expected"));
    lua_settop(L, 0);
    /* decode(encode(v)) keeps every integer */
    holds(L, "decode(encode(v))",
          "local t = {math.mininteger, math.maxinteger, 2^53 + 1 | 0, -1} "
          "local u = decode(encode(t)) "
          "for i = 1, 4 do if math.type(u[i]) ~= 'integer' or u[i] ~= t[i] then "
          "return false end end return true");
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
        cmocka_unit_test_setup_teardown(test_lua_function_text_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_literals, null_setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_integers, null_setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_random_doubles_round_trip, null_setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_decode_ignores_the_locale, null_setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_strings, null_setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_tables, null_setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_depth, null_setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_errors, null_setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_refuses_nan_and_infinity, null_setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_big_documents, null_setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_lua_function, null_setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
