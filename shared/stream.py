"""The notices stream, both sides of it: key names, the consumer group, the entry format, queueing.

The gateway queues *raw* notices: the body as the client sent it (decompressed) and the few facts a
decoder needs later (`RawNotice`). Workers decode them (shared.protocols) into canonical notices.
Entries of format 1 (a canonical notice parsed at the gateway, before the thin-gateway change) are
still decoded (`LegacyNotice`), so a stream written by an older gateway drains after an upgrade.

Queueing is coalesced: requests hand their entries to one flusher task, which sends everything that
piled up during the previous round trip as one script call. That call also claims once-keys (Sentry
event ids) and counts each request against its project's rate limit, so neither costs a round trip.
A request is answered only after Redis acknowledged its entries, so a 2xx always means "queued".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from shared.model import Notice

logger = logging.getLogger(__name__)

GROUP = "workers"
FIELD = b"m"
FORMAT = 2  # raw notices; format 1 carried canonical notices and is still decoded
LEGACY_FORMAT = 1
RAW = "raw"
NOTICE = "notice"  # format 1's kind
DESCRIPTION = "description"
DEPLOY = "deploy"
MAX_PER_CALL = 2000  # entries per script call: bounds how long one call holds the Redis server
ONCE_TTL = 3600  # seconds a once-key is remembered (Sentry event ids: SDK retries come within minutes)
RATE_WINDOW_MS = 60_000


def notices_stream(prefix: str) -> str:
    return f"{prefix}:notices"


def dead_stream(prefix: str) -> str:
    return f"{prefix}:dead"


def once_key(prefix: str, project_id: int, event_id: str) -> str:
    return f"{prefix}:sentry-seen:{project_id}:{event_id}"


def rate_key(prefix: str, project_id: int, now_ms: int) -> str:
    return f"{prefix}:rl:{project_id}:{now_ms // RATE_WINDOW_MS}"


def workers_key(prefix: str, name: str = "*") -> str:
    return f"{prefix}:workers:{name}"


# ---- entries -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawNotice:
    """One accepted request's notice(s), as queued by the gateway and decoded by a worker.

    A body may hold several notices (an Exceptionless array, a Sentry envelope): the first gets
    `notice_id` and `location_id`, the n-th ids derived from them (shared.ids.nth_*), so a
    redelivered entry always yields the same ids.
    """

    protocol: str
    notice_id: str  # UUIDv7; its time is the received time
    location_id: str
    project_id: int
    body: bytes
    content_type: str = ""
    facts: dict[str, Any] = field(default_factory=dict)  # the route's own facts (query, path type, ip, ...)
    error_id: int | None = None  # Exceptioner answers with the error id: computed at the gateway
    fingerprint: str | None = None
    grouping_version: int | None = None


@dataclass(frozen=True, slots=True)
class Description:
    """An end user's description of the event with `reference_id`, possibly not stored yet."""

    project_id: int
    reference_id: str
    data: dict[str, Any]  # {"email_address", "description", "data"} as far as sent
    received_at: float  # epoch seconds; the latest description of a reference id wins


@dataclass(frozen=True, slots=True)
class Deploy:
    """A deploy notified through the gateway (Airbrake v4 deploys), recorded by a worker."""

    project_id: int
    ref: str  # a UUID made at the gateway: a redelivered entry records its deploy once
    environment: str
    author: str | None
    repository: str | None
    revision: str | None
    received_at: float  # epoch seconds: the deploy's time


@dataclass(frozen=True, slots=True)
class LegacyNotice:
    """A format-1 entry: a canonical notice parsed and fingerprinted by an older gateway."""

    notice_id: str
    location_id: str
    project_id: int
    error_id: int
    fingerprint: str
    grouping_version: int
    notice: Notice
    raw: bytes | None


Entry = RawNotice | Description | LegacyNotice | Deploy


class CodecError(ValueError):
    """A stream entry that cannot be decoded: it goes to the dead-letter stream."""


def _pack(env: dict[str, Any]) -> dict[bytes, bytes]:
    return {FIELD: msgpack.packb(env, use_bin_type=True)}


