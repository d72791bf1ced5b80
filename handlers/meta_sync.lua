-- meta_sync: a brand's Meta ads performance, from the Graph API into
-- meta_ads_performance, then what hangs off it. Five steps:
--   1. insights of the brand's ad account at level=ad, time_increment=1, for
--      today − days_back … today (UTC), every page, within the Graph limit
--   2. upsert of the rows on (meta_ad_id, date)           → meta_ads_performance
--   3. creatives: thumbnail, image, video id, copy, status → ad_thumbnails
--      (new ads' creatives; every known ad's status, read again)
--   4. videos and images into the asset store (as asset_download) → ad_assets
--   5. with auto_classify, an LLM classification of each ad not yet classified
--      for its current copy and format                   → ad_classifications
-- Steps 1–2 are the job: if they fail the run fails (and is retried). Steps 3–5
-- each report their own dataset; a failure there is logged and reported and the
-- run still succeeds. The account is the brand's primary brand_ad_accounts row
-- (sluice.add_ad_account); its OAuth token is used while valid, else
-- META_ACCESS_TOKEN.
local clean = require("sluice.clean")
local plural = require("sluice.plural")
local graph = require("sluice.graph")
local meta_assets = require("sluice.meta_assets")
local refuse = require("sluice.refuse")
local rows = require("sluice.rows")

local FIELDS = table.concat({
  "ad_id", "ad_name", "adset_id", "adset_name", "campaign_id", "campaign_name", "objective",
  "spend", "impressions", "reach", "frequency", "cpm", "clicks", "outbound_clicks",
  "outbound_clicks_ctr", "cost_per_outbound_click", "actions", "action_values",
  "cost_per_action_type", "purchase_roas", "video_play_actions", "video_avg_time_watched_actions",
  "video_p25_watched_actions", "video_p50_watched_actions", "video_p75_watched_actions",
  "video_p95_watched_actions", "video_p100_watched_actions", "video_thruplay_watched_actions",
}, ",")
local PAGE_SIZE = 100
local PROMPT_VERSION = "classify-v1"
local MAX_CLASSIFY = 100

local v = clean.value  -- null and "" read as absent

---------------------------------------------------------------- insights rows

local function num(x)
  x = v(x)
  if x == nil then return nil end
  return tonumber(x)
end

-- The value of the first action type found in a list of {action_type, value}.
local function action(list, ...)
  list = v(list)
  if type(list) ~= "table" then return nil end
  for i = 1, select("#", ...) do
    local want = select(i, ...)
    for _, e in ipairs(list) do
      if type(e) == "table" and e.action_type == want then return num(e.value) end
    end
  end
  return nil
end

local function first(list)
  list = v(list)
  if type(list) ~= "table" or type(list[1]) ~= "table" then return nil end
  return num(list[1].value)
end

local function ratio(a, b, scale)
  if not a or not b or b == 0 then return nil end
  return a / b * (scale or 1)
end

