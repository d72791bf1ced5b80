-- 160_outcome_decisions.sql — what became of a job whose run failed or was
-- cancelled is said by the statement that decided it.
--
-- The retry policy is applied in finish_runs(): a failed run's job is retried
-- after a backoff while attempts are left, fails (a one-time job) or moves to
-- its next slot with its attempts reset (a recurring one) once they are spent
-- or when the error is permanent, and a cancelled run's job is cancelled. The
-- daemon logged a failed run before its outcome was recorded, so its line
-- could not say which; `sluice run` asked the job again, and only when it was
-- retried; the REPL said nothing.
--
--   outcome_decision(…) → text       the decision for one failed or cancelled
--                                     run, in words: "retry attempt 2 of 4 at
--                                     2026-11-27T21:50:03Z", "job failed: no
--                                     retries left (3 of 3)", "job failed:
--                                     permanent error", "next slot at …: no
--                                     retries left (4 of 4), attempts reset",
--                                     "job cancelled"
--   finish_runs(runs)                 a fourth column, decision: that text for
--                                     an outcome recorded that is not a
--                                     completion (NULL for those and for one not
--                                     recorded)
--   finish_and_claim_runs(finished, worker, limit, lease_seconds, types, decisions)
--                                     with decisions true, also one row per
--                                     failed or cancelled outcome recorded: its
--                                     run_id and decision (the other columns
--                                     NULL), before the claimed runs
--   rescue_lost_runs()                a fourth column, decision, for each run
--                                     it failed
--
-- Completed runs, the bulk of a busy worker's batch, add no row and no work
-- but a comparison. The earlier signature of finish_and_claim_runs() stays (a
-- worker of the previous version calls it during a rolling upgrade) and
-- returns what it did: rows with unrecorded NULL are claims to it.
--
-- finish_runs() and rescue_lost_runs() cannot change their result type in
-- place: they are dropped and created again (no object depends on them; their
-- callers are plpgsql or hold their bodies as text). finish_runs() is that of
-- 131_finish_runs_settle_together.sql otherwise, rescue_lost_runs() that of
-- 096_rescue_each_run.sql.

