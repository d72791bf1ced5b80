/*
 * json.c — sluice's JSON subsystem for Lua values.
 *
 * The encoder: sluice.json.encode, and with it run results, parameters, dataset
 * reports, checkpoints, sluice.db.query table parameters and sluice.http json
 * bodies. The decoder: sluice.json.decode (so parameters and checkpoints at run
 * start, res:json()), and json/jsonb columns of sluice.db.query (lua_db.c).
 *
 * Why not cjson's: lua-cjson 2.1.0 reads and prints every number through a
 * double, printing at most 14 significant digits, so 123456789012345 was stored
 * as 123456789012340, 0.1 + 0.2 as 0.3, and 9007199254740993 (2^53 + 1) read as
 * 9007199254740992. Here integers print exactly and floats as the shortest of
 * 15, 16 or 17 digits that reads back to the same double; an integer literal
 * that fits in 64 bits decodes to that Lua integer, any other number to
 * strtod's double (one written with a fraction or an exponent becomes an
 * integer when it is whole and in range: 1.0 → 1, as sluice did after cjson's
 * decode). Both ignore LC_NUMERIC: JSON's point is '.'.
 *
 * Encoding otherwise follows cjson 2.1.0 with encode_sparse_array(true), so the
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
 * Decoding follows RFC 8259, with cjson's limits and error wording:
 *   - "Expected <what> but found <token> at character <n>" (n counts bytes from
 *     1); trailing text after the value is an error, space around it is not;
 *   - numbers are strict: no NaN, Infinity, hex, leading zeros or "1."; a
 *     literal too large for a double (1e309) reads as ±inf, as with cjson;
 *   - strings: every JSON escape; \u0000 gives a NUL byte; a surrogate pair
 *     gives its character and a lone surrogate U+FFFD (cjson refused it, so
 *     one cut emoji in a scraped item made the whole document unreadable);
 *     other bytes, invalid UTF-8 and control characters included, are kept as
 *     they are (cjson did; the params check refuses what Postgres cannot store);
 *   - null is the NULL light userdata; objects and arrays are tables ([] and {}
 *     alike), a repeated key keeps its last value; more than SL_JSON_MAX_DEPTH
 *     nested raise "Found too many nested data structures (1001) at character n".
 *
 * Memory: the text is built in an sl_buf. sl_json_encode() appends to the
 * caller's; sl_json_push() uses a scratch buffer owned by the lua_State (a
 * userdata in its registry, freed by its __gc), so a Lua error raised while the
 * text is pushed (out of memory) leaks nothing. The decoder builds tables and
 * strings on the Lua stack (escaped strings in a luaL_Buffer), so it too leaks
 * nothing when Lua runs out of memory. No global mutable state.
 */
#include "json.h"

#include <lauxlib.h>
#include <locale.h>
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
    size_t max; /* the longest text (sl_json_set_max); 0: no limit */
} encoder;

/* Whether the text has grown past its limit (the reason in err), or would with
 * n bytes more: checked before a string is added and after every value, so it
 * goes past it by at most the escapes of one string. */
static int too_long(encoder *e, size_t n)
{
    if (!e->max || e->b->len + n <= e->max) return 0;
    sl_seterr(e->err, e->errlen, "Cannot serialise, the text would be more than %zu bytes", e->max);
    return 1;
}

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
            if (add_value(e, depth) != 0 || too_long(e, 0)) return -1;
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
            if (too_long(e, len + 2)) return -1;
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
        if (add_value(e, depth) != 0 || too_long(e, 0)) return -1;
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
        if (too_long(e, len + 2)) return -1;
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

