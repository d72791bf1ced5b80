-- 110_finish_runs_outcome.sql — finish_runs() names each outcome's status, so
-- that finish_and_claim_runs() need not look it up again.
--
-- finish_runs() returns a third column, outcome: the status the batch gave the
-- run (completed, failed or cancelled). finish_and_claim_runs()
-- (104_unrecorded_outcomes.sql) reported an outcome that was not recorded
-- with a subquery that read the batch's JSON again to find that status; it now
-- takes it from finish_runs' own row. Callers that read run_id and job_status
-- are unchanged (finish_run(), `sluice run`, the REPL, finish_and_claim()).
--
-- A function's result type cannot be replaced, so finish_runs() is dropped and
-- created again; no other object depends on it (its callers are plpgsql or
-- have their bodies as text). It is otherwise that of 101_inflight_runs.sql.

DROP FUNCTION sluice.finish_runs(jsonb);

-- Ends runs and moves their jobs on: the rules are those of 002_queue.sql
-- (retry policy, terminal states, freshness, skipped datasets), but a job that
-- is no longer active or paused keeps its status. One row per outcome of
-- p_runs: its run, the job's new status (NULL when nothing was recorded: the
-- run was no longer running) and the outcome's own status.
CREATE FUNCTION sluice.finish_runs(p_runs jsonb)
RETURNS TABLE (run_id uuid, job_status text, outcome text) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    e record;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    WITH input AS (
        SELECT * FROM jsonb_to_recordset(p_runs) AS x(
            run_id uuid, status text, result jsonb, error text, logs text, retryable boolean,
            next_cron timestamptz, datasets jsonb, handler_version text, started_at float8,
            finished_at float8, log_from bigint)
        WHERE x.status IN ('completed', 'failed', 'cancelled')
    ), runs AS (
        UPDATE sluice.scheduled_job_runs r
        SET status = i.status,
            started_at = coalesce(to_timestamp(i.started_at), r.started_at),
            completed_at = least(coalesce(to_timestamp(i.finished_at), clock_timestamp()),
                                 clock_timestamp()),
            result = i.result, error_message = i.error,
            -- log_from: how much of the log the worker knows is recorded; a flush
            -- that raced with the finish may have added more, which i.logs repeats
            logs = CASE WHEN i.log_from IS NOT NULL AND octet_length(r.logs) > i.log_from
                        THEN convert_from(substring(convert_to(r.logs, 'UTF8') FROM 1 FOR i.log_from::int), 'UTF8')
                        ELSE r.logs END || coalesce(i.logs, ''),
            lease_expires_at = NULL,
            handler_version = coalesce(i.handler_version, r.handler_version)
        FROM input i
        WHERE r.id = i.run_id AND r.status = 'running'
        RETURNING r.id, r.scheduled_job_id, r.brand_id, r.job_type, r.started_at, r.completed_at,
                  i.status, i.result, i.error, coalesce(i.retryable, true) AS retryable,
                  i.next_cron, i.datasets
    ), decided AS (
        SELECT r.id AS run_id, j.id AS job_id,
               -- a cancelled (or archived) job stays so: the user's cancel is final,
               -- whatever its run did; the run keeps its own outcome
               CASE WHEN j.status NOT IN ('active', 'paused') THEN j.status
                    WHEN r.status = 'completed' AND j.schedule_type = 'one_time' THEN 'completed'
                    WHEN r.status = 'cancelled' THEN 'cancelled'
                    WHEN r.status = 'failed' AND NOT (r.retryable AND j.attempts <= coalesce(j.max_retries, t.max_retries, 3))
                         AND j.schedule_type = 'one_time' THEN 'failed'
                    ELSE j.status END AS new_status,
               CASE WHEN r.status = 'completed' THEN r.next_cron
                    WHEN r.status = 'cancelled' THEN NULL
                    WHEN r.retryable AND j.attempts <= coalesce(j.max_retries, t.max_retries, 3)
                    THEN now() + make_interval(secs =>
                             least(coalesce(t.retry_max_seconds, 3600),
                                   coalesce(t.retry_base_seconds, 10) * power(2, greatest(j.attempts - 1, 0)))
                             * (0.75 + random() * 0.5))
                    ELSE r.next_cron END AS new_next,
               CASE WHEN r.status = 'completed'
                      OR (r.status = 'failed' AND NOT (r.retryable AND j.attempts <= coalesce(j.max_retries, t.max_retries, 3)))
                    THEN 0 ELSE j.attempts END AS new_attempts,
               r.status AS run_status, r.error
        FROM runs r
        JOIN sluice.scheduled_jobs j ON j.id = r.scheduled_job_id
        LEFT JOIN sluice.job_types t ON t.name = j.job_type
    ), jobs AS (
        UPDATE sluice.scheduled_jobs j
        SET status = d.new_status,
            next_run_at = CASE WHEN d.new_status IN ('active', 'paused') THEN d.new_next END,
            attempts = d.new_attempts,
            current_run_id = CASE WHEN j.current_run_id = d.run_id THEN NULL ELSE j.current_run_id END,
            last_error = CASE WHEN d.run_status = 'completed' THEN NULL ELSE d.error END,
            -- kept only for a retry of the same attempt cycle: a recurring job that
            -- moves on to its next slot starts afresh
            checkpoint = CASE WHEN d.run_status = 'failed' AND d.new_status IN ('active', 'paused')
                                   AND d.new_attempts > 0
                              THEN j.checkpoint ELSE '{}' END,
            updated_at = now()
        FROM decided d
        WHERE j.id = d.job_id
        RETURNING d.run_id, j.status
    ), ds AS (
        INSERT INTO sluice.dataset_status AS s
            (brand_id, dataset_key, last_status, last_attempt_at, last_success_at, last_run_id,
             source_job_id, records_affected, metadata, error_message)
        SELECT DISTINCT ON (x.brand_id, x.dataset_key)
               x.brand_id, x.dataset_key,
               CASE WHEN x.rep ->> 'status' = 'completed' THEN 'completed' ELSE 'failed' END,
               x.started_at,
               CASE WHEN x.rep ->> 'status' = 'completed' THEN x.completed_at END,
               x.id, x.scheduled_job_id,
               CASE WHEN x.rep ->> 'status' = 'completed' AND jsonb_typeof(x.rep -> 'records') = 'number'
                    THEN (x.rep ->> 'records')::numeric::bigint END,
               coalesce(x.rep -> 'metadata', '{}'),
               CASE WHEN x.rep ->> 'status' = 'completed' THEN NULL
                    ELSE coalesce(x.rep ->> 'error', x.error, 'failed') END
        FROM (SELECT r.*, d.dataset_key,
                     coalesce(r.datasets -> d.dataset_key,
                              CASE WHEN r.status = 'completed'
                                   THEN jsonb_build_object('status', 'completed', 'records', r.result -> 'records')
                                   ELSE jsonb_build_object('status', 'failed', 'error',
                                                           coalesce(r.error, r.status)) END) AS rep
              FROM runs r JOIN sluice.job_type_datasets d ON d.job_type = r.job_type) x
        WHERE x.rep ->> 'status' IS DISTINCT FROM 'skipped'
        ORDER BY x.brand_id, x.dataset_key, x.completed_at DESC
        ON CONFLICT (brand_id, dataset_key) DO UPDATE SET
            -- a newer run may own the row by now: only its own run settles the status
            last_status = CASE WHEN s.last_run_id = excluded.last_run_id OR s.last_status <> 'running'
                               THEN excluded.last_status ELSE s.last_status END,
            last_success_at = coalesce(excluded.last_success_at, s.last_success_at),
            records_affected = CASE WHEN excluded.last_status = 'completed'
                                    THEN excluded.records_affected ELSE s.records_affected END,
            metadata = CASE WHEN excluded.last_status = 'completed'
                            THEN excluded.metadata ELSE s.metadata END,
            error_message = CASE WHEN s.last_run_id = excluded.last_run_id OR s.last_status <> 'running'
                                 THEN excluded.error_message ELSE s.error_message END,
            updated_at = now()
    )
    SELECT i.run_id, j.status, i.status FROM input i LEFT JOIN jobs j ON j.run_id = i.run_id;
    -- datasets a run reported as skipped (it did not touch them this time) go
    -- back to what they were before the claim marked them running
    FOR e IN SELECT x.run_id, x.datasets FROM jsonb_to_recordset(p_runs) AS x(run_id uuid, datasets jsonb)
             WHERE jsonb_typeof(x.datasets) = 'object' LOOP
        PERFORM sluice.unclaim_datasets(ARRAY[e.run_id], ARRAY(
            SELECT d.key FROM jsonb_each(e.datasets) d WHERE d.value ->> 'status' = 'skipped'));
    END LOOP;
END $$;

-- The cycle of 104_unrecorded_outcomes.sql: an outcome that was not recorded
-- comes back with its status from finish_runs().
CREATE OR REPLACE FUNCTION sluice.finish_and_claim_runs(
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
        RETURN QUERY
        SELECT f.run_id, NULL::uuid, NULL::text, NULL::uuid, NULL::jsonb, NULL::integer,
               NULL::jsonb, NULL::text, NULL::text, NULL::text, NULL::float8, NULL::text,
               f.outcome
        FROM sluice.finish_runs(p_finished) f
        WHERE f.job_status IS NULL;
    END IF;
    IF p_limit > 0 THEN
        RETURN QUERY SELECT c.*, NULL::text FROM sluice.claim_jobs(p_worker, p_limit, p_lease_seconds) c;
    END IF;
END $$;
