"""The notice page behind `/locate`: login, cookie, escaping, and what a person sees in headless Chromium."""

from __future__ import annotations

import asyncio
import html
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from services.query import pages
from tests.conftest import ProjectInfo, drain

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_TIMEOUT = 90.0
XSS = "<script>alert('x')</script> & <b>bold</b>"


def crash(marker: str, project_root: str = "/srv/shop/current") -> dict[str, Any]:
    """A CrashLog payload whose class, message and frames are unique to one test."""
    return {
        "notifier": {"name": "crashlog", "version": "1.0.0"},
        "event": {
            "class_name": f"Checkout{marker}Error",
            "message": f"card declined for order {marker} {XSS}",
            "created_at": "2024-05-01T12:00:00+02:00",
        },
        "backtrace": [
            {
                "file": f"{project_root}/app/services/checkout_{marker}.rb",
                "number": 27,
                "method": "charge!",
                "pre_context": ["def charge!", "  amount = cart.total"],
                "context_line": f"  raise Checkout{marker}Error, 'declined' if amount < 0 # <unsafe>",
                "post_context": ["end"],
            },
            {
                "file": f"{project_root}/app/controllers/orders_controller.rb",
                "number": 12,
                "method": "create",
            },
        ],
        "environment": {"name": "production", "project_root": project_root, "platform": "ruby 3.3"},
        "context": {"hostname": "web-7.example.com", "current_user": {"id": 42, "email": "ann@example.com"}},
    }


async def stored_notice(gateway: TestClient, consumer: Any, project: ProjectInfo, marker: str) -> str:
    resp = await gateway.post("/notify", params={"auth_token": project.key}, data=orjson.dumps(crash(marker)))
    assert resp.status == 201, await resp.text()
    location_id = str((await resp.json())["location_id"])
    await drain(consumer)
    return location_id


# ---- HTTP level -------------------------------------------------------------------------------


async def test_without_a_token_the_page_is_only_the_login_form(gateway, query, consumer, project):
    location_id = await stored_notice(gateway, consumer, project, "Anon")
    resp = await query.get(f"/notices/{location_id}")
    assert resp.status == 401
    assert resp.content_type == "text/html"
    text = await resp.text()
    assert '<form method="post" action="/login">' in text
    assert f'name="next" value="/notices/{location_id}"' in text
    assert "CheckoutAnonError" not in text and "declined" not in text and location_id in text  # only in next
    assert resp.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    # A project's client key is not enough either, and an unknown location id reveals nothing.
    resp = await query.get(f"/notices/{location_id}", headers={"Api-Key": project.key})
    assert resp.status == 403 and "CheckoutAnonError" not in await resp.text()
    assert (await query.get(f"/notices/{uuid.uuid4()}")).status == 401


async def test_login_sets_an_httponly_lax_cookie_and_goes_back(gateway, query, consumer, project, user_token):
    location_id = await stored_notice(gateway, consumer, project, "Login")
    here = f"/notices/{location_id}"
    resp = await query.post("/login", data={"token": user_token, "next": here}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == here
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{pages.COOKIE}={user_token};")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie

    page = await query.get(here, cookies={pages.COOKIE: user_token})
    assert page.status == 200
    text = await page.text()
    assert "<h1>CheckoutLoginError</h1>" in text
    assert html.escape(XSS) in text and XSS not in text and "<script" not in text
    assert "[PROJECT_ROOT]/app/services/checkout_Login.rb:27:in `charge!`" in text
    assert "# &lt;unsafe&gt;" in text
    assert "web-7.example.com" in text and "ann@example.com" in text
    assert "Occurrences" in text and "First seen" in text and "Last seen" in text

    missing = await query.get(f"/notices/{uuid.uuid4()}", cookies={pages.COOKIE: user_token})
    assert missing.status == 404 and "Notice not found" in await missing.text()
    bad = await query.get("/notices/nope", cookies={pages.COOKIE: user_token})
    assert bad.status == 404


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/notices/1?x=1#f", "/notices/1?x=1#f"),
        ("//evil.example/", ""),
        ("/\\evil.example/", ""),
        ("https://evil.example/", ""),
        ("javascript:alert(1)", ""),
        ("/notices/1\r\nSet-Cookie: x=1", ""),
        ("", ""),
    ],
)
async def test_next_is_restricted_to_local_paths(query, user_token, given: str, expected: str):
    assert pages.safe_next(given) == expected
    resp = await query.post("/login", data={"token": user_token, "next": given}, allow_redirects=False)
    if expected:
        assert resp.status == 303 and resp.headers["Location"] == expected
    else:
        assert resp.status == 200 and "Location" not in resp.headers and "Signed in" in await resp.text()


