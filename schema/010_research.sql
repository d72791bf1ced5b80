-- 010_research.sql — the domain tables the research job types write
-- (reddit_scrape, amazon_review_scrape; the competitor tables are shared with
-- competitor_scrape), and the SQL functions a user or an application calls to
-- register competitors, their Amazon product URLs and personas.
--
-- The tables live in schema public under the seed's names and columns, with
-- brand_id referencing sluice.brands. Their unique keys make every write an
-- upsert, so a retried or repeated job never duplicates a row:
--   competitors             (brand_id, name)
--   competitor_amazon_urls  (competitor_id, asin, domain_code)
--   competitor_amazon_reviews (competitor_amazon_url_id, review_id)
--   reddit_scrape_runs      (job_id): the retries of one job share one run row
--   reddit_posts            (brand_id, reddit_id), NULL brands equal: a post is
--                           stored once per brand and carries its latest scores
--   reddit_sentiment_quotes (post_id, sentiment_category, quote_text)
--   personas_4d             (brand_id, name), NULL brands equal
--
-- The tables are created only if absent and their brand foreign keys are
-- attached only if missing, so this file also runs cleanly on a database whose
-- sluice schema was dropped and re-created while these tables stayed.

---------------------------------------------------------------- competitors

CREATE TABLE IF NOT EXISTS public.competitors (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    brand_id          uuid NOT NULL,
    name              text NOT NULL CHECK (length(btrim(name)) > 0),
    facebook_page_id  text,
    website_url       text,
    ad_library_url    text,
    amazon_url        text,
    last_scraped_at   timestamptz,
    ads_count         integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand_id, name)
);

-- One row per Amazon product page of a competitor: what amazon_review_scrape
-- scrapes (its competitor_amazon_url_id parameter is this id).
CREATE TABLE IF NOT EXISTS public.competitor_amazon_urls (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    competitor_id          uuid NOT NULL REFERENCES public.competitors (id) ON DELETE CASCADE,
    brand_id               uuid NOT NULL,
    amazon_url             text NOT NULL,
    asin                   text NOT NULL CHECK (asin ~ '^[A-Z0-9]{10}$'),
    domain_code            text NOT NULL DEFAULT 'com',
    competitor_product_id  uuid,
    last_scraped_at        timestamptz,
    total_reviews_scraped  integer NOT NULL DEFAULT 0,
    scrape_cost_estimate   numeric(12, 4) NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (competitor_id, asin, domain_code)
);

CREATE TABLE IF NOT EXISTS public.competitor_amazon_reviews (
    id                        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    competitor_amazon_url_id  uuid NOT NULL REFERENCES public.competitor_amazon_urls (id) ON DELETE CASCADE,
    competitor_id             uuid NOT NULL REFERENCES public.competitors (id) ON DELETE CASCADE,
    brand_id                  uuid NOT NULL,
    competitor_product_id     uuid,
    review_id                 text NOT NULL,
    asin                      text NOT NULL,
    rating                    smallint CHECK (rating BETWEEN 1 AND 5),
    title                     text,
    body                      text,
    author                    text,
    review_date               date,
    verified_purchase         boolean,
    helpful_votes             integer,
    job_id                    uuid,
    scraped_at                timestamptz NOT NULL DEFAULT now(),
    created_at                timestamptz NOT NULL DEFAULT now(),
    UNIQUE (competitor_amazon_url_id, review_id)
);
CREATE INDEX IF NOT EXISTS competitor_amazon_reviews_competitor
    ON public.competitor_amazon_reviews (competitor_id);
CREATE INDEX IF NOT EXISTS competitor_amazon_reviews_brand_asin
    ON public.competitor_amazon_reviews (brand_id, asin);

---------------------------------------------------------------- personas

-- The seed's 4-D persona, reduced to the fields Reddit quotes sync into:
-- pain_points, outcomes_jtbd, buying_objections are {"emotional": [],
-- "social": [], "functional": []}; the others are lists of text.
CREATE TABLE IF NOT EXISTS public.personas_4d (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    brand_id           uuid,
    name               text NOT NULL CHECK (length(btrim(name)) > 0),
    description        text,
    pain_points        jsonb NOT NULL DEFAULT '{"emotional": [], "social": [], "functional": []}',
    outcomes_jtbd      jsonb NOT NULL DEFAULT '{"emotional": [], "social": [], "functional": []}',
    buying_objections  jsonb NOT NULL DEFAULT '{"emotional": [], "social": [], "functional": []}',
    failed_solutions   text[] NOT NULL DEFAULT '{}',
    desired_features   text[] NOT NULL DEFAULT '{}',
    familiar_promises  text[] NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (brand_id, name)
);

