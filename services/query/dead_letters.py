"""`GET /v1/dead-letters`: what the workers refused after the gateway answered 2xx, newest first.

Read from every shard's dead-letter stream in Redis, merged newest first (the workers keep each refused entry's facts and its body
scrubbed as a stored notice would be). Paged with a keyset cursor (`before`, a stream id); a filtered
page scans a bounded number of entries, so a rare project's letters cost at most SCAN entries a page.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from redis.exceptions import RedisError

from services.query.auth import require_user
from services.query.ops import REDIS
from services.query.pagination import int_param, invalid, text_param
from services.query.state import SETTINGS
from shared import ids
from shared.stream import DeadLetter, Layout
from shared.timeutil import UTC, iso
from shared.web import ApiError, json_response

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
SCAN = 2000  # entries read at most per page when filtering
MAX_BODY_CHARS = 64 * 1024
_STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")
_U64 = (1 << 64) - 1  # each half of a stream id is an unsigned 64-bit number
OWN_PARAMS = ("project_id", "protocol", "before", "per_page")


def _stream_id(raw: str) -> bool:
    """A stream id Redis accepts as an exclusive upper bound (it refuses `(0-0` and halves past 2^64)."""
    if not _STREAM_ID.fullmatch(raw):
        return False
    ms, seq = (int(part) for part in raw.split("-"))
    return ms <= _U64 and seq <= _U64 and (ms, seq) != (0, 0)


async def _newest(client: Any, streams: list[str], cursor: str, count: int) -> list[tuple[str, Any]]:
    """The `count` newest letters below `cursor` over every shard's dead-letter stream, newest first
    (one pipeline). Stream ids are times, so they order letters across shards; two letters of two
    shards with the very same id would straddle a page boundary only by that tie."""
    pipe = client.pipeline(transaction=False)
    for key in streams:
        pipe.xrevrange(key, max=cursor, min="-", count=count)
    merged: list[tuple[tuple[int, int], str, Any]] = []
    for chunk in await pipe.execute():
        for raw_id, fields in chunk:
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            ms, _, seq = entry_id.partition("-")
            merged.append(((int(ms), int(seq or 0)), entry_id, fields))
    merged.sort(key=lambda m: m[0], reverse=True)
    return [(entry_id, fields) for _, entry_id, fields in merged[:count]]


def _unavailable() -> ApiError:
    return ApiError(503, "Redis unavailable; retry later", headers={"Retry-After": "5"})


def _time_of_stream_id(entry_id: str) -> str | None:
    ms = entry_id.partition("-")[0]
    try:
        return iso(dt.datetime.fromtimestamp(int(ms) / 1000, UTC).timestamp())
    except (ValueError, OverflowError, OSError):
        return None


def serialize(entry_id: str, letter: DeadLetter) -> dict[str, Any]:
    """One letter as the API shows it; a body that is not UTF-8 comes base64-encoded."""
    body: str | None = None
    encoding = None
    if letter.body is not None:
        raw = letter.body[: MAX_BODY_CHARS * 4]
        try:
            body, encoding = raw.decode("utf-8")[:MAX_BODY_CHARS], "utf-8"
        except UnicodeDecodeError:
            body, encoding = base64.b64encode(raw[:MAX_BODY_CHARS]).decode(), "base64"
    received = None
    if letter.notice_id:
        try:
            received = iso(ids.uuid7_ms(letter.notice_id) / 1000)
        except ValueError:
            received = None
    return {
        "id": entry_id,
        "dead_lettered_at": _time_of_stream_id(entry_id),
        "reason": letter.reason,
        "protocol": letter.protocol,
        "project_id": letter.project_id,
        "notice_id": letter.notice_id,
        "received_at": received,
        "entry_id": letter.entry_id or None,
        "consumer": letter.consumer or None,
        "body": body,
        "body_encoding": encoding,
        "body_truncated": letter.body is not None and len(letter.body) > MAX_BODY_CHARS,
    }


async def list_dead_letters(request: web.Request) -> web.Response:
    require_user(request)
    project_id = int_param(request, "project_id", None)
    protocol = text_param(request, "protocol")
    per_page = min(int_param(request, "per_page", DEFAULT_PER_PAGE, resource="Pagination") or 1, MAX_PER_PAGE)
    before = request.query.get("before") or None
    if before is not None and not _stream_id(before):
        raise invalid("Pagination", "before")
    client = request.app.get(REDIS)
    if client is None:
        raise _unavailable()
    s = request.app[SETTINGS]
    streams = [shard.dead for shard in Layout(s.stream_prefix, s.stream_shards).every]
    filtered = project_id is not None or protocol is not None
    out: list[dict[str, Any]] = []
    scanned = 0
    cursor = f"({before}" if before else "+"
    last_seen: str | None = None
    try:
        while len(out) < per_page and scanned < SCAN:
            count = min(500 if filtered else per_page - len(out), SCAN - scanned)
            chunk = await _newest(client, streams, cursor, count)
            if not chunk:
                last_seen = None
                break
            for entry_id, fields in chunk:
                scanned += 1
                last_seen = entry_id
                letter = DeadLetter.from_fields(fields or {})
                if project_id is not None and letter.project_id != project_id:
                    continue
                if protocol is not None and letter.protocol != protocol:
                    continue
                out.append(serialize(entry_id, letter))
                if len(out) >= per_page:
                    break
            cursor = f"({last_seen}"
    except (RedisError, OSError) as e:
        raise _unavailable() from e
    headers = {}
    if last_seen is not None:
        query = {k: v for k, v in request.query.items() if k in OWN_PARAMS and k != "before"}
        query["before"] = last_seen
        base = request.app[SETTINGS].public_url
        headers["Link"] = f'<{base}{request.path}?{urlencode(query)}>; rel="next"'
    return json_response(out, headers=headers)


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/dead-letters", list_dead_letters)]
