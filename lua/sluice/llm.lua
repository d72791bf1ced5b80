-- llm.lua — the client for an OpenAI-compatible chat-completions endpoint
-- (require("sluice.llm")): one call, JSON replies parsed and validated, batches,
-- token usage and a cost estimate.
--
--   local llm = require("sluice.llm")
--   local value, info = llm.chat_json({
--     { role = "system", content = "… Reply with JSON …" },
--     { role = "user", content = "…" },
--   }, { validate = function(v) … return v | nil, "why" end })
--   -- value: the decoded (and validated) JSON; info.usage, info.attempts
--
-- Configuration from the environment (sluice.env): LLM_BASE_URL (default
-- https://api.openai.com/v1), LLM_API_KEY (required), LLM_MODEL (default
-- gpt-4o-mini), LLM_CONCURRENCY (requests in flight per process for the
-- endpoint's host unless a limit for it is configured; default 4),
-- LLM_PRICE_INPUT_PER_1M / LLM_PRICE_OUTPUT_PER_1M (USD per million tokens for
-- cost estimates; default 0.15 / 0.60).
--
-- Failures come back as nil, message, kind. kind is one of
--   "config"    a variable is missing            (permanent)
--   "auth"      401/403: the key was refused     (permanent)
--   "quota"     429 insufficient_quota           (permanent)
--   "request"   another 4xx: the request is wrong (permanent)
--   "http"      429/5xx still failing after the retries
--   "transport" no answer (connection, timeout)
--   "parse"     the model's reply was not the JSON asked for, every attempt
-- M.permanent(kind) tells which kinds retrying the job cannot fix.

local base_url_problem = require("sluice.base_url")
local plural = require("sluice.plural")

local M = {}

local DEFAULT_BASE = "https://api.openai.com/v1"
local DEFAULT_MODEL = "gpt-4o-mini"
local PERMANENT = { config = true, auth = true, quota = true, request = true }

function M.permanent(kind) return PERMANENT[kind] == true end

local function is_str(v) return type(v) == "string" and v ~= "" end

-- { base, key, model, concurrency, price_in, price_out } | nil, message, "config"
function M.config()
  local key = sluice.env("LLM_API_KEY")
  if not key then
    return nil, "LLM_API_KEY is not set: export the API key of your OpenAI-compatible endpoint "
      .. "(and LLM_BASE_URL if it is not api.openai.com) in the environment of the sluice process", "config"
  end
  local base = (sluice.env("LLM_BASE_URL") or DEFAULT_BASE):gsub("/+$", "")
  local bad = base_url_problem("LLM_BASE_URL", base, DEFAULT_BASE)
  if bad then return nil, bad, "config" end
  -- A value that is set but not usable is refused, naming the variable: "abc"
  -- or "2.5" used to be 4 in silence, "0" 1, a negative price a negative cost.
  local conc, cs = 4, sluice.env("LLM_CONCURRENCY")
  if cs then
    conc = math.tointeger(tonumber(cs) or 0)
    if not conc or conc < 1 or conc > 100000 then
      return nil, ("LLM_CONCURRENCY must be a whole number from 1 to 100000, not %q"):format(cs), "config"
    end
  end
  local prices = {}
  for i, p in ipairs({ { "LLM_PRICE_INPUT_PER_1M", 0.15 }, { "LLM_PRICE_OUTPUT_PER_1M", 0.60 } }) do
    local v = sluice.env(p[1])
    local n = v and tonumber(v)
    if v and not (n and n >= 0 and n < math.huge) then
      return nil, ("%s must be a finite number of USD, at least 0, not %q"):format(p[1], v), "config"
    end
    prices[i] = n or p[2]
  end
  return {
    base = base, key = key, model = sluice.env("LLM_MODEL") or DEFAULT_MODEL, concurrency = conc,
    price_in = prices[1], price_out = prices[2],
  }
end

-- The endpoint's host (with :port when the URL has one): the per-host limiter's name.
local function host_of(url)
  local hostport = url:match("^%a[%w+.-]*://([^/?#]+)") or ""
  return (hostport:gsub("^.*@", "")):lower()
end

-- Declares a concurrency limit for the endpoint's host, unless one exists
-- (configured by the operator, or declared earlier).
local declared = {}
local function ensure_limit(cfg)
  local host = host_of(cfg.base)
  if host == "" or declared[host] then return end
  declared[host] = true
  local bare = host:gsub(":%d+$", "")
  if sluice.http.limit(host) or (bare ~= host and sluice.http.limit(bare)) then return end
  sluice.http.limit(host, { concurrency = cfg.concurrency })
end

---------------------------------------------------------------- JSON replies

-- Bounds of parse_json's search after the whole text failed to decode: at most
-- MAX_STARTS { or [ start positions are tried, a value nested deeper than the
-- decoder's 1000 levels is given up on, and all the tries together look at no
-- more brackets and quotes than STEPS_BASE plus twice the text's length, so a
-- reply of a million brackets costs a few passes over it, not one per bracket.
local MAX_STARTS = 32
local MAX_DEPTH = 1000
local STEPS_BASE = 10000

local CLOSER = { [123] = 125, [91] = 93 }   -- { → }, [ → ]

-- The index of the } or ] that closes the { or [ at s[i], skipping JSON strings
-- (with their escapes); nil when it is not closed, closed by the wrong kind,
-- nested too deep, or budget.steps ran out.
local function balanced_end(s, i, budget)
  local stack, n = { CLOSER[s:byte(i)] }, 1
  local j = i + 1
  while true do
    j = s:find('[%[%]{}"]', j)
    if not j then return nil end
    budget.steps = budget.steps - 1
    if budget.steps < 0 then return nil end
    local c = s:byte(j)
    if c == 34 then                        -- a string: up to its unescaped "
      repeat
        j = s:find('["\\]', j + 1)
        if not j then return nil end
        budget.steps = budget.steps - 1
        local escaped = s:byte(j) == 92
        if escaped then j = j + 1 end
      until not escaped
    elseif CLOSER[c] then
      n = n + 1
      if n > MAX_DEPTH then return nil end
      stack[n] = CLOSER[c]
    else
      if stack[n] ~= c then return nil end
      stack[n] = nil
      n = n - 1
      if n == 0 then return j end
    end
    j = j + 1
  end
end

-- parse_json(text) → value | nil, message
-- Accepts the JSON alone, inside ``` fences (```json … ```), or with a little
-- prose before and after it: each { or [ in turn is taken as the start of a
-- value, cut at its balanced closer (strings skipped), and the first such piece
-- that decodes is the answer (within the bounds above).
function M.parse_json(text)
  if type(text) ~= "string" then return nil, "the reply has no text content" end
  local s = text:match("^%s*(.-)%s*$")
  local fenced = s:match("^```[%w_-]*%s*\n(.-)\n?%s*```$") or s:match("```[%w_-]*%s*\n(.-)\n?%s*```")
  if fenced then s = fenced:match("^%s*(.-)%s*$") end
  local ok, v = pcall(sluice.json.decode, s)
  if ok then return v end
  local pos, tries, budget = 1, 0, { steps = STEPS_BASE + 2 * #s }
  while tries < MAX_STARTS and budget.steps > 0 do
    local first = s:find("[%[{]", pos)
    if not first then break end
    tries = tries + 1
    local last = balanced_end(s, first, budget)
    if last then
      local ok2, v2 = pcall(sluice.json.decode, s:sub(first, last))
      if ok2 then return v2 end
    end
    pos = first + 1
  end
  local preview = s:sub(1, 80):gsub("%s+", " ")
  return nil, ("the reply is not valid JSON (%q%s)"):format(preview, #s > 80 and "…" or "")
end

---------------------------------------------------------------- one call

local function error_info(res)
  local body = res:json()
  local e = type(body) == "table" and body.error
  if type(e) == "table" then
    return is_str(e.message) and e.message or "no message", is_str(e.code) and e.code or
      (is_str(e.type) and e.type or nil)
  end
  return (res.body or ""):sub(1, 200), nil
end

-- One request to the endpoint, with its key: sluice.http.request's answer.
local function request(cfg, method, path, o)
  return sluice.http.request({
    method = method, url = cfg.base .. path, json = o.json,
    headers = { Authorization = "Bearer " .. cfg.key }, timeout = o.timeout,
  })
end

-- An answer other than 200 as a failure: message, kind ("auth", "quota",
-- "request" or "http"), e.g. "llm: HTTP 401 invalid_api_key: … (check LLM_API_KEY)".
local function http_error(res)
  local msg, code = error_info(res)
  local kind = "http"
  if res.status == 401 or res.status == 403 then kind = "auth"
  elseif res.status == 429 and code == "insufficient_quota" then kind = "quota"
  elseif res.status >= 400 and res.status < 500 and res.status ~= 429 and res.status ~= 408 then kind = "request" end
  return ("llm: HTTP %d%s: %s%s"):format(res.status, code and (" " .. code) or "", msg,
                                         kind == "auth" and " (check LLM_API_KEY)" or ""), kind
end

-- 429 (except insufficient_quota) and 5xx are retried, honouring Retry-After.
local function retry_on(res, err)
  if res == nil then return err ~= nil end
  if res.status == 429 then
    return not tostring(res.body or ""):find("insufficient_quota", 1, true)
  end
  return res.status >= 500 and res.status <= 599
end

-- chat(messages, opts) → { content, usage, finish_reason, model } | nil, message, kind[, paid]
-- paid = { usage } when the endpoint answered 200 but without text content (kind
-- "parse"): a reply received, and paid for, that says nothing.
-- opts: model, temperature (default 0), max_tokens, json (true: response_format
-- json_object), schema ({name, schema}: response_format json_schema, strict),
-- timeout (default 120 s), attempts (HTTP attempts, default 6), config.
function M.chat(messages, opts)
  opts = opts or {}
  if type(messages) ~= "table" or #messages == 0 then
    error("llm.chat: messages must be a non-empty list of {role, content}", 2)
  end
  local cfg, cerr, ckind = opts.config, nil, nil
  if not cfg then cfg, cerr, ckind = M.config() end
  if not cfg then return nil, cerr, ckind end
  ensure_limit(cfg)
  local req = {
    model = opts.model or cfg.model, messages = messages,
    temperature = opts.temperature or 0,
  }
  if opts.max_tokens then req.max_tokens = opts.max_tokens end
  if opts.schema then
    req.response_format = { type = "json_schema", json_schema = {
      name = opts.schema.name or "reply", schema = opts.schema.schema, strict = true } }
  elseif opts.json then
    req.response_format = { type = "json_object" }
  end
  local res, err = sluice.retry(function()
    return request(cfg, "POST", "/chat/completions", { json = req, timeout = opts.timeout or 120 })
  end, { attempts = opts.attempts or 6, base = 1, max = 30, retry_on = retry_on,
         what = "llm: POST " .. cfg.base:gsub("://[^/@]*@", "://") .. "/chat/completions" })
  if not res then return nil, "llm: no answer from " .. host_of(cfg.base) .. ": " .. tostring(err), "transport" end
  if res.status ~= 200 then
    local msg, kind = http_error(res)
    return nil, msg, kind
  end
  local body, jerr = res:json()
  if type(body) ~= "table" then return nil, "llm: the answer is not JSON: " .. tostring(jerr), "http" end
  local usage = type(body.usage) == "table" and body.usage or {}
  usage = {
    prompt_tokens = tonumber(usage.prompt_tokens) or 0,
    completion_tokens = tonumber(usage.completion_tokens) or 0,
  }
  local choice = type(body.choices) == "table" and body.choices[1]
  local message = type(choice) == "table" and choice.message
  local content = type(message) == "table" and message.content
  -- A 200 without text was still a reply, and paid for: its usage comes back
  -- as a fourth value, so that chat_json counts it and asks again.
  if type(content) ~= "string" then
    return nil, "llm: the answer has no choices[1].message.content", "parse", { usage = usage }
  end
  return { content = content, finish_reason = choice.finish_reason, model = body.model, usage = usage }
end

-- check(cfg) → true | nil, message, "auth"
-- Asks the endpoint whether it takes the key (GET {base}/models, free on every
-- OpenAI-compatible API) before a job buys anything the LLM must then read. Only
-- a definite refusal (401/403) fails; an endpoint without /models, a server
-- error or no answer passes (the chat calls find out, with their retries).
function M.check(cfg)
  ensure_limit(cfg)
  local res = request(cfg, "GET", "/models", { timeout = 30 })
  if res and (res.status == 401 or res.status == 403) then return nil, (http_error(res)), "auth" end
  return true
end

-- chat_json(messages, opts) → value, info | nil, message, kind
-- Asks for JSON (opts.json defaults to true), parses the reply (fences
-- tolerated) and runs opts.validate(value) → value' | nil, why. A reply that
-- has no text content, or does not parse or validate, is asked again, up to
-- opts.parse_attempts (default 3) times; then nil, message, "parse". info = { usage = {prompt_tokens,
-- completion_tokens}, attempts = n (replies received, each one paid for),
-- content = the last reply }; a failure returns it too, as a fourth value.
function M.chat_json(messages, opts)
  opts = opts or {}
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if o.json == nil then o.json = true end
  local tries = opts.parse_attempts or 3
  local usage = { prompt_tokens = 0, completion_tokens = 0 }
  local last_err, last_content
  for attempt = 1, tries do
    local r, err, kind, paid = M.chat(messages, o)
    if not r and not paid then
      return nil, err, kind, { usage = usage, attempts = attempt - 1, content = last_content }
    end
    local got = r or paid
    usage.prompt_tokens = usage.prompt_tokens + got.usage.prompt_tokens
    usage.completion_tokens = usage.completion_tokens + got.usage.completion_tokens
    local v, perr
    if r then
      last_content = r.content
      v, perr = M.parse_json(r.content)
      if v ~= nil and opts.validate then v, perr = opts.validate(v) end
    else
      perr = "the reply has no text content"   -- a 200 without choices[1].message.content
    end
    if v ~= nil then
      return v, { usage = usage, attempts = attempt, content = r.content }
    end
    last_err = perr or "the reply was not what was asked for"
    if r and r.finish_reason == "length" then last_err = last_err .. " (the reply was cut at max_tokens)" end
    if attempt < tries then sluice.log(("llm: reply %d/%d unusable (%s); asking again"):format(attempt, tries, last_err)) end
  end
  return nil, ("llm: no usable JSON after %s: %s"):format(plural(tries, "reply", "replies"), last_err or "?"), "parse",
    { usage = usage, attempts = tries, content = last_content }
end

---------------------------------------------------------------- helpers

-- batches({a, b, c, d, e}, 2) → {{a, b}, {c, d}, {e}}
function M.batches(list, size)
  local out = {}
  for i = 1, #list, size do
    local b = {}
    for j = i, math.min(i + size - 1, #list) do b[#b + 1] = list[j] end
    out[#out + 1] = b
  end
  return out
end

-- cost(usage, cfg) → estimated USD for token counts {prompt_tokens, completion_tokens}.
function M.cost(usage, cfg)
  cfg = cfg or M.config() or { price_in = 0.15, price_out = 0.60 }
  return (usage.prompt_tokens or 0) * cfg.price_in / 1e6 + (usage.completion_tokens or 0) * cfg.price_out / 1e6
end

return M