---------------------------------------------------------------- reddit

-- One row per reddit_scrape job (its retries update the same row): the
-- parameters, the step it is at, the count after each pipeline stage and the
-- cost estimates.
CREATE TABLE IF NOT EXISTS public.reddit_scrape_runs (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    brand_id                uuid,
    product_id              uuid,
    persona_id              uuid REFERENCES public.personas_4d (id) ON DELETE SET NULL,
    job_id                  uuid UNIQUE,
    job_run_id              uuid,
    search_queries          text[] NOT NULL DEFAULT '{}',
    subreddits              text[],
    timeframe               text,
    sort_by                 text,
    max_posts               integer,
    min_upvotes             integer,
    min_comments            integer,
    relevance_threshold     double precision,
    signal_threshold        double precision,
    top_percentile          double precision,
    persona_context         text,
    topic_context           text,
    brand_context           text,
    product_context         text,
    status                  text NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    current_step            text,
    error                   text,
    apify_run_id            text,
    posts_scraped           integer,
    comments_scraped        integer,
    posts_after_engagement  integer,
    posts_after_relevance   integer,
    posts_after_signal      integer,
    posts_top_selected      integer,
    quotes_extracted        integer,
    quotes_synced           integer,
    llm_calls               integer,
    llm_parse_errors        integer,
    apify_cost_estimate     numeric(12, 4),
    llm_cost_estimate       numeric(12, 4),
    created_at              timestamptz NOT NULL DEFAULT now(),
    completed_at            timestamptz
);
CREATE INDEX IF NOT EXISTS reddit_scrape_runs_brand ON public.reddit_scrape_runs (brand_id, created_at);

CREATE TABLE IF NOT EXISTS public.reddit_posts (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    run_id               uuid REFERENCES public.reddit_scrape_runs (id) ON DELETE SET NULL,
    brand_id             uuid,
    reddit_id            text NOT NULL,
    subreddit            text,
    title                text,
    body                 text,
    author               text,
    url                  text,
    score                integer,
    upvote_ratio         double precision,
    num_comments         integer,
    created_utc          timestamptz,
    relevance_score      double precision,
    relevance_reasoning  text,
    signal_score         double precision,
    signal_reasoning     text,
    intent_score         double precision,
    intent_reasoning     text,
    combined_score       double precision,
    selected             boolean NOT NULL DEFAULT false,
    first_seen_at        timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (brand_id, reddit_id)
);
CREATE INDEX IF NOT EXISTS reddit_posts_run ON public.reddit_posts (run_id);

CREATE TABLE IF NOT EXISTS public.reddit_sentiment_quotes (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    run_id                uuid REFERENCES public.reddit_scrape_runs (id) ON DELETE SET NULL,
    brand_id              uuid,
    post_id               uuid NOT NULL REFERENCES public.reddit_posts (id) ON DELETE CASCADE,
    comment_id            text,
    quote_text            text NOT NULL CHECK (length(btrim(quote_text)) > 0),
    source_type           text NOT NULL DEFAULT 'post_body',
    sentiment_category    text NOT NULL CHECK (sentiment_category IN
                          ('PAIN_POINT', 'DESIRED_OUTCOME', 'BUYING_OBJECTION', 'FAILED_SOLUTION',
                           'DESIRED_FEATURE', 'FAMILIAR_SOLUTION')),
    sentiment_subtype     text CHECK (sentiment_subtype IN ('emotional', 'social', 'functional')),
    confidence_score      double precision,
    extraction_reasoning  text,
    synced_to_persona     boolean NOT NULL DEFAULT false,
    created_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (post_id, sentiment_category, quote_text)
);
CREATE INDEX IF NOT EXISTS reddit_sentiment_quotes_run ON public.reddit_sentiment_quotes (run_id);
CREATE INDEX IF NOT EXISTS reddit_sentiment_quotes_brand
    ON public.reddit_sentiment_quotes (brand_id, sentiment_category);

---------------------------------------------------------------- brand keys

