"""A PEP 503 / PEP 691 simple index and a JSON API, rendered from DuckDB and written as
static files, so a plain web server (or ``pypi-assets serve``) can serve a pip-installable
mirror that other mirrors can mirror in turn.

Layout under the web root (bandersnatch's, so its nginx configs carry over)::

    simple/index.html, index.v1_html, index.v1_json          the root, with _last-serial
    simple/<project>/index.html, index.v1_html, index.v1_json
    pypi/<project>/json, pypi/<project>/<version>/json       the JSON API, with last_serial
    packages/aa/bb/<digest>/<filename>[.metadata]             the blobs (local store)

Every file is written to a temporary name and renamed into place. Only projects whose serial
or whose selection changed since their pages were written are rendered again.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..pypi.errors import Refused
from ..pypi.names import check_project_name
from ..pypi.records import warehouse_file
from .duckdb_store import MetadataStore

__all__ = [
    "INDEX_OWNER",
    "IndexOwnedElsewhere",
    "IndexReport",
    "claim_index",
    "index_owner",
    "missing_pages",
    "render_project",
    "write_index",
]

log = logging.getLogger(__name__)

#: when this process started (near enough: when the index writer was imported). Temporary
#: files older than this were left by a writer that died; newer ones may be another live
#: writer's (two mirrors sharing a web root).
_STARTED = time.time()
_TMP = re.compile(r"^\.tmp-[0-9a-f]{16}$")
DEFAULT_MAX_DELETE_SHARE = 0.05

API_VERSION = "1.1"
JSON_CT = "application/vnd.pypi.simple.v1+json"
HTML_CT = "application/vnd.pypi.simple.v1+html"

_FILE_COLUMNS = (
    "filename, key, sha256, size, upload_time, yanked, yanked_reason, file_requires_python, "
    "core_metadata_sha256, release_version, packagetype, python_version, md5, blake2b_256"
)


@dataclass(frozen=True)
class IndexOptions:
    """bandersnatch's ``[mirror]`` options for the index: ``root_uri`` (absolute file URLs in
    the JSON), ``simple-format`` (ALL, HTML or JSON), ``digest_name`` (the URL fragment's
    hash) and ``core-metadata`` (advertise PEP 658 files)."""

    root_uri: str = ""
    formats: str = "ALL"
    digest: str = "sha256"
    core_metadata: bool = True

    def key(self) -> str:
        return f"{self.root_uri}|{self.formats}|{self.digest}|{self.core_metadata}"


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


def _iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    an interrupted writer left in them. Returns the count of stale files removed."""
    cleaned = _clean_project_tmp(web, name)
    for rel in sorted(pages, key=lambda r: r.count("/")):
        _write(web / rel, pages[rel])
    return cleaned


def _version_key(v: str) -> tuple[int, Any]:
    try:
        return (1, Version(v))
    except InvalidVersion:
        return (0, v)


def render_project(
    name: str,
    display: str,
    serial: int,
    files: list[dict[str, Any]],
    versions: Iterable[str],
    options: IndexOptions = IndexOptions(),
) -> dict[str, bytes]:
    """The project's simple pages (HTML and JSON) as ``{relative path: bytes}``."""
    root_uri = options.root_uri
    ordered = sorted(set(versions), key=_version_key)
    jfiles = []
    anchors = []
    for f in files:
        algo = "md5" if options.digest == "md5" and f.get("md5") else "sha256"
        url = f"../../{f['key']}#{algo}={f[algo]}"
        core = f["core_metadata_sha256"] if options.core_metadata else None
        meta: Any = {"sha256": core} if core else False
        yanked: Any = (f["yanked_reason"] or True) if f["yanked"] else False
        jfiles.append(
            {
                "filename": f["filename"],
                "url": f"{root_uri}/{f['key']}" if root_uri else url,
                "hashes": {"sha256": f["sha256"]},
                "requires-python": f["file_requires_python"],
                "size": f["size"],
                "upload-time": _iso(f["upload_time"]),
                "yanked": yanked,
                "core-metadata": meta,
                "data-dist-info-metadata": meta,
            }
        )
        attrs = [f'href="{html.escape(url)}"']
        if f["file_requires_python"]:
            attrs.append(f'data-requires-python="{html.escape(f["file_requires_python"])}"')
        if core:
            attrs.append(f'data-dist-info-metadata="sha256={core}"')
            attrs.append(f'data-core-metadata="sha256={core}"')
        if f["yanked"]:
            attrs.append(f'data-yanked="{html.escape(f["yanked_reason"] or "")}"')
        anchors.append(f"    <a {' '.join(attrs)}>{html.escape(f['filename'])}</a><br />")
    page = {
        "meta": {"api-version": API_VERSION, "_last-serial": serial},
        "name": name,
        "versions": ordered,
        "files": jfiles,
    }
    body = "\n".join(
        [
            "<!DOCTYPE html>",
            "<html>",
            "  <head>",
            f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
            f"    <title>Links for {html.escape(display)}</title>",
            "  </head>",
            "  <body>",
            f"    <h1>Links for {html.escape(display)}</h1>",
            *anchors,
            "  </body>",
            "</html>",
            f"<!--SERIAL {serial}-->",
            "",
        ]
    ).encode()
    data = json.dumps(page, sort_keys=True).encode()
    base = f"simple/{name}"
    out: dict[str, bytes] = {}
    if options.formats in ("ALL", "HTML"):
        out[f"{base}/index.html"] = out[f"{base}/index.v1_html"] = body
    if options.formats in ("ALL", "JSON"):
        out[f"{base}/index.v1_json"] = data
    return out


