-- test_close.lua — the __close handlers of a task's to-be-closed variables:
-- they run when the task is cancelled (its parent ended, its run timed out),
-- and what they do there, cancelling other tasks, themselves among them, is
-- safe.

local t = require("testlib")

-- A group of tasks, each of which cancels the whole group (itself included)
-- when it is closed: cancelled by their parent's end, each close cancelled the
-- others, which cancelled the first again while it was still closing.
t.test("a task's __close may cancel every task of its group, itself among them", function()
  local closed, results = {}, {}
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
        sluice.sleep(10)
      end)
    end
    sluice.sleep(0) -- the tasks start and park
    return "done"
  end)
  t.eq(sluice.wait(parent), "done", "the parent's result")
  table.sort(closed)
  t.eq(table.concat(closed, ","), "1,2,3", "every task closed once")
  -- the parent's end cancels one; its close (and theirs) the two others, once
  t.eq(results[1] + results[2] + results[3], 2, "cancels that took effect")
end)

t.test("a task's __close may cancel the task that spawned it", function()
  local closed = false
  local outer
  outer = sluice.spawn(function()
    sluice.spawn(function()
      local c <close> = setmetatable({}, { __close = function()
        closed = true
        outer:cancel()
      end })
      sluice.sleep(10)
    end)
    sluice.sleep(10)
  end)
  sluice.sleep(0)
  t.eq(outer:cancel(), true, "the outer task cancelled")
  t.eq(closed, true, "the inner task closed")
  t.eq(outer:status(), "cancelled", "the outer task's state")
end)

t.done()
