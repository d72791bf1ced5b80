-- 103_meta_assets_403_retry.sql — Meta ad assets that a CDN refused with 403 are
-- tried again.
--
-- A 403 from the CDN marked an asset not_downloadable (http_403) for good; it is
-- almost always a signed URL past its expiry, which a freshly read creative
-- replaces. asset_download now records a 403 as failed, so the next run reads
-- the ad's creative again and downloads from the new URL. This turns the rows
-- the old rule left behind into such failed rows.

UPDATE public.meta_ad_assets
SET status = 'failed', not_downloadable_reason = NULL,
    error = 'HTTP 403 (an expired signed URL, most likely); the next run reads the ad''s creative again for a fresh URL',
    updated_at = now()
WHERE status = 'not_downloadable' AND not_downloadable_reason = 'http_403';
