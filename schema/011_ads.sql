-- 011_ads.sql — the ad tables the competitor_scrape, template_scrape,
-- asset_download and meta_sync handlers write (the seed's names and columns,
-- SERVICES.md §5), in schema public next to 010_research.sql's competitors:
--
--   facebook_ads                 ads scraped from the Ads Library (template_scrape)
--   scraped_ad_assets            their images/videos in the asset store
--   template_queue               assets waiting for review as templates
--   competitor_ads               a competitor's ads (competitor_scrape)
--   brand_ad_accounts            a brand's Meta ad accounts (+ OAuth token)
--   meta_ads_performance         daily insights per ad (meta_sync)
--   meta_ad_assets               a brand's ad videos/images in the asset store
--   ad_creative_classifications  LLM classifications of a brand's ads
--
-- Every table has the key its handler upserts on, so a re-run (or a retry)
-- updates rows instead of duplicating them. Where the seed had no key
-- (scraped_ad_assets, template_queue, ad_creative_classifications) one is added;
-- docs/job-types.md says which. `sluice.add_ad_account(brand, act_id, …)` links
-- an ad account to a brand.
--
-- Asset rows hold `storage_path`, relative to the asset store (SLUICE_ASSET_DIR,
-- default $SLUICE_HOME/assets): `ab/<sha256>.<ext>`, one file per distinct content.
--
-- As in 010_research.sql, tables and indexes are created only if absent and the
-- brand foreign keys attached only if missing (at the end), so the file also runs
-- cleanly on a database whose sluice schema was dropped while these tables stayed.

-- ===================================================================== Ads Library

