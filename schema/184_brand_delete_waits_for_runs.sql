-- 184_brand_delete_waits_for_runs.sql — a brand whose jobs have a run in
-- flight is not deleted.
--
-- Deleting a brand deletes its jobs (ON DELETE CASCADE), and deleting a job
-- deletes its runs (006_queue_batches.sql). A run in flight whose brand was
-- deleted went on until its worker's next lease renewal said its job was
-- gone, and was then stopped with nothing recorded: meanwhile its handler's
-- writes of the brand's rows (competitors, ads, reviews) failed on their
-- foreign keys, part of what it had paid a service for was stored and then
-- deleted, and no run, error or log said what had happened.
--
-- A DELETE of such a brand now fails (SQLSTATE 55006, object_in_use) and
-- changes nothing: the message names the runs, the hint says to cancel their
-- jobs (each run then ends recorded as cancelled) or let them end, then delete
-- the brand again. A run whose lease has expired is not in flight (its worker
-- is gone; a rescue would fail it) and does not hold the brand. Deleting a job
-- itself (DELETE FROM sluice.scheduled_jobs) still stops its run as before.
--
-- The brand's jobs are locked before the runs are read, so a claim of one of
-- them that is under way is waited for and its run seen; a claim that would
-- start afterwards skips them (FOR UPDATE SKIP LOCKED), and the deletion, which
-- locks them anyway, keeps them locked until it commits.

CREATE FUNCTION sluice.brands_keep_runs_in_flight() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    listed text[] := '{}';
    -- no control character of a name from before the rule (097) reaches a terminal
    shown text := regexp_replace(OLD.name, '[\x01-\x1f\x7f-\x9f]', '?', 'g');
    r record;
BEGIN
    PERFORM 1 FROM sluice.scheduled_jobs j WHERE j.brand_id = OLD.id FOR UPDATE;
    FOR r IN
        SELECT x.id, x.job_type, x.scheduled_job_id
        FROM sluice.scheduled_jobs j
        JOIN sluice.scheduled_job_runs x ON x.scheduled_job_id = j.id
        WHERE j.brand_id = OLD.id AND x.status = 'running' AND x.lease_expires_at > clock_timestamp()
        ORDER BY x.started_at, x.id
    LOOP
        n := n + 1;
        IF n <= 5 THEN
            listed := listed || format('%s run %s of job %s', r.job_type, r.id, r.scheduled_job_id);
        END IF;
    END LOOP;
    IF n > 0 THEN
        RAISE EXCEPTION 'brand % has %: %; deleting the brand deletes its jobs, and a run whose job is '
                        'deleted is stopped with nothing recorded',
            quote_literal(shown),
            CASE WHEN n = 1 THEN 'a run in flight' ELSE n || ' runs in flight' END,
            array_to_string(listed, ', ') || CASE WHEN n > 5 THEN format(' and %s more', n - 5) ELSE '' END
            USING ERRCODE = 'object_in_use',
                  HINT = 'cancel its job' || CASE WHEN n = 1 THEN '' ELSE 's' END
                         || ' (sluice jobs cancel JOB_ID…) or let the run' || CASE WHEN n = 1 THEN '' ELSE 's' END
                         || ' end, then delete the brand; `sluice runs --brand '
                         -- the name quoted for a shell; its id if the name was changed above
                         || CASE WHEN shown = OLD.name THEN '''' || replace(OLD.name, '''', '''\''''') || ''''
                                 ELSE OLD.id::text END
                         || ' --status running` lists the runs';
    END IF;
    RETURN OLD;
END $$;

CREATE TRIGGER brands_keep_runs_in_flight BEFORE DELETE ON sluice.brands
    FOR EACH ROW EXECUTE FUNCTION sluice.brands_keep_runs_in_flight();