static int encode(lua_State *L, int idx, sl_buf *out, char *err, size_t errlen, size_t max)
{
    encoder e = {L, out, err, errlen, max};
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

int sl_json_encode(lua_State *L, int idx, sl_buf *out, char *err, size_t errlen)
{
    return encode(L, idx, out, err, errlen, 0);
}

/* ------------------------------------------------------------------ Lua side */

/* The scratch buffer is kept between calls (no allocation for most values),
 * unless a large value made it larger than this. */
#define SCRATCH_KEEP ((size_t)64 * 1024)

static const char scratch_key = 0; /* its address keys the registry entry */
static const char max_key = 0;     /* the registry's longest text (sl_json_set_max) */

void sl_json_set_max(lua_State *L, size_t max)
{
    lua_pushinteger(L, (lua_Integer)(max > (size_t)LUA_MAXINTEGER ? 0 : max));
    lua_rawsetp(L, LUA_REGISTRYINDEX, &max_key);
}

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
    lua_rawgetp(L, LUA_REGISTRYINDEX, &max_key);
    size_t max = lua_tointeger(L, -1) > 0 ? (size_t)lua_tointeger(L, -1) : 0;
    lua_pop(L, 1);
    sl_buf_reset(b);
    int rc = encode(L, idx, b, err, sizeof err, max);
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

/* ------------------------------------------------------------------ decoding */

/* A recursive descent over the text that builds the value directly on the Lua
 * stack: each table is made when its bracket is read and filled as its members
 * are, so nothing is built twice. Errors return -1 with cjson 2.1.0's wording
 * ("Expected <what> but found <token> at character <n>", n counted in bytes
 * from 1) and the stack as it was. */

typedef struct {
    lua_State *L;
    const char *text; /* the whole text, for positions */
    const char *p;    /* the next byte to read */
    const char *end;
    const char *point; /* the locale's decimal point, looked up when first needed */
    char *err;
    size_t errlen;
} decoder;

static void skip_space(decoder *d)
{
    const char *p = d->p;
    while (p < d->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    d->p = p;
}

static int starts(const decoder *d, const char *p, const char *word, size_t n)
{
    return (size_t)(d->end - p) >= n && memcmp(p, word, n) == 0;
}

/* cjson's name for the token at p ("T_END" past the text). */
static const char *token_name(const decoder *d, const char *p)
{
    if (p >= d->end) return "T_END";
    switch (*p) {
    case '{':
        return "T_OBJ_BEGIN";
    case '}':
        return "T_OBJ_END";
    case '[':
        return "T_ARR_BEGIN";
    case ']':
        return "T_ARR_END";
    case ':':
        return "T_COLON";
    case ',':
        return "T_COMMA";
    case '"':
        return "T_STRING";
    case 't':
        return starts(d, p, "true", 4) ? "T_BOOLEAN" : "invalid token";
    case 'f':
        return starts(d, p, "false", 5) ? "T_BOOLEAN" : "invalid token";
    case 'n':
        return starts(d, p, "null", 4) ? "T_NULL" : "invalid token";
    default:
        return (*p == '-' || (*p >= '0' && *p <= '9')) ? "T_NUMBER" : "invalid token";
    }
}

/* "Expected <expected> but found <found> at character <n>" for the byte at p;
 * found is the token there when NULL. */
static int expected(decoder *d, const char *what, const char *found, const char *p)
{
    if (!found) found = token_name(d, p);
    sl_seterr(d->err, d->errlen, "Expected %s but found %s at character %lld", what, found,
              (long long)(p - d->text) + 1);
    return -1;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The double a number literal (validated, n bytes at s, with a fraction or an
 * exponent, or beyond the 64-bit integers) stands for. strtod is given a
 * NUL-terminated copy (the text need not end after the literal; the copy of a
 * long one is Lua's memory, so running out raises and leaks nothing), with
 * LC_NUMERIC's decimal point in place of JSON's '.' when the two differ. Out of
 * range is ±HUGE_VAL (inf), as cjson gave. */
static double read_double(decoder *d, const char *s, size_t n)
{
    const char *point = ".";
    if (memchr(s, '.', n)) {
        if (!d->point) d->point = localeconv()->decimal_point;
        point = d->point;
    }
    size_t plen = strlen(point);
    char small[64];
    luaL_Buffer b;
    int boxed = n + plen + 1 > sizeof small;
    char *copy = boxed ? luaL_buffinitsize(d->L, &b, n + plen + 1) : small;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') { /* at most one */
            memcpy(copy + m, point, plen);
            m += plen;
        } else {
            copy[m++] = s[i];
        }
    }
    copy[m] = '\0';
    double v = strtod(copy, NULL);
    if (boxed) lua_pop(d->L, 1); /* the buffer's placeholder or box */
    return v;
}

/* A number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? and not followed by
 * a letter, digit, '.', '+' or '-' (01, 1., .5, 0x10, 1e, nan, inf are
 * "invalid number" or "invalid token"). An integer literal that fits in 64 bits
 * is that Lua integer, one that does not is strtod's double (-2^63 - 1 is the
 * float -2^63, not math.mininteger); a literal with a fraction or an exponent is
 * strtod's double, an integer when it is whole and fits (1.0 and 1e2, as sluice
 * made cjson's). */
static int push_number(decoder *d, const char *what)
{
    const char *start = d->p, *p = start, *end = d->end;
    int neg = *p == '-';
    if (neg) p++;
    if (p >= end || !is_digit(*p)) return expected(d, what, "invalid number", start);
    const char *digits = p;
    if (*p == '0')
        p++;
    else
        while (p < end && is_digit(*p))
            p++;
    size_t ndigits = (size_t)(p - digits);
    int integral = 1;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p)) return expected(d, what, "invalid number", start);
        while (p < end && is_digit(*p))
            p++;
        integral = 0;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || !is_digit(*p)) return expected(d, what, "invalid number", start);
        while (p < end && is_digit(*p))
            p++;
        integral = 0;
    }
    if (p < end && (is_digit(*p) || *p == '.' || *p == '+' || *p == '-' ||
                    ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')))
        return expected(d, what, "invalid number", start);
    d->p = p;
    if (integral && ndigits <= 19) {
        unsigned long long u = 0;
        for (const char *q = digits; q < digits + ndigits; q++)
            u = u * 10 + (unsigned)(*q - '0');
        /* 19 digits stay below 2^64; the magnitude of LLONG_MIN is LLONG_MAX + 1 */
        if (u <= (unsigned long long)LUA_MAXINTEGER + (unsigned)neg) {
            lua_pushinteger(d->L, neg ? (lua_Integer)(0ULL - u) : (lua_Integer)u);
            return 0;
        }
    }
    double v = read_double(d, start, (size_t)(p - start));
    lua_Integer i;
    if (!integral && v == floor(v) && lua_numbertointeger(v, &i))
        lua_pushinteger(d->L, i);
    else
        lua_pushnumber(d->L, v);
    return 0;
}

/* A string (d->p at its opening quote). Bytes other than '"' and '\' are kept
 * as they are, control characters and bytes that are not UTF-8 included (as
 * cjson did); escapes are JSON's, \u0000 gives a NUL byte, a surrogate pair one
 * character, and a lone surrogate U+FFFD (half of a character cut in two; cjson
 * refused it, and Postgres's jsonb does, so one such string made a whole
 * document unreadable). */
static int push_string(decoder *d, const char *what)
{
    const char *start = d->p + 1, *end = d->end, *q = start;
    while (q < end && *q != '"' && *q != '\\')
        q++;
    if (q < end && *q == '"') { /* no escapes: the bytes as they are */
        lua_pushlstring(d->L, start, (size_t)(q - start));
        d->p = q + 1;
        return 0;
    }
    const char *close = q; /* find the end, to size the buffer: escapes only shrink */
    while (close < end && *close != '"')
        close += *close == '\\' && close + 1 < end ? 2 : 1;
    if (close >= end) return expected(d, what, "unexpected end of string", end);
    luaL_Buffer b;
    char *out = luaL_buffinitsize(d->L, &b, (size_t)(close - start));
    char *o = out;
    memcpy(o, start, (size_t)(q - start));
    o += q - start;
    while (q < close) {
        if (*q != '\\') {
            *o++ = *q++;
            continue;
        }
        const char *esc = q;
        q += 2;
        switch (esc[1]) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '/':
            *o++ = '/';
            break;
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u': {
            long c = sl_hex4(q, (size_t)(d->end - q));
            if (c < 0) {
                lua_pop(d->L, 1); /* the buffer's placeholder or box */
                return expected(d, what, "invalid unicode escape code", esc);
            }
            q += 4;
            if (c >= 0xd800 && c <= 0xdbff) { /* a high surrogate: its low half follows */
                long lo = starts(d, q, "\\u", 2) ? sl_hex4(q + 2, (size_t)(d->end - q - 2)) : -1;
                if (lo >= 0xdc00 && lo <= 0xdfff) {
                    q += 6;
                    c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
                } else {
                    c = 0xfffd; /* half a character (a cut emoji): a replacement */
                }
            } else if (c >= 0xdc00 && c <= 0xdfff) {
                c = 0xfffd;
            }
            o += sl_utf8_put(o, (unsigned long)c);
            break;
        }
        default:
            lua_pop(d->L, 1);
            return expected(d, what, "invalid escape code", esc);
        }
    }
    luaL_pushresultsize(&b, (size_t)(o - out));
    d->p = close + 1;
    return 0;
}

