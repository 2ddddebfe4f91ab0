"""Hoptoad / Airbrake notifier API v2 (XML): `POST /notifier_api/v2/notices[.xml]`, as Errbit serves it.

Sent by the `airbrake` Ruby gem before v5, `hoptoad_notifier`, the PyPI `errbit` client and others:
`<notice version="2.x">` with `<api-key>`, `<notifier>`, `<error>` (`class`, `message`,
`backtrace/line@file,number,method`), `<request>` (`url`, `component`, `action` and `<var key=…>`
trees under `params`, `session`, `cgi-data`), `<server-environment>` (`project-root`,
`environment-name`, `app-version`) and `<current-user>`.

XML is parsed with defusedxml over the standard library's expat: a DTD (and so any entity, a
billion-laughs body, an external reference) is refused. The gateway runs the parser over the whole
body without building a tree, keeping only the `<api-key>` text (the key is inside the XML), so a
malformed body or a bad key is answered before anything is queued. Answers follow Errbit: 200
`<notice><id/><url/></notice>`, 422 text for a body that is not well-formed XML or an unknown key.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder
from xml.sax.saxutils import escape

from aiohttp import web
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from shared.frames import parse_line
from shared.model import ExceptionInfo, Frame, Notice, frame
from shared.protocols import bounds
from shared.protocols.base import Decoded, Protocol, Undecodable, note
from shared.protocols.crashlog import strip_root
from shared.protocols.ingest import SETTINGS, Ids, authenticate, body, queue
from shared.stream import RawNotice
from shared.web import ApiError, Handler, credential

NAME = "hoptoad"
XML_TYPE = "application/xml"
# Notifiers whose backtrace runs oldest frame first (traceback.extract_tb), by their <notifier><name>.
OLDEST_FIRST = frozenset({"errbit"})  # PyPI `errbit` (4teamwork/errbit-python)


# ---- parsing (pure) --------------------------------------------------------------------------


class TooDeep(ValueError):
    """Elements nested deeper than bounds.MAX_BODY_DEPTH (the limit JSON bodies have too)."""


class _KeyOnly:
    """A parser target that builds nothing: it keeps the text of the root's `<api-key>` child."""

    def __init__(self) -> None:
        self.depth = 0
        self.root: str | None = None
        self.in_key = False
        self.key: list[str] = []

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth > bounds.MAX_BODY_DEPTH:
            raise TooDeep(f"XML nested deeper than {bounds.MAX_BODY_DEPTH} levels")
        if self.depth == 1:
            self.root = tag
        self.in_key = self.depth == 2 and tag == "api-key"

    def end(self, tag: str) -> None:
        self.depth -= 1
        self.in_key = False

    def data(self, text: str) -> None:
        if self.in_key and len(self.key) < 100:
            self.key.append(text)

    def close(self) -> None:
        return None


class _Bounded:
    """A TreeBuilder that refuses elements nested deeper than bounds.MAX_BODY_DEPTH."""

    def __init__(self) -> None:
        self.tree = TreeBuilder()
        self.depth = 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        self.depth += 1
        if self.depth > bounds.MAX_BODY_DEPTH:
            raise TooDeep(f"XML nested deeper than {bounds.MAX_BODY_DEPTH} levels")
        return self.tree.start(tag, attrs)

    def end(self, tag: str) -> Element:
        self.depth -= 1
        return self.tree.end(tag)

    def data(self, text: str) -> None:
        self.tree.data(text)

    def close(self) -> Element:
        return self.tree.close()


def _parse(raw: bytes, target: Any = None) -> Any:
    """Run the safe parser over the whole body; ValueError when it is not well-formed, safe XML."""
    parser = DefusedXMLParser(target=target if target is not None else _Bounded(), forbid_dtd=True)
    try:
        parser.feed(raw)
        return parser.close()
    except DefusedXmlException as e:
        raise ValueError(
            f"XML with a DTD, entities or external references is refused ({type(e).__name__})"
        ) from e
    except ParseError as e:
        raise ValueError(f"The provided XML was not well-formed: {e}") from e


def api_key(raw: bytes) -> tuple[str | None, str | None]:
    """(root tag, api-key text) of a body, parsed through without a tree; ValueError when not XML."""
    target = _KeyOnly()
    _parse(raw, target)
    key = "".join(target.key).strip()
    return target.root, key or None


def _text(el: Element | None) -> str | None:
    if el is None:
        return None
    text = "".join(el.itertext()).strip()
    return text or None


def _vars(el: Element | None, left: int = bounds.MAX_DEPTH) -> dict[str, Any]:
    """A `<var key=…>` tree as nested dicts: a var holding vars is a dict, else its text."""
    out: dict[str, Any] = {}
    if el is None:
        return out
    children = [c for c in el if c.tag == "var"]
    for var in bounds.cut(children, bounds.MAX_PAIRS, f"{el.tag} vars"):
        key = var.get("key")
        if key is None:
            continue
        inner = [c for c in var if c.tag == "var"]
        if inner:
            out[key] = _vars(var, left - 1) if left > 1 else bounds.TRUNCATED
        else:
            out[key] = "".join(var.itertext())
    return out


def _number(value: str | None) -> int | None:
    v = (value or "").strip()
    return int(v) if v.isascii() and v.isdigit() and len(v) < 10 else None


