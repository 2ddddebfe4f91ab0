"""Sentry's wire format, pure: envelope framing and the event model, from payloads the real SDKs sent."""

from __future__ import annotations

import base64
import zlib
from typing import Any

import orjson
import pytest

from shared.cli import project_json
from shared.fingerprint import fingerprint
from shared.protocols.sentry import wire
from shared.protocols.sentry.http import auth_fields, pick_key, sentry_error
from shared.settings import Settings
from shared.timeutil import parse_iso
from shared.web import ApiError

NOW = parse_iso("2026-11-24T01:27:40Z") or 0.0


def py_frame(function: str, lineno: int, context: str) -> dict[str, Any]:
    return {
        "filename": "shop.py",
        "abs_path": "/srv/app/shop.py",
        "function": function,
        "module": "shop",
        "lineno": lineno,
        "pre_context": ["def x():"],
        "context_line": context,
        "post_context": ["", "def y():"],
        "vars": {"amount": "42"},
        "in_app": True,
    }


# sentry-sdk 2.75, `raise PaymentError(...) from KeyError`, trimmed: cause first, frames oldest first.
PY_EVENT: dict[str, Any] = {
    "level": "error",
    "exception": {
        "values": [
            {
                "mechanism": {"type": "generic", "handled": True},
                "module": None,
                "type": "KeyError",
                "value": "42",
                "stacktrace": {
                    "frames": [
                        py_frame("checkout", 12, "        charge(amount)"),
                        py_frame("charge", 7, "    return prices[amount]"),
                    ]
                },
            },
            {
                "mechanism": {"type": "generic", "handled": True},
                "module": "shop",
                "type": "PaymentError",
                "value": "card declined for 42",
                "stacktrace": {
                    "frames": [
                        py_frame("run", 19, "        checkout(42)"),
                        py_frame("checkout", 14, "        raise PaymentError(...) from e"),
                    ]
                },
            },
        ]
    },
    "event_id": "4c2e5d91eca043a2ab309b3b47c4aae5",
    "timestamp": "2026-11-24T01:27:36.479675Z",
    "contexts": {"runtime": {"name": "CPython", "version": "3.11.7"}},
    "user": {"id": "u1", "email": "a@b.c"},
    "breadcrumbs": {"values": [{"category": "query", "message": "SELECT 1"}]},
    "extra": {"sys.argv": ["app.py"]},
    "modules": {"urllib3": "2.8.0"},
    "release": "1.0",
    "environment": "production",
    "server_name": "vm",
    "sdk": {"name": "sentry.python", "version": "2.75.0"},
    "platform": "python",
}

# @sentry/node 11.12: no item length, no trailing newline, epoch-float timestamp, "?" for anonymous code.
JS_ENVELOPE = (
    b'{"event_id":"93b9f39e7c9545a7b3341604786e6ead","sent_at":"2026-11-24T01:27:49.931Z",'
    b'"sdk":{"name":"sentry.javascript.node","version":"11.12.0"}}\n'
    b'{"type":"event"}\n'
    b'{"exception":{"values":[{"type":"RangeError","value":"card declined for 7","stacktrace":{"frames":['
    b'{"filename":"node:internal/modules/run_main","module":"run_main","function":"asyncRunEntryPoint",'
    b'"lineno":117,"colno":5,"in_app":false},'
    b'{"filename":"/app/report.mjs","module":"report","function":"?","lineno":37,"colno":24,"in_app":true},'
    b'{"filename":"/app/shop.mjs","module":"shop","function":"run","lineno":16,"colno":5,"in_app":true},'
    b'{"filename":"/app/shop.mjs","module":"shop","function":"checkout","lineno":11,"colno":9,"in_app":true,'
    b'"context_line":"  throw new RangeError(`card declined for ${amount}`);"}]},'
    b'"mechanism":{"handled":true,"type":"generic"}}]},'
    b'"event_id":"93b9f39e7c9545a7b3341604786e6ead","level":"error","platform":"node",'
    b'"timestamp":1795483669.875,"environment":"production","release":"1.0","server_name":"vm",'
    b'"user":{"id":"u42","ip_address":"{{auto}}"},"tags":{"shop":"eu"}}'
)


def envelope(
    *items: tuple[dict[str, Any], bytes], header: bytes = b'{"event_id":"ab"}', nl: bool = True
) -> bytes:
    out = header + b"\n" + b"".join(orjson.dumps(h) + b"\n" + p + b"\n" for h, p in items)
    return out if nl else out.rstrip(b"\n")


