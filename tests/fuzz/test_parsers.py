"""Property tests of every protocol's pure parser: anything but a well-formed notice is the protocol's 4xx.

For arbitrary JSON, arbitrary bytes and valid payloads with a few parts replaced, each parser either
returns canonical notices that can be queued, fingerprinted and stored (strategies.check_notice) or
raises ApiError with a 4xx status. Any other exception would be a 500 at the gateway.
"""

from __future__ import annotations

import base64
import gzip
import uuid
import zlib
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

import brotli
import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shared import ids
from shared.fingerprint import parameterize
from shared.frames import parse_line, parse_text
from shared.protocols import airbrake, crashlog, exceptioner
from shared.protocols.base import Undecodable
from shared.protocols.exceptionless import wire as xl
from shared.protocols.registry import BY_NAME
from shared.protocols.sentry import http as sentry
from shared.protocols.sentry import wire
from shared.scrub import FILTERED, scrub, scrub_raw
from shared.stream import RawNotice
from shared.timeutil import from_epoch, parse_iso
from shared.web import ApiError, _Inflater, json_object
from tests.fuzz.payloads import (
    AIRBRAKE,
    CRASHLOG,
    EXCEPTIONER,
    EXCEPTIONLESS,
    PYPI_EXCEPTIONLESS,
    SENTRY_EVENT,
    envelope,
)
from tests.fuzz.strategies import (
    FUZZ,
    as_json,
    check_frame,
    check_notice,
    json_values,
    keys,
    mangled_bytes,
    near_valid,
    text,
)

T = TypeVar("T")
NOW = 1_800_000_000.0


def outcome(parse: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """What the parser returned, or None when it refused the input with a 4xx."""
    try:
        return parse(*args, **kwargs)
    except ApiError as e:
        assert 400 <= e.status < 500, (e.status, str(e))
        assert isinstance(e.body, dict) and isinstance(e.body.get("message"), str), e.body
        return None


raw_inputs = st.one_of(st.binary(max_size=300), json_values.map(as_json))


# ---- Exceptioner ------------------------------------------------------------------------------


def exceptioner_parse(raw: bytes) -> None:
    notice = outcome(lambda: exceptioner.parse_notice(json_object(raw)))
    if notice is not None:
        check_notice(notice, "exceptioner")


def test_exceptioner_valid_payload_is_accepted() -> None:
    check_notice(exceptioner.parse_notice(json_object(as_json(EXCEPTIONER))), "exceptioner")


@FUZZ
@given(raw_inputs)
def test_exceptioner_any_input(raw: bytes) -> None:
    exceptioner_parse(raw)


@FUZZ
@given(near_valid(EXCEPTIONER))
def test_exceptioner_near_valid(doc: Any) -> None:
    exceptioner_parse(as_json(doc))


# ---- CrashLog ---------------------------------------------------------------------------------

CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/x-www-form-urlencoded", "text/plain", "", "multipart/form-data"]
)


def crashlog_parse(raw: bytes, content_type: str) -> None:
    fields = crashlog.body_fields(raw, content_type)  # documented never to raise
    assert isinstance(fields, dict) and all(isinstance(v, str) for v in fields.values())
    sub = outcome(crashlog.read_submission, raw, content_type)
    if sub is None:
        return
    assert isinstance(sub.payload, dict) and isinstance(sub.raw, bytes)
    notice = outcome(crashlog.parse_payload, sub.payload)
    if notice is not None:
        check_notice(notice, "crashlog")


def test_crashlog_valid_payload_is_accepted() -> None:
    sub = crashlog.read_submission(as_json({"payload": CRASHLOG}), "application/json")
    check_notice(crashlog.parse_payload(sub.payload), "crashlog")


