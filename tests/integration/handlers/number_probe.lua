-- number_probe: returns the numbers it is given and some it computes, and sends
-- them through sluice.db.query as a table parameter and back as a jsonb column,
-- so tests can check that JSON keeps every digit (lua-cjson 2.1.0 kept 14, and
-- read numbers as doubles).
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
    local doc, err2 = sluice.db.query("SELECT $1::jsonb AS doc", { big = v.big, min = v.min })
    if not doc then error(err2) end
    v.db_json_big, v.db_json_min = doc[1].doc.big, doc[1].doc.min
    job.dataset("numbers"):success(job.params.records, { ratio = job.params.ratio })
    return v
  end,
  datasets = { numbers = { label = "Numbers" } },
}
