-- tests/lua/test_http_lib.lua — the parts of sluice.http, sluice.retry and
-- sluice.spawn / wait / map that need no server: query encoding, Retry-After
-- and HTTP-date parsing, the retry policy and its backoff, limiter settings,
-- argument checks, and spawn/wait/map over sluice.sleep. The network side is
-- tests/integration/test_http.py.
--
-- Prints "ok - name" / "not ok - name: detail" per test, then "N passed, M
-- failed", and raises at the end if anything failed.

local fmt = string.format
local http = sluice.http
local R = require("sluice.retry")

local T = require("testlib")
local test, eq, raises = T.test, T.eq, T.raises

-- ===================================================================== http

test("query encoding is sorted and percent-encoded", function()
  eq(http.encode_query({ b = 2, a = "x y", c = { 1, "two" }, d = true }), "a=x%20y&b=2&c=1&c=two&d=true")
  eq(http.encode_query({ q = "a&b=c/é" }), "q=a%26b%3Dc%2F%C3%A9")
  eq(http.encode_query({ n = 3.0, f = 0.5 }), "f=0.5&n=3")
  eq(http.encode_query({}), "")
  eq(http.urlencode("-._~ AZaz09"), "-._~%20AZaz09")
end)

test("query values must be scalars", function()
  raises(function() http.encode_query({ x = function() end }) end, "query value x must be")
  raises(function() http.encode_query({ [1] = "a" }) end, "query keys must be strings")
  raises(function() http.encode_query({ a = { b = 1 } }) end, "query value a must be a string, number, boolean or a list of them, not a table with keys")
  raises(function() http.encode_query({ a = { 1, 2, x = 3 } }) end, "not a table with keys")
  raises(function() http.encode_query({ a = 0 / 0 }) end, "query value a must be a finite number, not")
  raises(function() http.encode_query({ a = { 1, math.huge } }) end, "query value a must be a finite number, not inf")
end)

test("request arguments are checked before anything is sent", function()
  raises(function() http.request("http://x") end, "expected a table of options")
  raises(function() http.request({ url = "http://127.0.0.1/", verbose = true }) end, "unknown option 'verbose'")
  raises(function() http.get(42) end, "url must be a string")
  raises(function() http.get("http://127.0.0.1/", { headers = { ["Bad Name"] = "x" } }) end, "not a valid header name")
  raises(function() http.get("http://127.0.0.1/", { headers = { X = "a\nb" } }) end, "line breaks")
  raises(function() http.get("http://127.0.0.1/", { headers = { X = -math.huge } }) end,
    "header X must be a finite number, not -inf")
  raises(function() http.get("http://127.0.0.1/", { max_bytes = 0 }) end, "max_bytes must be")
  -- a body kept in memory may not be allowed past the memory cap (512 MB here)
  raises(function() http.get("http://127.0.0.1/", { max_bytes = 1e12 }) end,
    "max_bytes may be at most 512 MB for a body kept in memory (the memory cap, memory_limit_mb); save_to takes larger ones")
  raises(function() http.get("http://127.0.0.1/", { follow = "yes" }) end, "follow must be a boolean")
  raises(function() http.request({ url = "http://127.0.0.1/", json = { f = print } }) end, "json:")
  raises(function() http.get("http://127.0.0.1/", 5) end, "options must be a table")
end)

test("an unusable url is nil, err at once, without its credentials", function()
  local res, err = http.get("ftp://127.0.0.1/x")
  eq(res, nil)
  eq(err, "invalid url 'ftp://127.0.0.1/x': only http:// and https:// are supported")
  res, err = http.get("not a url")
  eq(res, nil)
  eq(err:find("invalid url 'not a url': ", 1, true), 1, err)
  res, err = http.get("http://bad host/x?token=hunter2&page=1")
  eq(res, nil)
  eq(err:find("hunter2", 1, true), nil, "secret in " .. err)
  eq(err:find("[redacted]", 1, true) ~= nil, true, "redaction mark in " .. err)
end)

test("limits: set, read, change, remove", function()
  eq(http.limit("test.example"), nil)
  http.limit("test.example", { rate = 10, per = 2, concurrency = 3 })
  local l = http.limit("TEST.example")
  eq(l.rate, 10.0); eq(l.per, 2.0); eq(l.burst, 10.0); eq(l.concurrency, 3)
  eq(l.in_flight, 0); eq(l.waiting, 0)
  http.limit("test.example", { concurrency = 1 })
  l = http.limit("test.example")
  eq(l.rate, 0.0); eq(l.concurrency, 1)
  http.limit("test.example", { rate = 5, burst = 2 })
  l = http.limit("test.example")
  eq(l.per, 1.0); eq(l.burst, 2.0)
  http.limit("test.example", false)
  eq(http.limit("test.example"), nil) -- removed: no limit, as before it was set
  http.limit("test.example", { rate = 5, burst = 2 })
  http.limit("test.example", {})
  eq(http.limit("test.example"), nil) -- {} removes it too
  raises(function() http.limit("x", { rate = 1, every = 2 }) end, "unknown field 'every'")
  raises(function() http.limit("x", { concurrency = 1.5 }) end, "concurrency must be a whole number")
  raises(function() http.limit("x", 5) end, "expected a table")
  raises(function() http.limit("") end, "expected a host name")
end)

