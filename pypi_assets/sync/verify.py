"""``verify``: compare the blob store and the simple index with the database, then (as asked)
repair, collect unreferenced blobs, and forget what is still broken so the next sync fetches it.

The command line (``pypi-assets verify``) only parses options, prints the report and picks the
exit code; the sequence is here.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..filters import MirrorConfig
from ..pypi import PyPIClient
from ..store import MetadataStore
from ..store.blobs import BlobStore, other_databases
from ..store.readers import retained_blobs
from .files import (
    DEFAULT_MAX_DELETE_SHARE,
    TooManyDeletions,
    VerifyReport,
    delete_unreferenced,
    repair_provenance,
    verify_blobs,
    verify_provenance,
)
from .files import repair as repair_blobs
from .index import index_owner, missing_pages, write_index
from .reports import Progress
from .run import index_options
from .settings import Settings, client_config

__all__ = ["MirrorVerifyReport", "VerifyOptions", "verify_mirror"]


def _quiet(phase: str, done: int, total: int, detail: str) -> None:
    """No progress shown."""


@dataclass(frozen=True)
class VerifyOptions:
    """What ``verify`` may change besides reporting."""

    #: fetch missing and corrupt blobs again, and write missing index pages again
    repair: bool = False
    #: delete blobs that nothing selected references (at most ``max_delete_share`` of them)
    delete_unreferenced: bool = False
    max_delete_share: float = DEFAULT_MAX_DELETE_SHARE
    #: delete unreferenced blobs whatever their share, and from a store shared with others
    force: bool = False
    #: compare sizes only (no blob is read)
    sizes_only: bool = False


@dataclass
class MirrorVerifyReport:
    """The blobs' report, the index pages still missing, and why a deletion was refused."""

    blobs: VerifyReport
    #: selected projects (and ``"<root>"``) whose index pages are not on disk after any repair
    missing_pages: list[str] = field(default_factory=list)
    #: why ``delete_unreferenced`` deleted nothing (one line), if it was refused
    delete_refused: str | None = None

    @property
    def ok(self) -> bool:
        return self.blobs.ok and not self.missing_pages and self.delete_refused is None

    def summary(self) -> dict[str, object]:
        out = self.blobs.summary()
        out["missing_pages"] = len(self.missing_pages)
        if self.delete_refused is not None:
            out["delete_refused"] = self.delete_refused
        return out


def verify_mirror(
    settings: Settings,
    config: MirrorConfig,
    blobs: BlobStore,
    options: VerifyOptions = VerifyOptions(),
    *,
    progress: Progress = _quiet,
) -> MirrorVerifyReport:
    """Verify the blobs the selection references and the provenance objects recorded as
    stored (repair them with ``options.repair``),
    delete unreferenced ones if asked, forget in the database the blobs still missing or
    corrupt (the next sync or window run fetches them again), then check the index pages.

    An upstream that cannot be reached during the repair raises :class:`UpstreamError`
    before anything is forgotten."""
    with MetadataStore(settings.db) as store:
        referenced = store.referenced_blobs(metadata=config.core_metadata)
        report = verify_blobs(
            blobs, referenced, check_hashes=not options.sizes_only, progress=progress
        )
        provenance = store.referenced_provenance()
        verify_provenance(blobs, provenance, report, check_hashes=not options.sizes_only)
        if options.repair and (report.missing or report.corrupt):

            async def fetch_again() -> None:
                async with PyPIClient(client_config(settings, config)) as client:
                    await repair_blobs(
                        client, blobs, report, referenced, store.record_blobs, progress=progress
                    )
                    await repair_provenance(
                        client, blobs, report, provenance, store.record_provenance
                    )

            asyncio.run(fetch_again())
        _retain(settings, config, report)
        refused = _collect(settings, store, blobs, report, options)
        bad = (set(report.missing) | set(report.corrupt)) - set(report.repaired)
        store.forget_blobs(sorted(bad))  # so the next sync or window run fetches them again
        pages = verify_pages(settings, config, store, repair=options.repair)
    return MirrorVerifyReport(report, pages, refused)


def _retain(settings: Settings, config: MirrorConfig, report: VerifyReport) -> None:
    """Move out of ``report.unreferenced`` (into ``report.retained``) the blobs of files
    upstream removed that a snapshot within ``[pypi_assets] blob_retention`` still lists, so
    ``serve``'s ``/snapshot/<point>/`` keeps serving them."""
    if not report.unreferenced:
        return
    retention = config.blob_retention
    cutoff = None if retention is None else datetime.now(UTC) - timedelta(seconds=retention)
    keep = retained_blobs(settings.db, cutoff)
    report.retained = [k for k in report.unreferenced if k in keep]
    report.unreferenced = [k for k in report.unreferenced if k not in keep]


def _collect(
    settings: Settings,
    store: MetadataStore,
    blobs: BlobStore,
    report: VerifyReport,
    options: VerifyOptions,
) -> str | None:
    """Delete the unreferenced blobs if asked; why nothing was deleted, if it was refused."""
    if not options.delete_unreferenced:
        return None
    sharing = other_databases(blobs, settings.db)
    if sharing and not options.force:
        return (
            f"{blobs.description} is shared with the database {sharing[0]}; its "
            "blobs look unreferenced from here; nothing deleted (pass --force to delete them)"
        )
    refused = None
    try:
        delete_unreferenced(blobs, report, max_share=options.max_delete_share, force=options.force)
    except TooManyDeletions as exc:
        refused = (
            f"{exc}; nothing deleted. Check the selection, then pass "
            "--max-delete-share or --force to delete them"
        )
    store.forget_blobs(report.deleted)
    return refused


def verify_pages(
    settings: Settings, config: MirrorConfig, store: MetadataStore, *, repair: bool
) -> list[str]:
    """The index pages (and root) that are not on disk: those this database wrote that are
    gone, and those of selected projects that were never written. With ``repair``, the whole
    index is written again. Returns what is still missing."""
    web = settings.web_root(config)
    if web is None or index_owner(web) != str(settings.db.resolve()):
        return []  # no index, or not this database's (``--web`` names another one)
    written = store.written_pages()
    if not written and not store.get_meta("index_root_serial"):
        return []  # no index written yet
    expected = sorted(set(written) | _indexed_projects(store))
    gone = missing_pages(web, expected, config.simple_format)
    if not gone or not repair:
        return gone
    state = json.loads(store.get_meta("synced_state") or "{}")
    write_index(store, web, index_options(config), everything=True, lazy=bool(state.get("lazy")))
    return missing_pages(web, expected, config.simple_format)


def _indexed_projects(store: MetadataStore) -> set[str]:
    """The projects the index writer gives pages: selected, and fetched without error."""
    states = store.project_states()
    return {name for name in store.selected_projects() if states.get(name, (0, ""))[1] == "ok"}
