"""Derived tables and views for analysts, built from the stored metadata.

Views cost nothing to keep current. ``wheel_tags`` is a table, since it is parsed in Python
with ``packaging.utils.parse_wheel_filename``, and only filenames not yet parsed are parsed.
"""

from __future__ import annotations

import duckdb
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from .duckdb_store import MetadataStore, _insert, mark_dirty, migrate
from .schema import Table, declare

__all__ = ["DERIVED", "refresh_derived"]

VIEWS: dict[str, str] = {
    "latest_releases": """
        CREATE OR REPLACE VIEW latest_releases AS
        SELECT p.name AS project, p.display_name, p.latest_version AS version, r.upload_time, r.yanked,
               r.summary, r.requires_python, r.file_count
        FROM projects p LEFT JOIN releases r ON r.project = p.name AND r.version = p.latest_version
        WHERE p.state = 'ok'""",
    "reverse_dependencies": """
        CREATE OR REPLACE VIEW reverse_dependencies AS
        SELECT d.dep_project AS project, d.project AS dependent, d.release_version AS dependent_version,
               d.specifier, d.marker, d.optional, d.extra
        FROM dependencies d JOIN projects p ON p.name = d.project AND p.state = 'ok'
        WHERE d.dep_project IS NOT NULL""",
    "classifiers": """
        CREATE OR REPLACE VIEW classifiers AS
        SELECT project, release_version, filename, classifier,
               trim(split_part(classifier, '::', 1)) AS category
        FROM (SELECT project, release_version, filename, unnest(classifiers) AS classifier
              FROM distributions WHERE classifiers IS NOT NULL)""",
    "licenses": """
        CREATE OR REPLACE VIEW licenses AS
        SELECT project, release_version, filename,
          CASE
            WHEN license_expression IS NOT NULL THEN license_expression
            WHEN license_classifier IS NOT NULL THEN license_classifier
            WHEN license IS NOT NULL AND length(license) <= 80 THEN license
            ELSE NULL
          END AS license_normalized,
          CASE
            WHEN license_expression IS NOT NULL THEN 'license_expression'
            WHEN license_classifier IS NOT NULL THEN 'classifier'
            WHEN license IS NOT NULL AND length(license) <= 80 THEN 'license'
            ELSE 'unknown'
          END AS license_source
        FROM (
          SELECT project, release_version, filename, license, license_expression,
                 trim(split_part(list_filter(classifiers, lambda c: c LIKE 'License ::%')[1], '::', -1)) AS license_classifier
          FROM distributions)""",
}

#: Every derived relation, for docs and checks.
DERIVED = (*VIEWS, "wheel_tags")

WHEEL_TAGS: Table = declare(
    "wheel_tags",
    """
    project VARCHAR
    filename VARCHAR
    interpreter VARCHAR
    abi VARCHAR
    platform VARCHAR
    build VARCHAR
    """,
)


WHEEL_TAGS_DDL = WHEEL_TAGS.ddl()


def _tags(filename: str) -> list[tuple[str, str, str, str | None]]:
    try:
        _name, _version, build, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return []
    b = f"{build[0]}{build[1]}" if build else None
    return sorted({(t.interpreter, t.abi, t.platform, b) for t in tags})


def refresh_derived(store: MetadataStore) -> dict[str, int]:
    """Create the views and parse the wheel filenames not parsed yet. Returns row counts."""
    with store.transaction() as con:
        for sql in VIEWS.values():
            con.execute(sql)
        refresh_wheel_tags(con, None)
    return {name: int(store.query(f"SELECT count(*) FROM {name}")[0][0]) for name in DERIVED}


def refresh_wheel_tags(con: duckdb.DuckDBPyConnection, projects: list[str] | None) -> None:
    """Bring ``wheel_tags`` in line with ``distributions``: for ``projects`` (those changed
    since the lake's last snapshot: the cost of the change), or for every file (``None``)."""
    migrate(con, (WHEEL_TAGS,))
    if projects is not None and not projects:
        return
    among = "" if projects is None else "AND {col} IN (SELECT unnest($1::VARCHAR[]))"
    args = [] if projects is None else [projects]
    con.execute(
        "INSERT OR IGNORE INTO lake_dirty SELECT DISTINCT project FROM wheel_tags w "
        "WHERE NOT EXISTS (SELECT 1 FROM distributions d WHERE d.filename = w.filename) "
        + among.format(col="w.project"),
        args,
    )
    con.execute(
        "DELETE FROM wheel_tags w WHERE NOT EXISTS (SELECT 1 FROM distributions d "
        "WHERE d.filename = w.filename) " + among.format(col="w.project"),
        args,
    )
    todo = con.execute(
        "SELECT project, filename FROM distributions d WHERE packagetype = 'bdist_wheel' "
        "AND NOT EXISTS (SELECT 1 FROM wheel_tags w WHERE w.filename = d.filename) "
        + among.format(col="d.project"),
        args,
    ).fetchall()
    mark_dirty(con, (p for p, _f in todo))
    _insert(
        con,
        WHEEL_TAGS,
        (
            dict(zip(WHEEL_TAGS.names, (p, f, *tag), strict=True))
            for p, f in todo
            for tag in _tags(f)
        ),
    )
