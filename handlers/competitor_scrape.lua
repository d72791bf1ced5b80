-- competitor_scrape: a competitor's ads from the Facebook Ads Library, through
-- the Apify Ads Library scraper actor, upserted into competitor_ads on
-- (competitor_id, ad_archive_id): an ad seen again is updated (last seen, times
-- seen, active state), never duplicated. The actor run is checkpointed, so a
-- retry reads the run already paid for instead of starting another.
local apify = require("sluice.apify")
local fb = require("sluice.facebook_ads")
local clean = require("sluice.clean")
local plural = require("sluice.plural")
local rows = require("sluice.rows")
local refuse = require("sluice.refuse")

local BATCH = 200

local UPSERT = [[
  INSERT INTO public.competitor_ads AS c
      (competitor_id, brand_id, ad_archive_id, page_id, page_name, is_active, started_running,
       stopped_running, ad_creative_body, link_url, cta_text, display_format, snapshot_data,
       scrape_source, scraped_at, last_seen_job_id)
  SELECT $1, $2, x.ad_archive_id, x.page_id, x.page_name, x.is_active,
         (to_timestamp(x.start_date) AT TIME ZONE 'UTC')::date,
         CASE WHEN x.is_active IS NOT TRUE AND x.end_date IS NOT NULL
              THEN (to_timestamp(x.end_date) AT TIME ZONE 'UTC')::date END,
         x.ad_body, x.link_url, x.cta_text, x.display_format, x.snapshot, 'ad_library_search', now(), $3
  FROM jsonb_to_recordset($4::jsonb) AS x(ad_archive_id text, page_id text, page_name text,
       is_active boolean, start_date double precision, end_date double precision, ad_body text,
       link_url text, cta_text text, display_format text, snapshot jsonb)
  ON CONFLICT (competitor_id, ad_archive_id) DO UPDATE SET
      page_id = coalesce(excluded.page_id, c.page_id),
      page_name = coalesce(excluded.page_name, c.page_name),
      is_active = excluded.is_active,
      started_running = coalesce(excluded.started_running, c.started_running),
      stopped_running = excluded.stopped_running,
      ad_creative_body = coalesce(excluded.ad_creative_body, c.ad_creative_body),
      link_url = coalesce(excluded.link_url, c.link_url),
      cta_text = coalesce(excluded.cta_text, c.cta_text),
      display_format = coalesce(excluded.display_format, c.display_format),
      snapshot_data = coalesce(excluded.snapshot_data, c.snapshot_data),
      scraped_at = now(), last_seen_at = now(),
      times_seen = c.times_seen + CASE WHEN c.last_seen_job_id IS DISTINCT FROM excluded.last_seen_job_id
                                       THEN 1 ELSE 0 END,
      last_seen_job_id = excluded.last_seen_job_id
  RETURNING (xmax = 0) AS inserted]]

return {
  label = "Competitor Scrape",
  emoji = "🕵️",
  description = "A competitor's ads from the Facebook Ads Library (Apify actor) into competitor_ads.",
  params = {
    competitor_id = { type = "uuid", required = true,
                      description = "the competitors row whose ads these are" },
    ad_library_url = { type = "url", required = true, description = "an Ads Library search or page URL" },
    max_ads = { type = "integer", min = 1, max = 10000, default = 500, description = "the actor's count" },
  },
  datasets = {
    competitor_ads = { label = "Competitor Ads", max_age = "168 hours" },
  },
  brand = "required",
  timeout = "30 min",
  max_retries = 3,
  retry_base = "30 s",
  run = function(job)
    local p = job.params
    -- input that rules the run out leaves competitor_ads as it was (sluice.refuse)
    if not job.brand_id then
      refuse(job, { "competitor_ads" }, "competitor_scrape needs the competitor's brand: give it with --brand")
    end
    local comp = rows.query("SELECT id, brand_id, name FROM public.competitors WHERE id = $1",
                            p.competitor_id)[1]
    if not comp then
      refuse(job, { "competitor_ads" }, ("competitor %s does not exist (list them with `sluice competitors "
        .. "list`, add one with `sluice competitors add --brand BRAND NAME`)"):format(p.competitor_id))
    end
    if comp.brand_id ~= job.brand_id then
      refuse(job, { "competitor_ads" }, ("competitor %s (%s) belongs to another brand")
        :format(comp.name, p.competitor_id))
    end
    job.log("scraping the Ads Library for competitor %s (at most %s)", comp.name, plural(p.max_ads, "ad"))

    local items, run = apify.run_actor(job, "ads_library", fb.ACTOR,
      fb.input(p.ad_library_url, { count = p.max_ads }), { timeout = 900, memory = 1024 })
    local ads, skipped, notes = fb.normalize_all(items)
    fb.check_readable(items, ads, skipped, run)
    if skipped > 0 then job.log("%s without an ad_archive_id skipped", plural(skipped, "item")) end
    clean.notes(job, notes, "ad")

    local inserted, updated = 0, 0
    local res, refused = rows.store(job, {
      what = "competitor_ads", sql = UPSERT, rows = ads, chunk = BATCH,
      args = table.pack(comp.id, job.brand_id, job.id),
      key = function(ad) return "ad " .. ad.ad_archive_id end,
    })
    for _, r in ipairs(res) do
      if r.inserted then inserted = inserted + 1 else updated = updated + 1 end
    end
    local total = rows.query([[
      UPDATE public.competitors SET last_scraped_at = now(), updated_at = now(),
             ads_count = (SELECT count(*) FROM public.competitor_ads WHERE competitor_id = $1)
      WHERE id = $1 RETURNING ads_count]], comp.id)
    local usd = tonumber(run and run.usageTotalUsd)
    job.log("competitor %s: %s from the actor, %d new, %d seen again%s; %d stored in all",
      comp.name, plural(#ads, "ad"), inserted, updated,
      #refused > 0 and (", %d refused by the database (skipped)"):format(#refused) or "",
      total[1] and total[1].ads_count or 0)
    -- records: the ads stored (the ones the database refused are rows_skipped)
    job.dataset("competitor_ads"):success(#res, { new = inserted, updated = updated, cost_usd = usd,
                                                  rows_skipped = #refused })
    return { records = #res, new = inserted, updated = updated, ads_count = total[1] and total[1].ads_count,
             apify_run_id = run and run.id, cost_usd = usd, rows_skipped = #refused }
  end,
}
