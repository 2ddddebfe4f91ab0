"""What older and other real clients lost (issue 18), each client run unmodified as its own process.

raven (Node) 2.6.4 from npm (tests/node_raven), raven 6.10.0 and airbrake 2.2.0 from PyPI, pybrake and
sentry-sdk with `enable_logs`: every result is read back through the query API.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import ProjectInfo, drain
from tests.integration.test_sentry import stored
from tests.integration.test_sentry_airbrake_sdks import app_dir, base, dsn, report_pybrake, run  # noqa: F401

RAVEN_NODE_DIR = Path(__file__).resolve().parents[1] / "node_raven"

# argv: DSN. raven-python reports an exception and a message; its default level is logging.ERROR (40).
RAVEN_PY = """\
import json, sys, warnings
warnings.simplefilter("ignore")
from raven import Client
from raven.transport.http import HTTPTransport

client = Client(sys.argv[1], transport=HTTPTransport, environment="production", release="shop@3.0",
                install_sys_hook=False, enable_breadcrumbs=False)
def charge(amount):
    return {}[amount]
try:
    charge(42)
except KeyError:
    exc = client.captureException()
msg = client.captureMessage("stock low for sku 42")
warn = client.captureMessage("disk at 91%", level=30)
print(json.dumps({"exception": exc, "message": msg, "warning": warn}))
"""

# argv: DSN. sentry-sdk with logs on: two log records, a transaction (dropped), flushed.
SENTRY_LOGS_PY = """\
import json, sys
import sentry_sdk

sentry_sdk.init(dsn=sys.argv[1], environment="production", release="shop@1.0", enable_logs=True,
                traces_sample_rate=1.0)
with sentry_sdk.start_transaction(name="checkout", op="task"):
    with sentry_sdk.start_span(op="db", name="select"):
        pass
sentry_sdk.logger.warning("stock low for {sku}", sku="A-1")
sentry_sdk.logger.error("payment provider down")
sentry_sdk.flush(timeout=30)
print(json.dumps({"ok": True}))
"""

# argv: HOST PROJECT_ID KEY. PyPI airbrake 2.2.0 (airbrake-python): frames from extract_tb, oldest first.
AIRBRAKE_PY = """\
import json, sys, logging
import airbrake
import shop

host, project_id, key = sys.argv[1], sys.argv[2], sys.argv[3]
ab = airbrake.Airbrake(project_id=project_id, api_key=key, host=host, environment="production")
def report(e):
    response = ab.notify(e)
    return response.json()
