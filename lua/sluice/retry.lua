-- retry.lua — sluice.retry: call a function again after a failure that is
-- worth another try, with exponential backoff and jitter, honouring a server's
-- Retry-After.
--
--   local res, err = sluice.retry(function(attempt)
--     return sluice.http.get(url)
--   end, { attempts = 3, base = 0.5, max = 30, jitter = true,
--          retry_on = function(res, err) … end })
--
-- fn returns what sluice.http.request returns (res, or nil and an error). By
-- default a transport error, a 429 and a 5xx are retried and nothing else.
-- The wait before attempt k+1 is base·2^(k-1) seconds capped at max; with
-- jitter it is drawn from its upper half. On a 429 or 503 carrying Retry-After
-- (seconds or an HTTP date) the wait is at least that long; a Retry-After longer
-- than max_retry_after (default 300 s) ends the retries at once. Each retry is
-- logged, after opts.what when given ("apify: POST /v2/acts/x/runs: retry 2/6
-- in 1.00s after status 429"), so that the log says which request it was. Waiting uses
-- sluice.sleep: other runs go on. Returns the last attempt's values. An error
-- fn raises is not caught.

local M = {}

local DEFAULTS = { attempts = 3, base = 0.5, max = 30, jitter = true, max_retry_after = 300 }
local OPTIONS = {
  attempts = "integer", base = "number", max = "number", jitter = "boolean",
  retry_on = "function", max_retry_after = "number", log = "boolean", what = "string",
}

---------------------------------------------------------------- Retry-After

local MONTHS = {
  jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6,
  jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12,
}

-- Days since 1970-01-01 of a proleptic Gregorian date (no time zones involved).
-- Also read by apify.parse_time.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end
M.days_from_civil = days_from_civil

-- An HTTP date (IMF-fixdate, RFC 850 or asctime form) → seconds since the epoch.
function M.parse_http_date(s)
  if type(s) ~= "string" then return nil end
  local d, mon, y, hh, mm, ss =
    s:match("^%s*%a+,%s*(%d%d?)[%s%-](%a%a%a)[%s%-](%d+)%s+(%d%d):(%d%d):(%d%d)%s*GMT%s*$")
  if not d then
    mon, d, hh, mm, ss, y = s:match("^%s*%a+%s+(%a%a%a)%s+(%d%d?)%s+(%d%d):(%d%d):(%d%d)%s+(%d%d%d%d)%s*$")
  end
  if not d then return nil end
  local month = MONTHS[mon:lower()]
  if not month then return nil end
  y = tonumber(y)
  if y < 100 then y = y + (y >= 70 and 1900 or 2000) end
  return days_from_civil(y, month, tonumber(d)) * 86400
    + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
end

-- A Retry-After value → seconds to wait from now (≥ 0), or nil if unreadable.
function M.parse_retry_after(value, now)
  if type(value) == "number" then return value >= 0 and value or nil end
  if type(value) ~= "string" then return nil end
  local secs = value:match("^%s*(%d+)%s*$")
  if secs then return tonumber(secs) end
  local t = M.parse_http_date(value)
  if not t then return nil end
  local wait = t - (now or sluice.now())
  return wait > 0 and wait or 0
end

local function header(res, name)
  local h = type(res) == "table" and type(res.headers) == "table" and res.headers
  if not h then return nil end
  return h[name] or h[name:lower()]
end

---------------------------------------------------------------- policy

-- Transport errors, 429 and 5xx are worth another try; nothing else.
function M.default_retry_on(res, err)
  if res == nil then return err ~= nil end
  local status = type(res) == "table" and res.status
  return status == 429 or (math.type(status) == "integer" and status >= 500 and status <= 599)
end

-- Seconds to wait after the failed attempt number `attempt`, or nil and the
-- server's Retry-After when that is longer than o.max_retry_after.
function M.delay(attempt, o, res)
  local d = math.min(o.max, o.base * 2 ^ (attempt - 1))
  if o.jitter then d = d / 2 + math.random() * d / 2 end
  local status = type(res) == "table" and res.status
  if status == 429 or status == 503 then
    local ra = M.parse_retry_after(header(res, "Retry-After"))
    if ra then
      if ra > o.max_retry_after then return nil, ra end
      if ra > d then d = ra end
    end
  end
  return d
end

local function describe(res, err)
  if res == nil then return tostring(err) end
  if type(res) == "table" and res.status then return "status " .. tostring(res.status) end
  return tostring(res)
end

function M.retry(fn, opts)
  if type(fn) ~= "function" then
    error(("sluice.retry: expected a function, got a %s"):format(type(fn)), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("sluice.retry: options must be a table like {attempts = 3}", 2)
  end
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do
    local want = OPTIONS[k]
    if not want then
      error(("sluice.retry: unknown option '%s'"):format(tostring(k)), 2)
    end
    local ok = (want == "integer" and math.type(v) == "integer") or (want ~= "integer" and type(v) == want)
    if not ok then
      error(("sluice.retry: %s must be %s"):format(k, want == "integer" and "a whole number" or "a " .. want), 2)
    end
    o[k] = v
  end
  if o.attempts < 1 then error("sluice.retry: attempts must be ≥ 1", 2) end
  -- not (x >= 0): NaN too, which went on to sluice.sleep and raised there
  if not (o.base >= 0 and o.max >= 0 and o.max_retry_after >= 0) then
    error("sluice.retry: base, max and max_retry_after must be ≥ 0", 2)
  end
  local retry_on = o.retry_on or M.default_retry_on
  local prefix = o.what and (o.what .. ": ") or ""
  local r
  for attempt = 1, o.attempts do
    r = table.pack(fn(attempt))
    if attempt == o.attempts or not retry_on(r[1], r[2]) then break end
    local d, ra = M.delay(attempt, o, r[1])
    if not d then
      if o.log ~= false then
        sluice.log(("%sretry: giving up after attempt %d: the server asks to wait %.0fs")
          :format(prefix, attempt, ra))
      end
      break
    end
    if o.log ~= false then
      sluice.log(("%sretry %d/%d in %.2fs after %s")
        :format(prefix, attempt + 1, o.attempts, d, describe(r[1], r[2])))
    end
    sluice.sleep(d)
  end
  return table.unpack(r, 1, r.n)
end

return M
