-- 131_finish_runs_settle_together.sql — runs that end in one finish_runs()
-- call settle their datasets as if they had ended one after the other.
--
-- A claim makes the run it starts the owner of its datasets' freshness rows
-- (last_run_id, status running), and only the owner's end settles a row that
-- is running: a run that ends while a newer one keeps the dataset leaves the
-- status to it. finish_runs() settles each row from one of the runs it ends,
-- the one that ended last; when two runs of one brand and dataset ended in the
-- same call (a worker records its ended runs in batches) and the row's owner
-- was not the one that ended last, neither settled it, and the dataset stayed
-- "running" until a later run of it ended (sluice health, --check and
-- queue --if-stale read it as being refreshed). Now a row whose owner ended
-- in the call is settled by the run that ended last, and its last success is
-- the latest success among them. The function is that of
-- 115_finish_reads_job_once.sql otherwise.
--
-- Rows left running that way are settled here from the run that owns them,
-- which has ended: completed, or failed with its error.

CREATE OR REPLACE FUNCTION sluice.finish_runs(p_runs jsonb)
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
    ), jobs AS (
        -- one read of each job: every new value comes from its old row, by the
        -- rules at the top of this file
        UPDATE sluice.scheduled_jobs j
        SET status = CASE WHEN j.status NOT IN ('active', 'paused') THEN j.status
                          WHEN r.status = 'completed' AND j.schedule_type = 'one_time' THEN 'completed'
                          WHEN r.status = 'cancelled' THEN 'cancelled'
                          WHEN r.status = 'failed' AND NOT (r.retryable AND j.attempts <= coalesce(j.max_retries, t.max_retries, 3))
                               AND j.schedule_type = 'one_time' THEN 'failed'
                          ELSE j.status END,
            next_run_at = CASE WHEN j.status NOT IN ('active', 'paused') THEN NULL
                               WHEN r.status = 'completed' THEN
                                    CASE WHEN j.schedule_type = 'one_time' THEN NULL ELSE r.next_cron END
                               WHEN r.status = 'cancelled' THEN NULL
                               WHEN r.retryable AND j.attempts <= coalesce(j.max_retries, t.max_retries, 3)
                               THEN now() + make_interval(secs =>
                                        least(coalesce(t.retry_max_seconds, 3600),
                                              coalesce(t.retry_base_seconds, 10) * power(2, greatest(j.attempts - 1, 0)))
                                        * (0.75 + random() * 0.5))
                               WHEN j.schedule_type = 'one_time' THEN NULL
                               ELSE r.next_cron END,
            attempts = CASE WHEN r.status = 'completed'
                              OR (r.status = 'failed' AND NOT (r.retryable AND j.attempts <= coalesce(j.max_retries, t.max_retries, 3)))
                            THEN 0 ELSE j.attempts END,
            current_run_id = CASE WHEN j.current_run_id = r.id THEN NULL ELSE j.current_run_id END,
            last_error = CASE WHEN r.status = 'completed' THEN NULL ELSE r.error END,
            checkpoint = CASE WHEN r.status = 'failed' AND j.status IN ('active', 'paused')
                                   AND j.attempts > 0 AND r.retryable AND j.attempts <= coalesce(j.max_retries, t.max_retries, 3)
                              THEN j.checkpoint ELSE '{}' END,
            updated_at = now()
        FROM runs r LEFT JOIN sluice.job_types t ON t.name = r.job_type
        WHERE j.id = r.scheduled_job_id
        RETURNING r.id AS run_id, j.status
    ), ds AS (
        INSERT INTO sluice.dataset_status AS s
            (brand_id, dataset_key, last_status, last_attempt_at, last_success_at, last_run_id,
             source_job_id, records_affected, metadata, error_message)
        SELECT DISTINCT ON (x.brand_id, x.dataset_key)
               x.brand_id, x.dataset_key,
               CASE WHEN x.rep ->> 'status' = 'completed' THEN 'completed' ELSE 'failed' END,
               x.started_at,
               x.batch_success_at,
               x.id, x.scheduled_job_id,
               CASE WHEN x.rep ->> 'status' = 'completed' AND jsonb_typeof(x.rep -> 'records') = 'number'
                    THEN (x.rep ->> 'records')::numeric::bigint END,
               coalesce(x.rep -> 'metadata', '{}'),
               CASE WHEN x.rep ->> 'status' = 'completed' THEN NULL
                    ELSE coalesce(x.rep ->> 'error', x.error, 'failed') END
        FROM (SELECT y.*,
                     max(CASE WHEN y.rep ->> 'status' = 'completed' THEN y.completed_at END)
                         OVER (PARTITION BY y.brand_id, y.dataset_key) AS batch_success_at
              FROM (SELECT r.*, d.dataset_key,
                           coalesce(r.datasets -> d.dataset_key,
                                    CASE WHEN r.status = 'completed'
                                         THEN jsonb_build_object('status', 'completed', 'records', r.result -> 'records')
                                         ELSE jsonb_build_object('status', 'failed', 'error',
                                                                 coalesce(r.error, r.status)) END) AS rep
                    FROM runs r JOIN sluice.job_type_datasets d ON d.job_type = r.job_type) y
              WHERE y.rep ->> 'status' IS DISTINCT FROM 'skipped') x
        ORDER BY x.brand_id, x.dataset_key, x.completed_at DESC
        ON CONFLICT (brand_id, dataset_key) DO UPDATE SET
            -- a newer run may own the row by now: only its own run settles the
            -- status, or a later one that ended in the same call
            last_status = CASE WHEN s.last_status <> 'running' OR s.last_run_id IN (SELECT r.id FROM runs r)
                               THEN excluded.last_status ELSE s.last_status END,
            last_success_at = coalesce(excluded.last_success_at, s.last_success_at),
            records_affected = CASE WHEN excluded.last_status = 'completed'
                                    THEN excluded.records_affected ELSE s.records_affected END,
            metadata = CASE WHEN excluded.last_status = 'completed'
                            THEN excluded.metadata ELSE s.metadata END,
            error_message = CASE WHEN s.last_status <> 'running' OR s.last_run_id IN (SELECT r.id FROM runs r)
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

UPDATE sluice.dataset_status s
SET last_status = CASE WHEN r.status = 'completed' THEN 'completed' ELSE 'failed' END,
    error_message = CASE WHEN r.status = 'completed' THEN NULL
                         ELSE coalesce(r.error_message, r.status) END,
    updated_at = now()
FROM sluice.scheduled_job_runs r
WHERE s.last_status = 'running' AND r.id = s.last_run_id AND r.status <> 'running';
