-- test_close.lua — the __close handlers of a task's to-be-closed variables:
-- they run when the task raises (a coroutine that dies of an error keeps them
-- open until it is closed) and when it is cancelled (its parent ended, its run
-- timed out), and what they do there, cancelling other tasks, themselves
-- among them, is safe.

local t = require("testlib")

-- Yields until ready() is true (at most 100 times): a task spawned is queued
-- behind those already ready, and when the loop's slice for resuming tasks
-- runs out, behind a sleep's timer too; sleep(0) once is not enough.
local function until_true(ready)
  for _ = 1, 100 do
    if ready() then return true end
    sluice.sleep(0)
  end
  return ready()
end

-- A group of tasks, each of which cancels the whole group (itself included)
-- when it is closed: cancelled by their parent's end, each close cancelled the
-- others, which cancelled the first again while it was still closing.
t.test("a task's __close may cancel every task of its group, itself among them", function()
  local closed, results, started = {}, {}, 0
  local parent = sluice.spawn(function()
    local group = {}
    local function cancel_all()
      local n = 0
      for _, h in ipairs(group) do
        if h:cancel() then n = n + 1 end
      end
      return n
    end
    for i = 1, 3 do
      group[i] = sluice.spawn(function()
        local c <close> = setmetatable({}, { __close = function()
          closed[#closed + 1] = i
          results[i] = cancel_all()
        end })
        started = started + 1
        sluice.sleep(10)
      end)
    end
    until_true(function() return started == 3 end) -- the tasks start and park
    return "done"
  end)
  t.eq(sluice.wait(parent), "done", "the parent's result")
  table.sort(closed)
  t.eq(table.concat(closed, ","), "1,2,3", "every task closed once")
  -- the parent's end cancels one; its close (and theirs) the two others, once
  t.eq(results[1] + results[2] + results[3], 2, "cancels that took effect")
end)

t.test("a task's __close may cancel the task that spawned it", function()
  local closed, started = false, false
  local outer
  outer = sluice.spawn(function()
    sluice.spawn(function()
      local c <close> = setmetatable({}, { __close = function()
        closed = true
        outer:cancel()
      end })
      started = true
      sluice.sleep(10)
    end)
    sluice.sleep(10)
  end)
  t.eq(until_true(function() return started end), true, "the inner task started")
  t.eq(outer:cancel(), true, "the outer task cancelled")
  t.eq(closed, true, "the inner task closed")
  t.eq(outer:status(), "cancelled", "the outer task's state")
end)

t.test("a task that raises closes its to-be-closed variables with that error", function()
  local seen
  local h = sluice.spawn(function()
    local c <close> = setmetatable({}, { __close = function(_, err) seen = err end })
    error({ code = 7 })
  end)
  local ok, err = pcall(sluice.wait, h)
  t.eq(ok, false, "wait raised")
  t.eq(type(err) == "table" and err.code, 7, "wait raised the task's error")
  t.eq(seen, err, "the __close handler was given that error")
end)

t.test("an error a __close handler raises does not replace the task's", function()
  local closed = {}
  local h = sluice.spawn(function()
    local a <close> = setmetatable({}, { __close = function() closed[#closed + 1] = "a" end })
    local b <close> = setmetatable({}, { __close = function()
      closed[#closed + 1] = "b"
      error("from __close")
    end })
    error("from the body", 0)
  end)
  local ok, err = pcall(sluice.wait, h)
  t.eq(ok, false, "wait raised")
  t.eq(err, "from the body", "the task's own error")
  t.eq(table.concat(closed, ","), "b,a", "both closed, in reverse order")
end)

t.test("a task's __close handlers run once when it returns", function()
  local n = 0
  local h = sluice.spawn(function()
    local c <close> = setmetatable({}, { __close = function() n = n + 1 end })
    return "fine"
  end)
  t.eq(sluice.wait(h), "fine", "its result")
  t.eq(n, 1, "closed once")
end)

t.done()
