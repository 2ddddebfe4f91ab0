"""Grouping: which notices are the same error.

Version 1 rules, in order:
1. A client-sent fingerprint (Sentry list, Exceptionless ``@stack``) wins; ``{{ default }}``
   in it stands for what the rules below would have produced.
2. With a usable stack: every exception class of the chain plus, per exception, the app frames'
   file name (or module) and normalised function. Library frames count only when no app frame
   exists. Line and column numbers never count, so moving code does not split an error.
3. Without a stack: exception class + the message with its variable parts replaced.
4. Non-error events (logs, feature usage, 404s, sessions): type + source + (for logs) message.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from shared.frames import mark_in_app, normalize_file, normalize_function
from shared.model import ExceptionInfo, Frame, Notice

VERSION = 1

_PARAMS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), r)
    for p, r in (
        (r"\b[\w.+-]+@[\w-]+(\.[\w-]+)+\b", "<email>"),
        (r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", "<url>"),
        (r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<uuid>"),
        (r"\b\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(z|[+-]\d{2}:?\d{2})?)?\b", "<date>"),
        (r"\b\d{1,2}:\d{2}:\d{2}(\.\d+)?\b", "<time>"),
        (r"\b(\d{1,3}\.){3}\d{1,3}(:\d+)?\b", "<ip>"),
        (r"\b([0-9a-f]{1,4}:){4,7}[0-9a-f]{1,4}\b", "<ip>"),
        (r"\b0x[0-9a-f]+\b", "<hex>"),
        (r"\b[0-9a-f]{16,}\b", "<hex>"),
        (r"'[^'\n]{0,200}'|\"[^\"\n]{0,200}\"|`[^`\n]{0,200}`", "<str>"),
        (r"\b\d+(\.\d+)?\b", "<num>"),
    )
)


def parameterize(message: str | None) -> str:
    """The message with numbers, ids, addresses, quoted values, ... replaced by placeholders."""
    if not message:
        return ""
    text = message.strip().splitlines()[0][:1000] if message.strip() else ""
    for pattern, repl in _PARAMS:
        text = pattern.sub(repl, text)
    return text


def _frame_key(f: Frame) -> str | None:
    fn = normalize_function(f.get("function"))
    path = normalize_file(f.get("file"))
    where = path.rsplit("/", 1)[-1] if path else f.get("module")
    if not fn and not where:
        return None
    return f"{where or ''}:{fn or ''}"


def _stack_parts(exc: ExceptionInfo, app: tuple[str, ...], lib: tuple[str, ...]) -> list[str]:
    frames = mark_in_app(exc["frames"], app, lib)
    chosen = [f for f in frames if f["in_app"]] or frames
    return [k for k in map(_frame_key, chosen) if k]


def default_parts(
    notice: Notice, app_patterns: tuple[str, ...] = (), library_patterns: tuple[str, ...] = ()
) -> list[str]:
    """The components rules 2-4 produce for a notice."""
    kind = notice.get("type") or "error"
    if kind != "error":
        parts = [kind, notice.get("source") or ""]
        if kind == "log" or not parts[1]:
            parts.append(parameterize(notice.get("message")))
        return parts
    chain = notice.get("exceptions") or []
    parts: list[str] = []
    has_stack = False
    for exc in chain:
        parts.append(exc.get("type") or "")
        stack = _stack_parts(exc, app_patterns, library_patterns)
        has_stack = has_stack or bool(stack)
        parts.extend(stack)
    if not has_stack:
        first = chain[0] if chain else None
        cls = (first and first.get("type")) or notice.get("exception") or ""
        msg = (first and first.get("message")) or notice.get("message")
        parts = [cls, parameterize(msg)]
    return parts


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha1("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def fingerprint(
    notice: Notice, app_patterns: tuple[str, ...] = (), library_patterns: tuple[str, ...] = ()
) -> str:
    """The 40-hex SHA-1 that decides which error a notice belongs to."""
    client = notice.get("client_fingerprint")
    if client:
        expanded: list[str] = []
        for item in client:
            if item.strip() in ("{{ default }}", "{{default}}"):
                expanded.extend(default_parts(notice, app_patterns, library_patterns))
            else:
                expanded.append(str(item))
        return _digest(["client", *expanded])
    return _digest(default_parts(notice, app_patterns, library_patterns))
