-- 096_rescue_each_run.sql — one run the database will not fail no longer stops
-- the rescue of the others.
--
-- rescue_lost_runs() failed every expired run in one statement's transaction: if
-- recording one of them raised (a deployment's trigger or constraint, a deadlock
-- with another statement), the whole call was rolled back, and so was every
-- other rescue, pass after pass. Each run is now failed in its own
-- subtransaction; one that raises stays as it was, is reported in the new
-- `error` column (job_status NULL) and is tried again at the next pass. The
-- search and the rules are those of 092_rescue_plan.sql.

DROP FUNCTION sluice.rescue_lost_runs();

CREATE FUNCTION sluice.rescue_lost_runs()
RETURNS TABLE (run_id uuid, job_status text, error text) LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN EXECUTE
        'SELECT x.id, x.lease_expires_at FROM sluice.scheduled_job_runs x
         WHERE x.id = ANY (ARRAY(SELECT current_run_id FROM sluice.scheduled_jobs
                                 WHERE current_run_id IS NOT NULL))
           AND x.status = ''running'' AND x.lease_expires_at < now()
         FOR UPDATE SKIP LOCKED' LOOP
        run_id := r.id;
        error := NULL;
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
        EXCEPTION WHEN OTHERS THEN
            job_status := NULL;
            error := SQLERRM;
        END;
        RETURN NEXT;
    END LOOP;
END $$;
