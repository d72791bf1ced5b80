-- pattern_diff.lua — run by test_pattern.c in a plain Lua state as
-- chunk(real, mine, seed, rounds): calls the standard library's find, match,
-- gmatch and gsub (`real`) and sluice's (`mine`, src/lua_pattern.c) with the
-- same hand-picked and random arguments and requires the same results: every
-- value, every capture, what a replacement function was called with, and the
-- text of every error. Returns the number of cases compared; raises with the
-- first difference (and the seed, so that it reproduces).

local real, mine, seed, rounds = ...

local fmt = string.format
local pack, unpack = table.pack, table.unpack
local rfind = real.find -- the harness's own matching uses the standard library

---------------------------------------------------------------- comparing

local function show(v)
  if type(v) == "string" then return fmt("%q", v) end
  return tostring(v)
end

local function show_list(t)
  local parts = {}
  for i = 1, t.n do parts[i] = show(t[i]) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- Values are compared by type and value (math.type tells 1 from 1.0).
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then return math.type(a) == math.type(b) and a == b end
  return a == b
end

local function same_list(a, b)
  if a.n ~= b.n then return false end
  for i = 1, a.n do
    if not same(a[i], b[i]) then return false end
  end
  return true
end

-- The call goes through a local named `fn` in a non-tail call, so that an
-- argument error names the function the same way for both ("to 'fn'"; called
-- by pcall itself, each would be named by where it lives in package.loaded).
local function call(fn, ...)
  local r = pack(pcall(function(...)
    local v = pack(fn(...))
    return unpack(v, 1, v.n)
  end, ...))
  return r
end

local cases = 0

local function describe(what, args)
  local parts = {}
  for i = 1, args.n do
    local v = args[i]
    parts[i] = type(v) == "function" and "<function>" or type(v) == "table" and "<table>" or show(v)
  end
  return fmt("%s(%s) [seed %d]", what, table.concat(parts, ", "), seed)
end

local function differ(what, args, a, b)
  error(fmt("%s: lstrlib gives %s, sluice gives %s", describe(what, args), a, b), 0)
end

-- find, match: one call each.
local function check_call(name, ...)
  cases = cases + 1
  local args = pack(...)
  local a = call(real[name], ...)
  local b = call(mine[name], ...)
  if not same_list(a, b) then differ(name, args, show_list(a), show_list(b)) end
end

