"""Issue 10, defect 8, the store's part: what writing a project with a big description costs.

For each size, the project (its description in the version JSON, the project JSON and the
wheel's METADATA: two files, two infos) is fetched from the fake upstream in a fresh
subprocess, a small project is written first (the schema, the statements, the allocator
warm), then the peak-RSS mark is reset (``/proc/self/clear_refs``) and
``write_projects([big])`` runs: its growth is the peak over the RSS before it. Then the
stored state a later sync starts from is loaded (``load``: ``load_stored``) and the text
read whole where it is used (``read``: ``long_texts``, the index's JSON API pages; the
base's ``load_stored`` read it back, so its ``read`` is its ``load``), compared with what
was fetched, each with its own growth; then the lake is published in a fresh process (its
extensions loaded and its catalog opened first: a first publication's fixed cost), and the
snapshot read. Once with this tree's
code and once with the base commit's (``git archive``), side by side; ratios are ours / base.
The slope (RSS per further byte of body, between the smallest and the largest size) is what
the body costs, whatever fixed cost a step has. Memory only: the seconds each step took are
in the JSON, not compared (this bench may run beside other work).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from pypi_assets.fake import FakeIndex, FakeUpstream

from .caps import _base_tree, _description_project
from .common import ROOT, table, write_result

BASE_COMMIT = "2113b5b"  # the last commit writing descriptions inline

CHILD = r"""
import asyncio, ctypes, gc, json, sys, time
from pathlib import Path
a = json.loads(sys.argv[1])
from pypi_assets.pypi import ClientConfig, PyPIClient
from pypi_assets.pypi.fetch import fetch_project
from pypi_assets.store import MetadataStore
from pypi_assets.store.snapshot import publish_snapshot

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

def step(fn):
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # what steps before freed goes back: none hides
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = rss("VmRSS:")
    t = time.perf_counter()
    out = fn()
    return out, rss("VmHWM:") - base, time.perf_counter() - t

async def fetch():
    async with PyPIClient(ClientConfig(upstream=a["url"])) as c:
        return (await fetch_project(c, a["small"], None, None),
                await fetch_project(c, "big-description", None, None))

small, big = asyncio.run(fetch())
db = Path(a["db"])
with MetadataStore(db) as store:
    store.write_projects([small])
    store.replace_selected_projects([small.name])
    publish_snapshot(store.con, db, small.serial)
    _, write, write_s = step(lambda: store.write_projects([big]))
    stored, load, load_s = step(lambda: store.load_stored("big-description"))
    named = stored.info["description"]
    if hasattr(named, "digest"):  # the stored state names the text; read where it is used
        texts, read, read_s = step(lambda: store.long_texts([named.digest]))
    else:  # the base's stored state held the text, read back
        texts, read, read_s = {}, load, load_s
    whole = lambda v: texts[v.digest] if hasattr(v, "digest") else v
    info = lambda i: {**i, "description": whole(i["description"])} if i else i
    same = (
        {d.filename: d.description for d in big.distributions}
        == {f: whole(d.description) for f, d in stored.distributions.items()}
        and info(stored.info) == big.info
        and {r.version: r.info for r in big.releases}
        == {v: info(r.info) for v, r in stored.releases.items()}
    )
    del texts
    store.replace_selected_projects([small.name, big.name])
print(json.dumps({"write": write, "write_s": write_s, "load": load, "load_s": load_s,
                  "read": read, "read_s": read_s,
                  "same": same, "serial": big.serial}))
"""

#: The publication of that write, in a fresh process (no memory the steps before freed and
#: kept can hide what it costs), the lake's extensions loaded and its catalog opened first.
PUBLISH = r"""
import gc, json, sys, time
from pypi_assets.store import MetadataStore
from pypi_assets.store.lake import resolve_location
from pypi_assets.store.lake_engine import attach_lake
from pypi_assets.store.snapshot import connect, publish_snapshot

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

