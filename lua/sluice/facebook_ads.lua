-- facebook_ads.lua — reading the output of the Facebook Ads Library scraper actor
-- (curious_coder/facebook-ads-library-scraper), shared by competitor_scrape and
-- template_scrape: the actor id and its input, id normalisation (the actor emits
-- camelCase or snake_case ids), the ad's fields flattened for the ads tables,
-- the media URLs in its snapshot, and video-only detection.
--
--   local fb = require("sluice.facebook_ads")
--   local input = fb.input(url, { count = 50 })
--   local ad, err, notes = fb.normalize(item)  -- nil, "item has no ad_archive_id"
--   local media = fb.media(item.snapshot)  -- { images = {url…}, videos = {url…} }
--   fb.is_video_only(item.snapshot)        -- true: videos and no image at all
--   fb.check_readable(items, ads, skipped, run)  -- raises when no item was an ad

local apify = require("sluice.apify")
local clean = require("sluice.clean")
local plural = require("sluice.plural")

local M = {}

M.ACTOR = "curious_coder~facebook-ads-library-scraper"

local v = clean.value  -- null and "" read as absent

local function str(x)
  x = v(x)
  if x == nil then return nil end
  if type(x) == "number" and math.type(x) == "float" and x == math.floor(x) then
    return ("%d"):format(x)
  end
  if type(x) ~= "string" and type(x) ~= "number" then return nil end
  return tostring(x)
end

