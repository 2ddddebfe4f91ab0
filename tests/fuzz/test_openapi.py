"""Both services serve an OpenAPI 3.0.3 description of every route they have."""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestClient

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def routes(client: TestClient) -> set[tuple[str, str]]:
    """(method, path template) of every route the app answers, HEAD aside (aiohttp adds it to each GET), and preflights (described once, services/gateway/openapi.py)."""
    app = client.server.app
    assert app is not None
    out = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):  # OPTIONS: the CORS preflight of each ingest route
            continue
        if route.method == "*":  # the gateway's catch-all (shared.web.not_matched_route): 404 / 405 only
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")  # formatter: the template without the regexes
        out.add((route.method.lower(), re.sub(r"\{(\w+):.*?\}(?=/|$)", r"{\1}", path)))
    return out


@pytest.mark.parametrize("service", ["gateway", "query"])
async def test_every_route_is_documented(service: str, gateway: TestClient, query: TestClient) -> None:
    client = gateway if service == "gateway" else query
    resp = await client.get("/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    doc = await resp.json()
    assert doc["openapi"] == "3.0.3"
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops if method in METHODS}
    assert routes(client) - documented == set()
    assert documented - routes(client) == set()
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for ops in doc["paths"].values():
        for op in ops.values():
            assert op["responses"], op["operationId"]
            for name in op.get("security", []):
                assert set(name) <= set(doc["components"]["securitySchemes"])
