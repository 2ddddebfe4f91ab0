"""The worker's pure step: stream entries in; staging rows, descriptions and dead letters out. No I/O.

Raw entries are decoded by their protocol (shared.protocols), fingerprinted with the project's
patterns and the project's grouping version (and, in a transition window, the previous version too),
given their derived error id, scrubbed, and turned into rows of the tmp_notices staging table
(store.py; collisions.py maps fingerprints to the errors they belong to). Format-1 entries (parsed by
an older gateway) become rows as they are.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared import ids, stream
from shared.fingerprint import VERSION, fingerprint
from shared.model import Notice
from shared.protocols.base import Undecodable
from shared.protocols.registry import BY_NAME
from shared.scrub import DEFAULT_FIELDS, scrub_body, scrub_notice, scrub_raw
from shared.stream import DeadLetter, Description, LegacyNotice, RawNotice
from shared.timeutil import UTC

# Column order of the tmp_notices staging table (store.py).
COLUMNS = (
    "id",
    "received_at",
    "project_id",
    "error_id",
    "location_id",
    "protocol",
    "type",
    "environment",
    "exception",
    "message",
    "occurred_at",
    "reference_id",
    "fingerprint",
    "grouping_version",
    "file",
    "body",
    "raw",
    # staged only, inside a transition window: the previous version's fingerprint, and that version
    "previous_fingerprint",
    "previous_version",
)
PROJECT_ID = COLUMNS.index("project_id")
REFERENCE_ID = COLUMNS.index("reference_id")

MAX_TEXT = 10_000  # characters kept in indexed text columns
Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Rules:
    """What a project's settings say about its notices: scrubbing and grouping patterns."""

    scrub: frozenset[str] | None = DEFAULT_FIELDS
    app_patterns: tuple[str, ...] = ()
    library_patterns: tuple[str, ...] = ()
    rate_limited: bool = False  # the project has a per-minute limit: count every notice against it
    default_environment: str = "production"  # for notices whose protocol carries none ("": none given)
    grouping_version: int = VERSION
    previous_version: int | None = None  # the version a transition window moves from
    window_until_ms: int = 0  # notices received before this are fingerprinted with both versions


@dataclass(slots=True)
class Batch:
    """One batch, processed: rows to write (each with its entry's stream id), descriptions, refusals."""

    rows: list[Row] = field(default_factory=list)
    row_entries: list[bytes] = field(default_factory=list)
    descriptions: list[tuple[bytes, Description]] = field(default_factory=list)
    deploys: list[tuple[bytes, stream.Deploy]] = field(default_factory=list)  # services/worker/deploys.py
    dead: list[tuple[bytes, str]] = field(default_factory=list)  # (entry id, reason)
    decoded: dict[bytes, stream.Entry] = field(default_factory=dict)
    # The gateway counts a request as one notice; a body that held n counts n - 1 more here, in the
    # rate window the gateway counted it in: (project id, window start in ms) -> extra notices.
    uncounted: dict[tuple[int, int], int] = field(default_factory=dict)
    # Indexes into rows of notices given the project's default environment (services/worker/environments.py).
    defaulted: list[int] = field(default_factory=list)

    def extend(self, other: Batch) -> None:
        for key, n in other.uncounted.items():
            self.uncounted[key] = self.uncounted.get(key, 0) + n
        self.defaulted += [len(self.rows) + i for i in other.defaulted]
        self.rows += other.rows
        self.row_entries += other.row_entries
        self.descriptions += other.descriptions
        self.deploys += other.deploys
        self.dead += other.dead
        self.decoded.update(other.decoded)


def _clean(value: Any) -> Any:
    """Drop NUL characters, which PostgreSQL text and jsonb refuse."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_clean(k) if isinstance(k, str) else k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text.replace("\x00", "")[:MAX_TEXT]


def row(
    nid: uuid.UUID,
    loc: uuid.UUID,
    project_id: int,
    error_id: int,
    fp: str,
    gv: int,
    notice: Notice,
    raw: bytes | None,
    scrub_fields: frozenset[str] | None,
    previous: tuple[str, int] | None = None,
    keep_raw: bool = True,
) -> Row:
    """One staging row, secrets scrubbed; raises on anything that cannot be stored.

    `raw` is the body the notice came from: it tells whether the notice may hold a NUL, and is
    stored (scrubbed) only where `keep_raw`, for the protocols whose reads answer with it."""
    if scrub_fields is not None:
        notice = scrub_notice(notice, scrub_fields)  # type: ignore[assignment,arg-type]
        if raw is not None and keep_raw:
            raw = scrub_raw(raw, scrub_fields)
    received = dt.datetime.fromtimestamp(ids.uuid7_ms(nid) / 1000, UTC)
    occurred = notice.get("occurred_at")
    body: Any = notice
    # A NUL in a decoded notice comes from its body (a JSON "\u0000", or a raw byte in text): only
    # then is the whole notice serialised to look for one.
    suspect = raw is None or b"\\u0000" in raw or b"\x00" in raw
    if suspect and b"\\u0000" in orjson.dumps(notice, option=orjson.OPT_NON_STR_KEYS):
        body = _clean(notice)
    return (
        nid,
        received,
        project_id,
        error_id,
        loc,
        _text(notice.get("protocol")) or "unknown",
        _text(notice.get("type")) or "error",
        _text(notice.get("environment")) or "",
        _text(notice.get("exception")),
        _text(notice.get("message")),
        dt.datetime.fromtimestamp(occurred, UTC) if isinstance(occurred, int | float) else None,
        _text(notice.get("reference_id")),
        fp,
        gv,
        _text(notice.get("file")),
        body,
        raw if keep_raw else None,
        *(previous or (None, None)),
    )


def legacy_row(entry: LegacyNotice, scrub_fields: frozenset[str] | None = DEFAULT_FIELDS) -> Row:
    """A format-1 entry's row: its notice, ids and grouping as the older gateway made them."""
    protocol = BY_NAME.get(str(entry.notice.get("protocol")))
    return row(
        uuid.UUID(entry.notice_id),
        uuid.UUID(entry.location_id),
        entry.project_id,
        entry.error_id,
        entry.fingerprint,
        entry.grouping_version,
        entry.notice,
        entry.raw,
        scrub_fields,
        keep_raw=protocol is None or protocol.keeps_raw,
    )


