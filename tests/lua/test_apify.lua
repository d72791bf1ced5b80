-- tests/lua/test_apify.lua — the parts of sluice.apify that decide whether a run
-- found on Apify is the one a lost start request created: canonical_json,
-- sluice.sha256 (which input_digest uses), input_digest, parse_time,
-- candidates, unsent, and find_started with list_runs and record replaced by
-- tables in memory. The HTTP side is tested in
-- tests/integration/test_seed_research.py against the fixture Apify.
--
-- Prints "ok - name" / "not ok - name: detail" per test, then "N passed, M
-- failed", and raises at the end if anything failed.

local apify = require("sluice.apify")
local json = sluice.json

local T = require("testlib")
local test, eq, raises = T.test, T.eq, T.raises

-- ===================================================================== canonical_json

test("canonical_json: object keys sorted, whatever order they were set in", function()
  local a = { b = 1, a = { z = true, y = "x" } }
  local b = {}
  b.a = {}
  b.a.y = "x"
  b.a.z = true
  b.b = 1
  eq(apify.canonical_json(a), '{"a":{"y":"x","z":true},"b":1}')
  eq(apify.canonical_json(b), apify.canonical_json(a))
end)

test("canonical_json: arrays, empty tables, null, strings escaped", function()
  eq(apify.canonical_json({ 3, 1, 2 }), "[3,1,2]")
  eq(apify.canonical_json({}), "{}")
  eq(apify.canonical_json({ a = sluice.null }), '{"a":null}')
  eq(apify.canonical_json({ s = 'quote " and \\ and \n' }), '{"s":"quote \\" and \\\\ and \\n"}')
  eq(apify.canonical_json({ [1] = "a", [3] = "c" }), '{"1":"a","3":"c"}')
end)

test("canonical_json: numbers read back by sluice.json.decode give the same text", function()
  eq(apify.canonical_json({ n = 500, f = 500.0 }), '{"f":500,"n":500}')
  for _, v in ipairs({ 0.1, 0.1 + 0.2, 1e300, -2.5, 123456789012345, 2^53 + 1 }) do
    local text = apify.canonical_json({ v })
    eq(apify.canonical_json(json.decode(json.encode({ v }))), text, tostring(v))
  end
end)

test("canonical_json: an input and the same input after a JSON round trip agree", function()
  local input = {
    input = { { asin = "B0X", domainCode = "com", maxPages = 10, filterByStar = "five_star" },
              { asin = "B0X", domainCode = "com", maxPages = 10, sortBy = "helpful" } },
    queries = { "a", "b" }, includeNsfw = false, ratio = 0.75,
  }
  local back = json.decode(json.encode(input))
  eq(apify.canonical_json(back), apify.canonical_json(input))
  eq(apify.input_digest(back), apify.input_digest(input))
  back.input[2].maxPages = 9
  assert(apify.input_digest(back) ~= apify.input_digest(input), "a changed input kept its digest")
end)

test("canonical_json: a function is refused", function()
  raises(function() apify.canonical_json({ f = print }) end, "cannot encode a function")
end)

-- ===================================================================== sha256