def encode(entry: RawNotice | Description | Deploy) -> dict[bytes, bytes]:
    """Stream fields for XADD."""
    if isinstance(entry, Deploy):
        fields = {"au": entry.author, "repo": entry.repository, "rev": entry.revision}
        return _pack(
            {
                "v": FORMAT,
                "k": DEPLOY,
                "pid": entry.project_id,
                "ref": entry.ref,
                "env": entry.environment,
                "at": entry.received_at,
                **{k: v for k, v in fields.items() if v is not None},
            }
        )
    if isinstance(entry, Description):
        d = entry
        return _pack(
            {
                "v": FORMAT,
                "k": DESCRIPTION,
                "pid": d.project_id,
                "ref": d.reference_id,
                "d": d.data,
                "at": d.received_at,
            }
        )
    env: dict[str, Any] = {
        "v": FORMAT,
        "k": RAW,
        "p": entry.protocol,
        "id": entry.notice_id,
        "loc": entry.location_id,
        "pid": entry.project_id,
        "b": entry.body,
    }
    if entry.content_type:
        env["ct"] = entry.content_type
    if entry.facts:
        env["f"] = entry.facts
    if entry.fingerprint is not None:
        env["eid"], env["fp"], env["gv"] = entry.error_id, entry.fingerprint, entry.grouping_version
    return _pack(env)


def encode_legacy(entry: LegacyNotice) -> dict[bytes, bytes]:
    """A format-1 entry, as the gateway wrote them before format 2 (tests of the upgrade path)."""
    env = {
        "v": LEGACY_FORMAT,
        "id": entry.notice_id,
        "loc": entry.location_id,
        "pid": entry.project_id,
        "eid": entry.error_id,
        "fp": entry.fingerprint,
        "gv": entry.grouping_version,
        "n": entry.notice,
        "raw": entry.raw,
    }
    return _pack(env)


def _unpack(fields: dict[Any, Any]) -> dict[str, Any]:
    blob = fields.get(FIELD)
    if blob is None:
        blob = fields.get(FIELD.decode())
    if not isinstance(blob, bytes | bytearray):
        raise CodecError("entry has no 'm' field")
    try:
        env = msgpack.unpackb(blob, raw=False)
    except Exception as e:  # msgpack raises several unrelated types
        raise CodecError(f"undecodable msgpack: {e}") from e
    if not isinstance(env, dict) or env.get("v") not in (FORMAT, LEGACY_FORMAT):
        raise CodecError(f"unknown entry format {env.get('v') if isinstance(env, dict) else type(env)}")
    return env


def _require(env: dict[str, Any], *spec: tuple[str, type | tuple[type, ...]]) -> None:
    for key, kind in spec:
        if not isinstance(env.get(key), kind) or isinstance(env.get(key), bool):
            raise CodecError(f"entry field {key!r} missing or malformed")


def decode(fields: dict[Any, Any]) -> Entry:
    """The entry an XADD wrote, of either format; CodecError on anything it cannot trust."""
    env = _unpack(fields)
    kind = env.get("k", NOTICE)
    if kind == DESCRIPTION:
        _require(env, ("pid", int), ("ref", str), ("d", dict), ("at", (int, float)))
        if not env["ref"]:
            raise CodecError("description without a reference id")
        return Description(env["pid"], env["ref"], env["d"], float(env["at"]))
    if kind == DEPLOY:
        _require(env, ("pid", int), ("ref", str), ("env", str), ("at", (int, float)))
        text = {k: env.get(k) if isinstance(env.get(k), str) else None for k in ("au", "repo", "rev")}
        return Deploy(
            env["pid"], env["ref"], env["env"], text["au"], text["repo"], text["rev"], float(env["at"])
        )
    if kind == RAW:
        _require(env, ("p", str), ("id", str), ("loc", str), ("pid", int), ("b", (bytes, bytearray)))
        facts = env.get("f") or {}
        if not isinstance(facts, dict):
            raise CodecError("entry field 'f' malformed")
        fp = env.get("fp")
        return RawNotice(
            env["p"],
            env["id"],
            env["loc"],
            env["pid"],
            bytes(env["b"]),
            str(env.get("ct") or ""),
            facts,
            env.get("eid") if isinstance(fp, str) else None,
            fp if isinstance(fp, str) else None,
            env.get("gv") if isinstance(fp, str) else None,
        )
    if kind != NOTICE:
        raise CodecError(f"entry kind {kind!r} is unknown")
    _require(env, ("id", str), ("loc", str), ("pid", int), ("eid", int), ("fp", str), ("n", dict))
    raw = env.get("raw")
    return LegacyNotice(
        env["id"],
        env["loc"],
        env["pid"],
        env["eid"],
        env["fp"],
        int(env.get("gv") or 1),
        env["n"],
        bytes(raw) if isinstance(raw, bytes | bytearray) else None,
    )


