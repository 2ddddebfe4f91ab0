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
import functools
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import hiredis
import msgpack
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError

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
COALESCE_YIELDS = 2
LANE_TIMEOUT = 5.0  # seconds one script call may take on the publisher's connection, then 503
ONCE_TTL = 3600  # seconds a once-key is remembered (Sentry event ids: SDK retries come within minutes)
RATE_WINDOW_MS = 60_000
CLUSTER_SCHEME = "redis+cluster"


def notices_stream(prefix: str) -> str:
    """The single stream key of releases before sharding: still drained (`Layout.legacy`)."""
    return f"{prefix}:notices"


def dead_stream(prefix: str) -> str:
    """The single dead-letter stream of releases before sharding (the legacy shard's letters)."""
    return f"{prefix}:dead"


def once_key(prefix: str, project_id: int, event_id: str) -> str:
    """A Sentry event id's claim, by name; the publisher places it in its shard's slot (`Shard.place`)."""
    return f"{prefix}:sentry-seen:{project_id}:{event_id}"


def rate_key(prefix: str, project_id: int, now_ms: int) -> str:
    """A project's counter for one minute window, by name; placed in the project's shard's slot."""
    return f"{prefix}:rl:{project_id}:{now_ms // RATE_WINDOW_MS}"


def workers_key(prefix: str, name: str = "*") -> str:
    return f"{prefix}:workers:{name}"


# ---- shards --------------------------------------------------------------------------------------

SLOTS = 16384
LEGACY = "legacy"


@functools.cache
def shard_tag(index: int, count: int) -> str:
    """The hash tag of shard `index` of `count`: its slot lies in the index-th of `count` equal slot
    ranges, so shards spread over a cluster's masters as evenly as the count allows (small integer
    tags do not: `{0}`..`{7}` land 2/4/2 on three masters)."""
    for k in range(100_000):
        tag = str(index) if k == 0 else f"{index}.{k}"
        if key_slot(tag.encode()) * count // SLOTS == index:
            return tag
    raise AssertionError(f"no tag for shard {index} of {count}")  # pragma: no cover - cannot happen


@dataclass(frozen=True, slots=True)
class Shard:
    """One stream key with its consumer group and dead-letter stream, in one hash slot."""

    name: str  # "0".."n-1", or "legacy" for the pre-sharding key
    stream: str
    dead: str
    tag: str | None  # None: the legacy key, which has no hash tag

    def place(self, key: str) -> str:
        """`key` (a once-key or a rate counter) put in this shard's slot, so one script may touch it."""
        if self.tag is None:
            return key
        return f"{key.replace('{', '(').replace('}', ')')}:{{{self.tag}}}"

    def entry_id(self, raw: bytes) -> bytes:
        """A stream id made unique across shards (ids of two streams may be equal)."""
        return raw if self.tag is None else b"%s@%s" % (raw, self.name.encode())


class Layout:
    """Every stream key of a deployment: `count` shards plus the legacy single key."""

    def __init__(self, prefix: str, count: int) -> None:
        self.prefix = prefix
        self.count = count
        self.shards = [
            Shard(str(i), f"{prefix}:notices:{{{t}}}", f"{prefix}:dead:{{{t}}}", t)
            for i, t in ((i, shard_tag(i, count)) for i in range(count))
        ]
        self.legacy = Shard(LEGACY, notices_stream(prefix), dead_stream(prefix), None)
        self._by_name = {s.name.encode(): s for s in [*self.shards, self.legacy]}

    @property
    def every(self) -> list[Shard]:
        """The shards and the legacy key: what workers read, trim and reclaim."""
        return [*self.shards, self.legacy]

    def for_project(self, project_id: int) -> Shard:
        """Project-affine: a project's notices, once-keys and rate counter share one shard (README)."""
        return self.shards[project_id % self.count]

    def split(self, entry_id: bytes) -> tuple[Shard, bytes]:
        """The shard an entry id (`Shard.entry_id`) came from and its id in that stream."""
        raw, _, name = entry_id.rpartition(b"@")
        if not raw:
            return self.legacy, entry_id
        return self._by_name[name], raw

    def by_shard(self, entry_ids: Iterable[bytes]) -> dict[Shard, list[bytes]]:
        out: dict[Shard, list[bytes]] = {}
        for entry_id in entry_ids:
            shard, raw = self.split(entry_id)
            out.setdefault(shard, []).append(raw)
        return out


