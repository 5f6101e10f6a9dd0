"""The analysts' store: every sync a DuckLake snapshot, tagged with the upstream serial.

Publishing costs what changed, not the size of the mirror. The working database names the
projects whose rows changed since the last publication (``lake_dirty``); for each published
table, only those of them whose rows really differ are deleted and inserted again, and the
history tables (:mod:`.history`) are brought forward from the same difference. One DuckLake
transaction commits all of it, with the serial and the time in the snapshot's commit info.

A crash before the commit leaves the previous snapshot current and the dirty set in place, so
the next publication does the work again; a crash after it and before the dirty set is
cleared only makes that next publication find nothing to change.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from .derived import VIEWS as DERIVED_VIEWS
from .derived import WHEEL_TAGS, refresh_wheel_tags
from .history import HISTORY_TABLES, HISTORY_VIEWS, record_history
from .lake_engine import LakeLocation, attach_lake
from .long_texts import REFERENCES, TornText, whole_sql
from .schema import (
    BLOBS,
    CLOSURE_PROJECTS,
    DEPENDENCIES,
    DISTRIBUTION_ROWS,
    DISTRIBUTIONS,
    LONG_TEXTS,
    META,
    PROJECT_ROLES,
    PROJECTS,
    PUBLISHERS,
    RELEASES,
    SELECTED_FILES,
    SELECTED_PROJECTS,
    VIEWS,
    VULNERABILITIES,
    Table,
    info_sql,
    long_text_sql,
)

__all__ = [
    "PUBLISHED",
    "LakeCommit",
    "lake_serial",
    "lake_snapshots",
    "publish_lake",
    "version_at",
]

#: The working database's tables published to the lake, with the column naming the project
#: each row belongs to. ``upstream_projects``, ``simple_pages``, ``upstream_etags`` and
#: ``lake_dirty`` are the pipeline's own bookkeeping and stay behind.
PUBLISHED: tuple[tuple[Table, str], ...] = (
    (PROJECTS, "name"),
    (RELEASES, "project"),
    # the working database's distribution_rows: a long description stays apart, in the
    # lake's long_texts (:func:`_publish_long_texts`), and the readers' views put it back
    (Table(DISTRIBUTIONS.name, DISTRIBUTION_ROWS.columns), "project"),
    (DEPENDENCIES, "project"),
    (SELECTED_PROJECTS, "name"),
    (SELECTED_FILES, "project"),
    (BLOBS, "project"),
    (CLOSURE_PROJECTS, "name"),
    (PUBLISHERS, "project"),
    (VULNERABILITIES, "project"),
    (PROJECT_ROLES, "project"),
    (WHEEL_TAGS, "project"),
)

#: Who commits: DuckLake records it with each snapshot.
AUTHOR = "pypi-assets"

_W = "__lake"  # the alias the writer attaches the lake under


@dataclass
class LakeCommit:
    """One publication: the snapshot committed, its serial, and the rows it changed."""

    version: int
    serial: int
    location: LakeLocation
    full: bool
    projects: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    #: the dirty projects this publication covered (``None``: it compared everything)
    dirty: list[str] | None = None

    def __str__(self) -> str:
        return f"{self.location.catalog} @ snapshot {self.version} (serial {self.serial})"


def _ddl(table: Table, schema: str) -> str:
    cols = ", ".join(f"{c.name} {c.type}" for c in table.columns)
    return f"CREATE TABLE IF NOT EXISTS {schema}.{table.name} ({cols})"


def _ensure_tables(cur: duckdb.DuckDBPyConnection) -> set[str]:
    """Create the lake's tables, and add the columns a newer schema declares. Returns the
    published tables created (each is then published whole)."""
    present: dict[str, set[str]] = {}
    for t, c in cur.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = ?", [_W]
    ).fetchall():
        present.setdefault(t, set()).add(c)
    created: set[str] = set()
    for table in (*(t for t, _ in PUBLISHED), META, LONG_TEXTS, *HISTORY_TABLES):
        if table.name not in present:
            cur.execute(_ddl(table, f"{_W}.main"))
            if table in (t for t, _ in PUBLISHED):
                created.add(table.name)
            continue
        for c in table.columns:
            if c.name not in present[table.name]:
                cur.execute(f"ALTER TABLE {_W}.main.{table.name} ADD COLUMN {c.name} {c.type}")
    return created


def _source(table: Table) -> str:
    """The working database's table ``table`` is published from."""
    return DISTRIBUTION_ROWS.name if table.name == DISTRIBUTIONS.name else table.name


