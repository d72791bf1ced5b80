-- count: records every execution in public.count_runs (the test creates it), so
-- tests can prove that each job ran exactly once across workers.
return {
  label = "Count",
  params = { n = { type = "integer", default = 0 }, pause = { type = "number", default = 0 } },
  max_retries = 5,
  retry_base = "0.2s",
  run = function(job)
    if job.params.pause > 0 then sluice.sleep(job.params.pause) end
    local rows, err = sluice.db.query("INSERT INTO public.count_runs (job_id, run_id) VALUES ($1, $2)",
                                       job.id, job.run_id)
    if not rows then error(err) end
    return { n = job.params.n }
  end,
}
