-- spawn.lua — concurrency inside one run: sluice.spawn, sluice.wait and
-- sluice.map, over the C driver in src/lua_spawn.c. runtime.lua loads this file
-- and hands it the driver; handlers use the functions through `sluice`.
--
-- Structured concurrency: a child task belongs to the task that spawned it and
-- to its run. When that task ends (returns, raises, is cancelled, or the run
-- times out) every child it has not waited for is cancelled, pending HTTP
-- requests and timers included.
--
-- Errors: a child that raised makes sluice.wait (and sluice.map) raise that same
-- error in the waiting task; wrap the call in pcall to handle it. Expected
-- failures are values (`return nil, err`) and come back as results. Misuse
-- raises at the caller's line: the driver returns it (a task waiting for itself,
-- a call from a coroutine that is not a task) and the function the handler
-- called raises it, error(msg, 2), never from a helper or a tail call, which
-- would shift the level onto this file.

return function(drv)
  local M = {}

  local function check_task(v, where)
    if not drv.is_task(v) then
      error(("%s: expected a task from sluice.spawn, got a %s"):format(where, type(v)), 3)
    end
  end

  -- spawn(fn, ...) → task: runs fn(...) as a child task of the caller.
  function M.spawn(fn, ...)
    if type(fn) ~= "function" then
      error(("sluice.spawn: expected a function, got a %s"):format(type(fn)), 2)
    end
    local t, misuse = drv.spawn(fn, ...)
    if not t then error(misuse, 2) end
    return t
  end

  -- Parks until every task of list[1..n] has ended; raises as soon as one has
  -- failed (or was cancelled), without waiting for the others. Returns the
  -- driver's message when the caller cannot wait (for its caller to raise).
  local function wait_all(list, n)
    while true do
      local pending, np = {}, 0
      for i = 1, n do
        local state = drv.state(list[i])
        if state == "failed" then
          local _, err = drv.collect(list[i])
          error(err, 0)
        elseif state == "cancelled" then
          error("sluice.wait: a task was cancelled before it finished", 0)
        elseif state == "running" then
          np = np + 1
          pending[np] = list[i]
        end
      end
      if np == 0 then return end
      local misuse = drv.park(table.unpack(pending, 1, np))
      if misuse then return misuse end
    end
  end

  -- wait(t)              → t's return values
  -- wait(t1, t2, …)      → the first return value of each, in order
  -- wait({t1, t2, …})    → results, errors: results[i] is task i's first return
  --                        value; errors[i] its second when the first is nil
  --                        (the `nil, err` convention)
  function M.wait(...)
    local n = select("#", ...)
    local first = ...
    if n == 1 and type(first) == "table" and not drv.is_task(first) then
      local count = #first
      for i = 1, count do check_task(first[i], "sluice.wait") end
      local misuse = wait_all(first, count)
      if misuse then error(misuse, 2) end
      local results, errs = {}, {}
      for i = 1, count do
        local _, v, e = drv.collect(first[i])
        results[i] = v
        if v == nil and e ~= nil then errs[i] = e end
      end
      return results, errs
    end
    if n == 0 then error("sluice.wait: expected one or more tasks, or a list of tasks", 2) end
    local list = { ... }
    for i = 1, n do check_task(list[i], "sluice.wait") end
    local misuse = wait_all(list, n)
    if misuse then error(misuse, 2) end
    if n == 1 then
      return select(2, drv.collect(list[1]))
    end
    local out = {}
    for i = 1, n do
      out[i] = select(2, drv.collect(list[i]))
    end
    return table.unpack(out, 1, n)
  end

  -- map(items, fn, {concurrency = 10}) → results, errors
  -- Calls fn(item, i) for every item of the list, at most `concurrency` at a
  -- time, each in a child task; results[i] is fn's first return value, errors[i]
  -- its second when the first is nil. If fn raises, no further item starts, the
  -- calls in flight are cancelled and map raises that error.
  function M.map(items, fn, opts)
    if type(items) ~= "table" then
      error(("sluice.map: expected a list of items, got a %s"):format(type(items)), 2)
    end
    if type(fn) ~= "function" then
      error(("sluice.map: expected a function, got a %s"):format(type(fn)), 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
      error("sluice.map: options must be a table like {concurrency = 5}", 2)
    end
    for k in pairs(opts or {}) do
      if k ~= "concurrency" then
        error(("sluice.map: unknown option '%s' (known: concurrency)"):format(tostring(k)), 2)
      end
    end
    local given = opts and opts.concurrency or 10
    local conc = math.type(given) and math.tointeger(given) -- 4.0 is 4; 1e300 has no integer
    if not conc or conc < 1 then
      error(("sluice.map: concurrency must be a whole number ≥ 1, not %s"):format(
        type(given) == "number" and ("%.14g"):format(given) or type(given)), 2)
    end
    local n = #items
    local results, errs = {}, {}
    local next_i, stop = 0, false
    local function worker()
      while not stop do
        next_i = next_i + 1
        local i = next_i
        if i > n then return end
        local v, e = fn(items[i], i)
        results[i] = v
        if v == nil and e ~= nil then errs[i] = e end
      end
    end
    local workers = {}
    for w = 1, math.min(conc, n) do
      local t, misuse = drv.spawn(worker)
      if not t then error(misuse, 2) end -- the first one: none started yet
      workers[w] = t
    end
    local ok, err = pcall(wait_all, workers, #workers)
    if not ok or err then
      stop = true
      for _, w in ipairs(workers) do drv.cancel(w) end
      error(err, ok and 2 or 0) -- a misuse returned, or a worker's error as it is
    end
    for _, w in ipairs(workers) do drv.collect(w) end
    return results, errs
  end

  return M
end
