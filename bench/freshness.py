"""Issue 11 benchmark: what one sensor tick costs, the old way (``HEAD /simple/`` for
``X-PyPI-Last-Serial``) and the new (XML-RPC ``changelog_last_serial``), side by side in one
run against the same fake upstream (its own process), and what each tick sees once the root
is cached by the CDN (frozen) and upstream moves on.

Each tick uses a new client, as a sensor tick does. Requests are counted at the fake; bytes
are the bodies sent and received (headers left out); seconds are the median tick.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from .common import FakeProcess, table, write_result


async def _tick(url: str, how: str) -> tuple[int | None, float, int, int]:
    """One tick: (serial seen, seconds, body bytes received, body bytes sent)."""
    from pypi_assets.pypi import ClientConfig, PyPIClient
    from pypi_assets.pypi.xmlrpc import dumps_call

    t = time.perf_counter()
    async with PyPIClient(ClientConfig(upstream=url, retries=1)) as client:
        if how == "head":
            got = await client.request("simple-head", url + "/simple/", method="HEAD")
            serial, sent = got.serial, 0
        else:
            serial = await client.last_serial()
            sent = len(dumps_call("changelog_last_serial"))
        return serial, time.perf_counter() - t, client.stats.bytes, sent


def _measure(fake: FakeProcess, how: str, ticks: int) -> dict[str, Any]:
    before = fake.stats()
    runs = [asyncio.run(_tick(fake.url, how)) for _ in range(ticks)]
    after = fake.stats()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {
        "serial": runs[-1][0],
        "requests_per_tick": sum(delta.values()) / ticks,
        "routes": {k: v // ticks for k, v in delta.items() if v},
        "median_seconds": statistics.median(r[1] for r in runs),
        "bytes_received": runs[-1][2],
        "bytes_sent": runs[-1][3],
    }


def _post(fake: FakeProcess, action: str, body: dict[str, Any]) -> dict[str, Any]:
    import httpx

    r = httpx.post(f"{fake.url}/_fake/{action}", json=body)  # loopback only
    r.raise_for_status()
    return dict(r.json())


def run(projects: int, ticks: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with FakeProcess(projects=projects) as fake:
        _post(fake, "configure", {"cached_root": True})  # the CDN's copy, frozen at S0
        _post(fake, "project", {"project": "brand-new-project"})
        live = int(
            _post(fake, "release", {"project": "brand-new-project", "version": "1.0"})["serial"]
        )
        for how, label in (
            ("head", "before: HEAD /simple/"),
            ("rpc", "after: changelog_last_serial"),
        ):
            rows.append({"way": label, "live_serial": live, **_measure(fake, how, ticks)})
        _post(fake, "configure", {"xmlrpc": False})
        rows.append(
            {
                "way": "after, upstream without XML-RPC (405, then HEAD)",
                "live_serial": live,
                **_measure(fake, "rpc", ticks),
            }
        )
    return rows


def main(quick: bool = False) -> str:
    projects, ticks = (1_000, 10) if quick else (10_000, 50)
    rows = run(projects, ticks)
    md = "\n".join(
        [
            "# Sensor tick cost: HEAD /simple/ against changelog_last_serial (issue 11)",
            "",
            f"The fake upstream (its own process) holds {projects:,} projects. Its `/simple/` "
            "root is then frozen, as pypi.org's CDN caches it for about a day, and upstream moves "
            "on: a new project with a release. Each way then ticks "
            f"{ticks} times, each tick with a new client as the sensor does. Requests are counted "
            "at the fake; bytes are bodies (headers left out); seconds are the median tick. "
            "`serial seen` against `live serial`: the old way sees the frozen root's serial, so "
            "on pypi.org the sensor would notice changes about once a day.",
            "",
            table(
                [
                    "way",
                    "requests / tick",
                    "routes",
                    "bytes received",
                    "bytes sent",
                    "median seconds",
                    "serial seen",
                    "live serial",
                ],
                [
                    [
                        r["way"],
                        r["requests_per_tick"],
                        ", ".join(f"{k}={v}" for k, v in sorted(r["routes"].items())),
                        r["bytes_received"],
                        r["bytes_sent"],
                        f"{r['median_seconds'] * 1000:.1f} ms",
                        r["serial"],
                        r["live_serial"],
                    ]
                    for r in rows
                ],
            ),
        ]
    )
    write_result("freshness", md, rows)
    return md
