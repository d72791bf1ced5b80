-- meta_assets.lua — what meta_sync and asset_download share about a brand's Meta
-- ads: reading an ad's creative (thumbnail, image, video id, copy, destination,
-- status) through the Graph API into meta_ads_performance, and downloading the
-- ads' videos and images into the asset store with one meta_ad_assets row per
-- ad and type, whatever happened to it.
--
--   local ma = require("sluice.meta_assets")
--   local s, err = ma.refresh_creatives(job, g, { since = "2025-11-24" })   -- meta_sync step 3
--   local summary, err = ma.download(job, g, { max_videos = 20, max_images = 40 })
--
-- g is a client from lua/sluice/graph.lua. Per-ad failures are recorded and
-- logged, never raised; a function returns nil, err only when the step as a
-- whole failed (a query, the asset store, or every download), and raises
-- ("database: …", rows.store) when a write fails as a whole.

local assets = require("sluice.assets")
local clean = require("sluice.clean")
local plural = require("sluice.plural")
local rows = require("sluice.rows")

local M = {}

M.CREATIVE_FIELDS = "id,thumbnail_url,image_url,image_hash,video_id,object_story_spec,object_type,"
  .. "asset_feed_spec,effective_object_story_id"
M.MAX_ADS = 100          -- creatives read per run (the seed's cap)
M.MAX_STATUS = 1000      -- statuses of known ads read again per run
M.IDS_PER_REQUEST = 50   -- objects per GET /?ids=… (the Graph API's limit)
M.CONCURRENCY = 4        -- requests in flight per step (the Graph limiter paces them anyway)
M.MAX_403 = 3            -- downloads answered 403 in a row (each run with a fresh URL) before giving up

local v = clean.value  -- null and "" read as absent

local function tbl(x)
  x = v(x)
  return type(x) == "table" and x or {}
end

---------------------------------------------------------------- creatives

-- What an ad's creative tells: { thumbnail_url, image_url, video_id, is_video,
-- object_type, ad_copy, destination_url, story_id }. The video id of
-- object_story_spec wins over a (possibly stale) top-level one; the image is
-- the first of image_url, link_data.image_url|picture, photo_data.url|image_url,
-- asset_feed_spec.images[1].url (the post image is looked up separately).
function M.creative_info(c)
  c = tbl(c)
  local oss = tbl(c.object_story_spec)
  local vd, ld, pd = tbl(oss.video_data), tbl(oss.link_data), tbl(oss.photo_data)
  local afs = tbl(c.asset_feed_spec)
  local first_image = tbl(tbl(afs.images)[1])
  local video_id = v(vd.video_id) or v(c.video_id)
  local object_type = v(c.object_type)
  local is_video = video_id ~= nil
    or (type(object_type) == "string" and object_type:upper():find("VIDEO") ~= nil)
  local cta = tbl(tbl(vd.call_to_action).value)
  return {
    thumbnail_url = v(c.thumbnail_url),
    image_url = v(c.image_url) or v(ld.image_url) or v(ld.picture) or v(pd.url) or v(pd.image_url)
      or v(first_image.url),
    video_id = video_id and tostring(video_id) or nil,
    is_video = is_video,
    object_type = object_type,
    ad_copy = v(ld.message) or v(vd.message) or v(pd.caption) or v(tbl(tbl(afs.bodies)[1]).text) or v(c.body),
    destination_url = v(ld.link) or v(cta.link) or v(tbl(tbl(afs.link_urls)[1]).website_url),
    story_id = v(c.effective_object_story_id),
  }
end

-- The image of a page post: full_picture, else its first attachment's image.
local function post_image(g, story_id)
  local post, err = g:get("/" .. story_id, { fields = "full_picture,attachments{media{image{src}}}" })
  if not post then return nil, err end
  if v(post.full_picture) then return post.full_picture end
  for _, a in ipairs(tbl(tbl(post.attachments).data)) do
    local src = v(tbl(tbl(tbl(a).media).image).src)
    if src then return src end
  end
  return nil
end

-- One ad: its status and creative (one request, the creative expanded inline;
-- the seed made two), plus its post's image when that is all an image ad has.
-- Texts are read without NUL (Postgres refuses it): info.nuls counts the texts
-- that had one.
function M.fetch_ad(g, ad_id)
  local ad, err = g:get("/" .. ad_id, {
    fields = "id,effective_status,creative{" .. M.CREATIVE_FIELDS .. "}",
    thumbnail_width = 1080, thumbnail_height = 1080,
  })
  if not ad then return nil, err end
  local nuls
  ad, nuls = clean.deep(ad)
  local info = M.creative_info(ad.creative)
  info.nuls = nuls
  info.ad_status = v(ad.effective_status)
  if not info.is_video and not info.image_url and info.story_id then
    info.image_url = post_image(g, info.story_id)  -- a failure leaves the thumbnail
  end
  return info
end

-- Writes creative infos (ad id → info) onto every row of those ads. Returns ads
-- written, the ads the database refused (rows.store).
local function store_infos(job, infos)
  local list = {}
  for ad_id, i in pairs(infos) do
    list[#list + 1] = {
      meta_ad_id = ad_id, thumbnail_url = i.thumbnail_url, image_url = i.image_url,
      meta_video_id = i.video_id, is_video = i.is_video, object_type = i.object_type,
      ad_copy = i.ad_copy, destination_url = i.destination_url, ad_status = i.ad_status,
    }
  end
  if #list == 0 then return 0, {} end
  local _, skipped = rows.store(job, {
    what = "meta_ads_performance (creatives)", rows = list, args = table.pack(job.brand_id),
    key = function(r) return "ad " .. r.meta_ad_id end,
    sql = [[
    UPDATE public.meta_ads_performance p SET
        thumbnail_url = x.thumbnail_url, image_url = x.image_url, meta_video_id = x.meta_video_id,
        is_video = x.is_video, object_type = x.object_type, ad_copy = x.ad_copy,
        destination_url = x.destination_url, ad_status = coalesce(x.ad_status, p.ad_status)
    FROM jsonb_to_recordset($2::jsonb) AS x(meta_ad_id text, thumbnail_url text, image_url text,
         meta_video_id text, is_video boolean, object_type text, ad_copy text,
         destination_url text, ad_status text)
    WHERE p.brand_id = $1 AND p.meta_ad_id = x.meta_ad_id]],
  })
  return #list - #skipped, skipped
end

-- Reads the creatives of the given ads (at most M.MAX_ADS) and stores them.
-- Returns ads updated, { [ad_id] = err }, how many failed, how many the
-- database refused.
function M.fetch_and_store(job, g, ad_ids)
  local infos, failed = {}, {}
  local results, errs = sluice.map(ad_ids, function(ad_id) return M.fetch_ad(g, ad_id) end,
                                   { concurrency = M.CONCURRENCY })
  local n_failed = 0
  for i, ad_id in ipairs(ad_ids) do
    if results[i] then
      infos[ad_id] = results[i]
      local note = clean.nul_note("creative of ad " .. ad_id, results[i].nuls)
      if note then job.log(note) end
    else
      failed[ad_id] = errs[i] or "no answer"
      n_failed = n_failed + 1
      job.log("creative of ad %s: %s", ad_id, failed[ad_id])
    end
  end
  local n, skipped = store_infos(job, infos)
  return n, failed, n_failed, #skipped
end

-- The statuses (effective_status) of known ads, M.IDS_PER_REQUEST a request
-- (GET /?ids=…), written on every row of each ad. One id the API does not know
-- (a deleted ad) fails its whole request: such a request is split in two until
-- the ad is found, so it does not keep 49 others from being read. A request
-- that fails otherwise is logged; its ads keep the status they had. Returns ads
-- whose status was read and stored, ads whose status changed, ads that could
-- not be read, ads the database refused (read, not stored).
function M.refresh_statuses(job, g, ad_ids)
  local read, changed, failed, list = 0, 0, 0, {}
  local function ask(batch)
    local body, err, info = g:get("/", { ids = table.concat(batch, ","), fields = "id,effective_status" })
    if not body and #batch > 1 and info and info.permanent and info.code == 100 then
      local half = #batch // 2
      ask(table.move(batch, 1, half, 1, {}))
      ask(table.move(batch, half + 1, #batch, 1, {}))
    elseif not body then
      failed = failed + #batch
      job.log("status of %s: %s", #batch == 1 and ("ad " .. batch[1])
        or ("%d ads (%s, …)"):format(#batch, batch[1]), err)
    else
      for _, id in ipairs(batch) do
        local status = v(tbl(body[id]).effective_status)
        if status then
          read = read + 1
          list[#list + 1] = { meta_ad_id = id, ad_status = status }
        end
      end
    end
  end
  for first = 1, #ad_ids, M.IDS_PER_REQUEST do
    ask(table.move(ad_ids, first, math.min(first + M.IDS_PER_REQUEST - 1, #ad_ids), 1, {}))
  end
  local refused = {}
  if #list > 0 then
    local done
    done, refused = rows.store(job, {
      what = "meta_ads_performance (statuses)", rows = clean.deep(list), args = table.pack(job.brand_id),
      key = function(r) return "ad " .. r.meta_ad_id end,
      sql = [[
      UPDATE public.meta_ads_performance p SET ad_status = x.ad_status
      FROM jsonb_to_recordset($2::jsonb) AS x(meta_ad_id text, ad_status text)
      WHERE p.brand_id = $1 AND p.meta_ad_id = x.meta_ad_id AND p.ad_status IS DISTINCT FROM x.ad_status
      RETURNING p.meta_ad_id]],
    })
    local seen = {}
    for _, r in ipairs(done) do
      if not seen[r.meta_ad_id] then seen[r.meta_ad_id], changed = true, changed + 1 end
    end
  end
  return read - #refused, changed, failed, #refused
end

-- meta_sync step 3: rows without a creative (is_video unknown) get it from
-- another row of the same ad when one has it (no request); the ads still without
-- one since `opts.since` are read from the Graph API (at most M.MAX_ADS), their
-- status with them. The other ads of the window had their creative read by an
-- earlier run; their status changes with the ad (paused, disapproved…), so it
-- is read again, many ads a request (at most M.MAX_STATUS ads).
-- Returns { read, failed, rows_copied, statuses_read, statuses_changed,
-- statuses_failed } | nil, err: nil when there was something to read and
-- nothing could be.
function M.refresh_creatives(job, g, opts)
  local copied, err = sluice.db.query([[
    UPDATE public.meta_ads_performance p SET
        thumbnail_url = k.thumbnail_url, image_url = k.image_url, meta_video_id = k.meta_video_id,
        is_video = k.is_video, object_type = k.object_type, ad_copy = k.ad_copy,
        destination_url = k.destination_url, ad_status = coalesce(p.ad_status, k.ad_status)
    FROM (SELECT DISTINCT ON (meta_ad_id) * FROM public.meta_ads_performance
          WHERE brand_id = $1 AND is_video IS NOT NULL
          ORDER BY meta_ad_id, fetched_at DESC) k
    WHERE p.brand_id = $1 AND p.meta_ad_id = k.meta_ad_id AND p.is_video IS NULL]], job.brand_id)
  if not copied then return nil, err end
  local since = opts.since or "1970-01-01"
  local found
  found, err = sluice.db.query([[
    SELECT meta_ad_id FROM public.meta_ads_performance
    WHERE brand_id = $1 AND is_video IS NULL AND date >= $2::date
    GROUP BY meta_ad_id ORDER BY sum(spend) DESC NULLS LAST, meta_ad_id LIMIT $3]],
    job.brand_id, since, M.MAX_ADS)
  if not found then return nil, err end
  local ids = {}
  for i, r in ipairs(found) do ids[i] = r.meta_ad_id end
  local out = { read = 0, failed = 0, rows_copied = copied.affected or 0, rows_skipped = 0 }
  if #ids > 0 then
    local n, _, n_failed, n_refused = M.fetch_and_store(job, g, ids)
    out.read, out.failed, out.rows_skipped = n, n_failed, n_refused
  end
  -- the statuses of the ads known before this run (the ones just read have
  -- theirs); $3 is their ids as JSON, a list ({} when empty: no key either)
  found, err = sluice.db.query([[
    SELECT meta_ad_id FROM public.meta_ads_performance
    WHERE brand_id = $1 AND date >= $2::date AND NOT ($3::jsonb ? meta_ad_id)
    GROUP BY meta_ad_id HAVING bool_or(is_video IS NOT NULL)
    ORDER BY sum(spend) DESC NULLS LAST, meta_ad_id LIMIT $4]],
    job.brand_id, since, ids, M.MAX_STATUS)
  if not found then return nil, err end
  local known = {}
  for i, r in ipairs(found) do known[i] = r.meta_ad_id end
  local sread, schanged, sfailed, srefused = M.refresh_statuses(job, g, known)
  out.statuses_read, out.statuses_changed, out.statuses_failed = sread, schanged, sfailed
  out.rows_skipped = out.rows_skipped + srefused
  if out.read + sread == 0 and out.failed + sfailed > 0 then
    return nil, ("no creative or status could be read (%s and %s failed; see the log)")
      :format(plural(out.failed, "creative"), plural(sfailed, "status", "statuses"))
  end
  return out
end

---------------------------------------------------------------- downloads

local RECORD = [[
  INSERT INTO public.meta_ad_assets AS a
      (meta_ad_id, brand_id, asset_type, storage_path, sha256, mime_type, file_size_bytes,
       dimensions, meta_video_id, source_url, status, not_downloadable_reason, error, consecutive_403s)
  SELECT x.meta_ad_id, $1, x.asset_type, coalesce(x.storage_path, ''), x.sha256, x.mime_type, x.size,
         x.dimensions, x.meta_video_id, x.source_url, x.status, x.reason, x.error,
         coalesce(x.consecutive_403s, 0)
  FROM jsonb_to_recordset($2::jsonb) AS x(meta_ad_id text, asset_type text, storage_path text,
       sha256 text, mime_type text, size bigint, dimensions jsonb, meta_video_id text,
       source_url text, status text, reason text, error text, consecutive_403s integer)
  ON CONFLICT (meta_ad_id, asset_type) DO UPDATE SET
      brand_id = excluded.brand_id, storage_path = excluded.storage_path, sha256 = excluded.sha256,
      mime_type = excluded.mime_type, file_size_bytes = excluded.file_size_bytes,
      dimensions = excluded.dimensions, meta_video_id = excluded.meta_video_id,
      source_url = coalesce(excluded.source_url, a.source_url), status = excluded.status,
      not_downloadable_reason = excluded.not_downloadable_reason, error = excluded.error,
      consecutive_403s = excluded.consecutive_403s, attempts = a.attempts + 1, updated_at = now()]]

-- Stores an asset's outcome, its texts without NUL (a video's source URL comes
-- from the Graph API as it is; the log names the row cleaned). Returns whether
-- it was stored: a row the database refuses for its data is skipped and logged
-- with its key (rows.store; the ad stays to do, as if it had failed), so one
-- bad row does not fail the run on every retry; any other failure raises.
local function record(job, row)
  local key = ("%s of ad %s"):format(row.asset_type, row.meta_ad_id)
  local stored, _, note = clean.strip(row, "meta_ad_assets: " .. key)
  if note then job.log(note) end
  local _, skipped = rows.store(job, { what = "meta_ad_assets", sql = RECORD, rows = { stored },
                                       args = table.pack(job.brand_id), key = function() return key end })
  return #skipped == 0
end

-- Downloads one ad's asset and records the outcome. Returns the outcome
-- ("downloaded" | "not_downloadable" | "failed" | "store", or "skipped" when the
-- database refused its row) and the row.
local function one(job, g, ad)
  local row = { meta_ad_id = ad.meta_ad_id, asset_type = ad.is_video and "video" or "image",
                meta_video_id = ad.meta_video_id }
  local url, err, class
  if ad.is_video then
    if not ad.meta_video_id then
      row.status, row.reason = "not_downloadable", "no_video_id"
    else
      local video, gerr, info = g:get("/" .. ad.meta_video_id, { fields = "source" })
      if not video then
        -- only an unknown video (code 100, or a 404) is gone for good; a refused
        -- token (190) or a permission error says nothing about the video, and
        -- the next run asks again
        local gone = info and not info.retryable and (info.code == 100 or info.status == 404)
        row.status, row.error = gone and "not_downloadable" or "failed", gerr
        if gone then row.reason = "video_not_found" end
      elseif not v(video.source) then
        row.status, row.reason = "not_downloadable", "no_source_url"
      else
        url = video.source
      end
    end
  else
    url = ad.image_url or ad.thumbnail_url
    if not url then row.status, row.reason = "not_downloadable", "no_image_url" end
  end
  if url then
    row.source_url = url
    local a
    a, err, class = assets.download(url, { kind = row.asset_type })
    if a then
      row.status, row.storage_path, row.sha256 = "downloaded", a.key, a.sha256
      row.mime_type, row.size = a.mime_type, a.size
      if a.width then row.dimensions = { width = a.width, height = a.height } end
      row.created = a.created
    elseif class == "expired" and ad.stale_url and ad.consecutive_403s > 0 then
      -- the creative could not be read again: this was the URL already refused,
      -- and its 403 says nothing new about the file (the count stays)
      row.consecutive_403s = ad.consecutive_403s
      row.status, row.error = "failed", err .. "; the ad's creative could not be read again for a fresh "
        .. "URL: the next run tries again"
    elseif class == "expired" then
      -- not for good: failed rows have their creative read again by the next
      -- run (or the job's retry), which gives a freshly signed URL; a 403 to
      -- M.MAX_403 downloads in a row, fresh URLs included, is for good
      row.consecutive_403s = ad.consecutive_403s + 1
      if row.consecutive_403s >= M.MAX_403 then
        row.status, row.reason = "not_downloadable", "http_403_repeated"
        row.error = ("HTTP 403 on %d runs in a row, each but the first with the ad's creative read again "
          .. "for a fresh URL: the file is gone or restricted, most likely; not tried again")
          :format(row.consecutive_403s)
      else
        row.status, row.error = "failed", err .. "; the next run reads the ad's creative again for a fresh URL"
      end
    elseif class == "not_downloadable" then
      row.status, row.error = "not_downloadable", err
      row.reason = err:match("^HTTP (%d+)") and ("http_" .. err:match("^HTTP (%d+)"))
        or (err:match("larger than") and "too_large") or "not_downloadable"
    else
      row.status, row.error = "failed", err
    end
  end
  if not record(job, row) then return "skipped", row end
  if row.status ~= "downloaded" then
    job.log("asset %s of ad %s: %s%s", row.asset_type, row.meta_ad_id, row.status,
      (row.reason and (" (" .. row.reason .. ")") or "") .. (row.error and (": " .. row.error) or ""))
  end
  return class == "store" and "store" or row.status, row
end

local CANDIDATES = [[
  SELECT a.meta_ad_id, a.is_video, a.meta_video_id, a.image_url, a.thumbnail_url,
         coalesce(x.consecutive_403s, 0) AS consecutive_403s
  FROM (SELECT DISTINCT ON (meta_ad_id) meta_ad_id, is_video, meta_video_id, image_url, thumbnail_url
        FROM public.meta_ads_performance WHERE brand_id = $1 AND is_video IS NOT NULL
        ORDER BY meta_ad_id, date DESC) a
  JOIN (SELECT meta_ad_id, sum(spend) AS spend FROM public.meta_ads_performance
        WHERE brand_id = $1 GROUP BY meta_ad_id) s USING (meta_ad_id)
  LEFT JOIN public.meta_ad_assets x
         ON x.meta_ad_id = a.meta_ad_id AND x.asset_type = CASE WHEN a.is_video THEN 'video' ELSE 'image' END
  WHERE x.status IS NULL OR x.status NOT IN ('downloaded', 'not_downloadable', 'deleted')
  ORDER BY s.spend DESC NULLS LAST, a.meta_ad_id]]

-- asset_download, and meta_sync step 4: for the brand's ads without an asset
-- (none yet, or the last attempt failed), the videos (at most opts.max_videos)
-- and images (opts.max_images) of the ads with the most spend. Ads whose
-- creative is unknown are read first. Returns a summary { attempted,
-- downloaded, stored (new files), reused (bytes already stored), failed,
-- not_downloadable, videos, images, creatives_read, creatives_failed,
-- rows_skipped (asset rows the database refused) } | nil,
-- err, summary, refused when the step failed as a whole: the asset store
-- cannot be written, or downloads or creative reads failed and nothing was
-- downloaded (refused: that with the token refused on the way, which every
-- request will meet until it is replaced).
function M.download(job, g, opts)
  local max_videos, max_images = opts.max_videos or 20, opts.max_images or 40
  local summary = { attempted = 0, downloaded = 0, stored = 0, reused = 0, failed = 0,
                    not_downloadable = 0, videos = 0, images = 0, creatives_read = 0,
                    creatives_failed = 0, rows_skipped = 0 }
  local first_err
  local reread = {}  -- ads whose creative this run read (a fresh image URL)
  -- ads we know nothing about yet, and ads whose last download failed (media
  -- URLs are short-lived: ask again): read their creatives (bounded)
  local unknown, err = sluice.db.query([[
    SELECT p.meta_ad_id FROM public.meta_ads_performance p
    WHERE p.brand_id = $1
    GROUP BY p.meta_ad_id
    HAVING bool_and(p.is_video IS NULL)
        OR EXISTS (SELECT 1 FROM public.meta_ad_assets x
                   WHERE x.meta_ad_id = p.meta_ad_id AND x.status = 'failed')
    ORDER BY sum(p.spend) DESC NULLS LAST, p.meta_ad_id LIMIT $2]], job.brand_id,
    math.min(M.MAX_ADS, max_videos + max_images))
  if not unknown then return nil, "database: " .. err, summary end
  if #unknown > 0 then
    local ids = {}
    for i, r in ipairs(unknown) do ids[i] = r.meta_ad_id end
    local n, ferr, n_failed, n_refused = M.fetch_and_store(job, g, ids)
    summary.creatives_read, summary.creatives_failed, summary.rows_skipped = n, n_failed, n_refused
    for _, id in ipairs(ids) do
      if ferr[id] then first_err = first_err or ("creative of ad %s: %s"):format(id, ferr[id])
      else reread[id] = true end
    end
  end
  local found
  found, err = sluice.db.query(CANDIDATES, job.brand_id)
  if not found then return nil, "database: " .. err, summary end
  local todo = {}
  for _, r in ipairs(found) do
    local ad = { meta_ad_id = r.meta_ad_id, is_video = r.is_video, meta_video_id = v(r.meta_video_id),
                 image_url = v(r.image_url), thumbnail_url = v(r.thumbnail_url),
                 consecutive_403s = r.consecutive_403s,
                 -- an image's URL not read again this run (a video's source is, in one())
                 stale_url = not r.is_video and not reread[r.meta_ad_id] }
    if ad.is_video and summary.videos < max_videos then
      summary.videos = summary.videos + 1
      todo[#todo + 1] = ad
    elseif not ad.is_video and summary.images < max_images then
      summary.images = summary.images + 1
      todo[#todo + 1] = ad
    end
  end
  summary.attempted = #todo
  local store_err
  local results = sluice.map(todo, function(ad)
    local outcome, row = one(job, g, ad)
    return { outcome = outcome, row = row }
  end, { concurrency = M.CONCURRENCY })
  for _, r in ipairs(results) do
    if r.outcome == "downloaded" then
      summary.downloaded = summary.downloaded + 1
      if r.row.created then summary.stored = summary.stored + 1 else summary.reused = summary.reused + 1 end
    elseif r.outcome == "not_downloadable" then
      summary.not_downloadable = summary.not_downloadable + 1
    elseif r.outcome == "skipped" then
      summary.rows_skipped = summary.rows_skipped + 1
    else
      summary.failed = summary.failed + 1
      if r.outcome == "store" then store_err = store_err or r.row.error end
      first_err = first_err or ("%s of ad %s: %s"):format(r.row.asset_type, r.row.meta_ad_id,
                                                          r.row.error or r.row.status)
    end
  end
  job.log("assets: %s (%s, %s): %d downloaded (%s, %d already stored), "
    .. "%d not downloadable, %d failed; creatives: %d read, %d could not be read",
    plural(summary.attempted, "ad"), plural(summary.videos, "video"), plural(summary.images, "image"),
    summary.downloaded, plural(summary.stored, "new file"), summary.reused,
    summary.not_downloadable, summary.failed, summary.creatives_read, summary.creatives_failed)
  if store_err then return nil, "the asset store cannot be written: " .. store_err, summary end
  -- something to do and nothing got: a failure, not a fresh dataset with 0 assets
  if summary.downloaded == 0 and summary.failed + summary.creatives_failed > 0 then
    return nil, ("nothing downloaded: %s failed and %s could not be read (first: %s)")
      :format(plural(summary.failed, "download"), plural(summary.creatives_failed, "creative"), first_err or "?"),
      summary, g.token_refused ~= nil
  end
  return summary
end

return M
