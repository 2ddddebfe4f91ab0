"""Exceptionless v2 parsing: submitted events -> canonical notices, GET submissions, descriptions.

Payloads are what the real clients sent (captured from @exceptionless/node 3.2.1 and PyPI
`exceptionless` 0.1.0 on loopback, trimmed), plus the server documentation's own examples.
"""

from __future__ import annotations

import datetime as dt
import gzip
from typing import Any

import orjson
import pytest

from services.worker import descriptions
from shared import stream as codec
from shared.fingerprint import fingerprint
from shared.protocols.exceptionless import wire as parse
from shared.web import ApiError

NOW = 1_800_000_000.0  # 2027-01-15

ENVIRONMENT = {
    "processor_count": 2,
    "process_name": "node",
    "architecture": "x64",
    "o_s_name": "Linux",
    "runtime_version": "v20.20.2",
    "machine_name": "vm",
    "ip_address": "192.0.2.2",
    "data": {"platform": "linux"},
}

# @exceptionless/node 3.2.1: submitException(new TypeError(...)) from an ES module.
NODE_ERROR: dict[str, Any] = {
    "date": "2026-11-24T01:30:22.746Z",
    "type": "error",
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
                {
                    "name": None,
                    "parameters": [],
                    "file_name": "file:///app/checkout.mjs",
                    "line_number": 117,
                    "column": 36,
                    "declaring_type": None,
                    "data": {"is_native": True},
                },
                {
                    "name": "processTicksAndRejections",
                    "parameters": [],
                    "file_name": "node:internal/process/task_queues",
                    "line_number": 95,
                    "column": 5,
                    "declaring_type": "process",
                    "data": {"is_native": True},
                },
            ],
        },
        "@environment": ENVIRONMENT,
    },
    "tags": [],
    "reference_id": "f5cf26b41b",
}

NODE_LOG = {
    "date": "2026-11-24T01:30:22.760Z",
    "type": "log",
    "source": "app.checkout",
    "message": "cart saved",
    "data": {"@level": "info", "@environment": ENVIRONMENT},
    "tags": [],
}
NODE_USAGE = {
    "date": "2026-11-24T01:30:22.761Z",
    "type": "usage",
    "source": "export-csv",
    "data": {"@environment": ENVIRONMENT},
    "tags": [],
}
NODE_404 = {
    "date": "2026-11-24T01:30:22.761Z",
    "type": "404",
    "source": "/missing",
    "data": {"@environment": ENVIRONMENT},
    "tags": [],
}

# The server documentation's examples (note the @user at the top level and the 2030 date).
DOC_SIMPLE_ERROR = {
    "type": "error",
    "date": "2030-01-01T12:00:00.0000000-05:00",
    "@simple_error": {
        "message": "Simple Exception",
        "type": "System.Exception",
        "stack_trace": " at Client.Tests.ExceptionlessClientTests.CanSubmitSimpleException() in "
        "ExceptionlessClientTests.cs:line 77",
    },
}
DOC_LOG = {
    "type": "log",
    "message": "Exceptionless is amazing!",
    "date": "2030-01-01T12:00:00.0000000-05:00",
    "@user": {"identity": "123456789", "name": "Test User"},
}

# PyPI exceptionless 0.1.0: the traceback as "@stack", extra data under "data".
PYPI_ERROR = {
    "type": "error",
    "message": "bad price: -3",
    "date": "2026-11-24T01:00:00.123456Z",
    "@stack": "Traceback (most recent call last):\n"
    '  File "/srv/shop/billing.py", line 12, in send_failure\n    charge(-3)\n'
    '  File "/srv/shop/billing.py", line 5, in charge\n'
    '    raise ValueError(f"bad price: {amount}")\n'
    "ValueError: bad price: -3\n",
    "@environment": {"os": "Linux", "python_version": "3.11.7", "hostname": "box"},
    "data": {"customer": "acme"},
}