test("sha256: FIPS 180-4 test vectors", function()
  eq(sluice.sha256(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
  eq(sluice.sha256("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  eq(sluice.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
  -- 55, 56 and 64 bytes: the padding edges
  eq(sluice.sha256(("a"):rep(55)), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318")
  eq(sluice.sha256(("a"):rep(56)), "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a")
  eq(sluice.sha256(("a"):rep(64)), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb")
  eq(sluice.sha256(("a"):rep(1000)), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
end)

-- ===================================================================== parse_time

test("parse_time: Apify's UTC times", function()
  eq(apify.parse_time("1970-01-01T00:00:00.000Z"), 0)
  eq(apify.parse_time("2025-12-01T00:00:00Z"), 1764547200)
  eq(apify.parse_time("2024-02-29T12:30:15.250Z"), 1709209815.25)
  eq(apify.parse_time("2000-03-01T00:00:00+00:00"), 951868800)
  eq(apify.parse_time("2025-12-01T00:00:00+02:00"), nil)
  eq(apify.parse_time("yesterday"), nil)
  eq(apify.parse_time(nil), nil)
end)

-- ===================================================================== candidates

local function item(id, at, kvs)
  return { id = id, startedAt = at, defaultKeyValueStoreId = kvs == nil and ("kvs-" .. id) or kvs or nil }
end

test("candidates: runs started since the attempt, in list order", function()
  local since = apify.parse_time("2025-12-01T10:00:00Z")
  local items = {
    item("r4", "2025-12-01T10:05:00.000Z"),
    item("r3", "2025-12-01T10:00:00.000Z"),            -- at the limit: kept
    item("r2", "2025-12-01T09:59:59.999Z"),            -- before: left out
    item("r1", "2025-12-01T09:00:00.000Z"),
  }
  local c, more = apify.candidates(items, since)
  eq(#c, 2)
  eq(c[1].id, "r4")
  eq(c[2].id, "r3")
  eq(more, false, "the list reached older runs")
  c, more = apify.candidates({ items[1], items[2] }, since)
  eq(#c, 2)
  eq(more, true, "every run was recent: older pages may hold more")
end)

test("candidates: runs without an id, a time or a key-value store are left out", function()
  local c = apify.candidates({ { startedAt = "2025-12-01T10:05:00Z", defaultKeyValueStoreId = "k" },
                               item("r2", "soon"), item("r3", "2025-12-01T10:05:00Z", false), "junk" }, 0)
  eq(#c, 0)
  eq(#apify.candidates(nil, 0), 0)
end)

-- ===================================================================== unsent

test("unsent: only failures that leave no doubt nothing was sent", function()
  eq(apify.unsent("connection refused"), true)
  eq(apify.unsent("cannot connect to api.apify.com: network is unreachable"), true)
  eq(apify.unsent("cannot resolve host api.apify.com"), true)
  eq(apify.unsent("timed out after 120s"), false)
  eq(apify.unsent("empty reply from server"), false)
  eq(apify.unsent("connection closed before the whole response arrived"), false)
  eq(apify.unsent("connection error: recv failure: connection reset by peer"), false)
end)

-- ===================================================================== find_started

-- find_started with list_runs and record answering from `runs` (newest first,
-- each { id, startedAt, status, input = table | nil, fail = err }); returns its
-- answer and the calls made.
local function find(runs, attempt, opts, list_err)
  local calls = {}
  local saved_list, saved_record = apify.list_runs, apify.record
  apify.list_runs = function(actor, o)
    calls[#calls + 1] = ("list %s %d+%d"):format(actor, o.offset, o.limit)
    if list_err then return nil, list_err, false end
    local page = {}
    for i = o.offset + 1, math.min(#runs, o.offset + o.limit) do
      local r = runs[i]
      page[#page + 1] = { id = r.id, startedAt = r.startedAt, status = r.status or "RUNNING",
                          defaultKeyValueStoreId = "kvs-" .. r.id, defaultDatasetId = "ds-" .. r.id }
    end
    return { items = page, total = #runs }
  end
  apify.record = function(store, key)
    calls[#calls + 1] = ("record %s %s"):format(store, key)
    for _, r in ipairs(runs) do
      if "kvs-" .. r.id == store then
        if r.fail then return nil, r.fail, false, false end
        if r.input == nil then return nil, "404", true, true end
        return json.decode(json.encode(r.input))
      end
    end
    return nil, "404", true, true
  end
  local ok, a, b, c = pcall(apify.find_started, "owner~actor", attempt, opts)
  apify.list_runs, apify.record = saved_list, saved_record
  if not ok then error(a, 0) end
  return a, b, c, calls
end

local T0 = apify.parse_time("2025-12-01T10:00:00Z")
local MINE = { queries = { "mine" }, maxPosts = 500 }
local OTHER = { queries = { "other" }, maxPosts = 500 }
local ATTEMPT = { at = T0, digest = apify.input_digest(MINE) }

test("find_started: adopts the run whose input matches, not a newer one with another input", function()
  local runs = {
    { id = "newer", startedAt = "2025-12-01T10:00:05Z", input = OTHER },
    { id = "mine", startedAt = "2025-12-01T10:00:01Z", input = MINE },
    { id = "old", startedAt = "2025-12-01T09:00:00Z", input = MINE },
  }
  local run, _, _, calls = find(runs, ATTEMPT)
  eq(run and run.id, "mine")
  eq(run.defaultDatasetId, "ds-mine")
  eq(#calls, 3, "one list and two records")
end)

test("find_started: a run older than the attempt (beyond the skew) is never adopted", function()
  local runs = { { id = "old", startedAt = "2025-12-01T09:58:00Z", input = MINE } }
  eq(find(runs, ATTEMPT), false)
  -- within the allowed clock skew it is
  local run = find({ { id = "skewed", startedAt = "2025-12-01T09:59:30Z", input = MINE } }, ATTEMPT)
  eq(run and run.id, "skewed")
  eq(find({ { id = "skewed", startedAt = "2025-12-01T09:59:30Z", input = MINE } }, ATTEMPT, { skew = 10 }), false)
end)

test("find_started: no run, or only runs without INPUT or with other input → false", function()
  eq(find({}, ATTEMPT), false)
  eq(find({ { id = "a", startedAt = "2025-12-01T10:00:01Z" },
            { id = "b", startedAt = "2025-12-01T10:00:02Z", input = OTHER } }, ATTEMPT), false)
end)

test("find_started: a failed lookup is an error, not a 'none found'", function()
  local run, err = find({}, ATTEMPT, nil, "apify: GET /v2/acts/owner~actor/runs: HTTP 500")
  eq(run, nil)
  eq(err, "apify: GET /v2/acts/owner~actor/runs: HTTP 500")
  run, err = find({ { id = "x", startedAt = "2025-12-01T10:00:01Z", fail = "timed out after 60s" },
                    { id = "mine", startedAt = "2025-12-01T10:00:00Z", input = MINE } }, ATTEMPT)
  eq(run, nil)
  eq(err, "timed out after 60s")
end)

test("find_started: a run that ended FAILED, ABORTED or TIMED-OUT is never adopted", function()
  for _, status in ipairs({ "FAILED", "ABORTED", "TIMED-OUT" }) do
    local runs = { { id = "ended", startedAt = "2025-12-01T10:00:02Z", status = status, input = MINE } }
    local none, _, _, calls = find(runs, ATTEMPT)
    eq(none, false, status)
    eq(#calls, 1, "its INPUT is not even read: " .. status)
    runs[2] = { id = "mine", startedAt = "2025-12-01T10:00:01Z", status = status == "FAILED" and "SUCCEEDED"
                or "READY", input = MINE }
    local run = find(runs, ATTEMPT)
    eq(run and run.id, "mine", "the older run, not the " .. status .. " one")
  end
end)

test("find_started: a run another job owns is passed over for the next one with this input", function()
  local asked = {}
  local owned = function(run)
    asked[#asked + 1] = run.id
    if run.id == "theirs" then return "job-b" end
    return false
  end
  local runs = {
    { id = "theirs", startedAt = "2025-12-01T10:00:03Z", status = "SUCCEEDED", input = MINE },
    { id = "other", startedAt = "2025-12-01T10:00:02Z", input = OTHER },
    { id = "mine", startedAt = "2025-12-01T10:00:01Z", input = MINE },
  }
  local run = find(runs, ATTEMPT, { owned = owned })
  eq(run and run.id, "mine")
  eq(table.concat(asked, ","), "theirs,mine", "asked only about runs with this input")
  eq(find({ runs[1] }, ATTEMPT, { owned = owned }), false, "only another job's run")
end)

test("find_started: a failed ownership check is a failed lookup", function()
  local runs = { { id = "mine", startedAt = "2025-12-01T10:00:01Z", input = MINE } }
  local run, err = find(runs, ATTEMPT, { owned = function() return nil, "database: connection lost" end })
  eq(run, nil)
  eq(err, "database: connection lost")
end)

test("find_started: pages on while every run is recent, and stops at 100", function()
  local runs = {}
  for i = 1, 30 do
    runs[i] = { id = "o" .. i, startedAt = ("2025-12-01T10:%02d:00Z"):format(59 - i), input = OTHER }
  end
  runs[31] = { id = "mine", startedAt = "2025-12-01T10:00:00Z", input = MINE }
  local run, _, _, calls = find(runs, ATTEMPT)
  eq(run and run.id, "mine")
  eq(calls[1], "list owner~actor 0+25")
  local lists = 0
  for _, c in ipairs(calls) do if c:find("^list") then lists = lists + 1 end end
  eq(lists, 2)
  runs = {}
  for i = 1, 150 do runs[i] = { id = "o" .. i, startedAt = "2025-12-01T10:30:00Z", input = OTHER } end
  local none
  none, _, _, calls = find(runs, ATTEMPT)
  eq(none, false)
  eq(#calls, 4 + 100, "four pages of 25 and their records")
end)

T.done()
