"""Read-only snapshots for analysts: the lake (:mod:`.lake`).

Every successful sync commits one DuckLake snapshot tagged with the upstream serial. Analysts
open the newest one, or the one current at a past serial or time, read-only, from any number
of processes; a run never blocks them and they never block a run. ``export`` writes one plain
DuckDB file (and Parquet) of any snapshot, for people who want a single file.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import duckdb

from .lake import (
    LakeCommit,
    lake_serial,
    lake_snapshots,
    lake_tables,
    publish_lake,
    reader_views,
    resolve_location,
    version_at,
)
from .lake_engine import LakeLocation, attach_lake, lake_dir, sql_literal

__all__ = [
    "AsOf",
    "SnapshotNotFound",
    "connect",
    "export_snapshot",
    "lake_dir",
    "publish_snapshot",
    "snapshot_serial",
    "snapshots",
]

#: a past point: an upstream serial, or a time
AsOf = int | datetime


class SnapshotNotFound(FileNotFoundError):
    """No published snapshot (at that point)."""


def publish_snapshot(
    con: duckdb.DuckDBPyConnection,
    db_path: str | Path,
    serial: int,
    *,
    location: LakeLocation | None = None,
    check: bool = False,
) -> LakeCommit:
    """Commit what changed in the working database since the last snapshot as a new one."""
    return publish_lake(con, resolve_location(db_path, location), serial, check=check)


def snapshot_serial(db_path: str | Path, location: LakeLocation | None = None) -> int | None:
    """The serial of the newest snapshot if it exists and opens, else ``None``."""
    return lake_serial(resolve_location(db_path, location))


def snapshots(
    db_path: str | Path, location: LakeLocation | None = None
) -> list[tuple[int, datetime, int]]:
    """``(version, time, serial)`` of every published snapshot, oldest first."""
    loc = resolve_location(db_path, location)
    if not loc.exists():
        return []
    con = duckdb.connect()
    try:
        attach_lake(con, loc, "lake", read_only=True)
        return lake_snapshots(con, "lake")
    finally:
        con.close()


def connect(
    db_path: str | Path,
    *,
    as_of: AsOf | None = None,
    location: LakeLocation | None = None,
    follow: bool = False,
) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the newest snapshot, or to the one current at ``as_of`` (an
    upstream serial, or a time). Its tables and views are named as in the working database
    (``selected_distributions`` included), plus the history tables and ``changes``.

    The connection stays on its snapshot (connect again to see a newer one); with
    ``follow``, each query reads the snapshot newest when it starts instead."""
    loc = resolve_location(db_path, location)
    if not loc.exists():
        raise SnapshotNotFound(
            f"no published snapshot for {db_path}; run `pypi-assets sync` "
            "(or materialise the assets) first"
        )
    con = duckdb.connect()
    try:
        attach_lake(con, loc, "lake", read_only=True)
        snaps = lake_snapshots(con, "lake")
        if not snaps:
            raise SnapshotNotFound(f"the lake at {loc.catalog} has no snapshot yet")
        reader_views(con, "lake", None if follow else _pick(snaps, as_of))
    except duckdb.Error as exc:
        con.close()
        raise SnapshotNotFound(f"cannot open a snapshot ({str(exc).splitlines()[0]})") from exc
    except BaseException:
        con.close()
        raise
    return con


def _pick(snaps: list[tuple[int, datetime, int]], as_of: AsOf | None) -> int:
    """The version of the snapshot current at ``as_of`` (``None``: the newest)."""
    if as_of is None:
        return snaps[-1][0]
    if isinstance(as_of, datetime):
        if as_of.tzinfo is None:
            raise SnapshotNotFound(f"{as_of.isoformat()}: a time needs its UTC offset")
        older = [v for v, t, _s in snaps if t <= as_of]
        if not older:
            raise SnapshotNotFound(
                f"no snapshot at or before {as_of.isoformat()}; the first is at "
                f"{snaps[0][1].isoformat()}"
            )
        return older[-1]
    version = version_at(snaps, int(as_of))
    if version is None:
        raise SnapshotNotFound(
            f"no snapshot at or before serial {int(as_of)}; the first is at serial {snaps[0][2]}"
        )
    return version


def export_snapshot(
    db_path: str | Path,
    out: Path,
    *,
    as_of: AsOf | None = None,
    parquet: Path | None = None,
    location: LakeLocation | None = None,
) -> dict[str, int]:
    """Write one plain DuckDB file (``out``, replaced atomically) holding the tables and the
    views of a snapshot, and optionally one Parquet file per table and view in ``parquet``.
    Returns the row count of each table."""
    src = connect(db_path, as_of=as_of, location=location)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.unlink(missing_ok=True)
    counts: dict[str, int] = {}
    try:
        src.execute(f"ATTACH {sql_literal(str(tmp))} AS __out")
        for name in lake_tables():
            src.execute(f"CREATE TABLE __out.main.{name} AS SELECT * FROM memory.main.{name}")
            row = src.execute(f"SELECT count(*) FROM __out.main.{name}").fetchone()
            counts[name] = int(row[0]) if row else 0
        _copy_views(src)
        src.execute("DETACH __out")
        if parquet is not None:
            _export_parquet(src, parquet)
    finally:
        src.close()
    tmp.replace(out)
    return counts


def _copy_views(src: duckdb.DuckDBPyConnection) -> None:
    """The reader's views, defined again in the exported file (over its own tables)."""
    for (sql,) in src.execute(
        "SELECT sql FROM duckdb_views() WHERE database_name = 'memory' AND NOT internal "
        "AND view_name NOT IN (SELECT unnest($1::VARCHAR[]))",
        [list(lake_tables())],
    ).fetchall():
        src.execute("USE __out")
        src.execute(sql)
        src.execute("USE memory")


def _export_parquet(src: duckdb.DuckDBPyConnection, folder: Path) -> None:
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = [*lake_tables(), "selected_distributions"]
    for name in names:
        if name == "meta":
            continue
        target = sql_literal(str(tmp / f"{name}.parquet"))
        src.execute(f"COPY (SELECT * FROM main.{name}) TO {target} (FORMAT parquet)")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)
