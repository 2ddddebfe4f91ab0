"""Rate limits shared by all gateway processes, and project settings that configure them."""

from __future__ import annotations

from tests.conftest import reload_keys
from tests.integration.test_exceptioner import notice


async def test_rate_limit_per_project_answers_429_with_retry_headers(gateway, query, project, user_token):
    auth = {"Api-Key": user_token}
    resp = await query.patch(
        f"/v1/projects/{project.id}", json={"settings": {"rate_limit_per_minute": 3}}, headers=auth
    )
    assert resp.status == 200
    assert (await resp.json())["settings"]["rate_limit_per_minute"] == 3
    await reload_keys(gateway, query)
    statuses = []
    for _ in range(5):
        resp = await gateway.post("/v1/notices", json=notice(), headers={"Api-Key": project.key})
        statuses.append(resp.status)
    assert statuses == [201, 201, 201, 429, 429]
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert resp.headers["X-RateLimit-Limit"] == "3" and resp.headers["X-RateLimit-Remaining"] == "0"
    assert resp.headers["X-RateLimit-Delay"] == resp.headers["Retry-After"]
    assert resp.headers["X-Sentry-Rate-Limits"].startswith(resp.headers["Retry-After"] + ":")
    assert "Rate limit" in (await resp.json())["message"]

    # Removing the setting lifts the limit.
    resp = await query.patch(
        f"/v1/projects/{project.id}", json={"settings": {"rate_limit_per_minute": None}}, headers=auth
    )
    assert "rate_limit_per_minute" not in (await resp.json())["settings"]
    await reload_keys(gateway, query)
    resp = await gateway.post("/v1/notices", json=notice(), headers={"Api-Key": project.key})
    assert resp.status == 201


async def test_rate_limit_is_shared_between_gateway_processes(gateway, query, project, user_token, settings):
    """Two gateway apps (as two processes would) draw from the same Redis counter."""
    from aiohttp.test_utils import TestClient, TestServer

    from services.gateway.app import create_app

    await query.patch(
        f"/v1/projects/{project.id}",
        json={"settings": {"rate_limit_per_minute": 4}},
        headers={"Api-Key": user_token},
    )
    second = TestClient(TestServer(create_app(settings)))
    await second.start_server()
    try:
        await reload_keys(gateway, query, second)
        statuses = []
        for client in (gateway, second, gateway, second, gateway, second):
            resp = await client.post("/v1/notices", json=notice(), headers={"Api-Key": project.key})
            statuses.append(resp.status)
        assert statuses == [201, 201, 201, 201, 429, 429]
    finally:
        await second.close()


async def test_project_settings_validation_and_scope(query, project, user_token):
    auth = {"Api-Key": user_token}
    for bad, field in (
        ({"settings": {"rate_limit_per_minute": 0}}, "settings.rate_limit_per_minute"),
        ({"settings": {"rate_limit_per_minute": "10"}}, "settings.rate_limit_per_minute"),
        ({"settings": {"app_patterns": "app/*"}}, "settings.app_patterns"),
        ({"settings": {"nonsense": 1}}, "settings.nonsense"),
        ({"settings": []}, "settings"),
        ({"name": ""}, "name"),
    ):
        resp = await query.patch(f"/v1/projects/{project.id}", json=bad, headers=auth)
        assert resp.status == 422, bad
        assert (await resp.json())["errors"][0]["field"] == field
    assert (await query.get(f"/v1/projects/{project.id}", headers={"Api-Key": project.key})).status == 403
    assert (await query.get("/v1/projects")).status == 401
    assert (await query.get("/v1/projects/999999", headers=auth)).status == 404
    resp = await query.get("/v1/projects", headers=auth)
    assert project.id in [p["id"] for p in await resp.json()]
    resp = await query.post("/v1/projects", json={"name": "made-by-api"}, headers=auth)
    assert resp.status == 201 and len((await resp.json())["client_key"]) == 32
