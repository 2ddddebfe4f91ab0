"""The real `@exceptionless/node` client against the service running as real processes.

tests/node/exceptionless_driver.mjs runs the client and takes commands over stdin; the tests read
everything back through the query API and check that nothing stays queued in the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import ProjectInfo
from tests.stack import Stack, stack  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.node, pytest.mark.e2e]

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
DRIVER = NODE_DIR / "exceptionless_driver.mjs"
ANSWER_WITHIN = 30.0


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """tests/node/node_modules, installed from the lock file the first time."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI") == "true":  # on CI a missing runtime is a failure, never a quiet skip
            pytest.fail("node and npm are needed to drive @exceptionless/node (CI=true)")
        pytest.skip("node and npm are needed to drive @exceptionless/node")
    modules = NODE_DIR / "node_modules"
    if not (modules / "@exceptionless" / "node" / "package.json").exists():
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
    return modules


class NodeClient:
    """One driver process: a real client, commanded one JSON line at a time."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.stopped = False

    @classmethod
    async def start(cls, workdir: Path, server_url: str, api_key: str) -> NodeClient:
        log = workdir / "driver.log"
        err = await asyncio.to_thread(log.open, "wb")
        try:
            proc = await asyncio.create_subprocess_exec(
                "node",
                str(DRIVER),
                cwd=workdir,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        finally:
            err.close()
        client = cls(proc, log)
        await client.call("start", serverUrl=server_url, apiKey=api_key)
        return client

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(orjson.dumps({"cmd": cmd, **args}) + b"\n")
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), ANSWER_WITHIN)
        if not line:
            raise AssertionError(f"driver exited during {cmd!r}:\n{self.tail()}")
        answer: dict[str, Any] = orjson.loads(line)
        self.stopped = self.stopped or cmd == "stop"
        if not answer.pop("ok"):
            raise AssertionError(f"{cmd!r} failed: {answer['error']}\n{self.tail()}")
        return answer

    async def close(self) -> None:
        """Stop the client (it flushes its queue) and wait for the process; kill it if it hangs."""
        try:
            if not self.stopped:
                await self.call("stop")
            await asyncio.wait_for(self.proc.wait(), 10)
        except (AssertionError, TimeoutError, ConnectionError):
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def node_client(
    node_modules: Path,
    stack: Stack,  # noqa: F811
    tmp_path: Path,
) -> AsyncIterator[Callable[[str], Awaitable[NodeClient]]]:
    """Start drivers pointed at the running stack's gateway; all are stopped afterwards."""
    started: list[NodeClient] = []

    async def start(api_key: str) -> NodeClient:
        workdir = tmp_path / f"client{len(started)}"  # the client keeps its settings in ./.exceptionless
        await asyncio.to_thread(workdir.mkdir)
        client = await NodeClient.start(workdir, stack.gateway_url, api_key)
        started.append(client)
        return client

    yield start
    for client in started:
        await client.close()


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 20.0) -> Any:
    """Poll `check` until it returns without an AssertionError (its value), or fail at the deadline."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def get_json(session: aiohttp.ClientSession, url: str, token: str) -> Any:
    async with session.get(url, headers={"Api-Key": token}) as resp:
        assert resp.status == 200, (url, resp.status)
        return await resp.json()


async def stored(
    session: aiohttp.ClientSession,
    stack: Stack,
    token: str,
    project_id: int,  # noqa: F811
    kind: str,
) -> list[dict[str, Any]]:
    """Every notice of one event type in the project, as the notice detail API shows it."""
    base = stack.query_url
    out = []
    for error in await get_json(session, f"{base}/v1/errors?project_id={project_id}&type={kind}", token):
        for n in await get_json(session, f"{base}/v1/errors/{error['id']}/notices", token):
            out.append(await get_json(session, f"{base}/v1/errors/{error['id']}/notices/{n['id']}", token))
    return out


async def known_to_stack(session: aiohttp.ClientSession, stack: Stack, key: str, token: str) -> None:  # noqa: F811
    """Wait until the stack's key caches have loaded the new project key and the user token."""

    async def check() -> None:
        async with session.get(
            f"{stack.gateway_url}/api/v2/projects/config", headers={"Authorization": f"Bearer {key}"}
        ) as resp:
            assert resp.status == 200
        async with session.get(f"{stack.query_url}/v1/errors?per_page=1", headers={"Api-Key": token}) as resp:
            assert resp.status == 200

    await eventually(check)


