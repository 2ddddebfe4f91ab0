"""The real browser SDKs (from npm) in headless Chromium, on a page of another origin (issue 15).

A second loopback server serves the page and tests/browser/node_modules; the page reports to the
gateway (another port: another origin) with `@sentry/browser`, `raven-js`, `@airbrake/browser` or
`@exceptionless/browser`, reads what the SDK itself recorded (its hooks, events, queue state) and
posts that back to the page server. Every report must be stored and each SDK must have seen success;
a project whose `allowed_origins` leaves the page out gets nothing stored and every SDK sees a refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from services.worker.consumer import Consumer
from tests.conftest import ProjectInfo, drain, make_project, reload_keys
from tests.integration.test_pages import chromium  # noqa: F401  (the fixture)
from tests.stack import free_port

pytestmark = pytest.mark.node

BROWSER_DIR = Path(__file__).resolve().parents[1] / "browser"
PAGE_TIMEOUT = 90.0
SDKS = ("sentry", "raven", "airbrake", "exceptionless")

# @sentry/browser ships ES modules only: the import map resolves its bare imports to node_modules.
SENTRY_IMPORTS = {
    "@sentry/browser": "/nm/@sentry/browser/build/npm/esm/prod/index.js",
    "@sentry/core": "/nm/@sentry/core/build/esm/index.js",
    "@sentry/core/browser": "/nm/@sentry/core/build/esm/browser.js",
    "@sentry/browser-utils": "/nm/@sentry/browser-utils/build/esm/index.js",
    "@sentry/feedback": "/nm/@sentry/feedback/build/npm/esm/index.js",
    "@sentry/replay": "/nm/@sentry/replay/build/npm/esm/index.js",
    "@sentry/replay-canvas": "/nm/@sentry/replay-canvas/build/npm/esm/index.js",
    "@sentry/conventions": "/nm/@sentry/conventions/dist/index.mjs",
    "@sentry/conventions/attributes": "/nm/@sentry/conventions/dist/attributes.mjs",
    "@sentry/conventions/metrics": "/nm/@sentry/conventions/dist/metrics.mjs",
    "@sentry/conventions/op": "/nm/@sentry/conventions/dist/op.mjs",
    "web-vitals": "/nm/web-vitals/dist/web-vitals.js",
}

WAIT_FOR = """
const waitFor = async (test, ms) => {
  const end = Date.now() + ms;
  while (!test() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
};
"""

# Each computes `out` from the SDK's own state; `out.ok` is the SDK's verdict on its report.
SCRIPTS = {
    "sentry": """
import * as Sentry from "@sentry/browser";
Sentry.init({ dsn: C.dsn, environment: "production" });
const client = Sentry.getClient();
out.statuses = []; out.dropped = [];
client.on("afterSendEvent", (event, response) => out.statuses.push(response ? response.statusCode ?? null : null));
const record = client.recordDroppedEvent.bind(client);
client.recordDroppedEvent = (reason, category, n) => { out.dropped.push(reason); return record(reason, category, n); };
Sentry.captureException(new Error(C.marker));
await Sentry.flush(15000);
await waitFor(() => out.statuses.length > 0, 15000);
out.ok = out.statuses.length === 1 && out.statuses[0] === 200 && out.dropped.length === 0;
""",
    "raven": """
out.events = [];
document.addEventListener("ravenSuccess", () => out.events.push("success"));
document.addEventListener("ravenFailure", () => out.events.push("failure"));
Raven.config(C.dsn, { environment: "production" }).install();
Raven.captureException(new Error(C.marker));
await waitFor(() => out.events.length > 0, 20000);
out.ok = out.events.length === 1 && out.events[0] === "success";
""",
    "airbrake": """
const notifier = new Airbrake.Notifier({
  projectId: C.projectId, projectKey: C.key, host: C.gateway, environment: "production",
  remoteConfig: false, performanceStats: false, queryStats: false, queueStats: false,
});
const notice = await notifier.notify(new Error(C.marker));
out.id = notice.id || null;
out.error = notice.error ? String(notice.error) : null;
out.ok = !!notice.id && !notice.error;
""",
    "exceptionless": """
import { Exceptionless, SettingsManager } from "/nm/@exceptionless/browser/dist/index.bundle.js";
await Exceptionless.startup((c) => {
  c.apiKey = C.key; c.serverUrl = C.gateway; c.usePersistedQueueStorage = false;
});
const queue = Exceptionless.config.services.queue;
out.posted = [];
queue.onEventsPosted((events, response) => { out.posted.push(response.status); });
await Exceptionless.submitException(new Error(C.marker));
await Exceptionless.processQueue();
await waitFor(() => out.posted.length > 0, 15000);
await SettingsManager.updateSettings(Exceptionless.config);  // the config poll: preflighted too
out.suspended = queue.isQueueProcessingSuspended();
out.settingsVersion = Exceptionless.config.settingsVersion;
out.setting = Exceptionless.config.settings["@@log:*"] ?? null;
out.ok = out.posted.length === 1 && out.posted[0] === 202 && !out.suspended;
""",
}


def page(sdk: str, config: dict[str, Any]) -> str:
    scripts = ""
    if sdk == "sentry":
        scripts += f'<script type="importmap">{json.dumps({"imports": SENTRY_IMPORTS})}</script>'
    if sdk == "raven":
        scripts += '<script src="/nm/raven-js/dist/raven.js"></script>'
    if sdk == "airbrake":
        scripts += '<script src="/nm/@airbrake/browser/umd/airbrake.js"></script>'
    body = SCRIPTS[sdk]
    imports = "\n".join(line for line in body.splitlines() if line.startswith("import "))
    rest = "\n".join(line for line in body.splitlines() if not line.startswith("import "))
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8">{scripts}</head><body>
<script type="module">
{imports}
const C = {json.dumps(config)};
const out = {{ sdk: {json.dumps(sdk)} }};
{WAIT_FOR}
try {{
{rest}
}} catch (e) {{
  out.ok = false; out.exception = String(e && e.stack || e);
}}
await fetch("/result", {{ method: "POST", body: JSON.stringify(out) }});
</script></body></html>"""


@pytest.fixture(scope="module")
def browser_modules() -> Path:
    """tests/browser/node_modules, installed from the lock file the first time."""
    npm = shutil.which("npm")
    if npm is None:
        if os.environ.get("CI") == "true":
            pytest.fail("npm is needed to install the browser SDKs (CI=true)")
        pytest.skip("npm is needed to install the browser SDKs")
    modules = BROWSER_DIR / "node_modules"
    if not (modules / "@sentry" / "browser" / "package.json").exists():
        subprocess.run(
            [
                npm,
                "ci" if (BROWSER_DIR / "package-lock.json").exists() else "install",
                "--no-audit",
                "--no-fund",
            ],
            cwd=BROWSER_DIR,
            check=True,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
    return modules


class PageServer:
    """The other origin: serves one page per run and node_modules, and takes the page's result."""

    def __init__(self, modules: Path) -> None:
        self.html = ""
        self.result: asyncio.Future[dict[str, Any]] | None = None
        self.port = free_port()
        app = web.Application()
        app.router.add_get("/page.html", self._page)
        app.router.add_post("/result", self._result)
        app.router.add_static("/nm", modules)
        self.runner = web.AppRunner(app)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _page(self, _: web.Request) -> web.Response:
        return web.Response(text=self.html, content_type="text/html")

    async def _result(self, request: web.Request) -> web.Response:
        if self.result is not None and not self.result.done():
            self.result.set_result(json.loads(await request.text()))
        return web.Response(text="{}", content_type="application/json")

    async def run(self, chromium_path: str, tmp: Path, html: str) -> dict[str, Any]:
        """Open the page in a fresh headless profile; the SDK's own verdict, as the page posted it
        (with the browser's console lines under "console", for assertion messages)."""
        self.html = html
        self.result = asyncio.get_running_loop().create_future()
        profile = tmp / f"profile-{uuid.uuid4().hex[:8]}"
        log = tmp / f"chromium-{uuid.uuid4().hex[:8]}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                chromium_path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}",
                f"{self.origin}/page.html",
                stdout=asyncio.subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        try:
            result = await asyncio.wait_for(asyncio.shield(self.result), PAGE_TIMEOUT)
        except TimeoutError:
            result = {"ok": None, "timeout": f"the page posted no result within {PAGE_TIMEOUT}s"}
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        lines = log.read_text(errors="replace").splitlines()
        return {**result, "console": [line for line in lines if ":CONSOLE" in line][-20:]}


@pytest.fixture(scope="module")
async def pages(browser_modules: Path) -> AsyncIterator[PageServer]:
    server = PageServer(browser_modules)
    await server.runner.setup()
    await web.TCPSite(server.runner, "127.0.0.1", server.port).start()
    yield server
    await server.runner.cleanup()


async def _stored(pool: asyncpg.Pool, project_id: int, marker: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM notices WHERE project_id = $1 AND body::text LIKE '%' || $2 || '%'",
        project_id,
        marker,
    )
    return count


async def _project(pool: asyncpg.Pool, gateway: TestClient, query: TestClient, origins: Any) -> ProjectInfo:
    project = await make_project(pool)
    await pool.execute(
        "UPDATE projects SET settings = jsonb_build_object('allowed_origins', $2::jsonb) WHERE id = $1",
        project.id,
        origins,
    )
    await reload_keys(gateway, query)
    return project


def _config(gateway: TestClient, project: ProjectInfo, marker: str) -> dict[str, Any]:
    base = str(gateway.make_url("")).rstrip("/")
    host = base.split("://", 1)[1]
    return {
        "gateway": base,
        "dsn": f"http://{project.key}@{host}/{project.id}",
        "key": project.key,
        "projectId": project.id,
        "marker": marker,
    }


@pytest.mark.parametrize("sdk", SDKS)
async def test_a_browser_sdk_on_another_origin_reports_and_sees_success(
    sdk: str,
    chromium: str,  # noqa: F811
    pages: PageServer,
    tmp_path: Path,
    gateway: TestClient,
    query: TestClient,
    consumer: Consumer,
    pool: asyncpg.Pool,
    user_token: str,
) -> None:
    # The page's origin is listed (another port of 127.0.0.1: another origin all the same).
    project = await _project(pool, gateway, query, ["https://app.example.com", pages.origin])
    if sdk == "exceptionless":  # a setting for the client's config poll to fetch
        resp = await query.post(
            f"/api/v2/projects/{project.id}/config",
            params={"key": "@@log:*"},
            json="Warn",
            headers={"Authorization": f"Bearer {user_token}"},
        )
        assert resp.status == 200, await resp.text()
        await reload_keys(gateway, query)
    marker = f"BrowserCors{sdk.title()}{uuid.uuid4().hex[:8]}"
    result = await pages.run(chromium, tmp_path, page(sdk, _config(gateway, project, marker)))
    assert result.get("ok") is True, result
    if sdk == "exceptionless":
        assert result["setting"] == "Warn" and result["settingsVersion"] >= 1, result
    await drain(consumer)
    assert await _stored(pool, project.id, marker) >= 1, result


@pytest.mark.parametrize("sdk", SDKS)
async def test_a_page_on_an_origin_the_project_does_not_allow_is_refused(
    sdk: str,
    chromium: str,  # noqa: F811
    pages: PageServer,
    tmp_path: Path,
    gateway: TestClient,
    query: TestClient,
    consumer: Consumer,
    pool: asyncpg.Pool,
) -> None:
    project = await _project(pool, gateway, query, ["https://app.example.com"])
    marker = f"BrowserRefused{sdk.title()}{uuid.uuid4().hex[:8]}"
    result = await pages.run(chromium, tmp_path, page(sdk, _config(gateway, project, marker)))
    assert result.get("ok") is False and "exception" not in result, result
    if sdk == "sentry":  # the refusal itself is readable (it carries Access-Control-Allow-Origin)
        assert result["statuses"] == [403], result
    if sdk == "exceptionless":
        assert result["posted"] == [403], result
    await drain(consumer)
    assert await _stored(pool, project.id, marker) == 0
