"""Settings, read once from the environment at start-up and passed down."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """A setting is present but malformed; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, lo: int = 1, hi: int = 1 << 31) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value} is out of range {lo}..{hi}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        raise SettingsError(f"{name}={raw!r} is not one of 1, 0, true, false, yes, no, on, off")
    return raw in ("1", "true", "yes", "on")


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not parts.hostname and not parts.path:
        raise SettingsError(f"{name}={raw!r} is not a {'/'.join(schemes)}:// URL")
    return raw


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of every service. Unset URLs mean: start embedded servers under data_dir."""

    database_url: str | None = None
    # The query service's reads (a streaming replica); None: the primary. Writes always go to database_url.
    query_database_url: str | None = None
    redis_url: str | None = None
    data_dir: pathlib.Path = pathlib.Path(".faultline")
    host: str = "127.0.0.1"
    gateway_port: int = 8000
    query_port: int = 8001
    public_url: str = "http://127.0.0.1:8001"
    workers: int = 2
    gateway_processes: int = 1  # gateway children of `faultline up`, sharing the port (SO_REUSEPORT)
    # Not in the contract; operators' knobs with sensible defaults.
    stream_prefix: str = "faultline"  # stream keys: {prefix}:notices:{tag}, {prefix}:dead:{tag}
    stream_shards: int = 16  # stream keys with hash tags, each its own group and dead-letter stream
    ack: str = "memory"  # what a 2xx waits for: memory, fsync (WAITAOF), replica (WAIT); see README
    max_body: int = 1 << 20  # bytes on the wire
    max_decompressed: int = 10 << 20  # bytes after gzip/deflate/br
    backlog_limit: int = 500_000  # stream entries not yet written before the gateway sheds load
    batch_size: int = 5000  # entries per XREADGROUP; larger batches cost PostgreSQL less per notice
    block_ms: int = 500
    claim_idle_ms: int = 30_000  # pending this long -> another worker reclaims it
    key_refresh: float = 2.0  # seconds between key-cache refreshes
    shutdown_grace: float = 10.0
    maintenance_interval: float = 600.0  # seconds between retention / partition passes
    grouping_version: int = 1  # the grouping rules a new project starts with (docs/grouping.md)
    health_file: pathlib.Path | None = None  # a worker's heartbeat, for container probes
    # Webhooks (README "Webhooks"): private and loopback receivers are refused unless allowed.
    webhook_allow_private: bool = False
    webhook_timeout: float = 10.0  # seconds a receiver gets to answer
    webhook_attempts: int = 10  # tries before a delivery is marked failed
    webhook_backoff: float = 10.0  # seconds before the first retry; doubles each time (with jitter)
    webhook_concurrency: int = 2  # requests in flight per hook, per worker process
    webhook_rate: float = 10.0  # requests started per second per hook, per worker process

    @property
    def notices_stream(self) -> str:
        """The single stream key before sharding: workers drain it as one more (legacy) shard."""
        return f"{self.stream_prefix}:notices"

    @property
    def dead_stream(self) -> str:
        """The legacy shard's dead-letter stream (each shard has its own: shared.stream.Layout)."""
        return f"{self.stream_prefix}:dead"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read FAULTLINE_* variables; raise SettingsError naming the first malformed one."""
        e = os.environ if env is None else env
        d = cls()
        public = _url(e, "FAULTLINE_PUBLIC_URL", ("http", "https")) or d.public_url
        prefix = e.get("FAULTLINE_STREAM_PREFIX") or d.stream_prefix
        if not prefix.replace("_", "").replace("-", "").replace(":", "").isalnum():
            raise SettingsError(f"FAULTLINE_STREAM_PREFIX={prefix!r} may hold only letters, digits, - _ :")
        query_database_url = _url(e, "FAULTLINE_QUERY_DATABASE_URL", ("postgres", "postgresql"))
        if query_database_url and not e.get("FAULTLINE_DATABASE_URL"):
            raise SettingsError(
                "FAULTLINE_QUERY_DATABASE_URL is set but FAULTLINE_DATABASE_URL (its primary) is not"
            )
        redis_url = _url(e, "FAULTLINE_REDIS_URL", ("redis", "rediss", "unix", "redis+cluster"))
        # Embedded servers (no URL) keep an AOF: there a 2xx waits for its fsync unless told otherwise.
        ack = e.get("FAULTLINE_ACK") or ("memory" if redis_url else "fsync")
        if ack not in ("memory", "fsync", "replica"):
            raise SettingsError(f"FAULTLINE_ACK={ack!r} is not one of memory, fsync, replica")
        return cls(
            database_url=_url(e, "FAULTLINE_DATABASE_URL", ("postgres", "postgresql")),
            query_database_url=query_database_url,
            redis_url=redis_url,
            data_dir=pathlib.Path(e.get("FAULTLINE_DATA_DIR") or ".faultline"),
            host=e.get("FAULTLINE_HOST") or d.host,
            gateway_port=_int(e, "FAULTLINE_GATEWAY_PORT", 8000, 0, 65535),
            query_port=_int(e, "FAULTLINE_QUERY_PORT", 8001, 0, 65535),
            public_url=public.rstrip("/"),
            workers=_int(e, "FAULTLINE_WORKERS", 2, 0, 256),
            gateway_processes=_int(e, "FAULTLINE_GATEWAY_PROCESSES", 1, 1, 64),
            stream_prefix=prefix,
            stream_shards=_int(e, "FAULTLINE_STREAM_SHARDS", d.stream_shards, 1, 1024),
            ack=ack,
            max_body=_int(e, "FAULTLINE_MAX_BODY", d.max_body, 1024),
            max_decompressed=_int(e, "FAULTLINE_MAX_DECOMPRESSED", d.max_decompressed, 1024),
            backlog_limit=_int(e, "FAULTLINE_BACKLOG_LIMIT", d.backlog_limit, 1),
            batch_size=_int(e, "FAULTLINE_BATCH_SIZE", d.batch_size, 1, 100_000),
            block_ms=_int(e, "FAULTLINE_BLOCK_MS", d.block_ms, 1, 60_000),
            claim_idle_ms=_int(e, "FAULTLINE_CLAIM_IDLE_MS", d.claim_idle_ms, 100),
            key_refresh=_float(e, "FAULTLINE_KEY_REFRESH", d.key_refresh),
            shutdown_grace=_float(e, "FAULTLINE_SHUTDOWN_GRACE", d.shutdown_grace),
            maintenance_interval=_float(e, "FAULTLINE_MAINTENANCE_INTERVAL", d.maintenance_interval),
            grouping_version=_int(e, "FAULTLINE_GROUPING_VERSION", d.grouping_version, 1, 2),
            health_file=pathlib.Path(e["FAULTLINE_HEALTH_FILE"]) if e.get("FAULTLINE_HEALTH_FILE") else None,
            webhook_allow_private=_flag(e, "FAULTLINE_WEBHOOK_ALLOW_PRIVATE", d.webhook_allow_private),
            webhook_timeout=_float(e, "FAULTLINE_WEBHOOK_TIMEOUT", d.webhook_timeout),
            webhook_attempts=_int(e, "FAULTLINE_WEBHOOK_ATTEMPTS", d.webhook_attempts, 1, 100),
            webhook_backoff=_float(e, "FAULTLINE_WEBHOOK_BACKOFF", d.webhook_backoff),
            webhook_concurrency=_int(e, "FAULTLINE_WEBHOOK_CONCURRENCY", d.webhook_concurrency, 1, 100),
            webhook_rate=_float(e, "FAULTLINE_WEBHOOK_RATE", d.webhook_rate),
        )

    def with_urls(self, database_url: str, redis_url: str) -> Settings:
        """A copy pointing at concrete servers (after embedded ones were started)."""
        return dataclasses.replace(self, database_url=database_url, redis_url=redis_url)

    def to_env(self) -> dict[str, str]:
        """The variables that reproduce these settings in a child process."""
        env = {
            "FAULTLINE_DATA_DIR": str(self.data_dir),
            "FAULTLINE_HOST": self.host,
            "FAULTLINE_GATEWAY_PORT": str(self.gateway_port),
            "FAULTLINE_QUERY_PORT": str(self.query_port),
            "FAULTLINE_PUBLIC_URL": self.public_url,
            "FAULTLINE_WORKERS": str(self.workers),
            "FAULTLINE_GATEWAY_PROCESSES": str(self.gateway_processes),
            "FAULTLINE_STREAM_PREFIX": self.stream_prefix,
            "FAULTLINE_STREAM_SHARDS": str(self.stream_shards),
            "FAULTLINE_ACK": self.ack,
            "FAULTLINE_MAX_BODY": str(self.max_body),
            "FAULTLINE_MAX_DECOMPRESSED": str(self.max_decompressed),
            "FAULTLINE_BACKLOG_LIMIT": str(self.backlog_limit),
            "FAULTLINE_BATCH_SIZE": str(self.batch_size),
            "FAULTLINE_BLOCK_MS": str(self.block_ms),
            "FAULTLINE_CLAIM_IDLE_MS": str(self.claim_idle_ms),
            "FAULTLINE_KEY_REFRESH": str(self.key_refresh),
            "FAULTLINE_SHUTDOWN_GRACE": str(self.shutdown_grace),
            "FAULTLINE_MAINTENANCE_INTERVAL": str(self.maintenance_interval),
            "FAULTLINE_GROUPING_VERSION": str(self.grouping_version),
            "FAULTLINE_WEBHOOK_ALLOW_PRIVATE": "1" if self.webhook_allow_private else "0",
            "FAULTLINE_WEBHOOK_TIMEOUT": str(self.webhook_timeout),
            "FAULTLINE_WEBHOOK_ATTEMPTS": str(self.webhook_attempts),
            "FAULTLINE_WEBHOOK_BACKOFF": str(self.webhook_backoff),
            "FAULTLINE_WEBHOOK_CONCURRENCY": str(self.webhook_concurrency),
            "FAULTLINE_WEBHOOK_RATE": str(self.webhook_rate),
        }
        if self.database_url:
            env["FAULTLINE_DATABASE_URL"] = self.database_url
        if self.redis_url:
            env["FAULTLINE_REDIS_URL"] = self.redis_url
        if self.query_database_url:
            env["FAULTLINE_QUERY_DATABASE_URL"] = self.query_database_url
        return env
