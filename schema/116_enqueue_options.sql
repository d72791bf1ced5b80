-- 116_enqueue_options.sql — the SQL functions that queue jobs check a job's
-- options as `sluice queue`, `sluice schedule` and the REPL do.
--
-- An application that queues with plain SQL is to get the same checks and
-- errors as the CLI. The parameters, brand, type and due time were checked;
-- the other options were not:
--   priority        any integer was taken; the CLI takes -1000000 to 1000000;
--   max_retries     outside 0 to 1000 failed on the table's CHECK constraints,
--                   with a message naming a constraint and the whole row;
--   dedupe_key,     '' was taken and became a key like any other, which the
--   name            CLI and the REPL refuse;
--   trigger_source  a value other than scheduled, manual, api or repl failed
--                   on a CHECK constraint.
-- Each is now refused before anything is written, with SQLSTATE 22023
-- (invalid_parameter_value) and a message naming the option. NULL still means
-- the default for each. The constraints stay as they are.
--
-- The functions are those of 101_inflight_runs.sql (enqueue, enqueue_many)
-- and 097_finite_run_at.sql (schedule_job) with the check added.

-- NULL when the options are ones a job can be queued with, else why not.
CREATE FUNCTION sluice.job_options_problem(p_priority integer, p_max_retries integer,
                                           p_dedupe_key text, p_name text,
                                           p_trigger_source text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_priority NOT BETWEEN -1000000 AND 1000000
            THEN format('priority must be a whole number from -1000000 to 1000000, not %s', p_priority)
        WHEN p_max_retries NOT BETWEEN 0 AND 1000
            THEN format('max_retries must be a whole number from 0 to 1000, not %s', p_max_retries)
        WHEN p_dedupe_key = ''
            THEN 'dedupe_key must not be empty: give a key, or NULL for none'
        WHEN p_name = ''
            THEN 'name must not be empty: give a name, or NULL for none'
        WHEN p_trigger_source NOT IN ('scheduled', 'manual', 'api', 'repl')
            THEN format('trigger_source must be one of scheduled, manual, api, repl, not %L',
                        p_trigger_source)
    END
$$;

CREATE FUNCTION sluice.check_job_options(p_priority integer, p_max_retries integer,
                                         p_dedupe_key text, p_name text,
                                         p_trigger_source text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    problem text := sluice.job_options_problem(p_priority, p_max_retries, p_dedupe_key, p_name,
                                               p_trigger_source);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '%', problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
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
    PERFORM sluice.check_run_at(p_run_at);
    PERFORM sluice.check_job_options(p_priority, p_max_retries, p_dedupe_key, p_name,
                                     p_trigger_source);
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

CREATE OR REPLACE FUNCTION sluice.enqueue_many(
    p_brand text, p_job_type text, p_parameters jsonb[],
    p_run_at timestamptz DEFAULT NULL, p_priority integer DEFAULT 0,
    p_trigger_source text DEFAULT 'api')
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
    PERFORM sluice.check_job_options(p_priority, NULL, NULL, NULL, p_trigger_source);
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

CREATE OR REPLACE FUNCTION sluice.schedule_job(
    p_brand text, p_job_type text, p_cron text, p_timezone text DEFAULT 'UTC',
    p_parameters jsonb DEFAULT '{}', p_next_run_at timestamptz DEFAULT NULL,
    p_name text DEFAULT NULL, p_priority integer DEFAULT 0,
    p_max_retries integer DEFAULT NULL, p_trigger_source text DEFAULT 'scheduled')
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    b uuid := sluice.resolve_brand(p_brand);
    params jsonb := sluice.check_enqueue(p_job_type, b, coalesce(p_parameters, '{}'));
    id uuid;
BEGIN
    IF p_cron IS NULL OR btrim(p_cron) = '' THEN
        RAISE EXCEPTION 'a recurring job needs a cron expression' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM sluice.check_run_at(p_next_run_at);
    PERFORM sluice.check_job_options(p_priority, p_max_retries, NULL, p_name, p_trigger_source);
    INSERT INTO sluice.scheduled_jobs
        (brand_id, job_type, name, schedule_type, cron_expression, timezone, parameters,
         next_run_at, priority, max_retries, trigger_source)
    VALUES (b, p_job_type, p_name, 'recurring', btrim(p_cron), coalesce(p_timezone, 'UTC'), params,
            p_next_run_at, coalesce(p_priority, 0), p_max_retries, coalesce(p_trigger_source, 'scheduled'))
    RETURNING scheduled_jobs.id INTO id;
    PERFORM pg_notify('sluice_jobs', '');
    RETURN id;
END $$;
