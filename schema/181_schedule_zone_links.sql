-- 181_schedule_zone_links.sql — ensure_schedule() knows a zone by any of its
-- names.
--
-- A schedule is made once (171): a second `sluice schedule` with the same
-- type, brand, expression, zone and parameters names the first job instead of
-- making another. The zone was compared by name, so `--tz UTC` and then
-- `--tz Etc/UTC` (or Zulu, Universal; US/Eastern and America/New_York) made two
-- jobs that both ran, and paid for the same work, at every slot: these names
-- are links of the IANA time zone database, one zone under several names.
--
-- The database server's own zone tables cannot say which names are links (the
-- workers read the zone files, which the server may not have, or have in
-- another version), so the caller says: p_zone_names, the names p_timezone's
-- zone goes by in the zone database it reads (src/tz_links.c: the links that
-- tzdata.zi lists), p_timezone among them. A job whose zone is any of them has
-- the same zone. NULL compares the name alone, as before. The job keeps the
-- name it was given. Only links count: two zones that the database has as two
-- zones are two, however alike their rules are today.
--
-- The arguments before it are unchanged; a new last argument makes another
-- function, and the old one would stay beside it (and make a call without the
-- new argument ambiguous), so it is dropped first.

DROP FUNCTION sluice.ensure_schedule(text, text, text, text, jsonb, timestamptz, text, integer,
                                     integer, text, text);

CREATE FUNCTION sluice.ensure_schedule(
    p_brand text, p_job_type text, p_cron text, p_timezone text DEFAULT 'UTC',
    p_parameters jsonb DEFAULT '{}', p_next_run_at timestamptz DEFAULT NULL,
    p_name text DEFAULT NULL, p_priority integer DEFAULT 0,
    p_max_retries integer DEFAULT NULL, p_trigger_source text DEFAULT 'scheduled',
    p_dedupe_key text DEFAULT NULL, p_zone_names text[] DEFAULT NULL,
    OUT job_id uuid, OUT created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    b uuid := sluice.resolve_brand(p_brand);
    params jsonb := sluice.check_enqueue(p_job_type, b, coalesce(p_parameters, '{}'));
    tz text := coalesce(p_timezone, 'UTC');
BEGIN
    IF p_cron IS NULL OR btrim(p_cron) = '' THEN
        RAISE EXCEPTION 'a recurring job needs a cron expression' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM sluice.check_run_at(p_next_run_at);
    PERFORM sluice.check_job_options(p_priority, p_max_retries, p_dedupe_key, p_name, p_trigger_source);
    IF p_zone_names IS NOT NULL AND NOT tz = ANY(p_zone_names) THEN
        RAISE EXCEPTION 'the names of zone % do not include it: %', tz, p_zone_names
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_dedupe_key IS NULL THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(
            'sluice.ensure_schedule ' || p_job_type || ' ' || coalesce(b::text, ''), 0));
        SELECT j.id INTO job_id FROM sluice.scheduled_jobs j
        WHERE j.schedule_type = 'recurring' AND j.status IN ('active', 'paused')
          AND j.job_type = p_job_type AND j.brand_id IS NOT DISTINCT FROM b
          AND sluice.cron_identity(j.cron_expression) = sluice.cron_identity(p_cron)
          AND (j.timezone = tz OR j.timezone = ANY(p_zone_names)) AND j.parameters = params
        ORDER BY j.created_at, j.id LIMIT 1;
        IF job_id IS NOT NULL THEN
            created := false;
            RETURN;
        END IF;
    END IF;
    LOOP
        INSERT INTO sluice.scheduled_jobs
            (brand_id, job_type, name, schedule_type, cron_expression, timezone, parameters,
             next_run_at, priority, max_retries, dedupe_key, trigger_source)
        VALUES (b, p_job_type, p_name, 'recurring', btrim(p_cron), tz, params, p_next_run_at,
                coalesce(p_priority, 0), p_max_retries, p_dedupe_key,
                coalesce(p_trigger_source, 'scheduled'))
        ON CONFLICT (job_type, brand_id, dedupe_key)
            WHERE dedupe_key IS NOT NULL AND (status IN ('active', 'paused') OR current_run_id IS NOT NULL)
            DO NOTHING
        RETURNING id INTO job_id;
        IF job_id IS NOT NULL THEN
            created := true;
            PERFORM pg_notify('sluice_jobs', '');
            RETURN;
        END IF;
        SELECT j.id INTO job_id FROM sluice.scheduled_jobs j
        WHERE j.job_type = p_job_type AND j.brand_id IS NOT DISTINCT FROM b
          AND j.dedupe_key = p_dedupe_key
          AND (j.status IN ('active', 'paused') OR j.current_run_id IS NOT NULL);
        IF job_id IS NOT NULL THEN
            created := false;
            RETURN;
        END IF;
        -- the holder ended between the two statements: try again
    END LOOP;
END $$;