-- The decision for a run that ended failed or cancelled, from its job as the
-- run's outcome left it: retryable (the run's error is not permanent), the
-- job's new status, schedule type, attempts (0: reset, the attempt cycle is
-- over; else the attempt that failed, to be followed by a retry) and next run,
-- the run's attempt number and the job's max_retries. NULL when the outcome was
-- not recorded (p_job_status NULL).
CREATE FUNCTION sluice.outcome_decision(
    p_retryable boolean, p_job_status text, p_schedule_type text, p_attempts integer,
    p_attempt integer, p_max_retries integer, p_next_run_at timestamptz)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_job_status IS NULL THEN NULL
        -- a cancelled run, or a job cancelled (or archived) while its run went on
        WHEN p_job_status NOT IN ('active', 'paused', 'failed') THEN 'job ' || p_job_status
        WHEN p_attempts > 0 THEN
            'retry attempt ' || (p_attempts + 1) || ' of ' || (p_max_retries + 1) || ' at '
            || coalesce(to_char(p_next_run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'once due')
        WHEN p_schedule_type = 'one_time' THEN 'job failed: '
        ELSE coalesce('next slot at ' || to_char(p_next_run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                      'no next slot yet') || ': '
        END
    || CASE
        WHEN p_job_status IS NULL OR p_job_status NOT IN ('active', 'paused', 'failed') OR p_attempts > 0 THEN ''
        WHEN NOT p_retryable THEN 'permanent error'
        ELSE 'no retries left (' || p_attempt || ' of ' || (p_max_retries + 1) || ')'
        END
    || CASE WHEN p_job_status IS NOT NULL AND p_schedule_type <> 'one_time' AND p_job_status IN ('active', 'paused')
                 AND p_attempts = 0 THEN ', attempts reset' ELSE '' END
    || CASE WHEN p_job_status = 'paused' THEN ' (the job is paused)' ELSE '' END
$$;

DROP FUNCTION sluice.finish_runs(jsonb);

-- Ends runs and moves their jobs on (see 002_queue.sql and the files that
-- restate it). One row per outcome of p_runs: its run, the job's new status
-- (NULL when nothing was recorded: the run was no longer running), the
-- outcome's own status, and for an outcome recorded that is not a completion
-- what became of its job (outcome_decision).
CREATE FUNCTION sluice.finish_runs(p_runs jsonb)
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
            checkpoint = CASE WHEN r.status = 'failed' AND j.status IN ('active', 'paused')
                                   AND j.attempts > 0 AND r.retryable AND j.attempts <= coalesce(j.max_retries, t.max_retries, 3)
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

-- The worker's cycle: records p_finished and claims up to p_limit due jobs of
-- p_types (NULL: any) in one round trip. Before the claimed runs, one row per
-- outcome that was not recorded (run_id; unrecorded: its status) and, with
-- p_decisions, one per failed or cancelled outcome recorded (run_id; decision);
-- a claimed run has both NULL.
CREATE FUNCTION sluice.finish_and_claim_runs(
    p_finished jsonb, p_worker uuid, p_limit integer, p_lease_seconds double precision,
    p_types text[], p_decisions boolean)
RETURNS TABLE (run_id uuid, job_id uuid, job_type text, brand_id uuid, parameters jsonb,
               attempt_number integer, checkpoint jsonb, schedule_type text,
               cron_expression text, timezone text, timeout_seconds double precision,
               trigger_source text, unrecorded text, decision text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_finished IS NOT NULL AND jsonb_array_length(p_finished) > 0 THEN
        RETURN QUERY
        SELECT f.run_id, NULL::uuid, NULL::text, NULL::uuid, NULL::jsonb, NULL::integer,
               NULL::jsonb, NULL::text, NULL::text, NULL::text, NULL::float8, NULL::text,
               CASE WHEN f.job_status IS NULL THEN f.outcome END,
               CASE WHEN p_decisions THEN f.decision END
        FROM sluice.finish_runs(p_finished) f
        WHERE f.job_status IS NULL OR (p_decisions AND f.decision IS NOT NULL);
    END IF;
    IF p_limit > 0 THEN
        RETURN QUERY SELECT c.*, NULL::text, NULL::text
                     FROM sluice.claim_jobs(p_worker, p_limit, p_lease_seconds, p_types) c;
    END IF;
END $$;

-- The signature of 141_claim_known_types.sql, for a worker of the previous
-- version: without decisions, as before.
CREATE OR REPLACE FUNCTION sluice.finish_and_claim_runs(
    p_finished jsonb, p_worker uuid, p_limit integer, p_lease_seconds double precision,
    p_types text[])
RETURNS TABLE (run_id uuid, job_id uuid, job_type text, brand_id uuid, parameters jsonb,
               attempt_number integer, checkpoint jsonb, schedule_type text,
               cron_expression text, timezone text, timeout_seconds double precision,
               trigger_source text, unrecorded text)
LANGUAGE sql AS $$
    SELECT f.run_id, f.job_id, f.job_type, f.brand_id, f.parameters, f.attempt_number, f.checkpoint,
           f.schedule_type, f.cron_expression, f.timezone, f.timeout_seconds, f.trigger_source,
           f.unrecorded
    FROM sluice.finish_and_claim_runs(p_finished, p_worker, p_limit, p_lease_seconds, p_types, false) f
$$;

DROP FUNCTION sluice.rescue_lost_runs();

-- Fails every run whose lease expired (its worker died or lost the database),
-- each in its own subtransaction, and applies the retry policy to its job (an
-- attempt is spent; a retry is due at once: the job did nothing wrong). One
-- row per run: job_status and decision (outcome_decision) once failed, or
-- error when recording it raised (the run stays as it was, for the next pass).
CREATE FUNCTION sluice.rescue_lost_runs()
RETURNS TABLE (run_id uuid, job_status text, error text, decision text) LANGUAGE plpgsql AS $$
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
        error := NULL;
        decision := NULL;
        BEGIN
            job_status := sluice.finish_run(r.id, 'failed', NULL,
                'worker lost: lease expired at ' ||
                    to_char(r.lease_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                E'worker lost: lease expired\n', true, NULL, NULL);
            -- the job did nothing wrong: it is due again at once, not after a backoff
            UPDATE sluice.scheduled_jobs j SET next_run_at = now()
            FROM sluice.scheduled_job_runs x
            WHERE x.id = r.id AND j.id = x.scheduled_job_id
              AND j.status = 'active' AND j.next_run_at > now();
            IF job_status IS NOT NULL THEN
                SELECT sluice.outcome_decision(true, j.status, j.schedule_type, j.attempts,
                                               x.attempt_number,
                                               coalesce(j.max_retries, t.max_retries, 3), j.next_run_at)
                INTO decision
                FROM sluice.scheduled_job_runs x
                JOIN sluice.scheduled_jobs j ON j.id = x.scheduled_job_id
                LEFT JOIN sluice.job_types t ON t.name = j.job_type
                WHERE x.id = r.id;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            job_status := NULL;
            decision := NULL;
            error := SQLERRM;
        END;
        RETURN NEXT;
    END LOOP;
END $$;