-- brand_id → sluice.brands on every table above; a brand's rows go with it.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['competitors', 'competitor_amazon_urls', 'competitor_amazon_reviews',
                             'personas_4d', 'reddit_scrape_runs', 'reddit_posts',
                             'reddit_sentiment_quotes'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                       WHERE conrelid = format('public.%I', t)::regclass
                         AND conname = t || '_brand_id_fkey') THEN
            EXECUTE format('ALTER TABLE public.%I ADD CONSTRAINT %I FOREIGN KEY (brand_id) '
                           'REFERENCES sluice.brands (id) ON DELETE CASCADE NOT VALID',
                           t, t || '_brand_id_fkey');
        END IF;
    END LOOP;
END $$;

---------------------------------------------------------------- functions

-- The Amazon marketplaces (the part of the host after "amazon.").
CREATE OR REPLACE FUNCTION sluice.amazon_domain_codes() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['com', 'ca', 'com.mx', 'com.br', 'co.uk', 'de', 'fr', 'it', 'es', 'nl', 'se',
                 'pl', 'com.be', 'ie', 'com.tr', 'ae', 'sa', 'eg', 'in', 'co.jp', 'sg', 'com.au',
                 'cn', 'co.za']
$$;

-- An Amazon product URL → its ASIN and domain code; raises with a hint when
-- the URL is not one. Understands /dp/ASIN, /gp/product/ASIN, /gp/aw/d/ASIN,
-- /product-reviews/ASIN and /exec/obidos/ASIN/ASIN on any marketplace host
-- (www., smile., m. or bare).
CREATE OR REPLACE FUNCTION sluice.parse_amazon_url(p_url text, OUT asin text, OUT domain_code text)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    parts text[];
    host text;
BEGIN
    parts := regexp_match(btrim(coalesce(p_url, '')), '^(?:https?://)?([^/?#:@\s]+)(?::[0-9]+)?([/?#]\S*)?$', 'i');
    IF parts IS NULL THEN
        RAISE EXCEPTION '''%'' is not a URL', coalesce(p_url, '')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'give a product page URL such as https://www.amazon.com/dp/B0XXXXXXXX';
    END IF;
    host := lower(parts[1]);
    domain_code := (regexp_match(host, '^(?:[a-z0-9-]+\.)*amazon\.([a-z.]+)$'))[1];
    IF domain_code IS NULL OR NOT domain_code = ANY (sluice.amazon_domain_codes()) THEN
        RAISE EXCEPTION '''%'' is not an Amazon URL (host %)', p_url, host
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'the host must be an Amazon marketplace: amazon.' ||
                         array_to_string(sluice.amazon_domain_codes(), ', amazon.');
    END IF;
    asin := upper((regexp_match(coalesce(parts[2], ''),
        '/(?:dp|gp/product|gp/aw/d|product-reviews|exec/obidos/asin|o/asin)/([a-z0-9]{10})(?:[/?#&]|$)',
        'i'))[1]);
    IF asin IS NULL THEN
        RAISE EXCEPTION 'cannot find an ASIN in ''%''', p_url
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'product URLs look like https://www.amazon.' || domain_code ||
                         '/dp/B0XXXXXXXX or …/gp/product/B0XXXXXXXX';
    END IF;
END $$;

