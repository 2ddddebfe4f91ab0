"""The gateway's route table: every registered protocol's routes."""

from __future__ import annotations

from aiohttp import web

from shared.protocols.registry import PROTOCOLS
from shared.web import health, root


def table() -> list[web.RouteDef]:
    return [web.get("/", root), web.get("/healthz", health), *(r for p in PROTOCOLS for r in p.routes())]
