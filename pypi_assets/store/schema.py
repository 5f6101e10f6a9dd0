"""DuckDB schema: the contract analysts and other tools script against (docs/schema.md).

Each table is declared once, as a list of named, typed columns. The ``CREATE TABLE``
statements, the forward migrations (a column a database lacks is added with its declared
type) and the ``INSERT`` statements are all generated from these declarations.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..pypi.records import DISTRIBUTION_COLUMNS, LIST_FIELDS
from .blobs import blob_key_sql

#: 2: ``distributions`` became a view of ``distribution_rows``, long texts kept apart (a
#: version that knows only 1 would write to the view and publish the texts lost)
SCHEMA_VERSION = 2

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


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    comment: str = ""


@dataclass(frozen=True)
class Table:
    """A table's declaration: its columns in order, and its primary key (if any)."""

    name: str
    columns: tuple[Column, ...]
    key: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def ddl(self) -> str:
        lines = []
        for i, c in enumerate(self.columns):
            pk = " PRIMARY KEY" if c.name == self.key else ""
            sep = "," if i < len(self.columns) - 1 else ""
            note = f"  -- {c.comment}" if c.comment else ""
            lines.append(f"{c.name} {c.type}{pk}{sep}{note}")
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n    " + "\n    ".join(lines) + "\n)"

    def add_columns(self, present: set[str]) -> list[str]:
        """``ALTER TABLE`` statements adding the declared columns missing from ``present``."""
        return [
            f"ALTER TABLE {self.name} ADD COLUMN IF NOT EXISTS {c.name} {c.type}"
            for c in self.columns
            if c.name not in present
        ]

    def without(self, *names: str) -> Table:
        """The same declaration less the columns ``names`` (the shape published to the lake
        of a working table that keeps bookkeeping columns besides)."""
        return Table(self.name, tuple(c for c in self.columns if c.name not in names), self.key)

    def insert_sql(self) -> str:
        """One bulk ``INSERT``: a list parameter per column, unnested side by side."""
        select = ", ".join(f"unnest(${i + 1}) AS {c}" for i, c in enumerate(self.names))
        return f"INSERT INTO {self.name} ({', '.join(self.names)}) SELECT * FROM (SELECT {select})"


def long_text_sql(inline: str, digest: str, texts: str = "long_texts") -> str:
    """SQL for a text column that may be stored as a long text: ``inline``, or the pieces of
    ``digest`` in ``texts`` (a table, e.g. a lake's as of a snapshot) joined."""
    pieces = (
        f"(SELECT string_agg(x.text, '' ORDER BY x.part) FROM {texts} x WHERE x.digest = {digest})"
    )
    return f"CASE WHEN {digest} IS NULL THEN {inline} ELSE {pieces} END"


def info_sql(alias: str, texts: str = "long_texts") -> str:
    """SQL for the verbatim ``info`` of a ``projects`` or ``releases`` row ``alias``: the
    stored JSON, with a long description (in ``texts``) put back."""
    digest = f"{alias}.info_description"
    text = long_text_sql("NULL", digest, texts)
    patched = f"json_merge_patch({alias}.info, json_object('description', {text}))::VARCHAR"
    return f"CASE WHEN {digest} IS NULL THEN {alias}.info ELSE {patched} END"


def declare(name: str, cols: str, key: str | None = None) -> Table:
    """A declaration from ``name TYPE [-- comment]`` lines."""
    columns = []
    for line in cols.strip().splitlines():
        spec, _, comment = line.partition("--")
        col, typ = spec.strip().split(None, 1)
        columns.append(Column(col, typ.strip(), comment.strip()))
    return Table(name, tuple(columns), key)


