-- 097_finite_run_at.sql — a job is due at a real point in time, and a brand's
-- name is one people can type and read back.
--
-- enqueue(), enqueue_many() and schedule_job() took any timestamptz for when a
-- job is due, 'infinity' and '-infinity' among them. A job due at
-- +/-infinity broke every view that subtracts now() from next_run_at ("cannot
-- subtract infinite timestamps"), so `sluice jobs` and `sluice show` failed for
-- everyone. They now refuse a non-finite time with a clear error (the CLI
-- refuses the words before they get here). Rows already holding one are left as
-- they are: the CLI's views print such a time without subtracting it.
--
-- Brands: names that read as something else are refused on insert and rename
-- (rows already there are kept): a name with white space at either end (" Acme"
-- next to "Acme"), with control characters (new lines, tabs, escapes), one that
-- starts with '-' (an option on a command line), "(platform)" (the platform
-- scope in the tables) and one that is a UUID (`--brand <uuid>` means the brand
-- with that id). There is no SQL function that adds brands, so a trigger
-- applies the rule, brand_name_problem(), to every insert; `sluice brands add`
-- applies the same one before it connects.
--
-- The functions are those of 002_queue.sql and 005_lifecycle.sql with the check
-- added.

-- NULL when t is a time a job can be due at, else why not.
CREATE FUNCTION sluice.run_at_problem(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN t IS NOT NULL AND NOT isfinite(t)
                THEN format('a job must be due at a real time, not %s', t) END
$$;

CREATE FUNCTION sluice.check_run_at(t timestamptz) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    problem text := sluice.run_at_problem(t);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '%', problem USING ERRCODE = 'invalid_parameter_value',
            HINT = 'give a timestamp such as 2026-12-01 09:00:00+00, or NULL for now';
    END IF;
END $$;

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

CREATE OR REPLACE FUNCTION sluice.schedule_job(
    p_brand text, p_job_type text, p_cron text, p_timezone text DEFAULT 'UTC',
    p_parameters jsonb DEFAULT '{}', p_next_run_at timestamptz DEFAULT NULL,
    p_name text DEFAULT NULL, p_priority integer DEFAULT 0, p_max_retries integer DEFAULT NULL,
    p_trigger_source text DEFAULT 'scheduled')
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
    INSERT INTO sluice.scheduled_jobs
        (brand_id, job_type, name, schedule_type, cron_expression, timezone, parameters,
         next_run_at, priority, max_retries, trigger_source)
    VALUES (b, p_job_type, p_name, 'recurring', btrim(p_cron), coalesce(p_timezone, 'UTC'), params,
            p_next_run_at, coalesce(p_priority, 0), p_max_retries, coalesce(p_trigger_source, 'scheduled'))
    RETURNING scheduled_jobs.id INTO id;
    PERFORM pg_notify('sluice_jobs', '');
    RETURN id;
END $$;

-- NULL when name can be a brand's, else why not (`sluice brands add` says the same).
CREATE FUNCTION sluice.brand_name_problem(name text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN name IS NULL OR btrim(name, E' \t\n\r\f\v') = '' THEN
            'a brand''s name cannot be empty or only spaces'
        WHEN name <> btrim(name, E' \t\n\r\f\v') THEN
            'a brand''s name cannot start or end with white space'
        WHEN name ~ '[\x01-\x1f\x7f-\x9f]' THEN
            'a brand''s name cannot contain control characters (new lines, tabs, escapes)'
        WHEN name LIKE '-%' THEN
            'a brand''s name cannot start with ''-'' (it would read as an option)'
        WHEN lower(name) = '(platform)' THEN
            'a brand cannot be named (platform): that is how jobs without a brand are shown'
        WHEN name ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
            'a brand''s name cannot be a UUID (--brand takes a UUID as a brand''s id)'
    END
$$;

CREATE FUNCTION sluice.brands_check_name() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    problem text;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.name IS NOT DISTINCT FROM OLD.name THEN
        RETURN NEW; -- a name already there is kept
    END IF;
    problem := sluice.brand_name_problem(NEW.name);
    IF problem IS NOT NULL THEN
        -- the name as given, but no control character reaches a terminal
        RAISE EXCEPTION '%: %', problem,
            quote_literal(regexp_replace(NEW.name, '[\x01-\x1f\x7f-\x9f]', '?', 'g'))
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER brands_check_name BEFORE INSERT OR UPDATE OF name ON sluice.brands
    FOR EACH ROW EXECUTE FUNCTION sluice.brands_check_name();
