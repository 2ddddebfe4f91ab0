"""The real SDKs, unmodified, against the gateway on a real socket: sentry-sdk and pybrake (PyPI),
@sentry/node and @airbrake/node (npm). Each runs as its own process, as an application would, and
points at Faultline with its one line of configuration; what they sent is read back through the query API.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import ProjectInfo, drain
from tests.integration.test_sentry import stored

NODE_DIR = Path(__file__).resolve().parents[1] / "node_sentry"
TIMEOUT = 90.0

# The application code both Python SDKs report from (pybrake rewrites its path to /PROJECT_ROOT/shop.py).
SHOP_PY = """\
class PaymentError(Exception):
    pass


def charge(amount):
    prices = {}
    return prices[amount]


def checkout(amount):
    try:
        charge(amount)
    except KeyError as e:
        raise PaymentError(f"card declined for {amount}") from e


def run(amount, report):
    try:
        checkout(amount)
    except Exception as e:
        return report(e)
"""

# argv: DSN AMOUNT COMPRESSION ("br" is what sentry-sdk picks by itself when brotli is importable)
SENTRY_PY = """\
import json, sys
import sentry_sdk
import shop

dsn, amount, algo = sys.argv[1], int(sys.argv[2]), sys.argv[3]
options = {} if algo == "br" else {"_experiments": {"transport_compression_algo": algo}}
sentry_sdk.init(dsn=dsn, environment="production", release="shop@1.0", **options)
sentry_sdk.set_user({"id": "u-7", "email": "u7@example.com"})
answer = {
    "exception": shop.run(amount, sentry_sdk.capture_exception),
    "message": sentry_sdk.capture_message("stock low for sku 42"),
    "compression": sentry_sdk.get_client().transport._compression_algo,
}
sentry_sdk.flush(timeout=30)
print(json.dumps(answer))
"""

# argv: HOST PROJECT_ID PROJECT_KEY AMOUNT
PYBRAKE_PY = """\
import json, sys
import pybrake
import shop

host, project_id, key, amount = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
notifier = pybrake.Notifier(project_id=project_id, project_key=key, host=host, environment="production")
notice = shop.run(amount, notifier.notify_sync)
if notice.get("error"):
    sys.exit(f"pybrake: {notice['error']}")
print(json.dumps({"id": notice["id"]}))
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    for name, text in (
        ("shop.py", SHOP_PY),
        ("report_sentry.py", SENTRY_PY),
        ("report_pybrake.py", PYBRAKE_PY),
    ):
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.fixture(scope="module")
def node_sdks() -> Path:
    """tests/node_sentry with its npm packages installed (once; node_modules stays out of git)."""
    if not (shutil.which("node") and shutil.which("npm")):
        if os.environ.get("CI") == "true":  # on CI a missing runtime is a failure, never a quiet skip
            pytest.fail("needs node and npm to drive @sentry/node and @airbrake/node (CI=true)")
        pytest.skip("needs node and npm to drive @sentry/node and @airbrake/node")
    wanted = (
        NODE_DIR / "node_modules" / "@sentry" / "node",
        NODE_DIR / "node_modules" / "@airbrake" / "node",
    )
    if not all(p.is_dir() for p in wanted):
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
    return NODE_DIR


