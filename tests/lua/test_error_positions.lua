-- test_error_positions.lua — misuse of sluice.spawn, sluice.wait,
-- sluice.db.transaction and sluice.http raises an error that names the caller's
-- line, not one in the runtime's own files (spawn.lua, runtime.lua, http.lua),
-- though the check is made in the C driver below them. The database is the test
-- suite's cluster; no HTTP request is made.

local t = require("testlib")

-- "chunk:line: " of the line that calls here(): error's level 1 is pcall, 2
-- this function, 3 its caller.
local function here()
  local _, where = pcall(error, "", 3)
  return where
end

-- Asserts that pcall's ok, err is an error holding pattern at position where.
local function raised_at(where, ok, err, pattern)
  t.eq(ok, false, "raised")
  err = tostring(err)
  t.eq(err:sub(1, #where), where, "position of " .. err)
  if not err:find(pattern, #where + 1, true) then
    error(("error %q does not contain %q"):format(err, pattern), 2)
  end
end

-- Runs fn in a coroutine made with coroutine.create, which is no sluice task;
-- what it raises fails the test.
local function in_plain_coroutine(fn)
  local ok, err = coroutine.resume(coroutine.create(fn))
  if not ok then error(err, 0) end
end

t.test("here() names its caller's line", function()
  local where, _, mark = here(), pcall(error, "", 2) -- level 2: the function calling pcall
  t.eq(where, mark, "position")
  t.eq(where:match("%.lua:%d+: $") ~= nil, true, "a position: " .. where)
end)

t.test("sluice.spawn from a plain coroutine", function()
  in_plain_coroutine(function()
    local where, ok, err = here(), pcall(function() local c = sluice.spawn(print); return c end)
    raised_at(where, ok, err, "sluice.spawn can only be called from a sluice task")
  end)
end)

t.test("sluice.map from a plain coroutine", function()
  in_plain_coroutine(function()
    local where, ok, err = here(), pcall(function() local r = sluice.map({ 1 }, print); return r end)
    raised_at(where, ok, err, "can only be called from a sluice task")
  end)
end)

t.test("sluice.wait from a plain coroutine", function()
  local child = sluice.spawn(sluice.sleep, 0.01)
  in_plain_coroutine(function()
    local where, ok, err = here(), pcall(function() local v = sluice.wait(child); return v end)
    raised_at(where, ok, err, "sluice.wait can only be called from a sluice task")
  end)
  sluice.wait(child)
end)

t.test("sluice.wait on the task itself", function()
  local where, task
  task = sluice.spawn(function()
    where = here(); local v = sluice.wait(task); return v
  end)
  local ok, err = pcall(sluice.wait, task) -- the child's error, as it raised it
  raised_at(where, ok, err, "sluice.wait: a task cannot wait for itself")
end)

t.test("sluice.wait on a task another task waits for", function()
  local child = sluice.spawn(sluice.sleep, 0.05)
  local other = sluice.spawn(function() local v = sluice.wait(child); return v end)
  sluice.sleep(0) -- other parks on child
  local where, ok, err = here(), pcall(function() local v = sluice.wait(child); return v end)
  raised_at(where, ok, err, "another task is already waiting for this task")
  sluice.wait(other)
end)

t.test("sluice.http.get from a plain coroutine", function()
  in_plain_coroutine(function()
    local get = sluice.http.get
    local where, ok, err = here(), pcall(function() local r = get("http://127.0.0.1:1/"); return r end)
    raised_at(where, ok, err, "sluice.http.request can only be called from a sluice task")
  end)
end)

t.test("a transaction inside a transaction", function()
  local where
  local ok, err = pcall(sluice.db.transaction, function()
    where = here(); local inner = sluice.db.transaction(function() end)
    return inner
  end)
  raised_at(where, ok, err, "sluice.db.transaction: already inside a transaction")
end)

t.test("sluice.db.transaction from a plain coroutine", function()
  in_plain_coroutine(function()
    local tx = sluice.db.transaction
    local where, ok, err = here(), pcall(function() local r = tx(function() end); return r end)
    raised_at(where, ok, err, "sluice.db.transaction can only be called from a sluice task")
  end)
end)

t.test("a transaction still commits, rolls back and raises", function()
  t.eq(sluice.db.transaction(function() return sluice.db.query("select 7 as x")[1].x end), 7)
  local r, e = sluice.db.transaction(function() return nil, "rolled back" end)
  t.eq(r, nil, "result")
  t.eq(e, "rolled back", "error")
  local where, ok, err = here(), pcall(sluice.db.transaction, function() error("boom") end)
  raised_at(where, ok, err, "boom")
end)

-- A C function of the API named by its own name in a bad-argument error and
-- in a traceback, not by the driver's ('core.sleep', 'files.put_asset').
t.test("bad arguments name the API's functions", function()
  for _, c in ipairs({
    { sluice.sleep, "sluice.sleep", "x" }, { sluice.sha256, "sluice.sha256" },
    { sluice.log, "sluice.log", {} }, { sluice.json.decode, "sluice.json.decode" },
    { sluice.db.query, "sluice.db.query" },
    { sluice.assets.put, "sluice.assets.put" },
  }) do
    local ok, err = pcall(c[1], c[3])
    t.eq(ok, false, c[2])
    if not tostring(err):find("bad argument #1 to '" .. c[2] .. "'", 1, true) then
      error(("%s: %q does not name it"):format(c[2], tostring(err)))
    end
  end
end)

t.done()
