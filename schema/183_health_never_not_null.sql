-- 183_health_never_not_null.sql — `healthy` is false, not NULL, for a dataset
-- never kept.
--
-- dataset_health's `healthy` was `state = 'fresh' OR (last_status = 'running'
-- AND not stuck)`. A scope with no dataset_status row yet (state "never") has
-- a NULL last_status, so the second term was NULL and `false OR NULL` is NULL:
-- a page or monitor reading `WHERE NOT healthy` left out exactly the gaps
-- `sluice health --check` counts as unhealthy. It is now false for them.
-- Only the `healthy` expression changes.

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
       coalesce(sluice.freshness_state(s.last_status, s.last_success_at, r.max_age_seconds) = 'fresh'
                OR (s.last_status = 'running' AND k.stuck IS NULL), false) AS healthy,
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
       s.updated_at,
       k.stuck
FROM scopes sc
JOIN registered r ON r.dataset_key = sc.dataset_key
LEFT JOIN sluice.brands b ON b.id = sc.brand_id
LEFT JOIN sluice.dataset_status s
       ON s.dataset_key = sc.dataset_key AND s.brand_id IS NOT DISTINCT FROM sc.brand_id
LEFT JOIN sluice.scheduled_job_runs run
       ON s.last_status = 'running' AND run.id = s.last_run_id
LEFT JOIN LATERAL (
    SELECT CASE
        WHEN s.last_status IS DISTINCT FROM 'running' THEN NULL
        WHEN s.last_run_id IS NOT NULL AND run.status IS DISTINCT FROM 'running' THEN
            format('its run %s is no longer in flight (%s), yet the dataset was not settled',
                   s.last_run_id, coalesce(run.status, 'deleted'))
        WHEN run.lease_expires_at < now() - interval '1 minute' THEN
            format('its run''s lease expired at %s and no worker has failed it: is any worker '
                   'running and reaching the database?',
                   to_char(run.lease_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
        WHEN r.max_age_seconds IS NOT NULL
             AND now() - s.last_attempt_at > make_interval(secs => r.max_age_seconds) THEN
            format('running since %s, longer than the dataset''s max age (%s s)',
                   to_char(s.last_attempt_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                   r.max_age_seconds)
    END AS stuck
) k ON true;
