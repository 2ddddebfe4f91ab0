-- Grouping that can change without splitting history (issue 17). Numbered after the issue.

-- Which error a fingerprint's notices go to. The worker looks a batch's fingerprints up here (and,
-- in a transition window, their previous-version fingerprints) before it falls back to the derived
-- id; merge and split only move rows of this table. derived_id is shared.ids.error_id of the row's
-- (project, environment, fingerprint): the id a client was answered for it (Exceptioner's
-- synchronous error_id), so GET /v1/errors/{that id} finds the error it now belongs to.
CREATE TABLE groupings (
    project_id          integer NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    environment         text NOT NULL,
    fingerprint         text NOT NULL,
    grouping_version    integer NOT NULL,
    error_id            bigint NOT NULL,
    derived_id          bigint NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, environment, fingerprint, grouping_version)
);
CREATE INDEX groupings_error ON groupings (error_id);
CREATE INDEX groupings_derived ON groupings (derived_id);

-- Every error so far is its own fingerprint's: its id is the derived one (or a collision alternate,
-- which is then both what it maps to and what it was answered as).
INSERT INTO groupings (project_id, environment, fingerprint, grouping_version, error_id, derived_id)
SELECT project_id, environment, fingerprint, grouping_version, id, id FROM errors
ON CONFLICT DO NOTHING;

-- Ids of errors merged into another: what GET /v1/errors/{id} answers for them (the target).
CREATE TABLE error_redirects (
    id                  bigint PRIMARY KEY,
    project_id          integer NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    error_id            bigint NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX error_redirects_error ON error_redirects (error_id);
