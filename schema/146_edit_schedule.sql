-- 146_edit_schedule.sql — edit_schedule(): change a recurring job in place
-- (`sluice jobs edit`).
--
-- A recurring job could be paused, resumed and cancelled, but its cron
-- expression, zone, parameters, priority, name and retries were fixed when it
-- was created: changing one meant cancelling the job and scheduling a new one,
-- which left its runs and its history under the old id. edit_schedule()
-- changes them on the job itself, with the checks schedule_job() makes.
--
-- NULL leaves a field as it is. New parameters replace the old ones (the type's
-- defaults fill the rest), as when the job was created. A new expression or
-- zone takes p_next_run_at as the job's next slot (the caller evaluates the
-- expression, as `sluice schedule` does); NULL lets the next worker compute it
-- (or, for a paused job, the next worker after resume_job). A schedule cannot
-- change while a run is in flight: the run's end sets the next slot from the
-- expression it was claimed with, and would undo the change. Only active and
-- paused recurring jobs can be edited, and failed ones given a new expression
-- or zone: a recurring job fails only when its schedule cannot be evaluated
-- (a bad expression or zone, or one that never fires), and one that can runs
-- again, active. Returns the job's status; raises
-- no_data_found for an unknown id and 22023 for anything else refused, before
-- anything changes.

CREATE FUNCTION sluice.edit_schedule(
    p_job uuid, p_cron text DEFAULT NULL, p_timezone text DEFAULT NULL,
    p_next_run_at timestamptz DEFAULT NULL, p_parameters jsonb DEFAULT NULL,
    p_priority integer DEFAULT NULL, p_name text DEFAULT NULL,
    p_max_retries integer DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    j sluice.scheduled_jobs;
    params jsonb;
    moves boolean;
BEGIN
    SELECT * INTO j FROM sluice.scheduled_jobs WHERE id = p_job FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no job with id %', p_job USING ERRCODE = 'no_data_found';
    END IF;
    IF j.schedule_type <> 'recurring' THEN
        RAISE EXCEPTION 'job % is a one-time job: only recurring jobs can be edited', p_job
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'cancel it and queue it again';
    END IF;
    IF p_cron IS NOT NULL AND btrim(p_cron) = '' THEN
        RAISE EXCEPTION 'a recurring job needs a cron expression' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_timezone = '' THEN
        RAISE EXCEPTION 'a time zone must not be empty: give a zone such as UTC, or NULL to keep it'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    moves := (p_cron IS NOT NULL AND btrim(p_cron) IS DISTINCT FROM j.cron_expression)
             OR (p_timezone IS NOT NULL AND p_timezone IS DISTINCT FROM j.timezone);
    IF j.status = 'failed' AND NOT moves THEN
        RAISE EXCEPTION 'job % is failed, as its schedule could not be evaluated: %', p_job,
            coalesce(j.last_error, 'no reason recorded')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'give it a new cron expression or time zone';
    END IF;
    IF j.status NOT IN ('active', 'paused', 'failed') THEN
        RAISE EXCEPTION 'job % is %: only active, paused or failed jobs can be edited', p_job, j.status
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'schedule it again';
    END IF;
    IF moves AND j.current_run_id IS NOT NULL THEN
        RAISE EXCEPTION 'job % has a run in flight (%): its schedule can change once the run has ended',
            p_job, j.current_run_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM sluice.check_run_at(p_next_run_at);
    PERFORM sluice.check_job_options(p_priority, p_max_retries, NULL, p_name, NULL);
    IF p_parameters IS NOT NULL THEN
        params := sluice.check_enqueue(j.job_type, j.brand_id, p_parameters);
    END IF;
    UPDATE sluice.scheduled_jobs
    SET status = CASE WHEN status = 'failed' THEN 'active' ELSE status END,
        last_error = CASE WHEN status = 'failed' THEN NULL ELSE last_error END,
        cron_expression = coalesce(btrim(p_cron), cron_expression),
        timezone = coalesce(p_timezone, timezone),
        next_run_at = CASE WHEN moves THEN p_next_run_at ELSE next_run_at END,
        parameters = coalesce(params, parameters),
        priority = coalesce(p_priority, priority),
        name = coalesce(p_name, name),
        max_retries = coalesce(p_max_retries, max_retries),
        updated_at = now()
    WHERE id = p_job;
    IF moves THEN
        PERFORM pg_notify('sluice_jobs', '');  -- the new slot may be sooner
    END IF;
    RETURN CASE WHEN j.status = 'failed' THEN 'active' ELSE j.status END;
END $$;
