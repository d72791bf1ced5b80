-- 202_truncate_keeps_the_rules.sql — TRUNCATE keeps the rules DELETE keeps.
--
-- TRUNCATE fires no row triggers, so two rules of deleting were skipped by it:
--
-- * Deleting jobs deletes their runs (006_queue_batches.sql, a statement
--   trigger on DELETE). TRUNCATE sluice.scheduled_jobs — or TRUNCATE
--   sluice.brands CASCADE, which truncates every job with the brands — left
--   every run behind, rows of jobs that no longer exist, which the views then
--   listed. Truncating the jobs now truncates the runs too.
-- * A brand whose jobs have a run in flight is not deleted
--   (184_brand_delete_waits_for_runs.sql). TRUNCATE sluice.brands CASCADE went
--   through, and those runs were stopped with nothing recorded while their
--   handlers still wrote the brands' rows. It now fails the same way (SQLSTATE
--   55006, object_in_use) when any brand's job has a run in flight, and
--   changes nothing.

CREATE FUNCTION sluice.truncate_runs_of_truncated_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE sluice.scheduled_job_runs;
    RETURN NULL;
END $$;

CREATE TRIGGER scheduled_jobs_truncate_runs AFTER TRUNCATE ON sluice.scheduled_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION sluice.truncate_runs_of_truncated_jobs();

CREATE FUNCTION sluice.brands_truncate_keeps_runs_in_flight() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    first record;
BEGIN
    SELECT x.job_type, x.id, x.scheduled_job_id, b.name, count(*) OVER () AS n INTO first
    FROM sluice.scheduled_jobs j
    JOIN sluice.scheduled_job_runs x ON x.id = j.current_run_id
    JOIN sluice.brands b ON b.id = j.brand_id
    WHERE x.status = 'running' AND x.lease_expires_at > clock_timestamp()
    ORDER BY x.started_at, x.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'the brands have %, the first % run % of job % (brand %); truncating the '
                        'brands deletes their jobs, and a run whose job is deleted is stopped with '
                        'nothing recorded',
            CASE WHEN first.n = 1 THEN 'a run in flight' ELSE first.n || ' runs in flight' END,
            first.job_type, first.id, first.scheduled_job_id,
            quote_literal(regexp_replace(first.name, '[\x01-\x1f\x7f-\x9f]', '?', 'g'))
            USING ERRCODE = 'object_in_use',
                  HINT = 'cancel their jobs (sluice jobs cancel JOB_ID…) or let the runs end, then '
                         'truncate again; `sluice runs --status running` lists them';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER brands_truncate_keeps_runs_in_flight BEFORE TRUNCATE ON sluice.brands
    FOR EACH STATEMENT EXECUTE FUNCTION sluice.brands_truncate_keeps_runs_in_flight();
