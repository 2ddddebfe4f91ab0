"""The key lifecycle over HTTP (user tokens only): `/v1/keys` (client keys) and `/v1/tokens`.

Several client keys per project let a key be rotated without downtime: create one, deploy it,
revoke the old one. A secret is in the creation answer only; every listing masks it. A revoked key
is refused by every gateway and query process within a second (shared.keys.KeyCache).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.query.auth import holds_credential, request_credential, require_user
from services.query.errors import not_found, path_int
from services.query.json_body import json_hash
from services.query.pagination import int_param
from services.query.state import POOL, SETTINGS
from shared import keys
from shared.web import ApiError, json_response, validation_failed

MAX_LABEL = 200


def _label(request: web.Request, data: dict[str, Any], resource: str) -> str | None:
    label = data.get("label")
    if label is None:
        return None
    if (
        not isinstance(label, str)
        or len(label) > MAX_LABEL
        or "\x00" in label
        or holds_credential(request, label)  # a live key is never stored as data
    ):
        raise validation_failed([{"resource": resource, "field": "label", "code": "invalid"}])
    return label.strip() or None


async def list_keys(request: web.Request) -> web.Response:
    require_user(request)
    project_id = int_param(request, "project_id", None, resource="Key")
    async with request.app[POOL].acquire() as conn:
        rows = await keys.list_keys(conn, "client", project_id)
    return json_response([keys.key_json(r) for r in rows])


async def create_key(request: web.Request) -> web.Response:
    require_user(request)
    data = await json_hash(request)
    project_id = data.get("project_id")
    if project_id is None:
        raise validation_failed([{"resource": "Key", "field": "project_id", "code": "missing_field"}])
    if not isinstance(project_id, int) or isinstance(project_id, bool) or not 0 < project_id < 1 << 31:
        raise validation_failed([{"resource": "Key", "field": "project_id", "code": "invalid"}])
    label = _label(request, data, "Key")
    async with request.app[POOL].acquire() as conn:
        made = await keys.create_client_key(conn, project_id, label)
    if made is None:
        raise validation_failed([{"resource": "Project", "field": "project_id", "code": "missing"}])
    row, secret = made
    answer = {
        **keys.key_json(row),
        "client_key": secret,
        "dsn": keys.dsn(request.app[SETTINGS], secret, project_id),
    }
    return json_response(answer, status=201, headers={"Location": f"/v1/keys/{row['id']}"})


async def list_tokens(request: web.Request) -> web.Response:
    require_user(request)
    async with request.app[POOL].acquire() as conn:
        rows = await keys.list_keys(conn, "user")
    return json_response([keys.key_json(r) for r in rows])


async def create_token(request: web.Request) -> web.Response:
    require_user(request)
    label = _label(request, await json_hash(request), "Token")
    async with request.app[POOL].acquire() as conn:
        row, secret = await keys.create_token(conn, label)
    return json_response(
        {**keys.key_json(row), "token": secret}, status=201, headers={"Location": f"/v1/tokens/{row['id']}"}
    )


async def _get(request: web.Request, scope: str, what: str) -> web.Response:
    require_user(request)
    key_id = path_int(request, "id", what)
    async with request.app[POOL].acquire() as conn:
        row = await keys.get_key(conn, scope, key_id)
    if row is None:
        raise not_found(what)
    return json_response(keys.key_json(row))


async def _revoke(request: web.Request, scope: str, what: str) -> web.Response:
    require_user(request)
    key_id = path_int(request, "id", what)
    async with request.app[POOL].acquire() as conn:
        if scope == "user":
            own = request_credential(request)
            if own and await keys.key_id_of(conn, own) == key_id:
                raise ApiError(
                    409, "A token cannot revoke itself; use another token or `faultline token revoke`"
                )
        outcome, row = await keys.revoke_key(conn, scope, key_id)
    if outcome == "missing":
        raise not_found(what)
    if outcome == "already":
        raise ApiError(409, f"{what} {key_id} was already revoked")
    return json_response(keys.key_json(row))


async def get_key(request: web.Request) -> web.Response:
    return await _get(request, "client", "Key")


async def revoke_key(request: web.Request) -> web.Response:
    return await _revoke(request, "client", "Key")


async def get_token(request: web.Request) -> web.Response:
    return await _get(request, "user", "Token")


async def revoke_token(request: web.Request) -> web.Response:
    return await _revoke(request, "user", "Token")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/keys", list_keys),
        web.post("/v1/keys", create_key),
        web.get("/v1/keys/{id}", get_key),
        web.delete("/v1/keys/{id}", revoke_key),
        web.get("/v1/tokens", list_tokens),
        web.post("/v1/tokens", create_token),
        web.get("/v1/tokens/{id}", get_token),
        web.delete("/v1/tokens/{id}", revoke_token),
    ]
