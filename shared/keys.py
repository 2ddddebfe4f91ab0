"""Credentials: generation, hashing, and the in-memory cache the HTTP services authenticate from."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from aiohttp import web

from shared.db import Conn
from shared.settings import Settings
from shared.timeutil import iso
from shared.web import credential_from_headers

logger = logging.getLogger(__name__)


HASHES_KEPT = 4096


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


# ---- browser origins (the `allowed_origins` project setting) -------------------------------------

# `*`, `null` (file:// pages, sandboxed frames) or scheme://host[:port], the host optionally `*.`-prefixed.
_ORIGIN = re.compile(
    r"(?i)^https?://(\*\.)?(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
    r"|\[[0-9a-f:.]+\])(?::\d{1,5})?$"
)
MAX_ORIGINS = 100


def valid_origins(value: Any) -> bool:
    """What `allowed_origins` may hold: null (any origin) or a list of origin patterns."""
    return value is None or (
        isinstance(value, list)
        and len(value) <= MAX_ORIGINS
        and all(
            isinstance(v, str) and len(v) <= 300 and (v in ("*", "null") or _ORIGIN.match(v)) for v in value
        )
    )


def origin_allowed(settings: Mapping[str, Any], origin: str) -> bool:
    """Whether a browser page on `origin` may submit to a project (no setting: any origin, like Sentry)."""
    allowed = settings.get("allowed_origins")
    if not isinstance(allowed, list):
        return True
    origin = origin.strip().lower()
    for pattern in allowed:
        p = str(pattern).lower()
        if p in ("*", origin):
            return True
        scheme, sep, rest = p.partition("://*.")
        if sep and origin.startswith(scheme + "://") and origin.endswith("." + rest):
            return True
    return False


# An unknown key is looked up in PostgreSQL at most once per NEGATIVE_TTL per process, in batches of
# at most LOOKUP_BATCH, one query at a time and at most one per LOOKUP_PAUSE; beyond LOOKUP_WAITING
# queued hashes a key is refused without a look. So a client spraying random keys costs a process at
# most 1 / LOOKUP_PAUSE small queries a second, whatever its rate.
NEGATIVE_TTL = 1.0
NEGATIVE_MAX = 100_000  # unknown hashes remembered (oldest forgotten first)
LOOKUP_BATCH = 500
LOOKUP_WAITING = 5_000
LOOKUP_TIMEOUT = 2.0  # a request waits this long at most for its key's look-up
LOOKUP_PAUSE = 0.05  # seconds between two look-ups (a fresh key waits this long at most)
LOOKUP_BACKOFF = 1.0  # after a failed look-up (database down), this long before the next one
CHANNEL = "faultline_keys"  # NOTIFY'd by triggers on api_keys and projects (migration 0015)
MAX_KEY_LENGTH = 200
_KEYISH = re.compile(r"[A-Za-z0-9_\-]{16,}")  # runs of characters keys and tokens are made of


class KeyCache:
    """All live keys and projects in memory, kept current by PostgreSQL notifications.

    Triggers on `api_keys` and `projects` NOTIFY every change as it commits; the cache applies key
    changes from the notification itself (a revoked key is refused within milliseconds) and reloads
    on project changes. A full reload every `interval` seconds covers a lost listener connection.
    A key this process has not heard of yet (its notification still on the way) is looked up by
    `resolve()`, batched and bounded (see NEGATIVE_TTL). Known keys never touch the database; if
    PostgreSQL is down the cache keeps serving what it last loaded.
    """

    def __init__(self, pool: asyncpg.Pool, interval: float = 2.0) -> None:
        self._pool = pool
        self._interval = interval
        self._keys: dict[bytes, Credential] = {}
        self._hashes: dict[str, bytes] = {}  # presented key -> hash_key: the hot keys, bounded
        self.projects: dict[int, Project] = {}
        self.loaded = asyncio.Event()
        self.listening = asyncio.Event()
        self._seq = 0  # counts key notifications
        self._changed: dict[bytes, tuple[int, bool]] = {}  # hash -> (seq, live) of its last notification
        self._negative: dict[bytes, float] = {}  # hash -> monotonic time it may be looked up again
        self._waiting: dict[bytes, asyncio.Future[None]] = {}
        self._inflight: dict[bytes, asyncio.Future[None]] = {}
        self._lookups: asyncio.Task[None] | None = None
        self._last_lookup = -LOOKUP_PAUSE
        self._reload_wanted = asyncio.Event()
        self._reloading = 0  # full reloads running now
        self.stats = dict.fromkeys(("lookup_queries", "looked_up", "not_looked_up", "notifications"), 0)

    def lookup(self, key: str | None) -> Credential | None:
        if not key:
            return None
        return self._keys.get(self._hash(key))

    def worth_looking_up(self, key: str) -> bool:
        """Whether `resolve` would look this unknown key up (not refused within NEGATIVE_TTL, not too long)."""
        return len(key) <= MAX_KEY_LENGTH and self._negative.get(self._hash(key), 0.0) <= time.monotonic()

    async def resolve_key(self, key: str) -> None:
        await self.resolve((key,))

    def _hash(self, key: str) -> bytes:
        """`hash_key`, remembered for the last HASHES_KEPT distinct keys (one request hashed its key
        more than once: the query service's prefetch, then its check)."""
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= HASHES_KEPT:
                self._hashes.clear()
            h = self._hashes[key] = hash_key(key)
        return h

    def contains_key(self, text: str) -> bool:
        """Whether a value about to be stored is, or contains, a live key or token."""
        # hash_key, not the memo: scrubbed text would only churn it.
        return any(hash_key(k) in self._keys for k in (text.strip(), *_KEYISH.findall(text)) if k)

    # ---- keys this process has not heard of yet ----

    async def resolve(self, keys: Iterable[str | None]) -> None:
        """Load those of `keys` that PostgreSQL knows and this cache does not yet; never raises.

        Returns once each was looked up (or LOOKUP_TIMEOUT passed); known keys and keys found
        unknown within the last NEGATIVE_TTL cost nothing.
        """
        waits: list[asyncio.Future[None]] = []
        now = time.monotonic()
        for key in keys:
            if not key or len(key) > MAX_KEY_LENGTH:
                continue
            h = self._hash(key)
            if h in self._keys or self._negative.get(h, 0.0) > now:
                continue
            fut = self._inflight.get(h) or self._waiting.get(h)
            if fut is None:
                if len(self._waiting) >= LOOKUP_WAITING:
                    self.stats["not_looked_up"] += 1
                    continue
                fut = asyncio.get_running_loop().create_future()
                self._waiting[h] = fut
                if self._lookups is None or self._lookups.done():
                    self._lookups = asyncio.create_task(self._look_up_waiting())
            waits.append(fut)
        if waits:
            await asyncio.wait(waits, timeout=LOOKUP_TIMEOUT)

    async def _look_up_waiting(self) -> None:
        """One batch query at a time until nothing waits."""
        while self._waiting:
            pause = self._last_lookup + LOOKUP_PAUSE - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)  # meanwhile more unknown keys join this batch
            self._last_lookup = time.monotonic()
            batch = dict(itertools.islice(self._waiting.items(), LOOKUP_BATCH))
            for h in batch:
                del self._waiting[h]
            self._inflight.update(batch)
            seq = self._seq
            rows = None
            try:
                self.stats["lookup_queries"] += 1
                self.stats["looked_up"] += len(batch)
                async with asyncio.timeout(LOOKUP_TIMEOUT), self._pool.acquire() as conn:
                    rows = await conn.fetch(_LOOKUP, list(batch))
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                logger.warning("key look-up failed keys=%d error=%r", len(batch), e)
            now = time.monotonic()
            if rows is not None:
                found = {bytes(r["key_hash"]): r for r in rows}
                for h in batch:
                    at, live = self._changed.get(h, (0, True))
                    row = found.get(h)
                    if at > seq and (row is None or not live):
                        continue  # a notification about it came meanwhile: it is newer than this read
                    if row is None:
                        self._forget_for_now(h, now)
                    else:
                        self._keys[h] = Credential(row["scope"], self._project_of(row))
            else:
                for h in batch:
                    self._forget_for_now(h, now)
            for h, fut in batch.items():
                self._inflight.pop(h, None)
                if not fut.done():
                    fut.set_result(None)
            if rows is None:
                await asyncio.sleep(LOOKUP_BACKOFF)

    def _forget_for_now(self, h: bytes, now: float) -> None:
        if len(self._negative) >= NEGATIVE_MAX:
            for old in list(itertools.islice(self._negative, NEGATIVE_MAX // 10)):
                del self._negative[old]
        self._negative[h] = now + NEGATIVE_TTL

    def _project_of(self, row: Any) -> Project | None:
        if row["project_id"] is None:
            return None
        project = self.projects.get(row["project_id"])
        if project is None:  # a project newer than the last reload
            project = Project(
                row["project_id"],
                row["name"],
                row["settings"] or {},
                row["config"] or {},
                row["config_version"],
            )
        return project

    # ---- notifications ----

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        self.stats["notifications"] += 1
        try:
            data = json.loads(str(payload))
            if data.get("kind") != "key":
                self._reload_wanted.set()
                return
            h = bytes.fromhex(data["hash"])
        except (ValueError, KeyError, TypeError):
            logger.warning("unreadable key notification payload=%.200s", str(payload))
            self._reload_wanted.set()
            return
        self._seq += 1
        self._changed[h] = (self._seq, bool(data.get("live")))
        self._negative.pop(h, None)
        if not data.get("live"):
            self._keys.pop(h, None)
            return
        project = self.projects.get(data.get("project_id") or 0)
        if data.get("scope") == "client" and project is None:
            self._reload_wanted.set()  # its project is newer than the last reload: resolve() covers the gap
            return
        self._keys[h] = Credential(str(data.get("scope")), project)

    async def _listen(self) -> None:
        """LISTEN on a pooled connection for as long as it lives; reload after every (re)connect."""
        while True:
            try:
                async with self._pool.acquire() as conn:
                    await conn.add_listener(CHANNEL, self._notified)
                    try:
                        self.listening.set()
                        await self.reload()  # whatever changed while nobody listened
                        while True:
                            await asyncio.sleep(self._interval)
                            await conn.execute("SELECT 1", timeout=5)  # a dead connection shows here
                    finally:
                        self.listening.clear()
                        with contextlib.suppress(Exception):
                            await conn.remove_listener(CHANNEL, self._notified)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                logger.warning("key notifications lost, reconnecting error=%r", e)
            await asyncio.sleep(1.0)

    # ---- full reloads ----

    @property
    def settled(self) -> bool:
        """No full reload running or wanted: what the cache holds now stays until the next change."""
        return not self._reloading and not self._reload_wanted.is_set()

    async def reload(self) -> None:
        self._reloading += 1
        try:
            await self._reload()
        finally:
            self._reloading -= 1

    async def _reload(self) -> None:
        seq = self._seq
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
        # Notifications that arrived while this read ran are newer than it: keep what they said.
        for h, (at, _) in self._changed.items():
            if at <= seq:
                continue
            current = self._keys.get(h)
            if current is None:
                keys.pop(h, None)
            else:
                project = projects.get(current.project.id) if current.project else None
                if current.is_user or project is not None:
                    keys[h] = Credential(current.scope, project)
        if not self._waiting and not self._inflight:
            self._changed = {h: c for h, c in self._changed.items() if c[0] > seq}
        self.projects, self._keys = projects, keys
        self.loaded.set()

    async def run(self) -> None:
        """Listen for changes; reload on project changes and every `interval` seconds regardless."""
        listener = asyncio.create_task(self._listen())
        try:
            while True:
                try:
                    await self.reload()
                except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                    logger.warning("key cache reload failed error=%r", e)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._reload_wanted.wait(), self._interval)
                self._reload_wanted.clear()
        finally:
            for task in (listener, self._lookups):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task


_LOOKUP = """
SELECT k.key_hash, k.scope, k.project_id, p.name, p.settings, p.config, p.config_version
FROM api_keys AS k LEFT JOIN projects AS p ON p.id = k.project_id
WHERE k.key_hash = ANY($1::bytea[]) AND k.revoked_at IS NULL AND (k.scope = 'user' OR p.id IS NOT NULL)
"""


# ---- the request side: every credential a request may carry, resolved before its handler -------

_PARAMS = ("api_key", "access_token", "auth_token", "key", "apikey", "sentry_key")


def _sentry_key(value: str | None) -> str | None:
    scheme, _, rest = (value or "").strip().partition(" ")
    if scheme.lower() != "sentry":
        return None
    for part in rest.split(","):
        name, _, val = part.strip().partition("=")
        if name.strip().lower() == "sentry_key":
            return val.strip().strip('"')
    return None


def candidates(request: web.Request) -> list[str | None]:
    """Every value in the headers, query and cookie that a service may read as the credential."""
    found: list[str | None] = [credential_from_headers(request)]
    found += [_sentry_key(request.headers.get(h)) for h in ("X-Sentry-Auth", "Authorization")]
    found += [request.query.get(name, "").strip() for name in _PARAMS]
    if "Cookie" in request.headers:  # parsing an absent cookie header still cost a parser call
        found.append(request.cookies.get("faultline_token"))
    return found


def prefetcher(app_key: web.AppKey[KeyCache]) -> Callable[[web.Request], Awaitable[None]]:
    """Looks up first the keys in a request that the cache has not heard of yet, so a key works on
    the first request after its creation, at every process. Never raises."""

    async def before(request: web.Request) -> None:
        cache = request.app.get(app_key)
        if cache is not None:
            await cache.resolve(candidates(request))

    return before


def prefetch(app_key: web.AppKey[KeyCache]) -> Any:
    """`prefetcher` as a middleware of its own (the query service)."""
    before = prefetcher(app_key)

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        await before(request)
        response: web.StreamResponse = await handler(request)
        return response

    return middleware


# ---- the key lifecycle (CLI and management API) -------------------------------------------------

KEY_COLUMNS = "id, scope, project_id, label, hint, created_at, revoked_at"
PROJECT_COLUMNS = "id, name, settings, created_at, updated_at"


def dsn(settings: Settings, key: str, project_id: int) -> str:
    """The Sentry DSN of a client key: the gateway's address as clients should reach it."""
    host = settings.host
    if host in ("", "0.0.0.0", "::"):  # a wildcard bind is no address to send to: the public host
        host = urlsplit(settings.public_url).hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{key}@{host}:{settings.gateway_port}/{project_id}"


def mask(scope: str, hint: str | None) -> str:
    """What a key looks like after its creation: never more than its last four characters."""
    prefix = "flt_" if scope == "user" else ""
    return f"{prefix}…{hint}" if hint else f"{prefix}…"


def key_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A key or token as listed: masked, with its label and times."""
    out: dict[str, Any] = {"id": row["id"]}
    if row["scope"] == "client":
        out["project_id"] = row["project_id"]
    return {
        **out,
        "key": mask(row["scope"], row["hint"]),
        "label": row["label"],
        "created_at": iso(row["created_at"]),
        "revoked_at": iso(row["revoked_at"]),
    }


def project_row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "settings": row["settings"] or {},
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


async def _insert_key(conn: Conn, scope: str, project_id: int | None, label: str | None) -> tuple[Any, str]:
    key = new_client_key() if scope == "client" else new_user_token()
    row = await conn.fetchrow(
        "INSERT INTO api_keys (key_hash, scope, project_id, label, hint) VALUES ($1, $2, $3, $4, $5)"
        f" RETURNING {KEY_COLUMNS}",
        hash_key(key),
        scope,
        project_id,
        label,
        key[-4:],
    )
    return row, key


async def create_project(conn: Conn, name: str, label: str | None = None) -> tuple[Project, str]:
    """A project and its first client key (returned in clear once, stored hashed)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO projects (name) VALUES ($1) RETURNING id, name, settings", name
        )
        assert row is not None
        _, key = await _insert_key(conn, "client", row["id"], label)
    return Project(row["id"], row["name"], row["settings"]), key


