-- 117_retention_arguments.sql — apply_retention() takes NULL for its default
-- and refuses a negative age.
--
-- apply_retention(NULL, NULL) compared every job and run with NULL, so it
-- archived and pruned nothing and returned (0, 0) as if nothing were old
-- enough; the other functions of the SQL API read NULL as the default. A
-- negative interval made "ended longer than -1 day ago" true of everything
-- that ended, and of runs that end in the future. NULL now means the default
-- (7 and 30 days), and a negative age is refused with SQLSTATE 22023 before
-- anything changes. The rest is 101_inflight_runs.sql's function unchanged.

CREATE OR REPLACE FUNCTION sluice.apply_retention(
    p_archive_after interval DEFAULT '7 days', p_prune_after interval DEFAULT '30 days',
    OUT archived integer, OUT pruned integer)
LANGUAGE plpgsql AS $$
DECLARE
    archive_after interval := coalesce(p_archive_after, '7 days');
    prune_after interval := coalesce(p_prune_after, '30 days');
BEGIN
    IF archive_after < interval '0' OR prune_after < interval '0' THEN
        RAISE EXCEPTION 'apply_retention needs ages of zero or more, not %',
            CASE WHEN archive_after < interval '0' THEN archive_after ELSE prune_after END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'give intervals such as ''7 days'' and ''30 days'', or NULL for those defaults';
    END IF;
    UPDATE sluice.scheduled_jobs SET status = 'archived', updated_at = now()
    WHERE schedule_type = 'one_time' AND status IN ('completed', 'failed', 'cancelled')
      AND current_run_id IS NULL
      AND updated_at < now() - archive_after;
    GET DIAGNOSTICS archived = ROW_COUNT;
    DELETE FROM sluice.scheduled_job_runs r
    WHERE r.status IN ('completed', 'failed', 'cancelled')
      AND r.completed_at < now() - prune_after
      AND r.id <> (SELECT r2.id FROM sluice.scheduled_job_runs r2
                   WHERE r2.scheduled_job_id = r.scheduled_job_id
                   ORDER BY r2.created_at DESC LIMIT 1);
    GET DIAGNOSTICS pruned = ROW_COUNT;
END $$;
