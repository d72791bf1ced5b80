-- sleep: waits without blocking anything else, then succeeds. Shows that hundreds
-- of runs can wait at once on one thread.
return {
  label = "Sleep",
  emoji = "💤",
  params = {
    seconds = { type = "number", min = 0, max = 3600, default = 1 },
  },
  timeout = "2 hours",
  run = function(job)
    local started = sluice.now()
    sluice.sleep(job.params.seconds)
    return { slept = sluice.now() - started }
  end,
}
