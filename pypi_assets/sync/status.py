"""The status poll: what upstream says of the selected projects that no serial announces.

PEP 792's archive, unarchive and deprecate, a release's vulnerabilities and a project's
organization change upstream with no journal entry, so no serial moves. Each selected project
is polled on a cadence (``[pypi_assets] status_poll_interval``; ``sync --refresh-statuses``:
now) with conditional requests (``If-None-Match``): its simple page (the status) and the
JSON of each stored release (its vulnerabilities and the project's ownership), or, for a
project whose releases' JSON the mirror does not hold (``--depth project``), its project
JSON (the latest release's vulnerabilities). An unchanged page answers 304 with no body: a
quiet project costs one 304 per page per cadence. Projects never polled (new ones) are
polled on the run that stores them, whatever the cadence (``status_poll_interval = off``:
not until ``--refresh-statuses``).
Quarantine is journaled, so it also arrives with the serial; its pages are hidden then too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..filters.config import DEFAULT_STATUS_POLL_INTERVAL
from ..pypi import PyPIClient
from ..pypi.client import Fetched, page_from, quote_version, usable_etag
from ..pypi.errors import InvalidData, NotFound, UpstreamError
from ..pypi.names import canonical
from ..pypi.records import ProjectNotes
from ..pypi.simple import ACCEPT
from ..pypi.warehouse import parse_ownership, parse_vulnerabilities, project_json_path
from ..store import MetadataStore
from ..store.statuses import (
    PollTarget,
    poll_etags,
    poll_targets,
    project_statuses,
    record_polls,
    reselect_quarantined,
    restore_quarantined,
    stored_among,
)
from .reports import Progress, RefreshReport, no_progress, one_line

__all__ = [
    "DEFAULT_STATUS_POLL_INTERVAL",
    "StatusReport",
    "poll_after_refresh",
    "poll_cutoff",
    "poll_statuses",
]

_BATCH = 200  # projects polled (and recorded) at a time


@dataclass
class StatusReport:
    """One poll: the projects polled, the requests it made (and how many answered 304),
    the bytes and seconds, the projects whose status, ownership or vulnerabilities changed,
    and those whose poll failed (kept as they were)."""

    everything: bool = False
    polled: int = 0
    requests: int = 0
    not_modified: int = 0
    bytes: int = 0
    seconds: float = 0.0
    changed: list[str] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)  # projects whose status changed
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "everything": self.everything,
            "polled": self.polled,
            "requests": self.requests,
            "not_modified": self.not_modified,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "changed": len(self.changed),
            "statuses": self.statuses,
            "failed": sorted(self.failed),
        }


def poll_cutoff(interval: float | None, *, everything: bool = False) -> datetime | None:
    """Projects last polled before this are due (``None``: all of them, with
    ``everything``). ``interval`` 0 or ``None``: only the projects never polled."""
    if everything:
        return None
    if not interval:
        return datetime(1970, 1, 1, tzinfo=UTC)
    return datetime.now(UTC) - timedelta(seconds=interval)


class _Counter:
    """Requests and 304s of one poll."""

    def __init__(self) -> None:
        self.requests = 0
        self.not_modified = 0

    def saw(self, got: Fetched) -> Fetched:
        self.requests += 1
        self.not_modified += got.status == 304
        return got


async def _get(
    client: PyPIClient, kind: str, url: str, etag: str | None, count: _Counter, accept: str = ""
) -> Fetched:
    headers = {"Accept": accept} if accept else {}
    if etag:
        headers["If-None-Match"] = etag
    try:
        got = await client.request(kind, url, headers=headers, ok=frozenset({200, 304}))
    except UpstreamError:
        count.requests += 1
        raise
    return count.saw(got)


def _etag(got: Fetched) -> str | None:
    return usable_etag(got.headers.get("ETag"))


def _parse_page(got: Fetched, name: str) -> tuple[str | None, str | None, int | None]:
    page = page_from(got, name)
    return page.status, page.status_reason, page.serial


async def _poll_page(
    client: PyPIClient, poll: ProjectNotes, etags: dict[str, str], count: _Counter
) -> None:
    """The simple page: PEP 792's status."""
    path = f"/simple/{poll.name}/"
    got = await _get(
        client, "status-poll", client.config.base + path, etags.get(path), count, ACCEPT
    )
    poll.confirmed = True
    if got.status == 200:
        poll.status = _parse_page(got, poll.name)
        poll.etags[path] = (None, _etag(got) or "")


def _read_json(poll: ProjectNotes, got: Fetched, path: str, version: str | None) -> None:
    data = got.json()
    what = got.url
    if version is not None:
        poll.vulnerabilities[version] = parse_vulnerabilities(data, what)
    owner = parse_ownership(data, what)
    if owner is not None:
        poll.ownership = owner
    poll.etags[path] = (version, _etag(got) or "")


def _version_path(display: str, version: str) -> str:
    """As the fetch asks for it: by the display name (Warehouse redirects any other)."""
    return f"/pypi/{display}/{quote_version(version)}/json"


