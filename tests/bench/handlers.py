"""`python -m tests.bench.handlers [ROUNDS [PROTOCOL]] [--profile]`: what the gateway's own Python costs per request, in process.

Each protocol's benchmark request is built as an aiohttp request and dispatched through the real
gateway application (router, middleware, handler, answer object) with Redis replaced by a publisher
that answers at once; no HTTP parsing, no socket. Beside each figure: the same for a bare aiohttp
app whose handler reads the body and answers (what the ceiling process does at this level). The
differences are steady to a few per cent from run to run, where wrk's figures on this shared VM
move by ten: this is for choosing between two versions of the hot path, `make bench` for the record.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from services.gateway import app as gateway_app
from shared.keys import Credential, KeyCache, Project, hash_key
from shared.protocols.ingest import KEYS, PUBLISHER
from shared.settings import Settings
from tests.bench import payloads
from tests.bench.stack import Project as BenchProject

KEY = "bench-key-0123456789abcdef"
PROJECT_ID = 7
ROUNDS = 20_000


class _Publisher:
    """Answers every publish at once, as if Redis had taken the entries."""

    overloaded = False

    async def publish(self, entries: list[Any], *_: Any, **__: Any) -> list[bytes]:
        return [b"1-0"] * len(entries)


class _Transport:
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False


def _gateway() -> web.Application:
    settings = Settings.from_env(
        {"FAULTLINE_DATABASE_URL": "postgresql://unused/x", "FAULTLINE_REDIS_URL": "redis://unused"}
    )
    app = gateway_app.create_app(settings)
    app.on_startup.clear()
    app.cleanup_ctx.clear()
    cache = KeyCache(pool=None)  # type: ignore[arg-type]
    cache._keys[hash_key(KEY)] = Credential("client", Project(PROJECT_ID, "bench"))
    app[KEYS] = cache
    app[PUBLISHER] = _Publisher()  # type: ignore[assignment]
    app.freeze()
    return app


async def _read_and_answer(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=b"{}", status=201, content_type="application/json")


def _bare() -> web.Application:
    app = web.Application()
    app.add_routes([web.route("*", "/{tail:.*}", _read_and_answer)])
    app.freeze()
    return app


def _request(app: web.Application, req: payloads.Request, loop: asyncio.AbstractEventLoop) -> web.Request:
    from aiohttp.streams import StreamReader

    protocol = SimpleNamespace(
        transport=_Transport(),
        _reading_paused=False,
        max_field_size=8190,
        max_line_length=8190,
        max_headers=128,
        resume_reading=lambda **_: None,
        pause_reading=lambda: None,
        ssl_context=None,
        peername=("127.0.0.1", 40000),
        sockname=("127.0.0.1", 8000),
    )
    payload = StreamReader(protocol, 1 << 16, loop=loop)  # type: ignore[arg-type]
    payload.feed_data(req.body)
    payload.feed_eof()
    headers = CIMultiDict(req.headers)
    headers["Content-Length"] = str(len(req.body))
    return make_mocked_request(
        req.method,
        req.path,
        headers,
        app=app,
        payload=payload,
        transport=_Transport(),
        protocol=protocol,
        writer=SimpleNamespace(),
        loop=loop,
        client_max_size=1 << 20,
    )


async def _time(app: web.Application, reqs: list[payloads.Request], rounds: int) -> tuple[float, int]:
    loop = asyncio.get_running_loop()
    built = [_request(app, reqs[i % len(reqs)], loop) for i in range(rounds)]
    status = 0
    start = time.perf_counter()
    for request in built:
        status = (await app._handle(request)).status
    return (time.perf_counter() - start) / rounds * 1e6, status


async def main(rounds: int, only: str | None) -> None:
    gateway, bare = _gateway(), _bare()
    project = BenchProject(id=PROJECT_ID, key=KEY)
    for proto in payloads.PROTOCOLS:
        if only and proto.name != only:
            continue
        reqs = payloads.requests(proto.shapes[0], project, 50, proto.per_request)
        for _ in range(2):  # warm
            await _time(gateway, reqs, 500)
            await _time(bare, reqs, 500)
        g = [await _time(gateway, reqs, rounds) for _ in range(3)]
        b = [await _time(bare, reqs, rounds) for _ in range(3)]
        gus, bus = statistics.median(x for x, _ in g), statistics.median(x for x, _ in b)
        print(
            f"{proto.name:14s} gateway {gus:6.2f} µs  bare {bus:5.2f} µs  own {gus - bus:6.2f} µs  (HTTP {g[0][1]})"
        )


async def profiled(name: str, rounds: int) -> None:
    """cProfile of one protocol's dispatch, the 30 dearest functions by their own time."""
    import cProfile
    import pstats

    gateway = _gateway()
    proto = next(p for p in payloads.PROTOCOLS if p.name == name)
    reqs = payloads.requests(proto.shapes[0], BenchProject(id=PROJECT_ID, key=KEY), 50, proto.per_request)
    await _time(gateway, reqs, 500)
    loop = asyncio.get_running_loop()
    built = [_request(gateway, reqs[i % len(reqs)], loop) for i in range(rounds)]
    prof = cProfile.Profile()
    prof.enable()
    for request in built:
        await gateway._handle(request)
    prof.disable()
    stats = pstats.Stats(prof)
    print(f"{sum(v[1] for v in stats.stats.values()) / rounds:.0f} calls per request")  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0]) if args else ROUNDS
    if "--profile" in sys.argv:
        asyncio.run(profiled(args[1], count))
    else:
        asyncio.run(main(count, args[1] if len(args) > 1 else None))
