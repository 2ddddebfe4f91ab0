"""Deploys: `/v1/deploys`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.query.auth import holds_credential, request_credential, require_user
from services.query.errors import not_found, path_int
from services.query.json_body import json_hash
from services.query.pagination import Page, int_param, text_param
from services.query.reads import read_conn
from services.query.state import KEYS, POOL
from shared import serialize, webhooks
from shared.keys import Credential
from shared.web import ApiError, json_response, validation_failed

COLUMNS = "id, project_id, environment, author, repository, revision, created_at, updated_at"


async def list_deploys(request: web.Request) -> web.Response:
    require_user(request)
    page = Page.from_request(request)
    project_id = int_param(request, "project_id", None)
    environment = text_param(request, "environment")
    where = "($1::int IS NULL OR project_id = $1) AND ($2::text IS NULL OR environment = $2)"
    async with read_conn(request) as conn:
        rows = await conn.fetch(
            f"SELECT {COLUMNS} FROM deploys WHERE {where}"
            " ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4",
            project_id,
            environment,
            page.per_page,
            page.offset,
        )
        total = await conn.fetchval(
            f"SELECT count(*) FROM (SELECT 1 FROM deploys WHERE {where} LIMIT {page.count_cap}) s",
            project_id,
            environment,
        )
    return json_response(
        [serialize.deploy(r) for r in rows], headers={"Link": page.link_header(request, total)}
    )


async def get_deploy(request: web.Request) -> web.Response:
    require_user(request)
    deploy_id = path_int(request, "id", "Deploy")
    async with read_conn(request) as conn:
        row = await conn.fetchrow(f"SELECT {COLUMNS} FROM deploys WHERE id = $1", deploy_id)
    if row is None:
        raise not_found("Deploy")
    return json_response(serialize.deploy(row))


def _deploy_fields(request: web.Request, data: dict[str, Any]) -> dict[str, Any]:
    errors: list[dict[str, str]] = []
    out: dict[str, Any] = {}
    for field in ("environment", "author", "repository", "revision"):
        value = data.get(field)
        if value is not None and (not isinstance(value, str) or "\x00" in value):  # PostgreSQL refuses NUL
            errors.append({"resource": "Deploy", "field": field, "code": "invalid"})
        elif holds_credential(request, value):  # a live key is never stored as data
            errors.append({"resource": "Deploy", "field": field, "code": "invalid"})
        out[field] = value or None
    if not out["environment"] and not any(e["field"] == "environment" for e in errors):
        errors.append({"resource": "Deploy", "field": "environment", "code": "missing_field"})
    project_id = data.get("project_id")
    projects = request.app[KEYS].projects
    if project_id is None and len(projects) == 1:
        project_id = next(iter(projects))  # one project: nothing to choose
    if project_id is None:
        errors.append({"resource": "Deploy", "field": "project_id", "code": "missing_field"})
    elif not isinstance(project_id, int) or isinstance(project_id, bool) or not 0 < project_id < 1 << 31:
        errors.append({"resource": "Deploy", "field": "project_id", "code": "invalid"})
    resolve = data.get("resolve_errors", False)
    if not isinstance(resolve, bool):
        errors.append({"resource": "Deploy", "field": "resolve_errors", "code": "invalid"})
    if errors:
        raise validation_failed(errors)
    out["project_id"] = project_id
    out["resolve_errors"] = resolve
    return out


def _writer(request: web.Request) -> Credential:
    """A user token (any project), or a project's client key (its own project, create only)."""
    key = request_credential(request)
    if not key:
        raise ApiError(401, "Requires authentication: send a user-scoped token or the project's client key")
    cred = request.app[KEYS].lookup(key)
    if cred is None:
        raise ApiError(401, "Bad credentials: unknown or revoked key")
    return cred


async def create_deploy(request: web.Request) -> web.Response:
    """Record a deploy; CI may use the project's client key (the project comes from the key)."""
    cred = _writer(request)
    data = await json_hash(request)
    if cred.project is not None:
        if data.get("project_id") is None:
            data["project_id"] = cred.project.id
        if data.get("resolve_errors") is True:
            raise ApiError(403, "Resolving errors with a deploy needs a user-scoped token")
    fields = _deploy_fields(request, data)
    if cred.project is not None and fields["project_id"] != cred.project.id:
        raise ApiError(403, f"This key does not belong to project {fields['project_id']}")
    async with request.app[POOL].acquire() as conn:
        if not await conn.fetchval("SELECT true FROM projects WHERE id = $1", fields["project_id"]):
            raise validation_failed([{"resource": "Project", "field": "project_id", "code": "missing"}])
        async with conn.transaction():
            # Resolving a large environment's errors may outlast the pool's read-sized statement timeout.
            await conn.execute("SET LOCAL statement_timeout = '60s'")
            row = await conn.fetchrow(
                "INSERT INTO deploys (project_id, environment, author, repository, revision)"
                f" VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}",
                fields["project_id"],
                fields["environment"],
                fields["author"],
                fields["repository"],
                fields["revision"],
            )
            assert row is not None
            # deploy.created for the project's hooks, committed with the deploy
            await webhooks.deploy_created(conn, row["id"], row["project_id"])
            resolved = 0
            if fields["resolve_errors"]:
                # As Hoptoad did: a deploy resolves the environment's open errors; new notices reopen them.
                status = await conn.execute(
                    "UPDATE errors SET resolved = true, resolved_at = now(), updated_at = now()"
                    " WHERE project_id = $1 AND environment = $2 AND NOT resolved",
                    fields["project_id"],
                    fields["environment"],
                    timeout=65,  # past the pool's command_timeout, as the SET LOCAL above
                )
                resolved = int(status.rsplit(" ", 1)[1])
    assert row is not None
    answer = serialize.deploy(row)
    if fields["resolve_errors"]:
        answer["resolved_errors"] = resolved
    return json_response(answer, status=201, headers={"Location": f"/v1/deploys/{row['id']}"})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/deploys", list_deploys),
        web.post("/v1/deploys", create_deploy),
        web.get("/v1/deploys/{id}", get_deploy),
    ]
