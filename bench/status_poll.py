"""Issue 11 benchmark: the cost of polling the selected projects' PEP 792 status, ownership
and vulnerabilities (``sync --refresh-statuses``), which no serial announces.

The fake upstream (its own process) holds N projects; the mirror syncs them all (its first
run polls every project once, unconditionally). Then two polls, each a whole ``sync
--refresh-statuses`` with the serial unchanged: one with nothing changed upstream (every
page answers 304), one after archiving 1% of the projects and giving 1% of them a
vulnerability (neither moves a serial). Requests and bytes are the poll's own (the run's
report) and are cross-checked with the requests counted at the fake; seconds are the poll's
wall time, and the whole run's.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from .common import FakeProcess, mirror_conf, run_timed, sync_args, table, write_result


def _poll(conf: Path, db: Path, fake: FakeProcess, depth: str) -> dict[str, Any]:
    before = fake.stats()
    t = time.perf_counter()
    out = subprocess.run(
        sync_args(conf, db, "--depth", depth, "--refresh-statuses", "--json"),
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)
    after = fake.stats()
    delta = {
        k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)
    }
    st = summary["statuses"]
    return {**st, "run_seconds": round(seconds, 2), "upstream_requests": delta}


def _change(fake: FakeProcess, names: list[str], share: float) -> int:
    """Archive ``share`` of the projects and give as many a vulnerability (latest release)."""
    picked = names[:: max(1, int(1 / share))]
    for name in picked:
        httpx.post(
            f"{fake.url}/_fake/status", json={"project": name, "status": "archived"}
        ).raise_for_status()
        version = httpx.get(f"{fake.url}/pypi/{name}/json").json()["info"]["version"]
        body = {"project": name, "version": version, "vulnerabilities": [{"id": f"PYSEC-{name}"}]}
        httpx.post(f"{fake.url}/_fake/vulnerabilities", json=body).raise_for_status()
    return len(picked)


def one_size(n: int, depth: str) -> dict[str, Any]:
    """A mirror of ``n`` projects at ``depth``, then its two polls (same depth)."""
    with FakeProcess(projects=n) as fake, tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "c.conf"
        conf.write_text(mirror_conf(tmp, fake.url, 10))
        db = Path(tmp) / "m.duckdb"
        first = run_timed(sync_args(conf, db, "--depth", depth))
        assert first.returncode == 0, first.stderr
        root = httpx.get(
            fake.url + "/simple/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        names = sorted(p["name"] for p in root.json()["projects"])
        quiet = _poll(conf, db, fake, depth)
        changed = _change(fake, names, 0.01)
        busy = _poll(conf, db, fake, depth)
    return {
        "projects": n,
        "depth": depth,
        "first_sync_seconds": round(first.seconds, 1),
        "quiet": quiet,
        "changed_projects": changed,
        "after_changes": busy,
    }


def _row(label: str, r: dict[str, Any], n: int) -> list[object]:
    per = 1000 / n
    return [
        label,
        r["polled"],
        r["requests"],
        round(r["requests"] * per),
        r["not_modified"],
        r["bytes"],
        round(r["bytes"] * per),
        r["seconds"],
        round(r["seconds"] * per, 2),
        r["changed"],
        r["run_seconds"],
    ]


def main(quick: bool = False) -> str:
    n = 100 if quick else 1000
    results = {depth: one_size(n, depth) for depth in ("project", "full")}
    headers = [
        "depth",
        "poll",
        "projects",
        "requests",
        "requests / 1,000",
        "304s",
        "bytes",
        "bytes / 1,000",
        "poll s",
        "poll s / 1,000",
        "changed",
        "whole run s",
    ]
    rows = [
        [depth, *_row(label, r[key], n)]
        for depth, r in results.items()
        for label, key in (
            ("nothing changed", "quiet"),
            (f"{r['changed_projects']} archived + vulnerable", "after_changes"),
        )
    ]
    md = [
        "# Status and vulnerability poll cost",
        "",
        __doc__.strip() if __doc__ else "",
        "",
        f"{n} selected projects (fake upstream, own process, loopback); first sync "
        + ", ".join(f"{d} depth {r['first_sync_seconds']} s" for d, r in results.items())
        + ". One poll, each page with If-None-Match: at `--depth project` the simple page and "
        "the project JSON of each project (the mirror holds no release's JSON); at full depth "
        "the simple page and the JSON of each stored release.",
        "",
        table(headers, rows),
        "",
    ]
    for depth, r in results.items():
        md += [
            f"Requests counted at the fake, {depth} depth (quiet poll): "
            f"`{r['quiet']['upstream_requests']}`; after changes: "
            f"`{r['after_changes']['upstream_requests']}`",
            "",
        ]
    text = "\n".join(md)
    write_result("status_poll", text, results)
    return text
