-- tests/lua/test_params.lua — tests of lua/sluice/params.lua, the parameter
-- schema compiler and validator: every type and rule (good and bad), defaults,
-- nulls, nesting, error order and wording, suggestions, schema errors, and the
-- parameter sets of the reddit_scrape and amazon_review_scrape job types.
--
-- Self-contained: prints "ok - name" / "not ok - name: detail" per test, then
-- "N passed, M failed", and raises an error at the end if anything failed.
-- Uses only basic functions (print, pcall, error, pairs, setmetatable, ...) and
-- the string, table and math libraries; no os or io.

local params = require("sluice.params")

local fmt = string.format

-- A stand-in for the decoder's JSON null (cjson.null in the daemon).
local NULL = setmetatable({}, { __name = "null", __tostring = function() return "null" end })
local OPTS = { null = NULL }

-- ===================================================================== harness

local T = require("testlib")

-- Deterministic rendering of a value, integers and floats told apart.
local function dump(v)
  if v == NULL then return "null" end
  if type(v) == "string" then return fmt("%q", v) end
  if math.type(v) == "float" then return fmt("%.17g(float)", v) end
  if type(v) ~= "table" then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) ~= type(b) then return type(a) < type(b) end
    return a < b
  end)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = fmt("[%s]=%s", dump(k), dump(v[k])) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- Deep equality; numbers must also agree on integer vs float.
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then return a == b and math.type(a) == math.type(b) end
  if type(a) ~= "table" or a == b then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function expect(cond, msg, ...)
  if not cond then error(fmt(msg, ...), 2) end
end

local function expect_eq(got, want, what)
  if not same(got, want) then
    error(fmt("%s: expected %s, got %s", what or "value", dump(want), dump(got)), 2)
  end
end

local test = T.test

local function compile_ok(spec)
  local schema, errs = params.compile(spec)
  if not schema then error("compile failed: " .. params.format_errors(errs), 2) end
  return schema
end

local function compile_errors(spec)
  local schema, errs = params.compile(spec)
  if schema then error("compile succeeded, expected errors", 2) end
  return errs
end

local function valid(schema, input, opts)
  local v, errs = params.validate(schema, input, opts or OPTS)
  if v == nil then error("expected valid, got: " .. params.format_errors(errs), 2) end
  return v
end

local function invalid(schema, input, opts)
  local v, errs = params.validate(schema, input, opts or OPTS)
  if v ~= nil then error("expected errors, got value " .. dump(v), 2) end
  return errs
end

-- ===================================================================== the harness itself

test("harness: same() tells integers from floats and tables apart", function()
  expect(not same(500, 500.0), "500 and 500.0 compare equal")
  expect(not same({ a = 1 }, { a = 1, b = 2 }), "extra key missed")
  expect(not same({ a = 1, b = 2 }, { a = 1 }), "missing key missed")
  expect(same({ 1, { "x" } }, { 1, { "x" } }), "equal tables differ")
  expect(not pcall(expect_eq, 1, 2), "expect_eq accepted 1 == 2")
end)

-- ===================================================================== one field, one rule

