/*
 * lua_pattern.c — Lua 5.4 pattern matching with a step budget: the
 * `string.find`, `string.match`, `string.gmatch` and `string.gsub` that
 * handlers (and the shipped libraries, and the host script) call.
 *
 * Why: the instruction budget counts Lua instructions and a run's timeout is a
 * timer of the loop, so one call into the standard library's matcher that
 * backtracks for seconds (`("x"):rep(1500):find("x*x*y")`) would hold the whole
 * worker. These functions do what the reference manual (§6.4.1, patterns, and
 * §6.4, the four functions) says, with the standard library's results and
 * error messages, but count their matching steps: a call that spends more than
 * its budget (PAT_BASE_STEPS plus PAT_STEPS_PER_BYTE per byte of the subject)
 * raises "string.find: pattern too complex for this input (...)", which fails
 * its run like any error.
 *
 * runtime.lua installs them into the `string` table (and so into the string
 * metatable's __index and every sandbox's read-only proxy) before anything
 * else runs. tests/unit/test_pattern.c compares them with the standard
 * library's on thousands of cases.
 *
 * Uses only the Lua C API, <ctype.h> for the character classes (as the
 * standard library does, so both follow the same locale) and memmem for
 * plain finds.
 */
/* memmem is a GNU extension; the build defines _GNU_SOURCE */
#include "runtime_int.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ limits */

/* A call may take PAT_BASE_STEPS + PAT_STEPS_PER_BYTE * (subject length)
 * matching steps. A step is one entry into the matcher or one test of a single
 * character against a pattern item, about 2 ns: the base budget stops a
 * runaway call on a short subject within about 50 ms, and the per-byte share
 * (about 0.13 s per MB) lets ordinary patterns scan or gsub a subject of any
 * size. Measured: ordinary scans take 3 to 15 steps per byte; the costliest
 * call in the seed handlers' and the Lua suites' runs took 0.3 million steps
 * (the registry's scan of a 20 kB handler file for dataset keys). */
#define PAT_BASE_STEPS 20000000LL
#define PAT_STEPS_PER_BYTE 64LL

/* The same structural limits as the standard library: at most 32 captures, and
 * at most 200 nested matcher calls ("pattern too complex"). */
#define PAT_MAXCAPTURES 32
#define PAT_MAXDEPTH 200

#define CAP_OPEN (-1)     /* a capture whose ')' has not been reached yet */
#define CAP_POSITION (-2) /* a position capture `()` */

#define ESC '%'
#define SPECIALS "^$*+?.([%-"

typedef struct {
    const char *src;     /* the subject */
    const char *src_end; /* one past its last byte */
    const char *pat_end; /* one past the pattern's last byte */
    lua_State *L;
    const char *fname;      /* "string.find", for the budget error */
    long long steps_left;   /* matching steps this call may still take */
    long long steps_budget; /* what it started with */
    int depth_left;         /* nested matcher calls left for this attempt */
    int level;              /* captures opened so far */
    struct {
        const char *init;
        ptrdiff_t len; /* a length, CAP_OPEN or CAP_POSITION */
    } cap[PAT_MAXCAPTURES];
} matcher;

static void matcher_init(matcher *m, lua_State *L, const char *fname, const char *s, size_t ls,
                         const char *p, size_t lp)
{
    m->src = s;
    m->src_end = s + ls;
    m->pat_end = p + lp;
    m->L = L;
    m->fname = fname;
    m->steps_budget = PAT_BASE_STEPS + PAT_STEPS_PER_BYTE * (long long)ls;
    m->steps_left = m->steps_budget;
    m->depth_left = PAT_MAXDEPTH;
    m->level = 0;
}

/* Before each attempt at a new subject position: no captures, full depth (the
 * step budget is the call's, not the attempt's). */
static void matcher_reset(matcher *m)
{
    m->level = 0;
    m->depth_left = PAT_MAXDEPTH;
}

/* Raise an error as luaL_error does (the calling line's position, then the
 * message), but declared not to return, for the compiler and the analyzer. */
