-- 094_empty_claims.sql — a claim that finds nothing due does nothing more.
--
-- claim_jobs() handed start_runs() whatever its search found, an empty array
-- too. start_runs' statement (update the jobs, insert the runs, mark their
-- datasets) is planned for the values of each call while such a plan looks
-- cheaper than a generic one, which for an empty array is always: an idle
-- worker's claim — every NOTIFY that another worker took first, every poll —
-- cost 0.55 ms of a backend instead of 0.15. (Forcing generic plans instead was
-- measured and rejected: a generic plan made while the runs table is young
-- keeps reading all of it until the next ANALYZE; W1 ran at half speed.)
-- Otherwise as in 002_queue.sql.

CREATE OR REPLACE FUNCTION sluice.claim_jobs(p_worker uuid, p_limit integer, p_lease_seconds double precision)
RETURNS SETOF sluice.claimed_run LANGUAGE plpgsql AS $$
DECLARE
    due uuid[];
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    due := ARRAY(SELECT id FROM sluice.scheduled_jobs
                 WHERE status = 'active' AND next_run_at <= now()
                 ORDER BY priority, next_run_at
                 LIMIT p_limit
                 FOR UPDATE SKIP LOCKED);
    IF cardinality(due) > 0 THEN
        RETURN QUERY SELECT * FROM sluice.start_runs(p_worker, due, p_lease_seconds);
    END IF;
END $$;
