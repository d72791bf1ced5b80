-- 190_outcomes_recorded_already.sql — a batch of outcomes sent again after its
-- reply was lost finds them recorded, and says so.
--
-- When the connection breaks after Postgres committed a worker's
-- finish_and_claim_runs() but before the reply reached the worker, the worker
-- sends the batch again on another connection. Its runs are no longer running
-- then, so they were named as outcomes not recorded, and the daemon warned
-- that each run had lost its lease or its job — for runs whose outcomes that
-- very batch had recorded; and a failed run's line, which comes once its
-- outcome is recorded, with what became of its job, was never logged.
--
--   outcomes_recorded_already(finished, worker, runs)
--                    of the runs named (outcomes of `finished` that were not
--                    recorded), those that ended as `finished` says already,
--                    recorded by `worker`: run_id and, for one that did not
--                    complete, what became of its job (decision)
--   finish_and_claim_runs(finished, worker, limit, lease_seconds, types, decisions, resent)
--                    with resent (the batch, or part of it, was sent before
--                    without an answer), an outcome not recorded because that
--                    earlier call recorded it is named by a row with
--                    recorded_already true, its decision (NULL for a
--                    completion) and unrecorded NULL, instead of as not
--                    recorded; a fifteenth column, recorded_already
--   finish_and_claim_runs(6 arguments)
--                    restated over the new one with resent: a worker of the
--                    previous version then logs the failed runs of a batch
--                    sent again with their decisions and warns of none; a
--                    completion recorded already gives it no row (it would
--                    take it for a claim)
--
-- An outcome is "as finished says" when the run has the same status, the same
-- worker, the same start, error and result, and ended no later than the
-- outcome says (finish_runs() records the worker's time of the end, or the
-- database's time when that is earlier). A rescue that failed the run after
-- its lease ran out leaves the worker and start as they were, but records its
-- own error ("worker lost: …") and no result; a job deleted takes its runs with
-- it; a cancelled job's run is ended by its worker only. Those stay outcomes
-- not recorded, as before.
--
-- The decision is made from the job as it is now, by outcome_decision() as
-- finish_runs() made it: unchanged since that call, unless someone paused,
-- edited or cancelled the job meanwhile, which it then says. Once the job has
-- run again (a later run of it exists), the decision is not known any more;
-- the row says which attempt followed and how it stands.
--
-- A batch not sent before (the case of every cycle but those after a lost
-- connection) takes the path of 160_outcome_decisions.sql unchanged: no
-- statement and no work is added to it.

-- Of the runs p_runs (outcomes of p_finished that finish_runs() did not
-- record), those recorded already as p_finished says, by p_worker.
CREATE FUNCTION sluice.outcomes_recorded_already(p_finished jsonb, p_worker uuid, p_runs uuid[])
RETURNS TABLE (run_id uuid, decision text) LANGUAGE sql STABLE AS $$
    SELECT r.id,
           CASE WHEN r.status = 'completed' THEN NULL
                WHEN later.id IS NOT NULL THEN
                    'the job has run again since: attempt ' || later.attempt_number || ' (run '
                    || later.id || ') is ' || later.status
                ELSE sluice.outcome_decision(coalesce(i.retryable, true), j.status, j.schedule_type,
                                             j.attempts, r.attempt_number,
                                             coalesce(j.max_retries, t.max_retries, 3), j.next_run_at)
                END
    FROM jsonb_to_recordset(p_finished) AS i(run_id uuid, status text, result jsonb, error text,
                                             retryable boolean, started_at float8, finished_at float8)
    JOIN sluice.scheduled_job_runs r ON r.id = i.run_id
    JOIN sluice.scheduled_jobs j ON j.id = r.scheduled_job_id
    LEFT JOIN sluice.job_types t ON t.name = r.job_type
    LEFT JOIN LATERAL (SELECT x.id, x.attempt_number, x.status
                       FROM sluice.scheduled_job_runs x
                       WHERE x.scheduled_job_id = r.scheduled_job_id AND x.created_at > r.created_at
                       ORDER BY x.created_at DESC LIMIT 1) later ON true
    WHERE cardinality(p_runs) > 0
      AND i.run_id = ANY (p_runs)
      AND i.status IN ('completed', 'failed', 'cancelled')
      AND r.status = i.status
      AND r.worker_id = p_worker
      AND r.started_at = coalesce(to_timestamp(i.started_at), r.started_at)
      AND r.completed_at <= coalesce(to_timestamp(i.finished_at), r.completed_at)
      AND r.error_message IS NOT DISTINCT FROM i.error
      AND r.result IS NOT DISTINCT FROM i.result
$$;

-- The worker's cycle (160_outcome_decisions.sql), with p_resent: see the top of
-- this file.
CREATE FUNCTION sluice.finish_and_claim_runs(
    p_finished jsonb, p_worker uuid, p_limit integer, p_lease_seconds double precision,
    p_types text[], p_decisions boolean, p_resent boolean)
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
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
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
END $$;

-- The signature of 160_outcome_decisions.sql, for a worker of the previous
-- version: a batch is taken as sent again (the check costs nothing unless an
-- outcome was not recorded), and a completion recorded already gives no row.
CREATE OR REPLACE FUNCTION sluice.finish_and_claim_runs(
    p_finished jsonb, p_worker uuid, p_limit integer, p_lease_seconds double precision,
    p_types text[], p_decisions boolean)
RETURNS TABLE (run_id uuid, job_id uuid, job_type text, brand_id uuid, parameters jsonb,
               attempt_number integer, checkpoint jsonb, schedule_type text,
               cron_expression text, timezone text, timeout_seconds double precision,
               trigger_source text, unrecorded text, decision text)
LANGUAGE sql AS $$
    SELECT f.run_id, f.job_id, f.job_type, f.brand_id, f.parameters, f.attempt_number, f.checkpoint,
           f.schedule_type, f.cron_expression, f.timezone, f.timeout_seconds, f.trigger_source,
           f.unrecorded, f.decision
    FROM sluice.finish_and_claim_runs(p_finished, p_worker, p_limit, p_lease_seconds, p_types,
                                      p_decisions, true) f
    WHERE NOT (f.recorded_already AND f.decision IS NULL)
$$;
