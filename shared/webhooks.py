"""Webhooks (issue 19): rows, validation, URL safety and signatures, shared by the query service, the
CLI and the worker's delivery loop. No aiohttp here: the CLI imports it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from shared.db import Conn
from shared.timeutil import iso

EVENTS = ("error.new", "error.regressed", "error.spike", "deploy.created")
FORMATS = ("json", "slack")
TEST_EVENT = "webhook.test"
SIGNATURE_TOLERANCE = 300  # seconds a receiver should accept a timestamp off by (replays past it refused)
MAX_URL = 2048
RESOLVE_TIMEOUT = 3.0

HOOK_COLUMNS = "id, project_id, url, events, secret, format, spike_threshold, enabled, created_at, updated_at"
DELIVERY_COLUMNS = (
    "id, hook_id, event, status, attempts, last_status, last_error, next_attempt_at, created_at,"
    " delivered_at, error_id, notice_id, deploy_id"
)

Problem = dict[str, str]


# ---- signatures -----------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`Faultline-Signature`: v1= hex HMAC-SHA256 over "{timestamp}.{body}" with the hook's secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify(
    secret: str,
    timestamp: str,
    signature: str,
    body: bytes,
    tolerance: float = SIGNATURE_TOLERANCE,
    now: float | None = None,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent (a replay is refused)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


# ---- URL safety -----------------------------------------------------------------------------------


def public_address(address: str) -> bool:
    """Whether an IP address is on the public internet (not private, loopback, link-local, …)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def url_problem(url: Any) -> str | None:
    """Why a hook URL is refused on its form (http/https with a host), or None."""
    if (
        not isinstance(url, str)
        or not url
        or len(url) > MAX_URL
        or not url.isascii()  # an IDN host goes in its punycode (xn--) form
        or any(c.isspace() or not c.isprintable() for c in url)
    ):
        return "invalid"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "invalid"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "invalid"
    return None


async def refused_address(url: str) -> bool:
    """True when the URL's host is, or resolves to, any address that is not public."""
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
        return not public_address(host)
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT)
    except (OSError, TimeoutError, UnicodeError):
        return True  # cannot be checked: refused
    return not infos or any(not public_address(str(info[4][0])) for info in infos)


# ---- validation -----------------------------------------------------------------------------------


def _problem(field: str, code: str = "invalid") -> Problem:
    return {"resource": "Webhook", "field": field, "code": code}


def hook_fields(data: Mapping[str, Any], creating: bool) -> tuple[dict[str, Any], list[Problem]]:
    """The hook fields a create or update body sets, and what is wrong with them."""
    out: dict[str, Any] = {}
    problems: list[Problem] = []
    if "url" in data or creating:
        url = data.get("url")
        code = url_problem(url) if url is not None else "missing_field"
        if code:
            problems.append(_problem("url", code))
        out["url"] = url
    if "events" in data or creating:
        events = data.get("events")
        if events is None:
            problems.append(_problem("events", "missing_field"))
        elif (
            not isinstance(events, list)
            or not events
            or any(not isinstance(e, str) or e not in EVENTS for e in events)
        ):
            problems.append(_problem("events"))
        else:
            out["events"] = sorted(set(events), key=EVENTS.index)
    if "format" in data or creating:
        fmt = data.get("format", "json")
        if fmt not in FORMATS:
            problems.append(_problem("format"))
        out["format"] = fmt
    if "spike_threshold" in data:
        value = data["spike_threshold"]
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 1_000_000_000
        ):
            problems.append(_problem("spike_threshold"))
        out["spike_threshold"] = value
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            problems.append(_problem("enabled"))
        out["enabled"] = data["enabled"]
    if "secret" in data:
        secret = data["secret"]
        if not isinstance(secret, str) or not 16 <= len(secret) <= 200 or not secret.isprintable():
            problems.append(_problem("secret"))
        out["secret"] = secret
    return out, problems


def spike_problem(events: list[str], threshold: int | None) -> list[Problem]:
    """error.spike needs a threshold."""
    if "error.spike" in events and threshold is None:
        return [_problem("spike_threshold", "missing_field")]
    return []


# ---- rows -----------------------------------------------------------------------------------------