static int push_value(decoder *d, int depth, const char *what);

/* Room on the stack for a table, a key, a value and a string buffer's box, and
 * cjson's limit: depth is the level of the table being opened (1 outermost). */
static int open_table(decoder *d, int depth)
{
    if (depth > SL_JSON_MAX_DEPTH || !lua_checkstack(d->L, 4)) {
        sl_seterr(d->err, d->errlen, "Found too many nested data structures (%d) at character %lld",
                  depth, (long long)(d->p - d->text) + 1);
        return -1;
    }
    d->p++; /* the bracket */
    skip_space(d);
    return 0;
}

/* Tables start with room for a few members (most are small, and it saves the
 * rehashes of growing from nothing), none when empty. */
#define TABLE_HINT 4

static int push_object(decoder *d, int depth)
{
    lua_State *L = d->L;
    if (open_table(d, depth) != 0) return -1;
    int empty = d->p < d->end && *d->p == '}';
    lua_createtable(L, 0, empty ? 0 : TABLE_HINT);
    if (empty) {
        d->p++;
        return 0;
    }
    for (;;) {
        if (d->p >= d->end || *d->p != '"') return expected(d, "object key string", NULL, d->p);
        if (push_string(d, "object key string") != 0) return -1;
        skip_space(d);
        if (d->p >= d->end || *d->p != ':') return expected(d, "colon", NULL, d->p);
        d->p++;
        skip_space(d);
        if (push_value(d, depth, "value") != 0) return -1;
        lua_rawset(L, -3); /* a repeated key: the last one wins */
        skip_space(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            skip_space(d);
        } else if (d->p < d->end && *d->p == '}') {
            d->p++;
            return 0;
        } else {
            return expected(d, "comma or object end", NULL, d->p);
        }
    }
}

