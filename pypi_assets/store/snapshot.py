"""Read-only snapshots for analysts.

The pipeline owns its working database. After each successful sync it copies it into a new,
versioned snapshot file (one name per serial and time, so DuckDB's per-path cache in a
long-lived notebook never serves a swapped file), writes Parquet beside it, and then atomically
replaces the ``CURRENT`` pointer. Analysts open the snapshot read-only and can never block a run.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import duckdb

__all__ = [
    "connect",
    "current_snapshot",
    "publish_snapshot",
    "snapshot_dir",
    "snapshot_serial",
]


def snapshot_dir(db_path: str | Path) -> Path:
    p = Path(db_path)
    return p.with_name(p.stem + ".snapshots")


def _sql_str(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def publish_snapshot(
    con: duckdb.DuckDBPyConnection,
    db_path: str | Path,
    serial: int,
    *,
    keep: int = 3,
    parquet: bool = True,
) -> Path:
    """Copy the working database into a new snapshot and point ``CURRENT`` at it."""
    sdir = snapshot_dir(db_path)
    sdir.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(sdir)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time_ns() % 1_000_000_000:09d}"
    name = f"serial-{serial:012d}-{stamp}"
    tmp = sdir / f".{name}.duckdb.tmp"
    final = sdir / f"{name}.duckdb"
    ptmp = sdir / f".{name}.parquet.tmp"
    con.execute(f"ATTACH {_sql_str(tmp)} AS __snapshot")
    try:
        _copy_database(con)
        if parquet:
            _write_parquet(con, ptmp)
    finally:
        con.execute("DETACH __snapshot")
    os.replace(tmp, final)
    if parquet:
        os.replace(ptmp, sdir / f"{name}.parquet")
    pointer_tmp = sdir / ".CURRENT.tmp"
    pointer_tmp.write_text(name + "\n")
    os.replace(pointer_tmp, sdir / "CURRENT")
    _prune(sdir, name, keep)
    return final


def _copy_database(con: duckdb.DuckDBPyConnection) -> None:
    """Copy the working database into the attached ``__snapshot``: its views become tables
    (a snapshot never changes, so analysts pay for them once), without the pipeline's
    bookkeeping (``upstream_projects``)."""
    dbname = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    con.execute(f'COPY FROM DATABASE "{dbname}" TO __snapshot')
    views = [
        r[0]
        for r in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE database_name = ? AND NOT internal",
            [dbname],
        ).fetchall()
    ]
    for view in views:
        con.execute(f'DROP VIEW __snapshot.main."{view}"')
        con.execute(
            f'CREATE TABLE __snapshot.main."{view}" AS SELECT * FROM "{dbname}".main."{view}"'
        )
    con.execute("DROP TABLE IF EXISTS __snapshot.main.upstream_projects")


def _write_parquet(con: duckdb.DuckDBPyConnection, ptmp: Path) -> None:
    """One Parquet file per table of the snapshot (``meta`` aside) in ``ptmp``."""
    ptmp.mkdir()
    tables = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = '__snapshot' AND table_name <> 'meta'"
        ).fetchall()
    ]
    for table in sorted(tables):
        con.execute(
            f'COPY (SELECT * FROM __snapshot.main."{table}") TO {_sql_str(ptmp / (table + ".parquet"))} '
            "(FORMAT parquet)"
        )


def _clean_leftovers(sdir: Path) -> None:
    """Remove what an interrupted publication left (``.*.tmp`` files and folders, their
    ``.wal``): the publisher holds the working database's write lock, so none is in use."""
    for p in sdir.glob(".*"):
        if ".tmp" not in p.name:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _prune(sdir: Path, current: str, keep: int) -> None:
    names = sorted({p.name.split(".")[0] for p in sdir.glob("serial-*.duckdb")})
    for old in names[:-keep] if keep > 0 else []:
        if old == current:
            continue
        # An analyst still holding an old snapshot keeps reading it: unlinking an open file is safe.
        (sdir / f"{old}.duckdb").unlink(missing_ok=True)
        shutil.rmtree(sdir / f"{old}.parquet", ignore_errors=True)


def current_snapshot(db_path: str | Path) -> Path | None:
    sdir = snapshot_dir(db_path)
    try:
        name = (sdir / "CURRENT").read_text().strip()
    except FileNotFoundError:
        return None
    path = sdir / f"{name}.duckdb"
    return path if path.exists() else None


def snapshot_serial(db_path: str | Path) -> int | None:
    """The serial of the current snapshot if it exists and opens, else ``None``."""
    snap = current_snapshot(db_path)
    if snap is None:
        return None
    try:
        serial = int(snap.name.split("-")[1])
        con = duckdb.connect(str(snap), read_only=True)
    except (ValueError, IndexError, duckdb.Error):
        return None
    try:
        con.execute("SELECT count(*) FROM distributions").fetchone()
    except duckdb.Error:
        return None
    finally:
        con.close()
    return serial


def connect(db_path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open the newest published snapshot read-only."""
    snap = current_snapshot(db_path)
    if snap is None:
        raise FileNotFoundError(
            f"no published snapshot for {db_path}; run `pypi-assets sync` (or materialise the assets) first"
        )
    return duckdb.connect(str(snap), read_only=True)
