-- http_get: one GET of params.url; the run succeeds iff the answer is 2xx.
-- The job type of benchmark W3 (bench/w3.sh).
return {
  label = "HTTP GET",
  params = {
    url = { type = "string", required = true },
    timeout = { type = "number", min = 0.001, default = 30 },
  },
  timeout = "2 min",
  max_retries = 0,
  run = function(job)
    local res, err = sluice.http.get(job.params.url, { timeout = job.params.timeout })
    if not res then error(err, 0) end
    if not res.ok then error(("status %d"):format(res.status), 0) end
    return { status = res.status, bytes = #res.body, seconds = res.seconds }
  end,
}
