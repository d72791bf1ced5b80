-- 101_inflight_runs.sql — a job whose run is still in flight is not done with:
-- its dedupe key stays held until the run has ended, a cancel stays a cancel
-- whatever the run does, and retention leaves the job alone; enqueue_many()
-- says what is wrong with its input.
--
-- Dedupe. A job held its dedupe key while it was active or paused. Cancelling
-- a job with a run in flight made it 'cancelled' at once, but the run goes on
-- until its worker hears of the cancel: moments for a daemon, the whole run
-- for a foreground `sluice run` or a daemon whose LISTEN connection was down,
-- until its lease expires for a lost worker. Meanwhile the same key could be
-- queued again, and its new job run beside the old run (a second paid
-- scrape). The key is now held while the job is active or paused or has a run
-- in flight (current_run_id set), by the same unique index, so that concurrent
-- enqueues stay race-free; enqueue() meanwhile returns the cancelled job's id
-- (created = false). Where this has already happened (a cancelled job's run in
-- flight beside a newer job with its key), the new index could not be built:
-- the job that is active or paused, else the newest, keeps the key, and the
-- others lose it (their runs are being stopped; the duplicate cannot be undone).
--
-- Cancel. A job cancelled while its run was in flight was to keep that status
-- (002_queue.sql says so), but finish_runs() kept it only where the run would
-- have left the job active: a one-time job whose run then completed became
-- 'completed', one whose run failed for good 'failed'. A job that is neither
-- active nor paused (cancelled, or archived by a retention pass from before
-- this file) now keeps its status; the run keeps its own outcome.
-- rescue_lost_runs() fails runs through finish_runs(), so the same holds for a
-- run whose worker was lost. A paused job is moved on as before: a one-time
-- job whose run completed or failed for good ends so (nothing is left to
-- hold), otherwise it stays paused with its next time kept for resume_job().
-- Only the CASE that decides the status changed; the hot path's statement is
-- otherwise the same.
--
-- Retention. apply_retention() archived a cancelled one-time job whose run was
-- still in flight; it now waits until that run has ended. It prunes only runs
-- that have ended (a running run has no completed_at, so none was pruned; the
-- rule no longer depends on that).
--
-- enqueue_many(). A NULL array, a NULL element or an element that is not a
-- JSON object ('[]', '"x"') ended in Postgres' own errors (FOREACH over NULL,
-- the table's checks); each is now refused by name, with the element's
-- position as for invalid parameters. An unknown job type with an empty array
-- returned 0; it now raises the error a single enqueue raises, and so does a
-- type that needs a brand when none is given.
--
-- enqueue() and enqueue_many() are otherwise those of 097_finite_run_at.sql,
-- finish_runs() that of 006_queue_batches.sql, apply_retention() that of
-- 005_lifecycle.sql.

-- ===================================================================== dedupe

WITH holders AS (
    SELECT id, row_number() OVER (PARTITION BY job_type, brand_id, dedupe_key
                                  ORDER BY status IN ('active', 'paused') DESC, created_at DESC, id) AS n
    FROM sluice.scheduled_jobs
    WHERE dedupe_key IS NOT NULL AND (status IN ('active', 'paused') OR current_run_id IS NOT NULL)
)
UPDATE sluice.scheduled_jobs j SET dedupe_key = NULL
FROM holders h WHERE j.id = h.id AND h.n > 1;

DROP INDEX sluice.scheduled_jobs_dedupe;

-- At most one job per (type, brand, dedupe key) that is pending, paused or has
-- a run in flight (a cancelled job until its run has ended).
CREATE UNIQUE INDEX scheduled_jobs_dedupe ON sluice.scheduled_jobs (job_type, brand_id, dedupe_key)
    NULLS NOT DISTINCT
    WHERE dedupe_key IS NOT NULL AND (status IN ('active', 'paused') OR current_run_id IS NOT NULL);

