"""Keys that work at once, revocations within a second, the unknown-key bound, and the key lifecycle
over HTTP (issue 15), against real servers.

The cache tests run their own gateway and query service with a key refresh of an hour, so nothing
but the notifications and the look-ups of unknown keys can explain what they see.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import aiohttp
import airbrake
import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.gateway.app import create_app as create_gateway
from services.gateway.state import KEYS as GATEWAY_KEYS
from services.query.app import create_app as create_query
from services.query.state import KEYS as QUERY_KEYS
from shared import keys, stream
from shared.settings import Settings
from tests.conftest import ProjectInfo, drain, make_project, reload_keys
from tests.integration.test_exceptioner import notice

REVOKED_WITHIN = 1.0  # the promise, measured from the revoking call's answer


@dataclasses.dataclass
class Services:
    gateway: TestClient
    query: TestClient

    def cache(self, which: str) -> keys.KeyCache:
        client = self.gateway if which == "gateway" else self.query
        app = client.server.app
        assert app is not None
        return app[GATEWAY_KEYS if which == "gateway" else QUERY_KEYS]


@pytest.fixture
async def hour_refresh(settings: Settings) -> AsyncIterator[Services]:
    s = dataclasses.replace(settings, key_refresh=3600.0)
    gateway = TestClient(TestServer(create_gateway(s)))
    query = TestClient(TestServer(create_query(s)))
    await gateway.start_server()
    await query.start_server()
    services = Services(gateway, query)
    try:
        for which in ("gateway", "query"):
            await asyncio.wait_for(services.cache(which).listening.wait(), 30)
        yield services
    finally:
        await gateway.close()
        await query.close()


async def _post(gateway: TestClient, key: str) -> int:
    resp = await gateway.post("/v1/notices", data=orjson.dumps(notice()), headers={"Api-Key": key})
    return resp.status


async def _settled(services: Services, project_id: int) -> None:
    """Wait until both caches have taken in a new project (its notification makes them reload) and no
    reload is left to run: a reload after a silent key's insert would find that key."""
    caches = [services.cache("gateway"), services.cache("query")]
    deadline = time.monotonic() + 10
    while not all(project_id in c.projects and c.settled for c in caches):
        assert time.monotonic() < deadline, "the key caches did not settle"
        await asyncio.sleep(0.01)


async def _silent_key(pool: asyncpg.Pool, scope: str, project_id: int | None) -> str:
    """A key inserted with the notification trigger off: only a look-up can find it (call
    `_settled` first, so that no reload still under way reads it)."""
    secret = keys.new_client_key() if scope == "client" else keys.new_user_token()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE api_keys DISABLE TRIGGER api_keys_notify")
        await conn.execute(
            "INSERT INTO api_keys (key_hash, scope, project_id, hint) VALUES ($1, $2, $3, $4)",
            keys.hash_key(secret),
            scope,
            project_id,
            secret[-4:],
        )
        await conn.execute("ALTER TABLE api_keys ENABLE TRIGGER api_keys_notify")
    return secret


async def _refused_within(send, ok: int, refused: int, within: float) -> float:
    """Poll until `send()` answers `refused`; returns the seconds it took (fails past `within`)."""
    started = time.monotonic()
    while True:
        status = await send()
        took = time.monotonic() - started
        if status == refused:
            return took
        assert status == ok, status
        assert took < within, f"still accepted {took:.3f}s after the revocation"
        await asyncio.sleep(0.01)


# ---- keys that work at once -----------------------------------------------------------------------


