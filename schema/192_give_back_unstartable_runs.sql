-- 192_give_back_unstartable_runs.sql — a claimed run whose handler this worker
-- no longer has goes back to its job, as if never claimed.
--
-- A worker claims only jobs of the types it has handlers for
-- (141_claim_known_types.sql), but a handler file removed between a claim and
-- the run's start leaves the worker holding a run it cannot start. It recorded
-- that run as a failed attempt ("unknown job type …"): an attempt spent on a
-- job that never ran, and with max_retries 0 the job failed for good. Now the
-- worker gives such a run back with the cycle that follows, and the job is due
-- again at once for a worker that has the handler (this one no longer claims
-- the type).
--
--   give_back_runs(worker, runs)
--                    gives back those of `runs` running under `worker` as
--                    release_runs() gives back runs claimed and never
--                    started: the run disappears as if never claimed, its
--                    job is due again at once, the attempt and the run count
--                    it took are returned. Returns each run given back with
--                    its job. A run no longer running there (a rescue failed
--                    it after its lease ran out, its job was deleted) stays.
--   release_unheld_runs(worker, held)
--                    restated over give_back_runs(), as before otherwise
--                    (191_release_unheld_runs.sql)
--   finish_and_claim_runs(finished, worker, limit, lease_seconds, types,
--                         decisions, resent, give_back)
--                    first gives back the runs of `give_back` (NULL or empty:
--                    none, and no work), one row each before the others:
--                    run_id and, for one given back, decision (what its job
--                    is now: "due again at once, no attempt spent", or the
--                    job's status when it is not active), else unrecorded:
--                    the run's status, or 'gone' when it no longer exists (a
--                    call whose reply was lost gave it back, or its job was
--                    deleted). Either column is set whatever `decisions` says,
--                    so no such row reads as a claim. A call that gave back a
--                    run commits durably, like a claim: the worker forgets the
--                    run once answered. The rest is the call of
--                    190_outcomes_recorded_already.sql, unchanged.
--   finish_and_claim_runs(7 arguments)
--                    restated over the new one, giving back none, for a
--                    worker of the previous version.

CREATE FUNCTION sluice.give_back_runs(p_worker uuid, p_runs uuid[])
RETURNS TABLE (run_id uuid, job_id uuid) LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
    jobs uuid[];
BEGIN
    SELECT coalesce(array_agg(r.id), '{}'), coalesce(array_agg(r.scheduled_job_id), '{}')
    INTO ids, jobs
    FROM sluice.scheduled_job_runs r
    WHERE r.id = ANY (p_runs) AND r.status = 'running' AND r.worker_id = p_worker;
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    PERFORM sluice.release_runs(ids);
    -- those release_runs() gave back (a rescue may have failed one meanwhile)
    RETURN QUERY SELECT g.i, g.j FROM unnest(ids, jobs) AS g(i, j)
                 WHERE NOT EXISTS (SELECT 1 FROM sluice.scheduled_job_runs r WHERE r.id = g.i);
END $$;

CREATE OR REPLACE FUNCTION sluice.release_unheld_runs(p_worker uuid, p_held uuid[])
RETURNS SETOF uuid LANGUAGE sql AS $$
    -- a running run is its job's current run (the claim made it so): found
    -- through that index, as heartbeat() finds them, not by reading every run
    SELECT g.run_id FROM sluice.give_back_runs(p_worker, ARRAY(
        SELECT r.id FROM sluice.scheduled_job_runs r
        WHERE r.id IN (SELECT current_run_id FROM sluice.scheduled_jobs
                       WHERE current_run_id IS NOT NULL)
          AND r.status = 'running' AND r.worker_id = p_worker
          AND r.id <> ALL (p_held))) g  -- none when p_held is NULL: nothing is known held
$$;

-- The worker's cycle (190_outcomes_recorded_already.sql), with p_give_back:
-- see the top of this file.
CREATE FUNCTION sluice.finish_and_claim_runs(
    p_finished jsonb, p_worker uuid, p_limit integer, p_lease_seconds double precision,
    p_types text[], p_decisions boolean, p_resent boolean, p_give_back uuid[])
