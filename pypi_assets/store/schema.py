"""DuckDB schema: the contract analysts and other tools script against (docs/schema.md)."""

from __future__ import annotations

from ..pypi.records import DISTRIBUTION_COLUMNS, LIST_FIELDS

SCHEMA_VERSION = 1

_TYPES: dict[str, str] = {
    "size": "BIGINT",
    "upload_time": "TIMESTAMPTZ",
    "yanked": "BOOLEAN",
    "project_serial": "BIGINT",
}


def column_type(col: str) -> str:
    if col in LIST_FIELDS:
        return "VARCHAR[]"
    return _TYPES.get(col, "VARCHAR")


DISTRIBUTIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS distributions (\n    "
    + ",\n    ".join(f"{c} {column_type(c)}" for c in DISTRIBUTION_COLUMNS)
    + "\n)"
)

DDL: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS upstream_projects (
        name VARCHAR,          -- normalised
        display_name VARCHAR,  -- as upstream lists it
        serial BIGINT          -- the project's _last-serial
    )""",
    """CREATE TABLE IF NOT EXISTS projects (
        name VARCHAR PRIMARY KEY,  -- normalised (PEP 503)
        display_name VARCHAR,
        serial BIGINT,             -- serial of the stored state
        upstream_serial BIGINT,    -- serial last seen in the upstream listing
        status VARCHAR,            -- ok | missing | removed
        latest_version VARCHAR,    -- upstream's 'latest' (info.version)
        removed_serial BIGINT,     -- global serial at which it vanished upstream
        updated_at TIMESTAMPTZ,
        info VARCHAR               -- the project JSON's info object, verbatim
    )""",
    """CREATE TABLE IF NOT EXISTS releases (
        project VARCHAR,
        version VARCHAR,
        upload_time TIMESTAMPTZ,
        yanked BOOLEAN,
        yanked_reason VARCHAR,
        file_count INTEGER,
        wheel_count INTEGER,      -- how many of its files are wheels
        summary VARCHAR,
        requires_python VARCHAR,
        info VARCHAR              -- the version JSON's info object, verbatim
    )""",
    DISTRIBUTIONS_DDL,
    """CREATE TABLE IF NOT EXISTS dependencies (
        project VARCHAR,
        release_version VARCHAR,
        filename VARCHAR,
        requirement VARCHAR,
        dep_name VARCHAR,
        dep_project VARCHAR,
        specifier VARCHAR,
        extras VARCHAR[],
        marker VARCHAR,
        optional BOOLEAN,
        extra VARCHAR,
        parse_error VARCHAR
    )""",
    "CREATE TABLE IF NOT EXISTS selected_projects (name VARCHAR PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS selected_files (project VARCHAR, filename VARCHAR)",
    """CREATE TABLE IF NOT EXISTS blobs (
        key VARCHAR PRIMARY KEY,   -- packages/aa/bb/<digest>/<filename>[.metadata]
        project VARCHAR,
        filename VARCHAR,          -- the file (or its .metadata) stored under key
        sha256 VARCHAR,            -- verified while downloading
        size BIGINT,
        stored_at TIMESTAMPTZ
    )""",
    """CREATE TABLE IF NOT EXISTS simple_pages (
        project VARCHAR PRIMARY KEY,  -- a project whose index pages are written
        serial BIGINT,                -- the project serial they were written at
        selection VARCHAR             -- hash of the selected files and blobs they list
    )""",
    """CREATE TABLE IF NOT EXISTS closure_projects (
        name VARCHAR PRIMARY KEY,   -- selected only as a dependency of the allowlist
        requirements VARCHAR[],     -- the requirements that pulled it in
        extras VARCHAR[],           -- extras requested of it
        required_by VARCHAR[]       -- the selected projects that need it
    )""",
    """CREATE OR REPLACE VIEW selected_blob_keys AS
        SELECT project, filename, 'packages/' || substr(h, 1, 2) || '/' || substr(h, 3, 2) || '/'
               || substr(h, 5) || '/' || filename AS key, sha256, size, url,
               core_metadata_sha256, project_serial
        FROM (SELECT d.*, coalesce(d.blake2b_256, d.sha256) AS h FROM distributions d
              JOIN projects p ON p.name = d.project AND p.status = 'ok'
              SEMI JOIN selected_files s ON s.project = d.project AND s.filename = d.filename)""",
    """CREATE OR REPLACE VIEW selected_distributions AS
        SELECT d.* FROM distributions d
        JOIN projects p ON p.name = d.project AND p.status = 'ok'
        SEMI JOIN selected_files s ON s.project = d.project AND s.filename = d.filename""",
)

#: Forward migrations for databases created by earlier versions (idempotent).
MIGRATIONS: tuple[str, ...] = (
    "ALTER TABLE releases ADD COLUMN IF NOT EXISTS wheel_count INTEGER",
    "ALTER TABLE projects ADD COLUMN IF NOT EXISTS info VARCHAR",
    "ALTER TABLE projects ADD COLUMN IF NOT EXISTS etag VARCHAR",
)

RELEASE_COLUMNS = (
    "project",
    "version",
    "upload_time",
    "yanked",
    "yanked_reason",
    "file_count",
    "wheel_count",
    "summary",
    "requires_python",
    "info",
)
DEPENDENCY_COLUMNS = (
    "project",
    "release_version",
    "filename",
    "requirement",
    "dep_name",
    "dep_project",
    "specifier",
    "extras",
    "marker",
    "optional",
    "extra",
    "parse_error",
)
