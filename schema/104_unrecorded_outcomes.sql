-- 104_unrecorded_outcomes.sql — the daemon learns which run outcomes its
-- cycle did not record.
--
-- finish_and_claim() (002_queue.sql) discarded what finish_runs() answered. An
-- outcome finish_runs could not record, because its run was no longer running
-- (a rescue had failed it after its lease expired, or its job was deleted and
-- the run with it), updated nothing and went unnoticed: a completed run's
-- result was lost without a word.
--
-- finish_and_claim_runs() does the same work in the same order and also
-- returns, before the claimed runs, one row per outcome of p_finished that
-- was not recorded: its run_id and, in unrecorded, the outcome's status; the
-- other columns are NULL. A claimed run has unrecorded NULL.
-- finish_and_claim() stays as it was, for daemons of an older version.

CREATE FUNCTION sluice.finish_and_claim_runs(
    p_finished jsonb, p_worker uuid, p_limit integer, p_lease_seconds double precision)
RETURNS TABLE (run_id uuid, job_id uuid, job_type text, brand_id uuid, parameters jsonb,
               attempt_number integer, checkpoint jsonb, schedule_type text,
               cron_expression text, timezone text, timeout_seconds double precision,
               trigger_source text, unrecorded text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_finished IS NOT NULL AND jsonb_array_length(p_finished) > 0 THEN
        -- the outcome's status is looked up only for the rare unrecorded one: the
        -- batch's JSON is not read a second time
        RETURN QUERY
        WITH f AS MATERIALIZED (SELECT * FROM sluice.finish_runs(p_finished))
        SELECT f.run_id, NULL::uuid, NULL::text, NULL::uuid, NULL::jsonb, NULL::integer,
               NULL::jsonb, NULL::text, NULL::text, NULL::text, NULL::float8, NULL::text,
               (SELECT i.status FROM jsonb_to_recordset(p_finished) AS i(run_id uuid, status text)
                WHERE i.run_id = f.run_id LIMIT 1)
        FROM f
        WHERE f.job_status IS NULL;
    END IF;
    IF p_limit > 0 THEN
        RETURN QUERY SELECT c.*, NULL::text FROM sluice.claim_jobs(p_worker, p_limit, p_lease_seconds) c;
    END IF;
END $$;
