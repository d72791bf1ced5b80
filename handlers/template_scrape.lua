-- template_scrape: ads from an Ads Library search (Apify Ads Library scraper
-- actor) as template material: the ads upserted into facebook_ads on
-- ad_archive_id (seen again: times seen, positions, last seen), their images
-- (and videos, unless images_only) downloaded into the content-addressed asset
-- store with a scraped_ad_assets row each, and with auto_queue the downloaded
-- images added to template_queue — once per asset and once per content, so the
-- ads of a group sharing one creative give one entry. A failed download is
-- recorded on its row and does not stop the others; when every download
-- failed, the dataset is failed and the job retried.
local apify = require("sluice.apify")
local fb = require("sluice.facebook_ads")
local clean = require("sluice.clean")
local plural = require("sluice.plural")
local assets = require("sluice.assets")
local rows = require("sluice.rows")

local BATCH = 200
local MAX_IMAGES_PER_AD = 10
local MAX_VIDEOS_PER_AD = 3
local CONCURRENCY = 6

local UPSERT_ADS = [[
  INSERT INTO public.facebook_ads AS f
      (ad_archive_id, ad_id, page_id, page_name, is_active, start_date, end_date, currency, spend,
       impressions, impression_lower, impression_upper, impression_text, reach_estimate, snapshot,
       categories, publisher_platform, political_countries, entity_type, collation_id,
       collation_count, brand_id, scrape_source, search_url, link_url, cta_text, cta_type, ad_title,
       ad_body, caption, link_description, page_like_count, page_profile_uri, display_format,
       last_seen_job_id, scrape_position, latest_scrape_position, best_scrape_position, scrape_total)
  SELECT x.ad_archive_id, x.ad_id, x.page_id, x.page_name, x.is_active, to_timestamp(x.start_date),
         to_timestamp(x.end_date), x.currency, x.spend, x.impressions, x.impression_lower,
         x.impression_upper, x.impression_text, x.reach_estimate, x.snapshot, x.categories,
         x.publisher_platform, x.political_countries, x.entity_type, x.collation_id,
         x.collation_count, $1, 'ad_library_search', $2, x.link_url, x.cta_text, x.cta_type,
         x.ad_title, x.ad_body, x.caption, x.link_description, x.page_like_count,
         x.page_profile_uri, x.display_format, $3, x.position, x.position, x.position, x.total
  FROM jsonb_to_recordset($4::jsonb) AS x(ad_archive_id text, ad_id text, page_id text,
       page_name text, is_active boolean, start_date double precision, end_date double precision,
       currency text, spend jsonb, impressions jsonb, impression_lower bigint,
       impression_upper bigint, impression_text text, reach_estimate jsonb, snapshot jsonb,
       categories jsonb, publisher_platform jsonb, political_countries jsonb, entity_type text,
       collation_id text, collation_count integer, link_url text, cta_text text, cta_type text,
       ad_title text, ad_body text, caption text, link_description text, page_like_count bigint,
       page_profile_uri text, display_format text, position integer, total integer)
  ON CONFLICT (ad_archive_id) DO UPDATE SET
      ad_id = coalesce(excluded.ad_id, f.ad_id), page_id = coalesce(excluded.page_id, f.page_id),
      page_name = coalesce(excluded.page_name, f.page_name), is_active = excluded.is_active,
      start_date = coalesce(excluded.start_date, f.start_date), end_date = excluded.end_date,
      currency = excluded.currency, spend = excluded.spend, impressions = excluded.impressions,
      impression_lower = excluded.impression_lower, impression_upper = excluded.impression_upper,
      impression_text = excluded.impression_text, reach_estimate = excluded.reach_estimate,
      snapshot = excluded.snapshot, categories = excluded.categories,
      publisher_platform = excluded.publisher_platform,
      political_countries = excluded.political_countries, entity_type = excluded.entity_type,
      collation_id = excluded.collation_id, collation_count = excluded.collation_count,
      brand_id = coalesce(f.brand_id, excluded.brand_id), search_url = excluded.search_url,
      link_url = excluded.link_url, cta_text = excluded.cta_text, cta_type = excluded.cta_type,
      ad_title = excluded.ad_title, ad_body = excluded.ad_body, caption = excluded.caption,
      link_description = excluded.link_description, page_like_count = excluded.page_like_count,
      page_profile_uri = excluded.page_profile_uri, display_format = excluded.display_format,
      last_seen_at = now(), last_checked_at = now(), scraped_at = now(),
      times_seen = f.times_seen + CASE WHEN f.last_seen_job_id IS DISTINCT FROM excluded.last_seen_job_id
                                       THEN 1 ELSE 0 END,
      last_seen_job_id = excluded.last_seen_job_id,
      latest_scrape_position = excluded.latest_scrape_position,
      best_scrape_position = least(f.best_scrape_position, excluded.best_scrape_position),
      scrape_total = excluded.scrape_total
  RETURNING f.id, f.ad_archive_id, (xmax = 0) AS inserted]]

