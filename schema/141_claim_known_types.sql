-- 141_claim_known_types.sql — a worker claims only jobs of the types it has
-- handlers for.
--
-- claim_jobs() claimed any due job. A worker without the handler of a type
-- (an older worker during a rolling deploy that adds the type, a worker started
-- with another handler directory) claimed its jobs all the same and failed
-- each as of an unknown job type, until the job's retries were spent; the
-- worker that could run them never saw them. Now the worker names the types it
-- can run, and the jobs of other types stay due for a worker that has them.
--
--   claim_jobs(worker, limit, lease_seconds, types)
--   finish_and_claim_runs(finished, worker, limit, lease_seconds, types)
--
-- types: the job types to claim; NULL claims any. The earlier signatures stay
-- (a worker of the previous version calls them during a rolling upgrade) and
-- claim any type, as they did. claim_jobs() keeps always using its generic
-- plan (120_claim_plans.sql): the filter is a condition on the due jobs read
-- in order from their index.

CREATE FUNCTION sluice.claim_jobs(p_worker uuid, p_limit integer,
                                  p_lease_seconds double precision, p_types text[])
RETURNS SETOF sluice.claimed_run LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    due uuid[];
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    due := ARRAY(SELECT id FROM sluice.scheduled_jobs
                 WHERE status = 'active' AND next_run_at <= now()
                   AND (p_types IS NULL OR job_type = ANY (p_types))
                 ORDER BY priority, next_run_at
                 LIMIT p_limit
                 FOR UPDATE SKIP LOCKED);
    IF cardinality(due) > 0 THEN
        SET LOCAL synchronous_commit TO DEFAULT;
        RETURN QUERY SELECT * FROM sluice.start_runs(p_worker, due, p_lease_seconds);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION sluice.claim_jobs(p_worker uuid, p_limit integer,
                                             p_lease_seconds double precision)
RETURNS SETOF sluice.claimed_run LANGUAGE sql AS $$
    SELECT * FROM sluice.claim_jobs(p_worker, p_limit, p_lease_seconds, NULL)
$$;

CREATE FUNCTION sluice.finish_and_claim_runs(
    p_finished jsonb, p_worker uuid, p_limit integer, p_lease_seconds double precision,
    p_types text[])
RETURNS TABLE (run_id uuid, job_id uuid, job_type text, brand_id uuid, parameters jsonb,
               attempt_number integer, checkpoint jsonb, schedule_type text,
               cron_expression text, timezone text, timeout_seconds double precision,
               trigger_source text, unrecorded text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_finished IS NOT NULL AND jsonb_array_length(p_finished) > 0 THEN
        RETURN QUERY
        SELECT f.run_id, NULL::uuid, NULL::text, NULL::uuid, NULL::jsonb, NULL::integer,
               NULL::jsonb, NULL::text, NULL::text, NULL::text, NULL::float8, NULL::text,
               f.outcome
        FROM sluice.finish_runs(p_finished) f
        WHERE f.job_status IS NULL;
    END IF;
    IF p_limit > 0 THEN
        RETURN QUERY SELECT c.*, NULL::text
                     FROM sluice.claim_jobs(p_worker, p_limit, p_lease_seconds, p_types) c;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION sluice.finish_and_claim_runs(
    p_finished jsonb, p_worker uuid, p_limit integer, p_lease_seconds double precision)
RETURNS TABLE (run_id uuid, job_id uuid, job_type text, brand_id uuid, parameters jsonb,
               attempt_number integer, checkpoint jsonb, schedule_type text,
               cron_expression text, timezone text, timeout_seconds double precision,
               trigger_source text, unrecorded text)
LANGUAGE sql AS $$
    SELECT * FROM sluice.finish_and_claim_runs(p_finished, p_worker, p_limit, p_lease_seconds, NULL)
$$;
