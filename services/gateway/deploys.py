"""Airbrake's deploy notification, `POST /api/v4/projects/{project_id}/deploys`, with the project key.

PyPI `airbrake` 2.2.0's `deploy()` posts `{environment, username, repository, revision, version}`
with `?key=`. The gateway does not write PostgreSQL: the deploy is queued on the stream like a
notice (`stream.Deploy`) and a worker records it. Answer `201 {"id"}` (the deploy's reference).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from shared.protocols.ingest import KEYS, authenticate, body, queue
from shared.stream import Deploy
from shared.web import ApiError, json_response, validation_failed

MAX_FIELD = 1000


def _text(data: dict[str, Any], field: str, errors: list[dict[str, str]], request: web.Request) -> str | None:
    value = data.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > MAX_FIELD or request.app[KEYS].contains_key(value):
        errors.append({"resource": "Deploy", "field": field, "code": "invalid"})
        return None
    return value.replace("\x00", "")


async def airbrake_deploy(request: web.Request) -> web.Response:
    project = authenticate(request)
    if request.match_info["project_id"] != str(project.id):
        raise ApiError(403, f"This key does not belong to project {request.match_info['project_id']}")
    try:
        data = orjson.loads(await body(request) or b"{}")
    except orjson.JSONDecodeError as e:
        raise ApiError(400, "Problems parsing JSON") from e
    if not isinstance(data, dict):
        raise ApiError(400, "Body should be a JSON Hash")
    errors: list[dict[str, str]] = []
    environment = _text(data, "environment", errors, request)
    author = _text(data, "username", errors, request)
    repository = _text(data, "repository", errors, request)
    revision = _text(data, "revision", errors, request) or _text(data, "version", errors, request)
    if environment is None and not errors:
        errors.append({"resource": "Deploy", "field": "environment", "code": "missing_field"})
    if errors:
        raise validation_failed(errors)
    assert environment is not None
    deploy = Deploy(project.id, str(uuid.uuid4()), environment, author, repository, revision, time.time())
    await queue(request, project, [deploy])
    return json_response({"id": deploy.ref}, status=201)


def routes() -> list[web.RouteDef]:
    return [web.post("/api/v4/projects/{project_id}/deploys", airbrake_deploy)]
