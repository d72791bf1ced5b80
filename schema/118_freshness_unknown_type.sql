-- 118_freshness_unknown_type.sql — job_type_freshness() says when it is asked
-- about a job type or brand that does not exist.
--
-- It answered with no rows for a type it did not know, which reads as "this
-- type keeps no datasets", and with a row in state 'never' for each dataset
-- when the brand id named no brand: a page showing a misspelt type's freshness
-- showed nothing, and one showing a deleted brand's asked for a refresh for
-- ever. needs_refresh() was given the same check in 098_needs_refresh_type.sql.
-- It now raises the errors queueing raises: "unknown job type" (22023, with
-- the nearest name) and "unknown brand" (P0002). A type that keeps no datasets
-- still gives no rows, and a NULL brand is the platform scope. Otherwise as in
-- 004_views.sql.

CREATE OR REPLACE FUNCTION sluice.job_type_freshness(p_job_type text, p_brand uuid)
RETURNS TABLE (dataset_key text, dataset_label text, state text,
               max_age_seconds double precision, last_success_at timestamptz,
               fresh_until timestamptz, last_run_id uuid, last_error text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM sluice.job_types t WHERE t.name = p_job_type) THEN
        PERFORM sluice.raise_unknown_job_type(p_job_type);
    END IF;
    IF p_brand IS NOT NULL THEN
        PERFORM sluice.resolve_brand(p_brand::text);
    END IF;
    RETURN QUERY
    SELECT d.dataset_key, d.label,
           sluice.freshness_state(s.last_status, s.last_success_at, d.max_age_seconds),
           d.max_age_seconds, s.last_success_at,
           s.last_success_at + make_interval(secs => d.max_age_seconds),
           s.last_run_id, s.error_message
    FROM sluice.job_type_datasets x
    JOIN sluice.datasets d ON d.dataset_key = x.dataset_key
    LEFT JOIN sluice.dataset_status s
           ON s.dataset_key = d.dataset_key AND s.brand_id IS NOT DISTINCT FROM p_brand
    WHERE x.job_type = p_job_type
    ORDER BY d.dataset_key;
END $$;
