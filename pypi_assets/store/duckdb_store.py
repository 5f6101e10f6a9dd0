"""The pipeline's working DuckDB database.

Writes replace a project atomically and only when the incoming serial is newer than the stored
one, so partitions can run in any order, be retried or run twice and still converge. A crash
leaves each project either in its old or in its new state (DuckDB's transactions and WAL).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, cast

import duckdb

from ..pypi.errors import Refused
from ..pypi.records import (
    DISTRIBUTION_COLUMNS,
    Distribution,
    Ownership,
    Project,
    ProjectNotes,
    Release,
    StoredProject,
    StoredText,
    UpstreamListing,
    Vulnerability,
)
from ..pypi.requirements import parse_dependency
from .blobs import metadata_key_sql, provenance_key_sql
from .long_texts import (
    LONG_TEXT,
    LongTexts,
    TornText,
    drop_unreferenced,
    mend_pieces,
    named_by,
    read_texts,
    whole_info,
    whole_info_json,
    whole_sql,
)
from .schema import (
    BLOBS,
    CLOSURE_PROJECTS,
    DEPENDENCIES,
    DISTRIBUTION_ROWS,
    DISTRIBUTIONS,
    PROJECT_ROLES,
    PROJECTS,
    PUBLISHERS,
    RELEASES,
    RENAMED_COLUMNS,
    RENAMED_TABLES,
    SCHEMA_VERSION,
    SELECTED_FILES,
    SELECTED_PROJECTS,
    STORAGE_VIEWS,
    TABLES,
    UPSTREAM_PROJECTS,
    VIEWS,
    VULNERABILITIES,
    Table,
)

__all__ = ["ListingShrank", "MetadataStore", "ProjectState", "WriteResult", "is_storage_error"]

ProjectState = tuple[int, str]  # (serial, state)

Row = Mapping[str, Any]


def _insert_columns(
    con: duckdb.DuckDBPyConnection, table: Table, columns: Mapping[str, Sequence[Any]]
) -> None:
    """Bulk insert: one statement with a list parameter per column (fast in DuckDB)."""
    if set(columns) != set(table.names):
        raise ValueError(f"{table.name}: columns {sorted(columns)} are not {list(table.names)}")
    con.execute(table.insert_sql(), [list(columns[c]) for c in table.names])


def _insert_frame(
    con: duckdb.DuckDBPyConnection, table: Table, columns: Mapping[str, Sequence[Any]]
) -> None:
    """Bulk insert of plain columns (strings and integers, no NULL) through a pandas frame,
    which DuckDB scans several times faster than it unnests list parameters: the 886k names
    of PyPI's listing in 0.5 s, not 3.9 s."""
    import pandas  # a dependency: DuckDB's client looks for it anyway (pyproject.toml)

    if set(columns) != set(table.names):
        raise ValueError(f"{table.name}: columns {sorted(columns)} are not {list(table.names)}")
    frame = pandas.DataFrame({c: columns[c] for c in table.names})
    view = f"_frame_{id(frame)}"
    con.register(view, frame)
    try:
        cols = ", ".join(table.names)
        con.execute(f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {view}")
    finally:
        con.unregister(view)


def _insert(con: duckdb.DuckDBPyConnection, table: Table, rows: Iterable[Row]) -> None:
    """Bulk insert of named rows, each with exactly the table's declared columns."""
    columns: dict[str, list[Any]] = {c: [] for c in table.names}
    for row in rows:
        if row.keys() != columns.keys():
            raise ValueError(f"{table.name}: a row has columns {sorted(row)}")
        for c, v in row.items():
            columns[c].append(v)
    if columns[table.names[0]]:
        _insert_columns(con, table, columns)


def _table_columns(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """The columns each table of the database has now."""
    out: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_catalog = current_database()"
    ).fetchall():
        out.setdefault(table, set()).add(column)
    return out


def migrate(con: duckdb.DuckDBPyConnection, tables: Sequence[Table] = TABLES) -> list[str]:
    """Create the declared tables that are missing, and add to each existing table the
    declared columns it lacks (with their declared types; rows keep their data). Returns
    the ``ALTER TABLE`` statements run. Columns renamed since (:data:`RENAMED_COLUMNS`) are
    renamed first, keeping their data."""
    renamed = _rename_tables(con) + _rename_columns(con)
    for table in tables:
        con.execute(table.ddl())
    present = _table_columns(con)
    added = [s for t in tables for s in t.add_columns(present.get(t.name, set()))]
    for stmt in added:
        con.execute(stmt)
    return renamed + added


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the database holds a table (not a view) ``name`` in its main schema."""
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = ?",
        [name],
    ).fetchone()
    return bool(row and row[0])


def _rename_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Tables that became views of a renamed table (:data:`RENAMED_TABLES`): the table is
    renamed, keeping its rows, and the view is made after it."""
    done = []
    for old, new in RENAMED_TABLES:
        if _has_table(con, old):
            done.append(f"ALTER TABLE {old} RENAME TO {new}")
            con.execute(done[-1])
    return done


def _rename_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    present = _table_columns(con)
    done = []
    for table, old, new in RENAMED_COLUMNS:
        cols = present.get(table, set())
        if old in cols and new not in cols:
            done.append(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")
            con.execute(done[-1])
    return done


def is_storage_error(exc: BaseException) -> bool:
    """Whether a failure is the disk's or the database file's (full, unwritable,
    unreadable), not the data's or a bug's. DuckDB reports a full disk at commit time as a
    transaction error, so the text is read too. A closed connection is not a project's
    fault either: a write still in flight when a failing run closes its store sees one."""
    if isinstance(exc, OSError | duckdb.IOException | duckdb.PermissionException):
        return True
    if isinstance(exc, duckdb.ConnectionException):
        return True
    if isinstance(exc, duckdb.OutOfMemoryException | duckdb.FatalException):
        return True
    return isinstance(exc, duckdb.Error) and says_storage_failed(str(exc))


#: How the engines word a failure of the disk: DuckDB's, and SQLite's (the lake's catalog)
_STORAGE_FAILED = (
    "No space left",
    "Could not write",
    "Could not read",
    "Disk full",
    "database or disk is full",  # SQLITE_FULL
)


def says_storage_failed(text: str) -> bool:
    """Whether an engine's error message is a failure of the disk (full, unwritable)."""
    return any(marker in text for marker in _STORAGE_FAILED)


def _among(projects: Sequence[str] | None) -> tuple[str, list[Any]]:
    """A ``project`` filter for a query, or none."""
    if projects is None:
        return "", []
    return "AND project IN (SELECT unnest($1::VARCHAR[]))", [list(projects)]


def _newer(
    con: duckdb.DuckDBPyConnection, projects: Sequence[Project], result: WriteResult
) -> dict[str, Project]:
    """The newest incoming state of each project that is newer than the stored one (a
    ``missing`` or ``removed`` project is replaced whatever its serial); the others are
    reported in ``result.skipped_older``."""
    stored = dict(
        con.execute(
            "SELECT name, serial FROM projects WHERE name IN (SELECT unnest($1)) AND state = 'ok'",
            [[p.name for p in projects]],
        ).fetchall()
    )
    fresh: dict[str, Project] = {}
    for p in projects:
        old = stored.get(p.name)
        if old is not None and old >= p.serial:
            result.skipped_older.append(p.name)
            continue
        prev = fresh.get(p.name)
        if prev is None or prev.serial < p.serial:
            fresh[p.name] = p
    return fresh


#: The ``projects`` columns the status poll writes (:meth:`MetadataStore.record_statuses`),
#: which a project's new state keeps.
UPSTREAM_STATUS_COLUMNS = (
    "status",
    "status_reason",
    "status_serial",
    "status_checked_at",
    "organization",
)


def project_row(p: Project, now: datetime, texts: LongTexts) -> Row:
    """The ``projects`` row of a project as stored now (a long description in ``texts``)."""
    info, digest = texts.info_json(p.info)
    return {
        "name": p.name,
        "display_name": p.display_name,
        "serial": p.serial,
        "upstream_serial": p.serial,
        "state": "ok",
        "latest_version": p.latest_version,
        "removed_serial": None,
        "updated_at": now,
        "info": info,
        "etag": p.etag,
        # upstream's PEP 792 status and ownership: polled (sync/status.py), kept across writes
        **dict.fromkeys(UPSTREAM_STATUS_COLUMNS),
        "info_description": digest,
    }


def release_rows(p: Project, texts: LongTexts) -> Iterator[Row]:
    """The ``releases`` rows of a project (a long description in ``texts``)."""
    wheels = Counter(d.release_version for d in p.distributions if d.packagetype == "bdist_wheel")
    for r in p.releases:
        info = r.info or {}
        text, digest = texts.info_json(r.info)
        yield {
            "project": p.name,
            "version": r.version,
            "upload_time": r.upload_time,
            "yanked": r.yanked,
            "yanked_reason": r.yanked_reason,
            "file_count": r.file_count,
            "wheel_count": wheels.get(r.version, 0),
            "summary": info.get("summary") or None,
            "requires_python": info.get("requires_python") or None,
            "info": text,
            "info_description": digest,
        }


def distribution_row(d: Distribution, texts: LongTexts) -> Row:
    """The ``distribution_rows`` row of a file: its record's fields, by name (a long
    description in ``texts``, by digest)."""
    row = {c: getattr(d, c) for c in DISTRIBUTIONS.names}
    row["description_digest"] = digest = texts.digest(d.description)
    if digest is not None:
        row["description"] = None
    return row


def dependency_rows(project: str, d: Distribution) -> Iterator[Row]:
    """The ``dependencies`` rows of a file: its Requires-Dist entries, parsed."""
    for text in d.requires_dist or []:
        dep = parse_dependency(text)
        yield {
            "project": project,
            "release_version": d.release_version,
            "filename": d.filename,
            "requirement": dep.requirement,
            "dep_name": dep.dep_name,
            "dep_project": dep.dep_project,
            "specifier": dep.specifier,
            "extras": dep.extras,
            "marker": dep.marker,
            "optional": dep.optional,
            "extra": dep.extra,
            "parse_error": dep.parse_error,
        }


def mark_dirty(con: duckdb.DuckDBPyConnection, names: Iterable[str]) -> None:
    """Projects whose published rows changed: the next lake snapshot compares them."""
    todo = sorted(set(names))
    if todo:
        con.execute("INSERT OR IGNORE INTO lake_dirty SELECT unnest($1::VARCHAR[])", [todo])


@contextmanager
def marking_changes(
    con: duckdb.DuckDBPyConnection, table: str, key: str, scope: Sequence[str] | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Around statements that rewrite ``table``: mark dirty the projects whose rows differ
    afterwards (a multiset comparison inside the caller's transaction). With ``scope``, the
    statements touch only those projects' rows, and they are marked without comparing."""
    if scope is not None:
        yield con
        mark_dirty(con, scope)
        return
    con.execute(f"CREATE OR REPLACE TEMP TABLE _before_{table} AS SELECT * FROM {table}")
    yield con
    con.execute(
        f"INSERT OR IGNORE INTO lake_dirty SELECT DISTINCT {key} FROM ("
        f"(SELECT * FROM {table} EXCEPT ALL SELECT * FROM _before_{table}) UNION ALL "
        f"(SELECT * FROM _before_{table} EXCEPT ALL SELECT * FROM {table}))"
    )
    con.execute(f"DROP TABLE _before_{table}")


def long_texts_of(projects: Iterable[Project], texts: LongTexts) -> set[str]:
    """The digests of the long descriptions of ``projects``' infos and files (each text
    digested once, and kept in ``texts``)."""
    found: set[str | None] = set()
    for p in projects:
        found.add(texts.digest((p.info or {}).get("description")))
        found.update(texts.digest((r.info or {}).get("description")) for r in p.releases)
        found.update(texts.digest(d.description) for d in p.distributions)
    found.discard(None)
    return cast(set[str], found)


def _insert_projects(
    con: duckdb.DuckDBPyConnection, projects: Sequence[Project], now: datetime, texts: LongTexts
) -> None:
    """Insert the rows of every table for ``projects`` (whose old rows are deleted); their
    long descriptions are stored already (``texts``)."""
    _insert(con, PROJECTS, (project_row(p, now, texts) for p in projects))
    _insert(con, RELEASES, (row for p in projects for row in release_rows(p, texts)))
    _insert(
        con,
        DISTRIBUTION_ROWS,
        (distribution_row(d, texts) for p in projects for d in p.distributions),
    )
    _insert(
        con,
        DEPENDENCIES,
        (row for p in projects for d in p.distributions for row in dependency_rows(p.name, d)),
    )


def _keep_statuses(con: duckdb.DuckDBPyConnection, names: list[str]) -> list[tuple[Any, ...]]:
    """The polled columns (:data:`UPSTREAM_STATUS_COLUMNS`) of ``names``, to restore."""
    cols = ", ".join(UPSTREAM_STATUS_COLUMNS)
    return con.execute(
        f"SELECT name, {cols} FROM projects WHERE name IN (SELECT unnest($1)) "
        "AND status_checked_at IS NOT NULL",
        [names],
    ).fetchall()


def _restore_statuses(con: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]]) -> None:
    names = ("name", *UPSTREAM_STATUS_COLUMNS)
    _update_projects(con, {c: [row[i] for row in rows] for i, c in enumerate(names)})


#: Each selected file's ``.metadata`` claim: its key (``mkey``), whether a blob is recorded
#: under it (``recorded``) with this claim's digest (``stored_claim``), and whether another
#: selected file claims the same key with another digest (``contested``).
_METADATA_CLAIMS = (
    "SELECT k.*, b.key IS NOT NULL AS recorded, "
    "coalesce(b.sha256 = k.core_metadata_sha256, FALSE) AS stored_claim, "
    "EXISTS (SELECT 1 FROM selected_blob_keys o WHERE o.key = k.key "
    "AND o.core_metadata_sha256 <> k.core_metadata_sha256) AS contested "
    f"FROM (SELECT *, {metadata_key_sql('key')} AS mkey FROM selected_blob_keys "
    "WHERE core_metadata_sha256 IS NOT NULL) k LEFT JOIN blobs b ON b.key = k.mkey"
)


#: Projects upstream lists: all but the quarantined ones (PEP 792), which it hides from its
#: listings but still has, so they are neither dropped nor removed.
_LISTED = "AND coalesce(p.status, '') <> 'quarantined'"


def record_notes(
    con: duckdb.DuckDBPyConnection, notes: Sequence[ProjectNotes], now: datetime
) -> None:
    """Store what upstream says of projects beside their files (fetches' or polls'
    :class:`ProjectNotes`), set-based: a few statements per batch, not per project. A
    project's index pages are marked stale when any of it was read. Notes of one project
    given twice apply in order, as if stored one after the other."""
    rounds: list[list[ProjectNotes]] = []
    seen: Counter[str] = Counter()
    for p in notes:
        n = seen[p.name]
        seen[p.name] += 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(p)
    for batch in rounds:
        _record_round(con, batch, now)


def _update_projects(con: duckdb.DuckDBPyConnection, columns: Mapping[str, Sequence[Any]]) -> None:
    """``UPDATE projects`` from columns of values, typed as :data:`PROJECTS` declares them:
    ``name`` picks the row, each other column is set (one statement, however many rows)."""
    if not columns["name"]:
        return
    types = {c.name: c.type for c in PROJECTS.columns}
    source = ", ".join(f"unnest(${i + 1}::{types[c]}[]) AS {c}" for i, c in enumerate(columns))
    sets = ", ".join(f"{c} = t.{c}" for c in columns if c != "name")
    con.execute(
        f"UPDATE projects SET {sets} FROM (SELECT {source}) t WHERE projects.name = t.name",
        [list(v) for v in columns.values()],
    )


def _record_round(
    con: duckdb.DuckDBPyConnection, batch: Sequence[ProjectNotes], now: datetime
) -> None:
    """:func:`record_notes` for notes of distinct projects."""
    confirmed = [p.name for p in batch if p.confirmed]
    if confirmed:
        con.execute(
            "UPDATE projects SET status_checked_at = $2 WHERE name IN (SELECT unnest($1::VARCHAR[]))",
            [confirmed, now],
        )
    read = [(p.name, p.status) for p in batch if p.status is not None]
    _update_projects(
        con,
        {
            "name": [n for n, _ in read],
            "status": [s[0] for _, s in read],
            "status_reason": [s[1] for _, s in read],
            "status_serial": [s[2] for _, s in read],
        },
    )
    _record_ownership(con, [(p.name, p.ownership) for p in batch if p.ownership is not None])
    _record_vulnerabilities(con, batch)
    etags = [(path, p.name, v, e) for p in batch for path, (v, e) in p.etags.items()]
    if etags:
        con.execute(
            "INSERT OR REPLACE INTO upstream_etags (path, project, version, etag, checked_at) "
            "SELECT unnest($1::VARCHAR[]), unnest($2::VARCHAR[]), unnest($3::VARCHAR[]), "
            "unnest($4::VARCHAR[]), $5",
            [*(list(c) for c in zip(*etags, strict=True)), now],
        )
    changed = [p.name for p in batch if p.changed]
    if changed:  # their index pages are written again
        con.execute(
            "UPDATE simple_pages SET selection = '' WHERE project IN (SELECT unnest($1::VARCHAR[]))",
            [changed],
        )
    mark_dirty(con, (p.name for p in batch))


def _record_ownership(
    con: duckdb.DuckDBPyConnection, owned: Sequence[tuple[str, Ownership]]
) -> None:
    """Each project's organization, and its roles in place of the stored ones."""
    if not owned:
        return
    owners = [n for n, _ in owned]
    _update_projects(
        con,
        {"name": owners, "organization": [o.organization for _, o in owned]},
    )
    con.execute(
        "DELETE FROM project_roles WHERE project IN (SELECT unnest($1::VARCHAR[]))", [owners]
    )
    _insert(
        con,
        PROJECT_ROLES,
        (
            {"project": n, "role": r, "user": u, "organization": o.organization}
            for n, o in owned
            for r, u in o.roles
        ),
    )


def _record_vulnerabilities(con: duckdb.DuckDBPyConnection, batch: Sequence[ProjectNotes]) -> None:
    """The vulnerabilities of each release read, in place of the stored ones."""
    read = [(p.name, v) for p in batch for v in p.vulnerabilities]
    if not read:
        return
    con.execute(
        "DELETE FROM vulnerabilities v USING (SELECT unnest($1::VARCHAR[]) AS project, "
        "unnest($2::VARCHAR[]) AS version) t WHERE v.project = t.project "
        "AND v.version = t.version",
        [[n for n, _ in read], [v for _, v in read]],
    )
    _insert(
        con,
        VULNERABILITIES,
        (
            {"project": p.name, "version": version, **_vuln_row(v)}
            for p in batch
            for version, records in p.vulnerabilities.items()
            for v in records
        ),
    )


def _vuln_row(v: Vulnerability) -> dict[str, Any]:
    return {c: getattr(v, c) for c in VULNERABILITIES.names if c not in ("project", "version")}


class ListingShrank(Refused, ValueError):
    """A new upstream listing would drop more of the stored projects than allowed."""

    def __init__(
        self, listed: int, stored: int, dropped: int, share: float, names: Sequence[str] = ()
    ) -> None:
        self.listed, self.stored, self.dropped, self.share = listed, stored, dropped, share
        self.names = list(names)  # the dropped names, when there are few of them
        super().__init__(
            f"the upstream listing has {listed} projects and drops {dropped} of the {stored} "
            f"stored ({dropped / max(stored, 1):.1%}, more than the {share:.1%} allowed by "
            "[pypi_assets] max_removed_share): treated as an upstream fault, nothing removed"
        )


def _drop_gone_publishers(con: duckdb.DuckDBPyConnection, projects: list[str]) -> None:
    """Publisher rows of files that ``projects`` no longer have."""
    mark_dirty(con, projects)
    con.execute(
        "DELETE FROM publishers p WHERE p.project IN (SELECT unnest($1::VARCHAR[])) AND NOT "
        "EXISTS (SELECT 1 FROM distributions d WHERE d.project = p.project "
        "AND d.filename = p.filename)",
        [projects],
    )


class WriteResult:
    def __init__(self) -> None:
        self.written: list[str] = []
        self.skipped_older: list[str] = []


class MetadataStore:
    """One writable connection to the working database. Not shared across processes."""

    #: A listing that drops at most this many projects (but more than the allowed share)
    #: names them, so that the caller can confirm each removal with the upstream.
    CONFIRMABLE_DROPS = 50

    def __init__(
        self,
        path: str | Path,
        *,
        read_only: bool = False,
        lock_timeout: float = 900.0,
        long_text: int = LONG_TEXT,
    ) -> None:
        self.path = Path(path)
        #: descriptions of this many characters or more are stored once, out of line
        self.long_text = long_text
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = self._connect(read_only, lock_timeout)
        self._lock = threading.RLock()  # write_projects holds it across two transactions
        if not read_only:
            try:
                self._migrate()
            except BaseException:
                self.con.close()  # a refused or broken database is not left open
                raise

    def _connect(self, read_only: bool, lock_timeout: float) -> duckdb.DuckDBPyConnection:
        """DuckDB allows one writing process. If another holds the file (a run outside the
        writer pool, a cron sync), wait for it instead of failing: say so once (a warning on
        the ``pypi_assets`` logger), and after ``lock_timeout`` seconds give up with an
        ``IOException`` that says another process holds the lock."""
        import logging

        deadline = time.monotonic() + lock_timeout
        delay = 0.05
        waiting = False
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as exc:
                text = str(exc).lower()
                if "could not set lock" not in text and "conflicting lock" not in text:
                    raise  # not a lock ("block" in a read error must not make us wait)
                if time.monotonic() > deadline:
                    raise duckdb.IOException(
                        f"database {self.path}: another process holds its lock "
                        f"(waited {lock_timeout:g} s)"
                    ) from exc
                if not waiting:
                    waiting = True
                    logging.getLogger("pypi_assets.store").warning(
                        "database %s is locked by another process; waiting up to %g s",
                        self.path,
                        lock_timeout,
                    )
                time.sleep(min(delay, max(0.0, deadline - time.monotonic()) + 0.01))
                delay = min(delay * 2, 2.0)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self.transaction() as con:
            before = self._refuse_newer(con)
            migrate(con)
            mend_pieces(con)  # pieces of one early layout, whatever version it then said
            if 0 < before < 2:
                # a lake published before long texts were kept apart holds them inline:
                # its next publication compares every project, and names them as the
                # working database does
                con.execute("INSERT OR REPLACE INTO meta VALUES ('lake_full', '1')")
            for stmt in (*STORAGE_VIEWS, *VIEWS):
                con.execute(stmt)
            drop_unreferenced(con)  # pieces a crash left between their write and the rows
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
            )

    def _refuse_newer(self, con: duckdb.DuckDBPyConnection) -> int:
        """A database a newer version laid out (its schema_version above ours) is not
        written: this version would read and publish it wrong. Returns the schema version
        found (0: a new database)."""
        if not _has_table(con, "meta"):
            return 0
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        found = int(row[0]) if row and str(row[0]).isdigit() else 0
        if found > SCHEMA_VERSION:
            raise duckdb.IOException(
                f"database {self.path}: laid out by a newer pypi-assets (schema {found}, this "
                f"version knows {SCHEMA_VERSION}); upgrade pypi-assets to write it"
            )
        return found

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            cur = self.con.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                cur.close()
                raise
            cur.execute("COMMIT")
            cur.close()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        cur = self.con.cursor()
        try:
            return cur.execute(sql, params or []).fetchall()
        finally:
            cur.close()

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", [key])
        return rows[0][0] if rows else None

    def delete_meta(self, *keys: str) -> None:
        with self.transaction() as con:
            con.execute(
                "DELETE FROM meta WHERE key IN (SELECT unnest($1::VARCHAR[]))", [list(keys)]
            )

    def set_meta(self, **values: str) -> None:
        with self.transaction() as con:
            for k, v in values.items():
                con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [k, v])

    def lake_pending(self) -> int:
        """How many projects changed since the lake's last snapshot (a full comparison
        pending counts as one)."""
        row = self.query(
            "SELECT (SELECT count(*) FROM lake_dirty) + "
            "(SELECT count(*) FROM meta WHERE key = 'lake_full')"
        )
        return int(row[0][0])

    def listing_serial(self) -> int:
        """The serial of the last full upstream listing (0: none yet, or none given)."""
        return int(self.get_meta("upstream_serial") or 0)

    def known_serial(self) -> int:
        """The serial the stored listing has reached: through the changelog, else the last
        full listing."""
        return int(self.get_meta("changelog_serial") or self.get_meta("upstream_serial") or 0)

    # ------------------------------------------------------------------ listing
    def replace_upstream_listing(
        self,
        listing: UpstreamListing,
        canonical: Callable[[str], str],
        *,
        max_removed_share: float = 1.0,
        confirm_drops: bool = False,
    ) -> None:
        """Replace the stored listing. Raises :class:`ListingShrank` (and changes nothing)
        when the new listing is empty, or drops more than ``max_removed_share`` of the
        projects stored (not removed): one garbage answer must never wipe a mirror. With
        ``confirm_drops``, a listing that drops any stored project, but at most
        :attr:`CONFIRMABLE_DROPS`, raises too, naming them, so the caller confirms each."""
        with self.transaction() as con:
            con.execute("DELETE FROM upstream_projects")
            step = 200_000  # bounded batches keep peak memory flat for ~900k names
            for i in range(0, len(listing.names), step):
                display = listing.names[i : i + step]
                _insert_frame(
                    con,
                    UPSTREAM_PROJECTS,
                    {
                        "name": [canonical(n) for n in display],
                        "display_name": display,
                        "serial": listing.serials[i : i + step],
                    },
                )
            stored, dropped = con.execute(
                "SELECT count(*), count(*) FILTER (WHERE NOT EXISTS "
                "(SELECT 1 FROM upstream_projects u WHERE u.name = p.name)) "
                f"FROM projects p WHERE p.state <> 'removed' {_LISTED}"
            ).fetchone() or (0, 0)
            few = 0 < dropped <= self.CONFIRMABLE_DROPS
            if not listing.names or dropped > max_removed_share * stored or (confirm_drops and few):
                names = (
                    [
                        r[0]
                        for r in con.execute(
                            f"SELECT name FROM projects p WHERE p.state <> 'removed' {_LISTED} AND NOT "
                            "EXISTS (SELECT 1 FROM upstream_projects u WHERE u.name = p.name) "
                            "ORDER BY name"
                        ).fetchall()
                    ]
                    if listing.names and dropped <= self.CONFIRMABLE_DROPS
                    else []
                )
                raise ListingShrank(len(listing.names), stored, dropped, max_removed_share, names)
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('upstream_serial', ?)", [str(listing.serial)]
            )
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('changelog_serial', ?)", [str(listing.serial)]
            )
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('listing_source', ?)", [listing.source]
            )

    def upstream_listing(self, *, selected_only: bool = False) -> list[tuple[str, str, int]]:
        sql = "SELECT name, display_name, serial FROM upstream_projects"
        if selected_only:
            sql += " u SEMI JOIN selected_projects s ON s.name = u.name"
        return [(r[0], r[1], r[2]) for r in self.query(sql)]

    def iter_upstream_display_names(self, chunk: int = 100_000) -> Iterator[list[str]]:
        """The listing's display names in chunks, so filtering never holds them all."""
        cur = self.con.cursor()
        try:
            cur.execute("SELECT display_name FROM upstream_projects")
            while rows := cur.fetchmany(chunk):
                yield [r[0] for r in rows]
        finally:
            cur.close()

    def upsert_listing(self, rows: Sequence[tuple[str, str, int]]) -> None:
        """Raise listed serials (or add projects) from changelog rows ``(name, display, serial)``."""
        if not rows:
            return
        with self.transaction() as con:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _chg AS SELECT * FROM "
                "(SELECT unnest($1) AS name, unnest($2) AS display_name, unnest($3) AS serial)",
                [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]],
            )
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _chg2 AS SELECT name, arg_max(display_name, serial) AS display_name, "
                "max(serial) AS serial FROM _chg GROUP BY name"
            )
            con.execute(
                "UPDATE upstream_projects u SET serial = greatest(u.serial, c.serial) FROM _chg2 c WHERE u.name = c.name"
            )
            con.execute(
                "INSERT INTO upstream_projects SELECT c.name, c.display_name, c.serial FROM _chg2 c "
                "WHERE NOT EXISTS (SELECT 1 FROM upstream_projects u WHERE u.name = c.name)"
            )
            con.execute("DROP TABLE _chg")
            con.execute("DROP TABLE _chg2")

    def remove_from_listing(self, names: Sequence[str]) -> None:
        """Unlist ``names``; what is not listed is not selected either (a cached root may
        have listed, and so selected, a project the changelog then says is gone)."""
        if names:
            with self.transaction() as con:
                for table in ("upstream_projects", "selected_projects"):
                    con.execute(
                        f"DELETE FROM {table} WHERE name IN (SELECT unnest($1::VARCHAR[]))",
                        [list(names)],
                    )

    def add_selected(self, names: Sequence[str]) -> None:
        if names:
            with self.transaction() as con:
                con.execute(
                    "INSERT OR IGNORE INTO selected_projects SELECT DISTINCT unnest($1::VARCHAR[])",
                    [list(names)],
                )
                mark_dirty(con, names)

    def window_candidates(self, first: int, last: int) -> list[tuple[str, str, int]]:
        """Selected projects listed with a serial in ``[first, last]`` whose stored state is
        older (or absent). Serial 0 (unknown) counts as every window's. Projects stored as
        ``missing`` or ``removed`` that are listed again count in every window, whatever
        their serial: a transient 404 or a bad listing must not drop them for good."""
        return [
            (r[0], r[1], r[2])
            for r in self.query(
                "SELECT u.name, u.display_name, u.serial FROM upstream_projects u "
                "SEMI JOIN selected_projects s ON s.name = u.name "
                "LEFT JOIN projects p ON p.name = u.name "
                "WHERE ((u.serial BETWEEN $1 AND $2 OR u.serial <= 0) "
                "AND (p.serial IS NULL OR p.serial < u.serial OR u.serial <= 0)) "
                "OR p.state IN ('missing', 'removed')",
                [first, last],
            )
        ]

    def upstream_count(self) -> int:
        return int(self.query("SELECT count(*) FROM upstream_projects")[0][0])

    # ------------------------------------------------------------------ selection
    def replace_selected_projects(self, names: Iterable[str]) -> None:
        with self.transaction() as con, marking_changes(con, "selected_projects", "name"):
            con.execute("DELETE FROM selected_projects")
            _insert_frame(con, SELECTED_PROJECTS, {"name": sorted(set(names))})

    def selected_projects(self) -> set[str]:
        return {r[0] for r in self.query("SELECT name FROM selected_projects")}

    def project_states(self) -> dict[str, ProjectState]:
        return {r[0]: (r[1], r[2]) for r in self.query("SELECT name, serial, state FROM projects")}

    def replace_selected_files(
        self, project_files: Iterable[tuple[str, str]], projects: Sequence[str] | None = None
    ) -> None:
        """Replace the selection: all of it, or only the rows of ``projects``."""
        rows = list(project_files)
        with (
            self.transaction() as con,
            marking_changes(con, "selected_files", "project", projects),
        ):
            if projects is None:
                con.execute("DELETE FROM selected_files")
            else:
                con.execute(
                    "DELETE FROM selected_files WHERE project IN (SELECT unnest($1::VARCHAR[]))",
                    [list(projects)],
                )
            _insert(con, SELECTED_FILES, ({"project": p, "filename": f} for p, f in rows))

    def select_all_files_of_selected_projects(self, projects: Sequence[str] | None = None) -> None:
        """The selection when no release- or file-level filter is enabled (pure SQL)."""
        with (
            self.transaction() as con,
            marking_changes(con, "selected_files", "project", projects),
        ):
            if projects is None:
                con.execute("DELETE FROM selected_files")
                con.execute(
                    "INSERT INTO selected_files SELECT d.project, d.filename FROM distributions d "
                    "SEMI JOIN selected_projects s ON s.name = d.project"
                )
            else:
                scope = list(projects)
                con.execute(
                    "DELETE FROM selected_files WHERE project IN (SELECT unnest($1::VARCHAR[]))",
                    [scope],
                )
                con.execute(
                    "INSERT INTO selected_files SELECT d.project, d.filename FROM distributions d "
                    "SEMI JOIN selected_projects s ON s.name = d.project "
                    "WHERE d.project IN (SELECT unnest($1::VARCHAR[]))",
                    [scope],
                )

    def replace_closure(self, rows: Sequence[tuple[str, list[str], list[str], list[str]]]) -> None:
        """The dependency closure: ``(name, requirements, extras, required_by)`` rows, also
        added to ``selected_projects``."""
        with (
            self.transaction() as con,
            marking_changes(con, "closure_projects", "name"),
            marking_changes(con, "selected_projects", "name"),
        ):
            con.execute("DELETE FROM closure_projects")
            _insert(
                con,
                CLOSURE_PROJECTS,
                (dict(zip(CLOSURE_PROJECTS.names, r, strict=True)) for r in rows),
            )
            con.execute("INSERT OR IGNORE INTO selected_projects SELECT name FROM closure_projects")

    def closure_requirements(self) -> dict[str, list[str]]:
        return {
            r[0]: list(r[1]) for r in self.query("SELECT name, requirements FROM closure_projects")
        }

    def kept_dependencies(self, project: str, filenames: Sequence[str]) -> list[tuple[Any, ...]]:
        """``dep_project, dep_name, specifier, extras, marker, extra`` of those files."""
        return self.query(
            "SELECT DISTINCT dep_project, dep_name, specifier, extras, marker, extra "
            "FROM dependencies WHERE project = $1 AND parse_error IS NULL "
            "AND filename IN (SELECT unnest($2::VARCHAR[]))",
            [project, list(filenames)],
        )

    def refresh_candidates(
        self, names: Sequence[str]
    ) -> tuple[list[tuple[str, str, int]], set[str]]:
        """Of ``names``: those listed upstream whose stored state is older or absent, as
        ``(name, display_name, serial)``; and those not listed upstream at all."""
        rows = self.query(
            "SELECT n.name, u.display_name, u.serial, p.serial FROM (SELECT unnest($1::VARCHAR[]) AS name) n "
            "LEFT JOIN upstream_projects u ON u.name = n.name "
            "LEFT JOIN projects p ON p.name = n.name AND p.state = 'ok'",
            [list(names)],
        )
        todo = [
            (r[0], r[1], r[2])
            for r in rows
            if r[1] is not None and (r[3] is None or r[3] < r[2] or r[2] <= 0)
        ]
        unlisted = {r[0] for r in rows if r[1] is None}
        return todo, unlisted

    # ------------------------------------------------------------------ blobs
    def missing_blobs(
        self, serials: tuple[int, int] | None = None, *, metadata: bool = True
    ) -> list[tuple[str, str, str, str, str, int | None]]:
        """Selected files (and their PEP 658 ``.metadata``) not recorded as stored:
        ``(project, filename, key, url, sha256, size)``, ``size`` None for ``.metadata``.
        ``serials`` limits them to projects whose stored serial lies in that window.

        A ``.metadata`` key that selected files claim with different digests (one file's
        bytes have one metadata: one claim is false) is left out, so that no project's
        claim replaces another's; the claims are named in a warning
        (:meth:`metadata_conflicts`)."""
        where = "AND project_serial BETWEEN $1 AND $2" if serials else ""
        params = list(serials) if serials else []
        sql = (
            f"SELECT project, filename, key, url, sha256, size FROM selected_blob_keys k "
            f"WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.key = k.key) {where}"
        )
        if metadata:
            sql += (
                " UNION ALL SELECT project, filename || '.metadata', mkey, url || '.metadata', "
                f"core_metadata_sha256, NULL FROM ({_METADATA_CLAIMS}) k WHERE NOT recorded "
                f"AND NOT contested {where}"
            )
            self._warn_conflicts()
        return [tuple(r) for r in self.query(sql + " ORDER BY 1, 2", params)]

    def metadata_conflicts(self) -> dict[str, list[str]]:
        """``.metadata`` keys that selected files claim with different digests: key ->
        ``project: filename=sha256`` of each claim that is not the stored one."""
        out: dict[str, list[str]] = {}
        for key, project, filename, sha in self.query(
            f"SELECT mkey, project, filename, core_metadata_sha256 FROM ({_METADATA_CLAIMS}) "
            "WHERE contested AND NOT stored_claim ORDER BY 1, 2, 3"
        ):
            out.setdefault(key, []).append(f"{project}: {filename}.metadata={sha}")
        return out

    def _warn_conflicts(self) -> None:
        import logging

        for key, claims in self.metadata_conflicts().items():
            logging.getLogger("pypi_assets.store").warning(
                "%s: selected files claim different .metadata files for one file; not "
                "fetched for %s",
                key,
                ", ".join(claims),
            )

    def record_blobs(self, rows: Sequence[tuple[str, str, str, str, int]]) -> None:
        """``(key, project, filename, sha256, size)`` of blobs now in the store. The index
        pages of their projects are marked stale: pages list only stored files."""
        if not rows:
            return
        now = datetime.now(UTC)
        with self.transaction() as con:
            con.execute(
                "DELETE FROM blobs WHERE key IN (SELECT unnest($1::VARCHAR[]))",
                [[r[0] for r in rows]],
            )
            con.execute(
                "UPDATE simple_pages SET selection = '' "
                "WHERE project IN (SELECT unnest($1::VARCHAR[]))",
                [sorted({r[1] for r in rows})],
            )
            mark_dirty(con, (r[1] for r in rows))
            _insert(
                con,
                BLOBS,
                (
                    dict(zip(BLOBS.names, (*r, now), strict=True))
                    for r in dict((r[0], r) for r in rows).values()
                ),
            )

    def forget_all_blobs(self) -> None:
        with self.transaction() as con:
            con.execute("INSERT OR IGNORE INTO lake_dirty SELECT DISTINCT project FROM blobs")
            con.execute("DELETE FROM blobs")

    def forget_blobs(self, keys: Sequence[str]) -> None:
        """Blobs no longer in the store (or not to be trusted); their projects' index pages
        are marked stale, so they stop listing them."""
        if keys:
            with self.transaction() as con:
                con.execute(
                    "UPDATE simple_pages SET selection = '' WHERE project IN "
                    "(SELECT project FROM blobs WHERE key IN (SELECT unnest($1::VARCHAR[])))",
                    [list(keys)],
                )
                con.execute(
                    "INSERT OR IGNORE INTO lake_dirty SELECT DISTINCT project FROM blobs "
                    "WHERE key IN (SELECT unnest($1::VARCHAR[]))",
                    [list(keys)],
                )
                con.execute(
                    "DELETE FROM blobs WHERE key IN (SELECT unnest($1::VARCHAR[]))", [list(keys)]
                )

    def referenced_blobs(
        self, *, metadata: bool = True
    ) -> dict[str, tuple[str, str, str, int | None, str]]:
        """Every key the selection needs: ``key -> (project, filename, sha256, size, url)``
        (with the ``.metadata`` files unless ``metadata`` is false). A ``.metadata`` key that
        files claim with different digests is referenced with the claim stored (recorded)
        under it, if any: ``verify`` never takes another claim's bytes for the right ones."""
        out: dict[str, tuple[str, str, str, int | None, str]] = {}
        for project, filename, key, sha, size, url in self.query(
            "SELECT project, filename, key, sha256, size, url FROM selected_blob_keys"
        ):
            out[key] = (project, filename, sha, size, url)
        if not metadata:
            return out
        for project, filename, mkey, meta_sha, url in self.query(
            "SELECT project, filename, mkey, core_metadata_sha256, url "
            f"FROM ({_METADATA_CLAIMS}) WHERE NOT contested OR stored_claim"
        ):
            out[mkey] = (project, filename + ".metadata", meta_sha, None, url + ".metadata")
        return out

    def selected_projects_among(self, names: Sequence[str]) -> set[str]:
        return {
            r[0]
            for r in self.query(
                "SELECT name FROM selected_projects WHERE name IN (SELECT unnest($1::VARCHAR[]))",
                [list(names)],
            )
        }

    # ------------------------------------------------------------------ reading projects
    def loadable(self, names: Sequence[str]) -> set[str]:
        """Those of ``names`` that :meth:`load_stored` would find (``state`` ``ok``): for
        the others (all of them on a first sync) the fetch need not ask."""
        return {
            r[0]
            for r in self.query(
                "SELECT name FROM projects WHERE state = 'ok' "
                "AND name IN (SELECT unnest($1::VARCHAR[]))",
                [list(names)],
            )
        }

    def load_stored(self, name: str) -> StoredProject | None:
        """The stored state of ``name`` (state ``ok``), else ``None``. A long description
        (:mod:`.long_texts`) is not read back: a :class:`StoredText` names it, which a sync
        carries into the rows it writes for what did not change (:meth:`long_texts` reads
        it). A text a row names that is not stored whole is a :class:`TornText`."""
        cur = self.con.cursor()
        try:
            row = cur.execute(
                "SELECT serial, state, info, latest_version, etag, info_description FROM projects "
                "WHERE name = ?",
                [name],
            ).fetchone()
            if row is None or row[1] != "ok":
                return None
            rels = cur.execute(
                "SELECT version, info, upload_time, yanked, yanked_reason, file_count, "
                "info_description FROM releases WHERE project = ?",
                [name],
            ).fetchall()
            cols = ", ".join(DISTRIBUTION_COLUMNS)
            dist_rows = cur.execute(
                f"SELECT {cols}, description_digest FROM distribution_rows WHERE project = ?",
                [name],
            ).fetchall()
            named = {row[5], *(r[6] for r in rels), *(r[-1] for r in dist_rows)} - {None}
            whole = (
                {r[0] for r in cur.execute(whole_sql(), [sorted(named)]).fetchall()}
                if named
                else set()
            )
            if named - whole:
                raise TornText(f"{name}: long texts not stored whole: {sorted(named - whole)}")
        finally:
            cur.close()
        return _stored_project(name, row, rels, dist_rows)

    # ------------------------------------------------------------------ writing projects
    def write_projects(self, projects: Sequence[Project]) -> WriteResult:
        """Replace each project whose incoming serial is newer than the stored one, in one
        transaction. Older or equal serials are skipped (reported in the result), unless the
        stored project is ``missing`` or ``removed``: one that upstream lists again is stored."""
        result = WriteResult()
        if not projects:
            return result
        now = datetime.now(UTC)
        texts = LongTexts(self.long_text)
        with self._lock:  # held from the pieces to the rows: no drop can come between
            if long_texts_of(projects, texts):
                cur = self.con.cursor()
                try:
                    texts.store(cur)
                finally:
                    cur.close()
            return self._write_fresh(projects, texts, now, result)

    def _write_fresh(
        self, projects: Sequence[Project], texts: LongTexts, now: datetime, result: WriteResult
    ) -> WriteResult:
        """:meth:`write_projects`' transaction, once the long texts are stored."""
        with self.transaction() as con:
            fresh = _newer(con, projects, result)
            # a text the new rows name is held; any other (an old description, one of a
            # project not written) is dropped unless another project names it
            held = long_texts_of(fresh.values(), texts)
            if fresh:
                keep = list(fresh)
                old_texts = named_by(con, keep)
                for table in ("distribution_rows", "releases", "dependencies"):
                    con.execute(f"DELETE FROM {table} WHERE project IN (SELECT unnest($1))", [keep])
                kept = _keep_statuses(con, keep)
                con.execute("DELETE FROM projects WHERE name IN (SELECT unnest($1))", [keep])
                _insert_projects(con, list(fresh.values()), now, texts)
                drop_unreferenced(con, {*old_texts, *texts.texts} - held)
                mark_dirty(con, keep)
                _drop_gone_publishers(con, keep)
                _restore_statuses(con, kept)
                record_notes(con, [p.notes for p in fresh.values() if p.notes is not None], now)
                result.written.extend(keep)
            else:
                drop_unreferenced(con, set(texts.texts) - held)
        return result

    def advance_serial(self, name: str, serial: int) -> None:
        """A stored project whose content upstream confirms unchanged at ``serial``."""
        with self.transaction() as con:
            con.execute(
                "UPDATE projects SET serial = greatest(serial, $2), "
                "upstream_serial = greatest(upstream_serial, $2) WHERE name = $1 AND state = 'ok'",
                [name, serial],
            )
            mark_dirty(con, [name])

    def mark_missing(self, name: str, display_name: str, serial: int) -> bool:
        """A listed project that answers 404. One never stored is recorded as ``missing``
        (retried on every later run); a stored one keeps its rows and its older serial, so a
        transient 404 loses nothing and the next run fetches it again."""
        now = datetime.now(UTC)
        with self.transaction() as con:
            row = con.execute("SELECT state FROM projects WHERE name = ?", [name]).fetchone()
            if row is not None and row[0] == "ok":
                return False
            con.execute("DELETE FROM projects WHERE name = ?", [name])
            con.execute(
                "INSERT INTO projects (name, display_name, serial, upstream_serial, state, updated_at) "
                "VALUES (?, ?, 0, ?, 'missing', ?)",
                [name, display_name, serial, now],
            )
            mark_dirty(con, [name])
        return True

    def removed_projects(self) -> list[str]:
        """Projects whose removal upstream was confirmed (``state = 'removed'``)."""
        return [r[0] for r in self.query("SELECT name FROM projects WHERE state = 'removed'")]

    def mark_removed(self, global_serial: int) -> list[str]:
        """Projects stored that the upstream listing (``upstream_projects``) no longer has
        become 'removed'. Their rows are kept for history but leave every selection view."""
        now = datetime.now(UTC)
        with self.transaction() as con:
            gone = [
                r[0]
                for r in con.execute(
                    f"SELECT name FROM projects p WHERE state <> 'removed' {_LISTED} "
                    "AND NOT EXISTS (SELECT 1 FROM upstream_projects u WHERE u.name = p.name)"
                ).fetchall()
            ]
            if gone:
                con.execute(
                    "UPDATE projects SET state = 'removed', removed_serial = $1, updated_at = $2 "
                    "WHERE name IN (SELECT unnest($3::VARCHAR[]))",
                    [global_serial, now, gone],
                )
                mark_dirty(con, gone)
        return gone

    # ------------------------------------------------------------------ metadata sources
    def metadata_sources(self, projects: Sequence[str] | None = None) -> dict[str, int]:
        """Selected files (of ``projects``, else all) counted by where their metadata came
        from (``none``: nowhere)."""
        where, params = _among(projects)
        return {
            r[0]: int(r[1])
            for r in self.query(
                "SELECT coalesce(metadata_source, 'none'), count(*) FROM selected_distributions "
                f"WHERE TRUE {where} GROUP BY 1 ORDER BY 1",
                params,
            )
        }

    def files_without_metadata(self, projects: Sequence[str] | None = None) -> dict[str, list[str]]:
        """Selected files (of ``projects``, else all) with no metadata, by project."""
        where, params = _among(projects)
        out: dict[str, list[str]] = {}
        for project, filename in self.query(
            "SELECT project, filename FROM selected_distributions "
            f"WHERE coalesce(metadata_source, 'none') = 'none' {where} ORDER BY 1, 2",
            params,
        ):
            out.setdefault(project, []).append(filename)
        return out

    # ------------------------------------------------------------------ counts
    def counts(self, *, views: bool = True) -> dict[str, int]:
        """Row counts. Table counts are cheap; ``selected_distributions`` is a join over every
        file, so an incremental run (whose cost must not grow with the mirror) skips it."""
        out = {}
        for table in ("projects", "releases", "distributions", "dependencies", "selected_files"):
            out[table] = int(self.query(f"SELECT count(*) FROM {table}")[0][0])
        if views:
            out["selected_distributions"] = int(
                self.query("SELECT count(*) FROM selected_distributions")[0][0]
            )
        return out

    # ------------------------------------------------------------------ index pages
    def index_projects(self) -> list[IndexedProject]:
        """The selected projects the index lists (state ``ok``), by name, each with the
        serial and selection its pages were last written with (``None`` when never). A long
        description stays named by its digest (``info_description``): the pages of a project
        put it back when they are rendered (:meth:`long_texts`), so listing every project
        reads no long text."""
        rows = self.query(
            "SELECT p.name, p.display_name, p.serial, p.latest_version, p.info, sp.serial, "
            "sp.selection, p.status, p.status_reason, p.info_description "
            "FROM projects p SEMI JOIN selected_projects s ON s.name = p.name "
            "LEFT JOIN simple_pages sp ON sp.project = p.name WHERE p.state = 'ok' "
            "ORDER BY p.name"
        )
        return [IndexedProject(*r) for r in rows]

    def long_texts(self, digests: Iterable[str | None]) -> dict[str, str]:
        """The long texts ``digests`` name (``None`` aside), each whole (:func:`read_texts`)."""
        wanted = [d for d in digests if d is not None]
        if not wanted:
            return {}
        cur = self.con.cursor()
        try:
            return read_texts(cur, wanted)
        finally:
            cur.close()

    def index_files(
        self, projects: Sequence[str], *, lazy: bool
    ) -> list[tuple[str, str | None, dict[str, Any]]]:
        """``(project, upstream url, file)`` for the selected files of ``projects``, by project
        and filename; ``file`` maps :data:`INDEX_FILE_COLUMNS` to values. Without ``lazy``
        only the files in the blob store, and a core-metadata digest and a provenance key
        only when that object is stored too."""
        rows = self.query(index_files_sql(lazy=lazy), [list(projects)])
        return [(r[0], r[1], dict(zip(INDEX_FILE_COLUMNS, r[2:], strict=True))) for r in rows]

    def release_infos(self, projects: Sequence[str]) -> list[tuple[str, str, str | None]]:
        """``(project, version, info JSON)`` of every stored release of ``projects``."""
        rows = self.query(RELEASE_INFOS_SQL, [list(projects)])
        texts = self.long_texts(r[3] for r in rows)
        return [(p, v, whole_info_json(info, digest, texts)) for p, v, info, digest in rows]

    def written_pages(self) -> list[str]:
        """The projects whose index pages are written, by name."""
        return [r[0] for r in self.query("SELECT project FROM simple_pages ORDER BY 1")]

    def record_pages(
        self, gone: Sequence[str], written: Sequence[tuple[str, int]], selection: str
    ) -> None:
        """In one transaction: forget the pages of ``gone``; record those of ``written``
        (``(project, serial)``), written with ``selection``."""
        with self.transaction() as con:
            if gone:
                con.execute(
                    "DELETE FROM simple_pages WHERE project IN (SELECT unnest($1::VARCHAR[]))",
                    [list(gone)],
                )
            if written:
                con.executemany(
                    "INSERT OR REPLACE INTO simple_pages VALUES (?, ?, ?)",
                    [(name, serial, selection) for name, serial in written],
                )

    def selected_file_count(self) -> int:
        return int(self.query("SELECT count(*) FROM selected_files")[0][0])

    # ------------------------------------------------------------------ provenance
    def missing_provenance(self) -> list[tuple[str, str, str, str]]:
        """Selected files with a PEP 740 provenance URL whose provenance object is not
        recorded as stored: ``(project, release_version, filename, provenance_url)``."""
        key = provenance_key_sql("d.project", "d.release_version", "d.filename")
        return [
            (r[0], r[1], r[2], r[3])
            for r in self.query(
                "SELECT d.project, d.release_version, d.filename, d.provenance_url "
                "FROM selected_distributions d WHERE d.provenance_url IS NOT NULL "
                f"AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.key = {key}) ORDER BY 1, 3"
            )
        ]

    def referenced_provenance(
        self,
    ) -> dict[str, tuple[tuple[str, str, str, str], str | None, int | None]]:
        """Every provenance object the selection needs: ``key -> ((project,
        release_version, filename, provenance_url), sha256, size)``, the digest and size
        those recorded as stored (``None``: not recorded, so the next sync fetches it)."""
        key = provenance_key_sql("d.project", "d.release_version", "d.filename")
        out: dict[str, tuple[tuple[str, str, str, str], str | None, int | None]] = {}
        for k, project, version, filename, url, sha, size in self.query(
            f"SELECT {key}, d.project, d.release_version, d.filename, d.provenance_url, "
            "b.sha256, b.size FROM selected_distributions d "
            f"LEFT JOIN blobs b ON b.key = {key} WHERE d.provenance_url IS NOT NULL"
        ):
            out[k] = ((project, version, filename, url), sha, size)
        return out

    def record_provenance(
        self,
        stored: Sequence[tuple[str, str, str, str, int]],
        publishers: Sequence[tuple[str, str, int, str, str | None, str | None, str | None]],
    ) -> None:
        """Provenance objects now in the blob store (``(key, project, filename, sha256,
        size)``, as :meth:`record_blobs`) and the publishers they name (``(project,
        filename, bundle, kind, repository, workflow, environment)``), replacing those of
        the same files."""
        files = sorted({(r[1], r[2]) for r in stored})
        with self.transaction() as con:
            mark_dirty(con, (f[0] for f in files))
            if files:
                con.execute(
                    "DELETE FROM publishers WHERE (project, filename) IN (SELECT unnest($1), "
                    "unnest($2))",
                    [[f[0] for f in files], [f[1] for f in files]],
                )
            _insert(
                con, PUBLISHERS, (dict(zip(PUBLISHERS.names, p, strict=True)) for p in publishers)
            )
        self.record_blobs(stored)

    def resolve_listing_serials(self) -> int:
        """Listed projects whose serial is unknown (0, as an allowlist lists them) take the
        serial of their stored state, when it is ``ok``: with the changelog followed, a later
        change raises it again. Returns how many were resolved."""
        with self.transaction() as con:
            row = con.execute(
                "UPDATE upstream_projects u SET serial = p.serial FROM projects p "
                "WHERE p.name = u.name AND u.serial <= 0 AND p.state = 'ok' AND p.serial > 0"
            ).fetchone()
        return int(row[0]) if row else 0