@pytest.mark.parametrize("created_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_crashlog_time_outside_the_calendar_is_refused(created_at: str) -> None:
    """Both parsed to an epoch no datetime can hold: accepted, then dead-lettered by the worker."""
    payload = {**CRASHLOG, "event": {**CRASHLOG["event"], "created_at": created_at}}
    with pytest.raises(ApiError) as e:
        crashlog.parse_payload(payload)
    assert e.value.status == 422


@FUZZ
@given(raw_inputs, CONTENT_TYPES)
def test_crashlog_any_input(raw: bytes, content_type: str) -> None:
    crashlog_parse(raw, content_type)


@FUZZ
@given(near_valid(CRASHLOG), st.sampled_from(["bare", "wrapped", "string", "form", "key"]))
def test_crashlog_near_valid(doc: Any, shape: str) -> None:
    if shape == "form":
        raw = urlencode({"payload": as_json(doc).decode(), "api_key": "k"}).encode()
        crashlog_parse(raw, "application/x-www-form-urlencoded")
        return
    wrapped = {
        "bare": doc,
        "wrapped": {"payload": doc},
        "string": {"payload": as_json(doc).decode()},
        "key": {**doc, "api_key": "k"} if isinstance(doc, dict) else doc,
    }[shape]
    crashlog_parse(as_json(wrapped), "application/json")


@FUZZ
@given(st.lists(st.tuples(text, text), max_size=6))
def test_crashlog_any_form(pairs: list[tuple[str, str]]) -> None:
    crashlog_parse(urlencode(pairs).encode(), "application/x-www-form-urlencoded")


# ---- Exceptionless ----------------------------------------------------------------------------


def exceptionless_parse(raw: bytes) -> None:
    events = xl.split_body(raw)
    for event, event_raw in events:
        assert isinstance(event, dict) and isinstance(event_raw, bytes)
        notice = outcome(xl.to_notice, event, NOW)
        if notice is not None:
            check_notice(notice, "exceptionless")


def test_exceptionless_valid_payload_is_accepted() -> None:
    for doc in (EXCEPTIONLESS, PYPI_EXCEPTIONLESS):
        check_notice(xl.to_notice(doc, NOW), "exceptionless")  # type: ignore[arg-type]


@FUZZ
@given(raw_inputs)
def test_exceptionless_any_input(raw: bytes) -> None:
    exceptionless_parse(raw)


@FUZZ
@given(st.one_of(near_valid(EXCEPTIONLESS), near_valid(PYPI_EXCEPTIONLESS)), st.booleans())
def test_exceptionless_near_valid(doc: Any, batch: bool) -> None:
    exceptionless_parse(as_json([doc, doc] if batch else doc))


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.one_of(
                keys,
                st.sampled_from(
                    ["Type", "REFERENCE", "count", "value", "geo", "identity", "identity.name", "tags"]
                ),
            ),
            text,
        ),
        max_size=8,
    ),
    st.one_of(st.none(), text),
    st.one_of(st.none(), text),
    st.lists(text, max_size=3),
)
def test_exceptionless_any_submission(
    pairs: list[tuple[str, str]], path_type: str | None, credential: str | None, exclusions: list[str]
) -> None:
    event = outcome(xl.submit_event, pairs, path_type, credential, exclusions)
    if event is not None:
        notice = outcome(xl.to_notice, event, NOW)
        if notice is not None:
            check_notice(notice, "exceptionless")


@FUZZ
@given(
    st.one_of(
        raw_inputs, near_valid({"email_address": "a@b.c", "description": "d", "data": {"a": 1}}).map(as_json)
    )
)
def test_exceptionless_any_user_description(raw: bytes) -> None:
    data = outcome(xl.user_description, raw)
    if data is not None:
        assert isinstance(data["description"], str) and data["description"].strip()
        assert "\x00" not in orjson.dumps(data).decode("unicode_escape", "replace")


@FUZZ
@given(st.one_of(st.none(), text), st.dictionaries(text, text, max_size=4))
def test_exceptionless_config_helpers(version: str | None, config: dict[str, str]) -> None:
    assert xl.requested_version(version) is None or isinstance(xl.requested_version(version), int)
    assert all(isinstance(p, str) and p for p in xl.exclusion_patterns(config))
    assert xl.client_configuration(config, 3) == {"version": 3, "settings": config}


# ---- Sentry -----------------------------------------------------------------------------------

SENTRY_ITEM_TYPES = st.sampled_from(["event", "session", "attachment", "transaction", "client_report", ""])


def raw_entry(protocol: str, body: bytes, **facts: Any) -> RawNotice:
    return RawNotice(protocol, str(ids.uuid7(int(NOW * 1000))), str(uuid.uuid4()), 1, body, "", facts)


def decoded(protocol: str, body: bytes, **facts: Any) -> list[Any]:
    """The worker's decoding: notices, or Undecodable (a dead letter) and nothing else."""
    try:
        return BY_NAME[protocol].decode(raw_entry(protocol, body, **facts))
    except Undecodable:
        return []


def sentry_envelope_parse(raw: bytes) -> None:
    if outcome(wire.parse_envelope, raw) is None:  # the gateway's 400
        return
    for notice, payload in decoded("sentry", raw, ip="127.0.0.1"):
        assert isinstance(notice["reference_id"], str) and len(notice["reference_id"]) == 32
        assert isinstance(payload, bytes)
        check_notice(notice, "sentry")