def test_python_chain_is_outermost_first_with_frames_innermost_first():
    n = wire.to_notice(PY_EVENT, "4c2e5d91eca043a2ab309b3b47c4aae5", now=NOW)
    assert [e["type"] for e in n["exceptions"]] == ["PaymentError", "KeyError"]
    assert n["exception"] == "PaymentError" and n["message"] == "card declined for 42"
    outer, cause = n["exceptions"]
    assert [f["function"] for f in outer["frames"]] == ["checkout", "run"]
    assert [f["function"] for f in cause["frames"]] == ["charge", "checkout"]
    top = outer["frames"][0]
    assert top == {
        "file": "shop.py",
        "module": "shop",
        "function": "checkout",
        "line": 14,
        "column": None,
        "in_app": True,
        "context_line": "        raise PaymentError(...) from e",
        "pre_context": ["def x():"],
        "post_context": ["", "def y():"],
    }  # vars are dropped
    assert n["file"] == "shop.py" and n["reference_id"] == "4c2e5d91eca043a2ab309b3b47c4aae5"
    assert n["environment"] == "production" and n["release"] == "1.0" and n["hostname"] == "vm"
    assert n["level"] == "error" and n["user"] == {"id": "u1", "email": "a@b.c"}
    assert n["data"] == {"sys.argv": ["app.py"]}
    assert n["context"]["runtime"]["name"] == "CPython" and n["context"]["platform"] == "python"
    assert n["context"]["breadcrumbs"] == [{"category": "query", "message": "SELECT 1"}]
    assert "modules" not in n["context"]
    assert n["occurred_at"] == pytest.approx(parse_iso("2026-11-24T01:27:36.479675Z"))
    assert "client_fingerprint" not in n


def test_javascript_envelope_without_lengths_or_final_newline():
    env = wire.parse_envelope(JS_ENVELOPE)
    assert env.headers["sent_at"] == "2026-11-24T01:27:49.931Z"
    [item] = env.items
    assert item.type == "event" and item.headers == {"type": "event"}
    event = wire.event_object(item.payload)
    n = wire.to_notice(
        event, wire.event_id(event), now=NOW + 10, sent_at=env.headers["sent_at"], client_ip="10.1.2.3"
    )
    frames = n["exceptions"][0]["frames"]
    assert [(f["file"], f["function"], f["in_app"]) for f in frames] == [
        ("/app/shop.mjs", "checkout", True),
        ("/app/shop.mjs", "run", True),
        ("/app/report.mjs", None, True),  # "?" is Sentry's "unknown", as Airbrake's ""
        ("node:internal/modules/run_main", "asyncRunEntryPoint", False),
    ]
    assert frames[0]["line"] == 11 and frames[0]["column"] == 9
    assert n["occurred_at"] == pytest.approx(1795483669.875)
    assert n["user"] == {"id": "u42", "ip_address": "10.1.2.3"}  # {{auto}}: the sender's address
    assert n["tags"] == ["shop:eu"]


def test_items_with_and_without_length_mixed_and_binary_payloads():
    attachment = b"\x00\n\x01binary\nwith newlines"
    raw = envelope(
        ({"type": "session"}, b'{"sid":"x"}'),
        ({"type": "attachment", "length": len(attachment), "filename": "a.bin"}, attachment),
        ({"type": "event", "length": 16}, b'{"message":"hi"}'),
        ({"type": "client_report"}, b"{}"),
        nl=False,
    )
    env = wire.parse_envelope(raw)
    assert [i.type for i in env.items] == ["session", "attachment", "event", "client_report"]
    assert env.items[1].payload == attachment and env.items[2].payload == b'{"message":"hi"}'
    assert wire.parse_envelope(b'{"event_id":"x"}').items == []
    assert wire.parse_envelope(b'{}\n\n{"type":"event","length":2}\n{}\n\n').items[0].payload == b"{}"
    assert wire.parse_envelope(b'{}\n{"type":"event","length":0}').items[0].payload == b""


@pytest.mark.parametrize(
    "raw",
    [
        b"not json\n",
        b"[1]\n",
        b'{}\n{"type":"event","length":99}\n{}',
        b'{}\n{"type":"event","length":-1}\n',
        b'{}\n{"type":"event","length":"2"}\n{}',
        b"{}\nnope\n{}",
    ],
)
def test_malformed_envelopes_are_400(raw):
    with pytest.raises(ApiError) as e:
        wire.parse_envelope(raw)
    assert e.value.status == 400


