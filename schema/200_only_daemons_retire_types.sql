-- 200_only_daemons_retire_types.sql — a type is marked unavailable only by a
-- daemon's sync, and only when no live daemon serves it.
--
-- Every start-up synced the registry in full: the types with no handler file
-- where the sync came from were marked unavailable, and
-- sluice.queue_one_time_job() then refused them. Two ways that went wrong:
--   * `sluice run`, `queue`, `schedule` and the REPL did it too. One of them
--     started against the shared database with a directory of its own (trying
--     a new handler, `--handlers ./scratch`) marked every type the daemons
--     serve unavailable, and every client's enqueue of them failed until a
--     daemon next reloaded. Those commands now sync in part: the types they
--     have are added or brought up to date, the others are left alone.
--   * A daemon's sync took no account of the other daemons. During a rolling
--     deploy that adds a type, an old daemon (re)started after the first new
--     one marked the new type unavailable while the new daemon served it; two
--     daemons given different directories on purpose (one host for the
--     scrapers, another for the Meta jobs) took each other's types away at
--     every start. Now each daemon records the types it serves in its row of
--     sluice.workers, and a full sync retires a type only when no live daemon
--     serves it.
-- A type the last daemon serving it took away with it is marked unavailable
-- by the next rescue pass of a live daemon (every third of its lease) once
-- the other is gone; a database with no daemon running still takes jobs of
-- every type, for when one starts.
--
--   workers.types    the job types the worker has handlers for (what it
--                    claims), set when it registers and at each reload
--   workers.lease_seconds
--                    its lease: it renews its heartbeat every third of it
--   worker_status    a row of sluice.workers with:
--                    state       live: its heartbeat is no older than two of
--                                its leases; stopped: it said so as it left;
--                                silent: neither (killed, or cut off from the
--                                database — or a REPL or a foreground run
--                                holding no run, which renews nothing)
--                    last_seen   its stop, else its last heartbeat
--                    running     its runs in flight
--                    (what `sluice workers` shows). A daemon renews its
--                    heartbeat every third of its lease for as long as it
--                    runs: one that is not live is gone.
--   retired_types(serves), retired_types(types)
--                    the available types a daemon serving `serves` (or the
--                    types of the registry `types`) marks unavailable: not
--                    among them, and not served by a live daemon
--                    (worker_status: one killed counts as gone two leases
--                    after its last heartbeat)
--   settle_served_types(serves)
--                    a daemon's rescue pass: marks retired_types(serves)
--                    unavailable, and the types among `serves` marked
--                    unavailable available again (a daemon held up longer
--                    than two leases, which another's sync or pass took for
--                    gone). Returns each type changed and what it is now.
--   sync_registry_if_changed(types)
--                    a daemon's full sync: sync_registry(types, true), then
--                    retired_types(types) marked unavailable; it does nothing
--                    only when the last full sync had this very registry,
--                    nothing changed the tables since and no type is to be
--                    retired (a daemon that served it has gone since); as in
--                    091_registry_state.sql otherwise. (sync_registry(types)
--                    in full still retires by its list alone; sluice no longer
--                    calls it so.)
--   sync_daemon_registry(types, worker, serves, partial)
--                    a daemon's reload: records `serves` as the types of
--                    `worker`, then syncs (sync_registry_if_changed(types), or
--                    sync_registry(types, true) when partial: a handler
--                    directory could not be read), in one statement so that
--                    the sync sees what the daemon serves now
--   raise_unknown_job_type(type)
--                    for a type marked unavailable: "job type '…' is
--                    unavailable: the last daemon to sync the registry has no
--                    handler file for it", not "unknown job type"; as in
--                    098_needs_refresh_type.sql otherwise
--   check_enqueue(...)
--                    raises through it (it had a copy of its own); as in
--                    119_enqueue_path.sql otherwise
--
-- The partial sync of the other commands is a statement of their own: what
-- sync_registry_if_changed() does, in part (nothing when the last full sync had
-- this very registry), over sync_registry(types, true).

ALTER TABLE sluice.workers ADD COLUMN IF NOT EXISTS types text[];
ALTER TABLE sluice.workers ADD COLUMN IF NOT EXISTS lease_seconds double precision;
-- every process started adds a row, and those not stopped (the live, and the
-- killed) are the few every rescue pass reads
CREATE INDEX IF NOT EXISTS workers_not_stopped ON sluice.workers (kind) WHERE stopped_at IS NULL;

CREATE VIEW sluice.worker_status AS
SELECT w.id, w.kind, w.hostname, w.pid, w.version, w.concurrency, w.types, w.lease_seconds,
       w.started_at, w.heartbeat_at, w.stopped_at,
       CASE WHEN w.stopped_at IS NOT NULL THEN 'stopped'
            WHEN w.heartbeat_at > now() - make_interval(secs => 2 * coalesce(w.lease_seconds, 60))
            THEN 'live'
            ELSE 'silent' END AS state,
       coalesce(w.stopped_at, w.heartbeat_at) AS last_seen,
       coalesce(f.running, 0)::integer AS running
FROM sluice.workers w
-- the runs in flight are their jobs' current runs (found through that index)
LEFT JOIN (SELECT r.worker_id, count(*) AS running FROM sluice.scheduled_job_runs r
           WHERE r.status = 'running'
             AND r.id IN (SELECT j.current_run_id FROM sluice.scheduled_jobs j
                          WHERE j.current_run_id IS NOT NULL)
           GROUP BY r.worker_id) f ON f.worker_id = w.id;

