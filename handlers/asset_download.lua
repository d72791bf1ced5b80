-- asset_download: the videos and images of a brand's Meta ads that have no
-- asset yet (or whose last download failed), into the content-addressed asset
-- store, one meta_ad_assets row per ad and type. Video URLs come from the Graph
-- API (`/{video_id}?fields=source`), images from the ad's creative. A download
-- that fails is recorded on its row (404/410 and missing sources as
-- not_downloadable; 403 — an expired signed URL — and other errors as failed,
-- tried again next run with the creative read afresh, until a third 403 in a
-- row makes it not_downloadable) and does not stop the others. The same code is meta_sync's step 4 (lua/sluice/meta_assets.lua).
local graph = require("sluice.graph")
local meta_assets = require("sluice.meta_assets")
local refuse = require("sluice.refuse")

return {
  label = "Asset Download",
  emoji = "📦",
  description = "Videos and images of the brand's Meta ads into the asset store (meta_ad_assets).",
  params = {
    max_videos = { type = "integer", min = 0, max = 500, default = 20,
                   description = "video ads handled per run (not 0 together with max_images)" },
    max_images = { type = "integer", min = 0, max = 1000, default = 40,
                   description = "image ads handled per run (not 0 together with max_videos)" },
  },
  datasets = {
    -- declared identically by meta_sync
    ad_assets = { label = "Ad Assets", max_age = "48 hours" },
  },
  brand = "required",
  timeout = "30 min",
  max_retries = 3,
  run = function(job)
    if not job.brand_id then
      refuse(job, { "ad_assets" }, "asset_download needs the brand whose ads' assets to download: give it with --brand")
    end
    if job.params.max_videos == 0 and job.params.max_images == 0 then
      -- it would complete with nothing done and call the brand's assets fresh
      refuse(job, { "ad_assets" }, "max_videos and max_images are both 0: nothing to download "
        .. "(give either a number above 0)")
    end
    -- a brand without an ad account has no ads to fetch assets for: calling its
    -- ad_assets fresh would say nothing was missing
    local account, aerr, brand = graph.account(job.brand_id)
    if not account then error(sluice.permanent(aerr), 0) end
    -- the ads are meta_sync's to find: before it has ever synced the brand,
    -- "nothing to download" would call its ad_assets fresh. Retried (the two
    -- may have been queued together), with ad_assets left as it was.
    local synced, serr = sluice.db.query([[
      SELECT EXISTS (SELECT 1 FROM public.meta_ads_performance WHERE brand_id = $1)
          OR EXISTS (SELECT 1 FROM sluice.dataset_status WHERE brand_id = $1
                     AND dataset_key = 'meta_ads_performance' AND last_success_at IS NOT NULL) AS yes]],
      job.brand_id)
    if not synced then error("database: meta_ads_performance: " .. tostring(serr), 0) end
    if not synced[1].yes then
      local msg = ("the brand %s has no synced Meta ads yet: meta_sync finds them "
        .. "(sluice queue meta_sync --brand %q) and downloads their assets too"):format(brand, brand)
      job.dataset("ad_assets"):skip(msg)
      error(msg, 0)
    end
    local g, gerr = graph.client(job, { account_id = account })
    if not g then error(sluice.permanent(gerr), 0) end
    local s, err, _, refused = meta_assets.download(job, g, {
      max_videos = job.params.max_videos, max_images = job.params.max_images,
    })
    if not s then
      job.dataset("ad_assets"):fail(err)
      -- every request fails the same way until the token is replaced: no retry
      if refused then error(sluice.permanent(err .. " — the Graph API refused the token"), 0) end
      error(err, 0)
    end
    job.dataset("ad_assets"):success(s.downloaded, s)
    s.records = s.downloaded
    s.graph_requests = g.requests
    return s
  end,
}
