"""Refreshing per-project metadata: fetch every selected project that upstream changed,
write it in batches, and extend the selection through the dependency closure."""

from __future__ import annotations

import asyncio
import logging
from typing import IO

import duckdb
import httpx

from ..filters import MirrorConfig
from ..pypi import InvalidData, NotFound, PyPIClient, UnsafeValue, UpstreamError, fetch_project
from ..pypi.fetch import Depth, NotModified
from ..pypi.own_metadata import StoredFile
from ..pypi.records import Project
from ..pypi.warehouse import ParsedFile
from ..store import MetadataStore
from ..store.blobs import BlobStore, blob_key
from ..store.duckdb_store import is_storage_error
from .pool import Batch, run_pool
from .reports import ClosureReport, Progress, RefreshReport, no_progress, one_line
from .selection import apply_closure

__all__ = ["BATCH_TEXT", "close_dependencies", "refresh_metadata"]

log = logging.getLogger("pypi_assets")


#: A batch of fetched projects is written early once the text it holds passes this many
#: characters (descriptions, counted once per row they are written to): the store copies each
#: of them several times while it writes, so 64 projects with large READMEs must not wait.
BATCH_TEXT = 16 * 1024 * 1024


def _chars(text: object) -> int:
    """The characters a batch holds for ``text`` (a stored text, carried by digest: none)."""
    return len(text) if isinstance(text, str) else 0


def _text_weight(p: Project) -> int:
    info = _chars((p.info or {}).get("description"))
    rel = sum(_chars((r.info or {}).get("description")) for r in p.releases)
    return info + rel + sum(_chars(d.description) for d in p.distributions)


def stored_reader(blobs: BlobStore | None) -> StoredFile | None:
    """Opens a file's copy in a local blob store (``None``: not stored there), so an sdist's
    PKG-INFO is read from disk instead of being fetched again. Keys are content-addressed
    and a blob is stored only once its digest is checked, so the copy is the file."""
    if blobs is None:
        return None

    def open_stored(f: ParsedFile) -> IO[bytes] | None:
        for blake2b in dict.fromkeys((f.blake2b_256, None)):  # as keyed then, or by sha256
            try:
                path = blobs.local_path(blob_key(f.filename, blake2b, f.sha256))
            except UnsafeValue:
                continue
            if path is not None and path.is_file():
                return path.open("rb")
        return None

    return open_stored


def _needs_refresh(row: tuple[str, str, int], states: dict[str, tuple[int, str]]) -> bool:
    """Whether a listed selected project must be fetched. Serial 0 means the listing did not
    say (an HTML-only upstream): such projects are checked every run, and an unchanged one
    then costs one request and is not rewritten. A project stored as missing (a 404) or
    removed (gone from an earlier listing) that is listed is fetched again, whatever its
    serial."""
    name, _display, serial = row
    state = states.get(name)
    return state is None or state[0] < serial or serial <= 0 or state[1] != "ok"


async def _candidates(store: MetadataStore, report: RefreshReport) -> list[tuple[str, str, int]]:
    """Every selected project whose upstream serial is newer than the stored one."""
    rows = await asyncio.to_thread(lambda: store.upstream_listing(selected_only=True))
    states = await asyncio.to_thread(store.project_states)
    report.selected = len(rows)
    return [r for r in rows if _needs_refresh(r, states)]


def _write(store: MetadataStore, chunk: list[Project], report: RefreshReport) -> None:
    """One transaction for the batch; if the store refuses it, each project alone, so one
    bad project fails alone and the healthy ones of its batch are kept. A storage failure
    (disk full, I/O error) is not a project's fault and ends the run."""
    try:
        res = store.write_projects(chunk)
    except duckdb.Error as exc:
        if len(chunk) == 1 or is_storage_error(exc):
            raise
        for p in chunk:
            try:
                _write(store, [p], report)
            except duckdb.Error as exc:
                if is_storage_error(exc):
                    raise
                report.failed[p.name] = f"could not be stored: {one_line(exc)}"
                log.warning("project %s could not be stored: %s", p.name, one_line(exc))
        return
    report.refreshed.extend(res.written)
    report.skipped_older.extend(res.skipped_older)


