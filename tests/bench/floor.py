"""The queueing floor for one gateway process: bare aiohttp that checks the key from memory, reads
the body, packs it with msgpack and queues it through the gateway's own `Publisher`, then answers.

Run as `python -m tests.bench.floor PORT KEY PROJECT_ID` with the stack's FAULTLINE_REDIS_URL,
FAULTLINE_STREAM_PREFIX and FAULTLINE_STREAM_SHARDS. It is what any gateway of this architecture
must do per request (an answer only after Redis has the entry), so floor/ceiling is the best
ratio a real gateway in Python on this stack can reach, and gateway/floor what its own work costs.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator

import msgpack
from aiohttp import web

from shared.runtime import use_uvloop
from shared.stream import Layout, Publisher, connect
from tests.bench.ceiling import ANSWER, health

PUBLISHER = web.AppKey("publisher", Publisher)
KEYS = web.AppKey("keys", dict)


async def accept(request: web.Request) -> web.Response:
    key = request.headers.get("Api-Key")
    if key not in request.app[KEYS]:
        return web.Response(status=401)
    body = await request.read()
    entry = {b"m": msgpack.packb([2, "floor", time.time(), body])}
    await request.app[PUBLISHER].publish([entry], project_id=request.app[KEYS][key])
    return web.Response(body=ANSWER, status=201, content_type="application/json")


async def publisher_ctx(app: web.Application) -> AsyncIterator[None]:
    client = connect(os.environ["FAULTLINE_REDIS_URL"], socket_timeout=5, socket_connect_timeout=5)
    layout = Layout(os.environ["FAULTLINE_STREAM_PREFIX"], int(os.environ["FAULTLINE_STREAM_SHARDS"]))
    app[PUBLISHER] = publisher = Publisher(client, layout, 1 << 40)
    task = asyncio.create_task(publisher.run())
    yield
    task.cancel()
    await publisher.aclose()
    await client.aclose()


def main() -> None:
    use_uvloop()
    app = web.Application(client_max_size=1 << 20)
    app[KEYS] = {sys.argv[2]: int(sys.argv[3])}
    app.cleanup_ctx.append(publisher_ctx)
    app.add_routes([web.get("/healthz", health), web.post("/{tail:.*}", accept)])
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, reuse_port=True)


if __name__ == "__main__":
    main()
