"""Issue 4 benchmark: the cost of one sensor-triggered incremental run does not grow with the
size of the mirror.

For each size N the fake upstream (its own process) holds N projects. The mirror is synced
completely (``--depth project`` for the bulk, which stores every project and file row, so the
database has the size that matters). One upstream change follows (a new project with one
release, visible in the fake's XML-RPC changelog), then the sensor ticks once and its run
request is executed in-process, exactly as the daemon would, at full depth. Requests are
counted at the fake upstream.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from .common import FakeProcess, mirror_conf, run_timed, sync_args, table, write_result


def one_size(n: int) -> dict[str, Any]:
    import dagster as dg
    import httpx

    from pypi_assets.defs.mirror.assets import release_metadata, serial_windows
    from pypi_assets.defs.mirror.sensors import upstream_serial_sensor
    from pypi_assets.defs.resources import MirrorResource

    with FakeProcess(projects=n) as fake, tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "c.conf"
        conf.write_text(mirror_conf(tmp, fake.url, 10))
        db = Path(tmp) / "m.duckdb"
        bulk = run_timed(sync_args(conf, db, "--depth", "project"))
        assert bulk.returncode == 0, bulk.stderr
        # the sensor's cursor, from the live serial (the root and its header are the CDN's copy)
        serial = int(xmlrpc.client.ServerProxy(fake.url + "/pypi").changelog_last_serial())
        # One upstream change: a new project with one release (an sdist and a wheel).
        for action, body in (
            ("project", {"project": "brand-new-project"}),
            ("release", {"project": "brand-new-project", "version": "1.0.0"}),
        ):
            httpx.post(f"{fake.url}/_fake/{action}", json=body).raise_for_status()
        os.environ["PYPI_ASSETS_WINDOW_WIDTH"] = "100000"
        mirror = MirrorResource(upstream=fake.url, config_path=str(conf), db=str(db))
        instance = dg.DagsterInstance.ephemeral()
        before = fake.stats()
        t0 = time.perf_counter()
        ctx = dg.build_sensor_context(
            instance=instance, cursor=json.dumps({"serial": serial}), resources={"mirror": mirror}
        )
        result = upstream_serial_sensor(ctx)
        assert isinstance(result, dg.SensorResult) and result.run_requests, result
        for req in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(serial_windows.name, list(req.partition_keys))  # type: ignore[attr-defined]
        runs = []
        for rr in result.run_requests:
            r = dg.materialize(
                [release_metadata],
                partition_key=rr.partition_key,
                resources={"mirror": mirror},
                instance=instance,
            )
            (m,) = r.get_asset_materialization_events()
            runs.append(m.materialization.metadata)
        seconds = time.perf_counter() - t0
        after = fake.stats()
    delta = {
        k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)
    }
    return {
        "projects": n,
        "bulk_sync_seconds": round(bulk.seconds, 1),
        "incremental_seconds": round(seconds, 2),
        "incremental_requests": sum(delta.values()),
        "requests_by_route": delta,
        "refreshed": sum(int(md["refreshed"].value) for md in runs),  # type: ignore[arg-type]
        "runs": len(runs),
    }


def main(quick: bool = False) -> str:
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
    rows = [one_size(n) for n in sizes]
    base = rows[0]["incremental_seconds"]
    md = "\n".join(
        [
            "# Incremental cost is flat (issue 4)",
            "",
            "A fully synced mirror of N projects, one upstream change (a new project with one release: an sdist and a wheel), then one tick of "
            "`upstream_serial_sensor` and the run it requests, executed in-process. Requests counted at the fake upstream "
            "(sensor tick included). `x 1k` is the incremental run's time relative to the 1,000-project mirror.",
            "",
            table(
                [
                    "projects",
                    "runs",
                    "refreshed",
                    "requests",
                    "requests by route",
                    "seconds",
                    "x 1k",
                ],
                [
                    [
                        r["projects"],
                        r["runs"],
                        r["refreshed"],
                        r["incremental_requests"],
                        ", ".join(f"{k}={v}" for k, v in sorted(r["requests_by_route"].items())),
                        r["incremental_seconds"],
                        round(r["incremental_seconds"] / base, 2),
                    ]
                    for r in rows
                ],
            ),
        ]
    )
    write_result("incremental", md, rows)
    return md
