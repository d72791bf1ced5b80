-- amazon.lua — the amazon_review_scrape pipeline (handlers/amazon_review_scrape.lua
-- is its declaration): scrape a competitor's Amazon product reviews through the
-- Axesso actor with the seed's 31 configurations, dedupe them by review id,
-- upsert them, and update the URL row's counters.
--
-- The configurations go to the actor as one batched run, as in the seed. What
-- is paid for is never bought twice: the run id is checkpointed before polling
-- (a retry re-polls the same run and re-reads its dataset), reviews are stored
-- as soon as a run's results are in, and the names of the configurations whose
-- results are stored are checkpointed — when some configurations of a run
-- fail, the job fails and its retry starts a run with only those.

local apify = require("sluice.apify")
local clean = require("sluice.clean")
local plural = require("sluice.plural")
local refuse = require("sluice.refuse")
local rows = require("sluice.rows")

local M = {}

M.ACTOR = "axesso_data~amazon-reviews-scraper"
M.ACTOR_TIMEOUT = 900     -- seconds (the seed's)
M.ACTOR_MEMORY = 2048     -- MB
M.MAX_PAGES = 10
M.PRICE_PER_1K = 0.75     -- USD per 1,000 raw (pre-dedupe) results
M.STARS = { "five_star", "four_star", "three_star", "two_star", "one_star" }
M.KEYWORDS = {
  -- positive
  "great", "good", "love", "amazing", "excellent", "perfect", "works", "helpful", "happy", "recommend",
  -- negative
  "bad", "terrible", "awful", "broke", "waste", "refund", "disappointed",
  -- experience
  "quality", "price", "value", "smell", "taste",
}
local UPSERT_CHUNK = 500

local function is_str(v) return type(v) == "string" and v ~= "" end

---------------------------------------------------------------- configurations

-- The configurations for one product (docs/job-types.md, amazon_review_scrape),
-- each { name, input }:
-- all stars, one per star rating, the 22 keywords (include_keywords), and three
-- sorted by helpfulness (include_helpful). 31 in full.
function M.configs(asin, domain, include_keywords, include_helpful)
  local out = {}
  local function add(name, sort, extra)
    local input = {
      asin = asin, domainCode = domain, maxPages = M.MAX_PAGES, sortBy = sort,
      reviewerType = "all_reviews", mediaType = "all_contents", formatType = "current_format",
    }
    for k, v in pairs(extra or {}) do input[k] = v end
    out[#out + 1] = { name = name, input = input }
  end
  add("recent", "recent")
  for _, s in ipairs(M.STARS) do add("recent:" .. s, "recent", { filterByStar = s }) end
  if include_keywords then
    for _, k in ipairs(M.KEYWORDS) do add("keyword:" .. k, "recent", { filterByKeyword = k }) end
  end
  if include_helpful then
    add("helpful", "helpful")
    add("helpful:five_star", "helpful", { filterByStar = "five_star" })
    add("helpful:one_star", "helpful", { filterByStar = "one_star" })
  end
  return out
end

-- The configuration of `list` an item's echoed input describes, or nil.
local function config_of(list, input)
  if type(input) ~= "table" then return nil end
  for _, c in ipairs(list) do
    local i = c.input
    if input.sortBy == i.sortBy and (input.filterByStar or nil) == i.filterByStar
       and (input.filterByKeyword or nil) == i.filterByKeyword then
      return c
    end
  end
  return nil
end

---------------------------------------------------------------- items

-- rating: 4, 4.0 or "4.0 out of 5 stars" → 4; anything else → nil.
function M.rating(v)
  local n = type(v) == "number" and v or (type(v) == "string" and tonumber(v:match("^%s*(%d+%.?%d*)")))
  if not n then return nil end
  n = math.floor(n)
  if n < 1 or n > 5 then return nil end
  return math.tointeger(n)
end

-- The first 10 characters as a YYYY-MM-DD date, or nil.
function M.date(v)
  if type(v) ~= "string" then return nil end
  local y, m, d = v:sub(1, 10):match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if not y or m < 1 or m > 12 or d < 1 then return nil end
  local dim = ({ 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 })[m]
  if m == 2 and (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) then dim = 29 end
  if d > dim then return nil end
  return v:sub(1, 10)
end

-- One item with a review id → a review row, and notes on what had to be
-- cleaned: NUL characters are removed from the texts (Postgres refuses them),
-- and helpful votes that are no count within the column's range are left
-- empty. One such item must not fail the batch it is stored in.
local function review_of(it, id, notes)
  local r, nul = {}, {}
  for col, key in pairs({ title = "title", body = "text", author = "author" }) do
    local s, changed = clean.text(it[key])
    if is_str(s) then r[col] = s end
    if changed then nul[#nul + 1] = key end
  end
  r.review_id, r.rating, r.review_date = id, M.rating(it.rating), M.date(it.date)
  -- (not `… and it.verified or nil`: that turns false into nil, and an
  -- unverified purchase into an unknown one)
  if type(it.verified) == "boolean" then r.verified_purchase = it.verified end
  local votes, why = clean.count(it.numberOfHelpful, clean.INT4_MAX)
  r.helpful_votes = votes
  notes[#notes + 1] = clean.nul_note("review " .. id, nul)
  if why then notes[#notes + 1] = ("review %s: helpful votes left empty: %s"):format(id, why) end
  return r
end

-- A run's items → reviews (first occurrence of each reviewId), the names of the
-- configurations that failed, how many items carried no review id, notes
-- naming the reviews whose values had to be cleaned, and how many items were
-- neither a review nor the actor's status answer (a statusCode: "no reviews
-- found", a failed configuration).
function M.parse_items(items, round_configs, status_message)
  local reviews, seen, failed, dropped, notes, unreadable = {}, {}, {}, 0, {}, 0
  for _, it in ipairs(items) do
    if type(it) == "table" then
      local id = clean.text(it.reviewId)
      if is_str(id) then
        if not seen[id] then
          seen[id] = true
          reviews[#reviews + 1] = review_of(it, id, notes)
        end
      else
        dropped = dropped + 1
        local code = tonumber(it.statusCode)
        if not code then unreadable = unreadable + 1 end
        if code and code >= 400 and code ~= 404 then
          local c = config_of(round_configs, it.input)
          if c then failed[c.name] = true end
        end
      end
    end
  end
  -- "Finished with 2 failed input(s) of 31: 4, 17" (0-based indexes of the batch)
  local list = type(status_message) == "string" and status_message:match("failed input%(s%) of %d+: ([%d, ]+)")
  if list then
    for i in list:gmatch("%d+") do
      local c = round_configs[tonumber(i) + 1]
      if c then failed[c.name] = true end
    end
  end
  return reviews, failed, dropped, notes, unreadable
end

---------------------------------------------------------------- storage

-- Upserts reviews for the URL row; returns how many were new, and the reviews
-- the database refused (rows.store: skipped and logged, the others stored).
local function save_reviews(job, url, reviews)
  local out, skipped = rows.store(job, {
    what = "competitor_amazon_reviews", chunk = UPSERT_CHUNK, rows = reviews,
    key = function(r) return "review " .. r.review_id end,
    args = table.pack(url.id, url.competitor_id, url.brand_id, url.competitor_product_id,
                      url.asin, job.id),
    sql = [[
      INSERT INTO public.competitor_amazon_reviews AS t
        (competitor_amazon_url_id, competitor_id, brand_id, competitor_product_id, review_id, asin,
         rating, title, body, author, review_date, verified_purchase, helpful_votes, job_id,
         first_job_id)
      SELECT $1, $2, $3, $4, x.review_id, $5, x.rating, x.title, x.body, x.author, x.review_date,
             x.verified_purchase, x.helpful_votes, $6, $6
      FROM jsonb_to_recordset($7::jsonb) AS x(review_id text, rating smallint, title text, body text,
        author text, review_date date, verified_purchase boolean, helpful_votes integer)
      ON CONFLICT (competitor_amazon_url_id, review_id) DO UPDATE SET
        rating = excluded.rating, title = excluded.title, body = excluded.body,
        author = excluded.author, review_date = excluded.review_date,
        verified_purchase = excluded.verified_purchase, helpful_votes = excluded.helpful_votes,
        job_id = excluded.job_id, scraped_at = now()
      RETURNING (xmax = 0) AS inserted]],
  })
  local new = 0
  for _, r in ipairs(out) do if r.inserted then new = new + 1 end end
  return new, skipped
end

-- last_scraped_at, total_reviews_scraped (reviews stored for the URL) and
-- scrape_cost_estimate (this scrape's raw results × $0.75 / 1,000).
local function update_url(url, cost)
  local found = rows.query([[
    UPDATE public.competitor_amazon_urls u SET last_scraped_at = now(),
      total_reviews_scraped = (SELECT count(*) FROM public.competitor_amazon_reviews r
                               WHERE r.competitor_amazon_url_id = u.id),
      scrape_cost_estimate = $2
    WHERE u.id = $1 RETURNING total_reviews_scraped]], url.id, cost)
  return found[1] and found[1].total_reviews_scraped or 0
end

---------------------------------------------------------------- the pipeline

local function names_of(list)
  local out = {}
  for i, c in ipairs(list) do out[i] = c.name end
  return out
end

function M.run(job)
  local p = job.params
  local _, aerr = apify.config()
  if aerr then error(sluice.permanent(aerr), 0) end

  local found = rows.query([[
    SELECT u.id, u.competitor_id, u.brand_id, u.competitor_product_id, u.amazon_url, u.asin,
           u.domain_code, c.name AS competitor
    FROM public.competitor_amazon_urls u JOIN public.competitors c ON c.id = u.competitor_id
    WHERE u.id = $1]], p.competitor_amazon_url_id)
  local url = found[1]
  -- input that rules the run out leaves amazon_reviews as it was (sluice.refuse)
  if not url then
    refuse(job, { "amazon_reviews" }, ("competitor_amazon_url_id %s: no such row in competitor_amazon_urls "
      .. "(list them with `sluice competitors list`, add one with `sluice competitors add-amazon-url "
      .. "COMPETITOR URL`)"):format(p.competitor_amazon_url_id))
  end
  if job.brand_id and job.brand_id ~= url.brand_id then
    refuse(job, { "amazon_reviews" }, ("competitor_amazon_url_id %s belongs to another brand than this job's")
      :format(url.id))
  end
  if p.asin ~= "Unknown" and p.asin ~= url.asin then
    job.log("note: the asin parameter (%s) differs from the URL row's ASIN; scraping %s", p.asin, url.asin)
  end

  local configs = M.configs(url.asin, url.domain_code, p.include_keywords, p.include_helpful)
  local by_name = {}
  for _, c in ipairs(configs) do by_name[c.name] = c end
  job.log("%s: ASIN %s on amazon.%s, %s", url.competitor, url.asin, url.domain_code,
          plural(#configs, "configuration"))

  local st = job.checkpoint("amazon")
  if type(st) ~= "table" then st = {} end
  st.done = type(st.done) == "table" and st.done or {}
  st.rounds, st.raw, st.reviews, st.new = st.rounds or 0, st.raw or 0, st.reviews or 0, st.new or 0
  st.skipped = st.skipped or 0

  local pending = {}
  for _, c in ipairs(configs) do
    if not st.done[c.name] then pending[#pending + 1] = c end
  end
  local failed_names = {}
  if #pending < #configs then
    job.log("%d of %s fetched and stored by earlier attempts", #configs - #pending,
            plural(#configs, "configuration"))
  end

  if #pending > 0 then
    -- the round in progress (its run may be running or done but unprocessed), or a new one
    local round = st.current
    if type(round) ~= "table" or type(round.names) ~= "table" then
      st.rounds = st.rounds + 1
      round = { n = st.rounds, names = names_of(pending) }
      st.current = round
      job.checkpoint("amazon", st)
    end
    local round_configs, inputs = {}, {}
    for _, name in ipairs(round.names) do
      local c = by_name[name]
      if c then round_configs[#round_configs + 1] = c; inputs[#inputs + 1] = c.input end
    end
    local items, run = apify.run_actor(job, ("amazon_run_%d"):format(round.n), M.ACTOR, { input = inputs },
                                       { timeout = M.ACTOR_TIMEOUT, memory = M.ACTOR_MEMORY })
    local reviews, failed, dropped, notes, unreadable = M.parse_items(items, round_configs, run.statusMessage)
    if #reviews == 0 and unreadable > 0 then
      -- items came, and none is a review or a status: not "no reviews", but
      -- output this code cannot read (the actor changed its format, say).
      -- Reported as 0 reviews, the product would look scraped and fresh; a
      -- retry would read the same run again
      error(sluice.permanent(("none of the %s run %s returned is a review (no reviewId) or the "
        .. "actor's status answer (statusCode): its output cannot be read, nothing was stored; the "
        .. "first item's keys: %s"):format(plural(#items, "item"), tostring(run.id), apify.item_keys(items))), 0)
    end
    clean.notes(job, notes, "review")
    local new, skipped = save_reviews(job, url, reviews)
    local nfailed = 0
    for _, c in ipairs(round_configs) do
      if failed[c.name] then
        nfailed = nfailed + 1
        failed_names[#failed_names + 1] = c.name
      else
        st.done[c.name] = true
      end
    end
    st.raw = st.raw + #items
    st.reviews = st.reviews + #reviews
    st.new = st.new + new
    st.skipped = st.skipped + #skipped
    st.current = nil
    job.checkpoint("amazon", st)
    job.log("run %s: %s, %s (%d new), %s without a review id, %d of %s failed", run.id,
            plural(#items, "raw result"), plural(#reviews, "unique review"), new, plural(dropped, "item"),
            nfailed, plural(#round_configs, "configuration"))
  end

  local cost = st.raw * M.PRICE_PER_1K / 1000
  local total = update_url(url, cost)
  -- the unique reviews this job received, over all its attempts and runs, and
  -- those it stored first: the rounds overlap (a retried configuration returns
  -- reviews an earlier round stored), so their counts cannot be summed, and an
  -- attempt that stored reviews may have ended before its checkpoint counted
  -- them; each stored review carries the job that wrote it last and the one
  -- that inserted it
  local received, new = st.reviews, st.new
  if job.id then
    local c = rows.query([[
      SELECT count(*) FILTER (WHERE job_id = $2) AS received, count(*) FILTER (WHERE first_job_id = $2) AS new
      FROM public.competitor_amazon_reviews
      WHERE competitor_amazon_url_id = $1 AND (job_id = $2 OR first_job_id = $2)]], url.id, job.id)[1]
    received, new = c.received, c.new
  end
  job.log("%s now has %s stored; this scrape: %s, est. $%.4f", url.asin, plural(total, "review"),
          plural(st.raw, "raw result"), cost)

  if #failed_names > 0 then
    error(("%d of %s failed (%s); the reviews of the others are stored and the retry fetches only "
      .. "these"):format(#failed_names, plural(#configs, "configuration"), table.concat(failed_names, ", ")), 0)
  end
  return {
    status = "success", competitor_amazon_url_id = url.id, competitor = url.competitor, asin = url.asin,
    domain_code = url.domain_code, configurations = #configs, actor_runs = st.rounds,
    raw_results = st.raw, reviews = received, reviews_new = new, reviews_total = total,
    scrape_cost_estimate = cost, records = received, rows_skipped = st.skipped,
  }
end

return M
