"""OpenAPI 3.0 description of the gateway, served at `GET /openapi.json`.

Request bodies are as loose as each protocol is (unknown fields are kept, not refused), with the fields
the gateway requires marked required. Every answer a route can give is listed with its body, so a
schema-driven client (and the schemathesis run in tests/fuzz) can hold the gateway to it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.gateway.state import SETTINGS
from shared.openapi import INT, OBJ, STR, Schema, answer, array, nullable, obj, operations_paths, ref
from shared.settings import Settings
from shared.web import json_response

MESSAGE = ref("schemas", "Message")
HOPTOAD_EXAMPLE = (
    '<?xml version="1.0" encoding="UTF-8"?><notice version="2.3"><api-key>CLIENT_KEY</api-key>'
    "<notifier><name>Airbrake Notifier</name><version>3.1.6</version></notifier>"
    "<error><class>RuntimeError</class><message>RuntimeError: boom</message><backtrace>"
    '<line method="index" file="[PROJECT_ROOT]/app/controllers/users_controller.rb" number="14"/>'
    "</backtrace></error><server-environment><environment-name>production</environment-name>"
    "</server-environment></notice>"
)
DETAIL = ref("schemas", "SentryError")


def errors(body: Schema, *codes: int, empty: tuple[int, ...] = ()) -> dict[str, Schema]:
    """Error answers with the protocol's body shape; `empty` ones carry no body at all."""
    what = {
        400: "The body is not what the protocol expects (or not valid in its Content-Encoding)",
        401: "No credential, or an unknown or revoked one",
        403: "A user-scoped token, or a client key of another project",
        404: "No such route, or a project id that is not the key's",
        411: "Empty body",
        413: "Body over the size cap (compressed or decompressed), or too many events",
        415: "Unsupported Content-Encoding (or media type, where the protocol checks it)",
        422: "Well-formed, but fields are missing or of the wrong type",
        429: "The project's rate limit is exhausted",
        503: "The queue is unavailable or its backlog is over the limit",
    }
    retry = {"Retry-After": ref("headers", "RetryAfter")}
    limits = {
        **retry,
        "X-RateLimit-Delay": ref("headers", "RateLimitDelay"),
        "X-Sentry-Rate-Limits": ref("headers", "SentryRateLimits"),
    }
    out: dict[str, Schema] = {}
    for code in (*codes, *empty):
        headers = limits if code == 429 else retry if code == 503 else None
        out[str(code)] = answer(what[code], None if code in empty else body, headers=headers)
    return out


# ---- security -------------------------------------------------------------------------------------

SECURITY_SCHEMES: dict[str, Schema] = {
    "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "Api-Key"},
    "Bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <key>` (`Token` too)",
    },
    "Basic": {
        "type": "http",
        "scheme": "basic",
        "description": "Exceptionless: the key as user name, or user `client` with the key as password",
    },
    "AirbrakeToken": {"type": "apiKey", "in": "header", "name": "X-Airbrake-Token"},
    "SentryAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Sentry-Auth",
        "description": "`Sentry sentry_key=<key>, sentry_version=7, ...` (or as `Authorization`)",
    },
    "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
    "KeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
    "AccessTokenQuery": {"type": "apiKey", "in": "query", "name": "access_token"},
    "AuthTokenQuery": {"type": "apiKey", "in": "query", "name": "auth_token"},
    "SentryKeyQuery": {"type": "apiKey", "in": "query", "name": "sentry_key"},
}
_GENERIC = [
    "ApiKeyHeader",
    "Bearer",
    "AirbrakeToken",
    "ApiKeyQuery",
    "KeyQuery",
    "AccessTokenQuery",
    "AuthTokenQuery",
]


def security(*extra: str) -> list[Schema]:
    """Any one of the generic forms of a project's client key, or one of `extra`."""
    return [{name: []} for name in (*_GENERIC, *extra)]


# ---- parameters -----------------------------------------------------------------------------------

