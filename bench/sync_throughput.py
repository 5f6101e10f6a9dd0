"""Issue 2 benchmark: metadata sync throughput against bandersnatch 8.2, and peak memory.

Both tools sync the same allowlist from the same fake upstream (its own process, 20 ms of
latency injected per request), at the same concurrency, in one run. Reported as ratios.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from pypi_assets.fake.server import is_tally

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


#: a run that asks for nothing its fetch does not read (no first status poll of new
#: projects): what bandersnatch mirrors, which has no PEP 792 status
STATUSES_OFF = "[pypi_assets]\nstatus_poll_interval = off\n"
BANDERSNATCH_LABEL = "bandersnatch 8.2 (json=true, release-files=false)"


def _measure(
    fake: FakeProcess, label: str, args: list[str], depth: str, projects: int, workers: int
) -> dict[str, Any]:
    """One tool's run against ``fake``: wall time, peak RSS and the requests it made, each
    counted once (the fake's tallies left out: a redirect is counted by its route, and
    reported apart)."""
    before, fake_cpu = fake.stats(), fake.cpu_seconds()
    t = run_timed(args, env={**os.environ, "PYPI_ASSETS_UPSTREAM": ""})
    fake_cpu = fake.cpu_seconds() - fake_cpu
    reqs = _delta(before, fake.stats())
    total = sum(n for k, n in reqs.items() if not is_tally(k))
    redirects = reqs.get("redirect", 0)
    bound = total * fake.latency_ms / 1000.0 / workers
    return {
        "tool": label,
        "depth": depth,
        "concurrency": workers,
        "seconds": round(t.seconds, 2),
        "projects_per_s": round(projects / t.seconds, 1),
        "requests": total,
        "redirects": redirects,
        "requests_per_project": round((total - redirects) / projects, 2),
        "latency_bound_s": round(bound, 2),
        "x_latency_bound": round(t.seconds / bound, 2) if bound else None,
        "max_rss_mb": round(t.max_rss_mb, 1),
        "cpu_ms_per_request": round(1000 * t.cpu_seconds / total, 2) if total else None,
        "fake_cpu_ms_per_request": round(1000 * fake_cpu / total, 2) if total else None,
        "returncode": t.returncode,
        "by_route": reqs,
        "stderr_tail": t.stderr[-500:] if t.returncode else "",
    }


def _ratios(results: list[dict[str, Any]]) -> None:
    """Each run's projects/s over bandersnatch's at the same concurrency."""
    for r in results:
        base = next(
            (
                b
                for b in results
                if b["tool"] == BANDERSNATCH_LABEL and b["concurrency"] == r["concurrency"]
            ),
            None,
        )
        r["x_bandersnatch"] = (
            round(r["projects_per_s"] / base["projects_per_s"], 2) if base else None
        )


def _runs(
    tmp: str, fake: FakeProcess, workers: int, tail: str, bs: Path | None
) -> list[tuple[str, list[str], str]]:
    """Our two depths and bandersnatch, each with the same ``[mirror]`` and ``tail``."""
    runs: list[tuple[str, list[str], str]] = []
    for depth, extra, label in (
        ("project", "", "project depth"),
        ("project", STATUSES_OFF, "project depth, statuses off"),
        ("full", "", "full depth"),
    ):
        name = f"ours-{workers}-{depth}{'-off' if extra else ''}"
        conf = Path(tmp) / f"{name}.conf"
        conf.write_text(mirror_conf(tmp, fake.url, workers, tail=tail + extra))
        db = Path(tmp) / f"{name}.duckdb"
        runs.append((f"pypi-assets ({label})", sync_args(conf, db, "--depth", depth), depth))
    if bs is not None:
        bconf = Path(tmp) / f"bs-{workers}.conf"
        bdir = Path(tmp) / f"bs-{workers}"
        bconf.write_text(mirror_conf(bdir, fake.url, workers, bandersnatch=True, tail=tail))
        runs.append((BANDERSNATCH_LABEL, [str(bs), "-c", str(bconf), "mirror"], "project"))
    return runs


def _warm(tmp: str, fake: FakeProcess, tail: str) -> None:
    """One untimed full-depth sync: the fake builds each page the first time it is asked
    for, and that cost must not fall on whichever run comes first."""
    conf = Path(tmp) / "warm.conf"
    conf.write_text(mirror_conf(tmp, fake.url, 10, tail=tail))
    warm = run_timed(sync_args(conf, Path(tmp) / "warm.duckdb", "--depth", "full"))
    if warm.returncode:
        raise RuntimeError(f"warm-up sync failed: {warm.stderr[-500:]}")


def throughput(projects: int, latency_ms: float, concurrencies: tuple[int, ...]) -> dict[str, Any]:
    bs = ensure_bandersnatch()
    results: list[dict[str, Any]] = []
    with (
        FakeProcess(projects=projects, latency_ms=latency_ms) as fake,
        tempfile.TemporaryDirectory() as tmp,
    ):
        names = _names(fake, projects)
        tail = ALLOWLIST.format(packages="\n".join(f"    {n}" for n in names))
        _warm(tmp, fake, tail)
        for workers in concurrencies:
            for label, args, depth in _runs(tmp, fake, workers, tail, bs):
                results.append(_measure(fake, label, args, depth, projects, workers))
    _ratios(results)
    return {"projects": projects, "latency_ms": latency_ms, "runs": results}


#: bandersnatch's regex_project filter (a blocklist): every name but those starting "tor"
REGEX_PREFIX = """[plugins]
enabled =
    regex_project