CREATE TABLE IF NOT EXISTS public.facebook_ads (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    ad_archive_id           text NOT NULL UNIQUE,
    ad_id                   text,
    page_id                 text,
    page_name               text,
    is_active               boolean,
    start_date              timestamptz,
    end_date                timestamptz,
    currency                text,
    spend                   jsonb,
    impressions             jsonb,          -- impressions_with_index as the actor gives it
    impression_lower        bigint,
    impression_upper        bigint,
    impression_text         text,
    reach_estimate          jsonb,
    snapshot                jsonb,
    categories              jsonb,
    publisher_platform      jsonb,
    political_countries     jsonb,
    entity_type             text,
    collation_id            text,
    collation_count         integer,
    brand_id                uuid,
    scrape_source           text NOT NULL DEFAULT 'ad_library_search',
    search_url              text,
    link_url                text,
    cta_text                text,
    cta_type                text,
    ad_title                text,
    ad_body                 text,
    caption                 text,
    link_description        text,
    page_like_count         bigint,
    page_profile_uri        text,
    display_format          text,
    first_seen_at           timestamptz NOT NULL DEFAULT now(),
    last_seen_at            timestamptz NOT NULL DEFAULT now(),
    last_checked_at         timestamptz NOT NULL DEFAULT now(),
    times_seen              integer NOT NULL DEFAULT 1,
    last_seen_job_id        uuid,           -- a retry of the same job does not count again
    scrape_position         integer,        -- position when first seen
    latest_scrape_position  integer,
    best_scrape_position    integer,        -- the smallest position ever
    scrape_total            integer,
    scraped_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS facebook_ads_brand ON public.facebook_ads (brand_id, last_seen_at DESC);
CREATE INDEX IF NOT EXISTS facebook_ads_page ON public.facebook_ads (page_id);

-- One row per media item of a scraped ad: (ad, type, position in the ad's media
-- list) is the key, so the signed CDN URLs changing between scrapes update the
-- row instead of adding one.
CREATE TABLE IF NOT EXISTS public.scraped_ad_assets (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    facebook_ad_id   uuid NOT NULL REFERENCES public.facebook_ads (id) ON DELETE CASCADE,
    brand_id         uuid,
    asset_type       text NOT NULL CHECK (asset_type IN ('image', 'video')),
    position         integer NOT NULL DEFAULT 0,
    storage_path     text NOT NULL DEFAULT '',
    sha256           text,
    original_url     text NOT NULL,
    file_size_bytes  bigint,
    mime_type        text,
    dimensions       jsonb,                 -- {"width": w, "height": h} for images
    duration_sec     numeric,
    scrape_source    text NOT NULL DEFAULT 'template_scrape',
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('downloaded', 'failed', 'expired', 'pending')),
    error            text,
    attempts         integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (facebook_ad_id, asset_type, position),
    CHECK (status <> 'downloaded' OR (storage_path <> '' AND sha256 IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS scraped_ad_assets_sha ON public.scraped_ad_assets (sha256);

-- Assets to review as templates. An asset is queued once, and so is a content
-- (sha256): the three ads of a collation group sharing one creative give one entry.
CREATE TABLE IF NOT EXISTS public.template_queue (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    asset_id               uuid NOT NULL UNIQUE REFERENCES public.scraped_ad_assets (id) ON DELETE CASCADE,
    facebook_ad_id         uuid REFERENCES public.facebook_ads (id) ON DELETE CASCADE,
    brand_id               uuid,
    sha256                 text,
    status                 text NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'approved', 'rejected', 'archived')),
    ai_analysis            jsonb,
    ai_quality_score       numeric,
    ai_suggested_category  text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    reviewed_at            timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS template_queue_content ON public.template_queue (sha256)
    WHERE sha256 IS NOT NULL;
CREATE INDEX IF NOT EXISTS template_queue_status ON public.template_queue (status, created_at);

-- ===================================================================== competitors

CREATE TABLE IF NOT EXISTS public.competitor_ads (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    competitor_id     uuid NOT NULL REFERENCES public.competitors (id) ON DELETE CASCADE,
    brand_id          uuid,
    ad_archive_id     text NOT NULL,
    page_id           text,
    page_name         text,
    is_active         boolean,
    started_running   date,
    stopped_running   date,
    ad_creative_body  text,
    link_url          text,
    cta_text          text,
    display_format    text,
    snapshot_data     jsonb,
    scrape_source     text NOT NULL DEFAULT 'ad_library_search',
    scraped_at        timestamptz NOT NULL DEFAULT now(),
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at      timestamptz NOT NULL DEFAULT now(),
    times_seen        integer NOT NULL DEFAULT 1,
    last_seen_job_id  uuid,
    UNIQUE (competitor_id, ad_archive_id)
);
CREATE INDEX IF NOT EXISTS competitor_ads_brand ON public.competitor_ads (brand_id, last_seen_at DESC);

-- ===================================================================== Meta ad accounts

CREATE TABLE IF NOT EXISTS public.brand_ad_accounts (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    brand_id            uuid NOT NULL,
    meta_ad_account_id  text NOT NULL CHECK (meta_ad_account_id ~ '^act_[0-9]+$'),
    account_name        text,
    is_primary          boolean NOT NULL DEFAULT false,
    auth_method         text NOT NULL DEFAULT 'system' CHECK (auth_method IN ('system', 'oauth')),
    access_token        text,
    token_expires_at    timestamptz,
    refresh_token       text,
    currency            text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand_id, meta_ad_account_id)
);
-- at most one primary account per brand (the one meta_sync reads)
CREATE UNIQUE INDEX IF NOT EXISTS brand_ad_accounts_primary ON public.brand_ad_accounts (brand_id)
    WHERE is_primary;

-- Links a Meta ad account to a brand (name or id); "123" and "act_123" are the
-- same account. Idempotent: a second call updates the row. With p_primary (the
-- default) the account becomes the brand's primary one. An access token makes it
-- an OAuth account (used instead of META_ACCESS_TOKEN while it has not expired).
-- Returns the row's id.
CREATE OR REPLACE FUNCTION sluice.add_ad_account(
    p_brand text, p_account text, p_name text DEFAULT NULL, p_primary boolean DEFAULT true,
    p_currency text DEFAULT NULL, p_access_token text DEFAULT NULL,
    p_token_expires_at timestamptz DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    b uuid := sluice.resolve_brand(p_brand);
    acct text := 'act_' || regexp_replace(btrim(coalesce(p_account, '')), '^act_', '');
    rid uuid;
BEGIN
    IF b IS NULL THEN
        RAISE EXCEPTION 'add_ad_account: a brand is required';
    END IF;
    IF acct !~ '^act_[0-9]+$' THEN
        RAISE EXCEPTION 'add_ad_account: ''%'' is not a Meta ad account id (act_ followed by digits)',
            p_account;
    END IF;
    IF p_primary THEN
        UPDATE public.brand_ad_accounts SET is_primary = false, updated_at = now()
        WHERE brand_id = b AND is_primary AND meta_ad_account_id <> acct;
    END IF;
    INSERT INTO public.brand_ad_accounts AS a
        (brand_id, meta_ad_account_id, account_name, is_primary, currency, auth_method,
         access_token, token_expires_at)
    VALUES (b, acct, p_name, p_primary, p_currency,
            CASE WHEN p_access_token IS NULL THEN 'system' ELSE 'oauth' END,
            p_access_token, p_token_expires_at)
    ON CONFLICT (brand_id, meta_ad_account_id) DO UPDATE SET
        account_name = coalesce(excluded.account_name, a.account_name),
        is_primary = excluded.is_primary OR a.is_primary AND NOT p_primary,
        currency = coalesce(excluded.currency, a.currency),
        auth_method = CASE WHEN p_access_token IS NULL THEN a.auth_method ELSE 'oauth' END,
        access_token = coalesce(p_access_token, a.access_token),
        token_expires_at = CASE WHEN p_access_token IS NULL THEN a.token_expires_at
                                ELSE p_token_expires_at END,
        updated_at = now()
    RETURNING a.id INTO rid;
    RETURN rid;
END $$;

-- ===================================================================== Meta performance

CREATE TABLE IF NOT EXISTS public.meta_ads_performance (
    id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    brand_id                    uuid NOT NULL,
    meta_ad_account_id          text NOT NULL,
    meta_ad_id                  text NOT NULL,
    meta_adset_id               text,
    adset_name                  text,
    meta_campaign_id            text,
    campaign_name               text,
    ad_name                     text,
    date                        date NOT NULL,
    spend                       numeric,
    impressions                 bigint,
    reach                       bigint,
    frequency                   numeric,
    cpm                         numeric,
    link_clicks                 bigint,
    link_ctr                    numeric,
    link_cpc                    numeric,
    add_to_carts                bigint,
    cost_per_add_to_cart        numeric,
    purchases                   bigint,
    purchase_value              numeric,
    roas                        numeric,
    conversion_rate             numeric,
    video_views                 bigint,
    video_avg_watch_time        numeric,
    video_p25_watched           bigint,
    video_p50_watched           bigint,
    video_p75_watched           bigint,
    video_p95_watched           bigint,
    video_p100_watched          bigint,
    video_thruplay              bigint,
    hold_rate                   numeric,
    hook_rate                   numeric,
    initiate_checkouts          bigint,
    landing_page_views          bigint,
    content_views               bigint,
    cost_per_initiate_checkout  numeric,
    raw_actions                 jsonb,
    raw_costs                   jsonb,
    ad_status                   text,
    campaign_objective          text,
    thumbnail_url               text,
    image_url                   text,       -- the full image an image ad shows (added)
    meta_video_id               text,
    is_video                    boolean,
    object_type                 text,
    ad_copy                     text,
    destination_url             text,       -- added
    fetched_at                  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (meta_ad_id, date)
);
CREATE INDEX IF NOT EXISTS meta_ads_performance_brand ON public.meta_ads_performance (brand_id, date DESC);

CREATE TABLE IF NOT EXISTS public.meta_ad_assets (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    meta_ad_id               text NOT NULL,
    brand_id                 uuid NOT NULL,
    asset_type               text NOT NULL CHECK (asset_type IN ('video', 'image')),
    storage_path             text NOT NULL DEFAULT '',
    sha256                   text,
    mime_type                text,
    file_size_bytes          bigint,
    dimensions               jsonb,
    meta_video_id            text,
    source_url               text,
    status                   text NOT NULL
                             CHECK (status IN ('downloaded', 'failed', 'not_downloadable', 'deleted')),
    not_downloadable_reason  text,
    error                    text,
    attempts                 integer NOT NULL DEFAULT 1,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    UNIQUE (meta_ad_id, asset_type),
    CHECK (status <> 'downloaded' OR (storage_path <> '' AND sha256 IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS meta_ad_assets_brand ON public.meta_ad_assets (brand_id, status);
CREATE INDEX IF NOT EXISTS meta_ad_assets_sha ON public.meta_ad_assets (sha256);

-- One classification per (brand, ad, input): input_hash is the cache key (the
-- prompt, the model and the prompt version), so the same input is never sent to
-- the model twice and a changed ad gets a new row.
CREATE TABLE IF NOT EXISTS public.ad_creative_classifications (
    id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id             uuid,
    brand_id                    uuid NOT NULL,
    meta_ad_id                  text NOT NULL,
    run_id                      uuid,
    creative_awareness_level    text,
    creative_format             text,
    copy_awareness_level        text,
    hook_type                   text,
    primary_cta                 text,
    landing_page_awareness_level text,
    congruence_score            numeric,
    reasoning                   text,
    source                      text NOT NULL DEFAULT 'meta_sync',
    prompt_version              text,
    input_hash                  text NOT NULL,
    model_used                  text,
    raw_classification          jsonb,
    classified_at               timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand_id, meta_ad_id, input_hash)
);
CREATE INDEX IF NOT EXISTS ad_creative_classifications_ad
    ON public.ad_creative_classifications (meta_ad_id, classified_at DESC);

-- ===================================================================== brand keys

-- brand_id → sluice.brands on every table above. A brand's own data goes with it;
-- scraped Ads Library ads and their assets are a shared library and stay.
DO $$
DECLARE
    t text;
    action text;
BEGIN
    FOREACH t IN ARRAY ARRAY['facebook_ads', 'scraped_ad_assets', 'template_queue', 'competitor_ads',
                             'brand_ad_accounts', 'meta_ads_performance', 'meta_ad_assets',
                             'ad_creative_classifications'] LOOP
        action := CASE WHEN t IN ('facebook_ads', 'scraped_ad_assets', 'template_queue')
                       THEN 'SET NULL' ELSE 'CASCADE' END;
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                       WHERE conrelid = format('public.%I', t)::regclass
                         AND conname = t || '_brand_id_fkey') THEN
            EXECUTE format('ALTER TABLE public.%I ADD CONSTRAINT %I FOREIGN KEY (brand_id) '
                           'REFERENCES sluice.brands (id) ON DELETE %s NOT VALID',
                           t, t || '_brand_id_fkey', action);
        END IF;
    END LOOP;
END $$;
