-- tests/lua/test_clean.lua — sluice.clean, which makes one scraped value
-- storable (no NUL, integers in range, unix times in seconds) so that one bad
-- item does not fail its batch. The handlers that use it are tested in
-- tests/integration/test_seed_research.py and test_seed_ads.py.

local clean = require("sluice.clean")
local T = require("testlib")
local test, eq = T.test, T.eq

test("text strips NUL and says so", function()
  eq(select(1, clean.text("a\0b\0")), "ab")
  eq(select(2, clean.text("a\0b")), true)
  eq(select(2, clean.text("ab")), false)
  eq(clean.text(5), 5)
end)

test("deep cleans strings and keys at any depth, and keeps clean values as they are", function()
  local item = { body = { text = "x\0y" }, ["k\0"] = { "a", "b\0" }, n = 3 }
  local c, n = clean.deep(item)
  eq(n, 3, "strings changed")
  eq(c.body.text, "xy")
  eq(c.k[2], "b")
  eq(c.n, 3)
  local fine = { a = { "b" } }
  local same, m = clean.deep(fine)
  eq(same, fine, "not copied")
  eq(m, 0)
end)

test("nul_note names the item and how many texts, or which fields, had NUL", function()
  eq(clean.nul_note("post t3_a", 2), "post t3_a: NUL characters removed from 2 texts")
  eq(clean.nul_note("post t3_a", 0), nil)
  local fields = { "title", "text" }
  eq(clean.nul_note("review R1", fields), "review R1: NUL characters removed from text, title")
  eq(fields[1], "title", "the list is left as it is")
  eq(clean.nul_note("review R1", {}), nil)
end)

test("strip cleans like deep and notes it, the name read from the cleaned value", function()
  local c, n, note = clean.strip({ id = "a\0b", body = "x\0" }, function(r) return "post " .. r.id end)
  eq(c.id, "ab")
  eq(c.body, "x")
  eq(n, 2)
  eq(note, "post ab: NUL characters removed from 2 texts")
  c, n, note = clean.strip("y\0", "item 1")
  eq(c, "y")
  eq(note, "item 1: NUL characters removed from 1 text")
  local fine = { id = "ab" }
  local called = false
  c, n, note = clean.strip(fine, function() called = true end)
  eq(c, fine, "not copied")
  eq(n, 0)
  eq(note, nil)
  eq(called, false, "no name asked for without a note")
end)

test("value reads null and the empty string as absent", function()
  eq(clean.value(sluice.null), nil)
  eq(clean.value(""), nil)
  eq(clean.value(0), 0)
  eq(clean.value(false), false)
  eq(clean.value("x"), "x")
end)

test("count reads numbers with separators and words", function()
  local cases = {
    { 12, 12 }, { 12.0, 12 }, { "12", 12 }, { "1,234", 1234 }, { "1.234", 1234 },
    { "1 234 567", 1234567 }, { "1\194\160234", 1234 }, { "3,000", 3000 },
    { "12 people found this helpful", 12 }, { "One person found this helpful", 1 },
    { "2,345 people found this helpful.", 2345 }, { "12.5", 12 }, { "1,23", 1 },
    { "2147483647", 2147483647 },
  }
  for _, c in ipairs(cases) do eq(clean.count(c[1], clean.INT4_MAX), c[2], ("%q"):format(c[1])) end
end)

test("count refuses what is out of range or no number", function()
  for _, v in ipairs({ "3,000,000,000", 3000000000, "2147483648", -1, 1e300, "none", "",
                       "99999999999999999999999" }) do
    local n, why = clean.count(v, clean.INT4_MAX)
    eq(n, nil, tostring(v))
    assert(type(why) == "string", "a reason for " .. tostring(v))
  end
  eq(clean.count(3000000000), 3000000000, "within int8")
  eq(clean.count(nil), nil)
end)

test("epoch tells seconds from milliseconds, microseconds and nanoseconds", function()
  local s = 1733011200
  eq(clean.epoch(s), s)
  eq(clean.epoch(s + 0.5), s)
  eq(clean.epoch("1733011200"), s)
  local n, unit = clean.epoch(s * 1000)
  eq(n, s); eq(unit, "milliseconds")
  eq(clean.epoch(s * 1000 + 999), s)
  eq(select(2, clean.epoch(s * 1000000)), "microseconds")
  eq(clean.epoch(s * 1000000), s)
  eq(clean.epoch(s * 1000000000), s)
  eq(select(2, clean.epoch(s * 1000000000)), "nanoseconds")
  eq(clean.epoch(0), 0)
end)

test("epoch refuses what is no date from 1970 to 2100", function()
  for _, v in ipairs({ -1, 5000000000, 1e25, "soon", 0 / 0 }) do
    local n, why = clean.epoch(v)
    eq(n, nil, tostring(v))
    assert(type(why) == "string", "a reason for " .. tostring(v))
  end
  eq(clean.epoch(nil), nil)
end)

T.done()