async def create_client_key(conn: Conn, project_id: int, label: str | None = None) -> tuple[Any, str] | None:
    """One more client key for a project (rotation: create, deploy, revoke the old one); None: no project."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT true FROM projects WHERE id = $1 FOR KEY SHARE", project_id):
            return None
        return await _insert_key(conn, "client", project_id, label)


async def create_token(conn: Conn, label: str | None = None) -> tuple[Any, str]:
    """A user-scoped token: its row and its secret (shown once)."""
    return await _insert_key(conn, "user", None, label)


async def create_user_token(conn: Conn, label: str | None = None) -> str:
    _, token = await create_token(conn, label)
    return token


async def list_keys(conn: Conn, scope: str, project_id: int | None = None) -> list[Any]:
    """Live keys of one scope (client keys of one project when given), oldest first."""
    return list(
        await conn.fetch(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE scope = $1 AND revoked_at IS NULL"
            " AND ($2::int IS NULL OR project_id = $2) ORDER BY id",
            scope,
            project_id,
        )
    )


async def get_key(conn: Conn, scope: str, key_id: int) -> Any:
    return await conn.fetchrow(
        f"SELECT {KEY_COLUMNS} FROM api_keys WHERE scope = $1 AND id = $2", scope, key_id
    )


async def revoke_key(conn: Conn, scope: str, key_id: int) -> tuple[str, Any]:
    """("revoked", row), ("already", row) or ("missing", None); every service refuses it at once."""
    row = await conn.fetchrow(
        "UPDATE api_keys SET revoked_at = now(), updated_at = now()"
        f" WHERE scope = $1 AND id = $2 AND revoked_at IS NULL RETURNING {KEY_COLUMNS}",
        scope,
        key_id,
    )
    if row is not None:
        return "revoked", row
    row = await get_key(conn, scope, key_id)
    return ("already", row) if row is not None else ("missing", None)


async def revoke(conn: Conn, key: str) -> bool:
    status = await conn.execute(
        "UPDATE api_keys SET revoked_at = now(), updated_at = now()"
        " WHERE key_hash = $1 AND revoked_at IS NULL",
        hash_key(key),
    )
    return status.endswith(" 1")


async def key_id_of(conn: Conn, key: str) -> int | None:
    """The id of a key or token given in clear (to refuse revoking the token a request came with)."""
    value: int | None = await conn.fetchval("SELECT id FROM api_keys WHERE key_hash = $1", hash_key(key))
    return value


async def list_projects(conn: Conn) -> list[Any]:
    return list(await conn.fetch(f"SELECT {PROJECT_COLUMNS} FROM projects ORDER BY id"))


async def get_project(conn: Conn, project_id: int) -> Any:
    return await conn.fetchrow(f"SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1", project_id)


async def project_with_keys(conn: Conn, project_id: int) -> dict[str, Any] | None:
    """A project and its live client keys, masked (`project show`, `GET /v1/projects/{id}`)."""
    row = await get_project(conn, project_id)
    if row is None:
        return None
    return {
        **project_row_json(row),
        "keys": [key_json(k) for k in await list_keys(conn, "client", project_id)],
    }


async def rename_project(conn: Conn, project_id: int, name: str) -> Any:
    return await conn.fetchrow(
        f"UPDATE projects SET name = $2, updated_at = now() WHERE id = $1 RETURNING {PROJECT_COLUMNS}",
        project_id,
        name,
    )


async def delete_project(conn: Conn, project_id: int) -> bool:
    """A project with its keys, errors, notices, deploys and descriptions; its keys stop working at once."""
    async with conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = '300s'")
        if not await conn.fetchval("SELECT true FROM projects WHERE id = $1 FOR UPDATE", project_id):
            return False
        # Notices and hourly counts have no foreign key (partitioned / written with their error).
        await conn.execute(
            "DELETE FROM error_hourly WHERE error_id IN (SELECT id FROM errors WHERE project_id = $1)",
            project_id,
        )
        await conn.execute("DELETE FROM notices WHERE project_id = $1", project_id)
        await conn.execute("DELETE FROM projects WHERE id = $1", project_id)
    return True
