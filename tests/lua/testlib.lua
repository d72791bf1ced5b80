-- testlib.lua — the small harness the Lua library tests share (they run with
-- `sluice --lua tests/lua exec tests/lua/test_*.lua`): test(name, fn) runs one
-- and prints "ok - name" or "not ok - name: why"; eq and raises check; done()
-- prints "N passed, M failed" and raises if any failed, so ctest sees it.

local fmt = string.format

local M = {}
local passed, failed = 0, 0

function M.test(name, fn)
  local ok, err = pcall(fn)
  if ok then
    passed = passed + 1
    print("ok - " .. name)
  else
    failed = failed + 1
    print(fmt("not ok - %s: %s", name, tostring(err)))
  end
end

function M.eq(got, want, what)
  if got ~= want then
    error(fmt("%s: expected %s, got %s", what or "value", tostring(want), tostring(got)), 2)
  end
end

-- fn() must raise an error whose text contains pattern (plainly).
function M.raises(fn, pattern)
  local ok, err = pcall(fn)
  if ok then error("expected an error matching " .. pattern, 2) end
  if not tostring(err):find(pattern, 1, true) then
    error(fmt("error %q does not contain %q", tostring(err), pattern), 2)
  end
end

function M.done()
  print(fmt("%d passed, %d failed", passed, failed))
  if failed > 0 then error(fmt("%d test(s) failed", failed), 0) end
end

return M
