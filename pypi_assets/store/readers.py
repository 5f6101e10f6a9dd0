"""Read-only queries on database files that no :class:`~.duckdb_store.MetadataStore` of this
process holds open: the published snapshot that ``serve --lazy`` consults, and the check that
a database a failed run created holds nothing. Opening a MetadataStore would migrate (write)
the file; these only read it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb

from .snapshot import SnapshotNotFound, connect

__all__ = ["SelectedBlob", "SnapshotReader", "holds_nothing"]

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
