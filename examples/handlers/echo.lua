-- echo: logs its message, optionally fails, and returns its parameters. Used by
-- tests of logs, results, failures and retries.
return {
  label = "Echo",
  emoji = "📣",
  params = {
    message = { type = "string", default = "hello" },
    fail = { type = "boolean", default = false, description = "raise an error instead" },
    permanent = { type = "boolean", default = false, description = "fail without retries" },
    records = { type = "integer", min = 0 },
  },
  datasets = {
    echo_data = { label = "Echo Data", max_age = "1 hour" },
  },
  max_retries = 1,
  retry_base = 1,
  run = function(job)
    job.log("echo: %s", job.params.message)
    if job.params.fail then
      if job.params.permanent then
        error(sluice.permanent("echo was asked to fail permanently"))
      end
      error("echo was asked to fail")
    end
    return { message = job.params.message, records = job.params.records, attempt = job.attempt }
  end,
}