db = sys.argv[1]
with MetadataStore(db) as store:
    attach_lake(store.con, resolve_location(db, None), "warm", read_only=True)
    store.con.execute("DETACH warm")
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = rss("VmRSS:")
    t = time.perf_counter()
    publish_snapshot(store.con, db, int(sys.argv[2]))
    publish_s = time.perf_counter() - t
    publish = rss("VmHWM:") - base
con = connect(db)
whole = con.execute(
    "SELECT max(length(description)) FROM distributions WHERE project = 'big-description'"
).fetchone()[0]
print(json.dumps({"publish": publish, "publish_s": publish_s, "published_chars": whole}))
"""


def _child(code: Path, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", *args],
        env={**os.environ, "PYTHONPATH": str(code)},
        cwd=code,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench child failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _run(code: Path, url: str, small: str, db: Path) -> dict[str, Any]:
    got = _child(code, CHILD, json.dumps({"url": url, "small": small, "db": str(db)}))
    got.update(_child(code, PUBLISH, str(db), str(got["serial"])))
    return got


def _size(sizes_mb: list[int], tmp: Path, base: Path) -> list[dict[str, Any]]:
    rows = []
    for mb in sizes_mb:
        idx = FakeIndex.generate(2)
        body = _description_project(idx, "big-description", mb * 1024 * 1024)
        small = sorted(n for n in idx.projects if n != "big-description")[0]
        with FakeUpstream(idx) as up:
            for path in ("/pypi/big-description/json", "/pypi/big-description/1.0/json"):
                with urllib.request.urlopen(f"{up.url}{path}") as r:  # loopback only
                    body = max(body, len(r.read()))
            ours = _run(ROOT, up.url, small, tmp / f"ours{mb}.duckdb")
            theirs = _run(base, up.url, small, tmp / f"base{mb}.duckdb")
        rows.append({"mb": mb, "body": body, "ours": ours, "base": theirs})
    return rows


def main(quick: bool = False) -> str:
    sizes = [5, 20] if quick else [5, 20, 50]
    with tempfile.TemporaryDirectory() as tmp:
        base = _base_tree(Path(tmp) / "base", BASE_COMMIT)
        rows = _size(sizes, Path(tmp), base)
    lines: list[list[object]] = []
    for r in rows:
        body, o, b = r["body"], r["ours"], r["base"]
        for step in ("write", "load", "read", "publish"):
            lines.append(
                [
                    f"{r['mb']} MB",
                    step,
                    f"{body / 1e6:.1f}",
                    f"{b[step] / body:.2f}x / {o[step] / body:.2f}x",
                    f"{o[step] / max(b[step], 1):.2f}",
                    "yes"
                    if o["same"] and b["same"] and o["published_chars"] == b["published_chars"]
                    else "NO",
                ]
            )
    slopes: list[list[object]] = []
    first, last = rows[0], rows[-1]
    for step in ("write", "load", "read", "publish"):
        span = last["body"] - first["body"]
        per = {who: (last[who][step] - first[who][step]) / span for who in ("base", "ours")}
        slopes.append([step, f"{per['base']:.2f} / {per['ours']:.2f}"])
    md = "\n\n".join(
        [
            "# Writing a big description (issue 10, defect 8)",
            __doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
            f"**base** is commit {BASE_COMMIT}, which wrote each description inline "
            "(two files, two info JSONs); **ours** stores a description of 256 KiB or more "
            "once, out of line (`store/long_texts.py`). RSS growth is given as a multiple of "
            "the largest body the fetch read.",
            table(
                [
                    "description",
                    "step",
                    "largest body MB",
                    "RSS growth base / ours (x body)",
                    "ours / base",
                    "read back equal",
                ],
                lines,
            ),
            f"RSS per further byte of body, {first['mb']} MB to {last['mb']} MB:",
            table(["step", "base / ours"], slopes),
        ]
    )
    write_result("description_write", md, rows)
    return md