-- { name, spec of field x, value of x, ok = expected output | err = {errors} }
local CASES = {
  { "string: accepts a string", { type = "string" }, "hi", ok = "hi" },
  { "string: rejects a number", { type = "string" }, 5, err = { "x: must be a string, got number 5" } },
  { "string: rejects a boolean", { type = "string" }, true, err = { "x: must be a string, got boolean true" } },
  { "string: rejects an array", { type = "string" }, { "a" }, err = { "x: must be a string, got array" } },
  { "string: rejects an object", { type = "string" }, { a = 1 }, err = { "x: must be a string, got object" } },
  { "string: long values are cut in messages", { type = "integer" }, string.rep("a", 70),
    err = { 'x: must be an integer, got string "' .. string.rep("a", 57) .. '..."' } },
  { "min_length: ok at the bound", { type = "string", min_length = 3 }, "abc", ok = "abc" },
  { "min_length: too short", { type = "string", min_length = 3 }, "ab",
    err = { "x: must be at least 3 characters long, got 2" } },
  { "min_length: one character is said so", { type = "string", min_length = 1 }, "",
    err = { "x: must be at least 1 character long, got 0" } },
  { "max_length: ok at the bound", { type = "string", max_length = 3 }, "abc", ok = "abc" },
  { "max_length: too long", { type = "string", max_length = 3 }, "abcd",
    err = { "x: must be at most 3 characters long, got 4" } },
  { "max_length: counts UTF-8 characters, not bytes", { type = "string", max_length = 3 }, "héé", ok = "héé" },
  { "min_length: counts UTF-8 characters, not bytes", { type = "string", min_length = 4 }, "héé",
    err = { "x: must be at least 4 characters long, got 3" } },
  { "pattern: whole string matches", { type = "string", pattern = "[a-z]+" }, "abc", ok = "abc" },
  { "pattern: a partial match is rejected", { type = "string", pattern = "[a-z]+" }, "abc1",
    err = { 'x: must match pattern [a-z]+, got "abc1"' } },
  { "pattern: a prefix match is rejected", { type = "string", pattern = "%d%d" }, "123",
    err = { 'x: must match pattern %d%d, got "123"' } },
  { "pattern: explicit anchors are accepted", { type = "string", pattern = "^%d%d$" }, "12", ok = "12" },
  { "pattern: explicit anchors still reject", { type = "string", pattern = "^%d%d$" }, "1x",
    err = { 'x: must match pattern ^%d%d$, got "1x"' } },
  { "pattern: lazy repetition must still reach the end", { type = "string", pattern = "a-" }, "aaa", ok = "aaa" },
  { "pattern: an escaped final $ is a literal", { type = "string", pattern = "%d+%$" }, "12$", ok = "12$" },
  { "pattern: an escaped final $ is required", { type = "string", pattern = "%d+%$" }, "12",
    err = { 'x: must match pattern %d+%$, got "12"' } },
  { "string enum: member", { type = "string", enum = { "a", "b" } }, "b", ok = "b" },
  { "string enum: not a member", { type = "string", enum = { "a", "b" } }, "c",
    err = { 'x: must be one of a, b; got "c"' } },
  { "string enum: wrong type is a type error", { type = "string", enum = { "a", "b" } }, 1,
    err = { "x: must be a string, got number 1" } },

  { "integer: accepts an integer", { type = "integer" }, 5, ok = 5 },
  { "integer: an integral float becomes an integer", { type = "integer" }, 500.0, ok = 500 },
  { "integer: rejects a fraction", { type = "integer" }, 1.5, err = { "x: must be an integer, got number 1.5" } },
  { "integer: rejects a string", { type = "integer" }, "ten", err = { 'x: must be an integer, got string "ten"' } },
  { "integer: rejects a numeric string", { type = "integer" }, "10", err = { 'x: must be an integer, got string "10"' } },
  { "integer: rejects a float beyond 64 bits", { type = "integer" }, 2.0 ^ 63,
    err = { "x: must be an integer, got number 9.223372036854776e+18" } },
  { "integer min: ok at the bound", { type = "integer", min = 1 }, 1, ok = 1 },
  { "integer min: below", { type = "integer", min = 1 }, 0, err = { "x: must be at least 1, got 0" } },
  { "integer max: ok at the bound", { type = "integer", max = 10000 }, 10000.0, ok = 10000 },
  { "integer max: above", { type = "integer", max = 10000 }, 10001, err = { "x: must be at most 10000, got 10001" } },
  { "integer enum: member given as float", { type = "integer", enum = { 1, 2, 3 } }, 2.0, ok = 2 },
  { "integer enum: not a member", { type = "integer", enum = { 1, 2, 3 } }, 4,
    err = { "x: must be one of 1, 2, 3; got 4" } },

  { "number: accepts a float", { type = "number" }, 0.5, ok = 0.5 },
  { "number: keeps an integer an integer", { type = "number" }, 1, ok = 1 },
  { "number: rejects a numeric string", { type = "number" }, "0.5", err = { 'x: must be a number, got string "0.5"' } },
  { "number: rejects a boolean", { type = "number" }, false, err = { "x: must be a number, got boolean false" } },
  { "number: rejects NaN", { type = "number" }, 0 / 0, err = { "x: must be a finite number, got nan" } },
  { "number: rejects infinity", { type = "number" }, math.huge, err = { "x: must be a finite number, got inf" } },
  { "number min: ok at the bound", { type = "number", min = 0, max = 1 }, 0, ok = 0 },
  { "number min: below", { type = "number", min = 0, max = 1 }, -0.1, err = { "x: must be at least 0, got -0.1" } },
  { "number max: ok at the bound", { type = "number", min = 0, max = 1 }, 1.0, ok = 1.0 },
  { "number max: above", { type = "number", min = 0, max = 1 }, 1.5, err = { "x: must be at most 1, got 1.5" } },
  { "exclusive_min: just above is ok", { type = "number", min = 0, exclusive_min = true }, 0.0001, ok = 0.0001 },
  { "exclusive_min: the bound is rejected", { type = "number", min = 0, exclusive_min = true }, 0,
    err = { "x: must be greater than 0, got 0" } },
  { "exclusive_max: just below is ok", { type = "number", max = 1, exclusive_max = true }, 0.999, ok = 0.999 },
  { "exclusive_max: the bound is rejected", { type = "number", max = 1, exclusive_max = true }, 1,
    err = { "x: must be less than 1, got 1" } },
  { "number enum: not a member", { type = "number", enum = { 0.5, 1 } }, 0.25,
    err = { "x: must be one of 0.5, 1; got 0.25" } },

  { "boolean: true", { type = "boolean" }, true, ok = true },
  { "boolean: false is a value, not a missing one", { type = "boolean", default = true }, false, ok = false },
  { "boolean: rejects a string", { type = "boolean" }, "true", err = { 'x: must be a boolean, got string "true"' } },
  { "boolean: rejects a number", { type = "boolean" }, 0, err = { "x: must be a boolean, got number 0" } },

  { "uuid: lower case", { type = "uuid" }, "3f0c2a8e-1b2d-4c5e-8f90-a1b2c3d4e5f6", ok = "3f0c2a8e-1b2d-4c5e-8f90-a1b2c3d4e5f6" },
  { "uuid: upper case", { type = "uuid" }, "3F0C2A8E-1B2D-4C5E-8F90-A1B2C3D4E5F6", ok = "3F0C2A8E-1B2D-4C5E-8F90-A1B2C3D4E5F6" },
  { "uuid: rejects garbage", { type = "uuid" }, "abc", err = { 'x: must be a uuid, got "abc"' } },
  { "uuid: rejects a missing hyphen", { type = "uuid" }, "3f0c2a8e1b2d-4c5e-8f90-a1b2c3d4e5f6",
    err = { 'x: must be a uuid, got "3f0c2a8e1b2d-4c5e-8f90-a1b2c3d4e5f6"' } },
  { "uuid: rejects a trailing character", { type = "uuid" }, "3f0c2a8e-1b2d-4c5e-8f90-a1b2c3d4e5f6x",
    err = { 'x: must be a uuid, got "3f0c2a8e-1b2d-4c5e-8f90-a1b2c3d4e5f6x"' } },
  { "uuid: rejects a non-hex digit", { type = "uuid" }, "3f0c2a8e-1b2d-4c5e-8f90-a1b2c3d4e5fg",
    err = { 'x: must be a uuid, got "3f0c2a8e-1b2d-4c5e-8f90-a1b2c3d4e5fg"' } },
  { "uuid: rejects a number", { type = "uuid" }, 5, err = { "x: must be a uuid, got number 5" } },

  { "url: https with path and query", { type = "url" }, "https://example.com/a?b=1", ok = "https://example.com/a?b=1" },
  { "url: http with a port", { type = "url" }, "http://localhost:8080", ok = "http://localhost:8080" },
  { "url: scheme is case-insensitive", { type = "url" }, "HTTPS://EXAMPLE.COM", ok = "HTTPS://EXAMPLE.COM" },
  { "url: rejects ftp", { type = "url" }, "ftp://example.com", err = { 'x: must be an http(s) URL, got "ftp://example.com"' } },
  { "url: rejects a missing host", { type = "url" }, "https:///path", err = { 'x: must be an http(s) URL, got "https:///path"' } },
  { "url: rejects whitespace", { type = "url" }, "https://a.com/x y", err = { 'x: must be an http(s) URL, got "https://a.com/x y"' } },
  { "url: rejects a relative reference", { type = "url" }, "example.com", err = { 'x: must be an http(s) URL, got "example.com"' } },
  { "url: rejects a number", { type = "url" }, 3, err = { "x: must be an http(s) URL, got number 3" } },

  { "enum type: member", { type = "enum", values = { "a", "b" } }, "a", ok = "a" },
  { "enum type: not a member", { type = "enum", values = { "a", "b" } }, "c", err = { 'x: must be one of a, b; got "c"' } },
  { "enum type: `enum` list works too", { type = "enum", enum = { "a", "b" } }, "b", ok = "b" },
  { "enum type: number members, float input", { type = "enum", values = { 1, 2 } }, 2.0, ok = 2 },
  { "enum type: number not a member", { type = "enum", values = { 1, 2 } }, 3, err = { "x: must be one of 1, 2; got 3" } },
  { "enum type: a table is not a member", { type = "enum", values = { "a" } }, { "a" }, err = { "x: must be one of a; got array" } },

  { "array: of strings", { type = "array", items = "string" }, { "a", "b" }, ok = { "a", "b" } },
  { "array: empty table is an empty array", { type = "array" }, {}, ok = {} },
  { "array: rejects a string", { type = "array" }, "a", err = { 'x: must be an array, got string "a"' } },
  { "array: rejects an object", { type = "array" }, { a = 1 }, err = { "x: must be an array, got object" } },
  { "array: rejects a table with holes", { type = "array" }, { [1] = "a", [3] = "c" }, err = { "x: must be an array, got object" } },
  { "array: without items anything goes", { type = "array" }, { 1, "a", { b = true } }, ok = { 1, "a", { b = true } } },
  { "min_items: ok at the bound", { type = "array", min_items = 2 }, { 1, 2 }, ok = { 1, 2 } },
  { "min_items: too few", { type = "array", min_items = 1 }, {}, err = { "x: must have at least 1 item, got 0" } },
  { "max_items: too many", { type = "array", max_items = 2 }, { 1, 2, 3 }, err = { "x: must have at most 2 items, got 3" } },
  { "max_items: one item is said so", { type = "array", max_items = 1 }, { 1, 2 }, err = { "x: must have at most 1 item, got 2" } },
  { "items: a bad item names its index", { type = "array", items = "string" }, { "a", 5 },
    err = { "x[2]: must be a string, got number 5" } },
  { "items: a full spec, converted", { type = "array", items = { type = "integer", min = 0 } }, { 1.0, 2 }, ok = { 1, 2 } },
  { "items: a full spec, every bad item", { type = "array", items = { type = "integer", min = 0 } }, { -1, 2, 1.5 },
    err = { "x[1]: must be at least 0, got -1", "x[3]: must be an integer, got number 1.5" } },
  { "items: arrays of arrays", { type = "array", items = { type = "array", items = "integer" } }, { { 1 }, { 2, "z" } },
    err = { 'x[2][2]: must be an integer, got string "z"' } },

  { "object: any object without fields", { type = "object" }, { a = 1, b = { c = 2 } }, ok = { a = 1, b = { c = 2 } } },
  { "object: empty table is an empty object", { type = "object" }, {}, ok = {} },
  { "object: rejects an array", { type = "object" }, { 1, 2 }, err = { "x: must be an object, got array" } },
  { "object: rejects a string", { type = "object" }, "s", err = { 'x: must be an object, got string "s"' } },
}