def _file_json(f: dict[str, Any], root_uri: str) -> dict[str, Any]:
    return warehouse_file(
        filename=f["filename"],
        packagetype=f["packagetype"],
        python_version=f["python_version"],
        requires_python=f["file_requires_python"],
        size=f["size"],
        upload_time=f["upload_time"],
        url=f"{root_uri}/{f['key']}",
        sha256=f["sha256"],
        md5=f["md5"],
        blake2b_256=f["blake2b_256"],
        yanked=f["yanked"],
        yanked_reason=f["yanked_reason"],
    )


def render_json_api(
    name: str,
    serial: int,
    info: dict[str, Any] | None,
    latest: str | None,
    releases: dict[str, dict[str, Any] | None],
    files: list[dict[str, Any]],
    *,
    root_uri: str = "",
) -> dict[str, bytes]:
    """``pypi/<name>/json`` and ``pypi/<name>/<version>/json`` in Warehouse's shapes, listing
    the selected files. ``releases``: version -> that version's stored ``info``."""
    by_version: dict[str, list[dict[str, Any]]] = {v: [] for v in releases}
    for f in files:
        by_version.setdefault(f["release_version"], []).append(_file_json(f, root_uri))
    kept = {v: fs for v, fs in by_version.items() if fs}
    out: dict[str, bytes] = {}
    project_info = dict(info or {})
    project = {
        "info": project_info,
        "last_serial": serial,
        # every stored release, as PyPI lists releases with no files too
        "releases": dict(sorted(by_version.items(), key=lambda kv: _version_key(kv[0]))),
        "urls": kept.get(latest or "", []),
        "vulnerabilities": [],
    }
    out[f"pypi/{name}/json"] = json.dumps(project, sort_keys=True).encode()
    for version, fs in kept.items():
        vinfo = releases.get(version) or (project_info if version == latest else None)
        if vinfo is None:
            continue
        doc = {"info": vinfo, "last_serial": serial, "urls": fs, "vulnerabilities": []}
        out[f"pypi/{name}/{quote(version, safe='')}/json"] = json.dumps(
            doc, sort_keys=True
        ).encode()
    return out


_BATCH = 1000  # projects per query when writing pages


