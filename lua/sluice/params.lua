-- sluice.params — parameter schemas for job handlers.
--
-- A handler declares `params = { name = spec, ... }`. This module compiles that
-- table (checking the schema itself), validates decoded JSON input against it
-- (every problem at once, sorted by field path, with "did you mean" hints),
-- applies defaults, and describes the schema as plain JSON-friendly data for
-- the registry tables and for the SQL twin, sluice.check_params() in
-- schema/090_params_check.sql (its messages restated in
-- 161_params_plurals.sql), which reads exactly that description.
--
-- Pure Lua 5.4 (string, table, math, utf8 and basic functions only, and
-- sluice.plural) so it runs inside the handler sandbox. The spec language is
-- documented in docs/params.md.
--
--   local schema, errs = params.compile(spec)          -- nil, {msg...} on a bad schema
--   local value, errs  = params.validate(schema, input, { null = cjson.null })
--   params.defaults(schema)   params.describe(schema)   params.format_errors(errs)
--   params.suggest(name, candidates)                    -- nearest name or nil

local plural = require("sluice.plural")

local M = {}

local fmt, concat, sort = string.format, table.concat, table.sort

-- ===================================================================== tables

-- Keys every spec may carry, whatever its type.
local COMMON_KEYS = { type = true, required = true, default = true,
                      nullable = true, description = true }

-- Type-specific keys, per type. The set of types is the set of these keys.
local TYPE_KEYS = {
  string  = { min_length = true, max_length = true, pattern = true, enum = true },
  integer = { min = true, max = true, exclusive_min = true, exclusive_max = true, enum = true },
  number  = { min = true, max = true, exclusive_min = true, exclusive_max = true, enum = true },
  boolean = {},
  uuid    = {},
  url     = {},
  enum    = { values = true, enum = true },
  array   = { items = true, min_items = true, max_items = true },
  object  = { fields = true },
}

local TYPE_NAMES, ALL_KEYS = {}, {}
for t, keys in pairs(TYPE_KEYS) do
  TYPE_NAMES[#TYPE_NAMES + 1] = t
  for k in pairs(keys) do ALL_KEYS[k] = true end
end
sort(TYPE_NAMES)
for k in pairs(COMMON_KEYS) do ALL_KEYS[k] = true end

-- What a value "must be", per type, in messages.
local MUST_BE = {
  string = "a string", integer = "an integer", number = "a number",
  boolean = "a boolean", array = "an array", object = "an object",
  uuid = "a uuid", url = "an http(s) URL",
}

local UUID_PATTERN = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local URL_PATTERN = "^[hH][tT][tT][pP][sS]?://[^/?#%s]+%S*$"
local MAX_SHOWN = 60      -- longer strings are cut in messages
local MAX_DEPTH = 1000    -- nesting limit when copying values (catches cycles)

-- Schemas made by compile(); validate() refuses anything else.
local compiled = setmetatable({}, { __mode = "k" })

-- ===================================================================== helpers

-- Keys of t in a stable order (by type, then value, so mixed keys sort too).
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "string" or ta == "number" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

-- A table whose keys are exactly 1..n. The empty table counts (as an object too).
local function is_array(t)
  local n, max = 0, 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
    if k > max then max = k end
  end
  return n == max
end

local function is_object(t)
  return next(t) == nil or not is_array(t)
end

-- Deep copy of a decoded JSON value; `null` (the sentinel) is kept as is.
local function copy(v, null, depth)
  if type(v) ~= "table" or v == null then return v end
  depth = depth or 0
  if depth > MAX_DEPTH then error("params: value nested too deeply", 0) end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x, null, depth + 1) end
  return out
end

local function char_length(s)
  return utf8.len(s) or #s
end

