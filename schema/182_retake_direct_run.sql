-- 182_retake_direct_run.sql — a foreground run whose start lost its answer
-- is started again, not left to its lease.
--
-- `sluice run` (and the REPL's run()) make their job and start its run in one
-- call, start_direct_run(). When the connection broke after Postgres
-- committed that call but before its answer came, the process knew neither
-- the job nor the run: it stopped with the connection's error, and the run,
-- running under it in the database, waited out its lease (60 s by default)
-- for a rescue to fail it as "worker lost", spending an attempt of a job that
-- never ran, which a worker then ran in the background.
--
--   retake_direct_run(worker, lease_seconds)
--                    the run a foreground process registered as `worker`
--                    holds in the database, started again for it: the run
--                    is given back as release_runs() gives back runs
--                    claimed and never started (no attempt spent) and its
--                    job, locked by that, started at once under `worker`
--                    with start_runs(), as start_direct_run() would have
--                    answered. No row: the worker holds no run, so the call
--                    that lost its answer made nothing, and the caller sends
--                    it again. Raises when it holds more than one (not a
--                    foreground process) or when its job was paused,
--                    cancelled or deleted in between.
--
-- The caller connects again and asks before anything else under that worker:
-- a foreground process holds one run at most, and only start_direct_run()
-- gives it one.
CREATE FUNCTION sluice.retake_direct_run(p_worker uuid, p_lease_seconds double precision)
RETURNS SETOF sluice.claimed_run LANGUAGE plpgsql AS $$
DECLARE
    runs uuid[];
    job uuid;
BEGIN
    SELECT coalesce(array_agg(r.id), '{}'), min(r.scheduled_job_id::text)::uuid INTO runs, job
    FROM sluice.scheduled_job_runs r
    WHERE r.id IN (SELECT current_run_id FROM sluice.scheduled_jobs
                   WHERE current_run_id IS NOT NULL)
      AND r.status = 'running' AND r.worker_id = p_worker;
    IF cardinality(runs) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(runs) > 1 THEN
        RAISE EXCEPTION 'worker % holds % runs: not a foreground run''s worker', p_worker,
            cardinality(runs) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM sluice.release_runs(runs);
    IF NOT EXISTS (SELECT 1 FROM sluice.scheduled_jobs
                   WHERE id = job AND status = 'active' AND current_run_id IS NULL) THEN
        RAISE EXCEPTION 'job % was made for this run, but is no longer active: it was paused, '
            'cancelled or deleted before its run started', job
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN QUERY SELECT * FROM sluice.start_runs(p_worker, ARRAY[job], p_lease_seconds);
END $$;