def raw_rows(entry: RawNotice, rules: Rules, defaulted: list[int] | None = None) -> list[Row]:
    """Decode a raw entry with its protocol; one row per notice its body holds (Undecodable: none).

    A notice without an environment gets the project's default; its row's index goes to `defaulted`."""
    protocol = BY_NAME.get(entry.protocol)
    if protocol is None:
        raise Undecodable(f"unknown protocol {entry.protocol!r}")
    decoded = protocol.decode(entry)
    if len(decoded) > ids.MAX_NTH + 1:
        raise Undecodable(f"{len(decoded)} notices in one body")
    first_id, first_loc = uuid.UUID(entry.notice_id), uuid.UUID(entry.location_id)
    rows: list[Row] = []
    for n, (notice, raw) in enumerate(decoded):
        given = not notice["environment"] and bool(rules.default_environment)
        if given:
            notice["environment"] = rules.default_environment
        gv = rules.grouping_version
        given_fp = entry.fingerprint if n == 0 and entry.error_id is not None else None
        if given_fp is not None and given:
            if entry.error_id != ids.error_id(entry.project_id, rules.default_environment, given_fp):
                notice["environment"], given = "", False  # grouped environment-less at the gateway
        # The gateway's fingerprint, unless its version is not the project's (a transition window, or
        # a settings change it had not seen yet): then the worker's own.
        if given_fp is not None and entry.error_id is not None and (entry.grouping_version or VERSION) == gv:
            fp, eid = given_fp, entry.error_id
        else:
            fp = fingerprint(notice, rules.app_patterns, rules.library_patterns, gv)
            eid = ids.error_id(entry.project_id, notice["environment"], fp)
        nid, loc = ids.nth_notice_id(first_id, n), ids.nth_location_id(first_loc, n)
        previous = None
        if rules.previous_version is not None and ids.uuid7_ms(nid) < rules.window_until_ms:
            pv = rules.previous_version
            if given_fp is not None and entry.grouping_version == pv:  # the gateway's, inside a window
                pfp = given_fp
            else:
                pfp = fingerprint(notice, rules.app_patterns, rules.library_patterns, pv)
            previous = (pfp, pv) if pfp != fp else None
        if given and defaulted is not None:
            defaulted.append(len(rows))
        rows.append(
            row(
                nid,
                loc,
                entry.project_id,
                eid,
                fp,
                gv,
                notice,
                raw,
                rules.scrub,
                previous,
                keep_raw=protocol.keeps_raw,
            )
        )
    return rows


def process(entries: Iterable[tuple[bytes, dict[Any, Any]]], rules: Callable[[int], Rules]) -> Batch:
    """The pure step: every entry becomes rows, a description, or a dead letter with its reason."""
    batch = Batch()
    for entry_id, fields in entries:
        try:
            entry = stream.decode(fields)
            batch.decoded[entry_id] = entry
            if isinstance(entry, Description):
                batch.descriptions.append((entry_id, entry))
                continue
            if isinstance(entry, stream.Deploy):
                batch.deploys.append((entry_id, entry))
                continue
            if isinstance(entry, LegacyNotice):
                made = [legacy_row(entry, rules(entry.project_id).scrub)]
            else:
                project_rules = rules(entry.project_id)
                marks: list[int] = []
                made = raw_rows(entry, project_rules, marks)
                batch.defaulted += [len(batch.rows) + i for i in marks]
                if len(made) > 1 and project_rules.rate_limited:
                    key = (entry.project_id, ids.uuid7_ms(entry.notice_id))
                    batch.uncounted[key] = batch.uncounted.get(key, 0) + len(made) - 1
            batch.rows += made
            batch.row_entries += [entry_id] * len(made)
        except Exception as e:  # anything about one entry must not stop the others
            batch.dead.append((entry_id, f"{type(e).__name__}: {e}"))
    return batch


def dead_letter(
    entry_id: bytes, entry: stream.Entry | None, reason: str, consumer: str, rules: Callable[[int], Rules]
) -> DeadLetter:
    """What is kept of a refused entry: its facts and its body, scrubbed like a stored notice."""
    sid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    if isinstance(entry, RawNotice | LegacyNotice):
        body = entry.body if isinstance(entry, RawNotice) else entry.raw
        scrub = rules(entry.project_id).scrub
        if body is not None:
            body = scrub_body(body, scrub if scrub is not None else DEFAULT_FIELDS)  # kept in Redis: always
        protocol = entry.protocol if isinstance(entry, RawNotice) else entry.notice.get("protocol")
        return DeadLetter(sid, reason, consumer, protocol, entry.project_id, entry.notice_id, body)
    if isinstance(entry, Description):
        return DeadLetter(sid, reason, consumer, "exceptionless", entry.project_id, None, None)
    return DeadLetter(sid, reason, consumer, None, None, None, None)
