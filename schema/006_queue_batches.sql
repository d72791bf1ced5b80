-- 006_queue_batches.sql — the queue's hot path made linear in the batch size
-- and lighter per job; see docs/architecture.md ("Throughput").
--
-- Migration files are append-only: a function's current definition is in the
-- highest-numbered file that defines it (here: start_runs, finish_runs,
-- append_logs).
--
-- * Runs are no longer tied to jobs and workers by foreign keys. The checks ran
--   for every run a claim inserted (two lookups per run, a fifth of a claim's
--   cost). The queue functions set both columns themselves; deleting jobs
--   (directly, or with their brand) still deletes their runs, through the
--   statement trigger below. A run's worker_id may name a worker row that is
--   gone; nothing deletes workers.
-- * finish_runs and append_logs find each run by primary key from the batch's
--   own rows. They used to filter on an array of the ids as well, which the
--   planner turned into a nested loop of every run against every input row:
--   quadratic in the batch, 8 ms of 22 for a batch of 200.
-- * start_runs (under claim_jobs) updates the jobs the claim locked and inserts
--   their runs from the update's own RETURNING (it read the jobs a second time,
--   and returned whole rows).

ALTER TABLE sluice.scheduled_job_runs
    DROP CONSTRAINT IF EXISTS scheduled_job_runs_scheduled_job_id_fkey,
    DROP CONSTRAINT IF EXISTS scheduled_job_runs_worker_id_fkey;

-- Deleting jobs deletes their runs (what ON DELETE CASCADE did), once per statement.
CREATE OR REPLACE FUNCTION sluice.delete_runs_of_deleted_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM sluice.scheduled_job_runs r USING gone g WHERE r.scheduled_job_id = g.id;
    RETURN NULL;
END $$;

CREATE TRIGGER scheduled_jobs_delete_runs AFTER DELETE ON sluice.scheduled_jobs
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION sluice.delete_runs_of_deleted_jobs();

-- Starts runs for jobs the caller has locked (claim_jobs, start_direct_run):
-- marks the jobs running, inserts their runs with a lease from that update's
-- own rows, and marks their datasets running. Returns the runs in p_jobs order.
CREATE OR REPLACE FUNCTION sluice.start_runs(p_worker uuid, p_jobs uuid[], p_lease_seconds double precision)
RETURNS SETOF sluice.claimed_run LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH jobs AS (
        UPDATE sluice.scheduled_jobs j
        SET next_run_at = NULL, current_run_id = gen_random_uuid(), attempts = j.attempts + 1,
            last_run_at = now(), run_count = j.run_count + 1, updated_at = now()
        WHERE j.id = ANY (p_jobs)
        RETURNING j.current_run_id AS run_id, j.id, j.job_type, j.brand_id, j.parameters,
                  j.attempts, j.checkpoint, j.schedule_type, j.cron_expression, j.timezone,
                  j.trigger_source
    ), runs AS (
        INSERT INTO sluice.scheduled_job_runs
            (id, scheduled_job_id, job_type, brand_id, attempt_number, status, trigger_source,
             worker_id, lease_expires_at, heartbeat_at, parameters, started_at)
        SELECT j.run_id, j.id, j.job_type, j.brand_id, j.attempts, 'running', j.trigger_source,
               p_worker, now() + make_interval(secs => p_lease_seconds), now(), j.parameters,
               clock_timestamp()
        FROM jobs j
    ), ds AS (
        INSERT INTO sluice.dataset_status AS s
            (brand_id, dataset_key, last_status, last_attempt_at, last_run_id, source_job_id)
        SELECT DISTINCT ON (j.brand_id, d.dataset_key)
               j.brand_id, d.dataset_key, 'running', now(), j.run_id, j.id
        FROM jobs j JOIN sluice.job_type_datasets d ON d.job_type = j.job_type
        ORDER BY j.brand_id, d.dataset_key
        ON CONFLICT (brand_id, dataset_key) DO UPDATE
            SET last_status = 'running', last_attempt_at = now(),
                last_run_id = excluded.last_run_id, source_job_id = excluded.source_job_id,
                updated_at = now()
    )
    SELECT j.run_id, j.id, j.job_type, j.brand_id, j.parameters, j.attempts, j.checkpoint,
           j.schedule_type, j.cron_expression, j.timezone, t.timeout_seconds, j.trigger_source
    FROM jobs j JOIN sluice.job_types t ON t.name = j.job_type
    JOIN unnest(p_jobs) WITH ORDINALITY AS o(id, n) ON o.id = j.id
    ORDER BY o.n; -- the order they were claimed in (priority, then due time)
END $$;

-- Ends runs and moves their jobs on: the rules are those of 002_queue.sql
-- (retry policy, terminal states, freshness, skipped datasets).
CREATE OR REPLACE FUNCTION sluice.finish_runs(p_runs jsonb)
RETURNS TABLE (run_id uuid, job_status text) LANGUAGE plpgsql AS $$
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
        SELECT r.id AS run_id, j.id AS job_id, j.status AS old_status,
               CASE WHEN r.status = 'completed' AND j.schedule_type = 'one_time' THEN 'completed'
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
        SET status = CASE WHEN d.old_status IN ('paused', 'cancelled') AND d.new_status = 'active'
                          THEN d.old_status ELSE d.new_status END,
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
    SELECT i.run_id, j.status FROM input i LEFT JOIN jobs j ON j.run_id = i.run_id;
    -- datasets a run reported as skipped (it did not touch them this time) go
    -- back to what they were before the claim marked them running
    FOR e IN SELECT x.run_id, x.datasets FROM jsonb_to_recordset(p_runs) AS x(run_id uuid, datasets jsonb)
             WHERE jsonb_typeof(x.datasets) = 'object' LOOP
        PERFORM sluice.unclaim_datasets(ARRAY[e.run_id], ARRAY(
            SELECT d.key FROM jsonb_each(e.datasets) d WHERE d.value ->> 'status' = 'skipped'));
    END LOOP;
END $$;


-- Appends log lines of runs still in flight; see 002_queue.sql.
CREATE OR REPLACE FUNCTION sluice.append_logs(p_logs jsonb)
RETURNS SETOF uuid LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    UPDATE sluice.scheduled_job_runs r SET logs = r.logs || x.logs
    FROM jsonb_to_recordset(p_logs) AS x(run_id uuid, logs text, "from" bigint)
    WHERE r.id = x.run_id AND r.status = 'running'
      AND octet_length(r.logs) = x."from"  -- in order, and never twice
    RETURNING r.id;
END $$;
