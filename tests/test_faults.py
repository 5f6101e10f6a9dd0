"""Upstream faults: retried, reported per project, never fatal to the whole run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from pypi_assets.fake import FakeUpstream, Fault
from pypi_assets.pypi import ClientConfig, PyPIClient, StaleResponse, UpstreamError

from .helpers import sync


def _names(fake: FakeUpstream) -> list[str]:
    return sorted(fake.index.projects)


def _client(fake: FakeUpstream, **kw: object) -> PyPIClient:
    opts: dict[str, object] = {
        "upstream": fake.url,
        "backoff": 0.01,
        "stale_delays": (0.01, 0.02),
        "read_timeout": 0.5,
    }
    opts.update(kw)
    return PyPIClient(ClientConfig(**opts))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fault",
    [
        Fault(path=r"/pypi/[^/]+/json$", kind="status", status=503, times=2),
        Fault(path=r"/pypi/[^/]+/json$", kind="status", status=502, times=1),
        Fault(path=r"/pypi/[^/]+/json$", kind="truncate", times=2),
        Fault(path=r"/pypi/[^/]+/json$", kind="reset", times=2),
        Fault(path=r"/pypi/[^/]+/json$", kind="delay", seconds=1.5, times=1),
        Fault(path=r"/pypi/[^/]+/json$", kind="stale", lag=5, times=2),
    ],
    ids=["503", "502", "truncated", "reset", "timeout", "stale"],
)
def test_transient_faults_are_retried(fake: FakeUpstream, fault: Fault) -> None:
    fake.add_fault(fault)
    name = _names(fake)[0]
    serial = fake.index.get(name).serial  # type: ignore[union-attr]

    async def main() -> int:
        async with _client(fake) as c:
            got = await c.project_json(name, serial)
            assert got.json()["info"]["name"] == fake.index.get(name).name  # type: ignore[union-attr]
            return c.stats.retries

    assert asyncio.run(main()) >= 1
    assert fault.times == 0


def test_429_honours_retry_after(fake: FakeUpstream) -> None:
    fake.add_fault(
        Fault(path=r"/pypi/[^/]+/json$", kind="status", status=429, retry_after="1", times=1)
    )
    name = _names(fake)[0]

    async def main() -> float:
        async with _client(fake, backoff=0.0) as c:
            t = time.perf_counter()
            await c.project_json(name)
            return time.perf_counter() - t

    assert asyncio.run(main()) >= 1.0


def test_stale_page_reported_after_retries(fake: FakeUpstream) -> None:
    fake.add_fault(Fault(path=r"/pypi/[^/]+/json$", kind="stale", lag=1, times=10))
    name = _names(fake)[0]
    serial = fake.index.get(name).serial  # type: ignore[union-attr]

    async def main() -> None:
        async with _client(fake) as c:
            with pytest.raises(StaleResponse, match="stale"):
                await c.project_json(name, serial)
            assert c.stats.count["project-json"] == 3  # bandersnatch's three attempts

    asyncio.run(main())


def test_persistent_5xx_gives_up_with_a_clear_error(fake: FakeUpstream) -> None:
    fake.add_fault(Fault(path=r"/pypi/[^/]+/json$", kind="status", status=500, times=100))

    async def main() -> None:
        async with _client(fake, retries=2) as c:
            with pytest.raises(UpstreamError, match="giving up after 3 attempts: HTTP 500"):
                await c.project_json(_names(fake)[0])

    asyncio.run(main())


def test_404_is_recorded_missing_and_failure_fails_alone(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    names = _names(fake)
    missing, broken = names[2], names[4]
    # Listed but 404 (deleted between listing and fetch): drop from the index *after* listing.
    fake.add_fault(Fault(path=rf"^/pypi/{missing}/json$", kind="status", status=404, times=100))
    fake.add_fault(Fault(path=rf"^/pypi/{broken}/json$", kind="status", status=503, times=100))
    db = tmp_path / "m.duckdb"
    report = sync(fake, db)
    assert report.refresh.missing == [missing]
    assert set(report.refresh.failed) == {broken}
    assert "503" in report.refresh.failed[broken]
    assert not report.ok
    assert len(report.refresh.refreshed) == len(names) - 2
    # The next run retries the failed project (its serial was never advanced) and the missing
    # one (a 404 may be transient: it is retried while it is listed), and nothing else.
    fake.state.faults.clear()
    fake.reset_counts()
    report2 = sync(fake, db)
    assert sorted(report2.refresh.refreshed) == sorted([broken, missing])
    assert {p for (_r, p) in fake.per_project} == {broken, missing}


def test_hostile_upstream_data_fails_only_that_project(fake: FakeUpstream, tmp_path: Path) -> None:
    names = _names(fake)
    evil = names[1]
    # Point one file at a foreign host: refused, never requested, the project fails alone.
    rel = next(r for r in fake.index.releases(evil).values() if r.files)
    rel.files[0].filename = "../../escape.tar.gz"
    report = sync(fake, tmp_path / "m.duckdb")
    assert set(report.refresh.failed) == {evil}
    assert "unsafe filename" in report.refresh.failed[evil]
    assert len(report.refresh.refreshed) == len(names) - 1
