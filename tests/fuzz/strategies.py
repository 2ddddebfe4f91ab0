"""Hypothesis strategies and the well-formedness check the fuzz tests share.

Values are what a JSON decoder can hand a parser (orjson: 64-bit integers, finite floats, any text),
biased towards the field names and string shapes the protocols care about so that arbitrary input
still reaches the code behind the first type check.
"""

from __future__ import annotations

import copy
import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import msgpack
import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from services.worker import pipeline
from shared import ids
from shared.fingerprint import fingerprint

# FAULTLINE_FUZZ_EXAMPLES=5000 for a long local hunt; CI keeps the default bounded and deterministic.
EXAMPLES = int(os.environ.get("FAULTLINE_FUZZ_EXAMPLES") or 200)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("FAULTLINE_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

# Field names of every protocol, so random objects hit the parsers' interesting branches.
KEYS = (
    "message",
    "error",
    "exception",
    "backtrace",
    "parameters",
    "session",
    "environment",
    "file",
    "mode",
    "payload",
    "notifier",
    "event",
    "context",
    "class_name",
    "created_at",
    "timestamp",
    "name",
    "project_root",
    "hostname",
    "current_user",
    "number",
    "method",
    "context_line",
    "pre_context",
    "post_context",
    "api_key",
    "key",
    "type",
    "source",
    "date",
    "tags",
    "geo",
    "value",
    "count",
    "reference_id",
    "referenceId",
    "data",
    "@error",
    "@simple_error",
    "@request",
    "@environment",
    "@user",
    "@stack",
    "@version",
    "@level",
    "@submission_method",
    "@user_description",
    "inner",
    "stack_trace",
    "target_method",
    "file_name",
    "line_number",
    "column",
    "declaring_type",
    "declaring_namespace",
    "signature_data",
    "title",
    "machine_name",
    "query_string",
    "post_data",
    "is_secure",
    "description",
    "email_address",
    "event_id",
    "exception",
    "values",
    "stacktrace",
    "raw_stacktrace",
    "frames",
    "filename",
    "abs_path",
    "function",
    "raw_function",
    "module",
    "lineno",
    "colno",
    "in_app",
    "threads",
    "crashed",
    "current",
    "logentry",
    "formatted",
    "params",
    "level",
    "logger",
    "release",
    "server_name",
    "user",
    "ip_address",
    "request",
    "url",
    "headers",
    "cookies",
    "env",
    "contexts",
    "breadcrumbs",
    "extra",
    "fingerprint",
    "sdk",
    "platform",
    "transaction",
    "culprit",
    "errors",
    "line",
    "code",
    "severity",
    "revision",
    "version",
    "component",
    "length",
    "content_type",
    "sent_at",
)
STRINGS = (
    "",
    " ",
    "\x00",
    "0",
    "-1",
    "1e400",
    "99999999999999999999",
    "true",
    "null",
    "{}",
    "[]",
    "%s",
    "%d",
    "%(x)s",
    "%99999999999d",
    "%*d",
    "%.99999999999f",
    "{{ default }}",
    "{{ type }}",
    "{{ function }}",
    "2026-11-24T01:30:22Z",
    "2026-11-24T01:30:22.1234567+14:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "1700000000.5",
    "-1e308",
    "[PROJECT_ROOT]/app/models/user.rb:7:in `save'",
    "/app/x.rb:12:in `block (2 levels) in run'",
    '  File "/srv/app/shop.py", line 14, in checkout',
    "    at Object.<anonymous> (/app/x.js:1:2)",
    "at com.x.Foo.bar(Foo.java:12)",
    "main.main()\n\t/app/main.go:12 +0x1d",
    "goroutine 1 [running]:",
    "#0 /app/x.php(12): Foo->bar()",
    "file:///C:/app/x.js?v=1#h",
    "http://h/a.js:1:2",
    "{{auto}}",
    "ValueError: bad\nTraceback (most recent call last):",
    "\ud7ff\ue000\U0010ffff",
    "é" * 3,
    "a" * 300,
    "event",
    "session",
    "attachment",
    "heartbeat",
    "error",
    "log",
    "4242424242424242",
)

text = st.one_of(st.sampled_from(STRINGS), st.text(max_size=40))
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=12))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),  # what orjson decodes to int
    st.integers(min_value=-1000, max_value=1000),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(keys, inner, max_size=6),
    ),
    max_leaves=25,
)
json_objects = st.dictionaries(keys, json_values, max_size=8)


