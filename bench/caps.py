"""Issue 10, defect 8: what a hostile upstream can make one project cost.

Four cases against one fake upstream (in this process, on loopback): a gzip bomb as the
project JSON, a project with 100,000 versions, a 5 MB description (project JSON, version
JSON and PEP 658 metadata), a body trickling one byte every 2 s. Each case runs
``fetch_project`` for that one project in a fresh subprocess, configured the way ``sync``
configures its client (``sync.settings.client_config`` from a bandersnatch-style config), once
with this tree's code and once with the base commit's (``git archive 187138f pypi_assets``),
side by side. Requests are counted at the fake upstream; peak RSS is the subprocess's own
VmHWM; the base code is killed after a time budget where it would run on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from io import BytesIO
from pathlib import Path
from typing import Any

from pypi_assets.fake import FakeIndex, FakeUpstream, Fault

from .common import ROOT, hwm_mb, table, write_result

BASE_COMMIT = "187138f"
GLOBAL_TIMEOUT = 10  # seconds; the 30 s, shortened to keep the bench under 2 minutes
BASE_BUDGET = 20.0  # seconds the base code is given before it is cut

#: The measured process: imports, then one fetch_project under the sync's client config.
CHILD = r"""
import asyncio, json, sys, time
from pathlib import Path
a = json.loads(sys.argv[1])

def hwm():
    # The kernel's high-water mark of this process (VmHWM): unlike ru_maxrss it is reset at
    # exec, so the parent's size (it serves a 600 MB bomb) does not leak in through fork.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

from pypi_assets.filters import loads
from pypi_assets.sync.settings import client_config
from pypi_assets.pypi import PyPIClient
from pypi_assets.pypi.fetch import fetch_project
from pypi_assets.sync.settings import Settings

ccfg = client_config(
    Settings(upstream=a["url"], db=Path("unused.duckdb")), loads(a["conf"]), backoff=0.05,
    stale_delays=(0.05, 0.1),
)
before = hwm()

async def main():
    outcome = ""
    try:
        async with PyPIClient(ccfg) as c:
            try:
                p = await fetch_project(c, a["name"], None, None)
                outcome = f"fetched ({len(p.distributions)} files)"
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        outcome = outcome or f"{type(exc).__name__}: {exc}"
    return outcome

