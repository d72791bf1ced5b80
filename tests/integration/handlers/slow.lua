-- slow: sleeps for params.seconds with a short timeout, for timeout, cancel and
-- crash-rescue tests.
return {
  label = "Slow",
  params = {
    seconds = { type = "number", min = 0, default = 5 },
    tag = { type = "string" },
  },
  timeout = "2s",
  max_retries = 2,
  retry_base = "0.5s",
  run = function(job)
    job.log("sleeping %.1fs", job.params.seconds)
    sluice.sleep(job.params.seconds)
    return { slept = job.params.seconds }
  end,
}
