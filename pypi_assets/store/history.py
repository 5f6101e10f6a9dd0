"""History keyed on serial, kept in the lake beside the tables it describes.

Each publication compares what the working database now holds for the projects that changed
with the intervals still open in the lake, and closes or opens intervals accordingly:

- ``file_history``: each file's lifetime, from the serial it appeared to the serial it left;
- ``yank_history``: each release's yank intervals, with the reason;
- ``status_history``: each project's PEP 792 status intervals (not journaled upstream, so
  they are keyed on the serial of the publication that first saw them);
- ``project_history``: each project's lifetimes; a name that comes back after a removal is a
  new generation;
- ``serial_times``: serial to time, for every publication (and the changelog's timestamps).

A file, a yank or a project appears at the project's own serial (the upstream event that made
it so, when that is known), and never later than the publication's serial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb

from .schema import Table, declare

__all__ = ["HISTORY_TABLES", "HISTORY_VIEWS", "record_history"]

FILE_HISTORY = declare(
    "file_history",
    """
    project VARCHAR            -- normalised
    version VARCHAR
    filename VARCHAR
    appeared_serial BIGINT     -- the serial at which the mirror first had it
    left_serial BIGINT         -- the serial at which it was gone (NULL: still there)
    """,
)
YANK_HISTORY = declare(
    "yank_history",
    """
    project VARCHAR
    version VARCHAR
    reason VARCHAR
    yanked_serial BIGINT
    unyanked_serial BIGINT     -- NULL: still yanked
    """,
)
STATUS_HISTORY = declare(
    "status_history",
    """
    project VARCHAR
    status VARCHAR             -- PEP 792: active | archived | quarantined | deprecated
    reason VARCHAR
    from_serial BIGINT
    to_serial BIGINT           -- NULL: still in this status
    """,
)
PROJECT_HISTORY = declare(
    "project_history",
    """
    project VARCHAR
    generation INTEGER         -- 1 for the first project of this name, 2 after a re-creation
    appeared_serial BIGINT
    removed_serial BIGINT      -- NULL: not removed
    """,
)
SERIAL_TIMES = declare(
    "serial_times",
    """
    serial BIGINT
    time TIMESTAMPTZ
    source VARCHAR             -- publish | changelog
    """,
)

HISTORY_TABLES: tuple[Table, ...] = (
    FILE_HISTORY,
    YANK_HISTORY,
    STATUS_HISTORY,
    PROJECT_HISTORY,
    SERIAL_TIMES,
)

#: The change feed: one row per event, oldest first (``serve``'s ``/changes`` pages it).
HISTORY_VIEWS: tuple[str, ...] = (
    """CREATE OR REPLACE VIEW changes AS
    WITH ev AS (
        SELECT appeared_serial AS serial, project, 'add_file' AS action, version, filename
            FROM file_history
        UNION ALL SELECT left_serial, project, 'remove_file', version, filename
            FROM file_history WHERE left_serial IS NOT NULL
        UNION ALL SELECT yanked_serial, project, 'yank', version, NULL FROM yank_history
        UNION ALL SELECT unyanked_serial, project, 'unyank', version, NULL
            FROM yank_history WHERE unyanked_serial IS NOT NULL
        UNION ALL SELECT from_serial, project, 'status_' || status, NULL, NULL FROM status_history
        UNION ALL SELECT appeared_serial, project, 'create', NULL, NULL FROM project_history
        UNION ALL SELECT removed_serial, project, 'remove', NULL, NULL
            FROM project_history WHERE removed_serial IS NOT NULL
    )
    SELECT ev.serial,
           (SELECT min(t.time) FROM serial_times t WHERE t.serial >= ev.serial) AS time,
           ev.project, ev.action, ev.version, ev.filename
    FROM ev""",
)

#: The projects a step covers: a list, or ``None`` for every project (a first publication,
#: where a list of every name would only slow each statement down).
Names = list[str] | None


def _among(column: str, names: Names) -> str:
    """SQL: ``column`` is one of ``names`` (``$1``), or ``TRUE`` for every project."""
    return "TRUE" if names is None else f"{column} IN (SELECT unnest($1::VARCHAR[]))"


def _args(names: Names) -> list[object]:
    return [] if names is None else [names]


@dataclass(frozen=True)
class At:
    """The publication's serial, and the lowest serial its events may take: above the
    previous publication's, so a follower of the change feed that has read up to that
    serial misses nothing."""

    serial: int
    floor: int

    def clamp(self, sql: str) -> str:
        return f"least({self.serial}, greatest({self.floor}, {sql}))"


def _event_serial(p: str, at: At) -> str:
    """SQL: the serial of a change seen on project row ``p``: its own serial when known,
    within the publication's bounds (:class:`At`)."""
    return at.clamp(f"coalesce(nullif({p}.serial, 0), {at.serial})")


