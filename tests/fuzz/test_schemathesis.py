"""Both services against their own OpenAPI descriptions, with schemathesis.

The spec is loaded from the running service's `/openapi.json`; every operation gets its examples, the
coverage phase's boundary and negative cases, and a bounded number of generated ones, each checked for:
no 5xx, a documented status code, a documented content type, and a body matching the documented schema.
Path ids are drawn half the time from what really exists (schemathesis dictionaries), so the answers
with bodies are exercised too, not only the 404s.

The services run on the session's event loop (tests/conftest.py), so a test hands each blocking
`requests` call to a thread and runs the loop until it returns.
"""

from __future__ import annotations

import asyncio
import collections
import os
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
import schemathesis
from aiohttp.test_utils import TestClient
from hypothesis import settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.worker.consumer import Consumer
from shared.settings import Settings
from tests.conftest import ProjectInfo, drain, make_project, reload_keys
from tests.fuzz.payloads import EXCEPTIONER
from tests.fuzz.stored import assert_all_stored

# not_a_server_error: no 5xx. status_code_conformance / content_type_conformance: the answer's status
# and media type are documented for the operation. response_schema_conformance: its body matches.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = int(os.environ.get("FAULTLINE_SCHEMATHESIS_EXAMPLES") or 25)  # generated cases per operation
RANDOM = bool(os.environ.get("FAULTLINE_FUZZ_RANDOM"))  # a fresh hunt instead of the fixed CI run
BOUNDED = settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None)
REAL = 0.5  # how often a path id is one that exists


@schemathesis.serializer("application/x-sentry-envelope")
def _envelope(ctx: Any, value: Any) -> bytes:
    """Sentry envelopes are newline-separated JSON: sent as the text the schema generated."""
    return value if isinstance(value, bytes) else str(value).encode()


@dataclass
class Live:
    """One running service: where it listens, the credential it needs, and what it answered."""

    loop: asyncio.AbstractEventLoop
    base_url: str
    headers: dict[str, str]
    statuses: dict[str, collections.Counter[int]] = field(default_factory=dict)

    def check(self, case: schemathesis.Case) -> None:
        # The loop is idle between tests: run it (serving the app) while the call blocks a thread.
        response = self.loop.run_until_complete(
            asyncio.to_thread(case.call, base_url=self.base_url, headers=self.headers, timeout=30)
        )
        self.statuses.setdefault(case.operation.label, collections.Counter())[response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=self.headers)


def config(dictionaries: dict[str, list[Any]]) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "generation": {
                "max-examples": EXAMPLES,
                "with-security-parameters": False,
                "database": "none",
                "deterministic": not RANDOM,
            },
            "dictionaries": {name: {"values": values} for name, values in dictionaries.items() if values},
            "parameters": {
                f"path.{name}": {"dictionary": name, "probability": REAL}
                for name, values in dictionaries.items()
                if values
            },
        }
    )


async def _load(client: TestClient, cfg: SchemathesisConfig) -> BaseSchema:
    url = str(client.make_url("/openapi.json"))
    return await asyncio.to_thread(schemathesis.openapi.from_url, url, config=cfg, timeout=30)


@dataclass(frozen=True)
class Target:
    """A project of this module's own with an error, a notice and a deploy stored."""

    project: ProjectInfo
    ids: dict[str, list[Any]]


@pytest.fixture(scope="module")
async def target(
    pool: asyncpg.Pool, gateway: TestClient, query: TestClient, consumer: Consumer, user_token: str
) -> Target:
    project = await make_project(pool, "schemathesis")
    await reload_keys(gateway, query)
    resp = await gateway.post("/v1/notices", json=EXCEPTIONER, headers={"Api-Key": project.key})
    assert resp.status == 201, await resp.text()
    resp = await query.post(
        "/v1/deploys",
        json={"environment": "production", "project_id": project.id},
        headers={"Api-Key": user_token},
    )
    assert resp.status == 201, await resp.text()
    deploy = (await resp.json())["id"]
    await drain(consumer)
    async with pool.acquire() as conn:
        notices = await conn.fetch(
            "SELECT id, error_id, location_id FROM notices WHERE project_id = $1", project.id
        )
    assert notices
    errors = sorted({r["error_id"] for r in notices})
    return Target(
        project,
        {
            "id": [*errors, project.id, deploy, *(str(r["id"]) for r in notices)],
            "error_id": errors,
            "location_id": [str(r["location_id"]) for r in notices],
        },
    )


@pytest.fixture(scope="module")
async def gateway_live(gateway: TestClient, target: Target) -> Live:
    return Live(
        asyncio.get_running_loop(), str(gateway.make_url("")).rstrip("/"), {"Api-Key": target.project.key}
    )


@pytest.fixture(scope="module")
async def gateway_api(gateway: TestClient, target: Target) -> BaseSchema:
    return await _load(gateway, config({"project_id": [target.project.id, str(target.project.id)]}))


@pytest.fixture(scope="module")
async def query_live(query: TestClient, user_token: str) -> Live:
    return Live(asyncio.get_running_loop(), str(query.make_url("")).rstrip("/"), {"Api-Key": user_token})


@pytest.fixture(scope="module")
async def query_api(query: TestClient, target: Target) -> BaseSchema:
    return await _load(query, config(target.ids))


@pytest.fixture(autouse=True)
def _lazy_schema_node_id(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's lazy schemas read and write `node._nodeid`, which pytest 9.2 no longer has."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


gateway_schema = schemathesis.pytest.from_fixture("gateway_api")
query_schema = schemathesis.pytest.from_fixture("query_api")


@gateway_schema.parametrize()
@BOUNDED
def test_gateway_conforms_to_its_openapi(case: schemathesis.Case, gateway_live: Live) -> None:
    gateway_live.check(case)


@query_schema.parametrize()
@BOUNDED
def test_query_conforms_to_its_openapi(case: schemathesis.Case, query_live: Live) -> None:
    query_live.check(case)


async def test_what_schemathesis_sent_was_accepted_and_stored(
    gateway_live: Live, query_live: Live, consumer: Consumer, redis: aioredis.Redis, settings: Settings
) -> None:
    """Every ingest protocol's documented example got through, and a worker stores all it accepted."""
    accepted = {
        label: sum(n for s, n in counts.items() if s < 300) for label, counts in gateway_live.statuses.items()
    }
    for label in (
        "POST /v1/notices",
        "POST /notify",
        "POST /api/{project_id}/envelope/",
        "POST /api/{project_id}/store/",
        "POST /api/v3/projects/{project_id}/notices",
        "POST /api/v2/events",
    ):
        assert accepted.get(label), (label, gateway_live.statuses.get(label))
    for label, counts in sorted({**gateway_live.statuses, **query_live.statuses}.items()):
        print(f"{label:90s} {sum(counts.values()):4d} {dict(sorted(counts.items()))}")
    await assert_all_stored(consumer, redis, settings)
