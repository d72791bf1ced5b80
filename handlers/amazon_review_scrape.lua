-- amazon_review_scrape: a competitor's Amazon product reviews (the seed's
-- Checkpoint 008 job type). Looks up the competitor_amazon_urls row, scrapes its
-- reviews with the seed's 31 actor configurations, dedupes them by review id,
-- upserts them into competitor_amazon_reviews and updates the row's counters.
-- A retry never buys results again (see lua/sluice/amazon.lua). History per
-- URL: `sluice runs --type amazon_review_scrape --param competitor_amazon_url_id=ID`.
local amazon = require("sluice.amazon")
local rows = require("sluice.rows")

return {
  label = "Amazon Review Scrape",
  emoji = "📦",
  description = "Reviews of a competitor's Amazon product (31 actor configurations, deduplicated)",
  -- The reviews belong to the URL row's brand; queued jobs name it so that the
  -- brand's amazon_reviews freshness is kept (`sluice run` may omit it).
  brand = "required",
  timeout = "45 min",
  max_retries = 3,
  retry_base = "30s",
  params = {
    competitor_amazon_url_id = { type = "uuid", required = true,
                                 description = "UUID of the competitor_amazon_urls record" },
    asin = { type = "string", default = "Unknown", description = "ASIN for logging (informational only)" },
    include_keywords = { type = "boolean", default = true,
                         description = "Include keyword filter configs for broader coverage" },
    include_helpful = { type = "boolean", default = true, description = "Include helpful-sort configs" },
  },
  datasets = {
    amazon_reviews = { label = "Amazon Reviews", max_age = "7 days" },
  },
  run = function(job)
    -- freshness is the brand's: a run without one (`sluice run` without --brand)
    -- stores the URL row's brand's reviews, but cannot say so for that brand, and
    -- a platform row would call reviews fresh that no platform scope has
    if not job.brand_id then
      job.dataset("amazon_reviews"):skip("run without a brand")
      local r = amazon.run(job)
      local b = rows.query([[SELECT b.name FROM public.competitor_amazon_urls u
                             JOIN sluice.brands b ON b.id = u.brand_id WHERE u.id = $1]],
                           r.competitor_amazon_url_id)[1]
      job.log("run without a brand: %s's amazon_reviews freshness is left as it was (run or queue "
        .. "with --brand to keep it)", b and b.name or "the URL's brand")
      return r
    end
    local r = amazon.run(job)
    job.dataset("amazon_reviews"):success(r.records, {
      competitor_amazon_url_id = r.competitor_amazon_url_id, asin = r.asin, reviews_total = r.reviews_total,
      rows_skipped = r.rows_skipped,
    })
    return r
  end,
}
