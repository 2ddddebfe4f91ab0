"""The one write path every protocol shares: credential -> canonical notices -> stream."""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass

from aiohttp import web

from services.gateway.publisher import DUPLICATE
from services.gateway.state import KEYS, LIMITER, PUBLISHER, SETTINGS
from shared import codec, ids
from shared.fingerprint import VERSION, fingerprint
from shared.keys import Credential, Project
from shared.model import Notice
from shared.web import METRICS, ApiError, credential, read_body


@dataclass(frozen=True, slots=True)
class Accepted:
    """What a protocol may tell its client about a queued notice."""

    notice_id: str
    location_id: str
    error_id: int
    fingerprint: str
    received_at: float
    duplicate: bool = False  # its once-key was seen within the hour: not queued again


def authenticate(request: web.Request, key: str | None = None) -> Project:
    """The project whose client key came with the request; 401 without a valid one, 403 for a user token."""
    if key is None:
        key = credential(request)
    if not key:
        raise ApiError(401, "Requires authentication: send the project's API key")
    cred: Credential | None = request.app[KEYS].lookup(key)
    if cred is None:
        raise ApiError(401, "Bad credentials: unknown or revoked API key")
    if cred.project is None:
        raise ApiError(403, "A user-scoped token cannot submit notices; use the project's client key")
    return cred.project


def _settings_patterns(project: Project, name: str) -> tuple[str, ...]:
    value = project.settings.get(name)
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


async def enqueue(
    request: web.Request,
    project: Project,
    notices: list[tuple[Notice, bytes]],
    once: list[str] | None = None,
) -> list[Accepted]:
    """Fingerprint, assign ids, and queue; returns once Redis holds every entry (else 503)."""
    app_patterns = _settings_patterns(project, "app_patterns")
    lib_patterns = _settings_patterns(project, "library_patterns")
    now_ms = time.time_ns() // 1_000_000
    accepted: list[Accepted] = []
    entries = []
    for notice, raw in notices:
        fp = fingerprint(notice, app_patterns, lib_patterns)
        nid = str(ids.uuid7(now_ms))
        loc = str(uuid.uuid4())
        eid = ids.error_id(project.id, notice["environment"], fp)
        entries.append(
            codec.encode(
                {
                    "v": codec.FORMAT,
                    "id": nid,
                    "loc": loc,
                    "pid": project.id,
                    "eid": eid,
                    "fp": fp,
                    "gv": VERSION,
                    "n": notice,
                    "raw": raw,
                }
            )
        )
        accepted.append(Accepted(nid, loc, eid, fp, now_ms / 1000))
    if entries:
        await request.app[LIMITER].check(project, len(entries))
        stream_ids = await request.app[PUBLISHER].publish(entries, once)
        metrics = request.app[METRICS]
        for i, ((notice, _), sid) in enumerate(zip(notices, stream_ids, strict=True)):
            if sid == DUPLICATE:
                accepted[i] = dataclasses.replace(accepted[i], duplicate=True)
            else:
                metrics.inc("notices_accepted_total", protocol=notice["protocol"])
    return accepted


async def body(request: web.Request) -> bytes:
    """The decompressed request body within the configured caps."""
    s = request.app[SETTINGS]
    return await read_body(request, s.max_body, s.max_decompressed)