test("limits: with no config file line, each part comes from the code", function()
  http.limit("code.example", { rate = 10, per = 2, concurrency = 3 })
  local l = http.limit("code.example")
  eq(l.source.rate, "code"); eq(l.source.burst, "code"); eq(l.source.concurrency, "code")
  eq(l.config, nil)
  eq(l.code.rate, 10.0); eq(l.code.per, 2.0); eq(l.code.burst, 10.0); eq(l.code.concurrency, 3)
  http.limit("code.example", { concurrency = 1 })
  l = http.limit("code.example")
  eq(l.source.rate, nil); eq(l.source.burst, nil); eq(l.source.concurrency, "code")
  eq(l.code.rate, 0.0); eq(l.code.per, 0.0)
  http.limit("code.example", false)
  eq(http.limit("code.example"), nil)
end)

-- ===================================================================== retry

test("HTTP dates in all three forms", function()
  eq(R.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777)
  eq(R.parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777)
  eq(R.parse_http_date("Sun Nov  6 08:49:37 1994"), 784111777)
  eq(R.parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), 0)
  eq(R.parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT"), 1835481599)
  eq(R.parse_http_date("yesterday"), nil)
  eq(R.parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), nil)
end)

test("Retry-After: seconds or a date", function()
  eq(R.parse_retry_after("120"), 120)
  eq(R.parse_retry_after(" 3 "), 3)
  eq(R.parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", 784111777), 10)
  eq(R.parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111800), 0) -- in the past
  eq(R.parse_retry_after("-1"), nil)
  eq(R.parse_retry_after("soon"), nil)
  eq(R.parse_retry_after(nil), nil)
end)

test("default policy: transport errors, 429 and 5xx", function()
  eq(R.default_retry_on(nil, "connection refused"), true)
  eq(R.default_retry_on({ status = 429 }), true)
  eq(R.default_retry_on({ status = 500 }), true)
  eq(R.default_retry_on({ status = 503 }), true)
  eq(R.default_retry_on({ status = 200 }), false)
  eq(R.default_retry_on({ status = 404 }), false)
  eq(R.default_retry_on({ status = 301 }), false)
  eq(R.default_retry_on(nil, nil), false)
end)

test("backoff doubles, is capped, and jitter stays in the upper half", function()
  local o = { base = 0.5, max = 3, jitter = false, max_retry_after = 300 }
  eq(R.delay(1, o), 0.5); eq(R.delay(2, o), 1.0); eq(R.delay(3, o), 2.0); eq(R.delay(4, o), 3)
  o.jitter = true
  for _ = 1, 200 do
    local d = R.delay(2, o)
    assert(d >= 0.5 and d <= 1.0, "jittered delay out of range: " .. d)
  end
end)

test("Retry-After on 429/503 sets the floor; too long gives up", function()
  local o = { base = 0.5, max = 30, jitter = false, max_retry_after = 300 }
  local function res(status, ra) return { status = status, headers = { ["retry-after"] = ra } } end
  eq(R.delay(1, o, res(429, "7")), 7)
  eq(R.delay(1, o, res(503, "7")), 7)
  eq(R.delay(1, o, res(500, "7")), 0.5)      -- only 429 and 503 carry it
  eq(R.delay(4, o, res(429, "1")), 4.0)      -- the backoff is already longer
  local d, ra = R.delay(1, o, res(429, "301"))
  eq(d, nil); eq(ra, 301)
end)

test("retry calls again, then returns the last values", function()
  local calls = 0
  local a, b = sluice.retry(function(n)
    calls = calls + 1
    eq(n, calls, "attempt number")
    return nil, "flaky " .. n
  end, { attempts = 3, base = 0.001, log = false })
  eq(calls, 3); eq(a, nil); eq(b, "flaky 3")
  calls = 0
  local r = sluice.retry(function()
    calls = calls + 1
    if calls < 2 then return { status = 502 } end
    return { status = 200 }
  end, { base = 0.001, log = false })
  eq(r.status, 200); eq(calls, 2)
end)

