-- repl.lua — the helpers of `sluice repl` (run, queue, runs, health, types,
-- reload, pp, help), its pretty-printer and its tab completion.
--
-- Trusted: lua/sluice/runtime.lua loads it once with capabilities handlers never
-- get — the foreground-run primitive (src/lua_repl.c), the handler registry and
-- reload. The REPL's environment (a sandbox like a handler's, but with writable
-- globals) receives only the closures below, so what works at the prompt works
-- in a handler, and nothing more is reachable from it.

local cap = ...
if type(cap) ~= "table" or not cap.driver then
  error("sluice.repl is part of `sluice repl`, not a library", 2)
end
local host, sluice, drv, json, null, env = cap.host, cap.sluice, cap.driver, cap.json, cap.null, cap.env
local db = sluice.db

local M = {}
local G = {} -- the helpers, installed as globals of the REPL environment

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
            repeat return then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

local function is_ident(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil and not KEYWORDS[k]
end

---------------------------------------------------------------- pretty-printing

local DEPTH, ITEMS, WIDTH = 4, 100, 78
-- A value is shown, not dumped: at most STRING bytes of one string (or of a
-- table's __tostring), and about SHOWN characters in all for what one input
-- prints; a note says how much was left out. print() writes in full.
local STRING, SHOWN = 10000, 100000

-- 9990000 → "9,990,000"
local function thousands(n)
  local s = tostring(n)
  local head, digits = s:match("^(-?)(%d+)$")
  if not digits then return s end
  return head .. digits:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
end

-- The first STRING bytes of s (cut before a character's continuation bytes,
-- not inside a character) and the number of bytes left out, or s and 0.
local function cut(s)
  if #s <= STRING then return s, 0 end
  local last = STRING
  while last > 0 and last > STRING - 3 and s:byte(last + 1) & 0xC0 == 0x80 do last = last - 1 end
  if s:byte(last + 1) & 0xC0 == 0x80 then last = STRING end -- not UTF-8 there anyway
  return s:sub(1, last), #s - last
end

-- "… (9,990,000 more bytes)": what was left out, n of noun.
local function more(n, noun)
  return ("… (%s more %s)"):format(thousands(n), n == 1 and noun or noun .. "s")
end

-- " … (N more bytes)" after a string cut, or "" when nothing was left out.
local function more_bytes(left_out)
  return left_out == 0 and "" or " " .. more(left_out, "byte")
end

local NAMED = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ['"'] = '\\"', ["\\"] = "\\\\" }

local function escape(c)
  return NAMED[c] or ("\\%03d"):format(c:byte())
end

-- A string as a Lua literal: control characters, quotes and backslashes
-- escaped, and so is each byte that is not part of valid UTF-8 (shown as is,
-- such bytes reach the terminal as U+FFFD, or garble it, and "\xff" would look
-- like "\xfe"); valid UTF-8 stays readable.
local function quote(s)
  local parts, i, n = {}, 1, #s
  while i <= n do
    local valid, bad = utf8.len(s, i)
    local last = valid and n or bad - 1
    parts[#parts + 1] = (s:sub(i, last):gsub('[%c"\\]', escape))
    if not valid then
      parts[#parts + 1] = escape(s:sub(bad, bad))
      last = bad
    end
    i = last + 1
  end
  return '"' .. table.concat(parts) .. '"'
end

local function scalar(v)
  local t = type(v)
  if t == "string" then
    local shown, left_out = cut(v)
    return quote(shown) .. more_bytes(left_out)
  end
  if v == null then return "null" end
  return tostring(v)
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    if ta == "number" then return true end
    if tb == "number" then return false end
    return ta < tb
  end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

-- pretty(v [, depth [, shown]]) → text: tables nested at most `depth` levels
-- ({…} below), at most ITEMS entries each, cycles shown as <cycle>; short
-- tables on one line. Strings are cut at STRING bytes; once about SHOWN
-- characters are out (shown.left, shared by the values of one input), the
-- tables being printed end in "… (N more)".
local function pretty(v, depth, shown)
  depth = depth or DEPTH
  shown = shown or { left = SHOWN }
  local path = {} -- tables being printed (a table inside itself is a cycle)
  local function fmt(x, level, indent)
    if type(x) ~= "table" then
      local text = scalar(x)
      shown.left = shown.left - #text
      return text
    end
    local mt = getmetatable(x)
    if type(mt) == "table" and rawget(mt, "__tostring") then
      local text, left_out = cut(tostring(x))
      shown.left = shown.left - #text
      return text .. more_bytes(left_out)
    end
    if path[x] then return "<cycle>" end
    local keys, vals = {}, {}
    local ok = pcall(function()
      for k, val in pairs(x) do keys[#keys + 1] = k; vals[k] = val end
    end)
    if not ok then return tostring(x) end
    if #keys == 0 then return "{}" end
    if level >= depth then return "{…}" end
    table.sort(keys, key_order)
    local n = 0
    while vals[n + 1] ~= nil do n = n + 1 end
    path[x] = true
    local items, count = {}, 0
    local inner = indent .. "  "
    for i = 1, n do
      if count >= ITEMS or shown.left <= 0 then break end
      items[#items + 1] = fmt(vals[i], level + 1, inner)
      shown.left = shown.left - #inner - 2 -- on a line of its own, and ",\n"
      count = count + 1
    end
    for _, k in ipairs(keys) do
      if count >= ITEMS or shown.left <= 0 then break end
      if not (math.type(k) == "integer" and k >= 1 and k <= n) then
        local ks = is_ident(k) and k or ("[" .. fmt(k, depth, inner) .. "]") -- fmt counts its text
        shown.left = shown.left - (is_ident(k) and #k or 2) - #inner - 5 -- and " = ", ",\n"
        items[#items + 1] = ks .. " = " .. fmt(vals[k], level + 1, inner)
        count = count + 1
      end
    end
    path[x] = nil
    if #keys > count then items[#items + 1] = ("… (%s more)"):format(thousands(#keys - count)) end
    local one = "{ " .. table.concat(items, ", ") .. " }"
    if #one + #indent <= WIDTH and not one:find("\n", 1, true) then return one end
    return "{\n" .. inner .. table.concat(items, ",\n" .. inner) .. ",\n" .. indent .. "}"
  end
  return fmt(v, 0, "")
end
M.pretty = pretty

local function out(s)
  drv.out(s) -- as print() writes: a failed write's reason is kept for the exit
end

local function note(s)
  io.stderr:write(s, "\n")
  io.stderr:flush()
end

-- The task body for one REPL input: runs it and prints what it returns; the
-- first value is kept in the global `_`.
function M.evaluator(fn)
  return function()
    local r = table.pack(fn()) -- a traceback names this call "upvalue 'fn'" (see lua_repl.c)
    if r.n == 0 then return end
    local parts, shown = {}, { left = SHOWN }
    for i = 1, r.n do
      if shown.left <= 0 then
        local left_out = r.n - i + 1
        parts[i] = more(left_out, "value")
        break
      end
      parts[i] = pretty(r[i], nil, shown)
    end
    out(table.concat(parts, "\t"))
    rawset(env, "_", r[1])
  end
end

---------------------------------------------------------------- helpers

-- Helpers raise without a position: their messages say what failed, and a call
-- at the prompt may be a tail call (`return run(…)`), whose caller a level cannot
-- name.
local function fail(fmt, ...)
  error(fmt:format(...), 0)
end

local function without_nulls(row)
  local t = {}
  for k, v in pairs(row) do
    if v ~= null then t[k] = v end
  end
  return t
end

-- JSON numbers decode as floats: whole ones back to integers (1.0 → 1).
local function ints(v)
  if math.type(v) == "float" then return math.tointeger(v) or v end
  if type(v) ~= "table" or v == null then return v end
  for k, x in pairs(v) do v[k] = ints(x) end
  return v
end

local function check_opts(what, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then fail("%s: options must be a table, like { brand = \"Acme\" }", what) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      fail("%s: unknown option '%s' (known: %s)", what, tostring(k), table.concat(names, ", "))
    end
  end
  return opts
end

-- The brand option: a brand's name or id. "" is no way to say "no brand" (it is
-- often an unset variable): leave the option out.
local function check_brand(what, brand)
  if brand == nil then return nil end
  if type(brand) ~= "string" or brand:match("^%s*$") then
    fail("%s: brand must be a brand's name or id, not %s (leave it out for a job without a brand)",
      what, type(brand) == "string" and ("%q"):format(brand) or "a " .. type(brand))
  end
  return brand
end

-- Filters name what exists: a brand, a job type (with the nearest known name), a
-- status, a positive limit — a misspelt one would list nothing and say nothing.
local RUN_STATUSES = { pending = true, running = true, completed = true, failed = true, cancelled = true }

local function check_filters(what, opts)
  if check_brand(what, opts.brand) then
    local _, err = db.query("SELECT sluice.resolve_brand($1)", opts.brand)
    if err then fail("%s: %s", what, err) end
  end
  if opts.type ~= nil then
    if type(opts.type) ~= "string" then fail("%s: type must be a job type's name", what) end
    if not host.get_handler(opts.type) then
      local _, err = host.validate(opts.type, "{}") -- nil for a type whose file failed to load
      if err then fail("%s: %s", what, err) end
    end
  end
  if opts.status ~= nil and not RUN_STATUSES[opts.status] then
    fail("%s: unknown status %s (one of: pending, running, completed, failed, cancelled)", what,
      type(opts.status) == "string" and ("'%s'"):format(opts.status) or "a " .. type(opts.status))
  end
  -- as `sluice runs --limit`: past 2^31 the query refused it as an int
  local limit = type(opts.limit) == "number" and math.tointeger(opts.limit)
  if opts.limit ~= nil and not (limit and limit >= 1 and limit <= 100000) then
    fail("%s: limit must be a whole number from 1 to 100000, not %s", what,
      type(opts.limit) == "string" and ("%q"):format(opts.limit) or tostring(opts.limit))
  end
end

-- The path of the first string in v (a table's keys included) that is not
-- UTF-8 ("keywords[2]", "a.b"), and whether it is a key; or nil. The encoder
-- would store such bytes as U+FFFD: refused instead, as `sluice queue` does.
local function not_utf8(v, path, depth)
  if type(v) == "string" then return utf8.len(v) == nil and path or nil end
  if type(v) ~= "table" or depth > 100 then return nil end
  for k, x in next, v do
    local p = math.type(k) == "integer" and ("%s[%d]"):format(path, k)
      or (path ~= "" and path .. "." or "") .. tostring(k)
    if type(k) == "string" and utf8.len(k) == nil then -- the name shown with \xFF for its bytes
      local shown = k:gsub("[\128-\255]", function(c) return ("\\x%02X"):format(c:byte()) end)
      return (path ~= "" and path .. "." or "") .. shown, true
    end
    local where, is_key = not_utf8(x, p, depth + 1)
    if where then return where, is_key end
  end
  return nil
end

-- The job's parameters, validated against its handler (defaults applied), as JSON.
-- no_brand: none is given, which a type that needs one is told of together
-- with its parameters' problems.
local function validated(what, job_type, params, no_brand)
  if type(job_type) ~= "string" then
    fail("%s: the first argument is the job type, e.g. %s(\"echo\", { message = \"hi\" })", what, what)
  end
  if params ~= nil and type(params) ~= "table" then
    fail("%s: parameters must be a table, not a %s", what, type(params))
  end
  local where, is_key = not_utf8(params, "", 0)
  if where then
    fail("%s: %s: %sis not valid UTF-8 (Postgres cannot store it)", what, where,
      is_key and "the name " or "")
  end
  local ok, encoded = pcall(json.encode, params or {})
  if not ok then fail("%s: parameters cannot be encoded as JSON: %s", what, tostring(encoded)) end
  if encoded == "[]" then encoded = "{}" end
  local normalized, err = host.validate(job_type, encoded, what == "run",
    no_brand and ('{ brand = "NAME" } as %s\'s third argument'):format(what))
  if not normalized then fail("%s: %s", what, err) end
  return normalized
end

-- The columns of a claimed run (sluice.claimed_run) as a run's spec takes them.
local CLAIMED = [[
    SELECT run_id::text, job_id::text, job_type, brand_id::text, parameters::text AS params_json,
           checkpoint::text AS checkpoint_json, attempt_number AS attempt, timeout_seconds,
           trigger_source
    ]]

-- run(type, params [, { brand = … }]) → the run's result. Runs the job now, in
-- the foreground, with its log lines streaming; records the run (trigger_source
-- repl) like `sluice run`; raises with the run's error when it fails, and
-- when its claim came back too late for its lease (the run is not started but
-- given back to its job, as `sluice run` and a worker do).
function G.run(job_type, params, opts)
  if type(opts) == "string" then opts = { brand = opts } end
  opts = check_opts("run", opts, { brand = true })
  check_brand("run", opts.brand)
  local normalized = validated("run", job_type, params)
  -- the run's start would be the transaction's, uncommitted, while its lease
  -- and outcome are written on other connections: the outcome found no run
  -- running, and the run was left running once the transaction committed
  if drv.in_transaction() then
    fail("run: cannot run a job inside sluice.db.transaction (its start would not be committed "
      .. "before its outcome is recorded); call run() outside the transaction")
  end
  local worker, lease = drv.worker()
  if not worker then fail("run: this process is not registered as a worker") end
  local sent = drv.clock()
  local start = CLAIMED .. "FROM sluice.start_direct_run($1, $2, $3, $4::jsonb, 'repl', $5::float8)"
  local rows, err, state = db.query(start, worker, opts.brand, job_type, normalized, lease)
  if not rows and state == nil then
    -- no server answered: the call may have been committed with only its
    -- answer lost. The run this process holds is started afresh for it (no
    -- attempt spent); holding none, the call made nothing and goes again
    note(("run: %s; connecting again to start the run"):format(err))
    sent = drv.clock()
    rows, err = db.query(CLAIMED .. "FROM sluice.retake_direct_run($1, $2::float8)", worker, lease)
    if rows and #rows == 0 then
      sent = drv.clock()
      rows, err = db.query(start, worker, opts.brand, job_type, normalized, lease)
    end
  end
  if not rows then fail("run: %s", err) end
  local spec = without_nulls(rows[1])
  local in_time, late = drv.claimed(sent)
  if not in_time then -- the run goes back to its job as if never claimed, as a worker's does
    local given, gerr = db.query("SELECT sluice.release_runs($1::uuid[]) AS n",
      "{" .. spec.run_id .. "}")
    fail("run %s (%s) not started: %s; %s", spec.run_id, job_type, late,
      not given and "giving it back failed (" .. tostring(gerr) .. "): its lease runs out, then "
        .. "the rescue pass fails it and the retry policy applies"
      or given[1].n == 1 and "the run was given back to its job, which is due now: a worker "
        .. "(sluice serve) runs it"
      or "a rescue had already failed the run: its job follows its retry policy")
  end
  note(("run %s (%s) started"):format(spec.run_id, job_type))
  local o, serr = drv.run(spec)
  if not o then
    db.query("SELECT * FROM sluice.finish_runs($1::jsonb)",
      json.encode({ { run_id = spec.run_id, status = "failed", retryable = false, error = serr } }))
    fail("run: %s", serr)
  end
  if o.record_error then note("warning: the run could not be recorded: " .. o.record_error) end
  if o.status ~= "completed" then -- failed or cancelled, as it was recorded, and what then
    fail("run %s %s after %.2fs: %s%s", o.run_id, o.status, o.seconds, o.error or o.status,
      o.decision and "; then " .. o.decision or "")
  end
  note(("run %s completed in %.2fs"):format(o.run_id, o.seconds))
  if not o.result_json then return nil end
  local value = json.decode(o.result_json)
  if value == null then return nil end
  return ints(value)
end

-- queue(type, params [, opts]) → job id. Validates first (nothing is queued on
-- any problem), then sluice.enqueue(). opts: brand, at (a timestamp; without a
-- zone or offset, UTC), after (a delay: seconds or "15 min"), priority,
-- dedupe_key, max_retries, name. With at or after, says when the job is due.
function G.queue(job_type, params, opts)
  if type(opts) == "string" then opts = { brand = opts } end
  opts = check_opts("queue", opts, { brand = true, at = true, after = true, priority = true,
                                     dedupe_key = true, max_retries = true, name = true })
  check_brand("queue", opts.brand)
  -- as `sluice queue` checks its options
  local function whole(key, lo, hi)
    local v = opts[key]
    local i = math.type(v) and math.tointeger(v) -- 2.0 is 2
    if v ~= nil and (not i or i < lo or i > hi) then
      fail("queue: %s must be a whole number from %d to %d, not %s", key, lo, hi, tostring(v))
    end
  end
  whole("priority", -1000000, 1000000)
  whole("max_retries", 0, 1000)
  for _, key in ipairs({ "name", "dedupe_key" }) do
    local v = opts[key]
    if v ~= nil and (type(v) ~= "string" or v == "") then
      fail("queue: %s must be a non-empty string, not %s", key,
        type(v) == "string" and '""' or "a " .. type(v))
    end
  end
  -- a date first, as `sluice queue --at` takes it: Postgres also reads words
  -- (epoch, tomorrow, now) and a number alone as timestamps, or refuses them
  -- with a message about its own syntax
  if opts.at ~= nil and (type(opts.at) ~= "string" or not opts.at:match("^%s*%d")) then
    fail('queue: at must be a timestamp such as "2026-12-01T09:00:00Z" (or give after = seconds), not %s',
      type(opts.at) == "string" and ("%q"):format(opts.at) or "a " .. type(opts.at))
  end
  local normalized = validated("queue", job_type, params, opts.brand == nil)
  local at_sql, at = "$4::timestamptz", opts.at
  if opts.after ~= nil then
    if at ~= nil then fail("queue: give at or after, not both") end
    local secs, derr = host.duration(opts.after)
    if not secs then fail("queue: after: %s", derr) end
    at_sql, at = "now() + make_interval(secs => $4::float8)", secs
  end
  -- with the status of the job that holds the dedupe key when there is one,
  -- and when it is due in UTC (a time without a zone is UTC: the session's zone)
  local rows, err = db.query(([[
    SELECT e.job_id::text, e.created,
           (SELECT j.status FROM sluice.scheduled_jobs j WHERE j.id = e.job_id AND NOT e.created) AS holder,
           to_char((%s) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS due
    FROM sluice.enqueue($1, $2, $3::jsonb, %s, $5::int, $6, $7::int, 'repl', $8) e]]):format(at_sql, at_sql),
    opts.brand, job_type, normalized, at, opts.priority or 0, opts.dedupe_key, opts.max_retries,
    opts.name)
  if not rows then fail("queue: %s", err) end
  local row = rows[1]
  if row.created and at ~= nil and type(row.due) == "string" then note("due: " .. row.due) end
  if not row.created then
    local holder = row.holder
    if holder == "paused" then
      note(("%s: a job with dedupe key '%s' is paused: %s; nothing new was queued "
             .. "(`sluice jobs resume` lets it run)")
        :format(job_type, tostring(opts.dedupe_key), row.job_id))
    elseif holder == nil or holder == null or holder == "active" then
      note(("%s: a job with dedupe key '%s' is already pending or running: %s")
        :format(job_type, tostring(opts.dedupe_key), row.job_id))
    else -- cancelled: the key is held until its run has ended
      note(("%s: a job with dedupe key '%s' is %s but its run is still in flight: %s; "
             .. "the key is free once that run has ended")
        :format(job_type, tostring(opts.dedupe_key), holder, row.job_id))
    end
  end
  return row.job_id
end

-- runs{ type = …, brand = …, status = …, limit = 10 } → recent runs, newest first.
function G.runs(opts)
  if type(opts) == "string" then opts = { type = opts } end
  opts = check_opts("runs", opts, { type = true, brand = true, status = true, limit = true })
  check_filters("runs", opts)
  local rows, err = db.query([[
    SELECT run_id::text AS id, job_type AS type, brand_name AS brand, status, trigger_source AS trigger,
           attempt_number AS attempt,
           to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS started,
           round(duration_seconds::numeric, 3) AS seconds, params_preview AS params,
           log_summary AS summary
    FROM sluice.recent_runs
    WHERE ($1::text IS NULL OR job_type = $1)
      AND ($2::text IS NULL OR brand_name = $2 OR brand_id::text = $2)
      AND ($3::text IS NULL OR status = $3)
    ORDER BY created_at DESC
    LIMIT $4::int]], opts.type, opts.brand, opts.status,
    opts.limit and math.tointeger(opts.limit) or 10)
  if not rows then fail("runs: %s", err) end
  local list = {}
  for i, r in ipairs(rows) do
    if r.params == "" then r.params = nil end
    list[i] = without_nulls(r)
  end
  return list
end

-- health{ brand = … } → one row per (brand, dataset): state fresh | stale | never
-- | failing | running, age, max age, last success and error.
function G.health(opts)
  if type(opts) == "string" then opts = { brand = opts } end
  opts = check_opts("health", opts, { brand = true, dataset = true })
  check_filters("health", opts)
  if opts.dataset ~= nil then
    local found = db.query([[
      SELECT bool_or(dataset_key = $1) AS known, sluice.param_suggest($1, array_agg(dataset_key)) AS near,
             string_agg(dataset_key, ', ' ORDER BY dataset_key) AS keys
      FROM (SELECT DISTINCT dataset_key FROM sluice.job_type_datasets) d]], tostring(opts.dataset))
    local r = found and found[1]
    if r and r.known ~= true then
      fail("health: unknown dataset '%s'%s (%s)", tostring(opts.dataset),
        type(r.near) == "string" and (" — did you mean '%s'?"):format(r.near) or "",
        type(r.keys) == "string" and "known: " .. r.keys or "no job type keeps one")
    end
  end
  local rows, err = db.query([[
    SELECT coalesce(brand_name, '(platform)') AS brand, dataset_key AS dataset, state,
           round(age_seconds::numeric, 1) AS age_seconds, max_age_seconds,
           to_char(last_success_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_success,
           records_affected AS records, last_error AS error
    FROM sluice.dataset_health
    WHERE ($1::text IS NULL OR brand_name = $1 OR brand_id::text = $1)
      AND ($2::text IS NULL OR dataset_key = $2)
    ORDER BY brand_name NULLS FIRST, dataset_key]], opts.brand, opts.dataset)
  if not rows then fail("health: %s", err) end
  local list = {}
  for i, r in ipairs(rows) do list[i] = without_nulls(r) end
  return list
end

-- The loaded job types. The host's registry also names the files that fail to
-- load and never loaded ({name, failed = true}): those are no job type, to
-- list, count or complete.
local function registry()
  local ok, reg = pcall(json.decode, host.registry_json())
  if not ok or type(reg) ~= "table" then return {} end
  local loaded = {}
  for _, e in ipairs(ints(reg)) do
    if not e.failed then loaded[#loaded + 1] = e end
  end
  return loaded
end

-- The parameter specs of a registry entry, by name.
local function param_fields(entry)
  local schema = entry and entry.param_schema
  return type(schema) == "table" and schema or {}
end

-- "integer 1..10000 = 500", "array required", "string one of {"a", "b"}"
local function describe_param(spec)
  local s = tostring(spec.type)
  if spec.min ~= nil or spec.max ~= nil then
    s = s .. " " .. (spec.min ~= nil and tostring(spec.min) or "") .. ".." .. (spec.max ~= nil and tostring(spec.max) or "")
  end
  if type(spec.enum) == "table" then s = s .. " one of " .. pretty(spec.enum) end
  if spec.required then s = s .. " required" end
  if spec.default ~= nil and spec.default ~= null then s = s .. " = " .. pretty(spec.default, 1) end
  if spec.description then s = s .. " — " .. spec.description end
  return s
end

-- types() → the job-type registry: { name = { label, emoji, brand, params = {…},
-- datasets = {…}, timeout, max_retries } }
function G.types()
  local out_ = {}
  for _, e in ipairs(registry()) do
    local params = {}
    for name, spec in pairs(param_fields(e)) do params[name] = describe_param(spec) end
    local datasets = {}
    for key in pairs(type(e.datasets) == "table" and e.datasets or {}) do datasets[#datasets + 1] = key end
    table.sort(datasets)
    out_[e.name] = {
      label = e.label, emoji = e.emoji ~= "" and e.emoji or nil, brand = e.brand_rule,
      description = e.description ~= null and e.description or nil,
      params = params, datasets = #datasets > 0 and datasets or nil,
      timeout = e.timeout_seconds, max_retries = e.max_retries,
    }
  end
  return out_
end

-- reload() → the number of job types loaded. Reads every handler file again (a
-- file with problems keeps its previous version; its problems are printed) and
-- syncs the registry into the database.
function G.reload()
  local problems, serr = drv.reload()
  if problems and problems ~= "" then note((problems:gsub("\n$", ""))) end
  if serr then fail("reload: the registry could not be synced: %s", serr) end
  return #registry()
end

-- pp(value [, depth]): prints value, nested tables down to `depth` levels.
function G.pp(v, depth)
  if depth ~= nil and (math.type(depth) ~= "integer" or depth < 0) then
    fail("pp: depth must be a whole number ≥ 0")
  end
  out(pretty(v, depth or DEPTH))
end

local HELP = [[
Helpers (the whole sluice API is here too: sluice.db.query, sluice.sleep, …):
  run(type, params [, {brand=…}])   run a job now; its log streams; returns its result
  queue(type, params [, opts])      queue it; returns the job id (opts: brand, at, after,
                                    priority, dedupe_key, max_retries, name)
  runs{type=…, brand=…, status=…, limit=10}   recent runs
  health{brand=…, dataset=…}        dataset freshness
  types()                           the job types, their parameters and datasets
  reload()                          reload handler files from disk
  pp(value [, depth])               print a value, nested tables down to depth
An expression (or =expr) prints its value; `_` holds the last one. Globals persist.
Tab completes globals, fields (sluice.db.q<Tab>), job types in run("… / queue("…
and parameter names inside their params table. Ctrl-C cancels the running input
(and its job); at the prompt it clears the line. Ctrl-D exits.]]

function G.help()
  out(HELP)
end

for k, v in pairs(G) do env[k] = v end

---------------------------------------------------------------- completion

local function starts(s, prefix)
  return s:sub(1, #prefix) == prefix
end

local function type_names()
  local names = {}
  for _, e in ipairs(registry()) do names[#names + 1] = e.name end
  return names
end

-- The params table of run("type", { … / queue("type", { … when the cursor is at a
-- key position directly inside it: the job type and the text typed in it.
local function params_context(before)
  local found
  for fname, jt, pos in before:gmatch("([%a_][%w_]*)%s*%(%s*[\"']([%w_]+)[\"']%s*,%s*{()") do
    if fname == "run" or fname == "queue" then found = { jt, pos } end
  end
  if not found then return nil end
  local inside = before:sub(found[2])
  -- string literals cannot hold braces that count
  local code = inside:gsub('"[^"]*"', '""'):gsub("'[^']*'", "''")
  local depth = 0
  for c in code:gmatch("[{}]") do
    depth = depth + (c == "{" and 1 or -1)
    if depth < 0 then return nil end -- the params table is closed
  end
  if depth ~= 0 then return nil end -- inside a nested table
  if not (code:match("^%s*[%w_]*$") or code:match(",%s*[%w_]*$")) then return nil end
  return found[1], inside
end

local function safe_index(v, k)
  if type(v) == "string" then return string[k] end
  if type(v) ~= "table" then return nil end
  local ok, r = pcall(function() return v[k] end)
  if ok then return r end
  return nil
end

local function field_names(v, methods_only)
  if type(v) == "string" then v = string end
  local names = {}
  if type(v) ~= "table" then return names end
  pcall(function()
    for k, val in pairs(v) do
      if is_ident(k) and (not methods_only or type(val) == "function") then names[#names + 1] = k end
    end
  end)
  return names
end

-- complete(before, word) → { candidates… }, append: candidates replace `word`
-- (the text before the cursor ends with it); append follows a single match.
function M.complete(before, word)
  local cands, append = {}, ""
  local function offer(list, prefix, render)
    for _, name in ipairs(list) do
      if starts(name, prefix) then cands[#cands + 1] = render and render(name) or name end
    end
  end

  -- a job type: run("ec<Tab> / queue('ec<Tab>
  local fname, quote_char, prefix = before:match("([%a_][%w_]*)%s*%(%s*([\"'])([%w_]*)$")
  if (fname == "run" or fname == "queue") and prefix == word then
    offer(type_names(), word)
    return cands, quote_char
  end

  -- a parameter name: run("reddit_scrape", { max_p<Tab>
  local jt, inside = params_context(before)
  if jt and word:match("^[%w_]*$") then
    local entry
    for _, e in ipairs(registry()) do if e.name == jt then entry = e end end
    local names = {}
    for name in pairs(param_fields(entry)) do
      if not inside:match("[{,%s]" .. name .. "%s*=") and not inside:match("^%s*" .. name .. "%s*=") then
        names[#names + 1] = name
      end
    end
    offer(names, word)
    return cands, "="
  end

  -- a field: sluice.db.q<Tab>, s:up<Tab>; or a global
  local path, sep, last = word:match("^(.-)([%.:])([%w_]*)$")
  if path and path:match("^[%a_][%w_]*[%w_%.]*$") and not path:find("..", 1, true) then
    local v = rawget(env, path:match("^[%a_][%w_]*"))
    for part in path:gmatch("%.([%a_][%w_]*)") do v = safe_index(v, part) end
    local names = field_names(v, sep == ":")
    table.sort(names)
    offer(names, last, function(n) return path .. sep .. n end)
    if #cands == 1 and type(safe_index(v, cands[1]:sub(#path + 2))) == "function" then append = "(" end
    return cands, append
  end
  if word:match("^[%a_][%w_]*$") or word == "" then
    local names = {}
    for k in next, env do if is_ident(k) then names[#names + 1] = k end end
    for k in pairs(KEYWORDS) do names[#names + 1] = k end
    table.sort(names)
    offer(names, word)
    if #cands == 1 and type(rawget(env, cands[1])) == "function" then append = "(" end
  end
  return cands, append
end

return M
