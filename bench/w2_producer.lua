-- w2_producer.lua — enqueues n no-op jobs one at a time on a fixed schedule
-- (gap_ms apart), each carrying t = the enqueue time in ms, stamped just before
-- the INSERT. Run with `sluice exec bench/w2_producer.lua N GAP_MS`.
local n = tonumber(arg[1] or "500")
local gap = tonumber(arg[2] or "20") / 1000
-- connect and enqueue once before the first stamp, as a producing application
-- would have long before (the peer benchmark's graphile-worker producer enqueues
-- a warm-up job too): the first call of queue_one_time_job on a connection
-- compiles it in that backend. The warm-up is rolled back: no job is left.
sluice.db.transaction(function()
  assert(sluice.db.query("SELECT sluice.queue_one_time_job(NULL::text, 'noop', '{}'::jsonb)"))
  return nil, "warm-up only"
end)
local start = sluice.now()
for i = 1, n do
  local due = start + (i - 1) * gap
  local wait = due - sluice.now()
  if wait > 0 then sluice.sleep(wait) end
  local t = sluice.now() * 1000
  local ok, err = sluice.db.query(
    "SELECT sluice.queue_one_time_job(NULL::text, 'noop', jsonb_build_object('t', $1::float8))", t)
  if not ok then error(err) end
end
