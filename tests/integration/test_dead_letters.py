"""What a worker refuses after a 2xx is listed for operators; entries a pre-upgrade gateway queued still drain."""

from __future__ import annotations

import uuid

import orjson

from shared import ids, stream
from shared.fingerprint import VERSION, fingerprint
from shared.protocols.exceptioner import parse_notice
from tests.conftest import drain
from tests.fuzz.payloads import EXCEPTIONER
from tests.integration.test_sentry import ENVELOPE_TYPE
from tests.streams import shard_of


def sentry_headers(key: str) -> dict[str, str]:
    return {"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7", "Content-Type": ENVELOPE_TYPE}


async def post_unusable_envelope(gateway, project, secret: str = "hunter2") -> str:
    """An envelope whose header names the event (so the gateway answers from it) but whose event
    item is no event: 200 at the gateway, nothing a worker can store."""
    event_id = uuid.uuid4().hex
    body = b"\n".join(
        [
            orjson.dumps({"event_id": event_id}),
            orjson.dumps({"type": "event"}),
            orjson.dumps(["not", "an", "event", {"password": secret}]),
        ]
    )
    resp = await gateway.post(f"/api/{project.id}/envelope/", data=body, headers=sentry_headers(project.key))
    assert resp.status == 200 and (await resp.json()) == {"id": event_id}
    return event_id


async def test_refused_after_2xx_is_listed_scrubbed(gateway, query, consumer, project, user_token, settings):
    await post_unusable_envelope(gateway, project)
    dead_before = consumer.dead
    await drain(consumer)
    assert consumer.dead == dead_before + 1
    resp = await query.get(f"/v1/dead-letters?project_id={project.id}", headers={"Api-Key": user_token})
    assert resp.status == 200, await resp.text()
    [letter] = await resp.json()
    assert letter["protocol"] == "sentry" and letter["project_id"] == project.id
    assert "not a JSON object" in letter["reason"]
    assert letter["received_at"] and letter["dead_lettered_at"] and letter["notice_id"]
    assert "hunter2" not in letter["body"] and "[Filtered]" in letter["body"]
    assert letter["body_encoding"] == "utf-8"
    # Nothing in Redis keeps the secret either.
    raw = await consumer.redis.xrevrange(shard_of(settings, project.id).dead, count=10)
    assert raw
    assert all(b"hunter2" not in b"".join(f.values()) for _, f in raw)


async def test_dead_letters_filter_page_and_need_a_user_token(gateway, query, consumer, project, user_token):
    for _ in range(3):
        await post_unusable_envelope(gateway, project)
    await drain(consumer)
    auth = {"Api-Key": user_token}
    resp = await query.get(f"/v1/dead-letters?project_id={project.id}&per_page=2", headers=auth)
    first = await resp.json()
    assert len(first) == 2 and 'rel="next"' in resp.headers["Link"]
    nxt = resp.headers["Link"].split(">")[0].lstrip("<").split("/v1/", 1)[1]
    second = await (await query.get(f"/v1/{nxt}", headers=auth)).json()
    assert [d["id"] for d in second][:1] and second[0]["id"] < first[-1]["id"]
    assert {d["id"] for d in first}.isdisjoint(d["id"] for d in second)
    resp = await query.get(f"/v1/dead-letters?project_id={project.id}&protocol=airbrake", headers=auth)
    assert await resp.json() == []
    for bad in ("before=x", "per_page=0", "project_id=-1"):
        assert (await query.get(f"/v1/dead-letters?{bad}", headers=auth)).status == 422, bad
    assert (await query.get("/v1/dead-letters")).status == 401
    assert (await query.get("/v1/dead-letters", headers={"Api-Key": project.key})).status == 403


async def test_a_format_1_entry_left_by_an_older_gateway_is_stored(
    query, consumer, project, user_token, redis, settings
):
    """Before the thin gateway, entries carried the parsed notice; a stream still holding some drains."""
    notice = parse_notice(EXCEPTIONER)
    fp = fingerprint(notice)
    eid = ids.error_id(project.id, notice["environment"], fp)
    nid = str(ids.uuid7())
    legacy = stream.LegacyNotice(
        nid, str(uuid.uuid4()), project.id, eid, fp, VERSION, notice, orjson.dumps(EXCEPTIONER)
    )
    await redis.xadd(settings.notices_stream, stream.encode_legacy(legacy))
    await drain(consumer)
    resp = await query.get(f"/v1/errors/{eid}/notices/{nid}", headers={"Api-Key": user_token})
    assert resp.status == 200, await resp.text()
    stored = await resp.json()
    assert stored["message"] == EXCEPTIONER["message"] and stored["error_id"] == eid
