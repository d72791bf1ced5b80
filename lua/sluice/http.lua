-- http.lua — sluice.http, the HTTP client handlers use, over the C driver in
-- src/lua_http.c (libcurl's multi interface on the event loop: a request parks
-- its task, every other run goes on). runtime.lua loads this file and hands it
-- the driver; handlers use it as `sluice.http`.
--
--   local res, err = sluice.http.request{
--     method = "GET", url = "https://graph.example.com/v1/ads",
--     query = { fields = "id,name", limit = 100 },       -- url-encoded, appended
--     headers = { Authorization = "Bearer " .. token },
--     json = { … } | body = "…",                         -- json sets Content-Type
--     timeout = 30, max_bytes = 50 * 1024 * 1024, follow = true,
--     limit_key = "graph",                               -- a named limiter
--     save_to = part,        -- sluice.assets.begin(): the body streams to disk
--   }
--   res.status, res.headers["Content-Type"] (any case), res.body, res.size,
--   res:json()   (with save_to, res.body is only the body's first 256 KiB)
--   err: "connection refused", "timed out after 30s", "too many redirects", …
--
-- A response with any status is a response (check res.status or res.ok); only
-- transport failures return nil, err. Limits: sluice.http.limit(name, spec);
-- see docs/http.md.

return function(drv)
  local json = sluice.json
  local M = {}

  ---------------------------------------------------------------- encoding

  local function urlencode(s)
    return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
  end
  M.urlencode = urlencode

  local function scalar(v, key, level)
    local t = type(v)
    if t == "string" then return v end
    if t == "number" then
      if v ~= v or v == math.huge or v == -math.huge then -- it went out as "-nan" or "inf"
        error(("sluice.http: query value %s must be a finite number, not %s"):format(key, tostring(v)), level + 1)
      end
      if math.type(v) == "float" and v == math.floor(v) and v >= -2^53 and v <= 2^53 then
        return ("%d"):format(v)
      end
      return tostring(v)
    end
    if t == "boolean" then return tostring(v) end
    error(("sluice.http: query value %s must be a string, number, boolean or a list of them, not a %s")
      :format(key, t), level + 1)
  end

  -- { b = 2, a = {1, 2} } → "a=1&a=2&b=2" (keys sorted: the same table gives the
  -- same URL).
  local function encode_query(q, level)
    local keys = {}
    for k in pairs(q) do
      if type(k) ~= "string" then error("sluice.http: query keys must be strings", level + 1) end
      keys[#keys + 1] = k
    end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do
      local v = q[k]
      if type(v) == "table" then
        local n = 0
        for _ in pairs(v) do n = n + 1 end
        if n ~= #v then -- { b = 1 } would have been dropped without a word
          error(("sluice.http: query value %s must be a string, number, boolean or a list of them, "
            .. "not a table with keys"):format(k), level + 1)
        end
        for _, item in ipairs(v) do
          parts[#parts + 1] = urlencode(k) .. "=" .. urlencode(scalar(item, k, level + 1))
        end
      else
        parts[#parts + 1] = urlencode(k) .. "=" .. urlencode(scalar(v, k, level + 1))
      end
    end
    return table.concat(parts, "&")
  end
  M.encode_query = function(q) return encode_query(q, 2) end

  local function with_query(url, q)
    if q == "" then return url end
    local base, frag = url:match("^([^#]*)(#.*)$")
    if not base then base, frag = url, "" end
    local sep = "?"
    if base:find("?", 1, true) then
      local last = base:sub(-1)
      sep = (last == "?" or last == "&") and "" or "&"
    end
    return base .. sep .. q .. frag
  end

  ---------------------------------------------------------------- responses

  -- Header names are stored in lower case; any case finds them.
  local headers_mt = {
    __index = function(t, k)
      if type(k) == "string" then return rawget(t, k:lower()) end
    end,
  }

  local Response = {}
  Response.__index = Response

  -- res:json() → the decoded body | nil, "response is not valid json: …"
  function Response:json()
    local ok, v = pcall(json.decode, self.body)
    if not ok then
      return nil, "response is not valid json: " .. tostring(v):gsub("^.-:%d+: ", "")
    end
    return v
  end

  -- res:header(name) → the value (any case), or nil
  function Response:header(name)
    return self.headers[name]
  end

  ---------------------------------------------------------------- requests

  local OPTIONS = {
    method = true, url = true, query = true, headers = true, body = true, json = true,
    timeout = true, max_bytes = true, follow = true, max_redirects = true, limit_key = true,
    save_to = true,
  }

  local function has_header(h, name)
    for k in pairs(h) do
      if type(k) == "string" and k:lower() == name then return true end
    end
    return false
  end

  local function request(opts, level)
    if type(opts) ~= "table" then
      error("sluice.http.request: expected a table of options {url = …}", level)
    end
    for k in pairs(opts) do
      if not OPTIONS[k] then
        error(("sluice.http.request: unknown option '%s'"):format(tostring(k)), level)
      end
    end
    local url = opts.url
    if type(url) ~= "string" then error("sluice.http.request: url must be a string", level) end
    if opts.query ~= nil then
      if type(opts.query) ~= "table" then error("sluice.http.request: query must be a table", level) end
      url = with_query(url, encode_query(opts.query, level))
    end
    local headers = {}
    if opts.headers ~= nil then
      if type(opts.headers) ~= "table" then error("sluice.http.request: headers must be a table", level) end
      for k, v in pairs(opts.headers) do headers[k] = v end
    end
    local body = opts.body
    if opts.json ~= nil then
      if body ~= nil then error("sluice.http.request: give body or json, not both", level) end
      local ok, encoded = pcall(json.encode, opts.json)
      if not ok then error("sluice.http.request: json: " .. tostring(encoded), level) end
      body = encoded
      if not has_header(headers, "content-type") then headers["Content-Type"] = "application/json" end
    end
    if body ~= nil and type(body) ~= "string" then
      error("sluice.http.request: body must be a string (use json = … for tables)", level)
    end
    local method = opts.method
    if method == nil then method = body ~= nil and "POST" or "GET" end
    local res, err = drv.request({
      method = method, url = url, headers = headers, body = body, timeout = opts.timeout,
      max_bytes = opts.max_bytes, follow = opts.follow, max_redirects = opts.max_redirects,
      limit_key = opts.limit_key, save_to = opts.save_to, level = level,
    })
    if not res then return nil, err end
    setmetatable(res.headers, headers_mt)
    res.ok = res.status >= 200 and res.status < 300
    return setmetatable(res, Response)
  end

  -- (not tail calls: a tail call leaves no frame, and the levels that point an
  -- error at the handler's line count this one)
  function M.request(opts)
    local res, err = request(opts, 3)
    return res, err
  end

  local function shorthand(method)
    return function(url, opts)
      if opts ~= nil and type(opts) ~= "table" then
        error(("sluice.http.%s: options must be a table"):format(method:lower()), 2)
      end
      local o = {}
      for k, v in pairs(opts or {}) do o[k] = v end
      o.url, o.method = url, method
      local res, err = request(o, 3)
      return res, err
    end
  end
  M.get = shorthand("GET")
  M.post = shorthand("POST")
  M.put = shorthand("PUT")
  M.patch = shorthand("PATCH")
  M.delete = shorthand("DELETE")
  M.head = shorthand("HEAD")

  ---------------------------------------------------------------- limits

  local LIMIT_FIELDS = { rate = true, per = true, burst = true, concurrency = true }

  -- limit(name, {rate = 100, per = 60, burst = 100, concurrency = 10}) sets the
  -- code's limit for a host ("graph.facebook.com", "127.0.0.1:8080") or a key
  -- used with limit_key; limit(name, false) removes the code's setting. The
  -- limit in force is, part by part, the stricter of the config file's
  -- http_limit and the code's: code can tighten the operator's limit, never
  -- loosen it. limit(name) reads the limit in force, with `source` (where each
  -- part comes from) and the two settings, `config` and `code`.
  function M.limit(name, spec)
    if type(name) ~= "string" or name == "" then
      error("sluice.http.limit: expected a host name or limit key", 2)
    end
    -- (parenthesised: not tail calls, so the driver's errors name the caller's line)
    if spec == nil then return (drv.limit(name)) end
    if spec == false then return (drv.limit(name, {})) end
    if type(spec) ~= "table" then
      error("sluice.http.limit: expected a table like {rate = 100, per = 60, concurrency = 10}", 2)
    end
    for k in pairs(spec) do
      if not LIMIT_FIELDS[k] then
        error(("sluice.http.limit: unknown field '%s' (rate, per, burst, concurrency)"):format(tostring(k)), 2)
      end
    end
    drv.limit(name, spec)
  end

  return M
end