-- Code points of s (bytes when s is not valid UTF-8).
local function chars(s)
  local out = {}
  if utf8.len(s) then
    for _, c in utf8.codes(s) do out[#out + 1] = c end
  else
    for i = 1, #s do out[i] = s:byte(i) end
  end
  return out
end

-- Edit distance over code points: insert, delete, substitute, or swap two
-- adjacent characters, each costing 1 (optimal string alignment distance;
-- sluice.param_edit_distance() in SQL computes the same).
local function edit_distance(a, b)
  local ca, cb = chars(a), chars(b)
  local before, prev = nil, {}
  for j = 0, #cb do prev[j] = j end
  for i = 1, #ca do
    local cur = { [0] = i }
    for j = 1, #cb do
      local cost = (ca[i] == cb[j]) and 0 or 1
      local d = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if before and j > 1 and ca[i] == cb[j - 1] and ca[i - 1] == cb[j] then
        d = math.min(d, before[j - 2] + 1)
      end
      cur[j] = d
    end
    before, prev = prev, cur
  end
  return prev[#cb]
end

-- The candidate nearest to name, if within max(2, len/3) edits; ties go to
-- the smaller name. Same rule as sluice.param_suggest() in SQL.
function M.suggest(name, candidates)
  if type(name) ~= "string" then return nil end
  local len = char_length(name)
  local limit = math.max(2, len // 3)
  local best, best_d
  for _, c in ipairs(candidates) do
    if math.abs(char_length(c) - len) <= limit then
      local d = edit_distance(name, c)
      if d <= limit and (best_d == nil or d < best_d or (d == best_d and c < best)) then
        best, best_d = c, d
      end
    end
  end
  return best
end

-- ===================================================================== value formatting

local function fmt_number(x)
  if math.type(x) == "integer" then return fmt("%d", x) end
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  local i = math.tointeger(x)
  if i and i ~= math.mininteger then return fmt("%d", i) end -- (-2^63: see check_integer)
  -- the fewest digits that read back as x: "got 1.0000000000000002", not "got 1"
  for digits = 14, 16 do
    local s = fmt("%." .. digits .. "g", x)
    if tonumber(s) == x then return s end
  end
  return fmt("%.17g", x)
end

local function fmt_string(s)
  local n = utf8.len(s)
  if n and n > MAX_SHOWN then
    s = s:sub(1, utf8.offset(s, MAX_SHOWN - 2) - 1) .. "..."
  elseif not n and #s > MAX_SHOWN then
    s = s:sub(1, MAX_SHOWN - 3) .. "..."
  end
  return '"' .. s .. '"'
end

-- JSON kind of a value: string number boolean null array object, else Lua type.
local function kind(v, null)
  if null ~= nil and v == null then return "null" end
  local t = type(v)
  if t == "table" then return is_object(v) and "object" or "array" end
  return t
end

-- A value as shown after "got": "weekly" in quotes, 1.5, true, null, array...
local function show(v, null)
  local k = kind(v, null)
  if k == "string" then return fmt_string(v) end
  if k == "number" then return fmt_number(v) end
  if k == "boolean" then return tostring(v) end
  return k
end

-- "string \"ten\"", "number 5", "array": kind, then the value for scalars.
local function show_typed(v, null)
  local k = kind(v, null)
  if k == "string" or k == "number" or k == "boolean" then
    return k .. " " .. show(v, null)
  end
  return k
end

local function show_enum(values)
  local parts = {}
  for i, v in ipairs(values) do
    parts[i] = type(v) == "string" and v or show(v)
  end
  return concat(parts, ", ")
end

-- ===================================================================== error collection

-- Errors carry a sort key (path segments joined by "\1", array indexes
-- zero-padded) and a sequence number, so the final order is by field path,
-- then by the order the rules ran. sluice.check_params() sorts the same way.

local function new_collector(null)
  return { errs = {}, seq = 0, null = null }
end

local function add(cx, key, text)
  cx.seq = cx.seq + 1
  cx.errs[#cx.errs + 1] = { key = key, seq = cx.seq, text = text }
end

local function sorted_texts(cx)
  sort(cx.errs, function(a, b)
    if a.key ~= b.key then return a.key < b.key end
    return a.seq < b.seq
  end)
  local out = {}
  for i, e in ipairs(cx.errs) do out[i] = e.text end
  return out
end

-- Path of a field inside an object at (show, key); show "" is the top level.
local function field_path(show_path, key, name)
  if show_path == "" then return name, name end
  return show_path .. "." .. name, key .. "\1" .. name
end

local function item_path(show_path, key, i)
  return fmt("%s[%d]", show_path, i), fmt("%s\1%010d", key, i)
end

-- ===================================================================== value checks

local check -- forward: check(node, v, path, key, cx) -> converted value

local function fail(cx, path, key, msg, ...)
  add(cx, key, path .. ": " .. fmt(msg, ...))
end

local function type_error(cx, node, v, path, key)
  fail(cx, path, key, "must be %s, got %s", MUST_BE[node.type], show_typed(v, cx.null))
end

local function check_enum(node, v, path, key, cx)
  for _, e in ipairs(node.enum) do
    if e == v then return e end
  end
  fail(cx, path, key, "must be one of %s; got %s", show_enum(node.enum), show(v, cx.null))
  return nil
end

local function check_range(node, n, path, key, cx)
  local lo, hi = node.min, node.max
  if lo ~= nil then
    if node.exclusive_min and not (n > lo) then
      fail(cx, path, key, "must be greater than %s, got %s", fmt_number(lo), fmt_number(n))
    elseif n < lo then
      fail(cx, path, key, "must be at least %s, got %s", fmt_number(lo), fmt_number(n))
    end
  end
  if hi ~= nil then
    if node.exclusive_max and not (n < hi) then
      fail(cx, path, key, "must be less than %s, got %s", fmt_number(hi), fmt_number(n))
    elseif n > hi then
      fail(cx, path, key, "must be at most %s, got %s", fmt_number(hi), fmt_number(n))
    end
  end
end

local function check_number(node, v, path, key, cx)
  if type(v) ~= "number" then return type_error(cx, node, v, path, key) end
  if v ~= v or v == math.huge or v == -math.huge then
    return fail(cx, path, key, "must be a finite number, got %s", fmt_number(v))
  end
  check_range(node, v, path, key, cx)
  if node.enum then return check_enum(node, v, path, key, cx) end
  return v
end

-- Integral floats (500.0, as JSON decoders produce) become integers.
local function check_integer(node, v, path, key, cx)
  local n = type(v) == "number" and math.tointeger(v) or nil
  -- a float at exactly -2^63 is an integer literal below the 64-bit range,
  -- rounded (the decoder reads -9223372036854775808 itself as an integer)
  if n == math.mininteger and math.type(v) == "float" then n = nil end
  if n == nil then return type_error(cx, node, v, path, key) end
  check_range(node, n, path, key, cx)
  if node.enum then return check_enum(node, n, path, key, cx) end
  return n
end

local function check_string(node, v, path, key, cx)
  if type(v) ~= "string" then return type_error(cx, node, v, path, key) end
  local n = char_length(v)
  if node.min_length and n < node.min_length then
    fail(cx, path, key, "must be at least %s long, got %d", plural(node.min_length, "character"), n)
  end
  if node.max_length and n > node.max_length then
    fail(cx, path, key, "must be at most %s long, got %d", plural(node.max_length, "character"), n)
  end
  if node.anchored then
    local ok, found = pcall(string.find, v, node.anchored)
    if not (ok and found) then
      fail(cx, path, key, "must match pattern %s, got %s", node.pattern, fmt_string(v))
    end
  end
  if node.enum then return check_enum(node, v, path, key, cx) end
  return v
end

local function check_boolean(node, v, path, key, cx)
  if type(v) ~= "boolean" then return type_error(cx, node, v, path, key) end
  return v
end

-- uuid and url: a wrong string shows as "abc"; a non-string shows its type.
local function check_format(pattern)
  return function(node, v, path, key, cx)
    if type(v) ~= "string" then return type_error(cx, node, v, path, key) end
    if not v:find(pattern) then
      return fail(cx, path, key, "must be %s, got %s", MUST_BE[node.type], fmt_string(v))
    end
    return v
  end
end

local function check_array(node, v, path, key, cx)
  if type(v) ~= "table" or v == cx.null or not is_array(v) then
    return type_error(cx, node, v, path, key)
  end
  local n = #v
  if node.min_items and n < node.min_items then
    fail(cx, path, key, "must have at least %s, got %d", plural(node.min_items, "item"), n)
  end
  if node.max_items and n > node.max_items then
    fail(cx, path, key, "must have at most %s, got %d", plural(node.max_items, "item"), n)
  end
  if not node.items then return copy(v, cx.null) end
  local out = {}
  for i = 1, n do
    local ipath, ikey = item_path(path, key, i)
    out[i] = check(node.items, v[i], ipath, ikey, cx)
  end
  return out
end

local function unknown_field(node, name, path, key, cx)
  local shown = type(name) == "string" and name or tostring(name)
  local full, fkey = field_path(path, key, shown)
  local near = M.suggest(name, node.names)
  if near then
    local near_full = field_path(path, key, near)
    add(cx, fkey, fmt("unknown parameter '%s' — did you mean '%s'?", full, near_full))
  else
    add(cx, fkey, fmt("unknown parameter '%s'", full))
  end
end

-- The fields of an object node: unknown keys, required, defaults, each value.
-- A null given for a nullable field comes out absent (nil).
local function check_fields(node, v, path, key, cx)
  for name in pairs(v) do
    if node.fields[name] == nil then unknown_field(node, name, path, key, cx) end
  end
  local out = {}
  for _, name in ipairs(node.names) do
    local f, x = node.fields[name], v[name]
    local fpath, fkey = field_path(path, key, name)
    if x == nil then
      if f.default ~= nil then
        out[name] = copy(f.default)
      elseif f.required then
        add(cx, fkey, fpath .. ": is required")
      end
    else
      local r = check(f, x, fpath, fkey, cx)
      if r ~= cx.null then out[name] = r end
    end
  end
  return out
end

local function check_object(node, v, path, key, cx)
  if type(v) ~= "table" or v == cx.null or not is_object(v) then
    return type_error(cx, node, v, path, key)
  end
  if not node.fields then return copy(v, cx.null) end
  return check_fields(node, v, path, key, cx)
end

local CHECKERS = {
  string = check_string, integer = check_integer, number = check_number,
  boolean = check_boolean, array = check_array, object = check_object,
  uuid = check_format(UUID_PATTERN), url = check_format(URL_PATTERN),
  enum = check_enum,
}

-- Checks v (not nil) against node; returns the converted value. Errors go
-- into cx; the returned value only matters when there were none.
check = function(node, v, path, key, cx)
  if cx.null ~= nil and v == cx.null then
    if node.nullable then return v end
    return fail(cx, path, key, "must not be null")
  end
  return CHECKERS[node.type](node, v, path, key, cx)
end

-- ===================================================================== Lua patterns

-- Index just past the single-character class starting at p[i], or nil, error.
-- Mirrors classEnd() in Lua's lstrlib.c.
local function class_end(p, i)
  local n = #p
  local c = p:sub(i, i)
  i = i + 1
  if c == "%" then
    if i > n then return nil, "malformed pattern (ends with '%')" end
    return i + 1
  end
  if c ~= "[" then return i end
  if p:sub(i, i) == "^" then i = i + 1 end
  repeat
    if i > n then return nil, "malformed pattern (missing ']')" end
    local ch = p:sub(i, i)
    i = i + 1
    if ch == "%" and i <= n then i = i + 1 end
  until p:sub(i, i) == "]"
  return i + 1
end

-- Static check of a Lua pattern: finds every error string.find could raise for some
-- subject (the matcher only reports errors in the parts it reaches).
-- Returns nil, error or true, has_end_anchor.
local function check_pattern(p)
  local i, n = 1, #p
  local open, level, closed = {}, 0, {}
  if p:sub(1, 1) == "^" then i = 2 end
  while i <= n do
    local c, d = p:sub(i, i), p:sub(i + 1, i + 1)
    if c == "(" then
      level = level + 1
      if level > 32 then return nil, "too many captures" end
      if d == ")" then closed[level], i = true, i + 2
      else open[#open + 1], i = level, i + 1 end
    elseif c == ")" then
      if #open == 0 then return nil, "invalid pattern capture" end
      closed[table.remove(open)], i = true, i + 1
    elseif c == "$" and i == n then
      if #open > 0 then return nil, "unfinished capture" end
      return true, true
    elseif c == "%" and d == "b" then
      if i + 3 > n then return nil, "missing arguments to '%b'" end
      i = i + 4
    elseif c == "%" and d == "f" then
      if p:sub(i + 2, i + 2) ~= "[" then return nil, "missing '[' after '%f' in pattern" end
      local e, err = class_end(p, i + 2)
      if not e then return nil, err end
      i = e
    elseif c == "%" and d:match("^%d$") then
      local l = tonumber(d)
      if l == 0 or not closed[l] then return nil, "invalid capture index %" .. d end
      i = i + 2
    else
      local e, err = class_end(p, i)
      if not e then return nil, err end
      i = e
      if p:sub(i, i):match("^[*+?%-]$") then i = i + 1 end
    end
  end
  if #open > 0 then return nil, "unfinished capture" end
  return true, false
end

-- The pattern anchored at both ends, or nil, error.
local function anchor_pattern(p)
  local ok, res = check_pattern(p)
  if not ok then return nil, res end
  local core = p:gsub("^%^", "", 1)
  if res then core = core:sub(1, -2) end
  local anchored = "^" .. core .. "$"
  local fine, err = pcall(string.find, "", anchored)
  if not fine then return nil, tostring(err) end
  return anchored
end

-- ===================================================================== schema compilation

local compile_node -- forward

local function serr(cx, path, key, msg, ...)
  add(cx, key, fmt("field '%s': ", path) .. fmt(msg, ...))
end

local function get_count(spec, k, path, key, cx)
  local v = spec[k]
  if v == nil then return nil end
  local n = type(v) == "number" and math.tointeger(v) or nil
  if n == nil or n < 0 then
    return serr(cx, path, key, "'%s' must be a non-negative integer, got %s", k, show(v))
  end
  return n
end

local function get_bound(spec, k, path, key, cx)
  local v = spec[k]
  if v == nil then return nil end
  if type(v) ~= "number" or v ~= v then
    return serr(cx, path, key, "'%s' must be a number, got %s", k, show(v))
  end
  return v
end

local function get_flag(spec, k, path, key, cx)
  local v = spec[k]
  if v == nil then return false end
  if type(v) ~= "boolean" then
    serr(cx, path, key, "'%s' must be true or false, got %s", k, show(v))
    return false
  end
  return v
end

local function check_order(node, lo, hi, path, key, cx)
  if node[lo] ~= nil and node[hi] ~= nil and node[lo] > node[hi] then
    serr(cx, path, key, "%s (%s) is greater than %s (%s)",
         lo, fmt_number(node[lo]), hi, fmt_number(node[hi]))
    return false
  end
  return true
end

-- A spec's list of allowed values; each must pass `base` (the bare type).
local function get_enum(list, what, base, path, key, cx)
  if type(list) ~= "table" or next(list) == nil or not is_array(list) then
    return serr(cx, path, key, "'%s' must be a non-empty list, got %s", what, show(list))
  end
  local sub, out = new_collector(), {}
  for i, v in ipairs(list) do
    local ipath = fmt("%s[%d]", what, i)
    if base then
      out[i] = check(base, v, ipath, "", sub)
    elseif type(v) == "string" or type(v) == "number" or type(v) == "boolean" then
      out[i] = v
    else
      add(sub, "", fmt("%s: must be a string, number or boolean, got %s", ipath, show(v)))
    end
  end
  for _, e in ipairs(sorted_texts(sub)) do serr(cx, path, key, "%s", e) end
  if #sub.errs > 0 then return nil end
  return out
end

local function build_number(spec, node, path, key, cx)
  node.min = get_bound(spec, "min", path, key, cx)
  node.max = get_bound(spec, "max", path, key, cx)
  node.exclusive_min = get_flag(spec, "exclusive_min", path, key, cx)
  node.exclusive_max = get_flag(spec, "exclusive_max", path, key, cx)
  for _, b in ipairs({ "min", "max" }) do
    if node["exclusive_" .. b] and node[b] == nil then
      serr(cx, path, key, "'exclusive_%s' needs '%s'", b, b)
    end
  end
  if check_order(node, "min", "max", path, key, cx) and node.min ~= nil and
     node.min == node.max and (node.exclusive_min or node.exclusive_max) then
    serr(cx, path, key, "min and max are both %s and a bound is exclusive: no value fits",
         fmt_number(node.min))
  end
  if spec.enum ~= nil then
    node.enum = get_enum(spec.enum, "enum", { type = node.type }, path, key, cx)
  end
end

local function build_string(spec, node, path, key, cx)
  node.min_length = get_count(spec, "min_length", path, key, cx)
  node.max_length = get_count(spec, "max_length", path, key, cx)
  check_order(node, "min_length", "max_length", path, key, cx)
  local p = spec.pattern
  if p ~= nil then
    if type(p) ~= "string" then
      serr(cx, path, key, "'pattern' must be a string, got %s", show(p))
    else
      local anchored, err = anchor_pattern(p)
      if not anchored then serr(cx, path, key, "bad pattern '%s': %s", p, err) end
      node.pattern, node.anchored = p, anchored
    end
  end
  if spec.enum ~= nil then
    node.enum = get_enum(spec.enum, "enum", { type = "string" }, path, key, cx)
  end
end

local function build_enum(spec, node, path, key, cx)
  if spec.values ~= nil and spec.enum ~= nil then
    return serr(cx, path, key, "give 'values' or 'enum', not both")
  end
  local what = spec.values ~= nil and "values" or "enum"
  if spec[what] == nil then
    return serr(cx, path, key, "type enum needs a 'values' list")
  end
  node.enum = get_enum(spec[what], what, nil, path, key, cx)
end

local function build_array(spec, node, path, key, cx)
  node.min_items = get_count(spec, "min_items", path, key, cx)
  node.max_items = get_count(spec, "max_items", path, key, cx)
  check_order(node, "min_items", "max_items", path, key, cx)
  local items = spec.items
  if items == nil then return end
  if type(items) == "string" then items = { type = items } end
  if type(items) ~= "table" then
    return serr(cx, path, key, "'items' must be a type name or a spec table, got %s", show(items))
  end
  node.items = compile_node(items, path .. "[]", key .. "\1[]", cx, true)
end

local compile_fields -- forward

local function build_object(spec, node, path, key, cx)
  if spec.fields == nil then return end
  if type(spec.fields) ~= "table" then
    return serr(cx, path, key, "'fields' must be a table, got %s", show(spec.fields))
  end
  compile_fields(spec.fields, node, path, key, cx)
end

local BUILDERS = {
  string = build_string, integer = build_number, number = build_number,
  enum = build_enum, array = build_array, object = build_object,
}

-- The type name of a spec, or nil after reporting why there is none.
local function get_type(spec, path, key, cx)
  local t = spec.type
  if t == nil then return serr(cx, path, key, "missing type") end
  if type(t) ~= "string" then
    return serr(cx, path, key, "type must be a string, got %s", show(t))
  end
  if TYPE_KEYS[t] then return t end
  local near = M.suggest(t, TYPE_NAMES)
  if near then return serr(cx, path, key, "unknown type '%s' — did you mean '%s'?", t, near) end
  return serr(cx, path, key, "unknown type '%s' (types: %s)", t, concat(TYPE_NAMES, ", "))
end

local function check_keys(spec, t, path, key, cx, is_item)
  local allowed = {}
  for k in pairs(COMMON_KEYS) do allowed[#allowed + 1] = k end
  for k in pairs(TYPE_KEYS[t]) do allowed[#allowed + 1] = k end
  for _, k in ipairs(sorted_keys(spec)) do
    if is_item and (k == "required" or k == "default") then
      serr(cx, path, key, "'%s' does not apply to array items", k)
    elseif not (COMMON_KEYS[k] or TYPE_KEYS[t][k]) then
      if ALL_KEYS[k] then
        serr(cx, path, key, "'%s' does not apply to type %s", k, t)
      else
        local near = M.suggest(k, allowed)
        serr(cx, path, key, "unknown key '%s'%s", tostring(k),
             near and fmt(" — did you mean '%s'?", near) or "")
      end
    end
  end
end

-- A default must pass its own spec; the stored default is the converted one.
local function compile_default(spec, node, path, key, cx)
  local sub = new_collector()
  local v = check(node, spec.default, "default", "", sub)
  for _, e in ipairs(sorted_texts(sub)) do serr(cx, path, key, "%s", e) end
  if #sub.errs == 0 then node.default = v end
end

-- Compiles one spec (at path/key) into a node, or returns nil after errors.
compile_node = function(spec, path, key, cx, is_item)
  if type(spec) ~= "table" then
    return serr(cx, path, key, "spec must be a table, got %s", show(spec))
  end
  local t = get_type(spec, path, key, cx)
  if not t then return nil end
  local before = #cx.errs
  check_keys(spec, t, path, key, cx, is_item)
  local node = { type = t }
  node.required = get_flag(spec, "required", path, key, cx)
  node.nullable = get_flag(spec, "nullable", path, key, cx)
  if spec.description ~= nil then
    if type(spec.description) ~= "string" then
      serr(cx, path, key, "'description' must be a string, got %s", show(spec.description))
    end
    node.description = spec.description
  end
  if BUILDERS[t] then BUILDERS[t](spec, node, path, key, cx) end
  if spec.default ~= nil and #cx.errs == before then
    compile_default(spec, node, path, key, cx)
    node.required = false -- a default satisfies `required`
  end
  return node
end

-- Compiles a table of name = spec into node.fields / node.names.
compile_fields = function(specs, node, path, key, cx)
  node.fields = {}
  for name, spec in pairs(specs) do
    if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
      local shown = type(name) == "string" and name or tostring(name)
      local fpath, fkey = field_path(path, key, shown)
      serr(cx, fpath, fkey, "a name is letters, digits and '_', not starting with a digit")
    else
      local fpath, fkey = field_path(path, key, name)
      node.fields[name] = compile_node(spec, fpath, fkey, cx, false)
    end
  end
  node.names = sorted_keys(node.fields)
end

-- ===================================================================== describe

local function describe_node(node)
  local d = { type = node.type, required = node.required, nullable = node.nullable }
  for _, k in ipairs({ "description", "min", "max", "min_length", "max_length",
                       "pattern", "min_items", "max_items" }) do
    d[k] = node[k]
  end
  if node.exclusive_min then d.exclusive_min = true end
  if node.exclusive_max then d.exclusive_max = true end
  if node.default ~= nil then d.default = copy(node.default) end
  if node.enum then d.enum = copy(node.enum) end
  if node.items then d.items = describe_node(node.items) end
  if node.fields then
    d.fields = {}
    for name, f in pairs(node.fields) do d.fields[name] = describe_node(f) end
  end
  return d
end

local function assert_schema(schema, fn)
  if not compiled[schema] then
    error(fmt("params.%s: schema must come from params.compile()", fn), 3)
  end
end

-- ===================================================================== public API

-- Compiles a handler's params table. Returns the schema, or nil and a sorted
-- list of error strings describing what is wrong with the schema itself.
function M.compile(spec)
  if type(spec) ~= "table" then
    return nil, { "params must be a table, got " .. show(spec) }
  end
  local cx = new_collector()
  local root = { type = "object" }
  compile_fields(spec, root, "", "", cx)
  if #cx.errs > 0 then return nil, sorted_texts(cx) end
  compiled[root] = true
  return root
end

-- Validates input (a decoded JSON object, or nil for none) against schema.
-- Returns a new table with defaults applied (input is not modified), or nil
-- and every problem found, sorted by field path. opts.null is the JSON null
-- sentinel of the decoder in use.
function M.validate(schema, input, opts)
  assert_schema(schema, "validate")
  local cx = new_collector(opts and opts.null)
  if input == nil then input = {} end
  if type(input) ~= "table" or input == cx.null or not is_object(input) then
    return nil, { "parameters must be a JSON object" }
  end
  local out = check_fields(schema, input, "", "", cx)
  if #cx.errs > 0 then return nil, sorted_texts(cx) end
  return out
end

-- The top-level default values, as fresh copies.
function M.defaults(schema)
  assert_schema(schema, "defaults")
  local out = {}
  for name, f in pairs(schema.fields) do
    if f.default ~= nil then out[name] = copy(f.default) end
  end
  return out
end

-- The schema as plain data: { name = { type=, required=, nullable=, ... } },
-- with items always a spec table and type-enum values under `enum`. This is
-- the p_schema argument of sluice.check_params() in SQL.
function M.describe(schema)
  assert_schema(schema, "describe")
  return describe_node(schema).fields
end

function M.format_errors(errs)
  return concat(errs or {}, "; ")
end

return M
