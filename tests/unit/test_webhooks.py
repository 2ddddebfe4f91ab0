"""Webhook signatures, addresses, back-off and the Slack body: pure functions."""

from __future__ import annotations

import re
import time
from pathlib import Path

from services.worker import delivery, hookbody
from shared import webhooks

ROOT = Path(__file__).resolve().parents[2]


def test_a_signature_verifies_and_tampering_or_replay_does_not():
    body, ts = b'{"event": "error.new"}', int(time.time())
    sig = webhooks.sign("s3cret-s3cret-s3cret", ts, body)
    assert sig.startswith("v1=") and len(sig) == 3 + 64
    assert webhooks.verify("s3cret-s3cret-s3cret", str(ts), sig, body)
    assert not webhooks.verify("another-secret-here", str(ts), sig, body)
    assert not webhooks.verify("s3cret-s3cret-s3cret", str(ts), sig, body + b" ")
    assert not webhooks.verify("s3cret-s3cret-s3cret", str(ts + 1), sig, body)  # the timestamp is signed
    old = ts - 3600
    assert not webhooks.verify(
        "s3cret-s3cret-s3cret", str(old), webhooks.sign("s3cret-s3cret-s3cret", old, body), body
    )


def test_the_readme_example_verifies_what_the_worker_signs():
    text = (ROOT / "README.md").read_text()
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", text, re.S) if "def verify(secret" in c]
    scope: dict[str, object] = {}
    exec(code, scope)  # noqa: S102 - the README's own example
    body, ts = b'{"a": 1}', int(time.time())
    headers = delivery.headers(
        {"id": "d-1", "event": "error.new", "attempts": 1, "secret": "k" * 20}, body, ts
    )
    verify = scope["verify"]
    assert verify("k" * 20, body, headers["Faultline-Timestamp"], headers["Faultline-Signature"])  # type: ignore[operator]
    assert not verify("k" * 19 + "x", body, headers["Faultline-Timestamp"], headers["Faultline-Signature"])  # type: ignore[operator]


def test_only_public_addresses_pass():
    for address in (
        "127.0.0.1",
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fc00::1",
        "100.64.0.1",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        "224.0.0.1",
        "nonsense",
    ):
        assert not webhooks.public_address(address), address
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "1.1.1.1"):
        assert webhooks.public_address(address), address
    assert webhooks.url_problem("ftp://example.com/") == "invalid"
    assert webhooks.url_problem("http:///nohost") == "invalid"
    assert webhooks.url_problem("https://example.com:99999/") == "invalid"
    assert webhooks.url_problem("https://example.com/hook?x=1") is None
    assert webhooks.url_problem("https://exa\x00mple.com/") == "invalid"  # PostgreSQL text refuses NUL
    assert webhooks.url_problem("https://bücher.example/") == "invalid"  # IDN: send its xn-- form


def test_backoff_doubles_with_jitter_and_is_capped():
    for attempts in range(1, 8):
        full = 10 * 2 ** (attempts - 1)
        for _ in range(20):
            assert full / 2 <= delivery.backoff(attempts, 10) <= full
    assert delivery.backoff(40, 10) <= delivery.MAX_BACKOFF


def test_slack_body_escapes_and_cuts():
    data = {
        "event": "error.new",
        "project": {"id": 1, "name": "shop"},
        "error": {
            "exception": "E<x>",
            "message": "m & " + "y" * 5000,
            "mode": "production",
            "notices_count": 1,
        },
        "links": {"notice_page": "http://q/notices/abc"},
    }
    body = hookbody.slack(data)
    assert body["text"].startswith("New error in shop: E&lt;x&gt;: m &amp; ")
    section = body["blocks"][0]["text"]
    assert section["type"] == "mrkdwn" and len(section["text"]) <= hookbody.SLACK_TEXT_LIMIT
    assert body["blocks"][1]["type"] == "context"
    assert section["text"].endswith("<http://q/notices/abc|Open in Faultline>")  # the link survives the cut
