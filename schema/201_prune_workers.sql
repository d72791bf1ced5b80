-- 201_prune_workers.sql — retention deletes the rows of workers long gone.
--
-- Every daemon, foreground run, REPL and `sluice exec` script adds a row to
-- sluice.workers, and nothing removed one: a script run from cron every minute
-- left half a million rows a year, all of which `sluice workers --all` lists
-- and sluice.worker_status reads. apply_retention() now also deletes the rows
-- of workers that are not live (stopped, or silent: killed, cut off), were last
-- seen longer than prune_after ago, and hold no run in flight — the liveness
-- and the runs in flight are worker_status's — and returns how many as
-- `workers`. A run keeps the id of the worker that ran it (the column has
-- referenced nothing since 006_queue_batches.sql).
--
-- A process still alive whose row was deleted, silent that long with nothing
-- in flight (a daemon cut off from the database for a month), goes on working
-- once it is back; it is no longer listed, and keeps its types available
-- through its own rescue pass (settle_served_types) only.
--
-- The OUT parameters change, so the function is dropped and made again: it is
-- that of 198_checkpoints_outlive_a_failure.sql but for the workers. A worker
-- of an earlier version reads the first two columns, as before.

DROP FUNCTION sluice.apply_retention(interval, interval);

CREATE FUNCTION sluice.apply_retention(
    p_archive_after interval DEFAULT '7 days', p_prune_after interval DEFAULT '30 days',
    OUT archived integer, OUT pruned integer, OUT workers integer)
LANGUAGE plpgsql AS $$
DECLARE
    archive_after interval := coalesce(p_archive_after, '7 days');
    prune_after interval := coalesce(p_prune_after, '30 days');
BEGIN
    IF archive_after < interval '0' OR prune_after < interval '0' THEN
        RAISE EXCEPTION 'apply_retention needs ages of zero or more, not %',
            CASE WHEN archive_after < interval '0' THEN archive_after ELSE prune_after END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'give intervals such as ''7 days'' and ''30 days'', or NULL for those defaults';
    END IF;
    UPDATE sluice.scheduled_jobs SET status = 'archived', checkpoint = '{}', updated_at = now()
    WHERE schedule_type = 'one_time' AND status IN ('completed', 'failed', 'cancelled')
      AND current_run_id IS NULL
      AND updated_at < now() - archive_after;
    GET DIAGNOSTICS archived = ROW_COUNT;
    DELETE FROM sluice.scheduled_job_runs r
    WHERE r.status IN ('completed', 'failed', 'cancelled')
      AND r.completed_at < now() - prune_after
      AND r.id <> (SELECT r2.id FROM sluice.scheduled_job_runs r2
                   WHERE r2.scheduled_job_id = r.scheduled_job_id
                   ORDER BY r2.created_at DESC LIMIT 1);
    GET DIAGNOSTICS pruned = ROW_COUNT;
    DELETE FROM sluice.workers w
    USING sluice.worker_status s
    WHERE s.id = w.id AND s.state <> 'live' AND s.running = 0
      AND s.last_seen < now() - prune_after;
    GET DIAGNOSTICS workers = ROW_COUNT;
END $$;
