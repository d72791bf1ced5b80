-- 002_queue.sql — the job state machine, in SQL so that every client shares it:
-- enqueue (with validation and dedupe), claim, finish (retry policy and
-- freshness), heartbeat and rescue of runs whose worker was lost.
--
-- The daemon calls these; so can any application (`SELECT sluice.queue_one_time_job(…)`).
-- Cron arithmetic is the only piece that lives in C: finish takes the next cron
-- slot as an argument, and a recurring job whose slot is unknown (next_run_at
-- NULL, no run) is given one by the next worker that looks.

-- Levenshtein distance, for "did you mean" hints (fuzzystrmatch may not be installed).
CREATE OR REPLACE FUNCTION sluice.edit_distance(a text, b text) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    la int := length(a); lb int := length(b);
    prev int[]; cur int[]; i int; j int; cost int;
BEGIN
    IF la = 0 THEN RETURN lb; END IF;
    IF lb = 0 THEN RETURN la; END IF;
    prev := array(SELECT generate_series(0, lb));
    FOR i IN 1..la LOOP
        cur := array[i];
        FOR j IN 1..lb LOOP
            cost := CASE WHEN substr(a, i, 1) = substr(b, j, 1) THEN 0 ELSE 1 END;
            cur := cur || least(cur[j] + 1, prev[j + 1] + 1, prev[j] + cost);
        END LOOP;
        prev := cur;
    END LOOP;
    RETURN prev[lb + 1];
END $$;

-- The closest candidate to name, or NULL when none is close.
CREATE OR REPLACE FUNCTION sluice.nearest_name(name text, candidates text[]) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT c FROM unnest(candidates) c
    WHERE sluice.edit_distance(lower(name), lower(c)) <= greatest(2, length(name) / 3)
    ORDER BY sluice.edit_distance(lower(name), lower(c)), c LIMIT 1
$$;

-- A brand given by id or name; raises with the known names when it does not exist.
CREATE OR REPLACE FUNCTION sluice.resolve_brand(p_brand text) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
    b uuid; known text[];
BEGIN
    IF p_brand IS NULL OR p_brand = '' THEN RETURN NULL; END IF;
    IF p_brand ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        SELECT id INTO b FROM sluice.brands WHERE id = p_brand::uuid;
    ELSE
        SELECT id INTO b FROM sluice.brands WHERE name = p_brand;
    END IF;
    IF b IS NULL THEN
        SELECT array_agg(name ORDER BY name) INTO known FROM sluice.brands;
        RAISE EXCEPTION 'unknown brand ''%''', p_brand
            USING ERRCODE = 'no_data_found',
                  HINT = CASE WHEN known IS NULL THEN 'no brands exist yet: add one with `sluice brands add NAME`'
                              ELSE 'known brands: ' || array_to_string(known, ', ') END;
    END IF;
    RETURN b;
END $$;

-- Checks a job type and its parameters for an enqueue; raises a clear error.
-- Returns the parameters with the schema's defaults applied.
-- p_direct: a foreground run (`sluice run`, the REPL), which may omit the brand
-- whatever the type's rule, as the seed's legacy direct mode allowed.
CREATE OR REPLACE FUNCTION sluice.check_enqueue(p_job_type text, p_brand uuid, p_parameters jsonb,
                                                p_direct boolean DEFAULT false)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    jt sluice.job_types; known text[]; near text; problems text[];