[filter_regex]
packages =
    (?i)^(?!{prefix}).*
"""


def full_listing(latency_ms: float, workers: int, prefix: str = "tor") -> dict[str, Any]:
    """Both tools against an upstream that lists every real PyPI name (the environment's
    list), selecting the names that start with ``prefix`` (about 2,000) by bandersnatch's
    regex filter: the listing is read and filtered whole, the selection then fetched."""
    if not PYPI_TSV.exists():
        return {"skipped": f"{PYPI_TSV} not found"}
    bs = ensure_bandersnatch()
    with tempfile.TemporaryDirectory() as tmp:
        with PYPI_TSV.open(encoding="utf-8") as src:
            n = sum(1 for _ in src) - 1
            src.seek(0)
            next(src)
            selected = sum(1 for line in src if line.lower().startswith(prefix))
        results: list[dict[str, Any]] = []
        with FakeProcess(projects=n, names_file=PYPI_TSV, latency_ms=latency_ms) as fake:
            _warm(tmp, fake, REGEX_PREFIX.format(prefix=prefix))
            for label, args, depth in _runs(
                tmp, fake, workers, REGEX_PREFIX.format(prefix=prefix), bs
            ):
                results.append(_measure(fake, label, args, depth, selected, workers))
    _ratios(results)
    return {
        "names": n,
        "selected": selected,
        "prefix": prefix,
        "latency_ms": latency_ms,
        "runs": results,
    }


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


def _rows(runs: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            r["tool"],
            r["concurrency"],
            r["seconds"],
            r["projects_per_s"],
            r["requests_per_project"],
            r["redirects"],
            r["latency_bound_s"],
            r["x_latency_bound"],
            r["x_bandersnatch"],
            r["cpu_ms_per_request"],
            r["fake_cpu_ms_per_request"],
            r["returncode"],
        ]
        for r in runs
    ]


_HEADERS = [
    "tool",
    "concurrency",
    "seconds",
    "projects/s",
    "requests/project (no redirects)",
    "redirects",
    "latency bound s",
    "x latency bound",
    "x bandersnatch",
    "tool CPU ms/request",
    "fake CPU ms/request",
    "exit",
]


def main(quick: bool = False) -> str:
    projects = 200 if quick else 2000
    tp = throughput(projects, 20.0, (3, 10))
    fl = full_listing(20.0, 10, "tork" if quick else "tor")
    mem = memory(max_names=50_000 if quick else None)
    md = [
        "# Metadata sync throughput and memory (issues 2 and 13)",
        "",
        f"## {projects} allowlisted projects",
        "",
        f"{projects} projects from the shipped fake upstream (in its own process), {tp['latency_ms']:.0f} ms "
        "latency injected per request, the same allowlist and concurrency for each tool, one run. "
        "`x latency bound` is wall time / (requests * latency / concurrency), redirects counted "
        "as the round trips they are; `requests/project` leaves them out. "
        "`x bandersnatch` is projects/s over bandersnatch's at the same concurrency. "
        "Both pay Warehouse's redirect to the display name for the allowlisted names that "
        "differ from it (no listing is read with an allowlist). By default a first sync also "
        "reads each new project's simple page (its PEP 792 status), which bandersnatch does "
        "not mirror: `statuses off` (`status_poll_interval = off`) asks for nothing the "
        "fetch does not read. At full depth the fetch reads every release's JSON, the simple "
        "page and each new wheel's `.metadata` (or a range read of the file), so its status "
        "poll asks for nothing more. Before the runs, one untimed full-depth sync warms the "
        "fake (it builds each page the first time it is asked for). `tool CPU ms/request` and `fake CPU ms/request` are "
        "the CPU time (user + system) each process spent per request: this machine has 2 "
        "cores, so when the two together pass `latency / concurrency` per request (2 ms at "
        "10 connections and 20 ms), the CPU, not the latency, bounds the run, for either tool.",
        "",
        table(_HEADERS, _rows(tp["runs"])),
        "",
    ]
    if "runs" in fl:
        md += [
            f"## The full listing: {fl['names']} names, {fl['selected']} selected",
            "",
            f"The same fake serving every real PyPI name of the environment's list, "
            f"{fl['latency_ms']:.0f} ms latency, both tools selecting the names that start with "
            f"`{fl['prefix']}` through bandersnatch's `regex_project` filter (a blocklist: "
            f"`(?i)^(?!{fl['prefix']}).*`), so each reads and filters the whole listing, then "
            "fetches its selection (the fake warmed the same way). Target (issue 13): project "
            "depth at least 3x bandersnatch.",
            "",
            table(_HEADERS, _rows(fl["runs"])),
            "",
        ]
    md += [
        "## Peak memory",
        "",
        f"`pypi-assets sync` with a {mem.get('names')}-name upstream listing (real PyPI names from the "
        f"environment's list), allowlist of 5: peak RSS **{mem.get('max_rss_mb')} MB** "
        f"(target ≤ {mem.get('target_mb')} MB), {mem.get('seconds')} s, exit {mem.get('returncode')}.",
    ]
    text = "\n".join(md)
    write_result("sync", text, {"throughput": tp, "full_listing": fl, "memory": mem})
    return text