for _, c in ipairs(CASES) do
  test(c[1], function()
    local schema = compile_ok({ x = c[2] })
    if c.err then
      expect_eq(invalid(schema, { x = c[3] }), c.err, "errors")
    else
      expect_eq(valid(schema, { x = c[3] }), { x = c.ok }, "output")
    end
  end)
end

-- ===================================================================== nested objects

local NESTED = {
  filters = { type = "object", fields = {
    min_score = { type = "number", min = 0, required = true },
    sort = { type = "string", enum = { "top", "new" }, default = "top" },
    tags = { type = "array", items = { type = "object", fields = { name = { type = "string", required = true } } } },
  } },
}

test("object fields: nested defaults applied", function()
  local s = compile_ok(NESTED)
  expect_eq(valid(s, { filters = { min_score = 1 } }), { filters = { min_score = 1, sort = "top" } }, "output")
end)

test("object fields: absent object gets no nested defaults", function()
  local s = compile_ok(NESTED)
  expect_eq(valid(s, {}), {}, "output")
end)

test("object fields: nested required, unknown and range errors with paths", function()
  local s = compile_ok(NESTED)
  expect_eq(invalid(s, { filters = { srot = "new" } }), {
    "filters.min_score: is required",
    "unknown parameter 'filters.srot' — did you mean 'filters.sort'?",
  }, "errors")
  expect_eq(invalid(s, { filters = { min_score = -1, sort = "old" } }), {
    "filters.min_score: must be at least 0, got -1",
    'filters.sort: must be one of top, new; got "old"',
  }, "errors")
end)