def _files(cur: duckdb.DuckDBPyConnection, w: str, lake: str, names: Names, s: At) -> None:
    present = (
        f"SELECT d.project, d.release_version, d.filename, {_event_serial('p', s)} AS ev "
        f"FROM {w}.main.distributions d JOIN {w}.main.projects p "
        f"ON p.name = d.project AND p.state = 'ok' WHERE {_among('d.project', names)}"
    )
    open_ = (
        f"SELECT * FROM {lake}.main.file_history WHERE left_serial IS NULL "
        f"AND {_among('project', names)}"
    )
    left = s.clamp("coalesce(p.removed_serial, " + _event_serial("p", s) + ")")
    cur.execute(
        f"UPDATE {lake}.main.file_history h SET left_serial = g.ev FROM ("
        f"SELECT o.project, o.filename, {left} AS ev "
        f"FROM ({open_}) o LEFT JOIN {w}.main.projects p ON p.name = o.project "
        f"WHERE NOT EXISTS (SELECT 1 FROM ({present}) n WHERE n.project = o.project "
        "AND n.filename = o.filename)) g "
        "WHERE h.project = g.project AND h.filename = g.filename AND h.left_serial IS NULL",
        _args(names),
    )
    cur.execute(
        f"INSERT INTO {lake}.main.file_history SELECT n.project, n.release_version, n.filename, "
        f"n.ev, NULL FROM ({present}) n WHERE NOT EXISTS (SELECT 1 FROM ({open_}) o "
        # in project order, as the published tables: a later publication's look at a few
        # projects' open intervals skips the other data files by their statistics
        "WHERE o.project = n.project AND o.filename = n.filename) ORDER BY n.project",
        _args(names),
    )


def _yanks(cur: duckdb.DuckDBPyConnection, w: str, lake: str, names: Names, s: At) -> None:
    yanked = (
        f"SELECT r.project, r.version, r.yanked_reason, {_event_serial('p', s)} AS ev "
        f"FROM {w}.main.releases r JOIN {w}.main.projects p ON p.name = r.project "
        f"AND p.state = 'ok' WHERE r.yanked AND {_among('r.project', names)}"
    )
    open_ = (
        f"SELECT * FROM {lake}.main.yank_history WHERE unyanked_serial IS NULL "
        f"AND {_among('project', names)}"
    )
    cur.execute(
        f"UPDATE {lake}.main.yank_history h SET unyanked_serial = g.ev FROM ("
        f"SELECT o.project, o.version, {_event_serial('p', s)} AS ev FROM ({open_}) o "
        f"LEFT JOIN {w}.main.projects p ON p.name = o.project "
        f"WHERE NOT EXISTS (SELECT 1 FROM ({yanked}) y WHERE y.project = o.project "
        "AND y.version = o.version)) g "
        "WHERE h.project = g.project AND h.version = g.version AND h.unyanked_serial IS NULL",
        _args(names),
    )
    cur.execute(
        f"INSERT INTO {lake}.main.yank_history SELECT y.project, y.version, y.yanked_reason, "
        f"y.ev, NULL FROM ({yanked}) y WHERE NOT EXISTS (SELECT 1 FROM ({open_}) o "
        "WHERE o.project = y.project AND o.version = y.version) ORDER BY y.project",
        _args(names),
    )


