"""The gateway's remembered Exceptioner fingerprint is the fingerprint of the notice, in every case."""

from __future__ import annotations

from typing import Any

import pytest

from shared.fingerprint import VERSIONS, fingerprint
from shared.protocols import exceptioner

APP = "/srv/app/app/models/user.rb:12:in `save'"
GEM = "/usr/lib/ruby/gems/3.2.0/gems/activerecord-7.1.2/lib/active_record/base.rb:44:in `save!'"
BLANK = ["", "...", ""]  # lines that name no frame: the message decides the group


def body(message: str, backtrace: list[str], exception: str = "RuntimeError") -> dict[str, Any]:
    return {"message": f"{exception}: {message}", "error": {"exception": exception, "backtrace": backtrace}}


CASES = [
    body("undefined value", [APP, GEM]),
    body("other words, same stack", [APP, GEM]),
    body("only a gem", [GEM]),
    body("no frames at all", []),
    body("user 42 not found", BLANK),
    body("user 43 not found", BLANK),
    body("recursion", [APP] * 40 + [GEM]),
    body("long", [f"/srv/app/lib/step{i}.rb:{i}:in `run'" for i in range(300)]),
    body("typed", [APP], exception="ActiveRecord::RecordNotFound"),
]
PATTERNS = [((), ()), (("/srv/app/**",), ()), ((), ("**/gems/**",))]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("app,lib", PATTERNS)
def test_the_remembered_fingerprint_is_the_notices(version: int, app: tuple[str, ...], lib: tuple[str, ...]):
    for data in CASES * 2:  # the second round answers from the memo
        fields = exceptioner._checked(data)
        expected = fingerprint(exceptioner.parse_notice(data), app, lib, version)
        assert exceptioner.grouping(fields, app, lib, version) == expected, data["message"]


def test_a_stack_is_remembered_and_a_message_only_notice_is_not_confused():
    exceptioner._stack_fingerprint.cache_clear()
    a, b = (exceptioner._checked(body(m, [APP, GEM])) for m in ("one", "two"))
    assert exceptioner.grouping(a, (), (), 1) == exceptioner.grouping(b, (), (), 1)
    assert exceptioner._stack_fingerprint.cache_info().hits == 1
    x, y = (exceptioner._checked(body(m, BLANK)) for m in ("user 42 gone", "disk full"))
    assert exceptioner.grouping(x, (), (), 1) != exceptioner.grouping(y, (), (), 1)


def _variants() -> list[dict[str, Any]]:
    """Well-formed bodies and, field by field, each kind of wrong or blank value."""
    good = {
        "message": "RuntimeError: boom",
        "error": {
            "exception": "RuntimeError",
            "backtrace": [APP, GEM],
            "parameters": {"id": "1"},
            "session": {},
            "environment": {"PATH_INFO": "/"},
            "file": "app.rb",
            "mode": "staging",
        },
    }
    out: list[dict[str, Any]] = [good, {"message": "m", "error": {"exception": "E"}}]
    for field in ("exception", "backtrace", "parameters", "session", "environment", "file", "mode"):
        for value in (None, "", 0, True, "text", [], ["line", 3], {}, {"a": 1}):
            out.append({**good, "error": {**good["error"], field: value}})
    for value in (None, "", 1, ["m"], {"m": 1}):
        out.append({**good, "message": value})
    out += [{**good, "error": value} for value in (None, "", [], "e", {})]
    return out


def test_the_quick_check_agrees_with_the_full_one():
    for data in _variants():
        quick = exceptioner._well_formed(data)
        if quick is None:
            continue  # the full check decides, and names what is wrong
        assert quick == exceptioner._checked_one_by_one(data), data
    assert sum(exceptioner._well_formed(d) is not None for d in _variants()) >= 15  # the quick path is taken
