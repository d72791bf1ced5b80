-- 197_same_schedule.sql — same_schedule(): what "the same schedule" is, said
-- once.
--
-- Two places asked whether a recurring job is already there: ensure_schedule()
-- (171, 181), which returns it instead of making another, and `sluice jobs
-- edit`, which says on stderr that the job it edited is now the same schedule
-- as another. Each wrote out the comparison — type, brand, expression as
-- cron_identity() reads it, zone under any of its names, parameters — and a
-- change to one (a zone's links, a new way to write an expression) would have
-- left the other deciding otherwise: `sluice schedule` naming a job that an
-- edit would not have called the same, or the reverse. Both now ask
-- same_schedule().
--
-- same_schedule(type, brand, cron, timezone, parameters, zone_names,
-- dedupe_key, except) returns the id of the oldest active or paused recurring
-- job other than `except` that is the same schedule, or NULL:
--
--   type, brand     the same (a NULL brand: the platform's jobs)
--   expression      cron_identity() of both the same: spaces and case aside, a
--                   macro the same as the fields it stands for
--   zone            the job's is `timezone` or one of `zone_names` (the names
--                   the zone goes by in the caller's zone database, `timezone`
--                   among them; NULL: the name alone — see 181)
--   parameters      equal as jsonb (key order aside); the caller gives them as
--                   stored, the schema's defaults filled in (check_enqueue)
--   dedupe keys     two jobs that both hold one were made apart on purpose and
--                   are not the same; a job with a key is the same as one
--                   without. ensure_schedule() asks only without a key (with
--                   one, the key decides)
--
-- Its name, priority, retries and next slot do not count. same_schedule_as(job,
-- zone_names) asks it about a job as stored: NULL unless the job is an active
-- or paused recurring job.
--
-- ensure_schedule() is that of 181, asking same_schedule() where it wrote the
-- comparison out; its arguments, results and errors are unchanged, and so is
-- its race-safety: it takes the advisory lock for the type and brand first and
-- asks in a statement of its own after it (under READ COMMITTED that statement
-- sees every job committed before the lock was granted; same_schedule() is
-- STABLE, and reads with its caller's snapshot).

CREATE FUNCTION sluice.same_schedule(
    p_job_type text, p_brand uuid, p_cron text, p_timezone text, p_parameters jsonb,
    p_zone_names text[] DEFAULT NULL, p_dedupe_key text DEFAULT NULL, p_except uuid DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql STABLE AS $$
DECLARE
    found uuid;
BEGIN
    IF p_zone_names IS NOT NULL AND NOT p_timezone = ANY(p_zone_names) THEN
        RAISE EXCEPTION 'the names of zone % do not include it: %', p_timezone, p_zone_names
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT j.id INTO found FROM sluice.scheduled_jobs j
    WHERE j.schedule_type = 'recurring' AND j.status IN ('active', 'paused')
      AND j.job_type = p_job_type AND j.brand_id IS NOT DISTINCT FROM p_brand
      AND j.id IS DISTINCT FROM p_except
      AND sluice.cron_identity(j.cron_expression) = sluice.cron_identity(p_cron)
      AND (j.timezone = p_timezone OR j.timezone = ANY(p_zone_names))
      AND j.parameters = p_parameters
      AND (j.dedupe_key IS NULL OR p_dedupe_key IS NULL)
    ORDER BY j.created_at, j.id LIMIT 1;
    RETURN found;
END $$;

CREATE FUNCTION sluice.same_schedule_as(p_job uuid, p_zone_names text[] DEFAULT NULL)
RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT sluice.same_schedule(j.job_type, j.brand_id, j.cron_expression, j.timezone,
                                j.parameters, p_zone_names, j.dedupe_key, j.id)
    FROM sluice.scheduled_jobs j
    WHERE j.id = p_job AND j.schedule_type = 'recurring' AND j.status IN ('active', 'paused')
$$;

CREATE OR REPLACE FUNCTION sluice.ensure_schedule(
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
        -- a statement of its own, after the lock: it sees what committed before
        job_id := sluice.same_schedule(p_job_type, b, p_cron, tz, params, p_zone_names);
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
