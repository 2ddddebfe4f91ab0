"""Webhook events into the outbox, in the transaction that stored their cause (issue 19).

`record(conn)` runs once per batch, after store.WRITE and before its commit: one set-based statement
that reads the batch (tmp_notices) and the errors rows WRITE just left, and inserts a delivery row per
hook and event. It starts from the enabled hooks of the batch's projects, so a project without hooks
costs one index probe. UNIQUE (hook_id, cause) keeps a redelivered batch from recording anything twice.

- error.new: the errors row was inserted by this transaction (created_at = now(): its default, never
  updated); the notice is the error's first.
- error.regressed: WRITE set regressed_at to this transaction's now() and reopened it; the notice is the
  batch's first one after resolved_at; the cause names the resolution, so one reopening fires once.
- error.spike: the error's notices in the last hour (this hour's count plus the share of the previous
  hour still inside the window, from error_hourly) reached the hook's threshold, and the hook has had
  no spike of this error in the last hour. The batch's upsert holds the errors row lock until commit,
  so two workers cannot both decide the same spike.
"""

from __future__ import annotations

from shared.db import Conn

EVENTS = ("error.new", "error.regressed", "error.spike", "deploy.created")

RECORD = """
WITH hooks AS (
    SELECT h.id, h.project_id, h.events, h.spike_threshold
    FROM webhooks h
    WHERE h.enabled AND EXISTS (SELECT 1 FROM tmp_notices t WHERE t.project_id = h.project_id)
), batch AS (
    SELECT DISTINCT t.error_id
    FROM tmp_notices t
    WHERE t.project_id IN (SELECT project_id FROM hooks)
), errs AS (
    SELECT e.id, e.project_id, e.created_at, e.resolved, e.resolved_at, e.regressed_at,
           e.first_notice_id, e.first_notice_at, e.last_notice_id, e.last_notice_at
    FROM batch b JOIN errors e ON e.id = b.error_id
), reopened AS (
    SELECT DISTINCT ON (r.id) r.id, r.project_id, r.resolved_at, t.id AS notice_id, t.received_at
    FROM errs r JOIN tmp_notices t ON t.error_id = r.id
    WHERE r.regressed_at = now() AND NOT r.resolved AND t.received_at > coalesce(r.resolved_at, '-infinity')
    ORDER BY r.id, t.id
), spiking AS (
    SELECT h.id AS hook_id, r.id, r.project_id, r.last_notice_id, r.last_notice_at
    FROM errs r JOIN hooks h ON h.project_id = r.project_id
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(CASE WHEN x.hour = date_trunc('hour', now()) THEN x.count
                                 ELSE x.count * (1 - extract(epoch FROM now() - date_trunc('hour', now()))
                                                     / 3600) END), 0) AS recent
        FROM error_hourly x
        WHERE x.error_id = r.id AND x.hour >= date_trunc('hour', now()) - interval '1 hour'
    ) c
    WHERE 'error.spike' = ANY (h.events) AND h.spike_threshold IS NOT NULL
      AND c.recent >= h.spike_threshold
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries d
          WHERE d.hook_id = h.id AND d.error_id = r.id AND d.event = 'error.spike'
            AND d.created_at > now() - interval '1 hour'
      )
), events AS (
    SELECT h.id AS hook_id, r.project_id, 'error.new' AS event, 'new:' || r.id AS cause, r.id AS error_id,
           r.first_notice_id AS notice_id, r.first_notice_at AS notice_at
    FROM errs r JOIN hooks h ON h.project_id = r.project_id
    WHERE r.created_at = now() AND 'error.new' = ANY (h.events)
    UNION ALL
    SELECT h.id, r.project_id, 'error.regressed',
           'regressed:' || r.id || ':' || coalesce(extract(epoch FROM r.resolved_at)::text, ''),
           r.id, r.notice_id, r.received_at
    FROM reopened r JOIN hooks h ON h.project_id = r.project_id
    WHERE 'error.regressed' = ANY (h.events)
    UNION ALL
    SELECT s.hook_id, s.project_id, 'error.spike',
           'spike:' || s.id || ':' || extract(epoch FROM date_trunc('hour', now()))::bigint,
           s.id, s.last_notice_id, s.last_notice_at
    FROM spiking s
)
INSERT INTO webhook_deliveries (hook_id, project_id, event, cause, error_id, notice_id, notice_at)
SELECT hook_id, project_id, event, cause, error_id, notice_id, notice_at
FROM events
ORDER BY hook_id, cause  -- concurrent batches take unique-index locks in one order
ON CONFLICT (hook_id, cause) DO NOTHING
"""

# Wraps services/worker/deploys.INSERT (which must end with its ON CONFLICT clause): the deploys it
# really inserted, and a delivery per enabled hook wanting deploy.created, in one statement.
DEPLOYS = """
WITH ins AS (
    {insert}
    RETURNING id, project_id
)
INSERT INTO webhook_deliveries (hook_id, project_id, event, cause, deploy_id)
SELECT h.id, ins.project_id, 'deploy.created', 'deploy:' || ins.id, ins.id
FROM ins JOIN webhooks h ON h.project_id = ins.project_id
WHERE h.enabled AND 'deploy.created' = ANY (h.events)
ORDER BY h.id, ins.id
ON CONFLICT (hook_id, cause) DO NOTHING
"""


async def record(conn: Conn) -> None:
    """The batch's webhook events into the outbox; call inside write_batch's transaction, after WRITE."""
    await conn.execute(RECORD)


def with_deploys(insert: str) -> str:
    """The deploys INSERT, extended to record its deploy.created deliveries in the same statement."""
    return DEPLOYS.format(insert=insert.strip())