async def _poll_releases(
    client: PyPIClient,
    poll: ProjectNotes,
    display: str,
    versions: Sequence[str],
    etags: dict[str, str],
    count: _Counter,
) -> None:
    """Each stored release's JSON: its vulnerabilities, and the project's ownership. An
    upstream without version JSON (404): the project JSON, for ownership and the latest
    release's vulnerabilities."""
    base = client.config.base
    for version in versions:
        path = _version_path(display, version)
        try:
            got = await _get(client, "vulnerability-poll", base + path, etags.get(path), count)
        except NotFound:  # asked: not asked again until the cadence
            poll.etags.update({_version_path(display, v): (v, "") for v in versions})
            await _poll_project_json(client, poll, display, etags, count)
            return
        if got.status == 200:
            _read_json(poll, got, path, version)


async def _poll_project_json(
    client: PyPIClient, poll: ProjectNotes, display: str, etags: dict[str, str], count: _Counter
) -> None:
    path = project_json_path(display)
    got = await _get(
        client, "vulnerability-poll", client.config.base + path, etags.get(path), count
    )
    if got.status == 200:
        data = got.json()
        info = data.get("info") if isinstance(data, dict) else None
        latest = info.get("version") if isinstance(info, dict) else None
        version = latest if isinstance(latest, str) else None
        if version is not None:
            poll.etags.pop(_version_path(display, version), None)
        _read_json(poll, got, path, version)


async def _poll_one(
    client: PyPIClient, target: PollTarget, etags: dict[str, str], count: _Counter
) -> ProjectNotes | str:
    """One project's poll, or why it failed."""
    poll = ProjectNotes(canonical(target.name))
    try:
        if target.page:
            await _poll_page(client, poll, etags, count)
        if poll.status is not None and poll.status[0] == "quarantined":
            return poll  # its JSON API answers 404: nothing more to read
        display = target.display or target.name
        if target.project_json:
            await _poll_project_json(client, poll, display, etags, count)
        await _poll_releases(client, poll, display, target.versions, etags, count)
    except (UpstreamError, InvalidData) as exc:
        if not poll.confirmed:
            return one_line(exc)
        # the status is read; a release that failed keeps what was stored
    return poll


async def poll_statuses(
    client: PyPIClient,
    store: MetadataStore,
    checked_before: datetime | None,
    *,
    targets: list[PollTarget] | None = None,
    new: bool = True,
    progress: Progress = no_progress,
) -> StatusReport:
    """Poll the selected projects last polled before ``checked_before`` (never polled and
    quarantined ones too, the former only when ``new``; ``None``: all of them), or the
    given ``targets``, and store what changed."""
    started, bytes_before = time.perf_counter(), client.stats.bytes
    report, count = StatusReport(everything=checked_before is None), _Counter()
    if targets is None:
        targets = poll_targets(store, checked_before, new=new)
    before = project_statuses(store)
    for start in range(0, len(targets), _BATCH):
        batch = targets[start : start + _BATCH]
        etags = poll_etags(store, [t.name for t in batch])
        results = await asyncio.gather(*(_poll_one(client, t, etags, count) for t in batch))
        polls = []
        for target, result in zip(batch, results, strict=True):
            if isinstance(result, str):
                report.failed[target.name] = result
            else:
                polls.append(result)
                if result.changed:
                    report.changed.append(target.name)
        record_polls(store, polls)
        report.polled += len(batch)
        progress("statuses", report.polled, len(targets), f"{len(report.changed)} changed")
    after = project_statuses(store)
    report.statuses = {n: s or "" for n, s in after.items() if before.get(n) != s}
    report.requests, report.not_modified = count.requests, count.not_modified
    report.bytes, report.seconds = client.stats.bytes - bytes_before, time.perf_counter() - started
    return report


async def poll_after_refresh(
    client: PyPIClient,
    store: MetadataStore,
    refresh: RefreshReport,
    *,
    new: bool = True,
    progress: Progress,
) -> StatusReport:
    """After a run's refresh: the pages of the projects it found missing (404) or marked
    removed: a quarantined one answers 404 in the JSON API and is hidden from upstream's
    listing, but is not gone, so it stays, served as upstream serves it (a page with its
    status and no files), and leaves ``missing``. Then what the fetch did not read: the
    projects never polled (stored without their page, at ``--depth project``), the
    releases with files whose JSON it did not read (those two only when ``new``:
    ``status_poll_interval = off`` leaves them), and the quarantined projects."""
    report = StatusReport()
    # quarantined, perhaps (its page says); one never stored has nothing to serve
    gone = stored_among(store, [*refresh.removed, *refresh.missing])
    if gone:
        targets = [PollTarget(n, []) for n in gone]  # their pages only
        report = await poll_statuses(client, store, None, targets=targets, progress=progress)
        back = set(restore_quarantined(store, refresh.removed))
        refresh.removed[:] = [n for n in refresh.removed if n not in back]
    reselect_quarantined(store)
    merge(report, await poll_statuses(client, store, poll_cutoff(0), new=new, progress=progress))
    statuses = project_statuses(store)
    refresh.missing[:] = [n for n in refresh.missing if statuses.get(n) != "quarantined"]
    return report


def merge(first: StatusReport | None, second: StatusReport) -> StatusReport:
    """Two polls of one run as one report."""
    if first is None:
        return second
    first.polled += second.polled
    first.requests += second.requests
    first.not_modified += second.not_modified
    first.bytes += second.bytes
    first.seconds += second.seconds
    first.changed += second.changed
    first.statuses.update(second.statuses)
    first.failed.update(second.failed)
    return first
