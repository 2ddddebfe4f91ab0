"""Identifiers: time-ordered notice ids (UUIDv7), location ids, and derived error ids."""

from __future__ import annotations

import hashlib
import os
import time
import uuid

_MASK_53 = (1 << 53) - 1


_last_ms = 0
_seq = 0
_MAX_STEP_BACK_MS = 10_000  # a clock stepping back further than this starts a new sequence


def uuid7(ms: int | None = None) -> uuid.UUID:
    """A UUIDv7: 48-bit Unix milliseconds, a 12-bit counter, random bits.

    Monotonic within a process (RFC 9562, method 1): ids minted in the same millisecond, or while
    the clock steps back, still sort in the order they were made.
    """
    global _last_ms, _seq
    now = time.time_ns() // 1_000_000
    if ms is None:
        ms = now
    elif abs(ms - now) > _MAX_STEP_BACK_MS:
        # A caller's explicit, distant time (imports, tests): outside the process's sequence.
        return _make(ms, int.from_bytes(os.urandom(2), "big") & 0xFFF)
    if _last_ms - _MAX_STEP_BACK_MS < ms <= _last_ms:
        ms = _last_ms
        _seq += 1
        if _seq > 0xFFF:  # counter exhausted: borrow the next millisecond
            ms = _last_ms = _last_ms + 1
            _seq = 0
    else:
        _last_ms = ms
        _seq = int.from_bytes(os.urandom(2), "big") & 0x3FF  # random start, headroom to count up
    return _make(ms, _seq)


def _make(ms: int, seq: int) -> uuid.UUID:
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | seq << 64 | 0x2 << 62 | rand_b
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
