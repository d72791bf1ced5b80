-- asset_slow: streams params.url into a pending asset under a 1 s run timeout —
-- for the test that a run cut off mid-download leaves no pending file behind.
return {
  label = "Slow asset download",
  params = { url = { type = "string", required = true } },
  timeout = "1s",
  max_retries = 0,
  run = function(job)
    local part <close> = assert(sluice.assets.begin())
    job.log("downloading")
    local res, err = sluice.http.get(job.params.url, { save_to = part, timeout = 60 })
    return { status = res and res.status, err = err }
  end,
}
