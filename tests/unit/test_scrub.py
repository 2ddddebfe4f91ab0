import orjson

from shared import scrub as scrub_module
from shared.model import MEMO_STACK_BYTES
from shared.scrub import DEFAULT_FIELDS, FILTERED, fields_for, scrub, scrub_notice, scrub_raw


def test_sensitive_keys_are_filtered_at_any_depth():
    data = {
        "user": {"password": "hunter2", "name": "ann"},
        "HTTP_AUTHORIZATION": "Bearer x",
        "list": [{"api_key": "k"}],
        "X-Auth-Token": "t",
        "user_password_confirmation": "p",
        "empty": "",
    }
    out = scrub(data)
    assert out["user"] == {"password": FILTERED, "name": "ann"}
    assert out["HTTP_AUTHORIZATION"] == FILTERED and out["list"] == [{"api_key": FILTERED}]
    assert out["X-Auth-Token"] == FILTERED and out["user_password_confirmation"] == FILTERED
    assert data["user"]["password"] == "hunter2"  # the input is not modified


def test_card_numbers_are_filtered_but_other_digits_kept():
    assert scrub("paid with 4111 1111 1111 1111 today") == f"paid with {FILTERED} today"
    assert scrub("4111-1111-1111-1111") == FILTERED
    assert scrub("order 1234567890123 shipped") == "order 1234567890123 shipped"  # fails Luhn
    assert scrub("id 12345") == "id 12345"


def test_notice_parts_and_raw_payload():
    notice = {
        "message": "card 4111111111111111",
        "params": {"password": "x", "q": "ok"},
        "exceptions": [{"type": "E", "message": "m", "frames": []}],
    }
    out = scrub_notice(notice)
    assert out["params"] == {"password": FILTERED, "q": "ok"} and FILTERED in out["message"]
    raw = orjson.dumps({"event": {"message": "m"}, "context": {"session_key": "abc"}})
    assert orjson.loads(scrub_raw(raw))["context"]["session_key"] == FILTERED
    clean = b'{"event": {"message": "nothing to hide"}}'
    assert scrub_raw(clean) is clean


def test_project_settings_extend_or_disable():
    assert fields_for({}) == DEFAULT_FIELDS
    assert "ssn_last4" in fields_for({"scrub_fields": ["SSN_LAST4"]})
    assert fields_for({"scrub": False}) is None


def test_short_names_match_whole_words_only():
    out = scrub({"className": "Foo", "ssn": "123-45-6789", "user_ssn": "x", "cwd": "/app", "pwd": "p"})
    assert out == {"className": "Foo", "ssn": FILTERED, "user_ssn": FILTERED, "cwd": "/app", "pwd": FILTERED}


def test_ids_that_pass_luhn_stay_but_integer_cards_and_pairs_go():
    out = scrub({"id": 4111111111111111, "thread_id": "4111111111111111", "threadId": 4111111111111111})
    assert out == {"id": 4111111111111111, "thread_id": "4111111111111111", "threadId": 4111111111111111}
    assert scrub({"amount": 5555555555554444})["amount"] == FILTERED
    assert scrub({"at_ms": 1700000000003, "at_us": 1700000000000008})["at_ms"] == 1700000000003  # times stay
    assert scrub([["Authorization", "Bearer x"], ["Accept", "*/*"]]) == [
        ["Authorization", FILTERED],
        ["Accept", "*/*"],
    ]


def test_secrets_inside_urls_query_strings_and_header_lines():
    assert scrub("https://h/p?api_key=abc&page=2") == f"https://h/p?api_key={FILTERED}&page=2"
    assert scrub("/x?key=0123456789abcdef0123&sentry_key=k") == f"/x?key={FILTERED}&sentry_key={FILTERED}"
    assert scrub("postgres://app:s3cret@db/x") == f"postgres://app:{FILTERED}@db/x"
    assert (
        scrub("Cookie: sessionid=abc") == f"Cookie: {FILTERED}"
        and scrub("monkey=1&cache=2") == "monkey=1&cache=2"
    )
    assert scrub({"key": "value", "q": {"key": "0123456789abcdef0123"}}) == {
        "key": "value",
        "q": {"key": FILTERED},
    }