META = declare("meta", "key VARCHAR\nvalue VARCHAR", key="key")
UPSTREAM_PROJECTS = declare(
    "upstream_projects",
    """
    name VARCHAR           -- normalised
    display_name VARCHAR   -- as upstream lists it
    serial BIGINT          -- the project's _last-serial
    """,
)
PROJECTS = declare(
    "projects",
    """
    name VARCHAR              -- normalised (PEP 503)
    display_name VARCHAR
    serial BIGINT             -- serial of the stored state
    upstream_serial BIGINT    -- serial last seen in the upstream listing
    state VARCHAR             -- ok | missing | removed (the mirror's own bookkeeping)
    latest_version VARCHAR    -- upstream's 'latest' (info.version)
    removed_serial BIGINT     -- global serial at which it vanished upstream
    updated_at TIMESTAMPTZ
    info VARCHAR              -- the project JSON's info object, verbatim
    etag VARCHAR              -- the project JSON's ETag (If-None-Match)
    status VARCHAR            -- PEP 792: active | archived | quarantined | deprecated
    status_reason VARCHAR     -- PEP 792's reason, if upstream gives one
    status_serial BIGINT      -- the project's serial on the page the status was read from
    status_checked_at TIMESTAMPTZ  -- when upstream last confirmed the status (200 or 304)
    organization VARCHAR      -- the JSON API's ownership.organization (NULL: none)
    info_description VARCHAR  -- sha256 of info's description when it is a long text (info holds null)
    """,
    key="name",
)
RELEASES = declare(
    "releases",
    """
    project VARCHAR
    version VARCHAR
    upload_time TIMESTAMPTZ
    yanked BOOLEAN
    yanked_reason VARCHAR
    file_count INTEGER
    wheel_count INTEGER       -- how many of its files are wheels
    summary VARCHAR
    requires_python VARCHAR
    info VARCHAR              -- the version JSON's info object, verbatim
    info_description VARCHAR  -- sha256 of info's description when it is a long text (info holds null)
    """,
)
#: ``distributions`` as analysts see it: a view of :data:`DISTRIBUTION_ROWS` with each long
#: description put back, and the lake's table.
DISTRIBUTIONS = Table(
    "distributions", tuple(Column(c, column_type(c)) for c in DISTRIBUTION_COLUMNS)
)
#: Where the working database keeps its files: a long description (:data:`LONG_TEXTS`) is
#: stored once, by digest, and NULL here.
DISTRIBUTION_ROWS = Table(
    "distribution_rows",
    (
        *DISTRIBUTIONS.columns,
        Column(
            "description_digest", "VARCHAR", "sha256 of a long description (description is NULL)"
        ),
    ),
)
#: Descriptions of at least ``long_text`` characters (:mod:`.long_texts`), each stored once
#: in pieces, whichever files and infos carry it: DuckDB holds several times each string a
#: transaction is handed, so a 5 MB description written inline cost 14x its size.
LONG_TEXTS = declare(
    "long_texts",
    """
    digest VARCHAR            -- sha256 of the whole text (UTF-8), hex
    part INTEGER              -- the piece's position, from 0
    text VARCHAR              -- the piece
    pieces INTEGER            -- how many pieces the whole text has
    """,
)
DEPENDENCIES = declare(
    "dependencies",
    """
    project VARCHAR
    release_version VARCHAR
    filename VARCHAR
    requirement VARCHAR
    dep_name VARCHAR
    dep_project VARCHAR
    specifier VARCHAR
    extras VARCHAR[]
    marker VARCHAR
    optional BOOLEAN
    extra VARCHAR
    parse_error VARCHAR
    """,
)
SELECTED_PROJECTS = declare("selected_projects", "name VARCHAR", key="name")
SELECTED_FILES = declare("selected_files", "project VARCHAR\nfilename VARCHAR")
BLOBS = declare(
    "blobs",
    """
    key VARCHAR        -- packages/aa/bb/<digest>/<filename>[.metadata]
    project VARCHAR
    filename VARCHAR   -- the file (or its .metadata) stored under key
    sha256 VARCHAR     -- verified while downloading
    size BIGINT
    stored_at TIMESTAMPTZ
    """,
    key="key",
)
SIMPLE_PAGES = declare(
    "simple_pages",
    """
    project VARCHAR    -- a project whose index pages are written
    serial BIGINT      -- the project serial they were written at
    selection VARCHAR  -- hash of the selected files and blobs they list
    """,
    key="project",
)
PUBLISHERS = declare(
    "publishers",
    """
    project VARCHAR        -- normalised
    filename VARCHAR       -- the file whose PEP 740 provenance names the publisher
    bundle INTEGER         -- the attestation bundle's position in the provenance object
    kind VARCHAR           -- the Trusted Publisher's kind (GitHub, GitLab, Google, ActiveState)
    repository VARCHAR     -- as the publisher states it (owner/name)
    workflow VARCHAR       -- the workflow (file name) that published
    environment VARCHAR    -- the deployment environment, if any
    """,
)
CLOSURE_PROJECTS = declare(
    "closure_projects",
    """
    name VARCHAR              -- selected only as a dependency of the allowlist
    requirements VARCHAR[]    -- the requirements that pulled it in
    extras VARCHAR[]          -- extras requested of it
    required_by VARCHAR[]     -- the selected projects that need it
    """,
    key="name",
)

