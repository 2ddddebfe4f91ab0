"""The `faultline` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import asyncpg

from shared import db, keys
from shared.runtime import SERVERS_FILE, load_settings, resolve_urls, setup_logging
from shared.settings import Settings


@contextlib.asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection for one command: the configured server, else the running or a fresh embedded one."""
    server = None
    if not settings.database_url:
        path = settings.data_dir / SERVERS_FILE
        if path.exists():
            settings = resolve_urls(settings)
        else:
            from shared.embedded import start_postgres

            server = start_postgres(settings.data_dir)
            settings = settings.with_urls(server.url, settings.redis_url or "")
    assert settings.database_url
    try:
        conn = await asyncpg.connect(settings.database_url)
        try:
            await db.init_connection(conn)
            yield conn
        finally:
            await conn.close()
    finally:
        if server is not None:
            server.stop()


async def _migrate(settings: Settings) -> None:
    async with connect(settings) as conn:
        applied = await db.migrate(conn)
    print(json.dumps({"applied": applied}))


async def _project_create(settings: Settings, name: str) -> None:
    async with connect(settings) as conn:
        await db.migrate(conn)
        project, key = await keys.create_project(conn, name)
    print(json.dumps(project_json(settings, project.id, project.name, key)))


def project_json(settings: Settings, project_id: int, name: str, key: str) -> dict[str, object]:
    """What `project create` prints: everything a client needs to point at this project."""
    host = settings.host
    if host in ("", "0.0.0.0", "::"):  # a wildcard bind is no address to send to: the public host
        host = urlsplit(settings.public_url).hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    dsn = f"http://{key}@{host}:{settings.gateway_port}/{project_id}"  # Sentry SDKs: the gateway
    return {"id": project_id, "name": name, "client_key": key, "api_key": key, "dsn": dsn}


async def _token_create(settings: Settings, label: str | None) -> None:
    async with connect(settings) as conn:
        await db.migrate(conn)
        token = await keys.create_user_token(conn, label)
    print(json.dumps({"token": token}))


def _service(module: str) -> Callable[[], None]:
    def run() -> None:
        mod = __import__(f"services.{module}.__main__", fromlist=["main"])
        mod.main()

    return run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faultline", description="Error-notice collector.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="migrate, then run gateway, workers and query service (supervised)")
    sub.add_parser("gateway", help="run the ingest gateway in the foreground")
    sub.add_parser("worker", help="run one worker in the foreground")
    sub.add_parser("query", help="run the query service in the foreground")
    sub.add_parser("migrate", help="apply pending schema migrations")
    project = sub.add_parser("project", help="manage projects").add_subparsers(dest="action", required=True)
    create = project.add_parser("create", help="create a project and print its client key")
    create.add_argument("name")
    token = sub.add_parser("token", help="manage user-scoped tokens").add_subparsers(
        dest="action", required=True
    )
    tcreate = token.add_parser("create", help="create a user-scoped token")
    tcreate.add_argument("--label", default=None)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command in ("gateway", "worker", "query"):
        _service(args.command)()
        return
    settings = load_settings()
    if args.command == "up":
        from shared.supervisor import up

        setup_logging("up")
        sys.exit(up(settings))
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
    elif args.command == "project":
        asyncio.run(_project_create(settings, args.name))
    elif args.command == "token":
        asyncio.run(_token_create(settings, args.label))


if __name__ == "__main__":
    main()
