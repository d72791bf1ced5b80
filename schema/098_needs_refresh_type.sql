-- 098_needs_refresh_type.sql — needs_refresh() says when it is asked about a job
-- type that does not exist.
--
-- It answered false for any name it did not know (false is also its answer for
-- a type that keeps no datasets), so a misspelt type in an application's
-- "refresh if stale" check skipped the refresh without a word. It now raises
-- the "unknown job type" error that queueing raises, with the nearest name.
-- Otherwise as in 004_views.sql.

-- Raises the error for a job type that is not in the registry.
CREATE OR REPLACE FUNCTION sluice.raise_unknown_job_type(p_job_type text)
RETURNS void LANGUAGE plpgsql STABLE AS $$
DECLARE
    known text[];
    near text;
BEGIN
    SELECT array_agg(name ORDER BY name) INTO known FROM sluice.job_types WHERE available;
    near := sluice.nearest_name(p_job_type, known);
    RAISE EXCEPTION 'unknown job type ''%''%', p_job_type,
        CASE WHEN near IS NOT NULL THEN ' — did you mean ''' || near || '''?' ELSE '' END
        USING ERRCODE = 'invalid_parameter_value',
              HINT = CASE WHEN known IS NULL THEN 'no job types are registered: start `sluice serve` or run any sluice command with your handlers once'
                          ELSE 'known job types: ' || array_to_string(known, ', ') END;
END $$;

-- True when a job of this type for this brand (name or id; NULL: platform)
-- would refresh something: one of its datasets is stale, never run or failing.
-- Raises for an unknown brand or job type. False for a type that keeps no datasets.
CREATE OR REPLACE FUNCTION sluice.needs_refresh(p_brand text, p_job_type text)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM sluice.job_types WHERE name = p_job_type) THEN
        PERFORM sluice.raise_unknown_job_type(p_job_type);
    END IF;
    RETURN EXISTS (SELECT 1 FROM sluice.job_type_freshness(p_job_type, sluice.resolve_brand(p_brand)) f
                   WHERE f.state IN ('stale', 'never', 'failing'));
END $$;