def _stored_project(
    name: str,
    row: tuple[Any, ...],
    rels: list[tuple[Any, ...]],
    dist_rows: list[tuple[Any, ...]],
) -> StoredProject:
    """A :class:`StoredProject` from :meth:`MetadataStore.load_stored`'s rows, each long
    description a :class:`StoredText` (one per text)."""
    handles: dict[str, StoredText] = {}

    def info(text: str | None, digest: str | None) -> dict[str, Any] | None:
        parsed = whole_info(text, None, {})
        if parsed is not None and digest is not None:
            parsed["description"] = handles.setdefault(digest, StoredText(digest))
        return parsed

    releases = {
        r[0]: Release(
            name=name,
            version=r[0],
            info=info(r[1], r[6]),
            upload_time=r[2],
            yanked=bool(r[3]),
            yanked_reason=r[4],
            file_count=r[5] or 0,
        )
        for r in rels
    }
    dists = {}
    for r in dist_rows:
        fields = dict(zip(DISTRIBUTION_COLUMNS, r[:-1], strict=True))
        if r[-1] is not None:
            fields["description"] = handles.setdefault(r[-1], StoredText(r[-1]))
        d = Distribution(**fields)
        dists[d.filename] = d
    return StoredProject(
        name=name,
        serial=row[0],
        releases=releases,
        distributions=dists,
        info=info(row[2], row[5]),
        latest_version=row[3],
        etag=row[4],
    )


