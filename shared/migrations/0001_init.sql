-- Projects, credentials, errors, notices (partitioned by day), deploys, per-hour counts.

CREATE TABLE projects (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL,
    settings        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Keys are stored as SHA-256 of the secret; scope 'client' belongs to one project, 'user' to none.
CREATE TABLE api_keys (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_hash        bytea NOT NULL UNIQUE,
    scope           text NOT NULL CHECK (scope IN ('client', 'user')),
    project_id      integer REFERENCES projects (id) ON DELETE CASCADE,
    label           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    CHECK ((scope = 'client') = (project_id IS NOT NULL))
);
CREATE INDEX api_keys_updated ON api_keys (updated_at);

-- One row per project + environment + fingerprint; the id is derived from those three
-- (shared.ids.error_id) so the gateway can answer with it before any worker has run.
CREATE TABLE errors (
    id                      bigint PRIMARY KEY,
    project_id              integer NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    environment             text NOT NULL,
    fingerprint             text NOT NULL,
    grouping_version        integer NOT NULL,
    type                    text NOT NULL DEFAULT 'error',
    exception               text,
    message                 text,
    file                    text,
    last_notice_id          uuid,
    last_notice_at          timestamptz,
    notices_count           bigint NOT NULL DEFAULT 0,
    first_notice_at         timestamptz NOT NULL,
    most_recent_notice_at   timestamptz NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    resolved                boolean NOT NULL DEFAULT false,
    resolved_at             timestamptz,
    regressed_at            timestamptz,
    first_seen_revision     text,
    last_seen_revision      text,
    UNIQUE (project_id, environment, fingerprint)
);
CREATE INDEX errors_list ON errors (resolved, most_recent_notice_at DESC, id DESC);
CREATE INDEX errors_project_list ON errors (project_id, resolved, most_recent_notice_at DESC, id DESC);

-- Partitioned by received_at, which is the time inside the UUIDv7 id: a redelivered notice
-- always lands on the same partition, so the primary key dedupes it.
CREATE TABLE notices (
    id              uuid NOT NULL,
    received_at     timestamptz NOT NULL,
    project_id      integer NOT NULL,
    error_id        bigint NOT NULL,
    location_id     uuid NOT NULL,
    protocol        text NOT NULL,
    type            text NOT NULL,
    environment     text NOT NULL,
    exception       text,
    message         text,
    occurred_at     timestamptz,
    reference_id    text,
    fingerprint     text NOT NULL,
    body            jsonb NOT NULL,
    raw             bytea,
    PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);
CREATE INDEX notices_error ON notices (error_id, received_at DESC, id DESC);
CREATE INDEX notices_location ON notices (location_id);
CREATE INDEX notices_reference ON notices (project_id, reference_id) WHERE reference_id IS NOT NULL;

-- Daily partitions, made ahead by `faultline migrate` and by the workers' maintenance timer.
CREATE FUNCTION faultline_ensure_partitions(first_day date, days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d date;
    made integer := 0;
    name text;
BEGIN
    -- Two workers making the same partition at once would collide in pg_type; take turns.
    PERFORM pg_advisory_xact_lock(hashtext('faultline_partitions'));
    FOR i IN 0 .. days - 1 LOOP
        d := first_day + i;
        name := 'notices_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS %I PARTITION OF notices FOR VALUES FROM (%L) TO (%L)',
                name, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END $$;

-- Counts per error and hour, maintained by the workers in the same transaction as the notices.
CREATE TABLE error_hourly (
    error_id        bigint NOT NULL,  -- no FK: written in the same statement as the error row
    hour            timestamptz NOT NULL,
    count           integer NOT NULL,
    PRIMARY KEY (error_id, hour)
);

CREATE TABLE deploys (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id      integer NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    environment     text NOT NULL,
    author          text,
    repository      text,
    revision        text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deploys_list ON deploys (created_at DESC, id DESC);
CREATE INDEX deploys_project_list ON deploys (project_id, created_at DESC, id DESC);