def sentry_store_parse(raw: bytes, sent_at: Any) -> None:
    data = outcome(wire.store_body, raw, wire.MAX_EVENT)
    if data is None:
        return
    event = outcome(wire.event_object, data)
    if event is None:
        return
    eid = outcome(wire.event_id, event)
    if eid is None:
        return
    check_notice(wire.to_notice(event, eid, now=NOW, sent_at=sent_at, client_ip=None), "sentry")


def test_sentry_valid_envelope_is_accepted() -> None:
    raw = envelope(
        {"event_id": SENTRY_EVENT["event_id"]}, [({"type": "event"}, as_json(SENTRY_EVENT), True)], False
    )
    [(notice, _)] = decoded("sentry", raw, event_id=SENTRY_EVENT["event_id"])
    assert notice["reference_id"] == SENTRY_EVENT["event_id"]
    check_notice(notice, "sentry")


@FUZZ
@given(raw_inputs)
def test_sentry_any_envelope_bytes(raw: bytes) -> None:
    sentry_envelope_parse(raw)


@FUZZ
@given(
    st.one_of(
        json_values, near_valid({"event_id": SENTRY_EVENT["event_id"], "sent_at": "2026-11-24T01:27:40Z"})
    ),
    st.lists(
        st.tuples(
            st.one_of(st.fixed_dictionaries({"type": SENTRY_ITEM_TYPES}), json_values),
            st.one_of(
                near_valid(SENTRY_EVENT).map(as_json), json_values.map(as_json), st.binary(max_size=40)
            ),
            st.booleans(),
        ),
        max_size=3,
    ),
    st.booleans(),
)
def test_sentry_near_valid_envelope(
    header: Any, items: list[tuple[Any, bytes, bool]], trailing: bool
) -> None:
    sentry_envelope_parse(envelope(header, items, trailing))


@FUZZ
@given(
    mangled_bytes(
        envelope(
            {"event_id": SENTRY_EVENT["event_id"]},
            [
                ({"type": "event"}, as_json(SENTRY_EVENT), True),
                ({"type": "attachment", "length": 3}, b"abc", False),
            ],
            True,
        )
    )
)
def test_sentry_mangled_envelope(raw: bytes) -> None:
    sentry_envelope_parse(raw)


@FUZZ
@given(
    st.one_of(
        raw_inputs,
        near_valid(SENTRY_EVENT).map(as_json),
        near_valid(SENTRY_EVENT).map(lambda d: base64.b64encode(zlib.compress(as_json(d)))),
    ),
    json_values,
)
def test_sentry_any_store_body(raw: bytes, sent_at: Any) -> None:
    sentry_store_parse(raw, sent_at)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["X-Sentry-Auth", "Authorization", "Other"]),
        st.one_of(text, text.map(lambda t: f"Sentry sentry_key={t}, sentry_version=7")),
    ),
    st.dictionaries(st.sampled_from(["sentry_key", "x"]), text),
    st.one_of(st.none(), text),
)
def test_sentry_any_auth(headers: dict[str, str], query: dict[str, str], generic: str | None) -> None:
    key = outcome(sentry.pick_key, headers, query, generic)
    assert key is None or (isinstance(key, str) and key)
    for value in headers.values():
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in sentry.auth_fields(value).items())


@pytest.mark.parametrize(
    ("template", "params"),
    [
        ("%99999999999d", [1]),  # MemoryError before the guard
        ("%*d", [999999999999, 1]),
        ("%(a)99999999999s", {"a": 1}),
        ("%(a)s" * 20_000, {"a": "x" * 1000}),  # 20 MB from a 100 kB event
        ("%c", [99999999]),  # OverflowError before the guard
    ],
)
def test_sentry_logentry_template_cannot_blow_up(template: str, params: Any) -> None:
    event = {"logentry": {"message": template, "params": params}}
    assert wire.log_message(event) == template
    check_notice(wire.to_notice(event, "0" * 32, now=NOW), "sentry")


def test_sentry_logentry_template_is_still_applied() -> None:
    assert wire.log_message({"logentry": {"message": "failed %s after %5.1f s", "params": ["x", 2]}}) == (
        "failed x after   2.0 s"
    )


# ---- Airbrake ---------------------------------------------------------------------------------


def airbrake_parse(raw: bytes) -> None:
    notice = outcome(airbrake.parse_notice, raw)
    if notice is not None:
        check_notice(notice, "airbrake")


