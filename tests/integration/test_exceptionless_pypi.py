"""The PyPI `exceptionless` client (0.1.0) against the gateway.

It hard-codes `https://api.exceptionless.com/api/v2` as EXCEPTIONLESS_API_ROOT, imported by value into
two modules; pointing both at Faultline is all it takes. It validates its key with
`GET /projects/config` (wants 200), then posts one event with its Python traceback as `"@stack"`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from exceptionless import ExceptionlessUtils as utils_module
from exceptionless import ExceptionSystem
from exceptionless import System as system_module

from tests.conftest import ProjectInfo, drain


def charge(amount: int) -> None:
    raise ValueError(f"bad price: {amount}")


def send_failure(system: ExceptionSystem) -> dict[str, Any]:
    try:
        charge(-3)
    except ValueError as e:
        return system.send(e)
    raise AssertionError("charge() did not raise")


@pytest.fixture
def client_root(gateway: TestClient, monkeypatch: pytest.MonkeyPatch) -> str:
    """Patch the client's API root in both modules that imported it."""
    root = str(gateway.make_url("/api/v2"))
    monkeypatch.setattr(utils_module, "EXCEPTIONLESS_API_ROOT", root)
    monkeypatch.setattr(system_module, "EXCEPTIONLESS_API_ROOT", root)
    return root


# The client calls datetime.utcnow(), deprecated from Python 3.12 on.
@pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")
async def test_pypi_client_reports_an_exception(
    client_root, gateway, query, consumer, project: ProjectInfo, user_token
):
    system = ExceptionSystem()
    await asyncio.to_thread(system.initialize, project.key, {"customer": "acme"})
    assert await asyncio.to_thread(send_failure, system) == {}  # 202 with an empty body
    await drain(consumer)
    auth = {"Api-Key": user_token}
    [error] = await (await query.get(f"/v1/errors?project_id={project.id}&type=error", headers=auth)).json()
    [listed] = await (await query.get(f"/v1/errors/{error['id']}/notices", headers=auth)).json()
    n = await (await query.get(f"/v1/errors/{error['id']}/notices/{listed['id']}", headers=auth)).json()
    assert (n["protocol"], n["type"], n["exception"]) == ("exceptionless", "error", "ValueError")
    assert n["message"] == "bad price: -3"
    frames = n["exceptions"][0]["frames"]
    assert [f["function"] for f in frames[:2]] == ["charge", "send_failure"]  # innermost first
    assert frames[0]["file"].endswith("test_exceptionless_pypi.py")
    assert n["data"] == {"customer": "acme"}
    assert n["context"]["environment"]["python_version"]


async def test_pypi_client_refuses_a_bad_key(client_root):
    with pytest.raises(RuntimeError, match="invalid Exceptionless API key"):
        await asyncio.to_thread(ExceptionSystem().initialize, "0123456789abcdef0123456789abcdef", {})
