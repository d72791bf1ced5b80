-- 170_run_job_now.sql — run_job_now(): a job is due at once, once
-- (`sluice jobs run-now`).
--
-- A job could be queued, scheduled, paused, resumed, edited and cancelled, but
-- not run before its time: a recurring job waited for its next slot, and a
-- one-time job for its due time or its retry's backoff. Moving next_run_at by
-- hand raced with claims and left idle workers asleep until their poll.
--
-- run_job_now() makes the job due now, in one statement under the job's row
-- lock: a claim that holds the row first makes the call see the run in flight
-- and refuse; one that comes after claims the job as due. The NOTIFY that
-- enqueue() sends wakes the workers as for a new job.
--
--   active, one-time    due now (a retry waiting out its backoff runs now,
--                       as that attempt)
--   active, recurring   due now; its cron expression is not touched: when
--                       the run ends, its next slot is computed from the
--                       expression as after any run, so the slot it was
--                       waiting for still runs if the run has ended by then
--   already due         left as it is (its place among the due jobs kept)
--   failed, one-time    revived: active, due now, with its attempts counted
--                       from 0 again (a retry cycle of its own); refused if
--                       its dedupe key is held by another job by now
--   a run in flight     refused: it is running
--   paused              refused: resume it first
--   failed, recurring   refused: its schedule cannot be evaluated; edit it
--   completed, cancelled, archived
--                       refused: queue or schedule it again
--
-- Returns 'due'; raises no_data_found for an unknown id and 22023 for a job in
-- a state it refuses, before anything changes.

CREATE FUNCTION sluice.run_job_now(p_job uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    j sluice.scheduled_jobs;
    holder sluice.scheduled_jobs;
BEGIN
    SELECT * INTO j FROM sluice.scheduled_jobs WHERE id = p_job FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no job with id %', p_job USING ERRCODE = 'no_data_found';
    END IF;
    IF j.status = 'paused' THEN
        RAISE EXCEPTION 'job % is paused: it runs only once resumed', p_job
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = CASE WHEN j.schedule_type = 'one_time'
                              THEN 'resume it (`sluice jobs resume`): a one-time job whose time has come runs at once'
                              ELSE 'resume it (`sluice jobs resume`), then run it now' END;
    END IF;
    IF j.status = 'failed' AND j.schedule_type = 'recurring' THEN
        RAISE EXCEPTION 'job % is failed, as its schedule could not be evaluated: %', p_job,
            coalesce(j.last_error, 'no reason recorded')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'give it a new cron expression or time zone (`sluice jobs edit`)';
    END IF;
    IF j.status IN ('completed', 'cancelled', 'archived') THEN
        RAISE EXCEPTION 'job % is %: only active jobs and failed one-time jobs can be run now', p_job, j.status
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = CASE WHEN j.schedule_type = 'one_time' THEN 'queue it again (`sluice queue`)'
                              ELSE 'schedule it again (`sluice schedule`)' END;
    END IF;
    IF j.current_run_id IS NOT NULL AND j.schedule_type = 'one_time' THEN
        RAISE EXCEPTION 'job % has a run in flight (%): it is running now', p_job, j.current_run_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF j.current_run_id IS NOT NULL THEN
        RAISE EXCEPTION 'job % has a run in flight (%): it is running now', p_job, j.current_run_id
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'run it now again once that run has ended';
    END IF;
    IF j.status = 'active' AND j.next_run_at <= now() THEN
        PERFORM pg_notify('sluice_jobs', '');
        RETURN 'due';
    END IF;
    BEGIN
        UPDATE sluice.scheduled_jobs
        SET status = 'active', next_run_at = now(), updated_at = now(),
            attempts = CASE WHEN j.status = 'failed' THEN 0 ELSE attempts END
        WHERE id = p_job;
    EXCEPTION WHEN unique_violation THEN
        -- a failed job's dedupe key, taken by a job queued since
        SELECT * INTO holder FROM sluice.scheduled_jobs
        WHERE job_type = j.job_type AND brand_id IS NOT DISTINCT FROM j.brand_id
          AND dedupe_key = j.dedupe_key AND id <> p_job
          AND (status IN ('active', 'paused') OR current_run_id IS NOT NULL);
        IF holder.id IS NULL THEN  -- it ended meanwhile
            RAISE EXCEPTION 'job % has dedupe key ''%'', which another job held a moment ago: try again',
                p_job, j.dedupe_key USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RAISE EXCEPTION 'job % has dedupe key ''%'', which job % (%) holds now', p_job, j.dedupe_key,
            holder.id, holder.status
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'run that one now instead, or wait until it has ended';
    END;
    PERFORM pg_notify('sluice_jobs', '');
    RETURN 'due';
END $$;