def _difference(table: Table, key: str, work: str, scoped: bool) -> str:
    """SQL: ``(table name, project)`` of the projects whose rows in ``table`` differ between
    the working database and the lake, as multisets (``$1``: the projects, when ``scoped``)."""
    cols = ", ".join(table.names)
    where = f"WHERE {key} IN (SELECT unnest($1::VARCHAR[]))" if scoped else ""
    mine = f"SELECT {cols} FROM {work}.main.{_source(table)} {where}"
    theirs = f"SELECT {cols} FROM {_W}.main.{table.name} {where}"
    return (
        f"SELECT DISTINCT '{table.name}' AS t, {key} AS k FROM (({mine} EXCEPT ALL {theirs}) "
        f"UNION ALL ({theirs} EXCEPT ALL {mine}))"
    )


def _changed_keys(
    cur: duckdb.DuckDBPyConnection,
    work: str,
    dirty: list[str] | None,
    skip: Collection[str] = (),
) -> dict[str, list[str]]:
    """For every published table (but those of ``skip``), the projects (of ``dirty``;
    ``None``: all) whose rows differ between the working database and the lake: one
    statement for all of them."""
    out: dict[str, list[str]] = {t.name: [] for t, _ in PUBLISHED}
    parts = [
        _difference(t, key, work, dirty is not None) for t, key in PUBLISHED if t.name not in skip
    ]
    if (dirty is not None and not dirty) or not parts:
        return out
    for name, k in cur.execute(
        " UNION ALL ".join(parts), [] if dirty is None else [dirty]
    ).fetchall():
        out[name].append(k)
    return {name: sorted(keys) for name, keys in out.items()}


def _all_keys(cur: duckdb.DuckDBPyConnection, work: str, table: Table, key: str) -> list[str]:
    rows = cur.execute(f"SELECT DISTINCT {key} FROM {work}.main.{_source(table)} ORDER BY 1")
    return [r[0] for r in rows.fetchall()]


def _replace_rows(
    cur: duckdb.DuckDBPyConnection, work: str, table: Table, key: str, names: list[str]
) -> int:
    cols = ", ".join(table.names)
    among = f"WHERE {key} IN (SELECT unnest($1::VARCHAR[]))"
    cur.execute(f"DELETE FROM {_W}.main.{table.name} {among}", [names])
    # in project order: each data file then covers a narrow range of projects, and a later
    # publication that compares a few projects skips the others' files by their statistics
    row = cur.execute(
        f"INSERT INTO {_W}.main.{table.name} ({cols}) SELECT {cols} "
        f"FROM {work}.main.{_source(table)} {among} ORDER BY {key}",
        [names],
    ).fetchone()
    return int(row[0]) if row else 0


def _copy_rows(cur: duckdb.DuckDBPyConnection, work: str, table: Table, key: str) -> int:
    """Every row of ``table`` into the lake's (empty) table, in project order."""
    cols = ", ".join(table.names)
    cur.execute(f"DELETE FROM {_W}.main.{table.name}")
    row = cur.execute(
        f"INSERT INTO {_W}.main.{table.name} ({cols}) SELECT {cols} "
        f"FROM {work}.main.{_source(table)} ORDER BY {key}"
    ).fetchone()
    return int(row[0]) if row else 0


#: The lake's columns naming a long text: ``(table, column, project column)``, as the
#: working database's (:data:`.long_texts.REFERENCES`) under the lake's table names.
_LAKE_REFERENCES = tuple(
    (DISTRIBUTIONS.name if table == DISTRIBUTION_ROWS.name else table, col, key)
    for table, col, key in REFERENCES
)


def _lake_named(
    cur: duckdb.DuckDBPyConnection, projects: list[str] | None, digests: list[str] | None = None
) -> set[str]:
    """The long texts the lake's rows name: those of ``projects`` (``None``: of all), or
    (with ``digests``) which of those any row names."""
    if digests is not None:
        among, params = "IN (SELECT unnest($1::VARCHAR[]))", [digests]
    elif projects is not None:
        among, params = "IS NOT NULL AND {key} IN (SELECT unnest($1::VARCHAR[]))", [projects]
    else:
        among, params = "IS NOT NULL", []
    sql = " UNION ".join(
        f"SELECT {col} FROM {_W}.main.{table} WHERE {col} {among.format(key=key)}"
        for table, col, key in _LAKE_REFERENCES
    )
    return {r[0] for r in cur.execute(sql, params).fetchall()}