async def run(*argv: str, cwd: Path) -> dict[str, Any]:
    """Run a reporter to completion (it flushes before exiting); its last stdout line is JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "AIRBRAKE_"))}
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    return orjson.loads(out.decode().strip().splitlines()[-1])


def base(gateway: TestClient) -> tuple[str, str]:
    """(host:port, http://host:port) of the gateway."""
    url = gateway.make_url("/")
    return f"{url.host}:{url.port}", f"http://{url.host}:{url.port}"


def dsn(gateway: TestClient, project: ProjectInfo) -> str:
    return f"http://{project.key}@{base(gateway)[0]}/{project.id}"


async def report_sentry_py(
    gateway: TestClient, project: ProjectInfo, app: Path, amount: int = 42, algo: str = "br"
) -> dict[str, Any]:
    return await run(sys.executable, "report_sentry.py", dsn(gateway, project), str(amount), algo, cwd=app)


async def report_pybrake(
    gateway: TestClient, project: ProjectInfo, app: Path, amount: int = 42
) -> dict[str, Any]:
    return await run(
        sys.executable,
        "report_pybrake.py",
        base(gateway)[1],
        str(project.id),
        project.key,
        str(amount),
        cwd=app,
    )


def by_reference(notices: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n["reference_id"]: n for n in notices if n["reference_id"]}


def functions(exc: dict[str, Any]) -> list[str | None]:
    return [f["function"] for f in exc["frames"]]


@pytest.mark.parametrize("algo", ["br", "gzip"])
async def test_sentry_sdk_exception_with_cause_message_and_user(
    gateway, query, consumer, project, user_token, app_dir, algo
):
    answer = await report_sentry_py(gateway, project, app_dir, algo=algo)
    assert answer["compression"] == algo  # what the SDK really sent with
    await drain(consumer)
    notices = by_reference(await stored(query, user_token, project.id))
    exc, msg = notices[answer["exception"]], notices[answer["message"]]
    assert exc["protocol"] == "sentry" and exc["mode"] == "production" and exc["level"] == "error"
    assert exc["exception"] == "PaymentError" and exc["message"] == "card declined for 42"
    outer, cause = exc["exceptions"]
    assert (outer["type"], cause["type"], cause["message"]) == ("PaymentError", "KeyError", "42")
    assert functions(outer) == ["checkout", "run"] and functions(cause) == ["charge", "checkout"]
    top = outer["frames"][0]
    assert (top["file"], top["line"], top["in_app"]) == ("shop.py", 14, True)
    assert top["context_line"].strip() == 'raise PaymentError(f"card declined for {amount}") from e'
    assert exc["backtrace"][0] == "shop.py:14:in `checkout`"
    assert exc["user"] == {"id": "u-7", "email": "u7@example.com"} and exc["release"] == "shop@1.0"
    assert exc["context"]["runtime"]["name"] == "CPython"
    assert msg["message"] == "stock low for sku 42" and msg["exception"] is None and msg["level"] == "info"
    assert msg["user"] == exc["user"] and msg["mode"] == "production"


async def test_pybrake_notifies_an_exception(gateway, query, consumer, project, user_token, app_dir):
    answer = await report_pybrake(gateway, project, app_dir)
    await drain(consumer)
    [n] = await stored(query, user_token, project.id)
    assert n["id"] == answer["id"] and n["protocol"] == "airbrake"
    assert (
        n["exception"] == "PaymentError"
        and n["message"] == "card declined for 42"
        and n["mode"] == "production"
    )
    outer, cause = n["exceptions"]
    assert functions(outer) == ["checkout", "run"] and functions(cause) == ["charge", "checkout"]
    assert outer["frames"][0]["file"] == "/PROJECT_ROOT/shop.py" and outer["frames"][0]["line"] == 14
    assert outer["frames"][0]["context_line"].strip().startswith("raise PaymentError")
    assert n["context"]["notifier"]["name"] == "pybrake" and n["hostname"]


async def test_python_sdks_group_the_same_exception_together(
    gateway, query, consumer, project, user_token, app_dir
):
    sentry = await report_sentry_py(gateway, project, app_dir, amount=42)
    airbrake = await report_pybrake(gateway, project, app_dir, amount=7)
    await drain(consumer)
    notices = await stored(query, user_token, project.id)
    exc = by_reference(notices)[sentry["exception"]]
    [brake] = [n for n in notices if n["id"] == airbrake["id"]]
    assert exc["error_id"] == brake["error_id"]
    error = await (await query.get(f"/v1/errors/{exc['error_id']}", headers={"Api-Key": user_token})).json()
    assert error["notices_count"] == 2 and error["exception"] == "PaymentError"


# ---- JavaScript ------------------------------------------------------------------------------


async def report_sentry_node(
    gateway: TestClient, project: ProjectInfo, node: Path, amount: int = 7
) -> dict[str, Any]:
    return await run("node", "report.mjs", "sentry", str(amount), dsn(gateway, project), cwd=node)


async def report_airbrake_node(
    gateway: TestClient, project: ProjectInfo, node: Path, amount: int = 7
) -> dict[str, Any]:
    return await run(
        "node",
        "report.mjs",
        "airbrake",
        str(amount),
        base(gateway)[1],
        str(project.id),
        project.key,
        cwd=node,
    )


@pytest.mark.node
@pytest.mark.e2e
async def test_sentry_node_captures_an_exception(gateway, query, consumer, project, user_token, node_sdks):
    answer = await report_sentry_node(gateway, project, node_sdks)
    await drain(consumer)
    n = by_reference(await stored(query, user_token, project.id))[answer["id"]]
    assert n["protocol"] == "sentry" and n["mode"] == "production" and n["release"] == "1.0"
    assert n["exception"] == "RangeError" and n["message"] == "card declined for 7"
    frames = n["exceptions"][0]["frames"]
    assert functions(n["exceptions"][0])[:3] == ["checkout", "run", None]
    assert frames[0]["file"].endswith("/node_sentry/shop.mjs") and frames[0]["line"] == 11
    assert frames[0]["context_line"].strip().startswith("throw new RangeError")
    assert n["user"] == {"id": "u42", "email": "u42@example.com"} and n["context"]["platform"] == "node"


@pytest.mark.node
@pytest.mark.e2e
async def test_airbrake_node_notifies_an_exception(
    gateway, query, consumer, project, user_token, settings, node_sdks
):
    answer = await report_airbrake_node(gateway, project, node_sdks)
    assert answer["url"].startswith(f"{settings.public_url}/locate/")
    await drain(consumer)
    [n] = await stored(query, user_token, project.id)
    assert n["id"] == answer["id"] and n["protocol"] == "airbrake" and n["mode"] == "production"
    assert n["exception"] == "RangeError" and n["message"] == "card declined for 7"
    frames = n["exceptions"][0]["frames"]
    assert functions(n["exceptions"][0])[:3] == ["checkout", "run", None]
    assert frames[0]["file"].endswith("/node_sentry/shop.mjs") and frames[0]["column"] == 9
    assert n["context"]["notifier"]["name"] == "airbrake-js/node"


@pytest.mark.node
@pytest.mark.e2e
async def test_javascript_sdks_group_the_same_exception_together(
    gateway, query, consumer, project, user_token, node_sdks
):
    sentry = await report_sentry_node(gateway, project, node_sdks, amount=7)
    airbrake = await report_airbrake_node(gateway, project, node_sdks, amount=9)
    await drain(consumer)
    notices = await stored(query, user_token, project.id)
    by_protocol = {n["protocol"]: n for n in notices}
    assert (
        by_protocol["sentry"]["reference_id"] == sentry["id"]
        and by_protocol["airbrake"]["id"] == airbrake["id"]
    )
    assert by_protocol["sentry"]["error_id"] == by_protocol["airbrake"]["error_id"]
