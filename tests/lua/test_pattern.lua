-- tests/lua/test_pattern.lua — the pattern functions scripts and handlers see
-- are sluice's step-bounded ones (src/lua_pattern.c), through the `string`
-- table and through string methods alike. That they behave as the standard
-- library's is tests/unit/test_pattern.c's job; the daemon side (a run fails,
-- the others go on) is test_daemon.py's.

local T = require("testlib")
local test, eq, raises = T.test, T.eq, T.raises

local long = ("x"):rep(1500)
local limit = "pattern too complex for this input (more than"

test("a backtracking pattern raises instead of holding the process", function()
  raises(function() return string.find(long, "x*x*y") end, "string.find: " .. limit)
  raises(function() return long:find("x*x*y") end, "string.find: " .. limit)
  raises(function() return long:match("x-x-y") end, "string.match: " .. limit)
  raises(function() return long:gsub("(x*)x*y", "") end, "string.gsub: " .. limit)
  raises(function() for _ in long:gmatch("x*x*y") do end end, "string.gmatch: " .. limit)
  raises(function() return long:find("x*x*y") end,
    "matching steps); simplify the pattern or the input")
end)

test("the error names the calling line, as pattern errors do", function()
  local ok, err = pcall(function()
    return long:find("x*x*y") -- line 25
  end)
  eq(ok, false)
  eq(err:match("^[^:]*test_pattern%.lua:(%d+): string%.find: "), "25")
  local ok2, err2 = pcall(function()
    return ("a"):find("%") -- line 30
  end)
  eq(ok2, false)
  eq(err2:match("test_pattern%.lua:%d+: (.*)$"), "malformed pattern (ends with '%')")
end)

test("the string table and the string methods are the same functions", function()
  for _, name in ipairs({ "find", "match", "gmatch", "gsub" }) do
    eq(("")[name], string[name], name)
  end
end)

test("ordinary matching is unchanged", function()
  eq(select(2, ("key = value"):gsub("%s", "")), 2)
  eq(("key = value"):match("^(%w+)%s*=%s*(%w+)$"), "key")
  eq(select(2, ("key = value"):find("=", 1, true)), 5)
  local words = {}
  for w in ("one two three"):gmatch("%a+", 5) do words[#words + 1] = w end
  eq(table.concat(words, ","), "two,three")
  eq((long:gsub("x", "y")), ("y"):rep(1500))
  eq(long:find("x*y"), nil)
end)

test("argument errors name the function as the standard library's do", function()
  raises(function() return string.find(nil, "x") end, "bad argument #1 to 'find' (string expected, got nil)")
  raises(function() return ("x"):gsub("x") end, "bad argument #2 to 'gsub' (string/function/table expected, got no value)")
end)

T.done()