async def test_login_refuses_bad_and_client_tokens(query, project):
    resp = await query.post("/login", data={"token": "nope", "next": "/notices/x"}, allow_redirects=False)
    assert resp.status == 401 and "Set-Cookie" not in resp.headers
    assert "Unknown or revoked token" in await resp.text()
    resp = await query.post("/login", data={"token": project.key}, allow_redirects=False)
    assert resp.status == 403 and "Set-Cookie" not in resp.headers
    form = await query.get("/login", params={"next": "//evil.example"})
    assert form.status == 200 and 'name="next" value=""' in await form.text()


async def test_logout_clears_the_cookie(query):
    resp = await query.post("/logout", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    assert resp.headers["Set-Cookie"].startswith(f'{pages.COOKIE}="";')


# ---- in a real browser ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser binary; missing on CI is a failure, on a dev machine a skip."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed (CI=true): .ci/run installs it with apt-get")
    pytest.skip("chromium is not installed: `apt-get install chromium` to run the browser test")


async def browse(chromium: str, tmp: Path, url: str, *extra: str) -> str:
    """Open url in a fresh headless profile; returns the DOM as the page left it."""
    profile = tmp / f"profile-{uuid.uuid4().hex[:8]}"
    args = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=10000", *extra, url,
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        chromium, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CHROMIUM_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"chromium did not finish within {CHROMIUM_TIMEOUT}s") from None
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


def login_launcher(tmp: Path, query: TestClient, token: str, next_path: str) -> str:
    """A local page that posts the login form on load, as a person would: the token never sits in a URL."""
    page = tmp / f"login-{uuid.uuid4().hex[:8]}.html"
    page.write_text(
        "<!DOCTYPE html><html><body>"
        f'<form method="post" action="{html.escape(str(query.make_url("/login")))}">'
        f'<input type="hidden" name="token" value="{html.escape(token)}">'
        f'<input type="hidden" name="next" value="{html.escape(next_path)}">'
        "</form><script>document.forms[0].submit()</script></body></html>"
    )
    return page.as_uri()


async def test_a_person_opens_the_notice_page_in_chromium(
    chromium, tmp_path, gateway, query, consumer, project, user_token
):
    location_id = await stored_notice(gateway, consumer, project, "Browser")
    here = f"/notices/{location_id}"

    anonymous = await browse(chromium, tmp_path, str(query.make_url(here)), "--dump-dom")
    assert 'action="/login"' in anonymous
    assert "CheckoutBrowserError" not in anonymous and "declined" not in anonymous

    dom = await browse(chromium, tmp_path, login_launcher(tmp_path, query, user_token, here), "--dump-dom")
    assert "<h1>CheckoutBrowserError</h1>" in dom, dom[:3000]
    assert f"card declined for order Browser {html.escape(XSS, quote=False)}" in dom
    assert "<script>alert" not in dom and "<b>bold</b>" not in dom
    assert "[PROJECT_ROOT]/app/services/checkout_Browser.rb:27:in `charge!`" in dom
    assert "[PROJECT_ROOT]/app/controllers/orders_controller.rb:12:in `create`" in dom
    assert "raise CheckoutBrowserError, 'declined' if amount &lt; 0 # &lt;unsafe&gt;" in dom
    assert "amount = cart.total" in dom
    assert "web-7.example.com" in dom and "production" in dom
    assert user_token not in dom

    shot = tmp_path / "notice.png"
    await browse(
        chromium,
        tmp_path,
        login_launcher(tmp_path, query, user_token, here),
        f"--screenshot={shot}",
        "--window-size=1280,1400",
        "--hide-scrollbars",
    )
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    if keep := os.environ.get("FAULTLINE_KEEP_SCREENSHOT"):
        shutil.copyfile(shot, keep)


async def test_login_cookie_does_not_authorise_writes(query, user_token):
    """A browser's cookie reads pages, but a cross-site form cannot resolve errors with it."""
    cookies = {"faultline_token": user_token}
    resp = await query.get("/v1/errors", cookies=cookies)
    assert resp.status == 200
    resp = await query.post("/v1/deploys", json={"environment": "x"}, cookies=cookies)
    assert resp.status == 401
