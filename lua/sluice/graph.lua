-- graph.lua — the Meta Graph / Marketing API client used by meta_sync and
-- asset_download: base URL and token from the environment (or the brand's own
-- OAuth token), GET with retries on Meta's throttling codes and 5xx, paging
-- through `paging.next`, and the 100 requests/minute limit declared once for
-- the whole process through sluice.http's limiter (key "meta_graph").
--
--   local graph = require("sluice.graph")
--   local g = assert(graph.client(job))          -- nil, err: no token (permanent)
--   local account, err = graph.account(job.brand_id)  -- nil, err: none linked
--   local ad, err, info = g:get("/120200000000", { fields = "id,creative" })
--   local n, err = g:each_page("/act_1/insights", query, function(rows, page) … end)
--   g.token_refused                              -- the first error 190 (a refused token), if any
--
-- Expected failures return nil, message, info where info = { status, code,
-- subcode, permanent } (permanent: a bad token, an unknown object, a malformed
-- request — retrying cannot help). The access token travels in the
-- Authorization header, never in a URL or a log line, and only to the base
-- URL's scheme, host and port: a paging.next elsewhere is not followed.
--
-- Environment: META_GRAPH_URL (default https://graph.facebook.com/v21.0),
-- META_ACCESS_TOKEN (the seed's META_GRAPH_API_TOKEN is read too),
-- META_GRAPH_RETRY_DELAYS (seconds between attempts, default "15,30,60").
-- A config-file `http_limit = meta_graph …` line replaces the default limit.

local base_url_problem = require("sluice.base_url")

local M = {}

M.DEFAULT_URL = "https://graph.facebook.com/v21.0"
M.LIMIT_KEY = "meta_graph"
M.LIMIT = { rate = 100, per = 60, burst = 1 }  -- the seed's 0.6 s spacing
M.RETRY_DELAYS = { 15, 30, 60 }

-- Throttling error codes: application (4), user (17), page (32), ad account
-- (613) and the business-use-case family 80000–80014 (80004: ads insights).
local function is_throttle(code)
  return code == 4 or code == 17 or code == 32 or code == 613 or (code and code >= 80000 and code <= 80014)
end
M.is_throttle = is_throttle

---------------------------------------------------------------- environment

local env = sluice.env

local function retry_delays(opts)
  if opts and opts.retry_delays then return opts.retry_delays end
  local s = env("META_GRAPH_RETRY_DELAYS")
  if not s then return M.RETRY_DELAYS end
  local out = {}
  for part in s:gmatch("[^,%s]+") do
    local n = tonumber(part)
    if not n or n < 0 or n > 3650 * 86400 then -- "1e400" read as infinity: a wait for ever
      error(sluice.permanent(("META_GRAPH_RETRY_DELAYS: %q is not a number of seconds"):format(part)))
    end
    out[#out + 1] = n
  end
  return out
end

-- The token for a brand: its brand_ad_accounts row's OAuth token while it is
-- valid, else META_ACCESS_TOKEN. Returns token, source | nil, err.
function M.token(brand_id, account_id)
  if brand_id then
    local rows = sluice.db.query([[
      SELECT access_token FROM public.brand_ad_accounts
      WHERE brand_id = $1 AND ($2::text IS NULL OR meta_ad_account_id = $2)
        AND auth_method = 'oauth' AND access_token IS NOT NULL AND access_token <> ''
        AND token_expires_at > now()
      ORDER BY is_primary DESC, created_at LIMIT 1]], brand_id, account_id)
    if rows and rows[1] then return rows[1].access_token, "brand oauth token" end
  end
  for _, name in ipairs({ "META_ACCESS_TOKEN", "META_GRAPH_API_TOKEN" }) do
    local t = env(name)
    if t then return t, name end
  end
  return nil, "META_ACCESS_TOKEN is not set (and the brand has no valid OAuth token in brand_ad_accounts): "
    .. "export a Meta system user token as META_ACCESS_TOKEN in the environment of the sluice process, "
    .. "or give the brand's account its own with sluice.add_ad_account(…, p_access_token => …, "
    .. "p_token_expires_at => …)"
end

-- The statement that links an ad account to the brand named `name`, quoted for SQL.
function M.link_hint(name)
  return ("SELECT sluice.add_ad_account('%s', 'act_<digits>')"):format((name:gsub("'", "''")))
end

-- The brand's Meta ad account (its primary one): account id, nil, brand name |
-- nil, err, where err names the brand and says how to link one. Raises when the
-- database fails.
function M.account(brand_id)
  local rows, err = sluice.db.query([[
    SELECT a.meta_ad_account_id, b.name
    FROM sluice.brands b
    LEFT JOIN public.brand_ad_accounts a ON a.brand_id = b.id
    WHERE b.id = $1
    ORDER BY a.is_primary DESC, a.created_at, a.meta_ad_account_id LIMIT 1]], brand_id)
  if not rows then error("database: brand_ad_accounts: " .. tostring(err), 0) end
  local r = rows[1]
  local name = r and type(r.name) == "string" and r.name or tostring(brand_id)
  if r and type(r.meta_ad_account_id) == "string" then return r.meta_ad_account_id, nil, name end
  return nil, ("the brand %s has no Meta ad account: link one with %s"):format(name, M.link_hint(name))
end

---------------------------------------------------------------- the client

local Client = {}
Client.__index = Client

-- client(job[, opts]) → client | nil, err
--   opts.token, opts.base_url, opts.retry_delays, opts.account_id (for the
--   brand token), opts.log (a function like job.log; default job.log)
function M.client(job, opts)
  opts = opts or {}
  local token, src = opts.token, "opts.token"
  if not token then
    token, src = M.token(job and job.brand_id, opts.account_id)
    if not token then return nil, src end
  end
  local base = (opts.base_url or env("META_GRAPH_URL") or M.DEFAULT_URL):gsub("/+$", "")
  local bad = base_url_problem(opts.base_url and "opts.base_url" or "META_GRAPH_URL", base, M.DEFAULT_URL)
  if bad then return nil, bad end
  if not sluice.http.limit(M.LIMIT_KEY) then sluice.http.limit(M.LIMIT_KEY, M.LIMIT) end
  local log = opts.log or (job and job.log) or sluice.log
  return setmetatable({
    base = base, token = token, token_source = src, delays = retry_delays(opts),
    log = log, requests = 0, retries = 0,
  }, Client)
end

-- A URL for display: no query string values that could carry a secret.
local function redact(url)
  return (url:gsub("([?&][%w_]*[Tt][Oo][Kk][Ee][Nn]=)[^&#]*", "%1[redacted]"))
end
M.redact = redact

-- A URL's scheme, host (with :port when the URL has one, for messages) and port
-- (the scheme's default when it has none), lower-cased, user info dropped;
-- nil when it is not an absolute URL.
local DEFAULT_PORT = { http = 80, https = 443 }
local function origin(url)
  local scheme, authority = url:match("^(%a[%w+.-]*)://([^/?#]*)")
  if not scheme then return nil end
  scheme = scheme:lower()
  local hostport = authority:gsub("^.*@", ""):lower()
  local host, port = hostport:match("^(.-):(%d*)$")
  if not host then host = hostport end
  return scheme, hostport, host, tonumber(port) or DEFAULT_PORT[scheme]
end

-- Whether an absolute URL is on the base URL's scheme, host and port: only
-- those get the token. nil, its scheme://host[:port] when it is elsewhere.
local function same_origin(self, url)
  local s1, _, h1, p1 = origin(self.base)
  local s2, hostport, h2, p2 = origin(url)
  if s1 and s1 == s2 and h1 == h2 and p1 == p2 then return true end
  return nil, hostport ~= "" and (s2 .. "://" .. hostport) or url:sub(1, 80)
end

local function path_of(self, url)
  if url:sub(1, #self.base) == self.base then url = url:sub(#self.base + 1) end
  return redact((url:gsub("%?.*$", "")))
end

-- One response → body | nil, message, info
local function read(res)
  local body = res:json()
  if res.ok then
    if type(body) ~= "table" then
      return nil, "graph: the response is not a JSON object", { status = res.status }
    end
    return body
  end
  local e = type(body) == "table" and type(body.error) == "table" and body.error or {}
  local code = math.tointeger(tonumber(e.code))
  local sub = math.tointeger(tonumber(e.error_subcode))
  local info = { status = res.status, code = code, subcode = sub, transient = e.is_transient == true }
  info.throttled = is_throttle(code) or res.status == 429
  info.retryable = info.throttled or res.status >= 500 or info.transient
  -- 190: bad or expired token; 100: unknown object or bad parameter; 10/200-299: permissions
  info.permanent = not info.retryable and (code == 190 or code == 100 or code == 10
                                           or (code and code >= 200 and code <= 299)
                                           or res.status == 400 or res.status == 401 or res.status == 403
                                           or res.status == 404)
  local msg = type(e.message) == "string" and e.message or ("HTTP " .. res.status)
  if code == 190 then
    msg = msg .. " (check META_ACCESS_TOKEN, or the brand's OAuth token in brand_ad_accounts)"
  end
  return nil, ("graph error %s%s (HTTP %d): %s"):format(tostring(code or "?"),
    sub and ("/" .. sub) or "", res.status, msg), info
end

-- get(path_or_url, query) → body | nil, message, info. path is relative to the
-- base URL ("/act_1/insights"); a full URL (paging.next) is used as it is if it
-- is on the base URL's scheme, host and port, and refused (permanent, before
-- any request: the token goes nowhere else) if not. Throttling errors, 5xx and
-- transport errors are retried after the configured delays (15, 30, 60 s).
function Client:get(path, query)
  local url = path
  if not path:match("^%a[%w+.-]*://") then
    url = self.base .. (path:sub(1, 1) == "/" and "" or "/") .. path
  else
    local ok, host = same_origin(self, path)
    if not ok then
      local scheme, hostport = origin(self.base)
      return nil, ("graph: a next page on another host (%s) was not followed: the access token "
        .. "is sent only to META_GRAPH_URL (%s://%s)"):format(host, scheme, hostport), { permanent = true }
    end
  end
  local attempt = 0
  while true do
    attempt = attempt + 1
    self.requests = self.requests + 1
    local res, terr = sluice.http.request({
      method = "GET", url = url, query = query, timeout = 120, limit_key = M.LIMIT_KEY,
      headers = { Authorization = "Bearer " .. self.token },
    })
    local body, err, info
    if res then
      body, err, info = read(res)
      if body then return body end
    else
      err, info = "graph: " .. tostring(terr), { retryable = true, transport = true }
    end
    -- the token itself refused: no request of this client can succeed
    if info.code == 190 then self.token_refused = self.token_refused or err end
    local delay = self.delays[attempt]
    if not info.retryable or not delay then
      if attempt > 1 then err = ("%s (after %d attempts)"):format(err, attempt) end
      return nil, err, info
    end
    self.retries = self.retries + 1
    self.log(("graph: %s %s — retrying in %gs (%d/%d)"):format(path_of(self, url),
      info.throttled and "rate limited" or err, delay, attempt, #self.delays))
    sluice.sleep(delay)
  end
end

-- each_page(path, query, fn) → rows seen, pages | nil, message, info
-- Calls fn(rows, page_number) for each page of a list endpoint, following
-- paging.next until it is absent (a next on another host than the base URL is
-- an error, see get; so is a next that names a page already read, which would
-- read the same pages until the run's timeout). fn may return nil, err to stop
-- with that error.
function Client:each_page(path, query, fn)
  local total, page, url, q = 0, 0, path, query
  local read = {}  -- next URL → the page it was
  while url do
    if read[url] then
      return nil, ("graph: page %d's paging.next is page %d's URL again: stopped rather than "
        .. "read the same pages again (%s)"):format(page, read[url], path_of(self, url)), {}
    end
    read[url] = page + 1
    local body, err, info = self:get(url, q)
    if not body then return nil, err, info end
    page = page + 1
    local rows = type(body.data) == "table" and body.data or {}
    total = total + #rows
    local ok, ferr = fn(rows, page)
    if ok == nil and ferr ~= nil then return nil, ferr, {} end
    local paging = type(body.paging) == "table" and body.paging or {}
    url = type(paging.next) == "string" and paging.next or nil
    q = nil  -- paging.next carries the whole query
  end
  return total, page
end

-- all(path, query) → every row of every page | nil, message, info
function Client:all(path, query)
  local out = {}
  local n, err, info = self:each_page(path, query, function(rows)
    for _, r in ipairs(rows) do out[#out + 1] = r end
    return true
  end)
  if not n then return nil, err, info end
  return out
end

return M
