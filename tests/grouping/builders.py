"""Canonical notices built the way each protocol parser builds them, from what each real client sends.

The corpus must not depend on the protocol modules (they change under their own tests), so these
mimic the mapping each parser is expected to do. The assumptions, one per protocol:

- Exceptioner (``POST /v1/notices``): ``error.backtrace`` is a list of text lines, innermost first;
  each goes through ``shared.frames.parse_line`` (as services/gateway/exceptioner.py does). One
  exception; its message is the notice message without the ``"Class: "`` prefix. A Python client
  posting here sends ``File "...", line N, in f`` lines innermost first, like a Ruby backtrace.
- CrashLog: ``backtrace`` is ``[{file, number, method}]`` innermost first; ``environment.project_root``
  is replaced by ``[PROJECT_ROOT]``; Ruby 3.4 labels (``User#save``) are split into module and method
  exactly as the text parser does.
- Sentry: ``exception.values`` run oldest (first cause) to newest and each ``stacktrace.frames`` oldest
  call first: both are reversed (canonical: outermost exception first, innermost frame first).
  ``file`` = ``filename`` or ``abs_path``; ``module`` kept; ``in_app`` kept as the client sent it
  (None when absent); ``function`` ``"?"`` means none; ``type`` kept unqualified as sent (Python and
  Java SDKs send the bare class name). ``fingerprint`` -> ``client_fingerprint``.
- Airbrake v3 (pybrake, @airbrake/node, gobrake, javabrake): ``errors[]`` is already outermost first
  with each backtrace innermost first; ``file``/``function``/``line``/``column`` kept as sent, no
  module, ``in_app`` None. pybrake rewrites the root to ``/PROJECT_ROOT`` and site-packages to
  ``/SITE_PACKAGES``; gobrake strips the package from ``function``; javabrake puts the class's
  resource path (``app.jar!/com/x/Foo.class``) or a JDK class name in ``file``.
- Exceptionless: ``@error`` frames ``{name, declaring_namespace, declaring_type, file_name,
  line_number, column}`` innermost first -> module = ``namespace.type``; ``inner`` makes the chain.
  ``@simple_error.stack_trace`` is one string, parsed with ``shared.frames.parse_text``. ``@stack``
  (manual stacking) -> ``client_fingerprint`` ``["key=value", ...]`` sorted by key, else
  ``["title=..."]``.
"""

from __future__ import annotations

from typing import Any

from shared.frames import parse_line, parse_text
from shared.model import ExceptionInfo, Frame, Notice, frame

PROJECT_ROOT = "[PROJECT_ROOT]"


def _notice(protocol: str, chain: list[ExceptionInfo], environment: str = "production") -> Notice:
    first = chain[0] if chain else None
    return {
        "protocol": protocol,
        "type": "error",
        "exception": first["type"] if first else None,
        "message": first["message"] if first else None,
        "environment": environment,
        "occurred_at": None,
        "exceptions": chain,
    }


def exceptioner(exception: str, message: str, backtrace: list[str]) -> Notice:
    """A v1 notice: Ruby-style backtrace lines, innermost first."""
    frames = [parse_line(line) for line in backtrace if line and line != "..."]
    notice = _notice("exceptioner", [{"type": exception, "message": message, "frames": frames}])
    notice["message"] = f"{exception}: {message}"
    return notice


def crashlog(class_name: str, message: str, backtrace: list[dict[str, Any]], project_root: str) -> Notice:
    """A CrashLog notice: ``{file, number, method}`` entries, the project root made ``[PROJECT_ROOT]``."""
    frames: list[Frame] = []
    for entry in backtrace:
        file = entry["file"]
        if file.startswith(project_root.rstrip("/") + "/"):
            file = PROJECT_ROOT + file[len(project_root.rstrip("/")) :]
        f = frame(file, entry["method"], entry["number"])
        if "#" in entry["method"] or "." in entry["method"]:
            parsed = parse_line(f"{file}:{entry['number']}:in `{entry['method']}'")
            if parsed["module"]:
                f["module"], f["function"] = parsed["module"], parsed["function"]
        frames.append(f)
    return _notice("crashlog", [{"type": class_name, "message": message, "frames": frames}])


def sentry_frame(raw: dict[str, Any]) -> Frame:
    function = raw.get("function")
    in_app = raw.get("in_app")
    f = frame(
        raw.get("filename") or raw.get("abs_path"),
        None if function == "?" else function,
        raw.get("lineno"),
        raw.get("colno"),
        module=raw.get("module"),
        in_app=in_app if isinstance(in_app, bool) else None,
    )
    if raw.get("context_line") is not None:
        f["context_line"] = raw["context_line"]
    return f


def sentry(values: list[dict[str, Any]], fingerprint: list[str] | None = None) -> Notice:
    """A Sentry event's ``exception.values`` (oldest first), frames oldest call first."""
    chain: list[ExceptionInfo] = [
        {
            "type": v["type"],
            "message": v.get("value"),
            "frames": [sentry_frame(f) for f in reversed(v.get("frames") or [])],
        }
        for v in reversed(values)
    ]
    notice = _notice("sentry", chain)
    if fingerprint:
        notice["client_fingerprint"] = [str(p) for p in fingerprint]
    return notice


def airbrake(errors: list[dict[str, Any]]) -> Notice:
    """An Airbrake v3 notice: ``errors[]`` outermost first, each backtrace innermost first."""
    chain: list[ExceptionInfo] = [
        {
            "type": e.get("type"),
            "message": e.get("message"),
            "frames": [
                frame(b.get("file"), b.get("function"), b.get("line"), b.get("column"))
                for b in e.get("backtrace") or []
            ],
        }
        for e in errors
    ]
    return _notice("airbrake", chain)


def _exceptionless_frame(raw: dict[str, Any]) -> Frame:
    module = ".".join(p for p in (raw.get("declaring_namespace"), raw.get("declaring_type")) if p)
    return frame(
        raw.get("file_name"),
        raw.get("name"),
        raw.get("line_number") or None,
        raw.get("column") or None,
        module=module or None,
    )


def exceptionless(error: dict[str, Any], stack: dict[str, Any] | None = None) -> Notice:
    """An Exceptionless event with ``@error`` (structured frames, ``inner`` chain) and maybe ``@stack``."""
    chain: list[ExceptionInfo] = []
    current: dict[str, Any] | None = error
    while current:
        chain.append(
            {
                "type": current.get("type"),
                "message": current.get("message"),
                "frames": [_exceptionless_frame(f) for f in current.get("stack_trace") or []],
            }
        )
        current = current.get("inner")
    notice = _notice("exceptionless", chain)
    if stack:
        data = stack.get("signature_data") or {}
        notice["client_fingerprint"] = (
            [f"{k}={data[k]}" for k in sorted(data)] if data else [f"title={stack['title']}"]
        )
    return notice


def exceptionless_simple(type_: str, message: str, stack_trace: str) -> Notice:
    """An Exceptionless event with ``@simple_error``: the stack is one string."""
    return _notice("exceptionless", [{"type": type_, "message": message, "frames": parse_text(stack_trace)}])


def hoptoad(xml: str) -> Notice:
    """A Hoptoad / Airbrake v2 XML notice, through the protocol's own decoder (no mapping assumed)."""
    from shared.protocols.hoptoad import parse_notice

    return parse_notice(xml.encode())
