"""A real webhook receiver for tests: an aiohttp server on 127.0.0.1 that records every request.

`answer` decides each reply (default 200); `fail_first` makes the first N requests of each delivery
id answer 500. `wait_for(n)` polls with a deadline until n requests arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def delivery(self) -> str:
        return self.headers["Faultline-Delivery"]

    @property
    def event(self) -> str:
        return self.headers["Faultline-Event"]


@dataclass
class Receiver:
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    fail_first: int = 0
    status: int = 200
    before_answer: Callable[[Received], Awaitable[None]] | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    _seen: dict[str, int] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        got = Received(dict(request.headers), await request.read())
        self.requests.append(got)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.before_answer is not None:
                await self.before_answer(got)
            else:
                await asyncio.sleep(0.01)  # a receiver's work: lets concurrent requests overlap
            n = self._seen[got.delivery] = self._seen.get(got.delivery, 0) + 1
            if n <= self.fail_first:
                return web.Response(status=500, text="not yet")
            return web.Response(status=self.status, text="ok")
        finally:
            self.in_flight -= 1

    def of(self, event: str) -> list[Received]:
        return [r for r in self.requests if r.event == event]

    async def wait_for(
        self, n: int, within: float = 15.0, pump: Callable[[], Awaitable[Any]] | None = None
    ) -> None:
        """Until `n` requests arrived (calling `pump`, e.g. a delivery step, between looks)."""
        deadline = time.monotonic() + within
        while len(self.requests) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.requests)} of {n} webhook requests arrived in {within}s")
            if pump is not None:
                await pump()
            await asyncio.sleep(0.02)


@asynccontextmanager
async def receiving(path: str = "/hook") -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post(path, receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}{path}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
