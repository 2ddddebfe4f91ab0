"""`python -m tests.bench.quick_gateway [SECONDS] [--profile]`: the gateway section alone, one run per
figure: the bare-aiohttp ceiling, the queueing floor and each single-notice protocol, with each
protocol's ratio to the ceiling and the gateway's CPU per request. For iterating on the hot path;
`make bench` is the measurement of record."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from tests.bench import gateway, profile
from tests.bench.stack import stack


async def main(seconds: int, profiled: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="faultline-qb-") as tmp:
        async with stack(Path(tmp)) as s:
            gw, port = s.gateway(
                module=os.environ.get("QB_GW_MODULE", "services.gateway"),
                FAULTLINE_BACKLOG_LIMIT=str(1 << 30),
            )
            url = f"http://127.0.0.1:{port}"
            cport, cpid = await gateway.start_ceiling(s)
            fport, fpid = await gateway.start_floor(s)
            found = await gateway.probe(s, url, Path(tmp), 200)
            single = [a for a in found.available if not a.protocol.batch]
            exc = next(a for a in single if a.protocol.name == "exceptioner")
            c = await gateway.load(
                s,
                "ceiling",
                f"http://127.0.0.1:{cport}",
                exc.requests_file,
                seconds,
                16,
                {"c": cpid},
                check_stream=False,
            )
            f = await gateway.load(
                s,
                "floor",
                f"http://127.0.0.1:{fport}",
                exc.requests_file,
                seconds,
                16,
                {"f": fpid},
                check_stream=False,
            )
            await s.reset_stream()
            ceiling = c.result.rate
            fus = f.cpu["f"] / max(1.0, f.result.rate) * 1e6
            cus = c.cpu["c"] / max(1.0, ceiling) * 1e6
            print(
                f"ceiling {ceiling:8.0f}/s   floor {f.result.rate:8.0f}/s {f.result.rate / ceiling:.2f}"
                f"   cpu/req {fus:5.1f} µs vs {cus:5.1f} µs"
            )
            for a in single:
                if os.environ.get("QB_ONLY") and a.protocol.name not in os.environ["QB_ONLY"].split(","):
                    continue
                c = await gateway.load(
                    s,
                    "ceiling",
                    f"http://127.0.0.1:{cport}",
                    a.requests_file,
                    seconds,
                    16,
                    {"c": cpid},
                    check_stream=False,
                )
                with profile.record(profiled, gw.pid, f"qb-{a.protocol.name}", seconds + 2):
                    r = await gateway.load(
                        s,
                        a.protocol.name,
                        url,
                        a.requests_file,
                        seconds,
                        16,
                        {"g": gw.pid},
                        check_stream=not os.environ.get("GWV"),
                    )
                us = r.cpu["g"] / max(1.0, r.result.rate) * 1e6
                cus = c.cpu["c"] / max(1.0, c.result.rate) * 1e6
                print(
                    f"{a.protocol.name:14s} {r.result.rate:8.0f}/s / ceiling {c.result.rate:6.0f}/s = "
                    f"{r.result.rate / c.result.rate:.2f}   cpu/req {us:5.1f} µs vs {cus:5.1f} µs ="
                    f" {cus / us:.2f}  non2xx {r.result.non_2xx}"
                )
                await s.reset_stream()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(int(args[0]) if args else 4, "--profile" in sys.argv))
