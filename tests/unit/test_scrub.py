import orjson

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
