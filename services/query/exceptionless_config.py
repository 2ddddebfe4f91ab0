"""Exceptionless real-time client configuration, managed with user-scoped tokens.

`POST /api/v2/projects/{id}/config?key=K` (body: a JSON string, or `{"value": "..."}` as the newer UI
sends) sets a setting, `DELETE` removes one, `GET` reads them; every change bumps the version. The
gateway serves `GET /api/v2/projects/config` from its key cache, so clients see a change within a
key-cache refresh.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from services.query.auth import holds_credential, require_user
from services.query.errors import not_found, path_int
from services.query.reads import read_conn
from services.query.state import POOL, SETTINGS
from shared.web import ApiError, json_response, read_body

MAX_KEY = 200
MAX_PROJECT_ID = (1 << 31) - 1
MAX_VALUE = 10_000
# The routes' own query parameter: the setting's name, never read as a credential here.
OWN_PARAMS = ("key",)


def _project_id(request: web.Request) -> int:
    """The path's project id; 404 for anything projects.id (an integer column) cannot hold."""
    pid = path_int(request, "id", "Project")
    if pid > MAX_PROJECT_ID:
        raise not_found("Project")
    return pid


def _config(row: Any) -> dict[str, Any]:
    return {"version": row["config_version"], "settings": row["config"] or {}}


def _key(request: web.Request) -> str:
    key = (request.query.get("key") or "").strip()
    if not key or len(key) > MAX_KEY or "\x00" in key:
        raise ApiError(400, "Invalid key value.")
    return key


def config_value(raw: bytes) -> str:
    """The value a POST sets: a JSON string or `{"value": string}`, trimmed; 400 otherwise."""
    try:
        doc = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        doc = doc.get("value")
    if not isinstance(doc, str) or not doc.strip() or len(doc) > MAX_VALUE:
        raise ApiError(400, "Invalid configuration value.")
    return doc.strip().replace("\x00", "")


async def get_config(request: web.Request) -> web.Response:
    require_user(request)
    pid = _project_id(request)
    async with read_conn(request) as conn:
        row = await conn.fetchrow("SELECT config, config_version FROM projects WHERE id = $1", pid)
    if row is None:
        raise not_found("Project")
    if request.query.get("v") == str(row["config_version"]):
        return web.Response(status=304)
    return json_response(_config(row))


async def set_config(request: web.Request) -> web.Response:
    """Set one setting; a name or value holding a live credential is refused (clients read these)."""
    require_user(request, OWN_PARAMS)
    pid = _project_id(request)
    key = _key(request)
    if holds_credential(request, key):
        raise ApiError(400, "Invalid key value: a credential cannot be a setting's name.")
    s = request.app[SETTINGS]
    value = config_value(await read_body(request, s.max_body, s.max_decompressed))
    if holds_credential(request, value):
        raise ApiError(400, "Invalid configuration value: a credential cannot be stored as a setting.")
    async with request.app[POOL].acquire() as conn:
        row = await conn.fetchrow(
            "UPDATE projects SET config = config || jsonb_build_object($2::text, $3::text),"
            " config_version = config_version + 1, updated_at = now()"
            " WHERE id = $1 RETURNING config, config_version",
            pid,
            key,
            value,
        )
    if row is None:
        raise not_found("Project")
    return json_response(_config(row))


async def delete_config(request: web.Request) -> web.Response:
    """Remove a setting; the version moves only when there was something to remove."""
    require_user(request, OWN_PARAMS)
    pid = _project_id(request)
    key = _key(request)
    async with request.app[POOL].acquire() as conn:
        row = await conn.fetchrow(
            "UPDATE projects SET config = config - $2::text, config_version = config_version + 1,"
            " updated_at = now() WHERE id = $1 AND config ? $2::text RETURNING config, config_version",
            pid,
            key,
        )
        if row is None:
            row = await conn.fetchrow("SELECT config, config_version FROM projects WHERE id = $1", pid)
    if row is None:
        raise not_found("Project")
    return json_response(_config(row))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v2/projects/{id}/config", get_config),
        web.post("/api/v2/projects/{id}/config", set_config),
        web.delete("/api/v2/projects/{id}/config", delete_config),
    ]
