"""The error-list filters and sorts dashboards use, turned into one parameterised WHERE/ORDER BY."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.query.pagination import bool_param, int_param, invalid, text_param
from shared.timeutil import UTC, from_epoch, parse_iso

# Notice ids are UUIDv7s from one monotonic sequence per gateway process, so ordering by the last
# (first) notice's id orders errors by when that notice was accepted, within a millisecond too;
# across gateway processes, same-millisecond notices fall back to the ids' random bits.
SORTS = {
    "most_recent": "last_notice_id DESC, id DESC",
    "notices_count": "notices_count DESC, id DESC",
    "created": "first_notice_id DESC, id DESC",  # when the error was first seen
}


# The times a read accepts: from the Unix epoch (nothing stored is older: notice ids carry Unix
# milliseconds) to the last second of year 9999. Python's datetime.min and max reach PostgreSQL as
# -infinity and infinity, and a series from -infinity never advances.
TIME_MIN = dt.datetime(1970, 1, 1, tzinfo=UTC)
TIME_MAX = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def in_time_range(value: dt.datetime) -> bool:
    return TIME_MIN <= value <= TIME_MAX


def time_param(request: web.Request, name: str) -> dt.datetime | None:
    """An ISO 8601 time or epoch seconds within TIME_MIN..TIME_MAX; 422 naming `name` otherwise."""
    raw = request.query.get(name)
    if not raw:
        return None
    epoch = parse_iso(raw)
    try:
        value = from_epoch(float(raw) if epoch is None else epoch)
    except (ValueError, OverflowError, OSError):  # not a number, or nan / inf / past year 9999
        raise invalid("Query", name) from None
    if not in_time_range(value):
        raise invalid("Query", name)
    return value


@dataclass
class Where:
    clauses: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def add(self, clause: str, *values: Any) -> None:
        """`clause` uses {} for each value's placeholder, in order."""
        marks = []
        for v in values:
            self.args.append(v)
            marks.append(f"${len(self.args)}")
        self.clauses.append(clause.format(*marks))

    def sql(self) -> str:
        return " AND ".join(self.clauses) or "true"


def error_filters(request: web.Request) -> tuple[Where, str]:
    """WHERE and ORDER BY for GET /v1/errors from its query parameters (422 on a malformed one)."""
    w = Where()
    if not bool_param(request, "resolved", False):
        w.add("NOT resolved")
    project_id = int_param(request, "project_id", None)
    if project_id is not None:
        w.add("project_id = {}", project_id)
    for name, column in (("environment", "environment"), ("type", "type"), ("exception", "exception")):
        value = text_param(request, name)
        if value:
            w.add(f"{column} = {{}}", value)
    q = text_param(request, "q")
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        w.add("(message ILIKE {} OR exception ILIKE {})", pattern, pattern)
    since, until = time_param(request, "since"), time_param(request, "until")
    if since is not None:
        w.add("most_recent_notice_at >= {}", since)
    if until is not None:
        w.add("first_notice_at <= {}", until)
    sort = request.query.get("sort") or "most_recent"
    if sort not in SORTS:
        raise invalid("Query", "sort")
    return w, SORTS[sort]