def connect(url: str, **kwargs: Any) -> Any:
    """A client for `redis://…` (one server) or `redis+cluster://host:port,host:port` (a cluster)."""
    if url.startswith(CLUSTER_SCHEME + "://"):
        nodes = [ClusterNode(*_host_port(n)) for n in url.split("://", 1)[1].split("/")[0].split(",") if n]
        return RedisCluster(startup_nodes=nodes, **kwargs)
    return aioredis.Redis.from_url(url, **kwargs)


def _host_port(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    return (host or node).strip("[]"), int(port or 6379)


def is_cluster(redis: Any) -> bool:
    return isinstance(redis, RedisCluster)


# ---- entries -----------------------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: a frozen dataclass of ten fields took 1.2 us to make, this 0.3
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


_PACKER = msgpack.Packer(use_bin_type=True)  # one for the process: packb makes a Packer per call


def _pack(env: dict[str, Any]) -> dict[bytes, bytes]:
    return {FIELD: _PACKER.pack(env)}


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

# KEYS[1]: the shard's stream, then every once-key and rate counter the call touches (all in the
# stream's hash slot: `Shard.place`). ARGV[1]: seconds a once-key lives, ARGV[2]: the rate window in
# ms. Then per request: the KEYS index of its rate counter (0 for none), its limit, its entry count
# m, then per entry the KEYS index of its once-key (0 for none), its field count n and n field/value
# pairs. A request whose count would pass its limit queues nothing ('R <ms left in the window>'); an
# entry whose once-key exists is not added ('-' in its place). Claim, count and XADD happen
# together, so a failed call claims and counts nothing. Returns one string per request: its entry
# ids joined by single spaces.
_QUEUE = """
local ttl, window, out, i, argc = ARGV[1], ARGV[2], {}, 3, #ARGV
while i <= argc do
    local rk, limit, m = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    i = i + 3
    local refused = nil
    if rk > 0 then
        local rl = KEYS[rk]
        local n = redis.call('INCRBY', rl, m)
        if n == m then redis.call('PEXPIRE', rl, window) end
        if n > limit then
            redis.call('DECRBY', rl, m)
            refused = 'R ' .. redis.call('PTTL', rl)
        end
    end
    local ids = {}
    for k = 1, m do
        local once, n = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
        if refused == nil then
            if once == 0 or redis.call('SET', KEYS[once], '1', 'NX', 'EX', ttl) then
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
    shard: Shard
    entries: list[dict[bytes, bytes]]
    once: list[str]
    limit: Limit | None
    future: asyncio.Future[list[bytes]]


def _group_of(g: dict[Any, Any]) -> bool:
    return g["name"] in (GROUP, GROUP.encode())


async def ensure_group(redis: Any, stream: str) -> None:
    """Create the consumer group (and the stream) so no entry is ever without a reader."""
    try:
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


async def ensure_groups(redis: Any, streams: Iterable[str]) -> None:
    """`ensure_group` for several streams in one round trip (one per node in a cluster)."""
    pipe = redis.pipeline(transaction=False)
    for key in streams:
        pipe.xgroup_create(key, GROUP, id="0", mkstream=True)
    for reply in await pipe.execute(raise_on_error=False):
        if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
            raise reply


async def group_infos(redis: Any, streams: list[str]) -> list[dict[Any, Any] | None]:
    """Each stream's group (XINFO GROUPS) in one round trip; None where the stream or group is missing."""
    pipe = redis.pipeline(transaction=False)
    for key in streams:
        pipe.xinfo_groups(key)
    out: list[dict[Any, Any] | None] = []
    for reply in await pipe.execute(raise_on_error=False):
        if isinstance(reply, ResponseError):
            out.append(None)  # no such stream yet: nothing queued there
        elif isinstance(reply, Exception):
            raise reply
        else:
            out.append(next((g for g in reply if _group_of(g)), None))
    return out


async def backlog(redis: Any, layout: Layout) -> int:
    """Entries not yet written, over every shard: undelivered (lag) + delivered but unacknowledged."""
    keys = [s.stream for s in layout.every]
    total = 0
    for key, group in zip(keys, await group_infos(redis, keys), strict=True):
        if group is None:
            continue
        lag = group.get("lag")
        if lag is None:  # Redis < 7 or an inconsistent lag: count conservatively
            lag = await redis.xlen(key)
        total += int(lag) + int(group.get("pending") or 0)
    return total


# ---- acknowledgement modes -------------------------------------------------------------------------

MEMORY, FSYNC, REPLICA = "memory", "fsync", "replica"
ACK_MODES = (MEMORY, FSYNC, REPLICA)
ACK_TIMEOUT_MS = 2000  # WAITAOF / WAIT: longer than this and the request is answered 503
FLUSHES_IN_FLIGHT = 8  # fsync / replica mode: flushes waiting on their confirmation at once


class Publisher:
    """Coalesces queueing across concurrent requests and tracks the backlog the workers have not written.

    One flush sends every shard's script call to its server in one pipeline; with `ack` fsync or
    replica the same pipeline ends in WAITAOF / WAIT, which must run on the connection that wrote.
    Single server, memory mode: a connection of its own, outside the client's pool; `aclose` it.
    """

    def __init__(self, redis: Any, layout: Layout, backlog_limit: int, ack: str = MEMORY) -> None:
        self._redis = redis
        self.layout = layout
        self._limit = backlog_limit
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._lane: Any = None  # the connection `_send_one` keeps (single server, memory mode)
        self._sha = _sha1(_QUEUE)
        self.ack = ack
        self.fsync = ack in (FSYNC, REPLICA)  # cleared by check_ack() where the server cannot
        self._nodes: dict[tuple[str, int], aioredis.Redis] = {}
        self._refresh = False
        self.backlog = 0
        self.published = 0

    @property
    def overloaded(self) -> bool:
        return self.backlog >= self._limit

    async def check_ack(self) -> str | None:
        """Probe what `ack` needs (WAITAOF with AOF on, or replicas); a warning for start-up, or None."""
        if self.ack == MEMORY:
            return None
        problems = []
        for client in await self._servers():
            try:
                await client.execute_command("WAITAOF", 1, 0, ACK_TIMEOUT_MS)
            except ResponseError as e:
                self.fsync = False
                problems.append(f"WAITAOF refused ({e}): an answer cannot wait for the entry to be on disk")
            else:
                try:
                    config = await client.config_get("appendfsync")
                except ResponseError:  # CONFIG disabled (managed servers): nothing to advise
                    config = {}
                policy = _text(next(iter(config.values()), b""))
                if policy in ("everysec", "no"):
                    problems.append(
                        f"the server's appendfsync is {policy}: each answer waits for its next "
                        "fsync (~100 ms to 1 s); appendfsync always makes that the next event-loop turn"
                    )
            if self.ack == REPLICA:
                info = await client.info("replication")
                if int(info.get("connected_slaves", 0)) < 1:
                    problems.append("the server has no connected replica: every request will answer 503")
        if not problems:
            return None
        return f"FAULTLINE_ACK={self.ack}: " + "; ".join(dict.fromkeys(problems))

    async def _servers(self) -> list[Any]:
        if not is_cluster(self._redis):
            return [self._redis]
        await self._redis.initialize()
        return [self._node(s) for s in {self._node_key(s): s for s in self.layout.shards}.values()]

    def _node_key(self, shard: Shard) -> tuple[str, int]:
        node = self._redis.get_node_from_key(shard.stream)
        return node.host, int(node.port)

    def _node(self, shard: Shard) -> aioredis.Redis:
        """A plain client to the master holding `shard`: WAITAOF must follow the script on its connection."""
        key = self._node_key(shard)
        client = self._nodes.get(key)
        if client is None:
            client = aioredis.Redis(host=key[0], port=key[1], socket_timeout=5, socket_connect_timeout=5)
            self._nodes[key] = client
        return client

    async def aclose(self) -> None:
        await self._drop_lane()
        for client in self._nodes.values():
            await client.aclose()

    async def publish(
        self,
        entries: list[dict[bytes, bytes]],
        once: list[str] | None = None,
        limit: Limit | None = None,
        project_id: int = 0,
    ) -> list[bytes]:
        """Queue one request's entries in the project's shard; their stream ids once Redis has them
        (`DUPLICATE` for an entry whose once-key was seen in the last hour, which is then not queued).
        Raises RateLimited when the request would pass `limit`, QueueUnavailable when Redis cannot
        take it (or, in fsync/replica mode, cannot promise it within ACK_TIMEOUT_MS)."""
        if self.overloaded:
            raise QueueUnavailable(f"Backlog of {self.backlog} notices is over the limit; retry later")
        fut: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
        shard = self.layout.for_project(project_id)
        self._pending.append(_Pending(shard, entries, once or [""] * len(entries), limit, fut))
        self._wake.set()
        return await fut

    async def run(self) -> None:
        # In fsync / replica mode a flush waits on the server's fsync or a replica: let a few flushes
        # overlap so requests arriving meanwhile need not wait for the previous one's confirmation.
        slots = asyncio.Semaphore(1 if self.ack == MEMORY else FLUSHES_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()

        async def flush(batch: list[_Pending]) -> None:
            try:
                await self._flush(batch)
            finally:
                slots.release()

        try:
            while True:
                await self._wake.wait()
                await slots.acquire()
                # Let the requests already readable in this loop iteration join the same flush: two
                # yields cost microseconds and made flushes of ~8 requests ~12, gateway CPU per
                # Exceptionless request 115 -> ~100 us on the benchmark VM (each script call is dear).
                for _ in range(COALESCE_YIELDS):
                    await asyncio.sleep(0)
                self._wake.clear()
                batch, self._pending = self._pending, []
                if not batch:
                    slots.release()
                elif self.ack == MEMORY:
                    await flush(batch)
                else:
                    task = asyncio.create_task(flush(batch))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()

    def _calls(
        self, shard: Shard, batch: list[_Pending]
    ) -> list[tuple[list[_Pending], list[Any], list[Any]]]:
        calls: list[tuple[list[_Pending], list[Any], list[Any]]] = []
        keys: list[Any] = [shard.stream]
        slots: dict[str, int] = {}

        def slot(key: str) -> int:  # the KEYS index of a once-key or counter (1-based, as in Lua)
            if not key:
                return 0
            placed = shard.place(key)
            if placed not in slots:
                keys.append(placed)
                slots[placed] = len(keys)
            return slots[placed]

        args: list[Any] = [ONCE_TTL, RATE_WINDOW_MS]
        members: list[_Pending] = []
        count = 0
        for p in batch:
            args += (slot(p.limit.key), p.limit.limit) if p.limit else (0, 0)
            args.append(len(p.entries))
            for fields, key in zip(p.entries, p.once, strict=True):
                args += (slot(key), len(fields))
                for name, value in fields.items():
                    args += (name, value)
            members.append(p)
            count += len(p.entries)
            if count >= MAX_PER_CALL:
                calls.append((members, keys, args))
                keys, slots, args, members, count = [shard.stream], {}, [ONCE_TTL, RATE_WINDOW_MS], [], 0
        if members:
            calls.append((members, keys, args))
        return calls

    async def _flush(self, batch: list[_Pending]) -> None:
        by_shard: dict[Shard, list[_Pending]] = {}
        for p in batch:
            by_shard.setdefault(p.shard, []).append(p)
        if not is_cluster(self._redis):
            calls = [c for shard, members in by_shard.items() for c in self._calls(shard, members)]
            if len(calls) == 1 and not self.fsync and self.ack == MEMORY:
                await self._send_one(*calls[0])  # today's single round trip, no pipeline overhead
            else:
                await self._send(self._redis, calls)
            return
        if self._refresh or not self._redis.nodes_manager.slots_cache:  # a failure, or no flush yet
            self._refresh = False
            try:
                await self._redis.nodes_manager.initialize()
            except (RedisError, RedisClusterException, OSError) as e:
                logger.warning("cluster topology refresh failed error=%r", e)
        per_node: dict[tuple[str, int], list[tuple[list[_Pending], list[Any], list[Any]]]] = {}
        clients: dict[tuple[str, int], aioredis.Redis] = {}
        for shard, members in by_shard.items():
            try:
                key = self._node_key(shard)
                clients[key] = self._node(shard)
            except (RedisError, RedisClusterException, OSError) as e:
                self._fail(members, e)
                continue
            per_node.setdefault(key, []).extend(self._calls(shard, members))
        await asyncio.gather(*(self._send(clients[k], calls) for k, calls in per_node.items()))

    def _fail(self, members: list[_Pending], error: BaseException) -> None:
        logger.warning("queueing failed requests=%d error=%r", len(members), error)
        self._refresh = True
        for p in members:
            if not p.future.done():
                p.future.set_exception(QueueUnavailable("Queue unavailable; retry later"))

    async def _send_one(self, members: list[_Pending], keys: list[Any], args: list[Any]) -> None:
        """One script call on the publisher's own connection, packed by hiredis, under one deadline.

        redis-py's command path (pure-Python packing, pool and retry machinery, and with a socket
        timeout a task per write through `wait_for`) took ~25 % of a gateway's CPU under load.
        """
        command = hiredis.pack_command(("EVALSHA", self._sha, len(keys), *keys, *args))
        try:
            async with asyncio.timeout(LANE_TIMEOUT):
                replies = await self._call(command)
        except (RedisError, OSError, asyncio.CancelledError) as e:  # TimeoutError is an OSError
            await self._drop_lane()  # a reply may still be on its way: never reuse the connection
            self._fail(members, e)
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        self._settle(members, replies)

    async def _call(self, command: bytes) -> Any:
        for attempt in range(3):
            if self._lane is None:  # memory mode flushes one at a time: one connection carries them
                pool = self._redis.connection_pool
                # Not a pooled one: without a socket timeout of its own its writes need no task each;
                # `_send_one`'s deadline bounds the whole call instead.
                self._lane = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})
            conn = self._lane
            try:
                await conn.send_packed_command(command, check_health=False)
                return await conn.read_response()
            except NoScriptError:
                if attempt:
                    raise
                await conn.send_command("SCRIPT", "LOAD", _QUEUE)  # a restarted or new server
                await conn.read_response()
            except (RedisConnectionError, OSError):
                # A connection the server or a proxy closed while idle: once more on a new one. Should
                # the first call have run after all, its entries are queued twice under the same
                # notice ids, which the workers store once.
                await self._drop_lane()
                if attempt:
                    raise
        raise RedisConnectionError("no answer after reconnecting")  # pragma: no cover

    async def _drop_lane(self) -> None:
        conn, self._lane = self._lane, None
        if conn is not None:
            await conn.disconnect()

    async def _send(self, client: Any, calls: list[tuple[list[_Pending], list[Any], list[Any]]]) -> None:
        """Every call in one pipeline on one connection, then WAITAOF / WAIT there for all of them."""
        members = [p for m, _, _ in calls for p in m]
        for attempt in range(2):
            pipe = client.pipeline(transaction=False)
            for _, keys, args in calls:
                pipe.execute_command("EVALSHA", self._sha, len(keys), *keys, *args)
            if self.fsync:
                pipe.execute_command("WAITAOF", 1, 0, ACK_TIMEOUT_MS)
            if self.ack == REPLICA:
                pipe.execute_command("WAIT", 1, ACK_TIMEOUT_MS)
            try:
                replies = await pipe.execute(raise_on_error=False)
            except (RedisError, OSError) as e:
                self._fail(members, e)
                return
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies[: len(calls)]):
                if any(not isinstance(r, NoScriptError) for r in replies[: len(calls)]):
                    pass  # some calls ran: fall through, the NOSCRIPT ones fail below and are retried by clients
                else:
                    await client.script_load(_QUEUE)  # a restarted or new server: load, send again
                    continue
            break
        promised = self._promised(replies[len(calls) :])
        for (call_members, _, _), reply in zip(calls, replies, strict=False):
            if isinstance(reply, Exception):
                self._fail(call_members, reply)
            elif promised is not None:
                self.published += sum(len(p.entries) for p in call_members)  # queued, not promised
                self._fail(call_members, promised)
            else:
                self._settle(call_members, reply)

    def _promised(self, acks: list[Any]) -> Exception | None:
        """None when WAITAOF / WAIT confirmed the pipeline's writes, else why not."""
        k = 0
        if self.fsync:
            reply = acks[k]
            k += 1
            if isinstance(reply, Exception) or not reply or int(reply[0]) < 1:
                return QueueUnavailable(
                    f"WAITAOF did not confirm an fsync within {ACK_TIMEOUT_MS} ms: {reply!r}"
                )
        if self.ack == REPLICA:
            reply = acks[k]
            if isinstance(reply, Exception) or int(reply) < 1:
                return QueueUnavailable(
                    f"WAIT saw no replica acknowledge within {ACK_TIMEOUT_MS} ms: {reply!r}"
                )
        return None

    def _settle(self, members: list[_Pending], replies: list[Any]) -> None:
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
        """Keep `backlog` = entries undelivered + delivered but unacknowledged, summed over shards."""
        while True:
            try:
                self.backlog = await backlog(self._redis, self.layout)
            except (RedisError, RedisClusterException, OSError) as e:
                logger.debug("backlog check failed error=%r", e)
            await asyncio.sleep(interval)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - the script's name, as Redis computes it
