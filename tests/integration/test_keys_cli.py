"""The lifecycle commands as a user runs them (`python -m shared.cli`, the session's database): JSON
on stdout, refusals as `{"error"}` on stderr with a non-zero status, secrets printed once (issue 15)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings
from tests.integration.test_keys import REVOKED_WITHIN, _post, _refused_within

ROOT = Path(__file__).resolve().parents[2]


class Cli:
    def __init__(self, settings: Settings, tmp: Path) -> None:
        assert settings.database_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FAULTLINE_")}
        self.env.update({"FAULTLINE_DATABASE_URL": settings.database_url, "FAULTLINE_DATA_DIR": str(tmp)})

    async def run(self, *args: str, status: int = 0) -> tuple[list[Any], str]:
        """Every JSON line printed, and stderr; fails unless the exit status is `status`."""
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "shared.cli", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == status, (args, out.returncode, out.stdout, out.stderr)
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()], out.stderr

    async def one(self, *args: str) -> dict[str, Any]:
        lines, _ = await self.run(*args)
        assert len(lines) == 1, lines
        return lines[0]

    async def error(self, *args: str, status: int = 1) -> str:
        lines, err = await self.run(*args, status=status)
        assert lines == []
        message: str = json.loads(err.strip().splitlines()[-1])["error"]
        return message


@pytest.fixture
def cli(settings: Settings, tmp_path: Path) -> Cli:
    return Cli(settings, tmp_path)


async def test_project_commands(cli: Cli, gateway):
    made = await cli.one("project", "create", "cli-shop", "--label", "first")
    pid, key = made["id"], made["client_key"]
    assert made["name"] == "cli-shop" and made["dsn"].startswith(f"http://{key}@")
    assert await _post(gateway, key) == 201  # on its first request
    listed, _ = await cli.run("project", "list")
    assert {"id": pid, "name": "cli-shop"}.items() <= next(p for p in listed if p["id"] == pid).items()
    shown = await cli.one("project", "show", str(pid))
    assert [(k["label"], k["key"]) for k in shown["keys"]] == [("first", f"…{key[-4:]}")]
    assert key not in json.dumps(shown)
    renamed = await cli.one("project", "rename", str(pid), "cli-store")
    assert renamed["name"] == "cli-store"
    assert "--yes" in await cli.error("project", "delete", str(pid), status=2)
    assert (await cli.one("project", "show", str(pid)))["name"] == "cli-store"  # still there
    assert await cli.one("project", "delete", str(pid), "--yes") == {"id": pid, "deleted": True}
    await _refused_within(lambda: _post(gateway, key), 201, 401, REVOKED_WITHIN)
    for args in (("show", str(pid)), ("rename", str(pid), "x"), ("delete", str(pid), "--yes")):
        assert "not found" in await cli.error("project", *args)
    assert "name" in await cli.error("project", "rename", "1", " ", status=2)
    await cli.run("project", "show", "nope", status=2)  # argparse: not a number


async def test_key_rotation_with_the_commands(cli: Cli, gateway):
    made = await cli.one("project", "create", "cli-rotate")
    pid, old = made["id"], made["client_key"]
    new = await cli.one("key", "create", "--project", str(pid), "--label", "2026")
    secret = new["client_key"]
    assert new["project_id"] == pid and new["label"] == "2026" and new["key"] == f"…{secret[-4:]}"
    assert new["dsn"] == f"http://{secret}@127.0.0.1:8000/{pid}"  # the default gateway address
    assert await _post(gateway, secret) == 201
    listed, _ = await cli.run("key", "list", "--project", str(pid))
    assert [k["label"] for k in listed] == [None, "2026"]
    assert secret not in json.dumps(listed) and old not in json.dumps(listed)
    everything, _ = await cli.run("key", "list")
    assert {k["id"] for k in listed} <= {k["id"] for k in everything}
    old_id = listed[0]["id"]
    revoked = await cli.one("key", "revoke", str(old_id))
    assert revoked["id"] == old_id and revoked["revoked_at"] is not None
    await _refused_within(lambda: _post(gateway, old), 201, 401, REVOKED_WITHIN)
    assert await _post(gateway, secret) == 201  # the rotated-in key goes on working
    assert "already revoked" in await cli.error("key", "revoke", str(old_id))
    assert "not found" in await cli.error("key", "revoke", "999999999")
    assert "not found" in await cli.error("key", "create", "--project", "999999")
    await cli.run("key", "create", status=2)  # --project is required


async def test_token_commands(cli: Cli, query):
    made = await cli.one("token", "create", "--label", "cli")
    token = made["token"]
    assert token.startswith("flt_") and made["key"] == f"flt_…{token[-4:]}" and made["label"] == "cli"
    assert (await query.get("/v1/errors", headers={"Api-Key": token})).status == 200
    listed, _ = await cli.run("token", "list")
    mine = next(t for t in listed if t["id"] == made["id"])
    assert mine["key"] == made["key"] and token not in json.dumps(listed)
    assert (await cli.one("token", "revoke", str(made["id"])))["revoked_at"] is not None

    async def read() -> int:
        return (await query.get("/v1/errors", headers={"Api-Key": token})).status

    await _refused_within(read, 200, 401, REVOKED_WITHIN)
    assert made["id"] not in {t["id"] for t in (await cli.run("token", "list"))[0]}
    assert "already revoked" in await cli.error("token", "revoke", str(made["id"]))
    client_key_id = (
        await cli.one("key", "create", "--project", str((await cli.one("project", "create", "t"))["id"]))
    )["id"]
    assert "not found" in await cli.error("token", "revoke", str(client_key_id))  # a key is no token
