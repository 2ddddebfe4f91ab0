"""Valid payloads of every protocol, as their real clients send them (trimmed): the fuzzers' seeds."""

from __future__ import annotations

from typing import Any

import orjson

EXCEPTIONER: dict[str, Any] = {
    "message": "RuntimeError: Run Forrest, run!",
    "error": {
        "exception": "RuntimeError",
        "mode": "production",
        "file": "[PROJECT_ROOT]/app/controllers/home_controller.rb",
        "backtrace": [
            "[PROJECT_ROOT]/app/controllers/home_controller.rb:7:in `run`",
            "...",
            "/gems/rack-2.2.3/lib/rack.rb:12:in `call'",
        ],
        "parameters": {"id": "42"},
        "session": {"user": 1},
        "environment": {"HTTP_HOST": "example.com"},
    },
}

CRASHLOG: dict[str, Any] = {
    "notifier": {"name": "crashlog-ruby", "version": "1.0.0"},
    "event": {
        "message": "undefined method",
        "class_name": "NoMethodError",
        "created_at": "2012-08-03T12:34:19+10:00",
        "timestamp": 1343961259,
    },
    "backtrace": [
        {
            "file": "/home/deploy/app/current/app/models/user.rb",
            "number": 14,
            "method": "User#save",
            "context_line": "save!",
            "pre_context": ["def x"],
            "post_context": ["end"],
        },
        {"file": "lib/x.js", "number": "192", "method": "setup"},
    ],
    "environment": {"project_root": "/home/deploy/app/current", "name": "production"},
    "context": {"hostname": "app01", "current_user": {"id": 1}},
}

EXCEPTIONLESS: dict[str, Any] = {
    "date": "2026-11-24T01:30:22.746Z",
    "type": "error",
    "tags": ["checkout"],
    "reference_id": "0123456789",
    "data": {
        "@error": {
            "type": "TypeError",
            "message": "total is not a number",
            "stack_trace": [
                {
                    "name": "checkoutTotal",
                    "parameters": [],
                    "file_name": "file:///app/checkout.mjs",
                    "line_number": 57,
                    "column": 9,
                    "declaring_type": None,
                    "data": {"is_native": True},
                },
            ],
            "inner": {"type": "RangeError", "message": "x", "target_method": {"name": "f"}},
        },
        "@simple_error": {"message": "m", "type": "E", "stack_trace": "  at f (/app/x.js:1:2)"},
        "@environment": {"machine_name": "vm", "ip_address": "192.0.2.2"},
        "@request": {"http_method": "GET", "path": "/x", "query_string": {"a": "1"}, "is_secure": True},
        "@user": {"identity": "u1"},
        "@version": "1.2.3",
        "@level": "Error",
        "@stack": {"title": "t", "signature_data": {"a": "b"}},
        "@user_description": {"description": "it broke"},
        "@submission_method": "onerror",
    },
}

PYPI_EXCEPTIONLESS: dict[str, Any] = {
    "type": "error",
    "@stack": (
        'Traceback (most recent call last):\n  File "/srv/x.py", line 3, in f\n    g()\nValueError: bad'
    ),
}

SENTRY_EVENT: dict[str, Any] = {
    "event_id": "9ec79c33ec9942ab8353589fcb2e04dc",
    "timestamp": "2026-11-24T01:27:40.123456Z",
    "platform": "python",
    "level": "error",
    "logger": "shop",
    "environment": "production",
    "release": "shop@1.0",
    "server_name": "vm",
    "message": {"message": "failed %s", "params": ["x"]},
    "exception": {
        "values": [
            {
                "type": "KeyError",
                "value": "42",
                "mechanism": {"type": "generic"},
                "stacktrace": {
                    "frames": [
                        {
                            "filename": "shop.py",
                            "abs_path": "/srv/shop.py",
                            "function": "charge",
                            "module": "shop",
                            "lineno": 7,
                            "colno": 2,
                            "in_app": True,
                            "context_line": "x",
                            "pre_context": ["a"],
                            "post_context": ["b", None],
                        }
                    ]
                },
            },
            {"type": "PaymentError", "value": "declined", "stacktrace": {"frames": []}},
        ]
    },
    "threads": {"values": [{"crashed": True, "stacktrace": {"frames": [{"function": "run"}]}}]},
    "tags": {"a": "b"},
    "user": {"ip_address": "{{auto}}"},
    "request": {
        "method": "GET",
        "url": "http://x/",
        "query_string": "a=1",
        "headers": [["Host", "x"]],
        "cookies": {"c": "d"},
        "env": {"REMOTE_ADDR": "1.2.3.4"},
        "data": {"p": 1},
    },
    "contexts": {"os": {"name": "Linux"}},
    "breadcrumbs": {"values": [{"message": "m"}]},
    "extra": {"x": 1},
    "fingerprint": ["{{ default }}", "checkout"],
    "sdk": {"name": "sentry.python"},
}

AIRBRAKE: dict[str, Any] = {
    "errors": [
        {
            "type": "PaymentError",
            "message": "card declined",
            "backtrace": [
                {
                    "file": "/PROJECT_ROOT/shop.py",
                    "function": "checkout",
                    "line": 14,
                    "column": 3,
                    "code": {"13": "try:", "14": "raise", "15": ""},
                },
                {"file": "async file:///app/x.js", "function": "", "line": "19"},
            ],
        },
        {"type": "KeyError", "message": "42", "backtrace": []},
    ],
    "context": {
        "notifier": {"name": "pybrake"},
        "environment": "production",
        "severity": "error",
        "hostname": "vm",
        "revision": "abc",
        "version": "1.0",
        "component": "shop",
        "user": {"id": 1},
    },
    "params": {"a": 1},
    "session": {"s": 1},
    "environment": {"PATH": "/bin"},
}


def envelope(header: Any, items: list[tuple[Any, bytes, bool]], trailing: bool) -> bytes:
    """A Sentry envelope: header line, then per item its header (with `length` when asked) and payload."""
    lines = [orjson.dumps(header)]
    for item_header, payload, with_length in items:
        if with_length and isinstance(item_header, dict):
            item_header = {**item_header, "length": len(payload)}
        lines += [orjson.dumps(item_header), payload]
    return b"\n".join(lines) + (b"\n" if trailing else b"")
