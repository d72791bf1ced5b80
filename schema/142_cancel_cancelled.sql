-- 142_cancel_cancelled.sql — cancel_job of a job that is cancelled already
-- changes nothing and returns its status: 'cancelling' while the run it had in
-- flight has not ended, then 'cancelled'. It raised "job … is already
-- cancelled" (exit 2 in `sluice jobs cancel`), where pause_job of a paused job
-- and resume_job of an active one return their status: the three calls follow
-- one rule now. A call that finds the job where it would put it succeeds and
-- changes nothing; one the job's state does not allow (a job that completed,
-- failed or was archived) is refused with 22023. The run in flight is not told
-- to stop again: the first cancel told its worker, and its lease renewal reads
-- the cancel if that notice was missed.
CREATE OR REPLACE FUNCTION sluice.cancel_job(p_job uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    j sluice.scheduled_jobs;
BEGIN
    SELECT * INTO j FROM sluice.scheduled_jobs WHERE id = p_job FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no job with id %', p_job USING ERRCODE = 'no_data_found';
    END IF;
    IF j.status = 'cancelled' THEN
        RETURN CASE WHEN j.current_run_id IS NOT NULL THEN 'cancelling' ELSE 'cancelled' END;
    END IF;
    IF j.status NOT IN ('active', 'paused') THEN
        RAISE EXCEPTION 'job % is already %: only active or paused jobs can be cancelled', p_job, j.status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE sluice.scheduled_jobs SET status = 'cancelled', next_run_at = NULL, updated_at = now()
    WHERE id = p_job;
    IF j.current_run_id IS NOT NULL THEN
        PERFORM pg_notify('sluice_cancel', j.current_run_id::text);
        RETURN 'cancelling';
    END IF;
    RETURN 'cancelled';
END $$;
