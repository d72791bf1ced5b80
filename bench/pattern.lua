-- bench/pattern.lua — how sluice's pattern matching (src/lua_pattern.c, with a
-- step budget) compares in speed with the standard library's on ordinary
-- patterns. Run by `build/tests/test_pattern --bench` as chunk(real, mine):
-- prints one line per workload, the better of three timings for each, and the
-- ratio sluice/lstrlib. Figures only; nothing is asserted.

local real, mine = ...
local fmt = string.format
local clock = os.clock

-- about 1 MB of text that looks scraped: words, punctuation, numbers, markup
local words = { "lorem", "ipsum", "dolor", "sit", "amet,", "consectetur", "adipiscing", "elit.",
                "Price:", "$19.99", "2024-06-11", "<b>bold</b>", "(see", "below)", "x@y.com",
                "  ", "\n", "#tag", "100%", "https://example.com/a?b=c" }
local parts, n = {}, 0
local seed = 7
while n < 1000000 do
  seed = (seed * 1103515245 + 12345) % 2147483648
  local w = words[seed % #words + 1]
  parts[#parts + 1] = w
  n = n + #w + 1
end
local text = table.concat(parts, " ")
local html = ("<p>" .. ("some paragraph text "):rep(10) .. "</p>\n"):rep(4000)
local lines = {}
for i = 1, 20000 do lines[i] = fmt("key%d = value %d", i, i * 7) end

local workloads = {
  { "find %d+ (each number)", function(lib)
      local i, c = 1, 0
      while true do
        local s, e = lib.find(text, "%d+", i)
        if not s then break end
        c, i = c + 1, e + 1
      end
      return c
    end },
  { "find plain", function(lib)
      local c = 0
      for _ = 1, 50 do if lib.find(text, "not there at all", 1, true) then c = c + 1 end end
      return c
    end },
  { "match key = value (20k lines x5)", function(lib)
      local c = 0
      for _ = 1, 5 do
        for i = 1, #lines do
          local k, v = lib.match(lines[i], "^%s*([%w_]+)%s*=%s*(.-)%s*$")
          if k then c = c + #v end
        end
      end
      return c
    end },
  { "gmatch %a+", function(lib)
      local c = 0
      for w in lib.gmatch(text, "%a+") do c = c + 1 end
      return c
    end },
  { "gmatch email", function(lib)
      local c = 0
      for w in lib.gmatch(text, "[%w%.%-_]+@[%w%-]+%.%a+") do c = c + 1 end
      return c
    end },
  { "gmatch <p>(.-)</p>", function(lib)
      local c = 0
      for w in lib.gmatch(html, "<p>(.-)</p>") do c = c + #w end
      return c
    end },
  { "gsub %s+ -> ' '", function(lib) return select(2, lib.gsub(text, "%s+", " ")) end },
  { "gsub <[^>]*> -> ''", function(lib) return select(2, lib.gsub(html, "<[^>]*>", "")) end },
  { "gsub %f[%w]%w+ with a function", function(lib)
      return select(2, lib.gsub(text, "%f[%w]%w+", function(w) return #w > 5 and w:upper() end))
    end },
  { "gsub ^%s*(.-)%s*$ (trim, 20k x5)", function(lib)
      local c = 0
      for _ = 1, 5 do
        for i = 1, #lines do c = c + #lib.gsub("  " .. lines[i] .. "  ", "^%s*(.-)%s*$", "%1") end
      end
      return c
    end },
}

local function best(fn, lib)
  local t, r = math.huge, nil
  for _ = 1, 3 do
    local t0 = clock()
    r = fn(lib)
    t = math.min(t, clock() - t0)
  end
  return t, r
end

print(fmt("%-36s %10s %10s %7s", "workload (1 MB text)", "lstrlib ms", "sluice ms", "ratio"))
for _, w in ipairs(workloads) do
  local ta, ra = best(w[2], real)
  local tb, rb = best(w[2], mine)
  assert(ra == rb, w[1] .. ": different results")
  print(fmt("%-36s %10.1f %10.1f %7.2f", w[1], ta * 1000, tb * 1000, tb / ta))
end
