"""The canonical notice: what every wire protocol is turned into before it is queued.

Everything here is plain dicts (TypedDicts) so a notice round-trips through msgpack unchanged and
costs nothing to build on the gateway's hot path.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

import orjson


class Frame(TypedDict):
    """One stack frame, whatever language or protocol it came from."""

    file: str | None  # path or file name as the client sent it ([PROJECT_ROOT] kept)
    module: str | None  # module / namespace / class where the language has one
    function: str | None
    line: int | None
    column: int | None
    in_app: bool | None  # None: the client did not say; decided by frames.mark_in_app
    context_line: NotRequired[str | None]
    pre_context: NotRequired[list[str]]
    post_context: NotRequired[list[str]]
    raw: NotRequired[str]  # the original text line, where the frame was parsed from text


class ExceptionInfo(TypedDict):
    """One exception of a chain; ``frames`` run innermost (crashing) frame first."""

    type: str | None
    message: str | None
    frames: list[Frame]


class Notice(TypedDict):
    """The canonical notice. Optional parts are present only when the client sent them."""

    protocol: str  # exceptioner | exceptionless | crashlog | sentry | airbrake
    type: str  # error | log | usage | 404 | session | ...
    exception: str | None  # class of the outermost exception
    message: str | None
    environment: str  # "" when the client gave none
    occurred_at: float | None  # epoch seconds, UTC
    exceptions: list[ExceptionInfo]  # outermost first
    file: NotRequired[str | None]
    params: NotRequired[dict[str, Any]]
    session: NotRequired[dict[str, Any]]
    cgi: NotRequired[dict[str, Any]]  # request environment (HTTP_* etc.)
    context: NotRequired[dict[str, Any]]  # hostname, user, controller, ... as sent
    user: NotRequired[dict[str, Any]]
    hostname: NotRequired[str | None]
    release: NotRequired[str | None]
    level: NotRequired[str | None]
    source: NotRequired[str | None]
    reference_id: NotRequired[str | None]
    tags: NotRequired[list[str]]
    data: NotRequired[dict[str, Any]]
    client_fingerprint: NotRequired[list[str]]  # Sentry-style list or Exceptionless @stack data
    notes: NotRequired[list[str]]  # what decoding dropped, clamped or truncated


def frame(
    file: str | None = None,
    function: str | None = None,
    line: int | None = None,
    column: int | None = None,
    module: str | None = None,
    in_app: bool | None = None,
) -> Frame:
    """Build a Frame with every key present."""
    return {
        "file": file,
        "module": module,
        "function": function,
        "line": line,
        "column": column,
        "in_app": in_app,
    }


MEMO_STACK_BYTES = 8192  # stacks larger than this as JSON are not remembered (most are 1-10 KB)


def stack_key(value: Any) -> bytes | None:
    """A stack's name for the memos of its per-stack work (scrubbing, grouping): its JSON, which
    costs a fraction of walking it (5 frames: ~0.7 against 4-5 us). None for a value that is not
    the canonical shape (JSON cannot hold it) or is larger than MEMO_STACK_BYTES, which bounds what
    a memo of 1,024 stacks keeps (500 frames of 50 context lines would be ~1 MB each)."""
    try:
        key = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        return None
    return key if len(key) <= MEMO_STACK_BYTES else None
