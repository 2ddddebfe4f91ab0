"""OpenAPI 3.0 description of the query service, served at `GET /openapi.json`.

Reads and management writes need a user-scoped token (a client key gets 403); lists are paginated
with `page` / `per_page` and a `Link` header. The answers' schemas are the shapes serialize.py builds.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.query.filters import TIME_MAX, TIME_MIN
from services.query.pagination import MAX_OFFSET, MAX_PER_PAGE, PROJECTS_PER_PAGE
from services.query.state import SETTINGS
from shared.openapi import INT, OBJ, STR, Schema, answer, array, nullable, obj, operations_paths, ref
from shared.settings import Settings
from shared.web import json_response

BOOL: Schema = {"type": "boolean"}
ANY: Schema = {}
TIME: Schema = {"type": "string", "format": "date-time", "description": "`YYYY-MM-DDTHH:MM:SSZ` (UTC)"}


def errors(*codes: int) -> dict[str, Schema]:
    return {str(code): ref("responses", ERROR_RESPONSES[code][0]) for code in codes}


ERROR_RESPONSES = {
    400: (
        "BadRequest",
        "The body is not a JSON object (`Problems parsing JSON`, `Body should be a JSON Hash`)",
    ),
    401: ("Unauthorized", "No credential, or an unknown or revoked one"),
    403: ("Forbidden", "A project's client key: these need a user-scoped token"),
    404: ("NotFound", "No such resource (or an id that cannot be one)"),
    409: ("Conflict", "Already revoked, or a token revoking itself"),
    413: ("PayloadTooLarge", "Body over the size cap"),
    414: ("UriTooLong", "A list's query string over its cap (every Link URL repeats it)"),
    415: ("UnsupportedMediaType", "Unsupported Content-Encoding"),
    422: ("ValidationFailed", "A parameter or field is malformed or out of range"),
    503: (
        "Unavailable",
        "PostgreSQL is down, restarting or overloaded, or the statement ran past its timeout",
    ),
}
RETRY_AFTER: Schema = {"description": "Seconds to wait before retrying", "schema": INT}


def _error_responses() -> dict[str, Schema]:
    out = {}
    for code, (name, what) in ERROR_RESPONSES.items():
        body = ref("schemas", "ValidationFailed" if code == 422 else "Message")
        out[name] = answer(what, body, headers={"Retry-After": RETRY_AFTER} if code == 503 else None)
    return out


# ---- security and parameters ----------------------------------------------------------------------

SECURITY_SCHEMES: dict[str, Schema] = {
    "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "Api-Key"},
    "Bearer": {"type": "http", "scheme": "bearer"},
    "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
    "AccessTokenQuery": {"type": "apiKey", "in": "query", "name": "access_token"},
    "AuthTokenQuery": {"type": "apiKey", "in": "query", "name": "auth_token"},
    "KeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
    "Cookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "faultline_token",
        "description": "Set by `POST /login`; reads only",
    },
}
WRITE_SECURITY: list[Schema] = [
    {name: []}
    for name in ("ApiKeyHeader", "Bearer", "ApiKeyQuery", "AccessTokenQuery", "AuthTokenQuery", "KeyQuery")
]
READ_SECURITY = [*WRITE_SECURITY, {"Cookie": []}]
# Routes whose own `key` parameter is a setting's name: there it is never a credential.
CONFIG_SECURITY = [s for s in WRITE_SECURITY if "KeyQuery" not in s]


def path_id(name: str, what: str, schema: Schema | None = None) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": what,
        "schema": schema or {"type": "integer", "minimum": 1, "maximum": (1 << 63) - 1},
    }


def query(name: str, description: str, schema: Schema = STR) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


TIME_RANGE = (
    f"ISO 8601 time or epoch seconds, {TIME_MIN:%Y-%m-%d} to {TIME_MAX:%Y-%m-%dT%H:%M:%S}Z (422 outside)"
)
PARAMETERS: dict[str, Schema] = {
    "Page": query(
        "page",
        f"Page number, from 1; pages past {MAX_OFFSET} rows answer 422",
        {"type": "integer", "minimum": 1, "default": 1},
    ),
    "ProjectsPage": query("page", "Page number, from 1", {"type": "integer", "minimum": 1, "default": 1}),
    "ProjectsPerPage": query(
        "per_page",
        f"Projects per page (at most {PROJECTS_PER_PAGE})",
        {"type": "integer", "minimum": 1, "default": PROJECTS_PER_PAGE},
    ),
    "PerPage": query(
        "per_page",
        f"Items per page (at most {MAX_PER_PAGE})",
        {"type": "integer", "minimum": 1, "default": 30},
    ),
    "ProjectFilter": query("project_id", "Only this project", {"type": "integer", "minimum": 1}),
    "Since": query("since", TIME_RANGE, {"type": "string", "format": "date-time"}),
    "Until": query("until", TIME_RANGE, {"type": "string", "format": "date-time"}),
    "ContentEncoding": {
        "name": "Content-Encoding",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "enum": ["identity", "gzip", "x-gzip", "deflate", "br"]},
    },
    "ConfigKey": {
        "name": "key",
        "in": "query",
        "required": True,
        "description": "The setting's name",
        "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
    },
}
PAGING = [ref("parameters", "Page"), ref("parameters", "PerPage")]
PROJECT_PAGING = [ref("parameters", "ProjectsPage"), ref("parameters", "ProjectsPerPage")]
ENCODING = ref("parameters", "ContentEncoding")
LINK = {"Link": ref("headers", "Link")}

# ---- bodies -----------------------------------------------------------------------------------------

ERROR_FIELDS: dict[str, Schema] = {
    "id": INT,
    "project_id": INT,
    "exception": nullable(STR),
    "message": nullable(STR),
    "type": STR,
    "fingerprint": STR,
    "grouping_version": INT,
    "file": nullable(STR),
    "mode": nullable(STR),
    "created_at": TIME,
    "updated_at": TIME,
    "notices_count": INT,
    "first_notice_at": nullable(TIME),
    "most_recent_notice_at": nullable(TIME),
    "resolved": BOOL,
    "resolved_at": nullable(TIME),
    "regressed_at": nullable(TIME),
    "stored_notices_count": INT,
    "first_seen_revision": nullable(STR),
    "last_seen_revision": nullable(STR),
}
NOTICE_FIELDS: dict[str, Schema] = {
    "id": {**STR, "format": "uuid"},
    "error_id": INT,
    "project_id": INT,
    "location_id": {**STR, "format": "uuid"},
    "message": nullable(STR),
    "exception": nullable(STR),
    "type": STR,
    "protocol": STR,
    "mode": nullable(STR),
    "occurred_at": nullable(TIME),
    "created_at": TIME,
    "updated_at": TIME,
}
DETAIL_FIELDS: dict[str, Schema] = {
    "backtrace": nullable(array(STR)),
    "parameters": nullable(OBJ),
    "session": nullable(OBJ),
    "environment": nullable(OBJ),
}
DEPLOY_FIELDS: dict[str, Schema] = {
    "id": INT,
    "project_id": INT,
    "environment": STR,
    "author": nullable(STR),
    "repository": nullable(STR),
    "revision": nullable(STR),
    "created_at": TIME,
    "updated_at": TIME,
}
PROJECT_FIELDS: dict[str, Schema] = {
    "id": INT,
    "name": STR,
    "settings": OBJ,
    "created_at": TIME,
    "updated_at": TIME,
}
SETTINGS_PATCH = {
    "type": "object",
    "additionalProperties": False,
    "description": "Settings to merge in; null removes one",
    "properties": {
        "rate_limit_per_minute": nullable({"type": "integer", "minimum": 1, "maximum": 10_000_000}),
        "app_patterns": nullable(array({"type": "string", "minLength": 1, "maxLength": 500})),
        "library_patterns": nullable(array({"type": "string", "minLength": 1, "maxLength": 500})),
        "scrub_fields": nullable(array({"type": "string", "minLength": 1, "maxLength": 500})),
        "scrub": nullable(BOOL),
        "retention_days": nullable({"type": "integer", "minimum": 1, "maximum": 3650}),
        "max_notices_per_error": nullable({"type": "integer", "minimum": 10, "maximum": 10_000_000}),
        "allowed_origins": nullable(
            array(
                {"type": "string", "maxLength": 300},
                maxItems=100,
                description="Browser origins that may submit (`https://app.example.com`, `https://*.example.com`,"
                " `*`); unset: any origin",
            )
        ),
        "grouping_version": nullable(
            {"type": "integer", "enum": [1, 2], "description": "Grouping rules (docs/grouping.md); unset: 1"}
        ),
        "grouping_window_days": nullable(
            {
                "type": "integer",
                "minimum": 0,
                "maximum": 365,
                "description": "Transition window a version change opens (default 7)",
            }
        ),
        "grouping_transition": {
            "nullable": True,
            "enum": [None],
            "description": "Set by the server while a transition window is open; null closes it at once",
        },
    },
}
KEY_FIELDS: dict[str, Schema] = {
    "id": INT,
    "project_id": INT,
    "key": {**STR, "description": "Masked: the secret is shown only when the key is created"},
    "label": nullable(STR),
    "created_at": TIME,
    "revoked_at": nullable(TIME),
}
TOKEN_FIELDS = {k: v for k, v in KEY_FIELDS.items() if k != "project_id"}
LABEL: Schema = nullable({"type": "string", "maxLength": 200})
SCHEMAS: dict[str, Schema] = {
    "Message": obj({"message": STR}, ["message"]),
    "ValidationFailed": obj(
        {
            "message": {"type": "string", "enum": ["Validation failed"]},
            "errors": array(obj({"resource": STR, "field": STR, "code": STR}, ["resource", "field", "code"])),
        },
        ["message", "errors"],
    ),
    "Error": obj(ERROR_FIELDS, list(ERROR_FIELDS)),
    "ErrorDetail": obj(
        {**ERROR_FIELDS, **DETAIL_FIELDS, "last_notice_id": nullable(STR)},
        [*ERROR_FIELDS, *DETAIL_FIELDS, "last_notice_id"],
    ),
    "Notice": obj(NOTICE_FIELDS, list(NOTICE_FIELDS)),
    "NoticeDetail": obj(
        {
            **NOTICE_FIELDS,
            **DETAIL_FIELDS,
            "exceptions": nullable(array(OBJ)),
            "context": ANY,
            "user": ANY,
            "hostname": ANY,
            "release": ANY,
            "level": ANY,
            "source": ANY,
            "tags": ANY,
            "data": ANY,
            "reference_id": ANY,
            "user_description": ANY,
        },
        [*NOTICE_FIELDS, *DETAIL_FIELDS, "exceptions"],
    ),
    "ResolveError": obj({"resolved": BOOL}),
    "ErrorStats": obj(
        {
            "error_id": INT,
            "interval": {"type": "string", "enum": ["hour", "day"]},
            "since": TIME,
            "until": TIME,
            "total": INT,
            "series": array(obj({"t": TIME, "count": INT}, ["t", "count"])),
        },
        ["error_id", "interval", "since", "until", "total", "series"],
    ),
    "ProjectTotals": obj(
        {
            "project_id": INT,
            "name": STR,
            "errors": INT,
            "unresolved": INT,
            "notices": INT,
            "notices_24h": INT,
        },
        ["project_id", "name", "errors", "unresolved", "notices", "notices_24h"],
    ),
    "Deploy": obj(DEPLOY_FIELDS, list(DEPLOY_FIELDS)),
    "CreatedDeploy": obj(
        {**DEPLOY_FIELDS, "resolved_errors": {**INT, "description": "With resolve_errors"}},
        list(DEPLOY_FIELDS),
    ),
    "NewDeploy": obj(
        {
            "environment": {"type": "string", "minLength": 1},
            "author": nullable(STR),
            "repository": nullable(STR),
            "revision": nullable(STR),
            "project_id": {"type": "integer", "description": "May be left out while only one project exists"},
            "resolve_errors": {
                **BOOL,
                "description": "Resolve the environment's open errors (as Hoptoad did)",
            },
        },
        ["environment"],
    ),
    "Project": obj(PROJECT_FIELDS, list(PROJECT_FIELDS)),
    "ProjectWithKeys": obj(
        {**PROJECT_FIELDS, "keys": array(ref("schemas", "Key"))}, [*PROJECT_FIELDS, "keys"]
    ),
    "Key": obj(KEY_FIELDS, list(KEY_FIELDS)),
    "CreatedKey": obj({**KEY_FIELDS, "client_key": STR, "dsn": STR}, [*KEY_FIELDS, "client_key", "dsn"]),
    "NewKey": obj({"project_id": {"type": "integer", "minimum": 1}, "label": LABEL}, ["project_id"]),
    "Token": obj(TOKEN_FIELDS, list(TOKEN_FIELDS)),
    "CreatedToken": obj({**TOKEN_FIELDS, "token": STR}, [*TOKEN_FIELDS, "token"]),
    "NewToken": obj({"label": LABEL}),
    "CreatedProject": obj({**PROJECT_FIELDS, "client_key": STR}, [*PROJECT_FIELDS, "client_key"]),
    "NewProject": obj({"name": {"type": "string", "pattern": r"\S"}}, ["name"]),
    "ProjectUpdate": obj({"name": {"type": "string", "pattern": r"\S"}, "settings": SETTINGS_PATCH}),
    "Location": obj(
        {
            "location_id": {**STR, "format": "uuid"},
            "notice_id": {**STR, "format": "uuid"},
            "error_id": INT,
            "project_id": INT,
            "protocol": STR,
            "received_at": TIME,
            "url": STR,
            "payload": {
                **OBJ,
                "description": "A CrashLog notice's payload as submitted; the CrashLog interfaces "
                "built from the notice for the other protocols",
            },
            "error": {"allOf": [ref("schemas", "Error")], "nullable": True},
        },
        [
            "location_id",
            "notice_id",
            "error_id",
            "project_id",
            "protocol",
            "received_at",
            "url",
            "payload",
            "error",
        ],
    ),
    "ClientConfiguration": obj(
        {"version": INT, "settings": {"type": "object", "additionalProperties": STR}}, ["version", "settings"]
    ),
    "Readiness": obj(
        {
            "status": {"type": "string", "enum": ["ready", "unavailable"]},
            "redis": STR,
            "postgres": STR,
            "postgres_replica": STR,  # only when FAULTLINE_QUERY_DATABASE_URL names a replica
        },
        ["status", "redis", "postgres"],
    ),
}
HEADERS: dict[str, Schema] = {
    "RequestId": {
        "description": "The request's id (yours from X-Request-Id, else a fresh one)",
        "schema": STR,
    },
    "Link": {"description": 'RFC 8288 links: rel="first", "prev", "next", "last"', "schema": STR},
    "Location": {"description": "The new resource's URL", "schema": STR},
}


DEAD_LETTER = obj(
    {
        "id": STR,
        "dead_lettered_at": nullable(TIME),
        "reason": STR,
        "protocol": nullable(STR),
        "project_id": nullable(INT),
        "notice_id": nullable(STR),
        "received_at": nullable(TIME),
        "entry_id": nullable(STR),
        "consumer": nullable(STR),
        "body": nullable(STR),
        "body_encoding": nullable({"type": "string", "enum": ["utf-8", "base64"]}),
        "body_truncated": BOOL,
    },
    ["id", "reason"],
)


def json_body(schema: Schema, example: Any = None, media: str = "application/json") -> Schema:
    content: Schema = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"required": True, "content": {media: content}}


def op(
    op_id: str,
    summary: str,
    responses: dict[str, Schema],
    *,
    tag: str,
    params: list[Schema] | None = None,
    body: Schema | None = None,
    read: bool = True,
    security: list[Schema] | None = None,
) -> Schema:
    out: Schema = {
        "tags": [tag],
        "operationId": op_id,
        "summary": summary,
        "security": security if security is not None else READ_SECURITY if read else WRITE_SECURITY,
        "parameters": params or [],
        "responses": {**responses, **errors(503)},  # every operation reads PostgreSQL
    }
    if body is not None:
        out["requestBody"] = body
    return out


# ---- paths ------------------------------------------------------------------------------------------


def _key_paths() -> dict[str, Schema]:
    """The key lifecycle: client keys (`/v1/keys`) and user tokens (`/v1/tokens`)."""
    key_id = path_id("id", "Key id")
    token_id = path_id("id", "Token id")
    return {
        "/v1/keys": {
            "get": op(
                "listKeys",
                "Live client keys, masked",
                {"200": answer("The keys", array(ref("schemas", "Key"))), **errors(401, 403, 422)},
                tag="Keys",
                params=[ref("parameters", "ProjectFilter")],
                read=False,
            ),
            "post": op(
                "createKey",
                "One more client key for a project (rotation); its secret is in this answer only",
                {
                    "201": answer(
                        "The key, with its secret",
                        ref("schemas", "CreatedKey"),
                        headers={"Location": ref("headers", "Location")},
                    ),
                    **errors(400, 401, 403, 413, 415, 422),
                },
                tag="Keys",
                params=[ENCODING],
                read=False,
                body=json_body(ref("schemas", "NewKey"), {"project_id": 1, "label": "web, 2026"}),
            ),
        },
        "/v1/keys/{id}": {
            "get": op(
                "getKey",
                "One client key, masked",
                {"200": answer("The key", ref("schemas", "Key")), **errors(401, 403, 404)},
                tag="Keys",
                params=[key_id],
                read=False,
            ),
            "delete": op(
                "revokeKey",
                "Revoke a client key: refused by every service within a second",
                {"200": answer("The revoked key", ref("schemas", "Key")), **errors(401, 403, 404, 409)},
                tag="Keys",
                params=[key_id],
                read=False,
            ),
        },
        "/v1/tokens": {
            "get": op(
                "listTokens",
                "Live user tokens, masked",
                {"200": answer("The tokens", array(ref("schemas", "Token"))), **errors(401, 403)},
                tag="Keys",
                read=False,
            ),
            "post": op(
                "createToken",
                "A user-scoped token; its secret is in this answer only",
                {
                    "201": answer(
                        "The token, with its secret",
                        ref("schemas", "CreatedToken"),
                        headers={"Location": ref("headers", "Location")},
                    ),
                    **errors(400, 401, 403, 413, 415, 422),
                },
                tag="Keys",
                params=[ENCODING],
                read=False,
                body=json_body(ref("schemas", "NewToken"), {"label": "ci"}),
            ),
        },
        "/v1/tokens/{id}": {
            "get": op(
                "getToken",
                "One user token, masked",
                {"200": answer("The token", ref("schemas", "Token")), **errors(401, 403, 404)},
                tag="Keys",
                params=[token_id],
                read=False,
            ),
            "delete": op(
                "revokeToken",
                "Revoke a user token (not the one this request uses: 409)",
                {"200": answer("The revoked token", ref("schemas", "Token")), **errors(401, 403, 404, 409)},
                tag="Keys",
                params=[token_id],
                read=False,
            ),
        },
    }


def _paths() -> dict[str, Schema]:
    error_id = path_id("id", "Error id")
    update_error = op(
        "updateError",
        "Resolve or reopen an error",
        {
            "200": answer("The error", ref("schemas", "ErrorDetail")),
            **errors(400, 401, 403, 404, 413, 415, 422),
        },
        tag="Errors",
        params=[error_id, ENCODING],
        body=json_body(ref("schemas", "ResolveError"), {"resolved": True}),
        read=False,
    )
    project_id = path_id("id", "Project id")
    update_project = op(
        "updateProject",
        "Rename a project or merge its settings",
        {
            "200": answer("The project", ref("schemas", "Project")),
            **errors(400, 401, 403, 404, 413, 415, 422),
        },
        tag="Projects",
        params=[project_id, ENCODING],
        body=json_body(ref("schemas", "ProjectUpdate"), {"settings": {"retention_days": 30}}),
        read=False,
    )
    location = path_id("location_id", "A notice's location id", {"type": "string", "format": "uuid"})
    html = {"text/html": {"schema": STR}}
    config_answers = {"200": answer("The configuration", ref("schemas", "ClientConfiguration"))}

    def page(op_id: str, summary: str, status: int, tag: str, params: list[Schema] | None = None) -> Schema:
        return {
            "get": op(
                op_id,
                summary,
                {
                    str(status): {**answer(summary, STR, "text/html")},
                    **{str(c): {"description": "The sign-in form", "content": html} for c in (401, 403)},
                },
                tag=tag,
                params=params,
            )
        }

    notice_page = page(
        "noticePage", "The notice page (the sign-in form without a user token)", 200, "Pages", [location]
    )
    notice_page["get"]["responses"]["404"] = {"description": "No such notice (yet)", "content": html}
    return {
        "/v1/errors": {
            "get": op(
                "listErrors",
                "Errors, most recent first",
                {
                    "200": answer("A page of errors", array(ref("schemas", "Error")), headers=LINK),
                    **errors(401, 403, 414, 422),
                },
                tag="Errors",
                params=[
                    *PAGING,
                    ref("parameters", "ProjectFilter"),
                    query("resolved", "Include resolved errors", {"type": "boolean", "default": False}),
                    query("environment", "Only this environment"),
                    query("type", "Only this event type"),
                    query("exception", "Only this exception class"),
                    query("q", "Message or class contains"),
                    ref("parameters", "Since"),
                    ref("parameters", "Until"),
                    query(
                        "sort",
                        "Order",
                        {"type": "string", "enum": ["most_recent", "notices_count", "created"]},
                    ),
                ],
            )
        },
        "/v1/errors/{id}": {
            "get": op(
                "getError",
                "One error with its latest notice's details",
                {
                    "200": answer("The error", ref("schemas", "ErrorDetail")),
                    **errors(401, 403, 404),
                },
                tag="Errors",
                params=[error_id],
            ),
            "patch": update_error,
            "post": {**update_error, "operationId": "updateErrorByPost"},
        },
        "/v1/errors/{error_id}/notices": {
            "get": op(
                "listNotices",
                "An error's notices, newest first",
                {
                    "200": answer("A page of notices", array(ref("schemas", "Notice")), headers=LINK),
                    **errors(401, 403, 404, 414, 422),
                },
                tag="Errors",
                params=[
                    path_id("error_id", "Error id"),
                    *PAGING,
                    query("cursor", "The `next` link's keyset cursor"),
                ],
            )
        },
        "/v1/errors/{error_id}/notices/{id}": {
            "get": op(
                "getNotice",
                "One notice in full",
                {
                    "200": answer("The notice", ref("schemas", "NoticeDetail")),
                    **errors(401, 403, 404),
                },
                tag="Errors",
                params=[
                    path_id("error_id", "Error id"),
                    path_id("id", "Notice id", {"type": "string", "format": "uuid"}),
                ],
            )
        },
        "/v1/errors/{id}/stats": {
            "get": op(
                "errorStats",
                "Notices per hour or day, zero-filled",
                {
                    "200": answer("The series", ref("schemas", "ErrorStats")),
                    **errors(401, 403, 404, 422),
                },
                tag="Stats",
                params=[
                    error_id,
                    query(
                        "interval",
                        "Bucket size",
                        {"type": "string", "enum": ["hour", "day"], "default": "hour"},
                    ),
                    ref("parameters", "Since"),
                    ref("parameters", "Until"),
                ],
            )
        },
        "/v1/stats": {
            "get": op(
                "totals",
                "Per project: errors, unresolved, notices, notices in 24 h",
                {
                    "200": answer("Totals", array(ref("schemas", "ProjectTotals")), headers=LINK),
                    **errors(401, 403, 414, 422),
                },
                tag="Stats",
                params=[ref("parameters", "ProjectFilter"), *PROJECT_PAGING],
            )
        },
        "/v1/dead-letters": {
            "get": op(
                "listDeadLetters",
                "What workers refused after a 2xx, newest first (body scrubbed; `before` pages on)",
                {
                    "200": answer("A page of dead letters", array(DEAD_LETTER), headers=LINK),
                    **errors(401, 403, 422, 503),
                },
                tag="Operations",
                params=[
                    ref("parameters", "ProjectFilter"),
                    query("protocol", "Only this protocol"),
                    query("before", "Only letters older than this stream id (the next link's cursor)"),
                    query("per_page", "Letters per page (1..100, default 30)", INT),
                ],
            )
        },
        "/v1/deploys": {
            "get": op(
                "listDeploys",
                "Deploys, newest first",
                {
                    "200": answer("A page of deploys", array(ref("schemas", "Deploy")), headers=LINK),
                    **errors(401, 403, 414, 422),
                },
                tag="Deploys",
                params=[
                    *PAGING,
                    ref("parameters", "ProjectFilter"),
                    query("environment", "Only this environment"),
                ],
            ),
            "post": op(
                "createDeploy",
                "Record a deploy: a user token, or a project's client key for its own project"
                " (create only: no resolve_errors, 403 for another project)",
                {
                    "201": answer(
                        "The deploy",
                        ref("schemas", "CreatedDeploy"),
                        headers={"Location": ref("headers", "Location")},
                    ),
                    **errors(400, 401, 403, 413, 415, 422),
                },
                tag="Deploys",
                params=[ENCODING],
                read=False,
                body=json_body(
                    ref("schemas", "NewDeploy"),
                    {"environment": "production", "revision": "abc123", "author": "ci"},
                ),
            ),
        },
        "/v1/deploys/{id}": {
            "get": op(
                "getDeploy",
                "One deploy",
                {
                    "200": answer("The deploy", ref("schemas", "Deploy")),
                    **errors(401, 403, 404),
                },
                tag="Deploys",
                params=[path_id("id", "Deploy id")],
            )
        },
        "/v1/projects": {
            "get": op(
                "listProjects",
                "Every project",
                {
                    "200": answer("The projects", array(ref("schemas", "Project")), headers=LINK),
                    **errors(401, 403, 414, 422),
                },
                tag="Projects",
                params=PROJECT_PAGING,
            ),
            "post": op(
                "createProject",
                "Create a project and its first client key",
                {
                    "201": answer(
                        "The project, with its client key (shown once)", ref("schemas", "CreatedProject")
                    ),
                    **errors(400, 401, 403, 413, 415, 422),
                },
                tag="Projects",
                params=[ENCODING],
                read=False,
                body=json_body(ref("schemas", "NewProject"), {"name": "my-app"}),
            ),
        },
        "/v1/projects/{id}": {
            "get": op(
                "getProject",
                "One project",
                {
                    "200": answer(
                        "The project and its live client keys (masked)", ref("schemas", "ProjectWithKeys")
                    ),
                    **errors(401, 403, 404),
                },
                tag="Projects",
                params=[project_id],
            ),
            "patch": update_project,
            "post": {**update_project, "operationId": "updateProjectByPost"},
            "delete": op(
                "deleteProject",
                "Delete a project with its keys, errors, notices and deploys",
                {"204": answer("Deleted"), **errors(401, 403, 404, 422)},
                tag="Projects",
                params=[
                    project_id,
                    {
                        "name": "confirm",
                        "in": "query",
                        "required": True,
                        "description": "The project's name, repeated (422 otherwise)",
                        "schema": STR,
                    },
                ],
                read=False,
            ),
        },
        **_key_paths(),
        **_webhook_paths(),
        **_grouping_paths(),
        "/api/v2/projects/{id}/config": {
            "get": op(
                "getClientConfiguration",
                "A project's Exceptionless client configuration; 304 when `v` is the current version",
                {**config_answers, "304": answer("Up to date (empty body)"), **errors(401, 403, 404)},
                tag="Exceptionless",
                params=[project_id, query("v", "The version the caller holds")],
            ),
            "post": op(
                "setClientConfiguration",
                'Set one setting (body: a JSON string, or {"value": string})',
                {
                    **config_answers,
                    **errors(400, 401, 403, 404, 413, 415),
                },
                tag="Exceptionless",
                security=CONFIG_SECURITY,
                params=[project_id, ref("parameters", "ConfigKey"), ENCODING],
                body=json_body(
                    {
                        "anyOf": [
                            {"type": "string", "pattern": r"\S", "maxLength": 10_000},
                            obj(
                                {"value": {"type": "string", "pattern": r"\S", "maxLength": 10_000}},
                                ["value"],
                            ),
                        ]
                    },
                    "true",
                ),
            ),
            "delete": op(
                "deleteClientConfiguration",
                "Remove one setting",
                {
                    **config_answers,
                    **errors(400, 401, 403, 404),
                },
                tag="Exceptionless",
                security=CONFIG_SECURITY,
                params=[project_id, ref("parameters", "ConfigKey")],
            ),
        },
        "/locate/{location_id}": {
            "get": {
                "tags": ["Location"],
                "operationId": "locate",
                "security": [],
                "summary": "Redirect to the notice's page once it is stored (CrashLog's /locate)",
                "parameters": [location],
                "responses": {
                    "301": answer("To the notice page", headers={"Location": ref("headers", "Location")}),
                    **errors(404),
                },
            }
        },
        "/api/locate/{location_id}": {
            "get": op(
                "apiLocate",
                "A notice by location id, with its error",
                {
                    "200": answer("The notice", ref("schemas", "Location")),
                    **errors(401, 403, 404),
                },
                tag="Location",
                params=[location],
            )
        },
        "/notices/{location_id}": notice_page,
        "/login": {
            "get": {
                "tags": ["Pages"],
                "operationId": "loginForm",
                "summary": "The sign-in form",
                "security": [],
                "parameters": [query("next", "Local path to return to")],
                "responses": {"200": {"description": "The form", "content": html}},
            },
            "post": {
                "tags": ["Pages"],
                "operationId": "login",
                "security": [],
                "summary": "Sign in with a user token: sets the faultline_token cookie",
                "requestBody": json_body(
                    obj({"token": STR, "next": STR}, ["token"]), media="application/x-www-form-urlencoded"
                ),
                "responses": {
                    "200": {"description": "Signed in", "content": html},
                    "303": {"description": "Signed in: back to `next`"},
                    "400": {"description": "The form could not be read", "content": html},
                    **{
                        str(c): {"description": "Unknown token, or a client key", "content": html}
                        for c in (401, 403)
                    },
                },
            },
        },
        "/logout": {
            "post": {
                "tags": ["Pages"],
                "operationId": "logout",
                "security": [],
                "summary": "Forget the cookie",
                "responses": {"303": {"description": "To /login"}},
            }
        },
        **operations_paths(),
    }


def _webhook_paths() -> dict[str, Schema]:
    from services.query import webhooks_spec  # it builds on this module's helpers

    return webhooks_spec.paths()


def _grouping_paths() -> dict[str, Schema]:
    from services.query import grouping_spec  # merge and split; it builds on this module's helpers

    return grouping_spec.paths()


def _webhook_schemas() -> dict[str, Schema]:
    from services.query import webhooks_spec

    return webhooks_spec.SCHEMAS


def _grouping_schemas() -> dict[str, Schema]:
    from services.query import grouping_spec

    return grouping_spec.SCHEMAS


def spec(settings: Settings) -> dict[str, Any]:
    """The query service's OpenAPI 3.0.3 document; URLs in it are this deployment's."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Faultline query API",
            "version": "1",
            "description": "Errors, notices, deploys, projects and statistics. Every endpoint but the "
            "location redirect and the sign-in pages needs a user-scoped token. Lists take `page` and "
            f"`per_page` and answer with a `Link` header whose URLs start at {settings.public_url}.",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": n}
            for n in (
                "Errors",
                "Stats",
                "Deploys",
                "Projects",
                "Keys",
                "Webhooks",
                "Exceptionless",
                "Location",
                "Pages",
                "Operations",
            )
        ],
        "paths": _paths(),
        "components": {
            "schemas": {**SCHEMAS, **_webhook_schemas(), **_grouping_schemas()},
            "responses": _error_responses(),
            "headers": HEADERS,
            "parameters": PARAMETERS,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


async def serve(request: web.Request) -> web.Response:
    """GET /openapi.json."""
    return json_response(spec(request.app[SETTINGS]))
