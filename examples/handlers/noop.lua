-- noop: does nothing and succeeds. Used by tests and the throughput benchmark.
return {
  label = "No-op",
  emoji = "⚪",
  description = "Succeeds at once; records the time it started when given t",
  params = {
    t = { type = "number", description = "enqueue timestamp (ms) for latency measurements" },
  },
  brand = "optional",
  run = function(job)
    return { ok = true }
  end,
}
