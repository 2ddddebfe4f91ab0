"""A project's default environment (issue 18): notices whose protocol carries none are filed under it,
every protocol alike, and errors stored environment-less before it existed keep their ids and counts."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from tests.conftest import ProjectInfo, drain, reload_keys
from tests.integration.test_exceptioner import notice, post
from tests.integration.test_hoptoad import AIRBRAKE_GEM, EXCEPTIONER_BACKTRACE, answer_ids, located
from tests.integration.test_hoptoad import post as post_xml


def without_mode(**kw: Any) -> dict[str, Any]:
    body = notice(**kw)
    del body["error"]["mode"]
    return body


async def patch(query: TestClient, token: str, project_id: int, settings: dict[str, Any]):
    return await query.patch(
        f"/v1/projects/{project_id}", headers={"Api-Key": token}, json={"settings": settings}
    )


async def set_default(query, gateway, consumer, token: str, project_id: int, value: Any) -> None:
    resp = await patch(query, token, project_id, {"default_environment": value})
    assert resp.status == 200, await resp.text()
    await reload_keys(gateway, query)
    await consumer.load_projects()


async def error(query: TestClient, token: str, error_id: int) -> dict[str, Any]:
    resp = await query.get(f"/v1/errors/{error_id}", headers={"Api-Key": token})
    assert resp.status == 200
    return await resp.json()


async def test_production_unless_changed_and_every_protocol_alike(
    gateway, query, consumer, project: ProjectInfo, user_token
):
    # Exceptioner without `mode` and the airbrake gem's v2 XML naming production: one error.
    body = without_mode(
        exception="NoMethodError",
        message="undefined method `upcase' for nil:NilClass",
        backtrace=EXCEPTIONER_BACKTRACE,
    )
    status, answered = await post(gateway, project.key, body)
    assert status == 201
    status, text, _ = await post_xml(gateway, AIRBRAKE_GEM.format(key=project.key))
    _, location_id = answer_ids(text)
    # An Exceptionless event never carries an environment.
    resp = await gateway.post(
        "/api/v2/events",
        data=orjson.dumps({"type": "log", "message": "cart saved", "source": "app.checkout"}),
        headers={"Authorization": f"Bearer {project.key}", "Content-Type": "application/json"},
    )
    assert resp.status == 202
    await drain(consumer)
    n = await located(query, user_token, location_id)
    assert n["error_id"] == answered["error_id"]  # the answered id is the stored one
    e = await error(query, user_token, answered["error_id"])
    assert (e["mode"], e["notices_count"]) == ("production", 2)
    logs = await (
        await query.get(f"/v1/errors?project_id={project.id}&type=log", headers={"Api-Key": user_token})
    ).json()
    assert [x["mode"] for x in logs] == ["production"]


async def test_a_changed_default_and_its_validation(gateway, query, consumer, project, user_token):
    await set_default(query, gateway, consumer, user_token, project.id, "staging")
    status, answered = await post(gateway, project.key, without_mode(exception="StagingError"))
    assert status == 201
    await drain(consumer)
    assert (await error(query, user_token, answered["error_id"]))["mode"] == "staging"
    for bad in (42, "x" * 101, "a\x00b", ["production"]):
        resp = await patch(query, user_token, project.id, {"default_environment": bad})
        assert resp.status == 422, bad
        body = await resp.json()
        assert body["errors"][0]["field"] == "settings.default_environment"


async def test_errors_stored_environment_less_keep_their_ids_and_counts(
    gateway, query, consumer, project, user_token
):
    # Stored as before the setting existed: no environment.
    await set_default(query, gateway, consumer, user_token, project.id, "")
    status, old = await post(gateway, project.key, without_mode(exception="LegacyError"))
    assert status == 201
    await drain(consumer)
    legacy = await error(query, user_token, old["error_id"])
    assert (legacy["mode"], legacy["notices_count"]) == (None, 1)
    # Back to the default ("production"): the same error keeps counting under its old id; a new
    # one starts in production. Both in one batch (one look-up for the batch).
    await set_default(query, gateway, consumer, user_token, project.id, None)
    status, again = await post(gateway, project.key, without_mode(exception="LegacyError"))
    assert status == 201
    status, fresh = await post(gateway, project.key, without_mode(exception="FreshError"))
    assert status == 201
    await drain(consumer)
    legacy = await error(query, user_token, old["error_id"])
    assert (legacy["mode"], legacy["notices_count"]) == (None, 2)
    h = {"Api-Key": user_token}
    notices = await (await query.get(f"/v1/errors/{old['error_id']}/notices", headers=h)).json()
    assert again["id"] in {n["id"] for n in notices}
    assert (await error(query, user_token, fresh["error_id"]))["mode"] == "production"
    listed = await (await query.get(f"/v1/errors?project_id={project.id}", headers=h)).json()
    assert {e["id"] for e in listed} == {old["error_id"], fresh["error_id"]}
