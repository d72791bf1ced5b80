-- 171_ensure_schedule.sql — ensure_schedule(): a recurring job is scheduled
-- once (`sluice schedule`).
--
-- schedule_job() creates a recurring job every time it is called: running the
-- same `sluice schedule TYPE --brand B --cron "0 * * * *"` twice (a deploy
-- script run again, a retry after a timeout) made two jobs that both ran every
-- hour, and paid for every scrape twice. ensure_schedule() creates one only
-- when none is there already, and otherwise returns that one:
--
--   without a dedupe key  an active or paused recurring job of the same type
--                         and brand, with the same expression (spaces and
--                         case aside, a macro the same as the fields it
--                         stands for: cron_identity()), zone and parameters
--                         (the schema's defaults filled in), is the same
--                         schedule, whatever its name, priority and retries
--   with a dedupe key     the key decides, as for enqueue(): the job of the
--                         type and brand that holds it (active, paused, or
--                         cancelled with its run still in flight) is
--                         returned, whatever it is; two schedules alike in
--                         all else can be had on purpose with two keys
--
-- Returns (job_id, created). Race-free: calls without a key for one type and
-- brand take a transaction-scoped advisory lock, so that the second waits for
-- the first to commit and then finds its job (under READ COMMITTED, the
-- default, each statement of the function sees what committed before it; under
-- SERIALIZABLE the second fails with a serialization error instead; under
-- REPEATABLE READ its snapshot predates the first's job, and it makes another);
-- calls with a key are decided by the unique index scheduled_jobs_dedupe.
-- schedule_job() stays as it was: it creates a job each time.

-- A cron expression as ensure_schedule() compares it: whitespace runs as one
-- space, no whitespace at either end, lower case, and a macro as the five
-- fields it stands for (as src/cron.c reads it).
CREATE FUNCTION sluice.cron_identity(p_cron text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE e WHEN '@yearly' THEN '0 0 1 1 *' WHEN '@annually' THEN '0 0 1 1 *'
                  WHEN '@monthly' THEN '0 0 1 * *' WHEN '@weekly' THEN '0 0 * * 0'
                  WHEN '@daily' THEN '0 0 * * *' WHEN '@midnight' THEN '0 0 * * *'
                  WHEN '@hourly' THEN '0 * * * *' ELSE e END
    FROM (SELECT lower(regexp_replace(regexp_replace(p_cron, '^[[:space:]]+|[[:space:]]+$', '', 'g'),
                                      '[[:space:]]+', ' ', 'g')) AS e) x
$$;

-- The active and paused recurring jobs of a type and brand: where
-- ensure_schedule() looks for the same schedule (a table of many one-time
-- jobs is not read through).
CREATE INDEX scheduled_jobs_schedules ON sluice.scheduled_jobs (job_type, brand_id)
    WHERE schedule_type = 'recurring' AND status IN ('active', 'paused');

CREATE FUNCTION sluice.ensure_schedule(
    p_brand text, p_job_type text, p_cron text, p_timezone text DEFAULT 'UTC',
    p_parameters jsonb DEFAULT '{}', p_next_run_at timestamptz DEFAULT NULL,
    p_name text DEFAULT NULL, p_priority integer DEFAULT 0,
    p_max_retries integer DEFAULT NULL, p_trigger_source text DEFAULT 'scheduled',
    p_dedupe_key text DEFAULT NULL,
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
    IF p_dedupe_key IS NULL THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(
            'sluice.ensure_schedule ' || p_job_type || ' ' || coalesce(b::text, ''), 0));
        SELECT j.id INTO job_id FROM sluice.scheduled_jobs j
        WHERE j.schedule_type = 'recurring' AND j.status IN ('active', 'paused')
          AND j.job_type = p_job_type AND j.brand_id IS NOT DISTINCT FROM b
          AND sluice.cron_identity(j.cron_expression) = sluice.cron_identity(p_cron)
          AND j.timezone = tz AND j.parameters = params
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