def hook_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A hook as the API shows it: never its secret, only the secret's last four characters."""
    return {
        "id": row["id"],
        "project_id": row["project_id"],
        "url": row["url"],
        "events": list(row["events"]),
        "format": row["format"],
        "spike_threshold": row["spike_threshold"],
        "enabled": row["enabled"],
        "secret_hint": "…" + row["secret"][-4:],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def delivery_json(row: Mapping[str, Any]) -> dict[str, Any]:
    pending = row["status"] in ("pending", "sending")
    return {
        "id": str(row["id"]),
        "hook_id": row["hook_id"],
        "event": row["event"],
        "status": row["status"],
        "attempts": row["attempts"],
        "last_status": row["last_status"],
        "last_error": row["last_error"],
        "next_attempt_at": iso(row["next_attempt_at"]) if pending else None,
        "created_at": iso(row["created_at"]),
        "delivered_at": iso(row["delivered_at"]),
        "error_id": row["error_id"],
        "notice_id": str(row["notice_id"]) if row["notice_id"] else None,
        "deploy_id": row["deploy_id"],
    }


async def create(conn: Conn, project_id: int, fields: Mapping[str, Any]) -> Any:
    return await conn.fetchrow(
        "INSERT INTO webhooks (project_id, url, events, secret, format, spike_threshold, enabled)"
        f" VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, true)) RETURNING {HOOK_COLUMNS}",
        project_id,
        fields["url"],
        fields["events"],
        fields["secret"],
        fields["format"],
        fields.get("spike_threshold"),
        fields.get("enabled"),
    )


async def get(conn: Conn, project_id: int, hook_id: int) -> Any:
    return await conn.fetchrow(
        f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE project_id = $1 AND id = $2", project_id, hook_id
    )


async def list_hooks(conn: Conn, project_id: int) -> list[Any]:
    return list(
        await conn.fetch(f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE project_id = $1 ORDER BY id", project_id)
    )


async def update(conn: Conn, project_id: int, hook_id: int, fields: Mapping[str, Any]) -> Any:
    """Apply the given fields (absent ones kept); None when there is no such hook."""
    columns = ("url", "events", "secret", "format", "spike_threshold", "enabled")
    casts = ("text", "text[]", "text", "text", "integer", "boolean")
    sets = ", ".join(
        f"{c} = CASE WHEN ${i + 3}::boolean THEN ${i + 9}::{t} ELSE {c} END"
        for i, (c, t) in enumerate(zip(columns, casts, strict=True))
    )
    return await conn.fetchrow(
        f"UPDATE webhooks SET {sets}, updated_at = now() WHERE project_id = $1 AND id = $2"
        f" RETURNING {HOOK_COLUMNS}",
        project_id,
        hook_id,
        *(c in fields for c in columns),
        *(fields.get(c) for c in columns),
    )


async def delete(conn: Conn, project_id: int, hook_id: int) -> bool:
    status = await conn.execute("DELETE FROM webhooks WHERE project_id = $1 AND id = $2", project_id, hook_id)
    return not status.endswith(" 0")


async def deliveries(
    conn: Conn, hook_id: int, status: str | None, limit: int, offset: int
) -> tuple[list[Any], int]:
    where = "hook_id = $1 AND ($2::text IS NULL OR status = $2)"
    rows = await conn.fetch(
        f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {where}"
        " ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4",
        hook_id,
        status,
        limit,
        offset,
    )
    total = await conn.fetchval(f"SELECT count(*) FROM webhook_deliveries WHERE {where}", hook_id, status)
    return list(rows), int(total)


async def test_send(conn: Conn, project_id: int, hook_id: int) -> Any:
    """Queue a `webhook.test` delivery (the delivery loop sends it like any other)."""
    return await conn.fetchrow(
        "INSERT INTO webhook_deliveries (hook_id, project_id, event, cause)"
        " VALUES ($1, $2, $3, 'test:' || gen_random_uuid()) RETURNING " + DELIVERY_COLUMNS,
        hook_id,
        project_id,
        TEST_EVENT,
    )


async def deploy_created(conn: Conn, deploy_id: int, project_id: int) -> None:
    """Record deploy.created for a deploy written outside the worker (call in its transaction)."""
    await conn.execute(
        "INSERT INTO webhook_deliveries (hook_id, project_id, event, cause, deploy_id)"
        " SELECT id, project_id, 'deploy.created', 'deploy:' || $1::bigint, $1 FROM webhooks"
        " WHERE project_id = $2 AND enabled AND 'deploy.created' = ANY (events)"
        " ORDER BY id ON CONFLICT (hook_id, cause) DO NOTHING",
        deploy_id,
        project_id,
    )


async def outcome_counts(conn: Conn) -> dict[str, tuple[int, int]]:
    """Deliveries and attempts by status, for /metrics."""
    rows = await conn.fetch(
        "SELECT status, count(*) AS n, coalesce(sum(attempts), 0) AS attempts"
        " FROM webhook_deliveries GROUP BY status"
    )
    return {r["status"]: (int(r["n"]), int(r["attempts"])) for r in rows}
