"""Server-rendered HTML: the notice page `/locate` redirects to, and the token login behind it.

No JavaScript; every value is escaped. Without a user-scoped token (the `faultline_token` cookie set by
`POST /login`, or any credential form) a page shows only the login form.
"""

from __future__ import annotations

import functools
import html
import importlib.resources
import logging
from collections.abc import Iterable, Mapping
from string import Template
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from services.query.auth import require_user
from services.query.locate import find_error, find_notice, location_key, notice_path
from services.query.reads import read_conn
from services.query.state import KEYS, SETTINGS
from shared.frames import mark_in_app
from shared.model import Frame
from shared.serialize import frame_line
from shared.timeutil import iso
from shared.web import ApiError

logger = logging.getLogger(__name__)

COOKIE = "faultline_token"
COOKIE_MAX_AGE = 7 * 24 * 3600
LOGIN_PATH = "/login"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

e = html.escape


@functools.cache
def template(name: str) -> Template:
    """A template from services/query/templates, read once."""
    text = (importlib.resources.files("services.query") / "templates" / name).read_text("utf-8")
    return Template(text)


def page(
    status: int, title: str, body: str, signed_in: bool = False, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A whole HTML page; `body` is already escaped HTML."""
    nav = (
        '<form method="post" action="/logout"><button type="submit">Sign out</button></form>'
        if signed_in
        else ""
    )
    text = template("page.html").substitute(title=e(title), nav=nav, body=body)
    return web.Response(
        text=text,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={**HEADERS, **(headers or {})},
    )


def safe_next(value: str | None, default: str = "") -> str:
    """A local path to go back to after signing in; anything that could leave this site gives default."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return default
    if "\\" in value or any(ord(c) < 0x21 or c == "\x7f" for c in value):
        return default
    parts = urlsplit(value)
    return default if parts.scheme or parts.netloc else value


def login_body(next_path: str, reason: str, problem: str | None = None) -> str:
    return template("login.html").substitute(
        next=e(safe_next(next_path)),
        reason=e(reason),
        problem=f'<p class="error-text">{e(problem)}</p>' if problem else "",
    )


def login_page(status: int, next_path: str, problem: str | None = None) -> web.Response:
    reason = "Sign in to see this page." if next_path else "Sign in to Faultline."
    return page(status, "Sign in", login_body(next_path, reason, problem))


def viewer_problem(request: web.Request) -> ApiError | None:
    """None when a user-scoped token came with the request, else the 401/403 it deserves."""
    try:
        require_user(request)
    except ApiError as err:
        return err
    return None


# ---- rendering (pure) -------------------------------------------------------------------------


def _value(v: Any) -> str:
    if isinstance(v, str):
        return f"<pre>{e(v)}</pre>"
    return f"<pre>{e(orjson.dumps(v, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())}</pre>"


def kv_table(data: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th>{e(str(k))}</th><td>{_value(v)}</td></tr>" for k, v in data.items())
    return f'<table class="kv">{rows}</table>'


def facts(items: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in items if v not in (None, ""))
    return f'<dl class="facts">{rows}</dl>'


def context_block(f: Mapping[str, Any]) -> str:
    """The frame's source lines, the failing one marked; numbered when the line number is known."""
    pre: list[str] = list(f.get("pre_context") or [])
    post: list[str] = list(f.get("post_context") or [])
    hit = f.get("context_line")
    if hit is None and not pre and not post:
        return ""
    line = f.get("line") if isinstance(f.get("line"), int) else None

    def row(n: int | None, text: str, cls: str = "") -> str:
        ln = f'<span class="ln">{n}</span>' if n is not None else ""
        inner = f"{ln}{e(text)}"
        return f'<span class="hit">{inner}</span>' if cls else inner + "\n"

    out = [row(None if line is None else line - len(pre) + i, t) for i, t in enumerate(pre)]
    if hit is not None:
        out.append(row(line, hit, "hit"))
    out += [row(None if line is None else line + 1 + i, t) for i, t in enumerate(post)]
    return f'<pre class="context">{"".join(out)}</pre>'


def patterns(settings: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """A project's `app_patterns` / `library_patterns`, as the worker's grouping reads them."""
    value = settings.get(name)
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def backtrace_html(
    chain: list[Mapping[str, Any]], app: tuple[str, ...] = (), lib: tuple[str, ...] = ()
) -> str:
    """The chain's frames, app frames marked by the project's own patterns (as grouping decides them)."""
    if not any(exc.get("frames") for exc in chain):
        return '<p class="muted">No backtrace was sent.</p>'
    parts = []
    for exc in chain:
        if len(chain) > 1:
            parts.append(f"<h3>{e(str(exc.get('type') or ''))}: {e(str(exc.get('message') or ''))}</h3>")
        blank: dict[str, Any] = {"file": None, "module": None, "in_app": None}
        frames = mark_in_app([cast(Frame, {**blank, **f}) for f in exc.get("frames") or []], app, lib)
        items = "".join(
            f'<li class="{"app" if f["in_app"] else "lib"}"><code>{e(frame_line(f))}</code>'
            f"{context_block(f)}</li>"
            for f in frames
        )
        parts.append(f'<ol class="frames">{items}</ol>')
    return "".join(parts)


def notice_body(
    notice: Mapping[str, Any],
    error: Mapping[str, Any] | None,
    project: str | None,
    settings: Mapping[str, Any] | None = None,
) -> str:
    """The notice page's content: what happened, where, how often, and what the client sent."""
    body: Mapping[str, Any] = notice["body"] or {}
    chain = body.get("exceptions") or []
    cls = notice["exception"] or body.get("exception") or notice["type"]
    message = notice["message"] or ""
    out = [f"<h1>{e(str(cls))}</h1>", f'<p class="message">{e(message)}</p>']
    if error is not None:
        out += [
            "<h2>Error</h2>",
            facts(
                [
                    ("Error", f"#{error['id']}"),
                    ("Project", project or error["project_id"]),
                    ("Environment", error["environment"] or "(none)"),
                    ("Occurrences", error["notices_count"]),
                    ("First seen", iso(error["first_notice_at"])),
                    ("Last seen", iso(error["most_recent_notice_at"])),
                    ("Status", "resolved" if error["resolved"] else "unresolved"),
                ]
            ),
        ]
    out += [
        "<h2>This notice</h2>",
        facts(
            [
                ("Notice id", notice["id"]),
                ("Location id", notice["location_id"]),
                ("Protocol", notice["protocol"]),
                ("Occurred at", iso(notice["occurred_at"])),
                ("Received at", iso(notice["received_at"])),
                ("Host", body.get("hostname")),
            ]
        ),
    ]
    s = settings or {}
    out += [
        "<h2>Backtrace</h2>",
        backtrace_html(chain, patterns(s, "app_patterns"), patterns(s, "library_patterns")),
    ]
    raw_context = body.get("context")
    context: dict[str, Any] = raw_context if isinstance(raw_context, dict) else {}
    user = body.get("user")
    sections = (
        ("Environment", body.get("cgi")),
        ("Context", context),
        ("User", None if user in context.values() else user),  # CrashLog's user is in its context
        ("Parameters", body.get("params")),
        ("Session", body.get("session")),
        ("Data", body.get("data")),
    )
    for title, data in sections:
        if isinstance(data, dict) and data:
            out += [f"<h2>{e(title)}</h2>", kv_table(data)]
    return "\n".join(out)


# ---- handlers ---------------------------------------------------------------------------------


async def notice_page(request: web.Request) -> web.Response:
    """`/notices/{location_id}`: the login form (401/403) until a user token comes with the request."""
    here = request.path
    problem = viewer_problem(request)
    if problem is not None:
        why = (
            "That key is a project's client key; sign in with a user-scoped token."
            if problem.status == 403
            else None
        )
        return login_page(problem.status, here, why)
    try:
        location_id = location_key(request.match_info["location_id"])
    except ApiError:
        location_id = None
    row = err = None
    if location_id is not None:
        async with read_conn(request) as conn:
            row = await find_notice(conn, location_id)
            if row is not None:
                err = await find_error(conn, row["error_id"])
    if row is None:
        text = (
            '<h1>Notice not found</h1><p class="muted">A notice is stored within a second or so of'
            " being accepted; reload shortly if it was sent just now.</p>"
        )
        return page(404, "Notice not found", text, signed_in=True)
    projects = request.app[KEYS].projects
    project = projects.get(row["project_id"])
    title = str(row["exception"] or row["message"] or "Notice")[:120]
    body = notice_body(row, err, project.name if project else None, project.settings if project else None)
    return page(200, title, body, signed_in=True)


async def login_form(request: web.Request) -> web.Response:
    return login_page(200, safe_next(request.query.get("next")))


async def login(request: web.Request) -> web.Response:
    """Check the token, keep it in an HttpOnly SameSite=Lax cookie, and go back to `next`."""
    try:
        form = await request.post()
    except ValueError:  # a multipart body without its boundary, ...
        return login_page(400, "", "The form could not be read.")
    token = form.get("token")
    next_path = safe_next(str(form.get("next") or ""))
    cred = request.app[KEYS].lookup(token.strip()) if isinstance(token, str) else None
    if cred is None:
        return login_page(401, next_path, "Unknown or revoked token.")
    if not cred.is_user:
        return login_page(403, next_path, "That is a project's client key; use a user-scoped token.")
    assert isinstance(token, str)
    if next_path:
        resp: web.Response = web.Response(status=303, headers={**HEADERS, "Location": next_path})
    else:
        resp = page(
            200,
            "Signed in",
            "<h1>Signed in</h1><p>Open a notice through its"
            " <code>/locate/&lt;location_id&gt;</code> link.</p>",
            signed_in=True,
        )
    secure = request.app[SETTINGS].public_url.startswith("https://")
    resp.set_cookie(
        COOKIE, token.strip(), max_age=COOKIE_MAX_AGE, path="/", httponly=True, samesite="Lax", secure=secure
    )
    logger.info("signed in remote=%s", request.remote)
    return resp


async def logout(_: web.Request) -> web.Response:
    resp = web.Response(status=303, headers={**HEADERS, "Location": LOGIN_PATH})
    resp.del_cookie(COOKIE, path="/")
    return resp


def routes() -> list[web.RouteDef]:
    return [
        web.get(notice_path("{location_id}"), notice_page),
        web.get(LOGIN_PATH, login_form),
        web.post(LOGIN_PATH, login),
        web.post("/logout", logout),
    ]