# ---- dead letters --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What a worker refused, as kept in the dead-letter stream (body already scrubbed)."""

    entry_id: str
    reason: str
    consumer: str
    protocol: str | None
    project_id: int | None
    notice_id: str | None
    body: bytes | None

    def fields(self) -> dict[bytes, bytes]:
        out = {
            b"id": self.entry_id.encode(),
            b"reason": self.reason.encode()[:2000],
            b"consumer": self.consumer.encode(),
        }
        if self.protocol:
            out[b"protocol"] = self.protocol.encode()
        if self.project_id is not None:
            out[b"project_id"] = str(self.project_id).encode()
        if self.notice_id:
            out[b"notice_id"] = self.notice_id.encode()
        if self.body is not None:
            out[b"body"] = self.body
        return out

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> DeadLetter:
        def text(name: bytes) -> str | None:
            value = fields.get(name)
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else None

        pid = text(b"project_id")
        return cls(
            text(b"id") or "",
            text(b"reason") or "",
            text(b"consumer") or "",
            text(b"protocol"),
            int(pid) if pid and pid.isdigit() else None,
            text(b"notice_id"),
            fields.get(b"body"),
        )


# ---- queueing ------------------------------------------------------------------------------------

# KEYS[1]: the stream. ARGV[1]: seconds a once-key lives, ARGV[2]: the rate window in ms. Then per
# request: its rate-limit key ('' for none), its limit, its entry count m, then per entry its
# once-key ('' for none), its field count n and n field/value pairs. A request whose count would
# pass its limit queues nothing ('R <ms left in the window>'); an entry whose once-key exists is not
# added ('-' in its place). Claim, count and XADD happen together, so a failed call claims and
# counts nothing. Returns one string per request: its entry ids joined by single spaces.
# (Once-keys and counters are not in KEYS: fine on one Redis node; a cluster needs them in the
# stream's slot.)
_QUEUE = """
local ttl, window, out, i, argc = ARGV[1], ARGV[2], {}, 3, #ARGV
while i <= argc do
    local rl, limit, m = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    i = i + 3
    local refused = nil
    if rl ~= '' then
        local n = redis.call('INCRBY', rl, m)
        if n == m then redis.call('PEXPIRE', rl, window) end
        if n > limit then
            redis.call('DECRBY', rl, m)
            refused = 'R ' .. redis.call('PTTL', rl)
        end
    end
    local ids = {}
    for k = 1, m do
        local once, n = ARGV[i], tonumber(ARGV[i + 1])
        if refused == nil then
            if once == '' or redis.call('SET', once, '1', 'NX', 'EX', ttl) then
                ids[k] = redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 2, i + 1 + 2 * n))
            else
                ids[k] = '-'
            end
        end
        i = i + 2 + 2 * n
    end
    out[#out + 1] = refused or table.concat(ids, ' ')
end
return out
"""
DUPLICATE = b"-"


class QueueUnavailable(Exception):
    """Redis cannot take the entries now (down, or the backlog is over its limit): retry later."""