#: Pieces of a long text per statement copying it to the lake (2 MB of 64 KiB pieces).
_PIECES_PER_FILE = 32


def _publish_long_texts(
    cur: duckdb.DuckDBPyConnection, work: str, projects: list[str] | None, before: set[str]
) -> int:
    """Bring the lake's ``long_texts`` in line with its rows, once those of ``projects``
    (``None``: all) are published: the texts they name now and the lake lacks are copied
    (piece by piece: no big string is built), and those they named ``before`` that no
    row names any more are deleted. Returns the pieces copied."""
    named = _lake_named(cur, projects)
    have = {
        r[0] for r in cur.execute(whole_sql(f"{_W}.main.long_texts"), [sorted(named)]).fetchall()
    }
    ready = {
        r[0]
        for r in cur.execute(
            whole_sql(f"{work}.main.long_texts"), [sorted(named - have)]
        ).fetchall()
    }
    if named - have - ready:  # never publish a text short: the check names its projects
        raise TornText(f"long texts not stored whole: {sorted(named - have - ready)[:5]}")
    copied = 0
    for digest in sorted(named - have):
        # a torn copy in the lake is replaced; a few pieces per statement, so that a data
        # file is written (and its buffers let go) every few MB, not once the text is held
        cur.execute(f"DELETE FROM {_W}.main.long_texts WHERE digest = ?", [digest])
        row = cur.execute(
            f"SELECT coalesce(max(part), -1) FROM {work}.main.long_texts WHERE digest = ?",
            [digest],
        ).fetchone()
        last = int(row[0]) if row else -1
        for first in range(0, last + 1, _PIECES_PER_FILE):
            done = cur.execute(
                f"INSERT INTO {_W}.main.long_texts SELECT digest, part, text, pieces "
                f"FROM {work}.main.long_texts WHERE digest = $1 AND part BETWEEN $2 AND $3 "
                "ORDER BY part",
                [digest, first, first + _PIECES_PER_FILE - 1],
            ).fetchone()
            copied += int(done[0]) if done else 0
    gone = sorted(before - named)
    if gone:
        gone = sorted(set(gone) - _lake_named(cur, None, gone))
    if gone:
        cur.execute(
            f"DELETE FROM {_W}.main.long_texts WHERE digest IN (SELECT unnest($1::VARCHAR[]))",
            [gone],
        )
    return copied


def _project_count(cur: duckdb.DuckDBPyConnection, work: str) -> int:
    row = cur.execute(f"SELECT count(*) FROM {work}.main.projects").fetchone()
    return int(row[0]) if row else 0


def _replace_meta(cur: duckdb.DuckDBPyConnection, work: str) -> None:
    cur.execute(f"DELETE FROM {_W}.main.meta")
    cur.execute(f"INSERT INTO {_W}.main.meta SELECT key, value FROM {work}.main.meta")


def _commit_info(serial: int, full: bool, projects: int) -> str:
    return json.dumps(
        {
            "serial": serial,
            "time": datetime.now(UTC).isoformat(),
            "full": full,
            "projects": projects,
        }
    )


def _dirty(cur: duckdb.DuckDBPyConnection, work: str) -> tuple[list[str] | None, bool]:
    """The projects to compare (``None``: all) and whether a full comparison was asked for."""
    full = cur.execute(f"SELECT count(*) FROM {work}.main.meta WHERE key = 'lake_full'").fetchone()
    if full is not None and full[0]:
        return None, True
    names = [r[0] for r in cur.execute(f"SELECT name FROM {work}.main.lake_dirty").fetchall()]
    return names, False


