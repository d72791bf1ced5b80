-- 004_views.sql — the Pipeline Manager's data as plain SQL: views that the CLI
-- (`sluice health`, `runs`, `jobs`, `show`) and any page or psql session read.
--
--   sluice.dataset_health        one row per (brand, dataset): fresh | stale | never
--                                | failing | running, age against max age, last error
--   sluice.recent_runs           runs with their job type, brand, duration, a
--                                parameters preview and a log summary
--   sluice.jobs_overview         jobs with their schedule, next run, attempts, last run
--   sluice.job_type_freshness()  the state of one job type's datasets for one scope
--   sluice.needs_refresh()       true when any of them is stale, never run or failing
--
-- Nothing here writes; the state machine (002_queue.sql) keeps dataset_status.

-- ===================================================================== helpers

-- A dataset's state from its freshness row (NULLs when there is none) and the
-- max age its handlers declare (NULL: it never goes stale).
--   running  a run that keeps it is in flight
--   failing  the last run that kept it failed
--   never    no run has ever completed it
--   stale    completed, but longer ago than max age
--   fresh    completed within max age
CREATE OR REPLACE FUNCTION sluice.freshness_state(p_last_status text, p_last_success_at timestamptz,
                                                  p_max_age_seconds double precision)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_last_status = 'running' THEN 'running'
        WHEN p_last_status = 'failed' THEN 'failing'
        WHEN p_last_success_at IS NULL THEN 'never'
        WHEN p_max_age_seconds IS NOT NULL
             AND now() - p_last_success_at > make_interval(secs => p_max_age_seconds) THEN 'stale'
        ELSE 'fresh'
    END
$$;

-- The last p_lines non-empty lines of a run's log, joined by newlines.
CREATE OR REPLACE FUNCTION sluice.log_tail(p_logs text, p_lines integer DEFAULT 3)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(line, E'\n' ORDER BY n)
    FROM (SELECT line, n, row_number() OVER (ORDER BY n DESC) AS from_end
          FROM regexp_split_to_table(coalesce(p_logs, ''), E'\n') WITH ORDINALITY AS l(line, n)
          WHERE btrim(line) <> '') t
    WHERE from_end <= p_lines
$$;

