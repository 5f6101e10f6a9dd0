"""Read-only queries on database files that no :class:`~.duckdb_store.MetadataStore` of this
process holds open: the published snapshot that ``serve --lazy`` consults, and the check that
a database a failed run created holds nothing. Opening a MetadataStore would migrate (write)
the file; these only read it. Also what ``serve`` answers from past snapshots (the index as of
a serial or a time, the change feed) and what ``verify`` keeps for them (blob retention).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from .duckdb_store import (
    INDEX_FILE_COLUMNS,
    SNAPSHOT_RELEASE_INFOS_SQL,
    IndexedProject,
    index_files_sql,
)
from .lake import lake_snapshots, version_at
from .snapshot import SnapshotNotFound, connect, snapshots

__all__ = [
    "Change",
    "SelectedBlob",
    "SnapshotIndex",
    "SnapshotNotFound",
    "SnapshotPool",
    "SnapshotReader",
    "SnapshotUnavailable",
    "holds_nothing",
    "parse_point",
    "retained_blobs",
]

#: ``(project, filename, url, sha256, size, core_metadata_sha256)`` of a selected file
SelectedBlob = tuple[str, str, str, str, int | None, str | None]

_EMPTY_TABLES = ("upstream_projects", "projects", "distributions", "blobs")


def holds_nothing(db: Path) -> bool:
    """Whether the database ``db`` has no listing, project, file or blob. Raises
    :class:`duckdb.Error` when it cannot be opened read-only or a table is missing."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        for table in _EMPTY_TABLES:
            row = con.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()
            if row is None or row[0]:
                return False
    finally:
        con.close()
    return True


