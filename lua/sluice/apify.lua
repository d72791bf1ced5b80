-- apify.lua — the Apify API v2 client handlers use (require("sluice.apify")):
-- start an actor run, wait for it without blocking the event loop, page through
-- its dataset, read its cost; and run_actor(), which does all of that with the
-- run id checkpointed on the job, so a retried job resumes the run it already
-- paid for instead of buying the scrape again.
--
--   local apify = require("sluice.apify")
--   local items, run = apify.run_actor(job, "scrape", "owner~name", input,
--                                      { timeout = 600, memory = 1024 })
--
-- Configuration comes from the environment (sluice.env): APIFY_BASE_URL
-- (default https://api.apify.com), APIFY_TOKEN and APIFY_START_TIMEOUT (seconds
-- to wait for the answer to a start request, default 120). The token travels in
-- the Authorization header only, never in a URL.
--
-- A start request whose answer is lost (a timeout, a dropped connection) may
-- still have created the run. run_actor therefore checkpoints each start before
-- sending it (the actor, the time, a digest of the input); after such a loss,
-- or on a retry that finds that checkpoint without a run id, it lists the
-- actor's recent runs and adopts the one started since then whose INPUT record
-- equals this input — unless it ended FAILED, ABORTED or TIMED-OUT, or another
-- job has checkpointed it as its own — and starts a new run only when there is
-- none.
--
-- The low-level calls (config, start, get_run, wait, items, list_runs, record)
-- return nil, err, permanent on expected failures — `permanent` is true when trying again cannot
-- help (bad token, unknown actor, rejected input). run_actor is the handler-level
-- helper: it raises, with sluice.permanent for the permanent cases.

local retry = require("sluice.retry")
local base_url_problem = require("sluice.base_url")
local plural = require("sluice.plural")

local M = {}

local DEFAULT_BASE = "https://api.apify.com"
local DEFAULT_START_TIMEOUT = 120
local TERMINAL = { SUCCEEDED = true, FAILED = true, ["TIMED-OUT"] = true, ABORTED = true }
M.TERMINAL = TERMINAL

---------------------------------------------------------------- helpers

local function is_str(v) return type(v) == "string" and v ~= "" end

-- "owner/name" → "owner~name" (the form Apify URLs use); opaque ids unchanged.
function M.actor_path(actor_id)
  return (actor_id:gsub("/", "~"))
end

-- Reads the configuration: { base = "https://api.apify.com", token = "…",
-- start_timeout = 120 } or nil, message, true when APIFY_TOKEN is missing or
-- APIFY_START_TIMEOUT is not a positive number.

function M.config()
  local token = sluice.env("APIFY_TOKEN")
  if not token then
    return nil, "APIFY_TOKEN is not set: export your Apify API token (Apify console → Settings → "
      .. "API & Integrations) in the environment of the sluice process", true
  end
  local base = sluice.env("APIFY_BASE_URL") or DEFAULT_BASE
  local bad = base_url_problem("APIFY_BASE_URL", base, DEFAULT_BASE)
  if bad then return nil, bad, true end
  base = base:gsub("/+$", ""):gsub("/v2$", "")
  local start_timeout = DEFAULT_START_TIMEOUT
  local st = sluice.env("APIFY_START_TIMEOUT")
  if st then
    start_timeout = tonumber(st)
    -- at most what sluice.http takes as a timeout (3650 days): "1e400" read as inf
    if not start_timeout or not (start_timeout > 0 and start_timeout <= 3650 * 86400) then
      return nil, ("APIFY_START_TIMEOUT must be a number of seconds greater than 0 and at most "
        .. "315360000 (3650 days), not %q"):format(st), true
    end
  end
  return { base = base, token = token, start_timeout = start_timeout }
end

local function cfg_or_err(opts)
  if opts and opts.config then return opts.config end
  return M.config()
end