static _Noreturn void pat_error(lua_State *L, const char *fmt, ...)
{
    va_list ap;
    luaL_where(L, 1);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    lua_error(L);
    abort(); /* not reached */
}

static void charge(matcher *m, long long steps)
{
    m->steps_left -= steps;
    if (m->steps_left < 0)
        pat_error(m->L,
                  "%s: pattern too complex for this input (more than %I matching steps); "
                  "simplify the pattern or the input",
                  m->fname, (lua_Integer)m->steps_budget);
}

/* ------------------------------------------------------------------ single items */

/* Whether byte c is in class letter cl (%a, %d, ...; upper case complements).
 * Any other character after '%' stands for itself. */
static int class_matches(int c, int cl)
{
    int in;
    switch (tolower(cl)) {
    case 'a':
        in = isalpha(c);
        break;
    case 'c':
        in = iscntrl(c);
        break;
    case 'd':
        in = isdigit(c);
        break;
    case 'g':
        in = isgraph(c);
        break;
    case 'l':
        in = islower(c);
        break;
    case 'p':
        in = ispunct(c);
        break;
    case 's':
        in = isspace(c);
        break;
    case 'u':
        in = isupper(c);
        break;
    case 'w':
        in = isalnum(c);
        break;
    case 'x':
        in = isxdigit(c);
        break;
    case 'z':
        in = c == 0;
        break; /* undocumented since 5.2, still accepted */
    default:
        return cl == c;
    }
    if (isupper(cl)) return !in;
    return in != 0;
}

/* Whether byte c is in the set that starts at p ('[') and ends at close (']'). */
static int set_matches(int c, const char *p, const char *close)
{
    int want = 1;
    p++;
    if (*p == '^') {
        want = 0;
        p++;
    }
    for (; p < close; p++) {
        if (*p == ESC) {
            p++;
            if (class_matches(c, (unsigned char)*p)) return want;
        } else if (p[1] == '-' && p + 2 < close) {
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2]) return want;
            p += 2;
        } else if ((unsigned char)*p == c) {
            return want;
        }
    }
    return !want;
}

/* The end of the single-character item at p: past "%x", past "[...]", or
 * past one character. Raises on a malformed item. */
static const char *item_end(matcher *m, const char *p)
{
    char c = *p++;
    if (c == ESC) {
        if (p >= m->pat_end) pat_error(m->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c == '[') {
        if (p < m->pat_end && *p == '^') p++;
        /* the first character of a set is a member even when it is ']' */
        do {
            if (p >= m->pat_end) pat_error(m->L, "malformed pattern (missing ']')");
            c = *p++;
            if (c == ESC && p < m->pat_end) p++;
        } while (p >= m->pat_end || *p != ']');
        return p + 1;
    }
    return p;
}

/* Whether the subject byte at s matches the item p..ep (one step). */
static int item_matches(matcher *m, const char *s, const char *p, const char *ep)
{
    charge(m, 1);
    if (s >= m->src_end) return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.':
        return 1;
    case ESC:
        return class_matches(c, (unsigned char)p[1]);
    case '[':
        return set_matches(c, p, ep - 1);
    default:
        return (unsigned char)*p == c;
    }
}

/* ------------------------------------------------------------------ the matcher */

static const char *do_match(matcher *m, const char *s, const char *p);

/* %bxy at s: the end of a balanced x...y run, or NULL. */
static const char *match_balance(matcher *m, const char *s, const char *p)
{
    if (m->pat_end - p < 2) pat_error(m->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= m->src_end || *s != p[0]) return NULL;
    int open = 1;
    for (const char *q = s + 1; q < m->src_end; q++) {
        charge(m, 1);
        if (*q == p[1]) {
            if (--open == 0) return q + 1;
        } else if (*q == p[0]) {
            open++;
        }
    }
    return NULL;
}

/* The index of a finished capture named by digit d of a back-reference. */
static int capture_index(matcher *m, int d)
{
    int i = d - '1';
    if (i < 0 || i >= m->level || m->cap[i].len == CAP_OPEN)
        pat_error(m->L, "invalid capture index %%%d", i + 1);
    return i;
}