class IndexedProject(NamedTuple):
    """A project the index lists (:meth:`MetadataStore.index_projects`)."""

    name: str
    display_name: str
    serial: int
    latest_version: str | None
    info: str | None
    page_serial: int | None
    page_selection: str | None
    #: PEP 792, as last polled (``None``: never)
    status: str | None = None
    status_reason: str | None = None
    #: the digest of the long description ``info`` leaves out (``None``: ``info`` is whole)
    info_description: str | None = None

    def whole(self, texts: dict[str, str]) -> IndexedProject:
        """This project with its long description put back in ``info`` (from ``texts``)."""
        if self.info_description is None:
            return self
        info = whole_info_json(self.info, self.info_description, texts)
        return self._replace(info=info, info_description=None)


#: a file's provenance key when its provenance object is stored (else NULL)
_STORED_PROVENANCE = (
    "CASE WHEN EXISTS (SELECT 1 FROM blobs pv WHERE pv.key = "
    f"{provenance_key_sql('d.project', 'd.release_version', 'd.filename')}) THEN "
    f"{provenance_key_sql('d.project', 'd.release_version', 'd.filename')} END AS provenance_key"
)

#: in lazy mode, a file's provenance key when upstream has one (``serve --lazy`` fetches it)
_LAZY_PROVENANCE = (
    "CASE WHEN d.provenance_url IS NOT NULL THEN "
    f"{provenance_key_sql('d.project', 'd.release_version', 'd.filename')} END AS provenance_key"
)

