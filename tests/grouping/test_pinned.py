"""Grouping does not move: what every protocol's real requests are grouped as is pinned.

`pinned.json` was written before the gateway stopped parsing notices (the thin-gateway change), by
`FAULTLINE_WRITE_PINS=1 pytest tests/grouping/test_pinned.py` against that code. A change that moves any of these notices
to another group splits data already stored; such a change needs a grouping version (docs/grouping.md),
not a new pin.
"""

from __future__ import annotations

import json
import os
import pathlib

from shared import ids
from shared.fingerprint import fingerprint
from tests.bench.stack import Project
from tests.conftest import drain, reload_keys
from tests.grouping import corpus, wire

PINS = pathlib.Path(__file__).with_name("pinned.json")


async def observed(gateway, consumer, pool, project) -> dict[str, list[list[str]]]:
    """name -> [[environment, fingerprint, error id relative to the project], ...] for each request."""
    out: dict[str, list[list[str]]] = {}
    p = Project(project.id, project.key)
    for name, r in wire.requests(p):
        resp = await gateway.request(r.method, r.path, headers=r.headers, data=r.body)
        assert resp.status < 300, (name, resp.status, await resp.text())
        async with pool.acquire() as conn:
            before = await conn.fetchval("SELECT count(*) FROM notices WHERE project_id = $1", project.id)
        await drain(consumer)
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT environment, fingerprint, error_id FROM notices WHERE project_id = $1"
                " ORDER BY id OFFSET $2",
                project.id,
                before,
            )
        assert rows, f"{name}: nothing stored"
        for r_ in rows:
            assert r_["error_id"] == ids.error_id(project.id, r_["environment"], r_["fingerprint"]), name
        out[name] = [[r_["environment"], r_["fingerprint"]] for r_ in rows]
    return out


async def set_settings(pool, project_id: int, settings: dict, gateway, consumer) -> None:
    """Merge project settings and make the gateway's key cache and the worker see them at once."""
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE projects SET settings = settings || $2::jsonb WHERE id = $1", project_id, settings
        )
    await reload_keys(gateway)
    await consumer.load_projects()


def corpus_fingerprints() -> dict[str, str]:
    return {c.name: fingerprint(c.notice) for c in corpus.CORPUS}


async def test_error_ids_of_real_requests_are_pinned(gateway, consumer, pool, project):
    # The pins predate the per-project default environment: pinned with none ("", the old behaviour);
    # the default itself is tested in tests/integration/test_default_environment.py.
    await set_settings(pool, project.id, {"default_environment": ""}, gateway, consumer)
    got = await observed(gateway, consumer, pool, project)
    if os.environ.get("FAULTLINE_WRITE_PINS") == "1":  # regenerate: only with a grouping version change
        PINS.write_text(
            json.dumps({"wire": got, "corpus": corpus_fingerprints()}, indent=1, sort_keys=True) + "\n"
        )
    pins = json.loads(PINS.read_text())
    moved = sorted(name for name in pins["wire"] if got.get(name) != pins["wire"][name])
    assert not moved, f"grouping moved for {moved[:10]}"
    assert got.keys() == pins["wire"].keys()


def test_corpus_fingerprints_are_pinned():
    assert corpus_fingerprints() == json.loads(PINS.read_text())["corpus"]