-- One insights row → a meta_ads_performance row (nil when it has no ad id or date).
local function perf_row(r, account)
  local ad_id, date = v(r.ad_id), v(r.date_start)
  if not ad_id or not date then return nil end
  local spend, impressions = num(r.spend), num(r.impressions)
  local link_clicks = first(r.outbound_clicks)
  local purchases = action(r.actions, "omni_purchase", "purchase")
  local video_views = action(r.actions, "video_view")
  local thruplay = first(r.video_thruplay_watched_actions)
  return {
    meta_ad_account_id = account, meta_ad_id = tostring(ad_id), date = date,
    meta_adset_id = v(r.adset_id), adset_name = v(r.adset_name),
    meta_campaign_id = v(r.campaign_id), campaign_name = v(r.campaign_name), ad_name = v(r.ad_name),
    campaign_objective = v(r.objective),
    spend = spend, impressions = impressions, reach = num(r.reach), frequency = num(r.frequency),
    cpm = num(r.cpm) or ratio(spend, impressions, 1000),
    link_clicks = link_clicks, link_ctr = first(r.outbound_clicks_ctr),
    link_cpc = first(r.cost_per_outbound_click),
    add_to_carts = action(r.actions, "add_to_cart", "omni_add_to_cart"),
    cost_per_add_to_cart = action(r.cost_per_action_type, "add_to_cart", "omni_add_to_cart"),
    purchases = purchases,
    purchase_value = action(r.action_values, "omni_purchase", "purchase"),
    roas = first(r.purchase_roas),
    conversion_rate = ratio(purchases, link_clicks, 100),
    video_views = video_views,
    video_avg_watch_time = first(r.video_avg_time_watched_actions),
    video_p25_watched = first(r.video_p25_watched_actions),
    video_p50_watched = first(r.video_p50_watched_actions),
    video_p75_watched = first(r.video_p75_watched_actions),
    video_p95_watched = first(r.video_p95_watched_actions),
    video_p100_watched = first(r.video_p100_watched_actions),
    video_thruplay = thruplay,
    hold_rate = ratio(thruplay, video_views),
    hook_rate = ratio(video_views, impressions),
    initiate_checkouts = action(r.actions, "initiate_checkout", "omni_initiated_checkout"),
    landing_page_views = action(r.actions, "landing_page_view"),
    content_views = action(r.actions, "view_content"),
    cost_per_initiate_checkout = action(r.cost_per_action_type, "initiate_checkout"),
    raw_actions = v(r.actions), raw_costs = v(r.cost_per_action_type),
  }
end

local UPSERT = [[
  INSERT INTO public.meta_ads_performance AS m
      (brand_id, meta_ad_account_id, meta_ad_id, meta_adset_id, adset_name, meta_campaign_id,
       campaign_name, ad_name, date, spend, impressions, reach, frequency, cpm, link_clicks,
       link_ctr, link_cpc, add_to_carts, cost_per_add_to_cart, purchases, purchase_value, roas,
       conversion_rate, video_views, video_avg_watch_time, video_p25_watched, video_p50_watched,
       video_p75_watched, video_p95_watched, video_p100_watched, video_thruplay, hold_rate,
       hook_rate, initiate_checkouts, landing_page_views, content_views,
       cost_per_initiate_checkout, raw_actions, raw_costs, campaign_objective, fetched_at)
  SELECT $1, x.meta_ad_account_id, x.meta_ad_id, x.meta_adset_id, x.adset_name,
         x.meta_campaign_id, x.campaign_name, x.ad_name, x.date, x.spend, x.impressions, x.reach,
         x.frequency, x.cpm, x.link_clicks, x.link_ctr, x.link_cpc, x.add_to_carts,
         x.cost_per_add_to_cart, x.purchases, x.purchase_value, x.roas, x.conversion_rate,
         x.video_views, x.video_avg_watch_time, x.video_p25_watched, x.video_p50_watched,
         x.video_p75_watched, x.video_p95_watched, x.video_p100_watched, x.video_thruplay,
         x.hold_rate, x.hook_rate, x.initiate_checkouts, x.landing_page_views, x.content_views,
         x.cost_per_initiate_checkout, x.raw_actions, x.raw_costs, x.campaign_objective, now()
  FROM jsonb_to_recordset($2::jsonb) AS x(meta_ad_account_id text, meta_ad_id text,
       meta_adset_id text, adset_name text, meta_campaign_id text, campaign_name text,
       ad_name text, date date, spend numeric, impressions bigint, reach bigint,
       frequency numeric, cpm numeric, link_clicks bigint, link_ctr numeric, link_cpc numeric,
       add_to_carts bigint, cost_per_add_to_cart numeric, purchases bigint,
       purchase_value numeric, roas numeric, conversion_rate numeric, video_views bigint,
       video_avg_watch_time numeric, video_p25_watched bigint, video_p50_watched bigint,
       video_p75_watched bigint, video_p95_watched bigint, video_p100_watched bigint,
       video_thruplay bigint, hold_rate numeric, hook_rate numeric, initiate_checkouts bigint,
       landing_page_views bigint, content_views bigint, cost_per_initiate_checkout numeric,
       raw_actions jsonb, raw_costs jsonb, campaign_objective text)
  ON CONFLICT (meta_ad_id, date) DO UPDATE SET
      brand_id = excluded.brand_id, meta_ad_account_id = excluded.meta_ad_account_id,
      meta_adset_id = excluded.meta_adset_id, adset_name = excluded.adset_name,
      meta_campaign_id = excluded.meta_campaign_id, campaign_name = excluded.campaign_name,
      ad_name = excluded.ad_name, spend = excluded.spend, impressions = excluded.impressions,
      reach = excluded.reach, frequency = excluded.frequency, cpm = excluded.cpm,
      link_clicks = excluded.link_clicks, link_ctr = excluded.link_ctr,
      link_cpc = excluded.link_cpc, add_to_carts = excluded.add_to_carts,
      cost_per_add_to_cart = excluded.cost_per_add_to_cart, purchases = excluded.purchases,
      purchase_value = excluded.purchase_value, roas = excluded.roas,
      conversion_rate = excluded.conversion_rate, video_views = excluded.video_views,
      video_avg_watch_time = excluded.video_avg_watch_time,
      video_p25_watched = excluded.video_p25_watched, video_p50_watched = excluded.video_p50_watched,
      video_p75_watched = excluded.video_p75_watched, video_p95_watched = excluded.video_p95_watched,
      video_p100_watched = excluded.video_p100_watched, video_thruplay = excluded.video_thruplay,
      hold_rate = excluded.hold_rate, hook_rate = excluded.hook_rate,
      initiate_checkouts = excluded.initiate_checkouts,
      landing_page_views = excluded.landing_page_views, content_views = excluded.content_views,
      cost_per_initiate_checkout = excluded.cost_per_initiate_checkout,
      raw_actions = excluded.raw_actions, raw_costs = excluded.raw_costs,
      campaign_objective = excluded.campaign_objective, fetched_at = now()
  RETURNING (xmax = 0) AS inserted]]