/* %1..%9 at s: past the same text as the capture, or NULL (a position capture
 * is never matched as text). */
static const char *match_backref(matcher *m, const char *s, int d)
{
    int i = capture_index(m, d);
    ptrdiff_t len = m->cap[i].len;
    if (len < 0 || m->src_end - s < len) return NULL;
    charge(m, 1 + len / 64);
    if (memcmp(m->cap[i].init, s, (size_t)len) != 0) return NULL;
    return s + len;
}

static const char *open_capture(matcher *m, const char *s, const char *p, ptrdiff_t what)
{
    if (m->level >= PAT_MAXCAPTURES) pat_error(m->L, "too many captures");
    m->cap[m->level].init = s;
    m->cap[m->level].len = what;
    m->level++;
    const char *r = do_match(m, s, p);
    if (!r) m->level--;
    return r;
}

static const char *close_capture(matcher *m, const char *s, const char *p)
{
    int i = m->level - 1;
    while (i >= 0 && m->cap[i].len != CAP_OPEN)
        i--;
    if (i < 0) pat_error(m->L, "invalid pattern capture");
    m->cap[i].len = s - m->cap[i].init;
    const char *r = do_match(m, s, p);
    if (!r) m->cap[i].len = CAP_OPEN;
    return r;
}

/* item* (and item+ after its first character): the longest run first. */
static const char *match_greedy(matcher *m, const char *s, const char *p, const char *ep)
{
    ptrdiff_t n = 0;
    while (item_matches(m, s + n, p, ep))
        n++;
    for (; n >= 0; n--) {
        const char *r = do_match(m, s + n, ep + 1);
        if (r) return r;
    }
    return NULL;
}

/* item-: the shortest run first. */
static const char *match_lazy(matcher *m, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = do_match(m, s, ep + 1);
        if (r) return r;
        if (!item_matches(m, s, p, ep)) return NULL;
        s++;
    }
}

/* Match pattern p (up to m->pat_end) at subject position s: the end of the
 * match, or NULL. Recurses where the rest of the pattern must be tried from
 * several places (captures, '?', '*', '+', '-'), and nowhere else, so that the
 * depth limit falls where the standard library's does. */
static const char *do_match(matcher *m, const char *s, const char *p)
{
    if (m->depth_left == 0) pat_error(m->L, "pattern too complex");
    m->depth_left--;
    charge(m, 1);
    for (;;) {
        if (p >= m->pat_end) break;
        if (*p == '(') {
            if (p + 1 < m->pat_end && p[1] == ')')
                s = open_capture(m, s, p + 2, CAP_POSITION);
            else
                s = open_capture(m, s, p + 1, CAP_OPEN);
            break;
        }
        if (*p == ')') {
            s = close_capture(m, s, p + 1);
            break;
        }
        if (*p == '$' && p + 1 == m->pat_end) {
            if (s != m->src_end) s = NULL;
            break;
        }
        if (*p == ESC && p + 1 < m->pat_end) {
            char e = p[1];
            if (e == 'b') {
                s = match_balance(m, s, p + 2);
                if (!s) break;
                p += 4;
                continue;
            }
            if (e == 'f') {
                p += 2;
                if (p >= m->pat_end || *p != '[')
                    pat_error(m->L, "missing '[' after '%%f' in pattern");
                const char *ep = item_end(m, p);
                int prev = s == m->src ? 0 : (unsigned char)s[-1];
                int cur = s < m->src_end ? (unsigned char)*s : 0;
                charge(m, 1);
                if (set_matches(prev, p, ep - 1) || !set_matches(cur, p, ep - 1)) {
                    s = NULL;
                    break;
                }
                p = ep;
                continue;
            }
            if (isdigit((unsigned char)e)) {
                s = match_backref(m, s, (unsigned char)e);
                if (!s) break;
                p += 2;
                continue;
            }
        }
        /* a single-character item, perhaps with a quantifier */
        const char *ep = item_end(m, p);
        char q = ep < m->pat_end ? *ep : '\0';
        if (!item_matches(m, s, p, ep)) {
            if (q == '*' || q == '?' || q == '-') {
                p = ep + 1;
                continue;
            }
            s = NULL;
            break;
        }
        if (q == '?') {
            const char *r = do_match(m, s + 1, ep + 1);
            if (r) {
                s = r;
                break;
            }
            p = ep + 1;
            continue;
        }
        if (q == '+') {
            s = match_greedy(m, s + 1, p, ep);
            break;
        }
        if (q == '*') {
            s = match_greedy(m, s, p, ep);
            break;
        }
        if (q == '-') {
            s = match_lazy(m, s, p, ep);
            break;
        }
        s++;
        p = ep;
    }
    m->depth_left++;
    return s;
}

