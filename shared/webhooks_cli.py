"""`faultline webhook …`: the query service's webhook management, from the command line (issue 19)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import asyncpg

from shared import webhooks
from shared.settings import Settings


class WebhookCommandError(Exception):
    """Printed as `{"error": ...}` by shared/cli.py, with the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def add_parser(sub: Any) -> None:
    hook = sub.add_parser("webhook", help="manage a project's webhooks").add_subparsers(
        dest="action", required=True
    )
    create = hook.add_parser("create", help="add a webhook (its secret printed once)")
    create.add_argument("--project", type=int, required=True)
    update = hook.add_parser("update", help="change a webhook")
    update.add_argument("id", type=int)
    for p, required in ((create, True), (update, False)):
        p.add_argument("--url", required=required)
        p.add_argument(
            "--event",
            action="append",
            choices=webhooks.EVENTS,
            help="repeat for each event",
            required=required,
        )
        p.add_argument("--format", choices=webhooks.FORMATS, default="json" if required else None)
        p.add_argument("--spike-threshold", type=int, default=None)
        p.add_argument("--secret", default=None, help="default (create): a new random secret")
    update.add_argument("--enable", dest="enabled", action="store_true", default=None)
    update.add_argument("--disable", dest="enabled", action="store_false")
    lst = hook.add_parser("list", help="a project's webhooks (secrets masked), one JSON line each")
    lst.add_argument("--project", type=int, required=True)
    for name, text in (
        ("show", "one webhook"),
        ("delete", "delete a webhook and its deliveries"),
        ("test", "queue a webhook.test delivery"),
        ("deliveries", "a webhook's deliveries, newest first"),
    ):
        p = hook.add_parser(name, help=text)
        p.add_argument("id", type=int)
        if name == "deliveries":
            p.add_argument("--status", choices=("pending", "sending", "delivered", "failed"), default=None)
            p.add_argument("--limit", type=int, default=50)


def _print(value: object) -> None:
    print(json.dumps(value, ensure_ascii=False))


async def _fields(settings: Settings, args: argparse.Namespace, creating: bool) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for arg, name in (("url", "url"), ("event", "events"), ("format", "format"), ("secret", "secret")):
        if getattr(args, arg, None) is not None:
            data[name] = getattr(args, arg)
    if args.spike_threshold is not None:
        data["spike_threshold"] = args.spike_threshold
    if getattr(args, "enabled", None) is not None:
        data["enabled"] = args.enabled
    fields, problems = webhooks.hook_fields(data, creating)
    if problems:
        raise WebhookCommandError(f"invalid: {', '.join(p['field'] for p in problems)}", 2)
    if (
        "url" in fields
        and not settings.webhook_allow_private
        and await webhooks.refused_address(fields["url"])
    ):
        raise WebhookCommandError(
            "the URL's host is private, loopback or unresolvable (FAULTLINE_WEBHOOK_ALLOW_PRIVATE=1 allows it)",
            2,
        )
    return fields


async def _hook(conn: asyncpg.Connection, hook_id: int) -> Any:
    row = await conn.fetchrow(f"SELECT {webhooks.HOOK_COLUMNS} FROM webhooks WHERE id = $1", hook_id)
    if row is None:
        raise WebhookCommandError(f"webhook {hook_id} not found")
    return row


async def run(settings: Settings, conn: asyncpg.Connection, args: argparse.Namespace) -> None:
    action = args.action
    if action == "create":
        fields = await _fields(settings, args, creating=True)
        if webhooks.spike_problem(fields["events"], fields.get("spike_threshold")):
            raise WebhookCommandError("error.spike needs --spike-threshold", 2)
        fields.setdefault("secret", webhooks.new_secret())
        if not await conn.fetchval("SELECT true FROM projects WHERE id = $1", args.project):
            raise WebhookCommandError(f"project {args.project} not found")
        row = await webhooks.create(conn, args.project, fields)
        _print({**webhooks.hook_json(row), "secret": fields["secret"]})
    elif action == "list":
        for row in await webhooks.list_hooks(conn, args.project):
            _print(webhooks.hook_json(row))
    elif action == "show":
        _print(webhooks.hook_json(await _hook(conn, args.id)))
    elif action == "update":
        old = await _hook(conn, args.id)
        fields = await _fields(settings, args, creating=False)
        events = fields.get("events", list(old["events"]))
        if webhooks.spike_problem(events, fields.get("spike_threshold", old["spike_threshold"])):
            raise WebhookCommandError("error.spike needs --spike-threshold", 2)
        _print(webhooks.hook_json(await webhooks.update(conn, old["project_id"], old["id"], fields)))
    elif action == "delete":
        old = await _hook(conn, args.id)
        await webhooks.delete(conn, old["project_id"], old["id"])
        _print({"id": args.id, "deleted": True})
    elif action == "test":
        old = await _hook(conn, args.id)
        _print(webhooks.delivery_json(await webhooks.test_send(conn, old["project_id"], old["id"])))
    else:  # deliveries
        old = await _hook(conn, args.id)
        rows, _ = await webhooks.deliveries(conn, old["id"], args.status, max(1, args.limit), 0)
        for row in rows:
            _print(webhooks.delivery_json(row))
