-- 113_durable_claims.sql — a claim and a lease renewal are on disk before
-- the worker acts on them.
--
-- Queue bookkeeping commits with synchronous_commit = off, so a crash of
-- Postgres may lose the last fraction of a second of it. For an ended run's
-- outcome that is harmless: the run stays running until its lease expires,
-- and the rescue retries it. For a claim it is not: the worker has its answer
-- and starts the run, while the database comes back from the crash with no
-- run and the job due, so a worker starts the job again beside the first run,
-- which goes on until its next renewal finds it gone. A renewal lost the same
-- way leaves the database an earlier lease than the one the worker counts on,
-- so a rescue may fail a run before the worker's fence stops it.
--
-- Both now commit as the session would by default (synchronous_commit on,
-- unless the deployment chose otherwise): a claim that claimed something, and
-- every renewal (one a third of a lease per process). A claim that found
-- nothing due and the recording of ended runs stay lazy. claim_jobs() is
-- otherwise as in 094_empty_claims.sql.

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
        SET LOCAL synchronous_commit TO DEFAULT;
        RETURN QUERY SELECT * FROM sluice.start_runs(p_worker, due, p_lease_seconds);
    END IF;
END $$;

-- renew_leases() (102_renew_leases.sql) as it was, but with a SET clause: a
-- function's SET clause restores the setting when the function returns, so the
-- synchronous_commit = off that heartbeat() sets inside it no longer reaches
-- the commit, which is the session's again.
ALTER FUNCTION sluice.renew_leases(uuid, double precision, uuid[]) SET synchronous_commit = on;
