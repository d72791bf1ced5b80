-- 108_meta_assets_403_cap.sql — a Meta ad asset that answers 403 on every run
-- is given up.
--
-- Since 103_meta_assets_403_retry.sql a CDN 403 is recorded as failed: most
-- likely a signed URL past its expiry, so the next run reads the ad's creative
-- again for a fresh URL and tries once more. A file that is gone or restricted
-- answers 403 to every fresh URL too, and was tried again on every run, for
-- good. consecutive_403s counts the downloads of the asset answered 403 in a
-- row (any other outcome sets it back to 0); asset_download records the third
-- as not_downloadable (not_downloadable_reason http_403_repeated), and runs no
-- longer ask for it. Failed rows whose last answer was a 403 count one.

ALTER TABLE public.meta_ad_assets ADD COLUMN IF NOT EXISTS consecutive_403s integer NOT NULL DEFAULT 0;

UPDATE public.meta_ad_assets SET consecutive_403s = 1
WHERE status = 'failed' AND error LIKE 'HTTP 403%' AND consecutive_403s = 0;