local RECORD_ASSET = [[
  INSERT INTO public.scraped_ad_assets AS a
      (facebook_ad_id, brand_id, asset_type, position, storage_path, sha256, original_url,
       file_size_bytes, mime_type, dimensions, scrape_source, status, error, attempts)
  SELECT x.facebook_ad_id, $1, x.asset_type, x.position, coalesce(x.storage_path, ''), x.sha256,
         x.url, x.size, x.mime_type, x.dimensions, 'template_scrape', x.status, x.error, 1
  FROM jsonb_to_recordset($2::jsonb) AS x(facebook_ad_id uuid, asset_type text, position integer,
       storage_path text, sha256 text, url text, size bigint, mime_type text, dimensions jsonb,
       status text, error text)
  ON CONFLICT (facebook_ad_id, asset_type, position) DO UPDATE SET
      brand_id = coalesce(a.brand_id, excluded.brand_id), storage_path = excluded.storage_path,
      sha256 = excluded.sha256, original_url = excluded.original_url,
      file_size_bytes = excluded.file_size_bytes, mime_type = excluded.mime_type,
      dimensions = excluded.dimensions, status = excluded.status, error = excluded.error,
      attempts = a.attempts + 1, updated_at = now()]]

-- The media of one ad to download: { {type, position, url}, … }
local function media_of(ad, images_only)
  local m = fb.media(ad.snapshot)
  local out = {}
  for i = 1, math.min(#m.images, MAX_IMAGES_PER_AD) do
    out[#out + 1] = { asset_type = "image", position = i - 1, url = m.images[i] }
  end
  if not images_only then
    for i = 1, math.min(#m.videos, MAX_VIDEOS_PER_AD) do
      out[#out + 1] = { asset_type = "video", position = i - 1, url = m.videos[i] }
    end
  end
  return out
end

return {
  label = "Template Scrape",
  emoji = "📥",
  description = "Ads Library search results into facebook_ads, their media into the asset store, "
    .. "images into template_queue.",
  params = {
    search_url = { type = "url", required = true, description = "an Ads Library search URL" },
    max_ads = { type = "integer", min = 1, max = 5000, default = 50, description = "the actor's count" },
    images_only = { type = "boolean", default = true, description = "skip video-only ads and videos" },
    auto_queue = { type = "boolean", default = true,
                   description = "add downloaded images to template_queue" },
  },
  datasets = {
    templates_scraped = { label = "Templates Scraped", max_age = "168 hours" },
  },
  brand = "optional",
  timeout = "20 min",
  max_retries = 3,
  retry_base = "30 s",
  run = function(job)
    local p = job.params
    local items, run = apify.run_actor(job, "ads_library", fb.ACTOR,
      fb.input(p.search_url, { count = p.max_ads }), { timeout = 600, memory = 1024 })
    local all, skipped, notes = fb.normalize_all(items)
    fb.check_readable(items, all, skipped, run)
    clean.notes(job, notes, "ad")
    local ads, video_only = {}, 0
    for _, ad in ipairs(all) do
      if p.images_only and fb.is_video_only(ad.snapshot) then
        video_only = video_only + 1
      else
        ads[#ads + 1] = ad
      end
    end
    job.log("%s from the actor%s%s", plural(#all, "ad"),
      skipped > 0 and (", %s without an ad_archive_id skipped"):format(plural(skipped, "item")) or "",
      video_only > 0 and (", %s skipped (images_only)"):format(plural(video_only, "video-only ad")) or "")

    -- the ads
    local ids, new = {}, 0
    local res, refused = rows.store(job, {
      what = "facebook_ads", sql = UPSERT_ADS, rows = ads, chunk = BATCH,
      args = table.pack(job.brand_id, p.search_url, job.id),
      key = function(ad) return "ad " .. ad.ad_archive_id end,
    })
    for _, r in ipairs(res) do
      ids[r.ad_archive_id] = r.id
      if r.inserted then new = new + 1 end
    end
    -- an ad the database refused has no row: no media, no template
    local stored, ad_ids = {}, {}
    for _, ad in ipairs(ads) do
      local fid = ids[ad.ad_archive_id]
      if fid then
        stored[#stored + 1] = ad
        ad_ids[#ad_ids + 1] = fid
      end
    end
    ads = stored

    -- their media, except what an earlier run (or attempt) already stored
    local done = {}
    if #ad_ids > 0 then
      local found = rows.query([[
        SELECT facebook_ad_id, asset_type, position FROM public.scraped_ad_assets
        WHERE facebook_ad_id = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb))::uuid[])
          AND status = 'downloaded']], ad_ids)
      for _, r in ipairs(found) do
        done[r.facebook_ad_id .. "/" .. r.asset_type .. "/" .. r.position] = true
      end
    end
    local todo = {}
    for _, ad in ipairs(ads) do
      local fid = ids[ad.ad_archive_id]
      for _, m in ipairs(media_of(ad, p.images_only)) do
        if not done[fid .. "/" .. m.asset_type .. "/" .. m.position] then
          m.facebook_ad_id, m.ad_archive_id = fid, ad.ad_archive_id
          todo[#todo + 1] = m
        end
      end
    end

    local counts = { downloaded = 0, new_files = 0, failed = 0, expired = 0, skipped = 0 }
    local store_err, first_err
    sluice.map(todo, function(m)
      local a, err, class = assets.download(m.url, { kind = m.asset_type })
      -- expired (403) and not_downloadable (404/410) rows are tried again by the
      -- next scrape, with the URLs it gets
      local status = a and "downloaded"
        or ((class == "expired" or class == "not_downloadable") and "expired" or "failed")
      -- a row the database refuses is skipped and logged (rows.store): the media
      -- item is tried again by the next scrape, and the others are recorded
      local _, refused_row = rows.store(job, {
        what = "scraped_ad_assets", sql = RECORD_ASSET, args = table.pack(job.brand_id),
        rows = { (clean.deep({ facebook_ad_id = m.facebook_ad_id, asset_type = m.asset_type,
          position = m.position, storage_path = a and a.key, sha256 = a and a.sha256, url = m.url,
          size = a and a.size, mime_type = a and a.mime_type, status = status, error = err,
          dimensions = a and a.width and { width = a.width, height = a.height } or nil })) },
        key = function() return ("%s %d of ad %s"):format(m.asset_type, m.position, m.ad_archive_id) end,
      })
      if #refused_row > 0 then status = "skipped" end
      counts[status] = counts[status] + 1
      if a and a.created then counts.new_files = counts.new_files + 1 end
      if class == "store" then store_err = store_err or err end
      if not a then
        job.log("%s %s: %s (%s)", m.asset_type, m.url, status, err)
        first_err = first_err or ("%s %s: %s"):format(m.asset_type, m.url, err)
      end
      return true
    end, { concurrency = CONCURRENCY })
    if store_err then error("the asset store cannot be written: " .. store_err, 0) end
    -- media to fetch and none fetched: the templates are not there (the ads are
    -- stored; the retry reads the same actor run and tries the media again)
    if counts.downloaded == 0 and counts.expired + counts.failed > 0 then
      local n = counts.expired + counts.failed
      local msg = ("no media downloaded: %s failed (%d expired, %d failed; first: %s)")
        :format(n == 1 and "the one download" or ("all %d downloads"):format(n), counts.expired,
                counts.failed, first_err)
      job.dataset("templates_scraped"):fail(msg)
      -- a retry reads the same actor run, so the same URLs: when every one was
      -- expired (403, 404, 410, too large), it would fail the same way; the
      -- next scrape gets fresh ones
      if counts.failed == 0 then
        error(sluice.permanent(msg .. "; not retried: the retry would ask for the same URLs, "
          .. "a new scrape gets fresh ones"))
      end
      error(msg, 0)
    end

    -- the template queue
    local queued = 0
    if p.auto_queue and #ad_ids > 0 then
      queued = #rows.query([[
        INSERT INTO public.template_queue (asset_id, facebook_ad_id, brand_id, sha256)
        SELECT a.id, a.facebook_ad_id, $2, a.sha256 FROM public.scraped_ad_assets a
        WHERE a.facebook_ad_id = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb))::uuid[])
          AND a.status = 'downloaded' AND a.asset_type = 'image'
        ORDER BY a.created_at, a.id
        ON CONFLICT DO NOTHING
        RETURNING id]], ad_ids, job.brand_id)
    end

    local usd = tonumber(run and run.usageTotalUsd)
    local already = 0
    for _ in pairs(done) do already = already + 1 end
    job.log("%s stored (%d new%s); media: %d downloaded (%s), %d expired, %d failed, "
      .. "%d refused by the database, %d stored by earlier runs; %d queued as templates", plural(#ads, "ad"), new,
      #refused > 0 and (", %d refused by the database and skipped"):format(#refused) or "", counts.downloaded,
      plural(counts.new_files, "new file"), counts.expired, counts.failed, counts.skipped, already, queued)
    local meta = { new = new, assets_downloaded = counts.downloaded, assets_failed = counts.failed,
                   assets_expired = counts.expired, queued = queued, cost_usd = usd,
                   rows_skipped = #refused + counts.skipped }
    job.dataset("templates_scraped"):success(#ads, meta)
    meta.records = #ads
    meta.apify_run_id = run and run.id
    return meta
  end,
}
