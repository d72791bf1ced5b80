-- test_transaction.lua — sluice.db.transaction commits, or says it did not. A
-- query that fails inside a transaction returns nil, err without raising, and
-- Postgres then answers COMMIT with ROLLBACK instead of an error: transaction()
-- must return nil, err, sqlstate naming that failure, not fn's values. The
-- database is the test suite's cluster; the table is this file's own.

local t = require("testlib")
local db = sluice.db

local TABLE = "public.sluice_test_transaction"
assert(db.query("DROP TABLE IF EXISTS " .. TABLE))
assert(db.query("CREATE TABLE " .. TABLE .. " (k text PRIMARY KEY)"))

local function count(k)
  return db.query("SELECT count(*) AS n FROM " .. TABLE .. " WHERE k = $1", k)[1].n
end

t.test("a transaction commits and returns fn's values", function()
  local a, b = db.transaction(function()
    assert(db.query("INSERT INTO " .. TABLE .. " (k) VALUES ('ok')"))
    return "done", 2
  end)
  t.eq(a, "done", "first value")
  t.eq(b, 2, "second value")
  t.eq(count("ok"), 1, "rows committed")
end)

t.test("a failed query inside it: rolled back, and said so", function()
  local r, err, state = db.transaction(function()
    db.query("INSERT INTO " .. TABLE .. " (k) VALUES ('tx1')")
    local rows, qerr, qstate = db.query("SELECT 1/0")
    t.eq(rows, nil, "the failed query's rows")
    t.eq(qstate, "22012", "the failed query's sqlstate " .. tostring(qerr))
    return "done"
  end)
  t.eq(r, nil, "result")
  t.eq(err, "the transaction was rolled back because a statement in it failed: division by zero",
    "error")
  t.eq(state, "22012", "sqlstate: the first failure's")
  t.eq(count("tx1"), 0, "rows committed")
end)

t.test("the first failure is the one named, not the aborted ones after it", function()
  local r, err, state = db.transaction(function()
    db.query("INSERT INTO " .. TABLE .. " (k) VALUES ('ok')") -- a duplicate key
    db.query("SELECT 1/0")                                    -- 25P02: aborted already
    return true
  end)
  t.eq(r, nil, "result")
  t.eq(err:find("a statement in it failed: duplicate key value", 1, true) ~= nil, true, err)
  t.eq(state, "23505", "sqlstate")
end)

t.test("a failure is not carried into the next transaction", function()
  t.eq(db.transaction(function() db.query("SELECT 1/0") end), nil, "the failed one")
  t.eq(db.transaction(function() return db.query("SELECT 8 AS x")[1].x end), 8, "the next one")
  t.eq(db.query("SELECT 9 AS x")[1].x, 9, "a query after it")
end)

t.test("fn's own nil, err still rolls back and returns them", function()
  local r, err, state = db.transaction(function()
    db.query("INSERT INTO " .. TABLE .. " (k) VALUES ('tx2')")
    return nil, "changed my mind", "P0001"
  end)
  t.eq(r, nil, "result")
  t.eq(err, "changed my mind", "error")
  t.eq(state, "P0001", "sqlstate")
  t.eq(count("tx2"), 0, "rows committed")
end)

t.test("fn raising after a failed query still propagates", function()
  local ok, err = pcall(db.transaction, function()
    db.query("SELECT 1/0")
    error("boom", 0)
  end)
  t.eq(ok, false, "raised")
  t.eq(err, "boom", "error")
end)

t.test("something other than a function is refused before BEGIN", function()
  -- it was "attempt to call a nil value", from inside the transaction
  local ok, err = pcall(db.transaction, nil)
  t.eq(ok, false, "raised")
  t.eq(err, "sluice.db.transaction: expected a function, got a nil", "error")
  t.eq(db.transaction(setmetatable({}, { __call = function(_, a) return a end }), 3), 3, "a callable table")
end)

assert(db.query("DROP TABLE " .. TABLE))
t.done()
