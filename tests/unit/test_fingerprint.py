"""Unit tests for shared.fingerprint: parameterize, the default parts, client fingerprints, VERSION."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.fingerprint import VERSION, default_parts, fingerprint, parameterize, short_type
from shared.model import ExceptionInfo, Frame, Notice, frame


def notice(
    frames: list[Frame] | None = None,
    type_: str = "NoMethodError",
    message: str = "boom",
    chain: list[tuple[str, str, list[Frame]]] | None = None,
    **extra: object,
) -> Notice:
    exceptions: list[ExceptionInfo] = (
        [{"type": t, "message": m, "frames": f} for t, m, f in chain]
        if chain
        else [{"type": type_, "message": message, "frames": frames or []}]
    )
    n: Notice = {
        "protocol": "exceptioner",
        "type": "error",
        "exception": exceptions[0]["type"],
        "message": message,
        "environment": "production",
        "occurred_at": None,
        "exceptions": exceptions,
    }
    n.update(extra)  # type: ignore[typeddict-item]
    return n


APP = [
    frame("[PROJECT_ROOT]/app/models/user.rb", "save", 42),
    frame("[PROJECT_ROOT]/app/c/users.rb", "create", 9),
]
GEMS = [frame("/gems/rack-2.0.1/lib/rack/etag.rb", "call", 27)]


# --- parameterize: one test per kind of variable part ------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("User 42 not found", "User <num> not found"),
        ("took 30.5s, limit 10", "took <num>s, limit <num>"),
        ("job order_1234 failed", "job order_<num> failed"),
        ("utf8 and sha256 stay", "utf8 and sha256 stay"),  # digits inside a word are part of it
        ("object at 0x7f3a2b1c", "object at <hex>"),
        ("#<User:0x000055d5c2a0e8f8>", "#<User:<hex>>"),
        ("commit a1b2c3d4e5 is bad", "commit <hex> is bad"),
        ("com.shop.Cart@1b6d3586 closed", "com.shop.Cart@<hex> closed"),
        ("deadbeef stays a word", "deadbeef stays a word"),
        ("request 3f2504e0-4f89-11d3-9a0c-0305e82c3301 failed", "request <uuid> failed"),
        ("REQUEST 3F2504E0-4F89-11D3-9A0C-0305E82C3301", "REQUEST <uuid>"),
        ("mail to bob.smith+x@example.co.uk bounced", "mail to <email> bounced"),
        ("GET https://api.example.com/v1/users/42?x=1 returned 500", "GET <url> returned <num>"),
        ("see file:///tmp/x.log", "see <url>"),
        ("connect ECONNREFUSED 127.0.0.1:5432", "connect ECONNREFUSED <ip>"),
        ("from 10.0.0.7", "from <ip>"),
        ("bind ::1 and fe80::1 and 2001:db8::8a2e:370:7334", "bind <ip> and <ip> and <ip>"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334 down", "<ip> down"),
        ("Foo::Bar is a constant, not an address", "Foo::Bar is a constant, not an address"),
        ("expired 2024-01-05T12:30:45.123Z", "expired <date>"),
        ("expired 2024-01-05 12:30:45 +0100", "expired <date>"),  # Ruby Time#to_s
        ("on 2024-01-05", "on <date>"),
        ("Token expired at Tue, 14 Nov 2023 12:00:00 GMT", "Token expired at <date>"),
        ("Tue Nov 14 2023 12:00:00 GMT+0000 (Pacific Time)", "<date> (Pacific Time)"),
        ("Nov 14 12:00:01 host sshd", "<date> host sshd"),
        ("due November 14th, 2023", "due <date>"),
        ("at 12:30:45", "at <time>"),
        ("at 9:05 pm", "at <time>"),
        ("in x.rb:12:30", "in x.rb:<num>:<num>"),  # a line and column, not a time
        ("Couldn't find User with 'id'=42", "Couldn't find User with <str>=<num>"),
        ('key "user_id" missing', "key <str> missing"),
        ("undefined method `name' for nil", "undefined method <str> for nil"),  # Ruby < 3.4 quoting
        ("undefined method 'name' for nil", "undefined method <str> for nil"),
        ("value `x` invalid", "value <str> invalid"),
        ("\u201cfancy\u201d and \u2018quotes\u2019", "<str> and <str>"),
        ("can't parse 'abc'", "can't parse <str>"),  # an apostrophe does not open a quote
        ("first line 1\nsecond line 2", "first line <num>"),
        ("   ", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_parameterize(message: str | None, expected: str) -> None:
    assert parameterize(message) == expected


def test_parameterize_same_shape_same_text() -> None:
    a = parameterize("To https://a.example/x?id=1 for bob@example.com at 2024-01-01T00:00:00Z (id 42)")
    b = parameterize("To http://b.example:8080/y for alice@example.org at 2025-12-31T23:59:59Z (id 7)")
    assert a == b


def test_parameterize_is_bounded() -> None:
    start = time.perf_counter()
    texts = ("'" * 100_000, "1." * 50_000, "a@" * 50_000, ":" * 100_000, "Nov 1 " * 20_000, "x" * 100_000)
    for text in texts:
        assert len(parameterize(text)) <= 1000 * len("<date>")
    assert time.perf_counter() - start < 2.0


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parameterize_never_raises_and_is_idempotent(text: str) -> None:
    once = parameterize(text)
    assert "\n" not in once
    assert parameterize(once) == parameterize(parameterize(once))


# --- exception classes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("java.lang.NullPointerException", "NullPointerException"),
        ("NullPointerException", "NullPointerException"),
        ("builtins.ValueError", "ValueError"),
        ("org.springframework.web.client.HttpClientErrorException$NotFound", "NotFound"),
        ("Shop.Outer+InnerException", "InnerException"),
        ("System.InvalidOperationException", "InvalidOperationException"),
        ("ActiveRecord::RecordNotFound", "ActiveRecord::RecordNotFound"),
        ("App\\Exceptions\\PaymentFailed", "App\\Exceptions\\PaymentFailed"),
        ("*errors.errorString", "errorString"),
        ("Weird.", "Weird."),
        (None, ""),
    ],
)
def test_short_type(name: str | None, expected: str) -> None:
    assert short_type(name) == expected


# --- the default parts ------------------------------------------------------------------------------------


def test_parts_class_and_app_frames_innermost_first_no_lines() -> None:
    assert default_parts(notice(APP + GEMS)) == ["NoMethodError", "models/user.rb:save", "c/users.rb:create"]


def test_library_frames_decide_only_without_app_frames() -> None:
    assert default_parts(notice(GEMS)) == ["NoMethodError", "rack/etag.rb:call"]


def test_app_frames_anywhere_in_the_chain_silence_library_frames() -> None:
    parts = default_parts(notice(chain=[("Outer", "o", APP), ("Inner", "i", GEMS)]))
    assert parts == ["Outer", "models/user.rb:save", "c/users.rb:create", "Inner"]


def test_recursion_counts_once_however_deep() -> None:
    rec = frame("app/tree.rb", "walk", 3)
    shallow = default_parts(notice([rec] * 3 + APP))
    deep = default_parts(notice([rec] * 300 + APP))
    assert shallow == deep
    assert deep == ["NoMethodError", "app/tree.rb:walk", "models/user.rb:save", "c/users.rb:create"]


def test_mutual_recursion_counts_once_wherever_the_overflow_struck() -> None:
    a, b = frame("app/x.rb", "a"), frame("app/x.rb", "b")
    main = frame("app/main.rb", "main")
    one = default_parts(notice([b, a, b, a, b, a, main]))
    other = default_parts(notice([a, b, a, b, a, main]))  # innermost frame landed one call later
    assert one == other == ["NoMethodError", "app/x.rb:b", "app/x.rb:a", "app/main.rb:main"]
    window = default_parts(notice([a, b] * 5)) == default_parts(notice([b, a] * 5))  # V8's 10-frame window
    assert window


def test_distinct_frames_are_not_collapsed() -> None:
    a, b, c = frame("app/x.rb", "a"), frame("app/x.rb", "b"), frame("app/x.rb", "c")
    assert default_parts(notice([a, b, c, a])) == [
        "NoMethodError",
        "app/x.rb:a",
        "app/x.rb:b",
        "app/x.rb:c",
        "app/x.rb:a",
    ]


def test_no_usable_stack_uses_class_and_parameterized_message() -> None:
    unparsed = frame()
    unparsed["raw"] = "??"
    for frames in ([], [unparsed], [frame("<anonymous>")]):
        parts = default_parts(notice(frames, "ActiveRecord::RecordNotFound", "Couldn't find User 'id'=42"))
        assert parts == ["message", "ActiveRecord::RecordNotFound", "Couldn't find User <str>=<num>"]


def test_no_stack_chain_keeps_every_class() -> None:
    parts = default_parts(notice(chain=[("Outer", "failed for 42", []), ("Inner", "x", [])]))
    assert parts == ["message", "Outer", "Inner", "failed for <num>"]


def test_non_error_events() -> None:
    log = notice(type="log", source="app.billing", message="charged 42 cents")
    assert default_parts(log) == ["log", "app.billing", "charged <num> cents"]
    assert default_parts(notice(type="404", source="/missing/7")) == ["404", "/missing/7"]
    usage = notice(type="usage", source=None, message="Clicked 3")
    assert default_parts(usage) == ["usage", "", "Clicked <num>"]


# --- fingerprint ----------------------------------------------------------------------------------------


def test_fingerprint_is_40_hex_and_deterministic() -> None:
    fp = fingerprint(notice(APP))
    assert re.fullmatch(r"[0-9a-f]{40}", fp)
    assert fp == fingerprint(notice([frame(f["file"], f["function"], (f["line"] or 0) + 7) for f in APP]))


def test_version_one_output_is_pinned() -> None:
    # Errors store the grouping version that made them. If this changes, existing errors would split:
    # keep version 1's output and bump VERSION for the new rules instead.
    assert VERSION == 1
    assert fingerprint(notice(APP + GEMS)) == "486cf51d1339b6fd07d6c178c705bf8b7a5d17d7"
    assert fingerprint(notice([], "KeyError", "'x' for 42")) == "233aee8bb61841d4b23436898745f7f2cbaf511b"


def test_message_does_not_matter_with_a_stack() -> None:
    assert fingerprint(notice(APP, message="a")) == fingerprint(notice(APP, message="completely different"))


def test_different_class_different_fingerprint() -> None:
    assert fingerprint(notice(APP, "NoMethodError")) != fingerprint(notice(APP, "ArgumentError"))


def test_client_fingerprint_default_alone_is_the_default_group() -> None:
    plain = fingerprint(notice(APP))
    spellings = (["{{ default }}"], ["{{default}}"], ["{{ DEFAULT }}"], ["{{ default }}", "{{ default }}"])
    for spelled in spellings:
        assert fingerprint(notice(APP, client_fingerprint=spelled)) == plain


def test_client_fingerprint_extends_or_replaces_the_default() -> None:
    plain = fingerprint(notice(APP))
    tenant_a = fingerprint(notice(APP, client_fingerprint=["{{ default }}", "tenant-a"]))
    tenant_b = fingerprint(notice(APP, client_fingerprint=["{{ default }}", "tenant-b"]))
    assert len({plain, tenant_a, tenant_b}) == 3
    literal = fingerprint(notice(APP, client_fingerprint=["payment-down"]))
    other_error = fingerprint(notice(GEMS, "Timeout", client_fingerprint=["payment-down"]))
    assert literal == other_error != plain
    assert fingerprint(notice(APP, client_fingerprint=["{{ unknown }}"])) != fingerprint(
        notice(APP, client_fingerprint=["{{ other }}"])
    )


def test_client_fingerprint_variables() -> None:
    by_type = ["{{ error.type }}", "{{ level }}"]
    a = fingerprint(notice(APP, "KeyError", level="error", client_fingerprint=by_type))
    b = fingerprint(notice(GEMS, "KeyError", level="error", client_fingerprint=by_type))
    c = fingerprint(notice(APP, "IndexError", level="error", client_fingerprint=by_type))
    assert a == b != c
    by_value = ["{{ type }}", "{{ error.value }}"]
    assert fingerprint(notice(APP, message="x", client_fingerprint=by_value)) != fingerprint(
        notice(APP, message="y", client_fingerprint=by_value)
    )
    by_function = ["{{ function }}"]
    assert fingerprint(notice(APP, client_fingerprint=by_function)) == fingerprint(
        notice([frame("other/file.rb", "save")], client_fingerprint=by_function)
    )


def test_exceptionless_manual_stacking_wins() -> None:
    stacked = ["ManualStackingKey=import-job"]
    assert fingerprint(notice(APP, client_fingerprint=stacked)) == fingerprint(
        notice(GEMS, "OtherError", client_fingerprint=stacked)
    )


def test_project_patterns_move_frames_between_app_and_library() -> None:
    ours = frame("/srv/app/lib/acme_sdk/client.rb", "request")
    via_sdk_v1 = notice([ours, frame("/srv/app/lib/acme_sdk/retry.rb", "attempt"), *APP])
    via_sdk_v2 = notice([ours, frame("/srv/app/lib/acme_sdk/pool.rb", "checkout"), *APP])
    assert fingerprint(via_sdk_v1) != fingerprint(via_sdk_v2)
    sdk = ("*/lib/acme_sdk/*",)
    assert fingerprint(via_sdk_v1, library_patterns=sdk) == fingerprint(via_sdk_v2, library_patterns=sdk)
    vendored = notice([frame("/srv/app/vendor/acme/x.rb", "run"), *APP])
    assert "vendor/acme/x.rb" not in "".join(default_parts(vendored))
    assert "acme/x.rb:run" in default_parts(vendored, app_patterns=("*/vendor/acme/*",))


_text = st.one_of(st.none(), st.text(max_size=300))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_text, _text, _text, st.sampled_from([None, True, False])), max_size=40),
    _text,
    st.lists(st.text(max_size=30), max_size=3),
)
def test_fingerprint_never_raises(
    raw: list[tuple[str | None, str | None, str | None, bool | None]], message: str | None, client: list[str]
) -> None:
    frames = [frame(file, function, module=module, in_app=flag) for file, module, function, flag in raw]
    n = notice(frames, message=message or "", client_fingerprint=client)
    assert re.fullmatch(r"[0-9a-f]{40}", fingerprint(n, ("*a*",), ("*b*",)))


def test_stack_parts_remembered_per_chain_equal_a_walk() -> None:
    from shared import fingerprint as fp

    chain: list = [
        {
            "type": "E",
            "frames": [{"file": "app/a.py", "function": "f", "in_app": True}, {"file": "lib/b.py"}],
        },
        {"type": "Cause", "frames": [{"module": "m", "function": "g"}]},
    ]
    walked = fp._stack_parts(chain, (), ())
    assert walked and fp._chain_stack_parts(chain, (), ()) == walked  # remembered
    assert fp._chain_stack_parts(chain, (), ()) == walked  # from the memo
    assert fp._chain_stack_parts(chain, ("lib/*",), ()) == fp._stack_parts(chain, ("lib/*",), ())
    odd: list = [{"type": "E", "frames": [{"file": "app/a.py", "function": "f", 1: "x"}]}]  # not JSON: walked
    assert fp._chain_stack_parts(odd, (), ()) == fp._stack_parts(odd, (), ())


def test_large_chains_are_walked_not_remembered() -> None:
    from shared import fingerprint as fp

    big: list = [
        {"type": "E", "frames": [{"file": f"app/f{i}.py", "function": "f" * 300} for i in range(40)]}
    ]
    before = fp._stack_parts_of.cache_info().currsize
    assert fp._chain_stack_parts(big, (), ()) == fp._stack_parts(big, (), ())
    assert fp._stack_parts_of.cache_info().currsize == before