def test_event_limits_and_ids():
    with pytest.raises(ApiError) as e:
        wire.event_object(b"{" + b" " * wire.MAX_EVENT + b"}")
    assert e.value.status == 413
    with pytest.raises(ApiError) as e:
        wire.event_object(b"[]")
    assert e.value.status == 400
    assert (
        wire.event_id({"event_id": "4C2E5D91-ECA0-43A2-AB30-9B3B47C4AAE5"})
        == "4c2e5d91eca043a2ab309b3b47c4aae5"
    )
    assert wire.event_id({}, "4c2e5d91eca043a2ab309b3b47c4aae5") == "4c2e5d91eca043a2ab309b3b47c4aae5"
    assert len(wire.event_id({})) == 32
    with pytest.raises(ApiError):
        wire.event_id({"event_id": "not-an-id"})


def test_message_events_logentry_formatting_and_stack():
    n = wire.to_notice({"message": "hello world", "level": "info", "logger": "shop"}, "a" * 32, now=NOW)
    assert n["type"] == "error" and n["exception"] is None and n["exceptions"] == []
    assert n["message"] == "hello world" and n["level"] == "info" and n["source"] == "shop"
    assert n["occurred_at"] == NOW  # no timestamp: when it arrived
    entry = {"logentry": {"message": "user %s failed %d times", "params": ["bob", 3]}}
    assert wire.log_message(entry) == "user bob failed 3 times"
    assert wire.log_message({"logentry": {"message": "x %s", "params": [], "formatted": "x y"}}) == "x y"
    assert wire.log_message({"logentry": {"message": "bad %d", "params": ["z"]}}) == "bad %d"
    assert wire.log_message({"message": {"message": "legacy %(a)s", "params": {"a": 1}}}) == "legacy 1"
    stack = {"frames": [{"filename": "a.py", "function": "outer"}, {"filename": "a.py", "function": "inner"}]}
    n = wire.to_notice({"message": "with stack", "stacktrace": stack}, "a" * 32, now=NOW)
    assert [f["function"] for f in n["exceptions"][0]["frames"]] == ["inner", "outer"]
    threads = {
        "values": [{"id": 1, "stacktrace": {"frames": []}}, {"id": 2, "current": True, "stacktrace": stack}]
    }
    n = wire.to_notice({"message": "threads", "threads": threads}, "a" * 32, now=NOW)
    assert n["exceptions"][0]["frames"][0]["function"] == "inner"
    # a logged exception keeps the log line beside the exception's own message
    n = wire.to_notice({**PY_EVENT, "logentry": {"formatted": "payment failed"}}, "a" * 32, now=NOW)
    assert n["message"] == "card declined for 42" and n["context"]["log_message"] == "payment failed"


def test_request_user_tags_fingerprint():
    event = {
        "exception": [{"type": "E", "value": "v"}],  # the legacy bare list
        "request": {
            "method": "POST",
            "url": "http://x/pay",
            "query_string": "a=1&b=",
            "headers": [["User-Agent", "curl"], ["X-Req", "1"]],
            "cookies": {"sid": "s"},
            "data": {"card": "[Filtered]"},
            "env": {"REMOTE_ADDR": "1.2.3.4"},
        },
        "tags": [["region", "eu"], ["bad"]],
        "fingerprint": ["{{ default }}", "payments"],
    }
    n = wire.to_notice(event, "a" * 32, now=NOW)
    assert n["cgi"] == {
        "REQUEST_METHOD": "POST",
        "REQUEST_URI": "http://x/pay",
        "QUERY_STRING": "a=1&b=",
        "HTTP_USER_AGENT": "curl",
        "HTTP_X_REQ": "1",
        "HTTP_COOKIE": "sid=s",
        "REMOTE_ADDR": "1.2.3.4",
    }
    assert n["params"] == {"a": "1", "b": "", "card": "[Filtered]"}
    assert n["tags"] == ["region:eu"] and n["client_fingerprint"] == ["{{ default }}", "payments"]
    assert n["exception"] == "E" and n["exceptions"][0]["frames"] == []
    assert wire.request_parts({"query_string": [["q", "1"]], "data": "raw body"}) == (
        {},
        {"q": "1", "body": "raw body"},
    )


def test_timestamps_drift_and_clamp():
    assert wire.occurred_at("2026-11-24T01:27:36Z", None, NOW) == NOW - 4
    assert wire.occurred_at(NOW - 4, None, NOW) == NOW - 4
    assert wire.occurred_at(str(NOW - 4), None, NOW) == NOW - 4
    # a client clock two hours behind: its sent_at says so, and the event moves with it
    assert wire.occurred_at(NOW - 7200 - 5, NOW - 7200, NOW) == NOW - 5
    # under 55 minutes of drift is left alone (network time, queued retries)
    assert wire.occurred_at(NOW - 600, NOW - 60, NOW) == NOW - 600
    assert wire.occurred_at(NOW + 3600, None, NOW) == NOW + 60
    assert wire.occurred_at(NOW - 90 * 86400, None, NOW) == NOW - 30 * 86400
    assert wire.occurred_at("garbage", None, NOW) == NOW and wire.occurred_at(True, None, NOW) == NOW


