"""The stream message: one msgpack blob per accepted notice, the same for every protocol."""

from __future__ import annotations

from typing import Any, TypedDict

import msgpack

from shared.model import Notice

FORMAT = 1
FIELD = b"m"


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


class CodecError(ValueError):
    """A stream entry that cannot be decoded: it goes to the dead-letter stream."""


def encode(env: Envelope) -> dict[bytes, bytes]:
    """Stream fields for XADD."""
    return {FIELD: msgpack.packb(env, use_bin_type=True)}


def decode(fields: dict[Any, Any]) -> Envelope:
    """Inverse of encode; raises CodecError on anything it cannot trust."""
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
    for key, kind in (("id", str), ("loc", str), ("pid", int), ("eid", int), ("fp", str), ("n", dict)):
        if not isinstance(env.get(key), kind):
            raise CodecError(f"envelope field {key!r} missing or not {kind.__name__}")
    return env  # type: ignore[return-value]