PARAMETERS: dict[str, Schema] = {
    "ContentEncoding": {
        "name": "Content-Encoding",
        "in": "header",
        "required": False,
        "description": "The body's compression; anything else is answered 415",
        "schema": {"type": "string", "enum": ["identity", "gzip", "x-gzip", "deflate", "br"]},
    },
    "SentryProjectId": {
        "name": "project_id",
        "in": "path",
        "required": True,
        "description": "The project the DSN names; it must be the key's",
        "schema": {"type": "integer", "minimum": 0},
    },
    "ExceptionlessProjectId": {
        "name": "project_id",
        "in": "path",
        "required": True,
        "description": "The project the client names; 404 unless it is the key's",
        "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
    },
    "ReferenceId": {
        "name": "reference_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9-]{8,100}$"},
    },
    "EventType": {
        "name": "type",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
    },
}
ENCODING = ref("parameters", "ContentEncoding")


def query(name: str, description: str, schema: Schema = STR) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


# ---- request and answer bodies --------------------------------------------------------------------

FRAME_FIELDS = {
    "file": nullable(STR),
    "line": nullable(INT),
    "column": nullable(INT),
    "function": nullable(STR),
}
SCHEMAS: dict[str, Schema] = {
    "Message": obj({"message": STR}, ["message"]),
    "ValidationFailed": obj(
        {
            "message": {"type": "string", "enum": ["Validation failed"]},
            "errors": array(obj({"resource": STR, "field": STR, "code": STR}, ["resource", "field", "code"])),
        },
        ["message", "errors"],
    ),
    "SentryError": obj({"detail": STR}, ["detail"]),
    "ExceptionerNotice": obj(
        {
            "message": {
                **STR,
                "minLength": 1,
                "description": "`Class: message`, as Hoptoad notices carry it",
            },
            "error": obj(
                {
                    "exception": {**STR, "minLength": 1},
                    "backtrace": array(
                        STR, description="Backtrace lines, innermost first: `file:line:in `method``"
                    ),
                    "parameters": OBJ,
                    "session": OBJ,
                    "environment": OBJ,
                    "file": STR,
                    "mode": STR,
                },
                ["exception"],
            ),
        },
        ["message", "error"],
    ),
    "ExceptionerAccepted": obj(
        {
            "id": {**STR, "format": "uuid", "description": "The notice id (UUIDv7)"},
            "error_id": {**INT, "description": "The id of the error the notice belongs to"},
            "message": nullable(STR),
            "created_at": {**STR, "format": "date-time"},
            "updated_at": {**STR, "format": "date-time"},
        },
        ["id", "error_id", "message", "created_at", "updated_at"],
    ),
    "CrashLogPayload": obj(
        {
            "notifier": OBJ,
            "event": obj(
                {
                    "message": STR,
                    "class_name": STR,
                    "created_at": {**STR, "format": "date-time"},
                    "timestamp": {"type": "number"},
                }
            ),
            "backtrace": array(
                obj(
                    {
                        "file": STR,
                        "number": {"anyOf": [INT, STR]},
                        "method": STR,
                        "context_line": STR,
                        "pre_context": array(STR),
                        "post_context": array(STR),
                    }
                )
            ),
            "environment": obj({"name": STR, "project_root": STR}),
            "context": obj({"hostname": STR, "current_user": {}}),
        },
        ["notifier", "event"],
    ),
    "CrashLogAccepted": obj({"location_id": {**STR, "format": "uuid"}}, ["location_id"]),
    "SentryEvent": obj(
        {
            "event_id": {**STR, "description": "32 hex digits (a UUID in any spelling)"},
            "timestamp": {"anyOf": [STR, {"type": "number"}]},
            "level": STR,
            "logger": STR,
            "platform": STR,
            "message": {"anyOf": [STR, OBJ]},
            "logentry": OBJ,
            "exception": {"anyOf": [OBJ, array(OBJ)]},
            "environment": STR,
            "release": STR,
            "server_name": STR,
            "tags": {"anyOf": [OBJ, array({})]},
            "user": OBJ,
            "request": OBJ,
            "contexts": OBJ,
            "extra": OBJ,
            "fingerprint": array({}),
        }
    ),
    "SentryAccepted": obj({"id": {**STR, "pattern": "^[0-9a-f]{32}$"}}),
    "AirbrakeNotice": obj(
        {
            "errors": array(
                obj({"type": STR, "message": STR, "backtrace": array(obj(FRAME_FIELDS))}), minItems=1
            ),
            "context": OBJ,
            "params": OBJ,
            "session": OBJ,
            "environment": OBJ,
        },
        ["errors"],
    ),
    "AirbrakeAccepted": obj({"id": {**STR, "format": "uuid"}, "url": STR}, ["id", "url"]),
    "ExceptionlessEvent": obj(
        {
            "type": STR,
            "source": STR,
            "date": STR,
            "message": STR,
            "reference_id": STR,
            "tags": array(STR),
            "geo": STR,
            "value": {"type": "number"},
            "count": INT,
            "data": obj(
                {
                    "@error": OBJ,
                    "@simple_error": OBJ,
                    "@request": OBJ,
                    "@environment": OBJ,
                    "@user": OBJ,
                    "@stack": {},
                    "@version": STR,
                    "@level": STR,
                }
            ),
        }
    ),
    "ExceptionlessUserDescription": obj(
        {"description": {**STR, "pattern": r"\S"}, "email_address": STR, "data": OBJ}, ["description"]
    ),
    "ExceptionlessConfiguration": obj(
        {"version": INT, "settings": {"type": "object", "additionalProperties": STR}}, ["version", "settings"]
    ),
}
HEADER_SCHEMAS: dict[str, Schema] = {
    "RequestId": {
        "description": "The request's id (yours from X-Request-Id, else a fresh one)",
        "schema": STR,
    },
    "RetryAfter": {"description": "Seconds to wait before retrying", "schema": INT},
    "RateLimitDelay": {"description": "Airbrake notifiers' retry delay in seconds", "schema": INT},
    "SentryRateLimits": {
        "description": "`<seconds>::<scope>[:<reason>]`, what the Sentry SDKs honour",
        "schema": STR,
    },
    "ConfigVersion": {"description": "The project's client-configuration version", "schema": INT},
    "Location": {"description": "Where the notice will be found", "schema": STR},
}
CONFIG_VERSION = {"X-Exceptionless-ConfigVersion": ref("headers", "ConfigVersion")}