test("retry options are checked", function()
  raises(function() sluice.retry(42) end, "expected a function")
  raises(function() sluice.retry(print, { attempts = 0 }) end, "attempts must be")
  raises(function() sluice.retry(print, { attempts = 2.5 }) end, "attempts must be a whole number")
  raises(function() sluice.retry(print, { tries = 2 }) end, "unknown option 'tries'")
  raises(function() sluice.retry(print, { what = 7 }) end, "sluice.retry: what must be a string")
  raises(function() sluice.retry(print, { max = 0 / 0 }) end, "base, max and max_retry_after must be ≥ 0")
  raises(function() sluice.retry(function() error("inner") end) end, "inner") -- not caught
end)

test("sleep names itself when refusing a negative or NaN time", function()
  raises(function() sluice.sleep(-1) end, "sluice.sleep: seconds must be a number of at least 0, not -1")
  raises(function() sluice.sleep(0 / 0) end, "sluice.sleep: seconds must be a number of at least 0, not")
end)

-- ===================================================================== spawn

test("spawn and wait: values, order, lists", function()
  local a = sluice.spawn(function(x) sluice.sleep(0.02); return x + 1, "two" end, 1)
  local b = sluice.spawn(function() return "b" end)
  eq(a:status(), "running")
  local x, y = sluice.wait(a)
  eq(x, 2); eq(y, "two")
  eq(a:status(), "done")
  local p, q = sluice.wait(a, b)
  eq(p, 2); eq(q, "b")
  local res, errs = sluice.wait({ b, sluice.spawn(function() return nil, "no" end) })
  eq(res[1], "b"); eq(res[2], nil); eq(errs[2], "no")
end)

test("children run concurrently", function()
  local t0 = sluice.now()
  local ts = {}
  for i = 1, 20 do ts[i] = sluice.spawn(function() sluice.sleep(0.1); return i end) end
  local r = sluice.wait(ts)
  eq(#r, 20); eq(r[20], 20)
  assert(sluice.now() - t0 < 0.5, "20 sleeps of 0.1 s took " .. (sluice.now() - t0))
end)

test("a child's error is raised by wait, at once", function()
  local slow = sluice.spawn(function() sluice.sleep(5) end)
  local bad = sluice.spawn(function() sluice.sleep(0.01); error("child broke") end)
  local t0 = sluice.now()
  local ok, err = pcall(sluice.wait, slow, bad)
  eq(ok, false)
  assert(tostring(err):find("child broke", 1, true), err)
  assert(sluice.now() - t0 < 1, "wait did not fail fast")
  eq(slow:cancel(), true); eq(slow:status(), "cancelled")
  raises(function() sluice.wait(slow) end, "was cancelled")
  eq(bad:status(), "failed")
end)

test("map keeps order, bounds concurrency, fails fast", function()
  local running, peak = 0, 0
  local items = {}
  for i = 1, 12 do items[i] = i end
  local r = sluice.map(items, function(v, i)
    running = running + 1
    if running > peak then peak = running end
    sluice.sleep(0.01 * (13 - i))
    running = running - 1
    return v * v
  end, { concurrency = 4 })
  eq(peak, 4)
  for i = 1, 12 do eq(r[i], i * i) end
  local started = 0
  local ok, err = pcall(sluice.map, items, function(v)
    started = started + 1
    if v == 3 then error("item 3") end
    sluice.sleep(0.05)
  end, { concurrency = 2 })
  eq(ok, false)
  assert(tostring(err):find("item 3", 1, true), err)
  assert(started < 12, "map went on after a failure")
end)

test("spawn misuse", function()
  raises(function() sluice.spawn("f") end, "expected a function")
  raises(function() sluice.wait() end, "expected one or more tasks")
  raises(function() sluice.wait({ 1 }) end, "expected a task")
  raises(function() sluice.map(5, print) end, "expected a list")
  raises(function() sluice.map({}, print, { concurrency = -1 }) end, "concurrency must be a whole number ≥ 1, not -1")
  raises(function() sluice.map({}, print, { concurrency = 1e300 }) end, "≥ 1, not 1e+300")
  raises(function() sluice.map({}, print, { concurrency = 2.5 }) end, "≥ 1, not 2.5")
  raises(function() sluice.map({}, print, { concurrency = "4" }) end, "≥ 1, not string")
  eq(sluice.map({ 1, 2 }, function(v) return v + 1 end, { concurrency = 2.0 })[2], 3)
  local self
  self = sluice.spawn(function() sluice.sleep(0.01); return pcall(sluice.wait, self) end)
  local ok, err = sluice.wait(self)
  eq(ok, false)
  assert(tostring(err):find("cannot wait for itself", 1, true), err)
end)

T.done()