def test_escaped_names_and_depth_in_the_raw_payload():
    raw = b'{"pass\\u0077ord": "hunter2", "x": "ok"}'
    assert orjson.loads(scrub_raw(raw)) == {"password": FILTERED, "x": "ok"}
    deep = b'{"k":' * 400 + b'"password=x"' + b"}" * 400
    assert b"password=x" not in scrub_raw(deep) and b"[Truncated]" in scrub_raw(deep)


def _plain(lowered: bytes, fields: frozenset[str]) -> bool:
    """The check `could_be_sensitive` replaces: one substring search per hint."""
    hints = (*scrub_module._name_hints(fields), *scrub_module._RAW_HINTS)
    return any(hint in lowered for hint in hints)


def test_the_part_scan_finds_every_hint_the_plain_search_finds():
    import random

    rng = random.Random(7)
    field_sets = [
        scrub_module.DEFAULT_FIELDS,
        scrub_module.DEFAULT_FIELDS | {"ca", "se", "x-keyboard", "pin"},  # parts of parts, a part inside
    ]
    filler = [
        b"message",
        b"session",
        b"success",
        b"monkey",
        b"ssion",
        b"sesn",
        b"auto",
        b"car",
        b'"',
        b" ",
        b"_",
    ]
    for fields in field_sets:
        hints = (*scrub_module._name_hints(fields), *scrub_module._RAW_HINTS)
        bodies = [b"", b"nothing to see", b"sessn", b"xsessionidx", b"key" * 100, b"key" * 100 + b"token"]
        for _ in range(3000):
            pieces = [rng.choice(filler) for _ in range(rng.randint(0, 12))]
            if rng.random() < 0.5:
                pieces.insert(rng.randint(0, len(pieces)), rng.choice(hints))
            bodies.append(b"".join(pieces))
        for body in bodies:
            assert scrub_module.could_be_sensitive(body, fields) == _plain(body, fields), (
                body,
                sorted(fields),
            )


def test_frames_remembered_per_stack_are_scrubbed_like_a_walk():
    frames = [
        {"file": "https://cdn.example/a.js?api_key=abc", "function": "f", "line": 3, "in_app": True},
        {"file": "app/x.rb", "function": "g", "line": 4, "vars": {"password": "hunter2", "n": 1}},
    ]
    walked = scrub_module._frames(frames, DEFAULT_FIELDS)
    assert walked[0]["file"] == f"https://cdn.example/a.js?api_key={FILTERED}"
    assert walked[1]["vars"] == {"password": FILTERED, "n": 1}
    for _ in range(2):  # the second time from the memo
        out = scrub_notice({"exceptions": [{"type": "E", "message": "m", "frames": frames}]})
        assert out["exceptions"][0]["frames"] == walked
    assert frames[1]["vars"]["password"] == "hunter2"  # the input is not modified
    odd = [{"file": "x.py", "vars": {1: "password=x"}}]  # a key JSON cannot hold: walked instead
    assert scrub_notice({"exceptions": [{"frames": odd}]})["exceptions"][0]["frames"] == [
        {"file": "x.py", "vars": {1: f"password={FILTERED}"}}
    ]


def test_large_stacks_are_walked_not_remembered():
    big = [{"file": f"app/f{i}.py", "function": "f", "pre_context": ["x = 1"] * 50} for i in range(40)]
    assert len(orjson.dumps(big)) > MEMO_STACK_BYTES
    before = scrub_module._frames_of.cache_info().currsize
    out = scrub_notice({"exceptions": [{"type": "E", "frames": big}]})
    assert out["exceptions"][0]["frames"] == scrub_module._frames(big, DEFAULT_FIELDS)
    assert scrub_module._frames_of.cache_info().currsize == before
