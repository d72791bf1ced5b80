-- review_probe: a brand-only job type shaped like the seed's amazon_review_scrape,
-- with one parameter of each kind, for validation and `runs --param` tests.
return {
  label = "Review probe",
  emoji = "📦",
  brand = "required",
  params = {
    competitor_amazon_url_id = { type = "uuid", required = true },
    asin = { type = "string", pattern = "[A-Z0-9]+", default = "UNKNOWN" },
    include_keywords = { type = "boolean", default = true },
    max_reviews = { type = "integer", min = 1, max = 5000, default = 500 },
    min_rating = { type = "number", min = 0, max = 5, default = 0 },
    sort = { type = "string", enum = { "recent", "helpful" }, default = "recent" },
    keywords = { type = "array", items = "string", min_items = 1, nullable = true },
    source_url = { type = "url", nullable = true },
  },
  datasets = { amazon_reviews = { label = "Amazon Reviews", max_age = "7 days" } },
  run = function(job)
    job.log("reviews for %s (%s)", job.params.asin, job.params.competitor_amazon_url_id)
    if job.params.asin == "FAIL" then error(sluice.permanent("asin FAIL cannot be scraped")) end
    return { records = job.params.max_reviews }
  end,
}