def _project_pages(
    name: str,
    display: str,
    serial: int,
    latest: str | None,
    info: str | None,
    files: list[dict[str, Any]],
    rels: dict[str, Any],
    options: IndexOptions,
) -> dict[str, bytes]:
    versions = {f["release_version"] for f in files}
    pages = render_project(name, display, serial, files, versions, options)
    pages.update(
        render_json_api(
            name,
            serial,
            json.loads(info) if info else None,
            latest,
            rels,
            files,
            root_uri=options.root_uri,
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


def write_index(
    store: MetadataStore,
    web: Path,
    options: IndexOptions = IndexOptions(),
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
    if store.get_meta("index_write_started"):
        # the last write was cut off: its temporary files can be in any project's directory
        report.cleaned += _clean_tmp(web / "simple", recursive=True)
        report.cleaned += _clean_tmp(web / "pypi", recursive=True)
    store.set_meta(index_write_started=str(int(time.time())))
    report.cleaned += _clean_tmp(web / "simple")
    rows = store.query(
        "SELECT p.name, p.display_name, p.serial, p.latest_version, p.info, sp.serial, sp.selection "
        "FROM projects p SEMI JOIN selected_projects s ON s.name = p.name "
        "LEFT JOIN simple_pages sp ON sp.project = p.name WHERE p.status = 'ok' ORDER BY p.name"
    )
    listed = {r[0] for r in rows}
    todo = [r for r in rows if everything or r[5] != r[2] or r[6] != selection]
    report.unchanged = len(rows) - len(todo)
    # File creation costs milliseconds on some filesystems: projects are written in parallel.
    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="index")
    writes = []
    cols = [c.strip() for c in _FILE_COLUMNS.split(",")]
    select = ", ".join(
        "k.key"
        if c == "key"
        else "CASE WHEN EXISTS (SELECT 1 FROM blobs m WHERE m.key = k.key || '.metadata') "
        "THEN d.core_metadata_sha256 END AS core_metadata_sha256"
        if c == "core_metadata_sha256" and not lazy
        else f"d.{c}"
        for c in cols
    )
    stored = "" if lazy else "AND EXISTS (SELECT 1 FROM blobs b WHERE b.key = k.key) "
    for start in range(0, len(todo), _BATCH):
        batch = todo[start : start + _BATCH]
        names = [r[0] for r in batch]
        # one query per batch of projects, not per project: the selection is a join
        files_of: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for r in store.query(
            f"SELECT k.project, k.url, {select} FROM selected_blob_keys k JOIN distributions d "
            "ON d.project = k.project AND d.filename = k.filename "
            f"WHERE k.project IN (SELECT unnest($1::VARCHAR[])) {stored}"
            "ORDER BY k.project, d.filename",
            [names],
        ):
            if lazy and not _fetchable(r[1]):
                continue
            files_of[r[0]].append(dict(zip(cols, r[2:], strict=True)))
        rels_of: dict[str, dict[str, Any]] = {n: {} for n in names}
        for project, version, rinfo in store.query(
            "SELECT project, version, info FROM releases "
            "WHERE project IN (SELECT unnest($1::VARCHAR[]))",
            [names],
        ):
            rels_of[project][version] = json.loads(rinfo) if rinfo else None
        for name, display, serial, latest, info, *_ in batch:
            check_project_name(display)
            if canonicalize_name(name) != name:
                raise ValueError(f"stored project name {name!r} is not normalised")
            files, rels = files_of[name], rels_of[name]
            writes.append(
                pool.submit(
                    _write_pages,
                    web,
                    name,
                    _project_pages(name, display, serial, latest, info, files, rels, options),
                )
            )
            report.written.append(name)
    with pool:
        for w in writes:
            report.cleaned += w.result()  # re-raise any write error before recording them
    # pages of projects that left the selection or vanished upstream
    written = [r[0] for r in store.query("SELECT project FROM simple_pages")]
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
    gone += confirmed
    for name in gone:
        for sub in ("simple", "pypi"):
            target = web / sub / name
            if target.is_dir() and target.resolve().parent == (web / sub).resolve():
                shutil.rmtree(target)
        report.deleted.append(name)
    with store.transaction() as con:
        if gone:
            con.execute(
                "DELETE FROM simple_pages WHERE project IN (SELECT unnest($1::VARCHAR[]))", [gone]
            )
        if todo:
            con.executemany(
                "INSERT OR REPLACE INTO simple_pages VALUES (?, ?, ?)",
                [(r[0], r[2], selection) for r in todo],
            )
    serial = int(store.get_meta("upstream_serial") or 0)
    report.serial = serial
    # The root carries the global serial: rewrite it when that moved, even with no project
    # changed (after a stale listing, say), so it never keeps announcing an older one.
    root_serial = store.get_meta("index_root_serial")
    if (
        todo
        or gone
        or everything
        or root_serial != str(serial)
        or bool(missing_pages(web, (), options.formats))
    ):
        _write_root(web, [(r[0], r[1], r[2]) for r in rows], serial, options.formats)
    store.set_meta(index_write_started="", index_root_serial=str(serial))
    return report


def _write_root(
    web: Path, projects: list[tuple[str, str, int]], serial: int, formats: str = "ALL"
) -> None:
    data = {
        "meta": {"api-version": API_VERSION, "_last-serial": serial},
        "projects": [{"name": display, "_last-serial": s} for _n, display, s in projects],
    }
    links = [
        f'    <a href="{quote(name)}/">{html.escape(display)}</a><br />'
        for name, display, _s in projects
    ]
    body = "\n".join(
        [
            "<!DOCTYPE html>",
            "<html>",
            "  <head>",
            f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
            "    <title>Simple index</title>",
            "  </head>",
            "  <body>",
            *links,
            "  </body>",
            "</html>",
            f"<!--SERIAL {serial}-->",
            "",
        ]
    ).encode()
    if formats in ("ALL", "JSON"):
        _write(web / "simple" / "index.v1_json", json.dumps(data).encode())
    # the root is always in HTML too: it is what a browser or a plain web server shows
    _write(web / "simple" / "index.v1_html", body)
    _write(web / "simple" / "index.html", body)


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
