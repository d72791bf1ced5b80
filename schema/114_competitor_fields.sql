-- 114_competitor_fields.sql — add_competitor() refuses a website, Ad Library
-- URL or Facebook page id that cannot be one, instead of storing it.
--
-- No job type reads these columns today (competitor_scrape takes its Ad
-- Library URL as a parameter, checked as a URL), but they are the record of
-- who a competitor is, shown by `sluice competitors list` and read by
-- applications: a website of "rival" or a page id of "https://…" is a typo
-- that would otherwise surface only when something tried to use it. The rules
-- are those a job parameter of type url obeys (http or https, a host, no
-- spaces), and Facebook's page ids, which are numbers. Rows stored before are
-- left as they are. add_competitor() is otherwise that of 010_research.sql.

-- Why p_value cannot be stored in the competitor field p_field (NULL if it can).
CREATE OR REPLACE FUNCTION sluice.competitor_field_problem(p_field text, p_value text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_value IS NULL THEN NULL
        WHEN p_field = 'facebook_page_id' AND p_value !~ '^[0-9]{1,30}$'
            THEN format('a Facebook page id is a number (the page''s id as the Ad Library shows it), got %L',
                        left(p_value, 60))
        WHEN p_field IN ('website_url', 'ad_library_url')
             AND p_value !~* E'^https?://[^/?# \t\n\x0b\f\r]+[^ \t\n\x0b\f\r]*$'
            THEN format('%s must be an http(s) URL, got %L',
                        CASE p_field WHEN 'website_url' THEN 'a website' ELSE 'an Ad Library URL' END,
                        left(p_value, 60))
    END
$$;

CREATE OR REPLACE FUNCTION sluice.add_competitor(
    p_brand text, p_name text,
    p_facebook_page_id text DEFAULT NULL, p_website_url text DEFAULT NULL,
    p_ad_library_url text DEFAULT NULL, p_amazon_url text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    b uuid := sluice.resolve_brand(p_brand);
    id uuid;
    problem text;
BEGIN
    IF b IS NULL THEN
        RAISE EXCEPTION 'a competitor needs a brand' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_name IS NULL OR btrim(p_name) = '' THEN
        RAISE EXCEPTION 'a competitor needs a name' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    problem := coalesce(sluice.competitor_field_problem('facebook_page_id', btrim(p_facebook_page_id)),
                        sluice.competitor_field_problem('website_url', btrim(p_website_url)),
                        sluice.competitor_field_problem('ad_library_url', btrim(p_ad_library_url)));
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '%', problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO public.competitors (brand_id, name, facebook_page_id, website_url, ad_library_url, amazon_url)
    VALUES (b, btrim(p_name), btrim(p_facebook_page_id), btrim(p_website_url), btrim(p_ad_library_url),
            p_amazon_url)
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