-- Queues a one-time job. Returns (job_id, created): created is false when a job
-- of this type and brand holds the dedupe key (pending, paused, or cancelled
-- with its run still in flight); its id is returned instead. Race-free under
-- concurrent enqueues (the unique index above).
CREATE OR REPLACE FUNCTION sluice.enqueue(
    p_brand          text,
    p_job_type       text,
    p_parameters     jsonb DEFAULT '{}',
    p_run_at         timestamptz DEFAULT NULL,
    p_priority       integer DEFAULT 0,
    p_dedupe_key     text DEFAULT NULL,
    p_max_retries    integer DEFAULT NULL,
    p_trigger_source text DEFAULT 'api',
    p_name           text DEFAULT NULL,
    OUT job_id uuid, OUT created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    b uuid := sluice.resolve_brand(p_brand);
    params jsonb := sluice.check_enqueue(p_job_type, b, coalesce(p_parameters, '{}'));
    run_at timestamptz := coalesce(p_run_at, now());
BEGIN
    PERFORM sluice.check_run_at(p_run_at);
    LOOP
        INSERT INTO sluice.scheduled_jobs
            (brand_id, job_type, name, parameters, next_run_at, priority, dedupe_key,
             max_retries, trigger_source)
        VALUES (b, p_job_type, p_name, params, run_at, coalesce(p_priority, 0), p_dedupe_key,
                p_max_retries, coalesce(p_trigger_source, 'api'))
        ON CONFLICT (job_type, brand_id, dedupe_key)
            WHERE dedupe_key IS NOT NULL AND (status IN ('active', 'paused') OR current_run_id IS NOT NULL)
            DO NOTHING
        RETURNING id INTO job_id;
        IF job_id IS NOT NULL THEN
            created := true;
            PERFORM pg_notify('sluice_jobs', '');
            RETURN;
        END IF;
        SELECT id INTO job_id FROM sluice.scheduled_jobs
        WHERE job_type = p_job_type AND brand_id IS NOT DISTINCT FROM b
          AND dedupe_key = p_dedupe_key
          AND (status IN ('active', 'paused') OR current_run_id IS NOT NULL);
        IF job_id IS NOT NULL THEN
            created := false;
            RETURN;
        END IF;
        -- the holder finished between the two statements: try again
    END LOOP;
END $$;

-- ===================================================================== cancel

-- Ends runs and moves their jobs on: the rules are those of 002_queue.sql
-- (retry policy, terminal states, freshness, skipped datasets), but a job that
-- is no longer active or paused keeps its status.
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
    SELECT i.run_id, j.status FROM input i LEFT JOIN jobs j ON j.run_id = i.run_id;
    -- datasets a run reported as skipped (it did not touch them this time) go
    -- back to what they were before the claim marked them running
    FOR e IN SELECT x.run_id, x.datasets FROM jsonb_to_recordset(p_runs) AS x(run_id uuid, datasets jsonb)
             WHERE jsonb_typeof(x.datasets) = 'object' LOOP
        PERFORM sluice.unclaim_datasets(ARRAY[e.run_id], ARRAY(
            SELECT d.key FROM jsonb_each(e.datasets) d WHERE d.value ->> 'status' = 'skipped'));
    END LOOP;
END $$;

-- ===================================================================== retention

-- Retention: finished one-time jobs older than p_archive_after become 'archived'
-- (a cancelled one only once its run in flight has ended: until then it holds
-- its dedupe key, and the run is recorded against it); runs that ended before
-- p_prune_after ago are deleted, except the latest run of each job, and a run
-- in flight never is. Returns (archived, pruned).
CREATE OR REPLACE FUNCTION sluice.apply_retention(
    p_archive_after interval DEFAULT '7 days', p_prune_after interval DEFAULT '30 days',
    OUT archived integer, OUT pruned integer)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sluice.scheduled_jobs SET status = 'archived', updated_at = now()
    WHERE schedule_type = 'one_time' AND status IN ('completed', 'failed', 'cancelled')
      AND current_run_id IS NULL
      AND updated_at < now() - p_archive_after;
    GET DIAGNOSTICS archived = ROW_COUNT;
    DELETE FROM sluice.scheduled_job_runs r
    WHERE r.status IN ('completed', 'failed', 'cancelled')
      AND r.completed_at < now() - p_prune_after
      AND r.id <> (SELECT r2.id FROM sluice.scheduled_job_runs r2
                   WHERE r2.scheduled_job_id = r.scheduled_job_id
                   ORDER BY r2.created_at DESC LIMIT 1);
    GET DIAGNOSTICS pruned = ROW_COUNT;
END $$;

-- ===================================================================== enqueue_many

-- Bulk enqueue: one job per element of p_parameters (each a JSON object), all
-- of one type and brand, in one statement. The type and brand are checked as
-- for a single enqueue, whatever the number of elements (none too), and each
-- element's parameters as a single enqueue's, its position named in the error.
-- Returns how many were queued; one NOTIFY for the lot.
CREATE OR REPLACE FUNCTION sluice.enqueue_many(
    p_brand text, p_job_type text, p_parameters jsonb[], p_run_at timestamptz DEFAULT NULL,
    p_priority integer DEFAULT 0, p_trigger_source text DEFAULT 'api')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    b uuid := sluice.resolve_brand(p_brand);
    jt sluice.job_types;
    p jsonb;
    problems text[];
    i integer := 0;
    n integer;
BEGIN
    PERFORM sluice.check_run_at(p_run_at);
    SELECT * INTO jt FROM sluice.job_types WHERE name = p_job_type AND available;
    IF NOT FOUND THEN
        PERFORM sluice.raise_unknown_job_type(p_job_type);
    END IF;
    IF jt.brand_rule = 'required' AND b IS NULL THEN
        RAISE EXCEPTION 'job type ''%'' needs a brand', p_job_type
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'give one, or run it once without a brand in the foreground with `sluice run ' || p_job_type || '`';
    END IF;
    IF p_parameters IS NULL THEN
        RAISE EXCEPTION 'enqueue_many needs an array of parameter objects, not NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'ARRAY[]::jsonb[] queues nothing; each ''{}'' queues a job with the default parameters';
    END IF;
    FOREACH p IN ARRAY p_parameters LOOP
        i := i + 1;
        IF p IS NULL OR jsonb_typeof(p) <> 'object' THEN
            RAISE EXCEPTION 'invalid parameters for % (element %): parameters must be a JSON object, not %',
                p_job_type, i, CASE jsonb_typeof(p) WHEN 'array' THEN 'an array' WHEN 'string' THEN 'a string'
                                                    WHEN 'number' THEN 'a number' WHEN 'boolean' THEN 'a boolean'
                                                    WHEN 'null' THEN 'JSON null' ELSE 'NULL' END
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        problems := sluice.check_params(jt.param_schema, p);
        IF cardinality(problems) > 0 THEN
            RAISE EXCEPTION 'invalid parameters for % (element %): %', p_job_type, i,
                array_to_string(problems, '; ') USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    INSERT INTO sluice.scheduled_jobs (brand_id, job_type, parameters, next_run_at, priority, trigger_source)
    SELECT b, p_job_type, jt.default_params || x, coalesce(p_run_at, now()), coalesce(p_priority, 0),
           coalesce(p_trigger_source, 'api')
    FROM unnest(p_parameters) x;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM pg_notify('sluice_jobs', '');
    RETURN n;
END $$;
