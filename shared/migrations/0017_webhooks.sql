-- Webhooks (issue 19): hooks per project, and the outbox of their deliveries. Numbered after the issue.

-- The secret is kept as given (it signs every delivery, so it cannot be a hash); the API shows only
-- its last four characters after the creation answer.
CREATE TABLE webhooks (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id      integer NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    url             text NOT NULL,
    events          text[] NOT NULL,
    secret          text NOT NULL,
    format          text NOT NULL DEFAULT 'json' CHECK (format IN ('json', 'slack')),
    spike_threshold integer CHECK (spike_threshold > 0),
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- The worker's outbox statement starts from here: no enabled hook, no further work in a batch.
CREATE INDEX webhooks_project ON webhooks (project_id) WHERE enabled;

-- One row per (hook, cause): written in the same transaction as the notice (or deploy) that caused
-- it, so nothing is lost; keyed by (hook_id, cause) so a redelivered batch records nothing twice. The
-- id is the delivery id every attempt carries (Faultline-Delivery), so a receiver drops repeats; it
-- has no index of its own (rows are found by their key): each index costs every outbox insert.
CREATE TABLE webhook_deliveries (
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    hook_id         bigint NOT NULL,  -- no FK: its per-row check cost the outbox statement ~15 %
    project_id      integer NOT NULL,
    event           text NOT NULL,
    cause           text NOT NULL,
    error_id        bigint,
    notice_id       uuid,
    notice_at       timestamptz,
    deploy_id       bigint,
    body            bytea,  -- made at the first attempt; every retry sends these same bytes
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    last_status     integer,  -- the receiver's last HTTP answer (null: none, e.g. a timeout)
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),  -- while sending: when its lease runs out
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    PRIMARY KEY (hook_id, cause)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (hook_id, next_attempt_at)
    WHERE status IN ('pending', 'sending');
CREATE INDEX webhook_deliveries_list ON webhook_deliveries (hook_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_spike ON webhook_deliveries (hook_id, error_id, created_at DESC)
    WHERE event = 'error.spike';
CREATE INDEX webhook_deliveries_done ON webhook_deliveries (created_at)
    WHERE status IN ('delivered', 'failed');

-- What a foreign key's ON DELETE CASCADE would do (a hook deleted, or its project): only hooks' own
-- deletes pay for it, never the outbox inserts.
CREATE FUNCTION faultline_webhook_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM webhook_deliveries WHERE hook_id = OLD.id;
    RETURN NULL;
END $$;
CREATE TRIGGER webhooks_deleted AFTER DELETE ON webhooks
    FOR EACH ROW EXECUTE FUNCTION faultline_webhook_deleted();