/* ------------------------------------------------------------------ captures */

/* Push capture i of the match s..e (the whole match when there are no
 * captures and i is 0); returns the capture's length, or CAP_POSITION when it
 * pushed a position. */
static ptrdiff_t push_capture(matcher *m, int i, const char *s, const char *e)
{
    if (i >= m->level) {
        if (i != 0) pat_error(m->L, "invalid capture index %%%d", i + 1);
        lua_pushlstring(m->L, s, (size_t)(e - s));
        return e - s;
    }
    ptrdiff_t len = m->cap[i].len;
    if (len == CAP_OPEN) pat_error(m->L, "unfinished capture");
    if (len == CAP_POSITION)
        lua_pushinteger(m->L, (lua_Integer)(m->cap[i].init - m->src) + 1);
    else
        lua_pushlstring(m->L, m->cap[i].init, (size_t)len);
    return len;
}

/* Push every capture (or, with none, the whole match s..e when s is given). */
static int push_captures(matcher *m, const char *s, const char *e)
{
    int n = (m->level == 0 && s) ? 1 : m->level;
    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_capture(m, i, s, e);
    return n;
}

/* ------------------------------------------------------------------ the functions */

/* A 1-based start position from a possibly negative or zero init. */
static size_t start_pos(lua_Integer init, size_t len)
{
    if (init > 0) return (size_t)init;
    if (init == 0) return 1;
    if (init < -(lua_Integer)len) return 1;
    return (size_t)((lua_Integer)len + init + 1);
}

static int has_specials(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++)
        if (p[i] != '\0' && strchr(SPECIALS, p[i])) return 1;
    return 0;
}

/* Strips a leading '^' from the pattern *p of *lp bytes: whether it was there
 * (an anchor for find, match and gsub; gmatch reads it as itself). */
static int strip_anchor(const char **p, size_t *lp)
{
    if (*lp == 0 || **p != '^') return 0;
    (*p)++;
    (*lp)--;
    return 1;
}

/* The end of the first match of p at or after m->src + *at (moved to where it
 * starts) that does not end at `last`, where the previous match ended (-1:
 * none); NULL when there is none, or none at *at when anchored. */
static const char *next_match(matcher *m, const char *p, size_t *at, ptrdiff_t last, int anchor)
{
    for (;; (*at)++) {
        matcher_reset(m);
        const char *e = do_match(m, m->src + *at, p);
        if (e && e - m->src != last) return e;
        if (anchor || m->src + *at >= m->src_end) return NULL;
    }
}

static int find_or_match(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
        const char *at = lp == 0 ? s + init : memmem(s + init, ls - init, p, lp);
        if (!at) {
            luaL_pushfail(L);
            return 1;
        }
        lua_pushinteger(L, (lua_Integer)(at - s) + 1);
        lua_pushinteger(L, (lua_Integer)(at - s) + (lua_Integer)lp);
        return 2;
    }
    matcher m;
    int anchor = strip_anchor(&p, &lp);
    matcher_init(&m, L, find ? "string.find" : "string.match", s, ls, p, lp);
    size_t at = init;
    const char *e = next_match(&m, p, &at, -1, anchor);
    if (!e) {
        luaL_pushfail(L);
        return 1;
    }
    if (!find) return push_captures(&m, s + at, e);
    lua_pushinteger(L, (lua_Integer)at + 1);
    lua_pushinteger(L, (lua_Integer)(e - s));
    return push_captures(&m, NULL, NULL) + 2;
}

