"""Rule versions and the transition window, as pure functions: the settings, the gateway's answer,
and the worker's step fingerprinting a notice with both versions only inside the window."""

from __future__ import annotations

import datetime as dt
import uuid

import orjson

from services.query.grouping import transition
from services.worker import pipeline
from shared import ids
from shared.fingerprint import VERSION, answering_version, fingerprint, grouping_versions
from shared.protocols.exceptioner import parse_notice
from shared.stream import RawNotice
from shared.timeutil import UTC

NOW = dt.datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def body(message: str) -> dict[str, object]:
    return {
        "message": f"TimeoutError: {message}",
        "error": {"exception": "TimeoutError", "mode": "production"},
    }


def test_version_one_is_what_it_was_and_two_folds_the_numbers():
    one, two = parse_notice(body("lost worker17")), parse_notice(body("lost worker42"))
    assert fingerprint(one) == fingerprint(one, version=1)  # the default stays version 1
    assert fingerprint(one, version=1) != fingerprint(two, version=1)
    assert fingerprint(one, version=2) == fingerprint(two, version=2)
    same = parse_notice(body("lost the connection"))  # nothing for version 2 to change
    assert fingerprint(same, version=1) == fingerprint(same, version=2)


def test_settings_give_the_version_and_the_window():
    assert grouping_versions({}) == (VERSION, None, 0)
    assert grouping_versions({"grouping_version": 9}) == (VERSION, None, 0)  # unknown: the default
    window = {"grouping_version": 2, "grouping_transition": {"from": 1, "until": "2026-12-09T07:00:00Z"}}
    version, previous, until = grouping_versions(window)
    assert (version, previous) == (2, 1) and until == NOW_MS + 7 * 86_400_000
    assert answering_version(window, NOW_MS) == 1  # inside: the id of the error it will join
    assert answering_version(window, until) == 2
    assert grouping_versions({**window, "grouping_transition": {"from": 2, "until": "x"}}) == (2, None, 0)


def test_changing_the_version_opens_a_window_unless_told_not_to():
    opened, drop = transition({}, {"grouping_version": 2}, [], NOW)
    assert opened["grouping_transition"] == {"from": 1, "until": "2026-12-09T07:00:00Z"} and drop == []
    short, _ = transition({"grouping_window_days": 1}, {"grouping_version": 2}, [], NOW)
    assert short["grouping_transition"]["until"] == "2026-12-03T07:00:00Z"
    none, drop = transition({}, {"grouping_version": 2, "grouping_window_days": 0}, [], NOW)
    assert "grouping_transition" not in none and drop == ["grouping_transition"]
    same, drop = transition({"grouping_version": 2}, {"grouping_version": 2}, [], NOW)
    assert same == {"grouping_version": 2} and drop == []
    back, _ = transition({"grouping_version": 2}, {}, ["grouping_version"], NOW)  # null: back to 1
    assert back["grouping_transition"]["from"] == 2


def rows(rules: pipeline.Rules, message: str, at_ms: int) -> list[pipeline.Row]:
    entry = RawNotice("exceptioner", str(ids.uuid7(at_ms)), str(uuid.uuid4()), 7, orjson.dumps(body(message)))
    return pipeline.raw_rows(entry, rules)


def test_the_worker_fingerprints_with_both_versions_only_inside_the_window():
    fp_at = pipeline.COLUMNS.index("fingerprint")
    prev_at = pipeline.COLUMNS.index("previous_fingerprint")
    version_at = pipeline.COLUMNS.index("grouping_version")
    rules = pipeline.Rules(grouping_version=2, previous_version=1, window_until_ms=NOW_MS)
    notice = parse_notice(body("lost worker17"))
    notice["environment"] = "production"
    inside = rows(rules, "lost worker17", NOW_MS - 1)[0]
    assert inside[fp_at] == fingerprint(notice, version=2) and inside[version_at] == 2
    assert inside[prev_at] == fingerprint(notice, version=1) and inside[prev_at + 1] == 1
    after = rows(rules, "lost worker17", NOW_MS)[0]
    assert after[fp_at] == inside[fp_at] and after[prev_at] is None
    unchanged = rows(rules, "lost the connection", NOW_MS - 1)[0]
    assert unchanged[prev_at] is None  # both versions agree: one look-up is enough
    assert unchanged[pipeline.COLUMNS.index("error_id")] == ids.error_id(7, "production", unchanged[fp_at])
