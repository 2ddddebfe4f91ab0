"""Request bodies for every ingest protocol, shaped like what the real clients send.

Each protocol offers one or more candidate requests; the probe keeps the first the running gateway
accepts, so a protocol whose route is not there yet (or wants another shape) is reported, not fatal.
Bodies vary over `errors` exception classes and call sites so grouping does real work.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from tests.bench.stack import Project


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Protocol:
    name: str
    route: str  # for the report
    # Candidate shapes: each a function (project, variant, notices per request) -> Request.
    shapes: tuple[Callable[[Project, int, int], Request], ...]
    batch: bool = False  # one request carries many notices
    per_request: int = 1
    notes: list[str] = field(default_factory=list)


ERROR_CLASSES = (
    "RuntimeError",
    "ArgumentError",
    "NoMethodError",
    "KeyError",
    "TypeError",
    "IOError",
    "TimeoutError",
    "ZeroDivisionError",
    "NameError",
    "IndexError",
)
RUBY_LIB = "/usr/lib/ruby/gems/3.2.0/gems/actionpack-7.1.2/lib/abstract_controller/base.rb"


def _site(variant: int) -> tuple[str, str, str, int]:
    """(exception class, file, function, line) of one of the error variants."""
    cls = ERROR_CLASSES[variant % len(ERROR_CLASSES)]
    ctrl = f"controller_{variant // len(ERROR_CLASSES)}"
    return cls, f"app/controllers/{ctrl}.rb", f"action_{variant % 7}", 10 + variant % 50


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(data: object) -> bytes:
    return orjson.dumps(data)


# ---- Exceptioner ------------------------------------------------------------------------------------


def exceptioner(p: Project, v: int, _n: int) -> Request:
    cls, file, fn, line = _site(v)
    body = {
        "message": f"{cls}: undefined value for order {1000 + v} in {fn}",
        "error": {
            "exception": cls,
            "backtrace": [
                f"[PROJECT_ROOT]/{file}:{line}:in `{fn}'",
                f"[PROJECT_ROOT]/app/models/order.rb:{40 + v % 9}:in `total'",
                f"{RUBY_LIB}:195:in `process_action'",
                f"{RUBY_LIB}:151:in `process'",
                "/usr/lib/ruby/gems/3.2.0/gems/rack-3.0.8/lib/rack/builder.rb:89:in `call'",
            ],
            "parameters": {"controller": file.rsplit("/", 1)[-1][:-3], "action": fn, "id": str(v)},
            "session": {"user_id": 42, "locale": "en"},
            "environment": {
                "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) bench",
                "REQUEST_METHOD": "POST",
                "PATH_INFO": f"/orders/{v}",
            },
            "file": f"[PROJECT_ROOT]/{file}",
            "mode": "production",
        },
    }
    return Request("POST", "/v1/notices", {"Api-Key": p.key, "Content-Type": "application/json"}, _json(body))


# ---- Exceptionless ----------------------------------------------------------------------------------


def _exceptionless_event(v: int) -> dict[str, object]:
    cls, file, fn, line = _site(v)
    return {
        "type": "error",
        "date": _now(),
        "reference_id": uuid.uuid4().hex[:10],
        "message": f"undefined value for order {1000 + v}",
        "@error": {
            "type": cls,
            "message": f"undefined value for order {1000 + v}",
            "stack_trace": [
                {
                    "name": fn,
                    "parameters": [],
                    "file_name": f"/app/{file[:-3]}.js",
                    "line_number": line,
                    "column": 27,
                    "declaring_type": None,
                    "data": {"is_native": False},
                },
                {
                    "name": "total",
                    "parameters": [],
                    "file_name": "/app/models/order.js",
                    "line_number": 40 + v % 9,
                    "column": 5,
                    "declaring_type": None,
                    "data": {"is_native": False},
                },
                {
                    "name": "processTicksAndRejections",
                    "parameters": [],
                    "file_name": "node:internal/process/task_queues",
                    "line_number": 95,
                    "column": 5,
                    "declaring_type": None,
                    "data": {"is_native": False},
                },
            ],
        },
        "@environment": {"machine_name": "app01", "processor_count": 2, "runtime_version": "v20.20.2"},
        "@request": {"http_method": "POST", "path": f"/orders/{v}", "user_agent": "bench"},
        "@version": "1.2.3",
    }


def exceptionless(p: Project, v: int, n: int) -> Request:
    data: object = _exceptionless_event(v) if n == 1 else [_exceptionless_event(v + i) for i in range(n)]
    return Request(
        "POST",
        "/api/v2/events",
        {"Authorization": f"Bearer {p.key}", "Content-Type": "application/json"},
        _json(data),
    )


def exceptionless_array(p: Project, v: int, n: int) -> Request:
    """What @exceptionless/node sends: always an array, here of one event."""
    return Request(
        "POST",
        "/api/v2/events",
        {"Authorization": f"Bearer {p.key}", "Content-Type": "application/json"},
        _json([_exceptionless_event(v + i) for i in range(n)]),
    )


# ---- CrashLog ---------------------------------------------------------------------------------------


def _crashlog_payload(v: int) -> dict[str, object]:
    cls, file, fn, line = _site(v)
    return {
        "notifier": {"name": "crashlog-bench", "version": "1.0.0"},
        "event": {
            "message": f"undefined value for order {1000 + v}",
            "class_name": cls,
            "created_at": _now(),
        },
        "backtrace": [
            {"file": f"/home/deploy/app/current/{file[:-3]}.js", "number": line, "method": fn},
            {"file": "/home/deploy/app/current/models/order.js", "number": 40 + v % 9, "method": "total"},
            {"file": "node_modules/express/lib/router/layer.js", "number": 95, "method": "handle"},
        ],
        "environment": {
            "project_root": "/home/deploy/app/current",
            "platform": "Node.js 20",
            "name": "production",
        },
        "context": {"hostname": "app01", "current_user": {"id": 1}},
    }


def crashlog(p: Project, v: int, _n: int) -> Request:
    return Request(
        "POST",
        f"/notify?auth_token={p.key}",
        {"Content-Type": "application/json"},
        _json(_crashlog_payload(v)),
    )


def crashlog_wrapped(p: Project, v: int, _n: int) -> Request:
    return Request(
        "POST",
        f"/notify?auth_token={p.key}",
        {"Content-Type": "application/json"},
        _json({"payload": _crashlog_payload(v)}),
    )


# ---- Sentry -----------------------------------------------------------------------------------------


UNIQUE = "deadbeefdeadbeefdeadbeefdeadbeef"  # wrk puts a fresh 32-hex id here in every request (post.lua)


def _sentry_event(v: int) -> dict[str, object]:
    cls, file, fn, line = _site(v)
    return {
        "event_id": UNIQUE,
        "timestamp": _now(),
        "platform": "python",
        "level": "error",
        "environment": "production",
        "release": "bench@1.0.0",
        "server_name": "app01",
        "exception": {
            "values": [
                {
                    "type": cls,
                    "value": f"undefined value for order {1000 + v}",
                    "module": "app.orders",
                    "mechanism": {"type": "generic", "handled": False},
                    "stacktrace": {
                        "frames": [
                            {
                                "filename": "django/core/handlers/base.py",
                                "abs_path": "/usr/lib/python3/site-packages/django/core/handlers/base.py",
                                "function": "_get_response",
                                "module": "django.core.handlers.base",
                                "lineno": 197,
                                "in_app": False,
                            },
                            {
                                "filename": "app/models/order.py",
                                "abs_path": "/srv/app/models/order.py",
                                "function": "total",
                                "module": "app.models.order",
                                "lineno": 40 + v % 9,
                                "in_app": True,
                            },
                            {
                                "filename": f"{file[:-3]}.py",
                                "abs_path": f"/srv/{file[:-3]}.py",
                                "function": fn,
                                "module": "app.controllers",
                                "lineno": line,
                                "in_app": True,
                                "context_line": "    raise ValueError(order)",
                            },
                        ]
                    },
                }
            ]
        },
        "tags": {"region": "eu"},
        "sdk": {"name": "sentry.python", "version": "2.75.0"},
    }


def _sentry_auth(p: Project) -> dict[str, str]:
    return {"X-Sentry-Auth": f"Sentry sentry_key={p.key}, sentry_version=7, sentry_client=bench/1.0"}


def sentry_envelope(p: Project, v: int, _n: int) -> Request:
    event = _json(_sentry_event(v))
    header = _json({"event_id": UNIQUE, "sent_at": _now()})
    item = _json({"type": "event", "length": len(event), "content_type": "application/json"})
    return Request(
        "POST",
        f"/api/{p.id}/envelope/",
        {**_sentry_auth(p), "Content-Type": "application/x-sentry-envelope"},
        header + b"\n" + item + b"\n" + event + b"\n",
    )


def sentry_store(p: Project, v: int, _n: int) -> Request:
    return Request(
        "POST",
        f"/api/{p.id}/store/",
        {**_sentry_auth(p), "Content-Type": "application/json"},
        _json(_sentry_event(v)),
    )


# ---- Airbrake ---------------------------------------------------------------------------------------


def airbrake(p: Project, v: int, _n: int) -> Request:
    cls, file, fn, line = _site(v)
    body = {
        "errors": [
            {
                "type": cls,
                "message": f"undefined value for order {1000 + v}",
                "backtrace": [
                    {"file": f"/PROJECT_ROOT/{file[:-3]}.py", "function": fn, "line": line, "column": 0},
                    {"file": "/PROJECT_ROOT/app/models/order.py", "function": "total", "line": 40 + v % 9},
                    {
                        "file": "/usr/lib/python3/site-packages/flask/app.py",
                        "function": "dispatch_request",
                        "line": 880,
                    },
                ],
            }
        ],
        "context": {
            "notifier": {"name": "pybrake", "version": "1.10.1"},
            "environment": "production",
            "severity": "error",
            "hostname": "app01",
            "language": "Python/3.11",
        },
        "params": {"order": str(v)},
        "environment": {"PATH": "/usr/bin"},
        "session": {},
    }
    return Request(
        "POST",
        f"/api/v3/projects/{p.id}/notices",
        {"Authorization": f"Bearer {p.key}", "Content-Type": "application/json"},
        _json(body),
    )


PROTOCOLS: tuple[Protocol, ...] = (
    Protocol("exceptioner", "POST /v1/notices", (exceptioner,)),
    Protocol("exceptionless", "POST /api/v2/events", (exceptionless, exceptionless_array)),
    Protocol("crashlog", "POST /notify", (crashlog, crashlog_wrapped)),
    Protocol("sentry", "POST /api/{id}/envelope/ (or /store/)", (sentry_envelope, sentry_store)),
    Protocol("airbrake", "POST /api/v3/projects/{id}/notices", (airbrake,)),
)
BATCHED = Protocol(
    "exceptionless-batch", "POST /api/v2/events (arrays of 50)", (exceptionless,), batch=True, per_request=50
)


def requests(
    shape: Callable[[Project, int, int], Request], project: Project, variants: int, per_request: int = 1
) -> list[Request]:
    """`variants` requests cycling over the error variants."""
    return [shape(project, v, per_request) for v in range(variants)]