def _frame(line: Element, root: str | None) -> Frame | None:
    file = strip_root((line.get("file") or "").strip() or None, root)
    method = (line.get("method") or "").strip() or None
    number = _number(line.get("number"))
    if not file and not method:
        return None
    if file and method:  # the Exceptioner text form, so both fold frame for frame
        parsed = parse_line(f"{file}:{number or 0}:in `{method}'")
        if parsed["file"] and parsed["function"]:
            parsed.pop("raw", None)  # type: ignore[misc]
            parsed["line"] = number
            return parsed
    return frame(file, method, number)


def parse_notice(raw: bytes) -> Notice:
    """A v2 notice body into the canonical notice; ValueError when it holds no notice."""
    root = _parse(raw)
    if root is None or root.tag != "notice":
        raise ValueError("the root element is not <notice>")
    error = root.find("error")
    if error is None:
        raise ValueError("a <notice> without <error>")
    env = root.find("server-environment")
    project_root = _text(env.find("project-root")) if env is not None else None
    exception = _text(error.find("class"))
    message = _text(error.find("message"))
    lines = error.find("backtrace")
    all_lines = [] if lines is None else [c for c in lines if c.tag == "line"]
    notifier = root.find("notifier")
    notifier_name = _text(notifier.find("name")) if notifier is not None else None
    if notifier_name in OLDEST_FIRST:
        all_lines.reverse()
    kept = bounds.cut(all_lines, bounds.MAX_FRAMES, "error.backtrace")
    frames = [f for f in (_frame(line, project_root) for line in kept) if f is not None]
    prefix = f"{exception}: "
    exc_message = message[len(prefix) :] if message and message.startswith(prefix) else message
    chain: list[ExceptionInfo] = [{"type": exception, "message": exc_message, "frames": frames}]
    notice: Notice = {
        "protocol": NAME,
        "type": "error",
        "exception": exception,
        "message": message,
        "environment": (_text(env.find("environment-name")) if env is not None else None) or "",
        "occurred_at": None,
        "exceptions": chain,
    }
    if file := next((f["file"] for f in frames if f["file"]), None):
        notice["file"] = file
    context: dict[str, Any] = {}
    if notifier is not None:
        context["notifier"] = {c.tag: _text(c) for c in notifier if _text(c) is not None}
    if (version := root.get("version")) is not None:
        context["version"] = version
    if env is not None:
        server = {c.tag: _text(c) for c in env if len(c) == 0 and _text(c) is not None}
        if server:
            context["server-environment"] = server
        if release := server.get("app-version"):
            notice["release"] = release
        if hostname := server.get("hostname"):
            notice["hostname"] = hostname
    if (framework := _text(root.find("framework"))) is not None:
        context["framework"] = framework
    request = root.find("request")
    if request is not None:
        for tag in ("url", "component", "action"):
            if (value := _text(request.find(tag))) is not None:
                context[tag] = value
        if component := context.get("component"):
            notice["source"] = component
        for key, tag in (("params", "params"), ("session", "session"), ("cgi", "cgi-data")):
            if part := _vars(request.find(tag)):
                notice[key] = part  # type: ignore[literal-required]
    user = root.find("current-user")
    if user is not None:
        fields = {c.tag: _text(c) for c in user if _text(c) is not None}
        if fields:
            notice["user"] = fields
    if context:
        notice["context"] = context
    return notice


# ---- HTTP ------------------------------------------------------------------------------------


def _errbit_errors(handler: Handler) -> Handler:
    """Errbit's error answers: plain text (the notifiers log the body), 422 for bad XML or key."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as e:
            return web.Response(status=e.status, text=str(e), headers=e.headers)

    return wrapped


@_errbit_errors
async def post_notice(request: web.Request) -> web.StreamResponse:
    raw = await body(request)
    if not raw.strip():
        raise ApiError(400, "Need a data params in GET or raw post data")
    try:
        root, key = api_key(raw)
    except TooDeep as e:
        raise ApiError(400, str(e)) from e
    except ValueError as e:
        raise ApiError(422, str(e)) from e
    if root != "notice":
        raise ApiError(422, "The provided XML was not well-formed: the root element is not <notice>")
    key = key or credential(request)  # a notice without <api-key>: the forms every route takes
    if not key:
        raise ApiError(422, "Your API key is unknown")
    try:
        project = authenticate(request, key)
    except ApiError as e:
        if e.status == 401:
            raise ApiError(422, "Your API key is unknown") from e
        raise
    new = Ids.new()
    await queue(request, project, [RawNotice(NAME, new.notice_id, new.location_id, project.id, raw)])
    url = f"{request.app[SETTINGS].public_url}/locate/{new.location_id}"
    answer = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<notice><id>{escape(new.notice_id)}</id><url>{escape(url)}</url></notice>\n"
    )
    return web.Response(status=200, text=answer, content_type=XML_TYPE, charset="utf-8")


def decode(entry: RawNotice) -> list[Decoded]:
    try:
        with bounds.noting() as cuts:
            notice = parse_notice(entry.body)
    except (ValueError, RecursionError) as e:
        raise Undecodable(f"not a Hoptoad v2 notice: {e}") from e
    for text in cuts:
        note(notice, text)
    return [(notice, entry.body)]


def routes() -> list[web.RouteDef]:
    return [
        web.post("/notifier_api/v2/notices", post_notice),
        web.post("/notifier_api/v2/notices.xml", post_notice),
    ]


PROTOCOL = Protocol(NAME, routes, decode)
