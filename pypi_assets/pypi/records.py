"""Typed records for what upstream tells us: projects, releases and distributions (files).

The field names of :class:`Distribution` are the column names of the ``distributions`` table
(the schema contract in DESIGN.md): the seed's 24 fields, then the file attributes and extras.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

#: Where a file's metadata columns came from: its PEP 658 ``.metadata`` file (advertised or
#: not), its wheel's METADATA read with range requests, its sdist's PKG-INFO, its version's
#: JSON ``info`` (its release's first upload), or nowhere.
MetadataSource = Literal["core-metadata", "range", "pkg-info", "version-json", "none"]

#: The 24 per-file fields that bandersnatch issue #548 asks for, in its order.
SEED_FIELDS: tuple[str, ...] = (
    "filename",
    "packagetype",
    "name",
    "version",
    "metadata_version",
    "summary",
    "description",
    "keywords",
    "home_page",
    "download_url",
    "author",
    "author_email",
    "maintainer",
    "maintainer_email",
    "license",
    "requires_python",
    "project_url",
    "platform",
    "supported_platform",
    "requires_dist",
    "provides_dist",
    "obsoletes_dist",
    "requires_external",
    "classifiers",
)

#: The fields that come from a file's core metadata (or, failing that, its version's JSON
#: ``info``): the seed's from Metadata-Version on, then those of newer metadata versions.
CORE_METADATA_FIELDS: tuple[str, ...] = (
    *SEED_FIELDS[SEED_FIELDS.index("metadata_version") :],
    "description_content_type",
    "license_expression",
    "license_files",
    "provides_extra",
    "dynamic",
)


@dataclass(slots=True)
class ProjectListing:
    """One row of the upstream project list."""

    name: str  # display name as upstream lists it
    serial: int  # 0 when the upstream did not say (HTML listing)


@dataclass(slots=True)
class UpstreamListing:
    """The project list, column-wise: ~900k names cost two lists, not 900k objects."""

    serial: int  # the global serial the listing was taken at
    names: list[str]  # display names as upstream lists them
    serials: list[int]  # each project's _last-serial (0 when upstream did not say)
    #: where it came from; "allowlist": no listing read, the allowlisted names as named
    source: Literal["simple-json", "xmlrpc", "simple-html", "allowlist"]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def projects(self) -> list[ProjectListing]:
        """Row-wise view (allocates; convenient for small listings)."""
        return [ProjectListing(n, s) for n, s in zip(self.names, self.serials, strict=True)]


@dataclass(frozen=True, slots=True)
class StoredText:
    """A long description the store holds and did not read back, named by its digest (the
    store's; here only carried). The stored state of a project
    (:meth:`~pypi_assets.store.MetadataStore.load_stored`) has one where such a text was: a
    sync carries it unchanged into the rows it writes for unchanged files and releases,
    which name the same stored text again, and never reads the text."""

    digest: str


@dataclass(slots=True)
class Distribution:
    """One release file and its metadata. Field names are the table's column names."""

    # --- the seed's 24 fields -------------------------------------------------------------
    filename: str
    packagetype: str
    name: str  # Name as the metadata source states it
    version: str  # Version as the metadata source states it
    metadata_version: str | None = None
    summary: str | None = None
    description: str | StoredText | None = None
    keywords: str | None = None
    home_page: str | None = None
    download_url: str | None = None
    author: str | None = None
    author_email: str | None = None
    maintainer: str | None = None
    maintainer_email: str | None = None
    license: str | None = None
    requires_python: str | None = None
    project_url: list[str] | None = None
    platform: list[str] | None = None
    supported_platform: list[str] | None = None
    requires_dist: list[str] | None = None
    provides_dist: list[str] | None = None
    obsoletes_dist: list[str] | None = None
    requires_external: list[str] | None = None
    classifiers: list[str] | None = None
    # --- keys and file attributes ---------------------------------------------------------
    project: str = ""  # normalised project name: the key that joins every table
    release_version: str = ""  # the release this file belongs to upstream
    url: str = ""
    sha256: str = ""
    md5: str | None = None
    blake2b_256: str | None = None
    size: int = 0
    upload_time: datetime | None = None
    yanked: bool = False
    yanked_reason: str | None = None
    python_version: str | None = None
    file_requires_python: str | None = None  # the file's data-requires-python, as uploaded
    # --- newer core-metadata fields -------------------------------------------------------
    description_content_type: str | None = None
    license_expression: str | None = None
    license_files: list[str] | None = None
    provides_extra: list[str] | None = None
    dynamic: list[str] | None = None
    # --- provenance -----------------------------------------------------------------------
    metadata_source: MetadataSource = "version-json"
    core_metadata_sha256: str | None = None
    project_serial: int = 0
    #: PEP 740: the file's provenance URL as its simple page states it (``None``: none)
    provenance_url: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


DISTRIBUTION_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Distribution))


