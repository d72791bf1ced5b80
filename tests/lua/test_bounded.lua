-- tests/lua/test_bounded.lua — what scripts and handlers see of the calls
-- that could hold the process without the instruction budget noticing:
-- string.rep, table.move, table.insert and table.remove are sluice's bounded
-- ones (src/lua_bounded.c; that they otherwise behave as the standard
-- library's is tests/unit/test_bounded.c's job), and setmetatable refuses a
-- __gc finalizer. The daemon side (the run fails, the others go on) is
-- test_daemon.py's.

local T = require("testlib")
local test, eq, raises = T.test, T.eq, T.raises

test("empty copies cost nothing however many are asked for", function()
  eq(("").rep("", 1e15), "")
  eq((""):rep(math.maxinteger), "")
  eq(string.rep("", 1e15, ""), "")
  eq(("ab"):rep(3, "-"), "ab-ab-ab")
end)

test("a move of more than one call may do raises, naming the calling line", function()
  local ok, err = pcall(function()
    table.move({}, 1, 1e15, 1, {}) -- line 21
  end)
  eq(ok, false)
  eq(err:match("test_bounded%.lua:(%d+): table%.move: "), "21")
  raises(function() table.move({}, 1, 1e15, 1, {}) end,
    "1000000000000000 elements is more than one call may move (at most 4194304); " ..
    "move them in a loop")
  local t = table.move({ 1, 2, 3 }, 1, 3, 2)
  eq(table.concat(t, ","), "1,1,2,3")
end)

test("a length from __len cannot make insert or remove shift forever", function()
  local huge = setmetatable({}, { __len = function() return 1e15 end })
  raises(function() table.remove(huge, 1) end, "table.remove: shifting 999999999999999 elements")
  raises(function() table.insert(huge, 1, "x") end, "table.insert: shifting")
  local t = { "a", "b" }
  table.insert(t, 1, "z")
  eq(table.remove(t), "b")
  eq(table.concat(t, ","), "z,a")
end)

test("string methods are the bounded rep too", function()
  eq(("").rep, string.rep)
  raises(function() return ("ab"):rep(math.maxinteger) end, "resulting string too large")
end)

test("setmetatable refuses a finalizer, and does everything else as before", function()
  raises(function() setmetatable({}, { __gc = function() end }) end,
    "setmetatable: __gc is not available to handlers")
  raises(function() setmetatable({}, { __gc = false }) end, "setmetatable: __gc is not available to handlers")
  local mt = { __index = { x = 1 } }
  local t = {}
  eq(setmetatable(t, mt), t)
  eq(t.x, 1)
  eq(getmetatable(t), mt)
  eq(setmetatable(t, nil), t)
  eq(getmetatable(t), nil)
  raises(function() setmetatable(1, {}) end, "bad argument #1 to 'setmetatable' (table expected")
  raises(function() setmetatable({}, 1) end, "nil or table expected")
  local locked = setmetatable({}, { __metatable = "locked" })
  raises(function() setmetatable(locked, {}) end, "cannot change a protected metatable")
  -- said at the caller's line, not inside the sandbox's own code
  local ok, err = pcall(function() setmetatable(locked, {}) end)
  eq(ok, false)
  eq(err:match("^[^:]*test_bounded%.lua:%d+: cannot change a protected metatable$") ~= nil, true)
end)

test("a to-be-closed value still closes", function()
  local closed = false
  do
    local _ <close> = setmetatable({}, { __close = function() closed = true end })
  end
  eq(closed, true)
end)

T.done()