class SnapshotReader:
    """The newest published snapshot of ``db``, read from many threads: one read-only
    connection to the lake (which follows each new snapshot by itself), a cursor per query."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._open: duckdb.DuckDBPyConnection | None = None

    def _cursor(self) -> duckdb.DuckDBPyConnection | None:
        with self._lock:
            if self._open is None:
                try:
                    self._open = connect(self.db, follow=True)
                except SnapshotNotFound:
                    return None  # nothing published yet: ask again next time
            return self._open.cursor()

    def selected_blob(self, key: str) -> SelectedBlob | None:
        """The selected file stored under ``key`` (without ``.metadata``), if the snapshot
        selects one; ``None`` too when no snapshot is published."""
        cur = self._cursor()
        if cur is None:
            return None
        try:
            row = cur.execute(
                "SELECT project, filename, url, sha256, size, core_metadata_sha256 "
                "FROM selected_blob_keys WHERE key = ?",
                [key],
            ).fetchone()
        finally:
            cur.close()
        return None if row is None else (row[0], row[1], row[2], row[3], row[4], row[5])

    def selected_provenance(self, project: str, version: str, filename: str) -> str | None:
        """The upstream provenance URL of a selected file, if the snapshot selects it and
        it has one; ``None`` too when no snapshot is published."""
        cur = self._cursor()
        if cur is None:
            return None
        try:
            row = cur.execute(
                "SELECT provenance_url FROM selected_distributions WHERE project = ? "
                "AND release_version = ? AND filename = ? AND provenance_url IS NOT NULL",
                [project, version, filename],
            ).fetchone()
        finally:
            cur.close()
        return None if row is None else str(row[0])

    def close(self) -> None:
        """Close the connection (the next query opens one again)."""
        with self._lock:
            if self._open is not None:
                self._open.close()
                self._open = None


# ------------------------------------------------------------------ snapshots for serve
#: a point in the published history, as a URL names it: an upstream serial, or an RFC 3339
#: time with a zone (``2026-01-31T12:00:00Z``, fractions of a second up to microseconds)
_SERIAL_POINT = re.compile(r"^[0-9]{1,18}$")
_TIME_POINT = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def parse_point(text: str) -> int | datetime:
    """An upstream serial (digits) or an RFC 3339 time; :class:`ValueError` (one line, not
    echoing the input) for anything else."""
    if _SERIAL_POINT.match(text):
        return int(text)
    if _TIME_POINT.match(text):
        try:
            return datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
        except ValueError:
            pass  # 2026-13-45: the shape matched, the date does not exist
    raise ValueError("a snapshot is named by a serial or an RFC 3339 time with a zone")


#: the projects a snapshot's index lists, as :meth:`MetadataStore.index_projects` gives them
#: (no page bookkeeping: a snapshot's pages are rendered on request)
_SNAPSHOT_PROJECTS = (
    "SELECT p.name, p.display_name, p.serial, p.latest_version, p.info, NULL, NULL, p.status, "
    "p.status_reason FROM projects p SEMI JOIN selected_projects s ON s.name = p.name "
    "WHERE p.state = 'ok'"
)
#: the change feed, oldest first, in a stable order within a serial (``$1``: after this
#: serial, ``$2``: at most this many rows)
_CHANGES = (
    "SELECT serial, time, project, action, version, filename FROM changes WHERE serial > $1 "
    "ORDER BY serial, project, action, version NULLS FIRST, filename NULLS FIRST LIMIT $2"
)
_CHANGES_AT = (
    "SELECT serial, time, project, action, version, filename FROM changes WHERE serial = $1 "
    "ORDER BY serial, project, action, version NULLS FIRST, filename NULLS FIRST"
)


class SnapshotUnavailable(OSError):
    """A published snapshot cannot be read now (the lake's catalog failed); one line."""


def _line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


#: one event of the change feed: ``(serial, time, project, action, version, filename)``
Change = tuple[int, datetime | None, str, str, str | None, str | None]


class SnapshotIndex:
    """One published snapshot, read from many threads (a cursor per query): what the index
    writer reads from the working database, as it was at that snapshot."""

    def __init__(self, con: duckdb.DuckDBPyConnection, version: int, serial: int) -> None:
        self.con = con
        self.version = version
        self.serial = serial

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            cur = self.con.cursor()
            try:
                return cur.execute(sql, params or []).fetchall()
            finally:
                cur.close()
        except duckdb.Error as exc:
            raise SnapshotUnavailable(f"snapshot {self.version}: {_line(exc)}") from exc

    def index_files(
        self, projects: Sequence[str], *, lazy: bool
    ) -> list[tuple[str, str | None, dict[str, Any]]]:
        rows = self.query(index_files_sql(lazy=lazy), [list(projects)])
        return [(r[0], r[1], dict(zip(INDEX_FILE_COLUMNS, r[2:], strict=True))) for r in rows]

    def release_infos(self, projects: Sequence[str]) -> list[tuple[str, str, str | None]]:
        return [(p, v, i) for p, v, i in self.query(SNAPSHOT_RELEASE_INFOS_SQL, [list(projects)])]

    def long_texts(self, digests: Iterable[str | None]) -> dict[str, str]:
        """None to read: a snapshot's infos are whole (its views put the text back)."""
        if any(d is not None for d in digests):
            raise ValueError("a snapshot's project names no long text")
        return {}

    def project(self, name: str) -> IndexedProject | None:
        """The selected project ``name`` (normalised) as the snapshot has it, if listed."""
        rows = self.query(f"{_SNAPSHOT_PROJECTS} AND p.name = ?", [name])
        return IndexedProject(*rows[0]) if rows else None

    def root_projects(self, hidden: str) -> list[tuple[str, str, int]]:
        """``(name, display name, serial)`` of the projects the root lists (not ``hidden``)."""
        return [
            (r[0], r[1], r[2])
            for r in self.query(f"{_SNAPSHOT_PROJECTS} ORDER BY p.name")
            if r[7] != hidden
        ]

    def changes(self, since: int, limit: int) -> tuple[list[Change], bool]:
        """The events after serial ``since``, at most ``limit`` of them but never a serial cut
        in two (a serial with more events than ``limit`` comes whole), and whether more
        follow."""
        rows = [tuple(r) for r in self.query(_CHANGES, [since, limit + 1])]
        more = len(rows) > limit
        page = rows[:limit]
        if more and page and rows[limit][0] == page[-1][0]:
            last = page[-1][0]
            page = [r for r in page if r[0] != last]
            if not page:  # one serial holds more events than a page: send it whole
                page = [tuple(r) for r in self.query(_CHANGES_AT, [last])]
        return page, more


class SnapshotPool:
    """The snapshots ``serve`` answers from: a point (serial or time) resolved to the
    snapshot current then, its connection opened once and kept in a bounded LRU, so a page
    costs queries, not an attach. The list of snapshots is read again at most every
    ``refresh`` seconds."""

    def __init__(self, db: Path, size: int = 8, refresh: float = 1.0) -> None:
        self.db = db
        self.size = size
        self.refresh = refresh
        self._lock = threading.Lock()
        self._open: OrderedDict[int, SnapshotIndex] = OrderedDict()
        self._list: list[tuple[int, datetime, int]] = []
        self._listed = float("-inf")
        self._follow: duckdb.DuckDBPyConnection | None = None

    def _snapshots(self) -> list[tuple[int, datetime, int]]:
        """The published snapshots, listed through one connection that follows the lake
        (opened once: an attach costs seconds, a listing milliseconds)."""
        now = time.monotonic()
        if now - self._listed < self.refresh:
            return self._list
        if self._follow is None:
            self._follow = connect(self.db, follow=True)
        cur = self._follow.cursor()
        try:
            self._list, self._listed = lake_snapshots(cur, "lake"), now
        except duckdb.Error as exc:
            raise SnapshotUnavailable(f"cannot list the snapshots: {_line(exc)}") from exc
        finally:
            cur.close()
        return self._list

    def _resolve(self, point: int | datetime | None) -> tuple[int, int]:
        snaps = self._snapshots()
        if not snaps:
            raise SnapshotNotFound("no snapshot is published yet")
        if point is None:
            return snaps[-1][0], snaps[-1][2]
        if isinstance(point, datetime):
            before = [s for _v, t, s in snaps if t <= point]
            if not before:
                raise SnapshotNotFound(f"no snapshot at or before {point.isoformat()}")
            point = before[-1]
        version = version_at(snaps, point)
        if version is None:
            raise SnapshotNotFound(f"no snapshot at or before serial {point}")
        return version, next(s for v, _t, s in snaps if v == version)

    def get(self, point: int | datetime | None) -> SnapshotIndex:
        """The snapshot current at ``point`` (``None``: the newest). Raises
        :class:`SnapshotNotFound`."""
        with self._lock:
            version, serial = self._resolve(point)
            hit = self._open.get(version)
            if hit is not None:
                self._open.move_to_end(version)
                return hit
            snap = SnapshotIndex(connect(self.db, as_of=serial), version, serial)
            self._open[version] = snap
            while len(self._open) > self.size:
                # queries in flight keep their connection alive; it closes when they end
                self._open.popitem(last=False)
            return snap

    def close(self) -> None:
        with self._lock:
            for snap in self._open.values():
                snap.con.close()
            self._open.clear()
            if self._follow is not None:
                self._follow.close()
                self._follow = None


# ------------------------------------------------------------------ retention
_RETAINED = (
    "SELECT DISTINCT b.key FROM blobs b JOIN file_history h ON h.project = b.project "
    "AND b.filename IN (h.filename, h.filename || '.metadata') WHERE h.left_serial > $1"
)


def retained_blobs(db: Path, cutoff: datetime | None) -> set[str]:
    """The blob keys of files upstream removed that a snapshot still in the retention
    period lists: every such file with ``cutoff`` ``None`` (unlimited retention), else
    those still present after the snapshot current at ``cutoff``. Empty without a lake."""
    try:
        snaps = snapshots(db)
        if not snaps:
            return set()
        after = -1
        if cutoff is not None:
            before = [s for _v, t, s in snaps if t <= cutoff]
            after = before[-1] if before else -1
        con = connect(db)
        try:
            return {r[0] for r in con.execute(_RETAINED, [after]).fetchall()}
        finally:
            con.close()
    except duckdb.Error as exc:
        raise SnapshotUnavailable(f"cannot read the snapshots' history: {_line(exc)}") from exc
