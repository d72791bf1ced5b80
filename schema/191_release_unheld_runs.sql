-- 191_release_unheld_runs.sql — the runs a worker claimed without knowing it go
-- back to their jobs at once.
--
-- A worker's finish_and_claim_runs() claims due jobs: it starts a run for each
-- and answers with them. When the connection breaks after Postgres committed
-- that call but before its answer reached the worker, the runs are running
-- under the worker in the database while the worker never heard of them: its
-- lease renewal names only the runs it holds, so their leases ran out (60 s by
-- default) and another worker's rescue failed them as "worker lost", spending
-- an attempt of a job that never ran.
--
--   release_unheld_runs(worker, held)
--                    gives back every run running under `worker` that is not
--                    in `held` (every run the worker holds, so the rest are
--                    those it does not know of), as release_runs() gives back
--                    runs claimed and never started: the run disappears as if
--                    never claimed, its job is due again at once, the attempt
--                    and the run count it took are returned. Returns the ids
--                    of the runs given back. A NULL `held` gives back none.
--
-- A worker calls it after a call that claimed lost its connection, before it
-- claims again, while nothing else it sent may be claiming: a run claimed by
-- a call still in flight is not in `held` yet.

CREATE FUNCTION sluice.release_unheld_runs(p_worker uuid, p_held uuid[])
RETURNS SETOF uuid LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
BEGIN
    -- a running run is its job's current run (the claim made it so): found
    -- through that index, as heartbeat() finds them, not by reading every run
    SELECT coalesce(array_agg(r.id), '{}') INTO ids
    FROM sluice.scheduled_job_runs r
    WHERE r.id IN (SELECT current_run_id FROM sluice.scheduled_jobs
                   WHERE current_run_id IS NOT NULL)
      AND r.status = 'running' AND r.worker_id = p_worker
      AND r.id <> ALL (p_held);  -- none when p_held is NULL: nothing is known held
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    PERFORM sluice.release_runs(ids);
    -- those release_runs() gave back (a rescue may have failed one meanwhile)
    RETURN QUERY SELECT i FROM unnest(ids) AS i
                 WHERE NOT EXISTS (SELECT 1 FROM sluice.scheduled_job_runs r WHERE r.id = i);
END $$;