t = time.perf_counter()
outcome = asyncio.run(main())
print(json.dumps({
    "outcome": outcome,
    "seconds": round(time.perf_counter() - t, 2),
    "rss_before_mb": round(before, 1),
    "peak_rss_mb": round(hwm(), 1),
}))
"""


def _conf(url: str, extra: str = "") -> str:
    return (
        "[mirror]\ndirectory = /tmp/unused\nrelease-files = false\n"
        f"master = {url}\nallow-non-https = true\nworkers = 3\ntimeout = 10\n"
        f"global-timeout = {GLOBAL_TIMEOUT}\n{extra}"
    )


def _base_tree(dest: Path, commit: str = BASE_COMMIT) -> Path:
    """The base commit's ``pypi_assets`` package, unpacked under ``dest``."""
    raw = subprocess.run(
        ["git", "archive", commit, "pypi_assets"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(raw)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def _run(code_root: Path, up: FakeUpstream, name: str, conf: str, budget: float) -> dict[str, Any]:
    """One case in a fresh process; killed after ``budget`` seconds if still running (its
    peak RSS then is the last VmHWM sampled)."""
    up.reset_counts()
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    args = json.dumps({"url": up.url, "conf": conf, "name": name})
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, args],
        env=env,
        cwd=code_root,  # '' on sys.path: this tree's or the base's package
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0.0
    while proc.poll() is None and time.perf_counter() - t < budget:
        peak = max(peak, hwm_mb(proc.pid))
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
        return {
            "outcome": f"still running, killed at {budget:g} s",
            "seconds": round(time.perf_counter() - t, 2),
            "rss_before_mb": 0.0,
            "peak_rss_mb": round(peak, 1),
            "requests": up.total_requests(),
            "killed": True,
        }
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench child failed: {stderr[-2000:]}")
    out: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    out["requests"] = up.total_requests()
    return out


def _description_project(idx: FakeIndex, name: str, size: int) -> int:
    """A release whose description (version JSON, project JSON, wheel METADATA) is
    ``size`` bytes; returns the largest body a fetch reads."""
    idx.add_project(name)
    rel = idx.add_release(name, "1.0", wheels=1, core_metadata=True)
    unit = "Lorem ipsum dolor sit amet, caf\u00e9 na\u00efve \u00fcber. "
    text = (unit * (size // len(unit.encode()) + 1))[: size // 2 * 2]
    while len(text.encode()) > size:
        text = text[:-1]
    rel.info["description"] = text
    for f in rel.files:
        if f.filename.endswith(".whl"):
            head = f.metadata.split(b"\n\n", 1)[0]
            f.metadata = head + b"\n\n" + text.encode()
    return max(len(f.metadata) for f in rel.files)


def _cases(idx: FakeIndex, up: FakeUpstream, quick: bool) -> list[dict[str, Any]]:
    names = sorted(idx.projects)
    bomb_mb = 100 if quick else 600
    versions = 25_000 if quick else 100_000
    desc_mb = 5
    idx.add_project("many-versions")
    idx.add_many_releases("many-versions", versions)
    largest_desc = _description_project(idx, "big-description", desc_mb * 1024 * 1024)
    for path in ("/pypi/big-description/json", "/pypi/big-description/1.0/json"):
        with urllib.request.urlopen(f"{up.url}{path}") as r:  # loopback only
            largest_desc = max(largest_desc, len(r.read()))  # JSON escapes: larger than METADATA
    with urllib.request.urlopen(f"{up.url}/pypi/many-versions/json") as r:  # loopback only
        many_body = len(r.read())
    bomb = bytes(bomb_mb * 1024 * 1024)
    return [
        {
            "case": f"gzip bomb ({bomb_mb} MB of zeros as the project JSON)",
            "name": names[0],
            "fault": Fault(path=rf"^/pypi/{names[0]}/json$", kind="gzip", body=bomb, times=1000),
            "extra": "",
            "body": len(bomb),
        },
        {
            "case": f"gzip bomb, max_body_size = 16M ({bomb_mb} MB of zeros)",
            "name": names[0],
            "fault": Fault(path=rf"^/pypi/{names[0]}/json$", kind="gzip", body=bomb, times=1000),
            "extra": "[pypi_assets]\nmax_body_size = 16M\n",
            "body": len(bomb),
        },
        {
            "case": f"{versions:,} versions (one sdist each)",
            "name": "many-versions",
            "fault": None,
            "extra": "",
            "body": many_body,
        },
        {
            "case": f"{desc_mb} MB description (project JSON, version JSON, METADATA)",
            "name": "big-description",
            "fault": None,
            "extra": "",
            "body": largest_desc,
        },
        {
            "case": f"trickle, 1 byte / 2 s, global-timeout = {GLOBAL_TIMEOUT}",
            "name": names[1],
            "fault": Fault(
                path=rf"^/pypi/{names[1]}/json$", kind="trickle", seconds=2.0, times=1000
            ),
            "extra": "",
            "body": 0,
        },
    ]


def main(quick: bool = False) -> str:
    started = time.perf_counter()
    idx = FakeIndex.generate(4)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, FakeUpstream(idx) as up:
        base_root = _base_tree(Path(tmp) / "base")
        for case in _cases(idx, up, quick):
            row: dict[str, Any] = {"case": case["case"]}
            for label, root in (("ours", ROOT), ("base", base_root)):
                up.state.faults.clear()
                if case["fault"] is not None:
                    case["fault"].times = 1000
                    up.add_fault(case["fault"])
                row[label] = _run(root, up, case["name"], _conf(up.url, case["extra"]), BASE_BUDGET)
            if case["body"]:
                row["largest_body_mb"] = round(case["body"] / 2**20, 1)
            rows.append(row)
    total = round(time.perf_counter() - started, 1)

    def ratio(r: dict[str, Any], key: str) -> str:
        a, b = r["base"][key], r["ours"][key]
        return f"{b / a:.2f}x" if a else "-"

    def grow(r: dict[str, Any], who: str) -> float:
        # A killed run never reported its RSS after imports: take the other run's.
        before = r[who]["rss_before_mb"] or r["ours"]["rss_before_mb"] or r["base"]["rss_before_mb"]
        return round(r[who]["peak_rss_mb"] - before, 1)

    lines = []
    for r in rows:
        growth_ratio = f"{grow(r, 'ours') / grow(r, 'base'):.2f}x" if grow(r, "base") > 0 else "-"
        lines.append(
            [
                r["case"],
                f"{r['base']['requests']:,} / {r['ours']['requests']:,}",
                f"{r['base']['peak_rss_mb']:.0f} / {r['ours']['peak_rss_mb']:.0f}",
                f"{grow(r, 'base'):.0f} / {grow(r, 'ours'):.0f} ({growth_ratio})",
                f"{r['base']['seconds']:.1f} / {r['ours']['seconds']:.1f} ({ratio(r, 'seconds')})",
                r["ours"]["outcome"][:150].replace("|", "/"),
                r["base"]["outcome"][:110].replace("|", "/"),
            ]
        )
    desc = next(r for r in rows if "description" in r["case"])
    many = next(r for r in rows if "versions" in r["case"])
    md = "\n".join(
        [
            "# Caps on what the upstream can make one project cost (issue 10, defect 8)",
            "",
            "One `fetch_project` per case, each in a fresh subprocess, against the fake upstream on "
            "loopback, with the client `sync` builds (`sync.settings.client_config`) from a config with "
            f"`timeout = 10`, `global-timeout = {GLOBAL_TIMEOUT}` and the default `[pypi_assets]` "
            "caps (max_versions_per_project 20,000, max_files_per_release 2,000, max_body_size "
            f"256M) unless the case says otherwise. **base** is commit {BASE_COMMIT} (the same "
            f"script, its code), killed after {BASE_BUDGET:g} s when still running; **ours** is this "
            "tree. Requests are counted at the fake upstream. Peak RSS is the subprocess's VmHWM "
            "(its own high-water mark, reset at exec, sampled while it runs and read by it at its "
            "end; `ru_maxrss` would carry the forking parent's size, and the parent serves the "
            "bomb); growth is peak RSS minus the RSS after imports. Ratios are ours / base.",
            "",
            table(
                [
                    "case",
                    "requests base / ours",
                    "peak RSS MB base / ours",
                    "RSS growth MB base / ours",
                    "seconds base / ours",
                    "ours: outcome",
                    "base: outcome",
                ],
                lines,
            ),
            "",
            f"5 MB description: the largest body is {desc['largest_body_mb']} MB; the fetch's "
            f"RSS growth is {grow(desc, 'ours'):.0f} MB with this tree "
            f"({grow(desc, 'ours') / desc['largest_body_mb']:.1f}x the body; a project of 10 small "
            "files grows by about 3 MB, imports and connections). Large bodies are read and "
            "parsed one at a time, large descriptions are held compressed meanwhile, and a body "
            "is emptied as it is decoded, so in traced memory (tests/test_memory.py) the fetch "
            "peaks at 2x the largest body: parsing a JSON document holds its whole text and "
            "what it parses to, or, before, its text and its bytes. The rest is the allocator's "
            "(freed blocks not returned at once). "
            f"{grow(desc, 'base'):.0f} MB on the base "
            f"({grow(desc, 'base') / desc['largest_body_mb']:.1f}x).",
            "",
            f"{many['case']}: the project JSON is {many['largest_body_mb']} MB; the fetch's RSS "
            f"growth is {grow(many, 'ours'):.0f} MB with this tree "
            f"({grow(many, 'ours') / many['largest_body_mb']:.1f}x the body: the text is "
            "counted before it is parsed, and refused without its objects being built); the "
            f"base asked for {many['base']['requests']:,} version JSONs in {BASE_BUDGET:g} s "
            f"(it would ask for all {int(many['case'].split()[0].replace(',', '')):,}) and had "
            f"grown by {grow(many, 'base'):.0f} MB when it was killed.",
            "",
            "Gzip bomb: the body is inflated 1 MiB at a time and refused the moment it passes "
            "`max_body_size`; RSS growth follows the cap (256 MB by default, 16 MB when set so), "
            "where the base inflated up to its fixed 512 MiB.",
            "",
            f"Whole bench: {total} s.",
        ]
    )
    write_result("caps", md, {"global_timeout": GLOBAL_TIMEOUT, "rows": rows, "seconds": total})
    return md


if __name__ == "__main__":
    print(main(quick="--quick" in sys.argv))
