-- 099_ad_account_one_brand.sql — a Meta ad account belongs to one brand.
--
-- meta_sync stores an account's insights keyed by (ad, date) and marks them with
-- the brand it ran for: with one account linked to two brands, each brand's sync
-- took the other's rows over (its freshness still said fresh), and the ads'
-- assets could only ever be the first brand's. Linking an account that another
-- brand already has is refused, through add_ad_account() or a direct INSERT.
-- Links made before this migration are left as they are.

CREATE OR REPLACE FUNCTION sluice.ad_account_one_brand() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    other text;
BEGIN
    -- two links made at once for the same account wait for each other here
    PERFORM pg_advisory_xact_lock(hashtext('sluice.brand_ad_accounts'), hashtext(NEW.meta_ad_account_id));
    SELECT coalesce(b.name, a.brand_id::text) INTO other
    FROM public.brand_ad_accounts a LEFT JOIN sluice.brands b ON b.id = a.brand_id
    WHERE a.meta_ad_account_id = NEW.meta_ad_account_id AND a.brand_id <> NEW.brand_id
      AND a.id <> NEW.id -- an update moving the row itself
    LIMIT 1;
    IF other IS NOT NULL THEN
        RAISE EXCEPTION 'ad account % is already linked to brand ''%''', NEW.meta_ad_account_id, other
            USING ERRCODE = 'unique_violation',
                  HINT = 'an ad account''s performance rows belong to one brand: unlink it there first';
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS brand_ad_accounts_one_brand ON public.brand_ad_accounts;
CREATE TRIGGER brand_ad_accounts_one_brand
    BEFORE INSERT OR UPDATE OF brand_id, meta_ad_account_id ON public.brand_ad_accounts
    FOR EACH ROW EXECUTE FUNCTION sluice.ad_account_one_brand();