test("object fields: objects inside arrays", function()
  local s = compile_ok(NESTED)
  expect_eq(invalid(s, { filters = { min_score = 0, tags = { { name = "a" }, { nme = "b" } } } }), {
    "filters.tags[2].name: is required",
    "unknown parameter 'filters.tags[2].nme' — did you mean 'filters.tags[2].name'?",
  }, "errors")
  local v = valid(s, { filters = { min_score = 0, tags = { { name = "a" } } } })
  expect_eq(v.filters.tags, { { name = "a" } }, "tags")
end)

test("object fields: `fields = {}` accepts only the empty object", function()
  local s = compile_ok({ o = { type = "object", fields = {} } })
  expect_eq(valid(s, { o = {} }), { o = {} }, "output")
  expect_eq(invalid(s, { o = { a = 1 } }), { "unknown parameter 'o.a'" }, "errors")
end)

-- ===================================================================== nulls

test("nullable: null accepted and left out of the output", function()
  local s = compile_ok({ p = { type = "uuid", nullable = true }, q = { type = "string" } })
  local v = valid(s, { p = NULL, q = "x" })
  expect_eq(v, { q = "x" }, "output")
end)

test("nullable: null for a required nullable field is fine", function()
  local s = compile_ok({ p = { type = "string", nullable = true, required = true } })
  expect_eq(valid(s, { p = NULL }), {}, "output")
  expect_eq(invalid(s, {}), { "p: is required" }, "errors")
end)

test("nullable: an explicit null does not take the default", function()
  local s = compile_ok({ p = { type = "string", nullable = true, default = "d" } })
  expect_eq(valid(s, { p = NULL }), {}, "null")
  expect_eq(valid(s, {}), { p = "d" }, "absent")
end)

test("not nullable: null is an error", function()
  local s = compile_ok({ p = { type = "string" }, q = { type = "array", items = "string" } })
  expect_eq(invalid(s, { p = NULL, q = { "a", NULL } }), {
    "p: must not be null", "q[2]: must not be null",
  }, "errors")
end)