-- A competitor given by id, or by name (within p_brand when given); raises with
-- the known names when there is none or more than one.
CREATE OR REPLACE FUNCTION sluice.resolve_competitor(p_competitor text, p_brand text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql STABLE AS $$
DECLARE
    b uuid := sluice.resolve_brand(p_brand);
    ids uuid[];
    known text[];
BEGIN
    IF p_competitor ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        SELECT array_agg(id) INTO ids FROM public.competitors
        WHERE id = p_competitor::uuid AND (b IS NULL OR brand_id = b);
    ELSE
        SELECT array_agg(id) INTO ids FROM public.competitors
        WHERE name = p_competitor AND (b IS NULL OR brand_id = b);
    END IF;
    IF cardinality(ids) = 1 THEN RETURN ids[1]; END IF;
    IF cardinality(ids) > 1 THEN
        RAISE EXCEPTION 'competitor name ''%'' is used by several brands', p_competitor
            USING ERRCODE = 'invalid_parameter_value', HINT = 'give its id, or the brand too';
    END IF;
    SELECT array_agg(name ORDER BY name) INTO known FROM public.competitors WHERE b IS NULL OR brand_id = b;
    RAISE EXCEPTION 'unknown competitor ''%''', p_competitor
        USING ERRCODE = 'no_data_found',
              HINT = CASE WHEN known IS NULL THEN 'no competitors yet: add one with `sluice competitors add --brand BRAND NAME`'
                          ELSE 'known competitors: ' || array_to_string(known, ', ') END;
END $$;

-- Registers an Amazon product page of a competitor (idempotent): parses the ASIN
-- and domain code from the URL and returns the row's id — the
-- competitor_amazon_url_id that amazon_review_scrape takes.
CREATE OR REPLACE FUNCTION sluice.add_competitor_amazon_url(p_competitor_id uuid, p_amazon_url text)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    c public.competitors;
    parsed record;
    id uuid;
BEGIN
    SELECT * INTO c FROM public.competitors WHERE competitors.id = p_competitor_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown competitor %', p_competitor_id
            USING ERRCODE = 'no_data_found', HINT = 'list them with `sluice competitors list`';
    END IF;
    parsed := sluice.parse_amazon_url(p_amazon_url);
    INSERT INTO public.competitor_amazon_urls (competitor_id, brand_id, amazon_url, asin, domain_code)
    VALUES (c.id, c.brand_id, btrim(p_amazon_url), parsed.asin, parsed.domain_code)
    ON CONFLICT (competitor_id, asin, domain_code) DO UPDATE SET amazon_url = excluded.amazon_url
    RETURNING competitor_amazon_urls.id INTO id;
    RETURN id;
END $$;

-- The same with the competitor given by id or name.
CREATE OR REPLACE FUNCTION sluice.add_competitor_amazon_url(p_competitor text, p_amazon_url text)
RETURNS uuid LANGUAGE sql AS $$
    SELECT sluice.add_competitor_amazon_url(sluice.resolve_competitor(p_competitor), p_amazon_url)
$$;

-- Adds a competitor to a brand (by brand name or id), or updates the fields
-- given (non-NULL) of the one with that name; returns its id. With an Amazon
-- URL the product page is also registered for amazon_review_scrape.
CREATE OR REPLACE FUNCTION sluice.add_competitor(
    p_brand text, p_name text,
    p_facebook_page_id text DEFAULT NULL, p_website_url text DEFAULT NULL,
    p_ad_library_url text DEFAULT NULL, p_amazon_url text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    b uuid := sluice.resolve_brand(p_brand);
    id uuid;
BEGIN
    IF b IS NULL THEN
        RAISE EXCEPTION 'a competitor needs a brand' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_name IS NULL OR btrim(p_name) = '' THEN
        RAISE EXCEPTION 'a competitor needs a name' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO public.competitors (brand_id, name, facebook_page_id, website_url, ad_library_url, amazon_url)
    VALUES (b, btrim(p_name), p_facebook_page_id, p_website_url, p_ad_library_url, p_amazon_url)
    ON CONFLICT (brand_id, name) DO UPDATE SET
        facebook_page_id = coalesce(excluded.facebook_page_id, competitors.facebook_page_id),
        website_url = coalesce(excluded.website_url, competitors.website_url),
        ad_library_url = coalesce(excluded.ad_library_url, competitors.ad_library_url),
        amazon_url = coalesce(excluded.amazon_url, competitors.amazon_url),
        updated_at = now()
    RETURNING competitors.id INTO id;
    IF p_amazon_url IS NOT NULL THEN
        PERFORM sluice.add_competitor_amazon_url(id, p_amazon_url);
    END IF;
    RETURN id;
END $$;

-- Adds a persona (brand by name or id, NULL for none), or returns the existing
-- one with that name.
CREATE OR REPLACE FUNCTION sluice.add_persona(p_brand text, p_name text, p_description text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    b uuid := sluice.resolve_brand(p_brand);
    id uuid;
BEGIN
    INSERT INTO public.personas_4d (brand_id, name, description)
    VALUES (b, btrim(p_name), p_description)
    ON CONFLICT (brand_id, name) DO UPDATE
        SET description = coalesce(excluded.description, personas_4d.description)
    RETURNING personas_4d.id INTO id;
    RETURN id;
END $$;

-- A {"emotional": [], "social": [], "functional": []} field with p_quote added
-- under p_subtype, unless the field holds that exact text already (under any
-- subtype). added says whether it did.
CREATE OR REPLACE FUNCTION sluice.persona_field_add(p_field jsonb, p_subtype text, p_quote text,
                                                    OUT field jsonb, OUT added boolean)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    k text;
BEGIN
    field := CASE WHEN jsonb_typeof(p_field) = 'object' THEN p_field ELSE '{}' END;
    FOREACH k IN ARRAY ARRAY['emotional', 'social', 'functional'] LOOP
        IF jsonb_typeof(field -> k) IS DISTINCT FROM 'array' THEN
            field := jsonb_set(field, ARRAY[k], '[]');
        END IF;
    END LOOP;
    added := NOT EXISTS (SELECT 1 FROM jsonb_each(field) e, jsonb_array_elements(
                             CASE WHEN jsonb_typeof(e.value) = 'array' THEN e.value ELSE '[]' END) q
                         WHERE q = to_jsonb(p_quote));
    IF added THEN
        field := jsonb_set(field, ARRAY[p_subtype], (field -> p_subtype) || to_jsonb(p_quote));
    END IF;
END $$;

-- Merges quotes into a persona's fields without duplicates (the seed's
-- auto_sync_to_persona). p_quotes: [{"category", "quote", "subtype"}];
-- PAIN_POINT → pain_points, DESIRED_OUTCOME → outcomes_jtbd, BUYING_OBJECTION →
-- buying_objections (under the subtype, default functional); FAILED_SOLUTION →
-- failed_solutions, DESIRED_FEATURE → desired_features, FAMILIAR_SOLUTION →
-- familiar_promises. Returns how many quotes were added (exact-text duplicates
-- are skipped).
CREATE OR REPLACE FUNCTION sluice.sync_persona_quotes(p_persona uuid, p_quotes jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    p public.personas_4d;
    q jsonb;
    txt text;
    sub text;
    r record;
    n integer := 0;
BEGIN
    SELECT * INTO p FROM public.personas_4d WHERE id = p_persona FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'persona % does not exist', p_persona USING ERRCODE = 'no_data_found';
    END IF;
    FOR q IN SELECT value FROM jsonb_array_elements(coalesce(p_quotes, '[]')) LOOP
        txt := btrim(q ->> 'quote');
        CONTINUE WHEN txt IS NULL OR txt = '';
        sub := lower(coalesce(q ->> 'subtype', ''));
        IF sub NOT IN ('emotional', 'social', 'functional') THEN sub := 'functional'; END IF;
        CASE q ->> 'category'
        WHEN 'PAIN_POINT' THEN
            r := sluice.persona_field_add(p.pain_points, sub, txt);
            p.pain_points := r.field;
        WHEN 'DESIRED_OUTCOME' THEN
            r := sluice.persona_field_add(p.outcomes_jtbd, sub, txt);
            p.outcomes_jtbd := r.field;
        WHEN 'BUYING_OBJECTION' THEN
            r := sluice.persona_field_add(p.buying_objections, sub, txt);
            p.buying_objections := r.field;
        WHEN 'FAILED_SOLUTION' THEN
            SELECT NOT txt = ANY (coalesce(p.failed_solutions, '{}')) AS added INTO r;
            IF r.added THEN p.failed_solutions := array_append(coalesce(p.failed_solutions, '{}'), txt); END IF;
        WHEN 'DESIRED_FEATURE' THEN
            SELECT NOT txt = ANY (coalesce(p.desired_features, '{}')) AS added INTO r;
            IF r.added THEN p.desired_features := array_append(coalesce(p.desired_features, '{}'), txt); END IF;
        WHEN 'FAMILIAR_SOLUTION' THEN
            SELECT NOT txt = ANY (coalesce(p.familiar_promises, '{}')) AS added INTO r;
            IF r.added THEN p.familiar_promises := array_append(coalesce(p.familiar_promises, '{}'), txt); END IF;
        ELSE
            CONTINUE;
        END CASE;
        IF r.added THEN n := n + 1; END IF;
    END LOOP;
    UPDATE public.personas_4d SET
        pain_points = p.pain_points, outcomes_jtbd = p.outcomes_jtbd,
        buying_objections = p.buying_objections, failed_solutions = p.failed_solutions,
        desired_features = p.desired_features, familiar_promises = p.familiar_promises,
        updated_at = now()
    WHERE id = p_persona;
    RETURN n;
END $$;
