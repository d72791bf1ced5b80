-- refuse.lua — a run whose input rules it out before it works on anything
-- (a brand-required type run without a brand, an id that names no row or
-- another brand's row) fails for good and leaves its datasets as they were:
-- the brand's data was not touched, so it is not "failing" (a typo in an id
-- would otherwise turn a fresh dataset red, and `queue --if-stale` would queue
-- work for it), and no platform row is made for a type that keeps none. The
-- run and its job record the failure; `sluice runs` and `sluice jobs` show it.
-- Used by the six shipped job types (handlers/, lua/sluice/amazon.lua and
-- reddit.lua). A missing credential or a setup the brand lacks (no Meta ad
-- account) is not refused here: the brand's data cannot be kept until someone
-- acts, which is what `failing` says.
--
--   local refuse = require("sluice.refuse")
--   refuse(job, { "competitor_ads" }, "competitor … does not exist (…)")  -- raises

return function(job, datasets, message)
  for _, key in ipairs(datasets) do job.dataset(key):skip(message) end
  error(sluice.permanent(message), 0)
end
