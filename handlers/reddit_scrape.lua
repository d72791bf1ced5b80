-- reddit_scrape: Reddit sentiment research (the seed's Checkpoint 007 job type).
-- Scrapes posts for the search queries through the Apify Reddit actor, keeps
-- the engaging ones, scores them with the LLM (relevance, signal, buyer intent),
-- extracts quotes from the best into six sentiment categories, stores the run,
-- posts and quotes, and optionally merges the quotes into a persona. The
-- pipeline itself lives in lua/sluice/reddit.lua; docs/job-types.md describes it.
local reddit = require("sluice.reddit")

return {
  label = "Reddit Scrape",
  emoji = "🔍",
  description = "Reddit sentiment research: scrape, filter, LLM-score, extract quotes, sync to a persona",
  -- The seed's queued mode required a brand only because its queue did; its
  -- direct mode ran standalone research. sluice queues brand-less jobs and keeps
  -- their freshness per (brand or none), so a brand is optional.
  brand = "optional",
  timeout = "45 min",
  max_retries = 3,
  retry_base = "30s",
  params = {
    search_queries = { type = "array", items = { type = "string", min_length = 1 }, required = true,
                       min_items = 1, description = "Search terms for Reddit" },
    subreddits = { type = "array", items = { type = "string", min_length = 1 }, nullable = true,
                   description = "Subreddits to restrict search to" },
    timeframe = { type = "string", enum = { "hour", "day", "week", "month", "year", "all" },
                  default = "month", description = "Time range" },
    max_posts = { type = "integer", min = 10, max = 5000, default = 500,
                  description = "Maximum posts to scrape" },
    min_upvotes = { type = "integer", min = 0, default = 20, description = "Minimum upvotes filter" },
    min_comments = { type = "integer", min = 0, default = 5, description = "Minimum comments filter" },
    relevance_threshold = { type = "number", min = 0, max = 1, default = 0.6,
                            description = "Relevance score cutoff (0-1)" },
    signal_threshold = { type = "number", min = 0, max = 1, default = 0.5,
                         description = "Signal score cutoff (0-1)" },
    top_percentile = { type = "number", min = 0, exclusive_min = true, max = 1, default = 0.20,
                       description = "Top share of posts (by combined score) kept for quote extraction, (0-1]" },
    persona_id = { type = "uuid", nullable = true, description = "Persona to sync quotes to" },
    auto_sync_to_persona = { type = "boolean", default = false,
                             description = "Merge the quotes into the persona's fields" },
    persona_context = { type = "string", nullable = true,
                        description = "Persona description for LLM relevance" },
    topic_context = { type = "string", nullable = true, description = "Topic/domain focus for LLM relevance" },
  },
  datasets = {
    reddit_data = { label = "Reddit Data", max_age = "7 days" },
  },
  run = function(job)
    local r = reddit.run(job)
    if r.status ~= "success" then
      error(("reddit pipeline ended %s"):format(tostring(r.status)))
    end
    job.dataset("reddit_data"):success(r.records, {
      run_id = r.run_id, posts_top_selected = r.posts_top_selected, quotes = r.quotes_extracted,
      rows_skipped = r.rows_skipped,
    })
    return r
  end,
}
