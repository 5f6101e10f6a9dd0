"""The index writer: the simple pages (:mod:`pypi_assets.pypi.simple`) and the JSON API
(:mod:`pypi_assets.pypi.warehouse`) of the selected projects, rendered from DuckDB and written
as static files, so a plain web server (or ``pypi-assets serve``) can serve a pip-installable
mirror that other mirrors can mirror in turn.

Layout under the web root (bandersnatch's, so its nginx configs carry over)::

    simple/index.html, index.v1_html, index.v1_json          the root, with _last-serial
    simple/<project>/index.html, index.v1_html, index.v1_json
    pypi/<project>/json, pypi/<project>/<version>/json       the JSON API, with last_serial
    packages/aa/bb/<digest>/<filename>[.metadata]             the blobs (local store)
    integrity/<project>/<version>/<filename>/provenance       PEP 740 provenance (local store)

A page's ``provenance`` (JSON) and ``data-provenance`` (HTML) point at the mirror's own
``/integrity/...`` route, and only for provenance objects in the blob store.

Every file is written to a temporary name and renamed into place. Only projects whose serial
or whose selection changed since their pages were written are rendered again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from packaging.utils import canonicalize_name

from ..pypi.errors import Refused, UnsafeValue
from ..pypi.names import check_project_name
from ..pypi.records import Ownership, Vulnerability
from ..pypi.simple import IndexOptions, render_project, render_root
from ..pypi.warehouse import ownership_json, render_json_api
from ..pypi.warehouse import vulnerability_json as _vuln_json
from ..store.blobs import check_key
from ..store.duckdb_store import IndexedProject, MetadataStore
from ..store.statuses import Queryable, index_ownership, index_vulnerabilities

__all__ = [
    "INDEX_OWNER",
    "IndexOptions",
    "IndexOwnedElsewhere",
    "IndexReport",
    "IndexSource",
    "claim_index",
    "index_owner",
    "missing_pages",
    "project_pages",
    "write_index",
]

log = logging.getLogger(__name__)

#: when this process started (near enough: when the index writer was imported). Temporary
#: files older than this were left by a writer that died; newer ones may be another live
#: writer's (two mirrors sharing a web root).
_STARTED = time.time()
_TMP = re.compile(r"^\.tmp-[0-9a-f]{16}$")
DEFAULT_MAX_DELETE_SHARE = 0.05
_BATCH = 1000  # projects per query when writing pages
_DEFAULT_OPTIONS = IndexOptions()
#: PEP 792's status whose projects upstream hides: not in the root, no files, no JSON API
QUARANTINED = "quarantined"


@dataclass
class IndexReport:
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    serial: int = 0
    #: pages of projects that disappeared, kept because they were too many to delete at once
    kept: list[str] = field(default_factory=list)
    #: stale temporary files of an interrupted writer, removed
    cleaned: int = 0


def _write(path: Path, data: bytes) -> None:
    """Write to a temporary name beside ``path``, then rename it into place."""
    tmp = path.parent / f".tmp-{secrets.token_hex(8)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _clean_tmp(directory: Path, *, recursive: bool = False) -> int:
    """Remove the temporary files (``.tmp-<hex>``) that a writer killed mid-write left in
    ``directory`` (and below it, with ``recursive``); only those older than this process."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False):
                if recursive:
                    removed += _clean_tmp(Path(e.path), recursive=True)
            elif _TMP.match(e.name) and e.stat(follow_symlinks=False).st_mtime < _STARTED:
                os.unlink(e.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def _clean_project_tmp(web: Path, name: str) -> int:
    return _clean_tmp(web / "simple" / name) + _clean_tmp(web / "pypi" / name, recursive=True)


def _write_pages(web: Path, name: str, pages: dict[str, bytes]) -> int:
    """The pages of one project: its directories first, then the files, after removing what
    an interrupted writer left in them. Returns the count of stale files removed. A project
    with no JSON API document (quarantined) loses the one written before: upstream
    answers 404 there."""
    cleaned = _clean_project_tmp(web, name)
    if f"pypi/{name}/json" not in pages:
        _delete_dir(web, "pypi", name)
    for rel in sorted(pages, key=lambda r: r.count("/")):
        _write(web / rel, pages[rel])
    return cleaned


@dataclass(frozen=True)
class _Upstream:
    """What upstream says of a project beside its files (store/statuses.py)."""

    vulnerabilities: dict[str, list[Vulnerability]] = field(default_factory=dict)
    ownership: Ownership | None = None


def _project_pages(
    project: IndexedProject,
    files: list[dict[str, Any]],
    rels: dict[str, Any],
    options: IndexOptions,
    upstream: _Upstream = _Upstream(),
) -> dict[str, bytes]:
    """The simple pages and the JSON API of a project. A quarantined one, as upstream
    shows it: a simple page with its status and no files, and no JSON API."""
    name, serial, info = project.name, project.serial, project.info
    hidden = project.status == QUARANTINED
    files = [] if hidden else files
    versions = {f["release_version"] for f in files}
    pages = render_project(
        name,
        project.display_name,
        serial,
        files,
        versions,
        options,
        status=project.status,
        status_reason=project.status_reason,
    )
    if hidden:
        return pages
    vulns = {v: [_vuln_json(x) for x in xs] for v, xs in upstream.vulnerabilities.items()}
    owner = ownership_json(upstream.ownership) if upstream.ownership is not None else None
    pages.update(
        render_json_api(
            name,
            serial,
            json.loads(info) if info else None,
            project.latest_version,
            rels,
            files,
            root_uri=options.root_uri,
            vulnerabilities=vulns,
            ownership=owner,
        )
    )
    return pages


def _selection_hash(store: MetadataStore) -> str:
    return store.get_meta("selection_config_hash") or ""


def _fetchable(url: str | None) -> bool:
    """A URL ``serve --lazy`` can fetch from: http(s), with a host."""
    if not url:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _safe_key(key: str) -> bool:
    try:
        check_key(key)
    except UnsafeValue:
        return False
    return True


def write_index(
    store: MetadataStore,
    web: Path,
    options: IndexOptions = _DEFAULT_OPTIONS,
    *,
    everything: bool = False,
    lazy: bool = False,
    max_delete_share: float = DEFAULT_MAX_DELETE_SHARE,
    removed: Collection[str] = (),
) -> IndexReport:
    """Write the pages of every selected project whose serial, selection or stored files
    changed since its pages were last written (all of them with ``everything``), remove the
    pages of projects no longer selected, and rewrite the root.

    A page lists only the files that are in the blob store (recorded in ``blobs``), and
    advertises a ``.metadata`` file only when it is stored, so pip never meets a 404; with
    ``lazy`` (files fetched by ``serve --lazy`` on first request), every selected file with
    a fetchable URL. Pages of projects that disappeared are removed only while they are at
    most ``max_delete_share`` of the written projects; above that (a faulty listing, most
    likely) they are kept and the fact is logged (``report.kept``), except those of
    ``removed``: projects whose removal upstream was confirmed, always removed. Temporary
    files that an interrupted writer left behind are removed first."""
    report = IndexReport()
    web = Path(web)
    root_uri = options.root_uri.rstrip("/")
    options = IndexOptions(root_uri, options.formats, options.digest, options.core_metadata)
    mode = "lazy" if lazy else "stored"
    selection = _selection_hash(store) + "|" + options.key() + "|" + mode
    report.cleaned += _begin(store, web)
    rows = store.index_projects()
    todo = [
        r for r in rows if everything or r.page_serial != r.serial or r.page_selection != selection
    ]
    report.unchanged = len(rows) - len(todo)
    _write_projects(store, web, todo, options, lazy, report)
    # pages of projects that left the selection or vanished upstream
    gone = _gone(store, {r.name for r in rows}, removed, max_delete_share, report)
    _delete_pages(web, gone, report)
    store.record_pages(gone, [(r.name, r.serial) for r in todo], selection)
    report.serial = _finish_root(
        store, web, rows, options.formats, bool(todo or gone or everything)
    )
    return report


def _begin(store: MetadataStore, web: Path) -> int:
    """Mark a write as started, after removing what an interrupted one left behind. Returns
    the count of stale temporary files removed."""
    cleaned = 0
    if store.get_meta("index_write_started"):
        # the last write was cut off: its temporary files can be in any project's directory
        cleaned += _clean_tmp(web / "simple", recursive=True)
        cleaned += _clean_tmp(web / "pypi", recursive=True)
    store.set_meta(index_write_started=str(int(time.time())))
    return cleaned + _clean_tmp(web / "simple")


def _write_projects(
    store: MetadataStore,
    web: Path,
    todo: Sequence[IndexedProject],
    options: IndexOptions,
    lazy: bool,
    report: IndexReport,
) -> None:
    """Render and write the pages of ``todo``, a batch of projects per query."""
    # File creation costs milliseconds on some filesystems: projects are written in parallel.
    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="index")
    writes: list[Future[int]] = []
    for start in range(0, len(todo), _BATCH):
        for name, pages in _render_batch(store, todo[start : start + _BATCH], options, lazy):
            writes.append(pool.submit(_write_pages, web, name, pages))
            report.written.append(name)
    with pool:
        for w in writes:
            report.cleaned += w.result()  # re-raise any write error before recording them