def notice(event: dict[str, Any]) -> dict[str, Any]:
    n = parse.to_notice(event, NOW)
    assert n is not None
    return dict(n)


# ---- bodies -----------------------------------------------------------------------------------


def test_body_object_array_and_text():
    one = orjson.dumps(NODE_LOG)
    assert parse.split_body(one) == [(NODE_LOG, one)]
    many = parse.split_body(orjson.dumps([NODE_LOG, None, NODE_USAGE]))
    assert [e for e, _ in many] == [NODE_LOG, NODE_USAGE]
    assert orjson.loads(many[1][1]) == NODE_USAGE
    assert parse.split_body(b"first\r\n\n  second \n") == [
        ({"type": "log", "message": "first"}, b"first"),
        ({"type": "log", "message": "second"}, b"second"),
    ]


def test_body_that_is_not_events_becomes_log_lines_as_on_the_real_server():
    assert [e["message"] for e, _ in parse.split_body(b"{not json")] == ["{not json"]
    assert [e["message"] for e, _ in parse.split_body(b"[1, 2]")] == ["[1, 2]"]
    assert parse.split_body(b"[]") == []
    assert parse.split_body('\ufeff{"message": "bom"}'.encode())[0][0] == {"message": "bom"}


def test_normalize_moves_unknown_properties_into_data():
    event, data = parse.normalize(
        {
            "Type": "log",
            "ReferenceId": "abc12345",
            "data": {"a": 1},
            "@user": {"x": 1},
            "id": "server-id",
            "custom": True,
        }
    )
    assert event == {"type": "log", "reference_id": "abc12345"}
    assert data == {"a": 1, "@user": {"x": 1}, "custom": True}


# ---- events -----------------------------------------------------------------------------------


def test_node_error():
    n = notice(NODE_ERROR)
    assert (n["protocol"], n["type"], n["exception"], n["message"]) == (
        "exceptionless",
        "error",
        "TypeError",
        "total is not a number",
    )
    assert n["reference_id"] == "f5cf26b41b"
    assert n["occurred_at"] == dt.datetime(2026, 11, 24, 1, 30, 22, 746000, tzinfo=dt.UTC).timestamp()
    frames = n["exceptions"][0]["frames"]
    assert [(f["function"], f["file"], f["line"], f["column"]) for f in frames] == [
        ("checkoutTotal", "file:///app/checkout.mjs", 57, 9),
        (None, "file:///app/checkout.mjs", 117, 36),
        ("processTicksAndRejections", "node:internal/process/task_queues", 95, 5),
    ]
    assert frames[2]["module"] == "process"
    # is_native is true for every frame of an ES module: not trusted, in-app is decided later.
    assert {f["in_app"] for f in frames} == {None}
    assert n["hostname"] == "vm" and n["context"]["environment"] == ENVIRONMENT
    assert "tags" not in n and "data" not in n


def test_node_errors_group_by_frames_not_by_message_or_line():
    other = orjson.loads(orjson.dumps(NODE_ERROR))
    other["data"]["@error"]["message"] = "price is not a number"
    other["data"]["@error"]["stack_trace"][0]["line_number"] = 60
    assert fingerprint(parse.to_notice(NODE_ERROR, NOW)) == fingerprint(parse.to_notice(other, NOW))  # type: ignore[arg-type]
    other["data"]["@error"]["stack_trace"][0]["name"] = "checkoutTax"
    assert fingerprint(parse.to_notice(NODE_ERROR, NOW)) != fingerprint(parse.to_notice(other, NOW))  # type: ignore[arg-type]


def test_node_log_usage_and_404():
    log = notice(NODE_LOG)
    assert (log["type"], log["source"], log["message"], log["level"]) == (
        "log",
        "app.checkout",
        "cart saved",
        "info",
    )
    assert log["exceptions"] == [] and log["exception"] is None
    usage, missing = notice(NODE_USAGE), notice(NODE_404)
    assert (usage["type"], usage["source"]) == ("usage", "export-csv")
    assert (missing["type"], missing["source"]) == ("404", "/missing")