async def test_a_key_nobody_was_told_about_works_on_its_first_request(hour_refresh: Services, pool):
    project = await make_project(pool)
    gateway_cache, query_cache = hour_refresh.cache("gateway"), hour_refresh.cache("query")
    await _settled(hour_refresh, project.id)
    key = await _silent_key(pool, "client", project.id)
    token = await _silent_key(pool, "user", None)
    assert gateway_cache.lookup(key) is None and query_cache.lookup(token) is None  # not heard of
    before = gateway_cache.stats["lookup_queries"]
    assert await _post(hour_refresh.gateway, key) == 201
    assert gateway_cache.stats["lookup_queries"] == before + 1
    resp = await hour_refresh.query.get("/v1/errors", headers={"Api-Key": token})
    assert resp.status == 200
    assert await _post(hour_refresh.gateway, key) == 201  # now known: no further look-up
    assert gateway_cache.stats["lookup_queries"] == before + 1


async def test_a_key_in_the_body_works_on_its_first_request(hour_refresh: Services, pool):
    """The key is only found after the body is read (a CrashLog form field): the handler runs again
    after the look-up, on the body it already read."""
    project = await make_project(pool)
    cache = hour_refresh.cache("gateway")
    await _settled(hour_refresh, project.id)
    key = await _silent_key(pool, "client", project.id)
    payload = {"notifier": {"name": "crashlog"}, "event": {"class_name": "E", "message": "first"}}
    form = urlencode({"auth_token": key, "payload": orjson.dumps(payload).decode()}).encode()
    before = cache.stats["lookup_queries"]
    resp = await hour_refresh.gateway.post(
        "/notify", data=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert resp.status == 201, await resp.text()
    assert "location_id" in await resp.json()
    assert cache.stats["lookup_queries"] == before + 1
    resp = await hour_refresh.gateway.post(
        "/notify",
        data=form.replace(key.encode(), b"0" * 32),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 401  # an unknown one is still refused, after its own look-up


async def test_created_and_revoked_keys_reach_every_cache_by_notification(
    hour_refresh: Services, pool, query
):
    project = await make_project(pool)
    gateway_cache, query_cache = hour_refresh.cache("gateway"), hour_refresh.cache("query")
    async with pool.acquire() as conn:
        made = await keys.create_client_key(conn, project.id, "notified")
        assert made is not None
        row, key = made
        token_row, token = await keys.create_token(conn, "notified")
    deadline = time.monotonic() + REVOKED_WITHIN
    while gateway_cache.lookup(key) is None or query_cache.lookup(token) is None:  # no request made
        assert time.monotonic() < deadline, "the notifications did not arrive"
        await asyncio.sleep(0.01)
    assert await _post(hour_refresh.gateway, key) == 201
    # Revoked through the (other) query service's API: both caches here forget them within a second.
    admin = {"Api-Key": await _token(pool)}
    await reload_keys(query)
    resp = await query.delete(f"/v1/keys/{row['id']}", headers=admin)
    assert resp.status == 200
    took = await _refused_within(lambda: _post(hour_refresh.gateway, key), 201, 401, REVOKED_WITHIN)
    resp = await query.delete(f"/v1/tokens/{token_row['id']}", headers=admin)
    assert resp.status == 200

    async def read() -> int:
        resp = await hour_refresh.query.get("/v1/projects", headers={"Api-Key": token})
        return resp.status

    took_token = await _refused_within(read, 200, 401, REVOKED_WITHIN)
    assert took < REVOKED_WITHIN and took_token < REVOKED_WITHIN


async def test_unknown_keys_cost_a_bounded_number_of_lookups(hour_refresh: Services):
    cache = hour_refresh.cache("gateway")
    gateway = hour_refresh.gateway
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:
        url = str(gateway.make_url("/v1/notices"))
        body = orjson.dumps(notice())

        async def send(key: str) -> int:
            async with session.post(url, data=body, headers={"Api-Key": key}) as resp:
                return resp.status

        # One key, many times at once: one look-up per NEGATIVE_TTL at most.
        same = uuid.uuid4().hex
        before = dict(cache.stats)
        started = time.monotonic()
        statuses = await asyncio.gather(*(send(same) for _ in range(300)))
        statuses += await asyncio.gather(*(send(same) for _ in range(300)))
        elapsed = time.monotonic() - started
        assert set(statuses) == {401}
        queries = cache.stats["lookup_queries"] - before["lookup_queries"]
        assert 1 <= queries <= 1 + elapsed / keys.NEGATIVE_TTL, (queries, elapsed)
        assert cache.stats["looked_up"] - before["looked_up"] == queries  # that one hash each time

        # Many random keys at once: batched, at most one query per LOOKUP_PAUSE, not one per request.
        before = dict(cache.stats)
        started = time.monotonic()
        statuses = await asyncio.gather(*(send(uuid.uuid4().hex) for _ in range(2000)))
        elapsed = time.monotonic() - started
        assert set(statuses) == {401}
        queries = cache.stats["lookup_queries"] - before["lookup_queries"]
        assert queries <= 2 + elapsed / keys.LOOKUP_PAUSE, (queries, elapsed)
        assert queries <= 2000 / 10, (queries, elapsed)
        assert cache.stats["looked_up"] - before["looked_up"] <= 2000


# ---- the lifecycle over HTTP ----------------------------------------------------------------------


async def _token(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        return await keys.create_user_token(conn, "admin")


async def test_client_keys_are_created_listed_masked_and_revoked(gateway, query, pool, project, user_token):
    auth = {"Api-Key": user_token}
    resp = await query.post("/v1/keys", json={"project_id": project.id, "label": "web 2026"}, headers=auth)
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    secret = made["client_key"]
    assert (
        len(secret) == 32
        and made["dsn"].startswith(f"http://{secret}@")
        and made["dsn"].endswith(f"/{project.id}")
    )
    assert made["key"] == f"…{secret[-4:]}" and made["label"] == "web 2026" and made["revoked_at"] is None
    assert resp.headers["Location"] == f"/v1/keys/{made['id']}"
    assert await _post(gateway, secret) == 201  # on its first request
    listed = await (await query.get("/v1/keys", params={"project_id": project.id}, headers=auth)).text()
    assert secret not in listed and secret[:8] not in listed
    assert {k["id"] for k in orjson.loads(listed)} >= {made["id"]}
    shown = await (await query.get(f"/v1/projects/{project.id}", headers=auth)).json()
    assert [k["label"] for k in shown["keys"]] == [None, "web 2026"]  # the first key and this one
    assert secret not in orjson.dumps(shown).decode() and project.key not in orjson.dumps(shown).decode()
    one = await (await query.get(f"/v1/keys/{made['id']}", headers=auth)).json()
    assert one == {k: v for k, v in made.items() if k not in ("client_key", "dsn")}

    resp = await query.delete(f"/v1/keys/{made['id']}", headers=auth)
    assert resp.status == 200 and (await resp.json())["revoked_at"] is not None
    await _refused_within(lambda: _post(gateway, secret), 201, 401, REVOKED_WITHIN)
    assert await _post(gateway, project.key) == 201  # the other key goes on working
    resp = await query.delete(f"/v1/keys/{made['id']}", headers=auth)
    assert resp.status == 409 and "already revoked" in (await resp.json())["message"]
    listed = await (await query.get("/v1/keys", params={"project_id": project.id}, headers=auth)).json()
    assert made["id"] not in {k["id"] for k in listed}
    for path in ("/v1/keys/999999999999", "/v1/keys/nope"):
        assert (await query.get(path, headers=auth)).status == 404
        assert (await query.delete(path, headers=auth)).status == 404


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({}, "project_id", "missing_field"),
        ({"project_id": "1"}, "project_id", "invalid"),
        ({"project_id": True}, "project_id", "invalid"),
        ({"project_id": 2147483000}, "project_id", "missing"),
        ({"project_id": "PID", "label": 5}, "label", "invalid"),
        ({"project_id": "PID", "label": "x" * 201}, "label", "invalid"),
        ({"project_id": "PID", "label": "TOKEN"}, "label", "invalid"),
    ],
)
async def test_creating_a_key_refuses_bad_fields(query, project, user_token, body, field, code):
    body = {k: project.id if v == "PID" else user_token if v == "TOKEN" else v for k, v in body.items()}
    resp = await query.post("/v1/keys", json=body, headers={"Api-Key": user_token})
    assert resp.status == 422
    assert {"field": field, "code": code} == {
        k: (await resp.json())["errors"][0][k] for k in ("field", "code")
    }


async def test_key_routes_answer_bad_bodies_and_wrong_credentials(query, project, user_token):
    auth = {"Api-Key": user_token, "Content-Type": "application/json"}
    assert (await query.post("/v1/keys", data=b"{", headers=auth)).status == 400
    assert (await query.post("/v1/tokens", data=b"[]", headers=auth)).status == 400
    assert (await query.get("/v1/keys")).status == 401
    assert (await query.get("/v1/tokens", headers={"Api-Key": project.key})).status == 403
    assert (await query.get("/v1/keys", params={"project_id": "x"}, headers=auth)).status == 422


async def test_user_tokens_are_created_listed_and_revoked(query, pool, user_token):
    auth = {"Api-Key": user_token}
    resp = await query.post("/v1/tokens", json={"label": "ci"}, headers=auth)
    assert resp.status == 201
    made = await resp.json()
    token = made["token"]
    assert token.startswith("flt_") and made["key"] == f"flt_…{token[-4:]}" and made["label"] == "ci"
    mine = {"Api-Key": token}
    assert (await query.get("/v1/errors", headers=mine)).status == 200  # on its first request
    listed = await (await query.get("/v1/tokens", headers=auth)).text()
    assert token not in listed and made["id"] in {t["id"] for t in orjson.loads(listed)}
    assert all("project_id" not in t for t in orjson.loads(listed))
    resp = await query.delete(f"/v1/tokens/{made['id']}", headers=mine)
    assert resp.status == 409 and "cannot revoke itself" in (await resp.json())["message"]
    assert (await query.get(f"/v1/tokens/{made['id']}", headers=auth)).status == 200
    resp = await query.delete(f"/v1/tokens/{made['id']}", headers=auth)
    assert resp.status == 200

    async def read() -> int:
        return (await query.get("/v1/errors", headers=mine)).status

    await _refused_within(read, 200, 401, REVOKED_WITHIN)
    assert (await query.delete(f"/v1/tokens/{made['id']}", headers=auth)).status == 409
    assert (await query.delete("/v1/tokens/999999999999", headers=auth)).status == 404
    # A client key is no token: not found under /v1/tokens.
    key_id = await pool.fetchval("SELECT id FROM api_keys WHERE scope = 'client' LIMIT 1")
    assert (await query.get(f"/v1/tokens/{key_id}", headers=auth)).status == 404


async def test_a_project_is_deleted_only_with_its_name_repeated(gateway, query, consumer, pool, user_token):
    auth = {"Api-Key": user_token}
    resp = await query.post("/v1/projects", json={"name": "doomed-shop"}, headers=auth)
    created = await resp.json()
    pid, key = created["id"], created["client_key"]
    assert await _post(gateway, key) == 201
    await drain(consumer)
    assert await pool.fetchval("SELECT count(*) FROM notices WHERE project_id = $1", pid) == 1
    url = f"/v1/projects/{pid}"
    resp = await query.delete(url, headers=auth)
    assert resp.status == 422 and (await resp.json())["errors"][0] == {
        "resource": "Project",
        "field": "confirm",
        "code": "missing_field",
    }
    assert (await query.delete(url, params={"confirm": "doomed"}, headers=auth)).status == 422
    assert (await query.get(url, headers=auth)).status == 200
    assert (await query.delete(url, params={"confirm": "doomed-shop"}, headers=auth)).status == 204
    assert (await query.get(url, headers=auth)).status == 404
    assert await pool.fetchval("SELECT count(*) FROM notices WHERE project_id = $1", pid) == 0
    assert await pool.fetchval("SELECT count(*) FROM api_keys WHERE project_id = $1", pid) == 0
    await _refused_within(lambda: _post(gateway, key), 201, 401, REVOKED_WITHIN)
    assert (await query.delete(url, params={"confirm": "doomed-shop"}, headers=auth)).status == 404


# ---- deploys with the project's key ---------------------------------------------------------------


async def test_ci_records_a_deploy_with_the_client_key(query, pool, project, user_token):
    own = {"Api-Key": project.key}
    resp = await query.post(
        "/v1/deploys", json={"environment": "production", "revision": "abc1"}, headers=own
    )
    assert resp.status == 201, await resp.text()
    deploy = await resp.json()
    assert deploy["project_id"] == project.id and deploy["revision"] == "abc1"
    other = await make_project(pool)
    await reload_keys(query)
    resp = await query.post(
        "/v1/deploys", json={"environment": "production", "project_id": other.id}, headers=own
    )
    assert resp.status == 403
    resp = await query.post(
        "/v1/deploys", json={"environment": "production", "resolve_errors": True}, headers=own
    )
    assert resp.status == 403
    resp = await query.post("/v1/deploys", json={"revision": "x"}, headers=own)
    assert resp.status == 422
    for path in ("/v1/deploys", f"/v1/deploys/{deploy['id']}"):  # create only: no reading
        assert (await query.get(path, headers=own)).status == 403
    assert (
        await query.post("/v1/deploys", json={"environment": "p"}, headers={"Api-Key": "x" * 32})
    ).status == 401
    rows = await pool.fetch("SELECT revision FROM deploys WHERE project_id = $1", project.id)
    assert [r["revision"] for r in rows] == ["abc1"]


async def test_the_airbrake_client_records_a_deploy_through_the_gateway(gateway, consumer, pool, project):
    base = str(gateway.make_url("")).rstrip("/")
    notifier = airbrake.Airbrake(project_id=project.id, api_key=project.key, host=base, environment="staging")
    response = await asyncio.to_thread(
        notifier.deploy,
        env="production",
        username="ci-bot",
        repository="git@example.com:shop.git",
        revision="f00d",
    )
    assert response.status_code == 201 and uuid.UUID(response.json()["id"])
    assert await pool.fetchval("SELECT count(*) FROM deploys WHERE project_id = $1", project.id) == 0
    await drain(consumer)  # the gateway queued it; a worker writes it
    row = await pool.fetchrow(
        "SELECT environment, author, repository, revision, ref FROM deploys WHERE project_id = $1", project.id
    )
    assert dict(row) == {
        "environment": "production",
        "author": "ci-bot",
        "repository": "git@example.com:shop.git",
        "revision": "f00d",
        "ref": uuid.UUID(response.json()["id"]),
    }
    url = f"/api/v4/projects/{project.id}/deploys"
    assert (await gateway.post(url, params={"key": project.key}, data=b"{")).status == 400
    resp = await gateway.post(url, params={"key": project.key}, json={"revision": "x"})
    assert resp.status == 422 and (await resp.json())["errors"][0]["field"] == "environment"
    resp = await gateway.post(url, params={"key": project.key}, json={"environment": project.key})
    assert resp.status == 422  # a live key is never stored as data
    other = await make_project(pool)
    await reload_keys(gateway)
    resp = await gateway.post(
        f"/api/v4/projects/{other.id}/deploys", params={"key": project.key}, json={"environment": "p"}
    )
    assert resp.status == 403
    assert (await gateway.post(url, json={"environment": "p"})).status == 401


async def test_a_redelivered_deploy_entry_is_recorded_once(
    redis, consumer, pool, settings, project: ProjectInfo
):
    deploy = stream.Deploy(project.id, str(uuid.uuid4()), "production", None, None, "r1", time.time())
    for _ in range(2):
        await redis.xadd(settings.notices_stream, stream.encode(deploy))  # type: ignore[arg-type]
    await drain(consumer)
    assert await pool.fetchval("SELECT count(*) FROM deploys WHERE ref = $1", uuid.UUID(deploy.ref)) == 1
    assert stream.decode(stream.encode(deploy)) == deploy
