-- 119_enqueue_path.sql — queueing one job costs Postgres less, with the same
-- checks, messages and SQLSTATEs.
--
-- Measured with pg_stat_statements during W2 (bench/), one
-- queue_one_time_job() of a no-op job took about 1 ms of backend time besides
-- its commit, the INSERT a quarter of it. The rest was the way the checks were
-- called:
--   check_enqueue  called check_params() through EXECUTE (a guard from before
--                  090_params_check.sql existed), so the statement was parsed
--                  and planned on every call, and planning an IMMUTABLE call
--                  with known arguments ran the whole check there: ~0.23 ms;
--   enqueue        ran check_run_at() and check_job_options() with PERFORM,
--                  a full query through SPI each and a call of a plpgsql
--                  function, to find nothing wrong: ~0.16 ms together;
--   queue_one_time_job
--                  was a SQL function selecting FROM enqueue(), which
--                  Postgres cannot inline: its body was parsed and planned
--                  again for every statement calling it: ~0.17 ms.
-- Now check_params() is called directly; the problem functions those checks
-- wrap are evaluated as plain expressions, and the raising checks are called
-- only when one has found something, so the messages still live in one place;
-- and queue_one_time_job() is a single expression Postgres inlines into the
-- calling statement. run_at_problem() and job_options_problem() are marked
-- STABLE, as the format() they call is: declared IMMUTABLE, Postgres would not
-- inline them and planned each call's query anew (and run_at_problem's text
-- does depend on the session's TimeZone and DateStyle). A no-op job's
-- enqueue takes about half the backend time it did (docs/architecture.md,
-- "Enqueueing").
--
-- The functions are otherwise those of 002_queue.sql (check_enqueue,
-- queue_one_time_job) and 116_enqueue_options.sql (enqueue). enqueue_many()
-- and schedule_job() keep their PERFORMs: they run once for a whole batch or
-- a schedule.

ALTER FUNCTION sluice.run_at_problem(timestamptz) STABLE;
ALTER FUNCTION sluice.job_options_problem(integer, integer, text, text, text) STABLE;

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
    problems := sluice.check_params(jt.param_schema, p_parameters);
    IF cardinality(problems) > 0 THEN
        RAISE EXCEPTION 'invalid parameters for %: %', p_job_type, array_to_string(problems, '; ')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jt.default_params || p_parameters;
END $$;

CREATE OR REPLACE FUNCTION sluice.enqueue(
    p_brand text, p_job_type text, p_parameters jsonb DEFAULT '{}',
    p_run_at timestamptz DEFAULT NULL, p_priority integer DEFAULT 0,
    p_dedupe_key text DEFAULT NULL, p_max_retries integer DEFAULT NULL,
    p_trigger_source text DEFAULT 'api', p_name text DEFAULT NULL,
    OUT job_id uuid, OUT created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    b uuid := sluice.resolve_brand(p_brand);
    params jsonb := sluice.check_enqueue(p_job_type, b, coalesce(p_parameters, '{}'));
    run_at timestamptz := coalesce(p_run_at, now());
BEGIN
    IF sluice.run_at_problem(p_run_at) IS NOT NULL THEN
        PERFORM sluice.check_run_at(p_run_at);
    END IF;
    IF sluice.job_options_problem(p_priority, p_max_retries, p_dedupe_key, p_name,
                                  p_trigger_source) IS NOT NULL THEN
        PERFORM sluice.check_job_options(p_priority, p_max_retries, p_dedupe_key, p_name,
                                         p_trigger_source);
    END IF;
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

-- One expression over enqueue(), which Postgres inlines into the statement
-- that calls it (a SELECT … FROM enqueue() body is not inlined).
CREATE OR REPLACE FUNCTION sluice.queue_one_time_job(
    p_brand text, p_job_type text, p_parameters jsonb DEFAULT '{}',
    p_run_at timestamptz DEFAULT NULL, p_priority integer DEFAULT 0,
    p_dedupe_key text DEFAULT NULL, p_max_retries integer DEFAULT NULL,
    p_trigger_source text DEFAULT 'api')
RETURNS uuid LANGUAGE sql AS $$
    SELECT (sluice.enqueue(p_brand, p_job_type, p_parameters, p_run_at, p_priority,
                           p_dedupe_key, p_max_retries, p_trigger_source)).job_id
$$;
CREATE OR REPLACE FUNCTION sluice.queue_one_time_job(
    p_brand uuid, p_job_type text, p_parameters jsonb DEFAULT '{}',
    p_run_at timestamptz DEFAULT NULL, p_priority integer DEFAULT 0,
    p_dedupe_key text DEFAULT NULL, p_max_retries integer DEFAULT NULL,
    p_trigger_source text DEFAULT 'api')
RETURNS uuid LANGUAGE sql AS $$
    SELECT (sluice.enqueue(p_brand::text, p_job_type, p_parameters, p_run_at, p_priority,
                           p_dedupe_key, p_max_retries, p_trigger_source)).job_id
$$;