VULNERABILITIES = declare(
    "vulnerabilities",
    """
    project VARCHAR           -- normalised
    version VARCHAR
    id VARCHAR                -- the OSV id, as upstream's JSON API gives it
    aliases VARCHAR[]
    summary VARCHAR
    details VARCHAR
    fixed_in VARCHAR[]
    link VARCHAR
    source VARCHAR
    withdrawn VARCHAR         -- upstream's withdrawal time, verbatim (NULL: not withdrawn)
    """,
)
PROJECT_ROLES = declare(
    "project_roles",
    """
    project VARCHAR           -- normalised
    role VARCHAR              -- Owner | Maintainer, as upstream names it
    user VARCHAR
    organization VARCHAR      -- the owning organization (NULL: none), on every row
    """,
)
UPSTREAM_ETAGS = declare(
    "upstream_etags",
    """
    path VARCHAR              -- the upstream page polled (/simple/<p>/, /pypi/<p>/<v>/json)
    project VARCHAR
    version VARCHAR           -- the release of a /pypi/<p>/<v>/json (NULL: another page)
    etag VARCHAR              -- sent back as If-None-Match on the next poll ('': none)
    checked_at TIMESTAMPTZ
    """,
    key="path",
)

LAKE_DIRTY = declare(
    "lake_dirty",
    """
    name VARCHAR              -- a project whose rows changed since the lake's last snapshot
    """,
    key="name",
)

TABLES: tuple[Table, ...] = (
    META,
    UPSTREAM_PROJECTS,
    PROJECTS,
    RELEASES,
    DISTRIBUTION_ROWS,
    LONG_TEXTS,
    DEPENDENCIES,
    SELECTED_PROJECTS,
    SELECTED_FILES,
    BLOBS,
    SIMPLE_PAGES,
    CLOSURE_PROJECTS,
    PUBLISHERS,
    VULNERABILITIES,
    PROJECT_ROLES,
    UPSTREAM_ETAGS,
    LAKE_DIRTY,
)

#: The working database's views of its own storage, made before :data:`VIEWS` (a published
#: snapshot has the table itself).
STORAGE_VIEWS: tuple[str, ...] = (
    f"""CREATE OR REPLACE VIEW distributions AS
        SELECT r.* EXCLUDE (description_digest) REPLACE (
            {long_text_sql("r.description", "r.description_digest")} AS description)
        FROM distribution_rows r""",
)

VIEWS: tuple[str, ...] = (
    f"""CREATE OR REPLACE VIEW selected_blob_keys AS
        SELECT project, filename, {blob_key_sql("h", "filename")} AS key, sha256, size, url,
               core_metadata_sha256, project_serial
        FROM (SELECT d.*, coalesce(d.blake2b_256, d.sha256) AS h FROM distributions d
              JOIN projects p ON p.name = d.project AND p.state = 'ok'
              SEMI JOIN selected_files s ON s.project = d.project AND s.filename = d.filename)""",
    """CREATE OR REPLACE VIEW selected_distributions AS
        SELECT d.* FROM distributions d
        JOIN projects p ON p.name = d.project AND p.state = 'ok'
        SEMI JOIN selected_files s ON s.project = d.project AND s.filename = d.filename""",
)

#: Columns renamed since a database was created: ``(table, old name, new name)``. The
#: migration renames a column that has its old name and not yet its new one.
#: ``projects.status`` (ok | missing | removed) became ``state``; ``status`` is PEP 792's.
RENAMED_COLUMNS: tuple[tuple[str, str, str], ...] = (("projects", "status", "state"),)

#: Tables that became views since a database was created: ``(old name, new name)``. The
#: files' table is ``distribution_rows``; ``distributions`` is its view with the long
#: descriptions put back.
RENAMED_TABLES: tuple[tuple[str, str], ...] = (("distributions", "distribution_rows"),)

#: Every table's ``CREATE TABLE IF NOT EXISTS``, then the views.
DDL: tuple[str, ...] = (*(t.ddl() for t in TABLES), *STORAGE_VIEWS, *VIEWS)
