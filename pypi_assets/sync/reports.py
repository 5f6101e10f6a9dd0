"""What a run reports: the progress callback type and the reports of each step and of a
whole sync. Plain data, shared by the CLI, the assets and the library."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store.lake import LakeCommit
    from .files import FilesReport
    from .index import IndexReport
    from .status import StatusReport

__all__ = [
    "ClosureReport",
    "Progress",
    "RefreshReport",
    "SyncReport",
    "WindowReport",
    "no_progress",
    "one_line",
]

#: ``progress(phase, done, total, detail)``: the one progress callback type of the package
#: (the CLI's progress bar, the assets' run log).
Progress = Callable[[str, int, int, str], None]


def no_progress(phase: str, done: int, total: int, detail: str) -> None:
    return None


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, at most ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class ClosureReport:
    rounds: int = 0
    added: list[str] = field(default_factory=list)  # projects selected through the closure
    unlisted: list[str] = field(default_factory=list)  # required, but not on the upstream


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
    published: LakeCommit | None = None  # the lake snapshot this run committed
    metadata_sources: dict[str, int] = field(default_factory=dict)  # selected files by source
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds per phase
    #: How upstream changes were found (``changelog``, ``listing serials (no XML-RPC)``,
    #: ``conditional re-check (no XML-RPC)``), and which listing was read ("none": none).
    changes: str = ""
    listing: str = ""
    resolve_serials: bool = False  # (the run's own bookkeeping: see update_listing)
    statuses: StatusReport | None = None  # the status poll (sync/status.py)
    #: sdists whose own PKG-INFO was compared with their release's version JSON, how many
    #: differ, and by field (``OwnMetadataState.comparison``)
    pkg_info_vs_version_json: dict[str, Any] = field(default_factory=dict)

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
            "changes": self.changes,
            "listing": self.listing,
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
            # upstream's rate limits met (HTTP 429, XML-RPC faults, the call budget), waited out
            "rate_limited": self.requests.get("rate_limited", 0),
            "rate_wait_seconds": self.requests.get("rate_wait_seconds", 0.0),
            "seconds": round(self.seconds, 3),
            "phase_seconds": self.phases,
            "snapshot": self.snapshot,
            **(
                {
                    "lake_version": self.published.version,
                    "lake_projects_changed": self.published.projects,
                    "lake_rows_published": sum(self.published.rows.values()),
                }
                if self.published is not None
                else {}
            ),
            "metadata_sources": self.metadata_sources,
            "pkg_info_vs_version_json": self.pkg_info_vs_version_json,
            **{f"rows_{k}": v for k, v in self.counts.items()},
            **({"statuses": self.statuses.summary()} if self.statuses is not None else {}),
        }


@dataclass
class WindowReport:
    key: str
    changelog_serial: int | None
    relisted: bool
    refresh: RefreshReport
    requests: dict[str, Any]
    pkg_info_vs_version_json: dict[str, Any] = field(default_factory=dict)
    #: the pages read after the refresh (quarantine, never-polled projects): sync's poll
    statuses: StatusReport | None = None
