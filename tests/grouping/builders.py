"""Corpus notices from what each real client sends, through the protocol's own decoder.

Each builder takes what a case says about a report, writes the request body that protocol's clients
send (the wire format, not a canonical notice), and hands it to the protocol's worker-side decoder
(`shared.protocols.registry.BY_NAME[name].decode`, exactly what services/worker/pipeline.py calls).
Nothing here maps fields by hand, so a parser that changes how it reads a client moves the corpus
verdicts and pins with it. What each body carries, per protocol:

- Exceptioner (``POST /v1/notices``): ``message`` is ``"Class: message"``, ``error.backtrace`` the
  text lines as given (innermost first), ``error.mode`` the environment.
- CrashLog (``POST /notify``): ``event.class_name``/``message``, ``backtrace`` of ``{file, number,
  method}`` innermost first, ``environment.project_root`` (which the parser makes ``[PROJECT_ROOT]``).
- Sentry (``/api/{id}/store/``): ``exception.values`` oldest (first cause) first, each with its
  ``stacktrace.frames`` oldest call first, as the SDKs send them; ``fingerprint`` as given.
- Airbrake v3: ``errors[]`` outermost first, each ``backtrace`` innermost first, as the notifiers send.
- Exceptionless (``/api/v2/events``): an ``error`` event whose ``data`` holds ``@error`` (structured
  frames, ``inner`` chain) and maybe ``@stack``, or ``@simple_error`` with one stack string.
- Hoptoad / Airbrake v2: the XML body as given.
"""

from __future__ import annotations

from typing import Any

import orjson

from shared import ids
from shared.model import Notice
from shared.protocols.registry import BY_NAME
from shared.stream import RawNotice

PROJECT_ID = 1


def decode(protocol: str, body: bytes, facts: dict[str, Any] | None = None) -> Notice:
    """The first notice the protocol's worker-side decoder makes of a body, as the worker would."""
    entry = RawNotice(protocol, str(ids.uuid7()), ids.location_id(), PROJECT_ID, body, "", facts or {})
    decoded = BY_NAME[protocol].decode(entry)
    assert decoded, f"{protocol}: the decoder made no notice of {body[:200]!r}"
    return decoded[0][0]


def exceptioner(exception: str, message: str, backtrace: list[str]) -> Notice:
    """A v1 notice: Ruby-style backtrace lines, innermost first."""
    body = {
        "message": f"{exception}: {message}",
        "error": {"exception": exception, "backtrace": backtrace, "mode": "production"},
    }
    return decode("exceptioner", orjson.dumps(body))


def crashlog(class_name: str, message: str, backtrace: list[dict[str, Any]], project_root: str) -> Notice:
    """A CrashLog report: ``{file, number, method}`` entries and the project root it ran from."""
    body = {
        "notifier": {"name": "crashlog", "version": "1.0"},
        "event": {"class_name": class_name, "message": message},
        "backtrace": backtrace,
        "environment": {"name": "production", "project_root": project_root},
    }
    return decode("crashlog", orjson.dumps(body))


def sentry(values: list[dict[str, Any]], fingerprint: list[str] | None = None) -> Notice:
    """A Sentry event's ``exception.values`` (oldest first), each one's frames oldest call first."""
    exceptions = []
    for v in values:
        value = {k: x for k, x in v.items() if k != "frames"}
        if v.get("frames") is not None:
            value["stacktrace"] = {"frames": v["frames"]}
        exceptions.append(value)
    event: dict[str, Any] = {
        "event_id": ids.uuid7().hex,
        "level": "error",
        "environment": "production",
        "exception": {"values": exceptions},
    }
    if fingerprint:
        event["fingerprint"] = fingerprint
    return decode("sentry", orjson.dumps(event), {"store": True})


def airbrake(errors: list[dict[str, Any]]) -> Notice:
    """An Airbrake v3 notice: ``errors[]`` outermost first, each backtrace innermost first."""
    body = {"errors": errors, "context": {"environment": "production", "notifier": {"name": "corpus"}}}
    return decode("airbrake", orjson.dumps(body))


def _exceptionless(data: dict[str, Any]) -> Notice:
    event = {"type": "error", "date": "2026-01-05T12:00:00Z", "data": data}
    return decode("exceptionless", orjson.dumps(event))


def exceptionless(error: dict[str, Any], stack: dict[str, Any] | None = None) -> Notice:
    """An Exceptionless event with ``@error`` (structured frames, ``inner`` chain) and maybe ``@stack``."""
    return _exceptionless({"@error": error, **({"@stack": stack} if stack else {})})


def exceptionless_simple(type_: str, message: str, stack_trace: str) -> Notice:
    """An Exceptionless event with ``@simple_error``: the stack is one string."""
    return _exceptionless({"@simple_error": {"type": type_, "message": message, "stack_trace": stack_trace}})


def hoptoad(xml: str) -> Notice:
    """A Hoptoad / Airbrake v2 XML notice."""
    return decode("hoptoad", xml.encode())