-- A count for a column of `max` (0..max), or nil with a note naming the ad.
local function count(x, max, field, archive, notes)
  x = v(x)
  if x == nil then return nil end
  local n, why = clean.count(x, max)
  if why then notes[#notes + 1] = ("ad %s: %s left empty: %s"):format(archive, field, why) end
  return n
end

-- Unix seconds from the actor's seconds — or milliseconds (…), which some
-- actor versions emit: read by magnitude, with a note; nil when it is no date.
local function epoch(x, field, archive, notes)
  x = v(x)
  if x == nil then return nil end
  local n, how = clean.epoch(x)
  if not n then
    notes[#notes + 1] = ("ad %s: %s left empty: %s"):format(archive, field, how)
  elseif how then
    notes[#notes + 1] = ("ad %s: %s %s read as %s"):format(archive, field, x, how)
  end
  return n
end

local function bool(x)
  x = v(x)
  if type(x) == "boolean" then return x end
  return nil
end

local function list(x)
  x = v(x)
  if type(x) == "table" then return x end
  return nil
end

-- The actor's input for one Ad Library URL (search or page mode).
--   opts.count: max ads (omitted when nil), opts.period ("" | last24h | last7d …),
--   opts.active_status / opts.country: page mode's scrapePageAds.
function M.input(url, opts)
  opts = opts or {}
  local input = {
    urls = { { url = url } },
    scrapeAdDetails = opts.scrape_ad_details or false,
    period = opts.period or "",
  }
  if opts.count then input.count = opts.count end
  if opts.active_status or opts.country then
    input.scrapePageAds = { activeStatus = opts.active_status or "all", countryCode = opts.country or "ALL" }
  end
  return input
end

-- "1K-5K" → 1000, 5000; "<1K" → 0, 1000; ">1M" → 1000000, nil
local function parse_count(s)
  local n, unit = s:match("^%s*([%d%.]+)%s*([KkMmBb]?)%s*$")
  n = tonumber(n)
  if not n then return nil end
  local mult = ({ k = 1e3, m = 1e6, b = 1e9 })[unit:lower()] or 1
  return math.tointeger(math.floor(n * mult + 0.5))  -- nil past the 64-bit range
end

function M.parse_impressions(text)
  text = v(text)
  if type(text) ~= "string" then return nil, nil end
  local lo, hi = text:match("^%s*([^%-]+)%s*%-%s*(.+)$")
  if lo then return parse_count(lo), parse_count(hi) end
  local rest = text:match("^%s*<%s*(.+)$")
  if rest then return 0, parse_count(rest) end
  rest = text:match("^%s*>%s*(.+)$")
  if rest then return parse_count(rest), nil end
  local n = parse_count(text)
  return n, n
end

---------------------------------------------------------------- media

local function add(out, seen, url)
  url = v(url)
  if type(url) == "string" and url:match("^https?://") and not seen[url] then
    seen[url] = true
    out[#out + 1] = url
  end
end

-- The best image URL of one snapshot element (a table, or a plain URL string).
local function image_of(e)
  if type(e) == "string" then return e end
  if type(e) ~= "table" then return nil end
  return v(e.original_image_url) or v(e.resized_image_url) or v(e.watermarked_resized_image_url)
end

local function video_of(e)
  if type(e) ~= "table" then return nil end
  return v(e.video_hd_url) or v(e.video_sd_url) or v(e.watermarked_video_hd_url)
    or v(e.watermarked_video_sd_url)
end

-- { images = {url…}, videos = {url…} }: every distinct media URL of the ad, in
-- the order top level, images[], videos[], cards[], extra_images[], extra_videos[].
function M.media(snapshot)
  local images, videos, seen = {}, {}, {}
  snapshot = v(snapshot)
  if type(snapshot) ~= "table" then return { images = images, videos = videos } end
  add(images, seen, image_of(snapshot))
  add(videos, seen, video_of(snapshot))
  for _, e in ipairs(list(snapshot.images) or {}) do add(images, seen, image_of(e)) end
  for _, e in ipairs(list(snapshot.videos) or {}) do add(videos, seen, video_of(e)) end
  for _, card in ipairs(list(snapshot.cards) or {}) do
    add(images, seen, image_of(card))
    add(videos, seen, video_of(card))
  end
  for _, e in ipairs(list(snapshot.extra_images) or {}) do add(images, seen, image_of(e)) end
  for _, e in ipairs(list(snapshot.extra_videos) or {}) do add(videos, seen, video_of(e)) end
  return { images = images, videos = videos }
end

-- Video-only: the ad has video URLs and no image at the top level, in images[]
-- or in cards[] (the seed's rule for images_only).
function M.is_video_only(snapshot)
  snapshot = v(snapshot)
  if type(snapshot) ~= "table" then return false end
  local m = M.media(snapshot)
  if #m.videos == 0 then return false end
  if image_of(snapshot) then return false end
  for _, e in ipairs(list(snapshot.images) or {}) do
    if image_of(e) then return false end
  end
  for _, card in ipairs(list(snapshot.cards) or {}) do
    if image_of(card) then return false end
  end
  return true
end

---------------------------------------------------------------- items

-- One actor item → a flat table of the fields the ads tables keep (snake_case,
-- JSON nulls dropped), or nil, err when it has no archive id. A value Postgres
-- would refuse is cleaned, so that one ad does not fail the batch it is stored
-- in: NUL is removed from every text (the snapshot's too), dates in
-- milliseconds are read as such, a date or count out of range is left empty.
-- The third value lists notes on what was cleaned, each naming the ad.
function M.normalize(item)
  if type(item) ~= "table" then return nil, "item is not an object" end
  local nuls
  item, nuls = clean.deep(item)
  local archive = str(item.ad_archive_id) or str(item.adArchiveID) or str(item.adArchiveId)
  if not archive then return nil, "item has no ad_archive_id" end
  local notes = { clean.nul_note("ad " .. archive, nuls) }
  local I4, I8 = clean.INT4_MAX, clean.INT8_MAX
  local snap = v(item.snapshot)
  if type(snap) ~= "table" then snap = {} end
  local body = v(snap.body)
  if type(body) == "table" then body = v(body.text) end
  if type(body) ~= "string" then body = nil end
  local imp = v(item.impressions_with_index)
  local imp_text = type(imp) == "table" and v(imp.impressions_text) or nil
  local lo, hi = M.parse_impressions(imp_text)
  local start_date = epoch(item.start_date, "start_date", archive, notes)
  local end_date = epoch(item.end_date, "end_date", archive, notes)
  local ad = {
    ad_archive_id = archive,
    ad_id = str(item.ad_id) or str(item.adID) or str(item.adId),
    page_id = str(item.page_id) or str(item.pageID) or str(item.pageId) or str(snap.page_id),
    page_name = str(item.page_name) or str(item.pageName) or str(snap.page_name),
    is_active = bool(item.is_active),
    start_date = start_date,   -- unix seconds
    end_date = end_date,
    currency = str(item.currency),
    spend = v(item.spend),
    impressions = type(imp) == "table" and imp or nil,
    impression_text = imp_text,
    impression_lower = lo,
    impression_upper = hi,
    reach_estimate = v(item.reach_estimate),
    categories = list(item.categories),
    publisher_platform = list(item.publisher_platform),
    political_countries = list(item.political_countries),
    entity_type = str(item.entity_type),
    collation_id = str(item.collation_id),
    collation_count = count(item.collation_count, I4, "collation_count", archive, notes),
    position = count(item.position, I4, "position", archive, notes),
    total = count(item.total, I4, "total", archive, notes),
    snapshot = v(item.snapshot),
    ad_body = body,
    ad_title = str(snap.title),
    link_url = str(snap.link_url),
    cta_text = str(snap.cta_text),
    cta_type = str(snap.cta_type),
    caption = str(snap.caption),
    link_description = str(snap.link_description),
    page_like_count = count(snap.page_like_count, I8, "page_like_count", archive, notes),
    page_profile_uri = str(snap.page_profile_uri),
    display_format = str(snap.display_format),
  }
  return ad, nil, notes
end

-- Normalizes a list of items: the ads (first occurrence of each archive id, in
-- order), the number of items skipped for having no archive id, and the notes
-- on values cleaned (see normalize; log them with clean.notes).
function M.normalize_all(items)
  local ads, seen, skipped, notes = {}, {}, 0, {}
  for _, item in ipairs(items or {}) do
    local ad, _, n = M.normalize(item)
    if not ad then
      skipped = skipped + 1
    elseif not seen[ad.ad_archive_id] then
      seen[ad.ad_archive_id] = true
      ads[#ads + 1] = ad
      table.move(n, 1, #n, #notes + 1, notes)
    end
  end
  return ads, skipped, notes
end

-- Raises, for good, when a run returned items and not one ad among them (no
-- ad archive id in any: the actor's output format changed, say): stored as 0
-- ads, the scrape would look done and its dataset fresh, and a retry reads the
-- same run. A run without items is a search without results.
function M.check_readable(items, ads, skipped, run)
  if #ads > 0 or skipped == 0 then return end
  error(sluice.permanent(("no ad among the %s run %s returned (none has an ad_archive_id or "
    .. "adArchiveID): its output cannot be read; the first item's keys: %s")
    :format(plural(#items, "item"), tostring(run and run.id), apify.item_keys(items))), 0)
end

return M
