"""The `faultline` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable

import asyncpg

from shared import db, fingerprint, keys, webhooks_cli
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


class CommandError(Exception):
    """A refusal to print as `{"error": ...}` on stderr, with the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _print(value: object) -> None:
    print(json.dumps(value, ensure_ascii=False))


async def _project_create(settings: Settings, name: str, label: str | None = None) -> None:
    if not name.strip() or "\x00" in name:
        raise CommandError("a project needs a name", 2)
    async with connect(settings) as conn:
        await db.migrate(conn)
        project, key = await keys.create_project(conn, name.strip(), label)
        if settings.grouping_version != fingerprint.VERSION:  # new projects start with these rules
            await conn.execute(
                "UPDATE projects SET settings = settings || jsonb_build_object('grouping_version', $2::int)"
                " WHERE id = $1",
                project.id,
                settings.grouping_version,
            )
    _print(project_json(settings, project.id, project.name, key))


def project_json(settings: Settings, project_id: int, name: str, key: str) -> dict[str, object]:
    """What `project create` prints: everything a client needs to point at this project."""
    dsn = keys.dsn(settings, key, project_id)  # Sentry SDKs: the gateway
    return {"id": project_id, "name": name, "client_key": key, "api_key": key, "dsn": dsn}


async def _token_create(settings: Settings, label: str | None) -> None:
    async with connect(settings) as conn:
        await db.migrate(conn)
        row, token = await keys.create_token(conn, label)
    _print({"token": token, **keys.key_json(row)})


async def _lifecycle(settings: Settings, args: argparse.Namespace) -> None:
    """project list/show/rename/delete, key create/list/revoke, token list/revoke."""
    command, action = args.command, args.action
    async with connect(settings) as conn:
        await db.migrate(conn)
        if command == "project":
            await _project(conn, args)
        elif action == "create":
            made = await keys.create_client_key(conn, args.project, args.label)
            if made is None:
                raise CommandError(f"project {args.project} not found")
            row, secret = made
            _print(
                {**keys.key_json(row), "client_key": secret, "dsn": keys.dsn(settings, secret, args.project)}
            )
        elif action == "list":
            scope = "client" if command == "key" else "user"
            for row in await keys.list_keys(conn, scope, getattr(args, "project", None)):
                _print(keys.key_json(row))
        else:  # revoke
            scope, what = ("client", "key") if command == "key" else ("user", "token")
            outcome, row = await keys.revoke_key(conn, scope, args.id)
            if outcome == "missing":
                raise CommandError(f"{what} {args.id} not found")
            if outcome == "already":
                raise CommandError(f"{what} {args.id} was already revoked")
            _print(keys.key_json(row))


async def _project(conn: asyncpg.Connection, args: argparse.Namespace) -> None:
    if args.action == "list":
        for row in await keys.list_projects(conn):
            _print(keys.project_row_json(row))
        return
    if args.action == "show":
        shown = await keys.project_with_keys(conn, args.id)
        if shown is None:
            raise CommandError(f"project {args.id} not found")
        _print(shown)
        return
    if args.action == "rename":
        if not args.name.strip() or "\x00" in args.name:
            raise CommandError("a project needs a name", 2)
        row = await keys.rename_project(conn, args.id, args.name.strip())
        if row is None:
            raise CommandError(f"project {args.id} not found")
        _print(keys.project_row_json(row))
        return
    # delete
    if not args.yes:
        raise CommandError(f"deleting project {args.id} removes its keys, errors and notices: add --yes", 2)
    if not await keys.delete_project(conn, args.id):
        raise CommandError(f"project {args.id} not found")
    _print({"id": args.id, "deleted": True})


async def _webhook(settings: Settings, args: argparse.Namespace) -> None:
    async with connect(settings) as conn:
        await db.migrate(conn)
        await webhooks_cli.run(settings, conn, args)


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
    create.add_argument("--label", default=None, help="a label for its first client key")
    project.add_parser("list", help="every project, one JSON line each")
    show = project.add_parser("show", help="a project and its client keys (masked)")
    show.add_argument("id", type=int)
    rename = project.add_parser("rename", help="rename a project")
    rename.add_argument("id", type=int)
    rename.add_argument("name")
    delete = project.add_parser("delete", help="delete a project with its keys, errors and notices")
    delete.add_argument("id", type=int)
    delete.add_argument("--yes", action="store_true", help="really delete it")

    key = sub.add_parser("key", help="manage client keys (rotate: create, deploy, revoke)").add_subparsers(
        dest="action", required=True
    )
    kcreate = key.add_parser("create", help="one more client key for a project (its secret printed once)")
    kcreate.add_argument("--project", type=int, required=True)
    kcreate.add_argument("--label", default=None)
    klist = key.add_parser("list", help="live client keys (masked), one JSON line each")
    klist.add_argument("--project", type=int, default=None)
    krevoke = key.add_parser("revoke", help="revoke a client key (refused everywhere within a second)")
    krevoke.add_argument("id", type=int)

    token = sub.add_parser("token", help="manage user-scoped tokens").add_subparsers(
        dest="action", required=True
    )
    tcreate = token.add_parser("create", help="create a user-scoped token (its secret printed once)")
    tcreate.add_argument("--label", default=None)
    token.add_parser("list", help="live user tokens (masked), one JSON line each")
    trevoke = token.add_parser("revoke", help="revoke a user token (refused everywhere within a second)")
    trevoke.add_argument("id", type=int)
    webhooks_cli.add_parser(sub)
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
    try:
        if args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "project" and args.action == "create":
            asyncio.run(_project_create(settings, args.name, args.label))
        elif args.command == "token" and args.action == "create":
            asyncio.run(_token_create(settings, args.label))
        elif args.command == "webhook":
            asyncio.run(_webhook(settings, args))
        else:
            asyncio.run(_lifecycle(settings, args))
    except (CommandError, webhooks_cli.WebhookCommandError) as e:
        print(json.dumps({"error": str(e)}), file=sys.stderr)
        sys.exit(e.status)


if __name__ == "__main__":
    main()