---------------------------------------------------------------- classification

-- 64-bit FNV-1a of a string, as 16 hex digits: the classification cache key.
local function fnv64(s)
  local h = 0xcbf29ce484222325  -- wraps to a negative integer; the arithmetic is mod 2^64
  for i = 1, #s do
    h = (h ~ s:byte(i)) * 1099511628211
  end
  return ("%016x"):format(h)
end

local SYSTEM = table.concat({
  "You classify Meta ad creatives for a direct-response marketing team.",
  "Reply with one JSON object with the keys creative_format (e.g. video_ugc, image_static),",
  "hook_type, primary_cta, creative_awareness_level and copy_awareness_level (unaware,",
  "problem_aware, solution_aware, product_aware, most_aware), congruence_score (0 to 1: how",
  "well the creative, the copy and the destination agree) and reasoning (one sentence).",
  "STAGE: classify",
}, "\n")

local function user_prompt(ad)
  return table.concat({
    "Ad name: " .. (v(ad.ad_name) or "(none)"),
    "Format: " .. (ad.is_video and "video ad" or "image ad"),
    "Object type: " .. (v(ad.object_type) or "unknown"),
    "Campaign objective: " .. (v(ad.campaign_objective) or "unknown"),
    "Destination: " .. (v(ad.destination_url) or "unknown"),
    "Ad copy:",
    v(ad.ad_copy) or "(no copy)",
  }, "\n")
end

local KEYS = { "creative_format", "hook_type", "primary_cta", "creative_awareness_level",
               "copy_awareness_level" }

local function validate(c)
  if type(c) ~= "table" then return nil, "the reply is not a JSON object" end
  c = clean.deep(c) -- a NUL in the reply would make Postgres refuse the row
  for _, k in ipairs(KEYS) do
    if type(c[k]) ~= "string" or c[k] == "" then return nil, "the reply has no " .. k end
  end
  local s = tonumber(c.congruence_score)
  if s then c.congruence_score = math.max(0, math.min(1, s)) else c.congruence_score = nil end
  return c
end

