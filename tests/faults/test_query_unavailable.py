"""The query service's answers when things go wrong around it (issue 13, finding 10, query side).

A real `python -m services.query` process on a PostgreSQL this test starts and stops itself:
- PostgreSQL down: 503 with Retry-After on every database route (never 500), and back to 200 when
  PostgreSQL returns;
- a client that disconnects mid-upload: no ERROR line, no traceback, no 500 in /metrics;
- a header line aiohttp cannot parse: 400 without the line (and its credential) in the body or log.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from shared import db, keys
from shared.embedded import start_postgres
from shared.settings import Settings
from tests.faults.procs import Service, service_env, wait_http

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

# Routes that read or write PostgreSQL, each as the request a dashboard would send.
DATABASE_ROUTES = [
    ("GET", "/v1/errors", None),
    ("GET", "/v1/errors/1", None),
    ("GET", "/v1/errors/1/stats", None),
    ("GET", "/v1/errors/1/notices", None),
    ("GET", "/v1/deploys", None),
    ("POST", "/v1/deploys", {"environment": "production", "project_id": 1}),
    ("GET", "/v1/stats", None),
    ("GET", "/v1/projects", None),
    ("GET", "/api/v2/projects/1/config", None),
    ("GET", "/api/locate/0190a000-0000-7000-8000-000000000000", None),
]


async def _raw(port: int, request: bytes, read: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10) if read else b""
    writer.close()
    await writer.wait_closed()
    return answer


def _log_entries(service: Service) -> list[dict[str, object]]:
    out = []
    for line in service.text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = {"level": "raw", "msg": line}
        if isinstance(entry, dict):
            out.append(entry)
    return out


def _metric(text: str, status: int) -> float:
    m = re.search(rf'^\S*http_responses_total\{{status="{status}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture
async def own_stack(settings: Settings, tmp_path: Path) -> AsyncIterator[dict[str, object]]:
    """This test's own PostgreSQL (it gets stopped) and a query process on it."""
    assert settings.redis_url
    pg = start_postgres(tmp_path / "pg")
    conn = await asyncpg.connect(pg.url)
    try:
        await db.migrate(conn)
        await keys.create_project(conn, "unavailable")
        token = await keys.create_user_token(conn, "unavailable")
    finally:
        await conn.close()
    env = service_env(pg.url, settings.redis_url)
    query = Service("services.query", env, tmp_path / "query.log").start()
    port = int(env["FAULTLINE_QUERY_PORT"])
    state: dict[str, object] = {"pg": pg, "query": query, "port": port, "token": token, "tmp": tmp_path}
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        yield state
    finally:
        query.stop()
        for server in {id(pg): pg, id(state["pg"]): state["pg"]}.values():
            server.stop()  # type: ignore[attr-defined]


async def test_query_answers_503_while_postgres_is_down_and_recovers(own_stack):
    port: int = own_stack["port"]  # type: ignore[assignment]
    token: str = own_stack["token"]  # type: ignore[assignment]
    query: Service = own_stack["query"]  # type: ignore[assignment]
    base = f"http://127.0.0.1:{port}"
    auth = {"Api-Key": token}

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        async with s.get(f"{base}/v1/errors", headers=auth) as r:
            assert r.status == 200

        # A client that goes away mid-upload: headers promise 100 kB, 20 bytes come, then the socket closes.
        head = (
            f"POST /v1/deploys HTTP/1.1\r\nHost: x\r\nApi-Key: {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        ).encode()
        for _ in range(3):
            await _raw(port, head + b'{"environment": "pr', read=False)
        # A header line the HTTP parser refuses, with the credential in it.
        answer = await _raw(
            port, f"GET /v1/errors HTTP/1.1\r\nHost: x\r\nApi-Key: {token}\x01\r\n\r\n".encode()
        )
        assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n", 1)[0]
        assert token.encode() not in answer
        answer = await _raw(port, f"GET /v1/errors HTTP/1.1\r\nHost: x\r\n{token}\r\n\r\n".encode())
        assert b" 400 " in answer.split(b"\r\n", 1)[0] and token.encode() not in answer

        own_stack["pg"].stop()  # type: ignore[attr-defined]
        for method, path, body in DATABASE_ROUTES:
            t0 = time.monotonic()
            async with s.request(method, f"{base}{path}", json=body, headers=auth) as r:
                took = time.monotonic() - t0
                text = await r.text()
                assert r.status == 503, (method, path, r.status, text)
                assert r.headers["Retry-After"].isdigit(), (method, path)
                assert "database" in json.loads(text)["message"]
            assert took < 7, (method, path, took)  # the pool's connect timeout is 5 s
        async with s.get(f"{base}/readyz") as r:
            assert r.status == 503
        async with s.get(f"{base}/healthz") as r:
            assert r.status == 200  # alive: the supervisor must not restart it for this

        restarted = start_postgres(own_stack["tmp"] / "pg", port=own_stack["pg"].port)  # type: ignore[attr-defined,operator]
        own_stack["pg"] = restarted
        deadline = time.monotonic() + 20
        status = 0
        while time.monotonic() < deadline:
            async with s.get(f"{base}/v1/errors", headers=auth) as r:
                status = r.status
            if status == 200:
                break
            assert status == 503
            await asyncio.sleep(0.2)
        assert status == 200, "the query service did not recover when PostgreSQL came back"

        async with s.get(f"{base}/metrics") as r:
            metrics = await r.text()
    assert _metric(metrics, 500) == 0, metrics
    assert _metric(metrics, 499) >= 1  # the disconnects were seen, and counted as such
    assert _metric(metrics, 503) >= len(DATABASE_ROUTES)
    entries = _log_entries(query)
    # No ERROR line at all; no traceback from the service or aiohttp (asyncpg's own pool task warns,
    # with its traceback, each time it fails to reconnect its idle connection while PostgreSQL is down).
    bad = [
        e
        for e in entries
        if e.get("level") in ("error", "critical", "raw") or "exc" in e and e.get("logger") != "asyncpg.pool"
    ]
    assert not bad, json.dumps(bad, indent=1)[:3000]
    assert token not in query.text()
    assert any("client closed" in str(e.get("msg")) for e in entries)
    assert any("malformed HTTP request" in str(e.get("msg")) for e in entries)
