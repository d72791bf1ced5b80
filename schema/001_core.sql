-- 001_core.sql — the control plane's own tables: brands, the job-type registry,
-- datasets, jobs, runs, dataset freshness and workers.
--
-- Names follow the system sluice replaces (scheduled_jobs, scheduled_job_runs,
-- parameters, next_run_at, trigger_source, dataset keys); the constraints make the
-- states it could get stuck in impossible: every one-time job ends terminal, a
-- running run always has a lease, a (brand, dataset) pair has one status row.
--
-- The schema `sluice` and sluice.schema_migrations are created by the migration
-- runner before this file runs.

CREATE TABLE sluice.brands (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (length(btrim(name)) > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The registry: one row per handler file, synced from the handlers on start and
-- on reload. A removed handler keeps its row (jobs reference it) with available = false.
CREATE TABLE sluice.job_types (
    name                text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    label               text NOT NULL,
    emoji               text NOT NULL DEFAULT '',
    description         text,
    brand_rule          text NOT NULL DEFAULT 'optional'
                        CHECK (brand_rule IN ('required', 'optional')),
    param_schema        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(param_schema) = 'object'),
    default_params      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(default_params) = 'object'),
    timeout_seconds     double precision NOT NULL DEFAULT 1800 CHECK (timeout_seconds > 0),
    max_retries         integer NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    retry_base_seconds  double precision NOT NULL DEFAULT 10 CHECK (retry_base_seconds > 0),
    retry_max_seconds   double precision NOT NULL DEFAULT 3600 CHECK (retry_max_seconds > 0),
    handler_file        text,
    handler_version     text,
    available           boolean NOT NULL DEFAULT true,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sluice.datasets (
    dataset_key      text PRIMARY KEY CHECK (dataset_key ~ '^[a-z][a-z0-9_]*$'),
    label            text NOT NULL,
    max_age_seconds  double precision CHECK (max_age_seconds > 0),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Which datasets a job type keeps fresh.
CREATE TABLE sluice.job_type_datasets (
    job_type     text NOT NULL REFERENCES sluice.job_types (name) ON DELETE CASCADE,
    dataset_key  text NOT NULL REFERENCES sluice.datasets (dataset_key) ON DELETE CASCADE,
    PRIMARY KEY (job_type, dataset_key)
);

CREATE TABLE sluice.workers (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    kind          text NOT NULL DEFAULT 'serve' CHECK (kind IN ('serve', 'run', 'repl', 'exec')),
    concurrency   integer,
    version       text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);

-- A job: one-time (runs until it succeeds or exhausts its retries, then ends in a
-- terminal status) or recurring (cron + IANA time zone). While a run is in flight
-- current_run_id is set and next_run_at is NULL, so the job cannot be claimed
-- twice; a recurring job with next_run_at NULL and no run is waiting for a worker
-- to compute its next slot.
CREATE TABLE sluice.scheduled_jobs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    brand_id         uuid REFERENCES sluice.brands (id) ON DELETE CASCADE,
    job_type         text NOT NULL REFERENCES sluice.job_types (name),
    name             text,
    schedule_type    text NOT NULL DEFAULT 'one_time'
                     CHECK (schedule_type IN ('one_time', 'recurring')),
    cron_expression  text,
    timezone         text NOT NULL DEFAULT 'UTC',
    parameters       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(parameters) = 'object'),
    status           text NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'paused', 'completed', 'failed', 'cancelled', 'archived')),
    priority         integer NOT NULL DEFAULT 0,
    next_run_at      timestamptz,
    max_retries      integer CHECK (max_retries >= 0),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    dedupe_key       text,
    trigger_source   text NOT NULL DEFAULT 'api'
                     CHECK (trigger_source IN ('scheduled', 'manual', 'api', 'repl')),
    current_run_id   uuid,
    checkpoint       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(checkpoint) = 'object'),
    last_run_at      timestamptz,
    last_error       text,
    run_count        integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (schedule_type = 'one_time' OR cron_expression IS NOT NULL),
    CHECK (schedule_type = 'recurring' OR cron_expression IS NULL),
    -- an active one-time job is either due at some time or running
    CHECK (status <> 'active' OR schedule_type = 'recurring'
           OR next_run_at IS NOT NULL OR current_run_id IS NOT NULL)
) WITH (fillfactor = 70);  -- room for HOT updates: a job row is updated at claim and finish

