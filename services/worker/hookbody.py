"""What a webhook delivery sends: the JSON payload, or a Slack incoming-webhook body (issue 19).

The payload carries the error as `GET /v1/errors/{id}` shows it (services/query/serialize.py), the
notice that caused the event, and links to the query API and the notice page. It is made once, at a
delivery's first attempt, and kept: every retry sends the same bytes under the same delivery id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import orjson

from shared import serialize
from shared.db import Conn
from shared.ids import uuid7_ms
from shared.timeutil import iso

SLACK_TEXT_LIMIT = 3000  # a section block's text (Slack's Block Kit reference)
SLACK_FALLBACK_LIMIT = 4000  # the top-level `text`, shown in notifications

TITLES = {
    "error.new": "New error",
    "error.regressed": "Error regressed",
    "error.spike": "Error spiking",
    "deploy.created": "Deploy",
    "webhook.test": "Test delivery",
}


async def payload(conn: Conn, delivery: Mapping[str, Any], public_url: str) -> dict[str, Any]:
    """The JSON payload of one delivery, read from the rows it names."""
    base = public_url.rstrip("/")
    out: dict[str, Any] = {
        "event": delivery["event"],
        "delivery_id": str(delivery["id"]),
        "created_at": iso(delivery["created_at"]),
        "project": None,
        "error": None,
        "notice": None,
        "links": {},
    }
    # One round trip for the project, the error and its last notice's body (the detail's backtrace).
    row = await conn.fetchrow(
        "SELECT p.name AS project_name, e.*, n.body AS last_body FROM projects p"
        " LEFT JOIN errors e ON e.id = $2"
        " LEFT JOIN notices n ON n.id = e.last_notice_id AND n.received_at = e.last_notice_at"
        " WHERE p.id = $1",
        delivery["project_id"],
        delivery["error_id"],
    )
    if row is not None:
        out["project"] = {"id": delivery["project_id"], "name": row["project_name"]}
    links: dict[str, str] = out["links"]
    if row is not None and row["id"] is not None:
        out["error"] = serialize.error(row, row["last_body"], detail=True)
        links["error"] = f"{base}/v1/errors/{row['id']}"
        links["error_notices"] = f"{base}/v1/errors/{row['id']}/notices"
    if delivery["notice_id"] is not None:
        notice = await conn.fetchrow(
            "SELECT id, received_at, project_id, error_id, location_id, protocol, type, environment,"
            " exception, message, occurred_at FROM notices WHERE id = $1 AND received_at = $2",
            delivery["notice_id"],
            _notice_time(delivery["notice_id"]),
        )
        if notice is not None:
            out["notice"] = serialize.notice(notice)
            links["notice"] = f"{base}/v1/errors/{notice['error_id']}/notices/{notice['id']}"
            links["notice_page"] = f"{base}/notices/{notice['location_id']}"
    if delivery["deploy_id"] is not None:
        deploy = await conn.fetchrow("SELECT * FROM deploys WHERE id = $1", delivery["deploy_id"])
        if deploy is not None:
            out["deploy"] = serialize.deploy(deploy)
            links["deploy"] = f"{base}/v1/deploys/{deploy['id']}"
    return out


def _notice_time(notice_id: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(uuid7_ms(notice_id) / 1000, dt.UTC)


def encode(data: Mapping[str, Any], fmt: str) -> bytes:
    """The bytes a delivery sends: the payload itself, or Slack's shape of it."""
    return orjson.dumps(slack(data) if fmt == "slack" else data)


def _escape(text: str) -> str:
    """Slack's three control characters (its "Formatting text" reference): &, <, >."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack(data: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook body: `text` (the notification fallback) and Block Kit `blocks`."""
    event = str(data.get("event"))
    title = TITLES.get(event, event)
    project = (data.get("project") or {}).get("name") or ""
    error = data.get("error") or {}
    deploy = data.get("deploy") or {}
    links = data.get("links") or {}
    if error:
        what = (
            f"{error.get('exception') or error.get('type') or 'error'}: {error.get('message') or ''}".strip()
        )
    elif deploy:
        what = f"{deploy.get('environment') or ''} {deploy.get('revision') or ''}".strip()
    else:
        what = "Faultline can reach this webhook."
    headline = f"{title} in {project}" if project else title
    fallback = _cut(f"{headline}: {what}", SLACK_FALLBACK_LIMIT)
    link = links.get("notice_page") or links.get("error") or links.get("deploy")
    section = f"*{_escape(_cut(headline, 200))}*\n{_cut(_escape(what), SLACK_TEXT_LIMIT - 600)}"
    if link:
        section += f"\n<{link}|Open in Faultline>"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(section, SLACK_TEXT_LIMIT)}}
    ]
    facts = []
    if error:
        facts += [f"environment: {error.get('mode') or '-'}", f"notices: {error.get('notices_count')}"]
        if error.get("file"):
            facts.append(f"file: {error['file']}")
    if deploy and deploy.get("author"):
        facts.append(f"by {deploy['author']}")
    if facts:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _cut(_escape(" · ".join(facts)), SLACK_TEXT_LIMIT)}],
            }
        )
    return {"text": _escape(fallback), "blocks": blocks}
