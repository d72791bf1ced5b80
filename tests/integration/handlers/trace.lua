-- trace: records its start and its end in public.trace_effects (the test
-- creates it) around a pause, so that tests can tell which run of a job did
-- what, and whether two runs of one job ever worked at the same time. With
-- fail = true a run fails after its start.
return {
  label = "Trace",
  params = {
    n = { type = "integer", default = 0 },
    pause = { type = "number", min = 0, default = 0.5 },
    fail = { type = "boolean", default = false },
  },
  max_retries = 50,
  retry_base = "0.2s",
  retry_max = "2s",
  run = function(job)
    local function effect(kind)
      local rows, err = sluice.db.query(
        "INSERT INTO public.trace_effects (job_id, run_id, attempt, kind) VALUES ($1, $2, $3, $4)",
        job.id, job.run_id, job.attempt, kind)
      if not rows then error(err) end
    end
    effect("start")
    if job.params.fail then error("failing on purpose") end
    sluice.sleep(job.params.pause)
    effect("end")
    return { n = job.params.n }
  end,
}
