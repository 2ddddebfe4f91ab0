"""Slow and vanishing uploads at the gateway (issue 13, findings 9 and 10, gateway side), on a real socket."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import pytest

from shared import web as shared_web


async def _open(gateway):
    return await asyncio.open_connection("127.0.0.1", gateway.server.port)


def _head(path: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("route", ["/v1/notices", "/notify", "/api/v2/events"])
async def test_a_trickling_body_is_answered_408_within_the_timeout(gateway, project, monkeypatch, route):
    monkeypatch.setattr(shared_web, "BODY_TIMEOUT", 1.0)
    reader, writer = await _open(gateway)
    auth = (
        f"Api-Key: {project.key}\r\n"
        if route != "/api/v2/events"
        else f"Authorization: Bearer {project.key}\r\n"
    )
    writer.write(_head(route, 1_000_000, auth) + b'{"mess')
    started = time.monotonic()

    async def trickle() -> None:
        for _ in range(20):  # 10 bytes every 0.5 s: never done within the timeout
            await asyncio.sleep(0.5)
            writer.write(b"0123456789")
            await writer.drain()

    feeder = asyncio.create_task(trickle())
    try:
        status_line = await asyncio.wait_for(reader.readline(), 15)
    finally:
        feeder.cancel()
        writer.close()
    assert b" 408 " in status_line, status_line
    assert time.monotonic() - started < 8


async def test_notify_without_a_key_reads_at_most_max_body_decompressed(gateway, settings):
    """/notify with the key only in the body: the inflation an unknown client gets is FAULTLINE_MAX_BODY."""
    import gzip

    bomb = gzip.compress(b'{"auth_token": "x", "pad": "' + b"a" * (settings.max_body + 10) + b'"}')
    resp = await gateway.post(
        "/notify", data=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )
    assert resp.status == 413


async def test_client_gone_mid_upload_is_499_not_500_and_not_logged_as_error(gateway, project, caplog):
    async def count(status: int) -> float:
        text = await (await gateway.get("/metrics")).text()
        m = re.search(rf'^\S*http_responses_total\{{status="{status}"\}} (\S+)$', text, re.M)
        return float(m.group(1)) if m else 0.0

    before_500, before_499 = await count(500), await count(499)
    caplog.set_level(logging.INFO)
    for route in ("/v1/notices", "/notify", "/api/v2/events"):
        reader, writer = await _open(gateway)
        writer.write(
            _head(route, 100_000, f"Api-Key: {project.key}\r\nAuthorization: Bearer {project.key}\r\n")
            + b'{"a'
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
    for _ in range(50):
        if await count(499) >= before_499 + 3:
            break
        await asyncio.sleep(0.1)
    assert await count(500) == before_500
    assert await count(499) >= before_499 + 3
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [
        r.getMessage() for r in caplog.records
    ]