def test_airbrake_valid_payload_is_accepted() -> None:
    check_notice(airbrake.parse_notice(as_json(AIRBRAKE)), "airbrake")


@FUZZ
@given(raw_inputs)
def test_airbrake_any_input(raw: bytes) -> None:
    airbrake_parse(raw)


@FUZZ
@given(near_valid(AIRBRAKE))
def test_airbrake_near_valid(doc: Any) -> None:
    airbrake_parse(as_json(doc))


# ---- shared helpers ---------------------------------------------------------------------------

stack_text = st.lists(st.one_of(text, st.text(max_size=80)), max_size=8).map("\n".join)


@FUZZ
@given(stack_text)
def test_frames_parse_any_text(value: str) -> None:
    for f in parse_text(value):
        check_frame(f)
    for line in value.splitlines() or [value]:
        check_frame(parse_line(line))


@FUZZ
@given(st.one_of(st.none(), text, stack_text))
def test_parameterize_any_message(message: str | None) -> None:
    out = parameterize(message)
    assert isinstance(out, str) and "\n" not in out.strip("\r")
    assert parameterize(out) == parameterize(parameterize(out))


@FUZZ
@given(json_values, st.frozensets(text.filter(bool), max_size=3))
def test_scrub_any_value(value: Any, fields: frozenset[str]) -> None:
    once = scrub(value, fields or frozenset({"password"}))
    assert scrub(once, fields or frozenset({"password"})) == once
    raw = scrub_raw(as_json(value))
    assert isinstance(raw, bytes)
    if isinstance(value, dict) and value.get("password") not in (None, ""):
        assert orjson.loads(raw)["password"] == FILTERED


@FUZZ
@given(
    st.one_of(
        json_values,
        st.text(min_size=10, max_size=40),
        st.from_regex(
            r"[+-]?\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d{1,9})?)?)?([zZ]|[+-]\d\d:?\d\d)?", fullmatch=True
        ),
    )
)
@example("0001-01-01T00:00:00+14:00")  # a valid ISO string whose UTC year is 0: once a 500 / a dead letter
@example("9999-12-31T23:59:59-14:00")
def test_parse_iso_any_value(value: Any) -> None:
    when = parse_iso(value)
    if when is not None:
        assert isinstance(when, float)
        from_epoch(when)  # whatever it returns is a time the API can print and PostgreSQL can store


# ---- decompression ----------------------------------------------------------------------------

ENCODINGS = st.sampled_from(["gzip", "x-gzip", "deflate", "br"])


def compress(encoding: str, data: bytes, raw_deflate: bool) -> bytes:
    if encoding in ("gzip", "x-gzip"):
        return gzip.compress(data)
    if encoding == "br":
        return brotli.compress(data)
    if raw_deflate:
        c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return c.compress(data) + c.flush()
    return zlib.compress(data)


@st.composite
def compressed(draw: st.DrawFn) -> tuple[str, bytes, bytes | None]:
    """(encoding, body, what it inflates to when intact)."""
    encoding = draw(ENCODINGS)
    plain = draw(st.one_of(st.binary(max_size=400), st.integers(0, 5000).map(lambda n: b"a" * n)))
    body = compress(encoding, plain, draw(st.booleans()))
    kind = draw(st.sampled_from(["intact", "mangled", "random"]))
    if kind == "intact":
        return encoding, body, plain
    if kind == "mangled":
        return encoding, draw(mangled_bytes(body)), None
    return encoding, draw(st.binary(max_size=200)), None


@FUZZ
@given(compressed(), st.integers(0, 3000), st.lists(st.integers(1, 64), min_size=1, max_size=4))
def test_inflater_any_body(case: tuple[str, bytes, bytes | None], cap: int, cuts: list[int]) -> None:
    encoding, body, plain = case
    inflater = _Inflater(encoding, cap)
    try:
        pos = 0
        for size in cuts * (len(body) // sum(cuts) + 1):  # the body in chunks of varying size
            if pos >= len(body):
                break
            inflater.feed(body[pos : pos + size])
            pos += size
        out = inflater.finish()
    except ApiError as e:
        assert e.status in (400, 413), e.status
        if e.status == 413:
            assert plain is None or len(plain) > cap
        else:
            assert plain is None
        return
    assert len(out) <= cap
    if plain is not None:
        assert out == plain


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_inflater_bomb_is_refused_cheaply(encoding: str) -> None:
    inflater = _Inflater(encoding, 1000)
    with pytest.raises(ApiError) as e:
        inflater.feed(compress(encoding, b"\0" * 10_000_000, False))
        inflater.finish()
    assert e.value.status == 413
