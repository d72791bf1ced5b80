-- facebook_ads.lua — reading the output of the Facebook Ads Library scraper actor
-- (curious_coder/facebook-ads-library-scraper), shared by competitor_scrape and
-- template_scrape: the actor id and its input, id normalisation (the actor emits
-- camelCase or snake_case ids), the ad's fields flattened for the ads tables,
-- the media URLs in its snapshot, and video-only detection.
--
--   local fb = require("sluice.facebook_ads")
--   local input = fb.input(url, { count = 50 })
--   local ad, err = fb.normalize(item)     -- nil, "item has no ad_archive_id"
--   local media = fb.media(item.snapshot)  -- { images = {url…}, videos = {url…} }
--   fb.is_video_only(item.snapshot)        -- true: videos and no image at all

local M = {}

M.ACTOR = "curious_coder~facebook-ads-library-scraper"

local null = sluice.null

-- A JSON value with null and "" read as absent.
local function v(x)
  if x == null or x == "" then return nil end
  return x
end

local function str(x)
  x = v(x)
  if x == nil then return nil end
  if type(x) == "number" and math.type(x) == "float" and x == math.floor(x) then
    return ("%d"):format(x)
  end
  if type(x) ~= "string" and type(x) ~= "number" then return nil end
  return tostring(x)
end

local function int(x)
  x = v(x)
  if type(x) == "string" then x = tonumber(x) end
  if type(x) ~= "number" or x ~= x then return nil end
  return math.floor(x)
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
  return math.floor(n * mult + 0.5)
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
-- JSON nulls dropped), or nil, err when it has no archive id.
function M.normalize(item)
  if type(item) ~= "table" then return nil, "item is not an object" end
  local archive = str(item.ad_archive_id) or str(item.adArchiveID) or str(item.adArchiveId)
  if not archive then return nil, "item has no ad_archive_id" end
  local snap = v(item.snapshot)
  if type(snap) ~= "table" then snap = {} end
  local body = v(snap.body)
  if type(body) == "table" then body = v(body.text) end
  if type(body) ~= "string" then body = nil end
  local imp = v(item.impressions_with_index)
  local imp_text = type(imp) == "table" and v(imp.impressions_text) or nil
  local lo, hi = M.parse_impressions(imp_text)
  local start_date, end_date = int(item.start_date), int(item.end_date)
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
    collation_count = int(item.collation_count),
    position = int(item.position),
    total = int(item.total),
    snapshot = v(item.snapshot),
    ad_body = body,
    ad_title = str(snap.title),
    link_url = str(snap.link_url),
    cta_text = str(snap.cta_text),
    cta_type = str(snap.cta_type),
    caption = str(snap.caption),
    link_description = str(snap.link_description),
    page_like_count = int(snap.page_like_count),
    page_profile_uri = str(snap.page_profile_uri),
    display_format = str(snap.display_format),
  }
  return ad
end

-- Normalizes a list of items: the ads (first occurrence of each archive id, in
-- order) and the number of items skipped for having no archive id.
function M.normalize_all(items)
  local ads, seen, skipped = {}, {}, 0
  for _, item in ipairs(items or {}) do
    local ad = M.normalize(item)
    if not ad then
      skipped = skipped + 1
    elseif not seen[ad.ad_archive_id] then
      seen[ad.ad_archive_id] = true
      ads[#ads + 1] = ad
    end
  end
  return ads, skipped
end

return M