class RateLimited(Exception):
    """The project's per-minute limit would be passed; `retry_after` seconds until the window ends."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(f"Rate limit of {limit} notices per minute exceeded; retry in {retry_after}s")
        self.limit = limit
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Limit:
    """A request's count against its project's limit (key per minute window)."""

    key: str
    limit: int


@dataclass(slots=True)
class _Pending:
    entries: list[dict[bytes, bytes]]
    once: list[str]
    limit: Limit | None
    future: asyncio.Future[list[bytes]]


async def ensure_group(redis: aioredis.Redis, stream: str) -> None:
    """Create the consumer group (and the stream) so no entry is ever without a reader."""
    try:
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


async def backlog(redis: aioredis.Redis, stream: str) -> int:
    """Entries not yet written: undelivered (lag) + delivered but unacknowledged (pending)."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return 0  # no stream yet: nothing queued
    group = next((g for g in groups if g["name"] in (GROUP, GROUP.encode())), None)
    if group is None:
        return int(await redis.xlen(stream))
    lag = group.get("lag")
    if lag is None:  # Redis < 7 or an inconsistent lag: count conservatively
        lag = await redis.xlen(stream)
    return int(lag) + int(group.get("pending") or 0)


class Publisher:
    """Coalesces queueing across concurrent requests and tracks the backlog the workers have not written."""

    def __init__(self, redis: aioredis.Redis, stream: str, backlog_limit: int) -> None:
        self._redis = redis
        self._stream = stream
        self._limit = backlog_limit
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._queue = redis.register_script(_QUEUE)
        self.backlog = 0
        self.published = 0

    @property
    def overloaded(self) -> bool:
        return self.backlog >= self._limit

    async def publish(
        self, entries: list[dict[bytes, bytes]], once: list[str] | None = None, limit: Limit | None = None
    ) -> list[bytes]:
        """Queue one request's entries; their stream ids once Redis has them (`DUPLICATE` for an entry
        whose once-key was seen in the last hour, which is then not queued). Raises RateLimited when
        the request would pass `limit`, QueueUnavailable when Redis cannot take it."""
        if self.overloaded:
            raise QueueUnavailable(f"Backlog of {self.backlog} notices is over the limit; retry later")
        fut: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(entries, once or [""] * len(entries), limit, fut))
        self._wake.set()
        return await fut

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._flush(batch)

    def _calls(self, batch: list[_Pending]) -> list[tuple[list[_Pending], list[Any]]]:
        calls: list[tuple[list[_Pending], list[Any]]] = []
        args: list[Any] = [ONCE_TTL, RATE_WINDOW_MS]
        members: list[_Pending] = []
        count = 0
        for p in batch:
            args += (p.limit.key, p.limit.limit) if p.limit else ("", 0)
            args.append(len(p.entries))
            for fields, key in zip(p.entries, p.once, strict=True):
                args += (key, len(fields))
                for name, value in fields.items():
                    args += (name, value)
            members.append(p)
            count += len(p.entries)
            if count >= MAX_PER_CALL:
                calls.append((members, args))
                args, members, count = [ONCE_TTL, RATE_WINDOW_MS], [], 0
        if members:
            calls.append((members, args))
        return calls

    async def _flush(self, batch: list[_Pending]) -> None:
        for members, args in self._calls(batch):
            try:
                replies = await self._queue(keys=[self._stream], args=args)
            except (RedisError, OSError) as e:
                logger.warning("queueing failed requests=%d error=%r", len(members), e)
                for p in members:
                    if not p.future.done():
                        p.future.set_exception(QueueUnavailable("Queue unavailable; retry later"))
                continue
            for p, reply in zip(members, replies, strict=True):
                reply = reply if isinstance(reply, bytes) else str(reply).encode()
                if reply.startswith(b"R "):
                    assert p.limit is not None
                    ms = int(reply[2:] or 0)
                    exc = RateLimited(p.limit.limit, max(1, -(-ms // 1000)))
                    if not p.future.done():
                        p.future.set_exception(exc)
                    continue
                ids = reply.split(b" ") if reply else []
                added = len(ids) - ids.count(DUPLICATE)
                self.published += added
                self.backlog += added
                if not p.future.done():
                    p.future.set_result(ids)

    async def watch_backlog(self, interval: float = 0.5) -> None:
        """Keep `backlog` = entries undelivered + delivered but unacknowledged."""
        while True:
            try:
                self.backlog = await backlog(self._redis, self._stream)
            except (RedisError, OSError) as e:
                logger.debug("backlog check failed error=%r", e)
            await asyncio.sleep(interval)
