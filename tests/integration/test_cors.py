"""CORS at the HTTP level (issue 15): preflights on every ingest route, headers on the answers, the
per-project `allowed_origins` setting, and a query service that stays closed to other origins."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from services.gateway import cors
from tests.conftest import ProjectInfo
from tests.integration.test_exceptioner import notice

ORIGIN = "https://shop.example.com"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}
CHANGE_WITHIN = 5.0  # a settings change reaches the gateway by notification (milliseconds); generous


def concrete(path: str, project_id: int) -> str:
    return (
        path.replace("{project_id:\\d+}", str(project_id))
        .replace("{project_id}", str(project_id))
        .replace("{reference_id:[A-Za-z0-9-]{8,100}}", "abcdef1234")
        .replace("{type}", "log")
    )


async def test_every_ingest_route_answers_a_preflight(gateway, project: ProjectInfo):
    routes = cors.ingest_routes()
    assert len(routes) >= 19  # every protocol's routes and Airbrake's deploys
    for route in routes:
        path = concrete(route.path, project.id)  # type: ignore[attr-defined]
        resp = await gateway.options(path, headers=PREFLIGHT)
        assert resp.status == 200, (path, resp.status)
        h = resp.headers
        assert h["Access-Control-Allow-Origin"] == ORIGIN, path
        assert route.method in h["Access-Control-Allow-Methods"], path  # type: ignore[attr-defined]
        allowed = {v.strip().lower() for v in h["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type", "x-sentry-auth", "content-encoding"} <= allowed, path
        assert int(h["Access-Control-Max-Age"]) > 0
        assert "Access-Control-Allow-Credentials" not in h  # no cookies on ingest


async def test_operational_routes_and_the_query_service_are_not_opened(gateway, query, user_token):
    for path in ("/healthz", "/metrics", "/openapi.json"):
        resp = await gateway.options(path, headers=PREFLIGHT)
        assert resp.status == 405 and "Access-Control-Allow-Origin" not in resp.headers, path
        resp = await gateway.get(path, headers={"Origin": ORIGIN})
        assert "Access-Control-Allow-Origin" not in resp.headers, path
    for path in ("/v1/errors", "/v1/projects", "/v1/deploys"):
        resp = await query.options(path, headers=PREFLIGHT)
        assert "Access-Control-Allow-Origin" not in resp.headers, path
        resp = await query.get(path, headers={"Origin": ORIGIN, "Api-Key": user_token})
        assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers, path


async def test_answers_to_a_page_carry_the_origin_and_expose_what_sdks_read(gateway, project: ProjectInfo):
    resp = await gateway.post(
        "/v1/notices", data=orjson.dumps(notice()), headers={"Api-Key": project.key, "Origin": ORIGIN}
    )
    assert resp.status == 201
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    exposed = {v.strip() for v in resp.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"X-Exceptionless-ConfigVersion", "Retry-After", "X-Sentry-Rate-Limits"} <= exposed
    assert "Origin" in resp.headers.getall("Vary")
    assert "Access-Control-Allow-Credentials" not in resp.headers
    # Refusals too, so an SDK reads the status instead of a network failure.
    resp = await gateway.post("/v1/notices", data=orjson.dumps(notice()), headers={"Origin": ORIGIN})
    assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    # Exceptionless: the config version header a browser client may read.
    resp = await gateway.post(
        "/api/v2/events",
        data=b'[{"type": "log", "message": "cors"}]',
        headers={
            "Authorization": f"Bearer {project.key}",
            "Origin": ORIGIN,
            "Content-Type": "application/json",
        },
    )
    assert resp.status == 202 and "X-Exceptionless-ConfigVersion" in resp.headers
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN


async def _status_with_origin(gateway, project: ProjectInfo, origin: str | None) -> int:
    headers = {"Api-Key": project.key, **({"Origin": origin} if origin else {})}
    resp = await gateway.post("/v1/notices", data=orjson.dumps(notice()), headers=headers)
    return resp.status


async def _until(gateway, project: ProjectInfo, origin: str, status: int) -> None:
    deadline = time.monotonic() + CHANGE_WITHIN
    while (got := await _status_with_origin(gateway, project, origin)) != status:
        assert time.monotonic() < deadline, f"{origin}: still {got}, want {status}"
        await asyncio.sleep(0.05)


async def test_allowed_origins_is_a_project_setting(gateway, query, project: ProjectInfo, user_token):
    auth = {"Api-Key": user_token}
    url = f"/v1/projects/{project.id}"
    assert await _status_with_origin(gateway, project, "https://anything.example") == 201  # default: any
    allowed = ["https://shop.example.com", "https://*.example.org", "http://127.0.0.1:3000"]
    resp = await query.patch(url, json={"settings": {"allowed_origins": allowed}}, headers=auth)
    assert resp.status == 200 and (await resp.json())["settings"]["allowed_origins"] == allowed
    await _until(gateway, project, "https://evil.example", 403)
    for origin in ("https://shop.example.com", "https://eu.app.example.org", "http://127.0.0.1:3000"):
        assert await _status_with_origin(gateway, project, origin) == 201, origin
    for origin in ("http://shop.example.com", "https://example.org", "http://127.0.0.1:3001"):
        assert await _status_with_origin(gateway, project, origin) == 403, origin
    assert await _status_with_origin(gateway, project, None) == 201  # server-side SDKs send no Origin
    resp = await gateway.post(
        "/v1/notices",
        data=orjson.dumps(notice()),
        headers={"Api-Key": project.key, "Origin": "https://evil.example"},
    )
    assert "not allowed" in (await resp.json())["message"]
    # null removes the setting: any origin again.
    resp = await query.patch(url, json={"settings": {"allowed_origins": None}}, headers=auth)
    assert resp.status == 200 and "allowed_origins" not in (await resp.json())["settings"]
    await _until(gateway, project, "https://evil.example", 201)


@pytest.mark.parametrize(
    "value",
    [
        "https://shop.example.com",
        ["ftp://shop.example.com"],
        ["https://shop.example.com/path"],
        ["shop.example.com"],
        [""],
        [5],
        ["https://*"],
        ["https://a.example"] * 101,
    ],
)
async def test_allowed_origins_refuses_what_is_no_origin(query, project: ProjectInfo, user_token, value):
    resp = await query.patch(
        f"/v1/projects/{project.id}",
        json={"settings": {"allowed_origins": value}},
        headers={"Api-Key": user_token},
    )
    assert resp.status == 422
    assert (await resp.json())["errors"][0]["field"] == "settings.allowed_origins"