print(json.dumps(shop.run(42, report)))
"""


def seconds(stamp: str) -> float:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


@pytest.fixture(scope="module")
def raven_node() -> Path:
    """tests/node_raven with raven 2.6.4 installed (once; node_modules stays out of git)."""
    if not (shutil.which("node") and shutil.which("npm")):
        if os.environ.get("CI") == "true":
            pytest.fail("needs node and npm to drive raven (Node) 2.6.4 (CI=true)")
        pytest.skip("needs node and npm to drive raven (Node) 2.6.4")
    if not (RAVEN_NODE_DIR / "node_modules" / "raven").is_dir():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund"],
            cwd=RAVEN_NODE_DIR,
            check=True,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
    return RAVEN_NODE_DIR


async def test_raven_node_millisecond_sentry_timestamp(
    gateway, query, consumer, project, user_token, raven_node
):
    answer = await run("node", "report.cjs", dsn(gateway, project), cwd=raven_node)
    await drain(consumer)
    [n] = await stored(query, user_token, project.id)
    assert n["reference_id"] == answer["id"].replace("-", "")
    assert n["exception"] == "TypeError" and n["level"] == "error"
    # raven-node's sentry_timestamp is in ms: read as ms, no 30-day "clock drift" clamp
    assert abs(seconds(n["occurred_at"]) - answer["sent_ms"] / 1000) < 60


async def test_raven_python_numeric_levels(gateway, query, consumer, project, user_token, tmp_path):
    (tmp_path / "report_raven.py").write_text(RAVEN_PY)
    answer = await run(sys.executable, "report_raven.py", dsn(gateway, project), cwd=tmp_path)
    await drain(consumer)
    notices = {n["reference_id"]: n for n in await stored(query, user_token, project.id)}
    assert notices[answer["exception"]]["level"] == "error"  # sent as 40
    assert notices[answer["message"]]["level"] == "error"
    assert notices[answer["warning"]]["level"] == "warning"  # sent as 30
    assert notices[answer["exception"]]["exception"] == "KeyError"
    stamp = seconds(notices[answer["exception"]]["occurred_at"])
    assert abs(stamp - time.time()) < 120


async def test_missing_level_on_an_exception_is_error(gateway, query, consumer, project, user_token):
    # raven-js 3.x leaves `level` out of exceptions it captures (Sentry reads them as error).
    from tests.integration.test_sentry import envelope, event, send

    ev = event()
    del ev["level"]
    status, _, _ = await send(gateway, project, envelope(({"type": "event"}, ev)))
    assert status == 200
    await drain(consumer)
    [n] = await stored(query, user_token, project.id)
    assert n["level"] == "error"


async def dropped(gateway: TestClient) -> dict[str, float]:
    text = await (await gateway.get("/metrics")).text()
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^\w*sentry_items_dropped_total\{type="(\w+)"\} ([0-9.e+]+)$', text, re.M)
    }


async def test_sentry_sdk_logs_are_stored_and_transactions_counted(
    gateway, query, consumer, project: ProjectInfo, user_token, tmp_path
):
    before = await dropped(gateway)
    (tmp_path / "report_logs.py").write_text(SENTRY_LOGS_PY)
    await run(sys.executable, "report_logs.py", dsn(gateway, project), cwd=tmp_path)
    await drain(consumer)
    h = {"Api-Key": user_token}
    errors = await (await query.get(f"/v1/errors?project_id={project.id}&type=log", headers=h)).json()
    logs = []
    for e in errors:
        for n in await (await query.get(f"/v1/errors/{e['id']}/notices", headers=h)).json():
            logs.append(await (await query.get(f"/v1/errors/{e['id']}/notices/{n['id']}", headers=h)).json())
    got = sorted((n["message"], n["level"], n["type"], n["mode"]) for n in logs)
    assert got == [
        ("payment provider down", "error", "log", "production"),
        ("stock low for A-1", "warning", "log", "production"),
    ]
    warn = next(n for n in logs if n["level"] == "warning")
    assert warn["data"]["sentry.message.parameter.sku"] == "A-1" and warn["release"] == "shop@1.0"
    assert warn["data"]["sentry.message.template"] == "stock low for {sku}"
    assert abs(seconds(warn["occurred_at"]) - time.time()) < 120
    after = await dropped(gateway)
    assert after.get("transaction", 0) >= before.get("transaction", 0) + 1


async def test_pybrake_notice_gets_its_time(gateway, query, consumer, project, user_token, app_dir):  # noqa: F811
    started = time.time()
    answer = await report_pybrake(gateway, project, app_dir)
    await drain(consumer)
    resp = await query.get(f"/api/locate/{answer['id']}", headers={"Api-Key": user_token})
    [n] = await stored(query, user_token, project.id)
    assert n["occurred_at"] is not None, await resp.text()
    assert started - 2 <= seconds(n["occurred_at"]) <= time.time() + 2


async def test_airbrake_context_time_is_the_occurred_at(gateway, query, consumer, project, user_token):
    from tests.integration.test_airbrake import bearer, post

    body = {
        "errors": [{"type": "E", "message": "m", "backtrace": []}],
        "context": {"time": "2026-01-02T03:04:05.000Z", "notifier": {"name": "airbrake-js"}},
    }
    status, _, _ = await post(gateway, project, body, bearer(project.key))
    assert status == 201
    await drain(consumer)
    [n] = await stored(query, user_token, project.id)
    assert n["occurred_at"] == "2026-01-02T03:04:05Z"


async def test_airbrake_python_frames_kept_as_sent(gateway, query, consumer, project, user_token, app_dir):  # noqa: F811
    (app_dir / "report_airbrake.py").write_text(AIRBRAKE_PY)
    answer = await run(
        sys.executable, "report_airbrake.py", base(gateway)[1], str(project.id), project.key, cwd=app_dir
    )
    assert set(answer) == {"id", "url"}
    await drain(consumer)
    [n] = await stored(query, user_token, project.id)
    # What the Airbrake service does: the backtrace as sent (this client sends it oldest first),
    # and a note saying so; the order is not guessed (docs: README, Airbrake v3).
    outer = n["exceptions"][0]
    assert outer["type"] == "PaymentError"
    assert [f["function"] for f in outer["frames"]] == ["run", "checkout"]
    assert n["occurred_at"] is not None
    resp = await query.get(f"/api/locate/{answer['url'].rsplit('/', 1)[1]}", headers={"Api-Key": user_token})
    assert resp.status == 200
