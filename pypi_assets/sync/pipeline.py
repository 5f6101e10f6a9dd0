"""The sync steps shared by the Dagster assets and the CLI: list → select → refresh → publish.

No Dagster imports. Each step takes an open :class:`MetadataStore` and plain values.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
from packaging.requirements import Requirement

from ..filters import (
    DependencyRow,
    MirrorConfig,
    ReleaseFileFilter,
    closure_roots,
    dependency_closure,
    project_filter,
    release_file_filter,
)
from ..filters.closure import Closure
from ..pypi import (
    ClientConfig,
    InvalidData,
    NotFound,
    PyPIClient,
    UpstreamError,
    canonical,
    fetch_project,
)
from ..pypi.fetch import Depth, NotModified
from ..pypi.names import is_valid_project_name
from ..pypi.records import Project, UpstreamListing
from ..store import MetadataStore, publish_snapshot
from ..store.blobs import BlobStore, register_database
from ..store.derived import refresh_derived
from ..store.duckdb_store import ListingShrank, is_storage_error
from ..store.index import (
    IndexOptions,
    IndexOwnedElsewhere,
    IndexReport,
    claim_index,
    missing_pages,
    write_index,
)
from ..store.snapshot import snapshot_serial
from .files import FilesReport, mirror_files
from .settings import Settings, SettingsError

__all__ = [
    "Progress",
    "RefreshReport",
    "SyncReport",
    "UpstreamFault",
    "client_config",
    "config_hash",
    "run_sync",
]

log = logging.getLogger("pypi_assets")

#: progress(phase, done, total, detail)
Progress = Callable[[str, int, int, str], None]


def _no_progress(phase: str, done: int, total: int, detail: str) -> None:
    pass


class UpstreamFault(UpstreamError):
    """The upstream answered, but with something a mirror must not act on (a listing that
    is empty or drops too many projects). Nothing was changed."""


def config_hash(config: MirrorConfig) -> str:
    return hashlib.sha256(
        json.dumps(config.to_dict()["sections"], sort_keys=True).encode()
    ).hexdigest()[:16]


def client_config(settings: Settings, config: MirrorConfig, **overrides: Any) -> ClientConfig:
    values: dict[str, Any] = {
        "upstream": settings.upstream_for(config),
        "concurrency": settings.concurrency_for(config),
        "read_timeout": config.timeout,
        "connect_timeout": min(config.timeout, 30.0),
        # bandersnatch's global-timeout is aiohttp's ClientTimeout(total=...): each request's
        # overall deadline, retries included, so no request (a body that trickles, one that
        # never ends) holds the run longer. The run itself is bounded only if asked.
        "total_timeout": config.global_timeout,
        "run_timeout": config.run_timeout,
        "max_body": config.max_body_size,
        "max_versions": config.max_versions_per_project,
        "max_files_per_release": config.max_files_per_release,
    }
    if settings.backoff is not None:
        values["backoff"] = settings.backoff
        values["stale_delays"] = (settings.backoff, 2 * settings.backoff)
    values.update(overrides)
    return ClientConfig(**values)


@dataclass
class RefreshReport:
    selected: int = 0
    todo: int = 0
    refreshed: list[str] = field(default_factory=list)
    skipped_older: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # conditional re-checks answered 304


@dataclass
class SyncReport:
    upstream: str
    upstream_serial: int
    up_to_date: bool = False
    listed: int = 0
    selected: int = 0
    refresh: RefreshReport = field(default_factory=RefreshReport)
    closure: ClosureReport | None = None
    files: FilesReport | None = None
    index: IndexReport | None = None
    requests: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    snapshot: str | None = None
    metadata_sources: dict[str, int] = field(default_factory=dict)  # selected files by source
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds per phase

    def _phase(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.phases[name] = round(self.phases.get(name, 0.0) + now - since, 3)
        return now

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> dict[str, str]:
        kept = self.index.kept if self.index is not None else []
        return {
            **self.refresh.failed,
            **(self.files.failed if self.files else {}),
            **(
                {
                    "(index)": f"kept the pages of {len(kept)} projects no longer selected "
                    f"({', '.join(sorted(kept)[:5])}{', ...' if len(kept) > 5 else ''}): more than "
                    "[pypi_assets] max_removed_share of the index; raise it to remove them"
                }
                if kept
                else {}
            ),
        }

    def summary(self) -> dict[str, Any]:
        r = self.refresh
        return {
            "upstream": self.upstream,
            "upstream_serial": self.upstream_serial,
            "up_to_date": self.up_to_date,
            "listed": self.listed,
            "selected": self.selected,
            **(
                {"closure_added": len(self.closure.added), "closure_rounds": self.closure.rounds}
                if self.closure is not None
                else {}
            ),
            **({"files": self.files.summary()} if self.files is not None else {}),
            **(
                {"index_written": len(self.index.written), "index_unchanged": self.index.unchanged}
                if self.index is not None
                else {}
            ),
            "serials_known": self.upstream_serial > 0,
            "refreshed": len(r.refreshed),
            "unchanged": len(r.unchanged),
            "missing": len(r.missing),
            "removed": len(r.removed),
            "failed": sorted(r.failed),
            "requests": self.requests.get("total_requests", 0),
            "seconds": round(self.seconds, 3),
            "phase_seconds": self.phases,
            "snapshot": self.snapshot,
            "metadata_sources": self.metadata_sources,
            **{f"rows_{k}": v for k, v in self.counts.items()},
        }


# ---------------------------------------------------------------------- steps
def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def list_upstream(
    client: PyPIClient, store: MetadataStore, config: MirrorConfig
) -> UpstreamListing:
    """Store the upstream project list; names that are not valid project names are dropped.

    A listing that is empty, or that drops more than ``[pypi_assets] max_removed_share`` of
    the stored projects, raises :class:`UpstreamFault` and changes nothing. A listing that
    drops a few projects (at most ``CONFIRMABLE_DROPS``) is taken only once each of them is
    confirmed gone: its project JSON answers 404 (as a quarantined project's does)."""
    listing = await client.list_projects()
    keep = [i for i, n in enumerate(listing.names) if is_valid_project_name(n)]
    if len(keep) != len(listing.names):
        log.warning(
            "ignoring %d invalid project names in the upstream listing",
            len(listing.names) - len(keep),
        )
        listing.names = [listing.names[i] for i in keep]
        listing.serials = [listing.serials[i] for i in keep]
    share = config.max_removed_share
    try:
        await asyncio.to_thread(
            store.replace_upstream_listing,
            listing,
            canonical,
            max_removed_share=share,
            confirm_drops=True,
        )
    except ListingShrank as exc:
        if not exc.names:
            raise UpstreamFault(str(exc)) from None
        if not await _confirmed_gone(client, exc.names):
            raise UpstreamFault(
                f"the upstream listing drops {exc.dropped} stored projects that still answer "
                f"upstream (first: {exc.names[0]}): treated as an upstream fault, nothing removed"
            ) from None
        log.info("the %d projects the listing drops are gone upstream", len(exc.names))
        await asyncio.to_thread(
            store.replace_upstream_listing, listing, canonical, max_removed_share=1.0
        )
    return listing


async def _confirmed_gone(client: PyPIClient, names: Sequence[str]) -> bool:
    """Whether every one of ``names`` answers 404 in the JSON API."""
    for name in names:
        try:
            await client.project_json(name)
        except NotFound:
            continue
        except UpstreamError:
            return False
        return False
    return True


def select_projects(store: MetadataStore, config: MirrorConfig) -> list[str]:
    """Apply project-level filters to the stored upstream listing; returns kept names."""
    pf = project_filter(config)
    names: list[str] = []
    for chunk in store.iter_upstream_display_names():
        names.extend(canonical(n) for n in pf.select(chunk))
    store.replace_selected_projects(names)
    store.set_meta(config_hash=config_hash(config), config=json.dumps(config.to_dict()))
    apply_closure(store, config)  # from stored metadata (or cleared); rounds fetch what is missing
    return names


def _kept(
    store: MetadataStore, rff: ReleaseFileFilter, name: str, closure: Sequence[Requirement] | None
) -> list[str] | None:
    """Filenames the filters keep for one stored project (``None`` if not stored as ok)."""
    stored = store.load_stored(name)
    if stored is None:
        return None
    return rff.select(
        name,
        stored.latest_version,
        list(stored.releases.values()),
        list(stored.distributions.values()),
        info=stored.info,
        serial=stored.serial,
        closure=closure,
    )


def _closure_requirements(store: MetadataStore) -> dict[str, list[Requirement]]:
    return {n: [Requirement(r) for r in reqs] for n, reqs in store.closure_requirements().items()}


def _kept_files(
    store: MetadataStore, rff: ReleaseFileFilter, names: Iterable[str]
) -> list[tuple[str, str]]:
    """``(project, filename)`` that the filters keep, from stored rows of the given
    (selected) projects; projects not stored as ``ok`` keep nothing. Projects selected only
    through the dependency closure are filtered with the requirements that pulled them in."""
    via = _closure_requirements(store)
    rows: list[tuple[str, str]] = []
    for name in sorted(names):
        rows.extend((name, fn) for fn in _kept(store, rff, name, via.get(name)) or ())
    return rows


def apply_closure(store: MetadataStore, config: MirrorConfig) -> Closure | None:
    """Compute the dependency closure of the allowlist from stored metadata and record it
    (``closure_projects``, added to ``selected_projects``). ``unresolved`` names what is not
    stored yet."""
    roots = closure_roots(config)
    if not config.dependency_closure or roots is None:
        store.replace_closure([])
        return None
    rff = release_file_filter(config)
    selected = store.selected_projects()
    roots = {n: e for n, e in roots.items() if n in selected}

    def deps(name: str, reqs: Sequence[Requirement] | None) -> list[DependencyRow] | None:
        kept = _kept(store, rff, name, reqs)
        if kept is None:
            return None
        return [DependencyRow(*r) for r in store.kept_dependencies(name, kept)]

    closure = dependency_closure(roots, deps, config)
    _todo, unlisted = store.refresh_candidates(sorted(closure.requirements))
    for name in unlisted:  # required, but upstream has no such project: nothing to select
        del closure.requirements[name]
        closure.unresolved.discard(name)
    closure.unlisted = unlisted
    store.replace_closure(
        [
            (
                name,
                [str(r) for r in reqs],
                sorted(closure.extras.get(name, ())),
                sorted(closure.required_by.get(name, ())),
            )
            for name, reqs in sorted(closure.requirements.items())
        ]
    )
    return closure


@dataclass
class ClosureReport:
    rounds: int = 0
    added: list[str] = field(default_factory=list)  # projects selected through the closure
    unlisted: list[str] = field(default_factory=list)  # required, but not on the upstream


async def close_dependencies(
    client: PyPIClient,
    store: MetadataStore,
    config: MirrorConfig,
    into: RefreshReport,
    *,
    progress: Progress = _no_progress,
    depth: Depth = "full",
    max_rounds: int = 100,
) -> ClosureReport | None:
    """``[pypi_assets] dependency_closure``: extend the stored metadata in rounds until the
    closure is closed. Each round computes the closure from what is stored and fetches the
    projects it reaches that are not stored (or are older than upstream). What the rounds
    fetch, miss or fail on is added to ``into``."""
    if not config.dependency_closure:
        return None
    report = ClosureReport()
    tried: set[str] = set()
    while report.rounds < max_rounds:
        closure = await asyncio.to_thread(apply_closure, store, config)
        if closure is None:
            return report
        report.added = sorted(closure.requirements)
        report.unlisted = sorted(closure.unlisted)
        names = sorted((set(closure.requirements) | closure.unresolved) - tried)
        todo, _unlisted = await asyncio.to_thread(store.refresh_candidates, names)
        tried.update(names)
        if not todo:
            return report
        report.rounds += 1
        progress(
            "closure", report.rounds, report.rounds, f"round {report.rounds}: {len(todo)} projects"
        )
        r = await refresh_metadata(
            client,
            store,
            candidates=todo,
            stop_on_error=config.stop_on_error,
            progress=progress,
            depth=depth,
        )
        into.refreshed.extend(r.refreshed)
        into.missing.extend(r.missing)
        into.skipped_older.extend(r.skipped_older)
        into.failed.update(r.failed)
    log.warning("dependency closure not closed after %d rounds", max_rounds)
    return report


def expected_selection(store: MetadataStore, config: MirrorConfig) -> set[tuple[str, str]]:
    """``(project, filename)`` the current filters keep, computed afresh from stored rows."""
    return set(_kept_files(store, release_file_filter(config), store.selected_projects()))


def recompute_selected_files(
    store: MetadataStore, config: MirrorConfig, projects: Iterable[str] | None = None
) -> int:
    """``selected_files`` from stored metadata and the current filters. No fetching.

    With ``projects`` (those a run just changed) only their rows are recomputed, so an
    incremental run costs the same whatever the mirror's size; a changed config (or no
    ``projects``) recomputes everything.
    """
    rff = release_file_filter(config)
    chash = config_hash(config)
    full = (
        projects is None
        or config.dependency_closure  # a change can move the closure anywhere
        or store.get_meta("selection_config_hash") != chash
    )
    scope = None if full else sorted(set(projects or ()))
    if scope == []:
        return 0
    if not rff.active:
        store.select_all_files_of_selected_projects(scope)
    else:
        selected = (
            store.selected_projects() if scope is None else store.selected_projects_among(scope)
        )
        store.replace_selected_files(_kept_files(store, rff, selected), scope)
    if full:
        store.set_meta(selection_config_hash=chash)
    return (
        len(scope)
        if scope is not None
        else int(store.query("SELECT count(*) FROM selected_files")[0][0])
    )


#: A batch of fetched projects is written early once the text it holds passes this many
#: characters (descriptions, counted once per row they are written to): the store copies each
#: of them several times while it writes, so 64 projects with large READMEs must not wait.
BATCH_TEXT = 16 * 1024 * 1024


def _text_weight(p: Project) -> int:
    info = len(p.info.get("description") or "") if p.info else 0
    rel = sum(len((r.info or {}).get("description") or "") for r in p.releases)
    return info + rel + sum(len(d.description or "") for d in p.distributions)


async def refresh_metadata(
    client: PyPIClient,
    store: MetadataStore,
    *,
    candidates: list[tuple[str, str, int]] | None = None,
    stop_on_error: bool = False,
    progress: Progress = _no_progress,
    batch: int = 64,
    depth: Depth = "full",
) -> RefreshReport:
    """Fetch every selected project whose upstream serial is newer than the stored one.

    ``candidates`` (``(name, display_name, serial)``, already known to need a refresh, as
    for a serial window) limits the work; by default every selected project is considered.
    Each project fails alone; the rest of the run completes.
    """
    report = RefreshReport()
    if candidates is None:
        rows = await asyncio.to_thread(lambda: store.upstream_listing(selected_only=True))
        states = await asyncio.to_thread(store.project_states)
        report.selected = len(rows)
        # Serial 0 means the listing did not say (an HTML-only upstream): check those every
        # run; an unchanged project then costs one request and is not rewritten.
        # A project stored as missing (a 404) or removed (gone from an earlier listing) that
        # is listed is fetched again, whatever its serial.
        candidates = [
            r
            for r in rows
            if r[0] not in states or states[r[0]][0] < r[2] or r[2] <= 0 or states[r[0]][1] != "ok"
        ]
    else:
        report.selected = len(candidates)
    listing = {n: (d, s) for n, d, s in candidates}
    todo = sorted(listing, key=lambda n: listing[n][1])
    report.todo = len(todo)
    progress("fetch", 0, len(todo), "")
    queue: asyncio.Queue[str] = asyncio.Queue()
    for n in todo:
        queue.put_nowait(n)
    pending: list[Project] = []
    pending_text = 0
    flush_lock = asyncio.Lock()
    done = 0
    stop = asyncio.Event()

    def write(chunk: list[Project]) -> None:
        """One transaction for the batch; if the store refuses it, each project alone, so
        one bad project fails alone and the healthy ones of its batch are kept. A storage
        failure (disk full, I/O error) is not a project's fault and ends the run."""
        try:
            res = store.write_projects(chunk)
        except duckdb.Error as exc:
            if len(chunk) == 1 or is_storage_error(exc):
                raise
            for p in chunk:
                try:
                    write([p])
                except duckdb.Error as exc:
                    if is_storage_error(exc):
                        raise
                    report.failed[p.name] = f"could not be stored: {_one_line(exc)}"
                    log.warning("project %s could not be stored: %s", p.name, _one_line(exc))
            return
        report.refreshed.extend(res.written)
        report.skipped_older.extend(res.skipped_older)

    async def flush() -> None:
        nonlocal pending_text
        async with flush_lock:
            if not pending:
                return
            chunk = pending[:]
            pending.clear()
            pending_text = 0
            await asyncio.to_thread(write, chunk)

    async def worker() -> None:
        nonlocal done, pending_text
        while not stop.is_set():
            try:
                name = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            display, serial = listing[name]
            try:
                stored = await asyncio.to_thread(store.load_stored, name)
                project = await fetch_project(client, display, serial or None, stored, depth=depth)
                pending.append(project)
                pending_text += _text_weight(project)
                del project
                if len(pending) >= batch or pending_text >= BATCH_TEXT:
                    await flush()
                status = "ok"
            except NotModified as exc:
                if exc.serial is not None:
                    await asyncio.to_thread(store.advance_serial, name, exc.serial)
                report.unchanged.append(name)
                status = "unchanged"
            except NotFound:
                await asyncio.to_thread(store.mark_missing, name, display, serial)
                report.missing.append(name)
                status = "missing"
            except (UpstreamError, InvalidData, httpx.HTTPError) as exc:
                report.failed[name] = str(exc)
                log.warning("project %s failed: %s", name, exc)
                status = "failed"
                if stop_on_error:
                    stop.set()
            except (ValueError, TypeError, KeyError, RecursionError, OverflowError) as exc:
                # Whatever escaped the protocol layer's checks: this project fails alone.
                report.failed[name] = (
                    f"invalid upstream data: {type(exc).__name__}: {_one_line(exc)}"
                )
                log.warning("project %s failed: %s", name, report.failed[name])
                status = "failed"
                if stop_on_error:
                    stop.set()
            done += 1
            progress("fetch", done, len(todo), f"{name} {status}")

    n_workers = max(1, min(len(todo), client.config.concurrency * 4))
    async with asyncio.TaskGroup() as tg:
        for _ in range(n_workers):
            tg.create_task(worker())
    await flush()
    return report


async def apply_changelog(
    client: PyPIClient, store: MetadataStore, config: MirrorConfig
) -> int | None:
    """Bring ``upstream_projects`` forward with XML-RPC ``changelog_since_serial``: a cost
    proportional to the changes, not to the index. Returns the serial reached, or ``None``
    when the upstream offers no changelog (the caller then re-lists)."""
    since = int(store.get_meta("changelog_serial") or store.get_meta("upstream_serial") or 0)
    try:
        rows = await client.changelog_since(since)
    except UpstreamError:
        return None
    latest: dict[str, tuple[str, int, str]] = {}
    top = since
    for row in rows:
        try:
            name, _version, _ts, action, serial = row[0], row[1], row[2], str(row[3]), int(row[4])
        except (IndexError, TypeError, ValueError):
            continue
        if not isinstance(name, str) or not is_valid_project_name(name):
            continue
        top = max(top, serial)
        norm = canonical(name)
        if norm not in latest or latest[norm][1] <= serial:
            latest[norm] = (name, serial, action)
    removed = [n for n, (_d, _s, action) in latest.items() if action == "remove project"]
    changed = [(n, d, s) for n, (d, s, action) in latest.items() if action != "remove project"]
    store.upsert_listing(changed)
    store.remove_from_listing(removed)
    pf = project_filter(config)
    store.add_selected([canonical(d) for d in pf.select(d for _n, d, _s in changed)])
    if removed:
        store.mark_removed(top)
    store.set_meta(changelog_serial=str(top))
    return top


@dataclass
class WindowReport:
    key: str
    changelog_serial: int | None
    relisted: bool
    refresh: RefreshReport
    requests: dict[str, Any]


async def refresh_window(
    client: PyPIClient,
    store: MetadataStore,
    config: MirrorConfig,
    key: str,
    *,
    progress: Progress = _no_progress,
) -> WindowReport:
    """Refresh one serial window: the selected projects whose upstream serial falls in it
    and whose stored serial is older. A window whose end lies beyond what the stored listing
    knows first catches up through the changelog (or, without one, a full re-listing)."""
    from .windows import bounds

    first, last = bounds(key)
    known = int(store.get_meta("changelog_serial") or store.get_meta("upstream_serial") or 0)
    reached: int | None = None
    relisted = False
    if known < last:
        reached = await apply_changelog(client, store, config)
        if reached is None:
            await list_upstream(client, store, config)
            select_projects(store, config)
            store.mark_removed(int(store.get_meta("upstream_serial") or 0))
            relisted = True
    candidates = await asyncio.to_thread(store.window_candidates, first, last)
    refresh = await refresh_metadata(
        client, store, candidates=candidates, stop_on_error=config.stop_on_error, progress=progress
    )
    await close_dependencies(client, store, config, refresh, progress=progress)
    return WindowReport(key, reached, relisted, refresh, client.stats.as_dict())


def index_options(config: MirrorConfig) -> IndexOptions:
    return IndexOptions(
        root_uri=(config.get("mirror", "root_uri") or "").strip(),
        formats=config.simple_format,
        digest=(config.get("mirror", "digest_name") or "sha256").strip().lower(),
        core_metadata=config.core_metadata,
    )


async def sync_files(
    client: PyPIClient,
    store: MetadataStore,
    blobs: BlobStore,
    *,
    serials: tuple[int, int] | None = None,
    progress: Progress = _no_progress,
    core_metadata: bool = True,
) -> FilesReport:
    """Download the selected files (and PEP 658 ``.metadata``) that are not stored yet."""
    rows = await asyncio.to_thread(store.missing_blobs, serials, metadata=core_metadata)
    progress("files", 0, len(rows), f"{len(rows)} files to fetch into {blobs.description}")
    return await mirror_files(client, blobs, rows, store.record_blobs, progress=progress)


def publish(store: MetadataStore, serial: int) -> Path:
    return publish_snapshot(store.con, store.path, serial)


def sync_state(
    upstream: str, chash: str, blobs: BlobStore | None, web: Path | None, lazy: bool
) -> str:
    """Every setting that changes what a run produces. A run is "up to date" only when the
    upstream serial and this state both equal those of the last complete run."""
    return json.dumps(
        {
            "upstream": upstream,
            "config": chash,
            "blobs": blobs.description if blobs is not None else None,
            "web": str(web) if web is not None else None,
            "lazy": lazy if blobs is not None else None,
        },
        sort_keys=True,
    )


def _up_to_date(
    store: MetadataStore,
    serial: int | None,
    state: str,
    blobs: BlobStore | None,
    lazy: bool,
    core_metadata: bool,
    web: Path | None = None,
    formats: str = "ALL",
) -> bool:
    """The last complete run reached ``serial`` with the same settings, and nothing it
    produced has gone since (blobs forgotten by ``verify``). A serial that is unknown (or
    0) is never "reached": such an upstream is re-checked every run."""
    if not serial or serial <= 0:
        return False
    if store.get_meta("synced_serial") != str(serial) or store.get_meta("synced_state") != state:
        return False
    if web is not None and store.get_meta("index_root_serial") and missing_pages(web, (), formats):
        return False  # the index root was deleted on disk
    return blobs is None or lazy or not store.missing_blobs(metadata=core_metadata)


def _claim_index(web: Path, db: Path) -> None:
    """Stop before anything is done when another database writes the index in ``web``."""
    try:
        claim_index(web, db)
    except IndexOwnedElsewhere as exc:
        raise SettingsError(str(exc)) from None


def _track_blob_store(store: MetadataStore, blobs: BlobStore | None) -> None:
    """The ``blobs`` table records what one blob store holds: when the store changes (a new
    directory, another bucket), forget it, so every selected file is checked again (those
    already there are hashed, not downloaded)."""
    where = blobs.description if blobs is not None else ""
    if blobs is not None and store.get_meta("blob_store") not in (None, where):
        store.forget_all_blobs()
    if blobs is not None:
        store.set_meta(blob_store=where)
        register_database(blobs, store.path)


def lacking_metadata(
    failed: dict[str, str], store: MetadataStore, projects: Sequence[str] | None = None
) -> dict[str, int]:
    """Count the selected files (of ``projects``, else all) by where their metadata came
    from. A file without any (``none``) fails its project in ``failed``, named with the
    files. Returns the counts."""
    for project, files in store.files_without_metadata(projects).items():
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        failed.setdefault(project, f"{len(files)} files without metadata: {shown}")
    return store.metadata_sources(projects)


async def run_sync(
    settings: Settings,
    config: MirrorConfig,
    *,
    progress: Progress = _no_progress,
    transport: httpx.AsyncBaseTransport | None = None,
    client_overrides: dict[str, Any] | None = None,
    depth: Depth = "full",
    lazy: bool = False,
) -> SyncReport:
    """One full incremental sync to the upstream's current serial, then publish a snapshot.
    With a blob store, the selected files are downloaded (unless ``lazy``: then ``serve
    --lazy`` fetches each on its first request) and the simple index is written.

    A run is marked complete (``synced_serial``) only after its snapshot is published, so a
    crash at any step leaves the next run to redo what is missing."""
    started = time.perf_counter()
    ccfg = client_config(settings, config, **(client_overrides or {}))
    chash = config_hash(config) + (":project" if depth == "project" else "")
    blobs = settings.blob_store(config)
    web = settings.web_root(config) if blobs is not None else None
    state = sync_state(ccfg.upstream, chash, blobs, web, lazy)
    if web is not None:
        _claim_index(web, settings.db)
    with MetadataStore(settings.db, lock_timeout=settings.lock_timeout) as store:
        async with PyPIClient(ccfg, transport=transport) as client:
            serial = await client.last_serial()
            report = SyncReport(upstream=ccfg.upstream, upstream_serial=serial or 0)
            _track_blob_store(store, blobs)
            if _up_to_date(
                store, serial, state, blobs, lazy, config.core_metadata, web, config.simple_format
            ):
                assert serial is not None
                report.up_to_date = True
                report.requests = client.stats.as_dict()
                if snapshot_serial(store.path) != serial:  # a crash during publication
                    progress("publish", 0, 1, "publishing the missing snapshot")
                    refresh_derived(store)
                    report.snapshot = str(publish(store, serial))
                report.counts = store.counts()
                report.seconds = time.perf_counter() - started
                progress("done", 1, 1, "up to date")
                return report
            progress("list", 0, 1, "listing upstream projects")
            t = time.perf_counter()
            listing = await list_upstream(client, store, config)
            report.upstream_serial = listing.serial
            report.listed = len(listing)
            progress("list", 1, 1, f"{len(listing)} projects at serial {listing.serial}")
            del listing.names, listing.serials  # stored; free ~100 MB at PyPI's scale
            names = select_projects(store, config)
            report.selected = len(names)
            t = report._phase("list", t)
            refresh = await refresh_metadata(
                client, store, stop_on_error=config.stop_on_error, progress=progress, depth=depth
            )
            report.closure = await close_dependencies(
                client, store, config, refresh, progress=progress, depth=depth
            )
            refresh.removed = store.mark_removed(listing.serial)
            report.refresh = refresh
            recompute_selected_files(
                store, config, refresh.refreshed + refresh.missing + refresh.removed
            )
            if depth == "full":  # project depth stores no per-file metadata, by design
                report.metadata_sources = lacking_metadata(report.refresh.failed, store)
            t = report._phase("metadata", t)
            if blobs is not None and not lazy:
                report.files = await sync_files(
                    client, store, blobs, progress=progress, core_metadata=config.core_metadata
                )
                t = report._phase("files", t)
            if blobs is not None:
                assert web is not None  # the index, also in lazy mode
                report.index = await asyncio.to_thread(
                    write_index,
                    store,
                    web,
                    index_options(config),
                    lazy=lazy,
                    max_delete_share=config.max_removed_share,
                    removed=store.removed_projects(),
                )
                t = report._phase("index", t)
            report.requests = client.stats.as_dict()
        complete = report.ok and not report.refresh.missing and listing.serial > 0
        store.delete_meta("synced_serial", "synced_state")  # until the snapshot is published
        refresh_derived(store)
        progress("publish", 0, 1, "publishing snapshot")
        report.snapshot = str(publish(store, listing.serial))
        if complete:
            store.set_meta(synced_serial=str(listing.serial), synced_state=state)
        report.counts = store.counts()
        report._phase("publish", t)
    report.seconds = time.perf_counter() - started
    progress("done", 1, 1, "")
    return report
