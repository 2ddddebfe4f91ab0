-- Exceptionless: the real-time client configuration of each project, and end users' descriptions of
-- events by reference id (kept even when the event they describe has not been stored yet).

-- The gateway serves these from its key cache; every change bumps config_version.
ALTER TABLE projects
    ADD COLUMN config         jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN config_version integer NOT NULL DEFAULT 0;

-- The latest description per reference id; the worker copies it into every notice carrying that
-- reference id, whichever of the two arrives first.
CREATE TABLE user_descriptions (
    project_id      integer NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    reference_id    text NOT NULL,
    data            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, reference_id)
);
CREATE INDEX user_descriptions_created ON user_descriptions (created_at);
