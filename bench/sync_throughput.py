"""Issue 2 benchmark: metadata sync throughput against bandersnatch 8.2, and peak memory.

Both tools sync the same allowlist from the same fake upstream (its own process, 20 ms of
latency injected per request), at the same concurrency, in one run. Reported as ratios.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .common import (
    PYPI_TSV,
    FakeProcess,
    ensure_bandersnatch,
    mirror_conf,
    run_timed,
    sync_args,
    table,
    write_result,
)

ALLOWLIST = """[plugins]
enabled =
    allowlist_project
[allowlist]
packages =
{packages}
"""


def _names(fake: FakeProcess, n: int) -> list[str]:
    import json
    import urllib.request

    req = urllib.request.Request(
        fake.url + "/simple/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(req) as r:
        return [p["name"] for p in json.loads(r.read())["projects"]][:n]


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) - before.get(k, 0)
    }


def throughput(projects: int, latency_ms: float, concurrencies: tuple[int, ...]) -> dict[str, Any]:
    bs = ensure_bandersnatch()
    results: list[dict[str, Any]] = []
    with (
        FakeProcess(projects=projects, latency_ms=latency_ms) as fake,
        tempfile.TemporaryDirectory() as tmp,
    ):
        names = _names(fake, projects)
        packages = "\n".join(f"    {n}" for n in names)
        for workers in concurrencies:
            runs: list[tuple[str, list[str], str]] = []
            for depth in ("project", "full"):
                conf = Path(tmp) / f"ours-{workers}-{depth}.conf"
                conf.write_text(
                    mirror_conf(tmp, fake.url, workers, tail=ALLOWLIST.format(packages=packages))
                )
                db = Path(tmp) / f"ours-{workers}-{depth}.duckdb"
                runs.append(
                    (
                        f"pypi-assets ({depth} depth)",
                        sync_args(conf, db, "--depth", depth),
                        depth,
                    )
                )
            if bs is not None:
                bdir = Path(tmp) / f"bs-{workers}"
                bconf = Path(tmp) / f"bs-{workers}.conf"
                bconf.write_text(
                    mirror_conf(
                        bdir,
                        fake.url,
                        workers,
                        bandersnatch=True,
                        tail=ALLOWLIST.format(packages=packages),
                    )
                )
                runs.append(
                    (
                        "bandersnatch 8.2 (json=true, release-files=false)",
                        [str(bs), "-c", str(bconf), "mirror"],
                        "project",
                    )
                )
            for label, args, depth in runs:
                before = fake.stats()
                t = run_timed(args, env={**os.environ, "PYPI_ASSETS_UPSTREAM": ""})
                reqs = _delta(before, fake.stats())
                total = sum(reqs.values())
                bound = total * latency_ms / 1000.0 / workers
                results.append(
                    {
                        "tool": label,
                        "depth": depth,
                        "concurrency": workers,
                        "seconds": round(t.seconds, 2),
                        "projects_per_s": round(projects / t.seconds, 1),
                        "requests": total,
                        "requests_per_project": round(total / projects, 2),
                        "latency_bound_s": round(bound, 2),
                        "x_latency_bound": round(t.seconds / bound, 2) if bound else None,
                        "max_rss_mb": round(t.max_rss_mb, 1),
                        "returncode": t.returncode,
                        "by_route": reqs,
                        "stderr_tail": t.stderr[-500:] if t.returncode else "",
                    }
                )
    for r in results:
        base = next(
            (
                b
                for b in results
                if b["tool"].startswith("bandersnatch") and b["concurrency"] == r["concurrency"]
            ),
            None,
        )
        r["x_bandersnatch"] = (
            round(r["projects_per_s"] / base["projects_per_s"], 2) if base else None
        )
    return {"projects": projects, "latency_ms": latency_ms, "runs": results}


def memory(max_names: int | None = None, allowlist: int = 5) -> dict[str, Any]:
    """Peak RSS of `pypi-assets sync` against an upstream listing every real PyPI name."""
    if not PYPI_TSV.exists():
        return {"skipped": f"{PYPI_TSV} not found"}
    with tempfile.TemporaryDirectory() as tmp:
        names_file = Path(tmp) / "names.tsv"
        picked: list[str] = []
        n = 0
        with PYPI_TSV.open(encoding="utf-8") as src, names_file.open("w", encoding="utf-8") as dst:
            dst.write(next(src))
            for line in src:
                if max_names and n >= max_names:
                    break
                dst.write(line)
                n += 1
                if len(picked) < allowlist:
                    picked.append(line.split("\t")[0])
        with FakeProcess(projects=n, names_file=names_file) as fake:
            conf = Path(tmp) / "c.conf"
            conf.write_text(
                mirror_conf(
                    tmp,
                    fake.url,
                    tail=ALLOWLIST.format(packages="\n".join(f"    {p}" for p in picked)),
                )
            )
            t = run_timed(sync_args(conf, Path(tmp) / "m.duckdb"))
            listed = fake.stats().get("simple-root", 0)
    return {
        "names": n,
        "max_rss_mb": round(t.max_rss_mb, 1),
        "seconds": round(t.seconds, 2),
        "returncode": t.returncode,
        "root_listings": listed,
        "target_mb": 500,
    }


def main(quick: bool = False) -> str:
    projects = 200 if quick else 2000
    tp = throughput(projects, 20.0, (3, 10))
    mem = memory(max_names=50_000 if quick else None)
    rows = [
        [
            r["tool"],
            r["concurrency"],
            r["seconds"],
            r["projects_per_s"],
            r["requests_per_project"],
            r["latency_bound_s"],
            r["x_latency_bound"],
            r["x_bandersnatch"],
            r["returncode"],
        ]
        for r in tp["runs"]
    ]
    md = [
        "# Metadata sync throughput and memory (issue 2)",
        "",
        f"{projects} projects from the shipped fake upstream (in its own process), {tp['latency_ms']:.0f} ms "
        "latency injected per request, the same allowlist and concurrency for both tools, one run. "
        "`x latency bound` is wall time / (requests * latency / concurrency); "
        "`x bandersnatch` is our projects/s / bandersnatch's at the same concurrency. "
        "Both pay Warehouse's redirect to the display name for the allowlisted names that "
        "differ from it (no listing is read with an allowlist). pypi-assets' requests also "
        "poll each project's simple page (PEP 792 status) and each release's JSON "
        "(per-release vulnerabilities), which bandersnatch does not mirror.",
        "",
        table(
            [
                "tool",
                "concurrency",
                "seconds",
                "projects/s",
                "requests/project",
                "latency bound s",
                "x latency bound",
                "x bandersnatch",
                "exit",
            ],
            rows,
        ),
        "",
        "## Peak memory",
        "",
        f"`pypi-assets sync` with a {mem.get('names')}-name upstream listing (real PyPI names from the "
        f"environment's list), allowlist of 5: peak RSS **{mem.get('max_rss_mb')} MB** "
        f"(target ≤ {mem.get('target_mb')} MB), {mem.get('seconds')} s, exit {mem.get('returncode')}.",
    ]
    text = "\n".join(md)
    write_result("sync", text, {"throughput": tp, "memory": mem})
    return text
