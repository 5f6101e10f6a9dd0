"""A whole run: :func:`run_sync` (list → select → refresh → files → index → publish) and
:func:`refresh_window` (one serial window), with the rule for "up to date"."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..filters import MirrorConfig
from ..pypi import ClientConfig, PyPIClient
from ..pypi.fetch import Depth
from ..store import MetadataStore, publish_snapshot
from ..store.blobs import BlobStore, register_database
from ..store.lake import LakeCommit
from ..store.snapshot import snapshot_serial
from .files import (
    FileRow,
    FilesReport,
    PublisherRow,
    Stored,
    mirror_files,
    mirror_provenance,
)
from .index import IndexOptions, IndexOwnedElsewhere, claim_index, missing_pages, write_index
from .listing import (
    apply_changelog,
    list_upstream,
    reconciliation_due,
    select_projects,
    update_listing,
)
from .metadata import close_dependencies, refresh_metadata, stored_reader
from .reports import Progress, RefreshReport, SyncReport, WindowReport, no_progress
from .selection import recompute_selected_files
from .settings import Settings, SettingsError, client_config, config_hash
from .status import merge, poll_after_refresh, poll_cutoff, poll_statuses
from .windows import bounds

__all__ = [
    "claim_web_index",
    "index_options",
    "lacking_metadata",
    "refresh_window",
    "refresh_windows",
    "run_sync",
    "sync_state",
    "track_blob_store",
]


async def refresh_window(
    client: PyPIClient,
    store: MetadataStore,
    config: MirrorConfig,
    key: str,
    *,
    progress: Progress = no_progress,
) -> WindowReport:
    """Refresh one serial window: the selected projects whose upstream serial falls in it
    and whose stored serial is older. A window whose end lies beyond what the stored listing
    knows first catches up through the changelog (or, without one, a full re-listing). A
    reconciliation that is due (``[pypi_assets] reconcile_interval``) re-lists first."""
    first, last = bounds(key)
    reached: int | None = None
    relisted = False
    removed: list[str] = []
    due = reconciliation_due(store, config)
    if due or store.known_serial() < last:
        reached = None if due else await apply_changelog(client, store, config, mark=False)
        if reached is None:
            await list_upstream(client, store, config)
            select_projects(store, config)
            reached = await apply_changelog(client, store, config, mark=False) if due else None
            relisted = True
        removed = store.mark_removed(reached or store.listing_serial())
    candidates = await asyncio.to_thread(store.window_candidates, first, last)
    refresh = await refresh_metadata(
        client, store, candidates=candidates, stop_on_error=config.stop_on_error, progress=progress
    )
    await close_dependencies(client, store, config, refresh, progress=progress)
    if client.xmlrpc_missing is None and store.known_serial() > 0:
        store.resolve_listing_serials()  # the changelog is followed: see update_listing
    refresh.removed = removed
    # as sync does: a project that answers 404 or left the listing may be quarantined
    statuses = await poll_after_refresh(
        client, store, refresh, new=config.polls_new_statuses, progress=progress
    )
    stats, compared = client.stats.as_dict(), client.own_metadata.comparison()
    return WindowReport(key, reached, relisted, refresh, stats, compared, statuses)


async def refresh_windows(
    client: PyPIClient,
    store: MetadataStore,
    config: MirrorConfig,
    keys: Sequence[str],
    *,
    progress: Progress = no_progress,
) -> WindowReport:
    """Refresh several serial windows in one run (a backfill's range of partitions), one after
    another with one client, as :func:`refresh_window` does each; the report adds them up
    (its key names the range, its requests are the run's)."""
    if not keys:
        raise ValueError("no serial window to refresh")
    reports = [await refresh_window(client, store, config, key, progress=progress) for key in keys]
    if len(reports) == 1:
        return reports[0]
    total = RefreshReport()
    for r in reports:
        total.selected += r.refresh.selected
        total.todo += r.refresh.todo
        for name in ("refreshed", "skipped_older", "missing", "removed", "unchanged"):
            getattr(total, name).extend(getattr(r.refresh, name))
        total.failed.update(r.refresh.failed)
    changelog = [r.changelog_serial for r in reports if r.changelog_serial is not None]
    statuses = None
    for r in reports:
        if r.statuses is not None:
            statuses = merge(statuses, r.statuses)
    return WindowReport(
        f"{keys[0]}...{keys[-1]}",
        changelog[-1] if changelog else None,
        any(r.relisted for r in reports),
        total,
        reports[-1].requests,
        statuses=statuses,
    )


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
    progress: Progress = no_progress,
    core_metadata: bool = True,
) -> FilesReport:
    """Download the selected files (and PEP 658 ``.metadata``) that are not stored yet, then
    their PEP 740 provenance objects (with the publishers they name)."""
    rows = await asyncio.to_thread(store.missing_blobs, serials, metadata=core_metadata)
    progress("files", 0, len(rows), f"{len(rows)} files to fetch into {blobs.description}")
    report = await mirror_files(client, blobs, rows, store.record_blobs, progress=progress)
    provenance = await asyncio.to_thread(store.missing_provenance)
    await mirror_provenance(
        client, blobs, provenance, store.record_provenance, report, progress=progress
    )
    return report


async def mirror_opening_store(
    client: PyPIClient,
    open_store: Callable[[], MetadataStore],
    blobs: BlobStore,
    rows: Sequence[FileRow],
    *,
    progress: Progress = no_progress,
) -> FilesReport:
    """As :func:`sync_files` for a caller that must not hold the database while files
    transfer (a Dagster run, beside other runs): ``rows``, then the provenance objects not
    stored yet, opening the store only to read and to record."""

    def record(batch: list[Stored]) -> None:
        with open_store() as store:
            store.record_blobs(batch)

    def record_provenance(batch: list[Stored], publishers: list[PublisherRow]) -> None:
        with open_store() as store:
            store.record_provenance(batch, publishers)

    report = await mirror_files(client, blobs, rows, record, progress=progress)
    with open_store() as store:
        provenance = store.missing_provenance()
    await mirror_provenance(client, blobs, provenance, record_provenance, report, progress=progress)
    return report


def publish(store: MetadataStore, serial: int) -> LakeCommit:
    """Commit one lake snapshot of what changed. ``PYPI_ASSETS_LAKE_CHECK=1`` also compares
    every published row with the working database afterwards (a self-check the tests run;
    it costs the size of the mirror)."""
    check = os.environ.get("PYPI_ASSETS_LAKE_CHECK") == "1"
    return publish_snapshot(store.con, store.path, serial, check=check)


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
    if blobs is None or lazy:
        return True
    return not store.missing_blobs(metadata=core_metadata) and not store.missing_provenance()


def claim_web_index(web: Path, db: Path) -> None:
    """Stop before anything is done when another database writes the index in ``web``."""
    try:
        claim_index(web, db)
    except IndexOwnedElsewhere as exc:
        raise SettingsError(str(exc)) from None


def track_blob_store(store: MetadataStore, blobs: BlobStore | None) -> None:
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


@dataclass(frozen=True)
class _RunPlan:
    """What one run is asked to produce, from the settings and the config."""

    client: ClientConfig
    state: str
    blobs: BlobStore | None
    web: Path | None
    depth: Depth
    lazy: bool

    @classmethod
    def of(
        cls,
        settings: Settings,
        config: MirrorConfig,
        depth: Depth,
        lazy: bool,
        overrides: dict[str, Any] | None,
    ) -> _RunPlan:
        ccfg = client_config(settings, config, **(overrides or {}))
        chash = config_hash(config) + (":project" if depth == "project" else "")
        blobs = settings.blob_store(config)
        web = settings.web_root(config) if blobs is not None else None
        state = sync_state(ccfg.upstream, chash, blobs, web, lazy)
        return cls(ccfg, state, blobs, web, depth, lazy)


def _report_up_to_date(
    store: MetadataStore, report: SyncReport, serial: int, progress: Progress
) -> None:
    """Nothing to fetch; publish the snapshot again if a crash lost it."""
    report.up_to_date = True
    if snapshot_serial(store.path) != serial or store.lake_pending():  # a crash while publishing
        progress("publish", 0, 1, "publishing the missing snapshot")
        report.published = publish(store, serial)
        report.snapshot = str(report.published)
    report.counts = store.counts()
    progress("done", 1, 1, "up to date")


async def _list_and_select(
    client: PyPIClient,
    store: MetadataStore,
    config: MirrorConfig,
    report: SyncReport,
    progress: Progress,
    serial: int | None,
) -> int:
    """Bring the listing and the selection forward (:func:`update_listing`); returns the
    serial reached."""
    t = time.perf_counter()
    progress("list", 0, 1, "finding upstream changes")
    step = await update_listing(client, store, config, serial)
    report.upstream_serial = step.serial
    report.listed = step.listed
    report.changes, report.listing = step.changes, step.listing
    report.resolve_serials = step.resolve
    progress("list", 1, 1, f"serial {step.serial}; changes: {step.changes}")
    report.selected = len(store.selected_projects())
    report._phase("list", t)
    return step.serial


async def _refresh(
    client: PyPIClient,
    store: MetadataStore,
    config: MirrorConfig,
    report: SyncReport,
    serial: int,
    *,
    progress: Progress,
    depth: Depth,
    blobs: BlobStore | None,
) -> None:
    """Refresh what changed (reading files already in ``blobs`` from there), close the
    dependencies, recompute the selected files."""
    t = time.perf_counter()
    refresh = await refresh_metadata(
        client,
        store,
        stop_on_error=config.stop_on_error,
        progress=progress,
        depth=depth,
        stored_file=stored_reader(blobs),
    )
    report.closure = await close_dependencies(
        client, store, config, refresh, progress=progress, depth=depth
    )
    refresh.removed = store.mark_removed(serial)
    if report.resolve_serials:
        store.resolve_listing_serials()
    report.refresh = refresh
    recompute_selected_files(store, config, refresh.refreshed + refresh.missing + refresh.removed)
    if depth == "full":  # project depth stores no per-file metadata, by design
        report.metadata_sources = lacking_metadata(report.refresh.failed, store)
    new = await poll_after_refresh(
        client, store, refresh, new=config.polls_new_statuses, progress=progress
    )
    report.statuses = merge(report.statuses, new)
    report._phase("metadata", t)


async def _files_and_index(
    client: PyPIClient,
    store: MetadataStore,
    config: MirrorConfig,
    plan: _RunPlan,
    report: SyncReport,
    progress: Progress,
) -> None:
    """With a blob store: the files (unless lazy), then the index (also in lazy mode)."""
    if plan.blobs is None:
        return
    t = time.perf_counter()
    if not plan.lazy:
        report.files = await sync_files(
            client, store, plan.blobs, progress=progress, core_metadata=config.core_metadata
        )
        t = report._phase("files", t)
    assert plan.web is not None
    report.index = await asyncio.to_thread(
        write_index,
        store,
        plan.web,
        index_options(config),
        lazy=plan.lazy,
        max_delete_share=config.max_removed_share,
        removed=store.removed_projects(),
    )
    report._phase("index", t)


def _publish_run(
    store: MetadataStore, report: SyncReport, serial: int, state: str, progress: Progress
) -> None:
    """Publish the snapshot; only then mark the run complete (when it is)."""
    t = time.perf_counter()
    complete = report.ok and not report.refresh.missing and serial > 0
    store.delete_meta("synced_serial", "synced_state")  # until the snapshot is published
    progress("publish", 0, 1, "publishing snapshot")
    report.published = publish(store, serial)
    report.snapshot = str(report.published)
    if complete:
        store.set_meta(synced_serial=str(serial), synced_state=state)
    report.counts = store.counts()
    report._phase("publish", t)


#: ``meta`` key: where the last run took the upstream's serial from (``PyPIClient.serial_source``).
SERIAL_SOURCE = "serial_source"


async def _upstream_serial(client: PyPIClient, store: MetadataStore) -> int | None:
    """The upstream's serial. Once a run has had it from the changelog, a failing XML-RPC
    stops the run (exit 3) instead of deciding on the CDN-cached root's serial."""
    stored = store.get_meta(SERIAL_SOURCE)
    serial = await client.last_serial(live=stored == "changelog")
    if client.serial_source is not None and client.serial_source != stored:
        store.set_meta(**{SERIAL_SOURCE: client.serial_source})
    return serial


async def _still_up_to_date(
    client: PyPIClient,
    store: MetadataStore,
    config: MirrorConfig,
    plan: _RunPlan,
    serial: int,
    report: SyncReport,
    refresh_statuses: bool,
    progress: Progress,
) -> bool:
    """Poll the statuses that are due (all with ``refresh_statuses``); then whether the last
    complete run's result stands: nothing changed, upstream or in what it produced."""
    cutoff = poll_cutoff(config.status_poll_interval, everything=refresh_statuses)
    report.statuses = await poll_statuses(
        client, store, cutoff, new=config.polls_new_statuses or refresh_statuses, progress=progress
    )
    if report.statuses.changed:
        return False
    return _up_to_date(
        store,
        serial,
        plan.state,
        plan.blobs,
        plan.lazy,
        config.core_metadata,
        plan.web,
        config.simple_format,
    )


async def run_sync(
    settings: Settings,
    config: MirrorConfig,
    *,
    progress: Progress = no_progress,
    transport: httpx.AsyncBaseTransport | None = None,
    client_overrides: dict[str, Any] | None = None,
    depth: Depth = "full",
    lazy: bool = False,
    refresh_statuses: bool = False,
) -> SyncReport:
    """One full incremental sync to the upstream's current serial, then publish a snapshot.
    With a blob store, the selected files are downloaded (unless ``lazy``: then ``serve
    --lazy`` fetches each on its first request) and the simple index is written.

    A run is marked complete (``synced_serial``) only after its snapshot is published, so a
    crash at any step leaves the next run to redo what is missing.

    The selected projects' PEP 792 status, ownership and vulnerabilities, which no serial
    announces, are polled when due (``[pypi_assets] status_poll_interval``; all of them now
    with ``refresh_statuses``); a change makes the run write their pages again."""
    started = time.perf_counter()
    plan = _RunPlan.of(settings, config, depth, lazy, client_overrides)
    if plan.web is not None:
        claim_web_index(plan.web, settings.db)
    with MetadataStore(settings.db, lock_timeout=settings.lock_timeout) as store:
        async with PyPIClient(plan.client, transport=transport) as client:
            serial = await _upstream_serial(client, store)
            report = SyncReport(upstream=plan.client.upstream, upstream_serial=serial or 0)
            track_blob_store(store, plan.blobs)
            if serial is not None and await _still_up_to_date(
                client, store, config, plan, serial, report, refresh_statuses, progress
            ):
                report.requests = client.stats.as_dict()
                report.pkg_info_vs_version_json = client.own_metadata.comparison()
                _report_up_to_date(store, report, serial, progress)
                report.seconds = time.perf_counter() - started
                return report
            serial = await _list_and_select(client, store, config, report, progress, serial)
            await _refresh(
                client,
                store,
                config,
                report,
                serial,
                progress=progress,
                depth=depth,
                blobs=plan.blobs,
            )
            await _files_and_index(client, store, config, plan, report, progress)
            report.requests = client.stats.as_dict()
            report.pkg_info_vs_version_json = client.own_metadata.comparison()
        _publish_run(store, report, serial, plan.state, progress)
    report.seconds = time.perf_counter() - started
    progress("done", 1, 1, "")
    return report
