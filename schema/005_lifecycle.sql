-- 005_lifecycle.sql — recurring schedules, cancel / pause / resume, and
-- retention (archiving finished one-time jobs, pruning old runs).

-- Creates a recurring job. p_next_run_at is the first slot, computed by the
-- caller (`sluice schedule` evaluates the cron expression in the time zone); NULL
-- lets the next worker compute it. Returns the job id.
CREATE OR REPLACE FUNCTION sluice.schedule_job(
    p_brand text, p_job_type text, p_cron text, p_timezone text DEFAULT 'UTC',
    p_parameters jsonb DEFAULT '{}', p_next_run_at timestamptz DEFAULT NULL,
    p_name text DEFAULT NULL, p_priority integer DEFAULT 0, p_max_retries integer DEFAULT NULL,
    p_trigger_source text DEFAULT 'scheduled')
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    b uuid := sluice.resolve_brand(p_brand);
    params jsonb := sluice.check_enqueue(p_job_type, b, coalesce(p_parameters, '{}'));
    id uuid;
BEGIN
    IF p_cron IS NULL OR btrim(p_cron) = '' THEN
        RAISE EXCEPTION 'a recurring job needs a cron expression' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO sluice.scheduled_jobs
        (brand_id, job_type, name, schedule_type, cron_expression, timezone, parameters,
         next_run_at, priority, max_retries, trigger_source)
    VALUES (b, p_job_type, p_name, 'recurring', btrim(p_cron), coalesce(p_timezone, 'UTC'), params,
            p_next_run_at, coalesce(p_priority, 0), p_max_retries, coalesce(p_trigger_source, 'scheduled'))
    RETURNING scheduled_jobs.id INTO id;
    PERFORM pg_notify('sluice_jobs', '');
    RETURN id;
END $$;

-- Recurring jobs waiting for a worker to compute their next slot.
CREATE OR REPLACE FUNCTION sluice.unscheduled_jobs(p_limit integer DEFAULT 100)
RETURNS TABLE (id uuid, cron_expression text, timezone text) LANGUAGE sql STABLE AS $$
    SELECT id, cron_expression, timezone FROM sluice.scheduled_jobs
    WHERE schedule_type = 'recurring' AND status = 'active'
      AND next_run_at IS NULL AND current_run_id IS NULL
    LIMIT p_limit
$$;

-- Sets next slots computed by a worker: p_slots = [{id, next_run_at} | {id, error}].
-- A job whose expression or zone cannot be evaluated is failed with the reason.
CREATE OR REPLACE FUNCTION sluice.set_next_slots(p_slots jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    UPDATE sluice.scheduled_jobs j
    SET next_run_at = CASE WHEN s ? 'error' THEN NULL ELSE (s ->> 'next_run_at')::timestamptz END,
        status = CASE WHEN s ? 'error' THEN 'failed' ELSE j.status END,
        last_error = CASE WHEN s ? 'error' THEN s ->> 'error' ELSE j.last_error END,
        updated_at = now()
    FROM jsonb_array_elements(p_slots) s
    WHERE j.id = (s ->> 'id')::uuid AND j.next_run_at IS NULL AND j.current_run_id IS NULL
      AND j.status = 'active';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('sluice_jobs', '');
    END IF;
    RETURN n;
END $$;

-- Cancels a job: it will not run again. A run in flight is told to stop (the
-- worker running it LISTENs on sluice_cancel) and is recorded as cancelled.
-- Returns 'cancelled', 'cancelling' (a run is in flight) or raises.
CREATE OR REPLACE FUNCTION sluice.cancel_job(p_job uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    j sluice.scheduled_jobs;
BEGIN
    SELECT * INTO j FROM sluice.scheduled_jobs WHERE id = p_job FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no job with id %', p_job USING ERRCODE = 'no_data_found';
    END IF;
    IF j.status NOT IN ('active', 'paused') THEN
        RAISE EXCEPTION 'job % is already %', p_job, j.status USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE sluice.scheduled_jobs SET status = 'cancelled', next_run_at = NULL, updated_at = now()
    WHERE id = p_job;
    IF j.current_run_id IS NOT NULL THEN
        PERFORM pg_notify('sluice_cancel', j.current_run_id::text);
        RETURN 'cancelling';
    END IF;
    RETURN 'cancelled';
END $$;

-- Pauses a job: no new runs until resumed (a run in flight finishes).
CREATE OR REPLACE FUNCTION sluice.pause_job(p_job uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    SELECT status INTO st FROM sluice.scheduled_jobs WHERE id = p_job FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no job with id %', p_job USING ERRCODE = 'no_data_found';
    END IF;
    IF st = 'paused' THEN RETURN 'paused'; END IF;
    IF st <> 'active' THEN
        RAISE EXCEPTION 'job % is %: only active jobs can be paused', p_job, st
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE sluice.scheduled_jobs SET status = 'paused', updated_at = now() WHERE id = p_job;
    RETURN 'paused';
END $$;

-- Resumes a paused job. A one-time job whose slot passed is due at once; a
-- recurring job keeps its next slot (or gets one from the next worker).
CREATE OR REPLACE FUNCTION sluice.resume_job(p_job uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    j sluice.scheduled_jobs;
BEGIN
    SELECT * INTO j FROM sluice.scheduled_jobs WHERE id = p_job FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no job with id %', p_job USING ERRCODE = 'no_data_found';
    END IF;
    IF j.status = 'active' THEN RETURN 'active'; END IF;
    IF j.status <> 'paused' THEN
        RAISE EXCEPTION 'job % is %: only paused jobs can be resumed', p_job, j.status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE sluice.scheduled_jobs
    SET status = 'active', updated_at = now(),
        next_run_at = CASE WHEN j.schedule_type = 'one_time' AND j.current_run_id IS NULL
                           THEN coalesce(j.next_run_at, now()) ELSE j.next_run_at END
    WHERE id = p_job;
    PERFORM pg_notify('sluice_jobs', '');
    RETURN 'active';
END $$;

-- Retention: finished one-time jobs older than p_archive_after become 'archived'
-- (their dedupe keys are long free already); runs that ended before
-- p_prune_after ago are deleted, except the latest run of each job.
-- Returns (archived, pruned).
CREATE OR REPLACE FUNCTION sluice.apply_retention(
    p_archive_after interval DEFAULT '7 days', p_prune_after interval DEFAULT '30 days',
    OUT archived integer, OUT pruned integer)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sluice.scheduled_jobs SET status = 'archived', updated_at = now()
    WHERE schedule_type = 'one_time' AND status IN ('completed', 'failed', 'cancelled')
      AND updated_at < now() - p_archive_after;
    GET DIAGNOSTICS archived = ROW_COUNT;
    DELETE FROM sluice.scheduled_job_runs r
    WHERE r.completed_at < now() - p_prune_after
      AND r.id <> (SELECT r2.id FROM sluice.scheduled_job_runs r2
                   WHERE r2.scheduled_job_id = r.scheduled_job_id
                   ORDER BY r2.created_at DESC LIMIT 1);
    GET DIAGNOSTICS pruned = ROW_COUNT;
END $$;