# Examples the schemathesis examples phase sends as they are: each must be accepted.
EXCEPTIONER_EXAMPLE = {
    "message": "RuntimeError: Run Forrest, run!",
    "error": {
        "exception": "RuntimeError",
        "mode": "production",
        "backtrace": ["[PROJECT_ROOT]/app/controllers/home_controller.rb:7:in `run`"],
    },
}
CRASHLOG_EXAMPLE = {
    "notifier": {"name": "crashlog-ruby", "version": "1.0.0"},
    "event": {
        "class_name": "NoMethodError",
        "message": "undefined method `x'",
        "created_at": "2026-11-24T01:30:22Z",
    },
    "backtrace": [{"file": "/srv/app/app/models/user.rb", "number": 14, "method": "save"}],
    "environment": {"name": "production", "project_root": "/srv/app"},
}
SENTRY_EXAMPLE = {
    "level": "error",
    "platform": "python",
    "exception": {
        "values": [
            {
                "type": "KeyError",
                "value": "42",
                "stacktrace": {
                    "frames": [{"filename": "shop.py", "function": "charge", "lineno": 7, "in_app": True}]
                },
            }
        ]
    },
}
ENVELOPE_EXAMPLE = '{}\n{"type":"event"}\n' + (
    '{"level":"error","exception":{"values":[{"type":"KeyError","value":"42"}]}}\n'
)
AIRBRAKE_EXAMPLE = {
    "errors": [
        {
            "type": "PaymentError",
            "message": "card declined",
            "backtrace": [{"file": "/PROJECT_ROOT/shop.py", "function": "checkout", "line": 14}],
        }
    ],
    "context": {"environment": "production", "notifier": {"name": "pybrake"}},
}
EXCEPTIONLESS_EXAMPLE = {
    "type": "error",
    "date": "2026-11-24T01:30:22.746Z",
    "data": {
        "@error": {
            "type": "TypeError",
            "message": "total is not a number",
            "stack_trace": [
                {"name": "checkoutTotal", "file_name": "/app/checkout.js", "line_number": 57, "column": 9}
            ],
        }
    },
}


