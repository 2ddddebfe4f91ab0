"""Hostile input against the query service (issue 13, findings 1 and 7, query side).

Finding 1: every time and number parameter of every route has a range PostgreSQL can serve, stats
series are bounded in points, lists in rows, and every statement in time.
Finding 7: a route's own parameters are never read as credentials, and a live credential is never
stored as data.

The sweeps take the route list and each route's parameters from the service's own /openapi.json, so
a new parameter is swept without editing this file.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient

from services.query.app import STATEMENT_TIMEOUT_S
from services.query.pagination import MAX_OFFSET, MAX_PER_PAGE, MAX_QUERY
from services.query.state import POOL
from shared.web import _PARAM_NAMES
from tests.conftest import ProjectInfo, drain, reload_keys
from tests.integration.test_exceptioner import notice, post

FAST = 3.0  # seconds: well under the statement timeout, so no sweep value got as far as it

# Years 1 and 9999, negative and huge epochs, non-numbers, huge ints, 0 and -1.
EXTREMES = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T01:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999Z",
    "-62135596800",
    "-62135596800.5",
    "253402300799",
    "253402300800",
    "-1",
    "0",
    "1",
    "1e20",
    "-1e20",
    "nan",
    "inf",
    "-inf",
    "NaN",
    "Infinity",
    str(2**31),
    str(2**63),
    str(-(2**63)),
    "9" * 400,
    "9" * 5000,
    "1.5",
    "0x10",
]
# Keyset cursors: notices' `{microseconds}_{uuid}` from year 1 and past 9999, Redis stream ids.
CURSOR_EXTREMES = [
    f"{-62135596800 * 10**6}_{uuid.UUID(int=0)}",
    f"{253402300800 * 10**6}_{uuid.UUID(int=0)}",
    f"{10**30}_{uuid.UUID(int=0)}",
    "0-0",
    "0-1",
    "18446744073709551615-18446744073709551615",
    "18446744073709551616-0",
    "99999999999999999999-0",
    "-1-0",
    "",
    "\x00",
    "%",
]


def _is_number(schema: dict[str, Any]) -> bool:
    return schema.get("type") in ("integer", "number")


def _params(spec: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in operation.get("parameters", []):
        if "$ref" in p:
            p = spec["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]
        out.append(p)
    return out


@pytest.fixture
async def fixture_ids(gateway, query, consumer, project: ProjectInfo, user_token) -> dict[str, str]:
    """Real ids for every path parameter, so each request reaches its SQL."""
    status, body = await post(gateway, project.key, notice(exception="HostileError"))
    assert status == 201
    await drain(consumer)
    auth = {"Api-Key": user_token}
    resp = await query.get(f"/v1/errors/{body['error_id']}/notices", headers=auth)
    first = (await resp.json())[0]
    resp = await query.post(
        "/v1/deploys", json={"environment": "production", "project_id": project.id}, headers=auth
    )
    assert resp.status == 201
    return {
        "error_id": str(body["error_id"]),
        "notice_id": first["id"],
        "location_id": first["location_id"],
        "deploy_id": str((await resp.json())["id"]),
        "project_id": str(project.id),
    }


def _concrete(path: str, ids: dict[str, str]) -> str:
    if path.startswith("/v1/errors/{error_id}/notices/"):
        return path.format(error_id=ids["error_id"], id=ids["notice_id"])
    if path.startswith("/v1/errors"):
        return path.format(id=ids["error_id"], error_id=ids["error_id"])
    if path.startswith("/v1/deploys"):
        return path.format(id=ids["deploy_id"])
    if "{location_id}" in path:
        return path.format(location_id=ids["location_id"])
    return path.format(id=ids["project_id"], hook=ids.get("hook_id", "1"))


async def _spec(query: TestClient) -> dict[str, Any]:
    resp = await query.get("/openapi.json")
    assert resp.status == 200
    spec: dict[str, Any] = await resp.json()
    return spec


async def _timed_get(query: TestClient, url: str, **kw: Any) -> tuple[int, float, bytes]:
    t0 = time.monotonic()
    resp = await query.get(url, allow_redirects=False, **kw)
    body = await resp.read()
    return resp.status, time.monotonic() - t0, body


# ---- finding 1: ranges, points, rows, time ------------------------------------------------------


async def test_year_one_stats_answer_422_naming_the_field_at_once(query, fixture_ids, user_token):
    """The red-team repro: year 1 reached PostgreSQL as -infinity and generate_series never advanced."""
    eid = fixture_ids["error_id"]
    auth = {"Api-Key": user_token}
    for qs, field in (
        ("since=0001-01-01T00:00:00Z&until=0001-01-01T01:00:00Z&interval=hour", "until"),
        ("since=0001-01-01T00:00:00Z&interval=hour", "since"),
        ("since=-62135596800&interval=hour", "since"),
        ("until=0001-01-01T00:00:00Z", "until"),
        ("since=-62135596800&until=-62135592800&interval=day", "until"),
    ):
        status, took, body = await _timed_get(query, f"/v1/errors/{eid}/stats?{qs}", headers=auth)
        assert status == 422, (qs, body)
        assert took < FAST, qs
        doc = orjson.loads(body)
        assert doc["message"] == "Validation failed"
        assert doc["errors"][0]["field"] == field, (qs, doc)


async def test_stats_series_points_are_capped_with_a_422(query, fixture_ids, user_token):
    eid = fixture_ids["error_id"]
    auth = {"Api-Key": user_token}
    ok = await query.get(
        f"/v1/errors/{eid}/stats?interval=hour&since=2024-01-01T00:00:00Z&until=2024-03-24T08:00:00Z",
        headers=auth,
    )
    assert ok.status == 200  # 2000 hours: the cap itself
    assert len((await ok.json())["series"]) == 2001  # both ends' buckets
    for qs in (
        "interval=hour&since=2024-01-01T00:00:00Z&until=2024-03-24T09:00:00Z",  # 2001 hours
        "interval=day&since=1970-01-01T00:00:00Z&until=9999-12-31T23:59:59Z",
        "interval=hour&since=1970-01-01T00:00:00Z",
    ):
        resp = await query.get(f"/v1/errors/{eid}/stats?{qs}", headers=auth)
        assert resp.status == 422, qs
        assert (await resp.json())["errors"] == [{"resource": "Query", "field": "since", "code": "invalid"}]
    # The widest series the ranges allow, at the far end of time, is served and fast.
    status, took, _ = await _timed_get(
        query, f"/v1/errors/{eid}/stats?interval=day&until=9999-12-31T23:59:59Z", headers=auth
    )
    assert status == 200 and took < FAST


async def test_every_parameter_of_every_route_takes_extremes(query, fixture_ids, user_token):
    """The sweep: each GET route x each query parameter (times, numbers, cursors, text) and each
    numeric path id x EXTREMES (query parameters also x CURSOR_EXTREMES)."""
    spec = await _spec(query)
    auth = {"Api-Key": user_token}
    swept: set[tuple[str, str]] = set()
    failures = []
    for path, item in spec["paths"].items():
        op = item.get("get")
        if op is None:
            continue
        for param in _params(spec, op):
            schema = param.get("schema", {})
            if param["in"] == "path" and not _is_number(schema) or param["in"] not in ("query", "path"):
                continue
            for value in EXTREMES + (CURSOR_EXTREMES if param["in"] == "query" else []):
                if param["in"] == "path":
                    ids = {k: value for k in ("error_id", "deploy_id", "project_id", "hook_id")}
                    url = _concrete(path, {**fixture_ids, **ids})
                    if "{" + param["name"] + "}" not in path:
                        continue
                    if param["name"] == "id" and path.startswith("/v1/errors/{error_id}/notices/"):
                        continue  # a uuid, not a number
                    params: dict[str, str] = {}
                else:
                    url = _concrete(path, fixture_ids)
                    params = {param["name"]: value}
                status, took, body = await _timed_get(query, url, params=params, headers=auth)
                swept.add((path, param["name"]))
                if status >= 500 or took >= FAST:
                    failures.append((path, param["name"], value, status, round(took, 2), body[:200]))
    assert not failures, failures
    # Not vacuous: the routes and parameters the issue names were all swept.
    for expected in (
        ("/v1/errors/{id}/stats", "since"),
        ("/v1/errors/{id}/stats", "until"),
        ("/v1/errors", "since"),
        ("/v1/errors", "until"),
        ("/v1/errors", "page"),
        ("/v1/errors", "per_page"),
        ("/v1/errors", "project_id"),
        ("/v1/errors/{error_id}/notices", "page"),
        ("/v1/deploys", "project_id"),
        ("/v1/stats", "project_id"),
        ("/v1/projects", "per_page"),
        ("/v1/errors/{id}", "id"),
        ("/v1/deploys/{id}", "id"),
        ("/v1/projects/{id}", "id"),
        ("/v1/errors/{error_id}/notices", "cursor"),
        ("/v1/dead-letters", "before"),
        ("/v1/errors", "q"),
    ):
        assert expected in swept, expected


async def test_stats_with_every_pair_of_extreme_times(query, fixture_ids, user_token):
    eid = fixture_ids["error_id"]
    auth = {"Api-Key": user_token}
    times = [v for v in EXTREMES if not v.startswith("9" * 10)]
    failures = []
    for interval in ("hour", "day"):
        for since in times:
            for until in times:
                q = {"interval": interval, "since": since, "until": until}
                status, took, body = await _timed_get(
                    query, f"/v1/errors/{eid}/stats", params=q, headers=auth
                )
                if status >= 500 or took >= FAST or status not in (200, 422):
                    failures.append((q, status, round(took, 2), body[:200]))
    assert not failures, failures


async def test_a_notice_cursor_from_year_one_is_refused(query, fixture_ids, user_token):
    eid = fixture_ids["error_id"]
    for micros in (-62135596800 * 10**6, 253402300800 * 10**6, 10**30):
        resp = await query.get(
            f"/v1/errors/{eid}/notices",
            params={"cursor": f"{micros}_{uuid.uuid4()}"},
            headers={"Api-Key": user_token},
        )
        assert resp.status == 422, micros
        assert (await resp.json())["errors"][0]["field"] == "cursor"


async def test_pages_deeper_than_the_offset_cap_answer_422(query, fixture_ids, user_token):
    auth = {"Api-Key": user_token}
    for path in ("/v1/errors", "/v1/deploys", f"/v1/errors/{fixture_ids['error_id']}/notices"):
        deepest = MAX_OFFSET // MAX_PER_PAGE + 1
        resp = await query.get(
            path, params={"page": str(deepest), "per_page": str(MAX_PER_PAGE)}, headers=auth
        )
        assert resp.status == 200, path
        resp = await query.get(
            path, params={"page": str(deepest + 1), "per_page": str(MAX_PER_PAGE)}, headers=auth
        )
        assert resp.status == 422, path
        assert (await resp.json())["errors"] == [
            {"resource": "Pagination", "field": "page", "code": "invalid"}
        ]
        resp = await query.get(path, params={"page": str(2**31 - 1)}, headers=auth)
        assert resp.status == 422, path


async def test_link_last_never_points_past_the_offset_cap(query, pool, user_token):
    """With more rows than the cap, `last` is the deepest reachable page, and it answers 200."""
    project_id = await pool.fetchval("INSERT INTO projects (name) VALUES ('deep-deploys') RETURNING id")
    await pool.execute(
        "INSERT INTO deploys (project_id, environment) SELECT $1, 'deep' FROM generate_series(1, $2)",
        project_id,
        MAX_OFFSET + 500,
    )
    auth = {"Api-Key": user_token}
    resp = await query.get(
        "/v1/deploys", params={"project_id": str(project_id), "per_page": "100"}, headers=auth
    )
    assert resp.status == 200
    last = resp.headers["Link"].split('>; rel="last"')[0].rsplit("<", 1)[1]
    assert f"page={MAX_OFFSET // 100 + 1}&" in last
    parts = urlsplit(last)
    resp = await query.get(f"{parts.path}?{parts.query}", headers=auth)
    assert resp.status == 200 and len(await resp.json()) == 100


async def test_the_pool_cancels_statements_after_its_timeout(query):
    app = query.server.app
    async with app[POOL].acquire() as conn:
        assert await conn.fetchval("SHOW statement_timeout") == f"{STATEMENT_TIMEOUT_S}s"


async def test_a_read_stuck_past_the_statement_timeout_answers_503_with_retry_after(query, pool, user_token):
    """A read blocked on a lock (as a read too costly to finish would be) is cancelled by PostgreSQL."""
    async with pool.acquire() as locker:
        tx = locker.transaction()
        await tx.start()
        try:
            await locker.execute("LOCK TABLE deploys IN ACCESS EXCLUSIVE MODE")
            t0 = time.monotonic()
            resp = await query.get("/v1/deploys", headers={"Api-Key": user_token})
            took = time.monotonic() - t0
        finally:
            await tx.rollback()
    assert resp.status == 503, await resp.text()
    assert resp.headers["Retry-After"].isdigit()
    assert "time limit" in (await resp.json())["message"]
    assert STATEMENT_TIMEOUT_S - 0.5 <= took < STATEMENT_TIMEOUT_S + 3
    resp = await query.get("/v1/deploys", headers={"Api-Key": user_token})
    assert resp.status == 200  # the connection went back to the pool in working order


# ---- finding 7: parameters are not credentials; credentials are not data ------------------------


async def _config(pool: asyncpg.Pool, project_id: int) -> dict[str, Any]:
    row = await pool.fetchrow("SELECT config FROM projects WHERE id = $1", project_id)
    return dict(row["config"] or {})


async def test_config_key_parameter_is_never_a_credential(query, pool, project: ProjectInfo, user_token):
    """The repro: `POST /api/v2/projects/1/config?key=$TOK` with "Warn" stored {"flt_…": "Warn"}."""
    url = f"/api/v2/projects/{project.id}/config"
    resp = await query.post(
        url, params={"key": user_token}, data=b'"Warn"', headers={"Content-Type": "application/json"}
    )
    assert resp.status == 401
    resp = await query.delete(url, params={"key": user_token})
    assert resp.status == 401
    assert user_token not in await _config(pool, project.id)
    # With a real credential, a token as the setting's name is refused, not stored.
    auth = {"Api-Key": user_token, "Content-Type": "application/json"}
    resp = await query.post(url, params={"key": user_token}, data=b'"Warn"', headers=auth)
    assert resp.status == 400
    assert "credential" in (await resp.json())["message"]
    assert await _config(pool, project.id) == {}
    # The parameter itself still does its job.
    resp = await query.post(url, params={"key": "@@log:*"}, data=b'"Warn"', headers=auth)
    assert resp.status == 200 and (await resp.json())["settings"] == {"@@log:*": "Warn"}


async def test_live_credentials_are_never_stored_as_data(query, pool, project: ProjectInfo, user_token):
    auth = {"Api-Key": user_token}
    url = f"/api/v2/projects/{project.id}/config"
    for value in (user_token, project.key, f"Bearer {user_token}", {"value": f"key={project.key}&x=1"}):
        resp = await query.post(
            url,
            params={"key": "@@log:*"},
            data=orjson.dumps(value),
            headers={**auth, "Content-Type": "application/json"},
        )
        assert resp.status == 400, value
    assert await _config(pool, project.id) == {}
    for field in ("author", "revision", "repository", "environment"):
        body = {"environment": "production", "project_id": project.id, field: f"{user_token}"}
        resp = await query.post("/v1/deploys", json=body, headers=auth)
        assert resp.status == 422, field
        assert {"resource": "Deploy", "field": field, "code": "invalid"} in (await resp.json())["errors"]
    resp = await query.post("/v1/projects", json={"name": project.key}, headers=auth)
    assert resp.status == 422 and (await resp.json())["errors"][0]["field"] == "name"
    for patch, field in (
        ({"name": f"app {user_token}"}, "name"),
        ({"settings": {"scrub_fields": [project.key]}}, "settings.scrub_fields"),
        ({"settings": {"app_patterns": [f"{user_token}/*"]}}, "settings.app_patterns"),
    ):
        resp = await query.patch(f"/v1/projects/{project.id}", json=patch, headers=auth)
        assert resp.status == 422, patch
        assert (await resp.json())["errors"][0]["field"] == field
    stored = await pool.fetchval("SELECT count(*) FROM deploys WHERE author = $1", user_token)
    assert stored == 0


async def test_every_routes_own_parameters_against_the_credential_names(
    gateway, query, pool, project: ProjectInfo, user_token
):
    """The sweep: a query parameter a route declares is data; sending the token only there is 401.

    Also the spec does not offer that parameter's name as a credential on that route.
    """
    spec = await _spec(query)
    ids = {
        "error_id": "1",
        "notice_id": str(uuid.uuid4()),
        "location_id": str(uuid.uuid4()),
        "deploy_id": "1",
    }
    ids["project_id"] = str(project.id)
    clashes = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            for param in _params(spec, op):
                if param["in"] != "query" or param["name"] not in _PARAM_NAMES:
                    continue
                clashes.append((method, path, param["name"]))
                schemes = spec["components"]["securitySchemes"]
                offered = {
                    schemes[name]["name"]
                    for requirement in op.get("security", [])
                    for name in requirement
                    if schemes[name].get("in") == "query"
                }
                assert param["name"] not in offered, (method, path)
                resp = await query.request(
                    method.upper(),
                    _concrete(path, ids),
                    params={param["name"]: user_token},
                    data=b'"on"' if method in ("post", "patch") else None,
                    headers={"Content-Type": "application/json"},
                )
                assert resp.status == 401, (method, path, param["name"], resp.status)
    assert await _config(pool, project.id) == {}
    # Not vacuous: the config route's `key` is such a parameter (POST and DELETE).
    assert ("post", "/api/v2/projects/{id}/config", "key") in clashes
    assert ("delete", "/api/v2/projects/{id}/config", "key") in clashes
    # And every other credential name still authenticates where it is no route's parameter.
    for name in _PARAM_NAMES:
        resp = await query.get("/v1/projects", params={name: user_token})
        assert resp.status == 200, name
    await reload_keys(gateway, query)


async def test_many_slow_reads_at_once_leave_the_service_answering(query, fixture_ids, user_token):
    """Ten of the red team's stats reads at once used to hold every pooled connection for 30 s."""
    eid = fixture_ids["error_id"]
    url = f"/v1/errors/{eid}/stats?since=0001-01-01T00:00:00Z&until=0001-01-01T01:00:00Z&interval=hour"
    t0 = time.monotonic()
    answers = await asyncio.gather(*(query.get(url, headers={"Api-Key": user_token}) for _ in range(20)))
    assert [r.status for r in answers] == [422] * 20
    resp = await query.get("/v1/errors", headers={"Api-Key": user_token})
    assert resp.status == 200
    assert time.monotonic() - t0 < FAST


async def test_a_list_query_too_long_for_its_link_header_answers_414(query, fixture_ids, user_token):
    """Every Link URL repeats the query; past MAX_QUERY the header would outgrow an 8 KiB line."""
    auth = {"Api-Key": user_token}
    for path in ("/v1/errors", "/v1/deploys", "/v1/projects", "/v1/stats"):
        name = "q" if path == "/v1/errors" else "environment"
        resp = await query.get(path, params={name: "x" * (MAX_QUERY - 40)}, headers=auth)
        assert resp.status == 200, path
        assert len(resp.headers["Link"]) < 8190 - len("Link: ")
        resp = await query.get(path, params={name: "x" * (MAX_QUERY + 1)}, headers=auth)
        assert resp.status == 414, path
    eid = fixture_ids["error_id"]
    resp = await query.get(f"/v1/errors/{eid}/notices", params={"x": "é" * 400}, headers=auth)
    assert resp.status == 414  # what counts is the query as the Link header spells it (%C3%A9)
