-- 095_skip_restores.sql — a dataset a run skipped points at the run that last
-- worked on it again.
--
-- Claiming a run marks its datasets running and makes the run their last run
-- (last_run_id, last_attempt_at, source_job_id). A run that then reports a
-- dataset skipped (job.dataset(key):skip()), or is given back unstarted, put the
-- status back but left those three naming itself: the health page linked a
-- "last run" that never touched the data. The claim's values replace the ones
-- they overwrite only for as long as the run is in flight: a row trigger keeps
-- the previous three when a new run takes the row, and unclaim_datasets() puts
-- them back. (A trigger rather than another copy of start_runs: the claim's
-- statement stays as it is.)

ALTER TABLE sluice.dataset_status
    ADD COLUMN prev_attempt_at timestamptz,
    ADD COLUMN prev_run_id uuid,
    ADD COLUMN prev_source_job_id uuid;

CREATE OR REPLACE FUNCTION sluice.dataset_status_keep_previous() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.last_status = 'running' AND NEW.last_run_id IS DISTINCT FROM OLD.last_run_id THEN
        NEW.prev_attempt_at := OLD.last_attempt_at;
        NEW.prev_run_id := OLD.last_run_id;
        NEW.prev_source_job_id := OLD.source_job_id;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER dataset_status_keep_previous BEFORE UPDATE ON sluice.dataset_status
    FOR EACH ROW EXECUTE FUNCTION sluice.dataset_status_keep_previous();

-- As in 002_queue.sql, and the rows kept go back to their previous last run.
CREATE OR REPLACE FUNCTION sluice.unclaim_datasets(p_runs uuid[], p_keys text[] DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    DELETE FROM sluice.dataset_status s
    WHERE s.last_run_id = ANY (p_runs) AND s.last_status = 'running'
      AND (p_keys IS NULL OR s.dataset_key = ANY (p_keys))
      AND s.last_success_at IS NULL AND s.error_message IS NULL;
    UPDATE sluice.dataset_status s
    SET last_status = CASE WHEN s.error_message IS NOT NULL THEN 'failed' ELSE 'completed' END,
        last_attempt_at = coalesce(s.prev_attempt_at, s.last_attempt_at),
        last_run_id = coalesce(s.prev_run_id, s.last_run_id),
        source_job_id = coalesce(s.prev_source_job_id, s.source_job_id),
        updated_at = now()
    WHERE s.last_run_id = ANY (p_runs) AND s.last_status = 'running'
      AND (p_keys IS NULL OR s.dataset_key = ANY (p_keys));
$$;
