"""The ceiling for one gateway process: bare aiohttp on uvloop that reads the body and answers 201.

Run as `python -m tests.bench.ceiling PORT`. It does what every gateway request must do anyway (parse
HTTP, read the body, send a JSON answer of the same size) and nothing else, so gateway/ceiling is the
share of one process's HTTP capacity the gateway keeps while doing its real work.
"""

from __future__ import annotations

import sys

from aiohttp import web

from shared.runtime import use_uvloop

ANSWER = (
    b'{"id":"0190c2a4-0000-7000-8000-000000000000","error_id":1234567890123,'
    b'"message":"RuntimeError: undefined value","created_at":"2026-01-01T00:00:00Z",'
    b'"updated_at":"2026-01-01T00:00:00Z"}'
)


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, status=201, content_type="application/json")


async def health(_: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


def main() -> None:
    use_uvloop()
    app = web.Application(client_max_size=1 << 20)
    app.add_routes([web.get("/healthz", health), web.post("/{tail:.*}", accept)])
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, reuse_port=True)


if __name__ == "__main__":
    main()
