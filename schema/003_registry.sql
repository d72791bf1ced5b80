-- 003_registry.sql — syncing the handler registry into job_types and datasets,
-- so SQL clients and pages read what the handler files declare.

-- p_types: the JSON array sluice builds from its handlers (see
-- lua/sluice/runtime.lua registry_json): [{name, label, emoji, description,
-- brand_rule, param_schema, default_params, timeout_seconds, max_retries,
-- retry_base_seconds, retry_max_seconds, file, version, datasets: {key: {label,
-- max_age_seconds}}}], plus {name, failed: true} for files that fail to load
-- (left as they are). Types not in the list stay (jobs reference them) but are
-- marked unavailable unless p_partial. Returns the number of types synced.
CREATE OR REPLACE FUNCTION sluice.sync_registry(p_types jsonb, p_partial boolean DEFAULT false)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    t jsonb;
    d record;
    n integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('sluice.sync_registry'));
    FOR t IN SELECT * FROM jsonb_array_elements(p_types) LOOP
        IF (t ->> 'failed')::boolean THEN
            CONTINUE; -- its file fails to load where this sync came from: keep what we have
        END IF;
        INSERT INTO sluice.job_types AS jt
            (name, label, emoji, description, brand_rule, param_schema, default_params,
             timeout_seconds, max_retries, retry_base_seconds, retry_max_seconds,
             handler_file, handler_version, available, updated_at)
        VALUES (t ->> 'name', coalesce(t ->> 'label', t ->> 'name'), coalesce(t ->> 'emoji', ''),
                t ->> 'description', coalesce(t ->> 'brand_rule', 'optional'),
                coalesce(t -> 'param_schema', '{}'), coalesce(t -> 'default_params', '{}'),
                coalesce((t ->> 'timeout_seconds')::float8, 1800),
                coalesce((t ->> 'max_retries')::int, 3),
                coalesce((t ->> 'retry_base_seconds')::float8, 10),
                coalesce((t ->> 'retry_max_seconds')::float8, 3600),
                t ->> 'file', t ->> 'version', true, now())
        ON CONFLICT (name) DO UPDATE SET
            label = excluded.label, emoji = excluded.emoji, description = excluded.description,
            brand_rule = excluded.brand_rule, param_schema = excluded.param_schema,
            default_params = excluded.default_params, timeout_seconds = excluded.timeout_seconds,
            max_retries = excluded.max_retries, retry_base_seconds = excluded.retry_base_seconds,
            retry_max_seconds = excluded.retry_max_seconds, handler_file = excluded.handler_file,
            handler_version = excluded.handler_version, available = true, updated_at = now()
        WHERE (jt.label, jt.emoji, jt.description, jt.brand_rule, jt.param_schema,
               jt.default_params, jt.timeout_seconds, jt.max_retries, jt.retry_base_seconds,
               jt.retry_max_seconds, jt.handler_file, jt.handler_version, jt.available)
              IS DISTINCT FROM
              (excluded.label, excluded.emoji, excluded.description, excluded.brand_rule,
               excluded.param_schema, excluded.default_params, excluded.timeout_seconds,
               excluded.max_retries, excluded.retry_base_seconds, excluded.retry_max_seconds,
               excluded.handler_file, excluded.handler_version, true);
        FOR d IN SELECT key, value FROM jsonb_each(coalesce(t -> 'datasets', '{}')) LOOP
            INSERT INTO sluice.datasets AS ds (dataset_key, label, max_age_seconds, updated_at)
            VALUES (d.key, coalesce(d.value ->> 'label', d.key),
                    (d.value ->> 'max_age_seconds')::float8, now())
            ON CONFLICT (dataset_key) DO UPDATE SET
                label = excluded.label, max_age_seconds = excluded.max_age_seconds, updated_at = now()
            WHERE (ds.label, ds.max_age_seconds) IS DISTINCT FROM (excluded.label, excluded.max_age_seconds);
        END LOOP;
        DELETE FROM sluice.job_type_datasets
        WHERE job_type = t ->> 'name'
          AND NOT coalesce(t -> 'datasets', '{}') ? dataset_key;
        INSERT INTO sluice.job_type_datasets (job_type, dataset_key)
        SELECT t ->> 'name', k FROM jsonb_object_keys(coalesce(t -> 'datasets', '{}')) k
        ON CONFLICT DO NOTHING;
        n := n + 1;
    END LOOP;
    IF NOT p_partial THEN
        UPDATE sluice.job_types SET available = false, updated_at = now()
        WHERE available AND name NOT IN (SELECT e ->> 'name' FROM jsonb_array_elements(p_types) e);
    END IF;
    RETURN n;
END $$;