RETURNS TABLE (run_id uuid, job_id uuid, job_type text, brand_id uuid, parameters jsonb,
               attempt_number integer, checkpoint jsonb, schedule_type text,
               cron_expression text, timezone text, timeout_seconds double precision,
               trigger_source text, unrecorded text, decision text, recorded_already boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_ids uuid[];
    v_outcomes text[];
    v_decisions text[];
    v_missed boolean[];
    v_given uuid[];
    v_jobs uuid[];
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    IF cardinality(p_give_back) > 0 THEN
        SELECT array_agg(g.run_id), array_agg(g.job_id) INTO v_given, v_jobs
        FROM sluice.give_back_runs(p_worker, p_give_back) g;
        -- a statement of its own: it sees the jobs as the give-back left them
        RETURN QUERY
        SELECT u.id, NULL::uuid, NULL::text, NULL::uuid, NULL::jsonb, NULL::integer,
               NULL::jsonb, NULL::text, NULL::text, NULL::text, NULL::float8, NULL::text,
               CASE WHEN g.id IS NULL THEN coalesce(r.status, 'gone') END,
               CASE WHEN g.id IS NULL THEN NULL
                    WHEN j.status = 'active' THEN 'due again at once, no attempt spent'
                    ELSE 'job ' || coalesce(j.status, 'deleted') || ', no attempt spent' END,
               false
        FROM unnest(p_give_back) AS u(id)
        LEFT JOIN unnest(v_given, v_jobs) AS g(id, job) ON g.id = u.id
        LEFT JOIN sluice.scheduled_jobs j ON j.id = g.job
        LEFT JOIN sluice.scheduled_job_runs r ON r.id = u.id;
    END IF;
    IF p_finished IS NOT NULL AND jsonb_array_length(p_finished) > 0 THEN
        IF p_resent IS NOT TRUE THEN
            RETURN QUERY
            SELECT f.run_id, NULL::uuid, NULL::text, NULL::uuid, NULL::jsonb, NULL::integer,
                   NULL::jsonb, NULL::text, NULL::text, NULL::text, NULL::float8, NULL::text,
                   CASE WHEN f.job_status IS NULL THEN f.outcome END,
                   CASE WHEN p_decisions THEN f.decision END,
                   false
            FROM sluice.finish_runs(p_finished) f
            WHERE f.job_status IS NULL OR (p_decisions AND f.decision IS NOT NULL);
        ELSE
            SELECT array_agg(f.run_id), array_agg(f.outcome), array_agg(f.decision),
                   array_agg(f.job_status IS NULL)
            INTO v_ids, v_outcomes, v_decisions, v_missed
            FROM sluice.finish_runs(p_finished) f
            WHERE f.job_status IS NULL OR (p_decisions AND f.decision IS NOT NULL);
            -- the outcomes not recorded, looked for as recorded already (a
            -- statement of its own: it sees what finish_runs() just recorded)
            RETURN QUERY
            SELECT u.id, NULL::uuid, NULL::text, NULL::uuid, NULL::jsonb, NULL::integer,
                   NULL::jsonb, NULL::text, NULL::text, NULL::text, NULL::float8, NULL::text,
                   CASE WHEN u.missed AND k.run_id IS NULL THEN u.outcome END,
                   CASE WHEN p_decisions THEN coalesce(u.decision, k.decision) END,
                   k.run_id IS NOT NULL
            FROM unnest(v_ids, v_outcomes, v_decisions, v_missed) AS u(id, outcome, decision, missed)
            LEFT JOIN sluice.outcomes_recorded_already(
                          p_finished, p_worker,
                          ARRAY(SELECT x.id FROM unnest(v_ids, v_missed) AS x(id, missed) WHERE x.missed)) k
                   ON k.run_id = u.id AND u.missed;
        END IF;
    END IF;
    IF p_limit > 0 THEN
        RETURN QUERY SELECT c.*, NULL::text, NULL::text, false
                     FROM sluice.claim_jobs(p_worker, p_limit, p_lease_seconds, p_types) c;
    END IF;
    -- the worker forgets the runs it gave back once answered: on disk first
    -- (last: finish_runs() and claim_jobs() set the lazy commit again)
    IF cardinality(p_give_back) > 0 THEN
        SET LOCAL synchronous_commit TO DEFAULT;
    END IF;
END $$;

-- The signature of 190_outcomes_recorded_already.sql, for a worker of the
-- previous version: it gives back nothing.
CREATE OR REPLACE FUNCTION sluice.finish_and_claim_runs(
    p_finished jsonb, p_worker uuid, p_limit integer, p_lease_seconds double precision,
    p_types text[], p_decisions boolean, p_resent boolean)
RETURNS TABLE (run_id uuid, job_id uuid, job_type text, brand_id uuid, parameters jsonb,
               attempt_number integer, checkpoint jsonb, schedule_type text,
               cron_expression text, timezone text, timeout_seconds double precision,
               trigger_source text, unrecorded text, decision text, recorded_already boolean)
LANGUAGE sql AS $$
    SELECT * FROM sluice.finish_and_claim_runs(p_finished, p_worker, p_limit, p_lease_seconds,
                                               p_types, p_decisions, p_resent, NULL)
$$;