-- The claim query's index: due, claimable jobs in priority order.
CREATE INDEX scheduled_jobs_due ON sluice.scheduled_jobs (priority, next_run_at)
    WHERE status = 'active' AND next_run_at IS NOT NULL;
-- When is the next job due (the worker's timer for future jobs).
CREATE INDEX scheduled_jobs_next ON sluice.scheduled_jobs (next_run_at)
    WHERE status = 'active' AND next_run_at IS NOT NULL;
-- Jobs with a run in flight: the rescue pass starts here.
CREATE INDEX scheduled_jobs_running ON sluice.scheduled_jobs (current_run_id)
    WHERE current_run_id IS NOT NULL;
CREATE INDEX scheduled_jobs_unscheduled ON sluice.scheduled_jobs (id)
    WHERE schedule_type = 'recurring' AND status = 'active'
      AND next_run_at IS NULL AND current_run_id IS NULL;
-- At most one pending/running job per (type, brand, dedupe key).
CREATE UNIQUE INDEX scheduled_jobs_dedupe ON sluice.scheduled_jobs (job_type, brand_id, dedupe_key)
    NULLS NOT DISTINCT WHERE dedupe_key IS NOT NULL AND status IN ('active', 'paused');

CREATE TABLE sluice.scheduled_job_runs (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    scheduled_job_id  uuid NOT NULL REFERENCES sluice.scheduled_jobs (id) ON DELETE CASCADE,
    job_type          text NOT NULL,
    brand_id          uuid,
    attempt_number    integer NOT NULL CHECK (attempt_number >= 1),
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    trigger_source    text NOT NULL,
    worker_id         uuid REFERENCES sluice.workers (id) ON DELETE SET NULL,
    lease_expires_at  timestamptz,
    heartbeat_at      timestamptz,
    handler_version   text,
    parameters        jsonb NOT NULL DEFAULT '{}',
    result            jsonb,
    error_message     text,
    logs              text NOT NULL DEFAULT '',
    started_at        timestamptz,
    completed_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'running' OR (started_at IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK (status NOT IN ('completed', 'failed', 'cancelled') OR completed_at IS NOT NULL)
) WITH (fillfactor = 80);

-- scheduled_jobs.current_run_id has no foreign key on purpose: the check would
-- run on every claim, and its plan (cached per connection) is made while the
-- runs table is small — a sequential scan that grows with the table. The queue
-- functions keep it right: it names a running run, or is NULL.

CREATE INDEX scheduled_job_runs_job ON sluice.scheduled_job_runs (scheduled_job_id, created_at DESC);
-- Recent runs by type (and brand): the Pipeline Manager's panels.
CREATE INDEX scheduled_job_runs_type ON sluice.scheduled_job_runs (job_type, brand_id, created_at DESC);
-- No index mentions a run's status or lease: finishing a run and renewing its
-- lease are then HOT updates (no index entries written). Running runs are found
-- through their jobs (scheduled_jobs_running) or by id.

-- Freshness: one row per (brand, dataset); brand NULL is the platform scope.
CREATE TABLE sluice.dataset_status (
    id                bigserial PRIMARY KEY,
    brand_id          uuid REFERENCES sluice.brands (id) ON DELETE CASCADE,
    dataset_key       text NOT NULL,
    last_status       text NOT NULL CHECK (last_status IN ('running', 'completed', 'failed')),
    last_attempt_at   timestamptz,
    last_success_at   timestamptz,
    last_run_id       uuid,
    source_job_id     uuid,
    records_affected  bigint,
    metadata          jsonb NOT NULL DEFAULT '{}',
    error_message     text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (brand_id, dataset_key)
);
