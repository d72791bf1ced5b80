-- tests/lua/test_rows.lua — sluice.rows.write: a batch the database refuses for
-- its data is written again row by row, the refused rows skipped and named;
-- a bad chunk size is refused. The database is the test suite's cluster; each
-- run works in a schema of its own, dropped at the end. The handlers that use
-- rows.write are tested in tests/integration/test_seed_research.py and
-- test_seed_ads.py.

local rows = require("sluice.rows")
local T = require("testlib")
local test, eq, raises = T.test, T.eq, T.raises

local SCHEMA = ("sluice_test_rows_%d_%d"):format(math.floor(sluice.now() * 1000), math.random(1, 1e6))
local TABLE = SCHEMA .. ".items"

-- k is the conflict key; v may not be 'bad' (SQLSTATE 23514).
local UPSERT = ([[
  INSERT INTO %s (k, v)
  SELECT r ->> 'k', r ->> 'v' FROM jsonb_array_elements($1::jsonb) AS r
  ON CONFLICT (k) DO UPDATE SET v = excluded.v
  RETURNING k, v]]):format(TABLE)

local function must(sql)
  local ok, err = sluice.db.query(sql)
  if not ok then error("database: " .. tostring(err), 2) end
end

must(("CREATE SCHEMA %s"):format(SCHEMA))
must(("CREATE TABLE %s (k text PRIMARY KEY, v text NOT NULL CHECK (v <> 'bad'))"):format(TABLE))

-- A job that keeps what is logged.
local function fake_job()
  local job = { lines = {} }
  function job.log(fmt, ...) job.lines[#job.lines + 1] = fmt:format(...) end
  return job
end

local function stored()
  local out = {}
  for _, r in ipairs(rows.query(("SELECT k, v FROM %s ORDER BY k"):format(TABLE))) do
    out[#out + 1] = r.k .. "=" .. r.v
  end
  must(("TRUNCATE %s"):format(TABLE))
  return table.concat(out, " ")
end

test("a bad row is skipped, the others stored", function()
  local job = fake_job()
  local out, skipped = rows.write(job, { what = "items", sql = UPSERT,
    rows = { { k = "a", v = "1" }, { k = "b", v = "bad" }, { k = "c", v = "3" } } })
  eq(#out, 2, "rows returned")
  eq(#skipped, 1, "rows skipped")
  eq(skipped[1].sqlstate, "23514")
  eq(stored(), "a=1 c=3")
end)

test("two rows with one conflict key in a batch are both written, the later winning", function()
  local job = fake_job()
  local out, skipped, st = rows.write(job, { what = "items", sql = UPSERT,
    rows = { { k = "a", v = "first" }, { k = "b", v = "2" }, { k = "a", v = "second" } } })
  eq(st, nil, "sqlstate")
  eq(out and #out, 3, "rows returned")
  eq(#skipped, 0, "rows skipped")
  eq(stored(), "a=second b=2")
  assert(job.lines[1]:find("(21000:", 1, true), "the refused batch is logged: " .. tostring(job.lines[1]))
end)

test("the same inside a transaction, each statement in a savepoint", function()
  local job = fake_job()
  local out, skipped = sluice.db.transaction(function()
    return rows.write(job, { what = "items", sql = UPSERT, savepoint = true,
      rows = { { k = "x", v = "1" }, { k = "x", v = "2" }, { k = "y", v = "bad" } } })
  end)
  eq(out and #out, 2, "rows returned")
  eq(#skipped, 1, "rows skipped")
  eq(stored(), "x=2")
end)

test("without a key function a skipped row is named by its place in the whole list", function()
  local job = fake_job()
  local list = { { k = "a", v = "1" }, { k = "b", v = "2" }, { k = "c", v = "bad" },
                 { k = "d", v = "4" }, { k = "e", v = "bad" } }
  local _, skipped = rows.write(job, { what = "items", sql = UPSERT, rows = list, chunk = 2 })
  eq(#skipped, 2, "rows skipped")
  eq(skipped[1].key, "row 3")
  eq(skipped[2].key, "row 5")
  eq(stored(), "a=1 b=2 d=4")
  _, skipped = rows.write(job, { what = "items", sql = UPSERT, rows = list, chunk = 2,
                                 key = function(r) return "item " .. r.k end })
  eq(skipped[1].key, "item c")
  eq(stored(), "a=1 b=2 d=4")
end)

test("a chunk size that is not a whole number of at least 1 is refused", function()
  for _, chunk in ipairs({ 0, -1, 1.5, 0 / 0, "2", math.huge }) do
    raises(function()
      rows.write(fake_job(), { what = "items", sql = UPSERT, rows = { { k = "a", v = "1" } }, chunk = chunk })
    end, "rows.write: chunk must be a whole number of rows")
  end
  eq(stored(), "", "nothing written")
  local out = rows.write(fake_job(), { what = "items", sql = UPSERT, rows = { { k = "a", v = "1" } }, chunk = 2.0 })
  eq(#out, 1, "a whole float is a whole number")
  eq(stored(), "a=1")
end)

test("rows.store skips refused rows as write does, and raises when the write fails as a whole", function()
  local job = fake_job()
  local out, skipped = rows.store(job, { what = "items", sql = UPSERT,
    rows = { { k = "a", v = "1" }, { k = "b", v = "bad" } }, key = function(r) return "item " .. r.k end })
  eq(#out, 1, "rows returned")
  eq(skipped[1].key, "item b")
  eq(stored(), "a=1")
  raises(function()
    rows.store(job, { what = "items", sql = "INSERT INTO " .. SCHEMA .. ".nowhere SELECT $1::jsonb",
                      rows = { { k = "a", v = "1" } } })
  end, "database: items: ")
  eq(stored(), "", "nothing written")
end)

test("a single row the database refuses is skipped at once, not written again", function()
  local job = fake_job()
  local out, skipped = rows.write(job, { what = "items", sql = UPSERT, rows = { { k = "z", v = "bad" } },
                                         key = function(r) return "item " .. r.k end })
  eq(#out, 0, "rows returned")
  eq(#skipped, 1, "rows skipped")
  eq(#job.lines, 1, "one log line")
  assert(job.lines[1]:find("^items: item z skipped, the database refused it: "), job.lines[1])
  eq(stored(), "")
end)

must(("DROP SCHEMA %s CASCADE"):format(SCHEMA))
T.done()
