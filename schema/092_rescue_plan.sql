-- 092_rescue_plan.sql — the rescue pass plans its search each time.
--
-- rescue_lost_runs() runs every few seconds in every worker. Its search for
-- expired leases was planned once per connection, with the statistics of that
-- moment: a worker that started on a young or emptied runs table kept a plan
-- that reads every run for each running job (a join filter instead of a key
-- lookup), 100 ms of a backend at 20,000 runs. The search is now planned at
-- each call (a few hundredths of a millisecond), finding each running job's run
-- by primary key. Otherwise as in 002_queue.sql.

CREATE OR REPLACE FUNCTION sluice.rescue_lost_runs()
RETURNS TABLE (run_id uuid, job_status text) LANGUAGE plpgsql AS $$
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
        job_status := sluice.finish_run(r.id, 'failed', NULL,
            'worker lost: lease expired at ' ||
                to_char(r.lease_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            E'worker lost: lease expired\n', true, NULL, NULL);
        -- the job did nothing wrong: it is due again at once, not after a backoff
        UPDATE sluice.scheduled_jobs j SET next_run_at = now()
        FROM sluice.scheduled_job_runs x
        WHERE x.id = r.id AND j.id = x.scheduled_job_id
          AND j.status = 'active' AND j.next_run_at > now();
        RETURN NEXT;
    END LOOP;
END $$;