test("nullable items keep the null sentinel in place", function()
  local s = compile_ok({ q = { type = "array", items = { type = "string", nullable = true } } })
  local v = valid(s, { q = { "a", NULL, "c" } })
  expect(v.q[2] == NULL, "item 2 is %s, not the null sentinel", dump(v.q[2]))
  expect_eq(#v.q, 3, "length")
end)

test("without opts.null the sentinel is an ordinary value", function()
  local s = compile_ok({ p = { type = "string", nullable = true } })
  expect_eq(invalid(s, { p = NULL }, {}), { "p: must be a string, got object" }, "errors")
end)

-- ===================================================================== the input as a whole

test("input must be an object", function()
  local s = compile_ok({ a = { type = "string" } })
  for _, bad in ipairs({ "str", 5, true, { 1, 2 }, NULL }) do
    expect_eq(invalid(s, bad), { "parameters must be a JSON object" }, "errors for " .. dump(bad))
  end
end)

test("nil input counts as an empty object", function()
  local s = compile_ok({ a = { type = "string", default = "d" } })
  expect_eq(valid(s, nil), { a = "d" }, "defaults")
  local r = compile_ok({ a = { type = "string", required = true } })
  expect_eq(invalid(r, nil), { "a: is required" }, "required")
end)

test("an empty table is an empty object", function()
  local s = compile_ok({ a = { type = "integer", default = 1 } })
  expect_eq(valid(s, {}), { a = 1 }, "output")
end)

test("a non-string key is an unknown parameter", function()
  local s = compile_ok({ a = { type = "string" } })
  expect_eq(invalid(s, { a = "x", [7] = true }), { "unknown parameter '7'" }, "errors")
end)

test("validate refuses a schema that was not compiled", function()
  local ok, err = pcall(params.validate, { a = { type = "string" } }, {})
  expect(not ok, "validate accepted a raw spec")
  expect(tostring(err):find("must come from params.compile", 1, true), "message was %s", tostring(err))
end)

test("a cyclic input table raises instead of looping", function()
  local s = compile_ok({ o = { type = "object" } })
  local t = {}
  t.self = t
  expect(not pcall(params.validate, s, { o = t }), "cycle accepted")
end)

-- ===================================================================== defaults and copies

test("defaults are applied and the input is not modified", function()
  local s = compile_ok({
    a = { type = "string", default = "d" },
    b = { type = "integer", default = 5 },
    l = { type = "array", items = "integer" },
    o = { type = "object" },
  })
  local input = { b = 7.0, l = { 1.0, 2.0 }, o = { k = { 1 } } }
  local v = valid(s, input)
  expect_eq(v, { a = "d", b = 7, l = { 1, 2 }, o = { k = { 1 } } }, "output")
  expect_eq(input, { b = 7.0, l = { 1.0, 2.0 }, o = { k = { 1 } } }, "input after validate")
  expect(v ~= input and v.l ~= input.l and v.o ~= input.o and v.o.k ~= input.o.k, "output shares tables with input")
end)

test("a table default is copied for every run", function()
  local s = compile_ok({ tags = { type = "array", items = "string", default = { "a" } } })
  local v1 = valid(s, {})
  v1.tags[1] = "changed"
  expect_eq(valid(s, {}).tags, { "a" }, "second run")
  local d = params.defaults(s)
  d.tags[1] = "changed too"
  expect_eq(params.defaults(s).tags, { "a" }, "defaults()")
end)

test("required together with a default: the default wins", function()
  local s = compile_ok({ x = { type = "string", required = true, default = "d" } })
  expect_eq(valid(s, {}), { x = "d" }, "output")
  expect_eq(params.describe(s).x.required, false, "described required")
end)

test("a default is stored converted (integral float becomes integer)", function()
  local s = compile_ok({ n = { type = "integer", default = 3.0 } })
  expect_eq(params.defaults(s), { n = 3 }, "defaults")
end)

-- ===================================================================== order and suggestions

test("errors are sorted by field path, indexes numerically", function()
  local s = compile_ok({
    b = { type = "string" }, a = { type = "integer" }, c = { type = "array", items = "string" },
  })
  local list = {}
  for i = 1, 12 do list[i] = (i == 2 or i == 10) and i or "s" end
  expect_eq(invalid(s, { c = list, b = 1, a = "x", aa = 1 }), {
    'a: must be an integer, got string "x"',
    "unknown parameter 'aa' — did you mean 'a'?",
    "b: must be a string, got number 1",
    "c[2]: must be a string, got number 2",
    "c[10]: must be a string, got number 10",
  }, "errors")
end)

test("several rules broken by one value keep rule order", function()
  local s = compile_ok({ x = { type = "string", min_length = 5, pattern = "%d+", enum = { "12345" } } })
  expect_eq(invalid(s, { x = "ab" }), {
    "x: must be at least 5 characters long, got 2",
    'x: must match pattern %d+, got "ab"',
    'x: must be one of 12345; got "ab"',
  }, "errors")
end)

test("the same input gives the same errors every time", function()
  local spec = { a = { type = "integer" }, b = { type = "string" }, c = { type = "boolean" } }
  local input = { a = "1", b = 2, c = 3, d = 4, e = 5 }
  local first = invalid(compile_ok(spec), input)
  for _ = 1, 5 do expect_eq(invalid(compile_ok(spec), input), first, "repeat") end
  expect_eq(#first, 5, "count")
end)

test("suggest: near names only", function()
  local names = { "max_posts", "min_upvotes", "timeframe" }
  expect_eq(params.suggest("max_post", names), "max_posts", "one deletion")
  expect_eq(params.suggest("mxa_posts", names), "max_posts", "one swap")
  expect_eq(params.suggest("timefram", names), "timeframe", "one insertion")
  expect_eq(params.suggest("zzz", names), nil, "far away")
  expect_eq(params.suggest("abcdef", { "abcxyz" }), nil, "3 edits on 6 characters")
  expect_eq(params.suggest("abcdefghi", { "abcdefxyz" }), "abcdefxyz", "3 edits on 9 characters")
  expect_eq(params.suggest("cat", { "hat", "bat" }), "bat", "ties go to the smaller name")
  expect_eq(params.suggest(5, names), nil, "not a string")
end)

test("unknown parameters with and without a suggestion", function()
  local s = compile_ok({ max_posts = { type = "integer" }, relevance_threshold = { type = "number" } })
  expect_eq(invalid(s, { max_post = 1, relevence_threshold = 0.5, zzz = 1 }), {
    "unknown parameter 'max_post' — did you mean 'max_posts'?",
    "unknown parameter 'relevence_threshold' — did you mean 'relevance_threshold'?",
    "unknown parameter 'zzz'",
  }, "errors")
end)

test("format_errors joins with '; '", function()
  expect_eq(params.format_errors({ "a: x", "b: y" }), "a: x; b: y", "two")
  expect_eq(params.format_errors({}), "", "none")
end)

-- ===================================================================== schema errors

local function first_error(spec)
  return compile_errors(spec)[1]
end

-- { name, params table, expected errors }
local SCHEMA_CASES = {
  { "params not a table", "x", { 'params must be a table, got "x"' } },
  { "spec not a table", { x = "string" }, { "field 'x': spec must be a table, got \"string\"" } },
  { "missing type", { x = { required = true } }, { "field 'x': missing type" } },
  { "type not a string", { x = { type = 1 } }, { "field 'x': type must be a string, got 1" } },
  { "unknown type with a suggestion", { x = { type = "strin" } },
    { "field 'x': unknown type 'strin' — did you mean 'string'?" } },
  { "unknown type without one", { x = { type = "datetime" } },
    { "field 'x': unknown type 'datetime' (types: array, boolean, enum, integer, number, object, string, url, uuid)" } },
  { "unknown key with a suggestion", { x = { type = "integer", mni = 1 } },
    { "field 'x': unknown key 'mni' — did you mean 'min'?" } },
  { "unknown key without one", { x = { type = "string", colour = "red" } }, { "field 'x': unknown key 'colour'" } },
  { "key for another type", { x = { type = "integer", min_length = 1 } },
    { "field 'x': 'min_length' does not apply to type integer" } },
  { "min greater than max", { x = { type = "number", min = 5, max = 1 } },
    { "field 'x': min (5) is greater than max (1)" } },
  { "empty exclusive range", { x = { type = "number", min = 1, max = 1, exclusive_max = true } },
    { "field 'x': min and max are both 1 and a bound is exclusive: no value fits" } },
  { "exclusive_min without min", { x = { type = "number", exclusive_min = true } },
    { "field 'x': 'exclusive_min' needs 'min'" } },
  { "exclusive_max not a boolean", { x = { type = "number", max = 1, exclusive_max = "yes" } },
    { "field 'x': 'exclusive_max' must be true or false, got \"yes\"" } },
  { "min not a number", { x = { type = "integer", min = "1" } }, { "field 'x': 'min' must be a number, got \"1\"" } },
  { "min_length greater than max_length", { x = { type = "string", min_length = 4, max_length = 2 } },
    { "field 'x': min_length (4) is greater than max_length (2)" } },
  { "negative min_length", { x = { type = "string", min_length = -1 } },
    { "field 'x': 'min_length' must be a non-negative integer, got -1" } },
  { "fractional max_items", { x = { type = "array", max_items = 1.5 } },
    { "field 'x': 'max_items' must be a non-negative integer, got 1.5" } },
  { "min_items greater than max_items", { x = { type = "array", min_items = 3, max_items = 1 } },
    { "field 'x': min_items (3) is greater than max_items (1)" } },
  { "required not a boolean", { x = { type = "string", required = "yes" } },
    { "field 'x': 'required' must be true or false, got \"yes\"" } },
  { "nullable not a boolean", { x = { type = "string", nullable = 1 } },
    { "field 'x': 'nullable' must be true or false, got 1" } },
  { "description not a string", { x = { type = "string", description = 5 } },
    { "field 'x': 'description' must be a string, got 5" } },
  { "default out of range", { x = { type = "integer", max = 10, default = 50 } },
    { "field 'x': default: must be at most 10, got 50" } },
  { "default of the wrong type", { x = { type = "boolean", default = "no" } },
    { "field 'x': default: must be a boolean, got string \"no\"" } },
  { "default with a bad item", { x = { type = "array", items = "string", default = { "a", 1 } } },
    { "field 'x': default[2]: must be a string, got number 1" } },
  { "default missing a nested required field", { x = { type = "object", fields = { a = { type = "string", required = true } }, default = {} } },
    { "field 'x': default.a: is required" } },
  { "default not in enum", { x = { type = "string", enum = { "a" }, default = "b" } },
    { "field 'x': default: must be one of a; got \"b\"" } },
  { "pattern not a string", { x = { type = "string", pattern = 5 } }, { "field 'x': 'pattern' must be a string, got 5" } },
  { "pattern: unclosed set", { x = { type = "string", pattern = "x[a" } },
    { "field 'x': bad pattern 'x[a': malformed pattern (missing ']')" } },
  { "pattern: trailing escape", { x = { type = "string", pattern = "ab%" } },
    { "field 'x': bad pattern 'ab%': malformed pattern (ends with '%')" } },
  { "pattern: unfinished capture", { x = { type = "string", pattern = "(a" } },
    { "field 'x': bad pattern '(a': unfinished capture" } },
  { "pattern: unfinished capture before $", { x = { type = "string", pattern = "(a$" } },
    { "field 'x': bad pattern '(a$': unfinished capture" } },
  { "pattern: unopened capture", { x = { type = "string", pattern = "a)" } },
    { "field 'x': bad pattern 'a)': invalid pattern capture" } },
  { "pattern: back-reference to nothing", { x = { type = "string", pattern = "a%1" } },
    { "field 'x': bad pattern 'a%1': invalid capture index %1" } },
  { "pattern: back-reference to an open capture", { x = { type = "string", pattern = "(a%1)" } },
    { "field 'x': bad pattern '(a%1)': invalid capture index %1" } },
  { "pattern: %b without arguments", { x = { type = "string", pattern = "x%b(" } },
    { "field 'x': bad pattern 'x%b(': missing arguments to '%b'" } },
  { "pattern: %f without a set", { x = { type = "string", pattern = "%fa" } },
    { "field 'x': bad pattern '%fa': missing '[' after '%f' in pattern" } },
  { "enum: empty list", { x = { type = "string", enum = {} } }, { "field 'x': 'enum' must be a non-empty list, got object" } },
  { "enum: not a list", { x = { type = "string", enum = "a" } }, { "field 'x': 'enum' must be a non-empty list, got \"a\"" } },
  { "enum: member of the wrong type", { x = { type = "string", enum = { "a", 2 } } },
    { "field 'x': enum[2]: must be a string, got number 2" } },
  { "enum: fractional member of an integer enum", { x = { type = "integer", enum = { 1, 1.5 } } },
    { "field 'x': enum[2]: must be an integer, got number 1.5" } },
  { "enum type without values", { x = { type = "enum" } }, { "field 'x': type enum needs a 'values' list" } },
  { "enum type with values and enum", { x = { type = "enum", values = { "a" }, enum = { "a" } } },
    { "field 'x': give 'values' or 'enum', not both" } },
  { "enum type with a table member", { x = { type = "enum", values = { "a", {} } } },
    { "field 'x': values[2]: must be a string, number or boolean, got object" } },
  { "items: unknown type name", { x = { type = "array", items = "strng" } },
    { "field 'x[]': unknown type 'strng' — did you mean 'string'?" } },
  { "items: required makes no sense", { x = { type = "array", items = { type = "string", required = true } } },
    { "field 'x[]': 'required' does not apply to array items" } },
  { "items: neither a name nor a table", { x = { type = "array", items = 5 } },
    { "field 'x': 'items' must be a type name or a spec table, got 5" } },
  { "fields: not a table", { x = { type = "object", fields = "a" } }, { "field 'x': 'fields' must be a table, got \"a\"" } },
  { "fields: nested errors carry the path", { f = { type = "object", fields = { n = { type = "integr" } } } },
    { "field 'f.n': unknown type 'integr' — did you mean 'integer'?" } },
  { "bad field name", { ["bad name"] = { type = "string" } },
    { "field 'bad name': a name is letters, digits and '_', not starting with a digit" } },
  { "numeric field name", { { type = "string" } },
    { "field '1': a name is letters, digits and '_', not starting with a digit" } },
  { "several problems, sorted by field", {
      b = { type = "integer", min = 3, max = 1 }, a = { type = "strng" }, c = { type = "string", max_length = -2, foo = 1 } }, {
      "field 'a': unknown type 'strng' — did you mean 'string'?",
      "field 'b': min (3) is greater than max (1)",
      "field 'c': unknown key 'foo'",
      "field 'c': 'max_length' must be a non-negative integer, got -2",
    } },
}

for _, c in ipairs(SCHEMA_CASES) do
  test("schema: " .. c[1], function()
    expect_eq(compile_errors(c[2]), c[3], "errors")
  end)
end

test("schema: valid patterns compile", function()
  for _, p in ipairs({ "(%a+)-%1", "%b()", "%f[%w]%w+", "[]]", "[^%]]+", "()a", "^$", "[%a_][%w_]*" }) do
    local schema, errs = params.compile({ x = { type = "string", pattern = p } })
    expect(schema, "pattern %s rejected: %s", p, errs and params.format_errors(errs) or "")
  end
  local s = compile_ok({ x = { type = "string", pattern = "(%a+)-%1" } })
  expect_eq(valid(s, { x = "ab-ab" }), { x = "ab-ab" }, "back-reference match")
  expect_eq(invalid(s, { x = "ab-cd" }), { 'x: must match pattern (%a+)-%1, got "ab-cd"' }, "back-reference mismatch")
end)

test("schema: an empty params table is fine", function()
  local s = compile_ok({})
  expect_eq(valid(s, {}), {}, "output")
  expect_eq(invalid(s, { a = 1 }), { "unknown parameter 'a'" }, "errors")
  expect(first_error({ x = 1 }) == "field 'x': spec must be a table, got 1", "non-table spec")
end)

-- ===================================================================== seed job types

local REDDIT_SCRAPE = {
  search_queries = { type = "array", items = "string", required = true, min_items = 1,
                     description = "Search terms for Reddit" },
  subreddits = { type = "array", items = "string", nullable = true,
                 description = "Subreddits to restrict search to" },
  timeframe = { type = "string", enum = { "hour", "day", "week", "month", "year", "all" }, default = "month" },
  max_posts = { type = "integer", min = 1, max = 10000, default = 500 },
  min_upvotes = { type = "integer", min = 0, default = 20 },
  min_comments = { type = "integer", min = 0, default = 5 },
  relevance_threshold = { type = "number", min = 0, max = 1, default = 0.6 },
  signal_threshold = { type = "number", min = 0, max = 1, default = 0.5 },
  top_percentile = { type = "number", min = 0, exclusive_min = true, max = 1, default = 0.20 },
  persona_id = { type = "uuid", nullable = true },
  auto_sync_to_persona = { type = "boolean", default = false },
  persona_context = { type = "string", nullable = true },
  topic_context = { type = "string", nullable = true },
}

local AMAZON_REVIEW_SCRAPE = {
  competitor_amazon_url_id = { type = "uuid", required = true },
  asin = { type = "string", default = "Unknown" },
  include_keywords = { type = "boolean", default = true },
  include_helpful = { type = "boolean", default = true },
}

local REDDIT_DEFAULTS = {
  timeframe = "month", max_posts = 500, min_upvotes = 20, min_comments = 5,
  relevance_threshold = 0.6, signal_threshold = 0.5, top_percentile = 0.20,
  auto_sync_to_persona = false,
}

local PERSONA = "0b7c4f3e-9a1d-4e2b-8c5f-6d7e8f9a0b1c"

test("reddit_scrape: defaults", function()
  expect_eq(params.defaults(compile_ok(REDDIT_SCRAPE)), REDDIT_DEFAULTS, "defaults")
end)

test("reddit_scrape: minimal input gets every default", function()
  local v = valid(compile_ok(REDDIT_SCRAPE), { search_queries = { "dry skin" } })
  local want = { search_queries = { "dry skin" } }
  for k, d in pairs(REDDIT_DEFAULTS) do want[k] = d end
  expect_eq(v, want, "output")
end)

test("reddit_scrape: a full JSON-decoded input", function()
  local v = valid(compile_ok(REDDIT_SCRAPE), {
    search_queries = { "a", "b" }, subreddits = {}, timeframe = "week", max_posts = 250.0,
    min_upvotes = 0.0, min_comments = 1, relevance_threshold = 1, signal_threshold = 0.0,
    top_percentile = 1, persona_id = PERSONA, auto_sync_to_persona = true,
    persona_context = NULL, topic_context = "skincare",
  })
  expect_eq(v, {
    search_queries = { "a", "b" }, subreddits = {}, timeframe = "week", max_posts = 250,
    min_upvotes = 0, min_comments = 1, relevance_threshold = 1, signal_threshold = 0.0,
    top_percentile = 1, persona_id = PERSONA, auto_sync_to_persona = true, topic_context = "skincare",
  }, "output")
end)

test("reddit_scrape: the old default_params alone are not enough", function()
  expect_eq(invalid(compile_ok(REDDIT_SCRAPE), { max_posts = 500 }), { "search_queries: is required" }, "errors")
end)

test("reddit_scrape: every problem at once, in order", function()
  local errs = invalid(compile_ok(REDDIT_SCRAPE), {
    search_queries = {}, timeframe = "weekly", max_posts = "ten", relevance_threshold = 1.5,
    top_percentile = 0, persona_id = "abc", max_post = 10, zzz = 1, subreddits = { "ok", 5 },
    persona_context = NULL, signal_threshold = -0.5,
  })
  expect_eq(errs, {
    "unknown parameter 'max_post' — did you mean 'max_posts'?",
    'max_posts: must be an integer, got string "ten"',
    'persona_id: must be a uuid, got "abc"',
    "relevance_threshold: must be at most 1, got 1.5",
    "search_queries: must have at least 1 item, got 0",
    "signal_threshold: must be at least 0, got -0.5",
    "subreddits[2]: must be a string, got number 5",
    'timeframe: must be one of hour, day, week, month, year, all; got "weekly"',
    "top_percentile: must be greater than 0, got 0",
    "unknown parameter 'zzz'",
  }, "errors")
end)

test("reddit_scrape: persona_id null or absent", function()
  local s = compile_ok(REDDIT_SCRAPE)
  expect(valid(s, { search_queries = { "q" }, persona_id = NULL }).persona_id == nil, "null kept")
  expect_eq(valid(s, { search_queries = { "q" }, persona_id = PERSONA }).persona_id, PERSONA, "uuid")
end)

test("reddit_scrape: describe", function()
  local d = params.describe(compile_ok(REDDIT_SCRAPE))
  expect_eq(d.search_queries, {
    type = "array", required = true, nullable = false, min_items = 1,
    description = "Search terms for Reddit",
    items = { type = "string", required = false, nullable = false },
  }, "search_queries")
  expect_eq(d.top_percentile, {
    type = "number", required = false, nullable = false, min = 0, max = 1,
    exclusive_min = true, default = 0.20,
  }, "top_percentile")
  expect_eq(d.timeframe.enum, { "hour", "day", "week", "month", "year", "all" }, "timeframe enum")
  expect_eq(d.persona_id, { type = "uuid", required = false, nullable = true }, "persona_id")
  local n = 0
  for _ in pairs(d) do n = n + 1 end
  expect_eq(n, 13, "described fields")
end)

test("amazon_review_scrape: defaults applied", function()
  local v = valid(compile_ok(AMAZON_REVIEW_SCRAPE), { competitor_amazon_url_id = PERSONA })
  expect_eq(v, {
    competitor_amazon_url_id = PERSONA, asin = "Unknown", include_keywords = true, include_helpful = true,
  }, "output")
end)

test("amazon_review_scrape: false overrides a true default", function()
  local v = valid(compile_ok(AMAZON_REVIEW_SCRAPE),
    { competitor_amazon_url_id = PERSONA, include_helpful = false, asin = "B00X" })
  expect_eq(v.include_helpful, false, "include_helpful")
  expect_eq(v.asin, "B00X", "asin")
end)

test("amazon_review_scrape: errors", function()
  local s = compile_ok(AMAZON_REVIEW_SCRAPE)
  expect_eq(invalid(s, {}), { "competitor_amazon_url_id: is required" }, "empty")
  expect_eq(invalid(s, { competitor_amazon_url_id = "nope", include_keywords = "yes", asin = 42 }), {
    "asin: must be a string, got number 42",
    'competitor_amazon_url_id: must be a uuid, got "nope"',
    'include_keywords: must be a boolean, got string "yes"',
  }, "errors")
end)

-- ===================================================================== describe

-- True when v is plain JSON data: strings, finite numbers, booleans, tables
-- with string keys or 1..n keys.
local function json_like(v)
  local t = type(v)
  if t == "string" or t == "boolean" then return true end
  if t == "number" then return v == v and v ~= math.huge and v ~= -math.huge end
  if t ~= "table" or getmetatable(v) ~= nil then return false end
  local strings, ints = 0, 0
  for k, x in pairs(v) do
    if type(k) == "string" then strings = strings + 1
    elseif math.type(k) == "integer" then ints = ints + 1
    else return false end
    if not json_like(x) then return false end
  end
  return strings == 0 or ints == 0
end

test("describe: plain data, normalised", function()
  local s = compile_ok({
    e = { type = "enum", values = { "a", "b" }, default = "a" },
    o = { type = "object", fields = { n = { type = "integer", min = 1 } } },
    l = { type = "array", items = { type = "string", pattern = "%a+", max_length = 3 } },
    p = { type = "string", description = "the p" },
  })
  local d = params.describe(s)
  expect(json_like(d), "not plain data: %s", dump(d))
  expect_eq(d.e, { type = "enum", required = false, nullable = false, enum = { "a", "b" }, default = "a" }, "enum")
  expect_eq(d.o.fields.n, { type = "integer", required = false, nullable = false, min = 1 }, "nested")
  expect_eq(d.l.items, { type = "string", required = false, nullable = false, pattern = "%a+", max_length = 3 }, "items")
  expect_eq(d.p.description, "the p", "description")
  d.e.enum[1] = "zzz"
  expect_eq(params.describe(s).e.enum[1], "a", "describe returns copies")
end)

-- ===================================================================== summary

T.done()
