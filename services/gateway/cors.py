"""CORS on the gateway's ingest routes, so browser SDKs on any page can report (issue 15).

Browsers preflight a request with non-simple headers (`@exceptionless/browser` sends `Authorization`
and JSON): `OPTIONS` is answered here for every ingest route, for any origin, since a preflight
carries no key. Every answer of an ingest route to a request with an `Origin` then carries
`Access-Control-Allow-Origin` (else the browser hides it and the SDK records a network failure) and
exposes the headers the SDKs read. Whether the origin may submit to the project is the project's
`allowed_origins` setting, checked with the key (shared.protocols.ingest.authenticate: 403).
No credentials mode: ingest keys travel in headers or the query, never in cookies.
Only the routes given to `install` get any of this; the query service gets none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from aiohttp import web

from services.gateway import deploys
from shared.protocols.registry import PROTOCOLS
from shared.web import Handler

ALLOW_HEADERS = ", ".join(
    (
        "Accept",
        "Authorization",
        "Content-Type",
        "Content-Encoding",
        "Api-Key",
        "X-Sentry-Auth",
        "X-Airbrake-Token",
        "X-Exceptionless-Client",
        "X-Requested-With",
        "sentry-trace",
        "baggage",
    )
)
EXPOSE_HEADERS = ", ".join(
    (
        "X-Exceptionless-ConfigVersion",
        "Retry-After",
        "X-Sentry-Rate-Limits",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Delay",
        "X-Request-Id",
        "Location",
    )
)
MAX_AGE = "7200"  # Chromium's cap
CORS_PATHS = web.AppKey("cors_paths", frozenset)


def _paths(routes: Iterable[web.AbstractRouteDef]) -> frozenset[str]:
    """The routes' paths as their resources' `canonical` spells them (`{id:\\d+}` -> `{id}`)."""
    return frozenset(
        re.sub(r"\{(\w+):.*?\}(?=/|$)", r"{\1}", r.path) for r in routes if isinstance(r, web.RouteDef)
    )


def _preflight(methods: frozenset[str]) -> Handler:
    """The `OPTIONS` answer of one ingest path (a route, not a middleware: other requests pay nothing)."""
    allow = ", ".join(sorted(methods | {"OPTIONS"}))

    async def preflight(request: web.Request) -> web.StreamResponse:
        headers = {"Allow": allow, "Access-Control-Allow-Methods": allow}
        if "Origin" in request.headers:
            headers.update(
                {
                    "Access-Control-Allow-Origin": request.headers["Origin"],
                    "Access-Control-Allow-Headers": ALLOW_HEADERS,
                    "Access-Control-Max-Age": MAX_AGE,
                    "Vary": "Origin",
                }
            )
        return web.Response(status=200, headers=headers)

    return preflight


def finish(request: web.Request, response: web.StreamResponse) -> None:
    """The CORS headers of an ingest route's answer to a browser (the routes' guard calls it)."""
    origin = request.headers.get("Origin")
    if not origin or "Access-Control-Allow-Origin" in response.headers:
        return
    resource = request.match_info.route.resource
    if resource is None or resource.canonical not in request.app.get(CORS_PATHS, ()):
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    response.headers.add("Vary", "Origin")


def ingest_routes() -> list[web.AbstractRouteDef]:
    """Every route a browser SDK may call: each protocol's, and Airbrake's deploys."""
    return [*(r for p in PROTOCOLS for r in p.routes()), *deploys.routes()]


def install(
    app: web.Application,
    routes: Iterable[web.AbstractRouteDef] | None = None,
    wrap: Callable[[list[web.RouteDef]], list[web.RouteDef]] = list,
) -> None:
    """CORS for `routes` (default: the ingest ones) of the gateway app: their preflights (through
    `wrap`, the app's `shared.web.guard`) and the paths `finish` adds headers on, which the guard
    calls on every answer."""
    chosen = [r for r in (ingest_routes() if routes is None else routes) if isinstance(r, web.RouteDef)]
    app[CORS_PATHS] = _paths(chosen)
    methods: dict[str, set[str]] = {}
    for r in chosen:
        methods.setdefault(r.path, set()).add(r.method)
    app.add_routes(wrap([web.options(path, _preflight(frozenset(m))) for path, m in methods.items()]))
