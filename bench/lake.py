"""Issue 12 benchmark: what publishing costs, with the lake and with the copy it replaced.

At each size, a synthetic mirror (``bench.analyst``'s generator: PyPI-shaped projects,
releases and files) is built in the working database, then:

1. **Today's copy** (the publication this project used before the lake, kept here as the
   baseline): ``COPY FROM DATABASE`` into a new DuckDB file plus Parquet of every table.
2. **The lake's first publication** (everything, once).
3. **One upstream change, end to end**: one project gets a new release upstream (the shipped
   fake upstream on 127.0.0.1); the store's own write path fetches and writes it (as a window
   run does: fetch, write, select its files), the lake commits, and an analyst's
   ``connect()`` sees the new release. Median of 3 changes.

The sizes are rows of ``distributions``. The flatness target: the one-change cost at the
largest size is at most 1.5 times that at the smallest.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from .analyst import DISTS, GEN
from .common import table, write_result

#: a config with no filter (the synthetic mirror selects everything)
_CONFIG = "[mirror]\ndirectory = /tmp/unused\nmaster = http://127.0.0.1\nallow-non-https = true\n"


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _build(db: Path, rows: int) -> int:
    from pypi_assets.store import MetadataStore
    from pypi_assets.store.derived import WHEEL_TAGS_DDL

    projects = max(1000, rows // 10)
    with MetadataStore(db) as store:
        con = store.con
        con.execute(GEN.format(projects=projects))
        con.execute(DISTS.format(projects=projects, rows=rows))
        con.execute(WHEEL_TAGS_DDL)
        con.execute(
            "INSERT INTO wheel_tags SELECT project, filename, split_part(filename, '-', -3), "
            "split_part(filename, '-', -2), replace(split_part(filename, '-', -1), '.whl', ''), "
            "NULL FROM distributions WHERE packagetype = 'bdist_wheel'"
        )
        con.execute("CHECKPOINT")
        return int(con.execute("SELECT count(*) FROM distributions").fetchone()[0])  # type: ignore[index]


def _old_copy(db: Path, out: Path) -> tuple[float, int]:
    """The publication the lake replaced: a full DuckDB copy plus Parquet of every table."""
    import duckdb

    out.mkdir()
    t = time.perf_counter()
    con = duckdb.connect(str(db))
    try:
        con.execute(f"ATTACH '{out / 'snapshot.duckdb'}' AS __snapshot")
        con.execute(f'COPY FROM DATABASE "{db.stem}" TO __snapshot')
        (out / "parquet").mkdir()
        for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = '__snapshot' "
            "AND table_name <> 'meta'"
        ).fetchall():
            con.execute(
                f"COPY (SELECT * FROM __snapshot.main.{name}) TO "
                f"'{out / 'parquet' / (name + '.parquet')}' (FORMAT parquet)"
            )
        con.execute("DETACH __snapshot")
    finally:
        con.close()
    return time.perf_counter() - t, _size(out)


async def _one_change(db: Path, up: Any, project: str, version: str) -> float:
    """Upstream adds a release; fetch and write it through the store, publish, and wait
    until a fresh analyst connection sees it. Returns the seconds."""
    import pypi_assets
    from pypi_assets.filters.config import loads
    from pypi_assets.pypi import ClientConfig, PyPIClient
    from pypi_assets.store import MetadataStore
    from pypi_assets.sync.metadata import refresh_metadata
    from pypi_assets.sync.run import publish
    from pypi_assets.sync.selection import recompute_selected_files

    up.index.add_release(project, version, wheels=1)
    serial = up.index.serial
    t = time.perf_counter()
    with MetadataStore(db) as store:
        async with PyPIClient(ClientConfig(upstream=up.url)) as client:
            report = await refresh_metadata(client, store, candidates=[(project, project, serial)])
        assert report.refreshed == [project], report
        recompute_selected_files(store, loads(_CONFIG), [project])
        publish(store, serial)
    con = pypi_assets.connect(db)
    seen = con.execute(
        "SELECT count(*) FROM releases WHERE project = ? AND version = ?", [project, version]
    ).fetchone()
    con.close()
    assert seen == (1,), seen
    return time.perf_counter() - t


def _measure(rows: int, up: Any, tmp: Path) -> dict[str, Any]:
    from pypi_assets.store import MetadataStore, lake_dir
    from pypi_assets.sync.run import publish

    db = tmp / f"m{rows}.duckdb"
    t = time.perf_counter()
    count = _build(db, rows)
    build_s = time.perf_counter() - t
    copy_s, copy_bytes = _old_copy(db, tmp / f"copy{rows}")
    shutil.rmtree(tmp / f"copy{rows}")
    t = time.perf_counter()
    with MetadataStore(db) as store:
        publish(store, 1)
    first_s = time.perf_counter() - t
    changes = [asyncio.run(_one_change(db, up, "proj-0", f"{rows}.{i}")) for i in range(3)]
    out = {
        "rows": count,
        "build_s": build_s,
        "db_bytes": _size(db),
        "copy_s": copy_s,
        "copy_bytes": copy_bytes,
        "lake_first_s": first_s,
        "lake_bytes": _size(lake_dir(db)),
        "change_s": statistics.median(changes),
        "changes_s": changes,
        # the process's peak so far: sizes run smallest first, so it is this size's peak
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    db.unlink()
    shutil.rmtree(lake_dir(db))
    return out


def main(quick: bool = False, sizes: list[int] | None = None) -> str:
    from pypi_assets.fake import FakeIndex, FakeUpstream

    sizes = sizes or ([100_000, 1_000_000] if quick else [1_000_000, 5_000_000, 15_000_000])
    os.environ.pop("PYPI_ASSETS_LAKE_CHECK", None)  # the self-check costs the whole mirror
    results = []
    index = FakeIndex.generate(0)
    index.add_project("proj-0")
    with FakeUpstream(index) as up, tempfile.TemporaryDirectory() as tmp:
        for rows in sizes:
            results.append(_measure(rows, up, Path(tmp)))
            print(results[-1], flush=True)
    small, large = results[0], results[-1]
    flat = large["change_s"] / small["change_s"]
    rows_md = [
        [
            f"{r['rows']:,}",
            f"{r['copy_s']:.1f}",
            f"{r['change_s']:.2f}",
            f"{r['copy_s'] / r['change_s']:.0f}x",
            f"{r['lake_first_s']:.1f}",
            f"{r['db_bytes'] / 1e9:.2f}",
            f"{r['copy_bytes'] / 1e9:.2f}",
            f"{r['lake_bytes'] / 1e9:.2f}",
            f"{r['build_s']:.0f}",
            f"{r['peak_rss_bytes'] / 1e9:.2f}",
        ]
        for r in results
    ]
    md = "\n".join(
        [
            "# Publishing: the lake against the copy it replaced (issue 12)",
            "",
            "Measured side by side in one run on this 2-core machine (`python -m bench lake`). "
            "A synthetic PyPI-shaped mirror per size; *one change* is one project's new release "
            "fetched from the fake upstream through the store's write path, committed to the "
            "lake, and seen by a new `pypi_assets.connect()` (median of 3). *Today's copy* is "
            "the full DuckDB copy plus Parquet that every run paid before the lake.",
            "",
            table(
                [
                    "files (rows)",
                    "copy (s)",
                    "one change (s)",
                    "copy / change",
                    "lake first publish (s)",
                    "working db (GB)",
                    "copy + Parquet (GB)",
                    "lake (GB)",
                    "build (s)",
                    "peak RSS (GB)",
                ],
                rows_md,
            ),
            "",
            f"One change at {large['rows']:,} rows costs **{flat:.2f}x** what it costs at "
            f"{small['rows']:,} (target: at most 1.5x).",
        ]
    )
    write_result("lake", md, {"sizes": results, "flatness": flat})
    return md
