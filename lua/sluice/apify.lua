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
-- (default https://api.apify.com) and APIFY_TOKEN. The token travels in the
-- Authorization header only, never in a URL.
--
-- The low-level calls (config, start, get_run, wait, items) return nil, err,
-- permanent on expected failures — `permanent` is true when trying again cannot
-- help (bad token, unknown actor, rejected input). run_actor is the handler-level
-- helper: it raises, with sluice.permanent for the permanent cases.

local M = {}

local DEFAULT_BASE = "https://api.apify.com"
local TERMINAL = { SUCCEEDED = true, FAILED = true, ["TIMED-OUT"] = true, ABORTED = true }
M.TERMINAL = TERMINAL

---------------------------------------------------------------- helpers

local function is_str(v) return type(v) == "string" and v ~= "" end

-- "owner/name" → "owner~name" (the form Apify URLs use); opaque ids unchanged.
function M.actor_path(actor_id)
  return (actor_id:gsub("/", "~"))
end

-- Reads the configuration: { base = "https://api.apify.com", token = "…" } or
-- nil, message, true when APIFY_TOKEN is missing.
function M.config()
  local token = sluice.env("APIFY_TOKEN")
  if not token then
    return nil, "APIFY_TOKEN is not set: export your Apify API token (Apify console → Settings → "
      .. "API & Integrations) in the environment of the sluice process", true
  end
  local base = sluice.env("APIFY_BASE_URL") or DEFAULT_BASE
  base = base:gsub("/+$", ""):gsub("/v2$", "")
  return { base = base, token = token }
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

-- 429 and 5xx are worth another try; so is a transport failure, except a
-- timeout on a POST that starts a run (the run may exist: starting another
-- could buy the scrape twice).
local function retry_policy(method)
  return function(res, err)
    if res == nil then
      return not (method == "POST" and tostring(err):find("timed out", 1, true))
    end
    return res.status == 429 or (res.status >= 500 and res.status <= 599)
  end
end

-- One API call with retries. → decoded body, res | nil, err, permanent
local function call(cfg, method, path, o)
  o = o or {}
  local res, err = sluice.retry(function()
    return sluice.http.request({
      method = method, url = cfg.base .. path, query = o.query, json = o.json,
      headers = { Authorization = "Bearer " .. cfg.token, Accept = "application/json" },
      timeout = o.timeout or 60,
    })
  end, { attempts = o.attempts or 6, base = 0.5, max = 30, retry_on = retry_policy(method) })
  if not res then
    return nil, ("apify: %s %s failed: %s"):format(method, path, tostring(err)), false
  end
  if res.status >= 200 and res.status < 300 then
    local body, jerr = res:json()
    if body == nil then return nil, ("apify: %s %s: %s"):format(method, path, jerr), false end
    return body, res
  end
  local text = error_text(res)
  if res.status == 401 or res.status == 403 then
    return nil, ("apify: the token in APIFY_TOKEN was refused (HTTP %d %s)"):format(res.status, text), true
  end
  local permanent = res.status == 400 or res.status == 404 or res.status == 405 or res.status == 422
  return nil, ("apify: %s %s: HTTP %d %s"):format(method, path, res.status, text), permanent
end

---------------------------------------------------------------- the calls

-- start(actor_id, input, opts) → run | nil, err, permanent
-- POST /v2/acts/{actor}/runs with the input as the body. opts: timeout (the
-- run's timeout in seconds), memory (MB), max_items, build.
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
  local body, err, perm = call(cfg, "POST", "/v2/acts/" .. sluice.http.urlencode(M.actor_path(actor_id)) .. "/runs",
                               { query = query, json = input, timeout = 120 })
  if not body then return nil, err, perm end
  if type(body.data) ~= "table" or not is_str(body.data.id) then
    return nil, "apify: the answer to starting a run has no run id", false
  end
  return body.data
end

-- get_run(run_id, wait_seconds) → run | nil, err, permanent
-- GET /v2/actor-runs/{id}; with wait_seconds (≤ 60) the server holds the request
-- until the run ends or that time passes.
function M.get_run(run_id, wait_seconds, opts)
  local cfg, cerr, cperm = cfg_or_err(opts)
  if not cfg then return nil, cerr, cperm end
  local q = nil
  if wait_seconds and wait_seconds > 0 then q = { waitForFinish = math.floor(math.min(60, wait_seconds)) } end
  local body, err, perm = call(cfg, "GET", "/v2/actor-runs/" .. sluice.http.urlencode(run_id),
                               { query = q, timeout = (wait_seconds or 0) + 60 })
  if not body then return nil, err, perm end
  if type(body.data) ~= "table" then return nil, "apify: the run answer has no data", false end
  return body.data
end

-- wait(run_id, opts) → run (in a terminal status, whichever) | nil, err, permanent
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
    local run, err, perm = M.get_run(run_id, poll, opts)
    if not run then return nil, err, perm end
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

-- items(dataset_id, opts) → items | nil, err, permanent
-- Pages GET /v2/datasets/{id}/items with offset and limit (opts.page_size,
-- default 1000) until a short page or the reported total.
function M.items(dataset_id, opts)
  opts = opts or {}
  local cfg, cerr, cperm = cfg_or_err(opts)
  if not cfg then return nil, cerr, cperm end
  if not is_str(dataset_id) then return nil, "apify: the run has no dataset id", true end
  local size = opts.page_size or 1000
  local out, offset = {}, 0
  while true do
    local page, res_or_err, perm = call(cfg, "GET", "/v2/datasets/" .. sluice.http.urlencode(dataset_id) .. "/items",
                                        { query = { offset = offset, limit = size, format = "json" }, timeout = 120 })
    if not page then return nil, res_or_err, perm end
    if type(page) ~= "table" then return nil, "apify: dataset items are not a JSON array", false end
    local n = #page
    for i = 1, n do out[#out + 1] = page[i] end
    offset = offset + n
    local total = tonumber(res_or_err:header("X-Apify-Pagination-Total"))
    if n < size or n == 0 or (total and offset >= total) then break end
  end
  return out
end

---------------------------------------------------------------- run_actor

local function raise(msg, permanent)
  if permanent then error(sluice.permanent(msg), 0) end
  error(msg, 0)
end

-- run_actor(job, key, actor_id, input, opts) → items, run
-- Starts the actor (or, when job.checkpoint(key) holds a run an earlier attempt
-- started, resumes it), waits for it, reads its whole dataset. The run id is
-- checkpointed under `key` before the first poll. A run that ended FAILED or
-- TIMED-OUT raises a retryable error and is marked so that the retry starts a
-- new run; ABORTED (stopped by someone on purpose) fails the job for good.
-- opts: timeout, memory, max_items, build (as start), poll, max_wait (as wait;
-- max_wait defaults to the run's timeout + 5 min), page_size, quiet.
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
  local actor = M.actor_path(actor_id)

  local cp = job.checkpoint(key)
  local run_id, dataset_id
  if type(cp) == "table" and is_str(cp.run_id) and not cp.failed then
    run_id, dataset_id = cp.run_id, cp.dataset_id
    log("apify: resuming %s run %s started by an earlier attempt (not buying it again)", actor, run_id)
  else
    local run, err, perm = M.start(actor, input, o)
    if not run then raise(err, perm) end
    run_id, dataset_id = run.id, run.defaultDatasetId
    job.checkpoint(key, { run_id = run_id, dataset_id = dataset_id, actor = actor })
    log("apify: started %s run %s", actor, run_id)
  end

  o.on_status = function(r)
    if not TERMINAL[r.status] then log("apify: run %s is %s", run_id, tostring(r.status)) end
  end
  local run, err, perm = M.wait(run_id, o)
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
  local items, ierr, iperm = M.items(run.defaultDatasetId or dataset_id, o)
  if not items then raise(ierr, iperm) end
  job.checkpoint(key, { run_id = run_id, dataset_id = run.defaultDatasetId or dataset_id, actor = actor,
                        status = run.status, items = #items, usd = usd })
  log("apify: run %s SUCCEEDED with %d items%s", run_id, #items,
      usd and (" (Apify reports $%.4f)"):format(usd) or "")
  return items, run
end

return M