#: Fields that hold lists (DuckDB ``VARCHAR[]``), read from the record's annotations.
LIST_FIELDS: frozenset[str] = frozenset(
    f.name for f in dataclasses.fields(Distribution) if str(f.type).startswith("list[")
)


@dataclass(slots=True)
class Release:
    name: str
    version: str
    info: dict[str, Any] | None  # the version JSON's ``info``; None for releases with no files
    upload_time: datetime | None = None
    yanked: bool = False
    yanked_reason: str | None = None
    file_count: int = 0


@dataclass(slots=True)
class Project:
    """Everything stored for one project at one serial."""

    name: str  # normalised
    display_name: str
    serial: int
    releases: list[Release] = field(default_factory=list)
    distributions: list[Distribution] = field(default_factory=list)
    latest_version: str | None = None
    info: dict[str, Any] | None = None  # the project JSON's ``info``, verbatim
    etag: str | None = None  # the project JSON's ETag, for conditional re-checks
    #: PEP 792 status, ownership and vulnerabilities read by the fetch (sync/status.py)
    notes: ProjectNotes | None = None


@dataclass(frozen=True, slots=True)
class Vulnerability:
    """One record of the JSON API's ``vulnerabilities`` (an abridged OSV record)."""

    id: str
    aliases: list[str]
    summary: str | None
    details: str | None
    fixed_in: list[str]
    link: str | None
    source: str | None
    withdrawn: str | None


@dataclass(frozen=True, slots=True)
class Ownership:
    """The JSON API's ``ownership``: the organization (``None``: none) and ``(role, user)``
    pairs, in upstream's order."""

    organization: str | None
    roles: list[tuple[str, str]]


@dataclass
class ProjectNotes:
    """What upstream says of a project beside its files, as one fetch or poll read it.
    ``status``: PEP 792's ``(status, reason, serial)`` from a simple page that was read
    (``confirmed``: the page answered, 200 or 304; ``status`` ``None``: 304, or not read).
    ``ownership``: ``None`` when not read or unchanged. ``vulnerabilities``: the releases
    whose JSON was read, with their records. ``etags``: page path -> ``(version, ETag)``
    of each page read (ETag ``''``: none, or 404)."""

    name: str
    confirmed: bool = False
    status: tuple[str | None, str | None, int | None] | None = None
    ownership: Ownership | None = None
    vulnerabilities: dict[str, list[Vulnerability]] = field(default_factory=dict)
    etags: dict[str, tuple[str | None, str]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether anything upstream serves of it may have changed (its pages are stale)."""
        return bool(self.status or self.ownership or self.vulnerabilities)


@dataclass(slots=True)
class StoredProject:
    """What the store already holds for a project, so unchanged parts are never re-fetched."""

    name: str
    serial: int
    releases: dict[str, Release]
    distributions: dict[str, Distribution]  # by filename
    info: dict[str, Any] | None = None  # the project JSON's ``info``
    latest_version: str | None = None  # upstream's "latest" (``info.version``)
    etag: str | None = None  # of the project JSON it was built from
