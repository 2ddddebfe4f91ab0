"""Identifiers: time-ordered notice ids (UUIDv7), location ids, and derived error ids."""

from __future__ import annotations

import hashlib
import os
import time
import uuid

_MASK_53 = (1 << 53) - 1


def uuid7(ms: int | None = None) -> uuid.UUID:
    """A UUIDv7: 48-bit Unix milliseconds, then random bits; sorts by creation time."""
    if ms is None:
        ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


def uuid7_ms(u: uuid.UUID | str) -> int:
    """The Unix milliseconds a UUIDv7 was made at: the notice's partition time."""
    if isinstance(u, str):
        u = uuid.UUID(u)
    return u.int >> 80


def error_id(project_id: int, environment: str, fingerprint: str) -> int:
    """The error's id, derived so the gateway knows it before any worker has run.

    53 bits keep it exact in JavaScript; the errors table's unique key on
    (project, environment, fingerprint) catches the astronomically rare collision.
    """
    digest = hashlib.sha1(f"{project_id}\x00{environment}\x00{fingerprint}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") & _MASK_53) or 1
