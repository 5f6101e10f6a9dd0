"""What upstream says of a project beside its files, polled on a cadence (sync/status.py):
PEP 792's status (``projects.status``, ``status_reason``, ``status_serial``,
``status_checked_at``), the JSON API's ownership (``projects.organization``,
``project_roles``) and per-release vulnerabilities (``vulnerabilities``), with the ETag of
each page polled (``upstream_etags``) for the next poll's ``If-None-Match``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ..pypi.records import Ownership, ProjectNotes, Vulnerability
from ..pypi.warehouse import project_json_path
from .duckdb_store import MetadataStore, mark_dirty, marking_changes, record_notes
from .schema import VULNERABILITIES


class Queryable(Protocol):
    """The working database (:class:`MetadataStore`) or a published snapshot: both answer
    the index's queries."""

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]: ...


__all__ = [
    "PollTarget",
    "Queryable",
    "index_ownership",
    "index_vulnerabilities",
    "poll_etags",
    "poll_targets",
    "project_statuses",
    "record_polls",
    "reselect_quarantined",
    "restore_quarantined",
    "stored_among",
]

#: ``project_json_path`` as SQL over ``p.display_name``: the row of a project's JSON in
#: ``upstream_etags`` (the one definition of that path, the fetch's and the poll's)
_PROJECT_JSON_PATH = "'" + project_json_path("' || p.display_name || '") + "'"


@dataclass(frozen=True)
class PollTarget:
    """A selected, stored project to poll: its name, the releases whose JSON to read,
    whether its simple page (its status) is due too, and whether its project JSON stands in
    for its releases' (a project whose releases' JSON the mirror does not hold)."""

    name: str
    versions: list[str]
    page: bool = True
    #: the name the JSON API is asked by (Warehouse redirects any other spelling)
    display: str = ""
    #: the project JSON is due: its ownership and the latest release's vulnerabilities
    project_json: bool = False


def poll_targets(
    store: MetadataStore, checked_before: datetime | None, *, new: bool = True
) -> list[PollTarget]:
    """The selected stored projects to poll: every one of those never polled, quarantined
    (each run: its clearing is journaled, and the run that refetches it must show it again)
    or last confirmed before ``checked_before`` (``None``: all projects).

    A project whose releases' JSON the mirror holds (read at ``--depth full``) is polled
    release by release; of the others of those, the releases with files never polled (new
    ones whose JSON the fetch did not read), without the page. A project stored at
    ``--depth project`` (no release JSON held) is polled by its page and its project JSON,
    the one page that depth reads: the project JSON only when it was last read before
    ``checked_before`` (a project the fetch just stored costs its page alone).

    Not ``new`` (``status_poll_interval = off``): neither the projects never polled nor the
    releases never polled are due (the quarantined ones still are)."""
    due = (
        "TRUE"
        if checked_before is None
        else (f"coalesce(p.status_checked_at < $1, {new}) OR p.status = 'quarantined'")
    )
    json_due = "TRUE" if checked_before is None else "coalesce(any_value(j.checked_at) < $1, TRUE)"
    rows = store.query(
        f"SELECT p.name, any_value(p.display_name), bool_or({due}), "
        "list(r.version ORDER BY r.version) FILTER (WHERE r.version IS NOT NULL), "
        "list(r.version ORDER BY r.version) FILTER (WHERE r.version IS NOT NULL "
        "AND r.file_count > 0 AND NOT EXISTS (SELECT 1 FROM upstream_etags e "
        "WHERE e.project = p.name AND e.version = r.version)), "
        f"coalesce(bool_or(r.info IS NOT NULL), FALSE), {json_due} "
        "FROM projects p SEMI JOIN selected_projects s ON s.name = p.name "
        "LEFT JOIN releases r ON r.project = p.name "
        f"LEFT JOIN upstream_etags j ON j.path = {_PROJECT_JSON_PATH} "
        "WHERE p.state = 'ok' GROUP BY p.name ORDER BY p.name",
        [] if checked_before is None else [checked_before],
    )
    targets = []
    for name, display, is_due, versions, unpolled, holds_json, json_stale in rows:
        unpolled = unpolled if new else []
        if holds_json and (is_due or unpolled):
            targets.append(
                PollTarget(
                    name, list(versions or []) if is_due else unpolled, is_due, display or name
                )
            )
        elif not holds_json and is_due:
            targets.append(PollTarget(name, [], True, display or name, json_stale))
    return targets


def poll_etags(store: MetadataStore, projects: Sequence[str]) -> dict[str, str]:
    """path -> ETag of the pages of ``projects`` polled before."""
    return dict(
        store.query(
            "SELECT path, etag FROM upstream_etags WHERE project IN (SELECT unnest($1::VARCHAR[]))",
            [list(projects)],
        )
    )