def json_body(schema: Schema, example: Any, *, extra: dict[str, Schema] | None = None) -> Schema:
    return {
        "required": True,
        "content": {"application/json": {"schema": schema, "example": example}, **(extra or {})},
    }


# ---- operations -----------------------------------------------------------------------------------


def _ops() -> dict[str, Schema]:
    exceptioner = {
        "post": {
            "tags": ["Exceptioner"],
            "operationId": "exceptionerPostNotice",
            "summary": "Submit a notice (Exceptioner / Hoptoad API v1)",
            "security": security(),
            "parameters": [ENCODING],
            "requestBody": json_body(ref("schemas", "ExceptionerNotice"), EXCEPTIONER_EXAMPLE),
            "responses": {
                "201": answer(
                    "Queued",
                    ref("schemas", "ExceptionerAccepted"),
                    headers={"Location": ref("headers", "Location")},
                ),
                **errors(MESSAGE, 400, 401, 403, 413, 415, 429, 503),
                "422": answer("Fields missing or of the wrong type", ref("schemas", "ValidationFailed")),
            },
        }
    }
    crashlog = {
        "post": {
            "tags": ["CrashLog"],
            "operationId": "crashlogNotify",
            "summary": 'Submit a CrashLog payload: bare, wrapped as {"payload": ...}, or a form\'s `payload`',
            "description": 'The key may also come as `Authorization: Token token="<key>"`, '
            "`Authorization: CrashLog <key>:<signature>`, or an `api_key` field beside the payload.",
            "security": security(),
            "parameters": [ENCODING],
            "requestBody": json_body(
                {
                    "anyOf": [
                        ref("schemas", "CrashLogPayload"),
                        obj({"payload": {"anyOf": [ref("schemas", "CrashLogPayload"), STR]}}, ["payload"]),
                    ]
                },
                {"payload": CRASHLOG_EXAMPLE},
                extra={
                    "application/x-www-form-urlencoded": {
                        "schema": obj(
                            {"payload": {**STR, "description": "The payload as JSON text"}, "api_key": STR},
                            ["payload"],
                        )
                    }
                },
            ),
            "responses": {
                "201": answer(
                    "Queued",
                    ref("schemas", "CrashLogAccepted"),
                    headers={"Location": ref("headers", "Location")},
                ),
                **errors(MESSAGE, 400, 401, 403, 413, 415, 429, 503),
                "422": answer("Interfaces missing or of the wrong type", ref("schemas", "ValidationFailed")),
            },
        }
    }
    sentry_answers = {
        "200": answer(
            "Accepted (events among the items queued, everything else skipped)",
            ref("schemas", "SentryAccepted"),
        ),
        **errors(DETAIL, 400, 401, 403, 413, 415, 429, 503),
        "404": answer("No such route (the project id is not a number)", MESSAGE),
    }
    envelope_body: Schema = {
        "required": True,
        "content": {"application/x-sentry-envelope": {"schema": STR, "example": ENVELOPE_EXAMPLE}},
    }
    envelope = {
        "post": {
            "tags": ["Sentry"],
            "operationId": "sentryEnvelope",
            "summary": "Submit a Sentry envelope",
            "security": security("SentryAuth", "SentryKeyQuery"),
            "parameters": [ref("parameters", "SentryProjectId"), ENCODING],
            "requestBody": envelope_body,
            "responses": sentry_answers,
        }
    }
    store = {
        "post": {
            "tags": ["Sentry"],
            "operationId": "sentryStore",
            "summary": "Submit one Sentry event (legacy store)",
            "security": security("SentryAuth", "SentryKeyQuery"),
            "parameters": [ref("parameters", "SentryProjectId"), ENCODING],
            "requestBody": json_body(
                ref("schemas", "SentryEvent"), SENTRY_EXAMPLE, extra=envelope_body["content"]
            ),
            "responses": sentry_answers,
        }
    }
    airbrake = {
        "post": {
            "tags": ["Airbrake"],
            "operationId": "airbrakeNotice",
            "summary": "Submit an Airbrake v3 notice",
            "description": "The body is read as JSON whatever the Content-Type (@airbrake/node: text/plain).",
            "security": security(),
            "parameters": [ref("parameters", "SentryProjectId"), ENCODING],
            "requestBody": json_body(
                ref("schemas", "AirbrakeNotice"), AIRBRAKE_EXAMPLE, extra={"text/plain": {"schema": STR}}
            ),
            "responses": {
                "201": answer("Queued", ref("schemas", "AirbrakeAccepted")),
                **errors(MESSAGE, 400, 401, 403, 404, 413, 415, 429, 503),
            },
        }
    }
    hoptoad_text = {"type": "string"}
    hoptoad = {
        "post": {
            "tags": ["Hoptoad"],
            "operationId": "hoptoadNotice",
            "summary": "Submit a Hoptoad / Airbrake notifier API v2 XML notice (Errbit's endpoint)",
            "description": "The key is the notice's `<api-key>` (or any of the generic forms when it has none). "
            "No DTDs, entities or external references. Errors answer as Errbit: plain text, 422 for XML that "
            "is not well-formed or a missing or unknown key.",
            "security": [],
            "parameters": [ENCODING],
            "requestBody": {
                "required": True,
                "content": {
                    media: {"schema": hoptoad_text, "example": HOPTOAD_EXAMPLE}
                    for media in ("application/xml", "text/xml")
                },
            },
            "responses": {
                "200": answer("Queued: `<notice><id/><url/></notice>`", hoptoad_text, "application/xml"),
                **{
                    str(code): answer(text, hoptoad_text, "text/plain")
                    for code, text in (
                        (
                            400,
                            "Empty body, not valid in its Content-Encoding, or nested deeper than 128 levels",
                        ),
                        (403, "A user-scoped token, or an origin the project does not allow"),
                        (408, "The body did not arrive in time"),
                        (413, "Body over the size cap"),
                        (415, "Unsupported Content-Encoding"),
                        (
                            422,
                            "Not well-formed (or DTD-bearing) XML, no <notice>, or a missing or unknown key",
                        ),
                        (429, "The project's rate limit is exhausted"),
                        (503, "The queue is unavailable or its backlog is over the limit"),
                    )
                },
            },
        }
    }
    xl_security: list[Schema] = [
        {name: []} for name in ("ApiKeyHeader", "Bearer", "Basic", "ApiKeyQuery", "AccessTokenQuery")
    ]
    xl_events_body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        ref("schemas", "ExceptionlessEvent"),
                        array(ref("schemas", "ExceptionlessEvent")),
                    ]
                },
                "example": [EXCEPTIONLESS_EXAMPLE],
            },
            "text/plain": {"schema": STR, "example": "one log message per line"},
        },
    }
    xl_post_events = {
        "post": {
            "tags": ["Exceptionless"],
            "operationId": "exceptionlessPostEvents",
            "summary": "Submit an event, an array of events, or lines of text (one log event each)",
            "security": xl_security,
            "parameters": [ENCODING],
            "requestBody": xl_events_body,
            "responses": {
                "202": answer("Queued (empty body)", headers=CONFIG_VERSION),
                **errors(MESSAGE, 400, 401, 403, 404, 415, empty=(411, 413, 429, 503)),
            },
        }
    }
    submit_params = [
        query(name, what)
        for name, what in (
            ("type", "Event type (default `log`)"),
            ("source", "Event source"),
            ("message", "Message"),
            ("reference", "Reference id"),
            ("date", "ISO 8601 date"),
            ("count", "Occurrences"),
            ("value", "A decimal value"),
            ("geo", "`lat,lon`"),
            ("tags", "Comma-separated tags"),
            ("identity", "User identity"),
            ("identity.name", "User name"),
        )
    ]
    xl_submit = {
        "get": {
            "tags": ["Exceptionless"],
            "operationId": "exceptionlessSubmit",
            "summary": "Submit an event from query parameters (other names become data)",
            "security": xl_security,
            "parameters": submit_params,
            "responses": {
                "200": answer("Queued, or nothing to store (empty body)", headers=CONFIG_VERSION),
                **errors(MESSAGE, 401, 403, 404, empty=(429, 503)),
            },
        }
    }
    description_op = {
        "post": {
            "tags": ["Exceptionless"],
            "operationId": "exceptionlessUserDescription",
            "summary": "Attach an end user's description to the event with this reference id",
            "security": xl_security,
            "parameters": [ref("parameters", "ReferenceId"), ENCODING],
            "requestBody": json_body(
                ref("schemas", "ExceptionlessUserDescription"),
                {"email_address": "user@example.com", "description": "It broke"},
            ),
            "responses": {
                "202": answer("Queued (empty body)", headers=CONFIG_VERSION),
                **errors(MESSAGE, 400, 401, 403, 404, 415, empty=(413, 503)),
            },
        }
    }
    config_op = {
        "get": {
            "tags": ["Exceptionless"],
            "operationId": "exceptionlessClientConfig",
            "summary": "The project's client configuration; 304 when `v` is the current version",
            "security": xl_security,
            "parameters": [query("v", "The version the client holds", {"type": "string"})],
            "responses": {
                "200": answer("The configuration", ref("schemas", "ExceptionlessConfiguration")),
                "304": answer("Up to date (empty body)"),
                **errors(MESSAGE, 401, 403, 404),
            },
        }
    }

    def with_params(op: dict[str, Schema], *params: Schema) -> dict[str, Schema]:
        """The same operation under another path: its path parameters prepended, a distinct id."""
        method, body = next(iter(op.items()))
        names = "".join(p["$ref"].rsplit("/", 1)[-1] for p in params)
        return {
            method: {
                **body,
                "operationId": body["operationId"] + "By" + names,
                "parameters": [*params, *body.get("parameters", [])],
            }
        }

    def renamed(op: dict[str, Schema], op_id: str) -> dict[str, Schema]:
        """The same operation under a second spelling of its path."""
        method, body = next(iter(op.items()))
        return {method: {**body, "operationId": op_id}}

    pid = ref("parameters", "ExceptionlessProjectId")
    kind = ref("parameters", "EventType")
    ops = {
        "/v1/notices": exceptioner,
        "/notify": crashlog,
        "/api/{project_id}/envelope/": envelope,
        "/api/{project_id}/envelope": renamed(envelope, "sentryEnvelopeNoSlash"),
        "/api/{project_id}/store/": store,
        "/api/{project_id}/store": renamed(store, "sentryStoreNoSlash"),
        "/api/v3/projects/{project_id}/notices": airbrake,
        "/notifier_api/v2/notices": hoptoad,
        "/notifier_api/v2/notices.xml": renamed(hoptoad, "hoptoadNoticeXml"),
        "/api/v4/projects/{project_id}/deploys": {
            "post": {
                "tags": ["Airbrake"],
                "operationId": "airbrakeDeploy",
                "summary": "Record a deploy with the project key (PyPI airbrake's deploy()); a worker stores it",
                "security": security(),
                "parameters": [ref("parameters", "SentryProjectId"), ENCODING],
                "requestBody": json_body(
                    obj(
                        {
                            "environment": {"type": "string", "minLength": 1, "maxLength": 1000},
                            "username": nullable(STR),
                            "repository": nullable(STR),
                            "revision": nullable(STR),
                            "version": nullable(STR),
                        },
                        ["environment"],
                    ),
                    {"environment": "production", "username": "ci", "revision": "abc123"},
                    extra={"text/plain": {"schema": STR}},
                ),
                "responses": {
                    "201": answer("Queued", obj({"id": {**STR, "format": "uuid"}}, ["id"])),
                    "422": answer("Fields missing or of the wrong type", ref("schemas", "ValidationFailed")),
                    **errors(MESSAGE, 400, 401, 403, 404, 413, 415, 429, 503),
                },
            }
        },
        "/api/v2/events": xl_post_events,
        "/api/v2/projects/{project_id}/events": with_params(xl_post_events, pid),
        "/api/v2/events/submit": xl_submit,
        "/api/v2/events/submit/{type}": with_params(xl_submit, kind),
        "/api/v2/projects/{project_id}/events/submit": with_params(xl_submit, pid),
        "/api/v2/projects/{project_id}/events/submit/{type}": with_params(xl_submit, pid, kind),
        "/api/v2/events/session/heartbeat": {
            "get": {
                "tags": ["Exceptionless"],
                "operationId": "exceptionlessHeartbeat",
                "summary": "Session heartbeat (sessions are not tracked; answered 200)",
                "security": xl_security,
                "parameters": [
                    query("id", "Session id"),
                    query("close", "Whether the session ends", {"type": "boolean"}),
                ],
                "responses": {"200": answer("OK (empty body)"), **errors(MESSAGE, 401, 403)},
            }
        },
        "/api/v2/events/by-ref/{reference_id}/user-description": description_op,
        "/api/v2/projects/{project_id}/events/by-ref/{reference_id}/user-description": with_params(
            description_op, pid
        ),
        "/api/v2/projects/config": config_op,
        "/api/v2/projects/{project_id}/config": with_params(config_op, pid),
        **operations_paths(),
    }
    return ops