def publish_lake(
    con: duckdb.DuckDBPyConnection,
    location: LakeLocation,
    serial: int,
    *,
    check: bool = False,
) -> LakeCommit:
    """Commit the working database's changes since the last publication as one snapshot of
    the lake, tagged with ``serial``. ``check``: compare every row afterwards (the cost of
    the mirror, not of the change) and fail if the lake and the working database differ."""
    cur = con.cursor()
    try:
        name = cur.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        # the file's stem, which the operator chose ("mirror-1"): an identifier, quoted
        work = '"' + str(name).replace('"', '""') + '"'
        attach_lake(cur, location, _W)
        try:
            _derive(cur, work)
            commit = _publish(cur, work, location, serial)
            if check:
                _check(cur, work)
        finally:
            cur.execute(f"DETACH {_W}")
        _clear_dirty(cur, commit)
    finally:
        cur.close()
    return commit


def _derive(cur: duckdb.DuckDBPyConnection, work: str) -> None:
    """The derived table (``wheel_tags``) of the projects about to be published (of all of
    them, for a first or a full publication), in the working database."""
    dirty, full = _dirty(cur, work)
    scope = None if full or _has_no_snapshot(cur) else dirty
    cur.execute("BEGIN TRANSACTION")
    try:
        refresh_wheel_tags(cur, scope)
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise


def _publish(
    cur: duckdb.DuckDBPyConnection, work: str, location: LakeLocation, serial: int
) -> LakeCommit:
    cur.execute("BEGIN TRANSACTION")
    try:
        created = _ensure_tables(cur)
        dirty, full = _dirty(cur, work)
        if _has_no_snapshot(cur):
            # nothing to compare with (and comparing with tables created in this very
            # transaction is what stalled DuckDB at a million rows): every row goes in,
            # and every project's history starts
            commit = LakeCommit(0, serial, location, True, projects=_project_count(cur, work))
            record_history(cur, work, _W, None, serial, None)
            for table, key in PUBLISHED:
                commit.rows[table.name] = _copy_rows(cur, work, table, key)
            if copied := _publish_long_texts(cur, work, None, set()):
                commit.rows[LONG_TEXTS.name] = copied
        else:
            # a table a newer schema added is published whole; the others are compared
            changed = _changed_keys(cur, work, None if full else dirty, skip=created)
            for table, key in PUBLISHED:
                if table.name in created:
                    changed[table.name] = _all_keys(cur, work, table, key)
            touched = sorted({n for names in changed.values() for n in names})
            previous = lake_snapshots(cur, _W)
            record_history(cur, work, _W, changed, serial, previous[-1][2] if previous else None)
            commit = LakeCommit(0, serial, location, full, projects=len(touched))
            before = _lake_named(cur, touched)
            for table, key in PUBLISHED:
                if table.name in created:  # empty: copied whole, no list of keys to match
                    commit.rows[table.name] = _copy_rows(cur, work, table, key)
                elif changed[table.name]:
                    names = changed[table.name]
                    commit.rows[table.name] = _replace_rows(cur, work, table, key, names)
            if copied := _publish_long_texts(cur, work, touched, before):
                commit.rows[LONG_TEXTS.name] = copied
        _replace_meta(cur, work)
        cur.execute(
            f"CALL {_W}.set_commit_message(?, ?, extra_info => ?)",
            [AUTHOR, f"serial {serial}", _commit_info(serial, full, commit.projects)],
        )
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    commit.version = _current_version(cur)
    commit.dirty = dirty
    return commit


def _has_no_snapshot(cur: duckdb.DuckDBPyConnection) -> bool:
    row = cur.execute(
        f"SELECT count(*) FROM {_W}.snapshots() WHERE author = ?", [AUTHOR]
    ).fetchone()
    return row is None or row[0] == 0


def _current_version(cur: duckdb.DuckDBPyConnection) -> int:
    row = cur.execute(f"SELECT max(snapshot_id) FROM {_W}.snapshots()").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _clear_dirty(cur: duckdb.DuckDBPyConnection, commit: LakeCommit) -> None:
    """Forget the projects just published (those marked dirty since stay)."""
    dirty = commit.dirty
    cur.execute("BEGIN TRANSACTION")
    if commit.full:
        cur.execute("DELETE FROM meta WHERE key = 'lake_full'")
        cur.execute("DELETE FROM lake_dirty")
    elif dirty:
        cur.execute("DELETE FROM lake_dirty WHERE name IN (SELECT unnest($1::VARCHAR[]))", [dirty])
    cur.execute("COMMIT")


class LakeMismatch(RuntimeError):
    """The lake does not hold what the working database holds (a bug in change tracking)."""