def test_in_app_missing_is_decided_from_abs_path_only_for_libraries():
    lib = wire.to_frame(
        {"filename": "requests/api.py", "abs_path": "/v/lib/python3.11/site-packages/requests/api.py"}
    )
    app = wire.to_frame({"filename": "shop.py", "abs_path": "/srv/shop.py"})
    kept = wire.to_frame({"filename": "shop.py", "abs_path": "/v/site-packages/shop.py", "in_app": True})
    assert (lib["in_app"], app["in_app"], kept["in_app"]) == (False, None, True)


def test_store_body_json_and_legacy_base64_zlib():
    assert wire.store_body(b' {"a":1}', 100) == b' {"a":1}'
    packed = base64.b64encode(zlib.compress(b'{"message":"old"}'))
    assert wire.store_body(packed, 100) == b'{"message":"old"}'
    with pytest.raises(ApiError) as e:
        wire.store_body(base64.b64encode(zlib.compress(b"{" + b" " * 500 + b"}")), 100)
    assert e.value.status == 413
    with pytest.raises(ApiError) as e:
        wire.store_body(b"%%%", 100)
    assert e.value.status == 400


def test_auth_forms_and_conflicts():
    assert auth_fields("Sentry sentry_key=abc, sentry_version=7,sentry_client=x/1") == {
        "sentry_key": "abc",
        "sentry_version": "7",
        "sentry_client": "x/1",
    }
    assert auth_fields("Bearer abc") == {} and auth_fields(None) == {}
    assert pick_key({"X-Sentry-Auth": "Sentry sentry_key=abc"}, {}, None) == "abc"
    assert pick_key({"Authorization": "Sentry sentry_key=abc"}, {}, None) == "abc"
    assert pick_key({}, {"sentry_key": "abc"}, None) == "abc"
    assert pick_key({}, {}, "abc") == "abc"  # Api-Key, Bearer, ?api_key= ... as everywhere
    assert pick_key({"X-Sentry-Auth": "Sentry sentry_key=abc"}, {"sentry_key": "abc"}, None) == "abc"
    assert pick_key({"X-Sentry-Auth": "Sentry sentry_version=7"}, {}, None) is None
    with pytest.raises(ApiError) as e:
        pick_key({"X-Sentry-Auth": "Sentry sentry_key=abc"}, {"sentry_key": "other"}, None)
    assert e.value.status == 400


def test_errors_take_relays_shape_and_429_carries_both_sdk_headers():
    e = sentry_error(ApiError(413, "too big"))
    assert (e.status, e.body, e.headers) == (413, {"detail": "too big"}, {})
    e = sentry_error(ApiError(429, "slow down", headers={"Retry-After": "17"}))
    assert e.headers == {"Retry-After": "17", "X-Sentry-Rate-Limits": "17::project"}
    e = sentry_error(ApiError(429, "slow down", headers={"x-sentry-rate-limits": "30:error:key"}))
    assert e.headers == {"x-sentry-rate-limits": "30:error:key", "Retry-After": "30"}
    e = sentry_error(ApiError(429, "slow down"))
    assert e.headers == {"Retry-After": "60", "X-Sentry-Rate-Limits": "60::project"}


def test_same_python_error_fingerprints_alike_whatever_the_message_or_line():
    a = wire.to_notice(PY_EVENT, "a" * 32, now=NOW)
    moved = orjson.loads(orjson.dumps(PY_EVENT))
    moved["exception"]["values"][1]["value"] = "card declined for 99"
    for v in moved["exception"]["values"]:
        for f in v["stacktrace"]["frames"]:
            f["lineno"] += 10
    b = wire.to_notice(moved, "b" * 32, now=NOW)
    assert fingerprint(a) == fingerprint(b)


def test_project_create_prints_the_gateways_dsn():
    out = project_json(Settings(host="10.0.0.5", gateway_port=9000), 3, "shop", "k" * 32)
    assert out["dsn"] == f"http://{'k' * 32}@10.0.0.5:9000/3"
    wildcard = Settings(host="0.0.0.0", public_url="https://errors.example.com")
    assert project_json(wildcard, 3, "shop", "key")["dsn"] == "http://key@errors.example.com:8000/3"
    assert project_json(Settings(host="::1"), 3, "shop", "key")["dsn"] == "http://key@[::1]:8000/3"
