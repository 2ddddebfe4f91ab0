"""The gateway's route table: one entry per wire protocol module."""

from __future__ import annotations

from aiohttp import web

from services.gateway import airbrake, crashlog, exceptioner, exceptionless, sentry
from shared.web import health, root


def table() -> list[web.RouteDef]:
    return [
        web.get("/", root),
        web.get("/healthz", health),
        *exceptioner.routes(),
        *crashlog.routes(),
        *sentry.routes(),
        *airbrake.routes(),
        *exceptionless.routes(),
    ]
