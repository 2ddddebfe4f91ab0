"""Projects and their settings: `/v1/projects` (user-scoped tokens only)."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeGuard

from aiohttp import web

from services.query import grouping
from services.query.auth import holds_credential, require_user
from services.query.errors import not_found, path_int
from services.query.json_body import json_hash
from services.query.pagination import PROJECTS_PER_PAGE, Page
from services.query.reads import read_conn
from services.query.state import POOL
from services.query.state import SETTINGS as APP_SETTINGS
from shared import keys
from shared.fingerprint import VERSION
from shared.timeutil import UTC, iso
from shared.web import ApiError, json_response

COLUMNS = "id, name, settings, created_at, updated_at"


def _int_range(lo: int, hi: int) -> Any:
    def check(v: Any) -> bool:
        return v is None or isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    return check


def _str_list(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) <= 100
        and all(
            isinstance(x, str) and 0 < len(x) <= 500 and "\x00" not in x
            for x in v  # jsonb refuses NUL
        )
    )


# Every setting a project may carry, and what a valid value is. null removes a setting.
SETTINGS = {
    "rate_limit_per_minute": _int_range(1, 10_000_000),
    "app_patterns": _str_list,
    "library_patterns": _str_list,
    "scrub_fields": _str_list,
    "scrub": lambda v: v is None or isinstance(v, bool),
    "retention_days": _int_range(1, 3650),
    "max_notices_per_error": _int_range(10, 10_000_000),
    "allowed_origins": keys.valid_origins,  # browser pages that may submit (services/gateway/cors.py)
    # what a notice whose protocol carries no environment is filed under ("" = none); the worker keeps
    # attaching such notices to errors stored environment-less (services/worker/environments.py)
    "default_environment": lambda v: v is None or isinstance(v, str) and len(v) <= 100 and "\x00" not in v,
    # the grouping rules' version; changing it opens a transition window (services/query/grouping.py)
    "grouping_version": grouping.valid_version,
    "grouping_window_days": _int_range(0, 365),  # 0: the next version change opens none
    "grouping_transition": lambda v: v is None,  # written by the server; null closes the window now
}


def invalid(field: str, code: str = "invalid") -> ApiError:
    return ApiError(
        422,
        "Validation failed",
        {"message": "Validation failed", "errors": [{"resource": "Project", "field": field, "code": code}]},
    )


def project_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "settings": row["settings"] or {},
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


async def list_projects(request: web.Request) -> web.Response:
    require_user(request)
    page = Page.from_request(request, default=PROJECTS_PER_PAGE, maximum=PROJECTS_PER_PAGE)
    async with read_conn(request) as conn:
        rows = await conn.fetch(
            f"SELECT {COLUMNS} FROM projects ORDER BY id LIMIT $1 OFFSET $2", page.per_page, page.offset
        )
        total = await conn.fetchval("SELECT count(*) FROM projects")
    return json_response([project_json(r) for r in rows], headers={"Link": page.link_header(request, total)})


async def get_project(request: web.Request) -> web.Response:
    require_user(request)
    pid = path_int(request, "id", "Project")
    async with read_conn(request) as conn:
        row = await conn.fetchrow(f"SELECT {COLUMNS} FROM projects WHERE id = $1", pid)
    if row is None:
        raise not_found("Project")
    async with request.app[POOL].acquire() as conn:
        live = await keys.list_keys(conn, "client", pid)
    return json_response({**project_json(row), "keys": [keys.key_json(k) for k in live]})


def _settings_patch(request: web.Request, data: dict[str, Any]) -> dict[str, Any]:
    patch = data.get("settings", {})
    if not isinstance(patch, dict):
        raise invalid("settings")
    for name, value in patch.items():
        check = SETTINGS.get(name)
        if check is None:
            raise invalid(f"settings.{name}", "unknown_field")
        if not check(value) or holds_credential(request, value):  # a live key is never stored as data
            raise invalid(f"settings.{name}")
    return patch


def _valid_name(name: Any, request: web.Request) -> TypeGuard[str]:
    return (
        isinstance(name, str)
        and bool(name.strip())
        and "\x00" not in name
        and not holds_credential(request, name)
    )


async def update_project(request: web.Request) -> web.Response:
    """Merge `settings` (null deletes a key) and optionally rename; services pick it up within seconds."""
    require_user(request)
    pid = path_int(request, "id", "Project")
    data = await json_hash(request)
    patch = _settings_patch(request, data)
    name = data.get("name")
    if name is not None and not _valid_name(name, request):
        raise invalid("name")
    set_keys = {k: v for k, v in patch.items() if v is not None}
    drop = [k for k, v in patch.items() if v is None]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if "grouping_version" in patch:  # a new version opens its transition window
            current = await conn.fetchval("SELECT settings FROM projects WHERE id = $1 FOR UPDATE", pid)
            set_keys, drop = grouping.transition(current or {}, set_keys, drop, dt.datetime.now(UTC))
        row = await conn.fetchrow(
            "UPDATE projects SET settings = (settings || $2::jsonb) - $3::text[],"
            f" name = coalesce($4, name), updated_at = now() WHERE id = $1 RETURNING {COLUMNS}",
            pid,
            set_keys,
            drop,
            name,
        )
    if row is None:
        raise not_found("Project")
    return json_response(project_json(row))


async def create_project(request: web.Request) -> web.Response:
    require_user(request)
    data = await json_hash(request)
    name = data.get("name")
    if not _valid_name(name, request):
        raise invalid("name", "missing_field" if name is None else "invalid")
    async with request.app[POOL].acquire() as conn:
        project, key = await keys.create_project(conn, name.strip())
        version = request.app[APP_SETTINGS].grouping_version
        if version != VERSION:  # new projects start with the configured rules (docs/grouping.md)
            await conn.execute(
                "UPDATE projects SET settings = settings || jsonb_build_object('grouping_version', $2::int)"
                " WHERE id = $1",
                project.id,
                version,
            )
        row = await conn.fetchrow(f"SELECT {COLUMNS} FROM projects WHERE id = $1", project.id)
    return json_response({**project_json(row), "client_key": key}, status=201)


async def delete_project(request: web.Request) -> web.Response:
    """Delete a project and everything it holds; `confirm` must repeat its name (no accidents)."""
    require_user(request)
    pid = path_int(request, "id", "Project")
    async with request.app[POOL].acquire() as conn:
        name = await conn.fetchval("SELECT name FROM projects WHERE id = $1", pid)
        if name is None:
            raise not_found("Project")
        if request.query.get("confirm") != name:
            raise invalid("confirm", "missing_field" if "confirm" not in request.query else "invalid")
        if not await keys.delete_project(conn, pid):
            raise not_found("Project")
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/projects", list_projects),
        web.post("/v1/projects", create_project),
        web.get("/v1/projects/{id}", get_project),
        web.patch("/v1/projects/{id}", update_project),
        web.post("/v1/projects/{id}", update_project),
        web.delete("/v1/projects/{id}", delete_project),
    ]