def _check(cur: duckdb.DuckDBPyConnection, work: str) -> None:
    differ = {name: keys for name, keys in _changed_keys(cur, work, None).items() if keys}
    named = sorted(_lake_named(cur, None))
    pieces = "SELECT digest, part, md5(text) FROM {}.main.long_texts"
    mine = f"{pieces.format(work)} WHERE digest IN (SELECT unnest($1::VARCHAR[]))"
    theirs = pieces.format(_W)
    texts = cur.execute(
        f"SELECT DISTINCT digest FROM (({mine} EXCEPT ALL {theirs}) "
        f"UNION ALL ({theirs} EXCEPT ALL {mine}))",
        [named],
    ).fetchall()
    if texts:
        differ[LONG_TEXTS.name] = sorted(r[0] for r in texts)
    if differ:
        raise LakeMismatch(f"the lake differs from the working database: {differ}")


# ---------------------------------------------------------------------- reading the catalog


def lake_snapshots(cur: duckdb.DuckDBPyConnection, alias: str) -> list[tuple[int, datetime, int]]:
    """``(version, time, serial)`` of every snapshot pypi-assets committed, oldest first."""
    rows = cur.execute(
        f"SELECT snapshot_id, snapshot_time, "
        f"TRY_CAST(json_extract_string(commit_extra_info, '$.serial') AS BIGINT) "
        f"FROM {alias}.snapshots() WHERE author = ? ORDER BY snapshot_id",
        [AUTHOR],
    ).fetchall()
    return [(int(v), t, int(s)) for v, t, s in rows if s is not None]


def version_at(snapshots: Sequence[tuple[int, datetime, int]], serial: int) -> int | None:
    """The newest snapshot whose serial is at most ``serial``."""
    best = None
    for version, _time, s in snapshots:
        if s <= serial:
            best = version
    return best


def lake_serial(location: LakeLocation) -> int | None:
    """The serial of the lake's newest snapshot, if it exists and opens (else ``None``)."""
    if not location.exists():
        return None
    con = duckdb.connect()
    try:
        attach_lake(con, location, "lake", read_only=True)
        snaps = lake_snapshots(con, "lake")
    except (duckdb.Error, FileNotFoundError):
        return None
    finally:
        con.close()
    return snaps[-1][2] if snaps else None


#: the views every reader defines over the lake's tables (the working database's own, the
#: derived ones, and the history's)
READER_VIEWS: tuple[str, ...] = (*VIEWS, *DERIVED_VIEWS.values(), *HISTORY_VIEWS)


def lake_tables() -> tuple[str, ...]:
    """The lake's tables, each of which a reader names (:func:`reader_views`)."""
    return (*(t.name for t, _ in PUBLISHED), META.name, *(t.name for t in HISTORY_TABLES))


def reader_views(con: duckdb.DuckDBPyConnection, alias: str, version: int | None) -> None:
    """Name each table of the attached lake ``alias`` in ``con``'s own catalog, as of snapshot
    ``version`` (``None``: whichever is newest when a query starts), then define the
    analysts' views over them: queries read as they read the working database. A long
    description the lake keeps apart is put back (and the digest columns left out); a
    snapshot published before long texts were kept apart has none to put back."""
    at = "" if version is None else f" AT (VERSION => {int(version)})"
    texts = f"(SELECT * FROM {alias}.main.{LONG_TEXTS.name}{at})"
    for name in lake_tables():
        source = f"{alias}.main.{name}{at}"
        cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        select = "*"
        if name == DISTRIBUTIONS.name and "description_digest" in cols:
            text = long_text_sql("t.description", "t.description_digest", texts)
            select = f"* EXCLUDE (description_digest) REPLACE ({text} AS description)"
        elif name in (PROJECTS.name, RELEASES.name) and "info_description" in cols:
            select = f"* EXCLUDE (info_description) REPLACE ({info_sql('t', texts)} AS info)"
        if select != "*":
            source = f"(SELECT * FROM {source}) t"
        con.execute(f"CREATE OR REPLACE VIEW main.{name} AS SELECT {select} FROM {source}")
    for sql in READER_VIEWS:
        con.execute(sql)


def resolve_location(db_path: str | Path, location: LakeLocation | None) -> LakeLocation:
    return location if location is not None else LakeLocation.beside(db_path)
