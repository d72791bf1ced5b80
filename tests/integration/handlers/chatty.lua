-- chatty: logs a line, waits, logs another, for tests that follow a long run's log.
return {
  label = "Chatty",
  params = { pause = { type = "number", min = 0, default = 2.5 } },
  run = function(job)
    job.log("step 1 — naïve ünïcode")
    sluice.sleep(job.params.pause)
    job.log("step 2")
    sluice.sleep(job.params.pause)
    job.log("done")
    return { records = 1 }
  end,
}
