-- sql_probe: runs a query it is given and reports what came back, so tests can
-- check that SQL errors reach handlers as nil, err and that values are typed.
return {
  label = "SQL probe",
  params = { sql = { type = "string", default = "select 1 as one" } },
  run = function(job)
    local rows, err = sluice.db.query(job.params.sql)
    if not rows then
      job.log("query failed: %s", err)
      return { ok = false, err = err }
    end
    job.log("query returned %d row(s)", #rows)
    return { ok = true, rows = rows }
  end,
}
