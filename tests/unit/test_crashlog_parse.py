"""CrashLog payloads -> canonical notices: pure functions, fixture payloads, no I/O."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from services.query.locate import payload_from_notice
from shared.fingerprint import fingerprint
from shared.protocols import crashlog
from shared.protocols.exceptioner import parse_notice as parse_exceptioner
from shared.web import ApiError

FULL: dict[str, Any] = {
    "notifier": {"name": "crashlog-nodejs", "version": "1.0.0"},
    "event": {
        "message": "Some one line error description",
        "class_name": "RuntimeError",
        "created_at": "2012-08-03T12:34:19+10:00",
    },
    "backtrace": [
        {
            "file": "/home/deploy/my_app/current/lib/somewhere.js",
            "number": 14,
            "method": "raiseTheRoof",
            "context_line": "throw new Error('roof');",
            "pre_context": ["function raiseTheRoof() {", "  // about to fail"],
            "post_context": ["}"],
        },
        {"file": "somewhere_else.js", "number": 192, "method": "setup"},
    ],
    "environment": {
        "project_root": "/home/deploy/my_app/current",
        "platform": "Node.js 0.6.x",
        "name": "production",
        "system": {"distribution": "Ubuntu 12.04 LTS"},
        "browser": {"ident": "Usual browser tag"},
        "plugins": [],
    },
    "context": {
        "hostname": "app01.myhostname.com",
        "current_user": {"id": 1, "email": "ivan@crashlog.io"},
        "controller": {"name": "usersController", "action": "index"},
    },
}
MINIMAL: dict[str, Any] = {"notifier": {"name": "crashlog"}, "event": {"class_name": "E", "message": "m"}}


def errors_of(exc: pytest.ExceptionInfo[ApiError]) -> list[dict[str, str]]:
    assert exc.value.status == 422
    assert exc.value.body["message"] == "Validation failed"
    return list(exc.value.body["errors"])


def test_full_payload_maps_every_interface() -> None:
    n = crashlog.parse_payload(copy.deepcopy(FULL))
    assert n["protocol"] == "crashlog" and n["type"] == "error"
    assert n["exception"] == "RuntimeError"
    assert n["message"] == "Some one line error description"
    assert n["environment"] == "production"
    assert n["occurred_at"] == dt.datetime(2012, 8, 3, 2, 34, 19, tzinfo=dt.UTC).timestamp()
    assert n["hostname"] == "app01.myhostname.com"
    assert n["user"] == {"id": 1, "email": "ivan@crashlog.io"}
    assert n["context"] == FULL["context"]
    assert n["cgi"] == FULL["environment"]
    assert n["data"] == {"notifier": FULL["notifier"]}
    [exc] = n["exceptions"]
    assert exc["type"] == "RuntimeError" and exc["message"] == "Some one line error description"
    top, second = exc["frames"]
    assert top["file"] == "[PROJECT_ROOT]/lib/somewhere.js"
    assert (top["function"], top["line"], top["in_app"]) == ("raiseTheRoof", 14, None)
    assert top.get("context_line") == "throw new Error('roof');"
    assert top.get("pre_context") == ["function raiseTheRoof() {", "  // about to fail"]
    assert top.get("post_context") == ["}"]
    assert second["file"] == "somewhere_else.js" and "context_line" not in second
    assert n.get("file") == "[PROJECT_ROOT]/lib/somewhere.js"


def test_minimal_payload() -> None:
    n = crashlog.parse_payload(copy.deepcopy(MINIMAL))
    assert n["environment"] == "" and n["occurred_at"] is None
    assert n["exceptions"] == [{"type": "E", "message": "m", "frames": []}]
    for absent in ("cgi", "context", "user", "hostname", "file"):
        assert absent not in n


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2012-08-03T02:34:19Z", "2012-08-03T02:34:19+00:00"),
        ("2012-08-02T21:04:19-05:30", "2012-08-03T02:34:19+00:00"),
        ("2012-08-03T04:34:19.123456+02:00", "2012-08-03T02:34:19.123456+00:00"),
    ],
)
def test_created_at_any_offset_is_stored_as_utc_epoch(stamp: str, expected: str) -> None:
    n = crashlog.parse_payload({**MINIMAL, "event": {"class_name": "E", "created_at": stamp}})
    assert n["occurred_at"] == dt.datetime.fromisoformat(expected).timestamp()


def test_ruby_client_unix_timestamp_is_used_without_created_at() -> None:
    n = crashlog.parse_payload({**MINIMAL, "event": {"class_name": "E", "timestamp": 1344000000}})
    assert n["occurred_at"] == 1344000000.0


@pytest.mark.parametrize("missing", ["notifier", "event"])
def test_required_interfaces_are_named(missing: str) -> None:
    payload = {k: v for k, v in FULL.items() if k != missing}
    with pytest.raises(ApiError) as exc:
        crashlog.parse_payload(payload)
    assert errors_of(exc) == [{"resource": "Payload", "field": missing, "code": "missing_field"}]


def test_both_missing_and_bad_types_are_all_reported() -> None:
    with pytest.raises(ApiError) as exc:
        crashlog.parse_payload({"backtrace": "nope", "context": [], "environment": {"name": 3}})
    assert errors_of(exc) == [
        {"resource": "Payload", "field": "notifier", "code": "missing_field"},
        {"resource": "Payload", "field": "event", "code": "missing_field"},
        {"resource": "Payload", "field": "backtrace", "code": "invalid"},
        {"resource": "Payload", "field": "context", "code": "invalid"},
        {"resource": "Environment", "field": "name", "code": "invalid"},
    ]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"class_name": 5}, "class_name"),
        ({"message": ["x"]}, "message"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"created_at": 12}, "created_at"),
    ],
)
def test_bad_event_fields(event: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as exc:
        crashlog.parse_payload({**MINIMAL, "event": event})
    assert errors_of(exc) == [{"resource": "Event", "field": field, "code": "invalid"}]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ("app.rb:1", "backtrace"),
        ({"file": 1}, "file"),
        ({"number": "twelve"}, "number"),
        ({"number": True}, "number"),
        ({"pre_context": "x"}, "pre_context"),
        ({"post_context": [1]}, "post_context"),
        ({"context_line": {}}, "context_line"),
    ],
)
def test_bad_frames(entry: Any, field: str) -> None:
    with pytest.raises(ApiError) as exc:
        crashlog.parse_payload({**MINIMAL, "backtrace": [entry, entry]})
    assert errors_of(exc) == [{"resource": "Backtrace", "field": field, "code": "invalid"}]


def test_line_number_as_digit_string() -> None:
    n = crashlog.parse_payload({**MINIMAL, "backtrace": [{"file": "a.js", "number": "12", "method": "f"}]})
    assert n["exceptions"][0]["frames"][0]["line"] == 12


@pytest.mark.parametrize(
    ("file", "root", "expected"),
    [
        ("/srv/app/current/app/x.rb", "/srv/app/current", "[PROJECT_ROOT]/app/x.rb"),
        ("/srv/app/current/app/x.rb", "/srv/app/current/", "[PROJECT_ROOT]/app/x.rb"),
        ("/srv/app/currently/x.rb", "/srv/app/current", "/srv/app/currently/x.rb"),
        ("/usr/lib/ruby/x.rb", "/srv/app/current", "/usr/lib/ruby/x.rb"),
        ("C:\\app\\lib\\x.js", "C:\\app", "[PROJECT_ROOT]\\lib\\x.js"),
        ("/x.rb", "/", "/x.rb"),
        ("/x.rb", None, "/x.rb"),
    ],
)
def test_strip_root(file: str, root: str | None, expected: str) -> None:
    assert crashlog.strip_root(file, root) == expected


def test_ruby_labels_split_like_the_text_parser() -> None:
    n = crashlog.parse_payload(
        {
            **MINIMAL,
            "backtrace": [
                {"file": "/srv/app/models/user.rb", "number": 3, "method": "User#save"},
                {"file": "/srv/app.js", "number": 3, "method": "Object.run"},
            ],
        }
    )
    ruby, js = n["exceptions"][0]["frames"]
    assert (ruby["module"], ruby["function"]) == ("User", "save")
    assert (js["module"], js["function"]) == (None, "Object.run")


# ---- where the payload is found ---------------------------------------------------------------


def test_bare_json_body_is_stored_byte_for_byte() -> None:
    raw = orjson.dumps(FULL, option=orjson.OPT_INDENT_2)
    sub = crashlog.read_submission(raw, "application/json")
    assert sub.payload == FULL and sub.raw == raw


def test_wrapped_json_body() -> None:
    raw = orjson.dumps({"payload": FULL, "auth_token": "k"})
    sub = crashlog.read_submission(raw, "application/json")
    assert sub.payload == FULL
    assert orjson.loads(sub.raw) == FULL
    assert crashlog.body_fields(raw, "application/json") == {"auth_token": "k"}


def test_double_encoded_payload() -> None:
    inner = orjson.dumps(MINIMAL)
    sub = crashlog.read_submission(orjson.dumps({"payload": inner.decode()}), "application/json")
    assert sub.payload == MINIMAL and sub.raw == inner


def test_credentials_never_stored_with_a_bare_payload() -> None:
    raw = orjson.dumps({**MINIMAL, "auth_token": "secret"})
    sub = crashlog.read_submission(raw, "application/json")
    assert crashlog.body_fields(raw, "application/json") == {"auth_token": "secret"}
    assert b"secret" not in sub.raw and sub.payload == MINIMAL


def test_form_body() -> None:
    text = orjson.dumps(FULL).decode()
    raw = urlencode({"auth_token": "k", "payload": text}).encode()
    sub = crashlog.read_submission(raw, "application/x-www-form-urlencoded")
    assert sub.payload == FULL and sub.raw == text.encode()
    assert crashlog.body_fields(raw, "application/x-www-form-urlencoded")["auth_token"] == "k"


@pytest.mark.parametrize(
    ("raw", "ctype"),
    [
        (b"{nope", "application/json"),
        (b"[1]", "application/json"),
        (b"a=%FF", "application/x-www-form-urlencoded"),
    ],
)
def test_body_fields_never_raise(raw: bytes, ctype: str) -> None:
    assert crashlog.body_fields(raw, ctype) == {}


def test_json_labelled_as_form_like_the_ruby_client_sends_it() -> None:
    raw = b'  {"payload": {"notifier": {}, "event": {}}}'
    sub = crashlog.read_submission(raw, "application/x-www-form-urlencoded")
    assert sub.payload == {"notifier": {}, "event": {}}


@pytest.mark.parametrize(
    ("raw", "ctype", "status", "message"),
    [
        (b"{nope", "application/json", 400, "Problems parsing JSON"),
        (b"[1, 2]", "application/json", 400, "Body should be a JSON Hash"),
        (b"", "application/json", 400, "Problems parsing JSON"),
        (b"payload=%7Bnope", "application/x-www-form-urlencoded", 400, "Problems parsing JSON"),
        (b"payload=%5B%5D", "application/x-www-form-urlencoded", 400, "Body should be a JSON Hash"),
        (b"payload=%FF", "application/x-www-form-urlencoded", 400, "Problems parsing form data"),
    ],
)
def test_malformed_bodies(raw: bytes, ctype: str, status: int, message: str) -> None:
    with pytest.raises(ApiError) as exc:
        crashlog.read_submission(raw, ctype)
    assert (exc.value.status, exc.value.body) == (status, {"message": message})


def test_form_without_payload_is_named() -> None:
    with pytest.raises(ApiError) as exc:
        crashlog.read_submission(b"auth_token=k", "application/x-www-form-urlencoded")
    assert errors_of(exc) == [{"resource": "Payload", "field": "payload", "code": "missing_field"}]


def test_wrapped_payload_must_be_an_object() -> None:
    with pytest.raises(ApiError) as exc:
        crashlog.read_submission(b'{"payload": 3}', "application/json")
    assert errors_of(exc) == [{"resource": "Payload", "field": "payload", "code": "invalid"}]


# ---- folding with Exceptioner -----------------------------------------------------------------


def test_same_error_as_exceptioner_has_the_same_fingerprint() -> None:
    ex = parse_exceptioner(
        {
            "message": "ActiveRecord::RecordInvalid: Validation failed: Email has already been taken",
            "error": {
                "exception": "ActiveRecord::RecordInvalid",
                "mode": "production",
                "backtrace": [
                    "[GEM_ROOT]/gems/activerecord-7.1.0/lib/active_record/base.rb:80:in `raise_invalid'",
                    "[PROJECT_ROOT]/app/models/user.rb:42:in `save'",
                    "[PROJECT_ROOT]/app/controllers/users_controller.rb:7:in `create'",
                ],
            },
        }
    )
    cl = crashlog.parse_payload(
        {
            "notifier": {"name": "crashlog", "version": "1.0.0"},
            "event": {
                "class_name": "ActiveRecord::RecordInvalid",
                "message": "Validation failed: Name is blank",
            },
            "backtrace": [
                {
                    "file": "/home/deploy/app/current/vendor/bundle/ruby/3.2.0/gems/activerecord-7.1.0/lib/"
                    "active_record/validations.rb",
                    "number": 80,
                    "method": "raise_invalid",
                },
                {"file": "/home/deploy/app/current/app/models/user.rb", "number": 40, "method": "save"},
                {
                    "file": "/home/deploy/app/current/app/controllers/users_controller.rb",
                    "number": 9,
                    "method": "create",
                },
            ],
            "environment": {"name": "production", "project_root": "/home/deploy/app/current"},
        }
    )
    assert cl["environment"] == ex["environment"] == "production"
    assert fingerprint(cl) == fingerprint(ex)
    other = copy.deepcopy(cl)
    other["exceptions"][0]["frames"][1]["function"] = "destroy"
    assert fingerprint(other) != fingerprint(ex)


# ---- the interfaces rebuilt for notices of other protocols (services/query/locate.py) -----------


def test_payload_from_an_exceptioner_notice() -> None:
    ex = parse_exceptioner(
        {
            "message": "RuntimeError: boom",
            "error": {
                "exception": "RuntimeError",
                "mode": "staging",
                "backtrace": ["[PROJECT_ROOT]/app/models/user.rb:42:in `save'"],
                "environment": {"HTTP_HOST": "example.com"},
                "parameters": {"id": "1"},
            },
        }
    )
    received = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    assert payload_from_notice(ex, received) == {
        "notifier": {"name": "exceptioner"},
        "event": {"message": "boom", "class_name": "RuntimeError", "created_at": "2024-05-01T12:00:00Z"},
        "backtrace": [{"file": "[PROJECT_ROOT]/app/models/user.rb", "number": 42, "method": "save"}],
        "environment": {"HTTP_HOST": "example.com", "name": "staging"},
        "context": {"params": {"id": "1"}},
    }


def test_payload_from_a_canonical_crashlog_notice_round_trips_the_interfaces() -> None:
    n = crashlog.parse_payload(copy.deepcopy(FULL))
    built = payload_from_notice(n, None)
    assert built["notifier"] == FULL["notifier"]
    assert built["environment"] == FULL["environment"]
    assert built["context"] == FULL["context"]
    assert built["event"] == {
        "message": FULL["event"]["message"],
        "class_name": "RuntimeError",
        "created_at": "2012-08-03T02:34:19Z",
    }
    assert built["backtrace"][0]["pre_context"] == FULL["backtrace"][0]["pre_context"]
