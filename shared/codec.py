"""The stream message: one msgpack blob per accepted notice, the same for every protocol.

An envelope's optional "k" says what it carries: "notice" (the default) or "description", an end
user's description of an event queued by reference id (Exceptionless), which the worker applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import msgpack

from shared.model import Notice

FORMAT = 1
FIELD = b"m"
NOTICE = "notice"
DESCRIPTION = "description"


class Envelope(TypedDict):
    """What the gateway queues for one notice."""

    v: int
    id: str  # notice id, UUIDv7
    loc: str  # location id, UUIDv4
    pid: int  # project id
    eid: int  # error id
    fp: str  # fingerprint
    gv: int  # grouping version
    n: Notice
    raw: bytes  # the notice as submitted (JSON), for /api/locate
    k: NotRequired[str]  # NOTICE when present


@dataclass(frozen=True, slots=True)
class Description:
    """An end user's description of the event with `reference_id`, possibly not stored yet."""

    project_id: int
    reference_id: str
    data: dict[str, Any]  # {"email_address", "description", "data"} as far as sent
    received_at: float  # epoch seconds; the latest description of a reference id wins


class CodecError(ValueError):
    """A stream entry that cannot be decoded: it goes to the dead-letter stream."""


def encode(env: Envelope) -> dict[bytes, bytes]:
    """Stream fields for XADD."""
    return {FIELD: msgpack.packb(env, use_bin_type=True)}


def encode_description(d: Description) -> dict[bytes, bytes]:
    """Stream fields for XADD of a user description (envelope kind DESCRIPTION)."""
    env = {
        "v": FORMAT,
        "k": DESCRIPTION,
        "pid": d.project_id,
        "ref": d.reference_id,
        "d": d.data,
        "at": d.received_at,
    }
    return {FIELD: msgpack.packb(env, use_bin_type=True)}


def decode(fields: dict[Any, Any]) -> Envelope:
    """Inverse of encode; raises CodecError on anything it cannot trust, other kinds included."""
    return _notice(_unpack(fields))


def decode_any(fields: dict[Any, Any]) -> Envelope | Description:
    """A notice envelope or a Description, by the envelope's kind; CodecError as decode."""
    env = _unpack(fields)
    if env.get("k", NOTICE) != DESCRIPTION:
        return _notice(env)
    pid, ref, data, at = env.get("pid"), env.get("ref"), env.get("d"), env.get("at")
    if not (
        isinstance(pid, int)
        and isinstance(ref, str)
        and ref
        and isinstance(data, dict)
        and isinstance(at, int | float)
    ):
        raise CodecError("description envelope fields missing or malformed")
    return Description(pid, ref, data, float(at))


def _unpack(fields: dict[Any, Any]) -> dict[str, Any]:
    blob = fields.get(FIELD)
    if blob is None:
        blob = fields.get(FIELD.decode())
    if not isinstance(blob, bytes | bytearray):
        raise CodecError("entry has no 'm' field")
    try:
        env = msgpack.unpackb(blob, raw=False)
    except Exception as e:  # msgpack raises several unrelated types
        raise CodecError(f"undecodable msgpack: {e}") from e
    if not isinstance(env, dict) or env.get("v") != FORMAT:
        raise CodecError(f"unknown envelope format {env.get('v') if isinstance(env, dict) else type(env)}")
    return env


def _notice(env: dict[str, Any]) -> Envelope:
    if env.get("k", NOTICE) != NOTICE:
        raise CodecError(f"envelope kind {env.get('k')!r} is not a notice")
    for key, kind in (("id", str), ("loc", str), ("pid", int), ("eid", int), ("fp", str), ("n", dict)):
        if not isinstance(env.get(key), kind):
            raise CodecError(f"envelope field {key!r} missing or not {kind.__name__}")
    return env  # type: ignore[return-value]