class IndexSource(Queryable, Protocol):
    """What the pages are rendered from: the working database, or a published snapshot
    (:class:`~pypi_assets.store.readers.SnapshotIndex`)."""

    def index_files(
        self, projects: Sequence[str], *, lazy: bool
    ) -> list[tuple[str, str | None, dict[str, Any]]]: ...

    def release_infos(self, projects: Sequence[str]) -> list[tuple[str, str, str | None]]: ...

    def long_texts(self, digests: Iterable[str | None]) -> dict[str, str]: ...


def project_pages(
    source: IndexSource, project: IndexedProject, options: IndexOptions, lazy: bool
) -> dict[str, bytes]:
    """The pages of one project (simple and JSON API, ``{relative path: bytes}``) rendered
    from ``source``, as :func:`write_index` writes them: ``serve`` answers a snapshot's pages
    with these."""
    root_uri = options.root_uri.rstrip("/")
    options = IndexOptions(root_uri, options.formats, options.digest, options.core_metadata)
    return dict(_render_batch(source, [project], options, lazy))[project.name]


def _render_batch(
    store: IndexSource, batch: Sequence[IndexedProject], options: IndexOptions, lazy: bool
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(name, pages)`` of each project of ``batch``, in order."""
    names = [r.name for r in batch]
    # one query per batch of projects, not per project: the selection is a join
    files_of: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for project, url, f in store.index_files(names, lazy=lazy):
        if lazy and not _fetchable(url):
            continue
        if lazy and f["provenance_key"] and not _safe_key(f["provenance_key"]):
            f["provenance_key"] = None  # a version no key can hold: listed without it
        files_of[project].append(f)
    rels_of: dict[str, dict[str, Any]] = {n: {} for n in names}
    for project, version, rinfo in store.release_infos(names):
        rels_of[project][version] = json.loads(rinfo) if rinfo else None
    vulns, owners = index_vulnerabilities(store, names), index_ownership(store, names)
    texts = store.long_texts(r.info_description for r in batch)  # this batch's, not all
    for r in batch:
        r = r.whole(texts)
        check_project_name(r.display_name)
        if canonicalize_name(r.name) != r.name:
            raise ValueError(f"stored project name {r.name!r} is not normalised")
        up = _Upstream(vulns.get(r.name, {}), owners.get(r.name))
        yield r.name, _project_pages(r, files_of[r.name], rels_of[r.name], options, up)


def _gone(
    store: MetadataStore,
    listed: set[str],
    removed: Collection[str],
    max_delete_share: float,
    report: IndexReport,
) -> list[str]:
    """The written projects whose pages are to be removed: those no longer listed, unless
    they are more than ``max_delete_share`` of them (then kept, in ``report.kept``), plus
    the confirmed ``removed`` ones."""
    written = store.written_pages()
    gone = [name for name in written if name not in listed]
    vetted = set(removed)
    confirmed = [name for name in gone if name in vetted]
    gone = [name for name in gone if name not in vetted]
    if gone and len(gone) > max_delete_share * len(written):
        log.warning(
            "keeping the pages of %d of %d projects that are no longer listed (%.0f%%, more "
            "than the allowed %.0f%%); raise [pypi_assets] max_removed_share to remove them",
            len(gone),
            len(written),
            100 * len(gone) / len(written),
            100 * max_delete_share,
        )
        report.kept, gone = gone, []
    return gone + confirmed


def _delete_dir(web: Path, sub: str, name: str) -> None:
    target = web / sub / name
    if target.is_dir() and target.resolve().parent == (web / sub).resolve():
        shutil.rmtree(target)


def _delete_pages(web: Path, gone: Iterable[str], report: IndexReport) -> None:
    for name in gone:
        for sub in ("simple", "pypi"):
            _delete_dir(web, sub, name)
        report.deleted.append(name)


def _finish_root(
    store: MetadataStore, web: Path, rows: list[IndexedProject], formats: str, changed: bool
) -> int:
    """Rewrite the root when a project ``changed`` or it is due, mark the write complete,
    and return the global serial the root carries."""
    serial = store.known_serial()  # the listing, and the changelog after it
    # The root carries the global serial: rewrite it when that moved, even with no project
    # changed (after a stale listing, say), so it never keeps announcing an older one.
    root_serial = store.get_meta("index_root_serial")
    if changed or root_serial != str(serial) or bool(missing_pages(web, (), formats)):
        listed = [(r.name, r.display_name, r.serial) for r in rows if r.status != QUARANTINED]
        _write_root(web, listed, serial, formats)
    store.set_meta(index_write_started="", index_root_serial=str(serial))
    return serial


def _write_root(
    web: Path, projects: list[tuple[str, str, int]], serial: int, formats: str = "ALL"
) -> None:
    for rel, data in render_root(projects, serial, formats).items():
        _write(web / rel, data)


# ---------------------------------------------------------------------- ownership
#: the file in an index directory naming the database that writes it
INDEX_OWNER = ".pypi-assets/index-owner"


class IndexOwnedElsewhere(Refused, ValueError):
    """The index directory is written by another database."""


def index_owner(web: Path) -> str | None:
    """The database that writes the index in ``web``, if recorded."""
    try:
        return (web / INDEX_OWNER).read_text().strip() or None
    except FileNotFoundError:
        return None


def claim_index(web: Path, db: Path) -> None:
    """Make ``db`` the writer of the index in ``web``; raise :class:`IndexOwnedElsewhere`
    (nothing written) when another database that still exists wrote it. Two databases
    writing one index would overwrite each other's root and pages."""
    me = str(Path(db).resolve())
    marker = web / INDEX_OWNER
    owner = index_owner(web) or ""
    if owner and owner != me and Path(owner).exists():
        raise IndexOwnedElsewhere(
            f"the index in {web} is written by database {owner}; pass --web DIR"
        )
    if owner != me:
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.parent / f".tmp-owner-{secrets.token_hex(4)}"
        tmp.write_text(me + "\n")
        os.replace(tmp, marker)


def missing_pages(web: Path, projects: Iterable[str], formats: str = "ALL") -> list[str]:
    """The selected projects (normalized names) whose index pages are not on disk, and
    ``"<root>"`` first when the root pages are missing. ``formats`` as in
    :class:`IndexOptions` (``ALL``, ``HTML`` or ``JSON``)."""
    names = [
        n for f, n in (("HTML", "index.html"), ("JSON", "index.v1_json")) if formats in (f, "ALL")
    ]
    out = ["<root>"] if any(not (web / "simple" / n).exists() for n in names) else []
    for p in projects:
        check_project_name(p)
        if any(not (web / "simple" / p / n).exists() for n in names):
            out.append(p)
    return out
