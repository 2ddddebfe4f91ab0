"""The interface every wire protocol follows, and its domain exceptions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from shared.model import Notice
from shared.stream import RawNotice

Decoded = tuple[Notice, bytes]  # a notice, and the bytes it came from (stored where `keeps_raw`)


class Undecodable(ValueError):
    """A queued body that holds no notice at all: the worker dead-letters it with this reason."""


@dataclass(frozen=True, slots=True)
class Protocol:
    """One wire protocol: its name (as stored on notices), the gateway's routes, the worker's decoder.

    `decode` is pure and total (notices in the order the body holds them): a value it cannot use becomes null, clamped or truncated (and says so
    in the notice's `notes`); only a body holding no notice raises Undecodable.

    `keeps_raw`: whether a read answers with the body as it was submitted (CrashLog's `/api/locate`
    payload); only then is each notice's raw payload scrubbed and stored beside the canonical notice.
    """

    name: str
    routes: Callable[[], list[web.RouteDef]]
    decode: Callable[[RawNotice], list[Decoded]]
    keeps_raw: bool = False

    def __post_init__(self) -> None:
        # Every decoder's notices pass bounds.finish: whatever a body held, the notice is storable.
        object.__setattr__(self, "decode", _finished(self.decode))


def _finished(decode: Callable[[RawNotice], list[Decoded]]) -> Callable[[RawNotice], list[Decoded]]:
    from shared.protocols.bounds import finish

    def run(entry: RawNotice) -> list[Decoded]:
        return [(finish(notice), raw) for notice, raw in decode(entry)]

    return run


def note(notice: Notice, text: str) -> None:
    """Record on the notice what decoding had to drop or change."""
    notes = notice.setdefault("notes", [])  # type: ignore[typeddict-item]
    if len(notes) < 50 and text not in notes:
        notes.append(text)
