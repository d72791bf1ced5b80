-- 091_registry_state.sql — a registry sync that does nothing when nothing
-- changed.
--
-- Every start-up (`serve`, `run`, `queue`, `schedule`, the REPL) syncs the
-- handler registry into job_types, datasets and job_type_datasets. When every
-- row is already right, sync_registry still costs a few milliseconds on a new
-- connection (compiling it, planning its statements), paid before the first
-- claim. The md5 of the registry of the last full sync is kept here; a change
-- made to those tables by anything else (a partial sync that changed a row, a
-- hand edit) clears it (row triggers: a sync that changes nothing fires none),
-- so the next start-up syncs in full again.

CREATE TABLE IF NOT EXISTS sluice.registry_state (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    types_md5  text NOT NULL,
    synced_at  timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION sluice.registry_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM sluice.registry_state;
    RETURN NULL;
END $$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['job_types', 'datasets', 'job_type_datasets'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON sluice.%I', t || '_registry_changed', t);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON sluice.%I '
                       'FOR EACH ROW EXECUTE FUNCTION sluice.registry_changed()',
                       t || '_registry_changed', t);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON sluice.%I', t || '_registry_truncated', t);
        EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON sluice.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION sluice.registry_changed()',
                       t || '_registry_truncated', t);
    END LOOP;
END $$;

-- A full sync (sync_registry(p_types)) unless the last full sync had the same
-- registry and nothing changed the tables since. Returns the number of types
-- synced, or 0 when nothing was to do. The md5 is of the jsonb text, so key
-- order in the caller's JSON does not matter.
CREATE OR REPLACE FUNCTION sluice.sync_registry_if_changed(p_types jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    h text := md5(p_types::text);
    n integer;
BEGIN
    -- the lock sync_registry takes: a sync in flight elsewhere is seen whole
    PERFORM pg_advisory_xact_lock(hashtext('sluice.sync_registry'));
    IF EXISTS (SELECT 1 FROM sluice.registry_state WHERE types_md5 = h) THEN
        RETURN 0;
    END IF;
    n := sluice.sync_registry(p_types);
    INSERT INTO sluice.registry_state (types_md5) VALUES (h)
    ON CONFLICT (only_row) DO UPDATE SET types_md5 = excluded.types_md5, synced_at = now();
    RETURN n;
END $$;