BEGIN
    SELECT * INTO jt FROM sluice.job_types WHERE name = p_job_type AND available;
    IF NOT FOUND THEN
        SELECT array_agg(name ORDER BY name) INTO known FROM sluice.job_types WHERE available;
        near := sluice.nearest_name(p_job_type, known);
        RAISE EXCEPTION 'unknown job type ''%''%', p_job_type,
            CASE WHEN near IS NOT NULL THEN ' — did you mean ''' || near || '''?' ELSE '' END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = CASE WHEN known IS NULL THEN 'no job types are registered: start `sluice serve` or run any sluice command with your handlers once'
                              ELSE 'known job types: ' || array_to_string(known, ', ') END;
    END IF;
    IF p_parameters IS NULL OR jsonb_typeof(p_parameters) <> 'object' THEN
        RAISE EXCEPTION 'parameters must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jt.brand_rule = 'required' AND p_brand IS NULL AND NOT p_direct THEN
        RAISE EXCEPTION 'job type ''%'' needs a brand', p_job_type
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'give one, or run it once without a brand in the foreground with `sluice run ' || p_job_type || '`';
    END IF;
    IF to_regprocedure('sluice.check_params(jsonb,jsonb)') IS NOT NULL THEN
        EXECUTE 'SELECT sluice.check_params($1, $2)' INTO problems USING jt.param_schema, p_parameters;
        IF cardinality(problems) > 0 THEN
            RAISE EXCEPTION 'invalid parameters for %: %', p_job_type, array_to_string(problems, '; ')
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    RETURN jt.default_params || p_parameters;
END $$;

-- Queues a one-time job. Returns (job_id, created): created is false when a job
-- with the same dedupe key is already pending or running for this type and brand,
-- whose id is returned instead. Race-free under concurrent enqueues (unique index).
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
    LOOP
        INSERT INTO sluice.scheduled_jobs
            (brand_id, job_type, name, parameters, next_run_at, priority, dedupe_key,
             max_retries, trigger_source)
        VALUES (b, p_job_type, p_name, params, run_at, coalesce(p_priority, 0), p_dedupe_key,
                p_max_retries, coalesce(p_trigger_source, 'api'))
        ON CONFLICT (job_type, brand_id, dedupe_key)
            WHERE dedupe_key IS NOT NULL AND status IN ('active', 'paused')
            DO NOTHING
        RETURNING id INTO job_id;
        IF job_id IS NOT NULL THEN
            created := true;
            PERFORM pg_notify('sluice_jobs', '');
            RETURN;
        END IF;
        SELECT id INTO job_id FROM sluice.scheduled_jobs
        WHERE job_type = p_job_type AND brand_id IS NOT DISTINCT FROM b
          AND dedupe_key = p_dedupe_key AND status IN ('active', 'paused');
        IF job_id IS NOT NULL THEN
            created := false;
            RETURN;
        END IF;
        -- the holder finished between the two statements: try again
    END LOOP;
END $$;

-- The seed's entry point, kept by name: returns the job id.
CREATE OR REPLACE FUNCTION sluice.queue_one_time_job(
    p_brand text, p_job_type text, p_parameters jsonb DEFAULT '{}',
    p_run_at timestamptz DEFAULT NULL, p_priority integer DEFAULT 0,
    p_dedupe_key text DEFAULT NULL, p_max_retries integer DEFAULT NULL,
    p_trigger_source text DEFAULT 'api')
RETURNS uuid LANGUAGE sql AS $$
    SELECT job_id FROM sluice.enqueue(p_brand, p_job_type, p_parameters, p_run_at, p_priority,
                                      p_dedupe_key, p_max_retries, p_trigger_source)
$$;

CREATE OR REPLACE FUNCTION sluice.queue_one_time_job(
    p_brand uuid, p_job_type text, p_parameters jsonb DEFAULT '{}',
    p_run_at timestamptz DEFAULT NULL, p_priority integer DEFAULT 0,
    p_dedupe_key text DEFAULT NULL, p_max_retries integer DEFAULT NULL,
    p_trigger_source text DEFAULT 'api')
RETURNS uuid LANGUAGE sql AS $$
    SELECT sluice.queue_one_time_job(p_brand::text, p_job_type, p_parameters, p_run_at,
                                     p_priority, p_dedupe_key, p_max_retries, p_trigger_source)
$$;

-- What a claim hands the worker for each run it starts.
CREATE TYPE sluice.claimed_run AS (
    run_id           uuid,
    job_id           uuid,
    job_type         text,
    brand_id         uuid,
    parameters       jsonb,
    attempt_number   integer,
    checkpoint       jsonb,
    schedule_type    text,
    cron_expression  text,
    timezone         text,
    timeout_seconds  double precision,
    trigger_source   text
);

-- Starts runs for jobs the caller has locked: inserts the runs with a lease,
-- marks the jobs as running and their datasets as running.
CREATE OR REPLACE FUNCTION sluice.start_runs(p_worker uuid, p_jobs uuid[], p_lease_seconds double precision)
RETURNS SETOF sluice.claimed_run LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH runs AS (
        INSERT INTO sluice.scheduled_job_runs
            (scheduled_job_id, job_type, brand_id, attempt_number, status, trigger_source,
             worker_id, lease_expires_at, heartbeat_at, parameters, started_at)
        SELECT j.id, j.job_type, j.brand_id, j.attempts + 1, 'running', j.trigger_source,
               p_worker, now() + make_interval(secs => p_lease_seconds), now(), j.parameters,
               clock_timestamp()
        FROM sluice.scheduled_jobs j WHERE j.id = ANY (p_jobs)
        RETURNING id, scheduled_job_id, brand_id, job_type, attempt_number
    ), jobs AS (
        UPDATE sluice.scheduled_jobs j
        SET next_run_at = NULL, current_run_id = r.id, attempts = r.attempt_number,
            last_run_at = now(), run_count = j.run_count + 1, updated_at = now()
        FROM runs r WHERE j.id = r.scheduled_job_id
        RETURNING j.*
    ), ds AS (
        INSERT INTO sluice.dataset_status AS s
            (brand_id, dataset_key, last_status, last_attempt_at, last_run_id, source_job_id)
        SELECT DISTINCT ON (r.brand_id, d.dataset_key)
               r.brand_id, d.dataset_key, 'running', now(), r.id, r.scheduled_job_id
        FROM runs r JOIN sluice.job_type_datasets d ON d.job_type = r.job_type
        ORDER BY r.brand_id, d.dataset_key
        ON CONFLICT (brand_id, dataset_key) DO UPDATE
            SET last_status = 'running', last_attempt_at = now(),
                last_run_id = excluded.last_run_id, source_job_id = excluded.source_job_id,
                updated_at = now()
    )
    SELECT r.id, j.id, j.job_type, j.brand_id, j.parameters, r.attempt_number, j.checkpoint,
           j.schedule_type, j.cron_expression, j.timezone, t.timeout_seconds, j.trigger_source
    FROM runs r JOIN jobs j ON j.id = r.scheduled_job_id
    JOIN sluice.job_types t ON t.name = j.job_type
    JOIN unnest(p_jobs) WITH ORDINALITY AS o(id, n) ON o.id = j.id
    ORDER BY o.n; -- the order they were claimed in (priority, then due time)
END $$;

-- Claims up to p_limit due jobs (priority, then due time) that no other worker
-- holds, and starts a run for each. One statement, one round trip.
CREATE OR REPLACE FUNCTION sluice.claim_jobs(p_worker uuid, p_limit integer, p_lease_seconds double precision)
RETURNS SETOF sluice.claimed_run LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY SELECT * FROM sluice.start_runs(p_worker, ARRAY(
        SELECT id FROM sluice.scheduled_jobs
        WHERE status = 'active' AND next_run_at <= now()
        ORDER BY priority, next_run_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED), p_lease_seconds);
END $$;

-- Creates a one-time job and starts its run at once, for `sluice run` and the REPL
-- (the foreground modes; brand optional whatever the type's rule).
CREATE OR REPLACE FUNCTION sluice.start_direct_run(
    p_worker uuid, p_brand text, p_job_type text, p_parameters jsonb,
    p_trigger_source text, p_lease_seconds double precision)
RETURNS SETOF sluice.claimed_run LANGUAGE plpgsql AS $$
DECLARE
    b uuid := sluice.resolve_brand(p_brand);
    params jsonb;
    id uuid;
BEGIN
    params := sluice.check_enqueue(p_job_type, b, p_parameters, true);
    INSERT INTO sluice.scheduled_jobs (brand_id, job_type, parameters, next_run_at, trigger_source)
    VALUES (b, p_job_type, params, now(), p_trigger_source)
    RETURNING scheduled_jobs.id INTO id;
    RETURN QUERY SELECT * FROM sluice.start_runs(p_worker, ARRAY[id], p_lease_seconds);
END $$;

-- Puts freshness rows that runs marked running at their claim back as they
-- were (runs given back unstarted, or datasets a run reported as skipped): a
-- row the claim created is removed (the dataset was never run), others return
-- to failed (an error stands) or completed. p_keys NULL: every dataset.
CREATE OR REPLACE FUNCTION sluice.unclaim_datasets(p_runs uuid[], p_keys text[] DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    DELETE FROM sluice.dataset_status s
    WHERE s.last_run_id = ANY (p_runs) AND s.last_status = 'running'
      AND (p_keys IS NULL OR s.dataset_key = ANY (p_keys))
      AND s.last_success_at IS NULL AND s.error_message IS NULL;
    UPDATE sluice.dataset_status s
    SET last_status = CASE WHEN s.error_message IS NOT NULL THEN 'failed' ELSE 'completed' END,
        updated_at = now()
    WHERE s.last_run_id = ANY (p_runs) AND s.last_status = 'running'
      AND (p_keys IS NULL OR s.dataset_key = ANY (p_keys));
$$;

-- Ends runs and moves their jobs on, for a whole batch in one statement:
--   completed → one-time: completed; recurring: next cron slot, attempts reset
--   failed    → retryable and attempts left: due again after exponential backoff
--               with jitter; else one-time: failed (terminal), recurring: next slot
--   cancelled → the job is cancelled
-- A job paused or cancelled while its run was in flight keeps that status.
-- It also settles the freshness rows of each job type's datasets: explicit
-- per-dataset reports win ({"key": {"status": "completed"|"failed", "records": n,
-- "metadata": {}, "error": "…"}}); the others follow the run's outcome, with
-- result.records as the record count.
-- p_runs: a JSON array of {run_id, status, result, error, logs, retryable,
-- next_cron, datasets, handler_version, started_at and finished_at (epoch
-- seconds: when the run really started and ended; a claimed run can wait in the
-- worker's queue for a moment, and a batch is recorded after the runs end)}.
-- Runs no longer running (already rescued as lost) are left alone: their
-- job_status is NULL. Queue bookkeeping commits asynchronously (see
-- docs/architecture.md: a lost commit is healed by the lease).
CREATE OR REPLACE FUNCTION sluice.finish_runs(p_runs jsonb)
RETURNS TABLE (run_id uuid, job_status text) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    -- the ids as an array, so that the runs are found by primary key (a join
    -- against the JSON would be planned blind and could scan the whole table)
    ids uuid[] := ARRAY(SELECT (e ->> 'run_id')::uuid FROM jsonb_array_elements(p_runs) e);
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
        WHERE r.id = ANY (ids) AND r.id = i.run_id AND r.status = 'running'
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

-- One run: the same rules as finish_runs. Returns the job's new status, or NULL
-- when the run was no longer running.
CREATE OR REPLACE FUNCTION sluice.finish_run(
    p_run uuid, p_status text, p_result jsonb, p_error text, p_logs text,
    p_retryable boolean, p_next_cron timestamptz, p_datasets jsonb,
    p_handler_version text DEFAULT NULL)
RETURNS text LANGUAGE sql AS $$
    SELECT job_status FROM sluice.finish_runs(jsonb_build_array(jsonb_build_object(
        'run_id', p_run, 'status', p_status, 'result', p_result, 'error', p_error,
        'logs', p_logs, 'retryable', p_retryable, 'next_cron', p_next_cron,
        'datasets', p_datasets, 'handler_version', p_handler_version)))
$$;

-- Renews the leases of a worker's running runs: p_runs lists them (each an
-- index-free, HOT update by primary key); without it, every running run of the
-- worker. Returns how many it holds.
CREATE OR REPLACE FUNCTION sluice.heartbeat(p_worker uuid, p_lease_seconds double precision,
                                            p_runs uuid[] DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    UPDATE sluice.workers SET heartbeat_at = now() WHERE id = p_worker;
    UPDATE sluice.scheduled_job_runs
    SET lease_expires_at = now() + make_interval(secs => p_lease_seconds), heartbeat_at = now()
    WHERE status = 'running' AND worker_id = p_worker
      AND id = ANY (coalesce(p_runs, ARRAY(
          SELECT current_run_id FROM sluice.scheduled_jobs WHERE current_run_id IS NOT NULL)));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Fails every run whose lease expired (its worker died or lost the database) and
-- applies the retry policy to its job (an attempt is spent; the retry is due at once). Safe to call from any number of workers.
CREATE OR REPLACE FUNCTION sluice.rescue_lost_runs()
RETURNS TABLE (run_id uuid, job_status text) LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT x.id, x.lease_expires_at
             FROM sluice.scheduled_jobs j
             JOIN sluice.scheduled_job_runs x ON x.id = j.current_run_id
             WHERE j.current_run_id IS NOT NULL
               AND x.status = 'running' AND x.lease_expires_at < now()
             FOR UPDATE OF x SKIP LOCKED LOOP
        run_id := r.id;
        job_status := sluice.finish_run(r.id, 'failed', NULL,
            'worker lost: lease expired at ' ||
                to_char(r.lease_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            E'worker lost: lease expired\n', true, NULL, NULL);
        -- the job did nothing wrong: it is due again at once, not after a backoff
        UPDATE sluice.scheduled_jobs j SET next_run_at = now()
        FROM sluice.scheduled_job_runs x
        WHERE x.id = r.id AND j.id = x.scheduled_job_id
          AND j.status = 'active' AND j.next_run_at > now();
        RETURN NEXT;
    END LOOP;
END $$;

-- The daemon's one round trip per cycle: records the runs that ended since the
-- last cycle (finish_runs) and claims up to p_limit due jobs, in one transaction.
-- Returns the claimed runs.
CREATE OR REPLACE FUNCTION sluice.finish_and_claim(
    p_finished jsonb, p_worker uuid, p_limit integer, p_lease_seconds double precision)
RETURNS SETOF sluice.claimed_run LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_finished IS NOT NULL AND jsonb_array_length(p_finished) > 0 THEN
        PERFORM count(*) FROM sluice.finish_runs(p_finished);
    END IF;
    IF p_limit > 0 THEN
        RETURN QUERY SELECT * FROM sluice.claim_jobs(p_worker, p_limit, p_lease_seconds);
    END IF;
END $$;

-- Bulk enqueue: one job per element of p_parameters, all of one type and brand,
-- in one statement (each element is checked like a single enqueue). Returns how
-- many were queued; one NOTIFY for the lot.
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
    PERFORM sluice.check_enqueue(p_job_type, b, '{}'::jsonb || coalesce(p_parameters[1], '{}'))
    WHERE cardinality(p_parameters) > 0;
    SELECT * INTO jt FROM sluice.job_types WHERE name = p_job_type;
    IF to_regprocedure('sluice.check_params(jsonb,jsonb)') IS NOT NULL THEN
        FOREACH p IN ARRAY p_parameters LOOP
            i := i + 1;
            EXECUTE 'SELECT sluice.check_params($1, $2)' INTO problems USING jt.param_schema, p;
            IF cardinality(problems) > 0 THEN
                RAISE EXCEPTION 'invalid parameters for % (element %): %', p_job_type, i,
                    array_to_string(problems, '; ') USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
    END IF;
    INSERT INTO sluice.scheduled_jobs (brand_id, job_type, parameters, next_run_at, priority, trigger_source)
    SELECT b, p_job_type, jt.default_params || x, coalesce(p_run_at, now()), coalesce(p_priority, 0),
           coalesce(p_trigger_source, 'api')
    FROM unnest(p_parameters) x;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM pg_notify('sluice_jobs', '');
    RETURN n;
END $$;

-- Gives back runs a worker claimed but never started (it is shutting down): the
-- runs disappear as if never claimed, their jobs are due again at once, and
-- freshness rows they had marked running return to what they were.
CREATE OR REPLACE FUNCTION sluice.release_runs(p_runs uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    WITH gone AS (
        DELETE FROM sluice.scheduled_job_runs
        WHERE id = ANY (p_runs) AND status = 'running'
        RETURNING id, scheduled_job_id
    )
    UPDATE sluice.scheduled_jobs j
    SET current_run_id = NULL, attempts = greatest(j.attempts - 1, 0),
        run_count = greatest(j.run_count - 1, 0), updated_at = now(),
        next_run_at = CASE WHEN j.status IN ('active', 'paused') THEN now() END
    FROM gone g WHERE j.id = g.scheduled_job_id AND j.current_run_id = g.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM sluice.unclaim_datasets(p_runs);
    PERFORM pg_notify('sluice_jobs', '');
    RETURN n;
END $$;

-- Appends log lines of runs still in flight (the daemon flushes them every few
-- seconds, so `sluice show` follows a long run). p_logs: [{run_id, logs, from}]
-- where from is the byte length the run's logs must have for the lines to be the
-- next ones. Returns the run ids it appended to.
CREATE OR REPLACE FUNCTION sluice.append_logs(p_logs jsonb)
RETURNS SETOF uuid LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[] := ARRAY(SELECT (e ->> 'run_id')::uuid FROM jsonb_array_elements(p_logs) e);
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    UPDATE sluice.scheduled_job_runs r SET logs = r.logs || x.logs
    FROM jsonb_to_recordset(p_logs) AS x(run_id uuid, logs text, "from" bigint)
    WHERE r.id = ANY (ids) AND r.id = x.run_id AND r.status = 'running'
      AND octet_length(r.logs) = x."from"  -- in order, and never twice
    RETURNING r.id;
END $$;
