"""Airbrake v3 notices into the canonical notice, from payloads pybrake and @airbrake/node sent."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shared.fingerprint import fingerprint
from shared.protocols.airbrake import airbrake_error, parse_notice, to_frame
from shared.protocols.sentry import wire as sentry_envelope
from shared.web import ApiError
from tests.unit.test_sentry_parse import NOW, PY_EVENT

# pybrake 1.10.1, `raise PaymentError(...) from KeyError`: the raised error first, innermost frame first.
PYBRAKE: dict[str, Any] = {
    "errors": [
        {
            "type": "PaymentError",
            "message": "card declined for 42",
            "backtrace": [
                {
                    "file": "/PROJECT_ROOT/shop.py",
                    "function": "checkout",
                    "line": 14,
                    "code": {
                        "12": "        charge(amount)",
                        "13": "    except KeyError as e:",
                        "14": "        raise PaymentError(...) from e",
                        "15": "",
                        "16": "",
                    },
                },
                {
                    "file": "/PROJECT_ROOT/shop.py",
                    "function": "run",
                    "line": 19,
                    "code": {
                        "18": "    try:",
                        "19": "        checkout(42)",
                        "20": "    except Exception as e:",
                    },
                },
            ],
        },
        {
            "type": "KeyError",
            "message": "42",
            "backtrace": [
                {"file": "/PROJECT_ROOT/shop.py", "function": "charge", "line": 7},
                {"file": "/PROJECT_ROOT/shop.py", "function": "checkout", "line": 12},
            ],
        },
    ],
    "context": {
        "notifier": {"name": "pybrake", "version": "1.10.1"},
        "os": "Linux",
        "language": "Python/3.11.7",
        "hostname": "vm",
        "rootDirectory": "/srv/app",
        "environment": "production",
        "revision": "abc123",
        "component": "billing",
        "action": "pay",
        "user": {"id": "7", "email": "u@x.io"},
    },
    "params": {"sys_executable": "/usr/bin/python3"},
    "session": {"cart": "3"},
    "environment": {"HTTP_USER_AGENT": "curl"},
}

# @airbrake/node 2.1.9 (sent as text/plain): no cause, file:// URLs, "async " glued to a file name.
NODE: dict[str, Any] = {
    "errors": [
        {
            "type": "RangeError",
            "message": "card declined for 7",
            "backtrace": [
                {"function": "checkout", "file": "file:///app/shop.mjs", "line": 11, "column": 9},
                {"function": "run", "file": "file:///app/shop.mjs", "line": 16, "column": 5},
                {"function": "", "file": "async file:///app/report.mjs", "line": 37, "column": 24},
                {
                    "function": "ModuleJob.run",
                    "file": "node:internal/modules/esm/module_job",
                    "line": 325,
                    "column": 25,
                },
            ],
        }
    ],
    "context": {
        "severity": "error",
        "notifier": {"name": "airbrake-js/node", "version": "2.1.9"},
        "environment": "production",
        "hostname": "vm",
        "language": "JavaScript",
    },
    "params": {"process": {"pid": 1}},
}


def test_pybrake_chain_context_and_code_hunks():
    n = parse_notice(orjson.dumps(PYBRAKE))
    assert n["protocol"] == "airbrake" and n["type"] == "error"
    assert [e["type"] for e in n["exceptions"]] == ["PaymentError", "KeyError"]
    assert n["exception"] == "PaymentError" and n["message"] == "card declined for 42"
    top = n["exceptions"][0]["frames"][0]
    assert top == {
        "file": "/PROJECT_ROOT/shop.py",
        "module": None,
        "function": "checkout",
        "line": 14,
        "column": None,
        "in_app": None,
        "context_line": "        raise PaymentError(...) from e",
        "pre_context": ["        charge(amount)", "    except KeyError as e:"],
        "post_context": ["", ""],
    }
    assert [f["function"] for f in n["exceptions"][1]["frames"]] == ["charge", "checkout"]
    assert n["environment"] == "production" and n["hostname"] == "vm" and n["release"] == "abc123"
    assert n["source"] == "billing" and n["user"] == {"id": "7", "email": "u@x.io"}
    assert n["context"]["action"] == "pay" and n["context"]["notifier"]["name"] == "pybrake"
    assert n["params"] == {"sys_executable": "/usr/bin/python3"} and n["session"] == {"cart": "3"}
    assert n["cgi"] == {"HTTP_USER_AGENT": "curl"} and n["file"] == "/PROJECT_ROOT/shop.py"
    assert n["occurred_at"] is None


def test_node_notifier_frames_and_severity():
    n = parse_notice(orjson.dumps(NODE))
    frames = n["exceptions"][0]["frames"]
    assert [(f["file"], f["function"], f["column"]) for f in frames] == [
        ("file:///app/shop.mjs", "checkout", 9),
        ("file:///app/shop.mjs", "run", 5),
        ("file:///app/report.mjs", None, 24),
        ("node:internal/modules/esm/module_job", "ModuleJob.run", 25),
    ]
    assert n["level"] == "error" and n["environment"] == "production" and "session" not in n


def test_code_hunk_edge_cases():
    f = to_frame({"file": "a.rb", "line": "3", "code": {"2": "a", "x": "junk", "3": "b"}})
    assert (f["line"], f.get("context_line"), f.get("pre_context"), f.get("post_context")) == (
        3,
        "b",
        ["a"],
        None,
    )
    assert "context_line" not in to_frame({"file": "a", "code": {"1": "x"}})  # no line: no hunk
    assert to_frame({"line": True})["line"] is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "Notice body is not valid JSON"),
        (b"[]", "Notice body should be a JSON object"),
        (b"{}", "errors should be a non-empty array"),
        (b'{"errors": []}', "errors should be a non-empty array"),
        (b'{"errors": [1]}', "errors[0] should be a JSON object"),
        (b'{"errors": [{"backtrace": "x"}]}', "errors[0].backtrace should be an array"),
        (b'{"errors": [{}], "context": []}', "context should be a JSON object"),
    ],
)
def test_bad_notices_are_400_with_a_message(raw, message):
    with pytest.raises(ApiError) as e:
        parse_notice(raw)
    assert (e.value.status, e.value.body) == (400, {"message": message})


def test_429_carries_the_delay_the_notifiers_read():
    e = airbrake_error(ApiError(429, "slow down", headers={"Retry-After": "12"}))
    assert e.headers["X-RateLimit-Delay"] == "12" and e.body == {"message": "slow down"}
    e = airbrake_error(ApiError(429, "slow down", {"detail": "x"}))
    assert e.headers["X-RateLimit-Delay"] == "60" and e.body == {"message": "slow down"}
    kept = {"Retry-After": "5", "X-RateLimit-Delay": "5"}
    assert airbrake_error(ApiError(429, "m", headers=kept)).headers == kept


def test_pybrake_and_sentry_python_reports_fingerprint_alike():
    sentry = sentry_envelope.to_notice(PY_EVENT, "a" * 32, now=NOW)
    assert fingerprint(parse_notice(orjson.dumps(PYBRAKE))) == fingerprint(sentry)