#: What a project's refresh may raise that fails that project alone: the protocol layer's
#: errors, and whatever escaped its checks (a malformed value deep in a document).
_PROJECT_ERRORS = (UpstreamError, InvalidData, httpx.HTTPError)
_ESCAPED = (ValueError, TypeError, KeyError, RecursionError, OverflowError)


async def _refresh_one(
    client: PyPIClient,
    store: MetadataStore,
    name: str,
    display: str,
    serial: int,
    *,
    depth: Depth,
    batch: Batch[Project],
    report: RefreshReport,
    stored_file: StoredFile | None = None,
    load: bool = True,
) -> str:
    """Fetch one project into ``batch``; returns its status (``ok``, ``unchanged``,
    ``missing`` or ``failed``, the reason then in ``report.failed``). Not ``load``: the
    store holds nothing of it (no read of the stored state)."""
    try:
        stored = await asyncio.to_thread(store.load_stored, name) if load else None
        project = await fetch_project(
            client, display, serial or None, stored, depth=depth, stored_file=stored_file
        )
        await batch.add(project, _text_weight(project))
        return "ok"
    except NotModified as exc:
        if exc.serial is not None:
            await asyncio.to_thread(store.advance_serial, name, exc.serial)
        report.unchanged.append(name)
        return "unchanged"
    except NotFound:
        await asyncio.to_thread(store.mark_missing, name, display, serial)
        report.missing.append(name)
        return "missing"
    except _PROJECT_ERRORS as exc:
        report.failed[name] = str(exc)
    except _ESCAPED as exc:
        report.failed[name] = f"invalid upstream data: {type(exc).__name__}: {one_line(exc)}"
    log.warning("project %s failed: %s", name, report.failed[name])
    return "failed"


async def refresh_metadata(
    client: PyPIClient,
    store: MetadataStore,
    *,
    candidates: list[tuple[str, str, int]] | None = None,
    stop_on_error: bool = False,
    progress: Progress = no_progress,
    batch: int = 64,
    depth: Depth = "full",
    stored_file: StoredFile | None = None,
) -> RefreshReport:
    """Fetch every selected project whose upstream serial is newer than the stored one.

    ``candidates`` (``(name, display_name, serial)``, already known to need a refresh, as
    for a serial window) limits the work; by default every selected project is considered.
    Each project fails alone; the rest of the run completes. ``stored_file`` opens a file's
    stored copy (see :func:`stored_reader`), so its own metadata is read from it.
    """
    report = RefreshReport()
    if candidates is None:
        candidates = await _candidates(store, report)
    else:
        report.selected = len(candidates)
    listing = {n: (d, s) for n, d, s in candidates}
    todo = sorted(listing, key=lambda n: listing[n][1])
    # a project not stored yet (every one on a first sync) has nothing to load
    stored = await asyncio.to_thread(store.loadable, todo)
    report.todo = len(todo)
    progress("fetch", 0, len(todo), "")
    pending: Batch[Project] = Batch(
        lambda chunk: _write(store, chunk, report), max_items=batch, max_weight=BATCH_TEXT
    )
    stop = asyncio.Event()
    done = 0

    async def one(name: str) -> None:
        nonlocal done
        display, serial = listing[name]
        status = await _refresh_one(
            client,
            store,
            name,
            display,
            serial,
            depth=depth,
            batch=pending,
            report=report,
            stored_file=stored_file,
            load=name in stored,
        )
        if status == "failed" and stop_on_error:
            stop.set()
        done += 1
        progress("fetch", done, len(todo), f"{name} {status}")

    await run_pool(todo, one, workers=client.config.concurrency * 4, stop=stop)
    await pending.flush()
    return report


async def close_dependencies(
    client: PyPIClient,
    store: MetadataStore,
    config: MirrorConfig,
    into: RefreshReport,
    *,
    progress: Progress = no_progress,
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