def _statuses(cur: duckdb.DuckDBPyConnection, w: str, lake: str, names: Names, s: At) -> None:
    current = (
        f"SELECT name AS project, status, status_reason AS reason FROM {w}.main.projects "
        f"WHERE state = 'ok' AND status IS NOT NULL AND {_among('name', names)}"
    )
    same = (
        "c.project = o.project AND c.status = o.status AND c.reason IS NOT DISTINCT FROM o.reason"
    )
    open_ = (
        f"SELECT * FROM {lake}.main.status_history WHERE to_serial IS NULL "
        f"AND {_among('project', names)}"
    )
    cur.execute(
        f"UPDATE {lake}.main.status_history o SET to_serial = {s.serial} "
        f"WHERE o.to_serial IS NULL AND {_among('o.project', names)} "
        f"AND NOT EXISTS (SELECT 1 FROM ({current}) c WHERE {same})",
        _args(names),
    )
    cur.execute(
        f"INSERT INTO {lake}.main.status_history SELECT c.project, c.status, c.reason, {s.serial}, NULL "
        f"FROM ({current}) c WHERE NOT EXISTS (SELECT 1 FROM ({open_}) o WHERE {same})",
        _args(names),
    )


def _projects(cur: duckdb.DuckDBPyConnection, w: str, lake: str, names: Names, s: At) -> None:
    ph = f"{lake}.main.project_history"
    cur.execute(
        f"UPDATE {ph} h SET removed_serial = {s.clamp(f'coalesce(p.removed_serial, {s.serial})')} "
        f"FROM {w}.main.projects p WHERE p.name = h.project AND p.state = 'removed' "
        f"AND h.removed_serial IS NULL AND {_among('h.project', names)}",
        _args(names),
    )
    cur.execute(
        f"INSERT INTO {ph} SELECT p.name, coalesce(g.generation, 0) + 1, "
        f"{_event_serial('p', s)}, NULL FROM {w}.main.projects p "
        f"LEFT JOIN (SELECT project, max(generation) AS generation FROM {ph} GROUP BY project) g "
        f"ON g.project = p.name WHERE p.state = 'ok' AND {_among('p.name', names)} "
        f"AND NOT EXISTS (SELECT 1 FROM {ph} o WHERE o.project = p.name "
        "AND o.removed_serial IS NULL) ORDER BY p.name",
        _args(names),
    )


def record_history(
    cur: duckdb.DuckDBPyConnection,
    work: str,
    lake: str,
    changed: Mapping[str, Sequence[str]] | None,
    serial: int,
    previous: int | None = None,
) -> None:
    """Bring the history tables of the attached lake ``lake`` forward for the projects whose
    rows changed (``changed``: table name -> projects; ``None``: every project, as for a
    first publication), in the caller's transaction. ``previous``: the serial of the lake's
    previous snapshot (``None``: none)."""
    at = At(serial, min(serial, previous + 1) if previous is not None else 0)
    if changed is None:
        for step in (_files, _yanks, _statuses, _projects):
            step(cur, work, lake, None, at)
    else:
        projects = sorted(set(changed.get("projects", ())))
        files = sorted({*changed.get("distributions", ()), *projects})
        releases = sorted({*changed.get("releases", ()), *projects})
        if files:
            _files(cur, work, lake, files, at)
        if releases:
            _yanks(cur, work, lake, releases, at)
        if projects:
            _statuses(cur, work, lake, projects, at)
            _projects(cur, work, lake, projects, at)
    cur.execute(
        f"INSERT INTO {lake}.main.serial_times SELECT {int(serial)}, now(), 'publish' "
        f"WHERE NOT EXISTS (SELECT 1 FROM {lake}.main.serial_times WHERE serial = {int(serial)})"
    )