def test_dotnet_error_chain_is_outermost_first_with_inner_errors_following():
    event = {
        "type": "error",
        "@error": {
            "type": "System.InvalidOperationException",
            "message": "outer",
            "code": "E1",
            "modules": [{"name": "Shop", "version": "1.0"}],
            "stack_trace": [
                {
                    "name": "Submit",
                    "declaring_namespace": "Shop.Web",
                    "declaring_type": "Checkout",
                    "file_name": "Checkout.cs",
                    "line_number": 41,
                    "column": 0,
                }
            ],
            "inner": {
                "type": "System.NullReferenceException",
                "message": "inner",
                "inner": {
                    "type": "System.Exception",
                    "message": "root",
                    "target_method": {"name": "Load", "declaring_type": "Repo"},
                },
            },
        },
    }
    n = notice(event)
    assert [(e["type"], e["message"]) for e in n["exceptions"]] == [
        ("System.InvalidOperationException", "outer"),
        ("System.NullReferenceException", "inner"),
        ("System.Exception", "root"),
    ]
    top = n["exceptions"][0]["frames"][0]
    assert (top["module"], top["function"], top["line"], top["column"]) == (
        "Shop.Web.Checkout",
        "Submit",
        41,
        None,
    )
    assert n["exceptions"][2]["frames"][0]["function"] == "Load"  # the target method stands in for a stack
    assert n["context"]["error"] == {"code": "E1", "modules": [{"name": "Shop", "version": "1.0"}]}


def test_documentation_examples():
    err = notice(DOC_SIMPLE_ERROR)
    assert (err["exception"], err["message"]) == ("System.Exception", "Simple Exception")
    [frame] = err["exceptions"][0]["frames"]
    assert (frame["module"], frame["function"], frame["file"], frame["line"]) == (
        "Client.Tests.ExceptionlessClientTests",
        "CanSubmitSimpleException",
        "ExceptionlessClientTests.cs",
        77,
    )
    assert err["occurred_at"] == NOW  # 2030 is in the future: clamped to now, as the server does
    log = notice(DOC_LOG)
    assert log["user"] == {"identity": "123456789", "name": "Test User"}
    assert "data" not in log


def test_type_defaults_and_heartbeats():
    assert notice({"message": "hi"})["type"] == "log"
    assert notice({"@simple_error": {"message": "m", "type": "T"}})["type"] == "error"
    assert notice({"data": {"@error": {"message": "m"}}})["type"] == "error"
    assert parse.to_notice({"type": "heartbeat"}, NOW) is None
    assert notice({"type": "session", "@ref:session": "s1"})["data"] == {"@ref:session": "s1"}


def test_properties_known_data_and_the_rest():
    n = notice(
        {
            "type": "log",
            "message": "m",
            "tags": ["a", "b", "a", "", 3],
            "geo": "1,2",
            "value": 1.5,
            "count": 2,
            "@request": {"http_method": "GET", "path": "/p", "is_secure": False, "query_string": {"q": "1"}},
            "@version": "2.0.0",
            "@submission_method": "manual",
            "@user_description": {"description": "d"},
            "custom": {"k": "v"},
        }
    )
    assert n["tags"] == ["a", "b"]
    assert n["release"] == "2.0.0"
    assert n["cgi"] == {"REQUEST_METHOD": "GET", "PATH_INFO": "/p"}
    assert n["params"] == {"q": "1"}
    assert n["context"]["geo"] == "1,2" and n["context"]["value"] == 1.5 and n["context"]["count"] == 2
    assert n["context"]["submission_method"] == "manual"
    assert n["user_description"] == {"description": "d"}
    assert n["data"] == {"custom": {"k": "v"}}