def as_json(value: Any) -> bytes:
    return orjson.dumps(value)


# ---- structurally near-valid payloads ---------------------------------------------------------


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a JSON document (dict keys and list indices), the document itself first."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


@st.composite
def near_valid(draw: st.DrawFn, valid: Any, max_mutations: int = 3) -> Any:
    """The valid document with one to three parts replaced by random values, removed, or added."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, max_mutations))):
        candidates = list(paths(doc))[1:]
        if not candidates:
            return doc
        path = draw(st.sampled_from(candidates))
        parent = _at(doc, path[:-1])
        action = draw(st.sampled_from(("replace", "replace", "delete", "add")))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "delete":
            parent.pop(path[-1])
        elif isinstance(parent, dict):
            parent[draw(keys)] = draw(json_values)
        else:
            parent.insert(path[-1], draw(json_values))
    return doc


@st.composite
def mangled_bytes(draw: st.DrawFn, valid: bytes) -> bytes:
    """Valid bytes truncated, with a slice replaced, or with random bytes spliced in."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(data)))
        j = draw(st.integers(i, min(len(data), i + 16)))
        data[i:j] = draw(st.binary(max_size=8))
    return bytes(data)


# ---- what every parser must produce ------------------------------------------------------------

_HEX40 = re.compile(r"[0-9a-f]{40}")


def _optional(value: Any, kind: type | tuple[type, ...]) -> bool:
    return value is None or (isinstance(value, kind) and not isinstance(value, bool))


def check_frame(f: Any) -> None:
    assert isinstance(f, dict), f
    for key in ("file", "module", "function"):
        assert _optional(f.get(key), str), (key, f)
    for key in ("line", "column"):
        assert _optional(f.get(key), int), (key, f)
    assert f.get("in_app") is None or isinstance(f["in_app"], bool), f
    for key in ("pre_context", "post_context"):
        if key in f:
            assert isinstance(f[key], list) and all(isinstance(s, str) for s in f[key]), (key, f)


def check_notice(notice: Any, protocol: str) -> None:
    """A canonical notice the gateway can queue and a worker can store, or an AssertionError."""
    assert isinstance(notice, dict), notice
    assert notice["protocol"] == protocol
    for key in ("type", "environment"):
        assert isinstance(notice[key], str), (key, notice)
    for key in ("exception", "message"):
        assert _optional(notice[key], str), (key, notice)
    assert _optional(notice["occurred_at"], (int, float)), notice
    assert isinstance(notice["exceptions"], list), notice
    for exc in notice["exceptions"]:
        assert isinstance(exc, dict), exc
        assert _optional(exc["type"], str) and _optional(exc["message"], str), exc
        assert isinstance(exc["frames"], list), exc
        for f in exc["frames"]:
            check_frame(f)
    assert msgpack.unpackb(msgpack.packb(notice, use_bin_type=True), raw=False) == notice
    fp = fingerprint(notice)
    assert isinstance(fp, str) and _HEX40.fullmatch(fp), fp
    # A worker's row for it (as a format-1 entry would give): a 2xx must be storable.
    nid = ids.uuid7(1_800_000_000_000)
    pipeline.row(nid, uuid.uuid4(), 1, 1, fp, 1, notice, b"{}", pipeline.DEFAULT_FIELDS)
