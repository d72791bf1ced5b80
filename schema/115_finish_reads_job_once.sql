-- 115_finish_reads_job_once.sql — finish_runs() reads each run's job once.
--
-- finish_runs() (110_finish_runs_outcome.sql) looked each ended run's job up
-- twice: once to decide its new status, next due time and attempts (the
-- "decided" step), and again to write them. Both are now one UPDATE whose SET
-- list computes the new values from the job's old row, so a finished run costs
-- one index lookup of its job instead of two (about 6 % of a claim-and-finish
-- cycle of 500 no-op jobs). The rules are those of 110 unchanged:
--   status      a cancelled or archived job keeps its status; a completed
--               one-time job is completed; a cancelled run cancels its job; a
--               failed one-time job with no retry left (or a permanent
--               failure) is failed; anything else keeps its status
--   next_run_at NULL unless the job stays active or paused; then, after a
--               failure that may be retried, now + backoff with jitter, else the
--               run's next cron slot (NULL for a one-time job)
--   attempts    0 after a completion or a failure with no retry left
--   checkpoint  kept only for a retry of the same attempt cycle
-- "A retry is left" is: retryable, and attempts <= max_retries (the job's, else
-- its type's, else 3). Its signature and result are those of 110.

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

