/*
 * json.h — sluice's JSON encoder for Lua values (sluice.json.encode, table
 * parameters of sluice.db.query, run results, reports, params).
 *
 * It replaces lua-cjson 2.1.0's encoder, which prints every number with at most
 * 14 significant digits (through a double, integers too); decoding stays cjson's.
 * Integers print exactly, floats as the shortest of 15/16/17 digits that reads
 * back to the same double. Tables follow cjson's rules with encode_sparse_array
 * on; errors use cjson's wording ("Cannot serialise …").
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
 * error raised while pushing leaks nothing. */
void sl_json_push(lua_State *L, int idx);

/* encode(value) → json: the Lua function (sluice.json.encode). */
int sl_json_lua_encode(lua_State *L);

#endif
