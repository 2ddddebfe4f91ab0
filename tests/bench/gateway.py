"""Gateway: single-notice POSTs of every protocol the running gateway has, batched submissions, and
the same load against a bare aiohttp process (the ceiling for one process).

No workers run here: the gateway's CPU is what is measured, and the stream is emptied after each
run. Accepted requests are checked against the raw entries that reached the stream.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.bench import payloads, wrk
from tests.bench.payloads import Protocol, Request
from tests.bench.stack import BenchError, Stack, free_port


@dataclass
class Available:
    """A protocol the gateway accepts, with the request shape that worked and its wrk request file."""

    protocol: Protocol
    shape_name: str
    requests_file: Path


@dataclass
class Probe:
    available: list[Available] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # protocol -> why it is not measured


async def probe(stack: Stack, base: str, workdir: Path, variants: int) -> Probe:
    """Send each protocol's candidate shapes once; keep the first answered with a 2xx."""
    assert stack.project is not None
    out = Probe()
    async with aiohttp.ClientSession() as http:
        for proto in (*payloads.PROTOCOLS, payloads.BATCHED):
            why = ""
            for shape in proto.shapes:
                req = shape(stack.project, 0, proto.per_request)
                status, text = await _send(http, base, req)
                if 200 <= status < 300:
                    reqs = payloads.requests(shape, stack.project, variants, proto.per_request)
                    path = wrk.write_requests(workdir / f"{proto.name}.lua", reqs)
                    out.available.append(Available(proto, shape.__name__, path))
                    why = ""
                    break
                if status in (404, 405) and not why:
                    why = f"not yet available (HTTP {status} for {req.method} {req.path.split('?')[0]})"
                elif status not in (404, 405):
                    why = f"route answers, but refused the benchmark's sample: HTTP {status} {text[:120]!r}"
            if why:
                out.missing[proto.name] = why
    return out


async def _send(http: aiohttp.ClientSession, base: str, req: Request) -> tuple[int, str]:
    async with http.request(
        req.method,
        base + req.path,
        headers=req.headers,
        data=req.body,
        timeout=aiohttp.ClientTimeout(total=10),
    ) as resp:
        return resp.status, await resp.text()


@dataclass(frozen=True)
class LoadRun:
    name: str
    result: wrk.WrkResult
    per_request: int
    cpu: dict[str, float]
    queued: int  # stream entries the run added (-1 when not checked)

    @property
    def notices_per_s(self) -> float:
        return self.result.rate * self.per_request


async def load(
    stack: Stack,
    name: str,
    url: str,
    requests_file: Path,
    seconds: int,
    connections: int,
    pids: dict[str, int],
    per_request: int = 1,
    check_stream: bool = True,
) -> LoadRun:
    """One saturating wrk run; checks that every accepted notice reached the stream."""
    added0 = (await stack.stream_counts())[0] if check_stream else 0
    meter = wrk.CpuMeter(pids).start()
    result = await wrk.run(url, requests_file, seconds, connections=connections)
    cpu = meter.stop()
    cpu["wrk"] = result.cores
    queued = -1
    if check_stream:
        queued = await stack.settled_added() - added0
        accepted = result.ok  # one raw entry per accepted request, whatever it holds
        # Requests in flight when wrk stopped may be queued without wrk having counted the answer.
        if not accepted <= queued <= accepted + connections:
            raise BenchError(
                f"{name}: wrk counted {accepted} accepted requests but {queued} entries reached the stream"
            )
        await stack.r.xtrim(stack.stream, maxlen=0)
    if result.ok == 0:
        raise BenchError(f"{name}: no request succeeded ({result.non_2xx} non-2xx, {result.errors} errors)")
    return LoadRun(name, result, per_request, cpu, queued)


async def start_ceiling(stack: Stack) -> tuple[int, int]:
    port = free_port()
    svc = stack.service("ceiling", "tests.bench.ceiling", stack.env(), [str(port)])
    svc.wait_http(f"http://127.0.0.1:{port}/healthz")
    return port, svc.pid


async def start_floor(stack: Stack) -> tuple[int, int]:
    """The queueing floor (tests/bench/floor.py) on the stack's Redis and streams."""
    assert stack.project is not None
    port = free_port()
    args = [str(port), stack.project.key, str(stack.project.id)]
    svc = stack.service("floor", "tests.bench.floor", stack.env(), args)
    svc.wait_http(f"http://127.0.0.1:{port}/healthz")
    return port, svc.pid


async def settle(seconds: float = 0.3) -> None:
    """A short pause between runs so one run's tail does not overlap the next."""
    await asyncio.sleep(seconds)
