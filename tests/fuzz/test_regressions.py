"""What the fuzzers found in the query service, pinned: each of these was a 500 (or a malformed answer)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from shared.timeutil import iso

BIG = "9223372036854775806"  # fits a bigint, not the integer projects.id
NON_V7 = "f4e663c3-d0eb-4c6c-a8c2-bf7e6628ac93"  # a UUIDv4: read as v7, its time is in year 10502


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/v1/errors?project_id=20378146431", None, 422),
        ("GET", "/v1/stats?project_id=30054455979011129344", None, 422),
        ("GET", "/v1/deploys?page=99999999999999999999", None, 422),
        ("GET", f"/v1/projects/{BIG}", None, 404),
        ("PATCH", f"/v1/projects/{BIG}", {"settings": {"retention_days": 30}}, 404),
        ("GET", f"/api/v2/projects/{BIG}/config", None, 404),
        ("DELETE", f"/api/v2/projects/{BIG}/config?key=k", None, 404),
        ("POST", "/v1/deploys", {"environment": "production", "project_id": 1 << 40}, 422),
        ("GET", "/v1/errors?since=0001-01-01T00:00:00%2B14:00", None, 422),
        ("GET", "/v1/errors?until=1e300", None, 422),
        ("GET", "/v1/errors?since=nan", None, 422),
        ("GET", "/v1/errors/1/stats?until=0001-01-01T00:00:00Z", None, 422),
        ("GET", f"/v1/errors/1/notices/{NON_V7}", None, 404),
        ("GET", "/v1/errors?q=%00", None, 422),
        ("GET", "/v1/deploys?environment=a%00", None, 422),
        ("POST", "/v1/deploys", {"environment": "prod\u0000"}, 422),
        ("POST", "/v1/projects", {"name": "a\u0000b"}, 422),
        ("PATCH", "/v1/projects/1", {"settings": {"app_patterns": ["a\u0000"]}}, 422),
        ("POST", "/api/v2/projects/1/config?key=a%00", "true", 400),
    ],
)
async def test_malformed_reads_and_writes_are_4xx(
    query: TestClient, user_token: str, method: str, path: str, body: Any, status: int
) -> None:
    resp = await query.request(method, path, json=body, headers={"Api-Key": user_token})
    assert resp.status == status, await resp.text()


async def test_login_form_without_its_multipart_boundary_is_400(query: TestClient) -> None:
    resp = await query.post("/login", data=b"token=x", headers={"Content-Type": "multipart/form-data"})
    assert resp.status == 400
    assert resp.content_type == "text/html"


def test_times_before_year_1000_keep_four_year_digits() -> None:
    assert iso(dt.datetime(207, 1, 23, 14, 39, 39, tzinfo=dt.UTC)) == "0207-01-23T14:39:39Z"
