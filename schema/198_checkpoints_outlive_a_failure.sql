-- 198_checkpoints_outlive_a_failure.sql — a one-time job that fails for good
-- keeps its checkpoint; new parameters clear it.
--
-- A job's checkpoint (job.checkpoint(key, value)) is what its attempts saved
-- for the next one: the id of the Apify run an attempt paid for, the LLM
-- answers a reddit job has already had. It was cleared whenever a job left its
-- retries behind, so a one-time job that failed for good — a permanent error
-- such as an exhausted LLM quota, or its last retry spent — lost it; and `sluice
-- jobs run-now`, which runs a failed job again once the cause is fixed, then
-- bought the scrape again and asked the LLM again for what it had answered.
--
-- finish_runs() now keeps the checkpoint of a one-time job whose run failed,
-- whatever became of the job. It is cleared as before when the job completes
-- or is cancelled, and a recurring job's when a run ends its attempt cycle (its
-- next slot is new work). apply_retention() drops it when it archives the job
-- (an archived job cannot run again), rather than keep it for good.
--
-- A checkpoint belongs to the parameters the attempts ran with. edit_schedule()
-- (`sluice jobs edit --params`) clears it when the parameters change, so a
-- recurring job's pending retry starts afresh instead of resuming the scrape of
-- its old search; and job.checkpoint() stores a value only while the job's
-- parameters are still those its run started with (a run in flight during the
-- edit keeps going, its saves no longer kept). One-time jobs cannot be edited.
--
-- A cancelled job's checkpoint was cleared only when a run in flight ended;
-- cancel_job() of a job awaiting its retry left it, and another job's lost
-- Apify start then counted the cancelled job as the owner of its run. It is
-- cleared at the cancel now (a run in flight may still save; its end clears
-- it again).
--
-- finish_runs() is that of 160_outcome_decisions.sql, edit_schedule() that of
-- 146_edit_schedule.sql, cancel_job() that of 142_cancel_cancelled.sql and
-- apply_retention() that of 117_retention_arguments.sql, but for the
-- checkpoint.

