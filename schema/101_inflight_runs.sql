-- 101_inflight_runs.sql — a job whose run is still in flight is not done with:
-- its dedupe key stays held until the run has ended.
--
-- Dedupe. A job held its dedupe key while it was active or paused. Cancelling
-- a job with a run in flight made it 'cancelled' at once, but the run goes on
-- until its worker hears of the cancel: moments for a daemon, the whole run
-- for a foreground `sluice run` or a daemon whose LISTEN connection was down,
-- until its lease expires for a lost worker. Meanwhile the same key could be
-- queued again, and its new job run beside the old run (a second paid
-- scrape). The key is now held while the job is active or paused or has a run
-- in flight (current_run_id set), by the same unique index, so that concurrent
-- enqueues stay race-free; enqueue() meanwhile returns the cancelled job's id
-- (created = false). Where this has already happened (a cancelled job's run in
-- flight beside a newer job with its key), the new index could not be built:
-- the job that is active or paused, else the newest, keeps the key, and the
-- others lose it (their runs are being stopped; the duplicate cannot be undone).
--
-- enqueue() is otherwise that of 097_finite_run_at.sql.

-- ===================================================================== dedupe

WITH holders AS (
    SELECT id, row_number() OVER (PARTITION BY job_type, brand_id, dedupe_key
                                  ORDER BY status IN ('active', 'paused') DESC, created_at DESC, id) AS n
    FROM sluice.scheduled_jobs
    WHERE dedupe_key IS NOT NULL AND (status IN ('active', 'paused') OR current_run_id IS NOT NULL)
)
UPDATE sluice.scheduled_jobs j SET dedupe_key = NULL
FROM holders h WHERE j.id = h.id AND h.n > 1;

DROP INDEX sluice.scheduled_jobs_dedupe;

-- At most one job per (type, brand, dedupe key) that is pending, paused or has
-- a run in flight (a cancelled job until its run has ended).
CREATE UNIQUE INDEX scheduled_jobs_dedupe ON sluice.scheduled_jobs (job_type, brand_id, dedupe_key)
    NULLS NOT DISTINCT
    WHERE dedupe_key IS NOT NULL AND (status IN ('active', 'paused') OR current_run_id IS NOT NULL);

-- Queues a one-time job. Returns (job_id, created): created is false when a job
-- of this type and brand holds the dedupe key (pending, paused, or cancelled
-- with its run still in flight); its id is returned instead. Race-free under
-- concurrent enqueues (the unique index above).
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