static int push_array(decoder *d, int depth)
{
    lua_State *L = d->L;
    if (open_table(d, depth) != 0) return -1;
    int empty = d->p < d->end && *d->p == ']';
    lua_createtable(L, empty ? 0 : TABLE_HINT, 0);
    if (empty) {
        d->p++;
        return 0;
    }
    for (lua_Integer i = 1;; i++) {
        if (push_value(d, depth, "value") != 0) return -1;
        lua_rawseti(L, -2, i);
        skip_space(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            skip_space(d);
        } else if (d->p < d->end && *d->p == ']') {
            d->p++;
            return 0;
        } else {
            return expected(d, "comma or array end", NULL, d->p);
        }
    }
}

/* The value at d->p (space skipped), inside depth tables; what names it in an
 * error ("value"). */
static int push_value(decoder *d, int depth, const char *what)
{
    lua_State *L = d->L;
    const char *p = d->p;
    if (p >= d->end) return expected(d, what, NULL, p);
    switch (*p) {
    case '{':
        return push_object(d, depth + 1);
    case '[':
        return push_array(d, depth + 1);
    case '"':
        return push_string(d, what);
    case 't':
        if (!starts(d, p, "true", 4)) break;
        lua_pushboolean(L, 1);
        d->p += 4;
        return 0;
    case 'f':
        if (!starts(d, p, "false", 5)) break;
        lua_pushboolean(L, 0);
        d->p += 5;
        return 0;
    case 'n':
        if (!starts(d, p, "null", 4)) break;
        lua_pushlightuserdata(L, NULL); /* cjson.null */
        d->p += 4;
        return 0;
    default:
        if (*p == '-' || is_digit(*p)) return push_number(d, what);
        break;
    }
    return expected(d, what, NULL, p);
}

int sl_json_decode(lua_State *L, const char *s, size_t len, char *err, size_t errlen)
{
    decoder d = {L, s, s, s + len, NULL, err, errlen};
    int top = lua_gettop(L);
    if (!lua_checkstack(L, 2)) {
        sl_seterr(err, errlen, "Found too many nested data structures (0) at character 1");
        return -1;
    }
    skip_space(&d);
    if (push_value(&d, 0, "value") != 0) {
        lua_settop(L, top); /* the tables the error left open */
        return -1;
    }
    skip_space(&d);
    if (d.p < d.end) {
        expected(&d, "the end", NULL, d.p);
        lua_settop(L, top);
        return -1;
    }
    return 0;
}

int sl_json_lua_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char err[128];
    if (sl_json_decode(L, s, len, err, sizeof err) != 0) return luaL_error(L, "%s", err);
    return 1;
}
