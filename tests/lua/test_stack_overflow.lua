-- test_stack_overflow.lua — a stack overflow caught with pcall or xpcall is said
-- as what it is, "stack overflow: calls nested too deeply (N levels: …)", at
-- the handler's line, not as Lua's bare "C stack overflow"; and pcall and
-- xpcall otherwise behave as the base library's.

local t = require("testlib")
local test, eq = t.test, t.eq

-- "chunk:line: " of the line that calls here()
local function here()
  local _, where = pcall(error, "", 3)
  return where
end

local OVERFLOW = "stack overflow: calls nested too deeply %((%d+) levels: a function that calls " ..
                 "itself without end%?%)$"

-- err must be the plain overflow message, at where; returns its level count.
local function overflow_at(where, ok, err)
  eq(ok, false, "raised")
  eq(type(err), "string", "message type")
  eq(err:sub(1, #where), where, "position of " .. err)
  local levels = err:sub(#where + 1):match("^" .. OVERFLOW)
  if not levels then error(("not the plain overflow message: %q"):format(err), 2) end
  return tonumber(levels)
end

-- Each recursive function below is defined on the line of its here() call: the
-- line its overflow is said at.

test("a recursion through a library function (C stack)", function()
  local where = here(); local function f(s) return (s:gsub(".", f)) end
  -- Lua said a bare "C stack overflow", with no position
  local levels = overflow_at(where, pcall(f, "x"))
  eq(levels > 100, true, "levels " .. levels)
end)

test("a recursion through pcall", function()
  local where = here(); local function f() local _, e = pcall(f); error(e, 0) end
  overflow_at(where, pcall(f))
end)

test("a recursion through a metamethod", function()
  local where = here(); local tbl = setmetatable({}, { __index = function(s, k) return s[k] end })
  overflow_at(where, pcall(function() return tbl.x end))
end)

test("a Lua recursion (the Lua stack)", function()
  local where = here(); local function f(n) return 1 + f(n + 1) end
  local levels = overflow_at(where, pcall(f, 1))
  eq(levels > 10000, true, "levels " .. levels)
end)

test("a comparator calling table.sort: said at the handler's line, not the sandbox's", function()
  local where = here(); local function cmp(a, b) table.sort({ 3, 2, 1 }, cmp); return a < b end
  overflow_at(where, pcall(cmp, 1, 2))
end)

test("xpcall's handler is given the plain message", function()
  local where = here(); local function f(s) return (s:gsub(".", f)) end
  local ok, err = xpcall(f, function(m) return { m } end, "x")
  eq(ok, false)
  overflow_at(where, false, err[1])
end)

test("a message handler that raises: a stack overflow while handling an error", function()
  local ok, err = xpcall(error, function() error("again") end, "boom")
  eq(ok, false)
  eq(err, "stack overflow while handling an error (error in error handling: a message " ..
          "handler that raises, or calls nested too deeply)")
end)

test("pcall and xpcall otherwise as the base library's", function()
  eq(select("#", pcall(function() end)), 1)
  local ok, a, b = pcall(function(x, y) return x + y, "two" end, 1, 2)
  eq(ok, true); eq(a, 3); eq(b, "two")
  local e = {}
  ok, a = pcall(error, e)
  eq(ok, false); eq(a, e)
  ok, a = pcall(error)
  eq(ok, false); eq(a, nil)
  ok, a = pcall(error, "plain", 0)
  eq(a, "plain")
  local where = here(); ok, a = pcall(function() error("at a line") end)
  eq(a, where .. "at a line")
  ok, a, b = xpcall(function(...) sluice.sleep(0.001); return ... end, print, 1, 2)
  eq(ok, true); eq(a, 1); eq(b, 2)
  ok, a = pcall(function() sluice.sleep(0.001); error("after a wait", 0) end)
  eq(ok, false); eq(a, "after a wait")
  ok, a = xpcall(error, function(m) return "handled: " .. m end, "boom", 0)
  eq(a, "handled: boom")
  ok, a = pcall(pcall)
  eq(a, "bad argument #1 to 'pcall' (value expected)")
  ok, a = pcall(xpcall, print)
  eq(a, "bad argument #2 to 'xpcall' (function expected, got no value)")
end)

t.done()
