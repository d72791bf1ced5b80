-- test_wait_here.lua — a call that waits (sluice.sleep, sluice.db.query) made
-- where the task cannot yield, inside a C function's callback such as
-- table.sort's comparator, raises; and what it had started is dropped, so that
-- its completion does not end the task's next wait early. The database is the
-- test suite's cluster.

local t = require("testlib")

-- Calls fn inside table.sort's comparator, which cannot yield.
local function in_c_call(fn)
  return pcall(table.sort, { 3, 2, 1 }, function(a, b)
    fn()
    return a < b
  end)
end

-- A sleep of s seconds lasts them.
local function sleeps_fully(s)
  local t0 = sluice.now()
  sluice.sleep(s)
  t.eq(sluice.now() - t0 >= s - 0.01, true, "the next sleep lasted " .. s .. " s")
end

t.test("sluice.sleep inside a C call raises and leaves no timer behind", function()
  local ok = in_c_call(function() sluice.sleep(0.05) end)
  t.eq(ok, false, "raised")
  sleeps_fully(0.3)
end)

t.test("sluice.db.query inside a C call raises and leaves no query behind", function()
  local ok = in_c_call(function() sluice.db.query("SELECT pg_sleep(0.05)") end)
  t.eq(ok, false, "raised")
  sleeps_fully(0.3)
  t.eq(sluice.db.query("SELECT 1 AS n")[1].n, 1, "the pool still answers")
end)

t.done()