def spec(settings: Settings) -> dict[str, Any]:
    """The gateway's OpenAPI 3.0.3 document; the caps in it are this deployment's."""
    caps = (
        f"Bodies are capped at {settings.max_body} bytes on the wire and {settings.max_decompressed} "
        "bytes decompressed (413 above); `Content-Encoding` gzip, deflate and br are accepted (else 415)."
    )
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Faultline gateway",
            "version": "1",
            "description": "Error-notice ingest: Exceptioner v1, CrashLog, Sentry, Airbrake v3 and "
            "Exceptionless v2, each with its own answers. Every request needs a project's client key. "
            "Every ingest route also answers a CORS preflight (`OPTIONS`, no key) for any origin; "
            "whether an origin may submit is the project's `allowed_origins` setting. " + caps,
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": n}
            for n in ("Exceptioner", "CrashLog", "Sentry", "Airbrake", "Exceptionless", "Operations")
        ],
        "paths": _ops(),
        "components": {
            "schemas": {
                **SCHEMAS,
                "Readiness": obj(
                    {
                        "status": {"type": "string", "enum": ["ready", "unavailable"]},
                        "redis": STR,
                        "postgres": STR,
                    },
                    ["status", "redis", "postgres"],
                ),
            },
            "headers": HEADER_SCHEMAS,
            "parameters": PARAMETERS,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


async def serve(request: web.Request) -> web.Response:
    """GET /openapi.json."""
    return json_response(spec(request.app[SETTINGS]))