CREATE FUNCTION sluice.retired_types(p_serves text[])
RETURNS TABLE (name text) LANGUAGE sql STABLE AS $$
    SELECT t.name FROM sluice.job_types t
    WHERE t.available
      AND t.name <> ALL (p_serves)
      AND NOT EXISTS (SELECT 1 FROM sluice.worker_status w
                      WHERE w.kind = 'serve' AND w.stopped_at IS NULL AND w.state = 'live'
                        AND t.name = ANY (w.types))
$$;

CREATE FUNCTION sluice.retired_types(p_types jsonb)
RETURNS TABLE (name text) LANGUAGE sql STABLE AS $$
    SELECT r.name FROM sluice.retired_types(ARRAY(SELECT e ->> 'name' FROM jsonb_array_elements(p_types) e)) r
$$;

CREATE FUNCTION sluice.settle_served_types(p_serves text[])
RETURNS TABLE (name text, available boolean) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    -- the lock sync_registry takes: a sync in flight elsewhere is seen whole
    PERFORM pg_advisory_xact_lock(hashtext('sluice.sync_registry'));
    RETURN QUERY
    UPDATE sluice.job_types t SET available = NOT t.available, updated_at = now()
    WHERE (NOT t.available AND t.name = ANY (p_serves))
       OR t.name IN (SELECT r.name FROM sluice.retired_types(p_serves) r)
    RETURNING t.name, t.available;
END $$;

CREATE OR REPLACE FUNCTION sluice.sync_registry_if_changed(p_types jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    h text := md5(p_types::text);
    n integer;
BEGIN
    -- the lock sync_registry takes: a sync in flight elsewhere is seen whole
    PERFORM pg_advisory_xact_lock(hashtext('sluice.sync_registry'));
    IF EXISTS (SELECT 1 FROM sluice.registry_state WHERE types_md5 = h)
       AND NOT EXISTS (SELECT 1 FROM sluice.retired_types(p_types)) THEN
        RETURN 0;
    END IF;
    n := sluice.sync_registry(p_types, true);
    UPDATE sluice.job_types SET available = false, updated_at = now()
    WHERE name IN (SELECT r.name FROM sluice.retired_types(p_types) r);
    INSERT INTO sluice.registry_state (types_md5) VALUES (h)
    ON CONFLICT (only_row) DO UPDATE SET types_md5 = excluded.types_md5, synced_at = now();
    RETURN n;
END $$;

CREATE FUNCTION sluice.sync_daemon_registry(p_types jsonb, p_worker uuid, p_serves text[],
                                             p_partial boolean)
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sluice.workers SET types = p_serves
    WHERE id = p_worker AND types IS DISTINCT FROM p_serves;
    IF p_partial THEN
        RETURN sluice.sync_registry(p_types, true);
    END IF;
    RETURN sluice.sync_registry_if_changed(p_types);
END $$;

-- A type marked unavailable was refused as an "unknown job type", which it is
-- not: it is known, and no daemon has its handler file. Now it says so.
CREATE OR REPLACE FUNCTION sluice.raise_unknown_job_type(p_job_type text)
RETURNS void LANGUAGE plpgsql STABLE AS $$
DECLARE
    known text[];
    near text;
BEGIN
    IF EXISTS (SELECT 1 FROM sluice.job_types WHERE name = p_job_type AND NOT available) THEN
        RAISE EXCEPTION 'job type ''%'' is unavailable: the last daemon to sync the registry has no handler file for it',
            p_job_type
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'put its handler file back where the daemons load their handlers (they reload when it appears, or on SIGHUP)';
    END IF;
    SELECT array_agg(name ORDER BY name) INTO known FROM sluice.job_types WHERE available;
    near := sluice.nearest_name(p_job_type, known);
    RAISE EXCEPTION 'unknown job type ''%''%', p_job_type,
        CASE WHEN near IS NOT NULL THEN ' — did you mean ''' || near || '''?' ELSE '' END
        USING ERRCODE = 'invalid_parameter_value',
              HINT = CASE WHEN known IS NULL THEN 'no job types are registered: start `sluice serve` or run any sluice command with your handlers once'
                          ELSE 'known job types: ' || array_to_string(known, ', ') END;
END $$;

-- check_enqueue() of 119_enqueue_path.sql, raising through raise_unknown_job_type().
CREATE OR REPLACE FUNCTION sluice.check_enqueue(p_job_type text, p_brand uuid, p_parameters jsonb,
                                                p_direct boolean DEFAULT false)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    jt sluice.job_types; problems text[];
BEGIN
    SELECT * INTO jt FROM sluice.job_types WHERE name = p_job_type AND available;
    IF NOT FOUND THEN
        PERFORM sluice.raise_unknown_job_type(p_job_type);
    END IF;
    IF p_parameters IS NULL OR jsonb_typeof(p_parameters) <> 'object' THEN
        RAISE EXCEPTION 'parameters must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jt.brand_rule = 'required' AND p_brand IS NULL AND NOT p_direct THEN
        RAISE EXCEPTION 'job type ''%'' needs a brand', p_job_type
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'give one, or run it once without a brand in the foreground with `sluice run ' || p_job_type || '`';
    END IF;
    problems := sluice.check_params(jt.param_schema, p_parameters);
    IF cardinality(problems) > 0 THEN
        RAISE EXCEPTION 'invalid parameters for %: %', p_job_type, array_to_string(problems, '; ')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jt.default_params || p_parameters;
END $$;