def test_manual_stacking_becomes_the_client_fingerprint():
    stack = {"title": "Checkout", "signature_data": {"b": "2", "a": "1"}}
    n = notice({"type": "error", "@stack": stack, "@simple_error": {"message": "x", "type": "E"}})
    assert n["client_fingerprint"] == ["a=1", "b=2"]
    assert n["context"]["stack"] == stack and "data" not in n
    assert parse.manual_stacking({"title": "Only a title"}) == ["title=Only a title"]
    assert parse.manual_stacking({}) is None


def test_pypi_client_traceback_in_the_stack_key():
    n = notice(PYPI_ERROR)
    assert (n["exception"], n["message"]) == ("ValueError", "bad price: -3")
    assert [f["function"] for f in n["exceptions"][0]["frames"]] == ["charge", "send_failure"]
    assert "client_fingerprint" not in n
    assert n["data"] == {"customer": "acme"}
    assert n["context"]["environment"]["python_version"] == "3.11.7"


def test_wrongly_typed_properties_are_ignored_not_fatal():
    n = notice(
        {
            "type": 5,
            "message": ["x"],
            "date": "yesterday",
            "tags": "one",
            "reference_id": {"a": 1},
            "@error": {"type": None, "stack_trace": "not a list", "inner": "no"},
        }
    )
    assert n["type"] == "5" and n["message"] is None and n["occurred_at"] is None
    assert n["tags"] == ["one"] and "reference_id" not in n
    assert n["exceptions"] == [{"type": None, "message": None, "frames": []}]


def test_chains_and_stacks_are_bounded():
    deep: dict[str, Any] = {"type": "E", "message": "0"}
    for i in range(1, 50):
        deep = {"type": "E", "message": str(i), "inner": deep}
    big = {"type": "E", "stack_trace": [{"name": f"f{i}"} for i in range(2000)]}
    assert len(notice({"@error": deep})["exceptions"]) == parse.MAX_CHAIN
    assert len(notice({"@error": big})["exceptions"][0]["frames"]) == parse.MAX_FRAMES


# ---- GET /api/v2/events/submit ------------------------------------------------------------------


def test_submit_parameters_map_like_the_real_server():
    event = parse.submit_event(
        [
            ("access_token", "k"),
            ("TYPE", "usage"),
            ("source", "build"),
            ("message", "m"),
            ("reference", "r-1234567"),
            ("date", "2026-01-02T03:04:05Z"),
            ("count", "3"),
            ("value", "10.5"),
            ("geo", "32.85,-96.9613"),
            ("tags", "a,b"),
            ("tags", "b,,c"),
            ("identity", "u1"),
            ("identity.name", "Ada"),
            ("x", "1"),
            ("x", "2"),
            ("blank", ""),
            ("Api_Key", "k"),
        ],
        path_type="log",
    )
    assert event == {
        "type": "usage",
        "source": "build",
        "message": "m",
        "reference_id": "r-1234567",
        "date": "2026-01-02T03:04:05Z",
        "count": 3,
        "value": 10.5,
        "geo": "32.85,-96.9613",
        "tags": ["a", "b", "c"],
        "data": {"x": ["1", "2"], "@user": {"identity": "u1", "name": "Ada"}},
    }
    n = notice(event)
    assert n["user"] == {"identity": "u1", "name": "Ada"} and n["data"] == {"x": ["1", "2"]}


