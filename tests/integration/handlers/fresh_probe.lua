-- fresh_probe: keeps two datasets and reports on them as its parameters say, so
-- tests can drive every freshness transition: success with a record count, an
-- early `return nil`, one dataset succeeding while the other fails, one skipped,
-- a failed run, and counts that are not counts (returned, or reported).
return {
  label = "Freshness probe",
  emoji = "🧪",
  params = {
    mode = { type = "string", enum = { "records", "return_nil", "partial", "skip_beta", "fail",
                                         "huge_records", "bad_report", "message_number", "guarded_text" },
             default = "records" },
    records = { type = "integer", min = 0, default = 7 },
    sleep = { type = "number", min = 0, max = 60, default = 0 },
  },
  datasets = {
    alpha_data = { label = "Alpha Data", max_age = "1 hour" },
    beta_data = { label = "Beta Data", max_age = "1 day" },
  },
  max_retries = 0,
  run = function(job)
    if job.params.sleep > 0 then sluice.sleep(job.params.sleep) end
    local mode = job.params.mode
    if mode == "return_nil" then return nil end
    if mode == "fail" then error("probe failed on purpose") end
    if mode == "huge_records" then return { records = 1e30 } end
    if mode == "bad_report" then
      local ok, err = pcall(function() job.dataset("alpha_data"):success(-1) end)
      local ok2, err2 = pcall(function() job.dataset("alpha_data"):success(1, "not a table") end)
      job.dataset("beta_data"):fail({ code = 7 })
      return { records = 3, refused = { ok, err, ok2, err2 } }
    end
    if mode == "message_number" then
      -- an error value whose message is a number, read through __index: the
      -- dataset's failure says it as the run's error does
      local err = setmetatable({}, { __index = { message = 42 } })
      job.dataset("beta_data"):fail(err)
      error(err)
    end
    if mode == "guarded_text" then
      -- an error value said by its __tostring although its metatable is
      -- guarded (getmetatable() hides it), as text with a NUL byte in it
      local err = setmetatable({}, { __tostring = function() return "guarded\0text" end,
                                     __metatable = "locked" })
      job.dataset("beta_data"):fail(err)
      error(err)
    end
    if mode == "skip_beta" then
      job.dataset("beta_data"):skip("not this time")
      return { records = 2 }
    end
    if mode == "partial" then
      job.dataset("alpha_data"):success(job.params.records, { source = "probe" })
      job.dataset("beta_data"):fail("beta source unavailable")
      return { records = 1 }
    end
    job.log("probe kept %d records", job.params.records)
    return { records = job.params.records }
  end,
}
