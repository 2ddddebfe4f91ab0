"""Every endpoint x every kind of credential, in one table (issue: secrets and scopes).

Columns: no key, a wrong key, the project's client key, another project's client key, a user token.
A route the services register but this table does not list fails the test, so new endpoints
cannot skip their scope rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from shared import keys
from tests.conftest import drain, make_project, reload_keys
from tests.integration.test_exceptioner import notice, post

NONE, WRONG, CLIENT, OTHER, USER = "none", "wrong", "client", "other", "user"
OK = "ok"  # 2xx or 3xx: authorised and served

# What each kind of endpoint answers each credential.
RULES: dict[str, dict[str, object]] = {
    # Open to anyone: health, metrics, the spec, the login page, the public /locate redirect.
    "public": {NONE: OK, WRONG: OK, CLIENT: OK, OTHER: OK, USER: OK},
    # Ingest naming no project: another project's key is simply valid for its own project.
    "ingest": {NONE: 401, WRONG: 401, CLIENT: OK, OTHER: OK, USER: 403},
    # Ingest naming a project in its path: only that project's key.
    "ingest_project": {NONE: 401, WRONG: 401, CLIENT: OK, OTHER: 403, USER: 403},
    # Hoptoad v2 XML: the key is in the body (or any generic form); Errbit answers a missing or unknown key 422.
    "ingest_xml": {NONE: 422, WRONG: 422, CLIENT: OK, OTHER: OK, USER: 403},
    # Reads and management: user tokens only.
    "user": {NONE: 401, WRONG: 401, CLIENT: 403, OTHER: 403, USER: OK},
    # Creating a deploy of a named project: a user token, or that project's own client key (issue 15).
    "deploy": {NONE: 401, WRONG: 401, CLIENT: OK, OTHER: 403, USER: OK},
}


@dataclass
class Ctx:
    project: Any
    other: Any
    token: str
    error_id: int
    notice_id: str
    location_id: str
    deploy_id: int
    key_id: int = 0  # one more client key of `project`, and a spare token (revoked by the USER pass)
    token_id: int = 0
    doomed: Any = None  # a project of its own for DELETE /v1/projects/{id} (the last row)
    hook_id: int = 0  # a webhook of `project`


Send = Callable[[str | None], dict[str, Any]]


def bearer(key: str | None) -> dict[str, Any]:
    return {"headers": {"Authorization": f"Bearer {key}"}} if key else {}


def api_key(key: str | None) -> dict[str, Any]:
    return {"headers": {"Api-Key": key}} if key else {}


def sentry(key: str | None) -> dict[str, Any]:
    return {"headers": {"X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={key}"}} if key else {}


def airbrake(key: str | None) -> dict[str, Any]:
    return {"params": {"key": key}} if key else {}


def envelope() -> bytes:
    eid = uuid.uuid4().hex
    return (
        orjson.dumps({"event_id": eid})
        + b"\n"
        + b'{"type":"event"}\n'
        + orjson.dumps({"event_id": eid, "message": "scope", "level": "error"})
        + b"\n"
    )


JSON = {"Content-Type": "application/json"}
EXCEPTIONER = orjson.dumps(notice(exception="ScopeError"))
CRASHLOG = b'{"notifier": {"name": "t"}, "event": {"class_name": "ScopeError", "message": "m"}}'
HOPTOAD = b'<notice version="2.3"><error><class>ScopeError</class><message>m</message></error></notice>'
AIRBRAKE = b'{"errors": [{"type": "ScopeError", "message": "m", "backtrace": []}]}'

# (service, method, route as registered, concrete path, kind, credential form, body)
TABLE: list[tuple[str, str, str, str, str, Send, bytes | None]] = [
    ("gateway", "GET", "/", "/", "public", api_key, None),
    ("gateway", "GET", "/healthz", "/healthz", "public", api_key, None),
    ("gateway", "GET", "/readyz", "/readyz", "public", api_key, None),
    ("gateway", "GET", "/metrics", "/metrics", "public", api_key, None),
    ("gateway", "GET", "/openapi.json", "/openapi.json", "public", api_key, None),
    ("gateway", "POST", "/v1/notices", "/v1/notices", "ingest", api_key, EXCEPTIONER),
    ("gateway", "POST", "/notify", "/notify", "ingest", api_key, CRASHLOG),
    (
        "gateway",
        "POST",
        "/notifier_api/v2/notices",
        "/notifier_api/v2/notices",
        "ingest_xml",
        api_key,
        HOPTOAD,
    ),
    (
        "gateway",
        "POST",
        "/notifier_api/v2/notices.xml",
        "/notifier_api/v2/notices.xml",
        "ingest_xml",
        api_key,
        HOPTOAD,
    ),
    (
        "gateway",
        "POST",
        "/api/{project_id}/envelope/",
        "/api/{pid}/envelope/",
        "ingest_project",
        sentry,
        b"E",
    ),
    ("gateway", "POST", "/api/{project_id}/envelope", "/api/{pid}/envelope", "ingest_project", sentry, b"E"),
    (
        "gateway",
        "POST",
        "/api/{project_id}/store/",
        "/api/{pid}/store/",
        "ingest_project",
        sentry,
        b'{"message": "scope"}',
    ),
    (
        "gateway",
        "POST",
        "/api/{project_id}/store",
        "/api/{pid}/store",
        "ingest_project",
        sentry,
        b'{"message": "scope"}',
    ),
    (
        "gateway",
        "POST",
        "/api/v3/projects/{project_id}/notices",
        "/api/v3/projects/{pid}/notices",
        "ingest_project",
        airbrake,
        AIRBRAKE,
    ),
    (
        "gateway",
        "POST",
        "/api/v2/events",
        "/api/v2/events",
        "ingest",
        bearer,
        b'[{"type": "log", "message": "m"}]',
    ),
    (
        "gateway",
        "POST",
        "/api/v2/projects/{project_id}/events",
        "/api/v2/projects/{pid}/events",
        "ingest_project",
        bearer,
        b'[{"type": "log", "message": "m"}]',
    ),
    ("gateway", "GET", "/api/v2/events/submit", "/api/v2/events/submit?message=m", "ingest", bearer, None),
    (
        "gateway",
        "GET",
        "/api/v2/events/submit/{type}",
        "/api/v2/events/submit/log?message=m",
        "ingest",
        bearer,
        None,
    ),
    (
        "gateway",
        "GET",
        "/api/v2/projects/{project_id}/events/submit",
        "/api/v2/projects/{pid}/events/submit?message=m",
        "ingest_project",
        bearer,
        None,
    ),
    (
        "gateway",
        "GET",
        "/api/v2/projects/{project_id}/events/submit/{type}",
        "/api/v2/projects/{pid}/events/submit/log?message=m",
        "ingest_project",
        bearer,
        None,
    ),
    (
        "gateway",
        "GET",
        "/api/v2/events/session/heartbeat",
        "/api/v2/events/session/heartbeat?id=abc",
        "ingest",
        bearer,
        None,
    ),
    (
        "gateway",
        "POST",
        "/api/v2/events/by-ref/{reference_id}/user-description",
        "/api/v2/events/by-ref/abcdef1234/user-description",
        "ingest",
        bearer,
        b'{"description": "d"}',
    ),
    (
        "gateway",
        "POST",
        "/api/v2/projects/{project_id}/events/by-ref/{reference_id}/user-description",
        "/api/v2/projects/{pid}/events/by-ref/abcdef1234/user-description",
        "ingest_project",
        bearer,
        b'{"description": "d"}',
    ),
    ("gateway", "GET", "/api/v2/projects/config", "/api/v2/projects/config", "ingest", bearer, None),
    (
        "gateway",
        "POST",
        "/api/v4/projects/{project_id}/deploys",
        "/api/v4/projects/{pid}/deploys",
        "ingest_project",
        airbrake,
        b'{"environment": "scope"}',
    ),
    (
        "gateway",
        "GET",
        "/api/v2/projects/{project_id}/config",
        "/api/v2/projects/{pid}/config",
        "ingest_project",
        bearer,
        None,
    ),
    ("query", "GET", "/", "/", "public", api_key, None),
    ("query", "GET", "/healthz", "/healthz", "public", api_key, None),
    ("query", "GET", "/readyz", "/readyz", "public", api_key, None),
    ("query", "GET", "/metrics", "/metrics", "public", api_key, None),
    ("query", "GET", "/openapi.json", "/openapi.json", "public", api_key, None),
    ("query", "GET", "/login", "/login", "public", api_key, None),
    ("query", "GET", "/locate/{location_id}", "/locate/{loc}", "public", api_key, None),
    ("query", "GET", "/v1/errors", "/v1/errors", "user", api_key, None),
    ("query", "GET", "/v1/errors/{id}", "/v1/errors/{eid}", "user", api_key, None),
    ("query", "PATCH", "/v1/errors/{id}", "/v1/errors/{eid}", "user", api_key, b'{"resolved": false}'),
    ("query", "POST", "/v1/errors/{id}", "/v1/errors/{eid}", "user", api_key, b'{"resolved": false}'),
    ("query", "GET", "/v1/errors/{error_id}/notices", "/v1/errors/{eid}/notices", "user", api_key, None),
    (
        "query",
        "GET",
        "/v1/errors/{error_id}/notices/{id}",
        "/v1/errors/{eid}/notices/{nid}",
        "user",
        api_key,
        None,
    ),
    ("query", "GET", "/v1/errors/{id}/stats", "/v1/errors/{eid}/stats", "user", api_key, None),
    ("query", "POST", "/v1/errors/{id}/merge", "/v1/errors/{eid}/merge", "user", api_key, b'{"ids": [EID]}'),
    (
        "query",
        "POST",
        "/v1/errors/{id}/split",
        "/v1/errors/{eid}/split",
        "user",
        api_key,
        b'{"notice_id": "NID"}',
    ),
    ("query", "GET", "/v1/deploys", "/v1/deploys", "user", api_key, None),
    ("query", "GET", "/v1/dead-letters", "/v1/dead-letters", "user", api_key, None),
    (
        "query",
        "POST",
        "/v1/deploys",
        "/v1/deploys",
        "deploy",
        api_key,
        b'{"environment": "scope", "project_id": PID}',
    ),
    ("query", "GET", "/v1/deploys/{id}", "/v1/deploys/{did}", "user", api_key, None),
    ("query", "GET", "/v1/projects", "/v1/projects", "user", api_key, None),
    ("query", "POST", "/v1/projects", "/v1/projects", "user", api_key, b'{"name": "scope-made"}'),
    ("query", "GET", "/v1/projects/{id}", "/v1/projects/{pid}", "user", api_key, None),
    ("query", "PATCH", "/v1/projects/{id}", "/v1/projects/{pid}", "user", api_key, b'{"settings": {}}'),
    ("query", "POST", "/v1/projects/{id}", "/v1/projects/{pid}", "user", api_key, b'{"settings": {}}'),
    ("query", "GET", "/v1/stats", "/v1/stats", "user", api_key, None),
    ("query", "GET", "/api/locate/{location_id}", "/api/locate/{loc}", "user", api_key, None),
    ("query", "GET", "/api/v2/projects/{id}/config", "/api/v2/projects/{pid}/config", "user", bearer, None),
    (
        "query",
        "POST",
        "/api/v2/projects/{id}/config",
        "/api/v2/projects/{pid}/config?key=scope",
        "user",
        bearer,
        b'"on"',
    ),
    (
        "query",
        "DELETE",
        "/api/v2/projects/{id}/config",
        "/api/v2/projects/{pid}/config?key=scope",
        "user",
        bearer,
        None,
    ),
    ("query", "GET", "/v1/keys", "/v1/keys", "user", api_key, None),
    ("query", "POST", "/v1/keys", "/v1/keys", "user", api_key, b'{"project_id": PID, "label": "scope"}'),
    ("query", "GET", "/v1/keys/{id}", "/v1/keys/{kid}", "user", api_key, None),
    ("query", "DELETE", "/v1/keys/{id}", "/v1/keys/{kid}", "user", api_key, None),
    ("query", "GET", "/v1/tokens", "/v1/tokens", "user", api_key, None),
    ("query", "POST", "/v1/tokens", "/v1/tokens", "user", api_key, b'{"label": "scope"}'),
    ("query", "GET", "/v1/tokens/{id}", "/v1/tokens/{tid}", "user", api_key, None),
    ("query", "DELETE", "/v1/tokens/{id}", "/v1/tokens/{tid}", "user", api_key, None),
    ("query", "GET", "/v1/projects/{id}/webhooks", "/v1/projects/{pid}/webhooks", "user", api_key, None),
    (
        "query",
        "POST",
        "/v1/projects/{id}/webhooks",
        "/v1/projects/{pid}/webhooks",
        "user",
        api_key,
        b'{"url": "https://93.184.216.34/hook", "events": ["error.new"], "enabled": false}',
    ),
    (
        "query",
        "GET",
        "/v1/projects/{id}/webhooks/{hook}",
        "/v1/projects/{pid}/webhooks/{hid}",
        "user",
        api_key,
        None,
    ),
    (
        "query",
        "PATCH",
        "/v1/projects/{id}/webhooks/{hook}",
        "/v1/projects/{pid}/webhooks/{hid}",
        "user",
        api_key,
        b'{"enabled": false}',
    ),
    (
        "query",
        "GET",
        "/v1/projects/{id}/webhooks/{hook}/deliveries",
        "/v1/projects/{pid}/webhooks/{hid}/deliveries",
        "user",
        api_key,
        None,
    ),
    (
        "query",
        "POST",
        "/v1/projects/{id}/webhooks/{hook}/test",
        "/v1/projects/{pid}/webhooks/{hid}/test",
        "user",
        api_key,
        None,
    ),
    (
        "query",
        "DELETE",
        "/v1/projects/{id}/webhooks/{hook}",
        "/v1/projects/{pid}/webhooks/{hid}",
        "user",
        api_key,
        None,
    ),
    ("query", "DELETE", "/v1/projects/{id}", "/v1/projects/{xpid}?confirm={xname}", "user", api_key, None),
]
# Browser-only routes with their own rules, tested in test_pages.py: the page shows a login form
# (401/403) without a user token; /login and /logout take form posts.
BROWSER = {
    ("query", "GET", "/notices/{location_id}"),
    ("query", "POST", "/login"),
    ("query", "POST", "/logout"),
}


def registered(app: Any) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):  # preflights carry no key by design (test_cors.py)
            continue
        if route.method == "*":  # the gateway's catch-all: it answers only 404 / 405
            continue
        info = route.resource.get_info() if route.resource else {}
        out.add((route.method, info.get("path") or info.get("formatter")))
    return out


async def test_the_table_covers_every_route(gateway, query):
    listed = {(s, m, r) for s, m, r, *_ in TABLE} | BROWSER
    for name, client in (("gateway", gateway), ("query", query)):
        missing = {(name, m, p) for m, p in registered(client.server.app)} - listed
        assert not missing, f"routes without scope rules: {sorted(missing)}"


@pytest.fixture
async def ctx(gateway, query, consumer, pool, project, user_token) -> Ctx:
    other = await make_project(pool)
    await reload_keys(gateway, query)
    _, body = await post(gateway, project.key, notice(exception="ScopeTargetError"))
    await drain(consumer)
    resp = await query.post(
        "/v1/deploys",
        json={"environment": "scope", "project_id": project.id},
        headers={"Api-Key": user_token},
    )
    deploy_id = (await resp.json())["id"]
    resp = await query.get(
        f"/v1/errors/{body['error_id']}/notices/{body['id']}", headers={"Api-Key": user_token}
    )
    location = (await resp.json())["location_id"]
    doomed = await make_project(pool)
    async with pool.acquire() as conn:
        key_row, _ = await keys.create_client_key(conn, project.id, "scope")
        token_row, _ = await keys.create_token(conn, "scope")
        hook_id = await conn.fetchval(
            # disabled: a hook only for the scope rules, never sent to (tests stay on 127.0.0.1)
            "INSERT INTO webhooks (project_id, url, events, secret, enabled)"
            " VALUES ($1, $2, $3, $4, false) RETURNING id",
            project.id, "https://93.184.216.34/hook", ["error.new"], "scope-secret",
        )  # fmt: skip
    await reload_keys(gateway, query)
    return Ctx(
        project, other, user_token, body["error_id"], body["id"], location, deploy_id,
        key_row["id"], token_row["id"], doomed, hook_id,
    )  # fmt: skip


@pytest.mark.parametrize("who", [NONE, WRONG, CLIENT, OTHER, USER])
async def test_scope_rules(gateway, query, ctx: Ctx, who: str):
    key = {
        NONE: None,
        WRONG: uuid.uuid4().hex,
        CLIENT: ctx.project.key,
        OTHER: ctx.other.key,
        USER: ctx.token,
    }[who]
    wrong = []
    for service, method, _, path, kind, form, body in TABLE:
        client = gateway if service == "gateway" else query
        url = (
            path.replace("{pid}", str(ctx.project.id))
            .replace("{eid}", str(ctx.error_id))
            .replace("{nid}", ctx.notice_id)
            .replace("{loc}", ctx.location_id)
            .replace("{did}", str(ctx.deploy_id))
            .replace("{kid}", str(ctx.key_id))
            .replace("{tid}", str(ctx.token_id))
            .replace("{xpid}", str(ctx.doomed.id))
            .replace("{xname}", ctx.doomed.name)
            .replace("{hid}", str(ctx.hook_id))
        )
        data = (
            envelope()
            if body == b"E"
            else (
                body.replace(b"PID", str(ctx.project.id).encode())
                .replace(b"EID", str(ctx.error_id).encode())
                .replace(b"NID", ctx.notice_id.encode())
                if body
                else None
            )
        )
        kwargs = form(key)
        kwargs.setdefault("headers", {}).update(JSON if data is not None else {})
        resp = await client.request(method, url, data=data, allow_redirects=False, **kwargs)
        expected = RULES[kind][who]
        got_ok = 200 <= resp.status < 400
        if (expected == OK and not got_ok) or (expected != OK and resp.status != expected):
            wrong.append(
                f"{method} {url} [{kind}] with {who}: got {resp.status}, want {expected}: "
                f"{(await resp.text())[:120]}"
            )
    assert not wrong, "\n".join(wrong)
