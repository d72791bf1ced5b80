-- 102_renew_leases.sql — a process's heartbeat also learns which of its runs
-- to stop.
--
-- A cancel reaches the run's process by NOTIFY (cancel_job(), 005). A process
-- that is not listening when it fires never hears it: Postgres keeps no
-- notifications for a session that is gone, so a daemon whose LISTEN
-- connection was down at that moment, a foreground `sluice run` and the REPL
-- (which do not listen) ran the cancelled job to its end. And a process that
-- lost the database for longer than its lease has had its runs failed by
-- another worker's rescue and the jobs retried, perhaps already running
-- elsewhere, while its own copies went on.
--
-- renew_leases() renews like heartbeat() and answers with the runs of
-- p_runs (the ones the process holds) that it should stop:
--   'cancelled'  the run's job was cancelled;
--   'lost'       the run is no longer running under this worker (a rescue
--                failed it after its lease expired);
--   'deleted'    the run is gone (its job was deleted);
--   'paused'     the run's job was paused (a run in flight finishes; one a
--                worker claimed but has not started goes back to its job).
-- Every renewal, lease/3 (20 s by default), is then also the latest time a
-- cancel takes effect. heartbeat() stays for processes of an older version.

CREATE FUNCTION sluice.renew_leases(p_worker uuid, p_lease_seconds double precision,
                                    p_runs uuid[])
RETURNS TABLE (run_id uuid, reason text) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sluice.heartbeat(p_worker, p_lease_seconds, p_runs);
    RETURN QUERY
    SELECT i.id,
           CASE WHEN r.id IS NULL THEN 'deleted'
                WHEN r.status <> 'running' OR r.worker_id IS DISTINCT FROM p_worker THEN 'lost'
                WHEN j.status = 'paused' THEN 'paused'
                ELSE 'cancelled' END
    FROM unnest(p_runs) AS i(id)
    LEFT JOIN sluice.scheduled_job_runs r ON r.id = i.id
    LEFT JOIN sluice.scheduled_jobs j ON j.id = r.scheduled_job_id
    WHERE r.id IS NULL OR r.status <> 'running' OR r.worker_id IS DISTINCT FROM p_worker
       OR (j.status IN ('cancelled', 'paused') AND j.current_run_id = r.id);
END $$;
