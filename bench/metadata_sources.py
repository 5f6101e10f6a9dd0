"""Issue 11: what each source of a file's own metadata costs, side by side in one run.

The fake upstream runs in its own process (``bench.common.FakeProcess``); this process reads
every file's own metadata (``own_metadata.file_metadata``, one file and one request at a
time) once per upstream setting, with a fresh client each time, and reads the client's
per-source costs
(``client.own_metadata.costs``: files, requests, bytes received, seconds per file):

- ``core-metadata``: PEP 658 advertised (``pep658="advertised"``);
- ``unadvertised``: the ``.metadata`` files served but not advertised (the route to pypi.org);
- ``range``: no ``.metadata`` files: wheels read by range requests;
- ``pkg-info``: sdists, streamed until PKG-INFO (the same in every setting; all runs summed);
- ``version-json``: one version JSON per release (the fallback), asked for directly.

The fake's files are small (a wheel is ~1.5 KB), so ``range``'s share of the wheel is high
here; tests/test_own_metadata.py measures a 2 MB wheel (one or two requests, ~3 %).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections import Counter
from typing import Any

from pypi_assets.pypi import ClientConfig, PyPIClient
from pypi_assets.pypi.fetch import json_limits
from pypi_assets.pypi.own_metadata import file_metadata
from pypi_assets.pypi.page_files import file_version, files_from_page

from .common import FakeProcess, table, write_result

SETTINGS = {
    "core-metadata": {"pep658": "advertised"},
    "unadvertised": {"pep658": "unadvertised"},
    "range": {"pep658": "absent"},
}


def _configure(fake: FakeProcess, switches: dict[str, Any]) -> None:
    req = urllib.request.Request(
        fake.url + "/_fake/configure", data=json.dumps(switches).encode(), method="POST"
    )
    with urllib.request.urlopen(req) as r:  # loopback only
        r.read()


async def _names(client: PyPIClient) -> list[str]:
    return list((await client.list_projects()).names)


async def _one_setting(url: str) -> tuple[dict[str, Any], list[str]]:
    """Every file's own metadata read once, one file at a time; the per-source costs."""
    async with PyPIClient(ClientConfig(upstream=url, concurrency=1)) as c:
        limits = json_limits(c.config)
        names = await _names(c)
        for name in names:
            page = await c.simple_page(name)
            page_url = f"{c.config.base}/simple/{name}/"
            files = [
                f for fs in files_from_page(limits, name, page_url, page, None).values() for f in fs
            ]
            advertised = {f.filename: f.core_metadata_sha256 for f in files if f.core_metadata}
            for f in files:
                await file_metadata(c, f, advertised, bool(advertised))
                c.release_body()
        return c.own_metadata.costs.as_dict(), names


async def _version_json_cost(url: str, names: list[str]) -> dict[str, Any]:
    """One version JSON per release with files: requests, bytes, seconds; and the files
    they cover (a version JSON gives every file of its release the same metadata)."""
    out = {"files": 0, "requests": 0, "bytes": 0, "seconds": 0.0}
    async with PyPIClient(ClientConfig(upstream=url, concurrency=1)) as c:
        for name in names:
            page = await c.simple_page(name)
            by_version: Counter[str] = Counter(
                file_version(f.filename, page.versions or []) or "" for f in page.files
            )
            for version, n in by_version.items():
                started = time.perf_counter()
                got = await c.version_json(name, version)
                out["seconds"] += time.perf_counter() - started
                out["requests"] += 1
                out["bytes"] += len(got.body)
                out["files"] += n
    return out


def _row(source: str, c: dict[str, Any]) -> list[object]:
    files = c["files"] or 1
    return [
        source,
        c["files"],
        f"{c['requests'] / files:.2f}",
        f"{c['bytes'] / files:,.0f}",
        f"{1000 * c['seconds'] / files:.2f}",
    ]


def main(quick: bool = False) -> str:
    projects = 20 if quick else 60
    fake = FakeProcess(projects=projects)
    try:
        costs: dict[str, dict[str, Any]] = {}
        pkg = {"files": 0, "requests": 0, "bytes": 0, "seconds": 0.0}
        names: list[str] = []
        for label, switches in SETTINGS.items():
            _configure(fake, switches)
            got, names = asyncio.run(_one_setting(fake.url))
            costs[label] = got.get("unadvertised" if label == "unadvertised" else label, {})
            for k in pkg:
                pkg[k] += got.get("pkg-info", {}).get(k, 0)
            costs[f"{label} (all sources)"] = got
        costs["pkg-info"] = pkg
        costs["version-json"] = asyncio.run(_version_json_cost(fake.url, names))
    finally:
        fake.close()
    rows = [_row(s, costs[s]) for s in ("core-metadata", "unadvertised", "range", "pkg-info")]
    rows.append(_row("version-json", costs["version-json"]))
    md = "\n".join(
        [
            "# Per-source metadata cost (issue 11)",
            "",
            f"{projects} fake projects, every file's own metadata read once per upstream "
            "setting, one file and one request at a time, the fake upstream in its own process on loopback. Per file: "
            "requests, bytes received (bodies), milliseconds (wall, per file).",
            "",
            table(["source", "files", "requests/file", "bytes/file", "ms/file"], rows),
            "",
            "`version-json`: one request per release, shared by its files (per-file figures are "
            "per release divided by its files); it gives every file of a release its first "
            "upload's metadata, not its own. The fake's wheels are ~2 KB, so `range` reads "
            "most of each (two or three requests, still less than the wheel); on a 2 MB wheel "
            "it reads the last 64 KiB in one or two requests (tests/test_own_metadata.py).",
        ]
    )
    write_result("metadata_sources", md, costs)
    return md