static int pat_find(lua_State *L)
{
    return find_or_match(L, 1);
}

static int pat_match(lua_State *L)
{
    return find_or_match(L, 0);
}

/* gmatch's iterator state; the subject and pattern are upvalues 1 and 2. */
typedef struct {
    size_t pos;     /* where the next attempt starts */
    ptrdiff_t last; /* where the last match ended, or -1 */
} gmatch_state;

static int gmatch_next(lua_State *L)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
    gmatch_state *g = lua_touserdata(L, lua_upvalueindex(3));
    if (g->pos > ls) return 0;
    matcher m;
    matcher_init(&m, L, "string.gmatch", s, ls, p, lp);
    size_t at = g->pos;
    const char *e = next_match(&m, p, &at, g->last, 0);
    if (!e) return 0;
    g->pos = (size_t)(e - s);
    g->last = e - s;
    return push_captures(&m, s + at, e);
}

static int pat_gmatch(lua_State *L)
{
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    size_t init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls) init = ls + 1; /* past the end: no match */
    lua_settop(L, 2);
    gmatch_state *g = lua_newuserdatauv(L, sizeof *g, 0);
    g->pos = init;
    g->last = -1;
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

/* Append the replacement string (argument 3) for the match s..e: "%0" is the
 * match, "%1".."%9" its captures, "%%" a '%'. */
static void add_replacement_string(matcher *m, luaL_Buffer *b, const char *s, const char *e)
{
    lua_State *L = m->L;
    size_t lr;
    const char *r = lua_tolstring(L, 3, &lr);
    const char *end = r + lr;
    while (r < end) {
        const char *pct = memchr(r, ESC, (size_t)(end - r));
        if (!pct) break;
        luaL_addlstring(b, r, (size_t)(pct - r));
        char c = pct + 1 < end ? pct[1] : '\0';
        if (c == ESC) {
            luaL_addchar(b, ESC);
        } else if (c == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (c >= '1' && c <= '9') {
            push_capture(m, c - '1', s, e); /* a string, or a position */
            luaL_addvalue(b);
        } else {
            pat_error(L, "invalid use of '%c' in replacement string", ESC);
        }
        r = pct + 2;
    }
    if (r < end) luaL_addlstring(b, r, (size_t)(end - r));
}

/* Append the replacement for the match s..e; returns whether it replaced the
 * match (a table or function answering false or nil keeps it). */
static int add_replacement(matcher *m, luaL_Buffer *b, const char *s, const char *e, int tr)
{
    lua_State *L = m->L;
    if (tr == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(m, s, e);
        lua_call(L, n, 1);
    } else if (tr == LUA_TTABLE) {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    } else {
        add_replacement_string(m, b, s, e);
        return 1;
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return 0;
    }
    if (!lua_isstring(L, -1))
        pat_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return 1;
}

static int pat_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int tr = lua_type(L, 3);
    lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(
        L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
        "string/function/table");
    int anchor = strip_anchor(&p, &lp);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    matcher m;
    matcher_init(&m, L, "string.gsub", s, ls, p, lp);
    size_t at = 0;       /* where the next attempt starts */
    size_t kept = 0;     /* the text from here to `at` is kept as it is */
    ptrdiff_t last = -1; /* where the last match ended */
    lua_Integer n = 0;
    int changed = 0;
    while (n < max) {
        const char *e = next_match(&m, p, &at, last, anchor);
        if (!e) break;
        n++;
        luaL_addlstring(&b, s + kept, at - kept);
        changed |= add_replacement(&m, &b, s + at, e, tr);
        at = kept = (size_t)(e - s);
        last = e - s;
        if (anchor) break;
    }
    if (!changed) {
        lua_pushvalue(L, 1);
    } else {
        luaL_addlstring(&b, s + kept, ls - kept);
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

/* ------------------------------------------------------------------ module */

int luaopen_sluice_pattern(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"find", pat_find}, {"match", pat_match}, {"gmatch", pat_gmatch},
        {"gsub", pat_gsub}, {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