-- Ends runs and moves their jobs on (see 002_queue.sql and the files that
-- restate it). One row per outcome of p_runs: its run, the job's new status
-- (NULL when nothing was recorded: the run was no longer running), the
-- outcome's own status, and for an outcome recorded that is not a completion
-- what became of its job (outcome_decision).
CREATE OR REPLACE FUNCTION sluice.finish_runs(p_runs jsonb)
RETURNS TABLE (run_id uuid, job_status text, outcome text, decision text) LANGUAGE plpgsql AS $$
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
                  r.attempt_number, i.status, i.result, i.error, coalesce(i.retryable, true) AS retryable,
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
            -- kept for the job's retry, and by a one-time job that fails for
            -- good, for `jobs run-now` after the cause is fixed
            checkpoint = CASE WHEN r.status = 'failed' AND j.status IN ('active', 'paused')
                                   AND (j.schedule_type = 'one_time'
                                        OR (j.attempts > 0 AND r.retryable
                                            AND j.attempts <= coalesce(j.max_retries, t.max_retries, 3)))
                              THEN j.checkpoint ELSE '{}' END,
            updated_at = now()
        FROM runs r LEFT JOIN sluice.job_types t ON t.name = r.job_type
        WHERE j.id = r.scheduled_job_id
        -- what became of the job, for a run that did not complete only: a
        -- completed run (the bulk of a busy worker's batch) returns nothing more
        RETURNING r.id AS run_id, j.status,
                  CASE WHEN r.status <> 'completed' THEN
                      sluice.outcome_decision(r.retryable, j.status, j.schedule_type, j.attempts,
                                              r.attempt_number, coalesce(j.max_retries, t.max_retries, 3),
                                              j.next_run_at) END AS decision
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
    SELECT i.run_id, j.status, i.status, j.decision FROM input i LEFT JOIN jobs j ON j.run_id = i.run_id;
    -- datasets a run reported as skipped (it did not touch them this time) go
    -- back to what they were before the claim marked them running
    FOR e IN SELECT x.run_id, x.datasets FROM jsonb_to_recordset(p_runs) AS x(run_id uuid, datasets jsonb)
             WHERE jsonb_typeof(x.datasets) = 'object' LOOP
        PERFORM sluice.unclaim_datasets(ARRAY[e.run_id], ARRAY(
            SELECT d.key FROM jsonb_each(e.datasets) d WHERE d.value ->> 'status' = 'skipped'));
    END LOOP;
END $$;

-- Changes a recurring job in place (146_edit_schedule.sql).
CREATE OR REPLACE FUNCTION sluice.edit_schedule(
    p_job uuid, p_cron text DEFAULT NULL, p_timezone text DEFAULT NULL,
    p_next_run_at timestamptz DEFAULT NULL, p_parameters jsonb DEFAULT NULL,
    p_priority integer DEFAULT NULL, p_name text DEFAULT NULL,
    p_max_retries integer DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    j sluice.scheduled_jobs;
    params jsonb;
    moves boolean;
BEGIN
    SELECT * INTO j FROM sluice.scheduled_jobs WHERE id = p_job FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no job with id %', p_job USING ERRCODE = 'no_data_found';
    END IF;
    IF j.schedule_type <> 'recurring' THEN
        RAISE EXCEPTION 'job % is a one-time job: only recurring jobs can be edited', p_job
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'cancel it and queue it again';
    END IF;
    IF p_cron IS NOT NULL AND btrim(p_cron) = '' THEN
        RAISE EXCEPTION 'a recurring job needs a cron expression' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_timezone = '' THEN
        RAISE EXCEPTION 'a time zone must not be empty: give a zone such as UTC, or NULL to keep it'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    moves := (p_cron IS NOT NULL AND btrim(p_cron) IS DISTINCT FROM j.cron_expression)
             OR (p_timezone IS NOT NULL AND p_timezone IS DISTINCT FROM j.timezone);
    IF j.status = 'failed' AND NOT moves THEN
        RAISE EXCEPTION 'job % is failed, as its schedule could not be evaluated: %', p_job,
            coalesce(j.last_error, 'no reason recorded')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'give it a new cron expression or time zone';
    END IF;
    IF j.status NOT IN ('active', 'paused', 'failed') THEN
        RAISE EXCEPTION 'job % is %: only active, paused or failed jobs can be edited', p_job, j.status
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'schedule it again';
    END IF;
    IF moves AND j.current_run_id IS NOT NULL THEN
        RAISE EXCEPTION 'job % has a run in flight (%): its schedule can change once the run has ended',
            p_job, j.current_run_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM sluice.check_run_at(p_next_run_at);
    PERFORM sluice.check_job_options(p_priority, p_max_retries, NULL, p_name, NULL);
    IF p_parameters IS NOT NULL THEN
        params := sluice.check_enqueue(j.job_type, j.brand_id, p_parameters);
    END IF;
    UPDATE sluice.scheduled_jobs
    SET status = CASE WHEN status = 'failed' THEN 'active' ELSE status END,
        last_error = CASE WHEN status = 'failed' THEN NULL ELSE last_error END,
        cron_expression = coalesce(btrim(p_cron), cron_expression),
        timezone = coalesce(p_timezone, timezone),
        next_run_at = CASE WHEN moves THEN p_next_run_at ELSE next_run_at END,
        parameters = coalesce(params, parameters),
        -- what earlier attempts saved was for the old parameters
        checkpoint = CASE WHEN params IS NOT NULL AND params IS DISTINCT FROM parameters
                          THEN '{}' ELSE checkpoint END,
        priority = coalesce(p_priority, priority),
        name = coalesce(p_name, name),
        max_retries = coalesce(p_max_retries, max_retries),
        updated_at = now()
    WHERE id = p_job;
    IF moves THEN
        PERFORM pg_notify('sluice_jobs', '');  -- the new slot may be sooner
    END IF;
    RETURN CASE WHEN j.status = 'failed' THEN 'active' ELSE j.status END;
END $$;

-- Cancels a job (142_cancel_cancelled.sql).
CREATE OR REPLACE FUNCTION sluice.cancel_job(p_job uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    j sluice.scheduled_jobs;
BEGIN
    SELECT * INTO j FROM sluice.scheduled_jobs WHERE id = p_job FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no job with id %', p_job USING ERRCODE = 'no_data_found';
    END IF;
    IF j.status = 'cancelled' THEN
        RETURN CASE WHEN j.current_run_id IS NOT NULL THEN 'cancelling' ELSE 'cancelled' END;
    END IF;
    IF j.status NOT IN ('active', 'paused') THEN
        RAISE EXCEPTION 'job % is already %: only active or paused jobs can be cancelled', p_job, j.status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE sluice.scheduled_jobs SET status = 'cancelled', next_run_at = NULL, checkpoint = '{}', updated_at = now()
    WHERE id = p_job;
    IF j.current_run_id IS NOT NULL THEN
        PERFORM pg_notify('sluice_cancel', j.current_run_id::text);
        RETURN 'cancelling';
    END IF;
    RETURN 'cancelled';
END $$;

-- Archives old one-time jobs and prunes old runs (117_retention_arguments.sql).
CREATE OR REPLACE FUNCTION sluice.apply_retention(
    p_archive_after interval DEFAULT '7 days', p_prune_after interval DEFAULT '30 days',
    OUT archived integer, OUT pruned integer)
LANGUAGE plpgsql AS $$
DECLARE
    archive_after interval := coalesce(p_archive_after, '7 days');
    prune_after interval := coalesce(p_prune_after, '30 days');
BEGIN
    IF archive_after < interval '0' OR prune_after < interval '0' THEN
        RAISE EXCEPTION 'apply_retention needs ages of zero or more, not %',
            CASE WHEN archive_after < interval '0' THEN archive_after ELSE prune_after END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'give intervals such as ''7 days'' and ''30 days'', or NULL for those defaults';
    END IF;
    UPDATE sluice.scheduled_jobs SET status = 'archived', checkpoint = '{}', updated_at = now()
    WHERE schedule_type = 'one_time' AND status IN ('completed', 'failed', 'cancelled')
      AND current_run_id IS NULL
      AND updated_at < now() - archive_after;
    GET DIAGNOSTICS archived = ROW_COUNT;
    DELETE FROM sluice.scheduled_job_runs r
    WHERE r.status IN ('completed', 'failed', 'cancelled')
      AND r.completed_at < now() - prune_after
      AND r.id <> (SELECT r2.id FROM sluice.scheduled_job_runs r2
                   WHERE r2.scheduled_job_id = r.scheduled_job_id
                   ORDER BY r2.created_at DESC LIMIT 1);
    GET DIAGNOSTICS pruned = ROW_COUNT;
END $$;
