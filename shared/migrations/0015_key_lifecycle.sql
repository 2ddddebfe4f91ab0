-- Keys that work at once and revocations everywhere within a second (issue 15). Numbered after the
-- issue, not the next free number, so it cannot collide with a migration written at the same time.

-- What a masked key shows: its last four characters (the secret itself is only ever stored hashed).
ALTER TABLE api_keys ADD COLUMN hint text;

-- Every write of a key or a project tells the services' key caches (LISTEN faultline_keys) in the
-- same transaction: a new key is known, and a revoked one forgotten, as soon as it commits. Key
-- changes carry the row, so a cache applies them without a query; project changes make it reload.
CREATE FUNCTION faultline_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    IF TG_TABLE_NAME = 'api_keys' THEN
        PERFORM pg_notify('faultline_keys', json_build_object(
            'kind', 'key',
            'hash', encode(r.key_hash, 'hex'),
            'scope', r.scope,
            'project_id', r.project_id,
            'live', TG_OP <> 'DELETE' AND r.revoked_at IS NULL
        )::text);
    ELSE
        PERFORM pg_notify('faultline_keys', json_build_object('kind', 'project', 'id', r.id)::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER api_keys_notify AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION faultline_keys_changed();
CREATE TRIGGER projects_notify AFTER INSERT OR UPDATE OR DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION faultline_keys_changed();

-- Deploys queued by the gateway (Airbrake's POST /api/v4/projects/{id}/deploys) carry an id made at
-- the gateway, so a redelivered stream entry records its deploy once.
ALTER TABLE deploys ADD COLUMN ref uuid;
CREATE UNIQUE INDEX deploys_ref ON deploys (ref);