-- One classification: brand, run, prompt version and model, then the row
-- (rows.store). An ad classified before for the same input keeps its row.
local INSERT_CLASSIFICATION = [[
  INSERT INTO public.ad_creative_classifications
      (brand_id, meta_ad_id, run_id, creative_awareness_level, creative_format,
       copy_awareness_level, hook_type, primary_cta, congruence_score, reasoning, source,
       prompt_version, input_hash, model_used, raw_classification)
  SELECT $1, x.meta_ad_id, $2, x.creative_awareness_level, x.creative_format,
         x.copy_awareness_level, x.hook_type, x.primary_cta, x.congruence_score, x.reasoning,
         'meta_sync', $3, x.input_hash, $4, x.raw_classification
  FROM jsonb_to_recordset($5::jsonb) AS x(meta_ad_id text, creative_awareness_level text,
       creative_format text, copy_awareness_level text, hook_type text, primary_cta text,
       congruence_score numeric, reasoning text, input_hash text, raw_classification jsonb)
  ON CONFLICT (brand_id, meta_ad_id, input_hash) DO NOTHING]]

-- Step 5: returns { classified, reused, failed } | nil, err
local function classify(job, since)
  local llm = require("sluice.llm")
  local cfg, cerr = llm.config()
  if not cfg then return nil, cerr end
  local ads, err = sluice.db.query([[
    SELECT DISTINCT ON (meta_ad_id) meta_ad_id, ad_name, ad_copy, is_video, object_type,
           destination_url, campaign_objective
    FROM public.meta_ads_performance
    WHERE brand_id = $1 AND date >= $2::date AND is_video IS NOT NULL
    ORDER BY meta_ad_id, date DESC]], job.brand_id, since)
  if not ads then return nil, err end
  local todo, out = {}, { classified = 0, reused = 0, failed = 0 }
  for _, ad in ipairs(ads) do
    ad.prompt = user_prompt(ad)
    ad.input_hash = fnv64(PROMPT_VERSION .. "\0" .. cfg.model .. "\0" .. SYSTEM .. "\0" .. ad.prompt)
  end
  local known
  known, err = sluice.db.query([[
    SELECT meta_ad_id || '/' || input_hash AS k FROM public.ad_creative_classifications
    WHERE brand_id = $1]], job.brand_id)
  if not known then return nil, err end
  local have = {}
  for _, r in ipairs(known) do have[r.k] = true end
  for _, ad in ipairs(ads) do
    if have[ad.meta_ad_id .. "/" .. ad.input_hash] then
      out.reused = out.reused + 1
    elseif #todo < MAX_CLASSIFY then
      todo[#todo + 1] = ad
    end
  end
  local first_err
  sluice.map(todo, function(ad)
    local c, cerr2 = llm.chat_json({
      { role = "system", content = SYSTEM },
      { role = "user", content = ad.prompt },
    }, { validate = validate, config = cfg, max_tokens = 400 })
    if not c then
      out.failed = out.failed + 1
      first_err = first_err or cerr2
      job.log("classification of ad %s: %s", ad.meta_ad_id, cerr2)
      return nil
    end
    -- stored as it comes: a run stopped halfway keeps the replies paid for. A
    -- reply the database refuses is skipped (rows.store): the others still count
    local _, refused = rows.store(job, {
      what = "ad_creative_classifications", sql = INSERT_CLASSIFICATION,
      args = table.pack(job.brand_id, job.run_id, PROMPT_VERSION, cfg.model),
      key = function() return "ad " .. ad.meta_ad_id end,
      rows = { {
        meta_ad_id = ad.meta_ad_id, creative_awareness_level = c.creative_awareness_level,
        creative_format = c.creative_format, copy_awareness_level = c.copy_awareness_level,
        hook_type = c.hook_type, primary_cta = c.primary_cta,
        congruence_score = c.congruence_score and ("%.4f"):format(c.congruence_score),
        reasoning = type(c.reasoning) == "string" and c.reasoning or nil,
        input_hash = ad.input_hash, raw_classification = c,
      } },
    })
    if refused[1] then
      out.failed = out.failed + 1
      first_err = first_err or refused[1].error
      return nil
    end
    out.classified = out.classified + 1
    return true
  end, { concurrency = 4 })
  if out.failed > 0 and out.classified == 0 then
    return nil, ("%s failed: %s"):format(out.failed == 1 and "the one classification"
      or ("all %d classifications"):format(out.failed), first_err)
  end
  return out
end

---------------------------------------------------------------- steps 3–5

-- Runs one non-fatal step: fn() → summary, records | nil, err (or raises).
-- Reports the step's dataset and returns whether it succeeded.
local function step(job, failed, number, key, fn)
  local ok, res, extra = pcall(fn)
  if ok and res then
    job.dataset(key):success(extra or 0, type(res) == "table" and res or nil)
    return true
  end
  local err = ok and extra or res
  if type(err) == "table" and err.message then err = err.message end
  err = tostring(err or "failed")
  job.dataset(key):fail(err)
  failed[#failed + 1] = ("step %d (%s): %s"):format(number, key, err)
  job.log("step %d (%s) failed: %s", number, key, err)
  return false
end

return {
  label = "Meta Sync",
  emoji = "🔄",
  description = "Meta ads insights into meta_ads_performance, then creatives, assets and "
    .. "(optionally) classifications.",
  params = {
    days_back = { type = "integer", min = 1, max = 365, default = 7,
                  description = "days before today to sync" },
    download_max_videos = { type = "integer", min = 0, max = 500, default = 20,
                            description = "video ads step 4 downloads (both maxima 0: step 4 is skipped)" },
    download_max_images = { type = "integer", min = 0, max = 1000, default = 40,
                            description = "image ads step 4 downloads (both maxima 0: step 4 is skipped)" },
    auto_classify = { type = "boolean", default = false, description = "classify new ads with the LLM" },
  },
  datasets = {
    meta_ads_performance = { label = "Meta Ads Performance", max_age = "24 hours" },
    ad_thumbnails = { label = "Ad Thumbnails", max_age = "24 hours" },
    -- declared identically by asset_download
    ad_assets = { label = "Ad Assets", max_age = "48 hours" },
    ad_classifications = { label = "Ad Classifications", max_age = "48 hours" },
  },
  brand = "required",
  timeout = "30 min",
  max_retries = 3,
  run = function(job)
    local p = job.params
    if not job.brand_id then
      refuse(job, { "meta_ads_performance", "ad_thumbnails", "ad_assets", "ad_classifications" },
             "meta_sync needs the brand whose ad account to sync: give it with --brand")
    end
    -- without auto_classify this run does not work on the classifications, even
    -- when an earlier step fails: said first, so that a failure leaves them as they were
    if not p.auto_classify then job.dataset("ad_classifications"):skip("auto_classify is false") end
    -- so for the assets when no download is asked for: reported completed, they
    -- would be called fresh while nothing is downloaded
    local no_downloads = p.download_max_videos == 0 and p.download_max_images == 0
    if no_downloads then job.dataset("ad_assets"):skip("download_max_videos and download_max_images are 0") end
    local account, aerr, brand_name = graph.account(job.brand_id)
    if not account then error(sluice.permanent(aerr), 0) end
    local g, gerr = graph.client(job, { account_id = account })
    if not g then error(sluice.permanent(gerr)) end

    -- steps 1–2: insights, page by page, each page upserted as it arrives
    local now = sluice.now()
    local since = os.date("!%Y-%m-%d", math.floor(now - p.days_back * 86400))
    local till = os.date("!%Y-%m-%d", math.floor(now))
    job.log("syncing %s from %s to %s (token: %s)", account, since, till, g.token_source)
    local inserted, updated, skipped, refused, notes = 0, 0, 0, 0, {}
    local n, pages_or_err, info = g:each_page("/" .. account .. "/insights", {
      level = "ad", time_increment = 1, limit = PAGE_SIZE, fields = FIELDS,
      time_range = sluice.json.encode({ since = since, ["until"] = till }),
    }, function(list, page)
      local batch = {}
      for _, r in ipairs(list) do
        -- Postgres refuses a NUL in text and jsonb: one ad's name with one would
        -- fail the page, on every retry
        local cr, nuls = clean.deep(r)
        local row = perf_row(cr, account)
        if row then
          batch[#batch + 1] = row
          if nuls > 0 then -- the note's name is built only for a row that had some
            notes[#notes + 1] = clean.nul_note(("ad %s on %s"):format(row.meta_ad_id, row.date), nuls)
          end
        else
          skipped = skipped + 1
        end
      end
      if #batch == 0 then return true end
      local res, refused_here = rows.store(job, {
        what = "meta_ads_performance", sql = UPSERT, rows = batch, args = table.pack(job.brand_id),
        key = function(row) return ("ad %s on %s"):format(row.meta_ad_id, row.date) end,
      })
      refused = refused + #refused_here
      for _, r in ipairs(res) do
        if r.inserted then inserted = inserted + 1 else updated = updated + 1 end
      end
      job.log("insights page %d: %s", page, plural(#list, "row"))
      return true
    end)
    clean.notes(job, notes, "insight row")
    if not n then
      local msg = "step 1-2 (meta_ads_performance): " .. tostring(pages_or_err)
      if info and info.code == 100 and info.subcode == 33 then
        -- the account itself: a typo when it was linked, or one the token cannot read
        msg = msg .. (" — the brand's ad account %s is not one the token can read: check the id and "
          .. "the token's access to it, or link the right account with %s"):format(account,
          graph.link_hint(brand_name))
      end
      if info and info.permanent then error(sluice.permanent(msg)) end
      error(msg, 0)
    end
    job.log("%s in %s: %d new, %d updated%s%s", plural(n, "insight row"), plural(pages_or_err, "page"),
      inserted, updated,
      skipped > 0 and (", %d without an ad id or date skipped"):format(skipped) or "",
      refused > 0 and (", %d refused by the database and skipped"):format(refused) or "")
    job.dataset("meta_ads_performance"):success(inserted + updated,
      { since = since, ["until"] = till, account = account, pages = pages_or_err, new = inserted,
        rows_skipped = refused })

    -- steps 3–5: each on its own
    local failed = {}
    local summary = { rows = inserted + updated, new_rows = inserted, pages = pages_or_err,
                      since = since, ["until"] = till, account = account, rows_skipped = refused }
    step(job, failed, 3, "ad_thumbnails", function()
      local c, cerr = meta_assets.refresh_creatives(job, g, { since = since })
      if not c then return nil, cerr end
      job.log("creatives: %d read from the Graph API, %d failed, %d rows filled from known ads; "
        .. "statuses of known ads: %d read (%d changed), %d failed", c.read, c.failed, c.rows_copied,
        c.statuses_read, c.statuses_changed, c.statuses_failed)
      summary.creatives = c
      return c, c.read + c.statuses_read
    end)
    if no_downloads then
      job.log("step 4 (ad_assets) skipped: download_max_videos and download_max_images are 0")
    else
      step(job, failed, 4, "ad_assets", function()
        local s, aerr = meta_assets.download(job, g, {
          max_videos = p.download_max_videos, max_images = p.download_max_images,
        })
        if not s then return nil, aerr end
        summary.assets = s
        return s, s.downloaded
      end)
    end
    if p.auto_classify then
      step(job, failed, 5, "ad_classifications", function()
        local c, cerr = classify(job, since)
        if not c then return nil, cerr end
        job.log("classifications: %d new, %d already classified, %d failed", c.classified, c.reused, c.failed)
        summary.classifications = c
        return c, c.classified
      end)
    end

    summary.graph_requests, summary.graph_retries = g.requests, g.retries
    summary.records = inserted + updated
    if #failed > 0 then
      summary.failed_steps = failed
      job.log("meta_sync done; %d of the optional steps failed: %s", #failed, table.concat(failed, "; "))
    else
      job.log("meta_sync done: every step succeeded (%d Graph requests)", g.requests)
    end
    return summary
  end,
}