-- A one-line summary of a run: its error when it failed or was cancelled, else
-- its last log line (without the time stamp run logs start with).
CREATE OR REPLACE FUNCTION sluice.run_summary(p_status text, p_error text, p_logs text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_status IN ('failed', 'cancelled') AND p_error IS NOT NULL
            THEN split_part(p_error, E'\n', 1)
        ELSE regexp_replace(sluice.log_tail(p_logs, 1), '^\d\d:\d\d:\d\d(\.\d+)? ', '')
    END
$$;

-- "search_queries=[…], max_posts=100": the parameters that differ from the job
-- type's defaults, by name, strings unquoted, cut at 200 characters. '' when
-- every parameter has its default value.
CREATE OR REPLACE FUNCTION sluice.params_preview(p_parameters jsonb, p_defaults jsonb DEFAULT '{}')
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN char_length(s) > 200 THEN left(s, 199) || '…' ELSE s END
    FROM (SELECT coalesce(string_agg(
                     key || '=' || CASE jsonb_typeof(value) WHEN 'string' THEN value #>> '{}'
                                                            ELSE value::text END,
                     ', ' ORDER BY key), '') AS s
          FROM jsonb_each(CASE WHEN jsonb_typeof(p_parameters) = 'object'
                               THEN p_parameters ELSE '{}'::jsonb END)
          WHERE NOT coalesce(p_defaults, '{}'::jsonb) @> jsonb_build_object(key, value)) p
$$;

-- ===================================================================== freshness

-- Every (scope, dataset) pair sluice expects to be kept fresh, with its state.
-- Datasets are those of available job types. Scopes: every brand, for every
-- dataset (a brand with no row yet shows as never); the platform scope (brand
-- NULL) for a dataset once it has a platform row or an active or paused
-- platform job keeps it, and for every dataset while no brands exist.
CREATE OR REPLACE VIEW sluice.dataset_health AS
WITH registered AS (
    SELECT d.dataset_key, d.label, d.max_age_seconds,
           array_agg(x.job_type ORDER BY x.job_type) AS job_types
    FROM sluice.datasets d
    JOIN sluice.job_type_datasets x ON x.dataset_key = d.dataset_key
    JOIN sluice.job_types t ON t.name = x.job_type AND t.available
    GROUP BY d.dataset_key, d.label, d.max_age_seconds
), scopes AS (
    SELECT b.id AS brand_id, r.dataset_key
    FROM sluice.brands b CROSS JOIN registered r
    UNION ALL
    SELECT NULL::uuid, r.dataset_key
    FROM registered r
    WHERE NOT EXISTS (SELECT 1 FROM sluice.brands)
       OR EXISTS (SELECT 1 FROM sluice.dataset_status s
                  WHERE s.brand_id IS NULL AND s.dataset_key = r.dataset_key)
       OR EXISTS (SELECT 1 FROM sluice.scheduled_jobs j
                  JOIN sluice.job_type_datasets x ON x.job_type = j.job_type
                  WHERE j.brand_id IS NULL AND x.dataset_key = r.dataset_key
                    AND j.status IN ('active', 'paused'))
)
SELECT sc.brand_id,
       b.name AS brand_name,
       r.dataset_key,
       r.label AS dataset_label,
       r.job_types,
       sluice.freshness_state(s.last_status, s.last_success_at, r.max_age_seconds) AS state,
       sluice.freshness_state(s.last_status, s.last_success_at, r.max_age_seconds)
           IN ('fresh', 'running') AS healthy,
       r.max_age_seconds,
       extract(epoch FROM now() - s.last_success_at)::double precision AS age_seconds,
       s.last_success_at + make_interval(secs => r.max_age_seconds) AS fresh_until,
       s.last_status,
       s.last_attempt_at,
       s.last_success_at,
       s.last_run_id,
       s.source_job_id,
       s.records_affected,
       s.metadata,
       s.error_message AS last_error,
       s.updated_at
FROM scopes sc
JOIN registered r ON r.dataset_key = sc.dataset_key
LEFT JOIN sluice.brands b ON b.id = sc.brand_id
LEFT JOIN sluice.dataset_status s
       ON s.dataset_key = sc.dataset_key AND s.brand_id IS NOT DISTINCT FROM sc.brand_id;

-- The datasets one job type keeps, with their state for one scope (p_brand
-- NULL: the platform scope), whether or not a row exists yet.
CREATE OR REPLACE FUNCTION sluice.job_type_freshness(p_job_type text, p_brand uuid)
RETURNS TABLE (dataset_key text, dataset_label text, state text,
               max_age_seconds double precision, last_success_at timestamptz,
               fresh_until timestamptz, last_run_id uuid, last_error text)
LANGUAGE sql STABLE AS $$
    SELECT d.dataset_key, d.label,
           sluice.freshness_state(s.last_status, s.last_success_at, d.max_age_seconds),
           d.max_age_seconds, s.last_success_at,
           s.last_success_at + make_interval(secs => d.max_age_seconds),
           s.last_run_id, s.error_message
    FROM sluice.job_type_datasets x
    JOIN sluice.datasets d ON d.dataset_key = x.dataset_key
    LEFT JOIN sluice.dataset_status s
           ON s.dataset_key = d.dataset_key AND s.brand_id IS NOT DISTINCT FROM p_brand
    WHERE x.job_type = p_job_type
    ORDER BY d.dataset_key
$$;

-- True when a job of this type for this brand (name or id; NULL: platform)
-- would refresh something: one of its datasets is stale, never run or failing.
-- Raises for an unknown brand. False for a type that keeps no datasets.
CREATE OR REPLACE FUNCTION sluice.needs_refresh(p_brand text, p_job_type text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM sluice.job_type_freshness(p_job_type, sluice.resolve_brand(p_brand)) f
                   WHERE f.state IN ('stale', 'never', 'failing'))
$$;

-- ===================================================================== runs and jobs

-- Every run with what a recent-runs panel shows. Read it newest first with
-- ORDER BY created_at DESC (the runs' (job_type, brand_id, created_at) index
-- serves a panel of one type); the summary columns are computed only for the
-- rows a LIMIT keeps.
CREATE OR REPLACE VIEW sluice.recent_runs AS
SELECT r.id AS run_id,
       r.scheduled_job_id AS job_id,
       r.job_type,
       coalesce(t.label, r.job_type) AS job_label,
       coalesce(t.emoji, '') AS emoji,
       r.brand_id,
       b.name AS brand_name,
       r.status,
       r.attempt_number,
       coalesce(j.max_retries, t.max_retries, 3) AS max_retries,
       r.trigger_source,
       j.schedule_type,
       r.created_at,
       r.started_at,
       r.completed_at,
       extract(epoch FROM coalesce(r.completed_at,
                                   CASE WHEN r.status = 'running' THEN now() END)
                          - r.started_at)::double precision AS duration_seconds,
       r.parameters,
       sluice.params_preview(r.parameters, t.default_params) AS params_preview,
       r.error_message,
       sluice.log_tail(r.logs, 3) AS log_tail,
       sluice.run_summary(r.status, r.error_message, r.logs) AS log_summary,
       r.handler_version,
       r.worker_id,
       r.lease_expires_at
FROM sluice.scheduled_job_runs r
JOIN sluice.scheduled_jobs j ON j.id = r.scheduled_job_id
LEFT JOIN sluice.job_types t ON t.name = r.job_type
LEFT JOIN sluice.brands b ON b.id = r.brand_id;

-- Every job with its schedule, next run, attempts and last run.
CREATE OR REPLACE VIEW sluice.jobs_overview AS
SELECT j.id AS job_id,
       j.job_type,
       coalesce(t.label, j.job_type) AS job_label,
       coalesce(t.emoji, '') AS emoji,
       j.brand_id,
       b.name AS brand_name,
       j.name,
       j.schedule_type,
       j.cron_expression,
       j.timezone,
       CASE WHEN j.schedule_type = 'one_time' THEN 'one-time'
            ELSE j.cron_expression || ' (' || j.timezone || ')' END AS schedule,
       j.status,
       j.next_run_at,
       j.priority,
       j.attempts,
       coalesce(j.max_retries, t.max_retries, 3) AS max_retries,
       j.run_count,
       j.last_run_at,
       j.last_error,
       j.current_run_id,
       lr.id AS last_run_id,
       lr.status AS last_run_status,
       j.dedupe_key,
       j.trigger_source,
       j.parameters,
       sluice.params_preview(j.parameters, t.default_params) AS params_preview,
       j.created_at,
       j.updated_at
FROM sluice.scheduled_jobs j
LEFT JOIN sluice.job_types t ON t.name = j.job_type
LEFT JOIN sluice.brands b ON b.id = j.brand_id
LEFT JOIN LATERAL (SELECT r.id, r.status FROM sluice.scheduled_job_runs r
                   WHERE r.scheduled_job_id = j.id
                   ORDER BY r.created_at DESC, r.id LIMIT 1) lr ON true;
