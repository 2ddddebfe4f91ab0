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
  no spike of this error in the last hour (not looked up for an error this transaction created). The batch's upsert holds the errors row lock until commit,
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
), pairs AS (  -- each error of the batch with each hook of its project: one join, then filters
    SELECT h.id AS hook_id, h.events, h.spike_threshold, e.id, e.project_id, e.created_at, e.resolved,
           e.resolved_at, e.regressed_at, e.first_notice_id, e.first_notice_at, e.last_notice_id,
           e.last_notice_at
    FROM batch b JOIN errors e ON e.id = b.error_id JOIN hooks h ON h.project_id = e.project_id
), reopened AS (
    SELECT DISTINCT ON (p.hook_id, p.id) p.hook_id, p.id, p.project_id, p.resolved_at,
           t.id AS notice_id, t.received_at
    FROM pairs p JOIN tmp_notices t ON t.error_id = p.id
    WHERE p.regressed_at = now() AND NOT p.resolved AND 'error.regressed' = ANY (p.events)
      AND t.received_at > coalesce(p.resolved_at, '-infinity')
    ORDER BY p.hook_id, p.id, t.id
), spiking AS (
    SELECT p.hook_id, p.id, p.project_id, p.last_notice_id, p.last_notice_at
    FROM pairs p
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(CASE WHEN x.hour = date_trunc('hour', now()) THEN x.count
                                 ELSE x.count * (1 - extract(epoch FROM now() - date_trunc('hour', now()))
                                                     / 3600) END), 0) AS recent
        FROM error_hourly x
        WHERE x.error_id = p.id AND x.hour >= date_trunc('hour', now()) - interval '1 hour'
    ) c
    WHERE 'error.spike' = ANY (p.events) AND p.spike_threshold IS NOT NULL
      AND c.recent >= p.spike_threshold
      AND (p.created_at = now() OR NOT EXISTS (  -- an error new in this transaction has had no spike
          SELECT 1 FROM webhook_deliveries d
          WHERE d.hook_id = p.hook_id AND d.error_id = p.id AND d.event = 'error.spike'
            AND d.created_at > now() - interval '1 hour'
      ))
), events AS (
    SELECT p.hook_id, p.project_id, 'error.new' AS event, 'new:' || p.id AS cause, p.id AS error_id,
           p.first_notice_id AS notice_id, p.first_notice_at AS notice_at
    FROM pairs p
    WHERE p.created_at = now() AND 'error.new' = ANY (p.events)
    UNION ALL
    SELECT r.hook_id, r.project_id, 'error.regressed',
           'regressed:' || r.id || ':' || coalesce(extract(epoch FROM r.resolved_at)::text, ''),
           r.id, r.notice_id, r.received_at
    FROM reopened r
    UNION ALL
    SELECT s.hook_id, s.project_id, 'error.spike',
           'spike:' || s.id || ':' || extract(epoch FROM date_trunc('hour', now()))::bigint,
           s.id, s.last_notice_id, s.last_notice_at
    FROM spiking s
)
INSERT INTO webhook_deliveries (hook_id, project_id, event, cause, error_id, notice_id, notice_at)
SELECT hook_id, project_id, event, cause, error_id, notice_id, notice_at
FROM events
-- No ORDER BY for the unique index's locks: two batches can only record the same cause for the same
-- error, and WRITE's upsert has already serialised them on that errors row.
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
    # fetch, not execute: asyncpg sends a statement without arguments as a simple query, which
    # PostgreSQL plans afresh every time (~0.9 ms for this one, ~10x its execution with no hooks);
    # fetch prepares it once per connection and runs the cached plan.
    await conn.fetch(RECORD)


def with_deploys(insert: str) -> str:
    """The deploys INSERT, extended to record its deploy.created deliveries in the same statement."""
    return DEPLOYS.format(insert=insert.strip())
