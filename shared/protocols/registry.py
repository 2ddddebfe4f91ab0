"""Every protocol the service speaks: a new one is its own module and one line here."""

from __future__ import annotations

from shared.protocols import airbrake, crashlog, exceptioner, exceptionless, hoptoad, sentry
from shared.protocols.base import Protocol

PROTOCOLS: tuple[Protocol, ...] = (
    exceptioner.PROTOCOL,
    crashlog.PROTOCOL,
    sentry.PROTOCOL,
    airbrake.PROTOCOL,
    exceptionless.PROTOCOL,
    hoptoad.PROTOCOL,
)
BY_NAME: dict[str, Protocol] = {p.name: p for p in PROTOCOLS}