#: the columns of a file as the index pages list it (:meth:`MetadataStore.index_files`)
INDEX_FILE_COLUMNS = (
    "filename",
    "key",
    "sha256",
    "size",
    "upload_time",
    "yanked",
    "yanked_reason",
    "file_requires_python",
    "core_metadata_sha256",
    "release_version",
    "packagetype",
    "python_version",
    "md5",
    "blake2b_256",
    "provenance_key",
)


def index_files_sql(*, lazy: bool) -> str:
    """The query of :meth:`MetadataStore.index_files` (``$1``: the projects), which a
    published snapshot answers too: ``(project, url, *INDEX_FILE_COLUMNS)``."""
    cols = ", ".join(
        "k.key"
        if c == "key"
        else (_LAZY_PROVENANCE if lazy else _STORED_PROVENANCE)
        if c == "provenance_key"
        else "CASE WHEN EXISTS (SELECT 1 FROM blobs m WHERE "
        f"m.key = {metadata_key_sql('k.key')} AND m.sha256 = d.core_metadata_sha256) "
        "THEN d.core_metadata_sha256 END AS core_metadata_sha256"
        if c == "core_metadata_sha256" and not lazy
        else f"d.{c}"
        for c in INDEX_FILE_COLUMNS
    )
    stored = "" if lazy else "AND EXISTS (SELECT 1 FROM blobs b WHERE b.key = k.key) "
    return (
        f"SELECT k.project, k.url, {cols} FROM selected_blob_keys k JOIN distributions d "
        "ON d.project = k.project AND d.filename = k.filename "
        f"WHERE k.project IN (SELECT unnest($1::VARCHAR[])) {stored}"
        "ORDER BY k.project, d.filename"
    )


#: the query of :meth:`MetadataStore.release_infos` (``$1``: the projects)
RELEASE_INFOS_SQL = (
    "SELECT project, version, info, info_description FROM releases "
    "WHERE project IN (SELECT unnest($1::VARCHAR[]))"
)
#: the same of a published snapshot, whose ``info`` is whole
SNAPSHOT_RELEASE_INFOS_SQL = (
    "SELECT project, version, info FROM releases WHERE project IN (SELECT unnest($1::VARCHAR[]))"
)
