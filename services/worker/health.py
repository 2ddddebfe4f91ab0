"""The worker's heartbeat file, and the probe that reads it (`python -m services.worker.health`).

A worker has no HTTP port. While it runs, a task beside the consumer rewrites FAULTLINE_HEALTH_FILE
every few seconds with what a container probe needs: is the consumer loop still turning (its last
XREADGROUP/XCLAIM, as Redis saw it), and do Redis and PostgreSQL answer. A file older than the probe's
--max-age means the event loop itself is stuck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.settings import Settings, SettingsError

if TYPE_CHECKING:  # the probe imports only this module's light half: it runs every few seconds
    import asyncpg
    import redis.asyncio as aioredis

logger = logging.getLogger(__name__)

INTERVAL = 2.0  # seconds between rewrites
MAX_AGE = 15.0  # the probe's default: a file older than this is a stuck process
# A consumer that has not touched the stream for this long is wedged: the loop's longest wait is its
# outage back-off (15 s) plus one batch write, far below this.
STALL_MS = 120_000


async def status(
    consumer_name: str, stream: str, redis: aioredis.Redis, pool: asyncpg.Pool, running: bool, started: float
) -> dict[str, Any]:
    """One heartbeat: what the probe decides on (`live`, `ready`) and why."""
    from redis.exceptions import RedisError

    from shared.db import ping

    out: dict[str, Any] = {"ts": time.time(), "consumer": consumer_name, "running": running}
    idle_ms: int | None = None
    try:
        async with asyncio.timeout(2):
            # Every group of the stream: consumer names are unique (host, pid, random), and the
            # probe then needs no knowledge of the group's name.
            for g in await redis.xinfo_groups(stream):
                for c in await redis.xinfo_consumers(stream, g["name"]):
                    if _text(c["name"]) == consumer_name:
                        idle_ms = int(c["idle"])
        out["redis"] = "ok"
    except (TimeoutError, RedisError, OSError) as e:
        out["redis"] = f"down: {type(e).__name__}"
    out["postgres"] = await ping(pool, timeout=2)
    out["idle_ms"] = idle_ms
    if idle_ms is None:  # not in the group yet (still setting up), or Redis did not answer
        stalled = out["redis"] == "ok" and (time.monotonic() - started) * 1000 > STALL_MS
    else:
        stalled = idle_ms > STALL_MS
    # A Redis or PostgreSQL outage is not the worker's fault: restarting it would not help, so it
    # stays live (and its own back-off retries) but is not ready.
    out["live"] = running and not stalled
    out["ready"] = out["live"] and out["redis"] == "ok" and out["postgres"] == "ok" and idle_ms is not None
    return out


def _text(v: str | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else v


def write(path: Path, data: dict[str, Any]) -> None:
    """Replace the file whole, so a probe never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


async def heartbeat(
    path: Path,
    consumer_name: str,
    stream: str,
    redis: aioredis.Redis,
    pool: asyncpg.Pool,
    task: asyncio.Task[None],
    stop: asyncio.Event,
) -> None:
    """Rewrite `path` every INTERVAL seconds until `stop`; then mark it not ready (draining)."""
    started = time.monotonic()
    while not stop.is_set():
        try:
            write(path, await status(consumer_name, stream, redis, pool, not task.done(), started))
        except OSError as e:  # the probe will see a stale file; say why here
            logger.warning("health file not written path=%s error=%r", path, e)
        try:
            await asyncio.wait_for(stop.wait(), INTERVAL)
        except TimeoutError:
            pass
    draining = {"ts": time.time(), "consumer": consumer_name, "live": True, "ready": False, "stopping": True}
    try:
        write(path, draining)
    except OSError as e:
        logger.warning("health file not written path=%s error=%r", path, e)


def check(path: Path, ready: bool, max_age: float, now: float | None = None) -> tuple[bool, str]:
    """The probe's verdict on the file: (passed, one line saying why)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return False, f"no heartbeat: {type(e).__name__} reading {path}"
    age = (time.time() if now is None else now) - float(data.get("ts", 0))
    if age > max_age:
        return False, f"heartbeat is {age:.0f}s old (over {max_age:.0f}s): the worker is stuck or gone"
    key = "ready" if ready else "live"
    summary = {k: data.get(k) for k in ("consumer", "redis", "postgres", "idle_ms", "stopping") if k in data}
    return bool(data.get(key)), f"{key}={bool(data.get(key))} {json.dumps(summary)}"


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when the worker is live (or, with --ready, ready), else 1 with the reason on stderr."""
    parser = argparse.ArgumentParser(prog="python -m services.worker.health", description=main.__doc__)
    parser.add_argument("--ready", action="store_true", help="readiness instead of liveness")
    parser.add_argument("--max-age", type=float, default=MAX_AGE, help="seconds (default %(default)s)")
    parser.add_argument("--file", type=Path, help="default: FAULTLINE_HEALTH_FILE")
    args = parser.parse_args(argv)
    try:
        path = args.file or Settings.from_env().health_file
    except SettingsError as e:
        print(f"faultline: {e}", file=sys.stderr)
        return 2
    if path is None:
        print("faultline: FAULTLINE_HEALTH_FILE is unset and no --file given", file=sys.stderr)
        return 2
    ok, why = check(path, args.ready, args.max_age)
    print(why, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