def test_submit_edge_cases():
    assert parse.submit_event([("access_token", "k"), ("message", "")]) is None
    assert parse.submit_event([("message", "m")]) == {"type": "log", "message": "m"}
    assert parse.submit_event([("message", "m")], path_type="404")["type"] == "404"  # type: ignore[index]
    bad = parse.submit_event([("count", "many"), ("value", "nan"), ("geo", "91,0"), ("message", "m")])
    assert bad == {"type": "log", "message": "m"}
    # Whatever carried the credential never becomes data, whatever its name.
    assert parse.submit_event([("key", "secret-key"), ("message", "m")], credential="secret-key") == {
        "type": "log",
        "message": "m",
    }
    patterns = parse.exclusion_patterns({"@@DataExclusions": "*password*, card*"})
    excluded = parse.submit_event(
        [("Password", "p"), ("card_no", "4111"), ("keep", "1")], exclusions=patterns
    )
    assert excluded == {"type": "log", "data": {"keep": "1"}}


# ---- user descriptions, configuration, envelopes --------------------------------------------------


def test_user_description_validation():
    full = b'{"email_address": "a@b.c", "description": "it broke", "data": {"k": 1}}'
    assert parse.user_description(full) == {
        "email_address": "a@b.c",
        "description": "it broke",
        "data": {"k": 1},
    }
    nul = b'{"description": "x\\u0000y", "email_address": ""}'
    assert parse.user_description(nul) == {"description": "xy"}
    for raw in (
        b"",
        b"nope",
        b"[]",
        b'{"email_address": "a@b.c"}',
        b'{"description": " "}',
        b'{"description": "d", "email_address": 5}',
    ):
        with pytest.raises(ApiError) as e:
            parse.user_description(raw)
        assert e.value.status == 400


def test_configuration_answer_and_version_parameter():
    assert parse.client_configuration({"a": "1"}, 3) == {"version": 3, "settings": {"a": "1"}}
    assert [parse.requested_version(v) for v in (None, "3", "-1", "x", "9" * 20)] == [None, 3, -1, None, None]


def test_description_entry_round_trip_and_decoding_stays_strict():
    d = codec.Description(7, "ab12cd34ef", {"description": "d"}, NOW)
    fields = codec.encode(d)
    assert codec.decode(fields) == d
    broken = codec.encode(codec.Description(7, "", {}, NOW))
    with pytest.raises(codec.CodecError):
        codec.decode(broken)
    raw = codec.RawNotice("exceptionless", "i", "l", 1, b"[]", "application/json", {"q": 1})
    assert codec.decode(codec.encode(raw)) == raw
    legacy = codec.LegacyNotice("i", "l", 1, 2, "f", 1, notice(NODE_LOG), b"{}")
    assert codec.decode(codec.encode_legacy(legacy)) == legacy


def test_text_bodies_are_split_lazily_up_to_the_cap():
    events, more = parse.split(b"a\n" * 7 + b"\r\n\x0bb", 5)
    assert [e["message"] for e, _ in events] == ["a"] * 5 and more == 3
    events, more = parse.split(orjson.dumps([NODE_LOG] * 4), 3)
    assert len(events) == 3 and more == 1


def test_worker_description_helpers():
    a1 = codec.Description(1, "ref-0001", {"description": "first"}, 10.0)
    a2 = codec.Description(1, "ref-0001", {"description": "second"}, 11.0)
    b = codec.Description(2, "ref-0001", {"description": "other project"}, 5.0)
    assert descriptions.latest([(b"1", a2), (b"2", a1), (b"3", b)]) == [a2, b]
    row: list[Any] = [None] * 17
    row[2], row[11] = 1, "ref-0001"
    blank: list[Any] = [None] * 17
    blank[2] = 1
    assert descriptions.notice_refs([row, blank]) == {(1, "ref-0001")}
    assert descriptions.lock_key(1, "ref-0001") == descriptions.lock_key(1, "ref-0001")
    assert descriptions.lock_key(1, "ref-0001") != descriptions.lock_key(2, "ref-0001")
    assert -(1 << 63) <= descriptions.lock_key(1, "x") < 1 << 63


def test_gzip_is_not_this_modules_business():
    # Bodies arrive decompressed (shared.web.read_body); a compressed body here would be text noise.
    assert parse.split_body(gzip.compress(b"x"))[0][0]["type"] == "log"
