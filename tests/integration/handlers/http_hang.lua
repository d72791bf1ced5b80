-- http_hang: one GET that never gets an answer, under a 1 s run timeout — for
-- the test that a run's timeout removes its transfer at once.
return {
  label = "HTTP hang",
  params = { url = { type = "string", required = true } },
  timeout = "1s",
  max_retries = 0,
  run = function(job)
    job.log("requesting")
    local res, err = sluice.http.get(job.params.url, { timeout = 60 })
    return { status = res and res.status, err = err }
  end,
}