def record_polls(store: MetadataStore, polls: Sequence[ProjectNotes]) -> None:
    """Store a batch of polls in one transaction; the index pages of the projects whose
    status, ownership or vulnerabilities changed are marked stale."""
    now = datetime.now(UTC)
    with store.transaction() as con:
        record_notes(con, polls, now)
        for table in ("vulnerabilities", "upstream_etags"):  # of releases no longer stored
            if table == "vulnerabilities":
                con.execute(
                    "INSERT OR IGNORE INTO lake_dirty SELECT DISTINCT project FROM vulnerabilities v "
                    "WHERE v.version IS NOT NULL AND NOT EXISTS (SELECT 1 FROM releases r "
                    "WHERE r.project = v.project AND r.version = v.version)"
                )
            con.execute(
                f"DELETE FROM {table} v WHERE v.version IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM releases r WHERE r.project = v.project AND r.version = v.version)"
            )


def index_vulnerabilities(
    store: Queryable, projects: Sequence[str]
) -> dict[str, dict[str, list[Vulnerability]]]:
    """project -> version -> its vulnerabilities, in the order upstream gave them."""
    cols = [c for c in VULNERABILITIES.names if c not in ("project", "version")]
    out: dict[str, dict[str, list[Vulnerability]]] = {}
    for row in store.query(
        f"SELECT project, version, {', '.join(cols)} FROM vulnerabilities "
        "WHERE project IN (SELECT unnest($1::VARCHAR[]))",
        [list(projects)],
    ):
        v = Vulnerability(**dict(zip(cols, row[2:], strict=True)))
        out.setdefault(row[0], {}).setdefault(row[1], []).append(v)
    return out


def index_ownership(store: Queryable, projects: Sequence[str]) -> dict[str, Ownership]:
    """The ownership of each polled project of ``projects`` (never polled: absent)."""
    out = {
        name: Ownership(org, [])
        for name, org in store.query(
            "SELECT name, organization FROM projects WHERE status_checked_at IS NOT NULL "
            "AND name IN (SELECT unnest($1::VARCHAR[]))",
            [list(projects)],
        )
    }
    for project, role, user in store.query(
        "SELECT project, role, user FROM project_roles "
        "WHERE project IN (SELECT unnest($1::VARCHAR[]))",
        [list(projects)],
    ):
        if project in out:
            out[project].roles.append((role, user))
    return out


def project_statuses(store: MetadataStore) -> dict[str, str | None]:
    """The PEP 792 status of every selected stored project (``None``: never polled)."""
    return dict(
        store.query(
            "SELECT name, status FROM projects p SEMI JOIN selected_projects s ON s.name = p.name"
        )
    )


def restore_quarantined(store: MetadataStore, names: Sequence[str]) -> list[str]:
    """Of ``names``, just marked removed (gone from upstream's listing), those upstream says
    are quarantined: hidden from its listings, not gone. They are stored again (``state``
    ``ok``, their rows were kept) and served as upstream serves them. Returns them."""
    with store.transaction() as con:
        back = [
            r[0]
            for r in con.execute(
                "SELECT name FROM projects WHERE state = 'removed' AND status = 'quarantined' "
                "AND name IN (SELECT unnest($1::VARCHAR[]))",
                [list(names)],
            ).fetchall()
        ]
        con.execute(
            "UPDATE projects SET state = 'ok', removed_serial = NULL "
            "WHERE name IN (SELECT unnest($1::VARCHAR[]))",
            [back],
        )
        mark_dirty(con, back)
    return back


def reselect_quarantined(store: MetadataStore) -> None:
    """Quarantined projects are hidden from upstream's listing, so a selection made from the
    listing leaves them out. Those the index served (their pages are written) stay
    selected, so that they are served as upstream serves them, and polled until cleared."""
    with store.transaction() as con, marking_changes(con, "selected_projects", "name"):
        con.execute(
            "INSERT OR IGNORE INTO selected_projects SELECT p.name FROM projects p "
            "SEMI JOIN simple_pages sp ON sp.project = p.name "
            "WHERE p.state = 'ok' AND p.status = 'quarantined'"
        )


def stored_among(store: MetadataStore, names: Sequence[str]) -> list[str]:
    """Those of ``names`` whose rows are stored (``state`` ``ok`` or ``removed``)."""
    return [
        r[0]
        for r in store.query(
            "SELECT name FROM projects WHERE state IN ('ok', 'removed') "
            "AND name IN (SELECT unnest($1::VARCHAR[])) ORDER BY name",
            [list(names)],
        )
    ]