-- The message of an Apify error body {"error": {"type", "message"}}.
local function error_text(res)
  local body = res:json()
  local e = type(body) == "table" and body.error
  if type(e) == "table" then
    local t, m = e.type, e.message
    if is_str(t) and is_str(m) then return t .. ": " .. m end
    if is_str(m) then return m end
    if is_str(t) then return t end
  end
  local snippet = (res.body or ""):sub(1, 200):gsub("%s+", " ")
  return snippet ~= "" and snippet or "no error message"
end

-- Transport failures that leave no doubt the request never reached the server
-- (nothing was sent). Any other one — a timeout, a connection that closed
-- before the answer — may have come after the server acted on the request.
local UNSENT = { "connection refused", "cannot connect to ", "cannot resolve host ",
                 "cannot resolve the proxy", "invalid url ", "unsupported protocol" }

function M.unsent(err)
  err = tostring(err)
  for _, prefix in ipairs(UNSENT) do
    if err:sub(1, #prefix) == prefix then return true end
  end
  return false
end

-- Answers to a start request that say it was refused before anything was
-- done (too many requests, the service unavailable): worth sending again.
-- Another 5xx — a gateway's 502 or 504, a 500 — may come after the run was
-- created.
local function start_refused(status) return status == 429 or status == 503 end

-- 429 and 5xx are worth another try; so is a transport failure, except on a
-- POST that starts a run when the request may have arrived (the run may
-- exist: sending it again could buy the scrape twice).
local function retry_policy(method)
  return function(res, err)
    if res == nil then
      return method ~= "POST" or M.unsent(err)
    end
    if method == "POST" then return start_refused(res.status) end
    return res.status == 429 or (res.status >= 500 and res.status <= 599)
  end
end

-- One API call with retries.
-- → decoded body, res | nil, err, permanent, { status = n } or { transport = err }
local function call(cfg, method, path, o)
  o = o or {}
  local res, err = sluice.retry(function()
    return sluice.http.request({
      method = method, url = cfg.base .. path, query = o.query, json = o.json,
      headers = { Authorization = "Bearer " .. cfg.token, Accept = "application/json" },
      timeout = o.timeout or 60,
    })
  end, { attempts = o.attempts or 6, base = 0.5, max = 30, retry_on = retry_policy(method),
         what = ("apify: %s %s"):format(method, path) })
  if not res then
    return nil, ("apify: %s %s failed: %s"):format(method, path, tostring(err)), false,
           { transport = tostring(err) }
  end
  if res.status >= 200 and res.status < 300 then
    local body, jerr = res:json()
    if body == nil then
      return nil, ("apify: %s %s: %s"):format(method, path, jerr), false, { status = res.status }
    end
    return body, res
  end
  local text = error_text(res)
  if res.status == 401 or res.status == 403 then
    return nil, ("apify: the token in APIFY_TOKEN was refused (HTTP %d %s)"):format(res.status, text), true,
           { status = res.status }
  end
  local permanent = res.status == 400 or res.status == 404 or res.status == 405 or res.status == 422
  return nil, ("apify: %s %s: HTTP %d %s"):format(method, path, res.status, text), permanent,
         { status = res.status }
end

---------------------------------------------------------------- the calls

-- start(actor_id, input, opts) → run | nil, err, permanent, unknown
-- POST /v2/acts/{actor}/runs with the input as the body. opts: timeout (the
-- run's timeout in seconds), memory (MB), max_items, build, start_timeout
-- (seconds to wait for the answer; default the configuration's). `unknown` is
-- true when the request may have reached Apify but its answer was lost (a
-- timeout, a dropped connection, a gateway's 5xx): a run may exist. Such a
-- start is not sent again here.
function M.start(actor_id, input, opts)
  opts = opts or {}
  local cfg, cerr, cperm = cfg_or_err(opts)
  if not cfg then return nil, cerr, cperm end
  if not is_str(actor_id) then error("apify.start: actor id must be a non-empty string", 2) end
  if type(input) ~= "table" then error("apify.start: input must be a table", 2) end
  local query = {}
  if opts.timeout then query.timeout = math.floor(opts.timeout) end
  if opts.memory then query.memory = math.floor(opts.memory) end
  if opts.max_items then query.maxItems = math.floor(opts.max_items) end
  if opts.build then query.build = opts.build end
  local body, err, perm, info = call(cfg, "POST", "/v2/acts/" .. sluice.http.urlencode(M.actor_path(actor_id)) .. "/runs",
                                     { query = query, json = input,
                                       timeout = opts.start_timeout or cfg.start_timeout or DEFAULT_START_TIMEOUT })
  if not body then
    local status = info and info.status
    local unknown = (info and info.transport and not M.unsent(info.transport))
      or (status and status >= 500 and not start_refused(status))
    return nil, err, perm, unknown or false
  end
  if type(body.data) ~= "table" or not is_str(body.data.id) then
    return nil, "apify: the answer to starting a run has no run id", false
  end
  return body.data
end

-- get_run(run_id, wait_seconds) → run | nil, err, permanent, gone
-- GET /v2/actor-runs/{id}; with wait_seconds (≤ 60) the server holds the request
-- until the run ends or that time passes. `gone` is true when Apify has no such
-- run (HTTP 404: deleted, or past its data retention).
function M.get_run(run_id, wait_seconds, opts)
  local cfg, cerr, cperm = cfg_or_err(opts)
  if not cfg then return nil, cerr, cperm end
  local q = nil
  if wait_seconds and wait_seconds > 0 then q = { waitForFinish = math.floor(math.min(60, wait_seconds)) } end
  local body, err, perm, info = call(cfg, "GET", "/v2/actor-runs/" .. sluice.http.urlencode(run_id),
                                     { query = q, timeout = (wait_seconds or 0) + 60 })
  if not body then return nil, err, perm, (info and info.status == 404) or false end
  if type(body.data) ~= "table" then return nil, "apify: the run answer has no data", false end
  return body.data
end

-- wait(run_id, opts) → run (in a terminal status, whichever) | nil, err, permanent, gone
-- Long-polls with waitForFinish (opts.poll seconds, default 30); if the server
-- answers early without a terminal status it sleeps (2 s, ×1.5, at most 30 s)
-- before asking again. Gives up after opts.max_wait seconds (default 1 hour).
-- opts.on_status(run) is called whenever the status changes.
function M.wait(run_id, opts)
  opts = opts or {}
  local poll = opts.poll or 30
  local deadline = sluice.now() + (opts.max_wait or 3600)
  local delay, last = 2, nil
  while true do
    local t0 = sluice.now()
    local run, err, perm, gone = M.get_run(run_id, poll, opts)
    if not run then return nil, err, perm, gone end
    if run.status ~= last then
      last = run.status
      if opts.on_status then opts.on_status(run) end
    end
    if TERMINAL[run.status] then return run end
    local now = sluice.now()
    if now >= deadline then
      return nil, ("apify: run %s is still %s after %.0f s"):format(run_id, tostring(run.status),
                                                                   opts.max_wait or 3600), false
    end
    if now - t0 < poll / 2 then
      sluice.sleep(math.min(delay, math.max(0, deadline - now)))
      delay = math.min(delay * 1.5, 30)
    end
  end
end

-- items(dataset_id, opts) → items | nil, err, permanent, gone
-- Pages GET /v2/datasets/{id}/items with offset and limit (opts.page_size,
-- default 1000) until a short page or the reported total. `gone`: HTTP 404.
function M.items(dataset_id, opts)
  opts = opts or {}
  local cfg, cerr, cperm = cfg_or_err(opts)
  if not cfg then return nil, cerr, cperm end
  if not is_str(dataset_id) then return nil, "apify: the run has no dataset id", true end
  local size = opts.page_size or 1000
  local out, offset = {}, 0
  while true do
    local page, res_or_err, perm, info = call(cfg, "GET", "/v2/datasets/" .. sluice.http.urlencode(dataset_id) .. "/items",
                                              { query = { offset = offset, limit = size, format = "json" }, timeout = 120 })
    if not page then return nil, res_or_err, perm, (info and info.status == 404) or false end
    if type(page) ~= "table" then return nil, "apify: dataset items are not a JSON array", false end
    local n = #page
    for i = 1, n do out[#out + 1] = page[i] end
    offset = offset + n
    local total = tonumber(res_or_err:header("X-Apify-Pagination-Total"))
    if n < size or n == 0 or (total and offset >= total) then break end
  end
  return out
end

-- list_runs(actor_id, opts) → page | nil, err, permanent
-- GET /v2/acts/{actor}/runs, newest first (desc=1). opts: limit (default 25),
-- offset. page = { items = {run…}, total = n }; each item carries id, status,
-- startedAt, defaultKeyValueStoreId, defaultDatasetId (a list item, not a full run).
function M.list_runs(actor_id, opts)
  opts = opts or {}
  local cfg, cerr, cperm = cfg_or_err(opts)
  if not cfg then return nil, cerr, cperm end
  local body, err, perm = call(cfg, "GET", "/v2/acts/" .. sluice.http.urlencode(M.actor_path(actor_id)) .. "/runs",
                               { query = { desc = 1, limit = math.floor(opts.limit or 25),
                                           offset = math.floor(opts.offset or 0) },
                                 attempts = opts.attempts, timeout = 60 })
  if not body then return nil, err, perm end
  local data = type(body.data) == "table" and body.data
  if not data or type(data.items) ~= "table" then
    return nil, "apify: the list of runs has no data.items", false
  end
  return { items = data.items, total = tonumber(data.total) }
end

-- record(store_id, key, opts) → value | nil, err, permanent, missing
-- GET /v2/key-value-stores/{id}/records/{key}: the record's JSON value, decoded.
-- `missing` is true when the store has no such record (HTTP 404).
function M.record(store_id, key, opts)
  opts = opts or {}
  local cfg, cerr, cperm = cfg_or_err(opts)
  if not cfg then return nil, cerr, cperm end
  local body, err, perm, info = call(cfg, "GET", "/v2/key-value-stores/" .. sluice.http.urlencode(store_id)
                                       .. "/records/" .. sluice.http.urlencode(key),
                                     { attempts = opts.attempts, timeout = 60 })
  if body == nil then return nil, err, perm, (info and info.status == 404) or false end
  return body
end

---------------------------------------------------------------- an earlier start

-- canonical_json(v) → text: JSON with object keys sorted, so two tables holding
-- the same value give the same text whatever order their keys were set in (and
-- an input sent as JSON and decoded again gives the text of the input itself).
-- Numbers as sluice.json.decode reads them back: a whole float in the 64-bit
-- range as an integer, any other float with 17 significant digits. A table
-- whose keys are exactly 1..n is an array; an empty table is {}.
local function canon(v, out)
  local t = type(v)
  if t == "table" then
    local n, keys = 0, {}
    for k in pairs(v) do
      n = n + 1
      keys[n] = k
    end
    local array = n > 0
    for i = 1, n do
      if v[i] == nil then array = false break end
    end
    if array then
      out[#out + 1] = "["
      for i = 1, n do
        if i > 1 then out[#out + 1] = "," end
        canon(v[i], out)
      end
      out[#out + 1] = "]"
      return
    end
    local named = {}
    for i = 1, n do named[i] = { tostring(keys[i]), keys[i] } end
    table.sort(named, function(a, b) return a[1] < b[1] end)
    out[#out + 1] = "{"
    for i, kv in ipairs(named) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = sluice.json.encode(kv[1])
      out[#out + 1] = ":"
      canon(v[kv[2]], out)
    end
    out[#out + 1] = "}"
  elseif t == "number" then
    if math.type(v) == "float" and v == math.floor(v) and v >= -2^63 and v < 2^63 then
      out[#out + 1] = ("%d"):format(math.tointeger(v))
    elseif math.type(v) == "float" then
      out[#out + 1] = ("%.17g"):format(v)
    else
      out[#out + 1] = ("%d"):format(v)
    end
  elseif t == "string" or t == "boolean" then
    out[#out + 1] = sluice.json.encode(v)
  elseif v == nil or v == sluice.null then
    out[#out + 1] = "null"
  else
    error("apify.canonical_json: cannot encode a " .. t, 2)
  end
end

function M.canonical_json(v)
  local out = {}
  canon(v, out)
  return table.concat(out)
end

-- input_digest(input) → the sha256 of the input's canonical JSON.
function M.input_digest(input)
  return sluice.sha256(M.canonical_json(input))
end

-- The sorted keys of the first object among a dataset's items, at most 12 of
-- them ("asin, author, …"), for a message about output that cannot be read.
function M.item_keys(items)
  for _, it in ipairs(items or {}) do
    if type(it) == "table" then
      local keys = {}
      for k in pairs(it) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      if #keys > 12 then keys = { table.concat(keys, ", ", 1, 12) .. ", …" } end
      return #keys > 0 and table.concat(keys, ", ") or "(none)"
    end
  end
  return "(no item is an object)"
end

-- parse_time("2025-12-01T08:30:00.123Z") → seconds since the epoch, or nil.
-- UTC only (a "Z" or +00:00 suffix, or none), as Apify writes its times.
function M.parse_time(text)
  if type(text) ~= "string" then return nil end
  local y, mo, d, h, mi, sec, rest = text:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d%.?%d*)(.*)$")
  if not y then return nil end
  if rest ~= "" and rest ~= "Z" and rest ~= "+00:00" then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo < 1 or mo > 12 or d < 1 or d > 31 then return nil end
  return retry.days_from_civil(y, mo, d) * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
end

-- candidates(items, since) → the runs of a run list (newest first) that
-- started at or after `since` (seconds since the epoch), in list order, and
-- whether the list may go on past them (every item was recent enough). Items
-- without an id, a readable startedAt or a key-value store are left out.
function M.candidates(items, since)
  local out, older = {}, false
  for _, r in ipairs(items or {}) do
    local t = type(r) == "table" and M.parse_time(r.startedAt)
    if t and t < since then
      older = true
    elseif t and is_str(r.id) and is_str(r.defaultKeyValueStoreId) then
      out[#out + 1] = r
    end
  end
  return out, not older
end

local LOOKUP_PAGE, LOOKUP_MAX = 25, 100

-- Statuses of a run that ended without results: such a run is never adopted
-- (if it was the lost start's own, starting a new one is what a retry does).
local FAILED_END = { FAILED = true, ["TIMED-OUT"] = true, ABORTED = true }

-- find_started(actor_id, attempt, opts) → run | false | nil, err, permanent
-- The run a start request may have created although its answer was lost:
-- attempt = { at = seconds since the epoch when the request was sent, digest =
-- input_digest(input) }. Lists the actor's runs newest first (pages of 25, at
-- most 100 runs) that started at or after attempt.at - opts.skew (default 60 s
-- of clock skew) and did not end FAILED, ABORTED or TIMED-OUT, and reads each
-- one's INPUT record; the first whose input has the same digest, and that
-- opts.owned(run) (when given) does not name an owner for, is the answer.
-- opts.owned returns the owner (a job id), false, or nil, err; opts.log, when
-- given, is told of each run passed over for its owner. false when no run
-- qualifies; nil, err when the lookup itself failed (then nothing can be
-- concluded).
function M.find_started(actor_id, attempt, opts)
  opts = opts or {}
  local since = attempt.at - (opts.skew or 60)
  local o = { config = opts.config, attempts = opts.attempts or 3 }
  local offset = 0
  while offset < LOOKUP_MAX do
    o.limit, o.offset = LOOKUP_PAGE, offset
    local page, err, perm = M.list_runs(actor_id, o)
    if not page then return nil, err, perm end
    local cands, more = M.candidates(page.items, since)
    for _, r in ipairs(cands) do
      if not FAILED_END[r.status] then
        local value, rerr, rperm, missing = M.record(r.defaultKeyValueStoreId, "INPUT", o)
        if value ~= nil then
          local ok, digest = pcall(M.input_digest, value)
          if ok and digest == attempt.digest then
            local owner, oerr = false, nil
            if opts.owned then owner, oerr = opts.owned(r) end
            if owner == nil then return nil, oerr, false end
            if not owner then return r end
            if opts.log then
              opts.log("apify: run %s has this input but belongs to job %s: not adopted", r.id, tostring(owner))
            end
          end
        elseif not missing then
          return nil, rerr, rperm
        end
      end
    end
    if not more or #page.items < LOOKUP_PAGE then break end
    offset = offset + #page.items
  end
  return false
end

-- owner(run_id, job_id) → the id of another job whose checkpoint holds the
-- Apify run run_id (as run_actor writes it: { <key> = { run_id = … } }), false
-- when none does, or nil, err. job_id (this job, nil for none) is not counted.
-- Only the lost-start lookup asks this, so the scan is not indexed.
function M.owner(run_id, job_id)
  local found, err = sluice.db.query([[
    SELECT j.id::text AS job_id
    FROM sluice.scheduled_jobs j CROSS JOIN LATERAL jsonb_each(j.checkpoint) AS c(key, value)
    WHERE j.id IS DISTINCT FROM $2::uuid AND c.value @> jsonb_build_object('run_id', $1::text)
    LIMIT 1]], run_id, job_id or sluice.null)
  if not found then
    return nil, ("apify: looking for a job that owns run %s failed: %s"):format(run_id, tostring(err))
  end
  return found[1] and found[1].job_id or false
end

---------------------------------------------------------------- run_actor

local function raise(msg, permanent)
  if permanent then error(sluice.permanent(msg), 0) end
  error(msg, 0)
end

-- A run an earlier attempt started that Apify no longer has (deleted, or its
-- data past retention, as after a failed job was run again days later): its
-- checkpoint is dropped and a new run started, once (the new one is no resume).
local function start_again(log, job, key, actor, run_id, err, ...)
  log("apify: %s run %s, started by an earlier attempt, is gone (%s): starting a new one", actor, run_id, err)
  job.checkpoint(key, { actor = actor })
  return M.run_actor(job, key, ...)
end

-- run_actor(job, key, actor_id, input, opts) → items, run
-- Starts the actor (or, when job.checkpoint(key) holds a run an earlier attempt
-- started, resumes it), waits for it, reads its whole dataset. The run id is
-- checkpointed under `key` before the first poll. A run that ended FAILED or
-- TIMED-OUT raises a retryable error and is marked so that the retry starts a
-- new run; ABORTED (stopped by someone on purpose) fails the job for good. A
-- resumed run that Apify no longer has (HTTP 404, see start_again) is replaced
-- by a new one in the same attempt.
--
-- Before a start, the checkpoint records it as pending ({ actor, start = { at,
-- digest } }). When the start's answer is lost (start's `unknown`), the runs
-- started since then are searched for one with this input that has not failed
-- and that no other job has checkpointed (find_started, owner), and it is
-- adopted if found. If none is, the attempt fails retryably and the retry,
-- which finds the pending start, searches again before starting a run. A
-- search that fails fails the attempt retryably as well: a second run is
-- started only once a search has completed and found nothing.
--
-- opts: timeout, memory, max_items, build, start_timeout (as start), poll,
-- max_wait (as wait; max_wait defaults to the run's timeout + 5 min),
-- page_size, quiet, skew (as find_started).
function M.run_actor(job, key, actor_id, input, opts)
  opts = opts or {}
  if type(job) ~= "table" or type(job.checkpoint) ~= "function" then
    error("apify.run_actor: the first argument must be the job", 2)
  end
  if not is_str(key) then error("apify.run_actor: key must be a non-empty string", 2) end
  local cfg, cerr = M.config()
  if not cfg then raise(cerr, true) end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.config = cfg
  if not o.max_wait then o.max_wait = (o.timeout or 3600) + 300 end
  local log = opts.quiet and function() end or job.log
  -- a run another job has checkpointed is that job's, whatever its input
  o.owned = function(r) return M.owner(r.id, job.id) end
  o.log = log
  local actor = M.actor_path(actor_id)

  local cp = job.checkpoint(key)
  local run_id, dataset_id, resumed
  if type(cp) == "table" and is_str(cp.run_id) and not cp.failed then
    run_id, dataset_id, resumed = cp.run_id, cp.dataset_id, true
    log("apify: resuming %s run %s started by an earlier attempt (not buying it again)", actor, run_id)
  else
    local digest = M.input_digest(input)
    local run, adopted, lost
    -- an earlier start that was sent but never answered: did it create a run?
    local pending = type(cp) == "table" and not is_str(cp.run_id) and type(cp.start) == "table" and cp.start
    if pending and cp.actor == actor and pending.digest == digest and tonumber(pending.at) then
      local found, ferr, fperm = M.find_started(actor, { at = tonumber(pending.at), digest = digest }, o)
      if found == nil then
        raise(("%s (looking for the run of an earlier start request whose answer was lost%s)")
              :format(ferr, fperm and "" or "; the retry looks again before starting one"), fperm)
      end
      if found then run, adopted, lost = found, true, pending.lost end
    elseif pending then
      log("apify: an earlier start request of %s got no answer, for another actor or input: not looked for", actor)
    end
    if not run then
      local attempt = { at = sluice.now(), digest = digest }
      job.checkpoint(key, { actor = actor, start = attempt })
      local err, perm, unknown
      run, err, perm, unknown = M.start(actor, input, o)
      if not run and unknown then
        attempt.lost = err
        job.checkpoint(key, { actor = actor, start = attempt })
        log("%s; looking for the run it may have created", err) -- err names apify already
        local found, ferr, fperm = M.find_started(actor, attempt, o)
        if found == nil then
          raise(("%s; looking for the run it may have created failed too: %s%s"):format(
                err, ferr, fperm and "" or " (the retry looks again before starting one)"), fperm)
        elseif not found then
          raise(("%s (no run with this input has appeared; the retry looks again before starting one)")
                :format(err), false)
        end
        run, adopted, lost = found, true, err
      elseif not run then
        job.checkpoint(key, { actor = actor })
        raise(err, perm)
      end
    end
    run_id, dataset_id = run.id, run.defaultDatasetId
    job.checkpoint(key, { run_id = run_id, dataset_id = dataset_id, actor = actor })
    if adopted then
      log("apify: resuming Apify run %s started by an earlier attempt whose start request timed out "
          .. "or lost its answer (%s run, same input; not buying it again)%s", run_id, actor,
          is_str(lost) and (": " .. lost) or "")
    else
      log("apify: started %s run %s", actor, run_id)
    end
  end

  o.on_status = function(r)
    if not TERMINAL[r.status] then log("apify: run %s is %s", run_id, tostring(r.status)) end
  end
  local run, err, perm, gone = M.wait(run_id, o)
  if not run and gone and resumed then
    return start_again(log, job, key, actor, run_id, err, actor_id, input, opts)
  end
  if not run then raise(err, perm) end
  local usd = tonumber(run.usageTotalUsd)
  if run.status ~= "SUCCEEDED" then
    local why = is_str(run.statusMessage) and (": " .. run.statusMessage) or ""
    job.checkpoint(key, { run_id = run_id, dataset_id = dataset_id, actor = actor,
                          status = run.status, failed = true })
    if run.status == "ABORTED" then
      raise(("apify: %s run %s was ABORTED%s (not retried: someone stopped it)"):format(actor, run_id, why), true)
    end
    raise(("apify: %s run %s ended %s%s"):format(actor, run_id, run.status, why), false)
  end
  local items, ierr, iperm, igone = M.items(run.defaultDatasetId or dataset_id, o)
  if not items and igone and resumed then
    return start_again(log, job, key, actor, run_id, ierr, actor_id, input, opts)
  end
  if not items then raise(ierr, iperm) end
  job.checkpoint(key, { run_id = run_id, dataset_id = run.defaultDatasetId or dataset_id, actor = actor,
                        status = run.status, items = #items, usd = usd })
  log("apify: run %s SUCCEEDED with %s%s", run_id, plural(#items, "item"),
      usd and (" (Apify reports $%.4f)"):format(usd) or "")
  return items, run
end

return M
