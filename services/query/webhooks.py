"""Webhooks of a project: `/v1/projects/{id}/webhooks` (user-scoped tokens only; issue 19).

The secret is in the creation answer only (given, or made here); afterwards a hook shows its last
four characters. URLs are checked when set: http/https with a host, and unless
FAULTLINE_WEBHOOK_ALLOW_PRIVATE, a host that resolves only to public addresses.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from services.query.auth import holds_credential, require_user
from services.query.errors import not_found, path_int
from services.query.json_body import json_hash
from services.query.pagination import Page, text_param
from services.query.state import POOL, SETTINGS
from shared import webhooks
from shared.metrics import Metrics
from shared.web import json_response, validation_failed

STATUSES = ("pending", "sending", "delivered", "failed")


async def _fields(request: web.Request, creating: bool) -> dict[str, Any]:
    fields, problems = webhooks.hook_fields(await json_hash(request), creating)
    if "url" in fields and not any(p["field"] == "url" for p in problems):
        if holds_credential(request, fields["url"]):  # a live key is never stored as data
            problems.append({"resource": "Webhook", "field": "url", "code": "invalid"})
        elif not request.app[SETTINGS].webhook_allow_private and await webhooks.refused_address(
            fields["url"]
        ):
            problems.append({"resource": "Webhook", "field": "url", "code": "private_address"})
    if problems:
        raise validation_failed(problems)
    return fields


async def _project(conn: Any, request: web.Request) -> int:
    pid = path_int(request, "id", "Project")
    if not await conn.fetchval("SELECT true FROM projects WHERE id = $1", pid):
        raise not_found("Project")
    return pid


async def _hook(conn: Any, request: web.Request) -> Any:
    pid = await _project(conn, request)
    row = await webhooks.get(conn, pid, path_int(request, "hook", "Webhook"))
    if row is None:
        raise not_found("Webhook")
    return row


async def create_hook(request: web.Request) -> web.Response:
    require_user(request)
    fields = await _fields(request, creating=True)
    problems = webhooks.spike_problem(fields["events"], fields.get("spike_threshold"))
    if problems:
        raise validation_failed(problems)
    fields.setdefault("secret", webhooks.new_secret())
    async with request.app[POOL].acquire() as conn:
        pid = await _project(conn, request)
        row = await webhooks.create(conn, pid, fields)
    return json_response(
        {**webhooks.hook_json(row), "secret": fields["secret"]},
        status=201,
        headers={"Location": f"/v1/projects/{pid}/webhooks/{row['id']}"},
    )


async def list_hooks(request: web.Request) -> web.Response:
    require_user(request)
    async with request.app[POOL].acquire() as conn:
        pid = await _project(conn, request)
        rows = await webhooks.list_hooks(conn, pid)
    return json_response([webhooks.hook_json(r) for r in rows])


async def get_hook(request: web.Request) -> web.Response:
    require_user(request)
    async with request.app[POOL].acquire() as conn:
        row = await _hook(conn, request)
    return json_response(webhooks.hook_json(row))


async def update_hook(request: web.Request) -> web.Response:
    """Change any of url, events, secret (never shown again), format, spike_threshold, enabled."""
    require_user(request)
    fields = await _fields(request, creating=False)
    async with request.app[POOL].acquire() as conn:
        old = await _hook(conn, request)
        events = fields.get("events", list(old["events"]))
        threshold = fields["spike_threshold"] if "spike_threshold" in fields else old["spike_threshold"]
        problems = webhooks.spike_problem(events, threshold)
        if problems:
            raise validation_failed(problems)
        row = await webhooks.update(conn, old["project_id"], old["id"], fields)
    if row is None:
        raise not_found("Webhook")
    return json_response(webhooks.hook_json(row))


async def delete_hook(request: web.Request) -> web.Response:
    require_user(request)
    async with request.app[POOL].acquire() as conn:
        row = await _hook(conn, request)
        if not await webhooks.delete(conn, row["project_id"], row["id"]):
            raise not_found("Webhook")
    return web.Response(status=204)


async def list_deliveries(request: web.Request) -> web.Response:
    """Newest first: status, attempts, the receiver's last answer, the next try."""
    require_user(request)
    page = Page.from_request(request)
    status = text_param(request, "status")
    if status is not None and status not in STATUSES:
        raise validation_failed([{"resource": "Query", "field": "status", "code": "invalid"}])
    async with request.app[POOL].acquire() as conn:
        hook = await _hook(conn, request)
        rows, total = await webhooks.deliveries(conn, hook["id"], status, page.per_page, page.offset)
    return json_response(
        [webhooks.delivery_json(r) for r in rows], headers={"Link": page.link_header(request, total)}
    )


async def test_hook(request: web.Request) -> web.Response:
    """Queue a `webhook.test` delivery; the deliveries listing shows how it went."""
    require_user(request)
    async with request.app[POOL].acquire() as conn:
        hook = await _hook(conn, request)
        row = await webhooks.test_send(conn, hook["project_id"], hook["id"])
    return json_response(webhooks.delivery_json(row), status=202)


async def report(app: web.Application, m: Metrics) -> None:
    """Deliveries and attempts by outcome, from the outbox (every worker's, since retention)."""
    async with asyncio.timeout(2), app[POOL].acquire() as conn:
        counts = await webhooks.outcome_counts(conn)
    m.reset("webhook_deliveries")
    m.reset("webhook_attempts")
    for status in STATUSES:
        n, attempts = counts.get(status, (0, 0))
        m.set("webhook_deliveries", n, outcome=status)
        m.set("webhook_attempts", attempts, outcome=status)


def describe(m: Metrics) -> None:
    m.describe("webhook_deliveries", "gauge", "Webhook deliveries in the outbox, by outcome")
    m.describe("webhook_attempts", "gauge", "Attempts made for the outbox's deliveries, by outcome")


def routes() -> list[web.RouteDef]:
    base = "/v1/projects/{id}/webhooks"
    return [
        web.get(base, list_hooks),
        web.post(base, create_hook),
        web.get(base + "/{hook}", get_hook),
        web.patch(base + "/{hook}", update_hook),
        web.delete(base + "/{hook}", delete_hook),
        web.get(base + "/{hook}/deliveries", list_deliveries),
        web.post(base + "/{hook}/test", test_hook),
    ]
