-- number_probe: returns the numbers it is given and some it computes, and sends
-- them through sluice.db.query as a table parameter, so tests can check that
-- JSON keeps every digit (lua-cjson 2.1.0 kept 14).
return {
  label = "Number probe",
  params = {
    records = { type = "integer", default = 0 },
    ratio = { type = "number", default = 0 },
  },
  run = function(job)
    local v = {
      records = job.params.records, ratio = job.params.ratio,
      sum = 0.1 + 0.2, pi = math.pi, big = 123456789012345678, min = math.mininteger,
    }
    local rows, err = sluice.db.query("SELECT $1::jsonb ->> 'records' AS records, $1::jsonb ->> 'sum' AS sum", v)
    if not rows then error(err) end
    v.db_records, v.db_sum = rows[1].records, rows[1].sum
    job.dataset("numbers"):success(job.params.records, { ratio = job.params.ratio })
    return v
  end,
  datasets = { numbers = { label = "Numbers" } },
}
