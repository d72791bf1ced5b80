/*
 * json.h — sluice's JSON for Lua values: the encoder (sluice.json.encode, table
 * parameters of sluice.db.query, run results, reports, params) and the decoder
 * (sluice.json.decode, parameters and checkpoints at run start, json/jsonb
 * columns of sluice.db.query).
 *
 * They replace lua-cjson 2.1.0's, which read and printed every number through a
 * double (and printed at most 14 significant digits). Integers print and read
 * exactly; floats print as the shortest of 15/16/17 digits that reads back to
 * the same double. Tables follow cjson's rules with encode_sparse_array on;
 * errors use cjson's wording ("Cannot serialise …", "Expected … but found …
 * at character n").
 */
#ifndef SL_JSON_H
#define SL_JSON_H

#include <lua.h>
#include <stddef.h>

#include "buf.h"

/* Nested tables allowed (cjson's encode_max_depth); deeper, or cyclic, raises. */
#define SL_JSON_MAX_DEPTH 1000

/* Appends the value at idx as JSON to out. 0, or -1 with the reason in err
 * (e.g. "Cannot serialise function: type not supported"); out then holds part
 * of the text. Never raises and never calls Lua code (no metamethods): it reads
 * tables raw. Uses three stack slots per level of nesting, balanced on return. */
int sl_json_encode(lua_State *L, int idx, sl_buf *out, char *err, size_t errlen);

/* Pushes the JSON text of the value at idx; raises the reason as a Lua error.
 * The text is built in a scratch buffer the state owns (in its registry), so an
 * error raised while pushing leaks nothing. A text longer than the state's
 * limit (sl_json_set_max) is refused while it is built. */
void sl_json_push(lua_State *L, int idx);

/* The longest JSON text sl_json_push builds for L's state (0: no limit). The
 * text is built outside the state, where no memory cap holds, then pushed as a
 * string: a table holding one large string many times makes text without end
 * ("Cannot serialise, the text would be more than N bytes"). */
void sl_json_set_max(lua_State *L, size_t max);

/* encode(value) → json: the Lua function (sluice.json.encode). */
int sl_json_lua_encode(lua_State *L);

/* Pushes the value of the JSON text s (len bytes, NUL bytes allowed): 0; or -1
 * with the reason in err, cjson's words and the byte it is about, counted from 1
 * ("Expected comma or object end but found T_STRING at character 12"), and the
 * stack as it was. Integer literals that fit in 64 bits are Lua integers; other
 * numbers are doubles, and those written with a fraction or an exponent become
 * integers when whole and in range (1.0 → 1); null is the NULL light userdata
 * (cjson.null); [] and {} are empty tables. Tables nest at most
 * SL_JSON_MAX_DEPTH deep. Raises only when Lua runs out of memory; never calls
 * Lua code. Uses four stack slots per level of nesting. */
int sl_json_decode(lua_State *L, const char *s, size_t len, char *err, size_t errlen);

/* decode(json) → value: the Lua function (sluice.json.decode); raises the
 * reason. */
int sl_json_lua_decode(lua_State *L);

#endif
