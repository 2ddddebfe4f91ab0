"""Credentials: generation, hashing, and the in-memory cache the HTTP services authenticate from."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from shared.db import Conn

logger = logging.getLogger(__name__)


def hash_key(key: str) -> bytes:
    """SHA-256 of the secret: what is stored and what the cache is keyed by.

    Looking up a hash of the presented key leaks nothing useful through timing: an attacker
    cannot steer the hash byte by byte.
    """
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def new_client_key() -> str:
    """32 hex characters: valid as a CrashLog token, an Exceptionless key and a Sentry public key."""
    return secrets.token_hex(16)


def new_user_token() -> str:
    return "flt_" + secrets.token_urlsafe(30)


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)  # client configuration (Exceptionless settings)
    config_version: int = 0  # bumped by every change of `config`


@dataclass(frozen=True, slots=True)
class Credential:
    """A key the cache recognised. project is None for user-scoped tokens."""

    scope: str  # "client" | "user"
    project: Project | None

    @property
    def is_user(self) -> bool:
        return self.scope == "user"


class KeyCache:
    """All live keys and projects, reloaded from PostgreSQL every few seconds in the background.

    The request path never touches the database; a new or revoked key takes effect on the next
    reload. If PostgreSQL is down the cache keeps serving what it last loaded.
    """

    def __init__(self, pool: asyncpg.Pool, interval: float = 2.0) -> None:
        self._pool = pool
        self._interval = interval
        self._keys: dict[bytes, Credential] = {}
        self.projects: dict[int, Project] = {}
        self.loaded = asyncio.Event()

    def lookup(self, key: str | None) -> Credential | None:
        if not key:
            return None
        return self._keys.get(hash_key(key))

    async def reload(self) -> None:
        async with self._pool.acquire() as conn:
            prows = await conn.fetch("SELECT id, name, settings, config, config_version FROM projects")
            krows = await conn.fetch(
                "SELECT key_hash, scope, project_id FROM api_keys WHERE revoked_at IS NULL"
            )
        projects = {
            r["id"]: Project(r["id"], r["name"], r["settings"] or {}, r["config"] or {}, r["config_version"])
            for r in prows
        }
        keys: dict[bytes, Credential] = {}
        for r in krows:
            project = projects.get(r["project_id"]) if r["project_id"] is not None else None
            if r["scope"] == "client" and project is None:
                continue
            keys[bytes(r["key_hash"])] = Credential(r["scope"], project)
        self.projects, self._keys = projects, keys
        self.loaded.set()

    async def run(self) -> None:
        """Reload forever; failures are logged and the previous contents kept."""
        while True:
            try:
                await self.reload()
            except (TimeoutError, OSError, asyncpg.PostgresError) as e:
                logger.warning("key cache reload failed error=%r", e)
            await asyncio.sleep(self._interval)


async def create_project(conn: Conn, name: str) -> tuple[Project, str]:
    """A project and its first client key (returned in clear once, stored hashed)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO projects (name) VALUES ($1) RETURNING id, name, settings", name
        )
        assert row is not None
        key = new_client_key()
        await conn.execute(
            "INSERT INTO api_keys (key_hash, scope, project_id) VALUES ($1, 'client', $2)",
            hash_key(key),
            row["id"],
        )
    return Project(row["id"], row["name"], row["settings"]), key


async def create_user_token(conn: Conn, label: str | None = None) -> str:
    token = new_user_token()
    await conn.execute(
        "INSERT INTO api_keys (key_hash, scope, label) VALUES ($1, 'user', $2)", hash_key(token), label
    )
    return token


async def revoke(conn: Conn, key: str) -> bool:
    status = await conn.execute(
        "UPDATE api_keys SET revoked_at = now(), updated_at = now()"
        " WHERE key_hash = $1 AND revoked_at IS NULL",
        hash_key(key),
    )
    return status.endswith(" 1")
