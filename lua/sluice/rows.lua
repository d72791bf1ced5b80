-- rows.lua — writing scraped rows to Postgres, shared by the handler libraries
-- (amazon.lua, reddit.lua, meta_assets.lua) and handlers (competitor_scrape,
-- template_scrape, meta_sync): a query that raises on error, and batch writes
-- that one bad row cannot fail.
--
--   local rows = require("sluice.rows")
--   local found = rows.query(sql, ...)   -- the rows, or raises "database: …"
--   local out, skipped = rows.write(job, {
--     what = "reddit_posts",                  -- names the table in log lines and errors
--     sql = UPSERT, args = table.pack(run_id, brand),  -- then the rows, as one more parameter:
--                                             -- a JSON array (nil args are sent as NULL)
--     rows = list, chunk = 500,               -- rows per statement: a whole number ≥ 1 (default 500)
--     key = function(r) return "post " .. r.reddit_id end,   -- the row's natural key, for the log
--                                             -- (without it: "row N", its place in `rows`)
--     savepoint = true,                       -- inside sluice.db.transaction (see below)
--   })
--   -- out: every row the statements returned; skipped: { {key, error, sqlstate}, … }
--   -- or nil, err, sqlstate when the write failed as a whole
--   local out, skipped = rows.store(job, { … })   -- the same, but a write that
--                                             -- failed as a whole raises "database: …"
--
-- Postgres refuses a whole statement for one bad value in it: a text with a NUL,
-- a number past its column, a value a constraint forbids. A scraped batch with
-- one such row would fail the job on every retry. So when a batch is refused
-- for a data reason — SQLSTATE class 21 (cardinality violation: two rows of
-- the batch with one conflict key, which an upsert cannot update twice), 22
-- (data exception) or 23 (integrity constraint violation) — it is written
-- again row by row: the good rows are stored (of two with one key, the later
-- wins), and each refused one is skipped and logged with its key and the
-- database's message (a batch of one row is that row's attempt: it is skipped
-- at once). The caller counts the skipped rows in its dataset's metadata
-- (`rows_skipped`). Any other failure — the connection, the server, a
-- statement that is wrong whatever the data — fails the write, and the job is
-- retried by its policy: skipping rows then would lose good data.
--
-- Inside a transaction a refused statement aborts the transaction, so there
-- each statement is wrapped in a savepoint (opts.savepoint); outside one, each
-- statement stands alone.

local M = {}

M.CHUNK = 500

-- The rows of a query, or raises "database: <message>" (not retried any
-- differently from other errors: the job's retry policy decides).
function M.query(sql, ...)
  local found, err = sluice.db.query(sql, ...)
  if not found then error("database: " .. err, 0) end
  return found
end

-- SQLSTATE classes that say the data was refused, rather than the connection,
-- the server or the statement: 21 cardinality violation ("ON CONFLICT DO
-- UPDATE command cannot affect row a second time": a batch holding two rows
-- with one key), 22 data exception, 23 integrity constraint violation.
local DATA_CLASSES = { ["21"] = true, ["22"] = true, ["23"] = true }

-- Whether a SQLSTATE is one of DATA_CLASSES. nil (no server answered) is not.
local function data_error(sqlstate)
  return type(sqlstate) == "string" and DATA_CLASSES[sqlstate:sub(1, 2)] == true
end

-- Runs one statement over `list`; inside a savepoint when asked, rolled back
-- to it when refused. Returns rows | nil, err, sqlstate.
local function attempt(opts, list)
  local given, args = opts.args or {}, {}
  local n = given.n or #given
  for i = 1, n do
    if given[i] == nil then args[i] = sluice.null else args[i] = given[i] end
  end
  args[n + 1] = sluice.json.encode(list)
  if not opts.savepoint then return sluice.db.query(opts.sql, table.unpack(args, 1, n + 1)) end
  local ok, err, st = sluice.db.query("SAVEPOINT sluice_rows")
  if not ok then return nil, err, st end
  local res, qerr, qst = sluice.db.query(opts.sql, table.unpack(args, 1, n + 1))
  ok, err, st = sluice.db.query(res and "RELEASE SAVEPOINT sluice_rows" or "ROLLBACK TO SAVEPOINT sluice_rows")
  if not ok then return nil, err, st end
  return res, qerr, qst
end

-- Writes opts.rows in chunks (see the header). Returns out, skipped | nil, err,
-- sqlstate. A chunk size that is not a whole number ≥ 1 raises, at `level`.
local function write(job, opts, level)
  local list, what = opts.rows or {}, opts.what or "rows"
  local size = opts.chunk or M.CHUNK
  size = type(size) == "number" and math.tointeger(size) or nil
  if not size or size < 1 then
    error(("rows.write: chunk must be a whole number of rows, at least 1, not %s")
          :format(tostring(opts.chunk)), level)
  end
  local out, skipped = {}, {}
  local function keep(res)
    table.move(res, 1, #res, #out + 1, out)
  end
  for first = 1, #list, size do
    local chunk = table.move(list, first, math.min(first + size - 1, #list), 1, {})
    local res, err, st = attempt(opts, chunk)
    if res then
      keep(res)
    elseif not data_error(st) then
      return nil, ("%s: %s"):format(what, err), st
    else
      if #chunk > 1 then
        job.log("%s: the database refused a batch of %d rows (%s: %s); writing them one by one",
                what, #chunk, st, err)
      end
      for i, row in ipairs(chunk) do
        -- a batch of one was that row's own attempt
        local one, rerr, rst
        if #chunk > 1 then one, rerr, rst = attempt(opts, { row }) else rerr, rst = err, st end
        if one then
          keep(one)
        elseif data_error(rst) then
          -- without a key, the row's 1-based place in opts.rows
          local key = opts.key and opts.key(row) or ("row %d"):format(first + i - 1)
          skipped[#skipped + 1] = { key = key, error = rerr, sqlstate = rst }
          job.log("%s: %s skipped, the database refused it: %s (%s)", what, key, rerr, rst)
        else
          return nil, ("%s: %s"):format(what, rerr), rst
        end
      end
    end
  end
  return out, skipped
end

-- out, skipped | nil, err, sqlstate (see write).
function M.write(job, opts)
  local out, skipped, st = write(job, opts, 3)
  return out, skipped, st
end

-- M.write for a caller that cannot go on without its rows: out, skipped, or
-- raises "database: <what>: <message>" when the write failed as a whole (the
-- job's retry policy decides what follows, as for M.query).
function M.store(job, opts)
  local out, skipped = write(job, opts, 3)
  if not out then error("database: " .. skipped, 0) end
  return out, skipped
end

return M