-- gmatch: the whole iteration (at most 50 steps), stopping at the first error.
local function iterate(gmatch, ...)
  local out = {}
  local r = call(gmatch, ...)
  if not r[1] then return "error: " .. tostring(r[2]) end
  local it = r[2]
  for _ = 1, 50 do
    local r = pack(pcall(it))
    out[#out + 1] = show_list(r)
    if not r[1] or r.n == 1 then break end
  end
  return table.concat(out, " ")
end

local function check_gmatch(...)
  cases = cases + 1
  local a = iterate(real.gmatch, ...)
  local b = iterate(mine.gmatch, ...)
  if a ~= b then differ("gmatch", pack(...), a, b) end
end

-- gsub: a replacement function or table is made afresh for each side by
-- make(log), which records what it was called with.
local function check_gsub(s, p, make, n, nargs)
  cases = cases + 1
  local function run(gsub)
    local log = {}
    local repl = make(log)
    local r
    if nargs == 3 then
      r = call(gsub, s, p, repl)
    else
      r = call(gsub, s, p, repl, n)
    end
    return show_list(r) .. " calls: " .. table.concat(log, " | ")
  end
  local a, b = run(real.gsub), run(mine.gsub)
  if a ~= b then
    local repl = make({})
    differ("gsub", pack(s, p, repl, n), a, b)
  end
end

local function fixed(v) return function() return v end end

-- A replacement function that logs its captures and answers `answer`.
local function logger(answer)
  return function(log)
    return function(...)
      local args = pack(...)
      log[#log + 1] = show_list(args)
      if answer == "first" then return ... end
      if answer == "concat" then
        local parts = {}
        for i = 1, args.n do parts[i] = tostring(args[i]) end
        return table.concat(parts, "+")
      end
      return answer
    end
  end
end

-- A replacement table with a few keys; the rest are missing (no change).
local function table_of(log)
  return setmetatable({ a = "A", b = 2, ab = false, [1] = "one", c = {}, x = 1.5 }, {
    __index = function(_, k)
      log[#log + 1] = "index " .. show(k)
      return nil
    end,
  })
end

---------------------------------------------------------------- hand-picked

local subjects = {
  "", "a", "hello world", "  key = value  ", "THE (quick) [brown] fox", "a.b-c+d*e?f",
  "aaa", "abcabc", "x\0y\0z", "f(a(b)c)d", "100% sure", "^$", "one two  three",
  "\t\n x \r", "caf\195\169", "ab\255\128", "[]]^-", "%%", "THE END",
}
local patterns = {
  -- literals, classes, sets
  "", "a", "o", "hello", "%a+", "%A+", "%d", "%D*", "%s", "%S+", "%w+", "%W", "%l+", "%L",
  "%u+", "%U", "%p", "%P+", "%c", "%C+", "%x+", "%X", "%g+", "%G", "%z", "%Z", "%.", "%%",
  "%q", "%-", "%]", "[abc]", "[^abc]+", "[a-c]+", "[%a%d]+", "[%s]", "[^%s]+", "[]]",
  "[^]]", "[]a]", "[a-]", "[-a]", "[%]]", "[%-]", "[a%-z]", "[z-a]", "[%a-z]", "[^]",
  "[]", "[", "[^", "[a", "[%", "[%]", "[a-", "[]-a]", "[\0]", "x\0y", "\0",
  -- quantifiers
  "a*", "a+", "a-", "a?", ".*", ".+", ".-", ".?", "a*b", "a-b", "a?b", "%a*%d",
  "(.-)%s", "(.*)o", "(.+)(.+)", "[%w_]+=", "%s*(.-)%s*$", "*", "+", "?", "-", "a**",
  "a*+", "^*", "$*",
  -- anchors
  "^", "$", "^$", "^a", "a$", "^hello", "world$", "^.-$", "a$b", "$a", "^^", "^%s*",
  -- captures
  "()", "()a()", "(a)", "(a)(b)", "((a)(b))", "(h)(e)(l)(l)(o)", "(%a+) (%a+)", "(",
  ")", "(()", "())", "(a", "a)", "%1", "(a)%1", "(a*)%1", "(.)%1", "()%1", "(%1)",
  "(a)%2", "%0", "(a)%0", "(.-)%1", "((a)%2)", "(()a)%1", "(a)(%1)", "%9",
  -- %b and %f
  "%b()", "%b[]", "%bab", "%b", "%b(", "%b((", "%b))", "%bxx", "%f[%a]", "%f[%a]%a+",
  "%f[%A]", "%f[%w]%w+%f[%W]", "%f", "%fa", "%f[", "%f[a", "%f[%z]", "%f[^%z]", "%f[^a]",
  "%f[%s]", "%f[]", "%f[]]", "%f[\0]",
  -- malformed
  "%", "a%", "[%a", "(()", "((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))",
  ("()"):rep(32), ("()"):rep(33), ("(a)"):rep(33),
}

for _, s in ipairs(subjects) do
  for _, p in ipairs(patterns) do
    check_call("find", s, p)
    check_call("match", s, p)
    check_gmatch(s, p)
    check_gsub(s, p, fixed("<%0>"), nil, 3)
    check_gsub(s, p, fixed("%1"), nil, 3)
    check_gsub(s, p, logger("concat"), nil, 3)
  end
end

-- init, plain, and find's shortcut for patterns without specials
local inits = { 0, 1, 2, 3, -1, -2, -3, -100, 100, 5, 12, 13, math.maxinteger, math.mininteger,
                2.0, "2", "-1" }
for _, s in ipairs({ "", "abc", "hello world", "aaa" }) do
  for _, p in ipairs({ "", "a", "l", "o w", ".", "%a", "^a", "a$", "[a]", "(", "%", "()" }) do
    for _, init in ipairs(inits) do
      check_call("find", s, p, init)
      check_call("find", s, p, init, true)
      check_call("find", s, p, init, false)
      check_call("find", s, p, init, 0)
      check_call("match", s, p, init)
      check_gmatch(s, p, init)
    end
  end
end

-- argument errors and conversions
local weird = { nil, 12, 1.5, 2^63, {}, true, print, "x" }
for i = 1, 8 do
  local v = weird[i]
  check_call("find", v, "x")
  check_call("find", "x12", v)
  check_call("find", "x12", "x", v)
  check_call("match", v, "%d")
  check_call("match", "x12", v)
  check_call("match", "x12", ".", v)
  check_gmatch(v, "x")
  check_gmatch("x", v)
  check_gmatch("x", "x", v)
  check_gsub(v, "x", fixed("y"), nil, 3)
  check_gsub("x", v, fixed("y"), nil, 3)
  check_gsub("x", "x", fixed(v), nil, 3)
  check_gsub("xxx", "x", fixed("y"), v, 4)
end
check_call("find")
check_call("match", "x")
check_gmatch()
check_gsub("x", "x", fixed(nil), nil, 3)
check_call("find", 12345, 34)
check_call("match", 12345, "(%d)(%d)")
check_gsub(12345, 3, fixed(9), nil, 3)
check_gsub(1.5, "%.", fixed("!"), nil, 3)

-- gsub's replacement: strings with every escape, tables, functions, and n
local repls = {
  "", "x", "%0", "%1", "%2", "%9", "%%", "%", "a%", "%a", "%%%1", "[%0|%1|%2]", "%1%1",
  "%0%0%0", "\0%0\0", "% ", "%\0", "%10", "%-",
}
for _, s in ipairs({ "", "abc", "hello world", "a,b,,c", "x = 1, y = 22" }) do
  for _, p in ipairs({ "", "%w+", "(%w+)", "(%w)(%w*)", "()", "()(%w)", "(%w+)%s*=%s*(%w+)", "^%w",
                       ",", "(,)", "x*", "(a", ".-", "$", "^" }) do
    for _, r in ipairs(repls) do check_gsub(s, p, fixed(r), nil, 3) end
    check_gsub(s, p, fixed(42), nil, 3)
    check_gsub(s, p, fixed(4.5), nil, 3)
    for _, answer in ipairs({ "first", "concat", false, true, 7, 1.25, "S", {}, print }) do
      check_gsub(s, p, logger(answer), nil, 3)
    end
    check_gsub(s, p, table_of, nil, 3)
    for _, n in ipairs({ 0, 1, 2, -1, 100, 1.0, "1", math.maxinteger, math.mininteger }) do
      check_gsub(s, p, fixed("<%0>"), n, 4)
    end
  end
end

-- the depth limit ("pattern too complex") at the same places
for _, n in ipairs({ 150, 198, 199, 200, 201, 202, 250 }) do
  local s = ("a"):rep(n)
  for _, p in ipairs({ ("a?"):rep(n), ("a*"):rep(n), ("a-"):rep(n),
                       ("a"):rep(n), ("()"):rep(10) .. ("a?"):rep(n - 10),
                       "(" .. ("a?"):rep(n - 1) .. ")" }) do
    check_call("find", s, p)
    check_call("match", s .. "b", p)
    check_gmatch(s, p)
    check_gsub(s, p, fixed("x"), nil, 3)
  end
end

---------------------------------------------------------------- random

math.randomseed(seed)
local random = math.random

local pieces = {
  "a", "b", "c", "a", "b", ".", "%a", "%d", "%s", "%w", "%A", "%p", "%%", "%.", "[ab]",
  "[^a]", "[a-c]", "[%d%s]", "[]]", "[^%a]", "*", "+", "-", "?", "*", "+", "-", "?", "(",
  ")", "(", ")", "()", "%1", "%2", "%b()", "%bab", "%f[%a]", "%f[%W]", "%f[b]", "^", "$",
  "%", "[", "]", " ", "1", "2", "x", "%z", "%x", "\0",
}
local subject_chars = { "a", "b", "c", "a", "b", " ", "1", "2", "(", ")", ".", "%", "x", "\0",
                        "A", "-", "\n", "\200" }

local function random_pattern()
  local parts = {}
  if random(6) == 1 then parts[1] = "^" end
  for _ = 1, random(0, 7) do parts[#parts + 1] = pieces[random(#pieces)] end
  return table.concat(parts)
end

local function random_subject()
  local parts = {}
  for i = 1, random(0, 14) do parts[i] = subject_chars[random(#subject_chars)] end
  return table.concat(parts)
end

local function random_init()
  local r = random(6)
  if r <= 3 then return nil end
  return random(-16, 16)
end

local function random_repl()
  local r = random(8)
  if r <= 3 then
    local parts = {}
    local bits = { "x", "%0", "%1", "%2", "%%", "-", "%3", "%", "%a" }
    for i = 1, random(0, 4) do parts[i] = bits[random(#bits)] end
    return fixed(table.concat(parts))
  elseif r == 4 then
    return table_of
  elseif r == 5 then
    return logger("first")
  elseif r == 6 then
    return logger("concat")
  elseif r == 7 then
    return logger(random(2) == 1 and false or "R")
  end
  return fixed(random(0, 9))
end

for _ = 1, rounds do
  local s, p = random_subject(), random_pattern()
  local init = random_init()
  check_call("find", s, p, init)
  check_call("match", s, p, init)
  check_gmatch(s, p, init)
  if random(4) == 1 then
    check_gsub(s, p, random_repl(), random(-1, 4), 4)
  else
    check_gsub(s, p, random_repl(), nil, 3)
  end
end

-- sanity: the harness's own matching was the standard library's throughout
assert(rfind == real.find)
return cases