async def test_events_and_a_user_description_from_the_node_client(
    stack: Stack, node_client, project: ProjectInfo, user_token: str
):  # noqa: F811
    async with aiohttp.ClientSession() as session:
        await known_to_stack(session, stack, project.key, user_token)
        client = await node_client(project.key)
        error = await client.call("exception", message="total is not a number")
        ref = error["referenceId"]
        assert len(ref) == 10
        await client.call("log", source="app.checkout", message="cart saved", level="info")
        await client.call("usage", feature="export-csv")
        await client.call("notfound", resource="/missing/page")
        # Described while the event still waits in the client's queue: the description arrives first.
        await client.call(
            "describe", referenceId=ref, email="ada@example.com", description="The pay button did nothing"
        )
        state = await client.call("flush")
        assert state["queued"] == 0
        posts = [x for x in state["exchanges"] if x["method"] == "POST"]
        assert [x["url"].rsplit("/", 1)[-1] for x in posts] == ["user-description", "events"]
        assert all(x["status"] == 202 and x["body"] == "" and x["configVersion"] == "0" for x in posts)

        async def error_with_description() -> dict[str, Any]:
            errors = await stored(session, stack, user_token, project.id, "error")
            assert len(errors) == 1
            n = errors[0]
            assert n["user_description"] == {
                "email_address": "ada@example.com",
                "description": "The pay button did nothing",
            }
            return n

        n = await eventually(error_with_description)
        assert (n["protocol"], n["exception"], n["message"]) == (
            "exceptionless",
            "TypeError",
            "total is not a number",
        )
        assert n["reference_id"] == ref
        assert n["exceptions"][0]["frames"][0]["function"] == "checkoutTotal"
        assert n["exceptions"][0]["frames"][0]["file"].endswith("exceptionless_driver.mjs")
        assert n["context"]["environment"]["runtime_version"].startswith("v")

        async def the_rest() -> tuple[Any, ...]:
            logs = await stored(session, stack, user_token, project.id, "log")
            usage = await stored(session, stack, user_token, project.id, "usage")
            missing = await stored(session, stack, user_token, project.id, "404")
            assert len(logs) == len(usage) == len(missing) == 1
            return logs[0], usage[0], missing[0]

        log, usage, missing = await eventually(the_rest)
        assert (log["source"], log["message"], log["level"]) == ("app.checkout", "cart saved", "info")
        assert usage["source"] == "export-csv"
        assert missing["source"] == "/missing/page"
        # their names are their messages (issue 18), in the error list as in the notice
        assert (usage["message"], missing["message"]) == ("export-csv", "/missing/page")
        for kind, name in (("usage", "export-csv"), ("404", "/missing/page")):
            url = f"{stack.query_url}/v1/errors?project_id={project.id}&type={kind}"
            assert [e["message"] for e in await get_json(session, url, user_token)] == [name]
        assert (await client.call("stop"))["queued"] == 0


async def test_the_node_client_picks_up_a_configuration_change(
    stack: Stack, node_client, project: ProjectInfo, user_token: str
):  # noqa: F811
    manage = f"{stack.query_url}/api/v2/projects/{project.id}/config?key=@@usage:beta-export"
    user = {"Api-Key": user_token}
    async with aiohttp.ClientSession() as session:
        await known_to_stack(session, stack, project.key, user_token)
        client = await node_client(project.key)

        async def gateway_serves(version: int) -> None:
            async with session.get(
                f"{stack.gateway_url}/api/v2/projects/config?v=0",
                headers={"Authorization": f"Bearer {project.key}"},
            ) as resp:
                assert resp.status == (304 if version == 0 else 200)
                if version:
                    assert (await resp.json())["version"] == version

        # The feature is switched off on the server...
        async with session.post(manage, json="false", headers=user) as resp:
            assert resp.status == 200
            assert (await resp.json())["version"] == 1
        await eventually(lambda: gateway_serves(1), within=10)
        # ...the next answer's X-Exceptionless-ConfigVersion makes the client fetch its settings...
        await client.call("log", source="app", message="any event")
        state = await client.call("flush")
        assert state["settingsVersion"] == 1
        assert state["settings"] == {"@@usage:beta-export": "false"}
        config = [x for x in state["exchanges"] if "/projects/config" in x["url"]]
        assert config[-1]["status"] == 200 and orjson.loads(config[-1]["body"])["version"] == 1
        # ...and it stops sending that feature's usage, while others still go out.
        assert (await client.call("usage", feature="beta-export"))["cancelled"] is True
        assert (await client.call("usage", feature="search"))["cancelled"] is False

        # Switching it back on is picked up the same way.
        async with session.post(manage, json="true", headers=user) as resp:
            assert (await resp.json())["version"] == 2
        await eventually(lambda: gateway_serves(2), within=10)
        state = await client.call("flush")  # sends "search"; the answer carries version 2
        assert state["settingsVersion"] == 2
        assert state["settings"] == {"@@usage:beta-export": "true"}
        assert (await client.call("usage", feature="beta-export"))["cancelled"] is False

        # A removed setting: the client fetches the new version and gets no settings. (3.2.1 merges
        # what it gets into what it had, so it keeps the old key until restarted: a client quirk.)
        async with session.delete(manage, headers=user) as resp:
            assert (await resp.json()) == {"version": 3, "settings": {}}
        await eventually(lambda: gateway_serves(3), within=10)
        state = await client.call("flush")
        assert state["settingsVersion"] == 3
        config = [x for x in state["exchanges"] if "/projects/config" in x["url"]]
        assert orjson.loads(config[-1]["body"]) == {"version": 3, "settings": {}}
        assert state["queued"] == 0
        assert all(x["status"] in (200, 202, 304) for x in state["exchanges"])

        async def usage_sent() -> list[str]:
            usage = await stored(session, stack, user_token, project.id, "usage")
            assert sorted(n["source"] for n in usage) == ["beta-export", "search"]
            return [n["source"] for n in usage]

        await eventually(usage_sent)
