-- 187_rescue_spares_held_runs.sql — a worker's rescue pass leaves alone the
-- runs that worker still holds.
--
-- A daemon's rescue pass fails every run whose lease expired, its own
-- included. When the database was out of reach (down, every connection slot
-- taken, a table locked) for longer than a lease while the daemon's runs
-- ended, the daemon held their outcomes to record once it answered again; but
-- its rescue pass, sent on its own timer, could come first and fail them as
-- "worker lost: lease expired", so the outcomes were refused as no longer
-- running and jobs that had completed ran again. The daemon now names the
-- runs it holds (in flight, claimed and waiting for a slot, ended with their
-- outcomes still to record), and its rescue passes them over: their outcomes
-- are recorded as they are, and a run in flight whose leases went unrenewed
-- is stopped by the daemon's own fence and recorded as failed. The runs of
-- other workers, and the runs whose outcomes the database refused (which the
-- daemon no longer holds), are rescued as before.
--
--   rescue_lost_runs(p_spare)   as in 160_outcome_decisions.sql, but the runs
--                               in p_spare are not failed; NULL (as a worker
--                               of an earlier version calls it, without an
--                               argument): none spared
--
-- The function is dropped and created again with the argument and its
-- default, so a call without one still finds it.

DROP FUNCTION sluice.rescue_lost_runs();

CREATE FUNCTION sluice.rescue_lost_runs(p_spare uuid[] DEFAULT NULL)
RETURNS TABLE (run_id uuid, job_status text, error text, decision text) LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN EXECUTE
        'SELECT x.id, x.lease_expires_at FROM sluice.scheduled_job_runs x
         WHERE x.id = ANY (ARRAY(SELECT current_run_id FROM sluice.scheduled_jobs
                                 WHERE current_run_id IS NOT NULL))
           AND x.status = ''running'' AND x.lease_expires_at < now()
           AND x.id <> ALL ($1)
         FOR UPDATE SKIP LOCKED' USING coalesce(p_spare, '{}') LOOP
        run_id := r.id;
        error := NULL;
        decision := NULL;
        BEGIN
            job_status := sluice.finish_run(r.id, 'failed', NULL,
                'worker lost: lease expired at ' ||
                    to_char(r.lease_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                E'worker lost: lease expired\n', true, NULL, NULL);
            -- the job did nothing wrong: it is due again at once, not after a backoff
            UPDATE sluice.scheduled_jobs j SET next_run_at = now()
            FROM sluice.scheduled_job_runs x
            WHERE x.id = r.id AND j.id = x.scheduled_job_id
              AND j.status = 'active' AND j.next_run_at > now();
            IF job_status IS NOT NULL THEN
                SELECT sluice.outcome_decision(true, j.status, j.schedule_type, j.attempts,
                                               x.attempt_number,
                                               coalesce(j.max_retries, t.max_retries, 3), j.next_run_at)
                INTO decision
                FROM sluice.scheduled_job_runs x
                JOIN sluice.scheduled_jobs j ON j.id = x.scheduled_job_id
                LEFT JOIN sluice.job_types t ON t.name = j.job_type
                WHERE x.id = r.id;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            job_status := NULL;
            decision := NULL;
            error := SQLERRM;
        END;
        RETURN NEXT;
    END LOOP;
END $$;
